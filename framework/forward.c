/* The forward pass: construction (weight and shape checks, buffers, RoPE tables) and hooks.
 * Windows are in forward_batch.c, KV-cache decoding in forward_decode.c. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoding.h"
#include "forward_internal.h"
#include "kernels.h"

void cce_forward_free(cce_forward *f) {
    if (!f) return;
    free(f->layers);
    free(f->cos_tab);
    free(f->sin_tab);
    free(f->kv);
    free(f->h);
    free(f->x);
    free(f->q);
    free(f->o);
    free(f->g);
    free(f->u);
    free(f->lr_tmp);
    free(f->att);
    free(f->k_rows);
    free(f->v_rows);
    free(f->att_spare);
    free(f->packed);
    free(f->dec_qkv);
    free(f->dec_gu);
    free(f->dec_xn);
    free(f->dec_h);
    free(f->dec_part);
    free(f->dec_index);
    free(f->dec_claims);
    free(f->dec_next);
    free(f);
}

/* Fetches a tensor and checks it is [rows, cols] (cols = 0: 1-D of rows). */
static cce_status fetch(cce_model *m, int layer, int which, int global, int64_t rows, int64_t cols,
                        const float **out) {
    cce_tensor *t;
    cce_status s = global ? cce_model_global_tensor(m, (cce_global_tensor)which, &t)
                          : cce_model_layer_tensor(m, layer, (cce_layer_tensor)which, &t);
    char name[128];
    if (global)
        snprintf(name, sizeof name, "%s", cce_global_tensor_name((cce_global_tensor)which));
    else
        cce_layer_tensor_name(layer, (cce_layer_tensor)which, name, sizeof name);
    if (s) {
        cce_error_prefix("forward: ");
        return s;
    }
    int ok = cols ? (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols)
                  : (t->ndim == 1 && t->shape[0] == rows);
    if (!ok) {
        if (cols)
            return cce_fail(CCE_ERR_FORMAT, "forward: tensor %s is not [%lld, %lld]", name,
                            (long long)rows, (long long)cols);
        return cce_fail(CCE_ERR_FORMAT, "forward: tensor %s is not [%lld]", name, (long long)rows);
    }
    *out = t->data;
    return CCE_OK;
}

/* The lowrank factors of tensor `name` into *lr when it is stored lowrank (else lr->a NULL). */
static cce_status lowrank_of(cce_forward *f, const char *name, fwd_lowrank *lr) {
    const cce_encoding *e;
    memset(lr, 0, sizeof *lr);
    cce_status s = cce_model_tensor_encoding(f->model, name, &e);
    if (s) {
        cce_error_prefix("forward: ");
        return s;
    }
    if (!e || !e->lowrank) return CCE_OK;
    if (e->rank < 1 || e->rank > INT32_MAX / 2 || !e->a || !e->b)
        return cce_fail(CCE_ERR_FORMAT, "forward: tensor %s: lowrank encoding of rank %lld", name,
                        (long long)e->rank);
    lr->a = e->a;
    lr->b = e->b;
    lr->rank = (int)e->rank;
    if (lr->rank > f->max_rank) f->max_rank = lr->rank;
    return CCE_OK;
}

