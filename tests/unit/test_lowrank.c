/* Low rank on small matrices whose answers are known: a plain SVD of a matrix built with known
 * singular values gives exactly the Eckart-Young truncation error; the whitened SVD's output error
 * tr(dW G dW^T) equals the dropped squared singular values of W S (found here independently, as
 * eigenvalues of W G W^T); the rank formula at several ratios; the energy threshold; whitened
 * beats plain in output error on correlated inputs; the factors; and bad input. */
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../strategies/lowrank.h"
#include "calib.h"
#include "compress.h"
#include "strategy.h"
#include "fixtures.h"
#include "test_support.h"

#define assert_near(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) <= (tol))

#define UP   "layers.0.mlp.up_proj.weight"
#define Q    "layers.0.self_attn.q_proj.weight"
#define K    "layers.0.self_attn.k_proj.weight"
#define DOWN "layers.0.mlp.down_proj.weight"

/* Calibration statistics of tokens x [n, d] at the attention and FFN inputs of layer 0. */
static cce_calib *calib_of(const double *x, int n, int d) {
    static const cce_calib_site sites[] = {CCE_SITE_FFN_IN, CCE_SITE_ATTN_IN};
    return fixture_calib_of(x, n, d, 1, 0, sites, 2);
}

/* Correlated inputs with uneven scales: x = B z + 0.05 e, B [d, d/3]. [n, d] */
static double *correlated_inputs(gsl_rng *rng, int n, int d) {
    return fixture_correlated_inputs(rng, n, d, 3, 0.05, 1);
}

/* A random orthonormal basis q [n, k] (k <= n), from the QR factorisation of a gaussian. */
static void orthonormal(gsl_rng *rng, int n, int k, double *q) {
    double tau[64];
    assert_true(k <= 64);
    for (int i = 0; i < n * k; i++) q[i] = gsl_ran_gaussian(rng, 1.0);
    assert_int_equal(LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, n, k, q, k, tau), 0);
    assert_int_equal(LAPACKE_dorgqr(LAPACK_ROW_MAJOR, n, k, k, q, k, tau), 0);
}

/* tr(dW G dW^T) with G = sum_outer / n_tokens: the mean squared output change, summed over
 * outputs. */
static double output_energy(const float *w0, const float *w1, int rows, int cols,
                            const cce_calib *calib, const char *name) {
    cce_calib_input in;
    assert_cce_ok(cce_calib_input_of(calib, name, &in));
    double e = 0;
    for (int o = 0; o < rows; o++)
        for (int i = 0; i < cols; i++) {
            double di = (double)w1[o * cols + i] - (w0 ? w0[o * cols + i] : 0);
            for (int j = 0; j < cols; j++) {
                double dj = (double)w1[o * cols + j] - (w0 ? w0[o * cols + j] : 0);
                e += di * in.sum_outer[i * cols + j] * dj;
            }
        }
    return e / (double)in.n_tokens;
}

/* Runs `spec` (plan stage, then apply) on a job of layer 0 of tensors names[0..nt) (all
 * [rows, cols], data w[i]) at target; the weights receive the result on success. */
static cce_status apply_job(const char *spec, const char *const *names, float **w, int nt,
                            int64_t rows, int64_t cols, double target, const cce_calib *calib,
                            cce_report *r) {
    return fixture_apply_job(spec, 0, names, w, nt, rows, cols, target, calib, 1, r);
}

static cce_status apply_one(const char *spec, const char *name, float *w, int64_t rows,
                            int64_t cols, double target, const cce_calib *calib, cce_report *r) {
    const char *names[1] = {name};
    return apply_job(spec, names, &w, 1, rows, cols, target, calib, r);
}

/* W = P diag(sigma) Q^T with known sigma: the strategy at a ratio keeps the rank the formula
 * gives, its Frobenius error is exactly the dropped singular values, and the factors reproduce
 * the product. */
