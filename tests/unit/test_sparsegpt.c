/* SparseGPT on small matrices: exact counts (unstructured, block by block), N:M patterns verified
 * group by group with a ragged last group, lower output error than magnitude pruning at the same
 * sparsity on correlated inputs, joint quantization on the shared grid, earlier zeros kept, report
 * rows, and bad parameters. */
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "quant.h"
#include "strategy.h"
#include "fixtures.h"
#include "test_support.h"

#define assert_near(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) <= (tol))

#define DOWN "layers.1.mlp.down_proj.weight"

/* Calibration statistics of tokens x [n, d] at the down_proj input of layer 1. */
static cce_calib *calib_of(const double *x, int n, int d) {
    static const cce_calib_site sites[] = {CCE_SITE_DOWN_IN};
    return fixture_calib_of(x, n, d, 2, 1, sites, 1);
}

/* Correlated inputs x = B z + 0.1 e, B [d, d/4]. [n, d] */
static double *correlated_inputs(gsl_rng *rng, int n, int d) {
    return fixture_correlated_inputs(rng, n, d, 4, 0.1, 0);
}

/* Runs `spec` on DOWN [rows, cols] of layer 1 at target; copies the result back into w. */
static cce_status apply_one(const char *spec, float *w, int64_t rows, int64_t cols, double target,
                            const cce_calib *calib, cce_report *r) {
    const char *names[1] = {DOWN};
    return fixture_apply_job(spec, 1, names, &w, 1, rows, cols, target, calib, 0, r);
}

/* 50%: exactly half the weights go, and the outputs move less than under magnitude pruning. */
static void test_beats_magnitude(void **state) {
    (void)state;
    enum { R = 32, N = 512 };
    const int widths[] = {64, 300};
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 13);
    for (int k = 0; k < 2; k++) {
        int C = widths[k];
        double *x = correlated_inputs(rng, N, C);
        cce_calib *calib = calib_of(x, N, C);
        float *w = fixture_random_weights(rng, R * C, 0.1);
        float *sg = malloc((size_t)(R * C) * sizeof *sg),
              *mg = malloc((size_t)(R * C) * sizeof *mg);
        float *zero = calloc((size_t)(R * C), sizeof *zero);
        memcpy(sg, w, (size_t)(R * C) * sizeof *sg);
        memcpy(mg, w, (size_t)(R * C) * sizeof *mg);
        cce_report r;
        cce_report_init(&r);
        assert_cce_ok(apply_one("sparsegpt", sg, R, C, 0.5, calib, &r));
        assert_cce_ok(apply_one("magnitude", mg, R, C, 0.5, NULL, &r));
        assert_int_equal(fixture_count_zeros(sg, R * C), R * C / 2);
        assert_int_equal(fixture_count_zeros(mg, R * C), R * C / 2);
        double es = fixture_output_sse(w, sg, R, C, x, N),
               em = fixture_output_sse(w, mg, R, C, x, N);
        double energy = fixture_output_sse(zero, w, R, C, x, N);
        print_message("width %d: output SSE sparsegpt %.4g, magnitude %.4g (ratio %.3f)\n", C, es,
                      em, es / em);
        assert_true(es < 0.8 * em);
        const cce_report_row *row = &r.rows[0];
        assert_string_equal(row->strategy, "sparsegpt");
        assert_int_equal(row->params_before, R * C);
        assert_int_equal(row->params_after, R * C / 2);
        assert_int_equal(row->bytes_after, 4 * (R * C / 2) + R * C / 8); /* values + mask */
        assert_near(row->sparsity, 0.5, 1e-12);
        assert_near(row->output_error, sqrt(es / energy), 1e-6 * sqrt(es / energy));
        assert_true(row->rel_fro_error > 0 && row->rel_fro_error < 1.5);
        cce_report_clear(&r);
        cce_calib_free(calib);
        free(x);
        free(w);
        free(sg);
        free(mg);
        free(zero);
    }
    gsl_rng_free(rng);
}

/* Over several blocks (128, 128, 44 columns) the count is still exact for any ratio. */
static void test_exact_counts(void **state) {
    (void)state;
    enum { R = 7, C = 300, N = 320 };
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 17);
    double *x = correlated_inputs(rng, N, C);
    cce_calib *calib = calib_of(x, N, C);
    float *w = fixture_random_weights(rng, R * C, 0.1), *v = malloc(R * C * sizeof *v);
    const double ratios[] = {0.3, 0.29, 0.77, 0.01};
    cce_report r;
    cce_report_init(&r);
    for (int k = 0; k < 4; k++) {
        memcpy(v, w, R * C * sizeof *v);
        assert_cce_ok(apply_one("sparsegpt", v, R, C, ratios[k], calib, &r));
        assert_int_equal(fixture_count_zeros(v, R * C), cce_ratio_count(ratios[k], R * C));
    }
    /* Ratio 0 without quantization leaves the tensor alone. */
    memcpy(v, w, R * C * sizeof *v);
    size_t rows_before = r.n;
    assert_cce_ok(apply_one("sparsegpt", v, R, C, 0, calib, &r));
    assert_memory_equal(v, w, R * C * sizeof *v);
    assert_int_equal(r.n, rows_before);
    cce_report_clear(&r);
    cce_calib_free(calib);
    free(x);
    free(w);
    free(v);
    gsl_rng_free(rng);
}

