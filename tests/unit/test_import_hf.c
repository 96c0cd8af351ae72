/* Hugging Face import and export: config.json rules, fixtures written by the exporter in
 * F32/F16/BF16, sharded and unsharded, tied and untied, read back bit for bit (after the dtype's
 * rounding); corrupt checkpoints; llama2.c export; the stories260K round trip
 * llama2c -> hf -> llama2c. Biases: a Qwen2 fixture written here tensor by
 * tensor, Llama attention_bias/mlp_bias, export -> import. Structured variants (structured
 * strategy by FFN neurons and by heads, ShortGPT) through export -> import, and a corrupt
 * layout note. */
#include "test_support.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "calib.h"
#include "compress.h"
#include "forward.h"
#include "import.h"
#include "model.h"
#include "strategy.h"
#include "safetensors.h"
#include "synth.h"

static const char *root;

static int setup(void **state) {
    (void)state;
    root = test_scratch_dir("import_hf");
    return 0;
}

/* The tiny synthetic model; untied gets an lm_head of its own (embed_tokens * -0.5 + 0.01). */
static cce_model *tiny(int tied) {
    cce_synth_options o;
    cce_model *m;
    assert_cce_ok(cce_synth_preset("tiny", &o));
    o.seed = 7;
    assert_cce_ok(cce_synth_model(&o, &m));
    if (!tied) {
        cce_tensor *e, *h;
        assert_cce_ok(cce_model_global_tensor(m, CCE_GT_EMBED, &e));
        assert_cce_ok(cce_tensor_clone(e, &h));
        for (int64_t i = 0; i < cce_tensor_numel(h); i++) h->data[i] = h->data[i] * -0.5f + 0.01f;
        assert_cce_ok(cce_model_put_tensor(m, "lm_head.weight", h));
    }
    return m;
}

static float round_to(int dtype, float x) {
    return dtype == CCE_ST_F16    ? cce_f16_to_f32(cce_f32_to_f16(x))
           : dtype == CCE_ST_BF16 ? cce_bf16_to_f32(cce_f32_to_bf16(x))
                                  : x;
}

/* Both tensors have the same shape and got's values are want's rounded through dtype, bit for
 * bit. */
static void expect_same_tensor(const char *name, const cce_tensor *a, const cce_tensor *b,
                               int dtype) {
    assert_true(cce_tensor_same_shape(a, b));
    for (int64_t k = 0; k < cce_tensor_numel(a); k++) {
        float r = round_to(dtype, a->data[k]);
        if (memcmp(&r, &b->data[k], 4) != 0)
            fail_msg("%s %s[%lld]: %.9g, expected %.9g", cce_st_dtype_name(dtype), name,
                     (long long)k, (double)b->data[k], (double)r);
    }
}

/* Every tensor and bias of got equals want's rounded through dtype, bit for bit; configs and
 * layer shapes (widths, kv grouping, removed) agree. */
static void expect_same(cce_model *want, cce_model *got, int dtype) {
    assert_memory_equal(cce_model_config(want), cce_model_config(got), sizeof(cce_config));
    for (int l = 0; l < cce_model_config(want)->n_layers; l++) {
        const cce_layer_shape *a = cce_model_layer(want, l), *b = cce_model_layer(got, l);
        assert_int_equal(a->removed, b->removed);
        if (a->removed) continue; /* a removed layer's widths are not exported */
        assert_int_equal(a->hidden_dim, b->hidden_dim);
        assert_int_equal(a->n_heads, b->n_heads);
        assert_int_equal(a->n_kv_heads, b->n_kv_heads);
        assert_memory_equal(a->kv_of_head, b->kv_of_head, (size_t)a->n_heads * sizeof(int32_t));
        for (int k = 0; k < CCE_LB_COUNT; k++) {
            cce_tensor *x, *y;
            assert_cce_ok(cce_model_layer_bias(want, l, (cce_layer_bias)k, &x));
            assert_cce_ok(cce_model_layer_bias(got, l, (cce_layer_bias)k, &y));
            char name[96];
            cce_layer_bias_name(l, (cce_layer_bias)k, name, sizeof name);
            if (!x != !y) fail_msg("%s: present in one model only", name);
            if (x) expect_same_tensor(name, x, y, dtype);
        }
    }
    assert_int_equal(cce_model_bias_count(want), cce_model_bias_count(got));
    assert_int_equal(cce_model_tensor_count(want), cce_model_tensor_count(got));
    for (size_t i = 0; i < cce_model_tensor_count(want); i++) {
        const char *name = cce_model_tensor_name_at(want, i);
        assert_string_equal(name, cce_model_tensor_name_at(got, i));
        cce_tensor *a, *b;
        assert_cce_ok(cce_model_tensor(want, name, &a));
        assert_cce_ok(cce_model_tensor(got, name, &b));
        expect_same_tensor(name, a, b, dtype);
    }
}

