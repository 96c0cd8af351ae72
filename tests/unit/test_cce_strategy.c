/* The cce strategy end to end on a tiny synthetic model: with allocation uniform, fold off and
 * lowrank off it is structured pruning by the greedy score (kept rows/columns unchanged, the kept
 * set of layer 0 is the one cce_greedy_remove picks from the dense statistics); the redundancy
 * budget removes the global target within one neuron per layer; folding changes only down_proj;
 * with low rank (stage 4) each layer removes its planned budget within one rank unit, stage 3
 * takes prune_share of it, factored matrices carry lowrank encodings, and the variant saves to a
 * smaller file that reloads bit for bit and evaluates the same, and `cce info` counts its factors;
 * bad input fails clearly (ratio above 0.9, above what neurons and heads give, a target above the
 * FFN's share with lowrank off, which lowrank on then meets); a one-layer model and a calibration
 * set smaller than the width work. Heads (prune_heads): on a GQA model the head map stays
 * consistent, kept q/k/v rows are the base's, windowed and KV-cache forwards agree, each layer
 * meets its budget within one unit (a neuron without low rank, a rank unit with it), biases of
 * removed rows go with them; stories260K at 20% with heads evaluates and generates. The cce
 * program builds calib_windows x calib_len calibration tokens unless told otherwise. */
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../strategies/cce_internal.h"
#include "calib.h"
#include "compress.h"
#include "encoding.h"
#include "eval.h"
#include "forward.h"
#include "generate.h"
#include "import.h"
#include "dataset.h"
#include "report_store.h"
#include "strategy.h"
#include "synth.h"
#include "test_support.h"

#define SEGS    6
#define SEG_LEN 40

static int32_t calib_tokens[SEGS * SEG_LEN];

static cce_calib_data calib_data(size_t segs, size_t len) {
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 17);
    for (size_t i = 0; i < segs * len; i++)
        calib_tokens[i] = 3 + (int32_t)gsl_rng_uniform_int(r, 290);
    gsl_rng_free(r);
    cce_calib_data d = {.tokens = calib_tokens, .n_segments = segs, .seg_len = len};
    cce_calib_data_hash(&d);
    return d;
}

static cce_model *tiny(int n_layers) {
    cce_synth_options o;
    assert_cce_ok(cce_synth_preset("tiny", &o));
    o.seed = 4;
    o.cfg.n_layers = n_layers;
    cce_model *m;
    assert_cce_ok(cce_synth_model(&o, &m));
    return m;
}

static cce_status run(cce_model *base, const char *spec, const cce_calib_data *d, cce_model **v,
                      cce_compress_result *res) {
    const cce_strategy *s;
    cce_params *p;
    cce_strategy_instance *inst;
    cce_status st = cce_strategy_parse_spec(spec, &s, &p);
    if (st) return st;
    st = cce_strategy_instance_new(s, p, &inst);
    cce_params_free(p);
    if (st) return st;
    cce_compress_options o;
    cce_compress_options_init(&o);
    o.use_cache = 0;
    st = cce_compress(base, &inst, 1, NULL, 0, d, &o, v, res);
    cce_strategy_instance_free(inst);
    return st;
}

static cce_tensor *lt(cce_model *m, int l, cce_layer_tensor w) {
    cce_tensor *t;
    assert_cce_ok(cce_model_layer_tensor(m, l, w, &t));
    return t;
}

/* keep [H]: which original gate rows the variant's rows are (in order), -1 if none matches. */
static int kept_rows(const cce_tensor *orig, const cce_tensor *now, int *keep) {
    int H = (int)orig->shape[0], d = (int)orig->shape[1], m = (int)now->shape[0], c = 0;
    for (int j = 0; j < H; j++) keep[j] = 0;
    for (int j = 0; j < H && c < m; j++)
        if (!memcmp(orig->data + (int64_t)j * d, now->data + (int64_t)c * d,
                    (size_t)d * sizeof(float))) {
            keep[j] = 1;
            c++;
        }
    return c == m ? 0 : -1;
}

