/* Weight statistics (wstats.h): GSL statistics of each linear tensor before and after
 * compression, histograms on the dense tensor's edges, relative Frobenius error. */
#include "wstats.h"

#include <gsl/gsl_statistics_float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BINS 4096

static cce_wstats_options resolve(const cce_wstats_options *o) {
    cce_wstats_options r = o ? *o : (cce_wstats_options){0};
    if (r.bins == 0) r.bins = CCE_WSTATS_DEFAULT_BINS;
    return r;
}

static cce_status check_options(const cce_wstats_options *o) {
    if (o->bins < 1 || o->bins > MAX_BINS)
        return cce_fail(CCE_ERR_RANGE, "weight statistics: bins = %d is outside [1, %d]", o->bins,
                        MAX_BINS);
    if (!(o->range_std >= 0) || !isfinite(o->range_std))
        return cce_fail(CCE_ERR_RANGE,
                        "weight statistics: range_std = %g (0 for min/max, or a positive number "
                        "of standard deviations)",
                        o->range_std);
    return CCE_OK;
}

/* CCE_ERR_NUMERIC naming the first NaN or Inf of x [n]. */
static cce_status check_finite(const float *x, int64_t n, const char *name, const char *state) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return cce_fail(CCE_ERR_NUMERIC,
                            "weight statistics: %s%s%s: weight %lld is %s (NaN/Inf weights)", name,
                            state ? " " : "", state ? state : "", (long long)i,
                            isnan(x[i]) ? "NaN" : "Inf");
    return CCE_OK;
}

cce_status cce_wstats_edges(const float *x, int64_t n, const cce_wstats_options *o,
                            const char *name, double *lo, double *hi) {
    cce_wstats_options r = resolve(o);
    if (!name) name = "tensor";
    cce_status s = check_options(&r);
    if (s) return s;
    if (!x || n < 1) return cce_fail(CCE_ERR_ARG, "weight statistics: %s has no weights", name);
    if ((s = check_finite(x, n, name, NULL))) return s;
    float wmin, wmax;
    gsl_stats_float_minmax(&wmin, &wmax, x, 1, (size_t)n);
    double mean = gsl_stats_float_mean(x, 1, (size_t)n);
    double sd = n > 1 ? gsl_stats_float_sd_m(x, 1, (size_t)n, mean) : 0.0;
    if (wmin == wmax || (r.range_std > 0 && !(sd > 0))) {
        double v = r.range_std > 0 ? mean : wmin, h = 0.5 * fmax(1.0, fabs(v));
        *lo = v - h;
        *hi = v + h;
    } else if (r.range_std > 0) {
        *lo = mean - r.range_std * sd;
        *hi = mean + r.range_std * sd;
    } else {
        *lo = wmin;
        *hi = nextafter((double)wmax, INFINITY);
    }
    return CCE_OK;
}

void cce_wstats_dist_clear(cce_wstats_dist *d) {
    if (!d) return;
    cce_hist_free(d->hist);
    memset(d, 0, sizeof *d);
}

cce_status cce_wstats_describe(const float *x, int64_t n, int bins, double lo, double hi,
                               const char *name, cce_wstats_dist *out) {
    memset(out, 0, sizeof *out);
    if (!name) name = "tensor";
    if (!x || n < 1) return cce_fail(CCE_ERR_ARG, "weight statistics: %s has no weights", name);
    cce_status s = check_finite(x, n, name, NULL);
    if (s) return s;
    char what[160];
    snprintf(what, sizeof what, "weight statistics: %s: histogram", name);
    if ((s = cce_hist_new((size_t)(bins > 0 ? bins : 0), lo, hi, what, &out->hist))) return s;
    size_t un = (size_t)n;
    float wmin, wmax;
    gsl_stats_float_minmax(&wmin, &wmax, x, 1, un);
    out->numel = n;
    out->min = wmin;
    out->max = wmax;
    out->mean = gsl_stats_float_mean(x, 1, un);
    out->std = n > 1 ? gsl_stats_float_sd_m(x, 1, un, out->mean) : NAN;
    if (out->std > 0) {
        out->skewness = gsl_stats_float_skew_m_sd(x, 1, un, out->mean, out->std);
        out->excess_kurtosis = gsl_stats_float_kurtosis_m_sd(x, 1, un, out->mean, out->std);
    } else {
        out->skewness = out->excess_kurtosis = NAN;
    }
    int64_t zeros = 0;
    for (int64_t i = 0; i < n; i++) zeros += x[i] == 0.0f;
    out->zero_frac = (double)zeros / (double)n;
    cce_hist_add_floats(out->hist, x, un);
    return CCE_OK;
}

