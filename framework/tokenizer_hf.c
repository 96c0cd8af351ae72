/* Hugging Face tokenizer.json import and export for the project's BPE tokenizer (see
 * tokenizer_hf.h for what is supported and why). */
#include "tokenizer_hf.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SP         "\xE2\x96\x81" /* U+2581, SentencePiece's space */
#define SP_LEN     3
#define MAX_IDS    (1 << 22)
#define MAX_MERGES (1 << 24) /* ranks stay exact as float scores */
#define NO_MERGE   -1e10f    /* a score at which the project's tokenizer never merges */
#define NO_RANK    UINT32_MAX

/* ---- small helpers -------------------------------------------------------------------------- */

/* Byte length of the UTF-8 character starting with c (1 for a stray byte). */
static size_t char_len(unsigned char c) {
    return c < 0x80             ? 1
           : (c & 0xE0) == 0xC0 ? 2
           : (c & 0xF0) == 0xE0 ? 3
           : (c & 0xF8) == 0xF0 ? 4
                                : 1;
}

/* 1 if s (len bytes) is exactly one UTF-8 character. */
static int one_char(const char *s, size_t len) {
    return len > 0 && char_len((unsigned char)s[0]) == len;
}

/* s with every from (flen bytes) replaced by to (tlen bytes); malloc'd, *out_len its length. */
static char *replace_all(const char *s, size_t len, const char *from, size_t flen, const char *to,
                         size_t tlen, size_t *out_len) {
    char *r = malloc(len * (tlen > flen ? tlen : 1) + 1);
    if (!r) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (i + flen <= len && !memcmp(s + i, from, flen)) {
            memcpy(r + o, to, tlen);
            o += tlen;
            i += flen;
        } else {
            r[o++] = s[i++];
        }
    }
    r[o] = '\0';
    if (out_len) *out_len = o;
    return r;
}

/* Renders a piece for an error message: printable ASCII as is, other bytes as \xNN (static). */
static const char *show(const char *s) {
    static _Thread_local char buf[4][96];
    static _Thread_local int k;
    char *b = buf[k = (k + 1) & 3];
    size_t o = 0;
    for (size_t i = 0; s && s[i] && o + 6 < sizeof buf[0]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 32 && c < 127 && c != '\'')
            b[o++] = (char)c;
        else
            o += (size_t)snprintf(b + o, sizeof buf[0] - o, "\\x%02x", c);
    }
    b[o] = '\0';
    return b;
}

static const char *type_of(json_t *j) {
    return json_is_object(j) ? json_string_value(json_object_get(j, "type")) : NULL;
}

/* 1 if j is absent, null or false. */
static int unset(json_t *j) {
    return !j || json_is_null(j) || json_is_false(j);
}

/* 1 if obj[key] is the string want. */
static int str_is(json_t *obj, const char *key, const char *want) {
    const char *v = json_string_value(json_object_get(obj, key));
    return v && !strcmp(v, want);
}

/* 1 if a Replace normalizer/decoder replaces the string `from` by `to`. */
static int replace_is(json_t *j, const char *from, const char *to) {
    return str_is(json_object_get(j, "pattern"), "String", from) && str_is(j, "content", to);
}

/* The items of a "Sequence" (list_key holds them) or j itself as a one-item list. */
static size_t items(json_t *j, const char *list_key, json_t **list) {
    const char *t = type_of(j);
    if (t && !strcmp(t, "Sequence")) {
        *list = json_object_get(j, list_key);
        return json_is_array(*list) ? json_array_size(*list) : 0;
    }
    *list = NULL;
    return 1;
}
static json_t *item(json_t *j, json_t *list, size_t i) {
    return list ? json_array_get(list, i) : j;
}

/* ---- import: the pipeline around the model -------------------------------------------------- */

typedef struct pipeline {
    int prefix; /* dummy-prefix "▁" insertions */
    int spaces; /* 1 if spaces become "▁" */
    int split;  /* 1 if a Metaspace pre-tokenizer splits words */
} pipeline;

static cce_status bytelevel(const char *what, const char *part) {
    return cce_fail(
        CCE_ERR_FORMAT,
        "%s: %s: ByteLevel (GPT-2 style byte-to-unicode) tokenizers are not supported "
        "yet; the project's tokenizer handles SentencePiece-style BPE with byte fallback",
        what, part);
}

