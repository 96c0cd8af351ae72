/* Wanda (Sun et al. 2023): prune by |W_ij| * ||X_j||, compared within each output row.
 *
 * ||X_j|| is the L2 norm of input feature j over the calibration tokens, sqrt(sum_sq[j]) of the
 * statistics of the site that feeds the tensor (cce_calib_input_of: ATTN_IN for q/k/v, O_IN for
 * o_proj, FFN_IN for gate/up, DOWN_IN for down_proj).
 *
 * Unstructured (parameter `ratio`, the plan's target): each row [in] loses
 * cce_ratio_count(ratio, in) weights, those of lowest score. N:M (parameter `nm`): in every group
 * of M consecutive inputs the N highest scores stay; a ragged last group of len < M keeps
 * ceil(N * len / M); a tensor whose plan target is 0 stays dense. Ties go to the earlier position,
 * and counting, selection and report sizes are those of magnitude pruning (prune_common.h).
 *
 * Allocation (parameter `alloc`): uniform, or OWL (framework/owl.h), which uses the same scores. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "calib.h"
#include "encoding.h"
#include "owl.h"
#include "prune_common.h"
#include "strategy.h"

#define NAME "wanda"

static const cce_param wanda_params[] = {
    {"ratio", CCE_PARAM_FLOAT, "0.5", 0, 1, CCE_PARAM_MAX_OPEN, NULL,
     "fraction of weights removed per output row (the plan's global target)"},
    {"nm", CCE_PARAM_NM, NULL, 0, 0, 0, NULL,
     "keep the N highest |w|*||x|| of every M along the input (2:4); replaces ratio"},
    CCE_OWL_PARAMS,
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL},
};

typedef struct wanda_priv {
    int nm_n, nm_m; /* 0 without N:M */
    int owl;        /* alloc = owl */
    double owl_m, owl_lambda;
} wanda_priv;

static cce_status wanda_init(void *priv, const cce_params *p) {
    wanda_priv *wp = priv;
    cce_status s;
    if ((s = cce_params_get_float(p, "owl_m", &wp->owl_m)) ||
        (s = cce_params_get_float(p, "owl_lambda", &wp->owl_lambda)))
        return s;
    wp->owl = cce_owl_requested(p);
    if (!cce_params_has(p, "nm")) return CCE_OK;
    if ((s = cce_params_get_nm(p, "nm", &wp->nm_n, &wp->nm_m))) return s;
    if (cce_params_given(p, "ratio"))
        return cce_fail(CCE_ERR_ARG, NAME ": nm = %d:%d fixes the ratio; do not also give ratio",
                        wp->nm_n, wp->nm_m);
    if (wp->owl)
        return cce_fail(CCE_ERR_ARG, NAME ": nm fixes the ratio of every layer; alloc = owl "
                                          "cannot be combined with it");
    return CCE_OK;
}

static cce_status wanda_plan(void *priv, cce_model *m, const cce_calib *calib, cce_plan *plan) {
    wanda_priv *wp = priv;
    if (!wp->owl) return CCE_OK;
    return cce_owl_allocate(m, calib, plan, wp->owl_m, wp->owl_lambda, NAME);
}

/* Prunes one tensor by its scores. Fills the report row's measures. */
static cce_status prune_tensor(const void *priv, const cce_block_job *job, cce_job_tensor *jt,
                               cce_report_row *row) {
    const wanda_priv *wp = priv;
    const cce_calib *calib = job->calib;
    cce_tensor *t = jt->weight;
    if (t->ndim != 2)
        return cce_fail(CCE_ERR_ARG, NAME ": %s is not a matrix (unskip only linear layers)",
                        jt->name);
    int64_t rows = t->shape[0], cols = t->shape[1], numel = rows * cols;
    cce_calib_input in;
    cce_status s = cce_calib_input_of(calib, jt->name, &in);
    if (s) {
        cce_error_prefix(NAME ": ");
        return s;
    }
    if (in.dim != cols)
        return cce_fail(CCE_ERR_ARG, NAME ": %s has %lld inputs but its statistics have width %d",
                        jt->name, (long long)cols, in.dim);
    float *scale = malloc((size_t)cols * sizeof *scale); /* [cols] ||X_j|| */
    if (!scale) return cce_fail(CCE_ERR_NOMEM, NAME ": %s: out of memory", jt->name);
    for (int64_t j = 0; j < cols; j++) {
        double norm = sqrt(in.sum_sq[j]);
        scale[j] = norm < FLT_MAX ? (float)norm : FLT_MAX;
    }
    float *w = t->data; /* [rows, cols] */
    double norm2 = cce_prune_norm2(w, numel), removed = 0;
    int64_t slots = numel;
    int nm = wp->nm_m > 0 && jt->target > 0;
    if (nm || wp->nm_m == 0)
        s = cce_prune_rows(NAME, jt->name, w, rows, cols, scale, jt->target, nm ? wp->nm_n : 0,
                           nm ? wp->nm_m : 0, &removed, &slots);
    free(scale);
    if (s) return s;
    return cce_prune_finish(jt, row, numel, norm2, removed, nm ? wp->nm_n : 0, nm ? wp->nm_m : 0,
                            slots);
}

static cce_status wanda_apply(void *priv, cce_block_job *job, cce_report *r) {
    return cce_prune_apply(NAME, job, r, prune_tensor, priv);
}

const cce_strategy cce_strategy_wanda = {
    .api_version = CCE_STRATEGY_API_VERSION,
    .name = NAME,
    .summary = "Wanda pruning: lowest |w|*||x|| per output row (calibration); N:M patterns",
    .params = wanda_params,
    .needs = CCE_NEEDS_CALIBRATION,
    .priv_size = sizeof(wanda_priv),
    .init = wanda_init,
    .plan = wanda_plan,
    .apply = wanda_apply,
    .fini = NULL,
};
