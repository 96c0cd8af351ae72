/* Activation statistics (astats.h): streaming moments against GSL and theory, a model against
 * itself (cosine 1, relative L2 0, histogram KL 0), the evaluation result equal to cce_eval's, a
 * deliberately shifted layer detected while the layers before it stay put, several domains in one
 * table, structured variants, and bad input. */
#include "test_support.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <gsl/gsl_statistics_float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "astats.h"
#include "bench_stats.h"
#include "cce_lua.h"
#include "eval.h"
#include "fixtures.h"
#include "results.h"
#include "synth.h"
#include "wstats.h"

/* ---- Streaming moments ----------------------------------------------------------------------- */

static void check_stream(const float *x, size_t n, gsl_rng *rng, double skew, double kurt,
                         double skew_se, double kurt_se) {
    cce_moments m;
    cce_moments_init(&m);
    for (size_t off = 0; off < n;) {
        size_t k = 1 + gsl_rng_uniform_int(rng, 5000);
        if (k > n - off) k = n - off;
        cce_moments_add(&m, x + off, k);
        off += k;
    }
    double mean = gsl_stats_float_mean(x, 1, n), sd = gsl_stats_float_sd_m(x, 1, n, mean);
    double g_skew = gsl_stats_float_skew_m_sd(x, 1, n, mean, sd);
    double g_kurt = gsl_stats_float_kurtosis_m_sd(x, 1, n, mean, sd);
    assert_true(m.n == (double)n);
    assert_true(fabs(cce_moments_mean(&m) - mean) < 1e-12 * (1 + fabs(mean)));
    assert_true(fabs(cce_moments_std(&m) / sd - 1) < 1e-10);
    assert_true(fabs(cce_moments_skewness(&m) - g_skew) < 1e-8);
    assert_true(fabs(cce_moments_excess_kurtosis(&m) - g_kurt) < 1e-8);
    float lo, hi;
    gsl_stats_float_minmax(&lo, &hi, x, 1, n);
    assert_true(m.min == lo && m.max == hi);
    /* and theory */
    assert_true(fabs(cce_moments_skewness(&m) - skew) < 5 * skew_se);
    assert_true(fabs(cce_moments_excess_kurtosis(&m) - kurt) < 5 * kurt_se);
}

static void test_moments(void **state) {
    (void)state;
    enum { N = 1000000 };
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 7);
    float *x = malloc(N * sizeof *x);
    /* Gaussian with a large offset (the corrected two-pass block sums keep it exact) */
    for (int i = 0; i < N; i++) x[i] = (float)(100.0 + gsl_ran_gaussian(rng, 0.5));
    check_stream(x, N, rng, 0, 0, sqrt(6.0 / N), sqrt(24.0 / N));
    /* Laplace(b = 1): skewness 0 (se sqrt(63 / N)), excess kurtosis 3 (se ~ sqrt(2484 / N)) */
    for (int i = 0; i < N; i++) x[i] = (float)gsl_ran_laplace(rng, 1.0);
    check_stream(x, N, rng, 0, 3, sqrt(63.0 / N), sqrt(2484.0 / N));
    /* merging is order-free */
    cce_moments a, b, c;
    cce_moments_init(&a);
    cce_moments_init(&b);
    cce_moments_init(&c);
    cce_moments_add(&a, x, 1000);
    cce_moments_add(&b, x + 1000, 5);
    cce_moments_merge(&a, &b);
    cce_moments_add(&c, x, 1005);
    assert_true(fabs(cce_moments_excess_kurtosis(&a) - cce_moments_excess_kurtosis(&c)) < 1e-12);
    /* undefined statistics are NaN */
    cce_moments_init(&a);
    assert_true(isnan(cce_moments_mean(&a)) && isnan(cce_moments_std(&a)));
    const float one[3] = {2, 2, 2};
    cce_moments_add(&a, one, 3);
    assert_true(cce_moments_std(&a) == 0 && isnan(cce_moments_skewness(&a)));
    free(x);
    gsl_rng_free(rng);
}

/* ---- Models ---------------------------------------------------------------------------------- */

/* A synthetic model of the tiny shape with n_layers layers. */
static cce_model *model_of(int n_layers, uint64_t seed) {
    cce_synth_options so;
    assert_cce_ok(cce_synth_preset("tiny", &so));
    so.cfg.n_layers = n_layers;
    so.seed = seed;
    cce_model *m;
    assert_cce_ok(cce_synth_model(&so, &m));
    return m;
}

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

