/* Low rank: each planned weight W [out, in] is replaced by a rank-r factorisation A B
 * (strategies/lowrank.h has the mathematics).
 *
 *   method=svd       plain truncated SVD: the smallest Frobenius error of any rank-r matrix;
 *   method=whitened  activation-whitened SVD (SVD-LLM): the smallest output error
 *                    tr(dW G dW^T) on the calibration inputs, G = E[x x^T]. Needs calibration
 *                    statistics with second moments (the plan stage refuses a run without them).
 *                    Tensors that share an input (q, k, v; gate, up) share one Cholesky factor.
 *
 * The rank: from the plan's target, a ratio of parameters removed (DESIGN section 5):
 * r = floor((1 - ratio) * out * in / (out + in)), so that A and B together hold (1 - ratio) of
 * W's parameters; or, with `energy`, the smallest r whose kept squared singular values (of W, or
 * of W S when whitened) reach that fraction of the total. A tensor whose plan target is 0 stays
 * as it is (in both modes), as with the pruners.
 *
 * The job tensor receives the dense product A B of the float32 factors (same shape, computed as
 * cce_encoding_lowrank_product so that decoding gives the same bits) and, for r >= 1, the
 * lowrank encoding of the pair (encoding.h: the file stores A and B, the forward pass runs two
 * products); the driver keeps it when the factors are smaller than the dense tensor. The report
 * counts the factors: params_after = r * (out + in), bytes_after = 4 * r * (out + in), and gives
 * `rank`, the relative Frobenius error and, when the tensor's input has second moments, the
 * relative output error. Composition: a low-rank product is dense, so zeros of an earlier pruning
 * do not survive (the report's sparsity shows it). */
#include "lowrank.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calib.h"
#include "encoding.h"
#include "obs.h"
#include "strategy.h"

#define NAME "lowrank"

/* ---- Factorisations -------------------------------------------------------------------------- */

/* Cholesky of a [n, n] in place (lower; the upper triangle is then zeroed). 0 on success. */
static int cholesky_lower(double *a, int64_t n) {
    lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)n, a, (lapack_int)n);
    if (info != 0) return 1;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) a[i * n + j] = 0;
    return 0;
}

cce_status cce_lowrank_whitening_new(const double *sum_outer, int64_t n, int64_t n_tokens,
                                     double damp, const char *what, double **s, double *damp_used) {
    *s = NULL;
    *damp_used = 0;
    if (n < 1 || n_tokens < 1)
        return cce_fail(CCE_ERR_ARG, "%s: second moment of width %lld over %lld tokens", what,
                        (long long)n, (long long)n_tokens);
    if (!(damp >= 0) || !isfinite(damp))
        return cce_fail(CCE_ERR_RANGE, "%s: damp = %g is not a finite number >= 0", what, damp);
    size_t nn = (size_t)n * (size_t)n;
    for (size_t i = 0; i < nn; i++)
        if (!isfinite(sum_outer[i]))
            return cce_fail(CCE_ERR_NUMERIC, "%s: the input second moment has a non-finite entry",
                            what);
    double *g = malloc(nn * sizeof *g); /* [n, n] G, then S */
    if (!g)
        return cce_fail(CCE_ERR_NOMEM, "%s: whitening factor of width %lld", what, (long long)n);
    double inv = 1.0 / (double)n_tokens, mean_diag = 0;
    for (size_t i = 0; i < nn; i++) g[i] = sum_outer[i] * inv;
    for (int64_t i = 0; i < n; i++) mean_diag += g[i * n + i];
    mean_diag /= (double)n;
    if (!cholesky_lower(g, n)) {
        *s = g;
        return CCE_OK;
    }
    if (damp > 0 && mean_diag > 0) { /* once more, damped (dpotrf overwrote the lower triangle) */
        double add = damp * mean_diag;
        for (size_t i = 0; i < nn; i++) g[i] = sum_outer[i] * inv;
        for (int64_t i = 0; i < n; i++) g[i * n + i] += add;
        if (!cholesky_lower(g, n)) {
            *s = g;
            *damp_used = damp;
            return CCE_OK;
        }
    }
    free(g);
    return cce_fail(CCE_ERR_NUMERIC,
                    "%s: the input second moment is not positive definite even with damp = %g "
                    "(raise damp)",
                    what, damp);
}

