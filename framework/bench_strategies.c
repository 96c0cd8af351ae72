/* Strategy speed benchmarks (bench_strategies.h): light strategies in GB/s over all block weights,
 * solving strategies in seconds per layer with synthetic calibration statistics. */
#include "bench_strategies.h"

#include <gsl/gsl_blas.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calib.h"
#include "model.h"
#include "plan.h"
#include "strategy.h"
#include "synth.h"

#define DEFAULT_PRESET "stories110M"

/* The light strategies (one pass over every block weight) and the solving ones (per layer). */
static const char *const rate_specs[] = {"rtn:bits=8", "rtn:bits=4,group=128",
                                         "magnitude:ratio=0.5", "magnitude:nm=2:4", NULL};
static const char *const layer_specs[] = {"wanda:ratio=0.5", "gptq:bits=4,group=128",
                                          "sparsegpt:ratio=0.5",
                                          "lowrank:method=whitened,ratio=0.5", NULL};

/* The linear tensors of a block, in job order, and the input site feeding each. */
static const cce_layer_tensor linear[] = {CCE_LT_Q,    CCE_LT_K,  CCE_LT_V,   CCE_LT_O,
                                          CCE_LT_GATE, CCE_LT_UP, CCE_LT_DOWN};
#define N_LINEAR (sizeof linear / sizeof linear[0])

void cce_bench_strategies_options_init(cce_bench_strategies_options *o) {
    memset(o, 0, sizeof *o);
    o->preset = DEFAULT_PRESET;
    o->reps = 3;
    o->layers = 2;
    o->calib_tokens = 4096;
    o->seed = 1;
}

