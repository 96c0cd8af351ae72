/* The strategy plugin interface: the one header a compression-strategy author needs.
 *
 * A strategy is a `cce_strategy` descriptor. Built-in strategies live in strategies/ and are listed
 * in strategies/registry_list.c; external ones are shared objects loaded at run time that export
 *
 *     const cce_strategy *cce_strategy_entry(void);
 *
 * returning a descriptor with api_version == CCE_STRATEGY_API_VERSION. A plugin is built as a
 * module with undefined references to libcce (cc -shared -fPIC my.c -o my.so): the cce program
 * and the test executables export libcce's symbols, so a plugin calls cce_fail, cce_params_get_*,
 * cce_tensor_*, cce_model_* and the helpers below exactly as a built-in strategy does.
 *
 * Life of a strategy in a run (the framework drives it; see cce_strategy_instance_*):
 *   1. parameters are parsed and validated against the schema by the framework ("k=v,k=v" text
 *      or a key/value list), so messages are uniform;
 *   2. priv (priv_size bytes, zeroed) is allocated and init(priv, params) is called;
 *   3. plan(priv, model, calib, plan), if present, may allocate per-tensor / per-layer values;
 *   4. apply(priv, job, report) is called once per block job (one layer's tensors);
 *   5. fini(priv) is always called, even after a failed init.
 *
 * What a ratio means (DESIGN section 5): `ratio` is the fraction of parameters removed. A
 * strategy's `ratio` parameter (or `bits` for quantizers) is the plan's global target: the driver
 * builds the plan from it (cce_plan_new_from_params), and apply reads each tensor's target from
 * the job, never from the parameter. Pruning removes exactly cce_ratio_count(ratio, n) of n
 * weights: floor(ratio * n), robust to the rounding of ratio * n.
 *
 * Callbacks return CCE_OK or a failure status after calling cce_fail() with a detail naming the
 * strategy, tensor or parameter. */
#ifndef CCE_STRATEGY_H
#define CCE_STRATEGY_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "plan.h"
#include "status.h"
#include "tensor.h"

/* Bumped whenever a struct of this header changes layout or meaning.
 * 6: cce_block_job gained bias[] (the layer's biases as writable copies) and bias_pending[]
 *    (cce_block_job_set_bias); a strategy that resizes q/k/v/gate/up rows must slice their
 *    biases. cce_strategy gained the optional `tables` callback (extra per-run tables, appended
 *    at the end of the descriptor). */
#define CCE_STRATEGY_API_VERSION 6

/* The name of the symbol an external strategy exports. */
#define CCE_STRATEGY_ENTRY_SYMBOL "cce_strategy_entry"

/* ---- Parameter schema ------------------------------------------------------------------------ */

typedef enum cce_param_type {
    CCE_PARAM_INT = 0, /* whole number in [min, max] */
    CCE_PARAM_FLOAT,   /* finite number in [min, max] (ends open with the flags below) */
    CCE_PARAM_BOOL,    /* true/false, yes/no, on/off, 1/0 */
    CCE_PARAM_STRING,  /* any text without ',' */
    CCE_PARAM_ENUM,    /* one of `choices` */
    CCE_PARAM_NM       /* an N:M pair, 0 < N < M <= CCE_PARAM_NM_MAX */
} cce_param_type;

#define CCE_PARAM_MIN_OPEN 1u /* the range excludes min: (min, ...] */
#define CCE_PARAM_MAX_OPEN 2u /* the range excludes max: [..., max) */
#define CCE_PARAM_REQUIRED 4u /* no default; the user must give it */
#define CCE_PARAM_NM_MAX   65536

typedef struct cce_param {
    const char *name; /* unique within the strategy; NULL ends the schema */
    cce_param_type type;
    const char *def;            /* default in text form ("0.5", "row", "2:4", "true"); NULL: unset
                                   unless given (cce_params_has tells) */
    double min, max;            /* INT / FLOAT range (use -INFINITY / INFINITY for none) */
    unsigned flags;             /* CCE_PARAM_* */
    const char *const *choices; /* ENUM: the allowed values, NULL-terminated */
    const char *help;           /* one line */
} cce_param;

