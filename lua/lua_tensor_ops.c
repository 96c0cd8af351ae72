/* Vectorised operations on "cce.tensor" userdata (lua/README.md, "Tensor operations"): reductions,
 * order statistics, masks, elementwise arithmetic, rounding and in-place masking, each one C loop
 * over the buffer so that a Lua strategy never loops over elements.
 *
 * Conventions shared by every method:
 *   - a tensor is seen as its 2-D view [rows, cols] (cce_tensor_rows / cce_tensor_cols: a 1-D
 *     tensor of n values is one row of n);
 *   - `per` is nil (the whole tensor), "row" (one value per row, a [rows] tensor) or "col" (one
 *     value per column, a [cols] tensor);
 *   - an operand is a number, a tensor of the same shape, or a 1-D tensor of `cols` values applied
 *     to every row (column-wise broadcasting, e.g. calibration column norms);
 *   - results are new tensors the caller's Lua state owns, except apply_mask and zero_where,
 *     which change the tensor in place and return it;
 *   - sums and norms accumulate in double; elementwise results are float32;
 *   - NaN and Inf pass through arithmetic as IEEE says (tensors from models are finite);
 *   - order statistics (min, max, quantile, kth_rows, topk_rows, mask_below/above) refuse NaN
 *     with an error naming the index; ties are ranked by position (of equal values the earlier
 *     one counts as smaller), which is the rule of the built-in pruners (strategies/magnitude.c).
 * Costs are per call: n = numel, r = rows, c = cols. */
#include <gsl/gsl_sort_float.h>
#include <gsl/gsl_statistics_float.h>
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../strategies/prune_common.h"
#include "cce_lua.h"
#include "tensor.h"

#define PAR_MIN (1 << 15) /* tensors smaller than this are handled on one thread */

enum { PER_ALL = 0, PER_ROW, PER_COL };

/* ---- Argument helpers ------------------------------------------------------------------------ */

static int check_per(lua_State *L, int idx) {
    static const char *const names[] = {"all", "row", "col", NULL};
    if (lua_isnoneornil(L, idx)) return PER_ALL;
    return luaL_checkoption(L, idx, NULL, names);
}

