/* llama2.c v0 checkpoint import (import.h).
 *
 * File layout (all little-endian):
 *   header: int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *           (vocab_size < 0: the classifier is untied and stored last)
 *   float32, each matrix [out, in] row-major, hs = dim / n_heads:
 *     token_embedding [vocab, dim]      rms_att [L, dim]
 *     wq [L, n_heads*hs, dim]           wk [L, n_kv*hs, dim]      wv [L, n_kv*hs, dim]
 *     wo [L, dim, n_heads*hs]           rms_ffn [L, dim]
 *     w1 [L, hidden, dim] (gate)        w2 [L, dim, hidden] (down) w3 [L, hidden, dim] (up)
 *     rms_final [dim]                   freq_cis_real, freq_cis_imag [seq_len, hs/2] (ignored)
 *     wcls [vocab, dim]                 (only when untied) */
#include "import.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "the llama2.c reader assumes a little-endian host");

#define HEADER_BYTES (7 * 4)

/* Number of floats the weights of a header take (without the header itself). */
static int64_t expected_floats(const cce_config *c) {
    int64_t dim = c->dim, hid = c->hidden_dim, L = c->n_layers, hs = c->head_dim;
    int64_t q = (int64_t)c->n_heads * hs, kv = (int64_t)c->n_kv_heads * hs;
    int64_t n = (int64_t)c->vocab_size * dim;                   /* token_embedding */
    n += L * dim;                                               /* rms_att */
    n += L * q * dim + 2 * L * kv * dim;                        /* wq, wk, wv */
    n += L * dim * q;                                           /* wo */
    n += L * dim;                                               /* rms_ffn */
    n += 3 * L * hid * dim;                                     /* w1, w2, w3 */
    n += dim;                                                   /* rms_final */
    n += (int64_t)c->seq_len * hs;                              /* freq_cis_real + freq_cis_imag */
    if (!c->tied_embeddings) n += (int64_t)c->vocab_size * dim; /* wcls */
    return n;
}

static cce_status read_floats(FILE *f, const char *path, const char *what, float *dst, int64_t n) {
    if (n > 0 && fread(dst, sizeof(float), (size_t)n, f) != (size_t)n)
        return cce_fail(CCE_ERR_IO, "%s: short read in %s: %s", path, what,
                        ferror(f) ? strerror(errno) : "unexpected end of file");
    return CCE_OK;
}

/* Rotary pairs (2j, 2j+1) inside each head -> (j, j + hs/2): new row j = old row 2j and new row
 * j + hs/2 = old row 2j + 1, for each of n_heads heads of hs rows of `cols` floats. */
static void permute_rope_rows(const float *src, float *dst, int n_heads, int hs, int64_t cols) {
    int half = hs / 2;
    for (int h = 0; h < n_heads; h++) {
        const float *s = src + (int64_t)h * hs * cols; /* [hs, cols] */
        float *d = dst + (int64_t)h * hs * cols;       /* [hs, cols] */
        for (int j = 0; j < half; j++) {
            memcpy(d + (int64_t)j * cols, s + (int64_t)(2 * j) * cols, (size_t)cols * 4);
            memcpy(d + (int64_t)(j + half) * cols, s + (int64_t)(2 * j + 1) * cols,
                   (size_t)cols * 4);
        }
    }
}

/* Reads one [rows, cols] block of layer `layer` into the model tensor `which`, permuting RoPE
 * rows for q and k. scratch holds at least rows * cols floats. */
static cce_status read_layer_tensor(FILE *f, const char *path, cce_model *m, int layer,
                                    cce_layer_tensor which, float *scratch) {
    const cce_config *c = cce_model_config(m);
    cce_tensor *t;
    char name[96];
    cce_layer_tensor_name(layer, which, name, sizeof name);
    cce_status s = cce_model_layer_tensor(m, layer, which, &t);
    if (s) return s;
    int64_t n = cce_tensor_numel(t);
    if (which == CCE_LT_Q || which == CCE_LT_K) {
        if ((s = read_floats(f, path, name, scratch, n))) return s;
        permute_rope_rows(scratch, t->data, which == CCE_LT_Q ? c->n_heads : c->n_kv_heads,
                          c->head_dim, t->shape[1]);
    } else if ((s = read_floats(f, path, name, t->data, n))) {
        return s;
    }
    if ((s = cce_tensor_check_finite(t, name))) cce_error_prefix("%s: ", path);
    return s;
}

static cce_status read_global_tensor(FILE *f, const char *path, cce_model *m,
                                     cce_global_tensor which) {
    cce_tensor *t;
    const char *name = cce_global_tensor_name(which);
    cce_status s = cce_model_global_tensor(m, which, &t);
    if (s) return s;
    if ((s = read_floats(f, path, name, t->data, cce_tensor_numel(t)))) return s;
    if ((s = cce_tensor_check_finite(t, name))) cce_error_prefix("%s: ", path);
    return s;
}

