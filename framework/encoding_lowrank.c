/* The lowrank encoding (encoding.h): a rank-r pair A [rows, r], B [r, cols] and its dense product,
 * computed one way for the strategy and for decoding so that both give the same bits. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "encoding.h"

cce_status cce_encoding_new_lowrank(const float *a, const float *b, int64_t rank, int ndim,
                                    const int64_t *shape, const char *what, cce_encoding **out) {
    *out = NULL;
    if (ndim != 2 || shape[0] < 1 || shape[1] < 1)
        return cce_fail(CCE_ERR_ARG, "%s: a low-rank encoding needs a non-empty matrix", what);
    if (rank < 1)
        return cce_fail(CCE_ERR_ARG, "%s: a low-rank encoding of rank %lld (must be >= 1)", what,
                        (long long)rank);
    cce_encoding *e = calloc(1, sizeof *e);
    if (!e) return cce_fail(CCE_ERR_NOMEM, "%s: low-rank encoding", what);
    e->ndim = 2;
    for (int k = 0; k < CCE_TENSOR_MAX_DIMS; k++) e->shape[k] = k < 2 ? shape[k] : 1;
    e->rows = shape[0];
    e->cols = shape[1];
    e->kept = e->rows * e->cols;
    e->lowrank = 1;
    e->rank = rank;
    e->a = malloc((size_t)(e->rows * rank) * sizeof *e->a); /* [rows, rank] */
    e->b = malloc((size_t)(rank * e->cols) * sizeof *e->b); /* [rank, cols] */
    if (!e->a || !e->b) {
        cce_encoding_free(e);
        return cce_fail(CCE_ERR_NOMEM, "%s: low-rank factors of rank %lld", what, (long long)rank);
    }
    memcpy(e->a, a, (size_t)(e->rows * rank) * sizeof *e->a);
    memcpy(e->b, b, (size_t)(rank * e->cols) * sizeof *e->b);
    *out = e;
    return CCE_OK;
}

cce_status cce_encoding_lowrank_product(const float *a, const float *b, int64_t rows, int64_t rank,
                                        int64_t cols, const char *what, float *out) {
    int64_t n = rows * cols;
    if (rank < 1) {
        memset(out, 0, (size_t)n * sizeof *out);
        return CCE_OK;
    }
    double *ad = malloc((size_t)(rows * rank) * sizeof *ad); /* [rows, rank] */
    double *bd = malloc((size_t)(rank * cols) * sizeof *bd); /* [rank, cols] */
    double *p = malloc((size_t)(n ? n : 1) * sizeof *p);     /* [rows, cols] A B */
    if (!ad || !bd || !p) {
        free(ad);
        free(bd);
        free(p);
        return cce_fail(CCE_ERR_NOMEM, "%s: product of the low-rank factors", what);
    }
    for (int64_t i = 0; i < rows * rank; i++) ad[i] = a[i];
    for (int64_t i = 0; i < rank * cols; i++) bd[i] = b[i];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rows, (blasint)cols,
                (blasint)rank, 1.0, ad, (blasint)rank, bd, (blasint)cols, 0.0, p, (blasint)cols);
    for (int64_t i = 0; i < n; i++) out[i] = (float)p[i];
    free(ad);
    free(bd);
    free(p);
    return CCE_OK;
}
