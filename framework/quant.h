/* The quantization grid that round-to-nearest (strategies/rtn.c), GPTQ (strategies/gptq.c) and
 * SparseGPT's joint mode share, and the packed code encoding (DESIGN sections 4 and 5).
 *
 * Grid, for b in [2, 8] bits, maxq = 2^b - 1, over a group's range [lo, hi] where
 * lo = min(min w, 0) and hi = max(max w, 0) (the range always holds 0, so an exact zero, e.g. a
 * weight an earlier pruning removed, always quantizes to exactly 0 and never moves a scale):
 *   symmetric   qmax = 2^(b-1) - 1, scale = fp16(max(-lo, hi) / qmax), zero = 2^(b-1) (implied,
 *               not stored); the codes used are 2^(b-1) - qmax .. 2^(b-1) + qmax, symmetric about
 *               the offset (code 0 only if the fp16 rounding of the scale clips the most negative
 *               weight);
 *   asymmetric  scale = fp16((hi - lo) / maxq), zero = clamp(rint(-lo / scale), 0, maxq), stored.
 *   Both        code = clamp(rint(w * inv) + zero, 0, maxq),  w' = (code - zero) * scale,
 *               inv = 1 / scale (a float reciprocal: no per-weight division).
 * Arithmetic is float; the quotient before fp16 rounding is computed in float; fp16(x) rounds to
 * the nearest half-precision value (ties to even), so the scale in memory is exactly the stored
 * one and a saved tensor dequantizes bit for bit like the in-memory one. rint rounds half to even
 * (the default IEEE mode), as GPTQ's reference (torch.round) does. A group whose values are all
 * zero, or whose scale underflows fp16, gets scale 0 and inv 0: every code is `zero` and every
 * value dequantizes to 0 (no NaN). A scale above the fp16 maximum (65504) is an error.
 *
 * Granularity (one scale, and one zero when asymmetric, per group):
 *   tensor   one group for the whole tensor;
 *   channel  one group per output row;
 *   group    each row is cut into groups of `group` consecutive weights along the input; a row
 *            width the group size does not divide gets a shorter last group (width 172 with group
 *            64: 64, 64, 44). Any group size >= 1 is accepted; a group size >= the width is
 *            per-channel quantization stored as groups.
 * Groups are numbered row-major: group (r, c / group) is r * ceil(cols / group) + c / group.
 *
 * Packing: a sequence of b-bit values (codes, or asymmetric zeros) is one little-endian bit
 * stream: value i occupies stream bits [i * b, i * b + b), stream bit k is bit (k % 8) (LSB = 0)
 * of byte k / 8, and value bit 0 comes first. A tensor's codes are packed row-major as one stream
 * of rows * cols values; unused bits of the last byte are 0. ceil(n * b / 8) bytes.
 *
 * Bytes of an encoded tensor (cce_quant_encoded_bytes), the numbers reports show:
 *   codes    ceil(numel * b / 8), or, when some weights are pruned (kept < numel), the smaller of
 *            that and the sparse form: codes of the kept weights only plus a 1-bit-per-weight mask
 *            (ceil(numel / 8)) or, for an N:M pattern, ceil(log2 M) index bits per kept weight
 *            (the same rule as cce_sparse_encoded_bytes);
 *   scales   2 bytes (fp16) per group;
 *   zeros    ceil(n_groups * b / 8) when asymmetric.
 * Bits per weight = 8 * bytes / numel. */
#ifndef CCE_QUANT_H
#define CCE_QUANT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define CCE_QUANT_MIN_BITS 2
#define CCE_QUANT_MAX_BITS 8

typedef enum cce_quant_granularity {
    CCE_QUANT_TENSOR = 0,
    CCE_QUANT_CHANNEL,
    CCE_QUANT_GROUP
} cce_quant_granularity;

/* How a tensor is quantized. */
typedef struct cce_quant_spec {
    int bits;                          /* 2..8 */
    int symmetric;                     /* 1: symmetric grid (zero implied), 0: asymmetric */
    cce_quant_granularity granularity; /* tensor, channel or group */
    int64_t group;                     /* CCE_QUANT_GROUP: weights per group along a row, >= 1 */
} cce_quant_spec;

