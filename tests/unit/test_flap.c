/* The flap strategy (FLAP-style structured pruning): the sample variance and the fluctuation
 * scores on constructed statistics; standardisation; the search on constructed scores picks
 * exactly the expected units (heads before neurons when their z-scores are lower, a kv head
 * charged with its last reader, the compensation bias charged once per module, the first unit
 * over budget ending the search; scores standardised across layers or per layer); the budget is
 * met to within one unit (global, uniform, with a layer rule); bias compensation keeps the
 * calibration mean of the down_proj output exactly for a fixed FFN input, and without it the mean
 * moves; a GQA model pruned with heads evaluates, generates, saves and loads back with identical
 * logits; bad input fails clearly; on the real stories260K, compensation helps (measured). */
#include <gsl/gsl_rng.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "compress.h"
#include "dataset.h"
#include "eval.h"
#include "../../strategies/flap.h"
#include "forward.h"
#include "generate.h"
#include "import.h"
#include "model.h"
#include "strategy.h"
#include "synth.h"
#include "test_support.h"

/* ---- Fixtures -------------------------------------------------------------------------------- */

static cce_model *synth(const char *preset, int seq_len, uint64_t seed) {
    cce_synth_options o;
    assert_cce_ok(cce_synth_preset(preset, &o));
    o.seed = seed;
    o.cfg.seq_len = seq_len;
    cce_model *m;
    assert_cce_ok(cce_synth_model(&o, &m));
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

#define SEGS    6
#define SEG_LEN 63

static int32_t calib_tokens[SEGS * SEG_LEN];

static cce_calib_data calib_data(int vocab) {
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 29);
    for (size_t i = 0; i < SEGS * SEG_LEN; i++)
        calib_tokens[i] = 3 + (int32_t)gsl_rng_uniform_int(r, (unsigned long)vocab - 3);
    gsl_rng_free(r);
    cce_calib_data d = {.tokens = calib_tokens, .n_segments = SEGS, .seg_len = SEG_LEN};
    cce_calib_data_hash(&d);
    return d;
}

/* Compresses base with one strategy spec, calibration from random tokens (or none). */
static cce_status run(cce_model *base, const char *spec, const char *const *rules, size_t n_rules,
                      int with_calib, cce_model **v, cce_compress_result *res) {
    cce_strategy_instance *inst = instance(spec);
    cce_calib_data d = calib_data(cce_model_config(base)->vocab_size);
    cce_compress_options o;
    cce_compress_options_init(&o);
    o.use_cache = 0;
    cce_status s = cce_compress(base, &inst, 1, rules, n_rules, with_calib ? &d : NULL, &o, v, res);
    cce_strategy_instance_free(inst);
    return s;
}

static cce_tensor *layer_tensor(cce_model *m, int l, cce_layer_tensor w) {
    cce_tensor *t;
    assert_cce_ok(cce_model_layer_tensor(m, l, w, &t));
    return t;
}

/* Block weight parameters (weights and biases, norms excluded) of every present layer. */
static int64_t block_params(cce_model *m) {
    const cce_config *c = cce_model_config(m);
    int64_t p = 0;
    for (int l = 0; l < c->n_layers; l++)
        if (!cce_model_layer(m, l)->removed) p += cce_model_layer_params(m, l) - 2 * c->dim;
    return p;
}

/* Statistics of n tokens with the given per-channel means and sample variances. */
static void set_site(cce_calib *c, int layer, cce_calib_site site, int dim, int64_t n,
                     const double *mu, const double *var) {
    double *sum = malloc((size_t)dim * sizeof *sum), *sq = malloc((size_t)dim * sizeof *sq);
    for (int j = 0; j < dim; j++) {
        sum[j] = (double)n * mu[j];
        sq[j] = (double)(n - 1) * var[j] + (double)n * mu[j] * mu[j];
    }
    assert_cce_ok(cce_calib_set_input(c, layer, site, dim, n, sum, sq, NULL));
    free(sum);
    free(sq);
}

/* Scales every column of w [rows, cols] to unit norm. */
static void unit_columns(cce_tensor *w) {
    int64_t rows = w->shape[0], cols = w->shape[1];
    for (int64_t j = 0; j < cols; j++) {
        double s = 0;
        for (int64_t i = 0; i < rows; i++)
            s += (double)w->data[i * cols + j] * w->data[i * cols + j];
        for (int64_t i = 0; i < rows; i++)
            w->data[i * cols + j] = (float)(w->data[i * cols + j] / sqrt(s));
    }
}

/* Plans inst on m with statistics c, then applies it to layer l's job (copies of m's tensors,
 * targets and skips from the plan). The caller frees the job. */
