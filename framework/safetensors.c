/* safetensors reader and writer (safetensors.h). */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "the safetensors reader assumes a little-endian host");

/* Headers beyond this are refused before parsing (the reference implementation's limit). */
#define MAX_HEADER_BYTES (100u << 20)

static const struct {
    const char *name;
    size_t size;
} DTYPES[CCE_ST_DTYPE_COUNT] = {
    [CCE_ST_F32] = {"F32", 4},   [CCE_ST_F16] = {"F16", 2}, [CCE_ST_BF16] = {"BF16", 2},
    [CCE_ST_F64] = {"F64", 8},   [CCE_ST_I64] = {"I64", 8}, [CCE_ST_I32] = {"I32", 4},
    [CCE_ST_I16] = {"I16", 2},   [CCE_ST_I8] = {"I8", 1},   [CCE_ST_U8] = {"U8", 1},
    [CCE_ST_BOOL] = {"BOOL", 1},
};

const char *cce_st_dtype_name(cce_st_dtype d) {
    return (unsigned)d < CCE_ST_DTYPE_COUNT ? DTYPES[d].name : "?";
}

size_t cce_st_dtype_size(cce_st_dtype d) {
    return (unsigned)d < CCE_ST_DTYPE_COUNT ? DTYPES[d].size : 0;
}

cce_status cce_st_dtype_parse(const char *name, cce_st_dtype *out) {
    for (int d = 0; d < CCE_ST_DTYPE_COUNT; d++)
        if (!strcmp(name, DTYPES[d].name)) {
            *out = (cce_st_dtype)d;
            return CCE_OK;
        }
    return CCE_ERR_NOT_FOUND;
}

/* ---- Half-precision conversions ------------------------------------------------------------ */

typedef union {
    uint32_t u;
    float f;
} f32bits;

float cce_f16_to_f32(uint16_t h) {
    const f32bits magic = {.u = 113u << 23};
    const uint32_t shifted_exp = 0x7c00u << 13;
    f32bits o = {.u = (uint32_t)(h & 0x7fffu) << 13};
    uint32_t exp = shifted_exp & o.u;
    o.u += (127u - 15u) << 23;
    if (exp == shifted_exp) {
        o.u += (128u - 16u) << 23; /* Inf / NaN */
    } else if (exp == 0) {
        o.u += 1u << 23; /* subnormal: renormalise */
        o.f -= magic.f;
    }
    o.u |= (uint32_t)(h & 0x8000u) << 16;
    return o.f;
}

uint16_t cce_f32_to_f16(float x) {
    const f32bits f32infty = {.u = 255u << 23}, f16max = {.u = (127u + 16u) << 23};
    const f32bits denorm_magic = {.u = ((127u - 15u) + (23u - 10u) + 1u) << 23};
    f32bits f = {.f = x};
    uint32_t sign = f.u & 0x80000000u;
    uint16_t o;
    f.u ^= sign;
    if (f.u >= f16max.u) {
        o = f.u > f32infty.u ? 0x7e00 : 0x7c00; /* NaN / overflow to Inf */
    } else if (f.u < (113u << 23)) {
        f.f += denorm_magic.f; /* subnormal result: the FPU rounds to even */
        o = (uint16_t)(f.u - denorm_magic.u);
    } else {
        uint32_t mant_odd = (f.u >> 13) & 1u;
        f.u += ((uint32_t)(15 - 127) << 23) + 0xfffu;
        f.u += mant_odd;
        o = (uint16_t)(f.u >> 13);
    }
    return (uint16_t)(o | (sign >> 16));
}

float cce_bf16_to_f32(uint16_t b) {
    f32bits o = {.u = (uint32_t)b << 16};
    return o.f;
}

uint16_t cce_f32_to_bf16(float x) {
    f32bits f = {.f = x};
    if ((f.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((f.u >> 16) | 0x40u); /* quiet NaN */
    return (uint16_t)((f.u + 0x7fffu + ((f.u >> 16) & 1u)) >> 16);
}

/* ---- Reading ------------------------------------------------------------------------------- */

struct cce_safetensors {
    char *path;
    const unsigned char *base; /* [len] the whole image */
    size_t len;
    void *map; /* mmap'd region (NULL for an in-memory image or an empty file) */
    json_t *header;
    cce_st_tensor *tensors;        /* [count] sorted by begin */
    const cce_st_tensor **by_name; /* [count] sorted by name */
    size_t count;
};

static int cmp_begin(const void *a, const void *b) {
    const cce_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const cce_st_tensor *const *)a)->name,
                  (*(const cce_st_tensor *const *)b)->name);
}