static void test_plain_known_spectrum(void **state) {
    (void)state;
    enum { R = 12, C = 20, KF = 12 };
    const double sigma[KF] = {9, 7, 6, 5, 4, 3.5, 3, 2, 1.5, 1, 0.5, 0.25};
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 3);
    double p[R * KF], q[C * KF];
    orthonormal(rng, R, KF, p);
    orthonormal(rng, C, KF, q);
    float w[R * C], out[R * C];
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) {
            double v = 0;
            for (int k = 0; k < KF; k++) v += p[i * KF + k] * sigma[k] * q[j * KF + k];
            w[i * C + j] = (float)v;
        }
    double total = 0;
    for (int k = 0; k < KF; k++) total += sigma[k] * sigma[k];
    const double ratios[] = {0.2, 0.5, 0.7, 0.9};
    for (size_t t = 0; t < sizeof ratios / sizeof ratios[0]; t++) {
        int64_t rank = (int64_t)floor((1 - ratios[t]) * R * C / (R + C) + 1e-9);
        memcpy(out, w, sizeof w);
        cce_report rep;
        cce_report_init(&rep);
        assert_cce_ok(apply_one("lowrank", UP, out, R, C, ratios[t], NULL, &rep));
        assert_int_equal(rep.n, 1);
        const cce_report_row *row = &rep.rows[0];
        assert_int_equal(row->rank, rank);
        assert_int_equal(row->params_before, R * C);
        assert_int_equal(row->params_after, rank * (R + C));
        assert_int_equal(row->bytes_before, 4 * R * C);
        assert_int_equal(row->bytes_after, 4 * rank * (R + C));
        assert_near(row->bits_per_weight, 32.0 * rank * (R + C) / (R * C), 1e-12);
        assert_true(isnan(row->output_error)); /* no calibration */
        double dropped = 0, err = 0;
        for (int k = (int)rank; k < KF; k++) dropped += sigma[k] * sigma[k];
        for (int i = 0; i < R * C; i++) err += ((double)out[i] - w[i]) * ((double)out[i] - w[i]);
        print_message("ratio %.1f: rank %lld, ||dW||^2 %.8g, dropped %.8g\n", ratios[t],
                      (long long)rank, err, dropped);
        assert_near(err, dropped, 1e-5 * total);
        assert_near(row->rel_fro_error, sqrt(dropped / total), 1e-5);
        cce_report_clear(&rep);
    }
    /* The decomposition finds sigma; the factors have the documented shapes and product. */
    cce_lowrank_svd *d;
    assert_cce_ok(cce_lowrank_svd_new(w, R, C, NULL, "w", &d));
    assert_int_equal(d->k, KF);
    for (int k = 0; k < KF; k++) assert_near(d->sigma[k], sigma[k], 1e-5);
    assert_near(cce_lowrank_dropped_energy(d, 4), 16 + 12.25 + 9 + 4 + 2.25 + 1 + 0.25 + 0.0625,
                1e-4);
    cce_tensor *a, *b;
    assert_cce_ok(cce_lowrank_svd_factors(d, 4, "w", &a, &b));
    assert_int_equal(a->shape[0], R);
    assert_int_equal(a->shape[1], 4);
    assert_int_equal(b->shape[0], 4);
    assert_int_equal(b->shape[1], C);
    assert_cce_ok(cce_lowrank_svd_product(d, 4, "w", out));
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) {
            double v = 0;
            for (int k = 0; k < 4; k++) v += (double)a->data[i * 4 + k] * b->data[k * C + j];
            assert_near(v, out[i * C + j], 1e-5);
        }
    /* Rows of B are orthonormal (plain: B = V_r^T). */
    for (int k = 0; k < 4; k++) {
        double n2 = 0;
        for (int j = 0; j < C; j++) n2 += (double)b->data[k * C + j] * b->data[k * C + j];
        assert_near(n2, 1, 1e-5);
    }
    cce_tensor_free(a);
    cce_tensor_free(b);
    /* Rank 0 is the zero matrix; rank beyond k is refused. */
    assert_cce_ok(cce_lowrank_svd_product(d, 0, "w", out));
    for (int i = 0; i < R * C; i++) assert_true(out[i] == 0.0f);
    assert_int_equal(cce_lowrank_svd_product(d, KF + 1, "w", out), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "rank 13"));
    cce_lowrank_svd_free(d);
    gsl_rng_free(rng);
}