static cce_status setup_layer(cce_forward *f, int l, size_t *kv_floats) {
    const cce_config *c = &f->cfg;
    const cce_layer_shape *ls = cce_model_layer(f->model, l);
    fwd_layer *L = &f->layers[l];
    if (!ls) return cce_fail(CCE_ERR_INTERNAL, "forward: layer %d has no shape", l);
    L->removed = ls->removed != 0;
    if (L->removed) return CCE_OK;
    if (ls->n_heads < 0 || ls->n_kv_heads < 0 || ls->hidden_dim < 0 ||
        (ls->n_heads > 0 && ls->n_kv_heads < 1))
        return cce_fail(CCE_ERR_FORMAT,
                        "forward: layer %d has n_heads %d, n_kv_heads %d, hidden_dim %d", l,
                        (int)ls->n_heads, (int)ls->n_kv_heads, (int)ls->hidden_dim);
    L->n_heads = ls->n_heads;
    L->n_kv_heads = ls->n_kv_heads;
    L->hidden_dim = ls->hidden_dim;
    L->q_dim = L->n_heads * c->head_dim;
    L->kv_dim = L->n_kv_heads * c->head_dim;
    L->kv_of_head = ls->kv_of_head;
    for (int h = 0; h < L->n_heads; h++)
        if (!L->kv_of_head || L->kv_of_head[h] < 0 || L->kv_of_head[h] >= L->n_kv_heads)
            return cce_fail(CCE_ERR_FORMAT,
                            "forward: layer %d: kv_of_head[%d] = %d is outside [0, %d)", l, h,
                            L->kv_of_head ? (int)L->kv_of_head[h] : -1, L->n_kv_heads);
    cce_model *m = f->model;
    cce_status s;
    int64_t dim = c->dim;
    if ((s = fetch(m, l, CCE_LT_ATTN_NORM, 0, dim, 0, &L->attn_norm)) ||
        (s = fetch(m, l, CCE_LT_Q, 0, L->q_dim, dim, &L->wq)) ||
        (s = fetch(m, l, CCE_LT_K, 0, L->kv_dim, dim, &L->wk)) ||
        (s = fetch(m, l, CCE_LT_V, 0, L->kv_dim, dim, &L->wv)) ||
        (s = fetch(m, l, CCE_LT_O, 0, dim, L->q_dim, &L->wo)) ||
        (s = fetch(m, l, CCE_LT_FFN_NORM, 0, dim, 0, &L->ffn_norm)) ||
        (s = fetch(m, l, CCE_LT_GATE, 0, L->hidden_dim, dim, &L->wg)) ||
        (s = fetch(m, l, CCE_LT_UP, 0, L->hidden_dim, dim, &L->wu)) ||
        (s = fetch(m, l, CCE_LT_DOWN, 0, dim, L->hidden_dim, &L->wd)))
        return s;
    for (int b = 0; b < CCE_LB_COUNT; b++) {
        cce_tensor *t;
        if ((s = cce_model_layer_bias(m, l, (cce_layer_bias)b, &t))) {
            cce_error_prefix("forward: ");
            return s;
        }
        L->bias[b] = t ? t->data : NULL;
        if (!t) continue;
        int64_t rows = b == CCE_LB_Q                        ? L->q_dim
                       : b == CCE_LB_K || b == CCE_LB_V     ? L->kv_dim
                       : b == CCE_LB_GATE || b == CCE_LB_UP ? L->hidden_dim
                                                            : dim;
        if (t->ndim != 1 || t->shape[0] != rows) {
            char name[128];
            cce_layer_bias_name(l, (cce_layer_bias)b, name, sizeof name);
            return cce_fail(CCE_ERR_FORMAT, "forward: bias %s is not [%lld]", name,
                            (long long)rows);
        }
    }
    static const cce_layer_tensor linear[] = {CCE_LT_Q,    CCE_LT_K,  CCE_LT_V,   CCE_LT_O,
                                              CCE_LT_GATE, CCE_LT_UP, CCE_LT_DOWN};
    for (size_t i = 0; i < sizeof linear / sizeof linear[0]; i++) {
        char name[128];
        cce_layer_tensor_name(l, linear[i], name, sizeof name);
        if ((s = lowrank_of(f, name, &L->lr[linear[i]]))) return s;
    }
    if (L->q_dim > f->max_q_dim) f->max_q_dim = L->q_dim;
    if (L->kv_dim > f->max_kv_dim) f->max_kv_dim = L->kv_dim;
    if (L->hidden_dim > f->max_hidden) f->max_hidden = L->hidden_dim;
    if (L->n_heads > f->max_heads) f->max_heads = L->n_heads;
    *kv_floats += ((size_t)f->kv_ld + (size_t)c->seq_len) * (size_t)L->kv_dim;
    return CCE_OK;
}

void *cce_forward_lines_alloc(size_t bytes) {
    return aligned_alloc(64, (bytes ? bytes + 63 : 64) / 64 * 64);
}

/* n floats on whole cache lines: threads write different heads' rows of o and att. */
static float *alloc_floats(size_t n) {
    return cce_forward_lines_alloc(sizeof(float) * n);
}

