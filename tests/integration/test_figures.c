/* Figures from results files (framework/figure.h, cce plot): every figure kind renders from a
 * small hand-made results file (runs, layers, "weights" and "activations" tables written through
 * the C results API); the .gp reruns cleanly in gnuplot; the PNG and PDF are valid; the .tsv holds
 * the numbers of the results file; bad input gives clear messages. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../strategies/cce_report.h"
#include "astats.h"
#include "cce_lua.h"
#include "figure.h"
#include "results.h"
#include "test_support.h"
#include "wstats.h"

#define BINS 8

/* a and b agree within tol (NaN never agrees). */
#define assert_double_equal(a, b, tol)                                                             \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        if (!(fabs(a_ - b_) <= (tol))) fail_msg("%s = %.17g, expected %.17g", #a, a_, b_);         \
    } while (0)
#define NLAYERS 3

/* A report row of a compressed tensor. */
static void add_layer_row(cce_report *r, const char *strategy, int layer, const char *tensor,
                          double keep) {
    cce_report_row row;
    cce_report_row_init(&row, strategy, layer, tensor);
    row.params_before = 1000;
    row.params_after = (int64_t)(1000 * keep);
    row.bytes_before = 4000;
    row.bytes_after = (int64_t)(4000 * keep) + 10 * layer;
    row.bits_per_weight = 8.0 * (double)row.bytes_after / 1000;
    row.sparsity = 1 - keep;
    row.rel_fro_error = 0.1 * (1 - keep) + 0.01 * layer;
    assert_cce_ok(cce_report_add(r, &row));
}

/* The activations table of a run: two domains, every layer and both sites; the histogram of
 * (domain, layer, site) is shifted by `shift` bins against the dense one. */
static cce_table *make_acts(double shift, double cos_drop) {
    cce_table *t;
    assert_cce_ok(cce_astats_table_new(BINS, &t));
    const char *domains[] = {"dom_a", "dom_b"};
    for (int d = 0; d < 2; d++)
        for (int l = 0; l < NLAYERS; l++)
            for (int s = 0; s < 2; s++) {
                size_t row;
                assert_cce_ok(cce_table_add_row(t, &row));
                double h[BINS];
                int64_t total = 0;
                for (int b = 0; b < BINS; b++) {
                    double x = b - 3.5 - shift;
                    h[b] = floor(1000 * exp(-x * x / 4)) + 1;
                    total += (int64_t)h[b];
                }
                assert_cce_ok(cce_table_set_str(t, row, cce_table_column(t, "domain"), domains[d]));
                assert_cce_ok(cce_table_set_i64(t, row, cce_table_column(t, "layer"), l));
                assert_cce_ok(cce_table_set_str(t, row, cce_table_column(t, "site"),
                                                s ? "ffn_act" : "block_out"));
                assert_cce_ok(cce_table_set_i64(t, row, cce_table_column(t, "count"), total));
                assert_cce_ok(cce_table_set_vec(t, row, cce_table_column(t, "hist"), h));
                assert_cce_ok(cce_table_set_f64(t, row, cce_table_column(t, "hist_lo"), -4));
                assert_cce_ok(cce_table_set_f64(t, row, cce_table_column(t, "hist_hi"), 4));
                assert_cce_ok(cce_table_set_f64(t, row, cce_table_column(t, "cosine"),
                                                1 - cos_drop * (l + 1) - 0.01 * d));
                assert_cce_ok(cce_table_set_f64(t, row, cce_table_column(t, "rel_l2"),
                                                2 * cos_drop * (l + 1)));
                assert_cce_ok(cce_table_set_f64(t, row, cce_table_column(t, "excess_kurtosis"),
                                                1.0 + shift * l));
                assert_cce_ok(
                    cce_table_set_f64(t, row, cce_table_column(t, "ref_excess_kurtosis"), 1.0));
            }
    return t;
}

