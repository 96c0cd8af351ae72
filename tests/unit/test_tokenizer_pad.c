/* Tokenizers padded up to a model's vocab_size (Qwen2 pads its embedding past the tokenizer):
 * the padding names avoid real pieces, padding ids are never produced by encoding (even for their
 * own names written in the text, with ignore_merges and no pre-tokenizer split), encoding is
 * otherwise unchanged, tokenizer.json export leaves the padding out, the spec checks refuse
 * padding ids as special, added or merged pieces, and `cce import hf` of a folder whose
 * config.json vocab_size exceeds tokenizer.json's count imports, stores and exports the original
 * tokenizer.json back (more tokens than vocab_size is an error naming both). */
#include "test_support.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"
#include "model.h"
#include "synth.h"
#include "tokenizer.h"
#include "tokenizer_hf.h"

#define G "\xC4\xA0" /* U+0120, the ByteLevel alphabet's space */

enum { N_REAL = 261, AB = 256, GAB = 257, UNUSED1 = 258, EOT = 259, GAP = 260 };

/* The alphabet character of byte b (GPT-2's bytes_to_unicode), as UTF-8 in out. */
static void alpha(unsigned b, char out[3]) {
    unsigned cp = b;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
        cp = 256;
        for (unsigned k = 0; k < b; k++)
            cp += !((k >= 33 && k <= 126) || (k >= 161 && k <= 172) || (k >= 174 && k <= 255));
    }
    if (cp < 128)
        out[0] = (char)cp, out[1] = 0;
    else
        out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 63)), out[2] = 0;
}

/* A ByteLevel tokenizer.json of N_REAL tokens: the alphabet (0-255), "ab", "Ġab", the added
 * token "<unused_1>" (so padding names must avoid that stem), the special <|endoftext|> and a
 * "Ġ<" piece; no pre-tokenizer split and ignore_merges, so a word that is a piece is that piece.
 * The caller frees the text. */
static char *bl_json(void) {
    json_t *vocab = json_object();
    for (unsigned b = 0; b < 256; b++) {
        char c[3];
        alpha(b, c);
        json_object_set_new(vocab, c, json_integer(b));
    }
    json_object_set_new(vocab, "ab", json_integer(AB));
    json_object_set_new(vocab, G "ab", json_integer(GAB));
    json_object_set_new(vocab, "<unused_1>", json_integer(UNUSED1));
    json_object_set_new(vocab, "<|endoftext|>", json_integer(EOT));
    json_object_set_new(vocab, G "<", json_integer(GAP));
    json_t *root = json_pack(
        "{s:s, s:[{s:i, s:s, s:b, s:b, s:b, s:b, s:b}, {s:i, s:s, s:b, s:b, s:b, s:b, s:b}], s:n,"
        " s:{s:s, s:b, s:b, s:b}, s:n, s:{s:s, s:b, s:b, s:b},"
        " s:{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:[s, s, s]}}",
        "version", "1.0", "added_tokens", "id", UNUSED1, "content", "<unused_1>", "single_word", 0,
        "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 0, "id", EOT, "content",
        "<|endoftext|>", "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1,
        "normalizer", "pre_tokenizer", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets",
        1, "use_regex", 0, "post_processor", "decoder", "type", "ByteLevel", "add_prefix_space", 1,
        "trim_offsets", 1, "use_regex", 1, "model", "type", "BPE", "dropout", "unk_token",
        "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
        "ignore_merges", 1, "vocab", vocab, "merges", "a b", G " ab", G " <");
    assert_non_null(root);
    char *text = json_dumps(root, JSON_COMPACT);
    assert_non_null(text);
    json_decref(root);
    return text;
}

static cce_tokenizer *parse(const char *json, int32_t vocab_size) {
    cce_tokenizer *t = NULL;
    assert_cce_ok(
        cce_tokenizer_parse_hf(json, strlen(json), NULL, 0, "pad/tokenizer.json", vocab_size, &t));
    return t;
}

/* Texts that exercise every path, including the padding names themselves. */
static const char *const TEXTS[] = {"ab",
                                    " ab ab",
                                    "<unused_1>",
                                    "<unused_0>",
                                    "<unused__0>",
                                    " <unused__0>",
                                    "<unused__43>",
                                    "x<|endoftext|>ab<unused__1>",
                                    "na\xC3\xAFve \xF0\x9F\x98\x80 \t\n"};