/* Column indices of the activations table. */
typedef struct cols {
    int domain, layer, site, width, count, mean, std, kurt, outlier, cosine, rel_l2, kl, ref_mean,
        ref_std, under, over, hist;
} cols;

static cols cols_of(const cce_table *t) {
    cols c = {
        cce_table_column(t, "domain"),       cce_table_column(t, "layer"),
        cce_table_column(t, "site"),         cce_table_column(t, "width"),
        cce_table_column(t, "count"),        cce_table_column(t, "mean"),
        cce_table_column(t, "std"),          cce_table_column(t, "excess_kurtosis"),
        cce_table_column(t, "outlier_frac"), cce_table_column(t, "cosine"),
        cce_table_column(t, "rel_l2"),       cce_table_column(t, "hist_kl"),
        cce_table_column(t, "ref_mean"),     cce_table_column(t, "ref_std"),
        cce_table_column(t, "underflow"),    cce_table_column(t, "overflow"),
        cce_table_column(t, "hist"),
    };
    const int *p = &c.domain;
    for (size_t i = 0; i < sizeof c / sizeof c.domain; i++) assert_true(p[i] >= 0);
    return c;
}

enum { CTX = 64, WINDOWS = 5 };

static void test_self(void **state) {
    (void)state;
    cce_model *dense = model_of(3, 11);
    size_t n = WINDOWS * (CTX - 1) + 10;
    int32_t *tokens = fixture_random_tokens(n, 3);
    cce_astats_ref *ref;
    assert_cce_ok(cce_astats_ref_new(dense, tokens, n, "synthetic", NULL, &ref));
    assert_int_equal(cce_astats_ref_windows(ref), WINDOWS);
    assert_string_equal(cce_astats_ref_domain(ref), "synthetic");
    cce_table *t, *u;
    assert_cce_ok(cce_astats_table_new(0, &t));
    assert_cce_ok(cce_astats_table_new(0, &u));
    assert_cce_ok(cce_astats_eval(dense, dense, ref, tokens, n, NULL, t, NULL));
    /* the same weights as another model: two forward passes per window */
    cce_model *same;
    assert_cce_ok(cce_model_variant_new(dense, &same));
    assert_cce_ok(cce_astats_eval(same, dense, ref, tokens, n, NULL, u, NULL));
    assert_int_equal(t->n_rows, 3 * 2);
    cols c = cols_of(t);
    const cce_config *cfg = cce_model_config(dense);
    for (size_t r = 0; r < t->n_rows; r++) {
        assert_string_equal(cce_table_str(t, r, c.domain), "synthetic");
        assert_int_equal(cce_table_i64(t, r, c.layer), (int64_t)(r / 2));
        assert_string_equal(cce_table_str(t, r, c.site), r % 2 ? "ffn_act" : "block_out");
        int64_t width = r % 2 ? cfg->hidden_dim : cfg->dim;
        assert_int_equal(cce_table_i64(t, r, c.width), width);
        int64_t count = (int64_t)WINDOWS * (CTX - 1) * width;
        assert_int_equal(cce_table_i64(t, r, c.count), count);
        double cosv = cce_table_f64(t, r, c.cosine);
        assert_true(fabs(cosv - 1.0) < 1e-12);
        assert_true(cce_table_f64(t, r, c.rel_l2) == 0.0);
        assert_true(cce_table_f64(t, r, c.kl) == 0.0);
        /* the dense model on its own windows: its statistics are the reference's */
        double mean = cce_table_f64(t, r, c.mean), ref_mean = cce_table_f64(t, r, c.ref_mean);
        assert_true(fabs(mean - ref_mean) < 1e-12 * (1 + fabs(mean)));
        assert_true(fabs(cce_table_f64(t, r, c.std) / cce_table_f64(t, r, c.ref_std) - 1) < 1e-12);
        double outl = cce_table_f64(t, r, c.outlier);
        assert_true(outl >= 0 && outl < 0.01);
        const double *h = cce_table_vec(t, r, c.hist);
        double total = (double)cce_table_i64(t, r, c.under) + (double)cce_table_i64(t, r, c.over);
        for (int k = 0; k < CCE_ASTATS_DEFAULT_BINS; k++) total += h[k];
        assert_true(total == (double)count);
        /* two passes of the same weights give the same numbers */
        for (size_t k = 0; k < t->n_cols; k++) {
            const cce_table_col *x = &t->cols[k], *y = &u->cols[k];
            if (x->type == CCE_COL_F64 || x->type == CCE_COL_F64VEC) {
                if ((int)k == c.cosine)
                    assert_true(fabs(y->f64[r] - 1.0) < 1e-12);
                else
                    assert_memory_equal(x->f64 + r * x->width, y->f64 + r * y->width,
                                        x->width * sizeof(double));
            }
        }
    }
    cce_table_free(t);
    cce_table_free(u);
    cce_model_free(same);
    cce_astats_ref_free(ref);
    cce_model_free(dense);
    free(tokens);
}

