/* The shared quantization grid, fp16 scales, bit packing and round-to-nearest (quant.h). */
#include "quant.h"

#include "strategy.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define PAR_MIN    (1 << 15) /* tensors smaller than this are quantized on one thread */
#define PACK_CHUNK (1 << 16) /* codes per parallel packing chunk (a multiple of 8) */

/* ---- Specs and sizes ------------------------------------------------------------------------- */

cce_status cce_quant_spec_check(const cce_quant_spec *q, const char *who) {
    if (q->bits < CCE_QUANT_MIN_BITS || q->bits > CCE_QUANT_MAX_BITS)
        return cce_fail(CCE_ERR_RANGE, "%s: bits = %d is outside [%d, %d]", who, q->bits,
                        CCE_QUANT_MIN_BITS, CCE_QUANT_MAX_BITS);
    if (q->granularity != CCE_QUANT_TENSOR && q->granularity != CCE_QUANT_CHANNEL &&
        q->granularity != CCE_QUANT_GROUP)
        return cce_fail(CCE_ERR_RANGE, "%s: granularity %d is not tensor, channel or group", who,
                        (int)q->granularity);
    if (q->granularity == CCE_QUANT_GROUP && q->group < 1)
        return cce_fail(CCE_ERR_RANGE,
                        "%s: group = %lld is outside [1, inf): a group holds at "
                        "least one weight",
                        who, (long long)q->group);
    return CCE_OK;
}

const char *cce_quant_granularity_name(cce_quant_granularity g) {
    switch (g) {
    case CCE_QUANT_TENSOR:
        return "tensor";
    case CCE_QUANT_CHANNEL:
        return "channel";
    case CCE_QUANT_GROUP:
        return "group";
    }
    return "?";
}

int64_t cce_quant_groups_per_row(const cce_quant_spec *q, int64_t cols) {
    if (q->granularity != CCE_QUANT_GROUP || cols <= 0) return 1;
    return (cols + q->group - 1) / q->group;
}

int64_t cce_quant_n_groups(const cce_quant_spec *q, int64_t rows, int64_t cols) {
    if (q->granularity == CCE_QUANT_TENSOR) return 1;
    return rows * cce_quant_groups_per_row(q, cols);
}

int64_t cce_quant_ragged_last(const cce_quant_spec *q, int64_t cols) {
    if (q->granularity != CCE_QUANT_GROUP || q->group >= cols) return 0;
    return cols % q->group;
}

int64_t cce_quant_packed_bytes(int64_t n, int bits) {
    return (n * bits + 7) / 8;
}

int64_t cce_quant_encoded_bytes(const cce_quant_spec *q, int64_t rows, int64_t cols, int64_t kept,
                                int nm_m) {
    int64_t numel = rows * cols, ng = cce_quant_n_groups(q, rows, cols);
    int64_t codes = cce_quant_packed_bytes(numel, q->bits);
    if (kept >= 0 && kept < numel) {
        int64_t index;
        if (nm_m > 0) {
            int ib = 0;
            while ((1L << ib) < nm_m) ib++;
            index = (kept * ib + 7) / 8;
        } else {
            index = (numel + 7) / 8;
        }
        int64_t sparse = cce_quant_packed_bytes(kept, q->bits) + index;
        if (sparse < codes) codes = sparse;
    }
    return codes + 2 * ng + (q->symmetric ? 0 : cce_quant_packed_bytes(ng, q->bits));
}

/* ---- fp16 ------------------------------------------------------------------------------------ */

uint16_t cce_quant_half_from_float(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) return sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u); /* Inf, NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00u; /* >= 65520 rounds to infinity */
    if (a >= 0x38800000u) {                      /* normal half: >= 2^-14 */
        uint32_t mant = a & 0x7fffffu, exp = (a >> 23) - 127 + 15;
        uint32_t h = (exp << 10) | (mant >> 13), rem = mant & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* a carry moves the exponent */
        return sign | (uint16_t)h;
    }
    if (a <= 0x33000000u) return sign; /* <= 2^-25: rounds (ties to even) to zero */
    /* Subnormal half: units of 2^-24. The float is mant * 2^(e - 150), so it is
     * mant * 2^(e - 126) units, a right shift of 126 - e (14..24). */
    uint32_t e = a >> 23, mant = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e, h = mant >> shift, rem = mant & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) h++;
    return sign | (uint16_t)h;
}

