/* Pruning machinery shared by magnitude.c and wanda.c (prune_common.h).
 *
 * Selection is a quickselect (median-of-three, branch-free partitions, falling back to a sort of
 * the remaining range if the pivots degrade), O(n) per row on average; groups of up to 16 weights
 * (N:M) rank their members directly. */
#include "prune_common.h"

#include "encoding.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PAR_MIN (1 << 15) /* tensors smaller than this are pruned on one thread */

/* The score of weight j: |w| or |w| * scale[j], in float. */
static inline float score_of(const float *w, const float *scale, int64_t j) {
    return scale ? fabsf(w[j]) * scale[j] : fabsf(w[j]);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Moves the elements of a[lo..hi] below p (partition_below) or equal to p (partition_equal) to the
 * front and returns the end of that part. Branch-free: every element is swapped and the front
 * grows by the comparison, since a branch would mispredict on half of random data. */
static int64_t partition_below(float *a, int64_t lo, int64_t hi, float p) {
    int64_t j = lo;
    for (int64_t i = lo; i <= hi; i++) {
        float v = a[i];
        a[i] = a[j];
        a[j] = v;
        j += v < p;
    }
    return j;
}

static int64_t partition_equal(float *a, int64_t lo, int64_t hi, float p) {
    int64_t j = lo;
    for (int64_t i = lo; i <= hi; i++) {
        float v = a[i];
        a[i] = a[j];
        a[j] = v;
        j += v == p;
    }
    return j;
}

/* The value that sorted order puts at index k of a[0..n) (a is permuted), and in *less how many
 * elements are strictly smaller. Quickselect: median-of-three pivot, then one pass splits off the
 * elements below it and, if k is not among those, a second the elements equal to it, so runs of
 * equal values (zeros of an already pruned tensor) cost one pass. Invariant: everything left of
 * lo is smaller than, and everything right of hi larger than, every element of [lo, hi]. After
 * O(log n) rounds without convergence (adversarial pivots) the rest is sorted. */
static float select_kth(float *a, int64_t n, int64_t k, int64_t *less) {
    int64_t lo = 0, hi = n - 1;
    int budget = 16;
    for (int64_t m = n; m > 1; m >>= 1) budget += 2;
    while (hi > lo) {
        if (budget-- == 0) {
            qsort(a + lo, (size_t)(hi - lo + 1), sizeof *a, cmp_float);
            int64_t i = k;
            while (i > lo && a[i - 1] == a[k]) i--;
            *less = i;
            return a[k];
        }
        float x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi];
        float p = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        int64_t below = partition_below(a, lo, hi, p); /* [lo, below) < p */
        if (k < below) {
            hi = below - 1;
            continue;
        }
        int64_t upto = partition_equal(a, below, hi, p); /* [below, upto) == p, the rest > p */
        if (k < upto) {
            *less = below;
            return p;
        }
        lo = upto;
    }
    *less = lo;
    return a[k];
}

/* Zeroes the k lowest scores of a small group (n <= 16): a weight goes if fewer than k weights
 * rank before it (lower score, or equal and earlier). Returns the sum of squares removed. */
static double prune_small_group(float *w, const float *scale, int64_t n, int64_t k) {
    float a[16];
    double removed = 0;
    for (int64_t j = 0; j < n; j++) a[j] = score_of(w, scale, j);
    for (int64_t j = 0; j < n; j++) {
        int64_t rank = 0;
        for (int64_t i = 0; i < n; i++) rank += a[i] < a[j] || (a[i] == a[j] && i < j);
        if (rank < k) removed += (double)w[j] * w[j], w[j] = 0;
    }
    return removed;
}

double cce_prune_smallest(float *w, const float *scale, int64_t n, int64_t k, float *scratch) {
    double removed = 0;
    if (k <= 0) return 0;
    if (k >= n) {
#pragma omp simd reduction(+ : removed)
        for (int64_t j = 0; j < n; j++) removed += (double)w[j] * w[j], w[j] = 0;
        return removed;
    }
    if (n <= 16) return prune_small_group(w, scale, n, k);
    for (int64_t j = 0; j < n; j++) scratch[j] = score_of(w, scale, j);
    int64_t less;
    float t = select_kth(scratch, n, k - 1, &less);
    /* Everything scoring below the threshold goes; then the first k - less scoring exactly t. */
    if (scale) {
#pragma omp simd reduction(+ : removed)
        for (int64_t j = 0; j < n; j++) {
            float v = w[j];
            int drop = fabsf(v) * scale[j] < t;
            removed += drop ? (double)v * v : 0.0;
            w[j] = drop ? 0.0f : v;
        }
    } else {
#pragma omp simd reduction(+ : removed)
        for (int64_t j = 0; j < n; j++) {
            float v = w[j];
            int drop = fabsf(v) < t;
            removed += drop ? (double)v * v : 0.0;
            w[j] = drop ? 0.0f : v;
        }
    }
    /* A weight zeroed above now scores 0, which is below t (t > 0 whenever anything was
     * dropped), so only weights scoring exactly t match here. */
    int64_t ties = k - less; /* >= 1: weights scoring t that go, earlier ones first */
    for (int64_t j = 0; j < n && ties > 0; j++) {
        if (score_of(w, scale, j) == t) {
            removed += (double)w[j] * w[j];
            w[j] = 0;
            ties--;
        }
    }
    return removed;
}

