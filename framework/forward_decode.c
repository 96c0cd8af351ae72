/* KV-cache decoding: one token at a time. A step is one OpenMP region in which the threads share
 * out every layer's kv groups (each group: one GEMV for its q/k/v rows, its key and value stored,
 * its query heads run over the cache, and each head's share of the residual update through its
 * rows of wo^T) and then the FFN's chunks (each: one GEMV for its gate/up rows, SwiGLU, and its
 * share through its rows of wd^T), with a barrier after each half; every thread then sums the
 * shares in a fixed order into its own copy of the residual. The weights are packed for this on
 * first use (forward_decode_pack.c says how and why). Layers with lowrank tensors run projection
 * by projection instead (block_token). */
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

/* Scores of `tiles` (1 or 2, a constant once inlined) consecutive key tiles from position t0:
 * att[t0 ..) = scale * q tile (the last tile's positions past n dropped). Even and odd key
 * dimensions go to separate accumulators, so that up to four chains of multiply-adds overlap
 * instead of each waiting on the last. */
static inline void scores_tiles(float *att, const float *q, const float *kt, int hd, int t0,
                                int tiles, int n, float scale) {
    enum { B = CCE_ATT_KEY_BLOCK };
    float acc[2][2][B] = {{{0}}}; /* [tile][parity of d][position] */
    for (int d = 0; d < hd; d++) {
        float qd = scale * q[d];
        for (int i = 0; i < tiles; i++) {
            const float *k = kt + (size_t)(t0 + i * B) * hd + (size_t)d * B; /* [B] */
            float *a = acc[i][d & 1];
#pragma omp simd
            for (int c = 0; c < B; c++) a[c] = fmaf(qd, k[c], a[c]);
        }
    }
    for (int i = 0; i < tiles; i++) {
        int p0 = t0 + i * B, w = n - p0 < B ? n - p0 : B;
#pragma omp simd
        for (int c = 0; c < B; c++) acc[i][0][c] += acc[i][1][c];
        if (w > 0) memcpy(att + p0, acc[i][0], sizeof(float) * (size_t)w);
    }
}

/* att [n] = scale * q times keys 0..n of one head (kt: its tiles of [hd][CCE_ATT_KEY_BLOCK], see
 * forward_internal.h): a tile's scores are held in registers while its key dimensions stream
 * past, so the keys are read once, front to back. Positions past n in the last tile (zeros or an
 * earlier sequence's keys) are computed and dropped. q [hd]. */
static void scores_token(float *att, const float *q, const float *kt, int hd, int n, float scale) {
    enum { B = CCE_ATT_KEY_BLOCK };
    int t0 = 0;
    for (; t0 + B < n; t0 += 2 * B) scores_tiles(att, q, kt, hd, t0, 2, n, scale);
    if (t0 < n) scores_tiles(att, q, kt, hd, t0, 1, n, scale);
}

/* o[d0 .. d0+w) = sum over t < n of p[t] v[t][d0 .. d0+w), with two independent accumulators
 * (even and odd positions) so that the multiply-adds do not wait on each other. Inlined with a
 * constant w (64, 48, 32 or 16) the accumulators stay in registers and the values are read in
 * one pass. v: row stride ldv. */
