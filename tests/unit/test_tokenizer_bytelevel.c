/* ByteLevel (GPT-2 style) tokenizers: the byte-to-unicode alphabet on all 256 bytes, the
 * pre-tokenizer patterns (contractions, numbers, punctuation, spaces, "\s+(?!\S)", non-ASCII
 * letters and numbers, emoji), merges applied by rank (hand-worked examples where the rank order
 * decides, and a naive reference encoder on real text with merges learned in the test), special
 * and added tokens in the text, missing characters without and with <unk>, storage in a model
 * file, tokenizer.json export/import, bad input, a bounded fuzz of ByteLevel JSON, and the
 * encoding speed on 1 MB of text (printed). */
#include "test_support.h"

#include <hdf5.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "import.h"
#include "model.h"
#include "synth.h"
#include "tokenizer.h"
#include "tokenizer_hf.h"
#include "tokenizer_internal.h"

#define G "\xC4\xA0" /* U+0120, the alphabet's space */

/* ---- the alphabet, written as GPT-2's bytes_to_unicode() defines it -------------------------- */

/* UTF-8 of the character standing for byte b. */
static void alpha(unsigned b, char out[3]) {
    /* bs = [!..~] + [¡..¬] + [®..ÿ]; the other bytes get 256, 257, ... in byte order */
    unsigned cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) {
        cp = b;
    } else {
        unsigned n = 0;
        for (unsigned k = 0; k < b; k++)
            n += !((k >= 33 && k <= 126) || (k >= 161 && k <= 172) || (k >= 174 && k <= 255));
        cp = 256 + n;
    }
    if (cp < 128) {
        out[0] = (char)cp, out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 63)), out[2] = 0;
    }
}

/* A GPT-2 style tokenizer.json: ids 0-255 the alphabet in byte order, then extra (NULL-ended),
 * then <|endoftext|> (an added special token); merges "left right" in rank order. */
static json_t *gpt2_json(const char *const *extra, const char *const *merges) {
    json_t *vocab = json_object(), *ml = json_array();
    int id = 0;
    for (; id < 256; id++) {
        char c[3];
        alpha((unsigned)id, c);
        json_object_set_new(vocab, c, json_integer(id));
    }
    for (int k = 0; extra && extra[k]; k++, id++)
        json_object_set_new(vocab, extra[k], json_integer(id));
    json_object_set_new(vocab, "<|endoftext|>", json_integer(id));
    for (int k = 0; merges && merges[k]; k++) json_array_append_new(ml, json_string(merges[k]));
    json_t *root = json_pack(
        "{s:s, s:[{s:i, s:s, s:b, s:b, s:b, s:b, s:b}], s:n,"
        " s:{s:s, s:b, s:b, s:b}, s:{s:s, s:b, s:b, s:b}, s:{s:s, s:b, s:b, s:b},"
        " s:{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:o}}",
        "version", "1.0", "added_tokens", "id", id, "content", "<|endoftext|>", "single_word", 0,
        "lstrip", 0, "rstrip", 0, "normalized", 1, "special", 1, "normalizer", "pre_tokenizer",
        "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1,
        "post_processor", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 0,
        "use_regex", 1, "decoder", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 1,
        "use_regex", 1, "model", "type", "BPE", "dropout", "unk_token", "continuing_subword_prefix",
        "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0, "ignore_merges", 0, "vocab", vocab,
        "merges", ml);
    assert_non_null(root);
    return root;
}

static cce_status parse(json_t *j, const char *config, cce_tokenizer **t) {
    char *text = json_dumps(j, JSON_COMPACT);
    assert_non_null(text);
    cce_status s = cce_tokenizer_parse_hf(text, strlen(text), config, config ? strlen(config) : 0,
                                          "gpt2/tokenizer.json", 0, t);
    free(text);
    return s;
}

static void expect_ids(const cce_tokenizer *t, const char *text, const int32_t *want, size_t n) {
    int32_t *ids;
    size_t got;
    assert_cce_ok(cce_tokenizer_encode(t, text, strlen(text), 0, 0, &ids, &got));
    if (got != n) fail_msg("'%s': %zu tokens, expected %zu", text, got, n);
    for (size_t i = 0; i < n; i++)
        if (ids[i] != want[i])
            fail_msg("'%s': token %zu is %d, expected %d", text, i, (int)ids[i], (int)want[i]);
    free(ids);
}

/* decode(encode(BOS + text)) == text, bytes exactly; returns the token count. */
static size_t expect_roundtrip(const cce_tokenizer *t, const char *text, size_t len) {
    int32_t *ids;
    size_t n;
    assert_cce_ok(cce_tokenizer_encode(t, text, len, 1, 0, &ids, &n));
    assert_int_equal(ids[0], cce_tokenizer_bos(t));
    char *back = malloc(len + 1);
    size_t o = 0;
    for (size_t i = 1; i < n; i++) {
        size_t pl;
        const char *p = cce_tokenizer_decode(t, ids[i - 1], ids[i], &pl);
        if (o + pl > len) fail_msg("decoded text is longer than the %zu input bytes", len);
        memcpy(back + o, p, pl);
        o += pl;
    }
    if (o != len || memcmp(back, text, len) != 0) {
        size_t k = 0;
        while (k < o && k < len && back[k] == text[k]) k++;
        fail_msg("round trip differs at byte %zu of %zu (decoded %zu bytes)", k, len, o);
    }
    free(back);
    free(ids);
    return n - 1;
}

/* parse must fail with CCE_ERR_FORMAT and a detail containing the source and needle. */
static void expect_error(json_t *j, const char *config, const char *needle) {
    cce_tokenizer *t = NULL;
    cce_status s = parse(j, config, &t);
    if (s != CCE_ERR_FORMAT)
        fail_msg("expected a format error with '%s', got %s: %s", needle, cce_strerror(s),
                 cce_error_detail());
    assert_null(t);
    const char *d = cce_error_detail();
    if (!strstr(d, "gpt2/tokenizer.json") || !strstr(d, needle))
        fail_msg("error detail '%s' lacks '%s'", d, needle);
}

/* ---- the alphabet ---------------------------------------------------------------------------- */