cce_status cce_forward_new(cce_model *m, int max_tokens, cce_forward **out) {
    if (!m || !out) return cce_fail(CCE_ERR_ARG, "forward: no model or output given");
    const cce_config *c = cce_model_config(m);
    if (max_tokens < 1)
        return cce_fail(CCE_ERR_RANGE, "forward: max_tokens = %d, must be >= 1", max_tokens);
    cce_status s = cce_config_validate(c, "forward");
    if (s) return s;
    if ((s = cce_model_load_all(m))) {
        cce_error_prefix("forward: ");
        return s;
    }
    cce_forward *f = calloc(1, sizeof *f);
    if (!f) return cce_fail(CCE_ERR_NOMEM, "forward");
    f->model = m;
    f->cfg = *c;
    f->last_layer = -1;
    f->max_tokens = max_tokens < c->seq_len ? max_tokens : c->seq_len;
    f->layers = calloc((size_t)c->n_layers, sizeof *f->layers);
    if (!f->layers) {
        cce_forward_free(f);
        return cce_fail(CCE_ERR_NOMEM, "forward: %d layers", (int)c->n_layers);
    }
    size_t kv_floats = 0;
    f->kv_ld = (c->seq_len + CCE_ATT_KEY_BLOCK - 1) / CCE_ATT_KEY_BLOCK * CCE_ATT_KEY_BLOCK;
    for (int l = 0; l < c->n_layers; l++)
        if ((s = setup_layer(f, l, &kv_floats))) {
            cce_forward_free(f);
            return s;
        }
    if ((s = fetch(m, 0, CCE_GT_EMBED, 1, c->vocab_size, c->dim, &f->embed)) ||
        (s = fetch(m, 0, CCE_GT_NORM, 1, c->dim, 0, &f->final_norm)) ||
        (s = fetch(m, 0, CCE_GT_LM_HEAD, 1, c->vocab_size, c->dim, &f->cls)) ||
        (!c->tied_embeddings &&
         (s = lowrank_of(f, cce_global_tensor_name(CCE_GT_LM_HEAD), &f->cls_lr)))) {
        cce_forward_free(f);
        return s;
    }

    size_t T = (size_t)f->max_tokens, half = (size_t)c->head_dim / 2;
    f->n_threads = omp_get_max_threads();
    f->att_ld = (f->max_tokens + CCE_ATT_KEY_BLOCK - 1) / CCE_ATT_KEY_BLOCK * CCE_ATT_KEY_BLOCK;
    size_t att_window = (size_t)f->n_threads * CCE_ATT_ROWS * (size_t)f->att_ld;
    size_t att_decode = (size_t)f->max_heads * (size_t)f->kv_ld;
    f->cos_tab = alloc_floats((size_t)c->seq_len * half);
    f->sin_tab = alloc_floats((size_t)c->seq_len * half);
    f->kv = alloc_floats(kv_floats); /* heads' caches on whole lines (threads write them) */
    if (f->kv) memset(f->kv, 0, sizeof(float) * (kv_floats ? kv_floats : 1));
    f->h = alloc_floats(T * (size_t)c->dim);
    f->x = alloc_floats(T * (size_t)c->dim);
    f->q = alloc_floats(T * (size_t)f->max_q_dim);
    f->o = alloc_floats(T * (size_t)f->max_q_dim);
    f->g = alloc_floats(T * (size_t)f->max_hidden);
    f->u = alloc_floats(T * (size_t)f->max_hidden);
    f->lr_tmp = alloc_floats(T * (size_t)f->max_rank);
    f->att = alloc_floats(att_window > att_decode ? att_window : att_decode);
    f->k_rows = alloc_floats(T * (size_t)f->max_kv_dim);
    f->v_rows = alloc_floats(T * (size_t)f->max_kv_dim);
    f->att_spare = alloc_floats((size_t)f->n_threads * CCE_ATT_ROWS * (size_t)c->head_dim);
    if (!f->cos_tab || !f->sin_tab || !f->kv || !f->h || !f->x || !f->q || !f->o || !f->g ||
        !f->u || !f->lr_tmp || !f->att || !f->k_rows || !f->v_rows || !f->att_spare) {
        cce_forward_free(f);
        return cce_fail(CCE_ERR_NOMEM, "forward: activations for %d tokens and a KV cache of %d",
                        f->max_tokens, (int)c->seq_len);
    }
    float *kv = f->kv;
    for (int l = 0; l < c->n_layers; l++) {
        fwd_layer *L = &f->layers[l];
        if (L->removed) continue;
        L->kt_cache = kv;
        kv += (size_t)f->kv_ld * (size_t)L->kv_dim;
        L->v_cache = kv;
        kv += (size_t)c->seq_len * (size_t)L->kv_dim;
    }
    cce_rope_tables(f->cos_tab, f->sin_tab, c->seq_len, c->head_dim, c->rope_theta);
    *out = f;
    return CCE_OK;
}

void cce_forward_set_last_layer(cce_forward *f, int last) {
    f->last_layer = last < 0 || last >= f->cfg.n_layers ? -1 : last;
}

void cce_forward_set_hook(cce_forward *f, cce_hook_fn fn, void *user) {
    f->hook = fn;
    f->hook_user = fn ? user : NULL;
}

cce_model *cce_forward_model(const cce_forward *f) {
    return f->model;
}

int cce_forward_max_tokens(const cce_forward *f) {
    return f->max_tokens;
}

void cce_forward_linear(cce_forward *f, const fwd_lowrank *lr, const float *w, const float *bias,
                        float *y, const float *x, int T, int in, int out, float beta) {
    if (!lr->a) {
        cce_linear(y, x, w, T, in, out, beta);
    } else {
        cce_linear(f->lr_tmp, x, lr->b, T, in, lr->rank, 0.0f);  /* [T, rank] x B^T */
        cce_linear(y, f->lr_tmp, lr->a, T, lr->rank, out, beta); /* [T, out] */
    }
    if (bias) cce_add_bias(y, bias, T, out);
}

void cce_forward_gemv(cce_forward *f, const fwd_lowrank *lr, const float *w, const float *bias,
                      float *y, const float *x, int out, int in, float beta) {
    if (!lr->a) {
        cce_gemv(y, w, x, out, in, beta);
    } else {
        cce_gemv(f->lr_tmp, lr->b, x, lr->rank, in, 0.0f);  /* [rank] B x */
        cce_gemv(y, lr->a, f->lr_tmp, out, lr->rank, beta); /* [out] */
    }
    if (bias) {
#pragma omp simd
        for (int i = 0; i < out; i++) y[i] += bias[i];
    }
}

cce_status cce_forward_check_token(const cce_forward *f, int32_t token, int index) {
    if (token < 0 || token >= f->cfg.vocab_size)
        return cce_fail(CCE_ERR_RANGE, "forward: token %d at index %d is outside [0, %d)",
                        (int)token, index, (int)f->cfg.vocab_size);
    return CCE_OK;
}
