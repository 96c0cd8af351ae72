/* The bootstrap's recorded inputs (bootstrap.h): the per-window table of an evaluation, and the
 * paired bootstrap of a column of two runs' tables. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bootstrap.h"
#include "eval.h"
#include "results_table.h"

cce_status cce_bootstrap_window_table(const cce_eval_result *r, cce_table **out) {
    if (!r || !out) return cce_fail(CCE_ERR_ARG, "cce_bootstrap_window_table: NULL argument");
    *out = NULL;
    if (!r->token_nll || r->ctx < 2 || r->n_windows < 1)
        return cce_fail(CCE_ERR_ARG, "the per-window table needs an evaluation that kept its "
                                     "per-token NLLs (keep_token_nll)");
    cce_table *t;
    cce_status s = cce_table_new(CCE_BOOTSTRAP_WINDOW_TABLE, &t);
    if (s) return s;
    if (!s) s = cce_table_add_column(t, "window", CCE_COL_I64, 1, "window index in the stream");
    if (!s) s = cce_table_add_column(t, "tokens", CCE_COL_I64, 1, "scored tokens (ctx - 1)");
    if (!s) s = cce_table_add_column(t, "nll_sum", CCE_COL_F64, 1, "summed NLL of its tokens");
    int64_t stride = r->ctx - 1;
    for (int64_t w = 0; !s && w < r->n_windows; w++) {
        double sum = 0;
        for (int64_t i = w * stride; i < (w + 1) * stride; i++) sum += r->token_nll[i];
        size_t row;
        if (!(s = cce_table_add_row(t, &row)) && !(s = cce_table_set_i64(t, row, 0, w)) &&
            !(s = cce_table_set_i64(t, row, 1, stride)))
            s = cce_table_set_f64(t, row, 2, sum);
    }
    if (s) {
        cce_table_free(t);
        return s;
    }
    *out = t;
    return CCE_OK;
}

/* Column name of t as doubles into x [n_rows]; CCE_ERR_ARG when missing or not numeric. */
static cce_status column_values(const cce_table *t, const char *name, double *x) {
    int c = cce_table_column(t, name);
    if (c < 0) return cce_fail(CCE_ERR_ARG, "table '%s' has no column '%s'", t->name, name);
    cce_col_type type = t->cols[c].type;
    if (type != CCE_COL_F64 && type != CCE_COL_I64)
        return cce_fail(CCE_ERR_ARG, "column '%s' of table '%s' is not a number column", name,
                        t->name);
    for (size_t r = 0; r < t->n_rows; r++)
        x[r] = type == CCE_COL_F64 ? cce_table_f64(t, r, c) : (double)cce_table_i64(t, r, c);
    return CCE_OK;
}

/* The key column `key` (int64) must hold the same values in a and b where both have it. */
static cce_status same_keys(const cce_table *a, const cce_table *b, const char *key) {
    int ca = cce_table_column(a, key), cb = cce_table_column(b, key);
    if (ca < 0 || cb < 0) return CCE_OK;
    for (size_t r = 0; r < a->n_rows; r++)
        if (cce_table_i64(a, r, ca) != cce_table_i64(b, r, cb))
            return cce_fail(CCE_ERR_ARG,
                            "row %zu: %s %lld against %lld: the runs were not evaluated on the "
                            "same %ss",
                            r, key, (long long)cce_table_i64(a, r, ca),
                            (long long)cce_table_i64(b, r, cb), key);
    return CCE_OK;
}

cce_status cce_bootstrap_tables(const cce_table *a, const cce_table *b, const char *value,
                                const char *count, const cce_bootstrap_options *o,
                                cce_bootstrap_result *out) {
    if (!out) return cce_fail(CCE_ERR_ARG, "cce_bootstrap_tables: no result");
    memset(out, 0, sizeof *out);
    if (!a || !b || !value) return cce_fail(CCE_ERR_ARG, "cce_bootstrap_tables: NULL argument");
    if (a->n_rows != b->n_rows)
        return cce_fail(CCE_ERR_ARG,
                        "table '%s' has %zu rows against %zu: the runs were not evaluated on the "
                        "same windows or items",
                        a->name, a->n_rows, b->n_rows);
    size_t n = a->n_rows;
    double *buf = malloc((4 * n + 1) * sizeof *buf); /* a, b, counts of a, counts of b: [4, n] */
    if (!buf) return cce_fail(CCE_ERR_NOMEM, "bootstrap of %zu rows", n);
    double *va = buf, *vb = buf + n, *na = buf + 2 * n, *nb = buf + 3 * n;
    cce_status s = same_keys(a, b, "window");
    if (!s) s = same_keys(a, b, "item");
    if (!s) s = column_values(a, value, va);
    if (!s) s = column_values(b, value, vb);
    if (!s && count) s = column_values(a, count, na);
    if (!s && count) s = column_values(b, count, nb);
    for (size_t r = 0; !s && count && r < n; r++)
        if (na[r] != nb[r])
            s = cce_fail(CCE_ERR_ARG,
                         "row %zu: %s %g against %g: the runs were not evaluated on the same "
                         "windows or items",
                         r, count, na[r], nb[r]);
    if (!s) s = cce_bootstrap_paired_blocks(va, vb, count ? na : NULL, n, o, out);
    free(buf);
    return s;
}
