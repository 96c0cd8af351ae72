/* A Llama model: its config, per-layer shapes, tokenizer and named weights.
 *
 * A model is either built in memory (cce_model_new: importers, synth) or opened from a cce-model
 * HDF5 file (cce_model_open), in which case each tensor is read from the file the first time it is
 * asked for (lazy loading), so opening a large model costs almost nothing.
 *
 * Tensor names are Hugging Face names without the "model." prefix and without zero padding:
 *   embed_tokens.weight                      [vocab, dim]
 *   layers.L.input_layernorm.weight          [dim]
 *   layers.L.self_attn.q_proj.weight         [n_heads * head_dim, dim]    (rotate-half RoPE order)
 *   layers.L.self_attn.k_proj.weight         [n_kv_heads * head_dim, dim] (rotate-half RoPE order)
 *   layers.L.self_attn.v_proj.weight         [n_kv_heads * head_dim, dim]
 *   layers.L.self_attn.o_proj.weight         [dim, n_heads * head_dim]
 *   layers.L.post_attention_layernorm.weight [dim]
 *   layers.L.mlp.gate_proj.weight            [hidden_dim, dim]
 *   layers.L.mlp.up_proj.weight              [hidden_dim, dim]
 *   layers.L.mlp.down_proj.weight            [dim, hidden_dim]
 *   norm.weight                              [dim]
 *   lm_head.weight                           [vocab, dim]  (absent when tied_embeddings)
 * The HDF5 path of a name is given by cce_store_path_of (store.h).
 *
 * Optional biases (Qwen2 q/k/v, structured-pruning compensation), see "Biases" below:
 *   layers.L.self_attn.{q,k,v,o}_proj.bias   [rows of the weight]  (k in rotate-half RoPE order)
 *   layers.L.mlp.{gate,up,down}_proj.bias    [rows of the weight]
 * They are not part of the tensor enumeration (cce_model_tensor_count / _name_at list the weights
 * above only): code that walks the weights sees exactly what it saw before biases existed. Read
 * them with cce_model_layer_bias. cce_model_tensor / cce_model_put_tensor also accept their
 * names. Parameter counts, saving, the digest and the forward pass include them.
 *
 * Not thread-safe: lazy loads mutate the model. Call cce_model_load_all before sharing a model
 * with threads. */
#ifndef CCE_MODEL_H
#define CCE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tensor.h"
#include "tokenizer.h"

typedef struct cce_config {
    int32_t dim;        /* residual stream width */
    int32_t hidden_dim; /* FFN width (per-layer values in cce_layer_shape) */
    int32_t n_layers;
    int32_t n_heads;    /* query heads (per-layer values in cce_layer_shape) */
    int32_t n_kv_heads; /* key/value heads (grouped-query attention) */
    int32_t head_dim;
    int32_t vocab_size;
    int32_t seq_len; /* maximum context */
    float rope_theta;
    float norm_eps;
    int32_t tied_embeddings; /* 1: the classifier is embed_tokens */
} cce_config;

/* One layer's widths. After structured compression they may differ from the config. */
typedef struct cce_layer_shape {
    int32_t hidden_dim;
    int32_t n_heads;
    int32_t n_kv_heads;
    int32_t *kv_of_head; /* [n_heads]: which kv head each query head reads; owned by the model */
    int32_t removed;     /* 1: the whole block is skipped (layer removal keeps numbering) */
} cce_layer_shape;

/* The tensors of one block, in a fixed order. */
typedef enum cce_layer_tensor {
    CCE_LT_ATTN_NORM = 0,
    CCE_LT_Q,
    CCE_LT_K,
    CCE_LT_V,
    CCE_LT_O,
    CCE_LT_FFN_NORM,
    CCE_LT_GATE,
    CCE_LT_UP,
    CCE_LT_DOWN,
    CCE_LT_COUNT
} cce_layer_tensor;

/* The tensors outside the blocks. */
typedef enum cce_global_tensor {
    CCE_GT_EMBED = 0,
    CCE_GT_NORM,
    CCE_GT_LM_HEAD, /* resolves to embed_tokens when tied */
    CCE_GT_COUNT
} cce_global_tensor;

typedef struct cce_model cce_model;

