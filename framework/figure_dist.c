/* Figure data from the distribution tables of runs (figure.h): act_hist and act_stats from
 * "activations" (astats.h), weight_dist from "weights" (wstats.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "figure_internal.h"

#define MAX_PANELS 16
#define GRID_BINS  60 /* weight_dist: the common grid of a layer's pooled tensors */

static int is_dense(const cce_run_info *run) {
    const char *s = cce_run_attr(run, "strategy");
    return s && strcmp(s, "dense") == 0;
}

/* Columns of a table, by name (-1 when missing). */
static int col(const cce_table *t, const char *name) {
    return t ? cce_table_column(t, name) : -1;
}

/* The series of a distribution figure: an optional reference table (dense) and the tables of the
 * compressed runs. */
typedef struct series {
    const cce_run_info *dense_run;
    cce_table *dense; /* owned */
    size_t n;
    const cce_run_info **runs; /* [n] */
    cce_table **tables;        /* [n] borrowed from all_tables */
    cce_table **all_tables;    /* [r->n] owned */
    size_t n_all;
} series;

static void series_free(series *s) {
    cce_table_free(s->dense);
    fig_tables_free(s->all_tables, s->n_all);
    free(s->runs);
    free(s->tables);
    memset(s, 0, sizeof *s);
}

/* Reads table `name` of the selected runs; the dense run (selected or, failing that, the dense
 * run of the first selected run's experiment) becomes the reference when want_dense. */
static cce_status series_read(const char *path, const cce_figure_runs *r, const char *name,
                              int want_dense, series *out) {
    memset(out, 0, sizeof *out);
    cce_status s = fig_read_tables(path, r, name, &out->all_tables);
    if (s) return s;
    out->n_all = r->n;
    out->runs = calloc(r->n, sizeof *out->runs);
    out->tables = calloc(r->n, sizeof *out->tables);
    if (!out->runs || !out->tables) return cce_fail(CCE_ERR_NOMEM, "figure series");
    for (size_t i = 0; i < r->n; i++) {
        if (!out->all_tables[i]) continue;
        if (is_dense(r->sel[i])) {
            if (want_dense && !out->dense_run) {
                out->dense_run = r->sel[i];
                out->dense = out->all_tables[i];
                out->all_tables[i] = NULL;
            }
            continue;
        }
        out->runs[out->n] = r->sel[i];
        out->tables[out->n++] = out->all_tables[i];
    }
    if (want_dense && !out->dense_run && out->n) {
        const cce_run_info *d = fig_dense_run(r, out->runs[0]);
        int has = 0;
        for (size_t k = 0; d && k < d->n_tables; k++)
            if (strcmp(d->table_names[k], name) == 0) has = 1;
        if (has) {
            s = cce_results_read_table(path, d->id, name, &out->dense);
            if (s) return s;
            out->dense_run = d;
        }
    }
    if (!out->n && !out->dense)
        return cce_fail(CCE_ERR_NOT_FOUND, "%s: no selected run has a table '%s'", path, name);
    return CCE_OK;
}

static int max_layer(const series *sr) {
    int m = -1;
    for (size_t j = 0; j <= sr->n; j++) {
        const cce_table *t = j < sr->n ? sr->tables[j] : sr->dense;
        int c = col(t, "layer");
        for (size_t i = 0; c >= 0 && i < t->n_rows; i++)
            if (cce_table_i64(t, i, c) > m) m = (int)cce_table_i64(t, i, c);
    }
    return m;
}

/* The row of an activations table for (domain, layer, site), or -1. */
static long act_row(const cce_table *t, const char *domain, int layer, const char *site) {
    int cd = col(t, "domain"), cl = col(t, "layer"), cs = col(t, "site");
    if (cd < 0 || cl < 0 || cs < 0) return -1;
    for (size_t i = 0; i < t->n_rows; i++)
        if (cce_table_i64(t, i, cl) == layer && strcmp(cce_table_str(t, i, cd), domain) == 0 &&
            strcmp(cce_table_str(t, i, cs), site) == 0)
            return (long)i;
    return -1;
}

static void put_series_vars(FILE *vars, const series *sr, int with_dense) {
    fprintf(vars, "nseries = %zu\nblocks = \"", sr->n + (with_dense ? 1 : 0));
    if (with_dense) fputs("dense", vars);
    for (size_t j = 0; j < sr->n; j++) {
        if (j || with_dense) fputc(' ', vars);
        fig_put_cell(vars, cce_run_attr(sr->runs[j], "strategy"), 1);
    }
    fputs("\"\n", vars);
}

