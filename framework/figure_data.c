/* Figure data from run metrics and the "layers" tables (figure.h): ppl_vs_ratio, kl_vs_ratio,
 * ppl_vs_bits, layer_ratio, sensitivity_heatmap; the helpers shared by every builder; and
 * cce_figure_data, which dispatches on the figure's name (the distribution figures are in
 * figure_dist.c, the cce strategy's in figure_cce.c). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "figure_internal.h"

static const char *const KINDS[] = {"ppl_vs_ratio", "kl_vs_ratio",         "ppl_vs_bits",
                                    "layer_ratio",  "sensitivity_heatmap", "act_hist",
                                    "act_stats",    "weight_dist",         "cce_layer_ratio",
                                    "cce_ev",       "cce_budget",          NULL};

const char *const *cce_figure_kinds(void) {
    return KINDS;
}

int cce_figure_known(const char *name) {
    for (size_t i = 0; name && KINDS[i]; i++)
        if (strcmp(KINDS[i], name) == 0) return 1;
    return 0;
}

void cce_figure_files_clear(cce_figure_files *f) {
    if (!f) return;
    free(f->tsv);
    free(f->gp);
    free(f->png);
    free(f->pdf);
    free(f->tex);
    memset(f, 0, sizeof *f);
}

/* ---- helpers --------------------------------------------------------------------------------- */

double fig_metric(const cce_run_info *run, const char *name) {
    for (size_t i = 0; i < run->n_metrics; i++)
        if (strcmp(run->metric_names[i], name) == 0) return run->metric_values[i];
    return NAN;
}

static int is_dense(const cce_run_info *run) {
    const char *s = cce_run_attr(run, "strategy");
    return s && strcmp(s, "dense") == 0;
}

const cce_run_info *fig_dense_run(const cce_figure_runs *r, const cce_run_info *run) {
    const char *exp = run ? cce_run_attr(run, "experiment") : NULL;
    for (size_t i = 0; i < r->all.n; i++) {
        const cce_run_info *d = &r->all.runs[i];
        if (!is_dense(d)) continue;
        const char *e = cce_run_attr(d, "experiment");
        if (!exp || (e && strcmp(e, exp) == 0)) return d;
    }
    return NULL;
}

static int strategy_cmp(const void *a, const void *b) {
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    int dx = strcmp(x, "dense") == 0, dy = strcmp(y, "dense") == 0;
    if (dx != dy) return dy - dx;
    return strcmp(x, y);
}

cce_status fig_strategies(const cce_figure_runs *r, const char ***out, size_t *n) {
    *n = 0;
    *out = calloc(r->n ? r->n : 1, sizeof **out);
    if (!*out) return cce_fail(CCE_ERR_NOMEM, "strategy list");
    for (size_t i = 0; i < r->n; i++) {
        const char *s = cce_run_attr(r->sel[i], "strategy");
        if (!s) s = "";
        size_t j = 0;
        while (j < *n && strcmp((*out)[j], s) != 0) j++;
        if (j == *n) (*out)[(*n)++] = s;
    }
    qsort(*out, *n, sizeof **out, strategy_cmp);
    return CCE_OK;
}

double fig_run_target(const cce_run_info *run, const char **kind) {
    static const char *const names[] = {"ratio", "bits", "rank", NULL};
    *kind = "";
    const char *params = cce_run_attr(run, "params");
    json_t *root = params ? json_loads(params, 0, NULL) : NULL;
    double v = NAN;
    size_t i;
    json_t *step;
    json_t *arr = json_is_array(root) ? root : NULL;
    json_array_foreach(arr, i, step) {
        json_t *p = json_object_get(step, "params");
        for (int k = 0; names[k] && isnan(v); k++) {
            json_t *x = json_object_get(p, names[k]);
            if (json_is_number(x)) {
                v = json_number_value(x);
                *kind = names[k];
            }
        }
        if (!isnan(v)) break;
    }
    json_decref(root);
    return v;
}

void fig_run_label(const cce_run_info *run, int short_form, char *buf, size_t cap) {
    const char *s = cce_run_attr(run, "strategy");
    const char *kind;
    double t = fig_run_target(run, &kind);
    if (isnan(t))
        snprintf(buf, cap, "%s", short_form ? run->id : (s ? s : "?"));
    else if (short_form)
        snprintf(buf, cap, "%s=%g", kind, t);
    else
        snprintf(buf, cap, "%s %s=%g", s ? s : "?", kind, t);
}

