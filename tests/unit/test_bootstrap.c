/* The paired bootstrap: a run against itself (mean 0, interval [0, 0]), a constructed difference
 * found significant, a hand-computable case, the interval width against theory for independent
 * blocks, why blocks and not tokens, coverage under no difference, determinism, per-item flags,
 * and bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

#include "test_support.h"

#include "bootstrap.h"
#include "eval.h"
#include "fixtures.h"
#include "results_table.h"

#define assert_near(a, b, tol)                                                                     \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        if (!(fabs(a_ - b_) <= (tol)))                                                             \
            fail_msg("%s = %.12g, expected %.12g (tolerance %g)", #a, a_, b_, (double)(tol));      \
    } while (0)

static void expect_error(cce_status s, cce_status want, const char *needle) {
    if (s != want)
        fail_msg("status %s, expected %s (detail: %s)", cce_strerror(s), cce_strerror(want),
                 cce_error_detail());
    if (!strstr(cce_error_detail(), needle))
        fail_msg("detail '%s' lacks '%s'", cce_error_detail(), needle);
}

/* n gaussian values of mean mu and deviation sigma. [n], malloc'd. */
static double *gaussian(gsl_rng *r, size_t n, double mu, double sigma) {
    double *x = malloc(n * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++) x[i] = mu + gsl_ran_gaussian(r, sigma);
    return x;
}

static void test_self_is_zero(void **state) {
    (void)state;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 1);
    const size_t n = 10 * 511; /* ten windows of a ctx-512 run */
    double *nll = gaussian(r, n, 1.4, 0.9);
    cce_bootstrap_result b;
    assert_cce_ok(cce_bootstrap_paired(nll, nll, n, 511, NULL, &b));
    assert_true(b.diff == 0.0);
    assert_true(b.ci_low == 0.0);
    assert_true(b.ci_high == 0.0);
    assert_true(b.ci_high - b.ci_low == 0.0); /* width 0 */
    assert_true(b.ci_low <= 0.0 && 0.0 <= b.ci_high);
    assert_int_equal(b.significant, 0);
    assert_true(b.se == 0.0);
    assert_int_equal(b.n_blocks, 10);
    assert_near(b.n_values, (double)n, 0);
    assert_int_equal(b.resamples, CCE_BOOTSTRAP_DEFAULT_RESAMPLES);
    assert_near(b.level, 0.95, 0);
    assert_near(b.mean_a, b.mean_b, 0);
    free(nll);
    gsl_rng_free(r);
}

/* a = b + 0.05 + noise on every token: found, with the difference inside the interval. */
static void test_constructed_difference(void **state) {
    (void)state;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 2);
    const size_t n = 40 * 255;
    double *b = gaussian(r, n, 1.5, 1.0);
    double *a = malloc(n * sizeof *a);
    for (size_t i = 0; i < n; i++) a[i] = b[i] + 0.05 + gsl_ran_gaussian(r, 0.2);
    cce_bootstrap_options o = {.resamples = 2000, .seed = 9};
    cce_bootstrap_result res;
    assert_cce_ok(cce_bootstrap_paired(a, b, n, 255, &o, &res));
    print_message("constructed +0.05: diff %.5f, CI [%.5f, %.5f]\n", res.diff, res.ci_low,
                  res.ci_high);
    assert_int_equal(res.significant, 1);
    assert_true(res.ci_low > 0);
    assert_true(res.ci_low < 0.05 && 0.05 < res.ci_high);
    assert_near(res.diff, 0.05, 0.01);
    assert_int_equal(res.n_blocks, 40);
    /* The other way round: the same interval mirrored. */
    cce_bootstrap_result rev;
    assert_cce_ok(cce_bootstrap_paired(b, a, n, 255, &o, &rev));
    assert_near(rev.diff, -res.diff, 1e-12);
    assert_near(rev.ci_high, -res.ci_low, 1e-12);
    assert_near(rev.ci_low, -res.ci_high, 1e-12);
    assert_int_equal(rev.significant, 1);
    free(a);
    free(b);
    gsl_rng_free(r);
}

/* Two blocks with differences 0 and 1: a resample's mean is 0, 0.5 or 1 with probabilities
 * 1/4, 1/2, 1/4, so the 95% interval is [0, 1] and the spread sqrt(1/8). */
