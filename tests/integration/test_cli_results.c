/* cce results: listing, TSV/CSV/JSON export to standard output and to a file, usage errors, bad
 * files, and reading a file whose writer lock is held. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_support.h"

#include "results.h"

static char dir[1024], file[1100];

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

static int count_lines(const char *out, const char *prefix) {
    int n = 0;
    for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        n += !strncmp(p, prefix, strlen(prefix));
    return n;
}

/* Three runs: a dense base (no kl), magnitude 0.5 and wanda+rtn with layers rows. */
static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "%s", test_scratch_dir("cli_results"));
    snprintf(file, sizeof file, "%s/sweep results.h5", dir); /* a space: quoting matters */
    cce_results *r;
    if (cce_results_open(file, &r)) return -1;
    static const char *const names[] = {"ppl", "ppl_stderr", "nll", "top1", "kl", "top1_agree"};
    const double dense[] = {12.5, 0.25, 2.5257286443082556, 0.375};
    const double mag[] = {14.75, 0.5, 2.6912, 0.3125, 0.0625, 0.875};
    const double mixed[] = {17.125, 0.75, 2.84, 0.25, 0.1875, 0.8125};
    cce_report rows;
    cce_report_init(&rows);
    for (int i = 0; i < 3; i++) {
        cce_report_row row;
        char tensor[64];
        snprintf(tensor, sizeof tensor, "layers.%d.attention.wq.weight", i);
        cce_report_row_init(&row, "wanda", i, tensor);
        row.params_before = 4096;
        row.params_after = 2048 - i;
        row.sparsity = 0.5;
        row.rel_fro_error = 0.125 * (i + 1);
        snprintf(row.note, sizeof row.note, "note, \"%d\"", i);
        if (cce_report_add(&rows, &row)) return -1;
    }
    cce_run_record base = {.key = "dense",
                           .experiment = "sweep",
                           .strategy = "dense",
                           .params_json = "[]",
                           .seed = 42,
                           .n_metrics = 4,
                           .metric_names = names,
                           .metric_values = dense};
    cce_run_record m = base;
    m.key = "magnitude ratio=0.5";
    m.strategy = "magnitude";
    m.params_json = "[{\"strategy\":\"magnitude\",\"params\":{\"ratio\":0.5}}]";
    m.n_metrics = 6;
    m.metric_values = mag;
    cce_run_record w = m;
    w.key = "wanda+rtn";
    w.strategy = "wanda+rtn";
    w.params_json = "[{\"strategy\":\"wanda\",\"params\":{\"ratio\":0.3}},"
                    "{\"strategy\":\"rtn\",\"params\":{\"bits\":4,\"group\":64}}]";
    w.metric_values = mixed;
    w.layers = &rows;
    int bad = cce_results_add(r, &base, NULL) || cce_results_add(r, &m, NULL) ||
              cce_results_add(r, &w, NULL);
    cce_results_close(r);
    cce_report_clear(&rows);
    return bad ? -1 : 0;
}