static cce_block_job *apply_layer(cce_strategy_instance *inst, cce_model *m, const cce_calib *c,
                                  const cce_plan *plan, int l, cce_report *r) {
    cce_block_job *job;
    assert_cce_ok(cce_block_job_new(l, CCE_LT_COUNT, &job));
    for (int w = 0; w < CCE_LT_COUNT; w++) {
        char name[CCE_PLAN_NAME_MAX];
        cce_layer_tensor_name(l, (cce_layer_tensor)w, name, sizeof name);
        cce_plan_row row;
        assert_cce_ok(cce_plan_resolve(plan, l, name, &row));
        cce_tensor *t;
        assert_cce_ok(cce_tensor_clone(layer_tensor(m, l, (cce_layer_tensor)w), &t));
        assert_cce_ok(
            cce_block_job_set(job, (size_t)w, name, t, row.value, row.source == CCE_PLAN_SKIP));
    }
    job->model = m;
    job->calib = c;
    job->can_resize = 1;
    assert_cce_ok(cce_strategy_instance_apply(inst, job, r));
    return job;
}

/* keep[i] = 1 for the rows of orig [n, cols] found, in order, in now [*, cols]. */
static int kept_rows(const cce_tensor *orig, const cce_tensor *now, int *keep) {
    int64_t n = orig->shape[0], cols = orig->shape[1], r = 0;
    for (int64_t i = 0; i < n; i++) {
        keep[i] = r < now->shape[0] && !memcmp(orig->data + i * cols, now->data + r * cols,
                                               (size_t)cols * sizeof(float));
        r += keep[i];
    }
    return (int)r;
}

/* ---- Scores ---------------------------------------------------------------------------------- */

static void test_variance_and_standardize(void **state) {
    (void)state;
    /* sums of explicit samples: the variance equals GSL's sample variance of them */
    enum { T = 7, D = 5 };
    double x[D][T], sum[D] = {0}, sq[D] = {0}, var[D];
    for (int j = 0; j < D; j++)
        for (int t = 0; t < T; t++) {
            x[j][t] = 3.0 * j + sin(1.3 * t + j) * (j + 1);
            sum[j] += x[j][t];
            sq[j] += x[j][t] * x[j][t];
        }
    cce_calib_input in = {
        .layer = 2, .site = CCE_SITE_DOWN_IN, .dim = D, .n_tokens = T, .sum = sum, .sum_sq = sq};
    assert_cce_ok(cce_flap_variance(&in, var));
    for (int j = 0; j < D; j++) assert_float_equal(var[j], gsl_stats_variance(x[j], 1, T), 1e-12);
    in.n_tokens = 1;
    assert_int_equal(cce_flap_variance(&in, var), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "layer 2"));
    assert_non_null(strstr(cce_error_detail(), "at least 2"));

    double z[5] = {1, 2, 3, 4, 5};
    cce_flap_standardize(z, 5);
    for (int i = 0; i < 5; i++) assert_float_equal(z[i], (i - 2) / sqrt(2.5), 1e-12);
    double same[3] = {4, 4, 4}, one[1] = {7};
    cce_flap_standardize(same, 3);
    cce_flap_standardize(one, 1);
    for (int i = 0; i < 3; i++) assert_float_equal(same[i], 0, 0);
    assert_float_equal(one[0], 0, 0);
}

static void test_scores_known(void **state) {
    (void)state;
    cce_model *m = synth("tiny", 32, 3); /* dim 32, hidden 64, 4 heads of 8, 2 kv heads */
    cce_calib *c;
    assert_cce_ok(cce_calib_new(2, &c));
    double mu[64], var[64];
    for (int j = 0; j < 64; j++) mu[j] = 0.5 * j / 64 - 0.2, var[j] = 0.1 + 0.01 * j;
    set_site(c, 1, CCE_SITE_DOWN_IN, 64, 4, mu, var);
    double muo[32], varo[32];
    for (int j = 0; j < 32; j++) muo[j] = -0.1 * j, varo[j] = 0.05 + 0.003 * j;
    set_site(c, 1, CCE_SITE_O_IN, 32, 4, muo, varo);
    double ffn[64], heads[4];
    assert_cce_ok(cce_flap_layer_scores(m, c, 1, ffn, heads));
    const cce_tensor *d = layer_tensor(m, 1, CCE_LT_DOWN), *o = layer_tensor(m, 1, CCE_LT_O);
    for (int j = 0; j < 64; j++) {
        double n2 = 0;
        for (int i = 0; i < 32; i++) n2 += (double)d->data[i * 64 + j] * d->data[i * 64 + j];
        assert_float_equal(ffn[j], var[j] * n2, 1e-12 * var[j] * n2);
    }
    for (int h = 0; h < 4; h++) {
        double s = 0;
        for (int ch = 8 * h; ch < 8 * h + 8; ch++) {
            double n2 = 0;
            for (int i = 0; i < 32; i++) n2 += (double)o->data[i * 32 + ch] * o->data[i * 32 + ch];
            s += varo[ch] * n2;
        }
        assert_float_equal(heads[h], s, 1e-12 * s);
    }
    /* one output alone; layer 0 has no statistics; a width of another model */
    assert_cce_ok(cce_flap_layer_scores(m, c, 1, NULL, heads));
    assert_int_equal(cce_flap_layer_scores(m, c, 0, ffn, NULL), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "down_proj input"));
    set_site(c, 0, CCE_SITE_DOWN_IN, 32, 4, mu, var);
    assert_int_equal(cce_flap_layer_scores(m, c, 0, ffn, NULL), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "width 32"));
    cce_calib_free(c);
    cce_model_free(m);
}

