/* The strategy registry (strategy.h): the built-in list plus external strategies loaded with
 * dlopen, and parameter parsing and validation against schemas. Running strategies (instances,
 * block jobs, report rows) is in strategy_run.c.
 *
 * Every parameter message has one of three forms, whatever the strategy:
 *   "magnitude: unknown parameter 'foo'; parameters: ratio, scope, nm"      (CCE_ERR_ARG)
 *   "magnitude: ratio needs a number in [0, 1), got 'abc'"                 (CCE_ERR_ARG)
 *   "magnitude: ratio = 1.5 is outside [0, 1)"                            (CCE_ERR_RANGE) */
#include "strategy.h"

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_SCHEMA   256 /* a schema longer than this is taken as unterminated */
#define STRATEGY_MAX 32  /* longest strategy name + 1 (cce_report_row.strategy) */

/* ---- Parameter values ------------------------------------------------------------------------ */

typedef struct param_value {
    int set;   /* has a value */
    int given; /* given by the user (not the default) */
    int64_t i;
    double f;
    int b;
    char *s; /* STRING (owned) */
    int choice;
    int nm_n, nm_m;
} param_value;

struct cce_params {
    const cce_strategy *strategy;
    size_t n;       /* schema entries */
    param_value *v; /* [n] */
};

static size_t schema_len(const cce_strategy *s) {
    size_t n = 0;
    if (s->params)
        while (n < MAX_SCHEMA && s->params[n].name) n++;
    return n;
}

const char *cce_param_type_name(cce_param_type t) {
    switch (t) {
    case CCE_PARAM_INT:
        return "int";
    case CCE_PARAM_FLOAT:
        return "float";
    case CCE_PARAM_BOOL:
        return "bool";
    case CCE_PARAM_STRING:
        return "string";
    case CCE_PARAM_ENUM:
        return "enum";
    case CCE_PARAM_NM:
        return "N:M";
    }
    return "?";
}

/* Shortest "%g" text that reads back as v. */
static void format_double(double v, char *buf, size_t cap) {
    snprintf(buf, cap, "%.15g", v);
    if (strtod(buf, NULL) != v) snprintf(buf, cap, "%.17g", v);
}

void cce_param_range_text(const cce_param *p, char *buf, size_t cap) {
    char lo[40], hi[40];
    size_t used = 0;
    switch (p->type) {
    case CCE_PARAM_INT:
    case CCE_PARAM_FLOAT:
        format_double(p->min, lo, sizeof lo);
        format_double(p->max, hi, sizeof hi);
        snprintf(buf, cap, "%c%s, %s%c", p->flags & CCE_PARAM_MIN_OPEN ? '(' : '[', lo, hi,
                 p->flags & CCE_PARAM_MAX_OPEN ? ')' : ']');
        return;
    case CCE_PARAM_BOOL:
        snprintf(buf, cap, "{true, false}");
        return;
    case CCE_PARAM_STRING:
        snprintf(buf, cap, "text");
        return;
    case CCE_PARAM_NM:
        snprintf(buf, cap, "N:M with 0 < N < M <= %d", CCE_PARAM_NM_MAX);
        return;
    case CCE_PARAM_ENUM:
        if (cap) buf[0] = '\0';
        for (size_t i = 0; p->choices && p->choices[i] && used + 1 < cap; i++) {
            int w = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "{", p->choices[i]);
            if (w < 0) break;
            used += (size_t)w;
        }
        if (used + 1 < cap) snprintf(buf + used, cap - used, "}");
        return;
    }
    snprintf(buf, cap, "?");
}

static int in_range(const cce_param *p, double v) {
    if (p->flags & CCE_PARAM_MIN_OPEN ? !(v > p->min) : !(v >= p->min)) return 0;
    if (p->flags & CCE_PARAM_MAX_OPEN ? !(v < p->max) : !(v <= p->max)) return 0;
    return 1;
}

static cce_status fail_type(const char *sname, const cce_param *p, const char *what,
                            const char *text) {
    char range[256];
    cce_param_range_text(p, range, sizeof range);
    if (p->type == CCE_PARAM_STRING)
        return cce_fail(CCE_ERR_ARG, "%s: %s needs %s, got '%s'", sname, p->name, what, text);
    return cce_fail(CCE_ERR_ARG, "%s: %s needs %s %s %s, got '%s'", sname, p->name, what,
                    p->type == CCE_PARAM_NM ? "written" : "in", range, text);
}

