/* GPTQ on small matrices whose answers are known: with an identity Hessian it is exactly RTN;
 * on correlated inputs its output error tr(dW G dW^T) is below RTN's; the lazy block updates match
 * a plain column-by-column OBS loop; dead inputs, earlier zeros, shared Hessians of one job, the
 * stored encoding, and bad input (no calibration, no second moments, corrupt statistics, bad
 * parameters). */
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../strategies/obs.h"
#include "calib.h"
#include "quant.h"
#include "strategy.h"
#include "fixtures.h"
#include "test_support.h"

#define assert_near(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) <= (tol))

#define UP "layers.0.mlp.up_proj.weight"

/* Calibration statistics of tokens x [n, d] at the FFN and attention inputs of layer 0. The caller
 * frees. */
static cce_calib *calib_of(const double *x, int n, int d) {
    static const cce_calib_site sites[] = {CCE_SITE_FFN_IN, CCE_SITE_ATTN_IN};
    return fixture_calib_of(x, n, d, 1, 0, sites, 2);
}

/* Strongly correlated inputs: x = B z + 0.1 e with B [d, d/4] and z, e standard normal. [n, d] */
static double *correlated_inputs(gsl_rng *rng, int n, int d) {
    return fixture_correlated_inputs(rng, n, d, 4, 0.1, 0);
}

/* Runs `spec` on a job of layer 0 of tensors names[0..nt) (all [rows, cols], data w[i]) at target.
 */
static cce_status apply_job(const char *spec, const char *const *names, float **w, int nt,
                            int64_t rows, int64_t cols, double target, const cce_calib *calib,
                            cce_report *r) {
    return fixture_apply_job(spec, 0, names, w, nt, rows, cols, target, calib, 0, r);
}

static cce_status apply_one(const char *spec, float *w, int64_t rows, int64_t cols, double target,
                            const cce_calib *calib, cce_report *r) {
    const char *names[1] = {UP};
    return apply_job(spec, names, &w, 1, rows, cols, target, calib, r);
}

/* With G = I (so H = 2 I, damped uniformly) nothing couples the columns: GPTQ is RTN, bit for
 * bit, at every granularity, across several blocks. */
static void test_identity_equals_rtn(void **state) {
    (void)state;
    enum { R = 9, C = 200, N = 50 };
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 21);
    double sum[C] = {0}, sq[C], *outer = calloc(C * C, sizeof *outer);
    for (int i = 0; i < C; i++) sq[i] = outer[i * C + i] = N;
    cce_calib *calib;
    assert_cce_ok(cce_calib_new(1, &calib));
    assert_cce_ok(cce_calib_set_input(calib, 0, CCE_SITE_FFN_IN, C, N, sum, sq, outer));
    float *w = fixture_random_weights(rng, R * C, 0.1);
    float *a = malloc(R * C * sizeof *a), *b = malloc(R * C * sizeof *b);
    const char *opts[] = {"bits=4", "bits=3,symmetric=true,group=32", "bits=8,granularity=tensor",
                          "bits=2,symmetric=true", "bits=5,group=64"};
    const int bits[] = {4, 3, 8, 2, 5};
    cce_report r;
    cce_report_init(&r);
    for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++) {
        char spec[96];
        memcpy(a, w, R * C * sizeof *a);
        memcpy(b, w, R * C * sizeof *b);
        snprintf(spec, sizeof spec, "gptq:%s", opts[k]);
        assert_cce_ok(apply_one(spec, a, R, C, bits[k], calib, &r));
        snprintf(spec, sizeof spec, "rtn:%s", opts[k]);
        assert_cce_ok(apply_one(spec, b, R, C, bits[k], NULL, &r));
        for (int i = 0; i < R * C; i++)
            if (a[i] != b[i])
                fail_msg("%s: weight %d: gptq %.9g, rtn %.9g", opts[k], i, a[i], b[i]);
        assert_int_equal(r.rows[r.n - 2].bytes_after, r.rows[r.n - 1].bytes_after);
        assert_string_equal(r.rows[r.n - 2].note, r.rows[r.n - 1].note);
    }
    assert_string_equal(r.rows[r.n - 2].note, "ragged last group 8 of 64");
    cce_report_clear(&r);
    cce_calib_free(calib);
    free(outer);
    free(w);
    free(a);
    free(b);
    gsl_rng_free(rng);
}

