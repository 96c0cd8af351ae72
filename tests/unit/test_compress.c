/* The compress driver on tiny synthetic models: round trip (compress, save, load and evaluate
 * equals evaluating the variant in memory; the stored report reads back), the base never changes
 * and untouched tensors stay shared, composition keeps pruned weights zero (a quantizer that is
 * not mask-aware, and the built-in rtn), output errors against activations, sequential statistics
 * on the compressed prefix, failures that leave nothing, rules for one strategy, missing
 * calibration. */
#include <gsl/gsl_rng.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "compress.h"
#include "eval.h"
#include "forward.h"
#include "model.h"
#include "report_store.h"
#include "synth.h"
#include "fixtures.h"
#include "test_support.h"

static void hash_weights(cce_model *m, unsigned char md[32]) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (size_t i = 0; i < cce_model_tensor_count(m); i++) {
        cce_tensor *t;
        assert_cce_ok(cce_model_tensor(m, cce_model_tensor_name_at(m, i), &t));
        EVP_DigestUpdate(ctx, t->data, (size_t)cce_tensor_numel(t) * sizeof(float));
    }
    unsigned len;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
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

static cce_strategy_instance *instance_of(const cce_strategy *s, const char *text) {
    cce_params *p;
    cce_strategy_instance *inst;
    assert_cce_ok(cce_params_parse(s, text, &p));
    assert_cce_ok(cce_strategy_instance_new(s, p, &inst));
    cce_params_free(p);
    return inst;
}

static cce_compress_options options(void) {
    cce_compress_options o;
    cce_compress_options_init(&o);
    o.use_cache = 0;
    o.calib.ctx = 32;
    return o;
}

/* ---- Test strategies ------------------------------------------------------------------------ */

/* A quantizer that does not know masks: w -> round(4 w) / 4 + 1/8, so zeros become 1/8. It
 * reports dense codes (bits per weight) plus a 2-byte scale per row and leaves errors unknown. */
static const cce_param fakequant_params[] = {
    {"bits", CCE_PARAM_INT, "4", 2, 8, 0, NULL, "bits"},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL},
};

static cce_status fakequant_apply(void *priv, cce_block_job *job, cce_report *r) {
    (void)priv;
    for (size_t i = 0; i < job->n; i++) {
        cce_job_tensor *jt = &job->tensors[i];
        if (jt->skip) continue;
        int64_t n = cce_tensor_numel(jt->weight), rows = cce_tensor_rows(jt->weight);
        for (int64_t j = 0; j < n; j++)
            jt->weight->data[j] = roundf(4 * jt->weight->data[j]) / 4 + 0.125f;
        cce_report_row row;
        cce_report_row_init(&row, "fakequant", job->layer, jt->name);
        row.params_before = row.params_after = n;
        row.bytes_before = 4 * n;
        row.bytes_after = (n * (int64_t)jt->target + 7) / 8 + 2 * rows;
        row.bits_per_weight = 8.0 * (double)row.bytes_after / (double)n;
        row.sparsity = 0;
        cce_status s = cce_report_add(r, &row);
        if (s) return s;
    }
    return CCE_OK;
}

static const cce_strategy fakequant = {
    .api_version = CCE_STRATEGY_API_VERSION,
    .name = "fakequant",
    .summary = "test quantizer",
    .params = fakequant_params,
    .apply = fakequant_apply,
};

/* Fails at layer 1 after scribbling over its job. */
static cce_status failer_apply(void *priv, cce_block_job *job, cce_report *r) {
    (void)priv;
    (void)r;
    for (size_t i = 0; i < job->n; i++) job->tensors[i].weight->data[0] = 42;
    if (job->layer == 1) return cce_fail(CCE_ERR_NUMERIC, "failer: layer 1 refuses");
    return CCE_OK;
}

static const cce_param no_params[] = {{NULL, 0, NULL, 0, 0, 0, NULL, NULL}};

static const cce_strategy failer = {
    .api_version = CCE_STRATEGY_API_VERSION,
    .name = "failer",
    .summary = "fails",
    .params = no_params,
    .apply = failer_apply,
};

