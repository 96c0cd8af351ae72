/* What the experiment module (lua/cce/experiment.lua) needs from C besides the results store
 * (lua_results.c): the identities that go into run keys, the strategy parameters with their
 * defaults, layer rules with their functions expanded into data, a clock and the experiment
 * object itself (lua/README.md, "Experiments"). Figures are in lua_figure.c.
 *
 *   cce._model_identity(m)      -> name, sha256, weights: sha256 is of the file for a model loaded
 *                                  from one, else the weights digest; weights is the sha256 of the
 *                                  config, layer shapes, tokenizer fingerprint and every tensor's
 *                                  name, shape and values (loads every tensor), so a model imported
 *                                  twice (files that differ in HDF5 timestamps) or saved and loaded
 *                                  back has the same one. Computed once per model object.
 *   cce._data_identity(x)       -> of a token stream {dataset=, sha256= (of the text), part=,
 *                                  tokens=, segments=, seg_len=, seed= (calib part only),
 *                                  tokenizer= (fingerprint), tokens_sha256= (of the token ids)},
 *                                  computed once per stream; of a dataset {dataset=, sha256=,
 *                                  part="file", bytes=}
 *   cce._params(strategy, t)    -> the strategy's parameters (t: name -> value) validated by the
 *                                  framework with every default filled in, as a table
 *   cce._strategy_seed(s, seed) -> the value to give the strategy's `seed` parameter (seed folded
 *                                  into its range), or nil when it has none
 *   cce._expand_layers(m, v)    -> the `layers` value v (table or function) with every function
 *                                  called as m:compress calls it, so the result holds numbers only
 *   cce._now()                  -> monotonic seconds
 *   cce._experiment(impl, w, label)
 *                               -> a "cce.experiment" object whose methods run, figure, results,
 *                                  info, path and summary call impl.<name>(impl, ...); closing it
 *                                  (close, <close>, __gc) closes the results writer w, which
 *                                  releases the lock */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cce_lua.h"
#include "lua_experiment.h"
#include "sha256.h"
#include "strategy.h"

#define EXPERIMENT_META     "cce.experiment"
#define PTR_GUARD_META      "cce.experiment_guard"
#define MODEL_IDENTITY_KEY  "cce.model_identities"  /* registry: model -> {name, sha256} */
#define TOKENS_IDENTITY_KEY "cce.tokens_identities" /* registry: tokens -> identity */

/* ---- Guards: C resources freed by __gc if a Lua call raises while they are held -------------- */

typedef struct ptr_guard {
    void *p;
    void (*free_fn)(void *);
} ptr_guard;

static int ptr_guard_gc(lua_State *L) {
    ptr_guard *g = lua_touserdata(L, 1);
    if (g->p && g->free_fn) g->free_fn(g->p);
    g->p = NULL;
    return 0;
}

static ptr_guard *push_ptr_guard(lua_State *L, void (*free_fn)(void *)) {
    ptr_guard *g = lua_newuserdatauv(L, sizeof *g, 0);
    g->p = NULL;
    g->free_fn = free_fn;
    luaL_setmetatable(L, PTR_GUARD_META);
    return g;
}

static void free_params(void *p) {
    cce_params_free(p);
}

/* ---- Identities ------------------------------------------------------------------------------ */

/* Pushes the weak-keyed cache table `name` of the registry. */
static void push_cache(lua_State *L, const char *name) {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, name);
    if (!lua_getmetatable(L, -1)) {
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "k");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
    } else {
        lua_pop(L, 1);
    }
}

/* The model's name, from its label: the name given to cce.model, the file name (without ".h5")
 * given to cce.load, the source of a synthetic model ("synth:tiny:seed=1"), else the label. */
static void push_model_name(lua_State *L, cce_lua_model *mo) {
    const char *label = mo->obj.label;
    size_t len = strlen(label);
    if (!strncmp(label, "model '", 7) && len > 8 && label[len - 1] == '\'') {
        const char *name = label + 7, *end = label + len - 1;
        for (const char *c = name; c < end; c++)
            if (*c == '/') name = c + 1;
        if (end - name > 3 && !strncmp(end - 3, ".h5", 3)) end -= 3;
        lua_pushlstring(L, name, (size_t)(end - name));
    } else if (!strncmp(label, "model ", 6)) {
        lua_pushstring(L, label + 6);
    } else {
        lua_pushstring(L, label);
    }
}

