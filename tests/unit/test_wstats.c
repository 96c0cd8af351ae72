/* Weight statistics (wstats.h) and histograms (stats_hist.h): GSL statistics of generated
 * Gaussian and Laplace samples against theory, histogram edges and underflow / overflow counts,
 * histogram KL, relative Frobenius error, the "weights" table of a variant with one scaled tensor,
 * and bad input (NaN weights, mismatched shapes, models that do not match). */
#include "test_support.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures.h"
#include "model.h"
#include "stats_hist.h"
#include "synth.h"
#include "wstats.h"

/* ---- Histograms ------------------------------------------------------------------------------ */

static void test_hist_under_overflow(void **state) {
    (void)state;
    cce_hist *h;
    assert_int_equal(cce_hist_new(0, 0, 1, "h", &h), CCE_ERR_RANGE);
    assert_int_equal(cce_hist_new(4, 1, 1, "h", &h), CCE_ERR_RANGE);
    assert_int_equal(cce_hist_new(4, 0, INFINITY, "h", &h), CCE_ERR_RANGE);
    assert_cce_ok(cce_hist_new(4, -1.0, 1.0, "h", &h));
    /* bins [-1,-.5) [-.5,0) [0,.5) [.5,1); 1.0 itself is overflow, -1.0 is in the first bin */
    const float x[] = {-2.0f, -1.0f, -0.75f, 0.0f, 0.25f, 0.5f, 0.99f, 1.0f, 3.0f, NAN, -1e30f};
    cce_hist_add_floats(h, x, sizeof x / sizeof x[0]);
    double counts[4], edges[5];
    cce_hist_counts(h, counts);
    cce_hist_edges(h, edges);
    const double want[4] = {2, 0, 2, 2}, want_edges[5] = {-1, -0.5, 0, 0.5, 1};
    assert_memory_equal(counts, want, sizeof want);
    assert_memory_equal(edges, want_edges, sizeof want_edges);
    assert_int_equal(h->underflow, 2);    /* -2, -1e30 */
    assert_int_equal(h->overflow, 2);     /* 1.0, 3.0 */
    assert_true(cce_hist_total(h) == 10); /* NaN nowhere */
    cce_hist *g;
    assert_cce_ok(cce_hist_new(4, -1.0, 1.0, "g", &g));
    cce_hist_add_floats(g, x, 3);
    assert_cce_ok(cce_hist_merge(g, h));
    assert_int_equal(g->underflow, 3);
    assert_true(cce_hist_total(g) == 13);
    cce_hist_reset(g);
    assert_true(cce_hist_total(g) == 0);
    cce_hist *other;
    assert_cce_ok(cce_hist_new(4, -1.0, 2.0, "o", &other));
    assert_int_equal(cce_hist_merge(g, other), CCE_ERR_ARG);
    cce_hist_free(other);
    cce_hist_free(g);
    cce_hist_free(h);
}

/* The inlined bin search counts exactly as gsl_histogram_increment, edges and their float
 * neighbours included. */
static void test_hist_matches_gsl(void **state) {
    (void)state;
    const double ranges[][2] = {{-1.3, 2.9}, {-8.0, 8.0}, {1e-3, 1e-3 + 1e-9}, {-1e6, 3.0}};
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 1);
    enum { N = 30000 };
    float *x = malloc(N * sizeof *x);
    for (size_t c = 0; c < sizeof ranges / sizeof ranges[0]; c++) {
        for (size_t bins = 1; bins <= 97; bins += 32) {
            cce_hist *h;
            assert_cce_ok(cce_hist_new(bins, ranges[c][0], ranges[c][1], "h", &h));
            gsl_histogram *g = gsl_histogram_alloc(bins);
            gsl_histogram_set_ranges_uniform(g, ranges[c][0], ranges[c][1]);
            for (int i = 0; i < N; i++) {
                double e = g->range[gsl_rng_uniform_int(rng, bins + 1)];
                double w = ranges[c][1] - ranges[c][0];
                switch (i % 4) {
                case 0:
                    x[i] = (float)e;
                    break;
                case 1:
                    x[i] = nextafterf((float)e, -INFINITY);
                    break;
                case 2:
                    x[i] = nextafterf((float)e, INFINITY);
                    break;
                default:
                    x[i] = (float)(ranges[c][0] - 0.1 * w + 1.2 * w * gsl_rng_uniform(rng));
                }
            }
            cce_hist_add_floats(h, x, N);
            uint64_t under = 0, over = 0;
            for (int i = 0; i < N; i++) {
                if (x[i] < g->range[0])
                    under++;
                else if (x[i] >= g->range[bins])
                    over++;
                else
                    assert_int_equal(gsl_histogram_increment(g, x[i]), 0);
            }
            assert_memory_equal(h->h->bin, g->bin, bins * sizeof(double));
            assert_int_equal(h->underflow, under);
            assert_int_equal(h->overflow, over);
            gsl_histogram_free(g);
            cce_hist_free(h);
        }
    }
    free(x);
    gsl_rng_free(rng);
}

