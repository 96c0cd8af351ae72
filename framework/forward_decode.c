/* KV-cache decoding: one token at a time. A step is one OpenMP region (block_team) in which the
 * threads share out the rows of every projection (cblas_sgemv on each piece; the weights are
 * streamed once per token, q/k/v and gate/up each packed into one matrix, see decode_prepare) and
 * the heads of attention over the cached keys (transposed, see forward_internal.h) and values.
 * Layers with low-rank tensors run projection by projection instead (block_token). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "forward_internal.h"
#include "kernels.h"

/* glibc's libmvec has vector variants of expf, but math.h declares them only under -ffast-math;
 * the simd attribute lets the `#pragma omp simd` SwiGLU loop below call them (as kernels.c does).
 */
#if defined(__GLIBC__) && defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((__simd__("notinbranch"))) float expf(float);
#endif

/* Below this many multiply-adds the heads run on the calling thread. */
#define DECODE_PARALLEL_MIN 4096

/* att [n] = scale * q kt[:, 0..n): the head's scores, vectorised over positions, four key
 * dimensions per pass. q [hd], kt [hd][ldk]. */
static void scores_token(float *att, const float *q, const float *kt, int ldk, int hd, int n,
                         float scale) {
#pragma omp simd
    for (int t = 0; t < n; t++) att[t] = 0.0f;
    int d = 0;
    for (; d + 4 <= hd; d += 4) {
        const float *k0 = kt + (size_t)d * ldk, *k1 = k0 + ldk, *k2 = k1 + ldk, *k3 = k2 + ldk;
        float q0 = scale * q[d], q1 = scale * q[d + 1], q2 = scale * q[d + 2],
              q3 = scale * q[d + 3];
#pragma omp simd
        for (int t = 0; t < n; t++)
            att[t] = fmaf(q0, k0[t], fmaf(q1, k1[t], fmaf(q2, k2[t], fmaf(q3, k3[t], att[t]))));
    }
    for (; d < hd; d++) {
        const float *k0 = kt + (size_t)d * ldk;
        float q0 = scale * q[d];
#pragma omp simd
        for (int t = 0; t < n; t++) att[t] = fmaf(q0, k0[t], att[t]);
    }
}

/* o[d0 .. d0+w) = sum over t < n of p[t] v[t][d0 .. d0+w), with four independent accumulators
 * (positions t mod 4) so that the multiply-adds do not wait on each other. Inlined with a
 * constant w (16 or 8) the accumulators stay in registers. v: row stride ldv. */
static inline void values_token_chunk(float *o, const float *p, const float *v, int ldv, int n,
                                      int d0, int w) {
    float acc[4][16] = {{0}};
    int t = 0;
    for (; t + 4 <= n; t += 4)
        for (int k = 0; k < 4; k++) {
            const float *vt = v + (size_t)(t + k) * ldv + d0; /* [w] */
            float pk = p[t + k];
#pragma omp simd
            for (int c = 0; c < w; c++) acc[k][c] = fmaf(pk, vt[c], acc[k][c]);
        }
    for (; t < n; t++) {
        const float *vt = v + (size_t)t * ldv + d0;
#pragma omp simd
        for (int c = 0; c < w; c++) acc[0][c] = fmaf(p[t], vt[c], acc[0][c]);
    }
#pragma omp simd
    for (int c = 0; c < w; c++) o[d0 + c] = (acc[0][c] + acc[1][c]) + (acc[2][c] + acc[3][c]);
}

/* o [hd] = p [n] times v [n, hd] (row stride ldv). */
static void values_token(float *o, const float *p, const float *v, int ldv, int hd, int n) {
    int d0 = 0;
    for (; d0 + 16 <= hd; d0 += 16) values_token_chunk(o, p, v, ldv, n, d0, 16);
    if (d0 + 8 <= hd) {
        values_token_chunk(o, p, v, ldv, n, d0, 8);
        d0 += 8;
    }
    if (d0 < hd) values_token_chunk(o, p, v, ldv, n, d0, hd - d0);
}

/* Stores the new key k [kv_dim] (RoPE applied) at position pos of the transposed key cache, then
 * o [q_dim] from q [q_dim] and cache positions 0..pos. Both loops split the same way over the
 * threads (kv rows, then heads), so each thread mostly reads the cache lines it just wrote. */
