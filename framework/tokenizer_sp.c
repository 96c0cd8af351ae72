/* The llama2.c / SentencePiece-style BPE tokenizer: scored pieces, byte fallback, BOS/EOS and
 * the dummy-prefix space.
 *
 * Encoding follows llama2.c's encode(): each UTF-8 codepoint becomes its piece (or its bytes as
 * "<0xNN>" pieces), then the adjacent pair whose concatenated text is the best-scoring piece is
 * merged, leftmost on ties, until no pair is in the vocabulary. llama2.c rescans the whole
 * sequence per merge (quadratic); here symbols form a doubly linked list and candidate pairs sit
 * in a binary heap keyed by (score desc, position asc), invalidated lazily, which yields the same
 * merges in O(n log n). The text is first cut where no piece could ever span the boundary (see
 * `bigram`); merges never interact across such cuts, so each segment runs with a small heap and
 * the result is unchanged. Piece lookup is an open-addressing hash table keyed by FNV-1a.
 *
 * This file also holds what both kinds share: construction, accessors, decoding, and the encode
 * driver, which splits added tokens out of the text and encodes the segments between them with
 * the SentencePiece path here or the ByteLevel one (tokenizer_bpe.c). A tokenizer without added
 * tokens encodes the whole text as one segment, exactly as before. */
#include "tokenizer_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VOCAB       TOK_MAX_VOCAB
#define MAX_TOKEN_BYTES TOK_MAX_TOKEN_BYTES
/* llama2.c starts its best-score search at -1e10 and needs a strictly greater score, so pairs
 * scoring -1e10 or less never merge. */
#define MERGE_FLOOR -1e10f

/* Byte b decodes to raw_bytes + b (one byte, possibly NUL). */
static const unsigned char raw_bytes[256] = {
#define R16(h)                                                                                     \
    h + 0, h + 1, h + 2, h + 3, h + 4, h + 5, h + 6, h + 7, h + 8, h + 9, h + 10, h + 11, h + 12,  \
        h + 13, h + 14, h + 15
    R16(0),   R16(16),  R16(32),  R16(48),  R16(64),  R16(80),  R16(96),  R16(112),
    R16(128), R16(144), R16(160), R16(176), R16(192), R16(208), R16(224), R16(240),
#undef R16
};

/* ---- hashing and lookup ------------------------------------------------------------------- */

#define FNV_OFFSET 1469598103934665603ULL
#define FNV_PRIME  1099511628211ULL

static uint64_t fnv1a(uint64_t h, const void *data, size_t len) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* The id of the piece whose text is a (alen bytes) followed by b (blen bytes), or -1 (also for a
 * padding piece: pieces are distinct, so no other piece has that text). */
int32_t tok_lookup2(const cce_tokenizer *t, const char *a, size_t alen, const char *b,
                    size_t blen) {
    if (alen + blen > t->max_piece_len) return -1;
    uint64_t h = fnv1a(fnv1a(FNV_OFFSET, a, alen), b, blen);
    for (size_t slot = (size_t)h & t->table_mask;; slot = (slot + 1) & t->table_mask) {
        int32_t id = t->table[slot];
        if (id < 0) return -1;
        if (t->piece_len[id] == alen + blen && !memcmp(t->pieces[id], a, alen) &&
            !memcmp(t->pieces[id] + alen, b, blen))
            return id < t->vocab_size - t->n_padding ? id : -1;
    }
}

/* Renders a piece for an error message: printable ASCII as is, other bytes as \xNN. */
const char *tok_printable(const char *s, size_t len, char *buf, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 32 && c < 127 && c != '\'')
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
    }
    buf[o] = '\0';
    return buf;
}

/* 0..255 if s is exactly "<0xNN>" (hex digits, either case), else -1. */
static int byte_piece_value(const char *s, size_t len) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* ---- construction --------------------------------------------------------------------------- */

void cce_tokenizer_free(cce_tokenizer *t) {
    if (!t) return;
    if (t->pieces)
        for (int32_t i = 0; i < t->vocab_size; i++) free(t->pieces[i]);
    free(t->pieces);
    free(t->piece_len);
    free(t->scores);
    free(t->byte_of);
    free(t->table);
    tok_free_extra(t);
    free(t);
}