/* ---- The search on constructed scores -------------------------------------------------------- */

/* The tiny model with unit-norm down_proj and o_proj columns and statistics whose variances make
 * the scores: neuron j of layer l has S = 1 + 0.02 j + 0.01 l (j < 60; 1000 for j >= 60; layer 1
 * times ffn_scale1), head h of layer l S = head_s[l][h] (spread evenly over its 8 channels).
 * Standardised across layers (standardize=type, ffn_scale1 = 1), the 120 neurons near 1 among 8
 * at 1000 get z of about -0.35 and a head of score 1 among heads of 100 about -2.5: the lowest
 * heads come first, then neurons 0, 1, 2, ... alternating layers. */
static cce_model *search_fixture(const double head_s[2][4], double ffn_scale1, cce_calib **c) {
    cce_model *m = synth("tiny", 32, 5);
    assert_cce_ok(cce_calib_new(2, c));
    for (int l = 0; l < 2; l++) {
        unit_columns(layer_tensor(m, l, CCE_LT_DOWN));
        unit_columns(layer_tensor(m, l, CCE_LT_O));
        double mu[64], var[64], muo[32], varo[32];
        for (int j = 0; j < 64; j++) {
            mu[j] = 0.1 + 0.01 * j - 0.3 * l;
            var[j] = (j < 60 ? 1 + 0.02 * j + 0.01 * l : 1000) * (l ? ffn_scale1 : 1);
        }
        for (int ch = 0; ch < 32; ch++) muo[ch] = 0.2 - 0.02 * ch, varo[ch] = head_s[l][ch / 8] / 8;
        set_site(*c, l, CCE_SITE_DOWN_IN, 64, 10, mu, var);
        set_site(*c, l, CCE_SITE_O_IN, 32, 10, muo, varo);
    }
    return m;
}

typedef struct layer_result {
    int keep_ffn[64], keep_heads[4];
    int hidden, n_heads, n_kv;
} layer_result;

/* Plans and applies spec on the fixture; fills what each layer kept. */
static void search_run(const char *spec, cce_model *m, const cce_calib *c, layer_result out[2],
                       cce_block_job *jobs[2]) {
    cce_strategy_instance *inst = instance(spec);
    cce_plan *plan;
    assert_cce_ok(cce_plan_new_from_params(cce_strategy_instance_params(inst), &plan));
    assert_cce_ok(cce_strategy_instance_plan(inst, m, c, plan));
    cce_report r;
    cce_report_init(&r);
    for (int l = 0; l < 2; l++) {
        cce_block_job *job = apply_layer(inst, m, c, plan, l, &r);
        layer_result *lr = &out[l];
        lr->hidden = job->reshaped ? job->new_shape.hidden_dim : 64;
        lr->n_heads = job->reshaped ? job->new_shape.n_heads : 4;
        lr->n_kv = job->reshaped ? job->new_shape.n_kv_heads : 2;
        assert_int_equal(kept_rows(layer_tensor(m, l, CCE_LT_GATE),
                                   job->tensors[CCE_LT_GATE].weight, lr->keep_ffn),
                         lr->hidden);
        int keep_q[32];
        assert_int_equal(
            kept_rows(layer_tensor(m, l, CCE_LT_Q), job->tensors[CCE_LT_Q].weight, keep_q),
            8 * lr->n_heads);
        for (int h = 0; h < 4; h++) lr->keep_heads[h] = keep_q[8 * h];
        /* the recorded allocation is the fraction of neurons removed */
        char name[CCE_PLAN_NAME_MAX];
        cce_plan_row row;
        cce_layer_tensor_name(l, CCE_LT_UP, name, sizeof name);
        assert_cce_ok(cce_plan_resolve(plan, l, name, &row));
        assert_int_equal(row.source, CCE_PLAN_ALLOCATION);
        assert_float_equal(row.value, (64.0 - lr->hidden) / 64.0, 1e-15);
        if (jobs)
            jobs[l] = job;
        else
            cce_block_job_free(job);
    }
    cce_report_clear(&r);
    cce_plan_free(plan);
    cce_strategy_instance_free(inst);
}

