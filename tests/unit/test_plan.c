/* Plans: precedence (tensor name > pattern > layer > allocation > uniform), default and custom
 * skips, glob matching with and without ".weight", value checks, text rules, and the record of
 * what was applied. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "strategy.h"
#include "test_support.h"

/* Resolves a name (layer taken from it) and checks value and source. */
static void expect(const cce_plan *plan, const char *name, double value, cce_plan_source src) {
    cce_plan_row row;
    assert_cce_ok(cce_plan_resolve(plan, cce_plan_layer_of(name), name, &row));
    if (row.source != src || (src != CCE_PLAN_SKIP && fabs(row.value - value) > 1e-12))
        fail_msg("%s: got %g from %s (%s), expected %g from %s", name, row.value,
                 cce_plan_source_name(row.source), row.rule, value, cce_plan_source_name(src));
}

static void test_layer_of(void **state) {
    (void)state;
    assert_int_equal(cce_plan_layer_of("layers.0.mlp.up_proj.weight"), 0);
    assert_int_equal(cce_plan_layer_of("layers.12.self_attn.q_proj.weight"), 12);
    assert_int_equal(cce_plan_layer_of("embed_tokens.weight"), -1);
    assert_int_equal(cce_plan_layer_of("layers.x.mlp"), -1);
    assert_int_equal(cce_plan_layer_of("layers.3x.mlp"), -1);
    assert_int_equal(cce_plan_layer_of("norm.weight"), -1);
}

static void test_default_skips(void **state) {
    (void)state;
    cce_plan *plan;
    assert_cce_ok(cce_plan_new(CCE_PLAN_RATIO, 0.5, &plan));
    expect(plan, "embed_tokens.weight", 0, CCE_PLAN_SKIP);
    expect(plan, "lm_head.weight", 0, CCE_PLAN_SKIP);
    expect(plan, "norm.weight", 0, CCE_PLAN_SKIP);
    expect(plan, "layers.2.input_layernorm.weight", 0, CCE_PLAN_SKIP);
    expect(plan, "layers.2.post_attention_layernorm.weight", 0, CCE_PLAN_SKIP);
    expect(plan, "layers.2.self_attn.q_proj.weight", 0.5, CCE_PLAN_UNIFORM);
    expect(plan, "layers.2.mlp.down_proj.weight", 0.5, CCE_PLAN_UNIFORM);
    /* Skips win over overrides; unskip makes a tensor plannable again. */
    assert_cce_ok(cce_plan_override(plan, "lm_head", 0.2));
    expect(plan, "lm_head.weight", 0, CCE_PLAN_SKIP);
    assert_cce_ok(cce_plan_unskip(plan, "lm_head"));
    expect(plan, "lm_head.weight", 0.2, CCE_PLAN_TENSOR);
    assert_int_equal(cce_plan_unskip(plan, "lm_head"), CCE_ERR_NOT_FOUND);
    /* Custom skips; clearing them all. */
    assert_cce_ok(cce_plan_skip(plan, "layers.*.self_attn.*"));
    expect(plan, "layers.4.self_attn.v_proj.weight", 0, CCE_PLAN_SKIP);
    expect(plan, "layers.4.mlp.gate_proj.weight", 0.5, CCE_PLAN_UNIFORM);
    cce_plan_clear_skips(plan);
    expect(plan, "embed_tokens.weight", 0.5, CCE_PLAN_UNIFORM);
    expect(plan, "layers.4.self_attn.v_proj.weight", 0.5, CCE_PLAN_UNIFORM);
    cce_plan_free(plan);
}