static void put_series_header(FILE *data, const char *first, const series *sr, int with_dense,
                              const char *dense_name) {
    fputs(first, data);
    if (with_dense) fprintf(data, "\t%s", dense_name);
    for (size_t j = 0; j < sr->n; j++) {
        char label[128];
        fig_run_label(sr->runs[j], 0, label, sizeof label);
        fputc('\t', data);
        fig_put_cell(data, label, 0);
    }
    fputc('\n', data);
}

static const char *check_site(const cce_figure_options *o) {
    const char *site = o->site && *o->site ? o->site : "block_out";
    if (strcmp(site, "block_out") != 0 && strcmp(site, "ffn_act") != 0) return NULL;
    return site;
}

/* ---- act_hist -------------------------------------------------------------------------------- */

cce_status fig_data_act_hist(const char *path, const cce_figure_runs *r,
                             const cce_figure_options *o, FILE *data, FILE *vars) {
    const char *site = check_site(o);
    if (!site) return cce_fail(CCE_ERR_ARG, "site '%s': block_out or ffn_act expected", o->site);
    series sr;
    cce_status s = series_read(path, r, "activations", 1, &sr);
    if (s) {
        series_free(&sr);
        return s;
    }
    const cce_table *first = sr.dense ? sr.dense : sr.tables[0];
    const char *domain = o->domain && *o->domain ? o->domain : NULL;
    if (!domain && col(first, "domain") >= 0 && first->n_rows)
        domain = cce_table_str(first, 0, col(first, "domain"));
    int layers[MAX_PANELS];
    size_t nl = 0;
    if (!domain) s = cce_fail(CCE_ERR_NOT_FOUND, "%s: the activations tables are empty", path);
    if (!s) s = fig_parse_layers(o->layers, max_layer(&sr) + 1, layers, MAX_PANELS, &nl);
    int with_dense = sr.dense != NULL;
    size_t bins = 0;
    double lo = NAN, hi = NAN;
    if (!s) {
        long row = act_row(first, domain, layers[0], site);
        int ch = col(first, "hist");
        if (row < 0 || ch < 0)
            s = cce_fail(CCE_ERR_NOT_FOUND,
                         "%s: no activation histogram for domain '%s', layer %d, site %s", path,
                         domain, layers[0], site);
        else
            bins = first->cols[ch].width;
    }
    if (!s) {
        fprintf(data, "# figure act_hist from %s: domain %s, site %s\n", path, domain, site);
        fprintf(data, "# density = count / (values x bin width), values = count column "
                      "(underflow and overflow included); bins share the dense reference's "
                      "edges\n");
        fprintf(data,
                "# one block per layer; columns: x (bin centre), then %s one column per "
                "compressed run\n",
                with_dense ? "the dense run, then" : "");
    }
    for (size_t p = 0; !s && p < nl; p++) {
        if (p) fputs("\n\n", data);
        char first_col[32];
        snprintf(first_col, sizeof first_col, "layer_%d", layers[p]);
        put_series_header(data, first_col, &sr, with_dense, "dense");
        size_t ns = sr.n + (size_t)with_dense;
        const double *h[64] = {0};
        double total[64] = {0};
        for (size_t j = 0; j < ns && j < 64; j++) {
            const cce_table *t = with_dense ? (j == 0 ? sr.dense : sr.tables[j - 1]) : sr.tables[j];
            long row = act_row(t, domain, layers[p], site);
            int ch = col(t, "hist"), cc = col(t, "count");
            if (row < 0 || ch < 0 || cc < 0 || t->cols[ch].width != bins) continue;
            double tlo = cce_table_f64(t, (size_t)row, col(t, "hist_lo"));
            double thi = cce_table_f64(t, (size_t)row, col(t, "hist_hi"));
            if (isnan(lo)) {
                lo = tlo;
                hi = thi;
            }
            if (tlo != lo || thi != hi) continue; /* other edges: not comparable */
            h[j] = cce_table_vec(t, (size_t)row, ch);
            total[j] = (double)cce_table_i64(t, (size_t)row, cc);
        }
        double w = (hi - lo) / (double)bins;
        for (size_t b = 0; b < bins; b++) {
            fig_put_num(data, lo + ((double)b + 0.5) * w);
            for (size_t j = 0; j < ns; j++) {
                fputc('\t', data);
                fig_put_num(data, j < 64 && h[j] && total[j] > 0 ? h[j][b] / (total[j] * w) : NAN);
            }
            fputc('\n', data);
        }
        lo = hi = NAN;
    }
    if (!s) {
        put_series_vars(vars, &sr, with_dense);
        fprintf(vars, "npanels = %zu\npanels = \"", nl);
        for (size_t p = 0; p < nl; p++) fprintf(vars, "%s%d", p ? " " : "", layers[p]);
        fprintf(vars, "\"\nxunit = \"activation value (%s, domain ", site);
        fig_put_cell(vars, domain, 0);
        fputs(")\"\n", vars);
    }
    series_free(&sr);
    return s;
}

