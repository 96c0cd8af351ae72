/* Datasets: the manifest of models and texts (datasets/manifest.json), provisioning from the
 * read-only mirror ($CCE_MIRROR), the cache folder or the canonical URL, text loading, whole-file
 * token streams with an on-disk cache, and test/calibration splits.
 *
 * manifest.c: the manifest; provision.c: locations, verification, download; dataset.c: text,
 * tokens and splits. */
#ifndef CCE_DATASET_H
#define CCE_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tokenizer.h"

/* ---- the manifest (manifest.c) ------------------------------------------------------------ */

typedef struct cce_dataset_entry {
    char *name;       /* unique, letters, digits and _ */
    char *kind;       /* "text", "model" or "tokenizer" */
    char *file;       /* path relative to the mirror, e.g. "text/alice29.txt" */
    char sha256[65];  /* 64 lowercase hex digits */
    char *licence;    /* e.g. "MIT" */
    char *url;        /* the canonical public home */
    int url_is_file;  /* 1: url serves the file byte for byte, so it can be downloaded */
    char *derivation; /* how the file derives from what url serves */
} cce_dataset_entry;

typedef struct cce_manifest {
    char *path;                 /* the file it was read from */
    size_t n;                   /* number of entries */
    cce_dataset_entry *entries; /* [n], in file order */
} cce_manifest;

/* $CCE_MANIFEST if set and non-empty, else the manifest.json of the source tree's datasets/.
 * Borrowed (the environment or a static string). */
const char *cce_manifest_default_path(void);

/* Reads and validates a manifest (path NULL: cce_manifest_default_path()). Malformed JSON,
 * duplicate keys or names, or a missing or ill-typed field give CCE_ERR_FORMAT naming the file
 * and the line (JSON errors) or the entry and field; a missing file CCE_ERR_IO. The caller owns
 * *out (cce_manifest_free). */
cce_status cce_manifest_load(const char *path, cce_manifest **out);

void cce_manifest_free(cce_manifest *m);

/* The entry called name, or NULL. Borrowed from m. */
const cce_dataset_entry *cce_manifest_find(const cce_manifest *m, const char *name);

/* The entry names joined by ", " (for messages). Malloc'd, owned by the caller; NULL if out of
 * memory. */
char *cce_manifest_names(const cce_manifest *m);

/* ---- locations and provisioning (provision.c) ---------------------------------------------- */

/* $CCE_MIRROR if set and non-empty, else NULL. Borrowed from the environment. The mirror is
 * only ever read. */
const char *cce_mirror_dir(void);

/* The cache folder $CCE_CACHE_DIR, else $XDG_CACHE_HOME/cce, else $HOME/.cache/cce, joined with
 * sub (NULL or "" for the folder itself). With create != 0 the folder and its parents are
 * created (CCE_ERR_IO naming it on failure). The caller owns *out (free). */
cce_status cce_cache_dir(const char *sub, int create, char **out);

typedef enum cce_dataset_state {
    CCE_DATASET_OK,       /* present and its sha256 matches the manifest */
    CCE_DATASET_MISSING,  /* neither in the mirror nor in the cache */
    CCE_DATASET_MISMATCH, /* present but its sha256 differs from the manifest */
} cce_dataset_state;

/* Looks for e's file in the mirror, then in the cache, without downloading anything, and
 * checks its sha256. *path receives the file found (NULL when missing; the caller frees it) and
 * actual (may be NULL) its sha256 ("" when missing). Errors only for I/O failures and memory. */
cce_status cce_dataset_locate(const cce_dataset_entry *e, cce_dataset_state *state, char **path,
                              char actual[65]);

/* Provisions e: the mirror file if present (CCE_ERR_CHECKSUM naming the file, expected and
 * actual sha256 if it differs), else the cache copy (checked likewise), else a download of
 * e->url into the cache with `curl -fsSL` when e->url_is_file and curl is on PATH, kept only if
 * its sha256 matches. Otherwise CCE_ERR_NOT_FOUND saying what was tried and how to fix it. The
 * caller owns *path (free). */
cce_status cce_dataset_resolve_entry(const cce_dataset_entry *e, char **path);

/* A manifest name (provisioned as cce_dataset_resolve_entry, sha256 = the manifest's), or else
 * a path to an existing file (used as is, sha256 computed). Anything else: CCE_ERR_NOT_FOUND
 * listing the known names. The caller owns *path (free); sha256 may be NULL. */
cce_status cce_dataset_resolve(const char *name_or_path, char **path, char sha256[65]);

/* ---- text, tokens and splits (dataset.c) ---------------------------------------------------- */

/* Reads a whole text file and turns every CRLF into LF (lone CRs are kept). *text is malloc'd,
 * NUL-terminated after *len bytes, and owned by the caller. CCE_ERR_IO naming a missing or
 * unreadable file. */
cce_status cce_text_load(const char *path, char **text, size_t *len);

/* The token stream of a dataset (name or path): the whole text as ONE stream, no BOS and no
 * EOS, encoded as cce_tokenizer_encode does (a SentencePiece-style tokenizer's stream starts with
 * the dummy-prefix space, merged into its first piece; a ByteLevel one's with the text's own
 * first bytes, unless the tokenizer adds a prefix space). Cached in the cache folder as
 * tokens/<text sha256>-<tokenizer fingerprint>.bin (magic, count, checksum; written to a
 * temporary name and renamed). A corrupt cache file is ignored and rebuilt; a cache that cannot
 * be written is skipped. *tokens is malloc'd and owned by the caller (free). */
cce_status cce_dataset_tokens(const char *name_or_path, const cce_tokenizer *tok, int32_t **tokens,
                              size_t *n);

/* The cache file that cce_dataset_tokens uses for a text of this sha256 and tokenizer. The
 * caller owns *path (free); the folder is created. */
cce_status cce_dataset_token_cache_path(const char *text_sha256, const cce_tokenizer *tok,
                                        char **path);

/* A test/calibration split of a stream of n_stream tokens. */
typedef struct cce_split_result {
    size_t test_start;     /* always 0: the test split is the stream's first tokens */
    size_t test_tokens;    /* its length */
    size_t calib_window;   /* tokens per calibration segment */
    size_t n_calib;        /* number of segments */
    size_t *calib_offsets; /* [n_calib] segment starts, ascending, each >= test_tokens */
} cce_split_result;

/* Test split = tokens [0, test_tokens). Calibration = ceil(calib_tokens / calib_window) segments
 * of calib_window tokens drawn uniformly at random without overlap from [test_tokens, n_stream)
 * by a GSL mt19937 seeded with seed (GSL maps seed 0 to its default 4357). CCE_ERR_RANGE naming
 * the numbers if the stream is too short; CCE_ERR_ARG if calib_tokens > 0 and calib_window is
 * 0. out->calib_offsets is owned by the caller (cce_split_result_clear). */
cce_status cce_split(size_t n_stream, size_t test_tokens, size_t calib_tokens, size_t calib_window,
                     uint64_t seed, cce_split_result *out);

/* Frees r->calib_offsets and zeroes *r; r itself stays the caller's. */
void cce_split_result_clear(cce_split_result *r);

/* The calibration segments of split r gathered back to back from stream [n_stream] (borrowed):
 * *tokens [r->n_calib * r->calib_window] is malloc'd and owned by the caller (free); NULL when
 * the split has no calibration part. CCE_ERR_RANGE if a segment lies outside the stream. */
cce_status cce_split_calib_tokens(const int32_t *stream, size_t n_stream, const cce_split_result *r,
                                  int32_t **tokens);

#endif
