/* Activation statistics (astats.h): recording a model's activations side by side with the dense
 * model inside the evaluation loop (forward hooks), and the rows they give. */
#include "astats_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forward.h"
#include "sha256.h"
#include "stats_hist.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- Recording ------------------------------------------------------------------------------- */

/* The running statistics of one (layer, site) of the recorded model. */
typedef struct site_rec {
    cce_moments mom, dense_mom; /* the model's; the dense model's on this pass (a check) */
    cce_hist *hist;             /* the model's, on the reference edges */
    cce_hist *dense_hist;       /* the dense model's: made here (owned) or the reference's */
    uint64_t outliers;
    double thr_lo, thr_hi; /* outliers: x < thr_lo or x > thr_hi */
    double cos_sum;        /* sum over positions of cos(x_t, dense_t) */
    double diff_sq, ref_sq;
    uint64_t positions; /* paired positions */
    int width;          /* the model's width (0: not seen) */
    int unpaired;       /* 1: the widths differ, or a window lacked the dense activations */
} site_rec;

typedef struct recorder {
    cce_astats_ref *ref;
    int n_layers, ctx;
    int fill_dense;  /* 1: the dense histograms are made here (the reference has none yet) */
    site_rec *sites; /* [n_layers * N_SITES] */
    float *dense;    /* the dense activations of the current window, slot by slot */
    size_t *off;     /* [n_layers * N_SITES] offset of each slot in dense ([ctx - 1, width]) */
    int *dense_rows; /* [n_layers * N_SITES] rows (after BOS) the dense forward left, 0: none */
    int same;        /* 1: the model is the dense model (one forward per window) */
    cce_status st;
} recorder;

static void recorder_free(recorder *r) {
    if (r->sites)
        for (int i = 0; i < r->n_layers * N_SITES; i++) {
            cce_hist_free(r->sites[i].hist);
            if (r->fill_dense) cce_hist_free(r->sites[i].dense_hist);
        }
    free(r->sites);
    free(r->dense);
    free(r->off);
    free(r->dense_rows);
}

static cce_status recorder_new(cce_astats_ref *ref, int same, recorder *r) {
    memset(r, 0, sizeof *r);
    r->ref = ref;
    r->n_layers = ref->n_layers;
    r->ctx = ref->ctx;
    r->same = same;
    r->fill_dense = ref->dense_hist == NULL;
    size_t slots = (size_t)ref->n_layers * N_SITES, total = 0;
    r->sites = calloc(slots, sizeof *r->sites);
    r->off = calloc(slots, sizeof *r->off);
    r->dense_rows = calloc(slots, sizeof *r->dense_rows);
    if (!r->sites || !r->off || !r->dense_rows) goto nomem;
    for (size_t i = 0; i < slots; i++) {
        site_rec *sr = &r->sites[i];
        cce_moments_init(&sr->mom);
        cce_moments_init(&sr->dense_mom);
        r->off[i] = total;
        if (!same) total += (size_t)(ref->ctx - 1) * (size_t)ref->width[i];
        const cce_moments *dm = &ref->mom[i];
        if (ref->width[i] == 0) continue; /* the dense model has no such site: nothing to bin */
        double mean = cce_moments_mean(dm), sd = cce_moments_std(dm);
        if (!(sd > 0)) sd = 0.5 * fmax(1.0, fabs(mean)) / ref->range_std;
        char what[96];
        snprintf(what, sizeof what, "activation statistics: layer %zu %s", i / N_SITES,
                 cce_astats_site_name((cce_astats_site)(i % N_SITES)));
        double lo = mean - ref->range_std * sd, hi = mean + ref->range_std * sd;
        cce_status s = cce_hist_new((size_t)ref->bins, lo, hi, what, &sr->hist);
        if (!s && r->fill_dense) s = cce_hist_new((size_t)ref->bins, lo, hi, what, &sr->dense_hist);
        if (!r->fill_dense) sr->dense_hist = ref->dense_hist[i];
        if (s) {
            recorder_free(r);
            return s;
        }
        double thr = ref->outlier_std * cce_moments_std(dm);
        sr->thr_lo = mean - thr;
        sr->thr_hi = mean + thr;
    }
    if (!(r->dense = malloc((total ? total : 1) * sizeof *r->dense))) goto nomem;
    return CCE_OK;
nomem:
    recorder_free(r);
    return cce_fail(CCE_ERR_NOMEM, "activation statistics: buffers for %d layers", ref->n_layers);
}

