/* Speed measurements of the forward pass (see bench.h). */
#include "bench.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forward.h"
#include "kernels.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

cce_status cce_bench_sgemm_peak(int n, int reps, double *gflops) {
    if (n < 16 || n > 16384)
        return cce_fail(CCE_ERR_RANGE, "bench: sgemm size %d is outside [16, 16384]", n);
    if (reps < 1) return cce_fail(CCE_ERR_RANGE, "bench: sgemm reps %d, must be >= 1", reps);
    size_t nn = (size_t)n * (size_t)n;
    float *a = malloc(sizeof(float) * nn); /* [n, n] */
    float *b = malloc(sizeof(float) * nn); /* [n, n] */
    float *c = malloc(sizeof(float) * nn); /* [n, n] */
    if (!a || !b || !c) {
        free(a);
        free(b);
        free(c);
        return cce_fail(CCE_ERR_NOMEM, "bench: sgemm buffers of %d x %d", n, n);
    }
    for (size_t i = 0; i < nn; i++) {
        a[i] = (float)((i * 7919u) % 1000u) * 1e-3f - 0.5f;
        b[i] = (float)((i * 104729u) % 1000u) * 1e-3f - 0.5f;
    }
    /* A warm-up call (thread start-up, page faults), then the best of reps. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double best = INFINITY;
    for (int r = 0; r < reps; r++) {
        double t0 = now_seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        double t = now_seconds() - t0;
        if (t < best) best = t;
    }
    *gflops = 2.0 * n * (double)n * n / best / 1e9;
    free(a);
    free(b);
    free(c);
    return CCE_OK;
}

double cce_bench_window_flops(const cce_model *m, int T) {
    const cce_config *c = cce_model_config(m);
    double per_token = 2.0 * (double)c->vocab_size * c->dim, attention = 0.0;
    for (int l = 0; l < c->n_layers; l++) {
        const cce_layer_shape *s = cce_model_layer(m, l);
        if (s->removed) continue;
        double q = (double)s->n_heads * c->head_dim, kv = (double)s->n_kv_heads * c->head_dim;
        per_token += 2.0 * (c->dim * (2.0 * q + 2.0 * kv) + 3.0 * c->dim * (double)s->hidden_dim);
        attention += 4.0 * c->head_dim * (double)s->n_heads * (double)T * (T + 1) / 2.0;
    }
    return per_token * T + attention;
}

int64_t cce_bench_streamed_bytes(const cce_model *m) {
    const cce_config *c = cce_model_config(m);
    int64_t n = (int64_t)c->dim + (int64_t)c->vocab_size * c->dim;
    for (int l = 0; l < c->n_layers; l++) {
        const cce_layer_shape *s = cce_model_layer(m, l);
        if (s->removed) continue;
        int64_t q = (int64_t)s->n_heads * c->head_dim, kv = (int64_t)s->n_kv_heads * c->head_dim;
        n += 2 * (int64_t)c->dim + (int64_t)c->dim * (2 * q + 2 * kv) +
             3 * (int64_t)c->dim * s->hidden_dim;
    }
    return 4 * n;
}

static float sum_floats(const float *p, int64_t n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) s += p[i];
    return s;
}

/* Reads every listed tensor once with all threads (each thread a contiguous slice of each). */
static double stream_once(const float *const *ptr, const int64_t *numel, int count) {
    double total = 0.0;
#pragma omp parallel reduction(+ : total)
    {
        int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        for (int k = 0; k < count; k++) {
            int64_t lo = numel[k] * tid / nth, hi = numel[k] * (tid + 1) / nth;
            total += sum_floats(ptr[k] + lo, hi - lo);
        }
    }
    return total;
}

/* Whether a measurement that has run `done` of its `reps` timed runs, taking `spent` seconds,
 * should stop (see cce_bench_options.budget_seconds). */
static int budget_spent(const cce_bench_options *o, int done, double spent) {
    return o->budget_seconds > 0 && done >= 3 && spent >= o->budget_seconds;
}

/* The time to read, with all threads, the very buffers a decoding step of f reads: best run of
 * `tokens` reads in a row, divided by `tokens`; and their size in bytes. */
static cce_status bench_stream(cce_forward *f, const cce_bench_options *o, int tokens,
                               double *seconds, int64_t *bytes) {
    int count = 0;
    cce_status s = cce_forward_decode_buffers(f, NULL, NULL, 0, &count);
    if (s) return s;
    const float **ptr = malloc(sizeof *ptr * (size_t)(count + 1));
    int64_t *numel = malloc(sizeof *numel * (size_t)(count + 1));
    if (!ptr || !numel) {
        free(ptr);
        free(numel);
        return cce_fail(CCE_ERR_NOMEM, "bench: buffer list");
    }
    double best = INFINITY, sink = 0.0, spent = 0.0;
    if (!(s = cce_forward_decode_buffers(f, ptr, numel, count, &count))) {
        *bytes = 0;
        for (int k = 0; k < count; k++) *bytes += 4 * numel[k];
        sink += stream_once(ptr, numel, count); /* warm-up */
        for (int r = 0; r < o->stream_reps && !budget_spent(o, r, spent); r++) {
            double t0 = now_seconds();
            for (int i = 0; i < tokens; i++) sink += stream_once(ptr, numel, count);
            double t = now_seconds() - t0;
            spent += t;
            if (t < best) best = t;
        }
        /* The sum is finite for finite weights; using it keeps the reads from being elided. */
        if (isnan(sink)) best = INFINITY;
    }
    free(ptr);
    free(numel);
    *seconds = best / tokens;
    return s;
}

static cce_status bench_eval(cce_forward *f, const cce_bench_options *o, int T, int vocab,
                             double *best) {
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)T);                /* [T] */
    float *logits = malloc(sizeof(float) * (size_t)T * (size_t)vocab); /* [T, vocab] */
    if (!tok || !logits) {
        free(tok);
        free(logits);
        return cce_fail(CCE_ERR_NOMEM, "bench: a window of %d tokens", T);
    }
    uint64_t x = o->seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (int t = 0; t < T; t++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        tok[t] = (int32_t)((x >> 33) % (uint64_t)vocab);
    }
    tok[0] = 1;                                           /* BOS, as evaluation windows begin */
    cce_status s = cce_forward_window(f, tok, T, logits); /* warm-up */
    *best = INFINITY;
    for (int r = 0; !s && r < o->window_reps; r++) {
        double t0 = now_seconds();
        s = cce_forward_window(f, tok, T, logits);
        double t = now_seconds() - t0;
        if (t < *best) *best = t;
    }
    free(tok);
    free(logits);
    return s;
}

