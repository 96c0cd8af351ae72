/* safetensors reader and writer: F32/F16/BF16 round trips, the half-precision conversions, every
 * malformed-header check with its message, and a bounded mutation fuzz of the header parser. */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

static const char *dir;

static int setup(void **state) {
    (void)state;
    dir = test_scratch_dir("safetensors");
    return 0;
}

/* A file image: 8-byte length, the header text, then data_len bytes of data (0x11 filler). *len
 * receives the size; the caller frees. header_len_override (when nonzero) is stored instead of
 * the real header length. */
static unsigned char *image(const char *header, size_t data_len, uint64_t header_len_override,
                            size_t *len) {
    size_t h = strlen(header);
    *len = 8 + h + data_len;
    unsigned char *buf = malloc(*len);
    uint64_t n = header_len_override ? header_len_override : h;
    memcpy(buf, &n, 8);
    memcpy(buf + 8, header, h);
    memset(buf + 8 + h, 0x11, data_len);
    return buf;
}

/* Expects parsing the image to fail with CCE_ERR_FORMAT and a detail containing needle. */
static void expect_bad(const char *header, size_t data_len, uint64_t len_override,
                       const char *needle) {
    size_t len;
    unsigned char *buf = image(header, data_len, len_override, &len);
    cce_safetensors *st = NULL;
    cce_status s = cce_safetensors_from_memory(buf, len, "bad.safetensors", &st);
    if (s != CCE_ERR_FORMAT)
        fail_msg("header %s: expected CCE_ERR_FORMAT, got %s (%s)", header, cce_strerror(s),
                 cce_error_detail());
    if (!strstr(cce_error_detail(), needle))
        fail_msg("header %s: detail '%s' lacks '%s'", header, cce_error_detail(), needle);
    if (!strstr(cce_error_detail(), "bad.safetensors"))
        fail_msg("detail '%s' does not name the file", cce_error_detail());
    assert_null(st);
    free(buf);
}

static void test_good_image(void **state) {
    (void)state;
    size_t len;
    unsigned char *buf = image("{\"__metadata__\":{\"format\":\"pt\"},"
                               "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[8,12]},"
                               "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                               "\"s\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[12,16]}}",
                               16, 0, &len);
    cce_safetensors *st;
    assert_cce_ok(cce_safetensors_from_memory(buf, len, "good", &st));
    assert_int_equal(cce_safetensors_count(st), 3);
    assert_string_equal(cce_safetensors_at(st, 0)->name, "a"); /* data order */
    assert_string_equal(cce_safetensors_metadata(st, "format"), "pt");
    assert_null(cce_safetensors_metadata(st, "nope"));
    const cce_st_tensor *s = cce_safetensors_find(st, "s");
    assert_non_null(s);
    assert_int_equal(s->ndim, 0);
    assert_int_equal(s->numel, 1);
    assert_null(cce_safetensors_find(st, "zz"));
    float out[2];
    assert_int_equal(cce_safetensors_read_f32(st, s, 0, 1, out), CCE_ERR_FORMAT);
    assert_non_null(strstr(cce_error_detail(), "'s' is I32"));
    assert_int_equal(cce_safetensors_read_f32(st, cce_safetensors_find(st, "a"), 1, 2, out),
                     CCE_ERR_RANGE);
    cce_safetensors_close(st);
    free(buf);
}

