/* Hugging Face tokenizer.json import into the project's tokenizer, both kinds (see tokenizer_hf.h
 * for what is supported and why; export is in tokenizer_hf_export.c). */
#include "tokenizer_hf.h"
#include "tokenizer_hf_internal.h"
#include "tokenizer_internal.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_IDS    (1 << 22)
#define MAX_MERGES (1 << 24) /* ranks stay exact as float scores */
#define NO_MERGE   -1e10f    /* a score at which the project's tokenizer never merges */
#define NO_RANK    UINT32_MAX

/* ---- small helpers -------------------------------------------------------------------------- */

size_t hf_char_len(unsigned char c) {
    return c < 0x80             ? 1
           : (c & 0xE0) == 0xC0 ? 2
           : (c & 0xF0) == 0xE0 ? 3
           : (c & 0xF8) == 0xF0 ? 4
                                : 1;
}

int hf_one_char(const char *s, size_t len) {
    return len > 0 && hf_char_len((unsigned char)s[0]) == len;
}

char *hf_replace_all(const char *s, size_t len, const char *from, size_t flen, const char *to,
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

const char *hf_show(const char *s) {
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
    int prefix;       /* SentencePiece: dummy-prefix "▁" insertions */
    int spaces;       /* SentencePiece: 1 if spaces become "▁" */
    int split;        /* SentencePiece: 1 if a Metaspace pre-tokenizer splits words */
    int prefix_first; /* SentencePiece: Metaspace prepend_scheme "first" */
    int prepend;      /* SentencePiece: the prefix is the Prepend normalizer's (else Metaspace's) */
    int sp_parts;     /* SentencePiece-style parts seen (for the mixing check) */
    int bl_pre;       /* ByteLevel pre-tokenizer seen */
    int bl_dec;       /* ByteLevel decoder seen */
    int split_seen;   /* a Split pre-tokenizer seen */
    int add_prefix_space;
    int nfc;
    cce_pretokenizer pretok;
} pipeline;

/* A Split pre-tokenizer: its pattern must be one of the known ones, behavior Isolated. */
static cce_status read_split(const char *what, json_t *it, pipeline *p) {
    json_t *pat = json_object_get(it, "pattern");
    const char *re = json_string_value(json_object_get(pat, "Regex"));
    if (!re) re = json_string_value(json_object_get(pat, "String"));
    if (!re)
        return cce_fail(CCE_ERR_FORMAT, "%s: pre_tokenizer Split: pattern is not {\"Regex\": ...}",
                        what);
    cce_pretokenizer found = CCE_PRETOK_NONE;
    for (int k = 1; k < CCE_PRETOK_COUNT; k++)
        if (!strcmp(re, pretok_regex((cce_pretokenizer)k))) found = (cce_pretokenizer)k;
    if (found == CCE_PRETOK_NONE || !json_object_get(pat, "Regex"))
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: pre_tokenizer Split: pattern '%s' is not supported (the project has "
                        "no regex engine; known patterns: GPT-2's, Llama 3's, Qwen2's)",
                        what, hf_show(re));
    if (!str_is(it, "behavior", "Isolated") || json_is_true(json_object_get(it, "invert")))
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: pre_tokenizer Split: only behavior \"Isolated\" without invert is "
                        "supported",
                        what);
    if (p->pretok != CCE_PRETOK_NONE || p->bl_pre)
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: pre_tokenizer Split must come first and only once, before ByteLevel",
                        what);
    p->pretok = found;
    p->split_seen = 1;
    return CCE_OK;
}

