/* Extra per-run tables of results files (results_table.h): the in-memory table, a bit-exact round
 * trip through cce_results_add / cce_results_read_table, TSV / CSV / JSON export with vector
 * columns expanded, `cce results --export --table NAME`, and bad input (reserved or repeated
 * names, corrupt tables, missing tables). */
#include "test_support.h"

#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "results.h"
#include "results_fixture.h"
#include "results_table.h"

/* ---- Fixtures -------------------------------------------------------------------------------- */

/* A table "stats" of n rows with every column type and awkward values; vector width w. */
static cce_table *make_table(const char *name, size_t n, size_t w, unsigned seed) {
    cce_table *t;
    assert_cce_ok(cce_table_new(name, &t));
    assert_cce_ok(cce_table_add_column(t, "tensor", CCE_COL_STR, 1, "tensor name"));
    assert_cce_ok(cce_table_add_column(t, "layer", CCE_COL_I64, 1, "block index"));
    assert_cce_ok(cce_table_add_column(t, "mean", CCE_COL_F64, 1, "mean, with \"quotes\", commas"));
    assert_cce_ok(cce_table_add_column(t, "hist", CCE_COL_F64VEC, w, "counts"));
    assert_cce_ok(cce_table_add_column(t, "note", CCE_COL_STR, 1, NULL));
    double *v = malloc(w * sizeof *v);
    for (size_t r = 0; r < n; r++) {
        size_t row;
        assert_cce_ok(cce_table_add_row(t, &row));
        assert_int_equal(row, r);
        char text[96];
        snprintf(text, sizeof text, "layers.%zu.mlp.up_proj.weight\t\"x\",\\%u", r, seed);
        assert_cce_ok(cce_table_set_str(t, row, 0, text));
        assert_cce_ok(cce_table_set_i64(t, row, 1, r % 2 ? INT64_MIN + (int64_t)r : INT64_MAX));
        double m = r % 3 == 0 ? NAN : r % 3 == 1 ? -0.0 : nextafter(0.1 * seed, 1.0) * (double)r;
        assert_cce_ok(cce_table_set_f64(t, row, 2, m));
        for (size_t k = 0; k < w; k++) v[k] = k == 0 ? 5e-324 : (double)(r * w + k) / 7.0;
        assert_cce_ok(cce_table_set_vec(t, row, 3, v));
        if (r % 2) assert_cce_ok(cce_table_set_str(t, row, 4, "ünïcode ∑"));
    }
    free(v);
    return t;
}

static void assert_same_table(const cce_table *a, const cce_table *b) {
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->n_rows, b->n_rows);
    assert_int_equal(a->n_cols, b->n_cols);
    for (size_t c = 0; c < a->n_cols; c++) {
        const cce_table_col *x = &a->cols[c], *y = &b->cols[c];
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->type, y->type);
        assert_int_equal(x->width, y->width);
        assert_string_equal(x->meaning, y->meaning);
        for (size_t r = 0; r < a->n_rows; r++) {
            if (x->type == CCE_COL_STR) assert_string_equal(x->str[r], y->str[r]);
            if (x->type == CCE_COL_I64) assert_true(x->i64[r] == y->i64[r]);
            if (x->type == CCE_COL_F64 || x->type == CCE_COL_F64VEC)
                assert_memory_equal(x->f64 + r * x->width, y->f64 + r * y->width,
                                    x->width * sizeof(double));
        }
    }
}

/* ---- The in-memory table --------------------------------------------------------------------- */

