/* FLAP-style structured pruning (An et al., "Fluctuation-based Adaptive Structured Pruning for
 * Large Language Models", AAAI 2024): whole FFN neurons and attention heads ranked by how much
 * the block output fluctuates through them, removed by one global search over standardised
 * scores, with the mean of what was removed restored as a bias (DESIGN section 5; model.h
 * "Biases" and "Layer shapes").
 *
 * Scores (flap.h, flap_scores.c), from dense calibration statistics, Var the sample variance
 * from sum and sum_sq:
 *   FFN neuron j   S_j = Var(a_j) * ||W_down[:, j]||^2, a the down_proj input;
 *   query head h   S_h = sum over its head_dim channels c of Var(o_c) * ||W_o[:, c]||^2, o the
 *                  o_proj input.
 *   The reference code squares the per-channel o_proj score and averages standardised channel
 *   scores over a head; here a head's score is the plain sum of its channels' fluctuation (the
 *   output variance its removal leaves uncompensated, on the same scale as a neuron's), so both
 *   unit types measure the same quantity.
 *
 * Standardisation (`standardize`): z = (S - mean) / sd (sample sd, GSL) over the units the
 * search considers, per layer and unit type (`layer`, the default, as the reference
 * implementation of the paper does: the search then compares each unit with its own layer's
 * units, and the layers' ratios follow the shapes of their score distributions) or per unit type
 * across all layers (`type`: the raw fluctuation magnitudes of different layers compete too,
 * which on stories260K strips layer 0, whose activations are small, of most of its FFN; see
 * strategies/README.md for the measured perplexities). Fewer than 2 units or sd 0: z = 0.
 *
 * Search (`search`), counted in parameters. The target is the fraction `ratio` of the BLOCK
 * parameters (weights of q, k, v, o, gate, up, down and the biases present; norms, embeddings and
 * the classifier are outside), as for the cce strategy, so equal ratios are equal budgets:
 * budget = cce_ratio_count(ratio, P). Removing
 *   a neuron costs 3 * dim (its gate and up rows, its down column; + 1 per gate/up bias present);
 *   a head costs 2 * head_dim * dim (its q rows, its o columns; + head_dim for a q bias), plus
 *          2 * head_dim * dim (+ the k/v bias values) when it was the last query head reading its
 *          kv head, which then goes too;
 *   with compensation, the first unit removed from a layer's FFN (heads) creates the down_proj
 *          (o_proj) bias when the layer has none, so it costs dim less: the stored model is what
 *          the budget counts.
 *   global   (default, the paper's adaptive structure search) every unit of every layer in one
 *            list, lowest z first (ties: FFN neurons before heads, then the earlier layer, then
 *            the earlier unit). Units are taken while the removed parameters stay within the
 *            budget; the first unit that would exceed it ends the search (a lower-scored unit is
 *            never passed over for a cheaper one), so the budget is met to within one unit and
 *            never exceeded. A unit whose removal would leave its layer fewer than min_neurons
 *            neurons (min_heads heads) is passed over. (The reference code, for models without
 *            grouped-query attention, weighs a head as 4 * head_dim * dim and takes the score
 *            threshold nearest the target, which may overshoot; here a kv head is charged where
 *            it really goes, and the budget is an upper bound, as for the other strategies.)
 *   uniform  the same ratio in every layer: each layer's own budget cce_ratio_count(ratio, P_l)
 *            from that layer's units in the same order (the units of the two types still compete
 *            through z). The paper's uniform baseline prunes each module at the ratio; this keeps
 *            the layer budgets exact for any mix of unit types.
 *   If the units the structure may remove cannot give the budget (e.g. structure = heads and a
 *   ratio above the attention share), the plan fails with CCE_ERR_RANGE saying how much they give.
 *
 * Bias compensation (`compensate`, default true): the removed channels R of the down_proj input
 * are replaced by their calibration mean, down_proj.bias += W_down[:, R] mean(a_R); likewise
 * o_proj.bias += W_o[:, R] mean(o_R) for the channels of the removed heads (an existing bias is
 * added to, a missing one created). So the mean of the block's output over the calibration tokens
 * is unchanged for a fixed input. Biases of removed rows (q/k/v/gate/up, when the model has them)
 * are sliced with the rows. Without compensation the rows/columns are simply dropped.
 *
 * Plan rules. The plan stage skips the tensors of the unit type not pruned (as structured does).
 * Per layer and unit type the coupled tensors (gate, up, down / q, k, v, o) must be all skipped
 * (the layer keeps those units; its parameters still count in P), all left to the search, or all
 * given the same ratio by a user rule (layer, pattern or tensor override): such a group removes
 * floor(ratio * n) of its lowest-scored units on its own, and these parameters count towards the
 * budget before the search. The plan stage allocates to every searched tensor the fraction of its
 * units removed (neurons for gate/up/down, query heads for q/o, kv heads for k/v; rule "flap
 * search"), so the recorded plan shows the per-layer ratios; apply removes exactly the units the
 * plan stage chose.
 *
 * Needs dense calibration (CCE_NEEDS_CALIBRATION) and resizing (CCE_NEEDS_RESIZE). Report: one
 * row per resized weight (note: kept units, and whether the bias compensates) and one per bias
 * created or changed; a compensated down_proj / o_proj row's output error counts the bias, i.e.
 * it is sqrt(tr(dW C dW^T) / tr(W G W^T)) with C the centred and G the uncentred second moment. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "flap.h"
#include "prune_common.h"
#include "shrink_common.h"
#include "strategy.h"

#define NAME "flap"

enum { ST_FFN = 0, ST_HEADS, ST_BOTH };
enum { SEARCH_GLOBAL = 0, SEARCH_UNIFORM };
enum { STD_LAYER = 0, STD_TYPE };
enum { U_FFN = 0, U_HEAD = 1, U_KINDS = 2 }; /* unit kinds */
enum { G_OFF = 0, G_SEARCH, G_FIXED, G_SKIP };

static const char *const structure_choices[] = {"ffn", "heads", "both", NULL};
static const char *const search_choices[] = {"global", "uniform", NULL};
static const char *const standardize_choices[] = {"layer", "type", NULL};

