/* The cce strategy's extra per-run tables (strategies/cce_report.h, strategy.h `tables`,
 * framework/strategy_tables.c) on a tiny synthetic model: cce_layers agrees with the variant
 * (neurons and heads kept, parameters removed counted from its shapes and the recorded ranks) and
 * with the report rows (ranks, output errors, parameters), rho_achieved is within one unit of
 * rho_planned; cce_ev curves are non-decreasing, end at 1 and give r_ffn / r_attn; the cce_scores
 * histograms count every neuron; two cce steps give "_s2" tables with NaN-padded curves; the
 * tables round-trip through a results file and export as TSV and JSON; a strategy without a
 * `tables` callback gives none; malformed tables from a callback are refused. */
#define _GNU_SOURCE
#include <gsl/gsl_rng.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "compress.h"
#include "results.h"
#include "results_table.h"
#include "strategy.h"
#include "synth.h"
#include "test_support.h"

#define SEGS    6
#define SEG_LEN 40

static int32_t calib_tokens[SEGS * SEG_LEN];

static cce_calib_data calib_data(void) {
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 17);
    for (size_t i = 0; i < SEGS * SEG_LEN; i++)
        calib_tokens[i] = 3 + (int32_t)gsl_rng_uniform_int(r, 290);
    gsl_rng_free(r);
    cce_calib_data d = {.tokens = calib_tokens, .n_segments = SEGS, .seg_len = SEG_LEN};
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

static cce_strategy_instance *instance(const char *spec) {
    const cce_strategy *s;
    cce_params *p;
    cce_strategy_instance *inst;
    assert_cce_ok(cce_strategy_parse_spec(spec, &s, &p));
    assert_cce_ok(cce_strategy_instance_new(s, p, &inst));
    cce_params_free(p);
    return inst;
}

/* Compresses base with the steps specs [n] and collects their tables into *tabs. */
static void run_steps(cce_model *base, const char *const *specs, size_t n, cce_model **v,
                      cce_compress_result *res, cce_table_list *tabs) {
    cce_strategy_instance *inst[4];
    for (size_t k = 0; k < n; k++) inst[k] = instance(specs[k]);
    cce_calib_data d = calib_data();
    cce_compress_options o;
    cce_compress_options_init(&o);
    o.use_cache = 0;
    assert_cce_ok(cce_compress(base, inst, n, NULL, 0, &d, &o, v, res));
    cce_table_list_init(tabs);
    assert_cce_ok(cce_strategy_tables_collect(inst, n, tabs));
    for (size_t k = 0; k < n; k++) cce_strategy_instance_free(inst[k]);
}

static const cce_table *find(const cce_table_list *l, const char *name) {
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->tables[i]->name, name)) return l->tables[i];
    return NULL;
}

static int col(const cce_table *t, const char *name) {
    int c = cce_table_column(t, name);
    if (c < 0) fail_msg("table %s has no column %s", t->name, name);
    return c;
}

static const char *const MATS[7] = {"q", "k", "v", "o", "gate", "up", "down"};
static const cce_layer_tensor KIND[7] = {CCE_LT_Q,    CCE_LT_K,  CCE_LT_V,   CCE_LT_O,
                                         CCE_LT_GATE, CCE_LT_UP, CCE_LT_DOWN};

/* The checks of cce_layers, cce_ev and cce_scores of one cce step that produced variant v from
 * `before` (the model the step received) with the report rows of rep whose strategy row range is
 * [r0, r1). suffix: "" or "_s2". */
