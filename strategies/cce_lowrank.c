/* CCE stage 4: activation-whitened low rank (docs/CCE.md). See cce_internal.h for the contract.
 *
 * The whitened SVD itself is strategies/lowrank.h's (cce_lowrank_whitening_new, cce_lowrank_svd_*),
 * fed with G + delta I as its second moment, so S S^T = G + delta I exactly as CCE.md writes it.
 *
 * The rank choice of a layer: each matrix takes "dense" or a rank r in [1, r_max] with
 * r_max = the largest r with r (out + in) < out in (below break-even). For a multiplier mu every
 * matrix independently minimises  dropped(r) / total + mu * parameters kept  (ties: dense, then
 * the lower rank); the parameters removed grow with mu, and mu is bisected on [0, 2] (at mu = 2
 * every matrix is at rank 1) for the smallest value that removes at least the budget. That choice
 * can overshoot where a matrix jumps several ranks at once (equal singular values), so the
 * overshoot is then handed back greedily: one rank up (or r_max to dense) at a time, always the
 * step of the largest energy regained per parameter, while the budget stays met. The result
 * removes at least the budget and less than the budget plus the smallest step still possible,
 * which is at most one rank unit (out + in) of some matrix. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cce_internal.h"
#include "encoding.h"

#define CCE_MU_HI      2.0
#define CCE_MU_BISECTS 200

int64_t cce_lowrank_max_rank(int64_t rows, int64_t cols) {
    if (rows < 1 || cols < 1) return 0;
    int64_t r = (rows * cols - 1) / (rows + cols);
    int64_t k = rows < cols ? rows : cols;
    return r > k ? k : r;
}

/* Per matrix: relative dropped energy rel [r_max + 1] (rel[r] = sum_{i >= r} sigma_i^2 / total). */
typedef struct choice_tab {
    int64_t rows, cols, r_max;
    double *rel;
} choice_tab;

static double rel_at(const choice_tab *t, int64_t r) {
    return t->rel[r];
}

/* The rank minimising rel + mu * params for one matrix (-1: dense). */
static int64_t best_rank(const choice_tab *t, double mu) {
    int64_t best = -1;
    double cost = mu * (double)(t->rows * t->cols);
    for (int64_t r = 1; r <= t->r_max; r++) {
        double c = rel_at(t, r) + mu * (double)(r * (t->rows + t->cols));
        if (c < cost) {
            cost = c;
            best = r;
        }
    }
    return best;
}

static int64_t removed_of(const choice_tab *t, int64_t r) {
    return r < 0 ? 0 : t->rows * t->cols - r * (t->rows + t->cols);
}

static int64_t removed_at(const choice_tab *tab, int n, double mu, int64_t *rank) {
    int64_t sum = 0;
    for (int i = 0; i < n; i++) {
        rank[i] = best_rank(&tab[i], mu);
        sum += removed_of(&tab[i], rank[i]);
    }
    return sum;
}

/* Hands back what the choice removes beyond the budget (header comment). */
static int64_t refine(const choice_tab *tab, int n, int64_t budget, int64_t removed,
                      int64_t *rank) {
    for (;;) {
        int pick = -1;
        double best = -1;
        int64_t pick_dp = 0;
        for (int i = 0; i < n; i++) {
            const choice_tab *t = &tab[i];
            if (rank[i] < 0) continue;
            int64_t dp;
            double de;
            if (rank[i] < t->r_max) {
                dp = t->rows + t->cols;
                de = rel_at(t, rank[i]) - rel_at(t, rank[i] + 1);
            } else {
                dp = removed_of(t, rank[i]);
                de = rel_at(t, rank[i]);
            }
            if (removed - dp < budget) continue;
            double gain = de / (double)dp;
            if (gain > best) {
                best = gain;
                pick = i;
                pick_dp = dp;
            }
        }
        if (pick < 0) return removed;
        rank[pick] = rank[pick] < tab[pick].r_max ? rank[pick] + 1 : -1;
        removed -= pick_dp;
    }
}