/* The shape as "[4, 8]" into buf. */
static const char *shape_text(const cce_tensor *t, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < t->ndim && used + 1 < cap; i++) {
        int w = snprintf(buf + used, cap - used, "%s%lld", i ? ", " : "[", (long long)t->shape[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
    if (used + 1 < cap) snprintf(buf + used, cap - used, "]");
    return buf;
}

/* The open tensor at idx (raises otherwise). */
static const cce_tensor *check_tensor(lua_State *L, int idx) {
    return cce_lua_check_tensor(L, idx)->t;
}

static int is_tensor(lua_State *L, int idx) {
    return cce_lua_test_object(L, idx, CCE_LUA_TENSOR) != NULL;
}

/* A new zero-filled tensor of the given shape, pushed on the stack (owned by the Lua state, so
 * nothing leaks if a later check raises); its data. */
static float *push_new(lua_State *L, int ndim, const int64_t *shape) {
    return cce_lua_new_tensor(L, ndim, shape, "")->t->data;
}

static float *push_like(lua_State *L, const cce_tensor *t) {
    return push_new(L, t->ndim, t->shape);
}

static float *push_vector(lua_State *L, int64_t n) {
    return push_new(L, 1, &n);
}

/* Raises an error naming the op and the first NaN of t. */
static void refuse_nan(lua_State *L, const cce_tensor *t, const char *op) {
    int64_t n = cce_tensor_numel(t);
    const float *v = t->data;
    int any = 0;
#pragma omp simd reduction(| : any)
    for (int64_t j = 0; j < n; j++) any |= isnan(v[j]);
    if (!any) return;
    for (int64_t j = 0; j < n; j++)
        if (isnan(v[j]))
            cce_lua_raise(L,
                          "tensor:%s: the tensor has a NaN at index %lld (1-based); order "
                          "statistics need numbers",
                          op, (long long)j + 1);
}

/* An operand of a binary op on t: a number, a tensor of t's shape, or a [cols] vector. */
typedef struct operand {
    int kind; /* 0 number, 1 same shape, 2 one value per column */
    float s;
    double d; /* the number in double (comparisons) */
    const float *v;
} operand;

static operand check_operand(lua_State *L, int idx, const cce_tensor *t, const char *op) {
    operand o = {0, 0, 0, NULL};
    if (lua_type(L, idx) == LUA_TNUMBER) {
        o.d = lua_tonumber(L, idx);
        o.s = (float)o.d;
        return o;
    }
    if (!is_tensor(L, idx))
        cce_lua_raise(L, "tensor:%s: argument #1 must be a number or a tensor, got %s", op,
                      luaL_typename(L, idx));
    const cce_tensor *u = check_tensor(L, idx);
    o.v = u->data;
    if (cce_tensor_same_shape(t, u)) {
        o.kind = 1;
        return o;
    }
    int64_t cols = cce_tensor_cols(t);
    if (u->ndim == 1 && u->shape[0] == cols) {
        o.kind = 2;
        return o;
    }
    char a[96], b[96];
    cce_lua_raise(L,
                  "tensor:%s: shapes %s and %s do not fit (expected %s, or a 1-D tensor of %lld "
                  "values for every row)",
                  op, shape_text(t, a, sizeof a), shape_text(u, b, sizeof b), a, (long long)cols);
    return o;
}

/* A mask argument: a tensor of t's shape or a [cols] vector (never a number). */
static operand check_mask(lua_State *L, int idx, const cce_tensor *t, const char *op) {
    if (!is_tensor(L, idx))
        cce_lua_raise(L, "tensor:%s: the mask must be a tensor, got %s", op, luaL_typename(L, idx));
    return check_operand(L, idx, t, op);
}

/* The operand's value at flat index j of a tensor with `cols` columns. */
static inline float operand_at(const operand *o, int64_t j, int64_t cols) {
    return o->kind == 0 ? o->s : o->kind == 1 ? o->v[j] : o->v[j % cols];
}

/* ---- Reductions ------------------------------------------------------------------------------ */

typedef enum { R_SUM, R_MEAN, R_NORM, R_MIN, R_MAX, R_NZ } reduction;

/* One reduction of t over everything (returns it) or per row / column (into out [rows]/[cols]). */
static double reduce(const cce_tensor *t, reduction op, int per, float *out) {
    const float *v = t->data;
    int64_t rows = cce_tensor_rows(t), cols = cce_tensor_cols(t), n = rows * cols;
    if (per == PER_ALL) {
        double acc = op == R_MIN ? INFINITY : op == R_MAX ? -INFINITY : 0;
        if (op == R_MIN) {
            float m = INFINITY;
#pragma omp simd reduction(min : m)
            for (int64_t j = 0; j < n; j++) m = v[j] < m ? v[j] : m;
            acc = m;
        } else if (op == R_MAX) {
            float m = -INFINITY;
#pragma omp simd reduction(max : m)
            for (int64_t j = 0; j < n; j++) m = v[j] > m ? v[j] : m;
            acc = m;
        } else if (op == R_NORM) {
#pragma omp simd reduction(+ : acc)
            for (int64_t j = 0; j < n; j++) acc += (double)v[j] * v[j];
            acc = sqrt(acc);
        } else if (op == R_NZ) {
#pragma omp simd reduction(+ : acc)
            for (int64_t j = 0; j < n; j++) acc += v[j] != 0.0f;
        } else {
#pragma omp simd reduction(+ : acc)
            for (int64_t j = 0; j < n; j++) acc += v[j];
        }
        return op == R_MEAN ? (n ? acc / (double)n : NAN) : acc;
    }
    if (per == PER_ROW) {
        for (int64_t r = 0; r < rows; r++) {
            cce_tensor row = {(float *)v + r * cols, 1, {cols, 1, 1, 1}, 0};
            out[r] = (float)reduce(&row, op, PER_ALL, NULL);
        }
        return 0;
    }
    /* per column: a pass over the rows with one accumulator per column */
    double *acc = malloc((size_t)(cols ? cols : 1) * sizeof *acc); /* [cols] */
    if (!acc) return NAN;
    double init = op == R_MIN ? INFINITY : op == R_MAX ? -INFINITY : 0;
    for (int64_t c = 0; c < cols; c++) acc[c] = init;
    for (int64_t r = 0; r < rows; r++) {
        const float *vr = v + r * cols; /* [cols] */
        for (int64_t c = 0; c < cols; c++) {
            double x = vr[c];
            switch (op) {
            case R_MIN:
                acc[c] = x < acc[c] ? x : acc[c];
                break;
            case R_MAX:
                acc[c] = x > acc[c] ? x : acc[c];
                break;
            case R_NORM:
                acc[c] += x * x;
                break;
            case R_NZ:
                acc[c] += x != 0;
                break;
            default:
                acc[c] += x;
            }
        }
    }
    for (int64_t c = 0; c < cols; c++)
        out[c] = (float)(op == R_MEAN   ? (rows ? acc[c] / (double)rows : NAN)
                         : op == R_NORM ? sqrt(acc[c])
                                        : acc[c]);
    free(acc);
    return 0;
}

/* Pushes the reduction: a number, or a [rows] / [cols] tensor. */
static int push_reduction(lua_State *L, reduction op, const char *name) {
    const cce_tensor *t = check_tensor(L, 1);
    int per = check_per(L, 2);
    if (op == R_MIN || op == R_MAX) refuse_nan(L, t, name);
    int64_t rows = cce_tensor_rows(t), cols = cce_tensor_cols(t);
    if ((op == R_MIN || op == R_MAX) && rows * cols == 0)
        return cce_lua_raise(L, "tensor:%s: the tensor is empty", name);
    if (per == PER_ALL) {
        double x = reduce(t, op, PER_ALL, NULL);
        if (op == R_NZ)
            lua_pushinteger(L, (lua_Integer)x);
        else
            lua_pushnumber(L, x);
        return 1;
    }
    int64_t len = per == PER_ROW ? rows : cols;
    float *out = push_vector(L, len);
    if (per == PER_COL && isnan(reduce(t, op, PER_COL, out)))
        return cce_lua_raise(L, "tensor:%s: out of memory", name);
    if (per == PER_ROW) reduce(t, op, PER_ROW, out);
    return 1;
}

/* t:sum([per]): sum (double accumulation). O(n). */
static int t_sum(lua_State *L) {
    return push_reduction(L, R_SUM, "sum");
}
/* t:mean([per]): arithmetic mean (NaN for an empty tensor). O(n). */
static int t_mean(lua_State *L) {
    return push_reduction(L, R_MEAN, "mean");
}
/* t:norm([per]): Frobenius norm, or the L2 norm of each row / column. O(n). */
static int t_norm(lua_State *L) {
    return push_reduction(L, R_NORM, "norm");
}
/* t:min([per]) / t:max([per]): smallest / largest value. O(n). */
static int t_min(lua_State *L) {
    return push_reduction(L, R_MIN, "min");
}
static int t_max(lua_State *L) {
    return push_reduction(L, R_MAX, "max");
}
/* t:count_nonzero([per]): how many values are not 0 (an integer, or a tensor of counts). O(n). */
static int t_count_nonzero(lua_State *L) {
    return push_reduction(L, R_NZ, "count_nonzero");
}

/* ---- Order statistics ------------------------------------------------------------------------ */

/* A scratch buffer of `threads` rows of `cols` floats, or a Lua error. Freed by the caller. */
static float *scratch_new(lua_State *L, int threads, int64_t cols, const char *op) {
    float *s = malloc((size_t)threads * (size_t)(cols ? cols : 1) * sizeof *s);
    if (!s) cce_lua_raise(L, "tensor:%s: out of memory", op);
    return s;
}

static int row_threads(int64_t numel) {
#ifdef _OPENMP
    return numel >= PAR_MIN ? omp_get_max_threads() : 1;
#else
    (void)numel;
    return 1;
#endif
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* t:quantile(q [, per]): the q-quantile (0 <= q <= 1) with linear interpolation between order
 * statistics (type 7, gsl_stats_float_quantile_from_sorted_data): sorted x[(n-1) q]. Of the whole
 * tensor, or of each row / column. O(n log n) (a sorted copy). */
static int t_quantile(lua_State *L) {
    const cce_tensor *t = check_tensor(L, 1);
    double q = luaL_checknumber(L, 2);
    int per = check_per(L, 3);
    if (!(q >= 0 && q <= 1))
        return cce_lua_raise(L, "tensor:quantile: q = %g is outside [0, 1]", q);
    refuse_nan(L, t, "quantile");
    int64_t rows = cce_tensor_rows(t), cols = cce_tensor_cols(t), n = rows * cols;
    if (per == PER_ALL) {
        if (n == 0) return cce_lua_raise(L, "tensor:quantile: the tensor is empty");
        float *s = scratch_new(L, 1, n, "quantile"); /* [n] */
        memcpy(s, t->data, (size_t)n * sizeof *s);
        gsl_sort_float(s, 1, (size_t)n);
        double x = gsl_stats_float_quantile_from_sorted_data(s, 1, (size_t)n, q);
        free(s);
        lua_pushnumber(L, x);
        return 1;
    }
    int64_t groups = per == PER_ROW ? rows : cols, len = per == PER_ROW ? cols : rows;
    if (len == 0)
        return cce_lua_raise(L, "tensor:quantile: the %ss are empty", per == 1 ? "row" : "column");
    float *out = push_vector(L, groups); /* [groups] */
    int threads = row_threads(n);
    float *scratch = scratch_new(L, threads, len, "quantile"); /* [threads, len] */
    const float *v = t->data;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t g = 0; g < groups; g++) {
        float *s = scratch + (size_t)thread_id() * (size_t)len;
        if (per == PER_ROW)
            memcpy(s, v + g * cols, (size_t)cols * sizeof *s);
        else
            for (int64_t r = 0; r < rows; r++) s[r] = v[r * cols + g];
        gsl_sort_float(s, 1, (size_t)len);
        out[g] = (float)gsl_stats_float_quantile_from_sorted_data(s, 1, (size_t)len, q);
    }
    free(scratch);
    return 1;
}

/* t:kth_rows(k): the k-th smallest value of each row (1 <= k <= cols), a [rows] tensor.
 * O(r c log c). */
static int t_kth_rows(lua_State *L) {
    const cce_tensor *t = check_tensor(L, 1);
    lua_Integer k = luaL_checkinteger(L, 2);
    int64_t rows = cce_tensor_rows(t), cols = cce_tensor_cols(t);
    if (k < 1 || k > cols)
        return cce_lua_raise(L, "tensor:kth_rows: k = %lld is outside [1, %lld] (the row length)",
                             (long long)k, (long long)cols);
    refuse_nan(L, t, "kth_rows");
    float *out = push_vector(L, rows); /* [rows] */
    int threads = row_threads(rows * cols);
    float *scratch = scratch_new(L, threads, cols, "kth_rows"); /* [threads, cols] */
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t r = 0; r < rows; r++) {
        float *s = scratch + (size_t)thread_id() * (size_t)cols;
        memcpy(s, t->data + r * cols, (size_t)cols * sizeof *s);
        gsl_sort_float(s, 1, (size_t)cols);
        out[r] = s[k - 1];
    }
    free(scratch);
    return 1;
}

/* Marks in m [n] (1/0) the k smallest of v [n] by (value, position): everything below the k-th
 * smallest value, then the earliest values equal to it. s [n] is scratch.
 *
 * Non-negative values (scores such as |w| or |w| * ||X_j||) go through the built-in pruners'
 * selection (cce_prune_smallest, O(n)): with weights of 1 and v as the scale, the score of j is
 * 1 * v[j] = v[j] exactly, and the weights it zeroes are the k smallest by the same rule. Other
 * values are sorted (gsl_sort_float, O(n log n)). */
static void mark_smallest(const float *v, int64_t n, int64_t k, float *s, float *m) {
    if (k <= 0) {
        memset(m, 0, (size_t)n * sizeof *m);
        return;
    }
    int negative = 0;
#pragma omp simd reduction(| : negative)
    for (int64_t j = 0; j < n; j++) negative |= v[j] < 0.0f;
    if (!negative) {
        for (int64_t j = 0; j < n; j++) m[j] = 1.0f;
        cce_prune_smallest(m, v, n, k, s);
        for (int64_t j = 0; j < n; j++) m[j] = 1.0f - m[j];
        return;
    }
    memcpy(s, v, (size_t)n * sizeof *s);
    gsl_sort_float(s, 1, (size_t)n);
    float thr = s[k - 1];
    int64_t less = 0;
    for (int64_t j = 0; j < n; j++) less += v[j] < thr;
    int64_t ties = k - less; /* >= 1: values equal to thr that count, earliest first */
    for (int64_t j = 0; j < n; j++) {
        int take = v[j] < thr || (v[j] == thr && ties > 0);
        if (v[j] == thr && take) ties--;
        m[j] = take ? 1.0f : 0.0f;
    }
}

/* t:topk_rows(k [, largest]): a mask (1/0, t's shape) with exactly k ones per row (0 <= k <=
 * cols): the k largest values (largest true, the default) or the k smallest (false). Values are
 * ranked by (value, position), so of equal values the earlier counts as smaller: the k smallest
 * are the weights the built-in magnitude pruner removes for k = cce.ratio_count(ratio, cols), and
 * topk_rows(c - k, true) is exactly their complement. O(r c log c). */
static int t_topk_rows(lua_State *L) {
    const cce_tensor *t = check_tensor(L, 1);
    lua_Integer k = luaL_checkinteger(L, 2);
    int largest = lua_isnoneornil(L, 3) ? 1 : lua_toboolean(L, 3);
    int64_t rows = cce_tensor_rows(t), cols = cce_tensor_cols(t);
    if (k < 0 || k > cols)
        return cce_lua_raise(L, "tensor:topk_rows: k = %lld is outside [0, %lld] (the row length)",
                             (long long)k, (long long)cols);
    refuse_nan(L, t, "topk_rows");
    float *out = push_like(L, t); /* [rows, cols] */
    int threads = row_threads(rows * cols);
    float *scratch = scratch_new(L, threads, cols, "topk_rows"); /* [threads, cols] */
    int64_t small = largest ? cols - k : k;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t r = 0; r < rows; r++) {
        float *m = out + r * cols;
        mark_smallest(t->data + r * cols, cols, small, scratch + (size_t)thread_id() * cols, m);
        if (largest)
            for (int64_t j = 0; j < cols; j++) m[j] = 1.0f - m[j];
    }
    free(scratch);
    return 1;
}

