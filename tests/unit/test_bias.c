/* Layer biases (model.h "Biases"): the forward pass with biases equals a plain double-precision
 * reference in the window path (GEMM and single-row GEMV) and the decode path, with one and
 * several threads, with q/k biases before RoPE; a lowrank layer gets its bias after both products;
 * removing every bias gives bit for bit the model without them; biases save, load lazily and
 * round-trip bit for bit, enter the digest (which is unchanged for models without biases);
 * cce_model_set_layer_bias validates; block jobs apply pending biases on success only, reject
 * lengths that do not fit, and the compress driver stores them; structured pruning slices biases
 * like their rows (compared with a model sliced by hand); a resize without slicing fails clearly;
 * layer removal drops biases; weight-only strategies pass biases through. */
#include <hdf5.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "compress.h"
#include "encoding.h"
#include "forward.h"
#include "model.h"
#include "strategy.h"
#include "synth.h"
#include "test_support.h"

/* ---- Fixtures -------------------------------------------------------------------------------- */

/* A tiny GQA model (dim 32, hidden 48, 2 layers, 4 heads on 2 kv heads, head_dim 8, vocab 300,
 * seq 32), with or without biases of std 0.5 (large, so a misplaced bias shows). */
static cce_model *tiny(uint64_t seed, int biases) {
    cce_synth_options o;
    assert_cce_ok(cce_synth_preset("tiny", &o));
    o.cfg.hidden_dim = 48;
    o.cfg.seq_len = 32;
    o.seed = seed;
    o.biases = biases;
    o.bias_std = 0.5f;
    cce_model *m;
    assert_cce_ok(cce_synth_model(&o, &m));
    return m;
}

static int32_t *tokens(int T) {
    int32_t *tok = malloc((size_t)T * sizeof *tok); /* [T] */
    for (int t = 0; t < T; t++) tok[t] = (int32_t)((t * 37 + 11) % 300);
    return tok;
}

static cce_tensor *weight(cce_model *m, int l, cce_layer_tensor w) {
    cce_tensor *t;
    assert_cce_ok(cce_model_layer_tensor(m, l, w, &t));
    return t;
}

static const float *bias(cce_model *m, int l, cce_layer_bias b) {
    cce_tensor *t;
    assert_cce_ok(cce_model_layer_bias(m, l, b, &t));
    return t ? t->data : NULL;
}

/* ---- The reference forward pass -------------------------------------------------------------- */

/* y [rows] = W x + b (b may be NULL), W [rows, cols] float, x double, double accumulation. */
static void ref_linear(double *y, const cce_tensor *w, const float *b, const double *x) {
    int64_t rows = w->shape[0], cols = w->shape[1];
    for (int64_t i = 0; i < rows; i++) {
        double s = 0;
        for (int64_t j = 0; j < cols; j++) s += (double)w->data[i * cols + j] * x[j];
        y[i] = s + (b ? (double)b[i] : 0.0);
    }
}

static void ref_rmsnorm(double *out, const double *x, const float *w, int dim, double eps) {
    double ss = 0;
    for (int i = 0; i < dim; i++) ss += x[i] * x[i];
    double inv = 1.0 / sqrt(ss / dim + eps);
    for (int i = 0; i < dim; i++) out[i] = x[i] * inv * (double)w[i];
}

/* Rotate-half RoPE of n_heads heads of x at position pos. */
static void ref_rope(double *x, int n_heads, int hd, int pos, double theta) {
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < hd / 2; i++) {
            double ang = pos * pow(theta, -2.0 * i / hd), c = cos(ang), s = sin(ang);
            double *a = x + h * hd + i, *b = a + hd / 2, av = *a, bv = *b;
            *a = av * c - bv * s;
            *b = av * s + bv * c;
        }
}

static void add_bias(double *x, const float *b, int n) {
    for (int i = 0; b && i < n; i++) x[i] += (double)b[i];
}

/* logits [T, vocab] of tokens tok [T] by straightforward loops in double. qk_after_rope: add the
 * q/k biases after RoPE instead of before (a wrong placement, to show the test can tell). */