static void check_tables(const cce_table_list *tabs, const char *suffix, cce_model *before,
                         cce_model *v, const cce_report *rep, size_t r0, size_t r1) {
    char name[64];
    snprintf(name, sizeof name, "cce_layers%s", suffix);
    const cce_table *lt = find(tabs, name);
    assert_non_null(lt);
    int L = cce_model_config(before)->n_layers, d = cce_model_config(before)->dim;
    assert_int_equal(lt->n_rows, (size_t)L);
    for (size_t i = 0; i < lt->n_rows; i++) {
        int l = (int)cce_table_i64(lt, i, col(lt, "layer"));
        assert_int_equal(l, (int)i);
        const cce_layer_shape *sb = cce_model_layer(before, l), *sv = cce_model_layer(v, l);
        assert_int_equal(cce_table_i64(lt, i, col(lt, "neurons_total")), sb->hidden_dim);
        assert_int_equal(cce_table_i64(lt, i, col(lt, "neurons_kept")), sv->hidden_dim);
        assert_int_equal(cce_table_i64(lt, i, col(lt, "heads_total")), sb->n_heads);
        assert_int_equal(cce_table_i64(lt, i, col(lt, "heads_kept")), sv->n_heads);
        double R = cce_table_f64(lt, i, col(lt, "R")), BI = cce_table_f64(lt, i, col(lt, "BI"));
        double rf = cce_table_f64(lt, i, col(lt, "R_ffn")),
               ra = cce_table_f64(lt, i, col(lt, "R_attn"));
        assert_true(rf >= 0 && rf <= 1 && ra >= 0 && ra <= 1);
        assert_true(R >= fmin(rf, ra) - 1e-12 && R <= fmax(rf, ra) + 1e-12);
        assert_true(BI >= 0 && isfinite(cce_table_f64(lt, i, col(lt, "u"))));
        /* parameters: before from the shapes, after from the variant's shapes and the ranks */
        int64_t P = 0, after = 0, rows_removed = 0;
        for (int m = 0; m < 7; m++) {
            cce_tensor *tb, *tv;
            assert_cce_ok(cce_model_layer_tensor(before, l, KIND[m], &tb));
            assert_cce_ok(cce_model_layer_tensor(v, l, KIND[m], &tv));
            P += cce_tensor_numel(tb);
            char cn[32];
            snprintf(cn, sizeof cn, "rank_%s", MATS[m]);
            int64_t rank = cce_table_i64(lt, i, col(lt, cn));
            int64_t rows = tv->shape[0], cols = tv->shape[1];
            after += rank > 0 ? rank * (rows + cols) : rows * cols;
            assert_true(rank == -1 || (rank >= 1 && rank < rows * cols / (rows + cols) + 1));
            /* the report row of the tensor (if any): same rank, same output error */
            char tn[CCE_PLAN_NAME_MAX];
            cce_layer_tensor_name(l, KIND[m], tn, sizeof tn);
            snprintf(cn, sizeof cn, "out_err_%s", MATS[m]);
            double err = cce_table_f64(lt, i, col(lt, cn));
            int found = 0;
            for (size_t k = r0; k < r1; k++) {
                const cce_report_row *w = &rep->rows[k];
                if (strcmp(w->tensor, tn)) continue;
                found = 1;
                assert_int_equal(w->rank > 0 ? w->rank : -1, rank);
                assert_true(err == w->output_error || (isnan(err) && isnan(w->output_error)));
                rows_removed += w->params_before - w->params_after;
            }
            if (!found) {
                assert_int_equal(rank, -1);
                assert_true(err == 0);
            } else {
                assert_true(err >= 0 && err < 2);
            }
        }
        assert_int_equal(cce_table_i64(lt, i, col(lt, "params_before")), P);
        assert_int_equal(cce_table_i64(lt, i, col(lt, "params_after")), after);
        assert_int_equal(rows_removed, P - after);
        double rho = cce_table_f64(lt, i, col(lt, "rho_achieved"));
        double planned = cce_table_f64(lt, i, col(lt, "rho_planned"));
        assert_true(fabs(rho * (double)P - (double)(P - after)) < 1e-6);
        /* within one unit: a neuron (3 d) or a rank unit (at most out + in of a matrix) */
        assert_true(fabs(rho - planned) * (double)P <= 3.0 * d + 2.0 * sb->hidden_dim);
        assert_true(rho > 0);
    }

    snprintf(name, sizeof name, "cce_ev%s", suffix);
    const cce_table *ev = find(tabs, name);
    assert_non_null(ev);
    assert_int_equal(ev->n_rows, (size_t)L);
    const char *curve[2] = {"ev_ffn", "ev_attn"}, *len[2] = {"n_ffn", "n_attn"};
    const char *rk[2] = {"r_ffn", "r_attn"};
    for (size_t i = 0; i < ev->n_rows; i++)
        for (int c = 0; c < 2; c++) {
            int cv = col(ev, curve[c]);
            int64_t n = cce_table_i64(ev, i, col(ev, len[c]));
            int64_t r = cce_table_i64(ev, i, col(ev, rk[c]));
            assert_int_equal(n, c == 0 ? cce_model_layer(before, (int)i)->hidden_dim : d);
            const double *y = cce_table_vec(ev, i, cv);
            for (int64_t k = 0; k < n; k++) {
                assert_true(y[k] >= 0 && y[k] <= 1 + 1e-12);
                if (k) assert_true(y[k] >= y[k - 1]);
            }
            assert_true(fabs(y[n - 1] - 1) < 1e-9);
            for (size_t k = (size_t)n; k < ev->cols[cv].width; k++) assert_true(isnan(y[k]));
            /* r: the first k reaching 1 - eps (eps = 0.05) */
            assert_true(r >= 1 && r <= n);
            assert_true(y[r - 1] >= 0.95 - 1e-12);
            if (r > 1) assert_true(y[r - 2] < 0.95);
            /* the same r is in cce_layers */
            assert_int_equal(cce_table_i64(lt, i, col(lt, rk[c])), r);
        }

    snprintf(name, sizeof name, "cce_scores%s", suffix);
    const cce_table *sc = find(tabs, name);
    assert_non_null(sc);
    assert_true(sc->n_rows >= 1);
    for (size_t i = 0; i < sc->n_rows; i++) {
        int l = (int)cce_table_i64(sc, i, col(sc, "layer"));
        int64_t total = cce_table_i64(sc, i, col(sc, "neurons_total"));
        int64_t removed = cce_table_i64(sc, i, col(sc, "neurons_removed"));
        assert_int_equal(total, cce_model_layer(before, l)->hidden_dim);
        assert_int_equal(removed, total - cce_model_layer(v, l)->hidden_dim);
        const char *which[2] = {"removed", "kept"};
        int64_t want[2] = {removed, total - removed};
        for (int w = 0; w < 2; w++) {
            char h[32], u[32], o[32];
            snprintf(h, sizeof h, "%s_hist", which[w]);
            snprintf(u, sizeof u, "%s_underflow", which[w]);
            snprintf(o, sizeof o, "%s_overflow", which[w]);
            const double *x = cce_table_vec(sc, i, col(sc, h));
            double sum =
                (double)cce_table_i64(sc, i, col(sc, u)) + (double)cce_table_i64(sc, i, col(sc, o));
            for (size_t b = 0; b < sc->cols[col(sc, h)].width; b++) sum += x[b];
            assert_true(sum == (double)want[w]);
        }
        assert_true(cce_table_f64(sc, i, col(sc, "log10_lo")) <
                    cce_table_f64(sc, i, col(sc, "log10_hi")));
    }
}

