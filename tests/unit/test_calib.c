/* Calibration statistics on a tiny synthetic model: sums, squares, second moments and block
 * influence against a brute-force recomputation from hooks that keep every activation; segments
 * longer than a window; the cache (hit equals fresh, second moments serve plain requests, a
 * changed weight misses, a corrupt file is rebuilt); sequential statistics on a partly
 * compressed variant; name lookup; bad input. */
#include <dirent.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "forward.h"
#include "model.h"
#include "synth.h"
#include "fixtures.h"
#include "test_support.h"

#define N_LAYERS 2

/* ---- Brute force: keep every activation, then sum in double, token by token. ------------- */

typedef struct site_ref {
    int dim;
    int64_t n;
    double *sum, *sum_sq, *outer; /* [dim], [dim], [dim, dim] */
} site_ref;

typedef struct brute {
    site_ref s[N_LAYERS][CCE_SITE_COUNT];
    double cos_sum[N_LAYERS];
    int64_t cos_n[N_LAYERS];
    float *h_in; /* [rows, dim] */
} brute;

static void brute_hook(void *user, int layer, cce_hook_point p, const float *x, int rows,
                       int cols) {
    brute *b = user;
    int site = -1;
    switch (p) {
    case CCE_HOOK_BLOCK_IN:
        free(b->h_in);
        b->h_in = malloc((size_t)rows * cols * sizeof *x);
        memcpy(b->h_in, x, (size_t)rows * cols * sizeof *x);
        return;
    case CCE_HOOK_BLOCK_OUT:
        for (int t = 1; t < rows; t++) {
            double ab = 0, aa = 0, bb = 0;
            for (int j = 0; j < cols; j++) {
                double u = b->h_in[t * cols + j], v = x[t * cols + j];
                ab += u * v, aa += u * u, bb += v * v;
            }
            b->cos_sum[layer] += ab / sqrt(aa * bb);
            b->cos_n[layer]++;
        }
        return;
    case CCE_HOOK_ATTN_IN:
        site = CCE_SITE_ATTN_IN;
        break;
    case CCE_HOOK_O_IN:
        site = CCE_SITE_O_IN;
        break;
    case CCE_HOOK_FFN_IN:
        site = CCE_SITE_FFN_IN;
        break;
    case CCE_HOOK_DOWN_IN:
        site = CCE_SITE_DOWN_IN;
        break;
    }
    site_ref *s = &b->s[layer][site];
    if (!s->dim) {
        s->dim = cols;
        s->sum = calloc((size_t)cols, sizeof(double));
        s->sum_sq = calloc((size_t)cols, sizeof(double));
        s->outer = calloc((size_t)cols * cols, sizeof(double));
    }
    assert_int_equal(s->dim, cols);
    for (int t = 1; t < rows; t++) { /* row 0 is BOS: not accumulated */
        const float *v = x + (size_t)t * cols;
        for (int i = 0; i < cols; i++) {
            s->sum[i] += v[i];
            s->sum_sq[i] += (double)v[i] * v[i];
            for (int j = 0; j < cols; j++) s->outer[i * cols + j] += (double)v[i] * v[j];
        }
        s->n++;
    }
}

static void brute_free(brute *b) {
    for (int l = 0; l < N_LAYERS; l++)
        for (int s = 0; s < CCE_SITE_COUNT; s++) {
            free(b->s[l][s].sum);
            free(b->s[l][s].sum_sq);
            free(b->s[l][s].outer);
        }
    free(b->h_in);
}

/* Runs the windows of d (pieces of ctx - 1 tokens, each after BOS) with the brute-force hook. */
static void brute_collect(cce_model *m, const cce_calib_data *d, int ctx, brute *b) {
    memset(b, 0, sizeof *b);
    cce_forward *f;
    assert_cce_ok(cce_forward_new(m, ctx, &f));
    cce_forward_set_hook(f, brute_hook, b);
    float *logits = malloc((size_t)ctx * 300 * sizeof *logits);
    int32_t *w = malloc((size_t)ctx * sizeof *w);
    for (size_t s = 0; s < d->n_segments; s++)
        for (size_t off = 0; off < d->seg_len; off += (size_t)ctx - 1) {
            size_t n = d->seg_len - off < (size_t)ctx - 1 ? d->seg_len - off : (size_t)ctx - 1;
            w[0] = 1; /* BOS of the byte-level tokenizer */
            memcpy(w + 1, d->tokens + s * d->seg_len + off, n * sizeof *w);
            assert_cce_ok(cce_forward_window(f, w, (int)n + 1, logits));
        }
    free(logits);
    free(w);
    cce_forward_free(f);
}

