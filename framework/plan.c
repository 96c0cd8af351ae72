/* Compression plans: rules, their precedence, and the record of what was applied (plan.h). */
#include "plan.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "strategy.h"

/* One rule: a skip, a tensor/pattern override, or a tensor allocation (text = name or glob), or a
 * layer override / layer allocation (layer >= 0). */
typedef struct plan_rule {
    char text[CCE_PLAN_NAME_MAX];
    int layer;
    double value;
    char origin[CCE_PLAN_NAME_MAX]; /* allocation: the rule's name */
} plan_rule;

typedef struct rule_list {
    plan_rule *items;
    size_t n, cap;
} rule_list;

struct cce_plan {
    cce_plan_kind kind;
    double target;
    rule_list skips, tensors, patterns, layers, alloc_tensors, alloc_layers;
    cce_plan_row *applied; /* [n_applied] */
    size_t n_applied, cap_applied;
};

static const char *const default_skips[] = {"embed_tokens", "*norm", "lm_head"};

static void rules_free(rule_list *l) {
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* Appends a zeroed rule and returns it (NULL on allocation failure, with the error set). */
static plan_rule *rules_push(rule_list *l) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        plan_rule *items = realloc(l->items, cap * sizeof *items);
        if (!items) {
            cce_fail(CCE_ERR_NOMEM, "plan: out of memory for %zu rules", cap);
            return NULL;
        }
        l->items = items;
        l->cap = cap;
    }
    plan_rule *r = &l->items[l->n++];
    memset(r, 0, sizeof *r);
    r->layer = -1;
    return r;
}

static plan_rule *rules_find_text(rule_list *l, const char *text) {
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->items[i].text, text)) return &l->items[i];
    return NULL;
}

static plan_rule *rules_find_layer(rule_list *l, int layer) {
    for (size_t i = 0; i < l->n; i++)
        if (l->items[i].layer == layer) return &l->items[i];
    return NULL;
}

static int is_pattern(const char *text) {
    return strpbrk(text, "*?[") != NULL;
}

static cce_status check_text(const char *what, const char *text) {
    if (!text || !*text) return cce_fail(CCE_ERR_ARG, "plan: %s is empty", what);
    if (strlen(text) >= CCE_PLAN_NAME_MAX)
        return cce_fail(CCE_ERR_ARG, "plan: %s '%.40s...' is longer than %d characters", what, text,
                        CCE_PLAN_NAME_MAX - 1);
    return CCE_OK;
}

/* Checks a value against the plan's kind; `what` names the rule in the message. */
static cce_status check_value(const cce_plan *plan, const char *what, double v, int allocation) {
    if (plan->kind == CCE_PLAN_BITS) {
        if (!isfinite(v) || v != floor(v) || v < 2 || v > 8)
            return cce_fail(CCE_ERR_RANGE, "plan: %s = %g is outside bits [2, 8] (whole numbers)",
                            what, v);
        return CCE_OK;
    }
    if (allocation) {
        if (!isfinite(v) || v < 0 || v > 1)
            return cce_fail(CCE_ERR_RANGE, "plan: %s = %g is outside ratio [0, 1]", what, v);
    } else if (!isfinite(v) || v < 0 || v >= 1) {
        return cce_fail(CCE_ERR_RANGE, "plan: %s = %g is outside ratio [0, 1)", what, v);
    }
    return CCE_OK;
}

cce_status cce_plan_new(cce_plan_kind kind, double target, cce_plan **out) {
    *out = NULL;
    if (kind != CCE_PLAN_RATIO && kind != CCE_PLAN_BITS)
        return cce_fail(CCE_ERR_ARG, "plan: unknown kind %d", (int)kind);
    cce_plan *plan = calloc(1, sizeof *plan);
    if (!plan) return cce_fail(CCE_ERR_NOMEM, "plan: out of memory");
    plan->kind = kind;
    cce_status s = cce_plan_set_target(plan, target);
    for (size_t i = 0; !s && i < sizeof default_skips / sizeof default_skips[0]; i++)
        s = cce_plan_skip(plan, default_skips[i]);
    if (s) {
        cce_plan_free(plan);
        return s;
    }
    *out = plan;
    return CCE_OK;
}

cce_status cce_plan_new_from_params(const cce_params *p, cce_plan **out) {
    *out = NULL;
    const cce_strategy *st = cce_params_strategy(p);
    cce_status s;
    if (cce_strategy_param(st, "ratio")) {
        double ratio;
        if ((s = cce_params_get_float(p, "ratio", &ratio))) return s;
        return cce_plan_new(CCE_PLAN_RATIO, ratio, out);
    }
    if (cce_strategy_param(st, "bits")) {
        int64_t bits;
        if ((s = cce_params_get_int(p, "bits", &bits))) return s;
        return cce_plan_new(CCE_PLAN_BITS, (double)bits, out);
    }
    return cce_plan_new(CCE_PLAN_RATIO, 0.0, out);
}