/* The weights table of a run: q and k of every layer, after = before scaled by keep. */
static cce_table *make_weights(double keep) {
    cce_wstats_options o = {.bins = BINS};
    cce_table *t;
    assert_cce_ok(cce_wstats_table_new(&o, &t));
    const char *tensors[] = {"q", "k"};
    for (int l = 0; l < NLAYERS; l++)
        for (int k = 0; k < 2; k++) {
            size_t row;
            assert_cce_ok(cce_table_add_row(t, &row));
            double hb[BINS], ha[BINS], edges[BINS + 1];
            for (int b = 0; b < BINS; b++) {
                double x = b - 3.5;
                hb[b] = floor(500 * exp(-x * x / 3)) + 2;
                ha[b] = floor(hb[b] * keep);
            }
            ha[BINS / 2] += 250 * (1 - keep) * 2; /* pruned weights at 0 */
            for (int b = 0; b <= BINS; b++) edges[b] = -0.4 + 0.1 * b;
            assert_cce_ok(cce_table_set_i64(t, row, cce_table_column(t, "layer"), l));
            assert_cce_ok(cce_table_set_str(t, row, cce_table_column(t, "tensor"), tensors[k]));
            assert_cce_ok(cce_table_set_i64(t, row, cce_table_column(t, "rows"), 25));
            assert_cce_ok(cce_table_set_i64(t, row, cce_table_column(t, "cols"), 40));
            assert_cce_ok(cce_table_set_f64(t, row, cce_table_column(t, "hist_lo"), -0.4));
            assert_cce_ok(cce_table_set_f64(t, row, cce_table_column(t, "hist_hi"), 0.4));
            assert_cce_ok(cce_table_set_vec(t, row, cce_table_column(t, "hist_before"), hb));
            assert_cce_ok(cce_table_set_vec(t, row, cce_table_column(t, "hist_after"), ha));
            assert_cce_ok(cce_table_set_vec(t, row, cce_table_column(t, "edges"), edges));
        }
    return t;
}

typedef struct fixture_run {
    const char *key, *strategy, *params;
    double ppl, ppl_stderr, kl, byte_ratio, bits;
    int only_layer; /* -2: no layers; -1: every layer; else that layer only */
    double keep;
    int tables;
} fixture_run;

static const fixture_run RUNS[] = {
    {"dense", "dense", "[]", 4.0, 0.1, 0.0, 0.0, 32.0, -2, 1.0, 1},
    {"mag50", "magnitude", "[{\"strategy\":\"magnitude\",\"params\":{\"ratio\":0.5}}]", 35.25, 0.9,
     2.2, 0.467, 17.0, -1, 0.5, 1},
    {"rtn4", "rtn", "[{\"strategy\":\"rtn\",\"params\":{\"bits\":4}}]", 4.5, 0.11, 0.12, 0.864,
     4.34, -1, 0.25, 1},
    {"mag30", "magnitude", "[{\"strategy\":\"magnitude\",\"params\":{\"ratio\":0.3}}]", 5.4, 0.12,
     0.27, 0.265, 23.5, -1, 0.7, 0},
    {"mag50_l0", "magnitude", "[{\"strategy\":\"magnitude\",\"params\":{\"ratio\":0.5}}]", 7.5, 0.2,
     0.5, 0.15, 27, 0, 0.5, 0},
    {"mag50_l1", "magnitude", "[{\"strategy\":\"magnitude\",\"params\":{\"ratio\":0.5}}]", 6.25,
     0.2, 0.4, 0.15, 27, 1, 0.5, 0},
    {"mag30_l1", "magnitude", "[{\"strategy\":\"magnitude\",\"params\":{\"ratio\":0.3}}]", 4.75,
     0.2, 0.1, 0.1, 29, 1, 0.7, 0},
};
#define NRUNS (sizeof RUNS / sizeof RUNS[0])

