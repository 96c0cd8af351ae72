/* The `cce` strategy: Contextual Compression Encoding (docs/CCE.md is the definition).
 *
 * Pass 1 (plan stage, dense statistics): per layer, R^ffn from the eigenvalues of C_a (input of
 * down_proj), R^attn from those of C_y = W_O C_o W_O^T (the attention output), R_l their
 * parameter-weighted mean, and BI_l; then the per-layer budget (cce_budget_solve).
 *   lowrank = false: the whole budget goes to stage 3 in units of one FFN neuron (3 * dim
 *   parameters), at most hidden_dim - 1 per layer; the plan allocates to gate/up/down the fraction
 *   of neurons removed (rule "cce budget") and skips the attention tensors.
 *   lowrank = true or prune_heads = true: the budget is in parameters; the plan gives each of the
 *   layer's seven matrices the layer's fraction rho_l, so that sum target * size is the layer's
 *   budget (a plan rule for a layer's tensors changes that sum). With heads and without low rank
 *   a layer gives at most all its neurons and query heads but one (and the kv heads those read).
 * Pass 2 (apply, sequential statistics of the compressed prefix), per layer with budget B:
 *   stage 3 takes the share S = floor(prune_share * B) (all of B without low rank) by greedy
 *   removal (cce_stage3_select, cce_heads.c): FFN neurons scored from G_a and down_proj, and with
 *   prune_heads query heads scored from the head Gram K (from G_o and o_proj, output map a row of
 *   ones: s_h = 1 / P_hh as CCE.md defines it), each kind with its own Schur downdates. Each round
 *   removes, of the best neuron and the best head, the one of lower score per parameter freed
 *   (neuron 3 dim; head 2 head_dim dim, plus 2 head_dim dim when it is the last query head of its
 *   kv head) among those still fitting in S; it stops when neither fits, so S is met within one
 *   neuron (3 dim). One neuron and one head always stay. Removed neurons: gate/up rows and down
 *   columns dropped, folded into the kept down columns (fold = true); removed heads: q rows and
 *   o columns dropped, the o columns folded into the kept ones from G_o the same way, and k/v rows
 *   of a kv head dropped once none of its query heads remain (kv_of_head renumbered). Biases of
 *   removed rows (gate/up, q/k/v) are sliced with them (cce_block_job_set_bias).
 *   stage 4 (lowrank = true): the remaining B - (what stage 3 removed) parameters from whitened
 *   low rank of the planned matrices after stage 3 (G_x for q/k/v, G_o restricted to the kept
 *   heads for o, G_x' for gate/up, G_a restricted to the kept neurons for down), each "dense" or a
 *   rank below break-even (cce_lowrank_choose: at least the budget, less than one rank unit over
 *   it), chosen ones stored as lowrank encodings.
 * Report: one row per changed matrix (rank for factored ones); the note holds the rank or
 * "dense", kept/total neurons (and heads when some went), achieved/planned rho_l, R_ffn/R_attn,
 * BI_l and u_l. The stage-3 scores (removed units at their removal, then the kept ones' final
 * scores) stay in cce_layer_info for the extra tables (cce_report.h: cce_layers, cce_ev,
 * cce_scores, built by cce_tables from each layer's cce_layer_report and scores). Stages 1-4 add
 * their wall time to the stage clock (cce_bench.c).
 *
 * Block parameters are the weight matrices of the blocks (norms are outside the budget).
 * calib_windows / calib_len describe the calibration set the strategy is defined with (64 x 256);
 * the driver supplies the statistics, and `cce compress` builds its calibration set from these
 * two when the command line gives no --calib-tokens / --calib-window. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "cce_internal.h"
#include "cce_report.h"
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
    double R_ffn, R_attn, R, BI;
    int64_t params; /* P_l */
    cce_budget_out budget;
    int planned; /* 1: the layer is in the budget */
    /* Stage-3 scores (set by apply): the removed units' scores at their removal, in removal
     * order, then the kept units' final scores. NULL until the layer is applied. */
    double *neuron_scores; /* [n_neurons] */
    int n_neurons, n_neurons_removed;
    double *head_scores; /* [n_heads] (prune_heads only) */
    int n_heads, n_heads_removed;
    cce_layer_report rep; /* the extra tables' values (cce_report.h) */
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
    return CCE_OK;
}

static void free_scores(cce_priv *cp) {
    for (int l = 0; cp->info && l < cp->n_layers; l++) {
        free(cp->info[l].neuron_scores);
        free(cp->info[l].head_scores);
        cce_layer_report_clear(&cp->info[l].rep);
    }
}

