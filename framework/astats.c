/* Activation statistics (astats.h): site names, streaming moments, options, the dense reference
 * pass and the table's columns. Recording is in astats_record.c. */
#include "astats_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "sha256.h"
#include "stats_hist.h"

const char *cce_astats_site_name(cce_astats_site site) {
    switch (site) {
    case CCE_ASTATS_BLOCK_OUT:
        return "block_out";
    case CCE_ASTATS_FFN_ACT:
        return "ffn_act";
    case CCE_ASTATS_SITES:
        break;
    }
    return "?";
}

int astats_site_of(cce_hook_point p) {
    if (p == CCE_HOOK_BLOCK_OUT) return CCE_ASTATS_BLOCK_OUT;
    if (p == CCE_HOOK_DOWN_IN) return CCE_ASTATS_FFN_ACT;
    return -1;
}

/* ---- Streaming moments ----------------------------------------------------------------------- */

void cce_moments_init(cce_moments *m) {
    memset(m, 0, sizeof *m);
    m->min = INFINITY;
    m->max = -INFINITY;
}

void cce_moments_merge(cce_moments *a, const cce_moments *b) {
    if (b->n == 0) return;
    if (a->n == 0) {
        *a = *b;
        return;
    }
    /* Pebay (2008), eq. 2.1-2.4: pairwise update of the mean and the centred power sums. */
    double na = a->n, nb = b->n, n = na + nb, d = b->mean - a->mean;
    double d_n = d / n, d2 = d * d, d2_n2 = d_n * d_n;
    double m2 = a->m2 + b->m2 + d2 * na * nb / n;
    double m3 =
        a->m3 + b->m3 + d * d2_n2 * na * nb * (na - nb) + 3.0 * d_n * (na * b->m2 - nb * a->m2);
    double m4 = a->m4 + b->m4 + d2 * d2_n2 * na * nb * (na * na - na * nb + nb * nb) / n +
                6.0 * d2_n2 * (na * na * b->m2 + nb * nb * a->m2) +
                4.0 * d_n * (na * b->m3 - nb * a->m3);
    a->mean += d * nb / n;
    a->m2 = m2;
    a->m3 = m3;
    a->m4 = m4;
    a->n = n;
    if (b->min < a->min) a->min = b->min;
    if (b->max > a->max) a->max = b->max;
}

