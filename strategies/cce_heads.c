/* CCE stage 1 / 3 for attention heads and the interleaved stage-3 removal of heads and FFN
 * neurons (docs/CCE.md). See cce_internal.h for the contracts.
 *
 * Head scores come from the head Gram matrix K_hk = E[z_h . z_k] of the per-head output vectors
 * z_h = W_O^(h) o_h. With o the concatenated head outputs (the input of o_proj, second moment
 * G_o = E[o o^T]) and M = W_O^T W_O [H e, H e], z_h . z_k = sum_{i in h, j in k} M_ij o_i o_j, so
 * K_hk = sum_{i in h, j in k} M_ij G_o[i, j]: one GEMM and one pass over the m x m entries.
 * The attention output is y = sum_h 1 * z_h, so the greedy removal runs on K with the output map
 * W = a row of ones [1, H]: a head's score is 1 / P_hh = K_hh (1 - R2_h) (CCE.md: I_h = K_hh and
 * R2_h from K), and after a removal the OBS update carries the refitted weight of every present
 * head (1 - P_jh / P_jj, ...), exactly as W_down's columns are carried for neurons.
 *
 * Interleaving (cce_stage3_select): every round looks at the best unit of each kind (the lowest
 * greedy score) and the parameters its removal frees (an FFN neuron: 3 dim; a query head:
 * 2 head_dim dim, plus 2 head_dim dim when it is the last present query head of its kv head, whose
 * k and v rows then go too). Among those that still fit in the share, the lowest score per
 * parameter is removed (ties: the earlier kind); the round repeats until no best unit fits. The
 * greedy objects keep one unit of each kind (at least one neuron and one head stay). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cce_internal.h"

cce_status cce_head_gram(const float *wo, int d, int n_heads, int head_dim, const double *Go,
                         double *K, const char *what) {
    if (d < 1 || n_heads < 1 || head_dim < 1)
        return cce_fail(CCE_ERR_ARG, CCE_NAME ": %s: head Gram of %d heads of %d over width %d",
                        what, n_heads, head_dim, d);
    int m = n_heads * head_dim;
    double *W = malloc((size_t)d * m * sizeof *W); /* [d, m] W_O in double */
    double *M = malloc((size_t)m * m * sizeof *M); /* [m, m] W_O^T W_O (upper triangle) */
    if (!W || !M) {
        free(W);
        free(M);
        return cce_fail(CCE_ERR_NOMEM, CCE_NAME ": %s: head Gram (%d x %d)", what, m, m);
    }
    for (int64_t i = 0; i < (int64_t)d * m; i++) W[i] = wo[i];
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, m, d, 1.0, W, m, 0.0, M, m);
    for (int64_t i = 0; i < (int64_t)n_heads * n_heads; i++) K[i] = 0;
    for (int i = 0; i < m; i++) {
        int hi = i / head_dim;
        for (int j = i; j < m; j++) {
            double v = M[(int64_t)i * m + j] * Go[(int64_t)i * m + j];
            int hj = j / head_dim;
            K[(int64_t)hi * n_heads + hj] += v;
            if (j != i) K[(int64_t)hj * n_heads + hi] += v; /* M and G_o are symmetric */
        }
    }
    free(W);
    free(M);
    for (int64_t i = 0; i < (int64_t)n_heads * n_heads; i++)
        if (!isfinite(K[i]))
            return cce_fail(CCE_ERR_NUMERIC, CCE_NAME ": %s: the head Gram is not finite", what);
    return CCE_OK;
}

cce_status cce_head_greedy_new(const double *K, int n_heads, double delta_scale, const char *what,
                               cce_greedy **out) {
    *out = NULL;
    double *ones = malloc((size_t)(n_heads > 0 ? n_heads : 1) * sizeof *ones); /* [1, H] */
    if (!ones) return cce_fail(CCE_ERR_NOMEM, CCE_NAME ": %s: %d heads", what, n_heads);
    for (int h = 0; h < n_heads; h++) ones[h] = 1.0;
    cce_status s =
        cce_greedy_new(K, n_heads, cce_delta_of(K, n_heads, delta_scale), ones, 1, what, out);
    free(ones);
    return s;
}