/* Parses one header entry into t. */
static cce_status parse_entry(const char *file, const char *name, json_t *v, uint64_t data_len,
                              cce_st_tensor *t) {
    if (!json_is_object(v))
        return cce_fail(CCE_ERR_FORMAT, "%s: tensor '%s': header entry is not an object", file,
                        name);
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
           *off = json_object_get(v, "data_offsets");
    if (!json_is_string(dt) || !json_is_array(sh) || !json_is_array(off))
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: tensor '%s': needs a string dtype, a shape array and a data_offsets "
                        "array",
                        file, name);
    t->name = name;
    if (cce_st_dtype_parse(json_string_value(dt), &t->dtype))
        return cce_fail(CCE_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", file, name,
                        json_string_value(dt));
    size_t nd = json_array_size(sh);
    if (nd > CCE_ST_MAX_DIMS)
        return cce_fail(CCE_ERR_FORMAT, "%s: tensor '%s': %zu dimensions (at most %d)", file, name,
                        nd, CCE_ST_MAX_DIMS);
    t->ndim = (int)nd;
    int64_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(sh, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return cce_fail(CCE_ERR_FORMAT, "%s: tensor '%s': shape[%zu] is not a size", file, name,
                            i);
        t->shape[i] = (int64_t)json_integer_value(d);
        if (__builtin_mul_overflow(numel, t->shape[i], &numel))
            return cce_fail(CCE_ERR_FORMAT, "%s: tensor '%s': the shape's element count overflows",
                            file, name);
    }
    for (size_t i = nd; i < CCE_ST_MAX_DIMS; i++) t->shape[i] = 1;
    t->numel = numel;
    int64_t bytes;
    if (__builtin_mul_overflow(numel, (int64_t)cce_st_dtype_size(t->dtype), &bytes))
        return cce_fail(CCE_ERR_FORMAT, "%s: tensor '%s': the shape's byte count overflows", file,
                        name);
    if (json_array_size(off) != 2 || !json_is_integer(json_array_get(off, 0)) ||
        !json_is_integer(json_array_get(off, 1)) ||
        json_integer_value(json_array_get(off, 0)) < 0 ||
        json_integer_value(json_array_get(off, 1)) < 0)
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets must be two non-negative integers", file,
                        name);
    t->begin = (uint64_t)json_integer_value(json_array_get(off, 0));
    t->end = (uint64_t)json_integer_value(json_array_get(off, 1));
    if (t->end < t->begin || t->end > data_len)
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%llu, %llu] lie outside the data area of "
                        "%llu bytes",
                        file, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                        (unsigned long long)data_len);
    if (t->end - t->begin != (uint64_t)bytes)
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: tensor '%s': %s shape of %lld elements needs %lld bytes, data_offsets "
                        "give %llu",
                        file, name, cce_st_dtype_name(t->dtype), (long long)numel, (long long)bytes,
                        (unsigned long long)(t->end - t->begin));
    return CCE_OK;
}