/* Weight parameters of block l (the seven matrices). */
static int64_t layer_params(cce_model *m, int l) {
    static const cce_layer_tensor w[7] = {CCE_LT_Q,    CCE_LT_K,  CCE_LT_V,   CCE_LT_O,
                                          CCE_LT_GATE, CCE_LT_UP, CCE_LT_DOWN};
    int64_t p = 0;
    for (int i = 0; i < 7; i++) p += cce_tensor_numel(lt(m, l, w[i]));
    return p;
}

static void test_reduces_to_structured(void **state) {
    (void)state;
    cce_model *base = tiny(2), *v;
    cce_calib_data d = calib_data(SEGS, SEG_LEN);
    cce_compress_result res;
    assert_cce_ok(
        run(base, "cce:ratio=0.3,allocation=uniform,fold=false,lowrank=false", &d, &v, &res));
    const cce_config *c = cce_model_config(base);
    int64_t removed = 0, total = 0;
    for (int l = 0; l < c->n_layers; l++) {
        int H = cce_model_layer(base, l)->hidden_dim, m = cce_model_layer(v, l)->hidden_dim;
        assert_true(m < H);
        removed += 3 * (int64_t)c->dim * (H - m);
        total += 4 * (int64_t)c->dim * c->n_heads * c->head_dim / 2 +
                 2 * (int64_t)c->dim * c->n_kv_heads * c->head_dim + 3 * (int64_t)c->dim * H;
        int keep[64];
        assert_int_equal(kept_rows(lt(base, l, CCE_LT_GATE), lt(v, l, CCE_LT_GATE), keep), 0);
        const cce_tensor *up0 = lt(base, l, CCE_LT_UP), *up1 = lt(v, l, CCE_LT_UP);
        const cce_tensor *dn0 = lt(base, l, CCE_LT_DOWN), *dn1 = lt(v, l, CCE_LT_DOWN);
        for (int j = 0, k = 0; j < H; j++) {
            if (!keep[j]) continue;
            assert_memory_equal(up0->data + (int64_t)j * c->dim, up1->data + (int64_t)k * c->dim,
                                (size_t)c->dim * sizeof(float));
            for (int a = 0; a < c->dim; a++)
                assert_true(dn0->data[(int64_t)a * H + j] == dn1->data[(int64_t)a * m + k]);
            k++;
        }
        if (l == 0) { /* layer 0's sequential statistics are the dense ones */
            cce_calib *cal = NULL;
            cce_calib_options co = {.second_moments = 1, .ctx = 0};
            assert_cce_ok(cce_calib_collect(base, &d, &co, 0, &cal));
            cce_calib_input a;
            assert_cce_ok(cce_calib_site_input(cal, 0, CCE_SITE_DOWN_IN, &a));
            double *G = malloc((size_t)H * H * sizeof *G), *W = malloc((size_t)c->dim * H * 8);
            int order[64];
            assert_cce_ok(cce_moments(a.sum, a.sum_outer, H, a.n_tokens, G, NULL, "t"));
            for (int i = 0; i < c->dim * H; i++) W[i] = dn0->data[i];
            assert_cce_ok(cce_greedy_remove(G, H, cce_delta_of(G, H, 1e-2), W, c->dim, H - m, order,
                                            NULL, "t"));
            for (int i = 0; i < H - m; i++) assert_int_equal(keep[order[i]], 0);
            free(G);
            free(W);
            cce_calib_free(cal);
        }
        /* attention untouched */
        assert_memory_equal(lt(base, l, CCE_LT_Q)->data, lt(v, l, CCE_LT_Q)->data,
                            (size_t)cce_tensor_numel(lt(base, l, CCE_LT_Q)) * sizeof(float));
    }
    /* uniform: the global target within one neuron per layer */
    assert_true(fabs((double)removed - 0.3 * (double)total) <= 3.0 * c->dim * c->n_layers);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
}

