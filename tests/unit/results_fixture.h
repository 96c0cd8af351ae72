/* Fixtures shared by the results store tests (test_results.c, test_results_export.c): run
 * records with awkward values, exact comparisons, and small file helpers. */
#ifndef CCE_TEST_RESULTS_FIXTURE_H
#define CCE_TEST_RESULTS_FIXTURE_H

#include "test_support.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "results.h"

/* A run record with its own storage. */
typedef struct record {
    cce_run_record rec;
    char key[128], params[256], plan[256], protocol[128];
    const char *names[8];
    double values[8];
    cce_report layers;
} record;

/* A layers table of n rows whose values depend on seed (some NaN, some awkward doubles). */
static inline void make_layers(cce_report *r, size_t n, unsigned seed) {
    cce_report_init(r);
    for (size_t i = 0; i < n; i++) {
        cce_report_row row;
        char tensor[64];
        snprintf(tensor, sizeof tensor, "layers.%zu.mlp.up_proj.weight", i);
        cce_report_row_init(&row, i % 2 ? "rtn" : "magnitude", (int)i - 1, tensor);
        row.params_before = 1000 + (int64_t)seed * 7 + (int64_t)i;
        row.params_after = (int64_t)seed + (int64_t)i;
        row.bytes_before = INT64_C(1) << 40;
        row.bytes_after = -(int64_t)i;
        row.bits_per_weight = 1.0 / (3.0 + seed + i);
        row.sparsity = i % 3 ? 0.1 * (double)i : 0.0;
        row.rank = i % 2 ? (int64_t)i : -1;
        row.rel_fro_error = nextafter(0.3, 1.0) + seed;
        row.output_error = i % 2 ? NAN : 1e-300 * (double)i;
        row.seconds = 5e-324 * (double)(i + 1);
        snprintf(row.note, sizeof row.note, "note %zu, with \"quotes\"", i);
        assert_cce_ok(cce_report_add(r, &row));
    }
}

static inline void record_init(record *r, const char *key, unsigned seed, size_t n_layers) {
    memset(r, 0, sizeof *r);
    snprintf(r->key, sizeof r->key, "%s", key);
    snprintf(
        r->params, sizeof r->params,
        "[{\"strategy\":\"magnitude\",\"params\":{\"ratio\":0.%u,\"note\":\"a,b \\\"q\\\"\"}}]",
        seed % 10);
    snprintf(r->plan, sizeof r->plan, "{\"rules\":[],\"rows\":[%u]}", seed);
    snprintf(r->protocol, sizeof r->protocol, "protocol: ctx=256\twindows=%u", seed);
    static const char *const names[] = {"ppl", "ppl_stderr", "nll", "top1", "kl", "odd_Metric_9"};
    for (int i = 0; i < 6; i++) r->names[i] = names[i];
    r->values[0] = 10.0 + seed / 3.0;
    r->values[1] = 0.1 / (seed + 1);
    r->values[2] = log(r->values[0]);
    r->values[3] = seed % 2 ? NAN : 0.25;
    r->values[4] = -0.0;
    r->values[5] = 1.7976931348623157e308;
    make_layers(&r->layers, n_layers, seed);
    r->rec = (cce_run_record){.key = r->key,
                              .experiment = "unit",
                              .strategy = "magnitude",
                              .params_json = r->params,
                              .plan_json = r->plan,
                              .seed = UINT64_MAX - seed,
                              .protocol = r->protocol,
                              .model = "models/tiny.h5",
                              .model_sha256 = "ab12",
                              .dataset = "tinystories_val",
                              .dataset_sha256 = "cd34",
                              .seconds = 1.0 / 7.0 + seed,
                              .n_metrics = 6,
                              .metric_names = r->names,
                              .metric_values = r->values,
                              .layers = &r->layers};
}

static inline void record_free(record *r) {
    cce_report_clear(&r->layers);
}

static inline void assert_same_double(double a, double b, const char *what) {
    if (memcmp(&a, &b, sizeof a) != 0) fail_msg("%s: %.17g differs from %.17g", what, a, b);
}