/* The model's values x [n] of one site into its moments, histogram and outlier count. */
static void record_values(site_rec *sr, const float *x, size_t n) {
    cce_moments_add(&sr->mom, x, n);
    if (!sr->hist) return;
    cce_hist_add_floats(sr->hist, x, n);
    const double lo = sr->thr_lo, hi = sr->thr_hi;
    uint64_t out = 0;
#pragma omp simd reduction(+ : out)
    for (size_t i = 0; i < n; i++) out += (double)x[i] < lo || (double)x[i] > hi;
    sr->outliers += out;
}

/* Cosine and squared distances of rows x [rows, cols] against d [rows, cols]. */
static void record_pairs(site_rec *sr, const float *x, const float *d, int rows, int cols) {
    double cos_sum = 0, diff = 0, ref = 0;
    for (int t = 0; t < rows; t++) {
        const float *a = x + (size_t)t * cols, *b = d + (size_t)t * cols;
        double ab = 0, aa = 0, bb = 0, dd = 0;
#pragma omp simd reduction(+ : ab, aa, bb, dd)
        for (int j = 0; j < cols; j++) {
            double u = a[j], v = b[j], w = u - v;
            ab += u * v;
            aa += u * u;
            bb += v * v;
            dd += w * w;
        }
        cos_sum += aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : (aa == bb ? 1.0 : 0.0);
        diff += dd;
        ref += bb;
    }
    sr->cos_sum += cos_sum;
    sr->diff_sq += diff;
    sr->ref_sq += ref;
    sr->positions += (uint64_t)rows;
}

/* Phase of the current forward. */
enum { PHASE_DENSE, PHASE_MODEL };

typedef struct hook_ctx {
    recorder *r;
    int phase;
} hook_ctx;

static void record_hook(void *user, int layer, cce_hook_point p, const float *x, int rows,
                        int cols) {
    hook_ctx *h = user;
    recorder *r = h->r;
    int site = astats_site_of(p);
    if (r->st || site < 0 || rows < 2 || layer < 0 || layer >= r->n_layers) return;
    size_t slot = (size_t)layer * N_SITES + (size_t)site;
    site_rec *sr = &r->sites[slot];
    const float *v = x + cols; /* [rows - 1, cols]: every position after BOS */
    int n_rows = rows - 1;
    size_t n = (size_t)n_rows * (size_t)cols;
    int ref_width = r->ref->width[slot];
    if (h->phase == PHASE_DENSE) {
        if (cols != ref_width || n_rows > r->ctx - 1) {
            r->st = cce_fail(CCE_ERR_ARG,
                             "activation statistics: layer %d %s: the dense model has width %d, "
                             "its reference %d (another model than the reference's?)",
                             layer, cce_astats_site_name((cce_astats_site)site), cols, ref_width);
            return;
        }
        cce_moments_add(&sr->dense_mom, v, n);
        if (r->fill_dense) cce_hist_add_floats(sr->dense_hist, v, n);
        memcpy(r->dense + r->off[slot], v, n * sizeof *v);
        r->dense_rows[slot] = n_rows;
        return;
    }
    /* The recorded model. */
    if (sr->width && sr->width != cols) {
        r->st = cce_fail(CCE_ERR_INTERNAL, "activation statistics: layer %d %s: width %d after %d",
                         layer, cce_astats_site_name((cce_astats_site)site), cols, sr->width);
        return;
    }
    if (r->same && cols != ref_width) {
        r->st = cce_fail(CCE_ERR_ARG,
                         "activation statistics: layer %d %s: the dense model has width %d, its "
                         "reference %d (another model than the reference's?)",
                         layer, cce_astats_site_name((cce_astats_site)site), cols, ref_width);
        return;
    }
    sr->width = cols;
    record_values(sr, v, n);
    if (r->same) {
        if (r->fill_dense) cce_hist_add_floats(sr->dense_hist, v, n);
        record_pairs(sr, v, v, n_rows, cols);
    } else if (cols == ref_width && r->dense_rows[slot] == n_rows) {
        record_pairs(sr, v, r->dense + r->off[slot], n_rows, cols);
        r->dense_rows[slot] = 0;
    } else {
        sr->unpaired = 1;
    }
}

/* The dense model's moments on this pass must be the reference's (the same model on the same
 * windows; up to the rounding of a differently blocked matrix product): the cached dense
 * histograms and the pairing rest on it. */
