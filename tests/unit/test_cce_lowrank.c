/* CCE stage 4 on constructed inputs: the whitened low-rank output error on the calibration inputs,
 * tr(dW (G + delta I) dW^T), equals the dropped whitened singular energy at every rank, and the
 * encoding decodes to exactly the values put in the tensor; the break-even rank; the per-layer
 * rank choice removes at least its budget and less than one rank unit more (also with repeated
 * singular values, where the multiplier alone jumps several ranks), leaves everything dense for a
 * zero budget and refuses a budget rank 1 cannot meet. */
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../strategies/cce_internal.h"
#include "test_support.h"

/* tr(dW A dW^T) for dW = W - W' [rows, cols] (W' float) and A [cols, cols]. */
static double output_energy(const double *W, const float *Wp, int rows, int cols, const double *A) {
    double e = 0;
    double *dw = malloc((size_t)cols * sizeof *dw); /* [cols] one row of dW */
    for (int i = 0; i < rows; i++) {
        for (int j = 0; j < cols; j++) dw[j] = W[i * cols + j] - (double)Wp[i * cols + j];
        for (int a = 0; a < cols; a++)
            for (int b = 0; b < cols; b++) e += dw[a] * A[a * cols + b] * dw[b];
    }
    free(dw);
    return e;
}

static void test_whitened_error_identity(void **state) {
    (void)state;
    enum { ROWS = 12, COLS = 20, T = 60 };
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 5);
    float w[ROWS * COLS];
    double wd[ROWS * COLS], X[T * COLS], G[COLS * COLS] = {0}, A[COLS * COLS];
    for (int i = 0; i < ROWS * COLS; i++) wd[i] = w[i] = (float)gsl_ran_gaussian(rng, 1.0);
    /* correlated inputs with very different scales: whitening matters */
    for (int t = 0; t < T; t++) {
        double z = gsl_ran_gaussian(rng, 1.0);
        for (int j = 0; j < COLS; j++)
            X[t * COLS + j] = (j + 1) * 0.3 * gsl_ran_gaussian(rng, 1.0) + (j % 3 == 0 ? z : 0);
    }
    for (int t = 0; t < T; t++)
        for (int a = 0; a < COLS; a++)
            for (int b = 0; b < COLS; b++) G[a * COLS + b] += X[t * COLS + a] * X[t * COLS + b] / T;
    double delta = cce_delta_of(G, COLS, 1e-10);
    memcpy(A, G, sizeof A);
    for (int j = 0; j < COLS; j++) A[j * COLS + j] += delta;
    double *S;
    cce_lowrank_svd *svd;
    assert_cce_ok(cce_lowrank_whitened(w, ROWS, COLS, G, delta, "w", &S, &svd));
    assert_int_equal(svd->k, ROWS);
    double total = cce_lowrank_dropped_energy(svd, 0);
    float zero[ROWS * COLS] = {0};
    assert_true(fabs(output_energy(wd, zero, ROWS, COLS, A) - total) <= 1e-9 * total);
    for (int r = 1; r <= ROWS; r++) {
        float out[ROWS * COLS], dec[ROWS * COLS];
        cce_encoding *enc;
        assert_cce_ok(cce_lowrank_encode(svd, r, "w", out, &enc));
        assert_true(enc->lowrank);
        assert_int_equal(enc->rank, r);
        assert_cce_ok(cce_encoding_decode(enc, dec));
        assert_memory_equal(out, dec, sizeof out);
        double err = output_energy(wd, out, ROWS, COLS, A),
               want = cce_lowrank_dropped_energy(svd, r);
        assert_true(fabs(err - want) <= 1e-5 * total);
        if (r < ROWS) assert_true(want > 1e-3 * total); /* the identity is not 0 = 0 */
        cce_encoding_free(enc);
    }
    /* whitening against a second moment other than the data's does worse on the data */
    double *S2;
    cce_lowrank_svd *plain;
    double I[COLS * COLS] = {0};
    for (int j = 0; j < COLS; j++) I[j * COLS + j] = 1;
    assert_cce_ok(cce_lowrank_whitened(w, ROWS, COLS, I, 0, "w", &S2, &plain));
    float out[ROWS * COLS];
    cce_encoding *enc;
    assert_cce_ok(cce_lowrank_encode(plain, 4, "w", out, &enc));
    assert_true(output_energy(wd, out, ROWS, COLS, A) > cce_lowrank_dropped_energy(svd, 4));
    cce_encoding_free(enc);
    assert_int_equal(cce_lowrank_encode(plain, 0, "w", out, &enc), CCE_ERR_RANGE);
    cce_lowrank_svd_free(plain);
    free(S2);
    /* a second moment that is not positive definite (delta 0, fewer tokens than inputs) */
    double Gbad[COLS * COLS] = {0};
    for (int a = 0; a < COLS; a++)
        for (int b = 0; b < COLS; b++) Gbad[a * COLS + b] = X[a] * X[b];
    assert_int_equal(cce_lowrank_whitened(w, ROWS, COLS, Gbad, 0, "w", &S2, &plain),
                     CCE_ERR_NUMERIC);
    assert_null(plain);
    cce_lowrank_svd_free(svd);
    free(S);
    gsl_rng_free(rng);
}

