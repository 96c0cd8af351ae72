/* Weight and activation statistics in Lua (framework/wstats.h, astats.h, results_table.h):
 *
 *   cce.weight_stats(base, variant [, {bins=, range_std=}])         -> table "weights"
 *   cce.activation_reference(dense, data, domain
 *                            [, {ctx=, max_tokens=, bins=, range_std=, outlier_std=,
 *                                kl_alpha=}])                       -> reference
 *   cce.activation_table([bins])                                   -> empty table "activations"
 *   cce.record_activations{model=, dense=, reference=, data=, table= [, windows=true]}
 *                                                                  -> metrics (as m:eval's)
 *                                                                     [, table "eval_windows"]
 *   cce.read_table(path, run_id, name)                             -> table
 *
 * data is a cce.tokens (the test part of a split, or a whole text) or a cce.dataset (tokenized
 * with the dense model's tokenizer); cce.record_activations must get the same data as the
 * reference. Tables ("cce.table") have t:name(), #t (rows), t:columns() ({name=, type=, width=,
 * meaning=} per column; type "float64", "int64", "string" or "float64[]"), t:row(i) (1-based:
 * {column = value}, vectors as arrays, NaN as a NaN number) and t:append(other); references
 * ("cce.activation_ref") have r:domain() and r:windows(). cce_lua_check_table gives the C table
 * of a cce.table, for recording it in a run (cce_run_record.tables); cce_lua_push_table_slot makes
 * an empty cce.table for a C table made afterwards. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "astats.h"
#include "bootstrap.h"
#include "cce_lua.h"
#include "eval.h"
#include "results.h"
#include "results_table.h"
#include "wstats.h"

#define TABLE_META "cce.table"
#define AREF_META  "cce.activation_ref"

typedef struct lua_table_obj {
    cce_lua_object obj; /* label "table 'weights'" */
    cce_table *t;       /* owned */
} lua_table_obj;

typedef struct lua_aref_obj {
    cce_lua_object obj;  /* label "activation reference 'tinystories_val'" */
    cce_astats_ref *ref; /* owned */
} lua_aref_obj;

static void table_release(cce_lua_object *o) {
    lua_table_obj *t = (lua_table_obj *)o;
    cce_table_free(t->t);
    t->t = NULL;
}

static void aref_release(cce_lua_object *o) {
    lua_aref_obj *r = (lua_aref_obj *)o;
    cce_astats_ref_free(r->ref);
    r->ref = NULL;
}

cce_table **cce_lua_push_table_slot(lua_State *L, const char *name) {
    lua_table_obj *obj =
        cce_lua_new_object(L, sizeof *obj, TABLE_META, table_release, 0, "table '%s'", name);
    return &obj->t;
}

cce_table *cce_lua_check_table(lua_State *L, int idx) {
    lua_table_obj *t = cce_lua_check_object(L, idx, TABLE_META);
    if (!t->t) cce_lua_raise(L, "%s is empty", t->obj.label);
    return t->t;
}

/* The model at idx (raises unless an open cce.model). */
static cce_model *check_model(lua_State *L, int idx, const char *fn, const char *what) {
    cce_lua_model *mo = cce_lua_test_object(L, idx, CCE_LUA_MODEL);
    if (!mo || !mo->model)
        cce_lua_raise(L, "bad argument to '%s' (%s: cce.model expected, got %s)", fn, what,
                      luaL_typename(L, idx));
    return mo->model;
}

/* The token stream of data at idx for model m: a cce.tokens (borrowed: *owned NULL) or a
 * cce.dataset tokenized with m's tokenizer (*owned malloc'd, the caller frees). Raises before
 * any allocation for a bad argument; returns the status of tokenizing. */