/* Eigenvalues of W G W^T [rows, rows], ascending: the squared singular values of W S for any S
 * with S S^T = G. */
static void whitened_spectrum(const float *w, int rows, int cols, const cce_calib *calib,
                              const char *name, double *eig) {
    cce_calib_input in;
    assert_cce_ok(cce_calib_input_of(calib, name, &in));
    double *m = calloc((size_t)rows * rows, sizeof *m); /* [rows, rows] */
    for (int a = 0; a < rows; a++)
        for (int b = 0; b < rows; b++) {
            double v = 0;
            for (int i = 0; i < cols; i++)
                for (int j = 0; j < cols; j++)
                    v += (double)w[a * cols + i] * in.sum_outer[i * cols + j] * w[b * cols + j];
            m[a * rows + b] = v / (double)in.n_tokens;
        }
    assert_int_equal(LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'N', 'U', rows, m, rows, eig), 0);
    free(m);
}

/* The whitened output error tr(dW G dW^T) is the sum of the dropped squared singular values of
 * W S, to 1e-6 relative, at several ranks and for a wide and a tall matrix. */
static void test_whitened_exact_error(void **state) {
    (void)state;
    enum { C = 24, N = 300 };
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 5);
    double *x = correlated_inputs(rng, N, C);
    for (int i = 0; i < N * C; i++) x[i] += 0.3 * gsl_ran_gaussian(rng, 1.0); /* full rank */
    cce_calib *calib = calib_of(x, N, C);
    const int heights[] = {16, 40};
    const double ratios[] = {0.3, 0.6, 0.85};
    for (int h = 0; h < 2; h++) {
        int R = heights[h], k = R < C ? R : C;
        float *w = fixture_random_weights(rng, R * C, 0.2);
        double eig[40];
        whitened_spectrum(w, R, C, calib, UP, eig);
        for (int t = 0; t < 3; t++) {
            float *out = malloc((size_t)(R * C) * sizeof *out);
            memcpy(out, w, (size_t)(R * C) * sizeof *out);
            cce_report rep;
            cce_report_init(&rep);
            assert_cce_ok(
                apply_one("lowrank:method=whitened", UP, out, R, C, ratios[t], calib, &rep));
            int64_t rank = rep.rows[0].rank;
            assert_int_equal(rank, cce_lowrank_rank_for_ratio(ratios[t], R, C));
            double dropped = 0, total = 0; /* eig ascending: the R - k zeros first when R > C */
            for (int i = 0; i < R; i++) total += eig[i] > 0 ? eig[i] : 0;
            for (int i = R - k; i < R - (int)rank; i++) dropped += eig[i];
            double got = output_energy(w, out, R, C, calib, UP);
            print_message("[%d, %d] rank %lld: tr(dW G dW^T) %.10g, dropped %.10g\n", R, C,
                          (long long)rank, got, dropped);
            assert_near(got, dropped, 1e-6 * dropped);
            /* The report's output error is sqrt(got / tr(W G W^T)). */
            double base = output_energy(NULL, w, R, C, calib, UP);
            assert_near(base, total, 1e-9 * total);
            assert_near(rep.rows[0].output_error, sqrt(got / base), 1e-6);
            assert_string_equal(rep.rows[0].note, "");
            cce_report_clear(&rep);
            free(out);
        }
        free(w);
    }
    cce_calib_free(calib);
    free(x);
    gsl_rng_free(rng);
}

/* The rank formula: r = floor((1 - ratio) out in / (out + in)), robust to rounding, never more
 * than min(out, in), and its factors never hold more than (1 - ratio) of the parameters. */
