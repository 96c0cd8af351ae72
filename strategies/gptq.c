/* GPTQ (Frantar et al. 2022): quantization that moves each column's rounding error onto the
 * columns not yet quantized, weighted by the inverse Hessian of the layer's input (strategies/
 * obs.h has the machinery, shared with SparseGPT).
 *
 * H = 2 E[x x^T] from the calibration statistics of the tensor's input (sequential statistics
 * of the already-compressed prefix: needs CCE_NEEDS_SEQUENTIAL), damped by damp * mean(diag H);
 * dead inputs are handled as the reference does. Columns go in their natural order (no
 * act_order), in lazy batches of 128. The grid, bit widths and granularities are RTN's
 * (framework/quant.h); the bit width of each tensor is the plan's target, group scales are found
 * on the fly from the updated weights, and a ragged last group is noted in the report. Weights
 * that are exactly zero before (an earlier pruning) stay zero: their error is compensated like a
 * pruned weight's. The report gives the relative output error sqrt(tr(dW G dW^T) / tr(W G W^T)),
 * G = E[x x^T] (cce_obs_output_error). */
#include "obs.h"
#include "quant.h"
#include "strategy.h"

#define NAME "gptq"

static const cce_param gptq_params[] = {
    {"bits", CCE_PARAM_INT, "4", CCE_QUANT_MIN_BITS, CCE_QUANT_MAX_BITS, 0, NULL,
     "bits per code (the plan's global target)"},
    CCE_QUANT_GRID_PARAMS,
    {"damp", CCE_PARAM_FLOAT, "0.01", 0, 1, 0, NULL,
     "Hessian damping, as a fraction of the mean of its diagonal"},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL},
};

typedef struct gptq_priv {
    cce_quant_spec spec; /* bits come from each tensor's target */
    double damp;
} gptq_priv;

static cce_status gptq_init(void *priv, const cce_params *p) {
    gptq_priv *gp = priv;
    cce_status s = cce_quant_spec_from_params(p, NAME, &gp->spec);
    if (!s) s = cce_params_get_float(p, "damp", &gp->damp);
    return s;
}

/* The bit width a plan target stands for, or 0 if it is not a whole number in [2, 8]. */
static int bits_of_target(double target) {
    if (!(target >= CCE_QUANT_MIN_BITS && target <= CCE_QUANT_MAX_BITS)) return 0;
    return target == (double)(int)target ? (int)target : 0;
}

static cce_status gptq_apply(void *priv, cce_block_job *job, cce_report *r) {
    const gptq_priv *gp = priv;
    for (size_t i = 0; i < job->n; i++) { /* check every target before changing anything */
        const cce_job_tensor *jt = &job->tensors[i];
        if (!jt->skip && !bits_of_target(jt->target))
            return cce_fail(CCE_ERR_RANGE, NAME ": %s: bits = %g is not a whole number in [%d, %d]",
                            jt->name, jt->target, CCE_QUANT_MIN_BITS, CCE_QUANT_MAX_BITS);
    }
    cce_obs_cache cache = {0};
    cce_status s = CCE_OK;
    for (size_t i = 0; !s && i < job->n; i++) {
        cce_job_tensor *jt = &job->tensors[i];
        if (jt->skip) continue;
        cce_quant_spec q = gp->spec;
        q.bits = bits_of_target(jt->target);
        cce_obs_options o = {.quant = &q};
        cce_report_row row;
        cce_report_row_init(&row, NAME, job->layer, jt->name);
        s = cce_obs_apply_tensor(NAME, &cache, job->calib, gp->damp, &o, jt, &row);
        if (!s) s = cce_report_add(r, &row);
    }
    cce_obs_cache_clear(&cache);
    return s;
}

const cce_strategy cce_strategy_gptq = {
    .api_version = CCE_STRATEGY_API_VERSION,
    .name = NAME,
    .summary = "GPTQ: quantization with error compensation from the input second moment",
    .params = gptq_params,
    .needs = CCE_NEEDS_CALIBRATION | CCE_NEEDS_SEQUENTIAL,
    .priv_size = sizeof(gptq_priv),
    .init = gptq_init,
    .plan = NULL,
    .apply = gptq_apply,
    .fini = NULL,
};