static void test_two_blocks_by_hand(void **state) {
    (void)state;
    double a[2] = {3.0, 5.0}, b[2] = {3.0, 4.0};
    cce_bootstrap_options o = {.resamples = 20000, .seed = 4};
    cce_bootstrap_result r;
    assert_cce_ok(cce_bootstrap_paired_blocks(a, b, NULL, 2, &o, &r));
    assert_near(r.diff, 0.5, 1e-15);
    assert_near(r.mean_a, 4.0, 1e-15);
    assert_near(r.mean_b, 3.5, 1e-15);
    assert_near(r.ci_low, 0.0, 0);
    assert_near(r.ci_high, 1.0, 0);
    assert_near(r.se, sqrt(1.0 / 8), 0.01);
    assert_int_equal(r.significant, 0);
    /* Counts weight the blocks: sums 0 over 1 value and 3 over 3 values. */
    double sa[2] = {0.0, 3.0}, sb[2] = {0.0, 0.0}, cnt[2] = {1, 3};
    assert_cce_ok(cce_bootstrap_paired_blocks(sa, sb, cnt, 2, &o, &r));
    assert_near(r.diff, 0.75, 1e-15);
    assert_near(r.n_values, 4, 0);
    /* Resamples: {0,0} -> 0, {1,1} -> 1, mixed -> 3/4. */
    assert_near(r.ci_low, 0.0, 0);
    assert_near(r.ci_high, 1.0, 0);
}

/* Independent blocks of gaussian differences (deviation 1): the 95% interval is about
 * diff ± 1.96 / sqrt(n_blocks). */
static void test_width_matches_theory(void **state) {
    (void)state;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 3);
    const size_t nb = 400;
    double *a = gaussian(r, nb, 0.0, 1.0);
    double *b = calloc(nb, sizeof *b);
    cce_bootstrap_options o = {.resamples = 4000, .seed = 5};
    cce_bootstrap_result res;
    assert_cce_ok(cce_bootstrap_paired_blocks(a, b, NULL, nb, &o, &res));
    double half = 1.96 / sqrt((double)nb);
    print_message("half-width %.5f (theory %.5f), se %.5f (theory %.5f)\n",
                  (res.ci_high - res.ci_low) / 2, half, res.se, 1 / sqrt((double)nb));
    assert_near((res.ci_high - res.ci_low) / 2, half, 0.12 * half);
    assert_near(res.se, 1 / sqrt((double)nb), 0.1 / sqrt((double)nb));
    free(a);
    free(b);
    gsl_rng_free(r);
}

/* Tokens of a window share its context: here every token of a window has the window's value.
 * Resampling windows gives the right width, 1.96 / sqrt(windows); resampling tokens one by one
 * (block length 1) would give one sqrt(tokens per window) times narrower, too confident. */
static void test_blocks_not_tokens(void **state) {
    (void)state;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 6);
    const size_t nw = 100, len = 25, n = nw * len;
    double *a = malloc(n * sizeof *a), *b = calloc(n, sizeof *b);
    for (size_t w = 0; w < nw; w++) {
        double v = gsl_ran_gaussian(r, 1.0);
        for (size_t t = 0; t < len; t++) a[w * len + t] = v;
    }
    cce_bootstrap_options o = {.resamples = 3000, .seed = 7};
    cce_bootstrap_result windows, tokens;
    assert_cce_ok(cce_bootstrap_paired(a, b, n, len, &o, &windows));
    assert_cce_ok(cce_bootstrap_paired(a, b, n, 1, &o, &tokens));
    double w_half = (windows.ci_high - windows.ci_low) / 2;
    double t_half = (tokens.ci_high - tokens.ci_low) / 2;
    print_message("windows: half-width %.4f, tokens: %.4f (ratio %.2f, sqrt(len) %.2f)\n", w_half,
                  t_half, w_half / t_half, sqrt((double)len));
    assert_near(w_half, 1.96 / sqrt((double)nw), 0.15 * 1.96 / sqrt((double)nw));
    assert_near(w_half / t_half, sqrt((double)len), 0.2 * sqrt((double)len));
    assert_near(windows.diff, tokens.diff, 1e-12);
    free(a);
    free(b);
    gsl_rng_free(r);
}

/* With no true difference, about 95% of the intervals contain 0. */
static void test_coverage_without_difference(void **state) {
    (void)state;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 8);
    const int trials = 200;
    const size_t nb = 60;
    int covered = 0;
    for (int k = 0; k < trials; k++) {
        double *a = gaussian(r, nb, 2.0, 1.0), *b = gaussian(r, nb, 2.0, 1.0);
        cce_bootstrap_options o = {.resamples = 500, .seed = (uint64_t)k + 1};
        cce_bootstrap_result res;
        assert_cce_ok(cce_bootstrap_paired_blocks(a, b, NULL, nb, &o, &res));
        covered += !res.significant;
        assert_int_equal(res.significant, !(res.ci_low <= 0 && 0 <= res.ci_high));
        free(a);
        free(b);
    }
    print_message("coverage of 0: %d of %d\n", covered, trials);
    /* Binomial(200, ~0.94): 0.88 to 0.99 holds with overwhelming probability. */
    assert_true(covered >= 176 && covered <= 198);
    gsl_rng_free(r);
}