/* A ByteLevel pre-tokenizer. */
static cce_status read_bytelevel_pre(const char *what, json_t *it, pipeline *p) {
    if (p->bl_pre) return cce_fail(CCE_ERR_FORMAT, "%s: two ByteLevel pre-tokenizers", what);
    p->bl_pre = 1;
    json_t *aps = json_object_get(it, "add_prefix_space"), *re = json_object_get(it, "use_regex");
    p->add_prefix_space = !json_is_false(aps); /* the library's default is true */
    if (!json_is_false(re)) {
        if (p->split_seen)
            return cce_fail(CCE_ERR_FORMAT,
                            "%s: pre_tokenizer ByteLevel with use_regex after a Split would split "
                            "twice: not supported",
                            what);
        p->pretok = CCE_PRETOK_GPT2;
    }
    return CCE_OK;
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
                p->prefix++, p->prepend = 1, p->sp_parts++;
            else if (t && !strcmp(t, "Replace") && replace_is(it, " ", SP))
                p->spaces = 1, p->sp_parts++;
            else if (t && !strcmp(t, "NFC"))
                p->nfc = 1;
            else
                return cce_fail(CCE_ERR_FORMAT,
                                "%s: normalizer '%s' is not supported (only Prepend \"\\u2581\", "
                                "Replace \" \" -> \"\\u2581\" and NFC)",
                                what, t ? t : "(no type)");
        }
    }
    json_t *pre = json_object_get(root, "pre_tokenizer");
    if (pre && !json_is_null(pre)) {
        size_t n = items(pre, "pretokenizers", &list);
        for (size_t i = 0; i < n; i++) {
            json_t *it = item(pre, list, i);
            const char *t = type_of(it);
            cce_status s = CCE_OK;
            if (t && !strcmp(t, "ByteLevel"))
                s = read_bytelevel_pre(what, it, p);
            else if (t && !strcmp(t, "Split"))
                s = read_split(what, it, p);
            else if (!t || strcmp(t, "Metaspace") != 0)
                s = cce_fail(CCE_ERR_FORMAT,
                             "%s: pre_tokenizer '%s' is not supported (only Metaspace, "
                             "ByteLevel, and Split with a known pattern)",
                             what, t ? t : "(no type)");
            else if (!str_is(it, "replacement", SP))
                s = cce_fail(CCE_ERR_FORMAT,
                             "%s: pre_tokenizer Metaspace: replacement must be \"\\u2581\"", what);
            if (s) return s;
            if (strcmp(t, "Metaspace") != 0) continue;
            const char *scheme = json_string_value(json_object_get(it, "prepend_scheme"));
            json_t *aps = json_object_get(it, "add_prefix_space");
            if (scheme ? strcmp(scheme, "never") != 0 : !json_is_false(aps)) p->prefix++;
            if (scheme && !strcmp(scheme, "first")) p->prefix_first = 1;
            p->spaces = 1;
            p->sp_parts++;
            if (!json_is_false(json_object_get(it, "split"))) p->split = 1;
        }
    }
    json_t *dec = json_object_get(root, "decoder");
    if (dec && !json_is_null(dec)) {
        size_t n = items(dec, "decoders", &list);
        for (size_t i = 0; i < n; i++) {
            json_t *it = item(dec, list, i);
            const char *t = type_of(it);
            if (t && !strcmp(t, "ByteLevel")) {
                p->bl_dec = 1;
                continue;
            }
            if (t &&
                (!strcmp(t, "ByteFallback") || !strcmp(t, "Fuse") || !strcmp(t, "Strip") ||
                 !strcmp(t, "Metaspace") || (!strcmp(t, "Replace") && replace_is(it, SP, " ")))) {
                p->sp_parts++;
                continue;
            }
            return cce_fail(CCE_ERR_FORMAT,
                            "%s: decoder '%s' is not supported (only ByteLevel, or Replace "
                            "\"\\u2581\" -> \" \", ByteFallback, Fuse, Strip, Metaspace)",
                            what, t ? t : "(no type)");
        }
    }
    if (p->bl_pre || p->bl_dec || p->split_seen) {
        if (p->sp_parts)
            return cce_fail(CCE_ERR_FORMAT,
                            "%s: mixes ByteLevel parts with SentencePiece-style ones (\"\\u2581\" "
                            "normalizer, Metaspace, ByteFallback/Fuse/Strip decoders): not "
                            "supported",
                            what);
        if (!p->bl_pre)
            return cce_fail(CCE_ERR_FORMAT,
                            "%s: %s without a ByteLevel pre-tokenizer: not supported", what,
                            p->split_seen ? "a Split pre-tokenizer" : "a ByteLevel decoder");
        if (!p->bl_dec)
            return cce_fail(CCE_ERR_FORMAT,
                            "%s: a ByteLevel pre-tokenizer needs the ByteLevel decoder", what);
        return CCE_OK;
    }
    if (!p->spaces)
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: spaces are not mapped to \"\\u2581\" (no Replace normalizer or "
                        "Metaspace pre-tokenizer) and there is no ByteLevel pre-tokenizer: not "
                        "supported",
                        what);
    if (p->prefix != 1)
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: the text gets %d dummy-prefix \"\\u2581\" (Prepend normalizer or "
                        "Metaspace prepend); the project's tokenizer always adds exactly one",
                        what, p->prefix);
    return CCE_OK;
}

