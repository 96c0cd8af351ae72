/* The cce strategy's tables through the recording paths and the figures drawn from them
 * (framework/figure_cce.c, analysis/templates/cce_*.gp, lua/lua_compress.c, exp:run):
 *   - a results file made through the C API (dense, cce and magnitude runs of a tiny synthetic
 *     model): cce_layer_ratio, cce_ev and cce_budget write .tsv, .gp, .png and .pdf whose data are
 *     the tables' values; a run filter without cce runs gives a clear error for cce_ev and
 *     cce_budget (library and `cce plot`), cce_layer_ratio then draws the magnitude run alone;
 *   - a Lua script: v:compression().tables holds the cce tables (none for magnitude), exp:run
 *     records them with the run (read back by cce.results / cce.read_table), exp:figure draws
 *     the three kinds. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compress.h"
#include "figure.h"
#include "fixtures.h"
#include "results.h"
#include "results_table.h"
#include "strategy.h"
#include "test_support.h"

static char dir[4096];

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "%s", test_scratch_dir("cce_figures"));
    return chdir(dir);
}

/* Compresses the tiny model with spec and records the run (with its tables) in path. */
static void record_run(cce_results *rf, cce_model *base, const char *spec, const char *key) {
    cce_report empty = {0};
    cce_compress_result res = {0};
    cce_table_list tabs = {0};
    cce_model *v = NULL;
    if (spec) {
        const cce_strategy *s;
        cce_params *p;
        cce_strategy_instance *inst;
        assert_cce_ok(cce_strategy_parse_spec(spec, &s, &p));
        assert_cce_ok(cce_strategy_instance_new(s, p, &inst));
        cce_params_free(p);
        int32_t *tok = fixture_random_tokens(6 * 40, 5);
        cce_calib_data d = {.tokens = tok, .n_segments = 6, .seg_len = 40};
        cce_calib_data_hash(&d);
        cce_compress_options o;
        cce_compress_options_init(&o);
        o.use_cache = 0;
        assert_cce_ok(cce_compress(base, &inst, 1, NULL, 0, &d, &o, &v, &res));
        assert_cce_ok(cce_strategy_tables_collect(&inst, 1, &tabs));
        cce_strategy_instance_free(inst);
        free(tok);
    }
    char params[128];
    snprintf(params, sizeof params, "[{\"strategy\": \"%s\", \"params\": {\"ratio\": 0.4%s}}]",
             spec ? (strncmp(spec, "cce", 3) ? "magnitude" : "cce") : "dense",
             spec && !strncmp(spec, "cce", 3) ? ", \"eps\": 0.05" : "");
    const char *names[] = {"ppl"};
    double values[] = {10};
    cce_run_record rec = {.key = key,
                          .experiment = "e",
                          .strategy =
                              spec ? (strncmp(spec, "cce", 3) ? "magnitude" : "cce") : "dense",
                          .params_json = spec ? params : "[]",
                          .model = "tiny",
                          .dataset = "random",
                          .protocol = "window=BOS+39, scored=1",
                          .n_metrics = 1,
                          .metric_names = names,
                          .metric_values = values,
                          .layers = spec ? &res.report : &empty,
                          .n_tables = tabs.n,
                          .tables = (const cce_table *const *)tabs.tables};
    assert_cce_ok(cce_results_add(rf, &rec, NULL));
    cce_table_list_clear(&tabs);
    cce_compress_result_clear(&res);
    cce_model_free(v);
}

/* Lines of text that are neither comments nor empty. */
static int data_lines(const char *text) {
    int n = 0;
    for (const char *p = text; *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len && *p != '#') n++;
        p += len + (e ? 1 : 0);
    }
    return n;
}

static void expect_files(const cce_figure_files *f) {
    const char *const paths[] = {f->tsv, f->gp, f->png, f->pdf};
    for (int i = 0; i < 4; i++) {
        assert_non_null(paths[i]);
        assert_true(test_file_exists(paths[i]));
    }
    size_t len;
    char *png = test_read_file(f->png, &len);
    assert_true(len > 1000 && !memcmp(png, "\x89PNG", 4));
    free(png);
    char *pdf = test_read_file(f->pdf, &len);
    assert_true(len > 1000 && !memcmp(pdf, "%PDF", 4));
    free(pdf);
}

