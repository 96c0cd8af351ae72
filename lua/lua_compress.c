/* m:compress{...} and v:compression() (cce_lua.h): a Lua option table turned into strategy
 * instances (parameters validated by the framework's schema, cce_params_from_kv), plan rules (the
 * rule texts of cce compress --rule, compress.h) and calibration data, then one cce_compress call.
 *
 * The table (lua/README.md, "m:compress"):
 *   strategy = NAME, plus the strategy's parameters as fields     -- one step
 *   steps = {{strategy = NAME, <params>, layers =, skip =}, ...}  -- a sequence of steps
 *   layers = {[L] = v | f, ["glob"] = v | f} or f(layer, tensor)  -- per-layer/tensor targets
 *   skip = "glob" | {"glob", ...}, unskip = ..., rules = {"text", ...}
 *   calib = tokens (the calib part of ds:split), ctx =, use_cache =, output_error =
 * A field that names a parameter of the strategy and is not one of these is a parameter; `layers`
 * with a number value is the parameter of a strategy that has one (shortgpt), a table or function
 * is the plan.
 *
 * Work is done in two phases so that no Lua error unwinds through C resources: phase 1 reads the
 * table (calling the script's layer functions) into Lua-owned memory, phase 2 is pure C and frees
 * everything before raising.
 *
 * The steps' extra tables (strategy.h, `tables`: "cce_layers", ...) are collected once the
 * compression is done and kept as cce.table objects with the variant (a weak-keyed registry
 * table variant -> array), for v:compression().tables and exp:run, which records them. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cce_lua.h"
#include "results_table.h"
#include "strategy.h"

#define FN        "m:compress"
#define MAX_STEPS 32

#define TABLES_GUARD_META "cce.strategy_tables_guard"
#define TABLES_REGISTRY   "cce.strategy_tables" /* weak-keyed: variant -> array of cce.table */

/* Fields that are not strategy parameters. */
static const char *const PLAN_FIELDS[] = {"layers", "skip", "unskip", "rules", NULL};
static const char *const RUN_FIELDS[] = {"strategy",  "steps",        "calib", "ctx",
                                         "use_cache", "output_error", NULL};

static int in_list(const char *key, const char *const *list) {
    for (size_t i = 0; list[i]; i++)
        if (!strcmp(key, list[i])) return 1;
    return 0;
}

/* 1 if field key (its value on the stack top) of a step of strategy s is a plan field rather than
 * a parameter. */
static int is_plan_field(lua_State *L, const char *key, const cce_strategy *s) {
    if (!in_list(key, PLAN_FIELDS)) return 0;
    int scalar = lua_type(L, -1) == LUA_TNUMBER || lua_type(L, -1) == LUA_TSTRING;
    return !(scalar && s && cce_strategy_param(s, key));
}

/* ---- Phase 1: rules -------------------------------------------------------------------------- */

/* A number as rule text that parses back to the same double: integers exactly, floats with the
 * fewest significant digits (up to 17) that round-trip. */
