/* Weight statistics (DESIGN 8): for every linear tensor of a variant, the distribution of its
 * weights before (the base model's tensor) and after compression (the variant's), and the
 * relative Frobenius error between them; recorded per run as the results table "weights"
 * (results_table.h).
 *
 * Per tensor and state (before / after), with GSL's conventions (gsl_stats_float_*):
 *   mean; std, the sample standard deviation (n - 1 in the denominator); skewness
 *   = mean(((x - mean) / std)^3); excess_kurtosis = mean(((x - mean) / std)^4) - 3 (0 for a
 *   Gaussian, 3 for a Laplace distribution); min; max; zero_frac, the fraction of exact zeros
 *   (-0.0 included). skewness and excess_kurtosis are NaN when std is 0 or there is one weight.
 * A histogram of `bins` uniform bins whose edges come from the DENSE tensor only, so before and
 * after are comparable bin by bin:
 *   range_std = 0 (default): [min, max] of the dense tensor, the upper edge nudged up by one ulp
 *                            so that the maximum falls in the last bin (the dense histogram then
 *                            has no underflow or overflow);
 *   range_std = k > 0:       [mean - k std, mean + k std) of the dense tensor;
 *   a constant dense tensor (std 0) gets [v - h, v + h) with h = max(1, |v|) / 2.
 * Values outside the edges are counted as underflow (x < lo) and overflow (x >= hi).
 * rel_fro_error = ||W - W'||_F / ||W||_F in double precision (0 when both are 0; NaN when only
 * the dense tensor is 0).
 *
 * Which tensors: q, k, v, o, gate, up and down of every block the base model keeps, and
 * lm_head.weight when the base's classifier is not tied to the embedding. A block the variant
 * removed gives rows with the "after" statistics NaN and the note "layer removed"; a tensor of
 * another shape in the variant (structured pruning) gets its own "after" statistics on the dense
 * edges, rel_fro_error NaN and a note naming both shapes. */
#ifndef CCE_WSTATS_H
#define CCE_WSTATS_H

#include <stdint.h>

#include "model.h"
#include "results_table.h"
#include "stats_hist.h"
#include "status.h"
#include "tensor.h"

#define CCE_WSTATS_DEFAULT_BINS 64
/* The name of the results table (cce_run_record.tables). */
#define CCE_WSTATS_TABLE "weights"

typedef struct cce_wstats_options {
    int bins;         /* histogram bins, in [1, 4096]; 0: CCE_WSTATS_DEFAULT_BINS */
    double range_std; /* 0: edges from the dense min/max; > 0: dense mean +- range_std * std */
} cce_wstats_options;

/* The distribution of one tensor's weights. */
typedef struct cce_wstats_dist {
    int64_t numel;
    double mean, std, skewness, excess_kurtosis, min, max, zero_frac;
    cce_hist *hist; /* owned (cce_wstats_dist_clear) */
} cce_wstats_dist;

/* Before and after of one tensor. */
typedef struct cce_wstats_pair {
    cce_wstats_dist before, after;
    double rel_fro_error;
} cce_wstats_pair;

/* The histogram edges [*lo, *hi) the dense weights x [n] give under o (NULL: defaults; see
 * above). CCE_ERR_NUMERIC naming `name` and the index of the first NaN or Inf; CCE_ERR_ARG for
 * n < 1 or bad options. */
cce_status cce_wstats_edges(const float *x, int64_t n, const cce_wstats_options *o,
                            const char *name, double *lo, double *hi);

/* The statistics of x [n] (borrowed) with a histogram of `bins` bins over [lo, hi). Errors as
 * cce_wstats_edges. out is filled on success (the caller clears it with cce_wstats_dist_clear)
 * and left empty on failure. */
cce_status cce_wstats_describe(const float *x, int64_t n, int bins, double lo, double hi,
                               const char *name, cce_wstats_dist *out);
void cce_wstats_dist_clear(cce_wstats_dist *d);

/* Before (dense) and after (comp) of one tensor, both borrowed, named `name` in messages.
 * CCE_ERR_ARG when the shapes differ (naming both), CCE_ERR_NUMERIC naming the tensor, the state
 * and the index of a NaN or Inf. o may be NULL. The caller clears *out (cce_wstats_pair_clear);
 * it is empty after a failure. */
cce_status cce_wstats_compare(const cce_tensor *dense, const cce_tensor *comp, const char *name,
                              const cce_wstats_options *o, cce_wstats_pair *out);
void cce_wstats_pair_clear(cce_wstats_pair *p);

/* An empty "weights" table with the columns below, for histograms of o's bins. The caller owns
 * *out (cce_table_free). Columns:
 *   layer (int64; -1 outside the blocks), tensor (string), rows, cols (int64: the dense shape),
 *   then for S in before, after: mean_S, std_S, skewness_S, excess_kurtosis_S, min_S, max_S,
 *   zero_frac_S (float64), underflow_S, overflow_S (int64); rel_fro_error, hist_lo, hist_hi
 *   (float64); hist_before, hist_after (float64 x bins: counts); edges (float64 x bins + 1);
 *   note (string). */
cce_status cce_wstats_table_new(const cce_wstats_options *o, cce_table **out);

/* Appends the row of tensor `tensor` of block `layer`, whose dense shape is [rows, cols] (p
 * borrowed; note may be NULL), to a table made by cce_wstats_table_new. CCE_ERR_ARG if p's
 * histograms have another number of bins. */
cce_status cce_wstats_table_add(cce_table *t, int layer, const char *tensor, int64_t rows,
                                int64_t cols, const cce_wstats_pair *p, const char *note);

/* The "weights" table of variant against base (see above for which tensors): both borrowed
 * (their tensors are loaded). variant may be base itself (after = before, rel_fro_error 0).
 * Tensors run in parallel (OpenMP, no BLAS). CCE_ERR_ARG when the models' dim, n_layers or
 * vocab_size differ; CCE_ERR_NUMERIC names the tensor holding a NaN or Inf. The caller owns *out
 * (cce_table_free). */
cce_status cce_wstats_model(cce_model *base, cce_model *variant, const cce_wstats_options *o,
                            cce_table **out);

#endif
