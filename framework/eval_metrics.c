/* The metric math of evaluation: per-position NLL, top-1, KL and Δp from logits, and the
 * statistics over all scored tokens (GSL). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>

#include "eval.h"

const double cce_eval_dp_percentiles[CCE_EVAL_DP_PERCENTILES] = {1, 5, 10, 50, 90, 95, 99};

/* Max-subtracted log-sum-exp of x [V] in double; *argmax receives the first index of the
 * maximum. NaN entries make the result NaN. */
static double log_sum_exp(const float *x, int V, int *argmax) {
    int best = 0;
    double mx = x[0];
    for (int i = 1; i < V; i++)
        if (x[i] > mx) {
            mx = x[i];
            best = i;
        }
    double sum = 0.0;
    for (int i = 0; i < V; i++) sum += exp((double)x[i] - mx);
    *argmax = best;
    return mx + log(sum);
}

/* KL(ref || model) for one position, given the model's lse_x:
 *   sum_i p_ref(i) (log p_ref(i) - log p_model(i)) = sum_i p_ref(i) (r_i - x_i) - lse_r + lse_x,
 * with p_ref(i) = e^(r_i - m) / S, S = sum_i e^(r_i - m), m = max r, in one pass over the
 * reference (one exp per entry). Identical logits give exactly 0. *lse_r and *argmax_r receive
 * the reference's log-sum-exp and first argmax. */
static double kl_position(const float *x, double lse_x, const float *r, int V, double *lse_r,
                          int *argmax_r) {
    int best = 0;
    double mx = r[0];
    for (int i = 1; i < V; i++)
        if (r[i] > mx) {
            mx = r[i];
            best = i;
        }
    double sum = 0.0, weighted = 0.0;
    for (int i = 0; i < V; i++) {
        double e = exp((double)r[i] - mx);
        sum += e;
        weighted += e * ((double)r[i] - (double)x[i]);
    }
    *lse_r = mx + log(sum);
    *argmax_r = best;
    return weighted / sum - *lse_r + lse_x;
}

cce_status cce_eval_score_logits(const float *logits, const float *ref_logits, int T, int V,
                                 const int32_t *targets, const cce_eval_scores *out) {
    if (!logits || !targets || !out || !out->nll || !out->correct)
        return cce_fail(CCE_ERR_ARG, "cce_eval_score_logits: logits, targets and scores needed");
    if (T < 0 || V < 1)
        return cce_fail(CCE_ERR_ARG, "cce_eval_score_logits: bad shape [%d, %d]", T, V);
    if (ref_logits && (!out->kl || !out->dp || !out->agree))
        return cce_fail(CCE_ERR_ARG, "cce_eval_score_logits: a reference needs kl, dp and agree");
    for (int t = 0; t < T; t++)
        if (targets[t] < 0 || targets[t] >= V)
            return cce_fail(CCE_ERR_RANGE, "target token %d at position %d is outside [0, %d)",
                            (int)targets[t], t, V);

#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *x = logits + (size_t)t * V; /* [V] */
        int am;
        double lse = log_sum_exp(x, V, &am);
        double nll = lse - (double)x[targets[t]];
        out->nll[t] = nll;
        out->correct[t] = (uint8_t)(am == targets[t]);
        if (ref_logits) {
            const float *r = ref_logits + (size_t)t * V; /* [V] */
            int am_r;
            double lse_r;
            out->kl[t] = kl_position(x, lse, r, V, &lse_r, &am_r);
            double nll_r = lse_r - (double)r[targets[t]];
            out->dp[t] = exp(-nll) - exp(-nll_r);
            out->agree[t] = (uint8_t)(am == am_r);
        }
    }

    for (int t = 0; t < T; t++) {
        if (!isfinite(out->nll[t]))
            return cce_fail(CCE_ERR_NUMERIC, "the model's logits give NLL %g at position %d",
                            out->nll[t], t);
        if (ref_logits && (!isfinite(out->kl[t]) || !isfinite(out->dp[t])))
            return cce_fail(CCE_ERR_NUMERIC,
                            "the reference's logits give KL %g, dp %g at position %d", out->kl[t],
                            out->dp[t], t);
    }
    return CCE_OK;
}

/* Standard error of the mean of x [n]: sample sd / sqrt(n); NaN below two values. */
static double std_error(const double *x, int64_t n, double mean) {
    if (n < 2) return NAN;
    return gsl_stats_sd_m(x, 1, (size_t)n, mean) / sqrt((double)n);
}

static double fraction_set(const uint8_t *flags, int64_t n) {
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) k += flags[i] != 0;
    return n > 0 ? (double)k / (double)n : NAN;
}

cce_status cce_eval_summarize(const cce_eval_scores *s, int64_t n, int has_ref,
                              cce_eval_result *out) {
    if (!s || !out || !s->nll || !s->correct || n < 1)
        return cce_fail(CCE_ERR_ARG, "cce_eval_summarize: needs scores of at least one token");
    if (has_ref && (!s->kl || !s->dp || !s->agree))
        return cce_fail(CCE_ERR_ARG, "cce_eval_summarize: a reference needs kl, dp and agree");

    out->mean_nll = gsl_stats_mean(s->nll, 1, (size_t)n);
    out->nll_stderr = std_error(s->nll, n, out->mean_nll);
    out->ppl = exp(out->mean_nll);
    out->ppl_stderr = out->ppl * out->nll_stderr; /* delta method: d exp(m) = exp(m) dm */
    out->top1 = fraction_set(s->correct, n);
    out->has_ref = has_ref != 0;
    if (!has_ref) return CCE_OK;

    out->kl_mean = gsl_stats_mean(s->kl, 1, (size_t)n);
    out->kl_stderr = std_error(s->kl, n, out->kl_mean);
    out->top1_agree = fraction_set(s->agree, n);
    out->dp_mean = gsl_stats_mean(s->dp, 1, (size_t)n);
    out->dp_stderr = std_error(s->dp, n, out->dp_mean);

    double *sorted = malloc((size_t)n * sizeof *sorted); /* [n] */
    if (!sorted)
        return cce_fail(CCE_ERR_NOMEM, "cce_eval_summarize: %lld sorted scores", (long long)n);
    memcpy(sorted, s->dp, (size_t)n * sizeof *sorted);
    gsl_sort(sorted, 1, (size_t)n);
    for (int i = 0; i < CCE_EVAL_DP_PERCENTILES; i++)
        out->dp_p[i] = gsl_stats_quantile_from_sorted_data(sorted, 1, (size_t)n,
                                                           cce_eval_dp_percentiles[i] / 100.0);
    out->dp_min = sorted[0];
    out->dp_max = sorted[n - 1];

    memcpy(sorted, s->kl, (size_t)n * sizeof *sorted);
    gsl_sort(sorted, 1, (size_t)n);
    out->kl_p99 = gsl_stats_quantile_from_sorted_data(sorted, 1, (size_t)n, 0.99);
    free(sorted);
    return CCE_OK;
}