static void test_alphabet(void **state) {
    (void)state;
    json_t *j = gpt2_json(NULL, NULL);
    cce_tokenizer *t;
    assert_cce_ok(parse(j, NULL, &t));
    assert_int_equal(cce_tokenizer_kind_of(t), CCE_TOKENIZER_BYTELEVEL);
    assert_int_equal(cce_tokenizer_vocab_size(t), 257);
    /* Known characters of GPT-2's table. */
    assert_string_equal(cce_tokenizer_piece(t, ' '), G);
    assert_string_equal(cce_tokenizer_piece(t, '\n'), "\xC4\x8A"); /* U+010A */
    assert_string_equal(cce_tokenizer_piece(t, 0), "\xC4\x80");    /* U+0100 */
    assert_string_equal(cce_tokenizer_piece(t, 0x7F), "\xC4\xA1"); /* U+0121 */
    assert_string_equal(cce_tokenizer_piece(t, 0xAD), "\xC5\x83"); /* U+0143 */
    assert_string_equal(cce_tokenizer_piece(t, 0xA1), "\xC2\xA1"); /* stands for itself */
    assert_string_equal(cce_tokenizer_piece(t, 'A'), "A");
    /* Every byte alone encodes to its character's piece and decodes back; the 256 characters
     * are distinct and all below U+0144. */
    for (unsigned b = 0; b < 256; b++) {
        char text[1] = {(char)b};
        int32_t *ids;
        size_t n;
        assert_cce_ok(cce_tokenizer_encode(t, text, 1, 0, 0, &ids, &n));
        assert_int_equal(n, 1);
        assert_int_equal(ids[0], (int32_t)b);
        size_t len;
        const char *p = cce_tokenizer_decode(t, -1, ids[0], &len);
        assert_int_equal(len, 1);
        assert_int_equal((unsigned char)p[0], b);
        free(ids);
        assert_int_equal(bytelevel_byte(bytelevel_char((unsigned char)b)), (int)b);
        assert_true(bytelevel_char((unsigned char)b) < 0x144);
    }
    assert_int_equal(bytelevel_byte(0x144), -1);
    assert_int_equal(bytelevel_byte(' '), -1);
    /* No merges: every byte is a token, whatever the text. */
    assert_int_equal(expect_roundtrip(t, "h\xC3\xA9 \xF0\x9F\x98\x80", 7), 7);
    cce_tokenizer_free(t);
    json_decref(j);
}

/* ---- the pre-tokenizer patterns -------------------------------------------------------------- */

/* The words of text under p, joined by '|'. */
static char *split(cce_pretokenizer p, const char *text) {
    size_t len = strlen(text);
    char *out = malloc(2 * len + 1);
    size_t o = 0;
    for (size_t pos = 0; pos < len;) {
        size_t end = pretok_next(p, text, len, pos);
        assert_true(end > pos && end <= len);
        if (pos) out[o++] = '|';
        memcpy(out + o, text + pos, end - pos);
        o += end - pos;
        pos = end;
    }
    out[o] = 0;
    return out;
}

static void expect_split(cce_pretokenizer p, const char *text, const char *want) {
    char *got = split(p, text);
    if (strcmp(got, want) != 0)
        fail_msg("pattern %s on '%s': got '%s', expected '%s'", pretok_name(p), text, got, want);
    free(got);
}

static void test_pretokenizer(void **state) {
    (void)state;
    assert_cce_ok(pretok_init());
    const cce_pretokenizer P = CCE_PRETOK_GPT2, L3 = CCE_PRETOK_LLAMA3, Q = CCE_PRETOK_QWEN2;
    /* Contractions (case-sensitive in GPT-2's pattern), words with their leading space. */
    expect_split(P, "I'm don't they're we've you'll he'd it's",
                 "I|'m| don|'t| they|'re| we|'ve| you|'ll| he|'d| it|'s");
    expect_split(P, "I'M DON'T", "I|'|M| DON|'|T");
    /* Numbers, punctuation, multiple spaces, and \s+(?!\S) leaving one space for the next word. */
    expect_split(P, "abc123 4567x", "abc|123| 4567|x");
    expect_split(P, "Hello,  world!!  ", "Hello|,| | world|!!|  ");
    expect_split(P, "a\n\nb \t c", "a|\n|\n|b| \t| c");
    expect_split(P, "$5.00 (ok)", "$|5|.|00| (|ok|)");
    /* Non-ASCII letters: é, ß, Cyrillic, CJK; emoji and other symbols are punctuation. */
    expect_split(P,
                 "caf\xC3\xA9 stra\xC3\x9F"
                 "e",
                 "caf\xC3\xA9| stra\xC3\x9F"
                 "e");
    expect_split(P, "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 \xD0\xBC\xD0\xB8\xD1\x80",
                 "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82| \xD0\xBC\xD0\xB8\xD1\x80");
    expect_split(P, "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x80\x82",
                 "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E|\xE3\x80\x82");
    expect_split(P, "hi \xF0\x9F\x98\x80\xF0\x9F\x98\x80!",
                 "hi| \xF0\x9F\x98\x80\xF0\x9F\x98\x80!");
    /* Classes where glibc's alpha differs from \p{L}: combining marks (U+0301, Devanagari vowel
     * sign U+093F) are not letters; non-ASCII digits (U+0967, fullwidth U+FF11), letter numbers
     * (U+2160) and other numbers (U+00B2, U+00BD) are \p{N}; circled letters (U+24B6) are
     * symbols. */
    expect_split(P, "cafe\xCC\x81", "cafe|\xCC\x81");
    expect_split(P, "\xE0\xA4\x95\xE0\xA4\xBF", "\xE0\xA4\x95|\xE0\xA4\xBF");
    expect_split(P, "ab\xE0\xA5\xA7\xE0\xA5\xA8", "ab|\xE0\xA5\xA7\xE0\xA5\xA8");
    expect_split(P, "\xEF\xBC\xA1\xEF\xBC\x91", "\xEF\xBC\xA1|\xEF\xBC\x91");
    expect_split(P, "x\xE2\x85\xA0 \xC2\xBD", "x|\xE2\x85\xA0| \xC2\xBD");
    expect_split(P, "m\xC2\xB2", "m|\xC2\xB2");
    expect_split(P,
                 "\xE2\x92\xB6"
                 "b",
                 "\xE2\x92\xB6|b");
    /* No-break spaces are \s (glibc's iswspace leaves them out). */
    expect_split(P,
                 "a\xC2\xA0\xC2\xA0"
                 "b",
                 "a|\xC2\xA0|\xC2\xA0|b");
    expect_split(P,
                 "a\xC2\xA0"
                 "b",
                 "a|\xC2\xA0|b");
    /* Bytes that are not UTF-8 are single "other" characters. */
    expect_split(P,
                 "a\xFF\xFE"
                 "b",
                 "a|\xFF\xFE|b");

    /* Llama 3: case-insensitive contractions, a non-letter glued to the next letters, numbers in
     * threes, punctuation with its line ends, whitespace up to the last line end. */
    expect_split(L3, "I'M DON'T it\xC5\xBF", "I|'M| DON|'T| it\xC5\xBF");
    expect_split(L3, "I'\xC5\xBF", "I|'\xC5\xBF");
    expect_split(L3, "12345 6", "123|45| |6");
    expect_split(L3, "Hello, world!\n\nNew", "Hello|,| world|!\n\n|New");
    expect_split(L3, "a  \n  b", "a|  \n| | b");
    expect_split(L3, "$hello \tword", "$hello| |\tword");
    expect_split(L3, "x\r\ny", "x|\r\n|y");
    /* Qwen2: numbers one digit at a time. */
    expect_split(Q, "12345 6", "1|2|3|4|5| |6");
    expect_split(Q, "I'M", "I|'M");
    assert_string_equal(pretok_name(Q), "qwen2");
}

