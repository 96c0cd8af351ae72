/* Importers: checkpoints of other formats into in-memory models (then cce_model_save). */
#ifndef CCE_IMPORT_H
#define CCE_IMPORT_H

#include <stdint.h>

#include "model.h"
#include "status.h"

/* Reads a llama2.c v0 checkpoint (7 int32 header fields, then float32 weights; a negative
 * vocab_size means an untied classifier stored at the end) and its tokenizer.bin.
 *
 * The header is validated and the exact file size it implies is checked before any weight is
 * read: a truncated file or trailing bytes is CCE_ERR_FORMAT naming the file and both sizes.
 * q_proj/k_proj rows are permuted from llama2.c's interleaved RoPE pairs (2i, 2i+1) to the
 * rotate-half order (i, i + head_dim/2) the store uses. NaN/Inf weights are CCE_ERR_NUMERIC
 * naming the tensor. rope_theta = 10000, norm_eps = 1e-5; source "llama2c:<basename>".
 * The caller owns *out (cce_model_free). */
cce_status cce_import_llama2c(const char *model_bin, const char *tokenizer_bin, cce_model **out);

/* Reads a Hugging Face checkpoint folder: config.json (LlamaForCausalLM, MistralForCausalLM
 * without a binding sliding window, Qwen2ForCausalLM) and model.safetensors, or the shards named
 * by model.safetensors.index.json. F32, F16 and BF16 tensors are upcast to float32 (exactly) and
 * the source dtype is recorded in the model's source ("hf:<folder> <DTYPE>"). Tensor data is read
 * from memory-mapped files. HF checkpoints already use the rotate-half RoPE order, so q/k rows and
 * q/k biases are taken as they are.
 *
 * Biases become the model's layer biases (model.h): Qwen2's q/k/v biases (each optional), and
 * with attention_bias true the q, k, v, o biases, with mlp_bias true the gate, up, down biases
 * (all required then; a bias the flags do not announce is an unexpected tensor). A bias of zeros
 * is the same as none and is not kept, so a model exported with zero-filled biases comes back
 * without them.
 *
 * Structurally compressed models exported by cce_export_hf: "cce_layer_shapes" gives each
 * checkpoint layer its widths and kv grouping, "cce_removed_layers" the original indices of
 * removed layers (the checkpoint's layers are renumbered around them) and
 * "cce_removed_layer_shapes" their widths; the model gets its original numbering back, with
 * those layers marked removed, so its weights digest is the exported model's. Both are validated
 * (array lengths, widths within the uniform fields, kv_of_head within the layer's kv heads,
 * strictly increasing indices): CCE_ERR_FORMAT naming config.json and the field (e.g.
 * "cce_layer_shapes[2].kv_of_head[1] = 5 is outside [0, 1]"); tensor shapes must match them.
 *
 * Errors: CCE_ERR_FORMAT naming config.json and the field for an unsupported architecture,
 * rope_scaling, hidden_act, a bad note or a missing field; naming the file and tensor for a
 * missing, unexpected or misshaped tensor; CCE_ERR_IO naming a missing shard; CCE_ERR_NUMERIC for
 * NaN/Inf weights or biases, naming the tensor.
 *
 * The tokenizer: tokenizer_bin (a llama2.c tokenizer.bin) when not NULL; else dir/tokenizer.json
 * (+ tokenizer_config.json, see tokenizer_hf.h) when present; else the model has none. The
 * caller owns *out (cce_model_free). */
cce_status cce_import_hf(const char *dir, const char *tokenizer_bin, cce_model **out);

/* Parses a Hugging Face config.json into *cfg (validated) with the rules of cce_import_hf:
 * the config of the model cce_import_hf builds, so n_layers counts the layers of
 * cce_removed_layers too. *arch (may be NULL) receives the architecture's index: 0 Llama,
 * 1 Mistral, 2 Qwen2. */
cce_status cce_hf_read_config(const char *config_json, cce_config *cfg, int *arch);

/* ---- Exporters (export_hf.c, export_llama2c.c) -------------------------------------------- */

typedef struct cce_export_hf_options {
    int dtype;            /* a cce_st_dtype (safetensors.h): CCE_ST_F32 (0, default), F16, BF16 */
    uint64_t shard_bytes; /* 0: one model.safetensors; else shards of at most this many bytes of
                           * data (a larger tensor gets a shard of its own) + the index */
} cce_export_hf_options;

/* Writes m as a Hugging Face folder dir (created if missing; its parent must exist):
 * config.json, model.safetensors or model-0000i-of-0000n.safetensors with
 * model.safetensors.index.json (a stale index or unsharded file of the other layout is removed),
 * and, when m has a tokenizer, tokenizer.bin in llama2.c format plus tokenizer.json and
 * tokenizer_config.json (tokenizer_hf.h). Every file is written to a temporary name and renamed.
 * opts may be NULL.
 *
 * Architecture and biases: a model whose biases are on q/k/v only is written as
 * Qwen2ForCausalLM; otherwise LlamaForCausalLM with attention_bias true when any layer has a
 * q, k, v or o bias and mlp_bias true when any has a gate, up or down bias. Transformers then
 * expects the whole set in every layer, so the biases a layer lacks are written as zeros.
 *
 * Structurally compressed models (model.h, "Layer shapes"): tensors are written with each layer's
 * own shapes, and config.json keeps the uniform fields (intermediate_size, num_attention_heads,
 * num_key_value_heads: the config's) plus a note for cce_import_hf:
 *   "cce_layer_shapes": [{"intermediate_size", "num_attention_heads", "num_key_value_heads",
 *                         "kv_of_head": [...]}, ...]   one per written layer, when any differs;
 *   "cce_removed_layers": [original indices]   removed layers are left out and the others
 *                                              renumbered (num_hidden_layers = those written);
 *   "cce_removed_layer_shapes": [{...}, ...]  one per removed layer, only when one of them had
 *                                              been narrowed before its removal;
 *   "cce_note": a sentence saying so (stock transformers cannot load per-layer widths).
 * CCE_ERR_ARG when every layer is removed. */
cce_status cce_export_hf(cce_model *m, const char *dir, const cce_export_hf_options *opts);

/* Writes m as a llama2.c v0 checkpoint (q/k rows permuted back to interleaved pairs, legacy
 * freq_cis tables computed from rope_theta) and, if tokenizer_bin is not NULL, its tokenizer in
 * tokenizer.bin format. Needs uniform layer shapes, no biases, dim == n_heads * head_dim,
 * rope_theta 10000 and norm_eps 1e-5 (what the format implies): CCE_ERR_ARG names the layer,
 * bias or field otherwise. Both files are written to temporary names and renamed. */
cce_status cce_export_llama2c(cce_model *m, const char *model_bin, const char *tokenizer_bin);

/* Writes tok as a llama2.c tokenizer.bin (temporary name + rename). */
cce_status cce_export_llama2c_tokenizer(const cce_tokenizer *tok, const char *path);

#endif
