/* Exports of results files (cce_results_export): TSV with its commented header and escapes, CSV
 * quoting of commas and quotes, JSON that parses with exact doubles, and the layers table. */
#include "test_support.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "results.h"
#include "results_fixture.h"
#include "sha256.h"

/* ---- Export ---------------------------------------------------------------------------------- */

/* Two runs: A (kl, no "seconds" metric) and B (a "seconds" metric instead of kl, no layers). */
static void write_export_fixture(const char *path, record *a, record *b) {
    record_init(a, "A", 1, 2);
    record_init(b, "B", 2, 0);
    b->names[4] = "seconds";
    b->values[4] = 2.5;
    b->rec.layers = NULL;
    cce_results *r;
    assert_cce_ok(cce_results_open(path, &r));
    assert_cce_ok(cce_results_add(r, &a->rec, NULL));
    assert_cce_ok(cce_results_add(r, &b->rec, NULL));
    cce_results_close(r);
}

static char *export_text(const char *path, const char *table, cce_results_format fmt) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_cce_ok(cce_results_export(path, table, fmt, f));
    fclose(f);
    return buf;
}

/* Splits text into lines (in place); returns the number, lines in out[max]. */
static size_t split_lines(char *text, char **out, size_t max) {
    size_t n = 0;
    for (char *p = text; *p && n < max;) {
        out[n++] = p;
        char *nl = strchr(p, '\n');
        if (!nl) break;
        *nl = '\0';
        p = nl + 1;
    }
    return n;
}

/* Splits a line at sep (in place, no quoting: TSV). */
static size_t split_fields(char *line, char sep, char **out, size_t max) {
    size_t n = 0;
    out[n++] = line;
    for (char *p = line; *p && n < max; p++)
        if (*p == sep) {
            *p = '\0';
            out[n++] = p + 1;
        }
    return n;
}

