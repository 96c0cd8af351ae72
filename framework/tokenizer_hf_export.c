/* tokenizer.json + tokenizer_config.json out of the project's tokenizers (see tokenizer_hf.h).
 *
 * SentencePiece kind: vocab with " " written as "▁", merges derived as SentencePiece BPE
 * conversions do, the Prepend/Replace normalizer (or a Metaspace pre-tokenizer, prepend_scheme
 * "always" or "first", when the prefix came from one), the Replace/ByteFallback/Fuse/Strip
 * decoder. ByteLevel kind: the vocab as stored, the merges in rank order, the ByteLevel
 * pre-tokenizer (use_regex for GPT-2's pattern, else a Split with the known pattern first), the
 * ByteLevel decoder. Both: the added tokens with their flags, the special tokens named in
 * tokenizer_config.json; padding pieces (cce_tokenizer_pad_to) are not written. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokenizer_hf.h"
#include "tokenizer_hf_internal.h"
#include "tokenizer_internal.h"

#define NO_MERGE -1e10f /* a score at which the project's tokenizer never merges */

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

/* Sets obj[key] = v (a new reference, taken even on failure); 1 on failure. */
static int put(json_t *obj, const char *key, json_t *v) {
    return !v || json_object_set_new(obj, key, v) != 0;
}

/* The text of piece id as tokenizer.json writes it, or JSON null for id -1. */
static json_t *piece_or_null(char *const *text, int32_t id) {
    return id >= 0 ? json_string(text[id]) : json_null();
}

/* SentencePiece merges: for each piece of more than one character scoring above -1e10, every
 * split into two vocab pieces; by score desc, piece id, left id, right id. */