/* A validated parameter set (opaque). Values are read by name with the typed getters. */
typedef struct cce_params cce_params;

/* ---- Framework types a strategy sees --------------------------------------------------------- */

/* Calibration statistics (column norms, second moments; defined by the calibration module).
 * NULL when the run has no calibration data. */
typedef struct cce_calib cce_calib;

#define CCE_NEEDS_CALIBRATION 1u /* plan/apply need cce_calib statistics */
#define CCE_NEEDS_SEQUENTIAL  2u /* statistics of the already-compressed prefix, block by block */
#define CCE_NEEDS_RESIZE                                                                           \
    4u /* block jobs grant resizing (can_resize): tensors may change                               \
          shape and the layer its widths, or be removed */

/* One tensor of a block job. */
typedef struct cce_job_tensor {
    char name[CCE_PLAN_NAME_MAX]; /* full name, "layers.3.mlp.down_proj.weight" */
    cce_tensor *weight;           /* [out, in] (1-D for norms); writable; owned by the job */
    double target;                /* from the plan: fraction removed, or bits for quantizers */
    int skip;                     /* 1: the plan leaves this tensor alone; do not change it */
    cce_tensor *resized; /* framework-managed: a pending replacement (cce_block_job_resize) */
    /* Optional: how the strategy's result is stored (encoding.h), e.g. the quant payload of the
     * codes it chose or a sparse pattern; its decoded values must be the weight's. apply may set
     * it (malloc'd, cce_encoding_new_*); the job owns it and frees it. NULL: the driver stores the
     * tensor as plain float32 (or keeps the pattern of an earlier step, see compress.h). */
    struct cce_encoding *encoding;
} cce_job_tensor;

/* One layer's tensors, handed to apply. */
typedef struct cce_block_job {
    int layer;               /* block index, or -1 for tensors outside the blocks */
    size_t n;                /* number of tensors */
    cce_job_tensor *tensors; /* [n] */
    const cce_model *model;  /* config and layer shapes (read only); may be NULL */
    const cce_calib *calib;  /* NULL without calibration */
    int can_resize;          /* 1: the strategy may replace tensors by differently shaped ones */
    /* Framework-managed (cce_block_job_set_shape, cce_block_job_remove_layer): the layer's new
     * widths, applied by the driver together with the resized tensors when apply succeeds. */
    int reshaped;              /* 1: new_shape holds the layer's new widths (or removed = 1) */
    cce_layer_shape new_shape; /* kv_of_head [n_heads] owned by the job */
    /* The layer's biases (model.h, "Biases") as writable copies owned by the job, NULL when
     * absent; filled by the driver for block jobs. They hold the values from before apply until
     * apply returns. After a successful apply the driver stores them in the model when they
     * differ from its biases (so an in-place change counts too; a bias freed and set to NULL is
     * removed). */
    cce_tensor *bias[CCE_LB_COUNT];
    /* Framework-managed (cce_block_job_set_bias): pending new biases [rows], swapped into bias[]
     * when apply succeeds, dropped when it fails. */
    cce_tensor *bias_pending[CCE_LB_COUNT];
} cce_block_job;

/* One row of an apply report: what happened to one tensor. */
typedef struct cce_report_row {
    char strategy[32];
    int layer;
    char tensor[CCE_PLAN_NAME_MAX];
    int64_t params_before, params_after; /* parameters (non-zero weights after pruning) */
    int64_t bytes_before, bytes_after;   /* under the real encoding (cce_sparse_encoded_bytes) */
    double bits_per_weight;              /* 8 * bytes_after / params_before */
    double sparsity;                     /* fraction of exact zeros after */
    int64_t rank;                        /* kept rank of a low-rank factorisation, -1 otherwise */
    double rel_fro_error;                /* ||W - W'||_F / ||W||_F */
    double output_error;                 /* relative output error on calibration inputs; NaN if
                                            unknown */
    double seconds;                      /* wall time for this tensor */
    char note[64]; /* a remark on the encoding ("ragged last group 44 of 64"), "" if none */
} cce_report_row;

