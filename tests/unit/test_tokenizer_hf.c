/* tokenizer.json import and export: hand-worked merges by rank, the Metaspace prefix rule
 * (hand-worked, against the Prepend normalizer), encode/decode round trips with
 * non-ASCII text, byte fallback, the stories260K and Llama 2 tokenizers through tokenizer.json
 * and back (same ids on real text), the model folder import/export, bad input with clear errors,
 * and a bounded mutation fuzz of the parser. */
#include "test_support.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"
#include "model.h"
#include "tokenizer.h"
#include "tokenizer_hf.h"

#define SP "\xE2\x96\x81"

/* ---- fixtures -------------------------------------------------------------------------------- */

/* A Llama-style tokenizer.json: <unk> <s> </s>, the 256 byte pieces (ids 3..258), then extra
 * (NULL-terminated, ids 259...), and merges ("left right" strings, rank order). */
static json_t *fixture(const char *const *extra, const char *const *merges) {
    json_t *vocab = json_object(), *ml = json_array();
    static const char *const special[3] = {"<unk>", "<s>", "</s>"};
    int id = 0;
    for (; id < 3; id++) json_object_set_new(vocab, special[id], json_integer(id));
    for (int b = 0; b < 256; b++, id++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        json_object_set_new(vocab, name, json_integer(id));
    }
    for (int k = 0; extra[k]; k++, id++) json_object_set_new(vocab, extra[k], json_integer(id));
    for (int k = 0; merges[k]; k++) json_array_append_new(ml, json_string(merges[k]));
    json_t *root = json_pack(
        "{s:[{s:i, s:s, s:b}], s:{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}, s:s}]}, s:n,"
        " s:{s:s, s:[{s:s, s:{s:s}, s:s}, {s:s}, {s:s}, {s:s, s:s, s:i, s:i}]},"
        " s:{s:s, s:n, s:s, s:b, s:b, s:o, s:o}}",
        "added_tokens", "id", 0, "content", "<unk>", "special", 1, "normalizer", "type", "Sequence",
        "normalizers", "type", "Prepend", "prepend", SP, "type", "Replace", "pattern", "String",
        " ", "content", SP, "pre_tokenizer", "decoder", "type", "Sequence", "decoders", "type",
        "Replace", "pattern", "String", SP, "content", " ", "type", "ByteFallback", "type", "Fuse",
        "type", "Strip", "content", " ", "start", 1, "stop", 0, "model", "type", "BPE", "dropout",
        "unk_token", "<unk>", "fuse_unk", 1, "byte_fallback", 1, "vocab", vocab, "merges", ml);
    assert_non_null(root);
    return root;
}

static cce_status parse(json_t *j, const char *config, cce_tokenizer **t) {
    char *text = json_dumps(j, JSON_COMPACT);
    assert_non_null(text);
    cce_status s = cce_tokenizer_parse_hf(text, strlen(text), config, config ? strlen(config) : 0,
                                          "fixture/tokenizer.json", 0, t);
    free(text);
    return s;
}

/* Encodes text without BOS/EOS and checks the ids. */
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

/* encode(BOS + text) then decode piece by piece gives text back. */
static void expect_roundtrip(const cce_tokenizer *t, const char *text) {
    int32_t *ids;
    size_t n;
    assert_cce_ok(cce_tokenizer_encode(t, text, strlen(text), 1, 0, &ids, &n));
    char *back = malloc(strlen(text) * 8 + 1);
    size_t o = 0;
    for (size_t i = 1; i < n; i++) {
        assert_int_not_equal(ids[i], 0); /* byte fallback: never <unk> */
        size_t len;
        const char *p = cce_tokenizer_decode(t, ids[i - 1], ids[i], &len);
        memcpy(back + o, p, len);
        o += len;
    }
    back[o] = '\0';
    assert_string_equal(back, text);
    free(back);
    free(ids);
}

/* parse must fail with status and a detail containing every needle. */
static void expect_error(json_t *j, const char *config, cce_status status, const char *n1,
                         const char *n2) {
    cce_tokenizer *t = NULL;
    cce_status s = parse(j, config, &t);
    if (s != status)
        fail_msg("expected %s, got %s: %s", cce_strerror(status), cce_strerror(s),
                 cce_error_detail());
    assert_null(t);
    const char *d = cce_error_detail();
    if (!strstr(d, "fixture/tokenizer.json") || (n1 && !strstr(d, n1)) || (n2 && !strstr(d, n2)))
        fail_msg("error detail '%s' lacks '%s' / '%s'", d, n1 ? n1 : "", n2 ? n2 : "");
}