static void format_value(lua_State *L, int idx, char *buf, size_t cap) {
    if (lua_isinteger(L, idx)) {
        snprintf(buf, cap, "%lld", (long long)lua_tointeger(L, idx));
        return;
    }
    double v = (double)lua_tonumber(L, idx);
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, cap, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* Appends "<prefix><key>=<value on the stack top>" to the rules table. */
static void add_value_rule(lua_State *L, int rules, const char *prefix, const char *key) {
    char v[64];
    format_value(L, -1, v, sizeof v);
    lua_pushfstring(L, "%s%s=%s", prefix, key, v);
    lua_rawseti(L, rules, (lua_Integer)lua_rawlen(L, rules) + 1);
}

/* Calls the function at fidx with (layer, tensor) and adds a rule for the tensor when it
 * returns a number; nil adds none. `what` names the entry in messages. */
static void call_layer_function(lua_State *L, int fidx, int rules, const char *prefix, int layer,
                                const char *tensor, const char *what) {
    lua_pushvalue(L, fidx);
    lua_pushinteger(L, layer);
    lua_pushstring(L, tensor);
    lua_call(L, 2, 1);
    if (lua_type(L, -1) == LUA_TNUMBER)
        add_value_rule(L, rules, prefix, tensor);
    else if (!lua_isnil(L, -1))
        cce_lua_raise(L, "%s: %s returned a %s for '%s' (a number or nil expected)", FN, what,
                      luaL_typename(L, -1), tensor);
    lua_pop(L, 1);
}

size_t cce_lua_matching_tensors(lua_State *L, cce_model *m, int layer, const char *key_text,
                                size_t *idx, const char *fn) {
    size_t n = cce_model_tensor_count(m), count = 0;
    cce_plan *plan = NULL;
    cce_status s = cce_plan_new(CCE_PLAN_RATIO, 0.0, &plan);
    if (!s) {
        cce_plan_clear_skips(plan);
        s = key_text ? cce_plan_override(plan, key_text, 0.0)
                     : cce_plan_override_layer(plan, layer, 0.0);
    }
    for (size_t i = 0; !s && i < n; i++) {
        int ndim;
        int64_t shape[4];
        const char *name = cce_model_tensor_name_at(m, i);
        cce_model_tensor_shape_at(m, i, &ndim, shape);
        int l = cce_plan_layer_of(name);
        if (ndim != 2 || l < 0) continue;
        cce_plan_row row;
        if ((s = cce_plan_resolve(plan, l, name, &row))) break;
        if (row.source != CCE_PLAN_UNIFORM) idx[count++] = i;
    }
    cce_plan_free(plan);
    if (s) cce_lua_error(L, s, "%s: layers", fn);
    return count;
}

static int cmp_layer_key(const void *pa, const void *pb) {
    const cce_lua_layer_key *a = pa, *b = pb;
    if (a->kind != b->kind) return a->kind - b->kind;
    if (a->kind == 0) return a->layer < b->layer ? -1 : a->layer > b->layer;
    if (a->literal != b->literal) return a->literal < b->literal ? -1 : 1;
    return strcmp(a->text, b->text);
}

cce_lua_layer_key *cce_lua_layer_keys(lua_State *L, int tidx, cce_lua_model *mo, const char *fn,
                                      size_t *n_out) {
    int n_layers = cce_model_config(mo->model)->n_layers;
    /* The keys, kept in a table so their strings stay alive while the script's functions run. */
    lua_newtable(L);
    int keys = lua_gettop(L);
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, tidx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) && lua_type(L, -1) != LUA_TSTRING)
            cce_lua_raise(L,
                          "%s: layers: a key of type %s (layer indices or tensor name "
                          "patterns expected)",
                          fn, luaL_typename(L, -1));
        lua_pushvalue(L, -1);
        lua_rawseti(L, keys, (lua_Integer)++n);
    }
    cce_lua_layer_key *order = lua_newuserdatauv(L, (n ? n : 1) * sizeof *order, 1);
    lua_pushvalue(L, keys);
    lua_setiuservalue(L, -2, 1);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, keys, (lua_Integer)i + 1);
        cce_lua_layer_key *k = &order[i];
        memset(k, 0, sizeof *k);
        k->slot = (int)i + 1;
        if (lua_isinteger(L, -1)) {
            k->layer = lua_tointeger(L, -1);
            if (k->layer < 0 || k->layer >= n_layers)
                cce_lua_raise(L, "%s: layers[%lld]: %s has layers 0..%d", fn, (long long)k->layer,
                              mo->obj.label, n_layers - 1);
        } else {
            k->text = lua_tostring(L, -1); /* the keys table holds it */
            k->kind = strpbrk(k->text, "*?[") ? 2 : 1;
            for (const char *c = k->text; *c; c++) k->literal += !strchr("*?[]", *c);
        }
        lua_pop(L, 1);
    }
    lua_remove(L, keys);
    qsort(order, n, sizeof *order, cmp_layer_key);
    *n_out = n;
    return order;
}

void cce_lua_push_layer_key(lua_State *L, int order_idx, const cce_lua_layer_key *k) {
    lua_getiuservalue(L, order_idx, 1);
    lua_rawgeti(L, -1, k->slot);
    lua_remove(L, -2);
}