void fig_put_num(FILE *f, double v) {
    if (isnan(v) || isinf(v))
        fputs("NaN", f);
    else
        fprintf(f, "%.10g", v);
}

void fig_put_cell(FILE *f, const char *text, int no_space) {
    for (const unsigned char *c = (const unsigned char *)(text ? text : ""); *c; c++) {
        if (*c < 0x20 || *c == 0x7f || *c == '"' || *c == '\'')
            fputc(*c == '"' || *c == '\'' ? '_' : ' ', f);
        else if (*c == ' ' && no_space)
            fputc('_', f);
        else
            fputc(*c, f);
    }
}

void fig_tables_free(cce_table **tables, size_t n) {
    if (!tables) return;
    for (size_t i = 0; i < n; i++) cce_table_free(tables[i]);
    free(tables);
}

cce_status fig_read_tables(const char *path, const cce_figure_runs *r, const char *name,
                           cce_table ***tables) {
    *tables = calloc(r->n ? r->n : 1, sizeof **tables);
    if (!*tables) return cce_fail(CCE_ERR_NOMEM, "table list");
    size_t found = 0;
    for (size_t i = 0; i < r->n; i++) {
        const cce_run_info *run = r->sel[i];
        int has = 0;
        for (size_t k = 0; k < run->n_tables; k++)
            if (strcmp(run->table_names[k], name) == 0) has = 1;
        if (!has) continue;
        cce_status s = cce_results_read_table(path, run->id, name, &(*tables)[i]);
        if (s) {
            fig_tables_free(*tables, r->n);
            *tables = NULL;
            return s;
        }
        found++;
    }
    if (!found) {
        fig_tables_free(*tables, r->n);
        *tables = NULL;
        return cce_fail(CCE_ERR_NOT_FOUND, "%s: none of the %zu selected runs holds a table '%s'",
                        path, r->n, name);
    }
    return CCE_OK;
}

cce_status fig_parse_layers(const char *text, int n_layers, int *out, size_t cap, size_t *n) {
    *n = 0;
    if (!text || !*text) {
        if (n_layers <= 0) return cce_fail(CCE_ERR_NOT_FOUND, "no layers recorded");
        int cand[3] = {0, n_layers / 2, n_layers - 1};
        for (int i = 0; i < 3 && *n < cap; i++)
            if (*n == 0 || cand[i] != out[*n - 1]) out[(*n)++] = cand[i];
        return CCE_OK;
    }
    const char *p = text;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ',') || v < 0 || v >= n_layers || *n >= cap)
            return cce_fail(CCE_ERR_ARG, "layers '%s': a list of layers in [0, %d) expected", text,
                            n_layers);
        out[(*n)++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return CCE_OK;
}

/* ---- ppl_vs_ratio, kl_vs_ratio, ppl_vs_bits ----------------------------------------------------
 */

typedef struct sorted_run {
    const cce_run_info *run;
    double x;
} sorted_run;

static int sorted_cmp(const void *a, const void *b) {
    const sorted_run *x = a, *y = b;
    if (x->x != y->x) return x->x < y->x ? -1 : 1;
    return strcmp(x->run->id, y->run->id);
}

