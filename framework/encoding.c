/* Tensor encodings (encoding.h): sparse patterns (mask or N:M indices), quantized payloads and
 * their composition; building them from pruned tensors, checking and decoding them. */
#include "encoding.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *cce_encoding_name(const cce_encoding *e) {
    if (e->lowrank) return "lowrank";
    if (e->pattern != CCE_SPARSE_NONE) return e->quant ? "sparse+quant" : "sparse";
    return "quant";
}

int cce_encoding_index_bits(int m) {
    int ib = 0;
    while ((1L << ib) < m) ib++;
    return ib;
}

int64_t cce_encoding_nm_row_quota(int64_t cols, int n, int m) {
    int64_t full = cols / m, tail = cols % m;
    return full * n + (tail ? ((int64_t)n * tail + m - 1) / m : 0);
}

static int64_t numel_of(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int k = 0; k < ndim; k++) n *= shape[k];
    return n;
}

static cce_status check_nm(int n, int m, const char *what) {
    if (m < 2 || m > CCE_ENCODING_NM_MAX_M || n < 1 || n >= m)
        return cce_fail(CCE_ERR_ARG, "%s: N:M pattern %d:%d is outside 0 < N < M <= %d", what, n, m,
                        CCE_ENCODING_NM_MAX_M);
    return CCE_OK;
}

/* The group of position (r, c) under q with gpr groups per row. */
static int64_t group_of(const cce_quant_spec *q, int64_t gpr, int64_t r, int64_t c) {
    switch (q->granularity) {
    case CCE_QUANT_TENSOR:
        return 0;
    case CCE_QUANT_CHANNEL:
        return r;
    case CCE_QUANT_GROUP:
        break;
    }
    return r * gpr + c / q->group;
}

/* ---- Patterns -------------------------------------------------------------------------------- */

/* Sets bit i of mask [(n + 7) / 8] (zeroed) for every non-zero keep[i], eight flags a byte. */
static void mask_of_flags(const uint8_t *keep, int64_t n, uint8_t *mask) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        unsigned byte = 0;
        for (int j = 0; j < 8; j++) byte |= (unsigned)(keep[i + j] != 0) << j;
        mask[i / 8] = (uint8_t)byte;
    }
    for (; i < n; i++)
        if (keep[i]) mask[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* 1 for a weight whose bit pattern is not zero (-0.0 counts as kept, as in flags_of). */
static inline unsigned nonzero(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u != 0;
}

cce_status cce_encoding_set_flags(cce_encoding *e, const uint8_t *keep, int nm_n, int nm_m,
                                  const char *what) {
    int64_t rows = e->rows, cols = e->cols, numel = rows * cols, kept = 0;
#pragma omp simd reduction(+ : kept)
    for (int64_t i = 0; i < numel; i++) kept += keep[i] != 0;
    uint8_t *mask = NULL, *index = NULL;
    if (nm_m > 0) {
        cce_status s = check_nm(nm_n, nm_m, what);
        if (s) return s;
        int ib = cce_encoding_index_bits(nm_m);
        uint8_t *pos = malloc((size_t)(kept ? kept : 1)); /* [kept] in-group positions */
        index = calloc((size_t)cce_quant_packed_bytes(kept, ib) + 1, 1);
        if (!pos || !index) {
            free(pos);
            free(index);
            return cce_fail(CCE_ERR_NOMEM, "%s: N:M indices", what);
        }
        int64_t k = 0;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t g0 = 0; g0 < cols; g0 += nm_m) {
                int64_t len = cols - g0 < nm_m ? cols - g0 : nm_m, got = 0;
                int64_t quota = len == nm_m ? nm_n : ((int64_t)nm_n * len + nm_m - 1) / nm_m;
                for (int64_t j = 0; j < len; j++)
                    if (keep[r * cols + g0 + j]) pos[k++] = (uint8_t)j, got++;
                if (got != quota) {
                    free(pos);
                    free(index);
                    return cce_fail(CCE_ERR_ARG,
                                    "%s: row %lld, columns %lld..%lld store %lld weights; the "
                                    "%d:%d pattern keeps %lld",
                                    what, (long long)r, (long long)g0, (long long)(g0 + len - 1),
                                    (long long)got, nm_n, nm_m, (long long)quota);
                }
            }
        cce_quant_pack(pos, kept, ib, index);
        free(pos);
    } else {
        if (!(mask = calloc((size_t)((numel + 7) / 8) + 1, 1)))
            return cce_fail(CCE_ERR_NOMEM, "%s: mask", what);
        mask_of_flags(keep, numel, mask);
    }
    free(e->mask);
    free(e->index);
    e->mask = mask;
    e->index = index;
    e->pattern = nm_m > 0 ? CCE_SPARSE_NM : CCE_SPARSE_MASK;
    e->nm_n = nm_m > 0 ? nm_n : 0;
    e->nm_m = nm_m > 0 ? nm_m : 0;
    e->kept = kept;
    return CCE_OK;
}