/* a and b encode every text (and all 256 bytes) to the same ids, none of them >= n_real. */
static void expect_same_encoding(const cce_tokenizer *a, const cce_tokenizer *b, int32_t n_real) {
    char bytes[256];
    for (int i = 0; i < 256; i++) bytes[i] = (char)(255 - i);
    for (size_t k = 0; k <= sizeof TEXTS / sizeof *TEXTS; k++) {
        const char *text = k < sizeof TEXTS / sizeof *TEXTS ? TEXTS[k] : bytes;
        size_t len = k < sizeof TEXTS / sizeof *TEXTS ? strlen(text) : sizeof bytes;
        int32_t *x, *y;
        size_t nx, ny;
        assert_cce_ok(cce_tokenizer_encode(a, text, len, 1, 1, &x, &nx));
        assert_cce_ok(cce_tokenizer_encode(b, text, len, 1, 1, &y, &ny));
        assert_int_equal(nx, ny);
        for (size_t i = 0; i < nx; i++) {
            assert_int_equal(x[i], y[i]);
            if (x[i] >= n_real) fail_msg("text %zu: token %zu is padding id %d", k, i, (int)x[i]);
        }
        free(x);
        free(y);
    }
}

static char *hf_json(const cce_tokenizer *t) {
    char *json;
    assert_cce_ok(cce_tokenizer_hf_json(t, &json));
    return json;
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_pad_bytelevel(void **state) {
    (void)state;
    char *json = bl_json();
    cce_tokenizer *u = parse(json, 0), *p = parse(json, N_REAL + 44), *q;
    assert_int_equal(cce_tokenizer_vocab_size(u), N_REAL);
    assert_int_equal(cce_tokenizer_n_padding(u), 0);
    assert_int_equal(cce_tokenizer_vocab_size(p), N_REAL + 44);
    assert_int_equal(cce_tokenizer_n_padding(p), 44);
    /* "<unused_1>" is a real piece, so the names take two underscores. */
    assert_string_equal(cce_tokenizer_piece(p, UNUSED1), "<unused_1>");
    assert_string_equal(cce_tokenizer_piece(p, N_REAL), "<unused__0>");
    assert_string_equal(cce_tokenizer_piece(p, N_REAL + 43), "<unused__43>");
    assert_int_equal(cce_tokenizer_eos(p), EOT);
    expect_same_encoding(u, p, N_REAL);
    /* The literal added token is still found; the padding name is spelled out in pieces. */
    int32_t *ids;
    size_t n;
    assert_cce_ok(cce_tokenizer_encode(p, "<unused_1>", 10, 0, 0, &ids, &n));
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], UNUSED1);
    free(ids);
    assert_cce_ok(cce_tokenizer_encode(p, "<unused__0>", 11, 0, 0, &ids, &n));
    assert_int_equal(n, 11);
    free(ids);
    assert_int_not_equal(cce_tokenizer_fingerprint(p), cce_tokenizer_fingerprint(u));

    /* tokenizer.json export leaves the padding out: the unpadded tokenizer's text exactly. */
    char *ju = hf_json(u), *jp = hf_json(p);
    assert_string_equal(ju, jp);
    json_t *root = json_loads(jp, 0, NULL);
    assert_int_equal(json_object_size(json_object_get(json_object_get(root, "model"), "vocab")),
                     N_REAL);
    json_decref(root);
    free(ju);
    free(jp);

    /* Re-padding renames; padding to the real count removes it. */
    assert_cce_ok(cce_tokenizer_pad_to(p, N_REAL + 3, &q));
    assert_int_equal(cce_tokenizer_n_padding(q), 3);
    assert_string_equal(cce_tokenizer_piece(q, N_REAL + 2), "<unused__2>");
    cce_tokenizer_free(q);
    assert_cce_ok(cce_tokenizer_pad_to(p, N_REAL, &q));
    assert_int_equal(cce_tokenizer_n_padding(q), 0);
    assert_int_equal(cce_tokenizer_fingerprint(q), cce_tokenizer_fingerprint(u));
    cce_tokenizer_free(q);

    /* More tokens than vocab_size: an error naming both counts. */
    assert_int_equal(cce_tokenizer_pad_to(p, N_REAL - 1, &q), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "261 tokens"));
    assert_non_null(strstr(cce_error_detail(), "vocab_size 260"));
    assert_int_equal(
        cce_tokenizer_parse_hf(json, strlen(json), NULL, 0, "pad/tokenizer.json", N_REAL - 1, &q),
        CCE_ERR_FORMAT);
    assert_non_null(strstr(cce_error_detail(), "pad/tokenizer.json: 261 tokens"));
    assert_non_null(strstr(cce_error_detail(), "vocab_size is 260"));
    cce_tokenizer_free(u);
    cce_tokenizer_free(p);
    free(json);
}

