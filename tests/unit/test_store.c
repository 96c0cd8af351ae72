/* The HDF5 model store: bit-exact round trips (plain and deflate), lazy opening, per-layer
 * shapes, corrupt and truncated files, NaN weights, and atomic saving. */
#include "test_support.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "store.h"
#include "synth.h"
#include "tokenizer.h"

/* A tiny untied synthetic model (so lm_head is covered too). The caller frees it. */
static cce_model *tiny_model(uint64_t seed) {
    cce_synth_options o;
    assert_cce_ok(cce_synth_preset("tiny", &o));
    o.seed = seed;
    o.cfg.tied_embeddings = 0;
    cce_model *m;
    assert_cce_ok(cce_synth_model(&o, &m));
    return m;
}

static void assert_same_models(cce_model *a, cce_model *b) {
    const cce_config *ca = cce_model_config(a), *cb = cce_model_config(b);
    assert_memory_equal(ca, cb, sizeof *ca);
    assert_string_equal(cce_model_source(a), cce_model_source(b));
    assert_int_equal(cce_model_tensor_count(a), cce_model_tensor_count(b));
    for (size_t i = 0; i < cce_model_tensor_count(a); i++) {
        const char *name = cce_model_tensor_name_at(a, i);
        assert_string_equal(name, cce_model_tensor_name_at(b, i));
        cce_tensor *ta, *tb;
        assert_cce_ok(cce_model_tensor(a, name, &ta));
        assert_cce_ok(cce_model_tensor(b, name, &tb));
        assert_true(cce_tensor_same_shape(ta, tb));
        if (memcmp(ta->data, tb->data, (size_t)cce_tensor_numel(ta) * sizeof(float)) != 0)
            fail_msg("tensor %s differs after the round trip", name);
    }
    for (int l = 0; l < ca->n_layers; l++) {
        const cce_layer_shape *la = cce_model_layer(a, l), *lb = cce_model_layer(b, l);
        assert_int_equal(la->hidden_dim, lb->hidden_dim);
        assert_int_equal(la->n_heads, lb->n_heads);
        assert_int_equal(la->n_kv_heads, lb->n_kv_heads);
        assert_int_equal(la->removed, lb->removed);
        assert_memory_equal(la->kv_of_head, lb->kv_of_head, (size_t)la->n_heads * sizeof(int32_t));
    }
    const cce_tokenizer *ka = cce_model_tokenizer(a), *kb = cce_model_tokenizer(b);
    assert_non_null(ka);
    assert_non_null(kb);
    assert_int_equal(cce_tokenizer_vocab_size(ka), cce_tokenizer_vocab_size(kb));
    for (int32_t i = 0; i < cce_tokenizer_vocab_size(ka); i++) {
        assert_string_equal(cce_tokenizer_piece(ka, i), cce_tokenizer_piece(kb, i));
        assert_true(cce_tokenizer_score(ka, i) == cce_tokenizer_score(kb, i));
    }
    assert_true(cce_tokenizer_fingerprint(ka) == cce_tokenizer_fingerprint(kb));
    assert_int_equal(cce_tokenizer_bos(ka), cce_tokenizer_bos(kb));
    assert_int_equal(cce_tokenizer_eos(ka), cce_tokenizer_eos(kb));
}

static void round_trip(int level) {
    const char *dir = test_scratch_dir(level ? "store_deflate" : "store_plain");
    const char *path = test_path(dir, "m.h5");
    cce_model *m = tiny_model(7);
    cce_model_set_source(m, "unit:round-trip");
    cce_save_options opts = {.deflate_level = level};
    assert_cce_ok(cce_model_save(m, path, &opts));
    cce_model *r;
    assert_cce_ok(cce_model_open(path, &r));
    assert_string_equal(cce_model_path(r), path);
    assert_same_models(m, r);
    assert_int_equal(cce_model_total_params(m), cce_model_total_params(r));

    /* The dataset layout is what was asked for: contiguous, or chunked with deflate. */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, "/model/layers/01/mlp/down_proj/weight", H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t dcpl = H5Dget_create_plist(d);
    assert_int_equal(H5Pget_layout(dcpl), level ? H5D_CHUNKED : H5D_CONTIGUOUS);
    if (level) assert_true(H5Pget_nfilters(dcpl) == 2); /* shuffle + deflate */
    H5Pclose(dcpl);
    H5Dclose(d);
    H5Fclose(f);

    /* No temporary file is left behind. */
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp", dir);
    assert_int_not_equal(system(cmd), 0);
    cce_model_free(r);
    cce_model_free(m);
}

