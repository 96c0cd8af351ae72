/* Optimal Brain Surgeon machinery shared by GPTQ and SparseGPT (obs.h). */
#include "obs.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "calib.h"
#include "encoding.h"

/* ---- The inverse Hessian --------------------------------------------------------------------- */

void cce_obs_hinv_free(cce_obs_hinv *h) {
    if (!h) return;
    free(h->u);
    free(h->dead);
    free(h);
}

/* Reverses a[0..n). */
static void reverse(double *a, int64_t n) {
    for (int64_t i = 0, j = n - 1; i < j; i++, j--) {
        double t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

cce_status cce_obs_hinv_new(const double *sum_outer, int64_t n, int64_t n_tokens, double damp,
                            const char *what, cce_obs_hinv **out) {
    *out = NULL;
    if (n < 1) return cce_fail(CCE_ERR_ARG, "%s: input width %lld", what, (long long)n);
    if (n_tokens < 1)
        return cce_fail(CCE_ERR_ARG, "%s: the calibration statistics hold no tokens", what);
    if (!(damp >= 0 && isfinite(damp)))
        return cce_fail(CCE_ERR_RANGE, "%s: damp = %g must be finite and >= 0", what, damp);
    cce_obs_hinv *h = calloc(1, sizeof *h);
    if (h) {
        h->n = n;
        h->u = malloc((size_t)(n * n) * sizeof *h->u); /* [n, n] */
        h->dead = calloc((size_t)n, 1);                /* [n] */
    }
    if (!h || !h->u || !h->dead) {
        cce_obs_hinv_free(h);
        return cce_fail(CCE_ERR_NOMEM, "%s: out of memory for a %lld x %lld Hessian", what,
                        (long long)n, (long long)n);
    }
    double *a = h->u, scale = 2.0 / (double)n_tokens, bad = 0, mean = 0;
    for (int64_t i = 0; i < n * n; i++) {
        a[i] = scale * sum_outer[i];
        bad += a[i] - a[i];
    }
    if (bad != 0) {
        cce_obs_hinv_free(h);
        return cce_fail(CCE_ERR_NUMERIC, "%s: the input second moment holds NaN or Inf", what);
    }
    for (int64_t j = 0; j < n; j++) {
        if (a[j * n + j] == 0) {
            a[j * n + j] = 1;
            h->dead[j] = 1;
            h->n_dead++;
        }
        mean += a[j * n + j];
    }
    mean /= (double)n;
    for (int64_t j = 0; j < n; j++) a[j * n + j] += damp * mean;
    /* With J the reversal permutation, factor J H J = R^T R (R upper). Then
     * H^-1 = (J R^-1 J)(J R^-T J) = U^T U with U = J R^-T J upper triangular, which is the
     * Cholesky factor of H^-1 (unique with a positive diagonal): one factorization and one
     * triangular inverse instead of factor, invert, factor again. J H J is the flat array
     * reversed; U[i][j] = R^-1[n-1-j][n-1-i] is the flat array reversed again, transposed. */
    reverse(a, n * n);
    lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', (lapack_int)n, a, (lapack_int)n);
    if (info == 0)
        info = LAPACKE_dtrtri(LAPACK_ROW_MAJOR, 'U', 'N', (lapack_int)n, a, (lapack_int)n);
    if (info != 0) {
        cce_obs_hinv_free(h);
        if (info < 0)
            return cce_fail(CCE_ERR_INTERNAL, "%s: LAPACK rejected argument %d", what, -(int)info);
        return cce_fail(CCE_ERR_NUMERIC,
                        "%s: the damped Hessian is not positive definite; raise damp (now %g)",
                        what, damp);
    }
    reverse(a, n * n);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) {
            a[i * n + j] = a[j * n + i];
            a[j * n + i] = 0;
        }
    *out = h;
    return CCE_OK;
}

/* ---- Selection ------------------------------------------------------------------------------- */

typedef struct ranked {
    double s; /* saliency; -1 for an earlier zero */
    int64_t i;
} ranked;

static int cmp_ranked(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Marks the p lowest-saliency weights of one row's columns [c0, c1) as pruned (earlier zeros,
 * already marked, rank first). scratch: [c1 - c0]. */
static void select_group(const double *wr, uint8_t *pr, const double *d2, int64_t c0, int64_t c1,
                         int64_t p, ranked *scratch) {
    int64_t len = c1 - c0;
    if (p <= 0) return;
    for (int64_t j = 0; j < len; j++)
        scratch[j] = (ranked){pr[c0 + j] ? -1.0 : wr[c0 + j] * wr[c0 + j] / d2[c0 + j], j};
    if (len <= 16) { /* small groups: rank directly */
        for (int64_t j = 0; j < len; j++) {
            int64_t rank = 0;
            for (int64_t i = 0; i < len; i++) rank += cmp_ranked(&scratch[i], &scratch[j]) < 0;
            if (rank < p) pr[c0 + j] = 1;
        }
        return;
    }
    qsort(scratch, (size_t)len, sizeof *scratch, cmp_ranked);
    for (int64_t j = 0; j < p && j < len; j++) pr[c0 + scratch[j].i] = 1;
}

/* Marks the k lowest-saliency weights of columns [b0, b1) over all rows (ties: row-major order).
 * sal, tmp: [rows * (b1 - b0)]. */
static void select_block(const double *wd, uint8_t *pruned, const double *d2, int64_t rows,
                         int64_t cols, int64_t b0, int64_t b1, int64_t k, double *sal,
                         double *tmp) {
    int64_t bl = b1 - b0, n = rows * bl;
    if (k <= 0) return;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < bl; j++) {
            int64_t at = r * cols + b0 + j;
            sal[r * bl + j] = pruned[at] ? -1.0 : wd[at] * wd[at] / d2[b0 + j];
        }
    if (k >= n) {
        for (int64_t r = 0; r < rows; r++) memset(pruned + r * cols + b0, 1, (size_t)bl);
        return;
    }
    memcpy(tmp, sal, (size_t)n * sizeof *tmp);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
    double t = tmp[k - 1];
    int64_t less = k - 1;
    while (less > 0 && tmp[less - 1] == t) less--;
    int64_t ties = k - less;
    for (int64_t i = 0; i < n; i++) {
        int go = sal[i] < t || (sal[i] == t && ties > 0);
        if (sal[i] == t && ties > 0) ties--;
        if (go) pruned[(i / bl) * cols + b0 + i % bl] = 1;
    }
}