static cce_status fail_range(const char *sname, const cce_param *p, const char *text) {
    char range[256];
    cce_param_range_text(p, range, sizeof range);
    return cce_fail(CCE_ERR_RANGE, "%s: %s = %s is outside %s", sname, p->name, text, range);
}

static int parse_bool(const char *t, int *out) {
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no",
                                                                                "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(t, yes[i])) return *out = 1, 1;
        if (!strcasecmp(t, no[i])) return *out = 0, 1;
    }
    return 0;
}

/* Parses "N:M" (whole numbers); 1 on success. */
static int parse_nm(const char *t, long *n, long *m) {
    char *end;
    if (!isdigit((unsigned char)*t)) return 0;
    errno = 0;
    *n = strtol(t, &end, 10);
    if (errno || *end != ':' || !isdigit((unsigned char)end[1])) return 0;
    *m = strtol(end + 1, &end, 10);
    return !errno && !*end;
}

/* Parses one value text for parameter p into *out (which owns a STRING copy afterwards). */
static cce_status parse_value(const char *sname, const cce_param *p, const char *text,
                              param_value *out) {
    char *end;
    switch (p->type) {
    case CCE_PARAM_INT: {
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (!*text || *end || errno) return fail_type(sname, p, "a whole number", text);
        if (!in_range(p, (double)v)) return fail_range(sname, p, text);
        out->i = v;
        break;
    }
    case CCE_PARAM_FLOAT: {
        errno = 0;
        double v = strtod(text, &end);
        if (!*text || *end || errno || !isfinite(v)) return fail_type(sname, p, "a number", text);
        if (!in_range(p, v)) return fail_range(sname, p, text);
        out->f = v;
        break;
    }
    case CCE_PARAM_BOOL:
        if (!parse_bool(text, &out->b)) return fail_type(sname, p, "a truth value", text);
        break;
    case CCE_PARAM_STRING: {
        if (strchr(text, ',')) return fail_type(sname, p, "text without ','", text);
        char *copy = strdup(text);
        if (!copy) return cce_fail(CCE_ERR_NOMEM, "%s: out of memory for %s", sname, p->name);
        free(out->s);
        out->s = copy;
        break;
    }
    case CCE_PARAM_ENUM: {
        int found = -1;
        for (int i = 0; p->choices && p->choices[i]; i++)
            if (!strcmp(text, p->choices[i])) found = i;
        if (found < 0) return fail_range(sname, p, text);
        out->choice = found;
        break;
    }
    case CCE_PARAM_NM: {
        long n, m;
        if (!parse_nm(text, &n, &m)) return fail_type(sname, p, "a pair", text);
        if (!(n > 0 && n < m && m <= CCE_PARAM_NM_MAX)) return fail_range(sname, p, text);
        out->nm_n = (int)n;
        out->nm_m = (int)m;
        break;
    }
    default:
        return cce_fail(CCE_ERR_INTERNAL, "%s: %s has an unknown type", sname, p->name);
    }
    out->set = 1;
    return CCE_OK;
}

static cce_status params_alloc(const cce_strategy *s, cce_params **out) {
    cce_params *p = calloc(1, sizeof *p);
    size_t n = schema_len(s);
    if (!p || !(p->v = calloc(n ? n : 1, sizeof *p->v))) {
        free(p);
        return cce_fail(CCE_ERR_NOMEM, "%s: out of memory for parameters", s->name);
    }
    p->strategy = s;
    p->n = n;
    *out = p;
    return CCE_OK;
}

void cce_params_free(cce_params *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) free(p->v[i].s);
    free(p->v);
    free(p);
}

static long find_param(const cce_strategy *s, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(s->params[i].name, name)) return (long)i;
    return -1;
}

static cce_status fail_unknown(const cce_strategy *s, size_t n, const char *key) {
    char list[512] = "";
    size_t used = 0;
    for (size_t i = 0; i < n && used + 1 < sizeof list; i++) {
        int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", s->params[i].name);
        if (w < 0) break;
        used += (size_t)w;
    }
    return cce_fail(CCE_ERR_ARG, "%s: unknown parameter '%s'; parameters: %s", s->name, key,
                    n ? list : "(none)");
}

