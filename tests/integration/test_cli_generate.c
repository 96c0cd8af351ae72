/* cce generate on the real stories260K (greedy output is a known fact), sampling options, help
 * and usage errors; and a smoke run of cce bench. */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char model[4096];

/* Runs cce with args; checks the exit code and that the output contains `want` (if given).
 * Returns the output (caller frees). */
static char *run(const char *args, int want_rc, const char *want) {
    char *out = NULL;
    int rc = test_run_cce(args, &out);
    if (rc != want_rc)
        fail_msg("cce %s: exit %d, expected %d; output:\n%s", args, rc, want_rc, out);
    if (want && !strstr(out, want)) fail_msg("cce %s: output lacks '%s':\n%s", args, want, out);
    return out;
}

static void run_free(const char *args, int want_rc, const char *want) {
    free(run(args, want_rc, want));
}

/* Imports stories260K from the mirror once (skips when CCE_MIRROR is unset). */
static const char *real_model(void) {
    if (model[0]) return model;
    const char *bin = test_require_mirror_file("models/stories260K/stories260K.bin");
    const char *tok = test_require_mirror_file("models/stories260K/tok512.bin");
    const char *dir = test_scratch_dir("cli_generate");
    snprintf(model, sizeof model, "%s", test_path(dir, "stories260K.h5"));
    char args[12288];
    snprintf(args, sizeof args, "import llama2c '%s' '%s' -o '%s'", bin, tok, model);
    run_free(args, 0, NULL);
    return model;
}

static void test_greedy_known_text(void **state) {
    (void)state;
    const char *m = real_model();
    char args[8192];
    snprintf(args, sizeof args, "generate '%s' -p 'Once upon a time' -n 60 -t 0 --quiet", m);
    char *out = run(args, 0, NULL);
    const char *want = "Once upon a time, there was a little girl named Lily. She loved to play "
                       "outside in the park. One day, she saw a big, red ball. She wanted to play "
                       "with it, but it was too high.";
    if (strncmp(out, want, strlen(want)) != 0)
        fail_msg("greedy output differs from the known text:\n%s", out);
    free(out);
    /* Without --quiet the speed goes to stderr. */
    snprintf(args, sizeof args, "generate '%s' -p 'Once upon a time' -n 5 -t 0", m);
    run_free(args, 0, "tok/s");
}

static void test_sampling_is_seeded(void **state) {
    (void)state;
    const char *m = real_model();
    char a[8192], b[8192], c[8192];
    snprintf(a, sizeof a, "generate '%s' -p 'The cat' -n 40 -t 1.0 --top-p 0.9 --seed 7 -q", m);
    snprintf(b, sizeof b, "generate '%s' -p 'The cat' -n 40 -t 1.0 --top-p 0.9 --seed 8 -q", m);
    snprintf(c, sizeof c,
             "generate '%s' --prompt 'The cat' --steps 40 --temperature 1.0 "
             "--top-p 0.9 --seed 7 --quiet",
             m);
    char *oa = run(a, 0, NULL), *ob = run(b, 0, NULL), *oc = run(c, 0, NULL);
    assert_string_equal(oa, oc);     /* same seed, same text */
    assert_string_not_equal(oa, ob); /* another seed, another text */
    assert_true(strncmp(oa, "The cat", 7) == 0);
    assert_true(strlen(oa) > 40);
    free(oa);
    free(ob);
    free(oc);
    /* -n 0 prints the prompt only. */
    snprintf(a, sizeof a, "generate '%s' -p 'Once upon a time' -n 0 -q", m);
    char *o = run(a, 0, NULL);
    assert_string_equal(o, "Once upon a time\n");
    free(o);
}

static void test_help_and_usage_errors(void **state) {
    (void)state;
    char *out = run("generate --help", 0, "usage: cce generate");
    const char *opts[] = {"--prompt", "--steps", "--temperature", "--top-p", "--seed", "--quiet"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (!strstr(out, opts[i])) fail_msg("generate --help lacks %s:\n%s", opts[i], out);
    free(out);
    run_free("generate", 2, "no model given");
    run_free("generate m.h5 --bogus", 2, "unknown option '--bogus'");
    run_free("generate m.h5 -n", 2, "-n needs a value");
    run_free("generate m.h5 -n ten", 2, "whole number");
    run_free("generate m.h5 -t -1", 2, "outside");
    run_free("generate m.h5 --top-p 1.5", 2, "outside");
    run_free("generate a.h5 b.h5", 2, "unexpected argument 'b.h5'");
    /* A missing model file is a failure (exit 1) naming the file. */
    run_free("generate /nonexistent/model.h5 -p hi", 1, "/nonexistent/model.h5");
}

static void test_bench_smoke(void **state) {
    (void)state;
    char *out = run("bench --models tiny --quick --threads 1", 0, "sgemm peak");
    assert_non_null(strstr(out, "tiny"));
    assert_non_null(strstr(out, "GFLOP/s"));
    assert_non_null(strstr(out, "peak RSS"));
    free(out);
    run_free("bench --help", 0, "usage: cce bench");
    run_free("bench --models nosuch", 2, "unknown model 'nosuch'");
    run_free("bench --threads 0", 2, "outside");
    run_free("bench --frobnicate", 2, "unexpected argument");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_known_text),
        cmocka_unit_test(test_sampling_is_seeded),
        cmocka_unit_test(test_help_and_usage_errors),
        cmocka_unit_test(test_bench_smoke),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