/* ---- The sweep ------------------------------------------------------------------------------- */

typedef struct sweep {
    const cce_obs_hinv *h;
    const cce_obs_options *o;
    int64_t rows, cols, block, glen, gpr;
    double *wd;              /* [rows, cols] working weights */
    uint8_t *pruned;         /* [rows, cols] 1: q = 0 */
    double *err;             /* [rows, block] scaled errors of the current block */
    double *d2;              /* [cols] U_cc^2 */
    cce_quant_group *params; /* [n_groups] current group parameters (quantizing) */
    uint8_t *codes;          /* [rows, cols] codes (with an encoding) */
    ranked *nm_scratch;      /* [threads, nm_m] */
    int fail;                /* a group's range was not finite (1) or its scale beyond fp16 (2) */
    int64_t fail_row;
} sweep;

static int64_t group_index(const sweep *sw, int64_t r, int64_t c) {
    switch (sw->o->quant->granularity) {
    case CCE_QUANT_TENSOR:
        return 0;
    case CCE_QUANT_CHANNEL:
        return r;
    default:
        return r * sw->gpr + c / sw->glen;
    }
}

/* Parameters of row r's group starting at column c, from its current weights that are kept. */
static int group_from_current(sweep *sw, int64_t r, int64_t c) {
    const double *wr = sw->wd + r * sw->cols;
    const uint8_t *pr = sw->pruned + r * sw->cols;
    int64_t end = c + sw->glen < sw->cols ? c + sw->glen : sw->cols;
    float lo = 0, hi = 0;
    for (int64_t j = c; j < end; j++) {
        if (pr[j]) continue;
        float v = (float)wr[j];
        if (!isfinite(v)) return 1;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    const cce_quant_spec *q = sw->o->quant;
    cce_quant_group *g = &sw->params[group_index(sw, r, c)];
    return cce_quant_group_params(q->bits, q->symmetric, lo, hi, "sweep", g) ? 2 : 0;
}

/* Row r over the columns [b0, b1) of one block. Returns 0, or a failure kind. */
static int sweep_row(sweep *sw, int64_t r, int64_t b0, int64_t b1) {
    const cce_obs_options *o = sw->o;
    const double *u = sw->h->u;
    int64_t cols = sw->cols;
    double *wr = sw->wd + r * cols;       /* [cols] */
    uint8_t *pr = sw->pruned + r * cols;  /* [cols] */
    double *er = sw->err + r * sw->block; /* [block] */
    ranked *scratch = sw->nm_scratch ? sw->nm_scratch + (size_t)omp_get_thread_num() * o->nm_m
                                     : NULL; /* [nm_m] */
    for (int64_t c = b0; c < b1; c++) {
        if (o->nm_m > 0 && c % o->nm_m == 0) {
            int64_t end = c + o->nm_m < cols ? c + o->nm_m : cols, len = end - c;
            int64_t keep = len == o->nm_m ? o->nm_n : (o->nm_n * len + o->nm_m - 1) / o->nm_m;
            select_group(wr, pr, sw->d2, c, end, len - keep, scratch);
        }
        const cce_quant_group *g = NULL;
        if (o->quant) {
            if (o->quant->granularity == CCE_QUANT_GROUP && c % sw->glen == 0) {
                int f = group_from_current(sw, r, c);
                if (f) return f;
            }
            g = &sw->params[group_index(sw, r, c)];
        }
        double w = wr[c], q;
        int code;
        if (pr[c]) {
            q = 0;
            code = g ? g->zero : 0;
        } else if (g) {
            code = cce_quant_code(g, (float)w);
            q = cce_quant_value(g, code);
        } else {
            q = w;
            code = 0;
        }
        if (sw->codes) sw->codes[r * cols + c] = (uint8_t)code;
        double e = (w - q) / u[c * cols + c];
        const double *uc = u + c * cols; /* row c of U */
#pragma omp simd
        for (int64_t j = c + 1; j < b1; j++) wr[j] -= e * uc[j];
        wr[c] = q;
        er[c - b0] = e;
    }
    return 0;
}

static void sweep_free(sweep *sw) {
    free(sw->wd);
    free(sw->pruned);
    free(sw->err);
    free(sw->d2);
    free(sw->params);
    free(sw->codes);
    free(sw->nm_scratch);
}

/* Checks the options; fills block. */
static cce_status check_options(const cce_obs_hinv *h, const cce_obs_options *o, int64_t rows,
                                int64_t cols, const char *what, const cce_quant_encoding *enc,
                                int64_t *block) {
    cce_status s;
    if (cols != h->n || rows < 1)
        return cce_fail(CCE_ERR_ARG, "%s: shape [%lld, %lld] does not match inputs of width %lld",
                        what, (long long)rows, (long long)cols, (long long)h->n);
    if (!(o->ratio >= 0 && o->ratio <= 1))
        return cce_fail(CCE_ERR_RANGE, "%s: ratio = %g is outside [0, 1]", what, o->ratio);
    if (o->nm_m != 0 && !(o->nm_n > 0 && o->nm_n < o->nm_m))
        return cce_fail(CCE_ERR_RANGE, "%s: nm = %d:%d needs 0 < N < M", what, o->nm_n, o->nm_m);
    if (o->nm_m != 0 && o->ratio > 0)
        return cce_fail(CCE_ERR_ARG, "%s: an N:M pattern and a ratio exclude each other", what);
    if (o->quant && (s = cce_quant_spec_check(o->quant, what))) return s;
    if (enc && (!o->quant || enc->rows != rows || enc->cols != cols ||
                enc->spec.bits != o->quant->bits || enc->spec.symmetric != o->quant->symmetric ||
                enc->spec.granularity != o->quant->granularity ||
                (o->quant->granularity == CCE_QUANT_GROUP && enc->spec.group != o->quant->group)))
        return cce_fail(CCE_ERR_ARG, "%s: the encoding was made for another spec or shape", what);
    *block = CCE_OBS_BLOCK;
    if (o->nm_m > 0)
        *block = o->nm_m >= CCE_OBS_BLOCK ? o->nm_m : CCE_OBS_BLOCK / o->nm_m * o->nm_m;
    return CCE_OK;
}

/* Initial parameters for tensor / channel granularity, from the weights before the sweep. */
static int initial_params(sweep *sw, const float *w) {
    const cce_quant_spec *q = sw->o->quant;
    int64_t cols = sw->cols;
    if (q->granularity == CCE_QUANT_GROUP) return 0;
    int64_t n = q->granularity == CCE_QUANT_TENSOR ? 1 : sw->rows;
    int64_t len = q->granularity == CCE_QUANT_TENSOR ? sw->rows * cols : cols;
    for (int64_t i = 0; i < n; i++) {
        float lo, hi;
        if (cce_quant_range(w + i * len, NULL, len, "sweep", &lo, &hi)) return 1;
        if (cce_quant_group_params(q->bits, q->symmetric, lo, hi, "sweep", &sw->params[i]))
            return 2;
    }
    return 0;
}

cce_status cce_obs_sweep(const cce_obs_hinv *h, const cce_obs_options *o, float *w, int64_t rows,
                         int64_t cols, const char *what, cce_quant_encoding *enc,
                         int64_t *n_pruned) {
    int64_t block = CCE_OBS_BLOCK;
    cce_status s = check_options(h, o, rows, cols, what, enc, &block);
    if (s) return s;
    sweep sw = {.h = h, .o = o, .rows = rows, .cols = cols, .block = block};
    int64_t numel = rows * cols, n_groups = 0;
    int threads = omp_get_max_threads();
    if (o->quant) {
        sw.glen = o->quant->granularity == CCE_QUANT_GROUP ? o->quant->group : cols;
        sw.gpr = cce_quant_groups_per_row(o->quant, cols);
        n_groups = cce_quant_n_groups(o->quant, rows, cols);
    }
    sw.wd = malloc((size_t)numel * sizeof *sw.wd);
    sw.pruned = malloc((size_t)numel);
    sw.err = malloc((size_t)(rows * block) * sizeof *sw.err);
    sw.d2 = malloc((size_t)cols * sizeof *sw.d2);
    int nomem = !sw.wd || !sw.pruned || !sw.err || !sw.d2;
    if (o->quant) nomem |= !(sw.params = calloc((size_t)n_groups, sizeof *sw.params));
    if (enc) nomem |= !(sw.codes = malloc((size_t)numel));
    if (o->nm_m > 0)
        nomem |= !(sw.nm_scratch = malloc((size_t)threads * (size_t)o->nm_m * sizeof(ranked)));
    double *sal = NULL, *tmp = NULL; /* [rows, block] each: unstructured selection */
    if (o->ratio > 0) {
        sal = malloc((size_t)(rows * block) * sizeof *sal);
        tmp = malloc((size_t)(rows * block) * sizeof *tmp);
        nomem |= !sal || !tmp;
    }
    if (nomem) {
        sweep_free(&sw);
        free(sal);
        free(tmp);
        return cce_fail(CCE_ERR_NOMEM, "%s: out of memory for the sweep of [%lld, %lld]", what,
                        (long long)rows, (long long)cols);
    }
    for (int64_t i = 0; i < numel; i++) {
        sw.wd[i] = w[i];
        sw.pruned[i] = w[i] == 0.0f;
    }
    for (int64_t j = 0; j < cols; j++) {
        double d = h->u[j * cols + j];
        sw.d2[j] = d * d;
        if (h->dead[j])
            for (int64_t r = 0; r < rows; r++) sw.wd[r * cols + j] = 0;
    }
    int fail = o->quant ? initial_params(&sw, w) : 0;
    int64_t fail_row = 0;
    for (int64_t b0 = 0; b0 < cols && !fail; b0 += block) {
        int64_t b1 = b0 + block < cols ? b0 + block : cols, bl = b1 - b0;
        if (o->ratio > 0)
            select_block(sw.wd, sw.pruned, sw.d2, rows, cols, b0, b1,
                         cce_ratio_count(o->ratio, rows * b1) -
                             cce_ratio_count(o->ratio, rows * b0),
                         sal, tmp);
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            int f = sweep_row(&sw, r, b0, b1);
            if (f) {
#pragma omp critical(cce_obs_failure)
                if (!fail || r < fail_row) {
                    fail = f;
                    fail_row = r;
                }
            }
        }
        if (!fail && b1 < cols)
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)(cols - b1),
                        (int)bl, -1.0, sw.err, (int)block, h->u + b0 * cols + b1, (int)cols, 1.0,
                        sw.wd + b1, (int)cols);
    }
    free(sal);
    free(tmp);
    if (fail == 1) {
        s = cce_fail(CCE_ERR_NUMERIC, "%s: row %lld: weights became NaN or infinite", what,
                     (long long)fail_row);
    } else if (fail == 2) {
        s = cce_fail(CCE_ERR_RANGE, "%s: row %lld: a quantization scale exceeds fp16's maximum",
                     what, (long long)fail_row);
    } else {
        double bad = 0;
        for (int64_t i = 0; i < numel; i++)
            bad += (double)(float)sw.wd[i] - (double)(float)sw.wd[i];
        if (bad != 0)
            s = cce_fail(CCE_ERR_NUMERIC, "%s: the updated weights are not finite (raise damp)",
                         what);
    }
    if (!s) {
        int64_t np = 0;
        for (int64_t i = 0; i < numel; i++) {
            w[i] = (float)sw.wd[i];
            np += sw.pruned[i];
        }
        if (n_pruned) *n_pruned = np;
        if (enc) {
            cce_quant_pack(sw.codes, numel, o->quant->bits, enc->codes);
            for (int64_t i = 0; i < n_groups; i++)
                cce_quant_encoding_set_group(enc, i, &sw.params[i]);
        }
    }
    sweep_free(&sw);
    return s;
}

