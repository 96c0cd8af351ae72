/* Contextual Compression Encoding (docs/CCE.md): the pieces of the `cce` strategy, one stage per
 * file, exposed for the strategy (cce.c) and its unit tests.
 *
 *   cce_redundancy.c  stage 1: regularised inverses, leave-one-out R^2, the greedy removal order
 *                     with Schur-complement downdates, eigen-redundancy of a covariance
 *   cce_budget.c      stage 2: the per-layer budget (z-scored mix of redundancy and block
 *                     influence, clipped, shifted by bisection to meet the global target)
 *   cce_fold.c        stage 3: least-squares folding of dropped FFN neurons into down_proj
 *   cce_lowrank.c     stage 4: whitened SVD against G + delta I, the per-layer rank choice
 *                     (one multiplier bisected per layer), the lowrank encoding of a matrix
 *
 * Matrices are row-major doubles unless a comment says float. Every function returns CCE_OK or
 * a failure status after cce_fail() with a detail naming `what` (a layer or tensor). */
#ifndef CCE_INTERNAL_H
#define CCE_INTERNAL_H

#include <stdint.h>
#include <stdio.h>

#include "encoding.h"
#include "lowrank.h"
#include "status.h"

#define CCE_NAME "cce"

/* ---- Stage 1: redundancy --------------------------------------------------------------------- */

/* delta = delta_scale * mean(diag(C)) of C [n, n]. When the mean diagonal is 0 (every input dead)
 * it is delta_scale itself, so that C + delta I stays invertible. */
double cce_delta_of(const double *C, int n, double delta_scale);

/* P [n, n] = (A + delta I)^-1 for a symmetric A [n, n] (LAPACK dpotrf + dpotrs, full matrix
 * written). CCE_ERR_NUMERIC naming `what` when A + delta I is not positive definite (e.g. too
 * small a delta_scale for a calibration set smaller than the width). */
cce_status cce_spd_inverse(const double *A, int n, double delta, double *P, const char *what);

/* The uncentred leave-one-out R^2 of every unit given the others: R2_j = 1 - 1 / (P_jj G_jj) with
 * P = (G + delta I)^-1; 0 for a unit with G_jj = 0. r2 [n]. */
cce_status cce_loo_r2(const double *G, int n, double delta, double *r2, const char *what);

/* Greedy removal (OBS / ZipLM) of k of n units whose inputs have the Gram matrix G [n, n] and
 * which reach the output through the columns of W [rows, n] (W = identity for attention heads).
 * Each round removes the unit of lowest score s_j = ||W[:, j]||^2 / P_jj (ties: the lower index),
 * with P the inverse of G + delta I restricted to the units still present (downdated by the Schur
 * complement of the removed unit, never re-factored) and W refitted by the OBS update
 * W[:, i] -= W[:, j] P_ji / P_jj of the units still present; then it rescores. order [k] receives
 * the removed units in removal order; score0 [n] (may be NULL) the scores before any removal.
 * 0 <= k < n (CCE_ERR_RANGE otherwise). */
cce_status cce_greedy_remove(const double *G, int n, double delta, const double *W, int rows, int k,
                             int *order, double *score0, const char *what);

/* The same greedy removal one step at a time (to interleave several kinds of unit). The caller
 * owns *out (cce_greedy_free). */
typedef struct cce_greedy cce_greedy;
cce_status cce_greedy_new(const double *G, int n, double delta, const double *W, int rows,
                          const char *what, cce_greedy **out);
/* The present unit of lowest score (ties: the lower index) and its score, or -1 when fewer than
 * two units are present (one always stays). */
int cce_greedy_best(const cce_greedy *g, double *score);
/* Current scores [n] (INFINITY for removed units). Borrowed. */
const double *cce_greedy_scores(const cce_greedy *g);
/* Removes unit j: OBS refit of W, Schur downdate of P, rescoring. CCE_ERR_RANGE if j is not
 * present or is the last unit. */
cce_status cce_greedy_drop(cce_greedy *g, int j);
void cce_greedy_free(cce_greedy *g);

/* Layer redundancy of a covariance C [n, n] from its eigenvalues (LAPACKE_dsyevd, descending):
 * r = min{k : sum_{i<=k} lambda_i >= (1 - eps) trace(C)} and *R = 1 - r / n. Negative eigenvalues
 * (rounding) count as 0; a zero trace gives r = 0. curve [n] (may be NULL) receives the cumulative
 * explained-variance fractions. *r_out may be NULL. */
cce_status cce_eigen_redundancy(const double *C, int n, double eps, double *R, int *r_out,
                                double *curve, const char *what);

/* Second moment G [n, n] = sum_outer / n_tokens and, if C is not NULL, covariance
 * C [n, n] = G - mu mu^T with mu = sum / n_tokens. CCE_ERR_ARG naming `what` if n_tokens < 1. */
cce_status cce_moments(const double *sum, const double *sum_outer, int n, int64_t n_tokens,
                       double *G, double *C, const char *what);