static const char *make_results(const char *dir) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/res.h5", dir);
    cce_results *r;
    assert_cce_ok(cce_results_open(path, &r));
    for (size_t i = 0; i < NRUNS; i++) {
        const fixture_run *f = &RUNS[i];
        const char *names[] = {"ppl",        "ppl_stderr",      "kl",   "kl_stderr",
                               "byte_ratio", "bits_per_weight", "top1", "dnll_vs_dense_sig"};
        /* rtn 4-bit is the one run whose ΔNLL to dense is not significant (and dense itself) */
        double sig = !strcmp(f->strategy, "dense") || !strcmp(f->key, "rtn4") ? 0 : 1;
        double values[] = {f->ppl,  f->ppl_stderr,    f->kl, f->kl / 10, f->byte_ratio,
                           f->bits, 0.6 - f->kl / 10, sig};
        cce_report rep;
        cce_report_init(&rep);
        for (int l = 0; l < NLAYERS && f->only_layer >= -1; l++) {
            if (f->only_layer >= 0 && l != f->only_layer) continue;
            add_layer_row(&rep, f->strategy, l, "q", f->keep);
            add_layer_row(&rep, f->strategy, l, "k", f->keep);
        }
        cce_table *tables[2] = {NULL, NULL};
        if (f->tables) {
            tables[0] = make_acts(f->only_layer == -2 ? 0 : 1 - f->keep, 0.1 * (1 - f->keep));
            tables[1] = make_weights(f->keep);
        }
        const cce_table *const ct[2] = {tables[0], tables[1]};
        cce_run_record rec = {
            .key = f->key,
            .experiment = "fixture",
            .strategy = f->strategy,
            .params_json = f->params,
            .plan_json = "{}",
            .seed = 1,
            .protocol = "protocol: window=BOS+511 non-overlapping, ctx=512, scored=7665, "
                        "windows=15, data=toy sha256=abc",
            .model = "toymodel",
            .model_sha256 = "0",
            .dataset = "toydata",
            .dataset_sha256 = "0",
            .n_metrics = 8,
            .metric_names = names,
            .metric_values = values,
            .layers = rep.n ? &rep : NULL,
            .n_tables = f->tables ? 2 : 0,
            .tables = f->tables ? ct : NULL,
        };
        assert_cce_ok(cce_results_add(r, &rec, NULL));
        cce_report_clear(&rep);
        cce_table_free(tables[0]);
        cce_table_free(tables[1]);
    }
    cce_results_close(r);
    return path;
}

static void check_png(const char *path) {
    size_t len;
    unsigned char *p = (unsigned char *)test_read_file(path, &len);
    assert_non_null(p);
    assert_true(len > 2000);
    assert_memory_equal(p, "\x89PNG\r\n\x1a\n", 8);
    /* IHDR width */
    unsigned w = (unsigned)p[16] << 24 | (unsigned)p[17] << 16 | (unsigned)p[18] << 8 | p[19];
    assert_int_equal(w, 900);
    free(p);
}

static void check_pdf(const char *path) {
    size_t len;
    char *p = test_read_file(path, &len);
    assert_non_null(p);
    assert_true(len > 1000);
    assert_memory_equal(p, "%PDF-", 5);
    /* 3.5 in = 252 pt wide */
    assert_non_null(memmem(p, len, "/MediaBox [ 0 0 252 ", 19));
    free(p);
}

/* Runs gnuplot on the figure's .gp in its folder; the script must run without a message. */
static void check_rerun(const char *dir, const char *base) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && gnuplot -e \"formats='png'; outbase='rerun_%s'\" %s.gp > rerun.log 2>&1",
             dir, base, base);
    int rc = system(cmd);
    char *log = test_read_file(test_path(dir, "rerun.log"), NULL);
    if (rc != 0 || (log && *log)) fail_msg("gnuplot %s.gp: rc %d: %s", base, rc, log ? log : "");
    free(log);
    char png[600];
    snprintf(png, sizeof png, "rerun_%s.png", base);
    check_png(test_path(dir, png));
}

