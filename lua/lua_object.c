/* The life cycle every object userdata shares (cce_lua.h, "Object life cycle"): creation with an
 * owner, close / __gc / __close, "is closed" errors, classes with method tables; and the option
 * table helpers (named fields with type and range checks). */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cce_lua.h"

/* ---- Objects --------------------------------------------------------------------------------- */

/* Releases o once it is closed and nothing borrows from it, then unpins its owner (which may in
 * turn be released). The owner's memory is valid here: o keeps it as its user value, so Lua
 * collects the owner only after o. */
static void maybe_release(cce_lua_object *o) {
    while (o && o->closed && o->pins == 0 && !o->released) {
        o->released = 1;
        if (o->release) o->release(o);
        cce_lua_object *owner = o->owner;
        o->owner = NULL;
        if (owner) owner->pins--;
        o = owner;
    }
}

void cce_lua_object_close(cce_lua_object *o) {
    if (!o) return;
    o->closed = 1;
    maybe_release(o);
}

void *cce_lua_new_objectv(lua_State *L, size_t size, const char *tname,
                          void (*release)(cce_lua_object *), int owner_idx, const char *label_fmt,
                          va_list ap) {
    if (owner_idx) owner_idx = lua_absindex(L, owner_idx);
    if (size < sizeof(cce_lua_object)) size = sizeof(cce_lua_object);
    cce_lua_object *o = lua_newuserdatauv(L, size, 1);
    memset(o, 0, size);
    vsnprintf(o->label, sizeof o->label, label_fmt ? label_fmt : "object", ap);
    o->release = release;
    luaL_setmetatable(L, tname);
    if (owner_idx) {
        cce_lua_object *owner = lua_touserdata(L, owner_idx);
        if (owner) {
            lua_pushvalue(L, owner_idx);
            lua_setiuservalue(L, -2, 1);
            o->owner = owner;
            owner->pins++;
        }
    }
    return o;
}

void *cce_lua_new_object(lua_State *L, size_t size, const char *tname,
                         void (*release)(cce_lua_object *), int owner_idx, const char *label_fmt,
                         ...) {
    va_list ap;
    va_start(ap, label_fmt);
    void *o = cce_lua_new_objectv(L, size, tname, release, owner_idx, label_fmt, ap);
    va_end(ap);
    return o;
}

void *cce_lua_check_object(lua_State *L, int idx, const char *tname) {
    cce_lua_object *o = luaL_checkudata(L, idx, tname);
    if (o->closed) cce_lua_raise(L, "%s is closed", o->label);
    return o;
}

void *cce_lua_test_object(lua_State *L, int idx, const char *tname) {
    cce_lua_object *o = luaL_testudata(L, idx, tname);
    if (o && o->closed) cce_lua_raise(L, "%s is closed", o->label);
    return o;
}

void cce_lua_account_memory(lua_State *L, size_t bytes) {
    size_t kb = bytes / 1024;
    if (kb > 0) lua_gc(L, LUA_GCSTEP, kb > INT_MAX ? INT_MAX : (int)kb);
}

/* __gc and __close (the error argument of __close is ignored). */
static int object_finalize(lua_State *L) {
    cce_lua_object_close(lua_touserdata(L, 1));
    return 0;
}

/* obj:close(): the class name is the upvalue, so a close of another class's object is refused. */
static int object_close_method(lua_State *L) {
    cce_lua_object *o = luaL_checkudata(L, 1, lua_tostring(L, lua_upvalueindex(1)));
    cce_lua_object_close(o);
    return 0;
}

static int object_tostring(lua_State *L) {
    cce_lua_object *o = lua_touserdata(L, 1);
    lua_pushfstring(L, "%s%s", o->label, o->closed ? " (closed)" : "");
    return 1;
}

void cce_lua_new_class(lua_State *L, const char *tname, const luaL_Reg *methods,
                       const luaL_Reg *metamethods) {
    luaL_newmetatable(L, tname);
    lua_newtable(L);
    if (methods) luaL_setfuncs(L, methods, 0);
    lua_pushstring(L, tname);
    lua_pushcclosure(L, object_close_method, 1);
    lua_setfield(L, -2, "close");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, object_finalize);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, object_finalize);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, object_tostring);
    lua_setfield(L, -2, "__tostring");
    if (metamethods) luaL_setfuncs(L, metamethods, 0);
    lua_pushstring(L, tname);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

