/* CCE stages 1-3 on constructed inputs (docs/CCE.md): with delta_scale 1e-10 a neuron that is an
 * exact linear combination of two others has R^2 = 1 and goes first; greedy removal takes exactly
 * one member of a collinear set (one-shot scores would drop all three); folding leaves the layer
 * output unchanged on the calibration data and never does worse than dropping; the
 * eigen-redundancy of a rank-k covariance is 1 - k/n; the budget meets the global target within
 * one unit, is uniform for one layer or equal scores, and refuses unreachable targets. */
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../strategies/cce_internal.h"
#include "test_support.h"

#define T 400 /* calibration tokens */

/* Activations A [T, n] (gaussian) with column 2 = column 0 + column 1 (exact in double). */
static double *collinear_acts(int n, gsl_rng *r) {
    double *A = malloc((size_t)T * n * sizeof *A); /* [T, n] */
    assert_non_null(A);
    for (int t = 0; t < T; t++) {
        for (int j = 0; j < n; j++) A[t * n + j] = gsl_ran_gaussian(r, 1.0);
        A[t * n + 2] = A[t * n + 0] + A[t * n + 1];
    }
    return A;
}

/* G [n, n] = A^T A / T */
static void gram(const double *A, int n, double *G) {
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++) {
            double s = 0;
            for (int t = 0; t < T; t++) s += A[t * n + a] * A[t * n + b];
            G[a * n + b] = s / T;
        }
}

static void test_r2_and_greedy(void **state) {
    (void)state;
    enum { N = 8, D = 4 };
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 5);
    double *A = collinear_acts(N, r), G[N * N], W[D * N], r2[N], s0[N];
    gram(A, N, G);
    /* the collinear set reaches the output strongly, the others weakly */
    for (int a = 0; a < D; a++)
        for (int j = 0; j < N; j++) W[a * N + j] = gsl_ran_gaussian(r, j < 3 ? 10.0 : 1.0);
    double delta = cce_delta_of(G, N, 1e-10);
    assert_cce_ok(cce_loo_r2(G, N, delta, r2, "test"));
    for (int j = 0; j < 3; j++) assert_true(fabs(r2[j] - 1.0) < 1e-6);
    for (int j = 3; j < N; j++) assert_true(r2[j] < 0.5);

    int order[N];
    assert_cce_ok(cce_greedy_remove(G, N, delta, W, D, 1, order, s0, "test"));
    assert_true(order[0] < 3); /* a member of the collinear set goes first */
    /* one-shot scores: all three members look free, below every other neuron */
    for (int j = 0; j < 3; j++)
        for (int i = 3; i < N; i++) assert_true(s0[j] < 1e-3 * s0[i]);
    for (int k = 1; k <= 5; k++) {
        assert_cce_ok(cce_greedy_remove(G, N, delta, W, D, k, order, NULL, "test"));
        int members = 0;
        for (int i = 0; i < k; i++) members += order[i] < 3;
        assert_int_equal(members, 1);
    }
    assert_int_equal(cce_greedy_remove(G, N, delta, W, D, N, order, NULL, "test"), CCE_ERR_RANGE);
    free(A);
    gsl_rng_free(r);
}

/* max_t ||W a_t - W' a_t,K|| / max_t ||W a_t|| over the tokens */
static double fold_error(const double *A, int n, const float *W, int d, const float *Wn,
                         const int *keep) {
    int m = 0;
    for (int j = 0; j < n; j++) m += keep[j];
    double worst = 0, scale = 0;
    for (int t = 0; t < T; t++) {
        double e2 = 0, y2 = 0;
        for (int a = 0; a < d; a++) {
            double y = 0, yn = 0;
            for (int j = 0, c = 0; j < n; j++) {
                y += (double)W[a * n + j] * A[t * n + j];
                if (keep[j]) yn += (double)Wn[a * m + c++] * A[t * n + j];
            }
            e2 += (y - yn) * (y - yn);
            y2 += y * y;
        }
        if (sqrt(e2) > worst) worst = sqrt(e2);
        if (sqrt(y2) > scale) scale = sqrt(y2);
    }
    return worst / scale;
}