/* Adds a run of the cce strategy to the results file at path: its layers rows and the tables
 * cce_layers, cce_ev and cce_scores built (cce_report_tables) from made-up per-layer values. */
static void add_cce_run(const char *path) {
    cce_layer_report reps[NLAYERS];
    memset(reps, 0, sizeof reps);
    cce_report rep;
    cce_report_init(&rep);
    for (int l = 0; l < NLAYERS; l++) {
        cce_layer_report *p = &reps[l];
        assert_cce_ok(cce_layer_report_curves(p, l, 16, 8, 4));
        cce_layer_report_plan(p, 1, 0.3 + 0.1 * l, 0.5, 0.4, 0.2 - 0.05 * l, 0.3 + 0.05 * l,
                              l - 1.0, 0.3 + 0.1 * (l == 1), 1000);
        for (int k = 0; k < 16; k++) p->ev_ffn[k] = 1 - pow(0.7 + 0.05 * l, k + 1);
        p->ev_ffn[15] = 1;
        for (int k = 0; k < 8; k++) p->ev_attn[k] = k == 7 ? 1 : 1 - pow(0.5, k + 1);
        p->r_ffn = 9;
        p->r_attn = 5;
        p->applied = 1;
        p->removed = 300 + 100 * (l == 1);
        p->neurons_kept = 10;
        p->heads_kept = 4;
        for (int m = 0; m < CCE_REPORT_MATS; m++) p->rank[m] = m == 4 ? 3 : -1;
        double score[16];
        for (int j = 0; j < 16; j++) score[j] = pow(10, -3 + 0.2 * j);
        cce_layer_report_scores(p, score, 16, 6);
        add_layer_row(&rep, "cce", l, "gate", 0.6);
    }
    cce_table_list tabs = {0};
    assert_cce_ok(cce_report_tables(reps, NLAYERS, &tabs));
    for (int l = 0; l < NLAYERS; l++) cce_layer_report_clear(&reps[l]);
    assert_int_equal(tabs.n, 3);
    const char *names[] = {"ppl",        "ppl_stderr",      "kl",   "kl_stderr",
                           "byte_ratio", "bits_per_weight", "top1", "dnll_vs_dense_sig"};
    double values[] = {6.5, 0.15, 0.6, 0.06, 0.33, 21.3, 0.5, 1};
    cce_run_record rec = {
        .key = "cce33",
        .experiment = "fixture",
        .strategy = "cce",
        .params_json = "[{\"strategy\":\"cce\",\"params\":{\"ratio\":0.33,\"eps\":0.05}}]",
        .plan_json = "{}",
        .protocol = "protocol: window=BOS+511 non-overlapping, ctx=512, scored=7665, "
                    "windows=15, data=toy sha256=abc",
        .model = "toymodel",
        .dataset = "toydata",
        .n_metrics = 8,
        .metric_names = names,
        .metric_values = values,
        .layers = &rep,
        .n_tables = tabs.n,
        .tables = (const cce_table *const *)tabs.tables,
    };
    cce_results *r;
    assert_cce_ok(cce_results_open(path, &r));
    assert_cce_ok(cce_results_add(r, &rec, NULL));
    cce_results_close(r);
    cce_table_list_clear(&tabs);
    cce_report_clear(&rep);
}

