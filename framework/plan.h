/* A compression plan: which tensors a strategy touches, and at what ratio (or bit width).
 *
 * A plan holds, in order of precedence (most specific first):
 *   1. skip rules        globs; a skipped tensor is never touched (default: embed_tokens, every
 *                        norm ("*norm"), lm_head; configurable)
 *   2. tensor overrides  an exact tensor name ("layers.1.mlp.up_proj", with or without ".weight")
 *   3. pattern overrides globs on names without zero padding ("layers.*.mlp.down_proj",
 *                        "layers.0.*"); when several match, the one added last wins
 *   4. layer overrides   by block index
 *   5. allocation        values a strategy's plan stage assigns per tensor or per layer (a global
 *                        magnitude threshold, OWL), tensor before layer
 *   6. uniform           the global target
 * Patterns are matched with fnmatch(3) (no flags: '*' also matches dots) against the name without
 * its trailing ".weight" and against the full name. An override text with no glob character
 * ('*', '?', '[') is an exact tensor name; any other is a pattern.
 *
 * Values mean what the plan's kind says: CCE_PLAN_RATIO values are the fraction of parameters
 * removed, in [0, 1) for user rules and [0, 1] for allocations (a global threshold may remove a
 * whole tensor); CCE_PLAN_BITS values are whole bit widths in [2, 8].
 *
 * The plan also records what was actually applied (one row per tensor: layer, tensor, value and
 * the rule that decided), which drivers print and store with every run.
 *
 * Not thread-safe. */
#ifndef CCE_PLAN_H
#define CCE_PLAN_H

#include <stddef.h>
#include <stdio.h>

#include "model.h"
#include "status.h"

/* Longest tensor name or rule text a plan accepts (including the NUL). */
#define CCE_PLAN_NAME_MAX 128

typedef enum cce_plan_kind {
    CCE_PLAN_RATIO = 0, /* fraction of parameters removed */
    CCE_PLAN_BITS       /* bits per weight of a quantizer */
} cce_plan_kind;

/* Which rule decided a tensor's value, most specific first. */
typedef enum cce_plan_source {
    CCE_PLAN_SKIP = 0,
    CCE_PLAN_TENSOR,
    CCE_PLAN_PATTERN,
    CCE_PLAN_LAYER,
    CCE_PLAN_ALLOCATION,
    CCE_PLAN_UNIFORM
} cce_plan_source;

/* One decision: what cce_plan_resolve returns and what the plan records. */
typedef struct cce_plan_row {
    int layer;                      /* block index, or -1 outside the blocks */
    char tensor[CCE_PLAN_NAME_MAX]; /* full name, "layers.3.mlp.down_proj.weight" */
    double value;                   /* ratio or bits (0 when skipped) */
    cce_plan_source source;
    char rule[CCE_PLAN_NAME_MAX]; /* the skip/override pattern, "layer 3", the allocation rule's
                                     name, or "uniform" */
} cce_plan_row;

typedef struct cce_plan cce_plan;
typedef struct cce_params cce_params;

/* New plan of the given kind with a global target and the default skip rules. The target is
 * checked like any value (CCE_ERR_RANGE naming "target"). The caller owns *out (cce_plan_free). */
cce_status cce_plan_new(cce_plan_kind kind, double target, cce_plan **out);

/* New plan whose target is a strategy's parameter: `ratio` (CCE_PLAN_RATIO) if its schema has one,
 * else `bits` (CCE_PLAN_BITS), else a ratio plan with target 0. The caller owns *out. */
cce_status cce_plan_new_from_params(const cce_params *p, cce_plan **out);

void cce_plan_free(cce_plan *plan);

cce_plan_kind cce_plan_get_kind(const cce_plan *plan);
double cce_plan_target(const cce_plan *plan);
cce_status cce_plan_set_target(cce_plan *plan, double target);

/* Overrides. Values are checked against the plan's kind (CCE_ERR_RANGE naming the rule). Setting
 * the same layer or the same name/pattern again replaces its value. */
cce_status cce_plan_override_layer(cce_plan *plan, int layer, double value);
cce_status cce_plan_override(cce_plan *plan, const char *name_or_pattern, double value);

/* Skip rules (globs, as above). cce_plan_unskip removes the rule with exactly this text
 * (CCE_ERR_NOT_FOUND if none); cce_plan_clear_skips removes every skip rule, defaults included. */
cce_status cce_plan_skip(cce_plan *plan, const char *pattern);
cce_status cce_plan_unskip(cce_plan *plan, const char *pattern);
void cce_plan_clear_skips(cce_plan *plan);

/* Allocation, set by a strategy's plan stage (or an allocation rule such as OWL). `rule` names it
 * in the recorded plan ("global magnitude threshold"). Values in [0, 1] for ratio plans. */
cce_status cce_plan_allocate_tensor(cce_plan *plan, const char *name, double value,
                                    const char *rule);
cce_status cce_plan_allocate_layer(cce_plan *plan, int layer, double value, const char *rule);

/* One rule in text form, as a --plan file line or a command-line option gives it:
 *   target=0.5             the global target
 *   3=0.2                  layer 3
 *   layers.*.mlp.*=0.6     a pattern (or an exact name)
 *   skip=PATTERN, unskip=PATTERN
 * Spaces around '=' are allowed. CCE_ERR_ARG names the text if it has none of these forms. */
cce_status cce_plan_add_rule(cce_plan *plan, const char *text);

/* The block index in a tensor name ("layers.12.mlp.up_proj.weight" -> 12), or -1. */
int cce_plan_layer_of(const char *name);

/* The decision for one tensor. layer is its block index (-1 outside the blocks; pass
 * cce_plan_layer_of(name) when unsure). *out is filled; CCE_ERR_ARG if the name is empty or longer
 * than CCE_PLAN_NAME_MAX - 1. */
cce_status cce_plan_resolve(const cce_plan *plan, int layer, const char *name, cce_plan_row *out);

/* Records a decision as applied (a copy of *row). */
cce_status cce_plan_record(cce_plan *plan, const cce_plan_row *row);

/* Resolves and records every tensor of the model, in its canonical order (1-D tensors too, so
 * norms show up as skipped). */
cce_status cce_plan_record_model(cce_plan *plan, const cce_model *m);

/* The recorded rows, in recording order. Borrowed; valid until the next record or free. */
const cce_plan_row *cce_plan_applied(const cce_plan *plan, size_t *n);
void cce_plan_clear_applied(cce_plan *plan);

/* "skip", "tensor", "pattern", "layer", "allocation", "uniform". Static. */
const char *cce_plan_source_name(cce_plan_source s);

/* Prints the rules (kind, target, skips, overrides, allocations) / the applied rows as a table. */
void cce_plan_print_rules(const cce_plan *plan, FILE *f);
void cce_plan_print_applied(const cce_plan *plan, FILE *f);

#endif
