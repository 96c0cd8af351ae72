/* Texts, whole-file token streams (with an on-disk cache) and test/calibration splits. */
#include "dataset.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gsl/gsl_rng.h>

#include "sha256.h"

/* ---- text ----------------------------------------------------------------------------------- */

cce_status cce_text_load(const char *path, char **text, size_t *len) {
    if (!path || !text || !len) return cce_fail(CCE_ERR_ARG, "cce_text_load: NULL argument");
    FILE *f = fopen(path, "rb");
    if (!f) return cce_fail(CCE_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap); /* [cap] bytes, n used, one spare for the NUL */
    int nomem = !buf;
    while (!nomem) {
        if (cap - n < 2) {
            char *grown = cap < SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
            if (!grown) {
                nomem = 1;
                break;
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    cce_status s = CCE_OK;
    if (nomem)
        s = cce_fail(CCE_ERR_NOMEM, "reading %s (%zu bytes so far)", path, n);
    else if (ferror(f))
        s = cce_fail(CCE_ERR_IO, "reading %s: %s", path, strerror(errno));
    fclose(f);
    if (s != CCE_OK) {
        free(buf);
        return s;
    }
    size_t w = 0; /* CRLF -> LF in place */
    for (size_t r = 0; r < n; r++) {
        if (buf[r] == '\r' && r + 1 < n && buf[r + 1] == '\n') continue;
        buf[w++] = buf[r];
    }
    buf[w] = '\0';
    *text = buf;
    *len = w;
    return CCE_OK;
}

/* ---- the token cache ------------------------------------------------------------------------ */

/* File layout: magic[8] "CCETOKS1", uint64 count, uint64 tokenizer fingerprint, char[64] sha256
 * hex of the token bytes, then count int32 tokens (host byte order: the cache is local). */
#define CACHE_MAGIC  "CCETOKS1"
#define CACHE_HEADER (8 + 8 + 8 + 64)

cce_status cce_dataset_token_cache_path(const char *text_sha256, const cce_tokenizer *tok,
                                        char **path) {
    char *dir;
    cce_status s = cce_cache_dir("tokens", 1, &dir);
    if (s != CCE_OK) return s;
    size_t cap = strlen(dir) + 128;
    char *p = malloc(cap);
    if (!p) {
        free(dir);
        return cce_fail(CCE_ERR_NOMEM, "token cache path");
    }
    snprintf(p, cap, "%s/%s-%016" PRIx64 ".bin", dir, text_sha256, cce_tokenizer_fingerprint(tok));
    free(dir);
    *path = p;
    return CCE_OK;
}

/* Reads a cached stream; returns 0 (and nothing allocated) if the file is absent or fails any
 * check, 1 with *tokens (caller frees) and *n set otherwise. */
static int read_token_cache(const char *path, const cce_tokenizer *tok, int32_t **tokens,
                            size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char header[CACHE_HEADER];
    uint64_t count, fingerprint;
    int32_t *data = NULL; /* [count] */
    int ok = fread(header, 1, CACHE_HEADER, f) == CACHE_HEADER && !memcmp(header, CACHE_MAGIC, 8);
    if (ok) {
        memcpy(&count, header + 8, 8);
        memcpy(&fingerprint, header + 16, 8);
        ok = fingerprint == cce_tokenizer_fingerprint(tok) && count < SIZE_MAX / 8;
    }
    if (ok) ok = (data = malloc(count ? count * sizeof *data : 1)) != NULL;
    if (ok) ok = fread(data, sizeof *data, count, f) == count && fgetc(f) == EOF;
    fclose(f);
    if (ok) {
        char hex[65];
        ok = cce_sha256_buffer(data, count * sizeof *data, hex) == CCE_OK &&
             !memcmp(hex, header + 24, 64);
    }
    int32_t vocab = cce_tokenizer_vocab_size(tok);
    for (uint64_t i = 0; ok && i < count; i++) ok = data[i] >= 0 && data[i] < vocab;
    if (!ok) {
        free(data);
        return 0;
    }
    *tokens = data;
    *n = count;
    return 1;
}

/* Writes the stream to path through a temporary name. */
static cce_status write_token_cache(const char *path, const cce_tokenizer *tok,
                                    const int32_t *tokens, size_t n) {
    unsigned char header[CACHE_HEADER];
    uint64_t count = n, fingerprint = cce_tokenizer_fingerprint(tok);
    char hex[65];
    cce_status s = cce_sha256_buffer(tokens, n * sizeof *tokens, hex);
    if (s != CCE_OK) return s;
    memcpy(header, CACHE_MAGIC, 8);
    memcpy(header + 8, &count, 8);
    memcpy(header + 16, &fingerprint, 8);
    memcpy(header + 24, hex, 64);
    size_t cap = strlen(path) + 32;
    char *tmp = malloc(cap);
    if (!tmp) return cce_fail(CCE_ERR_NOMEM, "token cache %s", path);
    snprintf(tmp, cap, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        s = cce_fail(CCE_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
        free(tmp);
        return s;
    }
    int ok = fwrite(header, 1, CACHE_HEADER, f) == CACHE_HEADER &&
             fwrite(tokens, sizeof *tokens, n, f) == n;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok)
        s = cce_fail(CCE_ERR_IO, "writing %s: %s", tmp, strerror(errno));
    else if (rename(tmp, path) != 0)
        s = cce_fail(CCE_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (s != CCE_OK) unlink(tmp);
    free(tmp);
    return s;
}

cce_status cce_dataset_tokens(const char *name_or_path, const cce_tokenizer *tok, int32_t **tokens,
                              size_t *n) {
    if (!name_or_path || !tok || !tokens || !n)
        return cce_fail(CCE_ERR_ARG, "cce_dataset_tokens: NULL argument");
    char *path, sha[65];
    cce_status s = cce_dataset_resolve(name_or_path, &path, sha);
    if (s != CCE_OK) return s;
    char *cache = NULL;
    if (cce_dataset_token_cache_path(sha, tok, &cache) != CCE_OK) cache = NULL;
    if (cache && read_token_cache(cache, tok, tokens, n)) {
        free(cache);
        free(path);
        return CCE_OK;
    }
    char *text; /* [len] */
    size_t len;
    s = cce_text_load(path, &text, &len);
    if (s == CCE_OK) {
        s = cce_tokenizer_encode(tok, text, len, 0, 0, tokens, n);
        if (s != CCE_OK) cce_error_prefix("tokenizing %s: ", path);
        free(text);
    }
    /* The cache only saves time: a failure to write it does not fail the call. */
    if (s == CCE_OK && cache) (void)write_token_cache(cache, tok, *tokens, *n);
    if (s == CCE_OK) cce_error_clear();
    free(cache);
    free(path);
    return s;
}

/* ---- splits --------------------------------------------------------------------------------- */

/* A set of size_t values (open addressing, SIZE_MAX = empty) for Floyd's sampling. */
typedef struct index_set {
    size_t *slots; /* [mask + 1] */
    size_t mask;
} index_set;

/* Inserts v; returns 1 if it was new, 0 if already present. */
static int set_insert(index_set *s, size_t v) {
    size_t h = (size_t)((v * 0x9E3779B97F4A7C15ULL) >> 17) & s->mask;
    for (;; h = (h + 1) & s->mask) {
        if (s->slots[h] == v) return 0;
        if (s->slots[h] == SIZE_MAX) {
            s->slots[h] = v;
            return 1;
        }
    }
}

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

void cce_split_result_clear(cce_split_result *r) {
    if (!r) return;
    free(r->calib_offsets);
    memset(r, 0, sizeof *r);
}

cce_status cce_split(size_t n_stream, size_t test_tokens, size_t calib_tokens, size_t calib_window,
                     uint64_t seed, cce_split_result *out) {
    if (!out) return cce_fail(CCE_ERR_ARG, "cce_split: out must be non-NULL");
    memset(out, 0, sizeof *out);
    if (calib_tokens > 0 && calib_window == 0)
        return cce_fail(CCE_ERR_ARG, "split: calib_window must be > 0 when calib_tokens = %zu",
                        calib_tokens);
    if (test_tokens > n_stream)
        return cce_fail(CCE_ERR_RANGE, "split: test_tokens = %zu exceeds the stream's %zu tokens",
                        test_tokens, n_stream);
    size_t k = calib_window ? calib_tokens / calib_window + (calib_tokens % calib_window != 0) : 0;
    size_t rest = n_stream - test_tokens;
    if (k > 0 && (k > rest / calib_window || k * calib_window > rest))
        return cce_fail(CCE_ERR_RANGE,
                        "split: %zu calibration segments of %zu tokens (calib_tokens = %zu) do not "
                        "fit in the %zu tokens left after test_tokens = %zu of the stream's %zu",
                        k, calib_window, calib_tokens, rest, test_tokens, n_stream);
    out->test_start = 0;
    out->test_tokens = test_tokens;
    out->calib_window = calib_window;
    if (k == 0) return CCE_OK;

    /* Non-overlapping segments <-> k distinct sorted slots y_i in [0, m), m = rest - k*w + k,
     * with offset_i = test_tokens + y_i + i*(w - 1). */
    size_t m = rest - k * calib_window + k;
    if (m > gsl_rng_mt19937->max) /* gsl_rng_uniform_int needs n <= max - min */
        return cce_fail(CCE_ERR_RANGE, "split: %zu candidate positions exceed the RNG's range", m);
    size_t cap = 16;
    while (cap < 2 * k) cap *= 2;
    index_set set = {malloc(cap * sizeof(size_t)), cap - 1};
    size_t *offsets = malloc(k * sizeof *offsets); /* [k] */
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    if (!set.slots || !offsets || !rng) {
        free(set.slots);
        free(offsets);
        if (rng) gsl_rng_free(rng);
        return cce_fail(CCE_ERR_NOMEM, "split of %zu calibration segments", k);
    }
    memset(set.slots, 0xff, cap * sizeof(size_t));
    gsl_rng_set(rng, (unsigned long)seed);
    size_t got = 0;
    for (size_t j = m - k; j < m; j++) { /* Floyd's algorithm: k distinct values of [0, m) */
        size_t t = (size_t)gsl_rng_uniform_int(rng, (unsigned long)j + 1);
        offsets[got++] = set_insert(&set, t) ? t : (set_insert(&set, j), j);
    }
    gsl_rng_free(rng);
    free(set.slots);
    qsort(offsets, k, sizeof *offsets, cmp_size);
    for (size_t i = 0; i < k; i++) offsets[i] += test_tokens + i * (calib_window - 1);
    out->n_calib = k;
    out->calib_offsets = offsets;
    return CCE_OK;
}

cce_status cce_split_calib_tokens(const int32_t *stream, size_t n_stream, const cce_split_result *r,
                                  int32_t **tokens) {
    *tokens = NULL;
    size_t w = r->calib_window;
    if (r->n_calib == 0) return CCE_OK;
    for (size_t i = 0; i < r->n_calib; i++)
        if (r->calib_offsets[i] > n_stream || w > n_stream - r->calib_offsets[i])
            return cce_fail(CCE_ERR_RANGE,
                            "split: calibration segment %zu [%zu, +%zu) lies outside the stream's "
                            "%zu tokens",
                            i, r->calib_offsets[i], w, n_stream);
    int32_t *out = malloc(r->n_calib * w * sizeof *out); /* [n_calib * w] */
    if (!out)
        return cce_fail(CCE_ERR_NOMEM, "%zu calibration segments of %zu tokens", r->n_calib, w);
    for (size_t i = 0; i < r->n_calib; i++)
        memcpy(out + i * w, stream + r->calib_offsets[i], w * sizeof *out);
    *tokens = out;
    return CCE_OK;
}
