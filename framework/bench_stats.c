/* The cost of recording statistics (bench_stats.h). */
#include "bench_stats.h"

#include <string.h>
#include <time.h>

#include "astats.h"
#include "eval.h"
#include "results_table.h"
#include "wstats.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

cce_status cce_bench_stats(cce_model *dense, cce_model *variant, const int32_t *stream, size_t n,
                           const cce_bench_stats_options *o, cce_bench_stats_result *r) {
    if (!dense || !variant || !o || !r) return cce_fail(CCE_ERR_ARG, "bench-stats: no model");
    memset(r, 0, sizeof *r);
    if (o->reps < 1) return cce_fail(CCE_ERR_RANGE, "bench-stats: reps = %d (>= 1)", o->reps);
    cce_astats_options ao = {.ctx = o->ctx, .max_tokens = o->max_tokens};
    cce_eval_options eo = {.ctx = o->ctx, .max_tokens = o->max_tokens};
    cce_astats_ref *ref = NULL;
    cce_table *rows = NULL, *w = NULL;
    double t0 = now_seconds();
    cce_status s = cce_astats_ref_new(dense, stream, n, "bench", &ao, &ref);
    if (s) return s;
    r->ref_seconds = now_seconds() - t0;
    for (int k = 0; k < o->reps && !s; k++) {
        cce_eval_result e;
        t0 = now_seconds();
        if ((s = cce_eval(variant, dense, stream, n, &eo, &e))) break;
        double te = now_seconds() - t0;
        r->ctx = e.ctx;
        r->windows = e.n_windows;
        r->tokens = e.n_tokens;
        cce_eval_result_free(&e);
        cce_table_free(rows);
        rows = NULL;
        if ((s = cce_astats_table_new(0, &rows))) break;
        t0 = now_seconds();
        if ((s = cce_astats_eval(variant, dense, ref, stream, n, &ao, rows, &e))) break;
        double tr = now_seconds() - t0;
        cce_eval_result_free(&e);
        if (k == 0 || te < r->eval_seconds) r->eval_seconds = te;
        if (k == 0 || tr < r->record_seconds) r->record_seconds = tr;
    }
    if (!s) {
        int c = cce_table_column(rows, "count");
        for (size_t i = 0; i < rows->n_rows; i++) r->values += cce_table_i64(rows, i, c);
        r->overhead = r->eval_seconds > 0 ? r->record_seconds / r->eval_seconds - 1 : 0;
        t0 = now_seconds();
        s = cce_wstats_model(dense, variant, NULL, &w);
        r->wstats_seconds = now_seconds() - t0;
    }
    if (!s) {
        int rc = cce_table_column(w, "rows"), cc = cce_table_column(w, "cols");
        for (size_t i = 0; i < w->n_rows; i++)
            r->weights += cce_table_i64(w, i, rc) * cce_table_i64(w, i, cc);
    }
    cce_table_free(rows);
    cce_table_free(w);
    cce_astats_ref_free(ref);
    return s;
}