float cce_quant_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {
        u = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    } else if (mant == 0) {
        u = sign;
    } else { /* subnormal: mant * 2^-24, exact in float */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- Groups ---------------------------------------------------------------------------------- */

/* Range of w (widened to hold 0) and whether every considered value is finite. */
static int range_of(const float *w, const uint8_t *keep, int64_t n, float *lo, float *hi) {
    float mn = 0.0f, mx = 0.0f, bad = 0.0f;
    if (keep) {
        for (int64_t i = 0; i < n; i++) {
            if (!keep[i]) continue;
            float v = w[i];
            bad += v - v; /* NaN for NaN or infinite v */
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
        }
    } else {
#pragma omp simd reduction(min : mn) reduction(max : mx) reduction(+ : bad)
        for (int64_t i = 0; i < n; i++) {
            float v = w[i];
            bad += v - v;
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
        }
    }
    *lo = mn;
    *hi = mx;
    return bad == 0.0f;
}

cce_status cce_quant_range(const float *w, const uint8_t *keep, int64_t n, const char *what,
                           float *lo, float *hi) {
    if (!range_of(w, keep, n, lo, hi)) {
        for (int64_t i = 0; i < n; i++)
            if ((!keep || keep[i]) && !isfinite(w[i]))
                return cce_fail(CCE_ERR_NUMERIC, "%s: value %lld is %g (weights must be finite)",
                                what, (long long)i, (double)w[i]);
    }
    return CCE_OK;
}

/* The parameters, or 0 if the scale exceeds fp16 (the only failure). */
static int group_params(int bits, int symmetric, float lo, float hi, cce_quant_group *g) {
    int maxq = (1 << bits) - 1;
    float s;
    if (symmetric) {
        float amax = -lo > hi ? -lo : hi;
        s = amax / (float)((1 << (bits - 1)) - 1);
    } else {
        s = (hi - lo) / (float)maxq;
    }
    if (!(s <= 65504.0f)) return 0;
    g->scale_h = cce_quant_half_from_float(s);
    g->scale = cce_quant_half_to_float(g->scale_h);
    g->inv_scale = g->scale > 0.0f ? 1.0f / g->scale : 0.0f;
    g->maxq = maxq;
    if (symmetric) {
        g->zero = 1 << (bits - 1);
    } else {
        float z = rintf(-lo * g->inv_scale);
        g->zero = z < 0.0f ? 0 : z > (float)maxq ? maxq : (int)z;
    }
    return 1;
}

cce_status cce_quant_group_params(int bits, int symmetric, float lo, float hi, const char *what,
                                  cce_quant_group *g) {
    if (bits < CCE_QUANT_MIN_BITS || bits > CCE_QUANT_MAX_BITS)
        return cce_fail(CCE_ERR_RANGE, "%s: bits = %d is outside [%d, %d]", what, bits,
                        CCE_QUANT_MIN_BITS, CCE_QUANT_MAX_BITS);
    if (!(lo <= 0.0f && hi >= 0.0f && isfinite(lo) && isfinite(hi)))
        return cce_fail(CCE_ERR_RANGE, "%s: group range [%g, %g] must be finite and hold 0", what,
                        (double)lo, (double)hi);
    if (!group_params(bits, symmetric, lo, hi, g))
        return cce_fail(CCE_ERR_RANGE,
                        "%s: weights up to %g need a scale beyond fp16's maximum 65504", what,
                        (double)(-lo > hi ? -lo : hi));
    return CCE_OK;
}

double cce_quant_row(const cce_quant_group *g, float *w, int64_t n, uint8_t *codes) {
    const float inv = g->inv_scale, sc = g->scale, z = (float)g->zero, mq = (float)g->maxq;
    double err2 = 0;
    if (codes) {
#pragma omp simd reduction(+ : err2)
        for (int64_t i = 0; i < n; i++) {
            float v = rintf(w[i] * inv) + z;
            v = v >= 0.0f ? v : 0.0f;
            v = v <= mq ? v : mq;
            codes[i] = (uint8_t)v;
            float d = w[i] - (v - z) * sc;
            err2 += (double)(d * d);
            w[i] = (v - z) * sc;
        }
    } else {
#pragma omp simd reduction(+ : err2)
        for (int64_t i = 0; i < n; i++) {
            float v = rintf(w[i] * inv) + z;
            v = v >= 0.0f ? v : 0.0f;
            v = v <= mq ? v : mq;
            float d = w[i] - (v - z) * sc;
            err2 += (double)(d * d);
            w[i] = (v - z) * sc;
        }
    }
    return err2;
}

/* ---- Packing --------------------------------------------------------------------------------- */

/* Packs n values into out, which starts on a byte boundary of the stream. Eight b-bit values
 * fill exactly b bytes, so whole runs of eight are packed into one 64-bit word each. */
static void pack_run(const uint8_t *codes, int64_t n, int bits, uint8_t *out) {
    uint64_t acc = 0, mask = (1u << bits) - 1;
    int64_t i = 0;
    if (bits == 8) {
        memcpy(out, codes, (size_t)n);
        return;
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t word = 0;
        for (int j = 0; j < 8; j++) word |= ((uint64_t)codes[i + j] & mask) << (j * bits);
        for (int b = 0; b < bits; b++) out[b] = (uint8_t)(word >> (8 * b));
        out += bits;
    }
    int nb = 0;
    for (; i < n; i++) {
        acc |= ((uint64_t)codes[i] & mask) << nb;
        nb += bits;
        while (nb >= 8) {
            *out++ = (uint8_t)acc;
            acc >>= 8;
            nb -= 8;
        }
    }
    if (nb) *out = (uint8_t)acc;
}

static void unpack_run(const uint8_t *in, int64_t n, int bits, uint8_t *codes) {
    uint64_t acc = 0, mask = (1u << bits) - 1;
    int64_t i = 0;
    if (bits == 8) {
        memcpy(codes, in, (size_t)n);
        return;
    }
    for (; i + 8 <= n; i += 8) { /* eight values from b whole bytes */
        uint64_t word = 0;
        for (int b = 0; b < bits; b++) word |= (uint64_t)in[b] << (8 * b);
        for (int j = 0; j < 8; j++) codes[i + j] = (uint8_t)((word >> (j * bits)) & mask);
        in += bits;
    }
    int nb = 0;
    for (; i < n; i++) {
        while (nb < bits) {
            acc |= (uint64_t)*in++ << nb;
            nb += 8;
        }
        codes[i] = (uint8_t)(acc & mask);
        acc >>= bits;
        nb -= bits;
    }
}

/* Chunks of PACK_CHUNK values (a multiple of 8) start on byte PACK_CHUNK / 8 * bits * k. */
void cce_quant_pack(const uint8_t *codes, int64_t n, int bits, uint8_t *out) {
    int64_t chunks = (n + PACK_CHUNK - 1) / PACK_CHUNK;
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t start = c * PACK_CHUNK, len = n - start < PACK_CHUNK ? n - start : PACK_CHUNK;
        pack_run(codes + start, len, bits, out + start / 8 * bits);
    }
}

