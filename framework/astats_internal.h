/* Pieces of the activation statistics shared by astats.c (moments, reference pass, table) and
 * astats_record.c (recording). Internal to libcce, not a public API. */
#ifndef CCE_ASTATS_INTERNAL_H
#define CCE_ASTATS_INTERNAL_H

#include "astats.h"
#include "forward.h"
#include "stats_hist.h"

#define MAX_BINS 4096
#define N_SITES  CCE_ASTATS_SITES

struct cce_astats_ref {
    char domain[128];
    int ctx;
    int64_t max_tokens, n_windows;
    char tokens_sha256[65]; /* of the n_windows * (ctx - 1) stream tokens used */
    int bins;
    double range_std, outlier_std, kl_alpha;
    int n_layers;
    cce_moments *mom; /* [n_layers * N_SITES] the dense model's moments */
    int *width;       /* [n_layers * N_SITES] the site's width (0: the site never ran) */
    /* [n_layers * N_SITES] the dense model's histograms on these windows and edges, kept by the
     * first recording that uses the reference (NULL until then): the dense model's histogram is
     * the same for every variant, so later recordings only bin the variant's values. */
    cce_hist **dense_hist;
};

/* The columns of the activations table, in order (cce_astats_table_new). */
enum {
    C_DOMAIN,
    C_LAYER,
    C_SITE,
    C_WIDTH,
    C_COUNT,
    C_MEAN,
    C_STD,
    C_SKEW,
    C_KURT,
    C_MIN,
    C_MAX,
    C_OUTLIER,
    C_COSINE,
    C_REL_L2,
    C_HIST_KL,
    C_REF_MEAN,
    C_REF_STD,
    C_REF_KURT,
    C_HIST_LO,
    C_HIST_HI,
    C_UNDER,
    C_OVER,
    C_HIST,
    N_COLS
};

/* The site a hook point feeds, or -1. */
int astats_site_of(cce_hook_point p);

/* CCE_ERR_NUMERIC naming the first site of mom [n_layers * N_SITES] whose moments are not finite
 * (`who` names the model in the message). */
cce_status astats_check_moments(const cce_moments *mom, int n_layers, const char *who);

#endif