static void test_tables(void **state) {
    (void)state;
    cce_model *base = tiny(2), *v;
    cce_compress_result res;
    cce_table_list tabs;
    const char *spec[] = {"cce:ratio=0.4"};
    run_steps(base, spec, 1, &v, &res, &tabs);
    assert_int_equal(tabs.n, 3);
    check_tables(&tabs, "", base, v, &res.report, 0, res.report.n);
    cce_table_list_clear(&tabs);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
}

/* Two cce steps: the second's tables get "_s2" and see the first's (non-uniform) widths. */
static void test_two_steps(void **state) {
    (void)state;
    cce_model *base = tiny(2), *v, *mid;
    cce_compress_result res, res1;
    cce_table_list tabs, tabs1;
    const char *specs[] = {"cce:ratio=0.3,lowrank=false", "cce:ratio=0.3,lowrank=false"};
    run_steps(base, specs, 1, &mid, &res1, &tabs1);
    run_steps(base, specs, 2, &v, &res, &tabs);
    assert_int_equal(tabs.n, 6);
    assert_non_null(find(&tabs, "cce_layers_s2"));
    /* step 1 is the same run as the one-step compression: its rows come first */
    check_tables(&tabs, "", base, mid, &res.report, 0, res1.report.n);
    check_tables(&tabs, "_s2", mid, v, &res.report, res1.report.n, res.report.n);
    cce_table_list_clear(&tabs);
    cce_table_list_clear(&tabs1);
    cce_compress_result_clear(&res);
    cce_compress_result_clear(&res1);
    cce_model_free(v);
    cce_model_free(mid);
    cce_model_free(base);
}

