/* The `cce` strategy: Contextual Compression Encoding (docs/CCE.md is the definition).
 *
 * Pass 1 (plan stage, dense statistics): per layer, R^ffn from the eigenvalues of C_a (input of
 * down_proj), R^attn from those of C_y = W_O C_o W_O^T (the attention output), R_l their
 * parameter-weighted mean, and BI_l; then the per-layer budget (cce_budget_solve). With
 * lowrank = false the whole budget goes to stage 3 in units of one FFN neuron (3 * dim
 * parameters), at most hidden_dim - 1 per layer; the plan allocates to gate/up/down the fraction of
 * neurons removed (rule "cce budget") and skips the attention tensors.
 * Pass 2 (apply, sequential statistics of the compressed prefix): stage 3 on each layer: greedy
 * removal order of the neurons from G_a and down_proj (cce_greedy_remove), drop gate/up rows and
 * down columns of the removed ones, fold them into the kept down columns (fold = true).
 *
 * Block parameters are the weight matrices of the blocks (norms are outside the budget). Not yet
 * implemented, and refused with CCE_ERR_STATE naming the parameter: lowrank = true (stage 4) and
 * prune_heads = true. calib_windows / calib_len describe the calibration set the strategy is
 * defined with (64 x 256); the driver supplies the statistics. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "cce_internal.h"
#include "compress.h"
#include "prune_common.h"
#include "strategy.h"

enum { ALLOC_CCE = 0, ALLOC_UNIFORM };

static const char *const alloc_choices[] = {"cce", "uniform", NULL};

static const cce_param cce_params_schema[] = {
    {"ratio", CCE_PARAM_FLOAT, "0.3", 0, 0.9, 0, NULL,
     "global target: fraction of block weight parameters removed"},
    {"eps", CCE_PARAM_FLOAT, "0.05", 0, 1, CCE_PARAM_MIN_OPEN | CCE_PARAM_MAX_OPEN, NULL,
     "layer redundancy: rank explaining 1 - eps of the covariance trace"},
    {"alpha", CCE_PARAM_FLOAT, "0.5", 0, 1, 0, NULL,
     "budget mix: weight of redundancy against block influence"},
    {"spread", CCE_PARAM_FLOAT, "0.1", 0, 0.95, 0, NULL,
     "budget: largest per-layer deviation from the target (lambda)"},
    {"delta_scale", CCE_PARAM_FLOAT, "1e-2", 0, 1e6, CCE_PARAM_MIN_OPEN, NULL,
     "regularisation: delta = delta_scale * mean(diag(C))"},
    {"prune_share", CCE_PARAM_FLOAT, "0.6666666666666666", 0, 1, 0, NULL,
     "share of a layer's removal done by structured pruning (the rest by low rank)"},
    {"fold", CCE_PARAM_BOOL, "true", 0, 0, 0, NULL,
     "fold dropped neurons into down_proj by least squares"},
    {"lowrank", CCE_PARAM_BOOL, "true", 0, 0, 0, NULL,
     "stage 4 whitened low rank (false: the whole budget on structured pruning)"},
    {"prune_heads", CCE_PARAM_BOOL, "false", 0, 0, 0, NULL, "also prune attention heads"},
    {"allocation", CCE_PARAM_ENUM, "cce", 0, 0, 0, alloc_choices,
     "per-layer budget: cce (redundancy and influence) or uniform"},
    {"calib_windows", CCE_PARAM_INT, "64", 1, 1 << 20, 0, NULL, "calibration windows"},
    {"calib_len", CCE_PARAM_INT, "256", 2, 1 << 20, 0, NULL, "tokens per calibration window"},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL},
};

typedef struct cce_layer_info {
    double R_ffn, R_attn, R;
    cce_budget_out budget;
    int planned; /* 1: the layer is in the budget */
} cce_layer_info;

