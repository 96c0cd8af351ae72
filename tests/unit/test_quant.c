/* The shared quantization grid (framework/quant.h) on hand-built values whose answers are known:
 * fp16 scales, codes and dequantized values for symmetric and asymmetric grids, per tensor,
 * channel and group (with a ragged last group), packing at every width, byte counting, encodings
 * that decode to exactly the in-place result, zero groups, and bad input. */
#include <gsl/gsl_rng.h>
#include <gsl/gsl_randist.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "test_support.h"

#define assert_near(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) <= (tol))

static void expect_floats(const float *got, const float *want, int n) {
    for (int i = 0; i < n; i++)
        if (got[i] != want[i]) fail_msg("value %d: got %.9g, expected %.9g", i, got[i], want[i]);
}

static void expect_codes(const uint8_t *got, const int *want, int n) {
    for (int i = 0; i < n; i++)
        if (got[i] != want[i]) fail_msg("code %d: got %d, expected %d", i, got[i], want[i]);
}

static void test_half(void **state) {
    (void)state;
    assert_int_equal(cce_quant_half_from_float(1.0f), 0x3c00);
    assert_int_equal(cce_quant_half_from_float(-2.0f), 0xc000);
    assert_int_equal(cce_quant_half_from_float(0.1f), 0x2e66);
    assert_int_equal(cce_quant_half_from_float(65504.0f), 0x7bff);
    assert_int_equal(cce_quant_half_from_float(65519.0f), 0x7bff);
    assert_int_equal(cce_quant_half_from_float(65520.0f), 0x7c00); /* ties to even: infinity */
    assert_int_equal(cce_quant_half_from_float(0x1p-24f), 0x0001); /* smallest subnormal */
    assert_int_equal(cce_quant_half_from_float(0x1p-25f), 0x0000); /* tie to even: zero */
    assert_int_equal(cce_quant_half_from_float(0x1.8p-25f), 0x0001);
    assert_int_equal(cce_quant_half_from_float(0x1p-14f), 0x0400);        /* smallest normal */
    assert_int_equal(cce_quant_half_from_float(1.0f + 0x1p-11f), 0x3c00); /* tie: even */
    assert_int_equal(cce_quant_half_from_float(1.0f + 0x3p-11f), 0x3c02); /* tie: even (up) */
    assert_int_equal(cce_quant_half_from_float(0x1.ffep-15f), 0x0400);    /* rounds up to normal */
    assert_true(cce_quant_half_to_float(0x3555) == 0.333251953125f);
    /* Every finite half survives the round trip, and each float rounds to the nearest half. */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00) continue;
        float f = cce_quant_half_to_float((uint16_t)h);
        if (cce_quant_half_from_float(f) != h && !(f == 0 && (h & 0x7fff) == 0))
            fail_msg("half 0x%04x -> %g -> 0x%04x", h, f, cce_quant_half_from_float(f));
    }
    assert_true(isinf(cce_quant_half_to_float(0x7c00)));
    assert_true(isnan(cce_quant_half_to_float(cce_quant_half_from_float(NAN))));
}

/* 4-bit symmetric: scale = 0.875 / 7 = 0.125 (exact in fp16), codes offset by 8, ties to even. */
static void test_symmetric_codes(void **state) {
    (void)state;
    float w[8] = {0.875f, -0.5f, 0.3f, 0.0625f, -0.1875f, 0.0f, -0.875f, 0.4375f};
    float lo, hi;
    assert_cce_ok(cce_quant_range(w, NULL, 8, "w", &lo, &hi));
    assert_true(lo == -0.875f && hi == 0.875f);
    cce_quant_group g;
    assert_cce_ok(cce_quant_group_params(4, 1, lo, hi, "w", &g));
    assert_true(g.scale == 0.125f);
    assert_true(g.inv_scale == 8.0f);
    assert_int_equal(g.zero, 8);
    assert_int_equal(g.maxq, 15);
    assert_int_equal(g.scale_h, 0x3000);
    uint8_t codes[8];
    double err2 = cce_quant_row(&g, w, 8, codes);
    static const int want_codes[8] = {15, 4, 10, 8, 6, 8, 1, 12};
    static const float want[8] = {0.875f, -0.5f, 0.25f, 0.0f, -0.25f, 0.0f, -0.875f, 0.5f};
    expect_codes(codes, want_codes, 8);
    expect_floats(w, want, 8);
    double e = 0.05 * 0.05 + 0.0625 * 0.0625 + 0.0625 * 0.0625 + 0.0625 * 0.0625;
    assert_near(err2, e, 1e-7);
    /* 2-bit symmetric has the three levels -s, 0, s. */
    float v[4] = {-1.0f, 0.4f, 0.6f, 1.0f};
    assert_cce_ok(cce_quant_group_params(2, 1, -1.0f, 1.0f, "v", &g));
    assert_true(g.scale == 1.0f);
    assert_int_equal(g.zero, 2);
    cce_quant_row(&g, v, 4, codes);
    static const int want2[4] = {1, 2, 3, 3};
    expect_codes(codes, want2, 4);
}