static void test_hist_kl(void **state) {
    (void)state;
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 5);
    enum { N = 20000 };
    float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    for (int i = 0; i < N; i++) {
        a[i] = (float)gsl_ran_gaussian(rng, 1.0);
        b[i] = (float)gsl_ran_gaussian(rng, 1.5);
    }
    cce_hist *p, *q, *r;
    assert_cce_ok(cce_hist_new(32, -4, 4, "p", &p));
    assert_cce_ok(cce_hist_new(32, -4, 4, "q", &q));
    assert_cce_ok(cce_hist_new(32, -4, 4, "r", &r));
    cce_hist_add_floats(p, a, N);
    cce_hist_add_floats(q, a, N);
    cce_hist_add_floats(r, b, N);
    double kl = -1;
    assert_cce_ok(cce_hist_kl(p, q, CCE_HIST_KL_ALPHA, &kl));
    assert_true(kl == 0.0); /* identical inputs: exactly 0 */
    assert_cce_ok(cce_hist_kl(p, r, CCE_HIST_KL_ALPHA, &kl));
    /* KL(N(0,1) || N(0,1.5^2)) = log 1.5 + 1 / (2 * 2.25) - 1/2 = 0.1277 (binning and the
     * tails beyond +-4 change it a little) */
    assert_true(fabs(kl - (log(1.5) + 1.0 / 4.5 - 0.5)) < 0.02);
    double back;
    assert_cce_ok(cce_hist_kl(r, p, CCE_HIST_KL_ALPHA, &back));
    assert_true(back > 0 && back != kl); /* not symmetric */
    /* Smoothing: an empty histogram against a full one stays finite. */
    cce_hist_reset(q);
    assert_cce_ok(cce_hist_kl(p, q, 0.5, &kl));
    assert_true(isfinite(kl) && kl > 0);
    assert_int_equal(cce_hist_kl(p, q, 0.0, &kl), CCE_ERR_RANGE);
    assert_int_equal(cce_hist_kl(p, q, NAN, &kl), CCE_ERR_RANGE);
    cce_hist *other;
    assert_cce_ok(cce_hist_new(16, -4, 4, "o", &other));
    assert_int_equal(cce_hist_kl(p, other, 0.5, &kl), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "edges differ"));
    cce_hist_free(other);
    cce_hist_free(p);
    cce_hist_free(q);
    cce_hist_free(r);
    free(a);
    free(b);
    gsl_rng_free(rng);
}

/* ---- GSL statistics against theory ----------------------------------------------------------- */