static void test_eval_matches(void **state) {
    (void)state;
    cce_model *dense = model_of(2, 5);
    cce_model *v = scaled_variant(dense, "layers.1.mlp.up_proj.weight", 0.5f);
    size_t n = WINDOWS * (CTX - 1);
    int32_t *tokens = fixture_random_tokens(n, 9);
    cce_astats_options o = {.max_tokens = 3 * (CTX - 1), .keep_token_nll = 1};
    cce_astats_ref *ref;
    assert_cce_ok(cce_astats_ref_new(dense, tokens, n, "d", &o, &ref));
    assert_int_equal(cce_astats_ref_windows(ref), 3);
    cce_table *t;
    assert_cce_ok(cce_astats_table_new(0, &t));
    cce_eval_result a, b;
    assert_cce_ok(cce_astats_eval(v, dense, ref, tokens, n, &o, t, &a));
    cce_eval_options eo = {.max_tokens = o.max_tokens, .keep_token_nll = 1};
    assert_cce_ok(cce_eval(v, dense, tokens, n, &eo, &b));
    assert_int_equal(a.n_windows, 3);
    assert_int_equal(a.n_tokens, b.n_tokens);
    assert_int_equal(a.ctx, b.ctx);
    assert_true(a.max_tokens == b.max_tokens);
    assert_int_equal(a.has_ref, 1);
    const double *x[] = {&a.mean_nll,  &a.nll_stderr, &a.ppl,    &a.ppl_stderr, &a.top1,
                         &a.kl_mean,   &a.kl_stderr,  &a.kl_p99, &a.top1_agree, &a.dp_mean,
                         &a.dp_stderr, &a.dp_min,     &a.dp_max};
    const double *y[] = {&b.mean_nll,  &b.nll_stderr, &b.ppl,    &b.ppl_stderr, &b.top1,
                         &b.kl_mean,   &b.kl_stderr,  &b.kl_p99, &b.top1_agree, &b.dp_mean,
                         &b.dp_stderr, &b.dp_min,     &b.dp_max};
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) assert_memory_equal(x[i], y[i], 8);
    assert_memory_equal(a.dp_p, b.dp_p, sizeof a.dp_p);
    assert_non_null(a.token_nll);
    assert_memory_equal(a.token_nll, b.token_nll, (size_t)a.n_tokens * sizeof(double));
    assert_true(a.kl_mean > 0);
    cce_eval_result_free(&a);
    cce_eval_result_free(&b);
    cce_table_free(t);
    cce_astats_ref_free(ref);
    cce_model_free(v);
    cce_model_free(dense);
    free(tokens);
}

/* One layer's weights scaled in a variant: its rows move, the rows before it do not. */
static void test_shifted_layer(void **state) {
    (void)state;
    cce_model *dense = model_of(4, 21);
    cce_model *v = scaled_variant(dense, "layers.2.mlp.down_proj.weight", 3.0f);
    size_t n = WINDOWS * (CTX - 1);
    int32_t *tokens = fixture_random_tokens(n, 4);
    cce_astats_ref *ref;
    assert_cce_ok(cce_astats_ref_new(dense, tokens, n, "d", NULL, &ref));
    cce_table *t;
    assert_cce_ok(cce_astats_table_new(0, &t));
    assert_cce_ok(cce_astats_eval(v, dense, ref, tokens, n, NULL, t, NULL));
    cols c = cols_of(t);
    for (size_t r = 0; r < t->n_rows; r++) {
        int64_t layer = cce_table_i64(t, r, c.layer);
        int ffn = r % 2;
        double rel = cce_table_f64(t, r, c.rel_l2), kl = cce_table_f64(t, r, c.kl);
        double cosv = cce_table_f64(t, r, c.cosine);
        double std = cce_table_f64(t, r, c.std), ref_std = cce_table_f64(t, r, c.ref_std);
        /* Layers 0 and 1, and the input of the scaled down_proj itself, are untouched. */
        if (layer < 2 || (layer == 2 && ffn)) {
            if (rel != 0 || kl != 0 || fabs(cosv - 1) > 1e-12)
                fail_msg("layer %lld %s moved: rel_l2 %g, kl %g, cosine %.17g", (long long)layer,
                         ffn ? "ffn_act" : "block_out", rel, kl, cosv);
            assert_true(fabs(std / ref_std - 1) < 1e-12);
        } else {
            if (!(rel > 0.01 && kl > 0 && cosv < 1 - 1e-6 && fabs(std / ref_std - 1) > 1e-3))
                fail_msg("layer %lld %s did not move: rel_l2 %g, kl %g, cosine %.17g, std %g vs %g",
                         (long long)layer, ffn ? "ffn_act" : "block_out", rel, kl, cosv, std,
                         ref_std);
        }
    }
    cce_table_free(t);
    cce_astats_ref_free(ref);
    cce_model_free(v);
    cce_model_free(dense);
    free(tokens);
}