void cce_quant_unpack(const uint8_t *packed, int64_t n, int bits, uint8_t *codes) {
    int64_t chunks = (n + PACK_CHUNK - 1) / PACK_CHUNK;
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t start = c * PACK_CHUNK, len = n - start < PACK_CHUNK ? n - start : PACK_CHUNK;
        unpack_run(packed + start / 8 * bits, len, bits, codes + start);
    }
}

/* ---- Encodings ------------------------------------------------------------------------------- */

cce_status cce_quant_encoding_new(const cce_quant_spec *q, int64_t rows, int64_t cols,
                                  cce_quant_encoding **out) {
    *out = NULL;
    cce_status s = cce_quant_spec_check(q, "quant encoding");
    if (s) return s;
    if (rows < 1 || cols < 1)
        return cce_fail(CCE_ERR_ARG, "quant encoding: shape [%lld, %lld] is empty", (long long)rows,
                        (long long)cols);
    cce_quant_encoding *e = calloc(1, sizeof *e);
    if (!e) return cce_fail(CCE_ERR_NOMEM, "quant encoding: out of memory");
    e->spec = *q;
    e->rows = rows;
    e->cols = cols;
    e->n_groups = cce_quant_n_groups(q, rows, cols);
    e->groups_per_row = cce_quant_groups_per_row(q, cols);
    e->codes = calloc((size_t)cce_quant_packed_bytes(rows * cols, q->bits), 1);
    e->scales = calloc((size_t)e->n_groups, sizeof *e->scales);
    if (!q->symmetric) e->zeros = calloc((size_t)cce_quant_packed_bytes(e->n_groups, q->bits), 1);
    if (!e->codes || !e->scales || (!q->symmetric && !e->zeros)) {
        cce_quant_encoding_free(e);
        return cce_fail(CCE_ERR_NOMEM, "quant encoding: out of memory for [%lld, %lld]",
                        (long long)rows, (long long)cols);
    }
    *out = e;
    return CCE_OK;
}

