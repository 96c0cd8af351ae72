/* ShortGPT layer removal on a stories260K-shaped synthetic model in which block 2 is made an
 * identity (o_proj and down_proj zero: BI exactly 0) and block 4 nearly one: the lowest-BI
 * blocks go, in that order; the ratio rounds down to whole blocks (never more than asked); the
 * forward pass skips removed blocks (removing the identity block changes no logit); a removed
 * block saves without tensors and loads back marked; parameter counts in the report match;
 * composition with structured pruning; skip rules, bad parameters and missing calibration. */
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "compress.h"
#include "forward.h"
#include "model.h"
#include "report_store.h"
#include "strategy.h"
#include "synth.h"
#include "test_support.h"

#define SEGS    4
#define SEG_LEN 63

static int32_t calib_tokens[SEGS * SEG_LEN];

static cce_calib_data calib_data(void) {
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 17);
    for (size_t i = 0; i < SEGS * SEG_LEN; i++)
        calib_tokens[i] = 3 + (int32_t)gsl_rng_uniform_int(r, 500);
    gsl_rng_free(r);
    cce_calib_data d = {.tokens = calib_tokens, .n_segments = SEGS, .seg_len = SEG_LEN};
    cce_calib_data_hash(&d);
    return d;
}

static void scale_tensor(cce_model *m, int l, cce_layer_tensor w, float by) {
    cce_tensor *t;
    assert_cce_ok(cce_model_layer_tensor(m, l, w, &t));
    for (int64_t i = 0; i < cce_tensor_numel(t); i++) t->data[i] *= by;
}

/* Block 2 an identity, block 4 close to one. */
static cce_model *fixture(void) {
    cce_synth_options o;
    assert_cce_ok(cce_synth_preset("stories260K", &o));
    o.seed = 23;
    o.cfg.seq_len = 64;
    cce_model *m;
    assert_cce_ok(cce_synth_model(&o, &m));
    scale_tensor(m, 2, CCE_LT_O, 0.0f);
    scale_tensor(m, 2, CCE_LT_DOWN, 0.0f);
    scale_tensor(m, 4, CCE_LT_O, 0.01f);
    scale_tensor(m, 4, CCE_LT_DOWN, 0.01f);
    return m;
}

static cce_strategy_instance *instance(const char *spec) {
    const cce_strategy *s;
    cce_params *p;
    cce_strategy_instance *inst;
    assert_cce_ok(cce_strategy_parse_spec(spec, &s, &p));
    assert_cce_ok(cce_strategy_instance_new(s, p, &inst));
    cce_params_free(p);
    return inst;
}

static cce_status run_steps(cce_model *base, const char *const *specs, size_t n,
                            const char *const *rules, size_t n_rules, int with_calib, cce_model **v,
                            cce_compress_result *res) {
    cce_strategy_instance *inst[4];
    for (size_t k = 0; k < n; k++) inst[k] = instance(specs[k]);
    cce_calib_data d = calib_data();
    cce_compress_options o;
    cce_compress_options_init(&o);
    o.use_cache = 0;
    cce_status s = cce_compress(base, inst, n, rules, n_rules, with_calib ? &d : NULL, &o, v, res);
    for (size_t k = 0; k < n; k++) cce_strategy_instance_free(inst[k]);
    return s;
}

static cce_status run(cce_model *base, const char *spec, const char *const *rules, size_t n_rules,
                      cce_model **v, cce_compress_result *res) {
    return run_steps(base, &spec, 1, rules, n_rules, 1, v, res);
}

/* The removed flags of the 5 layers as a bit mask. */
static unsigned removed_mask(const cce_model *m) {
    unsigned mask = 0;
    for (int l = 0; l < cce_model_config(m)->n_layers; l++)
        mask |= (unsigned)(cce_model_layer(m, l)->removed != 0) << l;
    return mask;
}

static float *logits_of(cce_model *m, int T) {
    int32_t tok[64];
    for (int t = 0; t < T; t++) tok[t] = (int32_t)((t * 41 + 5) % 512);
    float *out = malloc((size_t)T * 512 * sizeof *out);
    cce_forward *f;
    assert_cce_ok(cce_forward_new(m, T, &f));
    assert_cce_ok(cce_forward_window(f, tok, T, out));
    cce_forward_free(f);
    return out;
}

