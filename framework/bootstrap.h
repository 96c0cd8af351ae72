/* The paired bootstrap (DESIGN 8): is model A better than model B on the same data, beyond
 * chance? Given paired per-unit values of both (per-token NLL over the same windows, per-item
 * correctness on the same task items), it resamples blocks with replacement and reports the mean
 * difference A - B with a percentile confidence interval.
 *
 * Blocks, not single values: the tokens of one evaluation window share their context, so their
 * NLLs are dependent, and resampling tokens one by one would understate the variance (give too
 * narrow an interval). The resampling unit is therefore the window (block = ctx - 1 tokens); the
 * items of a multiple-choice task are independent, so there a block is one item.
 *
 * The method:
 *   - per block k: d_k = sum_a_k - sum_b_k over its values, and its count n_k;
 *   - the point estimate is D = sum_k d_k / sum_k n_k = mean(a) - mean(b) over all values;
 *   - each of B resamples draws n_blocks block indices uniformly with replacement (one GSL
 *     mt19937 stream seeded with seed; gsl_rng_uniform_int) and computes
 *     D* = sum d_k* / sum n_k*;
 *   - the interval is the (1 - level)/2 and (1 + level)/2 quantiles of the B values of D*
 *     (level 0.95: the 2.5th and 97.5th percentiles; linear interpolation between order
 *     statistics, gsl_stats_quantile_from_sorted_data);
 *   - significant = the interval excludes 0 (ci_low > 0 or ci_high < 0).
 * A run against itself gives d_k = 0 exactly, so D = 0 and the interval is [0, 0]: it contains 0
 * and is not significant. */
#ifndef CCE_BOOTSTRAP_H
#define CCE_BOOTSTRAP_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "status.h"

#define CCE_BOOTSTRAP_DEFAULT_RESAMPLES 1000
#define CCE_BOOTSTRAP_MAX_RESAMPLES     10000000

typedef struct cce_bootstrap_options {
    int resamples; /* B; 0 = CCE_BOOTSTRAP_DEFAULT_RESAMPLES; else [1, CCE_BOOTSTRAP_MAX_RESAMPLES]
                    */
    uint64_t seed; /* of the GSL mt19937 stream (0 is GSL's default seed 4357) */
    double level;  /* of the interval; 0 = 0.95; else in (0, 1) */
} cce_bootstrap_options;

typedef struct cce_bootstrap_result {
    double mean_a, mean_b; /* over all values */
    double diff;           /* mean_a - mean_b, the point estimate */
    double ci_low, ci_high;
    double se;       /* standard deviation of the resampled differences */
    int significant; /* 1 when [ci_low, ci_high] excludes 0 */
    size_t n_blocks;
    double n_values; /* sum of the block counts */
    int resamples;
    uint64_t seed;
    double level;
} cce_bootstrap_result;

/* The bootstrap from per-block sums: sum_a, sum_b [n_blocks] (borrowed) and count [n_blocks], the
 * number of values in each block (NULL: every block counts 1, e.g. when sum_a/sum_b already are
 * per-window means of equal windows). CCE_ERR_RANGE for fewer than two blocks, a count that is
 * not positive, or options out of range; CCE_ERR_NUMERIC naming the first non-finite entry. */
cce_status cce_bootstrap_paired_blocks(const double *sum_a, const double *sum_b,
                                       const double *count, size_t n_blocks,
                                       const cce_bootstrap_options *o, cce_bootstrap_result *out);

/* The bootstrap of per-value arrays a, b [n] (borrowed) in consecutive blocks of block_len values
 * (the last block may be shorter), e.g. per-token NLLs in stream order with block_len = ctx - 1
 * (cce_eval_result.token_nll). CCE_ERR_ARG for block_len 0. */
cce_status cce_bootstrap_paired(const double *a, const double *b, size_t n, size_t block_len,
                                const cce_bootstrap_options *o, cce_bootstrap_result *out);

/* The bootstrap of per-item 0/1 outcomes a, b [n] (borrowed; nonzero = 1), one item per block:
 * the accuracy difference of two models on the same task items. */
cce_status cce_bootstrap_paired_flags(const uint8_t *a, const uint8_t *b, size_t n,
                                      const cce_bootstrap_options *o, cce_bootstrap_result *out);

/* Sums of x [n] over consecutive blocks of block_len values into sums [ceil(n / block_len)]
 * (the caller's buffer): per-window NLL sums to record or to compare later. */
void cce_bootstrap_block_sums(const double *x, size_t n, size_t block_len, double *sums);

/* ---- Recorded inputs: per-run tables (results_table.h) and pairing them (bootstrap_table.c) ----
 *
 * A results file keeps metrics per run, not per-token NLLs. To compare two recorded runs later,
 * a run records the bootstrap's inputs as extra tables (cce_run_record.tables):
 *   "eval_windows": one row per evaluation window: window (int64, its index), tokens (int64,
 *                   scored tokens), nll_sum (float64, their summed NLL), from an evaluation
 *                   with keep_token_nll (eval.h);
 *   "task_<name>":  one row per task item (cce_task_result_table, task.h): correct and
 *                   correct_norm (int64 0/1), among others.
 * Two runs are comparable only when they were evaluated on the same windows or items: the same
 * protocol line (data sha256, ctx, max tokens; for tasks the recipe). The caller checks the runs'
 * protocol attributes; cce_bootstrap_tables checks what the tables themselves show. */

/* The name of the per-window table. */
#define CCE_BOOTSTRAP_WINDOW_TABLE "eval_windows"

struct cce_table;
struct cce_eval_result;

/* The "eval_windows" table of an evaluation that kept its per-token NLLs (r->token_nll; else
 * CCE_ERR_ARG). The caller owns *out (cce_table_free). */
cce_status cce_bootstrap_window_table(const struct cce_eval_result *r, struct cce_table **out);

/* The paired bootstrap of column `value` (float64 or int64) of two tables a and b (borrowed)
 * holding the same rows of two runs: block k = row k, with its count from column `count` (NULL:
 * every row counts 1), e.g. value "nll_sum" and count "tokens" of "eval_windows" tables, or value
 * "correct" of "task_<name>" tables. CCE_ERR_ARG when the tables differ in rows, a column is
 * missing or of another type, or the key columns `window` / `item` (where present) or the counts
 * differ row by row (names the row): then the runs were not evaluated on the same windows or
 * items. */
cce_status cce_bootstrap_tables(const struct cce_table *a, const struct cce_table *b,
                                const char *value, const char *count,
                                const cce_bootstrap_options *o, cce_bootstrap_result *out);

/* The result as a JSON object: a, b, diff, ci_low, ci_high, se, significant, blocks, values,
 * resamples, seed, level (NaN becomes null). New reference owned by the caller; NULL if out of
 * memory. */
json_t *cce_bootstrap_result_json(const cce_bootstrap_result *r);

#endif