/* Sets one given key/value text. */
static cce_status set_given(cce_params *p, const char *key, const char *val) {
    const cce_strategy *s = p->strategy;
    long i = find_param(s, p->n, key);
    if (i < 0) return fail_unknown(s, p->n, key);
    if (p->v[i].given)
        return cce_fail(CCE_ERR_ARG, "%s: parameter '%s' is given twice", s->name, key);
    cce_status st = parse_value(s->name, &s->params[i], val, &p->v[i]);
    if (st) return st;
    p->v[i].given = 1;
    return CCE_OK;
}

/* Fills defaults and checks required parameters once every given value is in. */
static cce_status finish_params(cce_params *p) {
    const cce_strategy *s = p->strategy;
    for (size_t i = 0; i < p->n; i++) {
        const cce_param *sp = &s->params[i];
        if (p->v[i].given) continue;
        if (sp->flags & CCE_PARAM_REQUIRED) {
            char range[256];
            cce_param_range_text(sp, range, sizeof range);
            return cce_fail(CCE_ERR_ARG, "%s: parameter '%s' is required (%s %s)", s->name,
                            sp->name, cce_param_type_name(sp->type), range);
        }
        if (sp->def) {
            cce_status st = parse_value(s->name, sp, sp->def, &p->v[i]);
            if (st) return st;
        }
    }
    return CCE_OK;
}

/* Copies [b, e) without surrounding blanks into a new string (NULL on allocation failure). */
static char *trim_dup(const char *b, const char *e) {
    while (b < e && isspace((unsigned char)*b)) b++;
    while (e > b && isspace((unsigned char)e[-1])) e--;
    char *r = malloc((size_t)(e - b) + 1);
    if (r) {
        memcpy(r, b, (size_t)(e - b));
        r[e - b] = '\0';
    }
    return r;
}

cce_status cce_params_parse(const cce_strategy *s, const char *text, cce_params **out) {
    *out = NULL;
    cce_params *p;
    cce_status st = params_alloc(s, &p);
    if (st) return st;
    const char *c = text ? text : "";
    while (!st && *c) {
        const char *end = strchr(c, ',');
        if (!end) end = c + strlen(c);
        char *item = trim_dup(c, end);
        if (!item) {
            st = cce_fail(CCE_ERR_NOMEM, "%s: out of memory", s->name);
            break;
        }
        if (*item) {
            char *eq = strchr(item, '=');
            if (!eq) {
                st = cce_fail(CCE_ERR_ARG, "%s: '%s' needs the form name=value", s->name, item);
            } else {
                char *key = trim_dup(item, eq), *val = trim_dup(eq + 1, eq + strlen(eq));
                if (!key || !val)
                    st = cce_fail(CCE_ERR_NOMEM, "%s: out of memory", s->name);
                else if (!*key)
                    st = cce_fail(CCE_ERR_ARG, "%s: '%s' has no parameter name", s->name, item);
                else
                    st = set_given(p, key, val);
                free(key);
                free(val);
            }
        }
        free(item);
        c = *end ? end + 1 : end;
    }
    if (!st) st = finish_params(p);
    if (st) {
        cce_params_free(p);
        return st;
    }
    *out = p;
    return CCE_OK;
}

cce_status cce_params_from_kv(const cce_strategy *s, const cce_param_kv *kv, size_t n,
                              cce_params **out) {
    *out = NULL;
    cce_params *p;
    cce_status st = params_alloc(s, &p);
    for (size_t i = 0; !st && i < n; i++) {
        char buf[64];
        const char *text = buf;
        if (!kv[i].key || !*kv[i].key) {
            st = cce_fail(CCE_ERR_ARG, "%s: parameter %zu has no name", s->name, i + 1);
            break;
        }
        switch (kv[i].kind) {
        case CCE_VALUE_TEXT:
            text = kv[i].text ? kv[i].text : "";
            break;
        case CCE_VALUE_NUMBER:
            format_double(kv[i].number, buf, sizeof buf);
            break;
        case CCE_VALUE_INTEGER:
            snprintf(buf, sizeof buf, "%lld", (long long)kv[i].integer);
            break;
        case CCE_VALUE_BOOL:
            snprintf(buf, sizeof buf, "%s", kv[i].boolean ? "true" : "false");
            break;
        default:
            st = cce_fail(CCE_ERR_ARG, "%s: %s has an unknown value kind", s->name, kv[i].key);
        }
        if (!st) st = set_given(p, kv[i].key, text);
    }
    if (!st) st = finish_params(p);
    if (st) {
        cce_params_free(p);
        return st;
    }
    *out = p;
    return CCE_OK;
}