static void test_domains_and_structure(void **state) {
    (void)state;
    cce_model *dense = model_of(3, 2);
    size_t n = 2 * (CTX - 1);
    int32_t *ta = fixture_random_tokens(n, 1), *tb = fixture_random_tokens(n, 2);
    cce_astats_options o = {.bins = 10, .range_std = 4, .outlier_std = 3, .kl_alpha = 1};
    cce_astats_ref *ra, *rb;
    assert_cce_ok(cce_astats_ref_new(dense, ta, n, "tinystories_val", &o, &ra));
    assert_cce_ok(cce_astats_ref_new(dense, tb, n, "alice29.txt", &o, &rb));
    /* a variant with layer 1 removed and layer 0's FFN halved */
    cce_model *v;
    assert_cce_ok(cce_model_variant_new(dense, &v));
    assert_cce_ok(cce_model_remove_layer(v, 1));
    cce_layer_shape shape = *cce_model_layer(dense, 0);
    shape.hidden_dim /= 2;
    int64_t dim = cce_model_config(dense)->dim;
    cce_tensor *nt[CCE_LT_COUNT] = {0};
    assert_cce_ok(cce_tensor_new_2d(shape.hidden_dim, dim, &nt[CCE_LT_GATE]));
    assert_cce_ok(cce_tensor_new_2d(shape.hidden_dim, dim, &nt[CCE_LT_UP]));
    assert_cce_ok(cce_tensor_new_2d(dim, shape.hidden_dim, &nt[CCE_LT_DOWN]));
    for (int k = CCE_LT_GATE; k <= CCE_LT_DOWN; k++)
        for (int64_t i = 0; i < cce_tensor_numel(nt[k]); i++)
            nt[k]->data[i] = 0.05f * (float)((i * 7) % 11) - 0.25f;
    assert_cce_ok(cce_model_reshape_layer(v, 0, &shape, nt));
    cce_table *t;
    assert_cce_ok(cce_astats_table_new(10, &t));
    assert_cce_ok(cce_astats_eval(v, dense, ra, ta, n, NULL, t, NULL));
    assert_cce_ok(cce_astats_eval(v, dense, rb, tb, n, NULL, t, NULL));
    assert_int_equal(t->n_rows, 2 * 3 * 2);
    cols c = cols_of(t);
    assert_int_equal(t->cols[c.hist].width, 10);
    for (size_t r = 0; r < t->n_rows; r++) {
        assert_string_equal(cce_table_str(t, r, c.domain),
                            r < 6 ? "tinystories_val" : "alice29.txt");
        int64_t layer = cce_table_i64(t, r, c.layer);
        int ffn = r % 2;
        if (layer == 1 && ffn) { /* removed: no FFN */
            assert_int_equal(cce_table_i64(t, r, c.count), 0);
            assert_true(isnan(cce_table_f64(t, r, c.mean)) && isnan(cce_table_f64(t, r, c.kl)));
        } else if (layer == 0 && ffn) { /* another width: own statistics, no pairing */
            assert_int_equal(cce_table_i64(t, r, c.width), shape.hidden_dim);
            assert_true(isfinite(cce_table_f64(t, r, c.mean)));
            assert_true(isnan(cce_table_f64(t, r, c.cosine)) && isnan(cce_table_f64(t, r, c.kl)));
        } else {
            assert_true(cce_table_f64(t, r, c.rel_l2) > 0);
            assert_true(isfinite(cce_table_f64(t, r, c.kl)));
        }
    }
    cce_table_free(t);
    cce_model_free(v);
    cce_astats_ref_free(ra);
    cce_astats_ref_free(rb);
    cce_model_free(dense);
    free(ta);
    free(tb);
}

