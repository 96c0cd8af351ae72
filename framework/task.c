/* Multiple-choice tasks: items, and reading and writing JSONL task files (jansson). */
#include "task.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "sha256.h"

static char *dup_or_empty(const char *s) {
    return strdup(s ? s : "");
}

cce_status cce_task_new(const char *name, const char *source, const char *recipe, cce_task **out) {
    if (!out) return cce_fail(CCE_ERR_ARG, "cce_task_new: no output");
    *out = NULL;
    cce_task *t = calloc(1, sizeof *t);
    if (!t) return cce_fail(CCE_ERR_NOMEM, "task '%s'", name ? name : "");
    t->name = dup_or_empty(name);
    t->source = dup_or_empty(source);
    t->recipe = dup_or_empty(recipe);
    if (!t->name || !t->source || !t->recipe) {
        cce_task_free(t);
        return cce_fail(CCE_ERR_NOMEM, "task '%s'", name ? name : "");
    }
    *out = t;
    return CCE_OK;
}

static void item_clear(cce_task_item *it) {
    free(it->context);
    if (it->choices)
        for (int c = 0; c < it->n_choices; c++) free(it->choices[c]);
    free(it->choices);
    memset(it, 0, sizeof *it);
}

void cce_task_free(cce_task *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n_items; i++) item_clear(&t->items[i]);
    free(t->items);
    free(t->name);
    free(t->source);
    free(t->recipe);
    free(t);
}

cce_status cce_task_add(cce_task *t, const char *context, const char *const *choices, int n_choices,
                        int answer) {
    if (!t || !choices) return cce_fail(CCE_ERR_ARG, "cce_task_add: no task or no choices");
    if (n_choices < 2 || n_choices > CCE_TASK_MAX_CHOICES)
        return cce_fail(CCE_ERR_RANGE, "%d choices is outside [2, %d]", n_choices,
                        CCE_TASK_MAX_CHOICES);
    if (answer < 0 || answer >= n_choices)
        return cce_fail(CCE_ERR_RANGE, "answer %d is outside [0, %d)", answer, n_choices);
    for (int c = 0; c < n_choices; c++)
        if (!choices[c] || !choices[c][0]) return cce_fail(CCE_ERR_ARG, "choice %d is empty", c);
    if (t->n_items == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        cce_task_item *grown = realloc(t->items, cap * sizeof *grown);
        if (!grown) return cce_fail(CCE_ERR_NOMEM, "task of %zu items", cap);
        t->items = grown;
        t->cap = cap;
    }
    cce_task_item it = {0};
    it.context = dup_or_empty(context);
    it.choices = calloc((size_t)n_choices, sizeof *it.choices);
    int ok = it.context && it.choices;
    it.n_choices = ok ? n_choices : 0;
    for (int c = 0; ok && c < n_choices; c++) ok = (it.choices[c] = strdup(choices[c])) != NULL;
    if (!ok) {
        item_clear(&it);
        return cce_fail(CCE_ERR_NOMEM, "task item %zu", t->n_items);
    }
    it.answer = answer;
    t->items[t->n_items++] = it;
    return CCE_OK;
}

cce_status cce_task_keep_first(cce_task *t, size_t n) {
    if (!t) return cce_fail(CCE_ERR_ARG, "cce_task_keep_first: no task");
    if (n == 0 || n > t->n_items)
        return cce_fail(CCE_ERR_RANGE, "%zu items asked for: task '%s' holds %zu items", n, t->name,
                        t->n_items);
    if (n == t->n_items) return CCE_OK;
    size_t len = strlen(t->recipe) + 48;
    char *recipe = malloc(len);
    if (!recipe) return cce_fail(CCE_ERR_NOMEM, "task recipe");
    snprintf(recipe, len, "%s, first %zu items", t->recipe, n);
    free(t->recipe);
    t->recipe = recipe;
    for (size_t i = n; i < t->n_items; i++) item_clear(&t->items[i]);
    t->n_items = n;
    return CCE_OK;
}

double cce_task_chance(const cce_task *t) {
    if (!t || t->n_items == 0) return NAN;
    double sum = 0;
    for (size_t i = 0; i < t->n_items; i++) sum += 1.0 / t->items[i].n_choices;
    return sum / (double)t->n_items;
}

/* ---- JSONL ---------------------------------------------------------------------------------- */