static cce_status check_dense(const recorder *r) {
    for (int i = 0; i < r->n_layers * N_SITES; i++) {
        const cce_moments *a = r->same ? &r->sites[i].mom : &r->sites[i].dense_mom;
        const cce_moments *b = &r->ref->mom[i];
        if (a->n == 0 && b->n == 0) continue;
        double sd = cce_moments_std(b), tol = 1e-5 * (fabs(b->mean) + (sd > 0 ? sd : 1));
        if (a->n != b->n || !(fabs(a->mean - b->mean) <= tol) ||
            !(fabs(cce_moments_std(a) - sd) <= tol))
            return cce_fail(CCE_ERR_ARG,
                            "activation statistics: %s: layer %d %s: the dense model's "
                            "activations (mean %g, std %g over %.0f values) differ from its "
                            "reference's (mean %g, std %g over %.0f): another dense model than "
                            "the reference was made with?",
                            r->ref->domain, i / N_SITES,
                            cce_astats_site_name((cce_astats_site)(i % N_SITES)), a->mean,
                            cce_moments_std(a), a->n, b->mean, sd, b->n);
    }
    return CCE_OK;
}

/* Appends the rows of the recorded statistics to t. */
static cce_status append_rows(const recorder *r, cce_table *t) {
    const cce_astats_ref *ref = r->ref;
    size_t bins = (size_t)ref->bins;
    double *counts = malloc(bins * sizeof *counts); /* [bins] */
    if (!counts) return cce_fail(CCE_ERR_NOMEM, "activation statistics: %zu bins", bins);
    cce_status s = CCE_OK;
    for (int l = 0; l < r->n_layers && !s; l++) {
        for (int site = 0; site < N_SITES && !s; site++) {
            size_t slot = (size_t)l * N_SITES + (size_t)site, row;
            const site_rec *sr = &r->sites[slot];
            const cce_moments *m = &sr->mom, *dm = &ref->mom[slot];
            int seen = m->n > 0, paired = seen && sr->hist && !sr->unpaired && sr->positions > 0;
            double kl = NAN;
            if (paired && (s = cce_hist_kl(sr->dense_hist, sr->hist, ref->kl_alpha, &kl))) break;
            if (sr->hist)
                cce_hist_counts(sr->hist, counts);
            else
                memset(counts, 0, bins * sizeof *counts);
            const double f64[][2] = {
                {C_MEAN, cce_moments_mean(m)},
                {C_STD, cce_moments_std(m)},
                {C_SKEW, cce_moments_skewness(m)},
                {C_KURT, cce_moments_excess_kurtosis(m)},
                {C_MIN, seen ? m->min : NAN},
                {C_MAX, seen ? m->max : NAN},
                {C_OUTLIER, seen && sr->hist ? (double)sr->outliers / m->n : NAN},
                {C_COSINE, paired ? sr->cos_sum / (double)sr->positions : NAN},
                {C_REL_L2, paired ? (sr->ref_sq > 0 ? sqrt(sr->diff_sq / sr->ref_sq)
                                                    : (sr->diff_sq == 0 ? 0.0 : NAN))
                                  : NAN},
                {C_HIST_KL, kl},
                {C_REF_MEAN, cce_moments_mean(dm)},
                {C_REF_STD, cce_moments_std(dm)},
                {C_REF_KURT, cce_moments_excess_kurtosis(dm)},
                {C_HIST_LO, sr->hist ? cce_hist_lo(sr->hist) : NAN},
                {C_HIST_HI, sr->hist ? cce_hist_hi(sr->hist) : NAN},
            };
            if ((s = cce_table_add_row(t, &row))) break;
            s = cce_table_set_str(t, row, C_DOMAIN, ref->domain);
            if (!s) s = cce_table_set_i64(t, row, C_LAYER, l);
            if (!s) s = cce_table_set_str(t, row, C_SITE, cce_astats_site_name(site));
            if (!s) s = cce_table_set_i64(t, row, C_WIDTH, sr->width);
            if (!s) s = cce_table_set_i64(t, row, C_COUNT, (int64_t)m->n);
            for (size_t k = 0; k < sizeof f64 / sizeof f64[0] && !s; k++)
                s = cce_table_set_f64(t, row, (int)f64[k][0], f64[k][1]);
            if (!s)
                s = cce_table_set_i64(t, row, C_UNDER, sr->hist ? (int64_t)sr->hist->underflow : 0);
            if (!s)
                s = cce_table_set_i64(t, row, C_OVER, sr->hist ? (int64_t)sr->hist->overflow : 0);
            if (!s) s = cce_table_set_vec(t, row, C_HIST, counts);
        }
    }
    free(counts);
    return s;
}

/* Hands the dense histograms made by a successful recording over to its reference; a model
 * recorded against itself hands over a copy of its own. Without memory for the list the
 * reference simply stays without them (the next recording makes them again). */