static void test_round_trip_plain(void **state) {
    (void)state;
    round_trip(0);
}

static void test_round_trip_deflate(void **state) {
    (void)state;
    round_trip(6);
}

static void test_path_of(void **state) {
    (void)state;
    char buf[256];
    cce_store_path_of("layers.3.mlp.down_proj.weight", 12, buf, sizeof buf);
    assert_string_equal(buf, "/model/layers/03/mlp/down_proj/weight");
    cce_store_path_of("layers.0.self_attn.q_proj.weight", 2, buf, sizeof buf);
    assert_string_equal(buf, "/model/layers/00/self_attn/q_proj/weight");
    cce_store_path_of("layers.7.input_layernorm.weight", 101, buf, sizeof buf);
    assert_string_equal(buf, "/model/layers/007/input_layernorm/weight");
    cce_store_path_of("lm_head.weight", 5, buf, sizeof buf);
    assert_string_equal(buf, "/lm_head/weight");
    cce_store_path_of("embed_tokens.weight", 5, buf, sizeof buf);
    assert_string_equal(buf, "/model/embed_tokens/weight");
    cce_store_path_of("norm.weight", 5, buf, sizeof buf);
    assert_string_equal(buf, "/model/norm/weight");
}

static void test_h5dump_reads_it(void **state) {
    (void)state;
    if (access("/usr/bin/h5dump", X_OK) != 0) skip();
    const char *dir = test_scratch_dir("store_h5dump");
    const char *path = test_path(dir, "m.h5");
    cce_model *m = tiny_model(1);
    assert_cce_ok(cce_model_save(m, path, NULL));
    cce_model_free(m);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "/usr/bin/h5dump -H '%s' > '%s/dump.txt' 2>&1", path, dir);
    assert_int_equal(system(cmd), 0);
    char *dump = test_read_file(test_path(dir, "dump.txt"), NULL);
    assert_non_null(dump);
    /* The nested groups of /model/layers/00/self_attn/q_proj/weight, in order. */
    const char *p = strstr(dump, "GROUP \"model\"");
    assert_non_null(p);
    assert_non_null(p = strstr(p, "GROUP \"layers\""));
    assert_non_null(p = strstr(p, "GROUP \"00\""));
    assert_non_null(p = strstr(p, "GROUP \"self_attn\""));
    assert_non_null(p = strstr(p, "GROUP \"q_proj\""));
    assert_non_null(p = strstr(p, "DATASET \"weight\""));
    assert_non_null(p = strstr(p, "( 32, 32 )"));
    assert_non_null(strstr(dump, "ATTRIBUTE \"format\""));
    assert_non_null(strstr(dump, "GROUP \"tokenizer\""));
    assert_non_null(strstr(dump, "GROUP \"lm_head\""));
    free(dump);
}

static void test_lazy_open(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("store_lazy");
    const char *path = test_path(dir, "m.h5");
    cce_model *m = tiny_model(3);
    assert_cce_ok(cce_model_save(m, path, NULL));
    cce_model_free(m);

    assert_cce_ok(cce_model_open(path, &m));
    size_t n = cce_model_tensor_count(m);
    assert_int_equal(n, 21);
    for (size_t i = 0; i < n; i++) {
        int nd;
        int64_t sh[4];
        cce_model_tensor_shape_at(m, i, &nd, sh); /* shapes need no loading */
        assert_true(nd >= 1);
        assert_int_equal(cce_model_tensor_is_loaded(m, cce_model_tensor_name_at(m, i)), 0);
    }
    assert_int_equal(cce_model_layer_params(m, 1), 9280);
    cce_tensor *t;
    assert_cce_ok(cce_model_layer_tensor(m, 1, CCE_LT_K, &t));
    assert_int_equal(t->shape[0], 16);
    for (size_t i = 0; i < n; i++) {
        const char *name = cce_model_tensor_name_at(m, i);
        int want = !strcmp(name, "layers.1.self_attn.k_proj.weight");
        assert_int_equal(cce_model_tensor_is_loaded(m, name), want);
    }
    /* A second access returns the same loaded tensor. */
    cce_tensor *again;
    assert_cce_ok(cce_model_tensor(m, "layers.1.self_attn.k_proj.weight", &again));
    assert_ptr_equal(t, again);
    assert_cce_ok(cce_model_load_all(m));
    for (size_t i = 0; i < n; i++)
        assert_int_equal(cce_model_tensor_is_loaded(m, cce_model_tensor_name_at(m, i)), 1);
    cce_model_free(m);
}