static void test_help_and_usage(void **state) {
    (void)state;
    char *out, args[8192];
    assert_int_equal(test_run_cce("results --help", &out), 0);
    expect_in(out, "usage: cce results FILE");
    expect_in(out, "--export");
    free(out);
    assert_int_equal(test_run_cce("--help", &out), 0);
    expect_in(out, "results");
    free(out);
    assert_int_equal(test_run_cce("results", &out), 2);
    expect_in(out, "missing the results FILE");
    free(out);
    static const struct {
        const char *args, *needle;
    } cases[] = {
        {"--bogus", "unknown option '--bogus'"},
        {"--export xml", "--export needs tsv, csv or json"},
        {"--export", "--export needs a value"},
        {"--table runs", "--table only goes with --export"},
        {"-o out.tsv", "-o only goes with --export"},
        {"--export tsv --table tensors", "--table needs runs or layers"},
        {"other.h5", "one results file only"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(args, sizeof args, "results '%s' %s", file, cases[i].args);
        int rc = test_run_cce(args, &out);
        if (rc != 2) fail_msg("%s: exit %d, expected 2:\n%s", cases[i].args, rc, out);
        expect_in(out, cases[i].needle);
        expect_in(out, "Try 'cce results --help'");
        free(out);
    }
}

static void test_list(void **state) {
    (void)state;
    char *out, args[8192];
    snprintf(args, sizeof args, "results '%s'", file);
    assert_int_equal(test_run_cce(args, &out), 0);
    const char *head = line_of(out, "ID");
    expect_in(head, "STRATEGY");
    expect_in(head, "PPL");
    expect_in(head, "KL");
    assert_int_equal(count_lines(out, "r0000"), 3);
    const char *l = line_of(out, "r000001 ");
    expect_in(l, " dense ");
    expect_in(l, " 12.5 ");
    expect_in(l, " - "); /* no kl for the base */
    expect_in(l, "T");
    l = line_of(out, "r000002 ");
    expect_in(l, " magnitude ");
    expect_in(l, "ratio=0.5");
    expect_in(l, " 14.75 ");
    expect_in(l, " 0.0625 ");
    l = line_of(out, "r000003 ");
    expect_in(l, " wanda+rtn ");
    expect_in(l, "ratio=0.3 + bits=4,group=64");
    expect_in(l, " 0.1875 ");
    free(out);

    /* an empty results file */
    char empty[1200];
    snprintf(empty, sizeof empty, "%s/empty.h5", dir);
    cce_results *r;
    assert_cce_ok(cce_results_open(empty, &r));
    cce_results_close(r);
    snprintf(args, sizeof args, "results '%s'", empty);
    assert_int_equal(test_run_cce(args, &out), 0);
    expect_in(out, "no runs recorded");
    free(out);
}

static void test_export_stdout(void **state) {
    (void)state;
    char *out, args[8192];
    snprintf(args, sizeof args, "results '%s' --export tsv", file);
    assert_int_equal(test_run_cce(args, &out), 0);
    assert_true(!strncmp(out, "# cce results: table runs of ", 29));
    expect_in(out, "# sha256: ");
    expect_in(out, "#   kl: mean KL(ref || model)");
    const char *h = line_of(out, "id\t");
    expect_in(h, "\tkey\texperiment\tstrategy\t");
    expect_in(h, "\tppl\tppl_stderr\tnll\ttop1\tkl\ttop1_agree");
    expect_in(line_of(out, "r000001\t"), "\tdense\t");
    expect_in(line_of(out, "r000002\t"), "\t14.75\t0.5\t2.6912\t0.3125\t0.0625\t0.875");
    /* the dense run lacks kl and top1_agree: empty fields */
    expect_in(line_of(out, "r000001\t"), "\t12.5\t0.25\t2.5257286443082556\t0.375\t\t");
    free(out);

    snprintf(args, sizeof args, "results '%s' --export=csv --table=layers", file);
    assert_int_equal(test_run_cce(args, &out), 0);
    expect_in(out, "# cce results: table layers of ");
    expect_in(line_of(out, "run,"), "run,strategy,layer,tensor,params_before");
    assert_int_equal(count_lines(out, "r000003,wanda,"), 3);
    expect_in(line_of(out, "r000003,wanda,2,"), ",\"note, \"\"2\"\"\"");
    free(out);

    snprintf(args, sizeof args, "results '%s' --export json", file);
    assert_int_equal(test_run_cce(args, &out), 0);
    json_error_t err;
    json_t *root = json_loads(out, 0, &err);
    if (!root) fail_msg("not JSON: %s\n%s", err.text, out);
    json_t *runs = json_object_get(root, "runs");
    assert_int_equal(json_array_size(runs), 3);
    json_t *m = json_object_get(json_array_get(runs, 2), "metrics");
    assert_true(json_real_value(json_object_get(m, "ppl")) == 17.125);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(root, "source"), "table")), "runs");
    json_decref(root);
    free(out);
}