static void test_figures(void **state) {
    (void)state;
    cce_model *base = fixture_synth_preset("tiny", 4);
    cce_results *rf;
    assert_cce_ok(cce_results_open("runs.h5", &rf));
    record_run(rf, base, NULL, "dense");
    record_run(rf, base, "cce:ratio=0.4", "cce");
    record_run(rf, base, "magnitude:ratio=0.4", "mag");
    cce_results_close(rf);
    cce_model_free(base);
    cce_table *lt, *ev;
    assert_cce_ok(cce_results_read_table("runs.h5", "r000002", "cce_layers", &lt));
    assert_cce_ok(cce_results_read_table("runs.h5", "r000002", "cce_ev", &ev));
    int L = (int)lt->n_rows;
    assert_int_equal(L, 2);

    /* cce_layer_ratio: the cce run's achieved and planned, the magnitude run's achieved */
    cce_figure_options o = {.out_dir = "figs"};
    cce_figure_files f;
    assert_cce_ok(cce_figure_make("runs.h5", "cce_layer_ratio", &o, &f));
    expect_files(&f);
    char *tsv = test_read_file(f.tsv, NULL);
    assert_int_equal(data_lines(tsv), 1 + L);
    assert_non_null(
        strstr(tsv, "layer\tcce ratio=0.4\tcce ratio=0.4 planned\tmagnitude ratio=0.4"));
    char want[128];
    snprintf(want, sizeof want, "\n0\t%.10g\t%.10g\t",
             cce_table_f64(lt, 0, cce_table_column(lt, "rho_achieved")),
             cce_table_f64(lt, 0, cce_table_column(lt, "rho_planned")));
    assert_non_null(strstr(tsv, want));
    assert_non_null(strstr(tsv, "\tNaN\n")); /* magnitude: no plan */
    free(tsv);
    char *gp = test_read_file(f.gp, NULL);
    assert_non_null(strstr(gp, "planned_runs = \"1\""));
    free(gp);
    cce_figure_files_clear(&f);

    /* cce_ev: 2L blocks (C_a, then C_y), each from (0, 0) to (1, 1) */
    assert_cce_ok(cce_figure_make("runs.h5", "cce_ev", &o, &f));
    expect_files(&f);
    tsv = test_read_file(f.tsv, NULL);
    int blocks = 0, ends = 0;
    for (const char *p = tsv; (p = strstr(p, "frac\tlayer ")); p++) blocks++;
    for (const char *p = tsv; (p = strstr(p, "\n1\t1\n")); p++) ends++;
    assert_int_equal(blocks, 2 * L);
    assert_int_equal(ends, 2 * L);
    int64_t n_ffn = cce_table_i64(ev, 0, cce_table_column(ev, "n_ffn"));
    assert_int_equal(data_lines(tsv),
                     2 * L * 2 + L * (int)n_ffn +
                         L * (int)cce_table_i64(ev, 0, cce_table_column(ev, "n_attn")));
    snprintf(want, sizeof want, "\n%.10g\t%.10g\n", 1.0 / (double)n_ffn,
             cce_table_vec(ev, 0, cce_table_column(ev, "ev_ffn"))[0]);
    assert_non_null(strstr(tsv, want));
    assert_non_null(strstr(tsv, "# run: r000002"));
    free(tsv);
    cce_figure_files_clear(&f);

    /* cce_budget: one row per layer */
    assert_cce_ok(cce_figure_make("runs.h5", "cce_budget", &o, &f));
    expect_files(&f);
    tsv = test_read_file(f.tsv, NULL);
    assert_int_equal(data_lines(tsv), 1 + L);
    snprintf(want, sizeof want, "\n1\t%.10g\t%.10g\t%.10g\t",
             cce_table_f64(lt, 1, cce_table_column(lt, "rho_planned")),
             cce_table_f64(lt, 1, cce_table_column(lt, "rho_achieved")),
             cce_table_f64(lt, 1, cce_table_column(lt, "R")));
    assert_non_null(strstr(tsv, want));
    free(tsv);
    cce_figure_files_clear(&f);
    cce_table_free(lt);
    cce_table_free(ev);

    /* runs without cce tables */
    cce_figure_options m = {.out_dir = "figs", .runs = "strategy=magnitude|dense"};
    assert_int_equal(cce_figure_make("runs.h5", "cce_ev", &m, &f), CCE_ERR_NOT_FOUND);
    assert_non_null(strstr(cce_error_detail(), "table cce_ev"));
    assert_non_null(strstr(cce_error_detail(), "cce strategy"));
    cce_figure_files_clear(&f);
    assert_int_equal(cce_figure_make("runs.h5", "cce_budget", &m, &f), CCE_ERR_NOT_FOUND);
    assert_non_null(strstr(cce_error_detail(), "cce_layers"));
    cce_figure_files_clear(&f);
    m.base = "mag_only";
    assert_cce_ok(cce_figure_make("runs.h5", "cce_layer_ratio", &m, &f));
    tsv = test_read_file(f.tsv, NULL);
    assert_null(strstr(tsv, "cce ratio"));
    free(tsv);
    cce_figure_files_clear(&f);
    m.runs = "strategy=dense";
    assert_int_equal(cce_figure_make("runs.h5", "cce_layer_ratio", &m, &f), CCE_ERR_NOT_FOUND);
    cce_figure_files_clear(&f);
    char *out = fixture_run_expect(1, "plot runs.h5 --figure cce_ev --runs magnitude --out figs");
    fixture_expect_in(out, "table cce_ev");
    free(out);
    out = fixture_run_expect(2, "plot runs.h5 --figure cce_nothing");
    fixture_expect_in(out, "cce_budget");
    free(out);
}