static void keep_dense_hists(recorder *r) {
    size_t slots = (size_t)r->n_layers * N_SITES;
    cce_hist **list = calloc(slots, sizeof *list);
    if (!list) return;
    for (size_t i = 0; i < slots; i++) {
        list[i] = r->sites[i].dense_hist;
        r->sites[i].dense_hist = NULL;
    }
    r->ref->dense_hist = list;
    r->fill_dense = 0;
}

/* Per-token score arrays of the evaluation (as cce_eval keeps them). */
typedef struct scores {
    double *nll, *kl, *dp;    /* [n_tokens] */
    uint8_t *correct, *agree; /* [n_tokens] */
} scores;

static void scores_free(scores *b) {
    free(b->nll);
    free(b->kl);
    free(b->dp);
    free(b->correct);
    free(b->agree);
}

/* Checks m against dense and the reference, and the stream against the reference's tokens. */
static cce_status check_record(cce_model *m, cce_model *dense, const cce_astats_ref *ref,
                               const int32_t *stream, size_t n, const cce_table *rows) {
    const cce_config *a = cce_model_config(m), *b = cce_model_config(dense);
    if (a->dim != b->dim || a->n_layers != b->n_layers || a->vocab_size != b->vocab_size)
        return cce_fail(CCE_ERR_ARG,
                        "activation statistics: the model (dim %d, %d layers, vocabulary %d) "
                        "does not match the dense model (dim %d, %d layers, vocabulary %d)",
                        (int)a->dim, (int)a->n_layers, (int)a->vocab_size, (int)b->dim,
                        (int)b->n_layers, (int)b->vocab_size);
    const cce_tokenizer *mt = cce_model_tokenizer(m), *dt = cce_model_tokenizer(dense);
    if (mt && dt && cce_tokenizer_fingerprint(mt) != cce_tokenizer_fingerprint(dt))
        return cce_fail(CCE_ERR_ARG,
                        "activation statistics: the model's tokenizer differs from the dense "
                        "model's");
    if (ref->n_layers != b->n_layers)
        return cce_fail(CCE_ERR_ARG,
                        "activation statistics: the reference has %d layers, the dense model %d",
                        ref->n_layers, (int)b->n_layers);
    if (ref->ctx > a->seq_len || ref->ctx > b->seq_len)
        return cce_fail(CCE_ERR_RANGE,
                        "activation statistics: the reference's ctx = %d exceeds a model's "
                        "seq_len (%d, %d)",
                        ref->ctx, (int)a->seq_len, (int)b->seq_len);
    if (!rows || rows->n_cols != N_COLS || strcmp(rows->name, CCE_ASTATS_TABLE) != 0)
        return cce_fail(CCE_ERR_ARG,
                        "activation statistics: the rows table is not an activations table "
                        "(cce_astats_table_new)");
    if (rows->cols[C_HIST].width != (size_t)ref->bins)
        return cce_fail(CCE_ERR_ARG,
                        "activation statistics: the table's histograms have %zu bins, the "
                        "reference %d",
                        rows->cols[C_HIST].width, ref->bins);
    size_t used = (size_t)ref->n_windows * (size_t)(ref->ctx - 1);
    char sha[65];
    if (n < used || (!stream && used))
        return cce_fail(CCE_ERR_ARG,
                        "activation statistics: %s: the stream has %zu tokens, the reference's "
                        "windows use %zu (another token stream?)",
                        ref->domain, n, used);
    cce_status s = cce_sha256_buffer(stream, used * sizeof *stream, sha);
    if (s) return s;
    if (strcmp(sha, ref->tokens_sha256) != 0)
        return cce_fail(CCE_ERR_ARG,
                        "activation statistics: %s: the stream's tokens differ from the ones the "
                        "reference was made on",
                        ref->domain);
    return CCE_OK;
}