cce_status fig_data_metric(const char *path, const cce_figure_runs *r, const char *name, FILE *data,
                           FILE *vars) {
    int kl = strcmp(name, "kl_vs_ratio") == 0, bits = strcmp(name, "ppl_vs_bits") == 0;
    const char *ymetric = kl ? "kl" : "ppl", *xmetric = bits ? "bits_per_weight" : "byte_ratio";
    const char **strat;
    size_t ns;
    cce_status s = fig_strategies(r, &strat, &ns);
    if (s) return s;
    sorted_run *rows = calloc(r->n, sizeof *rows);
    if (!rows) {
        free(strat);
        return cce_fail(CCE_ERR_NOMEM, "figure rows");
    }
    double ymin = INFINITY, ymax = -INFINITY;
    size_t used = 0, nblocks = 0, n_same = 0;
    char *rings = NULL; /* the block of not-significant runs (rows: x, ppl, kl) */
    size_t rlen = 0;
    FILE *rf = open_memstream(&rings, &rlen);
    fprintf(data, "# figure %s from %s\n", name, path);
    fprintf(data, "# %s\n",
            kl ? "KL(dense || variant) per token (nats) against byte_ratio, one block per strategy"
            : bits ? "perplexity against bits per weight, one block per strategy; the last block "
                     "is the Pareto front"
                   : "perplexity against byte_ratio, one block per strategy");
    fprintf(data, "# byte_ratio = 1 - encoded bytes / float32 bytes of the block weights; "
                  "bits_per_weight = 8 * encoded bytes / weights\n");
    fprintf(data, "# columns: strategy byte_ratio ppl ppl_stderr kl kl_stderr bits_per_weight "
                  "top1 run label dnll_vs_dense_sig; each block starts with a row of column "
                  "names\n");
    fprintf(data, "# dnll_vs_dense_sig: 1 when the paired bootstrap of the per-window NLL "
                  "against the experiment's dense run excludes 0 (95%%), 0 when it does not, NaN "
                  "when not recorded\n");
    char *blocks = NULL;
    size_t blen = 0;
    FILE *bf = open_memstream(&blocks, &blen);
    for (size_t k = 0; k < ns && bf; k++) {
        if (kl && strcmp(strat[k], "dense") == 0) continue;
        size_t m = 0;
        for (size_t i = 0; i < r->n; i++) {
            const char *st = cce_run_attr(r->sel[i], "strategy");
            if (!st || strcmp(st, strat[k]) != 0) continue;
            double y = fig_metric(r->sel[i], ymetric), x = fig_metric(r->sel[i], xmetric);
            if (isnan(y) || isnan(x)) continue;
            rows[m].run = r->sel[i];
            rows[m].x = x;
            m++;
        }
        if (!m) continue;
        qsort(rows, m, sizeof *rows, sorted_cmp);
        if (nblocks++) fputs("\n\n", data);
        fig_put_cell(data, strat[k], 0);
        fputs("\tbyte_ratio\tppl\tppl_stderr\tkl\tkl_stderr\tbits_per_weight\ttop1\trun\tlabel\t"
              "dnll_vs_dense_sig\n",
              data);
        fprintf(bf, "%s", nblocks > 1 ? " " : "");
        fig_put_cell(bf, strat[k], 1);
        for (size_t i = 0; i < m; i++) {
            const cce_run_info *run = rows[i].run;
            static const char *const cols[] = {
                "byte_ratio", "ppl", "ppl_stderr", "kl", "kl_stderr", "bits_per_weight", "top1"};
            fig_put_cell(data, strat[k], 0);
            for (size_t c = 0; c < 7; c++) {
                fputc('\t', data);
                fig_put_num(data, fig_metric(run, cols[c]));
            }
            char label[128];
            fig_run_label(run, 1, label, sizeof label);
            fprintf(data, "\t%s\t", run->id);
            fig_put_cell(data, label, 0);
            fputc('\t', data);
            double sig = fig_metric(run, "dnll_vs_dense_sig");
            fig_put_num(data, sig);
            fputc('\n', data);
            /* compressed runs whose ΔNLL to dense is not significant get a ring in the figure */
            if (sig == 0 && strcmp(strat[k], "dense") != 0 && rf) {
                n_same++;
                fprintf(rf, "not_significant\t");
                fig_put_num(rf, rows[i].x);
                fputc('\t', rf);
                fig_put_num(rf, fig_metric(run, "ppl"));
                fputc('\t', rf);
                fig_put_num(rf, fig_metric(run, "kl"));
                fprintf(rf, "\t%s\n", run->id);
            }
            double y = fig_metric(run, ymetric);
            if (y > 0 && y < ymin) ymin = y;
            if (y > ymax) ymax = y;
            used++;
        }
    }
    if (bf) fclose(bf);
    if (rf) fclose(rf);
    if (!bf || !rf || !used) {
        free(rings);
        free(blocks);
        free(rows);
        free(strat);
        if (!bf || !rf) return cce_fail(CCE_ERR_NOMEM, "figure data");
        return cce_fail(CCE_ERR_NOT_FOUND,
                        "%s: no selected run has the metrics %s and %s that figure %s needs%s",
                        path, xmetric, ymetric, name, kl ? " (dense runs are left out)" : "");
    }
    if (bits) {
        /* Pareto front: sort every point by bits, keep those below every point with fewer bits */
        size_t m = 0;
        for (size_t i = 0; i < r->n; i++) {
            double y = fig_metric(r->sel[i], "ppl"), x = fig_metric(r->sel[i], "bits_per_weight");
            if (isnan(x) || isnan(y)) continue;
            rows[m].run = r->sel[i];
            rows[m].x = x;
            m++;
        }
        qsort(rows, m, sizeof *rows, sorted_cmp);
        fputs("\n\nPareto_front\tbits_per_weight\tppl\trun\n", data);
        double best = INFINITY;
        for (size_t i = 0; i < m; i++) {
            double y = fig_metric(rows[i].run, "ppl");
            if (!(y < best)) continue;
            best = y;
            fputs("Pareto_front\t", data);
            fig_put_num(data, rows[i].x);
            fputc('\t', data);
            fig_put_num(data, y);
            fprintf(data, "\t%s\n", rows[i].run->id);
        }
    }
    if (!bits && n_same) {
        /* after the strategies' blocks (ppl_vs_bits has its Pareto front there and no rings) */
        fprintf(data, "\n\nnot_significant\t%s\tppl\tkl\trun\n%s", xmetric, rings);
    }
    free(rings);
    if (bits) n_same = 0;
    fprintf(vars, "nblocks = %zu\nblocks = \"%s\"\nlogy = %d\nnsame = %zu\n", nblocks,
            blocks ? blocks : "", ymax > 0 && ymin < INFINITY && ymax / ymin > 10 ? 1 : 0, n_same);
    free(blocks);
    free(rows);
    free(strat);
    return CCE_OK;
}

