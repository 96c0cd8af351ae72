/* Numerical kernels of the Llama forward pass: matrix products (CBLAS wrappers), RMSNorm,
 * rotary position embedding (rotate-half convention), softmax and SwiGLU.
 *
 * Threads (DESIGN section 3): the matrix products call OpenBLAS, which runs its own (OpenMP)
 * threads, so they must not be called from inside an OpenMP parallel region. The other kernels
 * parallelise their own loops with `#pragma omp parallel for` when the work is large enough;
 * none of them calls BLAS.
 *
 * No kernel allocates or fails: callers validate sizes. All buffers are caller-owned. */
#ifndef CCE_KERNELS_H
#define CCE_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Matrix products (CBLAS) ------------------------------------------------------------ */

/* y = x W^T + beta * y: the linear layer over `rows` tokens in one cblas_sgemm.
 * x [rows, in], w [out, in] (PyTorch order), y [rows, out]. beta = 0 overwrites y (which may
 * then hold garbage), beta = 1 accumulates (residual add). rows == 1 uses cblas_sgemv. */
void cce_linear(float *y, const float *x, const float *w, int rows, int in, int out, float beta);

/* y = W x + beta * y (one token): w [out, in], x [in], y [out], via cblas_sgemv. */
void cce_gemv(float *y, const float *w, const float *x, int out, int in, float beta);

/* y = W^T x (one token): w [rows, cols], x [rows], y [cols], via cblas_sgemv; rows == 0 gives
 * zeros. */
void cce_gemv_transposed(float *y, const float *w, const float *x, int rows, int cols);

/* The OpenBLAS core type in use ("SkylakeX", "Haswell", "Prescott", ...). Borrowed, static. */
const char *cce_blas_corename(void);

/* OpenBLAS 0.3.21 (Debian 12) does not recognise some recent x86 CPUs and falls back to its
 * generic SSE3 "Prescott" kernels, 4-5x slower on an AVX-512 machine. When the core in use is
 * such a generic one and the CPU supports AVX-512 (F, BW, DQ, VL) or AVX2 + FMA, returns the
 * OPENBLAS_CORETYPE value that would select the right kernels ("SkylakeX" or "Haswell"), else
 * NULL. The variable is read when the library loads, so it takes a restart to apply. */
const char *cce_blas_preferred_coretype(void);

/* ---- Normalisation ----------------------------------------------------------------------- */

/* RMSNorm of each row: out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w. The sum of squares is
 * accumulated in double. x, out [rows, dim] (out may equal x), w [dim]. */
void cce_rmsnorm(float *out, const float *x, const float *w, int rows, int dim, float eps);

/* ---- Rotary position embedding ------------------------------------------------------------ */

/* Fills the rotation tables for positions 0..n_pos-1: angle(p, i) = p * theta^(-2i/head_dim),
 * computed in double. cos_tab, sin_tab [n_pos, head_dim/2]. head_dim must be even. */
void cce_rope_tables(float *cos_tab, float *sin_tab, int n_pos, int head_dim, double theta);

/* Rotates every head of `rows` consecutive tokens at positions pos0, pos0+1, ... in place,
 * rotate-half convention: inside each head, dimension i pairs with i + head_dim/2 and
 * (a, b) -> (a cos - b sin, a sin + b cos).
 * x [rows, ld] with n_heads heads of head_dim at the start of each row (ld >= n_heads*head_dim);
 * cos_tab, sin_tab [>= pos0 + rows, head_dim/2] from cce_rope_tables. */
void cce_rope_apply(float *x, int rows, int ld, int n_heads, int head_dim, int pos0,
                    const float *cos_tab, const float *sin_tab);

/* ---- Softmax -------------------------------------------------------------------------------- */

/* In-place softmax of x [n]: the maximum is subtracted before exponentiating (so every term is
 * in (0, 1] and the largest is 1) and the terms are summed in vector lanes. n >= 1. */
void cce_softmax(float *x, int n);

/* Causal softmax of a block of attention scores: row r of s (query position q0 + r) is
 * softmax(scale * s[r, 0..q0+r]) and s[r, q0+r+1 .. n_keys-1] is set to 0.
 * s [rows, ld], n_keys <= ld, q0 + rows <= n_keys. */
void cce_softmax_causal(float *s, int rows, int ld, int n_keys, int q0, float scale);

/* ---- Feed-forward -------------------------------------------------------------------------- */

/* SwiGLU gate in place: gate[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)).
 * gate, up [n]. */
void cce_swiglu(float *gate, const float *up, int64_t n);

/* ---- Small helpers ------------------------------------------------------------------------- */

/* Adds a bias to every row: y[r, c] += b[c]. y [rows, cols], b [cols]. One float addition per
 * element, so the result does not depend on the number of threads. */
void cce_add_bias(float *y, const float *b, int rows, int cols);

/* Dot product of a [n] and b [n], vectorised, float accumulation. Inline: attention calls it
 * per cached position. fmaf: the strict C11 build does not contract a * b + c by itself. */
static inline float cce_dot(const float *a, const float *b, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s = fmaf(a[i], b[i], s);
    return s;
}

/* y += alpha * x, x and y [n]. */
static inline void cce_axpy(float *y, float alpha, const float *x, int n) {
#pragma omp simd
    for (int i = 0; i < n; i++) y[i] = fmaf(alpha, x[i], y[i]);
}

/* Index of the largest element of x [n] (the first one on ties); NaN elements are skipped
 * (returns 0 if all are NaN). n >= 1. */
int cce_argmax(const float *x, int n);

#endif
