/* The paired block bootstrap (bootstrap.h): GSL's mt19937 for the resampling, GSL statistics for
 * the quantiles and the spread. */
#include "bootstrap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_rng.h>
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>

static cce_status check_options(const cce_bootstrap_options *in, cce_bootstrap_options *o) {
    *o = in ? *in : (cce_bootstrap_options){0};
    if (o->resamples == 0) o->resamples = CCE_BOOTSTRAP_DEFAULT_RESAMPLES;
    if (o->level == 0) o->level = 0.95;
    if (o->resamples < 1 || o->resamples > CCE_BOOTSTRAP_MAX_RESAMPLES)
        return cce_fail(CCE_ERR_RANGE, "bootstrap resamples = %d is outside [1, %d]", o->resamples,
                        CCE_BOOTSTRAP_MAX_RESAMPLES);
    if (!(o->level > 0 && o->level < 1))
        return cce_fail(CCE_ERR_RANGE, "bootstrap level = %g is outside (0, 1)", o->level);
    return CCE_OK;
}

cce_status cce_bootstrap_paired_blocks(const double *sum_a, const double *sum_b,
                                       const double *count, size_t n_blocks,
                                       const cce_bootstrap_options *opts,
                                       cce_bootstrap_result *out) {
    if (!out) return cce_fail(CCE_ERR_ARG, "cce_bootstrap_paired_blocks: no result");
    memset(out, 0, sizeof *out);
    if ((!sum_a || !sum_b) && n_blocks)
        return cce_fail(CCE_ERR_ARG, "cce_bootstrap_paired_blocks: no values");
    cce_bootstrap_options o;
    cce_status s = check_options(opts, &o);
    if (s) return s;
    if (n_blocks < 2)
        return cce_fail(CCE_ERR_RANGE,
                        "the bootstrap needs at least 2 blocks (windows or items), got %zu",
                        n_blocks);
    double total_a = 0, total_b = 0, total_n = 0;
    for (size_t k = 0; k < n_blocks; k++) {
        double n_k = count ? count[k] : 1.0;
        if (!isfinite(sum_a[k]) || !isfinite(sum_b[k]))
            return cce_fail(CCE_ERR_NUMERIC, "bootstrap block %zu: values %g and %g", k, sum_a[k],
                            sum_b[k]);
        if (!(n_k > 0) || !isfinite(n_k))
            return cce_fail(CCE_ERR_RANGE, "bootstrap block %zu: count %g is not positive", k, n_k);
        total_a += sum_a[k];
        total_b += sum_b[k];
        total_n += n_k;
    }

    double *d = malloc(n_blocks * sizeof *d);                  /* [n_blocks] d_k */
    double *stat = malloc((size_t)o.resamples * sizeof *stat); /* [B] D* */
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    if (!d || !stat || !rng) {
        free(d);
        free(stat);
        gsl_rng_free(rng);
        return cce_fail(CCE_ERR_NOMEM, "bootstrap of %zu blocks, %d resamples", n_blocks,
                        o.resamples);
    }
    for (size_t k = 0; k < n_blocks; k++) d[k] = sum_a[k] - sum_b[k];
    gsl_rng_set(rng, (unsigned long)o.seed);
    for (int b = 0; b < o.resamples; b++) {
        double sd = 0, sn = 0;
        for (size_t j = 0; j < n_blocks; j++) {
            size_t k = (size_t)gsl_rng_uniform_int(rng, (unsigned long)n_blocks);
            sd += d[k];
            sn += count ? count[k] : 1.0;
        }
        stat[b] = sd / sn;
    }
    gsl_rng_free(rng);
    gsl_sort(stat, 1, (size_t)o.resamples);
    double tail = (1.0 - o.level) / 2.0;
    out->ci_low = gsl_stats_quantile_from_sorted_data(stat, 1, (size_t)o.resamples, tail);
    out->ci_high = gsl_stats_quantile_from_sorted_data(stat, 1, (size_t)o.resamples, 1.0 - tail);
    out->se = o.resamples > 1 ? gsl_stats_sd(stat, 1, (size_t)o.resamples) : NAN;
    free(stat);
    double total_d = 0;
    for (size_t k = 0; k < n_blocks; k++) total_d += d[k];
    free(d);
    out->mean_a = total_a / total_n;
    out->mean_b = total_b / total_n;
    out->diff = total_d / total_n;
    out->significant = out->ci_low > 0 || out->ci_high < 0;
    out->n_blocks = n_blocks;
    out->n_values = total_n;
    out->resamples = o.resamples;
    out->seed = o.seed;
    out->level = o.level;
    return CCE_OK;
}