/* The `layers` value at vidx (a table or a function) as rules with prefix. */
static void collect_layers(lua_State *L, int vidx, int rules, const char *prefix,
                           cce_lua_model *mo) {
    cce_model *m = mo->model;
    size_t n_tensors = cce_model_tensor_count(m);
    size_t *idx = lua_newuserdatauv(L, (n_tensors ? n_tensors : 1) * sizeof *idx, 0);
    int idx_slot = lua_gettop(L);
    if (lua_isfunction(L, vidx)) {
        size_t k = cce_lua_matching_tensors(L, m, -1, "layers.*", idx, FN);
        for (size_t i = 0; i < k; i++) {
            const char *name = cce_model_tensor_name_at(m, idx[i]);
            call_layer_function(L, vidx, rules, prefix, cce_plan_layer_of(name), name,
                                "the layers function");
        }
        lua_settop(L, idx_slot - 1);
        return;
    }
    if (!lua_istable(L, vidx))
        cce_lua_raise(L,
                      "bad argument #1 to '%s' (field 'layers': table or function expected, "
                      "got %s)",
                      FN, luaL_typename(L, vidx));
    size_t n = 0;
    cce_lua_layer_key *order = cce_lua_layer_keys(L, vidx, mo, FN, &n);
    int order_idx = lua_gettop(L);
    for (size_t i = 0; i < n; i++) {
        cce_lua_push_layer_key(L, order_idx, &order[i]);
        int key = lua_gettop(L);
        char what[CCE_PLAN_NAME_MAX + 32];
        if (order[i].kind == 0)
            snprintf(what, sizeof what, "layers[%lld]", (long long)order[i].layer);
        else
            snprintf(what, sizeof what, "layers[\"%s\"]", lua_tostring(L, key));
        lua_pushvalue(L, key);
        lua_rawget(L, vidx);
        int value = lua_gettop(L);
        if (lua_type(L, value) == LUA_TNUMBER) {
            char text[32];
            if (order[i].kind == 0) snprintf(text, sizeof text, "%lld", (long long)order[i].layer);
            add_value_rule(L, rules, prefix, order[i].kind == 0 ? text : lua_tostring(L, key));
        } else if (lua_isfunction(L, value)) {
            size_t k = order[i].kind == 0
                           ? cce_lua_matching_tensors(L, m, (int)order[i].layer, NULL, idx, FN)
                           : cce_lua_matching_tensors(L, m, 0, lua_tostring(L, key), idx, FN);
            for (size_t j = 0; j < k; j++) {
                const char *name = cce_model_tensor_name_at(m, idx[j]);
                call_layer_function(L, value, rules, prefix, cce_plan_layer_of(name), name, what);
            }
        } else {
            cce_lua_raise(L, "%s: %s must be a number or a function(layer, tensor), got %s", FN,
                          what, luaL_typename(L, value));
        }
        lua_settop(L, key - 1);
    }
    lua_settop(L, idx_slot - 1);
}

/* skip/unskip/rules: a string or an array of strings, each added as "<prefix><form>TEXT". */
static void collect_texts(lua_State *L, int vidx, int rules, const char *prefix, const char *field,
                          const char *form) {
    int n = lua_type(L, vidx) == LUA_TSTRING ? 1 : -1;
    if (n < 0 && lua_istable(L, vidx)) n = (int)lua_rawlen(L, vidx);
    if (n < 0)
        cce_lua_raise(L,
                      "bad argument #1 to '%s' (field '%s': string or array of strings "
                      "expected, got %s)",
                      FN, field, luaL_typename(L, vidx));
    for (int i = 1; i <= n; i++) {
        if (lua_type(L, vidx) == LUA_TSTRING)
            lua_pushvalue(L, vidx);
        else
            lua_rawgeti(L, vidx, i);
        if (lua_type(L, -1) != LUA_TSTRING)
            cce_lua_raise(L,
                          "bad argument #1 to '%s' (field '%s' item %d: string expected, got %s)",
                          FN, field, i, luaL_typename(L, -1));
        lua_pushfstring(L, "%s%s%s", prefix, form, lua_tostring(L, -1));
        lua_rawseti(L, rules, (lua_Integer)lua_rawlen(L, rules) + 1);
        lua_pop(L, 1);
    }
}

/* The plan fields of the step table at tidx (strategy s for the `layers` collision; NULL for the
 * top level of a steps= table) as rules with prefix. */
static void collect_plan_fields(lua_State *L, int tidx, int rules, const char *prefix,
                                const cce_strategy *s, cce_lua_model *mo) {
    static const char *const forms[] = {"", "skip=", "unskip=", ""};
    for (int f = 0; PLAN_FIELDS[f]; f++) {
        lua_pushstring(L, PLAN_FIELDS[f]);
        if (lua_rawget(L, tidx) != LUA_TNIL && is_plan_field(L, PLAN_FIELDS[f], s)) {
            if (f == 0)
                collect_layers(L, lua_gettop(L), rules, prefix, mo);
            else
                collect_texts(L, lua_gettop(L), rules, prefix, PLAN_FIELDS[f], forms[f]);
        }
        lua_pop(L, 1);
    }
}

