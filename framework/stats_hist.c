/* Histograms with underflow / overflow counts and their KL divergence (stats_hist.h). */
#include "stats_hist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

cce_status cce_hist_new(size_t bins, double lo, double hi, const char *what, cce_hist **out) {
    *out = NULL;
    if (!what) what = "histogram";
    if (bins < 1 || bins > ((size_t)1 << 20))
        return cce_fail(CCE_ERR_RANGE, "%s: %zu bins (1 to 2^20)", what, bins);
    if (!isfinite(lo) || !isfinite(hi) || !(lo < hi))
        return cce_fail(CCE_ERR_RANGE, "%s: edges [%g, %g) are not a finite range with lo < hi",
                        what, lo, hi);
    cce_hist *h = calloc(1, sizeof *h);
    if (!h) return cce_fail(CCE_ERR_NOMEM, "%s: %zu bins", what, bins);
    if (!(h->h = gsl_histogram_alloc(bins))) {
        free(h);
        return cce_fail(CCE_ERR_NOMEM, "%s: %zu bins", what, bins);
    }
    if (gsl_histogram_set_ranges_uniform(h->h, lo, hi) != 0) {
        cce_hist_free(h);
        return cce_fail(CCE_ERR_RANGE, "%s: GSL refused the edges [%g, %g)", what, lo, hi);
    }
    *out = h;
    return CCE_OK;
}

void cce_hist_free(cce_hist *h) {
    if (!h) return;
    if (h->h) gsl_histogram_free(h->h);
    free(h);
}

void cce_hist_reset(cce_hist *h) {
    gsl_histogram_reset(h->h);
    h->underflow = h->overflow = 0;
}

void cce_hist_add_floats(cce_hist *h, const float *x, size_t n) {
    /* gsl_histogram_increment's bin search, inlined: a first guess from the uniform spacing,
     * then the test GSL makes (range[k] <= v < range[k + 1]) against the edges GSL computed.
     * The same counts as calling gsl_histogram_increment per value (tested), without a call and
     * a bisection per value: the activation hooks bin every value of every window. */
    const size_t nb = h->h->n;
    const double *range = h->h->range;
    double *bin = h->h->bin;
    const double lo = range[0], hi = range[nb], scale = (double)nb / (hi - lo);
    uint64_t under = 0, over = 0;
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        if (v < lo) {
            under++;
        } else if (v >= hi) {
            over++;
        } else if (v == v) { /* not NaN */
            size_t k = (size_t)((v - lo) * scale);
            if (k >= nb) k = nb - 1;
            while (k > 0 && v < range[k]) k--;
            while (k + 1 < nb && v >= range[k + 1]) k++;
            bin[k] += 1;
        }
    }
    h->underflow += under;
    h->overflow += over;
}

/* 1 if a and b have the same bins and edges. */
static int same_edges(const cce_hist *a, const cce_hist *b) {
    return a->h->n == b->h->n && !memcmp(a->h->range, b->h->range, (a->h->n + 1) * sizeof(double));
}

cce_status cce_hist_merge(cce_hist *a, const cce_hist *b) {
    if (!same_edges(a, b))
        return cce_fail(CCE_ERR_ARG,
                        "histogram merge: the edges differ ([%g, %g) in %zu bins vs "
                        "[%g, %g) in %zu bins)",
                        cce_hist_lo(a), cce_hist_hi(a), a->h->n, cce_hist_lo(b), cce_hist_hi(b),
                        b->h->n);
    gsl_histogram_add(a->h, b->h);
    a->underflow += b->underflow;
    a->overflow += b->overflow;
    return CCE_OK;
}

size_t cce_hist_bins(const cce_hist *h) {
    return h->h->n;
}

double cce_hist_lo(const cce_hist *h) {
    return h->h->range[0];
}

double cce_hist_hi(const cce_hist *h) {
    return h->h->range[h->h->n];
}

double cce_hist_total(const cce_hist *h) {
    return gsl_histogram_sum(h->h) + (double)h->underflow + (double)h->overflow;
}

void cce_hist_counts(const cce_hist *h, double *out) {
    if (out) memcpy(out, h->h->bin, h->h->n * sizeof *out);
}

void cce_hist_edges(const cce_hist *h, double *edges) {
    if (edges) memcpy(edges, h->h->range, (h->h->n + 1) * sizeof *edges);
}

/* Cell i of the bins + 2 cells: underflow, the bins, overflow. */
static double cell(const cce_hist *h, size_t i) {
    if (i == 0) return (double)h->underflow;
    if (i == h->h->n + 1) return (double)h->overflow;
    return h->h->bin[i - 1];
}

cce_status cce_hist_kl(const cce_hist *p, const cce_hist *q, double alpha, double *out) {
    if (!same_edges(p, q))
        return cce_fail(CCE_ERR_ARG,
                        "histogram KL: the edges differ ([%g, %g) in %zu bins vs "
                        "[%g, %g) in %zu bins)",
                        cce_hist_lo(p), cce_hist_hi(p), p->h->n, cce_hist_lo(q), cce_hist_hi(q),
                        q->h->n);
    if (!(alpha > 0) || !isfinite(alpha))
        return cce_fail(CCE_ERR_RANGE, "histogram KL: smoothing alpha = %g (must be > 0)", alpha);
    size_t cells = p->h->n + 2;
    double np = cce_hist_total(p) + alpha * (double)cells;
    double nq = cce_hist_total(q) + alpha * (double)cells;
    double kl = 0;
    for (size_t i = 0; i < cells; i++) {
        double pi = (cell(p, i) + alpha) / np, qi = (cell(q, i) + alpha) / nq;
        kl += pi * log(pi / qi);
    }
    /* Rounding can leave a tiny negative sum for nearly equal histograms; KL is >= 0. */
    *out = kl > 0 ? kl : 0.0;
    return CCE_OK;
}
