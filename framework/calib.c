/* Calibration (calib.h): forward hooks accumulate, per layer and site, sums, sums of squares and
 * optionally sums of outer products of the linear layers' inputs, plus each block's influence,
 * over calibration windows. The on-disk cache of dense statistics is in calib_cache.c.
 *
 * Windows: each segment is split into pieces of at most ctx - 1 tokens, and each piece is run
 * as one window BOS + piece (a segment of up to ctx - 1 tokens is exactly one window). The BOS
 * position is not accumulated: its activations are the same in every window and, in trained
 * models, an attention-sink outlier that would dominate column norms and second moments. Every
 * other position is.
 *
 * Second moments: each hooked block of rows is converted to double once and folded into the
 * upper triangle of sum x x^T with one cblas_dsyrk call (no per-token loops); the lower
 * triangle is filled when the collection ends. */
#include "calib.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib_internal.h"
#include "dataset.h"
#include "forward.h"
#include "plan.h"
#include "sha256.h"

#define DEFAULT_CTX 256

/* ---- Sets ------------------------------------------------------------------------------------ */

const char *calib_site_name(cce_calib_site site) {
    switch (site) {
    case CCE_SITE_ATTN_IN:
        return "attn_in";
    case CCE_SITE_O_IN:
        return "o_in";
    case CCE_SITE_FFN_IN:
        return "ffn_in";
    case CCE_SITE_DOWN_IN:
        return "down_in";
    case CCE_SITE_COUNT:
        break;
    }
    return "?";
}

void calib_site_clear(calib_site_stats *ss) {
    free(ss->sum);
    free(ss->sum_sq);
    free(ss->sum_outer);
    memset(ss, 0, sizeof *ss);
}

cce_status calib_site_alloc(calib_site_stats *ss, int dim, int with_outer) {
    calib_site_clear(ss);
    if (dim <= 0) return cce_fail(CCE_ERR_ARG, "calibration: site width %d", dim);
    ss->sum = calloc((size_t)dim, sizeof *ss->sum);
    ss->sum_sq = calloc((size_t)dim, sizeof *ss->sum_sq);
    if (with_outer) ss->sum_outer = calloc((size_t)dim * (size_t)dim, sizeof *ss->sum_outer);
    if (!ss->sum || !ss->sum_sq || (with_outer && !ss->sum_outer)) {
        calib_site_clear(ss);
        return cce_fail(CCE_ERR_NOMEM, "calibration: statistics of width %d", dim);
    }
    ss->dim = dim;
    return CCE_OK;
}

cce_status cce_calib_new(int n_layers, cce_calib **out) {
    *out = NULL;
    if (n_layers <= 0) return cce_fail(CCE_ERR_ARG, "calibration: n_layers = %d", n_layers);
    cce_calib *c = calloc(1, sizeof *c);
    if (!c) return cce_fail(CCE_ERR_NOMEM, "calibration");
    c->n_layers = n_layers;
    c->sites = calloc((size_t)n_layers * CCE_SITE_COUNT, sizeof *c->sites);
    c->bi_cos = calloc((size_t)n_layers, sizeof *c->bi_cos);
    c->bi_count = calloc((size_t)n_layers, sizeof *c->bi_count);
    if (!c->sites || !c->bi_cos || !c->bi_count) {
        cce_calib_free(c);
        return cce_fail(CCE_ERR_NOMEM, "calibration of %d layers", n_layers);
    }
    *out = c;
    return CCE_OK;
}

void cce_calib_free(cce_calib *c) {
    if (!c) return;
    if (c->sites)
        for (size_t i = 0; i < (size_t)c->n_layers * CCE_SITE_COUNT; i++)
            calib_site_clear(&c->sites[i]);
    free(c->sites);
    free(c->bi_cos);
    free(c->bi_count);
    free(c);
}

static cce_status check_layer_site(const cce_calib *c, int layer, cce_calib_site site) {
    if (!c) return cce_fail(CCE_ERR_ARG, "calibration: no statistics given");
    if (layer < 0 || layer >= c->n_layers)
        return cce_fail(CCE_ERR_RANGE, "calibration: layer %d is outside [0, %d)", layer,
                        c->n_layers);
    if ((int)site < 0 || site >= CCE_SITE_COUNT)
        return cce_fail(CCE_ERR_RANGE, "calibration: site %d is unknown", (int)site);
    return CCE_OK;
}

