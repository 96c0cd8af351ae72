/* Dataset and token-stream objects ("cce.dataset", "cce.tokens", cce_lua.h): cce.dataset(name or
 * path), ds:info(), ds:split{...} (the test prefix and the calibration segments, drawn exactly as
 * cce compress --calib draws them), ds:tokens{...} (the whole stream), tokens:info(), #tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cce_lua.h"
#include "dataset.h"

/* ---- Datasets -------------------------------------------------------------------------------- */

static void dataset_release(cce_lua_object *o) {
    cce_lua_dataset *ds = (cce_lua_dataset *)o;
    free(ds->name);
    free(ds->path);
    ds->name = ds->path = NULL;
}

cce_lua_dataset *cce_lua_check_dataset(lua_State *L, int idx) {
    return cce_lua_check_object(L, idx, CCE_LUA_DATASET);
}

cce_status cce_lua_dataset_tokens(const cce_lua_dataset *ds, const cce_tokenizer *tok,
                                  int32_t **tokens, size_t *n) {
    return cce_dataset_tokens(ds->name, tok, tokens, n);
}

/* cce.dataset(name_or_path) -> dataset: a manifest text (provisioned and verified) or a file. */
static int l_dataset(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    cce_lua_dataset *ds = cce_lua_new_object(L, sizeof *ds, CCE_LUA_DATASET, dataset_release, 0,
                                             "dataset '%s'", name);
    if (!(ds->name = strdup(name))) return cce_lua_raise(L, "cce.dataset: out of memory");
    cce_status s = cce_dataset_resolve(name, &ds->path, ds->sha256);
    if (s) return cce_lua_error(L, s, "cce.dataset");
    struct stat st;
    ds->bytes = stat(ds->path, &st) == 0 ? (int64_t)st.st_size : -1;
    return 1;
}

/* ds:info() -> {name=, path=, sha256=, bytes=} */
static int ds_info(lua_State *L) {
    cce_lua_dataset *ds = cce_lua_check_dataset(L, 1);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, ds->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, ds->path);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, ds->sha256);
    lua_setfield(L, -2, "sha256");
    lua_pushinteger(L, (lua_Integer)ds->bytes);
    lua_setfield(L, -2, "bytes");
    return 1;
}

/* ---- Token streams --------------------------------------------------------------------------- */

static void tokens_release(cce_lua_object *o) {
    cce_lua_tokens *tk = (cce_lua_tokens *)o;
    free(tk->tokens);
    free(tk->dataset);
    tk->tokens = NULL;
    tk->dataset = NULL;
}

cce_lua_tokens *cce_lua_check_tokens(lua_State *L, int idx) {
    return cce_lua_check_object(L, idx, CCE_LUA_TOKENS);
}

/* A new, empty tokens object of `part` for dataset ds (filled by the caller). */
static cce_lua_tokens *new_tokens(lua_State *L, const cce_lua_dataset *ds, const char *part,
                                  uint64_t seed, const cce_tokenizer *tok) {
    cce_lua_tokens *tk = cce_lua_new_object(L, sizeof *tk, CCE_LUA_TOKENS, tokens_release, 0,
                                            "tokens %s of '%s'", part, ds->name);
    snprintf(tk->part, sizeof tk->part, "%s", part);
    memcpy(tk->sha256, ds->sha256, sizeof tk->sha256);
    tk->seed = seed;
    tk->tokenizer = cce_tokenizer_fingerprint(tok);
    if (!(tk->dataset = strdup(ds->name))) cce_lua_raise(L, "tokens: out of memory");
    return tk;
}

/* The tokenizer of the model in field `model` of the option table at idx (raises without). */
static const cce_tokenizer *option_tokenizer(lua_State *L, int idx, const char *fn) {
    lua_getfield(L, idx, "model");
    if (lua_isnil(L, -1))
        cce_lua_raise(L,
                      "bad argument #1 to '%s' (field 'model' is missing: the model whose "
                      "tokenizer tokenizes the text)",
                      fn);
    cce_lua_model *mo = cce_lua_test_object(L, -1, CCE_LUA_MODEL);
    if (!mo || !mo->model)
        cce_lua_raise(L, "bad argument #1 to '%s' (field 'model': cce.model expected, got %s)", fn,
                      luaL_typename(L, -1));
    lua_pop(L, 1);
    const cce_tokenizer *tok = cce_model_tokenizer(mo->model);
    if (!tok) cce_lua_raise(L, "%s: %s has no tokenizer", fn, mo->obj.label);
    return tok;
}

/* ds:split{model=, calib_tokens=16384, test_tokens=100000, calib_window=256, seed=1}
 *   -> calib, test   (calib is nil when calib_tokens = 0) */