void cce_moments_add(cce_moments *m, const float *x, size_t n) {
    if (n == 0) return;
    double sum = 0;
    float lo = x[0], hi = x[0];
#pragma omp simd reduction(+ : sum) reduction(min : lo) reduction(max : hi)
    for (size_t i = 0; i < n; i++) {
        sum += x[i];
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    double c = sum / (double)n, s1 = 0, s2 = 0, s3 = 0, s4 = 0;
#pragma omp simd reduction(+ : s1, s2, s3, s4)
    for (size_t i = 0; i < n; i++) {
        double d = (double)x[i] - c, dd = d * d;
        s1 += d;
        s2 += dd;
        s3 += dd * d;
        s4 += dd * dd;
    }
    /* c is the rounded mean; e = mean - c corrects the power sums exactly (in exact arithmetic). */
    double dn = (double)n, e = s1 / dn;
    cce_moments b = {.n = dn,
                     .mean = c + e,
                     .m2 = s2 - s1 * e,
                     .m3 = s3 - 3.0 * e * s2 + 2.0 * dn * e * e * e,
                     .m4 = s4 - 4.0 * e * s3 + 6.0 * e * e * s2 - 3.0 * dn * e * e * e * e,
                     .min = lo,
                     .max = hi};
    if (b.m2 < 0) b.m2 = 0;
    if (b.m4 < 0) b.m4 = 0;
    cce_moments_merge(m, &b);
}

double cce_moments_mean(const cce_moments *m) {
    return m->n > 0 ? m->mean : NAN;
}

double cce_moments_std(const cce_moments *m) {
    return m->n > 1 ? sqrt(m->m2 / (m->n - 1)) : NAN;
}

double cce_moments_skewness(const cce_moments *m) {
    double sd = cce_moments_std(m);
    return sd > 0 ? m->m3 / m->n / (sd * sd * sd) : NAN;
}

double cce_moments_excess_kurtosis(const cce_moments *m) {
    double sd = cce_moments_std(m);
    return sd > 0 ? m->m4 / m->n / (sd * sd * sd * sd) - 3.0 : NAN;
}

/* ---- Options and windows --------------------------------------------------------------------- */

static cce_status resolve_options(const cce_astats_options *in, const cce_model *dense,
                                  cce_astats_options *o) {
    *o = in ? *in : (cce_astats_options){0};
    if (!o->ctx) o->ctx = cce_eval_default_ctx(dense);
    if (!o->bins) o->bins = CCE_ASTATS_DEFAULT_BINS;
    if (o->range_std == 0) o->range_std = CCE_ASTATS_DEFAULT_RANGE_STD;
    if (o->outlier_std == 0) o->outlier_std = CCE_ASTATS_DEFAULT_OUTLIER_STD;
    if (o->kl_alpha == 0) o->kl_alpha = CCE_HIST_KL_ALPHA;
    const cce_config *cfg = cce_model_config(dense);
    if (o->ctx < 2 || o->ctx > cfg->seq_len)
        return cce_fail(CCE_ERR_RANGE,
                        "activation statistics: ctx = %d is outside [2, %d] (the model's seq_len)",
                        o->ctx, (int)cfg->seq_len);
    if (o->max_tokens < 0)
        return cce_fail(CCE_ERR_RANGE,
                        "activation statistics: max_tokens = %lld is negative (0 means all)",
                        (long long)o->max_tokens);
    if (o->bins < 1 || o->bins > MAX_BINS)
        return cce_fail(CCE_ERR_RANGE, "activation statistics: bins = %d is outside [1, %d]",
                        o->bins, MAX_BINS);
    const struct {
        const char *name;
        double v;
    } pos[] = {
        {"range_std", o->range_std}, {"outlier_std", o->outlier_std}, {"kl_alpha", o->kl_alpha}};
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (!(pos[i].v > 0) || !isfinite(pos[i].v))
            return cce_fail(CCE_ERR_RANGE, "activation statistics: %s = %g (must be > 0)",
                            pos[i].name, pos[i].v);
    return CCE_OK;
}

static int domain_ok(const char *d) {
    if (!d || !*d || strlen(d) >= 128) return 0;
    for (const char *p = d; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '+' || c == '-'))
            return 0;
    }
    return 1;
}

/* ---- The reference pass ---------------------------------------------------------------------- */

typedef struct ref_collector {
    cce_astats_ref *ref;
    cce_status st;
} ref_collector;

static void ref_hook(void *user, int layer, cce_hook_point p, const float *x, int rows, int cols) {
    ref_collector *k = user;
    int site = astats_site_of(p);
    if (k->st || site < 0 || rows < 2) return;
    size_t slot = (size_t)layer * N_SITES + (size_t)site;
    if (k->ref->width[slot] && k->ref->width[slot] != cols) {
        k->st =
            cce_fail(CCE_ERR_INTERNAL, "activation statistics: layer %d %s: width %d after %d",
                     layer, cce_astats_site_name((cce_astats_site)site), cols, k->ref->width[slot]);
        return;
    }
    k->ref->width[slot] = cols;
    cce_moments_add(&k->ref->mom[slot], x + cols, (size_t)(rows - 1) * (size_t)cols);
}

void cce_astats_ref_free(cce_astats_ref *ref) {
    if (!ref) return;
    if (ref->dense_hist)
        for (int i = 0; i < ref->n_layers * N_SITES; i++) cce_hist_free(ref->dense_hist[i]);
    free(ref->dense_hist);
    free(ref->mom);
    free(ref->width);
    free(ref);
}

const char *cce_astats_ref_domain(const cce_astats_ref *ref) {
    return ref ? ref->domain : NULL;
}

int64_t cce_astats_ref_windows(const cce_astats_ref *ref) {
    return ref ? ref->n_windows : 0;
}