static void test_fixture_matrix(void **state) {
    (void)state;
    for (int tied = 0; tied < 2; tied++) {
        cce_model *m = tiny(tied);
        for (int dtype = CCE_ST_F32; dtype <= CCE_ST_BF16; dtype++)
            for (int sharded = 0; sharded < 2; sharded++) {
                char name[64];
                snprintf(name, sizeof name, "m_%d_%d_%d", tied, dtype, sharded);
                const char *d = test_path(root, name);
                char dir[4096];
                snprintf(dir, sizeof dir, "%s", d);
                cce_export_hf_options o = {.dtype = dtype, .shard_bytes = sharded ? 20000 : 0};
                assert_cce_ok(cce_export_hf(m, dir, &o));
                assert_int_equal(test_file_exists(test_path(dir, "model.safetensors.index.json")),
                                 sharded);
                assert_int_equal(test_file_exists(test_path(dir, "model.safetensors")), !sharded);
                if (sharded) {
                    char *index =
                        test_read_file(test_path(dir, "model.safetensors.index.json"), NULL);
                    assert_non_null(strstr(index, "model-00002-of-"));
                    free(index);
                }
                cce_model *got;
                assert_cce_ok(cce_import_hf(dir, test_path(dir, "tokenizer.bin"), &got));
                expect_same(m, got, dtype);
                assert_non_null(strstr(cce_model_source(got), cce_st_dtype_name(dtype)));
                assert_int_equal(cce_tokenizer_fingerprint(cce_model_tokenizer(got)),
                                 cce_tokenizer_fingerprint(cce_model_tokenizer(m)));
                cce_model_free(got);
                /* Without --tokenizer, tokenizer.json gives the same pieces. */
                assert_cce_ok(cce_import_hf(dir, NULL, &got));
                const cce_tokenizer *tj = cce_model_tokenizer(got), *tm = cce_model_tokenizer(m);
                assert_non_null(tj);
                for (int32_t id = 0; id < cce_tokenizer_vocab_size(tm); id++)
                    assert_string_equal(cce_tokenizer_piece(tj, id), cce_tokenizer_piece(tm, id));
                cce_model_free(got);
                /* Without either, the model has none. */
                assert_int_equal(remove(test_path(dir, "tokenizer.json")), 0);
                assert_cce_ok(cce_import_hf(dir, NULL, &got));
                assert_null(cce_model_tokenizer(got));
                cce_model_free(got);
            }
        cce_model_free(m);
    }
}

/* Writes text to dir/name. */
static void put(const char *dir, const char *name, const char *text) {
    test_write_file(test_path(dir, name), text, strlen(text));
}

/* Edits dir/config.json: sets key to the JSON value text (NULL removes the key). */
static void edit_config(const char *dir, const char *key, const char *value) {
    const char *path = test_path(dir, "config.json");
    json_t *j = json_load_file(path, 0, NULL);
    assert_non_null(j);
    if (value)
        json_object_set_new(j, key, json_loads(value, JSON_DECODE_ANY, NULL));
    else
        json_object_del(j, key);
    assert_int_equal(json_dump_file(j, path, 0), 0);
    json_decref(j);
}

static void expect_fail(const char *dir, cce_status want, const char *needle) {
    cce_model *m = NULL;
    cce_status s = cce_import_hf(dir, NULL, &m);
    if (s != want)
        fail_msg("%s: expected %s, got %s (%s)", needle, cce_strerror(want), cce_strerror(s),
                 cce_error_detail());
    if (!strstr(cce_error_detail(), needle))
        fail_msg("detail '%s' lacks '%s'", cce_error_detail(), needle);
    assert_null(m);
}

/* A fresh unsharded F32 export of the tied tiny model in dir `name`. */
static const char *fresh(const char *name) {
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s", test_path(root, name));
    cce_model *m = tiny(1);
    assert_cce_ok(cce_export_hf(m, dir, NULL));
    cce_model_free(m);
    return dir;
}

static void test_config_rules(void **state) {
    (void)state;
    const char *dir = fresh("cfg");
    cce_config cfg;
    int arch;
    const char *cfg_path = test_path(dir, "config.json");
    char path[4096];
    snprintf(path, sizeof path, "%s", cfg_path);
    assert_cce_ok(cce_hf_read_config(path, &cfg, &arch));
    assert_int_equal(arch, 0);
    assert_int_equal(cfg.dim, 32);
    assert_int_equal(cfg.tied_embeddings, 1);
    assert_true(cfg.norm_eps == 1e-5f && cfg.rope_theta == 10000.0f);

    edit_config(dir, "rope_scaling", "{\"type\":\"linear\",\"factor\":2.0}");
    expect_fail(dir, CCE_ERR_FORMAT, "rope_scaling");
    edit_config(dir, "rope_scaling", "null");
    edit_config(dir, "architectures", "[\"GPT2LMHeadModel\"]");
    expect_fail(dir, CCE_ERR_FORMAT, "architectures[0] is \"GPT2LMHeadModel\"");
    edit_config(dir, "architectures", "[\"MistralForCausalLM\"]");
    edit_config(dir, "sliding_window", "16");
    expect_fail(dir, CCE_ERR_FORMAT, "sliding_window");
    edit_config(dir, "sliding_window", "null");
    assert_cce_ok(cce_hf_read_config(path, &cfg, &arch));
    assert_int_equal(arch, 1);
    edit_config(dir, "architectures", "[\"LlamaForCausalLM\"]");
    edit_config(dir, "hidden_act", "\"gelu\"");
    expect_fail(dir, CCE_ERR_FORMAT, "hidden_act");
    edit_config(dir, "hidden_act", "\"silu\"");
    edit_config(dir, "attention_bias", "true");
    expect_fail(dir, CCE_ERR_FORMAT, "attention_bias");
    edit_config(dir, "attention_bias", "false");
    edit_config(dir, "num_hidden_layers", NULL);
    expect_fail(dir, CCE_ERR_FORMAT, "missing field 'num_hidden_layers'");
    edit_config(dir, "num_hidden_layers", "2.5");
    expect_fail(dir, CCE_ERR_FORMAT, "num_hidden_layers");
    edit_config(dir, "num_hidden_layers", "2");
    edit_config(dir, "num_key_value_heads", "3");
    expect_fail(dir, CCE_ERR_FORMAT, "n_kv_heads");
    edit_config(dir, "num_key_value_heads", "2");
    edit_config(dir, "intermediate_size", "65");
    expect_fail(dir, CCE_ERR_FORMAT, "model.layers.0.mlp.gate_proj.weight");
    edit_config(dir, "intermediate_size", "64");
    put(dir, "config.json", "{\"architectures\": [\"LlamaForCausalLM\"], ");
    expect_fail(dir, CCE_ERR_FORMAT, "malformed JSON");
    put(dir, "config.json", "[]");
    expect_fail(dir, CCE_ERR_FORMAT, "config.json");
}

/* Rewrites dir/model.safetensors (F32) without tensor `drop` (may be NULL) and with tensor
 * `add` [n0, n1] (n1 0: 1-D) of values vals (may be NULL). */
