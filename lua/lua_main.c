/* The Lua engine: the sandboxed state, the `cce` module table and its prelude modules, require,
 * running scripts, and error positions (cce_lua.h; lua/README.md, "Sandbox" and "Errors"). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "cce_lua.h"

#ifndef CCE_VERSION
#error "CCE_VERSION must be defined"
#endif

/* Registry keys (their addresses). */
static const char OPTIONS_KEY = 'o'; /* a userdata holding the cce_lua_options */
static const char LOADING_KEY = 'l'; /* the marker of a prelude module being loaded */

/* ---- Options --------------------------------------------------------------------------------- */

const cce_lua_options *cce_lua_get_options(lua_State *L) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &OPTIONS_KEY);
    const cce_lua_options *o = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return o;
}

void cce_lua_progress(lua_State *L, const char *label, long done, long total) {
    const cce_lua_options *o = cce_lua_get_options(L);
    if (o && o->progress) o->progress(label, done, total);
}

void cce_lua_progress_end(lua_State *L) {
    const cce_lua_options *o = cce_lua_get_options(L);
    if (o && o->progress_end) o->progress_end();
}

/* ---- Error positions ------------------------------------------------------------------------- */

/* Prelude chunks are named "=cce/NAME.lua"; user scripts "@PATH" and load()ed chunks anything
 * else. */
static int is_prelude_source(const char *source) {
    return source && source[0] == '=' && !strncmp(source + 1, "cce/", 4);
}

/* The innermost stack level (from `from`) running user Lua code; 0 if none. */
static int user_level(lua_State *L, int from, lua_Debug *ar) {
    for (int level = from; lua_getstack(L, level, ar); level++) {
        if (!lua_getinfo(L, "Sl", ar)) continue;
        if (ar->currentline > 0 && !is_prelude_source(ar->source)) return level;
    }
    return 0;
}

void cce_lua_where(lua_State *L) {
    lua_Debug ar;
    if (user_level(L, 1, &ar))
        lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
    else
        lua_pushliteral(L, "");
}

/* C printf formatting (lua_pushfstring knows only a few conversions). */
int cce_lua_raise(lua_State *L, const char *fmt, ...) {
    va_list ap, again;
    cce_lua_where(L);
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    luaL_Buffer b;
    char *buf = luaL_buffinitsize(L, &b, (size_t)n + 1);
    vsnprintf(buf, (size_t)n + 1, fmt, again);
    va_end(again);
    luaL_pushresultsize(&b, (size_t)n);
    lua_concat(L, 2);
    return lua_error(L);
}

int cce_lua_error(lua_State *L, cce_status s, const char *fmt, ...) {
    char context[512] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(context, sizeof context, fmt, ap);
        va_end(ap);
    }
    const char *detail = cce_error_detail();
    if (!*detail) detail = cce_strerror(s);
    cce_lua_where(L);
    lua_pushfstring(L, "%s%s%s", context, *context ? ": " : "", detail);
    lua_concat(L, 2);
    cce_error_clear();
    return lua_error(L);
}

/* If msg starts with the position of a prelude frame that lies between the error and the
 * innermost user frame ("cce/experiment.lua:40: ..."), replaces that position with the user
 * frame's, so the message names the script line that called into the prelude. Pushes the
 * result. */
static void relocate_message(lua_State *L, const char *msg) {
    lua_Debug ar, user;
    int ulevel = user_level(L, 1, &user);
    for (int level = 1; ulevel && level < ulevel && lua_getstack(L, level, &ar); level++) {
        if (!lua_getinfo(L, "S", &ar) || !is_prelude_source(ar.source)) continue;
        size_t n = strlen(ar.short_src);
        if (strncmp(msg, ar.short_src, n) || msg[n] != ':') continue;
        const char *p = msg + n + 1;
        if (*p < '0' || *p > '9') continue;
        while (*p >= '0' && *p <= '9') p++;
        if (p[0] != ':' || p[1] != ' ') continue;
        lua_pushfstring(L, "%s:%d: %s", user.short_src, user.currentline, p + 2);
        return;
    }
    lua_pushstring(L, msg);
}

/* The message handler of every protected run: a string message (or a __tostring-able object),
 * relocated to the script line, with a traceback when asked for. */
static int message_handler(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    relocate_message(L, msg);
    const cce_lua_options *o = cce_lua_get_options(L);
    if (o && o->traceback) luaL_traceback(L, L, lua_tostring(L, -1), 1);
    return 1;
}

