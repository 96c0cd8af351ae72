/* Deterministic random Llama models (synth.h).
 *
 * Scale of the weights, when init_std is 0:
 *   - every linear layer [out, in] gets std 1/sqrt(in): a unit-RMS input (every block input is
 *     RMS-normalised) gives unit-variance outputs, so attention scores, SwiGLU gates and the
 *     residual updates all stay O(1) at any width;
 *   - embed_tokens (and an untied lm_head) get std 1/sqrt(dim): the classifier reads the final
 *     RMS-normalised state (unit RMS), so logits have std about 1, a softmax that is neither flat
 *     nor saturated. The small initial residual is harmless: the first block's RMSNorm rescales
 *     it, and the block outputs then dominate the stream as in trained models;
 *   - RMSNorm weights are 1.
 * Each tensor draws from its own mt19937 stream, seeded from (seed, tensor index), so a tensor
 * does not depend on the order in which the others are generated. */
#include "synth.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct preset {
    const char *name;
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
} preset;

static const preset presets[] = {
    {"tiny", 32, 64, 2, 4, 2, 300, 64},
    {"stories260K", 64, 172, 5, 8, 4, 512, 512},
    {"stories15M", 288, 768, 6, 6, 6, 32000, 256},
    {"stories110M", 768, 2048, 12, 12, 12, 32000, 1024},
};
#define N_PRESETS (sizeof presets / sizeof presets[0])

const char *const *cce_synth_preset_names(void) {
    static const char *const names[N_PRESETS + 1] = {"tiny", "stories260K", "stories15M",
                                                     "stories110M", NULL};
    return names;
}

cce_status cce_synth_preset(const char *name, cce_synth_options *out) {
    for (size_t i = 0; i < N_PRESETS; i++) {
        const preset *p = &presets[i];
        if (!name || strcmp(name, p->name) != 0) continue;
        memset(out, 0, sizeof *out);
        cce_config *c = &out->cfg;
        c->dim = p->dim;
        c->hidden_dim = p->hidden_dim;
        c->n_layers = p->n_layers;
        c->n_heads = p->n_heads;
        c->n_kv_heads = p->n_kv_heads;
        c->head_dim = p->dim / p->n_heads;
        c->vocab_size = p->vocab_size;
        c->seq_len = p->seq_len;
        c->rope_theta = 10000.0f;
        c->norm_eps = 1e-5f;
        c->tied_embeddings = 1;
        return CCE_OK;
    }
    return cce_fail(CCE_ERR_NOT_FOUND,
                    "synth preset '%s' is unknown (known: tiny, stories260K, stories15M, "
                    "stories110M)",
                    name ? name : "(null)");
}

/* SplitMix64: spreads (seed, index) over the 32 bits mt19937 takes as its seed. */
static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static void fill_gaussian(gsl_rng *r, uint64_t seed, size_t index, cce_tensor *t, double std) {
    uint64_t h = splitmix64(seed ^ splitmix64((uint64_t)index + 1));
    gsl_rng_set(r, (unsigned long)((h ^ (h >> 32)) & 0xFFFFFFFFu));
    int64_t n = cce_tensor_numel(t);
    float *w = t->data; /* [numel] */
    for (int64_t i = 0; i < n; i++) w[i] = (float)gsl_ran_gaussian_ziggurat(r, std);
}

static void fill_ones(cce_tensor *t) {
    int64_t n = cce_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] = 1.0f;
}

/* Every bias of every layer, gaussian of std bias_std, from streams of their own (a seed apart
 * from the weights' streams, indexed by layer and kind). */
static cce_status add_biases(cce_model *m, gsl_rng *r, const cce_synth_options *o) {
    const cce_config *c = cce_model_config(m);
    double std = o->bias_std > 0 ? (double)o->bias_std : (double)CCE_SYNTH_BIAS_STD;
    uint64_t seed = splitmix64(o->seed ^ 0x62696173ull); /* "bias" */
    for (int l = 0; l < c->n_layers; l++) {
        const cce_layer_shape *ls = cce_model_layer(m, l);
        for (int b = 0; b < CCE_LB_COUNT; b++) {
            int64_t rows = b == CCE_LB_Q                    ? (int64_t)ls->n_heads * c->head_dim
                           : b == CCE_LB_K || b == CCE_LB_V ? (int64_t)ls->n_kv_heads * c->head_dim
                           : b == CCE_LB_GATE || b == CCE_LB_UP ? ls->hidden_dim
                                                                : c->dim;
            cce_tensor *t;
            cce_status s = cce_tensor_new(1, &rows, &t);
            if (s) return s;
            fill_gaussian(r, seed, (size_t)l * CCE_LB_COUNT + (size_t)b, t, std);
            if ((s = cce_model_set_layer_bias(m, l, (cce_layer_bias)b, t))) return s;
        }
    }
    return CCE_OK;
}

cce_status cce_synth_model(const cce_synth_options *o, cce_model **out) {
    cce_config cfg = o->cfg;
    if (o->zero_classifier) cfg.tied_embeddings = 0;
    cce_status s = cce_config_validate(&cfg, "synth");
    if (s) return s;
    if (cfg.vocab_size < 259)
        return cce_fail(CCE_ERR_RANGE,
                        "synth: vocab_size = %d is below 259 (the byte-level tokenizer needs "
                        "<unk> <s> </s> and 256 byte pieces)",
                        (int)cfg.vocab_size);
    if (!(o->init_std >= 0.0f) || !isfinite(o->init_std))
        return cce_fail(CCE_ERR_RANGE, "synth: init_std = %g must be finite and >= 0",
                        (double)o->init_std);
    if (!(o->bias_std >= 0.0f) || !isfinite(o->bias_std))
        return cce_fail(CCE_ERR_RANGE, "synth: bias_std = %g must be finite and >= 0",
                        (double)o->bias_std);

    cce_model *m = NULL;
    cce_tokenizer *tok = NULL;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!r) return cce_fail(CCE_ERR_NOMEM, "synth: random number generator");
    if ((s = cce_model_new(&cfg, &m))) goto fail;
    size_t n = cce_model_tensor_count(m);
    for (size_t i = 0; i < n; i++) {
        const char *name = cce_model_tensor_name_at(m, i);
        cce_tensor *t;
        if ((s = cce_model_tensor(m, name, &t))) goto fail;
        if (t->ndim == 1) {
            fill_ones(t); /* RMSNorm weights */
            continue;
        }
        if (!strcmp(name, "lm_head.weight") && o->zero_classifier) continue; /* stays zero */
        double std = o->init_std > 0 ? (double)o->init_std : 1.0 / sqrt((double)t->shape[1]);
        fill_gaussian(r, o->seed, i, t, std);
    }
    if (o->biases && (s = add_biases(m, r, o))) goto fail;
    if ((s = cce_tokenizer_new_bytes(cfg.vocab_size, &tok))) goto fail;
    cce_model_set_tokenizer(m, tok);
    char source[64];
    snprintf(source, sizeof source, "synth:seed=%llu", (unsigned long long)o->seed);
    cce_model_set_source(m, source);
    gsl_rng_free(r);
    *out = m;
    return CCE_OK;
fail:
    gsl_rng_free(r);
    cce_model_free(m);
    return s;
}
