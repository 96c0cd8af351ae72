/* ByteLevel (GPT-2 style) BPE encoding with ranked merges, as Hugging Face's BPE model applies
 * them: each word of the pre-tokenizer becomes one symbol per byte (the piece of the byte's
 * alphabet character), then the adjacent pair with the lowest merge rank is merged (leftmost on
 * ties) until no pair has a merge. Candidate pairs sit in a binary heap keyed by (rank, position),
 * invalidated lazily, so a word of n bytes takes O(n log n). Merges are found in an
 * open-addressing hash table keyed by the two piece ids. Nothing is cached between calls.
 *
 * Characters whose piece is missing from the vocabulary become UNK (one per run with fuse_unk)
 * or, without an UNK token, are dropped, as the Hugging Face library does. With ignore_merges a
 * word that is itself a piece is that piece. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

#define EMPTY_KEY UINT64_MAX
#define NONE      TOK_NONE

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static uint64_t pair_key(int32_t l, int32_t r) {
    return (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
}

/* The slot of key in the merge table: where it is, or the empty slot where it would go. */
static size_t merge_slot(const cce_tokenizer *t, uint64_t key) {
    size_t slot = (size_t)mix64(key) & t->merge_mask;
    while (t->merge_keys[slot] != EMPTY_KEY && t->merge_keys[slot] != key)
        slot = (slot + 1) & t->merge_mask;
    return slot;
}

/* 1 and the merge's rank and piece if l r merge. */
static inline int merge_find(const cce_tokenizer *t, int32_t l, int32_t r, uint32_t *rank,
                             int32_t *out) {
    if (!t->merge_keys) return 0;
    size_t slot = merge_slot(t, pair_key(l, r));
    if (t->merge_keys[slot] == EMPTY_KEY) return 0;
    *rank = t->merge_rank[slot];
    *out = t->merge_out[slot];
    return 1;
}

