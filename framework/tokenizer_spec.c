/* Tokenizers built from a full spec (either kind, special ids anywhere, added tokens, ranked
 * merges), the added-token matcher, and the extended fingerprint. A spec that is exactly a
 * llama2.c tokenizer gives the same tokenizer, fingerprint included, as cce_tokenizer_new. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

void tok_free_extra(cce_tokenizer *t) {
    free(t->added_ids);
    free(t->added_flags);
    free(t->added_order);
    free(t->merges);
    free(t->merge_keys);
    free(t->merge_rank);
    free(t->merge_out);
    free(t->decoded);
    free(t->decoded_off);
}

int cce_tokenizer_is_llama2c(const cce_tokenizer *t) {
    return t->kind == CCE_TOKENIZER_SENTENCEPIECE && t->bos_id == 1 && t->eos_id == 2 &&
           t->unk_id == 0 && t->pad_id == -1 && t->n_added == 0 && t->n_merges == 0 &&
           t->flags == 0 && t->n_padding == 0;
}

cce_status cce_tokenizer_check_llama2c(const cce_tokenizer *t) {
    if (t->kind != CCE_TOKENIZER_SENTENCEPIECE)
        return cce_fail(CCE_ERR_ARG,
                        "a ByteLevel (GPT-2 style) tokenizer cannot be written as a llama2.c "
                        "tokenizer.bin: that format has no byte-to-unicode alphabet, "
                        "pre-tokenizer or ranked merges");
    if (t->bos_id != 1 || t->eos_id != 2 || t->unk_id != 0)
        return cce_fail(CCE_ERR_ARG,
                        "the tokenizer's <unk>/BOS/EOS are at ids %d/%d/%d; a llama2.c "
                        "tokenizer.bin implies 0/1/2",
                        (int)t->unk_id, (int)t->bos_id, (int)t->eos_id);
    return CCE_OK;
}

void cce_tokenizer_get_spec(const cce_tokenizer *t, cce_tokenizer_spec *sp) {
    *sp = (cce_tokenizer_spec){
        .kind = t->kind,
        .vocab_size = t->vocab_size,
        .pieces = (const char *const *)t->pieces,
        .scores = t->scores,
        .n_merges = t->n_merges,
        .merges = t->merges,
        .bos_id = t->bos_id,
        .eos_id = t->eos_id,
        .unk_id = t->unk_id,
        .pad_id = t->pad_id,
        .n_added = t->n_added,
        .added_ids = t->added_ids,
        .added_flags = t->added_flags,
        .pretok = t->pretok,
        .flags = t->flags,
        .n_padding = t->n_padding,
    };
}

/* ---- added tokens -----------------------------------------------------------------------------
 */

/* An added token's place in the matcher: by first byte, then longest first, then index. */
typedef struct added_key {
    unsigned first;
    uint32_t len;
    int32_t index;
} added_key;

