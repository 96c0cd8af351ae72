/* cce eval through the program: report, --json, --ref, usage errors, unknown datasets, and the
 * real stories260K numbers of the mirror's README. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fixtures.h"
#include "test_support.h"

/* A scratch folder with a synthetic tiny model (vocab 300, seq_len 64), the same with a zero
 * classifier, a model of another vocabulary, and a short text. Paths in static buffers. */
static char dir[4096], tiny[4096], zero[4096], wide[4096], text[4096];

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "%s", test_scratch_dir("cli_eval"));
    snprintf(tiny, sizeof tiny, "%s", test_path(dir, "tiny.h5"));
    snprintf(zero, sizeof zero, "%s", test_path(dir, "zero.h5"));
    snprintf(wide, sizeof wide, "%s", test_path(dir, "wide.h5"));
    snprintf(text, sizeof text, "%s", test_path(dir, "text.txt"));
    if (fixture_synth_file("tiny --seed 4", tiny) != 0) return -1;
    if (fixture_synth_file("tiny --seed 4 --zero-classifier", zero) != 0) return -1;
    if (fixture_synth_file("tiny --seed 4 --vocab 320", wide) != 0) return -1;
    fixture_write_text(text, 2000, 50); /* byte-level tokenizer: about one token per byte */
    return 0;
}

static json_t *parse_json(const char *out) {
    json_error_t err;
    json_t *o = json_loads(out, 0, &err);
    if (!o) fail_msg("output is not JSON (%s, line %d):\n%s", err.text, err.line, out);
    return o;
}

static double num(const json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    if (!json_is_number(v)) fail_msg("JSON field '%s' is missing or not a number", key);
    return json_number_value(v);
}

