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

#define N_BUCKETS 256 /* histogram buckets of the first selection pass */
#define TIE_BLOCK 64  /* weights checked at once for scores equal to the threshold */

#define CHUNK 64 /* scores bucketed at once */

/* The buckets of the scores of w[j0..j0+len) (len <= CHUNK) into bk: N_BUCKETS of equal width
 * over [lo, lo + N_BUCKETS / inv], non-decreasing in the score, so every score of a bucket is
 * below every score of a later one. Written without branches, so it vectorizes. */
static inline void buckets_of(const float *w, const float *scale, int64_t j0, int len, float lo,
                              float inv, uint8_t *bk) {
    for (int l = 0; l < len; l++) {
        float a = fabsf(w[j0 + l]) * (scale ? scale[j0 + l] : 1.0f);
        float f = (a - lo) * inv;
        f = f < (float)(N_BUCKETS - 1) ? f : (float)(N_BUCKETS - 1);
        bk[l] = (uint8_t)(int)f;
    }
}

/* The (k+1)-th smallest score of w[0..n) (0 <= k < n) and in *less how many score below it.
 * One pass finds the range, one counts the scores into N_BUCKETS buckets (keeping each score's
 * bucket), a third copies the bucket holding index k into scratch, and a quickselect finishes
 * within it. */
