/* The llama2.c / SentencePiece BPE tokenizer: file parsing (valid, truncated, corrupt), encoding
 * against a straightforward quadratic reference, BOS/EOS, the dummy prefix, byte fallback,
 * decoding rules, and the facts of the real tok512.bin. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_support.h"
#include "tokenizer.h"

/* ---- fixtures ------------------------------------------------------------------------------- */

/* A growable byte buffer for writing llama2.c tokenizer files. */
typedef struct bytes {
    unsigned char *data; /* [len] */
    size_t len, cap;
} bytes;

static void put(bytes *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->data = realloc(b->data, b->cap);
        assert_non_null(b->data);
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_i32(bytes *b, int32_t v) {
    put(b, &v, 4);
}
static void put_f32(bytes *b, float v) {
    put(b, &v, 4);
}

/* The llama2.c serialisation of pieces/scores. */
static bytes serialise(int32_t n, const char *const *pieces, const float *scores, int32_t max_len) {
    bytes b = {0};
    put_i32(&b, max_len);
    for (int32_t i = 0; i < n; i++) {
        put_f32(&b, scores[i]);
        put_i32(&b, (int32_t)strlen(pieces[i]));
        put(&b, pieces[i], strlen(pieces[i]));
    }
    return b;
}

/* A small vocabulary over {a, b, c, space} with deliberately tied scores: <unk> <s> </s>, the
 * 256 byte pieces, then the pieces below. "cc" scores below llama2.c's -1e10 floor and so must
 * never be merged. "<0x0A>a" joins a byte-fallback piece with "a", as llama2.c's string-based
 * merging does. */
static const char *const small_extra[] = {"a",   "b",  "c",   " ",   "ab",     "bc",
                                          "ca",  "aa", "abc", "bca", " a",     "aaa",
                                          " ab", "cc", "  ",  "ba",  "<0x0A>a"};
static const float small_extra_scores[] = {0,  0,  0,  0,  -1,     -1, -1, -1, -2,
                                           -2, -1, -3, -2, -2e10f, -1, -1, -1};
#define SMALL_EXTRA ((int32_t)(sizeof small_extra / sizeof small_extra[0]))
#define SMALL_VOCAB (259 + SMALL_EXTRA)

static char small_names[259][16];

/* Fills pieces/scores (arrays of SMALL_VOCAB) for the small vocabulary. */
static void small_vocab(const char **pieces, float *scores) {
    strcpy(small_names[0], "<unk>");
    strcpy(small_names[1], "<s>");
    strcpy(small_names[2], "</s>");
    for (int b = 0; b < 256; b++) snprintf(small_names[b + 3], 16, "<0x%02X>", b);
    for (int i = 0; i < 259; i++) {
        pieces[i] = small_names[i];
        scores[i] = 0.0f;
    }
    for (int32_t i = 0; i < SMALL_EXTRA; i++) {
        pieces[259 + i] = small_extra[i];
        scores[259 + i] = small_extra_scores[i];
    }
}

static cce_tokenizer *new_small(void) {
    const char *pieces[SMALL_VOCAB];
    float scores[SMALL_VOCAB];
    small_vocab(pieces, scores);
    cce_tokenizer *t;
    assert_cce_ok(cce_tokenizer_new(SMALL_VOCAB, pieces, scores, &t));
    return t;
}

static cce_tokenizer *load_real(const char *rel, int32_t vocab) {
    const char *path = test_require_mirror_file(rel);
    cce_tokenizer *t;
    assert_cce_ok(cce_tokenizer_load_llama2c(path, vocab, &t));
    return t;
}

/* ---- the quadratic reference (llama2.c's encode(), written plainly) -------------------------- */

typedef struct ref_entry {
    const char *piece;
    int32_t id;
} ref_entry;

static int ref_cmp(const void *a, const void *b) {
    return strcmp(((const ref_entry *)a)->piece, ((const ref_entry *)b)->piece);
}

typedef struct ref_vocab {
    ref_entry *sorted; /* [n] by piece */
    int32_t n;
} ref_vocab;

static ref_vocab ref_build(const cce_tokenizer *t) {
    ref_vocab v = {malloc(sizeof(ref_entry) * (size_t)cce_tokenizer_vocab_size(t)),
                   cce_tokenizer_vocab_size(t)};
    for (int32_t i = 0; i < v.n; i++) v.sorted[i] = (ref_entry){cce_tokenizer_piece(t, i), i};
    qsort(v.sorted, (size_t)v.n, sizeof *v.sorted, ref_cmp);
    return v;
}

static int32_t ref_lookup(const ref_vocab *v, const char *s) {
    ref_entry key = {s, 0};
    ref_entry *e = bsearch(&key, v->sorted, (size_t)v->n, sizeof key, ref_cmp);
    return e ? e->id : -1;
}

/* Encodes text (no NUL bytes) into out (room for len + 3); returns the count. */
static size_t ref_encode(const cce_tokenizer *t, const ref_vocab *v, const char *text, size_t len,
                         int bos, int eos, int32_t *out) {
    size_t n = 0;
    if (bos) out[n++] = 1;
    size_t start = n;
    if (len > 0) {
        int32_t sp = ref_lookup(v, " ");
        if (sp < 0) sp = ref_lookup(v, "<0x20>");
        out[n++] = sp < 0 ? 0 : sp;
    }
    char buf[8];
    size_t blen = 0;
    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)text[i] & 0xC0) != 0x80) blen = 0;
        buf[blen++] = text[i];
        buf[blen] = '\0';
        if (i + 1 < len && ((unsigned char)text[i + 1] & 0xC0) == 0x80 && blen < 4) continue;
        int32_t id = ref_lookup(v, buf);
        if (id >= 0) {
            out[n++] = id;
        } else {
            for (size_t k = 0; k < blen; k++) {
                char name[8];
                snprintf(name, sizeof name, "<0x%02X>", (unsigned char)buf[k]);
                int32_t b = ref_lookup(v, name);
                out[n++] = b < 0 ? 0 : b;
            }
        }
        blen = 0;
    }
    char *pair = malloc(2 * 65536 + 1);
    for (;;) {
        float best = -1e10f;
        int32_t best_id = -1;
        size_t best_i = 0;
        for (size_t i = start; i + 1 < n; i++) {
            sprintf(pair, "%s%s", cce_tokenizer_piece(t, out[i]),
                    cce_tokenizer_piece(t, out[i + 1]));
            int32_t id = ref_lookup(v, pair);
            if (id >= 0 && cce_tokenizer_score(t, id) > best) {
                best = cce_tokenizer_score(t, id);
                best_id = id;
                best_i = i;
            }
        }
        if (best_id < 0) break;
        out[best_i] = best_id;
        memmove(out + best_i + 1, out + best_i + 2, (n - best_i - 2) * sizeof *out);
        n--;
    }
    free(pair);
    if (eos) out[n++] = 2;
    return n;
}