/* Sequential probe: records the statistics its job sees, then halves the layer's down_proj. */
static double probe_sum_sq[2][4];
static int64_t probe_tokens[2];

static cce_status probe_apply(void *priv, cce_block_job *job, cce_report *r) {
    (void)priv;
    if (job->layer < 0) return CCE_OK;
    cce_calib_input in;
    for (int s = 0; s < CCE_SITE_COUNT; s++) {
        cce_status st = cce_calib_site_input(job->calib, job->layer, (cce_calib_site)s, &in);
        if (st) return st;
        probe_sum_sq[job->layer][s] = in.sum_sq[0];
    }
    probe_tokens[job->layer] = in.n_tokens;
    for (size_t i = 0; i < job->n; i++) {
        if (job->tensors[i].skip || !strstr(job->tensors[i].name, "down_proj")) continue;
        cce_tensor *t = job->tensors[i].weight;
        for (int64_t j = 0; j < cce_tensor_numel(t); j++) t->data[j] *= 0.5f;
        cce_report_row row;
        cce_report_row_init(&row, "probe", job->layer, job->tensors[i].name);
        cce_status st = cce_report_add(r, &row);
        if (st) return st;
    }
    return CCE_OK;
}

static const cce_strategy probe = {
    .api_version = CCE_STRATEGY_API_VERSION,
    .name = "probe",
    .summary = "sequential probe",
    .params = no_params,
    .needs = CCE_NEEDS_CALIBRATION | CCE_NEEDS_SEQUENTIAL,
    .apply = probe_apply,
};

/* ---- Round trip ----------------------------------------------------------------------------- */

static void round_trip(const char *spec, const cce_calib_data *calib, const char *file) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s", test_scratch_dir(file));
    snprintf(path, sizeof path, "%s/out.h5", dir);
    cce_model *base = fixture_synth_preset("tiny", 4), *v, *back;
    cce_strategy_instance *inst = instance(spec);
    cce_compress_options o = options();
    cce_compress_result res;
    assert_cce_ok(cce_compress(base, &inst, 1, NULL, 0, calib, &o, &v, &res));
    assert_int_equal(res.report.n, 14); /* 7 linear tensors x 2 layers */
    assert_int_equal(res.n_steps, 1);

    int32_t *stream = fixture_random_tokens(400, 9);
    cce_eval_options eo = {.ctx = 32};
    cce_eval_result mem, disk;
    assert_cce_ok(cce_eval(v, base, stream, 400, &eo, &mem));
    assert_cce_ok(cce_compress_save(v, &res, path, NULL));
    assert_cce_ok(cce_model_open(path, &back));
    assert_cce_ok(cce_eval(back, base, stream, 400, &eo, &disk));
    assert_true(mem.mean_nll == disk.mean_nll);
    assert_true(mem.top1 == disk.top1);
    assert_true(mem.kl_mean == disk.kl_mean);
    assert_true(mem.top1_agree == disk.top1_agree);
    assert_true(mem.kl_mean > 0); /* the variant really differs from its base */

    cce_report rr;
    assert_cce_ok(cce_compress_report_read(path, &rr));
    assert_int_equal(rr.n, res.report.n);
    for (size_t i = 0; i < rr.n; i++) {
        const cce_report_row *a = &rr.rows[i], *b = &res.report.rows[i];
        assert_string_equal(a->strategy, b->strategy);
        assert_string_equal(a->tensor, b->tensor);
        assert_int_equal(a->layer, b->layer);
        assert_int_equal(a->params_after, b->params_after);
        assert_int_equal(a->bytes_after, b->bytes_after);
        assert_true(a->rel_fro_error == b->rel_fro_error);
        assert_true(a->output_error == b->output_error ||
                    (isnan(a->output_error) && isnan(b->output_error)));
    }
    cce_report_clear(&rr);
    cce_eval_result_free(&mem);
    cce_eval_result_free(&disk);
    free(stream);
    cce_model_free(back);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_strategy_instance_free(inst);
    cce_model_free(base);
}

