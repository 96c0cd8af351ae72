/* Structured pruning and per-layer shapes: a 50% FFN prune of a stories260K-shaped model keeps 86
 * of 172 neurons per layer (the highest-scoring ones, in order); head pruning removes the chosen
 * heads, drops a kv head nobody reads and renumbers kv_of_head; the pruned variant runs natively
 * and computes what the dense model computes with those units zeroed; it saves smaller, loads
 * back and runs identically; ratio 0 changes nothing; report counts match the model; layer
 * reshapes are validated and leave the model unchanged on failure; bad plans fail clearly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "compress.h"
#include "forward.h"
#include "model.h"
#include "strategy.h"
#include "synth.h"
#include "test_support.h"

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

/* Compresses base with one strategy and optional rules, no calibration. */
static cce_status run(cce_model *base, const char *spec, const char *const *rules, size_t n_rules,
                      cce_model **v, cce_compress_result *res) {
    cce_strategy_instance *inst = instance(spec);
    cce_status s = cce_compress(base, &inst, 1, rules, n_rules, NULL, NULL, v, res);
    cce_strategy_instance_free(inst);
    return s;
}

static cce_tensor *layer_tensor(cce_model *m, int l, cce_layer_tensor w) {
    cce_tensor *t;
    assert_cce_ok(cce_model_layer_tensor(m, l, w, &t));
    return t;
}

static double norm_of(const float *x, int64_t n, int64_t stride) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i * stride] * x[i * stride];
    return sqrt(s);
}

/* Logits [T, vocab] of a window of T tokens (caller frees). */
static float *logits_of(cce_model *m, int T) {
    const cce_config *c = cce_model_config(m);
    int32_t *tok = malloc((size_t)T * sizeof *tok);
    for (int t = 0; t < T; t++) tok[t] = (int32_t)((t * 37 + 11) % c->vocab_size);
    float *out = malloc((size_t)T * (size_t)c->vocab_size * sizeof *out);
    cce_forward *f;
    assert_cce_ok(cce_forward_new(m, T, &f));
    assert_cce_ok(cce_forward_window(f, tok, T, out));
    cce_forward_free(f);
    free(tok);
    return out;
}

static void check_report_matches(cce_model *base, cce_model *v, const cce_compress_result *res) {
    int64_t blocks = 0;
    for (int l = 0; l < cce_model_config(v)->n_layers; l++) blocks += cce_model_layer_params(v, l);
    assert_int_equal(res->summary.blocks.params_after, blocks);
    assert_int_equal(res->summary.model.params_after, cce_model_total_params(v));
    assert_int_equal(res->summary.model.params_before, cce_model_total_params(base));
    for (size_t i = 0; i < res->report.n; i++) {
        const cce_report_row *row = &res->report.rows[i];
        cce_tensor *t;
        assert_cce_ok(cce_model_tensor(v, row->tensor, &t));
        assert_int_equal(row->params_after, cce_tensor_numel(t)); /* dense weights: no zeros */
        assert_int_equal(row->bytes_after, 4 * cce_tensor_numel(t));
    }
}

