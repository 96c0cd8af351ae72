/* Biases on the command line: `cce synth --bias` writes a model whose `cce info` lists every bias
 * and counts them in the layer and total parameters; structured pruning through `cce compress`
 * slices them and the result evaluates; a bad --bias-std is a usage error. */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static char *run(const char *args, int want_rc, const char *want) {
    char *out = NULL;
    int rc = test_run_cce(args, &out);
    if (rc != want_rc)
        fail_msg("cce %s: exit %d, expected %d; output:\n%s", args, rc, want_rc, out);
    if (want && !strstr(out, want)) fail_msg("cce %s: output lacks '%s':\n%s", args, want, out);
    return out;
}

/* The number after `key` on the line of out that starts with it (after spaces), or -1. */
__attribute__((noinline)) static long long field(const char *out, const char *key) {
    const char *p = strstr(out, key);
    if (!p) return -1;
    size_t at = (size_t)(p - out) + strlen(key);
    return strtoll(out + at, NULL, 10);
}

static void test_synth_info_compress(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("cli_bias");
    char biased[4096], plain[4096], pruned[4096], args[16384];
    snprintf(biased, sizeof biased, "%s", test_path(dir, "biased.h5"));
    snprintf(plain, sizeof plain, "%s", test_path(dir, "plain.h5"));
    snprintf(pruned, sizeof pruned, "%s", test_path(dir, "pruned.h5"));

    snprintf(args, sizeof args, "synth tiny --seed 3 --bias --bias-std 0.2 -o '%s'", biased);
    free(run(args, 0, "biases"));
    snprintf(args, sizeof args, "synth tiny --seed 3 -o '%s'", plain);
    free(run(args, 0, NULL));

    snprintf(args, sizeof args, "info '%s'", plain);
    char *info_plain = run(args, 0, NULL);
    assert_null(strstr(info_plain, "biases"));
    snprintf(args, sizeof args, "info '%s'", biased);
    char *info = run(args, 0, "biases: 14");
    /* tiny: dim 32, hidden 64, 4 heads, 2 kv heads of 8: 32 + 16 + 16 + 32 + 64 + 64 + 32. */
    const long long per_layer = 32 + 16 + 16 + 32 + 64 + 64 + 32;
    assert_non_null(strstr(info, "layers.0.self_attn.q_proj.bias"));
    assert_non_null(strstr(info, "layers.1.mlp.down_proj.bias"));
    assert_int_equal(field(info, "biases:      "), 2 * per_layer);
    assert_int_equal(field(info, "total:       "),
                     field(info_plain, "total:       ") + 2 * per_layer);
    assert_int_equal(field(info, "blocks:      "),
                     field(info_plain, "blocks:      ") + 2 * per_layer);
    free(info);
    free(info_plain);

    snprintf(args, sizeof args, "compress '%s' -s structured:ratio=0.5,unit=ffn -o '%s'", biased,
             pruned);
    free(run(args, 0, NULL));
    cce_model *m;
    assert_cce_ok(cce_model_open(pruned, &m));
    assert_int_equal(cce_model_bias_count(m), 14);
    cce_tensor *t;
    assert_cce_ok(cce_model_layer_bias(m, 1, CCE_LB_GATE, &t));
    assert_int_equal(t->shape[0], 32);
    cce_model_free(m);
    snprintf(args, sizeof args, "info '%s'", pruned);
    info = run(args, 0, "layers.1.mlp.up_proj.bias");
    assert_non_null(strstr(info, "[32]"));
    free(info);

    snprintf(args, sizeof args, "synth tiny --bias-std -1 -o '%s'", test_path(dir, "bad.h5"));
    free(run(args, 2, "--bias-std"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_synth_info_compress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
