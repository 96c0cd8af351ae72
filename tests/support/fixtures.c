/* Fixtures shared by the strategy, calibration, compress and command-line tests. */
#include "fixtures.h"

#include <gsl/gsl_randist.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synth.h"

cce_status fixture_apply_job(const char *spec, int layer, const char *const *names, float **w,
                             int nt, int64_t rows, int64_t cols, double target,
                             const cce_calib *calib, int plan_first, cce_report *r) {
    const cce_strategy *s;
    cce_params *p;
    cce_status st = cce_strategy_parse_spec(spec, &s, &p);
    if (st) return st;
    cce_strategy_instance *inst;
    st = cce_strategy_instance_new(s, p, &inst);
    cce_params_free(p);
    if (st) return st;
    cce_block_job *job;
    assert_cce_ok(cce_block_job_new(layer, (size_t)nt, &job));
    for (int i = 0; i < nt; i++) {
        cce_tensor *t;
        assert_cce_ok(cce_tensor_new_2d(rows, cols, &t));
        memcpy(t->data, w[i], (size_t)(rows * cols) * sizeof(float)); /* [rows, cols] */
        assert_cce_ok(cce_block_job_set(job, (size_t)i, names[i], t, target, 0));
    }
    job->calib = calib;
    if (plan_first) st = cce_strategy_instance_plan(inst, NULL, calib, NULL);
    if (!st) st = cce_strategy_instance_apply(inst, job, r);
    for (int i = 0; !st && i < nt; i++)
        memcpy(w[i], job->tensors[i].weight->data, (size_t)(rows * cols) * sizeof(float));
    cce_block_job_free(job);
    cce_strategy_instance_free(inst);
    return st;
}

void fixture_expect_parse_error(const char *spec, cce_status want, const char *needle) {
    const cce_strategy *s;
    cce_params *p = NULL;
    cce_status st = cce_strategy_parse_spec(spec, &s, &p);
    cce_strategy_instance *inst = NULL;
    if (!st) {
        st = cce_strategy_instance_new(s, p, &inst);
        cce_params_free(p);
        cce_strategy_instance_free(inst);
    }
    if (st != want)
        fail_msg("%s: got %s (%s), expected %s", spec, cce_strerror(st), cce_error_detail(),
                 cce_strerror(want));
    if (!strstr(cce_error_detail(), needle))
        fail_msg("%s: detail '%s' lacks '%s'", spec, cce_error_detail(), needle);
}

cce_calib *fixture_calib_of(const double *x, int n, int d, int n_layers, int layer,
                            const cce_calib_site *sites, int n_sites) {
    double *sum = calloc((size_t)d, sizeof *sum), *sq = calloc((size_t)d, sizeof *sq); /* [d] */
    double *outer = calloc((size_t)d * d, sizeof *outer);                              /* [d, d] */
    for (int t = 0; t < n; t++)
        for (int i = 0; i < d; i++) {
            sum[i] += x[t * d + i];
            sq[i] += x[t * d + i] * x[t * d + i];
            for (int j = 0; j < d; j++) outer[i * d + j] += x[t * d + i] * x[t * d + j];
        }
    cce_calib *c;
    assert_cce_ok(cce_calib_new(n_layers, &c));
    for (int k = 0; k < n_sites; k++)
        assert_cce_ok(cce_calib_set_input(c, layer, sites[k], d, n, sum, sq, outer));
    free(sum);
    free(sq);
    free(outer);
    return c;
}

double *fixture_correlated_inputs(gsl_rng *rng, int n, int d, int rank_div, double noise,
                                  int uneven) {
    int k = d / rank_div > 0 ? d / rank_div : 1;
    double *b = malloc((size_t)d * k * sizeof *b); /* [d, k] */
    double *x = malloc((size_t)n * d * sizeof *x); /* [n, d] */
    double *z = malloc((size_t)k * sizeof *z);     /* [k] */
    for (int i = 0; i < d * k; i++)
        b[i] = uneven ? gsl_ran_gaussian(rng, 1.0) * (1 + (i % 5)) : gsl_ran_gaussian(rng, 1.0);
    for (int t = 0; t < n; t++) {
        for (int j = 0; j < k; j++) z[j] = gsl_ran_gaussian(rng, 1.0);
        for (int i = 0; i < d; i++) {
            double v = noise * gsl_ran_gaussian(rng, 1.0);
            for (int j = 0; j < k; j++) v += b[i * k + j] * z[j];
            x[t * d + i] = v;
        }
    }
    free(b);
    free(z);
    return x;
}

double fixture_output_sse(const float *w0, const float *w1, int rows, int cols, const double *x,
                          int n) {
    double sse = 0;
    for (int t = 0; t < n; t++)
        for (int o = 0; o < rows; o++) {
            double a = 0;
            for (int i = 0; i < cols; i++)
                a += ((double)w1[o * cols + i] - w0[o * cols + i]) * x[t * cols + i];
            sse += a * a;
        }
    return sse;
}

float *fixture_random_weights(gsl_rng *rng, int n, double sigma) {
    float *w = malloc((size_t)n * sizeof *w); /* [n] */
    for (int i = 0; i < n; i++) w[i] = (float)gsl_ran_gaussian(rng, sigma);
    return w;
}

int64_t fixture_count_zeros(const float *w, int64_t n) {
    int64_t z = 0;
    for (int64_t i = 0; i < n; i++) z += w[i] == 0.0f;
    return z;
}

cce_model *fixture_synth_preset(const char *preset, uint64_t seed) {
    cce_synth_options o;
    assert_cce_ok(cce_synth_preset(preset, &o));
    o.seed = seed;
    cce_model *m;
    assert_cce_ok(cce_synth_model(&o, &m));
    return m;
}

int32_t *fixture_random_tokens(size_t n, unsigned long seed) {
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, seed);
    int32_t *t = malloc(n * sizeof *t); /* [n] */
    for (size_t i = 0; i < n; i++) t[i] = 3 + (int32_t)gsl_rng_uniform_int(r, 297);
    gsl_rng_free(r);
    return t;
}

char *fixture_run_expect(int want, const char *fmt, ...) {
    char args[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *out = NULL;
    int rc = test_run_cce(args, &out);
    if (rc != want) fail_msg("cce %s exited %d, expected %d; output:\n%s", args, rc, want, out);
    return out;
}

void fixture_expect_in(const char *out, const char *what) {
    if (!strstr(out, what)) fail_msg("output lacks '%s':\n%s", what, out);
}

int fixture_synth_file(const char *synth_args, const char *path) {
    char args[8192];
    snprintf(args, sizeof args, "synth %s -o '%s'", synth_args, path);
    return test_run_cce(args, NULL);
}

void fixture_write_text(const char *path, size_t len, size_t line_len) {
    char *body = malloc(len); /* [len] */
    assert_non_null(body);
    for (size_t i = 0; i < len; i++) body[i] = (char)('a' + (i * 7 + i / 13) % 26);
    for (size_t i = line_len; i < len; i += line_len) body[i] = '\n';
    test_write_file(path, body, len);
    free(body);
}