/* Asymmetric: range widened to hold 0, zero = rint(-lo / scale). */
static void test_asymmetric_codes(void **state) {
    (void)state;
    float w[4] = {-0.5f, 1.0f, 0.2f, 0.7f};
    float lo, hi;
    cce_quant_group g;
    uint8_t codes[4];
    assert_cce_ok(cce_quant_range(w, NULL, 4, "w", &lo, &hi));
    assert_cce_ok(cce_quant_group_params(2, 0, lo, hi, "w", &g)); /* scale 1.5 / 3 */
    assert_true(g.scale == 0.5f);
    assert_int_equal(g.zero, 1);
    cce_quant_row(&g, w, 4, codes);
    static const int want_codes[4] = {0, 3, 1, 2};
    static const float want[4] = {-0.5f, 1.0f, 0.0f, 0.5f};
    expect_codes(codes, want_codes, 4);
    expect_floats(w, want, 4);

    /* All positive: lo is 0, the zero point is code 0, and the fp16 scale is 1/3 rounded. */
    float p[5] = {0.25f, 0.5f, 1.0f, 0.75f, 0.0f};
    assert_cce_ok(cce_quant_range(p, NULL, 5, "p", &lo, &hi));
    assert_true(lo == 0.0f && hi == 1.0f);
    assert_cce_ok(cce_quant_group_params(2, 0, lo, hi, "p", &g));
    assert_int_equal(g.scale_h, 0x3555);
    assert_true(g.scale == 0.333251953125f);
    assert_int_equal(g.zero, 0);
    uint8_t pc[5];
    cce_quant_row(&g, p, 5, pc);
    static const int want_p[5] = {1, 2, 3, 2, 0};
    expect_codes(pc, want_p, 5);
    const float s = 0.333251953125f;
    const float want_pv[5] = {s, 2 * s, 3 * s, 2 * s, 0.0f};
    expect_floats(p, want_pv, 5);

    /* The range may skip weights (a mask): only kept ones count. */
    float m[4] = {5.0f, -1.0f, 2.0f, -9.0f};
    const uint8_t keep[4] = {0, 1, 1, 0};
    assert_cce_ok(cce_quant_range(m, keep, 4, "m", &lo, &hi));
    assert_true(lo == -1.0f && hi == 2.0f);
}

/* A [3, 172] matrix whose every group of 64 has its own largest |w|: the scales tell which
 * weights each group of each granularity covered. */
static void fill_groups(float *w, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) w[r * cols + c] = 0.01f * (float)((r * 7 + c * 3) % 11 - 5);
    for (int r = 0; r < rows; r++)
        for (int g = 0; g * 64 < cols; g++) w[r * cols + g * 64 + 5] = -(float)(1 + r * 3 + g);
}