/* The parameters of one group, as used (scale already rounded to fp16). */
typedef struct cce_quant_group {
    float scale;      /* step; 0 for an all-zero group */
    float inv_scale;  /* 1 / scale, or 0 when scale is 0 */
    int zero;         /* the code of 0.0: 2^(b-1) symmetric, in [0, maxq] asymmetric */
    int maxq;         /* 2^b - 1 */
    uint16_t scale_h; /* the fp16 bit pattern of scale, as stored */
} cce_quant_group;

/* CCE_ERR_RANGE naming "bits" or "group" (prefixed by `who`, e.g. "rtn") if the spec is out of
 * range: bits outside [2, 8], group < 1 with group granularity, an unknown granularity. */
cce_status cce_quant_spec_check(const cce_quant_spec *q, const char *who);

/* "tensor", "channel" or "group". Static. */
const char *cce_quant_granularity_name(cce_quant_granularity g);

/* Groups per row (1 for tensor and channel; ceil(cols / group) for group) and in all (1 for
 * tensor, rows for channel, rows * ceil(cols / group) for group). */
int64_t cce_quant_groups_per_row(const cce_quant_spec *q, int64_t cols);
int64_t cce_quant_n_groups(const cce_quant_spec *q, int64_t rows, int64_t cols);

/* Length along a row of the last group of each row when it is shorter than the others (cols %
 * group with group granularity), else 0. */
int64_t cce_quant_ragged_last(const cce_quant_spec *q, int64_t cols);

/* Bytes of n packed b-bit values: ceil(n * b / 8). */
int64_t cce_quant_packed_bytes(int64_t n, int bits);

/* Encoded bytes of a [rows, cols] tensor under q with `kept` non-pruned weights (kept == numel
 * when dense) and, for an N:M sparsity pattern, its M (0 otherwise); see the header comment. */
int64_t cce_quant_encoded_bytes(const cce_quant_spec *q, int64_t rows, int64_t cols, int64_t kept,
                                int nm_m);

/* fp16 conversions (IEEE binary16, round to nearest even, overflow to infinity). */
uint16_t cce_quant_half_from_float(float x);
float cce_quant_half_to_float(uint16_t h);

/* The range [lo, hi] of w[0..n) widened to hold 0, over the weights whose keep[i] is non-zero
 * (keep may be NULL: all). CCE_ERR_NUMERIC (detail names `what`) if a considered value is NaN or
 * infinite. */
cce_status cce_quant_range(const float *w, const uint8_t *keep, int64_t n, const char *what,
                           float *lo, float *hi);

/* The parameters of a group with range [lo, hi] (lo <= 0 <= hi, finite). CCE_ERR_RANGE naming
 * `what` if the scale exceeds fp16. bits must be valid (cce_quant_spec_check). */
cce_status cce_quant_group_params(int bits, int symmetric, float lo, float hi, const char *what,
                                  cce_quant_group *g);

/* The code of one value under g (values outside the grid clamp to the end codes, NaN to 0). */
static inline int cce_quant_code(const cce_quant_group *g, float w) {
    float v = rintf(w * g->inv_scale) + (float)g->zero;
    v = v >= 0.0f ? v : 0.0f; /* written so that a NaN becomes code 0 */
    v = v <= (float)g->maxq ? v : (float)g->maxq;
    return (int)v;
}

/* The value a code stands for. */
static inline float cce_quant_value(const cce_quant_group *g, int code) {
    return (float)(code - g->zero) * g->scale;
}

/* Quantizes w[0..n) in place to its dequantized values under g; codes (may be NULL) gets the
 * codes [n]. Returns the sum of squared changes. */
double cce_quant_row(const cce_quant_group *g, float *w, int64_t n, uint8_t *codes);

/* Packs n values (each < 2^bits) into out [cce_quant_packed_bytes(n, bits)] / unpacks them. */
void cce_quant_pack(const uint8_t *codes, int64_t n, int bits, uint8_t *out);
void cce_quant_unpack(const uint8_t *packed, int64_t n, int bits, uint8_t *codes);