static const cce_param flap_params[] = {
    {"ratio", CCE_PARAM_FLOAT, "0.2", 0, 0.9, 0, NULL,
     "fraction of block parameters removed (the plan's global target)"},
    {"structure", CCE_PARAM_ENUM, "both", 0, 0, 0, structure_choices,
     "what is removed: FFN neurons, attention heads, or both"},
    {"search", CCE_PARAM_ENUM, "global", 0, 0, 0, search_choices,
     "global: one ranking over all layers; uniform: the same ratio in every layer"},
    {"standardize", CCE_PARAM_ENUM, "layer", 0, 0, 0, standardize_choices,
     "z-scores per layer and unit type, or per unit type across all layers"},
    {"compensate", CCE_PARAM_BOOL, "true", 0, 0, 0, NULL,
     "restore the calibration mean of removed channels through the down_proj / o_proj bias"},
    {"min_neurons", CCE_PARAM_INT, "1", 1, 1 << 30, 0, NULL, "FFN neurons every layer keeps"},
    {"min_heads", CCE_PARAM_INT, "1", 1, 1 << 20, 0, NULL, "query heads every layer keeps"},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL},
};

/* One block as the plan stage saw it and what it decided. */
typedef struct flap_layer {
    int present;
    int n_units[U_KINDS]; /* hidden_dim, n_heads */
    int n_kv;
    int32_t *kv_of_head;          /* [n_heads] */
    int group[U_KINDS];           /* G_* */
    double fixed[U_KINDS];        /* G_FIXED: the rule's ratio */
    double *score[U_KINDS];       /* [n_units] */
    double *z[U_KINDS];           /* [n_units] */
    unsigned char *drop[U_KINDS]; /* [n_units]: 1 removed */
    int k[U_KINDS];               /* units removed */
    int *readers;                 /* [n_kv]: kept query heads reading each kv head */
    int k_kv;                     /* kv heads removed */
    int has_bias[CCE_LB_COUNT];   /* biases present when planned */
    int64_t params;               /* block parameters (weights and biases) */
} flap_layer;

typedef struct flap_priv {
    double ratio;
    int structure, search, standardize, compensate;
    int64_t min_units[U_KINDS];
    int n_layers, dim, head_dim;
    flap_layer *layers; /* [n_layers] */
    int planned;
    int64_t total, budget, removed;
} flap_priv;

static const char *const kind_name[U_KINDS] = {"FFN neurons", "attention heads"};

/* ---- Parameters and state -------------------------------------------------------------------- */

static void free_layers(flap_priv *fp) {
    for (int l = 0; fp->layers && l < fp->n_layers; l++) {
        flap_layer *fl = &fp->layers[l];
        for (int k = 0; k < U_KINDS; k++) {
            free(fl->score[k]);
            free(fl->z[k]);
            free(fl->drop[k]);
        }
        free(fl->readers);
        free(fl->kv_of_head);
    }
    free(fp->layers);
    fp->layers = NULL;
    fp->n_layers = 0;
    fp->planned = 0;
}

static cce_status flap_init(void *priv, const cce_params *p) {
    flap_priv *fp = priv;
    cce_status s;
    if ((s = cce_params_get_float(p, "ratio", &fp->ratio)) ||
        (s = cce_params_get_enum(p, "structure", NULL, &fp->structure)) ||
        (s = cce_params_get_enum(p, "search", NULL, &fp->search)) ||
        (s = cce_params_get_enum(p, "standardize", NULL, &fp->standardize)) ||
        (s = cce_params_get_bool(p, "compensate", &fp->compensate)) ||
        (s = cce_params_get_int(p, "min_neurons", &fp->min_units[U_FFN])) ||
        (s = cce_params_get_int(p, "min_heads", &fp->min_units[U_HEAD])))
        return s;
    return CCE_OK;
}

static void flap_fini(void *priv) {
    free_layers(priv);
}

/* ---- Plan: groups, scores, standardisation --------------------------------------------------- */

static const cce_layer_tensor group_ffn[3] = {CCE_LT_GATE, CCE_LT_UP, CCE_LT_DOWN};
static const cce_layer_tensor group_heads[4] = {CCE_LT_Q, CCE_LT_K, CCE_LT_V, CCE_LT_O};

/* How the plan treats layer l's tensors of one unit kind: all skipped, all left to the search
 * (uniform target), or all given one ratio by a rule. */
static cce_status resolve_group(const cce_plan *plan, int l, int kind, int *group, double *value) {
    const cce_layer_tensor *g = kind == U_FFN ? group_ffn : group_heads;
    int n = kind == U_FFN ? 3 : 4, skipped = 0, searched = 0;
    cce_plan_row first = {0}, row;
    int have_rule = 0;
    for (int i = 0; i < n; i++) {
        char name[CCE_PLAN_NAME_MAX];
        cce_layer_tensor_name(l, g[i], name, sizeof name);
        cce_status s = cce_plan_resolve(plan, l, name, &row);
        if (s) return s;
        if (row.source == CCE_PLAN_SKIP) {
            skipped++;
        } else if (row.source == CCE_PLAN_UNIFORM) {
            searched++;
        } else if (!have_rule) {
            first = row;
            have_rule = 1;
        } else if (row.value != first.value) {
            return cce_fail(CCE_ERR_ARG,
                            NAME ": %s has ratio %g but %s has %g: %s couple these tensors; give "
                                 "them one ratio (a pattern such as layers.%d.*)",
                            row.tensor, row.value, first.tensor, first.value, kind_name[kind], l);
        }
    }
    if (skipped && skipped < n)
        return cce_fail(CCE_ERR_ARG,
                        NAME ": layer %d: the plan skips some of the tensors %s couple but not all",
                        l, kind_name[kind]);
    if (have_rule && searched)
        return cce_fail(CCE_ERR_ARG,
                        NAME ": %s has its own ratio %g (rule %s) but the other tensors %s couple "
                             "in layer %d are left to the search; give them one ratio",
                        first.tensor, first.value, first.rule, kind_name[kind], l);
    if (have_rule && !(first.value >= 0 && first.value < 1))
        return cce_fail(CCE_ERR_RANGE, NAME ": %s: ratio = %g is outside [0, 1)", first.tensor,
                        first.value);
    *group = skipped ? G_SKIP : have_rule ? G_FIXED : G_SEARCH;
    *value = have_rule ? first.value : 0;
    return CCE_OK;
}

