/* The Llama forward pass (DESIGN section 6): whole windows through GEMM for evaluation and
 * calibration, KV-cache decoding for generation, and hooks that expose the input of every
 * linear layer.
 *
 * Per layer l (skipped when the layer is marked removed):
 *   x  = RMSNorm(h) * attn_norm                      (eps = config norm_eps)
 *   q, k, v = x Wq^T + bq, x Wk^T + bk, x Wv^T + bv; RoPE on q and k (rotate-half, theta =
 *             config rope_theta), after their biases (as Qwen2)
 *   o  = concat over heads of softmax_causal(q_h k_{kv(h)}^T / sqrt(head_dim)) v_{kv(h)}
 *   h += o Wo^T + bo
 *   x' = RMSNorm(h) * ffn_norm;  a = silu(x' Wg^T + bg) * (x' Wu^T + bu);  h += a Wd^T + bd
 * then logits = RMSNorm(h) * norm  Wcls^T (Wcls = embed_tokens when tied).
 * Widths (hidden_dim, n_heads, n_kv_heads, kv_of_head) are each layer's own (cce_model_layer).
 * Each bias b is optional (model.h, "Biases"): an absent one is not added at all, so a model
 * without biases computes bit for bit what it did before biases existed. A lowrank tensor gets its
 * bias after its second product.
 *
 * Threads: projections are single cblas_sgemm / cblas_sgemv calls that use OpenBLAS's own
 * threads; norms, RoPE, softmax rows and decode attention heads use OpenMP loops. No BLAS call is
 * made inside an OpenMP region. A forward is not thread-safe: one caller at a time. */
#ifndef CCE_FORWARD_H
#define CCE_FORWARD_H

#include <stdint.h>

#include "model.h"
#include "status.h"

typedef struct cce_forward cce_forward;

/* Loads all weights of m (cce_model_load_all), checks shapes against the per-layer widths,
 * allocates activations for windows of up to max_tokens tokens and a KV cache of seq_len.
 * m is borrowed and must outlive the forward; its tensors must not be replaced while the forward
 * lives (the forward keeps pointers to them). Caller owns *out (cce_forward_free). */
cce_status cce_forward_new(cce_model *m, int max_tokens, cce_forward **out);
void cce_forward_free(cce_forward *f);

/* One window: tokens[0..T-1] at positions 0..T-1, causal attention, all through GEMM.
 * logits: caller's buffer [T, vocab]. T <= max_tokens and <= seq_len.
 * The window's keys and values are left in the KV cache, so cce_forward_token may continue the
 * sequence at position T. */
cce_status cce_forward_window(cce_forward *f, const int32_t *tokens, int T, float *logits);

/* KV-cache decoding: one token at position pos (pos 0 restarts the sequence; positions must
 * follow each other). logits: caller's buffer [vocab].
 * The first call packs each layer's q/k/v and gate/up weights into one matrix per group (one
 * GEMV each instead of three and two), owned by the forward: a second copy of those weights,
 * 4 * dim * (q_dim + 2 kv_dim + 2 hidden_dim) bytes per kept layer (16.6 MB at the stories15M
 * shape); window-only users never pay it. The copy is taken then: weight values changed in place
 * afterwards are not seen by decoding (windows still see them); use a new forward. */
cce_status cce_forward_token(cce_forward *f, int32_t token, int pos, float *logits);

/* The weight buffers a decoding step reads in full (norms, projections as packed or as lowrank
 * factors, biases, classifier), for cce bench's weight-streaming bound: reading these very buffers
 * once is the least a step can cost. Prepares decoding as the first cce_forward_token call does.
 * Fills ptr/numel [capacity] (pointers borrowed from f) and sets *count to the number of buffers,
 * which may exceed capacity (then call again with more room). */
cce_status cce_forward_decode_buffers(cce_forward *f, const float **ptr, int64_t *numel,
                                      int capacity, int *count);

typedef enum cce_hook_point {
    CCE_HOOK_BLOCK_IN,
    CCE_HOOK_ATTN_IN,
    CCE_HOOK_O_IN,
    CCE_HOOK_FFN_IN,
    CCE_HOOK_DOWN_IN,
    CCE_HOOK_BLOCK_OUT
} cce_hook_point;

/* Called during cce_forward_window with x [rows, cols] for every layer and point:
 * BLOCK_IN = residual h_l, ATTN_IN = RMSNorm(h) (input of q/k/v), O_IN = concatenated head
 * outputs (input of o_proj), FFN_IN = input of gate/up, DOWN_IN = silu(gate)*up (input of
 * down_proj), BLOCK_OUT = h_{l+1}. x is borrowed for the call only.
 * rows = T; cols = dim, dim, n_heads*head_dim, dim, hidden_dim, dim (the layer's own widths).
 * A removed layer reports only BLOCK_IN and BLOCK_OUT (equal). Hooks are called from the
 * calling thread, outside any parallel region, in layer order. */
typedef void (*cce_hook_fn)(void *user, int layer, cce_hook_point point, const float *x, int rows,
                            int cols);
/* Installs (fn != NULL) or removes (fn == NULL) the hook; user is borrowed. */
void cce_forward_set_hook(cce_forward *f, cce_hook_fn fn, void *user);

/* Makes cce_forward_window stop after block `last` (its hooks included): the later blocks and
 * the classifier are skipped, logits are not written, and the KV cache holds no valid sequence
 * afterwards. For statistics that need one layer's inputs only (sequential calibration), where the
 * rest of the model would be wasted work. -1 (the default) runs the whole model. */
void cce_forward_set_last_layer(cce_forward *f, int last);

/* The model the forward runs (borrowed) and its window capacity. */
cce_model *cce_forward_model(const cce_forward *f);
int cce_forward_max_tokens(const cce_forward *f);

#endif
