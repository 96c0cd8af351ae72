/* Magnitude pruning on hand-built matrices with known answers: exact masks per row, per tensor and
 * global (a whole small model), N:M group by group with ragged last groups, the counting rule,
 * ties, report rows, and bad input. */
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "strategy.h"
#include "fixtures.h"
#include "test_support.h"

#define assert_near(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) < (tol))

/* Runs `spec` on one [rows, cols] tensor at the given plan target; on success the result is
 * copied back into w. Rows are appended to r. */
static cce_status apply_spec(const char *spec, float *w, int64_t rows, int64_t cols, double target,
                             cce_report *r) {
    const char *names[1] = {"layers.2.mlp.up_proj.weight"};
    return fixture_apply_job(spec, 2, names, &w, 1, rows, cols, target, NULL, 0, r);
}

/* The hand-built matrix: row 0 all below 1, row 1 with a zero, row 2 all ties. [3, 8] */
static const float M3x8[24] = {
    0.9f, -0.1f, 0.5f, -0.7f, 0.2f, 0.05f, -0.3f, 0.8f,   /* */
    -2.f, 1.f,   0.f,  3.f,   -4.f, 0.5f,  6.f,   -0.25f, /* */
    1.f,  -1.f,  1.f,  -1.f,  1.f,  -1.f,  1.f,   -1.f,
};

static void expect_mask(const float *w, const float *orig, const int *keep, int n) {
    for (int i = 0; i < n; i++) {
        float want = keep[i] ? orig[i] : 0.0f;
        if (w[i] != want) fail_msg("weight %d: got %g, expected %g", i, w[i], want);
    }
}

static void test_row_scope_exact(void **state) {
    (void)state;
    float w[24];
    cce_report r;
    cce_report_init(&r);
    memcpy(w, M3x8, sizeof w);
    assert_cce_ok(apply_spec("magnitude:scope=row", w, 3, 8, 0.5, &r));
    static const int keep[24] = {1, 0, 1, 1, 0, 0, 0, 1,  /* 0.05, 0.1, 0.2, 0.3 go */
                                 1, 0, 0, 1, 1, 0, 1, 0,  /* 0, 0.25, 0.5, 1 go */
                                 0, 0, 0, 0, 1, 1, 1, 1}; /* ties: the first four go */
    expect_mask(w, M3x8, keep, 24);

    /* The report row of that apply. */
    assert_int_equal(r.n, 1);
    const cce_report_row *row = &r.rows[0];
    assert_string_equal(row->strategy, "magnitude");
    assert_string_equal(row->tensor, "layers.2.mlp.up_proj.weight");
    assert_int_equal(row->layer, 2);
    assert_int_equal(row->params_before, 24);
    assert_int_equal(row->params_after, 12);
    assert_int_equal(row->bytes_before, 96);
    assert_int_equal(row->bytes_after, 4 * 12 + 3); /* kept values + 24-bit mask */
    assert_near(row->bits_per_weight, 8.0 * 51 / 24, 1e-12);
    assert_near(row->sparsity, 0.5, 1e-12);
    assert_int_equal(row->rank, -1);
    assert_true(isnan(row->output_error));
    assert_true(row->seconds >= 0);
    double all = 0, gone = 0;
    for (int i = 0; i < 24; i++) {
        all += (double)M3x8[i] * M3x8[i];
        if (!keep[i]) gone += (double)M3x8[i] * M3x8[i];
    }
    assert_near(row->rel_fro_error, sqrt(gone / all), 1e-12);

    /* floor(ratio * 8) per row: 0.3 -> 2, 0.9 -> 7, 0.12 -> 0. */
    const double ratios[] = {0.3, 0.9, 0.12};
    const int per_row[] = {2, 7, 0};
    for (int k = 0; k < 3; k++) {
        memcpy(w, M3x8, sizeof w);
        assert_cce_ok(apply_spec("magnitude", w, 3, 8, ratios[k], &r));
        for (int i = 0; i < 3; i++) {
            int zeros = 0, orig_zeros = 0;
            for (int j = 0; j < 8; j++)
                zeros += w[i * 8 + j] == 0, orig_zeros += M3x8[i * 8 + j] == 0;
            assert_int_equal(zeros, per_row[k] > orig_zeros ? per_row[k] : orig_zeros);
        }
    }
    cce_report_clear(&r);
}