static void assert_close(double got, double want, double tol, const char *what, int l, int i) {
    if (fabs(got - want) > tol * (1.0 + fabs(want)))
        fail_msg("%s (layer %d, index %d): got %.17g, expected %.17g", what, l, i, got, want);
}

static void compare(const cce_calib *c, const brute *b, int with_outer) {
    for (int l = 0; l < N_LAYERS; l++) {
        for (int s = 0; s < CCE_SITE_COUNT; s++) {
            cce_calib_input in;
            assert_cce_ok(cce_calib_site_input(c, l, (cce_calib_site)s, &in));
            const site_ref *r = &b->s[l][s];
            assert_int_equal(in.dim, r->dim);
            assert_int_equal(in.n_tokens, r->n);
            assert_int_equal(in.layer, l);
            assert_int_equal(in.site, s);
            for (int i = 0; i < r->dim; i++) {
                assert_close(in.sum[i], r->sum[i], 1e-10, "sum", l, i);
                assert_close(in.sum_sq[i], r->sum_sq[i], 1e-10, "sum_sq", l, i);
            }
            if (!with_outer) {
                assert_null(in.sum_outer);
                continue;
            }
            assert_non_null(in.sum_outer);
            for (int i = 0; i < r->dim * r->dim; i++)
                assert_close(in.sum_outer[i], r->outer[i], 1e-10, "sum_outer", l, i);
        }
        assert_close(cce_calib_block_influence(c, l), 1.0 - b->cos_sum[l] / (double)b->cos_n[l],
                     1e-12, "block influence", l, 0);
    }
}

static void test_sums_match_brute_force(void **state) {
    (void)state;
    cce_model *m = fixture_synth_preset("tiny", 3);
    int32_t *tokens = fixture_random_tokens(3 * 20, 7);
    cce_calib_data d = {.tokens = tokens, .n_segments = 3, .seg_len = 20};
    cce_calib_data_hash(&d);
    assert_int_equal(strlen(d.sha256), 64);
    cce_calib_options o = {.second_moments = 1, .ctx = 32};
    cce_calib *c;
    assert_cce_ok(cce_calib_collect(m, &d, &o, 0, &c));
    assert_int_equal(cce_calib_n_layers(c), N_LAYERS);
    brute b;
    brute_collect(m, &d, 32, &b);
    assert_int_equal(b.s[0][0].n, 3 * 20); /* every segment token, no BOS */
    compare(c, &b, 1);
    /* Block influence of a random block is strictly between 0 and 2. */
    double bi = cce_calib_block_influence(c, 1);
    assert_true(bi > 0 && bi < 2);
    cce_calib_free(c);

    /* Without second moments: the same sums and no sum_outer. */
    o.second_moments = 0;
    assert_cce_ok(cce_calib_collect(m, &d, &o, 0, &c));
    compare(c, &b, 0);
    cce_calib_free(c);
    brute_free(&b);
    free(tokens);
    cce_model_free(m);
}

static void test_long_segments_split_into_windows(void **state) {
    (void)state;
    cce_model *m = fixture_synth_preset("tiny", 5);
    int32_t *tokens = fixture_random_tokens(2 * 40, 11);
    cce_calib_data d = {.tokens = tokens, .n_segments = 2, .seg_len = 40};
    cce_calib_options o = {.second_moments = 1, .ctx = 16}; /* pieces of 15, 15, 10 tokens */
    cce_calib *c;
    assert_cce_ok(cce_calib_collect(m, &d, &o, 0, &c));
    brute b;
    brute_collect(m, &d, 16, &b);
    assert_int_equal(b.s[1][CCE_SITE_DOWN_IN].n, 80);
    compare(c, &b, 1);
    cce_calib_free(c);
    brute_free(&b);
    free(tokens);
    cce_model_free(m);
}