static cce_status sp_merges(const cce_tokenizer *tok, char *const *text, json_t *vocab,
                            json_t *merges) {
    int32_t n = tok->vocab_size - tok->n_padding; /* padding pieces are not written */
    merge_row *rows = NULL;
    size_t n_rows = 0, cap = 0;
    cce_status s = CCE_OK;
    for (int32_t id = 0; id < n && !s; id++) {
        float score = tok->scores[id];
        const char *p = text[id];
        size_t len = strlen(p);
        if (!(score > NO_MERGE) || len == 0 || hf_one_char(p, len)) continue;
        for (size_t k = hf_char_len((unsigned char)p[0]); k < len && !s;
             k += hf_char_len((unsigned char)p[k])) {
            int32_t l = hf_lookup(vocab, p, k), r = hf_lookup(vocab, p + k, len - k);
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
        if (json_array_append_new(merges, json_pack("[ss]", text[rows[k].l], text[rows[k].r])))
            s = cce_fail(CCE_ERR_NOMEM, "tokenizer.json: merge %zu", k);
    free(rows);
    return s;
}

static json_t *added_token(const char *content, int32_t id, unsigned flags) {
    return json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", (int)id, "content", content,
                     "single_word", 0, "lstrip", (flags & CCE_ADDED_LSTRIP) != 0, "rstrip",
                     (flags & CCE_ADDED_RSTRIP) != 0, "normalized",
                     (flags & CCE_ADDED_NORMALIZED) != 0, "special",
                     (flags & CCE_ADDED_SPECIAL) != 0);
}

/* The pipeline around the model: normalizer, pre_tokenizer, post_processor, decoder. */
static int put_pipeline(const cce_tokenizer *tok, char *const *text, json_t *root) {
    int err = 0, nfc = (tok->flags & CCE_TOK_NFC) != 0;
    int32_t bos = cce_tokenizer_bos(tok);
    if (tok->kind == CCE_TOKENIZER_BYTELEVEL) {
        int aps = (tok->flags & CCE_TOK_ADD_PREFIX_SPACE) != 0;
        int regex = tok->pretok == CCE_PRETOK_GPT2;
        err |= put(root, "normalizer", nfc ? json_pack("{s:s}", "type", "NFC") : json_null());
        json_t *bl = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", aps,
                               "trim_offsets", 1, "use_regex", regex);
        if (tok->pretok == CCE_PRETOK_LLAMA3 || tok->pretok == CCE_PRETOK_QWEN2)
            bl = json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, o]}", "type", "Sequence",
                           "pretokenizers", "type", "Split", "pattern", "Regex",
                           pretok_regex(tok->pretok), "behavior", "Isolated", "invert", 0, bl);
        err |= put(root, "pre_tokenizer", bl);
        if (tok->bos_id >= 0 && tok->bos_id != tok->eos_id)
            err |=
                put(root, "post_processor",
                    json_pack("{s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}], s:[{s:{s:s, s:i}}, "
                              "{s:{s:s, s:i}}, {s:{s:s, s:i}}, {s:{s:s, s:i}}], "
                              "s:{s:{s:s, s:[i], s:[s]}}}",
                              "type", "TemplateProcessing", "single", "SpecialToken", "id",
                              text[bos], "type_id", 0, "Sequence", "id", "A", "type_id", 0, "pair",
                              "SpecialToken", "id", text[bos], "type_id", 0, "Sequence", "id", "A",
                              "type_id", 0, "SpecialToken", "id", text[bos], "type_id", 1,
                              "Sequence", "id", "B", "type_id", 1, "special_tokens", text[bos],
                              "id", text[bos], "ids", (int)bos, "tokens", text[bos]));
        else
            err |= put(root, "post_processor",
                       json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1,
                                 "trim_offsets", 0, "use_regex", 1));
        err |= put(root, "decoder",
                   json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1,
                             "trim_offsets", 1, "use_regex", 1));
        return err;
    }
    json_t *norms = json_array();
    if (nfc) err |= json_array_append_new(norms, json_pack("{s:s}", "type", "NFC"));
    if (tok->flags & CCE_TOK_METASPACE) {
        err |= put(root, "pre_tokenizer",
                   json_pack("{s:s, s:s, s:s, s:b}", "type", "Metaspace", "replacement", SP,
                             "prepend_scheme",
                             tok->flags & CCE_TOK_PREFIX_FIRST ? "first" : "always", "split", 0));
    } else {
        err |=
            json_array_append_new(norms, json_pack("{s:s, s:s}", "type", "Prepend", "prepend", SP));
        err |= json_array_append_new(norms, json_pack("{s:s, s:{s:s}, s:s}", "type", "Replace",
                                                      "pattern", "String", " ", "content", SP));
        err |= put(root, "pre_tokenizer", json_null());
    }
    err |= put(root, "normalizer",
               json_array_size(norms)
                   ? json_pack("{s:s, s:o}", "type", "Sequence", "normalizers", norms)
                   : (json_decref(norms), json_null()));
    err |= put(root, "post_processor",
               json_pack("{s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}], s:[{s:{s:s, s:i}}, "
                         "{s:{s:s, s:i}}, {s:{s:s, s:i}}, {s:{s:s, s:i}}], s:{s:{s:s, s:[i], "
                         "s:[s]}}}",
                         "type", "TemplateProcessing", "single", "SpecialToken", "id", text[bos],
                         "type_id", 0, "Sequence", "id", "A", "type_id", 0, "pair", "SpecialToken",
                         "id", text[bos], "type_id", 0, "Sequence", "id", "A", "type_id", 0,
                         "SpecialToken", "id", text[bos], "type_id", 1, "Sequence", "id", "B",
                         "type_id", 1, "special_tokens", text[bos], "id", text[bos], "ids",
                         (int)bos, "tokens", text[bos]));
    err |= put(root, "decoder",
               json_pack("{s:s, s:[{s:s, s:{s:s}, s:s}, {s:s}, {s:s}, {s:s, s:s, s:i, s:i}]}",
                         "type", "Sequence", "decoders", "type", "Replace", "pattern", "String", SP,
                         "content", " ", "type", "ByteFallback", "type", "Fuse", "type", "Strip",
                         "content", " ", "start", 1, "stop", 0));
    return err;
}