typedef struct cce_priv {
    double ratio, eps, alpha, spread, delta_scale, prune_share;
    int fold, lowrank, prune_heads, allocation;
    int n_layers;
    cce_layer_info *info; /* [n_layers] */
    double achieved;
} cce_priv;

static cce_status cce_init(void *priv, const cce_params *p) {
    cce_priv *cp = priv;
    cce_status s;
    if ((s = cce_params_get_float(p, "ratio", &cp->ratio)) ||
        (s = cce_params_get_float(p, "eps", &cp->eps)) ||
        (s = cce_params_get_float(p, "alpha", &cp->alpha)) ||
        (s = cce_params_get_float(p, "spread", &cp->spread)) ||
        (s = cce_params_get_float(p, "delta_scale", &cp->delta_scale)) ||
        (s = cce_params_get_float(p, "prune_share", &cp->prune_share)) ||
        (s = cce_params_get_bool(p, "fold", &cp->fold)) ||
        (s = cce_params_get_bool(p, "lowrank", &cp->lowrank)) ||
        (s = cce_params_get_bool(p, "prune_heads", &cp->prune_heads)) ||
        (s = cce_params_get_enum(p, "allocation", NULL, &cp->allocation)))
        return s;
    if (cp->lowrank)
        return cce_fail(CCE_ERR_STATE, CCE_NAME ": lowrank = true (stage 4, whitened low rank) is "
                                                "not implemented yet; give lowrank=false");
    if (cp->prune_heads)
        return cce_fail(CCE_ERR_STATE, CCE_NAME ": prune_heads = true is not implemented yet; give "
                                                "prune_heads=false");
    return CCE_OK;
}

static void cce_fini(void *priv) {
    cce_priv *cp = priv;
    free(cp->info);
    cp->info = NULL;
}

/* Weight parameters of the attention / FFN matrices of a layer. */
static int64_t attn_params(const cce_config *c, const cce_layer_shape *ls) {
    return 2 * (int64_t)c->dim * ls->n_heads * c->head_dim +
           2 * (int64_t)c->dim * ls->n_kv_heads * c->head_dim;
}

static int64_t ffn_params(const cce_config *c, const cce_layer_shape *ls) {
    return 3 * (int64_t)c->dim * ls->hidden_dim;
}

/* R^ffn and R^attn of layer l from the dense statistics. */
static cce_status layer_redundancy(const cce_priv *cp, cce_model *m, const cce_calib *calib, int l,
                                   cce_layer_info *li) {
    const cce_config *cfg = cce_model_config(m);
    const cce_layer_shape *ls = cce_model_layer(m, l);
    char what[64];
    cce_calib_input a, o;
    cce_status s;
    if ((s = cce_calib_site_input(calib, l, CCE_SITE_DOWN_IN, &a)) ||
        (s = cce_calib_site_input(calib, l, CCE_SITE_O_IN, &o)))
        return s;
    int H = ls->hidden_dim, mo = ls->n_heads * cfg->head_dim, d = cfg->dim;
    if (a.dim != H || o.dim != mo)
        return cce_fail(CCE_ERR_ARG,
                        CCE_NAME ": layer %d: calibration widths %d / %d, the layer has %d neurons "
                                 "and %d head outputs",
                        l, a.dim, o.dim, H, mo);
    cce_tensor *wo;
    if ((s = cce_model_layer_tensor(m, l, CCE_LT_O, &wo))) return s;
    size_t big = (size_t)(H > mo ? H : mo);
    if ((size_t)d > big) big = (size_t)d;
    double *G = malloc(big * big * sizeof *G);       /* [n, n] scratch second moment */
    double *C = malloc(big * big * sizeof *C);       /* [n, n] covariance */
    double *Cy = malloc((size_t)d * d * sizeof *Cy); /* [d, d] */
    if (!G || !C || !Cy) {
        s = cce_fail(CCE_ERR_NOMEM, CCE_NAME ": layer %d: covariances", l);
        goto done;
    }
    snprintf(what, sizeof what, "layer %d down_proj input", l);
    if ((s = cce_moments(a.sum, a.sum_outer, H, a.n_tokens, G, C, what)) ||
        (s = cce_eigen_redundancy(C, H, cp->eps, &li->R_ffn, NULL, NULL, what)))
        goto done;
    snprintf(what, sizeof what, "layer %d attention output", l);
    if ((s = cce_moments(o.sum, o.sum_outer, mo, o.n_tokens, G, C, what)) ||
        (s = cce_output_cov(wo->data, d, mo, C, Cy, what)) ||
        (s = cce_eigen_redundancy(Cy, d, cp->eps, &li->R_attn, NULL, NULL, what)))
        goto done;
    double pf = (double)ffn_params(cfg, ls), pa = (double)attn_params(cfg, ls);
    li->R = (pf * li->R_ffn + pa * li->R_attn) / (pf + pa);
done:
    free(G);
    free(C);
    free(Cy);
    return s;
}