static void rewrite(const char *dir, const char *drop, const char *add, int64_t n0, int64_t n1,
                    const float *vals) {
    char path[4096];
    snprintf(path, sizeof path, "%s", test_path(dir, "model.safetensors"));
    cce_safetensors *st;
    assert_cce_ok(cce_safetensors_open(path, &st));
    size_t n = cce_safetensors_count(st);
    float **bufs = calloc(n, sizeof *bufs);
    cce_st_writer *w;
    assert_cce_ok(cce_st_writer_new(path, &w));
    for (size_t i = 0; i < n; i++) {
        const cce_st_tensor *t = cce_safetensors_at(st, i);
        if (drop && !strcmp(t->name, drop)) continue;
        bufs[i] = malloc((size_t)t->numel * sizeof(float));
        assert_cce_ok(cce_safetensors_read_f32(st, t, 0, t->numel, bufs[i]));
        assert_cce_ok(cce_st_writer_add(w, t->name, CCE_ST_F32, t->ndim, t->shape, bufs[i]));
    }
    if (add) {
        int64_t shape[2] = {n0, n1};
        assert_cce_ok(cce_st_writer_add(w, add, CCE_ST_F32, n1 ? 2 : 1, shape, vals));
    }
    cce_safetensors_close(st);
    assert_cce_ok(cce_st_writer_commit(w));
    for (size_t i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
}

static void test_bad_checkpoints(void **state) {
    (void)state;
    static float zeros[64 * 32], vals[64 * 32];
    for (int i = 0; i < 64 * 32; i++) vals[i] = 0.25f;
    const char *dir = fresh("bad");
    rewrite(dir, "model.layers.1.mlp.up_proj.weight", NULL, 0, 0, NULL);
    expect_fail(dir, CCE_ERR_FORMAT, "no tensor 'model.layers.1.mlp.up_proj.weight'");

    dir = fresh("bad");
    rewrite(dir, "model.norm.weight", "model.norm.weight", 16, 0, vals);
    expect_fail(dir, CCE_ERR_FORMAT, "tensor 'model.norm.weight' has shape [16, 1]");

    dir = fresh("bad");
    rewrite(dir, NULL, "model.layers.0.self_attn.q_proj.bias", 32, 0, zeros);
    expect_fail(dir, CCE_ERR_FORMAT,
                "unexpected tensor 'model.layers.0.self_attn.q_proj.bias' (not part of a "
                "LlamaForCausalLM model without attention_bias)");
    /* As Qwen2, a zero q bias is the same as none and a nonzero one becomes the model's. */
    edit_config(dir, "architectures", "[\"Qwen2ForCausalLM\"]");
    cce_model *m;
    assert_cce_ok(cce_import_hf(dir, NULL, &m));
    assert_int_equal(cce_model_bias_count(m), 0);
    cce_model_free(m);
    rewrite(dir, "model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.q_proj.bias", 32,
            0, vals);
    assert_cce_ok(cce_import_hf(dir, NULL, &m));
    assert_int_equal(cce_model_bias_count(m), 1);
    cce_tensor *qb;
    assert_cce_ok(cce_model_layer_bias(m, 0, CCE_LB_Q, &qb));
    assert_non_null(qb);
    assert_memory_equal(qb->data, vals, 32 * sizeof(float));
    cce_model_free(m);
    /* A bias of the wrong length, one Qwen2 does not have, and NaN. */
    rewrite(dir, "model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.q_proj.bias", 31,
            0, vals);
    expect_fail(dir, CCE_ERR_FORMAT,
                "tensor 'model.layers.0.self_attn.q_proj.bias' has 1 dims and "
                "31 values, config.json implies [32]");
    rewrite(dir, "model.layers.0.self_attn.q_proj.bias", "model.layers.1.self_attn.o_proj.bias", 32,
            0, vals);
    expect_fail(dir, CCE_ERR_FORMAT, "unexpected tensor 'model.layers.1.self_attn.o_proj.bias'");
    rewrite(dir, "model.layers.1.self_attn.o_proj.bias", "model.layers.1.x.self_attn.q_proj.bias",
            32, 0, vals);
    expect_fail(dir, CCE_ERR_FORMAT, "unexpected tensor 'model.layers.1.x.self_attn.q_proj.bias'");
    float nan_bias[32];
    for (int i = 0; i < 32; i++) nan_bias[i] = i == 9 ? NAN : 0.5f;
    rewrite(dir, "model.layers.1.x.self_attn.q_proj.bias", "model.layers.1.self_attn.k_proj.bias",
            16, 0, nan_bias);
    expect_fail(dir, CCE_ERR_NUMERIC, "model.layers.1.self_attn.k_proj.bias");

    dir = fresh("bad");
    float nan_norm[32];
    for (int i = 0; i < 32; i++) nan_norm[i] = i == 5 ? NAN : 1.0f;
    rewrite(dir, "model.norm.weight", "model.norm.weight", 32, 0, nan_norm);
    expect_fail(dir, CCE_ERR_NUMERIC, "model.norm.weight");

    /* Tied, with an lm_head equal to the embedding: accepted; different: refused. */
    dir = fresh("bad");
    {
        cce_model *t = tiny(1);
        cce_tensor *e;
        assert_cce_ok(cce_model_global_tensor(t, CCE_GT_EMBED, &e));
        rewrite(dir, NULL, "lm_head.weight", e->shape[0], e->shape[1], e->data);
        assert_cce_ok(cce_import_hf(dir, NULL, &m));
        cce_model_free(m);
        e->data[3] += 1.0f;
        rewrite(dir, "lm_head.weight", "lm_head.weight", e->shape[0], e->shape[1], e->data);
        expect_fail(dir, CCE_ERR_FORMAT, "lm_head.weight differs");
        cce_model_free(t);
    }

    /* Corrupt safetensors header: the length field points past the end. */
    dir = fresh("bad");
    {
        size_t len;
        char *raw = test_read_file(test_path(dir, "model.safetensors"), &len);
        uint64_t huge = (uint64_t)len * 2;
        memcpy(raw, &huge, 8);
        test_write_file(test_path(dir, "model.safetensors"), raw, len);
        free(raw);
        expect_fail(dir, CCE_ERR_FORMAT, "longer than the file");
        remove(test_path(dir, "model.safetensors"));
        expect_fail(dir, CCE_ERR_IO, "neither model.safetensors");
    }

    /* Sharded: a missing shard, a malformed index, a tensor placed in the wrong shard. */
    char sdir[4096];
    snprintf(sdir, sizeof sdir, "%s", test_path(root, "bad_sharded"));
    cce_model *t = tiny(0);
    cce_export_hf_options o = {.dtype = CCE_ST_BF16, .shard_bytes = 20000};
    assert_cce_ok(cce_export_hf(t, sdir, &o));
    char index_path[4096];
    snprintf(index_path, sizeof index_path, "%s", test_path(sdir, "model.safetensors.index.json"));
    char *index = test_read_file(index_path, NULL);
    json_t *j = json_loads(index, 0, NULL);
    json_t *map = json_object_get(j, "weight_map");
    const char *first = json_string_value(json_object_get(map, "model.embed_tokens.weight"));
    const char *other = json_string_value(json_object_get(map, "model.norm.weight"));
    assert_string_not_equal(first, other);
    char moved[4096];
    snprintf(moved, sizeof moved, "%s.away", test_path(sdir, other));
    rename(test_path(sdir, other), moved);
    expect_fail(sdir, CCE_ERR_IO, other);
    rename(moved, test_path(sdir, other));
    json_object_set_new(map, "model.norm.weight", json_string(first));
    json_dump_file(j, index_path, 0);
    expect_fail(sdir, CCE_ERR_FORMAT, "does not hold it");
    test_write_file(index_path, "{\"weight_map\": {", 16);
    expect_fail(sdir, CCE_ERR_FORMAT, "malformed JSON");
    test_write_file(index_path, index, strlen(index));
    assert_cce_ok(cce_import_hf(sdir, NULL, &m));
    expect_same(t, m, CCE_ST_BF16);
    cce_model_free(m);
    json_decref(j);
    free(index);
    cce_model_free(t);
}

static void test_llama2c_export_limits(void **state) {
    (void)state;
    cce_model *m = tiny(1);
    const char *out = test_path(root, "limits.bin");
    char path[4096];
    snprintf(path, sizeof path, "%s", out);
    test_write_file(path, "keep", 4);
    assert_cce_ok(cce_model_remove_layer(m, 1));
    assert_int_equal(cce_export_llama2c(m, path, NULL), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "layer 1 is removed"));
    cce_model_free(m);
    /* Any bias: the format has none. */
    m = tiny(1);
    cce_tensor *b;
    assert_cce_ok(cce_tensor_new_1d(64, &b));
    b->data[3] = 0.5f;
    assert_cce_ok(cce_model_set_layer_bias(m, 1, CCE_LB_UP, b));
    assert_int_equal(cce_export_llama2c(m, path, NULL), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "bias layers.1.mlp.up_proj.bias"));
    assert_non_null(strstr(cce_error_detail(), "llama2.c format has no biases"));
    cce_model_free(m);
    cce_synth_options o;
    assert_cce_ok(cce_synth_preset("tiny", &o));
    o.cfg.rope_theta = 500000.0f;
    assert_cce_ok(cce_synth_model(&o, &m));
    assert_int_equal(cce_export_llama2c(m, path, NULL), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "rope_theta"));
    cce_model_free(m);
    size_t len;
    char *kept = test_read_file(path, &len);
    assert_int_equal(len, 4); /* the existing file is untouched */
    free(kept);
}