/* The pieces as tokenizer.json writes them ([n] malloc'd strings in *text, caller frees) and the
 * vocab object; padding pieces (cce_tokenizer_pad_to) are left out of both, so that a padded
 * tokenizer writes the tokenizer.json it came from. */
static cce_status vocab_text(const cce_tokenizer *tok, char ***text_out, json_t *vocab) {
    int32_t n = tok->vocab_size;
    int sp_kind = tok->kind == CCE_TOKENIZER_SENTENCEPIECE;
    char **text = calloc((size_t)n, sizeof *text); /* [n], NULL for padding pieces */
    if (!text) return cce_fail(CCE_ERR_NOMEM, "tokenizer.json: %d pieces", (int)n);
    *text_out = text;
    for (int32_t id = 0; id < n - tok->n_padding; id++) {
        const char *p = tok->pieces[id];
        if (sp_kind && strstr(p, SP))
            return cce_fail(CCE_ERR_FORMAT,
                            "tokenizer piece %d '%s' contains \"\\u2581\", which tokenizer.json "
                            "uses for a space",
                            (int)id, hf_show(p));
        text[id] = sp_kind ? hf_replace_all(p, strlen(p), " ", 1, SP, SP_LEN, NULL) : strdup(p);
        if (!text[id]) return cce_fail(CCE_ERR_NOMEM, "tokenizer piece %d", (int)id);
        if (json_object_get(vocab, text[id]))
            return cce_fail(CCE_ERR_FORMAT, "tokenizer piece %d '%s' appears twice", (int)id,
                            hf_show(p));
        if (json_object_set_new(vocab, text[id], json_integer(id)) != 0)
            return cce_fail(CCE_ERR_FORMAT, "tokenizer piece %d '%s' is not valid UTF-8", (int)id,
                            hf_show(p));
    }
    return CCE_OK;
}

/* tokenizer.json as a JSON tree (*out: new reference, caller decrefs); *text receives the pieces
 * as written ([vocab_size], caller frees each and the array). */
static cce_status build_json(const cce_tokenizer *tok, json_t **out, char ***text_out) {
    int32_t n = tok->vocab_size;
    json_t *vocab = json_object(), *merges = json_array(), *added = json_array();
    json_t *root = json_object(), *model = json_object();
    char **text = NULL;
    cce_status s = vocab && merges && added && root && model
                       ? CCE_OK
                       : cce_fail(CCE_ERR_NOMEM, "tokenizer.json");
    if (!s) s = vocab_text(tok, &text, vocab);
    int bl = tok->kind == CCE_TOKENIZER_BYTELEVEL;
    if (!s && bl) {
        for (int32_t k = 0; k < tok->n_merges && !s; k++)
            if (json_array_append_new(merges, json_pack("[ss]", text[tok->merges[2 * k]],
                                                        text[tok->merges[2 * k + 1]])))
                s = cce_fail(CCE_ERR_NOMEM, "tokenizer.json: merge %d", (int)k);
    } else if (!s) {
        s = sp_merges(tok, text, vocab, merges);
    }
    /* llama2.c (padded or not): 0-2 special */
    if (!s && tok->n_added == 0 && tok->kind == CCE_TOKENIZER_SENTENCEPIECE && tok->bos_id == 1 &&
        tok->eos_id == 2 && tok->unk_id == 0 && tok->pad_id == -1 && tok->flags == 0) {
        for (int32_t id = 0; id < 3 && !s; id++)
            if (json_array_append_new(added, added_token(text[id], id, CCE_ADDED_SPECIAL)))
                s = cce_fail(CCE_ERR_NOMEM, "tokenizer.json: added_tokens");
    }
    for (int32_t k = 0; k < tok->n_added && !s; k++)
        if (json_array_append_new(added, added_token(text[tok->added_ids[k]], tok->added_ids[k],
                                                     tok->added_flags[k])))
            s = cce_fail(CCE_ERR_NOMEM, "tokenizer.json: added_tokens");
    if (!s) {
        int err = put(root, "version", json_string("1.0")) ||
                  put(root, "truncation", json_null()) || put(root, "padding", json_null()) ||
                  put(root, "added_tokens", json_incref(added)) || put_pipeline(tok, text, root);
        err =
            err || put(model, "type", json_string("BPE")) || put(model, "dropout", json_null()) ||
            put(model, "unk_token", piece_or_null(text, tok->unk_id)) ||
            put(model, "continuing_subword_prefix", json_null()) ||
            put(model, "end_of_word_suffix", json_null()) ||
            put(model, "fuse_unk", json_boolean(bl ? (tok->flags & CCE_TOK_FUSE_UNK) != 0 : 1)) ||
            put(model, "byte_fallback", json_boolean(!bl)) ||
            put(model, "ignore_merges", json_boolean((tok->flags & CCE_TOK_IGNORE_MERGES) != 0)) ||
            put(model, "vocab", json_incref(vocab)) || put(model, "merges", json_incref(merges)) ||
            put(root, "model", json_incref(model));
        if (err) s = cce_fail(CCE_ERR_NOMEM, "tokenizer.json");
    }
    json_decref(vocab);
    json_decref(merges);
    json_decref(added);
    json_decref(model);
    if (s) {
        json_decref(root);
        root = NULL;
    }
    if (text_out && !s) {
        *text_out = text;
    } else if (text) {
        for (int32_t id = 0; id < n; id++) free(text[id]);
        free(text);
    }
    *out = root;
    return s;
}