static void test_every_kind_renders(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("figures_all");
    char d[4096];
    snprintf(d, sizeof d, "%s", dir);
    const char *res = make_results(d);
    add_cce_run(res); /* for the cce_* kinds */
    char out[4200];
    snprintf(out, sizeof out, "%s/out", d);
    for (const char *const *k = cce_figure_kinds(); *k; k++) {
        cce_figure_options o = {.out_dir = out, .formats = CCE_FIG_PNG | CCE_FIG_PDF};
        cce_figure_files f;
        cce_status s = cce_figure_make(res, *k, &o, &f);
        if (s) fail_msg("figure %s: %s", *k, cce_error_detail());
        assert_non_null(f.tsv);
        assert_non_null(f.gp);
        check_png(f.png);
        check_pdf(f.pdf);
        char *gp = test_read_file(f.gp, NULL);
        assert_non_null(strstr(gp, "toymodel on toydata")); /* caption */
        assert_non_null(strstr(gp, "style_colors"));        /* style inlined */
        assert_null(strstr(gp, "load \"style.gp\""));
        free(gp);
        check_rerun(out, *k);
        cce_figure_files_clear(&f);
    }
    /* the file names and only those */
    assert_true(test_file_exists(test_path(out, "ppl_vs_ratio.tsv")));
    assert_true(test_file_exists(test_path(out, "weight_dist.pdf")));
}

/* The value of column col of the first data row whose first fields are `prefix`. */
static double tsv_value(const char *tsv, const char *prefix, int col) {
    for (const char *line = tsv; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, prefix, strlen(prefix)) != 0) continue;
        const char *p = line;
        for (int c = 0; c < col; c++) {
            p = strchr(p, '\t');
            if (!p) return NAN;
            p++;
        }
        return strtod(p, NULL);
    }
    return NAN;
}