static void test_granularity(void **state) {
    (void)state;
    enum { R = 3, C = 172 };
    float w[R * C], v[R * C];
    fill_groups(w, R, C);
    struct {
        cce_quant_granularity gran;
        int64_t group;
        int64_t n_groups, per_row, ragged;
    } cases[] = {{CCE_QUANT_TENSOR, 0, 1, 1, 0},
                 {CCE_QUANT_CHANNEL, 0, R, 1, 0},
                 {CCE_QUANT_GROUP, 64, R * 3, 3, 44},
                 {CCE_QUANT_GROUP, 43, R * 4, 4, 0},
                 {CCE_QUANT_GROUP, 500, R, 1, 0}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        cce_quant_spec q = {
            .bits = 3, .symmetric = 1, .granularity = cases[k].gran, .group = cases[k].group};
        assert_int_equal(cce_quant_n_groups(&q, R, C), cases[k].n_groups);
        assert_int_equal(cce_quant_groups_per_row(&q, C), cases[k].per_row);
        assert_int_equal(cce_quant_ragged_last(&q, C), cases[k].ragged);
        cce_quant_encoding *e;
        assert_cce_ok(cce_quant_encoding_new(&q, R, C, &e));
        memcpy(v, w, sizeof v);
        assert_cce_ok(cce_quant_rtn(&q, v, R, C, "t", e, NULL));
        int64_t glen = cases[k].gran == CCE_QUANT_GROUP ? cases[k].group : C;
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) {
                /* The group's largest |w|, over the weights it covers. */
                float amax = 0;
                for (int rr = 0; rr < R; rr++) {
                    if (cases[k].gran != CCE_QUANT_TENSOR && rr != r) continue;
                    for (int cc = 0; cc < C; cc++) {
                        if (cases[k].gran != CCE_QUANT_TENSOR && cc / glen != c / glen) continue;
                        float a = fabsf(w[rr * C + cc]);
                        amax = a > amax ? a : amax;
                    }
                }
                int64_t gi =
                    cases[k].gran == CCE_QUANT_TENSOR ? 0 : r * cases[k].per_row + c / glen;
                cce_quant_group g = cce_quant_encoding_group(e, gi);
                float scale = cce_quant_half_to_float(cce_quant_half_from_float(amax / 3.0f));
                if (g.scale != scale)
                    fail_msg("case %zu row %d col %d: scale %g, expected %g", k, r, c, g.scale,
                             scale);
                assert_int_equal(g.zero, 4);
                float want = (float)(cce_quant_code(&g, w[r * C + c]) - 4) * scale;
                if (v[r * C + c] != want)
                    fail_msg("case %zu [%d, %d]: %g, expected %g", k, r, c, v[r * C + c], want);
            }
        /* The ragged last group of width 172 in 64s: its own scale from columns 128..171. */
        if (cases[k].ragged) {
            cce_quant_group g = cce_quant_encoding_group(e, 1 * 3 + 2);
            assert_true(g.scale == cce_quant_half_to_float(cce_quant_half_from_float(6.0f / 3)));
        }
        float d[R * C];
        assert_cce_ok(cce_quant_decode(e, d));
        expect_floats(d, v, R * C);
        cce_quant_encoding_free(e);
    }
}

static void test_pack_every_width(void **state) {
    (void)state;
    /* 3 bits, LSB first: the stream is sum code_i << 3i = 0x1F58D1. */
    const uint8_t c3[8] = {1, 2, 3, 4, 5, 6, 7, 0};
    uint8_t p3[3];
    cce_quant_pack(c3, 8, 3, p3);
    assert_int_equal(p3[0], 0xD1);
    assert_int_equal(p3[1], 0x58);
    assert_int_equal(p3[2], 0x1F);
    /* 5 bits: codes 31, 1 -> bits 0..4 all set, bit 5 set: 0x3F, then 0. */
    const uint8_t c5[2] = {31, 1};
    uint8_t p5[2];
    cce_quant_pack(c5, 2, 5, p5);
    assert_int_equal(p5[0], 0x3F);
    assert_int_equal(p5[1], 0x00);

    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 7);
    const int64_t sizes[] = {1, 7, 8, 9, 1237, 200003}; /* the last spans parallel chunks */
    for (int bits = 2; bits <= 8; bits++) {
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            int64_t n = sizes[k], nb = cce_quant_packed_bytes(n, bits);
            assert_int_equal(nb, (n * bits + 7) / 8);
            uint8_t *codes = malloc((size_t)n), *back = malloc((size_t)n);
            uint8_t *packed = malloc((size_t)nb + 1);
            for (int64_t i = 0; i < n; i++)
                codes[i] = (uint8_t)gsl_rng_uniform_int(rng, 1ul << bits);
            packed[nb] = 0xA5; /* guard byte */
            cce_quant_pack(codes, n, bits, packed);
            assert_int_equal(packed[nb], 0xA5);
            if ((n * bits) % 8) /* unused bits of the last byte are 0 */
                assert_int_equal(packed[nb - 1] >> ((n * bits) % 8), 0);
            cce_quant_unpack(packed, n, bits, back);
            assert_memory_equal(codes, back, (size_t)n);
            /* Spot check the bit order on a few values. */
            for (int64_t i = 0; i < n; i += n / 5 + 1) {
                int v = 0;
                for (int b = 0; b < bits; b++) {
                    int64_t bit = i * bits + b;
                    v |= ((packed[bit / 8] >> (bit % 8)) & 1) << b;
                }
                assert_int_equal(v, codes[i]);
            }
            free(codes);
            free(back);
            free(packed);
        }
    }
    gsl_rng_free(rng);
}

