/* The HDF5 model file: shared helpers (error reporting, attributes, paths) and the reader.
 * The writer is in store_write.c. Layout: store.h and DESIGN section 4.
 *
 * Every function that touches HDF5 has one cleanup label and closes every hid_t it opened. */
#include "store.h"
#include "store_hdf5.h"
#include "tokenizer_store.h"

#include "encoding.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define VOCAB_LIMIT (1 << 22)

struct cce_store {
    hid_t file;
    char *path;
};

/* ---- Library setup and errors ---------------------------------------------------------------- */

static pthread_once_t hdf5_once = PTHREAD_ONCE_INIT;

static void hdf5_init_once(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void cce_hdf5_init(void) {
    pthread_once(&hdf5_once, hdf5_init_once);
}

static herr_t innermost_error(unsigned n, const H5E_error2_t *e, void *data) {
    if (n == 0 && e->desc && *e->desc) snprintf(data, 160, "%s", e->desc);
    return 0;
}

cce_status store_hdf5_fail(cce_status s, const char *file, const char *object, const char *what) {
    char reason[160] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_error, reason);
    H5Eclear2(H5E_DEFAULT);
    return cce_fail(s, "%s: %s: %s%s%s%s", file, object, what, *reason ? " (HDF5: " : "", reason,
                    *reason ? ")" : "");
}

/* ---- Paths ----------------------------------------------------------------------------------- */

int store_layer_digits(int n_layers) {
    int digits = 1;
    for (int v = n_layers - 1; v >= 10; v /= 10) digits++;
    return digits < 2 ? 2 : digits;
}

void cce_store_path_of(const char *name, int n_layers, char *buf, size_t bufsize) {
    if (bufsize == 0) return;
    size_t n;
    const char *rest;
    if (!strncmp(name, "lm_head.", 8)) {
        n = (size_t)snprintf(buf, bufsize, "/lm_head/");
        rest = name + 8;
    } else if (!strncmp(name, "layers.", 7) && name[7] >= '0' && name[7] <= '9') {
        char *end;
        long layer = strtol(name + 7, &end, 10);
        n = (size_t)snprintf(buf, bufsize, "/model/layers/%0*ld/", store_layer_digits(n_layers),
                             layer);
        rest = *end == '.' ? end + 1 : end;
    } else {
        n = (size_t)snprintf(buf, bufsize, "/model/");
        rest = name;
    }
    for (; *rest && n + 1 < bufsize; rest++) buf[n++] = *rest == '.' ? '/' : *rest;
    if (n < bufsize)
        buf[n] = '\0';
    else
        buf[bufsize - 1] = '\0';
}

void store_layer_group_path(int layer, int n_layers, char *buf, size_t bufsize) {
    snprintf(buf, bufsize, "/model/layers/%0*d", store_layer_digits(n_layers), layer);
}