static void test_gaussian_laplace(void **state) {
    (void)state;
    enum { N = 1000000 };
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 42);
    float *g = malloc(N * sizeof *g), *l = malloc(N * sizeof *l);
    for (int i = 0; i < N; i++) {
        g[i] = (float)(0.5 + gsl_ran_gaussian(rng, 2.0));
        l[i] = (float)gsl_ran_laplace(rng, 1.0);
    }
    cce_wstats_dist d;
    double lo, hi;
    assert_cce_ok(cce_wstats_edges(g, N, NULL, "gauss", &lo, &hi));
    assert_cce_ok(cce_wstats_describe(g, N, 64, lo, hi, "gauss", &d));
    /* standard errors: mean 2/sqrt(N), skewness sqrt(6/N), excess kurtosis sqrt(24/N) */
    assert_true(fabs(d.mean - 0.5) < 5 * 2.0 / sqrt(N));
    assert_true(fabs(d.std - 2.0) < 0.01);
    assert_true(fabs(d.skewness) < 5 * sqrt(6.0 / N));
    assert_true(fabs(d.excess_kurtosis) < 5 * sqrt(24.0 / N));
    assert_true(d.min == lo && d.max < hi && nextafter(d.max, INFINITY) == hi);
    assert_int_equal(d.hist->underflow, 0);
    assert_int_equal(d.hist->overflow, 0);
    assert_true(cce_hist_total(d.hist) == N);
    assert_true(d.zero_frac == 0);
    cce_wstats_dist_clear(&d);

    assert_cce_ok(cce_wstats_edges(l, N, NULL, "laplace", &lo, &hi));
    assert_cce_ok(cce_wstats_describe(l, N, 64, lo, hi, "laplace", &d));
    /* Laplace(b = 1): variance 2, skewness 0, excess kurtosis 3. Standard errors from the central
     * moments mu2 = 2, mu4 = 24, mu6 = 720, mu8 = 40320: skewness
     * sqrt((mu6 - 6 mu4 mu2 + 9 mu2^3) / mu2^3 / N) = sqrt(63 / N), kurtosis about
     * sqrt((mu8 - mu4^2) / mu2^4 / N) = sqrt(2484 / N). */
    assert_true(fabs(d.std - sqrt(2.0)) < 0.01);
    assert_true(fabs(d.skewness) < 5 * sqrt(63.0 / N));
    assert_true(fabs(d.excess_kurtosis - 3.0) < 5 * sqrt(2484.0 / N));
    cce_wstats_dist_clear(&d);

    /* Symmetric edges: mean +- 3 std puts about 0.27% of a Gaussian outside. */
    cce_wstats_options o = {.bins = 30, .range_std = 3};
    assert_cce_ok(cce_wstats_edges(g, N, &o, "gauss", &lo, &hi));
    assert_true(fabs(lo - (0.5 - 6.0)) < 0.05 && fabs(hi - (0.5 + 6.0)) < 0.05);
    assert_cce_ok(cce_wstats_describe(g, N, 30, lo, hi, "gauss", &d));
    double out = (double)(d.hist->underflow + d.hist->overflow) / N;
    assert_true(fabs(out - 0.0027) < 0.0005);
    assert_true(fabs((double)d.hist->underflow - (double)d.hist->overflow) < 0.0006 * N);
    cce_wstats_dist_clear(&d);
    free(g);
    free(l);
    gsl_rng_free(rng);
}

/* ---- Pairs ----------------------------------------------------------------------------------- */

static cce_tensor *tensor_of(const float *v, int64_t rows, int64_t cols) {
    cce_tensor *t;
    assert_cce_ok(cce_tensor_new_2d(rows, cols, &t));
    memcpy(t->data, v, (size_t)(rows * cols) * sizeof *v);
    return t;
}

