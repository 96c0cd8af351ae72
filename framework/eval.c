/* Evaluation under the pinned protocol: windows over a token stream, one forward pass per
 * window (and one of the reference, side by side), per-token scores, summary statistics. */
#include "eval.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forward.h"

int64_t cce_eval_window_count(size_t n_stream, int ctx, int64_t max_tokens) {
    if (ctx < 2 || max_tokens < 0) return 0;
    int64_t stride = ctx - 1;
    int64_t w = (int64_t)(n_stream / (size_t)stride);
    if (max_tokens > 0) {
        int64_t limit = max_tokens / stride;
        if (limit < 1) limit = 1;
        if (w > limit) w = limit;
    }
    return w;
}

int cce_eval_default_ctx(const cce_model *m) {
    int seq = cce_model_config(m)->seq_len;
    return seq < CCE_EVAL_DEFAULT_CTX_CAP ? seq : CCE_EVAL_DEFAULT_CTX_CAP;
}

void cce_eval_result_free(cce_eval_result *r) {
    if (!r) return;
    free(r->token_nll);
    r->token_nll = NULL;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Per-token score arrays for the whole run. */
typedef struct score_buffers {
    double *nll;      /* [n_tokens] */
    uint8_t *correct; /* [n_tokens] */
    double *kl;       /* [n_tokens] or NULL */
    double *dp;       /* [n_tokens] or NULL */
    uint8_t *agree;   /* [n_tokens] or NULL */
} score_buffers;

static void score_buffers_free(score_buffers *b) {
    free(b->nll);
    free(b->correct);
    free(b->kl);
    free(b->dp);
    free(b->agree);
}

static cce_status score_buffers_alloc(score_buffers *b, int64_t n, int has_ref) {
    memset(b, 0, sizeof *b);
    b->nll = malloc((size_t)n * sizeof *b->nll);
    b->correct = malloc((size_t)n);
    if (has_ref) {
        b->kl = malloc((size_t)n * sizeof *b->kl);
        b->dp = malloc((size_t)n * sizeof *b->dp);
        b->agree = malloc((size_t)n);
    }
    if (!b->nll || !b->correct || (has_ref && (!b->kl || !b->dp || !b->agree))) {
        score_buffers_free(b);
        return cce_fail(CCE_ERR_NOMEM, "evaluation scores for %lld tokens", (long long)n);
    }
    return CCE_OK;
}

/* Checks models, options and the used part of the stream; sets *ctx and *n_windows. */
static cce_status check_inputs(cce_model *m, cce_model *ref, const int32_t *stream, size_t n,
                               const cce_eval_options *o, int *ctx, int64_t *n_windows) {
    if (!m) return cce_fail(CCE_ERR_ARG, "cce_eval: no model");
    if (!stream && n > 0) return cce_fail(CCE_ERR_ARG, "cce_eval: no token stream");
    const cce_config *cfg = cce_model_config(m);
    int c = o->ctx ? o->ctx : cce_eval_default_ctx(m);
    if (c < 2 || c > cfg->seq_len)
        return cce_fail(CCE_ERR_RANGE, "ctx = %d is outside [2, %d] (the model's seq_len)", c,
                        (int)cfg->seq_len);
    if (ref) {
        const cce_config *rc = cce_model_config(ref);
        if (rc->vocab_size != cfg->vocab_size)
            return cce_fail(CCE_ERR_ARG,
                            "the model's vocabulary (%d tokens) differs from the reference's "
                            "(%d tokens)",
                            (int)cfg->vocab_size, (int)rc->vocab_size);
        const cce_tokenizer *mt = cce_model_tokenizer(m), *rt = cce_model_tokenizer(ref);
        if (mt && rt && cce_tokenizer_fingerprint(mt) != cce_tokenizer_fingerprint(rt))
            return cce_fail(CCE_ERR_ARG, "the model's tokenizer differs from the reference's");
        if (c > rc->seq_len)
            return cce_fail(CCE_ERR_RANGE, "ctx = %d is outside [2, %d] (the reference's seq_len)",
                            c, (int)rc->seq_len);
    }
    if (o->max_tokens < 0)
        return cce_fail(CCE_ERR_RANGE, "max_tokens = %lld is negative (0 means all)",
                        (long long)o->max_tokens);
    int64_t w = cce_eval_window_count(n, c, o->max_tokens);
    if (w < 1)
        return cce_fail(CCE_ERR_RANGE,
                        "a stream of %zu tokens is shorter than one window (BOS + %d tokens)", n,
                        c - 1);
    size_t used = (size_t)w * (size_t)(c - 1);
    for (size_t i = 0; i < used; i++)
        if (stream[i] < 0 || stream[i] >= cfg->vocab_size)
            return cce_fail(CCE_ERR_RANGE,
                            "token %d at stream index %zu is outside the vocabulary [0, %d)",
                            (int)stream[i], i, (int)cfg->vocab_size);
    *ctx = c;
    *n_windows = w;
    return CCE_OK;
}

/* The forward passes and buffers of one run. */
typedef struct eval_run {
    cce_forward *fwd, *ref_fwd;
    int32_t *window;   /* [ctx]: BOS + ctx-1 stream tokens */
    float *logits;     /* [ctx, vocab] */
    float *ref_logits; /* [ctx, vocab] or NULL */
} eval_run;

static void eval_run_free(eval_run *r) {
    cce_forward_free(r->fwd);
    cce_forward_free(r->ref_fwd);
    free(r->window);
    free(r->logits);
    free(r->ref_logits);
}

static cce_status eval_run_new(cce_model *m, cce_model *ref, int ctx, eval_run *r) {
    memset(r, 0, sizeof *r);
    size_t V = (size_t)cce_model_config(m)->vocab_size;
    cce_status s = cce_forward_new(m, ctx, &r->fwd);
    if (!s && ref) s = cce_forward_new(ref, ctx, &r->ref_fwd);
    if (s) {
        eval_run_free(r);
        return s;
    }
    r->window = malloc((size_t)ctx * sizeof *r->window);
    r->logits = malloc((size_t)ctx * V * sizeof *r->logits);
    if (ref) r->ref_logits = malloc((size_t)ctx * V * sizeof *r->ref_logits);
    if (!r->window || !r->logits || (ref && !r->ref_logits)) {
        eval_run_free(r);
        return cce_fail(CCE_ERR_NOMEM, "evaluation buffers of %d x %zu logits", ctx, V);
    }
    return CCE_OK;
}

cce_status cce_eval(cce_model *m, cce_model *ref, const int32_t *stream, size_t n,
                    const cce_eval_options *o, cce_eval_result *out) {
    static const cce_eval_options defaults = {0};
    if (!out) return cce_fail(CCE_ERR_ARG, "cce_eval: no result");
    memset(out, 0, sizeof *out);
    if (!o) o = &defaults;
    int ctx = 0;
    int64_t n_windows = 0;
    cce_status s = check_inputs(m, ref, stream, n, o, &ctx, &n_windows);
    if (s) return s;

    const cce_tokenizer *tok = cce_model_tokenizer(m);
    int32_t bos = tok ? cce_tokenizer_bos(tok) : 1; /* llama2.c convention without a tokenizer */
    int V = cce_model_config(m)->vocab_size;
    int stride = ctx - 1;
    int64_t n_tokens = n_windows * stride;

    score_buffers b;
    if ((s = score_buffers_alloc(&b, n_tokens, ref != NULL))) return s;
    eval_run run;
    if ((s = eval_run_new(m, ref, ctx, &run))) {
        score_buffers_free(&b);
        return s;
    }

    double t0 = now_seconds();
    for (int64_t w = 0; w < n_windows && !s; w++) {
        const int32_t *chunk = stream + (size_t)w * (size_t)stride; /* [ctx-1] */
        run.window[0] = bos;
        memcpy(run.window + 1, chunk, (size_t)stride * sizeof *chunk);
        s = cce_forward_window(run.fwd, run.window, ctx, run.logits);
        if (!s && ref) s = cce_forward_window(run.ref_fwd, run.window, ctx, run.ref_logits);
        if (s) {
            cce_error_prefix("window %lld: ", (long long)w);
            break;
        }
        /* Positions 0..ctx-2 predict the window's tokens 1..ctx-1, i.e. chunk[0..ctx-2]. */
        size_t off = (size_t)w * (size_t)stride;
        cce_eval_scores sc = {b.nll + off, b.correct + off, ref ? b.kl + off : NULL,
                              ref ? b.dp + off : NULL, ref ? b.agree + off : NULL};
        s = cce_eval_score_logits(run.logits, run.ref_logits, stride, V, chunk, &sc);
        if (s) {
            cce_error_prefix("window %lld: ", (long long)w);
            break;
        }
        if (o->progress) o->progress(o->progress_user, (long)(w + 1), (long)n_windows);
    }
    double seconds = now_seconds() - t0;
    eval_run_free(&run);

    if (!s) {
        cce_eval_scores all = {b.nll, b.correct, b.kl, b.dp, b.agree};
        s = cce_eval_summarize(&all, n_tokens, ref != NULL, out);
    }
    if (s) {
        score_buffers_free(&b);
        memset(out, 0, sizeof *out);
        return s;
    }
    out->ctx = ctx;
    out->n_windows = n_windows;
    out->n_tokens = n_tokens;
    out->max_tokens = o->max_tokens;
    out->seconds = seconds;
    out->tokens_per_s = seconds > 0 ? (double)n_tokens / seconds : 0.0;
    if (o->keep_token_nll) {
        out->token_nll = b.nll; /* handed over */
        b.nll = NULL;
    }
    score_buffers_free(&b);
    return CCE_OK;
}