static cce_status read_model_options(const char *what, json_t *model, int bytelevel,
                                     uint32_t *flags) {
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
    json_t *fb = json_object_get(model, "byte_fallback");
    if (bytelevel) {
        if (!unset(fb))
            return cce_fail(CCE_ERR_FORMAT,
                            "%s: model.byte_fallback with a ByteLevel pre-tokenizer makes no "
                            "sense (every byte is already a character of the alphabet)",
                            what);
        if (json_is_true(json_object_get(model, "ignore_merges"))) *flags |= CCE_TOK_IGNORE_MERGES;
        if (json_is_true(json_object_get(model, "fuse_unk"))) *flags |= CCE_TOK_FUSE_UNK;
    } else {
        if (!json_is_true(fb))
            return cce_fail(CCE_ERR_FORMAT,
                            "%s: model.byte_fallback is not true: only byte-fallback BPE "
                            "(Llama style) is supported without a ByteLevel pre-tokenizer",
                            what);
        if (!unset(json_object_get(model, "ignore_merges")))
            return cce_fail(
                CCE_ERR_FORMAT,
                "%s: model.ignore_merges is set: not supported with SentencePiece-style "
                "BPE",
                what);
    }
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

static cce_status read_vocab(const char *what, json_t *root, json_t *model, hf_vocab *v,
                             json_int_t min_tokens) {
    json_t *vocab = json_object_get(model, "vocab"), *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added) && !json_is_array(added))
        return cce_fail(CCE_ERR_FORMAT, "%s: added_tokens is not an array", what);
    json_int_t n = 0, id;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!id_of(val, &id))
            return cce_fail(CCE_ERR_FORMAT, "%s: vocab '%s': id is not an integer in [0, %d)", what,
                            hf_show(key), MAX_IDS);
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
    if (n < min_tokens)
        return cce_fail(CCE_ERR_FORMAT, "%s: %lld tokens (needs at least %lld%s)", what,
                        (long long)n, (long long)min_tokens,
                        min_tokens == 3 ? ": <unk> <s> </s>" : "");
    v->n = (int32_t)n;
    v->orig = calloc((size_t)n, sizeof *v->orig);
    v->rank = malloc((size_t)n * sizeof *v->rank);
    if (!v->orig || !v->rank) return cce_fail(CCE_ERR_NOMEM, "%s: %lld tokens", what, (long long)n);
    for (json_int_t k = 0; k < n; k++) v->rank[k] = NO_RANK;
    json_object_foreach(vocab, key, val) {
        id = json_integer_value(val);
        if (v->orig[id])
            return cce_fail(CCE_ERR_FORMAT, "%s: vocab '%s' and '%s' share id %lld", what,
                            hf_show(v->orig[id]), hf_show(key), (long long)id);
        v->orig[id] = key;
    }
    json_array_foreach(added, i, val) {
        id = json_integer_value(json_object_get(val, "id"));
        const char *content = json_string_value(json_object_get(val, "content"));
        if (v->orig[id] && strcmp(v->orig[id], content) != 0)
            return cce_fail(CCE_ERR_FORMAT, "%s: added token '%s' has id %lld, which is '%s'", what,
                            hf_show(content), (long long)id, hf_show(v->orig[id]));
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

int32_t hf_lookup(json_t *vocab, const char *text, size_t len) {
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
                            what, rank, hf_show(s));
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

/* One merge of the JSON: its parts (pointers into the JSON), their vocab ids and the id of their
 * concatenation. */
typedef struct hf_merge {
    const char *l, *r;
    size_t ll, rl;
    int32_t lid, rid, out;
} hf_merge;

/* Resolves merge k of merges into *mg. *buf (capacity *cap) is the caller's scratch buffer, grown
 * here with realloc; the caller frees it. CCE_ERR_FORMAT when a part or the concatenation is not
 * in vocab. */
static cce_status resolve_merge(const char *what, json_t *vocab, json_t *merges, size_t k,
                                char **buf, size_t *cap, hf_merge *mg) {
    mg->l = mg->r = "";
    mg->ll = mg->rl = 0;
    cce_status s =
        merge_parts(what, json_array_get(merges, k), k, &mg->l, &mg->ll, &mg->r, &mg->rl);
    if (s) return s;
    const char *l = mg->l, *r = mg->r;
    size_t ll = mg->ll, rl = mg->rl;
    mg->lid = hf_lookup(vocab, l, ll);
    mg->rid = hf_lookup(vocab, r, rl);
    if (mg->lid < 0 || mg->rid < 0)
        return cce_fail(CCE_ERR_FORMAT, "%s: merge %zu ('%.*s' '%.*s') names unknown token '%.*s'",
                        what, k, (int)ll, l, (int)rl, r, (int)(mg->lid < 0 ? ll : rl),
                        mg->lid < 0 ? l : r);
    if (ll + rl + 1 > *cap) {
        size_t ncap = 2 * (ll + rl + 1);
        char *nb = realloc(*buf, ncap);
        if (!nb) return cce_fail(CCE_ERR_NOMEM, "%s: merge %zu", what, k);
        *buf = nb;
        *cap = ncap;
    }
    memcpy(*buf, l, ll);
    memcpy(*buf + ll, r, rl);
    mg->out = hf_lookup(vocab, *buf, ll + rl);
    if (mg->out < 0)
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: merge %zu ('%.*s' '%.*s') makes '%.*s', which is not in the vocab",
                        what, k, (int)ll, l, (int)rl, r, (int)(ll + rl), *buf);
    return CCE_OK;
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
        hf_merge mg;
        if ((s = resolve_merge(what, vocab, merges, k, &buf, &cap, &mg))) break;
        const char *l = mg.l, *r = mg.r;
        size_t ll = mg.ll, rl = mg.rl;
        int32_t lid = mg.lid, rid = mg.rid, out = mg.out;
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
                         what, hf_show(v->orig[out]), v->rank[out], k);
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
    return v->rank[id] != NO_RANK || hf_one_char(p, len) ||
           (len == 6 && !strncmp(p, "<0x", 3) && p[5] == '>');
}

