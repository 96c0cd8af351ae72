/* In-memory per-run tables (results_table.h): typed columns that grow by rows. The HDF5 side is
 * in results_table_store.c. */
#include "results_table.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cce_table_name_ok(const char *name) {
    if (!name || !*name || strlen(name) >= CCE_TABLE_NAME_MAX) return 0;
    for (const char *p = name; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    return 1;
}

cce_status cce_table_new(const char *name, cce_table **out) {
    if (!out) return cce_fail(CCE_ERR_ARG, "table: NULL output");
    *out = NULL;
    if (!cce_table_name_ok(name))
        return cce_fail(CCE_ERR_ARG, "table name '%.80s': letters, digits and _ only (1 to %d)",
                        name ? name : "(null)", CCE_TABLE_NAME_MAX - 1);
    cce_table *t = calloc(1, sizeof *t);
    if (!t) return cce_fail(CCE_ERR_NOMEM, "table %s", name);
    snprintf(t->name, sizeof t->name, "%s", name);
    *out = t;
    return CCE_OK;
}

static void col_clear(cce_table_col *c, size_t n_rows) {
    if (c->str)
        for (size_t i = 0; i < n_rows; i++) free(c->str[i]);
    free(c->str);
    free(c->f64);
    free(c->i64);
    free(c->meaning);
}

void cce_table_free(cce_table *t) {
    if (!t) return;
    for (size_t c = 0; c < t->n_cols; c++) col_clear(&t->cols[c], t->n_rows);
    free(t->cols);
    free(t);
}

cce_status cce_table_add_column(cce_table *t, const char *name, cce_col_type type, size_t width,
                                const char *meaning) {
    if (!t) return cce_fail(CCE_ERR_ARG, "table: no table");
    if (t->n_rows)
        return cce_fail(CCE_ERR_STATE, "table %s: column %.80s added after the first row", t->name,
                        name ? name : "(null)");
    if (!cce_table_name_ok(name))
        return cce_fail(CCE_ERR_ARG,
                        "table %s: column name '%.80s': letters, digits and _ only (1 to %d)",
                        t->name, name ? name : "(null)", CCE_TABLE_NAME_MAX - 1);
    if (cce_table_column(t, name) >= 0)
        return cce_fail(CCE_ERR_ARG, "table %s: column %s is given twice", t->name, name);
    if (type != CCE_COL_F64 && type != CCE_COL_I64 && type != CCE_COL_STR && type != CCE_COL_F64VEC)
        return cce_fail(CCE_ERR_ARG, "table %s: column %s: unknown type %d", t->name, name,
                        (int)type);
    if (type == CCE_COL_F64VEC ? width < 1 || width > ((size_t)1 << 24) : width != 1)
        return cce_fail(CCE_ERR_ARG, "table %s: column %s: width %zu (%s)", t->name, name, width,
                        type == CCE_COL_F64VEC ? "1 to 2^24 values" : "1 for a scalar column");
    cce_table_col *cols = realloc(t->cols, (t->n_cols + 1) * sizeof *cols);
    if (!cols) return cce_fail(CCE_ERR_NOMEM, "table %s: column %s", t->name, name);
    t->cols = cols;
    cce_table_col *c = &cols[t->n_cols];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->type = type;
    c->width = width;
    if (!(c->meaning = strdup(meaning ? meaning : "")))
        return cce_fail(CCE_ERR_NOMEM, "table %s: column %s", t->name, name);
    t->n_cols++;
    return CCE_OK;
}

int cce_table_column(const cce_table *t, const char *name) {
    if (!t || !name) return -1;
    for (size_t c = 0; c < t->n_cols; c++)
        if (!strcmp(t->cols[c].name, name)) return (int)c;
    return -1;
}