static cce_status cce_plan_stage(void *priv, cce_model *m, const cce_calib *calib, cce_plan *plan) {
    cce_priv *cp = priv;
    const cce_config *cfg = cce_model_config(m);
    int L = cfg->n_layers;
    if (!calib) return cce_fail(CCE_ERR_STATE, CCE_NAME ": needs calibration data (give --calib)");
    if (cce_calib_n_layers(calib) != L)
        return cce_fail(CCE_ERR_ARG,
                        CCE_NAME ": calibration statistics of %d layers for a model of %d",
                        cce_calib_n_layers(calib), L);
    free(cp->info);
    cp->n_layers = L;
    cp->info = calloc((size_t)L, sizeof *cp->info);
    cce_budget_layer *bl = calloc((size_t)L, sizeof *bl); /* [present layers] */
    cce_budget_out *bo = calloc((size_t)L, sizeof *bo);   /* [present layers] */
    int *which = calloc((size_t)L, sizeof *which);        /* [present layers] layer index */
    cce_status s = CCE_OK;
    if (!cp->info || !bl || !bo || !which) {
        s = cce_fail(CCE_ERR_NOMEM, CCE_NAME ": %d layers", L);
        goto done;
    }
    int n = 0;
    for (int l = 0; l < L; l++) {
        const cce_layer_shape *ls = cce_model_layer(m, l);
        if (ls->removed) continue;
        cce_layer_info *li = &cp->info[l];
        if ((s = layer_redundancy(cp, m, calib, l, li))) goto done;
        double bi = cce_calib_block_influence(calib, l);
        if (!isfinite(bi)) {
            s = cce_fail(CCE_ERR_ARG,
                         CCE_NAME ": layer %d has no block influence in the "
                                  "calibration statistics",
                         l);
            goto done;
        }
        bl[n] =
            (cce_budget_layer){li->R, bi < 0 ? 0 : bi, attn_params(cfg, ls) + ffn_params(cfg, ls),
                               3 * (int64_t)cfg->dim, ls->hidden_dim - 1};
        which[n++] = l;
    }
    if (n == 0) goto done;
    if ((s = cce_budget_solve(bl, n, cce_plan_target(plan), cp->alpha, cp->spread,
                              cp->allocation == ALLOC_UNIFORM, bo, &cp->achieved))) {
        if (s == CCE_ERR_RANGE) {
            char why[256];
            snprintf(why, sizeof why, "%s", cce_error_detail());
            s = cce_fail(CCE_ERR_RANGE,
                         CCE_NAME ": ratio = %g: with lowrank = false the whole budget comes from "
                                  "FFN neurons, which cannot give it (%s)",
                         cce_plan_target(plan), why);
        }
        goto done;
    }
    if ((s = cce_plan_skip(plan, "layers.*.self_attn.*"))) goto done;
    for (int i = 0; i < n; i++) {
        int l = which[i];
        cp->info[l].budget = bo[i];
        cp->info[l].planned = 1;
        double frac = (double)bo[i].units / cce_model_layer(m, l)->hidden_dim;
        static const cce_layer_tensor ffn[3] = {CCE_LT_GATE, CCE_LT_UP, CCE_LT_DOWN};
        for (int t = 0; t < 3 && !s; t++) {
            char name[CCE_PLAN_NAME_MAX];
            cce_layer_tensor_name(l, ffn[t], name, sizeof name);
            s = cce_plan_allocate_tensor(plan, name, frac, "cce budget");
        }
        if (s) goto done;
    }
done:
    free(bl);
    free(bo);
    free(which);
    return s;
}