static void test_bad_headers(void **state) {
    (void)state;
    const char *one = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_bad(one, 8, 1000, "longer than the file");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8, 0,
               "outside the data area");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, 0,
               "outside the data area");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               12, 0, "overlaps");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, 0,
               "needs 12 bytes");
    expect_bad("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0,
               "needs 4 bytes");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],"
               "\"data_offsets\":[0,8]}}",
               8, 0, "overflows");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1152921504606846976,4],"
               "\"data_offsets\":[0,8]}}",
               8, 0, "overflows");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]", 8, 0,
               "malformed header JSON");
    expect_bad("[1,2]", 0, 0, "not a JSON object");
    expect_bad("{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0,
               "unknown dtype 'Q4'");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, 0,
               "shape[0]");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, 0, "data_offsets");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, 0,
               "belong to no tensor");
    expect_bad(one, 12, 0, "trailing");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               8, 0, "malformed");
    expect_bad("{\"__metadata__\":{\"k\":3}}", 0, 0, "__metadata__");
    expect_bad("", 0, 0, "malformed");
    /* Shorter than the length field. */
    cce_safetensors *st = NULL;
    assert_int_equal(cce_safetensors_from_memory("abc", 3, "tiny", &st), CCE_ERR_FORMAT);
    assert_non_null(strstr(cce_error_detail(), "too short"));
    assert_int_equal(cce_safetensors_open(test_path(dir, "missing.safetensors"), &st), CCE_ERR_IO);
    assert_non_null(strstr(cce_error_detail(), "missing.safetensors"));
}