static void test_export_file(void **state) {
    (void)state;
    char *out, args[8192], dest[1200];
    snprintf(dest, sizeof dest, "%s/layers.json", dir);
    snprintf(args, sizeof args, "results '%s' --export json --table layers -o '%s'", file, dest);
    assert_int_equal(test_run_cce(args, &out), 0);
    assert_string_equal(out, ""); /* nothing on the terminal */
    free(out);
    char *text = test_read_file(dest, NULL);
    assert_non_null(text);
    json_error_t err;
    json_t *root = json_loads(text, 0, &err);
    if (!root) fail_msg("not JSON: %s\n%s", err.text, text);
    json_t *layers = json_object_get(root, "layers");
    assert_int_equal(json_array_size(layers), 3);
    json_t *row = json_array_get(layers, 1);
    assert_string_equal(json_string_value(json_object_get(row, "run")), "r000003");
    assert_int_equal(json_integer_value(json_object_get(row, "params_after")), 2047);
    assert_true(json_real_value(json_object_get(row, "rel_fro_error")) == 0.25);
    assert_true(json_is_null(json_object_get(row, "output_error")));
    json_decref(root);
    free(text);

    /* --output over an existing file replaces it whole */
    snprintf(dest, sizeof dest, "%s/runs.csv", dir);
    test_write_file(dest, "old", 3);
    snprintf(args, sizeof args, "results '%s' --export csv --output '%s'", file, dest);
    assert_int_equal(test_run_cce(args, &out), 0);
    free(out);
    text = test_read_file(dest, NULL);
    assert_true(!strncmp(text, "# cce results: table runs", 25));
    assert_int_equal(count_lines(text, "r0000"), 3);
    free(text);

    /* a failure leaves the destination as it was and no temporary file */
    snprintf(args, sizeof args, "results '%s/missing.h5' --export csv -o '%s'", dir, dest);
    assert_int_equal(test_run_cce(args, &out), 1);
    expect_in(out, "missing.h5");
    free(out);
    text = test_read_file(dest, NULL);
    assert_true(!strncmp(text, "# cce results: table runs", 25));
    free(text);
    snprintf(args, sizeof args, "ls '%s' | grep -c tmp", dir);
    FILE *p = popen(args, "r");
    int n = -1;
    assert_int_equal(fscanf(p, "%d", &n), 1);
    pclose(p);
    assert_int_equal(n, 0);
    /* a destination in a missing folder */
    snprintf(args, sizeof args, "results '%s' --export csv -o '%s/no/such/dir/x.csv'", file, dir);
    assert_int_equal(test_run_cce(args, &out), 1);
    expect_in(out, "cannot create");
    free(out);
}

static void test_bad_files(void **state) {
    (void)state;
    char *out, args[8192], path[1200];
    snprintf(args, sizeof args, "results '%s/missing.h5'", dir);
    assert_int_equal(test_run_cce(args, &out), 1);
    expect_in(out, "cce results: error:");
    expect_in(out, "missing.h5: cannot open the results file");
    free(out);

    snprintf(path, sizeof path, "%s/text.h5", dir);
    test_write_file(path, "plain text\n", 11);
    snprintf(args, sizeof args, "results '%s'", path);
    assert_int_equal(test_run_cce(args, &out), 1);
    expect_in(out, "not a readable HDF5 file");
    free(out);
    snprintf(args, sizeof args, "results '%s' --export json", path);
    assert_int_equal(test_run_cce(args, &out), 1);
    expect_in(out, "text.h5");
    free(out);

    /* truncated: a format error, not a crash */
    size_t len;
    char *bytes = test_read_file(file, &len);
    snprintf(path, sizeof path, "%s/truncated.h5", dir);
    test_write_file(path, bytes, len / 2);
    free(bytes);
    snprintf(args, sizeof args, "results '%s'", path);
    assert_int_equal(test_run_cce(args, &out), 1);
    expect_in(out, "truncated.h5");
    free(out);
}

/* Readers take no lock: listing and exporting work while a writer holds the file. */
static void test_locked_file_reads(void **state) {
    (void)state;
    cce_results *r;
    assert_cce_ok(cce_results_open(file, &r));
    char *out, args[8192];
    snprintf(args, sizeof args, "results '%s'", file);
    assert_int_equal(test_run_cce(args, &out), 0);
    assert_int_equal(count_lines(out, "r0000"), 3);
    free(out);
    snprintf(args, sizeof args, "results '%s' --export tsv --table layers", file);
    assert_int_equal(test_run_cce(args, &out), 0);
    assert_int_equal(count_lines(out, "r000003\t"), 3);
    free(out);
    /* and the writer still holds the lock */
    cce_results *r2 = NULL;
    assert_int_equal(cce_results_open(file, &r2), CCE_ERR_STATE);
    cce_results_close(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_usage), cmocka_unit_test(test_list),
        cmocka_unit_test(test_export_stdout),  cmocka_unit_test(test_export_file),
        cmocka_unit_test(test_bad_files),      cmocka_unit_test(test_locked_file_reads),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
