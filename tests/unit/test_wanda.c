/* Wanda on hand-built matrices with given input norms: exact masks per row (where magnitude would
 * choose differently), ties, N:M group by group with a ragged last group, a randomized check of
 * the per-row rule against brute force, report rows, and bad input. */
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "strategy.h"
#include "fixtures.h"
#include "test_support.h"

#define TENSOR "layers.1.mlp.down_proj.weight" /* fed by DOWN_IN of layer 1 */

/* Statistics for layer 1's DOWN_IN with the given sum of squares [dim]. The caller frees. */
static cce_calib *norms_calib(const double *sum_sq, int dim) {
    cce_calib *c;
    assert_cce_ok(cce_calib_new(2, &c));
    double *sum = calloc((size_t)dim, sizeof *sum);
    assert_cce_ok(cce_calib_set_input(c, 1, CCE_SITE_DOWN_IN, dim, 100, sum, sum_sq, NULL));
    free(sum);
    return c;
}

/* Runs `spec` on w [rows, cols] at the plan target, with calib; copies the result back. */
static cce_status run(const char *spec, float *w, int64_t rows, int64_t cols, double target,
                      const cce_calib *calib, cce_report *r) {
    const char *names[1] = {TENSOR};
    return fixture_apply_job(spec, 1, names, &w, 1, rows, cols, target, calib, 0, r);
}

/* norms 10, 3, 2, 1, 0.5, 1, 0.1, 1 */
static const double SUM_SQ8[8] = {100, 9, 4, 1, 0.25, 1, 0.01, 1};
static const float W2x8[16] = {
    1,    -2,    3,    -4,    5,    -6,    7,    -8,    /* scores 10 6 6 4 2.5 6 0.7 8 */
    0.5f, -0.5f, 0.5f, -0.5f, 0.5f, -0.5f, 0.5f, -0.5f, /* scores 5 1.5 1 .5 .25 .5 .05 .5 */
};

static void expect_mask(const float *w, const float *orig, const int *keep, int n) {
    for (int i = 0; i < n; i++) {
        float want = keep[i] ? orig[i] : 0.0f;
        if (w[i] != want) fail_msg("weight %d: got %g, expected %g", i, w[i], want);
    }
}

static void test_rows_exact(void **state) {
    (void)state;
    cce_calib *c = norms_calib(SUM_SQ8, 8);
    cce_report r;
    cce_report_init(&r);
    float w[16];
    memcpy(w, W2x8, sizeof w);
    assert_cce_ok(run("wanda:ratio=0.5", w, 2, 8, 0.5, c, &r));
    /* Row 0 loses 0.7, 2.5, 4 and the first 6 (position 1); magnitude would take 1, 2, 3, 4.
     * Row 1 loses .05, .25 and the first two of the 0.5 ties (positions 3 and 5). */
    static const int keep[16] = {1, 0, 1, 0, 0, 1, 0, 1, /* */
                                 1, 1, 1, 0, 0, 0, 0, 1};
    expect_mask(w, W2x8, keep, 16);

    assert_int_equal(r.n, 1);
    const cce_report_row *row = &r.rows[0];
    assert_string_equal(row->strategy, "wanda");
    assert_string_equal(row->tensor, TENSOR);
    assert_int_equal(row->layer, 1);
    assert_int_equal(row->params_before, 16);
    assert_int_equal(row->params_after, 8);
    assert_int_equal(row->bytes_before, 64);
    assert_int_equal(row->bytes_after, 4 * 8 + 2);
    assert_true(fabs(row->sparsity - 0.5) < 1e-12);
    double all = 0, gone = 0;
    for (int i = 0; i < 16; i++) {
        all += (double)W2x8[i] * W2x8[i];
        if (!keep[i]) gone += (double)W2x8[i] * W2x8[i];
    }
    assert_true(fabs(row->rel_fro_error - sqrt(gone / all)) < 1e-12);
    cce_report_clear(&r);

    /* Counting: ratio 0.3 of 8 removes floor(2.4) = 2 per row. */
    memcpy(w, W2x8, sizeof w);
    assert_cce_ok(run("wanda", w, 2, 8, 0.3, c, &r));
    static const int keep3[16] = {1, 1, 1, 1, 0, 1, 0, 1, /* */
                                  1, 1, 1, 1, 0, 1, 0, 1};
    expect_mask(w, W2x8, keep3, 16);
    /* Target 0 changes nothing. */
    memcpy(w, W2x8, sizeof w);
    assert_cce_ok(run("wanda", w, 2, 8, 0.0, c, &r));
    assert_memory_equal(w, W2x8, sizeof w);
    cce_report_clear(&r);
    cce_calib_free(c);
}

