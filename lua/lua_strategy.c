/* Strategies written in Lua (lua/README.md, "Strategies in Lua"): cce.strategy{...} builds a real
 * cce_strategy descriptor (schema, needs, an apply that calls the script's function) and
 * registers it (cce_strategy_register), so m:compress, exp:run and cce.strategies() use it like
 * a built-in one: the framework validates its parameters, builds its plan and drives its block
 * jobs. Also cce.strategies() (every registered strategy with its schema) and cce.ratio_count
 * (the pruning count rule of the built-in strategies).
 *
 * apply(t, ctx) is called once per tensor the plan does not skip, in job order, with t an owned,
 * writable copy of the job's tensor and ctx = {name, layer, n_layers, kind, target, strategy,
 * params, stats, calib_tokens}. The result (t changed in place, or a returned tensor of the same
 * shape) is copied back into the job; the report row is filled as the built-in pruners fill theirs
 * (parameters before/after, sparse bytes, sparsity, relative Frobenius error; the driver adds the
 * output error), and a tensor with zeros is handed to the driver as a sparse encoding (mask and
 * kept values), which it keeps when smaller than float32.
 *
 * Threads and errors. compress.c runs block jobs one after another on the calling thread, and
 * apply runs on the thread that defined the strategy (the script's) or fails. The Lua calls run
 * on the state's main thread inside lua_pcall, so a Lua error never unwinds through libcce: it
 * becomes CCE_ERR_ARG "<strategy>: <tensor>: <Lua message with its script line>".
 *
 * Life: each definition is a userdata (metatable "cce.strategy_def") anchored in the registry
 * until the state closes; its __gc unregisters the descriptor and frees it. */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cce_lua.h"
#include "../strategies/prune_common.h"
#include "strategy.h"

#define DEF_META   "cce.strategy_def"
#define DEFS_KEY   "cce.strategy_defs" /* registry: name -> definition userdata */
#define MAX_PARAMS 64
/* After apply on a tensor of at least this many bytes, a full garbage collection. */
#define FULL_GC_BYTES ((int64_t)16 << 20)

/* One definition. desc comes first: the framework hands &desc back (cce_params_strategy). */
typedef struct lua_strategy {
    cce_strategy desc;
    cce_param *schema; /* [n_params + 1], NULL-name terminated (owned) */
    size_t n_params;
    char **strings; /* every string the descriptor points to (owned) */
    size_t n_strings, cap_strings;
    lua_State *L;     /* the state's main thread */
    int apply_ref;    /* the apply function in the registry */
    pthread_t thread; /* the thread the script runs on */
    int registered;   /* 1: in the strategy registry */
} lua_strategy;

/* The userdata box of a definition: frees it on __gc (an error while building, or state close). */
typedef struct strategy_box {
    lua_strategy *ls;
} strategy_box;

static void strategy_free(lua_strategy *ls) {
    if (!ls) return;
    if (ls->registered) cce_strategy_unregister(&ls->desc);
    for (size_t i = 0; i < ls->n_strings; i++) free(ls->strings[i]);
    free(ls->strings);
    if (ls->schema)
        for (size_t i = 0; i < ls->n_params; i++) free((void *)ls->schema[i].choices);
    free(ls->schema);
    free(ls);
}

static int box_gc(lua_State *L) {
    strategy_box *b = luaL_checkudata(L, 1, DEF_META);
    strategy_free(b->ls);
    b->ls = NULL;
    return 0;
}

/* A copy of s owned by ls; NULL when out of memory. */
static const char *keep_string(lua_strategy *ls, const char *s) {
    if (ls->n_strings == ls->cap_strings) {
        size_t cap = ls->cap_strings ? 2 * ls->cap_strings : 16;
        char **g = realloc(ls->strings, cap * sizeof *g);
        if (!g) return NULL;
        ls->strings = g;
        ls->cap_strings = cap;
    }
    char *c = strdup(s);
    if (c) ls->strings[ls->n_strings++] = c;
    return c;
}

/* ---- The descriptor's callbacks -------------------------------------------------------------- */

typedef struct lua_priv {
    const lua_strategy *ls;
    const cce_params *p; /* valid until fini (strategy.h) */
} lua_priv;

