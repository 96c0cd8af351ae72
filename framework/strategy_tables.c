/* Extra per-run tables of strategies (strategy.h, `tables` of the descriptor): the table list,
 * the checked call of one instance's callback and the collection over the steps of a run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "results_table.h"
#include "strategy.h"

void cce_table_list_init(cce_table_list *l) {
    memset(l, 0, sizeof *l);
}

static int list_has(const cce_table_list *l, const char *name) {
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->tables[i]->name, name)) return 1;
    return 0;
}

cce_status cce_table_list_add(cce_table_list *l, cce_table *t) {
    if (!t) return cce_fail(CCE_ERR_ARG, "table list: no table given");
    if (list_has(l, t->name)) {
        cce_status s = cce_fail(CCE_ERR_ARG, "table list: two tables named '%s'", t->name);
        cce_table_free(t);
        return s;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 4;
        cce_table **p = realloc(l->tables, cap * sizeof *p);
        if (!p) {
            cce_table_free(t);
            return cce_fail(CCE_ERR_NOMEM, "table list: %zu tables", cap);
        }
        l->tables = p;
        l->cap = cap;
    }
    l->tables[l->n++] = t;
    return CCE_OK;
}

void cce_table_list_clear(cce_table_list *l) {
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) cce_table_free(l->tables[i]);
    free(l->tables);
    memset(l, 0, sizeof *l);
}

/* Drops the tables from index n on (the list keeps its first n). */
static void list_truncate(cce_table_list *l, size_t n) {
    while (l->n > n) cce_table_free(l->tables[--l->n]);
}

/* 1 if name is the strategy's name or starts with it and '_'. */
static int prefixed(const char *name, const char *strategy) {
    size_t k = strlen(strategy);
    return !strncmp(name, strategy, k) && (name[k] == '\0' || name[k] == '_');
}

cce_status cce_strategy_instance_tables(cce_strategy_instance *inst, cce_table_list *out) {
    const cce_strategy *s = cce_strategy_instance_strategy(inst);
    if (!s->tables) return CCE_OK;
    cce_table_list got = {0};
    cce_status st = s->tables(cce_strategy_instance_priv(inst), &got);
    if (st) {
        cce_error_prefix("%s: extra tables: ", s->name);
        cce_table_list_clear(&got);
        return st;
    }
    for (size_t i = 0; i < got.n && !st; i++) {
        const cce_table *t = got.tables[i];
        if (!t || !cce_table_name_ok(t->name) || !prefixed(t->name, s->name) ||
            !strcmp(t->name, "metrics") || !strcmp(t->name, "layers"))
            st = cce_fail(CCE_ERR_FORMAT,
                          "%s: extra table %zu is named '%s': a table name is [A-Za-z0-9_]+, "
                          "starts with the strategy's name and is not 'metrics' or 'layers'",
                          s->name, i + 1, t ? t->name : "(none)");
        else if (list_has(out, t->name))
            st = cce_fail(CCE_ERR_ARG, "%s: extra table '%s' is already in the run's tables",
                          s->name, t->name);
    }
    size_t n0 = out->n;
    for (size_t i = 0; i < got.n && !st; i++) {
        st = cce_table_list_add(out, got.tables[i]);
        got.tables[i] = NULL; /* out owns it now, or add freed it */
    }
    if (st) list_truncate(out, n0);
    for (size_t i = 0; i < got.n; i++) cce_table_free(got.tables[i]);
    free(got.tables);
    return st;
}

cce_status cce_strategy_tables_collect(cce_strategy_instance *const *steps, size_t n,
                                       cce_table_list *out) {
    size_t n0 = out->n;
    cce_status st = CCE_OK;
    for (size_t k = 0; k < n && !st; k++) {
        cce_table_list mine = {0};
        st = cce_strategy_instance_tables(steps[k], &mine);
        for (size_t i = 0; i < mine.n && !st; i++) {
            cce_table *t = mine.tables[i];
            if (list_has(out, t->name)) {
                char name[CCE_TABLE_NAME_MAX + 32];
                snprintf(name, sizeof name, "%s_s%zu", t->name, k + 1);
                if (!cce_table_name_ok(name) || list_has(out, name)) {
                    st = cce_fail(CCE_ERR_ARG,
                                  "%s (step %zu): extra table '%s' repeats an earlier step's and "
                                  "cannot be renamed",
                                  cce_strategy_instance_strategy(steps[k])->name, k + 1, t->name);
                    break;
                }
                memcpy(t->name, name, strlen(name) + 1); /* fits: cce_table_name_ok */
            }
            st = cce_table_list_add(out, t);
            mine.tables[i] = NULL;
        }
        for (size_t i = 0; i < mine.n; i++) cce_table_free(mine.tables[i]);
        free(mine.tables);
    }
    if (st) list_truncate(out, n0);
    return st;
}
