/* The Lua 5.4 binding of libcce: the internal header every C file of lua/ includes.
 *
 * The engine (lua_main.c) makes a sandboxed lua_State and builds the `cce` module table; each
 * part of the binding registers its own functions with a `cce_lua_open_<part>(L)` function that
 * lua_main.c calls with the module table on the top of the stack (it must leave the stack as it
 * found it). Objects (models, tensors, token streams, datasets, ...) are full userdata whose
 * memory starts with a cce_lua_object header: the header gives every object the same life
 * cycle (close, __gc, __close, "is closed" errors, keeping what it borrows from alive).
 *
 * Errors. A C function raises a Lua error with cce_lua_error (a libcce status and its detail) or
 * cce_lua_raise (a message of its own); both prefix the position of the innermost frame of the
 * user's script ("run.lua:12: "), so an error raised while a prelude module (lua/cce/NAME.lua)
 * called the function still names the script line. Never raise while holding C resources:
 * finish the C work, free, then raise (luaL_* argument checks included). C code that calls
 * back into Lua from inside a libcce call (a strategy's apply) must use lua_pcall and turn the
 * error into a cce_status: a Lua error must not unwind through libcce.
 *
 * Metatable names: CCE_LUA_MODEL "cce.model", CCE_LUA_TENSOR "cce.tensor", CCE_LUA_TOKENS
 * "cce.tokens", CCE_LUA_DATASET "cce.dataset". */
#ifndef CCE_LUA_H
#define CCE_LUA_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>

#include "calib.h"
#include "compress.h"
#include "eval.h"
#include "model.h"
#include "plan.h"
#include "status.h"
#include "tensor.h"

#define CCE_LUA_MODEL   "cce.model"
#define CCE_LUA_TENSOR  "cce.tensor"
#define CCE_LUA_TOKENS  "cce.tokens"
#define CCE_LUA_DATASET "cce.dataset"

/* ---- The engine (lua_main.c) ----------------------------------------------------------------- */

typedef struct cce_lua_options {
    int unsafe;    /* 1: scripts also get the restricted io and os libraries */
    int redo;      /* 1: cce.options.redo = true (the experiment module re-runs recorded runs) */
    int traceback; /* 1: error messages end with a Lua traceback */
    /* Progress display for long calls (evaluation windows, compression layers): done of total
     * under a label, then progress_end once finished. Both may be NULL (quiet). */
    void (*progress)(const char *label, long done, long total);
    void (*progress_end)(void);
} cce_lua_options;

/* A new sandboxed state (see lua/README.md, "Sandbox"): base (without dofile and loadfile; load
 * takes text chunks only), string, table, math, utf8, the global `cce` module table, a require
 * that resolves only "cce" and the prelude modules "cce.<name>" embedded from lua/cce/, and,
 * with o->unsafe, io and os restricted to reading files, the clock and the environment. o is
 * copied (NULL: all defaults). The caller owns *out (cce_lua_close). CCE_ERR_NOMEM on failure,
 * CCE_ERR_INTERNAL naming the part whose setup failed. */
cce_status cce_lua_new(const cce_lua_options *o, lua_State **out);

/* Closes the state: every object still open is released. NULL is allowed. */
void cce_lua_close(lua_State *L);

/* Loads the script at path as Lua source text (a precompiled chunk is refused; a first line
 * starting with '#' is skipped) and runs it with the arguments args [n_args]: they are the
 * chunk's `...`, the global `arg` (arg[0] = path, arg[1..n_args]) and cce.args (the same table).
 * On success returns CCE_OK. On failure *message (malloc'd, the caller frees; may be NULL when
 * not wanted) receives "PATH:LINE: cause" (plus a traceback with o->traceback) and the status is
 * CCE_ERR_IO (the script cannot be read), CCE_ERR_FORMAT (a syntax error or a bytecode file) or
 * CCE_ERR_STATE (the script raised an error). */
cce_status cce_lua_run_file(lua_State *L, const char *path, int n_args, char *const *args,
                            char **message);

/* Runs a chunk of source text named chunkname (Lua's convention: "@file" or "=name") like
 * cce_lua_run_file, without arguments. */
cce_status cce_lua_run_string(lua_State *L, const char *chunk, const char *chunkname,
                              char **message);