static void test_table_api(void **state) {
    (void)state;
    cce_table *t;
    assert_int_equal(cce_table_new("bad name", &t), CCE_ERR_ARG);
    assert_int_equal(cce_table_new("", &t), CCE_ERR_ARG);
    assert_cce_ok(cce_table_new("t_1", &t));
    assert_int_equal(cce_table_add_column(t, "x", CCE_COL_F64, 2, NULL), CCE_ERR_ARG);
    assert_int_equal(cce_table_add_column(t, "v", CCE_COL_F64VEC, 0, NULL), CCE_ERR_ARG);
    assert_int_equal(cce_table_add_column(t, "a-b", CCE_COL_F64, 1, NULL), CCE_ERR_ARG);
    assert_cce_ok(cce_table_add_column(t, "x", CCE_COL_F64, 1, "x"));
    assert_int_equal(cce_table_add_column(t, "x", CCE_COL_I64, 1, NULL), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "twice"));
    assert_cce_ok(cce_table_add_column(t, "n", CCE_COL_I64, 1, NULL));
    assert_cce_ok(cce_table_add_column(t, "s", CCE_COL_STR, 1, NULL));
    assert_cce_ok(cce_table_add_column(t, "v", CCE_COL_F64VEC, 3, NULL));
    assert_int_equal(cce_table_column(t, "s"), 2);
    assert_int_equal(cce_table_column(t, "nope"), -1);
    for (int i = 0; i < 40; i++) assert_cce_ok(cce_table_add_row(t, NULL)); /* grows */
    assert_int_equal(t->n_rows, 40);
    assert_int_equal(cce_table_add_column(t, "late", CCE_COL_F64, 1, NULL), CCE_ERR_STATE);
    /* initial values */
    assert_true(isnan(cce_table_f64(t, 39, 0)));
    assert_int_equal(cce_table_i64(t, 39, 1), 0);
    assert_string_equal(cce_table_str(t, 39, 2), "");
    assert_true(isnan(cce_table_vec(t, 39, 3)[2]));
    /* type and range errors */
    assert_int_equal(cce_table_set_f64(t, 0, 1, 1.0), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "column n holds int64"));
    assert_int_equal(cce_table_set_i64(t, 40, 1, 1), CCE_ERR_RANGE);
    assert_int_equal(cce_table_set_str(t, 0, 9, "x"), CCE_ERR_RANGE);
    assert_null(cce_table_str(t, 0, 0));
    assert_true(isnan(cce_table_f64(t, 0, 2)));
    const double v[3] = {1, 2, 3};
    assert_cce_ok(cce_table_set_vec(t, 5, 3, v));
    assert_memory_equal(cce_table_vec(t, 5, 3), v, sizeof v);
    assert_cce_ok(cce_table_set_str(t, 5, 2, "hello"));
    assert_string_equal(cce_table_str(t, 5, 2), "hello");
    /* append and truncate */
    cce_table *u;
    assert_cce_ok(cce_table_new("t_1", &u));
    assert_cce_ok(cce_table_add_column(u, "x", CCE_COL_F64, 1, "x"));
    assert_int_equal(cce_table_append(t, u), CCE_ERR_ARG);
    cce_table_free(u);
    cce_table *copy = make_table("c", 0, 3, 0);
    cce_table *src = make_table("c", 4, 3, 2);
    assert_cce_ok(cce_table_append(copy, src));
    assert_cce_ok(cce_table_append(copy, src));
    assert_int_equal(copy->n_rows, 8);
    cce_table_truncate(copy, 4);
    assert_same_table(copy, src);
    cce_table_free(copy);
    cce_table_free(src);
    cce_table_free(t);
}

/* ---- Round trip ------------------------------------------------------------------------------ */