/* ---- layer_ratio ----------------------------------------------------------------------------- */

cce_status fig_data_layer_ratio(const char *path, const cce_figure_runs *r, FILE *data,
                                FILE *vars) {
    size_t nrun = 0;
    int max_layer = -1;
    cce_report *reps = calloc(r->n, sizeof *reps);
    const cce_run_info **runs = calloc(r->n, sizeof *runs);
    cce_status s = reps && runs ? CCE_OK : cce_fail(CCE_ERR_NOMEM, "layer tables");
    for (size_t i = 0; !s && i < r->n; i++) {
        if (r->sel[i]->n_layer_rows == 0) continue;
        s = cce_results_read_layers(path, r->sel[i]->id, &reps[nrun]);
        if (s) break;
        runs[nrun++] = r->sel[i];
        for (size_t k = 0; k < reps[nrun - 1].n; k++)
            if (reps[nrun - 1].rows[k].layer > max_layer) max_layer = reps[nrun - 1].rows[k].layer;
    }
    if (!s && (nrun == 0 || max_layer < 0))
        s = cce_fail(CCE_ERR_NOT_FOUND,
                     "%s: none of the %zu selected runs has a layers table with block tensors "
                     "(figure layer_ratio; dense runs have none)",
                     path, r->n);
    if (!s) {
        fprintf(data, "# figure layer_ratio from %s\n", path);
        fprintf(data, "# achieved compression per layer: 1 - encoded bytes after / float32 bytes "
                      "before, summed over the layer's compressed tensors (table layers)\n");
        fprintf(data, "# columns: layer, then one column per run (its id and label); NaN: the "
                      "run did not compress that layer\n# runs:");
        for (size_t j = 0; j < nrun; j++) fprintf(data, " %s", runs[j]->id);
        fputs("\nlayer", data);
        for (size_t j = 0; j < nrun; j++) {
            char label[128];
            fig_run_label(runs[j], 0, label, sizeof label);
            fputc('\t', data);
            fig_put_cell(data, label, 0);
        }
        fputc('\n', data);
        for (int l = 0; l <= max_layer; l++) {
            fprintf(data, "%d", l);
            for (size_t j = 0; j < nrun; j++) {
                double before = 0, after = 0;
                for (size_t k = 0; k < reps[j].n; k++) {
                    if (reps[j].rows[k].layer != l) continue;
                    before += (double)reps[j].rows[k].bytes_before;
                    after += (double)reps[j].rows[k].bytes_after;
                }
                fputc('\t', data);
                fig_put_num(data, before > 0 ? 1.0 - after / before : NAN);
            }
            fputc('\n', data);
        }
        fprintf(vars, "nbars = %zu\nblocks = \"", nrun);
        for (size_t j = 0; j < nrun; j++) {
            if (j) fputc(' ', vars);
            fig_put_cell(vars, cce_run_attr(runs[j], "strategy"), 1);
        }
        /* shade k: the k-th run of its strategy, so runs of one strategy differ in fill */
        fputs("\"\nshades = \"", vars);
        for (size_t j = 0; j < nrun; j++) {
            int k = 0;
            for (size_t i = 0; i < j; i++)
                if (strcmp(cce_run_attr(runs[i], "strategy"), cce_run_attr(runs[j], "strategy")) ==
                    0)
                    k++;
            fprintf(vars, "%s%d", j ? " " : "", k);
        }
        fprintf(vars, "\"\nnlayers = %d\n", max_layer + 1);
    }
    for (size_t i = 0; reps && i < r->n; i++) cce_report_clear(&reps[i]);
    free(reps);
    free(runs);
    return s;
}