/* Grows every column to cap rows. */
static cce_status reserve(cce_table *t, size_t cap) {
    for (size_t k = 0; k < t->n_cols; k++) {
        cce_table_col *c = &t->cols[k];
        if (c->type == CCE_COL_F64 || c->type == CCE_COL_F64VEC) {
            double *p = realloc(c->f64, cap * c->width * sizeof *p);
            if (!p) return cce_fail(CCE_ERR_NOMEM, "table %s: %zu rows", t->name, cap);
            c->f64 = p;
        } else if (c->type == CCE_COL_I64) {
            int64_t *p = realloc(c->i64, cap * sizeof *p);
            if (!p) return cce_fail(CCE_ERR_NOMEM, "table %s: %zu rows", t->name, cap);
            c->i64 = p;
        } else {
            char **p = realloc(c->str, cap * sizeof *p);
            if (!p) return cce_fail(CCE_ERR_NOMEM, "table %s: %zu rows", t->name, cap);
            c->str = p;
        }
    }
    t->cap_rows = cap;
    return CCE_OK;
}

cce_status cce_table_add_row(cce_table *t, size_t *row) {
    if (!t) return cce_fail(CCE_ERR_ARG, "table: no table");
    if (t->n_rows == t->cap_rows) {
        cce_status s = reserve(t, t->cap_rows ? 2 * t->cap_rows : 16);
        if (s) return s;
    }
    size_t r = t->n_rows;
    for (size_t k = 0; k < t->n_cols; k++) {
        cce_table_col *c = &t->cols[k];
        if (c->type == CCE_COL_STR && !(c->str[r] = strdup(""))) {
            for (size_t j = 0; j < k; j++)
                if (t->cols[j].type == CCE_COL_STR) free(t->cols[j].str[r]);
            return cce_fail(CCE_ERR_NOMEM, "table %s: row %zu", t->name, r);
        }
    }
    for (size_t k = 0; k < t->n_cols; k++) {
        cce_table_col *c = &t->cols[k];
        if (c->type == CCE_COL_I64) c->i64[r] = 0;
        if (c->type == CCE_COL_F64 || c->type == CCE_COL_F64VEC)
            for (size_t i = 0; i < c->width; i++) c->f64[r * c->width + i] = NAN;
    }
    t->n_rows++;
    if (row) *row = r;
    return CCE_OK;
}

/* The column col of t if row and col exist and it holds `want` values; else fails. */
static cce_status cell(cce_table *t, size_t row, int col, cce_col_type want, cce_table_col **out) {
    if (!t) return cce_fail(CCE_ERR_ARG, "table: no table");
    if (col < 0 || (size_t)col >= t->n_cols || row >= t->n_rows)
        return cce_fail(CCE_ERR_RANGE, "table %s: cell (%zu, %d) outside %zu rows x %zu columns",
                        t->name, row, col, t->n_rows, t->n_cols);
    cce_table_col *c = &t->cols[col];
    if (c->type != want) {
        static const char *const names[] = {"float64", "int64", "string", "float64 vector"};
        return cce_fail(CCE_ERR_ARG, "table %s: column %s holds %s values, not %s", t->name,
                        c->name, names[c->type], names[want]);
    }
    *out = c;
    return CCE_OK;
}

cce_status cce_table_set_f64(cce_table *t, size_t row, int col, double v) {
    cce_table_col *c = NULL;
    cce_status s = cell(t, row, col, CCE_COL_F64, &c);
    if (!s) c->f64[row] = v;
    return s;
}

cce_status cce_table_set_i64(cce_table *t, size_t row, int col, int64_t v) {
    cce_table_col *c = NULL;
    cce_status s = cell(t, row, col, CCE_COL_I64, &c);
    if (!s) c->i64[row] = v;
    return s;
}

cce_status cce_table_set_str(cce_table *t, size_t row, int col, const char *v) {
    cce_table_col *c = NULL;
    cce_status s = cell(t, row, col, CCE_COL_STR, &c);
    if (s) return s;
    char *copy = strdup(v ? v : "");
    if (!copy) return cce_fail(CCE_ERR_NOMEM, "table %s: column %s", t->name, c->name);
    free(c->str[row]);
    c->str[row] = copy;
    return CCE_OK;
}

