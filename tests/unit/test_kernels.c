/* Kernels against naive double-precision references. */
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "test_support.h"

static gsl_rng *rng;

static void fill(float *x, int64_t n, double scale) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)((gsl_rng_uniform(rng) * 2.0 - 1.0) * scale);
}

static double max_abs_diff(const float *a, const double *b, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static int setup(void **state) {
    (void)state;
    rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 1234);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    gsl_rng_free(rng);
    return 0;
}

static void check_linear(int rows, int in, int out, float beta) {
    float *x = malloc(sizeof(float) * rows * in);  /* [rows, in] */
    float *w = malloc(sizeof(float) * out * in);   /* [out, in] */
    float *y = malloc(sizeof(float) * rows * out); /* [rows, out] */
    double *ref = malloc(sizeof(double) * rows * out);
    fill(x, (int64_t)rows * in, 1.0);
    fill(w, (int64_t)out * in, 1.0);
    fill(y, (int64_t)rows * out, 1.0);
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < out; o++) {
            double s = beta * (double)y[r * out + o];
            for (int i = 0; i < in; i++) s += (double)x[r * in + i] * w[o * in + i];
            ref[r * out + o] = s;
        }
    cce_linear(y, x, w, rows, in, out, beta);
    assert_true(max_abs_diff(y, ref, (int64_t)rows * out) < 1e-4);
    free(x);
    free(w);
    free(y);
    free(ref);
}

static void test_linear(void **state) {
    (void)state;
    check_linear(1, 37, 19, 0.0f);
    check_linear(1, 64, 33, 1.0f);
    check_linear(7, 48, 29, 0.0f);
    check_linear(16, 96, 64, 1.0f);
    /* cce_gemv is the one-row case with the operands in y = W x order. */
    float w[6] = {1, 2, 3, 4, 5, 6}, x[3] = {1, -1, 2}, y[2] = {10, 20};
    cce_gemv(y, w, x, 2, 3, 1.0f);
    assert_float_equal(y[0], 10 + 1 - 2 + 6, 1e-6);
    assert_float_equal(y[1], 20 + 4 - 5 + 12, 1e-6);
}

static void test_rmsnorm(void **state) {
    (void)state;
    enum { ROWS = 9, DIM = 70 };
    float x[ROWS * DIM], w[DIM], out[ROWS * DIM]; /* [ROWS, DIM], [DIM], [ROWS, DIM] */
    double ref[ROWS * DIM];
    fill(x, ROWS * DIM, 3.0);
    fill(w, DIM, 2.0);
    float eps = 1e-5f;
    for (int r = 0; r < ROWS; r++) {
        double ss = 0;
        for (int i = 0; i < DIM; i++) ss += (double)x[r * DIM + i] * x[r * DIM + i];
        double inv = 1.0 / sqrt(ss / DIM + eps);
        for (int i = 0; i < DIM; i++) ref[r * DIM + i] = x[r * DIM + i] * inv * w[i];
    }
    cce_rmsnorm(out, x, w, ROWS, DIM, eps);
    assert_true(max_abs_diff(out, ref, ROWS * DIM) < 1e-5);
    /* In place gives the same result. */
    cce_rmsnorm(x, x, w, ROWS, DIM, eps);
    assert_memory_equal(x, out, sizeof out);
    /* A zero row stays finite thanks to eps. */
    float z[DIM] = {0}, zo[DIM];
    cce_rmsnorm(zo, z, w, 1, DIM, eps);
    for (int i = 0; i < DIM; i++) assert_float_equal(zo[i], 0.0f, 0.0);
}

enum { HD = 16, NPOS = 300 };

static void rope_naive(double *out, const float *x, int n_heads, int pos, double theta) {
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < HD / 2; i++) {
            double f = pow(theta, -2.0 * i / HD), a = pos * f;
            double xa = x[h * HD + i], xb = x[h * HD + i + HD / 2];
            out[h * HD + i] = xa * cos(a) - xb * sin(a);
            out[h * HD + i + HD / 2] = xa * sin(a) + xb * cos(a);
        }
}