/* Parameters of a block: its weight matrices and biases. */
static int64_t block_params(const flap_priv *fp, const flap_layer *fl) {
    int64_t d = fp->dim, hd = fp->head_dim, H = fl->n_units[U_FFN], nh = fl->n_units[U_HEAD],
            nkv = fl->n_kv;
    int64_t rows[CCE_LB_COUNT] = {nh * hd, nkv * hd, nkv * hd, d, H, H, d};
    int64_t p = 2 * nh * hd * d + 2 * nkv * hd * d + 3 * H * d;
    for (int b = 0; b < CCE_LB_COUNT; b++) p += fl->has_bias[b] ? rows[b] : 0;
    return p;
}

static cce_status setup_layer(flap_priv *fp, cce_model *m, const cce_calib *calib,
                              const cce_plan *plan, int l) {
    flap_layer *fl = &fp->layers[l];
    const cce_layer_shape *ls = cce_model_layer(m, l);
    if (ls->removed) return CCE_OK;
    fl->present = 1;
    fl->n_units[U_FFN] = ls->hidden_dim;
    fl->n_units[U_HEAD] = ls->n_heads;
    fl->n_kv = ls->n_kv_heads;
    for (int b = 0; b < CCE_LB_COUNT; b++)
        fl->has_bias[b] = cce_model_has_layer_bias(m, l, (cce_layer_bias)b);
    fl->params = block_params(fp, fl);
    fl->kv_of_head = malloc((size_t)ls->n_heads * sizeof *fl->kv_of_head);
    fl->readers = calloc((size_t)ls->n_kv_heads, sizeof *fl->readers);
    if (!fl->kv_of_head || !fl->readers)
        return cce_fail(CCE_ERR_NOMEM, NAME ": layer %d: head map", l);
    for (int h = 0; h < ls->n_heads; h++) {
        fl->kv_of_head[h] = ls->kv_of_head[h];
        fl->readers[ls->kv_of_head[h]]++;
    }
    cce_status s;
    for (int k = 0; k < U_KINDS; k++) {
        fl->group[k] = G_OFF;
        if ((k == U_FFN && fp->structure == ST_HEADS) || (k == U_HEAD && fp->structure == ST_FFN))
            continue;
        if ((s = resolve_group(plan, l, k, &fl->group[k], &fl->fixed[k]))) return s;
        if (fl->group[k] == G_SKIP) continue;
        int n = fl->n_units[k];
        fl->score[k] = malloc((size_t)n * sizeof *fl->score[k]);
        fl->z[k] = calloc((size_t)n, sizeof *fl->z[k]);
        fl->drop[k] = calloc((size_t)n, 1);
        if (!fl->score[k] || !fl->z[k] || !fl->drop[k])
            return cce_fail(CCE_ERR_NOMEM, NAME ": layer %d: %d units", l, n);
    }
    return cce_flap_layer_scores(m, calib, l, fl->score[U_FFN], fl->score[U_HEAD]);
}

/* z-scores of the searched units: per kind across layers, or per layer and kind. */
static cce_status standardize_all(flap_priv *fp) {
    for (int k = 0; k < U_KINDS; k++) {
        if (fp->standardize == STD_LAYER) {
            for (int l = 0; l < fp->n_layers; l++) {
                flap_layer *fl = &fp->layers[l];
                if (!fl->present || fl->group[k] != G_SEARCH) continue;
                memcpy(fl->z[k], fl->score[k], (size_t)fl->n_units[k] * sizeof(double));
                cce_flap_standardize(fl->z[k], (size_t)fl->n_units[k]);
            }
            continue;
        }
        size_t n = 0;
        for (int l = 0; l < fp->n_layers; l++)
            if (fp->layers[l].present && fp->layers[l].group[k] == G_SEARCH)
                n += (size_t)fp->layers[l].n_units[k];
        if (n == 0) continue;
        double *all = malloc(n * sizeof *all); /* [n] every searched unit of kind k */
        if (!all) return cce_fail(CCE_ERR_NOMEM, NAME ": %zu scores", n);
        size_t at = 0;
        for (int l = 0; l < fp->n_layers; l++) {
            flap_layer *fl = &fp->layers[l];
            if (!fl->present || fl->group[k] != G_SEARCH) continue;
            memcpy(all + at, fl->score[k], (size_t)fl->n_units[k] * sizeof(double));
            at += (size_t)fl->n_units[k];
        }
        cce_flap_standardize(all, n);
        at = 0;
        for (int l = 0; l < fp->n_layers; l++) {
            flap_layer *fl = &fp->layers[l];
            if (!fl->present || fl->group[k] != G_SEARCH) continue;
            memcpy(fl->z[k], all + at, (size_t)fl->n_units[k] * sizeof(double));
            at += (size_t)fl->n_units[k];
        }
        free(all);
    }
    return CCE_OK;
}

/* ---- Plan: the search ------------------------------------------------------------------------ */

typedef struct unit {
    double z;
    int kind, layer, index;
} unit;

static int by_z(const void *a, const void *b) {
    const unit *x = a, *y = b;
    if (x->z != y->z) return x->z < y->z ? -1 : 1;
    if (x->kind != y->kind) return x->kind - y->kind;
    if (x->layer != y->layer) return x->layer - y->layer;
    return x->index - y->index;
}

/* Parameters removing unit `index` of `kind` takes away now (see the header). */
static int64_t unit_cost(const flap_priv *fp, const flap_layer *fl, int kind, int index) {
    int64_t d = fp->dim, hd = fp->head_dim, p;
    if (kind == U_FFN) {
        p = 3 * d + fl->has_bias[CCE_LB_GATE] + fl->has_bias[CCE_LB_UP];
    } else {
        p = 2 * hd * d + (fl->has_bias[CCE_LB_Q] ? hd : 0);
        if (fl->readers[fl->kv_of_head[index]] == 1)
            p += 2 * hd * d + (fl->has_bias[CCE_LB_K] ? hd : 0) + (fl->has_bias[CCE_LB_V] ? hd : 0);
    }
    int out_bias = kind == U_FFN ? CCE_LB_DOWN : CCE_LB_O;
    if (fp->compensate && fl->k[kind] == 0 && !fl->has_bias[out_bias]) p -= d;
    return p;
}

