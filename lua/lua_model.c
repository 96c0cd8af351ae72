/* Model objects ("cce.model", cce_lua.h): cce.load (a cce-model file, lazily), cce.model (a model
 * of the dataset manifest, provisioned and imported once into the cache folder), cce.synth (a
 * deterministic random model in memory), and the methods info, tensor, save, base, compression,
 * compress (lua_compress.c) and eval (lua_eval.c). A variant (the result of m:compress) keeps its
 * base alive; a tensor keeps its model alive. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cce_lua.h"
#include "dataset.h"
#include "import.h"
#include "report_store.h"
#include "sha256.h"
#include "store.h"
#include "synth.h"

static void model_release(cce_lua_object *o) {
    cce_lua_model *mo = (cce_lua_model *)o;
    if (mo->result) {
        cce_compress_result_clear(mo->result);
        free(mo->result);
    }
    cce_model_free(mo->model);
    free(mo->plan_json);
    free(mo->path);
    mo->result = NULL;
    mo->model = NULL;
    mo->plan_json = mo->path = NULL;
}

/* Run in protected mode by cce_lua_push_model: (base or nil, path or nil, label) -> object. */
static int alloc_model(lua_State *L) {
    cce_lua_model *mo = cce_lua_new_object(L, sizeof *mo, CCE_LUA_MODEL, model_release,
                                           lua_isnil(L, 1) ? 0 : 1, "%s", lua_tostring(L, 3));
    if (!lua_isnil(L, 2) && !(mo->path = strdup(lua_tostring(L, 2))))
        return luaL_error(L, "out of memory");
    return 1;
}

cce_lua_model *cce_lua_push_model(lua_State *L, cce_model *m, const char *path, int base_idx,
                                  const char *label_fmt, ...) {
    char label[sizeof(((cce_lua_object *)0)->label)];
    va_list ap;
    va_start(ap, label_fmt);
    vsnprintf(label, sizeof label, label_fmt, ap);
    va_end(ap);
    if (base_idx) base_idx = lua_absindex(L, base_idx);
    lua_pushcfunction(L, alloc_model);
    if (base_idx)
        lua_pushvalue(L, base_idx);
    else
        lua_pushnil(L);
    if (path)
        lua_pushstring(L, path);
    else
        lua_pushnil(L);
    lua_pushstring(L, label);
    if (lua_pcall(L, 3, 1, 0) != LUA_OK) {
        cce_model_free(m);
        lua_error(L);
    }
    cce_lua_model *mo = lua_touserdata(L, -1);
    mo->model = m;
    return mo;
}

cce_lua_model *cce_lua_check_model(lua_State *L, int idx) {
    cce_lua_model *mo = cce_lua_check_object(L, idx, CCE_LUA_MODEL);
    if (!mo->model) cce_lua_raise(L, "%s holds no model", mo->obj.label);
    return mo;
}

const char *cce_lua_model_sha256(lua_State *L, cce_lua_model *mo) {
    if (!mo->path) return NULL;
    if (!mo->sha256[0]) {
        cce_status s = cce_sha256_file(mo->path, mo->sha256);
        if (s) {
            mo->sha256[0] = '\0';
            cce_lua_error(L, s, "%s: sha256", mo->obj.label);
        }
    }
    return mo->sha256;
}

/* ---- Constructors ---------------------------------------------------------------------------- */

/* cce.load(path) -> model */
static int l_load(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    cce_model *m = NULL;
    cce_status s = cce_model_open(path, &m);
    if (s) return cce_lua_error(L, s, "cce.load");
    cce_lua_push_model(L, m, path, 0, "model '%s'", path);
    return 1;
}

/* The manifest entry of the tokenizer that goes with model entry e: the one tokenizer entry whose
 * file lies in the same folder as e's (stories260K.bin and tok512.bin). */
static cce_status tokenizer_entry(const cce_manifest *mf, const cce_dataset_entry *e,
                                  const cce_dataset_entry **out) {
    const char *slash = strrchr(e->file, '/');
    size_t dir_len = slash ? (size_t)(slash - e->file) : 0;
    *out = NULL;
    for (size_t i = 0; i < mf->n; i++) {
        const cce_dataset_entry *t = &mf->entries[i];
        const char *ts = strrchr(t->file, '/');
        size_t tl = ts ? (size_t)(ts - t->file) : 0;
        if (strcmp(t->kind, "tokenizer") || tl != dir_len || strncmp(t->file, e->file, dir_len))
            continue;
        if (*out)
            return cce_fail(CCE_ERR_FORMAT,
                            "%s: model '%s' has two tokenizer entries beside it ('%s', '%s')",
                            mf->path, e->name, (*out)->name, t->name);
        *out = t;
    }
    if (!*out)
        return cce_fail(CCE_ERR_NOT_FOUND,
                        "%s: no tokenizer entry in the folder of model '%s' (%s): a model's "
                        "tokenizer is the tokenizer entry beside its file",
                        mf->path, e->name, e->file);
    return CCE_OK;
}