static void test_rope(void **state) {
    (void)state;
    static float cos_tab[NPOS * HD / 2], sin_tab[NPOS * HD / 2]; /* [NPOS, HD/2] */
    cce_rope_tables(cos_tab, sin_tab, NPOS, HD, 10000.0);
    enum { ROWS = 5, NH = 3, LD = NH * HD + 4 };
    float x[ROWS * LD], orig[ROWS * LD]; /* [ROWS, LD]: 3 heads then 4 untouched columns */
    fill(x, ROWS * LD, 1.0);
    memcpy(orig, x, sizeof x);
    int pos0 = 17;
    cce_rope_apply(x, ROWS, LD, NH, HD, pos0, cos_tab, sin_tab);
    for (int r = 0; r < ROWS; r++) {
        double ref[NH * HD];
        rope_naive(ref, orig + r * LD, NH, pos0 + r, 10000.0);
        assert_true(max_abs_diff(x + r * LD, ref, NH * HD) < 1e-5);
        /* A rotation: the norm of every head is preserved. */
        for (int h = 0; h < NH; h++) {
            double n0 = 0, n1 = 0;
            for (int i = 0; i < HD; i++) {
                n0 += (double)orig[r * LD + h * HD + i] * orig[r * LD + h * HD + i];
                n1 += (double)x[r * LD + h * HD + i] * x[r * LD + h * HD + i];
            }
            assert_true(fabs(n0 - n1) < 1e-5 * n0);
        }
        /* Columns after the heads are untouched. */
        assert_memory_equal(x + r * LD + NH * HD, orig + r * LD + NH * HD, 4 * sizeof(float));
    }
    /* Position 0 is the identity. */
    float y[HD], y0[HD];
    fill(y, HD, 1.0);
    memcpy(y0, y, sizeof y);
    cce_rope_apply(y, 1, HD, 1, HD, 0, cos_tab, sin_tab);
    assert_memory_equal(y, y0, sizeof y);
    /* Relative positions: q(p) . k(p') depends only on p - p'. */
    float q[HD], k[HD];
    fill(q, HD, 1.0);
    fill(k, HD, 1.0);
    const int pairs[][2] = {{3, 0}, {10, 7}, {120, 117}, {299, 296}};
    double first = 0;
    for (size_t t = 0; t < sizeof pairs / sizeof pairs[0]; t++) {
        float qa[HD], ka[HD];
        memcpy(qa, q, sizeof q);
        memcpy(ka, k, sizeof k);
        cce_rope_apply(qa, 1, HD, 1, HD, pairs[t][0], cos_tab, sin_tab);
        cce_rope_apply(ka, 1, HD, 1, HD, pairs[t][1], cos_tab, sin_tab);
        double d = cce_dot(qa, ka, HD);
        if (t == 0)
            first = d;
        else
            assert_true(fabs(d - first) < 1e-4);
    }
    /* ... and does change with the offset (the check above is not vacuous). */
    float qa[HD], ka[HD];
    memcpy(qa, q, sizeof q);
    memcpy(ka, k, sizeof k);
    cce_rope_apply(qa, 1, HD, 1, HD, 5, cos_tab, sin_tab);
    assert_true(fabs(cce_dot(qa, ka, HD) - first) > 1e-3);
}

static void test_softmax(void **state) {
    (void)state;
    enum { N = 50 };
    float x[N];
    double ref[N];
    fill(x, N, 10.0);
    x[7] = 1000.0f; /* no overflow: the maximum is subtracted */
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < N; i++) mx = fmax(mx, x[i]);
    for (int i = 0; i < N; i++) sum += ref[i] = exp(x[i] - mx);
    for (int i = 0; i < N; i++) ref[i] /= sum;
    cce_softmax(x, N);
    assert_true(max_abs_diff(x, ref, N) < 1e-6);
    double total = 0;
    for (int i = 0; i < N; i++) total += x[i];
    assert_true(fabs(total - 1.0) < 1e-6);
    /* Shift invariance. */
    float a[4] = {1, 2, 3, 4}, b[4] = {101, 102, 103, 104};
    cce_softmax(a, 4);
    cce_softmax(b, 4);
    for (int i = 0; i < 4; i++) assert_float_equal(a[i], b[i], 1e-6);
}

