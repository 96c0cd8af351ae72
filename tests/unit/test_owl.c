/* OWL allocation: ratios from outlier ratios (hand-computed values, the weighted mean held at the
 * target, bounds, clamping of lopsided layers, monotonicity), outlier ratios of a hand-built
 * model against brute force, and the rule in use through the compress driver with magnitude and
 * Wanda. */
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "compress.h"
#include "owl.h"
#include "plan.h"
#include "synth.h"
#include "test_support.h"

#define assert_near(a, b, tol)                                                                     \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        if (!(fabs(a_ - b_) <= (tol))) fail_msg("%s = %.15g, expected %.15g", #a, a_, b_);         \
    } while (0)

static double weighted_mean(const double *r, const int64_t *w, int n) {
    double s = 0, t = 0;
    for (int i = 0; i < n; i++) s += (double)w[i] * r[i], t += (double)w[i];
    return s / t;
}

static void test_ratios_hand_computed(void **state) {
    (void)state;
    double r[5];
    /* Evenly spread outliers, equal weights: the published rule, no clamping. */
    const double d1[5] = {0.01, 0.02, 0.03, 0.04, 0.05};
    const int64_t w1[5] = {10, 10, 10, 10, 10};
    assert_cce_ok(cce_owl_ratios(d1, w1, 5, 0.5, 0.08, r));
    const double want1[5] = {0.58, 0.54, 0.50, 0.46, 0.42};
    for (int i = 0; i < 5; i++) assert_near(r[i], want1[i], 1e-12);

    /* Weighted: the light layer sits at its bound, the heavy one holds the mean. */
    const double d2[2] = {0.0, 1.0};
    const int64_t w2[2] = {1, 3};
    assert_cce_ok(cce_owl_ratios(d2, w2, 2, 0.5, 0.08, r));
    assert_near(r[0], 0.58, 1e-12);
    assert_near(r[1], (2.0 - 0.58) / 3.0, 1e-12);
    assert_near(weighted_mean(r, w2, 2), 0.5, 1e-12);

    /* Lopsided: one outlier-rich layer would fall below target - lambda; it is clamped there and
     * the others share the rest. */
    const double d3[5] = {0, 0, 0, 0, 1};
    assert_cce_ok(cce_owl_ratios(d3, w1, 5, 0.5, 0.08, r));
    for (int i = 0; i < 4; i++) assert_near(r[i], 0.52, 1e-12);
    assert_near(r[4], 0.42, 1e-12);

    /* No spread, lambda 0, or layers without weight or outlier ratio: the target. */
    const double d4[3] = {0.2, 0.2, 0.2};
    const int64_t w4[3] = {5, 6, 7};
    assert_cce_ok(cce_owl_ratios(d4, w4, 3, 0.3, 0.08, r));
    for (int i = 0; i < 3; i++) assert_near(r[i], 0.3, 0);
    assert_cce_ok(cce_owl_ratios(d1, w1, 5, 0.3, 0.0, r));
    for (int i = 0; i < 5; i++) assert_near(r[i], 0.3, 0);
    const double d5[3] = {0.1, NAN, 0.3};
    const int64_t w5[3] = {4, 4, 0};
    assert_cce_ok(cce_owl_ratios(d5, w5, 3, 0.4, 0.1, r));
    assert_near(r[0], 0.4, 0); /* the only counted layer holds the target alone */
    assert_near(r[1], 0.4, 0);
    assert_near(r[2], 0.4, 0);

    /* Near the top: ratios never exceed 1. */
    assert_cce_ok(cce_owl_ratios(d1, w1, 5, 0.95, 0.08, r));
    for (int i = 0; i < 5; i++) assert_true(r[i] <= 1.0 && r[i] >= 0.87 - 1e-15);
    assert_near(weighted_mean(r, w1, 5), 0.95, 1e-12);

    assert_int_equal(cce_owl_ratios(d1, w1, 5, 1.5, 0.08, r), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "target"));
    assert_int_equal(cce_owl_ratios(d1, w1, 5, 0.5, -0.1, r), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "owl_lambda"));
}