static double *ref_logits(cce_model *m, const int32_t *tok, int T, int qk_after_rope) {
    const cce_config *c = cce_model_config(m);
    int dim = c->dim, hd = c->head_dim, V = c->vocab_size;
    int maxw = dim > c->hidden_dim ? dim : c->hidden_dim;
    if (c->n_heads * hd > maxw) maxw = c->n_heads * hd;
    double *h = calloc((size_t)T * dim, sizeof *h);   /* [T, dim] */
    double *x = calloc((size_t)maxw, sizeof *x);      /* [maxw] */
    double *q = calloc((size_t)T * maxw, sizeof *q);  /* [T, q_dim] */
    double *k = calloc((size_t)T * maxw, sizeof *k);  /* [T, kv_dim] */
    double *v = calloc((size_t)T * maxw, sizeof *v);  /* [T, kv_dim] */
    double *o = calloc((size_t)T * maxw, sizeof *o);  /* [T, q_dim] */
    double *g = calloc((size_t)maxw, sizeof *g);      /* [hidden] */
    double *u = calloc((size_t)maxw, sizeof *u);      /* [hidden] */
    double *y = calloc((size_t)maxw, sizeof *y);      /* [dim] */
    double *p = calloc((size_t)T, sizeof *p);         /* [T] */
    double *out = calloc((size_t)T * V, sizeof *out); /* [T, vocab] */
    cce_tensor *emb;
    assert_cce_ok(cce_model_global_tensor(m, CCE_GT_EMBED, &emb));
    for (int t = 0; t < T; t++)
        for (int i = 0; i < dim; i++) h[t * dim + i] = emb->data[(int64_t)tok[t] * dim + i];
    for (int l = 0; l < c->n_layers; l++) {
        const cce_layer_shape *ls = cce_model_layer(m, l);
        if (ls->removed) continue;
        int qd = ls->n_heads * hd, kd = ls->n_kv_heads * hd, H = ls->hidden_dim;
        const float *bq = bias(m, l, CCE_LB_Q), *bk = bias(m, l, CCE_LB_K);
        for (int t = 0; t < T; t++) {
            ref_rmsnorm(x, h + t * dim, weight(m, l, CCE_LT_ATTN_NORM)->data, dim, c->norm_eps);
            ref_linear(q + t * maxw, weight(m, l, CCE_LT_Q), qk_after_rope ? NULL : bq, x);
            ref_linear(k + t * maxw, weight(m, l, CCE_LT_K), qk_after_rope ? NULL : bk, x);
            ref_linear(v + t * maxw, weight(m, l, CCE_LT_V), bias(m, l, CCE_LB_V), x);
            ref_rope(q + t * maxw, ls->n_heads, hd, t, c->rope_theta);
            ref_rope(k + t * maxw, ls->n_kv_heads, hd, t, c->rope_theta);
            if (qk_after_rope) {
                add_bias(q + t * maxw, bq, qd);
                add_bias(k + t * maxw, bk, kd);
            }
        }
        for (int t = 0; t < T; t++)
            for (int hh = 0; hh < ls->n_heads; hh++) {
                int gi = ls->kv_of_head[hh];
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= t; j++) {
                    double s = 0;
                    for (int d = 0; d < hd; d++)
                        s += q[t * maxw + hh * hd + d] * k[j * maxw + gi * hd + d];
                    p[j] = s / sqrt((double)hd);
                    if (p[j] > mx) mx = p[j];
                }
                for (int j = 0; j <= t; j++) sum += (p[j] = exp(p[j] - mx));
                for (int d = 0; d < hd; d++) {
                    double s = 0;
                    for (int j = 0; j <= t; j++) s += p[j] / sum * v[j * maxw + gi * hd + d];
                    o[t * maxw + hh * hd + d] = s;
                }
            }
        for (int t = 0; t < T; t++) {
            ref_linear(y, weight(m, l, CCE_LT_O), bias(m, l, CCE_LB_O), o + t * maxw);
            for (int i = 0; i < dim; i++) h[t * dim + i] += y[i];
            ref_rmsnorm(x, h + t * dim, weight(m, l, CCE_LT_FFN_NORM)->data, dim, c->norm_eps);
            ref_linear(g, weight(m, l, CCE_LT_GATE), bias(m, l, CCE_LB_GATE), x);
            ref_linear(u, weight(m, l, CCE_LT_UP), bias(m, l, CCE_LB_UP), x);
            for (int j = 0; j < H; j++) g[j] = g[j] / (1.0 + exp(-g[j])) * u[j];
            ref_linear(y, weight(m, l, CCE_LT_DOWN), bias(m, l, CCE_LB_DOWN), g);
            for (int i = 0; i < dim; i++) h[t * dim + i] += y[i];
        }
        (void)qd;
        (void)kd;
    }
    cce_tensor *norm, *cls;
    assert_cce_ok(cce_model_global_tensor(m, CCE_GT_NORM, &norm));
    assert_cce_ok(cce_model_global_tensor(m, CCE_GT_LM_HEAD, &cls));
    for (int t = 0; t < T; t++) {
        ref_rmsnorm(x, h + t * dim, norm->data, dim, c->norm_eps);
        ref_linear(out + (int64_t)t * V, cls, NULL, x);
    }
    free(h), free(x), free(q), free(k), free(v), free(o), free(g), free(u), free(y), free(p);
    return out;
}

static double max_diff(const float *a, const double *b, int64_t n) {
    double d = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= d)) d = e; /* NaN propagates */
    }
    return d;
}

#define TOL 2e-4

/* Window logits [T, vocab] (caller frees). */
static float *window_logits(cce_model *m, const int32_t *tok, int T) {
    float *out = malloc((size_t)T * cce_model_config(m)->vocab_size * sizeof *out);
    cce_forward *f;
    assert_cce_ok(cce_forward_new(m, T, &f));
    assert_cce_ok(cce_forward_window(f, tok, T, out));
    cce_forward_free(f);
    return out;
}

/* Decode logits [T, vocab], one token at a time from position 0 (caller frees). */
static float *decode_logits(cce_model *m, const int32_t *tok, int T) {
    int V = cce_model_config(m)->vocab_size;
    float *out = malloc((size_t)T * V * sizeof *out);
    cce_forward *f;
    assert_cce_ok(cce_forward_new(m, 4, &f));
    for (int t = 0; t < T; t++) assert_cce_ok(cce_forward_token(f, tok[t], t, out + (size_t)t * V));
    cce_forward_free(f);
    return out;
}

/* Window (T rows and a single row) and decode logits against the reference, at 1 and 3 threads
 * (3 exceeds the 2 kv heads, so decoding's other attention split runs too). */
static void check_against_reference(cce_model *m, int T) {
    int V = cce_model_config(m)->vocab_size, saved = omp_get_max_threads();
    int32_t *tok = tokens(T);
    double *ref = ref_logits(m, tok, T, 0);
    static const int threads[] = {1, 3};
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(threads[k]);
        float *w = window_logits(m, tok, T);
        double dw = max_diff(w, ref, (int64_t)T * V);
        float *one = window_logits(m, tok, 1); /* the single-row (GEMV) path */
        double d1 = max_diff(one, ref, V);
        float *d = decode_logits(m, tok, T);
        double dd = max_diff(d, ref, (int64_t)T * V);
        if (!(dw < TOL) || !(d1 < TOL) || !(dd < TOL))
            fail_msg("threads %d: window %g, one row %g, decode %g from the reference", threads[k],
                     dw, d1, dd);
        free(w), free(one), free(d);
    }
    omp_set_num_threads(saved);
    free(ref);
    free(tok);
}

/* ---- Forward --------------------------------------------------------------------------------- */

static void test_forward_matches_reference(void **state) {
    (void)state;
    cce_model *m = tiny(3, 1);
    assert_int_equal(cce_model_bias_count(m), 2 * CCE_LB_COUNT);
    check_against_reference(m, 13);
    cce_model_free(m);
}