static void test_max_rank(void **state) {
    (void)state;
    assert_int_equal(cce_lowrank_max_rank(64, 64), 31); /* break-even 32 */
    assert_int_equal(cce_lowrank_max_rank(32, 64), 21); /* 21.33 */
    assert_int_equal(cce_lowrank_max_rank(16, 32), 10); /* 10.67 */
    assert_int_equal(cce_lowrank_max_rank(2, 2), 0);    /* break-even 1: no rank saves */
    assert_int_equal(cce_lowrank_max_rank(1, 100), 0);
    assert_int_equal(cce_lowrank_max_rank(3, 3), 1); /* 1.5 */
}

typedef struct shape {
    int64_t rows, cols;
} shape;

/* Checks one choice: ranks valid, the reported removal theirs, the budget met within one unit. */
static void check_choice(const cce_lr_matrix *m, int n, int64_t budget) {
    int64_t rank[8], removed = -1;
    double mu;
    assert_cce_ok(cce_lowrank_choose(m, n, budget, rank, &removed, &mu));
    int64_t sum = 0, max_unit = 0;
    for (int i = 0; i < n; i++) {
        int64_t rm = cce_lowrank_max_rank(m[i].rows, m[i].cols);
        assert_true(rank[i] == -1 || (rank[i] >= 1 && rank[i] <= rm));
        if (rank[i] > 0) sum += m[i].rows * m[i].cols - rank[i] * (m[i].rows + m[i].cols);
        if (m[i].rows + m[i].cols > max_unit) max_unit = m[i].rows + m[i].cols;
    }
    assert_int_equal(sum, removed);
    if (budget <= 0) {
        assert_int_equal(removed, 0);
    } else {
        assert_true(removed >= budget);
        assert_true(removed - budget < max_unit);
    }
}

static void test_choose_budget(void **state) {
    (void)state;
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 9);
    static const shape shapes[7] = {{32, 32}, {16, 32}, {16, 32}, {32, 32},
                                    {40, 32}, {40, 32}, {32, 40}};
    double sig[7][64];
    cce_lr_matrix m[7];
    int64_t total = 0;
    for (int rep = 0; rep < 2; rep++) {
        for (int i = 0; i < 7; i++) {
            int64_t k = shapes[i].rows < shapes[i].cols ? shapes[i].rows : shapes[i].cols;
            double s = 1 + gsl_rng_uniform(rng) * 5, decay = 0.7 + 0.25 * gsl_rng_uniform(rng);
            for (int64_t j = 0; j < k; j++) {
                /* rep 1: runs of four equal singular values */
                int64_t jj = rep ? j / 4 * 4 : j;
                sig[i][j] = s * pow(decay, (double)jj);
            }
            m[i] = (cce_lr_matrix){shapes[i].rows, shapes[i].cols, k, sig[i], "m"};
            if (rep == 0) total += shapes[i].rows * shapes[i].cols;
        }
        for (int b = 0; b <= 20; b++) check_choice(m, 7, (int64_t)(b * 0.045 * (double)total));
        check_choice(m, 7, 1);
        check_choice(m, 7, -5);
    }
    /* the choice follows the energy: a matrix of flat spectrum keeps more rank than a decaying one
     * of the same shape */
    double flat[32], steep[32];
    for (int j = 0; j < 32; j++) {
        flat[j] = 1;
        steep[j] = pow(0.5, j);
    }
    cce_lr_matrix two[2] = {{32, 32, 32, flat, "flat"}, {32, 32, 32, steep, "steep"}};
    int64_t rank[2], removed;
    assert_cce_ok(cce_lowrank_choose(two, 2, 1000, rank, &removed, NULL));
    assert_true(rank[1] > 0);
    assert_true(rank[0] == -1 || rank[0] > rank[1]);
    /* more than rank 1 everywhere can give */
    assert_int_equal(cce_lowrank_choose(two, 2, 2 * 32 * 32, rank, &removed, NULL), CCE_ERR_RANGE);
    assert_non_null(strstr(cce_error_detail(), "rank 1"));
    /* bad input */
    double nan_sig[32];
    for (int j = 0; j < 32; j++) nan_sig[j] = j == 3 ? NAN : 1;
    cce_lr_matrix bad = {32, 32, 32, nan_sig, "bad"};
    assert_int_equal(cce_lowrank_choose(&bad, 1, 10, rank, &removed, NULL), CCE_ERR_NUMERIC);
    bad = (cce_lr_matrix){32, 32, 16, flat, "bad"};
    assert_int_equal(cce_lowrank_choose(&bad, 1, 10, rank, &removed, NULL), CCE_ERR_ARG);
    gsl_rng_free(rng);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whitened_error_identity),
        cmocka_unit_test(test_max_rank),
        cmocka_unit_test(test_choose_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