static int added_cmp(const void *a, const void *b) {
    const added_key *x = a, *y = b;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

cce_status tok_setup_added(cce_tokenizer *t) {
    int32_t n = t->n_added;
    for (int b = 0; b <= 256; b++) t->added_first[b] = 0;
    if (n <= 0) return CCE_OK;
    int32_t *sorted = malloc((size_t)n * sizeof *sorted); /* [n] ids, for the duplicate check */
    t->added_order = malloc((size_t)n * sizeof *t->added_order);
    if (!sorted || !t->added_order) {
        free(sorted);
        return cce_fail(CCE_ERR_NOMEM, "tokenizer: %d added tokens", (int)n);
    }
    int strip = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t id = t->added_ids[i];
        if (id < 0 || id >= t->vocab_size - t->n_padding) {
            free(sorted);
            return cce_fail(CCE_ERR_ARG, "tokenizer added token %d: id %d outside [0, %d)%s",
                            (int)i, (int)id, (int)(t->vocab_size - t->n_padding),
                            t->n_padding && id < t->vocab_size ? " (a padding id)" : "");
        }
        if (t->piece_len[id] == 0) {
            free(sorted);
            return cce_fail(CCE_ERR_ARG, "tokenizer added token %d (id %d) is empty", (int)i,
                            (int)id);
        }
        if (t->added_flags[i] & ~CCE_ADDED_FLAGS_ALL) {
            free(sorted);
            return cce_fail(CCE_ERR_ARG, "tokenizer added token %d: unknown flags 0x%x", (int)i,
                            (unsigned)t->added_flags[i]);
        }
        strip |= t->added_flags[i] & (CCE_ADDED_LSTRIP | CCE_ADDED_RSTRIP);
        sorted[i] = id;
    }
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_i32);
    for (int32_t i = 1; i < n; i++)
        if (sorted[i] == sorted[i - 1]) {
            int32_t id = sorted[i];
            free(sorted);
            return cce_fail(CCE_ERR_ARG, "tokenizer: id %d is listed twice among the added tokens",
                            (int)id);
        }
    free(sorted);
    added_key *keys = malloc((size_t)n * sizeof *keys); /* [n] */
    if (!keys) return cce_fail(CCE_ERR_NOMEM, "tokenizer: %d added tokens", (int)n);
    for (int32_t i = 0; i < n; i++) {
        int32_t id = t->added_ids[i];
        keys[i] = (added_key){(unsigned char)t->pieces[id][0], t->piece_len[id], i};
    }
    qsort(keys, (size_t)n, sizeof *keys, added_cmp);
    for (int32_t i = 0; i < n; i++) t->added_order[i] = keys[i].index;
    free(keys);
    int32_t count[257] = {0};
    for (int32_t i = 0; i < n; i++)
        count[(unsigned char)t->pieces[t->added_ids[t->added_order[i]]][0] + 1]++;
    for (int b = 1; b <= 256; b++) count[b] += count[b - 1];
    memcpy(t->added_first, count, sizeof count);
    return strip ? pretok_init() : CCE_OK;
}

/* ---- construction -----------------------------------------------------------------------------
 */

#define FNV_PRIME 1099511628211ULL

static uint64_t mix(uint64_t h, const void *data, size_t len) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* Folds everything beyond pieces and scores into the fingerprint (not for llama2.c tokenizers,
 * which keep theirs). */
static void extend_fingerprint(cce_tokenizer *t) {
    if (cce_tokenizer_is_llama2c(t)) return;
    uint64_t h = mix(t->fingerprint, "cce-tokenizer-spec", 18);
    int32_t head[8] = {(int32_t)t->kind, t->bos_id,          t->eos_id,         t->unk_id,
                       t->pad_id,        (int32_t)t->pretok, (int32_t)t->flags, t->n_merges};
    h = mix(h, head, sizeof head);
    if (t->n_merges) h = mix(h, t->merges, (size_t)t->n_merges * 2 * sizeof *t->merges);
    h = mix(h, &t->n_added, sizeof t->n_added);
    if (t->n_added) {
        h = mix(h, t->added_ids, (size_t)t->n_added * sizeof *t->added_ids);
        h = mix(h, t->added_flags, (size_t)t->n_added);
    }
    if (t->n_padding) h = mix(h, &t->n_padding, sizeof t->n_padding);
    t->fingerprint = h;
}