static cce_status read_pipeline(const char *what, json_t *root, pipeline *p) {
    *p = (pipeline){0};
    json_t *norm = json_object_get(root, "normalizer"), *list;
    if (norm && !json_is_null(norm)) {
        size_t n = items(norm, "normalizers", &list);
        for (size_t i = 0; i < n; i++) {
            json_t *it = item(norm, list, i);
            const char *t = type_of(it);
            if (t && !strcmp(t, "Prepend") && str_is(it, "prepend", SP))
                p->prefix++;
            else if (t && !strcmp(t, "Replace") && replace_is(it, " ", SP))
                p->spaces = 1;
            else
                return cce_fail(
                    CCE_ERR_FORMAT,
                    "%s: normalizer '%s' is not supported (only Prepend \"\\u2581\" and "
                    "Replace \" \" -> \"\\u2581\")",
                    what, t ? t : "(no type)");
        }
    }
    json_t *pre = json_object_get(root, "pre_tokenizer");
    if (pre && !json_is_null(pre)) {
        size_t n = items(pre, "pretokenizers", &list);
        for (size_t i = 0; i < n; i++) {
            json_t *it = item(pre, list, i);
            const char *t = type_of(it);
            if (t && !strcmp(t, "ByteLevel")) return bytelevel(what, "pre_tokenizer ByteLevel");
            if (!t || strcmp(t, "Metaspace") != 0)
                return cce_fail(CCE_ERR_FORMAT,
                                "%s: pre_tokenizer '%s' is not supported (only Metaspace)", what,
                                t ? t : "(no type)");
            if (!str_is(it, "replacement", SP))
                return cce_fail(CCE_ERR_FORMAT,
                                "%s: pre_tokenizer Metaspace: replacement must be \"\\u2581\"",
                                what);
            const char *scheme = json_string_value(json_object_get(it, "prepend_scheme"));
            json_t *aps = json_object_get(it, "add_prefix_space");
            if (scheme ? strcmp(scheme, "never") != 0 : !json_is_false(aps)) p->prefix++;
            p->spaces = 1;
            if (!json_is_false(json_object_get(it, "split"))) p->split = 1;
        }
    }
    json_t *dec = json_object_get(root, "decoder");
    if (dec && !json_is_null(dec)) {
        size_t n = items(dec, "decoders", &list);
        for (size_t i = 0; i < n; i++) {
            json_t *it = item(dec, list, i);
            const char *t = type_of(it);
            if (t && !strcmp(t, "ByteLevel")) return bytelevel(what, "decoder ByteLevel");
            if (t &&
                (!strcmp(t, "ByteFallback") || !strcmp(t, "Fuse") || !strcmp(t, "Strip") ||
                 !strcmp(t, "Metaspace") || (!strcmp(t, "Replace") && replace_is(it, SP, " "))))
                continue;
            return cce_fail(CCE_ERR_FORMAT,
                            "%s: decoder '%s' is not supported (only Replace \"\\u2581\" -> \" \", "
                            "ByteFallback, Fuse, Strip, Metaspace)",
                            what, t ? t : "(no type)");
        }
    }
    if (!p->spaces)
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: spaces are not mapped to \"\\u2581\" (no Replace normalizer or "
                        "Metaspace pre-tokenizer): not supported",
                        what);
    if (p->prefix != 1)
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: the text gets %d dummy-prefix \"\\u2581\" (Prepend normalizer or "
                        "Metaspace prepend); the project's tokenizer always adds exactly one",
                        what, p->prefix);
    return CCE_OK;
}

static cce_status read_model_options(const char *what, json_t *model) {
    if (!json_is_object(model))
        return cce_fail(CCE_ERR_FORMAT, "%s: \"model\" is missing or not an object", what);
    const char *t = type_of(model);
    if (!t) return cce_fail(CCE_ERR_FORMAT, "%s: model.type is missing", what);
    if (strcmp(t, "BPE") != 0)
        return cce_fail(CCE_ERR_FORMAT, "%s: model type '%s' is not supported (only BPE)", what, t);
    json_t *dropout = json_object_get(model, "dropout");
    if (!unset(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0.0))
        return cce_fail(CCE_ERR_FORMAT, "%s: model.dropout is set: BPE dropout is not supported",
                        what);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        json_t *v = json_object_get(model, affixes[i]);
        if (!unset(v) && !(json_is_string(v) && json_string_length(v) == 0))
            return cce_fail(CCE_ERR_FORMAT, "%s: model.%s is set: not supported", what, affixes[i]);
    }
    if (!json_is_true(json_object_get(model, "byte_fallback")))
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: model.byte_fallback is not true: only byte-fallback BPE "
                        "(Llama style) is supported",
                        what);
    if (!unset(json_object_get(model, "ignore_merges")))
        return cce_fail(CCE_ERR_FORMAT, "%s: model.ignore_merges is set: not supported", what);
    if (!json_is_object(json_object_get(model, "vocab")))
        return cce_fail(CCE_ERR_FORMAT, "%s: model.vocab is missing or not an object", what);
    if (!json_is_array(json_object_get(model, "merges")))
        return cce_fail(CCE_ERR_FORMAT, "%s: model.merges is missing or not an array", what);
    return CCE_OK;
}