/* Greedy decoding of n steps from BOS; returns the wall time in *seconds. */
static cce_status decode_run(cce_forward *f, int n, int vocab, float *logits, double *seconds) {
    int32_t tok = 1;
    double t0 = now_seconds();
    for (int pos = 0; pos < n; pos++) {
        cce_status s = cce_forward_token(f, tok, pos, logits);
        if (s) return s;
        tok = cce_argmax(logits, vocab);
    }
    *seconds = now_seconds() - t0;
    return CCE_OK;
}

static cce_status bench_generate(cce_forward *f, const cce_bench_options *o, int n, int vocab,
                                 double *tok_s) {
    float *logits = malloc(sizeof(float) * (size_t)vocab); /* [vocab] */
    if (!logits) return cce_fail(CCE_ERR_NOMEM, "bench: logits");
    double t, best = INFINITY, spent = 0.0;
    cce_status s = decode_run(f, n < 8 ? n : 8, vocab, logits, &t); /* warm-up */
    for (int r = 0; !s && r < o->gen_reps && !budget_spent(o, r, spent); r++) {
        s = decode_run(f, n, vocab, logits, &t);
        spent += t;
        if (!s && t < best) best = t;
    }
    free(logits);
    *tok_s = n / best;
    return s;
}

cce_status cce_bench_model(cce_model *m, const cce_bench_options *o, cce_bench_result *r) {
    const cce_config *c = cce_model_config(m);
    if (o->window < 0 || o->window > c->seq_len)
        return cce_fail(CCE_ERR_RANGE, "bench: window %d is outside [1, %d] (seq_len)", o->window,
                        (int)c->seq_len);
    if (o->window_reps < 1 || o->gen_tokens < 1 || o->gen_reps < 1 || o->stream_reps < 1)
        return cce_fail(CCE_ERR_RANGE, "bench: repetition counts must be >= 1");
    memset(r, 0, sizeof *r);
    int T = o->window ? o->window : c->seq_len;
    cce_forward *f;
    cce_status s = cce_forward_new(m, T, &f);
    if (s) return s;
    r->params = cce_model_total_params(m);
    r->streamed_bytes = cce_bench_streamed_bytes(m);
    r->window = T;
    r->window_flops = cce_bench_window_flops(m, T);
    r->gen_tokens = o->gen_tokens < c->seq_len ? o->gen_tokens : c->seq_len;
    if (!(s = bench_eval(f, o, T, c->vocab_size, &r->eval_seconds)) &&
        !(s = bench_generate(f, o, r->gen_tokens, c->vocab_size, &r->gen_tok_s)) &&
        !(s = bench_stream(f, o, r->gen_tokens, &r->stream_seconds, &r->streamed_bytes))) {
        r->eval_tok_s = T / r->eval_seconds;
        r->eval_gflops = r->window_flops / r->eval_seconds / 1e9;
        r->stream_gbs = (double)r->streamed_bytes / r->stream_seconds / 1e9;
        r->stream_tok_s = 1.0 / r->stream_seconds;
    }
    cce_forward_free(f);
    return s;
}
