/* The paper experiments (experiments/paper/NAME.lua, lua/cce/paper.lua) and the bindings they use
 * (lua/lua_table.c: cce.render_table, cce.write_table; lua/lua_bench.c: cce.bench_server),
 * through `cce run` on the synthetic tiny model with a generated text (no mirror needed).
 * Every script runs with quick=true and tiny settings; the test checks its results file (runs
 * recorded, the dense run first, plausible metrics), its LaTeX / Markdown / TSV tables (a
 * booktabs tabular whose every row has one cell per column; TSV rows as wide as the header),
 * its figures, that `cce table` reads the file, and that a rerun resumes (records nothing new).
 * The bindings' own cases: escaping and symbols, bold and dagger cells, bad rows and out names,
 * render_table against `cce table`, and measurements of a saved model in a fresh process. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixtures.h"
#include "results.h"
#include "test_support.h"

static char dir[4096];

/* Tiny settings every script run uses: the synthetic model, generated texts, two seeds. */
#define TINY                                                                                       \
    "model=synth data=text.txt calib_tokens=512 calib_window=64 test_tokens=2000 "                 \
    "max_tokens=2000 quick=true seeds=1,2 out=out"

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "%s", test_scratch_dir("lua_paper"));
    if (chdir(dir) != 0) return -1;
    fixture_write_text("text.txt", 12000, 60);
    fixture_write_text("a.txt", 6000, 40);
    fixture_write_text("s.txt", 6000, 50);
    return 0;
}

static void script(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void script(const char *name, const char *fmt, ...) {
    char body[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof body);
    test_write_file(name, body, (size_t)n);
}

static int count_of(const char *s, const char *what) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what)) n++;
    return n;
}

/* A booktabs tabular: \begin{tabular}{l r...}, \toprule, a header, \midrule, rows,
 * \bottomrule, \end{tabular}; every row between toprule and bottomrule has ncols - 1 column
 * separators (" & ") and ends with "\\". Returns the number of body rows. */
static int check_latex(const char *path) {
    char *t = test_read_file(path, NULL);
    const char *spec = strstr(t, "\\begin{tabular}{");
    if (!spec) fail_msg("%s: no tabular", path);
    spec += strlen("\\begin{tabular}{");
    int ncols = (int)strspn(spec, "lrc");
    assert_true(ncols >= 2);
    assert_int_equal(spec[ncols], '}');
    const char *top = strstr(t, "\\toprule\n"), *mid = strstr(t, "\\midrule\n"),
               *bottom = strstr(t, "\\bottomrule\n");
    assert_non_null(top);
    assert_non_null(mid);
    assert_non_null(bottom);
    assert_non_null(strstr(t, "\\end{tabular}"));
    assert_true(top < mid && mid < bottom);
    int rows = 0;
    for (const char *line = top + strlen("\\toprule\n"); line < bottom;) {
        const char *end = strchr(line, '\n');
        assert_non_null(end);
        if (strncmp(line, "\\midrule", 8) != 0) {
            char buf[4096];
            size_t n = (size_t)(end - line);
            assert_true(n < sizeof buf);
            memcpy(buf, line, n);
            buf[n] = 0;
            /* an unescaped '&' separates cells; "\&" is text */
            int seps = 0;
            for (size_t i = 0; i < n; i++)
                if (buf[i] == '&' && (i == 0 || buf[i - 1] != '\\')) seps++;
            if (seps != ncols - 1)
                fail_msg("%s: row '%s' has %d separators, want %d", path, buf, seps, ncols - 1);
            assert_true(n >= 2 && !strcmp(buf + n - 2, "\\\\"));
            rows++;
        }
        line = end + 1;
    }
    free(t);
    return rows - 1; /* the header */
}

/* TSV: comment lines, then a header and rows of the same number of tab-separated fields.
 * Returns the number of data rows. */
static int check_tsv(const char *path) {
    char *t = test_read_file(path, NULL);
    int width = -1, rows = 0;
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        int w = 1 + count_of(line, "\t");
        if (width < 0)
            width = w;
        else if (w != width)
            fail_msg("%s: a row of %d fields under a header of %d: %s", path, w, width, line);
        else
            rows++;
    }
    free(t);
    assert_true(width >= 2);
    return rows;
}

/* A Markdown pipe table: the header, the alignment row, then rows with as many '|' (outside
 * escapes) as the header. */
