/* cce eval --task and --bootstrap through the program: JSONL tasks on a model with constant logits
 * (ties decided by the lowest index), the cloze built from a text and saved as JSONL, the paired
 * bootstrap of task accuracy and of the NLL over windows, every output format, usage errors, bad
 * input, and the real stories260K cloze. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fixtures.h"
#include "test_support.h"

/* Scratch folder, synthetic tiny models (vocab 300, seq_len 64, byte tokenizer): random, zero
 * classifier (every logit 0), another vocabulary; texts and task files. */
static char dir[4096], tiny[4096], zero[4096], wide[4096], text[4096], story[4096], ties[4096],
    first0[4096];

/* Paragraphs of distinct sentences for the cloze (3 to 5 sentences each). */
static void write_story(const char *path, int n_paras) {
    static const char *const names[] = {"Ann", "Bob", "Cat", "Dan", "Eve", "Fay", "Gus"};
    static const char *const things[] = {"a red ball",  "the big tree", "two small cups",
                                         "a blue kite", "the old boat", "some warm bread"};
    size_t cap = (size_t)n_paras * 300 + 1, w = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    for (int p = 0; p < n_paras; p++) {
        for (int k = 0; k < 3 + p % 3; k++)
            w += (size_t)snprintf(s + w, cap - w, "%s%s saw %s at house %d.", k ? " " : "",
                                  names[(p + k) % 7], things[(p + 2 * k) % 6], 10 * p + k);
        w += (size_t)snprintf(s + w, cap - w, "\n\n");
    }
    test_write_file(path, s, w);
    free(s);
}

/* JSONL: n items of four 3-byte choices with answers[i % n_answers]. */
static void write_items(const char *path, int n, const int *answers, int n_answers) {
    static const char *const words[] = {"red", "big", "sad", "old", "hot", "wet", "dry", "new"};
    size_t cap = (size_t)n * 200 + 1, w = 0;
    char *s = malloc(cap);
    for (int i = 0; i < n; i++)
        w += (size_t)snprintf(s + w, cap - w,
                              "{\"context\": \"The %d cat was\", \"choices\": [\"%s\", \"%s\", "
                              "\"%s\", \"%s\"], \"answer\": %d}\n",
                              i, words[i % 8], words[(i + 1) % 8], words[(i + 3) % 8],
                              words[(i + 6) % 8], answers[i % n_answers]);
    test_write_file(path, s, w);
    free(s);
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "%s", test_scratch_dir("cli_task"));
    snprintf(tiny, sizeof tiny, "%s", test_path(dir, "tiny.h5"));
    snprintf(zero, sizeof zero, "%s", test_path(dir, "zero.h5"));
    snprintf(wide, sizeof wide, "%s", test_path(dir, "wide.h5"));
    snprintf(text, sizeof text, "%s", test_path(dir, "text.txt"));
    snprintf(story, sizeof story, "%s", test_path(dir, "story.txt"));
    snprintf(ties, sizeof ties, "%s", test_path(dir, "ties.jsonl"));
    snprintf(first0, sizeof first0, "%s", test_path(dir, "first0.jsonl"));
    if (fixture_synth_file("tiny --seed 4", tiny) != 0) return -1;
    if (fixture_synth_file("tiny --seed 4 --zero-classifier", zero) != 0) return -1;
    if (fixture_synth_file("tiny --seed 4 --vocab 320", wide) != 0) return -1;
    fixture_write_text(text, 2000, 50);
    write_story(story, 30);
    const int answers[6] = {0, 0, 1, 2, 3, 0};
    write_items(ties, 6, answers, 6);
    const int all0[1] = {0};
    write_items(first0, 40, all0, 1);
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

static void expect_near(double x, double want, double tol, const char *what) {
    if (!(fabs(x - want) <= tol)) fail_msg("%s = %.10g, expected %.10g", what, x, want);
}

/* The data row of a --tsv output (after the comment and header lines), split at tabs into
 * fields [max]; returns the number of fields. The header's field count goes to *n_header. */