static void test_precedence(void **state) {
    (void)state;
    cce_plan *plan;
    assert_cce_ok(cce_plan_new(CCE_PLAN_RATIO, 0.5, &plan));
    /* Rules added in the reverse order of precedence, so order cannot explain the outcome. */
    assert_cce_ok(cce_plan_allocate_layer(plan, 1, 0.45, "owl"));
    assert_cce_ok(cce_plan_allocate_tensor(plan, "layers.2.mlp.up_proj", 0.55, "global"));
    assert_cce_ok(cce_plan_override_layer(plan, 1, 0.1));
    assert_cce_ok(cce_plan_override(plan, "layers.*.mlp.down_proj", 0.3));
    assert_cce_ok(cce_plan_override(plan, "layers.1.mlp.down_proj.weight", 0.7));

    expect(plan, "layers.1.mlp.down_proj.weight", 0.7, CCE_PLAN_TENSOR);    /* name > pattern */
    expect(plan, "layers.0.mlp.down_proj.weight", 0.3, CCE_PLAN_PATTERN);   /* pattern */
    expect(plan, "layers.1.mlp.up_proj.weight", 0.1, CCE_PLAN_LAYER);       /* layer > alloc */
    expect(plan, "layers.2.mlp.up_proj.weight", 0.55, CCE_PLAN_ALLOCATION); /* tensor alloc */
    expect(plan, "layers.2.mlp.gate_proj.weight", 0.5, CCE_PLAN_UNIFORM);
    expect(plan, "layers.3.self_attn.o_proj.weight", 0.5, CCE_PLAN_UNIFORM);
    cce_plan_row row;
    assert_cce_ok(cce_plan_resolve(plan, 1, "layers.1.mlp.up_proj.weight", &row));
    assert_string_equal(row.rule, "layer 1");
    assert_cce_ok(cce_plan_resolve(plan, 0, "layers.0.mlp.down_proj.weight", &row));
    assert_string_equal(row.rule, "layers.*.mlp.down_proj");

    /* The layer allocation shows once the layer override is gone (a fresh plan). */
    cce_plan *p2;
    assert_cce_ok(cce_plan_new(CCE_PLAN_RATIO, 0.5, &p2));
    assert_cce_ok(cce_plan_allocate_layer(p2, 1, 0.45, "owl"));
    expect(p2, "layers.1.self_attn.k_proj.weight", 0.45, CCE_PLAN_ALLOCATION);
    assert_cce_ok(cce_plan_resolve(p2, 1, "layers.1.self_attn.k_proj.weight", &row));
    assert_string_equal(row.rule, "owl");
    cce_plan_free(p2);

    /* Setting a rule again replaces its value; a later pattern beats an earlier one. */
    assert_cce_ok(cce_plan_override(plan, "layers.*.mlp.down_proj", 0.35));
    expect(plan, "layers.0.mlp.down_proj.weight", 0.35, CCE_PLAN_PATTERN);
    assert_cce_ok(cce_plan_override(plan, "layers.0.*", 0.05));
    expect(plan, "layers.0.mlp.down_proj.weight", 0.05, CCE_PLAN_PATTERN);
    expect(plan, "layers.0.self_attn.q_proj.weight", 0.05, CCE_PLAN_PATTERN);
    expect(plan, "layers.10.self_attn.q_proj.weight", 0.5, CCE_PLAN_UNIFORM); /* not layers.0.* */
    cce_plan_free(plan);
}

static void test_matching_forms(void **state) {
    (void)state;
    cce_plan *plan;
    assert_cce_ok(cce_plan_new(CCE_PLAN_RATIO, 0.2, &plan));
    assert_cce_ok(cce_plan_override(plan, "layers.3.mlp.up_proj", 0.4));          /* bare */
    assert_cce_ok(cce_plan_override(plan, "layers.3.mlp.gate_proj.weight", 0.6)); /* full */
    assert_cce_ok(cce_plan_override(plan, "layers.*.self_attn.[qk]_proj.weight", 0.3));
    assert_cce_ok(cce_plan_override(plan, "layers.?.self_attn.v_proj", 0.25));
    expect(plan, "layers.3.mlp.up_proj.weight", 0.4, CCE_PLAN_TENSOR);
    expect(plan, "layers.3.mlp.gate_proj.weight", 0.6, CCE_PLAN_TENSOR);
    expect(plan, "layers.13.mlp.up_proj.weight", 0.2, CCE_PLAN_UNIFORM); /* exact, not prefix */
    expect(plan, "layers.7.self_attn.k_proj.weight", 0.3, CCE_PLAN_PATTERN);
    expect(plan, "layers.7.self_attn.o_proj.weight", 0.2, CCE_PLAN_UNIFORM);
    expect(plan, "layers.7.self_attn.v_proj.weight", 0.25, CCE_PLAN_PATTERN);
    expect(plan, "layers.17.self_attn.v_proj.weight", 0.2, CCE_PLAN_UNIFORM);
    cce_plan_free(plan);
}