/* On correlated inputs GPTQ's output error is below RTN's, per channel and in ragged groups. */
static void test_beats_rtn(void **state) {
    (void)state;
    enum { R = 32, N = 512 };
    const int widths[] = {64, 72, 300};
    const char *opts[] = {"bits=3", "bits=4,group=32", "bits=4,symmetric=true"};
    const int bits[] = {3, 4, 4};
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 1);
    for (int k = 0; k < 3; k++) {
        int C = widths[k];
        double *x = correlated_inputs(rng, N, C);
        cce_calib *calib = calib_of(x, N, C);
        float *w = fixture_random_weights(rng, R * C, 0.1);
        float *g = malloc((size_t)(R * C) * sizeof *g), *q = malloc((size_t)(R * C) * sizeof *q);
        memcpy(g, w, (size_t)(R * C) * sizeof *g);
        memcpy(q, w, (size_t)(R * C) * sizeof *q);
        cce_report r;
        cce_report_init(&r);
        char spec[64];
        snprintf(spec, sizeof spec, "gptq:%s", opts[k]);
        assert_cce_ok(apply_one(spec, g, R, C, bits[k], calib, &r));
        snprintf(spec, sizeof spec, "rtn:%s", opts[k]);
        assert_cce_ok(apply_one(spec, q, R, C, bits[k], calib, &r));
        double eg = fixture_output_sse(w, g, R, C, x, N), eq = fixture_output_sse(w, q, R, C, x, N);
        print_message("width %d %s: output SSE gptq %.4g, rtn %.4g (ratio %.3f)\n", C, opts[k], eg,
                      eq, eg / eq);
        assert_true(eg < 0.8 * eq);
        /* The reports' output errors are their square roots relative to the output energy. */
        float *zero = calloc((size_t)(R * C), sizeof *zero);
        double energy = fixture_output_sse(zero, w, R, C, x, N);
        assert_near(r.rows[0].output_error, sqrt(eg / energy), 1e-6 * sqrt(eg / energy));
        assert_near(r.rows[1].output_error, sqrt(eq / energy), 1e-6 * sqrt(eq / energy));
        assert_true(r.rows[0].output_error < r.rows[1].output_error);
        /* Same grid, same bytes. */
        assert_int_equal(r.rows[0].bytes_after, r.rows[1].bytes_after);
        assert_int_equal(r.rows[0].params_after, R * C);
        cce_report_clear(&r);
        cce_calib_free(calib);
        free(zero);
        free(x);
        free(w);
        free(g);
        free(q);
    }
    gsl_rng_free(rng);
}

/* The blocked sweep (lazy batch updates through GEMM) agrees with the textbook loop that updates
 * every later column after each column. */
static void test_blocked_matches_plain(void **state) {
    (void)state;
    enum { R = 12, C = 300, N = 400 };
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 4);
    double *x = correlated_inputs(rng, N, C);
    double *outer = calloc(C * C, sizeof *outer);
    for (int t = 0; t < N; t++)
        for (int i = 0; i < C; i++)
            for (int j = 0; j < C; j++) outer[i * C + j] += x[t * C + i] * x[t * C + j];
    cce_obs_hinv *h;
    assert_cce_ok(cce_obs_hinv_new(outer, C, N, 0.01, "test", &h));
    float *w = fixture_random_weights(rng, R * C, 0.1);
    float *fast = malloc(R * C * sizeof *fast);
    memcpy(fast, w, R * C * sizeof *fast);
    cce_quant_spec q = {.bits = 4, .symmetric = 0, .granularity = CCE_QUANT_CHANNEL};
    cce_obs_options o = {.quant = &q};
    assert_cce_ok(cce_obs_sweep(h, &o, fast, R, C, "test", NULL, NULL));
    /* The plain loop, in double, with the same grid per row. */
    double *wd = malloc(R * C * sizeof *wd);
    int mismatches = 0;
    for (int r = 0; r < R; r++) {
        float lo, hi;
        cce_quant_group g;
        assert_cce_ok(cce_quant_range(w + r * C, NULL, C, "row", &lo, &hi));
        assert_cce_ok(cce_quant_group_params(4, 0, lo, hi, "row", &g));
        for (int c = 0; c < C; c++) wd[r * C + c] = w[r * C + c];
        for (int c = 0; c < C; c++) {
            double v = wd[r * C + c];
            double qv = cce_quant_value(&g, cce_quant_code(&g, (float)v));
            double e = (v - qv) / h->u[c * C + c];
            for (int j = c + 1; j < C; j++) wd[r * C + j] -= e * h->u[c * C + j];
            wd[r * C + c] = qv;
        }
        for (int c = 0; c < C; c++) mismatches += (float)wd[r * C + c] != fast[r * C + c];
    }
    print_message("blocked vs plain: %d of %d weights differ\n", mismatches, R * C);
    assert_true(mismatches <= R * C / 200); /* only rounding ties may flip */
    cce_obs_hinv_free(h);
    free(outer);
    free(x);
    free(w);
    free(fast);
    free(wd);
    gsl_rng_free(rng);
}

