/* Datasets: sha256, the manifest (valid and malformed), provisioning from the mirror, the cache
 * and a download, checksum and missing-file errors, CRLF handling, the token cache and splits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "sha256.h"
#include "test_support.h"
#include "tokenizer.h"

#define ALICE_SHA     "7467306ee0feed4971260f3c87421154a05be571d944e9cb021a5713700c38f0"
#define STORIES_SHA   "5fc1fb0113df62b567fb271806cd645ce8d75f59c58ca0b764c03d3b6ff34ca6"
#define WRONG_SHA     "0000000000000000000000000000000000000000000000000000000000000000"
#define MANIFEST_HEAD "{\"format\": \"cce-datasets\", \"version\": 1, \"datasets\": [\n"

static char saved_mirror[4096], saved_cache[4096];

/* Restores the environment every test may change. */
static int reset_env(void **state) {
    (void)state;
    unsetenv("CCE_MANIFEST");
    if (saved_mirror[0])
        setenv("CCE_MIRROR", saved_mirror, 1);
    else
        unsetenv("CCE_MIRROR");
    if (saved_cache[0])
        setenv("CCE_CACHE_DIR", saved_cache, 1);
    else
        unsetenv("CCE_CACHE_DIR");
    return 0;
}

/* Writes a manifest with one entry per line of `entries` (JSON objects) and points CCE_MANIFEST
 * at it. */
static const char *use_manifest(const char *dir, const char *body) {
    const char *path = test_path(dir, "manifest.json");
    test_write_file(path, body, strlen(body));
    setenv("CCE_MANIFEST", path, 1);
    return path;
}

static void entry_json(char *buf, size_t cap, const char *name, const char *file, const char *sha,
                       const char *url, int url_is_file) {
    snprintf(buf, cap,
             "{\"name\": \"%s\", \"kind\": \"text\", \"file\": \"%s\", \"sha256\": \"%s\", "
             "\"licence\": \"public domain\", \"url\": \"%s\", \"url_is_file\": %s, "
             "\"derivation\": \"test fixture\"}",
             name, file, sha, url, url_is_file ? "true" : "false");
}

static const char *one_entry_manifest(const char *dir, const char *name, const char *file,
                                      const char *sha, const char *url, int url_is_file) {
    char entry[8192], body[8448];
    entry_json(entry, sizeof entry, name, file, sha, url, url_is_file);
    snprintf(body, sizeof body, MANIFEST_HEAD "%s\n]}\n", entry);
    return use_manifest(dir, body);
}

static void expect_detail(const char *needle) {
    if (!strstr(cce_error_detail(), needle))
        fail_msg("detail lacks '%s': %s", needle, cce_error_detail());
}

/* ---- sha256 -----------------------------------------------------------------------------------
 */