static void test_ffn_half(void **state) {
    (void)state;
    cce_model *base = synth("stories260K", 64, 7), *v;
    cce_compress_result res;
    assert_cce_ok(run(base, "structured:ratio=0.5", NULL, 0, &v, &res));
    const cce_config *c = cce_model_config(v);
    assert_int_equal(res.report.n, 3 * c->n_layers);
    for (int l = 0; l < c->n_layers; l++) {
        const cce_layer_shape *ls = cce_model_layer(v, l);
        assert_int_equal(ls->hidden_dim, 86);
        assert_int_equal(ls->n_heads, 8);
        assert_int_equal(ls->n_kv_heads, 4);
        assert_int_equal(cce_model_layer(base, l)->hidden_dim, 172); /* the base is untouched */
        cce_tensor *g = layer_tensor(v, l, CCE_LT_GATE), *d = layer_tensor(v, l, CCE_LT_DOWN);
        assert_int_equal(g->shape[0], 86);
        assert_int_equal(g->shape[1], 64);
        assert_int_equal(d->shape[0], 64);
        assert_int_equal(d->shape[1], 86);
        char q[64];
        cce_layer_tensor_name(l, CCE_LT_Q, q, sizeof q);
        assert_true(cce_model_tensor_is_shared(v, q));
        /* Kept neurons: the 86 highest ||gate_j|| ||up_j|| ||down_:,j||, in their order. */
        cce_tensor *bg = layer_tensor(base, l, CCE_LT_GATE), *bu = layer_tensor(base, l, CCE_LT_UP),
                   *bd = layer_tensor(base, l, CCE_LT_DOWN);
        double score[172];
        for (int j = 0; j < 172; j++)
            score[j] = norm_of(bg->data + j * 64, 64, 1) * norm_of(bu->data + j * 64, 64, 1) *
                       norm_of(bd->data + j, 64, 172);
        int row = 0;
        for (int j = 0; j < 172; j++) {
            int below = 0;
            for (int i = 0; i < 172; i++) below += score[i] < score[j];
            if (below < 86) continue; /* among the 86 lowest: removed */
            assert_memory_equal(g->data + row * 64, bg->data + j * 64, 64 * sizeof(float));
            assert_float_equal(d->data[3 * 86 + row], bd->data[3 * 172 + j], 0);
            row++;
        }
        assert_int_equal(row, 86);
    }
    for (size_t i = 0; i < res.report.n; i++) {
        const cce_report_row *r = &res.report.rows[i];
        assert_int_equal(r->params_before, 172 * 64);
        assert_int_equal(r->params_after, 86 * 64);
        assert_true(r->rel_fro_error > 0 && r->rel_fro_error < 1);
        assert_string_equal(r->note, "kept 86 of 172 neurons");
    }
    check_report_matches(base, v, &res);
    /* The recorded plan gives a ratio only to the tensors the unit prunes; the attention
     * tensors are skipped by the strategy's plan. */
    size_t n_rows;
    const cce_plan_row *rows = cce_plan_applied(res.plans[0], &n_rows);
    int with_ratio = 0;
    for (size_t i = 0; i < n_rows; i++) {
        if (strstr(rows[i].tensor, ".mlp.")) {
            assert_int_equal(rows[i].source, CCE_PLAN_UNIFORM);
            assert_float_equal(rows[i].value, 0.5, 0);
            with_ratio++;
        } else {
            assert_int_equal(rows[i].source, CCE_PLAN_SKIP);
        }
    }
    assert_int_equal(with_ratio, 3 * c->n_layers);
    assert_int_equal(cce_model_total_params(base) - cce_model_total_params(v),
                     (int64_t)5 * 86 * 3 * 64);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
}

/* Heads 0 and 1 (both reading kv head 0) are made the weakest: they go, kv head 0 goes with
 * them, and the kept heads 2, 3 read the kept kv head, renumbered 0. */
static void test_heads_and_kv(void **state) {
    (void)state;
    cce_model *base = synth("tiny", 32, 3), *v; /* dim 32, 4 heads of 8, 2 kv heads, hidden 64 */
    cce_tensor *q = layer_tensor(base, 0, CCE_LT_Q);
    for (int64_t i = 0; i < 2 * 8 * 32; i++) q->data[i] *= 0.01f;
    cce_compress_result res;
    const char *rules[] = {"1=0"}; /* layer 1 keeps its heads */
    assert_cce_ok(run(base, "structured:ratio=0.5,unit=heads", rules, 1, &v, &res));
    const cce_layer_shape *ls = cce_model_layer(v, 0);
    assert_int_equal(ls->n_heads, 2);
    assert_int_equal(ls->n_kv_heads, 1);
    assert_int_equal(ls->kv_of_head[0], 0);
    assert_int_equal(ls->kv_of_head[1], 0);
    assert_int_equal(ls->hidden_dim, 64);
    cce_tensor *nq = layer_tensor(v, 0, CCE_LT_Q), *nk = layer_tensor(v, 0, CCE_LT_K),
               *no = layer_tensor(v, 0, CCE_LT_O);
    cce_tensor *bk = layer_tensor(base, 0, CCE_LT_K), *bo = layer_tensor(base, 0, CCE_LT_O);
    assert_int_equal(nq->shape[0], 16);
    assert_memory_equal(nq->data, q->data + 2 * 8 * 32, 16 * 32 * sizeof(float));
    assert_int_equal(nk->shape[0], 8);
    assert_memory_equal(nk->data, bk->data + 8 * 32, 8 * 32 * sizeof(float));
    assert_int_equal(no->shape[1], 16);
    assert_float_equal(no->data[5 * 16 + 0], bo->data[5 * 32 + 16], 0);
    const cce_layer_shape *l1 = cce_model_layer(v, 1);
    assert_int_equal(l1->n_heads, 4);
    assert_int_equal(l1->n_kv_heads, 2);
    assert_int_equal(res.report.n, 4); /* q, k, v, o of layer 0 */
    for (size_t i = 0; i < res.report.n; i++)
        assert_string_equal(res.report.rows[i].note, "kept 2 of 4 heads, 1 of 2 kv heads");
    check_report_matches(base, v, &res);
    cce_compress_result_clear(&res);
    cce_model_free(v);

    /* Without the weak pair: every kv head keeps a reader, kv_of_head stays in range. */
    cce_model *base2 = synth("stories260K", 64, 5);
    assert_cce_ok(run(base2, "structured:ratio=0.25,unit=heads", NULL, 0, &v, &res));
    for (int l = 0; l < 5; l++) {
        const cce_layer_shape *s = cce_model_layer(v, l);
        assert_int_equal(s->n_heads, 6);
        int used[4] = {0};
        for (int h = 0; h < s->n_heads; h++) {
            assert_true(s->kv_of_head[h] >= 0 && s->kv_of_head[h] < s->n_kv_heads);
            used[s->kv_of_head[h]] = 1;
        }
        for (int g = 0; g < s->n_kv_heads; g++) assert_true(used[g]); /* no unread kv head */
        assert_int_equal(layer_tensor(v, l, CCE_LT_K)->shape[0], s->n_kv_heads * 8);
    }
    check_report_matches(base2, v, &res);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base2);
    cce_model_free(base);
}