static inline void values_token_chunk(float *o, const float *p, const float *v, int ldv, int n,
                                      int d0, int w) {
    float acc[2][64] = {{0}};
    int t = 0;
    for (; t + 2 <= n; t += 2)
        for (int k = 0; k < 2; k++) {
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
    for (int c = 0; c < w; c++) o[d0 + c] = acc[0][c] + acc[1][c];
}

/* o [hd] = p [n] times v [n, hd] (row stride ldv). */
static void values_token(float *o, const float *p, const float *v, int ldv, int hd, int n) {
    int d0 = 0;
    for (; d0 + 64 <= hd; d0 += 64) values_token_chunk(o, p, v, ldv, n, d0, 64);
    switch (hd - d0) {
    case 0:
        break;
    case 48:
        values_token_chunk(o, p, v, ldv, n, d0, 48);
        break;
    case 32:
        values_token_chunk(o, p, v, ldv, n, d0, 32);
        break;
    case 16:
        values_token_chunk(o, p, v, ldv, n, d0, 16);
        break;
    default:
        values_token_chunk(o, p, v, ldv, n, d0, hd - d0);
        break;
    }
}

/* Stores kv head g's new key k [hd] (RoPE applied) and value v [hd] at position pos of the
 * layer's cache. */
static void store_kv(const cce_forward *f, const fwd_layer *L, int g, int pos, const float *k,
                     const float *v) {
    int hd = f->cfg.head_dim;
    float *kt = cce_head_keys(L, g, hd, f->kv_ld);
    for (int d = 0; d < hd; d++) kt[cce_key_index(d, pos, hd)] = k[d];
    memcpy(cce_head_values(L, g, hd, f->cfg.seq_len) + (size_t)pos * hd, v,
           sizeof(float) * (size_t)hd);
}

/* One query head h's attention output o [hd] from its query q [hd] (RoPE applied) over cache
 * positions 0..n of its kv head; att [n] is scratch. */
static void attend_head(const cce_forward *f, const fwd_layer *L, int h, const float *q, int n,
                        float *att, float *o) {
    int hd = f->cfg.head_dim, g = L->kv_of_head[h];
    scores_token(att, q, cce_head_keys(L, g, hd, f->kv_ld), hd, n, 1.0f / sqrtf((float)hd));
    cce_softmax(att, n);
    values_token(o, att, cce_head_values(L, g, hd, f->cfg.seq_len), hd, hd, n);
}

/* Stores the new keys k [kv_dim] (RoPE applied) and values v [kv_dim] at position pos, then
 * o [q_dim] from q [q_dim] and cache positions 0..pos, the heads split over the threads. */
static void attention_token(cce_forward *f, const fwd_layer *L, const float *q, const float *k,
                            const float *v, int pos) {
    int hd = f->cfg.head_dim, n = pos + 1;
    for (int g = 0; g < L->n_kv_heads; g++)
        store_kv(f, L, g, pos, k + (size_t)g * hd, v + (size_t)g * hd);
#pragma omp parallel for schedule(static) if ((int64_t)L->n_heads * n * hd >= DECODE_PARALLEL_MIN)
    for (int h = 0; h < L->n_heads; h++)
        attend_head(f, L, h, q + (size_t)h * hd, n, f->att + (size_t)h * (size_t)f->kv_ld,
                    f->o + (size_t)h * hd);
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

/* Claims item i for the calling thread: whoever writes the step's stamp into the item's own cache
 * line first gets it. */
static int claim_item(unsigned *claims, int i, unsigned stamp) {
    unsigned *flag = claims + (size_t)i * DECODE_CLAIM_STRIDE;
    if (__atomic_load_n(flag, __ATOMIC_RELAXED) == stamp) return 0;
    return __atomic_exchange_n(flag, stamp, __ATOMIC_RELAXED) != stamp;
}

/* Hands out the next of n items (kv groups, FFN chunks) of one phase to the calling thread; -1
 * when none is left. Thread t first works through its own items t, t + nth, ... in order (*own,
 * starting at t), then takes what is left from the end. On a quiet machine each thread does
 * its own share and claims only lines it holds; a thread that runs ahead still takes the slower
 * one's last items. (A shared counter, first come first served, bounced one cache line between
 * the cores at every item: about 1% of a step.) */
static int take_item(unsigned *claims, int n, unsigned stamp, int nth, int *own) {
    for (; *own < n; *own += nth)
        if (claim_item(claims, *own, stamp)) {
            int i = *own;
            *own += nth;
            return i;
        }
    for (int i = n - 1; i >= 0; i--)
        if (claim_item(claims, i, stamp)) return i;
    return -1;
}

/* y[lo, hi) = W[lo, hi) x with W [.., in]: one thread's rows. Inside a parallel region OpenBLAS
 * runs on the calling thread. */
static void gemv_rows(float *y, const float *w, const float *x, int lo, int hi, int in) {
    if (hi > lo) cce_gemv(y + lo, w + (size_t)lo * in, x, hi - lo, in, 0.0f);
}

/* y[lo, hi) += b[lo, hi) (nothing when b is NULL): the bias of one thread's rows, added right
 * after their product, so it needs no barrier of its own. */
static inline void bias_rows(float *y, const float *b, int lo, int hi) {
    if (!b) return;
#pragma omp simd
    for (int i = lo; i < hi; i++) y[i] += b[i];
}

/* h [dim] += share[0] + share[1] + ... + share[n-1] (+ b), each share [dim] (row stride ld):
 * always in this order, so every thread's copy of h comes out the same, whoever computed which
 * share. */
static void add_shares(float *h, const float *share, int n, int dim, int ld, const float *b) {
    for (int k = 0; k < n; k++) {
        const float *s = share + (size_t)k * ld;
#pragma omp simd
        for (int i = 0; i < dim; i++) h[i] += s[i];
    }
    if (b) {
#pragma omp simd
        for (int i = 0; i < dim; i++) h[i] += b[i];
    }
}

/* The first row of kv group g's key in wqkv's row order (its value follows): the group's rows are
 * its query heads' rows, then k, then v, after every earlier group's. */
static int group_key_row(const fwd_layer *L, int g, int hd) {
    return (L->group_heads[g + 1] + 2 * g) * hd;
}

/* RoPE on kv group g's new key, then the key and value into the cache at pos, from the step's
 * q/k/v. */
static void store_kv_group(cce_forward *f, const fwd_layer *L, int g, int pos) {
    int hd = f->cfg.head_dim, half = hd / 2;
    float *kg = f->dec_qkv + group_key_row(L, g, hd); /* [hd] key, then [hd] value */
    rope_token(kg, 1, hd, f->cos_tab + (size_t)pos * half, f->sin_tab + (size_t)pos * half);
    store_kv(f, L, g, pos, kg, kg + hd);
}

/* Query head heads_by_group[j] of kv group g: RoPE on its query, attention over cache positions
 * 0..pos, and its share of the residual update, o_h times its rows of wo^T, into share [dim]. */
static void head_share(cce_forward *f, const fwd_layer *L, int j, int g, int pos, float *share) {
    int hd = f->cfg.head_dim, half = hd / 2, dim = f->cfg.dim, h = L->heads_by_group[j];
    float *qh = f->dec_qkv + (size_t)(j + 2 * g) * hd; /* [hd] */
    float *oh = f->o + (size_t)h * hd;                 /* [hd] */
    rope_token(qh, 1, hd, f->cos_tab + (size_t)pos * half, f->sin_tab + (size_t)pos * half);
    attend_head(f, L, h, qh, pos + 1, f->att + (size_t)h * (size_t)f->kv_ld, oh);
    cce_gemv_transposed(share + (size_t)h * f->dec_ld, L->wo_t + (size_t)h * hd * dim, oh, hd, dim);
}

/* The attention half of a team layer (every thread of the region calls it; returns after a
 * barrier, with every head's share in f->dec_part). With at least as many kv groups as threads,
 * in a number that splits evenly (or many), threads take whole groups and never wait for each
 * other; otherwise they share the q/k/v rows, then store the groups, then run the heads, with a
 * barrier between. */
static void attention_team(cce_forward *f, const fwd_layer *L, int pos, const float *xn, int *next,
                           unsigned *claims) {
    int tid = omp_get_thread_num(), nth = omp_get_num_threads(), dim = f->cfg.dim;
    int hd = f->cfg.head_dim, n_kv = L->n_kv_heads, lo, hi;
    float *qkv = f->dec_qkv, *share = f->dec_part; /* [q_dim + 2 kv_dim], [n_heads, dec_ld] */
    if (n_kv >= nth && (n_kv % nth == 0 || n_kv >= 3 * nth)) {
        int g, own = tid;
        while ((g = take_item(claims, n_kv, f->dec_stamp, nth, &own)) >= 0) {
            int r0 = (L->group_heads[g] + 2 * g) * hd, r1 = group_key_row(L, g, hd) + 2 * hd;
            gemv_rows(qkv, L->wqkv, xn, r0, r1, dim);
            bias_rows(qkv, L->bqkv, r0, r1); /* before RoPE */
            store_kv_group(f, L, g, pos);
            for (int j = L->group_heads[g]; j < L->group_heads[g + 1]; j++)
                head_share(f, L, j, g, pos, share);
        }
    } else {
        while (take_rows(next, L->q_dim + 2 * L->kv_dim, nth, &lo, &hi)) {
            gemv_rows(qkv, L->wqkv, xn, lo, hi, dim);
            bias_rows(qkv, L->bqkv, lo, hi);
        }
#pragma omp barrier
        for (int g = tid; g < n_kv; g += nth) store_kv_group(f, L, g, pos);
#pragma omp barrier
        for (int g = 0; g < n_kv; g++)
            for (int j = L->group_heads[g]; j < L->group_heads[g + 1]; j++)
                if (j % nth == tid) head_share(f, L, j, g, pos, share);
    }
#pragma omp barrier
}

/* The FFN half of a team layer (every thread calls it; returns after a barrier, with every
 * chunk's share in f->dec_part after the heads'). */
static void ffn_team(cce_forward *f, const fwd_layer *L, const float *xn, unsigned *claims) {
    int tid = omp_get_thread_num(), nth = omp_get_num_threads(), dim = f->cfg.dim;
    int chunk = f->dec_chunk, c, own = tid;
    float *gu = f->dec_gu + (size_t)tid * 2 * chunk;               /* [2 chunk] */
    float *share = f->dec_part + (size_t)f->max_heads * f->dec_ld; /* [n_chunks, dec_ld] */
    while ((c = take_item(claims, L->n_chunks, f->dec_stamp, nth, &own)) >= 0) {
        int u0 = c * chunk, w = L->hidden_dim - u0 < chunk ? L->hidden_dim - u0 : chunk;
        const float *rows = L->wffn + (size_t)u0 * 3 * dim; /* [3 w, dim]: gate, up, wd^T */
        gemv_rows(gu, rows, xn, 0, 2 * w, dim);
        if (L->bffn) bias_rows(gu, L->bffn + 2 * (size_t)u0, 0, 2 * w);
        swiglu_token(gu, gu + w, w);
        cce_gemv_transposed(share + (size_t)c * f->dec_ld, rows + (size_t)2 * w * dim, gu, w, dim);
    }
#pragma omp barrier
}

/* One team layer, called by every thread of a parallel region with its own copy of the residual
 * h [dim] and norm buffer xn [dim]. A fork/join per GEMV (what BLAS threading does) costs the
 * threads' wake-up each time; here the threads take kv groups and FFN chunks (or rows) from
 * shared counters, and meet only where a step reads what others wrote. */
static void block_team(cce_forward *f, const fwd_layer *L, int pos, float *h, float *xn) {
    const cce_config *c = &f->cfg;
    int l = (int)(L - f->layers);
    int *next = f->dec_next + 4 * l; /* [4] row counters (attention with few kv groups) */
    unsigned *claims = f->dec_claims + (size_t)2 * l * f->dec_items * DECODE_CLAIM_STRIDE;
    if (L->n_heads > 0) {
        rmsnorm_token(xn, h, L->attn_norm, c->dim, c->norm_eps);
        attention_team(f, L, pos, xn, &next[0], claims);
        add_shares(h, f->dec_part, L->n_heads, c->dim, f->dec_ld, L->bias[CCE_LB_O]);
    }
    if (L->hidden_dim > 0) {
        rmsnorm_token(xn, h, L->ffn_norm, c->dim, c->norm_eps);
        ffn_team(f, L, xn, claims + (size_t)f->dec_items * DECODE_CLAIM_STRIDE);
        add_shares(h, f->dec_part + (size_t)f->max_heads * f->dec_ld, L->n_chunks, c->dim,
                   f->dec_ld, L->bias[CCE_LB_DOWN]);
    }
    /* A layer without one of its halves: the next layer's shares would land where a slower
     * thread may still be summing this layer's. */
    if (L->n_heads == 0 || L->hidden_dim == 0) {
#pragma omp barrier
    }
}

/* logits [vocab] = classifier times rmsnorm(h), the rows split over the team (dense only). Called
 * by every thread of a team with its own h [dim] and xn [dim]. */
static void classifier_team(cce_forward *f, const float *h, float *xn, float *logits) {
    const cce_config *c = &f->cfg;
    int nth = omp_get_num_threads(), lo, hi;
    rmsnorm_token(xn, h, f->final_norm, c->dim, c->norm_eps);
    while (take_rows(&f->dec_next[4 * c->n_layers], c->vocab_size, nth, &lo, &hi))
        gemv_rows(logits, f->cls, xn, lo, hi, c->dim);
}

/* A layer with lowrank tensors: projection by projection, each GEMV threaded by BLAS. */
static void block_token(cce_forward *f, const fwd_layer *L, int pos) {
    const cce_config *c = &f->cfg;
    int dim = c->dim, half = c->head_dim / 2;
    if (L->n_heads > 0) {
        rmsnorm_token(f->x, f->h, L->attn_norm, dim, c->norm_eps);
        float *q = f->dec_qkv;    /* [q_dim] */
        float *k = q + L->q_dim;  /* [kv_dim] */
        float *v = k + L->kv_dim; /* [kv_dim] */
        cce_forward_gemv(f, &L->lr[CCE_LT_Q], L->wq, L->bias[CCE_LB_Q], q, f->x, L->q_dim, dim,
                         0.0f);
        cce_forward_gemv(f, &L->lr[CCE_LT_K], L->wk, L->bias[CCE_LB_K], k, f->x, L->kv_dim, dim,
                         0.0f);
        cce_forward_gemv(f, &L->lr[CCE_LT_V], L->wv, L->bias[CCE_LB_V], v, f->x, L->kv_dim, dim,
                         0.0f);
        const float *cs = f->cos_tab + (size_t)pos * half, *sn = f->sin_tab + (size_t)pos * half;
        rope_token(q, L->n_heads, c->head_dim, cs, sn);
        rope_token(k, L->n_kv_heads, c->head_dim, cs, sn);
        attention_token(f, L, q, k, v, pos);
        cce_forward_gemv(f, &L->lr[CCE_LT_O], L->wo, L->bias[CCE_LB_O], f->h, f->o, dim, L->q_dim,
                         1.0f); /* h += Wo o (+ bo) */
    }
    if (L->hidden_dim > 0) {
        rmsnorm_token(f->x, f->h, L->ffn_norm, dim, c->norm_eps);
        float *g = f->g, *u = f->u; /* [hidden] each */
        cce_forward_gemv(f, &L->lr[CCE_LT_GATE], L->wg, L->bias[CCE_LB_GATE], g, f->x,
                         L->hidden_dim, dim, 0.0f);
        cce_forward_gemv(f, &L->lr[CCE_LT_UP], L->wu, L->bias[CCE_LB_UP], u, f->x, L->hidden_dim,
                         dim, 0.0f);
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
    if ((s = cce_decode_prepare(f))) return s;
    int dim = c->dim;
    memset(f->dec_next, 0, sizeof(int) * (4 * (size_t)c->n_layers + 1));
    if (++f->dec_stamp == 0) { /* after 2^32 steps: no claim may look like this step's */
        memset(f->dec_claims, 0, f->dec_claims_bytes);
        f->dec_stamp = 1;
    }
    memcpy(f->h, f->embed + (size_t)token * dim, sizeof(float) * dim);
    int all_team = !f->cls_lr.a;
    for (int l = 0; l < c->n_layers; l++)
        if (!f->layers[l].removed && !cce_decode_team_layer(&f->layers[l])) all_team = 0;
    if (all_team) {
        /* The whole step in one region: one wake-up of the threads per token. */
#pragma omp parallel num_threads(f->dec_threads)
        {
            int tid = omp_get_thread_num();
            float *h = f->dec_h + (size_t)tid * f->dec_ld,
                  *xn = f->dec_xn + (size_t)tid * f->dec_ld;
            memcpy(h, f->h, sizeof(float) * dim);
            for (int l = 0; l < c->n_layers; l++)
                if (!f->layers[l].removed) block_team(f, &f->layers[l], pos, h, xn);
            classifier_team(f, h, xn, logits);
        }
        f->next_pos = pos + 1;
        return CCE_OK;
    }
    for (int l = 0; l < c->n_layers; l++) {
        const fwd_layer *L = &f->layers[l];
        if (L->removed) continue;
        if (!cce_decode_team_layer(L)) {
            block_token(f, L, pos);
            continue;
        }
#pragma omp parallel num_threads(f->dec_threads)
        {
            int tid = omp_get_thread_num();
            float *h = f->dec_h + (size_t)tid * f->dec_ld,
                  *xn = f->dec_xn + (size_t)tid * f->dec_ld;
            memcpy(h, f->h, sizeof(float) * dim);
            block_team(f, L, pos, h, xn); /* has a barrier: every thread took its copy */
            if (tid == 0) memcpy(f->h, h, sizeof(float) * dim);
        }
    }
    if (!f->cls_lr.a) {
#pragma omp parallel num_threads(f->dec_threads)
        {
            int tid = omp_get_thread_num();
            classifier_team(f, f->h, f->dec_xn + (size_t)tid * f->dec_ld, logits);
        }
    } else {
        rmsnorm_token(f->x, f->h, f->final_norm, dim, c->norm_eps);
        cce_forward_gemv(f, &f->cls_lr, f->cls, NULL, logits, f->x, c->vocab_size, dim, 0.0f);
    }
    f->next_pos = pos + 1;
    return CCE_OK;
}