/* t:topk(k [, largest]): like topk_rows over the whole tensor in row-major order: a mask with
 * exactly k ones (0 <= k <= n), ties ranked by position. topk(k, false) on |w| with
 * k = cce.ratio_count(ratio, numel) is the built-in magnitude pruner's scope = "tensor" choice.
 * O(n log n). */
static int t_topk(lua_State *L) {
    const cce_tensor *t = check_tensor(L, 1);
    lua_Integer k = luaL_checkinteger(L, 2);
    int largest = lua_isnoneornil(L, 3) ? 1 : lua_toboolean(L, 3);
    int64_t n = cce_tensor_numel(t);
    if (k < 0 || k > n)
        return cce_lua_raise(L, "tensor:topk: k = %lld is outside [0, %lld] (the tensor's size)",
                             (long long)k, (long long)n);
    refuse_nan(L, t, "topk");
    float *out = push_like(L, t);
    float *scratch = scratch_new(L, 1, n, "topk"); /* [n] */
    mark_smallest(t->data, n, largest ? n - k : k, scratch, out);
    free(scratch);
    if (largest)
        for (int64_t j = 0; j < n; j++) out[j] = 1.0f - out[j];
    return 1;
}

/* t:topk_groups(m, k [, largest]): a mask with k ones in every group of m consecutive values
 * along each row (0 <= k <= m); a ragged last group of len < m values gets ceil(k * len / m).
 * Ties ranked by position as in topk_rows, so topk_groups(M, N, true) on |w| keeps exactly what
 * the built-in N:M pruner (nm = "N:M") keeps. O(n log m). */