static void test_values_checked(void **state) {
    (void)state;
    cce_plan *plan = (cce_plan *)0x1;
    assert_int_equal(cce_plan_new(CCE_PLAN_RATIO, 1.5, &plan), CCE_ERR_RANGE);
    assert_null(plan);
    assert_non_null(strstr(cce_error_detail(), "target = 1.5 is outside ratio [0, 1)"));
    assert_cce_ok(cce_plan_new(CCE_PLAN_RATIO, 0.5, &plan));
    assert_int_equal(cce_plan_override(plan, "layers.*.mlp.*", 1.0), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "layers.*.mlp.* = 1 is outside"));
    assert_int_equal(cce_plan_override(plan, "layers.0.*", -0.1), CCE_ERR_RANGE);
    assert_int_equal(cce_plan_override(plan, "layers.0.*", NAN), CCE_ERR_RANGE);
    assert_int_equal(cce_plan_override_layer(plan, 2, 1.2), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "layer 2 = 1.2"));
    assert_int_equal(cce_plan_override_layer(plan, -1, 0.2), CCE_ERR_RANGE);
    assert_int_equal(cce_plan_override(plan, "", 0.2), CCE_ERR_ARG);
    char longname[200];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(cce_plan_override(plan, longname, 0.2), CCE_ERR_ARG);
    cce_plan_row row;
    assert_int_equal(cce_plan_resolve(plan, -1, longname, &row), CCE_ERR_ARG);
    /* Allocations may remove a whole tensor (a global threshold can), user rules may not. */
    assert_cce_ok(cce_plan_allocate_tensor(plan, "layers.0.mlp.up_proj", 1.0, "global"));
    assert_int_equal(cce_plan_allocate_tensor(plan, "layers.0.mlp.up_proj", 1.01, "g"),
                     CCE_ERR_RANGE);
    cce_plan_free(plan);

    /* Bit-width plans: whole numbers in [2, 8]. */
    assert_cce_ok(cce_plan_new(CCE_PLAN_BITS, 4, &plan));
    assert_cce_ok(cce_plan_override_layer(plan, 0, 8));
    assert_int_equal(cce_plan_override_layer(plan, 0, 9), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "bits [2, 8]"));
    assert_int_equal(cce_plan_override_layer(plan, 0, 1), CCE_ERR_RANGE);
    assert_int_equal(cce_plan_override_layer(plan, 0, 3.5), CCE_ERR_RANGE);
    expect(plan, "layers.0.mlp.up_proj.weight", 8, CCE_PLAN_LAYER);
    expect(plan, "layers.1.mlp.up_proj.weight", 4, CCE_PLAN_UNIFORM);
    cce_plan_free(plan);
}

static void test_text_rules(void **state) {
    (void)state;
    cce_plan *plan;
    assert_cce_ok(cce_plan_new(CCE_PLAN_RATIO, 0.5, &plan));
    assert_cce_ok(cce_plan_add_rule(plan, "target = 0.4"));
    assert_cce_ok(cce_plan_add_rule(plan, "3=0.1"));
    assert_cce_ok(cce_plan_add_rule(plan, "layers.*.mlp.down_proj=0.6"));
    assert_cce_ok(cce_plan_add_rule(plan, "skip=layers.0.*"));
    assert_cce_ok(cce_plan_add_rule(plan, "unskip=lm_head"));
    assert_true(cce_plan_target(plan) == 0.4);
    expect(plan, "layers.3.self_attn.q_proj.weight", 0.1, CCE_PLAN_LAYER);
    expect(plan, "layers.3.mlp.down_proj.weight", 0.6, CCE_PLAN_PATTERN);
    expect(plan, "layers.0.mlp.down_proj.weight", 0, CCE_PLAN_SKIP);
    expect(plan, "lm_head.weight", 0.4, CCE_PLAN_UNIFORM);
    expect(plan, "layers.5.mlp.up_proj.weight", 0.4, CCE_PLAN_UNIFORM);
    assert_int_equal(cce_plan_add_rule(plan, "layers.1.*"), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "layers.1.*"));
    assert_int_equal(cce_plan_add_rule(plan, "layers.1.*=abc"), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "'abc' is not a number"));
    assert_int_equal(cce_plan_add_rule(plan, "layers.1.*=1.5"), CCE_ERR_RANGE);
    assert_int_equal(cce_plan_add_rule(plan, "target=-1"), CCE_ERR_RANGE);
    assert_int_equal(cce_plan_add_rule(plan, "=0.2"), CCE_ERR_ARG);
    assert_int_equal(cce_plan_add_rule(plan, "99999999=0.2"), CCE_ERR_RANGE);
    cce_plan_free(plan);
}