cce_status tok_alloc(int32_t vocab_size, int32_t min_vocab, cce_tokenizer **out) {
    if (vocab_size < min_vocab || vocab_size > MAX_VOCAB)
        return cce_fail(CCE_ERR_RANGE, "tokenizer vocab_size = %d is outside [%d, %d]%s",
                        (int)vocab_size, (int)min_vocab, MAX_VOCAB,
                        min_vocab == 3 ? " (ids 0-2 are <unk> <s> </s>)" : "");
    cce_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return cce_fail(CCE_ERR_NOMEM, "tokenizer of %d pieces", (int)vocab_size);
    t->vocab_size = vocab_size;
    t->kind = CCE_TOKENIZER_SENTENCEPIECE;
    t->bos_id = 1;
    t->eos_id = 2;
    t->unk_id = 0;
    t->pad_id = -1;
    t->pieces = calloc((size_t)vocab_size, sizeof *t->pieces);
    t->piece_len = calloc((size_t)vocab_size, sizeof *t->piece_len);
    t->scores = calloc((size_t)vocab_size, sizeof *t->scores);
    t->byte_of = calloc((size_t)vocab_size, sizeof *t->byte_of);
    if (!t->pieces || !t->piece_len || !t->scores || !t->byte_of) {
        cce_tokenizer_free(t);
        return cce_fail(CCE_ERR_NOMEM, "tokenizer of %d pieces", (int)vocab_size);
    }
    *out = t;
    return CCE_OK;
}

cce_status tok_set_piece(cce_tokenizer *t, int32_t id, const char *text, size_t len, float score) {
    char *copy = malloc(len + 1);
    if (!copy) return cce_fail(CCE_ERR_NOMEM, "tokenizer piece %d", (int)id);
    memcpy(copy, text, len);
    copy[len] = '\0';
    t->pieces[id] = copy;
    t->piece_len[id] = (uint32_t)len;
    t->scores[id] = score;
    return CCE_OK;
}

cce_status tok_finish(cce_tokenizer *t, const char *what, cce_status dup_status) {
    size_t cap = 16;
    while (cap < (size_t)t->vocab_size * 2) cap *= 2;
    t->table = malloc(cap * sizeof *t->table);
    if (!t->table) return cce_fail(CCE_ERR_NOMEM, "%s: lookup table of %zu slots", what, cap);
    memset(t->table, 0xff, cap * sizeof *t->table); /* every slot -1 */
    t->table_mask = cap - 1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;

    uint64_t fp = fnv1a(FNV_OFFSET, &t->vocab_size, sizeof t->vocab_size);
    t->max_piece_len = 0;
    for (int32_t id = 0; id < t->vocab_size; id++) {
        const char *p = t->pieces[id];
        uint32_t len = t->piece_len[id];
        if (len > t->max_piece_len) t->max_piece_len = len;
        uint64_t h = fnv1a(FNV_OFFSET, p, len);
        size_t slot = (size_t)h & t->table_mask;
        for (; t->table[slot] >= 0; slot = (slot + 1) & t->table_mask) {
            int32_t other = t->table[slot];
            if (t->piece_len[other] == len && !memcmp(t->pieces[other], p, len)) {
                char buf[96];
                return cce_fail(dup_status, "%s: duplicate piece '%s' at ids %d and %d", what,
                                tok_printable(p, len, buf, sizeof buf), (int)other, (int)id);
            }
        }
        t->table[slot] = id;
        fp = fnv1a(fp, &len, sizeof len);
        fp = fnv1a(fp, p, len);
        fp = fnv1a(fp, &t->scores[id], sizeof t->scores[id]);
        t->byte_of[id] = -1;
        if (id >= t->vocab_size - t->n_padding) continue; /* padding: never a byte nor merged */
        int bv = byte_piece_value(p, len);
        t->byte_of[id] = (int16_t)bv;
        if (bv >= 0 && t->byte_id[bv] < 0) t->byte_id[bv] = id;
        for (uint32_t k = 0; k + 1 < len; k++) {
            unsigned pair_bits = (unsigned)(unsigned char)p[k] << 8 | (unsigned char)p[k + 1];
            t->bigram[pair_bits >> 6] |= 1ULL << (pair_bits & 63);
        }
    }
    t->fingerprint = fp;
    t->space_id = tok_lookup2(t, " ", 1, "", 0);
    if (t->space_id < 0) t->space_id = t->byte_id[' '];
    if (t->space_id < 0) t->space_id = t->unk_id;
    return CCE_OK;
}