/* ---- Cache ---------------------------------------------------------------------------------- */

static int count_cache_files(const char *dir) {
    DIR *dp = opendir(dir);
    if (!dp) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)))
        n += strlen(e->d_name) > 3 && !strcmp(e->d_name + strlen(e->d_name) - 3, ".h5");
    closedir(dp);
    return n;
}

static void assert_same_stats(const cce_calib *a, const cce_calib *b) {
    for (int l = 0; l < N_LAYERS; l++) {
        for (int s = 0; s < CCE_SITE_COUNT; s++) {
            cce_calib_input x, y;
            assert_cce_ok(cce_calib_site_input(a, l, (cce_calib_site)s, &x));
            assert_cce_ok(cce_calib_site_input(b, l, (cce_calib_site)s, &y));
            assert_int_equal(x.dim, y.dim);
            assert_int_equal(x.n_tokens, y.n_tokens);
            assert_memory_equal(x.sum, y.sum, (size_t)x.dim * sizeof(double));
            assert_memory_equal(x.sum_sq, y.sum_sq, (size_t)x.dim * sizeof(double));
            assert_true((x.sum_outer == NULL) == (y.sum_outer == NULL));
            if (x.sum_outer)
                assert_memory_equal(x.sum_outer, y.sum_outer,
                                    (size_t)x.dim * x.dim * sizeof(double));
        }
        double p = cce_calib_block_influence(a, l), q = cce_calib_block_influence(b, l);
        assert_memory_equal(&p, &q, sizeof p);
    }
}

