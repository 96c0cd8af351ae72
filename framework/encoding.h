/* How a compressed tensor is stored (DESIGN section 4): a sparse pattern, a quantized payload, or
 * both composed, or a low-rank pair. A model presents the densified float32 tensor
 * (cce_encoding_decode) and keeps the encoding beside it so that saving writes the compressed
 * form; the forward pass uses the dense tensor, except for lowrank encodings (run natively).
 *
 * Kinds (cce_encoding_name):
 *   "sparse"        a pattern of stored weights and their float32 values;
 *   "quant"         every weight quantized (framework/quant.h grid and packing);
 *   "sparse+quant"  a pattern, and only the stored weights' codes (the quantizer saw only the
 *                   kept values; its scales and zeros are per group of the full [rows, cols]
 *                   layout, so a weight's group is that of its position);
 *   "lowrank"       a rank-r factorisation W = A B, A [rows, r] and B [r, cols] in float32
 *                   (strategies/lowrank.h); it decodes to cce_encoding_lowrank_product, and the
 *                   forward pass runs such a linear tensor as two products (x B^T) A^T.
 * A tensor stored as a plain float32 dataset has no encoding (NULL).
 *
 * Patterns:
 *   mask  1 bit per weight, row-major over [rows, cols]: weight i is stored iff bit (i % 8)
 *         (LSB = 0) of byte i / 8 is set; unused bits of the last byte are 0. The mask of a
 *         pruned tensor marks its non-zero weights (bit pattern != 0, so a -0.0 is kept).
 *   N:M   every group of M consecutive weights along a row (a ragged last group of len < M
 *         keeps ceil(N * len / M)) stores exactly its quota of weights; each stored weight has
 *         its position inside the group, packed at ceil(log2 M) bits (quant.h's bit-stream
 *         rule), increasing inside a group, groups row-major. M is at most 256; a tensor whose
 *         group holds more non-zeros than its quota is not N:M (CCE_ERR_ARG).
 * Weights outside the pattern are exactly 0 (+0.0f); in a sparse+quant encoding their codes in
 * memory are their group's zero code, so cce_quant_decode of the payload alone is the tensor.
 *
 * Bytes (cce_encoding_stored_bytes: what the file's datasets hold):
 *   sparse        4 * kept + mask bytes (ceil(numel / 8)) or index bytes (ceil(kept * ib / 8));
 *   quant         packed codes of all weights + 2 * n_groups (fp16 scales) + packed zeros
 *                 (asymmetric only);
 *   sparse+quant  packed codes of the kept weights + mask or index bytes + scales + zeros;
 *   lowrank       4 * r * (rows + cols).
 * These are exactly the numbers of cce_sparse_encoded_bytes and cce_quant_encoded_bytes for the
 * forms they describe. */
#ifndef CCE_ENCODING_H
#define CCE_ENCODING_H

#include <stddef.h>
#include <stdint.h>

#include "quant.h"
#include "status.h"
#include "tensor.h"

#define CCE_ENCODING_NM_MAX_M 256 /* N:M index patterns up to M = 256 (8-bit positions) */

typedef enum cce_sparse_pattern {
    CCE_SPARSE_NONE = 0, /* no pattern: every weight is stored */
    CCE_SPARSE_MASK,
    CCE_SPARSE_NM
} cce_sparse_pattern;

typedef struct cce_encoding {
    int64_t rows, cols; /* the tensor's 2-D view [rows, cols] */
    int ndim;           /* the tensor's rank and shape (1-D tensors are [1, n]) */
    int64_t shape[CCE_TENSOR_MAX_DIMS];
    cce_sparse_pattern pattern;
    int nm_n, nm_m;            /* CCE_SPARSE_NM */
    int64_t kept;              /* stored weights (rows * cols without a pattern) */
    uint8_t *mask;             /* MASK: [ceil(rows * cols / 8)] */
    uint8_t *index;            /* NM: [ceil(kept * index_bits / 8)] packed in-group positions */
    float *values;             /* sparse without quant: [kept] in row-major order */
    cce_quant_encoding *quant; /* quant payload or NULL; codes of every weight in memory */
    int lowrank;               /* 1: a low-rank pair (no pattern, no quant payload) */
    int64_t rank;              /* lowrank: r >= 1 */
    float *a;                  /* lowrank: [rows, rank] */
    float *b;                  /* lowrank: [rank, cols] */
} cce_encoding;

/* "sparse", "quant", "sparse+quant" or "lowrank". Static. */
const char *cce_encoding_name(const cce_encoding *e);

/* Bits of an N:M in-group position: ceil(log2 m) (0 for m = 1). */
int cce_encoding_index_bits(int m);