static void cce_fini(void *priv) {
    cce_priv *cp = priv;
    free_scores(cp);
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
        (s = cce_layer_report_curves(&li->rep, l, H, d, ls->n_heads)) ||
        (s = cce_eigen_redundancy(C, H, cp->eps, &li->R_ffn, &li->rep.r_ffn, li->rep.ev_ffn, what)))
        goto done;
    snprintf(what, sizeof what, "layer %d attention output", l);
    if ((s = cce_moments(o.sum, o.sum_outer, mo, o.n_tokens, G, C, what)) ||
        (s = cce_output_cov(wo->data, d, mo, C, Cy, what)) ||
        (s = cce_eigen_redundancy(Cy, d, cp->eps, &li->R_attn, &li->rep.r_attn, li->rep.ev_attn,
                                  what)))
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
    free_scores(cp);
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
        cce_stage_mark t1 = cce_stage_clock_now();
        s = layer_redundancy(cp, m, calib, l, li);
        cce_stage_clock_add(1, t1);
        if (s) goto done;
        double bi = cce_calib_block_influence(calib, l);
        if (!isfinite(bi)) {
            s = cce_fail(CCE_ERR_ARG,
                         CCE_NAME ": layer %d has no block influence in the "
                                  "calibration statistics",
                         l);
            goto done;
        }
        li->BI = bi < 0 ? 0 : bi;
        li->params = attn_params(cfg, ls) + ffn_params(cfg, ls);
        /* without low rank the unit is one FFN neuron (one always stays); with it one parameter,
         * stage 4 then taking whatever stage 3's neurons leave (its cap checked at apply); with
         * heads but no low rank one parameter, up to all neurons and heads but one (and the kv
         * head that one reads) */
        int64_t eh = 2 * (int64_t)cfg->head_dim * cfg->dim; /* q rows + o columns of a head */
        if (cp->lowrank)
            bl[n] = (cce_budget_layer){li->R, li->BI, li->params, 1, li->params};
        else if (cp->prune_heads)
            bl[n] = (cce_budget_layer){li->R, li->BI, li->params, 1,
                                       3 * (int64_t)cfg->dim * (ls->hidden_dim - 1) +
                                           eh * (ls->n_heads - 1) + eh * (ls->n_kv_heads - 1)};
        else
            bl[n] = (cce_budget_layer){li->R, li->BI, li->params, 3 * (int64_t)cfg->dim,
                                       ls->hidden_dim - 1};
        which[n++] = l;
    }
    if (n == 0) goto done;
    cce_stage_mark t2 = cce_stage_clock_now();
    s = cce_budget_solve(bl, n, cce_plan_target(plan), cp->alpha, cp->spread,
                         cp->allocation == ALLOC_UNIFORM, bo, &cp->achieved);
    cce_stage_clock_add(2, t2);
    if (s) {
        if (s == CCE_ERR_RANGE && !cp->lowrank && !cp->prune_heads) {
            char why[256];
            snprintf(why, sizeof why, "%s", cce_error_detail());
            s = cce_fail(CCE_ERR_RANGE,
                         CCE_NAME ": ratio = %g: with lowrank = false the whole budget comes from "
                                  "FFN neurons, which cannot give it (%s)",
                         cce_plan_target(plan), why);
        }
        goto done;
    }
    int by_params = cp->lowrank || cp->prune_heads; /* budget in parameters over 7 matrices */
    if (!by_params && (s = cce_plan_skip(plan, "layers.*.self_attn.*"))) goto done;
    for (int i = 0; i < n; i++) {
        int l = which[i];
        cp->info[l].budget = bo[i];
        cp->info[l].planned = 1;
        /* lowrank or heads: every matrix gets the layer's fraction (apply distributes it);
         * otherwise the FFN tensors the fraction of neurons removed */
        double frac =
            by_params ? bo[i].achieved : (double)bo[i].units / cce_model_layer(m, l)->hidden_dim;
        static const cce_layer_tensor mats[7] = {CCE_LT_Q,    CCE_LT_K,  CCE_LT_V,   CCE_LT_O,
                                                 CCE_LT_GATE, CCE_LT_UP, CCE_LT_DOWN};
        for (int t = by_params ? 0 : 4; t < 7 && !s; t++) {
            char name[CCE_PLAN_NAME_MAX];
            cce_layer_tensor_name(l, mats[t], name, sizeof name);
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

/* ---- Apply: stages 3 and 4 on one layer ------------------------------------------------------ */

/* The seven matrices of a block, in the order stage 4 handles them. */
enum { M_Q = 0, M_K, M_V, M_O, M_GATE, M_UP, M_DOWN, M_COUNT };
static const cce_layer_tensor mat_kind[M_COUNT] = {CCE_LT_Q,    CCE_LT_K,  CCE_LT_V,   CCE_LT_O,
                                                   CCE_LT_GATE, CCE_LT_UP, CCE_LT_DOWN};
static const cce_calib_site mat_site[M_COUNT] = {
    CCE_SITE_ATTN_IN, CCE_SITE_ATTN_IN, CCE_SITE_ATTN_IN, CCE_SITE_O_IN,
    CCE_SITE_FFN_IN,  CCE_SITE_FFN_IN,  CCE_SITE_DOWN_IN};

static int find_slot(const cce_block_job *job, cce_layer_tensor w) {
    char name[CCE_PLAN_NAME_MAX];
    cce_layer_tensor_name(job->layer, w, name, sizeof name);
    for (size_t i = 0; i < job->n; i++)
        if (!strcmp(job->tensors[i].name, name)) return (int)i;
    return -1;
}

/* One matrix of the layer during apply. */
typedef struct mat_state {
    int slot;             /* job slot */
    int active;           /* planned (not skipped) */
    int64_t rows, cols;   /* original shape */
    float *orig;          /* [rows, cols] the weight before this apply (borrowed from the job) */
    float *orig_own;      /* [rows, cols] owned copy of orig when `now` is factored in place */
    float *now;           /* [rows', cols'] the current values (the resized tensor or the weight) */
    int64_t nrows, ncols; /* current shape */
    int64_t rank;         /* -1: dense */
    const double *S_out;  /* [cols, cols] calibration sum x x^T for the report, or NULL */
    const int *rkeep;     /* [rows] 1: row kept (read only when nrows != rows) */
    const int *ckeep;     /* [cols] 1: column kept (NULL when ncols == cols) */
} mat_state;

/* Everything apply works on for one layer. */
typedef struct layer_work {
    const cce_priv *cp;
    cce_block_job *job;
    int d, H, k; /* width, neurons before, neurons removed */
    int *keep;   /* [H] 1: neuron kept (all 1 when k = 0) */
    double *Ga;  /* [H, H] G_a of the down_proj input */
    /* heads (prune_heads): query heads, kv heads, head_dim, query heads removed, kv heads kept */
    int nh, nkv, e, kh, nkv_kept;
    double *Go;           /* [nh e, nh e] G_o of the o_proj input, NULL when heads are not pruned */
    int *hkeep;           /* [nh] 1: query head kept */
    int *qkeep;           /* [nh e] rows of q / columns of o kept */
    int *kvkeep;          /* [nkv e] rows of k and v kept */
    int32_t *kv_map;      /* [nh] kv head of each kept query head (first nh - kh), renumbered */
    int ffn_on, heads_on; /* stage 3 may remove neurons / query heads in this layer */
    int64_t s3_share, s3_removed; /* stage 3's share of the budget and what it removed */
    cce_layer_info *li;           /* the layer's info (scores are stored there), or NULL */
    mat_state m[M_COUNT];
    int64_t budget, lr_budget, lr_removed; /* layer budget; stage 4's share and what it removed */
    double mu;
} layer_work;

/* Report row of one changed matrix: the original [rows, cols] against the new values placed at
 * the kept rows/columns (zeros at removed ones), output error against S_out when known. */
static cce_status report_matrix(const layer_work *w, int i, const char *note, double seconds,
                                cce_report *r) {
    const mat_state *ms = &w->m[i];
    const cce_job_tensor *jt = &w->job->tensors[ms->slot];
    int64_t rows = ms->rows, cols = ms->cols, numel = rows * cols,
            numel_after = ms->nrows * ms->ncols;
    float *pad = malloc((size_t)numel * sizeof *pad); /* [rows, cols] */
    if (!pad) return cce_fail(CCE_ERR_NOMEM, CCE_NAME ": report of %s", jt->name);
    int rows_cut = ms->nrows != rows, cols_cut = ms->ncols != cols;
    for (int64_t a = 0, ra = 0; a < rows; a++) {
        int row_kept = !rows_cut || ms->rkeep[a];
        for (int64_t b = 0, cb = 0; b < cols; b++) {
            int col_kept = !cols_cut || ms->ckeep[b];
            pad[a * cols + b] = row_kept && col_kept ? ms->now[ra * ms->ncols + cb] : 0.0f;
            cb += col_kept;
        }
        ra += row_kept;
    }
    cce_report_row row;
    cce_report_row_init(&row, CCE_NAME, w->job->layer, jt->name);
    double num = 0, den = 0;
    int64_t zeros = 0;
    for (int64_t x = 0; x < numel; x++) {
        double dv = (double)ms->orig[x] - pad[x];
        num += dv * dv;
        den += (double)ms->orig[x] * ms->orig[x];
    }
    for (int64_t x = 0; x < numel_after; x++) zeros += ms->now[x] == 0.0f;
    row.params_before = numel;
    if (ms->rank > 0) {
        row.params_after = ms->rank * (ms->nrows + ms->ncols);
        row.bytes_after = 4 * row.params_after;
        row.rank = ms->rank;
    } else {
        row.params_after = numel_after - zeros;
        row.bytes_after = cce_sparse_encoded_bytes(numel_after, numel_after - zeros, 0);
    }
    row.bytes_before = 4 * numel;
    row.bits_per_weight = numel ? 8.0 * (double)row.bytes_after / (double)numel : 0;
    row.sparsity = numel_after ? (double)zeros / (double)numel_after : 0;
    row.rel_fro_error = den > 0 ? sqrt(num / den) : 0;
    cce_status s = CCE_OK;
    if (ms->S_out) s = cce_output_error(ms->orig, pad, rows, cols, ms->S_out, &row.output_error);
    free(pad);
    if (s) return s;
    snprintf(row.note, sizeof row.note, "%.63s", note);
    row.seconds = seconds;
    return cce_report_add(r, &row);
}

/* Keeps the stage-3 scores of kind kd in *dst (removed ones in removal order, then the kept ones'
 * final scores): n units. */
static cce_status keep_scores(const cce_stage3_kind *kd, double **dst, int *n, int *n_removed) {
    free(*dst);
    *dst = NULL;
    *n = *n_removed = 0;
    if (!kd->g) return CCE_OK;
    if (!(*dst = malloc((size_t)kd->n * sizeof **dst)))
        return cce_fail(CCE_ERR_NOMEM, CCE_NAME ": stage-3 scores of %d units", kd->n);
    const double *now = cce_greedy_scores(kd->g);
    memcpy(*dst, kd->score, (size_t)kd->removed * sizeof **dst);
    for (int j = 0, c = kd->removed; j < kd->n; j++)
        if (isfinite(now[j])) (*dst)[c++] = now[j];
    *n = kd->n;
    *n_removed = kd->removed;
    return CCE_OK;
}

/* Slices the job's bias `which` (when the model has it) to the rows with keep [rows]. */
static cce_status slice_bias(cce_block_job *job, cce_layer_bias which, const int *keep,
                             int64_t rows) {
    const cce_tensor *b = job->bias[which];
    if (!b) return CCE_OK;
    if (cce_tensor_numel(b) != rows)
        return cce_fail(CCE_ERR_ARG, CCE_NAME ": layer %d: the %s bias has %lld values, not %lld",
                        job->layer, cce_layer_bias_proj(which), (long long)cce_tensor_numel(b),
                        (long long)rows);
    float *v = malloc((size_t)(rows > 0 ? rows : 1) * sizeof *v); /* [kept rows] */
    if (!v) return cce_fail(CCE_ERR_NOMEM, CCE_NAME ": layer %d: bias", job->layer);
    int64_t n = 0;
    for (int64_t a = 0; a < rows; a++)
        if (keep[a]) v[n++] = b->data[a];
    cce_status s = cce_block_job_set_bias(job, which, v, n);
    free(v);
    return s;
}

/* Stage 3 on the FFN: gate/up rows and down columns of the removed neurons (keep [H]) dropped, the
 * dropped ones folded into the kept down columns (fold = true). */
static cce_status shrink_ffn(layer_work *w, const char *what) {
    cce_block_job *job = w->job;
    int H = w->H, d = w->d, m = H - w->k;
    mat_state *g = &w->m[M_GATE], *u = &w->m[M_UP], *dn = &w->m[M_DOWN];
    cce_tensor *fg, *fu, *fd;
    int64_t sg[2] = {m, d}, sd[2] = {d, m};
    cce_status s;
    if ((s = cce_block_job_resize(job, (size_t)g->slot, 2, sg, &fg)) ||
        (s = cce_block_job_resize(job, (size_t)u->slot, 2, sg, &fu)) ||
        (s = cce_block_job_resize(job, (size_t)dn->slot, 2, sd, &fd)))
        return s;
    cce_copy_kept(g->orig, H, d, w->keep, NULL, fg->data);
    cce_copy_kept(u->orig, H, d, w->keep, NULL, fu->data);
    if ((s = slice_bias(job, CCE_LB_GATE, w->keep, H)) ||
        (s = slice_bias(job, CCE_LB_UP, w->keep, H)))
        return s;
    double delta = cce_delta_of(w->Ga, H, w->cp->delta_scale);
    if ((s = cce_fold_down(dn->orig, d, H, w->Ga, delta, w->keep, w->cp->fold, fd->data, what)))
        return s;
    g->now = fg->data;
    u->now = fu->data;
    dn->now = fd->data;
    g->nrows = u->nrows = dn->ncols = m;
    g->rkeep = u->rkeep = dn->ckeep = w->keep;
    return CCE_OK;
}

/* Stage 3 on the attention: q rows and o columns of the removed query heads (hkeep) dropped, the
 * dropped o columns folded into the kept ones from G_o (fold = true), k/v rows of the kv heads no
 * kept query head reads dropped; kv_map renumbered. */
static cce_status shrink_heads(layer_work *w, const int32_t *kv_of_head, const char *what) {
    cce_block_job *job = w->job;
    int d = w->d, nh = w->nh, nkv = w->nkv, e = w->e, mq = nh * e, kept = nh - w->kh;
    mat_state *q = &w->m[M_Q], *k = &w->m[M_K], *v = &w->m[M_V], *o = &w->m[M_O];
    int *kk = calloc((size_t)nkv, sizeof *kk); /* [nkv] 1: kv head still read */
    int *kn = calloc((size_t)nkv, sizeof *kn); /* [nkv] new index of a kept kv head, or -1 */
    cce_status s = CCE_OK;
    if (!kk || !kn) {
        s = cce_fail(CCE_ERR_NOMEM, CCE_NAME ": %s: %d kv heads", what, nkv);
        goto done;
    }
    for (int g = 0; g < nkv; g++) kk[g] = 0;
    for (int h = 0; h < nh; h++)
        if (w->hkeep[h]) kk[kv_of_head[h]] = 1;
    w->nkv_kept = 0;
    for (int g = 0; g < nkv; g++) kn[g] = kk[g] ? w->nkv_kept++ : -1;
    for (int h = 0, j = 0; h < nh; h++)
        if (w->hkeep[h]) w->kv_map[j++] = kn[kv_of_head[h]];
    cce_expand_keep(w->hkeep, nh, e, w->qkeep);
    cce_expand_keep(kk, nkv, e, w->kvkeep);
    cce_tensor *fq, *fo;
    int64_t sq[2] = {(int64_t)kept * e, d}, so[2] = {d, (int64_t)kept * e};
    if ((s = cce_block_job_resize(job, (size_t)q->slot, 2, sq, &fq)) ||
        (s = cce_block_job_resize(job, (size_t)o->slot, 2, so, &fo)))
        goto done;
    cce_copy_kept(q->orig, mq, d, w->qkeep, NULL, fq->data);
    if ((s = slice_bias(job, CCE_LB_Q, w->qkeep, mq))) goto done;
    double delta = cce_delta_of(w->Go, mq, w->cp->delta_scale);
    if ((s = cce_fold_down(o->orig, d, mq, w->Go, delta, w->qkeep, w->cp->fold, fo->data, what)))
        goto done;
    q->now = fq->data;
    o->now = fo->data;
    q->nrows = o->ncols = (int64_t)kept * e;
    q->rkeep = o->ckeep = w->qkeep;
    if (w->nkv_kept < nkv) {
        mat_state *kvm[2] = {k, v};
        int64_t skv[2] = {(int64_t)w->nkv_kept * e, d};
        for (int i = 0; i < 2; i++) {
            cce_tensor *f;
            if ((s = cce_block_job_resize(job, (size_t)kvm[i]->slot, 2, skv, &f))) goto done;
            cce_copy_kept(kvm[i]->orig, (int64_t)nkv * e, d, w->kvkeep, NULL, f->data);
            if ((s = slice_bias(job, i ? CCE_LB_V : CCE_LB_K, w->kvkeep, (int64_t)nkv * e)))
                goto done;
            kvm[i]->now = f->data;
            kvm[i]->nrows = skv[0];
            kvm[i]->rkeep = w->kvkeep;
        }
    }
done:
    free(kk);
    free(kn);
    return s;
}

/* Stage 3: the interleaved greedy removal (cce_stage3_select) of FFN neurons (G_a, down_proj;
 * when w->Ga is set) and query heads (K from G_o and o_proj; when w->Go is set) within the layer's
 * stage-3 share, then the FFN and the attention shrunk and folded. The scores go to w->li. */
static cce_status stage3_layer(layer_work *w) {
    const cce_priv *cp = w->cp;
    cce_block_job *job = w->job;
    const cce_layer_shape *ls = cce_model_layer(job->model, job->layer);
    int H = w->H, d = w->d, nh = w->nh, e = w->e;
    char what[64], hwhat[64];
    snprintf(what, sizeof what, "layer %d FFN neurons", job->layer);
    snprintf(hwhat, sizeof hwhat, "layer %d attention heads", job->layer);
    cce_stage3_kind kinds[2];
    memset(kinds, 0, sizeof kinds);
    double *Wd = NULL, *K = NULL; /* [d, H] down_proj in double; [nh, nh] head Gram */
    cce_status s = CCE_OK;
    cce_stage_mark t1 = cce_stage_clock_now();
    if (w->Ga) {
        cce_stage3_kind *kd = &kinds[0];
        Wd = malloc((size_t)d * H * sizeof *Wd);
        kd->order = malloc((size_t)H * sizeof *kd->order);
        kd->score = malloc((size_t)H * sizeof *kd->score);
        if (!Wd || !kd->order || !kd->score) {
            s = cce_fail(CCE_ERR_NOMEM, CCE_NAME ": %s", what);
            goto done;
        }
        for (int64_t i = 0; i < (int64_t)d * H; i++) Wd[i] = w->m[M_DOWN].orig[i];
        double delta = cce_delta_of(w->Ga, H, cp->delta_scale);
        if ((s = cce_greedy_new(w->Ga, H, delta, Wd, d, what, &kd->g))) goto done;
        kd->n = H;
        kd->unit_params = 3 * (int64_t)d;
    }
    if (w->Go) {
        cce_stage3_kind *kd = &kinds[1];
        K = malloc((size_t)nh * nh * sizeof *K);
        kd->order = malloc((size_t)nh * sizeof *kd->order);
        kd->score = malloc((size_t)nh * sizeof *kd->score);
        if (!K || !kd->order || !kd->score) {
            s = cce_fail(CCE_ERR_NOMEM, CCE_NAME ": %s", hwhat);
            goto done;
        }
        if ((s = cce_head_gram(w->m[M_O].orig, d, nh, e, w->Go, K, hwhat)) ||
            (s = cce_head_greedy_new(K, nh, cp->delta_scale, hwhat, &kd->g)))
            goto done;
        kd->n = nh;
        kd->unit_params = kd->group_params = 2 * (int64_t)e * d;
        kd->group = ls->kv_of_head;
        kd->n_groups = w->nkv;
    }
    if ((s = cce_stage3_select(kinds, 2, w->s3_share, &w->s3_removed, what))) goto done;
    w->k = kinds[0].removed;
    w->kh = kinds[1].removed;
    if (w->li && ((s = keep_scores(&kinds[0], &w->li->neuron_scores, &w->li->n_neurons,
                                   &w->li->n_neurons_removed)) ||
                  (s = keep_scores(&kinds[1], &w->li->head_scores, &w->li->n_heads,
                                   &w->li->n_heads_removed))))
        goto done;
    for (int i = 0; i < w->k; i++) w->keep[kinds[0].order[i]] = 0;
    for (int i = 0; i < w->kh; i++) w->hkeep[kinds[1].order[i]] = 0;
    cce_stage_mark t3 = cce_stage_clock_now();
    cce_stage_clock_add(1, t1);
    if (w->k > 0 && (s = shrink_ffn(w, what))) goto done;
    if (w->kh > 0) s = shrink_heads(w, ls->kv_of_head, hwhat);
    cce_stage_clock_add(3, t3);
done:
    for (int i = 0; i < 2; i++) {
        cce_greedy_free(kinds[i].g);
        free(kinds[i].order);
        free(kinds[i].score);
    }
    free(Wd);
    free(K);
    return s;
}

/* G [n, n] = E[x x^T] of a site, for the kept inputs only when keep is not NULL (n = kept). The
 * caller frees *G. */
static cce_status site_moment(const layer_work *w, cce_calib_site site, int dim, const int *keep,
                              double **G, int *n_out) {
    *G = NULL;
    cce_calib_input in;
    cce_status s = cce_calib_site_input(w->job->calib, w->job->layer, site, &in);
    if (s) return s;
    if (!in.sum_outer || in.dim != dim)
        return cce_fail(CCE_ERR_ARG,
                        CCE_NAME ": layer %d: calibration site %d has %s of width %d, the layer "
                                 "needs %d",
                        w->job->layer, (int)site,
                        in.sum_outer ? "second moments"
                                     : "no second "
                                       "moments",
                        in.dim, dim);
    double *full = malloc((size_t)dim * dim * sizeof *full); /* [dim, dim] */
    if (!full) return cce_fail(CCE_ERR_NOMEM, CCE_NAME ": layer %d: second moment", w->job->layer);
    if ((s = cce_moments(in.sum, in.sum_outer, dim, in.n_tokens, full, NULL, "second moment"))) {
        free(full);
        return s;
    }
    int n = 0;
    if (!keep) {
        *G = full;
        *n_out = dim;
        return CCE_OK;
    }
    int *idx = malloc((size_t)dim * sizeof *idx); /* [kept] */
    if (!idx) {
        free(full);
        return cce_fail(CCE_ERR_NOMEM, CCE_NAME ": layer %d: second moment", w->job->layer);
    }
    for (int j = 0; j < dim; j++)
        if (keep[j]) idx[n++] = j;
    for (int a = 0; a < n; a++) /* compact in place: row a of the result is before row idx[a] */
        for (int b = 0; b < n; b++) full[(int64_t)a * n + b] = full[(int64_t)idx[a] * dim + idx[b]];
    free(idx);
    *G = full;
    *n_out = n;
    return CCE_OK;
}

/* Stage 4: the whitened SVD of every planned matrix, the rank choice meeting lr_budget, and the
 * chosen ones replaced by their factors (values and lowrank encoding). */
static cce_status lowrank_layer(layer_work *w) {
    const cce_priv *cp = w->cp;
    cce_lr_matrix lm[M_COUNT];
    cce_lowrank_svd *svd[M_COUNT] = {0};
    double *S[M_COUNT] = {0};
    int64_t rank[M_COUNT];
    int idx[M_COUNT], n = 0;
    char what[M_COUNT][CCE_PLAN_NAME_MAX + 16];
    cce_status s = CCE_OK;
    for (int i = 0; i < M_COUNT && !s; i++) {
        mat_state *ms = &w->m[i];
        if (!ms->active) continue;
        double *G = NULL;
        int gn = 0;
        snprintf(what[n], sizeof what[n], CCE_NAME ": %s", w->job->tensors[ms->slot].name);
        s = site_moment(w, mat_site[i], (int)ms->cols, ms->ncols != ms->cols ? ms->ckeep : NULL, &G,
                        &gn);
        if (s) break;
        double delta = cce_delta_of(G, gn, cp->delta_scale);
        s = cce_lowrank_whitened(ms->now, ms->nrows, ms->ncols, G, delta, what[n], &S[n], &svd[n]);
        free(G);
        if (s) break;
        lm[n] = (cce_lr_matrix){ms->nrows, ms->ncols, svd[n]->k, svd[n]->sigma, what[n]};
        idx[n++] = i;
    }
    if (!s) {
        s = cce_lowrank_choose(lm, n, w->lr_budget, rank, &w->lr_removed, &w->mu);
        if (s == CCE_ERR_RANGE) cce_error_prefix(CCE_NAME ": layer %d: ", w->job->layer);
    }
    for (int j = 0; j < n && !s; j++) {
        mat_state *ms = &w->m[idx[j]];
        ms->rank = rank[j];
        if (rank[j] < 1) continue;
        cce_job_tensor *jt = &w->job->tensors[ms->slot];
        if (ms->now == ms->orig) { /* in place: keep the original for the report */
            size_t bytes = (size_t)(ms->rows * ms->cols) * sizeof(float);
            if (!(ms->orig_own = malloc(bytes))) {
                s = cce_fail(CCE_ERR_NOMEM, "%s: copy of the weight", what[j]);
                break;
            }
            memcpy(ms->orig_own, ms->orig, bytes);
            ms->orig = ms->orig_own;
        }
        cce_encoding *enc;
        if ((s = cce_lowrank_encode(svd[j], rank[j], what[j], ms->now, &enc))) break;
        cce_encoding_free(jt->encoding);
        jt->encoding = enc;
    }
    for (int j = 0; j < n; j++) {
        cce_lowrank_svd_free(svd[j]);
        free(S[j]);
    }
    return s;
}

/* Checks the job's matrices and fills w->m; the layer budget in parameters: with lowrank the sum
 * of target * size over the planned matrices, without it the FFN's common target. */
static cce_status read_job(layer_work *w) {
    cce_block_job *job = w->job;
    const cce_priv *cp = w->cp;
    const cce_config *cfg = cce_model_config(job->model);
    const cce_layer_shape *ls = cce_model_layer(job->model, job->layer);
    if (!ls || ls->removed)
        return cce_fail(CCE_ERR_ARG, CCE_NAME ": layer %d is not a block of the model", job->layer);
    int d = cfg->dim, H = ls->hidden_dim, mo = ls->n_heads * cfg->head_dim,
        mk = ls->n_kv_heads * cfg->head_dim;
    int64_t want[M_COUNT][2] = {{mo, d}, {mk, d}, {mk, d}, {d, mo}, {H, d}, {H, d}, {d, H}};
    w->d = d;
    w->H = H;
    double budget = 0;
    const cce_job_tensor *first_ffn = NULL;
    int by_params = cp->lowrank || cp->prune_heads; /* the plan's budget is in parameters */
    for (int i = 0; i < M_COUNT; i++) {
        mat_state *ms = &w->m[i];
        ms->slot = find_slot(job, mat_kind[i]);
        ms->rank = -1;
        if (ms->slot < 0)
            return cce_fail(CCE_ERR_ARG, CCE_NAME ": layer %d: the job lacks a weight matrix",
                            job->layer);
        cce_job_tensor *jt = &job->tensors[ms->slot];
        const cce_tensor *t = jt->weight;
        if (t->ndim != 2 || t->shape[0] != want[i][0] || t->shape[1] != want[i][1])
            return cce_fail(CCE_ERR_ARG,
                            CCE_NAME ": %s is not [%lld, %lld] as the layer shape implies",
                            jt->name, (long long)want[i][0], (long long)want[i][1]);
        ms->rows = ms->nrows = t->shape[0];
        ms->cols = ms->ncols = t->shape[1];
        ms->orig = ms->now = t->data;
        ms->active = !jt->skip && (by_params || i >= M_GATE);
        if (!ms->active) continue;
        if (!(jt->target >= 0 && jt->target < 1))
            return cce_fail(CCE_ERR_RANGE, CCE_NAME ": %s: ratio = %g is outside [0, 1)", jt->name,
                            jt->target);
        if (by_params) {
            budget += jt->target * (double)(ms->rows * ms->cols);
        } else if (first_ffn && jt->target != first_ffn->target) {
            return cce_fail(CCE_ERR_ARG,
                            CCE_NAME ": %s has ratio %g but %s has %g: FFN neurons couple these "
                                     "tensors; give them one ratio (or lowrank=true)",
                            jt->name, jt->target, first_ffn->name, first_ffn->target);
        } else if (!first_ffn) {
            first_ffn = jt;
        }
    }
    int ffn_active = w->m[M_GATE].active + w->m[M_UP].active + w->m[M_DOWN].active;
    if (!by_params && ffn_active != 0 && ffn_active != 3)
        return cce_fail(CCE_ERR_ARG,
                        CCE_NAME ": layer %d: the plan skips some FFN tensors but not all",
                        job->layer);
    w->nh = ls->n_heads;
    w->nkv = ls->n_kv_heads;
    w->e = cfg->head_dim;
    w->ffn_on = ffn_active == 3;
    w->heads_on = cp->prune_heads && w->m[M_Q].active && w->m[M_K].active && w->m[M_V].active &&
                  w->m[M_O].active;
    if (by_params) { /* stage 3 takes prune_share of it (all of it without low rank) */
        w->budget = llround(budget);
        w->s3_share = cp->lowrank ? (int64_t)floor(cp->prune_share * (double)w->budget) : w->budget;
    } else if (first_ffn) {
        int64_t k = cce_ratio_count(first_ffn->target, H);
        if (k >= H)
            return cce_fail(CCE_ERR_RANGE, CCE_NAME ": layer %d: ratio %g removes every neuron",
                            job->layer, first_ffn->target);
        w->budget = w->s3_share = 3 * (int64_t)d * k;
    }
    /* calibration sums for the reports' output errors */
    for (int i = 0; i < M_COUNT; i++) {
        cce_calib_input in;
        if (!cce_calib_site_input(job->calib, job->layer, mat_site[i], &in) && in.sum_outer &&
            in.dim == w->m[i].cols)
            w->m[i].S_out = in.sum_outer;
    }
    cce_error_clear();
    return CCE_OK;
}

static void layer_note(const layer_work *w, const mat_state *ms, char *note, size_t cap) {
    const cce_priv *cp = w->cp;
    const cce_layer_info *li =
        cp->info && w->job->layer < cp->n_layers ? &cp->info[w->job->layer] : NULL;
    char r[24];
    if (ms->rank > 0)
        snprintf(r, sizeof r, "r%lld", (long long)ms->rank);
    else
        snprintf(r, sizeof r, "dense");
    double P = li && li->planned ? (double)li->params : 0;
    double got = P > 0 ? (double)(w->s3_removed + w->lr_removed) / P : 0;
    char buf[192], heads[24] = "";
    if (w->kh > 0) snprintf(heads, sizeof heads, " h%d/%d", w->nh - w->kh, w->nh);
    if (li && li->planned)
        snprintf(buf, sizeof buf, "%s k%d/%d%s rho %.3f/%.3f R%.2f/%.2f BI%.3f u%.2f%s", r,
                 w->H - w->k, w->H, heads, got, li->budget.planned, li->R_ffn, li->R_attn, li->BI,
                 li->budget.u, cp->fold ? "" : " nofold");
    else
        snprintf(buf, sizeof buf, "%s kept %d of %d neurons%s", r, w->H - w->k, w->H,
                 cp->fold ? "" : "; no fold");
    snprintf(note, cap, "%.*s", (int)(cap - 1), buf);
}

static cce_status cce_apply(void *priv, cce_block_job *job, cce_report *r) {
    const cce_priv *cp = priv;
    size_t first_row = r->n; /* this apply's rows start here */
    if (job->layer < 0) return CCE_OK;
    int any = 0;
    for (int i = 0; i < M_COUNT; i++) {
        int slot = find_slot(job, mat_kind[i]);
        any |= slot >= 0 && !job->tensors[slot].skip &&
               (cp->lowrank || cp->prune_heads || i >= M_GATE);
    }
    if (!any) return CCE_OK;
    if (!job->model || !job->calib)
        return cce_fail(CCE_ERR_ARG,
                        CCE_NAME ": layer %d: the job carries no model or no "
                                 "calibration statistics",
                        job->layer);
    cce_priv *mp = priv;
    layer_work w = {.cp = cp, .job = job};
    if (mp->info && job->layer < mp->n_layers) w.li = &mp->info[job->layer];
    cce_status s = read_job(&w);
    if (s) return s;
    if (w.budget <= 0) goto done;
    double t0 = cce_prune_now();
    int mq = w.nh * w.e, mkv = w.nkv * w.e, n;
    w.keep = malloc((size_t)w.H * sizeof *w.keep);      /* [H] */
    w.hkeep = malloc((size_t)w.nh * sizeof *w.hkeep);   /* [nh] */
    w.qkeep = malloc((size_t)mq * sizeof *w.qkeep);     /* [nh e] */
    w.kvkeep = malloc((size_t)mkv * sizeof *w.kvkeep);  /* [nkv e] */
    w.kv_map = malloc((size_t)w.nh * sizeof *w.kv_map); /* [nh] */
    if (!w.keep || !w.hkeep || !w.qkeep || !w.kvkeep || !w.kv_map) {
        s = cce_fail(CCE_ERR_NOMEM, CCE_NAME ": layer %d", job->layer);
        goto done;
    }
    for (int j = 0; j < w.H; j++) w.keep[j] = 1;
    for (int j = 0; j < w.nh; j++) w.hkeep[j] = 1;
    int64_t head_cost = 2 * (int64_t)w.e * w.d;
    if (w.ffn_on && w.s3_share >= 3 * (int64_t)w.d &&
        (s = site_moment(&w, CCE_SITE_DOWN_IN, w.H, NULL, &w.Ga, &n)))
        goto done;
    if (w.heads_on && w.s3_share >= head_cost &&
        (s = site_moment(&w, CCE_SITE_O_IN, mq, NULL, &w.Go, &n)))
        goto done;
    if ((w.Ga || w.Go) && (s = stage3_layer(&w))) goto done;
    w.lr_budget = cp->lowrank ? w.budget - w.s3_removed : 0;
    cce_stage_mark t4 = cce_stage_clock_now();
    if (w.lr_budget > 0) s = lowrank_layer(&w);
    cce_stage_clock_add(4, t4);
    if (s) goto done;
    double secs = cce_prune_now() - t0;
    int changed = 0;
    for (int i = 0; i < M_COUNT; i++)
        changed += w.m[i].rank > 0 || w.m[i].nrows != w.m[i].rows || w.m[i].ncols != w.m[i].cols;
    for (int i = 0; i < M_COUNT && !s; i++) {
        mat_state *ms = &w.m[i];
        if (!(ms->rank > 0 || ms->nrows != ms->rows || ms->ncols != ms->cols)) continue;
        char note[64];
        layer_note(&w, ms, note, sizeof note);
        s = report_matrix(&w, i, note, secs / changed, r);
    }
    if (!s && (w.k > 0 || w.kh > 0)) {
        const cce_layer_shape *ls = cce_model_layer(job->model, job->layer);
        s = w.kh > 0 ? cce_block_job_set_shape(job, w.H - w.k, w.nh - w.kh, w.nkv_kept, w.kv_map)
                     : cce_block_job_set_shape(job, w.H - w.k, ls->n_heads, ls->n_kv_heads,
                                               ls->kv_of_head);
    }
done:
    if (!s && w.li) cce_layer_report_apply(&w.li->rep, job, r, first_row);
    for (int i = 0; i < M_COUNT; i++) free(w.m[i].orig_own);
    free(w.keep);
    free(w.hkeep);
    free(w.qkeep);
    free(w.kvkeep);
    free(w.kv_map);
    free(w.Ga);
    free(w.Go);
    return s;
}

/* The extra tables (cce_report.h): every layer's plan and apply values and its stage-3 scores. */
static cce_status cce_tables(void *priv, cce_table_list *out) {
    const cce_priv *cp = priv;
    if (!cp->info || cp->n_layers < 1) return CCE_OK;
    cce_layer_report *reps = malloc((size_t)cp->n_layers * sizeof *reps); /* [n_layers] views */
    if (!reps) return cce_fail(CCE_ERR_NOMEM, CCE_NAME ": extra tables of %d layers", cp->n_layers);
    for (int l = 0; l < cp->n_layers; l++) {
        const cce_layer_info *li = &cp->info[l];
        reps[l] = li->rep; /* shallow: the curves stay li's */
        cce_layer_report_plan(&reps[l], li->planned, li->R_ffn, li->R_attn, li->R, li->BI,
                              li->budget.u, li->budget.z, li->budget.planned, li->params);
        cce_layer_report_scores(&reps[l], li->neuron_scores, li->n_neurons, li->n_neurons_removed);
    }
    cce_status s = cce_report_tables(reps, cp->n_layers, out);
    free(reps);
    return s;
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
    .tables = cce_tables,
};