/* ---- Biases ------------------------------------------------------------------------------- */

/* Gives every layer of m the biases whose bit is set in mask (1 << cce_layer_bias): values
 * seeded by layer and kind, small and mostly nonzero. */
static void add_biases(cce_model *m, unsigned mask) {
    const cce_config *c = cce_model_config(m);
    for (int l = 0; l < c->n_layers; l++) {
        const cce_layer_shape *ls = cce_model_layer(m, l);
        if (ls->removed) continue;
        for (int b = 0; b < CCE_LB_COUNT; b++) {
            if (!(mask & (1u << b))) continue;
            cce_tensor *w;
            assert_cce_ok(
                cce_model_layer_tensor(m, l, cce_layer_bias_weight((cce_layer_bias)b), &w));
            cce_tensor *t;
            assert_cce_ok(cce_tensor_new_1d(w->shape[0], &t));
            for (int64_t i = 0; i < t->shape[0]; i++)
                t->data[i] = 0.05f * sinf(0.7f * (float)i + 1.3f * (float)b + 2.1f * (float)l);
            assert_cce_ok(cce_model_set_layer_bias(m, l, (cce_layer_bias)b, t));
        }
    }
}

/* A variant of m whose tensors and biases are rounded through dtype: what a checkpoint of that
 * dtype holds. The caller frees it before m. */
static cce_model *rounded(cce_model *m, int dtype) {
    cce_model *v;
    assert_cce_ok(cce_model_variant_new(m, &v));
    for (size_t i = 0; i < cce_model_tensor_count(m); i++) {
        const char *name = cce_model_tensor_name_at(m, i);
        cce_tensor *t, *r;
        assert_cce_ok(cce_model_tensor(m, name, &t));
        assert_cce_ok(cce_tensor_clone(t, &r));
        for (int64_t k = 0; k < cce_tensor_numel(r); k++) r->data[k] = round_to(dtype, r->data[k]);
        assert_cce_ok(cce_model_put_tensor(v, name, r));
    }
    for (int l = 0; l < cce_model_config(m)->n_layers; l++)
        for (int b = 0; b < CCE_LB_COUNT; b++) {
            cce_tensor *t, *r;
            assert_cce_ok(cce_model_layer_bias(m, l, (cce_layer_bias)b, &t));
            if (!t) continue;
            assert_cce_ok(cce_tensor_clone(t, &r));
            for (int64_t k = 0; k < r->shape[0]; k++) r->data[k] = round_to(dtype, r->data[k]);
            assert_cce_ok(cce_model_set_layer_bias(v, l, (cce_layer_bias)b, r));
        }
    return v;
}