static void test_rank_formula(void **state) {
    (void)state;
    assert_int_equal(cce_lowrank_rank_for_ratio(0.5, 768, 768), 192);
    assert_int_equal(cce_lowrank_rank_for_ratio(0.3, 2048, 768), 390); /* 390.98 */
    assert_int_equal(cce_lowrank_rank_for_ratio(0.3, 768, 2048), 390);
    assert_int_equal(cce_lowrank_rank_for_ratio(0.0, 10, 10), 5);
    assert_int_equal(cce_lowrank_rank_for_ratio(0.7, 100, 100), 15); /* 0.3 * 50 */
    assert_int_equal(cce_lowrank_rank_for_ratio(0.9, 100, 100), 5);
    assert_int_equal(cce_lowrank_rank_for_ratio(0.99, 64, 64), 0);
    assert_int_equal(cce_lowrank_rank_for_ratio(0.0, 1, 1000), 0); /* 0.999 */
    assert_int_equal(cce_lowrank_rank_for_ratio(0.0, 2, 2), 1);
    assert_int_equal(cce_lowrank_rank_for_ratio(-1, 10, 10), 5);  /* clamped */
    assert_int_equal(cce_lowrank_rank_for_ratio(1.5, 10, 10), 0); /* clamped */
    assert_int_equal(cce_lowrank_rank_for_ratio(0.5, 0, 10), 0);
    for (int rows = 1; rows <= 40; rows += 3)
        for (int cols = 1; cols <= 50; cols += 7)
            for (int pct = 0; pct < 100; pct += 9) {
                double ratio = pct / 100.0;
                int64_t r = cce_lowrank_rank_for_ratio(ratio, rows, cols);
                assert_true(r <= (rows < cols ? rows : cols));
                assert_true((double)(r * (rows + cols)) <= (1 - ratio) * rows * cols * (1 + 1e-9));
                assert_true((double)((r + 1) * (rows + cols)) > (1 - ratio) * rows * cols);
            }
}

/* The energy threshold keeps the smallest rank whose squared singular values reach the fraction:
 * sigma^2 = 16, 9, 4, 1 (total 30). */
static void test_energy(void **state) {
    (void)state;
    enum { R = 4, C = 6 };
    const double sigma[R] = {4, 3, 2, 1};
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 9);
    double p[R * R], q[C * R];
    orthonormal(rng, R, R, p);
    orthonormal(rng, C, R, q);
    float w[R * C], out[R * C];
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) {
            double v = 0;
            for (int k = 0; k < R; k++) v += p[i * R + k] * sigma[k] * q[j * R + k];
            w[i * C + j] = (float)v;
        }
    const char *specs[] = {"lowrank:energy=0.5",  "lowrank:energy=0.54", "lowrank:energy=0.8",
                           "lowrank:energy=0.95", "lowrank:energy=0.97", "lowrank:energy=1"};
    const int64_t ranks[] = {1, 2, 2, 3, 4, 4};
    for (int t = 0; t < 6; t++) {
        memcpy(out, w, sizeof w);
        cce_report rep;
        cce_report_init(&rep);
        assert_cce_ok(apply_one(specs[t], UP, out, R, C, 0.5, NULL, &rep));
        assert_int_equal(rep.rows[0].rank, ranks[t]);
        assert_int_equal(rep.rows[0].params_after, ranks[t] * (R + C));
        cce_report_clear(&rep);
    }
    /* The rank does not depend on the plan's target, but a target of 0 leaves the tensor. */
    memcpy(out, w, sizeof w);
    cce_report rep;
    cce_report_init(&rep);
    assert_cce_ok(apply_one("lowrank:energy=0.8", UP, out, R, C, 0, NULL, &rep));
    assert_int_equal(rep.n, 0);
    assert_memory_equal(out, w, sizeof w);
    assert_cce_ok(apply_one("lowrank", UP, out, R, C, 0, NULL, &rep));
    assert_int_equal(rep.n, 0);
    assert_memory_equal(out, w, sizeof w);
    /* Directly. */
    cce_lowrank_svd *d;
    assert_cce_ok(cce_lowrank_svd_new(w, R, C, NULL, "w", &d));
    assert_int_equal(cce_lowrank_rank_for_energy(d, 25.0 / 30.0 - 1e-4), 2);
    assert_int_equal(cce_lowrank_rank_for_energy(d, 25.0 / 30.0 + 1e-4), 3);
    assert_int_equal(cce_lowrank_rank_for_energy(d, 1.0), 4);
    cce_lowrank_svd_free(d);
    float zero[R * C] = {0};
    assert_cce_ok(cce_lowrank_svd_new(zero, R, C, NULL, "zero", &d));
    assert_int_equal(cce_lowrank_rank_for_energy(d, 0.5), 0);
    cce_lowrank_svd_free(d);
    cce_report_clear(&rep);
    gsl_rng_free(rng);
}

