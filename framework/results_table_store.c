/* Per-run tables (results_table.h) in results files: writing a table group under a run and
 * reading it back. A corrupt table gives CCE_ERR_FORMAT naming the file and dataset, never a
 * crash: every dataset is checked for its class, rank and length before it is read. */
#include "results_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_table.h"
#include "store_hdf5.h"

#define TABLE_VERSION 1
/* Sizes a reader accepts: far above any real table, low enough that a corrupt size cannot ask
 * for an absurd allocation. */
#define MAX_ROWS  ((int64_t)1 << 31)
#define MAX_CELLS ((int64_t)1 << 31)
/* A column's object path: its table's path and its name. */
#define OBJ_MAX (STORE_PATH_MAX + CCE_TABLE_NAME_MAX + 2)

/* ---- Writing --------------------------------------------------------------------------------- */

/* Creates group `name` of parent with link (column) creation order tracked. */
static hid_t create_table_group(hid_t parent, const char *name) {
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    hid_t g = H5I_INVALID_HID;
    if (gcpl >= 0 &&
        H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) >= 0)
        g = H5Gcreate2(parent, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (gcpl >= 0) H5Pclose(gcpl);
    return g;
}

/* A float64 dataset [rows] or [rows, width] of the column's values. */
static int write_f64(hid_t g, const cce_table_col *c, size_t rows) {
    hsize_t dims[2] = {rows, c->width};
    int rank = c->type == CCE_COL_F64VEC ? 2 : 1;
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t ds = space >= 0 ? H5Dcreate2(g, c->name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT,
                                       H5P_DEFAULT)
                          : -1;
    int ok = ds >= 0 && (rows == 0 || H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                               c->f64) >= 0);
    if (ds >= 0) H5Dclose(ds);
    if (space >= 0) H5Sclose(space);
    return ok ? 0 : -1;
}

static cce_status write_column(hid_t g, const char *file, const char *gpath, const cce_table *t,
                               const cce_table_col *c) {
    char obj[OBJ_MAX];
    snprintf(obj, sizeof obj, "%s/%s", gpath, c->name);
    int rc;
    switch (c->type) {
    case CCE_COL_F64:
    case CCE_COL_F64VEC:
        rc = write_f64(g, c, t->n_rows);
        break;
    case CCE_COL_I64:
        rc = report_table_col(g, c->name, H5T_STD_I64LE, H5T_NATIVE_INT64, t->n_rows, c->i64);
        break;
    case CCE_COL_STR:
        rc = report_table_strings(g, c->name, t->n_rows, (const char *const *)c->str);
        break;
    default:
        return cce_fail(CCE_ERR_ARG, "%s: %s: unknown column type %d", file, obj, (int)c->type);
    }
    if (rc) return store_hdf5_fail(CCE_ERR_HDF5, file, obj, "cannot write the column");
    hid_t ds = H5Dopen2(g, c->name, H5P_DEFAULT);
    if (ds < 0) return store_hdf5_fail(CCE_ERR_HDF5, file, obj, "cannot open the column");
    cce_status s = store_write_string(ds, file, obj, "meaning", c->meaning);
    H5Dclose(ds);
    return s;
}

cce_status results_table_write(hid_t run, const char *file, const char *runpath,
                               const cce_table *t) {
    char gpath[STORE_PATH_MAX];
    snprintf(gpath, sizeof gpath, "%s/%s", runpath, t->name);
    hid_t g = create_table_group(run, t->name);
    if (g < 0) return store_hdf5_fail(CCE_ERR_HDF5, file, gpath, "cannot create the table group");
    int32_t version = TABLE_VERSION;
    int64_t rows = (int64_t)t->n_rows;
    cce_status s = store_write_attr(g, file, gpath, "table_version", H5T_STD_I32LE,
                                    H5T_NATIVE_INT32, -1, &version);
    if (!s)
        s = store_write_attr(g, file, gpath, "rows", H5T_STD_I64LE, H5T_NATIVE_INT64, -1, &rows);
    for (size_t c = 0; !s && c < t->n_cols; c++) s = write_column(g, file, gpath, t, &t->cols[c]);
    H5Gclose(g);
    return s;
}

/* ---- Reading --------------------------------------------------------------------------------- */