static void check_counts(cce_model *base, cce_model *v, const cce_compress_result *res) {
    int64_t blocks_v = 0, blocks_b = 0;
    for (int l = 0; l < 5; l++) {
        blocks_v += cce_model_layer_params(v, l);
        blocks_b += cce_model_layer_params(base, l);
    }
    assert_int_equal(res->summary.blocks.params_before, blocks_b);
    assert_int_equal(res->summary.blocks.params_after, blocks_v);
    assert_int_equal(res->summary.model.params_before, cce_model_total_params(base));
    assert_int_equal(res->summary.model.params_after, cce_model_total_params(v));
    assert_int_equal(res->summary.blocks.bytes_after, 4 * blocks_v);
}

static void test_lowest_influence_goes(void **state) {
    (void)state;
    cce_model *base = fixture(), *v;
    /* The fixture's influences: block 2 exactly 0, block 4 the next lowest. */
    cce_calib_data d = calib_data();
    cce_calib_options co = {0};
    cce_calib *c;
    assert_cce_ok(cce_calib_collect(base, &d, &co, 0, &c));
    assert_float_equal(cce_calib_block_influence(c, 2), 0.0, 1e-12);
    for (int l = 0; l < 5; l++)
        if (l != 2 && l != 4)
            assert_true(cce_calib_block_influence(c, 4) < cce_calib_block_influence(c, l));
    double bi2 = cce_calib_block_influence(c, 2);
    cce_calib_free(c);

    cce_compress_result res;
    assert_cce_ok(run(base, "shortgpt:ratio=0.2", NULL, 0, &v, &res));
    assert_int_equal(removed_mask(v), 1u << 2);
    assert_int_equal(removed_mask(base), 0);
    assert_int_equal(cce_model_layer_params(v, 2), 0);
    assert_int_equal(cce_model_tensor_count(v), cce_model_tensor_count(base) - CCE_LT_COUNT);
    assert_int_equal(res.report.n, CCE_LT_COUNT);
    char note[64];
    snprintf(note, sizeof note, "block removed, BI %.6f", bi2);
    for (size_t i = 0; i < res.report.n; i++) {
        const cce_report_row *r = &res.report.rows[i];
        assert_int_equal(r->layer, 2);
        assert_int_equal(r->params_after, 0);
        assert_int_equal(r->bytes_after, 0);
        assert_string_equal(r->note, note);
    }
    check_counts(base, v, &res);
    /* The forward pass skips block 2, which added exactly nothing: identical logits. */
    float *a = logits_of(base, 40), *b = logits_of(v, 40);
    assert_memory_equal(a, b, 40 * 512 * sizeof(float));
    free(a);
    free(b);
    cce_compress_result_clear(&res);
    cce_model_free(v);

    assert_cce_ok(run(base, "shortgpt:layers=2", NULL, 0, &v, &res));
    assert_int_equal(removed_mask(v), (1u << 2) | (1u << 4));
    assert_int_equal(res.report.n, 2 * CCE_LT_COUNT);
    check_counts(base, v, &res);
    a = logits_of(v, 40); /* runs with two blocks gone */
    free(a);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
}