static cce_status data_stream(lua_State *L, int idx, cce_model *m, const char *fn,
                              const int32_t **stream, size_t *n, int32_t **owned, const char **name,
                              const char **sha256) {
    *owned = NULL;
    cce_lua_tokens *tk = cce_lua_test_object(L, idx, CCE_LUA_TOKENS);
    cce_lua_dataset *ds = tk ? NULL : cce_lua_test_object(L, idx, CCE_LUA_DATASET);
    if (!tk && !ds)
        cce_lua_raise(L, "bad argument to '%s' (data: cce.tokens or cce.dataset expected, got %s)",
                      fn, luaL_typename(L, idx));
    const cce_tokenizer *tok = cce_model_tokenizer(m);
    if (tk && !strcmp(tk->part, "calib"))
        cce_lua_raise(L, "%s: data is %s: use the test part of ds:split{...} or a whole text", fn,
                      tk->obj.label);
    if (tk && tok && cce_tokenizer_fingerprint(tok) != tk->tokenizer)
        cce_lua_raise(L, "%s: %s were tokenized with another tokenizer than the model's", fn,
                      tk->obj.label);
    if (ds && !tok)
        cce_lua_raise(L, "%s: the model has no tokenizer to tokenize %s", fn, ds->obj.label);
    if (tk) {
        *stream = tk->tokens;
        *n = tk->n_segments * tk->seg_len;
        *name = tk->dataset;
        *sha256 = tk->sha256;
        return CCE_OK;
    }
    *name = ds->name;
    *sha256 = ds->sha256;
    cce_status s = cce_lua_dataset_tokens(ds, tok, owned, n);
    *stream = *owned;
    return s;
}

/* ---- Weights --------------------------------------------------------------------------------- */

/* cce.weight_stats(base, variant [, {bins=, range_std=}]) -> table */
static int l_weight_stats(lua_State *L) {
    static const char *const FN = "cce.weight_stats";
    static const char *const fields[] = {"bins", "range_std", NULL};
    cce_model *base = check_model(L, 1, FN, "base");
    cce_model *variant = check_model(L, 2, FN, "variant");
    cce_wstats_options o = {0};
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        cce_lua_check_fields(L, 3, 3, FN, fields);
        int64_t bins = 0;
        if (cce_lua_field_integer(L, 3, 3, FN, "bins", 1, 4096, &bins)) o.bins = (int)bins;
        cce_lua_field_number(L, 3, 3, FN, "range_std", 0, 1e6, &o.range_std);
    }
    lua_table_obj *obj =
        cce_lua_new_object(L, sizeof *obj, TABLE_META, table_release, 0, "table 'weights'");
    cce_status s = cce_wstats_model(base, variant, &o, &obj->t);
    if (s) return cce_lua_error(L, s, FN);
    return 1;
}

/* ---- Activations ----------------------------------------------------------------------------- */

static void act_progress(void *user, long done, long total) {
    const cce_lua_options *o = user;
    if (o && o->progress) o->progress("activation windows", done, total);
}

/* cce.activation_reference(dense, data, domain [, opts]) -> reference */
static int l_activation_reference(lua_State *L) {
    static const char *const FN = "cce.activation_reference";
    static const char *const fields[] = {"ctx",         "max_tokens", "bins", "range_std",
                                         "outlier_std", "kl_alpha",   NULL};
    cce_model *dense = check_model(L, 1, FN, "dense");
    const char *domain = luaL_checkstring(L, 3);
    cce_astats_options o = {0};
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        cce_lua_check_fields(L, 4, 4, FN, fields);
        int64_t v = 0;
        if (cce_lua_field_integer(L, 4, 4, FN, "ctx", 2, cce_model_config(dense)->seq_len, &v))
            o.ctx = (int)v;
        cce_lua_field_integer(L, 4, 4, FN, "max_tokens", 0, INT64_MAX, &o.max_tokens);
        if (cce_lua_field_integer(L, 4, 4, FN, "bins", 1, 4096, &v)) o.bins = (int)v;
        cce_lua_field_number(L, 4, 4, FN, "range_std", 1e-9, 1e6, &o.range_std);
        cce_lua_field_number(L, 4, 4, FN, "outlier_std", 1e-9, 1e6, &o.outlier_std);
        cce_lua_field_number(L, 4, 4, FN, "kl_alpha", 1e-12, 1e6, &o.kl_alpha);
    }
    o.progress = act_progress;
    o.progress_user = (void *)cce_lua_get_options(L);
    lua_aref_obj *obj = cce_lua_new_object(L, sizeof *obj, AREF_META, aref_release, 0,
                                           "activation reference '%s'", domain);
    const int32_t *stream = NULL;
    int32_t *owned = NULL;
    size_t n = 0;
    const char *name = NULL, *sha256 = NULL;
    cce_status s = data_stream(L, 2, dense, FN, &stream, &n, &owned, &name, &sha256);
    if (!s) s = cce_astats_ref_new(dense, stream, n, domain, &o, &obj->ref);
    cce_lua_progress_end(L);
    free(owned);
    if (s) return cce_lua_error(L, s, FN);
    return 1;
}

