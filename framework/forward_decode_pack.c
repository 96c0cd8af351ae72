/* KV-cache decoding's state: the packed weights of the layers that decode as a team, and the
 * step's scratch buffers, allocated on the first cce_forward_token call; and the list of buffers
 * a step reads (cce bench's streaming bound).
 *
 * Why the packing. A decoding step is memory-bound (it reads every weight once per token), so
 * the weights are laid out in the order the step streams them, and a step splits its work so
 * that threads meet as rarely as possible (forward_decode.c):
 * - Attention goes by kv group: a group's q/k/v rows are contiguous (one GEMV gives its queries,
 *   key and value), and wo is stored transposed so that a head's output o_h [head_dim] times its
 *   rows of wo^T [head_dim, dim] (a transposed GEMV over contiguous rows) is that head's share of
 *   the residual update. No thread waits for another between the q/k/v product and wo.
 * - The FFN goes by chunks of dec_chunk units: a chunk's gate rows, up rows and its rows of wd^T
 *   are contiguous, and the chunk's share of the residual update comes out the same way.
 * The shares are summed in head order and chunk order by every thread into its own copy of the
 * residual (forward_internal.h, dec_part), so results do not depend on the thread count or on
 * which thread took which piece. Measured on the stories15M shape, a transposed GEMV over such
 * rows reads at the rate of a plain sum of the same floats, and the step has two barriers per
 * layer instead of five. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "forward_internal.h"
#include "kernels.h"

/* FFN units per chunk: large enough that a chunk's three GEMVs outweigh their call overhead,
 * small enough that the last chunk of a layer leaves the other threads little waiting. */
#define DECODE_FFN_CHUNK 128

int cce_decode_team_layer(const fwd_layer *L) {
    if (L->removed) return 0;
    if (L->n_heads > 0 &&
        (L->lr[CCE_LT_Q].a || L->lr[CCE_LT_K].a || L->lr[CCE_LT_V].a || L->lr[CCE_LT_O].a))
        return 0;
    if (L->hidden_dim > 0 && (L->lr[CCE_LT_GATE].a || L->lr[CCE_LT_UP].a || L->lr[CCE_LT_DOWN].a))
        return 0;
    return 1;
}

static int has_qkv_bias(const fwd_layer *L) {
    return L->bias[CCE_LB_Q] || L->bias[CCE_LB_K] || L->bias[CCE_LB_V];
}

static int has_gu_bias(const fwd_layer *L) {
    return L->bias[CCE_LB_GATE] || L->bias[CCE_LB_UP];
}

/* Floats of a team layer's packed weights and biases. */
static size_t packed_floats(const fwd_layer *L, size_t dim) {
    size_t n = 0, qkv_rows = (size_t)L->q_dim + 2 * (size_t)L->kv_dim;
    if (L->n_heads > 0) n += (qkv_rows + (size_t)L->q_dim) * dim + (has_qkv_bias(L) ? qkv_rows : 0);
    if (L->hidden_dim > 0)
        n += 3 * (size_t)L->hidden_dim * dim + (has_gu_bias(L) ? 2 * (size_t)L->hidden_dim : 0);
    return n;
}

/* Copies rows [r0, r0 + n) of w [.., cols] to dst; returns the float after them. */
static float *copy_rows(float *dst, const float *w, int r0, int n, int cols) {
    size_t count = (size_t)n * (size_t)cols;
    if (count) memcpy(dst, w + (size_t)r0 * cols, sizeof(float) * count);
    return dst + count;
}

/* dst [c1 - c0, rows] = columns [c0, c1) of w [rows, cols], transposed; returns the float after
 * them. Tiles of 16 x 16 keep both sides in cache. */
