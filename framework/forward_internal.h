/* The state shared by forward.c (lifetime, checks), forward_batch.c (windows through GEMM),
 * forward_attention.c (window attention) and forward_decode.c (KV-cache decoding). Not a public
 * header.
 *
 * The KV cache keeps values as [pos][kv_dim] and keys transposed, [kv_dim][pos] (positions
 * contiguous), so that attention scores vectorise over positions in both passes instead of
 * needing one horizontal sum per (query, key) pair: at head_dim 8 that made decoding attention
 * several times slower. New keys are computed row-major into k_rows, rotated, then transposed
 * into the cache. */
#ifndef CCE_FORWARD_INTERNAL_H
#define CCE_FORWARD_INTERNAL_H

#include "forward.h"

/* Window attention (forward_attention.c) works on register blocks of CCE_ATT_ROWS query rows
 * by CCE_ATT_KEY_BLOCK keys; the rows of the transposed key cache are padded to a multiple of
 * the latter. */
#define CCE_ATT_ROWS      8
#define CCE_ATT_KEY_BLOCK 32

/* A linear tensor stored lowrank (encoding.h), W = A B, run as two products; a NULL: dense. */
typedef struct fwd_lowrank {
    const float *a; /* [out, rank] (borrowed from the model's encoding) */
    const float *b; /* [rank, in] */
    int rank;
} fwd_lowrank;

typedef struct fwd_layer {
    int removed;
    int n_heads, n_kv_heads, hidden_dim;
    int q_dim, kv_dim;               /* n_heads * head_dim, n_kv_heads * head_dim */
    const int32_t *kv_of_head;       /* [n_heads], borrowed from the model */
    const float *attn_norm;          /* [dim] */
    const float *wq, *wk, *wv;       /* [q_dim, dim], [kv_dim, dim], [kv_dim, dim] */
    const float *wo;                 /* [dim, q_dim] */
    const float *ffn_norm;           /* [dim] */
    const float *wg, *wu, *wd;       /* [hidden, dim], [hidden, dim], [dim, hidden] */
    fwd_lowrank lr[CCE_LT_COUNT];    /* by cce_layer_tensor: the lowrank linear tensors */
    const float *bias[CCE_LB_COUNT]; /* by cce_layer_bias: [rows of the weight], NULL if absent */
    float *kt_cache;                 /* [kv_dim, kv_ld] keys, transposed (inside cce_forward.kv) */
    float *v_cache;                  /* [seq_len, kv_dim] values (inside cce_forward.kv) */
    /* Decoding only (inside cce_forward.packed, NULL until the first cce_forward_token call, and
     * NULL for a layer without heads or without an FFN, or when one of the tensors it would pack
     * is lowrank; the projections then run one by one): */
    float *wqkv; /* [q_dim + 2 kv_dim, dim] rows of wq, then wk, then wv */
    float *wgu;  /* [2 hidden, dim] rows of wg, then wu */
    /* The biases of the packed projections (inside cce_forward.packed; NULL when the projections
     * are not packed or none of them has a bias; an absent one of the group is zeros): */
    float *bqkv; /* [q_dim + 2 kv_dim] */
    float *bgu;  /* [2 hidden] */
} fwd_layer;

struct cce_forward {
    cce_model *model; /* borrowed */
    cce_config cfg;   /* a copy (the model's may change when it is untied) */
    int max_tokens;   /* window capacity, <= seq_len */
    int max_q_dim, max_kv_dim, max_hidden, max_heads;
    fwd_layer *layers;                     /* [n_layers] */
    const float *embed, *final_norm, *cls; /* [vocab, dim], [dim], [vocab, dim] (borrowed) */
    fwd_lowrank cls_lr;                    /* the classifier, when it is stored lowrank */
    int max_rank;                          /* the largest rank of a lowrank linear tensor */

