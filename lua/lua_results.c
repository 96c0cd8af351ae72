/* The Lua side of the results store (framework/results.h; lua/README.md, "Experiments"):
 * cce.results(path) reads a results file into tables, and the internal functions the experiment
 * module (lua/cce/experiment.lua) builds on:
 *   cce._results_open(path)  -> a "cce.results_writer" (holds the file's lock):
 *                               w:has(key) -> id | nil, w:get(key) -> run table | nil,
 *                               w:add(record) -> id (durable when it returns; record.tables: an
 *                               array of cce.table objects written with the run), w:path(),
 *                               w:close()
 *   cce._run_seed(seed, key) -> the run's seed: the first 8 bytes of sha256("<seed>\n<key>") as a
 *                               big-endian integer with the top bit cleared (0 <= seed < 2^63)
 *   cce._json(value)         -> canonical JSON text (see below)
 * The rest of the experiment support (identities, parameters, layer rules, figures, the
 * experiment object) is in lua_experiment.c, opened from here.
 *
 * Canonical JSON (cce._json): a table whose keys are exactly 1..n (n >= 1) is an array, any other
 * table an object (an empty table is {}), keys sorted bytewise; integer keys become their decimal
 * text. Numbers: integers, and floats with an integral value below 2^53 in magnitude, print as
 * integers (so 0.5 and 1/2 agree, and 3 and 3.0); other floats print with the fewest significant
 * digits (at most 17) that read back to the same double for every float in the value, so the text
 * is exact. Strings must be UTF-8. NaN, infinities, functions, userdata and cycles are refused
 * with an error naming the path of the value ("layers[\"x\"]"). */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cce_lua.h"
#include "lua_experiment.h"
#include "results.h"
#include "results_table.h"
#include "sha256.h"
#include "strategy.h"

#define WRITER_META "cce.results_writer"
#define GUARD_META  "cce.results_guard"
#define JSON_DEPTH  64

/* ---- Guards: C results freed by __gc if building the Lua tables raises (out of memory) ------- */

typedef struct results_guard {
    cce_results_runs runs;
    cce_report report;
} results_guard;

static int guard_gc(lua_State *L) {
    results_guard *g = lua_touserdata(L, 1);
    cce_results_runs_free(&g->runs);
    cce_report_clear(&g->report);
    return 0;
}

static results_guard *push_guard(lua_State *L) {
    results_guard *g = lua_newuserdatauv(L, sizeof *g, 0);
    memset(g, 0, sizeof *g);
    luaL_setmetatable(L, GUARD_META);
    return g;
}

/* ---- Run tables ------------------------------------------------------------------------------ */

/* Pushes a run as {id=, <attributes>, metrics={...}, n_layer_rows=, tables={name=rows}}: seed as
 * an integer, seconds as a number, the other attributes as strings. */
static void push_run(lua_State *L, const cce_run_info *run) {
    lua_createtable(L, 0, (int)run->n_attrs + 4);
    cce_lua_set_string(L, "id", run->id);
    for (size_t i = 0; i < run->n_attrs; i++) {
        const char *name = run->attr_names[i], *value = run->attr_values[i];
        if (!strcmp(name, "seed")) {
            errno = 0;
            char *end;
            unsigned long long v = strtoull(value, &end, 10);
            if (!errno && *value && !*end && v <= (unsigned long long)INT64_MAX)
                lua_pushinteger(L, (lua_Integer)v);
            else
                lua_pushstring(L, value);
        } else if (!strcmp(name, "seconds")) {
            lua_pushnumber(L, strtod(value, NULL));
        } else {
            lua_pushstring(L, value);
        }
        lua_setfield(L, -2, name);
    }
    lua_createtable(L, 0, (int)run->n_metrics);
    for (size_t i = 0; i < run->n_metrics; i++)
        cce_lua_set_number(L, run->metric_names[i], run->metric_values[i]);
    lua_setfield(L, -2, "metrics");
    cce_lua_set_integer(L, "n_layer_rows", (int64_t)run->n_layer_rows);
    lua_createtable(L, 0, (int)run->n_tables);
    for (size_t i = 0; i < run->n_tables; i++)
        cce_lua_set_integer(L, run->table_names[i], (int64_t)run->table_rows[i]);
    lua_setfield(L, -2, "tables");
}

