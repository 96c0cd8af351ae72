/* Text generation (see generate.h). */
#include "generate.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forward.h"
#include "sampler.h"
#include "tokenizer.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void emit_piece(const cce_tokenizer *tok, int32_t prev, int32_t id, cce_emit_fn emit,
                       void *user) {
    size_t len;
    const char *piece = cce_tokenizer_decode(tok, prev, id, &len);
    if (emit && len) emit(user, piece, len);
}

cce_status cce_generate(cce_model *m, const char *prompt, int n_new, float temperature, float top_p,
                        uint64_t seed, cce_emit_fn emit, void *user) {
    return cce_generate_with_stats(m, prompt, n_new, temperature, top_p, seed, emit, user, NULL);
}

cce_status cce_generate_with_stats(cce_model *m, const char *prompt, int n_new, float temperature,
                                   float top_p, uint64_t seed, cce_emit_fn emit, void *user,
                                   cce_generate_stats *stats) {
    if (!m) return cce_fail(CCE_ERR_ARG, "generate: no model given");
    if (n_new < 0) return cce_fail(CCE_ERR_RANGE, "generate: n_new = %d, must be >= 0", n_new);
    const cce_tokenizer *tok = cce_model_tokenizer(m);
    if (!tok) return cce_fail(CCE_ERR_STATE, "generate: the model has no tokenizer");
    const cce_config *c = cce_model_config(m);
    if (!prompt) prompt = "";
    if (stats) memset(stats, 0, sizeof *stats);

    int32_t *tokens = NULL; /* [n_prompt] */
    size_t n_prompt = 0;
    cce_status s = cce_tokenizer_encode(tok, prompt, strlen(prompt), 1, 0, &tokens, &n_prompt);
    if (s) {
        cce_error_prefix("generate: encoding the prompt: ");
        return s;
    }
    if (n_prompt > (size_t)c->seq_len) {
        free(tokens);
        return cce_fail(CCE_ERR_RANGE, "generate: the prompt is %zu tokens, seq_len is %d",
                        n_prompt, (int)c->seq_len);
    }
    int T = (int)n_prompt;
    cce_forward *f = NULL;
    cce_sampler *smp = NULL;
    float *logits = NULL; /* [T, vocab]: the prompt window, then [vocab] per step */
    if ((s = cce_forward_new(m, T, &f)) ||
        (s = cce_sampler_new(c->vocab_size, temperature, top_p, seed, &smp)))
        goto done;
    logits = malloc(sizeof(float) * (size_t)T * (size_t)c->vocab_size);
    if (!logits) {
        s = cce_fail(CCE_ERR_NOMEM, "generate: logits of a %d-token prompt", T);
        goto done;
    }
    for (int i = 1; i < T; i++) emit_piece(tok, tokens[i - 1], tokens[i], emit, user);

    double t0 = now_seconds();
    if ((s = cce_forward_window(f, tokens, T, logits))) goto done;
    float *last = logits + (size_t)(T - 1) * (size_t)c->vocab_size; /* [vocab] */
    double t1 = now_seconds();
    int32_t bos = cce_tokenizer_bos(tok), eos = cce_tokenizer_eos(tok), prev = tokens[T - 1];
    int generated = 0;
    for (int pos = T; generated < n_new;) {
        int32_t next;
        if ((s = cce_sampler_sample(smp, last, &next))) goto done;
        if (next == bos || next == eos) break;
        emit_piece(tok, prev, next, emit, user);
        generated++;
        prev = next;
        if (generated == n_new || pos >= c->seq_len) break;
        if ((s = cce_forward_token(f, next, pos, last))) goto done;
        pos++;
    }
    if (stats) {
        stats->n_prompt = T;
        stats->n_generated = generated;
        stats->prefill_seconds = t1 - t0;
        stats->decode_seconds = now_seconds() - t1;
    }
done:
    free(logits);
    free(tokens);
    cce_sampler_free(smp);
    cce_forward_free(f);
    return s;
}
