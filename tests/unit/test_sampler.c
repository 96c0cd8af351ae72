/* The sampler: greedy is the argmax, temperature sampling follows the softmax, top-p keeps the
 * nucleus, and the seed fixes the stream; and generation (cce_generate) on a small synthetic
 * model: prompt echo, seeding, limits and errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "sampler.h"
#include "synth.h"
#include "test_support.h"

static void test_greedy(void **state) {
    (void)state;
    cce_sampler *s;
    assert_cce_ok(cce_sampler_new(6, 0.0f, 0.9f, 1, &s));
    float logits[6] = {0.1f, 2.0f, -1.0f, 3.5f, 3.5f, 0.0f};
    int32_t t = -1;
    for (int i = 0; i < 5; i++) {
        float l[6];
        memcpy(l, logits, sizeof l);
        assert_cce_ok(cce_sampler_sample(s, l, &t));
        assert_int_equal(t, 3); /* the first of the tied maxima, every time */
    }
    float neg[6] = {-INFINITY, -5.0f, -INFINITY, -7.0f, -6.0f, -9.0f};
    assert_cce_ok(cce_sampler_sample(s, neg, &t));
    assert_int_equal(t, 1);
    cce_sampler_free(s);
}

/* counts[i] of n draws */
static void draw(cce_sampler *s, const float *logits, int vocab, int n, int *counts) {
    memset(counts, 0, sizeof(int) * vocab);
    for (int k = 0; k < n; k++) {
        float l[8];
        memcpy(l, logits, sizeof(float) * vocab);
        int32_t t;
        assert_cce_ok(cce_sampler_sample(s, l, &t));
        assert_true(t >= 0 && t < vocab);
        counts[t]++;
    }
}

static void test_temperature(void **state) {
    (void)state;
    /* probabilities 0.5, 0.3, 0.1, 0.05, 0.05 at temperature 1 */
    const double p[5] = {0.5, 0.3, 0.1, 0.05, 0.05};
    float logits[5];
    for (int i = 0; i < 5; i++) logits[i] = (float)log(p[i]) + 4.0f;
    cce_sampler *s;
    assert_cce_ok(cce_sampler_new(5, 1.0f, 1.0f, 42, &s));
    enum { N = 20000 };
    int counts[8];
    draw(s, logits, 5, N, counts);
    for (int i = 0; i < 5; i++) {
        double f = (double)counts[i] / N, sd = sqrt(p[i] * (1 - p[i]) / N);
        assert_true(fabs(f - p[i]) < 5 * sd);
    }
    cce_sampler_free(s);
    /* A high temperature flattens the distribution: token 4 becomes far more frequent. */
    assert_cce_ok(cce_sampler_new(5, 5.0f, 1.0f, 42, &s));
    int hot[8];
    draw(s, logits, 5, N, hot);
    assert_true(hot[4] > 2 * counts[4]);
    assert_true(hot[0] < counts[0]);
    cce_sampler_free(s);
}

static void test_top_p(void **state) {
    (void)state;
    const double p[5] = {0.5, 0.3, 0.1, 0.05, 0.05};
    float logits[5];
    for (int i = 0; i < 5; i++) logits[i] = (float)log(p[i]);
    enum { N = 20000 };
    int counts[8];
    cce_sampler *s;
    /* top_p 0.7: 0.5 is not enough, 0.5 + 0.3 exceeds it: the nucleus is {0, 1}. */
    assert_cce_ok(cce_sampler_new(5, 1.0f, 0.7f, 7, &s));
    draw(s, logits, 5, N, counts);
    assert_int_equal(counts[2] + counts[3] + counts[4], 0);
    double f0 = (double)counts[0] / N, p0 = 0.5 / 0.8;
    assert_true(fabs(f0 - p0) < 5 * sqrt(p0 * (1 - p0) / N));
    cce_sampler_free(s);
    /* top_p 0.85: {0, 1, 2}. */
    assert_cce_ok(cce_sampler_new(5, 1.0f, 0.85f, 7, &s));
    draw(s, logits, 5, N, counts);
    assert_int_equal(counts[3] + counts[4], 0);
    assert_true(counts[2] > 0);
    cce_sampler_free(s);
    /* A tiny top_p keeps only the most probable token. */
    assert_cce_ok(cce_sampler_new(5, 1.0f, 0.01f, 7, &s));
    draw(s, logits, 5, 200, counts);
    assert_int_equal(counts[0], 200);
    cce_sampler_free(s);
    /* ... also on a uniform distribution where no token passes the pre-filter. */
    float flat[8] = {0};
    assert_cce_ok(cce_sampler_new(8, 1.0f, 0.01f, 7, &s));
    draw(s, flat, 8, 10, counts);
    cce_sampler_free(s);
}