int store_path_exists(hid_t file, const char *path) {
    char prefix[STORE_PATH_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof prefix || path[0] != '/') return -1;
    for (size_t i = 1; i <= len; i++) {
        if (i < len && path[i] != '/') continue;
        memcpy(prefix, path, i);
        prefix[i] = '\0';
        htri_t e = H5Lexists(file, prefix, H5P_DEFAULT);
        if (e <= 0) return e < 0 ? -1 : 0;
        if (i < len) { /* an intermediate link must be a group to go further */
            H5O_info_t info;
            if (H5Oget_info_by_name2(file, prefix, &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0)
                return -1;
            if (info.type != H5O_TYPE_GROUP) return 0;
        }
    }
    return 1;
}

/* ---- Attributes ------------------------------------------------------------------------------ */

/* Opens attribute `name` of obj; missing -> CCE_ERR_FORMAT. */
static cce_status open_attr(hid_t obj, const char *file, const char *objpath, const char *name,
                            hid_t *out) {
    htri_t e = H5Aexists(obj, name);
    if (e < 0) return store_hdf5_fail(CCE_ERR_HDF5, file, objpath, "cannot list attributes");
    if (e == 0)
        return cce_fail(CCE_ERR_FORMAT, "%s: %s: attribute %s is missing", file, objpath, name);
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return store_hdf5_fail(CCE_ERR_HDF5, file, objpath, "cannot open attribute");
    *out = a;
    return CCE_OK;
}

/* Reads a numeric attribute of `count` elements, converted to mem_type. */
static cce_status read_attr_numeric(hid_t obj, const char *file, const char *objpath,
                                    const char *name, hid_t mem_type, hssize_t count, void *out) {
    hid_t a = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    cce_status s = open_attr(obj, file, objpath, name, &a);
    if (s) return s;
    if ((type = H5Aget_type(a)) < 0 || (space = H5Aget_space(a)) < 0) {
        s = store_hdf5_fail(CCE_ERR_HDF5, file, objpath, "cannot inspect attribute");
        goto done;
    }
    H5T_class_t cls = H5Tget_class(type);
    if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
        s = cce_fail(CCE_ERR_FORMAT, "%s: %s: attribute %s is not a number", file, objpath, name);
        goto done;
    }
    hssize_t n = H5Sget_simple_extent_npoints(space);
    if (n != count) {
        s = cce_fail(CCE_ERR_FORMAT, "%s: %s: attribute %s has %lld values, expected %lld", file,
                     objpath, name, (long long)n, (long long)count);
        goto done;
    }
    if (count > 0 && H5Aread(a, mem_type, out) < 0)
        s = store_hdf5_fail(CCE_ERR_HDF5, file, objpath, "cannot read attribute");
done:
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    H5Aclose(a);
    return s;
}

cce_status store_read_attr_i32(hid_t obj, const char *file, const char *objpath, const char *name,
                               int32_t *out) {
    return read_attr_numeric(obj, file, objpath, name, H5T_NATIVE_INT32, 1, out);
}

cce_status store_read_attr_f32(hid_t obj, const char *file, const char *objpath, const char *name,
                               float *out) {
    return read_attr_numeric(obj, file, objpath, name, H5T_NATIVE_FLOAT, 1, out);
}

cce_status store_read_attr_string(hid_t obj, const char *file, const char *objpath,
                                  const char *name, char **out) {
    hid_t a = H5I_INVALID_HID, type = H5I_INVALID_HID, mem = H5I_INVALID_HID;
    hid_t space = H5I_INVALID_HID;
    char *value = NULL;
    cce_status s = open_attr(obj, file, objpath, name, &a);
    if (s) return s;
    if ((type = H5Aget_type(a)) < 0 || (space = H5Aget_space(a)) < 0) {
        s = store_hdf5_fail(CCE_ERR_HDF5, file, objpath, "cannot inspect attribute");
        goto done;
    }
    if (H5Tget_class(type) != H5T_STRING || H5Sget_simple_extent_npoints(space) != 1) {
        s = cce_fail(CCE_ERR_FORMAT, "%s: %s: attribute %s is not a string", file, objpath, name);
        goto done;
    }
    htri_t is_vlen = H5Tis_variable_str(type);
    if (is_vlen < 0 || (mem = H5Tcopy(H5T_C_S1)) < 0 || H5Tset_cset(mem, H5Tget_cset(type)) < 0) {
        s = store_hdf5_fail(CCE_ERR_HDF5, file, objpath, "cannot inspect attribute");
        goto done;
    }
    if (is_vlen) {
        char *p = NULL;
        if (H5Tset_size(mem, H5T_VARIABLE) < 0 || H5Aread(a, mem, &p) < 0) {
            s = store_hdf5_fail(CCE_ERR_HDF5, file, objpath, "cannot read attribute");
            goto done;
        }
        size_t n = p ? strlen(p) : 0;
        value = malloc(n + 1);
        if (value) {
            if (n) memcpy(value, p, n);
            value[n] = '\0';
        }
        H5free_memory(p);
    } else {
        size_t n = H5Tget_size(type);
        if (n == 0 || n > (1u << 20)) {
            s = cce_fail(CCE_ERR_FORMAT, "%s: %s: attribute %s has bad length %zu", file, objpath,
                         name, n);
            goto done;
        }
        value = calloc(n + 1, 1);
        if (value && (H5Tset_size(mem, n + 1) < 0 || H5Aread(a, mem, value) < 0)) {
            s = store_hdf5_fail(CCE_ERR_HDF5, file, objpath, "cannot read attribute");
            goto done;
        }
    }
    if (!value) {
        s = cce_fail(CCE_ERR_NOMEM, "%s: %s: attribute %s", file, objpath, name);
        goto done;
    }
    *out = value;
    value = NULL;
done:
    free(value);
    if (mem >= 0) H5Tclose(mem);
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    H5Aclose(a);
    return s;
}