static void test_qk_bias_before_rope(void **state) {
    (void)state;
    cce_model *m = tiny(4, 1);
    int T = 12, V = 300;
    int32_t *tok = tokens(T);
    double *before = ref_logits(m, tok, T, 0), *after = ref_logits(m, tok, T, 1);
    /* The two placements differ clearly (from position 1 on), so matching `before` within TOL
     * proves the forward adds q/k biases before RoPE. */
    double apart = 0;
    for (int64_t i = 0; i < (int64_t)T * V; i++) apart = fmax(apart, fabs(before[i] - after[i]));
    assert_true(apart > 100 * TOL);
    float *w = window_logits(m, tok, T), *d = decode_logits(m, tok, T);
    assert_true(max_diff(w, before, (int64_t)T * V) < TOL);
    assert_true(max_diff(d, before, (int64_t)T * V) < TOL);
    assert_true(max_diff(w, after, (int64_t)T * V) > 10 * TOL);
    free(w), free(d), free(before), free(after), free(tok);
    cce_model_free(m);
}

static void test_lowrank_layer_with_bias(void **state) {
    (void)state;
    cce_model *m = tiny(5, 1);
    /* q_proj of layer 0 and down_proj of layer 1 stored as rank-3 pairs: the forward runs them as
     * two products and adds the bias after the second; decoding takes the per-projection path. */
    static const struct {
        int layer;
        cce_layer_tensor w;
    } lr[] = {{0, CCE_LT_Q}, {1, CCE_LT_DOWN}};
    for (int k = 0; k < 2; k++) {
        cce_tensor *w = weight(m, lr[k].layer, lr[k].w);
        int64_t rows = w->shape[0], cols = w->shape[1], r = 3;
        float *a = malloc(sizeof *a * (size_t)(rows * r)),
              *b = malloc(sizeof *b * (size_t)(r * cols));
        for (int64_t i = 0; i < rows * r; i++) a[i] = w->data[i % (rows * cols)];
        for (int64_t i = 0; i < r * cols; i++) b[i] = w->data[(i * 7) % (rows * cols)];
        cce_tensor *t;
        assert_cce_ok(cce_tensor_new_2d(rows, cols, &t));
        assert_cce_ok(cce_encoding_lowrank_product(a, b, rows, r, cols, "test", t->data));
        cce_encoding *e;
        assert_cce_ok(cce_encoding_new_lowrank(a, b, r, 2, t->shape, "test", &e));
        char name[96];
        cce_layer_tensor_name(lr[k].layer, lr[k].w, name, sizeof name);
        assert_cce_ok(cce_model_put_encoded(m, name, t, e));
        free(a), free(b);
    }
    assert_non_null(bias(m, 0, CCE_LB_Q));
    assert_non_null(bias(m, 1, CCE_LB_DOWN));
    check_against_reference(m, 9);
    cce_model_free(m);
}

static void test_no_bias_is_bit_identical(void **state) {
    (void)state;
    cce_model *a = tiny(6, 1), *b = tiny(6, 0);
    int T = 10, V = 300;
    int32_t *tok = tokens(T);
    float *with = window_logits(a, tok, T);
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < CCE_LB_COUNT; k++) {
            assert_true(cce_model_has_layer_bias(a, l, (cce_layer_bias)k));
            assert_cce_ok(cce_model_set_layer_bias(a, l, (cce_layer_bias)k, NULL));
            assert_false(cce_model_has_layer_bias(a, l, (cce_layer_bias)k));
        }
    assert_int_equal(cce_model_bias_count(a), 0);
    assert_int_equal(cce_model_total_params(a), cce_model_total_params(b));
    float *wa = window_logits(a, tok, T), *wb = window_logits(b, tok, T);
    float *da = decode_logits(a, tok, T), *db = decode_logits(b, tok, T);
    assert_memory_equal(wa, wb, sizeof *wa * (size_t)(T * V));
    assert_memory_equal(da, db, sizeof *da * (size_t)(T * V));
    assert_memory_not_equal(with, wa, sizeof *wa * (size_t)(T * V)); /* the biases mattered */
    char ha[65], hb[65];
    assert_cce_ok(cce_model_weights_sha256(a, ha));
    assert_cce_ok(cce_model_weights_sha256(b, hb));
    assert_string_equal(ha, hb);
    free(with), free(wa), free(wb), free(da), free(db), free(tok);
    cce_model_free(a);
    cce_model_free(b);
}

/* ---- Model API, store, digest ---------------------------------------------------------------- */

static void test_set_layer_bias_validates(void **state) {
    (void)state;
    cce_model *m = tiny(7, 0);
    cce_tensor *t;
    assert_cce_ok(cce_tensor_new_1d(5, &t)); /* q_proj has 32 rows */
    assert_int_equal(cce_model_set_layer_bias(m, 0, CCE_LB_Q, t), CCE_ERR_ARG); /* t freed */
    assert_non_null(strstr(cce_error_detail(), "layers.0.self_attn.q_proj.bias"));
    assert_cce_ok(cce_tensor_new_1d(16, &t));
    t->data[3] = NAN;
    assert_int_equal(cce_model_set_layer_bias(m, 1, CCE_LB_K, t), CCE_ERR_NUMERIC);
    assert_non_null(strstr(cce_error_detail(), "layers.1.self_attn.k_proj.bias"));
    assert_cce_ok(cce_tensor_new_1d(48, &t));
    assert_int_equal(cce_model_set_layer_bias(m, 2, CCE_LB_UP, t), CCE_ERR_NOT_FOUND);
    assert_cce_ok(cce_tensor_new_1d(48, &t));
    assert_int_equal(cce_model_set_layer_bias(m, 0, CCE_LB_COUNT, t), CCE_ERR_NOT_FOUND);
    assert_int_equal(cce_model_bias_count(m), 0);
    /* By name too, as an ordinary tensor (but never in the weight enumeration). */
    size_t n = cce_model_tensor_count(m);
    assert_cce_ok(cce_tensor_new_1d(48, &t));
    t->data[0] = 2.5f;
    assert_cce_ok(cce_model_put_tensor(m, "layers.1.mlp.up_proj.bias", t));
    assert_true(cce_model_has_layer_bias(m, 1, CCE_LB_UP));
    assert_int_equal(cce_model_tensor_count(m), n);
    cce_tensor *got;
    assert_cce_ok(cce_model_tensor(m, "layers.1.mlp.up_proj.bias", &got));
    assert_ptr_equal(got, t);
    assert_int_equal(cce_model_tensor(m, "layers.1.mlp.gate_proj.bias", &got), CCE_ERR_NOT_FOUND);
    assert_int_equal(cce_model_layer_bias(m, 1, CCE_LB_GATE, &got), CCE_OK);
    assert_null(got);
    assert_int_equal(cce_model_layer_params(m, 1), cce_model_layer_params(m, 0) + 48);
    /* A variant shares the base's bias, and setting one there leaves the base alone. */
    cce_model *v;
    assert_cce_ok(cce_model_variant_new(m, &v));
    assert_true(cce_model_has_layer_bias(v, 1, CCE_LB_UP));
    assert_true(cce_model_tensor_is_shared(v, "layers.1.mlp.up_proj.bias"));
    assert_cce_ok(cce_tensor_new_1d(48, &t));
    assert_cce_ok(cce_model_set_layer_bias(v, 1, CCE_LB_UP, t));
    assert_false(cce_model_tensor_is_shared(v, "layers.1.mlp.up_proj.bias"));
    assert_cce_ok(cce_model_set_layer_bias(v, 0, CCE_LB_O, NULL)); /* absent: nothing to remove */
    assert_true(bias(m, 1, CCE_LB_UP)[0] == 2.5f);
    assert_true(bias(v, 1, CCE_LB_UP)[0] == 0.0f);
    cce_model_free(v);
    /* A removed layer drops its biases and takes no new ones. */
    assert_cce_ok(cce_model_remove_layer(m, 1));
    assert_false(cce_model_has_layer_bias(m, 1, CCE_LB_UP));
    assert_cce_ok(cce_tensor_new_1d(48, &t));
    assert_int_equal(cce_model_set_layer_bias(m, 1, CCE_LB_UP, t), CCE_ERR_STATE);
    cce_model_free(m);
}

