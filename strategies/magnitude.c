/* Magnitude pruning: zero the weights of smallest |w|.
 *
 * Scopes (parameter `scope`):
 *   row     each output row of a tensor [out, in] loses cce_ratio_count(ratio, in) weights;
 *   tensor  each tensor loses cce_ratio_count(ratio, numel) weights, wherever they are;
 *   global  one threshold across every tensor the plan prunes at the uniform target: the plan
 *           stage finds the exact k-th smallest |w| over them (k = cce_ratio_count(target,
 *           total)) and allocates each tensor its share, so exactly k weights go in all. Tensors
 *           with their own override (name, pattern, layer) are pruned per tensor at that ratio.
 * N:M (parameter `nm`, rows only): in every group of M consecutive weights along the input, the N
 * largest |w| stay; a ragged last group of len < M weights keeps ceil(N * len / M). The ratio is
 * then fixed by N:M; a tensor whose plan target is 0 stays dense.
 *
 * Counting: removing "ratio" of n weights removes exactly floor(ratio * n) (cce_ratio_count), so
 * a row or tensor never loses more than asked and never loses everything. Ties at the threshold
 * are broken by position: the earlier weight goes first. Weights that are already zero count as
 * removed when they are among the smallest.
 *
 * Selection is a quickselect (median-of-three, branch-free partitions, falling back to a sort of
 * the remaining range if the pivots degrade), O(n) per row on average; groups of up to 16 weights
 * (N:M) rank their members directly. The global threshold is a radix select over the float bit
 * patterns: four passes over the tensors and no copy of them. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "strategy.h"

#define NAME     "magnitude"
#define PAR_MIN  (1 << 15) /* tensors smaller than this are pruned on one thread */
#define ALLOC_BY "global magnitude threshold"

enum { SCOPE_ROW = 0, SCOPE_TENSOR, SCOPE_GLOBAL };

static const char *const scope_choices[] = {"row", "tensor", "global", NULL};

static const cce_param magnitude_params[] = {
    {"ratio", CCE_PARAM_FLOAT, "0.5", 0, 1, CCE_PARAM_MAX_OPEN, NULL,
     "fraction of weights removed (the plan's global target)"},
    {"scope", CCE_PARAM_ENUM, "row", 0, 0, 0, scope_choices,
     "compare |w| within each output row, each tensor, or all planned tensors"},
    {"nm", CCE_PARAM_NM, NULL, 0, 0, 0, NULL,
     "keep the N largest |w| of every M along the input (2:4); replaces ratio"},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL},
};

typedef struct magnitude_priv {
    int scope;
    int nm_n, nm_m; /* 0 without N:M */
    int planned;    /* the global threshold has been allocated */
} magnitude_priv;

static cce_status magnitude_init(void *priv, const cce_params *p) {
    magnitude_priv *mp = priv;
    const char *scope;
    cce_status s = cce_params_get_enum(p, "scope", &scope, &mp->scope);
    if (s) return s;
    if (!cce_params_has(p, "nm")) return CCE_OK;
    if ((s = cce_params_get_nm(p, "nm", &mp->nm_n, &mp->nm_m))) return s;
    if (cce_params_given(p, "ratio"))
        return cce_fail(CCE_ERR_ARG, NAME ": nm = %d:%d fixes the ratio; do not also give ratio",
                        mp->nm_n, mp->nm_m);
    if (mp->scope != SCOPE_ROW)
        return cce_fail(CCE_ERR_ARG,
                        NAME ": nm works within rows; scope = %s cannot be combined "
                             "with it",
                        scope);
    return CCE_OK;
}

/* ---- Selection ------------------------------------------------------------------------------- */

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

/* Zeroes the k smallest |w| of w[0..n) of a small group (n <= 16): a weight goes if fewer than k
 * weights rank before it (smaller, or equal and earlier). Returns the sum of squares removed. */
static double prune_small_group(float *w, int64_t n, int64_t k) {
    float a[16];
    double removed = 0;
    for (int64_t j = 0; j < n; j++) a[j] = fabsf(w[j]);
    for (int64_t j = 0; j < n; j++) {
        int64_t rank = 0;
        for (int64_t i = 0; i < n; i++) rank += a[i] < a[j] || (a[i] == a[j] && i < j);
        if (rank < k) removed += (double)w[j] * w[j], w[j] = 0;
    }
    return removed;
}

/* Zeroes the k smallest |w| of w[0..n), earlier positions first among ties. scratch: [n].
 * Returns the sum of squares removed. */