void cce_wstats_pair_clear(cce_wstats_pair *p) {
    if (!p) return;
    cce_wstats_dist_clear(&p->before);
    cce_wstats_dist_clear(&p->after);
    p->rel_fro_error = NAN;
}

/* "[a, b]" of a tensor's shape into buf. */
static void shape_text(const cce_tensor *t, char *buf, size_t cap) {
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->ndim && len < cap; d++)
        len +=
            (size_t)snprintf(buf + len, cap - len, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

/* ||a - b||_F / ||a||_F over n values, in double. */
static double rel_fro(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)a[i] * (double)a[i];
    }
    if (den == 0) return num == 0 ? 0.0 : NAN;
    return sqrt(num / den);
}

/* The statistics of dense and comp (which may have another shape: then rel_fro_error is NaN). */
static cce_status pair_of(const cce_tensor *dense, const cce_tensor *comp, const char *name,
                          const cce_wstats_options *o, int same_shape, cce_wstats_pair *out) {
    memset(out, 0, sizeof *out);
    out->rel_fro_error = NAN;
    int64_t nd = cce_tensor_numel(dense), nc = cce_tensor_numel(comp);
    double lo, hi;
    char what[200];
    snprintf(what, sizeof what, "%s (dense)", name);
    cce_status s = cce_wstats_edges(dense->data, nd, o, what, &lo, &hi);
    if (!s) s = cce_wstats_describe(dense->data, nd, o->bins, lo, hi, what, &out->before);
    snprintf(what, sizeof what, "%s (compressed)", name);
    if (!s) s = cce_wstats_describe(comp->data, nc, o->bins, lo, hi, what, &out->after);
    if (s) {
        cce_wstats_pair_clear(out);
        return s;
    }
    if (same_shape) out->rel_fro_error = rel_fro(dense->data, comp->data, nd);
    return CCE_OK;
}

cce_status cce_wstats_compare(const cce_tensor *dense, const cce_tensor *comp, const char *name,
                              const cce_wstats_options *o, cce_wstats_pair *out) {
    if (!out) return cce_fail(CCE_ERR_ARG, "weight statistics: no output");
    memset(out, 0, sizeof *out);
    if (!name) name = "tensor";
    if (!dense || !comp)
        return cce_fail(CCE_ERR_ARG, "weight statistics: %s: missing %s tensor", name,
                        dense ? "compressed" : "dense");
    cce_wstats_options r = resolve(o);
    cce_status s = check_options(&r);
    if (s) return s;
    if (!cce_tensor_same_shape(dense, comp)) {
        char a[96], b[96];
        shape_text(dense, a, sizeof a);
        shape_text(comp, b, sizeof b);
        return cce_fail(CCE_ERR_ARG,
                        "weight statistics: %s: the compressed tensor's shape %s differs from the "
                        "dense %s",
                        name, b, a);
    }
    return pair_of(dense, comp, name, &r, 1, out);
}

/* ---- The table ------------------------------------------------------------------------------- */

enum {
    C_LAYER,
    C_TENSOR,
    C_ROWS,
    C_COLS,
    C_STATE0, /* per state: mean std skewness excess_kurtosis min max zero_frac underflow overflow
               */
    N_STATE_COLS = 9,
    C_REL_FRO = C_STATE0 + 2 * N_STATE_COLS,
    C_HIST_LO,
    C_HIST_HI,
    C_HIST_BEFORE,
    C_HIST_AFTER,
    C_EDGES,
    C_NOTE,
    N_COLS
};

