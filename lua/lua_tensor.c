/* Tensor objects ("cce.tensor", cce_lua.h): a model's weight (a read-only view that keeps the
 * model alive), a row slice of another tensor (a view that keeps it alive), or an owned writable
 * copy. Element access: t:shape(), #t, t:get(i [, j]), t:set(i, [j,] v), t:slice(r0 [, r1]),
 * t:copy(), t:totable(), t:name(). Indices are 1-based; a tensor of more than two dimensions is
 * addressed as its 2-D view [rows, cols] (cce_tensor_rows / cce_tensor_cols). The vectorised
 * operations are added by lua_tensor_ops.c. */
#include <stdio.h>
#include <string.h>

#include "cce_lua.h"

static void tensor_release(cce_lua_object *o) {
    cce_lua_tensor *lt = (cce_lua_tensor *)o;
    if (lt->t && (lt->flags & CCE_LUA_TENSOR_OWNED)) cce_tensor_free(lt->t);
    lt->t = NULL;
}

/* A new tensor object without a tensor yet (filled by the caller, so nothing leaks if the
 * allocation of the userdata raises). */
static cce_lua_tensor *new_tensor_object(lua_State *L, unsigned flags, int owner_idx,
                                         const char *name) {
    cce_lua_tensor *lt = cce_lua_new_object(L, sizeof *lt, CCE_LUA_TENSOR, tensor_release,
                                            owner_idx, *name ? "tensor '%s'" : "tensor%s", name);
    lt->flags = flags;
    snprintf(lt->name, sizeof lt->name, "%s", name);
    return lt;
}

/* Run in protected mode by cce_lua_push_tensor: (owner or nil, flags, name) -> the object. */
static int alloc_object(lua_State *L) {
    unsigned flags = (unsigned)lua_tointeger(L, 2);
    const char *name = lua_tostring(L, 3);
    int owner = lua_isnil(L, 1) ? 0 : 1;
    new_tensor_object(L, flags, owner, name ? name : "");
    return 1;
}

cce_lua_tensor *cce_lua_push_tensor(lua_State *L, cce_tensor *t, unsigned flags, int owner_idx,
                                    const char *name) {
    if (!name) name = "";
    if (!(flags & CCE_LUA_TENSOR_OWNED)) {
        cce_lua_tensor *lt = new_tensor_object(L, flags, owner_idx, name);
        lt->t = t;
        return lt;
    }
    /* Owned: allocate the object in protected mode so that t is freed if that raises. */
    if (owner_idx) owner_idx = lua_absindex(L, owner_idx);
    lua_pushcfunction(L, alloc_object);
    if (owner_idx)
        lua_pushvalue(L, owner_idx);
    else
        lua_pushnil(L);
    lua_pushinteger(L, (lua_Integer)flags);
    lua_pushstring(L, name);
    if (lua_pcall(L, 3, 1, 0) != LUA_OK) {
        cce_tensor_free(t);
        lua_error(L);
    }
    cce_lua_tensor *lt = lua_touserdata(L, -1);
    lt->t = t;
    return lt;
}

cce_lua_tensor *cce_lua_new_tensor(lua_State *L, int ndim, const int64_t *shape, const char *name) {
    if (ndim < 1 || ndim > CCE_TENSOR_MAX_DIMS)
        cce_lua_raise(L, "a tensor has 1 to %d dimensions, not %d", CCE_TENSOR_MAX_DIMS, ndim);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 1)
            cce_lua_raise(L, "tensor dimension %d is %lld: every dimension must be >= 1", i + 1,
                          (long long)shape[i]);
    cce_lua_tensor *lt =
        new_tensor_object(L, CCE_LUA_TENSOR_OWNED | CCE_LUA_TENSOR_WRITABLE, 0, name ? name : "");
    cce_status s = cce_tensor_new(ndim, shape, &lt->t);
    if (s) cce_lua_error(L, s, "new tensor");
    cce_lua_account_memory(L, (size_t)cce_tensor_numel(lt->t) * sizeof(float));
    return lt;
}