/* Every split of a merge result into two formable pieces must itself be a merge, since the
 * project's tokenizer would merge it. */
static cce_status check_splits(const char *what, json_t *vocab, const hf_vocab *v) {
    for (int32_t id = 0; id < v->n; id++) {
        if (v->rank[id] == NO_RANK) continue;
        const char *p = v->orig[id];
        size_t len = strlen(p);
        for (size_t k = hf_char_len((unsigned char)p[0]); k < len;
             k += hf_char_len((unsigned char)p[k])) {
            int32_t l = hf_lookup(vocab, p, k), r = hf_lookup(vocab, p + k, len - k);
            if (l < 0 || r < 0 || !formable(v, l) || !formable(v, r)) continue;
            uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
            if (!bsearch(&key, v->pairs, v->n_pairs, sizeof key, cmp_u64))
                return cce_fail(
                    CCE_ERR_FORMAT,
                    "%s: '%s' splits into '%s' + '%s', both formable, but that merge is "
                    "not in the list: the project's tokenizer merges by piece score "
                    "and cannot represent this merge list (not supported yet)",
                    what, hf_show(p), hf_show(v->orig[l]), hf_show(v->orig[r]));
        }
    }
    return CCE_OK;
}

static cce_status check_bytes(const char *what, json_t *vocab) {
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        if (hf_lookup(vocab, name, 6) < 0)
            return cce_fail(CCE_ERR_FORMAT,
                            "%s: byte_fallback needs the 256 pieces <0x00>..<0xFF>; %s is missing",
                            what, name);
    }
    return CCE_OK;
}