/* Encodes with both and asserts equality. */
static void check_against_ref(const cce_tokenizer *t, const ref_vocab *v, const char *text,
                              size_t len, int bos, int eos) {
    int32_t *want = malloc((len + 3) * sizeof *want);
    size_t n_want = ref_encode(t, v, text, len, bos, eos, want);
    int32_t *got;
    size_t n_got;
    assert_cce_ok(cce_tokenizer_encode(t, text, len, bos, eos, &got, &n_got));
    if (n_got != n_want || memcmp(got, want, n_got * sizeof *got)) {
        size_t i = 0;
        while (i < n_got && i < n_want && got[i] == want[i]) i++;
        fail_msg("encode differs from the reference for a %zu-byte text: %zu vs %zu tokens, first "
                 "difference at %zu",
                 len, n_got, n_want, i);
    }
    free(got);
    free(want);
}

/* Random text: mostly from alphabet, sometimes a multi-byte character or a stray byte. */
static size_t random_text(unsigned *state, const char *alphabet, char *buf, size_t max_len) {
    static const char *const extras[] = {"\xc3\xa9", "\xe6\x97\xa5", "\xf0\x9f\x98\x80", "\xff",
                                         "\x80",     "\xc3",         "\xe2\x80",         "\n"};
    size_t len = (size_t)(rand_r(state) % (int)max_len), n = 0, na = strlen(alphabet);
    while (n < len) {
        int r = rand_r(state) % 100;
        if (r < 6) {
            const char *e = extras[rand_r(state) % 8];
            size_t el = strlen(e);
            if (n + el > len) break;
            memcpy(buf + n, e, el);
            n += el;
        } else {
            buf[n++] = alphabet[rand_r(state) % (int)na];
        }
    }
    return n;
}

