/* The cce benchmark on the tiny shape: two runs (low rank, then heads), each removing the target
 * share of the block parameters, with stage times that add up to at most the run's wall time;
 * bad options fail clearly. */
#include <math.h>
#include <string.h>

#include "../../strategies/cce_internal.h"
#include "test_support.h"

static void test_bench_tiny(void **state) {
    (void)state;
    cce_bench_cce_options o;
    cce_bench_cce_options_init(&o);
    assert_string_equal(o.preset, "stories110M");
    assert_int_equal(o.windows, 64);
    assert_int_equal(o.len, 256);
    o.preset = "tiny";
    o.windows = 6;
    o.len = 24;
    o.ratio = 0.3;
    cce_bench_cce_row rows[2];
    int n;
    assert_cce_ok(cce_bench_cce_run(&o, rows, &n));
    assert_int_equal(n, 2);
    assert_non_null(strstr(rows[1].spec, "prune_heads=true"));
    for (int i = 0; i < n; i++) {
        double sum = 0;
        for (int k = 0; k < CCE_STAGES; k++) {
            assert_true(rows[i].stage[k] >= 0);
            sum += rows[i].stage[k];
        }
        assert_true(rows[i].stage[1] > 0 && rows[i].stage[4] > 0); /* redundancy, low rank ran */
        assert_true(sum <= rows[i].total + 1e-6);
        assert_true(rows[i].cpu > 0);
        assert_int_equal(rows[i].n_layers, 2);
        /* the blocks' norms are outside the budget, so slightly under the target */
        assert_true(fabs(rows[i].removed - 0.3) < 0.02);
    }
    o.windows = 0;
    assert_int_equal(cce_bench_cce_run(&o, rows, &n), CCE_ERR_ARG);
    o.windows = 6;
    o.preset = "nope";
    assert_int_equal(cce_bench_cce_run(&o, rows, &n), CCE_ERR_NOT_FOUND);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bench_tiny),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