/* cce.activation_table([bins]) -> an empty "activations" table */
static int l_activation_table(lua_State *L) {
    int64_t bins = luaL_optinteger(L, 1, 0);
    if (bins < 0 || bins > 4096)
        return cce_lua_raise(L,
                             "bad argument #1 to 'cce.activation_table' (bins = %lld: 1 to "
                             "4096, or 0 for the default)",
                             (long long)bins);
    lua_table_obj *obj =
        cce_lua_new_object(L, sizeof *obj, TABLE_META, table_release, 0, "table 'activations'");
    cce_status s = cce_astats_table_new((int)bins, &obj->t);
    if (s) return cce_lua_error(L, s, "cce.activation_table");
    return 1;
}

/* cce.record_activations{model=, dense=, reference=, data=, table= [, windows=true]}
 *   -> metrics [, the "eval_windows" table (bootstrap.h) when windows is true] */
static int l_record_activations(lua_State *L) {
    static const char *const FN = "cce.record_activations";
    static const char *const fields[] = {"model", "dense",   "reference", "data",
                                         "table", "windows", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    cce_lua_check_fields(L, 1, 1, FN, fields);
    int windows = 0;
    cce_lua_field_boolean(L, 1, 1, FN, "windows", &windows);
    lua_getfield(L, 1, "model");
    cce_model *m = check_model(L, -1, FN, "field 'model'");
    lua_getfield(L, 1, "dense");
    cce_model *dense = check_model(L, -1, FN, "field 'dense'");
    lua_getfield(L, 1, "reference");
    lua_aref_obj *ro = cce_lua_test_object(L, -1, AREF_META);
    if (!ro || !ro->ref)
        return cce_lua_raise(L, "bad argument #1 to '%s' (field 'reference': %s expected, got %s)",
                             FN, AREF_META, luaL_typename(L, -1));
    lua_getfield(L, 1, "table");
    lua_table_obj *to = cce_lua_test_object(L, -1, TABLE_META);
    if (!to || !to->t)
        return cce_lua_raise(L, "bad argument #1 to '%s' (field 'table': %s expected, got %s)", FN,
                             TABLE_META, luaL_typename(L, -1));
    lua_getfield(L, 1, "data");
    int data = lua_gettop(L);
    cce_table **win = windows ? cce_lua_push_table_slot(L, CCE_BOOTSTRAP_WINDOW_TABLE) : NULL;
    int win_idx = lua_gettop(L);
    /* C only from here (data_stream raises only before allocating). */
    const int32_t *stream = NULL;
    int32_t *owned = NULL;
    size_t n = 0;
    const char *name = NULL, *sha256 = NULL;
    cce_astats_options o = {.progress = act_progress,
                            .progress_user = (void *)cce_lua_get_options(L),
                            .keep_token_nll = windows};
    cce_eval_result r = {0};
    cce_status s = data_stream(L, data, dense, FN, &stream, &n, &owned, &name, &sha256);
    if (!s) s = cce_astats_eval(m, dense, ro->ref, stream, n, &o, to->t, &r);
    cce_lua_progress_end(L);
    free(owned);
    if (!s && win) s = cce_bootstrap_window_table(&r, win);
    cce_eval_result_free(&r);
    if (s) return cce_lua_error(L, s, FN);
    char protocol[1024];
    cce_eval_protocol_line(&r, name, sha256, protocol, sizeof protocol);
    cce_lua_push_eval_result(L, &r, protocol);
    if (!win) return 1;
    lua_pushvalue(L, win_idx);
    return 2;
}

static int r_domain(lua_State *L) {
    lua_aref_obj *r = cce_lua_check_object(L, 1, AREF_META);
    lua_pushstring(L, cce_astats_ref_domain(r->ref));
    return 1;
}

static int r_windows(lua_State *L) {
    lua_aref_obj *r = cce_lua_check_object(L, 1, AREF_META);
    lua_pushinteger(L, (lua_Integer)cce_astats_ref_windows(r->ref));
    return 1;
}

/* ---- Tables ---------------------------------------------------------------------------------- */

/* cce.read_table(path, run_id, name) -> table */
static int l_read_table(lua_State *L) {
    const char *path = luaL_checkstring(L, 1), *id = luaL_checkstring(L, 2);
    const char *name = luaL_checkstring(L, 3);
    lua_table_obj *obj =
        cce_lua_new_object(L, sizeof *obj, TABLE_META, table_release, 0, "table '%s'", name);
    cce_status s = cce_results_read_table(path, id, name, &obj->t);
    if (s) return cce_lua_error(L, s, "cce.read_table");
    return 1;
}

static int t_name(lua_State *L) {
    lua_pushstring(L, cce_lua_check_table(L, 1)->name);
    return 1;
}

static int t_len(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)cce_lua_check_table(L, 1)->n_rows);
    return 1;
}