/* ---- merges by rank -------------------------------------------------------------------------- */

static void test_rank_merges(void **state) {
    (void)state;
    /* ids: 256 Ġt, 257 he, 258 Ġthe, 259 th, 260 the, 261 ca, 262 ab, 263 aa, 264 aaaa */
    static const char *const extra[] = {G "t", "he", G "the", "th",   "the",
                                        "ca",  "ab", "aa",    "aaaa", NULL};
    enum { GT = 256, HE, GTHE, TH, THE, CA, AB, AA, AAAA, EOT };
    static const char *const merges[] = {G " t", "h e", G "t he", "t h",   "th e",
                                         "c a",  "a b", "a a",    "aa aa", NULL};
    json_t *j = gpt2_json(extra, merges);
    cce_tokenizer *t;
    assert_cce_ok(parse(j, NULL, &t));
    /* "the": he (rank 1) before th (rank 3); "t he" is no merge. */
    expect_ids(t, "the", (int32_t[]){'t', HE}, 2);
    /* " the": Ġt (0), then he (1), then Ġt he (2). */
    expect_ids(t, " the", (int32_t[]){GTHE}, 1);
    /* "cab": ca (rank 5) before ab (rank 6). */
    expect_ids(t, "cab", (int32_t[]){CA, 'b'}, 2);
    /* Equal ranks: leftmost first, so "aaaaa" is aa aa a -> aaaa a. */
    expect_ids(t, "aaaaa", (int32_t[]){AAAA, 'a'}, 2);
    expect_ids(t, "aaa", (int32_t[]){AA, 'a'}, 2);
    /* Merges stay inside a word: "t he" is the words "t" and " he" (Ġ he: no "Ġ h" merge). */
    expect_ids(t, "t he", (int32_t[]){'t', ' ', HE}, 3);
    cce_tokenizer_free(t);

    /* Swapping the ranks of "h e" and "t h" swaps the result for "the"; "c a" / "a b" for
     * "cab". */
    static const char *const swapped[] = {G " t", "t h", G "t he", "h e",   "th e",
                                          "a b",  "c a", "a a",    "aa aa", NULL};
    json_decref(j);
    j = gpt2_json(extra, swapped);
    assert_cce_ok(parse(j, NULL, &t));
    expect_ids(t, "the", (int32_t[]){THE}, 1);
    expect_ids(t, "cab", (int32_t[]){'c', AB}, 2);
    /* " the": Ġt (0), th cannot form (t is inside Ġt), he (3), Ġt he (2 once he exists). */
    expect_ids(t, " the", (int32_t[]){GTHE}, 1);
    cce_tokenizer_free(t);

    /* ignore_merges: a word that is a piece is that piece, whatever the merges say. */
    json_object_set_new(json_object_get(j, "model"), "ignore_merges", json_true());
    json_array_remove(json_object_get(json_object_get(j, "model"), "merges"), 4); /* th e */
    assert_cce_ok(parse(j, NULL, &t));
    expect_ids(t, "the", (int32_t[]){THE}, 1);
    cce_tokenizer_free(t);
    json_object_set_new(json_object_get(j, "model"), "ignore_merges", json_false());
    assert_cce_ok(parse(j, NULL, &t));
    expect_ids(t, "the", (int32_t[]){TH, 'e'}, 2);
    cce_tokenizer_free(t);
    json_decref(j);
}

/* ---- real text: merges learned here, a naive reference encoder ------------------------------ */

typedef struct learned {
    int32_t n;     /* pieces: 256 bytes, then one per merge result */
    char **pieces; /* [n] alphabet form */
    int32_t n_merges;
    int32_t *merges; /* [n_merges, 2] */
} learned;

static char *alpha_string(const unsigned char *s, size_t len) {
    char *out = malloc(2 * len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c[3];
        alpha(s[i], c);
        size_t cl = strlen(c);
        memcpy(out + o, c, cl);
        o += cl;
    }
    out[o] = 0;
    return out;
}

/* Learns up to max_merges merges on text (GPT-2 words of bytes), most frequent pair first. */
static learned learn(const char *text, size_t len, int max_merges) {
    learned L = {0};
    int32_t cap = 256 + max_merges;
    L.pieces = calloc((size_t)cap, sizeof *L.pieces);
    L.merges = malloc((size_t)max_merges * 2 * sizeof *L.merges);
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        L.pieces[b] = alpha_string(&c, 1);
    }
    L.n = 256;
    int32_t *seq = malloc((2 * len + 1) * sizeof *seq); /* symbols, -1 between words */
    size_t n = 0;
    for (size_t pos = 0; pos < len;) {
        size_t end = pretok_next(CCE_PRETOK_GPT2, text, len, pos);
        for (size_t i = pos; i < end; i++) seq[n++] = (unsigned char)text[i];
        seq[n++] = -1;
        pos = end;
    }
    int32_t *count = malloc((size_t)cap * (size_t)cap * sizeof *count); /* [cap, cap] */
    for (int k = 0; k < max_merges; k++) {
        memset(count, 0, (size_t)cap * (size_t)cap * sizeof *count);
        int32_t best = 1, ba = -1, bb = -1;
        for (size_t i = 0; i + 1 < n; i++) {
            if (seq[i] < 0 || seq[i + 1] < 0) continue;
            int32_t c = ++count[seq[i] * cap + seq[i + 1]];
            if (c > best ||
                (c == best && ba >= 0 && (seq[i] < ba || (seq[i] == ba && seq[i + 1] < bb)))) {
                best = c, ba = seq[i], bb = seq[i + 1];
            }
        }
        if (ba < 0) break;
        size_t la = strlen(L.pieces[ba]), lb = strlen(L.pieces[bb]);
        char *joined = malloc(la + lb + 1);
        memcpy(joined, L.pieces[ba], la);
        memcpy(joined + la, L.pieces[bb], lb + 1);
        int32_t id = -1;
        for (int32_t q = 0; q < L.n && id < 0; q++)
            if (!strcmp(L.pieces[q], joined)) id = q;
        if (id < 0)
            L.pieces[id = L.n++] = joined;
        else
            free(joined);
        L.merges[2 * L.n_merges] = ba;
        L.merges[2 * L.n_merges + 1] = bb;
        L.n_merges++;
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            if (i + 1 < n && seq[i] == ba && seq[i + 1] == bb) {
                seq[o++] = id;
                i++;
            } else {
                seq[o++] = seq[i];
            }
        }
        n = o;
    }
    free(count);
    free(seq);
    return L;
}

static void learned_free(learned *L) {
    for (int32_t i = 0; i < L->n; i++) free(L->pieces[i]);
    free(L->pieces);
    free(L->merges);
}