cce_status cce_astats_eval(cce_model *m, cce_model *dense, cce_astats_ref *ref,
                           const int32_t *stream, size_t n, const cce_astats_options *o,
                           cce_table *rows, cce_eval_result *eval) {
    static const cce_astats_options defaults = {0};
    if (eval) memset(eval, 0, sizeof *eval);
    if (!m || !dense || !ref)
        return cce_fail(CCE_ERR_ARG, "activation statistics: no model, dense model or reference");
    if (!o) o = &defaults;
    cce_status s = check_record(m, dense, ref, stream, n, rows);
    if (s) return s;
    const int ctx = ref->ctx, stride = ctx - 1, V = cce_model_config(m)->vocab_size;
    const int64_t windows = ref->n_windows, n_tokens = windows * stride;
    const int same = m == dense;
    recorder rec;
    if ((s = recorder_new(ref, same, &rec))) return s;
    scores b = {0};
    cce_forward *fm = NULL, *fd = NULL;
    int32_t *window = malloc((size_t)ctx * sizeof *window);           /* [ctx] */
    float *logits = malloc((size_t)ctx * (size_t)V * sizeof *logits); /* [ctx, V] */
    float *ref_logits = same ? logits : malloc((size_t)ctx * (size_t)V * sizeof *ref_logits);
    b.nll = malloc((size_t)n_tokens * sizeof *b.nll);
    b.kl = malloc((size_t)n_tokens * sizeof *b.kl);
    b.dp = malloc((size_t)n_tokens * sizeof *b.dp);
    b.correct = malloc((size_t)n_tokens);
    b.agree = malloc((size_t)n_tokens);
    if (!window || !logits || !ref_logits || !b.nll || !b.kl || !b.dp || !b.correct || !b.agree) {
        s = cce_fail(CCE_ERR_NOMEM, "activation statistics: buffers for %lld tokens",
                     (long long)n_tokens);
        goto done;
    }
    if ((s = cce_forward_new(m, ctx, &fm))) goto done;
    if (!same && (s = cce_forward_new(dense, ctx, &fd))) goto done;
    hook_ctx hm = {&rec, PHASE_MODEL}, hd = {&rec, PHASE_DENSE};
    cce_forward_set_hook(fm, record_hook, &hm);
    if (fd) cce_forward_set_hook(fd, record_hook, &hd);
    const cce_tokenizer *tok = cce_model_tokenizer(m);
    window[0] = tok ? cce_tokenizer_bos(tok) : 1; /* as cce_eval */
    double t0 = now_seconds();
    for (int64_t w = 0; w < windows && !s; w++) {
        const int32_t *chunk = stream + (size_t)w * (size_t)stride; /* [ctx - 1] */
        memcpy(window + 1, chunk, (size_t)stride * sizeof *chunk);
        /* The dense model first: its activations wait in the recorder for the model's. */
        if (fd) s = cce_forward_window(fd, window, ctx, ref_logits);
        if (!s && rec.st) s = rec.st;
        if (!s) s = cce_forward_window(fm, window, ctx, logits);
        if (!s && rec.st) s = rec.st;
        size_t off = (size_t)w * (size_t)stride;
        cce_eval_scores sc = {b.nll + off, b.correct + off, b.kl + off, b.dp + off, b.agree + off};
        if (!s) s = cce_eval_score_logits(logits, ref_logits, stride, V, chunk, &sc);
        if (s) {
            cce_error_prefix("activation statistics: %s: window %lld: ", ref->domain, (long long)w);
            break;
        }
        if (o->progress) o->progress(o->progress_user, (long)(w + 1), (long)windows);
    }
    double seconds = now_seconds() - t0;
    if (s) goto done;
    cce_moments *mom = malloc((size_t)rec.n_layers * N_SITES * sizeof *mom);
    if (!mom) {
        s = cce_fail(CCE_ERR_NOMEM, "activation statistics: moments");
        goto done;
    }
    for (int i = 0; i < rec.n_layers * N_SITES; i++) mom[i] = rec.sites[i].mom;
    s = astats_check_moments(mom, rec.n_layers, "the model");
    free(mom);
    if (!s) s = check_dense(&rec);
    if (s) goto done;
    if (eval) {
        cce_eval_scores all = {b.nll, b.correct, b.kl, b.dp, b.agree};
        if ((s = cce_eval_summarize(&all, n_tokens, 1, eval))) {
            memset(eval, 0, sizeof *eval);
            goto done;
        }
        eval->ctx = ctx;
        eval->n_windows = windows;
        eval->n_tokens = n_tokens;
        eval->max_tokens = ref->max_tokens;
        eval->seconds = seconds;
        eval->tokens_per_s = seconds > 0 ? (double)n_tokens / seconds : 0.0;
    }
    /* Rows last: on failure the table is unchanged (a partial append is undone). */
    size_t before = rows->n_rows;
    if ((s = append_rows(&rec, rows))) {
        cce_table_truncate(rows, before);
        if (eval) memset(eval, 0, sizeof *eval);
        goto done;
    }
    if (eval && o->keep_token_nll) {
        eval->token_nll = b.nll; /* handed over */
        b.nll = NULL;
    }
    if (rec.fill_dense) keep_dense_hists(&rec);
done:
    cce_forward_free(fm);
    cce_forward_free(fd);
    recorder_free(&rec);
    free(window);
    free(logits);
    if (!same) free(ref_logits);
    scores_free(&b);
    return s;
}