/* On correlated inputs the whitened SVD's output error is below the plain SVD's at the same rank
 * (and the plain SVD's Frobenius error below the whitened one's); q and k of one job share the
 * whitening and each equals a run on its own. */
static void test_whitened_beats_plain(void **state) {
    (void)state;
    enum { R = 32, C = 48, N = 400 };
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 11);
    double *x = correlated_inputs(rng, N, C);
    cce_calib *calib = calib_of(x, N, C);
    float *w = fixture_random_weights(rng, R * C, 0.1),
          *w2 = fixture_random_weights(rng, R * C, 0.1);
    float *pl = malloc(R * C * sizeof *pl), *wh = malloc(R * C * sizeof *wh);
    memcpy(pl, w, R * C * sizeof *pl);
    memcpy(wh, w, R * C * sizeof *wh);
    cce_report rep;
    cce_report_init(&rep);
    assert_cce_ok(apply_one("lowrank:method=svd", Q, pl, R, C, 0.6, calib, &rep));
    assert_cce_ok(apply_one("lowrank:method=whitened", Q, wh, R, C, 0.6, calib, &rep));
    assert_int_equal(rep.rows[0].rank, rep.rows[1].rank);
    double ep = output_energy(w, pl, R, C, calib, Q), ew = output_energy(w, wh, R, C, calib, Q);
    print_message("rank %lld: output error plain %.4g, whitened %.4g; Frobenius %.4g / %.4g\n",
                  (long long)rep.rows[0].rank, rep.rows[0].output_error, rep.rows[1].output_error,
                  rep.rows[0].rel_fro_error, rep.rows[1].rel_fro_error);
    assert_true(ew < 0.5 * ep);
    assert_true(rep.rows[1].output_error < rep.rows[0].output_error);
    assert_true(rep.rows[0].rel_fro_error < rep.rows[1].rel_fro_error);
    /* One job with q and k: same results as one at a time. */
    float *q = malloc(R * C * sizeof *q), *k = malloc(R * C * sizeof *k);
    float *k1 = malloc(R * C * sizeof *k1);
    memcpy(q, w, R * C * sizeof *q);
    memcpy(k, w2, R * C * sizeof *k);
    memcpy(k1, w2, R * C * sizeof *k1);
    const char *names[2] = {Q, K};
    float *ws[2] = {q, k};
    assert_cce_ok(apply_job("lowrank:method=whitened", names, ws, 2, R, C, 0.6, calib, &rep));
    assert_cce_ok(apply_one("lowrank:method=whitened", K, k1, R, C, 0.6, calib, &rep));
    assert_memory_equal(q, wh, R * C * sizeof *q);
    assert_memory_equal(k, k1, R * C * sizeof *k);
    /* The one-call API gives factors whose product is the strategy's result. */
    cce_tensor *t, *a, *b;
    assert_cce_ok(cce_tensor_new_2d(R, C, &t));
    memcpy(t->data, w, R * C * sizeof *w);
    cce_calib_input in;
    assert_cce_ok(cce_calib_input_of(calib, Q, &in));
    int64_t rank = rep.rows[1].rank;
    assert_cce_ok(cce_lowrank_factor(t, &in, 0.01, rank, "q", &a, &b));
    assert_int_equal(a->shape[1], rank);
    assert_int_equal(b->shape[0], rank);
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) {
            double v = 0;
            for (int r = 0; r < rank; r++) v += (double)a->data[i * rank + r] * b->data[r * C + j];
            assert_near(v, wh[i * C + j], 1e-5 * (1 + fabs(v)));
        }
    cce_tensor_free(a);
    cce_tensor_free(b);
    cce_tensor_free(t);
    cce_report_clear(&rep);
    cce_calib_free(calib);
    free(x);
    free(w);
    free(w2);
    free(pl);
    free(wh);
    free(q);
    free(k);
    free(k1);
    gsl_rng_free(rng);
}