enum { U = 259 }; /* first extra id */
static const char *const EXTRA[] = {
    SP, "a", "b", "c", "ab", "bc", "abc", SP "ab", "ca", "\xC3\xBC" /* ü */, SP "\xC3\xBC", NULL};
enum { SPC = U, A, B, C, AB, BC, ABC, SPAB, CA, UU, SPUU };

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_hand_merges(void **state) {
    (void)state;
    /* Ranks: ca 0, ab 1, bc 2, abc 3-4, ▁ab 5, ▁ü 6. */
    static const char *const merges[] = {"c a",  "a b",    "b c",          "ab c",
                                         "a bc", SP " ab", SP " \xC3\xBC", NULL};
    json_t *j = fixture(EXTRA, merges);
    cce_tokenizer *t;
    assert_cce_ok(parse(j, NULL, &t));
    assert_int_equal(cce_tokenizer_vocab_size(t), U + 11);
    /* "▁" becomes a space in the pieces. */
    assert_string_equal(cce_tokenizer_piece(t, SPAB), " ab");
    /* ▁ a b c: ab (rank 1) before bc (2), then abc (3). */
    expect_ids(t, "abc", (int32_t[]){SPC, ABC}, 2);
    /* ▁ b c ▁ a b: ab, bc, then ▁ab. */
    expect_ids(t, "bc ab", (int32_t[]){SPC, BC, SPAB}, 3);
    /* ▁ c a b: ca (rank 0) wins over ab (rank 1). */
    expect_ids(t, "cab", (int32_t[]){SPC, CA, B}, 3);
    /* Non-ASCII piece and byte fallback for é (C3 A9), never <unk>. */
    expect_ids(t, "\xC3\xBC\xC3\xA9", (int32_t[]){SPUU, 3 + 0xC3, 3 + 0xA9}, 3);
    cce_tokenizer_free(t);

    /* Swapping the ranks of "c a" and "a b" swaps the result. */
    static const char *const swapped[] = {"a b",  "c a",    "b c",          "ab c",
                                          "a bc", SP " ab", SP " \xC3\xBC", NULL};
    json_decref(j);
    j = fixture(EXTRA, swapped);
    assert_cce_ok(parse(j, NULL, &t));
    expect_ids(t, "cab", (int32_t[]){SPC, C, AB}, 3);
    /* Merges may also be written as ["a", "b"] arrays. */
    json_t *ml = json_object_get(json_object_get(j, "model"), "merges");
    json_array_set_new(ml, 0, json_pack("[ss]", "a", "b"));
    cce_tokenizer *t2;
    assert_cce_ok(parse(j, NULL, &t2));
    expect_ids(t2, "cab", (int32_t[]){SPC, C, AB}, 3);
    cce_tokenizer_free(t2);

    /* Round trips through decode, with non-ASCII text and unknown characters. */
    const char *texts[] = {"abc",
                           "  leading and  double  spaces ",
                           "na\xC3\xAFve caf\xC3\xA9",
                           "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xC3\xBC\xC3\xBC",
                           "emoji \xF0\x9F\x98\x80 tab\tnewline\n",
                           "<s> literal"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) expect_roundtrip(t, texts[i]);
    cce_tokenizer_free(t);

    /* The Metaspace pre-tokenizer form (no normalizer) gives the same ids, with or without its
     * word split (no merge here joins across a "\u2581"). */
    for (int split = 0; split < 2; split++) {
        json_object_set_new(j, "normalizer", json_null());
        json_object_set_new(j, "pre_tokenizer",
                            json_pack("{s:s, s:s, s:s, s:b}", "type", "Metaspace", "replacement",
                                      SP, "prepend_scheme", "first", "split", split));
        assert_cce_ok(parse(j, NULL, &t2));
        expect_ids(t2, "bc ab", (int32_t[]){SPC, BC, SPAB}, 3);
        expect_ids(t2, "cab", (int32_t[]){SPC, C, AB}, 3);
        cce_tokenizer_free(t2);
    }

    /* The special added token <unk> written in the text is that token (as the Hugging Face
     * library does); each text segment gets the dummy prefix of the Prepend normalizer, only the
     * first one that of Metaspace prepend_scheme "first" (t2, the last of the loop above). */
    assert_cce_ok(parse(j, NULL, &t2));
    expect_ids(t2, "a<unk>b", (int32_t[]){SPC, A, 0, B}, 4);
    expect_ids(t2, "<unk>b", (int32_t[]){0, B}, 2);
    cce_tokenizer_free(t2);
    json_t *legacy = fixture(EXTRA, merges);
    assert_cce_ok(parse(legacy, NULL, &t2));
    expect_ids(t2, "a<unk>b", (int32_t[]){SPC, A, 0, SPC, B}, 5);
    expect_ids(t2, "<unk><unk>", (int32_t[]){0, 0}, 2);
    cce_tokenizer_free(t2);
    json_decref(legacy);

    /* Special ids anywhere: unk, bos and eos named by the model and tokenizer_config.json. */
    json_object_set_new(json_object_get(j, "model"), "unk_token", json_string("c"));
    assert_cce_ok(
        parse(j, "{\"bos_token\": \"</s>\", \"eos_token\": \"</s>\", \"pad_token\": \"b\"}", &t2));
    assert_int_equal(cce_tokenizer_unk(t2), C);
    assert_int_equal(cce_tokenizer_bos(t2), 2);
    assert_int_equal(cce_tokenizer_eos(t2), 2);
    assert_int_equal(cce_tokenizer_pad(t2), B);
    cce_tokenizer_free(t2);
    assert_cce_ok(parse(j, "{\"bos_token\": null}", &t2));
    assert_int_equal(cce_tokenizer_bos(t2), 2); /* no BOS: windows start with EOS */
    cce_tokenizer_free(t2);
    json_object_set_new(json_object_get(j, "model"), "unk_token", json_string("<unk>"));

    /* A tokenizer_config.json naming the usual special tokens is accepted. */
    assert_cce_ok(parse(j,
                        "{\"bos_token\": {\"content\": \"<s>\"}, \"eos_token\": \"</s>\", "
                        "\"unk_token\": \"<unk>\", \"add_bos_token\": true}",
                        &t));
    cce_tokenizer_free(t);
    json_decref(j);
}