/* ---- sensitivity_heatmap -----------------------------------------------------------------------
 */

typedef struct heat_cell {
    const cce_run_info *run;
    int layer;
    char ylabel[96];
    double ykey; /* sort key within a strategy: the target */
    const char *strategy;
} heat_cell;

static int heat_cmp(const void *a, const void *b) {
    const heat_cell *x = a, *y = b;
    int c = strcmp(x->strategy, y->strategy);
    if (c) return c;
    if (x->ykey != y->ykey) return x->ykey < y->ykey ? -1 : 1;
    if (x->layer != y->layer) return x->layer - y->layer;
    return strcmp(x->run->id, y->run->id);
}

cce_status fig_data_heatmap(const char *path, const cce_figure_runs *r, FILE *data, FILE *vars) {
    heat_cell *cells = calloc(r->n ? r->n : 1, sizeof *cells);
    if (!cells) return cce_fail(CCE_ERR_NOMEM, "heatmap cells");
    size_t nc = 0;
    cce_status s = CCE_OK;
    for (size_t i = 0; i < r->n && !s; i++) {
        const cce_run_info *run = r->sel[i];
        if (run->n_layer_rows == 0 || is_dense(run) || isnan(fig_metric(run, "ppl"))) continue;
        cce_report rep;
        s = cce_results_read_layers(path, run->id, &rep);
        if (s) break;
        int layer = rep.n ? rep.rows[0].layer : -1;
        for (size_t k = 0; k < rep.n; k++)
            if (rep.rows[k].layer != layer) layer = -1;
        cce_report_clear(&rep);
        if (layer < 0) continue;
        heat_cell *c = &cells[nc++];
        c->run = run;
        c->layer = layer;
        c->strategy = cce_run_attr(run, "strategy");
        const char *kind;
        c->ykey = fig_run_target(run, &kind);
        fig_run_label(run, 0, c->ylabel, sizeof c->ylabel);
    }
    if (!s && nc == 0)
        s = cce_fail(CCE_ERR_NOT_FOUND,
                     "%s: none of the %zu selected runs compresses a single layer (figure "
                     "sensitivity_heatmap reads runs of experiments/layer_sensitivity.lua)",
                     path, r->n);
    if (s) {
        free(cells);
        return s;
    }
    qsort(cells, nc, sizeof *cells, heat_cmp);
    int have_dense = 0;
    double zmin = INFINITY, zmax = -INFINITY;
    for (size_t i = 0; i < nc; i++)
        if (fig_dense_run(r, cells[i].run)) have_dense = 1;
    fprintf(data, "# figure sensitivity_heatmap from %s\n", path);
    fprintf(data, "# runs that compress one layer only; dppl = ppl - ppl of the dense run of the "
                  "same experiment (NaN without one)\n");
    fprintf(data, "# columns: layer, y (row index), ppl, dppl, target, run\n");
    fputs("layer\ty\tppl\tdppl\ttarget\trun\n", data);
    size_t ny = 0;
    for (size_t i = 0; i < nc; i++) {
        if (i == 0 || strcmp(cells[i].ylabel, cells[i - 1].ylabel) != 0) ny++;
        const cce_run_info *d = fig_dense_run(r, cells[i].run);
        double ppl = fig_metric(cells[i].run, "ppl");
        double dppl = d ? ppl - fig_metric(d, "ppl") : NAN;
        double z = have_dense ? dppl : ppl;
        if (z > 0 && z < zmin) zmin = z;
        if (z > zmax) zmax = z;
        fprintf(data, "%d\t%zu\t", cells[i].layer, ny - 1);
        fig_put_num(data, ppl);
        fputc('\t', data);
        fig_put_num(data, dppl);
        fputc('\t', data);
        fig_put_cell(data, cells[i].ylabel, 0);
        fprintf(data, "\t%s\n", cells[i].run->id);
    }
    int nx = 0;
    for (size_t i = 0; i < nc; i++)
        if (cells[i].layer + 1 > nx) nx = cells[i].layer + 1;
    fprintf(vars, "nx = %d\nzmin = %.10g\nzmax = %.10g\n", nx, zmin < INFINITY ? zmin : 0,
            zmax > -INFINITY ? zmax : 1);
    fprintf(vars, "ny = %zu\nzcol = %d\nzlabel = \"%s\"\nlogz = %d\n", ny, have_dense ? 4 : 3,
            have_dense ? "Δppl vs dense" : "perplexity",
            zmax > 0 && zmin < INFINITY && zmin > 0 && zmax / zmin > 20 ? 1 : 0);
    free(cells);
    return CCE_OK;
}