int64_t cce_prune_nm_keep(int64_t len, int n, int m) {
    return len == m ? n : ((int64_t)n * len + m - 1) / m;
}

cce_status cce_prune_rows(const char *strategy, const char *tensor, float *w, int64_t rows,
                          int64_t cols, const float *scale, double ratio, int nm_n, int nm_m,
                          double *removed, int64_t *slots) {
    double gone = 0;
    int threads = rows * cols >= PAR_MIN ? omp_get_max_threads() : 1;
    float *scratch = malloc((size_t)(threads * cols) * sizeof *scratch); /* [threads, cols] */
    if (!scratch) return cce_fail(CCE_ERR_NOMEM, "%s: %s: out of memory", strategy, tensor);
    if (nm_m > 0) {
        int64_t full = cols / nm_m, tail = cols % nm_m;
        *slots = rows * (full * nm_n + (tail ? cce_prune_nm_keep(tail, nm_n, nm_m) : 0));
#pragma omp parallel for schedule(static) reduction(+ : gone) num_threads(threads)
        for (int64_t r = 0; r < rows; r++) {
            float *s = scratch + (size_t)omp_get_thread_num() * cols; /* [cols] */
            for (int64_t g = 0; g < cols; g += nm_m) {
                int64_t len = cols - g < nm_m ? cols - g : nm_m;
                gone += cce_prune_smallest(w + r * cols + g, scale ? scale + g : NULL, len,
                                           len - cce_prune_nm_keep(len, nm_n, nm_m), s);
            }
        }
    } else {
        int64_t k = cce_ratio_count(ratio, cols);
        *slots = rows * (cols - k);
#pragma omp parallel for schedule(static) reduction(+ : gone) num_threads(threads)
        for (int64_t r = 0; r < rows; r++)
            gone += cce_prune_smallest(w + r * cols, scale, cols, k,
                                       scratch + (size_t)omp_get_thread_num() * cols);
    }
    free(scratch);
    *removed = gone;
    return CCE_OK;
}

double cce_prune_norm2(const float *w, int64_t n) {
    double norm2 = 0;
#pragma omp simd reduction(+ : norm2)
    for (int64_t j = 0; j < n; j++) norm2 += (double)w[j] * w[j];
    return norm2;
}

void cce_prune_fill_row(cce_report_row *row, const float *w, int64_t numel, double norm2,
                        double removed, int nm_m, int64_t slots) {
    int64_t zeros = 0;
    for (int64_t j = 0; j < numel; j++) zeros += w[j] == 0.0f;
    int64_t kept = numel - zeros;
    row->params_before = numel;
    row->params_after = kept;
    row->bytes_before = 4 * numel;
    row->bytes_after = nm_m > 0 ? cce_sparse_encoded_bytes(numel, slots, nm_m)
                                : cce_sparse_encoded_bytes(numel, kept, 0);
    row->bits_per_weight = numel ? 8.0 * (double)row->bytes_after / (double)numel : 0;
    row->sparsity = numel ? (double)zeros / (double)numel : 0;
    row->rel_fro_error = norm2 > 0 ? sqrt(removed / norm2) : 0;
}

double cce_prune_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

cce_status cce_prune_finish(cce_job_tensor *jt, cce_report_row *row, int64_t numel, double norm2,
                            double removed, int nm_n, int nm_m, int64_t slots) {
    cce_prune_fill_row(row, jt->weight->data, numel, norm2, removed, nm_m, slots);
    /* stored as the mask or N:M pattern and the kept values (encoding.h) */
    return cce_encoding_new_sparse(jt->weight, nm_n, nm_m, jt->name, &jt->encoding);
}

cce_status cce_prune_apply(const char *strategy, cce_block_job *job, cce_report *r,
                           cce_prune_tensor_fn prune, const void *priv) {
    for (size_t i = 0; i < job->n; i++) { /* check every target before changing anything */
        const cce_job_tensor *jt = &job->tensors[i];
        if (!jt->skip && !(jt->target >= 0 && jt->target <= 1))
            return cce_fail(CCE_ERR_RANGE, "%s: %s: ratio = %g is outside [0, 1]", strategy,
                            jt->name, jt->target);
    }
    for (size_t i = 0; i < job->n; i++) {
        cce_job_tensor *jt = &job->tensors[i];
        if (jt->skip) continue;
        double t0 = cce_prune_now();
        cce_report_row row;
        cce_report_row_init(&row, strategy, job->layer, jt->name);
        cce_status s = prune(priv, job, jt, &row);
        row.seconds = cce_prune_now() - t0;
        if (s || (s = cce_report_add(r, &row))) return s;
    }
    return CCE_OK;
}
