/* A float32 tensor: shape plus a contiguous row-major buffer, owned or borrowed.
 *
 * Shapes follow PyTorch order: a linear layer's weight is [out, in]. */
#ifndef CCE_TENSOR_H
#define CCE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define CCE_TENSOR_MAX_DIMS 4

typedef struct cce_tensor {
    float *data;                        /* numel floats, row-major */
    int ndim;                           /* 1..CCE_TENSOR_MAX_DIMS */
    int64_t shape[CCE_TENSOR_MAX_DIMS]; /* unused trailing entries are 1 */
    int owned;                          /* 1: cce_tensor_free frees data */
} cce_tensor;

/* count floats (at least one, so never NULL on success), zero-filled if zero is set; NULL when
 * out of memory. The caller owns the block and frees it with free(). Blocks of 2 MiB or more are
 * 2 MiB aligned and advised for transparent huge pages: weights streamed once per decoded token
 * then cost one TLB entry per 2 MiB instead of 512 (cce bench: generation of the stories15M shape
 * about 5-8% faster). Tensor data and the decoder's packed weights come from here. */
float *cce_floats_alloc(size_t count, int zero);

/* New zero-filled tensor. The caller owns *out (cce_tensor_free). */
cce_status cce_tensor_new(int ndim, const int64_t *shape, cce_tensor **out);

/* Convenience for 1-D and 2-D shapes. The caller owns *out. */
cce_status cce_tensor_new_1d(int64_t n, cce_tensor **out);
cce_status cce_tensor_new_2d(int64_t rows, int64_t cols, cce_tensor **out);

/* A tensor header over someone else's buffer; cce_tensor_free frees the header only. */
cce_status cce_tensor_borrow(float *data, int ndim, const int64_t *shape, cce_tensor **out);

/* A deep copy. The caller owns *out. */
cce_status cce_tensor_clone(const cce_tensor *t, cce_tensor **out);

void cce_tensor_free(cce_tensor *t);

int64_t cce_tensor_numel(const cce_tensor *t);

/* Rows and columns of a 2-D view: rows = product of all but the last dimension. */
int64_t cce_tensor_rows(const cce_tensor *t);
int64_t cce_tensor_cols(const cce_tensor *t);

/* CCE_ERR_NUMERIC naming `what` and the first bad index if any element is NaN or Inf. */
cce_status cce_tensor_check_finite(const cce_tensor *t, const char *what);

/* 1 if shapes are equal. */
int cce_tensor_same_shape(const cce_tensor *a, const cce_tensor *b);

#endif
