/* Round-to-nearest quantization: every weight goes to the nearest value of the shared grid
 * (framework/quant.h), per tensor, per output channel or in groups along the input.
 *
 * The bit width is the plan's target (parameter `bits` is the global one; overrides may give a
 * layer or tensor another whole width in [2, 8]). The tensor keeps float32 values, the
 * dequantized ones; the report counts the bytes of the packed encoding (codes at the code width,
 * fp16 scales, zeros at the code width when asymmetric; cce_quant_encoded_bytes) and notes a
 * ragged last group. The codes, scales and zeros go to the job as the tensor's encoding
 * (encoding.h), so a saved variant stores them packed.
 *
 * Composition: weights that are exactly zero (pruned by an earlier strategy) stay exactly zero,
 * since the grid always holds 0 and zeros never widen a range; they count as pruned, so the codes
 * are charged in the sparse form (kept codes + mask) when that is smaller. With calibration
 * statistics that hold second moments the report also gives the output error. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calib.h"
#include "encoding.h"
#include "obs.h"
#include "quant.h"
#include "strategy.h"

#define NAME    "rtn"
#define PAR_MIN (1 << 15) /* tensors smaller than this are counted on one thread */

static const cce_param rtn_params[] = {
    {"bits", CCE_PARAM_INT, "8", CCE_QUANT_MIN_BITS, CCE_QUANT_MAX_BITS, 0, NULL,
     "bits per code (the plan's global target)"},
    CCE_QUANT_GRID_PARAMS,
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL},
};

typedef struct rtn_priv {
    cce_quant_spec spec; /* bits come from each tensor's target */
} rtn_priv;

static cce_status rtn_init(void *priv, const cce_params *p) {
    rtn_priv *rp = priv;
    return cce_quant_spec_from_params(p, NAME, &rp->spec);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The bit width a plan target stands for, or 0 if it is not a whole number in [2, 8]. */
static int bits_of_target(double target) {
    if (!(target >= CCE_QUANT_MIN_BITS && target <= CCE_QUANT_MAX_BITS)) return 0;
    return target == floor(target) ? (int)target : 0;
}

/* The second moment feeding tensor `name` when calibration has one of width cols, else NULL. */
static const double *second_moment(const cce_calib *calib, const char *name, int64_t cols) {
    cce_calib_input in;
    if (!calib || cce_calib_input_of(calib, name, &in) != CCE_OK) return NULL;
    return in.sum_outer && in.dim == cols && in.n_tokens > 0 ? in.sum_outer : NULL;
}

static cce_status quantize_tensor(const rtn_priv *rp, const cce_calib *calib, cce_job_tensor *jt,
                                  cce_report_row *row) {
    cce_tensor *t = jt->weight;
    float *w = t->data; /* [rows, cols] */
    int64_t rows = cce_tensor_rows(t), cols = cce_tensor_cols(t), numel = rows * cols;
    cce_quant_spec q = rp->spec;
    q.bits = bits_of_target(jt->target);
    int threads = numel >= PAR_MIN ? omp_get_max_threads() : 1;
    double norm2 = 0, err2 = 0, out_err = NAN;
    int64_t kept = 0, zeros = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : norm2, kept) num_threads(threads)
    for (int64_t i = 0; i < numel; i++) {
        norm2 += (double)w[i] * w[i];
        kept += w[i] != 0.0f;
    }
    const double *s_outer = second_moment(calib, jt->name, cols);
    float *orig = NULL; /* [rows, cols] a copy for the output error */
    if (s_outer) {
        if (!(orig = malloc((size_t)numel * sizeof *orig)))
            return cce_fail(CCE_ERR_NOMEM, NAME ": %s: out of memory", jt->name);
        memcpy(orig, w, (size_t)numel * sizeof *orig);
    }
    cce_quant_encoding *enc = NULL;
    cce_status s = cce_quant_encoding_new(&q, rows, cols, &enc);
    if (!s) s = cce_quant_rtn(&q, w, rows, cols, jt->name, enc, &err2);
    if (!s)
        s = cce_encoding_new_quant(enc, t->ndim, t->shape, &jt->encoding);
    else
        cce_quant_encoding_free(enc);
    if (!s && orig) s = cce_obs_output_error(orig, w, rows, cols, s_outer, jt->name, &out_err);
    free(orig);
    if (s) {
        cce_error_prefix(NAME ": ");
        return s;
    }
#pragma omp parallel for simd schedule(static) reduction(+ : zeros) num_threads(threads)
    for (int64_t i = 0; i < numel; i++) zeros += w[i] == 0.0f;
    row->params_before = numel;
    row->params_after = kept;
    row->bytes_before = 4 * numel;
    row->bytes_after = cce_quant_encoded_bytes(&q, rows, cols, kept, 0);
    row->bits_per_weight = numel ? 8.0 * (double)row->bytes_after / (double)numel : 0;
    row->sparsity = numel ? (double)zeros / (double)numel : 0;
    row->rel_fro_error = norm2 > 0 ? sqrt(err2 / norm2) : 0;
    row->output_error = out_err;
    int64_t ragged = cce_quant_ragged_last(&q, cols);
    if (ragged)
        snprintf(row->note, sizeof row->note, "ragged last group %lld of %lld", (long long)ragged,
                 (long long)q.group);
    return CCE_OK;
}

static cce_status rtn_apply(void *priv, cce_block_job *job, cce_report *r) {
    const rtn_priv *rp = priv;
    for (size_t i = 0; i < job->n; i++) { /* check every target before changing anything */
        const cce_job_tensor *jt = &job->tensors[i];
        if (!jt->skip && !bits_of_target(jt->target))
            return cce_fail(CCE_ERR_RANGE, NAME ": %s: bits = %g is not a whole number in [%d, %d]",
                            jt->name, jt->target, CCE_QUANT_MIN_BITS, CCE_QUANT_MAX_BITS);
    }
    for (size_t i = 0; i < job->n; i++) {
        cce_job_tensor *jt = &job->tensors[i];
        if (jt->skip) continue;
        double t0 = now_seconds();
        cce_report_row row;
        cce_report_row_init(&row, NAME, job->layer, jt->name);
        cce_status s = quantize_tensor(rp, job->calib, jt, &row);
        row.seconds = now_seconds() - t0;
        if (s || (s = cce_report_add(r, &row))) return s;
    }
    return CCE_OK;
}

const cce_strategy cce_strategy_rtn = {
    .api_version = CCE_STRATEGY_API_VERSION,
    .name = NAME,
    .summary =
        "round-to-nearest quantization: 2-8 bits, symmetric or not, per tensor/channel/group",
    .params = rtn_params,
    .needs = 0,
    .priv_size = sizeof(rtn_priv),
    .init = rtn_init,
    .plan = NULL,
    .apply = rtn_apply,
    .fini = NULL,
};