void cce_lowrank_svd_free(cce_lowrank_svd *d) {
    if (!d) return;
    free(d->u);
    free(d->sigma);
    free(d->vt);
    free(d);
}

cce_status cce_lowrank_svd_new(const float *w, int64_t rows, int64_t cols, const double *s,
                               const char *what, cce_lowrank_svd **out) {
    *out = NULL;
    if (rows < 1 || cols < 1)
        return cce_fail(CCE_ERR_ARG, "%s: cannot factor an empty [%lld, %lld] matrix", what,
                        (long long)rows, (long long)cols);
    int64_t k = rows < cols ? rows : cols;
    cce_lowrank_svd *d = calloc(1, sizeof *d);
    double *a = malloc((size_t)(rows * cols) * sizeof *a); /* [rows, cols] W S, destroyed */
    if (d) {
        d->u = malloc((size_t)(rows * k) * sizeof *d->u);
        d->sigma = malloc((size_t)k * sizeof *d->sigma);
        d->vt = malloc((size_t)(k * cols) * sizeof *d->vt);
    }
    if (!d || !a || !d->u || !d->sigma || !d->vt) {
        free(a);
        cce_lowrank_svd_free(d);
        return cce_fail(CCE_ERR_NOMEM, "%s: SVD of [%lld, %lld]", what, (long long)rows,
                        (long long)cols);
    }
    d->rows = rows;
    d->cols = cols;
    d->k = k;
    d->s = s;
    for (int64_t i = 0; i < rows * cols; i++) {
        if (!isfinite(w[i])) {
            free(a);
            cce_lowrank_svd_free(d);
            return cce_fail(CCE_ERR_NUMERIC, "%s: weight %lld is not finite", what, (long long)i);
        }
        a[i] = w[i];
    }
    if (s) /* W S, S lower triangular */
        cblas_dtrmm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit,
                    (blasint)rows, (blasint)cols, 1.0, s, (blasint)cols, a, (blasint)cols);
    lapack_int info =
        LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', (lapack_int)rows, (lapack_int)cols, a,
                       (lapack_int)cols, d->sigma, d->u, (lapack_int)k, d->vt, (lapack_int)cols);
    free(a);
    if (info != 0) {
        cce_lowrank_svd_free(d);
        return cce_fail(info > 0 ? CCE_ERR_NUMERIC : CCE_ERR_ARG,
                        "%s: the SVD of [%lld, %lld] failed (LAPACK dgesdd info %d)", what,
                        (long long)rows, (long long)cols, (int)info);
    }
    *out = d;
    return CCE_OK;
}

int64_t cce_lowrank_rank_for_ratio(double ratio, int64_t rows, int64_t cols) {
    if (rows < 1 || cols < 1) return 0;
    if (!(ratio > 0)) ratio = 0; /* NaN too */
    if (ratio > 1) ratio = 1;
    double x = (1.0 - ratio) * (double)rows * (double)cols / (double)(rows + cols);
    int64_t r = (int64_t)floor(x);
    if ((double)(r + 1) - x <= 1e-9 * (x + 1.0)) r++; /* 0.7 * 100 is 69.99999... */
    int64_t k = rows < cols ? rows : cols;
    return r < 0 ? 0 : r > k ? k : r;
}

int64_t cce_lowrank_rank_for_energy(const cce_lowrank_svd *d, double energy) {
    double total = 0, kept = 0;
    for (int64_t i = 0; i < d->k; i++) total += d->sigma[i] * d->sigma[i];
    if (!(total > 0)) return 0;
    double goal = energy >= 1 ? total : energy * total;
    for (int64_t r = 0; r < d->k; r++) {
        if (kept >= goal) return r;
        kept += d->sigma[r] * d->sigma[r]; /* the same order as total: kept == total at r = k */
    }
    return d->k;
}

