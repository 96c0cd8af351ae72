/* Speed of the compression strategies on a synthetic model of a real shape (`cce
 * bench-strategies`):
 *
 * - processing speed of the light strategies (RTN, magnitude): every block weight of the model
 *   goes through the strategy's apply, one block job per layer, as the compress driver runs it
 *   (parameter checks, finiteness check, report rows included; copying the weights into the job is
 *   not timed). GB/s = fp32 bytes of the block weights / seconds, best of `reps` passes, on one
 *   thread and on all threads;
 * - seconds per layer of the strategies that solve per layer (GPTQ, SparseGPT, Wanda, whitened low
 *   rank): one block job of the layer's seven linear tensors, mean over `layers` layers, on all
 *   threads, with synthetic calibration statistics: for an input site of width d,
 *   E[x x^T] = D (B B^T / k + 0.01 I) D with B [d, k = d/8] standard gaussian (correlated inputs)
 *   and D a diagonal of log-normal channel scales (sigma 1: outlier channels), over a nominal
 *   `calib_tokens` tokens. The time of a solve does not depend on the values, only on shapes. */
#ifndef CCE_BENCH_STRATEGIES_H
#define CCE_BENCH_STRATEGIES_H

#include <stdint.h>
#include <stdio.h>

#include "status.h"

typedef struct cce_bench_strategies_options {
    const char *preset;   /* synth preset (cce_synth_preset); NULL: "stories110M" */
    int threads;          /* "all threads"; 0: omp_get_max_threads() */
    int reps;             /* passes of the light strategies, best taken; >= 1 */
    int layers;           /* layers timed per solving strategy; >= 1 (capped at n_layers) */
    int64_t calib_tokens; /* nominal tokens of the synthetic statistics; >= 1 */
    const char *only;     /* comma-separated strategy names to run; NULL or "": all */
    uint64_t seed;        /* of the synthetic model and statistics */
} cce_bench_strategies_options;

/* Defaults: stories110M, all threads, 3 reps, 2 layers, 4096 tokens, every strategy, seed 1. */
void cce_bench_strategies_options_init(cce_bench_strategies_options *o);

typedef enum cce_bench_strategy_kind {
    CCE_BENCH_STRATEGY_RATE = 0, /* the whole model's block weights: GB/s */
    CCE_BENCH_STRATEGY_LAYER     /* seconds per layer */
} cce_bench_strategy_kind;

typedef struct cce_bench_strategy_row {
    char spec[64]; /* "rtn:bits=8" */
    cce_bench_strategy_kind kind;
    int threads;
    int64_t bytes;  /* fp32 bytes of the weights processed per pass / per layer */
    double seconds; /* best pass (RATE) / mean per layer (LAYER) */
    double gbs;     /* bytes / seconds / 1e9 */
    int layers;     /* layers timed (LAYER) or processed per pass (RATE) */
} cce_bench_strategy_row;

typedef struct cce_bench_strategies_result {
    char preset[32];
    int n_layers;
    int64_t block_params; /* block weights of the whole model */
    int64_t layer_params; /* linear weights of one layer */
    int threads;          /* "all threads" */
    cce_bench_strategy_row *rows;
    size_t n;
} cce_bench_strategies_result;

/* Builds the synthetic model and runs the measurements above. CCE_ERR_ARG for bad options or an
 * `only` that names no strategy of the benchmark; CCE_ERR_NOT_FOUND for an unknown preset.
 * The caller owns *r (cce_bench_strategies_result_clear). */
cce_status cce_bench_strategies_run(const cce_bench_strategies_options *o,
                                    cce_bench_strategies_result *r);
void cce_bench_strategies_result_clear(cce_bench_strategies_result *r);

/* Prints the two tables (and how they were measured) to f. */
void cce_bench_strategies_print(FILE *f, const cce_bench_strategies_result *r,
                                const cce_bench_strategies_options *o);

#endif