static void test_half_conversions(void **state) {
    (void)state;
    assert_int_equal(cce_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(cce_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(cce_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(cce_f32_to_f16(65520.0f), 0x7c00);                     /* rounds up to Inf */
    assert_int_equal(cce_f32_to_f16(ldexpf(1.0f, -24)), 0x0001);            /* smallest subnormal */
    assert_int_equal(cce_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00);     /* tie to even */
    assert_int_equal(cce_f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02); /* tie to even */
    assert_true(isnan(cce_f16_to_f32(cce_f32_to_f16(NAN))));
    assert_int_equal(cce_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(cce_f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80); /* tie to even */
    assert_int_equal(cce_f32_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)), 0x3f82);
    assert_true(isnan(cce_bf16_to_f32(cce_f32_to_bf16(NAN))));
    /* Every non-NaN half and bfloat16 value survives the trip through float32. */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = cce_f16_to_f32((uint16_t)h), b = cce_bf16_to_f32((uint16_t)h);
        if (!isnan(f) && cce_f32_to_f16(f) != h) fail_msg("f16 %04x -> %g -> back differs", h, f);
        if (!isnan(b) && cce_f32_to_bf16(b) != h) fail_msg("bf16 %04x -> back differs", h);
    }
    assert_true(cce_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    assert_true(cce_f16_to_f32(0x7c00) == INFINITY);
}

/* Writes three tensors in each dtype and reads them back through the file reader. */
static void test_write_read(void **state) {
    (void)state;
    float a[6] = {1.5f, -2.25f, 3.1415926f, 1e-6f, 70000.0f, -0.0f}; /* [2, 3] */
    float b[4] = {0.1f, 0.2f, 0.3f, 0.4f};                           /* [4] */
    for (int d = CCE_ST_F32; d <= CCE_ST_BF16; d++) {
        const char *path = test_path(dir, "rw.safetensors");
        cce_st_writer *w;
        assert_cce_ok(cce_st_writer_new(path, &w));
        assert_cce_ok(cce_st_writer_metadata(w, "format", "pt"));
        int64_t sa[2] = {2, 3}, sb[1] = {4};
        assert_cce_ok(cce_st_writer_add(w, "x.a", (cce_st_dtype)d, 2, sa, a));
        assert_cce_ok(cce_st_writer_add(w, "x.b", (cce_st_dtype)d, 1, sb, b));
        assert_int_equal(cce_st_writer_add(w, "x.b", (cce_st_dtype)d, 1, sb, b), CCE_ERR_ARG);
        assert_int_equal(cce_st_writer_add(w, "x.c", CCE_ST_I32, 1, sb, b), CCE_ERR_ARG);
        uint64_t expect_size = cce_st_writer_size(w);
        assert_cce_ok(cce_st_writer_commit(w));
        size_t len;
        char *raw = test_read_file(path, &len);
        assert_int_equal(len, expect_size);
        uint64_t hlen;
        memcpy(&hlen, raw, 8);
        assert_int_equal((8 + hlen) % 8, 0); /* data area aligned */
        free(raw);
        cce_safetensors *st;
        assert_cce_ok(cce_safetensors_open(path, &st));
        const cce_st_tensor *ta = cce_safetensors_find(st, "x.a");
        assert_non_null(ta);
        assert_int_equal(ta->dtype, d);
        assert_int_equal(ta->shape[0], 2);
        assert_int_equal(ta->shape[1], 3);
        float got[6];
        assert_cce_ok(cce_safetensors_read_f32(st, ta, 0, 6, got));
        for (int i = 0; i < 6; i++) {
            float want = d == CCE_ST_F32   ? a[i]
                         : d == CCE_ST_F16 ? cce_f16_to_f32(cce_f32_to_f16(a[i]))
                                           : cce_bf16_to_f32(cce_f32_to_bf16(a[i]));
            if (memcmp(&want, &got[i], 4) != 0)
                fail_msg("%s a[%d]: %g, expected %g", cce_st_dtype_name(d), i, got[i], want);
        }
        assert_cce_ok(cce_safetensors_read_f32(st, cce_safetensors_find(st, "x.b"), 1, 2, got));
        if (d == CCE_ST_F32) assert_true(got[0] == 0.2f && got[1] == 0.3f);
        if (d == CCE_ST_F16) assert_true(got[0] == cce_f16_to_f32(cce_f32_to_f16(0.2f)));
        cce_safetensors_close(st);
    }
    /* A failed commit (folder missing) leaves nothing behind. */
    cce_st_writer *w;
    assert_cce_ok(cce_st_writer_new(test_path(dir, "nodir/x.safetensors"), &w));
    assert_int_equal(cce_st_writer_commit(w), CCE_ERR_IO);
}

/* Bounded mutation fuzz of the header parser: random byte edits, truncations and length-field
 * changes of a valid image must each parse or fail with CCE_ERR_FORMAT, never crash (the
 * sanitizer build makes out-of-bounds reads fatal). */
static void test_fuzz_header(void **state) {
    (void)state;
    size_t len;
    unsigned char *seed = image("{\"__metadata__\":{\"format\":\"pt\"},"
                                "\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
                                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                                12, 0, &len);
    unsigned char *buf = malloc(len);
    const char alphabet[] = "{}[],:\"0123456789-eE.FBI16328 __metadata__dtypeshape";
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int ok = 0, bad = 0;
    for (int it = 0; it < 20000; it++) {
        memcpy(buf, seed, len);
        size_t n = len;
        int edits = 1 + (int)(rng % 4);
        for (int e = 0; e < edits; e++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(rng >> 33) % n;
            switch ((rng >> 20) % 4) {
            case 0:
                buf[at] = (unsigned char)(rng >> 40);
                break;
            case 1:
                buf[at] = (unsigned char)alphabet[(rng >> 40) % (sizeof alphabet - 1)];
                break;
            case 2:
                n = at;
                break; /* truncate */
            default:
                buf[(rng >> 44) % 8] ^= 1;
                break; /* length field */
            }
            if (n == 0) break;
        }
        cce_safetensors *st = NULL;
        cce_status s = cce_safetensors_from_memory(buf, n, "fuzz", &st);
        if (s == CCE_OK) {
            float tmp[4];
            for (size_t i = 0; i < cce_safetensors_count(st); i++) {
                const cce_st_tensor *t = cce_safetensors_at(st, i);
                if (t->numel <= 4) (void)cce_safetensors_read_f32(st, t, 0, t->numel, tmp);
            }
            cce_safetensors_close(st);
            ok++;
        } else {
            if (s != CCE_ERR_FORMAT) fail_msg("iteration %d: %s", it, cce_strerror(s));
            bad++;
        }
    }
    assert_true(ok > 0 && bad > 0);
    free(buf);
    free(seed);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_image),       cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_half_conversions), cmocka_unit_test(test_write_read),
        cmocka_unit_test(test_fuzz_header),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
