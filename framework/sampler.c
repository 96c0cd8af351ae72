/* Greedy, temperature and top-p sampling (see sampler.h). */
#include "sampler.h"

#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>

#include "kernels.h"

typedef struct prob_index {
    float p;
    int32_t id;
} prob_index;

struct cce_sampler {
    int32_t vocab;
    float temperature, top_p;
    gsl_rng *rng;
    prob_index *cand; /* [vocab] nucleus candidates */
};

cce_status cce_sampler_new(int32_t vocab, float temperature, float top_p, uint64_t seed,
                           cce_sampler **out) {
    if (vocab < 1) return cce_fail(CCE_ERR_RANGE, "sampler: vocab = %d, must be >= 1", (int)vocab);
    if (!(temperature >= 0.0f) || !isfinite(temperature))
        return cce_fail(CCE_ERR_RANGE, "sampler: temperature = %g, must be finite and >= 0",
                        (double)temperature);
    if (!(top_p >= 0.0f && top_p <= 1.0f))
        return cce_fail(CCE_ERR_RANGE, "sampler: top_p = %g is outside [0, 1]", (double)top_p);
    cce_sampler *s = calloc(1, sizeof *s);
    if (!s) return cce_fail(CCE_ERR_NOMEM, "sampler");
    s->vocab = vocab;
    s->temperature = temperature;
    s->top_p = top_p;
    s->rng = gsl_rng_alloc(gsl_rng_mt19937);
    s->cand = malloc(sizeof *s->cand * (size_t)vocab);
    if (!s->rng || !s->cand) {
        cce_sampler_free(s);
        return cce_fail(CCE_ERR_NOMEM, "sampler of %d tokens", (int)vocab);
    }
    gsl_rng_set(s->rng, (unsigned long)seed);
    *out = s;
    return CCE_OK;
}

void cce_sampler_free(cce_sampler *s) {
    if (!s) return;
    if (s->rng) gsl_rng_free(s->rng);
    free(s->cand);
    free(s);
}

/* Samples an index from probabilities p [n] summing to about 1. */
static int32_t sample_all(const float *p, int32_t n, double coin) {
    double cdf = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cdf += p[i];
        if (coin < cdf) return i;
    }
    return n - 1; /* rounding */
}

static int by_prob_desc(const void *a, const void *b) {
    const prob_index *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Nucleus sampling: the smallest prefix of tokens sorted by probability whose mass exceeds
 * top_p, then a draw within it. Tokens below (1 - top_p) / (n - 1) cannot be in the nucleus
 * and are dropped before sorting. */
static int32_t sample_top_p(cce_sampler *s, const float *p, double coin) {
    int32_t n = s->vocab, k = 0;
    float cutoff = n > 1 ? (1.0f - s->top_p) / (float)(n - 1) : 0.0f;
    for (int32_t i = 0; i < n; i++)
        if (p[i] >= cutoff) s->cand[k++] = (prob_index){p[i], i};
    if (k == 0) return cce_argmax(p, n); /* a near-uniform distribution and a tiny top_p */
    qsort(s->cand, (size_t)k, sizeof *s->cand, by_prob_desc);
    double mass = 0.0;
    int32_t last = k - 1;
    for (int32_t i = 0; i < k; i++) {
        mass += s->cand[i].p;
        if (mass > s->top_p) {
            last = i;
            break;
        }
    }
    double r = coin * mass, cdf = 0.0;
    for (int32_t i = 0; i <= last; i++) {
        cdf += s->cand[i].p;
        if (r < cdf) return s->cand[i].id;
    }
    return s->cand[last].id;
}

cce_status cce_sampler_sample(cce_sampler *s, float *logits, int32_t *token) {
    for (int32_t i = 0; i < s->vocab; i++)
        if (isnan(logits[i]) || logits[i] == INFINITY)
            return cce_fail(CCE_ERR_NUMERIC, "sampler: logit of token %d is %g", (int)i,
                            (double)logits[i]);
    if (s->temperature == 0.0f) {
        *token = cce_argmax(logits, s->vocab);
        return CCE_OK;
    }
    for (int32_t i = 0; i < s->vocab; i++) logits[i] /= s->temperature;
    cce_softmax(logits, s->vocab);
    double coin = gsl_rng_uniform(s->rng);
    if (s->top_p <= 0.0f || s->top_p >= 1.0f)
        *token = sample_all(logits, s->vocab, coin);
    else
        *token = sample_top_p(s, logits, coin);
    return CCE_OK;
}