static void test_budget_and_fold(void **state) {
    (void)state;
    cce_model *base = tiny(2), *v;
    cce_calib_data d = calib_data(SEGS, SEG_LEN);
    cce_compress_result res;
    assert_cce_ok(run(base, "cce:ratio=0.4,lowrank=false", &d, &v, &res));
    const cce_config *c = cce_model_config(base);
    int64_t removed = 0, total = 0;
    for (int l = 0; l < c->n_layers; l++) {
        int H = cce_model_layer(base, l)->hidden_dim, m = cce_model_layer(v, l)->hidden_dim;
        removed += 3 * (int64_t)c->dim * (H - m);
        total += 2 * (int64_t)c->dim * c->n_heads * c->head_dim +
                 2 * (int64_t)c->dim * c->n_kv_heads * c->head_dim + 3 * (int64_t)c->dim * H;
        int keep[64];
        assert_int_equal(kept_rows(lt(base, l, CCE_LT_GATE), lt(v, l, CCE_LT_GATE), keep), 0);
        /* folding changed down_proj */
        const cce_tensor *dn0 = lt(base, l, CCE_LT_DOWN), *dn1 = lt(v, l, CCE_LT_DOWN);
        int changed = 0;
        for (int j = 0, k = 0; j < H; j++)
            if (keep[j]) {
                for (int a = 0; a < c->dim; a++)
                    changed += dn0->data[(int64_t)a * H + j] != dn1->data[(int64_t)a * m + k];
                k++;
            }
        assert_true(changed > 0);
    }
    assert_true(fabs((double)removed - 0.4 * (double)total) <= 3.0 * c->dim);
    /* the report: one row per FFN tensor per layer, with output errors */
    assert_int_equal(res.report.n, 3 * (size_t)c->n_layers);
    for (size_t i = 0; i < res.report.n; i++)
        assert_true(isfinite(res.report.rows[i].output_error));
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
}

static void test_bad_input(void **state) {
    (void)state;
    cce_model *base = tiny(2), *v = NULL;
    cce_calib_data d = calib_data(SEGS, SEG_LEN);
    cce_compress_result res;
    assert_int_equal(run(base, "cce:ratio=0.95,lowrank=false", &d, &v, &res), CCE_ERR_RANGE);
    /* heads without low rank: at most all neurons and heads but one (0.88 here) */
    assert_int_equal(run(base, "cce:ratio=0.9,lowrank=false,prune_heads=true", &d, &v, &res),
                     CCE_ERR_RANGE);
    assert_int_equal(run(base, "cce:ratio=0.85,lowrank=false", &d, &v, &res), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "lowrank"));
    assert_null(v);
    /* the same target with low rank: met */
    assert_cce_ok(run(base, "cce:ratio=0.85", &d, &v, &res));
    int64_t before = 0, after = 0;
    for (size_t i = 0; i < res.report.n; i++) {
        before += res.report.rows[i].params_before;
        after += res.report.rows[i].params_after;
    }
    const cce_config *c = cce_model_config(base);
    int64_t total = 0;
    for (int l = 0; l < c->n_layers; l++) total += layer_params(base, l);
    assert_true((double)(before - after) >= 0.85 * (double)total - 1.0);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    v = NULL;
    assert_int_equal(run(base, "cce:ratio=0.3,lowrank=false", NULL, &v, &res), CCE_ERR_STATE);
    assert_null(v);
    cce_model_free(base);
}

static void test_one_layer_and_small_calibration(void **state) {
    (void)state;
    cce_model *base = tiny(1), *v;
    /* 2 windows of 12 tokens: fewer calibration tokens than the 64 neurons (regularised) */
    cce_calib_data d = calib_data(2, 12);
    cce_compress_result res;
    assert_cce_ok(run(base, "cce:ratio=0.2,lowrank=false", &d, &v, &res));
    const cce_config *c = cce_model_config(base);
    int H = cce_model_layer(base, 0)->hidden_dim, m = cce_model_layer(v, 0)->hidden_dim;
    int64_t total = 2 * (int64_t)c->dim * c->n_heads * c->head_dim +
                    2 * (int64_t)c->dim * c->n_kv_heads * c->head_dim + 3 * (int64_t)c->dim * H;
    /* one layer: rho_l = rho, met within one neuron */
    assert_true(fabs(3.0 * c->dim * (H - m) - 0.2 * (double)total) <= 3.0 * c->dim);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
}

/* Per layer: the plan's budget (sum target * size), what the report rows say was removed, the
 * largest rank unit (rows + cols) of the layer's factored matrices. */
