/* Speed measurements of the forward pass against the machine's own bounds (`cce bench`):
 *
 * - sgemm peak: one large n x n x n cblas_sgemm, best of a few runs;
 * - evaluation: whole windows through cce_forward_window; achieved GFLOP/s counts
 *     matmuls:   2 * (sum over kept layers of the q, k, v, o, gate, up, down weights
 *                     + vocab * dim) FLOPs per token
 *     attention: 4 * head_dim * n_heads * T(T+1)/2 FLOPs per layer and window of T tokens
 *                (Q K^T and P V over the causal triangle; norms, RoPE, softmax and SwiGLU are
 *                not counted);
 * - generation: cce_forward_token from position 0 with greedy choice of the next token;
 * - weight-streaming bound: the time to read every weight a decoding step reads (all kept
 *   block weights, the final norm and the classifier) once, by summing them with all threads.
 *   Generation cannot be faster than 1 / that time. Like a generation run, a streaming run
 *   reads them gen_tokens times in a row (the per-read time is the run's time / gen_tokens), so
 *   that both are sustained rates over the same span; best of a few runs each. (Best of single
 *   reads of a millisecond caught short bursts of speed that no 256-token run sustains: the bound
 *   so measured varied by 7% between runs on a quiet machine.)
 * Peak memory is measured by the caller (a forked child per model, wait4's ru_maxrss). */
#ifndef CCE_BENCH_H
#define CCE_BENCH_H

#include <stdint.h>

#include "model.h"
#include "status.h"

/* GFLOP/s of the best of reps cblas_sgemm calls of n x n x n (2 n^3 FLOPs each). n in
 * [16, 16384], reps >= 1. */
cce_status cce_bench_sgemm_peak(int n, int reps, double *gflops);

typedef struct cce_bench_options {
    int window;            /* tokens per evaluation window; 0: the model's seq_len */
    int window_reps;       /* timed windows (after one warm-up); >= 1 */
    int gen_tokens;        /* decoding steps per generation run (capped at seq_len); >= 1 */
    int gen_reps;          /* generation runs (after one warm-up of a few steps); >= 1 */
    int stream_reps;       /* weight-streaming runs of gen_tokens reads each; >= 1 */
    double budget_seconds; /* generation and streaming each stop repeating once their timed runs
                            * took this long, after at least 3 (or all, if fewer); 0: no limit */
    uint64_t seed;         /* of the random evaluation tokens */
} cce_bench_options;

typedef struct cce_bench_result {
    int64_t params;         /* every parameter of the model */
    int64_t streamed_bytes; /* weight bytes read per decoding step */
    int window;             /* tokens per evaluation window */
    double window_flops;    /* FLOPs of one window (formula above) */
    double eval_seconds;    /* best window */
    double eval_tok_s;      /* window / eval_seconds */
    double eval_gflops;     /* window_flops / eval_seconds / 1e9 */
    int gen_tokens;         /* steps per generation run */
    double gen_tok_s;       /* best run */
    double stream_seconds;  /* time to read the streamed weights once (best run / gen_tokens) */
    double stream_gbs;      /* streamed_bytes / stream_seconds / 1e9 */
    double stream_tok_s;    /* 1 / stream_seconds: the bound on generation */
} cce_bench_result;

/* FLOPs of one causal window of T tokens under the formula above. */
double cce_bench_window_flops(const cce_model *m, int T);

/* Weight bytes one decoding step reads (kept block weights, final norm, classifier). */
int64_t cce_bench_streamed_bytes(const cce_model *m);

/* Runs the evaluation, generation and weight-streaming measurements on m (borrowed; its weights
 * get loaded). *r is filled on success. */
cce_status cce_bench_model(cce_model *m, const cce_bench_options *o, cce_bench_result *r);

#endif