static void test_tsv_holds_the_numbers(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("figures_tsv");
    char d[4096];
    snprintf(d, sizeof d, "%s", dir);
    const char *res = make_results(d);
    char *tsv, *vars, *cap;
    assert_cce_ok(cce_figure_data(res, "ppl_vs_ratio", NULL, &tsv, &vars, &cap));
    /* magnitude ratio 0.5: byte_ratio 0.467, ppl 35.25 ± 0.9 (first columns) */
    assert_double_equal(tsv_value(tsv, "magnitude\t0.467\t", 2), 35.25, 0);
    assert_double_equal(tsv_value(tsv, "magnitude\t0.467\t", 3), 0.9, 0);
    assert_double_equal(tsv_value(tsv, "rtn\t0.864\t", 2), 4.5, 0);
    assert_non_null(strstr(tsv, "# caption: toymodel on toydata"));
    assert_non_null(strstr(vars, "blocks = \"dense magnitude rtn\""));
    assert_non_null(strstr(vars, "logy = 0"));
    /* the run whose ΔNLL to dense is not significant is listed again for its ring */
    assert_non_null(strstr(vars, "nsame = 1"));
    const char *ring = strstr(tsv, "not_significant\tbyte_ratio\tppl\tkl\trun\n");
    assert_non_null(ring);
    assert_double_equal(tsv_value(ring + 1, "not_significant\t0.864", 2), 4.5, 0);
    free(tsv), free(vars), free(cap);

    /* Pareto front: dense (32 bits, 4.0) is beaten on bits by rtn (4.34, 4.5) and nothing has
     * fewer bits than rtn; magnitude 0.5 (17 bits, 35.25) is dominated */
    assert_cce_ok(cce_figure_data(res, "ppl_vs_bits", NULL, &tsv, &vars, &cap));
    const char *front = strstr(tsv, "Pareto_front\tbits_per_weight");
    assert_non_null(front);
    assert_double_equal(tsv_value(front + 1, "Pareto_front\t4.34", 2), 4.5, 0);
    assert_double_equal(tsv_value(front + 1, "Pareto_front\t32", 2), 4.0, 0);
    assert_null(strstr(front, "Pareto_front\t17\t"));
    free(tsv), free(vars), free(cap);

    /* layer_ratio: 1 - bytes after / before, layer 2 of magnitude 0.5: (4000*0.5 + 20) x 2 */
    assert_cce_ok(cce_figure_data(res, "layer_ratio", NULL, &tsv, &vars, &cap));
    double v = tsv_value(tsv, "2\t", 1);
    assert_double_equal(v, 1 - (2000.0 + 20) / 4000, 1e-9);
    free(tsv), free(vars), free(cap);

    /* heatmap: the single-layer runs, Δppl against dense */
    assert_cce_ok(cce_figure_data(res, "sensitivity_heatmap", NULL, &tsv, &vars, &cap));
    assert_double_equal(tsv_value(tsv, "1\t1\t", 3), 6.25 - 4.0, 1e-12);
    assert_double_equal(tsv_value(tsv, "0\t1\t", 3), 7.5 - 4.0, 1e-12);
    assert_double_equal(tsv_value(tsv, "1\t0\t", 3), 4.75 - 4.0, 1e-12);
    assert_non_null(strstr(vars, "ny = 2"));
    free(tsv), free(vars), free(cap);

    /* act_hist: density = count / (total x width); layer 0 bin 0 of the dense run */
    cce_figure_options o = {.layers = "0"};
    assert_cce_ok(cce_figure_data(res, "act_hist", &o, &tsv, &vars, &cap));
    double total = 0, h0 = floor(1000 * exp(-3.5 * 3.5 / 4)) + 1;
    for (int b = 0; b < BINS; b++) total += floor(1000 * exp(-(b - 3.5) * (b - 3.5) / 4)) + 1;
    assert_double_equal(tsv_value(tsv, "-3.5\t", 1), h0 / (total * 1.0), 1e-9);
    free(tsv), free(vars), free(cap);

    /* act_stats: cosine of magnitude 0.5, domain dom_a, layer 1 = 1 - 0.05 x 2 */
    assert_cce_ok(cce_figure_data(res, "act_stats", NULL, &tsv, &vars, &cap));
    assert_double_equal(tsv_value(tsv, "1\t", 1), 1 - 0.05 * 2, 1e-9);
    assert_non_null(strstr(vars, "domains = \"dom_a dom_b\""));
    free(tsv), free(vars), free(cap);

    /* run filter: strategy and parameter terms */
    o = (cce_figure_options){.runs = "strategy=rtn|dense"};
    assert_cce_ok(cce_figure_data(res, "ppl_vs_ratio", &o, &tsv, &vars, &cap));
    assert_null(strstr(tsv, "magnitude"));
    assert_non_null(strstr(tsv, "rtn\t"));
    free(tsv), free(vars), free(cap);
    o = (cce_figure_options){.runs = "magnitude,ratio=0.3"};
    assert_cce_ok(cce_figure_data(res, "ppl_vs_ratio", &o, &tsv, &vars, &cap));
    assert_null(strstr(tsv, "35.25"));
    assert_non_null(strstr(tsv, "5.4\t"));
    free(tsv), free(vars), free(cap);
}