static void test_lowrank_budget(void **state) {
    (void)state;
    cce_model *base = tiny(2), *v;
    cce_calib_data d = calib_data(SEGS, SEG_LEN);
    cce_compress_result res;
    assert_cce_ok(run(base, "cce:ratio=0.5", &d, &v, &res));
    const cce_config *c = cce_model_config(base);
    static const cce_layer_tensor w[7] = {CCE_LT_Q,    CCE_LT_K,  CCE_LT_V,   CCE_LT_O,
                                          CCE_LT_GATE, CCE_LT_UP, CCE_LT_DOWN};
    int64_t removed_all = 0, total = 0;
    int factored = 0;
    for (int l = 0; l < c->n_layers; l++) {
        double budget = 0;
        for (int i = 0; i < 7; i++) {
            char name[CCE_PLAN_NAME_MAX];
            cce_plan_row row;
            cce_layer_tensor_name(l, w[i], name, sizeof name);
            assert_cce_ok(cce_plan_resolve(res.plans[0], l, name, &row));
            budget += row.value * (double)cce_tensor_numel(lt(base, l, w[i]));
        }
        int64_t removed = 0, unit = 0;
        for (size_t i = 0; i < res.report.n; i++) {
            const cce_report_row *row = &res.report.rows[i];
            if (row->layer != l) continue;
            removed += row->params_before - row->params_after;
            if (row->rank > 0) {
                factored++;
                const cce_encoding *e;
                assert_cce_ok(cce_model_tensor_encoding(v, row->tensor, &e));
                assert_non_null(e);
                assert_true(e->lowrank);
                assert_int_equal(e->rank, row->rank);
                assert_true(row->rank * (e->rows + e->cols) < e->rows * e->cols);
                if (e->rows + e->cols > unit) unit = e->rows + e->cols;
                assert_int_equal(row->bytes_after, 4 * row->rank * (e->rows + e->cols));
            }
            assert_true(strstr(row->note, "rho") != NULL);
        }
        /* the layer's budget within one rank unit (above, never below) */
        assert_true((double)removed >= budget - 0.5);
        assert_true((double)removed < budget + 0.5 + (double)unit);
        /* stage 3 took its share: prune_share of the budget, in whole neurons */
        int H = cce_model_layer(base, l)->hidden_dim, m = cce_model_layer(v, l)->hidden_dim;
        assert_int_equal(H - m, (int)floor(2.0 / 3.0 * llround(budget) / (3.0 * c->dim)));
        removed_all += removed;
        total += layer_params(base, l);
    }
    assert_true(factored > 0);
    /* the global target: each layer within one neuron of rounding and one rank unit */
    assert_true(fabs((double)removed_all - 0.5 * (double)total) <= 2.0 * (3.0 * c->dim + 2 * 64));
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
}

static long long file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long long n = ftell(f);
    fclose(f);
    return n;
}

