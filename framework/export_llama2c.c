/* llama2.c v0 checkpoint and tokenizer.bin export (import.h). The layout is the one
 * import_llama2c.c reads: int32 header, then every tensor kind for all layers in turn, the legacy
 * freq_cis tables and, when untied, the classifier. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "import.h"

/* A file under "<path>.tmp.<pid>" that becomes path on finish. */
typedef struct out_file {
    const char *path;
    char tmp[4096];
    FILE *f;
} out_file;

static cce_status out_open(out_file *o, const char *path) {
    o->path = path;
    if (snprintf(o->tmp, sizeof o->tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof o->tmp)
        return cce_fail(CCE_ERR_ARG, "%s: path too long", path);
    if (!(o->f = fopen(o->tmp, "wb")))
        return cce_fail(CCE_ERR_IO, "%s: cannot create: %s", o->tmp, strerror(errno));
    return CCE_OK;
}

static cce_status out_write(out_file *o, const void *p, size_t bytes) {
    if (bytes && fwrite(p, 1, bytes, o->f) != bytes)
        return cce_fail(CCE_ERR_IO, "%s: write failed: %s", o->tmp, strerror(errno));
    return CCE_OK;
}

/* Closes the file and renames it into place (ok), or removes it (!ok). */
static cce_status out_finish(out_file *o, int ok) {
    if (!o->f) return CCE_OK;
    int good = ok && fflush(o->f) == 0 && fsync(fileno(o->f)) == 0;
    int err = errno;
    good = (fclose(o->f) == 0) && good;
    o->f = NULL;
    if (good && rename(o->tmp, o->path) == 0) return CCE_OK;
    if (ok && !good) err = errno;
    remove(o->tmp);
    return ok ? cce_fail(CCE_ERR_IO, "%s: cannot write: %s", o->path, strerror(err)) : CCE_OK;
}

cce_status cce_export_llama2c_tokenizer(const cce_tokenizer *tok, const char *path) {
    if (cce_tokenizer_check_llama2c(tok)) {
        cce_error_prefix("%s: ", path);
        return CCE_ERR_ARG;
    }
    int32_t n = cce_tokenizer_vocab_size(tok), max_len = 1;
    for (int32_t i = 0; i < n; i++) {
        size_t len = strlen(cce_tokenizer_piece(tok, i));
        if ((int32_t)len > max_len) max_len = (int32_t)len;
    }
    out_file o;
    cce_status s = out_open(&o, path);
    if (s) return s;
    s = out_write(&o, &max_len, 4);
    for (int32_t i = 0; !s && i < n; i++) {
        const char *p = cce_tokenizer_piece(tok, i);
        float score = cce_tokenizer_score(tok, i);
        int32_t len = (int32_t)strlen(p);
        if (!(s = out_write(&o, &score, 4)) && !(s = out_write(&o, &len, 4)))
            s = out_write(&o, p, (size_t)len);
    }
    cce_status f = out_finish(&o, !s);
    return s ? s : f;
}

/* Fails unless every layer has the config's widths and the standard kv grouping. */
static cce_status check_uniform(const cce_model *m, const char *what) {
    const cce_config *c = cce_model_config(m);
    for (int l = 0; l < c->n_layers; l++) {
        const cce_layer_shape *ls = cce_model_layer(m, l);
        if (ls->removed)
            return cce_fail(CCE_ERR_ARG, "%s: layer %d is removed; the format needs every layer",
                            what, l);
        if (ls->hidden_dim != c->hidden_dim || ls->n_heads != c->n_heads ||
            ls->n_kv_heads != c->n_kv_heads)
            return cce_fail(
                CCE_ERR_ARG,
                "%s: layer %d has widths (hidden %d, %d heads, %d kv heads) that differ "
                "from the config's; the format needs uniform layers",
                what, l, (int)ls->hidden_dim, (int)ls->n_heads, (int)ls->n_kv_heads);
        int group = c->n_heads / c->n_kv_heads;
        for (int h = 0; h < c->n_heads; h++)
            if (ls->kv_of_head[h] != h / group)
                return cce_fail(CCE_ERR_ARG,
                                "%s: layer %d: head %d reads kv head %d, the format implies %d",
                                what, l, h, (int)ls->kv_of_head[h], h / group);
    }
    return CCE_OK;
}

/* Fails naming the first bias of the model: the format has none. */
static cce_status check_no_bias(const cce_model *m, const char *what) {
    for (int l = 0; l < cce_model_config(m)->n_layers; l++)
        for (int b = 0; b < CCE_LB_COUNT; b++)
            if (cce_model_has_layer_bias(m, l, (cce_layer_bias)b)) {
                char name[96];
                cce_layer_bias_name(l, (cce_layer_bias)b, name, sizeof name);
                return cce_fail(CCE_ERR_ARG,
                                "%s: the model has bias %s; the llama2.c format has no biases",
                                what, name);
            }
    return CCE_OK;
}

/* The inverse of the importer's permutation: rotate-half rows (j, j + hs/2) of each head go back
 * to interleaved rows (2j, 2j + 1). src, dst: [n_heads * hs, cols]. */
static void unpermute_rope_rows(const float *src, float *dst, int n_heads, int hs, int64_t cols) {
    int half = hs / 2;
    for (int h = 0; h < n_heads; h++) {
        const float *s = src + (int64_t)h * hs * cols; /* [hs, cols] */
        float *d = dst + (int64_t)h * hs * cols;       /* [hs, cols] */
        for (int j = 0; j < half; j++) {
            memcpy(d + (int64_t)(2 * j) * cols, s + (int64_t)j * cols, (size_t)cols * 4);
            memcpy(d + (int64_t)(2 * j + 1) * cols, s + (int64_t)(j + half) * cols,
                   (size_t)cols * 4);
        }
    }
}

static cce_status write_tensor(out_file *o, const cce_tensor *t) {
    return out_write(o, t->data, (size_t)cce_tensor_numel(t) * sizeof(float));
}

static cce_status write_weights(cce_model *m, out_file *o) {
    const cce_config *c = cce_model_config(m);
    int32_t hdr[7] = {c->dim,        c->hidden_dim,
                      c->n_layers,   c->n_heads,
                      c->n_kv_heads, c->tied_embeddings ? c->vocab_size : -c->vocab_size,
                      c->seq_len};
    cce_status s = out_write(o, hdr, sizeof hdr);
    cce_tensor *t;
    if (s || (s = cce_model_global_tensor(m, CCE_GT_EMBED, &t)) || (s = write_tensor(o, t)))
        return s;
    float *scratch = malloc((size_t)c->n_heads * c->head_dim * (size_t)c->dim * sizeof *scratch);
    if (!scratch) return cce_fail(CCE_ERR_NOMEM, "%s: q_proj scratch", o->path); /* [q, dim] */
    static const cce_layer_tensor order[] = {CCE_LT_ATTN_NORM, CCE_LT_Q,    CCE_LT_K,
                                             CCE_LT_V,         CCE_LT_O,    CCE_LT_FFN_NORM,
                                             CCE_LT_GATE,      CCE_LT_DOWN, CCE_LT_UP};
    for (size_t k = 0; !s && k < sizeof order / sizeof order[0]; k++)
        for (int l = 0; !s && l < c->n_layers; l++) {
            if ((s = cce_model_layer_tensor(m, l, order[k], &t))) break;
            if (order[k] == CCE_LT_Q || order[k] == CCE_LT_K) {
                unpermute_rope_rows(t->data, scratch,
                                    order[k] == CCE_LT_Q ? c->n_heads : c->n_kv_heads, c->head_dim,
                                    t->shape[1]);
                s = out_write(o, scratch, (size_t)cce_tensor_numel(t) * sizeof(float));
            } else {
                s = write_tensor(o, t);
            }
        }
    free(scratch);
    if (s || (s = cce_model_global_tensor(m, CCE_GT_NORM, &t)) || (s = write_tensor(o, t)))
        return s;
    /* Legacy freq_cis_real then freq_cis_imag, each [seq_len, head_dim / 2]. */
    int half = c->head_dim / 2;
    float *fc = malloc((size_t)c->seq_len * (size_t)half * sizeof *fc); /* [seq_len, half] */
    if (!fc) return cce_fail(CCE_ERR_NOMEM, "%s: freq_cis", o->path);
    for (int part = 0; !s && part < 2; part++) {
        for (int p = 0; p < c->seq_len; p++)
            for (int i = 0; i < half; i++) {
                float freq = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
                float a = (float)p * freq; /* float32 angle, as llama2.c's export computed it */
                fc[(size_t)p * half + i] = (float)(part == 0 ? cos((double)a) : sin((double)a));
            }
        s = out_write(o, fc, (size_t)c->seq_len * half * sizeof *fc);
    }
    free(fc);
    if (!s && !c->tied_embeddings) {
        if (!(s = cce_model_global_tensor(m, CCE_GT_LM_HEAD, &t))) s = write_tensor(o, t);
    }
    return s;
}

cce_status cce_export_llama2c(cce_model *m, const char *model_bin, const char *tokenizer_bin) {
    const cce_config *c = cce_model_config(m);
    cce_status s = check_uniform(m, model_bin);
    if (s || (s = check_no_bias(m, model_bin))) return s;
    if (c->dim != c->n_heads * c->head_dim)
        return cce_fail(CCE_ERR_ARG,
                        "%s: head_dim %d * n_heads %d != dim %d; llama2.c implies "
                        "head_dim = dim / n_heads",
                        model_bin, (int)c->head_dim, (int)c->n_heads, (int)c->dim);
    if (c->rope_theta != 10000.0f)
        return cce_fail(CCE_ERR_ARG, "%s: rope_theta = %g; the llama2.c format implies 10000",
                        model_bin, (double)c->rope_theta);
    if (c->norm_eps != 1e-5f)
        return cce_fail(CCE_ERR_ARG, "%s: norm_eps = %g; the llama2.c format implies 1e-5",
                        model_bin, (double)c->norm_eps);
    const cce_tokenizer *tok = cce_model_tokenizer(m);
    if (tokenizer_bin && !tok)
        return cce_fail(CCE_ERR_STATE, "%s: the model has no tokenizer to write to %s", model_bin,
                        tokenizer_bin);
    out_file o;
    if ((s = out_open(&o, model_bin))) return s;
    s = write_weights(m, &o);
    cce_status f = out_finish(&o, !s);
    if (s || f) return s ? s : f;
    return tokenizer_bin ? cce_export_llama2c_tokenizer(tok, tokenizer_bin) : CCE_OK;
}