/* A quantized [rows, cols] tensor as stored (encoding "quant"). */
typedef struct cce_quant_encoding {
    cce_quant_spec spec;
    int64_t rows, cols;
    int64_t n_groups;       /* cce_quant_n_groups */
    int64_t groups_per_row; /* cce_quant_groups_per_row */
    uint8_t *codes;         /* [cce_quant_packed_bytes(rows * cols, bits)] packed, row-major */
    uint16_t *scales;       /* [n_groups] fp16 bit patterns */
    uint8_t *zeros;         /* [cce_quant_packed_bytes(n_groups, bits)] packed; NULL if symmetric */
} cce_quant_encoding;

/* A zero-filled encoding of that shape (spec checked). The caller owns *out
 * (cce_quant_encoding_free). */
cce_status cce_quant_encoding_new(const cce_quant_spec *q, int64_t rows, int64_t cols,
                                  cce_quant_encoding **out);
void cce_quant_encoding_free(cce_quant_encoding *e);

/* The group parameters of group i of an encoding (from its stored scale and zero). */
cce_quant_group cce_quant_encoding_group(const cce_quant_encoding *e, int64_t i);

/* Writes group i's parameters into the encoding (scale; zero when asymmetric). Not thread-safe
 * for neighbouring asymmetric groups (zeros share bytes): callers set them from one thread. */
void cce_quant_encoding_set_group(cce_quant_encoding *e, int64_t i, const cce_quant_group *g);

/* Dequantizes the whole encoding into w [rows, cols]. CCE_ERR_NOMEM if the code buffer cannot
 * be allocated. */
cce_status cce_quant_decode(const cce_quant_encoding *e, float *w);

/* Round-to-nearest quantization of w [rows, cols] in place (each value becomes its dequantized
 * value) under q; OpenMP over rows. With enc non-NULL (made by cce_quant_encoding_new for the same
 * spec and shape) the codes, scales and zeros are written into it; err2 (may be NULL) receives the
 * sum of squared changes. CCE_ERR_NUMERIC naming `what` for NaN or infinite weights, CCE_ERR_RANGE
 * for a bad spec or a scale beyond fp16, CCE_ERR_ARG for an encoding of another spec or shape; on
 * failure w may be partly quantized. */
cce_status cce_quant_rtn(const cce_quant_spec *q, float *w, int64_t rows, int64_t cols,
                         const char *what, cce_quant_encoding *enc, double *err2);

/* ---- Strategy parameters --------------------------------------------------------------------- */

/* The granularity choices of a strategy's `granularity` parameter, in cce_quant_granularity
 * order: {"tensor", "channel", "group", NULL}. */
extern const char *const cce_quant_granularity_choices[];

typedef struct cce_params cce_params;

/* Reads a quantizer's `symmetric` (bool), `granularity` (enum of the choices above, no default)
 * and `group` (int, no default) parameters into q (bits is left alone). Neither given: per
 * channel. `group` alone: group granularity; granularity = group without `group`: groups of 128;
 * `group` with another granularity is CCE_ERR_ARG naming both (prefixed by `who`). Leaving the
 * defaults unset keeps the formatted parameters (cce_params_format) parseable again. */
cce_status cce_quant_spec_from_params(const cce_params *p, const char *who, cce_quant_spec *q);

/* The grid parameters every quantizer shares (RTN, GPTQ): symmetric, granularity, group. A
 * strategy's schema lists its own `bits` (default differs) and then CCE_QUANT_GRID_PARAMS. */
#define CCE_QUANT_GRID_PARAMS                                                                      \
    {"symmetric",                                                                                  \
     CCE_PARAM_BOOL,                                                                               \
     "false",                                                                                      \
     0,                                                                                            \
     0,                                                                                            \
     0,                                                                                            \
     NULL,                                                                                         \
     "symmetric grid (scale from max |w|, no zero point) instead of min/max with a zero point"},   \
        {"granularity",                                                                            \
         CCE_PARAM_ENUM,                                                                           \
         NULL,                                                                                     \
         0,                                                                                        \
         0,                                                                                        \
         0,                                                                                        \
         cce_quant_granularity_choices,                                                            \
         "one scale per tensor, per output channel (default), or per group along the input"},      \
    {                                                                                              \
        "group", CCE_PARAM_INT, NULL, 1, 1 << 20, 0, NULL,                                         \
            "weights per group along the input (32, 64, 128...); implies granularity=group"        \
    }

#endif