    float *cos_tab, *sin_tab; /* [seq_len, head_dim/2] RoPE tables */
    float *kv;                /* all layers' caches: per layer kt_cache then v_cache */
    int kv_ld;                /* row length of kt_cache: seq_len rounded up to CCE_ATT_KEY_BLOCK */

    /* Activations, sized for max_tokens rows. */
    float *h;         /* [max_tokens, dim] residual stream */
    float *x;         /* [max_tokens, dim] normalised input of a block half */
    float *q;         /* [max_tokens, max_q_dim] queries */
    float *o;         /* [max_tokens, max_q_dim] concatenated head outputs */
    float *g;         /* [max_tokens, max_hidden] gate, then silu(gate) * up */
    float *u;         /* [max_tokens, max_hidden] up */
    float *lr_tmp;    /* [max_tokens, max_rank] x B^T of a lowrank linear tensor */
    float *k_rows;    /* [max_tokens, max_kv_dim] new keys, row-major, before transposition */
    float *att;       /* window: [n_threads][CCE_ATT_ROWS, att_ld]; decode: [max_heads, kv_ld] */
    float *att_spare; /* [n_threads][CCE_ATT_ROWS, head_dim] outputs of padding query rows */
    int att_ld;       /* max_tokens rounded up to a multiple of CCE_ATT_KEY_BLOCK */
    int n_threads;    /* OpenMP threads the window attention is sized for */

    /* KV-cache decoding state, allocated on the first cce_forward_token call (window-only users
     * pay nothing). Each layer's q/k/v and gate/up projections are packed into one matrix so that
     * a token runs one GEMV (one BLAS thread fork/join) per group instead of three and two. Memory:
     * a second copy of those weights, sum over kept layers of
     * 4 * dim * (q_dim + 2 kv_dim + 2 hidden) bytes (16.6 MB for the stories15M shape). */
    float *packed;   /* every layer's wqkv then wgu */
    float *dec_qkv;  /* [max_q_dim + 2 max_kv_dim] the fused q/k/v projection of one token */
    float *dec_gu;   /* [2 max_hidden] the fused gate/up projection, then silu(gate) * up */
    float *dec_xn;   /* [dec_threads, dim] each decoding thread's own normalised input */
    int dec_threads; /* the team size of a decoding step (OpenMP's maximum at the first step) */
    int *dec_next;   /* [4 n_layers + 1] per projection of a step, the next row to hand out */

    int next_pos; /* the position cce_forward_token accepts next (besides 0) */
    cce_hook_fn hook;
    void *hook_user;
    int last_layer; /* windows stop after this block (no classifier); -1: run the whole model */
};

/* Causal grouped-query attention of a window of T tokens: transposes the window's keys
 * (f->k_rows [T, kv_dim], RoPE applied) into the layer's key cache, then computes f->o [T, q_dim]
 * from f->q [T, q_dim] (RoPE applied) and cache positions 0..T-1. Runs its own OpenMP region;
 * calls no BLAS. */
void cce_attention_window(cce_forward *f, const fwd_layer *L, int T);

/* y [T, out] = x [T, in] W^T + beta y (+ bias [out] on every row when bias is not NULL) with
 * W [out, in]: one cblas_sgemm (cce_linear), or for a lowrank W = A B two, through f->lr_tmp:
 * t = x B^T [T, rank], then y = t A^T + beta y; the bias is added after the (last) product. */
void cce_forward_linear(cce_forward *f, const fwd_lowrank *lr, const float *w, const float *bias,
                        float *y, const float *x, int T, int in, int out, float beta);

/* The same for one token: y [out] = W x [in] + beta y (+ bias), one cblas_sgemv or two. */
void cce_forward_gemv(cce_forward *f, const fwd_lowrank *lr, const float *w, const float *bias,
                      float *y, const float *x, int out, int in, float beta);

/* Checks one token id against the vocabulary (CCE_ERR_RANGE naming the index). */
cce_status cce_forward_check_token(const cce_forward *f, int32_t token, int index);

#endif
