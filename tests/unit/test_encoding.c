/* Compressed encodings in the model file: hand-built encodings (mask and N:M patterns, quant and
 * sparse+quant payloads) decode to their tensors; variants compressed with rtn, gptq, magnitude
 * (2:4 and 50%) and wanda then rtn save, load back and evaluate bit-identically; the stored
 * datasets hold exactly the report's bytes and the file shrinks; corrupt encodings fail with
 * CCE_ERR_FORMAT naming the tensor. */
#include <gsl/gsl_rng.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "calib.h"
#include "compress.h"
#include "encoding.h"
#include "eval.h"
#include "model.h"
#include "report_store.h"
#include "store.h"
#include "synth.h"
#include "test_support.h"

/* ---- Hand-built encodings ------------------------------------------------------------------- */

static void test_nm_pattern(void **state) {
    (void)state;
    /* [2, 6]: groups of 4 then a ragged group of 2 (2:4 keeps ceil(2 * 2 / 4) = 1) */
    float w[12] = {0, 1, 0, 2, 3, 0, 0, 0, 5, 0, 0, 0};
    int64_t shape[2] = {2, 6};
    cce_tensor *t;
    assert_cce_ok(cce_tensor_borrow(w, 2, shape, &t));
    cce_encoding *e;
    assert_cce_ok(cce_encoding_new_sparse(t, 2, 4, "t", &e));
    assert_int_equal(e->pattern, CCE_SPARSE_NM);
    assert_int_equal(e->kept, 2 * 3); /* per row: 2 + 1 */
    assert_int_equal(cce_encoding_pattern_bytes(e), (6 * 2 + 7) / 8);
    assert_int_equal(cce_encoding_stored_bytes(e), 4 * 6 + 2);
    assert_int_equal(cce_encoding_stored_bytes(e), cce_sparse_encoded_bytes(12, 6, 4));
    /* row 1: group 0 holds one non-zero, topped up with its first zero; the ragged group none */
    uint8_t keep[12];
    assert_cce_ok(cce_encoding_pattern_flags(e, keep, "t"));
    const uint8_t want[12] = {0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0};
    assert_memory_equal(keep, want, 12);
    float back[12];
    assert_cce_ok(cce_encoding_decode(e, back));
    assert_memory_equal(back, w, sizeof w);
    char text[64];
    cce_encoding_describe(e, text, sizeof text);
    assert_string_equal(text, "sparse 2:4 50.0%");
    cce_encoding_free(e);
    /* three non-zeros in a 2:4 group is not N:M */
    w[0] = 7;
    assert_int_equal(cce_encoding_new_sparse(t, 2, 4, "layers.0.x", &e), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "layers.0.x"));
    cce_tensor_free(t);
}