cce_status cce_encoding_pattern_flags(const cce_encoding *e, uint8_t *keep, const char *what) {
    int64_t rows = e->rows, cols = e->cols, numel = rows * cols;
    if (e->pattern == CCE_SPARSE_NONE) {
        memset(keep, 1, (size_t)numel);
        return CCE_OK;
    }
    if (e->pattern == CCE_SPARSE_MASK) {
        int64_t count = 0;
        for (int64_t i = 0; i < numel; i++) {
            keep[i] = (e->mask[i / 8] >> (i % 8)) & 1u;
            count += keep[i];
        }
        if (numel % 8 && (e->mask[numel / 8] >> (numel % 8)) != 0)
            return cce_fail(CCE_ERR_FORMAT, "%s: mask has bits set beyond the %lld weights", what,
                            (long long)numel);
        if (count != e->kept)
            return cce_fail(CCE_ERR_FORMAT, "%s: mask marks %lld weights, kept = %lld", what,
                            (long long)count, (long long)e->kept);
        return CCE_OK;
    }
    if (e->nm_m < 2 || e->nm_m > CCE_ENCODING_NM_MAX_M || e->nm_n < 1 || e->nm_n >= e->nm_m)
        return cce_fail(CCE_ERR_FORMAT, "%s: N:M pattern %d:%d is outside 0 < N < M <= %d", what,
                        e->nm_n, e->nm_m, CCE_ENCODING_NM_MAX_M);
    int64_t quota = cce_encoding_nm_row_quota(cols, e->nm_n, e->nm_m);
    if (e->kept != rows * quota)
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: kept = %lld, the %d:%d pattern of [%lld, %lld] keeps %lld", what,
                        (long long)e->kept, e->nm_n, e->nm_m, (long long)rows, (long long)cols,
                        (long long)(rows * quota));
    uint8_t *pos = malloc((size_t)(e->kept ? e->kept : 1)); /* [kept] */
    if (!pos) return cce_fail(CCE_ERR_NOMEM, "%s: N:M indices", what);
    cce_quant_unpack(e->index, e->kept, cce_encoding_index_bits(e->nm_m), pos);
    memset(keep, 0, (size_t)numel);
    int64_t k = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g0 = 0; g0 < cols; g0 += e->nm_m) {
            int64_t len = cols - g0 < e->nm_m ? cols - g0 : e->nm_m;
            int64_t q = len == e->nm_m ? e->nm_n : ((int64_t)e->nm_n * len + e->nm_m - 1) / e->nm_m;
            int prev = -1;
            for (int64_t j = 0; j < q; j++, k++) {
                if (pos[k] >= len || (int)pos[k] <= prev) {
                    int bad = pos[k];
                    free(pos);
                    return cce_fail(CCE_ERR_FORMAT,
                                    "%s: N:M index %d at row %lld, group at column %lld is not an "
                                    "increasing position below %lld",
                                    what, bad, (long long)r, (long long)g0, (long long)len);
                }
                prev = pos[k];
                keep[r * cols + g0 + pos[k]] = 1;
            }
        }
    free(pos);
    return CCE_OK;
}

/* Flags of w [rows, cols]: its non-zeros (bit pattern), topped up per N:M group with the earliest
 * zeros to the quota. */