static int can_remove(const flap_priv *fp, const flap_layer *fl, int kind) {
    return fl->n_units[kind] - fl->k[kind] - 1 >= fp->min_units[kind];
}

static void remove_unit(flap_layer *fl, int kind, int index) {
    fl->drop[kind][index] = 1;
    fl->k[kind]++;
    if (kind == U_HEAD && --fl->readers[fl->kv_of_head[index]] == 0) fl->k_kv++;
}

/* Units of fixed groups: floor(value * n) lowest scores (ties: earlier unit first). */
static cce_status remove_fixed(flap_priv *fp, int l, int kind, int64_t *removed) {
    flap_layer *fl = &fp->layers[l];
    int n = fl->n_units[kind], k = (int)cce_ratio_count(fl->fixed[kind], n);
    if (n - k < fp->min_units[kind])
        return cce_fail(CCE_ERR_RANGE,
                        NAME ": layer %d: ratio %g removes %d of %d %s, leaving fewer than %s = "
                             "%lld",
                        l, fl->fixed[kind], k, n, kind_name[kind],
                        kind == U_FFN ? "min_neurons" : "min_heads",
                        (long long)fp->min_units[kind]);
    unit *u = malloc((size_t)n * sizeof *u); /* [n] */
    if (!u) return cce_fail(CCE_ERR_NOMEM, NAME ": layer %d: %d units", l, n);
    for (int i = 0; i < n; i++) u[i] = (unit){fl->score[kind][i], kind, l, i};
    qsort(u, (size_t)n, sizeof *u, by_z);
    for (int i = 0; i < k; i++) {
        *removed += unit_cost(fp, fl, kind, u[i].index);
        remove_unit(fl, kind, u[i].index);
    }
    free(u);
    return CCE_OK;
}

/* Takes units of u [n] (of layer `only`, or every layer when only < 0) in order while *removed
 * stays within budget. *short_of: 1 when the list ran out below the budget. */
static void walk(flap_priv *fp, const unit *u, size_t n, int only, int64_t budget, int64_t *removed,
                 int *short_of) {
    for (size_t i = 0; i < n; i++) {
        if (only >= 0 && u[i].layer != only) continue;
        flap_layer *fl = &fp->layers[u[i].layer];
        if (!can_remove(fp, fl, u[i].kind)) continue;
        int64_t p = unit_cost(fp, fl, u[i].kind, u[i].index);
        if (*removed + p > budget) {
            *short_of = 0;
            return;
        }
        remove_unit(fl, u[i].kind, u[i].index);
        *removed += p;
    }
    *short_of = *removed < budget;
}

static cce_status capacity_error(const flap_priv *fp, int layer, int64_t budget, int64_t got,
                                 int64_t total) {
    char where[48] = "";
    if (layer >= 0) snprintf(where, sizeof where, " in layer %d", layer);
    return cce_fail(CCE_ERR_RANGE,
                    NAME ": ratio = %g asks for %lld of %lld block parameters%s, but the units "
                         "structure = %s may remove (keeping min_neurons = %lld, min_heads = %lld "
                         "per layer; skipped tensors kept) give only %lld",
                    fp->ratio, (long long)budget, (long long)total, where,
                    structure_choices[fp->structure], (long long)fp->min_units[U_FFN],
                    (long long)fp->min_units[U_HEAD], (long long)got);
}

static cce_status search(flap_priv *fp, double ratio) {
    size_t n = 0;
    for (int l = 0; l < fp->n_layers; l++)
        for (int k = 0; k < U_KINDS; k++)
            if (fp->layers[l].present && fp->layers[l].group[k] == G_SEARCH)
                n += (size_t)fp->layers[l].n_units[k];
    unit *u = malloc((n ? n : 1) * sizeof *u);                    /* [n] every searched unit */
    int64_t *fixed = calloc((size_t)fp->n_layers, sizeof *fixed); /* [n_layers] */
    cce_status s = u && fixed ? CCE_OK : cce_fail(CCE_ERR_NOMEM, NAME ": %zu units", n);
    size_t at = 0;
    int64_t removed = 0;
    for (int l = 0; !s && l < fp->n_layers; l++) {
        flap_layer *fl = &fp->layers[l];
        for (int k = 0; fl->present && k < U_KINDS && !s; k++) {
            if (fl->group[k] == G_FIXED) s = remove_fixed(fp, l, k, &fixed[l]);
            if (fl->group[k] != G_SEARCH) continue;
            for (int i = 0; i < fl->n_units[k]; i++) u[at++] = (unit){fl->z[k][i], k, l, i};
        }
        removed += fixed[l];
    }
    if (!s) qsort(u, n, sizeof *u, by_z);
    fp->budget = cce_ratio_count(ratio, fp->total);
    int short_of = 0;
    if (!s && fp->search == SEARCH_GLOBAL) {
        walk(fp, u, n, -1, fp->budget, &removed, &short_of);
        if (short_of) s = capacity_error(fp, -1, fp->budget, removed, fp->total);
    }
    for (int l = 0; !s && fp->search == SEARCH_UNIFORM && l < fp->n_layers; l++) {
        flap_layer *fl = &fp->layers[l];
        if (!fl->present || (fl->group[U_FFN] != G_SEARCH && fl->group[U_HEAD] != G_SEARCH)) {
            continue;
        }
        int64_t budget = cce_ratio_count(ratio, fl->params), got = fixed[l];
        walk(fp, u, n, l, budget, &got, &short_of);
        if (short_of) s = capacity_error(fp, l, budget, got, fl->params);
        removed += got - fixed[l];
    }
    fp->removed = removed;
    free(u);
    free(fixed);
    return s;
}