static cce_status lua_init(void *priv, const cce_params *p) {
    lua_priv *lp = priv;
    lp->ls = (const lua_strategy *)cce_params_strategy(p);
    lp->p = p;
    return CCE_OK;
}

/* What the protected steps of one tensor share with the C side. */
typedef struct call_args {
    const lua_priv *lp;
    const cce_block_job *job;
    const cce_job_tensor *jt;
    cce_lua_tensor *in;  /* the copy handed to apply */
    cce_lua_tensor *out; /* the tensor apply left: `in` or the one it returned */
} call_args;

/* Pushes ctx.params: every valued parameter by name, typed. [-0, +1] */
static int push_params(lua_State *L) {
    const lua_priv *lp = lua_touserdata(L, 1);
    const cce_params *p = lp->p;
    const cce_strategy *s = &lp->ls->desc;
    lua_newtable(L);
    for (size_t i = 0; i < lp->ls->n_params; i++) {
        const cce_param *sp = &s->params[i];
        if (!cce_params_has(p, sp->name)) continue;
        int64_t iv;
        double fv;
        int bv, n, m;
        const char *text;
        switch (sp->type) {
        case CCE_PARAM_INT:
            cce_params_get_int(p, sp->name, &iv);
            lua_pushinteger(L, (lua_Integer)iv);
            break;
        case CCE_PARAM_FLOAT:
            cce_params_get_float(p, sp->name, &fv);
            lua_pushnumber(L, fv);
            break;
        case CCE_PARAM_BOOL:
            cce_params_get_bool(p, sp->name, &bv);
            lua_pushboolean(L, bv);
            break;
        case CCE_PARAM_ENUM:
            cce_params_get_enum(p, sp->name, &text, NULL);
            lua_pushstring(L, text);
            break;
        case CCE_PARAM_NM:
            cce_params_get_nm(p, sp->name, &n, &m);
            lua_pushfstring(L, "%d:%d", n, m);
            break;
        default:
            cce_params_get_string(p, sp->name, &text);
            lua_pushstring(L, text ? text : "");
        }
        lua_setfield(L, -2, sp->name);
    }
    return 1;
}

/* The kind of a tensor: the last part of its name without ".weight" ("q_proj", "embed_tokens"). */
static void kind_of(const char *name, char *buf, size_t cap) {
    size_t len = strlen(name);
    if (len > 7 && !strcmp(name + len - 7, ".weight")) len -= 7;
    size_t start = len;
    while (start > 0 && name[start - 1] != '.') start--;
    snprintf(buf, cap, "%.*s", (int)(len - start), name + start);
}

/* Step 1 of a tensor (stack: args, params): pushes the copy t (owned, writable) and ctx. */
static int push_call(lua_State *L) {
    call_args *a = lua_touserdata(L, 1);
    const cce_job_tensor *jt = a->jt;
    const cce_tensor *w = jt->weight;
    a->in = cce_lua_new_tensor(L, w->ndim, w->shape, jt->name);
    memcpy(a->in->t->data, w->data, (size_t)cce_tensor_numel(w) * sizeof(float));
    lua_createtable(L, 0, 9);
    lua_pushstring(L, jt->name);
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, a->job->layer);
    lua_setfield(L, -2, "layer");
    char kind[CCE_PLAN_NAME_MAX];
    kind_of(jt->name, kind, sizeof kind);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    lua_pushnumber(L, jt->target);
    lua_setfield(L, -2, "target");
    lua_pushstring(L, a->lp->ls->desc.name);
    lua_setfield(L, -2, "strategy");
    lua_pushvalue(L, 2); /* the job's params table */
    lua_setfield(L, -2, "params");
    if (a->job->model) {
        lua_pushinteger(L, cce_model_config(a->job->model)->n_layers);
        lua_setfield(L, -2, "n_layers");
    }
    cce_calib_input in;
    const cce_calib *calib = a->job->calib;
    if (calib && w->ndim == 2 && !cce_calib_input_of(calib, jt->name, &in) &&
        in.dim == w->shape[1]) {
        int64_t dim = in.dim;
        float *s = cce_lua_new_tensor(L, 1, &dim, "")->t->data; /* [in] ||X_j|| */
        for (int64_t j = 0; j < dim; j++) {
            double norm = sqrt(in.sum_sq[j]);
            s[j] = norm < FLT_MAX ? (float)norm : FLT_MAX; /* as Wanda scales */
        }
        lua_setfield(L, -2, "stats");
        lua_pushinteger(L, (lua_Integer)in.n_tokens);
        lua_setfield(L, -2, "calib_tokens");
    }
    cce_error_clear(); /* no statistics for this tensor is not an error */
    return 2;
}