/* U is upper triangular and U^T U is the inverse of the damped H = 2 S / n, dead inputs set to 1
 * on the diagonal before damping. */
static void test_inverse_hessian(void **state) {
    (void)state;
    enum { C = 37, N = 90 };
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 12);
    double *x = correlated_inputs(rng, N, C);
    for (int t = 0; t < N; t++) x[t * C + 5] = 0;
    double *s = calloc(C * C, sizeof *s), *hm = malloc(C * C * sizeof *hm);
    for (int t = 0; t < N; t++)
        for (int i = 0; i < C; i++)
            for (int j = 0; j < C; j++) s[i * C + j] += x[t * C + i] * x[t * C + j];
    const double damp = 0.05;
    cce_obs_hinv *h;
    assert_cce_ok(cce_obs_hinv_new(s, C, N, damp, "test", &h));
    assert_int_equal(h->n_dead, 1);
    assert_int_equal(h->dead[5], 1);
    double mean = 0;
    for (int i = 0; i < C * C; i++) hm[i] = 2.0 * s[i] / N;
    hm[5 * C + 5] = 1;
    for (int i = 0; i < C; i++) mean += hm[i * C + i] / C;
    for (int i = 0; i < C; i++) hm[i * C + i] += damp * mean;
    double worst = 0;
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) {
            if (j < i) assert_true(h->u[i * C + j] == 0);
            double v = 0; /* (U^T U H)_ij */
            for (int k = 0; k < C; k++) {
                double uu = 0;
                for (int m = 0; m < C; m++) uu += h->u[m * C + i] * h->u[m * C + k];
                v += uu * hm[k * C + j];
            }
            double e = fabs(v - (i == j));
            worst = e > worst ? e : worst;
        }
    assert_true(worst < 1e-9);
    for (int i = 0; i < C; i++) assert_true(h->u[i * C + i] > 0);
    cce_obs_hinv_free(h);
    free(s);
    free(hm);
    free(x);
    gsl_rng_free(rng);
}