/* ---- Sandbox --------------------------------------------------------------------------------- */

/* load(chunk [, chunkname [, mode [, env]]]) for text chunks only: chunk must be a string and
 * mode "t" (the default). Like the standard load, a failure returns nil and a message. */
static int safe_load(lua_State *L) {
    size_t len;
    if (lua_type(L, 1) != LUA_TSTRING)
        return luaL_argerror(L, 1, "string expected (cce scripts load text chunks only)");
    const char *chunk = lua_tolstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, chunk);
    const char *mode = luaL_optstring(L, 3, "t");
    int env = !lua_isnone(L, 4) ? 4 : 0;
    if (strcmp(mode, "t") != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "load: mode '%s' refused: cce scripts load text chunks only", mode);
        return 2;
    }
    if (luaL_loadbufferx(L, chunk, len, name, "t") != LUA_OK) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    if (env) {
        lua_pushvalue(L, env);
        if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
    }
    return 1;
}

/* io.open(path [, mode]) for reading only. The original io.open is upvalue 1. */
static int read_only_open(lua_State *L) {
    luaL_checkstring(L, 1);
    const char *mode = luaL_optstring(L, 2, "r");
    if (strcmp(mode, "r") != 0 && strcmp(mode, "rb") != 0)
        return cce_lua_raise(L,
                             "io.open: mode '%s' refused: cce scripts may only read files "
                             "(mode \"r\" or \"rb\")",
                             mode);
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 2, LUA_MULTRET);
    return lua_gettop(L);
}

/* io.input([file]) for reading only: a file name is opened in mode "r". Upvalue 1: io.input. */
static int read_only_input(lua_State *L) {
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* __index of the restricted io and os tables: a clear error for what the sandbox left out.
 * Upvalue 1: the library name, upvalue 2: the fields it has. */
static int refused_field(lua_State *L) {
    return cce_lua_raise(L, "%s.%s is not available in cce scripts (%s gives %s)",
                         lua_tostring(L, lua_upvalueindex(1)), luaL_tolstring(L, 2, NULL),
                         lua_tostring(L, lua_upvalueindex(1)),
                         lua_tostring(L, lua_upvalueindex(2)));
}

/* __index of the global table: a clear error for the globals the sandbox removed (reading any
 * other missing global gives nil, as usual). */
static int refused_global(lua_State *L) {
    const char *k = lua_tostring(L, 2);
    if (lua_type(L, 2) != LUA_TSTRING) return 0;
    if (!strcmp(k, "io") || !strcmp(k, "os"))
        return cce_lua_raise(L,
                             "'%s' is not available: cce scripts get io and os (reading files, "
                             "the clock, the environment) only with cce run --unsafe",
                             k);
    if (!strcmp(k, "dofile") || !strcmp(k, "loadfile") || !strcmp(k, "debug") ||
        !strcmp(k, "package"))
        return cce_lua_raise(L,
                             "'%s' is not available in cce scripts (the sandbox removes it; "
                             "require gives \"cce\" and its prelude modules)",
                             k);
    return 0;
}

/* Sets a metatable whose __index is f (with the upvalues on the stack top) on the table at t. */
static void set_index_metatable(lua_State *L, int t, lua_CFunction f, int n_upvalues) {
    t = lua_absindex(L, t);
    lua_pushcclosure(L, f, n_upvalues);
    lua_createtable(L, 0, 1);
    lua_insert(L, -2);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, t);
}

/* Copies the fields names[] of the table at src into the table on the stack top. */
static void copy_fields(lua_State *L, int src, const char *const *names) {
    for (size_t i = 0; names[i]; i++) {
        lua_getfield(L, src, names[i]);
        lua_setfield(L, -2, names[i]);
    }
}