double cce_lowrank_dropped_energy(const cce_lowrank_svd *d, int64_t rank) {
    double e = 0;
    for (int64_t i = rank < 0 ? 0 : rank; i < d->k; i++) e += d->sigma[i] * d->sigma[i];
    return e;
}

/* A = U_r Sigma_r [rows, r] and B = V_r^T S^-1 [r, cols] in double. The caller frees both. */
static cce_status factors_double(const cce_lowrank_svd *d, int64_t r, const char *what,
                                 double **a_out, double **b_out) {
    *a_out = *b_out = NULL;
    if (r < 0 || r > d->k)
        return cce_fail(CCE_ERR_RANGE, "%s: rank %lld is outside [0, %lld]", what, (long long)r,
                        (long long)d->k);
    double *a = malloc((size_t)(d->rows * (r > 0 ? r : 1)) * sizeof *a); /* [rows, r] */
    double *b = malloc((size_t)((r > 0 ? r : 1) * d->cols) * sizeof *b); /* [r, cols] */
    if (!a || !b) {
        free(a);
        free(b);
        return cce_fail(CCE_ERR_NOMEM, "%s: factors of rank %lld", what, (long long)r);
    }
    for (int64_t i = 0; i < d->rows; i++)
        for (int64_t j = 0; j < r; j++) a[i * r + j] = d->u[i * d->k + j] * d->sigma[j];
    memcpy(b, d->vt, (size_t)(r * d->cols) * sizeof *b);
    if (d->s && r > 0) /* B S = V_r^T */
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, (blasint)r,
                    (blasint)d->cols, 1.0, d->s, (blasint)d->cols, b, (blasint)d->cols);
    *a_out = a;
    *b_out = b;
    return CCE_OK;
}

cce_status cce_lowrank_svd_factors(const cce_lowrank_svd *d, int64_t rank, const char *what,
                                   cce_tensor **a, cce_tensor **b) {
    if (a) *a = NULL;
    if (b) *b = NULL;
    double *ad, *bd;
    cce_status s = factors_double(d, rank, what, &ad, &bd);
    cce_tensor *ta = NULL, *tb = NULL;
    if (!s && a) s = cce_tensor_new_2d(d->rows, rank, &ta);
    if (!s && b) s = cce_tensor_new_2d(rank, d->cols, &tb);
    if (!s) {
        for (int64_t i = 0; ta && i < d->rows * rank; i++) ta->data[i] = (float)ad[i];
        for (int64_t i = 0; tb && i < rank * d->cols; i++) tb->data[i] = (float)bd[i];
        if (a) *a = ta;
        if (b) *b = tb;
    } else {
        cce_tensor_free(ta);
        cce_tensor_free(tb);
    }
    free(ad);
    free(bd);
    return s;
}

cce_status cce_lowrank_svd_product(const cce_lowrank_svd *d, int64_t rank, const char *what,
                                   float *out) {
    double *a, *b;
    cce_status s = factors_double(d, rank, what, &a, &b);
    if (s) return s;
    int64_t n = d->rows * d->cols;
    double *p = calloc((size_t)n, sizeof *p); /* [rows, cols] A B */
    if (!p) {
        free(a);
        free(b);
        return cce_fail(CCE_ERR_NOMEM, "%s: product of the factors", what);
    }
    if (rank > 0)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)d->rows, (blasint)d->cols,
                    (blasint)rank, 1.0, a, (blasint)rank, b, (blasint)d->cols, 0.0, p,
                    (blasint)d->cols);
    for (int64_t i = 0; i < n; i++) out[i] = (float)p[i];
    free(p);
    free(a);
    free(b);
    return CCE_OK;
}

