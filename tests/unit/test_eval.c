/* Evaluation: metric math on hand-made logits, window counting, reporting, synthetic models and
 * the real stories260K facts of the mirror's README. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_support.h"

#include "dataset.h"
#include "eval.h"
#include "forward.h"
#include "import.h"
#include "synth.h"

/* |a - b| <= tol, in double precision (cmocka has only a float version). */
#define assert_near(a, b, tol)                                                                     \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        if (!(fabs(a_ - b_) <= (tol)))                                                             \
            fail_msg("%s = %.12g, expected %.12g (tolerance %g)", #a, a_, b_, (double)(tol));      \
    } while (0)

/* ---- metric math on hand-made logits ---- */

typedef struct scores_buf {
    double nll[64], kl[64], dp[64];
    uint8_t correct[64], agree[64];
    cce_eval_scores s;
} scores_buf;

static void scores_init(scores_buf *b) {
    memset(b, 0, sizeof *b);
    b->s = (cce_eval_scores){b->nll, b->correct, b->kl, b->dp, b->agree};
}

static void test_uniform_logits(void **state) {
    (void)state;
    enum { T = 4, V = 37 };
    float logits[T * V]; /* [T, V] */
    for (int i = 0; i < T * V; i++) logits[i] = 2.5f;
    int32_t targets[T] = {0, 5, 36, 12};
    scores_buf b;
    scores_init(&b);
    assert_cce_ok(cce_eval_score_logits(logits, NULL, T, V, targets, &b.s));
    for (int t = 0; t < T; t++) assert_near(b.nll[t], log((double)V), 1e-12);
    /* The first maximum is the argmax: only target 0 counts as correct. */
    assert_int_equal(b.correct[0], 1);
    assert_int_equal(b.correct[1] + b.correct[2] + b.correct[3], 0);

    cce_eval_result r = {0};
    assert_cce_ok(cce_eval_summarize(&b.s, T, 0, &r));
    assert_near(r.mean_nll, log((double)V), 1e-12);
    assert_near(r.ppl, (double)V, 1e-9);
    assert_near(r.nll_stderr, 0.0, 1e-15);
    assert_near(r.top1, 0.25, 1e-15);
    assert_int_equal(r.has_ref, 0);
}

static void test_one_hot_logits(void **state) {
    (void)state;
    enum { T = 3, V = 10 };
    const float L = 8.0f;
    float logits[T * V] = {0}; /* [T, V] */
    int32_t targets[T] = {3, 9, 0};
    for (int t = 0; t < T; t++) logits[t * V + targets[t]] = L;
    /* Large shifts must not matter (max subtraction). */
    for (int i = V; i < 2 * V; i++) logits[i] += 1000.0f;
    scores_buf b;
    scores_init(&b);
    assert_cce_ok(cce_eval_score_logits(logits, NULL, T, V, targets, &b.s));
    double expect = log(exp((double)L) + (V - 1)) - (double)L; /* -log softmax at the peak */
    for (int t = 0; t < T; t++) {
        assert_near(b.nll[t], expect, 1e-12);
        assert_int_equal(b.correct[t], 1);
    }
    /* A target off the peak: -log(1 / (e^L + V - 1)). */
    int32_t off[1] = {4};
    assert_cce_ok(cce_eval_score_logits(logits, NULL, 1, V, off, &b.s));
    assert_near(b.nll[0], log(exp((double)L) + (V - 1)), 1e-12);
    assert_int_equal(b.correct[0], 0);
}

static void test_kl_identical_is_zero(void **state) {
    (void)state;
    enum { T = 5, V = 23 };
    float logits[T * V]; /* [T, V] */
    for (int i = 0; i < T * V; i++) logits[i] = (float)sin(0.37 * i) * 4.0f;
    int32_t targets[T] = {1, 2, 3, 22, 0};
    scores_buf b;
    scores_init(&b);
    assert_cce_ok(cce_eval_score_logits(logits, logits, T, V, targets, &b.s));
    for (int t = 0; t < T; t++) {
        assert_true(b.kl[t] == 0.0);
        assert_true(b.dp[t] == 0.0);
        assert_int_equal(b.agree[t], 1);
    }
    cce_eval_result r = {0};
    assert_cce_ok(cce_eval_summarize(&b.s, T, 1, &r));
    assert_int_equal(r.has_ref, 1);
    assert_true(r.kl_mean == 0.0 && r.kl_p99 == 0.0 && r.dp_mean == 0.0);
    assert_true(r.dp_min == 0.0 && r.dp_max == 0.0);
    assert_near(r.top1_agree, 1.0, 0);
}