static int t_topk_groups(lua_State *L) {
    const cce_tensor *t = check_tensor(L, 1);
    lua_Integer m = luaL_checkinteger(L, 2), k = luaL_checkinteger(L, 3);
    int largest = lua_isnoneornil(L, 4) ? 1 : lua_toboolean(L, 4);
    if (m < 1 || m > (1 << 20))
        return cce_lua_raise(L, "tensor:topk_groups: m = %lld is outside [1, 1048576]",
                             (long long)m);
    if (k < 0 || k > m)
        return cce_lua_raise(L, "tensor:topk_groups: k = %lld is outside [0, m = %lld]",
                             (long long)k, (long long)m);
    refuse_nan(L, t, "topk_groups");
    int64_t rows = cce_tensor_rows(t), cols = cce_tensor_cols(t);
    float *out = push_like(L, t);
    float *scratch = scratch_new(L, 1, m, "topk_groups"); /* [m] */
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t g = 0; g < cols; g += m) {
            int64_t len = cols - g < m ? cols - g : m;
            int64_t kk = len == m ? k : (k * len + m - 1) / m; /* ceil(k * len / m) */
            float *o = out + r * cols + g;
            mark_smallest(t->data + r * cols + g, len, largest ? len - kk : kk, scratch, o);
            if (largest)
                for (int64_t j = 0; j < len; j++) o[j] = 1.0f - o[j];
        }
    }
    free(scratch);
    return 1;
}