/* ---- Apply: stage 3 on one layer ------------------------------------------------------------- */

static int find_slot(const cce_block_job *job, cce_layer_tensor w) {
    char name[CCE_PLAN_NAME_MAX];
    cce_layer_tensor_name(job->layer, w, name, sizeof name);
    for (size_t i = 0; i < job->n; i++)
        if (!strcmp(job->tensors[i].name, name)) return (int)i;
    return -1;
}

/* Report row of a shrunk tensor: before [rows, cols] against after_pad [rows, cols] (the new
 * tensor with zeros at the removed rows/columns), output error against S (may be NULL). */
static cce_status report_tensor(cce_block_job *job, int slot, const float *after_pad,
                                int64_t numel_after, const double *S, const char *note,
                                double seconds, cce_report *r) {
    const cce_job_tensor *jt = &job->tensors[slot];
    const cce_tensor *w = jt->weight;
    int64_t rows = w->shape[0], cols = w->shape[1], numel = rows * cols;
    cce_report_row row;
    cce_report_row_init(&row, CCE_NAME, job->layer, jt->name);
    double num = 0, den = 0;
    int64_t zeros = 0;
    for (int64_t i = 0; i < numel; i++) {
        double dv = (double)w->data[i] - after_pad[i];
        num += dv * dv;
        den += (double)w->data[i] * w->data[i];
    }
    const cce_tensor *fresh = jt->resized;
    for (int64_t i = 0; i < numel_after; i++) zeros += fresh->data[i] == 0.0f;
    row.params_before = numel;
    row.params_after = numel_after - zeros;
    row.bytes_before = 4 * numel;
    row.bytes_after = cce_sparse_encoded_bytes(numel_after, numel_after - zeros, 0);
    row.bits_per_weight = numel ? 8.0 * (double)row.bytes_after / (double)numel : 0;
    row.sparsity = numel_after ? (double)zeros / (double)numel_after : 0;
    row.rel_fro_error = den > 0 ? sqrt(num / den) : 0;
    if (S) {
        cce_status s = cce_output_error(w->data, after_pad, rows, cols, S, &row.output_error);
        if (s) return s;
    }
    snprintf(row.note, sizeof row.note, "%.63s", note);
    row.seconds = seconds;
    return cce_report_add(r, &row);
}