static void expect_ffn(const layer_result *lr, const int *gone, int n_gone) {
    for (int j = 0; j < 64; j++) {
        int g = 0;
        for (int i = 0; i < n_gone; i++) g |= gone[i] == j;
        assert_int_equal(lr->keep_ffn[j], !g);
    }
    assert_int_equal(lr->hidden, 64 - n_gone);
}

static void test_global_search_known(void **state) {
    (void)state;
    /* P = 2 * (4 * 8 * 32 * 2 + 2 * 8 * 32 * 2 + 3 * 64 * 32) = 18432 block parameters. */
    const double one_low[2][4] = {{1, 100, 100, 100}, {100, 100, 100, 100}};
    cce_calib *c;
    cce_model *m = search_fixture(one_low, 1, &c);
    layer_result lr[2];
    /* ratio 0.05: budget 921 = head (0,0) 512 + 4 neurons of 96 (896); a fifth would give 992. */
    search_run("flap:ratio=0.05,compensate=false,standardize=type", m, c, lr, NULL);
    assert_int_equal(lr[0].n_heads, 3);
    assert_int_equal(lr[0].keep_heads[0], 0);
    assert_int_equal(lr[0].n_kv, 2); /* head 1 still reads kv head 0 */
    assert_int_equal(lr[1].n_heads, 4);
    const int g01[2] = {0, 1};
    expect_ffn(&lr[0], g01, 2);
    expect_ffn(&lr[1], g01, 2);

    /* With compensation the first unit of each module also creates its bias (dim 32): head 480,
     * then neurons 64 (first in layer 0), 64 (first in layer 1), 96, 96, 96 = 896; the next
     * would give 992. One more neuron of layer 0 goes. */
    cce_block_job *jobs[2];
    search_run("flap:ratio=0.05,standardize=type", m, c, lr, jobs);
    assert_int_equal(lr[0].n_heads, 3);
    const int g012[3] = {0, 1, 2};
    expect_ffn(&lr[0], g012, 3);
    expect_ffn(&lr[1], g01, 2);
    /* the biases: b = W[:, removed] mean(x_removed), from the constructed means */
    const cce_tensor *d0 = layer_tensor(m, 0, CCE_LT_DOWN), *o0 = layer_tensor(m, 0, CCE_LT_O);
    const cce_tensor *bd = jobs[0]->bias[CCE_LB_DOWN], *bo = jobs[0]->bias[CCE_LB_O];
    assert_non_null(bd);
    assert_non_null(bo);
    assert_int_equal(cce_tensor_numel(bd), 32);
    for (int i = 0; i < 32; i++) {
        double want = 0, want_o = 0;
        for (int j = 0; j < 3; j++) want += (double)d0->data[i * 64 + j] * (0.1 + 0.01 * j);
        for (int ch = 0; ch < 8; ch++) want_o += (double)o0->data[i * 32 + ch] * (0.2 - 0.02 * ch);
        assert_float_equal(bd->data[i], want, 1e-6);
        assert_float_equal(bo->data[i], want_o, 1e-6);
    }
    assert_null(jobs[1]->bias[CCE_LB_O]); /* layer 1 lost no head */
    assert_non_null(jobs[1]->bias[CCE_LB_DOWN]);
    cce_block_job_free(jobs[0]);
    cce_block_job_free(jobs[1]);
    cce_model_free(m);
    cce_calib_free(c);

    /* Heads 0 and 1 of layer 0 share kv head 0: the second costs its q/o (512) and the kv head's
     * k/v (512) too. ratio 0.1: budget 1843 = 512 + 1024 + 3 neurons (1824); a fourth: 1920. */
    const double two_low[2][4] = {{1, 2, 100, 100}, {100, 100, 100, 100}};
    m = search_fixture(two_low, 1, &c);
    search_run("flap:ratio=0.1,compensate=false,standardize=type", m, c, lr, NULL);
    assert_int_equal(lr[0].n_heads, 2);
    assert_int_equal(lr[0].n_kv, 1);
    assert_int_equal(lr[0].keep_heads[0] + lr[0].keep_heads[1], 0);
    expect_ffn(&lr[0], g01, 2);
    const int g0[1] = {0};
    expect_ffn(&lr[1], g0, 1);
    /* structure = ffn: only neurons, 19 of 96 (1824 of 1843), alternating layers */
    search_run("flap:ratio=0.1,compensate=false,structure=ffn,standardize=type", m, c, lr, NULL);
    assert_int_equal(lr[0].n_heads, 4);
    assert_int_equal(lr[0].hidden + lr[1].hidden, 128 - 19);
    assert_int_equal(lr[0].hidden, 64 - 10);
    /* uniform: each layer its own budget floor(0.1 * 9216) = 921, 9 neurons (864) */
    search_run("flap:ratio=0.1,compensate=false,structure=ffn,search=uniform", m, c, lr, NULL);
    assert_int_equal(lr[0].hidden, 64 - 9);
    assert_int_equal(lr[1].hidden, 64 - 9);
    cce_model_free(m);
    cce_calib_free(c);

    /* Layer 1's neuron scores ten times layer 0's. Standardised across layers (type), layer 0's
     * neurons all come first: the 19 neurons are all layer 0's. Per layer (the default), scaling
     * a layer changes none of its z-scores: the layers alternate again (10 and 9). */
    m = search_fixture(two_low, 10, &c);
    search_run("flap:ratio=0.1,compensate=false,structure=ffn,standardize=type", m, c, lr, NULL);
    assert_int_equal(lr[0].hidden, 64 - 19);
    assert_int_equal(lr[1].hidden, 64);
    search_run("flap:ratio=0.1,compensate=false,structure=ffn", m, c, lr, NULL);
    assert_int_equal(lr[0].hidden + lr[1].hidden, 128 - 19);
    assert_true(lr[0].hidden >= 64 - 10 && lr[1].hidden >= 64 - 10);
    cce_model_free(m);
    cce_calib_free(c);
    /* Per layer with heads: layer 0's heads {1, 2, 100, 100} standardise to -0.875, -0.857,
     * 0.866, 0.866, layer 1's {100, 150, 200, 250} to -1.162, -0.387, 0.387, 1.162, the low
     * neurons to about -0.26. Order: (1,0) 512, (0,0) 512, then (0,1), the last reader of kv
     * head 0, would cost 1024 and exceed the budget 1843: the search ends there (1024 removed,
     * within one unit), although cheaper neurons follow. */
    const double spread[2][4] = {{1, 2, 100, 100}, {100, 150, 200, 250}};
    m = search_fixture(spread, 1, &c);
    search_run("flap:ratio=0.1,compensate=false", m, c, lr, NULL);
    assert_int_equal(lr[0].n_heads, 3);
    assert_int_equal(lr[0].keep_heads[0], 0);
    assert_int_equal(lr[1].n_heads, 3);
    assert_int_equal(lr[1].keep_heads[0], 0);
    assert_int_equal(lr[0].n_kv + lr[1].n_kv, 4);
    assert_int_equal(lr[0].hidden + lr[1].hidden, 128);
    /* min_neurons: at most 2 neurons per layer may go (64 - 62), then the search fails */
    cce_strategy_instance *inst = instance("flap:ratio=0.1,structure=ffn,min_neurons=62");
    cce_plan *plan;
    assert_cce_ok(cce_plan_new_from_params(cce_strategy_instance_params(inst), &plan));
    assert_int_equal(cce_strategy_instance_plan(inst, m, c, plan), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "min_neurons = 62"));
    print_message("capacity: %s\n", cce_error_detail());
    cce_plan_free(plan);
    cce_strategy_instance_free(inst);
    cce_model_free(m);
    cce_calib_free(c);
}