/* Pushes the layers rows of run id of the file at path as an array; raises on failure. */
static void push_layers(lua_State *L, const char *path, const char *id, const char *fn) {
    results_guard *g = push_guard(L);
    cce_status s = cce_results_read_layers(path, id, &g->report);
    if (s) cce_lua_error(L, s, "%s", fn);
    lua_createtable(L, (int)g->report.n, 0);
    for (size_t i = 0; i < g->report.n; i++) {
        cce_lua_push_report_row(L, &g->report.rows[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    cce_report_clear(&g->report);
    lua_remove(L, -2);
}

/* cce.results(path [, {layers = true}]) -> array of runs in id order. */
static int l_results(lua_State *L) {
    static const char *const fields[] = {"layers", NULL};
    const char *path = luaL_checkstring(L, 1);
    int with_layers = 0;
    if (!lua_isnoneornil(L, 2)) {
        cce_lua_check_fields(L, 2, 2, "cce.results", fields);
        cce_lua_field_boolean(L, 2, 2, "cce.results", "layers", &with_layers);
    }
    results_guard *g = push_guard(L);
    int guard = lua_gettop(L);
    cce_status s = cce_results_read(path, &g->runs);
    if (s) return cce_lua_error(L, s, "cce.results");
    lua_createtable(L, (int)g->runs.n, 0);
    for (size_t i = 0; i < g->runs.n; i++) {
        push_run(L, &g->runs.runs[i]);
        if (with_layers) {
            push_layers(L, path, g->runs.runs[i].id, "cce.results");
            lua_setfield(L, -2, "layers");
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    cce_results_runs_free(&g->runs);
    lua_remove(L, guard);
    return 1;
}

/* ---- The writer ------------------------------------------------------------------------------ */

typedef struct results_writer {
    cce_lua_object obj; /* label "results file 'PATH'" */
    cce_results *r;     /* owned; NULL once released */
    char path[4096];
} results_writer;

static void writer_release(cce_lua_object *o) {
    results_writer *w = (results_writer *)o;
    cce_results_close(w->r);
    w->r = NULL;
}

static results_writer *check_writer(lua_State *L) {
    return cce_lua_check_object(L, 1, WRITER_META);
}

/* cce._results_open(path) -> writer. The lock error of a second writer names the file. */
static int l_results_open(lua_State *L) {
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    if (len == 0 || len >= sizeof((results_writer *)0)->path)
        return cce_lua_raise(L, "cce.experiment: out = '%s' is not a usable file name", path);
    results_writer *w =
        cce_lua_new_object(L, sizeof *w, WRITER_META, writer_release, 0, "results file '%s'", path);
    memcpy(w->path, path, len + 1);
    cce_status s = cce_results_open(path, &w->r);
    if (s) {
        cce_lua_object_close(&w->obj);
        return cce_lua_error(L, s, "cce.experiment");
    }
    return 1;
}

/* w:has(key) -> id of the run recorded with that key, or nil. */
static int w_has(lua_State *L) {
    results_writer *w = check_writer(L);
    const char *key = luaL_checkstring(L, 2);
    const char *id = NULL;
    if (cce_results_has(w->r, key, &id))
        lua_pushstring(L, id);
    else
        lua_pushnil(L);
    return 1;
}

/* w:get(key) -> the recorded run (as cce.results gives it), or nil. The file's runs are read
 * once into a table key -> run kept as the writer's user value until the next add, so a resume
 * reads the file once, not once per skipped run. */
static int w_get(lua_State *L) {
    results_writer *w = check_writer(L);
    const char *key = luaL_checkstring(L, 2);
    if (!cce_results_has(w->r, key, NULL)) {
        lua_pushnil(L);
        return 1;
    }
    if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
        lua_pop(L, 1);
        results_guard *g = push_guard(L);
        int guard = lua_gettop(L);
        cce_status s = cce_results_read(w->path, &g->runs);
        if (s) return cce_lua_error(L, s, "reading back the recorded runs");
        lua_createtable(L, 0, (int)g->runs.n);
        for (size_t i = 0; i < g->runs.n; i++) {
            const char *k = cce_run_attr(&g->runs.runs[i], "key");
            if (!k) continue;
            push_run(L, &g->runs.runs[i]);
            lua_setfield(L, -2, k);
        }
        cce_results_runs_free(&g->runs);
        lua_remove(L, guard);
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, 1, 1);
    }
    lua_getfield(L, -1, key);
    return 1;
}

/* Field k of the table at idx as a string (NULL when nil); raises for another type. */
static const char *opt_string(lua_State *L, int idx, const char *k) {
    lua_getfield(L, idx, k);
    const char *v = NULL;
    if (lua_type(L, -1) == LUA_TSTRING)
        v = lua_tostring(L, -1); /* the record table holds it */
    else if (!lua_isnil(L, -1))
        cce_lua_raise(L, "results record: field '%s': string expected, got %s", k,
                      luaL_typename(L, -1));
    lua_pop(L, 1);
    return v;
}

/* Field k of the table at idx as a number (dflt when nil). */
static double opt_number(lua_State *L, int idx, const char *k, double dflt) {
    lua_getfield(L, idx, k);
    double v = dflt;
    if (lua_type(L, -1) == LUA_TNUMBER)
        v = (double)lua_tonumber(L, -1);
    else if (!lua_isnil(L, -1))
        cce_lua_raise(L, "results record: field '%s': number expected, got %s", k,
                      luaL_typename(L, -1));
    lua_pop(L, 1);
    return v;
}

static int64_t opt_integer(lua_State *L, int idx, const char *k, int64_t dflt, const char *where) {
    lua_getfield(L, idx, k);
    int64_t v = dflt;
    if (lua_type(L, -1) == LUA_TNUMBER) {
        int ok = 0;
        v = (int64_t)lua_tointegerx(L, -1, &ok);
        if (!ok)
            cce_lua_raise(L, "results record: %sfield '%s': integer expected, got %s", where, k,
                          lua_tostring(L, -1));
    } else if (!lua_isnil(L, -1)) {
        cce_lua_raise(L, "results record: %sfield '%s': integer expected, got %s", where, k,
                      luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    return v;
}

/* Copies a string field of a row table into dst [cap]; raises when it does not fit. */
static void row_string(lua_State *L, int idx, const char *k, char *dst, size_t cap, size_t row) {
    lua_getfield(L, idx, k);
    dst[0] = '\0';
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t len;
        const char *v = lua_tolstring(L, -1, &len);
        if (len >= cap)
            cce_lua_raise(L, "results record: layers[%zu].%s is longer than %zu bytes", row, k,
                          cap - 1);
        memcpy(dst, v, len + 1);
    } else if (!lua_isnil(L, -1)) {
        cce_lua_raise(L, "results record: layers[%zu].%s: string expected, got %s", row, k,
                      luaL_typename(L, -1));
    }
    lua_pop(L, 1);
}

/* Reads the layers array at idx into rows [n] (Lua-owned memory). */
static void read_rows(lua_State *L, int idx, cce_report_row *rows, size_t n) {
    char where[48];
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        int t = lua_gettop(L);
        if (!lua_istable(L, t))
            cce_lua_raise(L, "results record: layers[%zu]: table expected, got %s", i + 1,
                          luaL_typename(L, t));
        snprintf(where, sizeof where, "layers[%zu] ", i + 1);
        cce_report_row *w = &rows[i];
        char strategy[sizeof w->strategy], tensor[sizeof w->tensor];
        row_string(L, t, "strategy", strategy, sizeof strategy, i + 1);
        row_string(L, t, "tensor", tensor, sizeof tensor, i + 1);
        cce_report_row_init(w, strategy, (int)opt_integer(L, t, "layer", -1, where), tensor);
        row_string(L, t, "note", w->note, sizeof w->note, i + 1);
        w->params_before = opt_integer(L, t, "params_before", 0, where);
        w->params_after = opt_integer(L, t, "params_after", 0, where);
        w->bytes_before = opt_integer(L, t, "bytes_before", 0, where);
        w->bytes_after = opt_integer(L, t, "bytes_after", 0, where);
        w->rank = opt_integer(L, t, "rank", -1, where);
        w->bits_per_weight = opt_number(L, t, "bits_per_weight", NAN);
        w->sparsity = opt_number(L, t, "sparsity", NAN);
        w->rel_fro_error = opt_number(L, t, "rel_fro_error", NAN);
        w->output_error = opt_number(L, t, "output_error", NAN);
        w->seconds = opt_number(L, t, "seconds", NAN);
        lua_pop(L, 1);
    }
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* w:add{key=, experiment=, strategy=, params=, plan=, seed=, protocol=, model=, model_sha256=,
 *       dataset=, dataset_sha256=, seconds=, metrics={name=number}, layers={rows},
 *       tables={cce.table, ...}} -> id. The tables (borrowed from their objects, names distinct)
 * are written with the run in the same atomic step.
 * Metrics are stored in name order. Everything is read into Lua-owned memory first, so nothing
 * leaks when a field is wrong; the run is on disk when this returns. */
static int w_add(lua_State *L) {
    results_writer *w = check_writer(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    cce_run_record rec = {0};
    rec.key = opt_string(L, 2, "key");
    rec.experiment = opt_string(L, 2, "experiment");
    rec.strategy = opt_string(L, 2, "strategy");
    rec.params_json = opt_string(L, 2, "params");
    rec.plan_json = opt_string(L, 2, "plan");
    rec.protocol = opt_string(L, 2, "protocol");
    rec.model = opt_string(L, 2, "model");
    rec.model_sha256 = opt_string(L, 2, "model_sha256");
    rec.dataset = opt_string(L, 2, "dataset");
    rec.dataset_sha256 = opt_string(L, 2, "dataset_sha256");
    rec.seconds = opt_number(L, 2, "seconds", 0.0);
    int64_t seed = opt_integer(L, 2, "seed", 0, "");
    if (seed < 0) return cce_lua_raise(L, "results record: seed = %" PRId64 " is negative", seed);
    rec.seed = (uint64_t)seed;

    /* metrics: sorted names (kept alive by the metrics table) */
    lua_getfield(L, 2, "metrics");
    int metrics = lua_gettop(L);
    size_t n = 0;
    if (lua_istable(L, metrics)) {
        lua_pushnil(L);
        while (lua_next(L, metrics)) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TNUMBER)
                return cce_lua_raise(L,
                                     "results record: metrics must map names to numbers "
                                     "(got a %s key with a %s value)",
                                     luaL_typename(L, -2), luaL_typename(L, -1));
            n++;
            lua_pop(L, 1);
        }
    } else if (!lua_isnil(L, metrics)) {
        return cce_lua_raise(L, "results record: field 'metrics': table expected, got %s",
                             luaL_typename(L, metrics));
    }
    const char **names = lua_newuserdatauv(L, (n ? n : 1) * sizeof *names, 0);
    double *values = lua_newuserdatauv(L, (n ? n : 1) * sizeof *values, 0);
    size_t k = 0;
    if (n) {
        lua_pushnil(L);
        while (lua_next(L, metrics)) {
            names[k++] = lua_tostring(L, -2);
            lua_pop(L, 1);
        }
        qsort(names, n, sizeof *names, cmp_names);
        for (size_t i = 0; i < n; i++) {
            lua_getfield(L, metrics, names[i]);
            values[i] = (double)lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
    }
    rec.n_metrics = n;
    rec.metric_names = names;
    rec.metric_values = values;

    /* layers rows */
    cce_report report = {0};
    lua_getfield(L, 2, "layers");
    int layers = lua_gettop(L);
    if (lua_istable(L, layers)) {
        size_t rows = lua_rawlen(L, layers);
        report.rows = lua_newuserdatauv(L, (rows ? rows : 1) * sizeof *report.rows, 0);
        report.n = report.cap = rows;
        read_rows(L, layers, report.rows, rows);
        rec.layers = &report;
    } else if (!lua_isnil(L, layers)) {
        return cce_lua_raise(L, "results record: field 'layers': table expected, got %s",
                             luaL_typename(L, layers));
    }

    /* extra tables: borrowed from their cce.table objects, which the record table keeps alive */
    lua_getfield(L, 2, "tables");
    int tables = lua_gettop(L);
    if (lua_istable(L, tables)) {
        size_t nt = lua_rawlen(L, tables);
        const cce_table **tabs = lua_newuserdatauv(L, (nt ? nt : 1) * sizeof *tabs, 0);
        for (size_t i = 0; i < nt; i++) {
            lua_rawgeti(L, tables, (lua_Integer)i + 1);
            tabs[i] = cce_lua_check_table(L, lua_gettop(L));
            lua_pop(L, 1);
            for (size_t j = 0; j < i; j++)
                if (!strcmp(tabs[j]->name, tabs[i]->name))
                    return cce_lua_raise(L, "results record: tables: two tables named '%s'",
                                         tabs[i]->name);
        }
        rec.n_tables = nt;
        rec.tables = nt ? tabs : NULL;
    } else if (!lua_isnil(L, tables)) {
        return cce_lua_raise(L,
                             "results record: field 'tables': an array of tables expected, got %s",
                             luaL_typename(L, tables));
    }

    const char *id = NULL;
    cce_status s = cce_results_add(w->r, &rec, &id);
    /* the runs read by w:get are out of date once the file changed */
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);
    if (s) return cce_lua_error(L, s, "recording the run");
    lua_pushstring(L, id);
    return 1;
}

static int w_path(lua_State *L) {
    lua_pushstring(L, check_writer(L)->path);
    return 1;
}

/* ---- Run seeds ------------------------------------------------------------------------------- */

/* cce._run_seed(seed, key) -> integer in [0, 2^63). */
static int l_run_seed(lua_State *L) {
    lua_Integer seed = luaL_checkinteger(L, 1);
    const char *key = luaL_checkstring(L, 2);
    if (seed < 0)
        return cce_lua_raise(L, "run seed: the experiment seed %lld is negative", (long long)seed);
    lua_pushfstring(L, "%I\n%s", seed, key);
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    char hex[65];
    cce_status s = cce_sha256_buffer(text, len, hex);
    if (s) return cce_lua_error(L, s, "run seed");
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = hex[i];
        v = (v << 4) | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    lua_pushinteger(L, (lua_Integer)(v & ((UINT64_C(1) << 63) - 1)));
    return 1;
}

/* ---- Canonical JSON -------------------------------------------------------------------------- */

typedef struct json_ctx {
    int precision; /* the most significant digits a float needs to round-trip */
    char error[1024];
    char path[512];
} json_ctx;

/* The fewest significant digits (1..17) with which v reads back exactly. */
static int round_trip_digits(double v) {
    char buf[40];
    for (int p = 1; p < 17; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, v);
        if (strtod(buf, NULL) == v) return p;
    }
    return 17;
}

static json_t *json_fail(json_ctx *c, const char *fmt, const char *what) {
    snprintf(c->error, sizeof c->error, fmt, *c->path ? c->path : "the value", what);
    return NULL;
}

/* Appends a key to the path (for messages); returns the old length to restore. */
static size_t path_push(json_ctx *c, lua_State *L, int key_idx) {
    size_t old = strlen(c->path);
    if (lua_type(L, key_idx) == LUA_TSTRING)
        snprintf(c->path + old, sizeof c->path - old, "[\"%s\"]", lua_tostring(L, key_idx));
    else
        snprintf(c->path + old, sizeof c->path - old, "[%lld]",
                 (long long)lua_tointeger(L, key_idx));
    return old;
}

static json_t *to_json(lua_State *L, int idx, int depth, json_ctx *c);

/* A table as a JSON array (keys exactly 1..n) or object. */
static json_t *table_to_json(lua_State *L, int idx, int depth, json_ctx *c) {
    if (depth > JSON_DEPTH) return json_fail(c, "%s: nested more than 64 levels (a cycle?)%s", "");
    if (!lua_checkstack(L, 8)) return json_fail(c, "%s: %s", "Lua stack exhausted");
    size_t n = 0, max_index = 0;
    int only_positive_ints = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        n++;
        if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
            size_t i = (size_t)lua_tointeger(L, -1);
            if (i > max_index) max_index = i;
        } else {
            only_positive_ints = 0;
        }
    }
    if (n > 0 && only_positive_ints && max_index == n) {
        json_t *arr = json_array();
        if (!arr) return json_fail(c, "%s: %s", "out of memory");
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, (lua_Integer)i);
            lua_pushinteger(L, (lua_Integer)i);
            size_t old = path_push(c, L, -1);
            lua_pop(L, 1);
            json_t *v = to_json(L, lua_gettop(L), depth + 1, c);
            lua_pop(L, 1);
            c->path[old] = '\0';
            if (!v || json_array_append_new(arr, v)) {
                json_decref(arr);
                return v ? json_fail(c, "%s: %s", "out of memory") : NULL;
            }
        }
        return arr;
    }
    json_t *obj = json_object();
    if (!obj) return json_fail(c, "%s: %s", "out of memory");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        char keybuf[32];
        const char *key = NULL;
        if (lua_type(L, -2) == LUA_TSTRING) {
            key = lua_tostring(L, -2);
        } else if (lua_isinteger(L, -2)) {
            snprintf(keybuf, sizeof keybuf, "%lld", (long long)lua_tointeger(L, -2));
            key = keybuf;
        } else {
            json_fail(c, "%s: a table key of type %s (string or integer keys only)",
                      luaL_typename(L, -2));
            json_decref(obj);
            lua_pop(L, 2);
            return NULL;
        }
        size_t old = path_push(c, L, -2);
        if (json_object_get(obj, key)) {
            json_decref(obj);
            lua_pop(L, 2);
            return json_fail(c, "%s: the key is given both as an integer and as a string%s", "");
        }
        json_t *v = to_json(L, lua_gettop(L), depth + 1, c);
        c->path[old] = '\0';
        if (!v || json_object_set_new(obj, key, v)) {
            json_decref(obj);
            lua_pop(L, 2);
            return v ? json_fail(c, "%s: %s", "bad key (not UTF-8?)") : NULL;
        }
        lua_pop(L, 1);
    }
    return obj;
}