/* The restricted io and os of --unsafe (lua/README.md, "Sandbox"). */
static void open_unsafe_libraries(lua_State *L) {
    static const char *const io_fields[] = {"lines", "read",   "type",   "write",
                                            "stdin", "stdout", "stderr", NULL};
    static const char *const os_fields[] = {"clock", "time", "date", "difftime", "getenv", NULL};
    luaL_requiref(L, LUA_IOLIBNAME, luaopen_io, 0);
    int io = lua_gettop(L);
    lua_newtable(L);
    copy_fields(L, io, io_fields);
    lua_getfield(L, io, "open");
    lua_pushcclosure(L, read_only_open, 1);
    lua_setfield(L, -2, "open");
    lua_getfield(L, io, "input");
    lua_pushcclosure(L, read_only_input, 1);
    lua_setfield(L, -2, "input");
    lua_pushliteral(L, "io");
    lua_pushliteral(L, "open and input (reading only), lines, read, type, write (standard output), "
                       "stdin, stdout, stderr");
    set_index_metatable(L, -3, refused_field, 2);
    lua_setglobal(L, LUA_IOLIBNAME);
    lua_pop(L, 1);
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
    int os = lua_gettop(L);
    lua_newtable(L);
    copy_fields(L, os, os_fields);
    lua_pushliteral(L, "os");
    lua_pushliteral(L, "clock, time, date, difftime, getenv");
    set_index_metatable(L, -3, refused_field, 2);
    lua_setglobal(L, LUA_OSLIBNAME);
    lua_pop(L, 1);
    /* The full libraries stay reachable only from C (file handles need io's metatable). */
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushnil(L);
    lua_setfield(L, -2, LUA_IOLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, LUA_OSLIBNAME);
    lua_pop(L, 1);
}

/* ---- The cce module, its prelude and require ---------------------------------------------------
 */

static const cce_lua_prelude *find_prelude(const char *name) {
    for (const cce_lua_prelude *p = cce_lua_prelude_modules; p->name; p++)
        if (!strcmp(p->name, name)) return p;
    return NULL;
}

/* Pushes the names of the prelude modules joined by ", " ("none" when there are none). */
static void push_prelude_names(lua_State *L) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (const cce_lua_prelude *p = cce_lua_prelude_modules; p->name; p++) {
        if (p != cce_lua_prelude_modules) luaL_addstring(&b, ", ");
        luaL_addstring(&b, p->name);
    }
    if (!cce_lua_prelude_modules[0].name) luaL_addstring(&b, "none");
    luaL_pushresult(&b);
}

/* require(name): "cce", or a prelude module "cce.NAME", which runs once with (name, cce) as its
 * `...`; its value is what it returns, or the cce table when it returns nothing. */
static int safe_require(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    const cce_lua_prelude *p = strcmp(name, "cce") ? find_prelude(name) : NULL;
    if (strcmp(name, "cce") && !p) {
        push_prelude_names(L);
        return cce_lua_raise(L,
                             "require: module '%s' is not available: scripts can require only "
                             "\"cce\" and its prelude modules (%s)",
                             name, lua_tostring(L, -1));
    }
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    int loaded = lua_gettop(L);
    if (lua_getfield(L, loaded, name) != LUA_TNIL) {
        if (lua_touserdata(L, -1) == &LOADING_KEY)
            return cce_lua_raise(L, "require: module '%s' requires itself while loading", name);
        return 1;
    }
    lua_pop(L, 1);
    lua_pushlightuserdata(L, (void *)&LOADING_KEY);
    lua_setfield(L, loaded, name);
    lua_pushfstring(L, "=cce/%s.lua", name + 4);
    if (luaL_loadbufferx(L, p->source, p->len, lua_tostring(L, -1), "t") != LUA_OK) {
        lua_pushnil(L);
        lua_setfield(L, loaded, name);
        return lua_error(L);
    }
    lua_pushstring(L, name);
    lua_getfield(L, loaded, "cce");
    lua_call(L, 2, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_getfield(L, loaded, "cce");
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, loaded, name);
    return 1;
}

/* __index of the cce table: cce.NAME for a prelude module "cce.NAME" loads it on first use. The
 * module either sets cce.NAME itself, or returns a table with a field NAME, or returns the value
 * (a function or table) that cce.NAME becomes. */
static int cce_index(lua_State *L) {
    if (lua_type(L, 2) != LUA_TSTRING) return 0;
    lua_pushfstring(L, "cce.%s", lua_tostring(L, 2));
    if (!find_prelude(lua_tostring(L, -1))) return 0;
    lua_pushcfunction(L, safe_require);
    lua_insert(L, -2);
    lua_call(L, 1, 1);
    int module = lua_gettop(L);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, 1) != LUA_TNIL) return 1;
    lua_pop(L, 1);
    if (lua_istable(L, module)) {
        lua_pushvalue(L, 2);
        if (lua_rawget(L, module) == LUA_TNIL) lua_pop(L, 1);
    }
    if (lua_gettop(L) == module) lua_pushvalue(L, module);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    return 1;
}

