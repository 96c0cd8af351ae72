/* Reporting a multiple-choice task result: the protocol line and the JSON form. */
#include <math.h>
#include <stdio.h>

#include "results_table.h"
#include "task.h"

/* The common number of choices, or 0 when items differ. */
static int common_choices(const cce_task *t) {
    if (t->n_items == 0) return 0;
    for (size_t i = 1; i < t->n_items; i++)
        if (t->items[i].n_choices != t->items[0].n_choices) return 0;
    return t->items[0].n_choices;
}

int cce_task_protocol_line(const cce_task *t, const cce_task_result *r, char *buf, size_t size) {
    char choices[16];
    int c = common_choices(t);
    if (c)
        snprintf(choices, sizeof choices, "%d", c);
    else
        snprintf(choices, sizeof choices, "mixed");
    return snprintf(buf, size,
                    "protocol: task=%s items=%zu choices=%s ctx=%d window=BOS+context+choice "
                    "(context cut from the left) score=sum log p(choice tokens) acc_norm=per byte "
                    "ties=lowest index recipe=%s data=%s sha256=%s",
                    t->name, r->n_items, choices, r->ctx, t->recipe[0] ? t->recipe : "-",
                    t->source[0] ? t->source : "-", t->sha256[0] ? t->sha256 : "-");
}

static json_t *real_or_null(double x) {
    return isfinite(x) ? json_real(x) : json_null();
}

/* Sets key to value, taking the reference; 0 on failure. */
static int put(json_t *o, const char *key, json_t *value) {
    return value && json_object_set_new(o, key, value) == 0;
}

json_t *cce_task_result_json(const cce_task *t, const cce_task_result *r) {
    char line[2048];
    cce_task_protocol_line(t, r, line, sizeof line);
    json_t *o = json_object(), *task = json_object(), *proto = json_object();
    int c = common_choices(t);
    int ok =
        o && task && proto && put(task, "name", json_string(t->name)) &&
        put(task, "source", json_string(t->source)) &&
        put(task, "sha256", t->sha256[0] ? json_string(t->sha256) : json_null()) &&
        put(task, "recipe", json_string(t->recipe)) &&
        put(proto, "window", json_string("BOS + context + choice, context cut from the left")) &&
        put(proto, "ctx", json_integer(r->ctx)) &&
        put(proto, "score", json_string("sum of log p(choice tokens | context)")) &&
        put(proto, "acc_norm", json_string("log-likelihood per byte of the choice")) &&
        put(proto, "ties", json_string("lowest index")) &&
        put(proto, "stderr", json_string("sqrt(p (1 - p) / (n - 1))")) &&
        put(proto, "line", json_string(line));
    if (ok) {
        ok = put(o, "task", task); /* json_object_set_new takes the reference even on failure */
        task = NULL;
        ok = put(o, "protocol", proto) && ok;
        proto = NULL;
    }
    ok = ok && put(o, "items", json_integer((json_int_t)r->n_items)) &&
         put(o, "choices", c ? json_integer(c) : json_null()) &&
         put(o, "ctx", json_integer(r->ctx)) && put(o, "acc", real_or_null(r->acc)) &&
         put(o, "acc_stderr", real_or_null(r->acc_stderr)) &&
         put(o, "acc_norm", real_or_null(r->acc_norm)) &&
         put(o, "acc_norm_stderr", real_or_null(r->acc_norm_stderr)) &&
         put(o, "chance", real_or_null(r->chance)) &&
         put(o, "truncated", json_integer((json_int_t)r->n_truncated)) &&
         put(o, "tokens", json_integer(r->n_tokens)) && put(o, "seconds", json_real(r->seconds));
    json_decref(task);
    json_decref(proto);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

cce_status cce_task_result_table(const cce_task *t, const cce_task_result *r, const char *name,
                                 cce_table **out) {
    if (!t || !r || !out) return cce_fail(CCE_ERR_ARG, "cce_task_result_table: NULL argument");
    *out = NULL;
    if (!r->pred || !r->first || r->n_items != t->n_items)
        return cce_fail(CCE_ERR_ARG, "cce_task_result_table: the result is not of this task");
    int width = 1;
    for (size_t i = 0; i < t->n_items; i++)
        if (t->items[i].n_choices > width) width = t->items[i].n_choices;
    static const struct {
        const char *name, *meaning;
    } ints[] = {
        {"item", "item index in the task"},
        {"n_choices", "choices of the item"},
        {"answer", "index of the right choice"},
        {"pred", "choice with the largest summed log-likelihood (ties: lowest index)"},
        {"pred_norm", "choice with the largest log-likelihood per byte"},
        {"correct", "1 when pred is the answer"},
        {"correct_norm", "1 when pred_norm is the answer"},
    };
    enum { N_INTS = sizeof ints / sizeof ints[0] };
    cce_table *tab;
    cce_status s = cce_table_new(name ? name : "", &tab);
    if (s) return s;
    for (int c = 0; !s && c < N_INTS; c++)
        s = cce_table_add_column(tab, ints[c].name, CCE_COL_I64, 1, ints[c].meaning);
    if (!s)
        s = cce_table_add_column(tab, "loglik", CCE_COL_F64VEC, (size_t)width,
                                 "summed log-likelihood of each choice (NaN past n_choices)");
    double *ll = malloc((size_t)width * sizeof *ll); /* [width] */
    if (!s && !ll) s = cce_fail(CCE_ERR_NOMEM, "task table");
    for (size_t i = 0; !s && i < t->n_items; i++) {
        const cce_task_item *it = &t->items[i];
        int64_t v[N_INTS] = {(int64_t)i,      it->n_choices, it->answer,        r->pred[i],
                             r->pred_norm[i], r->correct[i], r->correct_norm[i]};
        size_t row;
        s = cce_table_add_row(tab, &row);
        for (int c = 0; !s && c < N_INTS; c++) s = cce_table_set_i64(tab, row, c, v[c]);
        for (int c = 0; c < width; c++)
            ll[c] = c < it->n_choices ? r->loglik[r->first[i] + (size_t)c] : NAN;
        if (!s) s = cce_table_set_vec(tab, row, N_INTS, ll);
    }
    free(ll);
    if (s) {
        cce_table_free(tab);
        return s;
    }
    *out = tab;
    return CCE_OK;
}