/* C_y [d, d] = W_O C_o W_O^T of the attention output, with W_O float [d, m] and C_o [m, m]. */
cce_status cce_output_cov(const float *wo, int d, int m, const double *Co, double *Cy,
                          const char *what);

/* ---- Stage 2: per-layer budget --------------------------------------------------------------- */

/* One layer as the budget sees it. */
typedef struct cce_budget_layer {
    double R;          /* layer redundancy R_l in [0, 1] */
    double BI;         /* block influence BI_l (>= 0) */
    int64_t params;    /* P_l: the block's weight parameters (norms excluded) */
    int64_t unit;      /* parameters one removal unit frees (an FFN neuron: 3 * dim) */
    int64_t max_units; /* how many units the layer can give at most */
} cce_budget_layer;

/* What the budget gives a layer. */
typedef struct cce_budget_out {
    double u, z;     /* u_l and its z-score (0 when std(u) = 0) */
    double planned;  /* rho_l(c) */
    int64_t units;   /* units removed */
    double achieved; /* units * unit / params */
} cce_budget_out;

/* Solves stage 2 for L layers and the global target rho in [0, 0.9]: u_l, z_l, rho_l(c) =
 * clip(rho + c + clip(spread z_l, -spread, spread), 0, cap_l) with cap_l = min(0.95,
 * max_units * unit / params), c by bisection so that sum rho_l P_l = rho sum P_l, then whole units
 * by largest remainder (each layer within one unit of rho_l P_l / unit, the total within one unit
 * of the target). uniform != 0: rho_l = rho. CCE_ERR_RANGE when the caps cannot meet rho (with
 * uniform: when rho exceeds some layer's cap). out [L]; *achieved (may be NULL) the global
 * removed fraction. */
cce_status cce_budget_solve(const cce_budget_layer *layers, int L, double rho, double alpha,
                            double spread, int uniform, cce_budget_out *out, double *achieved);

/* ---- Stage 3: folding ------------------------------------------------------------------------ */

/* W_down' [d, |K|] (float, out) = W[:, K] + W[:, D] G[D, K] (G[K, K] + delta I)^-1 for W float
 * [d, n], G [n, n] and keep [n] (1: in K). With fold == 0 it is W[:, K] unchanged. */
cce_status cce_fold_down(const float *W, int d, int n, const double *G, double delta,
                         const int *keep, int fold, float *out, const char *what);

/* ---- Stage 4: whitened low rank -------------------------------------------------------------- */

/* The largest rank below break-even: the largest r with r (rows + cols) < rows cols (at most
 * min(rows, cols)); 0 when no rank saves parameters. */
int64_t cce_lowrank_max_rank(int64_t rows, int64_t cols);

/* One matrix of a layer as the rank choice sees it. */
typedef struct cce_lr_matrix {
    int64_t rows, cols;  /* [out, in] */
    int64_t k;           /* min(rows, cols) */
    const double *sigma; /* [k] whitened singular values, descending (borrowed) */
    const char *what;    /* the tensor, for messages */
} cce_lr_matrix;

/* Stage 4's choice for one layer (cce_lowrank.c header): rank [n] receives -1 (dense) or a rank
 * in [1, cce_lowrank_max_rank] per matrix, minimising sum dropped / total + mu * parameters kept
 * with mu bisected until at least `budget` parameters go, then the overshoot handed back one rank
 * unit at a time. *removed (may be NULL) gets the parameters removed: budget <= *removed <
 * budget + (rows + cols) of some matrix; *mu (may be NULL) the multiplier. budget <= 0: all
 * dense. CCE_ERR_RANGE when even rank 1 everywhere cannot remove the budget. */
cce_status cce_lowrank_choose(const cce_lr_matrix *m, int n, int64_t budget, int64_t *rank,
                              int64_t *removed, double *mu);

/* The SVD of W S for w float [rows, cols] with S [cols, cols] = cholesky(G + delta I), G the
 * input second moment [cols, cols]. *S and *svd are the caller's (free(*S) after
 * cce_lowrank_svd_free(*svd), which borrows it). Then the output error of truncating to rank r,
 * tr(dW (G + delta I) dW^T), is cce_lowrank_dropped_energy(*svd, r). CCE_ERR_NUMERIC naming
 * `what` when G + delta I is not positive definite. */
cce_status cce_lowrank_whitened(const float *w, int64_t rows, int64_t cols, const double *G,
                                double delta, const char *what, double **S, cce_lowrank_svd **svd);

/* Rank-r factors A = U_r Sigma_r [rows, r], B = V_r^T S^-1 [r, cols] in float32: their product
 * (cce_encoding_lowrank_product, so that decoding gives the same bits) into out [rows, cols] and
 * the lowrank encoding of the pair into *enc (the caller's). CCE_ERR_RANGE for r outside [1, k]. */
cce_status cce_lowrank_encode(const cce_lowrank_svd *d, int64_t rank, const char *what, float *out,
                              cce_encoding **enc);

/* ---- Stage 1 / 3: attention heads and the interleaved stage-3 removal (cce_heads.c) ---------- */