void cce_quant_encoding_free(cce_quant_encoding *e) {
    if (!e) return;
    free(e->codes);
    free(e->scales);
    free(e->zeros);
    free(e);
}

/* The b-bit value i of a packed stream / sets it. */
static int stream_get(const uint8_t *p, int64_t i, int bits) {
    int64_t bit = i * bits;
    unsigned v = p[bit / 8] | (bit % 8 + bits > 8 ? (unsigned)p[bit / 8 + 1] << 8 : 0u);
    return (int)((v >> (bit % 8)) & ((1u << bits) - 1));
}

static void stream_set(uint8_t *p, int64_t i, int bits, int value) {
    int64_t bit = i * bits;
    unsigned mask = ((1u << bits) - 1) << (bit % 8), v = ((unsigned)value << (bit % 8)) & mask;
    p[bit / 8] = (uint8_t)((p[bit / 8] & ~mask) | v);
    if (bit % 8 + bits > 8) p[bit / 8 + 1] = (uint8_t)((p[bit / 8 + 1] & ~(mask >> 8)) | (v >> 8));
}

cce_quant_group cce_quant_encoding_group(const cce_quant_encoding *e, int64_t i) {
    cce_quant_group g;
    int bits = e->spec.bits;
    g.scale_h = e->scales[i];
    g.scale = cce_quant_half_to_float(g.scale_h);
    g.inv_scale = g.scale > 0.0f ? 1.0f / g.scale : 0.0f;
    g.maxq = (1 << bits) - 1;
    g.zero = e->spec.symmetric ? 1 << (bits - 1) : stream_get(e->zeros, i, bits);
    return g;
}

void cce_quant_encoding_set_group(cce_quant_encoding *e, int64_t i, const cce_quant_group *g) {
    e->scales[i] = g->scale_h;
    if (!e->spec.symmetric) stream_set(e->zeros, i, e->spec.bits, g->zero);
}