/* Special token `key` of obj (a string or {"content": ...}): *present = 0 if the key is absent;
 * *id = -1 for null, else the token's id (which must exist). */
static cce_status find_special(const char *what, json_t *obj, const char *key, json_t *vocab,
                               const hf_vocab *v, int *present, int32_t *id) {
    json_t *j = json_object_get(obj, key);
    *present = j != NULL;
    *id = -1;
    if (json_is_object(j)) j = json_object_get(j, "content");
    if (!j || json_is_null(j)) return CCE_OK;
    if (!json_is_string(j)) return cce_fail(CCE_ERR_FORMAT, "%s: %s is not a string", what, key);
    const char *c = json_string_value(j);
    *id = hf_lookup(vocab, c, json_string_length(j));
    for (int32_t k = 0; *id < 0 && k < v->n; k++)
        if (!strcmp(v->orig[k], c)) *id = k;
    if (*id < 0)
        return cce_fail(CCE_ERR_FORMAT, "%s: %s '%s' is not a token", what, key, hf_show(c));
    return CCE_OK;
}

/* The id of the token with text c, or -1. */
static int32_t token_id(json_t *vocab, const hf_vocab *v, const char *c) {
    int32_t id = hf_lookup(vocab, c, strlen(c));
    for (int32_t k = 0; id < 0 && k < v->n; k++)
        if (!strcmp(v->orig[k], c)) id = k;
    return id;
}

/* The special ids: model.unk_token; bos/eos/pad from tokenizer_config.json (cfg may be NULL).
 * Without a config entry, SentencePiece tokenizers take the llama2.c ids 1/2 and ByteLevel ones
 * <|endoftext|> if it is a token (GPT2Tokenizer's default). */
static cce_status read_specials(const char *what, json_t *model, json_t *cfg, json_t *vocab,
                                const hf_vocab *v, int bytelevel, cce_tokenizer_spec *sp) {
    int present;
    int32_t id;
    cce_status s = find_special(what, model, "unk_token", vocab, v, &present, &sp->unk_id);
    int32_t endoftext = bytelevel ? token_id(vocab, v, "<|endoftext|>") : -1;
    sp->bos_id = bytelevel ? endoftext : 1;
    sp->eos_id = bytelevel ? endoftext : 2;
    sp->pad_id = -1;
    if (s || !cfg) return s;
    char cwhat[600];
    snprintf(cwhat, sizeof cwhat, "%s (tokenizer_config.json)", what);
    if ((s = find_special(cwhat, cfg, "bos_token", vocab, v, &present, &id))) return s;
    if (present) sp->bos_id = id;
    if ((s = find_special(cwhat, cfg, "eos_token", vocab, v, &present, &id))) return s;
    if (present) sp->eos_id = id;
    if ((s = find_special(cwhat, cfg, "pad_token", vocab, v, &present, &id))) return s;
    if (present) sp->pad_id = id;
    /* unk_token of the config is the Python-level one; the BPE model's decides encoding. A
     * SentencePiece model without one takes the config's. */
    if ((s = find_special(cwhat, cfg, "unk_token", vocab, v, &present, &id))) return s;
    if (!bytelevel && sp->unk_id < 0) sp->unk_id = id;
    if (sp->bos_id < 0 && sp->eos_id < 0)
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: no BOS and no EOS token (evaluation windows and generation start "
                        "with one)",
                        cwhat);
    return CCE_OK;
}