/* Checks a config for consistency (positive sizes, heads divisible, head_dim even, ...). The
 * message names the offending field and `origin` (a file name or "config"). Fails with
 * CCE_ERR_RANGE; readers of files report it as CCE_ERR_FORMAT. */
cce_status cce_config_validate(const cce_config *cfg, const char *origin);

/* New in-memory model with uniform layer shapes and every tensor allocated (zeros; norms are
 * zeros too: the caller fills them). No tokenizer yet. The caller owns *out (cce_model_free). */
cce_status cce_model_new(const cce_config *cfg, cce_model **out);

/* Opens a cce-model file lazily: reads the config, layer shapes, tokenizer and tensor index, but no
 * weights. The model keeps the file open until cce_model_free. The caller owns *out. */
cce_status cce_model_open(const char *path, cce_model **out);

void cce_model_free(cce_model *m);

/* Borrowed; valid for the model's lifetime. */
const cce_config *cce_model_config(const cce_model *m);
const cce_layer_shape *cce_model_layer(const cce_model *m, int layer);
/* The file the model was opened from, or NULL for an in-memory model. Borrowed. */
const char *cce_model_path(const cce_model *m);
/* Where the model came from (e.g. "llama2c:stories260K.bin"); "" if unknown. Borrowed. */
const char *cce_model_source(const cce_model *m);
void cce_model_set_source(cce_model *m, const char *source);

/* The tokenizer, or NULL if none. Borrowed. */
const cce_tokenizer *cce_model_tokenizer(const cce_model *m);
/* Takes ownership of tok (frees any previous tokenizer). */
void cce_model_set_tokenizer(cce_model *m, cce_tokenizer *tok);

/* Tensor access. The tensor is borrowed (owned by the model) and loaded from the file on first
 * use. CCE_ERR_NOT_FOUND names the tensor if the model has none of that name. */
cce_status cce_model_tensor(cce_model *m, const char *name, cce_tensor **out);
cce_status cce_model_layer_tensor(cce_model *m, int layer, cce_layer_tensor which,
                                  cce_tensor **out);
cce_status cce_model_global_tensor(cce_model *m, cce_global_tensor which, cce_tensor **out);

/* Replaces (or adds) a tensor; the model takes ownership of t. Used by importers and, later,
 * strategies. On failure (a name this model cannot hold, or a shape that disagrees with the
 * config and layer shapes: CCE_ERR_NOT_FOUND / CCE_ERR_ARG) t stays the caller's. Putting
 * lm_head.weight into a tied model unties it. */
cce_status cce_model_put_tensor(cce_model *m, const char *name, cce_tensor *t);

/* Encodings (encoding.h): how a compressed tensor is stored. The model always presents the dense
 * float32 tensor (decoded when it is read from a file) and keeps the encoding beside it, so that
 * cce_model_save writes the compressed form. cce_model_put_tensor drops a tensor's encoding. */
typedef struct cce_encoding cce_encoding;

/* Like cce_model_put_tensor, and the tensor is stored under enc (NULL: plain float32), whose
 * decoded values must be t's. The model takes ownership of both on success; on failure both stay
 * the caller's (CCE_ERR_ARG also for an encoding of another shape). */
cce_status cce_model_put_encoded(cce_model *m, const char *name, cce_tensor *t, cce_encoding *enc);

/* The encoding of tensor `name` (*out NULL: plain float32), loading the tensor if needed; a
 * variant's shared tensor has its base's. Borrowed, valid until the tensor is replaced. */
cce_status cce_model_tensor_encoding(cce_model *m, const char *name, const cce_encoding **out);

/* A description of tensor i's (enumeration order) encoding into buf: "dense", "sparse 2:4 50.0%",
 * "quant 4-bit group 64 asym". Reads attributes only for a tensor not loaded yet. */
cce_status cce_model_tensor_encoding_text(cce_model *m, size_t i, char *buf, size_t cap);

/* The name of a block tensor ("layers.3.mlp.down_proj.weight") into buf. */
void cce_layer_tensor_name(int layer, cce_layer_tensor which, char *buf, size_t bufsize);
const char *cce_global_tensor_name(cce_global_tensor which);

/* Enumerates the model's tensors in canonical order. Names are borrowed. */
size_t cce_model_tensor_count(const cce_model *m);