/* Asserts that run holds rec exactly (attributes, metrics, layer row count). */
static inline void assert_run_equals(const cce_run_info *run, const record *r) {
    const cce_run_record *rec = &r->rec;
    assert_string_equal(cce_run_attr(run, "key"), rec->key);
    assert_string_equal(cce_run_attr(run, "experiment"), rec->experiment);
    assert_string_equal(cce_run_attr(run, "strategy"), rec->strategy ? rec->strategy : "");
    assert_string_equal(cce_run_attr(run, "params"), rec->params_json ? rec->params_json : "");
    assert_string_equal(cce_run_attr(run, "plan"), rec->plan_json ? rec->plan_json : "");
    assert_string_equal(cce_run_attr(run, "protocol"), rec->protocol ? rec->protocol : "");
    assert_string_equal(cce_run_attr(run, "model"), rec->model ? rec->model : "");
    assert_string_equal(cce_run_attr(run, "model_sha256"),
                        rec->model_sha256 ? rec->model_sha256 : "");
    assert_string_equal(cce_run_attr(run, "dataset"), rec->dataset ? rec->dataset : "");
    assert_string_equal(cce_run_attr(run, "dataset_sha256"),
                        rec->dataset_sha256 ? rec->dataset_sha256 : "");
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRIu64, rec->seed);
    assert_string_equal(cce_run_attr(run, "seed"), seed);
    assert_same_double(strtod(cce_run_attr(run, "seconds"), NULL), rec->seconds, "seconds");
    const char *ts = cce_run_attr(run, "timestamp");
    assert_non_null(ts);
    assert_int_equal(strlen(ts), 20);
    assert_int_equal(ts[10], 'T');
    assert_int_equal(ts[19], 'Z');
    assert_non_null(cce_run_attr(run, "cce_version"));
    assert_true(strlen(cce_run_attr(run, "cce_version")) > 0);
    assert_int_equal(run->n_metrics, rec->n_metrics);
    for (size_t i = 0; i < rec->n_metrics; i++) { /* in the order given */
        assert_string_equal(run->metric_names[i], rec->metric_names[i]);
        assert_same_double(run->metric_values[i], rec->metric_values[i], rec->metric_names[i]);
    }
    assert_int_equal(run->n_layer_rows, rec->layers ? rec->layers->n : 0);
}

static inline void assert_same_rows(const cce_report *a, const cce_report *b) {
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        const cce_report_row *x = &a->rows[i], *y = &b->rows[i];
        assert_string_equal(x->strategy, y->strategy);
        assert_string_equal(x->tensor, y->tensor);
        assert_string_equal(x->note, y->note);
        assert_int_equal(x->layer, y->layer);
        assert_int_equal(x->params_before, y->params_before);
        assert_int_equal(x->params_after, y->params_after);
        assert_int_equal(x->bytes_before, y->bytes_before);
        assert_int_equal(x->bytes_after, y->bytes_after);
        assert_int_equal(x->rank, y->rank);
        assert_same_double(x->bits_per_weight, y->bits_per_weight, "bits_per_weight");
        assert_same_double(x->sparsity, y->sparsity, "sparsity");
        assert_same_double(x->rel_fro_error, y->rel_fro_error, "rel_fro_error");
        assert_same_double(x->output_error, y->output_error, "output_error");
        assert_same_double(x->seconds, y->seconds, "seconds");
    }
}

/* Files in dir whose names start with prefix. */
static inline int count_prefixed(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
    closedir(d);
    return n;
}

/* Writes n runs ("k0", "k1", ...) to a new results file at path. */
static inline void write_runs(const char *path, int n) {
    cce_results *r;
    assert_cce_ok(cce_results_open(path, &r));
    for (int i = 0; i < n; i++) {
        record rec;
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        record_init(&rec, key, (unsigned)i, (size_t)(i % 4 + 1));
        assert_cce_ok(cce_results_add(r, &rec.rec, NULL));
        record_free(&rec);
    }
    cce_results_close(r);
}

#endif