/* ---- file parsing -----------------------------------------------------------------------------
 */

static void test_load_roundtrip(void **state) {
    (void)state;
    const char *pieces[SMALL_VOCAB];
    float scores[SMALL_VOCAB];
    small_vocab(pieces, scores);
    bytes b = serialise(SMALL_VOCAB, pieces, scores, 8);
    const char *path = test_path(test_scratch_dir("tok_load"), "small.bin");
    test_write_file(path, b.data, b.len);
    free(b.data);
    cce_tokenizer *t;
    assert_cce_ok(cce_tokenizer_load_llama2c(path, SMALL_VOCAB, &t));
    assert_int_equal(cce_tokenizer_vocab_size(t), SMALL_VOCAB);
    for (int32_t i = 0; i < SMALL_VOCAB; i++) {
        assert_string_equal(cce_tokenizer_piece(t, i), pieces[i]);
        assert_true(cce_tokenizer_score(t, i) == scores[i]);
    }
    assert_null(cce_tokenizer_piece(t, SMALL_VOCAB));
    assert_null(cce_tokenizer_piece(t, -1));
    assert_int_equal(cce_tokenizer_bos(t), 1);
    assert_int_equal(cce_tokenizer_eos(t), 2);
    cce_tokenizer *same = new_small();
    assert_true(cce_tokenizer_fingerprint(t) == cce_tokenizer_fingerprint(same));
    cce_tokenizer_free(same);
    cce_tokenizer_free(t);
}

static void expect_format(const char *path, int32_t vocab, const char *needle) {
    cce_tokenizer *t = NULL;
    cce_status s = cce_tokenizer_load_llama2c(path, vocab, &t);
    assert_null(t);
    if (s != CCE_ERR_FORMAT)
        fail_msg("expected a format error (%s), got %s: %s", needle, cce_strerror(s),
                 cce_error_detail());
    if (!strstr(cce_error_detail(), path))
        fail_msg("detail does not name the file: %s", cce_error_detail());
    if (needle && !strstr(cce_error_detail(), needle))
        fail_msg("detail lacks '%s': %s", needle, cce_error_detail());
}

static void test_load_truncated_every_length(void **state) {
    (void)state;
    const char *pieces[SMALL_VOCAB];
    float scores[SMALL_VOCAB];
    small_vocab(pieces, scores);
    bytes b = serialise(SMALL_VOCAB, pieces, scores, 8);
    const char *dir = test_scratch_dir("tok_trunc");
    const char *path = test_path(dir, "t.bin");
    for (size_t cut = 0; cut < b.len; cut += (cut < 64 || b.len - cut < 64) ? 1 : 7) {
        test_write_file(path, b.data, cut);
        expect_format(path, SMALL_VOCAB, cut < 4 ? "header" : "truncated");
    }
    /* One token more than the file holds names the token index. */
    test_write_file(path, b.data, b.len);
    char idx[32];
    snprintf(idx, sizeof idx, "token %d", SMALL_VOCAB);
    expect_format(path, SMALL_VOCAB + 1, idx);
    /* Fewer expected tokens than the file holds: trailing bytes. */
    expect_format(path, SMALL_VOCAB - 1, "more than the expected");
    free(b.data);
}