/* Records the fraction of units removed for every searched tensor. */
static cce_status allocate(const flap_priv *fp, cce_plan *plan) {
    cce_status s = CCE_OK;
    for (int l = 0; !s && l < fp->n_layers; l++) {
        const flap_layer *fl = &fp->layers[l];
        if (!fl->present) continue;
        for (int k = 0; k < U_KINDS && !s; k++) {
            if (fl->group[k] != G_SEARCH) continue;
            int n = k == U_FFN ? 3 : 4;
            for (int i = 0; i < n && !s; i++) {
                cce_layer_tensor w = k == U_FFN ? group_ffn[i] : group_heads[i];
                double v = (double)fl->k[k] / fl->n_units[k];
                if (w == CCE_LT_K || w == CCE_LT_V) v = (double)fl->k_kv / fl->n_kv;
                char name[CCE_PLAN_NAME_MAX];
                cce_layer_tensor_name(l, w, name, sizeof name);
                s = cce_plan_allocate_tensor(plan, name, v, "flap search");
            }
        }
    }
    return s;
}

static cce_status flap_plan(void *priv, cce_model *m, const cce_calib *calib, cce_plan *plan) {
    flap_priv *fp = priv;
    free_layers(fp);
    const cce_config *cfg = cce_model_config(m);
    if (!calib) return cce_fail(CCE_ERR_STATE, NAME ": needs calibration data (give --calib)");
    if (cce_plan_get_kind(plan) != CCE_PLAN_RATIO)
        return cce_fail(CCE_ERR_ARG, NAME ": needs a ratio plan, not a bit-width plan");
    if (cce_calib_n_layers(calib) != cfg->n_layers)
        return cce_fail(CCE_ERR_ARG, NAME ": calibration statistics of %d layers for a model of %d",
                        cce_calib_n_layers(calib), cfg->n_layers);
    double ratio = cce_plan_target(plan);
    if (!(ratio >= 0 && ratio <= 0.9))
        return cce_fail(CCE_ERR_RANGE, NAME ": ratio = %g is outside [0, 0.9]", ratio);
    cce_status s = CCE_OK;
    if (fp->structure == ST_FFN) s = cce_plan_skip(plan, "layers.*.self_attn.*");
    if (fp->structure == ST_HEADS) s = cce_plan_skip(plan, "layers.*.mlp.*");
    if (s) return s;
    fp->layers = calloc((size_t)cfg->n_layers, sizeof *fp->layers);
    if (!fp->layers) return cce_fail(CCE_ERR_NOMEM, NAME ": %d layers", cfg->n_layers);
    fp->n_layers = cfg->n_layers;
    fp->dim = cfg->dim;
    fp->head_dim = cfg->head_dim;
    fp->total = 0;
    for (int l = 0; !s && l < cfg->n_layers; l++) {
        s = setup_layer(fp, m, calib, plan, l);
        fp->total += fp->layers[l].present ? fp->layers[l].params : 0;
    }
    if (!s) s = standardize_all(fp);
    if (!s) s = search(fp, ratio);
    if (!s) s = allocate(fp, plan);
    if (s) {
        free_layers(fp);
        return s;
    }
    fp->planned = 1;
    return CCE_OK;
}

/* ---- Apply ----------------------------------------------------------------------------------- */

/* sum_i w_i^T S w_i over the rows of w [rows, cols] with entry (i, j) taken only when
 * row_on[i] and col_on[j] (NULL: all), S [cols, cols] symmetric; in row blocks through BLAS. */
static cce_status quad_sum(const float *w, int64_t rows, int64_t cols, const double *S,
                           const unsigned char *row_on, const unsigned char *col_on, double *out) {
    enum { BLOCK = 64 };
    double *a = malloc((size_t)BLOCK * cols * sizeof *a); /* [BLOCK, cols] */
    double *t = malloc((size_t)BLOCK * cols * sizeof *t); /* [BLOCK, cols] = a S */
    if (!a || !t) {
        free(a);
        free(t);
        return cce_fail(CCE_ERR_NOMEM, NAME ": output error of a [%lld, %lld] matrix",
                        (long long)rows, (long long)cols);
    }
    double sum = 0;
    for (int64_t i0 = 0; i0 < rows; i0 += BLOCK) {
        int64_t mb = rows - i0 < BLOCK ? rows - i0 : BLOCK;
        for (int64_t i = 0; i < mb; i++)
            for (int64_t j = 0; j < cols; j++) {
                int on = (!row_on || row_on[i0 + i]) && (!col_on || col_on[j]);
                a[i * cols + j] = on ? w[(i0 + i) * cols + j] : 0.0;
            }
        cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, (int)mb, (int)cols, 1.0, S, (int)cols, a,
                    (int)cols, 0.0, t, (int)cols);
        for (int64_t k = 0; k < mb * cols; k++) sum += a[k] * t[k];
    }
    free(a);
    free(t);
    *out = sum;
    return CCE_OK;
}

/* What one shrink does: which rows (axis 0) or columns (axis 1) of a job tensor stay. */
typedef struct shrink {
    int slot, axis;
    const int *keep; /* [n_units] */
    int n_units, unit_len;
    const cce_calib_input *in; /* the tensor's input statistics (output error), or NULL */
    int compensated;           /* columns whose mean the bias restores */
    const char *note;
} shrink;

