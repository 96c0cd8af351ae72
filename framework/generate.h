/* Text generation: prompt -> tokens (with BOS) -> KV cache -> sampled continuation, emitted piece
 * by piece as decoded text. */
#ifndef CCE_GENERATE_H
#define CCE_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "status.h"

/* Receives each decoded piece (len bytes, not NUL-terminated, may contain a NUL byte; borrowed
 * for the call only). */
typedef void (*cce_emit_fn)(void *user, const char *piece, size_t len);

typedef struct cce_generate_stats {
    int n_prompt;           /* prompt tokens, BOS included */
    int n_generated;        /* tokens sampled and emitted (a final BOS/EOS is not counted) */
    double prefill_seconds; /* the prompt's window pass */
    double decode_seconds;  /* sampling and KV-cache steps of the generated tokens */
} cce_generate_stats;

/* Encodes prompt with BOS (NULL is ""), runs it through the model as one window (which fills the
 * KV cache), then samples up to n_new tokens (cce_sampler: temperature 0 is greedy, top_p in
 * [0, 1], seeded), one KV-cache step each. Stops early at BOS or EOS (which are not emitted) or
 * at the model's seq_len. emit receives the prompt's pieces first, so the output begins with
 * the prompt text, then each generated piece (cce_tokenizer_decode(tok, prev, id)).
 * m is borrowed (its weights get loaded); it needs a tokenizer (else CCE_ERR_STATE). A prompt
 * longer than seq_len is CCE_ERR_RANGE. */
cce_status cce_generate(cce_model *m, const char *prompt, int n_new, float temperature, float top_p,
                        uint64_t seed, cce_emit_fn emit, void *user);

/* cce_generate that also fills *stats (may be NULL). */
cce_status cce_generate_with_stats(cce_model *m, const char *prompt, int n_new, float temperature,
                                   float top_p, uint64_t seed, cce_emit_fn emit, void *user,
                                   cce_generate_stats *stats);

#endif
