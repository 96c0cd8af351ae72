/* The forward pass on small in-memory random models: windows against a naive double-precision
 * reference, windows against KV-cache decoding, GQA, head maps, removed layers, hooks, and bad
 * arguments. */
#include <gsl/gsl_rng.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "model.h"
#include "store.h"
#include "test_support.h"

static cce_config small_config(int n_heads, int n_kv_heads, int tied, int seq_len) {
    cce_config c = {.dim = 24,
                    .hidden_dim = 40,
                    .n_layers = 3,
                    .n_heads = n_heads,
                    .n_kv_heads = n_kv_heads,
                    .head_dim = 8,
                    .vocab_size = 37,
                    .seq_len = seq_len,
                    .rope_theta = 10000.0f,
                    .norm_eps = 1e-5f,
                    .tied_embeddings = tied};
    return c;
}

/* Fills every tensor deterministically: norms near 1, matrices uniform with std ~ gain/sqrt(in). */
static void fill_model(cce_model *m, unsigned long seed) {
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, seed);
    for (size_t i = 0; i < cce_model_tensor_count(m); i++) {
        const char *name = cce_model_tensor_name_at(m, i);
        cce_tensor *t;
        assert_cce_ok(cce_model_tensor(m, name, &t));
        int64_t n = cce_tensor_numel(t), cols = cce_tensor_cols(t);
        int is_norm = strstr(name, "norm") != NULL;
        double a = is_norm ? 0.2 : 2.0 * sqrt(3.0 / (double)cols);
        for (int64_t k = 0; k < n; k++)
            t->data[k] = (float)((is_norm ? 1.0 : 0.0) + a * (gsl_rng_uniform(r) - 0.5));
    }
    gsl_rng_free(r);
}

static cce_model *make_model(cce_config c, unsigned long seed) {
    cce_model *m;
    assert_cce_ok(cce_model_new(&c, &m));
    fill_model(m, seed);
    return m;
}

static const float *tensor_data(cce_model *m, int layer, cce_layer_tensor w) {
    cce_tensor *t;
    assert_cce_ok(cce_model_layer_tensor(m, layer, w, &t));
    return t->data;
}

/* ---- A naive reference: token by token in double, straight from the formulas. ------------ */

static void ref_rmsnorm(double *out, const double *x, const float *w, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double inv = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * inv * w[i];
}

static void ref_matvec(double *y, const float *w, const double *x, int out, int in) {
    for (int o = 0; o < out; o++) {
        double s = 0;
        for (int i = 0; i < in; i++) s += (double)w[(size_t)o * in + i] * x[i];
        y[o] = s;
    }
}

static void ref_rope(double *v, int n_heads, int hd, int pos, double theta) {
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < hd / 2; i++) {
            double ang = pos * pow(theta, -2.0 * i / hd);
            double a = v[h * hd + i], b = v[h * hd + i + hd / 2];
            v[h * hd + i] = a * cos(ang) - b * sin(ang);
            v[h * hd + i + hd / 2] = a * sin(ang) + b * cos(ang);
        }
}

