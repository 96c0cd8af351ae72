/* A sample external strategy, built by the tests as a shared object (tests/CMakeLists.txt).
 *
 * "sample_scale" multiplies every planned tensor by `factor` and, with drop_rows = K > 0, replaces
 * it by a copy without its last K rows (which needs a job that grants resizing). It calls libcce
 * (parameter getters, cce_fail, report rows, job resizing) through the symbols the host program
 * exports, as any plugin does.
 *
 * Broken variants for the loader's error paths, chosen by one compile definition:
 *   SAMPLE_BAD_VERSION  the descriptor speaks another API version
 *   SAMPLE_NO_ENTRY     no cce_strategy_entry symbol
 *   SAMPLE_BAD_SCHEMA   a default outside its own range */
#include <math.h>
#include <string.h>

#include "strategy.h"

#ifdef SAMPLE_BAD_VERSION
#define SAMPLE_API (CCE_STRATEGY_API_VERSION + 1)
#else
#define SAMPLE_API CCE_STRATEGY_API_VERSION
#endif

#ifdef SAMPLE_BAD_SCHEMA
#define FACTOR_DEFAULT "20"
#else
#define FACTOR_DEFAULT "0.5"
#endif

static const cce_param sample_params[] = {
    {"factor", CCE_PARAM_FLOAT, FACTOR_DEFAULT, 0, 10, 0, NULL, "multiplier of every weight"},
    {"drop_rows", CCE_PARAM_INT, "0", 0, 1000, 0, NULL, "output rows removed from each tensor"},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL},
};

typedef struct sample_priv {
    double factor;
    int64_t drop_rows;
} sample_priv;

static cce_status sample_init(void *priv, const cce_params *p) {
    sample_priv *sp = priv;
    cce_status s = cce_params_get_float(p, "factor", &sp->factor);
    if (!s) s = cce_params_get_int(p, "drop_rows", &sp->drop_rows);
    return s;
}

static cce_status sample_apply(void *priv, cce_block_job *job, cce_report *r) {
    const sample_priv *sp = priv;
    for (size_t i = 0; i < job->n; i++) {
        cce_job_tensor *jt = &job->tensors[i];
        if (jt->skip) continue;
        const cce_tensor *w = jt->weight; /* [rows, cols] */
        int64_t rows = cce_tensor_rows(w), cols = cce_tensor_cols(w);
        float *dst = jt->weight->data;
        if (sp->drop_rows > 0) {
            if (sp->drop_rows >= rows)
                return cce_fail(CCE_ERR_RANGE, "sample_scale: %s: drop_rows = %lld leaves no rows",
                                jt->name, (long long)sp->drop_rows);
            int64_t shape[2] = {rows - sp->drop_rows, cols};
            cce_tensor *fresh; /* [rows - drop_rows, cols], owned by the job */
            cce_status s = cce_block_job_resize(job, i, 2, shape, &fresh);
            if (s) return s;
            dst = fresh->data;
            rows = shape[0];
        }
        double err2 = 0, norm2 = 0;
        for (int64_t j = 0; j < rows * cols; j++) {
            double before = w->data[j], after = (float)(before * sp->factor);
            dst[j] = (float)after;
            err2 += (after - before) * (after - before);
            norm2 += before * before;
        }
        cce_report_row row;
        cce_report_row_init(&row, "sample_scale", job->layer, jt->name);
        row.params_before = cce_tensor_numel(w);
        row.params_after = rows * cols;
        row.bytes_before = 4 * row.params_before;
        row.bytes_after = 4 * row.params_after;
        row.bits_per_weight = 8.0 * (double)row.bytes_after / (double)row.params_before;
        row.sparsity = 0;
        row.rel_fro_error = norm2 > 0 ? sqrt(err2 / norm2) : 0;
        row.seconds = 0;
        cce_status s = cce_report_add(r, &row);
        if (s) return s;
    }
    return CCE_OK;
}

static const cce_strategy sample_strategy = {
    .api_version = SAMPLE_API,
    .name = "sample_scale",
    .summary = "sample external strategy: scales weights, optionally drops output rows",
    .params = sample_params,
    .needs = 0,
    .priv_size = sizeof(sample_priv),
    .init = sample_init,
    .plan = NULL,
    .apply = sample_apply,
    .fini = NULL,
};

#ifdef SAMPLE_NO_ENTRY
const cce_strategy *sample_strategy_descriptor(void) {
    return &sample_strategy;
}
#else
const cce_strategy *cce_strategy_entry(void) {
    return &sample_strategy;
}
#endif