static void test_record_and_print(void **state) {
    (void)state;
    cce_config cfg = {.dim = 8,
                      .hidden_dim = 16,
                      .n_layers = 2,
                      .n_heads = 2,
                      .n_kv_heads = 2,
                      .head_dim = 4,
                      .vocab_size = 16,
                      .seq_len = 8,
                      .rope_theta = 10000,
                      .norm_eps = 1e-5f,
                      .tied_embeddings = 1};
    cce_model *m;
    assert_cce_ok(cce_model_new(&cfg, &m));
    cce_plan *plan;
    assert_cce_ok(cce_plan_new(CCE_PLAN_RATIO, 0.5, &plan));
    assert_cce_ok(cce_plan_override_layer(plan, 1, 0.25));
    assert_cce_ok(cce_plan_record_model(plan, m));
    size_t n;
    const cce_plan_row *rows = cce_plan_applied(plan, &n);
    assert_int_equal(n, cce_model_tensor_count(m));
    size_t skipped = 0, layer1 = 0, uniform = 0;
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(rows[i].tensor, cce_model_tensor_name_at(m, i));
        skipped += rows[i].source == CCE_PLAN_SKIP;
        layer1 += rows[i].source == CCE_PLAN_LAYER && rows[i].layer == 1 && rows[i].value == 0.25;
        uniform += rows[i].source == CCE_PLAN_UNIFORM && rows[i].layer == 0;
    }
    assert_int_equal(skipped, 1 + 2 * 2 + 1); /* embeddings, two norms per layer, final norm */
    assert_int_equal(layer1, 7);
    assert_int_equal(uniform, 7);

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    cce_plan_print_applied(plan, f);
    cce_plan_print_rules(plan, f);
    fclose(f);
    assert_non_null(strstr(buf, "layers.1.mlp.down_proj.weight"));
    assert_non_null(strstr(buf, "layer 1"));
    assert_non_null(strstr(buf, "skip"));
    assert_non_null(strstr(buf, "uniform"));
    assert_non_null(strstr(buf, "ratio target 0.5"));
    free(buf);
    cce_plan_clear_applied(plan);
    cce_plan_applied(plan, &n);
    assert_int_equal(n, 0);
    cce_plan_free(plan);
    cce_model_free(m);
}

static void test_plan_from_params(void **state) {
    (void)state;
    const cce_strategy *s;
    cce_params *p;
    assert_cce_ok(cce_strategy_parse_spec("magnitude:ratio=0.3", &s, &p));
    cce_plan *plan;
    assert_cce_ok(cce_plan_new_from_params(p, &plan));
    assert_int_equal(cce_plan_get_kind(plan), CCE_PLAN_RATIO);
    assert_true(cce_plan_target(plan) == 0.3);
    cce_plan_free(plan);
    cce_params_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer_of),         cmocka_unit_test(test_default_skips),
        cmocka_unit_test(test_precedence),       cmocka_unit_test(test_matching_forms),
        cmocka_unit_test(test_values_checked),   cmocka_unit_test(test_text_rules),
        cmocka_unit_test(test_record_and_print), cmocka_unit_test(test_plan_from_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