static cce_status flags_of(const float *w, int64_t rows, int64_t cols, int nm_n, int nm_m,
                           const char *what, uint8_t *keep) {
    int64_t numel = rows * cols;
    for (int64_t i = 0; i < numel; i++) {
        uint32_t u;
        memcpy(&u, &w[i], sizeof u);
        keep[i] = u != 0;
    }
    if (nm_m <= 0) return CCE_OK;
    cce_status s = check_nm(nm_n, nm_m, what);
    if (s) return s;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g0 = 0; g0 < cols; g0 += nm_m) {
            uint8_t *k = keep + r * cols + g0;
            int64_t len = cols - g0 < nm_m ? cols - g0 : nm_m, got = 0;
            int64_t quota = len == nm_m ? nm_n : ((int64_t)nm_n * len + nm_m - 1) / nm_m;
            for (int64_t j = 0; j < len; j++) got += k[j];
            if (got > quota)
                return cce_fail(CCE_ERR_ARG,
                                "%s: row %lld, columns %lld..%lld hold %lld non-zeros; the %d:%d "
                                "pattern keeps %lld",
                                what, (long long)r, (long long)g0, (long long)(g0 + len - 1),
                                (long long)got, nm_n, nm_m, (long long)quota);
            for (int64_t j = 0; j < len && got < quota; j++)
                if (!k[j]) k[j] = 1, got++;
        }
    return CCE_OK;
}

/* ---- Construction ---------------------------------------------------------------------------- */

static cce_status shell(int ndim, const int64_t *shape, cce_encoding **out) {
    if (ndim < 1 || ndim > CCE_TENSOR_MAX_DIMS)
        return cce_fail(CCE_ERR_ARG, "encoding: rank %d is outside 1..%d", ndim,
                        CCE_TENSOR_MAX_DIMS);
    cce_encoding *e = calloc(1, sizeof *e);
    if (!e) return cce_fail(CCE_ERR_NOMEM, "encoding");
    e->ndim = ndim;
    for (int k = 0; k < CCE_TENSOR_MAX_DIMS; k++) e->shape[k] = k < ndim ? shape[k] : 1;
    e->cols = shape[ndim - 1];
    e->rows = numel_of(ndim, shape) / (e->cols ? e->cols : 1);
    e->kept = e->rows * e->cols;
    *out = e;
    return CCE_OK;
}

/* The mask encoding of w [numel] in one pass: mask bits and kept values, as flags_of and
 * cce_encoding_set_flags give them. values holds kept + 1 (the compaction writes one past). */
static cce_status sparse_mask(cce_encoding *e, const float *w, const char *what) {
    int64_t numel = e->rows * e->cols, kept = 0;
#pragma omp simd reduction(+ : kept)
    for (int64_t i = 0; i < numel; i++) kept += nonzero(w[i]);
    uint8_t *mask = calloc((size_t)((numel + 7) / 8) + 1, 1);    /* [(numel + 7) / 8] */
    float *values = malloc((size_t)(kept + 1) * sizeof *values); /* [kept + 1] */
    if (!mask || !values) {
        free(mask);
        free(values);
        return cce_fail(CCE_ERR_NOMEM, "%s: sparse encoding", what);
    }
    int64_t i = 0, k = 0;
    for (; i + 8 <= numel; i += 8) {
        unsigned byte = 0;
        for (int j = 0; j < 8; j++) {
            unsigned nz = nonzero(w[i + j]);
            byte |= nz << j;
            values[k] = w[i + j];
            k += nz;
        }
        mask[i / 8] = (uint8_t)byte;
    }
    for (; i < numel; i++)
        if (nonzero(w[i])) mask[i / 8] |= (uint8_t)(1u << (i % 8)), values[k++] = w[i];
    e->mask = mask;
    e->values = values;
    e->pattern = CCE_SPARSE_MASK;
    e->kept = kept;
    return CCE_OK;
}

#define GROUP_CHUNK 256 /* N:M groups whose non-zero patterns are found at once (2^k) */

/* The non-zero patterns (bit j: weight j is not zero) of min(groups, GROUP_CHUNK) groups of m
 * <= 8 weights from w into pat; m = 4 is written out so that it vectorizes. */