static void test_kl_hand_computed(void **state) {
    (void)state;
    /* ref p = (1/2, 1/2); model p = (3/4, 1/4).
     * KL(ref || model) = 1/2 ln((1/2)/(3/4)) + 1/2 ln((1/2)/(1/4)) = 1/2 ln(4/3). */
    float ref[2] = {0.0f, 0.0f};
    float model[2] = {(float)log(3.0), 0.0f};
    int32_t target[1] = {1};
    scores_buf b;
    scores_init(&b);
    assert_cce_ok(cce_eval_score_logits(model, ref, 1, 2, target, &b.s));
    /* float(log 3) is not exactly log 3: compare to the value of the stored logit. */
    double p0 = exp((double)model[0]) / (exp((double)model[0]) + 1.0);
    double kl = 0.5 * log(0.5 / p0) + 0.5 * log(0.5 / (1.0 - p0));
    assert_near(b.kl[0], kl, 1e-14);
    assert_near(b.kl[0], 0.5 * log(4.0 / 3.0), 1e-7);
    assert_near(b.dp[0], (1.0 - p0) - 0.5, 1e-14); /* p_model(1) - p_ref(1) = -1/4 */
    assert_near(b.nll[0], -log(1.0 - p0), 1e-14);
    assert_int_equal(b.correct[0], 0);
    /* ref argmax is 0 (first of equal maxima), model argmax is 0. */
    assert_int_equal(b.agree[0], 1);

    /* A three-way case with a disagreeing argmax: ref (0.2, 0.3, 0.5), model (0.5, 0.3, 0.2). */
    float r3[3] = {(float)log(0.2), (float)log(0.3), (float)log(0.5)};
    float m3[3] = {(float)log(0.5), (float)log(0.3), (float)log(0.2)};
    int32_t t3[1] = {2};
    assert_cce_ok(cce_eval_score_logits(m3, r3, 1, 3, t3, &b.s));
    double want = 0.2 * log(0.2 / 0.5) + 0.3 * log(1.0) + 0.5 * log(0.5 / 0.2);
    assert_near(b.kl[0], want, 1e-6);
    assert_near(b.dp[0], 0.2 - 0.5, 1e-6);
    assert_int_equal(b.agree[0], 0);
}

static void test_summary_statistics(void **state) {
    (void)state;
    scores_buf b;
    scores_init(&b);
    double nll[4] = {1, 2, 3, 4};
    memcpy(b.nll, nll, sizeof nll);
    b.correct[1] = b.correct[3] = 1;
    for (int i = 0; i < 4; i++) {
        b.kl[i] = 0.1 * (i + 1);
        b.dp[i] = 0.01 * i - 0.01;
        b.agree[i] = i != 2;
    }
    cce_eval_result r = {0};
    assert_cce_ok(cce_eval_summarize(&b.s, 4, 1, &r));
    assert_near(r.mean_nll, 2.5, 1e-15);
    double sd = sqrt(5.0 / 3.0); /* sample sd of 1..4 */
    assert_near(r.nll_stderr, sd / 2.0, 1e-12);
    assert_near(r.ppl, exp(2.5), 1e-9);
    assert_near(r.ppl_stderr, exp(2.5) * sd / 2.0, 1e-9);
    assert_near(r.top1, 0.5, 0);
    assert_near(r.kl_mean, 0.25, 1e-15);
    assert_near(r.kl_stderr, 0.1 * sd / 2.0, 1e-12);
    assert_near(r.top1_agree, 0.75, 0);
    /* dp = -0.01, 0, 0.01, 0.02: mean 0.005; linear-interpolated quantiles (index f*(n-1)). */
    assert_near(r.dp_mean, 0.005, 1e-15);
    assert_near(r.dp_min, -0.01, 1e-15);
    assert_near(r.dp_max, 0.02, 1e-15);
    for (int i = 0; i < CCE_EVAL_DP_PERCENTILES; i++) {
        double pos = cce_eval_dp_percentiles[i] / 100.0 * 3.0;
        assert_near(r.dp_p[i], -0.01 + 0.01 * pos, 1e-12);
    }
    assert_near(r.dp_p[3], 0.005, 1e-12); /* the median */
    assert_near(r.kl_p99, 0.1 + 0.1 * 0.99 * 3.0, 1e-12);

    /* One token: the mean is defined, the standard error is not. */
    assert_cce_ok(cce_eval_summarize(&b.s, 1, 0, &r));
    assert_true(isnan(r.nll_stderr) && isnan(r.ppl_stderr));
    assert_int_equal(cce_eval_summarize(&b.s, 0, 0, &r), CCE_ERR_ARG);
}

