/* Encoded tensors in the cce-model file (store.h, "A compressed tensor"): writing the group of an
 * encoding and reading it back with every size checked against the recorded shape.
 *
 * Every function that touches HDF5 has one cleanup label and closes every hid_t it opened. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoding.h"
#include "store.h"
#include "store_hdf5.h"

/* ---- Writing --------------------------------------------------------------------------------- */

/* A 1-D contiguous dataset `name` of n elements in group g. */
static cce_status write_ds(hid_t g, const char *file, const char *path, const char *name,
                           hid_t ftype, hid_t mtype, int64_t n, const void *data) {
    hsize_t dim = (hsize_t)n;
    hid_t space = H5Screate_simple(1, &dim, NULL), d = H5I_INVALID_HID;
    cce_status st = CCE_OK;
    if (space < 0 ||
        (d = H5Dcreate2(g, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        (n > 0 && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)) {
        char what[64];
        snprintf(what, sizeof what, "cannot write dataset %s", name);
        st = store_hdf5_fail(CCE_ERR_HDF5, file, path, what);
    }
    if (d >= 0) H5Dclose(d);
    if (space >= 0) H5Sclose(space);
    return st;
}

static cce_status write_i64(hid_t g, const char *f, const char *p, const char *name, int64_t v) {
    return store_write_attr(g, f, p, name, H5T_STD_I64LE, H5T_NATIVE_INT64, -1, &v);
}

static cce_status write_i32(hid_t g, const char *f, const char *p, const char *name, int32_t v) {
    return store_write_attr(g, f, p, name, H5T_STD_I32LE, H5T_NATIVE_INT32, -1, &v);
}

/* The stored codes: all of them, or those of the kept weights only (malloc'd into *out). */
static cce_status stored_codes(const cce_encoding *e, const char *what, uint8_t **out,
                               int64_t *bytes) {
    const cce_quant_encoding *q = e->quant;
    int64_t numel = e->rows * e->cols;
    *bytes = cce_encoding_code_bytes(e);
    if (e->pattern == CCE_SPARSE_NONE) {
        *out = NULL;
        return CCE_OK;
    }
    uint8_t *keep = malloc((size_t)numel), *codes = malloc((size_t)numel); /* [numel] each */
    uint8_t *packed = calloc((size_t)*bytes + 1, 1);
    cce_status st = CCE_OK;
    if (!keep || !codes || !packed) st = cce_fail(CCE_ERR_NOMEM, "%s: codes", what);
    if (!st) st = cce_encoding_pattern_flags(e, keep, what);
    if (!st) {
        cce_quant_unpack(q->codes, numel, q->spec.bits, codes);
        int64_t k = 0;
        for (int64_t i = 0; i < numel; i++)
            if (keep[i]) codes[k++] = codes[i];
        cce_quant_pack(codes, k, q->spec.bits, packed);
    }
    free(keep);
    free(codes);
    if (st) {
        free(packed);
        return st;
    }
    *out = packed;
    return CCE_OK;
}

/* A 2-D contiguous float32 dataset `name` [rows, cols] in group g. */
static cce_status write_matrix(hid_t g, const char *file, const char *path, const char *name,
                               int64_t rows, int64_t cols, const float *data) {
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
    hid_t space = H5Screate_simple(2, dims, NULL), d = H5I_INVALID_HID;
    cce_status st = CCE_OK;
    if (space < 0 ||
        (d = H5Dcreate2(g, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) <
            0 ||
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        char what[64];
        snprintf(what, sizeof what, "cannot write dataset %s", name);
        st = store_hdf5_fail(CCE_ERR_HDF5, file, path, what);
    }
    if (d >= 0) H5Dclose(d);
    if (space >= 0) H5Sclose(space);
    return st;
}

static cce_status write_parts(hid_t g, const char *f, const char *path, const char *name,
                              const cce_encoding *e) {
    cce_status st;
    hsize_t nd = (hsize_t)e->ndim;
    if ((st = store_write_string(g, f, path, "encoding", cce_encoding_name(e))) ||
        (st = store_write_attr(g, f, path, "shape", H5T_STD_I64LE, H5T_NATIVE_INT64, (long)nd,
                               e->shape)))
        return st;
    if (e->lowrank) { /* a [rows, rank], b [rank, cols] */
        if ((st = write_i64(g, f, path, "rank", e->rank)) ||
            (st = write_matrix(g, f, path, "a", e->rows, e->rank, e->a)))
            return st;
        return write_matrix(g, f, path, "b", e->rank, e->cols, e->b);
    }
    int64_t numel = e->rows * e->cols;
    if (e->pattern != CCE_SPARSE_NONE) {
        char pattern[32] = "mask";
        if (e->pattern == CCE_SPARSE_NM)
            snprintf(pattern, sizeof pattern, "%d:%d", e->nm_n, e->nm_m);
        double sparsity = numel ? 1.0 - (double)e->kept / (double)numel : 0;
        if ((st = store_write_string(g, f, path, "pattern", pattern)) ||
            (st = write_i64(g, f, path, "kept", e->kept)) ||
            (st = store_write_attr(g, f, path, "sparsity", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, -1,
                                   &sparsity)) ||
            (st = write_ds(g, f, path, e->pattern == CCE_SPARSE_NM ? "indices" : "mask",
                           H5T_STD_U8LE, H5T_NATIVE_UINT8, cce_encoding_pattern_bytes(e),
                           e->pattern == CCE_SPARSE_NM ? e->index : e->mask)))
            return st;
        if (!e->quant)
            return write_ds(g, f, path, "values", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, e->kept,
                            e->values);
    }
    const cce_quant_encoding *q = e->quant;
    if (!q) return cce_fail(CCE_ERR_ARG, "%s: tensor %s: an encoding with no content", f, name);
    int64_t group_size = q->spec.granularity == CCE_QUANT_GROUP     ? q->spec.group
                         : q->spec.granularity == CCE_QUANT_CHANNEL ? e->cols
                                                                    : numel;
    uint8_t *packed = NULL;
    int64_t bytes;
    if ((st = write_i32(g, f, path, "bits", q->spec.bits)) ||
        (st = write_i64(g, f, path, "group_size", group_size)) ||
        (st = write_i32(g, f, path, "symmetric", q->spec.symmetric ? 1 : 0)) ||
        (st = store_write_string(g, f, path, "scheme",
                                 cce_quant_granularity_name(q->spec.granularity))) ||
        (st = stored_codes(e, name, &packed, &bytes)))
        return st;
    st = write_ds(g, f, path, "codes", H5T_STD_U8LE, H5T_NATIVE_UINT8, bytes,
                  packed ? packed : q->codes);
    free(packed);
    if (!st)
        st = write_ds(g, f, path, "scales", H5T_STD_U16LE, H5T_NATIVE_UINT16, q->n_groups,
                      q->scales);
    if (!st && !q->spec.symmetric)
        st = write_ds(g, f, path, "zeros", H5T_STD_U8LE, H5T_NATIVE_UINT8,
                      cce_quant_packed_bytes(q->n_groups, q->spec.bits), q->zeros);
    return st;
}

cce_status cce_store_write_encoded(cce_store_writer *w, int n_layers, const char *name,
                                   const cce_tensor *t, const cce_encoding *e) {
    if (!e) return cce_store_write_tensor(w, n_layers, name, t);
    const char *f = store_writer_name(w);
    cce_status st = cce_tensor_check_finite(t, name);
    if (st) {
        cce_error_prefix("%s: ", f);
        return st;
    }
    if (e->ndim != t->ndim || memcmp(e->shape, t->shape, sizeof e->shape) != 0)
        return cce_fail(CCE_ERR_ARG, "%s: tensor %s: the encoding's shape is not the tensor's", f,
                        name);
    char path[STORE_PATH_MAX];
    cce_store_path_of(name, n_layers, path, sizeof path);
    hid_t g;
    if ((st = store_make_group(w, path, &g))) return st;
    st = write_parts(g, f, path, name, e);
    H5Gclose(g);
    return st;
}

/* ---- Reading --------------------------------------------------------------------------------- */

/* Reads numeric attribute `name` of `count` values (count < 0: any number up to -count, *got
 * receives it) as mem_type. Missing or mistyped: CCE_ERR_FORMAT naming file, path and tensor. */
static cce_status attr_num(hid_t obj, const char *f, const char *path, const char *name,
                           hid_t mem_type, int count, void *out, int *got) {
    htri_t ex = H5Aexists(obj, name);
    if (ex <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return cce_fail(CCE_ERR_FORMAT, "%s: %s: attribute %s is missing", f, path, name);
    }
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT), type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    cce_status st = CCE_OK;
    if (a < 0 || (type = H5Aget_type(a)) < 0 || (space = H5Aget_space(a)) < 0) {
        st = store_hdf5_fail(CCE_ERR_FORMAT, f, path, "cannot open an attribute");
        goto done;
    }
    H5T_class_t cls = H5Tget_class(type);
    hssize_t n = H5Sget_simple_extent_npoints(space);
    int ok = (cls == H5T_INTEGER || cls == H5T_FLOAT) &&
             (count >= 0 ? n == count : (n >= 1 && n <= -count));
    if (!ok) {
        st = cce_fail(CCE_ERR_FORMAT, "%s: %s: attribute %s is not %s number%s", f, path, name,
                      count == 1 ? "a" : "a list of", count == 1 ? "" : "s of the expected length");
        goto done;
    }
    if (H5Aread(a, mem_type, out) < 0) {
        st = store_hdf5_fail(CCE_ERR_FORMAT, f, path, "cannot read an attribute");
        goto done;
    }
    if (got) *got = (int)n;
done:
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (a >= 0) H5Aclose(a);
    return st;
}

/* Opens dataset `name` of group g with its type and space (the caller closes the ids that are
 * valid, even on failure). A missing dataset is CCE_ERR_FORMAT naming file and tensor. */
static cce_status open_ds(hid_t g, const char *f, const char *path, const char *tensor,
                          const char *name, hid_t *d, hid_t *type, hid_t *space) {
    if (H5Lexists(g, name, H5P_DEFAULT) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return cce_fail(CCE_ERR_FORMAT, "%s: tensor %s (%s): dataset %s is missing", f, tensor,
                        path, name);
    }
    if ((*d = H5Dopen2(g, name, H5P_DEFAULT)) < 0 || (*type = H5Dget_type(*d)) < 0 ||
        (*space = H5Dget_space(*d)) < 0)
        return store_hdf5_fail(CCE_ERR_FORMAT, f, path, "cannot open an encoding dataset");
    return CCE_OK;
}

/* Reads dataset `name` of group g: 1-D, of class cls and element size esize, exactly n elements,
 * into out (as mem_type). */
static cce_status read_ds(hid_t g, const char *f, const char *path, const char *tensor,
                          const char *name, H5T_class_t cls, size_t esize, hid_t mem_type,
                          int64_t n, void *out) {
    hid_t d = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    cce_status st = open_ds(g, f, path, tensor, name, &d, &type, &space);
    if (st) goto done;
    int nd = H5Sget_simple_extent_ndims(space);
    hssize_t got = H5Sget_simple_extent_npoints(space);
    if (H5Tget_class(type) != cls || H5Tget_size(type) != esize || nd != 1 || got != n) {
        st = cce_fail(CCE_ERR_FORMAT,
                      "%s: tensor %s (%s): dataset %s has %lld elements of %zu bytes (rank %d); "
                      "the encoding of its shape needs %lld of %zu",
                      f, tensor, path, name, (long long)got, H5Tget_size(type), nd, (long long)n,
                      esize);
        goto done;
    }
    if (n > 0 && H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
        char what[96];
        snprintf(what, sizeof what, "tensor %s: cannot read dataset %s (truncated file?)", tensor,
                 name);
        st = store_hdf5_fail(CCE_ERR_FORMAT, f, path, what);
    }
done:
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (d >= 0) H5Dclose(d);
    return st;
}

/* Reads float32 dataset `name` of group g, which must be 2-D [rows, cols], into *out (malloc'd,
 * the caller frees it). Another rank, shape or type: CCE_ERR_FORMAT naming file and tensor. */
static cce_status read_matrix(hid_t g, const char *f, const char *path, const char *tensor,
                              const char *name, int64_t rows, int64_t cols, float **out) {
    *out = NULL;
    hid_t d = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    cce_status st = open_ds(g, f, path, tensor, name, &d, &type, &space);
    if (st) goto done;
    hsize_t dims[2] = {0, 0};
    int nd = H5Sget_simple_extent_ndims(space);
    if (nd == 1 || nd == 2) H5Sget_simple_extent_dims(space, dims, NULL);
    if (H5Tget_class(type) != H5T_FLOAT || H5Tget_size(type) != 4 || nd != 2 ||
        dims[0] != (hsize_t)rows || dims[1] != (hsize_t)cols) {
        st = cce_fail(CCE_ERR_FORMAT,
                      "%s: tensor %s (%s): low-rank factor %s is not float32 [%lld, %lld] (it "
                      "has %d dimensions, first %llu, %llu)",
                      f, tensor, path, name, (long long)rows, (long long)cols, nd,
                      (unsigned long long)dims[0], (unsigned long long)dims[1]);
        goto done;
    }
    if (!(*out = malloc((size_t)(rows * cols) * sizeof **out))) {
        st = cce_fail(CCE_ERR_NOMEM, "%s: tensor %s: low-rank factor %s", f, tensor, name);
        goto done;
    }
    if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0) {
        char what[96];
        snprintf(what, sizeof what, "tensor %s: cannot read dataset %s (truncated file?)", tensor,
                 name);
        st = store_hdf5_fail(CCE_ERR_FORMAT, f, path, what);
        free(*out);
        *out = NULL;
    }
done:
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (d >= 0) H5Dclose(d);
    return st;
}

/* The lowrank part: `rank` and the factors a [rows, rank], b [rank, cols] of a 2-D shape. */
static cce_status read_lowrank(hid_t g, const char *f, const char *path, const char *tensor,
                               cce_encoding *e) {
    if (e->ndim != 2)
        return cce_fail(CCE_ERR_FORMAT, "%s: tensor %s (%s): a lowrank encoding of a %d-D shape", f,
                        tensor, path, e->ndim);
    int64_t rank;
    cce_status st = attr_num(g, f, path, "rank", H5T_NATIVE_INT64, 1, &rank, NULL);
    if (st) return st;
    if (rank < 1 || rank > INT32_MAX)
        return cce_fail(CCE_ERR_FORMAT, "%s: tensor %s (%s): rank = %lld is not a positive rank", f,
                        tensor, path, (long long)rank);
    e->lowrank = 1;
    e->rank = rank;
    if ((st = read_matrix(g, f, path, tensor, "a", e->rows, rank, &e->a))) return st;
    return read_matrix(g, f, path, tensor, "b", rank, e->cols, &e->b);
}

cce_status store_encoded_shape(hid_t g, const char *file, const char *path, int *ndim,
                               int64_t shape[CCE_TENSOR_MAX_DIMS]) {
    int64_t dims[CCE_TENSOR_MAX_DIMS] = {1, 1, 1, 1};
    int nd = 0;
    cce_status st =
        attr_num(g, file, path, "shape", H5T_NATIVE_INT64, -CCE_TENSOR_MAX_DIMS, dims, &nd);
    if (st) return st;
    for (int k = 0; k < nd; k++)
        if (dims[k] < 1 || dims[k] > INT32_MAX)
            return cce_fail(CCE_ERR_FORMAT, "%s: %s: shape dimension %d is %lld", file, path, k,
                            (long long)dims[k]);
    *ndim = nd;
    for (int k = 0; k < CCE_TENSOR_MAX_DIMS; k++) shape[k] = k < nd ? dims[k] : 1;
    return CCE_OK;
}

/* The quant spec from the attributes, checked against [rows, cols]. */
static cce_status read_spec(hid_t g, const char *f, const char *path, const char *tensor,
                            int64_t rows, int64_t cols, cce_quant_spec *q) {
    int32_t bits, sym;
    int64_t group_size;
    char *scheme = NULL;
    cce_status st;
    if ((st = attr_num(g, f, path, "bits", H5T_NATIVE_INT32, 1, &bits, NULL)) ||
        (st = attr_num(g, f, path, "symmetric", H5T_NATIVE_INT32, 1, &sym, NULL)) ||
        (st = attr_num(g, f, path, "group_size", H5T_NATIVE_INT64, 1, &group_size, NULL)) ||
        (st = store_read_attr_string(g, f, path, "scheme", &scheme)))
        return st;
    memset(q, 0, sizeof *q);
    q->bits = bits;
    q->symmetric = sym != 0;
    int64_t want = 0;
    if (!strcmp(scheme, "tensor"))
        q->granularity = CCE_QUANT_TENSOR, want = rows * cols;
    else if (!strcmp(scheme, "channel"))
        q->granularity = CCE_QUANT_CHANNEL, want = cols;
    else if (!strcmp(scheme, "group"))
        q->granularity = CCE_QUANT_GROUP, q->group = group_size, want = group_size;
    else
        st = cce_fail(CCE_ERR_FORMAT,
                      "%s: tensor %s (%s): scheme \"%s\" is not tensor, channel "
                      "or group",
                      f, tensor, path, scheme);
    free(scheme);
    if (st) return st;
    if (bits < CCE_QUANT_MIN_BITS || bits > CCE_QUANT_MAX_BITS || (sym != 0 && sym != 1) ||
        group_size < 1 || group_size != want)
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: tensor %s (%s): bits = %d, symmetric = %d, group_size = %lld do not "
                        "describe a quantization of [%lld, %lld]",
                        f, tensor, path, (int)bits, (int)sym, (long long)group_size,
                        (long long)rows, (long long)cols);
    return CCE_OK;
}