static void test_cache(void **state) {
    (void)state;
    char root[4096], calib_dir[4200];
    snprintf(root, sizeof root, "%s", test_scratch_dir("calib_cache"));
    snprintf(calib_dir, sizeof calib_dir, "%s/calib", root);
    char *saved = getenv("CCE_CACHE_DIR") ? strdup(getenv("CCE_CACHE_DIR")) : NULL;
    setenv("CCE_CACHE_DIR", root, 1);

    cce_model *m = fixture_synth_preset("tiny", 9);
    int32_t *tokens = fixture_random_tokens(4 * 16, 13);
    cce_calib_data d = {.tokens = tokens, .n_segments = 4, .seg_len = 16};
    cce_calib_data_hash(&d);
    cce_calib_options o = {.second_moments = 1, .ctx = 32};
    cce_calib *fresh, *first, *hit, *plain;
    assert_cce_ok(cce_calib_collect(m, &d, &o, 0, &fresh));
    assert_int_equal(count_cache_files(calib_dir), 0); /* use_cache 0 writes nothing */
    assert_cce_ok(cce_calib_collect(m, &d, &o, 1, &first));
    assert_int_equal(count_cache_files(calib_dir), 1);
    assert_cce_ok(cce_calib_collect(m, &d, &o, 1, &hit));
    assert_int_equal(count_cache_files(calib_dir), 1);
    assert_same_stats(fresh, first);
    assert_same_stats(fresh, hit);

    /* A request without second moments is served by the cached file that has them. */
    o.second_moments = 0;
    assert_cce_ok(cce_calib_collect(m, &d, &o, 1, &plain));
    assert_int_equal(count_cache_files(calib_dir), 1);
    cce_calib_input in;
    assert_cce_ok(cce_calib_site_input(plain, 0, CCE_SITE_FFN_IN, &in));
    assert_null(in.sum_outer);
    cce_calib_input ref;
    assert_cce_ok(cce_calib_site_input(fresh, 0, CCE_SITE_FFN_IN, &ref));
    assert_memory_equal(in.sum_sq, ref.sum_sq, (size_t)in.dim * sizeof(double));
    cce_calib_free(plain);
    o.second_moments = 1;

    /* Corrupt the cached file: it is a miss, recomputed and rewritten. */
    DIR *dp = opendir(calib_dir);
    struct dirent *e;
    char file[4600] = "";
    while ((e = readdir(dp)))
        if (strstr(e->d_name, ".h5")) snprintf(file, sizeof file, "%s/%s", calib_dir, e->d_name);
    closedir(dp);
    test_write_file(file, "not an HDF5 file", 16);
    cce_calib *rebuilt;
    assert_cce_ok(cce_calib_collect(m, &d, &o, 1, &rebuilt));
    assert_same_stats(fresh, rebuilt);
    size_t len = 0;
    char *bytes = test_read_file(file, &len);
    assert_true(len > 16);
    free(bytes);
    cce_calib_free(rebuilt);

    /* A variant with one weight changed has another fingerprint: a miss, a second file. */
    cce_model *v;
    cce_tensor *t, *copy;
    assert_cce_ok(cce_model_variant_new(m, &v));
    assert_cce_ok(cce_model_tensor(v, "layers.1.mlp.up_proj.weight", &t));
    assert_cce_ok(cce_tensor_clone(t, &copy));
    copy->data[5] += 0.5f;
    assert_cce_ok(cce_model_put_tensor(v, "layers.1.mlp.up_proj.weight", copy));
    cce_calib *cv;
    assert_cce_ok(cce_calib_collect(v, &d, &o, 1, &cv));
    assert_int_equal(count_cache_files(calib_dir), 2);
    /* Layer 1's FFN input is before up_proj: unchanged; its DOWN_IN is not. */
    cce_calib_input a, b2;
    assert_cce_ok(cce_calib_site_input(cv, 1, CCE_SITE_FFN_IN, &a));
    assert_cce_ok(cce_calib_site_input(fresh, 1, CCE_SITE_FFN_IN, &b2));
    assert_memory_equal(a.sum_sq, b2.sum_sq, (size_t)a.dim * sizeof(double));
    assert_cce_ok(cce_calib_site_input(cv, 1, CCE_SITE_DOWN_IN, &a));
    assert_cce_ok(cce_calib_site_input(fresh, 1, CCE_SITE_DOWN_IN, &b2));
    assert_true(memcmp(a.sum_sq, b2.sum_sq, (size_t)a.dim * sizeof(double)) != 0);

    /* Other data: another key. */
    tokens[0] = tokens[0] == 5 ? 6 : 5;
    cce_calib_data_hash(&d);
    cce_calib *cd;
    assert_cce_ok(cce_calib_collect(m, &d, &o, 1, &cd));
    assert_int_equal(count_cache_files(calib_dir), 3);

    cce_calib_free(cd);
    cce_calib_free(cv);
    cce_model_free(v);
    cce_calib_free(fresh);
    cce_calib_free(first);
    cce_calib_free(hit);
    free(tokens);
    cce_model_free(m);
    if (saved) {
        setenv("CCE_CACHE_DIR", saved, 1);
        free(saved);
    } else {
        unsetenv("CCE_CACHE_DIR");
    }
}

/* ---- Sequential ----------------------------------------------------------------------------- */