/* Step 2: calls apply(t, ctx) (stack: args, apply, t, ctx) and checks what it left. Pushes the
 * resulting tensor. */
static int run_apply(lua_State *L) {
    call_args *a = lua_touserdata(L, 1);
    lua_pushvalue(L, 3); /* t, kept at 3 */
    lua_insert(L, 2);    /* args, t, apply, t, ctx */
    lua_call(L, 2, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        a->out = cce_lua_check_tensor(L, 2); /* raises if apply closed it */
        return 1;
    }
    if (!cce_lua_test_object(L, -1, CCE_LUA_TENSOR))
        return cce_lua_raise(L, "apply returned a %s; return a tensor of the same shape or nothing",
                             luaL_typename(L, -1));
    a->out = cce_lua_check_tensor(L, -1);
    if (!cce_tensor_same_shape(a->out->t, a->in->t)) {
        char got[96] = "", want[96] = "";
        for (int i = 0, ug = 0, uw = 0; i < a->in->t->ndim || i < a->out->t->ndim; i++) {
            if (i < a->out->t->ndim)
                ug += snprintf(got + ug, sizeof got - (size_t)ug, "%s%lld", i ? ", " : "",
                               (long long)a->out->t->shape[i]);
            if (i < a->in->t->ndim)
                uw += snprintf(want + uw, sizeof want - (size_t)uw, "%s%lld", i ? ", " : "",
                               (long long)a->in->t->shape[i]);
        }
        return cce_lua_raise(L, "apply returned a tensor of shape [%s]; the tensor has shape [%s]",
                             got, want);
    }
    return 1;
}

/* Turns a Lua error into text: the message (with its script line), plus a traceback when the
 * state was made with traceback on. */
