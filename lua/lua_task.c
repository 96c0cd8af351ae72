/* Multiple-choice tasks and the paired bootstrap in Lua (framework/task.h, bootstrap.h):
 *
 *   m:task{task = "cloze" | "items.jsonl", data = ds | "name", items = N, choices = N, seed = S,
 *          ctx = N [, table = "task_NAME"]}               -> result table
 *                                                             [, the per-item table NAME]
 *   cce._task_identity{task =, data =, items =, choices =, seed =}
 *                                                           -> {task =, recipe =, source =,
 *                                                               sha256 =, items =} (builds the
 *                                                               task without scoring it)
 *   cce.bootstrap_tables(a, b [, {value =, count =, resamples =, seed =, level =}])
 *                                                           -> interval table (two cce.table
 *                                                               objects, a - b)
 *   cce.bootstrap(a, b [, {counts = {...}, resamples = B, seed = S, level = 0.95}])
 *                                                           -> interval table
 *   cce.compare_runs(results, id_a, id_b [, {table = "eval_windows", value = "nll_sum",
 *                    count = "tokens", resamples = B, seed = S, level = 0.95}])
 *                                                           -> interval table
 *
 * m:task's result: acc, acc_stderr, acc_norm, acc_norm_stderr, chance, items, choices (nil when
 * items differ), truncated, tokens, seconds, ctx, protocol (the line), task, recipe, source,
 * sha256, and per item (1-based arrays) correct and correct_norm (0/1): the input of
 * cce.bootstrap(r_a.correct, r_b.correct) between two models on the same items.
 *
 * cce.bootstrap pairs a[k] with b[k] (arrays of numbers of equal length, at least 2): per-window
 * NLL sums with counts = tokens per window, per-window mean NLLs (equal windows) or per-item 0/1
 * outcomes, and returns {diff, ci_low, ci_high, se, significant, a, b, blocks, values,
 * resamples, seed, level} (a and b: the means). cce.compare_runs reads the two runs' recorded
 * tables (bootstrap.h: "eval_windows", "task_<name>") from a results file and does the same;
 * for a table named task_* the defaults are value = "correct" and no count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bootstrap.h"
#include "cce_lua.h"
#include "eval.h"
#include "results.h"
#include "results_table.h"
#include "task.h"

static void task_progress(void *user, long done, long total) {
    const cce_lua_options *o = user;
    if (o && o->progress) o->progress("task items", done, total);
}

/* A 1-based array of flags [n] set as field k of the table on the top. */
static void set_flags(lua_State *L, const char *k, const uint8_t *f, size_t n) {
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushinteger(L, f[i]);
        lua_rawseti(L, -2, (lua_Integer)(i + 1));
    }
    lua_setfield(L, -2, k);
}

static void push_task_result(lua_State *L, const cce_task *t, const cce_task_result *r) {
    char line[2048];
    cce_task_protocol_line(t, r, line, sizeof line);
    lua_createtable(L, 0, 24);
    cce_lua_set_number(L, "acc", r->acc);
    cce_lua_set_number(L, "acc_stderr", r->acc_stderr);
    cce_lua_set_number(L, "acc_norm", r->acc_norm);
    cce_lua_set_number(L, "acc_norm_stderr", r->acc_norm_stderr);
    cce_lua_set_number(L, "chance", r->chance);
    cce_lua_set_integer(L, "items", (int64_t)r->n_items);
    int common = t->items[0].n_choices;
    for (size_t i = 1; i < t->n_items; i++)
        if (t->items[i].n_choices != common) common = 0;
    if (common) cce_lua_set_integer(L, "choices", common);
    cce_lua_set_integer(L, "truncated", (int64_t)r->n_truncated);
    cce_lua_set_integer(L, "tokens", r->n_tokens);
    cce_lua_set_number(L, "seconds", r->seconds);
    cce_lua_set_integer(L, "ctx", r->ctx);
    cce_lua_set_string(L, "protocol", line);
    cce_lua_set_string(L, "task", t->name);
    cce_lua_set_string(L, "recipe", t->recipe);
    cce_lua_set_string(L, "source", t->source);
    cce_lua_set_string(L, "sha256", t->sha256);
    set_flags(L, "correct", r->correct, r->n_items);
    set_flags(L, "correct_norm", r->correct_norm, r->n_items);
}

#define FN_TASK      "m:task"
#define SCRATCH_META "cce.task_scratch"

/* What m:task holds while it runs, in a userdata made before any C work: if pushing the result
 * raises (out of memory), the garbage collector frees it. */
typedef struct task_scratch {
    cce_task *t;
    cce_task_result r;
} task_scratch;

static void scratch_clear(task_scratch *b) {
    cce_task_result_free(&b->r);
    cce_task_free(b->t);
    b->t = NULL;
}