/* Reads and checks the header; fills cfg and the exact file size it implies. */
static cce_status read_header(FILE *f, const char *path, int64_t file_size, cce_config *cfg) {
    int32_t h[7];
    if (file_size < HEADER_BYTES || fread(h, 4, 7, f) != 7)
        return cce_fail(CCE_ERR_FORMAT, "%s: %lld bytes, too short for the 28-byte llama2.c header",
                        path, (long long)file_size);
    memset(cfg, 0, sizeof *cfg);
    cfg->dim = h[0];
    cfg->hidden_dim = h[1];
    cfg->n_layers = h[2];
    cfg->n_heads = h[3];
    cfg->n_kv_heads = h[4];
    cfg->tied_embeddings = h[5] > 0;
    cfg->vocab_size = h[5] == INT32_MIN ? 0 : (h[5] < 0 ? -h[5] : h[5]);
    cfg->seq_len = h[6];
    cfg->head_dim = h[3] > 0 ? h[0] / h[3] : 0;
    cfg->rope_theta = 10000.0f;
    cfg->norm_eps = 1e-5f;
    if (cfg->dim > 0 && cfg->n_heads > 0 && cfg->dim % cfg->n_heads != 0)
        return cce_fail(CCE_ERR_FORMAT, "%s: dim = %d is not a multiple of n_heads = %d", path,
                        (int)cfg->dim, (int)cfg->n_heads);
    if (cce_config_validate(cfg, path)) return CCE_ERR_FORMAT; /* the detail names the field */
    int64_t expected = HEADER_BYTES + 4 * expected_floats(cfg);
    if (file_size != expected)
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: the header (dim %d, hidden %d, %d layers, %d heads, %d kv heads, "
                        "vocab %d %s, seq_len %d) implies %lld bytes, the file has %lld (%s)",
                        path, (int)cfg->dim, (int)cfg->hidden_dim, (int)cfg->n_layers,
                        (int)cfg->n_heads, (int)cfg->n_kv_heads, (int)cfg->vocab_size,
                        cfg->tied_embeddings ? "tied" : "untied", (int)cfg->seq_len,
                        (long long)expected, (long long)file_size,
                        file_size < expected ? "truncated" : "trailing bytes");
    return CCE_OK;
}

cce_status cce_import_llama2c(const char *model_bin, const char *tokenizer_bin, cce_model **out) {
    cce_model *m = NULL;
    cce_tokenizer *tok = NULL;
    float *scratch = NULL;
    cce_config cfg;
    cce_status s = CCE_OK;
    struct stat st;
    FILE *f = fopen(model_bin, "rb");
    if (!f) return cce_fail(CCE_ERR_IO, "%s: cannot open: %s", model_bin, strerror(errno));
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        s = cce_fail(CCE_ERR_IO, "%s: not a regular file", model_bin);
        goto done;
    }
    if ((s = read_header(f, model_bin, (int64_t)st.st_size, &cfg))) goto done;
    if ((s = cce_tokenizer_load_llama2c(tokenizer_bin, cfg.vocab_size, &tok))) goto done;
    if ((s = cce_model_new(&cfg, &m))) goto done;
    cce_model_set_tokenizer(m, tok);
    tok = NULL;

    int64_t q_rows = (int64_t)cfg.n_heads * cfg.head_dim;
    if (!(scratch = malloc((size_t)q_rows * (size_t)cfg.dim * sizeof *scratch))) { /* [q, dim] */
        s = cce_fail(CCE_ERR_NOMEM, "%s: q_proj scratch", model_bin);
        goto done;
    }
    /* llama2.c stores each kind for all layers before the next kind. */
    static const cce_layer_tensor layer_order[] = {CCE_LT_ATTN_NORM, CCE_LT_Q,    CCE_LT_K,
                                                   CCE_LT_V,         CCE_LT_O,    CCE_LT_FFN_NORM,
                                                   CCE_LT_GATE,      CCE_LT_DOWN, CCE_LT_UP};
    if ((s = read_global_tensor(f, model_bin, m, CCE_GT_EMBED))) goto done;
    for (size_t k = 0; k < sizeof layer_order / sizeof layer_order[0]; k++)
        for (int l = 0; l < cfg.n_layers; l++)
            if ((s = read_layer_tensor(f, model_bin, m, l, layer_order[k], scratch))) goto done;
    if ((s = read_global_tensor(f, model_bin, m, CCE_GT_NORM))) goto done;
    if (fseeko(f, (off_t)cfg.seq_len * cfg.head_dim * 4, SEEK_CUR) != 0) { /* freq_cis */
        s = cce_fail(CCE_ERR_IO, "%s: cannot skip freq_cis: %s", model_bin, strerror(errno));
        goto done;
    }
    if (!cfg.tied_embeddings && (s = read_global_tensor(f, model_bin, m, CCE_GT_LM_HEAD)))
        goto done;

    const char *base = strrchr(model_bin, '/');
    base = base ? base + 1 : model_bin;
    char *source = malloc(strlen(base) + 9);
    if (!source) {
        s = cce_fail(CCE_ERR_NOMEM, "%s: source", model_bin);
        goto done;
    }
    sprintf(source, "llama2c:%s", base);
    cce_model_set_source(m, source);
    free(source);
done:
    fclose(f);
    free(scratch);
    cce_tokenizer_free(tok);
    if (s) {
        cce_model_free(m);
        return s;
    }
    *out = m;
    return CCE_OK;
}