/* Replaces the job tensor by its kept rows/columns and appends its report row. */
static cce_status shrink_tensor(cce_block_job *job, const shrink *sh, cce_report *r) {
    double t0 = cce_prune_now();
    cce_job_tensor *jt = &job->tensors[sh->slot];
    const cce_tensor *w = jt->weight; /* [rows, cols] */
    int64_t rows = w->shape[0], cols = w->shape[1], len = sh->axis ? cols : rows;
    int kept = 0;
    for (int u = 0; u < sh->n_units; u++) kept += sh->keep[u] != 0;
    int64_t shape[2] = {rows, cols};
    shape[sh->axis] = (int64_t)kept * sh->unit_len;
    cce_tensor *fresh;
    cce_status s = cce_block_job_resize(job, (size_t)sh->slot, 2, shape, &fresh);
    if (s) return s;
    unsigned char *gone = malloc((size_t)len); /* [len]: 1 for a removed row/column */
    if (!gone) return cce_fail(CCE_ERR_NOMEM, NAME ": %s", jt->name);
    for (int64_t i = 0; i < len; i++) gone[i] = !sh->keep[i / sh->unit_len];
    double num = 0, den = 0;
    int64_t out = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            double v = w->data[i * cols + j];
            den += v * v;
            if (gone[sh->axis ? j : i])
                num += v * v;
            else
                fresh->data[out++] = w->data[i * cols + j];
        }
    cce_report_row row;
    cce_report_row_init(&row, NAME, job->layer, jt->name);
    int64_t numel = rows * cols, fresh_numel = cce_tensor_numel(fresh);
    row.params_before = numel;
    row.params_after = fresh_numel;
    row.bytes_before = 4 * numel;
    row.bytes_after = 4 * fresh_numel;
    row.bits_per_weight = numel ? 8.0 * (double)row.bytes_after / (double)numel : 0;
    row.sparsity = 0;
    row.rel_fro_error = den > 0 ? sqrt(num / den) : 0;
    if (sh->in && sh->in->sum_outer && sh->in->dim == cols && sh->in->n_tokens > 0) {
        double all, lost;
        if (!(s = quad_sum(w->data, rows, cols, sh->in->sum_outer, NULL, NULL, &all)))
            s = quad_sum(w->data, rows, cols, sh->in->sum_outer, sh->axis ? NULL : gone,
                         sh->axis ? gone : NULL, &lost);
        if (!s && sh->compensated) { /* minus n ||dW mean||^2 = ||dW sum||^2 / n */
            double c = 0;
            for (int64_t i = 0; i < rows; i++) {
                double y = 0;
                for (int64_t j = 0; j < cols; j++)
                    if (gone[j]) y += (double)w->data[i * cols + j] * sh->in->sum[j];
                c += y * y;
            }
            lost -= c / (double)sh->in->n_tokens;
        }
        if (!s) row.output_error = all > 0 ? sqrt(fmax(lost, 0) / all) : lost > 0 ? NAN : 0;
    }
    free(gone);
    if (s) return s;
    snprintf(row.note, sizeof row.note, "%.63s", sh->note);
    row.seconds = cce_prune_now() - t0;
    return cce_report_add(r, &row);
}

/* The report row of a bias that was sliced or compensated: before [n_before] (NULL: none). */
static cce_status bias_row(const cce_block_job *job, cce_layer_bias which, const cce_tensor *before,
                           const float *after, int64_t n_after, const char *note, cce_report *r) {
    cce_report_row row;
    char name[CCE_PLAN_NAME_MAX];
    cce_layer_bias_name(job->layer, which, name, sizeof name);
    cce_report_row_init(&row, NAME, job->layer, name);
    int64_t nb = before ? cce_tensor_numel(before) : 0;
    row.params_before = nb;
    row.params_after = n_after;
    row.bytes_before = 4 * nb;
    row.bytes_after = 4 * n_after;
    row.bits_per_weight = nb ? 8.0 * (double)row.bytes_after / (double)nb : 0;
    row.sparsity = 0;
    if (before && nb == n_after) { /* compensated in place: how far it moved */
        double num = 0, den = 0;
        for (int64_t i = 0; i < nb; i++) {
            double d = (double)after[i] - before->data[i];
            num += d * d;
            den += (double)before->data[i] * before->data[i];
        }
        row.rel_fro_error = den > 0 ? sqrt(num / den) : num > 0 ? NAN : 0;
    }
    row.seconds = 0;
    snprintf(row.note, sizeof row.note, "%.63s", note);
    return cce_report_add(r, &row);
}

/* Slices bias `which` (if the job has it) to the kept units (unit_len values each). */
static cce_status slice_bias(cce_block_job *job, cce_layer_bias which, const int *keep, int n_units,
                             int unit_len, cce_report *r) {
    const cce_tensor *b = job->bias[which];
    if (!b) return CCE_OK;
    if (cce_tensor_numel(b) != (int64_t)n_units * unit_len) {
        char name[CCE_PLAN_NAME_MAX];
        cce_layer_bias_name(job->layer, which, name, sizeof name);
        return cce_fail(CCE_ERR_ARG, NAME ": %s has %lld values, the layer shape implies %lld",
                        name, (long long)cce_tensor_numel(b), (long long)n_units * unit_len);
    }
    float *v = malloc((size_t)n_units * unit_len * sizeof *v); /* [kept rows] */
    if (!v) return cce_fail(CCE_ERR_NOMEM, NAME ": layer %d: bias", job->layer);
    int64_t n = 0;
    for (int64_t i = 0; i < (int64_t)n_units * unit_len; i++)
        if (keep[i / unit_len]) v[n++] = b->data[i];
    cce_status s = n > 0 ? cce_block_job_set_bias(job, which, v, n)
                         : cce_fail(CCE_ERR_INTERNAL, NAME ": layer %d: no rows kept", job->layer);
    if (!s) s = bias_row(job, which, b, v, n, "sliced with the kept rows", r);
    free(v);
    return s;
}

/* bias += W[:, removed] mean(x_removed), W [dim, n_units * unit_len] the job's tensor in slot. */
static cce_status compensate_bias(cce_block_job *job, cce_layer_bias which, int slot,
                                  const int *keep, int unit_len, const cce_calib_input *in,
                                  cce_report *r) {
    const cce_tensor *w = job->tensors[slot].weight; /* [rows, cols] */
    int64_t rows = w->shape[0], cols = w->shape[1];
    const cce_tensor *b = job->bias[which];
    if (b && cce_tensor_numel(b) != rows) {
        char name[CCE_PLAN_NAME_MAX];
        cce_layer_bias_name(job->layer, which, name, sizeof name);
        return cce_fail(CCE_ERR_ARG, NAME ": %s has %lld values, its weight %lld rows", name,
                        (long long)cce_tensor_numel(b), (long long)rows);
    }
    float *v = malloc((size_t)rows * sizeof *v);    /* [rows] the new bias */
    double *mu = malloc((size_t)cols * sizeof *mu); /* [cols] removed channels' means, else 0 */
    if (!v || !mu) {
        free(v);
        free(mu);
        return cce_fail(CCE_ERR_NOMEM, NAME ": layer %d: bias", job->layer);
    }
    for (int64_t j = 0; j < cols; j++)
        mu[j] = keep[j / unit_len] ? 0.0 : in->sum[j] / (double)in->n_tokens;
    for (int64_t i = 0; i < rows; i++) {
        double y = b ? b->data[i] : 0.0;
        for (int64_t j = 0; j < cols; j++) y += (double)w->data[i * cols + j] * mu[j];
        v[i] = (float)y;
    }
    cce_status s = cce_block_job_set_bias(job, which, v, rows);
    if (!s)
        s = bias_row(job, which, b, v, rows,
                     b ? "compensation added: W[:, removed] mean"
                       : "created: W[:, removed] mean (compensation)",
                     r);
    free(v);
    free(mu);
    return s;
}