/* ---- act_stats ------------------------------------------------------------------------------- */

cce_status fig_data_act_stats(const char *path, const cce_figure_runs *r,
                              const cce_figure_options *o, FILE *data, FILE *vars) {
    const char *site = check_site(o);
    if (!site) return cce_fail(CCE_ERR_ARG, "site '%s': block_out or ffn_act expected", o->site);
    series sr;
    cce_status s = series_read(path, r, "activations", 0, &sr);
    if (!s && sr.n == 0)
        s = cce_fail(CCE_ERR_NOT_FOUND,
                     "%s: no selected compressed run has a table 'activations' (figure "
                     "act_stats compares runs with the dense model)",
                     path);
    if (s) {
        series_free(&sr);
        return s;
    }
    /* domains: the union, in the order met */
    const char *domains[16];
    size_t nd = 0;
    for (size_t j = 0; j < sr.n; j++) {
        const cce_table *t = sr.tables[j];
        int cd = col(t, "domain");
        for (size_t i = 0; cd >= 0 && i < t->n_rows; i++) {
            const char *d = cce_table_str(t, i, cd);
            size_t k = 0;
            while (k < nd && strcmp(domains[k], d) != 0) k++;
            if (k == nd && nd < 16) domains[nd++] = d;
        }
    }
    if (o->domain && *o->domain) {
        size_t k = 0;
        while (k < nd && strcmp(domains[k], o->domain) != 0) k++;
        if (k == nd) {
            series_free(&sr);
            return cce_fail(CCE_ERR_NOT_FOUND, "%s: no activations of domain '%s'", path,
                            o->domain);
        }
        domains[0] = domains[k];
        nd = 1;
    }
    int nlay = max_layer(&sr) + 1;
    fprintf(data, "# figure act_stats from %s: site %s\n", path, site);
    fprintf(data, "# per layer against the dense model on the same tokens: cosine (mean over "
                  "positions), rel_l2, kurt_shift = excess kurtosis - the dense reference's\n");
    fprintf(data, "# block d * nruns + j: domain d, run j (columns: layer cosine rel_l2 "
                  "kurt_shift; the first row names the domain and run)\n");
    for (size_t d = 0; d < nd; d++) {
        for (size_t j = 0; j < sr.n; j++) {
            if (d || j) fputs("\n\n", data);
            char label[128];
            fig_run_label(sr.runs[j], 0, label, sizeof label);
            fputs("layer\t", data);
            fig_put_cell(data, label, 0);
            fputs("\trel_l2\tkurt_shift\n", data);
            const cce_table *t = sr.tables[j];
            for (int l = 0; l < nlay; l++) {
                long row = act_row(t, domains[d], l, site);
                fprintf(data, "%d", l);
                double v[3] = {NAN, NAN, NAN};
                if (row >= 0) {
                    v[0] = cce_table_f64(t, (size_t)row, col(t, "cosine"));
                    v[1] = cce_table_f64(t, (size_t)row, col(t, "rel_l2"));
                    v[2] = cce_table_f64(t, (size_t)row, col(t, "excess_kurtosis")) -
                           cce_table_f64(t, (size_t)row, col(t, "ref_excess_kurtosis"));
                }
                for (int k = 0; k < 3; k++) {
                    fputc('\t', data);
                    fig_put_num(data, v[k]);
                }
                fputc('\n', data);
            }
        }
    }
    put_series_vars(vars, &sr, 0);
    fprintf(vars, "nruns = %zu\nndomains = %zu\ndomains = \"", sr.n, nd);
    for (size_t d = 0; d < nd; d++) {
        if (d) fputc(' ', vars);
        fig_put_cell(vars, domains[d], 1);
    }
    fprintf(vars, "\"\nsite = \"%s\"\nnlayers = %d\n", site, nlay);
    series_free(&sr);
    return CCE_OK;
}

/* ---- weight_dist ----------------------------------------------------------------------------- */

/* Adds a histogram of `bins` bins over [lo, hi) to the grid [glo, ghi) of GRID_BINS bins, each
 * bin's count spread over the grid bins in proportion to their overlap. */
static void regrid(const double *h, size_t bins, double lo, double hi, double glo, double ghi,
                   double *grid) {
    double w = (hi - lo) / (double)bins, gw = (ghi - glo) / GRID_BINS;
    for (size_t b = 0; b < bins; b++) {
        double a = lo + (double)b * w, z = a + w;
        if (!(h[b] > 0)) continue;
        long g0 = (long)floor((a - glo) / gw), g1 = (long)floor((z - glo) / gw);
        if (g0 < 0) g0 = 0;
        if (g1 >= GRID_BINS) g1 = GRID_BINS - 1;
        for (long g = g0; g <= g1; g++) {
            double ga = glo + (double)g * gw, gz = ga + gw;
            double ov = fmin(z, gz) - fmax(a, ga);
            if (ov > 0) grid[g] += h[b] * ov / w;
        }
    }
}