/* ---- import: vocabulary and merges ---------------------------------------------------------- */

typedef struct hf_vocab {
    int32_t n;
    const char **orig; /* [n] piece text as in tokenizer.json (borrowed from the JSON) */
    uint32_t *rank;    /* [n] best rank of a merge producing the piece, NO_RANK if none */
    uint64_t *pairs;   /* [n_pairs] sorted (left id << 32 | right id) of every merge */
    size_t n_pairs;
} hf_vocab;

static void hf_vocab_free(hf_vocab *v) {
    free(v->orig);
    free(v->rank);
    free(v->pairs);
}

static int id_of(json_t *j, json_int_t *id) {
    if (!json_is_integer(j)) return 0;
    *id = json_integer_value(j);
    return *id >= 0 && *id < MAX_IDS;
}

static cce_status read_vocab(const char *what, json_t *root, json_t *model, hf_vocab *v) {
    json_t *vocab = json_object_get(model, "vocab"), *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added) && !json_is_array(added))
        return cce_fail(CCE_ERR_FORMAT, "%s: added_tokens is not an array", what);
    json_int_t n = 0, id;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!id_of(val, &id))
            return cce_fail(CCE_ERR_FORMAT, "%s: vocab '%s': id is not an integer in [0, %d)", what,
                            show(key), MAX_IDS);
        if (id + 1 > n) n = id + 1;
    }
    size_t i;
    json_array_foreach(added, i, val) {
        if (!json_is_object(val) || !id_of(json_object_get(val, "id"), &id) ||
            !json_is_string(json_object_get(val, "content")))
            return cce_fail(CCE_ERR_FORMAT,
                            "%s: added_tokens[%zu] needs an integer id in [0, %d) and a string "
                            "content",
                            what, i, MAX_IDS);
        if (id + 1 > n) n = id + 1;
    }
    if (n < 3)
        return cce_fail(CCE_ERR_FORMAT, "%s: %lld tokens (needs at least <unk> <s> </s>)", what,
                        (long long)n);
    v->n = (int32_t)n;
    v->orig = calloc((size_t)n, sizeof *v->orig);
    v->rank = malloc((size_t)n * sizeof *v->rank);
    if (!v->orig || !v->rank) return cce_fail(CCE_ERR_NOMEM, "%s: %lld tokens", what, (long long)n);
    for (json_int_t k = 0; k < n; k++) v->rank[k] = NO_RANK;
    json_object_foreach(vocab, key, val) {
        id = json_integer_value(val);
        if (v->orig[id])
            return cce_fail(CCE_ERR_FORMAT, "%s: vocab '%s' and '%s' share id %lld", what,
                            show(v->orig[id]), show(key), (long long)id);
        v->orig[id] = key;
    }
    json_array_foreach(added, i, val) {
        id = json_integer_value(json_object_get(val, "id"));
        const char *content = json_string_value(json_object_get(val, "content"));
        if (v->orig[id] && strcmp(v->orig[id], content) != 0)
            return cce_fail(CCE_ERR_FORMAT, "%s: added token '%s' has id %lld, which is '%s'", what,
                            show(content), (long long)id, show(v->orig[id]));
        v->orig[id] = content;
    }
    for (json_int_t k = 0; k < n; k++)
        if (!v->orig[k])
            return cce_fail(CCE_ERR_FORMAT, "%s: no token has id %lld (ids must be 0..%lld)", what,
                            (long long)k, (long long)n - 1);
    return CCE_OK;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The vocab id of text (len bytes), or -1. */
