/* Activation statistics (DESIGN 8): the distribution of a model's activations per layer at two
 * sites, per domain (token stream), compared with the dense model on the same tokens; recorded
 * per run as the results table "activations" (results_table.h). Nothing is kept across windows:
 * forward hooks (forward.h) fold each window's activations into running sums.
 *
 * Sites (per block l):
 *   block_out  the residual stream after the block, h_{l+1} [T, dim] (CCE_HOOK_BLOCK_OUT)
 *   ffn_act    the FFN activation silu(gate) * up [T, hidden_dim], the input of down_proj
 *              (CCE_HOOK_DOWN_IN); a removed block has none (its rows have count 0)
 * Windows are the evaluation protocol's (eval.h: BOS + ctx - 1 stream tokens, non-overlapping).
 * The BOS position of every window is left out: its activations are the same in every window and
 * in trained models an attention-sink outlier (calibration, calib.c, does the same). Every other
 * position, and every channel of it, is one value of the site's distribution.
 *
 * Per (domain, layer, site) row:
 *   count, mean, std, skewness, excess_kurtosis, min, max: streaming moments in double. Each
 *     window's block is reduced with two passes (mean, then centred powers) and merged into the
 *     running moments with the pairwise formulas of Chan et al. / Pebay (2008), so no value is
 *     kept. Conventions as GSL's gsl_stats_*: std has n - 1 in the denominator, skewness =
 *     M3 / n / std^3, excess_kurtosis = M4 / n / std^4 - 3.
 *   outlier_frac: the fraction of values with |x - ref_mean| > outlier_std * ref_std, where
 *     ref_mean and ref_std are the DENSE model's mean and std of that site on the same windows.
 *     They come from a first recording run of the dense model (cce_astats_ref_new), which fixes
 *     the threshold before any variant is recorded: one pass per variant, never two. For the
 *     dense model itself this is exactly its own |x - mean| > 6 std fraction.
 *   hist, underflow, overflow: a histogram of `bins` uniform bins over
 *     [ref_mean - range_std * ref_std, ref_mean + range_std * ref_std), the same edges for the
 *     dense model and every variant, so histograms compare bin by bin (stats_hist.h).
 *   Against the dense model on the same tokens (both run side by side on every window, as
 *   cce_eval runs its reference):
 *     cosine   the mean over token positions of cos(x_t, d_t), x_t and d_t the site's vectors
 *              of the model and the dense model at position t;
 *     rel_l2   sqrt(sum_t ||x_t - d_t||^2 / sum_t ||d_t||^2);
 *     hist_kl  KL(dense || model) of the two histograms with add-alpha smoothing (stats_hist.h;
 *              alpha = kl_alpha, default 0.5) over the bins plus the underflow and overflow
 *              cells.
 *   (NaN when the widths differ, e.g. a structurally pruned FFN, or the site is missing.)
 *   ref_mean, ref_std, ref_excess_kurtosis: the dense reference's statistics of the site.
 *
 * Cost. Recording runs inside the evaluation (cce_astats_eval returns the same evaluation result
 * as cce_eval on the same windows); what it adds is the per-value arithmetic of the hooks (the
 * variant's moments, histogram, outliers and pairing; the dense model's moments as a check and,
 * on a reference's first recording only, its histogram) and one window of the dense model's
 * activations at both sites of every layer, (ctx - 1) x (dim + hidden_dim) x n_layers floats.
 * `cce bench-stats` measures it. */
#ifndef CCE_ASTATS_H
#define CCE_ASTATS_H

#include <stddef.h>
#include <stdint.h>

#include "eval.h"
#include "model.h"
#include "results_table.h"
#include "status.h"

#define CCE_ASTATS_DEFAULT_BINS        64
#define CCE_ASTATS_DEFAULT_RANGE_STD   8.0
#define CCE_ASTATS_DEFAULT_OUTLIER_STD 6.0
/* The name of the results table (cce_run_record.tables). */
#define CCE_ASTATS_TABLE "activations"

typedef enum cce_astats_site {
    CCE_ASTATS_BLOCK_OUT = 0,
    CCE_ASTATS_FFN_ACT,
    CCE_ASTATS_SITES
} cce_astats_site;

/* "block_out", "ffn_act". Static. */
const char *cce_astats_site_name(cce_astats_site site);

/* ---- Streaming moments ----------------------------------------------------------------------- */

typedef struct cce_moments {
    double n;                /* values seen */
    double mean, m2, m3, m4; /* mean and sums of centred powers */
    double min, max;         /* +inf / -inf while empty */
} cce_moments;

