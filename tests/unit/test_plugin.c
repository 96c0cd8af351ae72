/* External strategies: the sample shared object (tests/plugins/sample_strategy.c) loads, lists,
 * parses its parameters and runs, including a resize; objects with the wrong API version, without
 * the entry symbol, with a bad schema, or that are no objects at all give clear errors; the cce
 * program loads it too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strategy.h"
#include "test_support.h"

static int unload(void **state) {
    (void)state;
    cce_strategy_unload_external();
    return 0;
}

static const cce_strategy *load_sample(void) {
    const cce_strategy *s;
    assert_cce_ok(cce_strategy_load_external(CCE_PLUGIN_OK, &s));
    return s;
}

static void test_loads_and_registers(void **state) {
    (void)state;
    size_t before = cce_strategy_count();
    const cce_strategy *s = load_sample();
    assert_string_equal(s->name, "sample_scale");
    assert_int_equal(s->api_version, CCE_STRATEGY_API_VERSION);
    assert_int_equal(cce_strategy_count(), before + 1);
    assert_ptr_equal(cce_strategy_at(before), s);
    const cce_strategy *found;
    assert_cce_ok(cce_strategy_find("sample_scale", &found));
    assert_ptr_equal(found, s);
    /* Loading the same object again gives the same descriptor and no second entry. */
    const cce_strategy *again;
    assert_cce_ok(cce_strategy_load_external(CCE_PLUGIN_OK, &again));
    assert_ptr_equal(again, s);
    assert_int_equal(cce_strategy_count(), before + 1);
    /* Its parameters go through the framework's checks like any strategy's. */
    cce_params *p;
    assert_int_equal(cce_strategy_parse_spec("sample_scale:factor=11", &found, &p), CCE_ERR_RANGE);
    assert_string_equal(cce_error_detail(), "sample_scale: factor = 11 is outside [0, 10]");
    assert_int_equal(cce_strategy_parse_spec("sample_scale:scale=2", &found, &p), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "unknown parameter 'scale'"));
    cce_strategy_unload_external();
    assert_int_equal(cce_strategy_count(), before);
    assert_int_equal(cce_strategy_find("sample_scale", &found), CCE_ERR_NOT_FOUND);
}

/* A job with one [3, 4] tensor holding 1..12. */
static cce_block_job *job_3x4(int can_resize) {
    cce_block_job *job;
    cce_tensor *t;
    assert_cce_ok(cce_block_job_new(1, 1, &job));
    assert_cce_ok(cce_tensor_new_2d(3, 4, &t));
    for (int i = 0; i < 12; i++) t->data[i] = (float)(i + 1);
    assert_cce_ok(cce_block_job_set(job, 0, "layers.1.mlp.up_proj.weight", t, 0.5, 0));
    job->can_resize = can_resize;
    return job;
}

