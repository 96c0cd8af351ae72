/* cce compress through the program, on a synthetic tiny model and a short text: the report
 * table, the applied plan, the output file (loads, evaluates, holds /report), composition, plan
 * files and rules, and errors that write nothing (unknown strategy, bad parameter, missing
 * calibration, a stream too short for the split, an existing output left intact). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "report_store.h"
#include "fixtures.h"
#include "test_support.h"

static char dir[4096], tiny[4096], text[4096];

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "%s", test_scratch_dir("cli_compress"));
    snprintf(tiny, sizeof tiny, "%s", test_path(dir, "tiny.h5"));
    snprintf(text, sizeof text, "%s", test_path(dir, "text.txt"));
    if (fixture_synth_file("tiny --seed 7", tiny) != 0) return -1;
    fixture_write_text(text, 3000, 60);
    return 0;
}

#define CALIB "--calib '%s' --test-tokens 500 --calib-tokens 512 --calib-window 32"

static void test_help(void **state) {
    (void)state;
    char *out = fixture_run_expect(0, "compress --help");
    const char *opts[] = {
        "-s,",           "--plan", "--rule", "--calib",   "--calib-tokens", "--calib-window",
        "--test-tokens", "--seed", "-o,",    "--no-cache"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) fixture_expect_in(out, opts[i]);
    free(out);
    out = fixture_run_expect(0, "--help");
    fixture_expect_in(out, "compress");
    free(out);
}

static void test_happy_path(void **state) {
    (void)state;
    const char *out_h5 = test_path(dir, "wanda.h5");
    char *out = fixture_run_expect(0, "compress '%s' -s wanda:ratio=0.5 " CALIB " -o '%s'", tiny,
                                   text, out_h5);
    const char *want[] = {"STRATEGY",
                          "PARAMS before->after",
                          "BYTES before->after",
                          "BITS/W",
                          "SPARSITY",
                          "RANK",
                          "REL_FRO",
                          "OUT_ERR",
                          "TIME_S",
                          "layers.1.mlp.down_proj.weight",
                          "2048->1024",
                          "summary",
                          "byte_ratio",
                          "applied plan of step 1: wanda:ratio=0.5",
                          "16 segments of 32 tokens after the first 500",
                          "wrote"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) fixture_expect_in(out, want[i]);
    free(out);
    assert_true(test_file_exists(out_h5));

    /* The file is a model (evaluating it is tested in test_compress) and holds the report. */
    out = fixture_run_expect(0, "info '%s'", out_h5);
    fixture_expect_in(out, "layers.1.mlp.down_proj.weight");
    free(out);
    cce_report r;
    assert_cce_ok(cce_compress_report_read(out_h5, &r));
    assert_int_equal(r.n, 14);
    for (size_t i = 0; i < r.n; i++) {
        assert_string_equal(r.rows[i].strategy, "wanda");
        assert_true(r.rows[i].sparsity == 0.5);
        assert_true(r.rows[i].output_error > 0);
    }
    cce_report_clear(&r);
    cce_model *m;
    assert_cce_ok(cce_model_open(out_h5, &m));
    cce_tensor *t;
    assert_cce_ok(cce_model_tensor(m, "layers.0.mlp.up_proj.weight", &t));
    int64_t zeros = 0;
    for (int64_t i = 0; i < cce_tensor_numel(t); i++) zeros += t->data[i] == 0;
    assert_int_equal(zeros, cce_tensor_numel(t) / 2);
    cce_model_free(m);
    /* The provenance attribute, found in the file's bytes (attributes are stored as is). */
    size_t len;
    char *bytes = test_read_file(out_h5, &len);
    assert_non_null(bytes);
    const char *needle = "[{\"strategy\":\"wanda\",\"params\":{\"ratio\":0.5";
    int found = 0;
    for (size_t i = 0; !found && i + strlen(needle) <= len; i++)
        found = !memcmp(bytes + i, needle, strlen(needle));
    assert_true(found);
    free(bytes);
}

