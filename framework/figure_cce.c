/* Figure data from the cce strategy's per-run tables (figure.h; strategies/cce_report.h):
 * cce_layer_ratio (achieved and planned rho per layer, one line per run), cce_ev (the
 * explained-variance curves of C_a and C_y per layer of one run) and cce_budget (one run's rho_l
 * against R_l, BI_l and u_l). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "figure_internal.h"

#define MAX_LAYERS 4096

static int has_table(const cce_run_info *run, const char *name) {
    for (size_t k = 0; k < run->n_tables; k++)
        if (!strcmp(run->table_names[k], name)) return 1;
    return 0;
}

static int is_dense(const cce_run_info *run) {
    const char *s = cce_run_attr(run, "strategy");
    return s && !strcmp(s, "dense");
}

/* Column `name` of t, or CCE_ERR_FORMAT naming the table (a table written by another version). */
static cce_status need_col(const char *path, const cce_run_info *run, const cce_table *t,
                           const char *name, int *out) {
    *out = cce_table_column(t, name);
    if (*out < 0)
        return cce_fail(CCE_ERR_FORMAT, "%s: run %s: table %s has no column '%s'", path, run->id,
                        t->name, name);
    return CCE_OK;
}

/* The numeric parameter `name` of the first step of the run that has it (params JSON), or NaN. */
static double run_param(const cce_run_info *run, const char *name) {
    const char *params = cce_run_attr(run, "params");
    json_t *root = params ? json_loads(params, 0, NULL) : NULL;
    double v = NAN;
    size_t i;
    json_t *step;
    json_t *arr = json_is_array(root) ? root : NULL;
    json_array_foreach(arr, i, step) {
        json_t *x = json_object_get(json_object_get(step, "params"), name);
        if (json_is_number(x)) {
            v = json_number_value(x);
            break;
        }
    }
    json_decref(root);
    return v;
}

/* The first selected run holding table `name` (read into *t, the caller's) and how many other
 * selected runs hold it. CCE_ERR_NOT_FOUND with a message for the figure when none does. */
static cce_status first_with(const char *path, const cce_figure_runs *r, const char *name,
                             const char *figure, const cce_run_info **run, cce_table **t,
                             size_t *others) {
    *run = NULL;
    *t = NULL;
    *others = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (!has_table(r->sel[i], name)) continue;
        if (*run) {
            (*others)++;
            continue;
        }
        *run = r->sel[i];
    }
    if (!*run)
        return cce_fail(CCE_ERR_NOT_FOUND,
                        "%s: none of the %zu selected runs holds the table %s (figure %s draws a "
                        "run of the cce strategy recorded by exp:run)",
                        path, r->n, name, figure);
    return cce_results_read_table(path, (*run)->id, name, t);
}

static void put_run_line(FILE *data, const cce_run_info *run, size_t others) {
    char label[128];
    fig_run_label(run, 0, label, sizeof label);
    fprintf(data, "# run: %s (", run->id);
    fig_put_cell(data, label, 0);
    fputs(")", data);
    if (others)
        fprintf(data, "; %zu other selected run%s hold%s the table: choose one with --runs id=...",
                others, others > 1 ? "s" : "", others > 1 ? "" : "s");
    fputc('\n', data);
}

/* ---- cce_layer_ratio ------------------------------------------------------------------------- */

/* One run's series: achieved and planned rho per layer [MAX_LAYERS] (NaN: not known). */
typedef struct ratio_series {
    const cce_run_info *run;
    double *achieved, *planned;
    int has_plan;
} ratio_series;

/* Fills s from the run's cce_layers table, else from its layers report (parameters removed over
 * the layer's changed tensors). *max_layer grows to the highest layer seen. */
