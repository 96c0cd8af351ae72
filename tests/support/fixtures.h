/* Fixtures shared by the strategy, calibration, compress and command-line tests: block jobs
 * built from hand-made matrices, synthetic correlated calibration statistics, synthetic models
 * and token streams, and running the cce program with an expected exit status. */
#ifndef CCE_TEST_FIXTURES_H
#define CCE_TEST_FIXTURES_H

#include <gsl/gsl_rng.h>
#include <stddef.h>
#include <stdint.h>

#include "calib.h"
#include "model.h"
#include "strategy.h"
#include "test_support.h"

/* Runs `spec` on a block job of layer `layer` holding tensors names[0..nt) (all [rows, cols],
 * data w[i], copied in) at plan target `target`, with calib (may be NULL). With plan_first the
 * instance's plan stage runs first (no model, no plan). On success the results are copied back
 * into w[i]; report rows are appended to r. The caller keeps ownership of everything. */
cce_status fixture_apply_job(const char *spec, int layer, const char *const *names, float **w,
                             int nt, int64_t rows, int64_t cols, double target,
                             const cce_calib *calib, int plan_first, cce_report *r);

/* Fails the test unless parsing `spec` and making its instance gives `want` with a detail that
 * contains `needle`. */
void fixture_expect_parse_error(const char *spec, cce_status want, const char *needle);

/* Calibration statistics of tokens x [n, d] (sums, squares and second moments) set at the sites
 * sites[0..n_sites) of layer `layer` in statistics for n_layers layers. The caller frees. */
cce_calib *fixture_calib_of(const double *x, int n, int d, int n_layers, int layer,
                            const cce_calib_site *sites, int n_sites);

/* Correlated inputs x = B z + noise * e with B [d, d / rank_div] (B's entry i scaled by
 * 1 + i % 5 when uneven) and z, e standard normal. Returns x [n, d], malloc'd; the caller frees. */
double *fixture_correlated_inputs(gsl_rng *rng, int n, int d, int rank_div, double noise,
                                  int uneven);

/* tr(dW G dW^T) * n for w0, w1 [rows, cols] and tokens x [n, cols]: the summed squared output
 * change over the tokens. */
double fixture_output_sse(const float *w0, const float *w1, int rows, int cols, const double *x,
                          int n);

/* n gaussian weights of deviation sigma. [n], malloc'd; the caller frees. */
float *fixture_random_weights(gsl_rng *rng, int n, double sigma);

/* How many of w [n] are exactly zero. */
int64_t fixture_count_zeros(const float *w, int64_t n);

/* A synthetic model of a preset ("tiny", ...) with the given seed. The caller frees. */
cce_model *fixture_synth_preset(const char *preset, uint64_t seed);

/* n random tokens in [3, 300) from seed. [n], malloc'd; the caller frees. */
int32_t *fixture_random_tokens(size_t n, unsigned long seed);

/* Runs `cce <args>` (printf format, shell-quoted by the caller) and fails the test unless it
 * exits with `want`. Returns the output (malloc'd; the caller frees). */
char *fixture_run_expect(int want, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Fails the test unless out contains what. */
void fixture_expect_in(const char *out, const char *what);

/* Runs `cce synth <synth_args> -o '<path>'`. Returns its exit status. */
int fixture_synth_file(const char *synth_args, const char *path);

/* Writes a text of len bytes of letters (about one token a byte for the byte-level tokenizer)
 * with a newline every line_len bytes to path. */
void fixture_write_text(const char *path, size_t len, size_t line_len);

#endif