static void test_compare(void **state) {
    (void)state;
    const float dv[6] = {3, 4, 0, -1, 2, -2}, cv[6] = {3, 0, 0, -1, 2, 9};
    cce_tensor *d = tensor_of(dv, 2, 3), *c = tensor_of(cv, 2, 3);
    cce_wstats_pair p;
    assert_cce_ok(cce_wstats_compare(d, c, "w", NULL, &p));
    /* ||d - c|| = sqrt(16 + 121), ||d|| = sqrt(9 + 16 + 1 + 4 + 4) */
    assert_true(fabs(p.rel_fro_error - sqrt(137.0 / 34.0)) < 1e-15);
    assert_true(p.before.zero_frac == 1.0 / 6 && p.after.zero_frac == 2.0 / 6);
    assert_true(p.before.min == -2 && p.before.max == 4 && p.after.max == 9);
    assert_int_equal(p.before.hist->underflow + p.before.hist->overflow, 0);
    assert_int_equal(p.after.hist->overflow, 1); /* 9 > the dense maximum */
    assert_int_equal(p.after.hist->underflow, 0);
    assert_true(cce_hist_lo(p.after.hist) == -2 && cce_hist_lo(p.before.hist) == -2);
    cce_wstats_pair_clear(&p);
    /* a tensor against itself */
    assert_cce_ok(cce_wstats_compare(d, d, "w", NULL, &p));
    assert_true(p.rel_fro_error == 0);
    assert_true(p.before.std == p.after.std && p.before.excess_kurtosis == p.after.excess_kurtosis);
    cce_wstats_pair_clear(&p);
    /* constant and all-zero tensors: defined edges, undefined shape statistics */
    const float z[4] = {0, 0, 0, 0};
    cce_tensor *zt = tensor_of(z, 2, 2);
    assert_cce_ok(cce_wstats_compare(zt, zt, "zeros", NULL, &p));
    assert_true(p.rel_fro_error == 0 && p.before.zero_frac == 1 && p.before.std == 0);
    assert_true(isnan(p.before.skewness) && isnan(p.before.excess_kurtosis));
    assert_true(cce_hist_lo(p.before.hist) == -0.5 && cce_hist_hi(p.before.hist) == 0.5);
    cce_wstats_pair_clear(&p);

    /* bad input */
    assert_int_equal(cce_wstats_compare(d, zt, "layers.0.mlp.up_proj.weight", NULL, &p),
                     CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "layers.0.mlp.up_proj.weight"));
    assert_non_null(strstr(cce_error_detail(), "[2, 2] differs from the dense [2, 3]"));
    assert_null(p.before.hist);
    c->data[4] = NAN;
    assert_int_equal(cce_wstats_compare(d, c, "layers.3.self_attn.q_proj.weight", NULL, &p),
                     CCE_ERR_NUMERIC);
    assert_non_null(strstr(cce_error_detail(), "layers.3.self_attn.q_proj.weight (compressed)"));
    assert_non_null(strstr(cce_error_detail(), "weight 4 is NaN"));
    assert_null(p.before.hist);
    d->data[0] = INFINITY;
    assert_int_equal(cce_wstats_compare(d, d, "w", NULL, &p), CCE_ERR_NUMERIC);
    assert_non_null(strstr(cce_error_detail(), "w (dense): weight 0 is Inf"));
    cce_wstats_options bad = {.bins = 5000};
    assert_int_equal(cce_wstats_compare(zt, zt, "w", &bad, &p), CCE_ERR_RANGE);
    bad = (cce_wstats_options){.range_std = -1};
    assert_int_equal(cce_wstats_compare(zt, zt, "w", &bad, &p), CCE_ERR_RANGE);
    cce_tensor_free(zt);
    cce_tensor_free(d);
    cce_tensor_free(c);
}

/* ---- Whole models ---------------------------------------------------------------------------- */

/* A variant of base whose tensor `name` is scaled by f. The caller frees it. */
static cce_model *scaled_variant(cce_model *base, const char *name, float f) {
    cce_model *v;
    assert_cce_ok(cce_model_variant_new(base, &v));
    cce_tensor *t, *copy;
    assert_cce_ok(cce_model_tensor(base, name, &t));
    assert_cce_ok(cce_tensor_clone(t, &copy));
    for (int64_t i = 0; i < cce_tensor_numel(copy); i++) copy->data[i] *= f;
    assert_cce_ok(cce_model_put_tensor(v, name, copy));
    return v;
}

static cce_tensor *embed_of(cce_model *m) {
    cce_tensor *t;
    assert_cce_ok(cce_model_global_tensor(m, CCE_GT_EMBED, &t));
    return t;
}