static void assert_fails_naming(cce_status got, const char *path, int allow_hdf5) {
    print_message("  %s: %s\n", cce_strerror(got), cce_error_detail());
    if (!(got == CCE_ERR_FORMAT || (allow_hdf5 && got == CCE_ERR_HDF5)))
        fail_msg("expected a format error, got %s: %s", cce_strerror(got), cce_error_detail());
    if (!strstr(cce_error_detail(), path))
        fail_msg("detail '%s' does not name %s", cce_error_detail(), path);
}

static void test_corrupt_files(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("store_corrupt");
    cce_model *m = NULL;

    /* Missing file. */
    const char *missing = test_path(dir, "missing.h5");
    assert_int_equal(cce_model_open(missing, &m), CCE_ERR_IO);
    assert_non_null(strstr(cce_error_detail(), missing));

    /* Random bytes. */
    const char *junk = test_path(dir, "junk.h5");
    unsigned char bytes[4096];
    srand(42);
    for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (unsigned char)rand();
    test_write_file(junk, bytes, sizeof bytes);
    assert_fails_naming(cce_model_open(junk, &m), junk, 0);
    assert_null(m);

    /* Random bytes after a valid HDF5 signature. */
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    memcpy(bytes, sig, sizeof sig);
    test_write_file(junk, bytes, sizeof bytes);
    assert_fails_naming(cce_model_open(junk, &m), junk, 1);

    /* A valid HDF5 file that is not a cce-model. */
    const char *other = test_path(dir, "other.h5");
    hid_t f = H5Fcreate(other, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    H5Fclose(f);
    assert_fails_naming(cce_model_open(other, &m), other, 0);
    assert_non_null(strstr(cce_error_detail(), "cce-model"));

    /* A real model file, truncated at several points: opening or loading must fail cleanly. */
    const char *good = test_path(dir, "good.h5");
    cce_model *src = tiny_model(5);
    assert_cce_ok(cce_model_save(src, good, NULL));
    cce_model_free(src);
    size_t len;
    char *data = test_read_file(good, &len);
    assert_non_null(data);
    const char *cut = test_path(dir, "cut.h5");
    const double fractions[] = {0.1, 0.5, 0.9, 0.999};
    for (size_t k = 0; k < sizeof fractions / sizeof fractions[0]; k++) {
        test_write_file(cut, data, (size_t)(len * fractions[k]));
        cce_status s = cce_model_open(cut, &m);
        if (s == CCE_OK) {
            s = cce_model_load_all(m);
            cce_model_free(m);
            m = NULL;
        }
        assert_fails_naming(s, cut, 1);
    }
    free(data);
}

/* Overwrites one float of a dataset in an existing file. */
static void poke_float(const char *path, const char *dataset, float v) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, dataset, H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t space = H5Dget_space(d);
    hsize_t start[2] = {1, 2}, count[2] = {1, 1};
    assert_true(H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL) >= 0);
    hid_t mem = H5Screate_simple(1, (hsize_t[]){1}, NULL);
    assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, &v) >= 0);
    H5Sclose(mem);
    H5Sclose(space);
    H5Dclose(d);
    H5Fclose(f);
}

static void test_nan_in_file(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("store_nan");
    const char *path = test_path(dir, "m.h5");
    cce_model *m = tiny_model(2);
    assert_cce_ok(cce_model_save(m, path, NULL));
    cce_model_free(m);
    poke_float(path, "/model/layers/00/mlp/up_proj/weight", 0.0f / 0.0f);
    assert_cce_ok(cce_model_open(path, &m)); /* lazily: nothing read yet */
    cce_tensor *t;
    assert_cce_ok(cce_model_layer_tensor(m, 0, CCE_LT_GATE, &t));
    assert_int_equal(cce_model_layer_tensor(m, 0, CCE_LT_UP, &t), CCE_ERR_NUMERIC);
    assert_non_null(strstr(cce_error_detail(), "layers.0.mlp.up_proj.weight"));
    assert_non_null(strstr(cce_error_detail(), path));
    assert_int_equal(cce_model_check_finite(m), CCE_ERR_NUMERIC);
    cce_model_free(m);
}

