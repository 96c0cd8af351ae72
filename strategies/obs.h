/* Optimal Brain Surgeon machinery that GPTQ (gptq.c) and SparseGPT (sparsegpt.c) share: the
 * damped inverse Hessian of a linear layer's input, and the column sweep that quantizes and/or
 * prunes one column at a time and moves each column's error onto the columns not yet done.
 *
 * The layer loss is ||W X - W' X||^2 over the calibration tokens, so the Hessian of a row is
 * H = 2 E[x x^T] = 2 sum_outer / n_tokens. Following GPTQ's reference (Frantar et al. 2022):
 *   - dead inputs (H_jj = 0: input j was zero on every token) get H_jj = 1 and their weights are
 *     set to 0 (they never reach the outputs on the calibration data);
 *   - damping adds damp * mean(diag H) to the diagonal (after the dead fix);
 *   - the sweep uses the upper Cholesky factor U of H^-1 = U^T U, from LAPACK in double: with J
 *     the reversal permutation, J H J = R^T R (dpotrf) gives U = J R^-T J (dtrtri), half the work
 *     of factoring, inverting and factoring again. Row c of U, divided by U_cc, is the OBS update
 *     that removing column c's error makes to the columns after c.
 * The sweep (cce_obs_sweep) walks columns in blocks of `block` (128): inside a block each row is
 * done column by column (rows are independent, so OpenMP runs over rows), with err = (w - q) / U_cc
 * and w[c+1..block end) -= err * U[c, c+1..block end); at the block's end the block's errors
 * update every later column at once with one GEMM (the lazy batch update, CBLAS dgemm).
 *
 * What q is for each weight:
 *   - pruned (a zero before the sweep, which stays zero: masks of earlier strategies are kept; or
 *     selected by the options below): q = 0, and the error is compensated like any other;
 *   - quantized (options.quant): q = the grid value of the current w (quant.h). Scales for tensor
 *     and channel granularity come from the weights before the sweep, and for groups from the
 *     current (already updated) weights of the group when the sweep reaches its first column, as
 *     GPTQ's reference does; pruned weights never enter a range. A row width the group size does
 *     not divide gets a shorter last group;
 *   - otherwise q = w (the weight only receives updates).
 * Selection (SparseGPT, Frantar & Alistarh 2023) ranks weights by the OBS saliency w^2 / U_cc^2,
 * using the current weights:
 *   - unstructured (ratio > 0): at the start of each block, over the whole block (all rows), the
 *     lowest-saliency weights go. Block [b0, b1) removes
 *     cce_ratio_count(ratio, rows * b1) - cce_ratio_count(ratio, rows * b0) weights, so the tensor
 *     loses exactly cce_ratio_count(ratio, rows * cols) in all, and any row may lose more or fewer
 *     than its share;
 *   - N:M: when the sweep reaches column c with c % M == 0, each row's group [c, c + M) keeps its
 *     N highest-saliency weights (a ragged last group of len < M keeps ceil(N * len / M)); blocks
 *     are then a multiple of M so that groups never straddle them.
 * Earlier zeros count towards a selection (they rank lowest), and ties go to the earlier position
 * (row-major inside a block). */
#ifndef CCE_OBS_H
#define CCE_OBS_H

#include <stdint.h>

#include "quant.h"
#include "status.h"
#include "strategy.h"

#define CCE_OBS_BLOCK 128 /* columns per lazy batch update, as in the reference implementations */

/* The damped inverse Hessian of one input site. */
typedef struct cce_obs_hinv {
    int64_t n;      /* input width */
    double *u;      /* [n, n] row-major: upper Cholesky factor U of H^-1 = U^T U; below the
                       diagonal 0 */
    uint8_t *dead;  /* [n] 1: input j never active (H_jj = 0) */
    int64_t n_dead; /* how many */
} cce_obs_hinv;