static void test_round_trip(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("roundtrip");
    const char *path = test_path(dir, "results.h5");
    record a, b;
    record_init(&a, "with-tables", 3, 2);
    record_init(&b, "without", 4, 1);
    cce_table *t1 = make_table("weights", 9, 5, 3), *t2 = make_table("activations", 0, 2, 1);
    cce_table *t3 = make_table("wide", 3, 1, 7);
    const cce_table *tables[] = {t1, t2, t3};
    a.rec.n_tables = 3;
    a.rec.tables = tables;
    cce_results *r;
    const char *id = NULL;
    assert_cce_ok(cce_results_open(path, &r));
    assert_cce_ok(cce_results_add(r, &b.rec, NULL));
    assert_cce_ok(cce_results_add(r, &a.rec, &id));
    char a_id[16];
    snprintf(a_id, sizeof a_id, "%s", id);
    cce_results_close(r);

    cce_results_runs runs;
    assert_cce_ok(cce_results_read(path, &runs));
    assert_int_equal(runs.n, 2);
    assert_run_equals(&runs.runs[0], &b);
    assert_int_equal(runs.runs[0].n_tables, 0);
    assert_run_equals(&runs.runs[1], &a);
    assert_int_equal(runs.runs[1].n_tables, 3); /* in name order */
    assert_string_equal(runs.runs[1].table_names[0], "activations");
    assert_string_equal(runs.runs[1].table_names[1], "weights");
    assert_string_equal(runs.runs[1].table_names[2], "wide");
    assert_int_equal(runs.runs[1].table_rows[0], 0);
    assert_int_equal(runs.runs[1].table_rows[1], 9);
    assert_int_equal(runs.runs[1].table_rows[2], 3);
    cce_results_runs_free(&runs);

    for (size_t i = 0; i < 3; i++) {
        cce_table *back;
        assert_cce_ok(cce_results_read_table(path, a_id, tables[i]->name, &back));
        assert_same_table(tables[i], back);
        cce_table_free(back);
    }
    /* layers still read as before */
    cce_report layers;
    assert_cce_ok(cce_results_read_layers(path, a_id, &layers));
    assert_same_rows(&layers, &a.layers);
    cce_report_clear(&layers);

    cce_table *none = (cce_table *)1;
    assert_int_equal(cce_results_read_table(path, "r000001", "weights", &none), CCE_ERR_NOT_FOUND);
    assert_null(none);
    assert_non_null(strstr(cce_error_detail(), "has no table weights"));
    assert_int_equal(cce_results_read_table(path, "r000009", "weights", &none), CCE_ERR_NOT_FOUND);
    assert_int_equal(cce_results_read_table(path, a_id, "metrics", &none), CCE_ERR_NOT_FOUND);
    assert_int_equal(cce_results_read_table(path, "x1", "weights", &none), CCE_ERR_ARG);
    assert_int_equal(cce_results_read_table(path, a_id, "../x", &none), CCE_ERR_ARG);

    /* A later writer reopens the file (the index reads runs with tables) and replaces the run. */
    assert_cce_ok(cce_results_open(path, &r));
    assert_true(cce_results_has(r, "with-tables", NULL));
    a.rec.n_tables = 1;
    assert_cce_ok(cce_results_add(r, &a.rec, &id));
    cce_table *back;
    assert_cce_ok(cce_results_read_table(path, id, "weights", &back));
    assert_same_table(t1, back);
    cce_table_free(back);
    assert_int_equal(cce_results_read_table(path, id, "wide", &back), CCE_ERR_NOT_FOUND);
    cce_results_close(r);

    cce_table_free(t1);
    cce_table_free(t2);
    cce_table_free(t3);
    record_free(&a);
    record_free(&b);
}

static void test_bad_records(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("bad");
    const char *path = test_path(dir, "results.h5");
    write_runs(path, 1);
    size_t len_before;
    char *before = test_read_file(path, &len_before);
    record a;
    record_init(&a, "k", 1, 1);
    cce_table *layers = make_table("layers", 1, 1, 0), *m = make_table("metrics", 1, 1, 0);
    cce_table *w1 = make_table("weights", 1, 2, 0), *w2 = make_table("weights", 2, 2, 0);
    const struct {
        const cce_table *t[2];
        size_t n;
        const char *needle;
    } cases[] = {
        {{layers, NULL}, 1, "bad table name 'layers'"},
        {{m, NULL}, 1, "bad table name 'metrics'"},
        {{w1, w2}, 2, "table 'weights' is given twice"},
        {{w1, NULL}, 2, "table 1 is missing"},
    };
    cce_results *r;
    assert_cce_ok(cce_results_open(path, &r));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        a.rec.tables = cases[i].t;
        a.rec.n_tables = cases[i].n;
        assert_int_equal(cce_results_add(r, &a.rec, NULL), CCE_ERR_ARG);
        if (!strstr(cce_error_detail(), cases[i].needle))
            fail_msg("case %zu: '%s' lacks '%s'", i, cce_error_detail(), cases[i].needle);
    }
    a.rec.tables = NULL;
    a.rec.n_tables = 2;
    assert_int_equal(cce_results_add(r, &a.rec, NULL), CCE_ERR_ARG);
    cce_results_close(r);
    size_t len_after;
    char *after = test_read_file(path, &len_after);
    assert_int_equal(len_before, len_after);
    assert_memory_equal(before, after, len_after); /* untouched */
    assert_int_equal(count_prefixed(dir, "results.h5.tmp"), 0);
    free(before);
    free(after);
    cce_table_free(layers);
    cce_table_free(m);
    cce_table_free(w1);
    cce_table_free(w2);
    record_free(&a);
}

/* Writes a file with one run holding table "weights"; returns the run id in id. */
static void write_one(const char *path, const cce_table *t, char id[16]) {
    record a;
    record_init(&a, "one", 1, 1);
    a.rec.n_tables = 1;
    a.rec.tables = &t;
    cce_results *r;
    const char *got;
    assert_cce_ok(cce_results_open(path, &r));
    assert_cce_ok(cce_results_add(r, &a.rec, &got));
    snprintf(id, 16, "%s", got);
    cce_results_close(r);
    record_free(&a);
}