cce_status cce_calib_set_input(cce_calib *c, int layer, cce_calib_site site, int dim,
                               int64_t n_tokens, const double *sum, const double *sum_sq,
                               const double *sum_outer) {
    cce_status s = check_layer_site(c, layer, site);
    if (s) return s;
    if (dim <= 0 || n_tokens < 0 || !sum || !sum_sq)
        return cce_fail(CCE_ERR_ARG, "calibration: layer %d %s: dim = %d, n_tokens = %lld, sums %s",
                        layer, calib_site_name(site), dim, (long long)n_tokens,
                        sum && sum_sq ? "given" : "missing");
    calib_site_stats *ss = calib_site(c, layer, site);
    if ((s = calib_site_alloc(ss, dim, sum_outer != NULL))) return s;
    ss->n_tokens = n_tokens;
    memcpy(ss->sum, sum, (size_t)dim * sizeof *sum);
    memcpy(ss->sum_sq, sum_sq, (size_t)dim * sizeof *sum_sq);
    if (sum_outer) memcpy(ss->sum_outer, sum_outer, (size_t)dim * (size_t)dim * sizeof *sum_outer);
    return CCE_OK;
}

/* ---- Access ---------------------------------------------------------------------------------- */

int cce_calib_n_layers(const cce_calib *c) {
    return c ? c->n_layers : 0;
}

double cce_calib_block_influence(const cce_calib *c, int layer) {
    if (!c || layer < 0 || layer >= c->n_layers || c->bi_count[layer] == 0) return NAN;
    return 1.0 - c->bi_cos[layer] / (double)c->bi_count[layer];
}

cce_status cce_calib_site_input(const cce_calib *c, int layer, cce_calib_site site,
                                cce_calib_input *out) {
    cce_status s = check_layer_site(c, layer, site);
    if (s) return s;
    const calib_site_stats *ss = calib_site(c, layer, site);
    if (ss->dim == 0)
        return cce_fail(CCE_ERR_NOT_FOUND, "calibration has no statistics for layer %d %s", layer,
                        calib_site_name(site));
    out->layer = layer;
    out->site = site;
    out->dim = ss->dim;
    out->n_tokens = ss->n_tokens;
    out->sum = ss->sum;
    out->sum_sq = ss->sum_sq;
    out->sum_outer = ss->sum_outer;
    return CCE_OK;
}

cce_status cce_calib_input_of(const cce_calib *c, const char *tensor_name, cce_calib_input *out) {
    static const struct {
        const char *suffix;
        cce_calib_site site;
    } map[] = {{"self_attn.q_proj", CCE_SITE_ATTN_IN}, {"self_attn.k_proj", CCE_SITE_ATTN_IN},
               {"self_attn.v_proj", CCE_SITE_ATTN_IN}, {"self_attn.o_proj", CCE_SITE_O_IN},
               {"mlp.gate_proj", CCE_SITE_FFN_IN},     {"mlp.up_proj", CCE_SITE_FFN_IN},
               {"mlp.down_proj", CCE_SITE_DOWN_IN}};
    const char *name = tensor_name ? tensor_name : "(null)";
    int layer = cce_plan_layer_of(name);
    const char *rest = layer >= 0 ? strchr(name + 7, '.') : NULL; /* after "layers.L" */
    if (rest) {
        rest++;
        size_t len = strlen(rest);
        if (len > 7 && !strcmp(rest + len - 7, ".weight")) len -= 7;
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
            if (strlen(map[i].suffix) == len && !strncmp(rest, map[i].suffix, len)) {
                cce_status s = cce_calib_site_input(c, layer, map[i].site, out);
                if (s) cce_error_prefix("%s: ", name);
                return s;
            }
    }
    return cce_fail(CCE_ERR_NOT_FOUND, "calibration: %s is not the weight of a linear layer", name);
}

/* ---- Data ------------------------------------------------------------------------------------ */

void cce_calib_data_hash(cce_calib_data *d) {
    size_t n = d->tokens ? d->n_segments * d->seg_len : 0;
    if (cce_sha256_buffer(d->tokens, n * sizeof *d->tokens, d->sha256)) d->sha256[0] = '\0';
}