static void test_round_trip(void **state) {
    (void)state;
    round_trip("magnitude:ratio=0.5", NULL, "compress_magnitude");
    int32_t *tokens = fixture_random_tokens(4 * 24, 2);
    cce_calib_data d = {.tokens = tokens, .n_segments = 4, .seg_len = 24};
    cce_calib_data_hash(&d);
    round_trip("wanda:nm=2:4", &d, "compress_wanda");
    free(tokens);
}

/* ---- Base, sharing, report, output error ---------------------------------------------------- */

/* ||(W - W') X^T|| / ||W X^T|| over layer 0's attention inputs of the calibration windows. */
static const float *probe_w, *probe_w2;
static double probe_num, probe_den;

static void attn_hook(void *user, int layer, cce_hook_point p, const float *x, int rows, int cols) {
    (void)user;
    if (layer != 0 || p != CCE_HOOK_ATTN_IN) return;
    for (int t = 1; t < rows; t++) /* BOS excluded, as calibration does */
        for (int o = 0; o < 4 * 8; o++) {
            double y = 0, y2 = 0;
            for (int j = 0; j < cols; j++) {
                y += (double)probe_w[o * cols + j] * x[t * cols + j];
                y2 += (double)probe_w2[o * cols + j] * x[t * cols + j];
            }
            probe_num += (y - y2) * (y - y2);
            probe_den += y * y;
        }
}

static void test_base_unchanged_and_shared(void **state) {
    (void)state;
    cce_model *base = fixture_synth_preset("tiny", 6), *v;
    int32_t *tokens = fixture_random_tokens(3 * 20, 4);
    cce_calib_data d = {.tokens = tokens, .n_segments = 3, .seg_len = 20};
    cce_calib_data_hash(&d);
    unsigned char before[32], after[32];
    hash_weights(base, before);
    cce_strategy_instance *inst = instance("wanda:ratio=0.4");
    const char *rules[] = {"skip=layers.1.*", "wanda:layers.0.mlp.*=0.25"};
    cce_compress_options o = options();
    cce_compress_result res;
    assert_cce_ok(cce_compress(base, &inst, 1, rules, 2, &d, &o, &v, &res));
    hash_weights(base, after);
    assert_memory_equal(before, after, 32);
    assert_int_equal(res.report.n, 7);
    assert_int_equal(cce_model_owned_tensor_count(v), 7);
    for (size_t i = 0; i < cce_model_tensor_count(v); i++) {
        const char *name = cce_model_tensor_name_at(v, i);
        int changed = !strncmp(name, "layers.0.", 9) && !strstr(name, "norm");
        assert_int_equal(cce_model_tensor_is_shared(v, name), !changed);
        cce_tensor *a, *b;
        assert_cce_ok(cce_model_tensor(v, name, &a));
        assert_cce_ok(cce_model_tensor(base, name, &b));
        if (!changed) assert_ptr_equal(a->data, b->data);
    }
    for (size_t i = 0; i < res.report.n; i++) {
        const cce_report_row *r = &res.report.rows[i];
        double want = strstr(r->tensor, "mlp") ? 0.25 : 0.4;
        int64_t cols = strstr(r->tensor, "down_proj") ? 64 : 32;
        assert_int_equal(r->params_before - r->params_after,
                         r->params_before / cols * (int64_t)floor(want * (double)cols));
        assert_false(isnan(r->output_error));
        assert_true(r->output_error > 0 && r->output_error < 1);
    }
    /* The applied plan has one row per tensor of the model. */
    size_t n;
    const cce_plan_row *rows = cce_plan_applied(res.plans[0], &n);
    assert_int_equal(n, cce_model_tensor_count(base));
    assert_string_equal(res.steps[0].strategy, "wanda");
    assert_non_null(strstr(res.steps[0].params, "ratio=0.4"));
    (void)rows;
    /* Summary: blocks lost exactly the removed weights; embeddings untouched; tied, so no
     * classifier. */
    int64_t removed = 0, bytes = 0;
    for (size_t i = 0; i < res.report.n; i++) {
        removed += res.report.rows[i].params_before - res.report.rows[i].params_after;
        bytes += res.report.rows[i].bytes_before - res.report.rows[i].bytes_after;
    }
    const cce_compress_summary *s = &res.summary;
    assert_int_equal(s->blocks.params_before - s->blocks.params_after, removed);
    assert_int_equal(s->blocks.bytes_before - s->blocks.bytes_after, bytes);
    assert_int_equal(s->model.params_before, cce_model_total_params(base));
    assert_int_equal(s->embeddings.params_after, 300 * 32);
    assert_int_equal(s->classifier.tensors, 0);
    assert_true(fabs(s->blocks.byte_ratio - (double)bytes / (double)s->blocks.bytes_before) <
                1e-12);
    assert_true(fabs(s->model.bits_per_weight -
                     8.0 * (double)s->model.bytes_after / (double)s->model.params_before) < 1e-12);

    /* Output error of layers.0.self_attn.q_proj against its inputs, kept one by one. */
    cce_tensor *w, *w2;
    assert_cce_ok(cce_model_tensor(base, "layers.0.self_attn.q_proj.weight", &w));
    assert_cce_ok(cce_model_tensor(v, "layers.0.self_attn.q_proj.weight", &w2));
    probe_w = w->data;
    probe_w2 = w2->data;
    probe_num = probe_den = 0;
    cce_forward *f;
    assert_cce_ok(cce_forward_new(base, 32, &f));
    cce_forward_set_hook(f, attn_hook, NULL);
    float *logits = malloc(32 * 300 * sizeof *logits);
    int32_t win[21];
    for (int sgm = 0; sgm < 3; sgm++) {
        win[0] = 1;
        memcpy(win + 1, tokens + sgm * 20, 20 * sizeof *win);
        assert_cce_ok(cce_forward_window(f, win, 21, logits));
    }
    free(logits);
    cce_forward_free(f);
    const cce_report_row *q = &res.report.rows[0];
    assert_string_equal(q->tensor, "layers.0.self_attn.q_proj.weight");
    assert_true(fabs(q->output_error - sqrt(probe_num / probe_den)) < 1e-9);

    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_strategy_instance_free(inst);
    free(tokens);
    cce_model_free(base);
}