/* m:compress keeps the tables with the variant; exp:run records them; exp:figure draws them. */
static const char LUA[] =
    "local cce = require 'cce'\n"
    "local out = cce.args[1]\n"
    "local m = cce.synth{seed = 1}\n"
    "local calib, test = cce.dataset('a.txt'):split{model = m, calib_tokens = 512,\n"
    "                                               calib_window = 64, test_tokens = 1500}\n"
    "local n_layers = m:info().n_layers\n"
    "local v <close> = m:compress{strategy = 'cce', ratio = 0.4, calib = calib}\n"
    "local names = {}\n"
    "for _, t in ipairs(v:compression().tables) do names[#names + 1] = t:name() .. '=' .. #t end\n"
    "assert(table.concat(names, ' ') == 'cce_layers=' .. n_layers .. ' cce_ev=' .. n_layers ..\n"
    "       ' cce_scores=' .. n_layers, table.concat(names, ' '))\n"
    "local row = v:compression().tables[1]:row(1)\n"
    "assert(row.layer == 0 and row.rho_achieved > 0 and row.neurons_kept < row.neurons_total)\n"
    "local w <close> = m:compress{strategy = 'magnitude', ratio = 0.4}\n"
    "assert(#w:compression().tables == 0)\n"
    "local exp <close> = cce.experiment{name = 'cf', out = out, model = m, stats = false}\n"
    "exp:run{strategy = 'dense', eval = test, max_tokens = 1500}\n"
    "exp:run{strategy = 'cce', ratio = 0.4, calib = calib, eval = test, max_tokens = 1500}\n"
    "exp:run{strategy = 'magnitude', ratio = 0.4, eval = test, max_tokens = 1500}\n"
    "local runs = cce.results(out)\n"
    "assert(#runs == 3 and runs[1].tables.cce_layers == nil)\n"
    "assert(runs[2].tables.cce_layers == n_layers and runs[2].tables.cce_ev == n_layers)\n"
    "assert(runs[3].tables.cce_layers == nil and runs[3].tables.eval_windows ~= nil)\n"
    "local t = cce.read_table(out, runs[2].id, 'cce_layers')\n"
    "assert(t:row(1).rho_achieved == row.rho_achieved, 'the recorded table is the variant one')\n"
    "for _, k in ipairs{'cce_layer_ratio', 'cce_ev', 'cce_budget'} do\n"
    "  local f = exp:figure(k, {formats = 'png'})\n"
    "  assert(f.png and f.tsv and f.gp, k)\n"
    "end\n"
    "local ok, err = pcall(exp.figure, exp, 'cce_ev', {runs = 'strategy=magnitude'})\n"
    "assert(not ok and err:find('cce_ev', 1, true), err)\n"
    "print('cce tables ok')\n";

static void test_lua(void **state) {
    (void)state;
    fixture_write_text("a.txt", 6000, 60);
    test_write_file("cf.lua", LUA, sizeof LUA - 1);
    char *out = fixture_run_expect(0, "run cf.lua lua/cf.h5");
    fixture_expect_in(out, "cce tables ok");
    free(out);
    assert_true(test_file_exists("lua/cf_cce_ev.png"));
    assert_true(test_file_exists("lua/cf_cce_budget.tsv"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_figures),
        cmocka_unit_test(test_lua),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