/* UTF-8 of codepoint cp (< 0x800 here) into buf; returns its length. */
static size_t utf8_put(uint32_t cp, char *buf) {
    if (cp < 0x80) {
        buf[0] = (char)cp;
        return 1;
    }
    buf[0] = (char)(0xC0 | cp >> 6);
    buf[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* The bytes piece id stands for: each character's byte if all are in the alphabet, else the
 * piece's own UTF-8 (as the Hugging Face ByteLevel decoder does). Writes into out (may be NULL)
 * and returns the length. */
static size_t decode_piece(const cce_tokenizer *t, int32_t id, char *out) {
    const unsigned char *p = (const unsigned char *)t->pieces[id];
    size_t len = t->piece_len[id], o = 0;
    for (size_t i = 0; i < len;) {
        size_t n;
        uint32_t cp = pretok_decode(p + i, len - i, &n);
        int b = cp == 0xFFFD && n == 1 ? -1 : bytelevel_byte(cp);
        if (b < 0) {
            if (out) memcpy(out, p, len);
            return len;
        }
        if (out) out[o] = (char)b;
        o++;
        i += n;
    }
    return o;
}

cce_status bpe_setup(cce_tokenizer *t) {
    cce_status s = pretok_init();
    if (s) return s;
    if (t->n_merges > 0) {
        size_t cap = 16;
        while (cap < (size_t)t->n_merges * 2) cap *= 2;
        t->merge_keys = malloc(cap * sizeof *t->merge_keys);
        t->merge_rank = malloc(cap * sizeof *t->merge_rank);
        t->merge_out = malloc(cap * sizeof *t->merge_out);
        if (!t->merge_keys || !t->merge_rank || !t->merge_out)
            return cce_fail(CCE_ERR_NOMEM, "tokenizer: merge table of %zu slots", cap);
        memset(t->merge_keys, 0xff, cap * sizeof *t->merge_keys); /* every slot EMPTY_KEY */
        t->merge_mask = cap - 1;
    }
    char buf[2][96];
    for (int32_t k = 0; k < t->n_merges; k++) {
        int32_t l = t->merges[2 * k], r = t->merges[2 * k + 1];
        int32_t real = t->vocab_size - t->n_padding; /* padding pieces take part in no merge */
        if (l < 0 || l >= real || r < 0 || r >= real)
            return cce_fail(CCE_ERR_ARG, "tokenizer merge %d: ids %d %d outside [0, %d)%s", (int)k,
                            (int)l, (int)r, (int)real,
                            t->n_padding ? " (ids past the real pieces are padding)" : "");
        int32_t out = tok_lookup2(t, t->pieces[l], t->piece_len[l], t->pieces[r], t->piece_len[r]);
        if (out < 0)
            return cce_fail(CCE_ERR_ARG,
                            "tokenizer merge %d ('%s' '%s') makes a piece that is not in the vocab",
                            (int)k, tok_printable(t->pieces[l], t->piece_len[l], buf[0], 96),
                            tok_printable(t->pieces[r], t->piece_len[r], buf[1], 96));
        size_t slot = merge_slot(t, pair_key(l, r));
        if (t->merge_keys[slot] != EMPTY_KEY)
            return cce_fail(CCE_ERR_ARG, "tokenizer merge %d ('%s' '%s') repeats merge %u", (int)k,
                            tok_printable(t->pieces[l], t->piece_len[l], buf[0], 96),
                            tok_printable(t->pieces[r], t->piece_len[r], buf[1], 96),
                            t->merge_rank[slot]);
        t->merge_keys[slot] = pair_key(l, r);
        t->merge_rank[slot] = (uint32_t)k;
        t->merge_out[slot] = out;
    }
    for (int b = 0; b < 256; b++) {
        char c[2];
        size_t n = utf8_put(bytelevel_char((unsigned char)b), c);
        t->char_id[b] = tok_lookup2(t, c, n, "", 0);
    }
    if (!(t->decoded_off = malloc(((size_t)t->vocab_size + 1) * sizeof *t->decoded_off)))
        return cce_fail(CCE_ERR_NOMEM, "tokenizer: decoded pieces");
    size_t total = 0;
    for (int32_t id = 0; id < t->vocab_size; id++) {
        t->decoded_off[id] = total;
        total += decode_piece(t, id, NULL);
    }
    t->decoded_off[t->vocab_size] = total;
    if (!(t->decoded = malloc(total ? total : 1)))
        return cce_fail(CCE_ERR_NOMEM, "tokenizer: %zu bytes of decoded pieces", total);
    for (int32_t id = 0; id < t->vocab_size; id++)
        decode_piece(t, id, t->decoded + t->decoded_off[id]);
    return CCE_OK;
}

/* ---- encoding ------------------------------------------------------------------------------- */

struct bpe_scratch {
    char *text; /* [text_cap] the segment with its prefix space, or a word in the alphabet */
    size_t text_cap;
    tok_sym *sy; /* [sy_cap] */
    size_t sy_cap;
    tok_heap heap; /* keyed by merge rank */
};

void bpe_scratch_free(bpe_scratch *s) {
    if (!s) return;
    free(s->text);
    free(s->sy);
    free(s->heap.items);
    free(s);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

/* Queues the merge of live symbols l, r if there is one. */
static cce_status consider(const cce_tokenizer *t, bpe_scratch *sc, uint32_t l, uint32_t r) {
    if (l == NONE || r == NONE) return CCE_OK;
    uint32_t rank;
    int32_t id;
    if (!merge_find(t, sc->sy[l].id, sc->sy[r].id, &rank, &id)) return CCE_OK;
    return tok_heap_push(&sc->heap, (tok_pair){rank, id, l, r, sc->sy[r].ver});
}

/* Appends the ids of one word (len >= 1 bytes of the original text) to out. */
static cce_status encode_word(const cce_tokenizer *t, const unsigned char *w, size_t len,
                              bpe_scratch *sc, tok_ids *out) {
    if (t->flags & CCE_TOK_IGNORE_MERGES) {
        if (!grow((void **)&sc->text, &sc->text_cap, 2 * len, 1)) goto nomem;
        size_t n = 0;
        for (size_t i = 0; i < len; i++) n += utf8_put(bytelevel_char(w[i]), sc->text + n);
        int32_t id = tok_lookup2(t, sc->text, n, "", 0);
        if (id >= 0) return tok_ids_push(out, id);
    }
    if (!grow((void **)&sc->sy, &sc->sy_cap, len, sizeof *sc->sy)) goto nomem;
    tok_sym *sy = sc->sy;
    uint32_t n = 0;
    int prev_unknown = 0;
    for (size_t i = 0; i < len; i++) {
        int32_t id = t->char_id[w[i]];
        if (id < 0) {
            if (t->unk_id < 0 || (prev_unknown && (t->flags & CCE_TOK_FUSE_UNK))) continue;
            id = t->unk_id;
            prev_unknown = 1;
        } else {
            prev_unknown = 0;
        }
        sy[n] = (tok_sym){id, n == 0 ? NONE : n - 1, NONE, 0};
        if (n > 0) sy[n - 1].next = n;
        n++;
    }
    sc->heap.n = 0;
    cce_status s = CCE_OK;
    for (uint32_t i = 0; i + 1 < n && !s; i++) s = consider(t, sc, i, i + 1);
    while (!s && sc->heap.n > 0) {
        tok_pair p = tok_heap_pop(&sc->heap);
        if (!tok_sym_merge(sy, &p)) continue;
        uint32_t l = p.left;
        s = consider(t, sc, sy[l].prev, l);
        if (!s) s = consider(t, sc, l, sy[l].next);
    }
    for (uint32_t i = 0; i < n && !s; i++)
        if (sy[i].id >= 0) s = tok_ids_push(out, sy[i].id);
    return s;
nomem:
    return cce_fail(CCE_ERR_NOMEM, "tokenizer: a word of %zu bytes", len);
}

cce_status bpe_encode_segment(const cce_tokenizer *t, const char *text, size_t len,
                              bpe_scratch **scratch, tok_ids *out) {
    if (len == 0) return CCE_OK;
    if (!*scratch && !(*scratch = calloc(1, sizeof **scratch)))
        return cce_fail(CCE_ERR_NOMEM, "tokenizer scratch");
    bpe_scratch *sc = *scratch;
    char *own = NULL; /* [len + 1] " " + text */
    if ((t->flags & CCE_TOK_ADD_PREFIX_SPACE) && text[0] != ' ') {
        if (!(own = malloc(len + 1))) return cce_fail(CCE_ERR_NOMEM, "tokenizer: %zu bytes", len);
        own[0] = ' ';
        memcpy(own + 1, text, len);
        text = own;
        len++;
    }
    cce_status s = CCE_OK;
    for (size_t pos = 0; pos < len && !s;) {
        size_t end = pretok_next(t->pretok, text, len, pos);
        if (end <= pos || end > len) end = pos + 1; /* never reached: patterns tile the text */
        s = encode_word(t, (const unsigned char *)text + pos, end - pos, sc, out);
        pos = end;
    }
    free(own);
    return s;
}