static int32_t lookup(json_t *vocab, const char *text, size_t len) {
    json_t *j = json_object_getn(vocab, text, len);
    return j ? (int32_t)json_integer_value(j) : -1;
}

/* One merge entry: "left right" or ["left", "right"]. */
static cce_status merge_parts(const char *what, json_t *m, size_t rank, const char **l, size_t *ll,
                              const char **r, size_t *rl) {
    if (json_is_string(m)) {
        const char *s = json_string_value(m), *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' '))
            return cce_fail(CCE_ERR_FORMAT,
                            "%s: merge %zu '%s' is not two tokens separated by one "
                            "space",
                            what, rank, show(s));
        *l = s, *ll = (size_t)(sp - s), *r = sp + 1, *rl = strlen(sp + 1);
        return CCE_OK;
    }
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *l = json_string_value(json_array_get(m, 0)),
        *ll = json_string_length(json_array_get(m, 0));
        *r = json_string_value(json_array_get(m, 1)),
        *rl = json_string_length(json_array_get(m, 1));
        return CCE_OK;
    }
    return cce_fail(CCE_ERR_FORMAT, "%s: merge %zu is neither \"a b\" nor [\"a\", \"b\"]", what,
                    rank);
}

static cce_status read_merges(const char *what, json_t *model, int split, hf_vocab *v) {
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    size_t n = json_array_size(merges);
    if (n > MAX_MERGES)
        return cce_fail(CCE_ERR_FORMAT, "%s: %zu merges (at most %d)", what, n, MAX_MERGES);
    v->pairs = malloc((n ? n : 1) * sizeof *v->pairs);
    char *buf = NULL;
    size_t cap = 0;
    if (!v->pairs) return cce_fail(CCE_ERR_NOMEM, "%s: %zu merges", what, n);
    int32_t last_out = -1;
    cce_status s = CCE_OK;
    for (size_t k = 0; k < n && !s; k++) {
        const char *l = "", *r = "";
        size_t ll = 0, rl = 0;
        if ((s = merge_parts(what, json_array_get(merges, k), k, &l, &ll, &r, &rl))) break;
        int32_t lid = lookup(vocab, l, ll), rid = lookup(vocab, r, rl);
        if (lid < 0 || rid < 0) {
            s = cce_fail(CCE_ERR_FORMAT, "%s: merge %zu ('%.*s' '%.*s') names unknown token '%.*s'",
                         what, k, (int)ll, l, (int)rl, r, (int)(lid < 0 ? ll : rl),
                         lid < 0 ? l : r);
            break;
        }
        if (ll + rl + 1 > cap) {
            cap = 2 * (ll + rl + 1);
            char *nb = realloc(buf, cap);
            if (!nb) {
                s = cce_fail(CCE_ERR_NOMEM, "%s: merge %zu", what, k);
                break;
            }
            buf = nb;
        }
        memcpy(buf, l, ll);
        memcpy(buf + ll, r, rl);
        int32_t out = lookup(vocab, buf, ll + rl);
        if (out < 0) {
            s = cce_fail(CCE_ERR_FORMAT,
                         "%s: merge %zu ('%.*s' '%.*s') makes '%.*s', which is not in the vocab",
                         what, k, (int)ll, l, (int)rl, r, (int)(ll + rl), buf);
            break;
        }
        if (split && rl >= SP_LEN && !memcmp(r, SP, SP_LEN)) {
            s = cce_fail(CCE_ERR_FORMAT,
                         "%s: merge %zu ('%.*s' '%.*s') joins across a Metaspace word split: not "
                         "representable by the project's tokenizer",
                         what, k, (int)ll, l, (int)rl, r);
            break;
        }
        if (out != last_out && v->rank[out] != NO_RANK) {
            s = cce_fail(CCE_ERR_FORMAT,
                         "%s: the merges making '%s' are not consecutive (ranks %u and %zu): the "
                         "project's tokenizer merges by piece score and cannot represent this "
                         "merge order (not supported yet)",
                         what, show(v->orig[out]), v->rank[out], k);
            break;
        }
        if (v->rank[out] == NO_RANK) v->rank[out] = (uint32_t)k;
        last_out = out;
        v->pairs[v->n_pairs++] = (uint64_t)(uint32_t)lid << 32 | (uint32_t)rid;
    }
    free(buf);
    if (s) return s;
    qsort(v->pairs, v->n_pairs, sizeof *v->pairs, cmp_u64);
    return CCE_OK;
}