static void test_output_error_formula(void **state) {
    (void)state;
    const float w[4] = {1, 0, 0, 1}, w2[4] = {1, 0, 0, 0};
    const double S[4] = {1, 0, 0, 3}, I[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    double e;
    assert_cce_ok(cce_output_error(w, w2, 2, 2, S, &e));
    assert_true(fabs(e - sqrt(3.0 / 4.0)) < 1e-15);
    /* S = I: the relative Frobenius error. */
    const float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 2, 0, 4, 0, 6};
    assert_cce_ok(cce_output_error(a, b, 2, 3, I, &e));
    assert_true(fabs(e - sqrt(34.0 / 91.0)) < 1e-15);
    assert_cce_ok(cce_output_error(a, a, 2, 3, I, &e));
    assert_true(e == 0);
}

/* ---- Composition ---------------------------------------------------------------------------- */

static void test_composition_keeps_zeros(void **state) {
    (void)state;
    cce_model *base = fixture_synth_preset("tiny", 8), *v;
    int32_t *tokens = fixture_random_tokens(3 * 20, 5);
    cce_calib_data d = {.tokens = tokens, .n_segments = 3, .seg_len = 20};
    cce_calib_data_hash(&d);
    cce_strategy_instance *steps[2] = {instance("wanda:ratio=0.5"),
                                       instance_of(&fakequant, "bits=4")};
    cce_compress_options o = options();
    cce_compress_result res;
    assert_cce_ok(cce_compress(base, steps, 2, NULL, 0, &d, &o, &v, &res));
    assert_int_equal(res.report.n, 28);
    for (size_t i = 0; i < 14; i++) {
        const cce_report_row *pr = &res.report.rows[i], *qr = &res.report.rows[14 + i];
        assert_string_equal(pr->strategy, "wanda");
        assert_string_equal(qr->strategy, "fakequant");
        assert_string_equal(pr->tensor, qr->tensor);
        cce_tensor *t;
        assert_cce_ok(cce_model_tensor(v, qr->tensor, &t));
        int64_t n = cce_tensor_numel(t), zeros = 0, rows = cce_tensor_rows(t);
        for (int64_t j = 0; j < n; j++) zeros += t->data[j] == 0.0f;
        assert_int_equal(zeros, n - pr->params_after); /* wanda's zeros, exactly */
        assert_int_equal(qr->params_after, pr->params_after);
        assert_true(fabs(qr->sparsity - (double)zeros / (double)n) < 1e-15);
        int64_t q = (n * 4 + 7) / 8 + 2 * rows, masked = q - (4 * zeros + 7) / 8 + (n + 7) / 8;
        assert_int_equal(qr->bytes_after, masked < q ? masked : q);
        assert_false(isnan(qr->rel_fro_error)); /* filled in by the driver */
        assert_false(isnan(qr->output_error));
        /* Kept weights are quantized: on the grid k/4 + 1/8. */
        for (int64_t j = 0; j < n; j++)
            if (t->data[j] != 0) assert_true(fmodf(fabsf(t->data[j] - 0.125f) * 4, 1.0f) == 0);
    }
    /* The summary takes each tensor's last row. */
    int64_t bytes = 0;
    for (size_t i = 14; i < 28; i++) bytes += res.report.rows[i].bytes_after;
    assert_int_equal(res.summary.blocks.bytes_after, bytes + 4 * (4 * 32)); /* + 4 norms */
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_strategy_instance_free(steps[1]);

    /* The built-in rtn after wanda: zeros stay zeros too. */
    steps[1] = instance("rtn:bits=8");
    assert_cce_ok(cce_compress(base, steps, 2, NULL, 0, &d, &o, &v, &res));
    for (size_t i = 0; i < 14; i++) {
        const cce_report_row *pr = &res.report.rows[i];
        cce_tensor *t;
        assert_cce_ok(cce_model_tensor(v, pr->tensor, &t));
        int64_t zeros = 0;
        for (int64_t j = 0; j < cce_tensor_numel(t); j++) zeros += t->data[j] == 0.0f;
        assert_true(zeros >= pr->params_before - pr->params_after);
    }
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_strategy_instance_free(steps[0]);
    cce_strategy_instance_free(steps[1]);
    free(tokens);
    cce_model_free(base);
}