/* The dense model with the removed units zeroed: FFN neurons (gate/up rows, down columns) and
 * heads (o columns) the variant no longer has, found by matching rows. */
static cce_model *masked_dense(cce_model *base, cce_model *v) {
    cce_model *m;
    assert_cce_ok(cce_model_variant_new(base, &m));
    const cce_config *c = cce_model_config(base);
    int dim = c->dim, hd = c->head_dim;
    for (int l = 0; l < c->n_layers; l++) {
        const cce_layer_shape *ls = cce_model_layer(v, l);
        cce_tensor *g = layer_tensor(v, l, CCE_LT_GATE), *q = layer_tensor(v, l, CCE_LT_Q);
        cce_tensor *bg = layer_tensor(base, l, CCE_LT_GATE), *bq = layer_tensor(base, l, CCE_LT_Q);
        cce_tensor *nd, *no;
        assert_cce_ok(cce_tensor_clone(layer_tensor(base, l, CCE_LT_DOWN), &nd));
        assert_cce_ok(cce_tensor_clone(layer_tensor(base, l, CCE_LT_O), &no));
        for (int j = 0; j < c->hidden_dim; j++) {
            int kept = 0;
            for (int r = 0; r < ls->hidden_dim && !kept; r++)
                kept = !memcmp(g->data + r * dim, bg->data + j * dim, (size_t)dim * sizeof(float));
            if (!kept)
                for (int i = 0; i < dim; i++) nd->data[i * c->hidden_dim + j] = 0;
        }
        for (int h = 0; h < c->n_heads; h++) {
            int kept = 0;
            for (int r = 0; r < ls->n_heads && !kept; r++)
                kept = !memcmp(q->data + r * hd * dim, bq->data + h * hd * dim,
                               (size_t)hd * dim * sizeof(float));
            if (!kept)
                for (int i = 0; i < dim; i++)
                    for (int e = 0; e < hd; e++) no->data[i * c->n_heads * hd + h * hd + e] = 0;
        }
        char name[64];
        cce_layer_tensor_name(l, CCE_LT_DOWN, name, sizeof name);
        assert_cce_ok(cce_model_put_tensor(m, name, nd));
        cce_layer_tensor_name(l, CCE_LT_O, name, sizeof name);
        assert_cce_ok(cce_model_put_tensor(m, name, no));
    }
    return m;
}

static long file_size(const char *path) {
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (long)st.st_size;
}

