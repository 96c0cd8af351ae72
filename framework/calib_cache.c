/* The on-disk cache of dense calibration statistics (calib.h): one HDF5 file per (model weights,
 * calibration data, options) in <cache>/calib/, named by the sha256 of that key.
 *
 * The model is identified by cce_model_weights_sha256 (what its forward pass computes with: the
 * config, every layer's shape, the tokenizer, and every tensor's name, shape and float32 bytes);
 * the key adds
 * the BOS id that starts every window. A variant therefore has a fingerprint of its own as soon
 * as one weight differs, and a model file that is re-imported or copied keeps its cache.
 *
 * File layout (format "cce-calib", version 1):
 *   /            attributes format, format_version, key (the sha256 above), n_layers
 *   /layer_NNN   attributes bi_cos (sum of cosines), bi_count (tokens)
 *   /layer_NNN/attn_in|o_in|ffn_in|down_in   attributes dim, n_tokens; datasets sum [dim],
 *                sum_sq [dim], and sum_outer [dim, dim] when collected
 * A file that is missing, unreadable, of another key or inconsistent is a miss: the statistics
 * are computed again and the file replaced (temporary name, then rename). */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calib_internal.h"
#include "dataset.h"
#include "sha256.h"
#include "store.h"

#define FORMAT         "cce-calib"
#define FORMAT_VERSION 1

/* ---- The key --------------------------------------------------------------------------------- */

cce_status calib_cache_path(cce_model *m, const cce_calib_data *d, int ctx, int second_moments,
                            char **path, char key[65]) {
    *path = NULL;
    char fp[65], data_sha[65], text[512];
    cce_status s = cce_model_weights_sha256(m, fp);
    if (s) return s;
    if (cce_sha256_is_hex(d->sha256)) {
        memcpy(data_sha, d->sha256, sizeof data_sha);
    } else {
        cce_calib_data copy = *d;
        cce_calib_data_hash(&copy);
        memcpy(data_sha, copy.sha256, sizeof data_sha);
    }
    const cce_tokenizer *tok = cce_model_tokenizer(m);
    int n = snprintf(text, sizeof text,
                     "cce-calib v%d\nmodel=%s\ndata=%s\nsegments=%zux%zu\nctx=%d\n"
                     "second_moments=%d\nbos=%d excluded\n",
                     FORMAT_VERSION, fp, data_sha, d->n_segments, d->seg_len, ctx,
                     second_moments != 0, tok ? (int)cce_tokenizer_bos(tok) : 1);
    if ((s = cce_sha256_buffer(text, (size_t)n, key))) return s;
    char *dir;
    if ((s = cce_cache_dir("calib", 1, &dir))) return s;
    size_t len = strlen(dir) + 80;
    *path = malloc(len);
    if (!*path) {
        free(dir);
        return cce_fail(CCE_ERR_NOMEM, "calibration cache path");
    }
    snprintf(*path, len, "%s/%s.h5", dir, key);
    free(dir);
    return CCE_OK;
}

/* ---- Reading --------------------------------------------------------------------------------- */

static int read_attr(hid_t obj, const char *name, hid_t type, void *out) {
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t space = H5Aget_space(a);
    int ok = space >= 0 && H5Sget_simple_extent_npoints(space) == 1 && H5Aread(a, type, out) >= 0;
    if (space >= 0) H5Sclose(space);
    H5Aclose(a);
    return ok ? 0 : -1;
}

/* A fixed-length string attribute compared with want. */
static int attr_equals(hid_t obj, const char *name, const char *want) {
    if (H5Aexists(obj, name) <= 0) return 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return 0;
    hid_t ft = H5Aget_type(a);
    int ok = 0;
    if (ft >= 0 && H5Tget_class(ft) == H5T_STRING && !H5Tis_variable_str(ft)) {
        size_t size = H5Tget_size(ft);
        char *buf = size < 4096 ? calloc(1, size + 1) : NULL;
        hid_t mt = H5Tcopy(ft);
        if (buf && mt >= 0 && H5Aread(a, mt, buf) >= 0) ok = !strcmp(buf, want);
        if (mt >= 0) H5Tclose(mt);
        free(buf);
    }
    if (ft >= 0) H5Tclose(ft);
    H5Aclose(a);
    return ok;
}