cce_status astats_check_moments(const cce_moments *mom, int n_layers, const char *who) {
    for (int l = 0; l < n_layers; l++)
        for (int s = 0; s < N_SITES; s++) {
            const cce_moments *m = &mom[(size_t)l * N_SITES + (size_t)s];
            if (m->n > 0 && (!isfinite(m->mean) || !isfinite(m->m2) || !isfinite(m->m4)))
                return cce_fail(CCE_ERR_NUMERIC,
                                "activation statistics: %s: layer %d %s: non-finite activations "
                                "(NaN/Inf weights or overflow)",
                                who, l, cce_astats_site_name((cce_astats_site)s));
        }
    return CCE_OK;
}

cce_status cce_astats_ref_new(cce_model *dense, const int32_t *stream, size_t n, const char *domain,
                              const cce_astats_options *o, cce_astats_ref **out) {
    if (!out) return cce_fail(CCE_ERR_ARG, "activation statistics: no output");
    *out = NULL;
    if (!dense) return cce_fail(CCE_ERR_ARG, "activation statistics: no dense model");
    if (!stream && n) return cce_fail(CCE_ERR_ARG, "activation statistics: no token stream");
    if (!domain_ok(domain))
        return cce_fail(CCE_ERR_ARG,
                        "activation statistics: domain name '%.80s' (letters, digits, _ . + - "
                        "only; 1 to 127)",
                        domain ? domain : "(null)");
    cce_astats_options opt;
    cce_status s = resolve_options(o, dense, &opt);
    if (s) return s;
    const cce_config *cfg = cce_model_config(dense);
    int64_t windows = cce_eval_window_count(n, opt.ctx, opt.max_tokens);
    if (windows < 1)
        return cce_fail(CCE_ERR_RANGE,
                        "activation statistics: %s: a stream of %zu tokens is shorter than one "
                        "window (BOS + %d tokens)",
                        domain, n, opt.ctx - 1);
    size_t stride = (size_t)opt.ctx - 1, used = (size_t)windows * stride;
    for (size_t i = 0; i < used; i++)
        if (stream[i] < 0 || stream[i] >= cfg->vocab_size)
            return cce_fail(CCE_ERR_RANGE,
                            "activation statistics: %s: token %d at stream index %zu is outside "
                            "the vocabulary [0, %d)",
                            domain, (int)stream[i], i, (int)cfg->vocab_size);
    cce_astats_ref *ref = calloc(1, sizeof *ref);
    if (!ref) return cce_fail(CCE_ERR_NOMEM, "activation statistics reference");
    snprintf(ref->domain, sizeof ref->domain, "%s", domain);
    ref->ctx = opt.ctx;
    ref->max_tokens = opt.max_tokens;
    ref->n_windows = windows;
    ref->bins = opt.bins;
    ref->range_std = opt.range_std;
    ref->outlier_std = opt.outlier_std;
    ref->kl_alpha = opt.kl_alpha;
    ref->n_layers = cfg->n_layers;
    size_t slots = (size_t)cfg->n_layers * N_SITES;
    ref->mom = malloc(slots * sizeof *ref->mom);
    ref->width = calloc(slots, sizeof *ref->width);
    int32_t *window = malloc((size_t)opt.ctx * sizeof *window); /* [ctx] */
    float *logits =
        malloc((size_t)opt.ctx * (size_t)cfg->vocab_size * sizeof *logits); /* [ctx, V] */
    cce_forward *f = NULL;
    if (!ref->mom || !ref->width || !window || !logits) {
        s = cce_fail(CCE_ERR_NOMEM, "activation statistics: %zu sites, window of %d", slots,
                     opt.ctx);
        goto done;
    }
    for (size_t i = 0; i < slots; i++) cce_moments_init(&ref->mom[i]);
    if ((s = cce_sha256_buffer(stream, used * sizeof *stream, ref->tokens_sha256))) goto done;
    if ((s = cce_forward_new(dense, opt.ctx, &f))) goto done;
    ref_collector k = {ref, CCE_OK};
    cce_forward_set_hook(f, ref_hook, &k);
    const cce_tokenizer *tok = cce_model_tokenizer(dense);
    window[0] = tok ? cce_tokenizer_bos(tok) : 1; /* the llama2.c convention without one */
    for (int64_t w = 0; w < windows && !s; w++) {
        memcpy(window + 1, stream + (size_t)w * stride, stride * sizeof *window);
        s = cce_forward_window(f, window, opt.ctx, logits);
        if (!s && k.st) s = k.st;
        if (s) cce_error_prefix("activation statistics: %s: window %lld: ", domain, (long long)w);
        if (!s && opt.progress) opt.progress(opt.progress_user, (long)(w + 1), (long)windows);
    }
    if (!s) s = astats_check_moments(ref->mom, ref->n_layers, "the dense model");
done:
    cce_forward_free(f);
    free(window);
    free(logits);
    if (s) {
        cce_astats_ref_free(ref);
        return s;
    }
    *out = ref;
    return CCE_OK;
}