/* Logits [T, vocab] of a window of T tokens (malloc'd). */
static float *logits_of(cce_model *m, int T) {
    int vocab = cce_model_config(m)->vocab_size;
    int32_t tok[64];
    for (int t = 0; t < T; t++) tok[t] = (int32_t)(3 + (t * 41 + 5) % (vocab - 3));
    float *out = malloc((size_t)T * (size_t)vocab * sizeof *out);
    cce_forward *f;
    assert_cce_ok(cce_forward_new(m, T, &f));
    assert_cce_ok(cce_forward_window(f, tok, T, out));
    cce_forward_free(f);
    return out;
}

static void expect_same_logits(cce_model *a, cce_model *b) {
    const int T = 24;
    size_t n = (size_t)T * (size_t)cce_model_config(a)->vocab_size;
    float *x = logits_of(a, T), *y = logits_of(b, T);
    for (size_t i = 0; i < n; i++)
        if (memcmp(&x[i], &y[i], 4) != 0)
            fail_msg("logit %zu: %.9g vs %.9g", i, (double)x[i], (double)y[i]);
    free(x);
    free(y);
}

/* Writes m as a Qwen2 checkpoint by hand (not through cce_export_hf): config.json and one
 * safetensors file of every tensor and bias under its Hugging Face name, in dtype. */
static void write_qwen2(cce_model *m, const char *dir, int dtype) {
    const cce_config *c = cce_model_config(m);
    mkdir(dir, 0777);
    json_t *j = json_pack(
        "{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:b, "
        "s:s}",
        "architectures", "Qwen2ForCausalLM", "model_type", "qwen2", "hidden_size", (int)c->dim,
        "intermediate_size", (int)c->hidden_dim, "num_hidden_layers", (int)c->n_layers,
        "num_attention_heads", (int)c->n_heads, "num_key_value_heads", (int)c->n_kv_heads,
        "vocab_size", (int)c->vocab_size, "max_position_embeddings", (int)c->seq_len, "rope_theta",
        (double)c->rope_theta, "rms_norm_eps", (double)c->norm_eps, "tie_word_embeddings",
        (int)c->tied_embeddings, "use_sliding_window", 0, "hidden_act", "silu");
    assert_non_null(j);
    assert_int_equal(json_dump_file(j, test_path(dir, "config.json"), 0), 0);
    json_decref(j);
    cce_st_writer *w;
    char path[4096], hname[160];
    snprintf(path, sizeof path, "%s", test_path(dir, "model.safetensors"));
    assert_cce_ok(cce_st_writer_new(path, &w));
    for (size_t i = 0; i < cce_model_tensor_count(m); i++) {
        const char *name = cce_model_tensor_name_at(m, i);
        cce_tensor *t;
        assert_cce_ok(cce_model_tensor(m, name, &t));
        snprintf(hname, sizeof hname, "%s%s", strcmp(name, "lm_head.weight") ? "model." : "", name);
        assert_cce_ok(cce_st_writer_add(w, hname, dtype, t->ndim, t->shape, t->data));
    }
    for (int l = 0; l < c->n_layers; l++)
        for (int b = 0; b < CCE_LB_COUNT; b++) {
            cce_tensor *t;
            assert_cce_ok(cce_model_layer_bias(m, l, (cce_layer_bias)b, &t));
            if (!t) continue;
            char name[96];
            cce_layer_bias_name(l, (cce_layer_bias)b, name, sizeof name);
            snprintf(hname, sizeof hname, "model.%s", name);
            assert_cce_ok(cce_st_writer_add(w, hname, dtype, 1, t->shape, t->data));
        }
    assert_cce_ok(cce_st_writer_commit(w));
}

/* A Qwen2 checkpoint with nonzero q/k/v biases (GQA: k/v biases shorter than q's), written here
 * in F32 and BF16: the import equals the model bit for bit after the dtype's rounding (a k bias
 * permuted like llama2.c's interleaved rows would not), and computes the same logits as the
 * model the checkpoint holds. */
static void test_qwen2_biases(void **state) {
    (void)state;
    for (int tied = 0; tied < 2; tied++) {
        cce_model *m = tiny(tied);
        add_biases(m, 1u << CCE_LB_Q | 1u << CCE_LB_K | 1u << CCE_LB_V);
        for (int dtype = CCE_ST_F32; dtype <= CCE_ST_BF16; dtype += CCE_ST_BF16 - CCE_ST_F32) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s", test_path(root, tied ? "qwen2_tied" : "qwen2"));
            write_qwen2(m, dir, dtype);
            cce_model *got;
            assert_cce_ok(cce_import_hf(dir, NULL, &got));
            assert_int_equal(cce_model_bias_count(got), 3 * 2);
            expect_same(m, got, dtype);
            cce_model *want = rounded(m, dtype);
            expect_same_logits(want, got);
            /* The biases matter: without them the logits differ. */
            cce_model *nob;
            assert_cce_ok(cce_model_variant_new(got, &nob));
            assert_cce_ok(cce_model_set_layer_bias(nob, 1, CCE_LB_K, NULL));
            float *x = logits_of(got, 8), *y = logits_of(nob, 8);
            assert_true(memcmp(x, y, 8 * 300 * sizeof(float)) != 0);
            free(x), free(y);
            cce_model_free(nob);
            /* export hf writes it back as Qwen2, and that imports bit for bit. */
            char back[4096];
            snprintf(back, sizeof back, "%s", test_path(root, "qwen2_back"));
            cce_export_hf_options o = {.dtype = dtype};
            assert_cce_ok(cce_export_hf(got, back, &o));
            char *cfg = test_read_file(test_path(back, "config.json"), NULL);
            assert_non_null(strstr(cfg, "\"Qwen2ForCausalLM\""));
            assert_null(strstr(cfg, "attention_bias"));
            free(cfg);
            cce_model *again;
            assert_cce_ok(cce_import_hf(back, NULL, &again));
            expect_same(got, again, CCE_ST_F32);
            char ha[65], hb[65];
            assert_cce_ok(cce_model_weights_sha256(got, ha));
            assert_cce_ok(cce_model_weights_sha256(again, hb));
            assert_string_equal(ha, hb);
            cce_model_free(again);
            cce_model_free(want);
            cce_model_free(got);
        }
        cce_model_free(m);
    }
}

