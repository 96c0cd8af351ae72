/* The HDF5 model file, format "cce-model" version 1 (DESIGN section 4).
 *
 * Layout:
 *   /                       attributes: format="cce-model", format_version=1, arch="llama",
 *                           dim, hidden_dim, n_layers, n_heads, n_kv_heads, head_dim, vocab_size,
 *                           seq_len (int32), rope_theta, norm_eps (float32), tied_embeddings
 *                           (int32), source (string)
 *   /model/embed_tokens/weight, /model/norm/weight, /lm_head/weight (absent when tied)
 *   /model/layers/NN/...    one group per layer (NN zero-padded to at least 2 digits), with
 *                           attributes hidden_dim, n_heads, n_kv_heads, kv_of_head[n_heads],
 *                           removed; tensors .../self_attn/q_proj/weight etc.
 *                           Optional biases (model.h "Biases"), float32 [rows] datasets beside
 *                           their weights: .../self_attn/{q,k,v,o}_proj/bias and
 *                           .../mlp/{gate,up,down}_proj/bias (never in a removed layer). A file
 *                           without them is read as a model without biases, so older files open
 *                           unchanged and a model without biases writes the same datasets as
 *                           before.
 *   /tokenizer              type="llama2c-bpe", pieces (UTF-8 strings), scores (float32),
 *                           attributes bos_id, eos_id, unk_id; type="hf-bpe" adds kind,
 *                           pretokenizer, flags, pad_id, n_padding, merges, added_ids,
 *                           added_flags
 *                           (tokenizer_store.c, framework/README.md)
 * String attributes and the pieces are written as fixed-length UTF-8 strings (the pieces
 * NUL-padded, chunked, deflate + Fletcher-32): variable-length strings live in the global heap,
 * whose references libhdf5 1.10 follows unchecked, so a corrupted file could crash it. The
 * reader accepts both forms. Files use the HDF5 1.8 object formats (checksummed metadata).
 * Tensors are float32 datasets in PyTorch [out, in] order, contiguous and uncompressed unless
 * deflate was asked for (then chunked by row blocks, shuffle + deflate). Every tensor dataset
 * carries `encoding` = "dense".
 *
 * A compressed tensor (encoding.h) is instead a GROUP at the tensor's path, with attributes
 * `encoding` ("sparse", "quant", "sparse+quant" or "lowrank") and `shape` (int64 [ndim]), and 1-D
 * contiguous datasets (never deflated; the lowrank factors are 2-D):
 *   sparse part   attributes pattern ("mask" or "N:M", e.g. "2:4"), kept (int64: weights
 *                 stored), sparsity (float64: 1 - kept / numel); dataset `mask` (uint8
 *                 [ceil(numel / 8)], bit i % 8 of byte i / 8 = weight i, row-major) or `indices`
 *                 (uint8 [ceil(kept * ceil(log2 M) / 8)], packed in-group positions);
 *                 `values` (float32 [kept]) when the values are not quantized;
 *   quant part    attributes bits (int32), group_size (int64: weights per group along a row; the
 *                 row width for "channel", rows * cols for "tensor"), symmetric (int32 0/1),
 *                 scheme ("tensor", "channel" or "group"); datasets `codes` (uint8, the packed
 *                 codes of every weight, or of the kept ones only with a sparse part, quant.h's
 *                 bit stream), `scales` (uint16 [n_groups]: IEEE binary16 bit patterns, groups
 *                 row-major), `zeros` (uint8, n_groups values packed at the code width; only when
 *                 asymmetric);
 *   lowrank       attribute rank (int64 r >= 1); datasets `a` (float32 [out, r]) and `b`
 *                 (float32 [r, in]); the tensor is their product (cce_encoding_lowrank_product).
 * Readers check every size against `shape` and fail with CCE_ERR_FORMAT naming the tensor.
 *
 * Every HDF5 failure becomes CCE_ERR_HDF5 (or CCE_ERR_FORMAT for a file that is not a cce-model)
 * with the file name and object path in the detail message. */
#ifndef CCE_STORE_H
#define CCE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "status.h"
#include "tensor.h"
#include "tokenizer.h"

typedef struct cce_encoding cce_encoding; /* encoding.h */

/* Turns off libhdf5's automatic error printing (the library reports through cce_status instead).
 * Idempotent and thread-safe; every store function calls it, programs may call it early. */