/* A file whose tensor shape disagrees with its config is refused at open, naming the tensor. */
static void test_wrong_shape(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("store_shape");
    const char *path = test_path(dir, "m.h5");
    cce_model *m = tiny_model(4);
    const cce_config *c = cce_model_config(m);
    cce_store_writer *w;
    assert_cce_ok(cce_store_create(path, NULL, &w));
    assert_cce_ok(cce_store_write_config(w, c, "unit"));
    for (int l = 0; l < c->n_layers; l++)
        assert_cce_ok(cce_store_write_layer_shape(w, c, l, cce_model_layer(m, l)));
    for (size_t i = 0; i < cce_model_tensor_count(m); i++) {
        const char *name = cce_model_tensor_name_at(m, i);
        cce_tensor *t;
        assert_cce_ok(cce_model_tensor(m, name, &t));
        if (!strcmp(name, "layers.1.mlp.up_proj.weight")) {
            cce_tensor *bad;
            assert_cce_ok(cce_tensor_new_2d(63, 32, &bad));
            assert_cce_ok(cce_store_write_tensor(w, c->n_layers, name, bad));
            cce_tensor_free(bad);
        } else {
            assert_cce_ok(cce_store_write_tensor(w, c->n_layers, name, t));
        }
    }
    assert_cce_ok(cce_store_commit(w));
    cce_model_free(m);
    cce_model *r = NULL;
    assert_int_equal(cce_model_open(path, &r), CCE_ERR_FORMAT);
    assert_non_null(strstr(cce_error_detail(), "layers.1.mlp.up_proj.weight"));
    assert_non_null(strstr(cce_error_detail(), path));
    assert_null(r);
}

/* Layers with their own widths (structured compression) and a removed layer survive the store. */
static void test_per_layer_shapes(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("store_layers");
    const char *path = test_path(dir, "m.h5");
    cce_model *m = tiny_model(6);
    const cce_config *c = cce_model_config(m);
    int32_t kv1[2] = {1, 0};
    cce_layer_shape l0 = {.hidden_dim = 40, .n_heads = 2, .n_kv_heads = 2, .kv_of_head = kv1},
                    l1 = {.hidden_dim = 64, .n_heads = 4, .n_kv_heads = 2, .removed = 1};
    int32_t kv2[4] = {0, 0, 1, 1};
    l1.kv_of_head = kv2;
    cce_store_writer *w;
    assert_cce_ok(cce_store_create(path, NULL, &w));
    assert_cce_ok(cce_store_write_config(w, c, "unit"));
    assert_cce_ok(cce_store_write_layer_shape(w, c, 0, &l0));
    assert_cce_ok(cce_store_write_layer_shape(w, c, 1, &l1));
    struct {
        const char *name;
        int64_t rows, cols;
    } layer0[] = {{"layers.0.input_layernorm.weight", 32, 0},
                  {"layers.0.self_attn.q_proj.weight", 16, 32},
                  {"layers.0.self_attn.k_proj.weight", 16, 32},
                  {"layers.0.self_attn.v_proj.weight", 16, 32},
                  {"layers.0.self_attn.o_proj.weight", 32, 16},
                  {"layers.0.post_attention_layernorm.weight", 32, 0},
                  {"layers.0.mlp.gate_proj.weight", 40, 32},
                  {"layers.0.mlp.up_proj.weight", 40, 32},
                  {"layers.0.mlp.down_proj.weight", 32, 40},
                  {"embed_tokens.weight", 300, 32},
                  {"norm.weight", 32, 0},
                  {"lm_head.weight", 300, 32}};
    for (size_t i = 0; i < sizeof layer0 / sizeof layer0[0]; i++) {
        cce_tensor *t;
        if (layer0[i].cols)
            assert_cce_ok(cce_tensor_new_2d(layer0[i].rows, layer0[i].cols, &t));
        else
            assert_cce_ok(cce_tensor_new_1d(layer0[i].rows, &t));
        t->data[0] = (float)i;
        assert_cce_ok(cce_store_write_tensor(w, c->n_layers, layer0[i].name, t));
        cce_tensor_free(t);
    }
    assert_cce_ok(cce_store_commit(w));
    cce_model_free(m);

    cce_model *r;
    assert_cce_ok(cce_model_open(path, &r));
    const cce_layer_shape *g0 = cce_model_layer(r, 0), *g1 = cce_model_layer(r, 1);
    assert_int_equal(g0->hidden_dim, 40);
    assert_int_equal(g0->n_heads, 2);
    assert_int_equal(g0->kv_of_head[0], 1);
    assert_int_equal(g0->kv_of_head[1], 0);
    assert_int_equal(g1->removed, 1);
    /* The removed layer's tensors are absent: 9 + 3 tensors. */
    assert_int_equal(cce_model_tensor_count(r), 12);
    assert_int_equal(cce_model_layer_params(r, 1), 0);
    assert_int_equal(cce_model_layer_params(r, 0), 2 * 32 + 4 * 16 * 32 + 3 * 40 * 32);
    cce_tensor *t;
    assert_cce_ok(cce_model_layer_tensor(r, 0, CCE_LT_DOWN, &t));
    assert_int_equal(t->shape[1], 40);
    assert_true(t->data[0] == 8.0f);
    assert_int_equal(cce_model_layer_tensor(r, 1, CCE_LT_Q, &t), CCE_ERR_NOT_FOUND);

    /* Saving the opened model again keeps all of it. */
    const char *again = test_path(dir, "again.h5");
    assert_cce_ok(cce_model_save(r, again, NULL));
    cce_model *r2;
    assert_cce_ok(cce_model_open(again, &r2));
    assert_int_equal(cce_model_tensor_count(r2), 12);
    assert_int_equal(cce_model_layer(r2, 0)->hidden_dim, 40);
    assert_int_equal(cce_model_layer(r2, 1)->removed, 1);
    cce_model_free(r2);
    cce_model_free(r);

    /* Bad layer shapes are refused by the writer, naming the layer group. */
    int32_t bad_kv[2] = {0, 5};
    cce_layer_shape bad = {.hidden_dim = 40, .n_heads = 2, .n_kv_heads = 2, .kv_of_head = bad_kv};
    cce_config cfg = {.dim = 32,
                      .hidden_dim = 64,
                      .n_layers = 2,
                      .n_heads = 4,
                      .n_kv_heads = 2,
                      .head_dim = 8,
                      .vocab_size = 300,
                      .seq_len = 64,
                      .rope_theta = 10000.0f,
                      .norm_eps = 1e-5f,
                      .tied_embeddings = 1};
    assert_cce_ok(cce_store_create(path, NULL, &w));
    assert_int_equal(cce_store_write_layer_shape(w, &cfg, 1, &bad), CCE_ERR_FORMAT);
    assert_non_null(strstr(cce_error_detail(), "kv_of_head"));
    assert_non_null(strstr(cce_error_detail(), "/model/layers/01"));
    cce_store_abort(w);
    assert_true(test_file_exists(path)); /* the earlier file is untouched */
}