static void test_corrupt_tables(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("corrupt");
    cce_table *t = make_table("weights", 4, 3, 1);
    static const char *const damage[] = {"short column", "2-D string", "bad version",
                                         "compound column", "no rows attribute"};
    for (size_t i = 0; i < sizeof damage / sizeof damage[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "c%zu.h5", i);
        const char *path = test_path(dir, name);
        char id[16], gpath[64];
        write_one(path, t, id);
        snprintf(gpath, sizeof gpath, "/runs/%s/weights", id);
        hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        assert_true(f >= 0);
        hid_t g = H5Gopen2(f, gpath, H5P_DEFAULT);
        assert_true(g >= 0);
        if (i == 0 || i == 1 || i == 3) {
            assert_true(H5Ldelete(g,
                                  i == 0   ? "mean"
                                  : i == 1 ? "tensor"
                                           : "layer",
                                  H5P_DEFAULT) >= 0);
            hsize_t dims[2] = {i == 0 ? 3 : 4, 2};
            hid_t type = H5Tcopy(i == 3 ? H5T_NATIVE_INT : H5T_C_S1);
            if (i == 1) H5Tset_size(type, 4);
            if (i == 3) {
                H5Tclose(type);
                type = H5Tcreate(H5T_COMPOUND, 8);
                H5Tinsert(type, "a", 0, H5T_NATIVE_INT);
                H5Tinsert(type, "b", 4, H5T_NATIVE_INT);
            }
            hid_t sp = H5Screate_simple(i == 1 ? 2 : 1, dims, NULL);
            hid_t ds = H5Dcreate2(g,
                                  i == 0   ? "mean"
                                  : i == 1 ? "tensor"
                                           : "layer",
                                  i == 0 ? H5T_IEEE_F64LE : type, sp, H5P_DEFAULT, H5P_DEFAULT,
                                  H5P_DEFAULT);
            assert_true(ds >= 0);
            H5Dclose(ds);
            H5Sclose(sp);
            H5Tclose(type);
        } else if (i == 2) {
            hid_t a = H5Aopen(g, "table_version", H5P_DEFAULT);
            int v = 7;
            H5Awrite(a, H5T_NATIVE_INT, &v);
            H5Aclose(a);
        } else {
            H5Adelete(g, "rows");
        }
        H5Gclose(g);
        H5Fclose(f);
        cce_table *back = NULL;
        cce_status s = cce_results_read_table(path, id, "weights", &back);
        if (i == 4) {
            /* Without the rows attribute it is no readable table: the run listing says so. */
            cce_results_runs runs;
            assert_int_equal(cce_results_read(path, &runs), CCE_ERR_FORMAT);
            assert_non_null(strstr(cce_error_detail(), "row count"));
            assert_int_not_equal(s, CCE_OK);
            continue;
        }
        if (s != CCE_ERR_FORMAT)
            fail_msg("%s: status %d: %s", damage[i], (int)s, cce_error_detail());
        assert_null(back);
        assert_non_null(strstr(cce_error_detail(), path));
        assert_non_null(strstr(cce_error_detail(), "weights"));
    }
    cce_table_free(t);
}

/* ---- Export ---------------------------------------------------------------------------------- */

static char *export_text(const char *path, const char *table, cce_results_format fmt) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_cce_ok(cce_results_export(path, table, fmt, f));
    fclose(f);
    return buf;
}