cce_status cce_tokenizer_new(int32_t vocab_size, const char *const *pieces, const float *scores,
                             cce_tokenizer **out) {
    if (!pieces || !scores || !out)
        return cce_fail(CCE_ERR_ARG, "cce_tokenizer_new: pieces, scores and out must be non-NULL");
    cce_tokenizer *t = NULL;
    cce_status s = tok_alloc(vocab_size, 3, &t);
    if (s != CCE_OK) return s;
    for (int32_t id = 0; id < vocab_size && s == CCE_OK; id++) {
        if (!pieces[id]) {
            s = cce_fail(CCE_ERR_ARG, "tokenizer piece %d is NULL", (int)id);
        } else if (isnan(scores[id])) {
            s = cce_fail(CCE_ERR_NUMERIC, "tokenizer score of piece %d is NaN", (int)id);
        } else {
            size_t len = strlen(pieces[id]);
            if (len > MAX_TOKEN_BYTES)
                s = cce_fail(CCE_ERR_RANGE, "tokenizer piece %d is %zu bytes (at most %d)", (int)id,
                             len, MAX_TOKEN_BYTES);
            else
                s = tok_set_piece(t, id, pieces[id], len, scores[id]);
        }
    }
    if (s == CCE_OK) s = tok_finish(t, "tokenizer", CCE_ERR_ARG);
    if (s != CCE_OK) {
        cce_tokenizer_free(t);
        return s;
    }
    *out = t;
    return CCE_OK;
}

cce_status cce_tokenizer_new_bytes(int32_t vocab_size, cce_tokenizer **out) {
    if (vocab_size < 259 || vocab_size > MAX_VOCAB)
        return cce_fail(CCE_ERR_RANGE, "byte tokenizer vocab_size = %d is outside [259, %d]",
                        (int)vocab_size, MAX_VOCAB);
    cce_tokenizer *t = NULL;
    cce_status s = tok_alloc(vocab_size, 3, &t);
    if (s != CCE_OK) return s;
    static const char *const special[3] = {"<unk>", "<s>", "</s>"};
    char buf[32];
    for (int32_t id = 0; id < vocab_size && s == CCE_OK; id++) {
        float score = 0.0f;
        if (id < 3)
            snprintf(buf, sizeof buf, "%s", special[id]);
        else if (id < 259)
            snprintf(buf, sizeof buf, "<0x%02X>", (unsigned)(id - 3));
        else {
            snprintf(buf, sizeof buf, "<unused_%d>", (int)(id - 259));
            score = -1e9f;
        }
        s = tok_set_piece(t, id, buf, strlen(buf), score);
    }
    if (s == CCE_OK) s = tok_finish(t, "byte tokenizer", CCE_ERR_INTERNAL);
    if (s != CCE_OK) {
        cce_tokenizer_free(t);
        return s;
    }
    *out = t;
    return CCE_OK;
}

