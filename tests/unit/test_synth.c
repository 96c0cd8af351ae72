/* Synthetic models: presets, determinism, weight scale, norms, zero classifier, bad options. */
#include "test_support.h"

#include <gsl/gsl_statistics_float.h>
#include <math.h>
#include <string.h>

#include "model.h"
#include "synth.h"
#include "tokenizer.h"

static cce_model *make(const char *preset, uint64_t seed) {
    cce_synth_options o;
    assert_cce_ok(cce_synth_preset(preset, &o));
    o.seed = seed;
    cce_model *m;
    assert_cce_ok(cce_synth_model(&o, &m));
    return m;
}

/* 1 if every tensor of a and b is bit-identical. */
static int same_weights(cce_model *a, cce_model *b) {
    if (cce_model_tensor_count(a) != cce_model_tensor_count(b)) return 0;
    for (size_t i = 0; i < cce_model_tensor_count(a); i++) {
        const char *name = cce_model_tensor_name_at(a, i);
        cce_tensor *ta, *tb;
        assert_cce_ok(cce_model_tensor(a, name, &ta));
        assert_cce_ok(cce_model_tensor(b, name, &tb));
        if (!cce_tensor_same_shape(ta, tb) ||
            memcmp(ta->data, tb->data, (size_t)cce_tensor_numel(ta) * sizeof(float)) != 0)
            return 0;
    }
    return 1;
}

static void test_presets(void **state) {
    (void)state;
    static const struct {
        const char *name;
        int dim, hidden, layers, heads, kv, vocab, seq;
    } want[] = {{"tiny", 32, 64, 2, 4, 2, 300, 64},
                {"stories260K", 64, 172, 5, 8, 4, 512, 512},
                {"stories15M", 288, 768, 6, 6, 6, 32000, 256},
                {"stories110M", 768, 2048, 12, 12, 12, 32000, 1024}};
    const char *const *names = cce_synth_preset_names();
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_string_equal(names[i], want[i].name);
        cce_synth_options o;
        assert_cce_ok(cce_synth_preset(want[i].name, &o));
        assert_int_equal(o.cfg.dim, want[i].dim);
        assert_int_equal(o.cfg.hidden_dim, want[i].hidden);
        assert_int_equal(o.cfg.n_layers, want[i].layers);
        assert_int_equal(o.cfg.n_heads, want[i].heads);
        assert_int_equal(o.cfg.n_kv_heads, want[i].kv);
        assert_int_equal(o.cfg.head_dim, want[i].dim / want[i].heads);
        assert_int_equal(o.cfg.vocab_size, want[i].vocab);
        assert_int_equal(o.cfg.seq_len, want[i].seq);
        assert_int_equal(o.cfg.tied_embeddings, 1);
        assert_cce_ok(cce_config_validate(&o.cfg, want[i].name));
    }
    assert_null(names[4]);
    cce_synth_options o;
    assert_int_equal(cce_synth_preset("stories42M", &o), CCE_ERR_NOT_FOUND);
    assert_non_null(strstr(cce_error_detail(), "stories42M"));
}

static void test_determinism(void **state) {
    (void)state;
    cce_model *a = make("stories260K", 11), *b = make("stories260K", 11),
              *c = make("stories260K", 12);
    assert_true(same_weights(a, b));
    assert_false(same_weights(a, c));
    /* Every matrix differs under another seed (not just one of them). */
    for (size_t i = 0; i < cce_model_tensor_count(a); i++) {
        const char *name = cce_model_tensor_name_at(a, i);
        cce_tensor *ta, *tc;
        assert_cce_ok(cce_model_tensor(a, name, &ta));
        assert_cce_ok(cce_model_tensor(c, name, &tc));
        int differs = memcmp(ta->data, tc->data, (size_t)cce_tensor_numel(ta) * 4) != 0;
        assert_int_equal(differs, ta->ndim == 2);
    }
    /* Tensors of one model are not copies of each other (each has its own stream). */
    cce_tensor *g, *u;
    assert_cce_ok(cce_model_layer_tensor(a, 2, CCE_LT_GATE, &g));
    assert_cce_ok(cce_model_layer_tensor(a, 2, CCE_LT_UP, &u));
    assert_memory_not_equal(g->data, u->data, 64 * 4);
    assert_string_equal(cce_model_source(a), "synth:seed=11");
    cce_model_free(a);
    cce_model_free(b);
    cce_model_free(c);
}

