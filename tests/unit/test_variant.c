/* Copy-on-write variants: untouched tensors are the base's (same data pointer), put tensors are
 * the variant's alone, the base never changes, lazy bases load on demand, tied classifiers,
 * variants of variants, shape checks, and saving a variant like any model. */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "synth.h"
#include "test_support.h"

static cce_model *tiny(uint64_t seed) {
    cce_synth_options o;
    assert_cce_ok(cce_synth_preset("tiny", &o));
    o.seed = seed;
    cce_model *m;
    assert_cce_ok(cce_synth_model(&o, &m));
    return m;
}

/* sha256 over every tensor's bytes (loads them) into md[32]. */
static void hash_weights(cce_model *m, unsigned char md[32]) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_true(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1);
    for (size_t i = 0; i < cce_model_tensor_count(m); i++) {
        cce_tensor *t;
        assert_cce_ok(cce_model_tensor(m, cce_model_tensor_name_at(m, i), &t));
        EVP_DigestUpdate(ctx, t->data, (size_t)cce_tensor_numel(t) * sizeof(float));
    }
    unsigned len;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
}

static cce_tensor *modified_copy(cce_model *m, const char *name, float delta) {
    cce_tensor *t, *c;
    assert_cce_ok(cce_model_tensor(m, name, &t));
    assert_cce_ok(cce_tensor_clone(t, &c));
    for (int64_t i = 0; i < cce_tensor_numel(c); i++) c->data[i] += delta;
    return c;
}

#define Q1 "layers.1.self_attn.q_proj.weight"

static void test_shares_and_owns(void **state) {
    (void)state;
    cce_model *base = tiny(1), *v;
    unsigned char before[32], after[32];
    hash_weights(base, before);
    assert_cce_ok(cce_model_variant_new(base, &v));
    assert_ptr_equal(cce_model_base(v), base);
    assert_null(cce_model_base(base));
    assert_ptr_equal(cce_model_tokenizer(v), cce_model_tokenizer(base));
    assert_memory_equal(cce_model_config(v), cce_model_config(base), sizeof(cce_config));
    assert_int_equal(cce_model_tensor_count(v), cce_model_tensor_count(base));
    assert_int_equal(cce_model_total_params(v), cce_model_total_params(base));
    assert_int_equal(cce_model_owned_tensor_count(v), 0);
    for (size_t i = 0; i < cce_model_tensor_count(v); i++) {
        const char *name = cce_model_tensor_name_at(v, i);
        assert_string_equal(name, cce_model_tensor_name_at(base, i));
        assert_int_equal(cce_model_tensor_is_shared(v, name), 1);
        cce_tensor *a, *b;
        assert_cce_ok(cce_model_tensor(v, name, &a));
        assert_cce_ok(cce_model_tensor(base, name, &b));
        assert_ptr_equal(a->data, b->data); /* the same memory, not a copy */
        assert_int_equal(a->owned, 0);
    }
    /* Putting a tensor: the variant owns it, the base keeps its own. */
    cce_tensor *q = modified_copy(v, Q1, 1.0f), *vq, *bq;
    assert_cce_ok(cce_model_put_tensor(v, Q1, q));
    assert_int_equal(cce_model_tensor_is_shared(v, Q1), 0);
    assert_int_equal(cce_model_owned_tensor_count(v), 1);
    assert_cce_ok(cce_model_tensor(v, Q1, &vq));
    assert_cce_ok(cce_model_tensor(base, Q1, &bq));
    assert_ptr_equal(vq, q);
    assert_ptr_not_equal(vq->data, bq->data);
    assert_true(vq->data[0] == bq->data[0] + 1.0f);
    /* A wrong shape is refused and stays the caller's. */
    cce_tensor *bad;
    assert_cce_ok(cce_tensor_new_2d(3, 3, &bad));
    assert_int_equal(cce_model_put_tensor(v, "layers.0.mlp.up_proj.weight", bad), CCE_ERR_ARG);
    assert_int_equal(cce_model_tensor_is_shared(v, "layers.0.mlp.up_proj.weight"), 1);
    cce_tensor_free(bad);
    assert_int_equal(cce_model_tensor_is_shared(v, "no.such.weight"), 0);
    assert_int_equal(cce_model_tensor_is_shared(base, Q1), 0);

    hash_weights(base, after);
    assert_memory_equal(before, after, 32);
    cce_model_free(v);
    /* The base is intact after the variant is gone. */
    hash_weights(base, after);
    assert_memory_equal(before, after, 32);
    cce_model_free(base);
}