static void test_tensor_scope_exact(void **state) {
    (void)state;
    float w[24];
    cce_report r;
    cce_report_init(&r);
    memcpy(w, M3x8, sizeof w);
    assert_cce_ok(apply_spec("magnitude:scope=tensor", w, 3, 8, 0.5, &r));
    /* The 12 smallest of the tensor: all of row 0 (below 1), then 0, 0.25, 0.5 of row 1, and the
     * first 1 in position order (row 1's, before row 2's). */
    static const int keep[24] = {0, 0, 0, 0, 0, 0, 0, 0, /* */
                                 1, 0, 0, 1, 1, 0, 1, 0, /* */
                                 1, 1, 1, 1, 1, 1, 1, 1};
    expect_mask(w, M3x8, keep, 24);
    assert_int_equal(r.rows[0].params_after, 12);
    cce_report_clear(&r);
}

/* Reference: the k smallest (|w|, position) of w[0..n) zeroed, by a full sort. */
typedef struct ranked {
    float a;
    int64_t i;
} ranked;

static int cmp_ranked(const void *x, const void *y) {
    const ranked *a = x, *b = y;
    if (a->a != b->a) return a->a < b->a ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

static void reference_prune(float *w, int64_t n, int64_t k) {
    ranked *rk = malloc((size_t)n * sizeof *rk);
    assert_non_null(rk);
    for (int64_t j = 0; j < n; j++) rk[j] = (ranked){fabsf(w[j]), j};
    qsort(rk, (size_t)n, sizeof *rk, cmp_ranked);
    for (int64_t j = 0; j < k; j++) w[rk[j].i] = 0;
    free(rk);
}

/* Random weights with many ties (a coarse grid) and both signs. */
static void fill_random(float *w, int64_t n, unsigned long seed, double grid) {
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, seed);
    for (int64_t j = 0; j < n; j++) {
        double v = gsl_rng_uniform(rng) * 2 - 1;
        w[j] = grid > 0 ? (float)(round(v / grid) * grid) : (float)v;
    }
    gsl_rng_free(rng);
}

static void test_matches_full_sort(void **state) {
    (void)state;
    const int64_t rows = 256, cols = 172, n = rows * cols; /* large enough for the threaded path */
    float *w = malloc((size_t)n * sizeof *w), *ref = malloc((size_t)n * sizeof *ref);
    assert_non_null(w);
    assert_non_null(ref);
    cce_report r;
    cce_report_init(&r);
    const double grids[] = {0, 0.05};
    for (int g = 0; g < 2; g++) {
        fill_random(ref, n, 7 + g, grids[g]);
        memcpy(w, ref, (size_t)n * sizeof *w);
        assert_cce_ok(apply_spec("magnitude:scope=row", w, rows, cols, 0.37, &r));
        for (int64_t i = 0; i < rows; i++) reference_prune(ref + i * cols, cols, 63); /* 63.64 */
        assert_memory_equal(w, ref, (size_t)n * sizeof *w);
        /* Pruning again: first at a lower ratio (the threshold is zero, nothing changes), then at
         * a higher one (the zeros count as removed first). */
        assert_cce_ok(apply_spec("magnitude:scope=row", w, rows, cols, 0.2, &r));
        assert_memory_equal(w, ref, (size_t)n * sizeof *w);
        assert_cce_ok(apply_spec("magnitude:scope=row", w, rows, cols, 0.8, &r));
        for (int64_t i = 0; i < rows; i++) reference_prune(ref + i * cols, cols, 137); /* 137.6 */
        assert_memory_equal(w, ref, (size_t)n * sizeof *w);

        fill_random(ref, n, 11 + g, grids[g]);
        memcpy(w, ref, (size_t)n * sizeof *w);
        assert_cce_ok(apply_spec("magnitude:scope=tensor", w, rows, cols, 0.61, &r));
        reference_prune(ref, n, cce_ratio_count(0.61, n));
        assert_memory_equal(w, ref, (size_t)n * sizeof *w);
    }
    free(w);
    free(ref);
    cce_report_clear(&r);
}

/* Checks an N:M result group by group: each group of len weights keeps exactly the expected
 * number (N, or ceil(N * len / M) for a ragged last group), and every kept |w| is at least every
 * removed |w| of its group. */