/* ---- Sequential ----------------------------------------------------------------------------- */

static void test_sequential_statistics(void **state) {
    (void)state;
    cce_model *base = fixture_synth_preset("tiny", 10), *v;
    int32_t *tokens = fixture_random_tokens(3 * 20, 6);
    cce_calib_data d = {.tokens = tokens, .n_segments = 3, .seg_len = 20};
    cce_calib_data_hash(&d);
    cce_strategy_instance *inst = instance_of(&probe, "");
    cce_compress_options o = options();
    cce_compress_result res;
    memset(probe_sum_sq, 0, sizeof probe_sum_sq);
    assert_cce_ok(cce_compress(base, &inst, 1, NULL, 0, &d, &o, &v, &res));
    assert_int_equal(probe_tokens[0], 60);
    assert_int_equal(probe_tokens[1], 60);

    /* Expected: layer 0 sees the dense model, layer 1 the model with layer 0 compressed. */
    cce_calib_options co = {.second_moments = 1, .ctx = 32};
    cce_calib *dense, *seq = NULL;
    assert_cce_ok(cce_calib_collect(base, &d, &co, 0, &dense));
    cce_model *half;
    cce_tensor *t, *c;
    assert_cce_ok(cce_model_variant_new(base, &half));
    assert_cce_ok(cce_model_tensor(base, "layers.0.mlp.down_proj.weight", &t));
    assert_cce_ok(cce_tensor_clone(t, &c));
    for (int64_t j = 0; j < cce_tensor_numel(c); j++) c->data[j] *= 0.5f;
    assert_cce_ok(cce_model_put_tensor(half, "layers.0.mlp.down_proj.weight", c));
    assert_cce_ok(cce_calib_collect_layer(half, &d, &co, 1, &seq));
    for (int s = 0; s < CCE_SITE_COUNT; s++) {
        cce_calib_input a, b;
        assert_cce_ok(cce_calib_site_input(dense, 0, (cce_calib_site)s, &a));
        assert_true(probe_sum_sq[0][s] == a.sum_sq[0]);
        assert_cce_ok(cce_calib_site_input(seq, 1, (cce_calib_site)s, &b));
        assert_true(probe_sum_sq[1][s] == b.sum_sq[0]);
        assert_cce_ok(cce_calib_site_input(dense, 1, (cce_calib_site)s, &a));
        assert_true(probe_sum_sq[1][s] != a.sum_sq[0]);
    }
    cce_model_free(half);
    cce_calib_free(seq);
    cce_calib_free(dense);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_strategy_instance_free(inst);
    free(tokens);
    cce_model_free(base);
}