static int tsv_row(char *out, char **fields, int max, int *n_header) {
    char *save = NULL, *line = strtok_r(out, "\n", &save);
    while (line && line[0] == '#') line = strtok_r(NULL, "\n", &save);
    assert_non_null(line);
    *n_header = 1;
    for (char *p = line; *p; p++) *n_header += *p == '\t';
    char *row = strtok_r(NULL, "\n", &save);
    assert_non_null(row);
    int n = 0;
    for (char *f = strtok_r(row, "\t", &save); f && n < max; f = strtok_r(NULL, "\t", &save))
        fields[n++] = f;
    return n;
}

static void test_help(void **state) {
    (void)state;
    char *out = fixture_run_expect(0, "eval --help");
    const char *opts[] = {"--task",      "--task-items", "--task-choices", "--task-out",
                          "--bootstrap", "--seed",       "acc_norm",       "lowest index"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (!strstr(out, opts[i])) fail_msg("--help does not mention %s:\n%s", opts[i], out);
    free(out);
}

/* Constant logits: equal-length choices tie and index 0 wins, so exactly the items whose answer
 * is 0 are right (3 of 6). */
static void test_jsonl_ties(void **state) {
    (void)state;
    char *out = fixture_run_expect(0, "eval '%s' --task '%s' --json", zero, ties);
    json_t *o = parse_json(out);
    expect_near(num(o, "acc"), 0.5, 1e-12, "acc");
    expect_near(num(o, "acc_norm"), 0.5, 1e-12, "acc_norm");
    expect_near(num(o, "acc_stderr"), sqrt(0.25 / 5), 1e-9, "acc_stderr"); /* 10 digits */
    expect_near(num(o, "chance"), 0.25, 1e-12, "chance");
    assert_int_equal((int)num(o, "items"), 6);
    assert_int_equal((int)num(o, "choices"), 4);
    assert_int_equal((int)num(o, "ctx"), 64);
    assert_int_equal((int)num(o, "truncated"), 0);
    json_t *task = json_object_get(o, "task");
    assert_string_equal(json_string_value(json_object_get(task, "name")), ties);
    assert_int_equal(strlen(json_string_value(json_object_get(task, "sha256"))), 64);
    const char *line = json_string_value(json_object_get(json_object_get(o, "protocol"), "line"));
    assert_non_null(line);
    assert_non_null(strstr(line, "protocol: task="));
    assert_non_null(strstr(line, "items=6 choices=4 ctx=64"));
    assert_non_null(strstr(line, "ties=lowest index"));
    assert_true(json_is_null(json_object_get(o, "ref_result")));
    assert_true(json_is_null(json_object_get(o, "bootstrap")));
    json_decref(o);
    free(out);

    out = fixture_run_expect(0, "eval '%s' --task '%s'", zero, ties);
    fixture_expect_in(out, "protocol: task=");
    fixture_expect_in(out, "accuracy           0.5000 ± 0.2236");
    fixture_expect_in(out, "accuracy (norm)");
    fixture_expect_in(out, "chance             0.2500");
    free(out);

    out = fixture_run_expect(0, "eval '%s' --task '%s' --tsv --task-items 4", zero, ties);
    char *f[32];
    int n_header, n = tsv_row(out, f, 32, &n_header);
    assert_int_equal(n, 18);
    assert_int_equal(n_header, 18);
    assert_string_equal(f[2], "4");        /* the first 4 items: answers 0 0 1 2 */
    assert_string_equal(f[3], "0.500000"); /* acc */
    assert_string_equal(f[8], "nan");      /* ref_acc */
    assert_string_equal(f[13], "nan");     /* d_acc_significant */
    free(out);
}

/* The cloze of a text: saved with --task-out, read back as a JSONL task, scored the same. */
static void test_cloze_and_task_out(void **state) {
    (void)state;
    const char *saved = test_path(dir, "cloze.jsonl");
    char saved_path[4096];
    snprintf(saved_path, sizeof saved_path, "%s", saved);
    char *out = fixture_run_expect(0,
                                   "eval '%s' --task cloze --data '%s' --task-items 12 "
                                   "--task-choices 3 --seed 2 --task-out '%s' --json",
                                   tiny, story, saved_path);
    json_t *a = parse_json(out);
    free(out);
    assert_int_equal((int)num(a, "items"), 12);
    assert_int_equal((int)num(a, "choices"), 3);
    expect_near(num(a, "chance"), 1.0 / 3, 1e-9, "chance");
    json_t *task = json_object_get(a, "task");
    assert_string_equal(json_string_value(json_object_get(task, "name")), "cloze");
    assert_string_equal(json_string_value(json_object_get(task, "source")), story);
    assert_non_null(
        strstr(json_string_value(json_object_get(task, "recipe")), "items=12 choices=3 seed=2"));
    size_t len = 0;
    char *jsonl = test_read_file(saved_path, &len);
    assert_non_null(jsonl);
    int lines = 0;
    for (size_t i = 0; i < len; i++) lines += jsonl[i] == '\n';
    assert_int_equal(lines, 12);
    free(jsonl);

    out = fixture_run_expect(0, "eval '%s' --task '%s' --json", tiny, saved_path);
    json_t *b = parse_json(out);
    free(out);
    expect_near(num(b, "acc"), num(a, "acc"), 0, "acc of the saved cloze");
    expect_near(num(b, "acc_norm"), num(a, "acc_norm"), 0, "acc_norm of the saved cloze");
    assert_int_equal((int)num(b, "tokens"), (int)num(a, "tokens"));
    json_decref(a);
    json_decref(b);

    /* Another seed makes another cloze. */
    out = fixture_run_expect(0,
                             "eval '%s' --task cloze --data '%s' --task-items 12 --seed 3 "
                             "--task-out '%s'",
                             tiny, story, test_path(dir, "cloze3.jsonl"));
    free(out);
    char *x = test_read_file(saved_path, NULL),
         *y = test_read_file(test_path(dir, "cloze3.jsonl"), NULL);
    assert_true(strcmp(x, y) != 0);
    free(x);
    free(y);
}

/* The paired bootstrap of the accuracy: a model against itself, and a constructed difference. */
static void test_task_bootstrap(void **state) {
    (void)state;
    char *out = fixture_run_expect(0, "eval '%s' --task '%s' --ref '%s' --bootstrap 500 --json",
                                   tiny, first0, tiny);
    json_t *o = parse_json(out);
    free(out);
    json_t *ref = json_object_get(o, "ref_result");
    expect_near(num(ref, "acc"), num(o, "acc"), 0, "ref acc");
    json_t *b = json_object_get(o, "bootstrap");
    assert_string_equal(json_string_value(json_object_get(b, "unit")), "item");
    json_t *acc = json_object_get(b, "acc");
    expect_near(num(acc, "diff"), 0, 0, "diff");
    expect_near(num(acc, "ci_low"), 0, 0, "ci_low");
    expect_near(num(acc, "ci_high"), 0, 0, "ci_high");
    assert_true(json_is_false(json_object_get(acc, "significant")));
    assert_int_equal((int)num(acc, "resamples"), 500);
    assert_int_equal((int)num(acc, "blocks"), 40);
    json_decref(o);

    /* Every answer is 0 and all choices tie under constant logits: the zero-classifier model is
     * always right, the random one mostly not. */
    out = fixture_run_expect(0, "eval '%s' --task '%s' --ref '%s' --bootstrap 1000 --seed 5 --json",
                             zero, first0, tiny);
    o = parse_json(out);
    free(out);
    expect_near(num(o, "acc"), 1.0, 0, "acc of the constant model");
    acc = json_object_get(json_object_get(o, "bootstrap"), "acc");
    double ref_acc = num(json_object_get(o, "ref_result"), "acc");
    expect_near(num(acc, "diff"), 1.0 - ref_acc, 1e-9, "diff");
    assert_true(ref_acc < 0.7);
    assert_true(json_is_true(json_object_get(acc, "significant")));
    assert_true(num(acc, "ci_low") > 0);
    assert_int_equal((int)num(acc, "seed"), 5);
    json_decref(o);

    out = fixture_run_expect(0, "eval '%s' --task '%s' --ref '%s' --bootstrap 200", zero, first0,
                             tiny);
    fixture_expect_in(out, "ref accuracy");
    fixture_expect_in(out, "dacc (model-ref)");
    fixture_expect_in(out, "paired bootstrap over 40 items, B=200, seed 1): significant");
    free(out);

    out = fixture_run_expect(0, "eval '%s' --task '%s' --ref '%s' --bootstrap 200 --tsv", zero,
                             first0, tiny);
    char *f[32];
    int n_header, n = tsv_row(out, f, 32, &n_header);
    assert_int_equal(n, 18);
    assert_string_equal(f[3], "1.000000");
    assert_string_equal(f[13], "1"); /* d_acc_significant */
    free(out);
}

/* The paired bootstrap of the NLL over windows. */
static void test_nll_bootstrap(void **state) {
    (void)state;
    char *out = fixture_run_expect(
        0, "eval '%s' --data '%s' --ctx 32 --ref '%s' --bootstrap 300 --json", tiny, text, tiny);
    json_t *o = parse_json(out);
    free(out);
    json_t *b = json_object_get(o, "bootstrap");
    assert_string_equal(json_string_value(json_object_get(b, "unit")), "window");
    json_t *nll = json_object_get(b, "nll");
    expect_near(num(nll, "diff"), 0, 0, "diff");
    expect_near(num(nll, "ci_low"), 0, 0, "ci_low");
    expect_near(num(nll, "ci_high"), 0, 0, "ci_high");
    assert_true(json_is_false(json_object_get(nll, "significant")));
    assert_int_equal((int)num(nll, "blocks"), (int)num(o, "windows"));
    expect_near(num(nll, "a"), num(o, "mean_nll"), 1e-7, "a");
    json_decref(o);

    /* Against the constant model, whose NLL is log(300) on every token. */
    out = fixture_run_expect(0, "eval '%s' --data '%s' --ctx 32 --ref '%s' --bootstrap 300 --json",
                             tiny, text, zero);
    o = parse_json(out);
    free(out);
    nll = json_object_get(json_object_get(o, "bootstrap"), "nll");
    expect_near(num(nll, "b"), log(300.0), 1e-6, "ref mean NLL");
    expect_near(num(nll, "diff"), num(o, "mean_nll") - log(300.0), 1e-6, "diff");
    int sig = json_is_true(json_object_get(nll, "significant"));
    assert_int_equal(sig, num(nll, "ci_low") > 0 || num(nll, "ci_high") < 0);
    assert_true(num(nll, "ci_low") <= num(nll, "diff") && num(nll, "diff") <= num(nll, "ci_high"));
    json_decref(o);

    out = fixture_run_expect(0, "eval '%s' --data '%s' --ctx 32 --ref '%s' --bootstrap 300", tiny,
                             text, tiny);
    fixture_expect_in(out,
                      "dNLL (model-ref)   +0.000000 nats/token, 95% CI [+0.000000, +0.000000]");
    fixture_expect_in(out, "not significant (the interval contains 0)");
    free(out);

    out = fixture_run_expect(0, "eval '%s' --data '%s' --ctx 32 --tsv", tiny, text);
    char *f[32];
    int n_header, n = tsv_row(out, f, 32, &n_header);
    assert_int_equal(n, 18);
    assert_int_equal(n_header, 18);
    assert_string_equal(f[14], "nan"); /* d_nll */
    free(out);
    out = fixture_run_expect(0, "eval '%s' --data '%s' --ctx 32 --tsv --ref '%s' --bootstrap 50",
                             tiny, text, tiny);
    n = tsv_row(out, f, 32, &n_header);
    assert_int_equal(n, 18);
    assert_string_equal(f[14], "0.000000");
    assert_string_equal(f[17], "0");
    free(out);
}

static void test_usage_errors(void **state) {
    (void)state;
    struct {
        const char *args, *needle;
    } cases[] = {
        {"eval '%s' --data '%s' --bootstrap 100", "--ref"},
        {"eval '%s' --data '%s' --task-items 5", "--task-items needs --task"},
        {"eval '%s' --data '%s' --task-out x.jsonl", "--task-out needs --task"},
        {"eval '%s' --task cloze --task-choices 1 --data '%s'", "--task-choices = 1"},
        {"eval '%s' --task cloze --data '%s' --max-tokens 10", "--max-tokens"},
        {"eval '%s' --task cloze --data '%s' --ref '%s' --bootstrap 0", "--bootstrap = 0"},
        {"eval '%s' --task cloze --data '%s' --seed -1", "--seed"},
        {"eval '%s' --task cloze --data '%s' --task-items 0", "--task-items = 0"},
        {"eval '%s' --task cloze --data '%s' --ctx 65", "[2, 64]"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char *out = fixture_run_expect(2, cases[k].args, tiny, story, tiny);
        fixture_expect_in(out, cases[k].needle);
        free(out);
    }
    char *out = fixture_run_expect(2, "eval '%s' --task '%s' --data '%s'", tiny, ties, story);
    fixture_expect_in(out, "--data names the text of --task cloze");
    free(out);
    out = fixture_run_expect(2, "eval '%s' --task '%s' --task-choices 3", tiny, ties);
    fixture_expect_in(out, "--task-choices applies to --task cloze only");
    free(out);
    out = fixture_run_expect(2, "eval '%s'", tiny);
    fixture_expect_in(out, "--data");
    free(out);
}

static void test_failures(void **state) {
    (void)state;
    const char *bad = test_path(dir, "bad.jsonl");
    char bad_path[4096];
    snprintf(bad_path, sizeof bad_path, "%s", bad);
    const char *text_bad = "{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"answer\": 0}\n"
                           "{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"answer\": 0\n";
    test_write_file(bad_path, text_bad, strlen(text_bad));
    char *out = fixture_run_expect(1, "eval '%s' --task '%s'", tiny, bad_path);
    fixture_expect_in(out, "bad.jsonl:2: malformed JSON");
    free(out);
    out = fixture_run_expect(1, "eval '%s' --task '%s'", tiny, test_path(dir, "none.jsonl"));
    fixture_expect_in(out, "none.jsonl");
    free(out);
    out = fixture_run_expect(1, "eval '%s' --task cloze --data '%s'", tiny, text);
    fixture_expect_in(out, "no eligible paragraph");
    free(out);
    out =
        fixture_run_expect(1, "eval '%s' --task cloze --data '%s' --task-items 1000", tiny, story);
    fixture_expect_in(out, "1000 items asked for");
    free(out);
    out = fixture_run_expect(1, "eval '%s' --task '%s' --task-items 99", tiny, ties);
    fixture_expect_in(out, "holds 6 items");
    free(out);
    out = fixture_run_expect(1, "eval '%s' --task '%s' --task-out '%s'", tiny, ties,
                             test_path(dir, "no/such/dir/out.jsonl"));
    fixture_expect_in(out, "out.jsonl");
    free(out);
    out = fixture_run_expect(1, "eval '%s' --task '%s' --ref '%s'", tiny, ties, wide);
    fixture_expect_in(out, "share a tokenizer");
    free(out);
    /* One window is no basis for a bootstrap over windows. */
    out = fixture_run_expect(1,
                             "eval '%s' --data '%s' --ctx 64 --max-tokens 63 --ref '%s' "
                             "--bootstrap 100",
                             tiny, text, tiny);
    fixture_expect_in(out, "at least 2 blocks");
    free(out);
}

static void test_real_cloze(void **state) {
    (void)state;
    const char *bin = test_require_mirror_file("models/stories260K/stories260K.bin");
    const char *tok = test_require_mirror_file("models/stories260K/tok512.bin");
    test_require_mirror_file("text/tinystories_val.txt");
    char model[4096];
    snprintf(model, sizeof model, "%s", test_path(dir, "stories260K.h5"));
    free(fixture_run_expect(0, "import llama2c '%s' '%s' -o '%s'", bin, tok, model));
    char *out = fixture_run_expect(0, "eval '%s' --task cloze --task-items 40", model);
    fixture_expect_in(out, "protocol: task=cloze items=40 choices=4 ctx=512");
    fixture_expect_in(out, "data=tinystories_val sha256="
                           "5fc1fb0113df62b567fb271806cd645ce8d75f59c58ca0b764c03d3b6ff34ca6");
    fixture_expect_in(out, "chance             0.2500");
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_jsonl_ties),
        cmocka_unit_test(test_cloze_and_task_out),
        cmocka_unit_test(test_task_bootstrap),
        cmocka_unit_test(test_nll_bootstrap),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_failures),
        cmocka_unit_test(test_real_cloze),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
