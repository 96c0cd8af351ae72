/* Pruning machinery shared by the magnitude and Wanda strategies: the counting rule, exact
 * selection of the k smallest scores of a row (quickselect, earlier positions first among ties),
 * N:M groups, and report rows.
 *
 * A weight's score is |w_j| * scale[j]: scale NULL gives magnitude (|w|), scale = the input
 * column norms ||X_j|| gives Wanda. Scores are computed in float, the same way everywhere, so a
 * threshold found on a copy of the scores selects exactly the same weights in the row. */
#ifndef CCE_PRUNE_COMMON_H
#define CCE_PRUNE_COMMON_H

#include <stdint.h>

#include "strategy.h"

/* Zeroes the k lowest-scoring weights of w[0..n), earlier positions first among ties; weights
 * already zero count when they are among the lowest. scale [n] or NULL; scratch [n] (unused for
 * n <= 16). Returns the sum of squares removed. */
double cce_prune_smallest(float *w, const float *scale, int64_t n, int64_t k, float *scratch);

/* How many of a group of len weights an N:M pattern keeps: N, or ceil(N * len / M) if ragged. */
int64_t cce_prune_nm_keep(int64_t len, int n, int m);

/* Prunes every row of w [rows, cols] (parallel over rows for large tensors): with nm_m > 0 the
 * N:M pattern along the input (a ragged last group keeps cce_prune_nm_keep), else
 * cce_ratio_count(ratio, cols) weights per row. scale [cols] or NULL. *removed receives the sum
 * of squares removed and *slots the values a sparse encoding stores (kept by the pattern for
 * N:M; unused otherwise). CCE_ERR_NOMEM names the strategy and tensor. */
cce_status cce_prune_rows(const char *strategy, const char *tensor, float *w, int64_t rows,
                          int64_t cols, const float *scale, double ratio, int nm_n, int nm_m,
                          double *removed, int64_t *slots);

/* cce_prune_rows that also gives in *norm2 (if not NULL) the sum of squares of w before, taken
 * row by row while each row is in cache. */
cce_status cce_prune_rows_norm(const char *strategy, const char *tensor, float *w, int64_t rows,
                               int64_t cols, const float *scale, double ratio, int nm_n, int nm_m,
                               double *removed, int64_t *slots, double *norm2);

/* Fills the measures of a report row after pruning w [numel] whose squared norm before was
 * norm2 and of which `removed` (sum of squares) went. nm_m > 0 with slots: N:M encoding. */
void cce_prune_fill_row(cce_report_row *row, const float *w, int64_t numel, double norm2,
                        double removed, int nm_m, int64_t slots);

/* Finishes a pruned tensor: fills the measures of its report row (as cce_prune_fill_row, numel
 * weights of jt->weight, nm_m > 0 for an N:M pattern) and stores it as a sparse encoding (the mask
 * or N:M pattern and the kept values; jt->encoding receives it, owned by the job). */
cce_status cce_prune_finish(cce_job_tensor *jt, cce_report_row *row, int64_t numel, double norm2,
                            double removed, int nm_n, int nm_m, int64_t slots);

/* Prunes one tensor of a job (priv: the strategy's state) and fills its report row's measures. */
typedef cce_status (*cce_prune_tensor_fn)(const void *priv, const cce_block_job *job,
                                          cce_job_tensor *jt, cce_report_row *row);

/* The apply stage of a pruning strategy: checks every unskipped target is a ratio in [0, 1]
 * before changing anything (CCE_ERR_RANGE names the strategy and tensor), then runs prune on each
 * unskipped tensor, times it and appends its row to r. */
cce_status cce_prune_apply(const char *strategy, cce_block_job *job, cce_report *r,
                           cce_prune_tensor_fn prune, const void *priv);

/* Sum of squares of w [n] in double. */
double cce_prune_norm2(const float *w, int64_t n);

/* Monotonic wall time in seconds. */
double cce_prune_now(void);

#endif
