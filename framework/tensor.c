#include "tensor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Blocks of at least this size start on a multiple of it and are advised for transparent huge
 * pages. */
#define HUGE_PAGE_BYTES ((size_t)2 << 20)

/* Linux 6.1+; glibc 2.36's <sys/mman.h> does not name it yet. */
#if defined(__linux__) && !defined(MADV_COLLAPSE)
#define MADV_COLLAPSE 25
#endif

float *cce_floats_alloc(size_t count, int zero) {
    if (count == 0) count = 1;
    if (count > SIZE_MAX / sizeof(float)) return NULL;
    size_t bytes = count * sizeof(float);
    if (bytes < HUGE_PAGE_BYTES) return zero ? calloc(count, sizeof(float)) : malloc(bytes);
    void *p = NULL;
    if (posix_memalign(&p, HUGE_PAGE_BYTES, bytes)) return NULL;
    size_t whole = bytes / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES;
#ifdef MADV_HUGEPAGE
    /* Advice only, and only for the whole huge pages inside the block, so that the tail costs no
     * more memory than it uses. Where the kernel has none to give, the memory works the same. */
    (void)madvise(p, whole, MADV_HUGEPAGE);
#endif
    if (zero) memset(p, 0, bytes);
#ifdef MADV_COLLAPSE
    /* The advice above only shapes pages faulted from now on. A block that reuses freed memory
     * (cce keeps it, cli/main.c) lies on the small pages it was first given: the decoding
     * weights packed after an evaluation did, and decoded 2-3% slower than on huge pages (cce
     * bench). A collapse moves them onto huge pages now; it fails harmlessly on kernels before
     * 6.1 or when none are free. */
    (void)madvise(p, whole, MADV_COLLAPSE);
#endif
    return p;
}

static cce_status check_shape(int ndim, const int64_t *shape, int64_t *numel) {
    if (ndim < 1 || ndim > CCE_TENSOR_MAX_DIMS)
        return cce_fail(CCE_ERR_ARG, "tensor rank %d outside 1..%d", ndim, CCE_TENSOR_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && n > INT64_MAX / 4 / shape[i]))
            return cce_fail(CCE_ERR_ARG, "tensor dimension %d has bad size %lld", i,
                            (long long)shape[i]);
        n *= shape[i];
    }
    *numel = n;
    return CCE_OK;
}

static cce_tensor *header_new(int ndim, const int64_t *shape) {
    cce_tensor *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ndim = ndim;
    for (int i = 0; i < CCE_TENSOR_MAX_DIMS; i++) t->shape[i] = i < ndim ? shape[i] : 1;
    return t;
}

cce_status cce_tensor_new(int ndim, const int64_t *shape, cce_tensor **out) {
    int64_t n = 0;
    cce_status s = check_shape(ndim, shape, &n);
    if (s) return s;
    cce_tensor *t = header_new(ndim, shape);
    float *data = t ? cce_floats_alloc((size_t)n, 1) : NULL;
    if (!t || !data) {
        free(t);
        free(data);
        return cce_fail(CCE_ERR_NOMEM, "tensor of %lld floats", (long long)n);
    }
    t->data = data;
    t->owned = 1;
    *out = t;
    return CCE_OK;
}

cce_status cce_tensor_new_1d(int64_t n, cce_tensor **out) {
    return cce_tensor_new(1, (int64_t[]){n}, out);
}

cce_status cce_tensor_new_2d(int64_t rows, int64_t cols, cce_tensor **out) {
    return cce_tensor_new(2, (int64_t[]){rows, cols}, out);
}

cce_status cce_tensor_borrow(float *data, int ndim, const int64_t *shape, cce_tensor **out) {
    int64_t n = 0;
    cce_status s = check_shape(ndim, shape, &n);
    if (s) return s;
    cce_tensor *t = header_new(ndim, shape);
    if (!t) return cce_fail(CCE_ERR_NOMEM, "tensor header");
    t->data = data;
    t->owned = 0;
    *out = t;
    return CCE_OK;
}

cce_status cce_tensor_clone(const cce_tensor *src, cce_tensor **out) {
    int64_t n = cce_tensor_numel(src);
    cce_tensor *t = header_new(src->ndim, src->shape);
    float *data = t ? cce_floats_alloc((size_t)n, 0) : NULL; /* every float is copied over */
    if (!t || !data) {
        free(t);
        free(data);
        return cce_fail(CCE_ERR_NOMEM, "copy of a tensor of %lld floats", (long long)n);
    }
    memcpy(data, src->data, (size_t)n * sizeof(float));
    t->data = data;
    t->owned = 1;
    *out = t;
    return CCE_OK;
}

void cce_tensor_free(cce_tensor *t) {
    if (!t) return;
    if (t->owned) free(t->data);
    free(t);
}

int64_t cce_tensor_numel(const cce_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

int64_t cce_tensor_cols(const cce_tensor *t) {
    return t->shape[t->ndim - 1];
}

int64_t cce_tensor_rows(const cce_tensor *t) {
    int64_t cols = cce_tensor_cols(t);
    return cols ? cce_tensor_numel(t) / cols : 0;
}

cce_status cce_tensor_check_finite(const cce_tensor *t, const char *what) {
    int64_t n = cce_tensor_numel(t);
    const float *d = t->data;
    /* Blocks without a branch per element (x - x is 0 only for finite x), so the scan vectorises
     * and runs at memory speed; the first bad index is looked up only in a bad block. */
    for (int64_t b = 0; b < n; b += 4096) {
        int64_t e = n - b > 4096 ? b + 4096 : n;
        int bad = 0;
#pragma omp simd reduction(| : bad)
        for (int64_t i = b; i < e; i++) bad |= !(d[i] - d[i] == 0.0f);
        if (!bad) continue;
        for (int64_t i = b; i < e; i++)
            if (!isfinite(d[i]))
                return cce_fail(CCE_ERR_NUMERIC, "%s: element %lld is %s", what, (long long)i,
                                isnan(d[i]) ? "NaN" : "Inf");
    }
    return CCE_OK;
}

int cce_tensor_same_shape(const cce_tensor *a, const cce_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}