/* A piece can appear as a symbol while encoding: a single character, a byte piece, or a merge
 * result. */
static int formable(const hf_vocab *v, int32_t id) {
    const char *p = v->orig[id];
    size_t len = strlen(p);
    return v->rank[id] != NO_RANK || one_char(p, len) ||
           (len == 6 && !strncmp(p, "<0x", 3) && p[5] == '>');
}

/* Every split of a merge result into two formable pieces must itself be a merge, since the
 * project's tokenizer would merge it. */
static cce_status check_splits(const char *what, json_t *vocab, const hf_vocab *v) {
    for (int32_t id = 0; id < v->n; id++) {
        if (v->rank[id] == NO_RANK) continue;
        const char *p = v->orig[id];
        size_t len = strlen(p);
        for (size_t k = char_len((unsigned char)p[0]); k < len;
             k += char_len((unsigned char)p[k])) {
            int32_t l = lookup(vocab, p, k), r = lookup(vocab, p + k, len - k);
            if (l < 0 || r < 0 || !formable(v, l) || !formable(v, r)) continue;
            uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
            if (!bsearch(&key, v->pairs, v->n_pairs, sizeof key, cmp_u64))
                return cce_fail(
                    CCE_ERR_FORMAT,
                    "%s: '%s' splits into '%s' + '%s', both formable, but that merge is "
                    "not in the list: the project's tokenizer merges by piece score "
                    "and cannot represent this merge list (not supported yet)",
                    what, show(p), show(v->orig[l]), show(v->orig[r]));
        }
    }
    return CCE_OK;
}

static cce_status check_bytes(const char *what, json_t *vocab) {
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        if (lookup(vocab, name, 6) < 0)
            return cce_fail(CCE_ERR_FORMAT,
                            "%s: byte_fallback needs the 256 pieces <0x00>..<0xFF>; %s is missing",
                            what, name);
    }
    return CCE_OK;
}

/* The special token `key` (a string or {"content": ...}) of obj must have id want. */
static cce_status check_special(const char *what, json_t *obj, const char *key, int32_t want,
                                json_t *vocab, const hf_vocab *v) {
    json_t *j = json_object_get(obj, key);
    if (json_is_object(j)) j = json_object_get(j, "content");
    if (!j || json_is_null(j)) return CCE_OK;
    if (!json_is_string(j)) return cce_fail(CCE_ERR_FORMAT, "%s: %s is not a string", what, key);
    const char *c = json_string_value(j);
    int32_t id = lookup(vocab, c, json_string_length(j));
    for (int32_t k = 0; id < 0 && k < v->n; k++)
        if (!strcmp(v->orig[k], c)) id = k;
    if (id < 0) return cce_fail(CCE_ERR_FORMAT, "%s: %s '%s' is not a token", what, key, show(c));
    if (id != want)
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: %s '%s' has id %d; the project's tokenizer needs it at id %d (not "
                        "supported yet)",
                        what, key, show(c), (int)id, (int)want);
    return CCE_OK;
}

static cce_status parse_json(const char *what, const char *text, size_t len, json_t **out) {
    json_error_t err;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!j)
        return cce_fail(CCE_ERR_FORMAT, "%s: malformed JSON at line %d column %d: %s", what,
                        err.line, err.column, err.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return cce_fail(CCE_ERR_FORMAT, "%s: not a JSON object", what);
    }
    *out = j;
    return CCE_OK;
}