/* A threshold of mask_below / mask_above: a number, or a [rows] tensor (one per row). */
typedef struct threshold {
    double x;
    const float *per_row; /* [rows] or NULL */
} threshold;

static threshold check_threshold(lua_State *L, int idx, const cce_tensor *t, const char *op) {
    threshold th = {0, NULL};
    if (lua_type(L, idx) == LUA_TNUMBER) {
        th.x = lua_tonumber(L, idx);
        if (isnan(th.x)) cce_lua_raise(L, "tensor:%s: the threshold is NaN", op);
        return th;
    }
    if (!is_tensor(L, idx))
        cce_lua_raise(L,
                      "tensor:%s: the threshold must be a number or a tensor of one value per row, "
                      "got %s",
                      op, luaL_typename(L, idx));
    const cce_tensor *u = check_tensor(L, idx);
    int64_t rows = cce_tensor_rows(t);
    if (u->ndim != 1 || u->shape[0] != rows) {
        char a[96], b[96];
        cce_lua_raise(
            L, "tensor:%s: a threshold tensor needs one value per row of %s ([%lld]), got %s", op,
            shape_text(t, a, sizeof a), (long long)rows, shape_text(u, b, sizeof b));
    }
    refuse_nan(L, u, op);
    th.per_row = u->data;
    return th;
}