static int t_columns(lua_State *L) {
    const cce_table *t = cce_lua_check_table(L, 1);
    static const char *const types[] = {"float64", "int64", "string", "float64[]"};
    lua_createtable(L, (int)t->n_cols, 0);
    for (size_t c = 0; c < t->n_cols; c++) {
        lua_createtable(L, 0, 4);
        lua_pushstring(L, t->cols[c].name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, types[t->cols[c].type]);
        lua_setfield(L, -2, "type");
        lua_pushinteger(L, (lua_Integer)t->cols[c].width);
        lua_setfield(L, -2, "width");
        lua_pushstring(L, t->cols[c].meaning);
        lua_setfield(L, -2, "meaning");
        lua_rawseti(L, -2, (lua_Integer)c + 1);
    }
    return 1;
}

static int t_row(lua_State *L) {
    const cce_table *t = cce_lua_check_table(L, 1);
    lua_Integer i = luaL_checkinteger(L, 2);
    if (i < 1 || (size_t)i > t->n_rows)
        return cce_lua_raise(L, "table '%s': row %lld is outside 1..%zu", t->name, (long long)i,
                             t->n_rows);
    size_t r = (size_t)i - 1;
    lua_createtable(L, 0, (int)t->n_cols);
    for (size_t c = 0; c < t->n_cols; c++) {
        const cce_table_col *col = &t->cols[c];
        switch (col->type) {
        case CCE_COL_F64:
            lua_pushnumber(L, col->f64[r]);
            break;
        case CCE_COL_I64:
            lua_pushinteger(L, (lua_Integer)col->i64[r]);
            break;
        case CCE_COL_STR:
            lua_pushstring(L, col->str[r]);
            break;
        case CCE_COL_F64VEC:
            lua_createtable(L, (int)col->width, 0);
            for (size_t k = 0; k < col->width; k++) {
                lua_pushnumber(L, col->f64[r * col->width + k]);
                lua_rawseti(L, -2, (lua_Integer)k + 1);
            }
            break;
        }
        lua_setfield(L, -2, col->name);
    }
    return 1;
}

static int t_append(lua_State *L) {
    cce_table *t = cce_lua_check_table(L, 1), *u = cce_lua_check_table(L, 2);
    cce_status s = cce_table_append(t, u);
    if (s) return cce_lua_error(L, s, "t:append");
    lua_settop(L, 1);
    return 1;
}

void cce_lua_open_stats(lua_State *L) {
    static const luaL_Reg t_methods[] = {{"name", t_name},
                                         {"columns", t_columns},
                                         {"row", t_row},
                                         {"append", t_append},
                                         {NULL, NULL}};
    static const luaL_Reg t_meta[] = {{"__len", t_len}, {NULL, NULL}};
    static const luaL_Reg r_methods[] = {
        {"domain", r_domain}, {"windows", r_windows}, {NULL, NULL}};
    cce_lua_new_class(L, TABLE_META, t_methods, t_meta);
    cce_lua_new_class(L, AREF_META, r_methods, NULL);
    static const luaL_Reg fns[] = {{"weight_stats", l_weight_stats},
                                   {"activation_reference", l_activation_reference},
                                   {"activation_table", l_activation_table},
                                   {"record_activations", l_record_activations},
                                   {"read_table", l_read_table},
                                   {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