static void test_mask_and_quant(void **state) {
    (void)state;
    enum { R = 3, C = 10 };
    float w[R * C], orig[R * C];
    for (int i = 0; i < R * C; i++) w[i] = (i % 3 == 0) ? 0.0f : (float)sin(i) * 2.0f;
    memcpy(orig, w, sizeof w);
    int64_t shape[2] = {R, C};
    cce_tensor *t;
    assert_cce_ok(cce_tensor_borrow(w, 2, shape, &t));
    cce_encoding *e;
    assert_cce_ok(cce_encoding_new_sparse(t, 0, 0, "t", &e));
    assert_int_equal(e->pattern, CCE_SPARSE_MASK);
    assert_int_equal(e->kept, 20);
    assert_int_equal(cce_encoding_stored_bytes(e), cce_sparse_encoded_bytes(R * C, 20, 0));
    float back[R * C];
    assert_cce_ok(cce_encoding_decode(e, back));
    assert_memory_equal(back, w, sizeof w);
    cce_encoding_free(e);

    /* quant, groups of 4 (ragged 2), asymmetric 3-bit; then the mask of the zeros */
    cce_quant_spec q = {.bits = 3, .symmetric = 0, .granularity = CCE_QUANT_GROUP, .group = 4};
    cce_quant_encoding *qe;
    assert_cce_ok(cce_quant_encoding_new(&q, R, C, &qe));
    assert_cce_ok(cce_quant_rtn(&q, w, R, C, "t", qe, NULL));
    assert_cce_ok(cce_encoding_new_quant(qe, 2, shape, &e));
    assert_string_equal(cce_encoding_name(e), "quant");
    assert_int_equal(cce_encoding_stored_bytes(e), cce_quant_encoded_bytes(&q, R, C, R * C, 0));
    assert_cce_ok(cce_encoding_decode(e, back));
    assert_memory_equal(back, w, sizeof w);
    assert_cce_ok(cce_encoding_add_pattern(e, orig, 0, 0, "t"));
    assert_string_equal(cce_encoding_name(e), "sparse+quant");
    assert_int_equal(cce_encoding_stored_bytes(e), cce_quant_encoded_bytes(&q, R, C, 20, 0));
    assert_cce_ok(cce_encoding_decode(e, back));
    assert_memory_equal(back, w, sizeof w);
    char text[96];
    cce_encoding_describe(e, text, sizeof text);
    assert_string_equal(text, "sparse mask 33.3% + quant 3-bit group 4 asym");
    cce_encoding_free(e);
    cce_tensor_free(t);
}

/* ---- Variants: save, load, evaluate --------------------------------------------------------- */

static cce_model *synth_260k(void) {
    cce_synth_options o;
    assert_cce_ok(cce_synth_preset("stories260K", &o));
    o.seed = 11;
    cce_model *m;
    assert_cce_ok(cce_synth_model(&o, &m));
    return m;
}

static int32_t *random_tokens(size_t n, unsigned long seed) {
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, seed);
    int32_t *t = malloc(n * sizeof *t);
    for (size_t i = 0; i < n; i++) t[i] = 3 + (int32_t)gsl_rng_uniform_int(r, 500);
    gsl_rng_free(r);
    return t;
}

static int64_t file_size(const char *path) {
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (int64_t)st.st_size;
}

/* Sum of the storage of the datasets of tensor `name` in the file. */
static int64_t tensor_storage(hid_t f, const char *name, int n_layers) {
    char path[512];
    cce_store_path_of(name, n_layers, path, sizeof path);
    H5O_info_t info;
    assert_true(H5Oget_info_by_name2(f, path, &info, H5O_INFO_BASIC, H5P_DEFAULT) >= 0);
    if (info.type == H5O_TYPE_DATASET) {
        hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
        int64_t n = (int64_t)H5Dget_storage_size(d);
        H5Dclose(d);
        return n;
    }
    hid_t g = H5Gopen2(f, path, H5P_DEFAULT);
    H5G_info_t gi;
    H5Gget_info(g, &gi);
    int64_t total = 0;
    for (hsize_t i = 0; i < gi.nlinks; i++) {
        char link[64];
        H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, link, sizeof link, H5P_DEFAULT);
        hid_t d = H5Dopen2(g, link, H5P_DEFAULT);
        total += (int64_t)H5Dget_storage_size(d);
        H5Dclose(d);
    }
    H5Gclose(g);
    return total;
}

typedef struct fixture {
    cce_model *base;
    int32_t *calib_tokens, *stream;
    cce_calib_data calib;
    char dense_path[4200];
    int64_t dense_size;
} fixture;

static fixture fx;

static int setup(void **state) {
    (void)state;
    fx.base = synth_260k();
    fx.calib_tokens = random_tokens(4 * 64, 3);
    fx.calib = (cce_calib_data){.tokens = fx.calib_tokens, .n_segments = 4, .seg_len = 64};
    cce_calib_data_hash(&fx.calib);
    fx.stream = random_tokens(600, 5);
    snprintf(fx.dense_path, sizeof fx.dense_path, "%s",
             test_path(test_scratch_dir("encoding_dense"), "dense.h5"));
    if (cce_model_save(fx.base, fx.dense_path, NULL)) return -1;
    fx.dense_size = file_size(fx.dense_path);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    cce_model_free(fx.base);
    free(fx.calib_tokens);
    free(fx.stream);
    return 0;
}