cce_status cce_quant_decode(const cce_quant_encoding *e, float *w) {
    int64_t rows = e->rows, cols = e->cols, gpr = e->groups_per_row;
    int64_t glen = e->spec.granularity == CCE_QUANT_GROUP ? e->spec.group : cols;
    uint8_t *codes = malloc((size_t)(rows * cols)); /* [rows, cols] */
    if (!codes)
        return cce_fail(CCE_ERR_NOMEM, "quant encoding: out of memory decoding [%lld, %lld]",
                        (long long)rows, (long long)cols);
    cce_quant_unpack(e->codes, rows * cols, e->spec.bits, codes);
    int threads = rows * cols >= PAR_MIN ? omp_get_max_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *rc = codes + r * cols; /* [cols] */
        float *row = w + r * cols;            /* [cols] */
        for (int64_t g0 = 0, k = 0; g0 < cols; g0 += glen, k++) {
            int64_t len = cols - g0 < glen ? cols - g0 : glen;
            cce_quant_group g = cce_quant_encoding_group(
                e, e->spec.granularity == CCE_QUANT_TENSOR ? 0 : r * gpr + k);
            const float z = (float)g.zero, sc = g.scale;
#pragma omp simd
            for (int64_t i = 0; i < len; i++) row[g0 + i] = ((float)rc[g0 + i] - z) * sc;
        }
    }
    free(codes);
    return CCE_OK;
}

/* ---- Round to nearest ------------------------------------------------------------------------ */

typedef struct failure {
    int kind; /* 0 none, 1 not finite, 2 scale beyond fp16 */
    int64_t row, group;
    float amax;
} failure;

static void note_failure(failure *f, int kind, int64_t row, int64_t group, float lo, float hi) {
#pragma omp critical(cce_quant_failure)
    if (!f->kind || row < f->row) {
        f->kind = kind;
        f->row = row;
        f->group = group;
        f->amax = -lo > hi ? -lo : hi;
    }
}

