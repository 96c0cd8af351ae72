/* The inside of a cce_calib, shared by calib.c (accumulation, access) and calib_cache.c (the
 * on-disk cache of dense statistics). Not a public API. */
#ifndef CCE_CALIB_INTERNAL_H
#define CCE_CALIB_INTERNAL_H

#include <stdint.h>

#include "calib.h"

/* The statistics of one (layer, site). dim == 0: nothing collected. */
typedef struct calib_site_stats {
    int dim;
    int64_t n_tokens;
    double *sum;       /* [dim] */
    double *sum_sq;    /* [dim] */
    double *sum_outer; /* [dim, dim] row-major, symmetric once a collection ends; or NULL */
} calib_site_stats;

struct cce_calib {
    int n_layers;
    calib_site_stats *sites; /* [n_layers * CCE_SITE_COUNT], layer-major */
    double *bi_cos;          /* [n_layers]: sum over tokens of cos(h_l, h_{l+1}) */
    int64_t *bi_count;       /* [n_layers]: tokens in bi_cos */
};

/* The statistics of (layer, site). */
static inline calib_site_stats *calib_site(const cce_calib *c, int layer, cce_calib_site site) {
    return &c->sites[(size_t)layer * CCE_SITE_COUNT + (size_t)site];
}

/* Allocates (zeroed) the arrays of a site of width dim, freeing what it held. */
cce_status calib_site_alloc(calib_site_stats *ss, int dim, int with_outer);
void calib_site_clear(calib_site_stats *ss);

/* "attn_in", "o_in", "ffn_in", "down_in". Static. */
const char *calib_site_name(cce_calib_site site);

/* The cache file of a collection: <cache>/calib/<key>.h5 where key is the sha256 of the model
 * fingerprint, the data sha256 and shape, ctx and second_moments. The caller owns *path.
 * (calib_cache.c) */
cce_status calib_cache_path(cce_model *m, const cce_calib_data *d, int ctx, int second_moments,
                            char **path, char key[65]);

/* Loads a cached set; any problem (missing, corrupt, another key) returns a non-zero status and
 * leaves *out NULL; the caller then computes afresh. With want_outer 0, sum_outer is dropped.
 * (calib_cache.c) */
cce_status calib_cache_load(const char *path, const char *key, int n_layers, int want_outer,
                            cce_calib **out);

/* Writes c under a temporary name and renames it to path. (calib_cache.c) */
cce_status calib_cache_store(const char *path, const char *key, const cce_calib *c);

#endif
