/* Summary and per-layer tables as booktabs LaTeX, Markdown and TSV (table_render.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "figure_internal.h"
#include "table_render.h"

#define MAX_COLS 32

/* A column: its header, TSV name, meaning, which way is better (-1 lower, +1 higher, 0 text or
 * none) and how numbers print. */
typedef struct tcol {
    char head[64], tsv[64], meaning[160];
    int better;
    double scale; /* shown value = value * scale (percentages) */
    int has_err;  /* the cell shows value ± err */
    int is_text;
    int has_sig; /* the cells may carry a significance mark (tcell.sig) */
} tcol;

typedef struct tcell {
    char text[96]; /* text columns */
    double v, err;
    double sig; /* 1: a significant difference (marked), 0: not, NaN: not tested */
} tcell;

typedef struct grid {
    size_t ncols, nrows, cap;
    tcol cols[MAX_COLS];
    tcell *cells; /* [nrows, MAX_COLS] */
    int *dense;   /* [nrows] row of the dense model (never marked best) */
} grid;

static tcol *add_col(grid *g, const char *head, const char *tsv, int better, double scale,
                     int has_err, const char *meaning) {
    if (g->ncols >= MAX_COLS) return NULL;
    tcol *c = &g->cols[g->ncols++];
    memset(c, 0, sizeof *c);
    snprintf(c->head, sizeof c->head, "%s", head);
    snprintf(c->tsv, sizeof c->tsv, "%.63s", tsv);
    snprintf(c->meaning, sizeof c->meaning, "%.159s", meaning);
    c->better = better;
    c->scale = scale;
    c->has_err = has_err;
    return c;
}

static tcell *add_row(grid *g, int dense) {
    if (g->nrows == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 16;
        tcell *c = realloc(g->cells, cap * MAX_COLS * sizeof *c);
        if (!c) return NULL;
        g->cells = c;
        int *d = realloc(g->dense, cap * sizeof *d);
        if (!d) return NULL;
        g->dense = d;
        g->cap = cap;
    }
    tcell *row = &g->cells[g->nrows * MAX_COLS];
    for (size_t i = 0; i < MAX_COLS; i++) {
        row[i].text[0] = '\0';
        row[i].v = row[i].err = row[i].sig = NAN;
    }
    g->dense[g->nrows++] = dense;
    return row;
}

static void grid_free(grid *g) {
    free(g->cells);
    free(g->dense);
}

/* "4.218", "35.44", "366.6": about four significant digits without an exponent. */
static void fmt_num(double v, char *buf, size_t cap) {
    double a = fabs(v);
    if (isnan(v))
        snprintf(buf, cap, "--");
    else if (a >= 1000)
        snprintf(buf, cap, "%.0f", v);
    else if (a >= 100)
        snprintf(buf, cap, "%.1f", v);
    else if (a >= 10)
        snprintf(buf, cap, "%.2f", v);
    else if (a >= 0.01 || a == 0)
        snprintf(buf, cap, "%.3f", v);
    else
        snprintf(buf, cap, "%.2g", v);
}

/* best[c]: the best shown value of column c (NaN when none or fewer than two values). */
static void find_best(const grid *g, double *best) {
    for (size_t c = 0; c < g->ncols; c++) {
        best[c] = NAN;
        if (!g->cols[c].better) continue;
        size_t n = 0;
        for (size_t r = 0; r < g->nrows; r++) {
            if (g->dense[r]) continue;
            double v = g->cells[r * MAX_COLS + c].v;
            if (isnan(v)) continue;
            char buf[48];
            fmt_num(v * g->cols[c].scale, buf, sizeof buf);
            double shown = strtod(buf, NULL); /* ties as printed */
            n++;
            if (isnan(best[c]) || (g->cols[c].better < 0 ? shown < best[c] : shown > best[c]))
                best[c] = shown;
        }
        if (n < 2) best[c] = NAN;
    }
}

