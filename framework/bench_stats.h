/* The cost of recording statistics (`cce bench-stats`): activation statistics recorded inside
 * the evaluation (astats.h) against the evaluation alone, on the same windows, and the weight
 * statistics of a variant (wstats.h).
 *
 * Measured, each the best of `reps` runs (evaluation and recording alternate, so that drift of
 * the machine's speed affects both alike):
 *   eval      cce_eval(variant, dense): both models on every window, side by side;
 *   record    cce_astats_eval(variant, dense, ref): the same, with the hooks recording;
 *   overhead  record / eval - 1;
 *   ref       the dense reference pass (cce_astats_ref_new), paid once per domain and
 *             experiment, not per run;
 *   weights   cce_wstats_model(dense, variant). */
#ifndef CCE_BENCH_STATS_H
#define CCE_BENCH_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "status.h"

typedef struct cce_bench_stats_options {
    int ctx;            /* window length; 0: the protocol's default */
    int64_t max_tokens; /* scored tokens (whole windows); 0: the whole stream */
    int reps;           /* >= 1 */
} cce_bench_stats_options;

typedef struct cce_bench_stats_result {
    int ctx;
    int64_t windows, tokens; /* windows and scored tokens per evaluation */
    int64_t values;          /* activation values the variant's hooks see per evaluation */
    int64_t weights;         /* weights cce_wstats_model reads per model */
    double eval_seconds, record_seconds, overhead, ref_seconds, wstats_seconds;
} cce_bench_stats_result;

/* Runs the measurements above on dense and variant (both borrowed; variant may be dense) over
 * stream [n] (borrowed). Errors as cce_eval, cce_astats_eval and cce_wstats_model report them;
 * CCE_ERR_RANGE for reps < 1. */
cce_status cce_bench_stats(cce_model *dense, cce_model *variant, const int32_t *stream, size_t n,
                           const cce_bench_stats_options *o, cce_bench_stats_result *r);

#endif