/* Every added token: ids [n] and CCE_ADDED_* flags [n], malloc'd (caller frees). */
static cce_status read_added(const char *what, json_t *root, int32_t n_vocab, int32_t **ids,
                             uint8_t **flags, int32_t *n) {
    json_t *added = json_object_get(root, "added_tokens"), *val;
    size_t count = json_is_array(added) ? json_array_size(added) : 0, i;
    *ids = malloc((count ? count : 1) * sizeof **ids);
    *flags = malloc(count ? count : 1);
    uint8_t *seen = calloc((size_t)n_vocab, 1); /* [n_vocab] */
    cce_status s = *ids && *flags && seen ? CCE_OK : cce_fail(CCE_ERR_NOMEM, "%s: added", what);
    *n = 0;
    json_array_foreach(added, i, val) {
        if (s) break;
        json_int_t id = json_integer_value(json_object_get(val, "id"));
        if (seen[id]) {
            s = cce_fail(CCE_ERR_FORMAT, "%s: added_tokens[%zu] repeats id %lld", what, i,
                         (long long)id);
            break;
        }
        seen[id] = 1;
        if (json_is_true(json_object_get(val, "single_word"))) {
            s = cce_fail(CCE_ERR_FORMAT,
                         "%s: added_tokens[%zu] ('%s'): single_word is not supported", what, i,
                         hf_show(json_string_value(json_object_get(val, "content"))));
            break;
        }
        uint8_t f = 0;
        if (json_is_true(json_object_get(val, "special"))) f |= CCE_ADDED_SPECIAL;
        if (json_is_true(json_object_get(val, "lstrip"))) f |= CCE_ADDED_LSTRIP;
        if (json_is_true(json_object_get(val, "rstrip"))) f |= CCE_ADDED_RSTRIP;
        if (json_is_true(json_object_get(val, "normalized"))) f |= CCE_ADDED_NORMALIZED;
        if (json_string_length(json_object_get(val, "content")) == 0) {
            s = cce_fail(CCE_ERR_FORMAT, "%s: added_tokens[%zu] is empty", what, i);
            break;
        }
        (*ids)[*n] = (int32_t)id;
        (*flags)[(*n)++] = f;
    }
    free(seen);
    return s;
}