static void group_patterns(const float *w, int m, int64_t groups, uint8_t *pat) {
    int n = groups < GROUP_CHUNK ? (int)groups : GROUP_CHUNK;
    if (m == 4) {
        for (int g = 0; g < n; g++)
            pat[g] = (uint8_t)(nonzero(w[4 * g]) | nonzero(w[4 * g + 1]) << 1 |
                               nonzero(w[4 * g + 2]) << 2 | nonzero(w[4 * g + 3]) << 3);
        return;
    }
    for (int g = 0; g < n; g++) {
        unsigned b = 0;
        for (int j = 0; j < m; j++) b |= nonzero(w[(int64_t)g * m + j]) << j;
        pat[g] = (uint8_t)b;
    }
}

/* The N:M encoding of w [rows, cols] in one pass: per group its non-zeros, topped up with the
 * earliest zeros to the quota (flags_of), their in-group positions and values. */
static cce_status sparse_nm(cce_encoding *e, const float *w, int nm_n, int nm_m, const char *what) {
    cce_status s = check_nm(nm_n, nm_m, what);
    if (s) return s;
    int64_t rows = e->rows, cols = e->cols;
    int64_t kept = rows * cce_encoding_nm_row_quota(cols, nm_n, nm_m);
    int ib = cce_encoding_index_bits(nm_m);
    uint8_t *index = calloc((size_t)cce_quant_packed_bytes(kept, ib) + 1, 1);
    /* [kept + 16]: a full group's values are compacted by stores that may run past the end */
    float *values = malloc((size_t)(kept + 16) * sizeof *values);
    if (!index || !values) {
        free(index);
        free(values);
        return cce_fail(CCE_ERR_NOMEM, "%s: N:M indices", what);
    }
    /* For M <= 8, full groups look their non-zero pattern up: the topped-up pattern (-1 when
     * over the quota) and its packed positions. */
    int16_t topped[256];
    uint32_t code[256];
    int table = nm_m <= 8;
    for (uint32_t mask = 0; table && mask < (1u << nm_m); mask++) {
        uint32_t b = mask;
        int got = __builtin_popcount(b);
        for (; got < nm_n; got++) b |= ~b & (b + 1);
        topped[mask] = got > nm_n ? -1 : (int16_t)b;
        code[mask] = 0;
        for (int j = 0, c = 0; j < nm_m; j++)
            if (b >> j & 1u) code[mask] |= (uint32_t)j << (ib * c++);
    }
    uint8_t pat[GROUP_CHUNK]; /* non-zero patterns of up to GROUP_CHUNK full groups */
    /* The positions are packed as they come (cce_quant_pack's stream: value bit 0 first). */
    uint8_t *out = index;
    uint64_t acc = 0;
    int nb = 0;
    int64_t k = 0;
    for (int64_t r = 0; r < rows && !s; r++)
        for (int64_t g0 = 0, gi = 0; g0 < cols; g0 += nm_m, gi++) {
            const float *wg = w + r * cols + g0;
            int64_t len = cols - g0 < nm_m ? cols - g0 : nm_m;
            if (table && len == nm_m) {
                if ((gi & (GROUP_CHUNK - 1)) == 0) /* the patterns of the next groups */
                    group_patterns(wg, nm_m, (cols - g0) / nm_m, pat);
                uint32_t bits = pat[gi & (GROUP_CHUNK - 1)];
                int tb = topped[bits];
                if (tb >= 0) {
                    acc |= (uint64_t)code[bits] << nb;
                    for (nb += nm_n * ib; nb >= 8; nb -= 8) *out++ = (uint8_t)acc, acc >>= 8;
                    for (int j = 0; j < nm_m; j++) {
                        values[k] = wg[j];
                        k += (tb >> j) & 1;
                    }
                    continue;
                }
            }
            int quota = len == nm_m ? nm_n : (int)(((int64_t)nm_n * len + nm_m - 1) / nm_m);
            uint32_t bits = 0;
            for (int j = 0; j < len; j++) bits |= nonzero(wg[j]) << j;
            int got = __builtin_popcount(bits);
            if (got > quota) {
                s = cce_fail(CCE_ERR_ARG,
                             "%s: row %lld, columns %lld..%lld hold %lld non-zeros; the %d:%d "
                             "pattern keeps %lld",
                             what, (long long)r, (long long)g0, (long long)(g0 + len - 1),
                             (long long)got, nm_n, nm_m, (long long)quota);
                break;
            }
            for (; got < quota; got++) bits |= ~bits & (bits + 1); /* the earliest zero */
            while (bits) {
                int j = __builtin_ctz(bits);
                bits &= bits - 1;
                acc |= (uint64_t)j << nb;
                nb += ib;
                if (nb >= 8) *out++ = (uint8_t)acc, acc >>= 8, nb -= 8;
                values[k++] = wg[j];
            }
        }
    if (!s && nb > 0) *out = (uint8_t)acc;
    if (s) {
        free(index);
        free(values);
        return s;
    }
    e->index = index;
    e->values = values;
    e->pattern = CCE_SPARSE_NM;
    e->nm_n = nm_n;
    e->nm_m = nm_m;
    e->kept = kept;
    return CCE_OK;
}