static void test_bad_logits_and_targets(void **state) {
    (void)state;
    enum { V = 4 };
    float logits[2 * V] = {0, 1, 2, 3, 0, 1, 2, 3};
    scores_buf b;
    scores_init(&b);
    int32_t bad[2] = {1, 4};
    assert_int_equal(cce_eval_score_logits(logits, NULL, 2, V, bad, &b.s), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "position 1"));
    int32_t neg[1] = {-1};
    assert_int_equal(cce_eval_score_logits(logits, NULL, 1, V, neg, &b.s), CCE_ERR_RANGE);

    int32_t ok[2] = {1, 2};
    logits[V + 2] = NAN;
    assert_int_equal(cce_eval_score_logits(logits, NULL, 2, V, ok, &b.s), CCE_ERR_NUMERIC);
    assert_non_null(strstr(cce_error_detail(), "position 1"));
    logits[V + 2] = INFINITY;
    assert_int_equal(cce_eval_score_logits(logits, NULL, 2, V, ok, &b.s), CCE_ERR_NUMERIC);
    /* A NaN only in the reference is caught too. */
    float clean[2 * V] = {0, 1, 2, 3, 0, 1, 2, 3};
    float ref[2 * V] = {0, 1, 2, 3, 0, NAN, 2, 3};
    assert_int_equal(cce_eval_score_logits(clean, ref, 2, V, ok, &b.s), CCE_ERR_NUMERIC);
    assert_non_null(strstr(cce_error_detail(), "reference"));
}

/* ---- windows ---- */

static void test_window_count(void **state) {
    (void)state;
    /* ctx 512: windows of 511 scored tokens. */
    assert_int_equal(cce_eval_window_count(1533, 512, 0), 3);
    assert_int_equal(cce_eval_window_count(1532, 512, 0), 2); /* only whole windows */
    assert_int_equal(cce_eval_window_count(510, 512, 0), 0);
    assert_int_equal(cce_eval_window_count(511, 512, 0), 1);
    assert_int_equal(cce_eval_window_count(0, 512, 0), 0);
    assert_int_equal(cce_eval_window_count(100000, 512, 1533), 3);
    assert_int_equal(cce_eval_window_count(100000, 512, 1532), 2); /* floor(M / (ctx-1)) */
    assert_int_equal(cce_eval_window_count(100000, 512, 100), 1);  /* at least one */
    assert_int_equal(cce_eval_window_count(100, 512, 100), 0);     /* if the stream allows */
    assert_int_equal(cce_eval_window_count(1000, 512, 100000), 1); /* the stream limits */
    /* ctx 256 and ctx 2 (one scored token per window). */
    assert_int_equal(cce_eval_window_count(100000, 256, 1275), 5);
    assert_int_equal(cce_eval_window_count(7, 2, 0), 7);
    assert_int_equal(cce_eval_window_count(7, 2, 3), 3);
    /* Invalid arguments give no windows. */
    assert_int_equal(cce_eval_window_count(1000, 1, 0), 0);
    assert_int_equal(cce_eval_window_count(1000, 0, 0), 0);
    assert_int_equal(cce_eval_window_count(1000, 16, -1), 0);
}

/* ---- reporting ---- */