/* ---- Budgets and compensation on real activations -------------------------------------------- */

static void check_budget(cce_model *base, const char *spec, const char *const *rules,
                         size_t n_rules, double ratio) {
    cce_model *v;
    cce_compress_result res;
    assert_cce_ok(run(base, spec, rules, n_rules, 1, &v, &res));
    int64_t before = block_params(base), after = block_params(v);
    int64_t budget = cce_ratio_count(ratio, before), unit = 2 * 2 * 8 * 64; /* head + kv head */
    print_message("%s: removed %lld of budget %lld\n", spec, (long long)(before - after),
                  (long long)budget);
    assert_true(before - after <= budget);
    assert_true(before - after > budget - unit);
    for (size_t i = 0; i < res.report.n; i++) {
        const cce_report_row *row = &res.report.rows[i];
        cce_tensor *t;
        assert_cce_ok(cce_model_tensor(v, row->tensor, &t));
        assert_int_equal(row->params_after, cce_tensor_numel(t));
        assert_true(row->note[0] != '\0');
    }
    cce_compress_result_clear(&res);
    cce_model_free(v);
}

static void test_budget_within_one_unit(void **state) {
    (void)state;
    cce_model *base = synth("stories260K", 64, 9);
    check_budget(base, "flap:ratio=0.1", NULL, 0, 0.1);
    check_budget(base, "flap:ratio=0.3,compensate=false", NULL, 0, 0.3);
    check_budget(base, "flap:ratio=0.15,structure=heads", NULL, 0, 0.15);
    /* layer 2 keeps everything by a rule; its parameters still count in the budget */
    const char *keep2[] = {"2=0"};
    check_budget(base, "flap:ratio=0.2", keep2, 1, 0.2);
    /* uniform: every layer within one unit of its own budget */
    cce_model *v;
    cce_compress_result res;
    assert_cce_ok(run(base, "flap:ratio=0.2,search=uniform", NULL, 0, 1, &v, &res));
    for (int l = 0; l < 5; l++) {
        int64_t pb = cce_model_layer_params(base, l) - 128, pa = cce_model_layer_params(v, l) - 128;
        int64_t budget = cce_ratio_count(0.2, pb);
        assert_true(pb - pa <= budget && pb - pa > budget - 2048);
    }
    cce_compress_result_clear(&res);
    cce_model_free(v);
    /* with the rule, layer 2 is untouched and its tensors are recorded as the rule set them */
    assert_cce_ok(run(base, "flap:ratio=0.2", keep2, 1, 1, &v, &res));
    assert_int_equal(cce_model_layer(v, 2)->hidden_dim, 172);
    assert_int_equal(cce_model_layer(v, 2)->n_heads, 8);
    assert_int_equal(cce_model_bias_count(v) > 0, 1);
    cce_tensor *b;
    assert_cce_ok(cce_model_layer_bias(v, 2, CCE_LB_DOWN, &b));
    assert_null(b);
    size_t n_rows;
    const cce_plan_row *rows = cce_plan_applied(res.plans[0], &n_rows);
    int alloc = 0;
    for (size_t i = 0; i < n_rows; i++) {
        if (rows[i].layer == 2 && rows[i].source != CCE_PLAN_SKIP)
            assert_int_equal(rows[i].source, CCE_PLAN_LAYER);
        alloc += rows[i].source == CCE_PLAN_ALLOCATION;
    }
    assert_int_equal(alloc, 4 * 7);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
}

