/* cce export and cce import hf: the llama2c -> hf -> llama2c round trip through the program
 * (same checkpoint tensors, same greedy generation), F16 and sharded folders, usage errors and
 * failures that leave existing outputs intact; a structurally compressed variant through
 * export hf -> import hf (same widths, same generation; llama2c refused); cce bench-import. */
#include "fixtures.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
    fixture_expect_in(out, "cce_layer_shapes");
    free(out);
    out = fixture_run_expect(0, "export --help");
    fixture_expect_in(out, "DIR/tokenizer.json");
    fixture_expect_in(out, "cce_removed_layers");
    assert_null(strstr(out, "not written yet"));
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

/* A variant pruned by FFN neurons and heads, then a layer removed: export hf keeps the uniform
 * fields and records the rest; import hf restores the widths and the numbering; both models
 * generate the same text; llama2c refuses the variant. */
static void test_structured(void **state) {
    (void)state;
    char *base = at("st_base.h5"), *v = at("st_v.h5"), *hf = at("st_hf"), *back = at("st_back.h5");
    char *text = at("st_calib.txt"), *bin = at("st.bin");
    assert_int_equal(fixture_synth_file("stories260K --seed 3", base), 0);
    fixture_write_text(text, 3000, 60);
    free(fixture_run_expect(0,
                            "compress '%s' -s structured:ratio=0.5,unit=both -s shortgpt:layers=1 "
                            "--calib '%s' --test-tokens 500 --calib-tokens 512 --calib-window 32 "
                            "-o '%s'",
                            base, text, v));
    char *out = fixture_run_expect(0, "export '%s' --format hf -o '%s'", v, hf);
    fixture_expect_in(out, "F32 safetensors");
    free(out);
    char *cfg = test_read_file(test_path(hf, "config.json"), NULL);
    assert_non_null(cfg);
    fixture_expect_in(cfg, "\"num_hidden_layers\": 4");
    fixture_expect_in(cfg, "\"intermediate_size\": 172");
    fixture_expect_in(cfg, "\"cce_layer_shapes\"");
    fixture_expect_in(cfg, "\"cce_removed_layers\"");
    fixture_expect_in(cfg, "stock transformers cannot load per-layer widths");
    free(cfg);
    free(fixture_run_expect(0, "import hf '%s' -o '%s' --tokenizer '%s/tokenizer.bin'", hf, back,
                            hf));
    /* cce info shows the same config, tensors and layer table (widths, removed), and both
     * generate the same text. */
    char *i1 = fixture_run_expect(0, "info '%s'", v),
         *i2 = fixture_run_expect(0, "info '%s'", back);
    const char *t1 = strstr(i1, "\ndim:"), *t2 = strstr(i2, "\ndim:"); /* after file, source */
    assert_non_null(t1);
    assert_non_null(t2);
    assert_string_equal(t1, t2);
    free(i1), free(i2);
    char *g1 = fixture_run_expect(0, "generate '%s' -p 'Once upon' -n 24 -t 0 --quiet", v);
    char *g2 = fixture_run_expect(0, "generate '%s' -p 'Once upon' -n 24 -t 0 --quiet", back);
    assert_string_equal(g1, g2);
    free(g1), free(g2);
    out = fixture_run_expect(1, "export '%s' --format llama2c -o '%s'", back, bin);
    fixture_expect_in(out, "uniform layers");
    free(out);
    assert_false(test_file_exists(bin));
    free(base), free(v), free(hf), free(back), free(text), free(bin);
}

/* A quantized and sparse variant (rtn 4-bit, then magnitude 2:4) exports its decoded weights:
 * the folder holds plain F32 tensors, and the re-imported dense model generates exactly what the
 * variant generates. */
static void test_dequantised(void **state) {
    (void)state;
    char *base = at("q_base.h5"), *v = at("q_v.h5"), *hf = at("q_hf"), *back = at("q_back.h5");
    assert_int_equal(fixture_synth_file("stories260K --seed 5", base), 0);
    free(fixture_run_expect(0, "compress '%s' -s magnitude:nm=2:4 -s rtn:bits=4,group=32 -o '%s'",
                            base, v));
    char *info = fixture_run_expect(0, "info '%s'", v);
    fixture_expect_in(info, "quant");
    free(info);
    char *out = fixture_run_expect(0, "export '%s' --format hf -o '%s'", v, hf);
    fixture_expect_in(out, "F32 safetensors");
    free(out);
    free(fixture_run_expect(0, "import hf '%s' -o '%s' --tokenizer '%s/tokenizer.bin'", hf, back,
                            hf));
    info = fixture_run_expect(0, "info '%s'", back);
    assert_null(strstr(info, "quant"));
    free(info);
    char *g1 = fixture_run_expect(0, "generate '%s' -p 'Once upon' -n 24 -t 0 --quiet", v);
    char *g2 = fixture_run_expect(0, "generate '%s' -p 'Once upon' -n 24 -t 0 --quiet", back);
    assert_string_equal(g1, g2);
    free(g1), free(g2);
    free(base), free(v), free(hf), free(back);
}

/* cce bench-import on the tiny shape: every figure printed, the temporary folder removed, usage
 * errors. */
static void test_bench_import(void **state) {
    (void)state;
    char *where = at("bench");
    mkdir(where, 0777);
    char *out = fixture_run_expect(0, "bench-import --model tiny --reps 1 --dir '%s'", where);
    const char *want[] = {"tiny shape",
                          "F16 safetensors",
                          "MB of safetensors",
                          "GB/s input",
                          "GB/s float32 written",
                          "save (default store)",
                          "memcpy into fresh pages",
                          "memcpy into warm memory",
                          "write + fsync"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) fixture_expect_in(out, want[i]);
    free(out);
    DIR *d = opendir(where);
    struct dirent *e;
    int left = 0;
    while (d && (e = readdir(d))) left += e->d_name[0] != '.';
    if (d) closedir(d);
    assert_int_equal(left, 0);
    out = fixture_run_expect(0, "bench-import --help");
    fixture_expect_in(out, "--dtype");
    free(out);
    struct {
        const char *args, *want;
    } cases[] = {
        {"bench-import --model nope", "unknown preset 'nope'"},
        {"bench-import --dtype f8", "--dtype must be"},
        {"bench-import --reps 0", "--reps"},
        {"bench-import extra", "unexpected argument"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        out = fixture_run_expect(2, "%s", cases[i].args);
        fixture_expect_in(out, cases[i].want);
        free(out);
    }
    out = fixture_run_expect(1, "bench-import --model tiny --dir '%s/no/such'", where);
    fixture_expect_in(out, "no/such");
    free(out);
    free(where);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_usage),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_f16_sharded_and_failures),
        cmocka_unit_test(test_structured),
        cmocka_unit_test(test_dequantised),
        cmocka_unit_test(test_bench_import),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