/* Compresses with specs, saves, loads back and checks: identical evaluation, identical weights,
 * the datasets hold the report's bytes, every changed linear tensor is stored `want_encoding`,
 * and the file is at most max_ratio of the dense one. */
static void round_trip(const char *tag, const char *const *specs, size_t n_specs,
                       const char *want_encoding, double max_ratio) {
    char path[4200];
    snprintf(path, sizeof path, "%s", test_path(test_scratch_dir(tag), "out.h5"));
    cce_strategy_instance *steps[4];
    for (size_t k = 0; k < n_specs; k++) {
        const cce_strategy *s;
        cce_params *p;
        assert_cce_ok(cce_strategy_parse_spec(specs[k], &s, &p));
        assert_cce_ok(cce_strategy_instance_new(s, p, &steps[k]));
        cce_params_free(p);
    }
    cce_compress_options o;
    cce_compress_options_init(&o);
    o.use_cache = 0;
    o.calib.ctx = 65;
    cce_model *v, *back;
    cce_compress_result res;
    assert_cce_ok(cce_compress(fx.base, steps, n_specs, NULL, 0, &fx.calib, &o, &v, &res));
    assert_cce_ok(cce_compress_save(v, &res, path, NULL));
    assert_cce_ok(cce_model_open(path, &back));

    cce_eval_options eo = {.ctx = 128};
    cce_eval_result mem, disk;
    assert_cce_ok(cce_eval(v, fx.base, fx.stream, 600, &eo, &mem));
    assert_cce_ok(cce_eval(back, fx.base, fx.stream, 600, &eo, &disk));
    assert_true(mem.mean_nll == disk.mean_nll);
    assert_true(mem.top1 == disk.top1);
    assert_true(mem.kl_mean == disk.kl_mean);
    assert_true(mem.top1_agree == disk.top1_agree);
    assert_true(mem.kl_mean > 0);

    int n_layers = cce_model_config(v)->n_layers;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    int64_t stored = 0, reported = 0;
    for (size_t i = 0; i < cce_model_tensor_count(v); i++) {
        const char *name = cce_model_tensor_name_at(v, i);
        cce_tensor *a, *b;
        assert_cce_ok(cce_model_tensor(v, name, &a));
        assert_cce_ok(cce_model_tensor(back, name, &b));
        assert_memory_equal(a->data, b->data, (size_t)cce_tensor_numel(a) * sizeof(float));
        const cce_report_row *last = NULL;
        for (size_t r = 0; r < res.report.n; r++)
            if (!strcmp(res.report.rows[r].tensor, name)) last = &res.report.rows[r];
        if (!last) continue;
        int64_t on_disk = tensor_storage(f, name, n_layers);
        assert_int_equal(on_disk, last->bytes_after);
        stored += on_disk;
        reported += last->bytes_after;
        const cce_encoding *e;
        assert_cce_ok(cce_model_tensor_encoding(back, name, &e));
        assert_non_null(e);
        assert_string_equal(cce_encoding_name(e), want_encoding);
    }
    H5Fclose(f);
    assert_true(stored > 0);
    assert_int_equal(stored, reported);
    int64_t size = file_size(path);
    print_message("%s: file %lld bytes (dense %lld, %.3f); weights stored %lld bytes\n", tag,
                  (long long)size, (long long)fx.dense_size, (double)size / (double)fx.dense_size,
                  (long long)stored);
    assert_true((double)size <= max_ratio * (double)fx.dense_size);

    cce_eval_result_free(&mem);
    cce_eval_result_free(&disk);
    cce_model_free(back);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    for (size_t k = 0; k < n_specs; k++) cce_strategy_instance_free(steps[k]);
}

/* The embedding (131K of the 260K parameters) stays dense, so a file of blocks at b bits is about
 * (131K * 4 + 128K * b / 8) / 1040K of the dense one. */