/* Export of a tokenizer, then import: every piece equal, and the text encodes to the same ids. */
static void roundtrip_real(const char *rel, const char *text_rel, size_t text_bytes, int32_t vocab,
                           size_t *n_merges) {
    const char *p = test_require_mirror_file(rel);
    if (!p) return;
    cce_tokenizer *a, *b;
    assert_cce_ok(cce_tokenizer_load_llama2c(p, vocab, &a));
    char *json;
    assert_cce_ok(cce_tokenizer_hf_json(a, &json));
    json_t *j = json_loads(json, 0, NULL);
    assert_non_null(j);
    *n_merges = json_array_size(json_object_get(json_object_get(j, "model"), "merges"));
    json_decref(j);
    /* Every multi-character piece of a BPE vocab (past the specials and bytes) has a merge. */
    size_t multi = 0;
    for (int32_t id = 259; id < vocab; id++) {
        const char *piece = cce_tokenizer_piece(a, id);
        size_t len = strlen(piece), first = 1;
        while (first < len && ((unsigned char)piece[first] & 0xC0) == 0x80) first++;
        multi += first < len;
    }
    assert_true(*n_merges >= multi && multi > 0);
    assert_cce_ok(cce_tokenizer_parse_hf(json, strlen(json), NULL, 0, rel, vocab, &b));
    for (int32_t id = 0; id < vocab; id++)
        assert_string_equal(cce_tokenizer_piece(a, id), cce_tokenizer_piece(b, id));
    /* Deterministic output. */
    char *json2;
    assert_cce_ok(cce_tokenizer_hf_json(b, &json2));
    assert_string_equal(json, json2);
    free(json), free(json2);

    const char *tp = test_require_mirror_file(text_rel);
    size_t len;
    char *text = test_read_file(tp, &len);
    assert_non_null(text);
    if (len > text_bytes) len = text_bytes;
    while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80) len--; /* whole characters */
    int32_t *x, *y;
    size_t nx, ny;
    assert_cce_ok(cce_tokenizer_encode(a, text, len, 1, 0, &x, &nx));
    assert_cce_ok(cce_tokenizer_encode(b, text, len, 1, 0, &y, &ny));
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, nx * sizeof *x);
    if (vocab == 512) { /* the known start of the TinyStories token stream */
        static const int32_t want[] = {301, 427, 309, 426, 301, 427, 309, 394, 265, 262, 415, 271};
        assert_memory_equal(y + 1, want, sizeof want);
    }
    free(x), free(y), free(text);
    cce_tokenizer_free(a);
    cce_tokenizer_free(b);
}