/* Builds the cce table: version, options, args, the C parts, then the lazy prelude __index. */
static int open_cce(lua_State *L) {
    const cce_lua_options *o = cce_lua_get_options(L);
    lua_newtable(L);
    lua_pushliteral(L, CCE_VERSION);
    lua_setfield(L, -2, "version");
    lua_createtable(L, 0, 2);
    lua_pushboolean(L, o->redo);
    lua_setfield(L, -2, "redo");
    lua_pushboolean(L, o->unsafe);
    lua_setfield(L, -2, "unsafe");
    lua_setfield(L, -2, "options");
    lua_newtable(L);
    lua_setfield(L, -2, "args");
    cce_lua_open_tensor(L);
    cce_lua_open_model(L);
    cce_lua_open_data(L);
#ifdef CCE_LUA_HAVE_TENSOR_OPS
    cce_lua_open_tensor_ops(L);
#endif
#ifdef CCE_LUA_HAVE_RESULTS
    cce_lua_open_results(L);
#endif
#ifdef CCE_LUA_HAVE_STRATEGY
    cce_lua_open_strategy(L);
#endif
#ifdef CCE_LUA_HAVE_STATS
    cce_lua_open_stats(L);
#endif
#ifdef CCE_LUA_HAVE_TASK
    cce_lua_open_task(L);
#endif
#ifdef CCE_LUA_HAVE_TABLE
    cce_lua_open_table(L);
#endif
#ifdef CCE_LUA_HAVE_BENCH
    cce_lua_open_bench(L);
#endif
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, cce_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    return 1;
}

/* Runs in protected mode: the whole state setup. */
static int setup(lua_State *L) {
    const cce_lua_options *given = lua_touserdata(L, 1);
    cce_lua_options *o = lua_newuserdatauv(L, sizeof *o, 0);
    if (given)
        *o = *given;
    else
        memset(o, 0, sizeof *o);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &OPTIONS_KEY);

    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    lua_pushnil(L);
    lua_setfield(L, -2, "dofile");
    lua_pushnil(L);
    lua_setfield(L, -2, "loadfile");
    lua_pushcfunction(L, safe_load);
    lua_setfield(L, -2, "load");
    lua_pushcfunction(L, safe_require);
    lua_setfield(L, -2, "require");
    set_index_metatable(L, -1, refused_global, 0);
    lua_pop(L, 1);
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
    luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
    lua_pop(L, 4);
    if (o->unsafe) open_unsafe_libraries(L);
    luaL_requiref(L, "cce", open_cce, 1);
    lua_pop(L, 1);
    return 0;
}

cce_status cce_lua_new(const cce_lua_options *o, lua_State **out) {
    *out = NULL;
    lua_State *L = luaL_newstate();
    if (!L) return cce_fail(CCE_ERR_NOMEM, "cannot create a Lua state");
    lua_pushcfunction(L, setup);
    lua_pushlightuserdata(L, (void *)o);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        cce_status s = cce_fail(CCE_ERR_INTERNAL, "setting up the Lua state: %s",
                                lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
        lua_close(L);
        return s;
    }
    *out = L;
    return CCE_OK;
}

void cce_lua_close(lua_State *L) {
    if (L) lua_close(L);
}

/* ---- Running scripts ------------------------------------------------------------------------- */

/* A malloc'd copy of the string on the stack top (popped); NULL if out of memory. */
static char *take_message(lua_State *L) {
    const char *m = lua_tostring(L, -1);
    char *copy = strdup(m ? m : "(no error message)");
    lua_pop(L, 1);
    return copy;
}

static void set_message(char **message, char *text) {
    if (message)
        *message = text;
    else
        free(text);
}

/* Calls the chunk on the stack top with n_args arguments already pushed above it, under the
 * message handler. */
static cce_status call_chunk(lua_State *L, int n_args, char **message) {
    int base = lua_gettop(L) - n_args;
    lua_pushcfunction(L, message_handler);
    lua_insert(L, base);
    int rc = lua_pcall(L, n_args, 0, base);
    lua_remove(L, base);
    if (rc == LUA_OK) return CCE_OK;
    set_message(message, take_message(L));
    return rc == LUA_ERRMEM ? CCE_ERR_NOMEM : CCE_ERR_STATE;
}

