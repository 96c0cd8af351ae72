/* The cce strategy end to end on a tiny synthetic model: with allocation uniform, fold off and
 * lowrank off it is structured pruning by the greedy score (kept rows/columns unchanged, the kept
 * set of layer 0 is the one cce_greedy_remove picks from the dense statistics); the redundancy
 * budget removes the global target within one neuron per layer; folding changes only down_proj;
 * with low rank (stage 4) each layer removes its planned budget within one rank unit, stage 3
 * takes prune_share of it, factored matrices carry lowrank encodings, and the variant saves to a
 * smaller file that reloads bit for bit and evaluates the same; bad input fails clearly (ratio
 * above 0.9, prune_heads not available yet, a target above the FFN's share with lowrank off, which
 * lowrank on then meets); a one-layer model and a calibration set smaller than the width work. */
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../strategies/cce_internal.h"
#include "calib.h"
#include "compress.h"
#include "encoding.h"
#include "eval.h"
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
    assert_int_equal(run(base, "cce:ratio=0.3,lowrank=false,prune_heads=true", &d, &v, &res),
                     CCE_ERR_STATE);
    assert_non_null(strstr(cce_error_detail(), "prune_heads"));
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reduces_to_structured),
        cmocka_unit_test(test_budget_and_fold),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_one_layer_and_small_calibration),
        cmocka_unit_test(test_lowrank_budget),
        cmocka_unit_test(test_lowrank_save_reload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
