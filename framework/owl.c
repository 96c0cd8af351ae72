/* OWL allocation (owl.h): layer outlier ratios from Wanda scores, and layer ratios spread by them
 * around the target with the weighted mean held at the target. */
#include "owl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const cce_owl_alloc_choices[] = {"uniform", "owl", NULL};

static const cce_layer_tensor linear_tensors[] = {CCE_LT_Q,    CCE_LT_K,  CCE_LT_V,   CCE_LT_O,
                                                  CCE_LT_GATE, CCE_LT_UP, CCE_LT_DOWN};
#define N_LINEAR (sizeof linear_tensors / sizeof linear_tensors[0])

int cce_owl_requested(const cce_params *p) {
    const cce_strategy *s = p ? cce_params_strategy(p) : NULL;
    const char *choice;
    if (!s || !cce_strategy_param(s, "alloc")) return 0;
    if (cce_params_get_enum(p, "alloc", &choice, NULL)) return 0;
    return !strcmp(choice, "owl");
}

/* One layer's unskipped linear tensors with their column norms. */
typedef struct owl_tensor {
    const cce_tensor *w;  /* [out, in] */
    const double *sum_sq; /* [in] */
} owl_tensor;

/* The outlier ratio of one layer's tensors t [n] (NaN without weights); norm: scratch [max in].
 * Two row-major passes: the mean score, then the count above owl_m times it. */
static double layer_outlier_ratio(const owl_tensor *t, size_t n, double owl_m, double *norm) {
    double total = 0, threshold = INFINITY;
    int64_t count = 0, above = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            if (count == 0) return NAN;
            threshold = owl_m * total / (double)count;
        }
        for (size_t i = 0; i < n; i++) {
            int64_t rows = cce_tensor_rows(t[i].w), cols = cce_tensor_cols(t[i].w);
            for (int64_t j = 0; j < cols; j++) norm[j] = sqrt(t[i].sum_sq[j]);
            for (int64_t r = 0; r < rows; r++) {
                const float *w = t[i].w->data + r * cols; /* [cols] */
                if (pass == 0) {
                    double acc = 0;
                    for (int64_t j = 0; j < cols; j++) acc += fabs((double)w[j]) * norm[j];
                    total += acc;
                } else {
                    for (int64_t j = 0; j < cols; j++)
                        above += fabs((double)w[j]) * norm[j] > threshold;
                }
            }
            if (pass == 0) count += rows * cols;
        }
    }
    return (double)above / (double)count;
}

cce_status cce_owl_outlier_ratios(cce_model *m, const cce_calib *c, const cce_plan *plan,
                                  double owl_m, double *outlier, int64_t *weight) {
    if (!(owl_m > 0) || !isfinite(owl_m))
        return cce_fail(CCE_ERR_RANGE, "owl: owl_m = %g must be positive", owl_m);
    if (!c) return cce_fail(CCE_ERR_STATE, "owl: needs calibration statistics");
    int n_layers = cce_model_config(m)->n_layers;
    for (int l = 0; l < n_layers; l++) {
        outlier[l] = NAN;
        if (weight) weight[l] = 0;
        const cce_layer_shape *ls = cce_model_layer(m, l);
        if (ls->removed) continue;
        owl_tensor t[N_LINEAR];
        size_t n = 0;
        for (size_t k = 0; k < N_LINEAR; k++) {
            char name[CCE_PLAN_NAME_MAX];
            cce_layer_tensor_name(l, linear_tensors[k], name, sizeof name);
            cce_plan_row d;
            cce_status s = cce_plan_resolve(plan, l, name, &d);
            if (s) return s;
            if (d.source == CCE_PLAN_SKIP) continue;
            cce_tensor *w;
            cce_calib_input in;
            if ((s = cce_model_tensor(m, name, &w)) || (s = cce_calib_input_of(c, name, &in))) {
                cce_error_prefix("owl: ");
                return s;
            }
            if (w->ndim != 2 || in.dim != w->shape[1])
                return cce_fail(CCE_ERR_ARG,
                                "owl: %s has %lld inputs but its statistics have width %d", name,
                                (long long)cce_tensor_cols(w), in.dim);
            if (cce_tensor_numel(w) == 0) continue;
            t[n++] = (owl_tensor){w, in.sum_sq};
            if (weight && d.source == CCE_PLAN_UNIFORM) weight[l] += cce_tensor_numel(w);
        }
        int64_t max_in = 1;
        for (size_t i = 0; i < n; i++)
            if (cce_tensor_cols(t[i].w) > max_in) max_in = cce_tensor_cols(t[i].w);
        double *norm = malloc((size_t)max_in * sizeof *norm); /* [max_in] */
        if (!norm) return cce_fail(CCE_ERR_NOMEM, "owl: layer %d", l);
        outlier[l] = layer_outlier_ratio(t, n, owl_m, norm);
        free(norm);
    }
    return CCE_OK;
}