/* Five equal blocks of P / 5 parameters: at most ratio * P goes. */
static void test_rounding(void **state) {
    (void)state;
    cce_model *base = fixture(), *v;
    cce_compress_result res;
    static const struct {
        const char *spec;
        unsigned mask;
    } cases[] = {
        {"shortgpt:ratio=0", 0},          {"shortgpt:ratio=0.19", 0},
        {"shortgpt:ratio=0.39", 1u << 2}, {"shortgpt:ratio=0.4", (1u << 2) | (1u << 4)},
        {"shortgpt:layers=0", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_cce_ok(run(base, cases[i].spec, NULL, 0, &v, &res));
        if (removed_mask(v) != cases[i].mask)
            fail_msg("%s removed mask %x, expected %x", cases[i].spec, removed_mask(v),
                     cases[i].mask);
        if (!cases[i].mask) {
            assert_int_equal(res.report.n, 0);
            assert_int_equal(cce_model_owned_tensor_count(v), 0);
            assert_int_equal(cce_model_total_params(v), cce_model_total_params(base));
        }
        check_counts(base, v, &res);
        cce_compress_result_clear(&res);
        cce_model_free(v);
    }
    cce_model_free(base);
}

static void test_round_trip(void **state) {
    (void)state;
    cce_model *base = fixture(), *v, *loaded;
    cce_compress_result res;
    assert_cce_ok(run(base, "shortgpt:layers=2", NULL, 0, &v, &res));
    const char *path = test_path(test_scratch_dir("shortgpt"), "short.h5");
    char saved[512];
    snprintf(saved, sizeof saved, "%s", path);
    assert_cce_ok(cce_compress_save(v, &res, saved, NULL)); /* with /report */
    cce_report back;
    assert_cce_ok(cce_compress_report_read(saved, &back));
    assert_int_equal(back.n, 2 * CCE_LT_COUNT);
    assert_int_equal(back.rows[0].params_after, 0);
    cce_report_clear(&back);
    assert_cce_ok(cce_model_open(saved, &loaded));
    assert_int_equal(removed_mask(loaded), (1u << 2) | (1u << 4));
    assert_int_equal(cce_model_tensor_count(loaded), cce_model_tensor_count(v));
    assert_int_equal(cce_model_total_params(loaded), cce_model_total_params(v));
    float *a = logits_of(v, 40), *b = logits_of(loaded, 40);
    assert_memory_equal(a, b, 40 * 512 * sizeof(float));
    free(a);
    free(b);
    cce_model_free(loaded);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
}

/* ShortGPT then structured FFN pruning: the removed block is not pruned again, the others are. */
static void test_composition(void **state) {
    (void)state;
    cce_model *base = fixture(), *v;
    cce_compress_result res;
    const char *specs[] = {"shortgpt:layers=1", "structured:ratio=0.5"};
    assert_cce_ok(run_steps(base, specs, 2, NULL, 0, 1, &v, &res));
    assert_int_equal(removed_mask(v), 1u << 2);
    for (int l = 0; l < 5; l++)
        if (l != 2) assert_int_equal(cce_model_layer(v, l)->hidden_dim, 86);
    assert_int_equal(res.report.n, CCE_LT_COUNT + 4 * 3);
    check_counts(base, v, &res);
    for (size_t i = CCE_LT_COUNT; i < res.report.n; i++)
        assert_false(isnan(res.report.rows[i].output_error)); /* measured on calibration inputs */
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
}

static void test_skip_and_errors(void **state) {
    (void)state;
    cce_model *base = fixture(), *v;
    cce_compress_result res;
    const char *skip[] = {"skip=layers.2.*"};
    assert_cce_ok(run(base, "shortgpt:layers=1", skip, 1, &v, &res));
    assert_int_equal(removed_mask(v), 1u << 4); /* block 2 is protected: the next lowest goes */
    cce_compress_result_clear(&res);
    cce_model_free(v);

    assert_int_equal(run(base, "shortgpt:layers=5", NULL, 0, &v, &res), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "layers = 5"));
    assert_null(v);
    const cce_strategy *s;
    cce_params *p;
    cce_strategy_instance *inst;
    assert_cce_ok(cce_strategy_parse_spec("shortgpt:ratio=0.2,layers=1", &s, &p));
    assert_int_equal(cce_strategy_instance_new(s, p, &inst), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "ratio or layers"));
    cce_params_free(p);
    assert_int_equal(cce_strategy_parse_spec("shortgpt:ratio=1", &s, &p), CCE_ERR_RANGE);
    assert_int_equal(cce_strategy_parse_spec("shortgpt:layers=-1", &s, &p), CCE_ERR_RANGE);
    const char *spec = "shortgpt";
    assert_int_equal(run_steps(base, &spec, 1, NULL, 0, 0, &v, &res), CCE_ERR_STATE);
    assert_non_null(strstr(cce_error_detail(), "calibration"));
    assert_int_equal(removed_mask(base), 0);
    cce_model_free(base);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lowest_influence_goes),
        cmocka_unit_test(test_rounding),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_composition),
        cmocka_unit_test(test_skip_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