static cce_status ratio_of_run(const char *path, const cce_run_info *run, ratio_series *s,
                               int *max_layer) {
    for (int l = 0; l < MAX_LAYERS; l++) s->achieved[l] = s->planned[l] = NAN;
    s->run = run;
    if (has_table(run, "cce_layers")) {
        cce_table *t;
        cce_status st = cce_results_read_table(path, run->id, "cce_layers", &t);
        if (st) return st;
        int cl, cp, ca;
        if (!(st = need_col(path, run, t, "layer", &cl)) &&
            !(st = need_col(path, run, t, "rho_planned", &cp)) &&
            !(st = need_col(path, run, t, "rho_achieved", &ca)))
            for (size_t i = 0; i < t->n_rows; i++) {
                int64_t l = cce_table_i64(t, i, cl);
                if (l < 0 || l >= MAX_LAYERS) continue;
                s->planned[l] = cce_table_f64(t, i, cp);
                s->achieved[l] = cce_table_f64(t, i, ca);
                s->has_plan = 1;
                if (l > *max_layer) *max_layer = (int)l;
            }
        cce_table_free(t);
        return st;
    }
    if (!run->n_layer_rows) return CCE_OK;
    cce_report rep;
    cce_status st = cce_results_read_layers(path, run->id, &rep);
    if (st) return st;
    double *before = calloc(MAX_LAYERS, sizeof *before), *after = calloc(MAX_LAYERS, sizeof *after);
    if (!before || !after) st = cce_fail(CCE_ERR_NOMEM, "figure cce_layer_ratio");
    for (size_t k = 0; !st && k < rep.n; k++) {
        int l = rep.rows[k].layer;
        if (l < 0 || l >= MAX_LAYERS) continue;
        before[l] += (double)rep.rows[k].params_before;
        after[l] += (double)rep.rows[k].params_after;
        if (l > *max_layer) *max_layer = l;
    }
    for (int l = 0; !st && l < MAX_LAYERS; l++)
        if (before[l] > 0) s->achieved[l] = 1.0 - after[l] / before[l];
    free(before);
    free(after);
    cce_report_clear(&rep);
    return st;
}

cce_status fig_data_cce_layer_ratio(const char *path, const cce_figure_runs *r, FILE *data,
                                    FILE *vars) {
    ratio_series *ser = calloc(r->n ? r->n : 1, sizeof *ser);
    size_t ns = 0;
    int max_layer = -1, with_cce = 0;
    cce_status s = ser ? CCE_OK : cce_fail(CCE_ERR_NOMEM, "figure cce_layer_ratio");
    for (size_t i = 0; !s && i < r->n; i++) {
        const cce_run_info *run = r->sel[i];
        if (is_dense(run) || (!has_table(run, "cce_layers") && !run->n_layer_rows)) continue;
        ratio_series *x = &ser[ns];
        x->achieved = malloc(MAX_LAYERS * sizeof *x->achieved); /* [MAX_LAYERS] */
        x->planned = malloc(MAX_LAYERS * sizeof *x->planned);   /* [MAX_LAYERS] */
        if (!x->achieved || !x->planned) {
            free(x->achieved);
            free(x->planned);
            s = cce_fail(CCE_ERR_NOMEM, "figure cce_layer_ratio");
            break;
        }
        ns++;
        s = ratio_of_run(path, run, x, &max_layer);
        with_cce += x->has_plan;
    }
    if (!s && (ns == 0 || max_layer < 0))
        s = cce_fail(CCE_ERR_NOT_FOUND,
                     "%s: none of the %zu selected runs has a cce_layers table or a layers table "
                     "with block tensors (figure cce_layer_ratio; dense runs have none)",
                     path, r->n);
    if (!s) {
        fprintf(data, "# figure cce_layer_ratio from %s\n", path);
        fprintf(data, "# fraction of each block's weight parameters removed: runs of the cce "
                      "strategy give rho_achieved and rho_planned from their cce_layers table; "
                      "other runs 1 - params after / params before over the layer's changed "
                      "tensors (table layers; planned NaN)\n");
        fprintf(data, "# columns: layer, then per run its achieved and planned fraction (NaN: "
                      "unknown or the layer untouched)\n# runs:");
        for (size_t j = 0; j < ns; j++) fprintf(data, " %s", ser[j].run->id);
        fputs("\nlayer", data);
        for (size_t j = 0; j < ns; j++) {
            char label[128];
            fig_run_label(ser[j].run, 0, label, sizeof label);
            fputc('\t', data);
            fig_put_cell(data, label, 0);
            fputc('\t', data);
            fig_put_cell(data, label, 0);
            fputs(" planned", data);
        }
        fputc('\n', data);
        for (int l = 0; l <= max_layer; l++) {
            fprintf(data, "%d", l);
            for (size_t j = 0; j < ns; j++) {
                fputc('\t', data);
                fig_put_num(data, ser[j].achieved[l]);
                fputc('\t', data);
                fig_put_num(data, ser[j].planned[l]);
            }
            fputc('\n', data);
        }
        fprintf(vars, "nruns = %zu\nblocks = \"", ns);
        for (size_t j = 0; j < ns; j++) {
            if (j) fputc(' ', vars);
            fig_put_cell(vars, cce_run_attr(ser[j].run, "strategy"), 1);
        }
        /* shade k: the k-th run of its strategy (its point type differs) */
        fputs("\"\nshades = \"", vars);
        for (size_t j = 0; j < ns; j++) {
            int k = 0;
            for (size_t i = 0; i < j; i++)
                if (!strcmp(cce_run_attr(ser[i].run, "strategy"),
                            cce_run_attr(ser[j].run, "strategy")))
                    k++;
            fprintf(vars, "%s%d", j ? " " : "", k);
        }
        fputs("\"\nplanned_runs = \"", vars);
        for (size_t j = 0, first = 1; j < ns; j++)
            if (ser[j].has_plan) {
                fprintf(vars, "%s%zu", first ? "" : " ", j + 1);
                first = 0;
            }
        fprintf(vars, "\"\nnplanned = %d\nnlayers = %d\n", with_cce, max_layer + 1);
    }
    for (size_t j = 0; ser && j < ns; j++) {
        free(ser[j].achieved);
        free(ser[j].planned);
    }
    free(ser);
    return s;
}