void cce_bench_strategies_result_clear(cce_bench_strategies_result *r) {
    if (!r) return;
    free(r->rows);
    memset(r, 0, sizeof *r);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* OpenBLAS's OpenMP build follows OpenMP's thread count at every call. */
static void set_threads(int n) {
    omp_set_num_threads(n);
}

/* 1 if the strategy of spec ("name:...") is selected by the comma-separated list. */
static int selected(const char *only, const char *spec) {
    if (!only || !*only) return 1;
    size_t len = strcspn(spec, ":");
    for (const char *p = only; *p;) {
        size_t n = strcspn(p, ",");
        if (n == len && !strncmp(p, spec, len)) return 1;
        p += n;
        if (*p == ',') p++;
    }
    return 0;
}

/* A strategy instance and its plan for spec. The caller frees both. */
static cce_status instance_of(const char *spec, cce_model *m, const cce_calib *calib,
                              cce_strategy_instance **inst, cce_plan **plan) {
    const cce_strategy *s;
    cce_params *p;
    *inst = NULL;
    *plan = NULL;
    cce_status st = cce_strategy_parse_spec(spec, &s, &p);
    if (st) return st;
    st = cce_plan_new_from_params(p, plan);
    if (!st) st = cce_strategy_instance_new(s, p, inst);
    cce_params_free(p);
    if (!st) st = cce_strategy_instance_plan(*inst, m, calib, *plan);
    if (st) {
        cce_strategy_instance_free(*inst);
        cce_plan_free(*plan);
        *inst = NULL;
        *plan = NULL;
    }
    return st;
}

/* Runs one layer's job on copies of its linear tensors; *seconds receives the apply's time. */
static cce_status time_layer(cce_model *m, cce_strategy_instance *inst, double target, int layer,
                             const cce_calib *calib, double *seconds) {
    cce_block_job *job;
    cce_status st = cce_block_job_new(layer, N_LINEAR, &job);
    if (st) return st;
    for (size_t i = 0; !st && i < N_LINEAR; i++) {
        cce_tensor *w, *copy;
        char name[CCE_PLAN_NAME_MAX];
        cce_layer_tensor_name(layer, linear[i], name, sizeof name);
        st = cce_model_layer_tensor(m, layer, linear[i], &w);
        if (!st) st = cce_tensor_clone(w, &copy);
        if (!st) st = cce_block_job_set(job, i, name, copy, target, 0);
    }
    job->model = m;
    job->calib = calib;
    cce_report rep;
    cce_report_init(&rep);
    if (!st) {
        double t0 = now_seconds();
        st = cce_strategy_instance_apply(inst, job, &rep);
        *seconds = now_seconds() - t0;
    }
    cce_report_clear(&rep);
    cce_block_job_free(job);
    return st;
}

static cce_status add_row(cce_bench_strategies_result *r, const cce_bench_strategy_row *row) {
    cce_bench_strategy_row *rows = realloc(r->rows, (r->n + 1) * sizeof *rows);
    if (!rows) return cce_fail(CCE_ERR_NOMEM, "bench-strategies: results");
    r->rows = rows;
    r->rows[r->n++] = *row;
    return CCE_OK;
}

/* Every block weight through spec, best of reps passes, on `threads` threads. */
static cce_status bench_rate(cce_model *m, const char *spec, int threads, int reps,
                             cce_bench_strategies_result *r) {
    set_threads(threads);
    cce_strategy_instance *inst;
    cce_plan *plan;
    cce_status st = instance_of(spec, m, NULL, &inst, &plan);
    if (st) return st;
    double target = cce_plan_target(plan), best = INFINITY;
    for (int rep = 0; !st && rep < reps; rep++) {
        double total = 0;
        for (int l = 0; !st && l < r->n_layers; l++) {
            double t = 0;
            st = time_layer(m, inst, target, l, NULL, &t);
            total += t;
        }
        if (total < best) best = total;
    }
    cce_strategy_instance_free(inst);
    cce_plan_free(plan);
    if (st) return st;
    cce_bench_strategy_row row = {.kind = CCE_BENCH_STRATEGY_RATE,
                                  .threads = threads,
                                  .bytes = 4 * r->block_params,
                                  .seconds = best,
                                  .layers = r->n_layers};
    snprintf(row.spec, sizeof row.spec, "%s", spec);
    row.gbs = best > 0 ? (double)row.bytes / best / 1e9 : INFINITY;
    return add_row(r, &row);
}

/* Seconds per layer of spec over the first `layers` layers. */
static cce_status bench_layer(cce_model *m, const char *spec, int layers, const cce_calib *calib,
                              cce_bench_strategies_result *r) {
    set_threads(r->threads);
    cce_strategy_instance *inst;
    cce_plan *plan;
    cce_status st = instance_of(spec, m, calib, &inst, &plan);
    if (st) return st;
    double target = cce_plan_target(plan), total = 0;
    for (int l = 0; !st && l < layers; l++) {
        double t = 0;
        st = time_layer(m, inst, target, l, calib, &t);
        total += t;
    }
    cce_strategy_instance_free(inst);
    cce_plan_free(plan);
    if (st) return st;
    cce_bench_strategy_row row = {.kind = CCE_BENCH_STRATEGY_LAYER,
                                  .threads = r->threads,
                                  .bytes = 4 * r->layer_params,
                                  .seconds = total / layers,
                                  .layers = layers};
    snprintf(row.spec, sizeof row.spec, "%s", spec);
    row.gbs = row.seconds > 0 ? (double)row.bytes / row.seconds / 1e9 : INFINITY;
    return add_row(r, &row);
}

/* Synthetic statistics of one site of width d (see the header): sum_outer [d, d],
 * sum_sq [d], sum [d] = 0, over n tokens. Sets them for layers [0, layers). */
static cce_status synth_site(cce_calib *c, int layers, cce_calib_site site, int d, int64_t n,
                             gsl_rng *rng) {
    int k = d / 8 > 0 ? d / 8 : 1;
    double *b = malloc((size_t)d * k * sizeof *b);     /* [d, k] */
    double *g = calloc((size_t)d * d, sizeof *g);      /* [d, d] */
    double *scale = malloc((size_t)d * sizeof *scale); /* [d] */
    double *sum = calloc((size_t)d, sizeof *sum), *sq = malloc((size_t)d * sizeof *sq);
    cce_status st = CCE_OK;
    if (!b || !g || !scale || !sum || !sq) {
        st = cce_fail(CCE_ERR_NOMEM, "bench-strategies: statistics of width %d", d);
        goto done;
    }
    for (size_t i = 0; i < (size_t)d * k; i++) b[i] = gsl_ran_gaussian(rng, 1.0);
    for (int i = 0; i < d; i++) scale[i] = exp(gsl_ran_gaussian(rng, 1.0));
    /* G = B B^T / k (upper triangle), then + 0.01 I, scaled by D on both sides, times n. */
    gsl_matrix_view bv = gsl_matrix_view_array(b, (size_t)d, (size_t)k);
    gsl_matrix_view gv = gsl_matrix_view_array(g, (size_t)d, (size_t)d);
    if (gsl_blas_dsyrk(CblasUpper, CblasNoTrans, 1.0 / k, &bv.matrix, 0.0, &gv.matrix)) {
        st = cce_fail(CCE_ERR_NUMERIC, "bench-strategies: dsyrk of width %d", d);
        goto done;
    }
    for (int i = 0; i < d; i++) {
        g[(size_t)i * d + i] += 0.01;
        for (int j = i; j < d; j++) {
            double v = g[(size_t)i * d + j] * scale[i] * scale[j] * (double)n;
            g[(size_t)i * d + j] = g[(size_t)j * d + i] = v;
        }
        sq[i] = g[(size_t)i * d + i];
    }
    for (int l = 0; !st && l < layers; l++) st = cce_calib_set_input(c, l, site, d, n, sum, sq, g);
done:
    free(b);
    free(g);
    free(scale);
    free(sum);
    free(sq);
    return st;
}

static cce_status synth_calib(const cce_config *cfg, int layers, int64_t n, uint64_t seed,
                              cce_calib **out) {
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    if (!rng) return cce_fail(CCE_ERR_NOMEM, "bench-strategies: random generator");
    gsl_rng_set(rng, (unsigned long)(seed ^ 0x5eedu));
    cce_calib *c = NULL;
    cce_status st = cce_calib_new(cfg->n_layers, &c);
    if (!st) st = synth_site(c, layers, CCE_SITE_ATTN_IN, cfg->dim, n, rng);
    if (!st) st = synth_site(c, layers, CCE_SITE_O_IN, cfg->n_heads * cfg->head_dim, n, rng);
    if (!st) st = synth_site(c, layers, CCE_SITE_FFN_IN, cfg->dim, n, rng);
    if (!st) st = synth_site(c, layers, CCE_SITE_DOWN_IN, cfg->hidden_dim, n, rng);
    gsl_rng_free(rng);
    if (st) {
        cce_calib_free(c);
        return st;
    }
    *out = c;
    return CCE_OK;
}

static int64_t layer_linear_params(cce_model *m, int layer) {
    int64_t n = 0;
    for (size_t i = 0; i < N_LINEAR; i++) {
        cce_tensor *t;
        if (cce_model_layer_tensor(m, layer, linear[i], &t) == CCE_OK) n += cce_tensor_numel(t);
    }
    return n;
}

cce_status cce_bench_strategies_run(const cce_bench_strategies_options *o,
                                    cce_bench_strategies_result *r) {
    memset(r, 0, sizeof *r);
    const char *preset = o->preset ? o->preset : DEFAULT_PRESET;
    if (o->reps < 1 || o->layers < 1 || o->calib_tokens < 1 || o->threads < 0)
        return cce_fail(CCE_ERR_ARG,
                        "bench-strategies: reps %d, layers %d, calib_tokens %lld and threads %d "
                        "must be >= 1 (threads 0: all)",
                        o->reps, o->layers, (long long)o->calib_tokens, o->threads);
    int any = 0;
    for (const char *const *s = rate_specs; *s; s++) any |= selected(o->only, *s);
    for (const char *const *s = layer_specs; *s; s++) any |= selected(o->only, *s);
    if (!any)
        return cce_fail(CCE_ERR_ARG,
                        "bench-strategies: '%s' names none of rtn, magnitude, wanda, gptq, "
                        "sparsegpt, lowrank",
                        o->only);
    cce_synth_options so;
    cce_status st = cce_synth_preset(preset, &so);
    if (st) return st;
    so.seed = o->seed;
    cce_model *m = NULL;
    cce_calib *calib = NULL;
    int all = o->threads > 0 ? o->threads : omp_get_max_threads();
    if ((st = cce_synth_model(&so, &m))) return st;
    const cce_config *cfg = cce_model_config(m);
    snprintf(r->preset, sizeof r->preset, "%s", preset);
    r->n_layers = cfg->n_layers;
    r->threads = all;
    for (int l = 0; l < cfg->n_layers; l++) r->block_params += layer_linear_params(m, l);
    r->layer_params = layer_linear_params(m, 0);
    int layers = o->layers < cfg->n_layers ? o->layers : cfg->n_layers;
    const int thread_counts[2] = {1, all};
    for (int t = 0; !st && t < (all > 1 ? 2 : 1); t++)
        for (const char *const *s = rate_specs; !st && *s; s++)
            if (selected(o->only, *s)) st = bench_rate(m, *s, thread_counts[t], o->reps, r);
    int need_calib = 0;
    for (const char *const *s = layer_specs; *s; s++) need_calib |= selected(o->only, *s);
    if (!st && need_calib) {
        set_threads(all);
        st = synth_calib(cfg, layers, o->calib_tokens, o->seed, &calib);
    }
    for (const char *const *s = layer_specs; !st && *s; s++)
        if (selected(o->only, *s)) st = bench_layer(m, *s, layers, calib, r);
    set_threads(all);
    cce_calib_free(calib);
    cce_model_free(m);
    if (st) {
        cce_error_prefix("bench-strategies: ");
        cce_bench_strategies_result_clear(r);
    }
    return st;
}

void cce_bench_strategies_print(FILE *f, const cce_bench_strategies_result *r,
                                const cce_bench_strategies_options *o) {
    fprintf(f,
            "strategy speed on a synthetic %s (%d layers, %.1fM block weights = %.0f MB fp32; "
            "%d threads = all)\n",
            r->preset, r->n_layers, (double)r->block_params / 1e6,
            4.0 * (double)r->block_params / 1e6, r->threads);
    int header = 0;
    for (size_t i = 0; i < r->n; i++) {
        const cce_bench_strategy_row *row = &r->rows[i];
        if (row->kind != CCE_BENCH_STRATEGY_RATE) continue;
        if (!header++)
            fprintf(f,
                    "\nevery block weight through the strategy (one job per layer), best of %d "
                    "passes\n%-36s %7s %9s %8s\n",
                    o->reps, "strategy", "threads", "seconds", "GB/s");
        fprintf(f, "%-36s %7d %9.3f %8.2f\n", row->spec, row->threads, row->seconds, row->gbs);
    }
    header = 0;
    for (size_t i = 0; i < r->n; i++) {
        const cce_bench_strategy_row *row = &r->rows[i];
        if (row->kind != CCE_BENCH_STRATEGY_LAYER) continue;
        if (!header++)
            fprintf(f,
                    "\nper layer (7 linear tensors, %.1fM weights), mean of %d layer%s; synthetic "
                    "calibration statistics\n(E[xx^T] = D (B B^T / k + 0.01 I) D, B [d, d/8] "
                    "gaussian, log-normal channel scales D, %lld tokens)\n%-36s %7s %9s\n",
                    (double)r->layer_params / 1e6, row->layers, row->layers == 1 ? "" : "s",
                    (long long)o->calib_tokens, "strategy", "threads", "s/layer");
        fprintf(f, "%-36s %7d %9.3f\n", row->spec, row->threads, row->seconds);
    }
}
