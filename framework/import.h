/* Importers: checkpoints of other formats into in-memory models (then cce_model_save). */
#ifndef CCE_IMPORT_H
#define CCE_IMPORT_H

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

#endif