/* The encoding a sweep fills decodes to exactly the weights it left. */
static void test_sweep_encoding(void **state) {
    (void)state;
    enum { R = 10, C = 150, N = 300 };
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 8);
    double *x = correlated_inputs(rng, N, C);
    double *outer = calloc(C * C, sizeof *outer);
    for (int t = 0; t < N; t++)
        for (int i = 0; i < C; i++)
            for (int j = 0; j < C; j++) outer[i * C + j] += x[t * C + i] * x[t * C + j];
    cce_obs_hinv *h;
    assert_cce_ok(cce_obs_hinv_new(outer, C, N, 0.01, "test", &h));
    float *w = fixture_random_weights(rng, R * C, 0.1), *d = malloc(R * C * sizeof *d);
    for (int i = 0; i < R * C; i += 7) w[i] = 0; /* earlier zeros */
    const cce_quant_spec specs[] = {
        {.bits = 3, .symmetric = 0, .granularity = CCE_QUANT_GROUP, .group = 64},
        {.bits = 5, .symmetric = 1, .granularity = CCE_QUANT_TENSOR},
        {.bits = 4, .symmetric = 0, .granularity = CCE_QUANT_CHANNEL}};
    for (int k = 0; k < 3; k++) {
        cce_obs_options o = {.quant = &specs[k], .ratio = k == 2 ? 0.5 : 0};
        cce_quant_encoding *e;
        assert_cce_ok(cce_quant_encoding_new(&specs[k], R, C, &e));
        float *v = malloc(R * C * sizeof *v);
        memcpy(v, w, R * C * sizeof *v);
        int64_t pruned = -1;
        assert_cce_ok(cce_obs_sweep(h, &o, v, R, C, "test", e, &pruned));
        assert_cce_ok(cce_quant_decode(e, d));
        for (int i = 0; i < R * C; i++) {
            if (d[i] != v[i]) fail_msg("spec %d weight %d: decoded %g, swept %g", k, i, d[i], v[i]);
            if (w[i] == 0 && v[i] != 0) fail_msg("spec %d: earlier zero %d became %g", k, i, v[i]);
        }
        int zeros_before = (R * C + 6) / 7;
        assert_int_equal(pruned, k == 2 ? R * C / 2 : zeros_before);
        cce_quant_encoding_free(e);
        free(v);
    }
    cce_obs_hinv_free(h);
    free(outer);
    free(x);
    free(w);
    free(d);
    gsl_rng_free(rng);
}

/* An input that is zero on every token: its weights go to 0, the rest is finite and noted. */
static void test_dead_inputs(void **state) {
    (void)state;
    enum { R = 8, C = 40, N = 200 };
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 2);
    double *x = correlated_inputs(rng, N, C);
    for (int t = 0; t < N; t++) x[t * C + 7] = x[t * C + 30] = 0;
    cce_calib *calib = calib_of(x, N, C);
    float *w = fixture_random_weights(rng, R * C, 0.1);
    float *g = malloc(R * C * sizeof *g);
    memcpy(g, w, R * C * sizeof *g);
    cce_report r;
    cce_report_init(&r);
    assert_cce_ok(apply_one("gptq:bits=4", g, R, C, 4, calib, &r));
    for (int o = 0; o < R; o++) {
        assert_true(g[o * C + 7] == 0 && g[o * C + 30] == 0);
        for (int c = 0; c < C; c++) assert_true(isfinite(g[o * C + c]));
    }
    assert_string_equal(r.rows[0].note, "2 dead inputs zeroed");
    print_message("dead inputs: output error %.4f\n", r.rows[0].output_error);
    assert_true(r.rows[0].output_error < 0.2);
    cce_report_clear(&r);
    cce_calib_free(calib);
    free(x);
    free(w);
    free(g);
    gsl_rng_free(rng);
}

/* q, k and v share one input: a job of three gives what three separate jobs give. */
static void test_shared_hessian(void **state) {
    (void)state;
    enum { R = 6, C = 48, N = 256 };
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 6);
    double *x = correlated_inputs(rng, N, C);
    cce_calib *calib = calib_of(x, N, C);
    const char *names[3] = {"layers.0.self_attn.q_proj.weight", "layers.0.self_attn.k_proj.weight",
                            "layers.0.self_attn.v_proj.weight"};
    float *joint[3], *alone[3];
    cce_report r;
    cce_report_init(&r);
    for (int i = 0; i < 3; i++) {
        joint[i] = fixture_random_weights(rng, R * C, 0.1);
        alone[i] = malloc(R * C * sizeof(float));
        memcpy(alone[i], joint[i], R * C * sizeof(float));
        assert_cce_ok(apply_job("gptq:bits=3", &names[i], &alone[i], 1, R, C, 3, calib, &r));
    }
    assert_cce_ok(apply_job("gptq:bits=3", names, joint, 3, R, C, 3, calib, &r));
    assert_int_equal(r.n, 6);
    for (int i = 0; i < 3; i++) {
        assert_memory_equal(joint[i], alone[i], R * C * sizeof(float));
        assert_string_equal(r.rows[3 + i].tensor, names[i]);
        free(joint[i]);
        free(alone[i]);
    }
    cce_report_clear(&r);
    cce_calib_free(calib);
    free(x);
    gsl_rng_free(rng);
}

