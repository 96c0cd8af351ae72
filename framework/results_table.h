/* Extra per-run tables of a results file (results.h): a named table of typed columns, held in
 * memory while a run is measured and written under /runs/<id>/<name> in the same atomic step as
 * the run's attributes and metrics (cce_run_record.tables). The weight statistics (wstats.h,
 * table "weights") and the activation statistics (astats.h, table "activations") are such tables;
 * any other measurement can add its own.
 *
 * Column types:
 *   CCE_COL_F64     one double per row (NaN allowed: "unknown")
 *   CCE_COL_I64     one int64 per row
 *   CCE_COL_STR     one UTF-8 string per row
 *   CCE_COL_F64VEC  a fixed number (width >= 1) of doubles per row: histogram counts, edges
 * New rows start as NaN (F64, F64VEC), 0 (I64) and "" (STR).
 *
 * Names (of tables and columns) are [A-Za-z0-9_]+, at most CCE_TABLE_NAME_MAX - 1 characters.
 * Table names "metrics" and "layers" are taken by the run itself.
 *
 * On disk (HDF5): the group /runs/<id>/<name> has the attributes table_version (int32, 1) and
 * rows (int64), and one dataset per column in the order the columns were added (link creation
 * order is tracked): F64 float64 [rows], I64 int64 [rows], STR fixed-length UTF-8 [rows], F64VEC
 * float64 [rows, width]. Each dataset has a string attribute `meaning`. Values round-trip bit for
 * bit (NaN payloads and -0.0 included). */
#ifndef CCE_RESULTS_TABLE_H
#define CCE_RESULTS_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define CCE_TABLE_NAME_MAX 64

typedef enum cce_col_type {
    CCE_COL_F64 = 0,
    CCE_COL_I64,
    CCE_COL_STR,
    CCE_COL_F64VEC
} cce_col_type;

typedef struct cce_table_col {
    char name[CCE_TABLE_NAME_MAX];
    cce_col_type type;
    size_t width;  /* values per row: 1, or the vector length of a CCE_COL_F64VEC */
    char *meaning; /* what the column holds (the TSV header shows it); owned, never NULL */
    double *f64;   /* [cap_rows, width] for F64 and F64VEC, else NULL */
    int64_t *i64;  /* [cap_rows] for I64, else NULL */
    char **str;    /* [cap_rows] for STR (each owned, non-NULL for rows that exist), else NULL */
} cce_table_col;

typedef struct cce_table {
    char name[CCE_TABLE_NAME_MAX];
    size_t n_rows, cap_rows;
    size_t n_cols;
    cce_table_col *cols; /* [n_cols] */
} cce_table;

/* 1 if name is a valid table or column name ([A-Za-z0-9_]+, shorter than CCE_TABLE_NAME_MAX). */
int cce_table_name_ok(const char *name);

/* A new empty table called name. CCE_ERR_ARG for a bad name. The caller owns *out
 * (cce_table_free). */
cce_status cce_table_new(const char *name, cce_table **out);
void cce_table_free(cce_table *t);

/* Adds a column (only while the table has no rows: CCE_ERR_STATE otherwise). width must be 1
 * except for CCE_COL_F64VEC (>= 1). meaning is copied (NULL: ""). CCE_ERR_ARG names a bad or
 * repeated column name or a bad width. */
cce_status cce_table_add_column(cce_table *t, const char *name, cce_col_type type, size_t width,
                                const char *meaning);

/* The index of column name, or -1. */
int cce_table_column(const cce_table *t, const char *name);

/* Appends a row of initial values (see above); *row (may be NULL) gets its index. */
cce_status cce_table_add_row(cce_table *t, size_t *row);

/* Cell setters. CCE_ERR_RANGE for a row or column outside the table, CCE_ERR_ARG when the column
 * has another type (naming it). set_str copies v (NULL: ""); set_vec copies width values. */
cce_status cce_table_set_f64(cce_table *t, size_t row, int col, double v);
cce_status cce_table_set_i64(cce_table *t, size_t row, int col, int64_t v);
cce_status cce_table_set_str(cce_table *t, size_t row, int col, const char *v);
cce_status cce_table_set_vec(cce_table *t, size_t row, int col, const double *v);

/* Cell getters: NaN / 0 / NULL for a cell that does not exist or a column of another type.
 * Strings and vectors are borrowed from t (valid until it changes). */
double cce_table_f64(const cce_table *t, size_t row, int col);
int64_t cce_table_i64(const cce_table *t, size_t row, int col);
const char *cce_table_str(const cce_table *t, size_t row, int col);
const double *cce_table_vec(const cce_table *t, size_t row, int col);

/* Drops the rows from n_rows on (nothing when the table has no more than n_rows). */
void cce_table_truncate(cce_table *t, size_t n_rows);

/* Appends every row of src to dst, whose columns must be the same (names, types, widths, in
 * order): CCE_ERR_ARG naming the first difference otherwise. src is borrowed and may be dst (its
 * rows are then doubled). */
cce_status cce_table_append(cce_table *dst, const cce_table *src);

#endif