cce_status cce_wstats_table_new(const cce_wstats_options *o, cce_table **out) {
    *out = NULL;
    cce_wstats_options r = resolve(o);
    cce_status s = check_options(&r);
    if (s) return s;
    cce_table *t;
    if ((s = cce_table_new(CCE_WSTATS_TABLE, &t))) return s;
    static const char *const state_cols[N_STATE_COLS][2] = {
        {"mean", "mean of the weights"},
        {"std", "sample standard deviation (n - 1)"},
        {"skewness", "skewness, GSL convention: mean(((x - mean) / std)^3)"},
        {"excess_kurtosis", "excess kurtosis: mean(((x - mean) / std)^4) - 3 (Gaussian 0)"},
        {"min", "smallest weight"},
        {"max", "largest weight"},
        {"zero_frac", "fraction of exact zeros"},
        {"underflow", "weights below hist_lo (not in the histogram)"},
        {"overflow", "weights at or above hist_hi (not in the histogram)"},
    };
    char edges_meaning[200];
    snprintf(edges_meaning, sizeof edges_meaning, "the %d + 1 histogram edges, from the dense %s",
             r.bins,
             r.range_std > 0 ? "tensor's mean +- range_std std" : "tensor's min and max (+1 ulp)");
    s = cce_table_add_column(t, "layer", CCE_COL_I64, 1, "block index (-1 outside the blocks)");
    if (!s) s = cce_table_add_column(t, "tensor", CCE_COL_STR, 1, "tensor name");
    if (!s) s = cce_table_add_column(t, "rows", CCE_COL_I64, 1, "rows of the dense tensor");
    if (!s) s = cce_table_add_column(t, "cols", CCE_COL_I64, 1, "columns of the dense tensor");
    for (int st = 0; st < 2 && !s; st++) {
        for (int k = 0; k < N_STATE_COLS && !s; k++) {
            char name[64], meaning[160];
            snprintf(name, sizeof name, "%s_%s", state_cols[k][0], st ? "after" : "before");
            snprintf(meaning, sizeof meaning, "%s, %s compression", state_cols[k][1],
                     st ? "after" : "before");
            s = cce_table_add_column(t, name, k >= 7 ? CCE_COL_I64 : CCE_COL_F64, 1, meaning);
        }
    }
    if (!s)
        s = cce_table_add_column(t, "rel_fro_error", CCE_COL_F64, 1,
                                 "||W - W'||_F / ||W||_F (nan: shapes differ or layer removed)");
    if (!s) s = cce_table_add_column(t, "hist_lo", CCE_COL_F64, 1, "lowest histogram edge");
    if (!s) s = cce_table_add_column(t, "hist_hi", CCE_COL_F64, 1, "highest histogram edge");
    if (!s)
        s = cce_table_add_column(t, "hist_before", CCE_COL_F64VEC, (size_t)r.bins,
                                 "histogram counts of the dense weights");
    if (!s)
        s = cce_table_add_column(t, "hist_after", CCE_COL_F64VEC, (size_t)r.bins,
                                 "histogram counts of the compressed weights, same edges");
    if (!s) s = cce_table_add_column(t, "edges", CCE_COL_F64VEC, (size_t)r.bins + 1, edges_meaning);
    if (!s) s = cce_table_add_column(t, "note", CCE_COL_STR, 1, "remark (removed layer, shapes)");
    if (s) {
        cce_table_free(t);
        return s;
    }
    *out = t;
    return CCE_OK;
}

/* The state columns of d (NULL: NaN statistics) from column c0 of row r. */
static cce_status put_state(cce_table *t, size_t r, int c0, const cce_wstats_dist *d) {
    const double nan = NAN;
    const double v[7] = {
        d ? d->mean : nan, d ? d->std : nan, d ? d->skewness : nan, d ? d->excess_kurtosis : nan,
        d ? d->min : nan,  d ? d->max : nan, d ? d->zero_frac : nan};
    cce_status s = CCE_OK;
    for (int k = 0; k < 7 && !s; k++) s = cce_table_set_f64(t, r, c0 + k, v[k]);
    if (!s) s = cce_table_set_i64(t, r, c0 + 7, d && d->hist ? (int64_t)d->hist->underflow : 0);
    if (!s) s = cce_table_set_i64(t, r, c0 + 8, d && d->hist ? (int64_t)d->hist->overflow : 0);
    return s;
}