static void test_rtn(void **state) {
    (void)state;
    const char *a[] = {"rtn:bits=8,group=64"};
    round_trip("enc_rtn8", a, 1, "quant", 0.66);
    const char *b[] = {"rtn:bits=4,group=64,symmetric=true"};
    round_trip("enc_rtn4s", b, 1, "quant", 0.60);
    const char *c[] = {"rtn:bits=4,group=64"};
    round_trip("enc_rtn4", c, 1, "quant", 0.60);
}

static void test_gptq(void **state) {
    (void)state;
    const char *a[] = {"gptq:bits=4,group=64"};
    round_trip("enc_gptq", a, 1, "quant", 0.60);
}

static void test_magnitude(void **state) {
    (void)state;
    const char *a[] = {"magnitude:nm=2:4"};
    round_trip("enc_mag24", a, 1, "sparse", 0.82);
    const char *b[] = {"magnitude:ratio=0.5"};
    round_trip("enc_mag50", b, 1, "sparse", 0.82);
}

static void test_wanda_then_rtn(void **state) {
    (void)state;
    const char *a[] = {"wanda:ratio=0.5", "rtn:bits=8"};
    round_trip("enc_wanda_rtn", a, 2, "sparse+quant", 0.62);
    const char *b[] = {"magnitude:nm=2:4", "rtn:bits=4,group=64"};
    round_trip("enc_mag24_rtn", b, 2, "sparse+quant", 0.58);
}

/* ---- Corrupt files -------------------------------------------------------------------------- */

static const char *Q_TENSOR = "layers.1.mlp.down_proj.weight";
static const char *Q_PATH = "/model/layers/01/mlp/down_proj/weight";

static void make_compressed(const char *spec, const char *path) {
    const cce_strategy *s;
    cce_params *p;
    cce_strategy_instance *inst;
    assert_cce_ok(cce_strategy_parse_spec(spec, &s, &p));
    assert_cce_ok(cce_strategy_instance_new(s, p, &inst));
    cce_params_free(p);
    cce_compress_options o;
    cce_compress_options_init(&o);
    o.output_error = 0;
    cce_model *v;
    cce_compress_result res;
    assert_cce_ok(cce_compress(fx.base, &inst, 1, NULL, 0, NULL, &o, &v, &res));
    assert_cce_ok(cce_model_save(v, path, NULL));
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_strategy_instance_free(inst);
}

/* Replaces dataset `ds` of the tensor's group by `n` bytes of `fill` (uint8). */
static void replace_dataset(const char *file, const char *ds, hsize_t n, uint8_t fill) {
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, Q_PATH, H5P_DEFAULT);
    assert_true(g >= 0);
    assert_true(H5Ldelete(g, ds, H5P_DEFAULT) >= 0);
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(g, ds, H5T_STD_U8LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    uint8_t *buf = malloc(n);
    memset(buf, fill, n);
    H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    free(buf);
    H5Dclose(d);
    H5Sclose(sp);
    H5Gclose(g);
    H5Fclose(f);
}

static void set_i64_attr(const char *file, const char *name, int64_t v) {
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, Q_PATH, H5P_DEFAULT);
    hid_t a = H5Aopen(g, name, H5P_DEFAULT);
    assert_true(a >= 0);
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Gclose(g);
    H5Fclose(f);
}

/* Opening works (shapes come from attributes); loading the tensor fails with FORMAT naming it. */
static void expect_format_error(const char *file, const char *what) {
    cce_model *m;
    assert_cce_ok(cce_model_open(file, &m));
    cce_tensor *t;
    cce_status s = cce_model_tensor(m, Q_TENSOR, &t);
    if (s != CCE_ERR_FORMAT) fail_msg("%s: got %s: %s", what, cce_strerror(s), cce_error_detail());
    assert_non_null(strstr(cce_error_detail(), Q_TENSOR));
    cce_model_free(m);
}