/* ByteLevel merges as piece-id pairs [n, 2] in rank order (malloc'd, caller frees). */
static cce_status read_bl_merges(const char *what, json_t *model, int32_t **out, int32_t *n_out) {
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    size_t n = json_array_size(merges);
    if (n > MAX_MERGES)
        return cce_fail(CCE_ERR_FORMAT, "%s: %zu merges (at most %d)", what, n, MAX_MERGES);
    int32_t *m = malloc((n ? n : 1) * 2 * sizeof *m); /* [n, 2] */
    char *buf = NULL;
    size_t cap = 0;
    if (!m) return cce_fail(CCE_ERR_NOMEM, "%s: %zu merges", what, n);
    cce_status s = CCE_OK;
    for (size_t k = 0; k < n && !s; k++) {
        hf_merge mg;
        if ((s = resolve_merge(what, vocab, merges, k, &buf, &cap, &mg))) break;
        m[2 * k] = mg.lid;
        m[2 * k + 1] = mg.rid;
    }
    free(buf);
    if (s) {
        free(m);
        return s;
    }
    *out = m;
    *n_out = (int32_t)n;
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
    char **pieces = NULL;    /* [v.n] SentencePiece: " " form */
    float *scores = NULL;    /* [v.n] SentencePiece */
    int32_t *merges = NULL;  /* [n_merges, 2] ByteLevel */
    int32_t *added = NULL;   /* [n_added] */
    uint8_t *added_f = NULL; /* [n_added] */
    cce_tokenizer_spec sp = {0};
    pipeline p;
    cce_status s = parse_json(what, json, json_len, &root);
    if (!s && config) {
        char cwhat[600];
        snprintf(cwhat, sizeof cwhat, "%s (tokenizer_config.json)", what);
        s = parse_json(cwhat, config, config_len, &cfg);
    }
    json_t *model = json_object_get(root, "model");
    if (!s) s = read_pipeline(what, root, &p);
    int bl = !s && p.bl_pre;
    if (!s) s = read_model_options(what, model, bl, &sp.flags);
    json_t *vocab = json_object_get(model, "vocab");
    if (!s) s = read_vocab(what, root, model, &v, bl ? 1 : 3);
    if (!s && vocab_size > 0 && v.n > vocab_size)
        s = cce_fail(CCE_ERR_FORMAT,
                     "%s: %d tokens, but the model's vocab_size is %d (fewer tokens are padded, "
                     "more cannot be)",
                     what, (int)v.n, (int)vocab_size);
    if (!s) s = read_added(what, root, v.n, &added, &added_f, &sp.n_added);
    if (!s && !bl) {
        if (!s) s = check_bytes(what, vocab);
        if (!s) s = read_merges(what, model, p.split, &v);
        if (!s) s = check_splits(what, vocab, &v);
        /* read_vocab keeps the count in range; checked again where it sizes the arrays */
        if (!s && (v.n < 1 || v.n > MAX_IDS))
            s = cce_fail(CCE_ERR_FORMAT, "%s: %d tokens (must be in [1, %d])", what, (int)v.n,
                         MAX_IDS);
        if (!s) {
            pieces = calloc((size_t)v.n, sizeof *pieces);
            scores = malloc((size_t)v.n * sizeof *scores);
            if (!pieces || !scores) s = cce_fail(CCE_ERR_NOMEM, "%s: %d pieces", what, (int)v.n);
        }
        for (int32_t id = 0; id < v.n && !s; id++) {
            pieces[id] = hf_replace_all(v.orig[id], strlen(v.orig[id]), SP, SP_LEN, " ", 1, NULL);
            if (!pieces[id]) s = cce_fail(CCE_ERR_NOMEM, "%s: piece %d", what, (int)id);
            scores[id] = v.rank[id] == NO_RANK ? NO_MERGE : -(float)v.rank[id];
        }
        sp.kind = CCE_TOKENIZER_SENTENCEPIECE;
        sp.pieces = (const char *const *)pieces;
        sp.scores = scores;
        if (p.prefix_first) sp.flags |= CCE_TOK_PREFIX_FIRST;
        if (!p.prepend) sp.flags |= CCE_TOK_METASPACE;
    } else if (!s) {
        s = read_bl_merges(what, model, &merges, &sp.n_merges);
        sp.kind = CCE_TOKENIZER_BYTELEVEL;
        sp.pieces = v.orig;
        sp.merges = merges;
        sp.pretok = p.pretok;
        if (p.add_prefix_space) sp.flags |= CCE_TOK_ADD_PREFIX_SPACE;
    }
    if (!s && p.nfc) sp.flags |= CCE_TOK_NFC;
    if (!s) s = read_specials(what, model, cfg, vocab, &v, bl, &sp);
    if (!s) {
        sp.vocab_size = v.n;
        sp.added_ids = added;
        sp.added_flags = added_f;
        s = cce_tokenizer_new_spec(&sp, out);
        if (!s && vocab_size > v.n) { /* a padded embedding (Qwen2): unreachable padding ids */
            cce_tokenizer *padded = NULL;
            s = cce_tokenizer_pad_to(*out, vocab_size, &padded);
            cce_tokenizer_free(*out);
            *out = padded;
        }
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
    free(merges);
    free(added);
    free(added_f);
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