static void test_bad_input(void **state) {
    (void)state;
    cce_model *dense = model_of(2, 8);
    size_t n = 2 * (CTX - 1);
    int32_t *tokens = fixture_random_tokens(n, 1), *other = fixture_random_tokens(n, 2);
    cce_astats_ref *ref = NULL;
    cce_astats_options o = {.ctx = 1000};
    assert_int_equal(cce_astats_ref_new(dense, tokens, n, "d", &o, &ref), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "ctx = 1000"));
    o = (cce_astats_options){.kl_alpha = -1};
    assert_int_equal(cce_astats_ref_new(dense, tokens, n, "d", &o, &ref), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "kl_alpha"));
    assert_int_equal(cce_astats_ref_new(dense, tokens, n, "a/b", NULL, &ref), CCE_ERR_ARG);
    assert_int_equal(cce_astats_ref_new(dense, tokens, CTX - 2, "d", NULL, &ref), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "shorter than one window"));
    tokens[7] = 300;
    assert_int_equal(cce_astats_ref_new(dense, tokens, n, "d", NULL, &ref), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "stream index 7"));
    tokens[7] = 5;
    assert_null(ref);
    assert_cce_ok(cce_astats_ref_new(dense, tokens, n, "d", NULL, &ref));
    cce_table *t, *t8;
    assert_cce_ok(cce_astats_table_new(0, &t));
    assert_cce_ok(cce_astats_table_new(8, &t8));
    /* other tokens, a shorter stream, a table of other bins */
    assert_int_equal(cce_astats_eval(dense, dense, ref, other, n, NULL, t, NULL), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "differ from the ones the reference was made on"));
    assert_int_equal(cce_astats_eval(dense, dense, ref, tokens, n - 1, NULL, t, NULL), CCE_ERR_ARG);
    assert_int_equal(cce_astats_eval(dense, dense, ref, tokens, n, NULL, t8, NULL), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "8 bins"));
    /* a model of another shape */
    cce_model *three = model_of(3, 8);
    assert_int_equal(cce_astats_eval(three, dense, ref, tokens, n, NULL, t, NULL), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "does not match the dense model"));
    cce_model_free(three);
    /* NaN weights: in the variant, and in the dense model of a reference */
    cce_model *bad = scaled_variant(dense, "layers.1.self_attn.v_proj.weight", NAN);
    cce_eval_result e;
    assert_int_equal(cce_astats_eval(bad, dense, ref, tokens, n, NULL, t, &e), CCE_ERR_NUMERIC);
    cce_astats_ref *r2 = NULL;
    assert_int_equal(cce_astats_ref_new(bad, tokens, n, "d", NULL, &r2), CCE_ERR_NUMERIC);
    assert_non_null(strstr(cce_error_detail(), "layer 1 block_out: non-finite activations"));
    assert_null(r2);
    assert_int_equal(t->n_rows, 0); /* unchanged by every failure */
    cce_model_free(bad);
    cce_table_free(t);
    cce_table_free(t8);
    cce_astats_ref_free(ref);
    cce_model_free(dense);
    free(tokens);
    free(other);
}

/* The cost measurement runs and accounts for every value. */
static void test_bench(void **state) {
    (void)state;
    cce_model *dense = model_of(2, 4);
    cce_model *v = scaled_variant(dense, "layers.0.mlp.down_proj.weight", 0.5f);
    size_t n = 3 * (CTX - 1);
    int32_t *tokens = fixture_random_tokens(n, 5);
    cce_bench_stats_options o = {.reps = 2};
    cce_bench_stats_result r;
    assert_cce_ok(cce_bench_stats(dense, v, tokens, n, &o, &r));
    const cce_config *cfg = cce_model_config(dense);
    assert_int_equal(r.windows, 3);
    assert_int_equal(r.values,
                     3 * (CTX - 1) * (int64_t)cfg->n_layers * (cfg->dim + cfg->hidden_dim));
    int64_t kv = (int64_t)cfg->n_kv_heads * cfg->head_dim; /* q, o: dim^2; k, v: kv * dim */
    assert_int_equal(r.weights,
                     (int64_t)cfg->n_layers * (2 * cfg->dim * cfg->dim + 2 * kv * cfg->dim +
                                               3 * cfg->dim * cfg->hidden_dim));
    assert_true(r.eval_seconds > 0 && r.record_seconds > 0 && r.ref_seconds > 0);
    o.reps = 0;
    assert_int_equal(cce_bench_stats(dense, v, tokens, n, &o, &r), CCE_ERR_RANGE);
    char *out = NULL;
    assert_int_equal(test_run_cce("bench-stats --models tiny --quick", &out), 0);
    assert_non_null(strstr(out, "overhead"));
    assert_non_null(strstr(out, "\ntiny "));
    free(out);
    assert_int_equal(test_run_cce("bench-stats --models nope", &out), 2);
    assert_non_null(strstr(out, "unknown model 'nope'"));
    free(out);
    cce_model_free(v);
    cce_model_free(dense);
    free(tokens);
}