/* The symbols LaTeX gets in math mode (script text only). */
static const char *const LATEX_SYMBOLS[][2] = {
    {"±", "$\\pm$"},    {"†", "$^\\dagger$"}, {"Δ", "$\\Delta$"}, {"ρ", "$\\rho$"},
    {"α", "$\\alpha$"}, {"ε", "$\\epsilon$"}, {"×", "$\\times$"}, {"≤", "$\\le$"},
    {"≥", "$\\ge$"},    {"−", "$-$"},         {"σ", "$\\sigma$"}, {"μ", "$\\mu$"},
};

void cce_table_put_latex(FILE *f, const char *s, int script) {
    while (*s) {
        if (script) {
            int done = 0;
            for (size_t i = 0; i < sizeof LATEX_SYMBOLS / sizeof LATEX_SYMBOLS[0]; i++) {
                size_t n = strlen(LATEX_SYMBOLS[i][0]);
                if (!strncmp(s, LATEX_SYMBOLS[i][0], n)) {
                    fputs(LATEX_SYMBOLS[i][1], f);
                    s += n;
                    done = 1;
                    break;
                }
            }
            if (done) continue;
            if (*s == '\n' || *s == '\t') {
                fputc(' ', f);
                s++;
                continue;
            }
        }
        switch (*s) {
        case '_':
        case '%':
        case '&':
        case '#':
        case '$':
        case '{':
        case '}':
            fprintf(f, "\\%c", *s);
            break;
        case '~':
            fputs("\\textasciitilde{}", f);
            break;
        case '^':
            fputs("\\textasciicircum{}", f);
            break;
        case '\\':
            fputs("\\textbackslash{}", f);
            break;
        default:
            fputc(*s, f);
        }
        s++;
    }
}