/* The sha256 (64 hex digits + NUL into hex) of what m computes with: config, layer shapes,
 * tokenizer fingerprint, every tensor's name, shape and values and then every bias's (loads
 * every tensor; a model without biases has the digest it had before biases existed). Equal
 * digests mean equal forward passes, whichever file the model came from (model_digest.c). */
cce_status cce_model_weights_sha256(cce_model *m, char hex[65]);
const char *cce_model_tensor_name_at(const cce_model *m, size_t i);
/* The shape of tensor i without loading it. */
void cce_model_tensor_shape_at(const cce_model *m, size_t i, int *ndim, int64_t shape[4]);

/* 1 if the tensor is in memory (always for in-memory models), 0 if it is still only in the file
 * or the model has no tensor of that name. Lets tests prove that opening is lazy. */
int cce_model_tensor_is_loaded(const cce_model *m, const char *name);

/* Reads every tensor and bias that is not loaded yet (so the model can be shared with threads). */
cce_status cce_model_load_all(cce_model *m);
/* Fails with CCE_ERR_NUMERIC naming the tensor if any weight or bias is NaN or Inf (loads all). */
cce_status cce_model_check_finite(cce_model *m);

/* Parameter counts: of one block (all its tensors and biases) and of the whole model (biases
 * included). */
int64_t cce_model_layer_params(const cce_model *m, int layer);
int64_t cce_model_total_params(const cce_model *m);

typedef struct cce_save_options {
    int deflate_level; /* 0: contiguous, uncompressed (default); 1-9: chunked shuffle+deflate */
} cce_save_options;

/* Writes the model (all tensors, loading lazily as needed) as a cce-model v1 file. The file is
 * written to a temporary name beside path and renamed into place, so an existing file is never
 * left half-written. opts may be NULL. */
cce_status cce_model_save(cce_model *m, const char *path, const cce_save_options *opts);

/* ---- Variants (variant.c) ------------------------------------------------------------------
 *
 * A variant is a model that starts as its base: same config, layer shapes and tokenizer, and
 * every tensor a borrowed view of the base's (loaded in the base, lazily, the first time the
 * variant asks for it). A tensor put into the variant (cce_model_put_tensor) is owned by the
 * variant alone and replaces the view there; the base is never modified through a variant, so
 * never write through a tensor for which cce_model_tensor_is_shared says 1 (copy it first, as
 * the compress driver does). A variant saves, evaluates and runs like any model; it may itself
 * be the base of another variant.
 *
 * Lifetime: the base must outlive all its variants, and its tensors must not be replaced
 * (cce_model_put_tensor on the base) while variants exist, since they hold views of them. */

/* New variant of base (borrowed). The caller owns *out (cce_model_free, before freeing base). */
cce_status cce_model_variant_new(cce_model *base, cce_model **out);

/* The base of a variant (borrowed), or NULL for a model that is not a variant. */
cce_model *cce_model_base(const cce_model *m);

/* 1 if m is a variant and its tensor `name` is still the base's (a view or not yet asked for);
 * 0 if the variant owns it, m is not a variant, or there is no such tensor. */
int cce_model_tensor_is_shared(const cce_model *m, const char *name);

/* Number of tensors (weights and biases) a variant owns (those put into it); 0 for other models. */
size_t cce_model_owned_tensor_count(const cce_model *m);

/* ---- Biases (model_bias.c) -----------------------------------------------------------------
 *
 * A block's linear tensors may each have a bias, out = W x + b (q/k biases are added before
 * RoPE). All optional: a model without biases computes exactly what it computed before they
 * existed, and its file is the same. A removed layer has none. Biases are plain float32 (never
 * encoded), loaded lazily like weights, shared by variants like weights. */
typedef enum cce_layer_bias {
    CCE_LB_Q = 0,
    CCE_LB_K,
    CCE_LB_V,
    CCE_LB_O,
    CCE_LB_GATE,
    CCE_LB_UP,
    CCE_LB_DOWN,
    CCE_LB_COUNT
} cce_layer_bias;

/* "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj" ("" for a bad
 * value). Static. */