static void test_bytes(void **state) {
    (void)state;
    cce_quant_spec g64a = {.bits = 4, .symmetric = 0, .granularity = CCE_QUANT_GROUP, .group = 64};
    /* [4, 172] in groups 64, 64, 44: 12 groups; codes 344 B, scales 24 B, zeros ceil(48 / 8). */
    assert_int_equal(cce_quant_encoded_bytes(&g64a, 4, 172, 688, 0), 344 + 24 + 6);
    cce_quant_spec g64s = g64a;
    g64s.symmetric = 1;
    assert_int_equal(cce_quant_encoded_bytes(&g64s, 4, 172, 688, 0), 344 + 24);
    cce_quant_spec t8 = {.bits = 8, .symmetric = 1, .granularity = CCE_QUANT_TENSOR};
    assert_int_equal(cce_quant_encoded_bytes(&t8, 10, 10, 100, 0), 100 + 2);
    cce_quant_spec ch3 = {.bits = 3, .symmetric = 0, .granularity = CCE_QUANT_CHANNEL};
    assert_int_equal(cce_quant_encoded_bytes(&ch3, 5, 9, 45, 0), 17 + 10 + 2); /* 135 bits */
    /* Pruned: kept codes + 1-bit mask when smaller than all codes. */
    cce_quant_spec ch4 = {.bits = 4, .symmetric = 1, .granularity = CCE_QUANT_CHANNEL};
    assert_int_equal(cce_quant_encoded_bytes(&ch4, 4, 172, 300, 0), 150 + 86 + 8);
    assert_int_equal(cce_quant_encoded_bytes(&ch4, 4, 172, 680, 0), 344 + 8); /* dense smaller */
    /* N:M 2:4: 2 index bits per kept value. */
    assert_int_equal(cce_quant_encoded_bytes(&ch4, 4, 172, 344, 4), 172 + 86 + 8);
    /* The encoding's buffers have exactly the counted sizes (dense). */
    cce_quant_encoding *e;
    assert_cce_ok(cce_quant_encoding_new(&g64a, 4, 172, &e));
    int64_t have = cce_quant_packed_bytes(e->rows * e->cols, e->spec.bits) + 2 * e->n_groups +
                   cce_quant_packed_bytes(e->n_groups, e->spec.bits);
    assert_int_equal(have, cce_quant_encoded_bytes(&g64a, 4, 172, 688, 0));
    assert_int_equal(e->n_groups, 12);
    cce_quant_encoding_free(e);
}

/* Encodings decode to exactly what cce_quant_rtn wrote in place, for every width and scheme. */
static void test_encoding_round_trip(void **state) {
    (void)state;
    enum { R = 37, C = 100 };
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 11);
    float w[R * C], v[R * C], d[R * C];
    for (int i = 0; i < R * C; i++) w[i] = (float)gsl_ran_gaussian(rng, 0.05);
    for (int i = 0; i < R * C; i += 9) w[i] = 0; /* pruned weights */
    for (int bits = 2; bits <= 8; bits++)
        for (int sym = 0; sym <= 1; sym++)
            for (int gran = 0; gran < 3; gran++) {
                cce_quant_spec q = {.bits = bits,
                                    .symmetric = sym,
                                    .granularity = (cce_quant_granularity)gran,
                                    .group = 32};
                cce_quant_encoding *e;
                assert_cce_ok(cce_quant_encoding_new(&q, R, C, &e));
                memcpy(v, w, sizeof v);
                double err2 = -1;
                assert_cce_ok(cce_quant_rtn(&q, v, R, C, "t", e, &err2));
                double want = 0;
                for (int i = 0; i < R * C; i++) {
                    want += ((double)v[i] - w[i]) * ((double)v[i] - w[i]);
                    if (w[i] == 0 && v[i] != 0) fail_msg("pruned weight %d became %g", i, v[i]);
                    assert_true(isfinite(v[i]));
                }
                assert_near(err2, want, 1e-9 + 1e-5 * want);
                assert_cce_ok(cce_quant_decode(e, d));
                expect_floats(d, v, R * C);
                cce_quant_encoding_free(e);
            }
    gsl_rng_free(rng);
}

