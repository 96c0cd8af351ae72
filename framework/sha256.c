#include "sha256.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#define READ_CHUNK (1 << 16)

static void to_hex(const unsigned char *digest, unsigned n, char hex[65]) {
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < n && i < 32; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[64] = '\0';
}

/* Finalises the digest of ctx into hex and frees ctx (on every path). */
static cce_status finish(EVP_MD_CTX *ctx, char hex[65], const char *what) {
    unsigned char digest[EVP_MAX_MD_SIZE]; /* [32] used */
    unsigned n = 0;
    if (EVP_DigestFinal_ex(ctx, digest, &n) != 1 || n != 32) {
        EVP_MD_CTX_free(ctx);
        return cce_fail(CCE_ERR_INTERNAL, "sha256 of %s: EVP_DigestFinal_ex failed", what);
    }
    EVP_MD_CTX_free(ctx);
    to_hex(digest, n, hex);
    return CCE_OK;
}

/* A new EVP context set up for SHA-256; the caller owns *out (EVP_MD_CTX_free). */
static cce_status start(EVP_MD_CTX **out, const char *what) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return cce_fail(CCE_ERR_NOMEM, "sha256 of %s: EVP_MD_CTX_new failed", what);
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return cce_fail(CCE_ERR_INTERNAL, "sha256 of %s: EVP_DigestInit_ex failed", what);
    }
    *out = ctx;
    return CCE_OK;
}

cce_status cce_sha256_buffer(const void *data, size_t len, char hex[65]) {
    EVP_MD_CTX *ctx = NULL;
    cce_status s = start(&ctx, "a buffer");
    if (s != CCE_OK) return s;
    if (len && EVP_DigestUpdate(ctx, data, len) != 1) {
        EVP_MD_CTX_free(ctx);
        return cce_fail(CCE_ERR_INTERNAL, "sha256 of a buffer: EVP_DigestUpdate failed");
    }
    return finish(ctx, hex, "a buffer");
}

cce_status cce_sha256_file(const char *path, char hex[65]) {
    FILE *f = fopen(path, "rb");
    if (!f) return cce_fail(CCE_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = NULL;
    cce_status s = start(&ctx, path);
    if (s != CCE_OK) {
        fclose(f);
        return s;
    }
    static _Thread_local unsigned char buf[READ_CHUNK]; /* [READ_CHUNK] bytes */
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        if (EVP_DigestUpdate(ctx, buf, got) != 1) {
            EVP_MD_CTX_free(ctx);
            fclose(f);
            return cce_fail(CCE_ERR_INTERNAL, "sha256 of %s: EVP_DigestUpdate failed", path);
        }
    }
    if (ferror(f)) {
        int e = errno;
        EVP_MD_CTX_free(ctx);
        fclose(f);
        return cce_fail(CCE_ERR_IO, "reading %s: %s", path, strerror(e));
    }
    fclose(f);
    return finish(ctx, hex, path);
}

int cce_sha256_is_hex(const char *s) {
    if (!s) return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return s[64] == '\0';
}