cce_status cce_lowrank_factor(const cce_tensor *w, const cce_calib_input *stats, double damp,
                              int64_t rank, const char *what, cce_tensor **a, cce_tensor **b) {
    *a = *b = NULL;
    if (w->ndim != 2)
        return cce_fail(CCE_ERR_ARG, "%s: a low-rank factorisation needs a matrix, not %d-D", what,
                        w->ndim);
    int64_t rows = w->shape[0], cols = w->shape[1];
    double *s = NULL, damp_used = 0;
    if (stats) {
        if (!stats->sum_outer)
            return cce_fail(CCE_ERR_STATE, "%s: the calibration statistics have no second moments",
                            what);
        if (stats->dim != cols)
            return cce_fail(CCE_ERR_ARG, "%s: statistics of width %d for a tensor of %lld inputs",
                            what, stats->dim, (long long)cols);
        cce_status st = cce_lowrank_whitening_new(stats->sum_outer, cols, stats->n_tokens, damp,
                                                  what, &s, &damp_used);
        if (st) return st;
    }
    cce_lowrank_svd *d;
    cce_status st = cce_lowrank_svd_new(w->data, rows, cols, s, what, &d);
    if (!st) st = cce_lowrank_svd_factors(d, rank, what, a, b);
    if (!st) cce_lowrank_svd_free(d);
    free(s);
    return st;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- The strategy ---------------------------------------------------------------------------- */

enum { METHOD_SVD = 0, METHOD_WHITENED };

static const char *const method_choices[] = {"svd", "whitened", NULL};

static const cce_param lowrank_params[] = {
    {"ratio", CCE_PARAM_FLOAT, "0.5", 0, 1, CCE_PARAM_MAX_OPEN, NULL,
     "fraction of parameters removed: rank floor((1 - ratio) out in / (out + in)) (the plan's "
     "global target)"},
    {"method", CCE_PARAM_ENUM, "svd", 0, 0, 0, method_choices,
     "plain SVD of W, or SVD of W S whitened by the input second moment (needs calibration)"},
    {"energy", CCE_PARAM_FLOAT, NULL, 0, 1, CCE_PARAM_MIN_OPEN, NULL,
     "keep the smallest rank whose squared singular values reach this fraction; replaces ratio"},
    {"damp", CCE_PARAM_FLOAT, "0.01", 0, 1, 0, NULL,
     "whitened: added to E[xx^T]'s diagonal (fraction of its mean) if not positive definite"},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL},
};

#define CACHE_MAX 4 /* input sites per layer */

typedef struct lowrank_priv {
    int method;
    int use_energy;
    double energy, damp;
    size_t n_cached; /* whitening factors of the current job's sites */
    const double *key[CACHE_MAX];
    double *s[CACHE_MAX];
    double damp_used[CACHE_MAX];
} lowrank_priv;

static void cache_clear(lowrank_priv *lp) {
    for (size_t i = 0; i < lp->n_cached; i++) free(lp->s[i]);
    lp->n_cached = 0;
}

static cce_status lowrank_init(void *priv, const cce_params *p) {
    lowrank_priv *lp = priv;
    cce_status s = cce_params_get_enum(p, "method", NULL, &lp->method);
    if (!s) s = cce_params_get_float(p, "damp", &lp->damp);
    if (s) return s;
    lp->use_energy = cce_params_has(p, "energy");
    if (lp->use_energy) {
        if (cce_params_given(p, "ratio"))
            return cce_fail(CCE_ERR_ARG, NAME ": give ratio or energy, not both");
        s = cce_params_get_float(p, "energy", &lp->energy);
    }
    return s;
}

static void lowrank_fini(void *priv) {
    cache_clear(priv);
}

/* Refuses a whitened run without calibration before any tensor is touched. */
static cce_status lowrank_plan(void *priv, cce_model *m, const cce_calib *calib, cce_plan *plan) {
    (void)m;
    (void)plan;
    const lowrank_priv *lp = priv;
    if (lp->method == METHOD_WHITENED && !calib)
        return cce_fail(CCE_ERR_STATE,
                        NAME ": method = whitened needs calibration data (give --calib)");
    return CCE_OK;
}