cce_status cce_lowrank_choose(const cce_lr_matrix *m, int n, int64_t budget, int64_t *rank,
                              int64_t *removed, double *mu_out) {
    if (n < 0) return cce_fail(CCE_ERR_ARG, CCE_NAME ": low rank: %d matrices", n);
    choice_tab *tab = calloc((size_t)(n > 0 ? n : 1), sizeof *tab); /* [n] */
    int64_t *tmp = malloc((size_t)(n > 0 ? n : 1) * sizeof *tmp);   /* [n] ranks at a trial mu */
    cce_status s = CCE_OK;
    if (!tab || !tmp) {
        s = cce_fail(CCE_ERR_NOMEM, CCE_NAME ": low rank choice of %d matrices", n);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const cce_lr_matrix *x = &m[i];
        int64_t k = x->rows < x->cols ? x->rows : x->cols;
        if (x->rows < 1 || x->cols < 1 || x->k != k || !x->sigma) {
            s = cce_fail(CCE_ERR_ARG,
                         CCE_NAME ": low rank: matrix %d (%s) is [%lld, %lld] with %lld "
                                  "singular values",
                         i, x->what ? x->what : "?", (long long)x->rows, (long long)x->cols,
                         (long long)x->k);
            goto done;
        }
        choice_tab *t = &tab[i];
        t->rows = x->rows;
        t->cols = x->cols;
        t->r_max = cce_lowrank_max_rank(x->rows, x->cols);
        if (!(t->rel = malloc((size_t)(t->r_max + 1) * sizeof *t->rel))) {
            s = cce_fail(CCE_ERR_NOMEM, CCE_NAME ": low rank choice of %s", x->what);
            goto done;
        }
        double total = 0, tail = 0;
        for (int64_t j = 0; j < k; j++) {
            if (!isfinite(x->sigma[j])) {
                s = cce_fail(CCE_ERR_NUMERIC,
                             CCE_NAME ": low rank: %s has a non-finite singular "
                                      "value",
                             x->what ? x->what : "?");
                goto done;
            }
            total += x->sigma[j] * x->sigma[j];
        }
        for (int64_t r = k - 1; r >= 0; r--) {
            tail += x->sigma[r] * x->sigma[r];
            if (r <= t->r_max) t->rel[r] = total > 0 ? tail / total : 0;
        }
    }
    double mu_hi = CCE_MU_HI, mu_lo = 0;
    int64_t got;
    if (budget <= 0) {
        got = removed_at(tab, n, 0, rank);
        mu_hi = 0;
    } else {
        int64_t most = removed_at(tab, n, mu_hi, rank);
        if (most < budget) {
            s = cce_fail(CCE_ERR_RANGE,
                         CCE_NAME ": low rank can remove at most %lld parameters here (every "
                                  "matrix at rank 1), the budget asks for %lld",
                         (long long)most, (long long)budget);
            goto done;
        }
        for (int it = 0; it < CCE_MU_BISECTS; it++) {
            double mid = 0.5 * (mu_lo + mu_hi);
            if (removed_at(tab, n, mid, tmp) >= budget)
                mu_hi = mid;
            else
                mu_lo = mid;
        }
        got = removed_at(tab, n, mu_hi, rank);
        got = refine(tab, n, budget, got, rank);
    }
    if (removed) *removed = got;
    if (mu_out) *mu_out = mu_hi;
done:
    for (int i = 0; tab && i < n; i++) free(tab[i].rel);
    free(tab);
    free(tmp);
    return s;
}

cce_status cce_lowrank_whitened(const float *w, int64_t rows, int64_t cols, const double *G,
                                double delta, const char *what, double **S, cce_lowrank_svd **svd) {
    *S = NULL;
    *svd = NULL;
    if (cols < 1 || rows < 1)
        return cce_fail(CCE_ERR_ARG, "%s: cannot factor an empty [%lld, %lld] matrix", what,
                        (long long)rows, (long long)cols);
    if (!(delta >= 0) || !isfinite(delta))
        return cce_fail(CCE_ERR_RANGE, "%s: delta = %g is not a finite number >= 0", what, delta);
    size_t nn = (size_t)cols * (size_t)cols;
    double *gd = malloc(nn * sizeof *gd); /* [cols, cols] G + delta I */
    if (!gd)
        return cce_fail(CCE_ERR_NOMEM, "%s: second moment of width %lld", what, (long long)cols);
    memcpy(gd, G, nn * sizeof *gd);
    for (int64_t i = 0; i < cols; i++) gd[i * cols + i] += delta;
    double damp_used;
    cce_status s = cce_lowrank_whitening_new(gd, cols, 1, 0.0, what, S, &damp_used);
    free(gd);
    if (s) {
        cce_error_prefix(CCE_NAME ": ");
        return s;
    }
    if ((s = cce_lowrank_svd_new(w, rows, cols, *S, what, svd))) {
        free(*S);
        *S = NULL;
    }
    return s;
}

cce_status cce_lowrank_encode(const cce_lowrank_svd *d, int64_t rank, const char *what, float *out,
                              cce_encoding **enc) {
    *enc = NULL;
    if (rank < 1 || rank > d->k)
        return cce_fail(CCE_ERR_RANGE, "%s: rank %lld is outside [1, %lld]", what, (long long)rank,
                        (long long)d->k);
    cce_tensor *a = NULL, *b = NULL;
    int64_t shape[2] = {d->rows, d->cols};
    cce_status s = cce_lowrank_svd_factors(d, rank, what, &a, &b);
    if (!s) s = cce_encoding_lowrank_product(a->data, b->data, d->rows, rank, d->cols, what, out);
    if (!s) s = cce_encoding_new_lowrank(a->data, b->data, rank, 2, shape, what, enc);
    cce_tensor_free(a);
    cce_tensor_free(b);
    return s;
}
