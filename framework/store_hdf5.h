/* Internal helpers shared by store.c (reader) and store_write.c (writer). Not a public API. */
#ifndef CCE_STORE_HDF5_H
#define CCE_STORE_HDF5_H

#include <hdf5.h>
#include <stdint.h>

#include "model.h"
#include "status.h"

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

#endif