static json_t *to_json(lua_State *L, int idx, int depth, json_ctx *c) {
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return json_null();
    case LUA_TBOOLEAN:
        return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER: {
        if (lua_isinteger(L, idx)) return json_integer((json_int_t)lua_tointeger(L, idx));
        double v = (double)lua_tonumber(L, idx);
        if (!isfinite(v))
            return json_fail(c, "%s: %s is not a finite number",
                             isnan(v) ? "NaN"
                             : v > 0  ? "inf"
                                      : "-inf");
        if (v == floor(v) && fabs(v) < 9007199254740992.0) return json_integer((json_int_t)v);
        int p = round_trip_digits(v);
        if (p > c->precision) c->precision = p;
        return json_real(v);
    }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        json_t *j = json_stringn(s, len);
        return j ? j : json_fail(c, "%s: %s", "a string that is not UTF-8");
    }
    case LUA_TTABLE:
        return table_to_json(L, lua_absindex(L, idx), depth, c);
    default:
        return json_fail(c,
                         "%s: a %s value (only data can be keyed: tables, strings, numbers, "
                         "booleans)",
                         luaL_typename(L, idx));
    }
}

/* cce._json(value) -> canonical JSON text. */
static int l_json(lua_State *L) {
    luaL_checkany(L, 1);
    json_ctx *c = lua_newuserdatauv(L, sizeof *c, 0); /* Lua-owned: freed whatever happens */
    memset(c, 0, sizeof *c);
    c->precision = 1;
    json_t *j = to_json(L, 1, 0, c);
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY |
                                       JSON_REAL_PRECISION(c->precision))
                   : NULL;
    json_decref(j);
    if (!text) {
        if (!*c->error) snprintf(c->error, sizeof c->error, "the value: out of memory");
        return cce_lua_raise(L, "canonical JSON: %s", c->error);
    }
    lua_pushstring(L, text);
    free(text);
    return 1;
}

/* ---- Registration ---------------------------------------------------------------------------- */

void cce_lua_open_results(lua_State *L) {
    static const luaL_Reg writer_methods[] = {
        {"has", w_has}, {"get", w_get}, {"add", w_add}, {"path", w_path}, {NULL, NULL}};
    static const luaL_Reg functions[] = {{"results", l_results},
                                         {"_results_open", l_results_open},
                                         {"_run_seed", l_run_seed},
                                         {"_json", l_json},
                                         {NULL, NULL}};
    cce_lua_new_class(L, WRITER_META, writer_methods, NULL);
    if (luaL_newmetatable(L, GUARD_META)) {
        lua_pushcfunction(L, guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    luaL_setfuncs(L, functions, 0);
    cce_lua_open_experiment(L);
}