/* ---- cce_ev ---------------------------------------------------------------------------------- */

/* Writes one block per table row of the curve columns cn (length) and cv (vector): frac = k / n,
 * share; the first row names the columns ("frac", "layer L"). */
static void ev_blocks(FILE *data, const cce_table *t, int cl, int cn, int cv, size_t *nblocks) {
    for (size_t i = 0; i < t->n_rows; i++) {
        int64_t n = cce_table_i64(t, i, cn);
        const double *v = cce_table_vec(t, i, cv);
        if (!v || n < 1) continue;
        if ((*nblocks)++) fputs("\n\n", data);
        fprintf(data, "frac\tlayer %lld\n", (long long)cce_table_i64(t, i, cl));
        fputs("0\t0\n", data);
        for (int64_t k = 0; k < n && (size_t)k < t->cols[cv].width; k++) {
            fig_put_num(data, (double)(k + 1) / (double)n);
            fputc('\t', data);
            fig_put_num(data, v[k]);
            fputc('\n', data);
        }
    }
}

cce_status fig_data_cce_ev(const char *path, const cce_figure_runs *r, FILE *data, FILE *vars) {
    const cce_run_info *run;
    cce_table *t;
    size_t others;
    cce_status s = first_with(path, r, "cce_ev", "cce_ev", &run, &t, &others);
    int cl, cnf, cvf, cna, cva;
    if (!s && !(s = need_col(path, run, t, "layer", &cl)) &&
        !(s = need_col(path, run, t, "n_ffn", &cnf)) &&
        !(s = need_col(path, run, t, "ev_ffn", &cvf)) &&
        !(s = need_col(path, run, t, "n_attn", &cna)))
        s = need_col(path, run, t, "ev_attn", &cva);
    if (!s && t->n_rows == 0)
        s = cce_fail(CCE_ERR_NOT_FOUND, "%s: run %s: the table cce_ev has no rows", path, run->id);
    if (s) {
        cce_table_free(t);
        return s;
    }
    fprintf(data, "# figure cce_ev from %s\n", path);
    put_run_line(data, run, others);
    fprintf(data, "# cumulative share of the covariance's trace in its k largest eigenvalues "
                  "against k / n (table cce_ev of the dense model's calibration statistics)\n");
    fprintf(data,
            "# blocks 0..%zu: C_a (FFN, the input of down_proj; n = hidden_dim) of each "
            "layer; blocks %zu..%zu: C_y (the attention output; n = dim); columns: frac "
            "(k / n, from 0), share\n",
            t->n_rows - 1, t->n_rows, 2 * t->n_rows - 1);
    size_t nb = 0;
    ev_blocks(data, t, cl, cnf, cvf, &nb);
    size_t nffn = nb;
    ev_blocks(data, t, cl, cna, cva, &nb);
    double eps = run_param(run, "eps");
    char label[128];
    fig_run_label(run, 0, label, sizeof label);
    fprintf(vars, "ncurves = %zu\nnattn = %zu\nlayers = \"", nffn, nb - nffn);
    for (size_t i = 0; i < t->n_rows; i++)
        fprintf(vars, "%s%lld", i ? " " : "", (long long)cce_table_i64(t, i, cl));
    fprintf(vars, "\"\neps = %.10g\nrunlabel = \"%s ", isnan(eps) ? -1.0 : eps, run->id);
    fig_put_cell(vars, label, 0);
    fputs("\"\n", vars);
    cce_table_free(t);
    return CCE_OK;
}