/* The tokenizer of L plus <|endoftext|> (bos = eos). */
static cce_tokenizer *learned_tokenizer(const learned *L, cce_pretokenizer pretok, uint32_t flags) {
    const char **pieces = malloc(((size_t)L->n + 1) * sizeof *pieces);
    for (int32_t i = 0; i < L->n; i++) pieces[i] = L->pieces[i];
    pieces[L->n] = "<|endoftext|>";
    int32_t eot = L->n;
    uint8_t special = CCE_ADDED_SPECIAL;
    cce_tokenizer_spec sp = {.kind = CCE_TOKENIZER_BYTELEVEL,
                             .vocab_size = L->n + 1,
                             .pieces = pieces,
                             .n_merges = L->n_merges,
                             .merges = L->merges,
                             .bos_id = eot,
                             .eos_id = eot,
                             .unk_id = -1,
                             .pad_id = -1,
                             .n_added = 1,
                             .added_ids = &eot,
                             .added_flags = &special,
                             .pretok = pretok,
                             .flags = flags};
    cce_tokenizer *t;
    assert_cce_ok(cce_tokenizer_new_spec(&sp, &t));
    free(pieces);
    return t;
}

/* Naive reference: per word, repeatedly merge the adjacent pair of lowest rank (leftmost). */
static int32_t *reference_encode(const learned *L, cce_pretokenizer pretok, const char *text,
                                 size_t len, size_t *n_out) {
    int32_t V = L->n;
    int32_t *rank = malloc((size_t)V * (size_t)V * sizeof *rank); /* [V, V] */
    int32_t *result = malloc((size_t)V * (size_t)V * sizeof *result);
    for (size_t i = 0; i < (size_t)V * (size_t)V; i++) rank[i] = -1;
    for (int32_t k = 0; k < L->n_merges; k++) {
        int32_t a = L->merges[2 * k], b = L->merges[2 * k + 1];
        rank[a * V + b] = k;
        char joined[512];
        snprintf(joined, sizeof joined, "%s%s", L->pieces[a], L->pieces[b]);
        for (int32_t q = 0; q < V; q++)
            if (!strcmp(L->pieces[q], joined)) result[a * V + b] = q;
    }
    int32_t *out = malloc((len + 1) * sizeof *out), *w = malloc((len + 1) * sizeof *w);
    size_t n = 0;
    for (size_t pos = 0; pos < len;) {
        size_t end = pretok_next(pretok, text, len, pos), m = 0;
        for (size_t i = pos; i < end; i++) w[m++] = (unsigned char)text[i];
        for (;;) {
            size_t at = m;
            int32_t best = -1;
            for (size_t i = 0; i + 1 < m; i++) {
                int32_t r = rank[w[i] * V + w[i + 1]];
                if (r >= 0 && (best < 0 || r < best)) best = r, at = i;
            }
            if (best < 0) break;
            w[at] = result[w[at] * V + w[at + 1]];
            memmove(w + at + 1, w + at + 2, (m - at - 2) * sizeof *w);
            m--;
        }
        memcpy(out + n, w, m * sizeof *w);
        n += m;
        pos = end;
    }
    free(w);
    free(rank);
    free(result);
    *n_out = n;
    return out;
}

static void expect_reference(const learned *L, const cce_tokenizer *t, cce_pretokenizer pretok,
                             const char *text, size_t len) {
    size_t nr, nt;
    int32_t *r = reference_encode(L, pretok, text, len, &nr), *ids;
    assert_cce_ok(cce_tokenizer_encode(t, text, len, 0, 0, &ids, &nt));
    size_t k = 0;
    while (k < nr && k < nt && r[k] == ids[k]) k++;
    if (k < nr || k < nt)
        fail_msg("token %zu differs from the reference (%zu vs %zu tokens)", k, nt, nr);
    free(r);
    free(ids);
}

static char *read_mirror(const char *rel, size_t max, size_t *len) {
    const char *p = test_require_mirror_file(rel);
    if (!p) return NULL;
    char *data = test_read_file(p, len);
    if (*len > max) *len = max;
    return data;
}

/* Random text: valid UTF-8 of 1-4 bytes per character from several scripts, or raw bytes. */
static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint64_t rnd(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ULL;
}

static size_t random_text(char *buf, size_t cap, int raw) {
    size_t o = 0;
    while (o + 4 < cap) {
        if (raw) {
            buf[o++] = (char)(rnd() & 0xFF);
            continue;
        }
        static const uint32_t starts[] = {0x20,  0x20,   0x30,   0x61,   0xC0,    0x400,
                                          0x900, 0x3040, 0x4E00, 0xFF10, 0x1F600, 0x2160};
        uint32_t cp = starts[rnd() % 12] + (uint32_t)(rnd() % 64);
        if (rnd() % 8 == 0) cp = " \n\t'"[rnd() % 4];
        if (cp < 0x80) {
            buf[o++] = (char)cp;
        } else if (cp < 0x800) {
            buf[o++] = (char)(0xC0 | cp >> 6), buf[o++] = (char)(0x80 | (cp & 63));
        } else if (cp < 0x10000) {
            buf[o++] = (char)(0xE0 | cp >> 12), buf[o++] = (char)(0x80 | ((cp >> 6) & 63));
            buf[o++] = (char)(0x80 | (cp & 63));
        } else {
            buf[o++] = (char)(0xF0 | cp >> 18), buf[o++] = (char)(0x80 | ((cp >> 12) & 63));
            buf[o++] = (char)(0x80 | ((cp >> 6) & 63)), buf[o++] = (char)(0x80 | (cp & 63));
        }
    }
    return o;
}

static void test_real_text(void **state) {
    (void)state;
    assert_cce_ok(pretok_init());
    size_t len, alen;
    char *text = read_mirror("text/tinystories_val.txt", 200000, &len);
    if (!text) return;
    char *alice = read_mirror("text/alice29.txt", 60000, &alen);
    if (!alice) return;
    learned L = learn(text, 30000, 300);
    assert_true(L.n_merges == 300 && L.n > 256 + 250);
    static const cce_pretokenizer pats[] = {CCE_PRETOK_GPT2, CCE_PRETOK_LLAMA3, CCE_PRETOK_QWEN2};
    for (int p = 0; p < 3; p++) {
        cce_tokenizer *t = learned_tokenizer(&L, pats[p], 0);
        expect_reference(&L, t, pats[p], text, len);
        expect_reference(&L, t, pats[p], alice, alen);
        size_t n = expect_roundtrip(t, text, len);
        assert_true(n < len / 2); /* the merges compress the text they were learned on */
        expect_roundtrip(t, alice, alen);
        char buf[4096];
        for (int k = 0; k < 40; k++) {
            size_t bl = random_text(buf, 64 + rnd() % (sizeof buf - 64), k % 4 == 3);
            expect_roundtrip(t, buf, bl);
            expect_reference(&L, t, pats[p], buf, bl);
        }
        cce_tokenizer_free(t);
    }
    /* add_prefix_space: a space before the text; decode after BOS drops it again. */
    cce_tokenizer *t = learned_tokenizer(&L, CCE_PRETOK_GPT2, CCE_TOK_ADD_PREFIX_SPACE);
    expect_roundtrip(t, "Once upon a time", 16);
    int32_t *a, *b;
    size_t na, nb;
    assert_cce_ok(cce_tokenizer_encode(t, "time", 4, 0, 0, &a, &na));
    assert_cce_ok(cce_tokenizer_encode(t, " time", 5, 0, 0, &b, &nb));
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof *a);
    free(a), free(b);
    cce_tokenizer_free(t);
    learned_free(&L);
    free(text);
    free(alice);
}

