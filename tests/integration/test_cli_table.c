/* cce table (framework/table_render.h): booktabs LaTeX with the best value per column in bold,
 * Markdown, TSV; summary and layers kinds; bad input. The results file is made here through the
 * C results API. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "results.h"
#include "table_render.h"
#include "test_support.h"

typedef struct fixture_run {
    const char *key, *strategy, *params;
    double ppl, kl, byte_ratio, bits, acc;
    double keep;
} fixture_run;

static const fixture_run RUNS[] = {
    {"dense", "dense", "[]", 4.0, 0.0, 0.0, 32.0, 0.7, 1.0},
    {"mag50", "magnitude", "[{\"strategy\":\"magnitude\",\"params\":{\"ratio\":0.5}}]", 35.25, 2.2,
     0.467, 17.0, 0.4, 0.5},
    {"rtn4", "rtn", "[{\"strategy\":\"rtn\",\"params\":{\"bits\":4}}]", 4.5, 0.12, 0.864, 4.34,
     0.65, 0.25},
    {"wanda_x", "wanda_x", "[{\"strategy\":\"wanda_x\",\"params\":{\"ratio\":0.3}}]", 5.4, 0.27,
     0.265, 23.5, 0.69, 0.7},
};
#define NRUNS (sizeof RUNS / sizeof RUNS[0])

static const char *make_results(const char *dir) {
    static char path[4200];
    snprintf(path, sizeof path, "%s/res.h5", dir);
    cce_results *r;
    assert_cce_ok(cce_results_open(path, &r));
    for (size_t i = 0; i < NRUNS; i++) {
        const fixture_run *f = &RUNS[i];
        const char *names[] = {"ppl",        "ppl_stderr",       "kl",
                               "byte_ratio", "bits_per_weight",  "top1",
                               "cloze_acc",  "cloze_acc_stderr", "dnll_vs_dense_sig"};
        double values[] = {f->ppl,        f->ppl / 40, f->kl,
                           f->byte_ratio, f->bits,     0.6 - f->kl / 10,
                           f->acc,        0.02,        strcmp(f->key, "mag50") == 0 ? 1 : 0};
        cce_report rep;
        cce_report_init(&rep);
        for (int l = 0; l < 2 && f->keep < 1; l++) {
            cce_report_row row;
            cce_report_row_init(&row, f->strategy, l, "q");
            row.params_before = 1000;
            row.params_after = (int64_t)(1000 * f->keep);
            row.bytes_before = 4000;
            row.bytes_after = (int64_t)(4000 * f->keep);
            row.sparsity = 1 - f->keep;
            row.rel_fro_error = 0.2 * (1 - f->keep) + 0.01 * l;
            assert_cce_ok(cce_report_add(&rep, &row));
        }
        cce_run_record rec = {
            .key = f->key,
            .experiment = "fixture",
            .strategy = f->strategy,
            .params_json = f->params,
            .plan_json = "{}",
            .protocol = "protocol: ctx=512",
            .model = "toymodel",
            .dataset = "toydata",
            .n_metrics = 9,
            .metric_names = names,
            .metric_values = values,
            .layers = rep.n ? &rep : NULL,
        };
        assert_cce_ok(cce_results_add(r, &rec, NULL));
        cce_report_clear(&rep);
    }
    cce_results_close(r);
    return path;
}

static char *render(const char *res, cce_table_kind kind, const char *filter,
                    cce_table_format fmt) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    assert_cce_ok(cce_table_render(res, kind, filter, fmt, f));
    fclose(f);
    return text;
}

/* The line of text that contains needle. */
static char *line_with(const char *text, const char *needle) {
    const char *p = strstr(text, needle);
    if (!p) fail_msg("no line with '%s' in:\n%s", needle, text);
    while (p > text && p[-1] != '\n') p--;
    size_t n = strcspn(p, "\n");
    char *line = malloc(n + 1);
    memcpy(line, p, n);
    line[n] = '\0';
    return line;
}

static void test_latex(void **state) {
    (void)state;
    const char *res = make_results(test_scratch_dir("table_latex"));
    char *t = render(res, CCE_TABLE_SUMMARY, NULL, CCE_TABLE_LATEX);
    assert_non_null(strstr(t, "\\begin{tabular}{lllrrrrrrr}"));
    assert_non_null(strstr(t, "\\toprule\n"));
    assert_non_null(strstr(t, "\\midrule\n"));
    assert_non_null(strstr(t, "\\bottomrule\n\\end{tabular}\n"));
    assert_non_null(strstr(t, "Compr. \\%"));
    assert_non_null(strstr(t, "wanda\\_x")); /* escaped */
    /* best among compressed runs: rtn has the lowest ppl, kl, bits and the highest compression */
    char *rtn = line_with(t, "r000003 & rtn");
    assert_non_null(strstr(rtn, "\\textbf{4.500 $\\pm$ 0.113}"));
    assert_non_null(strstr(rtn, "\\textbf{86.40}"));
    assert_non_null(strstr(rtn, "\\textbf{4.340}"));
    assert_non_null(strstr(rtn, "\\textbf{0.120}"));
    free(rtn);
    /* the dense row never bold (its ppl 4.0 is lower than rtn's) */
    char *dense = line_with(t, "r000001 & dense");
    assert_null(strstr(dense, "\\textbf"));
    free(dense);
    /* accuracy: wanda_x has the best (0.69 > 0.65 > 0.4); magnitude nothing */
    char *w = line_with(t, "r000004 & wanda");
    assert_non_null(strstr(w, "\\textbf{69.00 $\\pm$ 2.000}"));
    free(w);
    char *m = line_with(t, "r000002 & magnitude");
    assert_null(strstr(m, "\\textbf"));
    /* its Δppl is significant (dnll_vs_dense_sig = 1), rtn's is not */
    assert_non_null(strstr(m, "31.25$^\\dagger$"));
    free(m);
    char *r3 = line_with(t, "r000003 & rtn");
    assert_null(strstr(r3, "dagger"));
    free(r3);
    assert_non_null(strstr(t, "% $^\\dagger$: the paired bootstrap"));
    free(t);
}