cce_lua_tensor *cce_lua_check_tensor(lua_State *L, int idx) {
    cce_lua_tensor *lt = cce_lua_check_object(L, idx, CCE_LUA_TENSOR);
    if (!lt->t) cce_lua_raise(L, "%s holds no data", lt->obj.label);
    return lt;
}

cce_lua_tensor *cce_lua_check_writable_tensor(lua_State *L, int idx) {
    cce_lua_tensor *lt = cce_lua_check_tensor(L, idx);
    if (!(lt->flags & CCE_LUA_TENSOR_WRITABLE))
        cce_lua_raise(L, "%s is read-only (a model's weights are never modified): use t:copy()",
                      lt->obj.label);
    return lt;
}

/* ---- Methods --------------------------------------------------------------------------------- */

/* t:shape() -> {d1, d2, ...} */
static int t_shape(lua_State *L) {
    cce_tensor *t = cce_lua_check_tensor(L, 1)->t;
    lua_createtable(L, t->ndim, 0);
    for (int i = 0; i < t->ndim; i++) {
        lua_pushinteger(L, (lua_Integer)t->shape[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* #t: the number of elements. */
static int t_len(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)cce_tensor_numel(cce_lua_check_tensor(L, 1)->t));
    return 1;
}

/* The flat index of element (i [, j]) read from the arguments at idx (1-based); *next gets the
 * index of the argument after them. A 1-D tensor takes one index, others two. */
static int64_t element_index(lua_State *L, cce_lua_tensor *lt, int idx, int *next) {
    const cce_tensor *t = lt->t;
    if (t->ndim == 1) {
        lua_Integer i = luaL_checkinteger(L, idx);
        if (i < 1 || i > t->shape[0])
            cce_lua_raise(L, "%s: index %lld is outside [1, %lld]", lt->obj.label, (long long)i,
                          (long long)t->shape[0]);
        *next = idx + 1;
        return (int64_t)i - 1;
    }
    int64_t rows = cce_tensor_rows(t), cols = cce_tensor_cols(t);
    lua_Integer i = luaL_checkinteger(L, idx), j = luaL_checkinteger(L, idx + 1);
    if (i < 1 || i > rows || j < 1 || j > cols)
        cce_lua_raise(L, "%s: index (%lld, %lld) is outside [1, %lld] x [1, %lld]", lt->obj.label,
                      (long long)i, (long long)j, (long long)rows, (long long)cols);
    *next = idx + 2;
    return ((int64_t)i - 1) * cols + ((int64_t)j - 1);
}

/* t:get(i [, j]) -> number */
static int t_get(lua_State *L) {
    cce_lua_tensor *lt = cce_lua_check_tensor(L, 1);
    int next;
    int64_t k = element_index(L, lt, 2, &next);
    lua_pushnumber(L, (lua_Number)lt->t->data[k]);
    return 1;
}

/* t:set(i, [j,] v): writable tensors only. */
static int t_set(lua_State *L) {
    cce_lua_tensor *lt = cce_lua_check_writable_tensor(L, 1);
    int next;
    int64_t k = element_index(L, lt, 2, &next);
    lt->t->data[k] = (float)luaL_checknumber(L, next);
    return 0;
}

/* t:slice(r0 [, r1]) -> rows r0..r1 (elements of a 1-D tensor) as a view sharing t's memory;
 * r1 defaults to the last row. The view keeps t alive and is writable when t is. */
static int t_slice(lua_State *L) {
    cce_lua_tensor *lt = cce_lua_check_tensor(L, 1);
    const cce_tensor *t = lt->t;
    int64_t rows = t->ndim == 1 ? t->shape[0] : cce_tensor_rows(t);
    int64_t cols = t->ndim == 1 ? 1 : cce_tensor_cols(t);
    lua_Integer r0 = luaL_checkinteger(L, 2), r1 = luaL_optinteger(L, 3, (lua_Integer)rows);
    if (r0 < 1 || r1 < r0 || r1 > rows)
        return cce_lua_raise(L, "%s: slice %lld..%lld is outside 1..%lld (or empty)", lt->obj.label,
                             (long long)r0, (long long)r1, (long long)rows);
    int64_t shape[2] = {(int64_t)(r1 - r0 + 1), cols};
    cce_lua_tensor *view = new_tensor_object(L, lt->flags & CCE_LUA_TENSOR_WRITABLE, 1, lt->name);
    const char *label =
        lua_pushfstring(L, "rows %I..%I of %s", (lua_Integer)r0, (lua_Integer)r1, lt->obj.label);
    size_t len = strlen(label);
    if (len >= sizeof view->obj.label) len = sizeof view->obj.label - 1;
    memcpy(view->obj.label, label, len);
    view->obj.label[len] = '\0';
    lua_pop(L, 1);
    cce_status s =
        cce_tensor_borrow(t->data + (r0 - 1) * cols, t->ndim == 1 ? 1 : 2, shape, &view->t);
    if (s) return cce_lua_error(L, s, "t:slice");
    view->flags |= CCE_LUA_TENSOR_OWNED; /* the header only: the data is borrowed */
    return 1;
}

/* t:copy() -> an owned, writable deep copy. */
static int t_copy(lua_State *L) {
    cce_lua_tensor *lt = cce_lua_check_tensor(L, 1);
    cce_lua_tensor *c =
        new_tensor_object(L, CCE_LUA_TENSOR_OWNED | CCE_LUA_TENSOR_WRITABLE, 0, lt->name);
    cce_status s = cce_tensor_clone(lt->t, &c->t);
    if (s) return cce_lua_error(L, s, "t:copy");
    cce_lua_account_memory(L, (size_t)cce_tensor_numel(c->t) * sizeof(float));
    return 1;
}

/* t:totable() -> {v, ...} for 1-D, {{row}, ...} for the 2-D view otherwise. */
static int t_totable(lua_State *L) {
    const cce_tensor *t = cce_lua_check_tensor(L, 1)->t;
    if (t->ndim == 1) {
        lua_createtable(L, (int)t->shape[0], 0);
        for (int64_t i = 0; i < t->shape[0]; i++) {
            lua_pushnumber(L, (lua_Number)t->data[i]);
            lua_rawseti(L, -2, i + 1);
        }
        return 1;
    }
    int64_t rows = cce_tensor_rows(t), cols = cce_tensor_cols(t);
    lua_createtable(L, (int)rows, 0);
    for (int64_t i = 0; i < rows; i++) {
        lua_createtable(L, (int)cols, 0);
        for (int64_t j = 0; j < cols; j++) {
            lua_pushnumber(L, (lua_Number)t->data[i * cols + j]);
            lua_rawseti(L, -2, j + 1);
        }
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* t:name() -> the model's tensor name, or nil. */
static int t_name(lua_State *L) {
    cce_lua_tensor *lt = cce_lua_check_tensor(L, 1);
    if (*lt->name)
        lua_pushstring(L, lt->name);
    else
        lua_pushnil(L);
    return 1;
}

/* __tostring: "tensor 'NAME' [172, 64]". */
static int t_tostring(lua_State *L) {
    cce_lua_tensor *lt = lua_touserdata(L, 1);
    if (lt->obj.closed || !lt->t) {
        lua_pushfstring(L, "%s (closed)", lt->obj.label);
        return 1;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, lt->obj.label);
    for (int i = 0; i < lt->t->ndim; i++) {
        char dim[32];
        snprintf(dim, sizeof dim, "%s%lld", i ? ", " : " [", (long long)lt->t->shape[i]);
        luaL_addstring(&b, dim);
    }
    luaL_addstring(&b, "]");
    luaL_pushresult(&b);
    return 1;
}

void cce_lua_open_tensor(lua_State *L) {
    static const luaL_Reg methods[] = {{"shape", t_shape}, {"get", t_get},   {"set", t_set},
                                       {"slice", t_slice}, {"copy", t_copy}, {"totable", t_totable},
                                       {"name", t_name},   {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__len", t_len}, {"__tostring", t_tostring}, {NULL, NULL}};
    cce_lua_new_class(L, CCE_LUA_TENSOR, methods, meta);
}