/* mean over the calibration tokens of layer 0's down_proj output, dim 32: W mean(a) + b */
static void down_mean(cce_model *m, const cce_calib_data *d, double *out, double *ffn_in_sum) {
    cce_calib *c;
    cce_calib_options o = {.second_moments = 0, .ctx = 0};
    assert_cce_ok(cce_calib_collect(m, d, &o, 0, &c));
    cce_calib_input a, x;
    assert_cce_ok(cce_calib_site_input(c, 0, CCE_SITE_DOWN_IN, &a));
    assert_cce_ok(cce_calib_site_input(c, 0, CCE_SITE_FFN_IN, &x));
    const cce_tensor *w = layer_tensor(m, 0, CCE_LT_DOWN);
    cce_tensor *b;
    assert_cce_ok(cce_model_layer_bias(m, 0, CCE_LB_DOWN, &b));
    assert_int_equal(w->shape[1], a.dim);
    for (int i = 0; i < 32; i++) {
        double y = b ? b->data[i] : 0;
        for (int j = 0; j < a.dim; j++)
            y += (double)w->data[i * a.dim + j] * a.sum[j] / (double)a.n_tokens;
        out[i] = y;
    }
    for (int j = 0; j < 32; j++) ffn_in_sum[j] = x.sum[j];
    cce_calib_free(c);
}

static void test_compensation_keeps_the_mean(void **state) {
    (void)state;
    cce_model *base = synth("tiny", 64, 13), *v;
    cce_calib_data d = calib_data(cce_model_config(base)->vocab_size);
    double dense[32], pruned[32], x_dense[32], x_pruned[32], scale = 0;
    down_mean(base, &d, dense, x_dense);
    for (int i = 0; i < 32; i++) scale = fmax(scale, fabs(dense[i]));
    cce_compress_result res;
    assert_cce_ok(run(base, "flap:ratio=0.3,structure=ffn", NULL, 0, 1, &v, &res));
    assert_true(cce_model_layer(v, 0)->hidden_dim < 64); /* layer 0 lost neurons */
    down_mean(v, &d, pruned, x_pruned);
    double worst = 0;
    for (int i = 0; i < 32; i++) {
        assert_float_equal(x_pruned[i], x_dense[i], 1e-9 * fabs(x_dense[i]) + 1e-9); /* fixed */
        worst = fmax(worst, fabs(pruned[i] - dense[i]));
    }
    print_message("compensated: max |mean diff| %.3g of max |mean| %.3g\n", worst, scale);
    assert_true(worst <= 1e-5 * scale);
    /* the down_proj report row counts the bias in its output error: below the uncompensated one */
    double err_comp = NAN;
    for (size_t i = 0; i < res.report.n; i++)
        if (!strcmp(res.report.rows[i].tensor, "layers.0.mlp.down_proj.weight"))
            err_comp = res.report.rows[i].output_error;
    cce_compress_result_clear(&res);
    cce_model_free(v);

    assert_cce_ok(run(base, "flap:ratio=0.3,structure=ffn,compensate=false", NULL, 0, 1, &v, &res));
    cce_tensor *b;
    assert_cce_ok(cce_model_layer_bias(v, 0, CCE_LB_DOWN, &b));
    assert_null(b);
    down_mean(v, &d, pruned, x_pruned);
    worst = 0;
    for (int i = 0; i < 32; i++) worst = fmax(worst, fabs(pruned[i] - dense[i]));
    print_message("uncompensated: max |mean diff| %.3g\n", worst);
    assert_true(worst > 1e-3 * scale);
    double err_plain = NAN;
    for (size_t i = 0; i < res.report.n; i++)
        if (!strcmp(res.report.rows[i].tensor, "layers.0.mlp.down_proj.weight"))
            err_plain = res.report.rows[i].output_error;
    print_message("down_proj output error: %.4f compensated, %.4f not\n", err_comp, err_plain);
    assert_true(err_comp < err_plain);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
}