/* N:M: every group of M keeps exactly N (a ragged last group of len keeps ceil(N len / M)), and
 * the outputs move less than under magnitude N:M. */
static void test_nm(void **state) {
    (void)state;
    enum { R = 16, C = 70, N = 400 };
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 23);
    double *x = correlated_inputs(rng, N, C);
    cce_calib *calib = calib_of(x, N, C);
    float *w = fixture_random_weights(rng, R * C, 0.1);
    float *sg = malloc(R * C * sizeof *sg), *mg = malloc(R * C * sizeof *mg);
    const int pats[][2] = {{2, 4}, {4, 8}, {1, 3}, {3, 32}};
    for (int k = 0; k < 4; k++) {
        int n = pats[k][0], m = pats[k][1];
        char spec[64];
        memcpy(sg, w, R * C * sizeof *sg);
        memcpy(mg, w, R * C * sizeof *mg);
        cce_report r;
        cce_report_init(&r);
        snprintf(spec, sizeof spec, "sparsegpt:nm=%d:%d", n, m);
        assert_cce_ok(apply_one(spec, sg, R, C, 0.5, calib, &r));
        snprintf(spec, sizeof spec, "magnitude:nm=%d:%d", n, m);
        assert_cce_ok(apply_one(spec, mg, R, C, 0.5, NULL, &r));
        int64_t stored = 0;
        for (int o = 0; o < R; o++)
            for (int g0 = 0; g0 < C; g0 += m) {
                int len = C - g0 < m ? C - g0 : m;
                int keep = len == m ? n : (n * len + m - 1) / m, nz = 0;
                for (int i = 0; i < len; i++) nz += sg[o * C + g0 + i] != 0.0f;
                if (nz != keep)
                    fail_msg("%d:%d row %d group at %d: %d non-zeros, expected %d", n, m, o, g0, nz,
                             keep);
                stored += keep;
            }
        double es = fixture_output_sse(w, sg, R, C, x, N),
               em = fixture_output_sse(w, mg, R, C, x, N);
        print_message("nm %d:%d: output SSE sparsegpt %.4g, magnitude %.4g\n", n, m, es, em);
        assert_true(es < em);
        int ib = 0;
        while ((1 << ib) < m) ib++;
        assert_int_equal(r.rows[0].bytes_after, 4 * stored + (stored * ib + 7) / 8);
        assert_int_equal(r.rows[0].params_after, stored);
        cce_report_clear(&r);
    }
    /* A plan target of 0 leaves the tensor dense. */
    cce_report r;
    cce_report_init(&r);
    memcpy(sg, w, R * C * sizeof *sg);
    assert_cce_ok(apply_one("sparsegpt:nm=2:4", sg, R, C, 0, calib, &r));
    assert_memory_equal(sg, w, R * C * sizeof *sg);
    cce_report_clear(&r);
    cce_calib_free(calib);
    free(x);
    free(w);
    free(sg);
    free(mg);
    gsl_rng_free(rng);
}

/* bits > 0: the kept weights also land on RTN's grid. Per channel, the scales come from the
 * weights before the sweep, so every value is k * scale with |k| <= 4 (3 bits, symmetric). */
static void test_joint_quantization(void **state) {
    (void)state;
    enum { R = 10, C = 96, N = 300 };
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 29);
    double *x = correlated_inputs(rng, N, C);
    cce_calib *calib = calib_of(x, N, C);
    float *w = fixture_random_weights(rng, R * C, 0.1), *v = malloc(R * C * sizeof *v);
    memcpy(v, w, R * C * sizeof *v);
    cce_report r;
    cce_report_init(&r);
    assert_cce_ok(apply_one("sparsegpt:bits=3,symmetric=true", v, R, C, 0.5, calib, &r));
    assert_true(fixture_count_zeros(v, R * C) >= R * C / 2);
    for (int o = 0; o < R; o++) {
        float lo, hi;
        cce_quant_group g;
        assert_cce_ok(cce_quant_range(w + o * C, NULL, C, "row", &lo, &hi));
        assert_cce_ok(cce_quant_group_params(3, 1, lo, hi, "row", &g));
        for (int c = 0; c < C; c++) {
            double k = v[o * C + c] / g.scale;
            if (k != rint(k) || fabs(k) > 4)
                fail_msg("row %d col %d: %g is not k * %g with |k| <= 4", o, c, v[o * C + c],
                         g.scale);
        }
    }
    /* Bytes: 3-bit codes of the kept half + mask (smaller than all codes), fp16 scales. */
    int64_t kept = R * C / 2;
    assert_int_equal(r.rows[0].params_after, kept);
    assert_int_equal(r.rows[0].bytes_after, (kept * 3 + 7) / 8 + R * C / 8 + 2 * R);
    cce_report_clear(&r);
    cce_calib_free(calib);
    free(x);
    free(w);
    free(v);
    gsl_rng_free(rng);
}