static void copy_file(const char *from, const char *to, size_t limit) {
    size_t len;
    char *data = test_read_file(from, &len);
    assert_non_null(data);
    test_write_file(to, data, limit && limit < len ? limit : len);
    free(data);
}

static void test_corrupt(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("encoding_corrupt");
    char quant[4200], sparse[4200], nm[4200], work[4200];
    snprintf(quant, sizeof quant, "%s", test_path(dir, "quant.h5"));
    snprintf(sparse, sizeof sparse, "%s", test_path(dir, "sparse.h5"));
    snprintf(nm, sizeof nm, "%s", test_path(dir, "nm.h5"));
    snprintf(work, sizeof work, "%s", test_path(dir, "work.h5"));
    make_compressed("rtn:bits=4,group=64", quant);
    make_compressed("magnitude:ratio=0.5", sparse);
    make_compressed("magnitude:nm=2:4", nm);

    /* down_proj [64, 172], group 64: 3 groups per row, 192 groups; 64 * 172 * 4 / 8 code bytes */
    copy_file(quant, work, 0);
    replace_dataset(work, "codes", 64 * 172 / 2 - 1, 0);
    expect_format_error(work, "short codes");
    copy_file(quant, work, 0);
    replace_dataset(work, "zeros", 3, 0);
    expect_format_error(work, "short zeros");
    copy_file(quant, work, 0);
    replace_dataset(work, "scales", 2 * 192, 0); /* uint8, not uint16 */
    expect_format_error(work, "scales of the wrong type");
    copy_file(quant, work, 0);
    set_i64_attr(work, "group_size", 0);
    expect_format_error(work, "group_size 0");

    copy_file(sparse, work, 0);
    set_i64_attr(work, "kept", 64 * 172 / 2 + 1);
    expect_format_error(work, "kept disagrees with values");
    copy_file(sparse, work, 0);
    replace_dataset(work, "mask", 64 * 172 / 8, 0xff); /* every weight marked, values too few */
    expect_format_error(work, "mask disagrees with kept");

    copy_file(nm, work, 0);
    replace_dataset(work, "indices", 64 * 172 / 2 * 2 / 8,
                    0xff); /* positions 3, 3: not increasing */
    expect_format_error(work, "N:M indices not increasing");
    copy_file(nm, work, 0);
    set_i64_attr(work, "kept", 10);
    expect_format_error(work, "N:M kept");

    /* truncated: opening or loading fails cleanly */
    copy_file(quant, work, (size_t)file_size(quant) * 2 / 3);
    cce_model *m;
    cce_status s = cce_model_open(work, &m);
    if (!s) {
        s = cce_model_load_all(m);
        cce_model_free(m);
    }
    assert_int_not_equal(s, CCE_OK);

    /* h5dump -H shows the groups and attributes */
    char cmd[9000], line[512];
    snprintf(cmd, sizeof cmd, "h5dump -H -g %s '%s' 2>&1", Q_PATH, quant);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    int seen_enc = 0, seen_codes = 0, seen_scales = 0, seen_bits = 0;
    while (fgets(line, sizeof line, p)) {
        seen_enc |= strstr(line, "ATTRIBUTE \"encoding\"") != NULL;
        seen_codes |= strstr(line, "DATASET \"codes\"") != NULL;
        seen_scales |= strstr(line, "DATASET \"scales\"") != NULL;
        seen_bits |= strstr(line, "ATTRIBUTE \"bits\"") != NULL;
    }
    int rc = pclose(p);
    if (rc == 0) {
        assert_true(seen_enc && seen_codes && seen_scales && seen_bits);
    } else {
        print_message("h5dump not available; skipped its check\n");
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nm_pattern), cmocka_unit_test(test_mask_and_quant),
        cmocka_unit_test(test_rtn),        cmocka_unit_test(test_gptq),
        cmocka_unit_test(test_magnitude),  cmocka_unit_test(test_wanda_then_rtn),
        cmocka_unit_test(test_corrupt),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
