/* The rtn strategy on hand-built matrices with known answers: codes, scales and dequantized
 * values through the strategy interface (symmetric, asymmetric, tensor/channel/group with a ragged
 * last group), report rows (bytes, bits per weight, note, output error with calibration),
 * composition with pruning (zeros stay zero), per-tensor bit targets, and bad parameters. */
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

#define UP "layers.0.mlp.up_proj.weight"

/* Runs `spec` on one [rows, cols] tensor at plan target `target` (with calib, may be NULL); on
 * success copies the result back into w. Rows are appended to r. */
static cce_status apply_spec(const char *spec, float *w, int64_t rows, int64_t cols, double target,
                             const cce_calib *calib, cce_report *r) {
    const char *names[1] = {UP};
    return fixture_apply_job(spec, 0, names, &w, 1, rows, cols, target, calib, 0, r);
}

static void expect_floats(const float *got, const float *want, int n) {
    for (int i = 0; i < n; i++)
        if (got[i] != want[i]) fail_msg("value %d: got %.9g, expected %.9g", i, got[i], want[i]);
}

/* [2, 8]: row 0 has max |w| 0.875 (4-bit symmetric scale 0.125), row 1 max 1.75 (scale 0.25). */
static const float M2x8[16] = {
    0.875f, -0.5f, 0.3f, 0.0625f, -0.1875f, 0.0f, -0.875f, 0.4375f, /* */
    1.75f,  -1.0f, 0.6f, 0.125f,  -0.375f,  0.0f, 0.2f,    -0.05f,
};

static void test_symmetric_channel(void **state) {
    (void)state;
    float w[16];
    memcpy(w, M2x8, sizeof w);
    cce_report r;
    cce_report_init(&r);
    assert_cce_ok(
        apply_spec("rtn:bits=4,symmetric=true,granularity=channel", w, 2, 8, 4, NULL, &r));
    static const float want[16] = {
        0.875f, -0.5f, 0.25f, 0.0f, -0.25f, 0.0f, -0.875f, 0.5f, /* ties to even */
        1.75f,  -1.0f, 0.5f,  0.0f, -0.5f,  0.0f, 0.25f,   0.0f,
    };
    expect_floats(w, want, 16);
    assert_int_equal(r.n, 1);
    const cce_report_row *row = &r.rows[0];
    assert_string_equal(row->strategy, "rtn");
    assert_string_equal(row->tensor, UP);
    assert_int_equal(row->params_before, 16);
    assert_int_equal(row->params_after, 14); /* two zeros: counted as pruned */
    assert_int_equal(row->bytes_before, 64);
    /* 14 kept codes + mask = 7 + 2 bytes is not smaller than 8 bytes of codes; 2 fp16 scales. */
    assert_int_equal(row->bytes_after, 8 + 4);
    assert_near(row->bits_per_weight, 8.0 * 12 / 16, 1e-12);
    assert_near(row->sparsity, 5.0 / 16, 1e-12); /* 0.0625, 0.125, -0.05 round to 0 */
    double e2 = 0, n2 = 0;
    for (int i = 0; i < 16; i++) {
        e2 += ((double)M2x8[i] - want[i]) * ((double)M2x8[i] - want[i]);
        n2 += (double)M2x8[i] * M2x8[i];
    }
    assert_near(row->rel_fro_error, sqrt(e2 / n2), 1e-7);
    assert_true(isnan(row->output_error)); /* no calibration */
    assert_string_equal(row->note, "");
    assert_int_equal(row->rank, -1);
    cce_report_clear(&r);
}

static void test_asymmetric_tensor(void **state) {
    (void)state;
    /* One scale for the whole tensor: range [-1, 2], 2 bits: scale 1, zero 1. */
    float w[6] = {-1.0f, 2.0f, 0.4f, 0.6f, -0.5f, 1.5f};
    cce_report r;
    cce_report_init(&r);
    assert_cce_ok(apply_spec("rtn:granularity=tensor", w, 2, 3, 2, NULL, &r));
    static const float want[6] = {-1.0f, 2.0f, 0.0f, 1.0f, -0.0f, 2.0f};
    expect_floats(w, want, 6); /* -0.5 -> rint(-0.5) = -0 -> 0; 1.5 -> 2 */
    /* 6 codes of 2 bits (2 bytes), one fp16 scale, one zero point packed at 2 bits (1 byte). */
    assert_int_equal(r.rows[0].bytes_after, 2 + 2 + 1);
    cce_report_clear(&r);
}