static void check_nm(const float *orig, const float *w, int64_t rows, int64_t cols, int n, int m) {
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t g = 0; g < cols; g += m) {
            int64_t len = cols - g < m ? cols - g : m;
            int64_t want = len == m ? n : (n * len + m - 1) / m;
            int64_t kept = 0;
            float min_kept = INFINITY, max_gone = 0;
            for (int64_t j = g; j < g + len; j++) {
                float o = orig[i * cols + j], v = w[i * cols + j];
                if (v != 0) {
                    assert_true(v == o);
                    kept++;
                    if (fabsf(o) < min_kept) min_kept = fabsf(o);
                } else if (fabsf(o) > max_gone) {
                    max_gone = fabsf(o);
                }
            }
            if (kept != want || min_kept < max_gone)
                fail_msg("row %lld group at %lld (len %lld): kept %lld, expected %lld",
                         (long long)i, (long long)g, (long long)len, (long long)kept,
                         (long long)want);
        }
    }
}

static void test_nm_groups(void **state) {
    (void)state;
    cce_report r;
    cce_report_init(&r);
    /* 2:4 on a row of 10: groups [0,4) [4,8) and a ragged [8,10) that keeps ceil(2*2/4) = 1. */
    const float row[10] = {0.1f, -0.4f, 0.3f, 0.2f, 5.f, -6.f, 7.f, 8.f, -0.5f, 0.25f};
    float w[10];
    memcpy(w, row, sizeof w);
    assert_cce_ok(apply_spec("magnitude:nm=2:4", w, 1, 10, 0.5, &r));
    static const int keep[10] = {0, 1, 1, 0, 0, 0, 1, 1, 1, 0};
    expect_mask(w, row, keep, 10);
    /* 4 x 2 kept values + 1 in the ragged group = 5 values, 2 index bits each. */
    assert_int_equal(r.rows[0].bytes_after, 4 * 5 + 2);
    assert_int_equal(r.rows[0].params_after, 5);

    /* Random matrices, several patterns and ragged widths, verified group by group. */
    const struct {
        int n, m;
        int64_t cols;
    } cases[] = {{2, 4, 172}, {3, 8, 12}, {1, 3, 7}, {4, 8, 64}, {5, 7, 20}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t rows = 9, cols = cases[c].cols;
        float *orig = malloc((size_t)(rows * cols) * sizeof *orig);
        float *pr = malloc((size_t)(rows * cols) * sizeof *pr);
        fill_random(orig, rows * cols, 100 + c, c % 2 ? 0.1 : 0);
        memcpy(pr, orig, (size_t)(rows * cols) * sizeof *pr);
        char spec[64];
        snprintf(spec, sizeof spec, "magnitude:nm=%d:%d", cases[c].n, cases[c].m);
        assert_cce_ok(apply_spec(spec, pr, rows, cols, 0.5, &r));
        check_nm(orig, pr, rows, cols, cases[c].n, cases[c].m);
        free(orig);
        free(pr);
    }
    /* A plan target of 0 leaves the tensor dense even with nm. */
    memcpy(w, row, sizeof w);
    assert_cce_ok(apply_spec("magnitude:nm=2:4", w, 1, 10, 0.0, &r));
    assert_memory_equal(w, row, sizeof w);
    cce_report_clear(&r);
}

/* A small model whose weights are a coarse random grid (ties across tensors). */
static cce_model *small_model(void) {
    cce_config cfg = {.dim = 16,
                      .hidden_dim = 24,
                      .n_layers = 2,
                      .n_heads = 2,
                      .n_kv_heads = 1,
                      .head_dim = 8,
                      .vocab_size = 32,
                      .seq_len = 16,
                      .rope_theta = 10000,
                      .norm_eps = 1e-5f,
                      .tied_embeddings = 1};
    cce_model *m;
    assert_cce_ok(cce_model_new(&cfg, &m));
    for (size_t i = 0; i < cce_model_tensor_count(m); i++) {
        cce_tensor *t;
        assert_cce_ok(cce_model_tensor(m, cce_model_tensor_name_at(m, i), &t));
        fill_random(t->data, cce_tensor_numel(t), 500 + i, 0.125);
    }
    return m;
}

/* Runs an instance over every layer of the model, as a driver would: one job per layer with
 * copies of its tensors and targets from the plan, results put back into the model. */