static int mask_cmp(lua_State *L, int below, const char *op) {
    const cce_tensor *t = check_tensor(L, 1);
    threshold th = check_threshold(L, 2, t, op);
    int64_t rows = cce_tensor_rows(t), cols = cce_tensor_cols(t);
    float *out = push_like(L, t); /* [rows, cols] */
    for (int64_t r = 0; r < rows; r++) {
        double x = th.per_row ? th.per_row[r] : th.x;
        const float *v = t->data + r * cols;
        float *m = out + r * cols;
        if (below)
            for (int64_t j = 0; j < cols; j++) m[j] = (double)v[j] < x ? 1.0f : 0.0f;
        else
            for (int64_t j = 0; j < cols; j++) m[j] = (double)v[j] > x ? 1.0f : 0.0f;
    }
    return 1;
}

/* t:mask_below(x) / t:mask_above(x): a mask (1/0, t's shape) of the values strictly below /
 * above x, a number or a [rows] tensor of per-row thresholds (kth_rows, quantile(q, "row")).
 * Compared in double, so x is not rounded to float. NaN values are never below or above. O(n). */
static int t_mask_below(lua_State *L) {
    return mask_cmp(L, 1, "mask_below");
}
static int t_mask_above(lua_State *L) {
    return mask_cmp(L, 0, "mask_above");
}

/* ---- Elementwise ----------------------------------------------------------------------------- */

typedef enum { E_MUL, E_ADD, E_SUB } binary;

static int binary_op(lua_State *L, binary op, const char *name) {
    const cce_tensor *t = check_tensor(L, 1);
    operand o = check_operand(L, 2, t, name);
    int64_t n = cce_tensor_numel(t), cols = cce_tensor_cols(t);
    float *out = push_like(L, t);
    const float *v = t->data;
    if (o.kind == 0) {
        float s = o.s;
        if (op == E_MUL)
            for (int64_t j = 0; j < n; j++) out[j] = v[j] * s;
        else if (op == E_ADD)
            for (int64_t j = 0; j < n; j++) out[j] = v[j] + s;
        else
            for (int64_t j = 0; j < n; j++) out[j] = v[j] - s;
        return 1;
    }
    for (int64_t j = 0; j < n; j++) {
        float b = operand_at(&o, j, cols);
        out[j] = op == E_MUL ? v[j] * b : op == E_ADD ? v[j] + b : v[j] - b;
    }
    return 1;
}