cce_status cce_params_clone(const cce_params *src, cce_params **out) {
    *out = NULL;
    cce_params *p;
    cce_status st = params_alloc(src->strategy, &p);
    if (st) return st;
    for (size_t i = 0; i < p->n; i++) {
        p->v[i] = src->v[i];
        p->v[i].s = NULL;
        if (src->v[i].s && !(p->v[i].s = strdup(src->v[i].s))) {
            cce_params_free(p);
            return cce_fail(CCE_ERR_NOMEM, "%s: out of memory", src->strategy->name);
        }
    }
    *out = p;
    return CCE_OK;
}

/* The value slot of a parameter checked for type; NULL with the error set otherwise. */
static const param_value *lookup(const cce_params *p, const char *name, cce_param_type type,
                                 cce_status *st) {
    long i = find_param(p->strategy, p->n, name);
    if (i < 0) {
        *st = cce_fail(CCE_ERR_NOT_FOUND, "%s: the schema has no parameter '%s'", p->strategy->name,
                       name);
        return NULL;
    }
    const cce_param *sp = &p->strategy->params[i];
    if (sp->type != type) {
        *st = cce_fail(CCE_ERR_ARG, "%s: parameter '%s' is of type %s, not %s", p->strategy->name,
                       name, cce_param_type_name(sp->type), cce_param_type_name(type));
        return NULL;
    }
    if (!p->v[i].set) {
        *st = cce_fail(CCE_ERR_STATE, "%s: parameter '%s' has no value", p->strategy->name, name);
        return NULL;
    }
    *st = CCE_OK;
    return &p->v[i];
}

cce_status cce_params_get_int(const cce_params *p, const char *name, int64_t *out) {
    cce_status st;
    const param_value *v = lookup(p, name, CCE_PARAM_INT, &st);
    if (v) *out = v->i;
    return st;
}

cce_status cce_params_get_float(const cce_params *p, const char *name, double *out) {
    cce_status st;
    const param_value *v = lookup(p, name, CCE_PARAM_FLOAT, &st);
    if (v) *out = v->f;
    return st;
}

cce_status cce_params_get_bool(const cce_params *p, const char *name, int *out) {
    cce_status st;
    const param_value *v = lookup(p, name, CCE_PARAM_BOOL, &st);
    if (v) *out = v->b;
    return st;
}

cce_status cce_params_get_string(const cce_params *p, const char *name, const char **out) {
    cce_status st;
    const param_value *v = lookup(p, name, CCE_PARAM_STRING, &st);
    if (v) *out = v->s;
    return st;
}

cce_status cce_params_get_enum(const cce_params *p, const char *name, const char **choice,
                               int *index) {
    cce_status st;
    const param_value *v = lookup(p, name, CCE_PARAM_ENUM, &st);
    if (!v) return st;
    if (choice) *choice = cce_strategy_param(p->strategy, name)->choices[v->choice];
    if (index) *index = v->choice;
    return CCE_OK;
}

cce_status cce_params_get_nm(const cce_params *p, const char *name, int *n, int *m) {
    cce_status st;
    const param_value *v = lookup(p, name, CCE_PARAM_NM, &st);
    if (!v) return st;
    *n = v->nm_n;
    *m = v->nm_m;
    return CCE_OK;
}

int cce_params_has(const cce_params *p, const char *name) {
    long i = find_param(p->strategy, p->n, name);
    return i >= 0 && p->v[i].set;
}

int cce_params_given(const cce_params *p, const char *name) {
    long i = find_param(p->strategy, p->n, name);
    return i >= 0 && p->v[i].given;
}

const cce_strategy *cce_params_strategy(const cce_params *p) {
    return p->strategy;
}

/* The value of parameter i as text (the CLI form). */
static void value_text(const cce_params *p, size_t i, char *buf, size_t cap) {
    const cce_param *sp = &p->strategy->params[i];
    const param_value *v = &p->v[i];
    switch (sp->type) {
    case CCE_PARAM_INT:
        snprintf(buf, cap, "%lld", (long long)v->i);
        break;
    case CCE_PARAM_FLOAT:
        format_double(v->f, buf, cap);
        break;
    case CCE_PARAM_BOOL:
        snprintf(buf, cap, "%s", v->b ? "true" : "false");
        break;
    case CCE_PARAM_STRING:
        snprintf(buf, cap, "%s", v->s ? v->s : "");
        break;
    case CCE_PARAM_ENUM:
        snprintf(buf, cap, "%s", sp->choices[v->choice]);
        break;
    case CCE_PARAM_NM:
        snprintf(buf, cap, "%d:%d", v->nm_n, v->nm_m);
        break;
    }
}