cce_status cce_tokenizer_parse_hf(const char *json, size_t json_len, const char *config,
                                  size_t config_len, const char *what, int32_t vocab_size,
                                  cce_tokenizer **out) {
    if (!json || !what || !out)
        return cce_fail(CCE_ERR_ARG, "cce_tokenizer_parse_hf: json, what and out must be non-NULL");
    json_t *root = NULL, *cfg = NULL;
    hf_vocab v = {0};
    char **pieces = NULL; /* [v.n] " " form */
    float *scores = NULL; /* [v.n] */
    pipeline p;
    cce_status s = parse_json(what, json, json_len, &root);
    if (!s && config) {
        char cwhat[600];
        snprintf(cwhat, sizeof cwhat, "%s (tokenizer_config.json)", what);
        s = parse_json(cwhat, config, config_len, &cfg);
    }
    json_t *model = json_object_get(root, "model");
    if (!s) s = read_model_options(what, model);
    if (!s) s = read_pipeline(what, root, &p);
    json_t *vocab = json_object_get(model, "vocab");
    if (!s) s = read_vocab(what, root, model, &v);
    if (!s && vocab_size > 0 && v.n != vocab_size)
        s = cce_fail(CCE_ERR_FORMAT, "%s: %d tokens, but the model's vocab_size is %d", what,
                     (int)v.n, (int)vocab_size);
    if (!s) s = check_bytes(what, vocab);
    if (!s) s = read_merges(what, model, p.split, &v);
    if (!s) s = check_splits(what, vocab, &v);
    if (!s) s = check_special(what, model, "unk_token", 0, vocab, &v);
    static const char *const special[3] = {"unk_token", "bos_token", "eos_token"};
    for (int k = 0; k < 3 && !s && cfg; k++) s = check_special(what, cfg, special[k], k, vocab, &v);
    if (!s) {
        pieces = calloc((size_t)v.n, sizeof *pieces);
        scores = malloc((size_t)v.n * sizeof *scores);
        if (!pieces || !scores) s = cce_fail(CCE_ERR_NOMEM, "%s: %d pieces", what, (int)v.n);
    }
    for (int32_t id = 0; id < v.n && !s; id++) {
        pieces[id] = replace_all(v.orig[id], strlen(v.orig[id]), SP, SP_LEN, " ", 1, NULL);
        if (!pieces[id]) s = cce_fail(CCE_ERR_NOMEM, "%s: piece %d", what, (int)id);
        scores[id] = v.rank[id] == NO_RANK ? NO_MERGE : -(float)v.rank[id];
    }
    if (!s) {
        s = cce_tokenizer_new(v.n, (const char *const *)pieces, scores, out);
        if (s) {
            char detail[1024];
            snprintf(detail, sizeof detail, "%s", cce_error_detail());
            s = cce_fail(s == CCE_ERR_NOMEM ? s : CCE_ERR_FORMAT, "%s: %s", what, detail);
        }
    }
    if (pieces)
        for (int32_t id = 0; id < v.n; id++) free(pieces[id]);
    free(pieces);
    free(scores);
    hf_vocab_free(&v);
    json_decref(root);
    json_decref(cfg);
    return s;
}