static void test_lowrank_save_reload(void **state) {
    (void)state;
    char dir[4096], dense_path[4200], path[4200];
    snprintf(dir, sizeof dir, "%s", test_scratch_dir("cce_lowrank_rt"));
    snprintf(dense_path, sizeof dense_path, "%s/dense.h5", dir);
    snprintf(path, sizeof path, "%s/cce.h5", dir);
    cce_model *base = tiny(2), *v, *back;
    cce_calib_data d = calib_data(SEGS, SEG_LEN);
    cce_compress_result res;
    assert_cce_ok(run(base, "cce:ratio=0.4", &d, &v, &res));
    int32_t stream[400];
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 23);
    for (int i = 0; i < 400; i++) stream[i] = 3 + (int32_t)gsl_rng_uniform_int(r, 290);
    gsl_rng_free(r);
    cce_eval_options eo = {.ctx = 32};
    cce_eval_result mem, disk;
    assert_cce_ok(cce_eval(v, base, stream, 400, &eo, &mem));
    assert_cce_ok(cce_model_save(base, dense_path, NULL));
    assert_cce_ok(cce_compress_save(v, &res, path, NULL));
    assert_cce_ok(cce_model_open(path, &back));
    assert_cce_ok(cce_eval(back, base, stream, 400, &eo, &disk));
    assert_true(isfinite(mem.mean_nll));
    assert_true(mem.mean_nll == disk.mean_nll);
    assert_true(mem.kl_mean == disk.kl_mean);
    assert_true(mem.kl_mean > 0);
    int ffn_lowrank = 0, attn_lowrank = 0;
    for (size_t i = 0; i < res.report.n; i++) {
        const cce_report_row *row = &res.report.rows[i];
        cce_tensor *tm, *td;
        assert_cce_ok(cce_model_tensor(v, row->tensor, &tm));
        assert_cce_ok(cce_model_tensor(back, row->tensor, &td));
        assert_int_equal(cce_tensor_numel(tm), cce_tensor_numel(td));
        assert_memory_equal(tm->data, td->data, (size_t)cce_tensor_numel(tm) * sizeof(float));
        const cce_encoding *e;
        assert_cce_ok(cce_model_tensor_encoding(back, row->tensor, &e));
        if (row->rank > 0) {
            assert_non_null(e);
            assert_true(e->lowrank);
            assert_int_equal(e->rank, row->rank);
            if (strstr(row->tensor, ".mlp."))
                ffn_lowrank++;
            else
                attn_lowrank++;
        }
    }
    print_message("factored: %d FFN, %d attention; dense file %lld bytes, cce file %lld bytes\n",
                  ffn_lowrank, attn_lowrank, file_size(dense_path), file_size(path));
    assert_true(attn_lowrank > 0);
    /* cce info counts a factored tensor's stored parameters (its factors), as the report does,
     * in the tensor rows and in the total */
    char args[4400], *info = NULL;
    snprintf(args, sizeof args, "info '%s'", path);
    assert_int_equal(test_run_cce(args, &info), 0);
    int64_t saved = 0;
    for (size_t i = 0; i < res.report.n; i++) {
        const cce_report_row *row = &res.report.rows[i];
        if (row->rank < 1) continue;
        const char *line = strstr(info, row->tensor);
        assert_non_null(line);
        char shape[64];
        long long params = -1;
        assert_int_equal(sscanf(line + strlen(row->tensor), " [%63[^]]] %lld", shape, &params), 2);
        assert_int_equal(params, row->params_after);
        cce_tensor *t;
        assert_cce_ok(cce_model_tensor(back, row->tensor, &t));
        saved += cce_tensor_numel(t) - row->params_after;
    }
    const char *tl = strstr(info, "total:");
    long long total = -1;
    assert_non_null(tl);
    assert_int_equal(sscanf(tl, "total: %lld", &total), 1);
    assert_int_equal(total, cce_model_total_params(back) - saved);
    free(info);
    /* a pruned layer's factored FFN matrices keep their encoding through the reshape */
    assert_true(ffn_lowrank > 0);
    assert_true(file_size(path) < file_size(dense_path));
    cce_eval_result_free(&mem);
    cce_eval_result_free(&disk);
    cce_model_free(back);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
}

/* Checks a variant's attention shapes against its kv_of_head and that q/k/v rows are rows of the
 * base's (whole heads, in order); returns the query heads removed over all layers. */
static int check_heads(cce_model *base, cce_model *v, int rows_exact) {
    const cce_config *c = cce_model_config(base);
    int e = c->head_dim, d = c->dim, gone = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const cce_layer_shape *b = cce_model_layer(base, l), *s = cce_model_layer(v, l);
        assert_true(s->n_heads >= 1 && s->n_heads <= b->n_heads);
        assert_true(s->n_kv_heads >= 1 && s->n_kv_heads <= b->n_kv_heads);
        gone += b->n_heads - s->n_heads;
        int read[64] = {0};
        for (int h = 0; h < s->n_heads; h++) {
            assert_true(s->kv_of_head[h] >= 0 && s->kv_of_head[h] < s->n_kv_heads);
            read[s->kv_of_head[h]] = 1;
        }
        for (int g = 0; g < s->n_kv_heads; g++) assert_true(read[g]); /* no orphan kv head */
        const cce_tensor *q = lt(v, l, CCE_LT_Q), *o = lt(v, l, CCE_LT_O);
        const cce_tensor *k = lt(v, l, CCE_LT_K), *vv = lt(v, l, CCE_LT_V);
        assert_int_equal(q->shape[0], (int64_t)s->n_heads * e);
        assert_int_equal(o->shape[1], (int64_t)s->n_heads * e);
        assert_int_equal(k->shape[0], (int64_t)s->n_kv_heads * e);
        assert_int_equal(vv->shape[0], (int64_t)s->n_kv_heads * e);
        if (!rows_exact) continue;
        /* lowrank off: kept q heads are base heads, in order, and read the same kv head */
        const cce_tensor *q0 = lt(base, l, CCE_LT_Q), *k0 = lt(base, l, CCE_LT_K);
        for (int h = 0, h0 = 0; h < s->n_heads; h++, h0++) {
            while (h0 < b->n_heads &&
                   memcmp(q0->data + (int64_t)h0 * e * d, q->data + (int64_t)h * e * d,
                          (size_t)e * d * sizeof(float)))
                h0++;
            assert_true(h0 < b->n_heads);
            assert_memory_equal(k0->data + (int64_t)b->kv_of_head[h0] * e * d,
                                k->data + (int64_t)s->kv_of_head[h] * e * d,
                                (size_t)e * d * sizeof(float));
        }
    }
    return gone;
}