static int scratch_gc(lua_State *L) {
    scratch_clear(luaL_checkudata(L, 1, SCRATCH_META));
    return 0;
}

/* What builds a task: read from m:task's or cce._task_identity's option table. */
typedef struct task_spec {
    const char *task, *data; /* borrowed from the option table */
    int cloze;
    int64_t items, choices, seed;
} task_spec;

/* Reads the task fields of the option table at idx (argument arg of fn); raises for bad ones. */
static void read_task_spec(lua_State *L, int idx, int arg, const char *fn, task_spec *sp) {
    const char *task = NULL, *data = NULL;
    if (!cce_lua_field_string(L, idx, arg, fn, "task", &task))
        cce_lua_raise(L, "%s: field 'task' is missing ('cloze' or a JSONL file)", fn);
    int cloze = !strcmp(task, "cloze");
    lua_getfield(L, idx, "data");
    if (!lua_isnil(L, -1)) {
        if (!cloze)
            cce_lua_raise(L,
                          "%s: field 'data' names the text of the cloze; a JSONL task holds its "
                          "own text",
                          fn);
        cce_lua_dataset *ds = cce_lua_test_object(L, -1, CCE_LUA_DATASET);
        if (ds)
            data = ds->name; /* the option table keeps the dataset alive */
        else if (!cce_lua_field_string(L, idx, arg, fn, "data", &data))
            cce_lua_raise(L, "%s: field 'data' must be a cce.dataset or a name", fn);
    }
    lua_pop(L, 1);
    int64_t items = 0, choices = 0, seed = 1;
    cce_lua_field_integer(L, idx, arg, fn, "items", 1, INT64_MAX, &items);
    if (cce_lua_field_integer(L, idx, arg, fn, "choices", 2, CCE_TASK_MAX_CHOICES, &choices) &&
        !cloze)
        cce_lua_raise(L, "%s: field 'choices' applies to the cloze only", fn);
    cce_lua_field_integer(L, idx, arg, fn, "seed", 0, INT64_MAX, &seed);
    *sp = (task_spec){.task = task,
                      .data = data,
                      .cloze = cloze,
                      .items = items,
                      .choices = choices,
                      .seed = seed};
}

/* Builds the task sp describes (C only: returns the status). The caller owns *out. */
static cce_status build_task(const task_spec *sp, cce_task **out) {
    *out = NULL;
    cce_status s;
    if (sp->cloze) {
        cce_cloze_options co = {.n_items = (size_t)sp->items,
                                .n_choices = (int)sp->choices,
                                .seed = (uint64_t)sp->seed};
        s = cce_cloze_build_dataset(sp->data ? sp->data : "tinystories_val", &co, out);
    } else {
        s = cce_task_read_jsonl(sp->task, out);
        if (!s && sp->items > 0) s = cce_task_keep_first(*out, (size_t)sp->items);
    }
    return s;
}