/* Reads one parsed line into t; the message names origin:line. */
static cce_status add_json_item(cce_task *t, json_t *o, const char *origin, size_t line) {
    if (!json_is_object(o))
        return cce_fail(CCE_ERR_FORMAT, "%s:%zu: an item must be a JSON object", origin, line);
    json_t *ctx = json_object_get(o, "context");
    json_t *ch = json_object_get(o, "choices");
    json_t *ans = json_object_get(o, "answer");
    if (!ctx || !json_is_string(ctx))
        return cce_fail(CCE_ERR_FORMAT, "%s:%zu: field 'context' %s", origin, line,
                        ctx ? "must be a string" : "is missing");
    if (!ch || !json_is_array(ch))
        return cce_fail(CCE_ERR_FORMAT, "%s:%zu: field 'choices' %s", origin, line,
                        ch ? "must be an array of strings" : "is missing");
    if (!ans || !json_is_integer(ans))
        return cce_fail(CCE_ERR_FORMAT, "%s:%zu: field 'answer' %s", origin, line,
                        ans ? "must be an integer (the index of the right choice)" : "is missing");
    size_t n = json_array_size(ch);
    if (n < 2 || n > CCE_TASK_MAX_CHOICES)
        return cce_fail(CCE_ERR_FORMAT, "%s:%zu: 'choices' has %zu entries, outside [2, %d]",
                        origin, line, n, CCE_TASK_MAX_CHOICES);
    const char *choices[CCE_TASK_MAX_CHOICES];
    for (size_t c = 0; c < n; c++) {
        json_t *v = json_array_get(ch, c);
        if (!json_is_string(v))
            return cce_fail(CCE_ERR_FORMAT, "%s:%zu: choice %zu is not a string", origin, line, c);
        if (json_string_length(v) == 0)
            return cce_fail(CCE_ERR_FORMAT, "%s:%zu: choice %zu is empty", origin, line, c);
        if (strlen(json_string_value(v)) != json_string_length(v))
            return cce_fail(CCE_ERR_FORMAT, "%s:%zu: choice %zu contains a NUL character", origin,
                            line, c);
        choices[c] = json_string_value(v);
    }
    if (strlen(json_string_value(ctx)) != json_string_length(ctx))
        return cce_fail(CCE_ERR_FORMAT, "%s:%zu: 'context' contains a NUL character", origin, line);
    json_int_t a = json_integer_value(ans);
    if (a < 0 || a >= (json_int_t)n)
        return cce_fail(CCE_ERR_FORMAT, "%s:%zu: answer %lld is outside [0, %zu)", origin, line,
                        (long long)a, n);
    cce_status s = cce_task_add(t, json_string_value(ctx), choices, (int)n, (int)a);
    if (s) cce_error_prefix("%s:%zu: ", origin, line);
    return s;
}

/* 1 if [p, p+n) holds only spaces, tabs, CR or LF. */
static int blank(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n') return 0;
    return 1;
}

cce_status cce_task_parse_jsonl(const char *text, size_t len, const char *origin, cce_task **out) {
    if (!out || (!text && len)) return cce_fail(CCE_ERR_ARG, "cce_task_parse_jsonl: NULL argument");
    *out = NULL;
    if (!origin) origin = "jsonl";
    cce_task *t;
    cce_status s = cce_task_new(origin, origin, "jsonl", &t);
    if (s) return s;
    size_t line = 0, pos = 0;
    while (!s && pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        size_t n = end - pos;
        line++;
        if (n > 0 && text[pos + n - 1] == '\r') n--;
        if (!blank(text + pos, n)) {
            json_error_t err;
            json_t *o = json_loadb(text + pos, n, JSON_REJECT_DUPLICATES, &err);
            if (!o)
                s = cce_fail(CCE_ERR_FORMAT, "%s:%zu: malformed JSON at column %d: %s", origin,
                             line, err.column, err.text);
            else
                s = add_json_item(t, o, origin, line);
            json_decref(o);
        }
        pos = end + 1;
    }
    if (!s && t->n_items == 0)
        s = cce_fail(CCE_ERR_FORMAT,
                     "%s: no items (one JSON object per line: context, choices, "
                     "answer)",
                     origin);
    if (s) {
        cce_task_free(t);
        return s;
    }
    *out = t;
    return CCE_OK;
}

cce_status cce_task_read_jsonl(const char *path, cce_task **out) {
    if (!path || !out) return cce_fail(CCE_ERR_ARG, "cce_task_read_jsonl: NULL argument");
    *out = NULL;
    char *text;
    size_t len;
    cce_status s = cce_text_load(path, &text, &len);
    if (s) return s;
    char sha[65];
    s = cce_sha256_file(path, sha);
    cce_task *t = NULL;
    if (!s) s = cce_task_parse_jsonl(text, len, path, &t);
    free(text);
    if (s) return s;
    memcpy(t->sha256, sha, sizeof sha);
    *out = t;
    return CCE_OK;
}

/* One item as a JSON object (new reference; NULL if out of memory). */
static json_t *item_json(const cce_task_item *it) {
    json_t *o = json_object(), *ch = json_array();
    int ok = o && ch;
    for (int c = 0; ok && c < it->n_choices; c++)
        ok = json_array_append_new(ch, json_string(it->choices[c])) == 0;
    if (ok) ok = json_object_set_new(o, "context", json_string(it->context)) == 0;
    if (ok) {
        ok = json_object_set_new(o, "choices", ch) == 0;
        ch = NULL;
    }
    if (ok) ok = json_object_set_new(o, "answer", json_integer(it->answer)) == 0;
    json_decref(ch);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

cce_status cce_task_write_jsonl(const cce_task *t, const char *path) {
    if (!t || !path) return cce_fail(CCE_ERR_ARG, "cce_task_write_jsonl: NULL argument");
    size_t cap = strlen(path) + 64;
    char *tmp = malloc(cap);
    if (!tmp) return cce_fail(CCE_ERR_NOMEM, "writing %s", path);
    snprintf(tmp, cap, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        cce_status s = cce_fail(CCE_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
        free(tmp);
        return s;
    }
    cce_status s = CCE_OK;
    for (size_t i = 0; !s && i < t->n_items; i++) {
        json_t *o = item_json(&t->items[i]);
        char *line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(o);
        if (!line)
            s = cce_fail(CCE_ERR_NOMEM, "writing item %zu to %s", i, path);
        else if (fprintf(f, "%s\n", line) < 0)
            s = cce_fail(CCE_ERR_IO, "writing %s: %s", tmp, strerror(errno));
        free(line);
    }
    if (fclose(f) != 0 && !s) s = cce_fail(CCE_ERR_IO, "writing %s: %s", tmp, strerror(errno));
    if (!s && rename(tmp, path) != 0)
        s = cce_fail(CCE_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (s) unlink(tmp);
    free(tmp);
    return s;
}