/* Reads the whole file into a malloc'd buffer (caller frees *data). */
static cce_status read_whole(const char *path, unsigned char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return cce_fail(CCE_ERR_IO, "cannot open tokenizer %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return cce_fail(CCE_ERR_NOMEM, "reading %s", path);
    }
    for (;;) {
        if (n == cap) {
            unsigned char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                fclose(f);
                return cce_fail(CCE_ERR_NOMEM, "reading %s", path);
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (err) {
        free(buf);
        return cce_fail(CCE_ERR_IO, "reading tokenizer %s: %s", path, strerror(err));
    }
    *data = buf;
    *len = n;
    return CCE_OK;
}

static int32_t get_i32(const unsigned char *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

cce_status cce_tokenizer_load_llama2c(const char *path, int32_t vocab_size, cce_tokenizer **out) {
    if (!path || !out)
        return cce_fail(CCE_ERR_ARG, "cce_tokenizer_load_llama2c: path and out must be non-NULL");
    unsigned char *data = NULL; /* [size] the whole file */
    size_t size = 0;
    cce_status s = read_whole(path, &data, &size);
    if (s != CCE_OK) return s;
    cce_tokenizer *t = NULL;
    if (size < 4) {
        s = cce_fail(CCE_ERR_FORMAT, "%s: truncated header (%zu bytes, need 4)", path, size);
        goto done;
    }
    int32_t max_len = get_i32(data);
    if (max_len < 1 || max_len > MAX_TOKEN_BYTES) {
        s = cce_fail(CCE_ERR_FORMAT, "%s: max_token_length = %d is outside [1, %d]", path,
                     (int)max_len, MAX_TOKEN_BYTES);
        goto done;
    }
    s = tok_alloc(vocab_size, 3, &t);
    if (s != CCE_OK) {
        cce_error_prefix("%s: ", path);
        goto done;
    }
    size_t off = 4;
    for (int32_t id = 0; id < vocab_size; id++) {
        if (size - off < 8) {
            s = cce_fail(CCE_ERR_FORMAT,
                         "%s: truncated at token %d of %d (offset %zu, file is %zu bytes)", path,
                         (int)id, (int)vocab_size, off, size);
            goto done;
        }
        float score;
        memcpy(&score, data + off, sizeof score);
        int32_t len = get_i32(data + off + 4);
        off += 8;
        if (isnan(score)) {
            s = cce_fail(CCE_ERR_FORMAT, "%s: token %d: score is NaN", path, (int)id);
            goto done;
        }
        if (len < 0 || len > max_len) {
            s = cce_fail(CCE_ERR_FORMAT,
                         "%s: token %d: length %d is outside [0, %d] (max_token_length)", path,
                         (int)id, (int)len, (int)max_len);
            goto done;
        }
        if (size - off < (size_t)len) {
            s = cce_fail(CCE_ERR_FORMAT,
                         "%s: truncated in token %d of %d (needs %d bytes at offset %zu, file is "
                         "%zu bytes)",
                         path, (int)id, (int)vocab_size, (int)len, off, size);
            goto done;
        }
        if (memchr(data + off, '\0', (size_t)len)) {
            s = cce_fail(CCE_ERR_FORMAT, "%s: token %d: piece contains a NUL byte", path, (int)id);
            goto done;
        }
        s = tok_set_piece(t, id, (const char *)data + off, (size_t)len, score);
        if (s != CCE_OK) goto done;
        off += (size_t)len;
    }
    if (off != size) {
        s = cce_fail(
            CCE_ERR_FORMAT,
            "%s: %zu bytes after token %d: the file holds more than the expected %d tokens", path,
            size - off, (int)vocab_size - 1, (int)vocab_size);
        goto done;
    }
    s = tok_finish(t, path, CCE_ERR_FORMAT);
done:
    free(data);
    if (s != CCE_OK) {
        cce_tokenizer_free(t);
        return s;
    }
    *out = t;
    return CCE_OK;
}

/* ---- accessors ------------------------------------------------------------------------------ */

int32_t cce_tokenizer_vocab_size(const cce_tokenizer *t) {
    return t->vocab_size;
}
int32_t cce_tokenizer_n_padding(const cce_tokenizer *t) {
    return t->n_padding;
}
int32_t cce_tokenizer_bos(const cce_tokenizer *t) {
    return t->bos_id >= 0 ? t->bos_id : t->eos_id;
}
int32_t cce_tokenizer_eos(const cce_tokenizer *t) {
    return t->eos_id >= 0 ? t->eos_id : t->bos_id;
}
int32_t cce_tokenizer_unk(const cce_tokenizer *t) {
    return t->unk_id;
}
int32_t cce_tokenizer_pad(const cce_tokenizer *t) {
    return t->pad_id;
}
cce_tokenizer_kind cce_tokenizer_kind_of(const cce_tokenizer *t) {
    return t->kind;
}

const char *cce_tokenizer_piece(const cce_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->vocab_size ? t->pieces[id] : NULL;
}

float cce_tokenizer_score(const cce_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->vocab_size ? t->scores[id] : NAN;
}

uint64_t cce_tokenizer_fingerprint(const cce_tokenizer *t) {
    return t->fingerprint;
}

const char *cce_tokenizer_decode(const cce_tokenizer *t, int32_t prev, int32_t id, size_t *len) {
    if (id < 0 || id >= t->vocab_size) {
        if (len) *len = 0;
        return "";
    }
    const char *p = t->pieces[id];
    size_t n = t->piece_len[id];
    if (t->kind == CCE_TOKENIZER_BYTELEVEL) {
        p = t->decoded + t->decoded_off[id];
        n = t->decoded_off[id + 1] - t->decoded_off[id];
    }
    int drop = t->kind == CCE_TOKENIZER_SENTENCEPIECE || (t->flags & CCE_TOK_ADD_PREFIX_SPACE);
    if (drop && prev == cce_tokenizer_bos(t) && n > 0 && p[0] == ' ') {
        p++;
        n--;
    }
    if (t->kind == CCE_TOKENIZER_SENTENCEPIECE && t->byte_of[id] >= 0) {
        p = (const char *)raw_bytes + t->byte_of[id];
        n = 1;
    }
    if (len) *len = n;
    return p;
}

/* ---- encoding ------------------------------------------------------------------------------- */

#define NONE TOK_NONE

uint32_t tok_score_key(float score) {
    if (score == 0) score = 0.0f; /* -0 and +0 compare equal */
    uint32_t u;
    memcpy(&u, &score, sizeof u);
    u = u & 0x80000000u ? ~u : u | 0x80000000u; /* ascending with score */
    return ~u;
}

/* 1 if a should be merged before b: the lower key, then the leftmost. */
static inline int pair_before(const tok_pair *a, const tok_pair *b) {
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

void tok_heap_sift_down(tok_heap *h, size_t i) {
    tok_pair p = h->items[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && pair_before(&h->items[c + 1], &h->items[c])) c++;
        if (!pair_before(&h->items[c], &p)) break;
        h->items[i] = h->items[c];
        i = c;
    }
    h->items[i] = p;
}

cce_status tok_heap_push(tok_heap *h, tok_pair p) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 1024;
        tok_pair *items = realloc(h->items, cap * sizeof *items);
        if (!items) return cce_fail(CCE_ERR_NOMEM, "tokenizer merge heap of %zu pairs", cap);
        h->items = items;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&p, &h->items[parent])) break;
        h->items[i] = h->items[parent];
        i = parent;
    }
    h->items[i] = p;
    return CCE_OK;
}