static void test_export(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("export");
    const char *path = test_path(dir, "results.h5");
    /* Three runs: two with "weights" of different vector widths, one without. */
    record a, b, c;
    record_init(&a, "a", 1, 1);
    record_init(&b, "b", 2, 1);
    record_init(&c, "c", 3, 1);
    cce_table *ta = make_table("weights", 2, 2, 1), *tc = make_table("weights", 1, 3, 3);
    const cce_table *la[] = {ta}, *lc[] = {tc};
    a.rec.n_tables = 1;
    a.rec.tables = la;
    c.rec.n_tables = 1;
    c.rec.tables = lc;
    cce_results *r;
    assert_cce_ok(cce_results_open(path, &r));
    assert_cce_ok(cce_results_add(r, &a.rec, NULL));
    assert_cce_ok(cce_results_add(r, &b.rec, NULL));
    assert_cce_ok(cce_results_add(r, &c.rec, NULL));
    cce_results_close(r);

    char *tsv = export_text(path, "weights", CCE_RESULTS_TSV);
    assert_non_null(strstr(tsv, "# cce results: table weights of "));
    assert_non_null(strstr(tsv, "# 3 runs, 3 rows\n"));
    assert_non_null(strstr(tsv, "#   hist_0 .. hist_2: counts\n"));
    assert_non_null(strstr(tsv, "#   mean: mean, with \"quotes\", commas\n"));
    assert_non_null(strstr(tsv, "\nrun\ttensor\tlayer\tmean\thist_0\thist_1\thist_2\tnote\n"));
    /* row 2 of run a: tensor escaped, layer INT64_MAX, mean exact, hist_2 empty */
    char want[512];
    snprintf(want, sizeof want,
             "\nr000001\tlayers.0.mlp.up_proj.weight\\t\"x\",\\\\1\t9223372036854775807\tnan\t"
             "5e-324\t0.14285714285714285\t\t\n");
    if (!strstr(tsv, want)) fail_msg("no row %s in:\n%s", want, tsv);
    assert_non_null(strstr(tsv, "\nr000003\t"));
    assert_null(strstr(tsv, "\nr000002\t")); /* run b holds no weights */
    free(tsv);

    char *csv = export_text(path, "weights", CCE_RESULTS_CSV);
    assert_non_null(strstr(csv, "\nrun,tensor,layer,mean,hist_0,hist_1,hist_2,note\n"));
    assert_non_null(strstr(csv, "\"layers.1.mlp.up_proj.weight\t\"\"x\"\",\\1\""));
    free(csv);

    char *js = export_text(path, "weights", CCE_RESULTS_JSON);
    json_error_t err;
    json_t *root = json_loads(js, 0, &err);
    if (!root) fail_msg("JSON: %s", err.text);
    json_t *rows = json_object_get(root, "weights");
    assert_int_equal(json_array_size(rows), 3);
    json_t *r0 = json_array_get(rows, 0);
    assert_string_equal(json_string_value(json_object_get(r0, "run")), "r000001");
    assert_true(json_is_null(json_object_get(r0, "mean")));
    json_t *hist = json_object_get(json_array_get(rows, 1), "hist");
    assert_int_equal(json_array_size(hist), 2);
    assert_true(json_real_value(json_array_get(hist, 1)) == 3.0 / 7.0);
    assert_true(json_integer_value(json_object_get(json_array_get(rows, 1), "layer")) ==
                INT64_MIN + 1);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(root, "source"), "table")), "weights");
    json_decref(root);
    free(js);

    /* A table no run holds: the message lists what there is. */
    FILE *devnull = fopen("/dev/null", "w");
    assert_int_equal(cce_results_export(path, "activations", CCE_RESULTS_TSV, devnull),
                     CCE_ERR_NOT_FOUND);
    assert_non_null(strstr(cce_error_detail(), "no run holds a table named 'activations'"));
    assert_non_null(strstr(cce_error_detail(), "runs, layers, weights)"));
    assert_int_equal(cce_results_export(path, "a b", CCE_RESULTS_TSV, devnull), CCE_ERR_ARG);
    fclose(devnull);
    /* The runs and layers exports are as before. */
    char *runs = export_text(path, "runs", CCE_RESULTS_TSV);
    assert_non_null(strstr(runs, "# 3 runs, 3 rows\n"));
    free(runs);

    /* The command line. */
    char args[4096], *out;
    snprintf(args, sizeof args, "results '%s' --export tsv --table weights", path);
    assert_int_equal(test_run_cce(args, &out), 0);
    assert_non_null(strstr(out, "\nrun\ttensor\tlayer\tmean\thist_0\thist_1\thist_2\tnote\n"));
    free(out);
    snprintf(args, sizeof args, "results '%s' --export tsv --table activations", path);
    assert_int_equal(test_run_cce(args, &out), 2);
    assert_non_null(strstr(out, "--table needs runs or layers, or a table the runs hold (here: "
                                "weights), got 'activations'"));
    free(out);
    snprintf(args, sizeof args, "results '%s' --export tsv --table 'x/y'", path);
    assert_int_equal(test_run_cce(args, &out), 2);
    assert_non_null(strstr(out, "--table needs runs or layers"));
    free(out);

    cce_table_free(ta);
    cce_table_free(tc);
    record_free(&a);
    record_free(&b);
    record_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_api),   cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_bad_records), cmocka_unit_test(test_corrupt_tables),
        cmocka_unit_test(test_export),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
