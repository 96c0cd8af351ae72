/* CCE stages 1-3 on constructed inputs (docs/CCE.md): with delta_scale 1e-10 a neuron that is an
 * exact linear combination of two others has R^2 = 1 and goes first; greedy removal takes exactly
 * one member of a collinear set (one-shot scores would drop all three); folding leaves the layer
 * output unchanged on the calibration data and never does worse than dropping; the
 * eigen-redundancy of a rank-k covariance is 1 - k/n; the budget meets the global target within
 * one unit, is uniform for one layer or equal scores, and refuses unreachable targets. Heads: the
 * head Gram from G_o and o_proj equals E[z_h . z_k] token by token, a head that is an exact linear
 * combination of others goes first and the o_proj refit keeps the attention output on the
 * calibration data; the interleaved stage-3 removal orders by score per parameter, charges a kv
 * head to the last query head reading it and never exceeds its share. */
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

/* Heads: 4 heads of width 3 over d = 5; head 2's outputs are head 0's plus head 1's and the three
 * share one o_proj block, so z_2 = z_0 + z_1 exactly. */
static void test_heads(void **state) {
    (void)state;
    enum { NH = 4, E = 3, M = NH * E, D = 5 };
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 13);
    double *O = malloc((size_t)T * M * sizeof *O); /* [T, M] head outputs */
    assert_non_null(O);
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < M; i++) O[t * M + i] = gsl_ran_gaussian(r, 1.0);
        for (int i = 0; i < E; i++) O[t * M + 2 * E + i] = O[t * M + i] + O[t * M + E + i];
    }
    float W[D * M], Wn[D * M];
    for (int a = 0; a < D; a++)
        for (int i = 0; i < M; i++) {
            int h = i / E, c = i % E;
            W[a * M + i] = h <= 2 ? (float)(0.3 * (a + 1) - 0.7 * c + 0.1 * a * c)
                                  : (float)gsl_ran_gaussian(r, 1.0);
        }
    double Go[M * M], K[NH * NH];
    gram(O, M, Go);
    assert_cce_ok(cce_head_gram(W, D, NH, E, Go, K, "test"));
    /* K against E[z_h . z_k] computed token by token */
    for (int h = 0; h < NH; h++)
        for (int k = 0; k < NH; k++) {
            double s = 0;
            for (int t = 0; t < T; t++)
                for (int a = 0; a < D; a++) {
                    double zh = 0, zk = 0;
                    for (int c = 0; c < E; c++) {
                        zh += W[a * M + h * E + c] * O[t * M + h * E + c];
                        zk += W[a * M + k * E + c] * O[t * M + k * E + c];
                    }
                    s += zh * zk;
                }
            assert_true(fabs(K[h * NH + k] - s / T) < 1e-9 * (1 + fabs(s / T)));
        }
    double r2[NH];
    assert_cce_ok(cce_loo_r2(K, NH, cce_delta_of(K, NH, 1e-10), r2, "test"));
    for (int h = 0; h < 3; h++) assert_true(fabs(r2[h] - 1.0) < 1e-6);
    assert_true(r2[3] < 0.5);
    /* the greedy removes a member of the collinear set first */
    cce_greedy *g;
    assert_cce_ok(cce_head_greedy_new(K, NH, 1e-10, "test", &g));
    double sc;
    int first = cce_greedy_best(g, &sc);
    assert_true(first >= 0 && first < 3);
    assert_true(sc < 1e-6 * cce_greedy_scores(g)[3]);
    cce_greedy_free(g);
    /* the o_proj refit from G_o leaves the attention output unchanged on the calibration data */
    int hkeep[NH] = {1, 1, 1, 1}, ckeep[M];
    hkeep[first] = 0;
    cce_expand_keep(hkeep, NH, E, ckeep);
    assert_cce_ok(cce_fold_down(W, D, M, Go, cce_delta_of(Go, M, 1e-10), ckeep, 1, Wn, "test"));
    assert_true(fold_error(O, M, W, D, Wn, ckeep) < 1e-6);
    /* dropping head 3 (independent) changes it, refit or not */
    int hk3[NH] = {1, 1, 1, 0};
    cce_expand_keep(hk3, NH, E, ckeep);
    assert_cce_ok(cce_fold_down(W, D, M, Go, cce_delta_of(Go, M, 1e-10), ckeep, 1, Wn, "test"));
    assert_true(fold_error(O, M, W, D, Wn, ckeep) > 1e-2);
    free(O);
    gsl_rng_free(r);
}

/* The interleaved stage-3 removal: lowest score per parameter first, a group's extra parameters
 * charged to its last unit, the share never exceeded, one unit of each kind kept. */
static void test_stage3_select(void **state) {
    (void)state;
    enum { NN = 6, NH = 4 };
    /* independent units (diagonal Gram): scores are fixed, s_j = w_j^2 G_jj */
    double Gn[NN * NN] = {0}, Wn[NN], Gh[NH * NH] = {0};
    const double sn[NN] = {1, 2, 3, 4, 50, 60}, sh[NH] = {10, 400, 500, 600};
    for (int j = 0; j < NN; j++) {
        Gn[j * NN + j] = sn[j];
        Wn[j] = 1.0;
    }
    for (int h = 0; h < NH; h++) Gh[h * NH + h] = sh[h];
    const int32_t kv[NH] = {0, 0, 1, 1};
    for (int pass = 0; pass < 2; pass++) {
        cce_stage3_kind k[2];
        memset(k, 0, sizeof k);
        int on[NN], oh[NH];
        double scn[NN], sch[NH];
        assert_cce_ok(cce_greedy_new(Gn, NN, 0, Wn, 1, "n", &k[0].g));
        assert_cce_ok(cce_head_greedy_new(Gh, NH, 1e-12, "h", &k[1].g));
        k[0] = (cce_stage3_kind){k[0].g, NN, 1, NULL, 0, 0, on, scn, 0};
        k[1] = (cce_stage3_kind){k[1].g, NH, 4, kv, 2, 4, oh, sch, 0};
        int64_t removed;
        /* pass 0: share 6 -> neuron 0 (1 per parameter), neuron 1 (2), head 0 (10 / 4 = 2.5,
         * before neuron 2's 3), then nothing fits; pass 1: share 100 -> all but one unit of each
         * kind, head 1 then being the last of kv head 0 (costs 4 + 4) */
        int64_t share = pass == 0 ? 6 : 100;
        assert_cce_ok(cce_stage3_select(k, 2, share, &removed, "test"));
        assert_true(removed <= share);
        if (pass == 0) {
            assert_int_equal(k[0].removed, 2);
            assert_int_equal(k[1].removed, 1);
            assert_int_equal(on[0], 0);
            assert_int_equal(on[1], 1);
            assert_int_equal(oh[0], 0);
            assert_int_equal(removed, 6);
            assert_true(fabs(sch[0] - 10) < 1e-6 && fabs(scn[1] - 2) < 1e-9);
        } else {
            assert_int_equal(k[0].removed, NN - 1);
            assert_int_equal(k[1].removed, NH - 1);
            assert_int_equal(removed, (NN - 1) * 1 + 4 + 8 + 4);
        }
        cce_greedy_free(k[0].g);
        cce_greedy_free(k[1].g);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_r2_and_greedy),
        cmocka_unit_test(test_fold),
        cmocka_unit_test(test_eigen_redundancy),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_heads),
        cmocka_unit_test(test_stage3_select),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