static void test_fold(void **state) {
    (void)state;
    enum { N = 7, D = 5 };
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 9);
    double *A = collinear_acts(N, r), G[N * N];
    for (int t = 0; t < T; t++) A[t * N + 6] = 0.5 * A[t * N + 3] - 2.0 * A[t * N + 4];
    gram(A, N, G);
    float W[D * N], Wn[D * N];
    for (int i = 0; i < D * N; i++) W[i] = (float)gsl_ran_gaussian(r, 1.0);
    /* drop 2 and 6, both exact combinations of kept neurons: the output is unchanged */
    int keep[N] = {1, 1, 0, 1, 1, 1, 0};
    double delta = cce_delta_of(G, N, 1e-10);
    assert_cce_ok(cce_fold_down(W, D, N, G, delta, keep, 1, Wn, "test"));
    assert_true(fold_error(A, N, W, D, Wn, keep) < 1e-6);
    /* without folding the output changes */
    float Wd[D * N];
    assert_cce_ok(cce_fold_down(W, D, N, G, delta, keep, 0, Wd, "test"));
    assert_true(fold_error(A, N, W, D, Wd, keep) > 1e-2);
    /* D empty changes nothing */
    int all[N] = {1, 1, 1, 1, 1, 1, 1};
    assert_cce_ok(cce_fold_down(W, D, N, G, delta, all, 1, Wn, "test"));
    assert_memory_equal(W, Wn, sizeof W);

    /* independent activations: folding never raises the calibration output error */
    double *B = malloc((size_t)T * N * sizeof *B); /* [T, N] */
    for (int t = 0; t < T; t++)
        for (int j = 0; j < N; j++)
            B[t * N + j] = gsl_ran_gaussian(r, 1.0) + 0.7 * (j ? B[t * N + j - 1] : 0);
    gram(B, N, G);
    int keep2[N] = {1, 0, 1, 1, 0, 1, 1};
    double dl = cce_delta_of(G, N, 1e-2);
    assert_cce_ok(cce_fold_down(W, D, N, G, dl, keep2, 1, Wn, "test"));
    assert_cce_ok(cce_fold_down(W, D, N, G, dl, keep2, 0, Wd, "test"));
    double ef = 0, ed = 0;
    for (int t = 0; t < T; t++)
        for (int a = 0; a < D; a++) {
            double y = 0, yf = 0, yd = 0;
            for (int j = 0, c = 0; j < N; j++) {
                y += W[a * N + j] * B[t * N + j];
                if (keep2[j]) {
                    yf += Wn[a * 5 + c] * B[t * N + j];
                    yd += Wd[a * 5 + c++] * B[t * N + j];
                }
            }
            ef += (y - yf) * (y - yf);
            ed += (y - yd) * (y - yd);
        }
    assert_true(ef < ed);
    free(B);
    free(A);
    gsl_rng_free(r);
}

static void test_eigen_redundancy(void **state) {
    (void)state;
    enum { N = 20, K = 3 };
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 11);
    double B[N * K], C[N * N], curve[N], R;
    for (int i = 0; i < N * K; i++) B[i] = gsl_ran_gaussian(r, 1.0);
    for (int a = 0; a < N; a++)
        for (int b = 0; b < N; b++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += B[a * K + k] * B[b * K + k];
            C[a * N + b] = s;
        }
    int rank;
    assert_cce_ok(cce_eigen_redundancy(C, N, 0.01, &R, &rank, curve, "test"));
    assert_true(curve[K - 2] < 0.99); /* the k-th eigenvalue exceeds eps * trace */
    assert_int_equal(rank, K);
    assert_true(fabs(R - (1.0 - (double)K / N)) < 1e-12);
    assert_true(fabs(curve[N - 1] - 1.0) < 1e-9);
    /* full rank identity: nothing redundant at eps 0.01; zero matrix: r = 0 */
    double I[N * N] = {0};
    for (int i = 0; i < N; i++) I[i * N + i] = 1;
    assert_cce_ok(cce_eigen_redundancy(I, N, 0.01, &R, &rank, NULL, "test"));
    assert_int_equal(rank, N);
    memset(I, 0, sizeof I);
    assert_cce_ok(cce_eigen_redundancy(I, N, 0.05, &R, &rank, NULL, "test"));
    assert_int_equal(rank, 0);
    gsl_rng_free(r);
}