/* Reads key of dir/config.json as JSON text (malloc'd; "absent" when missing). */
static char *config_value(const char *dir, const char *key) {
    json_t *j = json_load_file(test_path(dir, "config.json"), 0, NULL);
    assert_non_null(j);
    json_t *v = json_object_get(j, key);
    char *text = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : strdup("absent");
    json_decref(j);
    return text;
}

static void expect_config(const char *dir, const char *key, const char *want) {
    char *got = config_value(dir, key);
    if (strcmp(got, want) != 0) fail_msg("config.json %s = %s, expected %s", key, got, want);
    free(got);
}

/* Llama with attention_bias / mlp_bias: every bias set exported and imported bit for bit; a
 * partial set is completed with zeros on export (transformers expects all) and those zeros are
 * not biases after import; required biases missing and unannounced ones fail. */
static void test_llama_biases(void **state) {
    (void)state;
    static const struct {
        unsigned mask;
        const char *arch, *attention_bias, *mlp_bias;
    } cases[] = {
        {0x7f, "[\"LlamaForCausalLM\"]", "true", "true"},
        {1u << CCE_LB_O | 1u << CCE_LB_DOWN, "[\"LlamaForCausalLM\"]", "true", "true"},
        {1u << CCE_LB_Q | 1u << CCE_LB_O, "[\"LlamaForCausalLM\"]", "true", "false"},
        {1u << CCE_LB_UP, "[\"LlamaForCausalLM\"]", "false", "true"},
        {1u << CCE_LB_K, "[\"Qwen2ForCausalLM\"]", "absent", "absent"},
        {0, "[\"LlamaForCausalLM\"]", "false", "false"},
    };
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", test_path(root, "llama_bias"));
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        cce_model *m = tiny((int)(c % 2));
        add_biases(m, cases[c].mask);
        cce_export_hf_options o = {.dtype = CCE_ST_F32, .shard_bytes = c == 0 ? 30000 : 0};
        assert_cce_ok(cce_export_hf(m, dir, &o));
        expect_config(dir, "architectures", cases[c].arch);
        expect_config(dir, "attention_bias", cases[c].attention_bias);
        expect_config(dir, "mlp_bias", cases[c].mlp_bias);
        cce_model *got;
        assert_cce_ok(cce_import_hf(dir, NULL, &got));
        expect_same(m, got, CCE_ST_F32);
        expect_same_logits(m, got);
        cce_model_free(got);
        cce_model_free(m);
    }
    /* The full set in a fresh checkpoint: a required bias missing, then the flag off. */
    cce_model *m = tiny(1);
    add_biases(m, 0x7f);
    assert_cce_ok(cce_export_hf(m, dir, NULL));
    rewrite(dir, "model.layers.1.mlp.gate_proj.bias", NULL, 0, 0, NULL);
    expect_fail(dir, CCE_ERR_FORMAT,
                "no tensor 'model.layers.1.mlp.gate_proj.bias' (config.json: mlp_bias)");
    edit_config(dir, "mlp_bias", "false");
    expect_fail(dir, CCE_ERR_FORMAT,
                "unexpected tensor 'model.layers.0.mlp.gate_proj.bias' (not part of a "
                "LlamaForCausalLM model without mlp_bias)");
    edit_config(dir, "mlp_bias", "\"yes\"");
    expect_fail(dir, CCE_ERR_FORMAT, "field 'mlp_bias' must be true or false");
    edit_config(dir, "architectures", "[\"MistralForCausalLM\"]");
    edit_config(dir, "mlp_bias", "true");
    rewrite(dir, "model.layers.0.self_attn.o_proj.bias", NULL, 0, 0, NULL);
    expect_fail(dir, CCE_ERR_FORMAT,
                "no tensor 'model.layers.0.self_attn.o_proj.bias' (config.json: attention_bias)");
    cce_model_free(m);
}

/* ---- Structured variants ----------------------------------------------------------------- */

#define SEGS    4
#define SEG_LEN 31

static cce_model *structured_base(void) {
    cce_synth_options o;
    assert_cce_ok(cce_synth_preset("stories260K", &o));
    o.seed = 29;
    o.cfg.seq_len = 32;
    cce_model *m;
    assert_cce_ok(cce_synth_model(&o, &m));
    return m;
}

/* A variant of base compressed by the strategies of specs in sequence (calibration on seeded
 * random tokens). */
static cce_model *compressed(cce_model *base, const char *const *specs, size_t n) {
    static int32_t tokens[SEGS * SEG_LEN];
    for (size_t i = 0; i < SEGS * SEG_LEN; i++) tokens[i] = (int32_t)(3 + (i * 7919 + 11) % 500);
    cce_calib_data d = {.tokens = tokens, .n_segments = SEGS, .seg_len = SEG_LEN};
    cce_calib_data_hash(&d);
    cce_strategy_instance *inst[4];
    for (size_t k = 0; k < n; k++) {
        const cce_strategy *s;
        cce_params *p;
        assert_cce_ok(cce_strategy_parse_spec(specs[k], &s, &p));
        assert_cce_ok(cce_strategy_instance_new(s, p, &inst[k]));
        cce_params_free(p);
    }
    cce_compress_options o;
    cce_compress_options_init(&o);
    o.use_cache = 0;
    o.output_error = 0;
    cce_model *v;
    cce_compress_result res;
    assert_cce_ok(cce_compress(base, inst, n, NULL, 0, &d, &o, &v, &res));
    cce_compress_result_clear(&res);
    for (size_t k = 0; k < n; k++) cce_strategy_instance_free(inst[k]);
    return v;
}

/* Structured variants (FFN neurons, heads with a renumbered kv grouping, ShortGPT, both, and
 * with biases) -> export hf -> import hf: same config, layer shapes, tensors and logits; the
 * config keeps the uniform fields and carries the note. */