/* ---- The table ------------------------------------------------------------------------------- */

cce_status cce_astats_table_new(int bins, cce_table **out) {
    *out = NULL;
    if (!bins) bins = CCE_ASTATS_DEFAULT_BINS;
    if (bins < 1 || bins > MAX_BINS)
        return cce_fail(CCE_ERR_RANGE, "activation statistics: bins = %d is outside [1, %d]", bins,
                        MAX_BINS);
    static const struct {
        const char *name;
        cce_col_type type;
        const char *meaning;
    } cols[N_COLS] = {
        {"domain", CCE_COL_STR, "the token stream (dataset) the activations come from"},
        {"layer", CCE_COL_I64, "block index"},
        {"site", CCE_COL_STR,
         "block_out: residual stream after the block; ffn_act: silu(gate)*up (down_proj input)"},
        {"width", CCE_COL_I64, "channels of the site"},
        {"count", CCE_COL_I64, "values (positions after BOS x channels)"},
        {"mean", CCE_COL_F64, "mean"},
        {"std", CCE_COL_F64, "sample standard deviation (n - 1)"},
        {"skewness", CCE_COL_F64, "skewness (GSL convention)"},
        {"excess_kurtosis", CCE_COL_F64, "excess kurtosis: M4 / n / std^4 - 3 (Gaussian 0)"},
        {"min", CCE_COL_F64, "smallest value"},
        {"max", CCE_COL_F64, "largest value"},
        {"outlier_frac", CCE_COL_F64,
         "fraction with |x - ref_mean| > outlier_std * ref_std (dense reference)"},
        {"cosine", CCE_COL_F64, "mean over positions of cos(x_t, dense_t)"},
        {"rel_l2", CCE_COL_F64, "sqrt(sum ||x_t - dense_t||^2 / sum ||dense_t||^2)"},
        {"hist_kl", CCE_COL_F64,
         "KL(dense || model) of the histograms incl. under/overflow, add-alpha smoothing"},
        {"ref_mean", CCE_COL_F64, "mean of the dense model (reference run)"},
        {"ref_std", CCE_COL_F64, "std of the dense model (reference run)"},
        {"ref_excess_kurtosis", CCE_COL_F64, "excess kurtosis of the dense model (reference run)"},
        {"hist_lo", CCE_COL_F64, "lowest edge: ref_mean - range_std * ref_std"},
        {"hist_hi", CCE_COL_F64, "highest edge: ref_mean + range_std * ref_std (uniform bins)"},
        {"underflow", CCE_COL_I64, "values below hist_lo"},
        {"overflow", CCE_COL_I64, "values at or above hist_hi"},
        {"hist", CCE_COL_F64VEC, "histogram counts on the dense model's edges"},
    };
    cce_table *t;
    cce_status s = cce_table_new(CCE_ASTATS_TABLE, &t);
    for (int c = 0; c < N_COLS && !s; c++)
        s = cce_table_add_column(t, cols[c].name, cols[c].type,
                                 cols[c].type == CCE_COL_F64VEC ? (size_t)bins : 1,
                                 cols[c].meaning);
    if (s) {
        cce_table_free(t);
        return s;
    }
    *out = t;
    return CCE_OK;
}
