/* Numerical kernels of the Llama forward pass (see kernels.h). */
#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>
#include <strings.h>

/* glibc's libmvec has vector variants of expf (_ZGVeN16v_expf, ...), but math.h declares them
 * only under -ffast-math. Declaring the simd attribute here lets `#pragma omp simd` loops call
 * them: about 6x faster than scalar expf, within a few ulp. */
#if defined(__GLIBC__) && defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((__simd__("notinbranch"))) float expf(float);
#endif

/* Below this many floats of work a loop runs on the calling thread: forking a team costs more
 * than it saves. */
#define PARALLEL_MIN_WORK 32768

void cce_linear(float *y, const float *x, const float *w, int rows, int in, int out, float beta) {
    if (rows <= 0 || out <= 0) return;
    if (in <= 0) {
        /* An empty product: y = beta * y. */
        for (int64_t i = 0; i < (int64_t)rows * out; i++) y[i] = beta == 0.0f ? 0.0f : beta * y[i];
        return;
    }
    if (rows == 1) {
        /* beta = 0: zeroed here and accumulated into, since OpenBLAS would first scale y by zero
         * in a call of its own (per GEMV; decoding makes about a hundred a token). */
        if (beta == 0.0f) {
            memset(y, 0, sizeof(float) * (size_t)out);
            beta = 1.0f;
        }
        cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w, in, x, 1, beta, y, 1);
        return;
    }
    /* y [rows, out] = x [rows, in] * w^T [in, out] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, in, 1.0f, x, in, w, in, beta, y,
                out);
}

const char *cce_blas_corename(void) {
    const char *name = openblas_get_corename();
    return name && *name ? name : "unknown";
}

const char *cce_blas_preferred_coretype(void) {
    static const char *const generic[] = {"Prescott",  "Core2",  "Penryn",      "Dunnington",
                                          "Nehalem",   "Atom",   "Sandybridge", "Katmai",
                                          "Northwood", "Banias", NULL};
    const char *core = cce_blas_corename();
    int is_generic = 0;
    for (int i = 0; generic[i]; i++)
        if (!strcasecmp(core, generic[i])) is_generic = 1;
    if (!is_generic) return NULL;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
    return NULL;
}

void cce_gemv(float *y, const float *w, const float *x, int out, int in, float beta) {
    cce_linear(y, x, w, 1, in, out, beta);
}

void cce_gemv_transposed(float *y, const float *w, const float *x, int rows, int cols) {
    if (cols <= 0) return;
    memset(y, 0, sizeof(float) * (size_t)cols); /* then accumulated into, as in cce_linear */
    if (rows > 0)
        cblas_sgemv(CblasRowMajor, CblasTrans, rows, cols, 1.0f, w, cols, x, 1, 1.0f, y, 1);
}

static void rmsnorm_row(float *out, const float *x, const float *w, int dim, float eps) {
    double ss = 0.0;
#pragma omp simd reduction(+ : ss)
    for (int i = 0; i < dim; i++) ss += (double)x[i] * (double)x[i];
    float inv = (float)(1.0 / sqrt(ss / dim + (double)eps));
#pragma omp simd
    for (int i = 0; i < dim; i++) out[i] = x[i] * inv * w[i];
}

void cce_rmsnorm(float *out, const float *x, const float *w, int rows, int dim, float eps) {
#pragma omp parallel for schedule(static) if ((int64_t)rows * dim >= PARALLEL_MIN_WORK)
    for (int r = 0; r < rows; r++)
        rmsnorm_row(out + (int64_t)r * dim, x + (int64_t)r * dim, w, dim, eps);
}

void cce_rope_tables(float *cos_tab, float *sin_tab, int n_pos, int head_dim, double theta) {
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        double freq = pow(theta, -2.0 * i / head_dim);
        for (int p = 0; p < n_pos; p++) {
            double a = p * freq;
            cos_tab[(int64_t)p * half + i] = (float)cos(a);
            sin_tab[(int64_t)p * half + i] = (float)sin(a);
        }
    }
}