static void test_budget(void **state) {
    (void)state;
    enum { L = 6 };
    cce_budget_layer bl[L];
    const double R[L] = {0.1, 0.3, 0.5, 0.55, 0.35, 0.05}, BI[L] = {0.9, 0.3, 0.1, 0.12, 0.2, 0.8};
    for (int l = 0; l < L; l++) bl[l] = (cce_budget_layer){R[l], BI[l], 10000 + 37 * l, 96, 60};
    cce_budget_out out[L];
    double ach, total = 0;
    for (int l = 0; l < L; l++) total += (double)bl[l].params;
    const double rhos[3] = {0.1, 0.3, 0.45};
    for (int i = 0; i < 3; i++) {
        assert_cce_ok(cce_budget_solve(bl, L, rhos[i], 0.5, 0.1, 0, out, &ach));
        double removed = 0, planned = 0;
        for (int l = 0; l < L; l++) {
            removed += (double)(out[l].units * bl[l].unit);
            planned += out[l].planned * (double)bl[l].params;
            double x = out[l].planned * (double)bl[l].params / (double)bl[l].unit;
            assert_true(fabs((double)out[l].units - x) < 1.0); /* one unit per layer */
        }
        assert_true(fabs(planned - rhos[i] * total) < 1e-6 * total); /* bisection exact */
        assert_true(fabs(removed - rhos[i] * total) <= 96.0);        /* whole units */
        assert_true(fabs(ach - removed / total) < 1e-12);
        /* the middle layers (redundant, low influence) get more than the outer ones */
        assert_true(out[2].planned > out[0].planned && out[3].planned > out[5].planned);
    }
    /* uniform allocation */
    assert_cce_ok(cce_budget_solve(bl, L, 0.3, 0.5, 0.1, 1, out, &ach));
    for (int l = 0; l < L; l++) assert_true(out[l].planned == 0.3);
    /* one layer, and equal scores: z = 0, rho_l = rho */
    assert_cce_ok(cce_budget_solve(bl, 1, 0.3, 0.5, 0.1, 0, out, &ach));
    assert_true(out[0].z == 0 && fabs(out[0].planned - 0.3) < 1e-9);
    cce_budget_layer same[3] = {bl[0], bl[0], bl[0]};
    assert_cce_ok(cce_budget_solve(same, 3, 0.2, 0.5, 0.1, 0, out, &ach));
    for (int l = 0; l < 3; l++) assert_true(out[l].z == 0 && fabs(out[l].planned - 0.2) < 1e-9);
    /* targets above 0.9, or above what the units allow */
    assert_int_equal(cce_budget_solve(bl, L, 0.95, 0.5, 0.1, 0, out, &ach), CCE_ERR_RANGE);
    assert_int_equal(cce_budget_solve(bl, L, 0.7, 0.5, 0.1, 0, out, &ach), CCE_ERR_RANGE);
    assert_int_equal(cce_budget_solve(bl, L, 0.7, 0.5, 0.1, 1, out, &ach), CCE_ERR_RANGE);
    bl[0].BI = NAN;
    assert_int_equal(cce_budget_solve(bl, L, 0.3, 0.5, 0.1, 0, out, &ach), CCE_ERR_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_r2_and_greedy),
        cmocka_unit_test(test_fold),
        cmocka_unit_test(test_eigen_redundancy),
        cmocka_unit_test(test_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