/* ---- Phase 1: steps and parameters ----------------------------------------------------------- */

typedef struct step_spec {
    const cce_strategy *strategy;
    cce_param_kv *kv; /* [n_kv], Lua-owned; strings borrowed from the step table */
    size_t n_kv;
} step_spec;

/* The strategy named by field `strategy` of the table at tidx. */
static const cce_strategy *step_strategy(lua_State *L, int tidx, const char *where) {
    lua_getfield(L, tidx, "strategy");
    if (lua_type(L, -1) != LUA_TSTRING)
        cce_lua_raise(L, "bad argument #1 to '%s' (%sfield 'strategy': string expected, got %s)",
                      FN, where, luaL_typename(L, -1));
    const cce_strategy *s = NULL;
    cce_status st = cce_strategy_find(lua_tostring(L, -1), &s);
    if (st) cce_lua_error(L, st, FN);
    lua_pop(L, 1);
    return s;
}

/* The parameters of the step table at tidx (every field that is neither a run nor a plan
 * field) as key/value pairs in Lua-owned memory anchored in the table at anchor. */
static void collect_params(lua_State *L, int tidx, int anchor, step_spec *spec) {
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, tidx)) {
        n++;
        lua_pop(L, 1);
    }
    spec->kv = lua_newuserdatauv(L, (n ? n : 1) * sizeof *spec->kv, 0);
    lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
    spec->n_kv = 0;
    const char *sname = spec->strategy->name;
    lua_pushnil(L);
    while (lua_next(L, tidx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            cce_lua_raise(L, "%s: %s: a key of type %s (parameters are named fields)", FN, sname,
                          luaL_typename(L, -2));
        const char *key = lua_tostring(L, -2);
        if (in_list(key, RUN_FIELDS) || is_plan_field(L, key, spec->strategy)) {
            lua_pop(L, 1);
            continue;
        }
        cce_param_kv *kv = &spec->kv[spec->n_kv++];
        if (!cce_lua_to_param_kv(L, -1, key, kv)) /* the step table holds the strings */
            cce_lua_raise(L, "%s: %s: parameter '%s' must be a number, boolean or string, got %s",
                          FN, sname, key, luaL_typename(L, -1));
        lua_pop(L, 1);
    }
}

int cce_lua_to_param_kv(lua_State *L, int idx, const char *key, cce_param_kv *kv) {
    memset(kv, 0, sizeof *kv);
    kv->key = key;
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            kv->kind = CCE_VALUE_INTEGER;
            kv->integer = (int64_t)lua_tointeger(L, idx);
        } else {
            kv->kind = CCE_VALUE_NUMBER;
            kv->number = (double)lua_tonumber(L, idx);
        }
        return 1;
    case LUA_TBOOLEAN:
        kv->kind = CCE_VALUE_BOOL;
        kv->boolean = lua_toboolean(L, idx);
        return 1;
    case LUA_TSTRING:
        kv->kind = CCE_VALUE_TEXT;
        kv->text = lua_tostring(L, idx);
        return 1;
    default:
        return 0;
    }
}

/* ---- Phase 2 --------------------------------------------------------------------------------- */

static void compress_progress(void *user, size_t step, const char *strategy, int layer,
                              int n_layers) {
    const cce_lua_options *o = user;
    if (!o || !o->progress) return;
    char label[64];
    snprintf(label, sizeof label, "compress step %zu %s", step + 1, strategy);
    o->progress(label, layer < 0 ? n_layers : layer + 1, n_layers);
}