/* The rows of one or more applies, in order. */
typedef struct cce_report {
    cce_report_row *rows;
    size_t n, cap;
} cce_report;

/* ---- Extra per-run tables -------------------------------------------------------------------- */

struct cce_table; /* results_table.h */

/* Tables (results_table.h) a strategy hands back from its `tables` callback: per-layer
 * diagnostics recorded with a run beside "weights" and "activations" (results.h). The list owns
 * the tables. Plain data: zero-initialise it (or cce_table_list_init) and cce_table_list_clear. */
typedef struct cce_table_list {
    struct cce_table **tables; /* [n] owned */
    size_t n, cap;
} cce_table_list;

void cce_table_list_init(cce_table_list *l);
/* Appends t, which the list then owns (on failure t is freed). CCE_ERR_ARG naming the table when
 * the list already holds one of that name. */
cce_status cce_table_list_add(cce_table_list *l, struct cce_table *t);
/* Frees every table and empties the list. */
void cce_table_list_clear(cce_table_list *l);

/* ---- The descriptor -------------------------------------------------------------------------- */

typedef struct cce_strategy {
    int api_version;         /* CCE_STRATEGY_API_VERSION */
    const char *name;        /* "magnitude", "wanda", ...: [a-z0-9_]+ */
    const char *summary;     /* one line */
    const cce_param *params; /* schema; the entry with name == NULL ends it */
    unsigned needs;          /* CCE_NEEDS_* */
    size_t priv_size;        /* the framework allocates and zeroes priv (may be 0) */
    /* Reads the parameters into priv and checks combinations the schema cannot express. p stays
     * valid until fini. Optional. */
    cce_status (*init)(void *priv, const cce_params *p);
    /* Sees the whole model (read weights with cce_model_tensor; never modify them) and the
     * calibration statistics; may allocate values in the plan. Optional. */
    cce_status (*plan)(void *priv, cce_model *m, const cce_calib *calib, cce_plan *plan);
    /* Compresses one block job in place and appends one report row per tensor changed. */
    cce_status (*apply)(void *priv, cce_block_job *job, cce_report *r);
    /* Releases what init/plan/apply allocated in priv. Always called. Optional. */
    void (*fini)(void *priv);
    /* Needs that depend on the parameters (e.g. only one method needs calibration); the
     * framework ORs them with `needs`. Optional. */
    unsigned (*needs_of)(const cce_params *p);
    /* Extra per-run tables after every apply of a run (per-layer diagnostics), appended to *out,
     * which takes ownership of them. Table names start with the strategy's name ("cce_layers")
     * and are never "metrics" or "layers". Called after the run's last apply; may be called
     * again (each call builds new tables). Optional. */
    cce_status (*tables)(void *priv, cce_table_list *out);
} cce_strategy;

/* The function an external strategy exports (CCE_STRATEGY_ENTRY_SYMBOL). */
typedef const cce_strategy *(*cce_strategy_entry_fn)(void);

/* ---- Helpers for strategies ------------------------------------------------------------------ */

/* Typed parameter getters. CCE_ERR_NOT_FOUND if the schema has no such parameter, CCE_ERR_ARG if
 * it is of another type, CCE_ERR_STATE if it has no value (no default and not given). Strings are
 * borrowed from p. */
cce_status cce_params_get_int(const cce_params *p, const char *name, int64_t *out);
cce_status cce_params_get_float(const cce_params *p, const char *name, double *out);
cce_status cce_params_get_bool(const cce_params *p, const char *name, int *out);
cce_status cce_params_get_string(const cce_params *p, const char *name, const char **out);
/* ENUM: the choice text and its index in `choices` (either pointer may be NULL). */
cce_status cce_params_get_enum(const cce_params *p, const char *name, const char **choice,
                               int *index);
cce_status cce_params_get_nm(const cce_params *p, const char *name, int *n, int *m);
/* 1 if the parameter has a value (given or default) / was given by the user. */
int cce_params_has(const cce_params *p, const char *name);
int cce_params_given(const cce_params *p, const char *name);
/* The strategy the set belongs to. Borrowed. */
const cce_strategy *cce_params_strategy(const cce_params *p);

