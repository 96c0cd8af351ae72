/* cce bench-strategies: a quick run on the tiny synthetic shape prints both tables with a row per
 * strategy and thread count; bad options are usage errors; an --only naming nothing is an error. */
#include <stdlib.h>
#include <string.h>

#include "test_support.h"

static void test_quick_run(void **state) {
    (void)state;
    char *out = NULL;
    int rc = test_run_cce("bench-strategies --model tiny --quick --threads 2", &out);
    assert_non_null(out);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    const char *rows[] = {"rtn:bits=8", "rtn:bits=4,group=128", "magnitude:ratio=0.5",
                          "magnitude:nm=2:4"};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const char *p = strstr(out, rows[i]); /* one row on 1 thread, one on 2 */
        assert_non_null(p);
        assert_non_null(strstr(p + 1, rows[i]));
    }
    assert_non_null(strstr(out, "GB/s"));
    assert_non_null(strstr(out, "s/layer"));
    assert_non_null(strstr(out, "gptq:bits=4,group=128"));
    assert_non_null(strstr(out, "sparsegpt:ratio=0.5"));
    assert_non_null(strstr(out, "wanda:ratio=0.5"));
    assert_non_null(strstr(out, "lowrank:method=whitened,ratio=0.5"));
    free(out);
    rc = test_run_cce("bench-strategies --model tiny --quick --only lowrank", &out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "lowrank:method=whitened"));
    assert_null(strstr(out, "rtn:"));
    free(out);
}

static void test_bad_options(void **state) {
    (void)state;
    char *out = NULL;
    assert_int_equal(test_run_cce("bench-strategies --model nosuch", &out), 2);
    assert_non_null(strstr(out, "nosuch"));
    free(out);
    assert_int_equal(test_run_cce("bench-strategies --layers 0", &out), 2);
    assert_non_null(strstr(out, "--layers"));
    free(out);
    assert_int_equal(test_run_cce("bench-strategies --frobnicate", &out), 2);
    free(out);
    assert_int_equal(test_run_cce("bench-strategies --model tiny --only foo", &out), 1);
    assert_non_null(strstr(out, "foo"));
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quick_run),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