static void test_structured_roundtrip(void **state) {
    (void)state;
    static const struct {
        const char *specs[2];
        size_t n;
        int biased;
    } cases[] = {
        {{"structured:ratio=0.5,unit=ffn"}, 1, 0},
        {{"structured:ratio=0.5,unit=heads"}, 1, 0},
        {{"shortgpt:layers=2"}, 1, 0},
        {{"structured:ratio=0.25,unit=both", "shortgpt:layers=1"}, 2, 1},
    };
    cce_model *base = structured_base(), *biased = structured_base();
    add_biases(biased, 0x7f);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", test_path(root, "structured"));
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        cce_model *v = compressed(cases[c].biased ? biased : base, cases[c].specs, cases[c].n);
        int removed = 0, narrow = 0, odd_kv = 0, narrow_removed = 0;
        const cce_config *cfg = cce_model_config(v);
        for (int l = 0; l < cfg->n_layers; l++) {
            const cce_layer_shape *ls = cce_model_layer(v, l);
            removed += ls->removed;
            narrow +=
                !ls->removed && (ls->hidden_dim < cfg->hidden_dim || ls->n_heads < cfg->n_heads);
            odd_kv += !ls->removed && ls->n_kv_heads < cfg->n_kv_heads;
            narrow_removed +=
                ls->removed && (ls->hidden_dim < cfg->hidden_dim || ls->n_heads < cfg->n_heads);
        }
        assert_true(removed || narrow); /* the case does change the structure */
        cce_export_hf_options o = {.dtype = CCE_ST_F32, .shard_bytes = c == 1 ? 100000 : 0};
        assert_cce_ok(cce_export_hf(v, dir, &o));
        char n_kept[16];
        snprintf(n_kept, sizeof n_kept, "%d", cfg->n_layers - removed);
        expect_config(dir, "num_hidden_layers", n_kept);
        expect_config(dir, "intermediate_size", "172");
        expect_config(dir, "num_attention_heads", "8");
        expect_config(dir, "num_key_value_heads", "4");
        char *note = config_value(dir, "cce_note");
        assert_non_null(strstr(note, "cce import hf"));
        free(note);
        char *shapes = config_value(dir, "cce_layer_shapes");
        char *gone = config_value(dir, "cce_removed_layers");
        assert_int_equal(strcmp(shapes, "absent") != 0, narrow > 0);
        assert_int_equal(strcmp(gone, "absent") != 0, removed > 0);
        char *gone_shapes = config_value(dir, "cce_removed_layer_shapes");
        assert_int_equal(strcmp(gone_shapes, "absent") != 0, narrow_removed > 0);
        free(gone_shapes);
        if (c == 1) assert_true(odd_kv > 0);
        if (c == 1) assert_non_null(strstr(shapes, "\"kv_of_head\""));
        free(shapes);
        free(gone);
        cce_model *got; /* with the llama2.c tokenizer, so that the digests can agree */
        assert_cce_ok(cce_import_hf(dir, test_path(dir, "tokenizer.bin"), &got));
        expect_same(v, got, CCE_ST_F32);
        expect_same_logits(v, got);
        /* Equal digests: a removed layer narrowed first keeps its widths too. */
        char ha[65], hb[65];
        assert_cce_ok(cce_model_weights_sha256(v, ha));
        assert_cce_ok(cce_model_weights_sha256(got, hb));
        assert_string_equal(ha, hb);
        /* llama2.c stays refused for such models. */
        assert_int_equal(cce_export_llama2c(got, test_path(root, "structured.bin"), NULL),
                         CCE_ERR_ARG);
        cce_model_free(got);
        cce_model_free(v);
    }
    cce_model_free(biased);
    cce_model_free(base);
}

/* A corrupted layout note fails naming config.json and the field; a note that disagrees with
 * the tensors fails on the tensor's shape. */
