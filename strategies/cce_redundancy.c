/* CCE stage 1: redundancy assessment (docs/CCE.md). See cce_internal.h for the contracts. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cce_internal.h"

double cce_delta_of(const double *C, int n, double delta_scale) {
    double tr = 0;
    for (int i = 0; i < n; i++) tr += C[(int64_t)i * n + i];
    double mean = n > 0 ? tr / n : 0;
    return mean > 0 ? delta_scale * mean : delta_scale;
}

cce_status cce_spd_inverse(const double *A, int n, double delta, double *P, const char *what) {
    double *L = malloc((size_t)n * n * sizeof *L); /* [n, n] Cholesky factor */
    if (!L) return cce_fail(CCE_ERR_NOMEM, CCE_NAME ": %s: %d x %d matrix", what, n, n);
    for (int64_t i = 0; i < (int64_t)n * n; i++) {
        L[i] = A[i];
        P[i] = 0;
    }
    for (int i = 0; i < n; i++) {
        L[(int64_t)i * n + i] += delta;
        P[(int64_t)i * n + i] = 1;
    }
    lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', n, L, n);
    if (info == 0) info = LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'L', n, n, L, n, P, n);
    free(L);
    if (info != 0)
        return cce_fail(CCE_ERR_NUMERIC,
                        CCE_NAME ": %s: the regularised second moment (%d x %d, delta %g) is not "
                                 "positive definite (LAPACK info %d); raise delta_scale or use "
                                 "more calibration tokens",
                        what, n, n, delta, (int)info);
    for (int64_t i = 0; i < (int64_t)n * n; i++)
        if (!isfinite(P[i]))
            return cce_fail(CCE_ERR_NUMERIC, CCE_NAME ": %s: the inverse is not finite", what);
    return CCE_OK;
}

cce_status cce_loo_r2(const double *G, int n, double delta, double *r2, const char *what) {
    double *P = malloc((size_t)n * n * sizeof *P); /* [n, n] */
    if (!P) return cce_fail(CCE_ERR_NOMEM, CCE_NAME ": %s: %d x %d inverse", what, n, n);
    cce_status s = cce_spd_inverse(G, n, delta, P, what);
    for (int j = 0; j < n && !s; j++) {
        double g = G[(int64_t)j * n + j], p = P[(int64_t)j * n + j];
        r2[j] = g > 0 ? 1.0 - 1.0 / (p * g) : 0.0;
    }
    free(P);
    return s;
}

/* The greedy state. P keeps only its upper triangle (row-major): the Schur downdate is one
 * symmetric rank-1 update (cblas_dsyr), the OBS refit of W one general rank-1 update (cblas_dger),
 * and the rescoring one contiguous pass over W, so a removal costs O(n^2 / 2 + rows n) in BLAS
 * level-2 calls. Removed units have zero rows/columns in P and zero columns in W. */
struct cce_greedy {
    int n, rows, present;
    double *P;     /* [n, n] upper triangle of the inverse of G + delta I over the present units */
    double *W;     /* [rows, n] refitted columns */
    double *score; /* [n] current scores (INFINITY for removed units) */
    double *prow;  /* [n] scratch: row j of P (0 at removed units) */
    double *wcol;  /* [rows] scratch: column j of W */
    int *alive;    /* [n] */
    char what[64];
};

void cce_greedy_free(cce_greedy *g) {
    if (!g) return;
    free(g->P);
    free(g->W);
    free(g->score);
    free(g->prow);
    free(g->wcol);
    free(g->alive);
    free(g);
}

/* score_i = ||W[:, i]||^2 / P_ii, the squared column norms accumulated row by row. */
static void greedy_rescore(cce_greedy *g) {
    int n = g->n;
    double *w2 = g->score;
    for (int i = 0; i < n; i++) w2[i] = 0;
    for (int a = 0; a < g->rows; a++) {
        const double *row = g->W + (int64_t)a * n; /* [n] */
        for (int i = 0; i < n; i++) w2[i] += row[i] * row[i];
    }
    for (int i = 0; i < n; i++) w2[i] = g->alive[i] ? w2[i] / g->P[(int64_t)i * n + i] : INFINITY;
}