static void test_protocol_line_and_json(void **state) {
    (void)state;
    cce_eval_result r = {.ctx = 512,
                         .n_windows = 3,
                         .n_tokens = 1533,
                         .mean_nll = 1.4,
                         .nll_stderr = NAN,
                         .ppl = exp(1.4),
                         .ppl_stderr = NAN,
                         .top1 = 0.64,
                         .seconds = 0.5,
                         .tokens_per_s = 3066};
    char line[256];
    int n = cce_eval_protocol_line(&r, "tinystories_val", "abc123", line, sizeof line);
    assert_int_equal(n, (int)strlen(line));
    assert_string_equal(line, "protocol: window=BOS+511 non-overlapping, ctx=512, scored=1533, "
                              "windows=3, data=tinystories_val sha256=abc123");

    json_t *o = cce_eval_result_json(&r, "tinystories_val", "abc123");
    assert_non_null(o);
    assert_near(json_real_value(json_object_get(o, "mean_nll")), 1.4, 0);
    assert_true(json_is_null(json_object_get(o, "nll_stderr")));
    assert_int_equal(json_integer_value(json_object_get(o, "tokens")), 1533);
    assert_true(json_is_false(json_object_get(o, "has_ref")));
    assert_null(json_object_get(o, "kl_mean"));
    json_t *p = json_object_get(o, "protocol");
    assert_int_equal(json_integer_value(json_object_get(p, "ctx")), 512);
    assert_int_equal(json_integer_value(json_object_get(p, "windows")), 3);
    assert_string_equal(json_string_value(json_object_get(p, "data_sha256")), "abc123");
    assert_string_equal(json_string_value(json_object_get(p, "line")), line);
    json_decref(o);

    r.has_ref = 1;
    r.kl_mean = 0.01;
    for (int i = 0; i < CCE_EVAL_DP_PERCENTILES; i++) r.dp_p[i] = i;
    o = cce_eval_result_json(&r, NULL, NULL);
    assert_non_null(o);
    assert_near(json_real_value(json_object_get(o, "kl_mean")), 0.01, 0);
    json_t *pct = json_object_get(o, "dp_percentiles");
    assert_near(json_real_value(json_object_get(pct, "p1")), 0, 0);
    assert_near(json_real_value(json_object_get(pct, "p99")), 6, 0);
    assert_true(json_is_null(json_object_get(json_object_get(o, "protocol"), "data")));
    json_decref(o);
}

/* ---- synthetic models ---- */

/* The "tiny" preset (vocab 300, seq_len 64) with the given seed. Caller frees. */
static cce_model *tiny_model(uint64_t seed, int zero_classifier, int vocab) {
    cce_synth_options o;
    assert_cce_ok(cce_synth_preset("tiny", &o));
    o.seed = seed;
    o.zero_classifier = zero_classifier;
    if (vocab) o.cfg.vocab_size = vocab;
    cce_model *m = NULL;
    assert_cce_ok(cce_synth_model(&o, &m));
    return m;
}

/* A deterministic pseudo-random stream of n tokens in [lo, V). Caller frees. */
static int32_t *make_stream(size_t n, int lo, int V) {
    int32_t *s = malloc(n * sizeof *s); /* [n] */
    assert_non_null(s);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s[i] = lo + (int32_t)(x % (uint64_t)(V - lo));
    }
    return s;
}

static void test_zero_classifier_perplexity_is_vocab(void **state) {
    (void)state;
    cce_model *m = tiny_model(3, 1, 0);
    int V = cce_model_config(m)->vocab_size;
    size_t n = 200;
    int32_t *stream = make_stream(n, 1, V); /* no token 0, the argmax of constant logits */
    cce_eval_options o = {.ctx = 32};
    cce_eval_result r;
    assert_cce_ok(cce_eval(m, NULL, stream, n, &o, &r));
    assert_int_equal(r.ctx, 32);
    assert_int_equal(r.n_windows, 6); /* floor(200 / 31) */
    assert_int_equal(r.n_tokens, 6 * 31);
    assert_near(r.ppl / V, 1.0, 1e-4);
    assert_near(r.mean_nll, log((double)V), 1e-5);
    assert_near(r.top1, 0.0, 0);
    assert_true(r.tokens_per_s > 0 && r.seconds >= 0);
    assert_null(r.token_nll);
    assert_int_equal(r.has_ref, 0);
    cce_eval_result_free(&r);
    free(stream);
    cce_model_free(m);
}

