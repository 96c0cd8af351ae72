/* The in-memory model: config validation, tensor names, access, put_tensor, enumeration and
 * parameter counts. */
#include "test_support.h"

#include <stdio.h>
#include <string.h>

#include "model.h"

static cce_config tiny_config(void) {
    cce_config c = {.dim = 32,
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
    return c;
}

/* Expects validation to fail with RANGE and a message naming field and origin. */
static void expect_invalid(cce_config c, const char *field) {
    cce_status s = cce_config_validate(&c, "my.h5");
    assert_int_equal(s, CCE_ERR_RANGE);
    const char *d = cce_error_detail();
    if (!strstr(d, field) || !strstr(d, "my.h5"))
        fail_msg("detail '%s' does not name '%s' and the origin", d, field);
}

static void test_config_validate(void **state) {
    (void)state;
    cce_config c = tiny_config();
    assert_cce_ok(cce_config_validate(&c, "my.h5"));

    c = tiny_config(), c.dim = -64, expect_invalid(c, "dim");
    c = tiny_config(), c.dim = 0, expect_invalid(c, "dim");
    c = tiny_config(), c.hidden_dim = (1 << 20) + 1, expect_invalid(c, "hidden_dim");
    c = tiny_config(), c.n_layers = 1025, expect_invalid(c, "n_layers");
    c = tiny_config(), c.n_kv_heads = 3, expect_invalid(c, "n_kv_heads");
    c = tiny_config(), c.head_dim = 7, expect_invalid(c, "head_dim");
    c = tiny_config(), c.vocab_size = (1 << 22) + 1, expect_invalid(c, "vocab_size");
    c = tiny_config(), c.seq_len = 0, expect_invalid(c, "seq_len");
    c = tiny_config(), c.rope_theta = 0, expect_invalid(c, "rope_theta");
    c = tiny_config(), c.rope_theta = 0.0f / 0.0f, expect_invalid(c, "rope_theta");
    c = tiny_config(), c.norm_eps = -1e-5f, expect_invalid(c, "norm_eps");
    c = tiny_config(), c.tied_embeddings = 2, expect_invalid(c, "tied_embeddings");

    cce_model *m = NULL;
    c = tiny_config(), c.n_heads = 0;
    assert_int_equal(cce_model_new(&c, &m), CCE_ERR_RANGE);
    assert_null(m);
}

static void test_names(void **state) {
    (void)state;
    char buf[64];
    cce_layer_tensor_name(3, CCE_LT_DOWN, buf, sizeof buf);
    assert_string_equal(buf, "layers.3.mlp.down_proj.weight");
    cce_layer_tensor_name(0, CCE_LT_Q, buf, sizeof buf);
    assert_string_equal(buf, "layers.0.self_attn.q_proj.weight");
    cce_layer_tensor_name(11, CCE_LT_FFN_NORM, buf, sizeof buf);
    assert_string_equal(buf, "layers.11.post_attention_layernorm.weight");
    cce_layer_tensor_name(1, CCE_LT_ATTN_NORM, buf, sizeof buf);
    assert_string_equal(buf, "layers.1.input_layernorm.weight");
    assert_string_equal(cce_global_tensor_name(CCE_GT_EMBED), "embed_tokens.weight");
    assert_string_equal(cce_global_tensor_name(CCE_GT_NORM), "norm.weight");
    assert_string_equal(cce_global_tensor_name(CCE_GT_LM_HEAD), "lm_head.weight");
}

static void test_new_shapes_and_counts(void **state) {
    (void)state;
    cce_config c = tiny_config();
    cce_model *m;
    assert_cce_ok(cce_model_new(&c, &m));
    assert_null(cce_model_path(m));
    assert_null(cce_model_tokenizer(m));
    assert_string_equal(cce_model_source(m), "");
    cce_model_set_source(m, "unit-test");
    assert_string_equal(cce_model_source(m), "unit-test");

    /* Tied: embed, 2 x 9 block tensors, norm; no lm_head. */
    assert_int_equal(cce_model_tensor_count(m), 1 + 2 * 9 + 1);
    assert_string_equal(cce_model_tensor_name_at(m, 0), "embed_tokens.weight");
    assert_string_equal(cce_model_tensor_name_at(m, 1), "layers.0.input_layernorm.weight");
    assert_string_equal(cce_model_tensor_name_at(m, 9), "layers.0.mlp.down_proj.weight");
    assert_string_equal(cce_model_tensor_name_at(m, 19), "norm.weight");
    assert_null(cce_model_tensor_name_at(m, 20));

    int nd;
    int64_t sh[4];
    cce_model_tensor_shape_at(m, 2, &nd, sh); /* layers.0 q_proj */
    assert_int_equal(nd, 2);
    assert_int_equal(sh[0], 4 * 8);
    assert_int_equal(sh[1], 32);
    cce_model_tensor_shape_at(m, 3, &nd, sh); /* k_proj: n_kv_heads * head_dim */
    assert_int_equal(sh[0], 2 * 8);
    cce_model_tensor_shape_at(m, 5, &nd, sh); /* o_proj */
    assert_int_equal(sh[0], 32);
    assert_int_equal(sh[1], 32);
    cce_model_tensor_shape_at(m, 9, &nd, sh); /* down_proj */
    assert_int_equal(sh[0], 32);
    assert_int_equal(sh[1], 64);

    const cce_layer_shape *l = cce_model_layer(m, 1);
    assert_non_null(l);
    assert_int_equal(l->hidden_dim, 64);
    assert_int_equal(l->n_heads, 4);
    assert_int_equal(l->n_kv_heads, 2);
    assert_int_equal(l->kv_of_head[0], 0);
    assert_int_equal(l->kv_of_head[1], 0);
    assert_int_equal(l->kv_of_head[2], 1);
    assert_int_equal(l->kv_of_head[3], 1);
    assert_int_equal(l->removed, 0);
    assert_null(cce_model_layer(m, 2));
    assert_null(cce_model_layer(m, -1));

    /* Per layer: 2 norms + q,o (32x32) + k,v (16x32) + 3 FFN (64x32). */
    int64_t per_layer = 2 * 32 + 2 * 32 * 32 + 2 * 16 * 32 + 3 * 64 * 32;
    assert_int_equal(cce_model_layer_params(m, 0), per_layer);
    assert_int_equal(cce_model_total_params(m), 300 * 32 + 2 * per_layer + 32);

    /* Access by kind and by name reach the same tensor; lm_head resolves to the embedding. */
    cce_tensor *a, *b;
    assert_cce_ok(cce_model_layer_tensor(m, 1, CCE_LT_UP, &a));
    assert_cce_ok(cce_model_tensor(m, "layers.1.mlp.up_proj.weight", &b));
    assert_ptr_equal(a, b);
    assert_int_equal(a->shape[0], 64);
    assert_cce_ok(cce_model_global_tensor(m, CCE_GT_LM_HEAD, &a));
    assert_cce_ok(cce_model_global_tensor(m, CCE_GT_EMBED, &b));
    assert_ptr_equal(a, b);
    assert_cce_ok(cce_model_tensor(m, "lm_head.weight", &a));
    assert_ptr_equal(a, b);
    assert_int_equal(cce_model_tensor_is_loaded(m, "norm.weight"), 1);
    assert_int_equal(cce_model_tensor_is_loaded(m, "nothing"), 0);

    /* Unknown names fail and say which. */
    assert_int_equal(cce_model_tensor(m, "layers.2.mlp.up_proj.weight", &a), CCE_ERR_NOT_FOUND);
    assert_non_null(strstr(cce_error_detail(), "layers.2.mlp.up_proj.weight"));
    assert_int_equal(cce_model_tensor(m, "layers.01.mlp.up_proj.weight", &a), CCE_ERR_NOT_FOUND);
    assert_int_equal(cce_model_tensor(m, "layers.1.mlp.up_proj", &a), CCE_ERR_NOT_FOUND);
    assert_int_equal(cce_model_layer_tensor(m, 5, CCE_LT_Q, &a), CCE_ERR_NOT_FOUND);
    assert_int_equal(cce_model_layer_tensor(m, 0, CCE_LT_COUNT, &a), CCE_ERR_NOT_FOUND);
    cce_model_free(m);
}

static void test_put_tensor(void **state) {
    (void)state;
    cce_config c = tiny_config();
    cce_model *m;
    assert_cce_ok(cce_model_new(&c, &m));

    cce_tensor *t;
    assert_cce_ok(cce_tensor_new_2d(64, 32, &t));
    t->data[5] = 2.5f;
    assert_cce_ok(cce_model_put_tensor(m, "layers.0.mlp.gate_proj.weight", t));
    cce_tensor *got;
    assert_cce_ok(cce_model_layer_tensor(m, 0, CCE_LT_GATE, &got));
    assert_ptr_equal(got, t);
    assert_true(got->data[5] == 2.5f);
    /* Putting the same tensor again is a no-op (it must not be freed). */
    assert_cce_ok(cce_model_put_tensor(m, "layers.0.mlp.gate_proj.weight", t));
    assert_true(t->data[5] == 2.5f);

    /* A wrong shape or an unknown name is refused; the caller keeps the tensor. */
    cce_tensor *bad;
    assert_cce_ok(cce_tensor_new_2d(32, 64, &bad));
    assert_int_equal(cce_model_put_tensor(m, "layers.0.mlp.gate_proj.weight", bad), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "layers.0.mlp.gate_proj.weight"));
    assert_int_equal(cce_model_put_tensor(m, "layers.9.mlp.gate_proj.weight", bad),
                     CCE_ERR_NOT_FOUND);
    assert_int_equal(cce_model_put_tensor(m, "layers.0.mlp.gate_proj.weight", NULL), CCE_ERR_ARG);
    cce_tensor_free(bad);

    /* Putting lm_head into a tied model unties it. */
    cce_tensor *head;
    assert_cce_ok(cce_tensor_new_2d(300, 32, &head));
    size_t before = cce_model_tensor_count(m);
    assert_cce_ok(cce_model_put_tensor(m, "lm_head.weight", head));
    assert_int_equal(cce_model_config(m)->tied_embeddings, 0);
    assert_int_equal(cce_model_tensor_count(m), before + 1);
    assert_string_equal(cce_model_tensor_name_at(m, before), "lm_head.weight");
    cce_tensor *e;
    assert_cce_ok(cce_model_global_tensor(m, CCE_GT_LM_HEAD, &got));
    assert_cce_ok(cce_model_global_tensor(m, CCE_GT_EMBED, &e));
    assert_ptr_equal(got, head);
    assert_ptr_not_equal(got, e);
    cce_model_free(m);
}

static void test_untied_and_finite(void **state) {
    (void)state;
    cce_config c = tiny_config();
    c.tied_embeddings = 0;
    cce_model *m;
    assert_cce_ok(cce_model_new(&c, &m));
    assert_int_equal(cce_model_tensor_count(m), 21);
    assert_string_equal(cce_model_tensor_name_at(m, 20), "lm_head.weight");
    assert_cce_ok(cce_model_load_all(m));
    assert_cce_ok(cce_model_check_finite(m));
    cce_tensor *t;
    assert_cce_ok(cce_model_layer_tensor(m, 1, CCE_LT_V, &t));
    t->data[7] = 0.0f / 0.0f;
    assert_int_equal(cce_model_check_finite(m), CCE_ERR_NUMERIC);
    assert_non_null(strstr(cce_error_detail(), "layers.1.self_attn.v_proj.weight"));
    cce_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_validate),       cmocka_unit_test(test_names),
        cmocka_unit_test(test_new_shapes_and_counts), cmocka_unit_test(test_put_tensor),
        cmocka_unit_test(test_untied_and_finite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