void cce_rope_apply(float *x, int rows, int ld, int n_heads, int head_dim, int pos0,
                    const float *cos_tab, const float *sin_tab) {
    int half = head_dim / 2;
#pragma omp parallel for schedule(static) if ((int64_t)rows * n_heads * head_dim >=                \
                                              PARALLEL_MIN_WORK)
    for (int r = 0; r < rows; r++) {
        const float *c = cos_tab + (int64_t)(pos0 + r) * half; /* [half] */
        const float *s = sin_tab + (int64_t)(pos0 + r) * half; /* [half] */
        for (int h = 0; h < n_heads; h++) {
            float *a = x + (int64_t)r * ld + (int64_t)h * head_dim; /* [half] first halves */
            float *b = a + half;                                    /* [half] second halves */
#pragma omp simd
            for (int i = 0; i < half; i++) {
                float ai = a[i], bi = b[i];
                a[i] = ai * c[i] - bi * s[i];
                b[i] = ai * s[i] + bi * c[i];
            }
        }
    }
}

/* softmax(scale * x[0..n-1]) in place. */
static void softmax_scaled(float *x, int n, float scale) {
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    mx *= scale;
#pragma omp simd
    for (int i = 0; i < n; i++) x[i] = expf(x[i] * scale - mx);
    float sum = 0.0f; /* terms in (0, 1], summed in 16 vector lanes */
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < n; i++) sum += x[i];
    float inv = 1.0f / sum;
#pragma omp simd
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void cce_softmax(float *x, int n) {
    softmax_scaled(x, n, 1.0f);
}

void cce_softmax_causal(float *s, int rows, int ld, int n_keys, int q0, float scale) {
#pragma omp parallel for schedule(static) if ((int64_t)rows * n_keys >= PARALLEL_MIN_WORK)
    for (int r = 0; r < rows; r++) {
        float *row = s + (int64_t)r * ld; /* [n_keys] */
        int n = q0 + r + 1;
        softmax_scaled(row, n, scale);
        if (n < n_keys) memset(row + n, 0, sizeof(float) * (size_t)(n_keys - n));
    }
}

/* SwiGLU runs in parallel from a much smaller size: in decoding, gate and up were just written
 * by both BLAS threads, and a static split keeps each half on the core that wrote it (measured:
 * 768 elements take half the time on two threads). */
#define SWIGLU_PARALLEL_MIN 512

void cce_swiglu(float *gate, const float *up, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= SWIGLU_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

/* The largest of x[0, n) (NaN compares false and is skipped; -INFINITY if there is none). */
static float max_of(const float *x, int n) {
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}

int cce_argmax(const float *x, int n) {
    /* One vectorised pass over blocks, keeping each block's maximum, then a scalar search of the
     * first block that holds the overall maximum for its first index: at a vocabulary of 32000
     * that halves the cost of a decoding step's argmax against a scalar search from the start. */
    enum { BLOCK = 512, MAX_BLOCKS = 256 };
    if (n <= 0) return 0;
    int step = BLOCK;
    while ((n + step - 1) / step > MAX_BLOCKS) step *= 2;
    int n_blocks = (n + step - 1) / step;
    float block_max[MAX_BLOCKS], mx = -INFINITY;
    for (int b = 0; b < n_blocks; b++) {
        int i0 = b * step, len = n - i0 < step ? n - i0 : step;
        block_max[b] = max_of(x + i0, len);
        if (block_max[b] > mx) mx = block_max[b];
    }
    for (int b = 0; b < n_blocks; b++) {
        if (block_max[b] != mx) continue;
        int end = n - b * step < step ? n : (b + 1) * step;
        for (int i = b * step; i < end; i++)
            if (x[i] == mx) return i;
    }
    return 0; /* every element is NaN or -Inf */
}

void cce_add_bias(float *y, const float *b, int rows, int cols) {
    if (rows <= 0 || cols <= 0) return;
#pragma omp parallel for schedule(static) if ((int64_t)rows * cols >= PARALLEL_MIN_WORK)
    for (int r = 0; r < rows; r++) {
        float *yr = y + (size_t)r * (size_t)cols; /* [cols] */
#pragma omp simd
        for (int c = 0; c < cols; c++) yr[c] += b[c];
    }
}