/* ---- special and added tokens, missing characters ------------------------------------------- */

static void test_special_tokens(void **state) {
    (void)state;
    static const char *const extra[] = {"hi", G "hi", "<pad>", NULL};
    static const char *const merges[] = {"h i", G " hi", NULL};
    enum { HI = 256, GHI, PAD, EOT };
    json_t *j = gpt2_json(extra, merges);
    cce_tokenizer *t;
    assert_cce_ok(parse(j, NULL, &t));
    /* GPT-2: no UNK, BOS = EOS = <|endoftext|> (GPT2Tokenizer's default without a config). */
    assert_int_equal(cce_tokenizer_bos(t), EOT);
    assert_int_equal(cce_tokenizer_eos(t), EOT);
    assert_int_equal(cce_tokenizer_unk(t), -1);
    /* The special token written in the text is split out; the text around it is words. */
    expect_ids(t, "hi<|endoftext|> hi", (int32_t[]){HI, EOT, GHI}, 3);
    expect_ids(t, "<|endoftext|><|endoftext|>", (int32_t[]){EOT, EOT}, 2);
    expect_ids(t, "<|endoftext|",
               (int32_t[]){'<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e', 'x', 't', '|'}, 12);
    int32_t *ids;
    size_t n;
    assert_cce_ok(cce_tokenizer_encode(t, "hi", 2, 1, 1, &ids, &n));
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], EOT);
    assert_int_equal(ids[2], EOT);
    free(ids);
    size_t len;
    assert_memory_equal(cce_tokenizer_decode(t, HI, EOT, &len), "<|endoftext|>", 13);
    cce_tokenizer_free(t);

    /* tokenizer_config.json: no BOS (as Qwen2), EOS and PAD named; windows start with EOS. */
    assert_cce_ok(parse(j,
                        "{\"bos_token\": null, \"eos_token\": \"<|endoftext|>\", "
                        "\"pad_token\": {\"content\": \"<pad>\"}}",
                        &t));
    assert_int_equal(cce_tokenizer_bos(t), EOT);
    assert_int_equal(cce_tokenizer_pad(t), PAD);
    cce_tokenizer_spec sp;
    cce_tokenizer_get_spec(t, &sp);
    assert_int_equal(sp.bos_id, -1);
    cce_tokenizer_free(t);

    /* An added token with rstrip/lstrip swallows the spaces around it. */
    json_t *added = json_object_get(j, "added_tokens");
    json_array_append_new(added,
                          json_pack("{s:i, s:s, s:b, s:b, s:b, s:b}", "id", HI, "content", "hi",
                                    "lstrip", 1, "rstrip", 1, "normalized", 0, "special", 0));
    assert_cce_ok(parse(j, NULL, &t));
    expect_ids(t, "a  hi  b", (int32_t[]){'a', HI, 'b'}, 3);
    cce_tokenizer_free(t);
    json_array_remove(added, 1);

    /* Characters missing from the vocab: dropped without UNK (as the Hugging Face library does),
     * UNK with one, one UNK per run with fuse_unk. */
    json_t *vocab = json_object_get(json_object_get(j, "model"), "vocab");
    char c[3];
    alpha('x', c);
    json_object_del(vocab, c);
    json_object_set_new(vocab, "<unk>", json_integer('x'));
    assert_cce_ok(parse(j, NULL, &t));
    expect_ids(t, "axxb", (int32_t[]){'a', 'b'}, 2);
    cce_tokenizer_free(t);
    json_object_set_new(json_object_get(j, "model"), "unk_token", json_string("<unk>"));
    assert_cce_ok(parse(j, NULL, &t));
    assert_int_equal(cce_tokenizer_unk(t), 'x');
    expect_ids(t, "axxb", (int32_t[]){'a', 'x', 'x', 'b'}, 4);
    cce_tokenizer_free(t);
    json_object_set_new(json_object_get(j, "model"), "fuse_unk", json_true());
    assert_cce_ok(parse(j, NULL, &t));
    expect_ids(t, "axxbx", (int32_t[]){'a', 'x', 'b', 'x'}, 4);
    cce_tokenizer_free(t);
    json_decref(j);

    /* Fingerprints differ between kinds with the same pieces. */
    const char *pieces[4] = {"<unk>", "<s>", "</s>", "a"};
    cce_tokenizer_spec s1 = {.kind = CCE_TOKENIZER_SENTENCEPIECE,
                             .vocab_size = 4,
                             .pieces = pieces,
                             .bos_id = 1,
                             .eos_id = 2,
                             .unk_id = 0,
                             .pad_id = -1};
    cce_tokenizer *a, *b, *c2;
    assert_cce_ok(cce_tokenizer_new_spec(&s1, &a));
    s1.kind = CCE_TOKENIZER_BYTELEVEL;
    assert_cce_ok(cce_tokenizer_new_spec(&s1, &b));
    float scores[4] = {0};
    assert_cce_ok(cce_tokenizer_new(4, pieces, scores, &c2));
    assert_true(cce_tokenizer_fingerprint(a) == cce_tokenizer_fingerprint(c2));
    assert_true(cce_tokenizer_is_llama2c(a));
    assert_true(cce_tokenizer_fingerprint(a) != cce_tokenizer_fingerprint(b));
    assert_int_equal(cce_tokenizer_check_llama2c(b), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "ByteLevel"));
    cce_tokenizer_free(a), cce_tokenizer_free(b), cce_tokenizer_free(c2);
}

/* ---- storage and export ---------------------------------------------------------------------- */

static void expect_same_ids(const cce_tokenizer *a, const cce_tokenizer *b, const char *text,
                            size_t len) {
    int32_t *x, *y;
    size_t nx, ny;
    assert_cce_ok(cce_tokenizer_encode(a, text, len, 1, 1, &x, &nx));
    assert_cce_ok(cce_tokenizer_encode(b, text, len, 1, 1, &y, &ny));
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, nx * sizeof *x);
    free(x), free(y);
}