/* How many weights of a row of `cols` an N:M pattern keeps (ragged last group included). */
int64_t cce_encoding_nm_row_quota(int64_t cols, int n, int m);

/* A sparse encoding of the pruned tensor t: with nm_m > 0 the N:M pattern (each group's
 * non-zeros, topped up with its earliest zeros to the quota), else the mask of non-zeros.
 * CCE_ERR_ARG naming the tensor (`what`) if t does not follow N:M or the pattern is invalid.
 * The caller owns *out (cce_encoding_free). */
cce_status cce_encoding_new_sparse(const cce_tensor *t, int nm_n, int nm_m, const char *what,
                                   cce_encoding **out);

/* A quant encoding of a tensor of t's shape that takes ownership of q (also on failure).
 * CCE_ERR_ARG if q's shape is not t's 2-D view. The caller owns *out. */
cce_status cce_encoding_new_quant(cce_quant_encoding *q, int ndim, const int64_t *shape,
                                  cce_encoding **out);

/* Turns a quant encoding into sparse+quant: the pattern of `w` [rows * cols] (its non-zeros,
 * N:M when nm_m > 0, as cce_encoding_new_sparse), and every code outside the pattern set to its
 * group's zero code. `w` is the tensor whose zeros are the pruned weights (the input of the
 * quantizer). CCE_ERR_ARG naming `what` as above. */
cce_status cce_encoding_add_pattern(cce_encoding *e, const float *w, int nm_n, int nm_m,
                                    const char *what);

/* Writes the dense float32 values into out [rows * cols]. CCE_ERR_NOMEM only. */
cce_status cce_encoding_decode(const cce_encoding *e, float *out);

/* Bytes the encoding's datasets hold (header comment). */
int64_t cce_encoding_stored_bytes(const cce_encoding *e);

/* Bytes of the packed codes as stored (the kept codes only with a pattern). */
int64_t cce_encoding_code_bytes(const cce_encoding *e);
/* Bytes of the mask or the N:M indices (0 without a pattern). */
int64_t cce_encoding_pattern_bytes(const cce_encoding *e);

/* A one-line description into buf: "quant 4-bit group 64 asym", "sparse 2:4 50.0%",
 * "sparse mask 50.0% + quant 8-bit channel sym" (the percentage: weights not stored). */
void cce_encoding_describe(const cce_encoding *e, char *buf, size_t cap);

/* Per-position stored flags of the pattern: keep [rows * cols] gets 1 where a weight is stored
 * (every flag 1 without a pattern). Checks the pattern: the mask's popcount and unused bits, the
 * N:M indices (inside their group, increasing, the quota of every group); CCE_ERR_FORMAT naming
 * `what` if it is inconsistent (a corrupt file). */
cce_status cce_encoding_pattern_flags(const cce_encoding *e, uint8_t *keep, const char *what);

/* Drops the pattern (the payload then stores every weight: quant codes are kept in full in
 * memory, so only the pattern goes). For quant encodings only; sparse ones are left alone. */
void cce_encoding_drop_pattern(cce_encoding *e);

/* Builds the pattern part (mask or indices, kept) from per-position flags keep [rows * cols];
 * with nm_m > 0 each group must hold exactly its quota of flags. Replaces any pattern e had
 * (values are not touched). CCE_ERR_FORMAT / CCE_ERR_ARG naming `what` otherwise. */
cce_status cce_encoding_set_flags(cce_encoding *e, const uint8_t *keep, int nm_n, int nm_m,
                                  const char *what);

/* A lowrank encoding of a 2-D tensor [shape[0], shape[1]] from copies of a [rows, rank] and
 * b [rank, cols] (borrowed). CCE_ERR_ARG naming `what` for a rank below 1 or a shape that is not
 * 2-D; CCE_ERR_NOMEM. The caller owns *out (cce_encoding_free). (encoding_lowrank.c) */
cce_status cce_encoding_new_lowrank(const float *a, const float *b, int64_t rank, int ndim,
                                    const int64_t *shape, const char *what, cce_encoding **out);

/* out [rows, cols] = A B for a [rows, rank] and b [rank, cols] (rank 0: zeros): the factors
 * widened to double, one cblas_dgemm, each entry rounded to float32 once. The lowrank strategy
 * computes its dense result with this function, so decoding a stored pair reproduces it bit for
 * bit. CCE_ERR_NOMEM naming `what` only. (encoding_lowrank.c) */
cce_status cce_encoding_lowrank_product(const float *a, const float *b, int64_t rows, int64_t rank,
                                        int64_t cols, const char *what, float *out);

void cce_encoding_free(cce_encoding *e);

#endif