static void test_sequential_after_compressing_layer0(void **state) {
    (void)state;
    cce_model *m = fixture_synth_preset("tiny", 21);
    int32_t *tokens = fixture_random_tokens(3 * 24, 17);
    cce_calib_data d = {.tokens = tokens, .n_segments = 3, .seg_len = 24};
    cce_calib_options o = {.second_moments = 1, .ctx = 32};
    cce_calib *dense;
    assert_cce_ok(cce_calib_collect(m, &d, &o, 0, &dense));

    /* "Compress" layer 0 of a variant: zero the smaller half of its down_proj. */
    cce_model *v;
    cce_tensor *t, *copy;
    assert_cce_ok(cce_model_variant_new(m, &v));
    assert_cce_ok(cce_model_tensor(v, "layers.0.mlp.down_proj.weight", &t));
    assert_cce_ok(cce_tensor_clone(t, &copy));
    for (int64_t i = 0; i < cce_tensor_numel(copy); i++)
        if (fabsf(copy->data[i]) < 0.1f) copy->data[i] = 0;
    assert_cce_ok(cce_model_put_tensor(v, "layers.0.mlp.down_proj.weight", copy));

    cce_calib *seq = NULL;
    assert_cce_ok(cce_calib_collect_layer(v, &d, &o, 1, &seq));
    assert_int_equal(cce_calib_n_layers(seq), N_LAYERS);
    cce_calib_input in, ref;
    /* Only layer 1 was collected. */
    assert_int_equal(cce_calib_site_input(seq, 0, CCE_SITE_ATTN_IN, &in), CCE_ERR_NOT_FOUND);
    assert_true(isnan(cce_calib_block_influence(seq, 0)));
    for (int s = 0; s < CCE_SITE_COUNT; s++) {
        assert_cce_ok(cce_calib_site_input(seq, 1, (cce_calib_site)s, &in));
        assert_cce_ok(cce_calib_site_input(dense, 1, (cce_calib_site)s, &ref));
        assert_int_equal(in.n_tokens, ref.n_tokens);
        double diff = 0;
        for (int j = 0; j < in.dim; j++) diff += fabs(in.sum_sq[j] - ref.sum_sq[j]);
        if (!(diff > 1e-6)) fail_msg("layer 1 site %d: sequential equals dense", s);
    }
    /* Layer 0's inputs do not depend on its own down_proj: equal to dense. */
    assert_cce_ok(cce_calib_collect_layer(v, &d, &o, 0, &seq));
    for (int s = 0; s < CCE_SITE_COUNT; s++) {
        assert_cce_ok(cce_calib_site_input(seq, 0, (cce_calib_site)s, &in));
        assert_cce_ok(cce_calib_site_input(dense, 0, (cce_calib_site)s, &ref));
        assert_memory_equal(in.sum_sq, ref.sum_sq, (size_t)in.dim * sizeof(double));
        assert_memory_equal(in.sum_outer, ref.sum_outer, (size_t)in.dim * in.dim * sizeof(double));
    }
    /* The same layer on the dense model equals the dense statistics. */
    cce_calib *base1 = NULL;
    assert_cce_ok(cce_calib_collect_layer(m, &d, &o, 1, &base1));
    assert_cce_ok(cce_calib_site_input(base1, 1, CCE_SITE_DOWN_IN, &in));
    assert_cce_ok(cce_calib_site_input(dense, 1, CCE_SITE_DOWN_IN, &ref));
    assert_memory_equal(in.sum_sq, ref.sum_sq, (size_t)in.dim * sizeof(double));
    assert_int_equal(cce_calib_collect_layer(m, &d, &o, 2, &base1), CCE_ERR_RANGE);

    cce_calib_free(base1);
    cce_calib_free(seq);
    cce_calib_free(dense);
    cce_model_free(v);
    free(tokens);
    cce_model_free(m);
}

/* ---- Lookup and hand-set statistics --------------------------------------------------------- */