/* Width 172 in groups of 64: 64, 64, 44; the report notes the ragged last group. */
static void test_group_ragged(void **state) {
    (void)state;
    enum { R = 4, C = 172 };
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 3);
    float w[R * C], v[R * C];
    for (int i = 0; i < R * C; i++) w[i] = (float)gsl_ran_gaussian(rng, 0.1);
    w[1 * C + 150] = 3.0f; /* only the last group of row 1 has a large weight */
    memcpy(v, w, sizeof v);
    cce_report r;
    cce_report_init(&r);
    assert_cce_ok(apply_spec("rtn:bits=3,group=64", v, R, C, 3, NULL, &r));
    const cce_report_row *row = &r.rows[0];
    assert_string_equal(row->note, "ragged last group 44 of 64");
    assert_int_equal(row->bytes_after, (R * C * 3 + 7) / 8 + 2 * 12 + (12 * 3 + 7) / 8);
    assert_near(row->bits_per_weight, 8.0 * (double)row->bytes_after / (R * C), 1e-12);
    /* Each group quantized on its own: redo it group by group with the grid functions. */
    for (int rr = 0; rr < R; rr++)
        for (int g0 = 0; g0 < C; g0 += 64) {
            int len = C - g0 < 64 ? C - g0 : 64;
            float seg[64], lo, hi;
            memcpy(seg, w + rr * C + g0, (size_t)len * sizeof *seg);
            cce_quant_group g;
            assert_cce_ok(cce_quant_range(seg, NULL, len, "seg", &lo, &hi));
            assert_cce_ok(cce_quant_group_params(3, 0, lo, hi, "seg", &g));
            cce_quant_row(&g, seg, len, NULL);
            expect_floats(v + rr * C + g0, seg, len);
        }
    /* The large weight only coarsens its own group: row 1's first groups keep a fine grid. */
    double err_first = 0, err_last = 0;
    for (int c = 0; c < 64; c++) err_first += fabs((double)v[C + c] - w[C + c]);
    for (int c = 128; c < C; c++) err_last += fabs((double)v[C + c] - w[C + c]);
    assert_true(err_last / 44 > 3 * err_first / 64);
    cce_report_clear(&r);
    gsl_rng_free(rng);
}

/* Magnitude 50% then 4-bit RTN: zeros stay exactly zero and the codes are charged sparse. */
static void test_after_pruning(void **state) {
    (void)state;
    enum { R = 8, C = 64 };
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 5);
    float w[R * C], pruned[R * C];
    for (int i = 0; i < R * C; i++) w[i] = (float)gsl_ran_gaussian(rng, 0.1) + 0.05f;
    cce_report r;
    cce_report_init(&r);
    assert_cce_ok(apply_spec("magnitude:ratio=0.75", w, R, C, 0.75, NULL, &r));
    memcpy(pruned, w, sizeof w);
    assert_cce_ok(apply_spec("rtn:bits=4,granularity=channel", w, R, C, 4, NULL, &r));
    int zeros = 0;
    for (int i = 0; i < R * C; i++) {
        if (pruned[i] == 0.0f && w[i] != 0.0f) fail_msg("pruned weight %d became %g", i, w[i]);
        zeros += pruned[i] == 0.0f;
    }
    assert_int_equal(zeros, R * C * 3 / 4);
    const cce_report_row *row = &r.rows[1];
    assert_int_equal(row->params_after, R * C / 4);
    /* 128 kept codes (64 B) + 512-bit mask (64 B) < 256 B of dense codes; 8 scales, 8 zeros. */
    assert_int_equal(row->bytes_after, 64 + 64 + 16 + 4);
    /* The scales come from the kept weights only: equal to quantizing each row's kept values. */
    for (int rr = 0; rr < R; rr++) {
        float kept[C], lo, hi;
        int n = 0;
        for (int c = 0; c < C; c++)
            if (pruned[rr * C + c] != 0.0f) kept[n++] = pruned[rr * C + c];
        cce_quant_group g;
        assert_cce_ok(cce_quant_range(kept, NULL, n, "kept", &lo, &hi));
        assert_cce_ok(cce_quant_group_params(4, 0, lo, hi, "kept", &g));
        cce_quant_row(&g, kept, n, NULL);
        for (int c = 0, k = 0; c < C; c++)
            if (pruned[rr * C + c] != 0.0f) assert_true(w[rr * C + c] == kept[k++]);
    }
    cce_report_clear(&r);
    gsl_rng_free(rng);
}

/* The bit width comes from the job (the plan), not from the parameter. */
static void test_target_bits(void **state) {
    (void)state;
    float w[16];
    memcpy(w, M2x8, sizeof w);
    cce_report r;
    cce_report_init(&r);
    assert_cce_ok(apply_spec("rtn:bits=8,symmetric=true", w, 2, 8, 2, NULL, &r));
    /* 2 bits symmetric: levels -s, 0, s with s = max |w| per row. */
    for (int i = 0; i < 16; i++) {
        float s = i < 8 ? 0.875f : 1.75f;
        assert_true(w[i] == 0.0f || w[i] == s || w[i] == -s);
    }
    assert_int_equal(r.rows[0].bytes_after, 4 + 4);
    float v[16];
    memcpy(v, M2x8, sizeof v);
    assert_int_equal(apply_spec("rtn", v, 2, 8, 2.5, NULL, &r), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), UP));
    assert_int_equal(apply_spec("rtn", v, 2, 8, 9, NULL, &r), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "bits = 9"));
    expect_floats(v, M2x8, 16); /* untouched */
    cce_report_clear(&r);
}