/* Stage-3 budget of layer l from the plan: sum target * size over the seven matrices. */
static double plan_budget(const cce_compress_result *res, cce_model *base, int l) {
    static const cce_layer_tensor w[7] = {CCE_LT_Q,    CCE_LT_K,  CCE_LT_V,   CCE_LT_O,
                                          CCE_LT_GATE, CCE_LT_UP, CCE_LT_DOWN};
    double budget = 0;
    for (int i = 0; i < 7; i++) {
        char name[CCE_PLAN_NAME_MAX];
        cce_plan_row row;
        cce_layer_tensor_name(l, w[i], name, sizeof name);
        assert_cce_ok(cce_plan_resolve(res->plans[0], l, name, &row));
        budget += row.value * (double)cce_tensor_numel(lt(base, l, w[i]));
    }
    return budget;
}

/* GQA (4 heads, 2 kv heads): heads go when the budget exceeds what neurons give; the variant's
 * head map is consistent, its windowed and KV-cache forwards agree, each layer meets its budget
 * within one neuron; q/k/v keep whole heads of the base. */
static void test_heads_gqa(void **state) {
    (void)state;
    cce_model *base = tiny(2), *v;
    const cce_config *c = cce_model_config(base);
    assert_true(c->n_kv_heads < c->n_heads);
    cce_calib_data d = calib_data(SEGS, SEG_LEN);
    cce_compress_result res;
    assert_cce_ok(run(base, "cce:ratio=0.75,lowrank=false,prune_heads=true", &d, &v, &res));
    assert_true(check_heads(base, v, 1) > 0);
    for (int l = 0; l < c->n_layers; l++) {
        double budget = plan_budget(&res, base, l);
        double removed = (double)(layer_params(base, l) - layer_params(v, l));
        assert_true(removed <= budget + 0.5);
        assert_true(removed > budget - 0.5 - 3.0 * c->dim); /* within one unit */
    }
    int heads_rows = 0;
    for (size_t i = 0; i < res.report.n; i++) {
        heads_rows += strstr(res.report.rows[i].tensor, "q_proj") != NULL;
        assert_true(isfinite(res.report.rows[i].output_error));
    }
    assert_true(heads_rows > 0);
    /* the windowed forward and KV-cache decoding agree on the pruned model */
    enum { NT = 12 };
    int32_t toks[NT];
    for (int i = 0; i < NT; i++) toks[i] = 3 + (int32_t)((i * 37) % 290);
    cce_forward *f;
    assert_cce_ok(cce_forward_new(v, NT, &f));
    int V = c->vocab_size;
    float *lw = malloc((size_t)NT * V * sizeof *lw), *ld = malloc((size_t)V * sizeof *ld);
    assert_cce_ok(cce_forward_window(f, toks, NT, lw));
    for (int i = 0; i < NT; i++) assert_cce_ok(cce_forward_token(f, toks[i], i, ld));
    for (int x = 0; x < V; x++) {
        assert_true(isfinite(ld[x]));
        assert_true(fabs(ld[x] - lw[(NT - 1) * V + x]) < 1e-3 * (1 + fabs(ld[x])));
    }
    free(lw);
    free(ld);
    cce_forward_free(f);
    cce_eval_options eo = {.ctx = 32};
    cce_eval_result er;
    assert_cce_ok(cce_eval(v, base, calib_tokens, SEGS * SEG_LEN, &eo, &er));
    assert_true(isfinite(er.mean_nll) && isfinite(er.kl_mean));
    cce_eval_result_free(&er);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
}