static float *copy_columns_transposed(float *dst, const float *w, int rows, int cols, int c0,
                                      int c1) {
    for (int i0 = 0; i0 < rows; i0 += 16)
        for (int j0 = c0; j0 < c1; j0 += 16)
            for (int j = j0; j < j0 + 16 && j < c1; j++)
                for (int i = i0; i < i0 + 16 && i < rows; i++)
                    dst[(size_t)(j - c0) * rows + i] = w[(size_t)i * cols + j];
    return dst + (size_t)(c1 - c0) * rows;
}

/* Copies b[r0, r0 + n) to dst, or zeros when b is absent; returns the float after them. */
static float *copy_bias(float *dst, const float *b, int r0, int n) {
    if (n <= 0) return dst;
    if (b)
        memcpy(dst, b + r0, sizeof(float) * (size_t)n);
    else
        memset(dst, 0, sizeof(float) * (size_t)n);
    return dst + n;
}

/* Orders a layer's heads by kv group (stable), into index [n_heads + n_kv_heads + 1]. */
static void order_heads_by_group(fwd_layer *L, int *index) {
    int *by_group = index, *start = index + L->n_heads;
    int k = 0;
    for (int g = 0; g < L->n_kv_heads; g++) {
        start[g] = k;
        for (int h = 0; h < L->n_heads; h++)
            if (L->kv_of_head[h] == g) by_group[k++] = h;
    }
    start[L->n_kv_heads] = k;
    L->heads_by_group = by_group;
    L->group_heads = start;
}

/* Packs one team layer at p (see the top of this file); returns the float after it. */
static float *pack_layer(fwd_layer *L, float *p, int dim, int hd, int chunk) {
    if (L->n_heads > 0) {
        L->wqkv = p;
        for (int g = 0; g < L->n_kv_heads; g++) {
            for (int j = L->group_heads[g]; j < L->group_heads[g + 1]; j++)
                p = copy_rows(p, L->wq, L->heads_by_group[j] * hd, hd, dim);
            p = copy_rows(p, L->wk, g * hd, hd, dim);
            p = copy_rows(p, L->wv, g * hd, hd, dim);
        }
        L->wo_t = p;
        p = copy_columns_transposed(p, L->wo, dim, L->q_dim, 0, L->q_dim);
        if (has_qkv_bias(L)) {
            L->bqkv = p;
            for (int g = 0; g < L->n_kv_heads; g++) {
                for (int j = L->group_heads[g]; j < L->group_heads[g + 1]; j++)
                    p = copy_bias(p, L->bias[CCE_LB_Q], L->heads_by_group[j] * hd, hd);
                p = copy_bias(p, L->bias[CCE_LB_K], g * hd, hd);
                p = copy_bias(p, L->bias[CCE_LB_V], g * hd, hd);
            }
        }
    }
    if (L->hidden_dim > 0) {
        L->n_chunks = (L->hidden_dim + chunk - 1) / chunk;
        L->wffn = p;
        for (int u0 = 0; u0 < L->hidden_dim; u0 += chunk) {
            int w = L->hidden_dim - u0 < chunk ? L->hidden_dim - u0 : chunk;
            p = copy_rows(p, L->wg, u0, w, dim);
            p = copy_rows(p, L->wu, u0, w, dim);
            p = copy_columns_transposed(p, L->wd, dim, L->hidden_dim, u0, u0 + w);
        }
        if (has_gu_bias(L)) {
            L->bffn = p;
            for (int u0 = 0; u0 < L->hidden_dim; u0 += chunk) {
                int w = L->hidden_dim - u0 < chunk ? L->hidden_dim - u0 : chunk;
                p = copy_bias(p, L->bias[CCE_LB_GATE], u0, w);
                p = copy_bias(p, L->bias[CCE_LB_UP], u0, w);
            }
        }
    }
    return p;
}