static cce_status parse_header(cce_safetensors *st) {
    const char *file = st->path;
    if (st->len < 8)
        return cce_fail(CCE_ERR_FORMAT, "%s: %zu bytes, too short for the 8-byte header length",
                        file, st->len);
    uint64_t n;
    memcpy(&n, st->base, 8);
    if (n > st->len - 8)
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: the header length %llu is longer than the file (%zu bytes after the "
                        "length)",
                        file, (unsigned long long)n, st->len - 8);
    if (n > MAX_HEADER_BYTES)
        return cce_fail(CCE_ERR_FORMAT, "%s: header of %llu bytes exceeds the %u-byte limit", file,
                        (unsigned long long)n, MAX_HEADER_BYTES);
    uint64_t data_len = st->len - 8 - n;
    json_error_t err;
    st->header = json_loadb((const char *)st->base + 8, (size_t)n, JSON_REJECT_DUPLICATES, &err);
    if (!st->header)
        return cce_fail(CCE_ERR_FORMAT, "%s: malformed header JSON at byte %d: %s", file,
                        err.position, err.text);
    if (!json_is_object(st->header))
        return cce_fail(CCE_ERR_FORMAT, "%s: the header is not a JSON object", file);
    size_t cap = json_object_size(st->header);
    st->tensors = calloc(cap ? cap : 1, sizeof *st->tensors);
    st->by_name = calloc(cap ? cap : 1, sizeof *st->by_name);
    if (!st->tensors || !st->by_name) return cce_fail(CCE_ERR_NOMEM, "%s: tensor index", file);
    const char *key;
    json_t *v;
    json_object_foreach(st->header, key, v) {
        if (!strcmp(key, "__metadata__")) {
            const char *mk;
            json_t *mv;
            if (!json_is_object(v))
                return cce_fail(CCE_ERR_FORMAT, "%s: __metadata__ is not an object", file);
            json_object_foreach(v, mk, mv) if (!json_is_string(mv)) return cce_fail(
                CCE_ERR_FORMAT, "%s: __metadata__ '%s' is not a string", file, mk);
            continue;
        }
        cce_status s = parse_entry(file, key, v, data_len, &st->tensors[st->count]);
        if (s) return s;
        st->tensors[st->count].data = st->base + 8 + n + st->tensors[st->count].begin;
        st->count++;
    }
    qsort(st->tensors, st->count, sizeof *st->tensors, cmp_begin);
    uint64_t at = 0;
    for (size_t i = 0; i < st->count; i++) {
        const cce_st_tensor *t = &st->tensors[i];
        if (t->begin < at)
            return cce_fail(CCE_ERR_FORMAT, "%s: tensor '%s' [%llu, %llu] overlaps tensor '%s'",
                            file, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                            st->tensors[i - 1].name);
        if (t->begin > at)
            return cce_fail(CCE_ERR_FORMAT,
                            "%s: bytes [%llu, %llu) of the data area belong to no tensor (before "
                            "'%s')",
                            file, (unsigned long long)at, (unsigned long long)t->begin, t->name);
        at = t->end;
    }
    if (at != data_len)
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: the data area has %llu bytes, the tensors cover %llu (trailing bytes)",
                        file, (unsigned long long)data_len, (unsigned long long)at);
    for (size_t i = 0; i < st->count; i++) st->by_name[i] = &st->tensors[i];
    qsort(st->by_name, st->count, sizeof *st->by_name, cmp_name);
    return CCE_OK;
}

static cce_status new_reader(const char *path, cce_safetensors **out) {
    cce_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        return cce_fail(CCE_ERR_NOMEM, "%s: reader", path);
    }
    *out = st;
    return CCE_OK;
}

cce_status cce_safetensors_from_memory(const void *buf, size_t len, const char *name,
                                       cce_safetensors **out) {
    cce_safetensors *st = NULL;
    cce_status s = new_reader(name, &st);
    if (s) return s;
    st->base = buf;
    st->len = len;
    if ((s = parse_header(st))) {
        cce_safetensors_close(st);
        return s;
    }
    *out = st;
    return CCE_OK;
}