static void test_runs(void **state) {
    (void)state;
    load_sample();
    const cce_strategy *s;
    cce_params *p;
    assert_cce_ok(cce_strategy_parse_spec("sample_scale:factor=2", &s, &p));
    cce_strategy_instance *inst;
    assert_cce_ok(cce_strategy_instance_new(s, p, &inst));
    cce_params_free(p);
    cce_report r;
    cce_report_init(&r);
    cce_block_job *job = job_3x4(0);
    assert_cce_ok(cce_strategy_instance_apply(inst, job, &r));
    for (int i = 0; i < 12; i++) assert_true(job->tensors[0].weight->data[i] == 2.0f * (i + 1));
    assert_int_equal(r.n, 1);
    assert_string_equal(r.rows[0].strategy, "sample_scale");
    assert_string_equal(r.rows[0].tensor, "layers.1.mlp.up_proj.weight");
    assert_int_equal(r.rows[0].params_before, 12);
    assert_true(r.rows[0].rel_fro_error == 1.0);
    cce_block_job_free(job);
    cce_strategy_instance_free(inst);

    /* drop_rows resizes: refused by a job without the right (tensor untouched, no row), done by
     * one that grants it. */
    assert_cce_ok(cce_strategy_parse_spec("sample_scale:factor=1,drop_rows=1", &s, &p));
    assert_cce_ok(cce_strategy_instance_new(s, p, &inst));
    cce_params_free(p);
    job = job_3x4(0);
    assert_int_equal(cce_strategy_instance_apply(inst, job, &r), CCE_ERR_STATE);
    assert_non_null(strstr(cce_error_detail(), "layers.1.mlp.up_proj.weight"));
    assert_int_equal(r.n, 1);
    assert_int_equal(cce_tensor_rows(job->tensors[0].weight), 3);
    cce_block_job_free(job);
    job = job_3x4(1);
    assert_cce_ok(cce_strategy_instance_apply(inst, job, &r));
    const cce_tensor *t = job->tensors[0].weight;
    assert_int_equal(cce_tensor_rows(t), 2);
    assert_int_equal(cce_tensor_cols(t), 4);
    assert_null(job->tensors[0].resized);
    for (int i = 0; i < 8; i++) assert_true(t->data[i] == (float)(i + 1));
    assert_int_equal(r.rows[1].params_after, 8);
    cce_block_job_free(job);

    /* A failing apply drops its pending resizes and its rows: the first tensor of this job is
     * resized, then the second (a single row) cannot lose a row. */
    cce_block_job *two;
    cce_tensor *a, *b;
    assert_cce_ok(cce_block_job_new(1, 2, &two));
    two->can_resize = 1;
    assert_cce_ok(cce_tensor_new_2d(3, 4, &a));
    assert_cce_ok(cce_tensor_new_2d(1, 4, &b));
    assert_cce_ok(cce_block_job_set(two, 0, "layers.1.mlp.gate_proj.weight", a, 0.5, 0));
    assert_cce_ok(cce_block_job_set(two, 1, "layers.1.mlp.down_proj.weight", b, 0.5, 0));
    assert_int_equal(cce_strategy_instance_apply(inst, two, &r), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "layers.1.mlp.down_proj.weight: drop_rows = 1"));
    assert_int_equal(cce_tensor_rows(two->tensors[0].weight), 3);
    assert_null(two->tensors[0].resized);
    assert_int_equal(r.n, 2);
    cce_block_job_free(two);
    cce_strategy_instance_free(inst);
    cce_report_clear(&r);
}

/* Loading must fail with st and a detail naming the file and `needle`. */
static void expect_load_error(const char *path, cce_status st, const char *needle) {
    const cce_strategy *s = (const cce_strategy *)0x1;
    size_t before = cce_strategy_count();
    cce_status got = cce_strategy_load_external(path, &s);
    const char *d = cce_error_detail();
    if (got != st || !strstr(d, path) || !strstr(d, needle))
        fail_msg("%s: got %s '%s', expected %s naming '%s'", path, cce_strerror(got), d,
                 cce_strerror(st), needle);
    assert_null(s);
    assert_int_equal(cce_strategy_count(), before);
}

static void test_bad_objects(void **state) {
    (void)state;
    expect_load_error(CCE_PLUGIN_BAD_VERSION, CCE_ERR_FORMAT, "API version");
    expect_load_error(CCE_PLUGIN_NO_ENTRY, CCE_ERR_FORMAT, "no symbol cce_strategy_entry");
    expect_load_error(CCE_PLUGIN_BAD_SCHEMA, CCE_ERR_FORMAT, "default '20'");
    const char *dir = test_scratch_dir("plugin");
    const char *missing = test_path(dir, "missing.so");
    expect_load_error(missing, CCE_ERR_IO, "No such file");
    const char *junk = test_path(dir, "junk.so");
    test_write_file(junk, "not an ELF object\n", 18);
    expect_load_error(junk, CCE_ERR_FORMAT, "cannot load");
    /* A name clash with a registered strategy: the good object loaded under another path. */
    load_sample();
    const char *link = test_path(dir, "copy.so");
    char *data;
    size_t len;
    assert_non_null(data = test_read_file(CCE_PLUGIN_OK, &len));
    test_write_file(link, data, len);
    free(data);
    expect_load_error(link, CCE_ERR_ARG, "already registered");
}

static void test_cli_loads(void **state) {
    (void)state;
    char *out = NULL, args[4096];
    snprintf(args, sizeof args, "strategies --load '%s'", CCE_PLUGIN_OK);
    assert_int_equal(test_run_cce(args, &out), 0);
    assert_non_null(strstr(out, "magnitude"));
    assert_non_null(strstr(out, "sample_scale"));
    assert_non_null(strstr(out, "drop_rows"));
    free(out);
    snprintf(args, sizeof args, "strategies --load '%s'", CCE_PLUGIN_BAD_VERSION);
    assert_int_equal(test_run_cce(args, &out), 1);
    assert_non_null(strstr(out, "API version"));
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_loads_and_registers, unload),
        cmocka_unit_test_teardown(test_runs, unload),
        cmocka_unit_test_teardown(test_bad_objects, unload),
        cmocka_unit_test_teardown(test_cli_loads, unload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