/* Reads a whole file (malloc'd, NUL-terminated) into *data. */
static cce_status slurp(const char *path, char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return cce_fail(CCE_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 1 >= cap) {
            cap = cap ? cap * 2 : 1 << 16;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return cce_fail(CCE_ERR_NOMEM, "reading %s", path);
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (!got) break;
    }
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (err) {
        free(buf);
        return cce_fail(CCE_ERR_IO, "reading %s: %s", path, strerror(err));
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return CCE_OK;
}

cce_status cce_tokenizer_load_hf(const char *tokenizer_json, const char *config_json,
                                 int32_t vocab_size, cce_tokenizer **out) {
    if (!tokenizer_json || !out)
        return cce_fail(CCE_ERR_ARG, "cce_tokenizer_load_hf: tokenizer_json and out are required");
    char *json = NULL, *cfg = NULL;
    size_t len = 0, cfg_len = 0;
    cce_status s = slurp(tokenizer_json, &json, &len);
    if (!s && config_json && access(config_json, F_OK) == 0) s = slurp(config_json, &cfg, &cfg_len);
    if (!s) s = cce_tokenizer_parse_hf(json, len, cfg, cfg_len, tokenizer_json, vocab_size, out);
    free(json);
    free(cfg);
    return s;
}

/* ---- export --------------------------------------------------------------------------------- */

typedef struct merge_row {
    float score;
    int32_t id, l, r;
} merge_row;

static int merge_order(const void *a, const void *b) {
    const merge_row *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    if (x->l != y->l) return x->l < y->l ? -1 : 1;
    return (x->r > y->r) - (x->r < y->r);
}

/* tokenizer.json as a JSON tree (*out: new reference, caller decrefs). */
static cce_status build_json(const cce_tokenizer *tok, json_t **out) {
    int32_t n = cce_tokenizer_vocab_size(tok);
    json_t *vocab = json_object(), *merges = json_array(), *added = json_array();
    char **sp = calloc((size_t)n, sizeof *sp); /* [n] "▁" form */
    merge_row *rows = NULL;
    size_t n_rows = 0, cap = 0;
    cce_status s =
        vocab && merges && added && sp ? CCE_OK : cce_fail(CCE_ERR_NOMEM, "tokenizer.json");
    for (int32_t id = 0; id < n && !s; id++) {
        const char *p = cce_tokenizer_piece(tok, id);
        if (strstr(p, SP)) {
            s = cce_fail(CCE_ERR_FORMAT,
                         "tokenizer piece %d '%s' contains \"\\u2581\", which tokenizer.json uses "
                         "for a space",
                         (int)id, show(p));
            break;
        }
        if (!(sp[id] = replace_all(p, strlen(p), " ", 1, SP, SP_LEN, NULL))) {
            s = cce_fail(CCE_ERR_NOMEM, "tokenizer piece %d", (int)id);
            break;
        }
        if (json_object_get(vocab, sp[id]))
            s = cce_fail(CCE_ERR_FORMAT, "tokenizer piece %d '%s' appears twice", (int)id, show(p));
        else if (json_object_set_new(vocab, sp[id], json_integer(id)) != 0) /* takes the value */
            s = cce_fail(CCE_ERR_FORMAT, "tokenizer piece %d '%s' is not valid UTF-8", (int)id,
                         show(p));
    }
    for (int32_t id = 0; id < n && !s; id++) {
        float score = cce_tokenizer_score(tok, id);
        const char *p = sp[id];
        size_t len = strlen(p);
        if (!(score > NO_MERGE) || len == 0 || one_char(p, len)) continue;
        for (size_t k = char_len((unsigned char)p[0]); k < len && !s;
             k += char_len((unsigned char)p[k])) {
            int32_t l = lookup(vocab, p, k), r = lookup(vocab, p + k, len - k);
            if (l < 0 || r < 0) continue;
            if (n_rows == cap) {
                cap = cap ? 2 * cap : 4096;
                merge_row *nr = realloc(rows, cap * sizeof *rows);
                if (!nr) {
                    s = cce_fail(CCE_ERR_NOMEM, "tokenizer.json: %zu merges", cap);
                    break;
                }
                rows = nr;
            }
            rows[n_rows++] = (merge_row){score, id, l, r};
        }
    }
    if (!s && n_rows) qsort(rows, n_rows, sizeof *rows, merge_order);
    for (size_t k = 0; k < n_rows && !s; k++)
        if (json_array_append_new(merges, json_pack("[ss]", sp[rows[k].l], sp[rows[k].r])))
            s = cce_fail(CCE_ERR_NOMEM, "tokenizer.json: merge %zu", k);
    for (int32_t id = 0; id < 3 && !s; id++)
        if (json_array_append_new(added,
                                  json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", (int)id,
                                            "content", sp[id], "single_word", 0, "lstrip", 0,
                                            "rstrip", 0, "normalized", 0, "special", 1)))
            s = cce_fail(CCE_ERR_NOMEM, "tokenizer.json: added_tokens");
    json_t *root = NULL;
    if (!s) {
        root =
            json_pack("{s:s, s:n, s:n, s:O,"
                      " s:{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}, s:s}]},"
                      " s:n,"
                      " s:{s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}], s:[{s:{s:s, s:i}}, "
                      "{s:{s:s, s:i}}, {s:{s:s, s:i}}, {s:{s:s, s:i}}], s:{s:{s:s, s:[i], "
                      "s:[s]}}},"
                      " s:{s:s, s:[{s:s, s:{s:s}, s:s}, {s:s}, {s:s}, {s:s, s:s, s:i, s:i}]},"
                      " s:{s:s, s:n, s:s, s:n, s:n, s:b, s:b, s:b, s:O, s:O}}",
                      "version", "1.0", "truncation", "padding", "added_tokens", added,
                      /* normalizer */
                      "normalizer", "type", "Sequence", "normalizers", "type", "Prepend", "prepend",
                      SP, "type", "Replace", "pattern", "String", " ", "content", SP,
                      /* pre_tokenizer */
                      "pre_tokenizer",
                      /* post_processor: BOS before each sequence */
                      "post_processor", "type", "TemplateProcessing", "single", "SpecialToken",
                      "id", sp[1], "type_id", 0, "Sequence", "id", "A", "type_id", 0, "pair",
                      "SpecialToken", "id", sp[1], "type_id", 0, "Sequence", "id", "A", "type_id",
                      0, "SpecialToken", "id", sp[1], "type_id", 1, "Sequence", "id", "B",
                      "type_id", 1, "special_tokens", sp[1], "id", sp[1], "ids", 1, "tokens", sp[1],
                      /* decoder */
                      "decoder", "type", "Sequence", "decoders", "type", "Replace", "pattern",
                      "String", SP, "content", " ", "type", "ByteFallback", "type", "Fuse", "type",
                      "Strip", "content", " ", "start", 1, "stop", 0,
                      /* model */
                      "model", "type", "BPE", "dropout", "unk_token", sp[0],
                      "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 1,
                      "byte_fallback", 1, "ignore_merges", 0, "vocab", vocab, "merges", merges);
        if (!root) s = cce_fail(CCE_ERR_NOMEM, "tokenizer.json");
    }
    json_decref(vocab);
    json_decref(merges);
    json_decref(added);
    if (sp)
        for (int32_t id = 0; id < n; id++) free(sp[id]);
    free(sp);
    free(rows);
    *out = root;
    return s;
}