/* Reads the scalar integer attribute name of obj as int64. */
static cce_status read_attr_i64(hid_t obj, const char *file, const char *objpath, const char *name,
                                int64_t *out) {
    htri_t e = H5Aexists(obj, name);
    if (e <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return cce_fail(CCE_ERR_FORMAT, "%s: %s: attribute %s is missing", file, objpath, name);
    }
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t type = a >= 0 ? H5Aget_type(a) : -1, space = a >= 0 ? H5Aget_space(a) : -1;
    cce_status s = CCE_OK;
    if (type < 0 || space < 0 || H5Tget_class(type) != H5T_INTEGER ||
        H5Sget_simple_extent_type(space) != H5S_SCALAR || H5Aread(a, H5T_NATIVE_INT64, out) < 0) {
        char what[96];
        snprintf(what, sizeof what, "attribute %s is not a readable integer", name);
        s = store_hdf5_fail(CCE_ERR_FORMAT, file, objpath, what);
    }
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (a >= 0) H5Aclose(a);
    return s;
}

int results_table_probe(hid_t run, const char *name, int64_t *rows) {
    H5O_info_t info;
    int is = 0;
    if (H5Oget_info_by_name2(run, name, &info, H5O_INFO_BASIC, H5P_DEFAULT) >= 0 &&
        info.type == H5O_TYPE_GROUP) {
        hid_t g = H5Gopen2(run, name, H5P_DEFAULT);
        if (g >= 0 && H5Aexists(g, "table_version") > 0) {
            is = 1;
            if (rows && read_attr_i64(g, "", name, "rows", rows)) *rows = -1;
        }
        if (g >= 0) H5Gclose(g);
    }
    H5Eclear2(H5E_DEFAULT);
    cce_error_clear();
    return is;
}

/* The children of g in creation order (by name when the group does not track the order). */
static cce_status list_children(hid_t g, const char *file, const char *gpath,
                                results_name_list *out) {
    memset(out, 0, sizeof *out);
    H5_index_t index = H5_INDEX_NAME;
    hid_t cpl = H5Gget_create_plist(g);
    unsigned flags = 0;
    if (cpl >= 0 && H5Pget_link_creation_order(cpl, &flags) >= 0 && (flags & H5P_CRT_ORDER_TRACKED))
        index = H5_INDEX_CRT_ORDER;
    if (cpl >= 0) H5Pclose(cpl);
    H5Eclear2(H5E_DEFAULT);
    hsize_t pos = 0;
    if (H5Literate(g, index, H5_ITER_INC, &pos, results_collect_name, out) < 0) {
        int failed = out->failed;
        results_name_list_free(out);
        memset(out, 0, sizeof *out);
        return failed ? cce_fail(CCE_ERR_NOMEM, "%s: %s: column names", file, gpath)
                      : store_hdf5_fail(CCE_ERR_FORMAT, file, gpath, "cannot list the columns");
    }
    return CCE_OK;
}

/* An open column dataset with what the reader needs to know about it. */
typedef struct column {
    hid_t ds, type, space;
    cce_col_type ct;
    size_t width;
    char obj[OBJ_MAX];
} column;

static void column_close(column *c) {
    if (c->space >= 0) H5Sclose(c->space);
    if (c->type >= 0) H5Tclose(c->type);
    if (c->ds >= 0) H5Dclose(c->ds);
    c->ds = c->type = c->space = H5I_INVALID_HID;
}

/* Opens column `name` of g and checks it: a dataset of rows rows, float64 1-D (F64) or 2-D
 * (F64VEC), integer 1-D (I64) or fixed-length string 1-D (STR). */
