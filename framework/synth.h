/* Deterministic random Llama models of any shape (DESIGN section 9): test fixtures that need no
 * real weights, and scale/speed benchmarks of real shapes (paired with a real tokenizer). */
#ifndef CCE_SYNTH_H
#define CCE_SYNTH_H

#include <stdint.h>

#include "model.h"
#include "status.h"

typedef struct cce_synth_options {
    cce_config cfg;      /* the shape; validated by cce_synth_model */
    uint64_t seed;       /* same seed and shape -> bit-identical model */
    float init_std;      /* std of every weight matrix; 0: 1/sqrt(fan_in) (see synth.c) */
    int zero_classifier; /* 1: an untied lm_head of zeros, so every logit is 0 (uniform output) */
    int biases;          /* 1: every layer gets q/k/v/o/gate/up/down biases (model.h "Biases") */
    float bias_std;      /* std of those biases; 0: CCE_SYNTH_BIAS_STD */
} cce_synth_options;

/* The default std of synthetic biases: small next to the unit-scale projection outputs. */
#define CCE_SYNTH_BIAS_STD 0.1f

/* Fills *out with a named preset: "tiny" (dim 32, hidden 64, 2 layers, 4 heads, 2 kv heads,
 * vocab 300, seq 64), "stories260K", "stories15M", "stories110M" (the shapes of those llama2.c
 * checkpoints). Seed 0, init_std 0, tied embeddings, rope_theta 10000, norm_eps 1e-5.
 * CCE_ERR_NOT_FOUND names an unknown preset and lists the known ones. */
cce_status cce_synth_preset(const char *name, cce_synth_options *out);

/* The names of the presets, NULL-terminated. Borrowed, static. */
const char *const *cce_synth_preset_names(void);

/* Builds an in-memory model: gaussian weights (GSL mt19937, one stream per tensor seeded from
 * the seed and the tensor's index), norms of ones, gaussian biases when asked for (their own
 * streams, so the weights are the same with or without them), and a byte-level tokenizer
 * (cce_tokenizer_new_bytes, so vocab_size must be at least 259). Source "synth:seed=<seed>".
 * The caller owns *out (cce_model_free). */
cce_status cce_synth_model(const cce_synth_options *o, cce_model **out);

#endif
