/* FLAP fluctuation scores, the statistics they read and standardisation (flap.h). */
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdlib.h>

#include "flap.h"
#include "plan.h"

#define NAME "flap"

static const char *const site_name[CCE_SITE_COUNT] = {"attention input", "o_proj input",
                                                      "FFN input", "down_proj input"};

const char *cce_flap_site_name(cce_calib_site site) {
    return site >= 0 && site < CCE_SITE_COUNT ? site_name[site] : "?";
}

/* ---- Scores ------------------------------------------------------------------------- */

cce_status cce_flap_variance(const cce_calib_input *in, double *var) {
    const char *site = cce_flap_site_name(in->site);
    if (in->n_tokens < 2)
        return cce_fail(CCE_ERR_ARG,
                        NAME ": layer %d, %s: %lld calibration tokens; the variance needs at "
                             "least 2",
                        in->layer, site, (long long)in->n_tokens);
    double n = (double)in->n_tokens;
    for (int j = 0; j < in->dim; j++) {
        double mu = in->sum[j] / n, v = (in->sum_sq[j] - n * mu * mu) / (n - 1);
        if (!isfinite(v))
            return cce_fail(CCE_ERR_NUMERIC, NAME ": layer %d, %s channel %d: sums not finite",
                            in->layer, site, j);
        var[j] = v > 0 ? v : 0;
    }
    return CCE_OK;
}

cce_status cce_flap_site_input(const cce_calib *c, int layer, cce_calib_site site, int dim,
                               cce_calib_input *in) {
    if (cce_calib_site_input(c, layer, site, in) || !in->sum || !in->sum_sq)
        return cce_fail(CCE_ERR_ARG, NAME ": layer %d: no %s statistics in the calibration data",
                        layer, site_name[site]);
    if (in->dim != dim)
        return cce_fail(CCE_ERR_ARG,
                        NAME ": layer %d: %s statistics of width %d, the layer has %d (statistics "
                             "of another model?)",
                        layer, site_name[site], in->dim, dim);
    return CCE_OK;
}

/* out[u] = sum over columns [u*width, (u+1)*width) of var[c] * ||w[:, c]||^2, w [rows, n*width]. */
static void column_scores(const cce_tensor *w, const double *var, int n, int width, double *out) {
    int64_t rows = w->shape[0], cols = w->shape[1];
    for (int u = 0; u < n; u++) out[u] = 0;
    for (int64_t j = 0; j < cols; j++) {
        double s = 0;
        for (int64_t i = 0; i < rows; i++)
            s += (double)w->data[i * cols + j] * w->data[i * cols + j];
        out[j / width] += var[j] * s;
    }
}

static cce_status scores_of(cce_model *m, const cce_calib *c, int layer, cce_calib_site site,
                            cce_layer_tensor which, int n, int width, double *out) {
    const cce_config *cfg = cce_model_config(m);
    cce_calib_input in;
    cce_tensor *w;
    cce_status s = cce_flap_site_input(c, layer, site, n * width, &in);
    if (s || (s = cce_model_layer_tensor(m, layer, which, &w))) return s;
    if (w->ndim != 2 || w->shape[0] != cfg->dim || w->shape[1] != (int64_t)n * width) {
        char name[CCE_PLAN_NAME_MAX];
        cce_layer_tensor_name(layer, which, name, sizeof name);
        return cce_fail(CCE_ERR_ARG, NAME ": %s is not [%d, %d] as the layer shape implies", name,
                        cfg->dim, n * width);
    }
    double *var = malloc((size_t)n * width * sizeof *var); /* [n * width] */
    if (!var) return cce_fail(CCE_ERR_NOMEM, NAME ": layer %d: %d channels", layer, n * width);
    if (!(s = cce_flap_variance(&in, var))) column_scores(w, var, n, width, out);
    free(var);
    return s;
}

cce_status cce_flap_layer_scores(cce_model *m, const cce_calib *c, int layer, double *ffn,
                                 double *heads) {
    const cce_config *cfg = cce_model_config(m);
    const cce_layer_shape *ls = cce_model_layer(m, layer);
    if (!ls || ls->removed)
        return cce_fail(CCE_ERR_ARG, NAME ": layer %d is not a block of the model", layer);
    if (!c) return cce_fail(CCE_ERR_ARG, NAME ": layer %d: no calibration statistics", layer);
    cce_status s = CCE_OK;
    if (ffn) s = scores_of(m, c, layer, CCE_SITE_DOWN_IN, CCE_LT_DOWN, ls->hidden_dim, 1, ffn);
    if (!s && heads)
        s = scores_of(m, c, layer, CCE_SITE_O_IN, CCE_LT_O, ls->n_heads, cfg->head_dim, heads);
    return s;
}

void cce_flap_standardize(double *x, size_t n) {
    double mean = n ? gsl_stats_mean(x, 1, n) : 0;
    double sd = n >= 2 ? gsl_stats_sd_m(x, 1, n, mean) : 0;
    for (size_t i = 0; i < n; i++) x[i] = sd > 0 && isfinite(sd) ? (x[i] - mean) / sd : 0;
}