static void test_native_forward_and_round_trip(void **state) {
    (void)state;
    cce_model *base = synth("stories260K", 64, 11), *v;
    cce_compress_result res;
    assert_cce_ok(run(base, "structured:ratio=0.25,unit=both", NULL, 0, &v, &res));
    for (int l = 0; l < 5; l++) {
        assert_int_equal(cce_model_layer(v, l)->hidden_dim, 172 - 43);
        assert_int_equal(cce_model_layer(v, l)->n_heads, 6);
    }
    int T = 48;
    size_t n = (size_t)T * 512;
    float *pruned = logits_of(v, T);
    cce_model *ref = masked_dense(base, v);
    float *dense = logits_of(ref, T);
    double max_diff = 0;
    for (size_t i = 0; i < n; i++) max_diff = fmax(max_diff, fabs(pruned[i] - dense[i]));
    assert_true(max_diff < 1e-4);

    const char *dir = test_scratch_dir("structured");
    char pv[512], pb[512];
    snprintf(pv, sizeof pv, "%s", test_path(dir, "pruned.h5"));
    snprintf(pb, sizeof pb, "%s", test_path(dir, "dense.h5"));
    assert_cce_ok(cce_model_save(v, pv, NULL));
    assert_cce_ok(cce_model_save(base, pb, NULL));
    assert_true(file_size(pv) <
                file_size(pb) -
                    4L * (cce_model_total_params(base) - cce_model_total_params(v)) / 2);
    cce_model *loaded;
    assert_cce_ok(cce_model_open(pv, &loaded));
    for (int l = 0; l < 5; l++) {
        const cce_layer_shape *a = cce_model_layer(v, l), *b = cce_model_layer(loaded, l);
        assert_int_equal(a->hidden_dim, b->hidden_dim);
        assert_int_equal(a->n_heads, b->n_heads);
        assert_int_equal(a->n_kv_heads, b->n_kv_heads);
        assert_memory_equal(a->kv_of_head, b->kv_of_head, (size_t)a->n_heads * sizeof(int32_t));
    }
    assert_int_equal(cce_model_total_params(loaded), cce_model_total_params(v));
    float *again = logits_of(loaded, T);
    assert_memory_equal(again, pruned, n * sizeof(float));
    free(again);
    free(pruned);
    free(dense);
    cce_model_free(loaded);
    cce_model_free(ref);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
}

static void test_ratio_zero(void **state) {
    (void)state;
    cce_model *base = synth("tiny", 32, 2), *v;
    cce_compress_result res;
    assert_cce_ok(run(base, "structured:ratio=0,unit=both", NULL, 0, &v, &res));
    assert_int_equal(res.report.n, 0);
    assert_int_equal(cce_model_owned_tensor_count(v), 0);
    assert_int_equal(cce_model_total_params(v), cce_model_total_params(base));
    assert_int_equal(cce_model_layer(v, 0)->hidden_dim, 64);
    assert_int_equal(res.summary.model.params_after, res.summary.model.params_before);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    /* A ratio that removes less than one unit changes nothing either (1% of 64 neurons). */
    assert_cce_ok(run(base, "structured:ratio=0.01", NULL, 0, &v, &res));
    assert_int_equal(res.report.n, 0);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
}

static void test_reshape_validation(void **state) {
    (void)state;
    cce_model *m = synth("tiny", 32, 4);
    int32_t map[4] = {0, 0, 1, 1};
    cce_layer_shape s = {.hidden_dim = 32, .n_heads = 4, .n_kv_heads = 2, .kv_of_head = map};
    /* New FFN width but the old FFN tensors kept: refused, nothing changes. */
    assert_int_equal(cce_model_reshape_layer(m, 0, &s, NULL), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "layers.0.mlp.gate_proj.weight"));
    assert_int_equal(cce_model_layer(m, 0)->hidden_dim, 64);
    cce_tensor *t[CCE_LT_COUNT] = {0};
    int64_t gs[2] = {32, 32}, ds[2] = {32, 32}, bad[2] = {31, 32};
    assert_cce_ok(cce_tensor_new(2, gs, &t[CCE_LT_GATE]));
    assert_cce_ok(cce_tensor_new(2, bad, &t[CCE_LT_UP]));
    assert_cce_ok(cce_tensor_new(2, ds, &t[CCE_LT_DOWN]));
    assert_int_equal(cce_model_reshape_layer(m, 0, &s, t), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "up_proj"));
    assert_int_equal(cce_model_layer(m, 0)->hidden_dim, 64);
    assert_int_equal(layer_tensor(m, 0, CCE_LT_GATE)->shape[0], 64);
    cce_tensor_free(t[CCE_LT_UP]);
    assert_cce_ok(cce_tensor_new(2, gs, &t[CCE_LT_UP]));
    map[3] = 2; /* kv head 2 does not exist */
    assert_int_equal(cce_model_reshape_layer(m, 0, &s, t), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "kv_of_head[3]"));
    map[3] = 1;
    s.hidden_dim = 65;
    assert_int_equal(cce_model_reshape_layer(m, 0, &s, t), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "hidden_dim"));
    s.hidden_dim = 32;
    assert_cce_ok(cce_model_reshape_layer(m, 0, &s, t)); /* the model owns t now */
    assert_int_equal(cce_model_layer(m, 0)->hidden_dim, 32);
    assert_ptr_equal(layer_tensor(m, 0, CCE_LT_DOWN), t[CCE_LT_DOWN]);
    /* put_tensor checks against the new widths. */
    cce_tensor *wide;
    int64_t ws[2] = {64, 32};
    assert_cce_ok(cce_tensor_new(2, ws, &wide));
    assert_int_equal(cce_model_put_tensor(m, "layers.0.mlp.up_proj.weight", wide), CCE_ERR_ARG);
    cce_tensor_free(wide);
    /* A removed layer: no tensors, no parameters, no reshaping. */
    int64_t before = cce_model_total_params(m);
    assert_cce_ok(cce_model_remove_layer(m, 1));
    assert_int_equal(cce_model_layer_params(m, 1), 0);
    assert_true(cce_model_total_params(m) < before);
    assert_int_equal(cce_model_tensor(m, "layers.1.self_attn.q_proj.weight", &wide),
                     CCE_ERR_NOT_FOUND);
    assert_int_equal(cce_model_reshape_layer(m, 1, &s, NULL), CCE_ERR_STATE);
    assert_int_equal(cce_model_remove_layer(m, 2), CCE_ERR_RANGE);
    cce_model_free(m);
}

