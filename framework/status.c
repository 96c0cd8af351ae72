#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define DETAIL_MAX 1024

static _Thread_local char detail[DETAIL_MAX];

const char *cce_strerror(cce_status s) {
    switch (s) {
    case CCE_OK:
        return "ok";
    case CCE_ERR_IO:
        return "I/O error";
    case CCE_ERR_FORMAT:
        return "bad file format";
    case CCE_ERR_HDF5:
        return "HDF5 error";
    case CCE_ERR_NOMEM:
        return "out of memory";
    case CCE_ERR_ARG:
        return "bad argument";
    case CCE_ERR_RANGE:
        return "value out of range";
    case CCE_ERR_NOT_FOUND:
        return "not found";
    case CCE_ERR_CHECKSUM:
        return "checksum mismatch";
    case CCE_ERR_STATE:
        return "invalid state";
    case CCE_ERR_NUMERIC:
        return "non-finite number";
    case CCE_ERR_INTERNAL:
        return "internal error";
    }
    return "unknown status";
}

cce_status cce_fail(cce_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return s;
}

void cce_error_prefix(const char *fmt, ...) {
    char prefix[DETAIL_MAX], old[DETAIL_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, detail, sizeof old);
    /* Concatenate by hand: snprintf("%s%s") trips -Wformat-truncation, and truncation is fine. */
    size_t plen = strlen(prefix), olen = strnlen(old, sizeof old - 1);
    if (plen > DETAIL_MAX - 1) plen = DETAIL_MAX - 1;
    if (olen > DETAIL_MAX - 1 - plen) olen = DETAIL_MAX - 1 - plen;
    memcpy(detail, prefix, plen);
    memcpy(detail + plen, old, olen);
    detail[plen + olen] = '\0';
}

const char *cce_error_detail(void) {
    return detail;
}

void cce_error_clear(void) {
    detail[0] = '\0';
}