/* The Lua functions (lua/lua_stats.c). */
static void test_lua(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("lua");
    const char *text = test_path(dir, "text.txt");
    fixture_write_text(text, 3000, 60);
    /* a results file with a table, for cce.read_table */
    const char *results = test_path(dir, "r.h5");
    cce_table *wt;
    cce_model *m = model_of(2, 1);
    assert_cce_ok(cce_wstats_model(m, m, NULL, &wt));
    const cce_table *list[] = {wt};
    cce_run_record rec = {.key = "k", .experiment = "e", .n_tables = 1, .tables = list};
    cce_results *w;
    assert_cce_ok(cce_results_open(results, &w));
    assert_cce_ok(cce_results_add(w, &rec, NULL));
    cce_results_close(w);
    cce_table_free(wt);
    cce_model_free(m);

    char script[4096];
    snprintf(script, sizeof script,
             "local m = cce.synth{preset = 'tiny', seed = 3, n_layers = 3}\n"
             "local tk = cce.dataset('%s'):tokens{model = m}\n"
             "local ref = cce.activation_reference(m, tk, 'text', {max_tokens = 126, bins = 16})\n"
             "assert(ref:domain() == 'text' and ref:windows() == 2)\n"
             "local t = cce.activation_table(16)\n"
             "local r = cce.record_activations{model = m, dense = m, reference = ref, data = tk,\n"
             "                                 table = t}\n"
             "assert(#t == 6 and t:name() == 'activations', #t)\n"
             "local row = t:row(1)\n"
             "assert(math.abs(row.cosine - 1) < 1e-12 and row.rel_l2 == 0 and row.hist_kl == 0)\n"
             "assert(#row.hist == 16 and row.domain == 'text' and row.site == 'block_out')\n"
             "assert(r.kl == 0 and r.ppl > 1 and r.windows == 2)\n"
             "local w = cce.weight_stats(m, m, {bins = 8})\n"
             "assert(#w == 21 and w:name() == 'weights' and #w:row(1).hist_before == 8)\n"
             "assert(w:columns()[1].name == 'layer' and w:columns()[1].type == 'int64')\n"
             "t:append(t)\n"
             "assert(#t == 12)\n"
             "local back = cce.read_table('%s', 'r000001', 'weights')\n"
             "assert(#back == 14 and back:row(14).tensor == 'layers.1.mlp.down_proj.weight')\n"
             "local ok, err = pcall(cce.read_table, '%s', 'r000001', 'activations')\n"
             "assert(not ok and err:find('has no table activations'), err)\n"
             "ok, err = pcall(cce.record_activations, {model = m, dense = m, reference = ref,\n"
             "                data = tk, table = w})\n"
             "assert(not ok and err:find('not an activations table'), err)\n"
             "ok, err = pcall(cce.weight_stats, m, 'x')\n"
             "assert(not ok and err:find('cce.model expected'), err)\n"
             "ok, err = pcall(cce.activation_reference, m, tk, 'a b')\n"
             "assert(not ok and err:find('domain name'), err)\n",
             text, results, results);
    lua_State *L;
    assert_cce_ok(cce_lua_new(NULL, &L));
    char *msg = NULL;
    cce_status s = cce_lua_run_string(L, script, "=stats", &msg);
    if (s) fail_msg("%s", msg ? msg : "?");
    free(msg);
    cce_lua_close(L);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_moments),
        cmocka_unit_test(test_self),
        cmocka_unit_test(test_eval_matches),
        cmocka_unit_test(test_shifted_layer),
        cmocka_unit_test(test_domains_and_structure),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_bench),
        cmocka_unit_test(test_lua),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