static int ds_split(lua_State *L) {
    static const char *const FN = "ds:split";
    static const char *const fields[] = {"model",        "calib_tokens", "test_tokens",
                                         "calib_window", "seed",         NULL};
    cce_lua_dataset *ds = cce_lua_check_dataset(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    cce_lua_check_fields(L, 2, 1, FN, fields);
    const cce_tokenizer *tok = option_tokenizer(L, 2, FN);
    int64_t calib_tokens = 16384, test_tokens = 100000, window = 256, seed = 1;
    cce_lua_field_integer(L, 2, 1, FN, "calib_tokens", 0, INT32_MAX, &calib_tokens);
    cce_lua_field_integer(L, 2, 1, FN, "test_tokens", 1, INT64_MAX, &test_tokens);
    cce_lua_field_integer(L, 2, 1, FN, "calib_window", 1, INT32_MAX, &window);
    cce_lua_field_integer(L, 2, 1, FN, "seed", 0, INT64_MAX, &seed);
    /* Both objects first (they may raise), then the C work. */
    cce_lua_tokens *calib =
        calib_tokens > 0 ? new_tokens(L, ds, "calib", (uint64_t)seed, tok) : NULL;
    if (!calib) lua_pushnil(L);
    cce_lua_tokens *test = new_tokens(L, ds, "test", (uint64_t)seed, tok);
    int32_t *stream = NULL;
    size_t n = 0;
    cce_split_result split = {0};
    cce_status s = cce_lua_dataset_tokens(ds, tok, &stream, &n);
    if (!s)
        s = cce_split(n, (size_t)test_tokens, (size_t)calib_tokens, (size_t)window, (uint64_t)seed,
                      &split);
    if (!s && calib) s = cce_split_calib_tokens(stream, n, &split, &calib->tokens);
    if (!s && !(test->tokens = malloc((size_t)test_tokens * sizeof *test->tokens)))
        s = cce_fail(CCE_ERR_NOMEM, "%lld test tokens", (long long)test_tokens);
    if (!s) {
        memcpy(test->tokens, stream, (size_t)test_tokens * sizeof *test->tokens);
        test->n_segments = 1;
        test->seg_len = (size_t)test_tokens;
        if (calib) {
            calib->n_segments = split.n_calib;
            calib->seg_len = split.calib_window;
            calib->calib.tokens = calib->tokens;
            calib->calib.n_segments = split.n_calib;
            calib->calib.seg_len = split.calib_window;
            cce_calib_data_hash(&calib->calib);
        }
    }
    free(stream);
    cce_split_result_clear(&split);
    if (s) return cce_lua_error(L, s, "%s of %s", FN, ds->obj.label);
    return 2;
}

/* ds:tokens{model=} -> the whole text as one token stream (part "text"), as cce eval --data
 * reads it. */
static int ds_tokens(lua_State *L) {
    static const char *const FN = "ds:tokens";
    static const char *const fields[] = {"model", NULL};
    cce_lua_dataset *ds = cce_lua_check_dataset(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    cce_lua_check_fields(L, 2, 1, FN, fields);
    const cce_tokenizer *tok = option_tokenizer(L, 2, FN);
    cce_lua_tokens *tk = new_tokens(L, ds, "text", 0, tok);
    size_t n = 0;
    cce_status s = cce_lua_dataset_tokens(ds, tok, &tk->tokens, &n);
    if (s) return cce_lua_error(L, s, "%s of %s", FN, ds->obj.label);
    tk->n_segments = 1;
    tk->seg_len = n;
    return 1;
}

/* tokens:info() -> {dataset=, sha256=, part=, tokens=, seed=, segments=, window=,
 *                   calib_sha256= (calib part only)} */
static int tk_info(lua_State *L) {
    cce_lua_tokens *tk = cce_lua_check_tokens(L, 1);
    lua_createtable(L, 0, 8);
    lua_pushstring(L, tk->dataset);
    lua_setfield(L, -2, "dataset");
    lua_pushstring(L, tk->sha256);
    lua_setfield(L, -2, "sha256");
    lua_pushstring(L, tk->part);
    lua_setfield(L, -2, "part");
    lua_pushinteger(L, (lua_Integer)(tk->n_segments * tk->seg_len));
    lua_setfield(L, -2, "tokens");
    lua_pushinteger(L, (lua_Integer)tk->seed);
    lua_setfield(L, -2, "seed");
    lua_pushinteger(L, (lua_Integer)tk->n_segments);
    lua_setfield(L, -2, "segments");
    lua_pushinteger(L, (lua_Integer)tk->seg_len);
    lua_setfield(L, -2, "window");
    if (!strcmp(tk->part, "calib")) {
        lua_pushstring(L, tk->calib.sha256);
        lua_setfield(L, -2, "calib_sha256");
    }
    return 1;
}

/* #tokens */
static int tk_len(lua_State *L) {
    cce_lua_tokens *tk = cce_lua_check_tokens(L, 1);
    lua_pushinteger(L, (lua_Integer)(tk->n_segments * tk->seg_len));
    return 1;
}

/* tokens:get(i) -> the i-th token id (1-based, over the segments back to back). */
static int tk_get(lua_State *L) {
    cce_lua_tokens *tk = cce_lua_check_tokens(L, 1);
    lua_Integer i = luaL_checkinteger(L, 2), n = (lua_Integer)(tk->n_segments * tk->seg_len);
    if (i < 1 || i > n)
        return cce_lua_raise(L, "%s: index %lld is outside [1, %lld]", tk->obj.label, (long long)i,
                             (long long)n);
    lua_pushinteger(L, tk->tokens[i - 1]);
    return 1;
}

void cce_lua_open_data(lua_State *L) {
    static const luaL_Reg ds_methods[] = {
        {"info", ds_info}, {"split", ds_split}, {"tokens", ds_tokens}, {NULL, NULL}};
    static const luaL_Reg tk_methods[] = {{"info", tk_info}, {"get", tk_get}, {NULL, NULL}};
    static const luaL_Reg tk_meta[] = {{"__len", tk_len}, {NULL, NULL}};
    cce_lua_new_class(L, CCE_LUA_DATASET, ds_methods, NULL);
    cce_lua_new_class(L, CCE_LUA_TOKENS, tk_methods, tk_meta);
    lua_pushcfunction(L, l_dataset);
    lua_setfield(L, -2, "dataset");
}