static void attention_token(cce_forward *f, const fwd_layer *L, const float *q, const float *k,
                            int pos) {
    int hd = f->cfg.head_dim, n = pos + 1, ldk = f->kv_ld;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel if ((int64_t)L->n_heads * n * hd >= DECODE_PARALLEL_MIN)
    {
#pragma omp for schedule(static)
        for (int r = 0; r < L->kv_dim; r++) L->kt_cache[(size_t)r * ldk + pos] = k[r];
#pragma omp for schedule(static)
        for (int h = 0; h < L->n_heads; h++) {
            int g = L->kv_of_head[h];
            const float *kt = L->kt_cache + (size_t)g * hd * ldk; /* [hd][ldk] */
            const float *vh = L->v_cache + (size_t)g * hd;        /* [n, hd] with stride kv_dim */
            float *att = f->att + (size_t)h * (size_t)ldk;        /* [n] */
            float *oh = f->o + (size_t)h * hd;                    /* [hd] */
            scores_token(att, q + (size_t)h * hd, kt, ldk, hd, n, scale);
            cce_softmax(att, n);
            values_token(oh, att, vh, L->kv_dim, hd, n);
        }
    }
}

/* The small per-token kernels run on the calling thread: at one row, forking a team costs more
 * than the work. Same arithmetic as cce_rmsnorm and cce_rope_apply, so decoding matches windows. */
static void rmsnorm_token(float *out, const float *x, const float *w, int dim, float eps) {
    double ss = 0.0;
#pragma omp simd reduction(+ : ss)
    for (int i = 0; i < dim; i++) ss += (double)x[i] * (double)x[i];
    float inv = (float)(1.0 / sqrt(ss / dim + (double)eps));
#pragma omp simd
    for (int i = 0; i < dim; i++) out[i] = x[i] * inv * w[i];
}

/* x [n_heads * head_dim] rotated in place at position pos (rotate-half). */
static void rope_token(float *x, int n_heads, int head_dim, const float *cos_row,
                       const float *sin_row) {
    int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *a = x + (size_t)h * head_dim; /* [half] first halves */
        float *b = a + half;                 /* [half] second halves */
#pragma omp simd
        for (int i = 0; i < half; i++) {
            float ai = a[i], bi = b[i];
            a[i] = ai * cos_row[i] - bi * sin_row[i];
            b[i] = ai * sin_row[i] + bi * cos_row[i];
        }
    }
}

/* gate [n] = silu(gate) * up [n], as cce_swiglu but on the calling thread (at one token the
 * fork/join of a team cost more than the loop: about 1.7 us against 0.3 us at n = 768). */