cce_status cce_encoding_new_sparse(const cce_tensor *t, int nm_n, int nm_m, const char *what,
                                   cce_encoding **out) {
    *out = NULL;
    cce_encoding *e;
    cce_status s = shell(t->ndim, t->shape, &e);
    if (s) return s;
    if (nm_m <= 0 || (nm_m <= 16 && e->cols > 0)) {
        s = nm_m > 0 ? sparse_nm(e, t->data, nm_n, nm_m, what) : sparse_mask(e, t->data, what);
        if (s) {
            cce_encoding_free(e);
            return s;
        }
        *out = e;
        return CCE_OK;
    }
    int64_t numel = e->rows * e->cols;
    uint8_t *keep = malloc((size_t)(numel ? numel : 1)); /* [numel] */
    if (!keep) {
        cce_encoding_free(e);
        return cce_fail(CCE_ERR_NOMEM, "%s: sparse encoding", what);
    }
    if (!(s = flags_of(t->data, e->rows, e->cols, nm_n, nm_m, what, keep)))
        s = cce_encoding_set_flags(e, keep, nm_n, nm_m, what);
    if (!s && !(e->values = malloc((size_t)(e->kept ? e->kept : 1) * sizeof *e->values)))
        s = cce_fail(CCE_ERR_NOMEM, "%s: sparse values", what);
    if (!s)
        for (int64_t i = 0, k = 0; i < numel; i++)
            if (keep[i]) e->values[k++] = t->data[i];
    free(keep);
    if (s) {
        cce_encoding_free(e);
        return s;
    }
    *out = e;
    return CCE_OK;
}

cce_status cce_encoding_new_quant(cce_quant_encoding *q, int ndim, const int64_t *shape,
                                  cce_encoding **out) {
    *out = NULL;
    cce_encoding *e;
    cce_status s = q ? shell(ndim, shape, &e) : cce_fail(CCE_ERR_ARG, "encoding: no quant payload");
    if (s) {
        cce_quant_encoding_free(q);
        return s;
    }
    if (q->rows != e->rows || q->cols != e->cols) {
        s = cce_fail(CCE_ERR_ARG, "encoding: quant payload [%lld, %lld] for a [%lld, %lld] tensor",
                     (long long)q->rows, (long long)q->cols, (long long)e->rows,
                     (long long)e->cols);
        cce_quant_encoding_free(q);
        cce_encoding_free(e);
        return s;
    }
    e->quant = q;
    *out = e;
    return CCE_OK;
}

cce_status cce_encoding_add_pattern(cce_encoding *e, const float *w, int nm_n, int nm_m,
                                    const char *what) {
    if (!e->quant)
        return cce_fail(CCE_ERR_ARG, "%s: a pattern is added to quant payloads only", what);
    int64_t rows = e->rows, cols = e->cols, numel = rows * cols;
    uint8_t *keep = malloc((size_t)numel);  /* [numel] */
    uint8_t *codes = malloc((size_t)numel); /* [numel] unpacked */
    cce_status s = CCE_OK;
    if (!keep || !codes) s = cce_fail(CCE_ERR_NOMEM, "%s: pattern", what);
    if (!s) s = flags_of(w, rows, cols, nm_n, nm_m, what, keep);
    if (!s) s = cce_encoding_set_flags(e, keep, nm_n, nm_m, what);
    if (!s) {
        const cce_quant_encoding *q = e->quant;
        cce_quant_unpack(q->codes, numel, q->spec.bits, codes);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++)
                if (!keep[r * cols + c])
                    codes[r * cols + c] = (uint8_t)cce_quant_encoding_group(
                                              q, group_of(&q->spec, q->groups_per_row, r, c))
                                              .zero;
        cce_quant_pack(codes, numel, q->spec.bits, q->codes);
    }
    free(keep);
    free(codes);
    return s;
}