/* The parameters removing unit j of kind k frees now (with its group when it is the last). */
static int64_t unit_cost(const cce_stage3_kind *k, const int *group_left, int j) {
    int64_t c = k->unit_params;
    if (k->group && group_left[k->group[j]] == 1) c += k->group_params;
    return c;
}

cce_status cce_stage3_select(cce_stage3_kind *kinds, int n_kinds, int64_t share, int64_t *removed,
                             const char *what) {
    int *left[CCE_STAGE3_KINDS] = {0}; /* [n_groups] present units per group, per kind */
    cce_status s = CCE_OK;
    *removed = 0;
    if (n_kinds < 0 || n_kinds > CCE_STAGE3_KINDS)
        return cce_fail(CCE_ERR_ARG, CCE_NAME ": %s: %d kinds of unit", what, n_kinds);
    for (int k = 0; k < n_kinds; k++) {
        cce_stage3_kind *kd = &kinds[k];
        kd->removed = 0;
        if (!kd->g || !kd->group) continue;
        if (kd->n_groups < 1 || !(left[k] = calloc((size_t)kd->n_groups, sizeof *left[k]))) {
            s = cce_fail(kd->n_groups < 1 ? CCE_ERR_ARG : CCE_ERR_NOMEM, CCE_NAME ": %s: %d groups",
                         what, kd->n_groups);
            goto done;
        }
        for (int j = 0; j < kd->n; j++) {
            if (kd->group[j] < 0 || kd->group[j] >= kd->n_groups) {
                s = cce_fail(CCE_ERR_ARG, CCE_NAME ": %s: unit %d is in group %d of %d", what, j,
                             kd->group[j], kd->n_groups);
                goto done;
            }
            left[k][kd->group[j]]++;
        }
    }
    for (;;) {
        int pick = -1, pick_j = -1;
        double best = INFINITY, pick_score = 0;
        int64_t pick_cost = 0;
        for (int k = 0; k < n_kinds; k++) {
            const cce_stage3_kind *kd = &kinds[k];
            if (!kd->g) continue;
            double sc;
            int j = cce_greedy_best(kd->g, &sc);
            if (j < 0) continue;
            int64_t c = unit_cost(kd, left[k], j);
            if (c < 1 || *removed + c > share) continue;
            double per = sc / (double)c;
            if (pick < 0 || per < best) {
                best = per;
                pick = k;
                pick_j = j;
                pick_cost = c;
                pick_score = sc;
            }
        }
        if (pick < 0) break;
        cce_stage3_kind *kd = &kinds[pick];
        if ((s = cce_greedy_drop(kd->g, pick_j))) goto done;
        if (kd->group) left[pick][kd->group[pick_j]]--;
        kd->order[kd->removed] = pick_j;
        if (kd->score) kd->score[kd->removed] = pick_score;
        kd->removed++;
        *removed += pick_cost;
    }
done:
    for (int k = 0; k < n_kinds; k++) free(left[k]);
    return s;
}

void cce_expand_keep(const int *keep, int n_units, int unit_len, int *out) {
    for (int u = 0; u < n_units; u++)
        for (int i = 0; i < unit_len; i++) out[(int64_t)u * unit_len + i] = keep[u] != 0;
}

void cce_copy_kept(const float *w, int64_t rows, int64_t cols, const int *row_keep,
                   const int *col_keep, float *out) {
    int64_t kc = 0;
    for (int64_t b = 0; b < cols; b++) kc += !col_keep || col_keep[b];
    for (int64_t a = 0, ra = 0; a < rows; a++) {
        if (row_keep && !row_keep[a]) continue;
        const float *src = w + a * cols; /* [cols] */
        float *dst = out + ra * kc;      /* [kc] */
        if (!col_keep) {
            memcpy(dst, src, (size_t)cols * sizeof *dst);
        } else {
            for (int64_t b = 0, c = 0; b < cols; b++)
                if (col_keep[b]) dst[c++] = src[b];
        }
        ra++;
    }
}