/* The options the state was made with. Borrowed, valid for the state's lifetime. */
const cce_lua_options *cce_lua_get_options(lua_State *L);

/* Shows progress through the options' callback (nothing when it is NULL). */
void cce_lua_progress(lua_State *L, const char *label, long done, long total);
void cce_lua_progress_end(lua_State *L);

/* The prelude modules embedded at build time (generated from lua/cce/NAME.lua): name "cce.<file>",
 * source text [len]. The array ends with an entry whose name is NULL. Static. */
typedef struct cce_lua_prelude {
    const char *name;
    const char *source;
    size_t len;
} cce_lua_prelude;
extern const cce_lua_prelude cce_lua_prelude_modules[];

/* The parts of the module; each is called by cce_lua_new with the module table on the stack top.
 * lua_model.c, lua_data.c and lua_tensor.c are always built; the others are linked when their
 * source file exists (CMake defines CCE_LUA_HAVE_RESULTS etc.). */
void cce_lua_open_model(lua_State *L);      /* cce.load, cce.model, cce.synth; cce.model methods */
void cce_lua_open_data(lua_State *L);       /* cce.dataset; cce.dataset and cce.tokens methods */
void cce_lua_open_tensor(lua_State *L);     /* cce.tensor methods */
void cce_lua_open_results(lua_State *L);    /* lua_results.c */
void cce_lua_open_strategy(lua_State *L);   /* lua_strategy.c */
void cce_lua_open_tensor_ops(lua_State *L); /* lua_tensor_ops.c */
void cce_lua_open_stats(lua_State *L);      /* lua_stats.c */
void cce_lua_open_task(lua_State *L);       /* lua_task.c */
void cce_lua_open_table(lua_State *L);      /* lua_table.c */
void cce_lua_open_bench(lua_State *L);      /* lua_bench.c */

/* The C table (results_table.h) of the open cce.table at idx (lua_stats.c), for recording it in
 * a run (cce_run_record.tables); borrowed from the object. Raises otherwise. */
struct cce_table;
struct cce_table *cce_lua_check_table(lua_State *L, int idx);

/* Pushes an empty cce.table object labelled "table 'NAME'" (raises only on a memory error, so
 * call it before the C work) and returns its slot: a table stored there is owned by the object
 * (freed when it is closed or collected). Until the slot is filled, using the object raises. */
struct cce_table **cce_lua_push_table_slot(lua_State *L, const char *name);

/* ---- Errors (lua_main.c) --------------------------------------------------------------------- */

/* Pushes the position of the innermost frame of user code (not C, not a prelude module) as
 * "SCRIPT:LINE: ", or "" when there is none. */
void cce_lua_where(lua_State *L);

/* Raises "SCRIPT:LINE: <context>: <cause>", where context is fmt formatted (may be NULL for
 * none) and cause is cce_error_detail(), or cce_strerror(s) when the detail is empty. Never
 * returns; declared int so that C functions can `return cce_lua_error(...)`. */