/* ---- Output error ---------------------------------------------------------------------------- */

/* tr(A S A^T) = <A^T A, S> for a [rows, cols] (double), with c [cols, cols] as scratch: one
 * symmetric rank-k update (half the work of A S) and a sum over the upper triangle. */
static double quad_trace(const double *a, int64_t rows, int64_t cols, const double *s, double *c) {
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)cols, (int)rows, 1.0, a, (int)cols, 0.0,
                c, (int)cols);
    double diag = 0, off = 0;
    for (int64_t i = 0; i < cols; i++) {
        diag += c[i * cols + i] * s[i * cols + i];
        for (int64_t j = i + 1; j < cols; j++) off += c[i * cols + j] * s[i * cols + j];
    }
    return diag + 2 * off;
}

cce_status cce_obs_output_error(const float *w0, const float *w1, int64_t rows, int64_t cols,
                                const double *sum_outer, const char *what, double *out) {
    int64_t n = rows * cols;
    if (rows < 1 || cols < 1) {
        *out = 0;
        return CCE_OK;
    }
    double *a = calloc((size_t)n, sizeof *a);              /* [rows, cols] W0, then dW */
    double *c = malloc((size_t)(cols * cols) * sizeof *c); /* [cols, cols] A^T A */
    if (!a || !c) {
        free(a);
        free(c);
        return cce_fail(CCE_ERR_NOMEM, "%s: out of memory for the output error", what);
    }
    for (int64_t i = 0; i < n; i++) a[i] = w0[i];
    double den = quad_trace(a, rows, cols, sum_outer, c);
    for (int64_t i = 0; i < n; i++) a[i] = (double)w1[i] - (double)w0[i];
    double num = quad_trace(a, rows, cols, sum_outer, c);
    free(a);
    free(c);
    if (num < 0) num = 0; /* rounding of a positive semi-definite form */
    *out = den > 0 ? sqrt(num / den) : num == 0 ? 0.0 : NAN;
    return CCE_OK;
}