void cce_plan_free(cce_plan *plan) {
    if (!plan) return;
    rules_free(&plan->skips);
    rules_free(&plan->tensors);
    rules_free(&plan->patterns);
    rules_free(&plan->layers);
    rules_free(&plan->alloc_tensors);
    rules_free(&plan->alloc_layers);
    free(plan->applied);
    free(plan);
}

cce_plan_kind cce_plan_get_kind(const cce_plan *plan) {
    return plan->kind;
}
double cce_plan_target(const cce_plan *plan) {
    return plan->target;
}

cce_status cce_plan_set_target(cce_plan *plan, double target) {
    cce_status s = check_value(plan, "target", target, 0);
    if (s) return s;
    plan->target = target;
    return CCE_OK;
}

/* Sets (or replaces) a text rule's value. */
static cce_status set_text_rule(rule_list *l, const char *text, double value, const char *origin) {
    plan_rule *r = rules_find_text(l, text);
    if (!r) {
        if (!(r = rules_push(l))) return CCE_ERR_NOMEM;
        memcpy(r->text, text, strlen(text) + 1);
    }
    r->value = value;
    if (origin) snprintf(r->origin, sizeof r->origin, "%s", origin);
    return CCE_OK;
}

static cce_status set_layer_rule(rule_list *l, int layer, double value, const char *origin) {
    plan_rule *r = rules_find_layer(l, layer);
    if (!r) {
        if (!(r = rules_push(l))) return CCE_ERR_NOMEM;
        r->layer = layer;
    }
    r->value = value;
    if (origin) snprintf(r->origin, sizeof r->origin, "%s", origin);
    return CCE_OK;
}

cce_status cce_plan_override_layer(cce_plan *plan, int layer, double value) {
    if (layer < 0) return cce_fail(CCE_ERR_RANGE, "plan: layer %d is negative", layer);
    char what[32];
    snprintf(what, sizeof what, "layer %d", layer);
    cce_status s = check_value(plan, what, value, 0);
    if (s) return s;
    return set_layer_rule(&plan->layers, layer, value, NULL);
}

cce_status cce_plan_override(cce_plan *plan, const char *name_or_pattern, double value) {
    cce_status s = check_text("override name", name_or_pattern);
    if (s || (s = check_value(plan, name_or_pattern, value, 0))) return s;
    return set_text_rule(is_pattern(name_or_pattern) ? &plan->patterns : &plan->tensors,
                         name_or_pattern, value, NULL);
}

cce_status cce_plan_skip(cce_plan *plan, const char *pattern) {
    cce_status s = check_text("skip pattern", pattern);
    if (s) return s;
    if (rules_find_text(&plan->skips, pattern)) return CCE_OK;
    return set_text_rule(&plan->skips, pattern, 0.0, NULL);
}

cce_status cce_plan_unskip(cce_plan *plan, const char *pattern) {
    rule_list *l = &plan->skips;
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i].text, pattern)) continue;
        memmove(&l->items[i], &l->items[i + 1], (l->n - i - 1) * sizeof l->items[0]);
        l->n--;
        return CCE_OK;
    }
    return cce_fail(CCE_ERR_NOT_FOUND, "plan: no skip rule '%s'", pattern);
}

void cce_plan_clear_skips(cce_plan *plan) {
    plan->skips.n = 0;
}

cce_status cce_plan_allocate_tensor(cce_plan *plan, const char *name, double value,
                                    const char *rule) {
    cce_status s = check_text("allocated tensor name", name);
    if (s || (s = check_value(plan, name, value, 1))) return s;
    return set_text_rule(&plan->alloc_tensors, name, value, rule ? rule : "allocation");
}

cce_status cce_plan_allocate_layer(cce_plan *plan, int layer, double value, const char *rule) {
    if (layer < 0) return cce_fail(CCE_ERR_RANGE, "plan: layer %d is negative", layer);
    char what[32];
    snprintf(what, sizeof what, "layer %d", layer);
    cce_status s = check_value(plan, what, value, 1);
    if (s) return s;
    return set_layer_rule(&plan->alloc_layers, layer, value, rule ? rule : "allocation");
}

/* Copies text[0..n) without surrounding blanks into buf. */
static void trimmed(const char *text, size_t n, char *buf, size_t cap) {
    while (n && isspace((unsigned char)*text)) text++, n--;
    while (n && isspace((unsigned char)text[n - 1])) n--;
    if (n >= cap) n = cap - 1;
    memcpy(buf, text, n);
    buf[n] = '\0';
}