tok_pair tok_heap_pop(tok_heap *h) {
    tok_pair top = h->items[0];
    h->items[0] = h->items[--h->n];
    if (h->n > 0) tok_heap_sift_down(h, 0);
    return top;
}

int tok_sym_merge(tok_sym *sy, const tok_pair *p) {
    uint32_t l = p->left, r = p->right;
    if (sy[l].id < 0 || sy[l].next != r || sy[r].ver != p->right_ver) return 0; /* stale */
    sy[l].id = p->id;
    sy[l].ver++;
    sy[r].id = -1;
    sy[l].next = sy[r].next;
    if (sy[r].next != NONE) sy[sy[r].next].prev = l;
    return 1;
}

/* The merge of symbols l and r (adjacent) if their concatenation is a piece that may merge;
 * returns 0 when there is none. */
static int make_pair(const cce_tokenizer *t, const tok_sym *sy, uint32_t l, uint32_t r,
                     tok_pair *out) {
    int32_t a = sy[l].id, b = sy[r].id;
    int32_t id = tok_lookup2(t, t->pieces[a], t->piece_len[a], t->pieces[b], t->piece_len[b]);
    if (id < 0 || !(t->scores[id] > MERGE_FLOOR)) return 0;
    *out = (tok_pair){tok_score_key(t->scores[id]), id, l, r, sy[r].ver};
    return 1;
}

static cce_status consider(const cce_tokenizer *t, const tok_sym *sy, tok_heap *h, uint32_t l,
                           uint32_t r) {
    tok_pair p;
    if (l == NONE || r == NONE || !make_pair(t, sy, l, r, &p)) return CCE_OK;
    return tok_heap_push(h, p);
}

/* Appends one symbol per codepoint group of text (or per byte where the group is not a
 * piece). Groups follow llama2.c: a byte plus the continuation bytes after it, at most 4. */
static uint32_t split_codepoints(const cce_tokenizer *t, const char *text, size_t len, tok_sym *sy,
                                 uint32_t n) {
    size_t i = 0;
    while (i < len) {
        size_t g = 1;
        while (i + g < len && g < 4 && ((unsigned char)text[i + g] & 0xC0) == 0x80) g++;
        int32_t id = tok_lookup2(t, text + i, g, "", 0);
        if (id >= 0) {
            sy[n++].id = id;
        } else {
            for (size_t k = 0; k < g; k++) {
                int32_t b = t->byte_id[(unsigned char)text[i + k]];
                if (b >= 0 || t->unk_id >= 0) sy[n++].id = b >= 0 ? b : t->unk_id;
            }
        }
        i += g;
    }
    return n;
}