static int m_task(lua_State *L) {
    static const char *const fields[] = {"task", "data", "items", "choices",
                                         "seed", "ctx",  "table", NULL};
    cce_lua_model *mo = cce_lua_check_model(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    cce_lua_check_fields(L, 2, 1, FN_TASK, fields);
    task_spec sp;
    read_task_spec(L, 2, 1, FN_TASK, &sp);
    int64_t ctx = 0;
    cce_lua_field_integer(L, 2, 1, FN_TASK, "ctx", 2, cce_model_config(mo->model)->seq_len, &ctx);
    const char *table_name = NULL;
    cce_table **tab = NULL;
    if (cce_lua_field_string(L, 2, 1, FN_TASK, "table", &table_name)) {
        if (!cce_table_name_ok(table_name))
            return cce_lua_raise(L,
                                 "%s: field 'table' = '%s': a table name of letters, digits and "
                                 "'_' expected",
                                 FN_TASK, table_name);
        tab = cce_lua_push_table_slot(L, table_name);
    }
    int tab_idx = lua_gettop(L);

    task_scratch *box = lua_newuserdatauv(L, sizeof *box, 0);
    memset(box, 0, sizeof *box);
    luaL_setmetatable(L, SCRATCH_META);

    /* C only from here. */
    cce_task *t = NULL;
    cce_status s = build_task(&sp, &t);
    box->t = t;
    cce_task_options o = {.ctx = (int)ctx,
                          .progress = task_progress,
                          .progress_user = (void *)cce_lua_get_options(L)};
    if (!s) s = cce_task_score(mo->model, t, &o, &box->r);
    cce_lua_progress_end(L);
    if (!s && tab) s = cce_task_result_table(t, &box->r, table_name, tab);
    if (s) {
        scratch_clear(box);
        return cce_lua_error(L, s, FN_TASK);
    }
    push_task_result(L, t, &box->r);
    scratch_clear(box);
    if (!tab) return 1;
    lua_pushvalue(L, tab_idx);
    return 2;
}

#define FN_IDENT "cce._task_identity"

/* cce._task_identity{task=, data=, items=, choices=, seed=} -> {task, recipe, source, sha256,
 * items}: what a run key holds of a task. */
static int l_task_identity(lua_State *L) {
    static const char *const fields[] = {"task", "data", "items", "choices", "seed", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    cce_lua_check_fields(L, 1, 1, FN_IDENT, fields);
    task_spec sp;
    read_task_spec(L, 1, 1, FN_IDENT, &sp);
    task_scratch *box = lua_newuserdatauv(L, sizeof *box, 0);
    memset(box, 0, sizeof *box);
    luaL_setmetatable(L, SCRATCH_META);
    /* C only from here. */
    cce_status s = build_task(&sp, &box->t);
    if (s) {
        scratch_clear(box);
        return cce_lua_error(L, s, FN_IDENT);
    }
    lua_createtable(L, 0, 5);
    cce_lua_set_string(L, "task", box->t->name);
    cce_lua_set_string(L, "recipe", box->t->recipe);
    cce_lua_set_string(L, "source", box->t->source);
    cce_lua_set_string(L, "sha256", box->t->sha256);
    cce_lua_set_integer(L, "items", (int64_t)box->t->n_items);
    scratch_clear(box);
    return 1;
}

static void push_bootstrap(lua_State *L, const cce_bootstrap_result *b) {
    lua_createtable(L, 0, 12);
    cce_lua_set_number(L, "diff", b->diff);
    cce_lua_set_number(L, "ci_low", b->ci_low);
    cce_lua_set_number(L, "ci_high", b->ci_high);
    cce_lua_set_number(L, "se", b->se);
    lua_pushboolean(L, b->significant);
    lua_setfield(L, -2, "significant");
    cce_lua_set_number(L, "a", b->mean_a);
    cce_lua_set_number(L, "b", b->mean_b);
    cce_lua_set_integer(L, "blocks", (int64_t)b->n_blocks);
    cce_lua_set_number(L, "values", b->n_values);
    cce_lua_set_integer(L, "resamples", b->resamples);
    cce_lua_set_integer(L, "seed", (int64_t)b->seed);
    cce_lua_set_number(L, "level", b->level);
}

/* Reads the bootstrap options of the table at idx (may be absent) into o. */
static void read_boot_options(lua_State *L, int idx, int arg, const char *fn,
                              cce_bootstrap_options *o) {
    int64_t resamples = 0, seed = 1;
    double level = 0;
    cce_lua_field_integer(L, idx, arg, fn, "resamples", 1, CCE_BOOTSTRAP_MAX_RESAMPLES, &resamples);
    cce_lua_field_integer(L, idx, arg, fn, "seed", 0, INT64_MAX, &seed);
    cce_lua_field_number(L, idx, arg, fn, "level", 1e-9, 1 - 1e-9, &level);
    *o = (cce_bootstrap_options){
        .resamples = (int)resamples, .seed = (uint64_t)seed, .level = level};
}

/* The length of the array of numbers at idx; raises naming `what` for anything else. */
static size_t check_numbers(lua_State *L, int idx, const char *fn, const char *what) {
    luaL_checktype(L, idx, LUA_TTABLE);
    size_t n = (size_t)lua_rawlen(L, idx);
    for (size_t i = 1; i <= n; i++) {
        int isnum = lua_rawgeti(L, idx, (lua_Integer)i) == LUA_TNUMBER;
        lua_pop(L, 1);
        if (!isnum) return (size_t)cce_lua_raise(L, "%s: %s[%zu] is not a number", fn, what, i);
    }
    return n;
}

static void read_numbers(lua_State *L, int idx, size_t n, double *x) {
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, idx, (lua_Integer)(i + 1));
        x[i] = (double)lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
}

#define FN_BOOT "cce.bootstrap"

static int l_bootstrap(lua_State *L) {
    static const char *const fields[] = {"counts", "resamples", "seed", "level", NULL};
    size_t na = check_numbers(L, 1, FN_BOOT, "a"), nb = check_numbers(L, 2, FN_BOOT, "b");
    if (na != nb)
        return cce_lua_raise(L, "%s: a has %zu values and b %zu: they must be paired", FN_BOOT, na,
                             nb);
    cce_bootstrap_options o = {.seed = 1};
    size_t nc = 0;
    int has_counts = 0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        cce_lua_check_fields(L, 3, 3, FN_BOOT, fields);
        read_boot_options(L, 3, 3, FN_BOOT, &o);
        lua_getfield(L, 3, "counts");
        if (!lua_isnil(L, -1)) {
            nc = check_numbers(L, lua_gettop(L), FN_BOOT, "counts");
            has_counts = 1;
            if (nc != na)
                return cce_lua_raise(L, "%s: counts has %zu values for %zu blocks", FN_BOOT, nc,
                                     na);
        }
    } else
        lua_pushnil(L);
    int counts_idx = lua_gettop(L);

    /* C only from here. */
    double *buf = malloc((3 * na + 1) * sizeof *buf); /* a, b, counts: [3, na] */
    cce_bootstrap_result r;
    cce_status s = buf ? CCE_OK : cce_fail(CCE_ERR_NOMEM, "%zu values", na);
    if (!s) {
        read_numbers(L, 1, na, buf);
        read_numbers(L, 2, na, buf + na);
        if (has_counts) read_numbers(L, counts_idx, na, buf + 2 * na);
        s = cce_bootstrap_paired_blocks(buf, buf + na, has_counts ? buf + 2 * na : NULL, na, &o,
                                        &r);
    }
    free(buf);
    if (s) return cce_lua_error(L, s, FN_BOOT);
    push_bootstrap(L, &r);
    return 1;
}