/* The whitening factor of a site, from the cache or new. Borrowed from priv. */
static cce_status whitening_of(lowrank_priv *lp, const cce_calib_input *in, const char *what,
                               const double **s, double *damp_used) {
    for (size_t i = 0; i < lp->n_cached; i++)
        if (lp->key[i] == in->sum_outer) {
            *s = lp->s[i];
            *damp_used = lp->damp_used[i];
            return CCE_OK;
        }
    if (lp->n_cached == CACHE_MAX) cache_clear(lp);
    double *f;
    cce_status st = cce_lowrank_whitening_new(in->sum_outer, in->dim, in->n_tokens, lp->damp, what,
                                              &f, damp_used);
    if (st) return st;
    lp->key[lp->n_cached] = in->sum_outer;
    lp->s[lp->n_cached] = f;
    lp->damp_used[lp->n_cached] = *damp_used;
    lp->n_cached++;
    *s = f;
    return CCE_OK;
}

/* The second moment feeding the tensor, checked; NULL in *in->sum_outer when there is none and
 * the method does not need one. */
static cce_status stats_of(const lowrank_priv *lp, const cce_calib *calib, const char *name,
                           int64_t cols, cce_calib_input *in) {
    memset(in, 0, sizeof *in);
    int need = lp->method == METHOD_WHITENED;
    if (!calib) {
        if (need)
            return cce_fail(CCE_ERR_STATE,
                            NAME ": %s: method = whitened needs calibration data (give --calib)",
                            name);
        return CCE_OK;
    }
    cce_status s = cce_calib_input_of(calib, name, in);
    if (s) {
        if (!need) {
            memset(in, 0, sizeof *in);
            return CCE_OK;
        }
        cce_error_prefix(NAME ": ");
        return s;
    }
    if (!in->sum_outer || in->n_tokens < 1 || in->dim != cols) {
        if (!need) {
            memset(in, 0, sizeof *in);
            return CCE_OK;
        }
        if (!in->sum_outer || in->n_tokens < 1)
            return cce_fail(CCE_ERR_STATE,
                            NAME ": %s: the calibration statistics have no second moments", name);
        return cce_fail(CCE_ERR_ARG,
                        NAME ": %s: statistics of width %d for a tensor of %lld inputs", name,
                        in->dim, (long long)cols);
    }
    return CCE_OK;
}