/* Loads text as a chunk; CCE_ERR_FORMAT with the message for a syntax error or bytecode. */
static cce_status load_chunk(lua_State *L, const char *text, size_t len, const char *chunkname,
                             const char *shown, char **message) {
    if (len > 0 && text[0] == LUA_SIGNATURE[0]) {
        char *m = malloc(strlen(shown) + 128);
        if (m)
            sprintf(m,
                    "%s: a precompiled Lua chunk (bytecode): cce runs Lua source text only, "
                    "give the .lua file",
                    shown);
        set_message(message, m);
        return CCE_ERR_FORMAT;
    }
    int rc = luaL_loadbufferx(L, text, len, chunkname, "t");
    if (rc == LUA_OK) return CCE_OK;
    set_message(message, take_message(L));
    return rc == LUA_ERRMEM ? CCE_ERR_NOMEM : CCE_ERR_FORMAT;
}

/* Reads a whole file; NULL with errno set on failure. */
static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *bigger = realloc(buf, cap *= 2);
        if (!bigger) {
            free(buf);
            buf = NULL;
        } else {
            buf = bigger;
        }
    }
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (buf && err) {
        free(buf);
        errno = err;
        return NULL;
    }
    if (!buf) errno = ENOMEM;
    *len = n;
    return buf;
}

/* Lua shortens a long script path in error positions to "..." and its last 56 characters
 * (LUA_IDSIZE). Every such position "...TAIL:LINE:" whose TAIL ends path gets the whole path
 * back, so messages name the script as it was given. Returns msg itself or a malloc'd copy
 * (msg is then freed); NULL stays NULL. */
static char *expand_script_path(char *msg, const char *path) {
    if (!msg) return NULL;
    size_t plen = strlen(path);
    for (char *dots = strstr(msg, "..."); dots; dots = strstr(dots + 3, "...")) {
        char *tail = dots + 3, *colon = strchr(tail, ':');
        if (!colon || colon[1] < '0' || colon[1] > '9') continue;
        size_t tlen = (size_t)(colon - tail);
        if (tlen == 0 || tlen >= plen || memcmp(path + plen - tlen, tail, tlen)) continue;
        size_t head = (size_t)(dots - msg), rest = strlen(colon);
        char *whole = malloc(head + plen + rest + 1);
        if (!whole) return msg;
        memcpy(whole, msg, head);
        memcpy(whole + head, path, plen);
        memcpy(whole + head + plen, colon, rest + 1);
        dots = whole + head + plen - 3; /* the search goes on after the expanded path */
        free(msg);
        msg = whole;
    }
    return msg;
}

static cce_status run_file(lua_State *L, const char *path, int n_args, char *const *args,
                           char **message);

cce_status cce_lua_run_file(lua_State *L, const char *path, int n_args, char *const *args,
                            char **message) {
    char *m = NULL;
    cce_status s = run_file(L, path, n_args, args, &m);
    set_message(message, s ? expand_script_path(m, path) : m);
    return s;
}

static cce_status run_file(lua_State *L, const char *path, int n_args, char *const *args,
                           char **message) {
    if (message) *message = NULL;
    size_t len = 0;
    char *text = read_file(path, &len);
    if (!text) {
        const char *why = strerror(errno);
        char *m = malloc(strlen(path) + strlen(why) + 32);
        if (m) sprintf(m, "cannot read %s: %s", path, why);
        set_message(message, m);
        return CCE_ERR_IO;
    }
    /* A first line "#!..." is skipped as lua.c does; blanking it keeps the line numbers. */
    if (len > 0 && text[0] == '#')
        for (size_t i = 0; i < len && text[i] != '\n'; i++) text[i] = ' ';
    lua_pushfstring(L, "@%s", path);
    cce_status s = load_chunk(L, text, len, lua_tostring(L, -1), path, message);
    free(text);
    lua_remove(L, s == CCE_OK ? -2 : -1);
    if (s) return s;
    lua_createtable(L, n_args, 1);
    lua_pushstring(L, path);
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < n_args; i++) {
        lua_pushstring(L, args[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushvalue(L, -1);
    lua_setglobal(L, "arg");
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "cce");
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "args");
    lua_pop(L, 3);
    luaL_checkstack(L, n_args, "too many script arguments");
    for (int i = 0; i < n_args; i++) lua_pushstring(L, args[i]);
    return call_chunk(L, n_args, message);
}

cce_status cce_lua_run_string(lua_State *L, const char *chunk, const char *chunkname,
                              char **message) {
    if (message) *message = NULL;
    cce_status s = load_chunk(L, chunk, strlen(chunk), chunkname, chunkname, message);
    if (s) return s;
    return call_chunk(L, 0, message);
}
