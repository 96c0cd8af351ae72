/* Choosing the next token from logits: greedy (temperature 0), temperature sampling, and
 * nucleus (top-p) sampling, with a seeded random stream (GSL's MT19937) so that the same seed
 * gives the same tokens. */
#ifndef CCE_SAMPLER_H
#define CCE_SAMPLER_H

#include <stdint.h>

#include "status.h"

typedef struct cce_sampler cce_sampler;

/* vocab >= 1; temperature >= 0 (0: greedy, the argmax; no randomness is used); top_p in [0, 1]
 * (0 or 1: sample from the whole distribution; otherwise from the smallest set of most probable
 * tokens whose probability exceeds top_p, renormalised). The random stream is MT19937 seeded
 * with seed (GSL maps seed 0 to its default seed 4357). Out-of-range values are CCE_ERR_RANGE
 * naming the parameter. The caller owns *out (cce_sampler_free). */
cce_status cce_sampler_new(int32_t vocab, float temperature, float top_p, uint64_t seed,
                           cce_sampler **out);
void cce_sampler_free(cce_sampler *s);

/* Picks a token from logits [vocab]. logits is used as scratch (it holds the probabilities
 * afterwards unless greedy). A NaN or +Inf logit is CCE_ERR_NUMERIC (-Inf
 * masks a token). */
cce_status cce_sampler_sample(cce_sampler *s, float *logits, int32_t *token);

#endif