/* The rules given and every step's applied plan as JSON text (malloc'd into *out). */
static cce_status plan_json(const cce_compress_result *r, const char *const *rules, size_t n_rules,
                            char **out) {
    json_t *root = json_object(), *given = json_array(), *steps = json_array();
    int ok = root && given && steps;
    for (size_t i = 0; ok && i < n_rules; i++)
        ok = !json_array_append_new(given, json_string(rules[i]));
    for (size_t k = 0; ok && k < r->n_steps; k++) {
        const cce_plan *p = r->plans[k];
        size_t n = 0;
        const cce_plan_row *rows = cce_plan_applied(p, &n);
        json_t *applied = json_array();
        ok = applied != NULL;
        for (size_t i = 0; ok && i < n; i++)
            ok = !json_array_append_new(
                applied, json_pack("{s:i, s:s, s:f, s:s, s:s}", "layer", rows[i].layer, "tensor",
                                   rows[i].tensor, "value", rows[i].value, "source",
                                   cce_plan_source_name(rows[i].source), "rule", rows[i].rule));
        json_t *step = ok ? json_pack("{s:s, s:s, s:s, s:f, s:o}", "strategy", r->steps[k].strategy,
                                      "params", r->steps[k].params, "kind",
                                      cce_plan_get_kind(p) == CCE_PLAN_BITS ? "bits" : "ratio",
                                      "target", cce_plan_target(p), "applied", applied)
                          : NULL;
        if (!step) json_decref(applied);
        ok = step && !json_array_append_new(steps, step);
    }
    ok = ok && !json_object_set_new(root, "rules", given) &&
         !json_object_set_new(root, "steps", steps);
    if (!ok) {
        json_decref(given);
        json_decref(steps);
    }
    *out = ok ? json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(root);
    return *out ? CCE_OK : cce_fail(CCE_ERR_NOMEM, "compress: the plan as JSON");
}

/* Makes the instances, checks calibration, compresses, collects the steps' extra tables. On
 * success *variant, *result, *plan_text and *tables are filled; on failure nothing is left to
 * free. */
static cce_status run_compress(cce_model *base, const step_spec *specs, size_t n_steps,
                               const char *const *rules, size_t n_rules,
                               const cce_lua_tokens *calib, const cce_compress_options *o,
                               cce_model **variant, cce_compress_result *result, char **plan_text,
                               cce_table_list *tables) {
    cce_strategy_instance *inst[MAX_STEPS] = {0};
    cce_status s = CCE_OK;
    for (size_t k = 0; !s && k < n_steps; k++) {
        cce_params *p = NULL;
        if (!(s = cce_params_from_kv(specs[k].strategy, specs[k].kv, specs[k].n_kv, &p)))
            s = cce_strategy_instance_new(specs[k].strategy, p, &inst[k]);
        cce_params_free(p);
        if (!s && !calib && cce_compress_needs_calibration(inst[k]))
            s = cce_fail(CCE_ERR_STATE,
                         cce_strategy_instance_needs(inst[k]) &
                                 (CCE_NEEDS_CALIBRATION | CCE_NEEDS_SEQUENTIAL)
                             ? "%s: this strategy needs calibration data: give calib = the "
                               "calibration part of ds:split{...}"
                             : "%s: alloc = owl needs calibration data: give calib = the "
                               "calibration part of ds:split{...}",
                         specs[k].strategy->name);
    }
    if (!s)
        s = cce_compress(base, inst, n_steps, rules, n_rules, calib ? &calib->calib : NULL, o,
                         variant, result);
    int done = !s;
    if (!s && !(s = plan_json(result, rules, n_rules, plan_text)) &&
        (s = cce_strategy_tables_collect(inst, n_steps, tables))) {
        free(*plan_text);
        *plan_text = NULL;
    }
    if (s && done) {
        cce_model_free(*variant);
        *variant = NULL;
        cce_compress_result_clear(result);
    }
    for (size_t k = 0; k < n_steps; k++) cce_strategy_instance_free(inst[k]);
    return s;
}

/* ---- The steps' extra tables ----------------------------------------------------------------- */

static int tables_guard_gc(lua_State *L) {
    cce_table_list_clear(lua_touserdata(L, 1));
    return 0;
}