/* The dummy prefix of a Metaspace pre-tokenizer is added only where the segment, spaces replaced
 * by "\u2581", does not already start with one; the Prepend normalizer always adds it. Worked
 * by hand with the ranks of test_hand_merges (ab 1, \u2581ab 5). */
static void test_metaspace_prefix(void **state) {
    (void)state;
    static const char *const merges[] = {"c a",  "a b",    "b c",          "ab c",
                                         "a bc", SP " ab", SP " \xC3\xBC", NULL};
    enum { NL = 3 + 0x0A, E2 = 3 + 0xE2, X96 = 3 + 0x96, X81 = 3 + 0x81 };
    json_t *j = fixture(EXTRA, merges);
    cce_tokenizer *pre, *always, *first, *back;
    assert_cce_ok(parse(j, NULL, &pre)); /* Prepend + Replace normalizers */
    json_object_set_new(j, "normalizer", json_null());
    json_object_set_new(j, "pre_tokenizer",
                        json_pack("{s:s, s:s, s:s, s:b}", "type", "Metaspace", "replacement", SP,
                                  "prepend_scheme", "always", "split", 1));
    assert_cce_ok(parse(j, NULL, &always));
    json_object_set_new(j, "pre_tokenizer",
                        json_pack("{s:s, s:s, s:s, s:b}", "type", "Metaspace", "replacement", SP,
                                  "prepend_scheme", "first", "split", 0));
    assert_cce_ok(parse(j, NULL, &first));

    /* "ab" -> "\u2581ab": every form prefixes it; ab, then \u2581ab. */
    expect_ids(pre, "ab", (int32_t[]){SPAB}, 1);
    expect_ids(always, "ab", (int32_t[]){SPAB}, 1);
    expect_ids(first, "ab", (int32_t[]){SPAB}, 1);
    /* " ab" -> Prepend: "\u2581\u2581ab" = \u2581 + \u2581ab; Metaspace: "\u2581ab" already
     * starts with \u2581, no prefix. */
    expect_ids(pre, " ab", (int32_t[]){SPC, SPAB}, 2);
    expect_ids(always, " ab", (int32_t[]){SPAB}, 1);
    expect_ids(first, " ab", (int32_t[]){SPAB}, 1);
    /* "  ab": three \u2581 against two. */
    expect_ids(pre, "  ab", (int32_t[]){SPC, SPC, SPAB}, 3);
    expect_ids(always, "  ab", (int32_t[]){SPC, SPAB}, 2);
    /* Other whitespace is not the replacement: "\nab" is prefixed. */
    expect_ids(always, "\nab", (int32_t[]){SPC, NL, AB}, 3);
    /* Per segment around an added token: the segment " ab" keeps its own space only; "ab" after
     * it is prefixed by "always" but not by "first" (not at the start of the text). */
    expect_ids(pre, "<unk> ab", (int32_t[]){0, SPC, SPAB}, 3);
    expect_ids(always, "<unk> ab", (int32_t[]){0, SPAB}, 2);
    expect_ids(first, "<unk> ab", (int32_t[]){0, SPAB}, 2);
    expect_ids(always, "<unk>ab", (int32_t[]){0, SPAB}, 2);
    expect_ids(first, "<unk>ab", (int32_t[]){0, AB}, 2);
    /* A literal "\u2581" also counts as the replacement for the prefix (it is then encoded as
     * its bytes: a documented difference). */
    expect_ids(always, SP "ab", (int32_t[]){E2, X96, X81, AB}, 4);
    expect_ids(pre, SP "ab", (int32_t[]){SPC, E2, X96, X81, AB}, 5);
    /* Decoding drops the first piece's space, so (as with the library's Metaspace decoder) only
     * a text not starting with a space comes back exactly. */
    expect_roundtrip(pre, "two  spaces and\n ab");
    expect_roundtrip(always, "two  spaces and\n ab");
    expect_roundtrip(first, "two  spaces and\n ab");

    /* The form survives export: each tokenizer comes back with the same fingerprint and ids. */
    cce_tokenizer *const forms[3] = {pre, always, first};
    static const char *const scheme[3] = {NULL, "\"always\"", "\"first\""};
    for (int k = 0; k < 3; k++) {
        char *json;
        assert_cce_ok(cce_tokenizer_hf_json(forms[k], &json));
        assert_int_equal(strstr(json, "\"Prepend\"") != NULL, k == 0);
        if (scheme[k]) assert_non_null(strstr(json, scheme[k]));
        assert_cce_ok(cce_tokenizer_parse_hf(json, strlen(json), NULL, 0, "rt", 0, &back));
        assert_int_equal(cce_tokenizer_fingerprint(back), cce_tokenizer_fingerprint(forms[k]));
        expect_ids(back, " ab", k ? (int32_t[]){SPAB} : (int32_t[]){SPC, SPAB}, k ? 1 : 2);
        cce_tokenizer_free(back);
        free(json);
    }
    /* The prefix-on-the-first-segment flag is a Metaspace scheme. */
    cce_tokenizer_spec sp;
    cce_tokenizer_get_spec(first, &sp);
    assert_true(sp.flags & CCE_TOK_METASPACE);
    sp.flags &= ~CCE_TOK_METASPACE;
    assert_int_equal(cce_tokenizer_new_spec(&sp, &back), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "needs the Metaspace flag"));
    cce_tokenizer_free(pre);
    cce_tokenizer_free(always);
    cce_tokenizer_free(first);
    json_decref(j);
}