/* How many of n weights a ratio removes: floor(ratio * n), computed so that a ratio that is k / n
 * up to rounding gives exactly k (0.29 * 100 gives 29, not 28). ratio is clamped to [0, 1]. */
int64_t cce_ratio_count(double ratio, int64_t n);

/* Encoded bytes of a pruned float32 tensor of numel weights with `kept` non-zeros: the smaller of
 * dense (4 * numel) and sparse, where sparse is 4 * kept plus a 1-bit-per-weight mask, or, for an
 * N:M pattern (nm_m > 0), ceil(log2(nm_m)) index bits per kept weight. */
int64_t cce_sparse_encoded_bytes(int64_t numel, int64_t kept, int nm_m);

/* A report row with the identity filled in and every measure "unknown" (rank -1, errors NaN). */
void cce_report_row_init(cce_report_row *row, const char *strategy, int layer, const char *tensor);

/* Appends a copy of *row. CCE_ERR_NOMEM on failure. */
cce_status cce_report_add(cce_report *r, const cce_report_row *row);

/* Gives a job tensor a new shape: returns a new zero-filled tensor the strategy fills from the old
 * weight (still in tensors[i].weight until apply returns). When apply succeeds the framework swaps
 * it in and frees the old one; when apply fails it is dropped. CCE_ERR_STATE (naming the tensor) if
 * the job does not grant resizing, CCE_ERR_ARG for a bad index or shape. Borrowed: the job owns
 * *fresh. Calling it again for the same tensor replaces the pending tensor. */
cce_status cce_block_job_resize(cce_block_job *job, size_t i, int ndim, const int64_t *shape,
                                cce_tensor **fresh);

/* Declares the layer's new widths after resizing its tensors (structured pruning): hidden_dim,
 * n_heads, n_kv_heads and kv_of_head [n_heads] (copied). The driver checks them against the
 * resized tensors and applies both together when apply succeeds (cce_model_reshape_layer); when
 * apply fails they are dropped. CCE_ERR_STATE if the job does not grant resizing or is not a
 * block's (layer -1), CCE_ERR_RANGE for a width below 1 or a kv_of_head value outside
 * [0, n_kv_heads). Calling it again replaces the pending widths. */
cce_status cce_block_job_set_shape(cce_block_job *job, int32_t hidden_dim, int32_t n_heads,
                                   int32_t n_kv_heads, const int32_t *kv_of_head);

/* Removes the whole block (ShortGPT): when apply succeeds the driver marks the layer removed and
 * drops its tensors (cce_model_remove_layer); the strategy reports every tensor of the block.
 * CCE_ERR_STATE if the job does not grant resizing or is not a block's. */
cce_status cce_block_job_remove_layer(cce_block_job *job);

/* Drops a pending shape or removal (the framework calls it when apply fails and in
 * cce_block_job_free). */
void cce_block_job_clear_shape(cce_block_job *job);

/* Creates or replaces bias `which` of the job's layer with n values (copied). Applied by the
 * driver together with the (resized) tensors when apply succeeds; dropped when it fails. Does not
 * need can_resize (a bias correction keeps shapes). CCE_ERR_STATE for a job that is not a
 * block's (layer -1), CCE_ERR_ARG for a bad kind, n < 1 or no values, CCE_ERR_NUMERIC for NaN or
 * Inf values. When apply returns, the bias's length is checked against the final row count of
 * its weight in the job (resized or not): a mismatch fails the apply with CCE_ERR_ARG naming the
 * strategy and the bias. So a strategy that resizes the rows of q/k/v/gate/up (structured
 * pruning) must slice the matching bias too (job->bias[which] present: call this with the kept
 * rows); if it does not, the apply fails instead of producing a broken model. Calling it again
 * for the same bias replaces the pending values. */
cce_status cce_block_job_set_bias(cce_block_job *job, cce_layer_bias which, const float *v,
                                  int64_t n);

/* ---- Framework side (drivers, the CLI, Lua) -------------------------------------------------- */

/* The strategies compiled in (strategies/registry_list.c), NULL-terminated. */
extern const cce_strategy *const cce_builtin_strategies[];