static void test_save_load_round_trip(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("bias_store");
    char path[4096], plain[4096];
    snprintf(path, sizeof path, "%s", test_path(dir, "biased.h5"));
    snprintf(plain, sizeof plain, "%s", test_path(dir, "plain.h5"));
    cce_model *m = tiny(8, 1);
    assert_cce_ok(cce_model_remove_layer(m, 1)); /* a removed layer among them */
    assert_cce_ok(cce_model_save(m, path, NULL));
    cce_model *r;
    assert_cce_ok(cce_model_open(path, &r));
    assert_int_equal(cce_model_bias_count(r), CCE_LB_COUNT);
    for (int k = 0; k < CCE_LB_COUNT; k++) {
        char name[96];
        cce_layer_bias_name(0, (cce_layer_bias)k, name, sizeof name);
        assert_true(cce_model_has_layer_bias(r, 0, (cce_layer_bias)k));
        assert_false(cce_model_tensor_is_loaded(r, name)); /* lazy */
        cce_tensor *a, *b;
        assert_cce_ok(cce_model_layer_bias(m, 0, (cce_layer_bias)k, &a));
        assert_cce_ok(cce_model_layer_bias(r, 0, (cce_layer_bias)k, &b));
        assert_true(cce_model_tensor_is_loaded(r, name));
        assert_int_equal(b->ndim, 1);
        assert_int_equal(b->shape[0], a->shape[0]);
        assert_memory_equal(a->data, b->data, sizeof(float) * (size_t)a->shape[0]);
        assert_false(cce_model_has_layer_bias(r, 1, (cce_layer_bias)k));
    }
    assert_int_equal(cce_model_total_params(r), cce_model_total_params(m));
    char hm[65], hr[65], hc[65];
    assert_cce_ok(cce_model_weights_sha256(m, hm));
    assert_cce_ok(cce_model_weights_sha256(r, hr));
    assert_string_equal(hm, hr);
    int32_t *tok = tokens(8);
    float *lm = window_logits(m, tok, 8), *lr = window_logits(r, tok, 8);
    assert_memory_equal(lm, lr, sizeof *lm * 8 * 300);
    free(lm), free(lr), free(tok);
    /* One bias value changed: another digest. */
    cce_tensor *t;
    assert_cce_ok(cce_model_layer_bias(r, 0, CCE_LB_V, &t));
    t->data[5] = nextafterf(t->data[5], INFINITY);
    assert_cce_ok(cce_model_weights_sha256(r, hc));
    assert_string_not_equal(hm, hc);
    cce_model_free(r);
    cce_model_free(m);

    /* A model without biases saves no bias datasets and digests as before biases existed (the
     * value computed by the code before them, for the tiny preset of seed 11). */
    cce_synth_options o;
    assert_cce_ok(cce_synth_preset("tiny", &o));
    o.seed = 11;
    assert_cce_ok(cce_synth_model(&o, &m));
    assert_cce_ok(cce_model_weights_sha256(m, hm));
    assert_string_equal(hm, "71899f8713e0979a3e8f6486f83d3285be0cd2549a9b26bdfb849460ca2d4eab");
    assert_cce_ok(cce_model_save(m, plain, NULL));
    assert_cce_ok(cce_model_open(plain, &r));
    assert_int_equal(cce_model_bias_count(r), 0);
    assert_cce_ok(cce_model_weights_sha256(r, hr));
    assert_string_equal(hm, hr);
    cce_model_free(r);
    cce_model_free(m);
}

