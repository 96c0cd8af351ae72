/* ShortGPT layer removal: whole blocks ranked by block influence BI_l = 1 - mean cos(h_l, h_l+1)
 * over the calibration tokens (cce_calib_block_influence); the blocks that change the residual
 * stream least go first. A removed block is marked, not renumbered (model.h, "Layer shapes").
 *
 * How many (the plan stage, on the model as it enters the step):
 *   ratio   the fraction of block parameters removed, never more: with P the parameters of every
 *           block still present and budget = cce_ratio_count(ratio, P) = floor(ratio * P),
 *           blocks are taken in order of increasing BI while the parameters taken stay within the
 *           budget; the first block that would exceed it ends the list (a block of lower BI is
 *           never passed over for a smaller one). With equal blocks this is floor(ratio * L) of
 *           L blocks (stories260K: ratio 0.2 or 0.25 removes 1 of 5). ratio < 1, so some block
 *           always stays.
 *   layers  when given, exactly this many blocks (fewer than the blocks present); replaces ratio.
 * Ties in BI: the earlier block goes first. Blocks whose q_proj the plan skips (e.g. skip =
 * layers.0.*) are never removed; other per-layer or per-tensor values do not apply to whole
 * blocks and are ignored. Needs calibration (CCE_NEEDS_CALIBRATION) and resizing
 * (CCE_NEEDS_RESIZE).
 *
 * Report: one row per tensor of a removed block (norms included): params and bytes after 0,
 * sparsity 1, relative Frobenius and output error 1, the block's BI in the note. A block's biases
 * (model.h) count in its parameters (cce_model_layer_params) and go with it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "strategy.h"

#define NAME "shortgpt"

static const cce_param shortgpt_params[] = {
    {"ratio", CCE_PARAM_FLOAT, "0.25", 0, 1, CCE_PARAM_MAX_OPEN, NULL,
     "fraction of block parameters removed, at most (the plan's global target)"},
    {"layers", CCE_PARAM_INT, NULL, 0, 1024, 0, NULL,
     "remove exactly this many blocks (replaces ratio)"},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL},
};

typedef struct shortgpt_priv {
    int64_t fixed; /* `layers`, or -1 */
    int n_layers;  /* of the planned model */
    int *remove;   /* [n_layers]: 1 for the blocks that go */
    double *bi;    /* [n_layers]: block influence (NaN if unknown) */
    int planned;
} shortgpt_priv;

static cce_status shortgpt_init(void *priv, const cce_params *p) {
    shortgpt_priv *sp = priv;
    sp->fixed = -1;
    if (!cce_params_has(p, "layers")) return CCE_OK;
    if (cce_params_given(p, "ratio"))
        return cce_fail(CCE_ERR_ARG, NAME ": give ratio or layers, not both");
    return cce_params_get_int(p, "layers", &sp->fixed);
}

static void shortgpt_fini(void *priv) {
    shortgpt_priv *sp = priv;
    free(sp->remove);
    free(sp->bi);
}

typedef struct ranked {
    double bi;
    int layer;
} ranked;

static int by_influence(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->bi != y->bi) return x->bi < y->bi ? -1 : 1;
    return (x->layer > y->layer) - (x->layer < y->layer);
}

