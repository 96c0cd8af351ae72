/* safetensors files: a reader (memory-mapped, every header field validated) and a writer.
 *
 * Layout: uint64 little-endian N, then N bytes of JSON header, then the data area. The header is
 * an object mapping each tensor name to {"dtype": "F32", "shape": [..], "data_offsets": [begin,
 * end]} (offsets relative to the data area), plus an optional "__metadata__" object of strings.
 * The reader checks that the header fits in the file, that it is a JSON object of such entries,
 * that every dtype is known, that no shape product overflows, that end - begin equals the
 * element count times the dtype's width, that every range lies inside the data area, and that the
 * ranges neither overlap nor leave holes (the format requires the data area to be fully indexed).
 * Any failure is CCE_ERR_FORMAT naming the file and, where there is one, the tensor. */
#ifndef CCE_SAFETENSORS_H
#define CCE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define CCE_ST_MAX_DIMS 8

typedef enum cce_st_dtype {
    CCE_ST_F32 = 0,
    CCE_ST_F16,
    CCE_ST_BF16,
    CCE_ST_F64,
    CCE_ST_I64,
    CCE_ST_I32,
    CCE_ST_I16,
    CCE_ST_I8,
    CCE_ST_U8,
    CCE_ST_BOOL,
    CCE_ST_DTYPE_COUNT
} cce_st_dtype;

/* "F32", "F16", ... Borrowed, static. */
const char *cce_st_dtype_name(cce_st_dtype d);
/* Bytes per element. */
size_t cce_st_dtype_size(cce_st_dtype d);
/* Parses a dtype name; CCE_ERR_NOT_FOUND if unknown (no detail set). */
cce_status cce_st_dtype_parse(const char *name, cce_st_dtype *out);

/* One tensor of a file. */
typedef struct cce_st_tensor {
    const char *name; /* borrowed from the file object */
    cce_st_dtype dtype;
    int ndim;                       /* 0..CCE_ST_MAX_DIMS */
    int64_t shape[CCE_ST_MAX_DIMS]; /* [ndim] */
    int64_t numel;                  /* product of shape (1 for a scalar) */
    uint64_t begin, end;            /* byte range in the data area */
    const unsigned char *data;      /* [end - begin] bytes, borrowed (mapped) */
} cce_st_tensor;

typedef struct cce_safetensors cce_safetensors;

/* Opens and validates a file, mapping it read-only (tensor data is never copied). CCE_ERR_IO for
 * a file that cannot be opened or mapped. The caller owns *out (cce_safetensors_close). */
cce_status cce_safetensors_open(const char *path, cce_safetensors **out);

/* Validates a file image held in memory (borrowed: buf must outlive *out); `name` is used in
 * messages. The caller owns *out. */
cce_status cce_safetensors_from_memory(const void *buf, size_t len, const char *name,
                                       cce_safetensors **out);

void cce_safetensors_close(cce_safetensors *st);

const char *cce_safetensors_path(const cce_safetensors *st); /* borrowed */
size_t cce_safetensors_count(const cce_safetensors *st);
/* Tensor i in data order (by offset). Borrowed, valid while st is open. */
const cce_st_tensor *cce_safetensors_at(const cce_safetensors *st, size_t i);
/* The tensor of that name, or NULL. Borrowed. */
const cce_st_tensor *cce_safetensors_find(const cce_safetensors *st, const char *name);
/* A "__metadata__" string value, or NULL. Borrowed. */
const char *cce_safetensors_metadata(const cce_safetensors *st, const char *key);

/* Converts n elements of an F32, F16 or BF16 tensor starting at element `first` to float32
 * (exactly: every F16 and BF16 value is a float32). CCE_ERR_FORMAT naming the tensor for other
 * dtypes, CCE_ERR_RANGE if the range exceeds the tensor. dst: [n] floats, the caller's. */
cce_status cce_safetensors_read_f32(const cce_safetensors *st, const cce_st_tensor *t,
                                    int64_t first, int64_t n, float *dst);

/* IEEE binary16 and bfloat16 conversions (round to nearest, ties to even; NaN stays NaN). */
float cce_f16_to_f32(uint16_t h);
uint16_t cce_f32_to_f16(float f);
float cce_bf16_to_f32(uint16_t b);
uint16_t cce_f32_to_bf16(float f);

/* ---- Writing ------------------------------------------------------------------------------ */

typedef struct cce_st_writer cce_st_writer;

/* Starts a file that appears at final_path only on cce_st_writer_commit. The caller owns *out
 * (commit or abort frees it). */
cce_status cce_st_writer_new(const char *final_path, cce_st_writer **out);

/* Adds a "__metadata__" entry (both strings copied). */
cce_status cce_st_writer_metadata(cce_st_writer *w, const char *key, const char *value);

/* Adds tensor `name` (copied) of shape [ndim] (ndim 0..CCE_ST_MAX_DIMS), stored as dtype (F32,
 * F16 or BF16), whose values are the float32 src [numel]. src is borrowed until commit. Tensors are
 * written in the order added. CCE_ERR_ARG names a duplicate name or an unsupported dtype. */
cce_status cce_st_writer_add(cce_st_writer *w, const char *name, cce_st_dtype dtype, int ndim,
                             const int64_t *shape, const float *src);

/* Bytes the file will have with the tensors added so far. */
uint64_t cce_st_writer_size(const cce_st_writer *w);

/* Writes header (padded with spaces to a multiple of 8 bytes) and data to a temporary name beside
 * final_path, fsyncs it and renames it into place. Frees w in all cases; on failure the temporary
 * file is removed and an existing final_path is untouched. */
cce_status cce_st_writer_commit(cce_st_writer *w);
/* Frees w without writing anything. */
void cce_st_writer_abort(cce_st_writer *w);

#endif