static void test_self_reference(void **state) {
    (void)state;
    cce_model *m = tiny_model(11, 0, 0);
    cce_model *twin = tiny_model(11, 0, 0); /* same seed: bit-identical */
    int V = cce_model_config(m)->vocab_size;
    size_t n = 300;
    int32_t *stream = make_stream(n, 0, V);
    cce_eval_options o = {.ctx = 64};
    cce_eval_result alone, self, pair;
    assert_cce_ok(cce_eval(m, NULL, stream, n, &o, &alone));
    assert_cce_ok(cce_eval(m, m, stream, n, &o, &self));
    assert_cce_ok(cce_eval(m, twin, stream, n, &o, &pair));
    const cce_eval_result *rs[2] = {&self, &pair};
    for (int i = 0; i < 2; i++) {
        const cce_eval_result *r = rs[i];
        assert_int_equal(r->has_ref, 1);
        assert_near(r->kl_mean, 0.0, 1e-12);
        assert_near(r->kl_p99, 0.0, 1e-12);
        assert_near(r->top1_agree, 1.0, 0);
        assert_near(r->dp_mean, 0.0, 1e-12);
        assert_near(r->dp_min, 0.0, 1e-12);
        assert_near(r->dp_max, 0.0, 1e-12);
        for (int k = 0; k < CCE_EVAL_DP_PERCENTILES; k++) assert_near(r->dp_p[k], 0.0, 1e-12);
        /* The model's own metrics do not change with a reference. */
        assert_near(r->mean_nll, alone.mean_nll, 1e-12);
        assert_near(r->top1, alone.top1, 0);
    }
    free(stream);
    cce_model_free(twin);
    cce_model_free(m);
}

/* Two different models: KL > 0, and the scores follow the protocol's windowing exactly. */
static void test_reference_and_windowing(void **state) {
    (void)state;
    cce_model *m = tiny_model(5, 0, 0);
    cce_model *ref = tiny_model(6, 0, 0);
    int V = cce_model_config(m)->vocab_size;
    const int ctx = 16, stride = ctx - 1;
    size_t n = 4 * (size_t)stride + 7; /* four whole windows and a partial one (unused) */
    int32_t *stream = make_stream(n, 0, V);
    cce_eval_options o = {.ctx = ctx, .keep_token_nll = 1};
    cce_eval_result r;
    assert_cce_ok(cce_eval(m, ref, stream, n, &o, &r));
    assert_int_equal(r.n_windows, 4);
    assert_int_equal(r.n_tokens, 4 * stride);
    assert_non_null(r.token_nll);
    assert_true(r.kl_mean > 1e-3);
    assert_true(r.kl_p99 >= r.kl_mean);
    assert_true(r.top1_agree < 1.0);
    assert_true(r.dp_min <= r.dp_p[0] && r.dp_p[6] <= r.dp_max);
    for (int k = 1; k < CCE_EVAL_DP_PERCENTILES; k++) assert_true(r.dp_p[k - 1] <= r.dp_p[k]);

    /* Recompute window 2 by hand: BOS + stream[2*stride .. 3*stride-1]; logits at position t
     * predict window token t+1. */
    cce_forward *f;
    assert_cce_ok(cce_forward_new(m, ctx, &f));
    int32_t window[16];
    float *logits = malloc((size_t)ctx * V * sizeof *logits); /* [ctx, V] */
    assert_non_null(logits);
    window[0] = cce_tokenizer_bos(cce_model_tokenizer(m));
    memcpy(window + 1, stream + 2 * stride, (size_t)stride * sizeof *window);
    assert_cce_ok(cce_forward_window(f, window, ctx, logits));
    double sum = 0;
    for (int t = 0; t < stride; t++) {
        const float *x = logits + (size_t)t * V;
        double mx = x[0], z = 0;
        for (int i = 1; i < V; i++) mx = x[i] > mx ? x[i] : mx;
        for (int i = 0; i < V; i++) z += exp((double)x[i] - mx);
        double nll = mx + log(z) - x[window[t + 1]];
        assert_near(r.token_nll[2 * stride + t], nll, 1e-9);
        sum += nll;
    }
    double total = 0;
    for (int64_t i = 0; i < r.n_tokens; i++) total += r.token_nll[i];
    assert_near(total / (double)r.n_tokens, r.mean_nll, 1e-12);
    assert_true(sum > 0);
    free(logits);
    cce_forward_free(f);
    cce_eval_result_free(&r);
    assert_null(r.token_nll);
    free(stream);
    cce_model_free(ref);
    cce_model_free(m);
}

typedef struct progress_log {
    long calls, done, total;
} progress_log;

static void record_progress(void *user, long done, long total) {
    progress_log *p = user;
    p->calls++;
    assert_int_equal(done, p->calls);
    p->done = done;
    p->total = total;
}

