/* Internal helpers shared by store.c (reader) and store_write.c (writer). Not a public API. */
#ifndef CCE_STORE_HDF5_H
#define CCE_STORE_HDF5_H

#include <hdf5.h>
#include <stdint.h>

#include "model.h"
#include "status.h"
#include "tensor.h"

#define STORE_PATH_MAX 512

/* Sets the detail to "<file>: <object>: <what> (HDF5: <innermost library message>)", clears the
 * HDF5 error stack and returns s. */
cce_status store_hdf5_fail(cce_status s, const char *file, const char *object, const char *what);

/* Digits of zero-padded layer numbers: those of n_layers - 1, at least 2. */
int store_layer_digits(int n_layers);
/* "/model/layers/NN" into buf. */
void store_layer_group_path(int layer, int n_layers, char *buf, size_t bufsize);

/* 1 if every link along the absolute path exists (intermediates being groups), 0 if not, -1 on
 * an HDF5 error. */
int store_path_exists(hid_t file, const char *path);

/* Attribute readers: a missing attribute or a wrong type is CCE_ERR_FORMAT naming file, object
 * and attribute. *out of the string reader is malloc'd (caller frees). */
cce_status store_read_attr_i32(hid_t obj, const char *file, const char *objpath, const char *name,
                               int32_t *out);
cce_status store_read_attr_f32(hid_t obj, const char *file, const char *objpath, const char *name,
                               float *out);
cce_status store_read_attr_string(hid_t obj, const char *file, const char *objpath,
                                  const char *name, char **out);

/* Checks one layer's shape against the config (CCE_ERR_FORMAT naming file and group). */
cce_status store_check_layer_shape(const char *file, const char *gpath, const cce_config *cfg,
                                   const cce_layer_shape *l);

/* ---- Encoded tensors (store_encoding.c) and the pieces of the writer they use ---------------- */

typedef struct cce_store_writer cce_store_writer;
typedef struct cce_store cce_store;
typedef struct cce_encoding cce_encoding;

/* The writer's open file and the file name errors name (store_write.c). */
hid_t store_writer_file(const cce_store_writer *w);
const char *store_writer_name(const cce_store_writer *w);
/* Attribute `name` of `count` elements (-1: scalar) / a fixed-length UTF-8 string attribute. */
cce_status store_write_attr(hid_t obj, const char *file, const char *objpath, const char *name,
                            hid_t ftype, hid_t mtype, long count, const void *value);
cce_status store_write_string(hid_t obj, const char *file, const char *objpath, const char *name,
                              const char *v);
/* Creates group `path` (and missing parents) or opens it. The caller closes *out. */
cce_status store_make_group(cce_store_writer *w, const char *path, hid_t *out);

/* The reader's open file (store.c). */
hid_t store_file(const cce_store *s);

/* Reads the encoded tensor of group g at path (name for messages): the densified tensor and the
 * encoding, both owned by the caller. CCE_ERR_FORMAT naming file and tensor for any size, type or
 * value that disagrees with the recorded shape. (store_encoding.c) */
cce_status store_read_encoded(hid_t g, const char *file, const char *path, const char *name,
                              cce_tensor **t, cce_encoding **e);

/* The recorded shape of an encoded tensor group (attribute `shape`). */
cce_status store_encoded_shape(hid_t g, const char *file, const char *path, int *ndim,
                               int64_t shape[CCE_TENSOR_MAX_DIMS]);

/* A one-line description of an encoded tensor group from its attributes only ("quant 4-bit group
 * 64 asym"). */
cce_status store_describe_encoded(hid_t g, const char *file, const char *path, char *buf,
                                  size_t cap);

#endif