/* logits [T, vocab] of tokens[0..T-1] */
static void ref_forward(cce_model *m, const int32_t *tokens, int T, double *logits) {
    const cce_config *c = cce_model_config(m);
    int dim = c->dim, hd = c->head_dim, L = c->n_layers, V = c->vocab_size;
    int maxq = 0, maxkv = 0, maxh = 0;
    for (int l = 0; l < L; l++) {
        const cce_layer_shape *s = cce_model_layer(m, l);
        if (s->n_heads * hd > maxq) maxq = s->n_heads * hd;
        if (s->n_kv_heads * hd > maxkv) maxkv = s->n_kv_heads * hd;
        if (s->hidden_dim > maxh) maxh = s->hidden_dim;
    }
    double *kc = calloc((size_t)L * T * maxkv, sizeof(double)); /* [L, T, maxkv] */
    double *vc = calloc((size_t)L * T * maxkv, sizeof(double)); /* [L, T, maxkv] */
    double *h = malloc(sizeof(double) * dim), *x = malloc(sizeof(double) * dim);
    double *q = malloc(sizeof(double) * maxq), *o = malloc(sizeof(double) * maxq);
    double *y = malloc(sizeof(double) * (dim > maxh ? dim : maxh));
    double *g = malloc(sizeof(double) * maxh), *u = malloc(sizeof(double) * maxh);
    double *att = malloc(sizeof(double) * T);
    cce_tensor *emb, *nrm, *cls;
    assert_cce_ok(cce_model_global_tensor(m, CCE_GT_EMBED, &emb));
    assert_cce_ok(cce_model_global_tensor(m, CCE_GT_NORM, &nrm));
    assert_cce_ok(cce_model_global_tensor(m, CCE_GT_LM_HEAD, &cls));
    for (int p = 0; p < T; p++) {
        for (int i = 0; i < dim; i++) h[i] = emb->data[(size_t)tokens[p] * dim + i];
        for (int l = 0; l < L; l++) {
            const cce_layer_shape *s = cce_model_layer(m, l);
            if (s->removed) continue;
            int qd = s->n_heads * hd, kvd = s->n_kv_heads * hd;
            double *kr = kc + ((size_t)l * T + p) * maxkv, *vr = vc + ((size_t)l * T + p) * maxkv;
            ref_rmsnorm(x, h, tensor_data(m, l, CCE_LT_ATTN_NORM), dim, c->norm_eps);
            ref_matvec(q, tensor_data(m, l, CCE_LT_Q), x, qd, dim);
            ref_matvec(kr, tensor_data(m, l, CCE_LT_K), x, kvd, dim);
            ref_matvec(vr, tensor_data(m, l, CCE_LT_V), x, kvd, dim);
            ref_rope(q, s->n_heads, hd, p, c->rope_theta);
            ref_rope(kr, s->n_kv_heads, hd, p, c->rope_theta);
            for (int hh = 0; hh < s->n_heads; hh++) {
                int kv = s->kv_of_head[hh];
                double mx = -INFINITY, sum = 0;
                for (int t = 0; t <= p; t++) {
                    double d = 0;
                    for (int i = 0; i < hd; i++)
                        d += q[hh * hd + i] * kc[((size_t)l * T + t) * maxkv + kv * hd + i];
                    att[t] = d / sqrt((double)hd);
                    mx = fmax(mx, att[t]);
                }
                for (int t = 0; t <= p; t++) sum += att[t] = exp(att[t] - mx);
                for (int i = 0; i < hd; i++) {
                    double acc = 0;
                    for (int t = 0; t <= p; t++)
                        acc += att[t] / sum * vc[((size_t)l * T + t) * maxkv + kv * hd + i];
                    o[hh * hd + i] = acc;
                }
            }
            ref_matvec(y, tensor_data(m, l, CCE_LT_O), o, dim, qd);
            for (int i = 0; i < dim; i++) h[i] += y[i];
            ref_rmsnorm(x, h, tensor_data(m, l, CCE_LT_FFN_NORM), dim, c->norm_eps);
            ref_matvec(g, tensor_data(m, l, CCE_LT_GATE), x, s->hidden_dim, dim);
            ref_matvec(u, tensor_data(m, l, CCE_LT_UP), x, s->hidden_dim, dim);
            for (int i = 0; i < s->hidden_dim; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
            ref_matvec(y, tensor_data(m, l, CCE_LT_DOWN), g, dim, s->hidden_dim);
            for (int i = 0; i < dim; i++) h[i] += y[i];
        }
        ref_rmsnorm(x, h, nrm->data, dim, c->norm_eps);
        for (int v = 0; v < V; v++) {
            double d = 0;
            for (int i = 0; i < dim; i++) d += (double)cls->data[(size_t)v * dim + i] * x[i];
            logits[(size_t)p * V + v] = d;
        }
    }
    free(kc);
    free(vc);
    free(h);
    free(x);
    free(q);
    free(o);
    free(y);
    free(g);
    free(u);
    free(att);
}

/* ---- Helpers -------------------------------------------------------------------------------- */

static int32_t *make_tokens(int T, int vocab, unsigned seed) {
    int32_t *t = malloc(sizeof(int32_t) * T);
    unsigned s = seed;
    for (int i = 0; i < T; i++) {
        s = s * 1103515245u + 12345u;
        t[i] = (int32_t)((s >> 8) % (unsigned)vocab);
    }
    return t;
}

static double max_abs(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

/* Window logits vs the reference vs token-by-token decoding, for a model and T tokens. */
static void check_model(cce_model *m, int T) {
    const cce_config *c = cce_model_config(m);
    int V = c->vocab_size;
    int32_t *tok = make_tokens(T, V, (unsigned)T * 7u + 1u);
    float *win = malloc(sizeof(float) * T * V), *dec = malloc(sizeof(float) * T * V);
    double *ref = malloc(sizeof(double) * T * V);
    cce_forward *f;
    assert_cce_ok(cce_forward_new(m, T, &f));
    assert_int_equal(cce_forward_max_tokens(f), T);
    assert_ptr_equal(cce_forward_model(f), m);
    assert_cce_ok(cce_forward_window(f, tok, T, win));
    for (int p = 0; p < T; p++) assert_cce_ok(cce_forward_token(f, tok[p], p, dec + (size_t)p * V));
    ref_forward(m, tok, T, ref);
    double d_ref = 0, spread = 0;
    for (size_t i = 0; i < (size_t)T * V; i++) {
        d_ref = fmax(d_ref, fabs(win[i] - ref[i]));
        spread = fmax(spread, fabs(ref[i]));
    }
    double d_dec = max_abs(win, dec, (size_t)T * V);
    print_message("T=%d heads=%d/%d: |window-ref| %.2e, |window-decode| %.2e, max |logit| %.2f\n",
                  T, (int)c->n_heads, (int)c->n_kv_heads, d_ref, d_dec, spread);
    assert_true(spread > 0.5); /* logits are not trivially small */
    assert_true(d_ref < 1e-4);
    assert_true(d_dec < 1e-4);
    /* A shorter window is a prefix of the longer one (causality). */
    int T2 = T / 2 + 1;
    float *pre = malloc(sizeof(float) * T2 * V);
    assert_cce_ok(cce_forward_window(f, tok, T2, pre));
    assert_true(max_abs(pre, win, (size_t)T2 * V) < 1e-5);
    /* A window fills the cache: decoding continues at position T2. */
    float *next = malloc(sizeof(float) * V);
    assert_cce_ok(cce_forward_token(f, tok[T2], T2, next));
    assert_true(max_abs(next, win + (size_t)T2 * V, V) < 1e-4);
    cce_forward_free(f);
    free(tok);
    free(win);
    free(dec);
    free(ref);
    free(pre);
    free(next);
}

static void test_mha(void **state) {
    (void)state;
    cce_model *m = make_model(small_config(4, 4, 0, 64), 11);
    check_model(m, 40);
    cce_model_free(m);
}

static void test_gqa_tied(void **state) {
    (void)state;
    cce_model *m = make_model(small_config(6, 2, 1, 64), 12);
    check_model(m, 33);
    cce_model_free(m);
}

static void test_long_window_blocks(void **state) {
    (void)state;
    /* A long window with a ragged last block of query rows, and a head_dim (24) that is not a
     * multiple of the attention kernel's 16-wide blocks. */
    cce_config c = small_config(4, 2, 1, 300);
    c.head_dim = 24;
    cce_model *m = make_model(c, 13);
    check_model(m, 290);
    cce_model_free(m);
}

/* Decoding splits every step over a team of OpenMP threads (rows of each projection, kv heads,
 * query heads): with 1 to 4 threads, including more threads than kv heads (multi-query) and
 * projections whose rows do not divide evenly, it matches the window. */
static void test_decode_thread_counts(void **state) {
    (void)state;
    int saved = omp_get_max_threads();
    const int kv_heads[3] = {1, 2, 5};
    for (int m_i = 0; m_i < 3; m_i++) {
        cce_config c = small_config(kv_heads[m_i] == 5 ? 5 : 4, kv_heads[m_i], 0, 64);
        c.hidden_dim = 37; /* not a multiple of the 16-row slices */
        cce_model *m = make_model(c, 20u + (unsigned)m_i);
        for (int threads = 1; threads <= 4; threads++) {
            omp_set_num_threads(threads);
            check_model(m, 19);
        }
        cce_model_free(m);
    }
    omp_set_num_threads(saved);
}

/* The buffers a decoding step reads (cce bench's streaming bound): every weight once, packed or
 * not, and the count reported even when the caller's room is short. */
static void test_decode_buffers(void **state) {
    (void)state;
    cce_config c = small_config(4, 2, 0, 64);
    cce_model *m = make_model(c, 31);
    cce_forward *f;
    assert_cce_ok(cce_forward_new(m, 8, &f));
    int count = -1;
    assert_cce_ok(cce_forward_decode_buffers(f, NULL, NULL, 0, &count));
    /* Per layer: attention norm, packed q/k/v with wo^T, FFN norm, packed gate/up/wd^T chunks;
     * then the final norm and the untied classifier. */
    assert_int_equal(count, 4 * (int)c.n_layers + 2);
    const float *ptr[64];
    int64_t numel[64], total = 0;
    assert_cce_ok(cce_forward_decode_buffers(f, ptr, numel, 64, &count));
    for (int k = 0; k < count; k++) {
        assert_non_null(ptr[k]);
        total += numel[k];
    }
    int64_t per_layer = 2 * c.dim + (int64_t)c.dim * (2 * 4 * 8 + 2 * 2 * 8) + 3 * c.dim * 40;
    assert_int_equal(total, c.n_layers * per_layer + c.dim + (int64_t)c.vocab_size * c.dim);
    assert_int_equal(cce_forward_decode_buffers(f, NULL, NULL, 4, &count), CCE_ERR_ARG);
    cce_forward_free(f);
    cce_model_free(m);
}

static void test_head_map_and_removed_layer(void **state) {
    (void)state;
    cce_model *m = make_model(small_config(4, 2, 0, 64), 14);
    /* A non-default head map (e.g. after heads were regrouped): layer 0 reads kv heads 1,0,0,1. */
    const cce_layer_shape *s0 = cce_model_layer(m, 0);
    const int32_t map[4] = {1, 0, 0, 1};
    memcpy(s0->kv_of_head, map, sizeof map);
    check_model(m, 20);
    /* Removing layer 1 (the model keeps its numbering and skips the block). */
    ((cce_layer_shape *)cce_model_layer(m, 1))->removed = 1;
    check_model(m, 20);
    cce_model_free(m);
}

/* Random [rows, cols] tensor (rows may be 1-D when cols == 0). The caller owns it. */
static cce_tensor *random_tensor(gsl_rng *r, int64_t rows, int64_t cols, int is_norm) {
    cce_tensor *t;
    if (cols)
        assert_cce_ok(cce_tensor_new_2d(rows, cols, &t));
    else
        assert_cce_ok(cce_tensor_new_1d(rows, &t));
    double a = is_norm ? 0.2 : 2.0 * sqrt(3.0 / (double)(cols ? cols : 1));
    for (int64_t k = 0; k < cce_tensor_numel(t); k++)
        t->data[k] = (float)((is_norm ? 1.0 : 0.0) + a * (gsl_rng_uniform(r) - 0.5));
    return t;
}

/* Per-layer widths after structured compression: a file whose layers have their own hidden_dim,
 * n_heads, n_kv_heads and head maps, and a removed layer without tensors. */
static void test_non_uniform_widths(void **state) {
    (void)state;
    cce_hdf5_init();
    cce_config c = small_config(4, 2, 0, 64);
    c.n_layers = 4;
    c.hidden_dim = 160; /* decoding packs the FFN in chunks of 128 units: 128 + 32 */
    int32_t map0[4] = {0, 0, 1, 1}, map1[3] = {1, 0, 1}, map2[1] = {0}, map3[4] = {0, 1, 0, 1};
    cce_layer_shape shapes[4] = {
        {.hidden_dim = 160, .n_heads = 4, .n_kv_heads = 2, .kv_of_head = map0},
        {.hidden_dim = 13, .n_heads = 3, .n_kv_heads = 2, .kv_of_head = map1},
        {.hidden_dim = 40, .n_heads = 1, .n_kv_heads = 1, .kv_of_head = map2, .removed = 1},
        {.hidden_dim = 150, .n_heads = 4, .n_kv_heads = 2, .kv_of_head = map3},
    };
    const char *dir = test_scratch_dir("forward_widths");
    const char *path = test_path(dir, "pruned.h5");
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 99);
    cce_store_writer *w;
    assert_cce_ok(cce_store_create(path, NULL, &w));
    assert_cce_ok(cce_store_write_config(w, &c, "test:non-uniform"));
    char name[128];
    for (int l = 0; l < c.n_layers; l++) {
        const cce_layer_shape *s = &shapes[l];
        assert_cce_ok(cce_store_write_layer_shape(w, &c, l, s));
        if (s->removed) continue;
        int64_t q = (int64_t)s->n_heads * c.head_dim, kv = (int64_t)s->n_kv_heads * c.head_dim;
        const int64_t dims[CCE_LT_COUNT][2] = {{c.dim, 0},
                                               {q, c.dim},
                                               {kv, c.dim},
                                               {kv, c.dim},
                                               {c.dim, q},
                                               {c.dim, 0},
                                               {s->hidden_dim, c.dim},
                                               {s->hidden_dim, c.dim},
                                               {c.dim, s->hidden_dim}};
        for (int k = 0; k < CCE_LT_COUNT; k++) {
            cce_tensor *t = random_tensor(r, dims[k][0], dims[k][1],
                                          k == CCE_LT_ATTN_NORM || k == CCE_LT_FFN_NORM);
            cce_layer_tensor_name(l, (cce_layer_tensor)k, name, sizeof name);
            assert_cce_ok(cce_store_write_tensor(w, c.n_layers, name, t));
            cce_tensor_free(t);
        }
    }
    const struct {
        const char *name;
        int64_t rows, cols;
    } globals[3] = {{"embed_tokens.weight", c.vocab_size, c.dim},
                    {"norm.weight", c.dim, 0},
                    {"lm_head.weight", c.vocab_size, c.dim}};
    for (int k = 0; k < 3; k++) {
        cce_tensor *t = random_tensor(r, globals[k].rows, globals[k].cols, k == 1);
        assert_cce_ok(cce_store_write_tensor(w, c.n_layers, globals[k].name, t));
        cce_tensor_free(t);
    }
    assert_cce_ok(cce_store_commit(w));
    gsl_rng_free(r);

    cce_model *m;
    assert_cce_ok(cce_model_open(path, &m));
    assert_int_equal(cce_model_layer(m, 1)->hidden_dim, 13);
    assert_int_equal(cce_model_layer(m, 1)->n_heads, 3);
    assert_int_equal(cce_model_layer(m, 2)->removed, 1);
    /* Decoding takes whole kv groups per thread at 1 and 2 threads, and shares rows at 3 and 4
     * (more threads than kv groups); a head map that interleaves the groups (layers 1 and 3)
     * reorders the packed query rows. */
    int saved = omp_get_max_threads();
    for (int threads = 1; threads <= 4; threads++) {
        omp_set_num_threads(threads);
        check_model(m, 30);
    }
    omp_set_num_threads(saved);
    cce_model_free(m);
}

static void test_zero_classifier(void **state) {
    (void)state;
    cce_model *m = make_model(small_config(4, 2, 0, 32), 15);
    cce_tensor *cls;
    assert_cce_ok(cce_model_global_tensor(m, CCE_GT_LM_HEAD, &cls));
    memset(cls->data, 0, sizeof(float) * (size_t)cce_tensor_numel(cls));
    int T = 9, V = cce_model_config(m)->vocab_size;
    int32_t *tok = make_tokens(T, V, 3);
    float *logits = malloc(sizeof(float) * T * V);
    cce_forward *f;
    assert_cce_ok(cce_forward_new(m, T, &f));
    assert_cce_ok(cce_forward_window(f, tok, T, logits));
    for (int i = 0; i < T * V; i++) assert_float_equal(logits[i], logits[0], 0.0);
    assert_float_equal(logits[0], 0.0f, 0.0);
    assert_cce_ok(cce_forward_token(f, tok[0], 0, logits));
    for (int i = 0; i < V; i++) assert_float_equal(logits[i], 0.0f, 0.0);
    cce_forward_free(f);
    free(tok);
    free(logits);
    cce_model_free(m);
}

/* ---- Hooks ------------------------------------------------------------------------------------
 */

typedef struct hook_log {
    int n;
    int layer[64], point[64], rows[64], cols[64];
    double first[64]; /* x[0] */
    double block_out_sum[8], block_in_sum[8];
} hook_log;

static void record(void *user, int layer, cce_hook_point point, const float *x, int rows,
                   int cols) {
    hook_log *h = user;
    assert_true(h->n < 64);
    h->layer[h->n] = layer;
    h->point[h->n] = (int)point;
    h->rows[h->n] = rows;
    h->cols[h->n] = cols;
    h->first[h->n] = x[0];
    double sum = 0;
    for (int i = 0; i < rows * cols; i++) sum += x[i];
    if (point == CCE_HOOK_BLOCK_IN) h->block_in_sum[layer] = sum;
    if (point == CCE_HOOK_BLOCK_OUT) h->block_out_sum[layer] = sum;
    h->n++;
}

static void test_hooks(void **state) {
    (void)state;
    cce_config c = small_config(6, 3, 0, 32);
    cce_model *m = make_model(c, 16);
    ((cce_layer_shape *)cce_model_layer(m, 2))->removed = 1;
    int T = 7;
    int32_t *tok = make_tokens(T, c.vocab_size, 5);
    float *logits = malloc(sizeof(float) * T * c.vocab_size);
    cce_forward *f;
    assert_cce_ok(cce_forward_new(m, 16, &f));
    hook_log log = {0};
    cce_forward_set_hook(f, record, &log);
    assert_cce_ok(cce_forward_window(f, tok, T, logits));
    /* Layers 0 and 1: six points each in order; layer 2 (removed): BLOCK_IN and BLOCK_OUT. */
    assert_int_equal(log.n, 6 + 6 + 2);
    const int cols[6] = {c.dim, c.dim, c.n_heads * c.head_dim, c.dim, c.hidden_dim, c.dim};
    for (int i = 0; i < 12; i++) {
        assert_int_equal(log.layer[i], i / 6);
        assert_int_equal(log.point[i], i % 6);
        assert_int_equal(log.rows[i], T);
        assert_int_equal(log.cols[i], cols[i % 6]);
    }
    assert_int_equal(log.layer[12], 2);
    assert_int_equal(log.point[12], CCE_HOOK_BLOCK_IN);
    assert_int_equal(log.point[13], CCE_HOOK_BLOCK_OUT);
    /* BLOCK_OUT of a layer is BLOCK_IN of the next; a removed layer passes h through. */
    assert_float_equal(log.block_out_sum[0], log.block_in_sum[1], 0.0);
    assert_float_equal(log.block_out_sum[1], log.block_in_sum[2], 0.0);
    assert_float_equal(log.block_out_sum[2], log.block_in_sum[2], 0.0);
    /* BLOCK_IN of layer 0 is the embedding of the first token. */
    cce_tensor *emb;
    assert_cce_ok(cce_model_global_tensor(m, CCE_GT_EMBED, &emb));
    assert_float_equal(log.first[0], emb->data[(size_t)tok[0] * c.dim], 0.0);
    /* Stopping after layer 1: the same twelve calls with the same values, nothing after, and
     * the logits left as they were; -1 runs the whole model again. */
    hook_log full = log;
    log = (hook_log){0};
    cce_forward_set_last_layer(f, 1);
    for (size_t i = 0; i < (size_t)T * c.vocab_size; i++) logits[i] = 7.0f;
    assert_cce_ok(cce_forward_window(f, tok, T, logits));
    assert_int_equal(log.n, 12);
    for (int i = 0; i < 12; i++) {
        assert_int_equal(log.layer[i], full.layer[i]);
        assert_int_equal(log.point[i], full.point[i]);
        assert_float_equal(log.first[i], full.first[i], 0.0);
    }
    for (size_t i = 0; i < (size_t)T * c.vocab_size; i++) assert_float_equal(logits[i], 7.0f, 0.0);
    cce_forward_set_last_layer(f, -1);
    log = (hook_log){0};
    assert_cce_ok(cce_forward_window(f, tok, T, logits));
    assert_int_equal(log.n, 14);
    /* Removing the hook stops the calls; decoding never calls hooks. */
    cce_forward_set_hook(f, NULL, NULL);
    log.n = 0;
    assert_cce_ok(cce_forward_window(f, tok, T, logits));
    assert_cce_ok(cce_forward_token(f, tok[0], 0, logits));
    assert_int_equal(log.n, 0);
    cce_forward_free(f);
    free(tok);
    free(logits);
    cce_model_free(m);
}

/* ---- Bad arguments ----------------------------------------------------------------------------
 */

static void test_bad_arguments(void **state) {
    (void)state;
    cce_config c = small_config(4, 2, 1, 32);
    cce_model *m = make_model(c, 17);
    cce_forward *f;
    assert_int_equal(cce_forward_new(m, 0, &f), CCE_ERR_RANGE);
    assert_cce_ok(cce_forward_new(m, 100, &f)); /* capped at seq_len */
    assert_int_equal(cce_forward_max_tokens(f), c.seq_len);
    cce_forward_free(f);
    assert_cce_ok(cce_forward_new(m, 8, &f));
    int32_t tok[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    float *logits = malloc(sizeof(float) * 10 * c.vocab_size);
    assert_int_equal(cce_forward_window(f, tok, 9, logits), CCE_ERR_RANGE); /* > max_tokens */
    assert_int_equal(cce_forward_window(f, tok, 0, logits), CCE_ERR_RANGE);
    assert_int_equal(cce_forward_window(f, NULL, 3, logits), CCE_ERR_ARG);
    tok[2] = c.vocab_size;
    assert_int_equal(cce_forward_window(f, tok, 4, logits), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "index 2"));
    tok[2] = -1;
    assert_int_equal(cce_forward_window(f, tok, 4, logits), CCE_ERR_RANGE);
    assert_int_equal(cce_forward_token(f, c.vocab_size, 0, logits), CCE_ERR_RANGE);
    assert_int_equal(cce_forward_token(f, -5, 0, logits), CCE_ERR_RANGE);
    /* Positions must follow each other; 0 restarts; seq_len is the limit. */
    assert_cce_ok(cce_forward_token(f, 1, 0, logits));
    assert_int_equal(cce_forward_token(f, 1, 2, logits), CCE_ERR_ARG);
    assert_cce_ok(cce_forward_token(f, 1, 1, logits));
    assert_cce_ok(cce_forward_token(f, 1, 0, logits));
    assert_int_equal(cce_forward_token(f, 1, c.seq_len, logits), CCE_ERR_RANGE);
    assert_int_equal(cce_forward_token(f, 1, -1, logits), CCE_ERR_RANGE);
    cce_forward_free(f);
    /* A head map pointing outside the layer's kv heads is a format error. */
    cce_model_layer(m, 1)->kv_of_head[3] = 2;
    assert_int_equal(cce_forward_new(m, 8, &f), CCE_ERR_FORMAT);
    assert_non_null(strstr(cce_error_detail(), "kv_of_head"));
    cce_model_layer(m, 1)->kv_of_head[3] = 1;
    /* Per-layer widths that disagree with the tensors are a format error naming the tensor. */
    ((cce_layer_shape *)cce_model_layer(m, 2))->hidden_dim = 12;
    assert_int_equal(cce_forward_new(m, 8, &f), CCE_ERR_FORMAT);
    assert_non_null(strstr(cce_error_detail(), "layers.2.mlp.gate_proj.weight"));
    ((cce_layer_shape *)cce_model_layer(m, 2))->hidden_dim = c.hidden_dim;
    assert_int_equal(cce_forward_new(NULL, 8, &f), CCE_ERR_ARG);
    free(logits);
    cce_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mha),
        cmocka_unit_test(test_gqa_tied),
        cmocka_unit_test(test_long_window_blocks),
        cmocka_unit_test(test_decode_thread_counts),
        cmocka_unit_test(test_decode_buffers),
        cmocka_unit_test(test_head_map_and_removed_layer),
        cmocka_unit_test(test_non_uniform_widths),
        cmocka_unit_test(test_zero_classifier),
        cmocka_unit_test(test_hooks),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