static cce_status check_spec(const cce_tokenizer_spec *sp) {
    if (!sp->pieces) return cce_fail(CCE_ERR_ARG, "tokenizer spec: pieces are NULL");
    if (sp->kind != CCE_TOKENIZER_SENTENCEPIECE && sp->kind != CCE_TOKENIZER_BYTELEVEL)
        return cce_fail(CCE_ERR_ARG, "tokenizer spec: unknown kind %d", (int)sp->kind);
    if ((int)sp->pretok < 0 || sp->pretok >= CCE_PRETOK_COUNT)
        return cce_fail(CCE_ERR_ARG, "tokenizer spec: unknown pre-tokenizer %d", (int)sp->pretok);
    uint32_t allowed =
        sp->kind == CCE_TOKENIZER_BYTELEVEL
            ? CCE_TOK_ADD_PREFIX_SPACE | CCE_TOK_IGNORE_MERGES | CCE_TOK_FUSE_UNK | CCE_TOK_NFC
            : CCE_TOK_PREFIX_FIRST | CCE_TOK_METASPACE | CCE_TOK_NFC;
    if (sp->flags & ~allowed)
        return cce_fail(CCE_ERR_ARG, "tokenizer spec: flags 0x%x are not valid for the %s kind",
                        (unsigned)(sp->flags & ~allowed),
                        sp->kind == CCE_TOKENIZER_BYTELEVEL ? "ByteLevel" : "SentencePiece");
    if ((sp->flags & CCE_TOK_PREFIX_FIRST) && !(sp->flags & CCE_TOK_METASPACE))
        return cce_fail(CCE_ERR_ARG, "tokenizer spec: the prefix-on-the-first-segment flag is a "
                                     "Metaspace scheme and needs the Metaspace flag");
    if (sp->n_padding < 0 || (sp->n_padding > 0 && sp->n_padding >= sp->vocab_size))
        return cce_fail(CCE_ERR_ARG,
                        "tokenizer spec: %d padding pieces of %d (at least one must "
                        "be real)",
                        (int)sp->n_padding, (int)sp->vocab_size);
    if (sp->kind == CCE_TOKENIZER_SENTENCEPIECE && (sp->pretok != CCE_PRETOK_NONE || sp->n_merges))
        return cce_fail(CCE_ERR_ARG, "tokenizer spec: a SentencePiece tokenizer merges by score: "
                                     "it takes no pre-tokenizer and no ranked merges");
    const int32_t ids[4] = {sp->bos_id, sp->eos_id, sp->unk_id, sp->pad_id};
    static const char *const names[4] = {"bos", "eos", "unk", "pad"};
    for (int k = 0; k < 4; k++)
        if (ids[k] < -1 || ids[k] >= sp->vocab_size - sp->n_padding)
            return cce_fail(CCE_ERR_ARG, "tokenizer spec: %s id %d outside [-1, %d)%s", names[k],
                            (int)ids[k], (int)(sp->vocab_size - sp->n_padding),
                            sp->n_padding && ids[k] < sp->vocab_size ? " (a padding id)" : "");
    if (sp->bos_id < 0 && sp->eos_id < 0)
        return cce_fail(CCE_ERR_ARG,
                        "tokenizer spec: no BOS and no EOS token (evaluation windows and "
                        "generation start with one)");
    if (sp->n_merges < 0 || (sp->n_merges > 0 && !sp->merges) || sp->n_added < 0 ||
        (sp->n_added > 0 && !sp->added_ids))
        return cce_fail(CCE_ERR_ARG, "tokenizer spec: bad merge or added-token arrays");
    return CCE_OK;
}

cce_status cce_tokenizer_new_spec(const cce_tokenizer_spec *sp, cce_tokenizer **out) {
    if (!sp || !out) return cce_fail(CCE_ERR_ARG, "cce_tokenizer_new_spec: NULL argument");
    cce_status s = check_spec(sp);
    if (s) return s;
    cce_tokenizer *t = NULL;
    if ((s = tok_alloc(sp->vocab_size, 1, &t))) return s;
    t->kind = sp->kind;
    t->bos_id = sp->bos_id;
    t->eos_id = sp->eos_id;
    t->unk_id = sp->unk_id;
    t->pad_id = sp->pad_id;
    t->pretok = sp->pretok;
    t->flags = sp->flags;
    t->n_padding = sp->n_padding;
    for (int32_t id = 0; id < sp->vocab_size && !s; id++) {
        const char *p = sp->pieces[id];
        float score = sp->scores ? sp->scores[id] : 0.0f;
        size_t len = p ? strlen(p) : 0;
        if (!p)
            s = cce_fail(CCE_ERR_ARG, "tokenizer piece %d is NULL", (int)id);
        else if (isnan(score))
            s = cce_fail(CCE_ERR_NUMERIC, "tokenizer score of piece %d is NaN", (int)id);
        else if (len > TOK_MAX_TOKEN_BYTES)
            s = cce_fail(CCE_ERR_RANGE, "tokenizer piece %d is %zu bytes (at most %d)", (int)id,
                         len, TOK_MAX_TOKEN_BYTES);
        else
            s = tok_set_piece(t, id, p, len, score);
    }
    if (!s) s = tok_finish(t, "tokenizer", CCE_ERR_ARG);
    if (!s && sp->n_merges) {
        t->n_merges = sp->n_merges;
        if (!(t->merges = malloc((size_t)sp->n_merges * 2 * sizeof *t->merges)))
            s = cce_fail(CCE_ERR_NOMEM, "tokenizer: %d merges", (int)sp->n_merges);
        else
            memcpy(t->merges, sp->merges, (size_t)sp->n_merges * 2 * sizeof *t->merges);
    }
    if (!s && sp->n_added) {
        t->n_added = sp->n_added;
        t->added_ids = malloc((size_t)sp->n_added * sizeof *t->added_ids);
        t->added_flags = calloc((size_t)sp->n_added, 1);
        if (!t->added_ids || !t->added_flags) {
            s = cce_fail(CCE_ERR_NOMEM, "tokenizer: %d added tokens", (int)sp->n_added);
        } else {
            memcpy(t->added_ids, sp->added_ids, (size_t)sp->n_added * sizeof *t->added_ids);
            if (sp->added_flags) memcpy(t->added_flags, sp->added_flags, (size_t)sp->n_added);
        }
    }
    if (!s) s = tok_setup_added(t);
    if (!s && t->kind == CCE_TOKENIZER_BYTELEVEL) s = bpe_setup(t);
    if (s) {
        cce_tokenizer_free(t);
        return s;
    }
    extend_fingerprint(t);
    *out = t;
    return CCE_OK;
}