static void test_pad_sentencepiece(void **state) {
    (void)state;
    /* The byte tokenizer has "<unused_0>".."<unused_40>" as real pieces. */
    cce_tokenizer *u, *p;
    assert_cce_ok(cce_tokenizer_new_bytes(300, &u));
    assert_cce_ok(cce_tokenizer_pad_to(u, 320, &p));
    assert_int_equal(cce_tokenizer_n_padding(p), 20);
    assert_string_equal(cce_tokenizer_piece(p, 299), "<unused_40>");
    assert_string_equal(cce_tokenizer_piece(p, 300), "<unused__0>");
    assert_true(cce_tokenizer_score(p, 300) <= -1e10f); /* llama2.c never merges it either */
    assert_false(cce_tokenizer_is_llama2c(p));
    assert_cce_ok(cce_tokenizer_check_llama2c(p));
    expect_same_encoding(u, p, 300);
    char *ju = hf_json(u), *jp = hf_json(p);
    assert_string_equal(ju, jp);
    free(ju);
    free(jp);
    cce_tokenizer_free(u);
    cce_tokenizer_free(p);
}

/* Padding ids may not be special, added or merged: the spec checks name them. */
static void test_pad_spec_checks(void **state) {
    (void)state;
    const char *pieces[4] = {"a", "b", "ab", "<pad>"};
    int32_t merge[2] = {0, 1}, bad_merge[2] = {0, 3}, added[1] = {3};
    cce_tokenizer_spec sp = {.kind = CCE_TOKENIZER_BYTELEVEL,
                             .vocab_size = 4,
                             .pieces = pieces,
                             .n_merges = 1,
                             .merges = merge,
                             .bos_id = 2,
                             .eos_id = -1,
                             .unk_id = -1,
                             .pad_id = -1,
                             .n_padding = 1};
    cce_tokenizer *t;
    assert_cce_ok(cce_tokenizer_new_spec(&sp, &t));
    assert_int_equal(cce_tokenizer_n_padding(t), 1);
    cce_tokenizer_free(t);
    sp.pad_id = 3;
    assert_int_equal(cce_tokenizer_new_spec(&sp, &t), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "pad id 3 outside [-1, 3) (a padding id)"));
    sp.pad_id = -1, sp.n_added = 1, sp.added_ids = added;
    assert_int_equal(cce_tokenizer_new_spec(&sp, &t), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "(a padding id)"));
    sp.n_added = 0, sp.merges = bad_merge;
    assert_int_equal(cce_tokenizer_new_spec(&sp, &t), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "are padding"));
    sp.merges = merge, sp.n_padding = 4;
    assert_int_equal(cce_tokenizer_new_spec(&sp, &t), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "4 padding pieces of 4"));
    sp.n_padding = -1;
    assert_int_equal(cce_tokenizer_new_spec(&sp, &t), CCE_ERR_ARG);
}

/* A synthetic model of vocab_size exported to the Hugging Face folder root/name, its tokenizer
 * replaced by json (and a config naming <|endoftext|>). Returns the folder (static). */
static const char *hf_folder(const char *root, const char *name, int32_t vocab_size,
                             const char *json) {
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s", test_path(root, name));
    cce_synth_options o;
    cce_model *m;
    assert_cce_ok(cce_synth_preset("tiny", &o));
    o.cfg.vocab_size = vocab_size;
    o.seed = 3;
    assert_cce_ok(cce_synth_model(&o, &m));
    assert_cce_ok(cce_export_hf(m, dir, NULL));
    cce_model_free(m);
    test_write_file(test_path(dir, "tokenizer.json"), json, strlen(json));
    const char *cfg = "{\"bos_token\": null, \"eos_token\": \"<|endoftext|>\"}";
    test_write_file(test_path(dir, "tokenizer_config.json"), cfg, strlen(cfg));
    return dir;
}