static void test_stories_tok512(void **state) {
    (void)state;
    size_t n_merges = 0;
    roundtrip_real("models/stories260K/tok512.bin", "text/tinystories_val.txt", 200000, 512,
                   &n_merges);
    assert_true(n_merges > 0);
}

static void test_llama2_tokenizer(void **state) {
    (void)state;
    size_t n_merges = 0;
    roundtrip_real("models/llama2-tokenizer/tokenizer.bin", "text/alice29.txt", 60000, 32000,
                   &n_merges);
    assert_true(n_merges > 0);
}

/* The model folder: export hf writes tokenizer.json + tokenizer_config.json and import hf reads
 * them when no tokenizer.bin is given. */
static void test_model_folder(void **state) {
    (void)state;
    const char *p = test_require_mirror_file("models/stories260K/stories260K.bin");
    if (!p) return;
    char bin[4096], tok[4096], dir[4096];
    snprintf(bin, sizeof bin, "%s", p);
    if (!(p = test_require_mirror_file("models/stories260K/tok512.bin"))) return;
    snprintf(tok, sizeof tok, "%s", p);
    snprintf(dir, sizeof dir, "%s", test_path(test_scratch_dir("tokenizer_hf"), "hf"));
    cce_model *a, *b;
    assert_cce_ok(cce_import_llama2c(bin, tok, &a));
    assert_cce_ok(cce_export_hf(a, dir, NULL));
    assert_true(test_file_exists(test_path(dir, "tokenizer.json")));
    /* The special tokens are the model's pieces 0-2 (llama2.c writes BOS as "\n<s>\n"). */
    json_t *cfg = json_load_file(test_path(dir, "tokenizer_config.json"), 0, NULL);
    assert_non_null(cfg);
    assert_string_equal(json_string_value(json_object_get(cfg, "bos_token")),
                        cce_tokenizer_piece(cce_model_tokenizer(a), 1));
    assert_string_equal(json_string_value(json_object_get(cfg, "eos_token")),
                        cce_tokenizer_piece(cce_model_tokenizer(a), 2));
    assert_true(json_is_true(json_object_get(cfg, "add_bos_token")));
    json_decref(cfg);
    assert_cce_ok(cce_import_hf(dir, NULL, &b));
    const cce_tokenizer *ta = cce_model_tokenizer(a), *tb = cce_model_tokenizer(b);
    assert_non_null(tb);
    const char *text = "Once upon a time, there was a little girl named Lily.\n\nShe said \"hi\".";
    int32_t *x, *y;
    size_t nx, ny;
    assert_cce_ok(cce_tokenizer_encode(ta, text, strlen(text), 1, 0, &x, &nx));
    assert_cce_ok(cce_tokenizer_encode(tb, text, strlen(text), 1, 0, &y, &ny));
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, nx * sizeof *x);
    free(x), free(y);
    cce_model_free(b);
    /* A broken tokenizer.json fails the import, naming the file. */
    test_write_file(test_path(dir, "tokenizer.json"), "{\"model\": ", 10);
    assert_int_equal(cce_import_hf(dir, NULL, &b), CCE_ERR_FORMAT);
    assert_non_null(strstr(cce_error_detail(), "tokenizer.json"));
    /* --tokenizer FILE.bin still overrides. */
    assert_cce_ok(cce_import_hf(dir, tok, &b));
    assert_non_null(cce_model_tokenizer(b));
    cce_model_free(b);
    cce_model_free(a);
}

static const char *const MERGES[] = {"c a",  "a b",    "b c",          "ab c",
                                     "a bc", SP " ab", SP " \xC3\xBC", NULL};