cce_status cce_decode_prepare(cce_forward *f) {
    if (f->dec_next) return CCE_OK;
    const cce_config *c = &f->cfg;
    size_t dim = (size_t)c->dim, total = 0, n_index = 0;
    int chunk = DECODE_FFN_CHUNK, max_chunks = 0, max_items = 1;
    for (int l = 0; l < c->n_layers; l++) {
        fwd_layer *L = &f->layers[l];
        L->wqkv = L->wo_t = L->wffn = L->bqkv = L->bffn = NULL;
        L->heads_by_group = L->group_heads = NULL;
        L->n_chunks = 0;
        if (!cce_decode_team_layer(L)) continue;
        total += packed_floats(L, dim);
        n_index += (size_t)L->n_heads + (size_t)L->n_kv_heads + 1;
        int chunks = (L->hidden_dim + chunk - 1) / chunk;
        if (chunks > max_chunks) max_chunks = chunks;
        if (chunks > max_items) max_items = chunks;
        if (L->n_kv_heads > max_items) max_items = L->n_kv_heads;
    }
    int nth = omp_get_max_threads();
    float *packed = cce_floats_alloc(total, 0);
    /* Buffers that several threads write, each its own rows: whole cache lines per row, so that
     * no two threads write one line. */
    size_t ld = (dim + 15) / 16 * 16;
    int *index = malloc(sizeof(int) * (n_index + 1));
    size_t qkv_floats = (size_t)f->max_q_dim + 2 * (size_t)f->max_kv_dim + 1;
    float *qkv = cce_forward_lines_alloc(sizeof(float) * qkv_floats);
    float *gu = cce_forward_lines_alloc(sizeof(float) * (size_t)nth * 2 * (size_t)chunk);
    float *xn = cce_forward_lines_alloc(sizeof(float) * (size_t)nth * ld);
    float *h = cce_forward_lines_alloc(sizeof(float) * (size_t)nth * ld);
    float *part = cce_forward_lines_alloc(sizeof(float) *
                                          ((size_t)f->max_heads + (size_t)max_chunks + 1) * ld);
    int *next = malloc(sizeof(int) * (4 * (size_t)c->n_layers + 1));
    size_t claims_bytes =
        sizeof(unsigned) * 2 * (size_t)c->n_layers * (size_t)max_items * DECODE_CLAIM_STRIDE;
    unsigned *claims = cce_forward_lines_alloc(claims_bytes);
    if (!packed || !index || !qkv || !gu || !xn || !h || !part || !next || !claims) {
        free(claims);
        free(packed);
        free(index);
        free(qkv);
        free(gu);
        free(xn);
        free(h);
        free(part);
        free(next);
        return cce_fail(CCE_ERR_NOMEM, "forward token: packed decoding weights (%zu floats)",
                        total);
    }
    float *p = packed;
    int *ix = index;
    for (int l = 0; l < c->n_layers; l++) {
        fwd_layer *L = &f->layers[l];
        if (!cce_decode_team_layer(L)) continue;
        order_heads_by_group(L, ix);
        ix += L->n_heads + L->n_kv_heads + 1;
        p = pack_layer(L, p, c->dim, c->head_dim, chunk);
    }
    f->packed = packed;
    f->dec_index = index;
    f->dec_qkv = qkv;
    f->dec_gu = gu;
    f->dec_xn = xn;
    f->dec_h = h;
    f->dec_part = part;
    f->dec_chunk = chunk;
    f->dec_ld = (int)ld;
    f->dec_threads = nth;
    memset(claims, 0, claims_bytes);
    f->dec_claims = claims;
    f->dec_claims_bytes = claims_bytes;
    f->dec_items = max_items;
    f->dec_stamp = 0;
    f->dec_next = next; /* last: its presence marks the state as ready */
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

/* A layer that decodes projection by projection: every tensor where the model keeps it. */
static void list_layer_unpacked(const float **ptr, int64_t *numel, int capacity, int *k,
                                const fwd_layer *L, int dim) {
    if (L->n_heads > 0) {
        list_buffer(ptr, numel, capacity, k, L->attn_norm, dim);
        list_linear(ptr, numel, capacity, k, &L->lr[CCE_LT_Q], L->wq, L->q_dim, dim);
        list_linear(ptr, numel, capacity, k, &L->lr[CCE_LT_K], L->wk, L->kv_dim, dim);
        list_linear(ptr, numel, capacity, k, &L->lr[CCE_LT_V], L->wv, L->kv_dim, dim);
        list_buffer(ptr, numel, capacity, k, L->bias[CCE_LB_Q], L->q_dim);
        list_buffer(ptr, numel, capacity, k, L->bias[CCE_LB_K], L->kv_dim);
        list_buffer(ptr, numel, capacity, k, L->bias[CCE_LB_V], L->kv_dim);
        list_linear(ptr, numel, capacity, k, &L->lr[CCE_LT_O], L->wo, dim, L->q_dim);
        list_buffer(ptr, numel, capacity, k, L->bias[CCE_LB_O], dim);
    }
    if (L->hidden_dim > 0) {
        list_buffer(ptr, numel, capacity, k, L->ffn_norm, dim);
        list_linear(ptr, numel, capacity, k, &L->lr[CCE_LT_GATE], L->wg, L->hidden_dim, dim);
        list_linear(ptr, numel, capacity, k, &L->lr[CCE_LT_UP], L->wu, L->hidden_dim, dim);
        list_buffer(ptr, numel, capacity, k, L->bias[CCE_LB_GATE], L->hidden_dim);
        list_buffer(ptr, numel, capacity, k, L->bias[CCE_LB_UP], L->hidden_dim);
        list_linear(ptr, numel, capacity, k, &L->lr[CCE_LT_DOWN], L->wd, dim, L->hidden_dim);
        list_buffer(ptr, numel, capacity, k, L->bias[CCE_LB_DOWN], dim);
    }
}

cce_status cce_forward_decode_buffers(cce_forward *f, const float **ptr, int64_t *numel,
                                      int capacity, int *count) {
    if (!f || !count || capacity < 0 || (capacity > 0 && (!ptr || !numel)))
        return cce_fail(CCE_ERR_ARG, "forward decode buffers: bad argument");
    cce_status s = cce_decode_prepare(f);
    if (s) return s;
    const cce_config *c = &f->cfg;
    int dim = c->dim, k = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const fwd_layer *L = &f->layers[l];
        if (L->removed) continue;
        if (!cce_decode_team_layer(L)) {
            list_layer_unpacked(ptr, numel, capacity, &k, L, dim);
            continue;
        }
        if (L->n_heads > 0) {
            int64_t qkv_rows = (int64_t)L->q_dim + 2 * (int64_t)L->kv_dim;
            list_buffer(ptr, numel, capacity, &k, L->attn_norm, dim);
            /* wqkv and wo_t are adjacent: one stream */
            list_buffer(ptr, numel, capacity, &k, L->wqkv, (qkv_rows + L->q_dim) * dim);
            list_buffer(ptr, numel, capacity, &k, L->bqkv, qkv_rows);
            list_buffer(ptr, numel, capacity, &k, L->bias[CCE_LB_O], dim);
        }
        if (L->hidden_dim > 0) {
            list_buffer(ptr, numel, capacity, &k, L->ffn_norm, dim);
            list_buffer(ptr, numel, capacity, &k, L->wffn, 3 * (int64_t)L->hidden_dim * dim);
            list_buffer(ptr, numel, capacity, &k, L->bffn, 2 * (int64_t)L->hidden_dim);
            list_buffer(ptr, numel, capacity, &k, L->bias[CCE_LB_DOWN], dim);
        }
    }
    list_buffer(ptr, numel, capacity, &k, f->final_norm, dim);
    list_linear(ptr, numel, capacity, &k, &f->cls_lr, f->cls, c->vocab_size, dim);
    *count = k;
    return CCE_OK;
}
