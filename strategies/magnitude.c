/* Magnitude pruning: zero the weights of smallest |w|.
 *
 * Scopes (parameter `scope`):
 *   row     each output row of a tensor [out, in] loses cce_ratio_count(ratio, in) weights;
 *   tensor  each tensor loses cce_ratio_count(ratio, numel) weights, wherever they are;
 *   global  one threshold across every tensor the plan prunes at the uniform target: the plan
 *           stage finds the exact k-th smallest |w| over them (k = cce_ratio_count(target,
 *           total)) and allocates each tensor its share, so exactly k weights go in all. Tensors
 *           with their own override (name, pattern, layer) are pruned per tensor at that ratio.
 * N:M (parameter `nm`, rows only): in every group of M consecutive weights along the input, the N
 * largest |w| stay; a ragged last group of len < M weights keeps ceil(N * len / M). The ratio is
 * then fixed by N:M; a tensor whose plan target is 0 stays dense.
 *
 * Counting: removing "ratio" of n weights removes exactly floor(ratio * n) (cce_ratio_count), so
 * a row or tensor never loses more than asked and never loses everything. Ties at the threshold
 * are broken by position: the earlier weight goes first. Weights that are already zero count as
 * removed when they are among the smallest.
 *
 * Allocation (parameter `alloc`): uniform (the plan's rules), or OWL (framework/owl.h: layer
 * ratios from Wanda outlier ratios, mean held at the target; needs calibration data).
 *
 * Selection and N:M groups are shared with Wanda (prune_common.h). The global threshold is a
 * radix select over the float bit patterns: four passes over the tensors and no copy of them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "encoding.h"
#include "owl.h"
#include "prune_common.h"
#include "strategy.h"

#define NAME     "magnitude"
#define ALLOC_BY "global magnitude threshold"

enum { SCOPE_ROW = 0, SCOPE_TENSOR, SCOPE_GLOBAL };

static const char *const scope_choices[] = {"row", "tensor", "global", NULL};

static const cce_param magnitude_params[] = {
    {"ratio", CCE_PARAM_FLOAT, "0.5", 0, 1, CCE_PARAM_MAX_OPEN, NULL,
     "fraction of weights removed (the plan's global target)"},
    {"scope", CCE_PARAM_ENUM, "row", 0, 0, 0, scope_choices,
     "compare |w| within each output row, each tensor, or all planned tensors"},
    {"nm", CCE_PARAM_NM, NULL, 0, 0, 0, NULL,
     "keep the N largest |w| of every M along the input (2:4); replaces ratio"},
    CCE_OWL_PARAMS,
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL},
};

typedef struct magnitude_priv {
    int scope;
    int nm_n, nm_m; /* 0 without N:M */
    int planned;    /* the global threshold has been allocated */
    int owl;        /* alloc = owl */
    double owl_m, owl_lambda;
} magnitude_priv;

static cce_status magnitude_init(void *priv, const cce_params *p) {
    magnitude_priv *mp = priv;
    const char *scope;
    cce_status s = cce_params_get_enum(p, "scope", &scope, &mp->scope);
    if (s || (s = cce_params_get_float(p, "owl_m", &mp->owl_m)) ||
        (s = cce_params_get_float(p, "owl_lambda", &mp->owl_lambda)))
        return s;
    mp->owl = cce_owl_requested(p);
    if (mp->owl && mp->scope == SCOPE_GLOBAL)
        return cce_fail(CCE_ERR_ARG, NAME ": alloc = owl sets layer ratios; scope = global sets "
                                          "one threshold: choose one");
    if (!cce_params_has(p, "nm")) return CCE_OK;
    if (mp->owl)
        return cce_fail(CCE_ERR_ARG, NAME ": nm fixes the ratio of every layer; alloc = owl "
                                          "cannot be combined with it");
    if ((s = cce_params_get_nm(p, "nm", &mp->nm_n, &mp->nm_m))) return s;
    if (cce_params_given(p, "ratio"))
        return cce_fail(CCE_ERR_ARG, NAME ": nm = %d:%d fixes the ratio; do not also give ratio",
                        mp->nm_n, mp->nm_m);
    if (mp->scope != SCOPE_ROW)
        return cce_fail(CCE_ERR_ARG,
                        NAME ": nm works within rows; scope = %s cannot be combined "
                             "with it",
                        scope);
    return CCE_OK;
}

/* ---- Apply ----------------------------------------------------------------------------------- */

/* Prunes one tensor at ratio `target` (or by N:M). Fills the report row's measures. */
static cce_status prune_tensor(const void *priv, const cce_block_job *job, cce_job_tensor *jt,
                               cce_report_row *row) {
    (void)job;
    const magnitude_priv *mp = priv;
    cce_tensor *t = jt->weight;
    float *w = t->data; /* [rows, cols] */
    int64_t rows = cce_tensor_rows(t), cols = cce_tensor_cols(t), numel = rows * cols;
    double norm2 = 0, removed = 0;
    int64_t slots = numel; /* values the sparse encoding stores */
    int nm = mp->nm_m > 0 && jt->target > 0;
    cce_status s = CCE_OK;
    if (nm || (mp->nm_m == 0 && mp->scope == SCOPE_ROW)) {
        /* the norm is taken row by row in the same pass */
        s = cce_prune_rows_norm(NAME, jt->name, w, rows, cols, NULL, jt->target, nm ? mp->nm_n : 0,
                                nm ? mp->nm_m : 0, &removed, &slots, &norm2);
    } else if (mp->nm_m == 0) {
        norm2 = cce_prune_norm2(w, numel);
        float *scratch = malloc((size_t)numel * sizeof *scratch); /* [numel] */
        if (!scratch) return cce_fail(CCE_ERR_NOMEM, NAME ": %s: out of memory", jt->name);
        removed = cce_prune_smallest(w, NULL, numel, cce_ratio_count(jt->target, numel), scratch);
        free(scratch);
    } else {
        norm2 = cce_prune_norm2(w, numel); /* N:M at target 0: stays dense */
    }
    if (s) return s;
    return cce_prune_finish(jt, row, numel, norm2, removed, nm ? mp->nm_n : 0, nm ? mp->nm_m : 0,
                            slots);
}