static void test_ratios_random_mean_bounds_order(void **state) {
    (void)state;
    enum { N = 12 };
    gsl_rng *g = gsl_rng_alloc(gsl_rng_mt19937);
    for (unsigned long seed = 1; seed <= 50; seed++) {
        gsl_rng_set(g, seed);
        double d[N], r[N];
        int64_t w[N];
        for (int i = 0; i < N; i++) {
            d[i] = gsl_rng_uniform(g) * gsl_rng_uniform(g) * 0.1;
            w[i] = 1 + (int64_t)gsl_rng_uniform_int(g, 1000);
        }
        double target = 0.1 + 0.8 * gsl_rng_uniform(g), lambda = 0.2 * gsl_rng_uniform(g);
        assert_cce_ok(cce_owl_ratios(d, w, N, target, lambda, r));
        assert_near(weighted_mean(r, w, N), target, 1e-12);
        for (int i = 0; i < N; i++) {
            assert_true(r[i] >= target - lambda - 1e-12 && r[i] <= target + lambda + 1e-12);
            for (int j = 0; j < N; j++) /* more outliers: pruned no more */
                if (d[i] > d[j]) assert_true(r[i] <= r[j] + 1e-12);
        }
    }
    gsl_rng_free(g);
}

/* ---- Outlier ratios of a model -------------------------------------------------------------- */

static cce_model *tiny(uint64_t seed) {
    cce_synth_options o;
    assert_cce_ok(cce_synth_preset("tiny", &o));
    o.seed = seed;
    cce_model *m;
    assert_cce_ok(cce_synth_model(&o, &m));
    return m;
}

/* Column norms of 1 + (j % 3) on every site of every layer. */
static cce_calib *unit_calib(cce_model *m) {
    cce_calib *c;
    const cce_config *cfg = cce_model_config(m);
    assert_cce_ok(cce_calib_new(cfg->n_layers, &c));
    int dims[CCE_SITE_COUNT] = {cfg->dim, cfg->n_heads * cfg->head_dim, cfg->dim, cfg->hidden_dim};
    for (int l = 0; l < cfg->n_layers; l++)
        for (int s = 0; s < CCE_SITE_COUNT; s++) {
            double *sum = calloc((size_t)dims[s], sizeof *sum), *sq = malloc(dims[s] * sizeof *sq);
            for (int j = 0; j < dims[s]; j++) sq[j] = (1 + j % 3) * (1 + j % 3);
            assert_cce_ok(cce_calib_set_input(c, l, (cce_calib_site)s, dims[s], 10, sum, sq, NULL));
            free(sum);
            free(sq);
        }
    return c;
}

/* Brute force D_l over the named tensors of layer l, and their parameter count. */
static double brute_outlier(cce_model *m, int l, const char *const *suffixes, int n, double owl_m,
                            int64_t *params) {
    double total = 0;
    int64_t count = 0, above = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < n; k++) {
            char name[128];
            snprintf(name, sizeof name, "layers.%d.%s.weight", l, suffixes[k]);
            cce_tensor *t;
            assert_cce_ok(cce_model_tensor(m, name, &t));
            int64_t rows = t->shape[0], cols = t->shape[1];
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = 0; j < cols; j++) {
                    double s = fabs((double)t->data[r * cols + j]) * (double)(1 + j % 3);
                    if (pass == 0)
                        total += s, count++;
                    else
                        above += s > owl_m * total / (double)count;
                }
        }
    *params = count;
    return (double)above / (double)count;
}