cce_status cce_greedy_new(const double *G, int n, double delta, const double *W, int rows,
                          const char *what, cce_greedy **out) {
    *out = NULL;
    if (n < 1 || rows < 0)
        return cce_fail(CCE_ERR_ARG, CCE_NAME ": %s: greedy removal over %d units", what, n);
    cce_greedy *g = calloc(1, sizeof *g);
    if (!g) return cce_fail(CCE_ERR_NOMEM, CCE_NAME ": %s: greedy removal", what);
    g->n = n;
    g->rows = rows;
    g->present = n;
    snprintf(g->what, sizeof g->what, "%s", what);
    g->P = malloc((size_t)n * n * sizeof *g->P);
    g->W = malloc((size_t)(rows > 0 ? rows : 1) * n * sizeof *g->W);
    g->score = malloc((size_t)n * sizeof *g->score);
    g->prow = malloc((size_t)n * sizeof *g->prow);
    g->wcol = malloc((size_t)(rows > 0 ? rows : 1) * sizeof *g->wcol);
    g->alive = malloc((size_t)n * sizeof *g->alive);
    if (!g->P || !g->W || !g->score || !g->prow || !g->wcol || !g->alive) {
        cce_greedy_free(g);
        return cce_fail(CCE_ERR_NOMEM, CCE_NAME ": %s: greedy removal of %d units", what, n);
    }
    cce_status s = cce_spd_inverse(G, n, delta, g->P, what);
    if (s) {
        cce_greedy_free(g);
        return s;
    }
    memcpy(g->W, W, (size_t)rows * n * sizeof *g->W);
    for (int i = 0; i < n; i++) g->alive[i] = 1;
    greedy_rescore(g);
    *out = g;
    return CCE_OK;
}

int cce_greedy_best(const cce_greedy *g, double *score) {
    if (g->present < 2) return -1;
    int best = -1;
    for (int i = 0; i < g->n; i++)
        if (g->alive[i] && (best < 0 || g->score[i] < g->score[best])) best = i;
    if (score) *score = g->score[best];
    return best;
}

const double *cce_greedy_scores(const cce_greedy *g) {
    return g->score;
}

cce_status cce_greedy_drop(cce_greedy *g, int j) {
    int n = g->n, rows = g->rows;
    if (j < 0 || j >= n || !g->alive[j] || g->present < 2)
        return cce_fail(CCE_ERR_RANGE, CCE_NAME ": %s: cannot remove unit %d (%d present)", g->what,
                        j, g->present);
    double *P = g->P, *Wc = g->W, *prow = g->prow, *wcol = g->wcol;
    const int *alive = g->alive;
    double pjj = P[(int64_t)j * n + j];
    /* row j of the symmetric P from its upper triangle: column j above the diagonal, row j from
     * it on */
    for (int i = 0; i < j; i++) prow[i] = alive[i] ? P[(int64_t)i * n + j] : 0;
    for (int i = j; i < n; i++) prow[i] = alive[i] ? P[(int64_t)j * n + i] : 0;
    for (int a = 0; a < rows; a++) wcol[a] = Wc[(int64_t)a * n + j];
    /* OBS refit W[:, i] -= W[:, j] P_ji / P_jj (removed columns stay 0: prow is 0 there), then the
     * Schur-complement downdate P -= P[:, j] P[j, :] / P_jj */
    if (rows > 0) cblas_dger(CblasRowMajor, rows, n, -1.0 / pjj, wcol, 1, prow, 1, Wc, n);
    cblas_dsyr(CblasRowMajor, CblasUpper, n, -1.0 / pjj, prow, 1, P, n);
    g->alive[j] = 0;
    g->present--;
    for (int a = 0; a < rows; a++) Wc[(int64_t)a * n + j] = 0;
    for (int i = 0; i < n; i++) P[(int64_t)j * n + i] = P[(int64_t)i * n + j] = 0;
    for (int i = 0; i < n; i++)
        if (g->alive[i] && !(P[(int64_t)i * n + i] > 0))
            return cce_fail(CCE_ERR_NUMERIC,
                            CCE_NAME ": %s: the downdated inverse lost positive definiteness "
                                     "(unit %d); raise delta_scale",
                            g->what, i);
    greedy_rescore(g);
    return CCE_OK;
}