static void check_markdown(const char *path) {
    char *t = test_read_file(path, NULL);
    assert_non_null(strstr(t, "|:---|"));
    int bars = -1, rows = 0;
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] != '|') continue;
        int b = 0;
        for (size_t i = 0; line[i]; i++)
            if (line[i] == '|' && (i == 0 || line[i - 1] != '\\')) b++;
        if (bars < 0) bars = b;
        assert_int_equal(b, bars);
        rows++;
    }
    assert_true(rows >= 3);
    free(t);
}

/* The three forms of table `name` in out/, each parsed; returns the body rows (equal in all). */
static int check_table(const char *name) {
    char tex[512], md[512], tsv[512];
    snprintf(tex, sizeof tex, "out/%s.tex", name);
    snprintf(md, sizeof md, "out/%s.md", name);
    snprintf(tsv, sizeof tsv, "out/%s.tsv", name);
    int a = check_latex(tex), b = check_tsv(tsv);
    check_markdown(md);
    assert_int_equal(a, b);
    assert_true(a >= 1);
    return a;
}

static void check_figure(const char *base) {
    char p[512];
    snprintf(p, sizeof p, "out/%s.tsv", base);
    if (!test_file_exists(p)) fail_msg("missing figure data %s", p);
    snprintf(p, sizeof p, "out/%s.gp", base);
    assert_true(test_file_exists(p));
    snprintf(p, sizeof p, "out/%s.png", base);
    assert_true(test_file_exists(p));
}

/* Runs a script (twice: the second run must record nothing new) and checks its results file:
 * at least min_runs runs, the dense one among them, finite perplexities. */
static char *run_script(const char *name, const char *extra, size_t min_runs) {
    char args[2048], *out = NULL, h5[512];
    snprintf(args, sizeof args, "run %s/experiments/paper/%s.lua " TINY " %s", CCE_SOURCE_DIR, name,
             extra);
    int rc = test_run_cce(args, &out);
    if (rc != 0) fail_msg("%s failed (%d):\n%s", name, rc, out);
    snprintf(h5, sizeof h5, "out/%s.h5", name);
    cce_results_runs runs = {0};
    assert_cce_ok(cce_results_read(h5, &runs));
    if (runs.n < min_runs) fail_msg("%s: %zu runs, want at least %zu", name, runs.n, min_runs);
    int dense = 0;
    for (size_t i = 0; i < runs.n; i++) {
        const char *s = cce_run_attr(&runs.runs[i], "strategy");
        assert_non_null(s);
        if (!strcmp(s, "dense")) dense++;
        for (size_t k = 0; k < runs.runs[i].n_metrics; k++)
            if (!strcmp(runs.runs[i].metric_names[k], "ppl"))
                assert_true(isfinite(runs.runs[i].metric_values[k]) &&
                            runs.runs[i].metric_values[k] > 1);
    }
    assert_int_equal(dense, 1);
    size_t n = runs.n;
    cce_results_runs_free(&runs);
    /* resume: everything is skipped */
    char *again = NULL;
    assert_int_equal(test_run_cce(args, &again), 0);
    assert_int_equal(count_of(again, "\nrun r"), 0);
    assert_true(count_of(again, "skip ") >= 1);
    assert_cce_ok(cce_results_read(h5, &runs));
    assert_int_equal(runs.n, n);
    cce_results_runs_free(&runs);
    free(again);
    /* `cce table` reads the file */
    char *tab = NULL;
    snprintf(args, sizeof args, "table %s --format latex", h5);
    assert_int_equal(test_run_cce(args, &tab), 0);
    assert_non_null(strstr(tab, "\\begin{tabular}"));
    free(tab);
    return out;
}

static void test_cce_vs_baselines(void **state) {
    (void)state;
    char *out = run_script("cce_vs_baselines", "", 12);
    assert_non_null(strstr(out, "claim CCE beats magnitude structured"));
    assert_non_null(strstr(out, "claim CCE (fold) beats CCE without folding"));
    /* a strategy or figure kind this build lacks is skipped with a line that says so */
    check_table("cce_vs_baselines");
    assert_true(check_table("cce_vs_baselines_claims") >= 2);
    char *tex = test_read_file("out/cce_vs_baselines.tex", NULL);
    assert_non_null(strstr(tex, "Wanda (no dense speedup)"));
    assert_non_null(strstr(tex, "CCE, no folding"));
    assert_non_null(strstr(tex, "$\\pm$"));
    free(tex);
    check_figure("cce_vs_baselines_ppl_vs_budget");
    check_figure("cce_vs_baselines_ppl_vs_ratio");
    free(out);
}

