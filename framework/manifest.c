/* The dataset manifest: datasets/manifest.json, parsed with jansson.
 *
 * {"format": "cce-datasets", "version": 1,
 *  "datasets": [{"name", "kind", "file", "sha256", "licence", "url", "derivation",
 *                "url_is_file" (optional boolean)}, ...]} */
#include "dataset.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sha256.h"

#ifndef CCE_DATASETS_DIR
#error "CCE_DATASETS_DIR must name the source tree's datasets folder"
#endif

const char *cce_manifest_default_path(void) {
    const char *env = getenv("CCE_MANIFEST");
    if (env && *env) return env;
    return CCE_DATASETS_DIR "/manifest.json";
}

static void free_entry(cce_dataset_entry *e) {
    free(e->name);
    free(e->kind);
    free(e->file);
    free(e->licence);
    free(e->url);
    free(e->derivation);
}

void cce_manifest_free(cce_manifest *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) free_entry(&m->entries[i]);
    free(m->entries);
    free(m->path);
    free(m);
}

/* The manifest being parsed: its path and raw text (for line numbers). */
typedef struct source {
    const char *path;
    const char *text; /* [len] bytes, valid JSON once jansson accepted it */
    size_t len;
} source;

/* The 1-based line on which datasets[i] starts: the i-th object opened directly inside an array
 * inside the top-level object. 0 if not found. */
static int entry_line(const source *src, size_t i) {
    char stack[64]; /* open containers, outermost first */
    int depth = 0, line = 1, in_string = 0;
    size_t seen = 0;
    for (size_t k = 0; k < src->len; k++) {
        char c = src->text[k];
        if (c == '\n') line++;
        if (in_string) {
            if (c == '\\')
                k++;
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (c == '"') {
            in_string = 1;
        } else if (c == '{' || c == '[') {
            if (c == '{' && depth == 2 && stack[0] == '{' && stack[1] == '[' && seen++ == i)
                return line;
            if (depth < (int)sizeof stack) stack[depth] = c;
            depth++;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return 0;
}

/* Copies the non-empty string field `key` of entry i into *dst (caller frees). */
static cce_status get_string(const source *src, size_t i, json_t *obj, const char *key,
                             char **dst) {
    const char *path = src->path;
    int line = entry_line(src, i);
    json_t *v = json_object_get(obj, key);
    const char *name = json_string_value(json_object_get(obj, "name"));
    if (!v)
        return cce_fail(CCE_ERR_FORMAT, "%s:%d: datasets[%zu] (%s): missing field \"%s\"", path,
                        line, i, name ? name : "unnamed", key);
    if (!json_is_string(v) || json_string_length(v) == 0)
        return cce_fail(CCE_ERR_FORMAT,
                        "%s:%d: datasets[%zu] (%s): field \"%s\" must be a non-empty "
                        "string",
                        path, line, i, name ? name : "unnamed", key);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return cce_fail(CCE_ERR_FORMAT, "%s:%d: datasets[%zu] (%s): field \"%s\" contains a NUL",
                        path, line, i, name ? name : "unnamed", key);
    *dst = strdup(json_string_value(v));
    if (!*dst) return cce_fail(CCE_ERR_NOMEM, "%s: field \"%s\"", path, key);
    return CCE_OK;
}

/* 1 if rel is a safe relative path: not absolute, no empty, "." or ".." components. */
static int safe_relative(const char *rel) {
    if (rel[0] == '/') return 0;
    const char *p = rel;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) return 0;
        p += n;
        if (*p == '/') {
            p++;
            if (!*p) return 0;
        }
    }
    return 1;
}

static int valid_name(const char *s) {
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              (*s >= 'A' && *s <= 'Z')))
            return 0;
    return 1;
}