/* An empty accumulator. */
void cce_moments_init(cce_moments *m);
/* Folds x [n] (borrowed) in: two passes over the block in double, then a pairwise merge. */
void cce_moments_add(cce_moments *m, const float *x, size_t n);
/* Folds b into a. */
void cce_moments_merge(cce_moments *a, const cce_moments *b);
/* GSL's conventions (see above); NaN when undefined (n < 2, or std 0 for skewness/kurtosis). */
double cce_moments_mean(const cce_moments *m);
double cce_moments_std(const cce_moments *m);
double cce_moments_skewness(const cce_moments *m);
double cce_moments_excess_kurtosis(const cce_moments *m);

/* ---- Recording ------------------------------------------------------------------------------- */

typedef struct cce_astats_options {
    int ctx;            /* window length including BOS; 0: the protocol's default (eval.h) */
    int64_t max_tokens; /* limit on scored tokens (whole windows); 0: the whole stream */
    int bins;           /* histogram bins in [1, 4096]; 0: CCE_ASTATS_DEFAULT_BINS */
    double range_std;   /* histogram half-width in dense std; 0: CCE_ASTATS_DEFAULT_RANGE_STD */
    double outlier_std; /* outlier threshold in dense std; 0: CCE_ASTATS_DEFAULT_OUTLIER_STD */
    double kl_alpha;    /* histogram KL smoothing (> 0); 0: CCE_HIST_KL_ALPHA (0.5) */
    int keep_token_nll; /* cce_astats_eval: fill the evaluation result's token_nll */
    /* Called after each window with (windows done, windows total); may be NULL. */
    void (*progress)(void *user, long done, long total);
    void *progress_user;
} cce_astats_options;

/* The dense reference of one domain: the dense model's moments per layer and site on the
 * protocol's windows of one token stream, which fix the histogram edges and the outlier
 * threshold of every recording on that domain, and identify the windows (a sha256 of the tokens
 * used), so that a recording on other tokens is refused. */
typedef struct cce_astats_ref cce_astats_ref;

/* The first recording run: runs dense over the windows of stream [n] (borrowed) that o's ctx and
 * max_tokens give (o may be NULL: defaults) and keeps its moments, under the name `domain`
 * ([A-Za-z0-9_.+-]+, e.g. "tinystories_val"). Errors: CCE_ERR_RANGE for options out of range, a
 * token outside the vocabulary or a stream shorter than one window (as cce_eval);
 * CCE_ERR_NUMERIC naming the layer and site of non-finite activations (NaN/Inf weights);
 * CCE_ERR_ARG for a bad domain name. The caller owns *out (cce_astats_ref_free). */
cce_status cce_astats_ref_new(cce_model *dense, const int32_t *stream, size_t n, const char *domain,
                              const cce_astats_options *o, cce_astats_ref **out);
void cce_astats_ref_free(cce_astats_ref *ref);

/* The reference's domain name and number of windows. Borrowed. */
const char *cce_astats_ref_domain(const cce_astats_ref *ref);
int64_t cce_astats_ref_windows(const cce_astats_ref *ref);

/* An empty "activations" table for histograms of `bins` bins (0: the default). The caller owns
 * *out (cce_table_free). Columns: domain (string), layer (int64), site (string), width (int64:
 * channels), count (int64: values), mean, std, skewness, excess_kurtosis, min, max, outlier_frac,
 * cosine, rel_l2, hist_kl, ref_mean, ref_std, ref_excess_kurtosis, hist_lo, hist_hi (float64),
 * underflow, overflow (int64), hist (float64 x bins: counts). */
cce_status cce_astats_table_new(int bins, cce_table **out);

/* Evaluates m against dense on the reference's windows of stream [n] and records m's activation
 * statistics in the same forward passes, appending n_layers x 2 rows (layer by layer, block_out
 * then ffn_act) for the reference's domain to rows (made by cce_astats_table_new with the
 * reference's bins). dense must be the model the reference was made with (or an identical one);
 * m may be dense itself, which then runs once per window (cosine 1, rel_l2 0, hist_kl 0 by
 * construction). eval (may be NULL) receives exactly what cce_eval(m, dense, stream, n) gives on
 * these windows (the caller frees it with cce_eval_result_free). Only o's progress and
 * keep_token_nll are used here (o may be NULL); ctx, max_tokens, bins and thresholds are the
 * reference's. The first recording on a reference keeps the dense model's histograms in it
 * (they are the same for every variant: later recordings bin only the variant's values), so a
 * reference is used by one caller at a time. The dense model's activations on this pass are
 * checked against the reference's moments (CCE_ERR_ARG when they differ: another dense model).
 * Errors: CCE_ERR_ARG when the stream's tokens differ from the reference's, the models' shapes
 * (dim, n_layers, vocabulary, tokenizer) differ, or rows has another width; whatever cce_eval
 * reports; CCE_ERR_NUMERIC naming the layer and site of non-finite activations. On failure rows
 * is unchanged. */
cce_status cce_astats_eval(cce_model *m, cce_model *dense, cce_astats_ref *ref,
                           const int32_t *stream, size_t n, const cce_astats_options *o,
                           cce_table *rows, cce_eval_result *eval);

#endif
