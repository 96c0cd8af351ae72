/* The cce strategy's speed benchmark (`cce bench-cce`) and the stage clock it reads.
 *
 * The benchmark synthesises a model of a real shape (cce_synth_preset, random weights), draws
 * windows x len calibration tokens uniformly from the vocabulary (byte-level text would do as well:
 * the time depends on the shapes only), and runs the whole compress driver (dense statistics,
 * the plan, sequential statistics and apply block by block, reports) for each spec. The stage
 * clock splits the strategy's own time: stage 1 the eigen-redundancy of every layer (plan) and the
 * greedy removal order (apply), stage 2 the budget, stage 3 the shrinking and folding, stage 4 the
 * whitened SVDs and the rank choice with the factors; stage 0 is the driver's statistics time
 * (dense and sequential). "other" is the rest of the run (job copies, report rows with their
 * output errors, the variant). */
#include <gsl/gsl_rng.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calib.h"
#include "cce_internal.h"
#include "compress.h"
#include "prune_common.h"
#include "strategy.h"
#include "synth.h"

static double clock_wall[CCE_STAGES], clock_cpu[CCE_STAGES]; /* seconds per stage, process-wide */

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

cce_stage_mark cce_stage_clock_now(void) {
    return (cce_stage_mark){cce_prune_now(), cpu_seconds()};
}

void cce_stage_clock_add(int stage, cce_stage_mark since) {
    if (stage < 0 || stage >= CCE_STAGES) return;
    cce_stage_mark now = cce_stage_clock_now();
    clock_wall[stage] += now.wall - since.wall;
    clock_cpu[stage] += now.cpu - since.cpu;
}

void cce_stage_clock_reset(void) {
    for (int i = 0; i < CCE_STAGES; i++) clock_wall[i] = clock_cpu[i] = 0;
}

void cce_stage_clock_read(double *wall, double *cpu) {
    for (int i = 0; i < CCE_STAGES; i++) {
        if (wall) wall[i] = clock_wall[i];
        if (cpu) cpu[i] = clock_cpu[i];
    }
}

void cce_bench_cce_options_init(cce_bench_cce_options *o) {
    memset(o, 0, sizeof *o);
    o->preset = "stories110M";
    o->windows = 64;
    o->len = 256;
    o->ratio = 0.2;
    o->seed = 1;
}

/* One spec through cce_compress; fills row. */
static cce_status bench_one(cce_model *m, const cce_calib_data *d, const char *spec,
                            cce_bench_cce_row *row) {
    const cce_strategy *st;
    cce_params *p;
    cce_strategy_instance *inst = NULL;
    cce_status s = cce_strategy_parse_spec(spec, &st, &p);
    if (s) return s;
    s = cce_strategy_instance_new(st, p, &inst);
    cce_params_free(p);
    if (s) return s;
    cce_compress_options o;
    cce_compress_options_init(&o);
    o.use_cache = 0;
    o.calib.ctx = (int)d->seg_len + 1 < cce_model_config(m)->seq_len ? (int)d->seg_len + 1
                                                                     : cce_model_config(m)->seq_len;
    cce_model *v = NULL;
    cce_compress_result res = {0};
    cce_stage_clock_reset();
    double t0 = cce_prune_now(), c0 = cpu_seconds();
    s = cce_compress(m, &inst, 1, NULL, 0, d, &o, &v, &res);
    double total = cce_prune_now() - t0, cpu = cpu_seconds() - c0;
    if (!s) {
        memset(row, 0, sizeof *row);
        snprintf(row->spec, sizeof row->spec, "%.95s", spec);
        cce_stage_clock_read(row->stage, row->stage_cpu);
        row->stage[0] = res.summary.calib_seconds;
        row->stage_cpu[0] = NAN;
        row->total = total;
        row->cpu = cpu;
        row->n_layers = cce_model_config(m)->n_layers;
        const cce_compress_totals *b = &res.summary.blocks;
        row->removed = b->params_before > 0 ? 1.0 - (double)b->params_after / b->params_before : 0;
    }
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_strategy_instance_free(inst);
    return s;
}