static double prune_smallest(float *w, int64_t n, int64_t k, float *scratch) {
    double removed = 0;
    if (k <= 0) return 0;
    if (k >= n) {
#pragma omp simd reduction(+ : removed)
        for (int64_t j = 0; j < n; j++) removed += (double)w[j] * w[j], w[j] = 0;
        return removed;
    }
    if (n <= 16) return prune_small_group(w, n, k);
    for (int64_t j = 0; j < n; j++) scratch[j] = fabsf(w[j]);
    int64_t less;
    float t = select_kth(scratch, n, k - 1, &less);
#pragma omp simd reduction(+ : removed)
    for (int64_t j = 0; j < n; j++) { /* everything below the threshold goes */
        float v = w[j];
        int drop = fabsf(v) < t;
        removed += drop ? (double)v * v : 0.0;
        w[j] = drop ? 0.0f : v;
    }
    int64_t ties = k - less; /* >= 1: weights equal to t that go, earlier ones first */
    for (int64_t j = 0; j < n && ties > 0; j++) {
        if (fabsf(w[j]) == t) {
            removed += (double)w[j] * w[j];
            w[j] = 0;
            ties--;
        }
    }
    return removed;
}

/* How many of a group of len weights an N:M pattern keeps: N, or ceil(N * len / M) if ragged. */
static int64_t nm_keep(int64_t len, int n, int m) {
    return len == m ? n : ((int64_t)n * len + m - 1) / m;
}

/* ---- Apply ----------------------------------------------------------------------------------- */

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Prunes one tensor at ratio `target` (or by N:M). Fills the report row's measures. */
static cce_status prune_tensor(const magnitude_priv *mp, cce_job_tensor *jt, cce_report_row *row) {
    cce_tensor *t = jt->weight;
    float *w = t->data; /* [rows, cols] */
    int64_t rows = cce_tensor_rows(t), cols = cce_tensor_cols(t), numel = rows * cols;
    double norm2 = 0, removed = 0;
#pragma omp simd reduction(+ : norm2)
    for (int64_t j = 0; j < numel; j++) norm2 += (double)w[j] * w[j];
    int64_t slots = numel; /* values the sparse encoding stores */
    int by_row = mp->nm_m > 0 || mp->scope == SCOPE_ROW;
    int threads = numel >= PAR_MIN ? omp_get_max_threads() : 1;
    float *scratch = malloc((size_t)(by_row ? threads * cols : numel) * sizeof *scratch); /* [n] */
    if (!scratch) return cce_fail(CCE_ERR_NOMEM, NAME ": %s: out of memory", jt->name);

    if (mp->nm_m > 0 && jt->target > 0) {
        int64_t full = cols / mp->nm_m, tail = cols % mp->nm_m;
        slots = rows * (full * mp->nm_n + (tail ? nm_keep(tail, mp->nm_n, mp->nm_m) : 0));
#pragma omp parallel for schedule(static) reduction(+ : removed) num_threads(threads)
        for (int64_t r = 0; r < rows; r++) {
            float *s = scratch + (size_t)omp_get_thread_num() * cols; /* [cols] */
            for (int64_t g = 0; g < cols; g += mp->nm_m) {
                int64_t len = cols - g < mp->nm_m ? cols - g : mp->nm_m;
                removed += prune_smallest(w + r * cols + g, len,
                                          len - nm_keep(len, mp->nm_n, mp->nm_m), s);
            }
        }
    } else if (mp->nm_m == 0 && mp->scope == SCOPE_ROW) {
        int64_t k = cce_ratio_count(jt->target, cols);
#pragma omp parallel for schedule(static) reduction(+ : removed) num_threads(threads)
        for (int64_t r = 0; r < rows; r++)
            removed += prune_smallest(w + r * cols, cols, k,
                                      scratch + (size_t)omp_get_thread_num() * cols);
    } else if (mp->nm_m == 0) {
        removed = prune_smallest(w, numel, cce_ratio_count(jt->target, numel), scratch);
    }
    free(scratch);

    int64_t zeros = 0;
    for (int64_t j = 0; j < numel; j++) zeros += w[j] == 0.0f;
    int64_t kept = numel - zeros;
    row->params_before = numel;
    row->params_after = kept;
    row->bytes_before = 4 * numel;
    row->bytes_after = mp->nm_m > 0 && jt->target > 0
                           ? cce_sparse_encoded_bytes(numel, slots, mp->nm_m)
                           : cce_sparse_encoded_bytes(numel, kept, 0);
    row->bits_per_weight = numel ? 8.0 * (double)row->bytes_after / (double)numel : 0;
    row->sparsity = numel ? (double)zeros / (double)numel : 0;
    row->rel_fro_error = norm2 > 0 ? sqrt(removed / norm2) : 0;
    return CCE_OK;
}

static cce_status magnitude_apply(void *priv, cce_block_job *job, cce_report *r) {
    magnitude_priv *mp = priv;
    if (mp->scope == SCOPE_GLOBAL && !mp->planned)
        return cce_fail(CCE_ERR_STATE, NAME ": scope = global needs the plan stage before apply "
                                            "(cce_strategy_instance_plan)");
    for (size_t i = 0; i < job->n; i++) { /* check every target before changing anything */
        const cce_job_tensor *jt = &job->tensors[i];
        if (!jt->skip && !(jt->target >= 0 && jt->target <= 1))
            return cce_fail(CCE_ERR_RANGE, NAME ": %s: ratio = %g is outside [0, 1]", jt->name,
                            jt->target);
    }
    for (size_t i = 0; i < job->n; i++) {
        cce_job_tensor *jt = &job->tensors[i];
        if (jt->skip) continue;
        double t0 = now_seconds();
        cce_report_row row;
        cce_report_row_init(&row, NAME, job->layer, jt->name);
        cce_status s = prune_tensor(mp, jt, &row);
        row.seconds = now_seconds() - t0;
        if (s || (s = cce_report_add(r, &row))) return s;
    }
    return CCE_OK;
}