static cce_status factor_tensor(lowrank_priv *lp, const cce_calib *calib, cce_job_tensor *jt,
                                cce_report_row *row) {
    cce_tensor *t = jt->weight;
    if (t->ndim != 2)
        return cce_fail(CCE_ERR_ARG, NAME ": %s: a low-rank factorisation needs a matrix, not %d-D",
                        jt->name, t->ndim);
    int64_t rows = t->shape[0], cols = t->shape[1], numel = rows * cols;
    char what[CCE_PLAN_NAME_MAX + 16];
    snprintf(what, sizeof what, NAME ": %s", jt->name);
    cce_calib_input in;
    cce_status st = stats_of(lp, calib, jt->name, cols, &in);
    const double *s = NULL;
    double damp_used = 0;
    if (!st && lp->method == METHOD_WHITENED) st = whitening_of(lp, &in, what, &s, &damp_used);
    if (st) return st;
    cce_lowrank_svd *d;
    if ((st = cce_lowrank_svd_new(t->data, rows, cols, s, what, &d))) return st;
    int64_t r = lp->use_energy ? cce_lowrank_rank_for_energy(d, lp->energy)
                               : cce_lowrank_rank_for_ratio(jt->target, rows, cols);
    float *orig = malloc((size_t)numel * sizeof *orig); /* [rows, cols] W before */
    if (!orig) {
        cce_lowrank_svd_free(d);
        return cce_fail(CCE_ERR_NOMEM, "%s: copy of the weight", what);
    }
    memcpy(orig, t->data, (size_t)numel * sizeof *orig);
    /* The float32 factors, their product as the encoding decodes it, and the encoding itself
     * (none at rank 0: the tensor is then zero and stored plain). */
    cce_tensor *a = NULL, *b = NULL;
    st = cce_lowrank_svd_factors(d, r, what, &a, &b);
    cce_lowrank_svd_free(d);
    if (!st) st = cce_encoding_lowrank_product(a->data, b->data, rows, r, cols, what, t->data);
    cce_encoding *enc = NULL;
    if (!st && r > 0) st = cce_encoding_new_lowrank(a->data, b->data, r, 2, t->shape, what, &enc);
    cce_tensor_free(a);
    cce_tensor_free(b);
    double out_err = NAN;
    if (!st && in.sum_outer)
        st = cce_obs_output_error(orig, t->data, rows, cols, in.sum_outer, what, &out_err);
    if (st) {
        cce_encoding_free(enc);
        memcpy(t->data, orig, (size_t)numel * sizeof *orig);
        free(orig);
        return st;
    }
    cce_encoding_free(jt->encoding);
    jt->encoding = enc;
    double norm2 = 0, err2 = 0;
    int64_t zeros = 0;
    for (int64_t i = 0; i < numel; i++) {
        double e = (double)t->data[i] - (double)orig[i];
        norm2 += (double)orig[i] * orig[i];
        err2 += e * e;
        zeros += t->data[i] == 0.0f;
    }
    free(orig);
    row->params_before = numel;
    row->params_after = r * (rows + cols);
    row->bytes_before = 4 * numel;
    row->bytes_after = 4 * r * (rows + cols);
    row->bits_per_weight = numel ? 8.0 * (double)row->bytes_after / (double)numel : 0;
    row->sparsity = numel ? (double)zeros / (double)numel : 0;
    row->rank = r;
    row->rel_fro_error = norm2 > 0 ? sqrt(err2 / norm2) : 0;
    row->output_error = out_err;
    if (damp_used > 0)
        snprintf(row->note, sizeof row->note, "second moment damped by %g of its mean diagonal",
                 damp_used);
    else if (row->params_after > row->params_before)
        snprintf(row->note, sizeof row->note, "factors hold more parameters than the dense tensor");
    return CCE_OK;
}

static cce_status lowrank_apply(void *priv, cce_block_job *job, cce_report *r) {
    lowrank_priv *lp = priv;
    for (size_t i = 0; i < job->n; i++) { /* check every target before changing anything */
        const cce_job_tensor *jt = &job->tensors[i];
        if (!jt->skip && !(jt->target >= 0 && jt->target < 1))
            return cce_fail(CCE_ERR_RANGE, NAME ": %s: ratio = %g is outside [0, 1)", jt->name,
                            jt->target);
    }
    cache_clear(lp); /* statistics belong to this job's layer */
    cce_status s = CCE_OK;
    for (size_t i = 0; !s && i < job->n; i++) {
        cce_job_tensor *jt = &job->tensors[i];
        if (jt->skip || jt->target == 0) continue;
        double t0 = now_seconds();
        cce_report_row row;
        cce_report_row_init(&row, NAME, job->layer, jt->name);
        s = factor_tensor(lp, job->calib, jt, &row);
        row.seconds = now_seconds() - t0;
        if (!s) s = cce_report_add(r, &row);
    }
    cache_clear(lp);
    return s;
}

/* Whitening reads the input second moments: only that method needs calibration. */
static unsigned lowrank_needs_of(const cce_params *p) {
    int method = METHOD_SVD;
    if (cce_params_get_enum(p, "method", NULL, &method) != CCE_OK) return 0;
    return method == METHOD_WHITENED ? CCE_NEEDS_CALIBRATION : 0;
}

const cce_strategy cce_strategy_lowrank = {
    .api_version = CCE_STRATEGY_API_VERSION,
    .name = NAME,
    .summary = "low rank: truncated SVD, plain or whitened by the input second moment (SVD-LLM)",
    .params = lowrank_params,
    .needs = 0,
    .priv_size = sizeof(lowrank_priv),
    .init = lowrank_init,
    .plan = lowrank_plan,
    .apply = lowrank_apply,
    .fini = lowrank_fini,
    .needs_of = lowrank_needs_of,
};
