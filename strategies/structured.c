/* Structured magnitude pruning: whole FFN neurons and whole attention heads, which really shrinks
 * the matrices (DESIGN section 5; model.h "Layer shapes").
 *
 * Units and scores (parameter `unit`: ffn, heads or both):
 *   FFN neuron j   score ||gate_j|| * ||up_j|| * ||down_:,j||  (row j of gate_proj and up_proj,
 *                  column j of down_proj). Since |silu(z)| <= |z|, the neuron's contribution to
 *                  the block output is at most this product times ||x||^2, so it bounds what
 *                  removing the neuron can change. Removal drops gate/up rows and down columns.
 *   query head h   score ||Wq rows of h||_F * ||Wo columns of h||_F (the head's read-in and
 *                  write-out). Removal drops its head_dim q rows and o columns. A kv head goes only
 *                  when no remaining query head reads it (its k and v rows are dropped then), and
 *                  kv_of_head is renumbered to the kept kv heads.
 * In each layer the floor(ratio * n) lowest-scoring units go (cce_ratio_count; n = the layer's
 * hidden_dim or n_heads); ties: the earlier unit goes first. Kept units keep their order. A FFN
 * neuron owns 3 * dim parameters, so the FFN loses exactly that fraction of its parameters; a
 * query head owns 2 * head_dim * dim, and the kv heads that go with it add to the removed count.
 *
 * The ratio comes from the plan: the coupled tensors (gate, up, down / q, k, v, o) must have one
 * target in a layer (an override on one of them alone is an error), or all be skipped. Removing
 * every unit of a layer is refused (ratio < 1): removing a whole block is ShortGPT's job. Tensors
 * outside the blocks are left alone. Needs resizing (CCE_NEEDS_RESIZE); calibration is optional
 * and only used for the output errors in the report.
 *
 * Biases (model.h): the biases of the removed rows of q (heads), k and v (kv heads) and gate and up
 * (neurons) go with their rows (cce_block_job_set_bias with the kept values); o and down keep
 * theirs (their rows are the residual stream). Biases do not enter the scores. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calib.h"
#include "compress.h"
#include "shrink_common.h"
#include "strategy.h"

#define NAME "structured"

enum { UNIT_FFN = 0, UNIT_HEADS, UNIT_BOTH };

static const char *const unit_choices[] = {"ffn", "heads", "both", NULL};

static const cce_param structured_params[] = {
    {"ratio", CCE_PARAM_FLOAT, "0.5", 0, 1, CCE_PARAM_MAX_OPEN, NULL,
     "fraction of each layer's FFN neurons / query heads removed (the plan's global target)"},
    {"unit", CCE_PARAM_ENUM, "ffn", 0, 0, 0, unit_choices,
     "what is removed: FFN neurons, attention heads, or both"},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL},
};

typedef struct structured_priv {
    int unit;
} structured_priv;

static cce_status structured_init(void *priv, const cce_params *p) {
    structured_priv *sp = priv;
    return cce_params_get_enum(p, "unit", NULL, &sp->unit);
}

/* The plan skips the other unit's tensors, so the recorded plan shows a ratio only where one
 * applies (outside the blocks, the default skips already hold). */
