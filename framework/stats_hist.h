/* Histograms with fixed, uniform edges and underflow / overflow counts, shared by the weight
 * (wstats.h) and activation (astats.h) statistics, and the KL divergence of two histograms.
 *
 * The bins are a GSL histogram (gsl_histogram, uniform ranges): bin i holds lo + i (hi - lo) / bins
 * <= x < lo + (i + 1) (hi - lo) / bins. GSL silently drops values outside [lo, hi); they are
 * counted here: x < lo in underflow, x >= hi in overflow. NaN is counted nowhere (callers check
 * finiteness first and report it).
 *
 * KL divergence. KL(P || Q) = sum_i p_i log(p_i / q_i) over the bins + 2 cells (the bins, the
 * underflow and the overflow cell), with add-alpha (Laplace) smoothing of both histograms:
 *   p_i = (c_i + alpha) / (N + alpha (bins + 2)),
 * where c_i is the cell's count and N the total count. alpha > 0 keeps the divergence finite when
 * Q has an empty cell where P has mass; the project's default is alpha = 0.5 (the Jeffreys /
 * Krichevsky-Trofimov prior). Two histograms with equal counts have KL exactly 0. */
#ifndef CCE_STATS_HIST_H
#define CCE_STATS_HIST_H

#include <gsl/gsl_histogram.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* The smoothing the project uses unless told otherwise. */
#define CCE_HIST_KL_ALPHA 0.5

typedef struct cce_hist {
    gsl_histogram *h;   /* the bins and their edges (owned) */
    uint64_t underflow; /* values x < lo */
    uint64_t overflow;  /* values x >= hi */
} cce_hist;

/* A new empty histogram of `bins` uniform bins over [lo, hi). bins in [1, 2^20], lo < hi, both
 * finite (CCE_ERR_RANGE naming `what` otherwise). The caller owns *out (cce_hist_free). */
cce_status cce_hist_new(size_t bins, double lo, double hi, const char *what, cce_hist **out);
void cce_hist_free(cce_hist *h);

/* Sets every count to zero (edges kept). */
void cce_hist_reset(cce_hist *h);

/* Adds n values x [n] (borrowed). */
void cce_hist_add_floats(cce_hist *h, const float *x, size_t n);

/* Adds the counts of b to a, which must have the same edges (CCE_ERR_ARG otherwise). */
cce_status cce_hist_merge(cce_hist *a, const cce_hist *b);

size_t cce_hist_bins(const cce_hist *h);
double cce_hist_lo(const cce_hist *h);
double cce_hist_hi(const cce_hist *h);

/* Every value added: the bins plus underflow and overflow. */
double cce_hist_total(const cce_hist *h);

/* The counts of the bins into out [bins] and the edges into edges [bins + 1] (either may be
 * NULL). */
void cce_hist_counts(const cce_hist *h, double *out);
void cce_hist_edges(const cce_hist *h, double *edges);

/* KL(p || q) with add-alpha smoothing (see above) into *out. p and q must have the same edges
 * (CCE_ERR_ARG otherwise); alpha must be > 0 and finite (CCE_ERR_RANGE). */
cce_status cce_hist_kl(const cce_hist *p, const cce_hist *q, double alpha, double *out);

#endif