static void test_max_tokens_default_ctx_and_progress(void **state) {
    (void)state;
    cce_model *m = tiny_model(9, 0, 0);
    int V = cce_model_config(m)->vocab_size;
    assert_int_equal(cce_eval_default_ctx(m), 64); /* min(seq_len 64, 512) */
    size_t n = 1000;
    int32_t *stream = make_stream(n, 0, V);
    progress_log p = {0};
    cce_eval_options o = {.max_tokens = 200, .progress = record_progress, .progress_user = &p};
    cce_eval_result r, all;
    assert_cce_ok(cce_eval(m, NULL, stream, n, &o, &r));
    assert_int_equal(r.ctx, 64);
    assert_int_equal(r.n_windows, 3); /* floor(200 / 63) */
    assert_int_equal(r.n_tokens, 189);
    assert_int_equal(p.calls, 3);
    assert_int_equal(p.total, 3);
    assert_cce_ok(cce_eval(m, NULL, stream, n, NULL, &all));
    assert_int_equal(all.n_windows, 15); /* floor(1000 / 63) */
    /* max_tokens below one window still evaluates one. */
    o = (cce_eval_options){.max_tokens = 5};
    assert_cce_ok(cce_eval(m, NULL, stream, n, &o, &r));
    assert_int_equal(r.n_windows, 1);
    free(stream);
    cce_model_free(m);
}

static void test_bad_inputs(void **state) {
    (void)state;
    cce_model *m = tiny_model(1, 0, 0);
    cce_model *other = tiny_model(1, 0, 320);
    int V = cce_model_config(m)->vocab_size;
    size_t n = 200;
    int32_t *stream = make_stream(n, 0, V);
    cce_eval_result r;
    cce_eval_options o = {.ctx = 32};

    assert_int_equal(cce_eval(m, other, stream, n, &o, &r), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "300"));
    assert_non_null(strstr(cce_error_detail(), "320"));

    stream[40] = V; /* outside the vocabulary, inside the second window */
    assert_int_equal(cce_eval(m, NULL, stream, n, &o, &r), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "stream index 40"));
    stream[40] = -3;
    assert_int_equal(cce_eval(m, NULL, stream, n, &o, &r), CCE_ERR_RANGE);
    stream[40] = 7;

    o.ctx = 65; /* seq_len is 64 */
    assert_int_equal(cce_eval(m, NULL, stream, n, &o, &r), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "ctx = 65"));
    o.ctx = 1;
    assert_int_equal(cce_eval(m, NULL, stream, n, &o, &r), CCE_ERR_RANGE);
    o.ctx = 32;
    o.max_tokens = -1;
    assert_int_equal(cce_eval(m, NULL, stream, n, &o, &r), CCE_ERR_RANGE);
    o.max_tokens = 0;
    assert_int_equal(cce_eval(m, NULL, stream, 30, &o, &r), CCE_ERR_RANGE); /* < one window */
    assert_non_null(strstr(cce_error_detail(), "shorter than one window"));
    assert_int_equal(cce_eval(NULL, NULL, stream, n, &o, &r), CCE_ERR_ARG);

    /* Same vocabulary size, different tokenizer (one piece renamed). */
    cce_model *renamed = tiny_model(1, 0, 0);
    const cce_tokenizer *bt = cce_model_tokenizer(renamed);
    const char *pieces[300];
    float scores[300];
    for (int i = 0; i < V; i++) {
        pieces[i] = cce_tokenizer_piece(bt, i);
        scores[i] = cce_tokenizer_score(bt, i);
    }
    pieces[V - 1] = "a_piece_of_its_own";
    cce_tokenizer *other_tok;
    assert_cce_ok(cce_tokenizer_new(V, pieces, scores, &other_tok));
    cce_model_set_tokenizer(renamed, other_tok);
    assert_int_equal(cce_eval(m, renamed, stream, n, &o, &r), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "tokenizer"));
    cce_model_free(renamed);

    /* A NaN weight gives a clear numeric error, not a NaN perplexity. */
    cce_model *broken = tiny_model(1, 0, 0);
    cce_tensor *head;
    assert_cce_ok(cce_model_global_tensor(broken, CCE_GT_LM_HEAD, &head));
    head->data[5] = NAN;
    assert_int_equal(cce_eval(broken, NULL, stream, n, &o, &r), CCE_ERR_NUMERIC);
    print_message("NaN weight: %s\n", cce_error_detail());
    assert_int_equal(cce_eval(m, broken, stream, n, &o, &r), CCE_ERR_NUMERIC);
    cce_model_free(broken);
    assert_int_equal(cce_eval(m, NULL, NULL, n, &o, &r), CCE_ERR_ARG);
    free(stream);
    cce_model_free(other);
    cce_model_free(m);
}

