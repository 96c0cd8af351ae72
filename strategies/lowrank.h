/* Low-rank factorisation of a linear layer's weight W [out, in] into A [out, r] B [r, in]
 * (strategies/lowrank.c is the "lowrank" strategy built on it).
 *
 * Plain SVD: W = U Sigma V^T, A = U_r Sigma_r, B = V_r^T. The Frobenius error ||W - A B||_F^2 is
 * the sum of the dropped squared singular values (Eckart-Young).
 *
 * Activation-whitened SVD (SVD-LLM, Wang et al. 2024): with G = E[x x^T] = sum_outer / n_tokens
 * the input second moment and S its lower Cholesky factor (G = S S^T), the output error of a
 * change dW is tr(dW G dW^T) = ||dW S||_F^2. Truncating the SVD of W S = U Sigma V^T to rank r and
 * mapping back, A = U_r Sigma_r, B = V_r^T S^-1, gives the smallest output error of any rank-r
 * matrix: tr(dW G dW^T) = the sum of the dropped squared singular values of W S.
 * If G is not positive definite (dead inputs, fewer tokens than inputs), `damp` * mean(diag G) is
 * added to its diagonal once and the factorisation retried; the identity then holds for the
 * damped G. The factorisations run in double through LAPACK (dpotrf, dgesdd) and BLAS (dtrmm,
 * dtrsm for the triangular products and solves). */
#ifndef CCE_LOWRANK_H
#define CCE_LOWRANK_H

#include <stdint.h>

#include "calib.h"
#include "status.h"
#include "tensor.h"

/* The lower Cholesky factor S [n, n] (row-major, zero above the diagonal) of G = sum_outer /
 * n_tokens, sum_outer [n, n] symmetric. *damp_used receives 0 if G was positive definite, else
 * damp (the fraction of mean(diag G) added to the diagonal). CCE_ERR_ARG naming `what` for n < 1
 * or n_tokens < 1; CCE_ERR_NUMERIC for a non-finite sum or a G that damping does not make
 * positive definite (raise damp; damp 0 never retries); CCE_ERR_NOMEM. The caller frees *s. */
cce_status cce_lowrank_whitening_new(const double *sum_outer, int64_t n, int64_t n_tokens,
                                     double damp, const char *what, double **s, double *damp_used);

/* The thin SVD of W S (or of W when S is NULL). */
typedef struct cce_lowrank_svd {
    int64_t rows, cols; /* W's shape [out, in] */
    int64_t k;          /* min(rows, cols): the full rank */
    double *u;          /* [rows, k] left singular vectors */
    double *sigma;      /* [k] singular values, descending */
    double *vt;         /* [k, cols] right singular vectors, as rows */
    const double *s;    /* [cols, cols] the whitening factor (borrowed), or NULL */
} cce_lowrank_svd;

/* Decomposes w [rows, cols] (float32, row-major), whitened by s [cols, cols] (lower triangular,
 * from cce_lowrank_whitening_new; borrowed, must outlive *out) or plain with s NULL.
 * CCE_ERR_ARG naming `what` for an empty shape, CCE_ERR_NUMERIC for non-finite weights or an SVD
 * that does not converge, CCE_ERR_NOMEM. The caller owns *out (cce_lowrank_svd_free). */
cce_status cce_lowrank_svd_new(const float *w, int64_t rows, int64_t cols, const double *s,
                               const char *what, cce_lowrank_svd **out);
void cce_lowrank_svd_free(cce_lowrank_svd *d);

/* The kept rank for a ratio of parameters removed (DESIGN section 5):
 * floor((1 - ratio) * rows * cols / (rows + cols)), ratio clamped to [0, 1]; the rank never
 * exceeds min(rows, cols). Robust to rounding like cce_ratio_count: a product that is a whole
 * number up to rounding gives that number. */
int64_t cce_lowrank_rank_for_ratio(double ratio, int64_t rows, int64_t cols);

/* The smallest rank r whose kept squared singular values sigma_0^2 + ... + sigma_{r-1}^2 reach
 * energy * (the sum of all of them); energy in (0, 1]. 0 for a zero matrix. */
int64_t cce_lowrank_rank_for_energy(const cce_lowrank_svd *d, double energy);

/* The sum of the dropped squared singular values sigma_r^2 + ... + sigma_{k-1}^2: the squared
 * Frobenius error (plain) or tr(dW G dW^T) (whitened) of truncating to rank r. */
double cce_lowrank_dropped_energy(const cce_lowrank_svd *d, int64_t rank);

/* The factors of rank r (0 <= r <= k): A = U_r Sigma_r [rows, r], B = V_r^T S^-1 [r, cols]
 * (V_r^T without whitening), rounded to float32. Either of a, b may be NULL to skip it.
 * CCE_ERR_RANGE naming `what` for r outside [0, k]. The caller owns *a and *b. */
cce_status cce_lowrank_svd_factors(const cce_lowrank_svd *d, int64_t rank, const char *what,
                                   cce_tensor **a, cce_tensor **b);

/* The rank-r approximation A B computed in double and rounded to float32 into out [rows, cols]
 * (may be the buffer the SVD was made from). CCE_ERR_RANGE for r outside [0, k], CCE_ERR_NOMEM. */
cce_status cce_lowrank_svd_product(const cce_lowrank_svd *d, int64_t rank, const char *what,
                                   float *out);

/* One call: the rank-r factors of w [out, in] (2-D), whitened by the second moment of stats when
 * stats is non-NULL (stats->sum_outer required, stats->dim == in) with damping as in
 * cce_lowrank_whitening_new, plain otherwise. Errors as above, naming `what`; CCE_ERR_STATE when
 * stats has no second moments, CCE_ERR_ARG when its width is not w's. The caller owns *a, *b. */
cce_status cce_lowrank_factor(const cce_tensor *w, const cce_calib_input *stats, double damp,
                              int64_t rank, const char *what, cce_tensor **a, cce_tensor **b);

#endif