/* Applies f to a fresh fixture and expects the error. */
#define BAD(edit, config, status, n1, n2)                                                          \
    do {                                                                                           \
        json_t *j = fixture(EXTRA, MERGES);                                                        \
        json_t *model = json_object_get(j, "model");                                               \
        (void)model;                                                                               \
        edit;                                                                                      \
        expect_error(j, config, status, n1, n2);                                                   \
        json_decref(j);                                                                            \
    } while (0)

static void test_bad_input(void **state) {
    (void)state;
    cce_tokenizer *t = NULL;
    const char *broken[] = {"",       "{",   "{\"model\": {\"type\": \"BPE\",}}",
                            "[1, 2]", "nul", "{\"a\": 1, \"a\": 2}"};
    for (size_t i = 0; i < sizeof broken / sizeof *broken; i++) {
        assert_int_equal(
            cce_tokenizer_parse_hf(broken[i], strlen(broken[i]), NULL, 0, "x.json", 0, &t),
            CCE_ERR_FORMAT);
        assert_non_null(strstr(cce_error_detail(), "x.json"));
    }
    assert_int_equal(cce_tokenizer_load_hf("/nonexistent/tokenizer.json", NULL, 0, &t), CCE_ERR_IO);
    const char *types[] = {"Unigram", "WordPiece", "WordLevel"};
    for (int i = 0; i < 3; i++)
        BAD(json_object_set_new(model, "type", json_string(types[i])), NULL, CCE_ERR_FORMAT,
            types[i], "not supported");
    BAD(json_object_del(model, "type"), NULL, CCE_ERR_FORMAT, "model.type", NULL);
    BAD(json_object_del(j, "model"), NULL, CCE_ERR_FORMAT, "\"model\"", NULL);
    /* Merges naming unknown tokens, or making a piece outside the vocab. */
    BAD(json_array_append_new(json_object_get(model, "merges"), json_string("a zz")), NULL,
        CCE_ERR_FORMAT, "merge 7 ('a' 'zz')", "unknown token 'zz'");
    BAD(json_array_append_new(json_object_get(model, "merges"), json_pack("[ss]", "q", "b")), NULL,
        CCE_ERR_FORMAT, "merge 7", "unknown token 'q'");
    BAD(json_array_append_new(json_object_get(model, "merges"), json_string("b a")), NULL,
        CCE_ERR_FORMAT, "merge 7 ('b' 'a')", "'ba', which is not in the vocab");
    BAD(json_array_append_new(json_object_get(model, "merges"), json_string("abc")), NULL,
        CCE_ERR_FORMAT, "merge 7 'abc'", NULL);
    BAD(json_array_append_new(json_object_get(model, "merges"), json_integer(3)), NULL,
        CCE_ERR_FORMAT, "merge 7 is neither", NULL);
    /* Merge lists that score-ordered merging cannot reproduce. */
    BAD(json_array_remove(json_object_get(model, "merges"), 4), NULL, CCE_ERR_FORMAT,
        "'abc' splits into 'a' + 'bc'", "not supported yet");
    BAD(json_array_insert_new(json_object_get(model, "merges"), 4, json_string("c a")), NULL,
        CCE_ERR_FORMAT, "merges making 'ca' are not consecutive", NULL);
    /* Pipeline parts. */
    BAD(json_object_set_new(j, "pre_tokenizer",
                            json_pack("{s:s, s:b}", "type", "ByteLevel", "add_prefix_space", 0)),
        NULL, CCE_ERR_FORMAT, "mixes ByteLevel parts with SentencePiece-style ones", NULL);
    BAD(json_object_set_new(j, "decoder", json_pack("{s:s}", "type", "ByteLevel")), NULL,
        CCE_ERR_FORMAT, "mixes ByteLevel", NULL);
    BAD(json_object_set_new(j, "normalizer", json_pack("{s:s}", "type", "NFKC")), NULL,
        CCE_ERR_FORMAT, "normalizer 'NFKC'", NULL);
    BAD(json_object_set_new(j, "pre_tokenizer", json_pack("{s:s}", "type", "Whitespace")), NULL,
        CCE_ERR_FORMAT, "pre_tokenizer 'Whitespace'", NULL);
    BAD(json_object_set_new(j, "decoder", json_pack("{s:s}", "type", "WordPiece")), NULL,
        CCE_ERR_FORMAT, "decoder 'WordPiece'", NULL);
    BAD(json_object_set_new(j, "normalizer", json_null()), NULL, CCE_ERR_FORMAT, "spaces", NULL);
    BAD(json_object_set_new(j, "pre_tokenizer",
                            json_pack("{s:s, s:s, s:s, s:b}", "type", "Metaspace", "replacement",
                                      SP, "prepend_scheme", "first", "split", 0)),
        NULL, CCE_ERR_FORMAT, "2 dummy-prefix", NULL);
    BAD((json_object_set_new(j, "pre_tokenizer",
                             json_pack("{s:s, s:s, s:b}", "type", "Metaspace", "replacement", SP,
                                       "add_prefix_space", 1)),
         json_object_set_new(j, "normalizer", json_null()),
         json_object_set_new(json_object_get(model, "vocab"), "b" SP, json_integer(U + 11)),
         json_array_append_new(json_object_get(model, "merges"), json_string("b " SP))),
        NULL, CCE_ERR_FORMAT, "merge 7", "Metaspace word split");
    BAD(json_object_set_new(model, "byte_fallback", json_false()), NULL, CCE_ERR_FORMAT,
        "byte_fallback", NULL);
    BAD(json_object_set_new(model, "dropout", json_real(0.1)), NULL, CCE_ERR_FORMAT, "dropout",
        NULL);
    BAD(json_object_set_new(model, "continuing_subword_prefix", json_string("##")), NULL,
        CCE_ERR_FORMAT, "continuing_subword_prefix", NULL);
    /* Vocabulary problems. */
    BAD(json_object_del(json_object_get(model, "vocab"), "<0x41>"), NULL, CCE_ERR_FORMAT,
        "no token has id 68", NULL);
    BAD(json_object_set_new(json_object_get(model, "vocab"), "<0x41>", json_integer(4000)), NULL,
        CCE_ERR_FORMAT, "no token has id 68", NULL);
    BAD(json_object_set_new(json_object_get(model, "vocab"), "zz", json_integer(5)), NULL,
        CCE_ERR_FORMAT, "share id 5", NULL);
    BAD(json_object_set_new(json_object_get(model, "vocab"), "zz", json_string("5")), NULL,
        CCE_ERR_FORMAT, "vocab 'zz'", NULL);
    BAD((json_object_del(json_object_get(model, "vocab"), "<0x41>"),
         json_object_set_new(json_object_get(model, "vocab"), "A", json_integer(68))),
        NULL, CCE_ERR_FORMAT, "<0x41> is missing", NULL);
    BAD(json_array_append_new(json_object_get(j, "added_tokens"),
                              json_pack("{s:i, s:s}", "id", 1, "content", "<bos>")),
        NULL, CCE_ERR_FORMAT, "added token '<bos>' has id 1", NULL);
    /* Special tokens must exist. */
    BAD(json_object_set_new(model, "unk_token", json_string("zz")), NULL, CCE_ERR_FORMAT,
        "unk_token 'zz' is not a token", NULL);
    BAD((void)0, "{\"bos_token\": null, \"eos_token\": null}", CCE_ERR_FORMAT, "no BOS and no EOS",
        NULL);
    BAD((void)0, "{\"pad_token\": 7}", CCE_ERR_FORMAT, "pad_token is not a string", NULL);
    BAD(json_array_append_new(json_object_get(j, "added_tokens"),
                              json_pack("{s:i, s:s}", "id", 0, "content", "<unk>")),
        NULL, CCE_ERR_FORMAT, "added_tokens[1] repeats id 0", NULL);
    BAD(json_array_append_new(
            json_object_get(j, "added_tokens"),
            json_pack("{s:i, s:s, s:b}", "id", U, "content", SP, "single_word", 1)),
        NULL, CCE_ERR_FORMAT, "single_word is not supported", NULL);
    BAD((void)0, "{\"eos_token\": {\"content\": \"<|end|>\"}}", CCE_ERR_FORMAT,
        "eos_token '<|end|>' is not a token", NULL);
    BAD((void)0, "{\"bos_token\": ", CCE_ERR_FORMAT, "tokenizer_config.json", "malformed");
    /* A given vocab_size may not be below the token count (fewer tokens are padded: see
     * test_tokenizer_pad). */
    json_t *j = fixture(EXTRA, MERGES);
    char *text = json_dumps(j, 0);
    assert_int_equal(cce_tokenizer_parse_hf(text, strlen(text), NULL, 0, "v.json", 269, &t),
                     CCE_ERR_FORMAT);
    assert_non_null(strstr(cce_error_detail(), "v.json: 270 tokens"));
    assert_non_null(strstr(cce_error_detail(), "model's vocab_size is 269"));
    free(text);
    json_decref(j);

    /* Export refuses pieces tokenizer.json cannot hold. */
    const char *pieces[] = {"<unk>", "<s>", "</s>", "x" SP, "\xff"};
    float scores[5] = {0, 0, 0, -1, -2};
    for (int bad = 3; bad < 5; bad++) {
        const char *sel[4] = {pieces[0], pieces[1], pieces[2], pieces[bad]};
        assert_cce_ok(cce_tokenizer_new(4, sel, scores, &t));
        char *json = NULL;
        assert_int_equal(cce_tokenizer_hf_json(t, &json), CCE_ERR_FORMAT);
        assert_non_null(strstr(cce_error_detail(), "piece 3"));
        assert_null(json);
        cce_tokenizer_free(t);
    }
}