const char *cce_layer_bias_proj(cce_layer_bias which);
/* The weight a bias belongs to (CCE_LB_Q -> CCE_LT_Q, ...); CCE_LT_COUNT for a bad value. */
cce_layer_tensor cce_layer_bias_weight(cce_layer_bias which);
/* The bias of a weight (CCE_LT_Q -> CCE_LB_Q, ...); CCE_LB_COUNT for the norms. */
cce_layer_bias cce_layer_bias_of_weight(cce_layer_tensor which);
/* The length of bias `which` of a layer of shape ls: its weight's rows (q: n_heads x head_dim,
 * k/v: n_kv_heads x head_dim, gate/up: hidden_dim, o/down: dim). No allocation. */
int64_t cce_layer_bias_rows(const cce_config *c, const cce_layer_shape *ls, cce_layer_bias which);
/* The name of a bias ("layers.3.self_attn.q_proj.bias") into buf. */
void cce_layer_bias_name(int layer, cce_layer_bias which, char *buf, size_t bufsize);

/* 1 if layer `layer` has that bias (no load); 0 otherwise, also for bad arguments. */
int cce_model_has_layer_bias(const cce_model *m, int layer, cce_layer_bias which);
/* The bias [rows] or *out = NULL when absent (CCE_OK). Borrowed, lazily loaded like weights.
 * CCE_ERR_NOT_FOUND for a layer or kind outside the model. */
cce_status cce_model_layer_bias(cce_model *m, int layer, cce_layer_bias which, cce_tensor **out);
/* Sets (takes ownership of t, also on failure) or removes (t == NULL) a bias. CCE_ERR_ARG names
 * the tensor when t is not 1-D or its length does not match the weight's rows; CCE_ERR_NUMERIC
 * for NaN/Inf values; CCE_ERR_STATE for a removed layer; CCE_ERR_NOT_FOUND for a layer or kind
 * outside the model. In a variant the base is untouched. */
cce_status cce_model_set_layer_bias(cce_model *m, int layer, cce_layer_bias which, cce_tensor *t);
/* Number of biases the model has (all layers). */
size_t cce_model_bias_count(const cce_model *m);

/* ---- Layer shapes (model_shape.c) ----------------------------------------------------------
 *
 * Structured compression changes a layer's widths. Since cce_model_put_tensor checks shapes
 * against the layer shapes, the widths and the tensors of the new widths change in one call. */

/* Gives layer `layer` new widths and puts its tensors of the new shapes. shape: hidden_dim in
 * [1, config hidden_dim], n_heads in [1, config n_heads], n_kv_heads in [1, config n_kv_heads],
 * kv_of_head [n_heads] with values in [0, n_kv_heads) (copied; `removed` must be 0: use
 * cce_model_remove_layer). tensors [CCE_LT_COUNT], indexed by cce_layer_tensor (NULL array: none
 * given): a new tensor, or NULL to keep the current one, whose shape must then also fit the new
 * widths. On success the model owns every given tensor and frees the ones they replace (in a
 * variant the base is untouched); on failure (CCE_ERR_ARG / CCE_ERR_RANGE naming the layer and the
 * field or tensor; CCE_ERR_STATE for a removed layer) nothing changes and the tensors stay the
 * caller's. */
cce_status cce_model_reshape_layer(cce_model *m, int layer, const cce_layer_shape *shape,
                                   cce_tensor *const *tensors);

/* The same with the layer's biases: biases [CCE_LB_COUNT], indexed by cce_layer_bias (NULL
 * array: none given), a new bias [rows under the new widths] or NULL to keep the current one (if
 * any), whose length must then also fit. cce_model_reshape_layer keeps every bias, so a bias of a
 * resized q/k/v/gate/up fails it (CCE_ERR_ARG naming the bias). Ownership as for tensors. */
cce_status cce_model_reshape_layer_biases(cce_model *m, int layer, const cce_layer_shape *shape,
                                          cce_tensor *const *tensors, cce_tensor *const *biases);

/* Removes block `layer` (ShortGPT): marks it removed, so the forward pass skips it and the store
 * writes it without tensors, and drops its tensors and biases (numbering is kept). Its widths are
 * kept. CCE_ERR_RANGE for a layer outside the model; removing a removed layer again is CCE_OK. */
cce_status cce_model_remove_layer(cce_model *m, int layer);

#endif