/* The head Gram matrix K [n_heads, n_heads], K_hk = E[z_h . z_k] with z_h = W_O^(h) o_h, from
 * W_O float [d, n_heads * head_dim] (o_proj) and G_o [m, m] = E[o o^T] of the concatenated head
 * outputs (m = n_heads * head_dim). */
cce_status cce_head_gram(const float *wo, int d, int n_heads, int head_dim, const double *Go,
                         double *K, const char *what);

/* The greedy removal object of the heads: G = K, delta = delta_scale * mean(diag(K)), output map
 * a row of ones (y = sum_h z_h), so the first scores are s_h = 1 / P_hh = K_hh (1 - R2_h). The
 * caller owns *out (cce_greedy_free). */
cce_status cce_head_greedy_new(const double *K, int n_heads, double delta_scale, const char *what,
                               cce_greedy **out);

#define CCE_STAGE3_KINDS 4

/* One kind of unit in stage 3's interleaved removal (FFN neurons, query heads). */
typedef struct cce_stage3_kind {
    cce_greedy *g;        /* its greedy removal (NULL: this kind is not removed) */
    int n;                /* units of the kind */
    int64_t unit_params;  /* parameters one unit frees (a neuron 3 dim, a query head 2 e dim) */
    const int32_t *group; /* [n] group of each unit (kv head of a query head), or NULL */
    int n_groups;         /* groups (kv heads) */
    int64_t group_params; /* freed in addition when the last present unit of a group goes */
    int *order;           /* [n] out: removed units in removal order */
    double *score;        /* [n] out (may be NULL): each removed unit's score at its removal */
    int removed;          /* out: how many were removed */
} cce_stage3_kind;

/* Interleaved greedy removal (cce_heads.c header): each round, of the best unit of every kind
 * that still fits in `share` parameters, the one of lowest score per parameter freed goes (ties:
 * the earlier kind); stops when none fits. *removed: the parameters freed (<= share). */
cce_status cce_stage3_select(cce_stage3_kind *kinds, int n_kinds, int64_t share, int64_t *removed,
                             const char *what);

/* out [n_units * unit_len] = keep [n_units] repeated unit_len times (0 / 1). */
void cce_expand_keep(const int *keep, int n_units, int unit_len, int *out);

/* out = w [rows, cols] restricted to the rows with row_keep[a] and the columns with col_keep[b]
 * (NULL: all), in order. */
void cce_copy_kept(const float *w, int64_t rows, int64_t cols, const int *row_keep,
                   const int *col_keep, float *out);

/* ---- Stage clock and benchmark (cce_bench.c) ------------------------------------------------- */

#define CCE_STAGES 5

/* Wall and CPU seconds of stages 1-4 (index = stage; index 0 unused here) added up by every cce
 * plan and apply in the process since the last reset. Not thread-safe: for the benchmark. */
typedef struct cce_stage_mark {
    double wall, cpu; /* CLOCK_MONOTONIC and CLOCK_PROCESS_CPUTIME_ID seconds */
} cce_stage_mark;
cce_stage_mark cce_stage_clock_now(void);
/* Adds the time from `since` to now to stage `stage`. */
void cce_stage_clock_add(int stage, cce_stage_mark since);
void cce_stage_clock_reset(void);
/* wall [CCE_STAGES], cpu [CCE_STAGES] (either may be NULL). */
void cce_stage_clock_read(double *wall, double *cpu);

typedef struct cce_bench_cce_options {
    const char *preset; /* synth preset (default stories110M) */
    int layers;         /* 0: the preset's; else at most that many layers */
    int windows, len;   /* calibration windows x tokens (default 64 x 256) */
    double ratio;       /* global target (default 0.2) */
    int threads;        /* 0: OpenMP's default */
    uint64_t seed;      /* model and tokens (default 1) */
} cce_bench_cce_options;

void cce_bench_cce_options_init(cce_bench_cce_options *o);

/* One run: wall seconds per stage (0: statistics), of the whole run, its CPU seconds, the block
 * parameters removed. */
typedef struct cce_bench_cce_row {
    char spec[96];
    int n_layers;
    double stage[CCE_STAGES];     /* wall seconds */
    double stage_cpu[CCE_STAGES]; /* CPU seconds over all threads (stage 0: not measured, NaN) */
    double total;                 /* wall seconds of the whole run */
    double cpu;                   /* process CPU seconds of the whole run (all threads) */
    double removed;               /* fraction of the block parameters removed */
} cce_bench_cce_row;

/* Runs "cce:ratio=R" and "cce:ratio=R,prune_heads=true" through cce_compress on the synthetic
 * model with random calibration tokens (cce_bench.c header). rows [2]; *n_rows those filled.
 * CCE_ERR_ARG for bad options, CCE_ERR_NOT_FOUND for an unknown preset. */
cce_status cce_bench_cce_run(const cce_bench_cce_options *o, cce_bench_cce_row rows[2],
                             int *n_rows);

/* The table of the rows to f. */
void cce_bench_cce_print(FILE *f, const cce_bench_cce_options *o, const cce_bench_cce_row *rows,
                         int n_rows);

#endif