void cce_lua_add_methods(lua_State *L, const char *tname, const luaL_Reg *methods) {
    luaL_getmetatable(L, tname);
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "__index");
        if (lua_istable(L, -1)) luaL_setfuncs(L, methods, 0);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* ---- Option tables --------------------------------------------------------------------------- */

void cce_lua_check_fields(lua_State *L, int idx, int arg, const char *fn,
                          const char *const *allowed) {
    idx = lua_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        int known = 0;
        if (lua_type(L, -1) == LUA_TSTRING) {
            const char *key = lua_tostring(L, -1);
            for (size_t i = 0; allowed[i] && !known; i++) known = !strcmp(key, allowed[i]);
        }
        if (known) continue;
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (size_t i = 0; allowed[i]; i++) {
            if (i) luaL_addstring(&b, ", ");
            luaL_addstring(&b, allowed[i]);
        }
        luaL_pushresult(&b);
        if (lua_type(L, -2) == LUA_TSTRING)
            cce_lua_raise(L, "bad argument #%d to '%s' (unknown field '%s'; fields: %s)", arg, fn,
                          lua_tostring(L, -2), lua_tostring(L, -1));
        cce_lua_raise(L, "bad argument #%d to '%s' (a key of type %s; fields: %s)", arg, fn,
                      luaL_typename(L, -2), lua_tostring(L, -1));
    }
}

/* Pushes field key of the table at idx (raw: no metamethods run); 0 and nothing pushed when it
 * is nil. */
static int get_field(lua_State *L, int idx, const char *key) {
    lua_pushstring(L, key);
    if (lua_rawget(L, idx) == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    return 1;
}

static int field_type_error(lua_State *L, int arg, const char *fn, const char *key,
                            const char *expected) {
    if (lua_type(L, -1) == LUA_TNUMBER)
        return cce_lua_raise(L, "bad argument #%d to '%s' (field '%s': %s expected, got %s)", arg,
                             fn, key, expected, lua_tostring(L, -1));
    return cce_lua_raise(L, "bad argument #%d to '%s' (field '%s': %s expected, got %s)", arg, fn,
                         key, expected, luaL_typename(L, -1));
}

int cce_lua_field_integer(lua_State *L, int idx, int arg, const char *fn, const char *key,
                          int64_t min, int64_t max, int64_t *out) {
    idx = lua_absindex(L, idx);
    if (!get_field(L, idx, key)) return 0;
    int ok = 0;
    lua_Integer v = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &ok) : 0;
    if (!ok) field_type_error(L, arg, fn, key, "integer");
    if (v < min || v > max)
        cce_lua_raise(
            L, "bad argument #%d to '%s' (field '%s' = %lld is outside [%" PRId64 ", %" PRId64 "])",
            arg, fn, key, (long long)v, min, max);
    lua_pop(L, 1);
    *out = (int64_t)v;
    return 1;
}

int cce_lua_field_number(lua_State *L, int idx, int arg, const char *fn, const char *key,
                         double min, double max, double *out) {
    idx = lua_absindex(L, idx);
    if (!get_field(L, idx, key)) return 0;
    if (lua_type(L, -1) != LUA_TNUMBER) field_type_error(L, arg, fn, key, "number");
    double v = (double)lua_tonumber(L, -1);
    if (!(v >= min && v <= max))
        cce_lua_raise(L, "bad argument #%d to '%s' (field '%s' = %g is outside [%g, %g])", arg, fn,
                      key, v, min, max);
    lua_pop(L, 1);
    *out = v;
    return 1;
}

int cce_lua_field_boolean(lua_State *L, int idx, int arg, const char *fn, const char *key,
                          int *out) {
    idx = lua_absindex(L, idx);
    if (!get_field(L, idx, key)) return 0;
    if (lua_type(L, -1) != LUA_TBOOLEAN) field_type_error(L, arg, fn, key, "boolean");
    *out = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return 1;
}

int cce_lua_field_string(lua_State *L, int idx, int arg, const char *fn, const char *key,
                         const char **out) {
    idx = lua_absindex(L, idx);
    if (!get_field(L, idx, key)) return 0;
    if (lua_type(L, -1) != LUA_TSTRING) field_type_error(L, arg, fn, key, "string");
    *out = lua_tostring(L, -1); /* the table still references it */
    lua_pop(L, 1);
    return 1;
}