static void test_bad_note(void **state) {
    (void)state;
    cce_model *base = structured_base();
    const char *specs[] = {"structured:ratio=0.5,unit=heads", "shortgpt:layers=1"};
    cce_model *v = compressed(base, specs, 2);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", test_path(root, "bad_note"));
    assert_cce_ok(cce_export_hf(v, dir, NULL));
    char *shapes = config_value(dir, "cce_layer_shapes"),
         *gone = config_value(dir, "cce_removed_layers"),
         *gone_shapes = config_value(dir, "cce_removed_layer_shapes");
    assert_string_not_equal(gone_shapes, "absent"); /* the removed layer had been narrowed */
    json_t *arr = json_loads(shapes, 0, NULL);
    assert_int_equal(json_array_size(arr), 4);
    static const struct {
        const char *key, *value, *want;
    } cases[] = {
        {"cce_layer_shapes", "{}", "cce_layer_shapes must be an array of num_hidden_layers = 4"},
        {"cce_removed_layers", "3", "cce_removed_layers must be an array"},
        {"cce_removed_layers", "[1, 1]", "cce_removed_layers must be strictly increasing"},
        {"cce_removed_layers", "[5]", "cce_removed_layers[0] = 5 is outside [0, 4]"},
        {"cce_removed_layers", "[\"2\"]", "cce_removed_layers[0] must be an integer"},
        {"cce_removed_layer_shapes", "[]",
         "cce_removed_layer_shapes must be an array of the length of cce_removed_layers = 1"},
        {"cce_removed_layer_shapes", "[{\"intermediate_size\": 172}]",
         "cce_removed_layer_shapes[0].num_attention_heads is missing"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        edit_config(dir, cases[c].key, cases[c].value);
        expect_fail(dir, CCE_ERR_FORMAT, cases[c].want);
        expect_fail(dir, CCE_ERR_FORMAT, "config.json");
        edit_config(dir, "cce_layer_shapes", shapes);
        edit_config(dir, "cce_removed_layers", gone);
        edit_config(dir, "cce_removed_layer_shapes", gone_shapes);
    }
    /* Edits of one layer's object. */
    static const struct {
        const char *field, *value, *want;
    } fields[] = {
        {"intermediate_size", "173",
         "cce_layer_shapes[2].intermediate_size = 173 is outside [1, 172]"},
        {"intermediate_size", "0", "cce_layer_shapes[2].intermediate_size = 0 is outside"},
        {"num_attention_heads", "2.5",
         "cce_layer_shapes[2].num_attention_heads must be an integer"},
        {"num_key_value_heads", "9",
         "cce_layer_shapes[2].num_key_value_heads = 9 is outside [1, 4]"},
        {"num_key_value_heads", NULL, "cce_layer_shapes[2].num_key_value_heads is missing"},
        {"kv_of_head", "[0]", "cce_layer_shapes[2].kv_of_head must be an array of"},
        {"kv_of_head", "[0, 0, 0, 7]", "cce_layer_shapes[2].kv_of_head[3] = 7 is outside [0, "},
        {"num_attention_heads", "3",
         "cce_layer_shapes[2].kv_of_head must be an array of "
         "num_attention_heads = 3"},
    };
    for (size_t c = 0; c < sizeof fields / sizeof fields[0]; c++) {
        json_t *copy = json_deep_copy(arr), *layer = json_array_get(copy, 2);
        if (fields[c].value)
            json_object_set_new(layer, fields[c].field,
                                json_loads(fields[c].value, JSON_DECODE_ANY, NULL));
        else
            json_object_del(layer, fields[c].field);
        char *text = json_dumps(copy, JSON_COMPACT);
        edit_config(dir, "cce_layer_shapes", text);
        expect_fail(dir, CCE_ERR_FORMAT, fields[c].want);
        expect_fail(dir, CCE_ERR_FORMAT, "config.json");
        free(text);
        json_decref(copy);
    }
    /* Valid values that disagree with the tensors. */
    json_t *copy = json_deep_copy(arr);
    json_t *layer = json_array_get(copy, 1);
    json_int_t h = json_integer_value(json_object_get(layer, "intermediate_size"));
    json_object_set_new(layer, "intermediate_size", json_integer(h - 1));
    char *text = json_dumps(copy, JSON_COMPACT);
    edit_config(dir, "cce_layer_shapes", text);
    expect_fail(dir, CCE_ERR_FORMAT, "config.json (cce_layer_shapes) implies");
    free(text);
    json_decref(copy);
    /* The layer shapes dropped: the narrow tensors no longer fit the uniform fields. */
    edit_config(dir, "cce_layer_shapes", NULL);
    expect_fail(dir, CCE_ERR_FORMAT, "has shape");
    edit_config(dir, "cce_layer_shapes", shapes);
    cce_model *got;
    assert_cce_ok(cce_import_hf(dir, NULL, &got)); /* restored: it imports again */
    expect_same(v, got, CCE_ST_F32);
    cce_model_free(got);
    json_decref(arr);
    free(shapes);
    free(gone);
    free(gone_shapes);
    cce_model_free(v);
    cce_model_free(base);
}

/* stories260K: llama2c -> hf (F32) -> model -> llama2c gives the same tensors bit for bit and
 * the same checkpoint bytes, except the legacy freq_cis tables the importer ignores (recomputed
 * from rope_theta, within 1e-7); tokenizer.bin comes back byte for byte. */
static void test_roundtrip_stories260K(void **state) {
    (void)state;
    const char *p = test_require_mirror_file("models/stories260K/stories260K.bin");
    if (!p) return;
    char bin[4096], tok[4096], hf[4096], back[4096], back_tok[4096];
    snprintf(bin, sizeof bin, "%s", p);
    if (!(p = test_require_mirror_file("models/stories260K/tok512.bin"))) return;
    snprintf(tok, sizeof tok, "%s", p);
    snprintf(hf, sizeof hf, "%s", test_path(root, "stories_hf"));
    snprintf(back, sizeof back, "%s", test_path(root, "back.bin"));
    snprintf(back_tok, sizeof back_tok, "%s", test_path(root, "back_tok.bin"));
    cce_model *a, *b;
    assert_cce_ok(cce_import_llama2c(bin, tok, &a));
    assert_cce_ok(cce_export_hf(a, hf, NULL));
    assert_cce_ok(cce_import_hf(hf, test_path(hf, "tokenizer.bin"), &b));
    expect_same(a, b, CCE_ST_F32);
    char ha[65], hb[65];
    assert_cce_ok(cce_model_weights_sha256(a, ha));
    assert_cce_ok(cce_model_weights_sha256(b, hb));
    assert_string_equal(ha, hb);
    assert_cce_ok(cce_export_llama2c(b, back, back_tok));
    size_t la, lb, ta, tb;
    unsigned char *x = (unsigned char *)test_read_file(bin, &la),
                  *y = (unsigned char *)test_read_file(back, &lb);
    char *t1 = test_read_file(tok, &ta), *t2 = test_read_file(back_tok, &tb);
    assert_int_equal(la, lb);
    assert_int_equal(ta, tb);
    assert_memory_equal(t1, t2, ta);
    const cce_config *c = cce_model_config(a);
    size_t freq_at = la - (size_t)c->seq_len * c->head_dim * 4; /* tied: freq_cis is last */
    assert_memory_equal(x, y, freq_at);
    for (size_t i = freq_at; i < la; i += 4) {
        float p, q;
        memcpy(&p, x + i, 4);
        memcpy(&q, y + i, 4);
        if (fabsf(p - q) > 1e-7f) fail_msg("freq_cis float %zu: %g vs %g", (i - freq_at) / 4, p, q);
    }
    free(x), free(y), free(t1), free(t2);
    cce_model_free(a);
    cce_model_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_matrix),
        cmocka_unit_test(test_config_rules),
        cmocka_unit_test(test_bad_checkpoints),
        cmocka_unit_test(test_llama2c_export_limits),
        cmocka_unit_test(test_roundtrip_stories260K),
        cmocka_unit_test(test_qwen2_biases),
        cmocka_unit_test(test_llama_biases),
        cmocka_unit_test(test_structured_roundtrip),
        cmocka_unit_test(test_bad_note),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