static void test_load_corrupt_fields(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("tok_corrupt");
    const char *path = test_path(dir, "c.bin");
    const char *pieces[5] = {"u", "s", "/s", "ab", "abc"};
    float scores[5] = {0, 0, 0, -1, -2};
    bytes b = serialise(5, pieces, scores, 3);
    test_write_file(path, b.data, b.len);
    cce_tokenizer *t;
    assert_cce_ok(cce_tokenizer_load_llama2c(path, 5, &t));
    cce_tokenizer_free(t);

    /* Token 4's score sits at 4 + (8+1) + (8+1) + (8+2) + (8+2) = 42, its len at 46. */
    const size_t score4 = 42, len4 = 46;
    int32_t bad;
    unsigned char *copy = malloc(b.len);

    memcpy(copy, b.data, b.len);
    bad = -1;
    memcpy(copy + len4, &bad, 4);
    test_write_file(path, copy, b.len);
    expect_format(path, 5, "token 4: length -1");

    bad = 0x7fffffff;
    memcpy(copy + len4, &bad, 4);
    test_write_file(path, copy, b.len);
    expect_format(path, 5, "token 4: length 2147483647");

    test_write_file(path, b.data, b.len - 1); /* the last piece loses a byte */
    expect_format(path, 5, "truncated in token 4");

    bytes b2 = serialise(5, pieces, scores, 2); /* "abc" is longer than max_token_length 2 */
    test_write_file(path, b2.data, b2.len);
    expect_format(path, 5, "token 4: length 3 is outside [0, 2]");
    free(b2.data);

    memcpy(copy, b.data, b.len);
    bad = 0;
    memcpy(copy, &bad, 4);
    test_write_file(path, copy, b.len);
    expect_format(path, 5, "max_token_length = 0");

    memcpy(copy, b.data, b.len);
    float nan_score = NAN;
    memcpy(copy + score4, &nan_score, 4);
    test_write_file(path, copy, b.len);
    expect_format(path, 5, "token 4: score is NaN");

    memcpy(copy, b.data, b.len);
    copy[len4 + 4 + 1] = '\0'; /* "abc" -> "a\0c" */
    test_write_file(path, copy, b.len);
    expect_format(path, 5, "token 4: piece contains a NUL");
    free(copy);

    const char *dup[5] = {"u", "s", "/s", "ab", "ab"};
    bytes bd = serialise(5, dup, scores, 3);
    test_write_file(path, bd.data, bd.len);
    expect_format(path, 5, "duplicate piece 'ab' at ids 3 and 4");
    free(bd.data);
    free(b.data);

    cce_status s = cce_tokenizer_load_llama2c(test_path(dir, "absent.bin"), 5, &t);
    assert_int_equal(s, CCE_ERR_IO);
    assert_non_null(strstr(cce_error_detail(), "absent.bin"));
    assert_int_equal(cce_tokenizer_load_llama2c(path, 2, &t), CCE_ERR_RANGE);
}

static void test_new_rejects_bad_input(void **state) {
    (void)state;
    const char *dup[4] = {"<unk>", "<s>", "</s>", "<s>"};
    float scores[4] = {0, 0, 0, 0};
    cce_tokenizer *t = NULL;
    assert_int_equal(cce_tokenizer_new(4, dup, scores, &t), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "duplicate piece '<s>' at ids 1 and 3"));
    assert_null(t);
    const char *ok[4] = {"<unk>", "<s>", "</s>", "x"};
    scores[3] = NAN;
    assert_int_equal(cce_tokenizer_new(4, ok, scores, &t), CCE_ERR_NUMERIC);
    scores[3] = 0;
    const char *null_piece[4] = {"<unk>", "<s>", "</s>", NULL};
    assert_int_equal(cce_tokenizer_new(4, null_piece, scores, &t), CCE_ERR_ARG);
    assert_int_equal(cce_tokenizer_new(2, ok, scores, &t), CCE_ERR_RANGE);
    assert_int_equal(cce_tokenizer_new_bytes(258, &t), CCE_ERR_RANGE);
    assert_null(t);
}

static void test_new_bytes(void **state) {
    (void)state;
    cce_tokenizer *t;
    assert_cce_ok(cce_tokenizer_new_bytes(300, &t));
    assert_string_equal(cce_tokenizer_piece(t, 0), "<unk>");
    assert_string_equal(cce_tokenizer_piece(t, 1), "<s>");
    assert_string_equal(cce_tokenizer_piece(t, 2), "</s>");
    assert_string_equal(cce_tokenizer_piece(t, 3), "<0x00>");
    assert_string_equal(cce_tokenizer_piece(t, 258), "<0xFF>");
    assert_string_equal(cce_tokenizer_piece(t, 259), "<unused_0>");
    assert_true(cce_tokenizer_score(t, 299) == -1e9f);
    /* Text is bytes: the dummy prefix is the byte piece of ' ', every byte its own piece. */
    const char text[] = "<unused_0>\xc3\xa9";
    int32_t *ids;
    size_t n;
    assert_cce_ok(cce_tokenizer_encode(t, text, sizeof text - 1, 1, 1, &ids, &n));
    assert_int_equal(n, sizeof text - 1 + 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], ' ' + 3);
    for (size_t i = 0; i < sizeof text - 1; i++)
        assert_int_equal(ids[2 + i], (unsigned char)text[i] + 3);
    assert_int_equal(ids[n - 1], 2);
    free(ids);
    cce_tokenizer *other;
    assert_cce_ok(cce_tokenizer_new_bytes(301, &other));
    assert_true(cce_tokenizer_fingerprint(t) != cce_tokenizer_fingerprint(other));
    cce_tokenizer_free(other);
    cce_tokenizer_free(t);
}