/* t:mul(x) / t:add(x) / t:sub(x): elementwise t * x, t + x, t - x (x a number, a tensor of t's
 * shape, or a [cols] tensor applied to every row). A new tensor. O(n). */
static int t_mul(lua_State *L) {
    return binary_op(L, E_MUL, "mul");
}
static int t_add(lua_State *L) {
    return binary_op(L, E_ADD, "add");
}
static int t_sub(lua_State *L) {
    return binary_op(L, E_SUB, "sub");
}

/* t:scale(s [, per]): t * s for a number s; with per = "row" s is a [rows] tensor scaling each
 * row, with per = "col" a [cols] tensor scaling each column. A new tensor. O(n). */
static int t_scale(lua_State *L) {
    const cce_tensor *t = check_tensor(L, 1);
    int per = check_per(L, 3);
    int64_t rows = cce_tensor_rows(t), cols = cce_tensor_cols(t);
    if (lua_type(L, 2) == LUA_TNUMBER) {
        if (per != PER_ALL)
            return cce_lua_raise(L,
                                 "tensor:scale: per = \"%s\" needs a tensor of scales, not a "
                                 "number",
                                 per == PER_ROW ? "row" : "col");
        lua_settop(L, 2);
        return t_mul(L);
    }
    if (per == PER_ALL)
        return cce_lua_raise(L, "tensor:scale: a tensor of scales needs per = \"row\" or \"col\" "
                                "(use tensor:mul for an elementwise product)");
    const cce_tensor *s = check_tensor(L, 2);
    int64_t want = per == PER_ROW ? rows : cols;
    if (s->ndim != 1 || s->shape[0] != want) {
        char a[96], b[96];
        return cce_lua_raise(L,
                             "tensor:scale: per = \"%s\" needs a 1-D tensor of %lld values for %s, "
                             "got %s",
                             per == PER_ROW ? "row" : "col", (long long)want,
                             shape_text(t, a, sizeof a), shape_text(s, b, sizeof b));
    }
    float *out = push_like(L, t);
    for (int64_t r = 0; r < rows; r++) {
        const float *v = t->data + r * cols;
        float *o = out + r * cols;
        if (per == PER_ROW)
            for (int64_t j = 0; j < cols; j++) o[j] = v[j] * s->data[r];
        else
            for (int64_t j = 0; j < cols; j++) o[j] = v[j] * s->data[j];
    }
    return 1;
}

/* t:abs(): |t|. A new tensor. O(n). */
static int t_abs(lua_State *L) {
    const cce_tensor *t = check_tensor(L, 1);
    int64_t n = cce_tensor_numel(t);
    float *out = push_like(L, t);
    for (int64_t j = 0; j < n; j++) out[j] = fabsf(t->data[j]);
    return 1;
}

/* t:pow(p): each value raised to the number p (pow in double, rounded to float: x^0.5 is the
 * square root; a negative value with a fractional p gives NaN, 0^negative gives Inf). A new
 * tensor. O(n). */
static int t_pow(lua_State *L) {
    const cce_tensor *t = check_tensor(L, 1);
    double p = luaL_checknumber(L, 2);
    int64_t n = cce_tensor_numel(t);
    float *out = push_like(L, t);
    for (int64_t j = 0; j < n; j++) out[j] = (float)pow((double)t->data[j], p);
    return 1;
}

/* t:round(): each value rounded to the nearest whole number, ties to even (rintf, the rounding
 * of the built-in RTN quantizer). A new tensor. O(n). */
static int t_round(lua_State *L) {
    const cce_tensor *t = check_tensor(L, 1);
    int64_t n = cce_tensor_numel(t);
    float *out = push_like(L, t);
    for (int64_t j = 0; j < n; j++) out[j] = rintf(t->data[j]);
    return 1;
}

/* t:clamp(lo, hi): each value limited to [lo, hi] (either may be nil for no limit; lo <= hi).
 * NaN stays NaN. A new tensor. O(n). */