/* Weighted mean of clamp(base_l + shift, lo, hi) over the counted layers. */
static double shifted_mean(const double *base, const int64_t *weight, const int *use, int n,
                           double shift, double lo, double hi, double *out) {
    double sum = 0, total = 0;
    for (int l = 0; l < n; l++) {
        if (!use[l]) continue;
        double r = base[l] + shift;
        r = r < lo ? lo : (r > hi ? hi : r);
        if (out) out[l] = r;
        sum += (double)weight[l] * r;
        total += (double)weight[l];
    }
    return total > 0 ? sum / total : 0;
}

cce_status cce_owl_ratios(const double *outlier, const int64_t *weight, int n, double target,
                          double lambda, double *out) {
    if (!(target >= 0 && target <= 1))
        return cce_fail(CCE_ERR_RANGE, "owl: target = %g is outside [0, 1]", target);
    if (!(lambda >= 0 && lambda <= 1))
        return cce_fail(CCE_ERR_RANGE, "owl: owl_lambda = %g is outside [0, 1]", lambda);
    int *use = calloc((size_t)(n > 0 ? n : 1), sizeof *use);      /* [n] */
    double *base = calloc((size_t)(n > 0 ? n : 1), sizeof *base); /* [n] */
    if (!use || !base) {
        free(use);
        free(base);
        return cce_fail(CCE_ERR_NOMEM, "owl: %d layers", n);
    }
    double dmin = INFINITY, dmax = -INFINITY, total = 0;
    for (int l = 0; l < n; l++) {
        out[l] = target;
        use[l] = weight[l] > 0 && isfinite(outlier[l]);
        if (!use[l]) continue;
        total += (double)weight[l];
        dmin = fmin(dmin, outlier[l]);
        dmax = fmax(dmax, outlier[l]);
    }
    double lo = fmax(0.0, target - lambda), hi = fmin(1.0, target + lambda);
    if (total > 0 && dmax > dmin) {
        for (int l = 0; l < n; l++)
            if (use[l]) base[l] = target - lambda * (2 * (outlier[l] - dmin) / (dmax - dmin) - 1);
        /* The weighted mean is continuous and non-decreasing in the shift, lo - target at
         * shift -(2 lambda + 1) and hi - target at 2 lambda + 1: bisect for the target. */
        double a = -(2 * lambda + 1), b = 2 * lambda + 1;
        for (int it = 0; it < 200 && b - a > 0; it++) {
            double mid = 0.5 * (a + b);
            if (shifted_mean(base, weight, use, n, mid, lo, hi, NULL) < target)
                a = mid;
            else
                b = mid;
        }
        shifted_mean(base, weight, use, n, 0.5 * (a + b), lo, hi, out);
        /* Rounding residue: spread over the layers strictly inside the bounds. */
        double sum = 0, free_w = 0;
        for (int l = 0; l < n; l++) {
            if (!use[l]) continue;
            sum += (double)weight[l] * out[l];
            if (out[l] > lo && out[l] < hi) free_w += (double)weight[l];
        }
        double fix = free_w > 0 ? (target * total - sum) / free_w : 0;
        for (int l = 0; l < n; l++)
            if (use[l] && out[l] > lo && out[l] < hi) out[l] = fmin(hi, fmax(lo, out[l] + fix));
    }
    free(use);
    free(base);
    return CCE_OK;
}

cce_status cce_owl_allocate(cce_model *m, const cce_calib *c, cce_plan *plan, double owl_m,
                            double owl_lambda, const char *strategy) {
    if (!c)
        return cce_fail(CCE_ERR_STATE, "%s: alloc = owl needs calibration data (give --calib)",
                        strategy);
    if (cce_plan_get_kind(plan) != CCE_PLAN_RATIO)
        return cce_fail(CCE_ERR_ARG, "%s: alloc = owl needs a ratio plan", strategy);
    int n = cce_model_config(m)->n_layers;
    double *outlier = malloc((size_t)n * sizeof *outlier),
           *ratio = malloc((size_t)n * sizeof *ratio);
    int64_t *weight = malloc((size_t)n * sizeof *weight);
    cce_status s = CCE_OK;
    if (!outlier || !ratio || !weight) s = cce_fail(CCE_ERR_NOMEM, "owl: %d layers", n);
    if (!s) s = cce_owl_outlier_ratios(m, c, plan, owl_m, outlier, weight);
    if (!s) s = cce_owl_ratios(outlier, weight, n, cce_plan_target(plan), owl_lambda, ratio);
    for (int l = 0; !s && l < n; l++)
        if (weight[l] > 0) s = cce_plan_allocate_layer(plan, l, ratio[l], CCE_OWL_RULE);
    if (s) cce_error_prefix("%s: ", strategy);
    free(outlier);
    free(ratio);
    free(weight);
    return s;
}