void cce_hdf5_init(void);

/* The HDF5 path of a tensor name: "layers.3.mlp.down_proj.weight" -> "/model/layers/03/mlp/
 * down_proj/weight" (zero-padded to the digits of n_layers - 1, at least 2), "lm_head.weight" ->
 * "/lm_head/weight", other names -> "/model/" + name with dots as slashes. */
void cce_store_path_of(const char *name, int n_layers, char *buf, size_t bufsize);

/* ---- Reading ------------------------------------------------------------------------------ */

typedef struct cce_store cce_store;

/* Opens a cce-model file read-only and checks format and format_version. A missing file is
 * CCE_ERR_IO; a corrupt file or wrong format is CCE_ERR_FORMAT. The caller owns *out. */
cce_status cce_store_open(const char *path, cce_store **out);
void cce_store_close(cce_store *s);
const char *cce_store_filename(const cce_store *s); /* borrowed */

/* Root attributes. *source is malloc'd (caller frees). The config is validated. */
cce_status cce_store_read_config(cce_store *s, cce_config *cfg, char **source);

/* One layer's attributes. shape->kv_of_head is malloc'd (caller frees). */
cce_status cce_store_read_layer_shape(cce_store *s, const cce_config *cfg, int layer,
                                      cce_layer_shape *shape);

/* 1 if the file has a /tokenizer group (a model saved without a tokenizer has none). */
int cce_store_has_tokenizer(cce_store *s);

/* The tokenizer stored in the file. The caller owns *out. CCE_ERR_FORMAT if absent. */
cce_status cce_store_read_tokenizer(cce_store *s, cce_tokenizer **out);

/* Shape of a tensor without reading it; CCE_ERR_NOT_FOUND if the file has no such tensor. */
cce_status cce_store_tensor_shape(cce_store *s, int n_layers, const char *name, int *ndim,
                                  int64_t shape[CCE_TENSOR_MAX_DIMS]);

/* Reads a whole tensor (an encoded one densified). The caller owns *out. */
cce_status cce_store_read_tensor(cce_store *s, int n_layers, const char *name, cce_tensor **out);

/* Reads a whole tensor and, when it is stored encoded, its encoding (*enc NULL for a plain
 * dataset; enc may be NULL). The caller owns both. A corrupt encoding (any dataset size, type or
 * value that disagrees with the recorded shape) is CCE_ERR_FORMAT naming file and tensor. */
cce_status cce_store_read_encoded(cce_store *s, int n_layers, const char *name, cce_tensor **out,
                                  cce_encoding **enc);

/* "dense", or a description of the tensor's encoding from its attributes only (no data read). */
cce_status cce_store_tensor_encoding_text(cce_store *s, int n_layers, const char *name, char *buf,
                                          size_t cap);

/* ---- Writing ------------------------------------------------------------------------------ */

typedef struct cce_store_writer cce_store_writer;

/* Starts a new file that will appear at final_path only on cce_store_commit; until then it is
 * written under a temporary name in the same folder. opts may be NULL (defaults). */
cce_status cce_store_create(const char *final_path, const cce_save_options *opts,
                            cce_store_writer **out);
cce_status cce_store_write_config(cce_store_writer *w, const cce_config *cfg, const char *source);
cce_status cce_store_write_layer_shape(cce_store_writer *w, const cce_config *cfg, int layer,
                                       const cce_layer_shape *shape);
cce_status cce_store_write_tokenizer(cce_store_writer *w, const cce_tokenizer *tok);
cce_status cce_store_write_tensor(cce_store_writer *w, int n_layers, const char *name,
                                  const cce_tensor *t);
/* Writes tensor t stored under encoding e (a group, see encoding.h and the layout above); e NULL
 * writes the plain dataset. e must describe t (its decoded values are t's). */
cce_status cce_store_write_encoded(cce_store_writer *w, int n_layers, const char *name,
                                   const cce_tensor *t, const cce_encoding *e);
/* Closes, fsyncs and renames the file into place, then fsyncs the folder. Frees w in all cases;
 * on failure the temporary file is removed and any existing file at final_path is untouched. */
cce_status cce_store_commit(cce_store_writer *w);
/* Abandons the file: closes and removes the temporary file. Frees w. */
void cce_store_abort(cce_store_writer *w);

#endif