/* With second moments the report gives sqrt(tr(dW S dW^T) / tr(W S W^T)). */
static void test_output_error(void **state) {
    (void)state;
    enum { R = 6, C = 16, N = 64 };
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 9);
    static double x[N * C], sum[C], sq[C], outer[C * C];
    for (int i = 0; i < N * C; i++) x[i] = gsl_ran_gaussian(rng, 1.0) + (i % C == 3 ? 2.0 : 0.0);
    for (int t = 0; t < N; t++)
        for (int i = 0; i < C; i++) {
            sum[i] += x[t * C + i];
            sq[i] += x[t * C + i] * x[t * C + i];
            for (int j = 0; j < C; j++) outer[i * C + j] += x[t * C + i] * x[t * C + j];
        }
    cce_calib *calib;
    assert_cce_ok(cce_calib_new(1, &calib));
    assert_cce_ok(cce_calib_set_input(calib, 0, CCE_SITE_FFN_IN, C, N, sum, sq, outer));
    float w[R * C], v[R * C];
    for (int i = 0; i < R * C; i++) w[i] = (float)gsl_ran_gaussian(rng, 0.2);
    memcpy(v, w, sizeof v);
    cce_report r;
    cce_report_init(&r);
    assert_cce_ok(apply_spec("rtn:bits=3", v, R, C, 3, calib, &r));
    double num = 0, den = 0; /* sum over tokens of ||dW x||^2 and ||W x||^2 */
    for (int t = 0; t < N; t++)
        for (int o = 0; o < R; o++) {
            double a = 0, b = 0;
            for (int i = 0; i < C; i++) {
                a += ((double)v[o * C + i] - w[o * C + i]) * x[t * C + i];
                b += (double)w[o * C + i] * x[t * C + i];
            }
            num += a * a;
            den += b * b;
        }
    assert_true(num > 0);
    assert_near(r.rows[0].output_error, sqrt(num / den), 1e-9 * sqrt(num / den));
    cce_report_clear(&r);
    cce_calib_free(calib);
    gsl_rng_free(rng);
}

/* The recorded parameters (cce_params_format) parse back to the same quantizer. */
static void test_format_round_trip(void **state) {
    (void)state;
    const char *specs[] = {"rtn:group=64", "rtn:granularity=group", "rtn",
                           "rtn:bits=3,symmetric=true,granularity=tensor"};
    enum { R = 3, C = 150 };
    float w[R * C], a[R * C], b[R * C];
    for (int i = 0; i < R * C; i++) w[i] = sinf(0.37f * (float)i) * (1.0f + (float)(i % 7));
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        const cce_strategy *s;
        cce_params *p;
        char *text, again[256];
        assert_cce_ok(cce_strategy_parse_spec(specs[k], &s, &p));
        assert_cce_ok(cce_params_format(p, &text));
        snprintf(again, sizeof again, "rtn:%s", text);
        free(text);
        cce_params_free(p);
        cce_report r;
        cce_report_init(&r);
        memcpy(a, w, sizeof a);
        memcpy(b, w, sizeof b);
        assert_cce_ok(apply_spec(specs[k], a, R, C, 4, NULL, &r));
        assert_cce_ok(apply_spec(again, b, R, C, 4, NULL, &r));
        expect_floats(a, b, R * C);
        assert_int_equal(r.rows[0].bytes_after, r.rows[1].bytes_after);
        cce_report_clear(&r);
    }
}

static void test_bad_params(void **state) {
    (void)state;
    fixture_expect_parse_error("rtn:bits=0", CCE_ERR_RANGE, "bits = 0 is outside [2, 8]");
    fixture_expect_parse_error("rtn:bits=9", CCE_ERR_RANGE, "bits = 9 is outside [2, 8]");
    fixture_expect_parse_error("rtn:group=0", CCE_ERR_RANGE, "group = 0 is outside");
    fixture_expect_parse_error("rtn:granularity=row", CCE_ERR_RANGE, "granularity");
    fixture_expect_parse_error("rtn:granularity=channel,group=64", CCE_ERR_ARG, "group = 64");
    fixture_expect_parse_error("rtn:symmetric=maybe", CCE_ERR_ARG, "symmetric");
    /* A NaN weight is refused before anything changes. */
    float w[4] = {1, NAN, 2, 3};
    cce_report r;
    cce_report_init(&r);
    assert_int_equal(apply_spec("rtn", w, 1, 4, 8, NULL, &r), CCE_ERR_NUMERIC);
    assert_non_null(strstr(cce_error_detail(), UP));
    assert_int_equal(r.n, 0);
    cce_report_clear(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_symmetric_channel), cmocka_unit_test(test_asymmetric_tensor),
        cmocka_unit_test(test_group_ragged),      cmocka_unit_test(test_after_pruning),
        cmocka_unit_test(test_target_bits),       cmocka_unit_test(test_output_error),
        cmocka_unit_test(test_format_round_trip), cmocka_unit_test(test_bad_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