/* Heads with low rank: each layer's budget within one rank unit, stage 3 under its share. */
static void test_heads_lowrank_budget(void **state) {
    (void)state;
    cce_model *base = tiny(2), *v;
    cce_calib_data d = calib_data(SEGS, SEG_LEN);
    cce_compress_result res;
    assert_cce_ok(run(base, "cce:ratio=0.6,prune_heads=true,prune_share=0.9", &d, &v, &res));
    const cce_config *c = cce_model_config(base);
    for (int l = 0; l < c->n_layers; l++) {
        double budget = plan_budget(&res, base, l);
        int64_t removed = 0, unit = 0;
        for (size_t i = 0; i < res.report.n; i++) {
            const cce_report_row *row = &res.report.rows[i];
            if (row->layer != l) continue;
            removed += row->params_before - row->params_after;
            const cce_encoding *e;
            assert_cce_ok(cce_model_tensor_encoding(v, row->tensor, &e));
            if (row->rank > 0 && e->rows + e->cols > unit) unit = e->rows + e->cols;
        }
        assert_true((double)removed >= budget - 0.5);
        assert_true((double)removed < budget + 0.5 + (double)unit);
        /* structure removed: shapes of the variant against the base */
        double shrunk = (double)(layer_params(base, l) - layer_params(v, l));
        assert_true(shrunk <= floor(0.9 * llround(budget)) + 0.5);
    }
    assert_true(check_heads(base, v, 0) > 0);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
}

/* A model with biases: removed neurons and heads take their gate/up and q/k/v bias entries with
 * them (the kept entries are the base's, in order) and the variant evaluates. */
static void test_heads_biases(void **state) {
    (void)state;
    cce_synth_options so;
    assert_cce_ok(cce_synth_preset("tiny", &so));
    so.seed = 4;
    so.biases = 1;
    cce_model *base, *v;
    assert_cce_ok(cce_synth_model(&so, &base));
    cce_calib_data d = calib_data(SEGS, SEG_LEN);
    cce_compress_result res;
    assert_cce_ok(run(base, "cce:ratio=0.75,lowrank=false,prune_heads=true", &d, &v, &res));
    assert_true(check_heads(base, v, 1) > 0);
    const cce_config *c = cce_model_config(base);
    int e = c->head_dim, dim = c->dim;
    for (int l = 0; l < c->n_layers; l++) {
        const cce_layer_shape *b0 = cce_model_layer(base, l), *b1 = cce_model_layer(v, l);
        /* gate rows and q/k rows of the variant are rows of the base: their biases follow */
        struct {
            cce_layer_tensor t;
            cce_layer_bias b;
            int unit, n0;
        } m[3] = {{CCE_LT_GATE, CCE_LB_GATE, 1, b0->hidden_dim},
                  {CCE_LT_Q, CCE_LB_Q, e, b0->n_heads * e},
                  {CCE_LT_K, CCE_LB_K, e, b0->n_kv_heads * e}};
        for (int i = 0; i < 3; i++) {
            cce_tensor *w0 = lt(base, l, m[i].t), *w1 = lt(v, l, m[i].t), *c0, *c1;
            assert_cce_ok(cce_model_layer_bias(base, l, m[i].b, &c0));
            assert_cce_ok(cce_model_layer_bias(v, l, m[i].b, &c1));
            assert_non_null(c0);
            assert_non_null(c1);
            assert_int_equal(cce_tensor_numel(c1), w1->shape[0]);
            for (int r = 0, r0 = 0; r < w1->shape[0]; r++, r0++) {
                while (r0 < m[i].n0 && memcmp(w0->data + (int64_t)r0 * dim,
                                              w1->data + (int64_t)r * dim, dim * sizeof(float)))
                    r0++;
                assert_true(r0 < m[i].n0);
                assert_true(c0->data[r0] == c1->data[r]);
            }
        }
        assert_true(b1->hidden_dim < b0->hidden_dim || b1->n_heads < b0->n_heads);
    }
    cce_eval_options eo = {.ctx = 32};
    cce_eval_result er;
    assert_cce_ok(cce_eval(v, base, calib_tokens, SEGS * SEG_LEN, &eo, &er));
    assert_true(isfinite(er.mean_nll));
    cce_eval_result_free(&er);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
}