cce_status cce_safetensors_open(const char *path, cce_safetensors **out) {
    struct stat sb;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cce_fail(CCE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return cce_fail(CCE_ERR_IO, "%s: not a regular file", path);
    }
    cce_safetensors *st = NULL;
    cce_status s = new_reader(path, &st);
    if (s) {
        close(fd);
        return s;
    }
    st->len = (size_t)sb.st_size;
    if (st->len > 0) {
        st->map = mmap(NULL, st->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (st->map == MAP_FAILED) {
            st->map = NULL;
            s = cce_fail(CCE_ERR_IO, "%s: cannot map %zu bytes: %s", path, st->len,
                         strerror(errno));
        } else {
            st->base = st->map;
            madvise(st->map, st->len, MADV_SEQUENTIAL); /* read ahead: tensors stream once */
        }
    } else {
        st->base = (const unsigned char *)"";
    }
    close(fd);
    if (!s) s = parse_header(st);
    if (s) {
        cce_safetensors_close(st);
        return s;
    }
    *out = st;
    return CCE_OK;
}

void cce_safetensors_close(cce_safetensors *st) {
    if (!st) return;
    if (st->map) munmap(st->map, st->len);
    json_decref(st->header);
    free(st->tensors);
    free(st->by_name);
    free(st->path);
    free(st);
}

const char *cce_safetensors_path(const cce_safetensors *st) {
    return st->path;
}
size_t cce_safetensors_count(const cce_safetensors *st) {
    return st->count;
}

const cce_st_tensor *cce_safetensors_at(const cce_safetensors *st, size_t i) {
    return i < st->count ? &st->tensors[i] : NULL;
}

const cce_st_tensor *cce_safetensors_find(const cce_safetensors *st, const char *name) {
    size_t lo = 0, hi = st->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->by_name[mid]->name);
        if (c == 0) return st->by_name[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *cce_safetensors_metadata(const cce_safetensors *st, const char *key) {
    json_t *m = json_object_get(st->header, "__metadata__");
    return json_string_value(json_object_get(m, key));
}

cce_status cce_safetensors_read_f32(const cce_safetensors *st, const cce_st_tensor *t,
                                    int64_t first, int64_t n, float *dst) {
    if (first < 0 || n < 0 || first > t->numel || n > t->numel - first)
        return cce_fail(CCE_ERR_RANGE, "%s: tensor '%s': elements [%lld, %lld) outside [0, %lld)",
                        st->path, t->name, (long long)first, (long long)(first + n),
                        (long long)t->numel);
    const unsigned char *p = t->data + (size_t)first * cce_st_dtype_size(t->dtype);
    switch (t->dtype) {
    case CCE_ST_F32:
        if (n) memcpy(dst, p, (size_t)n * 4);
        return CCE_OK;
    case CCE_ST_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = cce_f16_to_f32(h);
        }
        return CCE_OK;
    case CCE_ST_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = cce_bf16_to_f32(h);
        }
        return CCE_OK;
    default:
        return cce_fail(CCE_ERR_FORMAT, "%s: tensor '%s' is %s; only F32, F16 and BF16 are read",
                        st->path, t->name, cce_st_dtype_name(t->dtype));
    }
}

/* ---- Writing ------------------------------------------------------------------------------- */

typedef struct entry {
    char *name;
    cce_st_dtype dtype;
    int ndim;
    int64_t shape[CCE_ST_MAX_DIMS];
    int64_t numel;
    const float *src; /* [numel], borrowed */
} entry;

struct cce_st_writer {
    char *final_path;
    json_t *metadata;
    entry *entries; /* [count] */
    size_t count, cap;
    uint64_t data_bytes;
};

cce_status cce_st_writer_new(const char *final_path, cce_st_writer **out) {
    cce_st_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->final_path = strdup(final_path)) || !(w->metadata = json_object())) {
        cce_st_writer_abort(w);
        return cce_fail(CCE_ERR_NOMEM, "%s: writer", final_path);
    }
    *out = w;
    return CCE_OK;
}

void cce_st_writer_abort(cce_st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->count; i++) free(w->entries[i].name);
    free(w->entries);
    json_decref(w->metadata);
    free(w->final_path);
    free(w);
}

cce_status cce_st_writer_metadata(cce_st_writer *w, const char *key, const char *value) {
    if (json_object_set_new(w->metadata, key, json_string(value)))
        return cce_fail(CCE_ERR_ARG, "%s: metadata '%s' is not valid UTF-8", w->final_path, key);
    return CCE_OK;
}

cce_status cce_st_writer_add(cce_st_writer *w, const char *name, cce_st_dtype dtype, int ndim,
                             const int64_t *shape, const float *src) {
    if (dtype != CCE_ST_F32 && dtype != CCE_ST_F16 && dtype != CCE_ST_BF16)
        return cce_fail(CCE_ERR_ARG, "%s: tensor '%s': cannot write dtype %s", w->final_path, name,
                        cce_st_dtype_name(dtype));
    if (ndim < 0 || ndim > CCE_ST_MAX_DIMS)
        return cce_fail(CCE_ERR_ARG, "%s: tensor '%s': %d dimensions", w->final_path, name, ndim);
    if (!strcmp(name, "__metadata__"))
        return cce_fail(CCE_ERR_ARG, "%s: '__metadata__' is not a tensor name", w->final_path);
    for (size_t i = 0; i < w->count; i++)
        if (!strcmp(w->entries[i].name, name))
            return cce_fail(CCE_ERR_ARG, "%s: tensor '%s' added twice", w->final_path, name);
    if (w->count == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        entry *e = realloc(w->entries, cap * sizeof *e);
        if (!e) return cce_fail(CCE_ERR_NOMEM, "%s: tensor list", w->final_path);
        w->entries = e;
        w->cap = cap;
    }
    entry *e = &w->entries[w->count];
    memset(e, 0, sizeof *e);
    e->numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || __builtin_mul_overflow(e->numel, shape[i], &e->numel))
            return cce_fail(CCE_ERR_ARG, "%s: tensor '%s': bad shape", w->final_path, name);
        e->shape[i] = shape[i];
    }
    if (!(e->name = strdup(name))) return cce_fail(CCE_ERR_NOMEM, "%s: name", w->final_path);
    e->dtype = dtype;
    e->ndim = ndim;
    e->src = src;
    w->data_bytes += (uint64_t)e->numel * cce_st_dtype_size(dtype);
    w->count++;
    return CCE_OK;
}