cce_status cce_wstats_table_add(cce_table *t, int layer, const char *tensor, int64_t rows,
                                int64_t cols, const cce_wstats_pair *p, const char *note) {
    if (!t || !p || !p->before.hist)
        return cce_fail(CCE_ERR_ARG, "weight statistics: no table or no statistics");
    if (t->n_cols != N_COLS || strcmp(t->name, CCE_WSTATS_TABLE) != 0)
        return cce_fail(CCE_ERR_ARG, "weight statistics: table %s is not a weights table", t->name);
    size_t bins = cce_hist_bins(p->before.hist);
    if (t->cols[C_HIST_BEFORE].width != bins ||
        (p->after.hist && cce_hist_bins(p->after.hist) != bins))
        return cce_fail(CCE_ERR_ARG,
                        "weight statistics: %s: histograms of %zu bins for a table of %zu",
                        tensor ? tensor : "tensor", bins, t->cols[C_HIST_BEFORE].width);
    double *buf = malloc((bins + 1) * sizeof *buf); /* [bins + 1] */
    if (!buf) return cce_fail(CCE_ERR_NOMEM, "weight statistics: %zu bins", bins);
    size_t r;
    cce_status s = cce_table_add_row(t, &r);
    if (!s) s = cce_table_set_i64(t, r, C_LAYER, layer);
    if (!s) s = cce_table_set_str(t, r, C_TENSOR, tensor);
    if (!s) s = cce_table_set_i64(t, r, C_ROWS, rows);
    if (!s) s = cce_table_set_i64(t, r, C_COLS, cols);
    if (!s) s = put_state(t, r, C_STATE0, &p->before);
    if (!s) s = put_state(t, r, C_STATE0 + N_STATE_COLS, p->after.hist ? &p->after : NULL);
    if (!s) s = cce_table_set_f64(t, r, C_REL_FRO, p->rel_fro_error);
    if (!s) s = cce_table_set_f64(t, r, C_HIST_LO, cce_hist_lo(p->before.hist));
    if (!s) s = cce_table_set_f64(t, r, C_HIST_HI, cce_hist_hi(p->before.hist));
    if (!s) {
        cce_hist_counts(p->before.hist, buf);
        s = cce_table_set_vec(t, r, C_HIST_BEFORE, buf);
    }
    if (!s) {
        if (p->after.hist)
            cce_hist_counts(p->after.hist, buf);
        else
            memset(buf, 0, bins * sizeof *buf);
        s = cce_table_set_vec(t, r, C_HIST_AFTER, buf);
    }
    if (!s) {
        cce_hist_edges(p->before.hist, buf);
        s = cce_table_set_vec(t, r, C_EDGES, buf);
    }
    if (!s) s = cce_table_set_str(t, r, C_NOTE, note);
    free(buf);
    return s;
}

/* ---- Whole models ---------------------------------------------------------------------------- */

/* One tensor to measure. */
typedef struct wjob {
    int layer;
    char name[96];
    const cce_tensor *dense, *comp; /* comp NULL: the layer was removed */
    int same_shape;
    char note[96];
    cce_wstats_pair pair;
    cce_status status;
    char detail[320]; /* the failure's message (cce_fail's detail is per thread) */
} wjob;

static const cce_layer_tensor LINEAR[] = {CCE_LT_Q,    CCE_LT_K,  CCE_LT_V,   CCE_LT_O,
                                          CCE_LT_GATE, CCE_LT_UP, CCE_LT_DOWN};
#define N_LINEAR (sizeof LINEAR / sizeof LINEAR[0])

