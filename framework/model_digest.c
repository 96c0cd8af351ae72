/* The sha256 of what a model computes with: config, layer shapes, tokenizer, every tensor and
 * every bias.
 * Two models with equal digests give the same forward pass, whatever file they came from (an
 * HDF5 file's own bytes also hold object timestamps), so caches and experiment run keys use it. */
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>

#include "model.h"
#include "tokenizer.h"

/* Feeds printf-formatted text to the digest; 0 on failure (or text over the buffer). */
static int digest_text(EVP_MD_CTX *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int digest_text(EVP_MD_CTX *ctx, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < sizeof buf && EVP_DigestUpdate(ctx, buf, (size_t)n) == 1;
}

cce_status cce_model_weights_sha256(cce_model *m, char hex[65]) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return cce_fail(CCE_ERR_INTERNAL, "model digest: sha256 unavailable");
    }
    const cce_config *c = cce_model_config(m);
    const cce_tokenizer *tok = cce_model_tokenizer(m);
    int ok = digest_text(ctx, "cce-weights v1 %d %d %d %d %d %d %d %d %.9g %.9g %d tok=%016" PRIx64,
                         (int)c->dim, (int)c->hidden_dim, (int)c->n_layers, (int)c->n_heads,
                         (int)c->n_kv_heads, (int)c->head_dim, (int)c->vocab_size, (int)c->seq_len,
                         (double)c->rope_theta, (double)c->norm_eps, (int)c->tied_embeddings,
                         tok ? cce_tokenizer_fingerprint(tok) : 0);
    for (int l = 0; ok && l < c->n_layers; l++) {
        const cce_layer_shape *ls = cce_model_layer(m, l);
        ok = digest_text(ctx, "|layer %d %d %d %d %d", l, (int)ls->hidden_dim, (int)ls->n_heads,
                         (int)ls->n_kv_heads, (int)ls->removed);
        if (ok && ls->n_heads > 0 && ls->kv_of_head)
            ok = EVP_DigestUpdate(ctx, ls->kv_of_head, (size_t)ls->n_heads * sizeof(int32_t)) == 1;
    }
    cce_status s = CCE_OK;
    size_t n = cce_model_tensor_count(m);
    for (size_t i = 0; ok && i < n; i++) {
        const char *name = cce_model_tensor_name_at(m, i);
        cce_tensor *t;
        if ((s = cce_model_tensor(m, name, &t))) break;
        ok = digest_text(ctx, "|%s %d %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64, name, t->ndim,
                         t->shape[0], t->shape[1], t->shape[2], t->shape[3]) &&
             EVP_DigestUpdate(ctx, t->data, (size_t)cce_tensor_numel(t) * sizeof(float)) == 1;
    }
    /* Biases after every weight, so a model without any digests exactly as before they existed. */
    for (int l = 0; ok && !s && l < c->n_layers; l++)
        for (int b = 0; ok && b < CCE_LB_COUNT; b++) {
            cce_tensor *t;
            if ((s = cce_model_layer_bias(m, l, (cce_layer_bias)b, &t))) break;
            if (!t) continue;
            char name[96];
            cce_layer_bias_name(l, (cce_layer_bias)b, name, sizeof name);
            ok = digest_text(ctx, "|%s %d %" PRId64, name, t->ndim, t->shape[0]) &&
                 EVP_DigestUpdate(ctx, t->data, (size_t)cce_tensor_numel(t) * sizeof(float)) == 1;
        }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    if (!s && (!ok || EVP_DigestFinal_ex(ctx, md, &len) != 1 || len != 32))
        s = cce_fail(CCE_ERR_INTERNAL, "model digest: sha256 of the weights failed");
    EVP_MD_CTX_free(ctx);
    for (unsigned i = 0; !s && i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return s;
}
