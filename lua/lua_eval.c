/* m:eval{data=, ctx=, max_tokens=, ref=, windows=, tasks=} (cce_lua.h): cce_eval under the pinned
 * protocol (eval.h) on a token stream (the test part of ds:split, ds:tokens) or a whole dataset,
 * against the base of a variant by default, with the metrics returned as a table. With windows =
 * true the evaluation keeps its per-token NLLs (keep_token_nll) and m:eval returns a second value:
 * the "eval_windows" table (bootstrap.h: window, tokens, nll_sum per window) as a cce.table, the
 * input of the paired bootstrap and what exp:run records. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bootstrap.h"
#include "cce_lua.h"
#include "eval.h"

#define FN "m:eval"

static void eval_progress(void *user, long done, long total) {
    const cce_lua_options *o = user;
    if (o && o->progress) o->progress("eval windows", done, total);
}

/* Pushes the metrics table of an evaluation (cce_lua.h). */
void cce_lua_push_eval_result(lua_State *L, const cce_eval_result *r, const char *protocol) {
    lua_createtable(L, 0, 32);
    cce_lua_set_number(L, "ppl", r->ppl);
    cce_lua_set_number(L, "ppl_stderr", r->ppl_stderr);
    cce_lua_set_number(L, "nll", r->mean_nll);
    cce_lua_set_number(L, "nll_stderr", r->nll_stderr);
    cce_lua_set_number(L, "top1", r->top1);
    cce_lua_set_integer(L, "tokens", r->n_tokens);
    cce_lua_set_integer(L, "windows", r->n_windows);
    cce_lua_set_integer(L, "ctx", r->ctx);
    cce_lua_set_number(L, "seconds", r->seconds);
    cce_lua_set_number(L, "tokens_per_s", r->tokens_per_s);
    lua_pushstring(L, protocol);
    lua_setfield(L, -2, "protocol");
    if (!r->has_ref) return;
    cce_lua_set_number(L, "kl", r->kl_mean);
    cce_lua_set_number(L, "kl_stderr", r->kl_stderr);
    cce_lua_set_number(L, "kl_p99", r->kl_p99);
    cce_lua_set_number(L, "top1_agree", r->top1_agree);
    cce_lua_set_number(L, "dp_mean", r->dp_mean);
    cce_lua_set_number(L, "dp_stderr", r->dp_stderr);
    for (int i = 0; i < CCE_EVAL_DP_PERCENTILES; i++) {
        char key[40];
        snprintf(key, sizeof key, "dp_p%g", cce_eval_dp_percentiles[i]);
        cce_lua_set_number(L, key, r->dp_p[i]);
    }
    cce_lua_set_number(L, "dp_min", r->dp_min);
    cce_lua_set_number(L, "dp_max", r->dp_max);
}

/* The name T of a task entry for its metrics (T_acc, ...): "cloze", or a JSONL file's name
 * without folder and extension, other characters than letters and digits turned into '_' (as
 * exp:run names them). Pushes it. */
static void push_task_name(lua_State *L, const char *task) {
    if (!strcmp(task, "cloze")) {
        lua_pushliteral(L, "cloze");
        return;
    }
    const char *base = strrchr(task, '/');
    base = base ? base + 1 : task;
    size_t n = strlen(base);
    if (n > 6 && !strcmp(base + n - 6, ".jsonl"))
        n -= 6;
    else if (n > 5 && !strcmp(base + n - 5, ".json"))
        n -= 5;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) {
        char c = base[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        luaL_addchar(&b, ok ? c : '_');
    }
    if (n == 0) luaL_addstring(&b, "task");
    luaL_pushresult(&b);
}

/* tasks = {"cloze", "items.jsonl", {task =, data =, items =, choices =, seed =, name =}, ...}: each
 * is scored with m:task at the evaluation's ctx and its accuracy metrics are added to the result
 * table (on the stack top) as T_acc, T_acc_stderr, T_acc_norm, T_acc_norm_stderr, T_items,
 * T_chance. */
static void add_task_metrics(lua_State *L, int model_idx, int tasks_idx, lua_Integer ctx) {
    static const char *const metrics[] = {"acc",   "acc_stderr", "acc_norm", "acc_norm_stderr",
                                          "items", "chance",     NULL};
    int result_idx = lua_gettop(L);
    lua_Integer n = luaL_len(L, tasks_idx);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, tasks_idx, i);
        int entry = lua_gettop(L);
        const char *task = NULL;
        if (lua_type(L, entry) == LUA_TSTRING) {
            task = lua_tostring(L, entry);
        } else if (lua_istable(L, entry)) {
            lua_getfield(L, entry, "task");
            task = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
            lua_pop(L, 1);
        }
        if (!task)
            cce_lua_raise(L,
                          "bad argument #1 to '%s' (field 'tasks': entry %d: 'cloze', a JSONL "
                          "file or a table with a task field expected)",
                          FN, (int)i);
        if (lua_istable(L, entry) && lua_getfield(L, entry, "name") == LUA_TSTRING) {
            /* name = T given: used as is */
        } else {
            if (lua_istable(L, entry)) lua_pop(L, 1);
            push_task_name(L, task);
        }
        int name_idx = lua_gettop(L);
        /* m:task{<the entry's fields>, ctx = ctx} */
        lua_getfield(L, model_idx, "task");
        lua_pushvalue(L, model_idx);
        lua_createtable(L, 0, 6);
        if (lua_istable(L, entry)) {
            lua_pushnil(L);
            while (lua_next(L, entry)) {
                if (lua_type(L, -2) == LUA_TSTRING && !strcmp(lua_tostring(L, -2), "name")) {
                    lua_pop(L, 1);
                    continue;
                }
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_settable(L, -4);
            }
        } else {
            lua_pushvalue(L, entry);
            lua_setfield(L, -2, "task");
        }
        if (ctx > 0) {
            lua_pushinteger(L, ctx);
            lua_setfield(L, -2, "ctx");
        }
        lua_call(L, 2, 1);
        for (int k = 0; metrics[k]; k++) {
            lua_getfield(L, -1, metrics[k]);
            lua_pushfstring(L, "%s_%s", lua_tostring(L, name_idx), metrics[k]);
            lua_insert(L, -2);
            lua_settable(L, result_idx);
        }
        lua_settop(L, result_idx);
    }
}

