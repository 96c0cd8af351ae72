/* The per-tensor report table as per-column HDF5 datasets (report_table.h). */
#include "report_table.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_hdf5.h"

/* ---- Writing --------------------------------------------------------------------------------- */

int report_table_col(hid_t g, const char *name, hid_t file_type, hid_t mem_type, size_t n,
                     const void *data) {
    hsize_t dims[1] = {n};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t ds = space >= 0
                   ? H5Dcreate2(g, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)
                   : -1;
    int ok =
        ds >= 0 && (n == 0 || H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    if (ds >= 0) H5Dclose(ds);
    if (space >= 0) H5Sclose(space);
    return ok ? 0 : -1;
}

int report_table_strings(hid_t g, const char *name, size_t n, const char *const *v) {
    size_t width = 1;
    for (size_t i = 0; i < n; i++)
        if (strlen(v[i]) + 1 > width) width = strlen(v[i]) + 1;
    char *buf = calloc(n ? n : 1, width); /* [n, width] */
    if (!buf) return -1;
    for (size_t i = 0; i < n; i++) memcpy(buf + i * width, v[i], strlen(v[i]));
    hid_t t = H5Tcopy(H5T_C_S1);
    int ok = t >= 0 && H5Tset_size(t, width) >= 0 && H5Tset_strpad(t, H5T_STR_NULLPAD) >= 0 &&
             H5Tset_cset(t, H5T_CSET_UTF8) >= 0 && !report_table_col(g, name, t, t, n, buf);
    if (t >= 0) H5Tclose(t);
    free(buf);
    return ok ? 0 : -1;
}

int report_table_write(hid_t parent, const char *name, const cce_report *r) {
    size_t n = r->n, k = n ? n : 1;
    hid_t g = H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return -1;
    const char **strategy = malloc(k * sizeof *strategy), **tensor = malloc(k * sizeof *tensor),
               **note = malloc(k * sizeof *note);
    int32_t *layer = malloc(k * sizeof *layer); /* [n] */
    int64_t *i64 = malloc(k * sizeof *i64);     /* [n], one column at a time */
    double *f64 = malloc(k * sizeof *f64);      /* [n], one column at a time */
    int ok = strategy && tensor && note && layer && i64 && f64;
    for (size_t i = 0; ok && i < n; i++) {
        strategy[i] = r->rows[i].strategy;
        tensor[i] = r->rows[i].tensor;
        note[i] = r->rows[i].note;
        layer[i] = r->rows[i].layer;
    }
    ok = ok && !report_table_strings(g, "strategy", n, strategy) &&
         !report_table_strings(g, "tensor", n, tensor) &&
         !report_table_strings(g, "note", n, note) &&
         !report_table_col(g, "layer", H5T_STD_I32LE, H5T_NATIVE_INT32, n, layer);
#define I64_COL(field)                                                                             \
    for (size_t i = 0; ok && i < n; i++) i64[i] = r->rows[i].field;                                \
    ok = ok && !report_table_col(g, #field, H5T_STD_I64LE, H5T_NATIVE_INT64, n, i64)
#define F64_COL(field)                                                                             \
    for (size_t i = 0; ok && i < n; i++) f64[i] = r->rows[i].field;                                \
    ok = ok && !report_table_col(g, #field, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, n, f64)
    I64_COL(params_before);
    I64_COL(params_after);
    I64_COL(bytes_before);
    I64_COL(bytes_after);
    I64_COL(rank);
    F64_COL(bits_per_weight);
    F64_COL(sparsity);
    F64_COL(rel_fro_error);
    F64_COL(output_error);
    F64_COL(seconds);
#undef I64_COL
#undef F64_COL
    free(strategy);
    free(tensor);
    free(note);
    free(layer);
    free(i64);
    free(f64);
    H5Gclose(g);
    return ok ? 0 : -1;
}

/* ---- Reading --------------------------------------------------------------------------------- */

/* Every column of a table, in the order the writer creates them. */
static const char *const COLUMNS[] = {
    "strategy",     "tensor",        "note",         "layer",  "params_before",
    "params_after", "bytes_before",  "bytes_after",  "rank",   "bits_per_weight",
    "sparsity",     "rel_fro_error", "output_error", "seconds"};
#define N_COLUMNS (sizeof COLUMNS / sizeof COLUMNS[0])

cce_status report_table_count(hid_t g, const char *file, const char *gpath, size_t *n) {
    hssize_t rows = -1;
    cce_status s = CCE_OK;
    for (size_t c = 0; !s && c < N_COLUMNS; c++) {
        char obj[STORE_PATH_MAX];
        snprintf(obj, sizeof obj, "%s/%s", gpath, COLUMNS[c]);
        htri_t exists = H5Lexists(g, COLUMNS[c], H5P_DEFAULT);
        if (exists <= 0) {
            H5Eclear2(H5E_DEFAULT);
            s = cce_fail(CCE_ERR_FORMAT, "%s: %s is missing", file, obj);
            break;
        }
        hid_t ds = H5Dopen2(g, COLUMNS[c], H5P_DEFAULT);
        hid_t space = ds >= 0 ? H5Dget_space(ds) : -1;
        hssize_t count = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
        if (count < 0 || H5Sget_simple_extent_ndims(space) != 1)
            s = store_hdf5_fail(CCE_ERR_FORMAT, file, obj, "not a 1-D dataset");
        else if (rows >= 0 && count != rows)
            s = cce_fail(CCE_ERR_FORMAT, "%s: %s has %lld rows, expected %lld", file, obj,
                         (long long)count, (long long)rows);
        else
            rows = count;
        if (space >= 0) H5Sclose(space);
        if (ds >= 0) H5Dclose(ds);
    }
    if (!s) *n = (size_t)rows;
    return s;
}

/* Reads the 1-D dataset `name` of group g into a new buffer of elem-byte cells: n < 0 accepts any
 * length (*n receives it), else the length must be *n. */
static cce_status read_col(hid_t g, const char *file, const char *gpath, const char *name,
                           hid_t mem_type, size_t elem, hssize_t *n, void **out) {
    *out = NULL;
    char obj[STORE_PATH_MAX];
    snprintf(obj, sizeof obj, "%s/%s", gpath, name);
    htri_t exists = H5Lexists(g, name, H5P_DEFAULT);
    if (exists <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return cce_fail(CCE_ERR_FORMAT, "%s: %s is missing", file, obj);
    }
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
    hid_t space = ds >= 0 ? H5Dget_space(ds) : -1;
    cce_status s = CCE_OK;
    hssize_t count = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    if (count < 0 || (space >= 0 && H5Sget_simple_extent_ndims(space) != 1))
        s = store_hdf5_fail(CCE_ERR_FORMAT, file, obj, "not a 1-D dataset");
    else if (*n >= 0 && count != *n)
        s = cce_fail(CCE_ERR_FORMAT, "%s: %s has %lld rows, expected %lld", file, obj,
                     (long long)count, (long long)*n);
    else if (!(*out = calloc((size_t)(count ? count : 1), elem)))
        s = cce_fail(CCE_ERR_NOMEM, "%s: %s", file, obj);
    else if (count > 0 && H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0)
        s = store_hdf5_fail(CCE_ERR_FORMAT, file, obj, "cannot read");
    if (space >= 0) H5Sclose(space);
    if (ds >= 0) H5Dclose(ds);
    if (s) {
        free(*out);
        *out = NULL;
    } else {
        *n = count;
    }
    return s;
}

/* A fixed-length string column read into width-byte cells. */
static cce_status read_strings(hid_t g, const char *file, const char *gpath, const char *name,
                               size_t width, hssize_t n, char **out) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0 || H5Tset_size(t, width) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 ||
        H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        if (t >= 0) H5Tclose(t);
        return store_hdf5_fail(CCE_ERR_HDF5, file, gpath, "string type");
    }
    cce_status s = read_col(g, file, gpath, name, t, width, &n, (void **)out);
    H5Tclose(t);
    return s;
}

cce_status report_table_read(hid_t g, const char *file, const char *gpath, cce_report *out) {
    cce_report_init(out);
    hssize_t n = -1;
    int32_t *layer = NULL;                               /* [n] */
    char *strategy = NULL, *tensor = NULL, *note = NULL; /* [n, width] */
    int64_t *i64[5] = {0};                               /* [5][n] */
    double *f64[5] = {0};                                /* [5][n] */
    static const char *const i64_names[5] = {"params_before", "params_after", "bytes_before",
                                             "bytes_after", "rank"};
    static const char *const f64_names[5] = {"bits_per_weight", "sparsity", "rel_fro_error",
                                             "output_error", "seconds"};
    const size_t sw = sizeof out->rows[0].strategy, tw = sizeof out->rows[0].tensor,
                 nw = sizeof out->rows[0].note;
    cce_status s =
        read_col(g, file, gpath, "layer", H5T_NATIVE_INT32, sizeof *layer, &n, (void **)&layer);
    if (!s) s = read_strings(g, file, gpath, "strategy", sw, n, &strategy);
    if (!s) s = read_strings(g, file, gpath, "tensor", tw, n, &tensor);
    if (!s) s = read_strings(g, file, gpath, "note", nw, n, &note);
    for (int c = 0; !s && c < 5; c++)
        s = read_col(g, file, gpath, i64_names[c], H5T_NATIVE_INT64, sizeof(int64_t), &n,
                     (void **)&i64[c]);
    for (int c = 0; !s && c < 5; c++)
        s = read_col(g, file, gpath, f64_names[c], H5T_NATIVE_DOUBLE, sizeof(double), &n,
                     (void **)&f64[c]);
    for (hssize_t i = 0; !s && i < n; i++) {
        cce_report_row row;
        cce_report_row_init(&row, "", layer[i], "");
        memcpy(row.strategy, strategy + (size_t)i * sw, sw);
        memcpy(row.tensor, tensor + (size_t)i * tw, tw);
        memcpy(row.note, note + (size_t)i * nw, nw);
        row.strategy[sw - 1] = row.tensor[tw - 1] = row.note[nw - 1] = '\0';
        row.params_before = i64[0][i];
        row.params_after = i64[1][i];
        row.bytes_before = i64[2][i];
        row.bytes_after = i64[3][i];
        row.rank = i64[4][i];
        row.bits_per_weight = f64[0][i];
        row.sparsity = f64[1][i];
        row.rel_fro_error = f64[2][i];
        row.output_error = f64[3][i];
        row.seconds = f64[4][i];
        s = cce_report_add(out, &row);
    }
    free(layer);
    free(strategy);
    free(tensor);
    free(note);
    for (int c = 0; c < 5; c++) {
        free(i64[c]);
        free(f64[c]);
    }
    if (s) cce_report_clear(out);
    return s;
}