void cce_table_put_markdown(FILE *f, const char *s, int script) {
    for (; *s; s++) {
        if (script && (*s == '\n' || *s == '\t')) {
            fputc(' ', f);
            continue;
        }
        if (*s == '|' || *s == '*' || *s == '_' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
}

static void emit(const grid *g, const char *path, const char *kind, cce_table_format fmt,
                 FILE *out) {
    double best[MAX_COLS];
    find_best(g, best);
    if (fmt == CCE_TABLE_TSV) {
        fprintf(out, "# cce table --kind %s from %s\n", kind, path);
        for (size_t c = 0; c < g->ncols; c++) {
            fprintf(out, "# %s: %s\n", g->cols[c].tsv, g->cols[c].meaning);
            if (g->cols[c].has_err)
                fprintf(out, "# %s_stderr: its standard error\n", g->cols[c].tsv);
            if (g->cols[c].has_sig)
                fprintf(out,
                        "# %s_significant: 1 when the paired bootstrap interval against the "
                        "dense run excludes 0, 0 when not, NaN when not tested\n",
                        g->cols[c].tsv);
        }
        for (size_t c = 0; c < g->ncols; c++) {
            fprintf(out, "%s%s", c ? "\t" : "", g->cols[c].tsv);
            if (g->cols[c].has_err) fprintf(out, "\t%s_stderr", g->cols[c].tsv);
            if (g->cols[c].has_sig) fprintf(out, "\t%s_significant", g->cols[c].tsv);
        }
        fputc('\n', out);
        for (size_t r = 0; r < g->nrows; r++) {
            for (size_t c = 0; c < g->ncols; c++) {
                const tcell *x = &g->cells[r * MAX_COLS + c];
                if (c) fputc('\t', out);
                if (g->cols[c].is_text)
                    fig_put_cell(out, x->text, 0);
                else
                    fig_put_num(out, x->v);
                if (g->cols[c].has_err) {
                    fputc('\t', out);
                    fig_put_num(out, x->err);
                }
                if (g->cols[c].has_sig) {
                    fputc('\t', out);
                    fig_put_num(out, x->sig);
                }
            }
            fputc('\n', out);
        }
        return;
    }
    int latex = fmt == CCE_TABLE_LATEX;
    if (latex) {
        fprintf(out, "%% cce table --kind %s from ", kind);
        cce_table_put_latex(out, path, 0);
        fputs("\n% needs \\usepackage{booktabs}; bold: the best value of the column among the "
              "compressed runs\n\\begin{tabular}{",
              out);
        for (size_t c = 0; c < g->ncols; c++) fputc(g->cols[c].is_text ? 'l' : 'r', out);
        fputs("}\n\\toprule\n", out);
        for (size_t c = 0; c < g->ncols; c++) {
            if (c) fputs(" & ", out);
            cce_table_put_latex(out, g->cols[c].head, 0);
        }
        fputs(" \\\\\n\\midrule\n", out);
    } else {
        fputs("|", out);
        for (size_t c = 0; c < g->ncols; c++) {
            fputc(' ', out);
            cce_table_put_markdown(out, g->cols[c].head, 0);
            fputs(" |", out);
        }
        fputs("\n|", out);
        for (size_t c = 0; c < g->ncols; c++) fputs(g->cols[c].is_text ? ":---|" : "---:|", out);
        fputc('\n', out);
    }
    for (size_t r = 0; r < g->nrows; r++) {
        if (!latex) fputs("|", out);
        for (size_t c = 0; c < g->ncols; c++) {
            const tcell *x = &g->cells[r * MAX_COLS + c];
            const tcol *col = &g->cols[c];
            if (latex && c) fputs(" & ", out);
            if (!latex) fputc(' ', out);
            if (col->is_text) {
                if (latex)
                    cce_table_put_latex(out, x->text, 0);
                else
                    cce_table_put_markdown(out, x->text, 0);
            } else {
                char buf[48], ebuf[48];
                fmt_num(x->v * col->scale, buf, sizeof buf);
                int bold =
                    !g->dense[r] && !isnan(best[c]) && !isnan(x->v) && strtod(buf, NULL) == best[c];
                if (bold) fputs(latex ? "\\textbf{" : "**", out);
                fputs(buf, out);
                if (col->has_err && !isnan(x->err)) {
                    fmt_num(x->err * col->scale, ebuf, sizeof ebuf);
                    fprintf(out, latex ? " $\\pm$ %s" : " ± %s", ebuf);
                }
                if (bold) fputs(latex ? "}" : "**", out);
                if (x->sig == 1) fputs(latex ? "$^\\dagger$" : "†", out);
            }
            if (!latex) fputs(" |", out);
        }
        fputs(latex ? " \\\\\n" : "\n", out);
    }
    if (latex) fputs("\\bottomrule\n\\end{tabular}\n", out);
    int any_sig = 0;
    for (size_t i = 0; i < g->nrows * MAX_COLS && g->cells; i++)
        if (i % MAX_COLS < g->ncols && g->cells[i].sig == 1) any_sig = 1;
    if (any_sig)
        fputs(latex ? "% $^\\dagger$: the paired bootstrap 95% interval of the difference to the "
                      "dense run excludes 0\n"
                    : "\n† the paired bootstrap 95% interval of the difference to the dense run "
                      "excludes 0\n",
              out);
}

static int is_dense_run(const cce_run_info *run) {
    const char *s = cce_run_attr(run, "strategy");
    return s && strcmp(s, "dense") == 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static cce_status build_summary(const cce_figure_runs *r, grid *g) {
    add_col(g, "Run", "run", 0, 1, 0, "run id in the results file")->is_text = 1;
    add_col(g, "Strategy", "strategy", 0, 1, 0, "compression strategy (steps joined by +)")
        ->is_text = 1;
    add_col(g, "Target", "target", 0, 1, 0, "the first step's ratio=, bits= or rank=")->is_text = 1;
    add_col(g, "Compr. %", "byte_ratio", +1, 100, 0,
            "1 - encoded bytes / float32 bytes of the block weights (TSV: a fraction)");
    add_col(g, "Bits/w", "bits_per_weight", -1, 1, 0, "8 x encoded bytes / weights");
    add_col(g, "PPL", "ppl", -1, 1, 1, "perplexity on the evaluation windows");
    add_col(g, "ΔPPL", "dppl", -1, 1, 0, "ppl - ppl of the dense run of the same experiment")
        ->has_sig = 1;
    add_col(g, "KL", "kl", -1, 1, 0, "KL(dense || run) per token, nats");
    add_col(g, "Top-1 %", "top1", +1, 100, 0, "next-token top-1 accuracy (TSV: a fraction)");
    /* accuracy metrics of tasks */
    char acc[8][64];
    size_t nacc = 0;
    for (size_t i = 0; i < r->n; i++)
        for (size_t k = 0; k < r->sel[i]->n_metrics; k++) {
            const char *m = r->sel[i]->metric_names[k];
            if (!(ends_with(m, "acc") || ends_with(m, "acc_norm")) || strcmp(m, "top1") == 0)
                continue;
            size_t j = 0;
            while (j < nacc && strcmp(acc[j], m) != 0) j++;
            if (j == nacc && nacc < 8 && strlen(m) < 50) snprintf(acc[nacc++], 64, "%s", m);
        }
    size_t first_acc = g->ncols;
    for (size_t j = 0; j < nacc; j++) {
        char head[64];
        snprintf(head, sizeof head, "%.56s %%", acc[j]);
        add_col(g, head, acc[j], +1, 100, 1, "multiple-choice accuracy (TSV: a fraction)")
            ->has_sig = 1;
    }
    for (size_t i = 0; i < r->n; i++) {
        const cce_run_info *run = r->sel[i];
        tcell *row = add_row(g, is_dense_run(run));
        if (!row) return cce_fail(CCE_ERR_NOMEM, "table rows");
        snprintf(row[0].text, sizeof row[0].text, "%s", run->id);
        snprintf(row[1].text, sizeof row[1].text, "%s", cce_run_attr(run, "strategy"));
        const char *kind;
        double t = fig_run_target(run, &kind);
        if (!isnan(t)) snprintf(row[2].text, sizeof row[2].text, "%s=%g", kind, t);
        row[3].v = fig_metric(run, "byte_ratio");
        row[4].v = fig_metric(run, "bits_per_weight");
        row[5].v = fig_metric(run, "ppl");
        row[5].err = fig_metric(run, "ppl_stderr");
        const cce_run_info *d = fig_dense_run(r, run);
        row[6].v = d ? row[5].v - fig_metric(d, "ppl") : NAN;
        row[6].sig = fig_metric(run, "dnll_vs_dense_sig");
        row[7].v = fig_metric(run, "kl");
        row[8].v = fig_metric(run, "top1");
        for (size_t j = 0; j < nacc; j++) {
            char se[128];
            snprintf(se, sizeof se, "%s_stderr", acc[j]);
            row[first_acc + j].v = fig_metric(run, acc[j]);
            row[first_acc + j].err = fig_metric(run, se);
            char task[64];
            snprintf(task, sizeof task, "%.50s", acc[j]);
            char *suffix = strstr(task, "_acc");
            if (suffix) {
                *suffix = '\0';
                snprintf(se, sizeof se, "%s_dacc_vs_dense_sig", task);
                row[first_acc + j].sig = fig_metric(run, se);
            }
        }
    }
    return CCE_OK;
}

static cce_status build_layers(const char *path, const cce_figure_runs *r, grid *g) {
    add_col(g, "Run", "run", 0, 1, 0, "run id in the results file")->is_text = 1;
    add_col(g, "Strategy", "strategy", 0, 1, 0, "strategy and target")->is_text = 1;
    add_col(g, "Layer", "layer", 0, 1, 0, "block index")->is_text = 1;
    add_col(g, "Params", "params_before", 0, 1, 0, "weights of the layer's compressed tensors");
    add_col(g, "Compr. %", "byte_ratio", +1, 100, 0,
            "1 - encoded bytes after / float32 bytes before (TSV: a fraction)");
    add_col(g, "Bits/w", "bits_per_weight", -1, 1, 0, "8 x encoded bytes after / weights");
    add_col(g, "Sparsity %", "sparsity", +1, 100, 0,
            "fraction of zero weights after (TSV: a fraction)");
    add_col(g, "Rel. error", "rel_fro_error", -1, 1, 0,
            "||W - W'||_F / ||W||_F, mean over the tensors weighted by weights");
    size_t used = 0;
    for (size_t i = 0; i < r->n; i++) {
        const cce_run_info *run = r->sel[i];
        if (run->n_layer_rows == 0) continue;
        cce_report rep;
        cce_status s = cce_results_read_layers(path, run->id, &rep);
        if (s) return s;
        int maxl = -1;
        for (size_t k = 0; k < rep.n; k++)
            if (rep.rows[k].layer > maxl) maxl = rep.rows[k].layer;
        char label[128];
        fig_run_label(run, 0, label, sizeof label);
        for (int l = 0; l <= maxl; l++) {
            double pb = 0, bb = 0, ba = 0, sp = 0, err = 0, errw = 0;
            for (size_t k = 0; k < rep.n; k++) {
                const cce_report_row *x = &rep.rows[k];
                if (x->layer != l) continue;
                pb += (double)x->params_before;
                bb += (double)x->bytes_before;
                ba += (double)x->bytes_after;
                if (!isnan(x->sparsity)) sp += x->sparsity * (double)x->params_before;
                if (!isnan(x->rel_fro_error)) {
                    err += x->rel_fro_error * (double)x->params_before;
                    errw += (double)x->params_before;
                }
            }
            if (pb == 0) continue;
            tcell *row = add_row(g, 0);
            if (!row) {
                cce_report_clear(&rep);
                return cce_fail(CCE_ERR_NOMEM, "table rows");
            }
            snprintf(row[0].text, sizeof row[0].text, "%s", run->id);
            snprintf(row[1].text, sizeof row[1].text, "%.95s", label);
            snprintf(row[2].text, sizeof row[2].text, "%d", l);
            row[3].v = pb;
            row[4].v = bb > 0 ? 1 - ba / bb : NAN;
            row[5].v = 8 * ba / pb;
            row[6].v = sp / pb;
            row[7].v = errw > 0 ? err / errw : NAN;
            used++;
        }
        cce_report_clear(&rep);
    }
    if (!used)
        return cce_fail(CCE_ERR_NOT_FOUND,
                        "%s: none of the %zu selected runs has a layers table with block "
                        "tensors (dense runs have none)",
                        path, r->n);
    return CCE_OK;
}

int cce_table_kind_parse(const char *name, cce_table_kind *out) {
    if (!strcmp(name, "summary"))
        *out = CCE_TABLE_SUMMARY;
    else if (!strcmp(name, "layers"))
        *out = CCE_TABLE_LAYERS;
    else
        return 0;
    return 1;
}

int cce_table_format_parse(const char *name, cce_table_format *out) {
    if (!strcmp(name, "latex"))
        *out = CCE_TABLE_LATEX;
    else if (!strcmp(name, "markdown") || !strcmp(name, "md"))
        *out = CCE_TABLE_MARKDOWN;
    else if (!strcmp(name, "tsv"))
        *out = CCE_TABLE_TSV;
    else
        return 0;
    return 1;
}

cce_status cce_table_render(const char *path, cce_table_kind kind, const char *filter,
                            cce_table_format format, FILE *out) {
    cce_figure_runs r;
    cce_status s = cce_figure_runs_read(path, filter, &r);
    grid g;
    memset(&g, 0, sizeof g);
    if (!s) s = kind == CCE_TABLE_LAYERS ? build_layers(path, &r, &g) : build_summary(&r, &g);
    if (!s) {
        emit(&g, path, kind == CCE_TABLE_LAYERS ? "layers" : "summary", format, out);
        if (fflush(out) != 0 || ferror(out)) s = cce_fail(CCE_ERR_IO, "writing the table failed");
    }
    grid_free(&g);
    cce_figure_runs_free(&r);
    return s;
}