#define FN_CMP "cce.compare_runs"

static int l_compare_runs(lua_State *L) {
    static const char *const fields[] = {"table", "value", "count", "resamples",
                                         "seed",  "level", NULL};
    const char *path = luaL_checkstring(L, 1);
    const char *id_a = luaL_checkstring(L, 2), *id_b = luaL_checkstring(L, 3);
    const char *table = CCE_BOOTSTRAP_WINDOW_TABLE, *value = NULL, *count = NULL;
    cce_bootstrap_options o = {.seed = 1};
    int count_given = 0;
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        cce_lua_check_fields(L, 4, 4, FN_CMP, fields);
        cce_lua_field_string(L, 4, 4, FN_CMP, "table", &table);
        cce_lua_field_string(L, 4, 4, FN_CMP, "value", &value);
        count_given = cce_lua_field_string(L, 4, 4, FN_CMP, "count", &count);
        read_boot_options(L, 4, 4, FN_CMP, &o);
    }
    int is_task = !strncmp(table, "task_", 5);
    if (!value) value = is_task ? "correct" : "nll_sum";
    if (!count_given) count = is_task ? NULL : "tokens";

    /* C only from here. */
    cce_table *ta = NULL, *tb = NULL;
    cce_bootstrap_result r;
    cce_status s = cce_results_read_table(path, id_a, table, &ta);
    if (!s) s = cce_results_read_table(path, id_b, table, &tb);
    if (!s) s = cce_bootstrap_tables(ta, tb, value, count, &o, &r);
    cce_table_free(ta);
    cce_table_free(tb);
    if (s) return cce_lua_error(L, s, "%s: %s against %s", FN_CMP, id_a, id_b);
    push_bootstrap(L, &r);
    return 1;
}

#define FN_BT "cce.bootstrap_tables"

/* cce.bootstrap_tables(a, b [, opts]) -> interval of a - b over the rows of two tables. */
static int l_bootstrap_tables(lua_State *L) {
    static const char *const fields[] = {"value", "count", "resamples", "seed", "level", NULL};
    const cce_table *ta = cce_lua_check_table(L, 1), *tb = cce_lua_check_table(L, 2);
    int is_task = !strncmp(ta->name, "task_", 5);
    const char *value = NULL, *count = NULL;
    cce_bootstrap_options o = {.seed = 1};
    int count_given = 0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        cce_lua_check_fields(L, 3, 3, FN_BT, fields);
        cce_lua_field_string(L, 3, 3, FN_BT, "value", &value);
        count_given = cce_lua_field_string(L, 3, 3, FN_BT, "count", &count);
        read_boot_options(L, 3, 3, FN_BT, &o);
    }
    if (!value) value = is_task ? "correct" : "nll_sum";
    if (!count_given) count = is_task ? NULL : "tokens";
    cce_bootstrap_result r;
    cce_status s = cce_bootstrap_tables(ta, tb, value, count, &o, &r);
    if (s) return cce_lua_error(L, s, FN_BT);
    push_bootstrap(L, &r);
    return 1;
}

void cce_lua_open_task(lua_State *L) {
    luaL_newmetatable(L, SCRATCH_META);
    lua_pushcfunction(L, scratch_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    static const luaL_Reg methods[] = {{"task", m_task}, {NULL, NULL}};
    cce_lua_add_methods(L, CCE_LUA_MODEL, methods);
    static const luaL_Reg fns[] = {{"bootstrap", l_bootstrap},
                                   {"compare_runs", l_compare_runs},
                                   {"bootstrap_tables", l_bootstrap_tables},
                                   {"_task_identity", l_task_identity},
                                   {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
