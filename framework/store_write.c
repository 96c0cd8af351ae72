/* The HDF5 model file writer (store.h). A file is written under "<path>.tmp.<pid>" in the target
 * folder, closed, fsynced and renamed into place, then the folder is fsynced: libhdf5 1.10 has no
 * journal, so a crash mid-write must never leave a half-written file at the final name.
 *
 * Every function that touches HDF5 has one cleanup label and closes every hid_t it opened. */
#include "store.h"
#include "store_hdf5.h"
#include "tokenizer_store.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Deflate chunks hold about this many floats (1 MiB), in whole rows. */
#define CHUNK_FLOATS (256 * 1024)

struct cce_store_writer {
    hid_t file;
    int deflate_level; /* 0: contiguous */
    char *final_path;
    char *tmp_path;
};

/* "<path>.tmp.<pid>", malloc'd. */
static char *temp_name(const char *path) {
    size_t len = strlen(path) + 32;
    char *d = malloc(len);
    if (d) snprintf(d, len, "%s.tmp.%ld", path, (long)getpid());
    return d;
}

cce_status cce_store_create(const char *final_path, const cce_save_options *opts,
                            cce_store_writer **out) {
    cce_hdf5_init();
    int level = opts ? opts->deflate_level : 0;
    if (level < 0 || level > 9)
        return cce_fail(CCE_ERR_RANGE, "%s: deflate level %d is outside [0, 9]", final_path, level);
    cce_store_writer *w = calloc(1, sizeof *w);
    hid_t fapl = H5I_INVALID_HID;
    cce_status st = CCE_OK;
    if (!w) return cce_fail(CCE_ERR_NOMEM, "%s: writer", final_path);
    w->file = H5I_INVALID_HID;
    w->deflate_level = level;
    w->final_path = strdup(final_path);
    w->tmp_path = temp_name(final_path);
    if (!w->final_path || !w->tmp_path) {
        st = cce_fail(CCE_ERR_NOMEM, "%s: writer", final_path);
        goto done;
    }
    /* SEMI: closing the file fails if any object is still open, instead of silently delaying
     * the close past the fsync. */
    /* Format objects of HDF5 1.8 and later (readable by any HDF5 >= 1.8 and h5py): their
     * superblock, object headers, B-trees and heaps carry checksums, so a corrupted file is
     * reported as such instead of being misread. */
    if ((fapl = H5Pcreate(H5P_FILE_ACCESS)) < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_SEMI) < 0 ||
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST) < 0) {
        st = store_hdf5_fail(CCE_ERR_HDF5, w->tmp_path, "/", "cannot set file access properties");
        goto done;
    }
    errno = 0;
    w->file = H5Fcreate(w->tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (w->file < 0) {
        int err = errno;
        H5Eclear2(H5E_DEFAULT);
        st = cce_fail(CCE_ERR_IO, "%s: cannot create the temporary file %s: %s", final_path,
                      w->tmp_path, err ? strerror(err) : "HDF5 refused");
        goto done;
    }
done:
    if (fapl >= 0) H5Pclose(fapl);
    if (st) {
        free(w->final_path);
        free(w->tmp_path);
        free(w);
        return st;
    }
    *out = w;
    return CCE_OK;
}

/* ---- Attributes ------------------------------------------------------------------------------ */

/* Writes attribute `name` of `count` elements (count 0 -> an empty attribute; count -1 -> a
 * scalar) with file type ftype from memory of type mtype. */