/* All-zero groups get scale 0 (no NaN); a scale that underflows fp16 gives zeros, too. */
static void test_zero_groups(void **state) {
    (void)state;
    float w[2 * 8] = {0};
    w[8] = 1e-12f;
    w[9] = -3e-12f;
    for (int sym = 0; sym <= 1; sym++) {
        cce_quant_spec q = {.bits = 4, .symmetric = sym, .granularity = CCE_QUANT_CHANNEL};
        cce_quant_encoding *e;
        float v[16];
        memcpy(v, w, sizeof v);
        assert_cce_ok(cce_quant_encoding_new(&q, 2, 8, &e));
        assert_cce_ok(cce_quant_rtn(&q, v, 2, 8, "z", e, NULL));
        for (int i = 0; i < 16; i++) assert_true(v[i] == 0.0f);
        for (int i = 0; i < 2; i++) {
            cce_quant_group g = cce_quant_encoding_group(e, i);
            assert_true(g.scale == 0.0f && g.inv_scale == 0.0f);
        }
        cce_quant_encoding_free(e);
    }
}

static void test_bad_input(void **state) {
    (void)state;
    float w[4] = {1, 2, 3, 4};
    cce_quant_spec q = {.bits = 9, .symmetric = 1, .granularity = CCE_QUANT_CHANNEL};
    assert_int_equal(cce_quant_rtn(&q, w, 1, 4, "t", NULL, NULL), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "bits = 9"));
    q.bits = 1;
    assert_int_equal(cce_quant_spec_check(&q, "rtn"), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "bits = 1"));
    q.bits = 4;
    q.granularity = CCE_QUANT_GROUP;
    q.group = 0;
    assert_int_equal(cce_quant_spec_check(&q, "rtn"), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "group = 0"));
    q.group = 2;
    w[2] = NAN;
    assert_int_equal(cce_quant_rtn(&q, w, 1, 4, "layers.0.x", NULL, NULL), CCE_ERR_NUMERIC);
    assert_non_null(strstr(cce_error_detail(), "layers.0.x"));
    w[2] = INFINITY;
    q.granularity = CCE_QUANT_TENSOR;
    assert_int_equal(cce_quant_rtn(&q, w, 1, 4, "layers.0.x", NULL, NULL), CCE_ERR_NUMERIC);
    /* A scale beyond fp16: 2-bit symmetric needs scale = max |w|. */
    float big[2] = {1e6f, -3.0f};
    cce_quant_spec q2 = {.bits = 2, .symmetric = 1, .granularity = CCE_QUANT_CHANNEL};
    assert_int_equal(cce_quant_rtn(&q2, big, 1, 2, "big", NULL, NULL), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "fp16"));
    /* An encoding of another shape is refused. */
    cce_quant_encoding *e;
    assert_cce_ok(cce_quant_encoding_new(&q2, 2, 2, &e));
    float ok[2] = {1, 2};
    assert_int_equal(cce_quant_rtn(&q2, ok, 1, 2, "t", e, NULL), CCE_ERR_ARG);
    cce_quant_encoding_free(e);
    assert_int_equal(cce_quant_encoding_new(&q2, 0, 2, &e), CCE_ERR_ARG);
    assert_null(e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_half),
        cmocka_unit_test(test_symmetric_codes),
        cmocka_unit_test(test_asymmetric_codes),
        cmocka_unit_test(test_granularity),
        cmocka_unit_test(test_pack_every_width),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_encoding_round_trip),
        cmocka_unit_test(test_zero_groups),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