/* ---- encoding ---------------------------------------------------------------------------------
 */

static void test_encode_matches_reference_small(void **state) {
    (void)state;
    cce_tokenizer *t = new_small();
    ref_vocab v = ref_build(t);
    unsigned seed = 12345;
    char buf[256];
    for (int i = 0; i < 800; i++) {
        size_t len = random_text(&seed, "aabbc  \n", buf, sizeof buf);
        check_against_ref(t, &v, buf, len, i % 2, i % 3 == 0);
    }
    /* "aaaa": " a" and "aa" tie and the leftmost wins, then "aa" at the next position, then
     * "aaa". */
    int32_t *ids;
    size_t n;
    assert_cce_ok(cce_tokenizer_encode(t, "aaaa", 4, 0, 0, &ids, &n));
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 259 + 10); /* " a" */
    assert_int_equal(ids[1], 259 + 11); /* "aaa" */
    free(ids);
    /* "\ncab": "ca" and "ab" tie; leftmost gives "ca" "b" ("cab" is no piece), rightmost would
     * give "c" "ab". */
    assert_cce_ok(cce_tokenizer_encode(t, "\ncab", 4, 0, 0, &ids, &n));
    assert_int_equal(n, 4);
    assert_int_equal(ids[0], 259 + 3);  /* " " */
    assert_int_equal(ids[1], '\n' + 3); /* byte fallback */
    assert_int_equal(ids[2], 259 + 6);  /* "ca" */
    assert_int_equal(ids[3], 259 + 1);  /* "b" */
    free(ids);
    /* "\na": the byte piece "<0x0A>" and "a" concatenate to the piece "<0x0A>a". */
    assert_cce_ok(cce_tokenizer_encode(t, "\na", 2, 0, 0, &ids, &n));
    assert_int_equal(n, 2);
    assert_int_equal(ids[1], 259 + 16);
    free(ids);
    /* "cc" scores below the -1e10 floor: never merged. */
    assert_cce_ok(cce_tokenizer_encode(t, "cc", 2, 0, 0, &ids, &n));
    assert_int_equal(n, 3);
    assert_int_equal(ids[1], 259 + 2);
    assert_int_equal(ids[2], 259 + 2);
    free(ids);
    free(v.sorted);
    cce_tokenizer_free(t);
}

static void test_encode_matches_reference_tok512(void **state) {
    (void)state;
    cce_tokenizer *t = load_real("models/stories260K/tok512.bin", 512);
    ref_vocab v = ref_build(t);
    unsigned seed = 777;
    char buf[200];
    for (int i = 0; i < 300; i++) {
        size_t len =
            random_text(&seed, "the cat sat on a mat, Lily. Tom! \"Hi\" ", buf, sizeof buf);
        check_against_ref(t, &v, buf, len, i % 2, 0);
    }
    size_t len;
    char *text = test_read_file(test_require_mirror_file("text/tinystories_val.txt"), &len);
    check_against_ref(t, &v, text, 1500, 1, 1);
    free(text);
    free(v.sorted);
    cce_tokenizer_free(t);
}

static void test_encode_matches_reference_llama2(void **state) {
    (void)state;
    cce_tokenizer *t = load_real("models/llama2-tokenizer/tokenizer.bin", 32000);
    ref_vocab v = ref_build(t);
    unsigned seed = 4242;
    char buf[120];
    for (int i = 0; i < 100; i++) {
        size_t len =
            random_text(&seed, "Thou art  a knave,\n\nsir; ROMEO: 'tis e ", buf, sizeof buf);
        check_against_ref(t, &v, buf, len, 1, 0);
    }
    free(v.sorted);
    cce_tokenizer_free(t);
}