/* cce._model_identity(m) -> name, sha256, weights. */
static int l_model_identity(lua_State *L) {
    cce_lua_model *mo = cce_lua_check_model(L, 1);
    lua_settop(L, 1);
    push_cache(L, MODEL_IDENTITY_KEY);
    int cache = lua_gettop(L);
    lua_pushvalue(L, 1);
    if (lua_rawget(L, cache) == LUA_TTABLE) {
        for (int i = 1; i <= 3; i++) lua_rawgeti(L, 3, i);
        return 3;
    }
    lua_pop(L, 1);
    char weights[65];
    cce_status s = cce_model_weights_sha256(mo->model, weights);
    if (s) return cce_lua_error(L, s, "%s", mo->obj.label);
    lua_createtable(L, 3, 0);
    int t = lua_gettop(L);
    push_model_name(L, mo);
    lua_rawseti(L, t, 1);
    lua_pushstring(L, mo->path ? cce_lua_model_sha256(L, mo) : weights);
    lua_rawseti(L, t, 2);
    lua_pushstring(L, weights);
    lua_rawseti(L, t, 3);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, t);
    lua_rawset(L, cache);
    for (int i = 1; i <= 3; i++) lua_rawgeti(L, t, i);
    return 3;
}

/* cce._data_identity(tokens | dataset) -> table (of a stream: computed once per object). */
static int l_data_identity(lua_State *L) {
    cce_lua_tokens *tk = cce_lua_test_object(L, 1, CCE_LUA_TOKENS);
    if (tk) {
        lua_settop(L, 1);
        push_cache(L, TOKENS_IDENTITY_KEY);
        lua_pushvalue(L, 1);
        if (lua_rawget(L, 2) == LUA_TTABLE) return 1;
        lua_pop(L, 1);
        char fp[17], hex[65];
        snprintf(fp, sizeof fp, "%016" PRIx64, tk->tokenizer);
        size_t n = tk->n_segments * tk->seg_len;
        cce_status s = cce_sha256_buffer(tk->tokens, n * sizeof *tk->tokens, hex);
        if (s) return cce_lua_error(L, s, "%s", tk->obj.label);
        lua_createtable(L, 0, 9);
        lua_pushstring(L, tk->dataset);
        lua_setfield(L, -2, "dataset");
        lua_pushstring(L, tk->sha256);
        lua_setfield(L, -2, "sha256");
        lua_pushstring(L, tk->part);
        lua_setfield(L, -2, "part");
        lua_pushinteger(L, (lua_Integer)n);
        lua_setfield(L, -2, "tokens");
        lua_pushinteger(L, (lua_Integer)tk->n_segments);
        lua_setfield(L, -2, "segments");
        lua_pushinteger(L, (lua_Integer)tk->seg_len);
        lua_setfield(L, -2, "seg_len");
        if (!strcmp(tk->part, "calib")) {
            lua_pushinteger(L, (lua_Integer)(tk->seed & ((UINT64_C(1) << 63) - 1)));
            lua_setfield(L, -2, "seed");
        }
        lua_pushstring(L, fp);
        lua_setfield(L, -2, "tokenizer");
        lua_pushstring(L, hex);
        lua_setfield(L, -2, "tokens_sha256");
        lua_pushvalue(L, 1);
        lua_pushvalue(L, -2);
        lua_rawset(L, 2);
        return 1;
    }
    cce_lua_dataset *ds = cce_lua_test_object(L, 1, CCE_LUA_DATASET);
    if (!ds)
        return cce_lua_raise(L, "expected a token stream (cce.tokens) or a dataset, got %s",
                             luaL_typename(L, 1));
    lua_createtable(L, 0, 4);
    lua_pushstring(L, ds->name);
    lua_setfield(L, -2, "dataset");
    lua_pushstring(L, ds->sha256);
    lua_setfield(L, -2, "sha256");
    lua_pushliteral(L, "file");
    lua_setfield(L, -2, "part");
    lua_pushinteger(L, (lua_Integer)ds->bytes);
    lua_setfield(L, -2, "bytes");
    return 1;
}

/* ---- Parameters ------------------------------------------------------------------------------ */

static const cce_strategy *find_strategy(lua_State *L, int idx, const char *fn) {
    const char *name = luaL_checkstring(L, idx);
    const cce_strategy *s = NULL;
    cce_status st = cce_strategy_find(name, &s);
    if (st) cce_lua_error(L, st, "%s", fn);
    return s;
}