int cce_lua_eval(lua_State *L, int model_idx, int opts_idx) {
    static const char *const fields[] = {"data",    "ctx",   "max_tokens", "ref",
                                         "windows", "tasks", NULL};
    model_idx = lua_absindex(L, model_idx);
    opts_idx = lua_absindex(L, opts_idx);
    cce_lua_model *mo = cce_lua_check_model(L, model_idx);
    luaL_checktype(L, opts_idx, LUA_TTABLE);
    cce_lua_check_fields(L, opts_idx, 1, FN, fields);

    /* data: a token stream or a dataset. */
    lua_getfield(L, opts_idx, "data");
    cce_lua_tokens *tk = cce_lua_test_object(L, -1, CCE_LUA_TOKENS);
    cce_lua_dataset *ds = tk ? NULL : cce_lua_test_object(L, -1, CCE_LUA_DATASET);
    if (!tk && !ds)
        return cce_lua_raise(L,
                             "bad argument #1 to '%s' (field 'data': cce.tokens or cce.dataset "
                             "expected, got %s)",
                             FN, luaL_typename(L, -1));
    const cce_tokenizer *tok = cce_model_tokenizer(mo->model);
    if (tk && !strcmp(tk->part, "calib"))
        return cce_lua_raise(L, "%s: data is %s: evaluate on the test part of ds:split{...}", FN,
                             tk->obj.label);
    if (tk && tok && cce_tokenizer_fingerprint(tok) != tk->tokenizer)
        return cce_lua_raise(L, "%s: %s were tokenized with another tokenizer than %s's", FN,
                             tk->obj.label, mo->obj.label);
    if (ds && !tok) return cce_lua_raise(L, "%s: %s has no tokenizer", FN, mo->obj.label);

    /* ref: nil -> the base of a variant, false -> none, or a model. */
    cce_model *ref = NULL;
    lua_getfield(L, opts_idx, "ref");
    if (lua_isnil(L, -1)) {
        if (mo->obj.owner) ref = ((cce_lua_model *)mo->obj.owner)->model;
    } else if (!(lua_isboolean(L, -1) && !lua_toboolean(L, -1))) {
        cce_lua_model *r = cce_lua_test_object(L, -1, CCE_LUA_MODEL);
        if (!r || !r->model)
            return cce_lua_raise(L,
                                 "bad argument #1 to '%s' (field 'ref': cce.model or false "
                                 "expected, got %s)",
                                 FN, luaL_typename(L, -1));
        ref = r->model;
    }
    int max_ctx = cce_model_config(mo->model)->seq_len;
    if (ref && cce_model_config(ref)->seq_len < max_ctx) max_ctx = cce_model_config(ref)->seq_len;
    int64_t ctx = 0, max_tokens = 0;
    cce_lua_field_integer(L, opts_idx, 1, FN, "ctx", 2, max_ctx, &ctx);
    cce_lua_field_integer(L, opts_idx, 1, FN, "max_tokens", 0, INT64_MAX, &max_tokens);
    int windows = 0;
    cce_lua_field_boolean(L, opts_idx, 1, FN, "windows", &windows);
    struct cce_table **win =
        windows ? cce_lua_push_table_slot(L, CCE_BOOTSTRAP_WINDOW_TABLE) : NULL;
    int win_idx = lua_gettop(L);

    /* C only from here. */
    int32_t *owned = NULL;
    const int32_t *stream = tk ? tk->tokens : NULL;
    size_t n = tk ? tk->n_segments * tk->seg_len : 0;
    cce_status s = CCE_OK;
    if (ds && !(s = cce_lua_dataset_tokens(ds, tok, &owned, &n))) stream = owned;
    cce_eval_options o = {.ctx = (int)ctx,
                          .max_tokens = max_tokens,
                          .keep_token_nll = windows,
                          .progress = eval_progress,
                          .progress_user = (void *)cce_lua_get_options(L)};
    cce_eval_result r = {0};
    if (!s) s = cce_eval(mo->model, ref, stream, n, &o, &r);
    cce_lua_progress_end(L);
    free(owned);
    if (!s && win) s = cce_bootstrap_window_table(&r, win);
    cce_eval_result_free(&r);
    if (s) return cce_lua_error(L, s, FN);
    char protocol[1024];
    cce_eval_protocol_line(&r, tk ? tk->dataset : ds->name, tk ? tk->sha256 : ds->sha256, protocol,
                           sizeof protocol);
    cce_lua_push_eval_result(L, &r, protocol);
    lua_getfield(L, opts_idx, "tasks");
    if (!lua_isnil(L, -1)) {
        if (!lua_istable(L, -1))
            return cce_lua_raise(L,
                                 "bad argument #1 to '%s' (field 'tasks': table expected, got %s)",
                                 FN, luaL_typename(L, -1));
        int tasks_idx = lua_gettop(L);
        lua_pushvalue(L, tasks_idx - 1); /* the result on top */
        add_task_metrics(L, model_idx, tasks_idx, (lua_Integer)r.ctx);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (!win) return 1;
    lua_pushvalue(L, win_idx);
    return 2;
}