/* Provisions model `name` of the manifest and its tokenizer, and imports them into the cache
 * folder (models/<name>-<sha>.h5) unless already there (or when `reimport`). *path is malloc'd. */
static cce_status provision_model(const char *name, int reimport, char **path) {
    *path = NULL;
    cce_manifest *mf = NULL;
    char *bin = NULL, *tok = NULL, *dir = NULL;
    cce_model *m = NULL;
    const cce_dataset_entry *e = NULL, *te = NULL;
    cce_status s = cce_manifest_load(NULL, &mf);
    if (!s && !(e = cce_manifest_find(mf, name))) {
        char *names = cce_manifest_names(mf);
        s = cce_fail(CCE_ERR_NOT_FOUND, "no dataset '%s' in %s (known: %s)", name, mf->path,
                     names ? names : "?");
        free(names);
    }
    if (!s && strcmp(e->kind, "model"))
        s = cce_fail(CCE_ERR_ARG, "'%s' is a %s of %s, not a model (cce.dataset reads texts)", name,
                     e->kind, mf->path);
    if (!s) s = tokenizer_entry(mf, e, &te);
    if (!s) s = cce_dataset_resolve_entry(e, &bin);
    if (!s) s = cce_dataset_resolve_entry(te, &tok);
    if (!s) s = cce_cache_dir("models", 1, &dir);
    if (!s) {
        size_t n = strlen(dir) + strlen(name) + 64;
        if (!(*path = malloc(n))) {
            s = cce_fail(CCE_ERR_NOMEM, "model path");
        } else {
            snprintf(*path, n, "%s/%s-%.16s-%.8s.h5", dir, name, e->sha256, te->sha256);
            if (reimport || access(*path, R_OK) != 0) {
                if (!(s = cce_import_llama2c(bin, tok, &m))) s = cce_model_save(m, *path, NULL);
            }
        }
    }
    if (s) {
        free(*path);
        *path = NULL;
    }
    cce_model_free(m);
    free(bin);
    free(tok);
    free(dir);
    cce_manifest_free(mf);
    return s;
}

/* cce.model(name) -> model */
static int l_model(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    char *path = NULL;
    cce_model *m = NULL;
    cce_status s = provision_model(name, 0, &path);
    if (!s && (s = cce_model_open(path, &m)) && (s == CCE_ERR_FORMAT || s == CCE_ERR_HDF5)) {
        /* A damaged cache file: import again. */
        free(path);
        if (!(s = provision_model(name, 1, &path))) s = cce_model_open(path, &m);
    }
    if (s) {
        free(path);
        return cce_lua_error(L, s, "cce.model");
    }
    lua_pushstring(L, path);
    free(path);
    cce_lua_push_model(L, m, lua_tostring(L, -1), 0, "model '%s'", name);
    return 1;
}