static void test_outlier_ratios(void **state) {
    (void)state;
    cce_model *m = tiny(3);
    /* Plant outliers in layer 0: 40 weights of q_proj 30 times larger. */
    cce_tensor *q;
    assert_cce_ok(cce_model_tensor(m, "layers.0.self_attn.q_proj.weight", &q));
    for (int i = 0; i < 40; i++) q->data[i * 23 % cce_tensor_numel(q)] *= 30;
    cce_calib *c = unit_calib(m);
    cce_plan *plan;
    assert_cce_ok(cce_plan_new(CCE_PLAN_RATIO, 0.5, &plan));
    assert_cce_ok(cce_plan_add_rule(plan, "skip=layers.1.self_attn.v_proj"));
    assert_cce_ok(cce_plan_add_rule(plan, "layers.1.mlp.*=0.3"));
    double d[2];
    int64_t w[2];
    assert_cce_ok(cce_owl_outlier_ratios(m, c, plan, 5.0, d, w));
    static const char *const all[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                      "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                      "mlp.down_proj"};
    static const char *const l1[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.o_proj",
                                     "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    static const char *const l1_uniform[] = {"self_attn.q_proj", "self_attn.k_proj",
                                             "self_attn.o_proj"};
    int64_t p0, p1, p1u;
    assert_near(d[0], brute_outlier(m, 0, all, 7, 5.0, &p0), 0);
    assert_near(d[1], brute_outlier(m, 1, l1, 6, 5.0, &p1), 0);
    brute_outlier(m, 1, l1_uniform, 3, 5.0, &p1u);
    assert_true(d[0] > d[1]);
    assert_true(d[1] > 0);
    assert_int_equal(w[0], p0);  /* every linear tensor of layer 0 is allocated */
    assert_int_equal(w[1], p1u); /* layer 1: skip and pattern overrides are not */

    /* The allocation: layer 0 (more outliers) is pruned less; the pattern override still wins. */
    assert_cce_ok(cce_owl_allocate(m, c, plan, 5.0, 0.08, "test"));
    cce_plan_row r0, r1, r1m;
    assert_cce_ok(cce_plan_resolve(plan, 0, "layers.0.mlp.up_proj.weight", &r0));
    assert_cce_ok(cce_plan_resolve(plan, 1, "layers.1.self_attn.q_proj.weight", &r1));
    assert_cce_ok(cce_plan_resolve(plan, 1, "layers.1.mlp.up_proj.weight", &r1m));
    assert_int_equal(r0.source, CCE_PLAN_ALLOCATION);
    assert_string_equal(r0.rule, "owl");
    /* Before re-centring layer 0 is at 0.42, layer 1 at 0.58; the mean weighted by the
     * allocated parameters (p0 > p1u) is below 0.5, so the shift pushes layer 1 to its bound and
     * layer 0 holds the rest. */
    assert_near(r1.value, 0.58, 1e-12);
    assert_near(r0.value, (0.5 * (double)(p0 + p1u) - 0.58 * (double)p1u) / (double)p0, 1e-12);
    assert_true(r0.value > 0.42 && r0.value < 0.5);
    assert_int_equal(r1m.source, CCE_PLAN_PATTERN);
    assert_near(r1m.value, 0.3, 0);

    assert_int_equal(cce_owl_outlier_ratios(m, c, plan, 0.0, d, w), CCE_ERR_RANGE);
    assert_int_equal(cce_owl_allocate(m, NULL, plan, 5.0, 0.08, "test"), CCE_ERR_STATE);
    assert_non_null(strstr(cce_error_detail(), "alloc = owl"));
    cce_plan_free(plan);
    assert_cce_ok(cce_plan_new(CCE_PLAN_BITS, 4, &plan));
    assert_int_equal(cce_owl_allocate(m, c, plan, 5.0, 0.08, "test"), CCE_ERR_ARG);
    cce_plan_free(plan);
    cce_calib_free(c);
    cce_model_free(m);
}

/* ---- Through the driver --------------------------------------------------------------------- */

static void check_owl_run(const char *spec, const cce_calib_data *d) {
    cce_model *m = tiny(11);
    /* Make the layers differ: stretch a few weights of layer 1. */
    cce_tensor *t;
    assert_cce_ok(cce_model_tensor(m, "layers.1.mlp.down_proj.weight", &t));
    for (int i = 0; i < 64; i++) t->data[i * 7] *= 25;
    const cce_strategy *s;
    cce_params *p;
    cce_strategy_instance *inst;
    assert_cce_ok(cce_strategy_parse_spec(spec, &s, &p));
    assert_cce_ok(cce_strategy_instance_new(s, p, &inst));
    cce_params_free(p);
    assert_true(cce_compress_needs_calibration(inst));
    cce_model *v;
    cce_compress_result res;
    assert_int_equal(cce_compress(m, &inst, 1, NULL, 0, NULL, NULL, &v, &res), CCE_ERR_STATE);
    assert_non_null(strstr(cce_error_detail(), "calibration"));
    assert_null(v);
    cce_compress_options o;
    cce_compress_options_init(&o);
    o.use_cache = 0;
    o.calib.ctx = 32;
    assert_cce_ok(cce_compress(m, &inst, 1, NULL, 0, d, &o, &v, &res));
    size_t n;
    const cce_plan_row *rows = cce_plan_applied(res.plans[0], &n);
    double ratio[2] = {NAN, NAN}, sum = 0, total = 0;
    for (size_t i = 0; i < n; i++) {
        if (rows[i].source == CCE_PLAN_SKIP) continue;
        assert_int_equal(rows[i].source, CCE_PLAN_ALLOCATION);
        assert_string_equal(rows[i].rule, "owl");
        ratio[rows[i].layer] = rows[i].value;
        cce_tensor *w;
        assert_cce_ok(cce_model_tensor(m, rows[i].tensor, &w));
        sum += rows[i].value * (double)cce_tensor_numel(w);
        total += (double)cce_tensor_numel(w);
    }
    assert_near(sum / total, 0.5, 1e-12); /* weighted by parameters, at the target */
    assert_true(ratio[0] != ratio[1]);
    assert_true(ratio[0] >= 0.42 - 1e-12 && ratio[0] <= 0.58 + 1e-12);
    assert_true(ratio[1] >= 0.42 - 1e-12 && ratio[1] <= 0.58 + 1e-12);
    /* Every report row removed its layer's share of each row. */
    for (size_t i = 0; i < res.report.n; i++) {
        const cce_report_row *row = &res.report.rows[i];
        assert_true(fabs(row->sparsity - ratio[row->layer]) < 0.05);
    }
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_strategy_instance_free(inst);
    cce_model_free(m);
}

static void test_owl_in_compress(void **state) {
    (void)state;
    gsl_rng *g = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(g, 4);
    int32_t tokens[4 * 24];
    for (int i = 0; i < 4 * 24; i++) tokens[i] = 3 + (int32_t)gsl_rng_uniform_int(g, 297);
    gsl_rng_free(g);
    cce_calib_data d = {.tokens = tokens, .n_segments = 4, .seg_len = 24};
    cce_calib_data_hash(&d);
    check_owl_run("wanda:ratio=0.5,alloc=owl", &d);
    check_owl_run("magnitude:ratio=0.5,alloc=owl,owl_lambda=0.08", &d);

    /* Combinations the schema cannot express. */
    const cce_strategy *s;
    cce_params *p;
    cce_strategy_instance *inst;
    assert_cce_ok(cce_strategy_parse_spec("magnitude:scope=global,alloc=owl", &s, &p));
    assert_int_equal(cce_strategy_instance_new(s, p, &inst), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "alloc = owl"));
    cce_params_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ratios_hand_computed),
        cmocka_unit_test(test_ratios_random_mean_bounds_order),
        cmocka_unit_test(test_outlier_ratios),
        cmocka_unit_test(test_owl_in_compress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