/* A singular second moment (a dead input): damped once and noted; with damp = 0 a clear error. */
static void test_damping(void **state) {
    (void)state;
    enum { R = 8, C = 10, N = 60 };
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 2);
    double x[N * C];
    for (int i = 0; i < N * C; i++) x[i] = (i % C == 3) ? 0 : gsl_ran_gaussian(rng, 1.0);
    cce_calib *calib = calib_of(x, N, C);
    float *w = fixture_random_weights(rng, R * C, 0.1), out[R * C];
    memcpy(out, w, sizeof out);
    cce_report rep;
    cce_report_init(&rep);
    assert_cce_ok(apply_one("lowrank:method=whitened", UP, out, R, C, 0.5, calib, &rep));
    assert_string_equal(rep.rows[0].note, "second moment damped by 0.01 of its mean diagonal");
    for (int i = 0; i < R * C; i++) assert_true(isfinite(out[i]));
    memcpy(out, w, sizeof out);
    assert_int_equal(apply_one("lowrank:method=whitened,damp=0", UP, out, R, C, 0.5, calib, &rep),
                     CCE_ERR_NUMERIC);
    assert_non_null(strstr(cce_error_detail(), UP));
    assert_non_null(strstr(cce_error_detail(), "not positive definite"));
    assert_memory_equal(out, w, sizeof out);
    double *s, used;
    cce_calib_input in;
    assert_cce_ok(cce_calib_input_of(calib, UP, &in));
    assert_int_equal(cce_lowrank_whitening_new(in.sum_outer, C, 0, 0.01, "g", &s, &used),
                     CCE_ERR_ARG);
    cce_report_clear(&rep);
    cce_calib_free(calib);
    free(w);
    gsl_rng_free(rng);
}