static void test_markdown_and_tsv(void **state) {
    (void)state;
    const char *res = make_results(test_scratch_dir("table_md"));
    char *t = render(res, CCE_TABLE_SUMMARY, NULL, CCE_TABLE_MARKDOWN);
    assert_true(strncmp(t, "| Run | Strategy | Target | Compr. % |", 37) == 0);
    assert_non_null(strstr(t, "\n|:---|:---|:---|---:|"));
    char *rtn = line_with(t, "| r000003 | rtn |");
    assert_non_null(strstr(rtn, "| **4.500 ± 0.113** |"));
    assert_non_null(strstr(rtn, "| bits=4 |"));
    free(rtn);
    assert_non_null(strstr(t, "wanda\\_x"));
    free(t);

    t = render(res, CCE_TABLE_SUMMARY, "strategy!=dense", CCE_TABLE_TSV);
    assert_true(strncmp(t, "# cce table --kind summary from ", 32) == 0);
    assert_non_null(
        strstr(t, "\nrun\tstrategy\ttarget\tbyte_ratio\tbits_per_weight\tppl\t"
                  "ppl_stderr\tdppl\tdppl_significant\tkl\ttop1\tcloze_acc\tcloze_acc_stderr\t"
                  "cloze_acc_significant\n"));
    assert_null(strstr(t, "r000001"));
    /* full precision, no bold; Δppl against the dense run even when it is filtered out */
    assert_non_null(strstr(t, "r000002\tmagnitude\tratio=0.5\t0.467\t17\t35.25\t0.88125\t31.25\t"));
    assert_null(strstr(t, "**"));
    free(t);

    t = render(res, CCE_TABLE_LAYERS, NULL, CCE_TABLE_MARKDOWN);
    assert_non_null(strstr(t, "| Layer |"));
    char *l1 = line_with(t, "| r000002 | magnitude ratio=0.5 | 1 |");
    assert_non_null(strstr(l1, "| 50.00 |")); /* compression and sparsity */
    free(l1);
    /* lowest error: wanda_x layer 0 (0.06) */
    char *w0 = line_with(t, "| r000004 | wanda\\_x ratio=0.3 | 0 |");
    assert_non_null(strstr(w0, "**0.060**"));
    free(w0);
    free(t);
}

static void test_cli(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("table_cli");
    char d[4200];
    snprintf(d, sizeof d, "%s", dir);
    const char *res = make_results(d);
    char args[9000], *out = NULL;
    snprintf(args, sizeof args, "table '%s' --kind summary --format latex", res);
    int rc = test_run_cce(args, &out);
    if (rc) fail_msg("cce table: %d: %s", rc, out);
    assert_non_null(strstr(out, "\\toprule"));
    free(out);
    snprintf(args, sizeof args, "table '%s' --kind layers --format tsv -o '%s/l.tsv'", res, d);
    assert_int_equal(test_run_cce(args, NULL), 0);
    char *tsv = test_read_file(test_path(d, "l.tsv"), NULL);
    assert_non_null(tsv);
    assert_non_null(strstr(tsv, "# cce table --kind layers"));
    free(tsv);
    snprintf(args, sizeof args, "table '%s' --kind nope", res);
    assert_int_equal(test_run_cce(args, &out), 2);
    assert_non_null(strstr(out, "summary or layers"));
    free(out);
    snprintf(args, sizeof args, "table '%s' --runs strategy=gptq", res);
    assert_int_equal(test_run_cce(args, &out), 1);
    assert_non_null(strstr(out, "matches none"));
    free(out);
    /* a results file with no runs */
    char empty[4300];
    snprintf(empty, sizeof empty, "%s/empty.h5", d);
    cce_results *r;
    assert_cce_ok(cce_results_open(empty, &r));
    cce_results_close(r);
    snprintf(args, sizeof args, "table '%s'", empty);
    assert_int_equal(test_run_cce(args, &out), 1);
    assert_non_null(strstr(out, "no runs"));
    free(out);
    /* layers of runs without a layers table */
    snprintf(args, sizeof args, "table '%s' --kind layers --runs dense", res);
    assert_int_equal(test_run_cce(args, &out), 1);
    assert_non_null(strstr(out, "layers table"));
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_latex),
        cmocka_unit_test(test_markdown_and_tsv),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