/* The header JSON (malloc'd, caller frees), padded with spaces so that 8 + length is a multiple
 * of 8; *len receives its length. */
static char *build_header(const cce_st_writer *w, size_t *len) {
    json_t *h = json_object();
    if (!h) return NULL;
    if (json_object_size(w->metadata)) json_object_set(h, "__metadata__", w->metadata);
    uint64_t at = 0;
    for (size_t i = 0; i < w->count; i++) {
        const entry *e = &w->entries[i];
        uint64_t bytes = (uint64_t)e->numel * cce_st_dtype_size(e->dtype);
        json_t *shape = json_array();
        for (int d = 0; d < e->ndim; d++) json_array_append_new(shape, json_integer(e->shape[d]));
        json_t *v = json_pack("{s:s, s:o, s:[I,I]}", "dtype", cce_st_dtype_name(e->dtype), "shape",
                              shape, "data_offsets", (json_int_t)at, (json_int_t)(at + bytes));
        if (!v || json_object_set_new(h, e->name, v)) {
            json_decref(h);
            return NULL;
        }
        at += bytes;
    }
    char *text = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    if (!text) return NULL;
    size_t n = strlen(text), padded = (n + 7) / 8 * 8;
    char *out = realloc(text, padded + 1);
    if (!out) {
        free(text);
        return NULL;
    }
    memset(out + n, ' ', padded - n);
    out[padded] = '\0';
    *len = padded;
    return out;
}

/* Writes one tensor's values converted to its dtype, in blocks. */
static int write_entry(FILE *f, const entry *e) {
    enum { BLOCK = 1 << 16 };
    static _Thread_local uint16_t buf[BLOCK]; /* [BLOCK] converted halves */
    if (e->dtype == CCE_ST_F32)
        return e->numel == 0 || fwrite(e->src, 4, (size_t)e->numel, f) == (size_t)e->numel;
    for (int64_t i = 0; i < e->numel; i += BLOCK) {
        int64_t n = e->numel - i < BLOCK ? e->numel - i : BLOCK;
        for (int64_t j = 0; j < n; j++)
            buf[j] = e->dtype == CCE_ST_F16 ? cce_f32_to_f16(e->src[i + j])
                                            : cce_f32_to_bf16(e->src[i + j]);
        if (fwrite(buf, 2, (size_t)n, f) != (size_t)n) return 0;
    }
    return 1;
}

uint64_t cce_st_writer_size(const cce_st_writer *w) {
    size_t hlen = 0;
    char *h = build_header(w, &hlen);
    free(h);
    return 8 + hlen + w->data_bytes;
}

cce_status cce_st_writer_commit(cce_st_writer *w) {
    cce_status s = CCE_OK;
    size_t hlen = 0;
    char *header = build_header(w, &hlen);
    size_t plen = strlen(w->final_path) + 32;
    char *tmp = malloc(plen);
    FILE *f = NULL;
    if (!header || !tmp) {
        s = cce_fail(CCE_ERR_NOMEM, "%s: header", w->final_path);
        goto done;
    }
    snprintf(tmp, plen, "%s.tmp.%ld", w->final_path, (long)getpid());
    if (!(f = fopen(tmp, "wb"))) {
        s = cce_fail(CCE_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    uint64_t n = hlen;
    int ok = fwrite(&n, 8, 1, f) == 1 && fwrite(header, 1, hlen, f) == hlen;
    for (size_t i = 0; ok && i < w->count; i++) ok = write_entry(f, &w->entries[i]);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int err = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        err = errno;
    }
    f = NULL;
    if (!ok || rename(tmp, w->final_path) != 0) {
        if (ok) err = errno;
        s = cce_fail(CCE_ERR_IO, "%s: cannot write: %s", w->final_path, strerror(err));
        remove(tmp);
    }
done:
    free(header);
    free(tmp);
    cce_st_writer_abort(w);
    return s;
}