static void test_storage_and_export(void **state) {
    (void)state;
    assert_cce_ok(pretok_init());
    size_t len;
    char *text = read_mirror("text/tinystories_val.txt", 20000, &len);
    if (!text) return;
    learned L = learn(text, len, 120);
    cce_tokenizer *tok = learned_tokenizer(&L, CCE_PRETOK_LLAMA3, CCE_TOK_IGNORE_MERGES);
    cce_synth_options o;
    assert_cce_ok(cce_synth_preset("tiny", &o));
    o.cfg.vocab_size = cce_tokenizer_vocab_size(tok);
    o.seed = 3;
    cce_model *m, *r, *h;
    assert_cce_ok(cce_synth_model(&o, &m));
    cce_model_set_tokenizer(m, tok);
    const char *dir = test_scratch_dir("tokenizer_bytelevel");
    char path[4096], hf[4096];
    snprintf(path, sizeof path, "%s", test_path(dir, "bl.h5"));
    snprintf(hf, sizeof hf, "%s", test_path(dir, "hf"));

    /* Save and open: the same tokenizer (fingerprint, spec) and the same ids. */
    assert_cce_ok(cce_model_save(m, path, NULL));
    assert_cce_ok(cce_model_open(path, &r));
    const cce_tokenizer *rt = cce_model_tokenizer(r);
    assert_non_null(rt);
    assert_true(cce_tokenizer_fingerprint(rt) == cce_tokenizer_fingerprint(tok));
    cce_tokenizer_spec a, b;
    cce_tokenizer_get_spec(tok, &a);
    cce_tokenizer_get_spec(rt, &b);
    assert_int_equal(b.kind, CCE_TOKENIZER_BYTELEVEL);
    assert_int_equal(b.pretok, CCE_PRETOK_LLAMA3);
    assert_int_equal(b.flags, CCE_TOK_IGNORE_MERGES);
    assert_int_equal(b.n_merges, a.n_merges);
    assert_memory_equal(b.merges, a.merges, (size_t)a.n_merges * 2 * sizeof *a.merges);
    assert_int_equal(b.n_added, 1);
    assert_int_equal(b.added_ids[0], a.added_ids[0]);
    assert_int_equal(b.added_flags[0], CCE_ADDED_SPECIAL);
    assert_int_equal(b.bos_id, a.bos_id);
    assert_int_equal(b.unk_id, -1);
    expect_same_ids(tok, rt, text, len);
    cce_model_free(r);

    /* A damaged "hf-bpe" group is a format error naming the file and the group. */
    static const char *const damage[][2] = {{"kind", "wordpiece"}, {"pretokenizer", "bert"}};
    for (int k = 0; k < 3; k++) {
        char copy[4096];
        snprintf(copy, sizeof copy, "%s", test_path(dir, "damaged.h5"));
        size_t fl;
        char *bytes = test_read_file(path, &fl);
        test_write_file(copy, bytes, fl);
        free(bytes);
        hid_t f = H5Fopen(copy, H5F_ACC_RDWR, H5P_DEFAULT), g = H5Gopen2(f, "/tokenizer", 0);
        assert_true(f >= 0 && g >= 0);
        if (k < 2) {
            assert_true(H5Adelete(g, damage[k][0]) >= 0);
            hid_t type = H5Tcopy(H5T_C_S1), space = H5Screate(H5S_SCALAR);
            H5Tset_size(type, strlen(damage[k][1]));
            hid_t a = H5Acreate2(g, damage[k][0], type, space, H5P_DEFAULT, H5P_DEFAULT);
            assert_true(a >= 0 && H5Awrite(a, type, damage[k][1]) >= 0);
            H5Aclose(a), H5Sclose(space), H5Tclose(type);
        } else { /* merges that name pieces outside the vocabulary */
            hid_t d = H5Dopen2(g, "merges", H5P_DEFAULT);
            int32_t bad[2] = {0, 1 << 20};
            hsize_t start[2] = {0, 0}, count[2] = {1, 2};
            hid_t fs = H5Dget_space(d), ms = H5Screate_simple(2, count, NULL);
            H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
            assert_true(H5Dwrite(d, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, bad) >= 0);
            H5Sclose(ms), H5Sclose(fs), H5Dclose(d);
        }
        H5Gclose(g), H5Fclose(f);
        cce_model *dm = NULL;
        cce_status st = cce_model_open(copy, &dm);
        if (st == CCE_OK) { /* the tokenizer may be read lazily */
            cce_model_free(dm);
            fail_msg("damage %d: the model opened", k);
        }
        assert_int_equal(st, CCE_ERR_FORMAT);
        assert_non_null(strstr(cce_error_detail(), "/tokenizer"));
        assert_non_null(strstr(cce_error_detail(), k == 0   ? "kind \"wordpiece\""
                                                   : k == 1 ? "pretokenizer \"bert\""
                                                            : "outside [0,"));
    }

    /* Export hf and import: tokenizer.json (no tokenizer.bin) gives the same tokenizer. */
    assert_cce_ok(cce_export_hf(m, hf, NULL));
    assert_true(test_file_exists(test_path(hf, "tokenizer.json")));
    assert_false(test_file_exists(test_path(hf, "tokenizer.bin")));
    assert_cce_ok(cce_import_hf(hf, NULL, &h));
    assert_true(cce_tokenizer_fingerprint(cce_model_tokenizer(h)) ==
                cce_tokenizer_fingerprint(tok));
    expect_same_ids(tok, cce_model_tokenizer(h), text, len);
    expect_same_ids(tok, cce_model_tokenizer(h), "x<|endoftext|>y 12345", 21);
    cce_model_free(h);

    /* A llama2.c tokenizer.bin cannot hold it. */
    assert_int_equal(cce_export_llama2c_tokenizer(tok, test_path(dir, "tok.bin")), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "ByteLevel"));
    assert_false(test_file_exists(test_path(dir, "tok.bin")));
    cce_model_free(m);

    /* tokenizer.json text round trips for every pattern and prefix setting. */
    for (int p = 0; p < CCE_PRETOK_COUNT; p++)
        for (uint32_t flags = 0; flags < 8; flags++) {
            cce_tokenizer *t = learned_tokenizer(&L, (cce_pretokenizer)p, flags), *u;
            char *json;
            assert_cce_ok(cce_tokenizer_hf_json(t, &json));
            assert_cce_ok(cce_tokenizer_parse_hf(json, strlen(json), NULL, 0, "rt", 0, &u));
            assert_true(cce_tokenizer_fingerprint(t) == cce_tokenizer_fingerprint(u));
            expect_same_ids(t, u, text, 4000);
            free(json);
            cce_tokenizer_free(t);
            cce_tokenizer_free(u);
        }
    learned_free(&L);
    free(text);
}

/* ---- bad input ------------------------------------------------------------------------------- */

static json_t *split_pre(const char *regex, const char *behavior) {
    return json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b, s:b}]}", "type",
                     "Sequence", "pretokenizers", "type", "Split", "pattern", "Regex", regex,
                     "behavior", behavior, "invert", 0, "type", "ByteLevel", "add_prefix_space", 0,
                     "trim_offsets", 1, "use_regex", 0);
}

#define BAD(edit, config, needle)                                                                  \
    do {                                                                                           \
        json_t *j = gpt2_json(extra, merges);                                                      \
        json_t *model = json_object_get(j, "model");                                               \
        (void)model;                                                                               \
        edit;                                                                                      \
        expect_error(j, config, needle);                                                           \
        json_decref(j);                                                                            \
    } while (0)