/* Checks the data against the model and resolves ctx. */
static cce_status check_data(cce_model *m, const cce_calib_data *d, const cce_calib_options *o,
                             int *ctx) {
    const cce_config *cfg = cce_model_config(m);
    if (!d || !d->tokens || d->n_segments == 0 || d->seg_len == 0)
        return cce_fail(CCE_ERR_ARG,
                        "calibration: no calibration tokens given (%zu segments of "
                        "%zu tokens)",
                        d ? d->n_segments : 0, d ? d->seg_len : 0);
    int c = o && o->ctx ? o->ctx : (cfg->seq_len < DEFAULT_CTX ? cfg->seq_len : DEFAULT_CTX);
    if (c < 2 || c > cfg->seq_len)
        return cce_fail(CCE_ERR_RANGE, "calibration: ctx = %d is outside [2, %d] (seq_len)", c,
                        (int)cfg->seq_len);
    size_t n = d->n_segments * d->seg_len;
    for (size_t i = 0; i < n; i++)
        if (d->tokens[i] < 0 || d->tokens[i] >= cfg->vocab_size)
            return cce_fail(CCE_ERR_RANGE,
                            "calibration: token %d (segment %zu, position %zu) is outside the "
                            "vocabulary [0, %d)",
                            (int)d->tokens[i], i / d->seg_len, i % d->seg_len,
                            (int)cfg->vocab_size);
    *ctx = c;
    return CCE_OK;
}

/* ---- Collection ------------------------------------------------------------------------------ */

typedef struct collector {
    cce_calib *c;
    int only_layer;     /* -1: every layer */
    int second_moments; /* accumulate sum x x^T */
    double *block;      /* [rows, cols] rows converted to double for dsyrk */
    size_t block_cap;
    float *h_in; /* [rows, dim] BLOCK_IN rows kept until BLOCK_OUT */
    size_t h_cap;
    int h_rows;
    cce_status st; /* first failure inside a hook */
} collector;

static int grow(void **buf, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    void *p = realloc(*buf, need * elem);
    if (!p) return 0;
    *buf = p;
    *cap = need;
    return 1;
}

/* Rows [1, rows) of x [rows, cols] (row 0 is BOS) into one site's sums. */
static void accumulate_site(collector *k, int layer, cce_calib_site site, const float *x, int rows,
                            int cols) {
    calib_site_stats *ss = calib_site(k->c, layer, site);
    if (ss->dim == 0 && (k->st = calib_site_alloc(ss, cols, k->second_moments))) return;
    if (ss->dim != cols) {
        k->st = cce_fail(CCE_ERR_INTERNAL, "calibration: layer %d %s: width %d after %d", layer,
                         calib_site_name(site), cols, ss->dim);
        return;
    }
    int n = rows - 1;
    if (n <= 0) return;
    const float *xr = x + cols; /* [n, cols] */
    for (int t = 0; t < n; t++) {
        const float *row = xr + (size_t)t * cols;
        for (int j = 0; j < cols; j++) {
            double v = row[j];
            ss->sum[j] += v;
            ss->sum_sq[j] += v * v;
        }
    }
    ss->n_tokens += n;
    if (!ss->sum_outer) return;
    size_t need = (size_t)n * (size_t)cols;
    if (!grow((void **)&k->block, &k->block_cap, need, sizeof *k->block)) {
        k->st = cce_fail(CCE_ERR_NOMEM, "calibration: %d x %d block", n, cols);
        return;
    }
    for (size_t i = 0; i < need; i++) k->block[i] = xr[i];
    /* upper(sum_outer) += X^T X with X [n, cols] */
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, cols, n, 1.0, k->block, cols, 1.0,
                ss->sum_outer, cols);
}

/* cos(h_in, h_out) of every token but BOS, into the layer's block influence. */
static void accumulate_influence(collector *k, int layer, const float *h_out, int rows, int cols) {
    if (k->h_rows != rows) {
        k->st =
            cce_fail(CCE_ERR_INTERNAL, "calibration: layer %d: BLOCK_OUT without BLOCK_IN", layer);
        return;
    }
    for (int t = 1; t < rows; t++) {
        const float *a = k->h_in + (size_t)t * cols, *b = h_out + (size_t)t * cols;
        double ab = 0, aa = 0, bb = 0;
        for (int j = 0; j < cols; j++) {
            ab += (double)a[j] * b[j];
            aa += (double)a[j] * a[j];
            bb += (double)b[j] * b[j];
        }
        double cosv = aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : (aa == bb ? 1.0 : 0.0);
        k->c->bi_cos[layer] += cosv;
    }
    k->c->bi_count[layer] += rows - 1;
    k->h_rows = 0;
}