static void test_bad_input(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("figures_bad");
    char d[4096];
    snprintf(d, sizeof d, "%s", dir);
    char *tsv, *vars, *cap;
    /* a results file with no runs */
    char empty[4200];
    snprintf(empty, sizeof empty, "%s/empty.h5", d);
    cce_results *r;
    assert_cce_ok(cce_results_open(empty, &r));
    cce_results_close(r);
    assert_int_equal(cce_figure_data(empty, "ppl_vs_ratio", NULL, &tsv, &vars, &cap),
                     CCE_ERR_NOT_FOUND);
    assert_non_null(strstr(cce_error_detail(), "no runs"));

    const char *res = make_results(d);
    /* unknown figure: names the figures */
    assert_int_equal(cce_figure_data(res, "pie_chart", NULL, &tsv, &vars, &cap), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "pie_chart"));
    assert_non_null(strstr(cce_error_detail(), "ppl_vs_bits"));
    /* a filter matching nothing */
    cce_figure_options o = {.runs = "strategy=gptq"};
    assert_int_equal(cce_figure_data(res, "ppl_vs_ratio", &o, &tsv, &vars, &cap),
                     CCE_ERR_NOT_FOUND);
    assert_non_null(strstr(cce_error_detail(), "strategy=gptq"));
    assert_non_null(strstr(cce_error_detail(), "magnitude"));
    /* a malformed filter */
    o.runs = "=x";
    assert_int_equal(cce_figure_data(res, "ppl_vs_ratio", &o, &tsv, &vars, &cap), CCE_ERR_ARG);
    /* bad layers */
    o = (cce_figure_options){.layers = "0,9"};
    assert_int_equal(cce_figure_data(res, "act_hist", &o, &tsv, &vars, &cap), CCE_ERR_ARG);

    /* gnuplot missing from PATH: a clear message, the .tsv and .gp written */
    char *old = strdup(getenv("PATH") ? getenv("PATH") : "");
    char nobin[4200];
    snprintf(nobin, sizeof nobin, "%s/nobin", d);
    mkdir(nobin, 0755);
    setenv("PATH", nobin, 1);
    char out[4200];
    snprintf(out, sizeof out, "%s/out", d);
    o = (cce_figure_options){.out_dir = out};
    cce_figure_files f;
    cce_status s = cce_figure_make(res, "ppl_vs_ratio", &o, &f);
    setenv("PATH", old, 1);
    free(old);
    assert_int_equal(s, CCE_ERR_NOT_FOUND);
    assert_non_null(strstr(cce_error_detail(), "gnuplot not found"));
    assert_non_null(strstr(cce_error_detail(), "ppl_vs_ratio.gp"));
    assert_true(test_file_exists(test_path(out, "ppl_vs_ratio.tsv")));
    assert_true(test_file_exists(test_path(out, "ppl_vs_ratio.gp")));
    assert_false(test_file_exists(test_path(out, "ppl_vs_ratio.png")));
    assert_non_null(f.tsv);
    assert_null(f.png);
    cce_figure_files_clear(&f);
}

static void test_cli_plot(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("figures_cli");
    char d[4096];
    snprintf(d, sizeof d, "%s", dir);
    const char *res = make_results(d);
    char args[8192], *out = NULL;
    snprintf(args, sizeof args, "plot '%s' --figure ppl_vs_bits --out '%s/figs' --format png,tex",
             res, d);
    int rc = test_run_cce(args, &out);
    if (rc != 0) fail_msg("cce plot: %d: %s", rc, out);
    free(out);
    char figs[4200];
    snprintf(figs, sizeof figs, "%s/figs", d);
    check_png(test_path(figs, "ppl_vs_bits.png"));
    assert_false(test_file_exists(test_path(figs, "ppl_vs_bits.pdf")));
    char *tex = test_read_file(test_path(figs, "ppl_vs_bits_tex.tex"), NULL);
    assert_non_null(tex);
    assert_non_null(strstr(tex, "ppl_vs_bits_tex"));
    free(tex);
    assert_true(test_file_exists(test_path(figs, "ppl_vs_bits_tex.pdf")));

    snprintf(args, sizeof args, "plot '%s' --figure nope", res);
    assert_int_equal(test_run_cce(args, &out), 2);
    assert_non_null(strstr(out, "unknown figure 'nope'"));
    assert_non_null(strstr(out, "act_hist"));
    free(out);
    snprintf(args, sizeof args, "plot '%s' --figure act_stats --runs 'id=r9*' --out '%s'", res, d);
    assert_int_equal(test_run_cce(args, &out), 1);
    assert_non_null(strstr(out, "matches none"));
    free(out);
    snprintf(args, sizeof args, "plot '%s' --figure layer_ratio --runs dense --out '%s'", res, d);
    assert_int_equal(test_run_cce(args, &out), 1);
    assert_non_null(strstr(out, "layers table"));
    free(out);
}