static cce_status prune_ffn(const cce_priv *cp, cce_block_job *job, const int slot[3], int H, int d,
                            int k, cce_report *r) {
    const float *wg = job->tensors[slot[0]].weight->data; /* [H, d] */
    const float *wu = job->tensors[slot[1]].weight->data; /* [H, d] */
    const float *wd = job->tensors[slot[2]].weight->data; /* [d, H] */
    cce_calib_input a, x;
    cce_status s = cce_calib_site_input(job->calib, job->layer, CCE_SITE_DOWN_IN, &a);
    if (s) return s;
    if (a.dim != H)
        return cce_fail(CCE_ERR_ARG,
                        CCE_NAME ": layer %d: down_proj input statistics of width %d, "
                                 "the layer has %d neurons",
                        job->layer, a.dim, H);
    const double *Sx = NULL;
    if (!cce_calib_site_input(job->calib, job->layer, CCE_SITE_FFN_IN, &x) && x.dim == d)
        Sx = x.sum_outer;
    cce_error_clear();
    char what[64];
    snprintf(what, sizeof what, "layer %d FFN neurons", job->layer);
    double *G = malloc((size_t)H * H * sizeof *G);                /* [H, H] G_a */
    double *Wd = malloc((size_t)d * H * sizeof *Wd);              /* [d, H] down_proj in double */
    int *order = malloc((size_t)(k > 0 ? k : 1) * sizeof *order); /* [k] */
    int *keep = malloc((size_t)H * sizeof *keep);                 /* [H] */
    float *pad = malloc((size_t)d * H * sizeof *pad); /* [max(H, d) x ...] padded after */
    if (!G || !Wd || !order || !keep || !pad) {
        s = cce_fail(CCE_ERR_NOMEM, CCE_NAME ": %s", what);
        goto done;
    }
    double t0 = cce_prune_now();
    if ((s = cce_moments(a.sum, a.sum_outer, H, a.n_tokens, G, NULL, what))) goto done;
    double delta = cce_delta_of(G, H, cp->delta_scale);
    for (int64_t i = 0; i < (int64_t)d * H; i++) Wd[i] = wd[i];
    if ((s = cce_greedy_remove(G, H, delta, Wd, d, k, order, NULL, what))) goto done;
    for (int j = 0; j < H; j++) keep[j] = 1;
    for (int i = 0; i < k; i++) keep[order[i]] = 0;
    int m = H - k;
    cce_tensor *fg, *fu, *fd;
    int64_t sg[2] = {m, d}, sd[2] = {d, m};
    if ((s = cce_block_job_resize(job, (size_t)slot[0], 2, sg, &fg)) ||
        (s = cce_block_job_resize(job, (size_t)slot[1], 2, sg, &fu)) ||
        (s = cce_block_job_resize(job, (size_t)slot[2], 2, sd, &fd)))
        goto done;
    for (int j = 0, c = 0; j < H; j++)
        if (keep[j]) {
            memcpy(fg->data + (int64_t)c * d, wg + (int64_t)j * d, (size_t)d * sizeof(float));
            memcpy(fu->data + (int64_t)c * d, wu + (int64_t)j * d, (size_t)d * sizeof(float));
            c++;
        }
    if ((s = cce_fold_down(wd, d, H, G, delta, keep, cp->fold, fd->data, what))) goto done;
    double secs = cce_prune_now() - t0;
    char note[64];
    const cce_layer_info *li = cp->info && job->layer < cp->n_layers ? &cp->info[job->layer] : NULL;
    if (li && li->planned)
        snprintf(note, sizeof note, "kept %d of %d neurons; rho_l %.4f plan %.4f%s", m, H,
                 li->budget.achieved, li->budget.planned, cp->fold ? "" : "; no fold");
    else
        snprintf(note, sizeof note, "kept %d of %d neurons%s", m, H, cp->fold ? "" : "; no fold");
    /* gate and up: the kept rows in place, zeros at the removed ones */
    for (int t = 0; t < 2 && !s; t++) {
        const float *src = t ? wu : wg;
        for (int j = 0; j < H; j++)
            for (int c = 0; c < d; c++)
                pad[(int64_t)j * d + c] = keep[j] ? src[(int64_t)j * d + c] : 0.0f;
        s = report_tensor(job, slot[t], pad, (int64_t)m * d, Sx, note, secs / 3, r);
    }
    if (s) goto done;
    for (int a2 = 0; a2 < d; a2++)
        for (int j = 0, c = 0; j < H; j++)
            pad[(int64_t)a2 * H + j] = keep[j] ? fd->data[(int64_t)a2 * m + c++] : 0.0f;
    s = report_tensor(job, slot[2], pad, (int64_t)d * m, a.sum_outer, note, secs / 3, r);
done:
    free(G);
    free(Wd);
    free(order);
    free(keep);
    free(pad);
    return s;
}