cce_status cce_table_set_vec(cce_table *t, size_t row, int col, const double *v) {
    cce_table_col *c = NULL;
    cce_status s = cell(t, row, col, CCE_COL_F64VEC, &c);
    if (s) return s;
    if (!v) return cce_fail(CCE_ERR_ARG, "table %s: column %s: no values", t->name, c->name);
    memcpy(c->f64 + row * c->width, v, c->width * sizeof *v);
    return CCE_OK;
}

/* The column if the cell exists with that type, else NULL (no error detail). */
static const cce_table_col *peek(const cce_table *t, size_t row, int col, cce_col_type want) {
    if (!t || col < 0 || (size_t)col >= t->n_cols || row >= t->n_rows) return NULL;
    return t->cols[col].type == want ? &t->cols[col] : NULL;
}

double cce_table_f64(const cce_table *t, size_t row, int col) {
    const cce_table_col *c = peek(t, row, col, CCE_COL_F64);
    return c ? c->f64[row] : NAN;
}

int64_t cce_table_i64(const cce_table *t, size_t row, int col) {
    const cce_table_col *c = peek(t, row, col, CCE_COL_I64);
    return c ? c->i64[row] : 0;
}

const char *cce_table_str(const cce_table *t, size_t row, int col) {
    const cce_table_col *c = peek(t, row, col, CCE_COL_STR);
    return c ? c->str[row] : NULL;
}

const double *cce_table_vec(const cce_table *t, size_t row, int col) {
    const cce_table_col *c = peek(t, row, col, CCE_COL_F64VEC);
    return c ? c->f64 + row * c->width : NULL;
}

void cce_table_truncate(cce_table *t, size_t n_rows) {
    if (!t) return;
    while (t->n_rows > n_rows) {
        t->n_rows--;
        for (size_t k = 0; k < t->n_cols; k++)
            if (t->cols[k].type == CCE_COL_STR) {
                free(t->cols[k].str[t->n_rows]);
                t->cols[k].str[t->n_rows] = NULL;
            }
    }
}

cce_status cce_table_append(cce_table *dst, const cce_table *src) {
    if (!dst || !src) return cce_fail(CCE_ERR_ARG, "table append: no table");
    if (dst->n_cols != src->n_cols)
        return cce_fail(CCE_ERR_ARG, "table %s: %zu columns, the rows to append have %zu",
                        dst->name, dst->n_cols, src->n_cols);
    for (size_t k = 0; k < dst->n_cols; k++) {
        const cce_table_col *a = &dst->cols[k], *b = &src->cols[k];
        if (strcmp(a->name, b->name) || a->type != b->type || a->width != b->width)
            return cce_fail(CCE_ERR_ARG,
                            "table %s: column %zu is %s (type %d, width %zu), the rows to append "
                            "have %s (type %d, width %zu)",
                            dst->name, k, a->name, (int)a->type, a->width, b->name, (int)b->type,
                            b->width);
    }
    /* src may be dst itself: append the rows it has now (its arrays may move as dst grows, so
     * every value is read through src after each new row). */
    const size_t n = src->n_rows;
    for (size_t r = 0; r < n; r++) {
        size_t row;
        cce_status s = cce_table_add_row(dst, &row);
        for (size_t k = 0; !s && k < dst->n_cols; k++) {
            const cce_table_col *b = &src->cols[k];
            switch (b->type) {
            case CCE_COL_F64:
                s = cce_table_set_f64(dst, row, (int)k, b->f64[r]);
                break;
            case CCE_COL_I64:
                s = cce_table_set_i64(dst, row, (int)k, b->i64[r]);
                break;
            case CCE_COL_STR:
                s = cce_table_set_str(dst, row, (int)k, b->str[r]);
                break;
            case CCE_COL_F64VEC:
                s = cce_table_set_vec(dst, row, (int)k, b->f64 + r * b->width);
                break;
            }
        }
        if (s) return s;
    }
    return CCE_OK;
}