/* ---- Plan: the global threshold -------------------------------------------------------------- */

typedef struct pooled {
    const char *name;
    const cce_tensor *t;
    int64_t less, equal; /* |w| below / at the threshold */
} pooled;

static inline uint32_t abs_bits(float v) {
    float a = fabsf(v);
    uint32_t u;
    memcpy(&u, &a, sizeof u); /* non-negative floats order like their bit patterns */
    return u;
}

/* The bit pattern of the k-th smallest |w| (1-based) over the pool, and how many are below it. */
static uint32_t radix_select(const pooled *pool, size_t n, int64_t k, int64_t *below) {
    static const int shift[3] = {21, 10, 0}, width[3] = {11, 11, 10};
    uint64_t prefix = 0;
    int64_t need = k, less = 0;
    int64_t *hist = calloc(2048, sizeof *hist); /* [2^11] */
    if (!hist) return UINT32_MAX;
    for (int p = 0; p < 3; p++) {
        int hi = shift[p] + width[p];
        uint64_t mask = (1u << width[p]) - 1;
        memset(hist, 0, 2048 * sizeof *hist);
        for (size_t i = 0; i < n; i++) {
            const float *w = pool[i].t->data;
            int64_t numel = cce_tensor_numel(pool[i].t);
            for (int64_t j = 0; j < numel; j++) {
                uint64_t u = abs_bits(w[j]);
                if ((u >> hi) == (prefix >> hi)) hist[(u >> shift[p]) & mask]++;
            }
        }
        int64_t cum = 0;
        uint64_t digit = 0;
        while (cum + hist[digit] < need) cum += hist[digit++];
        need -= cum;
        less += cum;
        prefix |= digit << shift[p];
    }
    free(hist);
    *below = less;
    return (uint32_t)prefix;
}

static cce_status magnitude_plan(void *priv, cce_model *m, const cce_calib *calib, cce_plan *plan) {
    magnitude_priv *mp = priv;
    (void)calib;
    if (mp->scope != SCOPE_GLOBAL) return CCE_OK;
    if (cce_plan_get_kind(plan) != CCE_PLAN_RATIO)
        return cce_fail(CCE_ERR_ARG, NAME ": needs a ratio plan, not a bit-width plan");
    size_t n = cce_model_tensor_count(m), np = 0;
    pooled *pool = calloc(n ? n : 1, sizeof *pool); /* [n] */
    if (!pool) return cce_fail(CCE_ERR_NOMEM, NAME ": out of memory");
    cce_status s = CCE_OK;
    int64_t total = 0;
    for (size_t i = 0; !s && i < n; i++) {
        const char *name = cce_model_tensor_name_at(m, i);
        cce_plan_row d;
        if ((s = cce_plan_resolve(plan, cce_plan_layer_of(name), name, &d))) break;
        if (d.source != CCE_PLAN_UNIFORM) continue; /* skipped, or its own override */
        cce_tensor *t;
        if ((s = cce_model_tensor(m, name, &t)) || (s = cce_tensor_check_finite(t, name))) break;
        pool[np++] = (pooled){name, t, 0, 0};
        total += cce_tensor_numel(t);
    }
    int64_t k = cce_ratio_count(cce_plan_target(plan), total), below = 0;
    uint32_t thr = 0;
    if (!s && k > 0 && (thr = radix_select(pool, np, k, &below)) == UINT32_MAX)
        s = cce_fail(CCE_ERR_NOMEM, NAME ": out of memory");
    int64_t ties = k - below; /* weights at the threshold that go, earlier tensors first */
    for (size_t i = 0; !s && i < np; i++) {
        int64_t numel = cce_tensor_numel(pool[i].t), take = 0;
        if (k > 0) {
            const float *w = pool[i].t->data;
            for (int64_t j = 0; j < numel; j++) {
                uint32_t u = abs_bits(w[j]);
                pool[i].less += u < thr;
                pool[i].equal += u == thr;
            }
            take = pool[i].less + (ties < pool[i].equal ? ties : pool[i].equal);
            ties -= take - pool[i].less;
        }
        s = cce_plan_allocate_tensor(plan, pool[i].name, numel ? (double)take / (double)numel : 0,
                                     ALLOC_BY);
    }
    free(pool);
    if (!s) mp->planned = 1;
    return s;
}

const cce_strategy cce_strategy_magnitude = {
    .api_version = CCE_STRATEGY_API_VERSION,
    .name = NAME,
    .summary = "magnitude pruning: smallest |w| per row, per tensor or global; N:M patterns",
    .params = magnitude_params,
    .needs = 0,
    .priv_size = sizeof(magnitude_priv),
    .init = magnitude_init,
    .plan = magnitude_plan,
    .apply = magnitude_apply,
    .fini = NULL,
};