/* The sparse part: pattern, kept, and the mask or indices. */
static cce_status read_pattern(hid_t g, const char *f, const char *path, const char *tensor,
                               cce_encoding *e) {
    char *pattern = NULL;
    int64_t numel = e->rows * e->cols, kept;
    cce_status st;
    if ((st = store_read_attr_string(g, f, path, "pattern", &pattern)) ||
        (st = attr_num(g, f, path, "kept", H5T_NATIVE_INT64, 1, &kept, NULL))) {
        free(pattern);
        return st;
    }
    int n = 0, m = 0, used = 0;
    int is_mask = !strcmp(pattern, "mask");
    if (!is_mask && (sscanf(pattern, "%d:%d%n", &n, &m, &used) != 2 || pattern[used] != '\0' ||
                     m < 2 || m > CCE_ENCODING_NM_MAX_M || n < 1 || n >= m))
        st = cce_fail(CCE_ERR_FORMAT,
                      "%s: tensor %s (%s): pattern \"%s\" is neither mask nor N:M "
                      "with 0 < N < M <= %d",
                      f, tensor, path, pattern, CCE_ENCODING_NM_MAX_M);
    free(pattern);
    if (st) return st;
    if (kept < 0 || kept > numel)
        return cce_fail(CCE_ERR_FORMAT, "%s: tensor %s (%s): kept = %lld is outside [0, %lld]", f,
                        tensor, path, (long long)kept, (long long)numel);
    e->kept = kept;
    if (is_mask) {
        e->pattern = CCE_SPARSE_MASK;
        int64_t bytes = (numel + 7) / 8;
        if (!(e->mask = calloc((size_t)bytes + 1, 1)))
            return cce_fail(CCE_ERR_NOMEM, "%s: tensor %s: mask", f, tensor);
        return read_ds(g, f, path, tensor, "mask", H5T_INTEGER, 1, H5T_NATIVE_UINT8, bytes,
                       e->mask);
    }
    e->pattern = CCE_SPARSE_NM;
    e->nm_n = n;
    e->nm_m = m;
    int64_t bytes = cce_quant_packed_bytes(kept, cce_encoding_index_bits(m));
    if (!(e->index = calloc((size_t)bytes + 1, 1)))
        return cce_fail(CCE_ERR_NOMEM, "%s: tensor %s: indices", f, tensor);
    return read_ds(g, f, path, tensor, "indices", H5T_INTEGER, 1, H5T_NATIVE_UINT8, bytes,
                   e->index);
}