static cce_status magnitude_apply(void *priv, cce_block_job *job, cce_report *r) {
    magnitude_priv *mp = priv;
    if (mp->scope == SCOPE_GLOBAL && !mp->planned)
        return cce_fail(CCE_ERR_STATE, NAME ": scope = global needs the plan stage before apply "
                                            "(cce_strategy_instance_plan)");
    return cce_prune_apply(NAME, job, r, prune_tensor, mp);
}

/* ---- Plan: the global threshold -------------------------------------------------------------- */

typedef struct pooled {
    const char *name;
    const cce_tensor *t;
    int64_t less, equal; /* |w| below / at the threshold */
} pooled;

static inline uint32_t abs_bits(float v) {
    float a = fabsf(v);
    uint32_t u;
    memcpy(&u, &a, sizeof u); /* non-negative floats order like their bit patterns */
    return u;
}

/* The bit pattern of the k-th smallest |w| (1-based) over the pool, and how many are below it. */
static uint32_t radix_select(const pooled *pool, size_t n, int64_t k, int64_t *below) {
    static const int shift[3] = {21, 10, 0}, width[3] = {11, 11, 10};
    uint64_t prefix = 0;
    int64_t need = k, less = 0;
    int64_t *hist = calloc(2048, sizeof *hist); /* [2^11] */
    if (!hist) return UINT32_MAX;
    for (int p = 0; p < 3; p++) {
        int hi = shift[p] + width[p];
        uint64_t mask = (1u << width[p]) - 1;
        memset(hist, 0, 2048 * sizeof *hist);
        for (size_t i = 0; i < n; i++) {
            const float *w = pool[i].t->data;
            int64_t numel = cce_tensor_numel(pool[i].t);
            for (int64_t j = 0; j < numel; j++) {
                uint64_t u = abs_bits(w[j]);
                if ((u >> hi) == (prefix >> hi)) hist[(u >> shift[p]) & mask]++;
            }
        }
        int64_t cum = 0;
        uint64_t digit = 0;
        while (cum + hist[digit] < need) cum += hist[digit++];
        need -= cum;
        less += cum;
        prefix |= digit << shift[p];
    }
    free(hist);
    *below = less;
    return (uint32_t)prefix;
}

static cce_status magnitude_plan(void *priv, cce_model *m, const cce_calib *calib, cce_plan *plan) {
    magnitude_priv *mp = priv;
    if (mp->owl) return cce_owl_allocate(m, calib, plan, mp->owl_m, mp->owl_lambda, NAME);
    if (mp->scope != SCOPE_GLOBAL) return CCE_OK;
    if (cce_plan_get_kind(plan) != CCE_PLAN_RATIO)
        return cce_fail(CCE_ERR_ARG, NAME ": needs a ratio plan, not a bit-width plan");
    size_t n = cce_model_tensor_count(m), np = 0;
    pooled *pool = calloc(n ? n : 1, sizeof *pool); /* [n] */
    if (!pool) return cce_fail(CCE_ERR_NOMEM, NAME ": out of memory");
    cce_status s = CCE_OK;
    int64_t total = 0;
    for (size_t i = 0; !s && i < n; i++) {
        const char *name = cce_model_tensor_name_at(m, i);
        cce_plan_row d;
        if ((s = cce_plan_resolve(plan, cce_plan_layer_of(name), name, &d))) break;
        if (d.source != CCE_PLAN_UNIFORM) continue; /* skipped, or its own override */
        cce_tensor *t;
        if ((s = cce_model_tensor(m, name, &t)) || (s = cce_tensor_check_finite(t, name))) break;
        pool[np++] = (pooled){name, t, 0, 0};
        total += cce_tensor_numel(t);
    }
    int64_t k = cce_ratio_count(cce_plan_target(plan), total), below = 0;
    uint32_t thr = 0;
    if (!s && k > 0 && (thr = radix_select(pool, np, k, &below)) == UINT32_MAX)
        s = cce_fail(CCE_ERR_NOMEM, NAME ": out of memory");
    int64_t ties = k - below; /* weights at the threshold that go, earlier tensors first */
    for (size_t i = 0; !s && i < np; i++) {
        int64_t numel = cce_tensor_numel(pool[i].t), take = 0;
        if (k > 0) {
            const float *w = pool[i].t->data;
            for (int64_t j = 0; j < numel; j++) {
                uint32_t u = abs_bits(w[j]);
                pool[i].less += u < thr;
                pool[i].equal += u == thr;
            }
            take = pool[i].less + (ties < pool[i].equal ? ties : pool[i].equal);
            ties -= take - pool[i].less;
        }
        s = cce_plan_allocate_tensor(plan, pool[i].name, numel ? (double)take / (double)numel : 0,
                                     ALLOC_BY);
    }
    free(pool);
    if (!s) mp->planned = 1;
    return s;
}

const cce_strategy cce_strategy_magnitude = {
    .api_version = CCE_STRATEGY_API_VERSION,
    .name = NAME,
    .summary = "magnitude pruning: smallest |w| per row, per tensor or global; N:M patterns",
    .params = magnitude_params,
    .needs = 0,
    .priv_size = sizeof(magnitude_priv),
    .init = magnitude_init,
    .plan = magnitude_plan,
    .apply = magnitude_apply,
    .fini = NULL,
};