static void test_variant_of_variant_and_tied(void **state) {
    (void)state;
    cce_model *base = tiny(2), *v1, *v2;
    assert_true(cce_model_config(base)->tied_embeddings);
    assert_cce_ok(cce_model_variant_new(base, &v1));
    assert_cce_ok(cce_model_put_tensor(v1, Q1, modified_copy(v1, Q1, 2.0f)));
    assert_cce_ok(cce_model_variant_new(v1, &v2));
    cce_tensor *a, *b, *c;
    assert_cce_ok(cce_model_tensor(v2, Q1, &a));
    assert_cce_ok(cce_model_tensor(v1, Q1, &b));
    assert_cce_ok(cce_model_tensor(base, Q1, &c));
    assert_ptr_equal(a->data, b->data); /* v2 shares v1's own tensor */
    assert_ptr_not_equal(a->data, c->data);
    /* Tied: lm_head is embed_tokens until a variant unties itself. */
    assert_cce_ok(cce_model_tensor(v2, "lm_head.weight", &a));
    assert_cce_ok(cce_model_tensor(base, "embed_tokens.weight", &b));
    assert_ptr_equal(a->data, b->data);
    cce_tensor *head = modified_copy(v2, "lm_head.weight", 0.5f);
    assert_cce_ok(cce_model_put_tensor(v2, "lm_head.weight", head));
    assert_false(cce_model_config(v2)->tied_embeddings);
    assert_true(cce_model_config(base)->tied_embeddings);
    assert_true(cce_model_config(v1)->tied_embeddings);
    assert_int_equal(cce_model_tensor_count(v2), cce_model_tensor_count(base) + 1);
    assert_cce_ok(cce_model_tensor(v2, "embed_tokens.weight", &a));
    assert_ptr_equal(a->data, b->data);
    cce_model_free(v2);
    cce_model_free(v1);
    cce_model_free(base);
    assert_int_equal(cce_model_variant_new(NULL, &v1), CCE_ERR_ARG);
}

static void test_lazy_base_and_save(void **state) {
    (void)state;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", test_scratch_dir("variant"));
    char base_path[4200], var_path[4200];
    snprintf(base_path, sizeof base_path, "%s/base.h5", dir);
    snprintf(var_path, sizeof var_path, "%s/variant.h5", dir);
    cce_model *mem = tiny(3);
    assert_cce_ok(cce_model_save(mem, base_path, NULL));

    cce_model *base, *v;
    assert_cce_ok(cce_model_open(base_path, &base));
    assert_cce_ok(cce_model_variant_new(base, &v));
    const char *up = "layers.0.mlp.up_proj.weight";
    assert_false(cce_model_tensor_is_loaded(base, up));
    assert_false(cce_model_tensor_is_loaded(v, up));
    cce_tensor *t;
    assert_cce_ok(cce_model_tensor(v, up, &t)); /* loads it in the base, lazily */
    assert_true(cce_model_tensor_is_loaded(base, up));
    assert_true(cce_model_tensor_is_shared(v, up));
    assert_null(cce_model_path(v));
    assert_string_equal(cce_model_source(v), cce_model_source(base));

    cce_tensor *q = modified_copy(v, Q1, -1.0f);
    assert_cce_ok(cce_model_put_tensor(v, Q1, q));
    assert_cce_ok(cce_model_save(v, var_path, NULL));
    cce_model *back;
    assert_cce_ok(cce_model_open(var_path, &back));
    assert_non_null(cce_model_tokenizer(back));
    for (size_t i = 0; i < cce_model_tensor_count(back); i++) {
        const char *name = cce_model_tensor_name_at(back, i);
        cce_tensor *x, *y;
        assert_cce_ok(cce_model_tensor(back, name, &x));
        assert_cce_ok(cce_model_tensor(v, name, &y));
        assert_true(cce_tensor_same_shape(x, y));
        assert_memory_equal(x->data, y->data, (size_t)cce_tensor_numel(x) * sizeof(float));
    }
    cce_tensor *bq, *mq;
    assert_cce_ok(cce_model_tensor(base, Q1, &bq));
    assert_cce_ok(cce_model_tensor(mem, Q1, &mq));
    assert_memory_equal(bq->data, mq->data, (size_t)cce_tensor_numel(bq) * sizeof(float));
    cce_model_free(back);
    cce_model_free(v);
    cce_model_free(base);
    cce_model_free(mem);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shares_and_owns),
        cmocka_unit_test(test_variant_of_variant_and_tied),
        cmocka_unit_test(test_lazy_base_and_save),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