static int message_handler(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    const cce_lua_options *o = cce_lua_get_options(L);
    if (o && o->traceback) luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Runs f(args) protected with nargs values already pushed after it; nres results stay. On error
 * fills the detail "<strategy>: <tensor>: <message>" and leaves the stack at its height before
 * f was pushed. */
static cce_status protected(lua_State *L, lua_CFunction f, void *args, int nargs, int nres,
                            const char *strategy, const char *tensor) {
    int base = lua_gettop(L) - nargs; /* f and args go below the extra arguments */
    lua_pushcfunction(L, message_handler);
    lua_insert(L, base + 1);
    lua_pushcfunction(L, f);
    lua_insert(L, base + 2);
    lua_pushlightuserdata(L, args);
    lua_insert(L, base + 3);
    int rc = lua_pcall(L, nargs + 1, nres, base + 1);
    if (rc == LUA_OK) {
        lua_remove(L, base + 1);
        return CCE_OK;
    }
    const char *msg = lua_tostring(L, -1);
    cce_status st = cce_fail(rc == LUA_ERRMEM ? CCE_ERR_NOMEM : CCE_ERR_ARG, "%s: %s: %s", strategy,
                             tensor, msg ? msg : "(error in the error handler)");
    lua_settop(L, base);
    return st;
}

/* Fills the report row of a tensor changed from before [numel] to jt->weight and hands the driver
 * its sparse encoding, as the built-in pruners do. */
static cce_status finish_row(cce_job_tensor *jt, const float *before, cce_report_row *row) {
    const float *after = jt->weight->data;
    int64_t numel = cce_tensor_numel(jt->weight);
    double norm2 = 0, diff2 = 0;
    for (int64_t j = 0; j < numel; j++) {
        double b = before[j], d = b - (double)after[j];
        norm2 += b * b;
        diff2 += d * d;
    }
    return cce_prune_finish(jt, row, numel, norm2, diff2, 0, 0, numel);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One tensor: copy out, apply, copy back, report. The stack is left as found. */
static cce_status apply_tensor(const lua_priv *lp, cce_block_job *job, cce_job_tensor *jt,
                               int params_idx, cce_report *r) {
    const lua_strategy *ls = lp->ls;
    lua_State *L = ls->L;
    int top = lua_gettop(L);
    double t0 = now_seconds();
    call_args a = {lp, job, jt, NULL, NULL};
    lua_pushvalue(L, params_idx);
    cce_status st = protected(L, push_call, &a, 1, 2, ls->desc.name, jt->name);
    if (st) return st;
    /* stack: t, ctx -> apply, t, ctx (t stays reachable below until closed) */
    lua_rawgeti(L, LUA_REGISTRYINDEX, ls->apply_ref);
    lua_pushvalue(L, top + 1);
    lua_pushvalue(L, top + 2);
    st = protected(L, run_apply, &a, 3, 1, ls->desc.name, jt->name);
    float *before = NULL;
    if (!st) {
        /* the result is on the stack (reachable, checked open): copy it into the job */
        int64_t numel = cce_tensor_numel(jt->weight);
        before = malloc((size_t)(numel ? numel : 1) * sizeof *before); /* [numel] */
        if (!before) {
            st = cce_fail(CCE_ERR_NOMEM, "%s: %s: out of memory", ls->desc.name, jt->name);
        } else {
            memcpy(before, jt->weight->data, (size_t)numel * sizeof *before);
            memcpy(jt->weight->data, a.out->t->data, (size_t)numel * sizeof *before);
            st = cce_tensor_check_finite(jt->weight, jt->name);
            if (st) cce_error_prefix("%s: apply left ", ls->desc.name);
        }
    }
    if (a.in) cce_lua_object_close(&a.in->obj); /* frees the copy unless the script kept views */
    lua_settop(L, top);
    /* The operations' temporaries hold tensor-sized buffers; the collector hears of them
     * (cce_lua_account_memory) but frees them only after a while: for a large tensor, now. */
    if (cce_tensor_numel(jt->weight) >= (FULL_GC_BYTES / (int64_t)sizeof(float)))
        lua_gc(L, LUA_GCCOLLECT, 0);
    cce_report_row row;
    cce_report_row_init(&row, ls->desc.name, job->layer, jt->name);
    if (!st) st = finish_row(jt, before, &row);
    free(before);
    row.seconds = now_seconds() - t0;
    if (!st) st = cce_report_add(r, &row);
    return st;
}

static cce_status lua_apply(void *priv, cce_block_job *job, cce_report *r) {
    const lua_priv *lp = priv;
    const lua_strategy *ls = lp->ls;
    if (!ls->registered)
        return cce_fail(CCE_ERR_STATE, "%s: the Lua state that defined it is closed",
                        ls->desc.name);
    if (!pthread_equal(pthread_self(), ls->thread))
        return cce_fail(CCE_ERR_STATE,
                        "%s: a strategy written in Lua runs only on its script's thread",
                        ls->desc.name);
    lua_State *L = ls->L;
    if (!lua_checkstack(L, 32))
        return cce_fail(CCE_ERR_NOMEM, "%s: the Lua stack is full", ls->desc.name);
    int top = lua_gettop(L);
    char where[64];
    snprintf(where, sizeof where, "layer %d", job->layer);
    cce_status st = protected(L, push_params, (void *)lp, 0, 1, ls->desc.name, where);
    for (size_t i = 0; !st && i < job->n; i++) {
        cce_job_tensor *jt = &job->tensors[i];
        if (!jt->skip) st = apply_tensor(lp, job, jt, top + 1, r);
    }
    lua_settop(L, top);
    return st;
}

/* ---- cce.strategy{...} ----------------------------------------------------------------------- */

static const char *const strategy_fields[] = {"name", "summary", "params", "needs", "apply", NULL};
static const char *const param_fields[] = {"name",    "type",     "default",  "min",
                                           "max",     "min_open", "max_open", "required",
                                           "choices", "help",     NULL};

/* Shortest "%g" text that reads back as v (the schema's defaults are text). */
static void format_double(double v, char *buf, size_t cap) {
    snprintf(buf, cap, "%.15g", v);
    if (strtod(buf, NULL) != v) snprintf(buf, cap, "%.17g", v);
}

static cce_param_type check_type(lua_State *L, const char *who, const char *type) {
    static const struct {
        const char *name;
        cce_param_type t;
    } types[] = {{"float", CCE_PARAM_FLOAT}, {"int", CCE_PARAM_INT},       {"bool", CCE_PARAM_BOOL},
                 {"enum", CCE_PARAM_ENUM},   {"string", CCE_PARAM_STRING}, {"nm", CCE_PARAM_NM}};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (!strcmp(type, types[i].name)) return types[i].t;
    cce_lua_raise(L, "cce.strategy: %s: type '%s' is not one of float, int, bool, enum, string, nm",
                  who, type);
    return CCE_PARAM_FLOAT;
}

/* The default at the top of the stack as schema text (kept by ls), or NULL for nil. */
static const char *default_text(lua_State *L, lua_strategy *ls, const cce_param *p,
                                const char *who) {
    char buf[64];
    const char *text = NULL;
    int t = lua_type(L, -1);
    if (t == LUA_TNIL) return NULL;
    switch (p->type) {
    case CCE_PARAM_INT:
        if (!lua_isinteger(L, -1))
            cce_lua_raise(L, "cce.strategy: %s: default must be an integer, got %s", who,
                          t == LUA_TNUMBER ? "a fraction" : lua_typename(L, t));
        snprintf(buf, sizeof buf, "%lld", (long long)lua_tointeger(L, -1));
        text = buf;
        break;
    case CCE_PARAM_FLOAT:
        if (t != LUA_TNUMBER)
            cce_lua_raise(L, "cce.strategy: %s: default must be a number, got %s", who,
                          lua_typename(L, t));
        format_double(lua_tonumber(L, -1), buf, sizeof buf);
        text = buf;
        break;
    case CCE_PARAM_BOOL:
        if (t != LUA_TBOOLEAN)
            cce_lua_raise(L, "cce.strategy: %s: default must be a boolean, got %s", who,
                          lua_typename(L, t));
        text = lua_toboolean(L, -1) ? "true" : "false";
        break;
    default:
        if (t != LUA_TSTRING)
            cce_lua_raise(L, "cce.strategy: %s: default must be a string, got %s", who,
                          lua_typename(L, t));
        text = lua_tostring(L, -1);
    }
    const char *kept = keep_string(ls, text);
    if (!kept) cce_lua_raise(L, "cce.strategy: out of memory");
    return kept;
}

/* Reads params[i] (the table at the top of the stack) into ls->schema[i]. */
static void read_param(lua_State *L, lua_strategy *ls, size_t i) {
    int idx = lua_gettop(L);
    char who[96];
    snprintf(who, sizeof who, "params[%zu]", i + 1);
    if (!lua_istable(L, idx))
        cce_lua_raise(L, "cce.strategy: %s must be a table {name=, type=, ...}, got %s", who,
                      luaL_typename(L, idx));
    cce_lua_check_fields(L, idx, 1, "cce.strategy", param_fields);
    cce_param *p = &ls->schema[i];
    const char *name = NULL, *type = NULL, *help = NULL;
    if (!cce_lua_field_string(L, idx, 1, "cce.strategy", "name", &name))
        cce_lua_raise(L, "cce.strategy: %s has no name", who);
    if (!(p->name = keep_string(ls, name))) cce_lua_raise(L, "cce.strategy: out of memory");
    snprintf(who, sizeof who, "parameter '%s'", name);
    if (!cce_lua_field_string(L, idx, 1, "cce.strategy", "type", &type))
        cce_lua_raise(L, "cce.strategy: %s has no type (float, int, bool, enum, string, nm)", who);
    p->type = check_type(L, who, type);
    p->min = -INFINITY;
    p->max = INFINITY;
    cce_lua_field_number(L, idx, 1, "cce.strategy", "min", -INFINITY, INFINITY, &p->min);
    cce_lua_field_number(L, idx, 1, "cce.strategy", "max", -INFINITY, INFINITY, &p->max);
    int flag;
    if (cce_lua_field_boolean(L, idx, 1, "cce.strategy", "min_open", &flag) && flag)
        p->flags |= CCE_PARAM_MIN_OPEN;
    if (cce_lua_field_boolean(L, idx, 1, "cce.strategy", "max_open", &flag) && flag)
        p->flags |= CCE_PARAM_MAX_OPEN;
    if (cce_lua_field_boolean(L, idx, 1, "cce.strategy", "required", &flag) && flag)
        p->flags |= CCE_PARAM_REQUIRED;
    if (!cce_lua_field_string(L, idx, 1, "cce.strategy", "help", &help)) help = "";
    if (!(p->help = keep_string(ls, help))) cce_lua_raise(L, "cce.strategy: out of memory");
    lua_getfield(L, idx, "choices");
    if (!lua_isnil(L, -1)) {
        if (p->type != CCE_PARAM_ENUM)
            cce_lua_raise(L, "cce.strategy: %s: choices are for type \"enum\" only", who);
        if (!lua_istable(L, -1))
            cce_lua_raise(L, "cce.strategy: %s: choices must be an array of strings, got %s", who,
                          luaL_typename(L, -1));
        size_t n = lua_rawlen(L, -1);
        const char **choices = calloc(n + 1, sizeof *choices); /* [n + 1], NULL-terminated */
        if (!choices) cce_lua_raise(L, "cce.strategy: out of memory");
        p->choices = choices; /* owned by ls from here on */
        for (size_t c = 0; c < n; c++) {
            if (lua_rawgeti(L, -1, (lua_Integer)c + 1) != LUA_TSTRING)
                cce_lua_raise(L, "cce.strategy: %s: choices[%zu] must be a string, got %s", who,
                              c + 1, luaL_typename(L, -1));
            if (!(choices[c] = keep_string(ls, lua_tostring(L, -1))))
                cce_lua_raise(L, "cce.strategy: out of memory");
            lua_pop(L, 1);
        }
    } else if (p->type == CCE_PARAM_ENUM) {
        cce_lua_raise(L, "cce.strategy: %s: an enum needs choices = {...}", who);
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "default");
    p->def = default_text(L, ls, p, who);
    lua_pop(L, 1);
}

static unsigned read_needs(lua_State *L, int idx) {
    unsigned needs = 0;
    int t = lua_getfield(L, idx, "needs");
    if (t == LUA_TSTRING) {
        lua_createtable(L, 1, 0);
        lua_insert(L, -2);
        lua_rawseti(L, -2, 1);
    } else if (t != LUA_TNIL && t != LUA_TTABLE) {
        cce_lua_raise(L,
                      "cce.strategy: needs must be a list of strings ({\"calibration\"}), got %s",
                      lua_typename(L, t));
    }
    if (t != LUA_TNIL) {
        size_t n = lua_rawlen(L, -1);
        for (size_t i = 1; i <= n; i++) {
            const char *need = lua_rawgeti(L, -1, (lua_Integer)i) == LUA_TSTRING
                                   ? lua_tostring(L, -1)
                                   : "(not a string)";
            if (!strcmp(need, "calibration"))
                needs |= CCE_NEEDS_CALIBRATION;
            else if (!strcmp(need, "sequential"))
                needs |= CCE_NEEDS_CALIBRATION | CCE_NEEDS_SEQUENTIAL;
            else
                cce_lua_raise(L, "cce.strategy: unknown need '%s' (needs: calibration, sequential)",
                              need);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return needs;
}

/* cce.strategy{name=, summary=, params={...}, needs={...}, apply=function(t, ctx)}: registers
 * the strategy; returns its name. */
static int l_strategy(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    cce_lua_check_fields(L, 1, 1, "cce.strategy", strategy_fields);
    /* the box first: whatever raises below, its __gc frees the definition */
    strategy_box *box = lua_newuserdatauv(L, sizeof *box, 0); /* at 2 */
    box->ls = NULL;
    luaL_setmetatable(L, DEF_META);
    lua_strategy *ls = calloc(1, sizeof *ls);
    if (!ls) return cce_lua_raise(L, "cce.strategy: out of memory");
    box->ls = ls;
    ls->apply_ref = LUA_NOREF;
    const char *name = NULL, *summary = NULL;
    if (!cce_lua_field_string(L, 1, 1, "cce.strategy", "name", &name))
        return cce_lua_raise(L, "cce.strategy: the strategy needs a name");
    if (lua_getfield(L, 1, "apply") != LUA_TFUNCTION)
        return cce_lua_raise(L, "cce.strategy: '%s' needs apply = function(t, ctx) ... end, got %s",
                             name, luaL_typename(L, -1));
    lua_pop(L, 1);
    cce_lua_where(L);
    char where[200];
    snprintf(where, sizeof where, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    size_t wl = strlen(where);
    if (wl >= 2 && !strcmp(where + wl - 2, ": ")) where[wl - 2] = '\0';
    char def_summary[256];
    if (!cce_lua_field_string(L, 1, 1, "cce.strategy", "summary", &summary)) {
        snprintf(def_summary, sizeof def_summary, "written in Lua%s%s%s", *where ? " (" : "", where,
                 *where ? ")" : "");
        summary = def_summary;
    }
    ls->desc.api_version = CCE_STRATEGY_API_VERSION;
    if (!(ls->desc.name = keep_string(ls, name)) || !(ls->desc.summary = keep_string(ls, summary)))
        return cce_lua_raise(L, "cce.strategy: out of memory");
    int pt = lua_getfield(L, 1, "params");
    if (pt != LUA_TNIL && pt != LUA_TTABLE)
        return cce_lua_raise(L, "cce.strategy: '%s': params must be an array of tables, got %s",
                             name, lua_typename(L, pt));
    size_t n = pt == LUA_TTABLE ? lua_rawlen(L, -1) : 0;
    if (n > MAX_PARAMS)
        return cce_lua_raise(L, "cce.strategy: '%s': %zu parameters (at most %d)", name, n,
                             MAX_PARAMS);
    if (!(ls->schema = calloc(n + 1, sizeof *ls->schema)))
        return cce_lua_raise(L, "cce.strategy: out of memory");
    ls->n_params = n;
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        read_param(L, ls, i);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    ls->desc.params = ls->schema;
    ls->desc.needs = read_needs(L, 1);
    ls->desc.priv_size = sizeof(lua_priv);
    ls->desc.init = lua_init;
    ls->desc.apply = lua_apply;
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    ls->L = lua_tothread(L, -1);
    lua_pop(L, 1);
    ls->thread = pthread_self();
    if (cce_strategy_register(&ls->desc, "cce.strategy"))
        return cce_lua_raise(L, "%s", cce_error_detail());
    ls->registered = 1;
    /* anchored for the state's lifetime: the apply function and the definition */
    lua_getfield(L, 1, "apply");
    ls->apply_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, DEFS_KEY);
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, ls->desc.name);
    lua_pop(L, 1);
    lua_pushstring(L, ls->desc.name);
    return 1;
}

/* cce.ratio_count(ratio, n): how many of n weights a ratio removes, floor(ratio * n) robust to the
 * rounding of ratio * n (cce_ratio_count): the count every built-in pruner uses. */
static int l_ratio_count(lua_State *L) {
    double ratio = luaL_checknumber(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    if (isnan(ratio)) return cce_lua_raise(L, "cce.ratio_count: the ratio is NaN");
    if (n < 0) return cce_lua_raise(L, "cce.ratio_count: n = %lld is negative", (long long)n);
    lua_pushinteger(L, (lua_Integer)cce_ratio_count(ratio, (int64_t)n));
    return 1;
}

/* ---- cce.strategies() ------------------------------------------------------------------------ */

static const char *lua_type_name(cce_param_type t) {
    switch (t) {
    case CCE_PARAM_INT:
        return "int";
    case CCE_PARAM_FLOAT:
        return "float";
    case CCE_PARAM_BOOL:
        return "bool";
    case CCE_PARAM_ENUM:
        return "enum";
    case CCE_PARAM_NM:
        return "nm";
    default:
        return "string";
    }
}

/* Pushes a schema default (text) as a Lua value of the parameter's type. */
static void push_default(lua_State *L, const cce_param *p) {
    if ((p->type == CCE_PARAM_INT || p->type == CCE_PARAM_FLOAT) && lua_stringtonumber(L, p->def)) {
        if (p->type == CCE_PARAM_FLOAT) { /* "5" is the float 5.0 */
            lua_Number v = lua_tonumber(L, -1);
            lua_pop(L, 1);
            lua_pushnumber(L, v);
        }
        return;
    }
    if (p->type == CCE_PARAM_BOOL) {
        static const char *const yes[] = {"true", "yes", "on", "1"};
        int b = 0;
        for (int i = 0; i < 4; i++) b |= !strcasecmp(p->def, yes[i]);
        lua_pushboolean(L, b);
        return;
    }
    lua_pushstring(L, p->def);
}

/* Pushes {summary=, origin=, needs={...}, params={{name=, type=, default=, range=, required=,
 * choices=, help=}, ...}} for one strategy. */
static void push_strategy_info(lua_State *L, const cce_strategy *s) {
    lua_createtable(L, 0, 4);
    lua_pushstring(L, s->summary);
    lua_setfield(L, -2, "summary");
    int builtin = 0;
    for (size_t i = 0; cce_builtin_strategies[i]; i++) builtin |= cce_builtin_strategies[i] == s;
    lua_pushstring(L, builtin ? "built-in" : s->apply == lua_apply ? "lua" : "external");
    lua_setfield(L, -2, "origin");
    lua_createtable(L, 2, 0);
    int nn = 0;
    if (s->needs & CCE_NEEDS_CALIBRATION)
        lua_pushliteral(L, "calibration"), lua_rawseti(L, -2, ++nn);
    if (s->needs & CCE_NEEDS_SEQUENTIAL) lua_pushliteral(L, "sequential"), lua_rawseti(L, -2, ++nn);
    if (s->needs & CCE_NEEDS_RESIZE) lua_pushliteral(L, "resize"), lua_rawseti(L, -2, ++nn);
    lua_setfield(L, -2, "needs");
    lua_newtable(L);
    for (int i = 0; s->params && s->params[i].name; i++) {
        const cce_param *p = &s->params[i];
        lua_createtable(L, 0, 7);
        lua_pushstring(L, p->name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, lua_type_name(p->type));
        lua_setfield(L, -2, "type");
        if (p->def) {
            push_default(L, p);
            lua_setfield(L, -2, "default");
        }
        char range[512];
        cce_param_range_text(p, range, sizeof range);
        lua_pushstring(L, range);
        lua_setfield(L, -2, "range");
        lua_pushboolean(L, (p->flags & CCE_PARAM_REQUIRED) != 0);
        lua_setfield(L, -2, "required");
        if (p->type == CCE_PARAM_ENUM && p->choices) {
            lua_newtable(L);
            for (int c = 0; p->choices[c]; c++) {
                lua_pushstring(L, p->choices[c]);
                lua_rawseti(L, -2, c + 1);
            }
            lua_setfield(L, -2, "choices");
        }
        lua_pushstring(L, p->help ? p->help : "");
        lua_setfield(L, -2, "help");
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "params");
}

/* cce.strategies(): {name -> info} of every registered strategy (built-in, external, Lua). */
static int l_strategies(lua_State *L) {
    size_t n = cce_strategy_count();
    lua_createtable(L, 0, (int)n);
    for (size_t i = 0; i < n; i++) {
        const cce_strategy *s = cce_strategy_at(i);
        push_strategy_info(L, s);
        lua_setfield(L, -2, s->name);
    }
    return 1;
}

static const luaL_Reg strategy_funcs[] = {
    {"strategy", l_strategy},
    {"strategies", l_strategies},
    {"ratio_count", l_ratio_count},
    {NULL, NULL},
};

void cce_lua_open_strategy(lua_State *L) {
    if (luaL_newmetatable(L, DEF_META)) {
        lua_pushcfunction(L, box_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushliteral(L, DEF_META);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    luaL_setfuncs(L, strategy_funcs, 0);
}