static void test_cce_vs_quant(void **state) {
    (void)state;
    char *out = run_script("cce_vs_quant", "", 6);
    check_table("cce_vs_quant");
    check_table("cce_vs_quant_pairs");
    char *md = test_read_file("out/cce_vs_quant.md", NULL);
    assert_non_null(strstr(md, "CCE 20.0% + RTN 8-bit"));
    assert_non_null(strstr(md, "GPTQ 4-bit"));
    free(md);
    check_figure("cce_vs_quant_ppl_vs_bits");
    free(out);
}

static void test_layer_ratios(void **state) {
    (void)state;
    char *out = run_script("layer_ratios", "", 4);
    /* the synthetic model has 2 layers: no middle, and the script says so */
    assert_non_null(strstr(out, "n/a: fewer than 3 layers"));
    assert_int_equal(check_table("layer_ratios"), 2); /* one budget x 2 layers */
    check_table("layer_ratios_middle");
    check_figure("layer_ratios_achieved");
    free(out);
}

static void test_sensitivity(void **state) {
    (void)state;
    char *out = run_script("sensitivity", "domains=text.txt,s.txt,a.txt", 8);
    int rows = check_table("sensitivity");
    assert_true(rows >= 9);
    char *md = test_read_file("out/sensitivity.md", NULL);
    assert_non_null(strstr(md, "calib\\_domain"));
    assert_non_null(strstr(md, "(default)"));
    free(md);
    check_figure("sensitivity_calib_tokens");
    free(out);
}

static void test_activation_stability(void **state) {
    (void)state;
    char *out =
        run_script("activation_stability", "alice=a.txt shakespeare=s.txt domain_tokens=1000", 5);
    check_table("activation_stability");
    char *md = test_read_file("out/activation_stability.md", NULL);
    assert_non_null(strstr(md, "alice"));
    assert_non_null(strstr(md, "shakespeare"));
    free(md);
    check_figure("activation_stability_act_stats");
    free(out);
}

static void test_efficiency(void **state) {
    (void)state;
    char *out = run_script("efficiency", "", 6);
    assert_int_equal(check_table("efficiency") >= 6, 1);
    assert_true(test_file_exists("out/efficiency_model_dense.h5"));
    assert_true(test_file_exists("out/efficiency_model_cce_20.h5"));
    /* the measurement lines: positive sizes and speeds */
    const char *p = strstr(out, "measured dense");
    assert_non_null(p);
    double kib = 0, mib = 0, ev = 0, gen = 0;
    assert_int_equal(sscanf(strstr(p, "file"), "file %lf KiB peak %lf MiB eval %lf tok/s gen %lf",
                            &kib, &mib, &ev, &gen),
                     4);
    assert_true(kib > 10 && mib > 1 && ev > 0 && gen > 0);
    free(out);
}

/* cce.write_table and cce.render_table. */
static void test_table_bindings(void **state) {
    (void)state;
    char *out = NULL;
    script("tables.lua",
           "local t = cce.write_table{columns = {'name_x', 'ppl', 'Δ'}, rows = {\n"
           "  {'a & b', 4.25, {text = '+0.1 ± 0.02', bold = true, dagger = true}},\n"
           "  {'50%% ρ', 7, '-'}}, note = 'α = 0.5', out = 'out/t1.tex'}\n"
           "print(t)\n"
           "print(cce.write_table{columns = {'a', 'b'}, rows = {{'x|y', {text = 1.5, "
           "bold = true}}}, format = 'markdown'})\n"
           "print(cce.write_table{columns = {'a', 'b'}, rows = {{'x\\ty', 2}}, format = 'tsv', "
           "note = 'n'})\n"
           "local ok, e = pcall(cce.write_table, {columns = {'a', 'b'}, rows = {{'x'}}})\n"
           "print('E1', e)\n"
           "ok, e = pcall(cce.write_table, {columns = {'a'}, rows = {{'x'}}, out = 'out/../x "
           "y.tex'})\n"
           "print('E2', e)\n"
           "ok, e = pcall(cce.write_table, {columns = {'a'}, rows = {{true}}})\n"
           "print('E3', e)\n"
           "ok, e = pcall(cce.write_table, {columns = {'a'}, rows = {}, format = 'html'})\n"
           "print('E4', e)\n"
           "local r = cce.render_table('out/cce_vs_quant.h5', {format = 'markdown', out = "
           "'out/r.md'})\n"
           "print('R', #r)\n"
           "ok, e = pcall(cce.render_table, 'out/nope.h5')\n"
           "print('E5', e)\n");
    assert_int_equal(test_run_cce("run tables.lua", &out), 0);
    assert_non_null(strstr(out, "name\\_x & ppl & $\\Delta$ \\\\"));
    assert_non_null(strstr(out, "a \\& b & 4.25 & \\textbf{+0.1 $\\pm$ 0.02}$^\\dagger$ \\\\"));
    assert_non_null(strstr(out, "50\\% $\\rho$ & 7 & - \\\\"));
    assert_non_null(strstr(out, "% $\\alpha$ = 0.5"));
    assert_non_null(strstr(out, "| x\\|y | **1.5** |"));
    assert_non_null(strstr(out, "# n\na\tb\nx y\t2\n"));
    assert_non_null(
        strstr(out, "E1\ttables.lua:7: cce.write_table: rows[1] has 1 cells, the table 2 columns"));
    assert_non_null(strstr(out, "E2\ttables.lua:9: cce.write_table: out = 'out/../x y.tex'"));
    assert_non_null(strstr(out, "E3\ttables.lua:11: cce.write_table: rows[1][1]"));
    assert_non_null(strstr(out, "E4\ttables.lua:13: cce.write_table: format = 'html'"));
    assert_non_null(strstr(out, "E5\ttables.lua:17: cce.render_table: out/nope.h5"));
    check_latex("out/t1.tex");
    /* render_table gives what `cce table` prints */
    char *cli = NULL, *lua = test_read_file("out/r.md", NULL);
    assert_int_equal(test_run_cce("table out/cce_vs_quant.h5 --format markdown", &cli), 0);
    assert_string_equal(cli, lua);
    free(cli);
    free(lua);
    free(out);
}