static void test_bad_input(void **state) {
    (void)state;
    static const char *const extra[] = {"ab", "abc", NULL};
    static const char *const merges[] = {"a b", "ab c", NULL};
    /* The fixture itself, and a Split with each known pattern, are fine. */
    json_t *j = gpt2_json(extra, merges);
    cce_tokenizer *t;
    assert_cce_ok(parse(j, NULL, &t));
    cce_tokenizer_free(t);
    for (int p = 1; p < CCE_PRETOK_COUNT; p++) {
        json_object_set_new(j, "pre_tokenizer",
                            split_pre(pretok_regex((cce_pretokenizer)p), "Isolated"));
        assert_cce_ok(parse(j, NULL, &t));
        cce_tokenizer_spec sp;
        cce_tokenizer_get_spec(t, &sp);
        assert_int_equal(sp.pretok, p);
        cce_tokenizer_free(t);
    }
    json_decref(j);
    /* Pre-tokenizers. */
    BAD(json_object_set_new(j, "pre_tokenizer", split_pre("\\s+|\\w+", "Isolated")), NULL,
        "pattern '\\s+|\\w+' is not supported");
    BAD(json_object_set_new(j, "pre_tokenizer",
                            split_pre(pretok_regex(CCE_PRETOK_GPT2), "Removed")),
        NULL, "only behavior \"Isolated\"");
    BAD(json_object_set_new(j, "pre_tokenizer",
                            json_pack("{s:s, s:[{s:s, s:b}, {s:s, s:{s:s}, s:s}]}", "type",
                                      "Sequence", "pretokenizers", "type", "ByteLevel", "use_regex",
                                      0, "type", "Split", "pattern", "Regex",
                                      pretok_regex(CCE_PRETOK_LLAMA3), "behavior", "Isolated")),
        NULL, "Split must come first");
    BAD((json_object_set_new(j, "pre_tokenizer",
                             split_pre(pretok_regex(CCE_PRETOK_LLAMA3), "Isolated")),
         json_object_set_new(
             json_array_get(json_object_get(json_object_get(j, "pre_tokenizer"), "pretokenizers"),
                            1),
             "use_regex", json_true())),
        NULL, "split twice");
    BAD(json_object_set_new(j, "pre_tokenizer",
                            json_pack("{s:s, s:{s:s}, s:s}", "type", "Split", "pattern", "Regex",
                                      pretok_regex(CCE_PRETOK_GPT2), "behavior", "Isolated")),
        NULL, "a Split pre-tokenizer without a ByteLevel pre-tokenizer");
    BAD(json_object_set_new(j, "decoder", json_null()), NULL, "needs the ByteLevel decoder");
    BAD(json_object_set_new(j, "pre_tokenizer", json_null()), NULL,
        "a ByteLevel decoder without a ByteLevel pre-tokenizer");
    BAD(json_object_set_new(j, "normalizer",
                            json_pack("{s:s, s:s}", "type", "Prepend", "prepend", "\xE2\x96\x81")),
        NULL, "mixes ByteLevel parts");
    BAD(json_object_set_new(j, "normalizer", json_pack("{s:s}", "type", "NFKC")), NULL,
        "normalizer 'NFKC' is not supported");
    /* ByteLevel with byte fallback makes no sense. */
    BAD(json_object_set_new(model, "byte_fallback", json_true()), NULL,
        "byte_fallback with a ByteLevel pre-tokenizer makes no sense");
    BAD(json_object_set_new(model, "type", json_string("Unigram")), NULL,
        "model type 'Unigram' is not supported");
    /* Merges. */
    BAD(json_array_append_new(json_object_get(model, "merges"), json_string("a zz")), NULL,
        "merge 2 ('a' 'zz') names unknown token 'zz'");
    BAD(json_array_append_new(json_object_get(model, "merges"), json_string("b a")), NULL,
        "merge 2 ('b' 'a') makes 'ba', which is not in the vocab");
    BAD(json_array_append_new(json_object_get(model, "merges"), json_pack("[ss]", "a", "b")), NULL,
        "tokenizer merge 2 ('a' 'b') repeats merge 0");
    /* Added and special tokens. */
    BAD(json_array_append_new(json_object_get(j, "added_tokens"),
                              json_pack("{s:i, s:s}", "id", 258, "content", "<|endoftext|>")),
        NULL, "added_tokens[1] repeats id 258");
    BAD(json_array_append_new(json_object_get(j, "added_tokens"),
                              json_pack("{s:i, s:s}", "id", 256, "content", "<|im_end|>")),
        NULL, "added token '<|im_end|>' has id 256, which is 'ab'");
    BAD(json_array_append_new(json_object_get(j, "added_tokens"),
                              json_pack("{s:i, s:s}", "id", 259, "content", "ab")),
        NULL, "duplicate piece 'ab' at ids 256 and 259");
    BAD(json_array_append_new(json_object_get(j, "added_tokens"),
                              json_pack("{s:i, s:s}", "id", 259, "content", "")),
        NULL, "added_tokens[1] is empty");
    BAD((void)0, "{\"bos_token\": null, \"eos_token\": null}", "no BOS and no EOS");
    BAD((void)0, "{\"eos_token\": \"<|im_end|>\"}", "eos_token '<|im_end|>' is not a token");
    BAD(json_object_set_new(model, "unk_token", json_string("<unk>")), NULL,
        "unk_token '<unk>' is not a token");
    BAD((json_object_del(j, "added_tokens"),
         json_object_del(json_object_get(model, "vocab"), "<|endoftext|>")),
        NULL, "no BOS and no EOS");
    BAD(json_object_set_new(json_object_get(model, "vocab"), "zz", json_integer(300)), NULL,
        "no token has id 259");

    /* The spec checks behind the stored form. */
    const char *pieces[3] = {"a", "b", "ab"};
    int32_t bad_merge[2] = {0, 2}, ok_merge[2] = {0, 1}, dup_added[2] = {2, 2};
    cce_tokenizer_spec sp = {.kind = CCE_TOKENIZER_BYTELEVEL,
                             .vocab_size = 3,
                             .pieces = pieces,
                             .bos_id = 2,
                             .eos_id = -1,
                             .unk_id = -1,
                             .pad_id = -1};
    sp.n_merges = 1, sp.merges = bad_merge;
    assert_int_equal(cce_tokenizer_new_spec(&sp, &t), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "not in the vocab"));
    sp.merges = ok_merge, sp.n_added = 2, sp.added_ids = dup_added;
    assert_int_equal(cce_tokenizer_new_spec(&sp, &t), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "listed twice"));
    sp.n_added = 0, sp.bos_id = 3;
    assert_int_equal(cce_tokenizer_new_spec(&sp, &t), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "bos id 3"));
    sp.bos_id = 2, sp.flags = CCE_TOK_PREFIX_FIRST;
    assert_int_equal(cce_tokenizer_new_spec(&sp, &t), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "not valid for the ByteLevel kind"));
    sp.flags = 0, sp.kind = CCE_TOKENIZER_SENTENCEPIECE;
    assert_int_equal(cce_tokenizer_new_spec(&sp, &t), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "no ranked merges"));
}

/* ---- fuzz ------------------------------------------------------------------------------------ */