cce_status fig_data_weight_dist(const char *path, const cce_figure_runs *r,
                                const cce_figure_options *o, FILE *data, FILE *vars) {
    series sr;
    cce_status s = series_read(path, r, "weights", 0, &sr);
    if (!s && sr.n == 0)
        s = cce_fail(CCE_ERR_NOT_FOUND,
                     "%s: no selected compressed run has a table 'weights' (figure weight_dist)",
                     path);
    if (s) {
        series_free(&sr);
        return s;
    }
    int layers[MAX_PANELS];
    size_t nl = 0;
    s = fig_parse_layers(o->layers, max_layer(&sr) + 1, layers, MAX_PANELS, &nl);
    if (s) {
        series_free(&sr);
        return s;
    }
    fprintf(data, "# figure weight_dist from %s\n", path);
    fprintf(data,
            "# weights of each layer's tensors pooled on one grid of %d bins over the "
            "union of their histogram edges (table weights; counts spread by overlap); "
            "density = count / (weights x bin width)\n",
            GRID_BINS);
    fprintf(data, "# one block per layer; columns: x (bin centre), before (the dense weights, "
                  "from the first run), then one column per run (after)\n");
    for (size_t p = 0; p < nl; p++) {
        /* the grid: union of the layer's edges over every run */
        double glo = INFINITY, ghi = -INFINITY;
        for (size_t j = 0; j < sr.n; j++) {
            const cce_table *t = sr.tables[j];
            int cl = col(t, "layer"), clo = col(t, "hist_lo"), chi = col(t, "hist_hi");
            for (size_t i = 0; cl >= 0 && clo >= 0 && chi >= 0 && i < t->n_rows; i++) {
                if (cce_table_i64(t, i, cl) != layers[p]) continue;
                glo = fmin(glo, cce_table_f64(t, i, clo));
                ghi = fmax(ghi, cce_table_f64(t, i, chi));
            }
        }
        if (!(glo < ghi)) {
            series_free(&sr);
            return cce_fail(CCE_ERR_NOT_FOUND, "%s: no weight histograms of layer %d", path,
                            layers[p]);
        }
        double grid[65][GRID_BINS];
        double total[65] = {0};
        memset(grid, 0, sizeof grid);
        size_t ns = sr.n + 1 < 65 ? sr.n + 1 : 65;
        for (size_t j = 0; j + 1 < ns; j++) {
            const cce_table *t = sr.tables[j];
            int cl = col(t, "layer"), clo = col(t, "hist_lo"), chi = col(t, "hist_hi");
            int cb = col(t, "hist_before"), ca = col(t, "hist_after");
            int cr = col(t, "rows"), cc = col(t, "cols");
            if (cl < 0 || cb < 0 || ca < 0 || cr < 0 || cc < 0) continue;
            size_t bins = t->cols[cb].width;
            for (size_t i = 0; i < t->n_rows; i++) {
                if (cce_table_i64(t, i, cl) != layers[p]) continue;
                double lo = cce_table_f64(t, i, clo), hi = cce_table_f64(t, i, chi);
                double numel = (double)cce_table_i64(t, i, cr) * (double)cce_table_i64(t, i, cc);
                const double *ha = cce_table_vec(t, i, ca);
                if (ha && !isnan(ha[0])) {
                    regrid(ha, bins, lo, hi, glo, ghi, grid[j + 1]);
                    total[j + 1] += numel;
                }
                if (j == 0) {
                    regrid(cce_table_vec(t, i, cb), bins, lo, hi, glo, ghi, grid[0]);
                    total[0] += numel;
                }
            }
        }
        if (p) fputs("\n\n", data);
        char first_col[32];
        snprintf(first_col, sizeof first_col, "layer_%d", layers[p]);
        put_series_header(data, first_col, &sr, 1, "before (dense)");
        double gw = (ghi - glo) / GRID_BINS;
        for (int g = 0; g < GRID_BINS; g++) {
            fig_put_num(data, glo + (g + 0.5) * gw);
            for (size_t j = 0; j < ns; j++) {
                fputc('\t', data);
                fig_put_num(data, total[j] > 0 ? grid[j][g] / (total[j] * gw) : NAN);
            }
            fputc('\n', data);
        }
    }
    put_series_vars(vars, &sr, 1);
    fprintf(vars, "npanels = %zu\npanels = \"", nl);
    for (size_t p = 0; p < nl; p++) fprintf(vars, "%s%d", p ? " " : "", layers[p]);
    fputs("\"\nxunit = \"weight value\"\n", vars);
    series_free(&sr);
    return CCE_OK;
}