/* The quant part; with a pattern, the stored kept codes are spread over the full layout and the
 * other positions get their group's zero code. keep [numel] (NULL without a pattern). */
static cce_status read_quant(hid_t g, const char *f, const char *path, const char *tensor,
                             cce_encoding *e, const uint8_t *keep) {
    cce_quant_spec spec;
    cce_status st = read_spec(g, f, path, tensor, e->rows, e->cols, &spec);
    if (st || (st = cce_quant_encoding_new(&spec, e->rows, e->cols, &e->quant))) return st;
    cce_quant_encoding *q = e->quant;
    int64_t numel = e->rows * e->cols, n_codes = keep ? e->kept : numel;
    int64_t code_bytes = cce_quant_packed_bytes(n_codes, spec.bits);
    if ((st = read_ds(g, f, path, tensor, "scales", H5T_INTEGER, 2, H5T_NATIVE_UINT16, q->n_groups,
                      q->scales)))
        return st;
    if (!spec.symmetric &&
        (st = read_ds(g, f, path, tensor, "zeros", H5T_INTEGER, 1, H5T_NATIVE_UINT8,
                      cce_quant_packed_bytes(q->n_groups, spec.bits), q->zeros)))
        return st;
    for (int64_t i = 0; i < q->n_groups; i++) {
        float sc = cce_quant_half_to_float(q->scales[i]);
        if (!isfinite(sc) || signbit(sc))
            return cce_fail(CCE_ERR_FORMAT, "%s: tensor %s (%s): scale %lld is %g", f, tensor, path,
                            (long long)i, (double)sc);
    }
    if (!keep)
        return read_ds(g, f, path, tensor, "codes", H5T_INTEGER, 1, H5T_NATIVE_UINT8, code_bytes,
                       q->codes);
    uint8_t *packed = calloc((size_t)code_bytes + 1, 1), *codes = malloc((size_t)numel + 1);
    if (!packed || !codes) st = cce_fail(CCE_ERR_NOMEM, "%s: tensor %s: codes", f, tensor);
    if (!st)
        st = read_ds(g, f, path, tensor, "codes", H5T_INTEGER, 1, H5T_NATIVE_UINT8, code_bytes,
                     packed);
    if (!st) {
        cce_quant_unpack(packed, n_codes, spec.bits, codes);
        int64_t k = n_codes;
        for (int64_t i = numel; i-- > 0;) { /* back to front: codes[k] is read before written */
            if (keep[i]) {
                codes[i] = codes[--k];
            } else {
                int64_t r = i / e->cols, c = i % e->cols;
                int64_t gi = spec.granularity == CCE_QUANT_TENSOR ? 0
                             : spec.granularity == CCE_QUANT_CHANNEL
                                 ? r
                                 : r * q->groups_per_row + c / spec.group;
                codes[i] = (uint8_t)cce_quant_encoding_group(q, gi).zero;
            }
        }
        cce_quant_pack(codes, numel, spec.bits, q->codes);
    }
    free(packed);
    free(codes);
    return st;
}