static void apply_to_model(cce_strategy_instance *inst, cce_model *m, cce_plan *plan,
                           cce_report *r) {
    const cce_config *cfg = cce_model_config(m);
    for (int l = 0; l < cfg->n_layers; l++) {
        cce_block_job *job;
        assert_cce_ok(cce_block_job_new(l, CCE_LT_COUNT, &job));
        for (int w = 0; w < CCE_LT_COUNT; w++) {
            char name[128];
            cce_layer_tensor_name(l, (cce_layer_tensor)w, name, sizeof name);
            cce_tensor *t, *copy;
            assert_cce_ok(cce_model_tensor(m, name, &t));
            assert_cce_ok(cce_tensor_clone(t, &copy));
            cce_plan_row d;
            assert_cce_ok(cce_plan_resolve(plan, l, name, &d));
            assert_cce_ok(
                cce_block_job_set(job, (size_t)w, name, copy, d.value, d.source == CCE_PLAN_SKIP));
            assert_cce_ok(cce_plan_record(plan, &d));
        }
        assert_cce_ok(cce_strategy_instance_apply(inst, job, r));
        for (int w = 0; w < CCE_LT_COUNT; w++)
            assert_cce_ok(
                cce_model_put_tensor(m, job->tensors[w].name, cce_block_job_take(job, (size_t)w)));
        cce_block_job_free(job);
    }
}

static void test_global_scope(void **state) {
    (void)state;
    cce_model *m = small_model(), *orig = small_model();
    const cce_strategy *s;
    cce_params *p;
    assert_cce_ok(cce_strategy_parse_spec("magnitude:scope=global,ratio=0.45", &s, &p));
    cce_strategy_instance *inst;
    assert_cce_ok(cce_strategy_instance_new(s, p, &inst));
    cce_plan *plan;
    assert_cce_ok(cce_plan_new_from_params(p, &plan));
    cce_params_free(p);
    /* One tensor with its own ratio: pruned alone, outside the global pool. */
    const char *own = "layers.1.mlp.down_proj.weight";
    assert_cce_ok(cce_plan_override(plan, own, 0.1));

    /* apply before plan is refused: the threshold is not known yet. */
    cce_report r;
    cce_report_init(&r);
    cce_block_job *job;
    cce_tensor *t;
    assert_cce_ok(cce_block_job_new(0, 1, &job));
    assert_cce_ok(cce_tensor_new_2d(2, 2, &t));
    assert_cce_ok(cce_block_job_set(job, 0, "layers.0.mlp.up_proj.weight", t, 0.5, 0));
    assert_int_equal(cce_strategy_instance_apply(inst, job, &r), CCE_ERR_STATE);
    assert_non_null(strstr(cce_error_detail(), "global"));
    cce_block_job_free(job);

    assert_cce_ok(cce_strategy_instance_plan(inst, m, NULL, plan));
    apply_to_model(inst, m, plan, &r);

    int64_t pool = 0, removed = 0;
    float max_gone = 0, min_kept = INFINITY;
    for (size_t i = 0; i < cce_model_tensor_count(m); i++) {
        const char *name = cce_model_tensor_name_at(m, i);
        cce_tensor *a, *b;
        assert_cce_ok(cce_model_tensor(m, name, &a));
        assert_cce_ok(cce_model_tensor(orig, name, &b));
        int64_t n = cce_tensor_numel(a), zeros = 0, orig_zeros = 0;
        for (int64_t j = 0; j < n; j++) zeros += a->data[j] == 0, orig_zeros += b->data[j] == 0;
        if (strstr(name, "norm") || strstr(name, "embed")) { /* skipped: untouched */
            assert_memory_equal(a->data, b->data, (size_t)n * sizeof(float));
            continue;
        }
        if (!strcmp(name, own)) { /* its own ratio, per tensor */
            int64_t want = cce_ratio_count(0.1, n);
            assert_int_equal(zeros, want > orig_zeros ? want : orig_zeros);
            continue;
        }
        pool += n;
        for (int64_t j = 0; j < n; j++) {
            float o = fabsf(b->data[j]);
            if (a->data[j] == 0) {
                removed++;
                if (o > max_gone) max_gone = o;
            } else {
                assert_true(a->data[j] == b->data[j]);
                if (o < min_kept) min_kept = o;
            }
        }
    }
    /* Exactly floor(0.45 * pool) weights went, and they are the smallest of the pool. */
    assert_int_equal(removed, cce_ratio_count(0.45, pool));
    assert_true(max_gone <= min_kept);
    assert_true(max_gone == min_kept); /* the coarse grid puts ties at the threshold */

    /* The recorded plan names the global allocation for pooled tensors. */
    size_t nrows;
    const cce_plan_row *rows = cce_plan_applied(plan, &nrows);
    int allocated = 0;
    for (size_t i = 0; i < nrows; i++)
        allocated += rows[i].source == CCE_PLAN_ALLOCATION &&
                     !strcmp(rows[i].rule, "global magnitude threshold");
    assert_int_equal(allocated, 2 * 7 - 1);
    assert_int_equal(r.n, 2 * 7);

    cce_report_clear(&r);
    cce_plan_free(plan);
    cce_strategy_instance_free(inst);
    cce_model_free(m);
    cce_model_free(orig);
}