cce_status cce_params_format(const cce_params *p, char **out) {
    size_t cap = 1, used = 0;
    for (size_t i = 0; i < p->n; i++)
        cap += strlen(p->strategy->params[i].name) + 48 + (p->v[i].s ? strlen(p->v[i].s) : 0);
    char *buf = malloc(cap);
    if (!buf) return cce_fail(CCE_ERR_NOMEM, "%s: out of memory", p->strategy->name);
    buf[0] = '\0';
    for (size_t i = 0; i < p->n; i++) {
        if (!p->v[i].set) continue;
        char val[64];
        const char *v = val;
        if (p->v[i].s)
            v = p->v[i].s; /* STRING: may be longer than val */
        else
            value_text(p, i, val, sizeof val);
        int w = snprintf(buf + used, cap - used, "%s%s=%s", used ? "," : "",
                         p->strategy->params[i].name, v);
        if (w > 0) used += (size_t)w;
    }
    *out = buf;
    return CCE_OK;
}

cce_status cce_params_to_json(const cce_params *p, char **out) {
    json_t *obj = json_object();
    int bad = !obj;
    for (size_t i = 0; !bad && i < p->n; i++) {
        if (!p->v[i].set) continue;
        const cce_param *sp = &p->strategy->params[i];
        const param_value *v = &p->v[i];
        char text[64];
        json_t *j;
        switch (sp->type) {
        case CCE_PARAM_INT:
            j = json_integer((json_int_t)v->i);
            break;
        case CCE_PARAM_FLOAT:
            j = json_real(v->f);
            break;
        case CCE_PARAM_BOOL:
            j = json_boolean(v->b);
            break;
        case CCE_PARAM_STRING:
            j = json_string(v->s ? v->s : "");
            break;
        default:
            value_text(p, i, text, sizeof text);
            j = json_string(text);
        }
        bad = !j || json_object_set_new(obj, sp->name, j);
    }
    char *s = bad ? NULL : json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!s)
        return cce_fail(CCE_ERR_NOMEM, "%s: cannot encode parameters as JSON", p->strategy->name);
    *out = s;
    return CCE_OK;
}

/* ---- Schema validation ----------------------------------------------------------------------- */

static int valid_identifier(const char *s, size_t max) {
    if (!s || !*s || strlen(s) >= max) return 0;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_')) return 0;
    return 1;
}

static cce_status validate_param(const cce_strategy *s, size_t i, const char *origin) {
    const cce_param *p = &s->params[i];
    const char *who = s->name;
#define BAD(...)                                                                                   \
    do {                                                                                           \
        char msg_[256];                                                                            \
        snprintf(msg_, sizeof msg_, __VA_ARGS__);                                                  \
        return cce_fail(CCE_ERR_FORMAT, "%s: strategy '%s': parameter '%s': %s", origin, who,      \
                        p->name, msg_);                                                            \
    } while (0)
    if (!valid_identifier(p->name, 64))
        return cce_fail(CCE_ERR_FORMAT, "%s: strategy '%s': parameter %zu has a bad name", origin,
                        who, i + 1);
    if (find_param(s, i, p->name) >= 0) BAD("the name appears twice");
    if ((unsigned)p->type > CCE_PARAM_NM) BAD("unknown type %d", (int)p->type);
    if (p->flags & ~(CCE_PARAM_MIN_OPEN | CCE_PARAM_MAX_OPEN | CCE_PARAM_REQUIRED))
        BAD("unknown flags 0x%x", p->flags);
    if (!p->help) BAD("no help text");
    if ((p->type == CCE_PARAM_INT || p->type == CCE_PARAM_FLOAT) &&
        (isnan(p->min) || isnan(p->max) || p->min > p->max))
        BAD("range [%g, %g] is empty or NaN", p->min, p->max);
    if (p->type == CCE_PARAM_ENUM) {
        if (!p->choices || !p->choices[0]) BAD("an enum without choices");
        for (size_t c = 0; p->choices[c]; c++)
            if (!*p->choices[c] || strchr(p->choices[c], ','))
                BAD("choice %zu is empty or has a ','", c + 1);
    }
    if ((p->flags & CCE_PARAM_REQUIRED) && p->def) BAD("required but has a default");
    if (p->def) {
        param_value v = {0};
        cce_status st = parse_value(who, p, p->def, &v);
        free(v.s);
        if (st) BAD("default '%s' is invalid (%s)", p->def, cce_error_detail());
    }
#undef BAD
    return CCE_OK;
}