/* ---- Running on block jobs ------------------------------------------------------------------- */

void cce_obs_cache_clear(cce_obs_cache *c) {
    for (size_t i = 0; i < c->n; i++) cce_obs_hinv_free(c->h[i]);
    memset(c, 0, sizeof *c);
}

/* The inverse Hessian for a site, from the cache or new. Borrowed from the cache. */
static cce_status cache_get(cce_obs_cache *c, const cce_calib_input *in, double damp,
                            const char *what, const cce_obs_hinv **out) {
    for (size_t i = 0; i < c->n; i++)
        if (c->key[i] == in->sum_outer) {
            *out = c->h[i];
            return CCE_OK;
        }
    if (c->n == CCE_OBS_CACHE_MAX) cce_obs_cache_clear(c);
    cce_obs_hinv *h;
    cce_status s = cce_obs_hinv_new(in->sum_outer, in->dim, in->n_tokens, damp, what, &h);
    if (s) return s;
    c->key[c->n] = in->sum_outer;
    c->h[c->n++] = h;
    *out = h;
    return CCE_OK;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

cce_status cce_obs_apply_tensor(const char *strategy, cce_obs_cache *cache, const cce_calib *calib,
                                double damp, const cce_obs_options *o, cce_job_tensor *jt,
                                cce_report_row *row) {
    double t0 = now_seconds();
    cce_tensor *t = jt->weight;
    float *w = t->data; /* [rows, cols] */
    int64_t rows = cce_tensor_rows(t), cols = cce_tensor_cols(t), numel = rows * cols;
    cce_calib_input in;
    cce_status s = cce_calib_input_of(calib, jt->name, &in);
    if (s) {
        cce_error_prefix("%s: ", strategy);
        return s;
    }
    if (!in.sum_outer)
        return cce_fail(CCE_ERR_STATE,
                        "%s: %s: the calibration statistics lack the second moment E[x x^T] "
                        "(collect them with second moments on)",
                        strategy, jt->name);
    if (in.dim != cols)
        return cce_fail(CCE_ERR_ARG,
                        "%s: %s: %lld input columns, but its calibration inputs have "
                        "width %d",
                        strategy, jt->name, (long long)cols, in.dim);
    const cce_obs_hinv *h;
    char what[CCE_PLAN_NAME_MAX + 40];
    snprintf(what, sizeof what, "%s: %s", strategy, jt->name);
    if ((s = cache_get(cache, &in, damp, what, &h))) return s;
    float *orig = malloc((size_t)numel * sizeof *orig); /* [rows, cols] */
    if (!orig) return cce_fail(CCE_ERR_NOMEM, "%s: out of memory", what);
    memcpy(orig, w, (size_t)numel * sizeof *orig);
    int64_t pruned = 0;
    double out_err = NAN;
    cce_quant_encoding *enc = NULL;
    if (o->quant) s = cce_quant_encoding_new(o->quant, rows, cols, &enc);
    if (!s) s = cce_obs_sweep(h, o, w, rows, cols, what, enc, &pruned);
    /* The tensor's encoding (encoding.h): the quant payload, with the pattern of the pruned
     * weights when this sweep prunes; a sparse pattern when it only prunes. */
    int prunes = o->ratio > 0 || o->nm_m > 0;
    if (!s && enc) {
        s = cce_encoding_new_quant(enc, t->ndim, t->shape, &jt->encoding);
        if (!s && prunes) s = cce_encoding_add_pattern(jt->encoding, w, o->nm_n, o->nm_m, what);
    } else if (!s && prunes) {
        s = cce_encoding_new_sparse(t, o->nm_n, o->nm_m, what, &jt->encoding);
    } else if (s) {
        cce_quant_encoding_free(enc);
    }
    if (!s) s = cce_obs_output_error(orig, w, rows, cols, in.sum_outer, what, &out_err);
    if (s) {
        free(orig);
        return s;
    }
    double norm2 = 0, err2 = 0;
    int64_t zeros = 0;
    for (int64_t i = 0; i < numel; i++) {
        double d = (double)w[i] - (double)orig[i];
        norm2 += (double)orig[i] * orig[i];
        err2 += d * d;
        zeros += w[i] == 0.0f;
    }
    free(orig);
    int64_t kept = numel - pruned, stored = kept;
    if (o->nm_m > 0) { /* an N:M encoding stores the values its pattern keeps */
        int64_t full = cols / o->nm_m, tail = cols % o->nm_m;
        stored = rows * (full * o->nm_n + (tail ? (o->nm_n * tail + o->nm_m - 1) / o->nm_m : 0));
    }
    row->params_before = numel;
    row->params_after = kept;
    row->bytes_before = 4 * numel;
    row->bytes_after = o->quant ? cce_quant_encoded_bytes(o->quant, rows, cols, stored, o->nm_m)
                                : cce_sparse_encoded_bytes(numel, stored, o->nm_m);
    row->bits_per_weight = numel ? 8.0 * (double)row->bytes_after / (double)numel : 0;
    row->sparsity = numel ? (double)zeros / (double)numel : 0;
    row->rel_fro_error = norm2 > 0 ? sqrt(err2 / norm2) : 0;
    row->output_error = out_err;
    int64_t ragged = o->quant ? cce_quant_ragged_last(o->quant, cols) : 0;
    int len = 0;
    if (ragged)
        len = snprintf(row->note, sizeof row->note, "ragged last group %lld of %lld",
                       (long long)ragged, (long long)o->quant->group);
    if (h->n_dead && len >= 0 && (size_t)len < sizeof row->note)
        snprintf(row->note + len, sizeof row->note - (size_t)len, "%s%lld dead inputs zeroed",
                 len ? "; " : "", (long long)h->n_dead);
    row->seconds = now_seconds() - t0;
    return CCE_OK;
}