static void test_seed(void **state) {
    (void)state;
    float logits[8] = {0.1f, 0.3f, 0.2f, 0.0f, 0.25f, 0.15f, 0.05f, 0.3f};
    int32_t a[64], b[64], c[64];
    cce_sampler *s1, *s2, *s3;
    assert_cce_ok(cce_sampler_new(8, 1.0f, 0.9f, 123, &s1));
    assert_cce_ok(cce_sampler_new(8, 1.0f, 0.9f, 123, &s2));
    assert_cce_ok(cce_sampler_new(8, 1.0f, 0.9f, 124, &s3));
    for (int i = 0; i < 64; i++) {
        float l[8];
        memcpy(l, logits, sizeof l);
        assert_cce_ok(cce_sampler_sample(s1, l, &a[i]));
        memcpy(l, logits, sizeof l);
        assert_cce_ok(cce_sampler_sample(s2, l, &b[i]));
        memcpy(l, logits, sizeof l);
        assert_cce_ok(cce_sampler_sample(s3, l, &c[i]));
    }
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    cce_sampler_free(s1);
    cce_sampler_free(s2);
    cce_sampler_free(s3);
}

static void test_bad_input(void **state) {
    (void)state;
    cce_sampler *s;
    assert_int_equal(cce_sampler_new(5, -0.5f, 0.9f, 1, &s), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "temperature"));
    assert_int_equal(cce_sampler_new(5, NAN, 0.9f, 1, &s), CCE_ERR_RANGE);
    assert_int_equal(cce_sampler_new(5, 1.0f, 1.5f, 1, &s), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "top_p"));
    assert_int_equal(cce_sampler_new(5, 1.0f, -0.1f, 1, &s), CCE_ERR_RANGE);
    assert_int_equal(cce_sampler_new(0, 1.0f, 0.9f, 1, &s), CCE_ERR_RANGE);
    assert_cce_ok(cce_sampler_new(3, 1.0f, 0.9f, 1, &s));
    float l[3] = {0.0f, NAN, 1.0f};
    int32_t t;
    assert_int_equal(cce_sampler_sample(s, l, &t), CCE_ERR_NUMERIC);
    float inf[3] = {0.0f, INFINITY, 1.0f};
    assert_int_equal(cce_sampler_sample(s, inf, &t), CCE_ERR_NUMERIC);
    cce_sampler_free(s);
}

/* ---- Generation -------------------------------------------------------------------------- */

typedef struct text {
    char buf[4096];
    size_t len;
    int pieces;
} text;

static void collect(void *user, const char *piece, size_t len) {
    text *t = user;
    assert_true(t->len + len < sizeof t->buf);
    memcpy(t->buf + t->len, piece, len);
    t->len += len;
    t->buf[t->len] = '\0';
    t->pieces++;
}

static cce_model *tiny_model(void) {
    cce_synth_options o;
    assert_cce_ok(cce_synth_preset("tiny", &o)); /* byte tokenizer, seq_len 64 */
    o.seed = 5;
    o.init_std = 0.5f; /* peaked distributions, so greedy and sampled texts differ */
    cce_model *m;
    assert_cce_ok(cce_synth_model(&o, &m));
    return m;
}