cce_status cce_strategy_validate(const cce_strategy *s, const char *origin) {
    if (!origin) origin = "built-in";
    if (!s) return cce_fail(CCE_ERR_FORMAT, "%s: no strategy descriptor", origin);
    if (s->api_version != CCE_STRATEGY_API_VERSION)
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: strategy API version %d, but this build speaks version %d (rebuild "
                        "it against this strategy.h)",
                        origin, s->api_version, CCE_STRATEGY_API_VERSION);
    if (!valid_identifier(s->name, STRATEGY_MAX))
        return cce_fail(CCE_ERR_FORMAT, "%s: strategy name '%s' is not [a-z0-9_]{1,%d}", origin,
                        s->name ? s->name : "(null)", STRATEGY_MAX - 1);
    if (!s->summary || !s->apply)
        return cce_fail(CCE_ERR_FORMAT, "%s: strategy '%s' lacks a summary or an apply function",
                        origin, s->name);
    if (s->needs & ~(CCE_NEEDS_CALIBRATION | CCE_NEEDS_SEQUENTIAL | CCE_NEEDS_RESIZE))
        return cce_fail(CCE_ERR_FORMAT, "%s: strategy '%s' has unknown needs 0x%x", origin, s->name,
                        s->needs);
    size_t n = schema_len(s);
    if (n == MAX_SCHEMA)
        return cce_fail(CCE_ERR_FORMAT, "%s: strategy '%s': the schema has no end (over %d)",
                        origin, s->name, MAX_SCHEMA - 1);
    for (size_t i = 0; i < n; i++) {
        cce_status st = validate_param(s, i, origin);
        if (st) return st;
    }
    return CCE_OK;
}

const cce_param *cce_strategy_param(const cce_strategy *s, const char *name) {
    long i = find_param(s, schema_len(s), name);
    return i < 0 ? NULL : &s->params[i];
}

/* ---- The registry ---------------------------------------------------------------------------- */

typedef struct external {
    char *path; /* canonical */
    void *handle;
    const cce_strategy *s;
} external;

static external *externals;
static size_t n_externals, cap_externals;

/* Strategies registered at run time (cce_strategy_register), after the externals. */
static const cce_strategy **runtime; /* [n_runtime], borrowed */
static size_t n_runtime, cap_runtime;

static size_t builtin_count(void) {
    size_t n = 0;
    while (cce_builtin_strategies[n]) n++;
    return n;
}

size_t cce_strategy_count(void) {
    return builtin_count() + n_externals + n_runtime;
}

const cce_strategy *cce_strategy_at(size_t i) {
    size_t nb = builtin_count();
    if (i < nb) return cce_builtin_strategies[i];
    i -= nb;
    if (i < n_externals) return externals[i].s;
    i -= n_externals;
    return i < n_runtime ? runtime[i] : NULL;
}

cce_status cce_strategy_find(const char *name, const cce_strategy **out) {
    size_t n = cce_strategy_count();
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(cce_strategy_at(i)->name, name)) {
            *out = cce_strategy_at(i);
            return CCE_OK;
        }
    }
    char list[512] = "";
    size_t used = 0;
    for (size_t i = 0; i < n && used + 1 < sizeof list; i++) {
        int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                         cce_strategy_at(i)->name);
        if (w < 0) break;
        used += (size_t)w;
    }
    *out = NULL;
    return cce_fail(CCE_ERR_NOT_FOUND, "unknown strategy '%s'; strategies: %s", name, list);
}