/* Pushes an empty table list freed by __gc (whatever it still holds if a later push raises). */
static cce_table_list *push_tables_guard(lua_State *L) {
    cce_table_list *l = lua_newuserdatauv(L, sizeof *l, 0);
    cce_table_list_init(l);
    if (luaL_newmetatable(L, TABLES_GUARD_META)) {
        lua_pushcfunction(L, tables_guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return l;
}

/* Pushes the registry's weak-keyed table variant -> array of cce.table (made on first use). */
static void push_tables_registry(lua_State *L) {
    if (lua_getfield(L, LUA_REGISTRYINDEX, TABLES_REGISTRY) == LUA_TTABLE) return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, TABLES_REGISTRY);
}

/* Moves the tables of list into cce.table objects kept as the variant's (at vidx). A memory error
 * raises with the tables not yet moved still owned by the list's guard. */
static void keep_tables(lua_State *L, int vidx, cce_table_list *list) {
    lua_createtable(L, (int)list->n, 0);
    for (size_t i = 0; i < list->n; i++) {
        cce_table **slot = cce_lua_push_table_slot(L, list->tables[i]->name);
        *slot = list->tables[i];
        list->tables[i] = NULL;
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    push_tables_registry(L);
    lua_pushvalue(L, vidx);
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
    lua_pop(L, 2);
}

/* Pushes a new array of the variant's (at vidx) cce.table objects (empty when it has none). */
static void push_variant_tables(lua_State *L, int vidx) {
    vidx = lua_absindex(L, vidx);
    push_tables_registry(L);
    lua_pushvalue(L, vidx);
    lua_rawget(L, -2);
    size_t n = lua_istable(L, -1) ? lua_rawlen(L, -1) : 0;
    lua_createtable(L, (int)n, 0);
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, -2, (lua_Integer)i);
        lua_rawseti(L, -2, (lua_Integer)i);
    }
    lua_replace(L, -3);
    lua_pop(L, 1);
}