/* ---- A GQA model pruned with heads: eval, generate, save and load ---------------------------- */

static float *logits_of(cce_model *m, int T) {
    const cce_config *c = cce_model_config(m);
    int32_t tok[64];
    for (int t = 0; t < T; t++) tok[t] = (int32_t)((t * 37 + 11) % c->vocab_size);
    float *out = malloc((size_t)T * (size_t)c->vocab_size * sizeof *out);
    cce_forward *f;
    assert_cce_ok(cce_forward_new(m, T, &f));
    assert_cce_ok(cce_forward_window(f, tok, T, out));
    cce_forward_free(f);
    return out;
}

static void count_bytes(void *user, const char *piece, size_t len) {
    (void)piece;
    *(size_t *)user += len;
}

static void test_gqa_heads_run_and_round_trip(void **state) {
    (void)state;
    cce_model *base = synth("tiny", 64, 21), *v; /* 4 query heads on 2 kv heads */
    cce_compress_result res;
    assert_cce_ok(run(base, "flap:ratio=0.2,structure=both", NULL, 0, 1, &v, &res));
    int heads = 0;
    for (int l = 0; l < 2; l++) {
        const cce_layer_shape *ls = cce_model_layer(v, l);
        heads += ls->n_heads;
        for (int h = 0; h < ls->n_heads; h++)
            assert_true(ls->kv_of_head[h] >= 0 && ls->kv_of_head[h] < ls->n_kv_heads);
        cce_tensor *bo;
        assert_cce_ok(cce_model_layer_bias(v, l, CCE_LB_O, &bo));
        assert_true((ls->n_heads < 4) == (bo != NULL));
    }
    print_message("heads kept: %d of 8\n", heads);
    assert_true(heads < 8);

    int32_t stream[400];
    for (int i = 0; i < 400; i++) stream[i] = 3 + (i * 53 + 7) % 290;
    cce_eval_options eo = {.ctx = 32};
    cce_eval_result er;
    assert_cce_ok(cce_eval(v, base, stream, 400, &eo, &er));
    assert_true(isfinite(er.ppl) && er.kl_mean > 0);
    cce_eval_result_free(&er);
    size_t bytes = 0;
    assert_cce_ok(cce_generate(v, "hello", 12, 0.0f, 1.0f, 1, count_bytes, &bytes));
    assert_true(bytes >= 5);

    const char *dir = test_scratch_dir("flap");
    char path[512];
    snprintf(path, sizeof path, "%s", test_path(dir, "flap.h5"));
    assert_cce_ok(cce_model_save(v, path, NULL));
    cce_model *loaded;
    assert_cce_ok(cce_model_open(path, &loaded));
    assert_int_equal(cce_model_bias_count(loaded), cce_model_bias_count(v));
    assert_int_equal(cce_model_total_params(loaded), cce_model_total_params(v));
    float *a = logits_of(v, 48), *b = logits_of(loaded, 48);
    assert_memory_equal(a, b, (size_t)48 * 300 * sizeof(float));
    free(a);
    free(b);
    cce_model_free(loaded);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
}

/* ---- Bad input ------------------------------------------------------------------------------- */