/* ---- Opening --------------------------------------------------------------------------------- */

cce_status cce_store_open(const char *path, cce_store **out) {
    cce_hdf5_init();
    struct stat st;
    if (stat(path, &st) != 0)
        return cce_fail(CCE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return cce_fail(CCE_ERR_IO, "%s: not a regular file", path);
    if (access(path, R_OK) != 0)
        return cce_fail(CCE_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    htri_t is_h5 = H5Fis_hdf5(path);
    H5Eclear2(H5E_DEFAULT);
    if (is_h5 <= 0) return cce_fail(CCE_ERR_FORMAT, "%s: not an HDF5 file", path);

    cce_store *s = calloc(1, sizeof *s);
    char *format = NULL;
    cce_status st_ = CCE_OK;
    if (!s || !(s->path = malloc(strlen(path) + 1))) {
        st_ = cce_fail(CCE_ERR_NOMEM, "%s: store handle", path);
        goto done;
    }
    memcpy(s->path, path, strlen(path) + 1);
    s->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (s->file < 0) {
        st_ = store_hdf5_fail(CCE_ERR_FORMAT, path, "/", "cannot open (corrupt or truncated?)");
        goto done;
    }
    htri_t has_format = H5Aexists(s->file, "format");
    if (has_format <= 0) {
        H5Eclear2(H5E_DEFAULT);
        st_ = cce_fail(CCE_ERR_FORMAT, "%s: not a cce-model file (no format attribute)", path);
        goto done;
    }
    if ((st_ = store_read_attr_string(s->file, path, "/", "format", &format))) goto done;
    if (strcmp(format, "cce-model") != 0) {
        st_ = cce_fail(CCE_ERR_FORMAT, "%s: format is \"%s\", not \"cce-model\"", path, format);
        goto done;
    }
    int32_t version;
    if ((st_ = store_read_attr_i32(s->file, path, "/", "format_version", &version))) goto done;
    if (version != 1) {
        st_ =
            cce_fail(CCE_ERR_FORMAT, "%s: format_version %d is not supported (this build reads 1)",
                     path, (int)version);
        goto done;
    }
done:
    free(format);
    if (st_) {
        cce_store_close(s);
        return st_;
    }
    *out = s;
    return CCE_OK;
}

void cce_store_close(cce_store *s) {
    if (!s) return;
    if (s->file > 0) H5Fclose(s->file);
    free(s->path);
    free(s);
}

const char *cce_store_filename(const cce_store *s) {
    return s->path;
}

/* ---- Config and layer shapes ----------------------------------------------------------------- */

cce_status cce_store_read_config(cce_store *s, cce_config *cfg, char **source) {
    const char *f = s->path;
    cce_config c;
    cce_status st;
    char *arch = NULL;
    memset(&c, 0, sizeof c);
    if ((st = store_read_attr_string(s->file, f, "/", "arch", &arch))) return st;
    if (strcmp(arch, "llama") != 0) {
        st = cce_fail(CCE_ERR_FORMAT, "%s: arch \"%s\" is not supported (only \"llama\")", f, arch);
        free(arch);
        return st;
    }
    free(arch);
    struct {
        const char *name;
        int32_t *dst;
    } ints[] = {{"dim", &c.dim},
                {"hidden_dim", &c.hidden_dim},
                {"n_layers", &c.n_layers},
                {"n_heads", &c.n_heads},
                {"n_kv_heads", &c.n_kv_heads},
                {"head_dim", &c.head_dim},
                {"vocab_size", &c.vocab_size},
                {"seq_len", &c.seq_len},
                {"tied_embeddings", &c.tied_embeddings}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if ((st = store_read_attr_i32(s->file, f, "/", ints[i].name, ints[i].dst))) return st;
    if ((st = store_read_attr_f32(s->file, f, "/", "rope_theta", &c.rope_theta)) ||
        (st = store_read_attr_f32(s->file, f, "/", "norm_eps", &c.norm_eps)))
        return st;
    if ((st = cce_config_validate(&c, f))) return CCE_ERR_FORMAT; /* detail names file + field */
    if (source) {
        htri_t e = H5Aexists(s->file, "source");
        if (e < 0) return store_hdf5_fail(CCE_ERR_HDF5, f, "/", "cannot list attributes");
        if (e == 0) {
            if (!(*source = calloc(1, 1))) return cce_fail(CCE_ERR_NOMEM, "%s: source", f);
        } else if ((st = store_read_attr_string(s->file, f, "/", "source", source))) {
            return st;
        }
    }
    *cfg = c;
    return CCE_OK;
}

cce_status store_check_layer_shape(const char *file, const char *gpath, const cce_config *cfg,
                                   const cce_layer_shape *l) {
    if (l->hidden_dim < 0 || l->hidden_dim > cfg->hidden_dim)
        return cce_fail(CCE_ERR_FORMAT, "%s: %s: hidden_dim = %d is outside [0, %d]", file, gpath,
                        (int)l->hidden_dim, (int)cfg->hidden_dim);
    if (l->n_heads < 0 || l->n_heads > cfg->n_heads)
        return cce_fail(CCE_ERR_FORMAT, "%s: %s: n_heads = %d is outside [0, %d]", file, gpath,
                        (int)l->n_heads, (int)cfg->n_heads);
    if (l->n_kv_heads < 0 || l->n_kv_heads > cfg->n_kv_heads || (l->n_heads > 0 && !l->n_kv_heads))
        return cce_fail(CCE_ERR_FORMAT, "%s: %s: n_kv_heads = %d is outside [%d, %d]", file, gpath,
                        (int)l->n_kv_heads, l->n_heads > 0 ? 1 : 0, (int)cfg->n_kv_heads);
    for (int h = 0; h < l->n_heads; h++)
        if (l->kv_of_head[h] < 0 || l->kv_of_head[h] >= l->n_kv_heads)
            return cce_fail(CCE_ERR_FORMAT, "%s: %s: kv_of_head[%d] = %d is outside [0, %d)", file,
                            gpath, h, (int)l->kv_of_head[h], (int)l->n_kv_heads);
    if (l->removed != 0 && l->removed != 1)
        return cce_fail(CCE_ERR_FORMAT, "%s: %s: removed = %d is neither 0 nor 1", file, gpath,
                        (int)l->removed);
    return CCE_OK;
}

cce_status cce_store_read_layer_shape(cce_store *s, const cce_config *cfg, int layer,
                                      cce_layer_shape *shape) {
    const char *f = s->path;
    char gpath[STORE_PATH_MAX];
    store_layer_group_path(layer, cfg->n_layers, gpath, sizeof gpath);
    cce_layer_shape l = {0};
    hid_t g = H5I_INVALID_HID;
    cce_status st = CCE_OK;
    int e = store_path_exists(s->file, gpath);
    if (e <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return cce_fail(CCE_ERR_FORMAT, "%s: layer group %s is missing", f, gpath);
    }
    if ((g = H5Gopen2(s->file, gpath, H5P_DEFAULT)) < 0)
        return store_hdf5_fail(CCE_ERR_FORMAT, f, gpath, "not a group");
    if ((st = store_read_attr_i32(g, f, gpath, "hidden_dim", &l.hidden_dim)) ||
        (st = store_read_attr_i32(g, f, gpath, "n_heads", &l.n_heads)) ||
        (st = store_read_attr_i32(g, f, gpath, "n_kv_heads", &l.n_kv_heads)) ||
        (st = store_read_attr_i32(g, f, gpath, "removed", &l.removed)))
        goto done;
    if (l.n_heads < 0 || l.n_heads > cfg->n_heads) { /* before sizing kv_of_head by it */
        st = store_check_layer_shape(f, gpath, cfg, &l);
        goto done;
    }
    if (!(l.kv_of_head = malloc(((size_t)l.n_heads + 1) * sizeof *l.kv_of_head))) {
        st = cce_fail(CCE_ERR_NOMEM, "%s: %s: kv_of_head", f, gpath);
        goto done;
    }
    if ((st = read_attr_numeric(g, f, gpath, "kv_of_head", H5T_NATIVE_INT32, l.n_heads,
                                l.kv_of_head)))
        goto done;
    st = store_check_layer_shape(f, gpath, cfg, &l);
done:
    H5Gclose(g);
    if (st) {
        free(l.kv_of_head);
        return st;
    }
    *shape = l;
    return CCE_OK;
}

/* ---- Tokenizer ------------------------------------------------------------------------------- */

int cce_store_has_tokenizer(cce_store *s) {
    int e = store_path_exists(s->file, "/tokenizer");
    if (e < 0) H5Eclear2(H5E_DEFAULT);
    return e > 0;
}

/* Opens a 1-D dataset of the tokenizer group and returns its length. */
static cce_status open_vector(hid_t g, const char *file, const char *path, const char *name,
                              H5T_class_t cls, hid_t *out, hssize_t *n) {
    char full[STORE_PATH_MAX];
    snprintf(full, sizeof full, "%s/%s", path, name);
    hid_t d = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    cce_status st = CCE_OK;
    htri_t e = H5Lexists(g, name, H5P_DEFAULT);
    if (e <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return cce_fail(CCE_ERR_FORMAT, "%s: %s is missing", file, full);
    }
    if ((d = H5Dopen2(g, name, H5P_DEFAULT)) < 0)
        return store_hdf5_fail(CCE_ERR_FORMAT, file, full, "not a dataset");
    if ((type = H5Dget_type(d)) < 0 || (space = H5Dget_space(d)) < 0) {
        st = store_hdf5_fail(CCE_ERR_HDF5, file, full, "cannot inspect dataset");
        goto done;
    }
    if (H5Tget_class(type) != cls || H5Sget_simple_extent_ndims(space) != 1) {
        st = cce_fail(CCE_ERR_FORMAT, "%s: %s: expected a 1-D %s dataset", file, full,
                      cls == H5T_STRING ? "string" : "float");
        goto done;
    }
    *n = H5Sget_simple_extent_npoints(space);
done:
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (st) {
        H5Dclose(d);
        return st;
    }
    *out = d;
    return CCE_OK;
}

/* Reads n pieces (fixed- or variable-length strings) into one block of NUL-terminated strings:
 * *ptrs [n] points into *text; the caller frees both. */
static cce_status read_pieces(hid_t dp, const char *f, const char *path, hssize_t n, char ***ptrs,
                              char **text) {
    hid_t type = H5I_INVALID_HID, mem = H5I_INVALID_HID, space = H5I_INVALID_HID;
    char **vlen = NULL, *fixed = NULL, *block = NULL, **p = NULL;
    cce_status st = CCE_OK;
    int vlen_read = 0;
    if ((type = H5Dget_type(dp)) < 0 || (space = H5Dget_space(dp)) < 0) {
        st = store_hdf5_fail(CCE_ERR_HDF5, f, path, "cannot inspect pieces");
        goto done;
    }
    htri_t is_vlen = H5Tis_variable_str(type);
    size_t width = H5Tget_size(type);
    if (!(p = malloc((size_t)n * sizeof *p))) goto nomem;
    if (is_vlen > 0) {
        if (!(vlen = calloc((size_t)n, sizeof *vlen))) goto nomem;
        if ((mem = H5Tcopy(H5T_C_S1)) < 0 || H5Tset_size(mem, H5T_VARIABLE) < 0 ||
            H5Tset_cset(mem, H5Tget_cset(type)) < 0 ||
            H5Dread(dp, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, vlen) < 0) {
            st = store_hdf5_fail(CCE_ERR_HDF5, f, path, "cannot read pieces");
            goto done;
        }
        vlen_read = 1;
        size_t total = 0;
        for (hssize_t i = 0; i < n; i++) {
            if (!vlen[i]) {
                st = cce_fail(CCE_ERR_FORMAT, "%s: %s: piece %lld is null", f, path, (long long)i);
                goto done;
            }
            total += strlen(vlen[i]) + 1;
        }
        if (!(block = malloc(total))) goto nomem;
        char *q = block;
        for (hssize_t i = 0; i < n; i++) {
            size_t len = strlen(vlen[i]) + 1;
            memcpy(q, vlen[i], len);
            p[i] = q;
            q += len;
        }
    } else {
        if (is_vlen < 0 || width < 1 || width > 65537 || (size_t)n * width > (1u << 30)) {
            st = cce_fail(CCE_ERR_FORMAT, "%s: %s: pieces have a bad string width %zu", f, path,
                          width);
            goto done;
        }
        if (!(fixed = malloc((size_t)n * width)) || !(block = malloc((size_t)n * (width + 1))))
            goto nomem;
        if ((mem = H5Tcopy(type)) < 0 ||
            H5Dread(dp, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, fixed) < 0) {
            st = store_hdf5_fail(CCE_ERR_HDF5, f, path, "cannot read pieces");
            goto done;
        }
        for (hssize_t i = 0; i < n; i++) {
            p[i] = block + (size_t)i * (width + 1);
            memcpy(p[i], fixed + (size_t)i * width, width);
            p[i][width] = '\0';
        }
    }
    *ptrs = p;
    *text = block;
    p = NULL;
    block = NULL;
    goto done;
nomem:
    st = cce_fail(CCE_ERR_NOMEM, "%s: %s: %lld pieces", f, path, (long long)n);
done:
    if (vlen_read) H5Dvlen_reclaim(mem, space, H5P_DEFAULT, vlen);
    free(vlen);
    free(fixed);
    free(block);
    free(p);
    if (mem >= 0) H5Tclose(mem);
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    return st;
}

cce_status cce_store_read_tokenizer(cce_store *s, cce_tokenizer **out) {
    const char *f = s->path, *gpath = "/tokenizer";
    hid_t g = H5I_INVALID_HID, dp = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    char *type = NULL, **pieces = NULL, *text = NULL;
    float *scores = NULL;
    hssize_t n = 0, n_scores = 0;
    int32_t bos, eos, unk;
    cce_status st = CCE_OK;
    if (!cce_store_has_tokenizer(s))
        return cce_fail(CCE_ERR_FORMAT, "%s: the file has no /tokenizer", f);
    if ((g = H5Gopen2(s->file, gpath, H5P_DEFAULT)) < 0)
        return store_hdf5_fail(CCE_ERR_FORMAT, f, gpath, "not a group");
    if ((st = store_read_attr_string(g, f, gpath, "type", &type))) goto done;
    if (strcmp(type, "llama2c-bpe") != 0 && strcmp(type, "hf-bpe") != 0) {
        st = cce_fail(CCE_ERR_FORMAT, "%s: %s: type \"%s\" is not supported", f, gpath, type);
        goto done;
    }
    if ((st = store_read_attr_i32(g, f, gpath, "bos_id", &bos)) ||
        (st = store_read_attr_i32(g, f, gpath, "eos_id", &eos)) ||
        (st = store_read_attr_i32(g, f, gpath, "unk_id", &unk)))
        goto done;
    if ((st = open_vector(g, f, gpath, "pieces", H5T_STRING, &dp, &n)) ||
        (st = open_vector(g, f, gpath, "scores", H5T_FLOAT, &ds, &n_scores)))
        goto done;
    if (n < 1 || n > VOCAB_LIMIT || n_scores != n) {
        st = cce_fail(CCE_ERR_FORMAT, "%s: %s: %lld pieces and %lld scores", f, gpath, (long long)n,
                      (long long)n_scores);
        goto done;
    }
    if (!(scores = malloc((size_t)n * sizeof *scores))) { /* [n] */
        st = cce_fail(CCE_ERR_NOMEM, "%s: %s: %lld scores", f, gpath, (long long)n);
        goto done;
    }
    if ((st = read_pieces(dp, f, "/tokenizer/pieces", n, &pieces, &text))) goto done;
    if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, scores) < 0) {
        st = store_hdf5_fail(CCE_ERR_HDF5, f, "/tokenizer/scores", "cannot read scores");
        goto done;
    }
    for (hssize_t i = 0; i < n; i++) {
        if (scores[i] != scores[i]) {
            st = cce_fail(CCE_ERR_FORMAT, "%s: %s/scores: score %lld is NaN", f, gpath,
                          (long long)i);
            goto done;
        }
    }
    cce_tokenizer *tok;
    if (!strcmp(type, "hf-bpe")) { /* kind, special ids, merges, added tokens: tokenizer_store.c */
        if ((st = tokenizer_store_read(g, f, gpath, (int32_t)n, (const char *const *)pieces, scores,
                                       bos, eos, unk, &tok)))
            goto done;
        *out = tok;
        goto done;
    }
    if ((st = cce_tokenizer_new((int32_t)n, (const char *const *)pieces, scores, &tok))) {
        cce_error_prefix("%s: %s: ", f, gpath);
        st = CCE_ERR_FORMAT;
        goto done;
    }
    if (cce_tokenizer_bos(tok) != bos || cce_tokenizer_eos(tok) != eos) {
        st = cce_fail(CCE_ERR_FORMAT, "%s: %s: bos_id/eos_id = %d/%d, the pieces imply %d/%d", f,
                      gpath, (int)bos, (int)eos, (int)cce_tokenizer_bos(tok),
                      (int)cce_tokenizer_eos(tok));
        cce_tokenizer_free(tok);
        goto done;
    }
    *out = tok;
done:
    free(pieces);
    free(text);
    free(scores);
    free(type);
    if (ds >= 0) H5Dclose(ds);
    if (dp >= 0) H5Dclose(dp);
    H5Gclose(g);
    return st;
}

/* ---- Tensors --------------------------------------------------------------------------------- */

/* Opens the object of tensor `name`: a float32 dataset (encoding "dense" or none), or a group with
 * an `encoding` attribute this build reads (*encoded = 1; store_encoding.c). */
static cce_status open_tensor(cce_store *s, int n_layers, const char *name, hid_t *out,
                              char path[STORE_PATH_MAX], int *encoded) {
    const char *f = s->path;
    cce_store_path_of(name, n_layers, path, STORE_PATH_MAX);
    int e = store_path_exists(s->file, path);
    if (e < 0) H5Eclear2(H5E_DEFAULT);
    if (e <= 0) return cce_fail(CCE_ERR_NOT_FOUND, "%s: no tensor %s (%s)", f, name, path);
    H5O_info_t info;
    if (H5Oget_info_by_name2(s->file, path, &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0)
        return store_hdf5_fail(CCE_ERR_HDF5, f, path, "cannot inspect object");
    char *encoding = NULL;
    cce_status st = CCE_OK;
    hid_t obj = H5Oopen(s->file, path, H5P_DEFAULT);
    if (obj < 0) return store_hdf5_fail(CCE_ERR_HDF5, f, path, "cannot open object");
    htri_t has_enc = H5Aexists(obj, "encoding");
    if (has_enc < 0) {
        st = store_hdf5_fail(CCE_ERR_HDF5, f, path, "cannot list attributes");
        goto done;
    }
    if (has_enc && (st = store_read_attr_string(obj, f, path, "encoding", &encoding))) goto done;
    int dense = info.type == H5O_TYPE_DATASET && (!encoding || !strcmp(encoding, "dense"));
    int grouped = info.type == H5O_TYPE_GROUP && encoding &&
                  (!strcmp(encoding, "sparse") || !strcmp(encoding, "quant") ||
                   !strcmp(encoding, "sparse+quant") || !strcmp(encoding, "lowrank"));
    if (!dense && !grouped) {
        st = cce_fail(CCE_ERR_FORMAT,
                      "%s: tensor %s (%s) has encoding \"%s\", which this build "
                      "cannot read",
                      f, name, path, encoding ? encoding : "(none)");
        goto done;
    }
    *encoded = grouped;
    *out = obj;
    obj = H5I_INVALID_HID;
done:
    free(encoding);
    if (obj >= 0) H5Oclose(obj);
    return st;
}

/* Shape of an open tensor dataset; checks that it holds floats of rank 1..4. */
static cce_status dataset_shape(hid_t d, const char *file, const char *path, int *ndim,
                                int64_t shape[CCE_TENSOR_MAX_DIMS]) {
    hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    cce_status st = CCE_OK;
    if ((type = H5Dget_type(d)) < 0 || (space = H5Dget_space(d)) < 0) {
        st = store_hdf5_fail(CCE_ERR_HDF5, file, path, "cannot inspect dataset");
        goto done;
    }
    if (H5Tget_class(type) != H5T_FLOAT) {
        st = cce_fail(CCE_ERR_FORMAT, "%s: %s: tensor data is not floating point", file, path);
        goto done;
    }
    int nd = H5Sget_simple_extent_ndims(space);
    if (nd < 1 || nd > CCE_TENSOR_MAX_DIMS) {
        st = cce_fail(CCE_ERR_FORMAT, "%s: %s: rank %d is outside 1..%d", file, path, nd,
                      CCE_TENSOR_MAX_DIMS);
        goto done;
    }
    hsize_t dims[CCE_TENSOR_MAX_DIMS];
    H5Sget_simple_extent_dims(space, dims, NULL);
    *ndim = nd;
    for (int k = 0; k < CCE_TENSOR_MAX_DIMS; k++) {
        if (k < nd && dims[k] > (hsize_t)INT32_MAX) {
            st = cce_fail(CCE_ERR_FORMAT, "%s: %s: dimension %d is %llu", file, path, k,
                          (unsigned long long)dims[k]);
            goto done;
        }
        shape[k] = k < nd ? (int64_t)dims[k] : 1;
    }
done:
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    return st;
}

hid_t store_file(const cce_store *s) {
    return s->file;
}

cce_status cce_store_tensor_shape(cce_store *s, int n_layers, const char *name, int *ndim,
                                  int64_t shape[CCE_TENSOR_MAX_DIMS]) {
    char path[STORE_PATH_MAX];
    hid_t d = H5I_INVALID_HID;
    int encoded = 0;
    cce_status st = open_tensor(s, n_layers, name, &d, path, &encoded);
    if (st) return st;
    st = encoded ? store_encoded_shape(d, s->path, path, ndim, shape)
                 : dataset_shape(d, s->path, path, ndim, shape);
    H5Oclose(d);
    return st;
}

cce_status cce_store_tensor_encoding_text(cce_store *s, int n_layers, const char *name, char *buf,
                                          size_t cap) {
    char path[STORE_PATH_MAX];
    hid_t d = H5I_INVALID_HID;
    int encoded = 0;
    cce_status st = open_tensor(s, n_layers, name, &d, path, &encoded);
    if (st) return st;
    if (encoded)
        st = store_describe_encoded(d, s->path, path, buf, cap);
    else if (cap)
        snprintf(buf, cap, "dense");
    H5Oclose(d);
    return st;
}

cce_status cce_store_read_encoded(cce_store *s, int n_layers, const char *name, cce_tensor **out,
                                  cce_encoding **enc) {
    char path[STORE_PATH_MAX];
    hid_t d = H5I_INVALID_HID;
    cce_tensor *t = NULL;
    int ndim, encoded = 0;
    int64_t shape[CCE_TENSOR_MAX_DIMS];
    if (enc) *enc = NULL;
    cce_status st = open_tensor(s, n_layers, name, &d, path, &encoded);
    if (st) return st;
    if (encoded) {
        cce_encoding *e = NULL;
        st = store_read_encoded(d, s->path, path, name, &t, &e);
        H5Oclose(d);
        if (st) return st;
        if (enc)
            *enc = e;
        else
            cce_encoding_free(e);
        *out = t;
        return CCE_OK;
    }
    if ((st = dataset_shape(d, s->path, path, &ndim, shape))) goto done;
    if ((st = cce_tensor_new(ndim, shape, &t))) {
        cce_error_prefix("%s: tensor %s: ", s->path, name);
        goto done;
    }
    if (cce_tensor_numel(t) > 0 &&
        H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) < 0) {
        st = store_hdf5_fail(CCE_ERR_HDF5, s->path, path, "cannot read tensor data");
        goto done;
    }
    *out = t;
    t = NULL;
done:
    cce_tensor_free(t);
    H5Oclose(d);
    return st;
}

cce_status cce_store_read_tensor(cce_store *s, int n_layers, const char *name, cce_tensor **out) {
    return cce_store_read_encoded(s, n_layers, name, out, NULL);
}