/* One random edit of the fixture's structure. */
static void mutate_tree(json_t *j) {
    json_t *model = json_object_get(j, "model"), *vocab = json_object_get(model, "vocab");
    json_t *merges = json_object_get(model, "merges");
    static const char *const words[] = {"a",  "b", "ab", "abc", G,     G "a", "<|endoftext|>",
                                        "zz", "",  " ",  "a b", "\xC4"};
    const char *w1 = words[rnd() % 12], *w2 = words[rnd() % 12];
    char m[64];
    switch (rnd() % 14) {
    case 0:
        json_object_del(vocab, w1);
        break;
    case 1:
        json_object_set_new(vocab, w1, json_integer((json_int_t)(rnd() % 300) - 5));
        break;
    case 2:
        snprintf(m, sizeof m, "%s %s", w1, w2);
        json_array_insert_new(merges, rnd() % (json_array_size(merges) + 1), json_string(m));
        break;
    case 3:
        json_array_remove(merges, rnd() % (json_array_size(merges) + 1));
        break;
    case 4:
        json_object_set_new(j, "pre_tokenizer",
                            rnd() % 2 ? split_pre(pretok_regex((cce_pretokenizer)(rnd() % 4)),
                                                  rnd() % 4 ? "Isolated" : "Merged")
                                      : json_pack("{s:s, s:b, s:b}", "type", "ByteLevel",
                                                  "add_prefix_space", (int)(rnd() % 2), "use_regex",
                                                  (int)(rnd() % 2)));
        break;
    case 5:
        json_object_set_new(model, "unk_token", rnd() % 2 ? json_string(w1) : json_null());
        break;
    case 6:
        json_object_set_new(model, w1[0] ? "byte_fallback" : "fuse_unk", json_boolean(rnd() % 2));
        break;
    case 7:
        json_object_set_new(model, "ignore_merges", json_boolean(rnd() % 2));
        break;
    case 8:
        json_array_append_new(json_object_get(j, "added_tokens"),
                              json_pack("{s:I, s:s, s:b, s:b, s:b}", "id",
                                        (json_int_t)(rnd() % 262), "content", w1, "special",
                                        (int)(rnd() % 2), "lstrip", (int)(rnd() % 2), "rstrip",
                                        (int)(rnd() % 2)));
        break;
    case 9:
        json_object_set_new(j, "decoder", rnd() % 2 ? json_null() : json_string(w1));
        break;
    case 10:
        json_object_set_new(j, "normalizer", json_pack("{s:s}", "type", rnd() % 2 ? "NFC" : w1));
        break;
    case 11:
        json_array_set_new(merges, 0, json_pack("[ss]", w1, w2));
        break;
    case 12:
        json_object_set_new(vocab, w1, json_integer(257));
        break;
    default:
        json_object_del(j, rnd() % 2 ? "added_tokens" : "model");
        break;
    }
}

static void test_fuzz(void **state) {
    (void)state;
    static const char *const extra[] = {"ab", "abc", G "a", NULL};
    static const char *const merges[] = {"a b", "ab c", G " a", NULL};
    const char *texts[] = {"abc ab a<|endoftext|>ca", " a  b\n\xC3\xA9\xF0\x9F\x98\x80 12",
                           "\xFF\xFE a"};
    int ok = 0, bad = 0;
    clock_t start = clock();
    for (int iter = 0; iter < 4000 && clock() - start < 4 * CLOCKS_PER_SEC; iter++) {
        json_t *j = gpt2_json(extra, merges);
        for (int k = 1 + (int)(rnd() % 3); k > 0; k--) mutate_tree(j);
        char *text = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        size_t len = strlen(text);
        for (int k = (int)(rnd() % 3); k > 0 && len > 0; k--) { /* byte edits and truncation */
            size_t at = rnd() % len;
            if (rnd() % 4 == 0)
                len = at;
            else
                text[at] = "{}[]\",:0 ab\\"[rnd() % 12];
        }
        cce_tokenizer *t = NULL;
        const char *cfg = rnd() % 4 == 0 ? "{\"bos_token\": \"ab\", \"pad_token\": null}" : NULL;
        cce_status s = cce_tokenizer_parse_hf(text, len, cfg, cfg ? strlen(cfg) : 0,
                                              "fuzz/tokenizer.json", 0, &t);
        free(text);
        if (s != CCE_OK) {
            if (s != CCE_ERR_FORMAT) fail_msg("status %s: %s", cce_strerror(s), cce_error_detail());
            assert_non_null(strstr(cce_error_detail(), "fuzz/tokenizer.json"));
            bad++;
            continue;
        }
        ok++;
        for (int k = 0; k < 3; k++) {
            int32_t *ids;
            size_t n;
            assert_cce_ok(cce_tokenizer_encode(t, texts[k], strlen(texts[k]), 1, 1, &ids, &n));
            for (size_t i = 0; i < n; i++) {
                assert_true(ids[i] >= 0 && ids[i] < cce_tokenizer_vocab_size(t));
                size_t pl;
                cce_tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], &pl);
            }
            free(ids);
        }
        char *json;
        assert_cce_ok(cce_tokenizer_hf_json(t, &json)); /* export of whatever was accepted */
        cce_tokenizer *u;
        assert_cce_ok(cce_tokenizer_parse_hf(json, strlen(json), NULL, 0, "re", 0, &u));
        cce_tokenizer_free(u);
        free(json);
        cce_tokenizer_free(t);
    }
    print_message("fuzz: %d accepted, %d refused with CCE_ERR_FORMAT\n", ok, bad);
    assert_true(ok > 50 && bad > 50);
}

/* ---- speed ----------------------------------------------------------------------------------- */

static void test_speed(void **state) {
    (void)state;
    assert_cce_ok(pretok_init());
    size_t len;
    char *text = read_mirror("text/tinyshakespeare.txt", 1 << 20, &len);
    if (!text) return;
    learned L = learn(text, 30000, 300);
    for (int p = 1; p < CCE_PRETOK_COUNT; p++) {
        cce_tokenizer *t = learned_tokenizer(&L, (cce_pretokenizer)p, 0);
        struct timespec t0, t1;
        int32_t *ids;
        size_t n;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_cce_ok(cce_tokenizer_encode(t, text, len, 0, 0, &ids, &n));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        print_message("bench: %s, %d merges: %.2f MB -> %zu tokens in %.3f s (%.1f MB/s)\n",
                      pretok_name((cce_pretokenizer)p), (int)L.n_merges, (double)len / 1e6, n, s,
                      (double)len / 1e6 / s);
        free(ids);
        cce_tokenizer_free(t);
    }
    learned_free(&L);
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alphabet),       cmocka_unit_test(test_pretokenizer),
        cmocka_unit_test(test_rank_merges),    cmocka_unit_test(test_real_text),
        cmocka_unit_test(test_special_tokens), cmocka_unit_test(test_storage_and_export),
        cmocka_unit_test(test_bad_input),      cmocka_unit_test(test_fuzz),
        cmocka_unit_test(test_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