/* The tables in a results file: read back equal, exported as TSV and JSON. */
static void test_record_export(void **state) {
    (void)state;
    cce_model *base = tiny(2), *v;
    cce_compress_result res;
    cce_table_list tabs;
    const char *spec[] = {"cce:ratio=0.4"};
    run_steps(base, spec, 1, &v, &res, &tabs);
    const char *path = test_path(test_scratch_dir("cce_report"), "r.h5");
    cce_results *rf;
    assert_cce_ok(cce_results_open(path, &rf));
    cce_run_record rec = {.key = "k1",
                          .experiment = "e",
                          .strategy = "cce",
                          .layers = &res.report,
                          .n_tables = tabs.n,
                          .tables = (const cce_table *const *)tabs.tables};
    const char *id;
    assert_cce_ok(cce_results_add(rf, &rec, &id));
    char run_id[16];
    snprintf(run_id, sizeof run_id, "%s", id);
    cce_results_close(rf);
    for (size_t i = 0; i < tabs.n; i++) {
        const cce_table *t = tabs.tables[i];
        cce_table *back;
        assert_cce_ok(cce_results_read_table(path, run_id, t->name, &back));
        assert_int_equal(back->n_rows, t->n_rows);
        assert_int_equal(back->n_cols, t->n_cols);
        for (size_t c = 0; c < t->n_cols; c++) {
            assert_string_equal(back->cols[c].name, t->cols[c].name);
            assert_int_equal(back->cols[c].width, t->cols[c].width);
            size_t n = t->n_rows * t->cols[c].width;
            if (t->cols[c].f64) assert_memory_equal(back->cols[c].f64, t->cols[c].f64, n * 8);
            if (t->cols[c].i64) assert_memory_equal(back->cols[c].i64, t->cols[c].i64, n * 8);
        }
        cce_table_free(back);
    }
    /* TSV: the header row names the columns, one line per layer */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_cce_ok(cce_results_export(path, "cce_layers", CCE_RESULTS_TSV, f));
    fclose(f);
    const char *hdr = strstr(buf, "\nrun\tlayer\tR_ffn\tR_attn\tR\tBI\tu\tz\trho_planned\t"
                                  "rho_achieved\tneurons_kept");
    assert_non_null(hdr);
    int lines = 0;
    for (const char *p = hdr + 1; (p = strchr(p, '\n')); p++) lines++;
    assert_int_equal(lines, 1 + 2); /* the header row and two layers */
    assert_non_null(strstr(buf, "out_err_down"));
    free(buf);
    /* JSON: the curves as arrays */
    buf = NULL;
    f = open_memstream(&buf, &len);
    assert_cce_ok(cce_results_export(path, "cce_ev", CCE_RESULTS_JSON, f));
    fclose(f);
    json_error_t err;
    json_t *root = json_loads(buf, 0, &err);
    assert_non_null(root);
    json_t *rows = json_object_get(root, "cce_ev");
    assert_int_equal(json_array_size(rows), 2);
    json_t *curve = json_object_get(json_array_get(rows, 1), "ev_ffn");
    assert_int_equal(json_array_size(curve), 64);
    assert_true(fabs(json_number_value(json_array_get(curve, 63)) - 1) < 1e-9);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 1), "run")), run_id);
    json_decref(root);
    free(buf);
    cce_table_list_clear(&tabs);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
}