/* Registered strategies: the built-ins, then the external ones loaded so far. Borrowed. */
size_t cce_strategy_count(void);
const cce_strategy *cce_strategy_at(size_t i);

/* The strategy of that name. CCE_ERR_NOT_FOUND names it and lists the known ones. Borrowed. */
cce_status cce_strategy_find(const char *name, const cce_strategy **out);

/* Loads an external strategy from a shared object and registers it. CCE_ERR_IO if the file is
 * missing; CCE_ERR_FORMAT naming the file if it is not a loadable object, lacks the entry symbol,
 * speaks another API version, or has an invalid descriptor or schema; CCE_ERR_ARG if a different
 * strategy of that name is already registered. Loading the same file again returns the same
 * descriptor. Borrowed: valid until cce_strategy_unload_external. Not thread-safe. */
cce_status cce_strategy_load_external(const char *path, const cce_strategy **out);

/* Forgets every external strategy and closes its shared object. Nothing obtained from them may be
 * used afterwards. */
void cce_strategy_unload_external(void);

/* Registers a descriptor built at run time (a strategy written in a script): validated like a
 * plugin's (cce_strategy_validate with `origin`, e.g. "script.lua:12"), CCE_ERR_ARG if a strategy
 * of that name is already registered. Listed after the built-ins and the external strategies.
 * Borrowed: the caller keeps *s (and its schema) alive until cce_strategy_unregister. Not
 * thread-safe. */
cce_status cce_strategy_register(const cce_strategy *s, const char *origin);

/* Forgets a descriptor registered with cce_strategy_register (nothing if it is not registered).
 * Instances of it must be freed before. */
void cce_strategy_unregister(const cce_strategy *s);

/* Checks a descriptor and its schema (names, types, ranges, enum choices, defaults in range).
 * CCE_ERR_FORMAT with a detail that starts with `origin` (a file name or "built-in"). */
cce_status cce_strategy_validate(const cce_strategy *s, const char *origin);

/* The schema entry of that name, or NULL. Borrowed. */
const cce_param *cce_strategy_param(const cce_strategy *s, const char *name);

/* "int", "float", "bool", "string", "enum", "N:M". Static. */
const char *cce_param_type_name(cce_param_type t);

/* The allowed values in text ("[0, 1)", "[2, 8]", "{row, tensor, global}", "N:M with 0 < N < M",
 * "{true, false}", "text") into buf. */
void cce_param_range_text(const cce_param *p, char *buf, size_t cap);

/* Parses "k=v,k=v" (NULL or "" gives the defaults). Unknown names and wrong types are
 * CCE_ERR_ARG, values outside the range CCE_ERR_RANGE, with a message of the form
 * "magnitude: ratio = 1.5 is outside [0, 1)". The caller owns *out (cce_params_free). */
cce_status cce_params_parse(const cce_strategy *s, const char *text, cce_params **out);

/* One value of a generic key/value list (Lua tables, JSON). Text is parsed like the CLI form;
 * numbers and booleans are checked against the parameter's type. */
typedef enum cce_value_kind {
    CCE_VALUE_TEXT = 0,
    CCE_VALUE_NUMBER,
    CCE_VALUE_INTEGER,
    CCE_VALUE_BOOL
} cce_value_kind;

typedef struct cce_param_kv {
    const char *key;
    cce_value_kind kind;
    const char *text; /* CCE_VALUE_TEXT */
    double number;    /* CCE_VALUE_NUMBER */
    int64_t integer;  /* CCE_VALUE_INTEGER */
    int boolean;      /* CCE_VALUE_BOOL */
} cce_param_kv;

/* Like cce_params_parse, from n key/value pairs. The caller owns *out. */
cce_status cce_params_from_kv(const cce_strategy *s, const cce_param_kv *kv, size_t n,
                              cce_params **out);

/* A strategy specification "NAME" or "NAME:k=v,k=v" (split at the first ':' only): finds the
 * strategy and parses its parameters. The caller owns *params. */
cce_status cce_strategy_parse_spec(const char *spec, const cce_strategy **s, cce_params **params);