static void test_reshape_and_corrupt_file(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("bias_reshape");
    char path[4096];
    snprintf(path, sizeof path, "%s", test_path(dir, "m.h5"));
    cce_model *m = tiny(9, 1);
    cce_layer_shape s = *cce_model_layer(m, 0);
    s.hidden_dim = 40; /* shrink layer 0's FFN, giving tensors and biases of the new width */
    cce_tensor *nt[CCE_LT_COUNT] = {0}, *nb[CCE_LB_COUNT] = {0}, *t;
    assert_cce_ok(cce_tensor_new_2d(40, 32, &nt[CCE_LT_GATE]));
    assert_cce_ok(cce_tensor_new_2d(40, 32, &nt[CCE_LT_UP]));
    assert_cce_ok(cce_tensor_new_2d(32, 40, &nt[CCE_LT_DOWN]));
    /* Without the sliced biases the reshape fails and changes nothing. */
    assert_int_equal(cce_model_reshape_layer(m, 0, &s, nt), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "layers.0.mlp.gate_proj.bias"));
    assert_int_equal(cce_model_layer(m, 0)->hidden_dim, 48);
    assert_cce_ok(cce_tensor_new_1d(40, &nb[CCE_LB_GATE]));
    assert_cce_ok(cce_tensor_new_1d(41, &nb[CCE_LB_UP]));
    assert_int_equal(cce_model_reshape_layer_biases(m, 0, &s, nt, nb), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "layers.0.mlp.up_proj.bias"));
    assert_int_equal(cce_model_layer(m, 0)->hidden_dim, 48);
    cce_tensor_free(nb[CCE_LB_UP]);
    assert_cce_ok(cce_tensor_new_1d(40, &nb[CCE_LB_UP]));
    nb[CCE_LB_UP]->data[39] = 3.0f;
    assert_cce_ok(cce_model_reshape_layer_biases(m, 0, &s, nt, nb)); /* the model owns them */
    assert_int_equal(cce_model_layer(m, 0)->hidden_dim, 40);
    assert_cce_ok(cce_model_layer_bias(m, 0, CCE_LB_UP, &t));
    assert_ptr_equal(t, nb[CCE_LB_UP]);
    assert_cce_ok(cce_model_save(m, path, NULL));
    cce_model_free(m);
    cce_model *r;
    assert_cce_ok(cce_model_open(path, &r));
    assert_cce_ok(cce_model_layer_bias(r, 0, CCE_LB_UP, &t));
    assert_int_equal(cce_tensor_numel(t), 40);
    assert_true(t->data[39] == 3.0f);
    int32_t *tok = tokens(6);
    float *l = window_logits(r, tok, 6);
    double *ref = ref_logits(r, tok, 6, 0);
    assert_true(max_diff(l, ref, 6 * 300) < TOL);
    free(l), free(ref), free(tok);
    cce_model_free(r);

    /* A bias of the wrong length in the file is a format error naming file and bias. */
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_true(H5Ldelete(f, "/model/layers/01/mlp/up_proj/bias", H5P_DEFAULT) >= 0);
    hsize_t dims[1] = {5};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t d = H5Dcreate2(f, "/model/layers/01/mlp/up_proj/bias", H5T_IEEE_F32LE, space, H5P_DEFAULT,
                         H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0);
    float five[5] = {1, 2, 3, 4, 5};
    assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, five) >= 0);
    H5Dclose(d);
    H5Sclose(space);
    H5Fclose(f);
    assert_int_equal(cce_model_open(path, &r), CCE_ERR_FORMAT);
    assert_non_null(strstr(cce_error_detail(), "layers.1.mlp.up_proj.bias"));
    assert_non_null(strstr(cce_error_detail(), "m.h5"));
}

/* ---- Block jobs ------------------------------------------------------------------------------ */

enum { MODE_SET_O, MODE_SET_THEN_FAIL, MODE_WRONG_LENGTH, MODE_SHRINK_NO_SLICE, MODE_OUTSIDE };
static int g_mode;

/* Test strategy: what it does to the job depends on g_mode. */
static cce_status biasprobe_apply(void *priv, cce_block_job *job, cce_report *r) {
    (void)priv;
    (void)r;
    float v[64];
    cce_status s;
    switch (g_mode) {
    case MODE_SET_O: /* o_proj bias += 1 (0 + 1 where there is none) */
        if (job->layer < 0) return CCE_OK;
        for (int i = 0; i < 32; i++)
            v[i] = (job->bias[CCE_LB_O] ? job->bias[CCE_LB_O]->data[i] : 0) + 1;
        return cce_block_job_set_bias(job, CCE_LB_O, v, 32);
    case MODE_SET_THEN_FAIL:
        for (int i = 0; i < 32; i++) v[i] = 7;
        if ((s = cce_block_job_set_bias(job, CCE_LB_O, v, 32))) return s;
        return cce_fail(CCE_ERR_NUMERIC, "biasprobe: refuses after setting a bias");
    case MODE_WRONG_LENGTH:
        if (job->layer < 0) return CCE_OK;
        for (int i = 0; i < 64; i++) v[i] = 1;
        return cce_block_job_set_bias(job, CCE_LB_GATE, v, 47);
    case MODE_SHRINK_NO_SLICE: { /* drops the last FFN neuron, forgets the biases */
        if (job->layer < 0) return CCE_OK;
        const cce_layer_shape *ls = cce_model_layer(job->model, job->layer);
        int H = ls->hidden_dim;
        for (int w = CCE_LT_GATE; w <= CCE_LT_DOWN; w++) {
            cce_tensor *old = job->tensors[w].weight, *fresh;
            int64_t shape[2] = {w == CCE_LT_DOWN ? 32 : H - 1, w == CCE_LT_DOWN ? H - 1 : 32};
            if ((s = cce_block_job_resize(job, (size_t)w, 2, shape, &fresh))) return s;
            for (int64_t i = 0; i < shape[0]; i++)
                for (int64_t j = 0; j < shape[1]; j++)
                    fresh->data[i * shape[1] + j] = old->data[i * old->shape[1] + j];
        }
        return cce_block_job_set_shape(job, H - 1, ls->n_heads, ls->n_kv_heads, ls->kv_of_head);
    }
    case MODE_OUTSIDE:
        if (job->layer >= 0) return CCE_OK;
        v[0] = 1;
        return cce_block_job_set_bias(job, CCE_LB_O, v, 1);
    }
    return CCE_OK;
}

static const cce_param no_params[] = {{NULL, 0, NULL, 0, 0, 0, NULL, NULL}};

static const cce_strategy biasprobe = {
    .api_version = CCE_STRATEGY_API_VERSION,
    .name = "biasprobe",
    .summary = "sets biases",
    .params = no_params,
    .needs = CCE_NEEDS_RESIZE,
    .apply = biasprobe_apply,
};

static cce_strategy_instance *instance_of(const cce_strategy *s, const char *params) {
    cce_params *p;
    cce_strategy_instance *inst;
    assert_cce_ok(cce_params_parse(s, params, &p));
    assert_cce_ok(cce_strategy_instance_new(s, p, &inst));
    cce_params_free(p);
    return inst;
}