static cce_status structured_plan(void *priv, cce_model *m, const cce_calib *calib,
                                  cce_plan *plan) {
    (void)m;
    (void)calib;
    const structured_priv *sp = priv;
    if (sp->unit == UNIT_FFN) return cce_plan_skip(plan, "layers.*.self_attn.*");
    if (sp->unit == UNIT_HEADS) return cce_plan_skip(plan, "layers.*.mlp.*");
    return CCE_OK;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- Selection ------------------------------------------------------------------------------- */

typedef struct scored {
    double score;
    int index;
} scored;

static int by_score(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* keep[n]: 1 for the n - k highest scores (ties: the earlier unit goes first). */
static cce_status select_kept(const double *score, int n, int k, int *keep) {
    scored *s = malloc((size_t)n * sizeof *s); /* [n] */
    if (!s) return cce_fail(CCE_ERR_NOMEM, NAME ": %d scores", n);
    for (int i = 0; i < n; i++) s[i] = (scored){score[i], i};
    qsort(s, (size_t)n, sizeof *s, by_score);
    for (int i = 0; i < n; i++) keep[i] = 1;
    for (int i = 0; i < k; i++) keep[s[i].index] = 0;
    free(s);
    return CCE_OK;
}

/* ---- Job tensors and targets ----------------------------------------------------------------- */

/* The one target of a group of coupled tensors, or -1 when all of them are skipped. */
static cce_status group_target(const cce_block_job *job, const int idx[CCE_LT_COUNT],
                               const cce_layer_tensor *group, int n, const char *what,
                               double *out) {
    const cce_job_tensor *first = NULL;
    int skipped = 0;
    for (int g = 0; g < n; g++) {
        if (idx[group[g]] < 0) {
            char name[CCE_PLAN_NAME_MAX];
            cce_layer_tensor_name(job->layer, group[g], name, sizeof name);
            return cce_fail(CCE_ERR_ARG, NAME ": layer %d: the job has no %s (%s couple)",
                            job->layer, name, what);
        }
        const cce_job_tensor *jt = &job->tensors[idx[group[g]]];
        skipped += jt->skip != 0;
        if (jt->skip) continue;
        if (!(jt->target >= 0 && jt->target < 1))
            return cce_fail(CCE_ERR_RANGE,
                            NAME ": %s: ratio = %g is outside [0, 1) (removing a whole block is "
                                 "shortgpt's job)",
                            jt->name, jt->target);
        if (!first)
            first = jt;
        else if (jt->target != first->target)
            return cce_fail(CCE_ERR_ARG,
                            NAME ": %s has ratio %g but %s has %g: %s couple these tensors; give "
                                 "them one ratio (a pattern such as layers.%d.*)",
                            jt->name, jt->target, first->name, first->target, what, job->layer);
    }
    if (skipped && skipped < n)
        return cce_fail(CCE_ERR_ARG,
                        NAME ": layer %d: the plan skips some of the tensors %s couple but not "
                             "all",
                        job->layer, what);
    *out = first ? first->target : -1;
    return CCE_OK;
}

/* ---- Shrinking and reporting ----------------------------------------------------------------- */

/* fresh [kept rows or cols] from w [rows, cols]: rows (axis 0) or columns (axis 1) with
 * keep[unit] for unit = index / unit_len. */
static void copy_kept(const cce_tensor *w, cce_tensor *fresh, int axis, const int *keep,
                      int unit_len) {
    int64_t rows = w->shape[0], cols = w->shape[1], out = 0;
    if (axis == 0) {
        for (int64_t i = 0; i < rows; i++)
            if (keep[i / unit_len])
                memcpy(fresh->data + (out++) * cols, w->data + i * cols,
                       (size_t)cols * sizeof(float));
        return;
    }
    int64_t kc = fresh->shape[1];
    for (int64_t i = 0; i < rows; i++) {
        const float *src = w->data + i * cols; /* [cols] */
        float *dst = fresh->data + i * kc;     /* [kc] */
        int64_t c = 0;
        for (int64_t j = 0; j < cols; j++)
            if (keep[j / unit_len]) dst[c++] = src[j];
    }
}

/* Replaces job slot i by its kept rows/columns and appends its report row (errors measured on
 * the old weight with the removed rows/columns zeroed). */
static cce_status shrink_tensor(cce_block_job *job, int i, int axis, const int *keep, int n_units,
                                int unit_len, const char *note, cce_report *r) {
    double t0 = now_seconds();
    cce_job_tensor *jt = &job->tensors[i];
    const cce_tensor *w = jt->weight; /* [rows, cols] */
    if (w->ndim != 2 || w->shape[axis] != (int64_t)n_units * unit_len)
        return cce_fail(CCE_ERR_ARG, NAME ": %s: %s %lld, the layer shape implies %lld", jt->name,
                        axis ? "columns" : "rows", (long long)w->shape[axis],
                        (long long)n_units * unit_len);
    int kept = 0;
    for (int u = 0; u < n_units; u++) kept += keep[u];
    int64_t shape[2] = {w->shape[0], w->shape[1]};
    shape[axis] = (int64_t)kept * unit_len;
    cce_tensor *fresh;
    cce_status s = cce_block_job_resize(job, (size_t)i, 2, shape, &fresh);
    if (s) return s;
    copy_kept(w, fresh, axis, keep, unit_len);

    int64_t rows = w->shape[0], cols = w->shape[1], numel = rows * cols;
    float *zeroed = malloc((size_t)numel * sizeof *zeroed); /* [rows, cols] */
    if (!zeroed) return cce_fail(CCE_ERR_NOMEM, NAME ": %s", jt->name);
    double num = 0, den = 0;
    for (int64_t a = 0; a < rows; a++)
        for (int64_t b = 0; b < cols; b++) {
            int64_t k = a * cols + b;
            double v = w->data[k];
            int gone = !keep[(axis ? b : a) / unit_len];
            zeroed[k] = gone ? 0.0f : w->data[k];
            den += v * v;
            num += gone ? v * v : 0;
        }
    cce_report_row row;
    cce_report_row_init(&row, NAME, job->layer, jt->name);
    int64_t fresh_numel = cce_tensor_numel(fresh), zeros = 0;
    for (int64_t k = 0; k < fresh_numel; k++) zeros += fresh->data[k] == 0.0f;
    row.params_before = numel;
    row.params_after = fresh_numel - zeros;
    row.bytes_before = 4 * numel;
    row.bytes_after = cce_sparse_encoded_bytes(fresh_numel, fresh_numel - zeros, 0);
    row.bits_per_weight = numel ? 8.0 * (double)row.bytes_after / (double)numel : 0;
    row.sparsity = fresh_numel ? (double)zeros / (double)fresh_numel : 0;
    row.rel_fro_error = den > 0 ? sqrt(num / den) : 0;
    cce_calib_input in;
    if (job->calib && !cce_calib_input_of(job->calib, jt->name, &in) && in.sum_outer &&
        in.dim == cols)
        s = cce_output_error(w->data, zeroed, rows, cols, in.sum_outer, &row.output_error);
    cce_error_clear();
    free(zeroed);
    if (s) return s;
    snprintf(row.note, sizeof row.note, "%.63s", note);
    row.seconds = now_seconds() - t0;
    return cce_report_add(r, &row);
}

/* The job's bias `which` (if it has one) cut to the kept units (keep[n_units], unit_len values
 * each), as the pending bias. */
static cce_status slice_bias(cce_block_job *job, cce_layer_bias which, const int *keep, int n_units,
                             int unit_len) {
    const cce_tensor *b = job->bias[which];
    if (!b) return CCE_OK;
    if (cce_tensor_numel(b) != (int64_t)n_units * unit_len) {
        char name[CCE_PLAN_NAME_MAX];
        cce_layer_bias_name(job->layer, which, name, sizeof name);
        return cce_fail(CCE_ERR_ARG, NAME ": bias %s has %lld values, the layer has %d x %d", name,
                        (long long)cce_tensor_numel(b), n_units, unit_len);
    }
    float *kept = malloc(sizeof *kept * (size_t)n_units * (size_t)unit_len); /* [kept values] */
    if (!kept) return cce_fail(CCE_ERR_NOMEM, NAME ": layer %d: bias", job->layer);
    int64_t n = 0;
    for (int u = 0; u < n_units; u++)
        if (keep[u])
            for (int j = 0; j < unit_len; j++) kept[n++] = b->data[(int64_t)u * unit_len + j];
    cce_status s = cce_block_job_set_bias(job, which, kept, n);
    free(kept);
    return s;
}

/* ---- Units ----------------------------------------------------------------------------------- */

static double row_norm(const float *w, int64_t n) {
    double s = 0;
    for (int64_t j = 0; j < n; j++) s += (double)w[j] * w[j];
    return sqrt(s);
}

/* Column j of w [rows, cols], columns [j0, j0 + width). */
static double cols_norm(const cce_tensor *w, int64_t j0, int64_t width) {
    double s = 0;
    for (int64_t i = 0; i < w->shape[0]; i++)
        for (int64_t j = j0; j < j0 + width; j++) {
            double v = w->data[i * w->shape[1] + j];
            s += v * v;
        }
    return sqrt(s);
}

/* Removes k of the layer's H neurons; *hidden becomes H - k. */
static cce_status prune_ffn(cce_block_job *job, const int idx[CCE_LT_COUNT], int dim, int k,
                            int32_t *hidden, cce_report *r) {
    int H = *hidden;
    cce_job_tensor *g = &job->tensors[idx[CCE_LT_GATE]], *u = &job->tensors[idx[CCE_LT_UP]],
                   *d = &job->tensors[idx[CCE_LT_DOWN]];
    cce_status s;
    if ((s = cce_shrink_check_shape(NAME, g, H, dim)) ||
        (s = cce_shrink_check_shape(NAME, u, H, dim)) ||
        (s = cce_shrink_check_shape(NAME, d, dim, H)))
        return s;
    double *score = calloc((size_t)H, sizeof *score); /* [H] */
    int *keep = malloc((size_t)H * sizeof *keep);     /* [H] */
    if (!score || !keep) {
        free(score);
        free(keep);
        return cce_fail(CCE_ERR_NOMEM, NAME ": layer %d: %d neurons", job->layer, H);
    }
    for (int j = 0; j < H; j++)
        score[j] = row_norm(g->weight->data + (int64_t)j * dim, dim) *
                   row_norm(u->weight->data + (int64_t)j * dim, dim) * cols_norm(d->weight, j, 1);
    s = select_kept(score, H, k, keep);
    char note[128];
    snprintf(note, sizeof note, "kept %d of %d neurons", H - k, H);
    if (!s) s = shrink_tensor(job, idx[CCE_LT_GATE], 0, keep, H, 1, note, r);
    if (!s) s = shrink_tensor(job, idx[CCE_LT_UP], 0, keep, H, 1, note, r);
    if (!s) s = shrink_tensor(job, idx[CCE_LT_DOWN], 1, keep, H, 1, note, r);
    if (!s) s = slice_bias(job, CCE_LB_GATE, keep, H, 1);
    if (!s) s = slice_bias(job, CCE_LB_UP, keep, H, 1);
    free(score);
    free(keep);
    if (!s) *hidden = H - k;
    return s;
}

/* Removes k of the layer's query heads (and the kv heads nobody reads any more); updates the
 * widths and writes the new head map into kv_map [n_heads - k]. */
static cce_status prune_heads(cce_block_job *job, const int idx[CCE_LT_COUNT], int dim, int hd,
                              const int32_t *kv_of_head, int k, int32_t *n_heads,
                              int32_t *n_kv_heads, int32_t *kv_map, cce_report *r) {
    int nh = *n_heads, nkv = *n_kv_heads;
    cce_job_tensor *q = &job->tensors[idx[CCE_LT_Q]], *o = &job->tensors[idx[CCE_LT_O]];
    cce_status s;
    if ((s = cce_shrink_check_shape(NAME, q, (int64_t)nh * hd, dim)) ||
        (s = cce_shrink_check_shape(NAME, o, dim, (int64_t)nh * hd)) ||
        (s = cce_shrink_check_shape(NAME, &job->tensors[idx[CCE_LT_K]], (int64_t)nkv * hd, dim)) ||
        (s = cce_shrink_check_shape(NAME, &job->tensors[idx[CCE_LT_V]], (int64_t)nkv * hd, dim)))
        return s;
    double *score = calloc((size_t)nh, sizeof *score);   /* [nh] */
    int *keep = malloc((size_t)nh * sizeof *keep);       /* [nh] */
    int *keep_kv = calloc((size_t)nkv, sizeof *keep_kv); /* [nkv] */
    int *kv_new = calloc((size_t)nkv, sizeof *kv_new);   /* [nkv]: new index of a kept kv head */
    if (!score || !keep || !keep_kv || !kv_new) {
        s = cce_fail(CCE_ERR_NOMEM, NAME ": layer %d: %d heads", job->layer, nh);
        goto done;
    }
    for (int h = 0; h < nh; h++)
        score[h] = row_norm(q->weight->data + (int64_t)h * hd * dim, (int64_t)hd * dim) *
                   cols_norm(o->weight, (int64_t)h * hd, hd);
    if ((s = select_kept(score, nh, k, keep))) goto done;
    for (int h = 0; h < nh; h++)
        if (keep[h]) keep_kv[kv_of_head[h]] = 1;
    int kept_kv = 0;
    for (int g = 0; g < nkv; g++) kv_new[g] = keep_kv[g] ? kept_kv++ : -1;
    for (int h = 0, j = 0; h < nh; h++)
        if (keep[h]) kv_map[j++] = kv_new[kv_of_head[h]];
    char note[128];
    snprintf(note, sizeof note, "kept %d of %d heads, %d of %d kv heads", nh - k, nh, kept_kv, nkv);
    if ((s = shrink_tensor(job, idx[CCE_LT_Q], 0, keep, nh, hd, note, r))) goto done;
    if (kept_kv < nkv && ((s = shrink_tensor(job, idx[CCE_LT_K], 0, keep_kv, nkv, hd, note, r)) ||
                          (s = shrink_tensor(job, idx[CCE_LT_V], 0, keep_kv, nkv, hd, note, r))))
        goto done;
    if ((s = shrink_tensor(job, idx[CCE_LT_O], 1, keep, nh, hd, note, r))) goto done;
    if ((s = slice_bias(job, CCE_LB_Q, keep, nh, hd))) goto done;
    if (kept_kv < nkv && ((s = slice_bias(job, CCE_LB_K, keep_kv, nkv, hd)) ||
                          (s = slice_bias(job, CCE_LB_V, keep_kv, nkv, hd))))
        goto done;
    *n_heads = nh - k;
    *n_kv_heads = kept_kv;
done:
    free(score);
    free(keep);
    free(keep_kv);
    free(kv_new);
    return s;
}

static cce_status structured_apply(void *priv, cce_block_job *job, cce_report *r) {
    const structured_priv *sp = priv;
    if (job->layer < 0) return CCE_OK; /* embeddings and classifier have no structured units */
    static const cce_layer_tensor ffn[3] = {CCE_LT_GATE, CCE_LT_UP, CCE_LT_DOWN};
    static const cce_layer_tensor attn[4] = {CCE_LT_Q, CCE_LT_K, CCE_LT_V, CCE_LT_O};
    int idx[CCE_LT_COUNT];
    cce_shrink_find_tensors(job, idx);
    double t_ffn = -1, t_heads = -1;
    cce_status s;
    if (sp->unit != UNIT_HEADS && (s = group_target(job, idx, ffn, 3, "FFN neurons", &t_ffn)))
        return s;
    if (sp->unit != UNIT_FFN && (s = group_target(job, idx, attn, 4, "attention heads", &t_heads)))
        return s;
    if (!(t_ffn > 0) && !(t_heads > 0)) return CCE_OK;
    if (!job->model)
        return cce_fail(CCE_ERR_ARG, NAME ": layer %d: the job carries no model (layer shapes)",
                        job->layer);
    const cce_config *cfg = cce_model_config(job->model);
    const cce_layer_shape *ls = cce_model_layer(job->model, job->layer);
    if (!ls || ls->removed)
        return cce_fail(CCE_ERR_ARG, NAME ": layer %d is not a block of the model", job->layer);
    int k_ffn = t_ffn > 0 ? (int)cce_ratio_count(t_ffn, ls->hidden_dim) : 0;
    int k_heads = t_heads > 0 ? (int)cce_ratio_count(t_heads, ls->n_heads) : 0;
    if (k_ffn == 0 && k_heads == 0) return CCE_OK; /* the ratio removes less than one unit */
    int32_t hidden = ls->hidden_dim, n_heads = ls->n_heads, n_kv = ls->n_kv_heads;
    int32_t *kv_map = malloc((size_t)n_heads * sizeof *kv_map); /* [n_heads] */
    if (!kv_map) return cce_fail(CCE_ERR_NOMEM, NAME ": layer %d: head map", job->layer);
    memcpy(kv_map, ls->kv_of_head, (size_t)n_heads * sizeof *kv_map);
    s = CCE_OK;
    if (k_heads > 0)
        s = prune_heads(job, idx, cfg->dim, cfg->head_dim, ls->kv_of_head, k_heads, &n_heads, &n_kv,
                        kv_map, r);
    if (!s && k_ffn > 0) s = prune_ffn(job, idx, cfg->dim, k_ffn, &hidden, r);
    if (!s) s = cce_block_job_set_shape(job, hidden, n_heads, n_kv, kv_map);
    free(kv_map);
    return s;
}

const cce_strategy cce_strategy_structured = {
    .api_version = CCE_STRATEGY_API_VERSION,
    .name = NAME,
    .summary = "structured pruning: whole FFN neurons / attention heads by norm (smaller matrices)",
    .params = structured_params,
    .needs = CCE_NEEDS_RESIZE,
    .priv_size = sizeof(structured_priv),
    .init = structured_init,
    .plan = structured_plan,
    .apply = structured_apply,
    .fini = NULL,
};