/* Undoes the TSV escapes \t \n \r \\ in place. */
static char *tsv_unescape(char *s) {
    char *w = s;
    for (const char *p = s; *p; p++) {
        if (*p == '\\' && p[1]) {
            p++;
            *w++ = *p == 't' ? '\t' : *p == 'n' ? '\n' : *p == 'r' ? '\r' : *p;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
    return s;
}

/* Parses one CSV record of RFC 4180 into malloc'd fields; returns the count. */
static size_t parse_csv(const char *line, char **out, size_t max) {
    size_t n = 0;
    const char *p = line;
    for (;;) {
        char *f = calloc(strlen(line) + 1, 1);
        size_t k = 0;
        if (*p == '"') {
            for (p++;; p++) {
                if (!*p) fail_msg("unterminated quote in %s", line);
                if (*p == '"' && p[1] == '"') {
                    f[k++] = '"';
                    p++;
                } else if (*p == '"') {
                    p++;
                    break;
                } else {
                    f[k++] = *p;
                }
            }
        } else {
            while (*p && *p != ',') {
                if (*p == '"') fail_msg("unquoted field with a quote in %s", line);
                f[k++] = *p++;
            }
        }
        assert_true(n < max);
        out[n++] = f;
        if (*p != ',') break;
        p++;
    }
    return n;
}

static const char *const RUN_COLUMNS[] = {
    "id",          "key",       "experiment",   "strategy",      "params",     "plan",
    "seed",        "protocol",  "model",        "model_sha256",  "dataset",    "dataset_sha256",
    "cce_version", "timestamp", "seconds",      "ppl",           "ppl_stderr", "nll",
    "top1",        "kl",        "odd_Metric_9", "metric_seconds"};
#define N_RUN_COLUMNS (sizeof RUN_COLUMNS / sizeof RUN_COLUMNS[0])

static int column_of(const char *name) {
    for (size_t i = 0; i < N_RUN_COLUMNS; i++)
        if (!strcmp(RUN_COLUMNS[i], name)) return (int)i;
    fail_msg("no column %s", name);
    return -1;
}

static void test_export_tsv(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("results_export_tsv");
    char path[4096];
    snprintf(path, sizeof path, "%s", test_path(dir, "results.h5"));
    record a, b;
    write_export_fixture(path, &a, &b);
    char sha[65];
    assert_cce_ok(cce_sha256_file(path, sha));
    char *text = export_text(path, "runs", CCE_RESULTS_TSV);
    char *lines[64] = {0};
    size_t n = split_lines(text, lines, 64);
    size_t c = 0;
    while (c < n && lines[c][0] == '#') c++;
    assert_true(c > 5);
    assert_non_null(strstr(lines[0], path));
    char want[128];
    snprintf(want, sizeof want, "# sha256: %s", sha);
    int found = 0;
    for (size_t i = 0; i < c; i++) found |= !strcmp(lines[i], want);
    assert_true(found);
    found = 0;
    for (size_t i = 0; i < c; i++) found |= strstr(lines[i], "#   ppl: perplexity") != NULL;
    assert_true(found);
    assert_int_equal(n, c + 3); /* header row and two runs */
    char *fields[64] = {0};
    assert_int_equal(split_fields(lines[c], '\t', fields, 64), N_RUN_COLUMNS);
    for (size_t i = 0; i < N_RUN_COLUMNS; i++) assert_string_equal(fields[i], RUN_COLUMNS[i]);

    assert_int_equal(split_fields(lines[c + 1], '\t', fields, 64), N_RUN_COLUMNS);
    assert_string_equal(fields[0], "r000001");
    assert_string_equal(fields[column_of("key")], "A");
    /* backslashes and tabs are escaped, and unescape to the original */
    assert_non_null(strstr(fields[column_of("params")], "a,b \\\\\"q\\\\\""));
    assert_string_equal(tsv_unescape(fields[column_of("params")]), a.params);
    assert_string_equal(fields[column_of("protocol")], "protocol: ctx=256\\twindows=1");
    assert_string_equal(tsv_unescape(fields[column_of("protocol")]), a.protocol);
    assert_string_equal(fields[column_of("seed")], "18446744073709551614");
    assert_same_double(strtod(fields[column_of("ppl")], NULL), a.values[0], "ppl");
    assert_string_equal(fields[column_of("ppl")], "10.333333333333334");
    assert_string_equal(fields[column_of("top1")], "nan");
    assert_string_equal(fields[column_of("kl")], "-0");
    assert_same_double(strtod(fields[column_of("odd_Metric_9")], NULL), a.values[5], "max");
    assert_string_equal(fields[column_of("metric_seconds")], "");
    assert_int_equal(split_fields(lines[c + 2], '\t', fields, 64), N_RUN_COLUMNS);
    assert_string_equal(fields[0], "r000002");
    assert_string_equal(fields[column_of("kl")], "");
    assert_string_equal(fields[column_of("metric_seconds")], "2.5");
    assert_string_equal(fields[column_of("top1")], "0.25");
    free(text);

    /* The layers table: one row per run and tensor, the run id first. */
    text = export_text(path, "layers", CCE_RESULTS_TSV);
    n = split_lines(text, lines, 64);
    for (c = 0; c < n && lines[c][0] == '#'; c++) {
    }
    assert_int_equal(n, c + 1 + 2);
    assert_int_equal(split_fields(lines[c], '\t', fields, 64), 15);
    assert_string_equal(fields[0], "run");
    assert_string_equal(fields[3], "tensor");
    assert_string_equal(fields[14], "note");
    for (size_t r = 0; r < 2; r++) {
        assert_int_equal(split_fields(lines[c + 1 + r], '\t', fields, 64), 15);
        const cce_report_row *w = &a.layers.rows[r];
        assert_string_equal(fields[0], "r000001");
        assert_string_equal(fields[1], w->strategy);
        assert_int_equal(atoi(fields[2]), w->layer);
        assert_string_equal(fields[3], w->tensor);
        assert_int_equal(strtoll(fields[6], NULL, 10), w->bytes_before);
        assert_same_double(strtod(fields[8], NULL), w->bits_per_weight, "bits_per_weight");
        assert_same_double(strtod(fields[11], NULL), w->rel_fro_error, "rel_fro_error");
        assert_same_double(strtod(fields[13], NULL), w->seconds, "seconds");
        if (isnan(w->output_error))
            assert_string_equal(fields[12], "nan");
        else
            assert_same_double(strtod(fields[12], NULL), w->output_error, "output_error");
        assert_string_equal(fields[14], w->note);
    }
    free(text);
    record_free(&a);
    record_free(&b);
}

static void test_export_csv(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("results_export_csv");
    char path[4096];
    snprintf(path, sizeof path, "%s", test_path(dir, "results.h5"));
    record a, b;
    write_export_fixture(path, &a, &b);
    char *text = export_text(path, NULL, CCE_RESULTS_CSV); /* NULL: the runs table */
    char *lines[64] = {0};
    size_t n = split_lines(text, lines, 64), c = 0;
    while (c < n && lines[c][0] == '#') c++;
    assert_true(c > 5);
    assert_int_equal(n, c + 3);
    char *fields[64] = {0};
    size_t k = parse_csv(lines[c], fields, 64);
    assert_int_equal(k, N_RUN_COLUMNS);
    for (size_t i = 0; i < k; i++) {
        assert_string_equal(fields[i], RUN_COLUMNS[i]);
        free(fields[i]);
    }
    k = parse_csv(lines[c + 1], fields, 64);
    assert_int_equal(k, N_RUN_COLUMNS);
    /* commas and quotes survive the quoting */
    assert_string_equal(fields[column_of("params")], a.params);
    assert_non_null(strstr(lines[c + 1], "\"\"q\\\"\"\""));
    assert_string_equal(fields[column_of("protocol")], a.protocol);
    assert_string_equal(fields[column_of("key")], "A");
    assert_same_double(strtod(fields[column_of("nll")], NULL), a.values[2], "nll");
    assert_string_equal(fields[column_of("metric_seconds")], "");
    for (size_t i = 0; i < k; i++) free(fields[i]);
    free(text);

    text = export_text(path, "layers", CCE_RESULTS_CSV);
    n = split_lines(text, lines, 64);
    for (c = 0; c < n && lines[c][0] == '#'; c++) {
    }
    assert_int_equal(n, c + 3);
    k = parse_csv(lines[c + 2], fields, 64);
    assert_int_equal(k, 15);
    assert_string_equal(fields[14], a.layers.rows[1].note); /* "note 1, with \"quotes\"" */
    for (size_t i = 0; i < k; i++) free(fields[i]);
    free(text);
    record_free(&a);
    record_free(&b);
}

static void test_export_json(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("results_export_json");
    char path[4096];
    snprintf(path, sizeof path, "%s", test_path(dir, "results.h5"));
    record a, b;
    write_export_fixture(path, &a, &b);
    char sha[65];
    assert_cce_ok(cce_sha256_file(path, sha));
    char *text = export_text(path, "runs", CCE_RESULTS_JSON);
    json_error_t err;
    json_t *root = json_loads(text, 0, &err);
    if (!root) fail_msg("export is not JSON: %s (line %d)\n%s", err.text, err.line, text);
    json_t *src = json_object_get(root, "source");
    assert_string_equal(json_string_value(json_object_get(src, "sha256")), sha);
    assert_string_equal(json_string_value(json_object_get(src, "file")), path);
    assert_string_equal(json_string_value(json_object_get(src, "table")), "runs");
    assert_non_null(json_object_get(json_object_get(src, "columns"), "ppl"));
    json_t *runs = json_object_get(root, "runs");
    assert_int_equal(json_array_size(runs), 2);
    json_t *r0 = json_array_get(runs, 0), *r1 = json_array_get(runs, 1);
    assert_string_equal(json_string_value(json_object_get(r0, "id")), "r000001");
    assert_string_equal(json_string_value(json_object_get(r0, "key")), "A");
    assert_string_equal(json_string_value(json_object_get(r0, "seed")), "18446744073709551614");
    assert_same_double(json_real_value(json_object_get(r0, "seconds")), a.rec.seconds, "seconds");
    /* params is parsed JSON */
    json_t *p = json_object_get(json_array_get(json_object_get(r0, "params"), 0), "params");
    assert_string_equal(json_string_value(json_object_get(p, "note")), "a,b \"q\"");
    json_t *m0 = json_object_get(r0, "metrics"), *m1 = json_object_get(r1, "metrics");
    assert_same_double(json_real_value(json_object_get(m0, "ppl")), a.values[0], "ppl");
    assert_same_double(json_real_value(json_object_get(m0, "odd_Metric_9")), a.values[5], "max");
    assert_true(json_is_null(json_object_get(m0, "top1"))); /* NaN */
    assert_same_double(json_real_value(json_object_get(m0, "kl")), -0.0, "kl");
    assert_null(json_object_get(m1, "kl"));
    assert_same_double(json_real_value(json_object_get(m1, "seconds")), 2.5, "seconds metric");
    assert_int_equal(json_integer_value(json_object_get(r0, "layer_rows")), 2);
    json_decref(root);
    free(text);

    text = export_text(path, "layers", CCE_RESULTS_JSON);
    root = json_loads(text, 0, &err);
    if (!root) fail_msg("layers export is not JSON: %s\n%s", err.text, text);
    json_t *layers = json_object_get(root, "layers");
    assert_int_equal(json_array_size(layers), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *o = json_array_get(layers, i);
        const cce_report_row *w = &a.layers.rows[i];
        assert_string_equal(json_string_value(json_object_get(o, "run")), "r000001");
        assert_string_equal(json_string_value(json_object_get(o, "tensor")), w->tensor);
        assert_int_equal(json_integer_value(json_object_get(o, "bytes_before")), w->bytes_before);
        assert_int_equal(json_integer_value(json_object_get(o, "rank")), w->rank);
        assert_same_double(json_real_value(json_object_get(o, "bits_per_weight")),
                           w->bits_per_weight, "bits_per_weight");
        assert_same_double(json_real_value(json_object_get(o, "seconds")), w->seconds, "seconds");
        if (isnan(w->output_error)) assert_true(json_is_null(json_object_get(o, "output_error")));
        assert_string_equal(json_string_value(json_object_get(o, "note")), w->note);
    }
    json_decref(root);
    free(text);

    /* a bad table name */
    FILE *f = fopen("/dev/null", "w");
    assert_int_equal(cce_results_export(path, "metrics", CCE_RESULTS_TSV, f), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "metrics"));
    fclose(f);
    record_free(&a);
    record_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_tsv),
        cmocka_unit_test(test_export_csv),
        cmocka_unit_test(test_export_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