/* The jobs of every linear tensor (loading the tensors here, outside the parallel part). */
static cce_status make_jobs(cce_model *base, cce_model *variant, wjob *jobs, size_t *n_jobs) {
    const cce_config *cfg = cce_model_config(base);
    size_t n = 0;
    cce_status s = CCE_OK;
    for (int l = 0; l < cfg->n_layers && !s; l++) {
        if (cce_model_layer(base, l)->removed) continue;
        int removed = cce_model_layer(variant, l)->removed;
        for (size_t k = 0; k < N_LINEAR && !s; k++) {
            wjob *j = &jobs[n];
            memset(j, 0, sizeof *j);
            j->layer = l;
            cce_layer_tensor_name(l, LINEAR[k], j->name, sizeof j->name);
            cce_tensor *d, *c = NULL;
            if ((s = cce_model_layer_tensor(base, l, LINEAR[k], &d))) break;
            if (!removed && (s = cce_model_layer_tensor(variant, l, LINEAR[k], &c))) break;
            j->dense = d;
            j->comp = c;
            if (removed) snprintf(j->note, sizeof j->note, "layer removed");
            j->same_shape = c && cce_tensor_same_shape(d, c);
            if (c && !j->same_shape) {
                char a[40], b[40];
                shape_text(d, a, sizeof a);
                shape_text(c, b, sizeof b);
                snprintf(j->note, sizeof j->note, "shape %s, dense %s", b, a);
            }
            n++;
        }
    }
    if (!s && !cfg->tied_embeddings) {
        wjob *j = &jobs[n];
        memset(j, 0, sizeof *j);
        j->layer = -1;
        snprintf(j->name, sizeof j->name, "%s", cce_global_tensor_name(CCE_GT_LM_HEAD));
        cce_tensor *d, *c;
        if (!(s = cce_model_global_tensor(base, CCE_GT_LM_HEAD, &d)) &&
            !(s = cce_model_global_tensor(variant, CCE_GT_LM_HEAD, &c))) {
            j->dense = d;
            j->comp = c;
            j->same_shape = cce_tensor_same_shape(d, c);
            n++;
        }
    }
    *n_jobs = n;
    return s;
}

/* Measures one job (in a worker thread). */
static void run_job(wjob *j, const cce_wstats_options *o) {
    if (j->comp) {
        j->status = pair_of(j->dense, j->comp, j->name, o, j->same_shape, &j->pair);
    } else {
        /* Removed: the dense statistics alone. */
        double lo, hi;
        char what[200];
        snprintf(what, sizeof what, "%s (dense)", j->name);
        j->pair.rel_fro_error = NAN;
        int64_t n = cce_tensor_numel(j->dense);
        j->status = cce_wstats_edges(j->dense->data, n, o, what, &lo, &hi);
        if (!j->status)
            j->status =
                cce_wstats_describe(j->dense->data, n, o->bins, lo, hi, what, &j->pair.before);
    }
    if (j->status) snprintf(j->detail, sizeof j->detail, "%s", cce_error_detail());
}

cce_status cce_wstats_model(cce_model *base, cce_model *variant, const cce_wstats_options *o,
                            cce_table **out) {
    if (!out) return cce_fail(CCE_ERR_ARG, "weight statistics: no output");
    *out = NULL;
    if (!base || !variant) return cce_fail(CCE_ERR_ARG, "weight statistics: no model");
    cce_wstats_options r = resolve(o);
    cce_status s = check_options(&r);
    if (s) return s;
    const cce_config *a = cce_model_config(base), *b = cce_model_config(variant);
    if (a->dim != b->dim || a->n_layers != b->n_layers || a->vocab_size != b->vocab_size)
        return cce_fail(CCE_ERR_ARG,
                        "weight statistics: the variant (dim %d, %d layers, vocabulary %d) does "
                        "not match the base (dim %d, %d layers, vocabulary %d)",
                        (int)b->dim, (int)b->n_layers, (int)b->vocab_size, (int)a->dim,
                        (int)a->n_layers, (int)a->vocab_size);
    size_t cap = (size_t)a->n_layers * N_LINEAR + 1, n = 0;
    wjob *jobs = calloc(cap, sizeof *jobs); /* [cap] */
    cce_table *t = NULL;
    if (!jobs) return cce_fail(CCE_ERR_NOMEM, "weight statistics: %zu tensors", cap);
    if (!(s = make_jobs(base, variant, jobs, &n))) {
#pragma omp parallel for schedule(dynamic, 1)
        for (size_t i = 0; i < n; i++) run_job(&jobs[i], &r);
        for (size_t i = 0; i < n && !s; i++)
            if (jobs[i].status) s = cce_fail(jobs[i].status, "%s", jobs[i].detail);
    }
    if (!s) s = cce_wstats_table_new(&r, &t);
    for (size_t i = 0; i < n && !s; i++)
        s = cce_wstats_table_add(t, jobs[i].layer, jobs[i].name, cce_tensor_rows(jobs[i].dense),
                                 cce_tensor_cols(jobs[i].dense), &jobs[i].pair, jobs[i].note);
    for (size_t i = 0; i < n; i++) cce_wstats_pair_clear(&jobs[i].pair);
    free(jobs);
    if (s) {
        cce_table_free(t);
        return s;
    }
    *out = t;
    return CCE_OK;
}