void cce_bootstrap_block_sums(const double *x, size_t n, size_t block_len, double *sums) {
    if (block_len == 0) return;
    for (size_t k = 0; k * block_len < n; k++) {
        size_t end = (k + 1) * block_len < n ? (k + 1) * block_len : n;
        double s = 0;
        for (size_t i = k * block_len; i < end; i++) s += x[i];
        sums[k] = s;
    }
}

cce_status cce_bootstrap_paired(const double *a, const double *b, size_t n, size_t block_len,
                                const cce_bootstrap_options *o, cce_bootstrap_result *out) {
    if (!out) return cce_fail(CCE_ERR_ARG, "cce_bootstrap_paired: no result");
    memset(out, 0, sizeof *out);
    if (block_len == 0) return cce_fail(CCE_ERR_ARG, "bootstrap block length 0");
    if ((!a || !b) && n) return cce_fail(CCE_ERR_ARG, "cce_bootstrap_paired: no values");
    size_t nb = n / block_len + (n % block_len != 0);
    double *buf = malloc((3 * nb + 1) * sizeof *buf); /* sums of a, of b, counts: [3, nb] */
    if (!buf) return cce_fail(CCE_ERR_NOMEM, "bootstrap of %zu blocks", nb);
    double *sa = buf, *sb = buf + nb, *cnt = buf + 2 * nb;
    if (nb) {
        cce_bootstrap_block_sums(a, n, block_len, sa);
        cce_bootstrap_block_sums(b, n, block_len, sb);
    }
    for (size_t k = 0; k < nb; k++)
        cnt[k] = (double)((k + 1) * block_len < n ? block_len : n - k * block_len);
    cce_status s = cce_bootstrap_paired_blocks(sa, sb, cnt, nb, o, out);
    free(buf);
    return s;
}

cce_status cce_bootstrap_paired_flags(const uint8_t *a, const uint8_t *b, size_t n,
                                      const cce_bootstrap_options *o, cce_bootstrap_result *out) {
    if (!out) return cce_fail(CCE_ERR_ARG, "cce_bootstrap_paired_flags: no result");
    memset(out, 0, sizeof *out);
    if ((!a || !b) && n) return cce_fail(CCE_ERR_ARG, "cce_bootstrap_paired_flags: no values");
    double *buf = malloc((2 * n + 1) * sizeof *buf); /* [2, n] */
    if (!buf) return cce_fail(CCE_ERR_NOMEM, "bootstrap of %zu items", n);
    for (size_t i = 0; i < n; i++) {
        buf[i] = a[i] ? 1.0 : 0.0;
        buf[n + i] = b[i] ? 1.0 : 0.0;
    }
    cce_status s = cce_bootstrap_paired_blocks(buf, buf + n, NULL, n, o, out);
    free(buf);
    return s;
}

static json_t *real_or_null(double x) {
    return isfinite(x) ? json_real(x) : json_null();
}

json_t *cce_bootstrap_result_json(const cce_bootstrap_result *r) {
    json_t *o = json_object();
    if (!o) return NULL;
    struct {
        const char *key;
        json_t *value;
    } f[] = {
        {"a", real_or_null(r->mean_a)},
        {"b", real_or_null(r->mean_b)},
        {"diff", real_or_null(r->diff)},
        {"ci_low", real_or_null(r->ci_low)},
        {"ci_high", real_or_null(r->ci_high)},
        {"se", real_or_null(r->se)},
        {"significant", json_boolean(r->significant)},
        {"blocks", json_integer((json_int_t)r->n_blocks)},
        {"values", real_or_null(r->n_values)},
        {"resamples", json_integer(r->resamples)},
        {"seed", json_integer((json_int_t)r->seed)},
        {"level", real_or_null(r->level)},
    };
    int ok = 1;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        ok = f[i].value && json_object_set_new(o, f[i].key, f[i].value) == 0 && ok;
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}
