/* cce export and cce import hf: the llama2c -> hf -> llama2c round trip through the program
 * (same checkpoint tensors, same greedy generation), F16 and sharded folders, usage errors and
 * failures that leave existing outputs intact. */
#include "fixtures.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *dir;

static int setup(void **state) {
    (void)state;
    dir = test_scratch_dir("cli_export");
    return 0;
}

/* A path in the scratch folder, copied (test_path's buffers rotate). */
static char *at(const char *name) {
    return strdup(test_path(dir, name));
}

static void test_help_and_usage(void **state) {
    (void)state;
    char *out = fixture_run_expect(0, "export --help");
    const char *opts[] = {"--format", "--dtype", "--shard-size", "--tokenizer-output", "-o"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) fixture_expect_in(out, opts[i]);
    free(out);
    out = fixture_run_expect(0, "import --help");
    fixture_expect_in(out, "cce import hf DIR");
    fixture_expect_in(out, "--tokenizer");
    free(out);
    char *m = at("u.h5");
    assert_int_equal(fixture_synth_file("tiny", m), 0);
    struct {
        const char *args, *want;
    } cases[] = {
        {"export '%s'", "missing --format"},
        {"export '%s' --format hf", "missing -o"},
        {"export '%s' --format onnx -o x", "unknown --format 'onnx'"},
        {"export '%s' --format hf -o x --dtype f8", "--dtype must be"},
        {"export '%s' --format llama2c -o x --dtype f16", "are for --format hf"},
        {"export '%s' --format hf -o x --shard-size 0", "--shard-size"},
        {"import hf -o x.h5", "hf needs exactly one folder"},
        {"import hf a b -o x.h5", "hf needs exactly one folder"},
        {"import llama2c a b -o x.h5 --tokenizer t", "--tokenizer is for the hf source"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        out = fixture_run_expect(2, cases[i].args, m);
        fixture_expect_in(out, cases[i].want);
        free(out);
    }
    free(m);
}

static void test_roundtrip(void **state) {
    (void)state;
    const char *p = test_require_mirror_file("models/stories260K/stories260K.bin");
    if (!p) return;
    char *bin = strdup(p);
    char *tok = strdup(test_require_mirror_file("models/stories260K/tok512.bin"));
    char *a = at("a.h5"), *hf = at("hf"), *b = at("b.h5"), *back = at("back.bin");
    char *back_tok = at("tokenizer.bin"), *c = at("c.h5");
    free(fixture_run_expect(0, "import llama2c '%s' '%s' -o '%s'", bin, tok, a));
    free(fixture_run_expect(0, "export '%s' --format hf -o '%s'", a, hf));
    char *out =
        fixture_run_expect(0, "import hf '%s' -o '%s' --tokenizer '%s/tokenizer.bin'", hf, b, hf);
    fixture_expect_in(out, "260032 parameters");
    free(out);
    free(fixture_run_expect(0, "export '%s' --format llama2c -o '%s'", b, back));
    /* The checkpoint comes back byte for byte up to the freq_cis tables (within one ulp there,
     * checked in test_import_hf); the tokenizer file byte for byte. */
    size_t la, lb, ta, tb;
    char *x = test_read_file(bin, &la), *y = test_read_file(back, &lb);
    char *t1 = test_read_file(tok, &ta), *t2 = test_read_file(back_tok, &tb);
    assert_non_null(y);
    assert_int_equal(la, lb);
    assert_memory_equal(x, y, la - 512 * 8 * 4);
    assert_int_equal(ta, tb);
    assert_memory_equal(t1, t2, ta);
    free(x), free(y), free(t1), free(t2);
    /* Re-importing the exported checkpoint gives the same generation as the original. */
    free(fixture_run_expect(0, "import llama2c '%s' '%s' -o '%s'", back, back_tok, c));
    char *g1 = fixture_run_expect(0, "generate '%s' -p 'Once upon a time' -n 48 -t 0 --quiet", a);
    char *g2 = fixture_run_expect(0, "generate '%s' -p 'Once upon a time' -n 48 -t 0 --quiet", b);
    char *g3 = fixture_run_expect(0, "generate '%s' -p 'Once upon a time' -n 48 -t 0 --quiet", c);
    fixture_expect_in(g1, "Once upon a time, there was a little girl named Lily.");
    assert_string_equal(g1, g2);
    assert_string_equal(g1, g3);
    free(g1), free(g2), free(g3);
    free(bin), free(tok), free(a), free(hf), free(b), free(back), free(back_tok);
    free(c);
}

static void test_f16_sharded_and_failures(void **state) {
    (void)state;
    char *m = at("s.h5"), *hf = at("s_hf"), *h5 = at("s_back.h5"), *keep = at("keep.bin");
    assert_int_equal(fixture_synth_file("tiny --untied", m), 0);
    char *out = fixture_run_expect(
        0, "export '%s' --format hf -o '%s' --dtype bf16 --shard-size 30000", m, hf);
    fixture_expect_in(out, "BF16 safetensors");
    free(out);
    char *index = test_read_file(test_path(hf, "model.safetensors.index.json"), NULL);
    assert_non_null(index);
    fixture_expect_in(index, "model-00002-of-");
    free(index);
    out = fixture_run_expect(0, "import hf '%s' -o '%s'", hf, h5);
    fixture_expect_in(out, "untied");
    assert_null(strstr(out, "no tokenizer")); /* read from tokenizer.json */
    free(out);
    assert_int_equal(remove(test_path(hf, "tokenizer.json")), 0);
    out = fixture_run_expect(0, "import hf '%s' -o '%s'", hf, h5);
    fixture_expect_in(out, "no tokenizer");
    free(out);
    out = fixture_run_expect(0, "info '%s'", h5);
    fixture_expect_in(out, "BF16");
    free(out);
    /* A failed export leaves an existing output untouched. */
    test_write_file(keep, "keep", 4);
    out = fixture_run_expect(1, "export '%s' --format hf -o '%s'", m, keep); /* not a folder */
    fixture_expect_in(out, "keep.bin");
    free(out);
    out = fixture_run_expect(1, "export '%s' --format llama2c -o '%s/no/such/dir/x.bin'", m, dir);
    fixture_expect_in(out, "x.bin");
    free(out);
    size_t len;
    char *kept = test_read_file(keep, &len);
    assert_int_equal(len, 4);
    free(kept);
    out = fixture_run_expect(1, "import hf '%s' -o '%s'", test_path(dir, "nothing"), keep);
    fixture_expect_in(out, "config.json");
    free(out);
    free(m), free(hf), free(h5), free(keep);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_usage),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_f16_sharded_and_failures),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