static void test_bad_input(void **state) {
    (void)state;
    cce_report r;
    cce_report_init(&r);
    float w[24];
    memcpy(w, M3x8, sizeof w);
    w[13] = NAN;
    assert_int_equal(apply_spec("magnitude", w, 3, 8, 0.5, &r), CCE_ERR_NUMERIC);
    assert_non_null(strstr(cce_error_detail(), "layers.2.mlp.up_proj.weight"));
    assert_true(w[0] == M3x8[0] && isnan(w[13])); /* untouched */
    assert_int_equal(r.n, 0);

    memcpy(w, M3x8, sizeof w);
    assert_int_equal(apply_spec("magnitude", w, 3, 8, 1.5, &r), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "ratio = 1.5"));
    assert_memory_equal(w, M3x8, sizeof w);

    assert_int_equal(apply_spec("magnitude:nm=2:4,scope=global", w, 3, 8, 0.5, &r), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "scope = global"));
    assert_int_equal(apply_spec("magnitude:nm=2:4,ratio=0.3", w, 3, 8, 0.5, &r), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "ratio"));
    assert_int_equal(apply_spec("magnitude:nm=4:4", w, 3, 8, 0.5, &r), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "nm = 4:4"));
    assert_int_equal(apply_spec("magnitude:ratio=abc", w, 3, 8, 0.5, &r), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "ratio"));

    /* Ratio 0 changes nothing; a skipped tensor is never touched and gets no report row. */
    assert_cce_ok(apply_spec("magnitude", w, 3, 8, 0.0, &r));
    assert_memory_equal(w, M3x8, sizeof w);
    const cce_strategy *s;
    cce_params *p;
    assert_cce_ok(cce_strategy_parse_spec("magnitude", &s, &p));
    cce_strategy_instance *inst;
    assert_cce_ok(cce_strategy_instance_new(s, p, &inst));
    cce_params_free(p);
    cce_block_job *job;
    cce_tensor *t;
    assert_cce_ok(cce_block_job_new(0, 1, &job));
    assert_cce_ok(cce_tensor_new_2d(3, 8, &t));
    memcpy(t->data, M3x8, sizeof M3x8);
    t->data[0] = NAN; /* a skipped tensor is not even checked */
    size_t before = r.n;
    assert_cce_ok(cce_block_job_set(job, 0, "layers.0.input_layernorm.weight", t, 0.5, 1));
    assert_cce_ok(cce_strategy_instance_apply(inst, job, &r));
    assert_int_equal(r.n, before);
    assert_memory_equal(job->tensors[0].weight->data + 1, M3x8 + 1, sizeof M3x8 - sizeof(float));
    /* Plans of bit widths are not for pruning. */
    cce_plan *plan;
    cce_model *m = small_model();
    assert_cce_ok(cce_plan_new(CCE_PLAN_BITS, 4, &plan));
    cce_strategy_instance_free(inst);
    assert_cce_ok(cce_strategy_parse_spec("magnitude:scope=global", &s, &p));
    assert_cce_ok(cce_strategy_instance_new(s, p, &inst));
    cce_params_free(p);
    assert_int_equal(cce_strategy_instance_plan(inst, m, NULL, plan), CCE_ERR_ARG);
    cce_plan_free(plan);
    cce_model_free(m);
    cce_block_job_free(job);
    cce_strategy_instance_free(inst);
    cce_report_clear(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_row_scope_exact),   cmocka_unit_test(test_tensor_scope_exact),
        cmocka_unit_test(test_matches_full_sort), cmocka_unit_test(test_nm_groups),
        cmocka_unit_test(test_global_scope),      cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