static cce_status parse_entry(const source *src, size_t i, json_t *obj, cce_dataset_entry *e) {
    const char *path = src->path;
    int line = entry_line(src, i);
    if (!json_is_object(obj))
        return cce_fail(CCE_ERR_FORMAT, "%s:%d: datasets[%zu] must be an object", path, line, i);
    cce_status s;
    char *sha = NULL;
    if ((s = get_string(src, i, obj, "name", &e->name)) != CCE_OK ||
        (s = get_string(src, i, obj, "kind", &e->kind)) != CCE_OK ||
        (s = get_string(src, i, obj, "file", &e->file)) != CCE_OK ||
        (s = get_string(src, i, obj, "sha256", &sha)) != CCE_OK ||
        (s = get_string(src, i, obj, "licence", &e->licence)) != CCE_OK ||
        (s = get_string(src, i, obj, "url", &e->url)) != CCE_OK ||
        (s = get_string(src, i, obj, "derivation", &e->derivation)) != CCE_OK) {
        free(sha);
        return s;
    }
    if (!valid_name(e->name))
        s = cce_fail(CCE_ERR_FORMAT,
                     "%s:%d: datasets[%zu]: field \"name\" = \"%s\" may hold only letters, digits "
                     "and '_'",
                     path, line, i, e->name);
    else if (strcmp(e->kind, "text") && strcmp(e->kind, "model") && strcmp(e->kind, "tokenizer"))
        s = cce_fail(CCE_ERR_FORMAT,
                     "%s:%d: datasets[%zu] (%s): field \"kind\" = \"%s\" is not text, model or "
                     "tokenizer",
                     path, line, i, e->name, e->kind);
    else if (!safe_relative(e->file))
        s = cce_fail(CCE_ERR_FORMAT,
                     "%s:%d: datasets[%zu] (%s): field \"file\" = \"%s\" must be a relative path "
                     "without '.' or '..' components",
                     path, line, i, e->name, e->file);
    else if (!cce_sha256_is_hex(sha))
        s = cce_fail(CCE_ERR_FORMAT,
                     "%s:%d: datasets[%zu] (%s): field \"sha256\" must be 64 lowercase hex digits",
                     path, line, i, e->name);
    if (s == CCE_OK) memcpy(e->sha256, sha, 65);
    free(sha);
    if (s != CCE_OK) return s;
    json_t *direct = json_object_get(obj, "url_is_file");
    if (direct && !json_is_boolean(direct))
        return cce_fail(CCE_ERR_FORMAT,
                        "%s:%d: datasets[%zu] (%s): field \"url_is_file\" must be true or false",
                        path, line, i, e->name);
    e->url_is_file = direct && json_is_true(direct);
    return CCE_OK;
}

static cce_status parse_manifest(const source *src, json_t *root, cce_manifest *m) {
    const char *path = src->path;
    if (!json_is_object(root))
        return cce_fail(CCE_ERR_FORMAT, "%s: the top level must be a JSON object", path);
    json_t *format = json_object_get(root, "format");
    if (!format || !json_is_string(format) || strcmp(json_string_value(format), "cce-datasets"))
        return cce_fail(CCE_ERR_FORMAT, "%s: field \"format\" must be \"cce-datasets\"", path);
    json_t *version = json_object_get(root, "version");
    if (!version || !json_is_integer(version) || json_integer_value(version) != 1)
        return cce_fail(CCE_ERR_FORMAT, "%s: field \"version\" must be 1", path);
    json_t *list = json_object_get(root, "datasets");
    if (!list || !json_is_array(list))
        return cce_fail(CCE_ERR_FORMAT, "%s: missing field \"datasets\" (an array)", path);
    size_t n = json_array_size(list);
    m->entries = calloc(n ? n : 1, sizeof *m->entries);
    if (!m->entries) return cce_fail(CCE_ERR_NOMEM, "%s: %zu entries", path, n);
    for (size_t i = 0; i < n; i++) {
        cce_status s = parse_entry(src, i, json_array_get(list, i), &m->entries[i]);
        m->n = i + 1; /* the entry's partial fields are freed with the manifest */
        if (s != CCE_OK) return s;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(m->entries[j].name, m->entries[i].name))
                return cce_fail(CCE_ERR_FORMAT,
                                "%s: datasets[%zu] and datasets[%zu] share the name \"%s\"", path,
                                j, i, m->entries[i].name);
    }
    return CCE_OK;
}

cce_status cce_manifest_load(const char *path, cce_manifest **out) {
    if (!out) return cce_fail(CCE_ERR_ARG, "cce_manifest_load: out must be non-NULL");
    if (!path) path = cce_manifest_default_path();
    char *text; /* [len] the file's bytes */
    size_t len;
    cce_status s = cce_text_load(path, &text, &len);
    if (s != CCE_OK) {
        cce_error_prefix("dataset manifest: ");
        return s;
    }
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        free(text);
        return cce_fail(CCE_ERR_FORMAT, "%s: line %d, column %d: %s", path, err.line, err.column,
                        err.text);
    }
    source src = {path, text, len};
    cce_manifest *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path)))
        s = cce_fail(CCE_ERR_NOMEM, "reading %s", path);
    else
        s = parse_manifest(&src, root, m);
    json_decref(root);
    free(text);
    if (s != CCE_OK) {
        cce_manifest_free(m);
        return s;
    }
    *out = m;
    return CCE_OK;
}

const cce_dataset_entry *cce_manifest_find(const cce_manifest *m, const char *name) {
    if (!m || !name) return NULL;
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->entries[i].name, name)) return &m->entries[i];
    return NULL;
}

char *cce_manifest_names(const cce_manifest *m) {
    size_t len = 1;
    for (size_t i = 0; i < m->n; i++) len += strlen(m->entries[i].name) + 2;
    char *s = malloc(len);
    if (!s) return NULL;
    s[0] = '\0';
    for (size_t i = 0; i < m->n; i++) {
        if (i) strcat(s, ", ");
        strcat(s, m->entries[i].name);
    }
    return s;
}