cce_status cce_plan_add_rule(cce_plan *plan, const char *text) {
    const char *eq = text ? strchr(text, '=') : NULL;
    if (!eq)
        return cce_fail(CCE_ERR_ARG,
                        "plan: rule '%s' needs the form KEY=VALUE (target=, skip=, unskip=, a "
                        "layer index, a tensor name or a pattern)",
                        text ? text : "");
    char key[CCE_PLAN_NAME_MAX], val[CCE_PLAN_NAME_MAX];
    if ((size_t)(eq - text) >= sizeof key || strlen(eq + 1) >= sizeof val)
        return cce_fail(CCE_ERR_ARG, "plan: rule '%.40s...' is too long", text);
    trimmed(text, (size_t)(eq - text), key, sizeof key);
    trimmed(eq + 1, strlen(eq + 1), val, sizeof val);
    if (!*key || !*val) return cce_fail(CCE_ERR_ARG, "plan: rule '%s' has an empty side", text);
    if (!strcmp(key, "skip")) return cce_plan_skip(plan, val);
    if (!strcmp(key, "unskip")) return cce_plan_unskip(plan, val);
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (*end || errno || !isfinite(v))
        return cce_fail(CCE_ERR_ARG, "plan: rule '%s': '%s' is not a number", text, val);
    if (!strcmp(key, "target")) return cce_plan_set_target(plan, v);
    int all_digits = 1;
    for (const char *c = key; *c; c++) all_digits &= isdigit((unsigned char)*c) != 0;
    if (all_digits) {
        long layer = strtol(key, NULL, 10);
        if (strlen(key) > 6) return cce_fail(CCE_ERR_RANGE, "plan: layer %s is too large", key);
        return cce_plan_override_layer(plan, (int)layer, v);
    }
    return cce_plan_override(plan, key, v);
}

int cce_plan_layer_of(const char *name) {
    if (!name || strncmp(name, "layers.", 7)) return -1;
    const char *p = name + 7;
    if (!isdigit((unsigned char)*p)) return -1;
    long v = 0;
    for (; isdigit((unsigned char)*p); p++) {
        v = v * 10 + (*p - '0');
        if (v > 1000000) return -1;
    }
    return *p == '.' || *p == '\0' ? (int)v : -1;
}

/* 1 if a rule text matches the tensor: exact or glob, on the name with and without ".weight". */
static int matches(const char *rule, const char *full, const char *bare) {
    if (is_pattern(rule)) return !fnmatch(rule, bare, 0) || !fnmatch(rule, full, 0);
    return !strcmp(rule, bare) || !strcmp(rule, full);
}

/* The last rule of the list that matches (later rules refine earlier ones), or NULL. */
static const plan_rule *last_match(const rule_list *l, const char *full, const char *bare) {
    for (size_t i = l->n; i-- > 0;)
        if (matches(l->items[i].text, full, bare)) return &l->items[i];
    return NULL;
}

static const plan_rule *layer_match(const rule_list *l, int layer) {
    if (layer < 0) return NULL;
    for (size_t i = 0; i < l->n; i++)
        if (l->items[i].layer == layer) return &l->items[i];
    return NULL;
}

cce_status cce_plan_resolve(const cce_plan *plan, int layer, const char *name, cce_plan_row *out) {
    cce_status s = check_text("tensor name", name);
    if (s) return s;
    memset(out, 0, sizeof *out);
    out->layer = layer;
    memcpy(out->tensor, name, strlen(name) + 1);
    char bare[CCE_PLAN_NAME_MAX];
    memcpy(bare, name, strlen(name) + 1);
    size_t len = strlen(bare);
    if (len > 7 && !strcmp(bare + len - 7, ".weight")) bare[len - 7] = '\0';

    const plan_rule *r;
    if ((r = last_match(&plan->skips, name, bare))) {
        out->source = CCE_PLAN_SKIP;
        snprintf(out->rule, sizeof out->rule, "%s", r->text);
        return CCE_OK;
    }
    if ((r = last_match(&plan->tensors, name, bare)))
        out->source = CCE_PLAN_TENSOR;
    else if ((r = last_match(&plan->patterns, name, bare)))
        out->source = CCE_PLAN_PATTERN;
    else if ((r = layer_match(&plan->layers, layer)))
        out->source = CCE_PLAN_LAYER;
    else if ((r = last_match(&plan->alloc_tensors, name, bare)) ||
             (r = layer_match(&plan->alloc_layers, layer)))
        out->source = CCE_PLAN_ALLOCATION;
    if (!r) {
        out->source = CCE_PLAN_UNIFORM;
        out->value = plan->target;
        snprintf(out->rule, sizeof out->rule, "uniform");
        return CCE_OK;
    }
    out->value = r->value;
    if (out->source == CCE_PLAN_ALLOCATION)
        snprintf(out->rule, sizeof out->rule, "%s", r->origin);
    else if (out->source == CCE_PLAN_LAYER)
        snprintf(out->rule, sizeof out->rule, "layer %d", r->layer);
    else
        snprintf(out->rule, sizeof out->rule, "%s", r->text);
    return CCE_OK;
}