int cce_lua_compress(lua_State *L, int model_idx, int opts_idx) {
    model_idx = lua_absindex(L, model_idx);
    opts_idx = lua_absindex(L, opts_idx);
    cce_lua_model *mo = cce_lua_check_model(L, model_idx);
    luaL_checktype(L, opts_idx, LUA_TTABLE);
    lua_newtable(L);
    int rules = lua_gettop(L);
    lua_newtable(L);
    int anchor = lua_gettop(L);

    /* The steps: the table itself, or each table of steps=. */
    size_t n_steps = 1;
    int steps = 0;
    if (lua_getfield(L, opts_idx, "steps") != LUA_TNIL) {
        steps = lua_gettop(L);
        if (!lua_istable(L, steps) || lua_rawlen(L, steps) < 1 || lua_rawlen(L, steps) > MAX_STEPS)
            return cce_lua_raise(L,
                                 "bad argument #1 to '%s' (field 'steps': an array of 1 to %d "
                                 "step tables expected)",
                                 FN, MAX_STEPS);
        n_steps = lua_rawlen(L, steps);
        lua_pushnil(L);
        while (lua_next(L, opts_idx)) {
            lua_pop(L, 1);
            if (lua_type(L, -1) != LUA_TSTRING || strcmp(lua_tostring(L, -1), "strategy") == 0 ||
                (!in_list(lua_tostring(L, -1), RUN_FIELDS) &&
                 !in_list(lua_tostring(L, -1), PLAN_FIELDS)))
                return cce_lua_raise(L,
                                     "bad argument #1 to '%s' (field '%s' is not allowed beside "
                                     "steps=: give strategies and parameters inside each step)",
                                     FN, luaL_tolstring(L, -1, NULL));
        }
    } else {
        lua_pop(L, 1);
    }
    step_spec *specs = lua_newuserdatauv(L, n_steps * sizeof *specs, 0);
    lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
    memset(specs, 0, n_steps * sizeof *specs);
    int first_step_table = lua_gettop(L) + 1;
    for (size_t k = 0; k < n_steps; k++) {
        if (steps) {
            lua_rawgeti(L, steps, (lua_Integer)k + 1);
            if (!lua_istable(L, -1))
                return cce_lua_raise(L,
                                     "bad argument #1 to '%s' (steps[%zu]: table expected, "
                                     "got %s)",
                                     FN, k + 1, luaL_typename(L, -1));
        } else {
            lua_pushvalue(L, opts_idx);
        }
        char where[32] = "";
        if (steps) snprintf(where, sizeof where, "steps[%zu] ", k + 1);
        specs[k].strategy = step_strategy(L, lua_gettop(L), where);
    }
    /* Rules first (they may call the script's functions), then parameters. */
    collect_plan_fields(L, opts_idx, rules, "", steps ? NULL : specs[0].strategy, mo);
    for (size_t k = 0; steps && k < n_steps; k++) {
        char prefix[48];
        snprintf(prefix, sizeof prefix, "%s:", specs[k].strategy->name);
        collect_plan_fields(L, first_step_table + (int)k, rules, prefix, specs[k].strategy, mo);
    }
    for (size_t k = 0; k < n_steps; k++)
        collect_params(L, first_step_table + (int)k, anchor, &specs[k]);

    /* Calibration and options. */
    cce_lua_tokens *calib = NULL;
    if (lua_getfield(L, opts_idx, "calib") != LUA_TNIL) {
        calib = cce_lua_test_object(L, -1, CCE_LUA_TOKENS);
        if (!calib)
            return cce_lua_raise(L,
                                 "bad argument #1 to '%s' (field 'calib': cce.tokens expected, "
                                 "got %s)",
                                 FN, luaL_typename(L, -1));
        if (strcmp(calib->part, "calib"))
            return cce_lua_raise(L, "%s: calib is %s: give the calibration part of ds:split{...}",
                                 FN, calib->obj.label);
        const cce_tokenizer *tok = cce_model_tokenizer(mo->model);
        if (tok && cce_tokenizer_fingerprint(tok) != calib->tokenizer)
            return cce_lua_raise(L, "%s: %s were tokenized with another tokenizer than %s's", FN,
                                 calib->obj.label, mo->obj.label);
    }
    /* The calib value (or nil) stays on the stack, which keeps the object alive. */
    int seq_len = cce_model_config(mo->model)->seq_len;
    int64_t ctx = 0;
    int use_cache = 1, output_error = 1;
    cce_lua_field_integer(L, opts_idx, 1, FN, "ctx", 2, seq_len, &ctx);
    cce_lua_field_boolean(L, opts_idx, 1, FN, "use_cache", &use_cache);
    cce_lua_field_boolean(L, opts_idx, 1, FN, "output_error", &output_error);
    if (!ctx && calib)
        ctx = (int64_t)calib->seg_len + 1 < seq_len ? (int64_t)calib->seg_len + 1 : seq_len;

    size_t n_rules = lua_rawlen(L, rules);
    const char **rule_texts = lua_newuserdatauv(L, (n_rules ? n_rules : 1) * sizeof(char *), 0);
    lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
    for (size_t i = 0; i < n_rules; i++) {
        lua_rawgeti(L, rules, (lua_Integer)i + 1);
        rule_texts[i] = lua_tostring(L, -1); /* the rules table holds it */
        lua_pop(L, 1);
    }

    /* The variant object before the work, so that nothing can raise once it is done. */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t k = 0; k < n_steps; k++) {
        if (k) luaL_addchar(&b, '+');
        luaL_addstring(&b, specs[k].strategy->name);
    }
    luaL_pushresult(&b);
    cce_lua_model *vo = cce_lua_push_model(L, NULL, NULL, model_idx, "variant %s of %s",
                                           lua_tostring(L, -1), mo->obj.label);
    int vidx = lua_gettop(L);
    vo->result = calloc(1, sizeof *vo->result);
    if (!vo->result) return cce_lua_raise(L, "%s: out of memory", FN);
    cce_table_list *tables = push_tables_guard(L);

    /* Phase 2: C only. */
    cce_compress_options o;
    cce_compress_options_init(&o);
    o.calib.ctx = (int)ctx;
    o.use_cache = use_cache;
    o.output_error = output_error;
    o.progress = compress_progress;
    o.progress_user = (void *)cce_lua_get_options(L);
    cce_model *variant = NULL;
    cce_status s = run_compress(mo->model, specs, n_steps, rule_texts, n_rules, calib, &o, &variant,
                                vo->result, &vo->plan_json, tables);
    cce_lua_progress_end(L);
    if (s) {
        cce_lua_object_close(&vo->obj);
        return cce_lua_error(L, s, FN);
    }
    vo->model = variant;
    /* The variant owns copies of the tensors its steps changed. */
    size_t bytes = 0;
    for (size_t i = 0; i < vo->result->report.n; i++)
        bytes += (size_t)vo->result->report.rows[i].params_before * sizeof(float);
    cce_lua_account_memory(L, bytes);
    keep_tables(L, vidx, tables);
    lua_pushvalue(L, vidx);
    return 1;
}

/* ---- v:compression() ------------------------------------------------------------------------- */