static void test_pad_import_export(void **state) {
    (void)state;
    char *json = bl_json();
    cce_tokenizer *u = parse(json, 0);
    char root[4096], dir[4096], h5[4200], out[4200];
    snprintf(root, sizeof root, "%s", test_scratch_dir("pad"));
    snprintf(dir, sizeof dir, "%s", hf_folder(root, "qwen2ish", 300, json));
    snprintf(h5, sizeof h5, "%s.h5", dir);
    snprintf(out, sizeof out, "%s-export", dir);

    /* The library import pads up to config.json's vocab_size. */
    cce_model *m;
    assert_cce_ok(cce_import_hf(dir, NULL, &m));
    const cce_tokenizer *t = cce_model_tokenizer(m);
    assert_int_equal(cce_tokenizer_vocab_size(t), 300);
    assert_int_equal(cce_tokenizer_n_padding(t), 300 - N_REAL);
    expect_same_encoding(u, t, N_REAL);
    uint64_t fp = cce_tokenizer_fingerprint(t);
    cce_model_free(m);

    /* cce import hf -> model file -> cce export hf: the original tokenizer.json comes back (the
     * padding ids are not in its vocab), config.json keeps the padded vocab_size. */
    char args[16384], *output = NULL;
    snprintf(args, sizeof args, "import hf '%s' -o '%s'", dir, h5);
    int rc = test_run_cce(args, &output);
    if (rc != 0) fail_msg("cce %s: exit %d: %s", args, rc, output ? output : "");
    free(output);
    snprintf(args, sizeof args, "export '%s' --format hf -o '%s'", h5, out);
    rc = test_run_cce(args, &output);
    if (rc != 0) fail_msg("cce %s: exit %d: %s", args, rc, output ? output : "");
    free(output);
    json_t *want = json_loads(json, 0, NULL),
           *back = json_load_file(test_path(out, "tokenizer.json"), 0, NULL);
    char *canon = hf_json(u);
    json_t *canon_j = json_loads(canon, 0, NULL);
    assert_non_null(back);
    assert_true(json_equal(back, canon_j));
    /* ... which holds the same vocab, merges and added tokens as the hand-written file. */
    json_t *bm = json_object_get(back, "model"), *wm = json_object_get(want, "model");
    assert_true(json_equal(json_object_get(bm, "vocab"), json_object_get(wm, "vocab")));
    json_t *bmerges = json_object_get(bm, "merges"), *wmerges = json_object_get(wm, "merges");
    assert_int_equal(json_array_size(bmerges), json_array_size(wmerges));
    for (size_t k = 0; k < json_array_size(wmerges); k++) { /* ["l", "r"] for "l r" */
        char joined[64];
        json_t *pair = json_array_get(bmerges, k);
        snprintf(joined, sizeof joined, "%s %s", json_string_value(json_array_get(pair, 0)),
                 json_string_value(json_array_get(pair, 1)));
        assert_string_equal(joined, json_string_value(json_array_get(wmerges, k)));
    }
    assert_int_equal(json_array_size(json_object_get(back, "added_tokens")), 2);
    json_t *cfg = json_load_file(test_path(out, "config.json"), 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(cfg, "vocab_size")), 300);
    json_decref(cfg);
    json_decref(canon_j);
    json_decref(want);
    json_decref(back);
    free(canon);
    /* And imports again to the same padded tokenizer. */
    assert_cce_ok(cce_import_hf(out, NULL, &m));
    assert_int_equal(cce_tokenizer_fingerprint(cce_model_tokenizer(m)), fp);
    cce_model_free(m);

    /* More tokens than config.json's vocab_size: an error naming both. */
    const char *small = hf_folder(root, "too-small", 259, json);
    cce_status s = cce_import_hf(small, NULL, &m);
    assert_int_equal(s, CCE_ERR_FORMAT);
    assert_non_null(strstr(cce_error_detail(), "261 tokens"));
    assert_non_null(strstr(cce_error_detail(), "vocab_size is 259"));
    cce_tokenizer_free(u);
    free(json);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pad_bytelevel),
        cmocka_unit_test(test_pad_sentencepiece),
        cmocka_unit_test(test_pad_spec_checks),
        cmocka_unit_test(test_pad_import_export),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
