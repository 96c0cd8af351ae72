/* The forward pass over a whole window: every projection is one cblas_sgemm over all T tokens
 * (OpenBLAS threads), attention runs in parallel over heads and query blocks
 * (forward_attention.c). The window's keys and values land in the KV cache. */
#include <string.h>

#include "forward_internal.h"
#include "kernels.h"

static void hook(cce_forward *f, int layer, cce_hook_point p, const float *x, int rows, int cols) {
    if (f->hook) f->hook(f->hook_user, layer, p, x, rows, cols);
}

static void block_window(cce_forward *f, int l, int T) {
    const fwd_layer *L = &f->layers[l];
    const cce_config *c = &f->cfg;
    int dim = c->dim;
    hook(f, l, CCE_HOOK_BLOCK_IN, f->h, T, dim);
    if (L->removed) {
        hook(f, l, CCE_HOOK_BLOCK_OUT, f->h, T, dim);
        return;
    }
    /* Attention half. */
    cce_rmsnorm(f->x, f->h, L->attn_norm, T, dim, c->norm_eps);
    hook(f, l, CCE_HOOK_ATTN_IN, f->x, T, dim);
    if (L->n_heads > 0) { /* biases of q and k before RoPE */
        cce_forward_linear(f, &L->lr[CCE_LT_Q], L->wq, L->bias[CCE_LB_Q], f->q, f->x, T, dim,
                           L->q_dim, 0.0f); /* [T, q_dim] */
        cce_forward_linear(f, &L->lr[CCE_LT_K], L->wk, L->bias[CCE_LB_K], f->k_rows, f->x, T, dim,
                           L->kv_dim, 0.0f); /* [T, kv_dim] */
        cce_forward_linear(f, &L->lr[CCE_LT_V], L->wv, L->bias[CCE_LB_V], f->v_rows, f->x, T, dim,
                           L->kv_dim, 0.0f); /* [T, kv_dim] */
        cce_rope_apply(f->q, T, L->q_dim, L->n_heads, c->head_dim, 0, f->cos_tab, f->sin_tab);
        cce_rope_apply(f->k_rows, T, L->kv_dim, L->n_kv_heads, c->head_dim, 0, f->cos_tab,
                       f->sin_tab);
        cce_attention_window(f, L, T);
    }
    hook(f, l, CCE_HOOK_O_IN, f->o, T, L->q_dim);
    if (L->n_heads > 0) /* h += o Wo^T (+ bo) */
        cce_forward_linear(f, &L->lr[CCE_LT_O], L->wo, L->bias[CCE_LB_O], f->h, f->o, T, L->q_dim,
                           dim, 1.0f);
    /* Feed-forward half. */
    cce_rmsnorm(f->x, f->h, L->ffn_norm, T, dim, c->norm_eps);
    hook(f, l, CCE_HOOK_FFN_IN, f->x, T, dim);
    if (L->hidden_dim > 0) {
        cce_forward_linear(f, &L->lr[CCE_LT_GATE], L->wg, L->bias[CCE_LB_GATE], f->g, f->x, T, dim,
                           L->hidden_dim, 0.0f); /* [T, hidden] */
        cce_forward_linear(f, &L->lr[CCE_LT_UP], L->wu, L->bias[CCE_LB_UP], f->u, f->x, T, dim,
                           L->hidden_dim, 0.0f); /* [T, hidden] */
        cce_swiglu(f->g, f->u, (int64_t)T * L->hidden_dim);
    }
    hook(f, l, CCE_HOOK_DOWN_IN, f->g, T, L->hidden_dim);
    if (L->hidden_dim > 0) /* h += a Wd^T (+ bd) */
        cce_forward_linear(f, &L->lr[CCE_LT_DOWN], L->wd, L->bias[CCE_LB_DOWN], f->h, f->g, T,
                           L->hidden_dim, dim, 1.0f);
    hook(f, l, CCE_HOOK_BLOCK_OUT, f->h, T, dim);
}

cce_status cce_forward_window(cce_forward *f, const int32_t *tokens, int T, float *logits) {
    if (!f || !tokens || !logits) return cce_fail(CCE_ERR_ARG, "forward window: NULL argument");
    const cce_config *c = &f->cfg;
    if (T < 1 || T > f->max_tokens)
        return cce_fail(CCE_ERR_RANGE,
                        "forward window: T = %d tokens is outside [1, %d] (max_tokens, seq_len %d)",
                        T, f->max_tokens, (int)c->seq_len);
    for (int t = 0; t < T; t++) {
        cce_status s = cce_forward_check_token(f, tokens[t], t);
        if (s) return s;
    }
    int dim = c->dim;
    for (int t = 0; t < T; t++)
        memcpy(f->h + (size_t)t * dim, f->embed + (size_t)tokens[t] * dim, sizeof(float) * dim);
    /* Until this window is complete the cache holds no valid sequence. */
    f->next_pos = 0;
    if (f->last_layer >= 0) {
        for (int l = 0; l <= f->last_layer; l++) block_window(f, l, T);
        return CCE_OK; /* the cache stays invalid: the later layers never ran */
    }
    for (int l = 0; l < c->n_layers; l++) block_window(f, l, T);
    cce_rmsnorm(f->x, f->h, f->final_norm, T, dim, c->norm_eps);
    cce_forward_linear(f, &f->cls_lr, f->cls, NULL, logits, f->x, T, dim, c->vocab_size,
                       0.0f); /* [T, vocab] */
    f->next_pos = T;
    return CCE_OK;
}