cce_status cce_bench_cce_run(const cce_bench_cce_options *o, cce_bench_cce_row rows[2],
                             int *n_rows) {
    *n_rows = 0;
    if (o->windows < 1 || o->len < 2 || !(o->ratio >= 0 && o->ratio <= 0.9) || o->layers < 0 ||
        o->threads < 0)
        return cce_fail(CCE_ERR_ARG,
                        "bench-cce: windows %d (>= 1), len %d (>= 2), ratio %g ([0, 0.9]), "
                        "layers %d and threads %d (>= 0)",
                        o->windows, o->len, o->ratio, o->layers, o->threads);
    cce_synth_options so;
    cce_status s = cce_synth_preset(o->preset, &so);
    if (s) return s;
    so.seed = o->seed;
    if (o->layers > 0 && o->layers < so.cfg.n_layers) so.cfg.n_layers = o->layers;
    if (o->threads > 0) omp_set_num_threads(o->threads);
    cce_model *m = NULL;
    if ((s = cce_synth_model(&so, &m))) return s;
    size_t n = (size_t)o->windows * (size_t)o->len;
    int32_t *tokens = malloc(n * sizeof *tokens); /* [windows * len] */
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    if (!tokens || !rng) {
        s = cce_fail(CCE_ERR_NOMEM, "bench-cce: %zu calibration tokens", n);
        goto done;
    }
    gsl_rng_set(rng, (unsigned long)(o->seed ^ 0xcce));
    int vocab = so.cfg.vocab_size;
    for (size_t i = 0; i < n; i++)
        tokens[i] = 3 + (int32_t)gsl_rng_uniform_int(rng, (unsigned long)(vocab - 3));
    cce_calib_data d = {
        .tokens = tokens, .n_segments = (size_t)o->windows, .seg_len = (size_t)o->len};
    cce_calib_data_hash(&d);
    char specs[2][96];
    snprintf(specs[0], sizeof specs[0], "cce:ratio=%g", o->ratio);
    snprintf(specs[1], sizeof specs[1], "cce:ratio=%g,prune_heads=true", o->ratio);
    for (int i = 0; i < 2 && !s; i++)
        if (!(s = bench_one(m, &d, specs[i], &rows[i]))) (*n_rows)++;
done:
    gsl_rng_free(rng);
    free(tokens);
    cce_model_free(m);
    return s;
}

void cce_bench_cce_print(FILE *f, const cce_bench_cce_options *o, const cce_bench_cce_row *rows,
                         int n_rows) {
    fprintf(f,
            "cce on a synthetic %s (%d layers), %d x %d calibration tokens, ratio %g, %d "
            "threads\n",
            o->preset, n_rows > 0 ? rows[0].n_layers : 0, o->windows, o->len, o->ratio,
            o->threads > 0 ? o->threads : omp_get_max_threads());
    fprintf(f, "%-32s %9s %9s %9s %9s %9s %9s %9s %9s %8s\n", "spec", "stage0 s", "stage1 s",
            "stage2 s", "stage3 s", "stage4 s", "other s", "total s", "cpu s", "removed");
    for (int i = 0; i < n_rows; i++) {
        const cce_bench_cce_row *r = &rows[i];
        double other = r->total;
        for (int k = 0; k < CCE_STAGES; k++) other -= r->stage[k];
        fprintf(f, "%-32s %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %8.4f\n", r->spec,
                r->stage[0], r->stage[1], r->stage[2], r->stage[3], r->stage[4], other, r->total,
                r->cpu, r->removed);
        double cpu0 = r->cpu; /* statistics and the rest: what the stages 1-4 did not use */
        for (int k = 1; k < CCE_STAGES; k++) cpu0 -= r->stage_cpu[k];
        fprintf(f, "%-32s %9s %9.2f %9.2f %9.2f %9.2f %9s %9s %9.2f\n", "  (CPU seconds)", "-",
                r->stage_cpu[1], r->stage_cpu[2], r->stage_cpu[3], r->stage_cpu[4], "-", "-", cpu0);
    }
    fprintf(f, "stage 0: statistics (dense pass and the sequential pass of every block); 1: "
               "eigen-redundancy and greedy removal order; 2: budget; 3: shrinking and folding; "
               "4: whitened low rank; other: job copies, report rows, the variant (wall seconds); "
               "cpu: CPU seconds of the run over all threads. The (CPU seconds) line gives "
               "stages 1-4 in CPU seconds over all threads and, under cpu, what remains "
               "(statistics and the rest).\n");
}