void cce_lua_push_report_row(lua_State *L, const cce_report_row *w) {
    lua_createtable(L, 0, 14);
    cce_lua_set_string(L, "strategy", w->strategy);
    cce_lua_set_integer(L, "layer", w->layer);
    cce_lua_set_string(L, "tensor", w->tensor);
    cce_lua_set_integer(L, "params_before", w->params_before);
    cce_lua_set_integer(L, "params_after", w->params_after);
    cce_lua_set_integer(L, "bytes_before", w->bytes_before);
    cce_lua_set_integer(L, "bytes_after", w->bytes_after);
    cce_lua_set_number(L, "bits_per_weight", w->bits_per_weight);
    cce_lua_set_number(L, "sparsity", w->sparsity);
    cce_lua_set_integer(L, "rank", w->rank);
    cce_lua_set_number(L, "rel_fro_error", w->rel_fro_error);
    cce_lua_set_number(L, "output_error", w->output_error);
    cce_lua_set_number(L, "seconds", w->seconds);
    cce_lua_set_string(L, "note", w->note);
}

static void push_totals(lua_State *L, const cce_compress_totals *t) {
    lua_createtable(L, 0, 7);
    cce_lua_set_integer(L, "tensors", t->tensors);
    cce_lua_set_integer(L, "params_before", t->params_before);
    cce_lua_set_integer(L, "params_after", t->params_after);
    cce_lua_set_integer(L, "bytes_before", t->bytes_before);
    cce_lua_set_integer(L, "bytes_after", t->bytes_after);
    cce_lua_set_number(L, "byte_ratio", t->byte_ratio);
    cce_lua_set_number(L, "bits_per_weight", t->bits_per_weight);
}

/* The steps' parameters as a JSON array [{"strategy": ..., "params": {...}}, ...] (pushed). */
static void push_params_json(lua_State *L, const cce_compress_result *r) {
    json_t *arr = json_array();
    for (size_t k = 0; arr && k < r->n_steps; k++) {
        json_t *p = json_loads(r->steps[k].params_json, 0, NULL);
        json_t *o =
            p ? json_pack("{s:s, s:o}", "strategy", r->steps[k].strategy, "params", p) : NULL;
        if (!o || json_array_append_new(arr, o)) {
            json_decref(arr);
            arr = NULL;
        }
    }
    char *text = arr ? json_dumps(arr, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(arr);
    if (!text) cce_lua_raise(L, "v:compression: out of memory");
    lua_pushstring(L, text);
    free(text);
}

int cce_lua_push_compression(lua_State *L, int idx) {
    cce_lua_model *mo = cce_lua_check_model(L, idx);
    const cce_compress_result *r = mo->result;
    if (!r) {
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, 0, 6);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t k = 0; k < r->n_steps; k++) {
        if (k) luaL_addchar(&b, '+');
        luaL_addstring(&b, r->steps[k].strategy);
    }
    luaL_pushresult(&b);
    lua_setfield(L, -2, "strategy");
    push_params_json(L, r);
    lua_setfield(L, -2, "params");
    cce_lua_set_string(L, "plan", mo->plan_json ? mo->plan_json : "{}");
    lua_createtable(L, (int)r->n_steps, 0);
    for (size_t k = 0; k < r->n_steps; k++) {
        lua_createtable(L, 0, 3);
        cce_lua_set_string(L, "strategy", r->steps[k].strategy);
        cce_lua_set_string(L, "params", r->steps[k].params);
        cce_lua_set_string(L, "params_json", r->steps[k].params_json);
        lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    lua_setfield(L, -2, "steps");
    const cce_compress_summary *s = &r->summary;
    lua_createtable(L, 0, 8);
    push_totals(L, &s->blocks);
    lua_setfield(L, -2, "blocks");
    push_totals(L, &s->embeddings);
    lua_setfield(L, -2, "embeddings");
    push_totals(L, &s->classifier);
    lua_setfield(L, -2, "classifier");
    push_totals(L, &s->model);
    lua_setfield(L, -2, "model");
    cce_lua_set_number(L, "byte_ratio", s->blocks.byte_ratio);
    cce_lua_set_number(L, "bits_per_weight", s->blocks.bits_per_weight);
    cce_lua_set_number(L, "seconds", s->seconds);
    cce_lua_set_number(L, "calib_seconds", s->calib_seconds);
    lua_setfield(L, -2, "summary");
    lua_createtable(L, (int)r->report.n, 0);
    for (size_t i = 0; i < r->report.n; i++) {
        cce_lua_push_report_row(L, &r->report.rows[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "layers");
    push_variant_tables(L, idx);
    lua_setfield(L, -2, "tables");
    return 1;
}