cce_status store_read_encoded(hid_t g, const char *file, const char *path, const char *name,
                              cce_tensor **out, cce_encoding **eout) {
    char *kind = NULL;
    int ndim;
    int64_t shape[CCE_TENSOR_MAX_DIMS];
    cce_encoding *e = NULL;
    cce_tensor *t = NULL;
    uint8_t *keep = NULL;
    cce_status st;
    if ((st = store_read_attr_string(g, file, path, "encoding", &kind)) ||
        (st = store_encoded_shape(g, file, path, &ndim, shape)))
        goto done;
    if ((st = cce_tensor_new(ndim, shape, &t))) goto done;
    if (!(e = calloc(1, sizeof *e))) {
        st = cce_fail(CCE_ERR_NOMEM, "%s: tensor %s: encoding", file, name);
        goto done;
    }
    e->ndim = ndim;
    memcpy(e->shape, shape, sizeof e->shape);
    e->cols = shape[ndim - 1];
    e->rows = cce_tensor_numel(t) / e->cols;
    e->kept = e->rows * e->cols;
    int sparse = !strcmp(kind, "sparse") || !strcmp(kind, "sparse+quant");
    int quant = !strcmp(kind, "quant") || !strcmp(kind, "sparse+quant");
    char what[STORE_PATH_MAX + 160];
    snprintf(what, sizeof what, "%s: tensor %s (%s)", file, name, path);
    if (!strcmp(kind, "lowrank")) {
        st = read_lowrank(g, file, path, name, e);
        goto decode;
    }
    if (sparse) {
        if ((st = read_pattern(g, file, path, name, e))) goto done;
        if (!(keep = malloc((size_t)(e->rows * e->cols)))) {
            st = cce_fail(CCE_ERR_NOMEM, "%s: pattern", what);
            goto done;
        }
        if ((st = cce_encoding_pattern_flags(e, keep, what))) goto done;
    }
    if (quant) {
        st = read_quant(g, file, path, name, e, keep);
    } else if (!(e->values = malloc((size_t)(e->kept ? e->kept : 1) * sizeof *e->values))) {
        st = cce_fail(CCE_ERR_NOMEM, "%s: values", what);
    } else {
        st = read_ds(g, file, path, name, "values", H5T_FLOAT, 4, H5T_NATIVE_FLOAT, e->kept,
                     e->values);
    }
decode:
    if (!st) st = cce_encoding_decode(e, t->data);
    if (!st && (st = cce_tensor_check_finite(t, name))) {
        char detail[512];
        snprintf(detail, sizeof detail, "%s", cce_error_detail());
        st = cce_fail(CCE_ERR_FORMAT, "%s: %s", file, detail);
    }
done:
    free(kind);
    free(keep);
    if (st) {
        cce_tensor_free(t);
        cce_encoding_free(e);
        return st;
    }
    *out = t;
    *eout = e;
    return CCE_OK;
}