/* cce.bench_server: a measurement of a saved model in a fresh process; errors. */
static void test_bench_server(void **state) {
    (void)state;
    char *out = NULL;
    script("bench.lua",
           "local srv = cce.bench_server()\n"
           "local m = cce.synth{seed = 3}\n"
           "m:save('out/b.h5')\n"
           "local r = srv:measure{model = 'out/b.h5', window_reps = 1, gen_tokens = 8, gen_reps "
           "= 1, stream_reps = 1}\n"
           "print(string.format('P %%d %%d %%d %%d', r.params, m:info().params, r.window, "
           "r.gen_tokens))\n"
           "print('F', r.file_bytes > 1000, r.peak_rss_kb > r.baseline_rss_kb, r.eval_tok_s > 0, "
           "r.gen_tok_s > 0, r.model_rss_kb == r.peak_rss_kb - r.baseline_rss_kb)\n"
           "local ok, e = pcall(srv.measure, srv, {model = 'out/none.h5'})\n"
           "print('E1', e)\n"
           "ok, e = pcall(srv.measure, srv, {model = 'text.txt'})\n"
           "print('E2', ok)\n"
           "r = srv:measure{model = 'out/b.h5', window_reps = 1, gen_tokens = 4, gen_reps = 1, "
           "stream_reps = 1, threads = 1}\n"
           "print('again', r.params)\n"
           "srv:close()\n"
           "ok, e = pcall(srv.measure, srv, {model = 'out/b.h5'})\n"
           "print('E3', e)\n"
           "m:eval{data = cce.dataset('text.txt'), max_tokens = 200}\n"
           "ok, e = pcall(cce.bench_server)\n"
           "print('E4', ok, e)\n");
    assert_int_equal(test_run_cce("run bench.lua", &out), 0);
    int params = 0, info_params = 0, window = 0, gen = 0;
    const char *p = strstr(out, "P ");
    assert_non_null(p);
    assert_int_equal(sscanf(p, "P %d %d %d %d", &params, &info_params, &window, &gen), 4);
    assert_int_equal(params, info_params);
    assert_int_equal(window, 64);
    assert_int_equal(gen, 8);
    assert_non_null(strstr(out, "F\ttrue\ttrue\ttrue\ttrue\ttrue"));
    assert_non_null(strstr(out, "E1\tbench.lua:7: srv:measure: out/none.h5: No such file"));
    assert_non_null(strstr(out, "E2\tfalse"));
    assert_non_null(strstr(out, "again\t"));
    assert_non_null(strstr(out, "E3\tbench.lua:14: bench server is closed"));
    /* after an evaluation an OpenMP pool may exist; then the server is refused with a reason
     * (with one thread it is allowed: either way no crash) */
    const char *e4 = strstr(out, "E4\t");
    assert_non_null(e4);
    if (!strncmp(e4, "E4\tfalse", 8)) assert_non_null(strstr(e4, "make the server first"));
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cce_vs_baselines),     cmocka_unit_test(test_cce_vs_quant),
        cmocka_unit_test(test_layer_ratios),         cmocka_unit_test(test_sensitivity),
        cmocka_unit_test(test_activation_stability), cmocka_unit_test(test_efficiency),
        cmocka_unit_test(test_table_bindings),       cmocka_unit_test(test_bench_server),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
