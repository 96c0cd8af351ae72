/* The state shared by forward.c (lifetime, checks), forward_batch.c (windows through GEMM),
 * forward_attention.c (window attention) and forward_decode.c (KV-cache decoding). Not a public
 * header.
 *
 * The KV cache is kept per kv head, so that attention reads one contiguous run of memory for a
 * head's keys and one for its values, whatever the position (strided runs, one short piece per
 * position or per key dimension, left the hardware prefetcher idle and each read a cache miss):
 * - keys in tiles of CCE_ATT_KEY_BLOCK positions, each tile [head_dim][CCE_ATT_KEY_BLOCK]
 *   (positions contiguous), so that scores vectorise over positions instead of needing one
 *   horizontal sum per (query, key) pair (at head_dim 8 that made decoding attention several
 *   times slower): [n_kv_heads][kv_ld / CCE_ATT_KEY_BLOCK][head_dim][CCE_ATT_KEY_BLOCK];
 * - values [n_kv_heads][seq_len][head_dim].
 * A window's keys and values are computed row-major into k_rows and v_rows, rotated, then
 * scattered into the cache (cce_attention_window). */
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
    float *kt_cache;                 /* [n_kv_heads, kv_ld, head_dim] keys in tiles (see the top) */
    float *v_cache;                  /* [n_kv_heads, seq_len, head_dim] values (both in f->kv) */
    /* Decoding only (inside cce_forward.packed and cce_forward.dec_index, NULL until the first
     * cce_forward_token call, and NULL for a layer that decodes projection by projection: one
     * with a lowrank tensor; see forward_decode_pack.c for the layout and why): */
    float *wqkv;               /* [q_dim + 2 kv_dim, dim] q/k/v rows by kv group: per group g the
                                * q rows of its heads (heads_by_group order), its k rows, its v rows */
    float *wo_t;               /* [q_dim, dim] wo transposed: head h's rows at h * head_dim */
    float *wffn;               /* per FFN chunk c of w <= dec_chunk units: [3 w, dim] its gate
                                * rows, its up rows and its rows of wd transposed */
    float *bqkv;               /* [q_dim + 2 kv_dim] biases in wqkv's row order, or NULL */
    float *bffn;               /* per chunk [2 w]: gate then up biases, or NULL */
    const int *heads_by_group; /* [n_heads] head ids, group 0's first (dec_index) */
    const int *group_heads; /* [n_kv_heads + 1] group g's heads: heads_by_group[gh[g], gh[g+1]) */
    int n_chunks;           /* FFN chunks: ceil(hidden_dim / dec_chunk) */
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
    int kv_ld;                /* positions in a head's keys: seq_len rounded up to a whole tile */

    /* Activations, sized for max_tokens rows. */
    float *h;         /* [max_tokens, dim] residual stream */
    float *x;         /* [max_tokens, dim] normalised input of a block half */
    float *q;         /* [max_tokens, max_q_dim] queries */
    float *o;         /* [max_tokens, max_q_dim] concatenated head outputs */
    float *g;         /* [max_tokens, max_hidden] gate, then silu(gate) * up */
    float *u;         /* [max_tokens, max_hidden] up */
    float *lr_tmp;    /* [max_tokens, max_rank] x B^T of a lowrank linear tensor */
    float *k_rows;    /* [max_tokens, max_kv_dim] a window's keys, row-major, before the cache */
    float *v_rows;    /* [max_tokens, max_kv_dim] a window's values, likewise */
    float *att;       /* window: [n_threads][CCE_ATT_ROWS, att_ld]; decode: [max_heads, kv_ld] */
    float *att_spare; /* [n_threads][CCE_ATT_ROWS, head_dim] outputs of padding query rows */
    int att_ld;       /* max_tokens rounded up to a multiple of CCE_ATT_KEY_BLOCK */
    int n_threads;    /* OpenMP threads the window attention is sized for */

    /* KV-cache decoding state, allocated on the first cce_forward_token call (window-only users
     * pay nothing): a second copy of every weight of the layers that decode as a team, packed in
     * the order a step reads it (sum over those layers of 4 * dim * (2 q_dim + 2 kv_dim +
     * 3 hidden) bytes: 24 MB for the stories15M shape), and the step's scratch. */
    float *packed;   /* every team layer's wqkv, wo_t, wffn and packed biases */
    int *dec_index;  /* every team layer's heads_by_group and group_heads */
    float *dec_qkv;  /* [max_q_dim + 2 max_kv_dim] one token's q/k/v, in wqkv's row order */
    float *dec_gu;   /* [dec_threads, 2 dec_chunk] each thread's gate/up of one FFN chunk */
    float *dec_xn;   /* [dec_threads, dec_ld] each decoding thread's own normalised input */
    float *dec_h;    /* [dec_threads, dec_ld] each thread's own copy of the residual stream */
    float *dec_part; /* [max_heads + max chunks, dec_ld] per head, then per FFN chunk, its share of
                      * the residual update, summed in a fixed order (so results do not depend
                      * on which thread computed what) */
    int dec_chunk;   /* FFN units per chunk */
    int dec_ld;      /* dim rounded up to whole cache lines: the row stride of the three above */
    int dec_threads; /* the team size of a decoding step (OpenMP's maximum at the first step) */
    int *dec_next;   /* [4 n_layers + 1] per phase of a step, the next piece of rows to hand out */
    unsigned *dec_claims; /* [n_layers, 2, dec_items, DECODE_CLAIM_STRIDE] per layer, phase
                           * (attention, FFN) and item, the stamp of the step that claimed it */
    size_t dec_claims_bytes;
    int dec_items;      /* room for items per phase: kv groups or FFN chunks */
    unsigned dec_stamp; /* this step's stamp (never 0) */

    int next_pos; /* the position cce_forward_token accepts next (besides 0) */
    cce_hook_fn hook;
    void *hook_user;
    int last_layer; /* windows stop after this block (no classifier); -1: run the whole model */
};