static void test_generate(void **state) {
    (void)state;
    cce_model *m = tiny_model();
    int seq_len = cce_model_config(m)->seq_len;
    text a = {0}, b = {0}, c = {0}, d = {0};
    cce_generate_stats st;
    /* Greedy, asking for more than fits: stops at seq_len (or at BOS/EOS). */
    assert_cce_ok(cce_generate_with_stats(m, "hello", 1000, 0.0f, 0.0f, 1, collect, &a, &st));
    assert_int_equal(st.n_prompt, 1 + 1 + 5); /* BOS, the dummy-prefix space, 5 bytes */
    assert_true(st.n_generated >= 1);
    assert_true(st.n_prompt + st.n_generated <= seq_len + 1);
    assert_int_equal(a.pieces, st.n_prompt - 1 + st.n_generated);
    /* The output begins with the prompt (after the dummy-prefix space: a byte-level vocabulary
     * has no " " piece, so it is the byte <0x20>, which decoding keeps, as llama2.c does). */
    assert_true(strncmp(a.buf, " hello", 6) == 0);
    /* Greedy is deterministic whatever the seed. */
    assert_cce_ok(cce_generate(m, "hello", 1000, 0.0f, 0.0f, 99, collect, &b));
    assert_string_equal(a.buf, b.buf);
    /* Sampling: the seed fixes the text. */
    assert_cce_ok(cce_generate(m, "hello", 40, 1.0f, 0.95f, 7, collect, &c));
    assert_cce_ok(cce_generate(m, "hello", 40, 1.0f, 0.95f, 7, collect, &d));
    assert_string_equal(c.buf, d.buf);
    text e = {0};
    assert_cce_ok(cce_generate(m, "hello", 40, 1.0f, 0.95f, 8, collect, &e));
    assert_string_not_equal(c.buf, e.buf);
    /* n_new = 0: the prompt only; an empty prompt is BOS alone. */
    text f = {0};
    assert_cce_ok(cce_generate_with_stats(m, "hi", 0, 0.0f, 0.0f, 1, collect, &f, &st));
    assert_string_equal(f.buf, " hi");
    assert_int_equal(st.n_generated, 0);
    text g = {0};
    assert_cce_ok(cce_generate_with_stats(m, NULL, 3, 0.0f, 0.0f, 1, collect, &g, &st));
    assert_int_equal(st.n_prompt, 1);
    /* Errors: a prompt longer than seq_len, negative n_new, bad sampling parameters. */
    char long_prompt[200];
    memset(long_prompt, 'a', sizeof long_prompt - 1);
    long_prompt[sizeof long_prompt - 1] = '\0';
    assert_int_equal(cce_generate(m, long_prompt, 5, 0.0f, 0.0f, 1, collect, &g), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "seq_len"));
    assert_int_equal(cce_generate(m, "hi", -1, 0.0f, 0.0f, 1, collect, &g), CCE_ERR_RANGE);
    assert_int_equal(cce_generate(m, "hi", 5, -1.0f, 0.0f, 1, collect, &g), CCE_ERR_RANGE);
    cce_model_free(m);
    /* A model without a tokenizer cannot generate text. */
    cce_synth_options o;
    assert_cce_ok(cce_synth_preset("tiny", &o));
    cce_model *bare;
    assert_cce_ok(cce_model_new(&o.cfg, &bare));
    assert_int_equal(cce_generate(bare, "hi", 5, 0.0f, 0.0f, 1, collect, &g), CCE_ERR_STATE);
    cce_model_free(bare);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),    cmocka_unit_test(test_temperature),
        cmocka_unit_test(test_top_p),     cmocka_unit_test(test_seed),
        cmocka_unit_test(test_bad_input), cmocka_unit_test(test_generate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