/* ---- Failures ------------------------------------------------------------------------------- */

static void test_failures_leave_nothing(void **state) {
    (void)state;
    cce_model *base = fixture_synth_preset("tiny", 12), *v = (cce_model *)1;
    unsigned char before[32], after[32];
    hash_weights(base, before);
    cce_compress_result res;
    cce_compress_options o = options();

    cce_strategy_instance *f = instance_of(&failer, "");
    assert_int_equal(cce_compress(base, &f, 1, NULL, 0, NULL, &o, &v, &res), CCE_ERR_NUMERIC);
    assert_non_null(strstr(cce_error_detail(), "layer 1 refuses"));
    assert_null(v);
    assert_int_equal(res.report.n, 0);
    assert_null(res.plans);
    cce_strategy_instance_free(f);

    /* Wanda without calibration data: named, before any work. */
    cce_strategy_instance *steps[2] = {instance("magnitude:ratio=0.3"), instance("wanda")};
    assert_int_equal(cce_compress(base, steps, 2, NULL, 0, NULL, &o, &v, &res), CCE_ERR_STATE);
    assert_non_null(strstr(cce_error_detail(), "wanda"));
    assert_non_null(strstr(cce_error_detail(), "calibration"));
    assert_null(v);

    /* A rule for a strategy that is not in the run, and a malformed rule. */
    const char *r1[] = {"rtn:layers.0.*=4"};
    assert_int_equal(cce_compress(base, steps, 1, r1, 1, NULL, &o, &v, &res), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "'rtn'"));
    const char *r2[] = {"layers.0.*"};
    assert_int_equal(cce_compress(base, steps, 1, r2, 1, NULL, &o, &v, &res), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "layers.0.*"));
    const char *r3[] = {"magnitude:layers.0.*=1.5"};
    assert_int_equal(cce_compress(base, steps, 1, r3, 1, NULL, &o, &v, &res), CCE_ERR_RANGE);
    assert_null(v);

    /* NaN weights in a planned tensor: named. */
    cce_tensor *t;
    assert_cce_ok(cce_model_tensor(base, "layers.1.mlp.gate_proj.weight", &t));
    float saved = t->data[3];
    t->data[3] = NAN;
    assert_int_equal(cce_compress(base, steps, 1, NULL, 0, NULL, &o, &v, &res), CCE_ERR_NUMERIC);
    assert_non_null(strstr(cce_error_detail(), "layers.1.mlp.gate_proj.weight"));
    assert_null(v);
    t->data[3] = saved;

    hash_weights(base, after);
    assert_memory_equal(before, after, 32);
    assert_int_equal(cce_compress(base, steps, 0, NULL, 0, NULL, &o, &v, &res), CCE_ERR_ARG);
    cce_strategy_instance_free(steps[0]);
    cce_strategy_instance_free(steps[1]);
    cce_model_free(base);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_base_unchanged_and_shared),
        cmocka_unit_test(test_output_error_formula),
        cmocka_unit_test(test_composition_keeps_zeros),
        cmocka_unit_test(test_sequential_statistics),
        cmocka_unit_test(test_failures_leave_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