cce_status cce_greedy_remove(const double *G, int n, double delta, const double *W, int rows, int k,
                             int *order, double *score0, const char *what) {
    if (n < 1 || k < 0 || k >= n)
        return cce_fail(CCE_ERR_RANGE,
                        CCE_NAME ": %s: removing %d of %d units (at least one stays)", what, k, n);
    cce_greedy *g;
    cce_status s = cce_greedy_new(G, n, delta, W, rows, what, &g);
    if (s) return s;
    if (score0) memcpy(score0, g->score, (size_t)n * sizeof *score0);
    for (int i = 0; i < k && !s; i++) {
        order[i] = cce_greedy_best(g, NULL);
        s = cce_greedy_drop(g, order[i]);
    }
    cce_greedy_free(g);
    return s;
}

cce_status cce_eigen_redundancy(const double *C, int n, double eps, double *R, int *r_out,
                                double *curve, const char *what) {
    double *A = malloc((size_t)n * n * sizeof *A); /* [n, n] overwritten by dsyevd */
    double *w = malloc((size_t)n * sizeof *w);     /* [n] ascending eigenvalues */
    if (!A || !w) {
        free(A);
        free(w);
        return cce_fail(CCE_ERR_NOMEM, CCE_NAME ": %s: %d x %d eigenproblem", what, n, n);
    }
    memcpy(A, C, (size_t)n * n * sizeof *A);
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', n, A, n, w);
    free(A);
    if (info != 0) {
        free(w);
        return cce_fail(CCE_ERR_NUMERIC, CCE_NAME ": %s: eigensolver failed (LAPACK info %d)", what,
                        (int)info);
    }
    double tr = 0;
    for (int i = 0; i < n; i++) tr += w[i] > 0 ? w[i] : 0;
    int r = 0;
    double cum = 0;
    for (int i = 0; i < n; i++) {
        double l = w[n - 1 - i] > 0 ? w[n - 1 - i] : 0; /* descending */
        cum += l;
        if (curve) curve[i] = tr > 0 ? cum / tr : 1.0;
        if (r == 0 && tr > 0 && cum >= (1.0 - eps) * tr) r = i + 1;
    }
    free(w);
    *R = n > 0 ? 1.0 - (double)r / n : 0;
    if (r_out) *r_out = r;
    return CCE_OK;
}

cce_status cce_moments(const double *sum, const double *sum_outer, int n, int64_t n_tokens,
                       double *G, double *C, const char *what) {
    if (n_tokens < 1)
        return cce_fail(CCE_ERR_ARG, CCE_NAME ": %s: the calibration statistics hold no tokens",
                        what);
    if (!sum_outer)
        return cce_fail(CCE_ERR_ARG,
                        CCE_NAME ": %s: the calibration statistics lack second moments", what);
    double inv = 1.0 / (double)n_tokens;
    for (int64_t i = 0; i < (int64_t)n * n; i++) G[i] = sum_outer[i] * inv;
    if (!C) return CCE_OK;
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++)
            C[(int64_t)a * n + b] = G[(int64_t)a * n + b] - sum[a] * inv * sum[b] * inv;
    return CCE_OK;
}

cce_status cce_output_cov(const float *wo, int d, int m, const double *Co, double *Cy,
                          const char *what) {
    double *W = malloc((size_t)d * m * sizeof *W); /* [d, m] */
    double *T = malloc((size_t)d * m * sizeof *T); /* [d, m] W C_o */
    if (!W || !T) {
        free(W);
        free(T);
        return cce_fail(CCE_ERR_NOMEM, CCE_NAME ": %s: output covariance", what);
    }
    for (int64_t i = 0; i < (int64_t)d * m; i++) W[i] = wo[i];
    cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, d, m, 1.0, Co, m, W, m, 0.0, T, m);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d, d, m, 1.0, T, m, W, m, 0.0, Cy, d);
    free(W);
    free(T);
    return CCE_OK;
}