/* 1 if a merge may ever join symbol ids a and b (a directly before b). */
static int joinable(const cce_tokenizer *t, int32_t a, int32_t b) {
    uint32_t la = t->piece_len[a];
    if (la == 0 || t->piece_len[b] == 0) return 1;
    unsigned bits =
        (unsigned)(unsigned char)t->pieces[a][la - 1] << 8 | (unsigned char)t->pieces[b][0];
    return (t->bigram[bits >> 6] >> (bits & 63)) & 1;
}

/* Runs the merges over symbols [start, end), a segment no merge can cross. Merged-away symbols
 * get id -1; the live ones keep their text order. h is scratch space. */
static cce_status merge_segment(const cce_tokenizer *t, tok_sym *sy, uint32_t start, uint32_t end,
                                tok_heap *h) {
    for (uint32_t i = start; i < end; i++) {
        sy[i].prev = i == start ? NONE : i - 1;
        sy[i].next = i + 1 < end ? i + 1 : NONE;
        sy[i].ver = 0;
    }
    h->n = 0;
    for (uint32_t i = start; i + 1 < end; i++) {
        tok_pair p;
        if (!make_pair(t, sy, i, i + 1, &p)) continue;
        if (h->n == h->cap) {
            cce_status s = tok_heap_push(h, p); /* grows the array; order is fixed below */
            if (s != CCE_OK) return s;
        } else {
            h->items[h->n++] = p;
        }
    }
    for (size_t i = h->n / 2; i-- > 0;) tok_heap_sift_down(h, i); /* heapify */
    while (h->n > 0) {
        tok_pair p = tok_heap_pop(h);
        if (!tok_sym_merge(sy, &p)) continue;
        uint32_t l = p.left;
        cce_status s = consider(t, sy, h, sy[l].prev, l);
        if (s == CCE_OK) s = consider(t, sy, h, l, sy[l].next);
        if (s != CCE_OK) return s;
    }
    return CCE_OK;
}

/* Merges all n symbols, segment by segment. */
static cce_status merge_symbols(const cce_tokenizer *t, tok_sym *sy, uint32_t n) {
    tok_heap h = {0};
    cce_status s = CCE_OK;
    uint32_t start = 0;
    for (uint32_t i = 1; i <= n && s == CCE_OK; i++) {
        if (i < n && joinable(t, sy[i - 1].id, sy[i].id)) continue;
        if (i - start > 1) s = merge_segment(t, sy, start, i, &h);
        start = i;
    }
    free(h.items);
    return s;
}

/* SentencePiece kind: appends the ids of one segment (no added tokens inside): the dummy prefix
 * (if prefix), then the codepoints merged by score. sy: scratch [len + 1]. */
static cce_status sp_encode_segment(const cce_tokenizer *t, const char *text, size_t len,
                                    int prefix, tok_sym *sy, tok_ids *out) {
    uint32_t n = 0;
    if (prefix && t->space_id >= 0) sy[n++].id = t->space_id;
    n = split_codepoints(t, text, len, sy, n);
    cce_status s = merge_symbols(t, sy, n);
    for (uint32_t i = 0; i < n && !s; i++)
        if (sy[i].id >= 0) s = tok_ids_push(out, sy[i].id);
    return s;
}

/* 1 if the SentencePiece segment text[pos, end) gets the dummy prefix: with CCE_TOK_PREFIX_FIRST
 * only at offset 0; with CCE_TOK_METASPACE not when, spaces replaced by "\u2581", it already
 * starts with one (Hugging Face's Metaspace pre-tokenizer; the Prepend normalizer always adds
 * it). */
static int sp_prefix(const cce_tokenizer *t, const char *text, size_t pos, size_t end) {
    if ((t->flags & CCE_TOK_PREFIX_FIRST) && pos != 0) return 0;
    if (!(t->flags & CCE_TOK_METASPACE)) return 1;
    return !(text[pos] == ' ' || (end - pos >= 3 && !memcmp(text + pos, "\xE2\x96\x81", 3)));
}