/* ---- the real model: facts from the mirror's README ---- */

typedef struct real_fixture {
    cce_model *m;
    int32_t *stream;
    size_t n;
} real_fixture;

static void real_load(real_fixture *fx) {
    const char *bin = test_require_mirror_file("models/stories260K/stories260K.bin");
    const char *tok = test_require_mirror_file("models/stories260K/tok512.bin");
    test_require_mirror_file("text/tinystories_val.txt");
    assert_cce_ok(cce_import_llama2c(bin, tok, &fx->m));
    assert_cce_ok(
        cce_dataset_tokens("tinystories_val", cce_model_tokenizer(fx->m), &fx->stream, &fx->n));
    const int32_t start[12] = {301, 427, 309, 426, 301, 427, 309, 394, 265, 262, 415, 271};
    assert_true(fx->n > 2000);
    for (int i = 0; i < 12; i++) assert_int_equal(fx->stream[i], start[i]);
}

static void real_free(real_fixture *fx) {
    free(fx->stream);
    cce_model_free(fx->m);
}

static void test_real_ctx512(void **state) {
    (void)state;
    real_fixture fx = {0};
    real_load(&fx);
    cce_eval_options o = {.ctx = 0, .max_tokens = 1533, .keep_token_nll = 1}; /* default ctx */
    cce_eval_result r;
    assert_cce_ok(cce_eval(fx.m, NULL, fx.stream, fx.n, &o, &r));
    assert_int_equal(r.ctx, 512);
    assert_int_equal(r.n_windows, 3);
    assert_int_equal(r.n_tokens, 1533);
    print_message("ctx 512: mean NLL %.6f, ppl %.4f, top-1 %.4f%%\n", r.mean_nll, r.ppl,
                  100 * r.top1);
    assert_near(r.mean_nll, 1.401157, 2e-4);
    const double per_window[3] = {1.311214, 1.530058, 1.362200};
    for (int w = 0; w < 3; w++) {
        double sum = 0;
        for (int t = 0; t < 511; t++) sum += r.token_nll[w * 511 + t];
        print_message("  window %d: %.6f\n", w, sum / 511);
        assert_near(sum / 511, per_window[w], 2e-4);
    }
    assert_near(100 * r.top1, 64.25, 0.005);
    assert_near(r.ppl, 4.0599, 1e-3);
    cce_eval_result_free(&r);
    real_free(&fx);
}

static void test_real_ctx256(void **state) {
    (void)state;
    real_fixture fx = {0};
    real_load(&fx);
    cce_eval_options o = {.ctx = 256, .max_tokens = 1275};
    cce_eval_result r;
    assert_cce_ok(cce_eval(fx.m, NULL, fx.stream, fx.n, &o, &r));
    assert_int_equal(r.n_windows, 5);
    assert_int_equal(r.n_tokens, 1275);
    print_message("ctx 256: mean NLL %.6f, ppl %.4f, top-1 %.4f%%\n", r.mean_nll, r.ppl,
                  100 * r.top1);
    assert_near(r.mean_nll, 1.500004, 2e-4);
    assert_near(100 * r.top1, 62.43, 0.005);
    assert_near(r.ppl, 4.4817, 1e-3);
    cce_eval_result_free(&r);
    real_free(&fx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uniform_logits),
        cmocka_unit_test(test_one_hot_logits),
        cmocka_unit_test(test_kl_identical_is_zero),
        cmocka_unit_test(test_kl_hand_computed),
        cmocka_unit_test(test_summary_statistics),
        cmocka_unit_test(test_bad_logits_and_targets),
        cmocka_unit_test(test_window_count),
        cmocka_unit_test(test_protocol_line_and_json),
        cmocka_unit_test(test_zero_classifier_perplexity_is_vocab),
        cmocka_unit_test(test_self_reference),
        cmocka_unit_test(test_reference_and_windowing),
        cmocka_unit_test(test_max_tokens_default_ctx_and_progress),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_real_ctx512),
        cmocka_unit_test(test_real_ctx256),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