static cce_status write_attr(hid_t obj, const char *file, const char *objpath, const char *name,
                             hid_t ftype, hid_t mtype, long count, const void *value) {
    hid_t space = H5I_INVALID_HID, a = H5I_INVALID_HID;
    cce_status st = CCE_OK;
    hsize_t dim = count > 0 ? (hsize_t)count : 0;
    space = count < 0    ? H5Screate(H5S_SCALAR)
            : count == 0 ? H5Screate(H5S_NULL)
                         : H5Screate_simple(1, &dim, NULL);
    if (space < 0 || (a = H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        (count != 0 && H5Awrite(a, mtype, value) < 0)) {
        char what[96];
        snprintf(what, sizeof what, "cannot write attribute %s", name);
        st = store_hdf5_fail(CCE_ERR_HDF5, file, objpath, what);
    }
    if (a >= 0) H5Aclose(a);
    if (space >= 0) H5Sclose(space);
    return st;
}

static cce_status write_i32(hid_t obj, const char *file, const char *objpath, const char *name,
                            int32_t v) {
    return write_attr(obj, file, objpath, name, H5T_STD_I32LE, H5T_NATIVE_INT32, -1, &v);
}

static cce_status write_f32(hid_t obj, const char *file, const char *objpath, const char *name,
                            float v) {
    return write_attr(obj, file, objpath, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, -1, &v);
}

/* A variable-length UTF-8 string type (h5py reads it as str). The caller closes it. */
static hid_t utf8_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return t;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

/* String attributes are fixed-length UTF-8 (NUL-terminated): unlike variable-length strings they
 * live in the checksummed object header rather than the unchecked global heap, so a corrupted
 * file cannot make libhdf5 follow a bad heap reference. */
static cce_status write_string(hid_t obj, const char *file, const char *objpath, const char *name,
                               const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0 || H5Tset_size(t, strlen(v) + 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 ||
        H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        if (t >= 0) H5Tclose(t);
        return store_hdf5_fail(CCE_ERR_HDF5, file, objpath, "cannot make a string type");
    }
    cce_status st = write_attr(obj, file, objpath, name, t, t, -1, v);
    H5Tclose(t);
    return st;
}

/* Creates group `path` (and missing parents) or opens it if it exists. */
static cce_status make_group(cce_store_writer *w, const char *path, hid_t *out) {
    hid_t lcpl = H5I_INVALID_HID, g = H5I_INVALID_HID;
    int e = store_path_exists(w->file, path);
    if (e > 0) {
        g = H5Gopen2(w->file, path, H5P_DEFAULT);
    } else if (e == 0 && (lcpl = H5Pcreate(H5P_LINK_CREATE)) >= 0 &&
               H5Pset_create_intermediate_group(lcpl, 1) >= 0) {
        g = H5Gcreate2(w->file, path, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    }
    if (lcpl >= 0) H5Pclose(lcpl);
    if (g < 0) return store_hdf5_fail(CCE_ERR_HDF5, w->final_path, path, "cannot create group");
    *out = g;
    return CCE_OK;
}

/* ---- Shared with store_encoding.c ----------------------------------------------------------- */

hid_t store_writer_file(const cce_store_writer *w) {
    return w->file;
}

const char *store_writer_name(const cce_store_writer *w) {
    return w->final_path;
}

cce_status store_write_attr(hid_t obj, const char *file, const char *objpath, const char *name,
                            hid_t ftype, hid_t mtype, long count, const void *value) {
    return write_attr(obj, file, objpath, name, ftype, mtype, count, value);
}

cce_status store_write_string(hid_t obj, const char *file, const char *objpath, const char *name,
                              const char *v) {
    return write_string(obj, file, objpath, name, v);
}

cce_status store_make_group(cce_store_writer *w, const char *path, hid_t *out) {
    return make_group(w, path, out);
}

/* ---- Content --------------------------------------------------------------------------------- */

cce_status cce_store_write_config(cce_store_writer *w, const cce_config *c, const char *source) {
    const char *f = w->final_path;
    cce_status st = cce_config_validate(c, w->final_path);
    if (st) return st;
    hid_t root = w->file;
    if ((st = write_string(root, f, "/", "format", "cce-model")) ||
        (st = write_i32(root, f, "/", "format_version", 1)) ||
        (st = write_string(root, f, "/", "arch", "llama")) ||
        (st = write_i32(root, f, "/", "dim", c->dim)) ||
        (st = write_i32(root, f, "/", "hidden_dim", c->hidden_dim)) ||
        (st = write_i32(root, f, "/", "n_layers", c->n_layers)) ||
        (st = write_i32(root, f, "/", "n_heads", c->n_heads)) ||
        (st = write_i32(root, f, "/", "n_kv_heads", c->n_kv_heads)) ||
        (st = write_i32(root, f, "/", "head_dim", c->head_dim)) ||
        (st = write_i32(root, f, "/", "vocab_size", c->vocab_size)) ||
        (st = write_i32(root, f, "/", "seq_len", c->seq_len)) ||
        (st = write_f32(root, f, "/", "rope_theta", c->rope_theta)) ||
        (st = write_f32(root, f, "/", "norm_eps", c->norm_eps)) ||
        (st = write_i32(root, f, "/", "tied_embeddings", c->tied_embeddings)) ||
        (st = write_string(root, f, "/", "source", source ? source : "")))
        return st;
    return CCE_OK;
}

cce_status cce_store_write_layer_shape(cce_store_writer *w, const cce_config *cfg, int layer,
                                       const cce_layer_shape *l) {
    const char *f = w->final_path;
    char gpath[STORE_PATH_MAX];
    if (layer < 0 || layer >= cfg->n_layers)
        return cce_fail(CCE_ERR_RANGE, "%s: layer %d is outside [0, %d)", w->final_path, layer,
                        (int)cfg->n_layers);
    store_layer_group_path(layer, cfg->n_layers, gpath, sizeof gpath);
    cce_status st = store_check_layer_shape(w->final_path, gpath, cfg, l);
    if (st) return st;
    hid_t g;
    if ((st = make_group(w, gpath, &g))) return st;
    if ((st = write_i32(g, f, gpath, "hidden_dim", l->hidden_dim)) ||
        (st = write_i32(g, f, gpath, "n_heads", l->n_heads)) ||
        (st = write_i32(g, f, gpath, "n_kv_heads", l->n_kv_heads)) ||
        (st = write_attr(g, f, gpath, "kv_of_head", H5T_STD_I32LE, H5T_NATIVE_INT32, l->n_heads,
                         l->kv_of_head)) ||
        (st = write_i32(g, f, gpath, "removed", l->removed)))
        goto done;
done:
    H5Gclose(g);
    return st;
}

/* Pieces above this many bytes as fixed-length strings are stored variable-length instead. */
#define FIXED_PIECES_LIMIT (64u << 20)

cce_status cce_store_write_tokenizer(cce_store_writer *w, const cce_tokenizer *tok) {
    const char *f = w->final_path, *gpath = "/tokenizer";
    int32_t n = cce_tokenizer_vocab_size(tok);
    hid_t g = H5I_INVALID_HID, str = H5I_INVALID_HID, space = H5I_INVALID_HID;
    hid_t dp = H5I_INVALID_HID, ds = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
    const char **pieces = malloc((size_t)n * sizeof *pieces); /* [n], borrowed strings */
    float *scores = malloc((size_t)n * sizeof *scores);       /* [n] */
    char *fixed = NULL;                                       /* [n, width] */
    size_t width = 1;
    cce_status st = CCE_OK;
    if (!pieces || !scores) {
        st = cce_fail(CCE_ERR_NOMEM, "%s: tokenizer of %d pieces", f, (int)n);
        goto done;
    }
    for (int32_t i = 0; i < n; i++) {
        pieces[i] = cce_tokenizer_piece(tok, i);
        scores[i] = cce_tokenizer_score(tok, i);
        size_t len = strlen(pieces[i]) + 1;
        if (len > width) width = len;
    }
    if ((st = make_group(w, gpath, &g))) goto done;
    /* A plain llama2.c tokenizer is written as before; any other as "hf-bpe" (tokenizer_store.c)
     * with the raw special ids (-1: none). */
    int plain = cce_tokenizer_is_llama2c(tok);
    cce_tokenizer_spec spec;
    cce_tokenizer_get_spec(tok, &spec);
    if ((st = write_string(g, f, gpath, "type", plain ? "llama2c-bpe" : "hf-bpe")) ||
        (st = write_i32(g, f, gpath, "bos_id", plain ? cce_tokenizer_bos(tok) : spec.bos_id)) ||
        (st = write_i32(g, f, gpath, "eos_id", plain ? cce_tokenizer_eos(tok) : spec.eos_id)) ||
        (st = write_i32(g, f, gpath, "unk_id", plain ? 0 : spec.unk_id)) ||
        (!plain && (st = tokenizer_store_write_extra(g, f, gpath, tok))))
        goto done;
    hsize_t dim = (hsize_t)n;
    if ((space = H5Screate_simple(1, &dim, NULL)) < 0 ||
        (dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0) {
        st = store_hdf5_fail(CCE_ERR_HDF5, f, gpath, "cannot describe pieces");
        goto done;
    }
    /* Pieces are UTF-8 strings, fixed-length (NUL-padded to the longest) in a chunked dataset
     * with deflate and a Fletcher-32 checksum. Variable-length strings would put them in the
     * global heap, whose references libhdf5 follows unchecked: a corrupted file could crash it.
     * Only a vocabulary too large for that falls back to variable-length strings. */
    if ((size_t)n * width <= FIXED_PIECES_LIMIT) {
        if (!(fixed = calloc((size_t)n, width))) {
            st = cce_fail(CCE_ERR_NOMEM, "%s: %s: pieces", f, gpath);
            goto done;
        }
        for (int32_t i = 0; i < n; i++)
            memcpy(fixed + (size_t)i * width, pieces[i], strlen(pieces[i]));
        hsize_t chunk = dim < 65536 ? dim : 65536;
        if ((str = H5Tcopy(H5T_C_S1)) < 0 || H5Tset_size(str, width) < 0 ||
            H5Tset_strpad(str, H5T_STR_NULLPAD) < 0 || H5Tset_cset(str, H5T_CSET_UTF8) < 0 ||
            H5Pset_chunk(dcpl, 1, &chunk) < 0 || H5Pset_deflate(dcpl, 4) < 0 ||
            H5Pset_fletcher32(dcpl) < 0 ||
            (dp = H5Dcreate2(g, "pieces", str, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0 ||
            H5Dwrite(dp, str, H5S_ALL, H5S_ALL, H5P_DEFAULT, fixed) < 0) {
            st = store_hdf5_fail(CCE_ERR_HDF5, f, gpath, "cannot write pieces");
            goto done;
        }
    } else if ((str = utf8_type()) < 0 ||
               (dp = H5Dcreate2(g, "pieces", str, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) <
                   0 ||
               H5Dwrite(dp, str, H5S_ALL, H5S_ALL, H5P_DEFAULT, pieces) < 0) {
        st = store_hdf5_fail(CCE_ERR_HDF5, f, gpath, "cannot write pieces");
        goto done;
    }
    if ((ds = H5Dcreate2(g, "scores", H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT)) < 0 ||
        H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, scores) < 0) {
        st = store_hdf5_fail(CCE_ERR_HDF5, f, gpath, "cannot write scores");
        goto done;
    }
done:
    if (dcpl >= 0) H5Pclose(dcpl);
    if (ds >= 0) H5Dclose(ds);
    if (dp >= 0) H5Dclose(dp);
    if (space >= 0) H5Sclose(space);
    if (str >= 0) H5Tclose(str);
    if (g >= 0) H5Gclose(g);
    free(fixed);
    free(pieces);
    free(scores);
    return st;
}

cce_status cce_store_write_tensor(cce_store_writer *w, int n_layers, const char *name,
                                  const cce_tensor *t) {
    const char *f = w->final_path;
    char path[STORE_PATH_MAX], parent[STORE_PATH_MAX], leaf[STORE_PATH_MAX];
    hid_t g = H5I_INVALID_HID, space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
    hid_t d = H5I_INVALID_HID;
    cce_status st = cce_tensor_check_finite(t, name);
    if (st) {
        cce_error_prefix("%s: ", w->final_path);
        return st;
    }
    cce_store_path_of(name, n_layers, path, sizeof path);
    char *slash = strrchr(path, '/');
    snprintf(parent, sizeof parent, "%.*s", (int)(slash - path), path);
    snprintf(leaf, sizeof leaf, "%s", slash + 1);
    if ((st = make_group(w, parent, &g))) return st;

    hsize_t dims[CCE_TENSOR_MAX_DIMS], chunk[CCE_TENSOR_MAX_DIMS];
    int64_t numel = cce_tensor_numel(t), row = numel / (t->shape[0] ? t->shape[0] : 1);
    for (int k = 0; k < t->ndim; k++) dims[k] = chunk[k] = (hsize_t)t->shape[k];
    if ((space = H5Screate_simple(t->ndim, dims, NULL)) < 0 ||
        (dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0) {
        st = store_hdf5_fail(CCE_ERR_HDF5, f, path, "cannot describe dataset");
        goto done;
    }
    if (w->deflate_level > 0 && numel > 0) {
        /* Chunks of whole rows, about CHUNK_FLOATS each. */
        int64_t rows = CHUNK_FLOATS / (row > 0 ? row : 1);
        if (rows < 1) rows = 1;
        if (rows > t->shape[0]) rows = t->shape[0];
        chunk[0] = (hsize_t)rows;
        if (H5Pset_chunk(dcpl, t->ndim, chunk) < 0 || H5Pset_shuffle(dcpl) < 0 ||
            H5Pset_deflate(dcpl, (unsigned)w->deflate_level) < 0) {
            st = store_hdf5_fail(CCE_ERR_HDF5, f, path, "cannot set up deflate");
            goto done;
        }
    }
    if ((d = H5Dcreate2(g, leaf, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0 ||
        (numel > 0 && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) < 0)) {
        st = store_hdf5_fail(CCE_ERR_HDF5, f, path, "cannot write tensor");
        goto done;
    }
    st = write_string(d, f, path, "encoding", "dense");
done:
    if (d >= 0) H5Dclose(d);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    H5Gclose(g);
    return st;
}

/* ---- Commit / abort -------------------------------------------------------------------------- */

static cce_status fsync_path(const char *path, int flags) {
    int fd = open(path, flags);
    if (fd < 0) return cce_fail(CCE_ERR_IO, "%s: cannot open for fsync: %s", path, strerror(errno));
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    /* Some file systems cannot fsync a folder (EINVAL); the data itself is synced already. */
    if (rc != 0 && !(err == EINVAL && (flags & O_DIRECTORY)))
        return cce_fail(CCE_ERR_IO, "%s: fsync failed: %s", path, strerror(err));
    return CCE_OK;
}

static void writer_free(cce_store_writer *w) {
    free(w->final_path);
    free(w->tmp_path);
    free(w);
}

cce_status cce_store_commit(cce_store_writer *w) {
    cce_status st = CCE_OK;
    herr_t rc = H5Fclose(w->file);
    w->file = H5I_INVALID_HID;
    if (rc < 0) {
        st = store_hdf5_fail(CCE_ERR_HDF5, w->final_path, "/", "cannot close the file");
        goto fail;
    }
    if ((st = fsync_path(w->tmp_path, O_RDONLY))) goto fail;
    if (rename(w->tmp_path, w->final_path) != 0) {
        st = cce_fail(CCE_ERR_IO, "%s: cannot rename %s into place: %s", w->final_path, w->tmp_path,
                      strerror(errno));
        goto fail;
    }
    char *dir = malloc(strlen(w->final_path) + 2);
    if (dir) {
        strcpy(dir, w->final_path);
        char *slash = strrchr(dir, '/');
        if (!slash)
            strcpy(dir, ".");
        else if (slash == dir)
            dir[1] = '\0';
        else
            *slash = '\0';
        st = fsync_path(dir, O_RDONLY | O_DIRECTORY);
        free(dir);
    }
    writer_free(w);
    return st;
fail:
    unlink(w->tmp_path);
    writer_free(w);
    return st;
}

void cce_store_abort(cce_store_writer *w) {
    if (!w) return;
    if (w->file >= 0) {
        /* Objects may still be open after a failure: close them before the file. */
        ssize_t n = H5Fget_obj_count(w->file, H5F_OBJ_ALL | H5F_OBJ_LOCAL);
        if (n > 1) {
            hid_t *ids = malloc((size_t)n * sizeof *ids);
            if (ids) {
                ssize_t got = H5Fget_obj_ids(w->file, H5F_OBJ_ALL | H5F_OBJ_LOCAL, (size_t)n, ids);
                for (ssize_t i = 0; i < got; i++) {
                    H5I_type_t type = H5Iget_type(ids[i]);
                    if (type == H5I_ATTR)
                        H5Aclose(ids[i]);
                    else if (type == H5I_GROUP || type == H5I_DATASET || type == H5I_DATATYPE)
                        H5Oclose(ids[i]);
                }
                free(ids);
            }
        }
        H5Fclose(w->file);
        H5Eclear2(H5E_DEFAULT);
    }
    unlink(w->tmp_path);
    writer_free(w);
}
