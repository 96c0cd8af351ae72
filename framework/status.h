/* Status codes and the thread-local error detail.
 *
 * Every fallible function in libcce returns a cce_status. On failure it also sets a detail
 * message (via cce_fail) that names the file, tensor or parameter concerned; callers print
 * cce_strerror(status) and cce_error_detail(). */
#ifndef CCE_STATUS_H
#define CCE_STATUS_H

typedef enum cce_status {
    CCE_OK = 0,
    CCE_ERR_IO,        /* open/read/write/rename failed, or a file is missing */
    CCE_ERR_FORMAT,    /* a file is corrupt, truncated or of the wrong kind */
    CCE_ERR_HDF5,      /* libhdf5 reported an error */
    CCE_ERR_NOMEM,     /* allocation failed */
    CCE_ERR_ARG,       /* a bad argument or parameter (names it) */
    CCE_ERR_RANGE,     /* a value outside its allowed range (names it and the range) */
    CCE_ERR_NOT_FOUND, /* an unknown name: dataset, tensor, strategy, command */
    CCE_ERR_CHECKSUM,  /* a file's sha256 differs from its manifest */
    CCE_ERR_STATE,     /* called in the wrong state (e.g. a model without a tokenizer) */
    CCE_ERR_NUMERIC,   /* NaN or Inf where finite numbers are required */
    CCE_ERR_INTERNAL
} cce_status;

/* A short fixed description of a status. Borrowed, static. */
const char *cce_strerror(cce_status s);

/* Sets the thread-local detail message (printf-style) and returns s, so that failures read
 * `return cce_fail(CCE_ERR_FORMAT, "%s: truncated header", path);`. */
cce_status cce_fail(cce_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes the current detail message with more context ("loading model.h5: " + old detail). */
void cce_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The detail message of the last failure on this thread ("" if none). Borrowed, valid until the
 * next cce_fail on this thread. */
const char *cce_error_detail(void);

void cce_error_clear(void);

#endif