static int t_clamp(lua_State *L) {
    const cce_tensor *t = check_tensor(L, 1);
    double lo = luaL_optnumber(L, 2, -INFINITY), hi = luaL_optnumber(L, 3, INFINITY);
    if (isnan(lo) || isnan(hi) || lo > hi)
        return cce_lua_raise(L, "tensor:clamp: the range [%g, %g] is empty or NaN", lo, hi);
    float flo = (float)lo, fhi = (float)hi;
    int64_t n = cce_tensor_numel(t);
    float *out = push_like(L, t);
    for (int64_t j = 0; j < n; j++) {
        float v = t->data[j];
        out[j] = v < flo ? flo : v > fhi ? fhi : v;
    }
    return 1;
}

/* t:where(mask, other): t where mask is not 0, other elsewhere (a number, a tensor of t's shape,
 * or a [cols] tensor). mask: t's shape or [cols]. A new tensor. O(n). */
static int t_where(lua_State *L) {
    const cce_tensor *t = check_tensor(L, 1);
    operand m = check_mask(L, 2, t, "where");
    operand o = check_operand(L, 3, t, "where");
    int64_t n = cce_tensor_numel(t), cols = cce_tensor_cols(t);
    float *out = push_like(L, t);
    for (int64_t j = 0; j < n; j++)
        out[j] = operand_at(&m, j, cols) != 0.0f ? t->data[j] : operand_at(&o, j, cols);
    return 1;
}

/* t:select(mask): the values of t where mask is not 0, in row-major order, as a 1-D tensor (e.g.
 * the surviving weights, for their quantile), or nil when the mask selects nothing (tensors are
 * never empty). mask: t's shape or [cols]. O(n). */
static int t_select(lua_State *L) {
    const cce_tensor *t = check_tensor(L, 1);
    operand m = check_mask(L, 2, t, "select");
    int64_t n = cce_tensor_numel(t), cols = cce_tensor_cols(t), count = 0;
    for (int64_t j = 0; j < n; j++) count += operand_at(&m, j, cols) != 0.0f;
    if (count == 0) {
        lua_pushnil(L);
        return 1;
    }
    float *out = push_vector(L, count);
    for (int64_t j = 0, k = 0; j < n; j++)
        if (operand_at(&m, j, cols) != 0.0f) out[k++] = t->data[j];
    return 1;
}

static int mask_in_place(lua_State *L, int keep_where_set, const char *op) {
    cce_tensor *t = cce_lua_check_writable_tensor(L, 1)->t;
    operand m = check_mask(L, 2, t, op);
    int64_t n = cce_tensor_numel(t), cols = cce_tensor_cols(t);
    for (int64_t j = 0; j < n; j++) {
        int set = operand_at(&m, j, cols) != 0.0f;
        if (set != keep_where_set) t->data[j] = 0.0f;
    }
    lua_settop(L, 1);
    return 1;
}

/* t:apply_mask(mask): zeroes t IN PLACE where mask is 0 (keeps it where the mask is set);
 * t:zero_where(mask): zeroes t IN PLACE where mask is not 0. mask: t's shape, or [cols] (whole
 * columns). Both return t. O(n). */
static int t_apply_mask(lua_State *L) {
    return mask_in_place(L, 1, "apply_mask");
}
static int t_zero_where(lua_State *L) {
    return mask_in_place(L, 0, "zero_where");
}

/* ---- Registration ---------------------------------------------------------------------------- */

static const luaL_Reg tensor_ops[] = {
    {"sum", t_sum},
    {"mean", t_mean},
    {"norm", t_norm},
    {"min", t_min},
    {"max", t_max},
    {"count_nonzero", t_count_nonzero},
    {"quantile", t_quantile},
    {"kth_rows", t_kth_rows},
    {"topk_rows", t_topk_rows},
    {"topk", t_topk},
    {"topk_groups", t_topk_groups},
    {"mask_below", t_mask_below},
    {"mask_above", t_mask_above},
    {"mul", t_mul},
    {"add", t_add},
    {"sub", t_sub},
    {"scale", t_scale},
    {"abs", t_abs},
    {"pow", t_pow},
    {"round", t_round},
    {"clamp", t_clamp},
    {"where", t_where},
    {"select", t_select},
    {"apply_mask", t_apply_mask},
    {"zero_where", t_zero_where},
    {NULL, NULL},
};

void cce_lua_open_tensor_ops(lua_State *L) {
    cce_lua_add_methods(L, CCE_LUA_TENSOR, tensor_ops);
}