static void test_model_table(void **state) {
    (void)state;
    cce_model *base = fixture_synth_preset("tiny", 3);
    const char *shifted = "layers.1.mlp.down_proj.weight";
    cce_model *v = scaled_variant(base, shifted, 2.0f);
    cce_table *t;
    assert_cce_ok(cce_wstats_model(base, v, NULL, &t));
    const cce_config *cfg = cce_model_config(base);
    assert_int_equal(t->n_rows, (size_t)cfg->n_layers * 7); /* tied: no lm_head row */
    assert_string_equal(t->name, "weights");
    int c_tensor = cce_table_column(t, "tensor"), c_rel = cce_table_column(t, "rel_fro_error");
    int c_std_b = cce_table_column(t, "std_before"), c_std_a = cce_table_column(t, "std_after");
    int c_k_b = cce_table_column(t, "excess_kurtosis_before");
    int c_k_a = cce_table_column(t, "excess_kurtosis_after");
    int c_hb = cce_table_column(t, "hist_before"), c_ha = cce_table_column(t, "hist_after");
    int c_over = cce_table_column(t, "overflow_after"), c_edges = cce_table_column(t, "edges");
    assert_true(c_tensor >= 0 && c_rel >= 0 && c_std_b >= 0 && c_std_a >= 0 && c_k_b >= 0 &&
                c_k_a >= 0 && c_hb >= 0 && c_ha >= 0 && c_over >= 0 && c_edges >= 0);
    assert_int_equal(t->cols[c_hb].width, CCE_WSTATS_DEFAULT_BINS);
    assert_int_equal(t->cols[c_edges].width, CCE_WSTATS_DEFAULT_BINS + 1);
    int found = 0, c_rows = cce_table_column(t, "rows"), c_cols = cce_table_column(t, "cols");
    int64_t params = 0;
    for (size_t r = 0; r < t->n_rows; r++) {
        const char *name = cce_table_str(t, r, c_tensor);
        double rel = cce_table_f64(t, r, c_rel);
        cce_tensor *w;
        assert_cce_ok(cce_model_tensor(base, name, &w));
        assert_int_equal(cce_table_i64(t, r, c_rows), w->shape[0]);
        assert_int_equal(cce_table_i64(t, r, c_cols), w->shape[1]);
        params += w->shape[0] * w->shape[1];
        if (!strcmp(name, shifted)) {
            found = 1;
            assert_true(fabs(rel - 1.0) < 1e-12); /* ||2W - W|| / ||W|| */
            assert_true(fabs(cce_table_f64(t, r, c_std_a) / cce_table_f64(t, r, c_std_b) - 2) <
                        1e-6);
            /* scale-free: kurtosis unchanged; histogram moved outwards (overflow) */
            assert_true(fabs(cce_table_f64(t, r, c_k_a) - cce_table_f64(t, r, c_k_b)) < 1e-6);
            assert_true(cce_table_i64(t, r, c_over) > 0);
            assert_memory_not_equal(cce_table_vec(t, r, c_hb), cce_table_vec(t, r, c_ha),
                                    CCE_WSTATS_DEFAULT_BINS * sizeof(double));
        } else {
            assert_true(rel == 0);
            assert_memory_equal(cce_table_vec(t, r, c_hb), cce_table_vec(t, r, c_ha),
                                CCE_WSTATS_DEFAULT_BINS * sizeof(double));
            assert_true(cce_table_f64(t, r, c_std_a) == cce_table_f64(t, r, c_std_b));
        }
        assert_true(cce_table_f64(t, r, cce_table_column(t, "hist_lo")) ==
                    cce_table_vec(t, r, c_edges)[0]);
    }
    assert_true(found);
    assert_int_equal(params, cce_model_total_params(base) - cce_tensor_numel(embed_of(base)) -
                                 (int64_t)cfg->n_layers * 2 * cfg->dim - cfg->dim);
    cce_table_free(t);

    /* symmetric edges option and the base against itself */
    cce_wstats_options o = {.bins = 16, .range_std = 4};
    assert_cce_ok(cce_wstats_model(base, base, &o, &t));
    assert_int_equal(t->cols[c_hb].width, 16);
    for (size_t r = 0; r < t->n_rows; r++) assert_true(cce_table_f64(t, r, c_rel) == 0);
    cce_table_free(t);
    cce_model_free(v);

    /* NaN weights in the variant: a clear error naming the tensor */
    v = scaled_variant(base, "layers.0.self_attn.k_proj.weight", NAN);
    assert_int_equal(cce_wstats_model(base, v, NULL, &t), CCE_ERR_NUMERIC);
    assert_null(t);
    assert_non_null(strstr(cce_error_detail(), "layers.0.self_attn.k_proj.weight (compressed)"));
    cce_model_free(v);

    /* models that do not match */
    cce_synth_options so;
    assert_cce_ok(cce_synth_preset("tiny", &so));
    so.cfg.n_layers = 3;
    cce_model *other;
    assert_cce_ok(cce_synth_model(&so, &other));
    assert_int_equal(cce_wstats_model(base, other, NULL, &t), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "does not match the base"));
    cce_model_free(other);
    cce_model_free(base);
}