/* A deep copy. The caller owns *out. */
cce_status cce_params_clone(const cce_params *p, cce_params **out);
void cce_params_free(cce_params *p);

/* Every valued parameter in schema order: "ratio=0.5,scope=row" (parses back to the same set) /
 * a JSON object {"ratio": 0.5, "scope": "row"} for provenance. The caller frees the string. */
cce_status cce_params_format(const cce_params *p, char **out);
cce_status cce_params_to_json(const cce_params *p, char **out);

/* A strategy with its parameters and private state, ready to plan and apply. */
typedef struct cce_strategy_instance cce_strategy_instance;

/* Allocates priv, copies p and calls init. On failure fini has been called and nothing is left.
 * The caller owns *out (cce_strategy_instance_free). */
cce_status cce_strategy_instance_new(const cce_strategy *s, const cce_params *p,
                                     cce_strategy_instance **out);

/* Runs the plan stage (nothing if the strategy has none). CCE_ERR_STATE if the strategy needs
 * calibration and calib is NULL. */
cce_status cce_strategy_instance_plan(cce_strategy_instance *inst, cce_model *m,
                                      const cce_calib *calib, cce_plan *plan);

/* Runs apply on a job: checks that calibration is there when needed and that every tensor the job
 * plans is finite (CCE_ERR_NUMERIC naming it), checks the lengths of the biases against their
 * weights' final rows (see cce_block_job_set_bias), then swaps in resized tensors and pending
 * biases on success or drops them on failure. Rows are appended to r (and removed again on
 * failure). A strategy that fails half way may leave tensors it changed in place changed: drivers
 * give jobs copies. */
cce_status cce_strategy_instance_apply(cce_strategy_instance *inst, cce_block_job *job,
                                       cce_report *r);

const cce_strategy *cce_strategy_instance_strategy(const cce_strategy_instance *inst);
/* The instance's needs: the descriptor's `needs` ORed with needs_of(params). */
unsigned cce_strategy_instance_needs(const cce_strategy_instance *inst);
const cce_params *cce_strategy_instance_params(const cce_strategy_instance *inst);

/* Calls fini and frees everything. */
void cce_strategy_instance_free(cce_strategy_instance *inst);

/* The instance's private state (priv_size bytes; NULL when 0). Borrowed from the instance. */
void *cce_strategy_instance_priv(const cce_strategy_instance *inst);

/* The strategy's extra tables (its `tables` callback; nothing for a strategy without one),
 * appended to out, which owns them. Checked: valid names that start with the strategy's name, not
 * "metrics" or "layers", distinct within out (CCE_ERR_FORMAT naming the strategy and table;
 * CCE_ERR_ARG for a repeat). On failure out is as it was. (strategy_tables.c) */
cce_status cce_strategy_instance_tables(cce_strategy_instance *inst, cce_table_list *out);

/* The tables of every step of a run (steps [n], in order, as cce_compress got them) appended to
 * out. A name another step already gave gets the suffix "_s<step number>" ("cce_layers_s2"). On
 * failure out is as it was. (strategy_tables.c) */
cce_status cce_strategy_tables_collect(cce_strategy_instance *const *steps, size_t n,
                                       cce_table_list *out);

/* A job of n empty tensor slots for one layer (can_resize 0, no model, no calibration). The caller
 * owns *out (cce_block_job_free). */
cce_status cce_block_job_new(int layer, size_t n, cce_block_job **out);

/* Fills slot i: the job takes ownership of weight (also on failure). CCE_ERR_ARG for a bad index
 * or a name longer than CCE_PLAN_NAME_MAX - 1. */
cce_status cce_block_job_set(cce_block_job *job, size_t i, const char *name, cce_tensor *weight,
                             double target, int skip);

/* Hands slot i's weight back to the caller, who then owns it (NULL for a bad index). */
cce_tensor *cce_block_job_take(cce_block_job *job, size_t i);

/* Frees the job and every tensor and bias it still owns. */
void cce_block_job_free(cce_block_job *job);

/* An empty report / its rows freed. A report is plain data: zero-initialise or use these. */
void cce_report_init(cce_report *r);
void cce_report_clear(cce_report *r);

#endif