static void test_determinism_and_level(void **state) {
    (void)state;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 10);
    const size_t n = 3000;
    double *a = gaussian(r, n, 0.1, 1.0), *b = gaussian(r, n, 0.0, 1.0);
    cce_bootstrap_options o = {.resamples = 500, .seed = 11};
    cce_bootstrap_result x, y, z, wide;
    assert_cce_ok(cce_bootstrap_paired(a, b, n, 100, &o, &x));
    assert_cce_ok(cce_bootstrap_paired(a, b, n, 100, &o, &y));
    assert_true(x.ci_low == y.ci_low && x.ci_high == y.ci_high && x.se == y.se);
    o.seed = 12;
    assert_cce_ok(cce_bootstrap_paired(a, b, n, 100, &o, &z));
    assert_true(z.ci_low != x.ci_low || z.ci_high != x.ci_high);
    assert_true(z.diff == x.diff);
    assert_int_equal(z.seed, 12);
    o.level = 0.99;
    assert_cce_ok(cce_bootstrap_paired(a, b, n, 100, &o, &wide));
    assert_true(wide.ci_low < z.ci_low && wide.ci_high > z.ci_high);
    /* A last, shorter block: 3000 = 7 * 400 + 200. */
    cce_bootstrap_result part;
    assert_cce_ok(cce_bootstrap_paired(a, b, n, 400, NULL, &part));
    assert_int_equal(part.n_blocks, 8);
    assert_near(part.diff, x.diff, 1e-12);
    double sums[8];
    cce_bootstrap_block_sums(a, n, 400, sums);
    double total = 0;
    for (int k = 0; k < 8; k++) total += sums[k];
    assert_near(total / n, part.mean_a, 1e-12);
    free(a);
    free(b);
    gsl_rng_free(r);
}

static void test_flags(void **state) {
    (void)state;
    enum { N = 400 };
    uint8_t a[N], b[N];
    /* a right on 70%, b on 40% of the items. */
    for (int i = 0; i < N; i++) {
        a[i] = (uint8_t)(i % 10 < 7);
        b[i] = (uint8_t)((i * 7) % 10 < 4 ? 5 : 0); /* nonzero counts as right */
    }
    cce_bootstrap_result r;
    assert_cce_ok(cce_bootstrap_paired_flags(a, b, N, NULL, &r));
    assert_near(r.mean_a, 0.7, 1e-12);
    assert_near(r.mean_b, 0.4, 1e-12);
    assert_near(r.diff, 0.3, 1e-12);
    assert_int_equal(r.n_blocks, N);
    assert_int_equal(r.significant, 1);
    assert_true(r.ci_low > 0.2 && r.ci_high < 0.4);
    assert_cce_ok(cce_bootstrap_paired_flags(a, a, N, NULL, &r));
    assert_true(r.ci_low == 0 && r.ci_high == 0 && !r.significant);

    json_t *j = cce_bootstrap_result_json(&r);
    assert_non_null(j);
    assert_true(json_is_false(json_object_get(j, "significant")));
    assert_near(json_number_value(json_object_get(j, "ci_high")), 0, 0);
    assert_int_equal(json_integer_value(json_object_get(j, "blocks")), N);
    assert_int_equal(json_integer_value(json_object_get(j, "resamples")), 1000);
    json_decref(j);
}

static void test_bad_input(void **state) {
    (void)state;
    double a[3] = {1, 2, 3}, b[3] = {1, 2, 3}, cnt[3] = {1, 0, 1};
    cce_bootstrap_result r;
    expect_error(cce_bootstrap_paired_blocks(a, b, NULL, 1, NULL, &r), CCE_ERR_RANGE,
                 "at least 2 blocks");
    expect_error(cce_bootstrap_paired(a, b, 3, 3, NULL, &r), CCE_ERR_RANGE, "got 1");
    expect_error(cce_bootstrap_paired(a, b, 3, 0, NULL, &r), CCE_ERR_ARG, "block length 0");
    expect_error(cce_bootstrap_paired_blocks(a, b, cnt, 3, NULL, &r), CCE_ERR_RANGE,
                 "block 1: count 0");
    double nan_a[3] = {1, NAN, 3};
    expect_error(cce_bootstrap_paired_blocks(nan_a, b, NULL, 3, NULL, &r), CCE_ERR_NUMERIC,
                 "block 1");
    cce_bootstrap_options o = {.resamples = -3};
    expect_error(cce_bootstrap_paired_blocks(a, b, NULL, 3, &o, &r), CCE_ERR_RANGE,
                 "resamples = -3");
    o = (cce_bootstrap_options){.level = 1.5};
    expect_error(cce_bootstrap_paired_blocks(a, b, NULL, 3, &o, &r), CCE_ERR_RANGE, "level = 1.5");
    expect_error(cce_bootstrap_paired_blocks(NULL, b, NULL, 3, NULL, &r), CCE_ERR_ARG, "values");
    expect_error(cce_bootstrap_paired_flags(NULL, NULL, 0, NULL, &r), CCE_ERR_RANGE, "got 0");
}