static cce_status cce_apply(void *priv, cce_block_job *job, cce_report *r) {
    const cce_priv *cp = priv;
    if (job->layer < 0) return CCE_OK;
    static const cce_layer_tensor ffn[3] = {CCE_LT_GATE, CCE_LT_UP, CCE_LT_DOWN};
    int slot[3];
    const cce_job_tensor *first = NULL;
    int skipped = 0;
    for (int t = 0; t < 3; t++) {
        slot[t] = find_slot(job, ffn[t]);
        if (slot[t] < 0)
            return cce_fail(CCE_ERR_ARG, CCE_NAME ": layer %d: the job lacks an FFN tensor",
                            job->layer);
        const cce_job_tensor *jt = &job->tensors[slot[t]];
        skipped += jt->skip != 0;
        if (jt->skip) continue;
        if (!(jt->target >= 0 && jt->target < 1))
            return cce_fail(CCE_ERR_RANGE, CCE_NAME ": %s: ratio = %g is outside [0, 1)", jt->name,
                            jt->target);
        if (first && jt->target != first->target)
            return cce_fail(CCE_ERR_ARG,
                            CCE_NAME ": %s has ratio %g but %s has %g: FFN neurons couple these "
                                     "tensors; give them one ratio",
                            jt->name, jt->target, first->name, first->target);
        if (!first) first = jt;
    }
    if (skipped == 3) return CCE_OK;
    if (skipped)
        return cce_fail(CCE_ERR_ARG,
                        CCE_NAME ": layer %d: the plan skips some FFN tensors but not all",
                        job->layer);
    if (!job->model || !job->calib)
        return cce_fail(CCE_ERR_ARG,
                        CCE_NAME ": layer %d: the job carries no model or no "
                                 "calibration statistics",
                        job->layer);
    const cce_config *cfg = cce_model_config(job->model);
    const cce_layer_shape *ls = cce_model_layer(job->model, job->layer);
    if (!ls || ls->removed)
        return cce_fail(CCE_ERR_ARG, CCE_NAME ": layer %d is not a block of the model", job->layer);
    int H = ls->hidden_dim, d = cfg->dim;
    const cce_tensor *g = job->tensors[slot[0]].weight, *u = job->tensors[slot[1]].weight,
                     *dn = job->tensors[slot[2]].weight;
    if (g->ndim != 2 || u->ndim != 2 || dn->ndim != 2 || g->shape[0] != H || g->shape[1] != d ||
        u->shape[0] != H || u->shape[1] != d || dn->shape[0] != d || dn->shape[1] != H)
        return cce_fail(CCE_ERR_ARG,
                        CCE_NAME
                        ": layer %d: gate/up/down are not [%d, %d] / [%d, %d] as the layer "
                        "shape implies",
                        job->layer, H, d, d, H);
    int k = (int)cce_ratio_count(first->target, H);
    if (k == 0) return CCE_OK;
    if (k >= H)
        return cce_fail(CCE_ERR_RANGE, CCE_NAME ": layer %d: ratio %g removes every neuron",
                        job->layer, first->target);
    cce_status s = prune_ffn(cp, job, slot, H, d, k, r);
    if (s) return s;
    return cce_block_job_set_shape(job, H - k, ls->n_heads, ls->n_kv_heads, ls->kv_of_head);
}

const cce_strategy cce_strategy_cce = {
    .api_version = CCE_STRATEGY_API_VERSION,
    .name = CCE_NAME,
    .summary = "Contextual Compression Encoding: redundancy-driven budget, greedy neuron removal "
               "with least-squares folding",
    .params = cce_params_schema,
    .needs = CCE_NEEDS_CALIBRATION | CCE_NEEDS_SEQUENTIAL | CCE_NEEDS_RESIZE,
    .priv_size = sizeof(cce_priv),
    .init = cce_init,
    .plan = cce_plan_stage,
    .apply = cce_apply,
    .fini = cce_fini,
};