/* cce._params(strategy, t) -> table of every valued parameter (given or default). */
static int l_params(lua_State *L) {
    const cce_strategy *s = find_strategy(L, 1, "exp:run");
    luaL_checktype(L, 2, LUA_TTABLE);
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        n++;
        lua_pop(L, 1);
    }
    cce_param_kv *kv = lua_newuserdatauv(L, (n ? n : 1) * sizeof *kv, 0);
    size_t k = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            return cce_lua_raise(L, "exp:run: %s: a key of type %s (parameters are named fields)",
                                 s->name, luaL_typename(L, -2));
        cce_param_kv *p = &kv[k++];
        if (!cce_lua_to_param_kv(L, -1, lua_tostring(L, -2), p)) /* t holds the strings */
            return cce_lua_raise(L,
                                 "exp:run: %s: parameter '%s' must be a number, boolean or string, "
                                 "got %s",
                                 s->name, p->key, luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    ptr_guard *g = push_ptr_guard(L, free_params);
    cce_params *params = NULL;
    cce_status st = cce_params_from_kv(s, kv, n, &params);
    if (st) return cce_lua_error(L, st, "exp:run");
    g->p = params;
    lua_newtable(L);
    for (const cce_param *sp = s->params; sp && sp->name; sp++) {
        if (!cce_params_has(params, sp->name)) continue;
        int64_t i;
        double f;
        int b, nm_n, nm_m;
        const char *text;
        switch (sp->type) {
        case CCE_PARAM_INT:
            cce_params_get_int(params, sp->name, &i);
            lua_pushinteger(L, (lua_Integer)i);
            break;
        case CCE_PARAM_FLOAT:
            cce_params_get_float(params, sp->name, &f);
            lua_pushnumber(L, (lua_Number)f);
            break;
        case CCE_PARAM_BOOL:
            cce_params_get_bool(params, sp->name, &b);
            lua_pushboolean(L, b);
            break;
        case CCE_PARAM_STRING:
            text = NULL;
            cce_params_get_string(params, sp->name, &text);
            lua_pushstring(L, text ? text : "");
            break;
        case CCE_PARAM_ENUM:
            text = NULL;
            cce_params_get_enum(params, sp->name, &text, NULL);
            lua_pushstring(L, text ? text : "");
            break;
        case CCE_PARAM_NM:
            nm_n = nm_m = 0;
            cce_params_get_nm(params, sp->name, &nm_n, &nm_m);
            lua_pushfstring(L, "%d:%d", nm_n, nm_m);
            break;
        default:
            continue;
        }
        lua_setfield(L, -2, sp->name);
    }
    cce_params_free(params);
    g->p = NULL;
    return 1;
}

/* cce._strategy_seed(strategy, seed) -> seed folded into the range of the strategy's integer
 * `seed` parameter, or nil when it has none. */
static int l_strategy_seed(lua_State *L) {
    const cce_strategy *s = find_strategy(L, 1, "exp:run");
    lua_Integer seed = luaL_checkinteger(L, 2);
    const cce_param *p = cce_strategy_param(s, "seed");
    if (!p || (p->type != CCE_PARAM_INT && p->type != CCE_PARAM_FLOAT) || seed < 0) {
        lua_pushnil(L);
        return 1;
    }
    double lo = isfinite(p->min) ? ceil(p->min) : 0.0,
           hi = isfinite(p->max) ? floor(p->max) : 9.2e18;
    if (p->flags & CCE_PARAM_MIN_OPEN && lo == p->min) lo += 1;
    if (p->flags & CCE_PARAM_MAX_OPEN && hi == p->max) hi -= 1;
    if (lo < 0) lo = 0;
    if (hi > 9.2e18) hi = 9.2e18;
    if (!(hi >= lo)) {
        lua_pushnil(L);
        return 1;
    }
    uint64_t span = (uint64_t)(hi - lo) + 1;
    lua_pushinteger(L, (lua_Integer)((uint64_t)lo + (uint64_t)seed % span));
    return 1;
}

/* ---- Layer rules ------------------------------------------------------------------------------
 */

/* Calls the function at f for each selected tensor and sets out[name] = its number. */
static void expand_function(lua_State *L, int f, int out, cce_model *m, const size_t *idx, size_t k,
                            const char *what) {
    for (size_t i = 0; i < k; i++) {
        const char *name = cce_model_tensor_name_at(m, idx[i]);
        lua_pushvalue(L, f);
        lua_pushinteger(L, cce_plan_layer_of(name));
        lua_pushstring(L, name);
        lua_call(L, 2, 1);
        if (lua_type(L, -1) == LUA_TNUMBER) {
            lua_setfield(L, out, name);
        } else if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
        } else {
            cce_lua_raise(L, "exp:run: %s returned a %s for '%s' (a number or nil expected)", what,
                          luaL_typename(L, -1), name);
        }
    }
}

