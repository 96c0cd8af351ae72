/* SparseGPT (Frantar & Alistarh 2023): pruning with Optimal Brain Surgeon weight updates, on
 * GPTQ's machinery (strategies/obs.h), optionally joint with quantization.
 *
 * Unstructured: the plan's ratio per tensor (exactly cce_ratio_count(ratio, numel) weights go),
 * chosen block by block (128 columns) over all rows by the saliency w^2 / U_cc^2 (U the upper
 * Cholesky factor of the damped H^-1, as the reference uses it). N:M (`nm=2:4`): every group of M
 * consecutive weights of a row keeps its N most salient, chosen when the sweep reaches the group;
 * the ratio is then fixed by N:M and a tensor whose plan target is 0 stays dense. Every removed
 * weight's error is moved onto the weights not yet visited. With bits > 0 the kept weights are
 * also quantized on RTN's grid (symmetric, granularity and group as for rtn and gptq), in the same
 * sweep. Weights that are zero before stay zero and count towards the removed ones. */
#include "obs.h"
#include "quant.h"
#include "strategy.h"

#define NAME "sparsegpt"

static const cce_param sparsegpt_params[] = {
    {"ratio", CCE_PARAM_FLOAT, "0.5", 0, 1, CCE_PARAM_MAX_OPEN, NULL,
     "fraction of weights removed (the plan's global target)"},
    {"nm", CCE_PARAM_NM, NULL, 0, 0, 0, NULL,
     "keep the N most salient of every M along the input (2:4); replaces ratio"},
    {"bits", CCE_PARAM_INT, "0", 0, CCE_QUANT_MAX_BITS, 0, NULL,
     "also quantize the kept weights to this many bits (2-8); 0: no quantization"},
    {"symmetric", CCE_PARAM_BOOL, "false", 0, 0, 0, NULL, "with bits: symmetric grid"},
    {"granularity", CCE_PARAM_ENUM, NULL, 0, 0, 0, cce_quant_granularity_choices,
     "with bits: one scale per tensor, per output channel (default), or per group along the input"},
    {"group", CCE_PARAM_INT, NULL, 1, 1 << 20, 0, NULL,
     "with bits: weights per group along the input; implies granularity=group"},
    {"damp", CCE_PARAM_FLOAT, "0.01", 0, 1, 0, NULL,
     "Hessian damping, as a fraction of the mean of its diagonal"},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL},
};

typedef struct sparsegpt_priv {
    cce_quant_spec spec; /* used when spec.bits > 0 */
    int nm_n, nm_m;      /* 0 without N:M */
    double damp;
} sparsegpt_priv;

static cce_status sparsegpt_init(void *priv, const cce_params *p) {
    sparsegpt_priv *sp = priv;
    int64_t bits;
    cce_status s;
    if ((s = cce_quant_spec_from_params(p, NAME, &sp->spec)) ||
        (s = cce_params_get_int(p, "bits", &bits)) ||
        (s = cce_params_get_float(p, "damp", &sp->damp)))
        return s;
    if (bits == 1)
        return cce_fail(CCE_ERR_RANGE,
                        NAME ": bits = 1 is outside {0} or [%d, %d] (0: no "
                             "quantization)",
                        CCE_QUANT_MIN_BITS, CCE_QUANT_MAX_BITS);
    sp->spec.bits = (int)bits;
    if (!bits && (cce_params_given(p, "symmetric") || cce_params_given(p, "granularity") ||
                  cce_params_given(p, "group")))
        return cce_fail(CCE_ERR_ARG, NAME ": symmetric, granularity and group need bits > 0");
    if (!cce_params_has(p, "nm")) return CCE_OK;
    if ((s = cce_params_get_nm(p, "nm", &sp->nm_n, &sp->nm_m))) return s;
    if (cce_params_given(p, "ratio"))
        return cce_fail(CCE_ERR_ARG, NAME ": nm = %d:%d fixes the ratio; do not also give ratio",
                        sp->nm_n, sp->nm_m);
    return CCE_OK;
}

static cce_status sparsegpt_apply(void *priv, cce_block_job *job, cce_report *r) {
    const sparsegpt_priv *sp = priv;
    for (size_t i = 0; i < job->n; i++) { /* check every target before changing anything */
        const cce_job_tensor *jt = &job->tensors[i];
        if (!jt->skip && !(jt->target >= 0 && jt->target <= 1))
            return cce_fail(CCE_ERR_RANGE, NAME ": %s: ratio = %g is outside [0, 1]", jt->name,
                            jt->target);
    }
    cce_obs_cache cache = {0};
    cce_status s = CCE_OK;
    for (size_t i = 0; !s && i < job->n; i++) {
        cce_job_tensor *jt = &job->tensors[i];
        if (jt->skip) continue;
        cce_obs_options o = {.quant = sp->spec.bits ? &sp->spec : NULL};
        if (sp->nm_m > 0 && jt->target > 0) {
            o.nm_n = sp->nm_n;
            o.nm_m = sp->nm_m;
        } else if (sp->nm_m == 0) {
            o.ratio = jt->target;
        }
        if (!o.quant && o.ratio == 0 && o.nm_m == 0) continue; /* nothing to do: left alone */
        cce_report_row row;
        cce_report_row_init(&row, NAME, job->layer, jt->name);
        s = cce_obs_apply_tensor(NAME, &cache, job->calib, sp->damp, &o, jt, &row);
        if (!s) s = cce_report_add(r, &row);
    }
    cce_obs_cache_clear(&cache);
    return s;
}

const cce_strategy cce_strategy_sparsegpt = {
    .api_version = CCE_STRATEGY_API_VERSION,
    .name = NAME,
    .summary = "SparseGPT: OBS pruning with weight updates, unstructured or N:M, optionally "
               "quantized",
    .params = sparsegpt_params,
    .needs = CCE_NEEDS_CALIBRATION | CCE_NEEDS_SEQUENTIAL,
    .priv_size = sizeof(sparsegpt_priv),
    .init = sparsegpt_init,
    .plan = NULL,
    .apply = sparsegpt_apply,
    .fini = NULL,
};