static cce_status shortgpt_plan(void *priv, cce_model *m, const cce_calib *calib, cce_plan *plan) {
    shortgpt_priv *sp = priv;
    int L = cce_model_config(m)->n_layers;
    if (!calib) return cce_fail(CCE_ERR_STATE, NAME ": needs calibration data (give --calib)");
    if (cce_calib_n_layers(calib) != L)
        return cce_fail(CCE_ERR_ARG, NAME ": calibration statistics of %d layers for a model of %d",
                        cce_calib_n_layers(calib), L);
    free(sp->remove);
    free(sp->bi);
    sp->planned = 0;
    sp->n_layers = L;
    sp->remove = calloc((size_t)L, sizeof *sp->remove);
    sp->bi = calloc((size_t)L, sizeof *sp->bi);
    ranked *order = calloc((size_t)L, sizeof *order); /* [L] eligible blocks */
    if (!sp->remove || !sp->bi || !order) {
        free(order);
        return cce_fail(CCE_ERR_NOMEM, NAME ": %d layers", L);
    }
    int n_eligible = 0, present = 0;
    int64_t total = 0;
    cce_status s = CCE_OK;
    for (int l = 0; l < L && !s; l++) {
        sp->bi[l] = cce_calib_block_influence(calib, l);
        if (cce_model_layer(m, l)->removed) continue;
        present++;
        total += cce_model_layer_params(m, l);
        char q[CCE_PLAN_NAME_MAX];
        cce_layer_tensor_name(l, CCE_LT_Q, q, sizeof q);
        cce_plan_row row;
        if ((s = cce_plan_resolve(plan, l, q, &row))) break;
        if (row.source == CCE_PLAN_SKIP) continue;
        if (isnan(sp->bi[l]))
            s = cce_fail(CCE_ERR_ARG,
                         NAME ": layer %d has no block influence in the calibration "
                              "statistics",
                         l);
        order[n_eligible++] = (ranked){sp->bi[l], l};
    }
    if (!s && sp->fixed >= 0 && (sp->fixed > n_eligible || (sp->fixed > 0 && sp->fixed >= present)))
        s = cce_fail(CCE_ERR_RANGE,
                     NAME ": layers = %lld, but %d blocks may be removed (%d present; at least one "
                          "stays)",
                     (long long)sp->fixed, n_eligible < present - 1 ? n_eligible : present - 1,
                     present);
    if (!s) {
        qsort(order, (size_t)n_eligible, sizeof *order, by_influence);
        int64_t budget = cce_ratio_count(cce_plan_target(plan), total), taken = 0;
        for (int i = 0; i < n_eligible; i++) {
            int l = order[i].layer;
            if (sp->fixed >= 0) {
                if (i >= sp->fixed) break;
            } else {
                int64_t p = cce_model_layer_params(m, l);
                if (taken + p > budget) break;
                taken += p;
            }
            sp->remove[l] = 1;
        }
        sp->planned = 1;
    }
    free(order);
    return s;
}

static cce_status shortgpt_apply(void *priv, cce_block_job *job, cce_report *r) {
    shortgpt_priv *sp = priv;
    if (!sp->planned)
        return cce_fail(CCE_ERR_STATE, NAME ": the plan stage must run before apply "
                                            "(cce_strategy_instance_plan)");
    if (job->layer < 0 || job->layer >= sp->n_layers || !sp->remove[job->layer]) return CCE_OK;
    cce_status s = cce_block_job_remove_layer(job);
    if (s) return s;
    for (size_t i = 0; i < job->n; i++) {
        const cce_tensor *w = job->tensors[i].weight;
        int64_t numel = cce_tensor_numel(w);
        cce_report_row row;
        cce_report_row_init(&row, NAME, job->layer, job->tensors[i].name);
        row.params_before = numel;
        row.params_after = 0;
        row.bytes_before = 4 * numel;
        row.bytes_after = 0;
        row.bits_per_weight = 0;
        row.sparsity = 1;
        row.rel_fro_error = 1;
        if (w->ndim == 2) row.output_error = 1;
        row.seconds = 0;
        snprintf(row.note, sizeof row.note, "block removed, BI %.6f", sp->bi[job->layer]);
        if ((s = cce_report_add(r, &row))) return s;
    }
    return CCE_OK;
}

const cce_strategy cce_strategy_shortgpt = {
    .api_version = CCE_STRATEGY_API_VERSION,
    .name = NAME,
    .summary = "ShortGPT layer removal: the blocks of lowest block influence 1 - cos(h_in, h_out)",
    .params = shortgpt_params,
    .needs = CCE_NEEDS_CALIBRATION | CCE_NEEDS_RESIZE,
    .priv_size = sizeof(shortgpt_priv),
    .init = shortgpt_init,
    .plan = shortgpt_plan,
    .apply = shortgpt_apply,
    .fini = shortgpt_fini,
};