/* Kv head g's keys: kv_ld / CCE_ATT_KEY_BLOCK tiles of [head_dim][CCE_ATT_KEY_BLOCK]. */
static inline float *cce_head_keys(const fwd_layer *L, int g, int head_dim, int kv_ld) {
    return L->kt_cache + (size_t)g * kv_ld * head_dim;
}

/* The key cache's float for (key dimension d, position pos) of one head's keys. */
static inline size_t cce_key_index(int d, int pos, int head_dim) {
    return ((size_t)(pos / CCE_ATT_KEY_BLOCK) * head_dim + (size_t)d) * CCE_ATT_KEY_BLOCK +
           (size_t)(pos % CCE_ATT_KEY_BLOCK);
}

/* Kv head g's values [seq_len][head_dim]. */
static inline float *cce_head_values(const fwd_layer *L, int g, int head_dim, int seq_len) {
    return L->v_cache + (size_t)g * seq_len * head_dim;
}

/* Causal grouped-query attention of a window of T tokens: scatters the window's keys
 * (f->k_rows [T, kv_dim], RoPE applied) and values (f->v_rows [T, kv_dim]) into the layer's
 * cache, then computes f->o [T, q_dim] from f->q [T, q_dim] (RoPE applied) and cache positions
 * 0..T-1. Runs its own OpenMP region; calls no BLAS. */
void cce_attention_window(cce_forward *f, const fwd_layer *L, int T);

/* y [T, out] = x [T, in] W^T + beta y (+ bias [out] on every row when bias is not NULL) with
 * W [out, in]: one cblas_sgemm (cce_linear), or for a lowrank W = A B two, through f->lr_tmp:
 * t = x B^T [T, rank], then y = t A^T + beta y; the bias is added after the (last) product. */
void cce_forward_linear(cce_forward *f, const fwd_lowrank *lr, const float *w, const float *bias,
                        float *y, const float *x, int T, int in, int out, float beta);

/* The same for one token: y [out] = W x [in] + beta y (+ bias), one cblas_sgemv or two. */
void cce_forward_gemv(cce_forward *f, const fwd_lowrank *lr, const float *w, const float *bias,
                      float *y, const float *x, int out, int in, float beta);

/* Unsigned ints between two item claims of a decoding step: one cache line each. */
#define DECODE_CLAIM_STRIDE 16

/* bytes rounded up to whole cache lines, starting on one (freed with free; NULL when out of
 * memory): for buffers that several threads write, each its own rows, so that a line shared at
 * a boundary does not bounce between their cores. */
void *cce_forward_lines_alloc(size_t bytes);

/* Decoding's state (forward_decode_pack.c): allocates and packs it on first use. */
cce_status cce_decode_prepare(cce_forward *f);

/* Whether a layer decodes as one team region (its weights packed): no lowrank tensor. */
int cce_decode_team_layer(const fwd_layer *L);

/* Checks one token id against the vocabulary (CCE_ERR_RANGE naming the index). */
cce_status cce_forward_check_token(const cce_forward *f, int32_t token, int index);

#endif