/* ---- dispatch -------------------------------------------------------------------------------- */

cce_status cce_figure_data(const char *path, const char *name, const cce_figure_options *o,
                           char **tsv, char **vars, char **caption) {
    *tsv = *vars = NULL;
    if (caption) *caption = NULL;
    if (!cce_figure_known(name)) {
        char list[256] = "";
        size_t used = 0;
        for (size_t i = 0; KINDS[i]; i++)
            used +=
                (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", KINDS[i]);
        return cce_fail(CCE_ERR_ARG, "unknown figure '%s' (figures: %s)", name ? name : "", list);
    }
    cce_figure_options none = {0};
    if (!o) o = &none;
    cce_figure_runs r;
    cce_status s = cce_figure_runs_read(path, o->runs, &r);
    if (s) {
        cce_figure_runs_free(&r);
        return s;
    }
    size_t dlen = 0, vlen = 0;
    FILE *df = open_memstream(tsv, &dlen), *vf = open_memstream(vars, &vlen);
    if (!df || !vf) s = cce_fail(CCE_ERR_NOMEM, "figure %s", name);
    char *cap = s ? NULL : cce_figure_caption(&r);
    if (!s && df) {
        fprintf(df, "# caption: ");
        fig_put_cell(df, cap ? cap : "", 0);
        fputc('\n', df);
        if (o->runs && *o->runs) {
            fputs("# run filter: ", df);
            fig_put_cell(df, o->runs, 0);
            fputc('\n', df);
        }
    }
    if (s) {
    } else if (strcmp(name, "layer_ratio") == 0)
        s = fig_data_layer_ratio(path, &r, df, vf);
    else if (strcmp(name, "sensitivity_heatmap") == 0)
        s = fig_data_heatmap(path, &r, df, vf);
    else if (strcmp(name, "act_hist") == 0)
        s = fig_data_act_hist(path, &r, o, df, vf);
    else if (strcmp(name, "act_stats") == 0)
        s = fig_data_act_stats(path, &r, o, df, vf);
    else if (strcmp(name, "weight_dist") == 0)
        s = fig_data_weight_dist(path, &r, o, df, vf);
    else if (strcmp(name, "cce_layer_ratio") == 0)
        s = fig_data_cce_layer_ratio(path, &r, df, vf);
    else if (strcmp(name, "cce_ev") == 0)
        s = fig_data_cce_ev(path, &r, df, vf);
    else if (strcmp(name, "cce_budget") == 0)
        s = fig_data_cce_budget(path, &r, df, vf);
    else
        s = fig_data_metric(path, &r, name, df, vf);
    if (df) fclose(df);
    if (vf) fclose(vf);
    cce_figure_runs_free(&r);
    if (s || !df || !vf) {
        free(*tsv);
        free(*vars);
        free(cap);
        *tsv = *vars = NULL;
        return s ? s : CCE_ERR_NOMEM;
    }
    if (caption)
        *caption = cap;
    else
        free(cap);
    return CCE_OK;
}