static cce_status column_open(hid_t g, const char *file, const char *gpath, const char *name,
                              int64_t rows, column *c) {
    c->ds = c->type = c->space = H5I_INVALID_HID;
    snprintf(c->obj, sizeof c->obj, "%s/%s", gpath, name);
    if (!cce_table_name_ok(name))
        return cce_fail(CCE_ERR_FORMAT, "%s: %s: not a column name", file, c->obj);
    H5O_info_t info;
    if (H5Oget_info_by_name2(g, name, &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0)
        return store_hdf5_fail(CCE_ERR_FORMAT, file, c->obj, "cannot inspect");
    if (info.type != H5O_TYPE_DATASET)
        return cce_fail(CCE_ERR_FORMAT, "%s: %s is not a dataset", file, c->obj);
    c->ds = H5Dopen2(g, name, H5P_DEFAULT);
    c->type = c->ds >= 0 ? H5Dget_type(c->ds) : -1;
    c->space = c->ds >= 0 ? H5Dget_space(c->ds) : -1;
    hsize_t dims[2] = {0, 0};
    int rank = c->space >= 0 ? H5Sget_simple_extent_ndims(c->space) : -1;
    H5T_class_t cls = c->type >= 0 ? H5Tget_class(c->type) : H5T_NO_CLASS;
    cce_status s = CCE_OK;
    if (c->ds < 0 || c->type < 0 || c->space < 0 || rank < 1 || rank > 2 ||
        H5Sget_simple_extent_dims(c->space, dims, NULL) < 0) {
        s = store_hdf5_fail(CCE_ERR_FORMAT, file, c->obj, "not a 1-D or 2-D dataset");
    } else if ((int64_t)dims[0] != rows) {
        s = cce_fail(CCE_ERR_FORMAT, "%s: %s has %llu rows, the table says %lld", file, c->obj,
                     (unsigned long long)dims[0], (long long)rows);
    } else {
        c->width = rank == 2 ? (size_t)dims[1] : 1;
        if (cls == H5T_FLOAT && H5Tget_size(c->type) == 8)
            c->ct = rank == 2 ? CCE_COL_F64VEC : CCE_COL_F64;
        else if (cls == H5T_INTEGER && rank == 1)
            c->ct = CCE_COL_I64;
        else if (cls == H5T_STRING && rank == 1 && H5Tis_variable_str(c->type) == 0)
            c->ct = CCE_COL_STR;
        else
            s = cce_fail(CCE_ERR_FORMAT,
                         "%s: %s: not a float64, int64 or fixed-length string column", file,
                         c->obj);
        if (!s &&
            (c->width < 1 || (int64_t)c->width > MAX_CELLS || rows * (int64_t)c->width > MAX_CELLS))
            s = cce_fail(CCE_ERR_FORMAT, "%s: %s: implausible size %lld x %zu", file, c->obj,
                         (long long)rows, c->width);
    }
    if (s) column_close(c);
    return s;
}

/* Adds the column c (with its meaning) to t, which has no rows yet. */
static cce_status column_add(const column *c, const char *file, const char *name, cce_table *t) {
    char *meaning = NULL;
    cce_status s = CCE_OK;
    if (H5Aexists(c->ds, "meaning") > 0 &&
        (s = store_read_attr_string(c->ds, file, c->obj, "meaning", &meaning)))
        return s == CCE_ERR_NOMEM ? s : CCE_ERR_FORMAT;
    H5Eclear2(H5E_DEFAULT);
    s = cce_table_add_column(t, name, c->ct, c->width, meaning);
    free(meaning);
    return s;
}

/* Reads the values of column c into column k of t, whose rows exist. */
static cce_status column_read(const column *c, const char *file, cce_table *t, size_t k) {
    cce_table_col *col = &t->cols[k];
    size_t rows = t->n_rows;
    if (rows == 0) return CCE_OK;
    herr_t rc;
    if (c->ct == CCE_COL_I64)
        rc = H5Dread(c->ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, col->i64);
    else if (c->ct != CCE_COL_STR)
        rc = H5Dread(c->ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, col->f64);
    else {
        size_t w = H5Tget_size(c->type) + 1;
        if (w < 2 || w > 65536)
            return cce_fail(CCE_ERR_FORMAT, "%s: %s: strings of %zu bytes", file, c->obj, w - 1);
        hid_t mem = H5Tcopy(H5T_C_S1);
        if (mem < 0 || H5Tset_size(mem, w) < 0 || H5Tset_strpad(mem, H5T_STR_NULLTERM) < 0 ||
            H5Tset_cset(mem, H5T_CSET_UTF8) < 0) {
            if (mem >= 0) H5Tclose(mem);
            return store_hdf5_fail(CCE_ERR_HDF5, file, c->obj, "string type");
        }
        char *text = calloc(rows, w); /* [rows, w] */
        if (!text) {
            H5Tclose(mem);
            return cce_fail(CCE_ERR_NOMEM, "%s: %s", file, c->obj);
        }
        rc = H5Dread(c->ds, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, text);
        H5Tclose(mem);
        for (size_t r = 0; rc >= 0 && r < rows; r++) {
            char *v = text + r * w;
            v[w - 1] = '\0';
            char *copy = strdup(v);
            if (!copy) {
                free(text);
                return cce_fail(CCE_ERR_NOMEM, "%s: %s", file, c->obj);
            }
            free(col->str[r]);
            col->str[r] = copy;
        }
        free(text);
    }
    if (rc < 0) return store_hdf5_fail(CCE_ERR_FORMAT, file, c->obj, "cannot read");
    return CCE_OK;
}

/* Reads the table group g (at gpath, called name) into a new table. */
static cce_status read_table_group(hid_t g, const char *file, const char *gpath, const char *name,
                                   cce_table **out) {
    int32_t version = 0;
    int64_t rows = 0;
    cce_status s = store_read_attr_i32(g, file, gpath, "table_version", &version);
    if (s) return s == CCE_ERR_NOMEM ? s : CCE_ERR_FORMAT;
    if (version != TABLE_VERSION)
        return cce_fail(CCE_ERR_FORMAT, "%s: %s: table version %d, this build reads version %d",
                        file, gpath, (int)version, TABLE_VERSION);
    if ((s = read_attr_i64(g, file, gpath, "rows", &rows))) return s;
    if (rows < 0 || rows > MAX_ROWS)
        return cce_fail(CCE_ERR_FORMAT, "%s: %s: implausible row count %lld", file, gpath,
                        (long long)rows);
    results_name_list names;
    if ((s = list_children(g, file, gpath, &names))) return s;
    cce_table *t = NULL;
    column *cols = calloc(names.n ? names.n : 1, sizeof *cols); /* [names.n] */
    size_t opened = 0;
    if (!cols) s = cce_fail(CCE_ERR_NOMEM, "%s: %s: %zu columns", file, gpath, names.n);
    if (!s && cce_table_new(name, &t))
        s = cce_fail(CCE_ERR_FORMAT, "%s: %s: not a table name", file, gpath);
    /* Columns first (a table takes columns only while it has no rows), then the rows, then the
     * values. */
    for (; !s && opened < names.n; opened++) {
        if ((s = column_open(g, file, gpath, names.names[opened], rows, &cols[opened]))) break;
        if ((s = column_add(&cols[opened], file, names.names[opened], t))) {
            opened++;
            break;
        }
    }
    for (int64_t r = 0; !s && r < rows; r++) s = cce_table_add_row(t, NULL);
    for (size_t k = 0; !s && k < names.n; k++) s = column_read(&cols[k], file, t, k);
    for (size_t k = 0; k < opened; k++) column_close(&cols[k]);
    free(cols);
    results_name_list_free(&names);
    H5Eclear2(H5E_DEFAULT);
    if (s) {
        cce_table_free(t);
        return s;
    }
    *out = t;
    return CCE_OK;
}

cce_status results_read_table_file(hid_t f, const char *path, const char *id, const char *name,
                                   cce_table **out) {
    *out = NULL;
    if (!id || !results_is_run_id(id))
        return cce_fail(CCE_ERR_ARG, "%s: '%.64s' is not a run id (r000001, ...)", path,
                        id ? id : "(null)");
    if (!cce_table_name_ok(name))
        return cce_fail(CCE_ERR_ARG, "%s: '%.80s' is not a table name", path,
                        name ? name : "(null)");
    char runpath[64], gpath[STORE_PATH_MAX];
    snprintf(runpath, sizeof runpath, "/runs/%s", id);
    snprintf(gpath, sizeof gpath, "%s/%s", runpath, name);
    int e = store_path_exists(f, runpath);
    H5Eclear2(H5E_DEFAULT);
    if (e != 1) return cce_fail(CCE_ERR_NOT_FOUND, "%s: no run %s", path, id);
    hid_t rg = H5Gopen2(f, runpath, H5P_DEFAULT);
    if (rg < 0) return store_hdf5_fail(CCE_ERR_FORMAT, path, runpath, "cannot open");
    cce_status s = CCE_OK;
    if (!results_table_probe(rg, name, NULL)) {
        s = cce_fail(CCE_ERR_NOT_FOUND, "%s: run %s has no table %s", path, id, name);
    } else {
        hid_t g = H5Gopen2(rg, name, H5P_DEFAULT);
        s = g < 0 ? store_hdf5_fail(CCE_ERR_FORMAT, path, gpath, "cannot open")
                  : read_table_group(g, path, gpath, name, out);
        if (g >= 0) H5Gclose(g);
    }
    H5Gclose(rg);
    H5Eclear2(H5E_DEFAULT);
    return s;
}

cce_status cce_results_read_table(const char *path, const char *id, const char *name,
                                  cce_table **out) {
    if (!out) return cce_fail(CCE_ERR_ARG, "results read table: NULL output");
    *out = NULL;
    if (!path || !*path) return cce_fail(CCE_ERR_ARG, "results read table: no file named");
    hid_t f;
    cce_status s = results_open_file(path, &f);
    if (s) return s;
    s = results_read_table_file(f, path, id, name, out);
    H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    return s;
}