static void expect_lua(lua_State *L, const char *chunk, cce_status want, const char *needle) {
    char *msg = NULL;
    cce_status s = cce_lua_run_string(L, chunk, "=t", &msg);
    if (s != want || (needle && (!msg || !strstr(msg, needle))))
        fail_msg("%s\n-> status %d, message: %s", chunk, (int)s, msg ? msg : "(none)");
    free(msg);
}

/* cce.plot (lua/lua_figure.c) and cce._figure with variables. */
static void test_lua_plot(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("figures_lua");
    char d[4096];
    snprintf(d, sizeof d, "%s", dir);
    const char *res = make_results(d);
    lua_State *L = NULL;
    assert_cce_ok(cce_lua_new(NULL, &L));
    char chunk[16384];
    snprintf(chunk, sizeof chunk,
             "local cce = require 'cce'\n"
             "local f = cce.plot('%s', 'act_hist', {out = '%s/lua/hist', formats = {'png'},\n"
             "  layers = {0, 2}, runs = 'strategy=dense|rtn', site = 'ffn_act'})\n"
             "assert(f.png == '%s/lua/hist.png' and f.pdf == nil, f.png)\n"
             "assert(f.tsv and f.gp)\n"
             "local g = cce.plot('%s', 'ppl_vs_ratio')\n"
             "assert(g.png == '%s/ppl_vs_ratio.png' and g.pdf)\n",
             res, d, d, res, d);
    expect_lua(L, chunk, CCE_OK, NULL);
    char *tsv = test_read_file(test_path(d, "lua/hist.tsv"), NULL);
    assert_non_null(tsv);
    assert_non_null(strstr(tsv, "site ffn_act"));
    assert_non_null(strstr(tsv, "layer_2\tdense\trtn bits=4\n"));
    assert_null(strstr(tsv, "magnitude"));
    free(tsv);
    snprintf(chunk, sizeof chunk, "require('cce').plot('%s', 'bar_chart')", res);
    expect_lua(L, chunk, CCE_ERR_STATE, "unknown figure 'bar_chart'");
    snprintf(chunk, sizeof chunk, "require('cce').plot('%s', 'ppl_vs_ratio', {formats = 'gif'})",
             res);
    expect_lua(L, chunk, CCE_ERR_STATE, "png, pdf or tex");
    snprintf(chunk, sizeof chunk, "require('cce').plot('%s', 'ppl_vs_ratio', {runs = 'x=y'})", res);
    expect_lua(L, chunk, CCE_ERR_STATE, "matches none");
    /* _figure: variables are numbers and words only, never gnuplot code */
    snprintf(chunk, sizeof chunk,
             "local f = require('cce')._figure{template = 'ppl_vs_ratio', out = '%s/v/x',\n"
             "  data = 'dense\\tbyte_ratio\\tppl\\tppl_stderr\\ndense\\t0\\t5\\t0.1\\n',\n"
             "  vars = {nblocks = 1, logy = 0, blocks = {'dense'}}}\n"
             "assert(f.png)",
             d);
    expect_lua(L, chunk, CCE_OK, NULL);
    char *gp = test_read_file(test_path(d, "v/x.gp"), NULL);
    assert_non_null(gp);
    assert_non_null(strstr(gp, "blocks = \"dense\"\nlogy = 0\nnblocks = 1\n"));
    free(gp);
    snprintf(chunk, sizeof chunk,
             "require('cce')._figure{template = 'ppl_vs_ratio', out = '%s/v/y', data = '',\n"
             "  vars = {logy = 'system(\"touch pwned\")'}}",
             d);
    expect_lua(L, chunk, CCE_ERR_STATE, "words of letters");
    assert_false(test_file_exists(test_path(d, "v/y.gp")));
    cce_lua_close(L);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind_renders), cmocka_unit_test(test_tsv_holds_the_numbers),
        cmocka_unit_test(test_bad_input),          cmocka_unit_test(test_cli_plot),
        cmocka_unit_test(test_lua_plot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