/* ---- padding ----------------------------------------------------------------------------------
 */

/* Writes the name of padding piece k with `under` underscores after "<unused" into buf. */
static size_t pad_name(char *buf, size_t cap, int under, int32_t k) {
    int n = snprintf(buf, cap, "<unused");
    for (int i = 0; i < under && n < (int)cap; i++) buf[n++] = '_';
    n += snprintf(buf + n, cap - (size_t)n, "%d>", (int)k);
    return (size_t)n;
}

cce_status cce_tokenizer_pad_to(const cce_tokenizer *t, int32_t vocab_size, cce_tokenizer **out) {
    if (!t || !out) return cce_fail(CCE_ERR_ARG, "cce_tokenizer_pad_to: NULL argument");
    int32_t real = t->vocab_size - t->n_padding;
    if (vocab_size < real)
        return cce_fail(CCE_ERR_ARG,
                        "the tokenizer has %d tokens, more than the vocab_size %d it should be "
                        "padded to",
                        (int)real, (int)vocab_size);
    if (vocab_size > TOK_MAX_VOCAB)
        return cce_fail(CCE_ERR_RANGE, "tokenizer padded to vocab_size %d (at most %d)",
                        (int)vocab_size, TOK_MAX_VOCAB);
    int32_t n_pad = vocab_size - real;
    const char **pieces = malloc((size_t)vocab_size * sizeof *pieces); /* [vocab_size] */
    float *scores = malloc((size_t)vocab_size * sizeof *scores);       /* [vocab_size] */
    char *names = NULL; /* [n_pad, 40] the padding names */
    enum { NAME_CAP = 40 };
    if (!pieces || !scores || !(names = malloc((size_t)(n_pad ? n_pad : 1) * NAME_CAP))) {
        free(pieces);
        free(scores);
        return cce_fail(CCE_ERR_NOMEM, "tokenizer padded to %d pieces", (int)vocab_size);
    }
    /* The fewest underscores for which no padding name is a real piece (each extra underscore
     * rules out at least one real piece, so this ends). */
    int under = 1;
    for (int32_t k = 0; k < n_pad; k++) {
        char *name = names + (size_t)k * NAME_CAP;
        size_t len = pad_name(name, NAME_CAP, under, k);
        if (tok_lookup2(t, name, len, "", 0) < 0) continue;
        if (++under > 16) {
            free(pieces);
            free(scores);
            free(names);
            return cce_fail(CCE_ERR_ARG,
                            "tokenizer padding: real pieces take every name \"<unused_..._N>\" "
                            "up to 16 underscores");
        }
        k = -1; /* start over with the longer stem */
    }
    for (int32_t id = 0; id < vocab_size; id++) {
        int pad = id >= real;
        pieces[id] = pad ? names + (size_t)(id - real) * NAME_CAP : t->pieces[id];
        /* SentencePiece: a score at which nothing merges, also for llama2.c's encoder */
        scores[id] = !pad ? t->scores[id] : t->kind == CCE_TOKENIZER_SENTENCEPIECE ? -1e10f : 0.0f;
    }
    cce_tokenizer_spec sp;
    cce_tokenizer_get_spec(t, &sp);
    sp.vocab_size = vocab_size;
    sp.pieces = pieces;
    sp.scores = scores;
    sp.n_padding = n_pad;
    cce_status s = cce_tokenizer_new_spec(&sp, out);
    free(pieces);
    free(scores);
    free(names);
    return s;
}
