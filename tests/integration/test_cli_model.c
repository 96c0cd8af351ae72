/* The cce import, synth and info commands: help, usage errors (exit 2), failures (exit 1) that
 * leave existing outputs intact, and the files they write. */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "tokenizer.h"

static const char *dir;

static int setup(void **state) {
    (void)state;
    dir = test_scratch_dir("cli_model");
    return 0;
}

/* Runs cce with args; checks the exit code and that the output contains `want` (if given). */
static char *run(const char *args, int want_rc, const char *want) {
    char *out = NULL;
    int rc = test_run_cce(args, &out);
    if (rc != want_rc)
        fail_msg("cce %s: exit %d, expected %d; output:\n%s", args, rc, want_rc, out);
    if (want && !strstr(out, want)) fail_msg("cce %s: output lacks '%s':\n%s", args, want, out);
    return out;
}

static void run_free(const char *args, int want_rc, const char *want) {
    free(run(args, want_rc, want));
}

static void test_help(void **state) {
    (void)state;
    static const char *synth_opts[] = {
        "--output",         "--seed",      "--dim",      "--hidden",
        "--layers",         "--heads",     "--kv-heads", "--vocab",
        "--seq-len",        "--init-std",  "--untied",   "--zero-classifier",
        "--compress-level", "stories110M", "custom",     "--help"};
    char *out = run("synth --help", 0, "usage: cce synth");
    for (size_t i = 0; i < sizeof synth_opts / sizeof synth_opts[0]; i++)
        if (!strstr(out, synth_opts[i])) fail_msg("synth --help lacks %s", synth_opts[i]);
    free(out);
    out = run("import --help", 0, "usage: cce import llama2c");
    assert_non_null(strstr(out, "--compress-level"));
    assert_non_null(strstr(out, "--output"));
    free(out);
    run_free("info -h", 0, "usage: cce info");
}