/* From sum_outer [n, n] (sum_t x_t x_t^T over n_tokens tokens, symmetric) and damp >= 0.
 * CCE_ERR_ARG for no tokens, CCE_ERR_NUMERIC naming `what` for a non-finite sum or a Hessian
 * that the damping does not make positive definite (raise damp). The caller owns *out
 * (cce_obs_hinv_free). */
cce_status cce_obs_hinv_new(const double *sum_outer, int64_t n, int64_t n_tokens, double damp,
                            const char *what, cce_obs_hinv **out);
void cce_obs_hinv_free(cce_obs_hinv *h);

/* What a sweep does besides updating. */
typedef struct cce_obs_options {
    const cce_quant_spec *quant; /* quantize every kept weight; NULL: no quantization */
    double ratio;                /* unstructured: fraction of weights removed, [0, 1]; 0: none */
    int nm_n, nm_m;              /* N:M pattern (nm_m 0: none; excludes ratio) */
} cce_obs_options;

/* Sweeps w [rows, cols] in place (cols == h->n). With enc non-NULL (cce_quant_encoding_new for
 * options.quant and this shape) the codes and group parameters are written into it; pruned
 * weights get the code of 0. n_pruned (may be NULL) receives how many weights are pruned (earlier
 * zeros included). CCE_ERR_ARG naming `what` for bad options or shapes, CCE_ERR_RANGE for a scale
 * beyond fp16, CCE_ERR_NUMERIC if the result is not finite, CCE_ERR_NOMEM. On failure w is
 * unchanged. */
cce_status cce_obs_sweep(const cce_obs_hinv *h, const cce_obs_options *o, float *w, int64_t rows,
                         int64_t cols, const char *what, cce_quant_encoding *enc,
                         int64_t *n_pruned);

/* Relative output error of replacing w0 by w1 (both [rows, cols]) on inputs with second moment
 * sum_outer [cols, cols]: sqrt(tr(dW S dW^T) / tr(W0 S W0^T)) = ||dW X|| / ||W0 X|| over the
 * calibration tokens, dW = w1 - w0 (the 1 / n_tokens of E[x x^T] cancels; the square root makes it
 * the output-space analogue of the relative Frobenius error, as the compress driver reports it).
 * 0 when both are 0; NaN when only W0's is (a relative error of nothing). CCE_ERR_NOMEM naming
 * `what`. */
cce_status cce_obs_output_error(const float *w0, const float *w1, int64_t rows, int64_t cols,
                                const double *sum_outer, const char *what, double *out);

/* ---- Running GPTQ and SparseGPT on block jobs ------------------------------------------------ */

#define CCE_OBS_CACHE_MAX 8

/* The inverse Hessians of one job's input sites, each computed once (q_proj, k_proj and v_proj
 * share one input, as do gate_proj and up_proj). Zero-initialise; cce_obs_cache_clear frees. */
typedef struct cce_obs_cache {
    size_t n;
    const double *key[CCE_OBS_CACHE_MAX]; /* the site's sum_outer */
    cce_obs_hinv *h[CCE_OBS_CACHE_MAX];
} cce_obs_cache;

void cce_obs_cache_clear(cce_obs_cache *c);

/* Sweeps one job tensor with options o, using the calibration statistics that feed it (CCE_ERR_
 * NOT_FOUND / CCE_ERR_STATE naming strategy and tensor if there are none or they lack second
 * moments; CCE_ERR_ARG if their width is not the tensor's), and fills the measures of its report
 * row: parameters kept by the mask, bytes of the encoding (quant.h's rule with quantization, else
 * cce_sparse_encoded_bytes; N:M counts the values the pattern keeps), sparsity, relative Frobenius
 * and output error, and a note on ragged groups and dead inputs. */
cce_status cce_obs_apply_tensor(const char *strategy, cce_obs_cache *cache, const cce_calib *calib,
                                double damp, const cce_obs_options *o, cce_job_tensor *jt,
                                cce_report_row *row);

#endif