int cce_lua_error(lua_State *L, cce_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Raises "SCRIPT:LINE: <message>" (printf-style). Never returns. */
int cce_lua_raise(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- Result tables -------------------------------------------------------------------------- */

/* Set field k of the table on the stack top to a number, an integer or a string (copied). */
static inline void cce_lua_set_number(lua_State *L, const char *k, double v) {
    lua_pushnumber(L, (lua_Number)v);
    lua_setfield(L, -2, k);
}

static inline void cce_lua_set_integer(lua_State *L, const char *k, int64_t v) {
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

static inline void cce_lua_set_string(lua_State *L, const char *k, const char *v) {
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

/* ---- Object life cycle (lua_object.c) ------------------------------------------------------- */

typedef struct cce_lua_object cce_lua_object;

/* The header every object userdata starts with. An object is open until closed (obj:close(),
 * a <close> variable going out of scope, or __gc). Closing marks it closed at once (using it
 * afterwards is an error naming it) and releases what it holds as soon as nothing borrows from
 * it any more: objects that borrow (a variant from its base, a tensor view from its model) pin
 * their owner, which is also kept alive as their first user value. Closing twice is harmless. */
struct cce_lua_object {
    char label[160];                    /* names the object in messages: "model 'stories260K.h5'" */
    int closed;                         /* 1: closed; check functions raise "<label> is closed" */
    int released;                       /* 1: release has run */
    int pins;                           /* open borrowers */
    cce_lua_object *owner;              /* the object this one pins, or NULL */
    void (*release)(cce_lua_object *o); /* frees what the object holds; called once; may be NULL */
};

/* A new object userdata of size bytes (zero-filled, header first) with metatable tname (made
 * with cce_lua_new_class) and one user value, pushed on the stack. label is printf-style. With
 * owner_idx != 0 the object at that stack index (an open object userdata) becomes its owner:
 * stored as the user value and pinned. Returns the memory (owned by Lua). Raises on a memory
 * error (nothing is leaked: create the object before acquiring what it will hold). */
void *cce_lua_new_object(lua_State *L, size_t size, const char *tname,
                         void (*release)(cce_lua_object *), int owner_idx, const char *label_fmt,
                         ...) __attribute__((format(printf, 6, 7)));

/* The same with a va_list. */
void *cce_lua_new_objectv(lua_State *L, size_t size, const char *tname,
                          void (*release)(cce_lua_object *), int owner_idx, const char *label_fmt,
                          va_list ap);

/* The open object of metatable tname at idx; raises "bad argument" for another type and
 * "<label> is closed" for a closed one. */
void *cce_lua_check_object(lua_State *L, int idx, const char *tname);

/* Like cce_lua_check_object but returns NULL instead of raising when the value at idx is not a
 * tname userdata (a closed one still raises). */
void *cce_lua_test_object(lua_State *L, int idx, const char *tname);

/* Closes an object (see above). NULL is allowed. */
void cce_lua_object_close(cce_lua_object *o);

/* Tells the garbage collector that an object just made holds `bytes` of C memory (a tensor, a
 * variant's compressed tensors): Lua does not see that memory, so without this a loop that drops
 * large objects unclosed would let them pile up. Runs a collector step proportional to bytes
 * (which may run finalizers). */
void cce_lua_account_memory(lua_State *L, size_t bytes);

/* Registers metatable tname: __index = a table of the methods (plus `close`), __gc, __close,
 * __tostring (the label unless metamethods gives one), __metatable = tname (scripts cannot
 * replace it), and the extra metamethods (either array may be NULL; {NULL, NULL}-terminated).
 * Leaves the stack unchanged. */
void cce_lua_new_class(lua_State *L, const char *tname, const luaL_Reg *methods,
                       const luaL_Reg *metamethods);

/* Adds methods to the method table of an existing class (e.g. tensor operations). */
void cce_lua_add_methods(lua_State *L, const char *tname, const luaL_Reg *methods);

/* ---- Option tables (lua_object.c) -----------------------------------------------------------
 * Functions taking a table of named fields (cce.synth{...}, ds:split{...}) check the names with
 * cce_lua_check_fields and read them with the getters. `fn` names the function in messages
 * ("cce.synth"), `arg` is the table's argument position. Type errors read
 * "bad argument #ARG to 'FN' (field 'KEY': integer expected, got string)"; range errors name
 * the field and the range. */

/* Raises for a key of the table at idx that is not in allowed (NULL-terminated), listing them. */
void cce_lua_check_fields(lua_State *L, int idx, int arg, const char *fn,
                          const char *const *allowed);

/* 1 and *out when the field is given (not nil), 0 (and *out untouched) when it is nil. */
int cce_lua_field_integer(lua_State *L, int idx, int arg, const char *fn, const char *key,
                          int64_t min, int64_t max, int64_t *out);
int cce_lua_field_number(lua_State *L, int idx, int arg, const char *fn, const char *key,
                         double min, double max, double *out);
int cce_lua_field_boolean(lua_State *L, int idx, int arg, const char *fn, const char *key,
                          int *out);
/* The string is borrowed from the table (valid while the table is alive and unchanged). */
int cce_lua_field_string(lua_State *L, int idx, int arg, const char *fn, const char *key,
                         const char **out);

/* ---- Models (lua_model.c) -------------------------------------------------------------------- */

typedef struct cce_lua_model {
    cce_lua_object obj; /* label "model 'PATH'", "model synth:tiny:seed=1", "variant ..." */
    cce_model *model;   /* owned; NULL once released */
    cce_compress_result *result; /* how a variant was made (owned), or NULL for a plain model */
    char *plan_json;             /* a variant's rules and applied plans as JSON (owned), or NULL */
    char *path;                  /* the file it was loaded from (owned), or NULL in memory */
    char sha256[65];             /* of that file, computed on first request; "" until then */
} cce_lua_model;

/* The open model at idx (raises otherwise). */
cce_lua_model *cce_lua_check_model(lua_State *L, int idx);

/* Pushes a new model object that takes m (NULL allowed: filled in later by the caller, e.g.
 * after compressing), with path (copied; may be NULL). base_idx != 0: the stack index of the
 * base model object of a variant (kept alive and pinned). Raises on a memory error, in which
 * case m is freed. */
cce_lua_model *cce_lua_push_model(lua_State *L, cce_model *m, const char *path, int base_idx,
                                  const char *label_fmt, ...) __attribute__((format(printf, 5, 6)));

/* The sha256 of the model's file (computed once), or NULL for an in-memory model. Raises on an
 * I/O error. Borrowed from mo. */
const char *cce_lua_model_sha256(lua_State *L, cce_lua_model *mo);

/* m:compress{...} (lua_compress.c): compresses the model at model_idx as the option table at
 * opts_idx says and pushes the variant (a cce.model holding its cce_compress_result). Raises
 * on any error, at the script line of the call. Returns 1 (values pushed). */
int cce_lua_compress(lua_State *L, int model_idx, int opts_idx);

/* A strategy parameter from the Lua value at idx (number, integer, boolean or string) into *kv
 * with the given key (kv->key and kv->text borrow from Lua: keep the values alive). Returns 0
 * for another type (nothing raised). (lua_compress.c) */
int cce_lua_to_param_kv(lua_State *L, int idx, const char *key, cce_param_kv *kv);

/* Pushes one report row as a table with the cce_report_row fields (strategy, layer, tensor,
 * params_before, ..., note): the rows of v:compression().layers. (lua_compress.c) */
void cce_lua_push_report_row(lua_State *L, const cce_report_row *w);

/* The block matrices of m (2-D tensors of layers.*) whose names match a layer key (key_text
 * NULL) or a name/pattern key, by the plan's own matching (cce_plan_resolve without skip rules),
 * as indices into the model's tensor list written into idx [cce_model_tensor_count]; returns how
 * many. Raises naming fn on an error. (lua_compress.c) */
size_t cce_lua_matching_tensors(lua_State *L, cce_model *m, int layer, const char *key_text,
                                size_t *idx, const char *fn);

/* A key of a `layers` table: a layer index (kind 0), an exact tensor name (1) or a pattern (2). */
typedef struct cce_lua_layer_key {
    int kind;
    lua_Integer layer; /* kind 0 */
    const char *text;  /* kinds 1, 2 (held by the keys userdata) */
    size_t literal;    /* characters of text that are not wildcards */
    int slot;          /* where cce_lua_push_layer_key finds the key */
} cce_lua_layer_key;

/* The keys of the `layers` table at tidx in the order m:compress applies them (layer indices,
 * exact names, then patterns with the fewest literal characters first, so a more specific one is
 * added later and wins). Pushes a userdata holding them and their strings, and returns its
 * memory with *n keys. Raises naming fn for a key that is neither an integer nor a string, or a
 * layer index outside the model of mo. (lua_compress.c) */
cce_lua_layer_key *cce_lua_layer_keys(lua_State *L, int tidx, cce_lua_model *mo, const char *fn,
                                      size_t *n);

/* Pushes the Lua value of key k of the userdata at order_idx (from cce_lua_layer_keys). */
void cce_lua_push_layer_key(lua_State *L, int order_idx, const cce_lua_layer_key *k);

/* v:compression() (lua_compress.c): pushes the table describing how the variant at idx was made,
 * or nil for a model that is not one. Returns 1. */
int cce_lua_push_compression(lua_State *L, int idx);

/* Pushes the metrics table of an evaluation (fields in lua/README.md, "m:eval"; the reference
 * metrics only when r->has_ref); protocol is the line cce_eval_protocol_line gives. (lua_eval.c) */
void cce_lua_push_eval_result(lua_State *L, const cce_eval_result *r, const char *protocol);

/* m:eval{...} (lua_eval.c). Returns 1 (the metrics table), or 2 with windows = true (and the
 * "eval_windows" table). */
int cce_lua_eval(lua_State *L, int model_idx, int opts_idx);

/* ---- Datasets and token streams (lua_data.c) ------------------------------------------------- */

typedef struct cce_lua_dataset {
    cce_lua_object obj; /* label "dataset 'tinystories_val'" */
    char *name;         /* as given: a manifest name or a path (owned) */
    char *path;         /* the provisioned file (owned) */
    char sha256[65];
    int64_t bytes;
} cce_lua_dataset;

/* A token stream tokenized with one model's tokenizer: the test part of a split (one segment),
 * its calibration part (n_segments segments of seg_len tokens, as cce compress --calib draws
 * them) or a whole text (part "text", one segment). */
typedef struct cce_lua_tokens {
    cce_lua_object obj;   /* label "tokens calib of 'tinystories_val'" */
    int32_t *tokens;      /* [n_segments * seg_len], owned */
    size_t n_segments;    /* 1 for "test" and "text" */
    size_t seg_len;       /* tokens per segment */
    char part[8];         /* "calib", "test" or "text" */
    char *dataset;        /* the dataset's name as given (owned) */
    char sha256[65];      /* the text's sha256 */
    uint64_t seed;        /* the split's seed (0 for "text") */
    uint64_t tokenizer;   /* cce_tokenizer_fingerprint of the tokenizer used */
    cce_calib_data calib; /* calib part: the segments as calibration data (tokens borrowed) */
} cce_lua_tokens;

cce_lua_dataset *cce_lua_check_dataset(lua_State *L, int idx);
cce_lua_tokens *cce_lua_check_tokens(lua_State *L, int idx);

/* The whole token stream of a dataset tokenized with tok (cce_dataset_tokens); *tokens is
 * malloc'd (the caller frees). Returns the status (does not raise). */
cce_status cce_lua_dataset_tokens(const cce_lua_dataset *ds, const cce_tokenizer *tok,
                                  int32_t **tokens, size_t *n);

/* ---- Tensors (lua_tensor.c) ------------------------------------------------------------------ */

#define CCE_LUA_TENSOR_OWNED    1u /* the object frees the tensor (cce_tensor_free) */
#define CCE_LUA_TENSOR_WRITABLE 2u /* t:set and in-place operations are allowed */

typedef struct cce_lua_tensor {
    cce_lua_object obj;           /* label "tensor 'layers.0.mlp.up_proj.weight'" */
    cce_tensor *t;                /* NULL once released */
    unsigned flags;               /* CCE_LUA_TENSOR_* */
    char name[CCE_PLAN_NAME_MAX]; /* the model's tensor name, or "" */
} cce_lua_tensor;

/* Pushes a tensor object over t. With CCE_LUA_TENSOR_OWNED it takes t (freed on release, and at
 * once if the push raises). owner_idx != 0: the stack index of the object whose memory t borrows
 * (a model, a tensor), kept alive and pinned. A tensor borrowed from something that is not an
 * object (a strategy job's weight) has owner_idx 0: close it (cce_lua_object_close) before the
 * memory goes away, so a script that kept it gets "is closed" instead of a dangling pointer. */
cce_lua_tensor *cce_lua_push_tensor(lua_State *L, cce_tensor *t, unsigned flags, int owner_idx,
                                    const char *name);

/* Pushes a new owned, writable, zero-filled tensor of the given shape (ndim in [1, 4]). Raises
 * on a bad shape or a memory error. */
cce_lua_tensor *cce_lua_new_tensor(lua_State *L, int ndim, const int64_t *shape, const char *name);

/* The open tensor at idx (raises otherwise); the writable variant also raises for a read-only
 * tensor ("tensor 'X' is read-only: use t:copy()"). */
cce_lua_tensor *cce_lua_check_tensor(lua_State *L, int idx);
cce_lua_tensor *cce_lua_check_writable_tensor(lua_State *L, int idx);

#endif