cce_status cce_tokenizer_hf_json(const cce_tokenizer *tok, char **json) {
    if (!tok || !json) return cce_fail(CCE_ERR_ARG, "cce_tokenizer_hf_json: NULL argument");
    json_t *root = NULL;
    cce_status s = build_json(tok, &root);
    if (s) return s;
    *json = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return *json ? CCE_OK : cce_fail(CCE_ERR_NOMEM, "tokenizer.json text");
}

/* Writes text to dir/name through a temporary file. */
static cce_status write_text(const char *dir, const char *name, const char *text) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n), *tmp = malloc(n + 32);
    if (!path || !tmp) {
        free(path);
        free(tmp);
        return cce_fail(CCE_ERR_NOMEM, "%s: path", dir);
    }
    snprintf(path, n, "%s/%s", dir, name);
    snprintf(tmp, n + 32, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    int ok = f && fputs(text, f) != EOF && fputc('\n', f) != EOF && fflush(f) == 0 &&
             fsync(fileno(f)) == 0;
    int err = errno;
    if (f && fclose(f) != 0 && ok) ok = 0, err = errno;
    cce_status s = CCE_OK;
    if (!ok || rename(tmp, path) != 0) {
        if (ok) err = errno;
        s = cce_fail(CCE_ERR_IO, "%s: cannot write: %s", path, strerror(err));
        remove(tmp);
    }
    free(tmp);
    free(path);
    return s;
}

cce_status cce_tokenizer_save_hf(const cce_tokenizer *tok, const char *dir) {
    if (!tok || !dir) return cce_fail(CCE_ERR_ARG, "cce_tokenizer_save_hf: NULL argument");
    char *json = NULL;
    cce_status s = cce_tokenizer_hf_json(tok, &json);
    if (s) {
        cce_error_prefix("%s/tokenizer.json: ", dir);
        return s;
    }
    char *b = replace_all(cce_tokenizer_piece(tok, 1), strlen(cce_tokenizer_piece(tok, 1)), " ", 1,
                          SP, SP_LEN, NULL);
    char *e = replace_all(cce_tokenizer_piece(tok, 2), strlen(cce_tokenizer_piece(tok, 2)), " ", 1,
                          SP, SP_LEN, NULL);
    char *u = replace_all(cce_tokenizer_piece(tok, 0), strlen(cce_tokenizer_piece(tok, 0)), " ", 1,
                          SP, SP_LEN, NULL);
    json_t *cfg = b && e && u
                      ? json_pack("{s:b, s:b, s:s, s:s, s:s, s:b, s:b, s:s}", "add_bos_token", 1,
                                  "add_eos_token", 0, "bos_token", b, "eos_token", e, "unk_token",
                                  u, "legacy", 1, "clean_up_tokenization_spaces", 0,
                                  "tokenizer_class", "LlamaTokenizer")
                      : NULL;
    char *cfg_text = cfg ? json_dumps(cfg, JSON_INDENT(2)) : NULL;
    if (!cfg_text) s = cce_fail(CCE_ERR_NOMEM, "%s/tokenizer_config.json", dir);
    if (!s) s = write_text(dir, "tokenizer.json", json);
    if (!s) s = write_text(dir, "tokenizer_config.json", cfg_text);
    free(cfg_text);
    json_decref(cfg);
    free(b), free(e), free(u), free(json);
    return s;
}