/* cce.synth{preset=, seed=, shape fields...} or cce.synth("tiny") -> model (in memory). */
static int l_synth(lua_State *L) {
    static const char *const FN = "cce.synth";
    static const char *const fields[] = {"preset",    "seed",     "dim",        "hidden_dim",
                                         "n_layers",  "n_heads",  "n_kv_heads", "vocab_size",
                                         "seq_len",   "init_std", "untied",     "zero_classifier",
                                         "tokenizer", NULL};
    static const char *const shape_fields[] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                               "n_kv_heads", "vocab_size", "seq_len"};
    static const int64_t shape_max[] = {1 << 20, 1 << 20, 1024, 1 << 20, 1 << 20, 1 << 22, 1 << 20};
    const char *preset = "tiny", *tokenizer = NULL;
    int64_t seed = 0;
    double init_std = 0;
    int untied = 0, zero_classifier = 0;
    int64_t shape[7];
    int given[7] = {0};
    if (lua_type(L, 1) == LUA_TSTRING) {
        preset = lua_tostring(L, 1);
    } else if (!lua_isnoneornil(L, 1)) {
        cce_lua_check_fields(L, 1, 1, FN, fields);
        cce_lua_field_string(L, 1, 1, FN, "preset", &preset);
        cce_lua_field_integer(L, 1, 1, FN, "seed", 0, INT64_MAX, &seed);
        for (int k = 0; k < 7; k++)
            given[k] =
                cce_lua_field_integer(L, 1, 1, FN, shape_fields[k], 1, shape_max[k], &shape[k]);
        cce_lua_field_number(L, 1, 1, FN, "init_std", 0, 1e3, &init_std);
        cce_lua_field_boolean(L, 1, 1, FN, "untied", &untied);
        cce_lua_field_boolean(L, 1, 1, FN, "zero_classifier", &zero_classifier);
        cce_lua_field_string(L, 1, 1, FN, "tokenizer", &tokenizer);
    }
    cce_synth_options o;
    cce_status s = cce_synth_preset(preset, &o);
    if (s) return cce_lua_error(L, s, FN);
    cce_config *c = &o.cfg;
    int32_t *slots[7] = {&c->dim,        &c->hidden_dim, &c->n_layers, &c->n_heads,
                         &c->n_kv_heads, &c->vocab_size, &c->seq_len};
    for (int k = 0; k < 7; k++)
        if (given[k]) *slots[k] = (int32_t)shape[k];
    if (c->dim % c->n_heads != 0)
        return cce_lua_raise(L, "%s: dim = %d is not a multiple of n_heads = %d", FN, (int)c->dim,
                             (int)c->n_heads);
    c->head_dim = c->dim / c->n_heads;
    if (untied) c->tied_embeddings = 0;
    o.seed = (uint64_t)seed;
    o.init_std = (float)init_std;
    o.zero_classifier = zero_classifier;
    cce_model *m = NULL;
    cce_tokenizer *tok = NULL;
    if (!(s = cce_synth_model(&o, &m)) && tokenizer &&
        !(s = cce_tokenizer_load_llama2c(tokenizer, c->vocab_size, &tok)))
        cce_model_set_tokenizer(m, tok);
    if (s) {
        cce_model_free(m);
        return cce_lua_error(L, s, FN);
    }
    char source[96];
    snprintf(source, sizeof source, "synth:%s:seed=%llu", preset, (unsigned long long)seed);
    cce_model_set_source(m, source);
    cce_lua_push_model(L, m, NULL, 0, "model %s", source);
    return 1;
}

/* ---- Methods --------------------------------------------------------------------------------- */

/* m:info() -> {dim=, ..., params=, path=, sha256=, source=, variant=, tensors={names},
 *              biases={names} (the layer biases present, model.h; empty without),
 *              layers={{layer=, hidden_dim=, n_heads=, n_kv_heads=, removed=, params=}, ...}} */
static int m_info(lua_State *L) {
    cce_lua_model *mo = cce_lua_check_model(L, 1);
    cce_model *m = mo->model;
    const cce_config *c = cce_model_config(m);
    const char *sha = cce_lua_model_sha256(L, mo);
    lua_createtable(L, 0, 24);
    cce_lua_set_integer(L, "dim", c->dim);
    cce_lua_set_integer(L, "hidden_dim", c->hidden_dim);
    cce_lua_set_integer(L, "n_layers", c->n_layers);
    cce_lua_set_integer(L, "n_heads", c->n_heads);
    cce_lua_set_integer(L, "n_kv_heads", c->n_kv_heads);
    cce_lua_set_integer(L, "head_dim", c->head_dim);
    cce_lua_set_integer(L, "vocab_size", c->vocab_size);
    cce_lua_set_integer(L, "seq_len", c->seq_len);
    lua_pushnumber(L, c->rope_theta);
    lua_setfield(L, -2, "rope_theta");
    lua_pushnumber(L, c->norm_eps);
    lua_setfield(L, -2, "norm_eps");
    lua_pushboolean(L, c->tied_embeddings);
    lua_setfield(L, -2, "tied_embeddings");
    cce_lua_set_integer(L, "params", (lua_Integer)cce_model_total_params(m));
    if (mo->path) {
        lua_pushstring(L, mo->path);
        lua_setfield(L, -2, "path");
        lua_pushstring(L, sha);
        lua_setfield(L, -2, "sha256");
    }
    lua_pushstring(L, cce_model_source(m));
    lua_setfield(L, -2, "source");
    lua_pushboolean(L, cce_model_base(m) != NULL);
    lua_setfield(L, -2, "variant");
    const cce_tokenizer *tok = cce_model_tokenizer(m);
    if (tok) {
        cce_lua_set_integer(L, "bos", cce_tokenizer_bos(tok));
        cce_lua_set_integer(L, "eos", cce_tokenizer_eos(tok));
    }
    size_t n = cce_model_tensor_count(m);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, cce_model_tensor_name_at(m, i));
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "tensors");
    lua_createtable(L, (int)cce_model_bias_count(m), 0);
    lua_Integer nb = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int b = 0; b < CCE_LB_COUNT; b++) {
            if (!cce_model_has_layer_bias(m, l, (cce_layer_bias)b)) continue;
            char name[96];
            cce_layer_bias_name(l, (cce_layer_bias)b, name, sizeof name);
            lua_pushstring(L, name);
            lua_rawseti(L, -2, ++nb);
        }
    lua_setfield(L, -2, "biases");
    lua_createtable(L, c->n_layers, 0);
    for (int l = 0; l < c->n_layers; l++) {
        const cce_layer_shape *ls = cce_model_layer(m, l);
        lua_createtable(L, 0, 6);
        cce_lua_set_integer(L, "layer", l);
        cce_lua_set_integer(L, "hidden_dim", ls->hidden_dim);
        cce_lua_set_integer(L, "n_heads", ls->n_heads);
        cce_lua_set_integer(L, "n_kv_heads", ls->n_kv_heads);
        lua_pushboolean(L, ls->removed);
        lua_setfield(L, -2, "removed");
        cce_lua_set_integer(L, "params", (lua_Integer)cce_model_layer_params(m, l));
        lua_rawseti(L, -2, l + 1);
    }
    lua_setfield(L, -2, "layers");
    return 1;
}