cce_status cce_plan_record(cce_plan *plan, const cce_plan_row *row) {
    if (plan->n_applied == plan->cap_applied) {
        size_t cap = plan->cap_applied ? 2 * plan->cap_applied : 64;
        cce_plan_row *rows = realloc(plan->applied, cap * sizeof *rows);
        if (!rows) return cce_fail(CCE_ERR_NOMEM, "plan: out of memory for %zu rows", cap);
        plan->applied = rows;
        plan->cap_applied = cap;
    }
    plan->applied[plan->n_applied++] = *row;
    return CCE_OK;
}

cce_status cce_plan_record_model(cce_plan *plan, const cce_model *m) {
    size_t n = cce_model_tensor_count(m);
    for (size_t i = 0; i < n; i++) {
        const char *name = cce_model_tensor_name_at(m, i);
        cce_plan_row row;
        cce_status s = cce_plan_resolve(plan, cce_plan_layer_of(name), name, &row);
        if (s || (s = cce_plan_record(plan, &row))) return s;
    }
    return CCE_OK;
}

const cce_plan_row *cce_plan_applied(const cce_plan *plan, size_t *n) {
    *n = plan->n_applied;
    return plan->applied;
}

void cce_plan_clear_applied(cce_plan *plan) {
    plan->n_applied = 0;
}

const char *cce_plan_source_name(cce_plan_source s) {
    switch (s) {
    case CCE_PLAN_SKIP:
        return "skip";
    case CCE_PLAN_TENSOR:
        return "tensor";
    case CCE_PLAN_PATTERN:
        return "pattern";
    case CCE_PLAN_LAYER:
        return "layer";
    case CCE_PLAN_ALLOCATION:
        return "allocation";
    case CCE_PLAN_UNIFORM:
        return "uniform";
    }
    return "?";
}

static const char *kind_word(const cce_plan *plan) {
    return plan->kind == CCE_PLAN_BITS ? "bits" : "ratio";
}

void cce_plan_print_rules(const cce_plan *plan, FILE *f) {
    fprintf(f, "plan: %s target %g\n", kind_word(plan), plan->target);
    for (size_t i = 0; i < plan->skips.n; i++) fprintf(f, "  skip %s\n", plan->skips.items[i].text);
    for (size_t i = 0; i < plan->tensors.n; i++)
        fprintf(f, "  tensor %s = %g\n", plan->tensors.items[i].text, plan->tensors.items[i].value);
    for (size_t i = 0; i < plan->patterns.n; i++)
        fprintf(f, "  pattern %s = %g\n", plan->patterns.items[i].text,
                plan->patterns.items[i].value);
    for (size_t i = 0; i < plan->layers.n; i++)
        fprintf(f, "  layer %d = %g\n", plan->layers.items[i].layer, plan->layers.items[i].value);
    for (size_t i = 0; i < plan->alloc_tensors.n; i++)
        fprintf(f, "  allocation (%s) %s = %g\n", plan->alloc_tensors.items[i].origin,
                plan->alloc_tensors.items[i].text, plan->alloc_tensors.items[i].value);
    for (size_t i = 0; i < plan->alloc_layers.n; i++)
        fprintf(f, "  allocation (%s) layer %d = %g\n", plan->alloc_layers.items[i].origin,
                plan->alloc_layers.items[i].layer, plan->alloc_layers.items[i].value);
}

void cce_plan_print_applied(const cce_plan *plan, FILE *f) {
    fprintf(f, "%-5s %-40s %-8s %-10s %s\n", "LAYER", "TENSOR", kind_word(plan), "SOURCE", "RULE");
    for (size_t i = 0; i < plan->n_applied; i++) {
        const cce_plan_row *r = &plan->applied[i];
        char layer[16] = "-";
        if (r->layer >= 0) snprintf(layer, sizeof layer, "%d", r->layer);
        if (r->source == CCE_PLAN_SKIP)
            fprintf(f, "%-5s %-40s %-8s %-10s %s\n", layer, r->tensor, "-", "skip", r->rule);
        else
            fprintf(f, "%-5s %-40s %-8.4g %-10s %s\n", layer, r->tensor, r->value,
                    cce_plan_source_name(r->source), r->rule);
    }
}
