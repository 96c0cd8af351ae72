/* Calibration: statistics of every linear layer's input, accumulated by forward hooks over
 * calibration windows without storing activations (DESIGN sections 5 and 6).
 *
 * For each block l the inputs of its linear layers are four "sites":
 *   CCE_SITE_ATTN_IN  RMSNorm(h) feeding q_proj, k_proj, v_proj   [dim]
 *   CCE_SITE_O_IN     concatenated head outputs feeding o_proj      [n_heads * head_dim]
 *   CCE_SITE_FFN_IN   RMSNorm(h) feeding gate_proj, up_proj         [dim]
 *   CCE_SITE_DOWN_IN  silu(gate) * up feeding down_proj             [hidden_dim]
 * and for each site the module accumulates, in double precision:
 *   n_tokens, sum x (so E[x]), sum x_j^2 (so the column norm ||X_j|| = sqrt(sum x_j^2)),
 *   and, when asked for, sum x x^T (so the second moment E[x x^T]).
 * It also records each block's influence BI_l = 1 - mean_t cos(h_l, h_{l+1}) (ShortGPT).
 *
 * Two modes:
 *   dense       one pass of the dense model over all windows; cached on disk per
 *               (model sha256 or fingerprint, calibration tokens sha256, options) and reused
 *               across variants;
 *   sequential  block by block on the already-compressed prefix: the driver compresses block l,
 *               then asks for block l+1's statistics on the partly compressed variant
 *               (cce_calib_collect_layer). Belongs to one variant; never cached.
 */
#ifndef CCE_CALIB_H
#define CCE_CALIB_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "status.h"

typedef enum cce_calib_site {
    CCE_SITE_ATTN_IN = 0,
    CCE_SITE_O_IN,
    CCE_SITE_FFN_IN,
    CCE_SITE_DOWN_IN,
    CCE_SITE_COUNT
} cce_calib_site;

/* The statistics of one site of one layer. All pointers are borrowed from the cce_calib. */
typedef struct cce_calib_input {
    int layer;
    cce_calib_site site;
    int dim;                 /* width of the input vectors */
    int64_t n_tokens;        /* how many vectors were accumulated */
    const double *sum;       /* [dim] sum_t x_t */
    const double *sum_sq;    /* [dim] sum_t x_tj^2; ||X_j|| = sqrt(sum_sq[j]) */
    const double *sum_outer; /* [dim, dim] sum_t x_t x_t^T, row-major; NULL if not collected */
} cce_calib_input;

typedef struct cce_calib cce_calib;

typedef struct cce_calib_options {
    int second_moments; /* 1: accumulate sum x x^T (GPTQ, SparseGPT, whitened SVD need it) */
    int ctx;            /* window length including BOS (default: min(seq_len, 256)) */
} cce_calib_options;

/* Calibration data: n_segments token segments of seg_len tokens each (from cce_split), laid out
 * back to back in tokens [n_segments * seg_len]. Each segment is evaluated as one window
 * (BOS + up to ctx - 1 tokens). Borrowed by the calls below. */
typedef struct cce_calib_data {
    const int32_t *tokens;
    size_t n_segments;
    size_t seg_len;
    char sha256[65]; /* of the token bytes, for the cache key (cce_calib_data_hash fills it) */
} cce_calib_data;

/* Fills d->sha256 from the tokens. */
void cce_calib_data_hash(cce_calib_data *d);

/* Dense statistics of every layer of m over the data. With use_cache, a cached copy (HDF5 file
 * in the cache folder keyed by the model's weights fingerprint, the data sha256 and the options)
 * is loaded if present and written after computing otherwise. The caller owns *out. */
cce_status cce_calib_collect(cce_model *m, const cce_calib_data *d, const cce_calib_options *o,
                             int use_cache, cce_calib **out);

/* Statistics of layer `layer` only, on m as it is now (e.g. a variant whose layers < layer are
 * already compressed). Replaces that layer's statistics in *c (creating c if *c is NULL). */
cce_status cce_calib_collect_layer(cce_model *m, const cce_calib_data *d,
                                   const cce_calib_options *o, int layer, cce_calib **c);

void cce_calib_free(cce_calib *c);

/* The statistics feeding a linear tensor ("layers.3.self_attn.k_proj.weight" -> layer 3,
 * ATTN_IN). CCE_ERR_NOT_FOUND naming the tensor if there are none. */
cce_status cce_calib_input_of(const cce_calib *c, const char *tensor_name, cce_calib_input *out);
cce_status cce_calib_site_input(const cce_calib *c, int layer, cce_calib_site site,
                                cce_calib_input *out);

/* Block influence of layer l (NaN if unknown). */
double cce_calib_block_influence(const cce_calib *c, int layer);
int cce_calib_n_layers(const cce_calib *c);

/* For tests and plugins: an empty set for n_layers layers, and setting one site from given sums
 * (copied; sum_outer may be NULL). */
cce_status cce_calib_new(int n_layers, cce_calib **out);
cce_status cce_calib_set_input(cce_calib *c, int layer, cce_calib_site site, int dim,
                               int64_t n_tokens, const double *sum, const double *sum_sq,
                               const double *sum_outer);

#endif