cce_status cce_strategy_load_external(const char *path, const cce_strategy **out) {
    *out = NULL;
    char *canon = realpath(path, NULL);
    if (!canon) return cce_fail(CCE_ERR_IO, "%s: %s", path, strerror(errno));
    for (size_t i = 0; i < n_externals; i++) {
        if (!strcmp(externals[i].path, canon)) {
            free(canon);
            *out = externals[i].s;
            return CCE_OK;
        }
    }
    cce_status st = CCE_OK;
    void *handle = dlopen(canon, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *why = dlerror();
        st = cce_fail(CCE_ERR_FORMAT, "%s: cannot load it as a strategy plugin: %s", path,
                      why ? why : "unknown dlopen error");
        free(canon);
        return st;
    }
    dlerror();
    void *sym = dlsym(handle, CCE_STRATEGY_ENTRY_SYMBOL);
    const cce_strategy *s = NULL;
    if (!sym) {
        st = cce_fail(CCE_ERR_FORMAT, "%s: no symbol %s: not a cce strategy plugin", path,
                      CCE_STRATEGY_ENTRY_SYMBOL);
    } else {
        cce_strategy_entry_fn entry;
        memcpy(&entry, &sym,
               sizeof entry); /* object pointer to function pointer, as POSIX allows */
        s = entry();
        if (!s)
            st = cce_fail(CCE_ERR_FORMAT, "%s: %s returned no strategy", path,
                          CCE_STRATEGY_ENTRY_SYMBOL);
        else
            st = cce_strategy_validate(s, path);
    }
    if (!st) {
        const cce_strategy *clash;
        if (cce_strategy_find(s->name, &clash) == CCE_OK)
            st = cce_fail(CCE_ERR_ARG, "%s: a strategy named '%s' is already registered", path,
                          s->name);
        else
            cce_error_clear();
    }
    if (!st && n_externals == cap_externals) {
        size_t cap = cap_externals ? 2 * cap_externals : 4;
        external *e = realloc(externals, cap * sizeof *e);
        if (!e)
            st = cce_fail(CCE_ERR_NOMEM, "%s: out of memory", path);
        else
            externals = e, cap_externals = cap;
    }
    if (st) {
        dlclose(handle);
        free(canon);
        return st;
    }
    externals[n_externals++] = (external){canon, handle, s};
    *out = s;
    return CCE_OK;
}

void cce_strategy_unload_external(void) {
    for (size_t i = 0; i < n_externals; i++) {
        dlclose(externals[i].handle);
        free(externals[i].path);
    }
    free(externals);
    externals = NULL;
    n_externals = cap_externals = 0;
}

cce_status cce_strategy_register(const cce_strategy *s, const char *origin) {
    if (!origin) origin = "run time";
    cce_status st = cce_strategy_validate(s, origin);
    if (st) return st;
    const cce_strategy *clash;
    if (cce_strategy_find(s->name, &clash) == CCE_OK)
        return cce_fail(CCE_ERR_ARG, "%s: a strategy named '%s' is already registered", origin,
                        s->name);
    cce_error_clear();
    if (n_runtime == cap_runtime) {
        size_t cap = cap_runtime ? 2 * cap_runtime : 4;
        const cce_strategy **r = realloc(runtime, cap * sizeof *r);
        if (!r)
            return cce_fail(CCE_ERR_NOMEM, "%s: out of memory registering '%s'", origin, s->name);
        runtime = r;
        cap_runtime = cap;
    }
    runtime[n_runtime++] = s;
    return CCE_OK;
}

void cce_strategy_unregister(const cce_strategy *s) {
    for (size_t i = 0; i < n_runtime; i++) {
        if (runtime[i] != s) continue;
        memmove(runtime + i, runtime + i + 1, (n_runtime - i - 1) * sizeof *runtime);
        n_runtime--;
        break;
    }
    if (n_runtime == 0) {
        free(runtime);
        runtime = NULL;
        cap_runtime = 0;
    }
}

cce_status cce_strategy_parse_spec(const char *spec, const cce_strategy **s, cce_params **params) {
    *s = NULL;
    *params = NULL;
    const char *colon = strchr(spec, ':');
    size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
    char name[STRATEGY_MAX];
    if (len == 0) return cce_fail(CCE_ERR_ARG, "strategy spec '%s' has no strategy name", spec);
    if (len >= sizeof name)
        return cce_fail(CCE_ERR_NOT_FOUND, "unknown strategy '%.*s'", (int)len, spec);
    memcpy(name, spec, len);
    name[len] = '\0';
    const cce_strategy *found;
    cce_status st = cce_strategy_find(name, &found);
    if (st || (st = cce_params_parse(found, colon ? colon + 1 : NULL, params))) return st;
    *s = found;
    return CCE_OK;
}