static void test_composition_plan_and_rules(void **state) {
    (void)state;
    const char *plan = test_path(dir, "plan.txt");
    const char *rules = "# layer 0 lighter\nwanda:0 = 0.25\n\nskip=layers.1.self_attn.*  # keep\n";
    test_write_file(plan, rules, strlen(rules));
    const char *out_h5 = test_path(dir, "composed.h5");
    char *out =
        fixture_run_expect(0,
                           "compress '%s' -s wanda:ratio=0.5 -s magnitude:ratio=0.6 --plan '%s' "
                           "--rule 'magnitude:layers.*.mlp.down_proj=0.7' " CALIB " -o '%s'",
                           tiny, plan, text, out_h5);
    fixture_expect_in(out, "applied plan of step 1: wanda");
    fixture_expect_in(out, "applied plan of step 2: magnitude");
    fixture_expect_in(out, "layer 0");
    fixture_expect_in(out, "layers.1.self_attn.*");
    fixture_expect_in(out, "layers.*.mlp.down_proj");
    free(out);
    cce_report r;
    assert_cce_ok(cce_compress_report_read(out_h5, &r));
    /* wanda: 7 tensors of layer 0 and 3 of layer 1; magnitude: the same. */
    assert_int_equal(r.n, 20);
    for (size_t i = 0; i < r.n; i++) {
        const cce_report_row *w = &r.rows[i];
        double want = !strcmp(w->strategy, "wanda") ? (w->layer == 0 ? 0.25 : 0.5)
                                                    : (strstr(w->tensor, "down_proj") ? 0.7 : 0.6);
        /* floor(ratio * in) per row of 32 or 64 inputs */
        if (!(w->sparsity <= want + 1e-12 && w->sparsity > want - 1.0 / 32))
            fail_msg("%s %s: sparsity %g, expected about %g", w->strategy, w->tensor, w->sparsity,
                     want);
    }
    cce_report_clear(&r);
}

static void test_errors_write_nothing(void **state) {
    (void)state;
    const char *out_h5 = test_path(dir, "never.h5");
    char *out = fixture_run_expect(1, "compress '%s' -s nosuch -o '%s'", tiny, out_h5);
    fixture_expect_in(out, "nosuch");
    fixture_expect_in(out, "magnitude"); /* the known ones are listed */
    free(out);
    out = fixture_run_expect(1, "compress '%s' -s wanda:ratio=1.5 " CALIB " -o '%s'", tiny, text,
                             out_h5);
    fixture_expect_in(out, "wanda: ratio = 1.5 is outside [0, 1)");
    free(out);
    out = fixture_run_expect(1, "compress '%s' -s magnitude:bits=4 -o '%s'", tiny, out_h5);
    fixture_expect_in(out, "unknown parameter 'bits'");
    free(out);
    out = fixture_run_expect(1, "compress '%s' -s wanda -o '%s'", tiny, out_h5);
    fixture_expect_in(out, "wanda: this strategy needs calibration data");
    free(out);
    out = fixture_run_expect(1, "compress '%s' -s magnitude:alloc=owl -o '%s'", tiny, out_h5);
    fixture_expect_in(out, "magnitude: alloc = owl needs calibration data");
    free(out);
    out = fixture_run_expect(1, "compress '%s' -s wanda --calib '%s' -o '%s'", tiny, text, out_h5);
    fixture_expect_in(out, "100000"); /* the default evaluation split is longer than the text */
    free(out);
    out = fixture_run_expect(1, "compress '%s' -s magnitude --rule 'layers.0.*' -o '%s'", tiny,
                             out_h5);
    fixture_expect_in(out, "layers.0.*");
    free(out);
    out = fixture_run_expect(1, "compress '%s' -s magnitude --plan '%s' -o '%s'", tiny,
                             test_path(dir, "absent.txt"), out_h5);
    fixture_expect_in(out, "absent.txt");
    free(out);
    assert_false(test_file_exists(out_h5));

    /* Usage errors. */
    free(fixture_run_expect(2, "compress '%s' -o '%s'", tiny, out_h5));
    free(fixture_run_expect(2, "compress '%s' -s magnitude", tiny));
    free(fixture_run_expect(2, "compress '%s' -s magnitude -o '%s'", tiny, tiny));
    free(fixture_run_expect(2, "compress '%s' -s magnitude --seed 3 -o '%s'", tiny, out_h5));
    free(fixture_run_expect(2, "compress '%s' -s magnitude --bogus -o '%s'", tiny, out_h5));

    /* An existing output survives a failed run. */
    const char *keep = test_path(dir, "keep.h5");
    test_write_file(keep, "precious", 8);
    out = fixture_run_expect(1, "compress '%s' -s wanda -o '%s'", tiny, keep);
    free(out);
    size_t len;
    char *bytes = test_read_file(keep, &len);
    assert_int_equal(len, 8);
    assert_memory_equal(bytes, "precious", 8);
    free(bytes);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_happy_path),
        cmocka_unit_test(test_composition_plan_and_rules),
        cmocka_unit_test(test_errors_write_nothing),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