/* A failed save leaves an existing file byte for byte as it was, and no temporary file. */
static void test_failed_save_keeps_old_file(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("store_atomic");
    const char *path = test_path(dir, "m.h5");
    cce_model *m = tiny_model(8);
    assert_cce_ok(cce_model_save(m, path, NULL));
    size_t len_before;
    char *before = test_read_file(path, &len_before);
    assert_non_null(before);

    cce_tensor *t;
    assert_cce_ok(cce_model_layer_tensor(m, 1, CCE_LT_O, &t));
    float keep = t->data[3];
    t->data[3] = 1.0f / 0.0f;
    assert_int_equal(cce_model_save(m, path, NULL), CCE_ERR_NUMERIC);
    assert_non_null(strstr(cce_error_detail(), "layers.1.self_attn.o_proj.weight"));
    t->data[3] = keep;
    cce_save_options bad_level = {.deflate_level = 12};
    assert_int_equal(cce_model_save(m, path, &bad_level), CCE_ERR_RANGE);
    assert_int_equal(cce_model_save(m, test_path(dir, "no/such/dir/m.h5"), NULL), CCE_ERR_IO);

    size_t len_after;
    char *after = test_read_file(path, &len_after);
    assert_non_null(after);
    assert_int_equal(len_before, len_after);
    assert_memory_equal(before, after, len_before);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp", dir);
    assert_int_not_equal(system(cmd), 0);
    free(before);
    free(after);

    /* Saving an opened model over its own file works (lazy tensors are read before the rename). */
    cce_model *r;
    assert_cce_ok(cce_model_open(path, &r));
    assert_cce_ok(cce_model_save(r, path, NULL));
    cce_model_free(r);
    assert_cce_ok(cce_model_open(path, &r));
    assert_same_models(m, r);
    cce_model_free(r);
    cce_model_free(m);
}