static void test_input_of_and_set_input(void **state) {
    (void)state;
    cce_calib *c;
    assert_cce_ok(cce_calib_new(4, &c));
    double sum[3] = {1, 2, 3}, sq[3] = {4, 5, 6}, outer[9] = {1, 2, 3, 2, 4, 5, 3, 5, 6};
    assert_cce_ok(cce_calib_set_input(c, 3, CCE_SITE_DOWN_IN, 3, 10, sum, sq, outer));
    assert_cce_ok(cce_calib_set_input(c, 3, CCE_SITE_ATTN_IN, 3, 7, sum, sq, NULL));
    cce_calib_input in;
    assert_cce_ok(cce_calib_input_of(c, "layers.3.mlp.down_proj.weight", &in));
    assert_int_equal(in.site, CCE_SITE_DOWN_IN);
    assert_int_equal(in.layer, 3);
    assert_int_equal(in.n_tokens, 10);
    assert_true(in.sum_sq[2] == 6 && in.sum_outer[5] == 5);
    assert_cce_ok(cce_calib_input_of(c, "layers.3.mlp.down_proj", &in));
    static const char *const attn[] = {"layers.3.self_attn.q_proj.weight",
                                       "layers.3.self_attn.k_proj.weight",
                                       "layers.3.self_attn.v_proj"};
    for (int i = 0; i < 3; i++) {
        assert_cce_ok(cce_calib_input_of(c, attn[i], &in));
        assert_int_equal(in.site, CCE_SITE_ATTN_IN);
        assert_null(in.sum_outer);
    }
    /* Sites without statistics, and names that are not linear layers. */
    assert_int_equal(cce_calib_input_of(c, "layers.3.self_attn.o_proj.weight", &in),
                     CCE_ERR_NOT_FOUND);
    assert_non_null(strstr(cce_error_detail(), "layers.3.self_attn.o_proj.weight"));
    assert_int_equal(cce_calib_input_of(c, "layers.3.mlp.gate_proj.weight", &in),
                     CCE_ERR_NOT_FOUND);
    assert_int_equal(cce_calib_input_of(c, "layers.3.input_layernorm.weight", &in),
                     CCE_ERR_NOT_FOUND);
    assert_int_equal(cce_calib_input_of(c, "embed_tokens.weight", &in), CCE_ERR_NOT_FOUND);
    assert_int_equal(cce_calib_input_of(c, "layers.9.mlp.up_proj.weight", &in), CCE_ERR_RANGE);
    assert_int_equal(cce_calib_set_input(c, 4, CCE_SITE_O_IN, 3, 1, sum, sq, NULL), CCE_ERR_RANGE);
    assert_int_equal(cce_calib_set_input(c, 0, CCE_SITE_O_IN, 0, 1, sum, sq, NULL), CCE_ERR_ARG);
    assert_int_equal(cce_calib_set_input(c, 0, CCE_SITE_O_IN, 3, 1, NULL, sq, NULL), CCE_ERR_ARG);
    assert_true(isnan(cce_calib_block_influence(c, 0)));
    assert_true(isnan(cce_calib_block_influence(c, 7)));
    cce_calib_free(c);
    assert_int_equal(cce_calib_new(0, &c), CCE_ERR_ARG);
}

/* ---- Bad input ------------------------------------------------------------------------------ */

static void test_bad_input(void **state) {
    (void)state;
    cce_model *m = fixture_synth_preset("tiny", 2);
    int32_t *tokens = fixture_random_tokens(2 * 10, 3);
    cce_calib_data d = {.tokens = tokens, .n_segments = 2, .seg_len = 10};
    cce_calib_options o = {.second_moments = 0, .ctx = 16};
    cce_calib *c = NULL;

    tokens[13] = 300; /* outside the vocabulary: segment 1, position 3 */
    assert_int_equal(cce_calib_collect(m, &d, &o, 0, &c), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "segment 1, position 3"));
    assert_null(c);
    tokens[13] = 5;

    o.ctx = 65; /* > seq_len 64 */
    assert_int_equal(cce_calib_collect(m, &d, &o, 0, &c), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "ctx = 65"));
    o.ctx = 16;

    cce_calib_data empty = {.tokens = tokens, .n_segments = 0, .seg_len = 10};
    assert_int_equal(cce_calib_collect(m, &empty, &o, 0, &c), CCE_ERR_ARG);
    assert_int_equal(cce_calib_collect_layer(m, &empty, &o, 0, &c), CCE_ERR_ARG);
    assert_null(c);

    /* NaN weights give a numeric error, not statistics. */
    cce_tensor *t;
    assert_cce_ok(cce_model_tensor(m, "layers.0.self_attn.v_proj.weight", &t));
    t->data[0] = NAN;
    assert_int_equal(cce_calib_collect(m, &d, &o, 0, &c), CCE_ERR_NUMERIC);
    assert_non_null(strstr(cce_error_detail(), "non-finite"));
    assert_null(c);
    free(tokens);
    cce_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sums_match_brute_force),
        cmocka_unit_test(test_long_segments_split_into_windows),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_sequential_after_compressing_layer0),
        cmocka_unit_test(test_input_of_and_set_input),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