static void test_bad_input(void **state) {
    (void)state;
    cce_model *base = synth("tiny", 32, 6), *v;
    cce_compress_result res;
    const cce_strategy *s;
    cce_params *p;
    assert_int_equal(cce_strategy_parse_spec("structured:ratio=1", &s, &p), CCE_ERR_RANGE);
    assert_int_equal(cce_strategy_parse_spec("structured:unit=rows", &s, &p), CCE_ERR_RANGE);
    const char *rules[] = {"layers.0.mlp.down_proj.weight=0.25"};
    assert_int_equal(run(base, "structured:ratio=0.5", rules, 1, &v, &res), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "down_proj"));
    assert_null(v);
    const char *skips[] = {"skip=layers.1.mlp.up_proj.weight"};
    assert_int_equal(run(base, "structured:ratio=0.5", skips, 1, &v, &res), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "skips some"));
    /* A job that does not grant resizing (can_resize 0): apply fails, nothing is left pending. */
    cce_strategy_instance *inst = instance("structured:ratio=0.5");
    cce_block_job *job;
    assert_cce_ok(cce_block_job_new(0, CCE_LT_COUNT, &job));
    for (int w = 0; w < CCE_LT_COUNT; w++) {
        char name[64];
        cce_tensor *c;
        cce_layer_tensor_name(0, (cce_layer_tensor)w, name, sizeof name);
        assert_cce_ok(cce_tensor_clone(layer_tensor(base, 0, (cce_layer_tensor)w), &c));
        assert_cce_ok(cce_block_job_set(job, (size_t)w, name, c, 0.5, w == 0 || w == 5));
    }
    job->model = base;
    cce_report r;
    cce_report_init(&r);
    assert_int_equal(cce_strategy_instance_apply(inst, job, &r), CCE_ERR_STATE);
    assert_int_equal(r.n, 0);
    assert_int_equal(job->reshaped, 0);
    assert_int_equal(job->tensors[CCE_LT_GATE].weight->shape[0], 64);
    job->can_resize = 1; /* granted: the same job now shrinks */
    assert_cce_ok(cce_strategy_instance_apply(inst, job, &r));
    assert_int_equal(job->tensors[CCE_LT_GATE].weight->shape[0], 32);
    assert_int_equal(job->reshaped, 1);
    assert_int_equal(job->new_shape.hidden_dim, 32);
    assert_int_equal(r.n, 3);
    cce_report_clear(&r);
    cce_block_job_free(job);
    cce_strategy_instance_free(inst);
    cce_model_free(base);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ffn_half),
        cmocka_unit_test(test_heads_and_kv),
        cmocka_unit_test(test_native_forward_and_round_trip),
        cmocka_unit_test(test_ratio_zero),
        cmocka_unit_test(test_reshape_validation),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