static void test_sha256_known(void **state) {
    (void)state;
    char hex[65];
    assert_cce_ok(cce_sha256_buffer("abc", 3, hex));
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_cce_ok(cce_sha256_buffer(NULL, 0, hex));
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *path = test_path(test_scratch_dir("sha"), "abc.txt");
    test_write_file(path, "abc", 3);
    char hex2[65];
    assert_cce_ok(cce_sha256_file(path, hex2));
    assert_string_equal(hex2, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_true(cce_sha256_is_hex(hex2));
    assert_false(cce_sha256_is_hex("ABC"));
    assert_int_equal(cce_sha256_file("/nonexistent/x", hex), CCE_ERR_IO);
    expect_detail("/nonexistent/x");
}

/* ---- the manifest -----------------------------------------------------------------------------
 */

static void test_manifest_default(void **state) {
    (void)state;
    cce_manifest *m;
    assert_cce_ok(cce_manifest_load(NULL, &m));
    const char *names[] = {"tinystories_val", "alice29", "tinyshakespeare",
                           "stories260K",     "tok512",  "llama2_tokenizer"};
    const char *kinds[] = {"text", "text", "text", "model", "tokenizer", "tokenizer"};
    assert_int_equal(m->n, 6);
    for (size_t i = 0; i < 6; i++) {
        const cce_dataset_entry *e = cce_manifest_find(m, names[i]);
        if (!e) fail_msg("manifest lacks %s", names[i]);
        assert_string_equal(e->kind, kinds[i]);
        assert_true(cce_sha256_is_hex(e->sha256));
        assert_true(strncmp(e->url, "https://", 8) == 0);
        assert_true(strlen(e->licence) > 0 && strlen(e->derivation) > 0);
    }
    assert_string_equal(cce_manifest_find(m, "alice29")->sha256, ALICE_SHA);
    assert_true(cce_manifest_find(m, "stories260K")->url_is_file);
    assert_false(cce_manifest_find(m, "tinystories_val")->url_is_file);
    assert_null(cce_manifest_find(m, "nosuch"));
    char *names_list = cce_manifest_names(m);
    assert_non_null(strstr(names_list, "tinystories_val, alice29"));
    free(names_list);
    cce_manifest_free(m);
}

/* Loads body as a manifest and expects CCE_ERR_FORMAT whose detail has every needle. */
static void expect_bad_manifest(const char *dir, const char *body, const char *n1, const char *n2) {
    const char *path = use_manifest(dir, body);
    cce_manifest *m = NULL;
    cce_status s = cce_manifest_load(NULL, &m);
    assert_null(m);
    if (s != CCE_ERR_FORMAT)
        fail_msg("expected a format error, got %s: %s", cce_strerror(s), cce_error_detail());
    expect_detail(path);
    if (n1) expect_detail(n1);
    if (n2) expect_detail(n2);
}

static void test_manifest_malformed(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("manifest_bad");
    char entry[2048], body[8192];
    expect_bad_manifest(dir, MANIFEST_HEAD "{\"name\": \"x\",\n", "line 3", NULL);
    expect_bad_manifest(dir, "{\"format\": \"cce-datasets\", \"format\": \"x\"}", "duplicate",
                        NULL);
    expect_bad_manifest(dir, "[1, 2]", "top level", NULL);
    expect_bad_manifest(dir, "{\"format\": \"cce-datasets\", \"version\": 2, \"datasets\": []}",
                        "version", NULL);
    expect_bad_manifest(dir, "{\"format\": \"cce-datasets\", \"version\": 1}", "datasets", NULL);

    /* A missing field names the field, the entry and the line it starts on. */
    entry_json(entry, sizeof entry, "a", "text/a.txt", ALICE_SHA, "https://x", 0);
    snprintf(body, sizeof body,
             MANIFEST_HEAD "%s,\n  {\"name\": \"b\", \"kind\": \"text\", \"file\": \"b.txt\",\n"
                           "   \"licence\": \"x\", \"url\": \"u\", \"derivation\": \"d\"}\n]}\n",
             entry);
    expect_bad_manifest(dir, body, "missing field \"sha256\"", ":3: datasets[1] (b)");

    entry_json(entry, sizeof entry, "a", "text/a.txt", "ABC", "https://x", 0);
    snprintf(body, sizeof body, MANIFEST_HEAD "%s]}", entry);
    expect_bad_manifest(dir, body, "sha256", "64 lowercase hex");

    entry_json(entry, sizeof entry, "a", "../escape.txt", ALICE_SHA, "https://x", 0);
    snprintf(body, sizeof body, MANIFEST_HEAD "%s]}", entry);
    expect_bad_manifest(dir, body, "\"file\"", "../escape.txt");

    entry_json(entry, sizeof entry, "a", "/abs.txt", ALICE_SHA, "https://x", 0);
    snprintf(body, sizeof body, MANIFEST_HEAD "%s]}", entry);
    expect_bad_manifest(dir, body, "\"file\"", "relative");

    entry_json(entry, sizeof entry, "a", "a.txt", ALICE_SHA, "https://x", 0);
    snprintf(body, sizeof body, MANIFEST_HEAD "%s,\n%s]}", entry, entry);
    expect_bad_manifest(dir, body, "share the name \"a\"", NULL);

    snprintf(body, sizeof body,
             MANIFEST_HEAD "{\"name\": \"a\", \"kind\": \"video\", \"file\": \"a\", \"sha256\": "
                           "\"" ALICE_SHA "\", \"licence\": \"x\", \"url\": \"u\", "
                           "\"derivation\": \"d\"}]}");
    expect_bad_manifest(dir, body, "\"kind\" = \"video\"", NULL);

    snprintf(body, sizeof body,
             MANIFEST_HEAD "{\"name\": 5, \"kind\": \"text\", \"file\": \"a\", \"sha256\": "
                           "\"" ALICE_SHA "\", \"licence\": \"x\", \"url\": \"u\", "
                           "\"derivation\": \"d\"}]}");
    expect_bad_manifest(dir, body, "\"name\" must be a non-empty string", NULL);

    setenv("CCE_MANIFEST", test_path(dir, "absent.json"), 1);
    cce_manifest *m;
    assert_int_equal(cce_manifest_load(NULL, &m), CCE_ERR_IO);
    expect_detail("absent.json");
}

/* ---- provisioning -----------------------------------------------------------------------------
 */

static void test_resolve_every_entry_in_mirror(void **state) {
    (void)state;
    const char *mirror_alice = test_require_mirror_file("text/alice29.txt");
    (void)mirror_alice;
    cce_manifest *m;
    assert_cce_ok(cce_manifest_load(NULL, &m));
    for (size_t i = 0; i < m->n; i++) {
        const cce_dataset_entry *e = &m->entries[i];
        char *path, sha[65];
        assert_cce_ok(cce_dataset_resolve(e->name, &path, sha));
        const char *want = test_require_mirror_file(e->file);
        assert_string_equal(path, want);
        assert_string_equal(sha, e->sha256);
        cce_dataset_state st;
        char *found, actual[65];
        assert_cce_ok(cce_dataset_locate(e, &st, &found, actual));
        assert_int_equal(st, CCE_DATASET_OK);
        assert_string_equal(found, want);
        assert_string_equal(actual, e->sha256);
        free(found);
        free(path);
    }
    cce_manifest_free(m);
}

static void test_checksum_mismatch(void **state) {
    (void)state;
    const char *mirror_alice = test_require_mirror_file("text/alice29.txt");
    const char *dir = test_scratch_dir("mismatch");
    one_entry_manifest(dir, "alice_wrong", "text/alice29.txt", WRONG_SHA, "https://x/y", 1);
    char *path = NULL;
    assert_int_equal(cce_dataset_resolve("alice_wrong", &path, NULL), CCE_ERR_CHECKSUM);
    assert_null(path);
    expect_detail(mirror_alice);
    expect_detail(WRONG_SHA);
    expect_detail(ALICE_SHA);
    cce_manifest *m;
    assert_cce_ok(cce_manifest_load(NULL, &m));
    cce_dataset_state st;
    char actual[65];
    assert_cce_ok(cce_dataset_locate(&m->entries[0], &st, &path, actual));
    assert_int_equal(st, CCE_DATASET_MISMATCH);
    assert_string_equal(actual, ALICE_SHA);
    free(path);
    cce_manifest_free(m);
}

static void test_missing_file_message(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("missing");
    setenv("CCE_CACHE_DIR", test_path(dir, "cache"), 1);
    setenv("CCE_MIRROR", test_path(dir, "mirror"), 1);
    one_entry_manifest(dir, "ghost", "text/ghost.txt", ALICE_SHA,
                       "https://example.org/ghost-archive.zip", 0);
    char *path = NULL;
    assert_int_equal(cce_dataset_resolve("ghost", &path, NULL), CCE_ERR_NOT_FOUND);
    assert_null(path);
    expect_detail(test_path(dir, "mirror/text/ghost.txt"));
    expect_detail(test_path(dir, "cache/data/text/ghost.txt"));
    expect_detail("https://example.org/ghost-archive.zip");
    expect_detail("CCE_MIRROR");
    unsetenv("CCE_MIRROR");
    assert_int_equal(cce_dataset_resolve("ghost", &path, NULL), CCE_ERR_NOT_FOUND);
    expect_detail("CCE_MIRROR is not set");
    cce_manifest *m;
    assert_cce_ok(cce_manifest_load(NULL, &m));
    cce_dataset_state st;
    assert_cce_ok(cce_dataset_locate(&m->entries[0], &st, &path, NULL));
    assert_int_equal(st, CCE_DATASET_MISSING);
    assert_null(path);
    cce_manifest_free(m);
}

static void test_unknown_name_and_plain_path(void **state) {
    (void)state;
    char *path = NULL, sha[65];
    assert_int_equal(cce_dataset_resolve("no_such_dataset", &path, sha), CCE_ERR_NOT_FOUND);
    expect_detail("no_such_dataset");
    expect_detail("tinystories_val, alice29, tinyshakespeare");
    const char *file = test_path(test_scratch_dir("plain"), "mine.txt");
    test_write_file(file, "abc", 3);
    assert_cce_ok(cce_dataset_resolve(file, &path, sha));
    assert_string_equal(path, file);
    assert_string_equal(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    free(path);
}

static void test_cache_and_download(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("download");
    char src[4096], cache_dir[4096], url[4200];
    snprintf(src, sizeof src, "%s", test_path(dir, "served.txt"));
    snprintf(cache_dir, sizeof cache_dir, "%s", test_path(dir, "cache"));
    test_write_file(src, "abc", 3);
    setenv("CCE_CACHE_DIR", cache_dir, 1);
    unsetenv("CCE_MIRROR");
    const char *abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    snprintf(url, sizeof url, "file://%s", src);
    char cached[4200];
    snprintf(cached, sizeof cached, "%s/data/sub/abc.txt", cache_dir);

    /* A download whose sha256 is wrong is refused and not kept. */
    one_entry_manifest(dir, "abc", "sub/abc.txt", WRONG_SHA, url, 1);
    char *path = NULL;
    if (access("/usr/bin/curl", X_OK) != 0 && access("/bin/curl", X_OK) != 0) {
        print_message("curl is not installed: skipping the download test\n");
        skip();
    }
    assert_int_equal(cce_dataset_resolve("abc", &path, NULL), CCE_ERR_CHECKSUM);
    expect_detail(url);
    assert_false(test_file_exists(cached));

    /* The right sha256: downloaded into the cache, then found there. */
    one_entry_manifest(dir, "abc", "sub/abc.txt", abc, url, 1);
    assert_cce_ok(cce_dataset_resolve("abc", &path, NULL));
    assert_string_equal(path, cached);
    free(path);
    unlink(src);
    assert_cce_ok(cce_dataset_resolve("abc", &path, NULL)); /* no download needed now */
    assert_string_equal(path, cached);
    free(path);

    /* A failing download says so. */
    unlink(cached);
    assert_int_equal(cce_dataset_resolve("abc", &path, NULL), CCE_ERR_NOT_FOUND);
    expect_detail("curl");
    expect_detail(cached);
}

/* ---- text and tokens --------------------------------------------------------------------------
 */

static void test_text_crlf(void **state) {
    (void)state;
    const char *alice = test_require_mirror_file("text/alice29.txt");
    size_t raw_len, len;
    char *raw = test_read_file(alice, &raw_len);
    size_t crlf = 0;
    for (size_t i = 0; i + 1 < raw_len; i++) crlf += raw[i] == '\r' && raw[i + 1] == '\n';
    assert_true(crlf > 3000);
    char *text;
    assert_cce_ok(cce_text_load(alice, &text, &len));
    assert_int_equal(len, raw_len - crlf);
    assert_null(memchr(text, '\r', len));
    assert_int_equal(text[len], '\0');
    free(raw);
    free(text);

    const char *dir = test_scratch_dir("crlf");
    const char *path = test_path(dir, "x.txt");
    test_write_file(path, "a\r\nb\rc\r\n\r\n\r", 11);
    assert_cce_ok(cce_text_load(path, &text, &len));
    assert_int_equal(len, 8);
    assert_memory_equal(text, "a\nb\rc\n\n\r", 8);
    free(text);
    test_write_file(path, "", 0);
    assert_cce_ok(cce_text_load(path, &text, &len));
    assert_int_equal(len, 0);
    free(text);
    assert_int_equal(cce_text_load(test_path(dir, "absent.txt"), &text, &len), CCE_ERR_IO);
    expect_detail("absent.txt");
}

static void test_tokens_cache(void **state) {
    (void)state;
    const char *tok_path = test_require_mirror_file("models/stories260K/tok512.bin");
    const char *dir = test_scratch_dir("tokens");
    setenv("CCE_CACHE_DIR", test_path(dir, "cache"), 1);
    cce_tokenizer *tok;
    assert_cce_ok(cce_tokenizer_load_llama2c(tok_path, 512, &tok));

    int32_t *first;
    size_t n_first;
    assert_cce_ok(cce_dataset_tokens("tinystories_val", tok, &first, &n_first));
    const int32_t want[] = {301, 427, 309, 426, 301, 427, 309, 394, 265, 262, 415, 271};
    for (size_t i = 0; i < 12; i++) assert_int_equal(first[i], want[i]);
    char *cache;
    assert_cce_ok(cce_dataset_token_cache_path(STORIES_SHA, tok, &cache));
    assert_true(test_file_exists(cache));
    assert_non_null(strstr(cache, "/tokens/" STORIES_SHA "-"));

    /* A cache hit equals the fresh tokenization. */
    int32_t *again;
    size_t n_again;
    assert_cce_ok(cce_dataset_tokens("tinystories_val", tok, &again, &n_again));
    assert_int_equal(n_again, n_first);
    assert_memory_equal(again, first, n_first * sizeof *first);
    free(again);

    /* Corruptions (a flipped token, a cut, a bad magic, garbage) are ignored and rebuilt. */
    size_t clen;
    char *good = test_read_file(cache, &clen);
    assert_int_equal(clen, 88 + 4 * n_first);
    for (int kind = 0; kind < 4; kind++) {
        char *bad = malloc(clen);
        memcpy(bad, good, clen);
        size_t blen = clen;
        if (kind == 0) bad[88 + 4 * 5] ^= 1;
        if (kind == 1) blen = clen - 4;
        if (kind == 2) bad[0] = 'X';
        if (kind == 3) memset(bad, 0xff, 88);
        test_write_file(cache, bad, blen);
        free(bad);
        assert_cce_ok(cce_dataset_tokens("tinystories_val", tok, &again, &n_again));
        assert_int_equal(n_again, n_first);
        assert_memory_equal(again, first, n_first * sizeof *first);
        free(again);
        size_t fixed_len;
        char *fixed = test_read_file(cache, &fixed_len);
        assert_int_equal(fixed_len, clen);
        assert_memory_equal(fixed, good, clen);
        free(fixed);
    }

    /* A valid cache file is trusted: prove reads come from it by writing a consistent one with
     * a different stream (one token fewer, checksum recomputed). */
    char hex[65];
    assert_cce_ok(cce_sha256_buffer(good + 88, 4 * (n_first - 1), hex));
    uint64_t count = n_first - 1;
    memcpy(good + 8, &count, 8);
    memcpy(good + 24, hex, 64);
    test_write_file(cache, good, clen - 4);
    assert_cce_ok(cce_dataset_tokens("tinystories_val", tok, &again, &n_again));
    assert_int_equal(n_again, n_first - 1);
    free(again);
    unlink(cache);

    /* A different tokenizer gets a different cache file and a different stream. */
    cce_tokenizer *bytes_tok;
    assert_cce_ok(cce_tokenizer_new_bytes(512, &bytes_tok));
    char *cache2;
    assert_cce_ok(cce_dataset_token_cache_path(STORIES_SHA, bytes_tok, &cache2));
    assert_string_not_equal(cache, cache2);
    const char *small = test_path(dir, "small.txt");
    test_write_file(small, "hi\r\n", 4);
    assert_cce_ok(cce_dataset_tokens(small, bytes_tok, &again, &n_again));
    assert_int_equal(n_again, 4); /* dummy prefix, 'h', 'i', '\n' */
    assert_int_equal(again[0], ' ' + 3);
    assert_int_equal(again[3], '\n' + 3);
    free(again);

    free(cache2);
    cce_tokenizer_free(bytes_tok);
    free(good);
    free(cache);
    free(first);
    cce_tokenizer_free(tok);
}

/* ---- splits -----------------------------------------------------------------------------------
 */

static void check_split(const cce_split_result *r, size_t n_stream) {
    assert_int_equal(r->test_start, 0);
    for (size_t i = 0; i < r->n_calib; i++) {
        assert_true(r->calib_offsets[i] >= r->test_tokens);
        assert_true(r->calib_offsets[i] + r->calib_window <= n_stream);
        if (i) assert_true(r->calib_offsets[i - 1] + r->calib_window <= r->calib_offsets[i]);
    }
}

static void test_split(void **state) {
    (void)state;
    cce_split_result a, b, c;
    assert_cce_ok(cce_split(100000, 20000, 16384, 512, 1, &a));
    assert_int_equal(a.test_tokens, 20000);
    assert_int_equal(a.calib_window, 512);
    assert_int_equal(a.n_calib, 32);
    check_split(&a, 100000);
    assert_cce_ok(cce_split(100000, 20000, 16384, 512, 1, &b));
    assert_memory_equal(a.calib_offsets, b.calib_offsets, 32 * sizeof(size_t));
    assert_cce_ok(cce_split(100000, 20000, 16384, 512, 2, &c));
    assert_memory_not_equal(a.calib_offsets, c.calib_offsets, 32 * sizeof(size_t));
    check_split(&c, 100000);
    cce_split_result_clear(&a);
    cce_split_result_clear(&b);
    cce_split_result_clear(&c);
    assert_null(a.calib_offsets);

    /* ceil(1000 / 300) = 4 segments. */
    assert_cce_ok(cce_split(5000, 100, 1000, 300, 7, &a));
    assert_int_equal(a.n_calib, 4);
    check_split(&a, 5000);
    cce_split_result_clear(&a);

    /* An exact fit leaves no freedom: segments tile the remainder. */
    assert_cce_ok(cce_split(1100, 100, 1000, 250, 3, &a));
    assert_int_equal(a.n_calib, 4);
    for (size_t i = 0; i < 4; i++) assert_int_equal(a.calib_offsets[i], 100 + 250 * i);
    cce_split_result_clear(&a);

    /* Over many seeds, segments reach both ends of the remainder. */
    size_t lowest = SIZE_MAX, highest = 0;
    for (uint64_t seed = 0; seed < 200; seed++) {
        assert_cce_ok(cce_split(3000, 1000, 200, 100, seed, &a));
        check_split(&a, 3000);
        if (a.calib_offsets[0] < lowest) lowest = a.calib_offsets[0];
        if (a.calib_offsets[1] > highest) highest = a.calib_offsets[1];
        cce_split_result_clear(&a);
    }
    assert_true(lowest < 1100);
    assert_true(highest > 2800);

    assert_cce_ok(cce_split(10, 10, 0, 0, 1, &a));
    assert_int_equal(a.n_calib, 0);
    assert_null(a.calib_offsets);

    assert_int_equal(cce_split(100, 101, 0, 0, 1, &a), CCE_ERR_RANGE);
    expect_detail("101");
    expect_detail("100");
    assert_int_equal(cce_split(1000, 500, 600, 100, 1, &a), CCE_ERR_RANGE);
    expect_detail("600");
    expect_detail("500");
    assert_int_equal(cce_split(1000, 0, 10, 0, 1, &a), CCE_ERR_ARG);
    expect_detail("calib_window");
}

int main(void) {
    const char *m = getenv("CCE_MIRROR"), *c = getenv("CCE_CACHE_DIR");
    snprintf(saved_mirror, sizeof saved_mirror, "%s", m ? m : "");
    snprintf(saved_cache, sizeof saved_cache, "%s", c ? c : "");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_sha256_known, reset_env),
        cmocka_unit_test_teardown(test_manifest_default, reset_env),
        cmocka_unit_test_teardown(test_manifest_malformed, reset_env),
        cmocka_unit_test_teardown(test_resolve_every_entry_in_mirror, reset_env),
        cmocka_unit_test_teardown(test_checksum_mismatch, reset_env),
        cmocka_unit_test_teardown(test_missing_file_message, reset_env),
        cmocka_unit_test_teardown(test_unknown_name_and_plain_path, reset_env),
        cmocka_unit_test_teardown(test_cache_and_download, reset_env),
        cmocka_unit_test_teardown(test_text_crlf, reset_env),
        cmocka_unit_test_teardown(test_tokens_cache, reset_env),
        cmocka_unit_test_teardown(test_split, reset_env),
    };
    reset_env(NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