/* Weights already zero stay zero and count towards the removed ones. */
static void test_earlier_zeros(void **state) {
    (void)state;
    enum { R = 12, C = 50, N = 200 };
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 31);
    double *x = correlated_inputs(rng, N, C);
    cce_calib *calib = calib_of(x, N, C);
    float *w = fixture_random_weights(rng, R * C, 0.1), *v = malloc(R * C * sizeof *v);
    for (int i = 0; i < R * C; i += 5) w[i] = 0;
    memcpy(v, w, R * C * sizeof *v);
    cce_report r;
    cce_report_init(&r);
    assert_cce_ok(apply_one("sparsegpt", v, R, C, 0.5, calib, &r));
    for (int i = 0; i < R * C; i++)
        if (w[i] == 0 && v[i] != 0) fail_msg("earlier zero %d became %g", i, v[i]);
    assert_int_equal(fixture_count_zeros(v, R * C), R * C / 2);
    /* More earlier zeros than the ratio asks for: all stay. */
    for (int i = 0; i < R * C; i++) w[i] = i % 3 ? 0.0f : w[i] + 0.5f;
    memcpy(v, w, R * C * sizeof *v);
    assert_cce_ok(apply_one("sparsegpt", v, R, C, 0.5, calib, &r));
    for (int i = 0; i < R * C; i++)
        if (w[i] == 0 && v[i] != 0) fail_msg("earlier zero %d became %g", i, v[i]);
    assert_int_equal(fixture_count_zeros(v, R * C), fixture_count_zeros(w, R * C));
    cce_report_clear(&r);
    cce_calib_free(calib);
    free(x);
    free(w);
    free(v);
    gsl_rng_free(rng);
}

static void test_bad_input(void **state) {
    (void)state;
    fixture_expect_parse_error("sparsegpt:ratio=1.5", CCE_ERR_RANGE,
                               "ratio = 1.5 is outside [0, 1)");
    fixture_expect_parse_error("sparsegpt:ratio=-0.1", CCE_ERR_RANGE, "ratio");
    fixture_expect_parse_error("sparsegpt:nm=4:2", CCE_ERR_RANGE, "nm");
    fixture_expect_parse_error("sparsegpt:nm=2:4,ratio=0.5", CCE_ERR_ARG, "ratio");
    fixture_expect_parse_error("sparsegpt:bits=1", CCE_ERR_RANGE, "bits = 1");
    fixture_expect_parse_error("sparsegpt:bits=9", CCE_ERR_RANGE, "bits = 9");
    fixture_expect_parse_error("sparsegpt:bits=4,group=0", CCE_ERR_RANGE, "group = 0");
    fixture_expect_parse_error("sparsegpt:group=64", CCE_ERR_ARG, "bits");
    fixture_expect_parse_error("sparsegpt:damp=-1", CCE_ERR_RANGE, "damp");
    float w[8] = {1, 2, 3, 4, 5, 6, 7, 8}, v[8];
    memcpy(v, w, sizeof v);
    cce_report r;
    cce_report_init(&r);
    assert_int_equal(apply_one("sparsegpt", v, 2, 4, 0.5, NULL, &r), CCE_ERR_STATE);
    assert_non_null(strstr(cce_error_detail(), "calibration"));
    const double x[3 * 4] = {1, 0, 2, 1, 0, 1, 1, 3, 2, 2, 0, 1};
    cce_calib *calib = calib_of(x, 3, 4);
    assert_int_equal(apply_one("sparsegpt", v, 2, 4, 1.5, calib, &r), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), DOWN));
    assert_memory_equal(v, w, sizeof v);
    assert_int_equal(r.n, 0);
    assert_cce_ok(apply_one("sparsegpt", v, 2, 4, 0.5, calib, &r));
    assert_int_equal(fixture_count_zeros(v, 8), 4);
    cce_calib_free(calib);
    cce_report_clear(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_beats_magnitude),
        cmocka_unit_test(test_exact_counts),
        cmocka_unit_test(test_nm),
        cmocka_unit_test(test_joint_quantization),
        cmocka_unit_test(test_earlier_zeros),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