/* Reads a double dataset of exactly n elements. */
static int read_doubles(hid_t g, const char *name, double *out, size_t n) {
    if (H5Lexists(g, name, H5P_DEFAULT) <= 0) return -1;
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
    if (ds < 0) return -1;
    hid_t space = H5Dget_space(ds);
    int ok = space >= 0 && (size_t)H5Sget_simple_extent_npoints(space) == n &&
             H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0;
    if (space >= 0) H5Sclose(space);
    H5Dclose(ds);
    return ok ? 0 : -1;
}

static int load_site(hid_t lg, const char *name, int want_outer, calib_site_stats *ss) {
    if (H5Lexists(lg, name, H5P_DEFAULT) <= 0) return 0; /* not collected (removed layer) */
    hid_t g = H5Gopen2(lg, name, H5P_DEFAULT);
    if (g < 0) return -1;
    int32_t dim = 0;
    int64_t n_tokens = 0;
    int rc = -1;
    if (read_attr(g, "dim", H5T_NATIVE_INT32, &dim) ||
        read_attr(g, "n_tokens", H5T_NATIVE_INT64, &n_tokens) || dim <= 0 || dim > (1 << 20) ||
        n_tokens < 0)
        goto done;
    int has_outer = H5Lexists(g, "sum_outer", H5P_DEFAULT) > 0;
    if (want_outer && !has_outer) goto done;
    if (calib_site_alloc(ss, dim, want_outer)) goto done;
    ss->n_tokens = n_tokens;
    if (read_doubles(g, "sum", ss->sum, (size_t)dim) ||
        read_doubles(g, "sum_sq", ss->sum_sq, (size_t)dim) ||
        (want_outer && read_doubles(g, "sum_outer", ss->sum_outer, (size_t)dim * (size_t)dim)))
        goto done;
    rc = 0;
done:
    H5Gclose(g);
    return rc;
}

cce_status calib_cache_load(const char *path, const char *key, int n_layers, int want_outer,
                            cce_calib **out) {
    *out = NULL;
    if (access(path, R_OK) != 0) return CCE_ERR_NOT_FOUND;
    cce_hdf5_init();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        H5Eclear2(H5E_DEFAULT);
        return CCE_ERR_FORMAT;
    }
    cce_calib *c = NULL;
    int32_t version = 0, layers = 0;
    int ok = attr_equals(f, "format", FORMAT) && attr_equals(f, "key", key) &&
             !read_attr(f, "format_version", H5T_NATIVE_INT32, &version) &&
             version == FORMAT_VERSION && !read_attr(f, "n_layers", H5T_NATIVE_INT32, &layers) &&
             layers == n_layers && !cce_calib_new(n_layers, &c);
    for (int l = 0; ok && l < n_layers; l++) {
        char name[32];
        snprintf(name, sizeof name, "layer_%03d", l);
        hid_t lg = H5Gopen2(f, name, H5P_DEFAULT);
        if (lg < 0) {
            ok = 0;
            break;
        }
        ok = !read_attr(lg, "bi_cos", H5T_NATIVE_DOUBLE, &c->bi_cos[l]) &&
             !read_attr(lg, "bi_count", H5T_NATIVE_INT64, &c->bi_count[l]) && c->bi_count[l] >= 0;
        for (int s = 0; ok && s < CCE_SITE_COUNT; s++)
            ok = !load_site(lg, calib_site_name((cce_calib_site)s), want_outer,
                            calib_site(c, l, (cce_calib_site)s));
        H5Gclose(lg);
    }
    H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    if (!ok) {
        cce_calib_free(c);
        return CCE_ERR_FORMAT;
    }
    *out = c;
    return CCE_OK;
}