/* A small deterministic generator (xorshift64*). */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rnd(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

/* Bounded fuzz: text edits and structural edits of a valid tokenizer.json. Every outcome is a
 * working tokenizer or CCE_ERR_FORMAT with a detail naming the source. */
static void test_fuzz(void **state) {
    (void)state;
    json_t *base = fixture(EXTRA, MERGES);
    char *valid = json_dumps(base, JSON_COMPACT);
    size_t vlen = strlen(valid);
    char *buf = malloc(vlen + 64);
    static const char alphabet[] = "{}[]\":, 0123456789-.eEtrufalsn\\\x80\xe2\x96\x81";
    int ok = 0, failed = 0;
    for (int iter = 0; iter < 4000; iter++) {
        size_t len = vlen;
        memcpy(buf, valid, vlen);
        int kind = (int)(rnd() % 4);
        if (kind == 0) { /* byte edits */
            for (int e = 0, n = 1 + (int)(rnd() % 4); e < n; e++)
                buf[rnd() % len] = alphabet[rnd() % (sizeof alphabet - 1)];
        } else if (kind == 1) { /* truncation */
            len = rnd() % len;
        } else { /* structural: change one value of the tree */
            json_t *j = json_deep_copy(base);
            json_t *targets[] = {j, json_object_get(j, "model"),
                                 json_object_get(json_object_get(j, "model"), "vocab"),
                                 json_object_get(j, "normalizer"), json_object_get(j, "decoder")};
            json_t *obj = targets[rnd() % 5];
            json_t *values[] = {json_null(),           json_true(),           json_integer(-1),
                                json_integer(1 << 30), json_string("BPE"),    json_string("a b"),
                                json_array(),          json_object(),         json_integer(5),
                                json_real(0.5),        json_string("Unigram")};
            size_t pick = rnd() % 11;
            size_t n = json_object_size(obj), k = n ? rnd() % n : 0;
            void *it = json_object_iter(obj);
            while (k-- && it) it = json_object_iter_next(obj, it);
            if (it) {
                if (rnd() % 3 == 0)
                    json_object_del(obj, json_object_iter_key(it));
                else
                    json_object_iter_set(obj, it, values[pick]);
            }
            if (kind == 3) { /* and a random merge edit */
                json_t *ml = json_object_get(json_object_get(j, "model"), "merges");
                if (json_is_array(ml) && json_array_size(ml))
                    json_array_set_new(ml, rnd() % json_array_size(ml),
                                       json_incref(values[rnd() % 11]));
            }
            for (int v = 0; v < 11; v++) json_decref(values[v]);
            char *text = json_dumps(j, JSON_COMPACT);
            json_decref(j);
            len = strlen(text);
            if (len > vlen + 60) len = vlen + 60;
            memcpy(buf, text, len);
            free(text);
        }
        cce_tokenizer *t = NULL;
        cce_status s = cce_tokenizer_parse_hf(buf, len, NULL, 0, "fuzz.json", 0, &t);
        if (s == CCE_OK) {
            expect_roundtrip(t, "ab cab \xC3\xBC\xC3\xA9!");
            cce_tokenizer_free(t);
            ok++;
        } else {
            if (s != CCE_ERR_FORMAT)
                fail_msg("iteration %d: %s: %s", iter, cce_strerror(s), cce_error_detail());
            assert_non_null(strstr(cce_error_detail(), "fuzz.json"));
            failed++;
        }
    }
    print_message("fuzz: %d accepted, %d refused\n", ok, failed);
    assert_true(ok > 0 && failed > 0);
    free(buf);
    free(valid);
    json_decref(base);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_merges),    cmocka_unit_test(test_metaspace_prefix),
        cmocka_unit_test(test_stories_tok512), cmocka_unit_test(test_llama2_tokenizer),
        cmocka_unit_test(test_model_folder),   cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