static void test_usage_errors(void **state) {
    (void)state;
    char args[8192];
    const char *o = test_path(dir, "never.h5");
    struct {
        const char *fmt, *want;
    } cases[] = {
        {"synth tiny", "missing -o"},
        {"synth -o '%s'", "missing PRESET"},
        {"synth tiny -o '%s' --bogus", "unknown option '--bogus'"},
        {"synth nosuch -o '%s'", "nosuch"},
        {"synth tiny -o '%s' --dim abc", "--dim"},
        {"synth tiny -o '%s' --dim 0", "--dim"},
        {"synth tiny -o '%s' --seed -3", "--seed"},
        {"synth tiny -o '%s' --compress-level 10", "--compress-level"},
        {"synth tiny -o '%s' --heads 5", "heads"},
        {"synth tiny -o '%s' --kv-heads 3", "n_kv_heads"},
        {"synth tiny -o '%s' --vocab 100", "vocab"},
        {"synth custom -o '%s' --dim 16", "custom needs"},
        {"synth tiny extra -o '%s'", "unexpected argument"},
        {"synth tiny -o '%s' --seed", "--seed needs a value"},
        {"import llama2c a.bin -o '%s'", "TOKENIZER"},
        {"import gguf a b -o '%s'", "unknown source format 'gguf'"},
        {"import llama2c a b -o '%s' --compress-level x", "--compress-level"},
        {"import llama2c a b", "missing -o"},
        {"info", "missing MODEL.h5"},
        {"info a.h5 b.h5", "unexpected argument"},
        {"info --verbose x.h5", "unknown option"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(args, sizeof args, cases[i].fmt, o);
        char *out = run(args, 2, cases[i].want);
        assert_non_null(strstr(out, "--help"));
        free(out);
    }
    assert_false(test_file_exists(o));
}

static void test_synth_and_info(void **state) {
    (void)state;
    char args[8192];
    const char *a = test_path(dir, "a.h5");
    snprintf(args, sizeof args, "synth tiny -o '%s' --seed 5", a);
    run_free(args, 0, "28192 parameters");
    snprintf(args, sizeof args, "info '%s'", a);
    char *out = run(args, 0, "layers.1.self_attn.q_proj.weight");
    assert_non_null(strstr(out, "[16, 32]")); /* k_proj: 2 kv heads x head_dim 8 */
    assert_non_null(strstr(out, "synth:tiny:seed=5"));
    assert_non_null(strstr(out, "28192 parameters"));
    assert_non_null(strstr(out, "9280")); /* parameters of one layer */
    assert_non_null(strstr(out, "tied_embeddings: 1"));
    assert_null(strstr(out, "lm_head.weight"));
    free(out);

    /* The same seed written twice holds the same weights; another seed does not. */
    const char *b = test_path(dir, "b.h5"), *c = test_path(dir, "c.h5");
    snprintf(args, sizeof args, "synth tiny -o '%s' --seed 5 --compress-level 4", b);
    run_free(args, 0, NULL);
    snprintf(args, sizeof args, "synth tiny -o '%s' --seed 6", c);
    run_free(args, 0, NULL);
    cce_model *ma, *mb, *mc;
    assert_cce_ok(cce_model_open(a, &ma));
    assert_cce_ok(cce_model_open(b, &mb));
    assert_cce_ok(cce_model_open(c, &mc));
    cce_tensor *ta, *tb, *tc;
    assert_cce_ok(cce_model_layer_tensor(ma, 1, CCE_LT_DOWN, &ta));
    assert_cce_ok(cce_model_layer_tensor(mb, 1, CCE_LT_DOWN, &tb));
    assert_cce_ok(cce_model_layer_tensor(mc, 1, CCE_LT_DOWN, &tc));
    assert_memory_equal(ta->data, tb->data, (size_t)cce_tensor_numel(ta) * 4);
    assert_memory_not_equal(ta->data, tc->data, (size_t)cce_tensor_numel(ta) * 4);
    cce_model_free(ma);
    cce_model_free(mb);
    cce_model_free(mc);

    /* Custom shapes and options. */
    const char *d = test_path(dir, "d.h5");
    snprintf(args, sizeof args,
             "synth custom -o '%s' --dim 48 --hidden 80 --layers 3 --heads 6 --kv-heads 2 "
             "--vocab 400 --seq-len 32 --zero-classifier",
             d);
    run_free(args, 0, "zero classifier");
    snprintf(args, sizeof args, "info '%s'", d);
    out = run(args, 0, "lm_head.weight");
    assert_non_null(strstr(out, "head_dim:        8"));
    assert_non_null(strstr(out, "[400, 48]"));
    free(out);
    cce_model *md;
    assert_cce_ok(cce_model_open(d, &md));
    assert_int_equal(cce_model_config(md)->n_layers, 3);
    assert_int_equal(cce_model_config(md)->tied_embeddings, 0);
    cce_tensor *head;
    assert_cce_ok(cce_model_global_tensor(md, CCE_GT_LM_HEAD, &head));
    for (int64_t i = 0; i < cce_tensor_numel(head); i++) assert_true(head->data[i] == 0.0f);
    cce_model_free(md);

    /* A preset with one field overridden. */
    const char *e = test_path(dir, "e.h5");
    snprintf(args, sizeof args, "synth tiny -o '%s' --layers 3 --untied", e);
    run_free(args, 0, "untied");
    snprintf(args, sizeof args, "info '%s'", e);
    run_free(args, 0, "n_layers:        3");

    /* info on bad files: exit 1 with the file named. */
    const char *junk = test_path(dir, "junk.h5");
    test_write_file(junk, "not a model at all", 18);
    snprintf(args, sizeof args, "info '%s'", junk);
    run_free(args, 1, "junk.h5");
    snprintf(args, sizeof args, "info '%s'", test_path(dir, "absent.h5"));
    run_free(args, 1, "absent.h5");
}

static void test_failed_import_keeps_output(void **state) {
    (void)state;
    char args[8192];
    const char *out_path = test_path(dir, "keep.h5");
    snprintf(args, sizeof args, "synth tiny -o '%s'", out_path);
    run_free(args, 0, NULL);
    size_t len_before;
    char *before = test_read_file(out_path, &len_before);
    assert_non_null(before);

    /* A truncated checkpoint: a valid header whose weights stop early. */
    const char *bin = test_path(dir, "short.bin");
    int32_t hdr[7] = {8, 12, 1, 2, 1, 6, 4};
    unsigned char buf[28 + 400] = {0};
    memcpy(buf, hdr, sizeof hdr);
    test_write_file(bin, buf, sizeof buf);
    const char *tok = test_path(dir, "tok.bin");
    test_write_file(tok, "\x05\x00\x00\x00", 4);
    snprintf(args, sizeof args, "import llama2c '%s' '%s' -o '%s'", bin, tok, out_path);
    run_free(args, 1, "short.bin");
    /* A complete checkpoint (568 floats for this header) with a missing tokenizer. */
    const char *full = test_path(dir, "full.bin");
    unsigned char fbuf[28 + 568 * 4] = {0};
    memcpy(fbuf, hdr, sizeof hdr);
    test_write_file(full, fbuf, sizeof fbuf);
    snprintf(args, sizeof args, "import llama2c '%s' '%s' -o '%s'", full,
             test_path(dir, "no_tok.bin"), out_path);
    run_free(args, 1, "no_tok.bin");
    /* An output folder that does not exist. */
    snprintf(args, sizeof args, "synth tiny -o '%s'", test_path(dir, "no/such/dir/x.h5"));
    run_free(args, 1, "no/such/dir/x.h5");

    size_t len_after;
    char *after = test_read_file(out_path, &len_after);
    assert_non_null(after);
    assert_int_equal(len_before, len_after);
    assert_memory_equal(before, after, len_before);
    free(before);
    free(after);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q '\\.tmp\\.'", dir);
    assert_int_not_equal(system(cmd), 0);
}

static void test_import_stories260k(void **state) {
    (void)state;
    const char *bin = test_require_mirror_file("models/stories260K/stories260K.bin");
    const char *tok = test_require_mirror_file("models/stories260K/tok512.bin");
    char args[8192];
    const char *out_path = test_path(dir, "stories260K.h5");
    snprintf(args, sizeof args, "import llama2c '%s' '%s' -o '%s' --compress-level 1", bin, tok,
             out_path);
    run_free(args, 0, "260032 parameters");
    snprintf(args, sizeof args, "info '%s'", out_path);
    char *out = run(args, 0, "llama2c:stories260K.bin");
    assert_non_null(strstr(out, "260032 parameters"));
    assert_non_null(strstr(out, "hidden_dim:      172"));
    assert_non_null(strstr(out, "n_kv_heads:      4"));
    assert_non_null(strstr(out, "512 pieces"));
    assert_non_null(strstr(out, "[172, 64]"));
    free(out);
}

/* A synthetic model of a real shape with the real Llama 2 tokenizer. */
static void test_synth_with_tokenizer(void **state) {
    (void)state;
    const char *tok = test_require_mirror_file("models/llama2-tokenizer/tokenizer.bin");
    char args[8192];
    const char *out_path = test_path(dir, "llama_tok.h5");
    snprintf(args, sizeof args,
             "synth custom -o '%s' --dim 16 --hidden 32 --layers 1 --heads 2 --vocab 32000 "
             "--seq-len 32 --tokenizer '%s'",
             out_path, tok);
    run_free(args, 0, NULL);
    cce_model *m;
    assert_cce_ok(cce_model_open(out_path, &m));
    const cce_tokenizer *t = cce_model_tokenizer(m);
    assert_non_null(t);
    assert_int_equal(cce_tokenizer_vocab_size(t), 32000);
    cce_tokenizer *direct;
    assert_cce_ok(cce_tokenizer_load_llama2c(tok, 32000, &direct));
    assert_true(cce_tokenizer_fingerprint(direct) == cce_tokenizer_fingerprint(t));
    cce_tokenizer_free(direct);
    int32_t *ids;
    size_t n;
    assert_cce_ok(cce_tokenizer_encode(t, "Hello world", 11, 1, 0, &ids, &n));
    assert_true(n >= 3 && n <= 4); /* BOS + a few pieces, not one per byte */
    free(ids);
    cce_model_free(m);
    /* A tokenizer whose size differs from --vocab is refused. */
    snprintf(args, sizeof args, "synth tiny -o '%s' --tokenizer '%s'", out_path, tok);
    run_free(args, 1, "tokenizer.bin");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_synth_and_info),
        cmocka_unit_test(test_failed_import_keeps_output),
        cmocka_unit_test(test_import_stories260k),
        cmocka_unit_test(test_synth_with_tokenizer),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