static void test_bad_input(void **state) {
    (void)state;
    fixture_expect_parse_error("gptq:bits=0", CCE_ERR_RANGE, "bits = 0 is outside [2, 8]");
    fixture_expect_parse_error("gptq:bits=9", CCE_ERR_RANGE, "bits = 9 is outside [2, 8]");
    fixture_expect_parse_error("gptq:group=0", CCE_ERR_RANGE, "group = 0 is outside");
    fixture_expect_parse_error("gptq:damp=-0.1", CCE_ERR_RANGE, "damp");
    fixture_expect_parse_error("gptq:damp=2", CCE_ERR_RANGE, "damp");
    const cce_strategy *s;
    assert_cce_ok(cce_strategy_find("gptq", &s));
    assert_int_equal(s->needs, CCE_NEEDS_CALIBRATION | CCE_NEEDS_SEQUENTIAL);

    enum { R = 3, C = 8, N = 16 };
    float w[R * C], v[R * C];
    for (int i = 0; i < R * C; i++) w[i] = 0.1f * (float)(i % 5) - 0.2f;
    cce_report r;
    cce_report_init(&r);
    memcpy(v, w, sizeof v);
    /* No calibration at all. */
    assert_int_equal(apply_one("gptq", v, R, C, 4, NULL, &r), CCE_ERR_STATE);
    assert_non_null(strstr(cce_error_detail(), "calibration"));
    /* Statistics without second moments. */
    double sum[C] = {0}, sq[C], outer[C * C];
    for (int i = 0; i < C; i++) sq[i] = N;
    cce_calib *calib;
    assert_cce_ok(cce_calib_new(1, &calib));
    assert_cce_ok(cce_calib_set_input(calib, 0, CCE_SITE_FFN_IN, C, N, sum, sq, NULL));
    assert_int_equal(apply_one("gptq", v, R, C, 4, calib, &r), CCE_ERR_STATE);
    assert_non_null(strstr(cce_error_detail(), UP));
    assert_non_null(strstr(cce_error_detail(), "second moment"));
    /* A width that is not the tensor's. */
    assert_cce_ok(cce_calib_set_input(calib, 0, CCE_SITE_FFN_IN, 4, N, sum, sq, outer));
    assert_int_equal(apply_one("gptq", v, R, C, 4, calib, &r), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "width 4"));
    /* A corrupt second moment: negative definite, then NaN. */
    memset(outer, 0, sizeof outer);
    for (int i = 0; i < C; i++) outer[i * C + i] = -N;
    assert_cce_ok(cce_calib_set_input(calib, 0, CCE_SITE_FFN_IN, C, N, sum, sq, outer));
    assert_int_equal(apply_one("gptq", v, R, C, 4, calib, &r), CCE_ERR_NUMERIC);
    assert_non_null(strstr(cce_error_detail(), "positive definite"));
    assert_non_null(strstr(cce_error_detail(), UP));
    outer[3] = NAN;
    assert_cce_ok(cce_calib_set_input(calib, 0, CCE_SITE_FFN_IN, C, N, sum, sq, outer));
    assert_int_equal(apply_one("gptq", v, R, C, 4, calib, &r), CCE_ERR_NUMERIC);
    assert_non_null(strstr(cce_error_detail(), "NaN"));
    /* A plan target that is not a bit width. */
    for (int i = 0; i < C; i++) outer[i * C + i] = N;
    outer[3] = 0;
    assert_cce_ok(cce_calib_set_input(calib, 0, CCE_SITE_FFN_IN, C, N, sum, sq, outer));
    assert_int_equal(apply_one("gptq", v, R, C, 0.5, calib, &r), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "bits = 0.5"));
    assert_memory_equal(v, w, sizeof v); /* nothing changed by any failure */
    assert_int_equal(r.n, 0);
    assert_cce_ok(apply_one("gptq", v, R, C, 4, calib, &r));
    assert_int_equal(r.n, 1);
    cce_report_clear(&r);
    cce_calib_free(calib);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity_equals_rtn),   cmocka_unit_test(test_beats_rtn),
        cmocka_unit_test(test_blocked_matches_plain), cmocka_unit_test(test_inverse_hessian),
        cmocka_unit_test(test_sweep_encoding),        cmocka_unit_test(test_dead_inputs),
        cmocka_unit_test(test_shared_hessian),        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