/* cce._expand_layers(m, v) -> table of numbers. */
static int l_expand_layers(lua_State *L) {
    cce_lua_model *mo = cce_lua_check_model(L, 1);
    cce_model *m = mo->model;
    lua_settop(L, 2);
    size_t n_tensors = cce_model_tensor_count(m);
    size_t *idx = lua_newuserdatauv(L, (n_tensors ? n_tensors : 1) * sizeof *idx, 0);
    lua_newtable(L);
    int out = lua_gettop(L);
    if (lua_isfunction(L, 2)) {
        size_t k = cce_lua_matching_tensors(L, m, -1, "layers.*", idx, "exp:run");
        expand_function(L, 2, out, m, idx, k, "the layers function");
        return 1;
    }
    if (!lua_istable(L, 2))
        return cce_lua_raise(L,
                             "exp:run: layers: a table or function(layer, tensor) expected, got "
                             "%s",
                             luaL_typename(L, 2));
    size_t n = 0;
    cce_lua_layer_key *order = cce_lua_layer_keys(L, 2, mo, "exp:run", &n);
    int order_idx = lua_gettop(L);
    for (size_t i = 0; i < n; i++) {
        cce_lua_push_layer_key(L, order_idx, &order[i]);
        int key = lua_gettop(L);
        lua_pushvalue(L, key);
        lua_rawget(L, 2);
        int value = lua_gettop(L);
        if (lua_type(L, value) == LUA_TNUMBER) {
            lua_pushvalue(L, key);
            lua_pushvalue(L, value);
            lua_rawset(L, out);
        } else if (lua_isfunction(L, value)) {
            char what[CCE_PLAN_NAME_MAX + 32];
            size_t k;
            if (order[i].kind == 0) {
                snprintf(what, sizeof what, "layers[%lld]", (long long)order[i].layer);
                k = cce_lua_matching_tensors(L, m, (int)order[i].layer, NULL, idx, "exp:run");
            } else {
                snprintf(what, sizeof what, "layers[\"%s\"]", lua_tostring(L, key));
                k = cce_lua_matching_tensors(L, m, 0, lua_tostring(L, key), idx, "exp:run");
            }
            expand_function(L, value, out, m, idx, k, what);
        } else {
            return cce_lua_raise(L,
                                 "exp:run: layers[%s] must be a number or a function(layer, "
                                 "tensor), got %s",
                                 luaL_tolstring(L, key, NULL), luaL_typename(L, value));
        }
        lua_settop(L, key - 1);
    }
    lua_pushvalue(L, out);
    return 1;
}

/* ---- Clock ----------------------------------------------------------------------------------- */

static int l_now(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

/* ---- The experiment object ------------------------------------------------------------------- */

typedef struct experiment_object {
    cce_lua_object obj;     /* label "experiment 'NAME' (PATH)" */
    cce_lua_object *writer; /* the results writer (kept alive by impl.writer) */
} experiment_object;

static void experiment_release(cce_lua_object *o) {
    experiment_object *e = (experiment_object *)o;
    cce_lua_object_close(e->writer);
    e->writer = NULL;
}

/* cce._experiment(impl, writer, label) -> experiment. */
static int l_experiment(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    cce_lua_object *w = cce_lua_check_object(L, 2, "cce.results_writer");
    const char *label = luaL_checkstring(L, 3);
    lua_pushvalue(L, 2);
    lua_setfield(L, 1, "writer");
    experiment_object *e =
        cce_lua_new_object(L, sizeof *e, EXPERIMENT_META, experiment_release, 0, "%s", label);
    e->writer = w;
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

/* A method: impl[name](impl, ...) with name the upvalue. */
static int experiment_method(lua_State *L) {
    cce_lua_check_object(L, 1, EXPERIMENT_META);
    int n = lua_gettop(L); /* self, args... */
    lua_getiuservalue(L, 1, 1);
    lua_getfield(L, -1, lua_tostring(L, lua_upvalueindex(1)));
    lua_insert(L, 1);  /* fn, self, args..., impl */
    lua_replace(L, 2); /* fn, impl, args... */
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
}

/* ---- Registration ---------------------------------------------------------------------------- */

void cce_lua_open_experiment(lua_State *L) {
    static const char *const methods[] = {"run",  "figure",  "results", "info",
                                          "path", "summary", NULL};
    static const luaL_Reg functions[] = {{"_model_identity", l_model_identity},
                                         {"_data_identity", l_data_identity},
                                         {"_params", l_params},
                                         {"_strategy_seed", l_strategy_seed},
                                         {"_expand_layers", l_expand_layers},
                                         {"_now", l_now},
                                         {"_experiment", l_experiment},
                                         {NULL, NULL}};
    if (luaL_newmetatable(L, PTR_GUARD_META)) {
        lua_pushcfunction(L, ptr_guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    cce_lua_new_class(L, EXPERIMENT_META, NULL, NULL);
    luaL_getmetatable(L, EXPERIMENT_META);
    lua_getfield(L, -1, "__index");
    for (size_t i = 0; methods[i]; i++) {
        lua_pushstring(L, methods[i]);
        lua_pushcclosure(L, experiment_method, 1);
        lua_setfield(L, -2, methods[i]);
    }
    lua_pop(L, 2);
    luaL_setfuncs(L, functions, 0);
    cce_lua_open_figure(L);
}