/* A removed layer and a reshaped FFN (structured compression). */
static void test_model_structured(void **state) {
    (void)state;
    cce_synth_options so;
    assert_cce_ok(cce_synth_preset("tiny", &so));
    so.cfg.n_layers = 3;
    so.zero_classifier = 1; /* untied: an lm_head row too */
    so.seed = 9;
    cce_model *base;
    assert_cce_ok(cce_synth_model(&so, &base));
    cce_model *v;
    assert_cce_ok(cce_model_variant_new(base, &v));
    assert_cce_ok(cce_model_remove_layer(v, 2));
    const cce_layer_shape *ls = cce_model_layer(base, 0);
    cce_layer_shape shape = *ls;
    shape.hidden_dim = ls->hidden_dim / 2;
    cce_tensor *nt[CCE_LT_COUNT] = {0};
    int64_t dim = cce_model_config(base)->dim;
    assert_cce_ok(cce_tensor_new_2d(shape.hidden_dim, dim, &nt[CCE_LT_GATE]));
    assert_cce_ok(cce_tensor_new_2d(shape.hidden_dim, dim, &nt[CCE_LT_UP]));
    assert_cce_ok(cce_tensor_new_2d(dim, shape.hidden_dim, &nt[CCE_LT_DOWN]));
    for (int k = CCE_LT_GATE; k <= CCE_LT_DOWN; k++)
        for (int64_t i = 0; i < cce_tensor_numel(nt[k]); i++)
            nt[k]->data[i] = 0.01f * (float)(i % 7);
    assert_cce_ok(cce_model_reshape_layer(v, 0, &shape, nt));
    cce_table *t;
    assert_cce_ok(cce_wstats_model(base, v, NULL, &t));
    assert_int_equal(t->n_rows, 3 * 7 + 1);
    int c_tensor = cce_table_column(t, "tensor"), c_note = cce_table_column(t, "note");
    int c_rel = cce_table_column(t, "rel_fro_error"), c_mean_a = cce_table_column(t, "mean_after");
    int c_layer = cce_table_column(t, "layer");
    for (size_t r = 0; r < t->n_rows; r++) {
        const char *name = cce_table_str(t, r, c_tensor), *note = cce_table_str(t, r, c_note);
        int64_t layer = cce_table_i64(t, r, c_layer);
        if (layer == 2) {
            assert_string_equal(note, "layer removed");
            assert_true(isnan(cce_table_f64(t, r, c_rel)) && isnan(cce_table_f64(t, r, c_mean_a)));
        } else if (layer == 0 && strstr(name, ".mlp.")) {
            assert_non_null(strstr(note, "shape ["));
            assert_true(isnan(cce_table_f64(t, r, c_rel)));
            assert_true(isfinite(cce_table_f64(t, r, c_mean_a)));
        } else {
            assert_string_equal(note, "");
            assert_true(cce_table_f64(t, r, c_rel) == 0);
        }
        if (r == t->n_rows - 1) {
            assert_string_equal(name, "lm_head.weight");
            assert_int_equal(layer, -1);
        }
    }
    cce_table_free(t);
    cce_model_free(v);
    cce_model_free(base);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_under_overflow),
        cmocka_unit_test(test_hist_matches_gsl),
        cmocka_unit_test(test_hist_kl),
        cmocka_unit_test(test_gaussian_laplace),
        cmocka_unit_test(test_compare),
        cmocka_unit_test(test_model_table),
        cmocka_unit_test(test_model_structured),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