/* ---- Writing --------------------------------------------------------------------------------- */

static int write_attr(hid_t obj, const char *name, hid_t type, const void *v) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = space >= 0 ? H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int ok = a >= 0 && H5Awrite(a, type, v) >= 0;
    if (a >= 0) H5Aclose(a);
    if (space >= 0) H5Sclose(space);
    return ok ? 0 : -1;
}

static int write_string_attr(hid_t obj, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    int ok = t >= 0 && H5Tset_size(t, strlen(v) + 1) >= 0 &&
             H5Tset_strpad(t, H5T_STR_NULLTERM) >= 0 && !write_attr(obj, name, t, v);
    if (t >= 0) H5Tclose(t);
    return ok ? 0 : -1;
}

static int write_doubles(hid_t g, const char *name, const double *v, int rank, hsize_t d0,
                         hsize_t d1) {
    hsize_t dims[2] = {d0, d1};
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t ds = space >= 0 ? H5Dcreate2(g, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT,
                                       H5P_DEFAULT)
                          : -1;
    int ok = ds >= 0 && H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0;
    if (ds >= 0) H5Dclose(ds);
    if (space >= 0) H5Sclose(space);
    return ok ? 0 : -1;
}

static int store_layer(hid_t f, const cce_calib *c, int l) {
    char name[32];
    snprintf(name, sizeof name, "layer_%03d", l);
    hid_t lg = H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (lg < 0) return -1;
    int ok = !write_attr(lg, "bi_cos", H5T_NATIVE_DOUBLE, &c->bi_cos[l]) &&
             !write_attr(lg, "bi_count", H5T_NATIVE_INT64, &c->bi_count[l]);
    for (int s = 0; ok && s < CCE_SITE_COUNT; s++) {
        const calib_site_stats *ss = calib_site(c, l, (cce_calib_site)s);
        if (ss->dim == 0) continue;
        hid_t g = H5Gcreate2(lg, calib_site_name((cce_calib_site)s), H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT);
        if (g < 0) {
            ok = 0;
            break;
        }
        int32_t dim = ss->dim;
        hsize_t d = (hsize_t)ss->dim;
        ok = !write_attr(g, "dim", H5T_NATIVE_INT32, &dim) &&
             !write_attr(g, "n_tokens", H5T_NATIVE_INT64, &ss->n_tokens) &&
             !write_doubles(g, "sum", ss->sum, 1, d, 1) &&
             !write_doubles(g, "sum_sq", ss->sum_sq, 1, d, 1) &&
             (!ss->sum_outer || !write_doubles(g, "sum_outer", ss->sum_outer, 2, d, d));
        H5Gclose(g);
    }
    H5Gclose(lg);
    return ok ? 0 : -1;
}

cce_status calib_cache_store(const char *path, const char *key, const cce_calib *c) {
    cce_hdf5_init();
    size_t len = strlen(path) + 32;
    char *tmp = malloc(len);
    if (!tmp) return cce_fail(CCE_ERR_NOMEM, "calibration cache");
    snprintf(tmp, len, "%s.tmp.%ld", path, (long)getpid());
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    int32_t version = FORMAT_VERSION, n_layers = c->n_layers;
    int ok = f >= 0 && !write_string_attr(f, "format", FORMAT) &&
             !write_attr(f, "format_version", H5T_NATIVE_INT32, &version) &&
             !write_string_attr(f, "key", key) &&
             !write_attr(f, "n_layers", H5T_NATIVE_INT32, &n_layers);
    for (int l = 0; ok && l < c->n_layers; l++) ok = !store_layer(f, c, l);
    if (f >= 0 && H5Fclose(f) < 0) ok = 0;
    H5Eclear2(H5E_DEFAULT);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        free(tmp);
        return cce_fail(CCE_ERR_IO, "calibration cache: cannot write %s", path);
    }
    free(tmp);
    return CCE_OK;
}
