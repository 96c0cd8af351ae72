/* Evaluation of a model on a token stream under the project's pinned protocol (DESIGN 6):
 * perplexity with standard error, mean NLL, top-1 next-token accuracy and, against a reference
 * (base) model on the same windows, KL divergence, top-1 agreement and Δp statistics.
 *
 * The protocol:
 *   - the text is tokenized once, as one stream (no BOS);
 *   - window k is BOS followed by stream[k*(ctx-1) .. (k+1)*(ctx-1)-1]; windows do not overlap
 *     and only whole windows are used;
 *   - every position after BOS is scored: the logits at window position t predict token t+1,
 *     so each window scores ctx-1 tokens;
 *   - the default ctx is min(model seq_len, 512);
 *   - max_tokens M limits the run to floor(M / (ctx-1)) whole windows (at least one when the
 *     stream holds one).
 *
 * Statistics:
 *   - NLL per scored token from a max-subtracted log-softmax in double precision;
 *   - ppl = exp(mean NLL); nll_stderr = sample standard deviation / sqrt(n);
 *   - ppl_stderr = ppl * nll_stderr, the delta-method approximation;
 *   - KL(ref || model) = sum_i p_ref(i) (log p_ref(i) - log p_model(i)) per scored position;
 *   - Δp = p_model(correct) - p_ref(correct), as llama.cpp's perplexity tool reports it;
 *   - percentiles interpolate linearly between order statistics (gsl_stats_quantile).
 * A standard error needs at least two scored tokens; with one it is NaN. */
#ifndef CCE_EVAL_H
#define CCE_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "model.h"
#include "status.h"

/* The default context cap of the protocol. */
#define CCE_EVAL_DEFAULT_CTX_CAP 512

/* Percentiles of Δp reported in cce_eval_result.dp_p, in this order. */
#define CCE_EVAL_DP_PERCENTILES 7
extern const double cce_eval_dp_percentiles[CCE_EVAL_DP_PERCENTILES]; /* 1 5 10 50 90 95 99 */

typedef struct cce_eval_options {
    int ctx;            /* window length including BOS; 0 = min(seq_len, 512) */
    int64_t max_tokens; /* limit on scored tokens (whole windows); 0 = all */
    int keep_token_nll; /* fill result->token_nll */
    /* Called after each window with (windows done, windows total); may be NULL. */
    void (*progress)(void *user, long done, long total);
    void *progress_user;
} cce_eval_options;

typedef struct cce_eval_result {
    int ctx;                     /* window length including BOS */
    int64_t n_windows, n_tokens; /* n_tokens = n_windows * (ctx - 1) scored tokens */
    int64_t max_tokens;          /* the limit asked for (0 = all), recorded with the protocol */
    double mean_nll, nll_stderr, ppl, ppl_stderr;
    double top1;                  /* fraction of scored tokens whose argmax is the target */
    double seconds, tokens_per_s; /* wall time of the windows (both models); scored tokens/s */
    int has_ref;                  /* the fields below are set only when 1 */
    double kl_mean, kl_stderr, kl_p99;
    double top1_agree; /* fraction of positions where both models' argmax agree */
    double dp_mean, dp_stderr;
    double dp_p[CCE_EVAL_DP_PERCENTILES]; /* percentiles of Δp (cce_eval_dp_percentiles) */
    double dp_min, dp_max;
    double *token_nll; /* [n_tokens] in stream order, malloc'd (keep_token_nll) or NULL */
} cce_eval_result;

/* Number of whole windows the protocol uses for a stream of n_stream tokens: n_stream / (ctx-1),
 * limited to max(1, max_tokens / (ctx-1)) when max_tokens > 0. 0 when ctx < 2, max_tokens < 0
 * or the stream is shorter than one window. */
int64_t cce_eval_window_count(size_t n_stream, int ctx, int64_t max_tokens);

/* The ctx the protocol uses for a model when the options ask for 0. */
int cce_eval_default_ctx(const cce_model *m);

/* Evaluates m (and, if ref is not NULL, compares it with ref on the same windows) on the token
 * stream [n] (borrowed). o may be NULL (defaults). BOS is cce_tokenizer_bos of m's tokenizer
 * (its BOS, else its EOS; 1, the llama2.c convention, only when m has no tokenizer). Each window
 * runs through one cce_forward per model, side by side, so no logits are kept beyond the current
 * window. Errors:
 *   - CCE_ERR_RANGE: ctx outside [2, seq_len] of either model, max_tokens < 0, a token outside
 *     the model's vocabulary (names its stream index), a stream shorter than one window;
 *   - CCE_ERR_ARG: ref with a different vocabulary size (names both), or both models have
 *     tokenizers and they differ;
 *   - CCE_ERR_NUMERIC: non-finite logits (names the window and position);
 *   - whatever the forward pass reports.
 * On success *out is filled; the caller releases it with cce_eval_result_free. On failure *out
 * holds nothing to free. */
cce_status cce_eval(cce_model *m, cce_model *ref, const int32_t *stream, size_t n,
                    const cce_eval_options *o, cce_eval_result *out);

/* Frees r->token_nll (and sets it to NULL); r itself is the caller's. NULL is allowed. */
void cce_eval_result_free(cce_eval_result *r);

/* ---- The metric math, exposed for tests and for callers that have logits of their own. ---- */

/* Per-position scores; every array is [T] (the caller's). Ref-only arrays (kl, dp, agree) may be
 * NULL when there is no reference. */
typedef struct cce_eval_scores {
    double *nll;      /* -log p_model(target) */
    uint8_t *correct; /* 1 if argmax of the model's logits is the target */
    double *kl;       /* KL(ref || model) */
    double *dp;       /* p_model(target) - p_ref(target) */
    uint8_t *agree;   /* 1 if both argmaxes are equal */
} cce_eval_scores;

/* Scores T positions of V logits: logits [T, V] (borrowed), ref_logits [T, V] or NULL,
 * targets [T] (position t is scored against targets[t]). Parallel over positions (OpenMP; no
 * BLAS inside). CCE_ERR_RANGE names a target outside [0, V); CCE_ERR_NUMERIC names the first
 * position whose NLL or KL is not finite. */
cce_status cce_eval_score_logits(const float *logits, const float *ref_logits, int T, int V,
                                 const int32_t *targets, const cce_eval_scores *out);

/* Fills the statistics of out (mean_nll .. dp_max; not ctx, counts, timing or token_nll) from
 * n per-token scores (borrowed; ref arrays read only when has_ref). */
cce_status cce_eval_summarize(const cce_eval_scores *s, int64_t n, int has_ref,
                              cce_eval_result *out);

/* ---- Reporting ---- */

/* The protocol line printed with every result:
 *   "protocol: window=BOS+511 non-overlapping, ctx=512, scored=1533, windows=3,
 *    data=<data> sha256=<sha256>"
 * written into buf (NUL-terminated, truncated to size). data and sha256 may be NULL ("-").
 * Returns the length the whole line needs (as snprintf). */
int cce_eval_protocol_line(const cce_eval_result *r, const char *data, const char *sha256,
                           char *buf, size_t size);

/* The result as a JSON object (protocol fields, metrics, and the reference metrics when has_ref;
 * a NaN becomes null). data and sha256 may be NULL. New reference owned by the caller
 * (json_decref); NULL if out of memory. */
json_t *cce_eval_result_json(const cce_eval_result *r, const char *data, const char *sha256);

#endif