static float select_scores(const float *w, const float *scale, int64_t n, int64_t k, float *scratch,
                           int64_t *less) {
    float lo = INFINITY, hi = -INFINITY;
    if (scale) {
#pragma omp simd reduction(min : lo) reduction(max : hi)
        for (int64_t j = 0; j < n; j++) {
            float v = fabsf(w[j]) * scale[j];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
    } else {
#pragma omp simd reduction(min : lo) reduction(max : hi)
        for (int64_t j = 0; j < n; j++) {
            float v = fabsf(w[j]);
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
    }
    float inv = (float)N_BUCKETS / (hi - lo);
    if (!(inv <= 3.0e38f) || !isfinite(hi) || !isfinite(lo)) inv = 0; /* one bucket */
    int32_t hist[2][N_BUCKETS] = {{0}}; /* two interleaved counts, fewer store stalls */
    /* Every score's bucket, kept for the third pass (which otherwise computes them again); when
     * the allocation fails the third pass recomputes them into bk. */
    uint8_t *all = malloc((size_t)n);
    uint8_t bk[CHUNK];
    for (int64_t j0 = 0; j0 < n; j0 += CHUNK) {
        int len = n - j0 < CHUNK ? (int)(n - j0) : CHUNK, l = 0;
        uint8_t *dst = all ? all + j0 : bk;
        buckets_of(w, scale, j0, len, lo, inv, dst);
        for (; l + 2 <= len; l += 2) hist[0][dst[l]]++, hist[1][dst[l + 1]]++;
        if (l < len) hist[0][dst[l]]++;
    }
    int64_t below = 0;
    int b = 0;
    for (; b < N_BUCKETS - 1; b++) {
        int64_t c = hist[0][b] + hist[1][b];
        if (below + c > k) break;
        below += c;
    }
    int64_t m = 0;
    for (int64_t j0 = 0; j0 < n; j0 += CHUNK) {
        int len = n - j0 < CHUNK ? (int)(n - j0) : CHUNK, hits = 0;
        const uint8_t *c = all ? all + j0 : bk;
        if (!all) buckets_of(w, scale, j0, len, lo, inv, bk);
        for (int l = 0; l < len; l++) hits += c[l] == b;
        for (int l = 0; hits > 0 && l < len; l++)
            if (c[l] == b) scratch[m++] = score_of(w, scale, j0 + l), hits--;
    }
    free(all);
    int64_t in_less;
    float t = select_kth(scratch, m, k - below, &in_less);
    *less = below + in_less;
    return t;
}

/* prune_small_group on every group of m (<= 16) weights of w[0..len) (len a multiple of m),
 * k going from each. Inlined with a constant m the rank loops unroll. */
static inline double prune_groups(float *w, const float *scale, int64_t len, int m, int k) {
    double removed = 0;
    for (int64_t g = 0; g < len; g += m) {
        float a[16];
        float *wg = w + g;
        for (int j = 0; j < m; j++) a[j] = scale ? fabsf(wg[j]) * scale[g + j] : fabsf(wg[j]);
        for (int j = 0; j < m; j++) {
            int rank = 0;
            for (int i = 0; i < m; i++) rank += a[i] < a[j] || (a[i] == a[j] && i < j);
            float v = wg[j];
            int drop = rank < k;
            removed += drop ? (double)v * v : 0.0;
            wg[j] = drop ? 0.0f : v;
        }
    }
    return removed;
}

/* Bit patterns of floats, so that selections are masks, not branches the compiler may keep. */
static inline uint32_t bits_of(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static inline float float_of(uint32_t u) {
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* Weight v with score a against threshold t: *kept receives v or 0 (a < t), the return value
 * the square of what went, in double. */
static inline double drop_lane(float v, float a, float t, float *kept) {
    uint32_t m = -(uint32_t)(a < t), u = bits_of(v);
    float d = float_of(u & m); /* the part removed */
    *kept = float_of(u & ~m);
    return (double)d * d;
}

/* One group of four, wg [4] with scores a [4], losing k: the ranks written out (an earlier equal
 * score ranks first). acc [4] gathers the squares removed. */
static inline void group4(float *wg, const float *a, int k, double *acc) {
    int r0 = (a[1] < a[0]) + (a[2] < a[0]) + (a[3] < a[0]);
    int r1 = (a[0] <= a[1]) + (a[2] < a[1]) + (a[3] < a[1]);
    int r2 = (a[0] <= a[2]) + (a[1] <= a[2]) + (a[3] < a[2]);
    int r3 = (a[0] <= a[3]) + (a[1] <= a[3]) + (a[2] <= a[3]);
    float v0 = wg[0], v1 = wg[1], v2 = wg[2], v3 = wg[3];
    acc[0] += drop_lane(v0, (float)r0, (float)k, &wg[0]);
    acc[1] += drop_lane(v1, (float)r1, (float)k, &wg[1]);
    acc[2] += drop_lane(v2, (float)r2, (float)k, &wg[2]);
    acc[3] += drop_lane(v3, (float)r3, (float)k, &wg[3]);
}

/* prune_groups for m = 4, four groups at a time so that they vectorize. */
static double prune_groups4(float *w, const float *scale, int64_t len, int k) {
    double acc[16] = {0};
    int64_t g = 0;
    for (; g + 16 <= len; g += 16)
        for (int q = 0; q < 16; q += 4) {
            float *wg = w + g + q, a[4];
            for (int j = 0; j < 4; j++) a[j] = fabsf(wg[j]) * (scale ? scale[g + q + j] : 1.0f);
            group4(wg, a, k, acc + q);
        }
    for (; g < len; g += 4) {
        float *wg = w + g, a[4];
        for (int j = 0; j < 4; j++) a[j] = fabsf(wg[j]) * (scale ? scale[g + j] : 1.0f);
        group4(wg, a, k, acc);
    }
    double removed = 0;
    for (int l = 0; l < 16; l++) removed += acc[l];
    return removed;
}

/* Zeroes every weight of w[0..n) scoring below t; returns the sum of squares removed. Lanes of
 * 16 with their own sums, so the compiler vectorizes the pass. */
static double drop_below(float *w, const float *scale, int64_t n, float t) {
    double acc[16] = {0};
    int64_t j0 = 0;
    if (scale) {
        for (; j0 + 16 <= n; j0 += 16)
            for (int l = 0; l < 16; l++) {
                float v = w[j0 + l];
                acc[l] += drop_lane(v, fabsf(v) * scale[j0 + l], t, &w[j0 + l]);
            }
    } else {
        for (; j0 + 16 <= n; j0 += 16)
            for (int l = 0; l < 16; l++) {
                float v = w[j0 + l];
                acc[l] += drop_lane(v, fabsf(v), t, &w[j0 + l]);
            }
    }
    double removed = 0;
    for (int l = 0; l < 16; l++) removed += acc[l];
    for (int64_t j = j0; j < n; j++) {
        float v = w[j];
        if (score_of(w, scale, j) < t) removed += (double)v * v, w[j] = 0.0f;
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
    int64_t less;
    float t = select_scores(w, scale, n, k - 1, scratch, &less);
    /* Everything scoring below the threshold goes; then the first k - less scoring exactly t. */
    removed = drop_below(w, scale, n, t);
    /* A weight zeroed above now scores 0, which is below t (t > 0 whenever anything was
     * dropped), so only weights scoring exactly t match here. Blocks without one are skipped
     * after a vector count. */
    int64_t ties = k - less; /* >= 1: weights scoring t that go, earlier ones first */
    for (int64_t j0 = 0; j0 < n && ties > 0; j0 += TIE_BLOCK) {
        int64_t end = n - j0 < TIE_BLOCK ? n : j0 + TIE_BLOCK;
        int hits = 0;
#pragma omp simd reduction(+ : hits)
        for (int64_t j = j0; j < end; j++) hits += score_of(w, scale, j) == t;
        for (int64_t j = j0; hits > 0 && j < end && ties > 0; j++) {
            if (score_of(w, scale, j) == t) {
                removed += (double)w[j] * w[j];
                w[j] = 0;
                ties--;
            }
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
    return cce_prune_rows_norm(strategy, tensor, w, rows, cols, scale, ratio, nm_n, nm_m, removed,
                               slots, NULL);
}

cce_status cce_prune_rows_norm(const char *strategy, const char *tensor, float *w, int64_t rows,
                               int64_t cols, const float *scale, double ratio, int nm_n, int nm_m,
                               double *removed, int64_t *slots, double *norm2) {
    double gone = 0, before = 0;
    int threads = rows * cols >= PAR_MIN ? omp_get_max_threads() : 1;
    float *scratch = malloc((size_t)(threads * cols) * sizeof *scratch); /* [threads, cols] */
    if (!scratch) return cce_fail(CCE_ERR_NOMEM, "%s: %s: out of memory", strategy, tensor);
    if (nm_m > 0) {
        int64_t full = cols / nm_m, tail = cols % nm_m;
        *slots = rows * (full * nm_n + (tail ? cce_prune_nm_keep(tail, nm_n, nm_m) : 0));
#pragma omp parallel for schedule(static) reduction(+ : gone, before) num_threads(threads)
        for (int64_t r = 0; r < rows; r++) {
            float *s = scratch + (size_t)omp_get_thread_num() * cols; /* [cols] */
            float *wr = w + r * cols;                                 /* [cols] */
            if (norm2) before += cce_prune_norm2(wr, cols);
            int64_t g = full * nm_m;
            if (nm_m == 4)
                gone += prune_groups4(wr, scale, g, 4 - nm_n);
            else if (nm_m <= 16 && nm_n < nm_m)
                gone += prune_groups(wr, scale, g, nm_m, nm_m - nm_n);
            else
                g = 0;
            for (; g < cols; g += nm_m) {
                int64_t len = cols - g < nm_m ? cols - g : nm_m;
                gone += cce_prune_smallest(wr + g, scale ? scale + g : NULL, len,
                                           len - cce_prune_nm_keep(len, nm_n, nm_m), s);
            }
        }
    } else {
        int64_t k = cce_ratio_count(ratio, cols);
        *slots = rows * (cols - k);
#pragma omp parallel for schedule(static) reduction(+ : gone, before) num_threads(threads)
        for (int64_t r = 0; r < rows; r++) {
            if (norm2) before += cce_prune_norm2(w + r * cols, cols);
            gone += cce_prune_smallest(w + r * cols, scale, cols, k,
                                       scratch + (size_t)omp_get_thread_num() * cols);
        }
    }
    free(scratch);
    *removed = gone;
    if (norm2) *norm2 = before;
    return CCE_OK;
}

double cce_prune_norm2(const float *w, int64_t n) {
    double norm2 = 0;
#pragma omp simd reduction(+ : norm2)
    for (int64_t j = 0; j < n; j++) norm2 += (double)w[j] * w[j];
    return norm2;
}

/* cce_prune_fill_row with the count of zero weights given. */
static void fill_row_zeros(cce_report_row *row, int64_t numel, int64_t zeros, double norm2,
                           double removed, int nm_m, int64_t slots) {
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

void cce_prune_fill_row(cce_report_row *row, const float *w, int64_t numel, double norm2,
                        double removed, int nm_m, int64_t slots) {
    int64_t zeros = 0;
#pragma omp simd reduction(+ : zeros)
    for (int64_t j = 0; j < numel; j++) zeros += w[j] == 0.0f;
    fill_row_zeros(row, numel, zeros, norm2, removed, nm_m, slots);
}

cce_status cce_prune_finish(cce_job_tensor *jt, cce_report_row *row, int64_t numel, double norm2,
                            double removed, int nm_n, int nm_m, int64_t slots) {
    /* stored as the mask or N:M pattern and the kept values (encoding.h) */
    cce_status s = cce_encoding_new_sparse(jt->weight, nm_n, nm_m, jt->name, &jt->encoding);
    if (s) return s;
    /* Every weight the encoding leaves out is zero, so the zeros are those plus the zero values
     * it stores (N:M top-ups, -0.0): a pass over the kept values instead of the tensor. */
    const cce_encoding *e = jt->encoding;
    int64_t zeros = numel - e->kept;
#pragma omp simd reduction(+ : zeros)
    for (int64_t j = 0; j < e->kept; j++) zeros += e->values[j] == 0.0f;
    fill_row_zeros(row, numel, zeros, norm2, removed, nm_m, slots);
    return CCE_OK;
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