void cce_encoding_drop_pattern(cce_encoding *e) {
    if (!e->quant) return;
    free(e->mask);
    free(e->index);
    e->mask = e->index = NULL;
    e->pattern = CCE_SPARSE_NONE;
    e->nm_n = e->nm_m = 0;
    e->kept = e->rows * e->cols;
}

/* ---- Use ------------------------------------------------------------------------------------- */

cce_status cce_encoding_decode(const cce_encoding *e, float *out) {
    int64_t numel = e->rows * e->cols;
    if (e->lowrank)
        return cce_encoding_lowrank_product(e->a, e->b, e->rows, e->rank, e->cols, "encoding", out);
    if (e->quant) return cce_quant_decode(e->quant, out);
    uint8_t *keep = malloc((size_t)(numel ? numel : 1)); /* [numel] */
    if (!keep) return cce_fail(CCE_ERR_NOMEM, "encoding: decode");
    cce_status s = cce_encoding_pattern_flags(e, keep, "encoding");
    if (!s)
        for (int64_t i = 0, k = 0; i < numel; i++) out[i] = keep[i] ? e->values[k++] : 0.0f;
    free(keep);
    return s;
}

int64_t cce_encoding_pattern_bytes(const cce_encoding *e) {
    switch (e->pattern) {
    case CCE_SPARSE_MASK:
        return (e->rows * e->cols + 7) / 8;
    case CCE_SPARSE_NM:
        return cce_quant_packed_bytes(e->kept, cce_encoding_index_bits(e->nm_m));
    case CCE_SPARSE_NONE:
        break;
    }
    return 0;
}

int64_t cce_encoding_code_bytes(const cce_encoding *e) {
    if (!e->quant) return 0;
    return cce_quant_packed_bytes(e->pattern ? e->kept : e->rows * e->cols, e->quant->spec.bits);
}

int64_t cce_encoding_stored_bytes(const cce_encoding *e) {
    if (e->lowrank) return 4 * e->rank * (e->rows + e->cols);
    int64_t b = cce_encoding_pattern_bytes(e) + cce_encoding_code_bytes(e);
    if (e->quant) {
        int64_t ng = e->quant->n_groups;
        b += 2 * ng +
             (e->quant->spec.symmetric ? 0 : cce_quant_packed_bytes(ng, e->quant->spec.bits));
    } else {
        b += 4 * e->kept;
    }
    return b;
}

void cce_encoding_describe(const cce_encoding *e, char *buf, size_t cap) {
    if (cap == 0) return;
    if (e->lowrank) {
        snprintf(buf, cap, "lowrank rank %lld", (long long)e->rank);
        return;
    }
    size_t n = 0;
    int64_t numel = e->rows * e->cols;
    double sp = numel ? 100.0 * (1.0 - (double)e->kept / (double)numel) : 0;
    if (e->pattern == CCE_SPARSE_NM)
        n = (size_t)snprintf(buf, cap, "sparse %d:%d %.1f%%", e->nm_n, e->nm_m, sp);
    else if (e->pattern == CCE_SPARSE_MASK)
        n = (size_t)snprintf(buf, cap, "sparse mask %.1f%%", sp);
    if (e->quant && n < cap) {
        const cce_quant_spec *q = &e->quant->spec;
        n += (size_t)snprintf(buf + n, cap - n, "%squant %d-bit %s", n ? " + " : "", q->bits,
                              cce_quant_granularity_name(q->granularity));
        if (q->granularity == CCE_QUANT_GROUP && n < cap)
            n += (size_t)snprintf(buf + n, cap - n, " %lld", (long long)q->group);
        if (n < cap) snprintf(buf + n, cap - n, " %s", q->symmetric ? "sym" : "asym");
    }
}

void cce_encoding_free(cce_encoding *e) {
    if (!e) return;
    free(e->mask);
    free(e->index);
    free(e->values);
    cce_quant_encoding_free(e->quant);
    free(e->a);
    free(e->b);
    free(e);
}