/* A block job of layer l holding copies of the model's tensors and biases, resizing granted. */
static cce_block_job *job_of(cce_model *m, int l) {
    cce_block_job *job;
    assert_cce_ok(cce_block_job_new(l, CCE_LT_COUNT, &job));
    for (int w = 0; w < CCE_LT_COUNT; w++) {
        char name[96];
        cce_tensor *copy;
        cce_layer_tensor_name(l, (cce_layer_tensor)w, name, sizeof name);
        assert_cce_ok(cce_tensor_clone(weight(m, l, (cce_layer_tensor)w), &copy));
        assert_cce_ok(cce_block_job_set(job, (size_t)w, name, copy, 0, 0));
    }
    for (int b = 0; b < CCE_LB_COUNT; b++) {
        cce_tensor *t;
        assert_cce_ok(cce_model_layer_bias(m, l, (cce_layer_bias)b, &t));
        if (t) assert_cce_ok(cce_tensor_clone(t, &job->bias[b]));
    }
    job->model = m;
    job->can_resize = 1;
    return job;
}

static void test_block_job_set_bias(void **state) {
    (void)state;
    cce_model *m = tiny(10, 1);
    cce_strategy_instance *inst = instance_of(&biasprobe, "");
    cce_report r;
    cce_report_init(&r);
    const float *o0 = bias(m, 0, CCE_LB_O);

    /* Applied on success: job->bias holds the new values afterwards. */
    g_mode = MODE_SET_O;
    cce_block_job *job = job_of(m, 0);
    assert_cce_ok(cce_strategy_instance_apply(inst, job, &r));
    assert_null(job->bias_pending[CCE_LB_O]);
    for (int i = 0; i < 32; i++) assert_true(job->bias[CCE_LB_O]->data[i] == o0[i] + 1);
    cce_block_job_free(job);

    /* Dropped on failure: the job keeps the old values. */
    g_mode = MODE_SET_THEN_FAIL;
    job = job_of(m, 0);
    assert_int_equal(cce_strategy_instance_apply(inst, job, &r), CCE_ERR_NUMERIC);
    assert_null(job->bias_pending[CCE_LB_O]);
    assert_memory_equal(job->bias[CCE_LB_O]->data, o0, 32 * sizeof(float));
    cce_block_job_free(job);

    /* A length that does not fit the weight's rows fails, naming strategy and bias. */
    g_mode = MODE_WRONG_LENGTH;
    job = job_of(m, 1);
    assert_int_equal(cce_strategy_instance_apply(inst, job, &r), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "biasprobe"));
    assert_non_null(strstr(cce_error_detail(), "layers.1.mlp.gate_proj.bias"));
    assert_null(job->bias_pending[CCE_LB_GATE]);
    cce_block_job_free(job);

    /* A resize of gate/up rows that leaves their biases fails instead of breaking the model. */
    g_mode = MODE_SHRINK_NO_SLICE;
    job = job_of(m, 0);
    assert_int_equal(cce_strategy_instance_apply(inst, job, &r), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "biasprobe"));
    assert_non_null(strstr(cce_error_detail(), "layers.0.mlp.gate_proj.bias"));
    assert_null(job->tensors[CCE_LT_GATE].resized);
    assert_int_equal(job->tensors[CCE_LT_GATE].weight->shape[0], 48);
    assert_int_equal(job->reshaped, 0);
    cce_block_job_free(job);

    /* The job of the tensors outside the blocks takes no bias. */
    g_mode = MODE_OUTSIDE;
    assert_cce_ok(cce_block_job_new(-1, 1, &job));
    cce_tensor *norm;
    assert_cce_ok(cce_model_global_tensor(m, CCE_GT_NORM, &norm));
    assert_cce_ok(cce_tensor_clone(norm, &norm));
    assert_cce_ok(cce_block_job_set(job, 0, "norm.weight", norm, 0, 0));
    assert_int_equal(cce_strategy_instance_apply(inst, job, &r), CCE_ERR_STATE);
    cce_block_job_free(job);

    /* Argument checks. */
    float v[4] = {1, 2, NAN, 4};
    job = job_of(m, 0);
    assert_int_equal(cce_block_job_set_bias(job, CCE_LB_COUNT, v, 1), CCE_ERR_ARG);
    assert_int_equal(cce_block_job_set_bias(job, CCE_LB_O, v, 0), CCE_ERR_ARG);
    assert_int_equal(cce_block_job_set_bias(job, CCE_LB_O, NULL, 2), CCE_ERR_ARG);
    assert_int_equal(cce_block_job_set_bias(job, CCE_LB_O, v, 4), CCE_ERR_NUMERIC);
    assert_non_null(strstr(cce_error_detail(), "layers.0.self_attn.o_proj.bias"));
    cce_block_job_free(job);

    cce_report_clear(&r);
    cce_strategy_instance_free(inst);
    cce_model_free(m);
}

static cce_status compress_with(cce_model *base, const cce_strategy *s, const char *params,
                                cce_model **v) {
    cce_strategy_instance *inst = instance_of(s, params);
    cce_compress_result res;
    cce_status st = cce_compress(base, &inst, 1, NULL, 0, NULL, NULL, v, &res);
    if (!st) cce_compress_result_clear(&res);
    cce_strategy_instance_free(inst);
    return st;
}

static void test_driver_stores_biases(void **state) {
    (void)state;
    cce_model *base = tiny(12, 1);
    cce_model *v;
    /* Set: the variant gets o + 1 in every layer, the base is untouched. */
    g_mode = MODE_SET_O;
    assert_cce_ok(compress_with(base, &biasprobe, "", &v));
    for (int l = 0; l < 2; l++) {
        const float *bo = bias(base, l, CCE_LB_O), *vo = bias(v, l, CCE_LB_O);
        for (int i = 0; i < 32; i++) assert_true(vo[i] == bo[i] + 1);
        assert_ptr_equal(bias(v, l, CCE_LB_Q), bias(base, l, CCE_LB_Q)); /* unchanged: shared */
    }
    char name[96];
    cce_layer_bias_name(1, CCE_LB_O, name, sizeof name);
    assert_false(cce_model_tensor_is_shared(v, name));
    cce_model_free(v);
    /* On a model without biases the set bias appears. */
    cce_model *plain = tiny(12, 0);
    assert_cce_ok(compress_with(plain, &biasprobe, "", &v));
    assert_int_equal(cce_model_bias_count(v), 2);
    assert_int_equal(cce_model_bias_count(plain), 0);
    assert_true(bias(v, 0, CCE_LB_O)[7] == 1.0f);
    cce_model_free(v);
    cce_model_free(plain);
    /* Wrong length and a resize without slicing fail the run clearly. */
    g_mode = MODE_WRONG_LENGTH;
    assert_int_equal(compress_with(base, &biasprobe, "", &v), CCE_ERR_ARG);
    assert_null(v);
    g_mode = MODE_SHRINK_NO_SLICE;
    assert_int_equal(compress_with(base, &biasprobe, "", &v), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "layers.0.mlp.gate_proj.bias"));
    /* Without biases the same resize is fine. */
    plain = tiny(12, 0);
    assert_cce_ok(compress_with(plain, &biasprobe, "", &v));
    assert_int_equal(cce_model_layer(v, 1)->hidden_dim, 47);
    cce_model_free(v);
    cce_model_free(plain);
    cce_model_free(base);
}