cce_status cce_quant_rtn(const cce_quant_spec *q, float *w, int64_t rows, int64_t cols,
                         const char *what, cce_quant_encoding *enc, double *err2) {
    cce_status s = cce_quant_spec_check(q, what);
    if (s) return s;
    if (enc && (enc->rows != rows || enc->cols != cols || enc->spec.bits != q->bits ||
                enc->spec.symmetric != q->symmetric || enc->spec.granularity != q->granularity ||
                (q->granularity == CCE_QUANT_GROUP && enc->spec.group != q->group)))
        return cce_fail(CCE_ERR_ARG, "%s: the encoding was made for another spec or shape", what);
    int64_t numel = rows * cols, gpr = cce_quant_groups_per_row(q, cols);
    int64_t glen = q->granularity == CCE_QUANT_GROUP ? q->group : cols;
    int threads = numel >= PAR_MIN ? omp_get_max_threads() : 1;
    cce_quant_group whole = {0};
    failure f = {0};
    double e2 = 0;
    if (q->granularity == CCE_QUANT_TENSOR) {
        float lo = 0, hi = 0;
        int ok = 1;
#pragma omp parallel for schedule(static) reduction(min : lo) reduction(max : hi)                 \
    reduction(&& : ok) num_threads(threads)
        for (int64_t r = 0; r < rows; r++) {
            float l, h;
            ok = range_of(w + r * cols, NULL, cols, &l, &h) && ok;
            lo = l < lo ? l : lo;
            hi = h > hi ? h : hi;
        }
        if (!ok) return cce_quant_range(w, NULL, numel, what, &lo, &hi);
        if ((s = cce_quant_group_params(q->bits, q->symmetric, lo, hi, what, &whole))) return s;
    }
    /* The codes for enc: 8-bit codes are their own packed stream, so they go straight into it;
     * rows that start on a byte boundary are packed one by one from a row buffer per thread;
     * otherwise all codes are packed at the end. */
    int direct = enc && q->bits == 8, by_row = enc && !direct && (cols * q->bits) % 8 == 0;
    uint8_t *codes = NULL; /* [threads, cols] row buffers (by_row) or [rows, cols] unpacked */
    cce_quant_group *params = NULL; /* [n_groups] for enc */
    if (enc) {
        size_t len = direct ? 1 : by_row ? (size_t)threads * (size_t)cols : (size_t)numel;
        codes = malloc(len);
        params = malloc((size_t)enc->n_groups * sizeof *params);
        if (!codes || !params) {
            free(codes);
            free(params);
            return cce_fail(CCE_ERR_NOMEM, "%s: out of memory for the codes", what);
        }
        if (q->granularity == CCE_QUANT_TENSOR) params[0] = whole;
    }
#pragma omp parallel for schedule(static) reduction(+ : e2) num_threads(threads)
    for (int64_t r = 0; r < rows; r++) {
        float *row = w + r * cols; /* [cols] */
        uint8_t *rc = !enc     ? NULL
                      : direct ? enc->codes + r * cols
                      : by_row ? codes + (size_t)omp_get_thread_num() * (size_t)cols
                               : codes + r * cols; /* [cols] */
        if (q->granularity == CCE_QUANT_TENSOR) {
            e2 += cce_quant_row(&whole, row, cols, rc);
            if (by_row) pack_run(rc, cols, q->bits, enc->codes + r * (cols * q->bits / 8));
            continue;
        }
        for (int64_t g0 = 0, k = 0; g0 < cols; g0 += glen, k++) {
            int64_t len = cols - g0 < glen ? cols - g0 : glen;
            float lo, hi;
            cce_quant_group g;
            if (!range_of(row + g0, NULL, len, &lo, &hi)) {
                note_failure(&f, 1, r, k, lo, hi);
                break;
            }
            if (!group_params(q->bits, q->symmetric, lo, hi, &g)) {
                note_failure(&f, 2, r, k, lo, hi);
                break;
            }
            if (params) params[r * gpr + k] = g;
            e2 += cce_quant_row(&g, row + g0, len, rc ? rc + g0 : NULL);
            if (by_row && g0 + len == cols)
                pack_run(rc, cols, q->bits, enc->codes + r * (cols * q->bits / 8));
        }
    }
    if (f.kind == 1) {
        s = cce_fail(CCE_ERR_NUMERIC, "%s: row %lld holds a NaN or infinite weight", what,
                     (long long)f.row);
    } else if (f.kind == 2) {
        s = cce_fail(CCE_ERR_RANGE,
                     "%s: row %lld group %lld: weights up to %g need a scale beyond fp16's "
                     "maximum 65504",
                     what, (long long)f.row, (long long)f.group, (double)f.amax);
    } else if (enc) {
        if (!direct && !by_row) cce_quant_pack(codes, numel, q->bits, enc->codes);
        for (int64_t i = 0; i < enc->n_groups; i++)
            cce_quant_encoding_set_group(enc, i, &params[i]);
    }
    free(codes);
    free(params);
    if (!s && err2) *err2 = e2;
    return s;
}

/* ---- Strategy parameters --------------------------------------------------------------------- */

const char *const cce_quant_granularity_choices[] = {"tensor", "channel", "group", NULL};

cce_status cce_quant_spec_from_params(const cce_params *p, const char *who, cce_quant_spec *q) {
    const char *gran = NULL;
    int index = CCE_QUANT_CHANNEL;
    cce_status s;
    if ((s = cce_params_get_bool(p, "symmetric", &q->symmetric))) return s;
    if (cce_params_has(p, "granularity") &&
        (s = cce_params_get_enum(p, "granularity", &gran, &index)))
        return s;
    q->granularity = (cce_quant_granularity)index;
    q->group = 128;
    if (cce_params_has(p, "group")) {
        if ((s = cce_params_get_int(p, "group", &q->group))) return s;
        if (!gran) {
            q->granularity = CCE_QUANT_GROUP;
        } else if (q->granularity != CCE_QUANT_GROUP) {
            return cce_fail(CCE_ERR_ARG,
                            "%s: group = %lld needs granularity = group, not granularity = %s", who,
                            (long long)q->group, gran);
        }
    }
    if (q->granularity != CCE_QUANT_GROUP) q->group = 0;
    return CCE_OK;
}