/* Recorded inputs: the per-window tables of two evaluations on the same windows, paired. */
static void test_window_tables(void **state) {
    (void)state;
    cce_model *m1 = fixture_synth_preset("tiny", 21), *m2 = fixture_synth_preset("tiny", 22);
    const size_t n = 31 * 40;
    int32_t *stream = fixture_random_tokens(n, 5);
    cce_eval_options o = {.ctx = 32, .keep_token_nll = 1};
    cce_eval_result r1, r2, r3;
    assert_cce_ok(cce_eval(m1, NULL, stream, n, &o, &r1));
    assert_cce_ok(cce_eval(m2, NULL, stream, n, &o, &r2));
    cce_table *t1, *t2, *t3;
    assert_cce_ok(cce_bootstrap_window_table(&r1, &t1));
    assert_cce_ok(cce_bootstrap_window_table(&r2, &t2));
    assert_string_equal(t1->name, CCE_BOOTSTRAP_WINDOW_TABLE);
    assert_int_equal(t1->n_rows, 40);
    int c_sum = cce_table_column(t1, "nll_sum"), c_tok = cce_table_column(t1, "tokens");
    assert_true(c_sum >= 0 && c_tok >= 0);
    double total = 0;
    for (size_t w = 0; w < 40; w++) {
        assert_int_equal(cce_table_i64(t1, w, c_tok), 31);
        total += cce_table_f64(t1, w, c_sum);
    }
    assert_near(total / (double)n, r1.mean_nll, 1e-12);

    cce_bootstrap_result self, b;
    assert_cce_ok(cce_bootstrap_tables(t1, t1, "nll_sum", "tokens", NULL, &self));
    assert_true(self.ci_low == 0 && self.ci_high == 0 && !self.significant);
    assert_cce_ok(cce_bootstrap_tables(t1, t2, "nll_sum", "tokens", NULL, &b));
    assert_near(b.diff, r1.mean_nll - r2.mean_nll, 1e-12);
    assert_near(b.mean_a, r1.mean_nll, 1e-12);
    assert_int_equal(b.n_blocks, 40);
    /* The same comparison from the per-token NLLs directly. */
    cce_bootstrap_result direct;
    assert_cce_ok(cce_bootstrap_paired(r1.token_nll, r2.token_nll, n, 31, NULL, &direct));
    assert_near(direct.ci_low, b.ci_low, 1e-12);
    assert_near(direct.ci_high, b.ci_high, 1e-12);

    /* Other windows (ctx 16) cannot be paired with these. */
    o.ctx = 16;
    assert_cce_ok(cce_eval(m2, NULL, stream, n, &o, &r3));
    assert_cce_ok(cce_bootstrap_window_table(&r3, &t3));
    expect_error(cce_bootstrap_tables(t1, t3, "nll_sum", "tokens", NULL, &b), CCE_ERR_ARG,
                 "not evaluated on the same");
    cce_table_truncate(t3, 40);
    expect_error(cce_bootstrap_tables(t1, t3, "nll_sum", "tokens", NULL, &b), CCE_ERR_ARG,
                 "row 0: tokens 31 against 15");
    expect_error(cce_bootstrap_tables(t1, t2, "nll", "tokens", NULL, &b), CCE_ERR_ARG,
                 "no column 'nll'");
    cce_eval_result no_nll = r1;
    no_nll.token_nll = NULL;
    cce_table *none;
    expect_error(cce_bootstrap_window_table(&no_nll, &none), CCE_ERR_ARG, "keep_token_nll");

    cce_table_free(t3);
    cce_table_free(t2);
    cce_table_free(t1);
    cce_eval_result_free(&r3);
    cce_eval_result_free(&r2);
    cce_eval_result_free(&r1);
    free(stream);
    cce_model_free(m2);
    cce_model_free(m1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_self_is_zero),
        cmocka_unit_test(test_constructed_difference),
        cmocka_unit_test(test_two_blocks_by_hand),
        cmocka_unit_test(test_width_matches_theory),
        cmocka_unit_test(test_blocks_not_tokens),
        cmocka_unit_test(test_coverage_without_difference),
        cmocka_unit_test(test_determinism_and_level),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_window_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
