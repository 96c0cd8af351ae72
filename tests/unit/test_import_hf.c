/* Hugging Face import and export: config.json rules, fixtures written by the exporter in
 * F32/F16/BF16, sharded and unsharded, tied and untied, read back bit for bit (after the dtype's
 * rounding); corrupt checkpoints; llama2.c export; the stories260K round trip
 * llama2c -> hf -> llama2c. */
#include "test_support.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"
#include "model.h"
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

/* Every tensor of got equals want's rounded through dtype, bit for bit; configs agree. */
static void expect_same(cce_model *want, cce_model *got, int dtype) {
    assert_memory_equal(cce_model_config(want), cce_model_config(got), sizeof(cce_config));
    assert_int_equal(cce_model_tensor_count(want), cce_model_tensor_count(got));
    for (size_t i = 0; i < cce_model_tensor_count(want); i++) {
        const char *name = cce_model_tensor_name_at(want, i);
        assert_string_equal(name, cce_model_tensor_name_at(got, i));
        cce_tensor *a, *b;
        assert_cce_ok(cce_model_tensor(want, name, &a));
        assert_cce_ok(cce_model_tensor(got, name, &b));
        assert_true(cce_tensor_same_shape(a, b));
        for (int64_t k = 0; k < cce_tensor_numel(a); k++) {
            float r = round_to(dtype, a->data[k]);
            if (memcmp(&r, &b->data[k], 4) != 0)
                fail_msg("%s %s[%lld]: %.9g, expected %.9g", cce_st_dtype_name(dtype), name,
                         (long long)k, (double)b->data[k], (double)r);
        }
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
    expect_fail(dir, CCE_ERR_FORMAT, "unexpected tensor 'model.layers.0.self_attn.q_proj.bias'");
    /* As Qwen2, zero q biases are accepted and nonzero ones refused. */
    edit_config(dir, "architectures", "[\"Qwen2ForCausalLM\"]");
    cce_model *m;
    assert_cce_ok(cce_import_hf(dir, NULL, &m));
    cce_model_free(m);
    rewrite(dir, "model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.q_proj.bias", 32,
            0, vals);
    expect_fail(dir, CCE_ERR_FORMAT, "nonzero attention biases");

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
    assert_int_equal(cce_export_hf(m, test_path(root, "limits_hf"), NULL), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "layer 1 is removed"));
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
        cmocka_unit_test(test_fixture_matrix),        cmocka_unit_test(test_config_rules),
        cmocka_unit_test(test_bad_checkpoints),       cmocka_unit_test(test_llama2c_export_limits),
        cmocka_unit_test(test_roundtrip_stories260K),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