/* The statistics of a site for the apply stage (compensation needs them). */
static cce_status apply_input(const flap_priv *fp, const cce_block_job *job, cce_calib_site site,
                              int dim, cce_calib_input *in, int *have) {
    *have = 0;
    if (!job->calib) {
        if (!fp->compensate) return CCE_OK;
        return cce_fail(CCE_ERR_STATE,
                        NAME ": layer %d: compensation needs calibration statistics in the job",
                        job->layer);
    }
    cce_status s = cce_flap_site_input(job->calib, job->layer, site, dim, in);
    if (s && !fp->compensate) {
        cce_error_clear();
        return CCE_OK;
    }
    if (!s && in->n_tokens < 1)
        return cce_fail(CCE_ERR_ARG, NAME ": layer %d: %s statistics of no tokens", job->layer,
                        cce_flap_site_name(site));
    *have = !s;
    return s;
}

static cce_status prune_heads(const flap_priv *fp, const flap_layer *fl, cce_block_job *job,
                              const int idx[CCE_LT_COUNT], int32_t *kv_map, int32_t *n_kv_out,
                              cce_report *r) {
    int nh = fl->n_units[U_HEAD], nkv = fl->n_kv, hd = fp->head_dim, dim = fp->dim;
    cce_status s;
    if ((s = cce_shrink_check_shape(NAME, &job->tensors[idx[CCE_LT_Q]], (int64_t)nh * hd, dim)) ||
        (s = cce_shrink_check_shape(NAME, &job->tensors[idx[CCE_LT_K]], (int64_t)nkv * hd, dim)) ||
        (s = cce_shrink_check_shape(NAME, &job->tensors[idx[CCE_LT_V]], (int64_t)nkv * hd, dim)) ||
        (s = cce_shrink_check_shape(NAME, &job->tensors[idx[CCE_LT_O]], dim, (int64_t)nh * hd)))
        return s;
    cce_calib_input in_o, in_x;
    int have_o, have_x;
    if ((s = apply_input(fp, job, CCE_SITE_O_IN, nh * hd, &in_o, &have_o))) return s;
    have_x = job->calib && !cce_calib_site_input(job->calib, job->layer, CCE_SITE_ATTN_IN, &in_x) &&
             in_x.dim == dim;
    cce_error_clear();
    int *keep = malloc((size_t)nh * sizeof *keep);       /* [nh] */
    int *keep_kv = calloc((size_t)nkv, sizeof *keep_kv); /* [nkv] */
    int *kv_new = calloc((size_t)nkv, sizeof *kv_new);   /* [nkv] new index of a kept kv head */
    if (!keep || !keep_kv || !kv_new) {
        s = cce_fail(CCE_ERR_NOMEM, NAME ": layer %d: %d heads", job->layer, nh);
        goto done;
    }
    for (int h = 0; h < nh; h++) keep[h] = !fl->drop[U_HEAD][h];
    for (int h = 0; h < nh; h++)
        if (keep[h]) keep_kv[fl->kv_of_head[h]] = 1;
    int kept_kv = 0;
    for (int g = 0; g < nkv; g++) kv_new[g] = keep_kv[g] ? kept_kv++ : -1;
    for (int h = 0, j = 0; h < nh; h++)
        if (keep[h]) kv_map[j++] = kv_new[fl->kv_of_head[h]];
    int comp = fp->compensate;
    char note[128];
    snprintf(note, sizeof note, "kept %d of %d heads, %d of %d kv heads%s", nh - fl->k[U_HEAD], nh,
             kept_kv, nkv, comp ? ", bias" : "");
    /* the bias first: it reads the o_proj columns that are about to go */
    if (comp && (s = compensate_bias(job, CCE_LB_O, idx[CCE_LT_O], keep, hd, &in_o, r))) goto done;
    shrink q = {idx[CCE_LT_Q], 0, keep, nh, hd, have_x ? &in_x : NULL, 0, note};
    shrink o = {idx[CCE_LT_O], 1, keep, nh, hd, have_o ? &in_o : NULL, comp, note};
    if ((s = shrink_tensor(job, &q, r)) || (s = slice_bias(job, CCE_LB_Q, keep, nh, hd, r)))
        goto done;
    if (kept_kv < nkv) {
        shrink k = {idx[CCE_LT_K], 0, keep_kv, nkv, hd, have_x ? &in_x : NULL, 0, note};
        shrink v = {idx[CCE_LT_V], 0, keep_kv, nkv, hd, have_x ? &in_x : NULL, 0, note};
        if ((s = shrink_tensor(job, &k, r)) ||
            (s = slice_bias(job, CCE_LB_K, keep_kv, nkv, hd, r)) ||
            (s = shrink_tensor(job, &v, r)) || (s = slice_bias(job, CCE_LB_V, keep_kv, nkv, hd, r)))
            goto done;
    }
    s = shrink_tensor(job, &o, r);
    *n_kv_out = kept_kv;
done:
    free(keep);
    free(keep_kv);
    free(kv_new);
    return s;
}