static void collect_hook(void *user, int layer, cce_hook_point p, const float *x, int rows,
                         int cols) {
    collector *k = user;
    if (k->st || (k->only_layer >= 0 && layer != k->only_layer)) return;
    switch (p) {
    case CCE_HOOK_BLOCK_IN:
        if (!grow((void **)&k->h_in, &k->h_cap, (size_t)rows * cols, sizeof *k->h_in)) {
            k->st = cce_fail(CCE_ERR_NOMEM, "calibration: %d x %d block input", rows, cols);
            return;
        }
        memcpy(k->h_in, x, (size_t)rows * cols * sizeof *x);
        k->h_rows = rows;
        return;
    case CCE_HOOK_BLOCK_OUT:
        accumulate_influence(k, layer, x, rows, cols);
        return;
    case CCE_HOOK_ATTN_IN:
        accumulate_site(k, layer, CCE_SITE_ATTN_IN, x, rows, cols);
        return;
    case CCE_HOOK_O_IN:
        accumulate_site(k, layer, CCE_SITE_O_IN, x, rows, cols);
        return;
    case CCE_HOOK_FFN_IN:
        accumulate_site(k, layer, CCE_SITE_FFN_IN, x, rows, cols);
        return;
    case CCE_HOOK_DOWN_IN:
        accumulate_site(k, layer, CCE_SITE_DOWN_IN, x, rows, cols);
        return;
    }
}

/* Clears the statistics of one layer (or all, layer -1) of c before a collection. */
static void clear_layers(cce_calib *c, int layer) {
    for (int l = 0; l < c->n_layers; l++) {
        if (layer >= 0 && l != layer) continue;
        for (int s = 0; s < CCE_SITE_COUNT; s++) calib_site_clear(calib_site(c, l, s));
        c->bi_cos[l] = 0;
        c->bi_count[l] = 0;
    }
}

/* Fills the lower triangles and checks every collected number is finite. */
static cce_status finish_layers(cce_calib *c, int layer) {
    for (int l = 0; l < c->n_layers; l++) {
        if (layer >= 0 && l != layer) continue;
        if (!isfinite(c->bi_cos[l]))
            return cce_fail(CCE_ERR_NUMERIC,
                            "calibration: layer %d: non-finite block outputs "
                            "(NaN/Inf weights or overflow)",
                            l);
        for (int s = 0; s < CCE_SITE_COUNT; s++) {
            calib_site_stats *ss = calib_site(c, l, s);
            size_t d = (size_t)ss->dim;
            int ok = 1;
            for (size_t j = 0; j < d; j++) ok &= isfinite(ss->sum[j]) && isfinite(ss->sum_sq[j]);
            if (ss->sum_outer) {
                for (size_t i = 0; i < d; i++)
                    for (size_t j = i + 1; j < d; j++)
                        ss->sum_outer[j * d + i] = ss->sum_outer[i * d + j];
                for (size_t i = 0; i < d * d; i++) ok &= isfinite(ss->sum_outer[i]) != 0;
            }
            if (!ok)
                return cce_fail(CCE_ERR_NUMERIC,
                                "calibration: layer %d %s: non-finite activations (NaN/Inf "
                                "weights or overflow)",
                                l, calib_site_name((cce_calib_site)s));
        }
    }
    return CCE_OK;
}

