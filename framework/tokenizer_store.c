/* The "hf-bpe" parts of the /tokenizer group (see tokenizer_store.h):
 *   attributes kind ("sentencepiece" | "bytelevel"), pretokenizer ("none" | "gpt2" | "llama3" |
 *   "qwen2"), flags (int32, CCE_TOK_*), pad_id (int32, -1: none), n_padding (int32, how many of
 *   the last pieces are padding, see cce_tokenizer_pad_to; present only when not 0);
 *   bos_id/eos_id/unk_id hold -1 for a missing token;
 *   datasets merges (int32 [n_merges, 2], left and right piece ids in rank order), added_ids
 *   (int32 [n_added]) and added_flags (uint8 [n_added], CCE_ADDED_*), each present only when
 *   non-empty. */
#include "tokenizer_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_hdf5.h"
#include "tokenizer_internal.h"

#define MAX_MERGES (1 << 24)

static const char *kind_name(cce_tokenizer_kind k) {
    return k == CCE_TOKENIZER_BYTELEVEL ? "bytelevel" : "sentencepiece";
}

/* Writes a contiguous integer dataset name [dims] (rank 1 or 2). */
static cce_status write_ints(hid_t g, const char *file, const char *gpath, const char *name,
                             int rank, const hsize_t *dims, hid_t ftype, hid_t mtype,
                             const void *data) {
    char full[STORE_PATH_MAX];
    snprintf(full, sizeof full, "%s/%s", gpath, name);
    hid_t space = H5Screate_simple(rank, dims, NULL), d = H5I_INVALID_HID;
    cce_status st = CCE_OK;
    if (space < 0 ||
        (d = H5Dcreate2(g, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        st = store_hdf5_fail(CCE_ERR_HDF5, file, full, "cannot write");
    if (d >= 0) H5Dclose(d);
    if (space >= 0) H5Sclose(space);
    return st;
}

cce_status tokenizer_store_write_extra(hid_t g, const char *file, const char *gpath,
                                       const cce_tokenizer *tok) {
    cce_tokenizer_spec sp;
    cce_tokenizer_get_spec(tok, &sp);
    int32_t flags = (int32_t)sp.flags;
    cce_status st;
    if ((st = store_write_string(g, file, gpath, "kind", kind_name(sp.kind))) ||
        (st = store_write_string(g, file, gpath, "pretokenizer", pretok_name(sp.pretok))) ||
        (st = store_write_attr(g, file, gpath, "flags", H5T_STD_I32LE, H5T_NATIVE_INT32, -1,
                               &flags)) ||
        (st = store_write_attr(g, file, gpath, "pad_id", H5T_STD_I32LE, H5T_NATIVE_INT32, -1,
                               &sp.pad_id)) ||
        (sp.n_padding > 0 && (st = store_write_attr(g, file, gpath, "n_padding", H5T_STD_I32LE,
                                                    H5T_NATIVE_INT32, -1, &sp.n_padding))))
        return st;
    if (sp.n_merges > 0) {
        hsize_t dims[2] = {(hsize_t)sp.n_merges, 2};
        if ((st = write_ints(g, file, gpath, "merges", 2, dims, H5T_STD_I32LE, H5T_NATIVE_INT32,
                             sp.merges)))
            return st;
    }
    if (sp.n_added > 0) {
        hsize_t dims[1] = {(hsize_t)sp.n_added};
        if ((st = write_ints(g, file, gpath, "added_ids", 1, dims, H5T_STD_I32LE, H5T_NATIVE_INT32,
                             sp.added_ids)) ||
            (st = write_ints(g, file, gpath, "added_flags", 1, dims, H5T_STD_U8LE, H5T_NATIVE_UINT8,
                             sp.added_flags)))
            return st;
    }
    return CCE_OK;
}

/* Reads integer dataset name of rank `rank` (second dimension must be dim1 for rank 2) into a
 * malloc'd array (*out, caller frees; NULL with *n = 0 when the dataset is absent). *n is the
 * first dimension, at most max. */
static cce_status read_ints(hid_t g, const char *file, const char *gpath, const char *name,
                            int rank, hsize_t dim1, hsize_t max, hid_t mtype, size_t elem,
                            void **out, int32_t *n) {
    char full[STORE_PATH_MAX];
    snprintf(full, sizeof full, "%s/%s", gpath, name);
    *out = NULL;
    *n = 0;
    htri_t e = H5Lexists(g, name, H5P_DEFAULT);
    if (e < 0) H5Eclear2(H5E_DEFAULT);
    if (e <= 0) return CCE_OK;
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT), type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    cce_status st = CCE_OK;
    hsize_t dims[2] = {0, 0};
    if (d < 0) return store_hdf5_fail(CCE_ERR_FORMAT, file, full, "not a dataset");
    if ((type = H5Dget_type(d)) < 0 || (space = H5Dget_space(d)) < 0) {
        st = store_hdf5_fail(CCE_ERR_HDF5, file, full, "cannot inspect dataset");
        goto done;
    }
    if (H5Tget_class(type) != H5T_INTEGER || H5Sget_simple_extent_ndims(space) != rank ||
        H5Sget_simple_extent_dims(space, dims, NULL) != rank || dims[0] > max ||
        (rank == 2 && dims[1] != dim1)) {
        st = cce_fail(CCE_ERR_FORMAT,
                      "%s: %s: expected an integer dataset of shape [<= %llu%s] (found rank %d, "
                      "[%llu, %llu])",
                      file, full, (unsigned long long)max, rank == 2 ? ", 2" : "",
                      H5Sget_simple_extent_ndims(space), (unsigned long long)dims[0],
                      (unsigned long long)dims[1]);
        goto done;
    }
    size_t count = (size_t)dims[0] * (rank == 2 ? (size_t)dim1 : 1);
    void *buf = malloc(count ? count * elem : 1);
    if (!buf) {
        st = cce_fail(CCE_ERR_NOMEM, "%s: %s: %zu values", file, full, count);
        goto done;
    }
    if (count && H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        free(buf);
        st = store_hdf5_fail(CCE_ERR_HDF5, file, full, "cannot read");
        goto done;
    }
    *out = buf;
    *n = (int32_t)dims[0];
done:
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    H5Dclose(d);
    return st;
}

cce_status tokenizer_store_read(hid_t g, const char *file, const char *gpath, int32_t n,
                                const char *const *pieces, const float *scores, int32_t bos,
                                int32_t eos, int32_t unk, cce_tokenizer **out) {
    char *kind = NULL, *pretok = NULL;
    int32_t *merges = NULL, *added = NULL, n_merges = 0, n_added = 0, n_flags = 0, flags = 0;
    int32_t pad = -1;
    uint8_t *added_flags = NULL;
    cce_tokenizer_spec sp = {0};
    cce_status st;
    if ((st = store_read_attr_string(g, file, gpath, "kind", &kind)) ||
        (st = store_read_attr_string(g, file, gpath, "pretokenizer", &pretok)) ||
        (st = store_read_attr_i32(g, file, gpath, "flags", &flags)) ||
        (st = store_read_attr_i32(g, file, gpath, "pad_id", &pad)))
        goto done;
    htri_t has_padding = H5Aexists(g, "n_padding");
    if (has_padding < 0) {
        st = store_hdf5_fail(CCE_ERR_HDF5, file, gpath, "cannot look for attribute n_padding");
        goto done;
    }
    if (has_padding && (st = store_read_attr_i32(g, file, gpath, "n_padding", &sp.n_padding)))
        goto done;
    if (!strcmp(kind, "sentencepiece"))
        sp.kind = CCE_TOKENIZER_SENTENCEPIECE;
    else if (!strcmp(kind, "bytelevel"))
        sp.kind = CCE_TOKENIZER_BYTELEVEL;
    else {
        st = cce_fail(CCE_ERR_FORMAT, "%s: %s: kind \"%s\" is not supported", file, gpath, kind);
        goto done;
    }
    sp.pretok = CCE_PRETOK_COUNT;
    for (int k = 0; k < CCE_PRETOK_COUNT; k++)
        if (!strcmp(pretok, pretok_name((cce_pretokenizer)k))) sp.pretok = (cce_pretokenizer)k;
    if (sp.pretok == CCE_PRETOK_COUNT) {
        st = cce_fail(CCE_ERR_FORMAT, "%s: %s: pretokenizer \"%s\" is not supported", file, gpath,
                      pretok);
        goto done;
    }
    if ((st = read_ints(g, file, gpath, "merges", 2, 2, MAX_MERGES, H5T_NATIVE_INT32,
                        sizeof *merges, (void **)&merges, &n_merges)) ||
        (st = read_ints(g, file, gpath, "added_ids", 1, 0, (hsize_t)n, H5T_NATIVE_INT32,
                        sizeof *added, (void **)&added, &n_added)) ||
        (st = read_ints(g, file, gpath, "added_flags", 1, 0, (hsize_t)n, H5T_NATIVE_UINT8, 1,
                        (void **)&added_flags, &n_flags)))
        goto done;
    if (n_flags != n_added) {
        st = cce_fail(CCE_ERR_FORMAT, "%s: %s: %d added_ids but %d added_flags", file, gpath,
                      (int)n_added, (int)n_flags);
        goto done;
    }
    sp.vocab_size = n;
    sp.pieces = pieces;
    sp.scores = scores;
    sp.n_merges = n_merges;
    sp.merges = merges;
    sp.bos_id = bos;
    sp.eos_id = eos;
    sp.unk_id = unk;
    sp.pad_id = pad;
    sp.n_added = n_added;
    sp.added_ids = added;
    sp.added_flags = added_flags;
    sp.flags = (uint32_t)flags;
    if ((st = cce_tokenizer_new_spec(&sp, out))) {
        cce_error_prefix("%s: %s: ", file, gpath);
        if (st != CCE_ERR_NOMEM) st = CCE_ERR_FORMAT;
    }
done:
    free(kind);
    free(pretok);
    free(merges);
    free(added);
    free(added_flags);
    return st;
}