static cce_status prune_ffn(const flap_priv *fp, const flap_layer *fl, cce_block_job *job,
                            const int idx[CCE_LT_COUNT], cce_report *r) {
    int H = fl->n_units[U_FFN], dim = fp->dim;
    cce_status s;
    if ((s = cce_shrink_check_shape(NAME, &job->tensors[idx[CCE_LT_GATE]], H, dim)) ||
        (s = cce_shrink_check_shape(NAME, &job->tensors[idx[CCE_LT_UP]], H, dim)) ||
        (s = cce_shrink_check_shape(NAME, &job->tensors[idx[CCE_LT_DOWN]], dim, H)))
        return s;
    cce_calib_input in_a, in_x;
    int have_a, have_x;
    if ((s = apply_input(fp, job, CCE_SITE_DOWN_IN, H, &in_a, &have_a))) return s;
    have_x = job->calib && !cce_calib_site_input(job->calib, job->layer, CCE_SITE_FFN_IN, &in_x) &&
             in_x.dim == dim;
    cce_error_clear();
    int *keep = malloc((size_t)H * sizeof *keep); /* [H] */
    if (!keep) return cce_fail(CCE_ERR_NOMEM, NAME ": layer %d: %d neurons", job->layer, H);
    for (int j = 0; j < H; j++) keep[j] = !fl->drop[U_FFN][j];
    int comp = fp->compensate;
    char note[128];
    snprintf(note, sizeof note, "kept %d of %d neurons%s", H - fl->k[U_FFN], H,
             comp ? ", bias" : "");
    shrink g = {idx[CCE_LT_GATE], 0, keep, H, 1, have_x ? &in_x : NULL, 0, note};
    shrink u = {idx[CCE_LT_UP], 0, keep, H, 1, have_x ? &in_x : NULL, 0, note};
    shrink d = {idx[CCE_LT_DOWN], 1, keep, H, 1, have_a ? &in_a : NULL, comp, note};
    if (!(comp && (s = compensate_bias(job, CCE_LB_DOWN, idx[CCE_LT_DOWN], keep, 1, &in_a, r))) &&
        !(s = shrink_tensor(job, &g, r)) && !(s = slice_bias(job, CCE_LB_GATE, keep, H, 1, r)) &&
        !(s = shrink_tensor(job, &u, r)) && !(s = slice_bias(job, CCE_LB_UP, keep, H, 1, r)))
        s = shrink_tensor(job, &d, r);
    free(keep);
    return s;
}

/* Every tensor of a pruned group must be in the job and planned (the plan stage chose them). */
static cce_status check_group(const cce_block_job *job, const int idx[CCE_LT_COUNT], int kind) {
    const cce_layer_tensor *g = kind == U_FFN ? group_ffn : group_heads;
    int n = kind == U_FFN ? 3 : 4;
    for (int i = 0; i < n; i++) {
        char name[CCE_PLAN_NAME_MAX];
        cce_layer_tensor_name(job->layer, g[i], name, sizeof name);
        if (idx[g[i]] < 0)
            return cce_fail(CCE_ERR_ARG, NAME ": layer %d: the job has no %s (%s couple)",
                            job->layer, name, kind_name[kind]);
        if (job->tensors[idx[g[i]]].skip)
            return cce_fail(CCE_ERR_STATE,
                            NAME ": %s is skipped in the job but the plan stage prunes its %s "
                                 "(rules changed between plan and apply?)",
                            name, kind_name[kind]);
    }
    return CCE_OK;
}

static cce_status flap_apply(void *priv, cce_block_job *job, cce_report *r) {
    const flap_priv *fp = priv;
    if (!fp->planned)
        return cce_fail(CCE_ERR_STATE, NAME ": the plan stage must run before apply "
                                            "(cce_strategy_instance_plan)");
    if (job->layer < 0) return CCE_OK; /* embeddings and classifier have no structured units */
    if (job->layer >= fp->n_layers)
        return cce_fail(CCE_ERR_ARG, NAME ": layer %d is outside the planned model (%d layers)",
                        job->layer, fp->n_layers);
    const flap_layer *fl = &fp->layers[job->layer];
    if (!fl->present || (fl->k[U_FFN] == 0 && fl->k[U_HEAD] == 0)) return CCE_OK;
    if (!job->model)
        return cce_fail(CCE_ERR_ARG, NAME ": layer %d: the job carries no model (layer shapes)",
                        job->layer);
    const cce_layer_shape *ls = cce_model_layer(job->model, job->layer);
    if (!ls || ls->removed || ls->hidden_dim != fl->n_units[U_FFN] ||
        ls->n_heads != fl->n_units[U_HEAD] || ls->n_kv_heads != fl->n_kv)
        return cce_fail(CCE_ERR_STATE, NAME ": layer %d changed shape between plan and apply",
                        job->layer);
    int idx[CCE_LT_COUNT];
    cce_shrink_find_tensors(job, idx);
    cce_status s = CCE_OK;
    for (int k = 0; k < U_KINDS && !s; k++)
        if (fl->k[k] > 0) s = check_group(job, idx, k);
    if (s) return s;
    int32_t hidden = ls->hidden_dim, n_heads = ls->n_heads, n_kv = ls->n_kv_heads;
    int32_t *kv_map = malloc((size_t)n_heads * sizeof *kv_map); /* [n_heads] */
    if (!kv_map) return cce_fail(CCE_ERR_NOMEM, NAME ": layer %d: head map", job->layer);
    memcpy(kv_map, ls->kv_of_head, (size_t)n_heads * sizeof *kv_map);
    if (fl->k[U_HEAD] > 0) {
        s = prune_heads(fp, fl, job, idx, kv_map, &n_kv, r);
        n_heads -= fl->k[U_HEAD];
    }
    if (!s && fl->k[U_FFN] > 0) {
        s = prune_ffn(fp, fl, job, idx, r);
        hidden -= fl->k[U_FFN];
    }
    if (!s) s = cce_block_job_set_shape(job, hidden, n_heads, n_kv, kv_map);
    free(kv_map);
    return s;
}

const cce_strategy cce_strategy_flap = {
    .api_version = CCE_STRATEGY_API_VERSION,
    .name = NAME,
    .summary = "FLAP: FFN neurons / heads by fluctuation, global standardised search, bias "
               "compensation",
    .params = flap_params,
    .needs = CCE_NEEDS_CALIBRATION | CCE_NEEDS_RESIZE,
    .priv_size = sizeof(flap_priv),
    .init = flap_init,
    .plan = flap_plan,
    .apply = flap_apply,
    .fini = flap_fini,
};