/* A strategy without tables records none; before its plan cce has none either. */
static void test_no_tables(void **state) {
    (void)state;
    cce_model *base = tiny(2), *v;
    cce_compress_result res;
    cce_table_list tabs;
    const char *spec[] = {"magnitude:ratio=0.5"};
    run_steps(base, spec, 1, &v, &res, &tabs);
    assert_int_equal(tabs.n, 0);
    cce_strategy_instance *inst = instance("cce:ratio=0.3");
    assert_cce_ok(cce_strategy_instance_tables(inst, &tabs));
    assert_int_equal(tabs.n, 0);
    cce_strategy_instance_free(inst);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
}

/* Callbacks that misbehave: a name without the strategy's prefix, a reserved name, a repeat. */
static int mode;
static cce_status bad_tables(void *priv, cce_table_list *out) {
    (void)priv;
    static const char *const names[][2] = {
        {"other_table", NULL}, {"layers", NULL}, {"probe_a", "probe_a"}, {"probe_b", NULL}};
    for (int i = 0; i < 2 && names[mode][i]; i++) {
        cce_table *t;
        cce_status s = cce_table_new(names[mode][i], &t);
        if (!s) s = cce_table_list_add(out, t);
        if (s) return s;
    }
    return CCE_OK;
}

static cce_status probe_apply(void *priv, cce_block_job *job, cce_report *r) {
    (void)priv, (void)job, (void)r;
    return CCE_OK;
}

static const cce_param probe_params[] = {{NULL, 0, NULL, 0, 0, 0, NULL, NULL}};
static const cce_strategy probe = {.api_version = CCE_STRATEGY_API_VERSION,
                                   .name = "probe",
                                   .summary = "tables test",
                                   .params = probe_params,
                                   .apply = probe_apply,
                                   .tables = bad_tables};

static void test_bad_callbacks(void **state) {
    (void)state;
    cce_params *p;
    assert_cce_ok(cce_params_parse(&probe, NULL, &p));
    cce_strategy_instance *inst;
    assert_cce_ok(cce_strategy_instance_new(&probe, p, &inst));
    cce_params_free(p);
    cce_table_list l = {0};
    mode = 0;
    assert_int_equal(cce_strategy_instance_tables(inst, &l), CCE_ERR_FORMAT);
    assert_non_null(strstr(cce_error_detail(), "other_table"));
    assert_non_null(strstr(cce_error_detail(), "probe"));
    mode = 1;
    assert_int_equal(cce_strategy_instance_tables(inst, &l), CCE_ERR_FORMAT);
    mode = 2;
    assert_int_equal(cce_strategy_instance_tables(inst, &l), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "probe_a"));
    assert_int_equal(l.n, 0);
    mode = 3;
    assert_cce_ok(cce_strategy_instance_tables(inst, &l));
    assert_int_equal(l.n, 1);
    /* the same table again: a repeat within the run's list */
    assert_int_equal(cce_strategy_instance_tables(inst, &l), CCE_ERR_ARG);
    assert_int_equal(l.n, 1);
    /* two steps of it: the second is renamed */
    cce_strategy_instance *two[2] = {inst, inst};
    cce_table_list_clear(&l);
    assert_cce_ok(cce_strategy_tables_collect(two, 2, &l));
    assert_int_equal(l.n, 2);
    assert_string_equal(l.tables[0]->name, "probe_b");
    assert_string_equal(l.tables[1]->name, "probe_b_s2");
    cce_table_list_clear(&l);
    cce_strategy_instance_free(inst);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables),        cmocka_unit_test(test_two_steps),
        cmocka_unit_test(test_record_export), cmocka_unit_test(test_no_tables),
        cmocka_unit_test(test_bad_callbacks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