cce_status store_describe_encoded(hid_t g, const char *file, const char *path, char *buf,
                                  size_t cap) {
    char *kind = NULL, *pattern = NULL, *scheme = NULL;
    int32_t bits = 0, sym = 0;
    int64_t group_size = 0;
    cce_status st = store_read_attr_string(g, file, path, "encoding", &kind);
    if (st) return st;
    if (!strcmp(kind, "lowrank")) {
        int64_t rank = 0;
        st = attr_num(g, file, path, "rank", H5T_NATIVE_INT64, 1, &rank, NULL);
        if (!st && cap) snprintf(buf, cap, "lowrank rank %lld", (long long)rank);
        free(kind);
        return st;
    }
    int sparse = !strcmp(kind, "sparse") || !strcmp(kind, "sparse+quant");
    int quant = !strcmp(kind, "quant") || !strcmp(kind, "sparse+quant");
    double sparsity = 0;
    if (sparse && !(st = store_read_attr_string(g, file, path, "pattern", &pattern)))
        st = attr_num(g, file, path, "sparsity", H5T_NATIVE_DOUBLE, 1, &sparsity, NULL);
    if (!st && quant && !(st = attr_num(g, file, path, "bits", H5T_NATIVE_INT32, 1, &bits, NULL)) &&
        !(st = attr_num(g, file, path, "symmetric", H5T_NATIVE_INT32, 1, &sym, NULL)) &&
        !(st = attr_num(g, file, path, "group_size", H5T_NATIVE_INT64, 1, &group_size, NULL)))
        st = store_read_attr_string(g, file, path, "scheme", &scheme);
    if (!st && cap) {
        size_t n = 0;
        if (sparse) n = (size_t)snprintf(buf, cap, "sparse %s %.1f%%", pattern, 100.0 * sparsity);
        if (quant && n < cap) {
            n += (size_t)snprintf(buf + n, cap - n, "%squant %d-bit %s", n ? " + " : "", (int)bits,
                                  scheme);
            if (!strcmp(scheme, "group") && n < cap)
                n += (size_t)snprintf(buf + n, cap - n, " %lld", (long long)group_size);
            if (n < cap) snprintf(buf + n, cap - n, " %s", sym ? "sym" : "asym");
        }
    }
    free(kind);
    free(pattern);
    free(scheme);
    return st;
}