static void test_bos_eos_dummy_prefix(void **state) {
    (void)state;
    cce_tokenizer *t = load_real("models/stories260K/tok512.bin", 512);
    int32_t *ids;
    size_t n;
    assert_cce_ok(cce_tokenizer_encode(t, "", 0, 0, 0, &ids, &n));
    assert_int_equal(n, 0);
    free(ids);
    assert_cce_ok(cce_tokenizer_encode(t, "", 0, 1, 1, &ids, &n));
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 2);
    free(ids);
    /* Non-empty text starts with the dummy prefix, id 410, kept alone when nothing merges with
     * it ("\n" is a byte piece). */
    assert_cce_ok(cce_tokenizer_encode(t, "\n", 1, 1, 0, &ids, &n));
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 410);
    assert_int_equal(ids[2], '\n' + 3);
    free(ids);
    cce_tokenizer_free(t);
}

static void test_dummy_prefix_falls_back_to_byte(void **state) {
    (void)state;
    /* No " " piece: the dummy prefix is "<0x20>". */
    const char *pieces[SMALL_VOCAB];
    float scores[SMALL_VOCAB];
    small_vocab(pieces, scores);
    pieces[259 + 3] = "x"; /* replaces " " */
    cce_tokenizer *t;
    assert_cce_ok(cce_tokenizer_new(SMALL_VOCAB, pieces, scores, &t));
    int32_t *ids;
    size_t n;
    assert_cce_ok(cce_tokenizer_encode(t, "b", 1, 0, 0, &ids, &n));
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], ' ' + 3);
    assert_int_equal(ids[1], 259 + 1);
    free(ids);
    cce_tokenizer_free(t);
}

static void test_byte_fallback(void **state) {
    (void)state;
    cce_tokenizer *t = load_real("models/stories260K/tok512.bin", 512);
    int32_t *ids;
    size_t n;
    /* "\xc3\xa9" is piece 485; U+65E5 is not in the vocabulary: three byte pieces. */
    assert_cce_ok(cce_tokenizer_encode(t, "\xc3\xa9", 2, 0, 0, &ids, &n));
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 410);
    assert_int_equal(ids[1], 485);
    free(ids);
    assert_cce_ok(cce_tokenizer_encode(t, "\xe6\x97\xa5", 3, 0, 0, &ids, &n));
    assert_int_equal(n, 4);
    assert_int_equal(ids[0], 410);
    assert_int_equal(ids[1], 0xE6 + 3);
    assert_int_equal(ids[2], 0x97 + 3);
    assert_int_equal(ids[3], 0xA5 + 3);
    size_t len;
    const char *p = cce_tokenizer_decode(t, 410, ids[1], &len);
    assert_int_equal(len, 1);
    assert_int_equal((unsigned char)p[0], 0xE6);
    p = cce_tokenizer_decode(t, 1, 3, &len); /* <0x00> is a NUL byte, even after BOS */
    assert_int_equal(len, 1);
    assert_int_equal(p[0], '\0');
    free(ids);
    cce_tokenizer_free(t);
}

static void test_decode_rules(void **state) {
    (void)state;
    cce_tokenizer *t = load_real("models/stories260K/tok512.bin", 512);
    size_t len;
    /* 301 is " S": after BOS the leading space goes, elsewhere it stays. */
    assert_string_equal(cce_tokenizer_piece(t, 301), " S");
    const char *p = cce_tokenizer_decode(t, 1, 301, &len);
    assert_int_equal(len, 1);
    assert_memory_equal(p, "S", 1);
    p = cce_tokenizer_decode(t, 427, 301, &len);
    assert_int_equal(len, 2);
    assert_memory_equal(p, " S", 2);
    p = cce_tokenizer_decode(t, 1, 512, &len);
    assert_int_equal(len, 0);
    assert_string_equal(p, "");
    p = cce_tokenizer_decode(t, 1, -5, &len);
    assert_int_equal(len, 0);
    cce_tokenizer_free(t);
}

/* decode(encode(text)) with BOS, concatenated. Caller frees. */
static char *roundtrip(const cce_tokenizer *t, const char *text, size_t len, size_t *out_len) {
    int32_t *ids;
    size_t n;
    assert_cce_ok(cce_tokenizer_encode(t, text, len, 1, 0, &ids, &n));
    char *out = malloc(len * 2 + 16);
    size_t o = 0;
    for (size_t i = 1; i < n; i++) {
        size_t pl;
        const char *p = cce_tokenizer_decode(t, ids[i - 1], ids[i], &pl);
        assert_true(o + pl <= len * 2 + 16);
        memcpy(out + o, p, pl);
        o += pl;
    }
    free(ids);
    *out_len = o;
    return out;
}