/* stories260K (8 heads, 4 kv heads) at 20% with heads: the variant evaluates to a finite
 * perplexity and generates text. */
static void test_heads_stories260k(void **state) {
    (void)state;
    const char *bin = test_require_mirror_file("models/stories260K/stories260K.bin");
    const char *tok = test_require_mirror_file("models/stories260K/tok512.bin");
    test_require_mirror_file("text/tinystories_val.txt");
    cce_model *base, *v;
    assert_cce_ok(cce_import_llama2c(bin, tok, &base));
    int32_t *stream;
    size_t n;
    assert_cce_ok(cce_dataset_tokens("tinystories_val", cce_model_tokenizer(base), &stream, &n));
    assert_true(n > 20000);
    /* calibration: 16 windows of 128 tokens after the first 4096 (the evaluation tokens) */
    cce_calib_data d = {.tokens = stream + 4096, .n_segments = 16, .seg_len = 128};
    cce_calib_data_hash(&d);
    cce_compress_result res;
    assert_cce_ok(run(base, "cce:ratio=0.2,prune_heads=true", &d, &v, &res));
    int gone = check_heads(base, v, 0);
    cce_eval_options eo = {.ctx = 256, .max_tokens = 1024};
    cce_eval_result er;
    assert_cce_ok(cce_eval(v, base, stream, 4096, &eo, &er));
    print_message("stories260K cce 20%% with heads: %d query heads removed, ppl %.4f, kl %.4f\n",
                  gone, er.ppl, er.kl_mean);
    assert_true(isfinite(er.ppl) && er.ppl > 1);
    cce_eval_result_free(&er);
    cce_generate_stats gs;
    assert_cce_ok(
        cce_generate_with_stats(v, "Once upon a time", 24, 0.0f, 1.0f, 1, NULL, NULL, &gs));
    assert_true(gs.n_generated > 0);
    free(stream);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
}

/* The cce program builds the calibration set from calib_windows x calib_len when the command line
 * gives no calibration size; --calib-tokens / --calib-window win. */
static void test_calib_shape_cli(void **state) {
    (void)state;
    const char *bin = test_require_mirror_file("models/stories260K/stories260K.bin");
    const char *tok = test_require_mirror_file("models/stories260K/tok512.bin");
    test_require_mirror_file("text/tinystories_val.txt");
    char dir[1024], args[8192];
    snprintf(dir, sizeof dir, "%s", test_scratch_dir("cce_calib_shape"));
    char *out = NULL;
    snprintf(args, sizeof args, "import llama2c '%s' '%s' -o '%s/m.h5'", bin, tok, dir);
    assert_int_equal(test_run_cce(args, &out), 0);
    free(out);
    const char *cases[3][2] = {{"calib_windows=4,calib_len=64", ""},
                               {"calib_windows=8,calib_len=64", ""},
                               {"calib_windows=8,calib_len=64", "--calib-tokens 192 "}};
    const char *want[3] = {"4 segments of 64 tokens", "8 segments of 64 tokens",
                           "3 segments of 64 tokens"};
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof args,
                 "compress '%s/m.h5' -s cce:ratio=0.1,lowrank=false,%s --calib tinystories_val "
                 "%s--no-cache -o '%s/v%d.h5'",
                 dir, cases[i][0], cases[i][1], dir, i);
        int rc = test_run_cce(args, &out);
        if (rc != 0 || !strstr(out, want[i])) print_message("%s\n", out ? out : "");
        assert_int_equal(rc, 0);
        assert_non_null(strstr(out, want[i]));
        free(out);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reduces_to_structured),
        cmocka_unit_test(test_budget_and_fold),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_one_layer_and_small_calibration),
        cmocka_unit_test(test_lowrank_budget),
        cmocka_unit_test(test_lowrank_save_reload),
        cmocka_unit_test(test_heads_gqa),
        cmocka_unit_test(test_heads_lowrank_budget),
        cmocka_unit_test(test_heads_biases),
        cmocka_unit_test(test_heads_stories260k),
        cmocka_unit_test(test_calib_shape_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
