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
 * without a binding sliding window, Qwen2ForCausalLM whose q/k/v biases are all zero) and
 * model.safetensors, or the shards named by model.safetensors.index.json. F32, F16 and BF16
 * tensors are upcast to float32 (exactly) and the source dtype is recorded in the model's source
 * ("hf:<folder> <DTYPE>"). Tensor data is read from memory-mapped files. HF checkpoints already
 * use the rotate-half RoPE order, so q/k rows are taken as they are.
 *
 * Errors: CCE_ERR_FORMAT naming config.json and the field for an unsupported architecture,
 * rope_scaling, hidden_act, attention/MLP biases or a missing field; naming the file and tensor
 * for a missing, unexpected or misshaped tensor; CCE_ERR_IO naming a missing shard;
 * CCE_ERR_NUMERIC for NaN/Inf weights.
 *
 * The tokenizer: tokenizer_bin (a llama2.c tokenizer.bin) when not NULL; else dir/tokenizer.json
 * (+ tokenizer_config.json, see tokenizer_hf.h) when present; else the model has none. The
 * caller owns *out (cce_model_free). */
cce_status cce_import_hf(const char *dir, const char *tokenizer_bin, cce_model **out);

/* Parses a Hugging Face config.json into *cfg (validated) with the rules of cce_import_hf.
 * *arch receives the architecture's index: 0 Llama, 1 Mistral, 2 Qwen2. */
cce_status cce_hf_read_config(const char *config_json, cce_config *cfg, int *arch);

/* ---- Exporters (export_hf.c, export_llama2c.c) -------------------------------------------- */

typedef struct cce_export_hf_options {
    int dtype;            /* a cce_st_dtype (safetensors.h): CCE_ST_F32 (0, default), F16, BF16 */
    uint64_t shard_bytes; /* 0: one model.safetensors; else shards of at most this many bytes of
                           * data (a larger tensor gets a shard of its own) + the index */
} cce_export_hf_options;

/* Writes m as a Hugging Face folder dir (created if missing; its parent must exist):
 * config.json (LlamaForCausalLM), model.safetensors or model-0000i-of-0000n.safetensors with
 * model.safetensors.index.json (a stale index or unsharded file of the other layout is removed),
 * and, when m has a tokenizer, tokenizer.bin in llama2.c format plus tokenizer.json and
 * tokenizer_config.json (tokenizer_hf.h). Every file is written to a temporary name and renamed.
 * Needs uniform layer shapes (no structured compression): CCE_ERR_ARG names the layer otherwise.
 * opts may be NULL. */
cce_status cce_export_hf(cce_model *m, const char *dir, const cce_export_hf_options *opts);

/* Writes m as a llama2.c v0 checkpoint (q/k rows permuted back to interleaved pairs, legacy
 * freq_cis tables computed from rope_theta) and, if tokenizer_bin is not NULL, its tokenizer in
 * tokenizer.bin format. Needs uniform layer shapes, dim == n_heads * head_dim, rope_theta 10000
 * and norm_eps 1e-5 (what the format implies): CCE_ERR_ARG names the field otherwise. Both files
 * are written to temporary names and renamed. */
cce_status cce_export_llama2c(cce_model *m, const char *model_bin, const char *tokenizer_bin);

/* Writes tok as a llama2.c tokenizer.bin (temporary name + rename). */
cce_status cce_export_llama2c_tokenizer(const cce_tokenizer *tok, const char *path);

#endif