static void test_nm_group_by_group(void **state) {
    (void)state;
    cce_calib *c = norms_calib(SUM_SQ8, 8);
    cce_report r;
    cce_report_init(&r);
    float w[16];
    memcpy(w, W2x8, sizeof w);
    assert_cce_ok(run("wanda:nm=2:4", w, 2, 8, 0.5, c, &r));
    /* Row 0, groups {10 6 6 4} and {2.5 6 0.7 8}: keep positions 0, 2 and 5, 7.
     * Row 1, groups {5 1.5 1 .5} and {.25 .5 .05 .5}: keep 0, 1 and 5, 7. */
    static const int keep[16] = {1, 0, 1, 0, 0, 1, 0, 1, /* */
                                 1, 1, 0, 0, 0, 1, 0, 1};
    expect_mask(w, W2x8, keep, 16);
    assert_int_equal(r.rows[0].params_after, 8);
    assert_int_equal(r.rows[0].bytes_after, 4 * 8 + 2); /* 8 kept values, 2-bit indices */
    cce_report_clear(&r);
    cce_calib_free(c);

    /* A ragged last group: 10 inputs = 4 + 4 + 2; the last keeps ceil(2 * 2 / 4) = 1. */
    double sq10[10];
    float w10[10], orig[10];
    for (int j = 0; j < 10; j++) {
        sq10[j] = (double)(10 - j) * (10 - j); /* norms 10 .. 1 */
        orig[j] = w10[j] = 1.0f + 0.25f * (float)j;
    }
    /* scores (1 + j/4) * (10 - j): 10 11.25 12 12.25 12 11.25 10 8.25 6 3.25 */
    c = norms_calib(sq10, 10);
    assert_cce_ok(run("wanda:nm=2:4", w10, 1, 10, 0.5, c, &r));
    static const int keep10[10] = {0, 0, 1, 1, 1, 1, 0, 0, 1, 0};
    expect_mask(w10, orig, keep10, 10);
    assert_int_equal(r.rows[0].params_after, 5);
    cce_report_clear(&r);
    cce_calib_free(c);
}

static void test_random_rows_against_brute_force(void **state) {
    (void)state;
    enum { ROWS = 16, COLS = 37 };
    gsl_rng *g = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(g, 5);
    double sq[COLS];
    float w[ROWS * COLS], orig[ROWS * COLS];
    for (int j = 0; j < COLS; j++) sq[j] = gsl_rng_uniform_pos(g) * 4;
    for (int i = 0; i < ROWS * COLS; i++) orig[i] = w[i] = (float)(gsl_rng_uniform(g) - 0.5);
    gsl_rng_free(g);
    cce_calib *c = norms_calib(sq, COLS);
    cce_report r;
    cce_report_init(&r);
    assert_cce_ok(run("wanda", w, ROWS, COLS, 0.3, c, &r));
    for (int i = 0; i < ROWS; i++) {
        int zeros = 0;
        float max_removed = 0, min_kept = INFINITY;
        for (int j = 0; j < COLS; j++) {
            float score = fabsf(orig[i * COLS + j]) * (float)sqrt(sq[j]);
            if (w[i * COLS + j] == 0) {
                zeros++;
                max_removed = fmaxf(max_removed, score);
            } else {
                assert_true(w[i * COLS + j] == orig[i * COLS + j]);
                min_kept = fminf(min_kept, score);
            }
        }
        assert_int_equal(zeros, 11); /* floor(0.3 * 37) */
        assert_true(max_removed <= min_kept);
    }
    cce_report_clear(&r);
    cce_calib_free(c);
}

static void test_bad_input(void **state) {
    (void)state;
    cce_report r;
    cce_report_init(&r);
    float w[16];
    memcpy(w, W2x8, sizeof w);
    /* No calibration. */
    assert_int_equal(run("wanda", w, 2, 8, 0.5, NULL, &r), CCE_ERR_STATE);
    assert_non_null(strstr(cce_error_detail(), "wanda"));
    assert_non_null(strstr(cce_error_detail(), "calibration"));
    /* Statistics of another width. */
    double sq6[6] = {1, 1, 1, 1, 1, 1};
    cce_calib *c6 = norms_calib(sq6, 6);
    assert_int_equal(run("wanda", w, 2, 8, 0.5, c6, &r), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), TENSOR));
    cce_calib_free(c6);
    /* No statistics for the tensor's site. */
    cce_calib *empty;
    assert_cce_ok(cce_calib_new(2, &empty));
    assert_int_equal(run("wanda", w, 2, 8, 0.5, empty, &r), CCE_ERR_NOT_FOUND);
    assert_non_null(strstr(cce_error_detail(), TENSOR));
    cce_calib_free(empty);
    assert_memory_equal(w, W2x8, sizeof w);
    assert_int_equal(r.n, 0);
    /* Parameters. */
    cce_calib *c = norms_calib(SUM_SQ8, 8);
    assert_int_equal(run("wanda:nm=2:4,ratio=0.5", w, 2, 8, 0.5, c, &r), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "nm"));
    assert_int_equal(run("wanda:nm=2:4,alloc=owl", w, 2, 8, 0.5, c, &r), CCE_ERR_ARG);
    assert_int_equal(run("wanda:ratio=1.5", w, 2, 8, 0.5, c, &r), CCE_ERR_RANGE);
    assert_string_equal(cce_error_detail(), "wanda: ratio = 1.5 is outside [0, 1)");
    assert_int_equal(run("wanda:nm=4:4", w, 2, 8, 0.5, c, &r), CCE_ERR_RANGE);
    assert_int_equal(run("wanda:owl_m=0", w, 2, 8, 0.5, c, &r), CCE_ERR_RANGE);
    assert_int_equal(run("wanda:alloc=best", w, 2, 8, 0.5, c, &r), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "{uniform, owl}"));
    /* NaN weights. */
    w[3] = NAN;
    assert_int_equal(run("wanda", w, 2, 8, 0.5, c, &r), CCE_ERR_NUMERIC);
    assert_non_null(strstr(cce_error_detail(), TENSOR));
    cce_calib_free(c);
    const cce_strategy *s;
    assert_cce_ok(cce_strategy_find("wanda", &s));
    assert_true(s->needs & CCE_NEEDS_CALIBRATION);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_exact),
        cmocka_unit_test(test_nm_group_by_group),
        cmocka_unit_test(test_random_rows_against_brute_force),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