static void swiglu_token(float *gate, const float *up, int n) {
#pragma omp simd
    for (int i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

/* Copies rows [0, rows) of w [rows, cols] to dst; returns the float after them. */
static float *pack_rows(float *dst, const float *w, int rows, int cols) {
    size_t n = (size_t)rows * (size_t)cols;
    if (n) memcpy(dst, w, sizeof(float) * n);
    return dst + n;
}

/* Whether a layer's q/k/v (or gate/up) are packed: present and none of them lowrank. */
static int packs_qkv(const fwd_layer *L) {
    return L->n_heads > 0 && !L->lr[CCE_LT_Q].a && !L->lr[CCE_LT_K].a && !L->lr[CCE_LT_V].a;
}

static int packs_gu(const fwd_layer *L) {
    return L->hidden_dim > 0 && !L->lr[CCE_LT_GATE].a && !L->lr[CCE_LT_UP].a;
}

static int has_qkv_bias(const fwd_layer *L) {
    return L->bias[CCE_LB_Q] || L->bias[CCE_LB_K] || L->bias[CCE_LB_V];
}

static int has_gu_bias(const fwd_layer *L) {
    return L->bias[CCE_LB_GATE] || L->bias[CCE_LB_UP];
}

/* Copies a bias [n] to dst, or zeros when it is absent; returns the float after it. */
static float *pack_bias(float *dst, const float *b, int n) {
    if (n <= 0) return dst;
    if (b)
        memcpy(dst, b, sizeof(float) * (size_t)n);
    else
        memset(dst, 0, sizeof(float) * (size_t)n);
    return dst + n;
}

/* Allocates the decoding state on first use: the fused q/k/v and gate/up matrices (see
 * forward_internal.h for their memory cost) with their fused biases, and their output buffers. */
static cce_status decode_prepare(cce_forward *f) {
    if (f->packed) return CCE_OK;
    const cce_config *c = &f->cfg;
    size_t dim = (size_t)c->dim, total = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const fwd_layer *L = &f->layers[l];
        if (L->removed) continue;
        size_t qkv_rows = (size_t)L->q_dim + 2 * (size_t)L->kv_dim,
               gu_rows = 2 * (size_t)L->hidden_dim;
        if (packs_qkv(L)) total += qkv_rows * dim + (has_qkv_bias(L) ? qkv_rows : 0);
        if (packs_gu(L)) total += gu_rows * dim + (has_gu_bias(L) ? gu_rows : 0);
    }
    float *packed = cce_floats_alloc(total, 0);
    float *qkv = malloc(sizeof(float) * ((size_t)f->max_q_dim + 2 * (size_t)f->max_kv_dim + 1));
    float *gu = malloc(sizeof(float) * (2 * (size_t)f->max_hidden + 1));
    int nth = omp_get_max_threads();
    float *xn = malloc(sizeof(float) * (size_t)nth * dim);
    int *next = malloc(sizeof(int) * (4 * (size_t)c->n_layers + 1));
    if (!packed || !qkv || !gu || !xn || !next) {
        free(packed);
        free(qkv);
        free(gu);
        free(xn);
        free(next);
        return cce_fail(CCE_ERR_NOMEM,
                        "forward token: fused q/k/v and gate/up weights (%zu floats)", total);
    }
    float *p = packed;
    for (int l = 0; l < c->n_layers; l++) {
        fwd_layer *L = &f->layers[l];
        L->wqkv = L->wgu = L->bqkv = L->bgu = NULL;
        if (L->removed) continue;
        if (packs_qkv(L)) {
            L->wqkv = p;
            p = pack_rows(p, L->wq, L->q_dim, c->dim);
            p = pack_rows(p, L->wk, L->kv_dim, c->dim);
            p = pack_rows(p, L->wv, L->kv_dim, c->dim);
            if (has_qkv_bias(L)) {
                L->bqkv = p;
                p = pack_bias(p, L->bias[CCE_LB_Q], L->q_dim);
                p = pack_bias(p, L->bias[CCE_LB_K], L->kv_dim);
                p = pack_bias(p, L->bias[CCE_LB_V], L->kv_dim);
            }
        }
        if (packs_gu(L)) {
            L->wgu = p;
            p = pack_rows(p, L->wg, L->hidden_dim, c->dim);
            p = pack_rows(p, L->wu, L->hidden_dim, c->dim);
            if (has_gu_bias(L)) {
                L->bgu = p;
                p = pack_bias(p, L->bias[CCE_LB_GATE], L->hidden_dim);
                p = pack_bias(p, L->bias[CCE_LB_UP], L->hidden_dim);
            }
        }
    }
    f->packed = packed;
    f->dec_qkv = qkv;
    f->dec_gu = gu;
    f->dec_xn = xn;
    f->dec_next = next;
    f->dec_threads = nth;
    return CCE_OK;
}

/* The smallest piece of rows a thread takes at once (one cblas_sgemv call each). */
#define TEAM_MIN_ROWS 32

/* Hands out rows [lo, hi) of n to the calling thread, from the shared counter *next (zeroed before
 * the step): pieces of a multiple of 16 rows (whole cache lines of output), shrinking as the rows
 * run out, so that a thread that runs ahead takes more; on a shared machine the two cores rarely
 * run at the same speed, and a fixed split left the faster one waiting at each barrier. Returns 0
 * when no rows are left. */
static int take_rows(int *next, int n, int nth, int *lo, int *hi) {
    int seen;
#pragma omp atomic read
    seen = *next;
    if (seen >= n) return 0;
    int piece = (n - seen) / (2 * nth);
    piece = (piece + 15) / 16 * 16;
    if (piece < TEAM_MIN_ROWS) piece = TEAM_MIN_ROWS;
    int start;
#pragma omp atomic capture
    {
        start = *next;
        *next += piece;
    }
    if (start >= n) return 0;
    *lo = start;
    *hi = start + piece < n ? start + piece : n;
    return 1;
}

/* y[lo, hi) = W[lo, hi) x + beta y[lo, hi) with W [.., in]: one thread's rows. Inside a parallel
 * region OpenBLAS runs on the calling thread. */
static void gemv_rows(float *y, const float *w, const float *x, int lo, int hi, int in,
                      float beta) {
    if (hi > lo) cce_gemv(y + lo, w + (size_t)lo * in, x, hi - lo, in, beta);
}

/* y[lo, hi) += b[lo, hi) (nothing when b is NULL): the bias of one thread's rows, added right
 * after their product, so it needs no barrier of its own. */
static inline void bias_rows(float *y, const float *b, int lo, int hi) {
    if (!b) return;
#pragma omp simd
    for (int i = lo; i < hi; i++) y[i] += b[i];
}

/* Whether a layer runs as one team region: its q/k/v and gate/up packed, o and down dense. */
static int team_layer(const fwd_layer *L) {
    return (L->n_heads == 0 || (L->wqkv && !L->lr[CCE_LT_O].a)) &&
           (L->hidden_dim == 0 || (L->wgu && !L->lr[CCE_LT_DOWN].a));
}

/* One layer, called by every thread of a parallel region; returns after a barrier. A fork/join per
 * GEMV (what BLAS threading does) costs the threads' wake-up each time; here the threads take
 * pieces of each projection's rows (take_rows), the kv heads and the query heads, with a barrier
 * only where a step reads what other threads wrote. Each thread normalises h into its own buffer,
 * which costs less than a barrier. The arithmetic per row is the same as block_token's. */
static void block_team(cce_forward *f, const fwd_layer *L, int pos) {
    const cce_config *c = &f->cfg;
    int dim = c->dim, hd = c->head_dim, half = hd / 2, n = pos + 1, ldk = f->kv_ld;
    float eps = c->norm_eps, scale = 1.0f / sqrtf((float)hd);
    const float *cs = f->cos_tab + (size_t)pos * half, *sn = f->sin_tab + (size_t)pos * half;
    float *q = f->dec_qkv;                         /* [q_dim] */
    float *k = q + L->q_dim;                       /* [kv_dim] */
    float *v = k + L->kv_dim;                      /* [kv_dim] */
    float *g = f->dec_gu, *u = g + L->hidden_dim;  /* [hidden] each */
    int *next = f->dec_next + 4 * (L - f->layers); /* [4] row counters: qkv, o, gate/up, down */
    {
        int tid = omp_get_thread_num(), nth = omp_get_num_threads(), lo, hi;
        float *xn = f->dec_xn + (size_t)tid * dim; /* [dim] */
        /* A query head goes to the thread that stores its kv head, so attention needs no barrier
         * after the stores, unless there are fewer kv heads than threads. */
        int by_group = L->n_kv_heads >= nth;
        if (L->n_heads > 0) {
            rmsnorm_token(xn, f->h, L->attn_norm, dim, eps);
            while (take_rows(&next[0], L->q_dim + 2 * L->kv_dim, nth, &lo, &hi)) {
                gemv_rows(q, L->wqkv, xn, lo, hi, dim, 0.0f);
                bias_rows(q, L->bqkv, lo, hi); /* before RoPE */
            }
#pragma omp barrier
            for (int gi = tid; gi < L->n_kv_heads; gi += nth) {
                float *kg = k + (size_t)gi * hd; /* [hd] */
                rope_token(kg, 1, hd, cs, sn);
                for (int d = 0; d < hd; d++) L->kt_cache[(size_t)(gi * hd + d) * ldk + pos] = kg[d];
                memcpy(L->v_cache + (size_t)pos * L->kv_dim + (size_t)gi * hd, v + (size_t)gi * hd,
                       sizeof(float) * (size_t)hd);
            }
            if (!by_group) {
#pragma omp barrier
            }
            for (int h = 0; h < L->n_heads; h++) {
                int gi = L->kv_of_head[h];
                if ((by_group ? gi : h) % nth != tid) continue;
                float *qh = q + (size_t)h * hd; /* [hd] */
                rope_token(qh, 1, hd, cs, sn);
                const float *kt = L->kt_cache + (size_t)gi * hd * ldk; /* [hd][ldk] */
                const float *vh = L->v_cache + (size_t)gi * hd;        /* [n, hd], stride kv_dim */
                float *att = f->att + (size_t)h * (size_t)ldk;         /* [n] */
                scores_token(att, qh, kt, ldk, hd, n, scale);
                cce_softmax(att, n);
                values_token(f->o + (size_t)h * hd, att, vh, L->kv_dim, hd, n);
            }
#pragma omp barrier
            while (take_rows(&next[1], dim, nth, &lo, &hi)) {
                gemv_rows(f->h, L->wo, f->o, lo, hi, L->q_dim, 1.0f); /* h += Wo o */
                bias_rows(f->h, L->bias[CCE_LB_O], lo, hi);
            }
#pragma omp barrier
        }
        if (L->hidden_dim > 0) {
            rmsnorm_token(xn, f->h, L->ffn_norm, dim, eps);
            while (take_rows(&next[2], L->hidden_dim, nth, &lo, &hi)) {
                gemv_rows(g, L->wgu, xn, lo, hi, dim, 0.0f);
                gemv_rows(u, L->wgu + (size_t)L->hidden_dim * dim, xn, lo, hi, dim, 0.0f);
                if (L->bgu) {
                    bias_rows(g, L->bgu, lo, hi);
                    bias_rows(u, L->bgu + L->hidden_dim, lo, hi);
                }
                swiglu_token(g + lo, u + lo, hi - lo);
            }
#pragma omp barrier
            while (take_rows(&next[3], dim, nth, &lo, &hi)) {
                gemv_rows(f->h, L->wd, g, lo, hi, L->hidden_dim, 1.0f); /* h += Wd a */
                bias_rows(f->h, L->bias[CCE_LB_DOWN], lo, hi);
            }
        }
    }
#pragma omp barrier
}

/* logits [vocab] = classifier times rmsnorm(h), the rows split over the team (dense only). Called
 * by every thread of a team. */
static void classifier_team(cce_forward *f, float *logits) {
    const cce_config *c = &f->cfg;
    {
        int tid = omp_get_thread_num(), nth = omp_get_num_threads(), lo, hi;
        float *xn = f->dec_xn + (size_t)tid * c->dim; /* [dim] */
        rmsnorm_token(xn, f->h, f->final_norm, c->dim, c->norm_eps);
        while (take_rows(&f->dec_next[4 * c->n_layers], c->vocab_size, nth, &lo, &hi))
            gemv_rows(logits, f->cls, xn, lo, hi, c->dim, 0.0f);
    }
}

static void block_token(cce_forward *f, const fwd_layer *L, int pos) {
    const cce_config *c = &f->cfg;
    int dim = c->dim, half = c->head_dim / 2;
    if (L->removed) return;
    if (L->n_heads > 0) {
        rmsnorm_token(f->x, f->h, L->attn_norm, dim, c->norm_eps);
        float *q = f->dec_qkv;    /* [q_dim] */
        float *k = q + L->q_dim;  /* [kv_dim] */
        float *v = k + L->kv_dim; /* [kv_dim] */
        if (L->wqkv) {
            cce_gemv(q, L->wqkv, f->x, L->q_dim + 2 * L->kv_dim, dim, 0.0f);
            bias_rows(q, L->bqkv, 0, L->q_dim + 2 * L->kv_dim);
        } else {
            cce_forward_gemv(f, &L->lr[CCE_LT_Q], L->wq, L->bias[CCE_LB_Q], q, f->x, L->q_dim, dim,
                             0.0f);
            cce_forward_gemv(f, &L->lr[CCE_LT_K], L->wk, L->bias[CCE_LB_K], k, f->x, L->kv_dim, dim,
                             0.0f);
            cce_forward_gemv(f, &L->lr[CCE_LT_V], L->wv, L->bias[CCE_LB_V], v, f->x, L->kv_dim, dim,
                             0.0f);
        }
        const float *cs = f->cos_tab + (size_t)pos * half, *sn = f->sin_tab + (size_t)pos * half;
        rope_token(q, L->n_heads, c->head_dim, cs, sn);
        rope_token(k, L->n_kv_heads, c->head_dim, cs, sn);
        memcpy(L->v_cache + (size_t)pos * L->kv_dim, v, sizeof(float) * (size_t)L->kv_dim);
        attention_token(f, L, q, k, pos);
        cce_forward_gemv(f, &L->lr[CCE_LT_O], L->wo, L->bias[CCE_LB_O], f->h, f->o, dim, L->q_dim,
                         1.0f); /* h += Wo o (+ bo) */
    }
    if (L->hidden_dim > 0) {
        rmsnorm_token(f->x, f->h, L->ffn_norm, dim, c->norm_eps);
        float *g = f->dec_gu, *u = g + L->hidden_dim; /* [hidden] each */
        if (L->wgu) {
            cce_gemv(g, L->wgu, f->x, 2 * L->hidden_dim, dim, 0.0f);
            bias_rows(g, L->bgu, 0, 2 * L->hidden_dim);
        } else {
            cce_forward_gemv(f, &L->lr[CCE_LT_GATE], L->wg, L->bias[CCE_LB_GATE], g, f->x,
                             L->hidden_dim, dim, 0.0f);
            cce_forward_gemv(f, &L->lr[CCE_LT_UP], L->wu, L->bias[CCE_LB_UP], u, f->x,
                             L->hidden_dim, dim, 0.0f);
        }
        swiglu_token(g, u, L->hidden_dim);
        cce_forward_gemv(f, &L->lr[CCE_LT_DOWN], L->wd, L->bias[CCE_LB_DOWN], f->h, g, dim,
                         L->hidden_dim, 1.0f); /* h += Wd a (+ bd) */
    }
}

cce_status cce_forward_token(cce_forward *f, int32_t token, int pos, float *logits) {
    if (!f || !logits) return cce_fail(CCE_ERR_ARG, "forward token: NULL argument");
    const cce_config *c = &f->cfg;
    cce_status s = cce_forward_check_token(f, token, pos);
    if (s) return s;
    if (pos < 0 || pos >= c->seq_len)
        return cce_fail(CCE_ERR_RANGE, "forward token: position %d is outside [0, %d) (seq_len)",
                        pos, (int)c->seq_len);
    if (pos != 0 && pos != f->next_pos)
        return cce_fail(CCE_ERR_ARG,
                        "forward token: position %d does not follow the cached sequence (next "
                        "position is %d; 0 restarts)",
                        pos, f->next_pos);
    if ((s = decode_prepare(f))) return s;
    int dim = c->dim;
    memset(f->dec_next, 0, sizeof(int) * (4 * (size_t)c->n_layers + 1));
    memcpy(f->h, f->embed + (size_t)token * dim, sizeof(float) * dim);
    int all_team = !f->cls_lr.a;
    for (int l = 0; l < c->n_layers; l++)
        if (!f->layers[l].removed && !team_layer(&f->layers[l])) all_team = 0;
    if (all_team) {
        /* The whole step in one region: one wake-up of the threads per token. */
#pragma omp parallel num_threads(f->dec_threads)
        {
            for (int l = 0; l < c->n_layers; l++)
                if (!f->layers[l].removed) block_team(f, &f->layers[l], pos);
            classifier_team(f, logits);
        }
        f->next_pos = pos + 1;
        return CCE_OK;
    }
    for (int l = 0; l < c->n_layers; l++) {
        const fwd_layer *L = &f->layers[l];
        if (L->removed) continue;
        if (team_layer(L)) {
#pragma omp parallel num_threads(f->dec_threads)
            block_team(f, L, pos);
        } else {
            block_token(f, L, pos);
        }
    }
    if (!f->cls_lr.a) {
#pragma omp parallel num_threads(f->dec_threads)
        classifier_team(f, logits);
    } else {
        rmsnorm_token(f->x, f->h, f->final_norm, dim, c->norm_eps);
        cce_forward_gemv(f, &f->cls_lr, f->cls, NULL, logits, f->x, c->vocab_size, dim, 0.0f);
    }
    f->next_pos = pos + 1;
    return CCE_OK;
}

/* Appends one buffer to the list if there is room; counts it either way. */
static void list_buffer(const float **ptr, int64_t *numel, int capacity, int *k, const float *p,
                        int64_t n) {
    if (!p || n <= 0) return;
    if (*k < capacity) {
        ptr[*k] = p;
        numel[*k] = n;
    }
    (*k)++;
}

/* A linear tensor as decoding reads it: its lowrank factors, or the dense matrix [out, in]. */
static void list_linear(const float **ptr, int64_t *numel, int capacity, int *k,
                        const fwd_lowrank *lr, const float *w, int out, int in) {
    if (lr->a) {
        list_buffer(ptr, numel, capacity, k, lr->a, (int64_t)out * lr->rank);
        list_buffer(ptr, numel, capacity, k, lr->b, (int64_t)lr->rank * in);
    } else {
        list_buffer(ptr, numel, capacity, k, w, (int64_t)out * in);
    }
}

cce_status cce_forward_decode_buffers(cce_forward *f, const float **ptr, int64_t *numel,
                                      int capacity, int *count) {
    if (!f || !count || capacity < 0 || (capacity > 0 && (!ptr || !numel)))
        return cce_fail(CCE_ERR_ARG, "forward decode buffers: bad argument");
    cce_status s = decode_prepare(f);
    if (s) return s;
    const cce_config *c = &f->cfg;
    int dim = c->dim, k = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const fwd_layer *L = &f->layers[l];
        if (L->removed) continue;
        if (L->n_heads > 0) {
            list_buffer(ptr, numel, capacity, &k, L->attn_norm, dim);
            if (L->wqkv) {
                list_buffer(ptr, numel, capacity, &k, L->wqkv,
                            (int64_t)(L->q_dim + 2 * L->kv_dim) * dim);
                list_buffer(ptr, numel, capacity, &k, L->bqkv, L->q_dim + 2 * L->kv_dim);
            } else {
                list_linear(ptr, numel, capacity, &k, &L->lr[CCE_LT_Q], L->wq, L->q_dim, dim);
                list_linear(ptr, numel, capacity, &k, &L->lr[CCE_LT_K], L->wk, L->kv_dim, dim);
                list_linear(ptr, numel, capacity, &k, &L->lr[CCE_LT_V], L->wv, L->kv_dim, dim);
                list_buffer(ptr, numel, capacity, &k, L->bias[CCE_LB_Q], L->q_dim);
                list_buffer(ptr, numel, capacity, &k, L->bias[CCE_LB_K], L->kv_dim);
                list_buffer(ptr, numel, capacity, &k, L->bias[CCE_LB_V], L->kv_dim);
            }
            list_linear(ptr, numel, capacity, &k, &L->lr[CCE_LT_O], L->wo, dim, L->q_dim);
            list_buffer(ptr, numel, capacity, &k, L->bias[CCE_LB_O], dim);
        }
        if (L->hidden_dim > 0) {
            list_buffer(ptr, numel, capacity, &k, L->ffn_norm, dim);
            if (L->wgu) {
                list_buffer(ptr, numel, capacity, &k, L->wgu, (int64_t)2 * L->hidden_dim * dim);
                list_buffer(ptr, numel, capacity, &k, L->bgu, 2 * L->hidden_dim);
            } else {
                list_linear(ptr, numel, capacity, &k, &L->lr[CCE_LT_GATE], L->wg, L->hidden_dim,
                            dim);
                list_linear(ptr, numel, capacity, &k, &L->lr[CCE_LT_UP], L->wu, L->hidden_dim, dim);
                list_buffer(ptr, numel, capacity, &k, L->bias[CCE_LB_GATE], L->hidden_dim);
                list_buffer(ptr, numel, capacity, &k, L->bias[CCE_LB_UP], L->hidden_dim);
            }
            list_linear(ptr, numel, capacity, &k, &L->lr[CCE_LT_DOWN], L->wd, dim, L->hidden_dim);
            list_buffer(ptr, numel, capacity, &k, L->bias[CCE_LB_DOWN], dim);
        }
    }
    list_buffer(ptr, numel, capacity, &k, f->final_norm, dim);
    list_linear(ptr, numel, capacity, &k, &f->cls_lr, f->cls, c->vocab_size, dim);
    *count = k;
    return CCE_OK;
}