static void test_softmax_causal(void **state) {
    (void)state;
    enum { ROWS = 4, LD = 12, NK = 10, Q0 = 6 };
    float s[ROWS * LD], orig[ROWS * LD]; /* [ROWS, LD] */
    fill(s, ROWS * LD, 5.0);
    memcpy(orig, s, sizeof s);
    float scale = 0.25f;
    cce_softmax_causal(s, ROWS, LD, NK, Q0, scale);
    for (int r = 0; r < ROWS; r++) {
        int n = Q0 + r + 1;
        double mx = -INFINITY, sum = 0, ref[NK];
        for (int j = 0; j < n; j++) mx = fmax(mx, scale * orig[r * LD + j]);
        for (int j = 0; j < n; j++) sum += ref[j] = exp(scale * orig[r * LD + j] - mx);
        for (int j = 0; j < n; j++) ref[j] /= sum;
        assert_true(max_abs_diff(s + r * LD, ref, n) < 1e-6);
        for (int j = n; j < NK; j++) assert_float_equal(s[r * LD + j], 0.0f, 0.0);
        /* Columns past n_keys are left alone. */
        for (int j = NK; j < LD; j++) assert_float_equal(s[r * LD + j], orig[r * LD + j], 0.0);
    }
}

static void test_swiglu(void **state) {
    (void)state;
    enum { N = 100000 }; /* large enough to take the parallel path */
    float *g = malloc(sizeof(float) * N), *u = malloc(sizeof(float) * N);
    double *ref = malloc(sizeof(double) * N);
    fill(g, N, 8.0);
    fill(u, N, 2.0);
    for (int i = 0; i < N; i++) ref[i] = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
    cce_swiglu(g, u, N);
    double m = 0;
    for (int i = 0; i < N; i++) m = fmax(m, fabs(g[i] - ref[i]) / (1.0 + fabs(ref[i])));
    assert_true(m < 1e-6);
    /* Large negative gates give 0, not NaN. */
    float big[2] = {-200.0f, 200.0f}, one[2] = {1.0f, 1.0f};
    cce_swiglu(big, one, 2);
    assert_float_equal(big[0], 0.0f, 1e-30);
    assert_float_equal(big[1], 200.0f, 1e-4);
    free(g);
    free(u);
    free(ref);
}

static void test_dot_axpy_argmax(void **state) {
    (void)state;
    float a[33], b[33];
    fill(a, 33, 1.0);
    fill(b, 33, 1.0);
    double ref = 0;
    for (int i = 0; i < 33; i++) ref += (double)a[i] * b[i];
    assert_true(fabs(cce_dot(a, b, 33) - ref) < 1e-5);
    float y[33];
    memcpy(y, b, sizeof y);
    cce_axpy(y, 0.5f, a, 33);
    for (int i = 0; i < 33; i++) assert_float_equal(y[i], b[i] + 0.5f * a[i], 1e-6);
    float v[6] = {1, 5, NAN, 5, -2, 3};
    assert_int_equal(cce_argmax(v, 6), 1);
    float nan_first[3] = {NAN, -1, -3};
    assert_int_equal(cce_argmax(nan_first, 3), 1);
}

/* Long vectors (searched block by block): the first of tied maxima across blocks, a maximum in a
 * ragged last block, NaNs around it, all -Inf, and lengths past the block count's cap. */
static void test_argmax_long(void **state) {
    (void)state;
    const int lengths[] = {511, 512, 513, 32000, 151936, 300001};
    for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++) {
        int n = lengths[k];
        float *x = malloc(sizeof(float) * (size_t)n);
        assert_non_null(x);
        for (int i = 0; i < n; i++) x[i] = (float)(((int64_t)i * 7919) % 1000) / 1000.0f;
        x[n - 1] = 5.0f; /* the last element, in a ragged block */
        assert_int_equal(cce_argmax(x, n), n - 1);
        x[n / 3] = 5.0f; /* an earlier tie wins */
        x[n / 3 - 1] = NAN;
        assert_int_equal(cce_argmax(x, n), n / 3);
        x[n / 3] = NAN;
        assert_int_equal(cce_argmax(x, n), n - 1);
        for (int i = 0; i < n; i++) x[i] = -INFINITY;
        assert_int_equal(cce_argmax(x, n), 0);
        x[n - 2] = -1e30f;
        assert_int_equal(cce_argmax(x, n), n - 2);
        free(x);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_argmax_long), cmocka_unit_test(test_linear),
        cmocka_unit_test(test_rmsnorm),     cmocka_unit_test(test_rope),
        cmocka_unit_test(test_softmax),     cmocka_unit_test(test_softmax_causal),
        cmocka_unit_test(test_swiglu),      cmocka_unit_test(test_dot_axpy_argmax),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