/* Runs every calibration window through m with the collector installed. */
static cce_status run_windows(cce_model *m, const cce_calib_data *d, int ctx, collector *k) {
    cce_forward *f;
    cce_status s = cce_forward_new(m, ctx, &f);
    if (s) {
        cce_error_prefix("calibration: ");
        return s;
    }
    const cce_tokenizer *tok = cce_model_tokenizer(m);
    int32_t bos = tok ? cce_tokenizer_bos(tok) : 1; /* the llama2.c convention without one */
    size_t V = (size_t)cce_model_config(m)->vocab_size, piece = (size_t)ctx - 1;
    int32_t *window = malloc((size_t)ctx * sizeof *window);   /* [ctx] */
    float *logits = malloc((size_t)ctx * V * sizeof *logits); /* [ctx, vocab] */
    if (!window || !logits) s = cce_fail(CCE_ERR_NOMEM, "calibration: window of %d tokens", ctx);
    cce_forward_set_hook(f, collect_hook, k);
    /* One layer's statistics need the blocks up to it only. */
    if (k->only_layer >= 0) cce_forward_set_last_layer(f, k->only_layer);
    for (size_t seg = 0; !s && seg < d->n_segments; seg++) {
        const int32_t *tokens = d->tokens + seg * d->seg_len; /* [seg_len] */
        for (size_t off = 0; !s && off < d->seg_len; off += piece) {
            size_t n = d->seg_len - off < piece ? d->seg_len - off : piece;
            window[0] = bos;
            memcpy(window + 1, tokens + off, n * sizeof *window);
            s = cce_forward_window(f, window, (int)n + 1, logits);
            if (!s && k->st) s = k->st;
            if (s) cce_error_prefix("calibration segment %zu: ", seg);
        }
    }
    cce_forward_free(f);
    free(window);
    free(logits);
    return s;
}

static cce_status collect(cce_model *m, const cce_calib_data *d, int ctx, int second_moments,
                          int layer, cce_calib *c) {
    collector k = {.c = c, .only_layer = layer, .second_moments = second_moments};
    clear_layers(c, layer);
    cce_status s = run_windows(m, d, ctx, &k);
    free(k.block);
    free(k.h_in);
    if (!s) s = finish_layers(c, layer);
    if (s) clear_layers(c, layer);
    return s;
}

cce_status cce_calib_collect(cce_model *m, const cce_calib_data *d, const cce_calib_options *o,
                             int use_cache, cce_calib **out) {
    *out = NULL;
    if (!m) return cce_fail(CCE_ERR_ARG, "calibration: no model given");
    int ctx, second = o ? o->second_moments != 0 : 0;
    cce_status s = check_data(m, d, o, &ctx);
    if (s) return s;
    int n_layers = cce_model_config(m)->n_layers;
    char *path = NULL, key[65] = "";
    if (use_cache) {
        /* A cached set with second moments also serves a request without them. */
        for (int with = 1; with >= second; with--) {
            free(path);
            path = NULL;
            if (calib_cache_path(m, d, ctx, with, &path, key)) break;
            if (!calib_cache_load(path, key, n_layers, second, out)) {
                free(path);
                return CCE_OK;
            }
        }
        cce_error_clear(); /* a miss is not an error; path is now the key of `second` */
    }
    cce_calib *c = NULL;
    if ((s = cce_calib_new(n_layers, &c)) || (s = collect(m, d, ctx, second, -1, c))) {
        cce_calib_free(c);
        free(path);
        return s;
    }
    /* A cache that cannot be written is skipped: the statistics are correct either way. */
    if (path && calib_cache_store(path, key, c)) cce_error_clear();
    free(path);
    *out = c;
    return CCE_OK;
}

cce_status cce_calib_collect_layer(cce_model *m, const cce_calib_data *d,
                                   const cce_calib_options *o, int layer, cce_calib **c) {
    if (!m || !c) return cce_fail(CCE_ERR_ARG, "calibration: no model or statistics given");
    int ctx, n_layers = cce_model_config(m)->n_layers;
    cce_status s = check_data(m, d, o, &ctx);
    if (s) return s;
    if (layer < 0 || layer >= n_layers)
        return cce_fail(CCE_ERR_RANGE, "calibration: layer %d is outside [0, %d)", layer, n_layers);
    if (*c && (*c)->n_layers != n_layers)
        return cce_fail(CCE_ERR_ARG, "calibration: statistics of %d layers for a model of %d",
                        (*c)->n_layers, n_layers);
    cce_calib *own = NULL;
    if (!*c && (s = cce_calib_new(n_layers, &own))) return s;
    /* The forward stops after this layer (cce_forward_set_last_layer): the later blocks and
     * the classifier would be wasted work. */
    s = collect(m, d, ctx, o ? o->second_moments != 0 : 0, layer, own ? own : *c);
    if (s) {
        cce_calib_free(own);
        return s;
    }
    if (own) *c = own;
    return CCE_OK;
}
