/* cce data: list, verify and path against the real manifest and mirror, and against manifests
 * with a wrong checksum or a missing file; usage errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_support.h"

#define ALICE_SHA "7467306ee0feed4971260f3c87421154a05be571d944e9cb021a5713700c38f0"
#define WRONG_SHA "1111111111111111111111111111111111111111111111111111111111111111"

static const char *const names[] = {"tinystories_val", "alice29", "tinyshakespeare",
                                    "stories260K",     "tok512",  "llama2_tokenizer"};

static int reset_env(void **state) {
    (void)state;
    unsetenv("CCE_MANIFEST");
    return 0;
}

static void expect_in(const char *out, const char *needle) {
    if (!strstr(out, needle)) fail_msg("output lacks '%s':\n%s", needle, out);
}

/* The output line that starts with prefix (a copy in a static buffer), or fails. */
static const char *line_of(const char *out, const char *prefix) {
    static char line[1024];
    for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (!strncmp(p, prefix, strlen(prefix))) {
            const char *end = strchr(p, '\n');
            size_t n = end ? (size_t)(end - p) : strlen(p);
            if (n >= sizeof line) n = sizeof line - 1;
            memcpy(line, p, n);
            line[n] = '\0';
            return line;
        }
    }
    fail_msg("no line starting with '%s' in:\n%s", prefix, out);
    return NULL;
}

static void test_help_and_usage(void **state) {
    (void)state;
    char *out;
    assert_int_equal(test_run_cce("data --help", &out), 0);
    expect_in(out, "usage: cce data list");
    expect_in(out, "CCE_MIRROR");
    free(out);
    assert_int_equal(test_run_cce("data", &out), 2);
    expect_in(out, "missing action");
    free(out);
    assert_int_equal(test_run_cce("data frobnicate", &out), 2);
    expect_in(out, "unknown action 'frobnicate'");
    free(out);
    assert_int_equal(test_run_cce("data path", &out), 2);
    free(out);
    assert_int_equal(test_run_cce("data list --bogus", &out), 2);
    expect_in(out, "--bogus");
    free(out);
}

static void test_list_real(void **state) {
    (void)state;
    test_require_mirror_file("text/alice29.txt");
    char *out;
    assert_int_equal(test_run_cce("data list", &out), 0);
    for (size_t i = 0; i < 6; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%s ", names[i]);
        const char *line = line_of(out, prefix);
        if (!strstr(line, " ok ")) fail_msg("%s is not ok: %s", names[i], line);
    }
    expect_in(line_of(out, "alice29 "), "text/alice29.txt");
    expect_in(line_of(out, "stories260K "), "model");
    expect_in(line_of(out, "tok512 "), "tokenizer");
    free(out);
}

static void test_verify_and_path_real(void **state) {
    (void)state;
    const char *tok = test_require_mirror_file("models/stories260K/tok512.bin");
    char *out;
    assert_int_equal(test_run_cce("data verify", &out), 0);
    for (size_t i = 0; i < 6; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "ok      %s ", names[i]);
        line_of(out, prefix);
    }
    free(out);
    assert_int_equal(test_run_cce("data verify tok512 alice29", &out), 0);
    line_of(out, "ok      tok512 ");
    line_of(out, "ok      alice29 ");
    free(out);
    assert_int_equal(test_run_cce("data path tok512", &out), 0);
    char want[4200];
    snprintf(want, sizeof want, "%s\n", tok);
    assert_string_equal(out, want);
    free(out);

    assert_int_equal(test_run_cce("data verify tok512 nosuch", &out), 1);
    line_of(out, "ok      tok512 ");
    line_of(out, "FAILED  nosuch ");
    expect_in(out, "known: tinystories_val, alice29");
    free(out);
    assert_int_equal(test_run_cce("data path nosuch", &out), 1);
    expect_in(out, "not found");
    expect_in(out, "tinystories_val");
    free(out);
}

static void test_bad_manifests(void **state) {
    (void)state;
    test_require_mirror_file("text/alice29.txt");
    const char *dir = test_scratch_dir("cli_data");
    const char *path = test_path(dir, "manifest.json");
    char body[4096];
    snprintf(body, sizeof body,
             "{\"format\": \"cce-datasets\", \"version\": 1, \"datasets\": [\n"
             "{\"name\": \"good\", \"kind\": \"text\", \"file\": \"text/alice29.txt\", "
             "\"sha256\": \"%s\", \"licence\": \"pd\", \"url\": \"https://x\", \"derivation\": "
             "\"d\"},\n"
             "{\"name\": \"wrong\", \"kind\": \"text\", \"file\": \"text/alice29.txt\", "
             "\"sha256\": \"%s\", \"licence\": \"pd\", \"url\": \"https://x\", \"derivation\": "
             "\"d\"},\n"
             "{\"name\": \"gone\", \"kind\": \"text\", \"file\": \"text/gone.txt\", "
             "\"sha256\": \"%s\", \"licence\": \"pd\", \"url\": \"https://x/archive.zip\", "
             "\"derivation\": \"d\"}]}\n",
             ALICE_SHA, WRONG_SHA, ALICE_SHA);
    test_write_file(path, body, strlen(body));
    setenv("CCE_MANIFEST", path, 1);
    char *out;
    assert_int_equal(test_run_cce("data list", &out), 0);
    expect_in(line_of(out, "good "), " ok ");
    expect_in(line_of(out, "wrong "), "checksum mismatch");
    expect_in(line_of(out, "gone "), "missing");
    free(out);

    assert_int_equal(test_run_cce("data verify", &out), 1);
    line_of(out, "ok      good ");
    line_of(out, "FAILED  wrong ");
    line_of(out, "FAILED  gone ");
    expect_in(out, WRONG_SHA);
    expect_in(out, ALICE_SHA);
    expect_in(out, "text/gone.txt");
    expect_in(out, "2 of 3 datasets failed");
    free(out);
    assert_int_equal(test_run_cce("data verify good", &out), 0);
    free(out);
    assert_int_equal(test_run_cce("data path wrong", &out), 1);
    expect_in(out, "checksum mismatch");
    free(out);

    test_write_file(path, "{\"format\": ", 11);
    assert_int_equal(test_run_cce("data list", &out), 1);
    expect_in(out, path);
    expect_in(out, "line 1");
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_help_and_usage, reset_env),
        cmocka_unit_test_teardown(test_list_real, reset_env),
        cmocka_unit_test_teardown(test_verify_and_path_real, reset_env),
        cmocka_unit_test_teardown(test_bad_manifests, reset_env),
    };
    reset_env(NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