/* A model without a tokenizer round-trips as one without a tokenizer. */
static void test_no_tokenizer(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("store_notok");
    const char *path = test_path(dir, "m.h5");
    cce_config c = {.dim = 16,
                    .hidden_dim = 24,
                    .n_layers = 1,
                    .n_heads = 2,
                    .n_kv_heads = 1,
                    .head_dim = 8,
                    .vocab_size = 20,
                    .seq_len = 8,
                    .rope_theta = 500000.0f,
                    .norm_eps = 1e-6f,
                    .tied_embeddings = 1};
    cce_model *m;
    assert_cce_ok(cce_model_new(&c, &m));
    assert_cce_ok(cce_model_save(m, path, NULL));
    cce_model *r;
    assert_cce_ok(cce_model_open(path, &r));
    assert_null(cce_model_tokenizer(r));
    assert_memory_equal(cce_model_config(r), &c, sizeof c);
    cce_store *s;
    assert_cce_ok(cce_store_open(path, &s));
    assert_int_equal(cce_store_has_tokenizer(s), 0);
    cce_tokenizer *tok;
    assert_int_equal(cce_store_read_tokenizer(s, &tok), CCE_ERR_FORMAT);
    int nd;
    int64_t sh[4];
    assert_int_equal(cce_store_tensor_shape(s, 1, "lm_head.weight", &nd, sh), CCE_ERR_NOT_FOUND);
    assert_cce_ok(cce_store_tensor_shape(s, 1, "layers.0.self_attn.k_proj.weight", &nd, sh));
    assert_int_equal(nd, 2);
    assert_int_equal(sh[0], 8);
    assert_int_equal(sh[1], 16);
    cce_store_close(s);
    cce_model_free(r);
    cce_model_free(m);
}

/* Files written by other tools (h5py writes str as variable-length strings) are read too. */
static void test_vlen_strings_accepted(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("store_vlen");
    const char *path = test_path(dir, "m.h5");
    cce_model *m = tiny_model(9);
    assert_cce_ok(cce_model_save(m, path, NULL));
    const cce_tokenizer *tok = cce_model_tokenizer(m);
    int32_t n = cce_tokenizer_vocab_size(tok);
    const char **pieces = malloc((size_t)n * sizeof *pieces);
    for (int32_t i = 0; i < n; i++) pieces[i] = cce_tokenizer_piece(tok, i);

    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, H5T_VARIABLE);
    H5Tset_cset(str, H5T_CSET_UTF8);
    assert_true(H5Ldelete(f, "/tokenizer/pieces", H5P_DEFAULT) >= 0);
    hsize_t dim = (hsize_t)n;
    hid_t space = H5Screate_simple(1, &dim, NULL);
    hid_t d = H5Dcreate2(f, "/tokenizer/pieces", str, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0);
    assert_true(H5Dwrite(d, str, H5S_ALL, H5S_ALL, H5P_DEFAULT, pieces) >= 0);
    H5Dclose(d);
    assert_true(H5Adelete(f, "source") >= 0);
    hid_t scalar = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "source", str, scalar, H5P_DEFAULT, H5P_DEFAULT);
    const char *src = "h5py:written";
    assert_true(H5Awrite(a, str, &src) >= 0);
    H5Aclose(a);
    H5Sclose(scalar);
    H5Sclose(space);
    H5Tclose(str);
    H5Fclose(f);
    free(pieces);

    cce_model *r;
    assert_cce_ok(cce_model_open(path, &r));
    assert_string_equal(cce_model_source(r), "h5py:written");
    assert_true(cce_tokenizer_fingerprint(cce_model_tokenizer(r)) ==
                cce_tokenizer_fingerprint(tok));
    cce_model_free(r);
    cce_model_free(m);
}

int main(void) {
    cce_hdf5_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_of),
        cmocka_unit_test(test_round_trip_plain),
        cmocka_unit_test(test_round_trip_deflate),
        cmocka_unit_test(test_h5dump_reads_it),
        cmocka_unit_test(test_lazy_open),
        cmocka_unit_test(test_corrupt_files),
        cmocka_unit_test(test_nan_in_file),
        cmocka_unit_test(test_wrong_shape),
        cmocka_unit_test(test_per_layer_shapes),
        cmocka_unit_test(test_failed_save_keeps_old_file),
        cmocka_unit_test(test_no_tokenizer),
        cmocka_unit_test(test_vlen_strings_accepted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