static void test_help(void **state) {
    (void)state;
    char *out = fixture_run_expect(0, "eval --help");
    const char *opts[] = {"--data", "--ctx", "--max-tokens", "--ref", "--json", "--help"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (!strstr(out, opts[i])) fail_msg("--help does not list %s:\n%s", opts[i], out);
    free(out);
}

static void test_json_fields(void **state) {
    (void)state;
    char *out = fixture_run_expect(0, "eval '%s' --data '%s' --ctx 32 --json", zero, text);
    json_t *o = parse_json(out);
    const char *fields[] = {"ctx", "windows",    "tokens", "mean_nll", "nll_stderr",
                            "ppl", "ppl_stderr", "top1",   "seconds",  "tokens_per_s"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) num(o, fields[i]);
    assert_true(json_is_false(json_object_get(o, "has_ref")));
    /* Constant logits: perplexity is the vocabulary size. */
    if (fabs(num(o, "ppl") / 300.0 - 1.0) > 1e-4) fail_msg("ppl %g, expected 300", num(o, "ppl"));
    assert_int_equal((int)num(o, "ctx"), 32);
    int64_t windows = (int64_t)num(o, "windows");
    assert_true(windows >= 60); /* ~2000 tokens / 31 */
    assert_int_equal((int64_t)num(o, "tokens"), windows * 31);
    json_t *p = json_object_get(o, "protocol");
    assert_non_null(p);
    assert_int_equal((int)num(p, "ctx"), 32);
    assert_int_equal((int64_t)num(p, "windows"), windows);
    const char *sha = json_string_value(json_object_get(p, "data_sha256"));
    assert_non_null(sha);
    assert_int_equal(strlen(sha), 64);
    const char *line = json_string_value(json_object_get(p, "line"));
    assert_non_null(line);
    assert_non_null(strstr(line, "protocol: window=BOS+31 non-overlapping, ctx=32"));
    assert_non_null(strstr(line, sha));
    assert_string_equal(json_string_value(json_object_get(o, "model")), zero);
    json_decref(o);
    free(out);

    /* --max-tokens: floor(100 / 31) = 3 windows. */
    out =
        fixture_run_expect(0, "eval '%s' --data '%s' --ctx=32 --max-tokens 100 --json", zero, text);
    o = parse_json(out);
    assert_int_equal((int)num(o, "windows"), 3);
    assert_int_equal((int)num(o, "tokens"), 93);
    assert_int_equal((int)num(json_object_get(o, "protocol"), "max_tokens"), 100);
    json_decref(o);
    free(out);
}

static void test_report_and_ref(void **state) {
    (void)state;
    char *out = fixture_run_expect(0, "eval '%s' --data '%s' --ref '%s'", tiny, text, tiny);
    const char *want[] = {"protocol: window=BOS+63 non-overlapping, ctx=64",
                          "sha256=",
                          "perplexity",
                          "mean NLL",
                          "top-1 accuracy",
                          "tokens/s",
                          "KL(ref||model)",
                          "top-1 agreement",
                          "dp percentiles"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(out, want[i])) fail_msg("report lacks '%s':\n%s", want[i], out);
    free(out);

    out = fixture_run_expect(0, "eval '%s' --data '%s' --ref '%s' --json", tiny, text, tiny);
    json_t *o = parse_json(out);
    assert_true(json_is_true(json_object_get(o, "has_ref")));
    assert_true(fabs(num(o, "kl_mean")) < 1e-12);
    assert_true(fabs(num(o, "dp_mean")) < 1e-12);
    assert_true(num(o, "top1_agree") == 1.0);
    json_t *pct = json_object_get(o, "dp_percentiles");
    assert_int_equal(json_object_size(pct), 7);
    assert_true(fabs(num(pct, "p50")) < 1e-12);
    json_decref(o);
    free(out);

    /* Against the zero-classifier model the distributions differ. */
    out = fixture_run_expect(0, "eval '%s' --data '%s' --ref '%s' --json", tiny, text, zero);
    o = parse_json(out);
    assert_true(num(o, "kl_mean") > 1e-3);
    json_decref(o);
    free(out);

    /* A reference with another vocabulary. */
    out = fixture_run_expect(1, "eval '%s' --data '%s' --ref '%s'", tiny, text, wide);
    assert_non_null(strstr(out, "300"));
    assert_non_null(strstr(out, "320"));
    free(out);
}

static void test_usage_errors(void **state) {
    (void)state;
    char *out = fixture_run_expect(2, "eval '%s' --data '%s' --ctx 65", tiny, text);
    assert_non_null(strstr(out, "--ctx"));
    assert_non_null(strstr(out, "[2, 64]"));
    free(out);
    out = fixture_run_expect(2, "eval '%s' --data '%s' --ctx 1", tiny, text);
    assert_non_null(strstr(out, "--ctx"));
    free(out);
    out = fixture_run_expect(2, "eval '%s' --data '%s' --ctx abc", tiny, text);
    assert_non_null(strstr(out, "--ctx"));
    free(out);
    out = fixture_run_expect(2, "eval '%s' --data '%s' --max-tokens -5", tiny, text);
    assert_non_null(strstr(out, "--max-tokens"));
    free(out);
    out = fixture_run_expect(2, "eval '%s'", tiny);
    assert_non_null(strstr(out, "--data"));
    free(out);
    out = fixture_run_expect(2, "eval --data '%s'", text);
    assert_non_null(strstr(out, "MODEL"));
    free(out);
    out = fixture_run_expect(2, "eval '%s' --data '%s' --frobnicate", tiny, text);
    assert_non_null(strstr(out, "--frobnicate"));
    free(out);
    out = fixture_run_expect(2, "eval '%s' --data", tiny);
    assert_non_null(strstr(out, "--data needs a value"));
    free(out);
}

static void test_failures(void **state) {
    (void)state;
    char *out = fixture_run_expect(1, "eval '%s' --data no_such_dataset_xyz", tiny);
    assert_non_null(strstr(out, "no_such_dataset_xyz"));
    assert_non_null(strstr(out, "error"));
    free(out);
    out = fixture_run_expect(1, "eval '%s' --data '%s'", test_path(dir, "missing.h5"), text);
    assert_non_null(strstr(out, "missing.h5"));
    free(out);
    /* A text shorter than one window. */
    const char *tiny_text = test_path(dir, "short.txt");
    test_write_file(tiny_text, "hello", 5);
    out = fixture_run_expect(1, "eval '%s' --data '%s'", tiny, tiny_text);
    assert_non_null(strstr(out, "shorter than one window"));
    free(out);
}

static void test_real_model(void **state) {
    (void)state;
    const char *bin = test_require_mirror_file("models/stories260K/stories260K.bin");
    const char *tok = test_require_mirror_file("models/stories260K/tok512.bin");
    test_require_mirror_file("text/tinystories_val.txt");
    const char *model = test_path(dir, "stories260K.h5");
    free(fixture_run_expect(0, "import llama2c '%s' '%s' -o '%s'", bin, tok, model));

    char *out =
        fixture_run_expect(0, "eval '%s' --data tinystories_val --max-tokens 1533 --json", model);
    json_t *o = parse_json(out);
    assert_int_equal((int)num(o, "ctx"), 512);
    assert_int_equal((int)num(o, "windows"), 3);
    assert_int_equal((int)num(o, "tokens"), 1533);
    double nll = num(o, "mean_nll");
    if (fabs(nll - 1.401157) > 2e-4) fail_msg("mean NLL %.6f, expected 1.401157", nll);
    if (fabs(100 * num(o, "top1") - 64.25) > 0.005)
        fail_msg("top-1 %.4f%%, expected 64.25%%", 100 * num(o, "top1"));
    json_t *p = json_object_get(o, "protocol");
    assert_string_equal(json_string_value(json_object_get(p, "data_sha256")),
                        "5fc1fb0113df62b567fb271806cd645ce8d75f59c58ca0b764c03d3b6ff34ca6");
    assert_string_equal(json_string_value(json_object_get(p, "data")), "tinystories_val");
    json_decref(o);
    free(out);

    out = fixture_run_expect(0, "eval '%s' --data tinystories_val --ctx 256 --max-tokens 1275",
                             model);
    assert_non_null(strstr(out,
                           "protocol: window=BOS+255 non-overlapping, ctx=256, "
                           "scored=1275, windows=5, data=tinystories_val sha256="
                           "5fc1fb0113df62b567fb271806cd645ce8d75f59c58ca0b764c03d3b6ff34ca6"));
    const char *line = strstr(out, "mean NLL");
    double nll256 = 0;
    if (!line || sscanf(line + strlen("mean NLL"), "%lf", &nll256) != 1)
        fail_msg("no mean NLL in the report:\n%s", out);
    if (fabs(nll256 - 1.500004) > 2e-4) fail_msg("mean NLL %.6f, expected 1.500004", nll256);
    assert_non_null(strstr(out, "62.43 %")); /* top-1 */
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),           cmocka_unit_test(test_json_fields),
        cmocka_unit_test(test_report_and_ref), cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_failures),       cmocka_unit_test(test_real_model),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