static void test_bad_input(void **state) {
    (void)state;
    const cce_strategy *s;
    cce_params *p;
    assert_int_equal(cce_strategy_parse_spec("flap:ratio=0.95", &s, &p), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "ratio"));
    assert_int_equal(cce_strategy_parse_spec("flap:structure=rows", &s, &p), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "structure"));
    assert_int_equal(cce_strategy_parse_spec("flap:min_heads=0", &s, &p), CCE_ERR_RANGE);
    cce_model *base = synth("tiny", 32, 6), *v;
    cce_compress_result res;
    assert_int_equal(run(base, "flap:ratio=0.2", NULL, 0, 0, &v, &res), CCE_ERR_STATE);
    assert_non_null(strstr(cce_error_detail(), "flap"));
    assert_non_null(strstr(cce_error_detail(), "calib"));
    assert_null(v);
    /* heads alone cannot give 50% of the block parameters (attention is a third of them) */
    assert_int_equal(run(base, "flap:ratio=0.5,structure=heads", NULL, 0, 1, &v, &res),
                     CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "give only"));
    /* a ratio on one tensor of a coupled group */
    const char *one[] = {"layers.0.mlp.down_proj.weight=0.25"};
    assert_int_equal(run(base, "flap:ratio=0.2", one, 1, 1, &v, &res), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "down_proj"));
    const char *half[] = {"skip=layers.1.self_attn.k_proj.weight"};
    assert_int_equal(run(base, "flap:ratio=0.2", half, 1, 1, &v, &res), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "skips some"));
    /* apply before plan */
    cce_strategy_instance *inst = instance("flap");
    cce_block_job *job;
    assert_cce_ok(cce_block_job_new(0, 1, &job));
    cce_tensor *t;
    assert_cce_ok(cce_tensor_clone(layer_tensor(base, 0, CCE_LT_Q), &t));
    assert_cce_ok(cce_block_job_set(job, 0, "layers.0.self_attn.q_proj.weight", t, 0.2, 0));
    cce_calib *c;
    assert_cce_ok(cce_calib_new(2, &c));
    job->calib = c;
    cce_report r;
    cce_report_init(&r);
    assert_int_equal(cce_strategy_instance_apply(inst, job, &r), CCE_ERR_STATE);
    assert_non_null(strstr(cce_error_detail(), "plan stage"));
    /* statistics of a single token: no variance */
    double mu[64] = {0}, var[64] = {0};
    for (int l = 0; l < 2; l++) {
        set_site(c, l, CCE_SITE_DOWN_IN, 64, 1, mu, var);
        set_site(c, l, CCE_SITE_O_IN, 32, 1, mu, var);
    }
    cce_plan *plan;
    assert_cce_ok(cce_plan_new_from_params(cce_strategy_instance_params(inst), &plan));
    assert_int_equal(cce_strategy_instance_plan(inst, base, c, plan), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "at least 2"));
    cce_plan_free(plan);
    cce_calib_free(c);
    cce_block_job_free(job);
    cce_strategy_instance_free(inst);
    cce_model_free(base);
}

/* ---- The real stories260K -------------------------------------------------------------------- */

static void test_stories260K(void **state) {
    (void)state;
    const char *bin = test_require_mirror_file("models/stories260K/stories260K.bin");
    const char *tok = test_require_mirror_file("models/stories260K/tok512.bin");
    test_require_mirror_file("text/tinystories_val.txt");
    cce_model *base;
    assert_cce_ok(cce_import_llama2c(bin, tok, &base));
    int32_t *stream, *calib;
    size_t n;
    assert_cce_ok(cce_dataset_tokens("tinystories_val", cce_model_tokenizer(base), &stream, &n));
    cce_split_result split;
    assert_cce_ok(cce_split(n, 100000, 16384, 256, 1, &split));
    assert_cce_ok(cce_split_calib_tokens(stream, n, &split, &calib));
    cce_calib_data d = {.tokens = calib, .n_segments = split.n_calib, .seg_len = 256};
    cce_calib_data_hash(&d);
    cce_eval_options eo = {.ctx = 512, .max_tokens = 20 * 511};
    double ppl[2];
    for (int k = 0; k < 2; k++) {
        cce_strategy_instance *inst =
            instance(k ? "flap:ratio=0.2,compensate=false" : "flap:ratio=0.2");
        cce_compress_options o;
        cce_compress_options_init(&o);
        cce_model *v;
        cce_compress_result res;
        assert_cce_ok(cce_compress(base, &inst, 1, NULL, 0, &d, &o, &v, &res));
        cce_eval_result er;
        assert_cce_ok(cce_eval(v, NULL, stream, n, &eo, &er));
        ppl[k] = er.ppl;
        cce_eval_result_free(&er);
        cce_compress_result_clear(&res);
        cce_model_free(v);
        cce_strategy_instance_free(inst);
    }
    print_message("stories260K flap 0.2: ppl %.4f compensated, %.4f not\n", ppl[0], ppl[1]);
    assert_true(isfinite(ppl[0]) && isfinite(ppl[1]));
    assert_true(ppl[0] < ppl[1]);
    free(calib);
    free(stream);
    cce_split_result_clear(&split);
    cce_model_free(base);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_variance_and_standardize),
        cmocka_unit_test(test_scores_known),
        cmocka_unit_test(test_global_search_known),
        cmocka_unit_test(test_budget_within_one_unit),
        cmocka_unit_test(test_compensation_keeps_the_mean),
        cmocka_unit_test(test_gqa_heads_run_and_round_trip),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_stories260K),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
