/* SHA-256 digests as lowercase hex, computed with OpenSSL's EVP interface. Used to verify the
 * files of the dataset manifest and to key derived-file caches. */
#ifndef CCE_SHA256_H
#define CCE_SHA256_H

#include <stddef.h>

#include "status.h"

/* hex receives 64 lowercase hex digits plus a NUL. CCE_ERR_IO naming the file if it cannot be
 * opened or read. No allocation is handed to the caller. */
cce_status cce_sha256_file(const char *path, char hex[65]);

/* The digest of len bytes at data (data may be NULL when len is 0) into hex (64 digits + NUL).
 * CCE_ERR_INTERNAL if libcrypto fails. */
cce_status cce_sha256_buffer(const void *data, size_t len, char hex[65]);

/* 1 if s is exactly 64 lowercase hex digits, else 0. */
int cce_sha256_is_hex(const char *s);

#endif