cce_status cce_tokenizer_hf_json(const cce_tokenizer *tok, char **json) {
    if (!tok || !json) return cce_fail(CCE_ERR_ARG, "cce_tokenizer_hf_json: NULL argument");
    json_t *root = NULL;
    cce_status s = build_json(tok, &root, NULL);
    if (s) return s;
    *json = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return *json ? CCE_OK : cce_fail(CCE_ERR_NOMEM, "tokenizer.json text");
}

cce_status hf_write_text(const char *dir, const char *name, const char *text) {
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
    json_t *root = NULL;
    char **text = NULL; /* [vocab_size] pieces as written */
    cce_status s = build_json(tok, &root, &text);
    if (s) {
        cce_error_prefix("%s/tokenizer.json: ", dir);
        return s;
    }
    int bl = tok->kind == CCE_TOKENIZER_BYTELEVEL;
    json_t *cfg =
        json_pack("{s:b, s:b, s:o, s:o, s:o, s:o, s:b, s:b, s:s}", "add_bos_token", !bl,
                  "add_eos_token", 0, "bos_token", piece_or_null(text, tok->bos_id), "eos_token",
                  piece_or_null(text, tok->eos_id), "unk_token", piece_or_null(text, tok->unk_id),
                  "pad_token", piece_or_null(text, tok->pad_id), "legacy", !bl,
                  "clean_up_tokenization_spaces", 0, "tokenizer_class",
                  bl ? "PreTrainedTokenizerFast" : "LlamaTokenizer");
    char *json = json_dumps(root, JSON_COMPACT);
    char *cfg_text = cfg ? json_dumps(cfg, JSON_INDENT(2)) : NULL;
    if (!json || !cfg_text) s = cce_fail(CCE_ERR_NOMEM, "%s/tokenizer_config.json", dir);
    if (!s) s = hf_write_text(dir, "tokenizer.json", json);
    if (!s) s = hf_write_text(dir, "tokenizer_config.json", cfg_text);
    free(cfg_text);
    free(json);
    json_decref(cfg);
    json_decref(root);
    for (int32_t id = 0; id < tok->vocab_size; id++) free(text[id]);
    free(text);
    return s;
}