/* m:tensor(name) -> a read-only tensor view that keeps m alive. */
static int m_tensor(lua_State *L) {
    cce_lua_model *mo = cce_lua_check_model(L, 1);
    const char *name = luaL_checkstring(L, 2);
    cce_tensor *t = NULL;
    cce_status s = cce_model_tensor(mo->model, name, &t);
    if (s) return cce_lua_error(L, s, "%s", mo->obj.label);
    cce_lua_push_tensor(L, t, 0, 1, name);
    return 1;
}

/* 1 if a and b name the same existing file. */
static int same_file(const char *a, const char *b) {
    char ra[PATH_MAX], rb[PATH_MAX];
    if (!a || !b) return 0;
    if (!realpath(a, ra) || !realpath(b, rb)) return 0;
    return !strcmp(ra, rb);
}

/* m:save(path): a variant with its report (as cce compress -o), any other model as is. The file
 * is written under a temporary name and renamed into place. */
static int m_save(lua_State *L) {
    cce_lua_model *mo = cce_lua_check_model(L, 1);
    const char *path = luaL_checkstring(L, 2);
    for (cce_lua_model *a = mo; a; a = (cce_lua_model *)a->obj.owner)
        if (same_file(path, a->path))
            return cce_lua_raise(L, "%s: save: %s is the file %s was loaded from; give a new file",
                                 mo->obj.label, path, a->obj.label);
    cce_status s = mo->result ? cce_compress_save(mo->model, mo->result, path, NULL)
                              : cce_model_save(mo->model, path, NULL);
    if (s) return cce_lua_error(L, s, "%s: save", mo->obj.label);
    return 0;
}

/* m:base() -> the base model of a variant, or nil. */
static int m_base(lua_State *L) {
    cce_lua_model *mo = cce_lua_check_model(L, 1);
    if (mo->obj.owner)
        lua_getiuservalue(L, 1, 1);
    else
        lua_pushnil(L);
    return 1;
}

static int m_compress(lua_State *L) {
    return cce_lua_compress(L, 1, 2);
}

static int m_compression(lua_State *L) {
    return cce_lua_push_compression(L, 1);
}

static int m_eval(lua_State *L) {
    return cce_lua_eval(L, 1, 2);
}

void cce_lua_open_model(lua_State *L) {
    static const luaL_Reg methods[] = {{"info", m_info},
                                       {"tensor", m_tensor},
                                       {"save", m_save},
                                       {"base", m_base},
                                       {"compress", m_compress},
                                       {"eval", m_eval},
                                       {"compression", m_compression},
                                       {NULL, NULL}};
    static const luaL_Reg functions[] = {
        {"load", l_load}, {"model", l_model}, {"synth", l_synth}, {NULL, NULL}};
    cce_lua_new_class(L, CCE_LUA_MODEL, methods, NULL);
    luaL_setfuncs(L, functions, 0);
}