/* ---- Strategies ------------------------------------------------------------------------------ */

/* idx [n_units] of the base's units (unit_len rows of w at a time) that the variant's rows of wv
 * are, in order; -1 when a unit has no exact match. Returns the number of units of wv. */
static int match_units(const cce_tensor *wb, const cce_tensor *wv, int unit_len, int *idx) {
    int64_t cols = wb->shape[1], nb = wb->shape[0] / unit_len, nv = wv->shape[0] / unit_len;
    size_t bytes = sizeof(float) * (size_t)(unit_len * cols);
    for (int64_t u = 0; u < nv; u++) {
        idx[u] = -1;
        for (int64_t j = 0; j < nb && idx[u] < 0; j++)
            if (!memcmp(wv->data + u * unit_len * cols, wb->data + j * unit_len * cols, bytes))
                idx[u] = (int)j;
    }
    return (int)nv;
}

/* t [n units * unit_len] of the base's bias, units idx. */
static cce_tensor *slice_1d(const float *b, const int *idx, int n, int unit_len) {
    cce_tensor *t;
    assert_cce_ok(cce_tensor_new_1d((int64_t)n * unit_len, &t));
    for (int u = 0; u < n; u++)
        memcpy(t->data + (int64_t)u * unit_len, b + (int64_t)idx[u] * unit_len,
               sizeof(float) * (size_t)unit_len);
    return t;
}

/* Rows (axis 0) or column blocks (axis 1) idx of w. */
static cce_tensor *slice_2d(const cce_tensor *w, int axis, const int *idx, int n, int unit_len) {
    int64_t rows = w->shape[0], cols = w->shape[1];
    cce_tensor *t;
    if (axis == 0) {
        assert_cce_ok(cce_tensor_new_2d((int64_t)n * unit_len, cols, &t));
        for (int u = 0; u < n; u++)
            memcpy(t->data + (int64_t)u * unit_len * cols,
                   w->data + (int64_t)idx[u] * unit_len * cols,
                   sizeof(float) * (size_t)(unit_len * cols));
    } else {
        assert_cce_ok(cce_tensor_new_2d(rows, (int64_t)n * unit_len, &t));
        for (int64_t i = 0; i < rows; i++)
            for (int u = 0; u < n; u++)
                memcpy(t->data + i * n * unit_len + (int64_t)u * unit_len,
                       w->data + i * cols + (int64_t)idx[u] * unit_len,
                       sizeof(float) * (size_t)unit_len);
    }
    return t;
}

static void test_structured_slices_biases(void **state) {
    (void)state;
    cce_model *base = tiny(13, 1), *v;
    cce_strategy_instance *inst;
    {
        const cce_strategy *s;
        cce_params *p;
        assert_cce_ok(cce_strategy_parse_spec("structured:ratio=0.5,unit=both", &s, &p));
        assert_cce_ok(cce_strategy_instance_new(s, p, &inst));
        cce_params_free(p);
    }
    cce_compress_result res;
    assert_cce_ok(cce_compress(base, &inst, 1, NULL, 0, NULL, NULL, &v, &res));
    /* The summary counts biases as cce_model_total_params does. */
    assert_int_equal(res.summary.model.params_before, cce_model_total_params(base));
    assert_int_equal(res.summary.model.params_after, cce_model_total_params(v));
    int64_t blocks = 0;
    for (int l = 0; l < 2; l++) blocks += cce_model_layer_params(v, l);
    assert_int_equal(res.summary.blocks.params_after, blocks);
    cce_compress_result_clear(&res);
    cce_strategy_instance_free(inst);
    /* The reference: a variant of the base reshaped by hand, weights and biases sliced by the
     * units the pruned weights show were kept. */
    cce_model *ref;
    assert_cce_ok(cce_model_variant_new(base, &ref));
    int hd = 8;
    int dropped_kv = 0;
    for (int l = 0; l < 2; l++) {
        const cce_layer_shape *ls = cce_model_layer(v, l);
        assert_int_equal(ls->hidden_dim, 24);
        assert_int_equal(ls->n_heads, 2);
        int neurons[48], heads[4], kv[2];
        assert_int_equal(
            match_units(weight(base, l, CCE_LT_GATE), weight(v, l, CCE_LT_GATE), 1, neurons), 24);
        assert_int_equal(match_units(weight(base, l, CCE_LT_Q), weight(v, l, CCE_LT_Q), hd, heads),
                         2);
        int nkv = match_units(weight(base, l, CCE_LT_K), weight(v, l, CCE_LT_K), hd, kv);
        assert_int_equal(nkv, ls->n_kv_heads);
        dropped_kv += nkv < 2;
        for (int u = 0; u < 24; u++) assert_true(neurons[u] >= 0);
        for (int u = 0; u < 2; u++) assert_true(heads[u] >= 0);
        for (int u = 0; u < nkv; u++) assert_true(kv[u] >= 0);
        cce_tensor *nt[CCE_LT_COUNT] = {0}, *nb[CCE_LB_COUNT] = {0};
        nt[CCE_LT_Q] = slice_2d(weight(base, l, CCE_LT_Q), 0, heads, 2, hd);
        nt[CCE_LT_O] = slice_2d(weight(base, l, CCE_LT_O), 1, heads, 2, hd);
        nt[CCE_LT_K] = slice_2d(weight(base, l, CCE_LT_K), 0, kv, nkv, hd);
        nt[CCE_LT_V] = slice_2d(weight(base, l, CCE_LT_V), 0, kv, nkv, hd);
        nt[CCE_LT_GATE] = slice_2d(weight(base, l, CCE_LT_GATE), 0, neurons, 24, 1);
        nt[CCE_LT_UP] = slice_2d(weight(base, l, CCE_LT_UP), 0, neurons, 24, 1);
        nt[CCE_LT_DOWN] = slice_2d(weight(base, l, CCE_LT_DOWN), 1, neurons, 24, 1);
        nb[CCE_LB_Q] = slice_1d(bias(base, l, CCE_LB_Q), heads, 2, hd);
        nb[CCE_LB_K] = slice_1d(bias(base, l, CCE_LB_K), kv, nkv, hd);
        nb[CCE_LB_V] = slice_1d(bias(base, l, CCE_LB_V), kv, nkv, hd);
        nb[CCE_LB_GATE] = slice_1d(bias(base, l, CCE_LB_GATE), neurons, 24, 1);
        nb[CCE_LB_UP] = slice_1d(bias(base, l, CCE_LB_UP), neurons, 24, 1);
        assert_cce_ok(cce_model_reshape_layer_biases(ref, l, ls, nt, nb));
        /* o and down keep their biases (rows are the residual stream). */
        assert_ptr_equal(bias(v, l, CCE_LB_O), bias(base, l, CCE_LB_O));
        assert_ptr_equal(bias(v, l, CCE_LB_DOWN), bias(base, l, CCE_LB_DOWN));
    }
    int T = 11;
    int32_t *tok = tokens(T);
    float *lv = window_logits(v, tok, T), *lr = window_logits(ref, tok, T);
    assert_memory_equal(lv, lr, sizeof *lv * (size_t)(T * 300));
    double *want = ref_logits(v, tok, T, 0);
    assert_true(max_diff(lv, want, (int64_t)T * 300) < TOL);
    float *dv = decode_logits(v, tok, T);
    assert_true(max_diff(dv, want, (int64_t)T * 300) < TOL);
    free(lv), free(lr), free(dv), free(want), free(tok);
    (void)dropped_kv;
    cce_model_free(ref);
    cce_model_free(v);
    cce_model_free(base);
}