static void check_roundtrip(const cce_tokenizer *t, const char *text) {
    size_t len = strlen(text), got_len;
    char *got = roundtrip(t, text, len, &got_len);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, text, len);
    free(got);
}

static void test_roundtrip_real(void **state) {
    (void)state;
    cce_tokenizer *small = load_real("models/stories260K/tok512.bin", 512);
    cce_tokenizer *llama = load_real("models/llama2-tokenizer/tokenizer.bin", 32000);
    assert_int_equal(cce_tokenizer_vocab_size(small), 512);
    assert_true(cce_tokenizer_fingerprint(small) != cce_tokenizer_fingerprint(llama));
    const char *texts[] = {
        "Once upon a time, there was a little girl named Lily.",
        "  two leading spaces, tabs\tand\nnew lines\n",
        "caf\xc3\xa9 na\xc3\xafve \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82, "
        "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80 \xe2\x80\x94 end",
        "stray bytes \xff\xfe and a lone continuation \x80 byte",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        check_roundtrip(small, texts[i]);
        check_roundtrip(llama, texts[i]);
    }
    cce_tokenizer_free(llama);
    cce_tokenizer_free(small);
}

static void test_tinystories_stream_facts(void **state) {
    (void)state;
    cce_tokenizer *t = load_real("models/stories260K/tok512.bin", 512);
    size_t len;
    char *text = test_read_file(test_require_mirror_file("text/tinystories_val.txt"), &len);
    assert_null(memchr(text, '\r', len)); /* CRLF -> LF leaves this file as it is */
    int32_t *ids;
    size_t n;
    assert_cce_ok(cce_tokenizer_encode(t, text, len, 0, 0, &ids, &n));
    const int32_t want[] = {301, 427, 309, 426, 301, 427, 309, 394, 265, 262, 415, 271};
    assert_true(n > 100000);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) assert_int_equal(ids[i], want[i]);
    for (size_t i = 0; i < n; i++) assert_true(ids[i] >= 3 && ids[i] < 512);
    /* The whole stream decodes back to the text. */
    size_t got_len;
    char *got = roundtrip(t, text, len, &got_len);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, text, len);
    free(got);
    free(ids);
    free(text);
    cce_tokenizer_free(t);
}

static void test_encode_whole_shakespeare(void **state) {
    (void)state;
    cce_tokenizer *t = load_real("models/llama2-tokenizer/tokenizer.bin", 32000);
    size_t len;
    char *text = test_read_file(test_require_mirror_file("text/tinyshakespeare.txt"), &len);
    assert_true(len > 1000000);
    int32_t *ids;
    size_t n;
    assert_cce_ok(cce_tokenizer_encode(t, text, len, 1, 1, &ids, &n));
    assert_true(n > 200000 && n < len);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[n - 1], 2);
    size_t total = 0;
    for (size_t i = 1; i + 1 < n; i++) {
        size_t pl;
        cce_tokenizer_decode(t, ids[i - 1], ids[i], &pl);
        total += pl;
    }
    assert_int_equal(total, len);
    free(ids);
    free(text);
    cce_tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_roundtrip),
        cmocka_unit_test(test_load_truncated_every_length),
        cmocka_unit_test(test_load_corrupt_fields),
        cmocka_unit_test(test_new_rejects_bad_input),
        cmocka_unit_test(test_new_bytes),
        cmocka_unit_test(test_encode_matches_reference_small),
        cmocka_unit_test(test_encode_matches_reference_tok512),
        cmocka_unit_test(test_encode_matches_reference_llama2),
        cmocka_unit_test(test_bos_eos_dummy_prefix),
        cmocka_unit_test(test_dummy_prefix_falls_back_to_byte),
        cmocka_unit_test(test_byte_fallback),
        cmocka_unit_test(test_decode_rules),
        cmocka_unit_test(test_roundtrip_real),
        cmocka_unit_test(test_tinystories_stream_facts),
        cmocka_unit_test(test_encode_whole_shakespeare),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