cce_status tok_ids_push(tok_ids *v, int32_t id) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 256;
        int32_t *ids = realloc(v->ids, cap * sizeof *ids);
        if (!ids) return cce_fail(CCE_ERR_NOMEM, "tokenizer: %zu token ids", cap);
        v->ids = ids;
        v->cap = cap;
    }
    v->ids[v->n++] = id;
    return CCE_OK;
}

static int is_space_at(const char *text, size_t pos, size_t len, size_t *n) {
    uint32_t cp = pretok_decode((const unsigned char *)text + pos, len - pos, n);
    return pretok_is_space(cp);
}

/* The first added token written in text[from, len): the match bounds *start, *end (widened by
 * lstrip / rstrip) and its id. Leftmost, then longest. 0 if there is none. */
static int next_added(const cce_tokenizer *t, const char *text, size_t len, size_t from,
                      size_t *start, size_t *end, int32_t *id) {
    for (size_t pos = from; pos < len; pos++) {
        unsigned b = (unsigned char)text[pos];
        for (int32_t k = t->added_first[b]; k < t->added_first[b + 1]; k++) {
            int32_t idx = t->added_order[k], pid = t->added_ids[idx];
            uint32_t plen = t->piece_len[pid];
            if (plen > len - pos || memcmp(text + pos, t->pieces[pid], plen) != 0) continue;
            size_t s = pos, e = pos + plen, n;
            if (t->added_flags[idx] & CCE_ADDED_LSTRIP)
                while (s > from) {
                    size_t c = s - 1;
                    while (c > from && ((unsigned char)text[c] & 0xC0) == 0x80) c--;
                    if (!is_space_at(text, c, len, &n) || c + n != s) break;
                    s = c;
                }
            if (t->added_flags[idx] & CCE_ADDED_RSTRIP)
                while (e < len && is_space_at(text, e, len, &n)) e += n;
            *start = s;
            *end = e;
            *id = pid;
            return 1;
        }
    }
    return 0;
}

cce_status cce_tokenizer_encode(const cce_tokenizer *t, const char *text, size_t len, int bos,
                                int eos, int32_t **tokens, size_t *n_tokens) {
    if (!t || !tokens || !n_tokens || (!text && len > 0))
        return cce_fail(CCE_ERR_ARG, "cce_tokenizer_encode: NULL tokenizer, text or output");
    if (len >= NONE - 1)
        return cce_fail(CCE_ERR_RANGE,
                        "cce_tokenizer_encode: a text of %zu bytes exceeds the %u-byte limit of "
                        "one call",
                        len, NONE - 2);
    tok_ids out = {0};
    tok_sym *sy = NULL; /* [len + 1] SentencePiece: the dummy prefix + one per byte */
    bpe_scratch *bs = NULL;
    cce_status s = CCE_OK;
    if (t->kind == CCE_TOKENIZER_SENTENCEPIECE && len > 0 && !(sy = malloc((len + 1) * sizeof *sy)))
        s = cce_fail(CCE_ERR_NOMEM, "encoding %zu bytes of text", len);
    if (!s && bos) s = tok_ids_push(&out, cce_tokenizer_bos(t));
    for (size_t pos = 0; !s && pos < len;) {
        size_t ms = len, me = len;
        int32_t id = -1;
        int found = t->n_added > 0 && next_added(t, text, len, pos, &ms, &me, &id);
        if (ms > pos) {
            if (t->kind == CCE_TOKENIZER_BYTELEVEL)
                s = bpe_encode_segment(t, text + pos, ms - pos, &bs, &out);
            else
                s = sp_encode_segment(t, text + pos, ms - pos, sp_prefix(t, text, pos, ms), sy,
                                      &out);
        }
        if (!s && found) s = tok_ids_push(&out, id);
        pos = me;
    }
    if (!s && eos) s = tok_ids_push(&out, cce_tokenizer_eos(t));
    if (!s && !out.ids) s = tok_ids_push(&out, 0), out.n = 0; /* a valid pointer for no tokens */
    free(sy);
    bpe_scratch_free(bs);
    if (s) {
        free(out.ids);
        return s;
    }
    *tokens = out.ids;
    *n_tokens = out.n;
    return CCE_OK;
}