/* ---- cce_budget ------------------------------------------------------------------------------ */

cce_status fig_data_cce_budget(const char *path, const cce_figure_runs *r, FILE *data, FILE *vars) {
    const cce_run_info *run;
    cce_table *t;
    size_t others;
    cce_status s = first_with(path, r, "cce_layers", "cce_budget", &run, &t, &others);
    static const char *const names[] = {"layer", "rho_planned", "rho_achieved", "R",
                                        "R_ffn", "R_attn",      "BI",           "u"};
    int c[8];
    for (int i = 0; !s && i < 8; i++) s = need_col(path, run, t, names[i], &c[i]);
    if (!s && t->n_rows == 0)
        s = cce_fail(CCE_ERR_NOT_FOUND, "%s: run %s: the table cce_layers has no rows", path,
                     run->id);
    if (s) {
        cce_table_free(t);
        return s;
    }
    double bimax = 0;
    for (size_t i = 0; i < t->n_rows; i++) bimax = fmax(bimax, cce_table_f64(t, i, c[6]));
    fprintf(data, "# figure cce_budget from %s\n", path);
    put_run_line(data, run, others);
    fprintf(data, "# per layer (table cce_layers): the planned and achieved fraction of the "
                  "block's weight parameters removed, the redundancy R (parameter-weighted mean "
                  "of R_ffn and R_attn), the block influence normalised BI / max BI, and the "
                  "budget score u = alpha R + (1 - alpha)(1 - BI / max BI)\n");
    fputs("layer\trho_planned\trho_achieved\tR\tR_ffn\tR_attn\tBI_norm\tu\tBI\n", data);
    for (size_t i = 0; i < t->n_rows; i++) {
        fprintf(data, "%lld", (long long)cce_table_i64(t, i, c[0]));
        double bi = cce_table_f64(t, i, c[6]);
        const double v[] = {cce_table_f64(t, i, c[1]), cce_table_f64(t, i, c[2]),
                            cce_table_f64(t, i, c[3]), cce_table_f64(t, i, c[4]),
                            cce_table_f64(t, i, c[5]), bimax > 0 ? bi / bimax : 0,
                            cce_table_f64(t, i, c[7]), bi};
        for (int k = 0; k < 8; k++) {
            fputc('\t', data);
            fig_put_num(data, v[k]);
        }
        fputc('\n', data);
    }
    char label[128];
    fig_run_label(run, 0, label, sizeof label);
    fprintf(vars, "nlayers = %zu\nrunlabel = \"%s ", t->n_rows, run->id);
    fig_put_cell(vars, label, 0);
    fputs("\"\n", vars);
    cce_table_free(t);
    return CCE_OK;
}