static void test_weight_scale(void **state) {
    (void)state;
    cce_model *m = make("stories260K", 3);
    const cce_config *c = cce_model_config(m);
    for (size_t i = 0; i < cce_model_tensor_count(m); i++) {
        cce_tensor *t;
        const char *name = cce_model_tensor_name_at(m, i);
        assert_cce_ok(cce_model_tensor(m, name, &t));
        size_t n = (size_t)cce_tensor_numel(t);
        if (t->ndim == 1) { /* RMSNorm weights are exactly 1 */
            for (size_t k = 0; k < n; k++) assert_true(t->data[k] == 1.0f);
            continue;
        }
        double want = 1.0 / sqrt((double)t->shape[1]);
        double mean = gsl_stats_float_mean(t->data, 1, n);
        double sd = gsl_stats_float_sd_m(t->data, 1, n, mean);
        if (fabs(sd / want - 1.0) > 0.05 || fabs(mean) > 4 * want / sqrt((double)n))
            fail_msg("%s: mean %g sd %g, expected 0 and %g", name, mean, sd, want);
    }
    assert_int_equal(c->tied_embeddings, 1);
    const cce_tokenizer *tok = cce_model_tokenizer(m);
    assert_non_null(tok);
    assert_int_equal(cce_tokenizer_vocab_size(tok), 512);
    assert_string_equal(cce_tokenizer_piece(tok, 3 + 'A'), "<0x41>");
    cce_model_free(m);

    /* An explicit init_std applies to every matrix. */
    cce_synth_options o;
    assert_cce_ok(cce_synth_preset("tiny", &o));
    o.init_std = 0.5f;
    assert_cce_ok(cce_synth_model(&o, &m));
    cce_tensor *t;
    assert_cce_ok(cce_model_global_tensor(m, CCE_GT_EMBED, &t));
    size_t n = (size_t)cce_tensor_numel(t);
    double sd = gsl_stats_float_sd(t->data, 1, n);
    assert_true(fabs(sd - 0.5) < 0.03);
    cce_model_free(m);
}

static void test_zero_classifier(void **state) {
    (void)state;
    cce_synth_options o;
    assert_cce_ok(cce_synth_preset("tiny", &o));
    o.zero_classifier = 1;
    cce_model *m;
    assert_cce_ok(cce_synth_model(&o, &m));
    assert_int_equal(cce_model_config(m)->tied_embeddings, 0);
    cce_tensor *head, *emb;
    assert_cce_ok(cce_model_global_tensor(m, CCE_GT_LM_HEAD, &head));
    assert_cce_ok(cce_model_global_tensor(m, CCE_GT_EMBED, &emb));
    assert_ptr_not_equal(head, emb);
    for (int64_t i = 0; i < cce_tensor_numel(head); i++) assert_true(head->data[i] == 0.0f);
    assert_true(emb->data[0] != 0.0f);
    cce_model_free(m);

    /* Untied without zero_classifier: a random lm_head. */
    assert_cce_ok(cce_synth_preset("tiny", &o));
    o.cfg.tied_embeddings = 0;
    assert_cce_ok(cce_synth_model(&o, &m));
    assert_cce_ok(cce_model_global_tensor(m, CCE_GT_LM_HEAD, &head));
    assert_true(head->data[0] != 0.0f);
    cce_model_free(m);
}

static void test_bad_options(void **state) {
    (void)state;
    cce_synth_options o;
    cce_model *m = NULL;
    assert_cce_ok(cce_synth_preset("tiny", &o));
    o.cfg.vocab_size = 100; /* below the byte tokenizer */
    assert_int_equal(cce_synth_model(&o, &m), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "vocab_size"));
    assert_cce_ok(cce_synth_preset("tiny", &o));
    o.cfg.n_kv_heads = 3;
    assert_int_equal(cce_synth_model(&o, &m), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "n_kv_heads"));
    assert_cce_ok(cce_synth_preset("tiny", &o));
    o.init_std = -1.0f;
    assert_int_equal(cce_synth_model(&o, &m), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "init_std"));
    assert_null(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets),      cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_weight_scale), cmocka_unit_test(test_zero_classifier),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