static void test_weight_strategies_and_removal(void **state) {
    (void)state;
    cce_model *base = tiny(14, 1), *v;
    const char *const specs[] = {"magnitude:ratio=0.5", "magnitude:ratio=0.3,scope=global",
                                 "rtn:bits=4", "lowrank:ratio=0.5"};
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        const cce_strategy *s;
        cce_params *p;
        cce_strategy_instance *inst;
        assert_cce_ok(cce_strategy_parse_spec(specs[k], &s, &p));
        assert_cce_ok(cce_strategy_instance_new(s, p, &inst));
        cce_params_free(p);
        cce_compress_result res;
        assert_cce_ok(cce_compress(base, &inst, 1, NULL, 0, NULL, NULL, &v, &res));
        cce_compress_result_clear(&res);
        cce_strategy_instance_free(inst);
        for (int l = 0; l < 2; l++)
            for (int b = 0; b < CCE_LB_COUNT; b++) {
                char name[96];
                cce_layer_bias_name(l, (cce_layer_bias)b, name, sizeof name);
                assert_true(cce_model_tensor_is_shared(v, name)); /* passed through */
            }
        check_against_reference(v, 7);
        cce_model_free(v);
    }
    /* Layer removal (ShortGPT's step) drops the block's biases; the rest still runs. */
    assert_cce_ok(cce_model_variant_new(base, &v));
    int64_t before = cce_model_total_params(v);
    assert_cce_ok(cce_model_remove_layer(v, 0));
    assert_int_equal(cce_model_bias_count(v), CCE_LB_COUNT);
    assert_int_equal(cce_model_total_params(v), before - cce_model_layer_params(base, 0));
    check_against_reference(v, 7);
    cce_model_free(v);
    cce_model_free(base);
}

static void test_synth_biases(void **state) {
    (void)state;
    cce_model *a = tiny(15, 1), *b = tiny(15, 1), *c = tiny(15, 0);
    char ha[65], hb[65];
    assert_cce_ok(cce_model_weights_sha256(a, ha));
    assert_cce_ok(cce_model_weights_sha256(b, hb));
    assert_string_equal(ha, hb);                             /* seeded */
    for (size_t i = 0; i < cce_model_tensor_count(a); i++) { /* the weights do not move */
        cce_tensor *ta, *tc;
        assert_cce_ok(cce_model_tensor(a, cce_model_tensor_name_at(a, i), &ta));
        assert_cce_ok(cce_model_tensor(c, cce_model_tensor_name_at(c, i), &tc));
        assert_memory_equal(ta->data, tc->data, sizeof(float) * (size_t)cce_tensor_numel(ta));
    }
    const float *q0 = bias(a, 0, CCE_LB_Q), *q1 = bias(a, 1, CCE_LB_Q);
    double ss = 0;
    for (int i = 0; i < 32; i++) ss += (double)q0[i] * q0[i];
    assert_true(sqrt(ss / 32) > 0.25 && sqrt(ss / 32) < 1.0); /* std 0.5 */
    assert_memory_not_equal(q0, q1, 32 * sizeof(float));
    assert_int_equal(cce_model_total_params(a),
                     cce_model_total_params(c) + 2 * (32 + 16 + 16 + 32 + 48 + 48 + 32));
    cce_model_free(a);
    cce_model_free(b);
    cce_model_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_matches_reference),
        cmocka_unit_test(test_qk_bias_before_rope),
        cmocka_unit_test(test_lowrank_layer_with_bias),
        cmocka_unit_test(test_no_bias_is_bit_identical),
        cmocka_unit_test(test_set_layer_bias_validates),
        cmocka_unit_test(test_save_load_round_trip),
        cmocka_unit_test(test_reshape_and_corrupt_file),
        cmocka_unit_test(test_block_job_set_bias),
        cmocka_unit_test(test_driver_stores_biases),
        cmocka_unit_test(test_structured_slices_biases),
        cmocka_unit_test(test_weight_strategies_and_removal),
        cmocka_unit_test(test_synth_biases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