/* Bad parameters and bad input: each a clear error naming the parameter or tensor. */
static void test_bad_input(void **state) {
    (void)state;
    enum { R = 6, C = 8 };
    const cce_strategy *s;
    cce_params *p;
    struct {
        const char *spec;
        cce_status status;
        const char *needle;
    } bad[] = {
        {"lowrank:ratio=1.5", CCE_ERR_RANGE, "ratio"},
        {"lowrank:ratio=-0.1", CCE_ERR_RANGE, "ratio"},
        {"lowrank:ratio=1", CCE_ERR_RANGE, "ratio"},
        {"lowrank:method=qr", CCE_ERR_RANGE, "method"},
        {"lowrank:energy=0", CCE_ERR_RANGE, "energy"},
        {"lowrank:energy=1.2", CCE_ERR_RANGE, "energy"},
        {"lowrank:damp=-1", CCE_ERR_RANGE, "damp"},
        {"lowrank:ratio=abc", CCE_ERR_ARG, "ratio"},
        {"lowrank:rank=3", CCE_ERR_ARG, "rank"},
    };
    assert_cce_ok(cce_strategy_find("lowrank", &s));
    assert_cce_ok(cce_strategy_validate(s, "built-in"));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cce_status st = cce_strategy_parse_spec(bad[i].spec, &s, &p);
        if (st != bad[i].status || !strstr(cce_error_detail(), bad[i].needle))
            fail_msg("%s: status %d (%s), expected %d", bad[i].spec, st, cce_error_detail(),
                     bad[i].status);
    }
    float w[R * C], out[R * C];
    for (int i = 0; i < R * C; i++) w[i] = (float)((i * 7) % 11) - 5.0f;
    cce_report rep;
    cce_report_init(&rep);
    /* ratio and energy together. */
    memcpy(out, w, sizeof out);
    assert_int_equal(apply_one("lowrank:ratio=0.5,energy=0.9", UP, out, R, C, 0.5, NULL, &rep),
                     CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "ratio or energy"));
    /* Whitened without calibration: refused at the plan stage and at apply. */
    assert_int_equal(apply_one("lowrank:method=whitened", UP, out, R, C, 0.5, NULL, &rep),
                     CCE_ERR_STATE);
    assert_non_null(strstr(cce_error_detail(), "calibration"));
    /* Statistics without second moments, or of another width. */
    double sum[C] = {0}, sq[C], outer[C * C] = {0};
    for (int i = 0; i < C; i++) sq[i] = outer[i * C + i] = 4;
    cce_calib *calib;
    assert_cce_ok(cce_calib_new(1, &calib));
    assert_cce_ok(cce_calib_set_input(calib, 0, CCE_SITE_FFN_IN, C, 4, sum, sq, NULL));
    assert_cce_ok(cce_calib_set_input(calib, 0, CCE_SITE_ATTN_IN, C - 1, 4, sum, sq, outer));
    assert_int_equal(apply_one("lowrank:method=whitened", UP, out, R, C, 0.5, calib, &rep),
                     CCE_ERR_STATE);
    assert_non_null(strstr(cce_error_detail(), "second moments"));
    assert_int_equal(apply_one("lowrank:method=whitened", Q, out, R, C, 0.5, calib, &rep),
                     CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), Q));
    assert_int_equal(apply_one("lowrank:method=whitened", DOWN, out, R, C, 0.5, calib, &rep),
                     CCE_ERR_NOT_FOUND);
    assert_non_null(strstr(cce_error_detail(), "lowrank"));
    /* The plain SVD ignores statistics it cannot use (no output error then). */
    assert_cce_ok(apply_one("lowrank", Q, out, R, C, 0.5, calib, &rep));
    assert_true(isnan(rep.rows[rep.n - 1].output_error));
    memcpy(out, w, sizeof out);
    /* A non-finite second moment. */
    outer[5] = NAN;
    assert_cce_ok(cce_calib_set_input(calib, 0, CCE_SITE_FFN_IN, C, 4, sum, sq, outer));
    assert_int_equal(apply_one("lowrank:method=whitened", UP, out, R, C, 0.5, calib, &rep),
                     CCE_ERR_NUMERIC);
    assert_non_null(strstr(cce_error_detail(), UP));
    assert_memory_equal(out, w, sizeof out);
    /* A target outside [0, 1) from a plan. */
    assert_int_equal(apply_one("lowrank", UP, out, R, C, 1.0, NULL, &rep), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), UP));
    /* NaN weights. */
    out[7] = NAN;
    assert_int_equal(apply_one("lowrank", UP, out, R, C, 0.5, NULL, &rep), CCE_ERR_NUMERIC);
    assert_int_equal(rep.n, 1); /* only the plain run above */
    float nanw[4] = {1, NAN, 0, 1};
    cce_lowrank_svd *d;
    assert_int_equal(cce_lowrank_svd_new(nanw, 2, 2, NULL, "w", &d), CCE_ERR_NUMERIC);
    assert_int_equal(cce_lowrank_svd_new(nanw, 0, 2, NULL, "w", &d), CCE_ERR_ARG);
    /* A 1-D tensor planned for low rank. */
    cce_tensor *t, *a, *b;
    assert_cce_ok(cce_tensor_new_1d(8, &t));
    assert_int_equal(cce_lowrank_factor(t, NULL, 0.01, 1, "norm", &a, &b), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "norm"));
    cce_tensor_free(t);
    cce_report_clear(&rep);
    cce_calib_free(calib);
}

/* Only the whitened method needs calibration, and the framework learns it from needs_of. */
static void test_needs_depend_on_method(void **state) {
    (void)state;
    const cce_strategy *s;
    cce_params *p;
    cce_strategy_instance *inst;
    const char *specs[] = {"lowrank:method=svd", "lowrank:method=whitened"};
    for (int k = 0; k < 2; k++) {
        assert_cce_ok(cce_strategy_parse_spec(specs[k], &s, &p));
        assert_cce_ok(cce_strategy_instance_new(s, p, &inst));
        unsigned needs = cce_strategy_instance_needs(inst);
        assert_int_equal((needs & CCE_NEEDS_CALIBRATION) != 0, k == 1);
        assert_int_equal(cce_compress_needs_calibration(inst) != 0, k == 1);
        cce_strategy_instance_free(inst);
        cce_params_free(p);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_known_spectrum),
        cmocka_unit_test(test_needs_depend_on_method),
        cmocka_unit_test(test_whitened_exact_error),
        cmocka_unit_test(test_rank_formula),
        cmocka_unit_test(test_energy),
        cmocka_unit_test(test_whitened_beats_plain),
        cmocka_unit_test(test_damping),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
