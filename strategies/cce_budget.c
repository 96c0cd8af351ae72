/* CCE stage 2: the per-layer budget (docs/CCE.md). See cce_internal.h for the contract.
 *
 * u_l = alpha R_l + (1 - alpha) (1 - BI_l / max_k BI_k); when every BI is 0 the second term is 1
 * for every layer (no information, so it does not separate layers). z_l is the population z-score
 * of u, 0 when std(u) <= 1e-12 (max |u|, 1) (equal u up to rounding, and one-layer models). */
#include <math.h>
#include <stdlib.h>

#include "cce_internal.h"

#define CCE_RHO_MAX    0.9
#define CCE_LAYER_MAX  0.95
#define CCE_BISECT_ITS 200

static double clip(double x, double lo, double hi) {
    return x < lo ? lo : x > hi ? hi : x;
}

static double cap_of(const cce_budget_layer *l) {
    double c = l->params > 0 ? (double)(l->max_units * l->unit) / (double)l->params : 0;
    return c < CCE_LAYER_MAX ? c : CCE_LAYER_MAX;
}

/* sum_l rho_l(c) P_l */
static double removed_at(const cce_budget_layer *layers, const cce_budget_out *out, int L,
                         double rho, double spread, double c) {
    double sum = 0;
    for (int l = 0; l < L; l++) {
        double r = clip(rho + c + clip(spread * out[l].z, -spread, spread), 0, cap_of(&layers[l]));
        sum += r * (double)layers[l].params;
    }
    return sum;
}

typedef struct unit_share {
    double frac;
    int layer;
} unit_share;

static int by_frac_desc(const void *a, const void *b) {
    const unit_share *x = a, *y = b;
    if (x->frac != y->frac) return x->frac > y->frac ? -1 : 1;
    return (x->layer > y->layer) - (x->layer < y->layer);
}

/* Whole units by largest unit_share: floor of each layer's share, then one more unit to the
 * layers of largest fractional part until the total is the nearest whole number of units to the
 * planned total (all units are checked against max_units). */
static cce_status round_units(const cce_budget_layer *layers, int L, cce_budget_out *out) {
    unit_share *rem = malloc((size_t)L * sizeof *rem); /* [L] */
    if (!rem) return cce_fail(CCE_ERR_NOMEM, CCE_NAME ": budget of %d layers", L);
    double want = 0;
    int64_t have = 0;
    for (int l = 0; l < L; l++) {
        double x = layers[l].unit > 0
                       ? out[l].planned * (double)layers[l].params / (double)layers[l].unit
                       : 0;
        want += x;
        int64_t f = (int64_t)floor(x + 1e-9);
        if (f > layers[l].max_units) f = layers[l].max_units;
        out[l].units = f;
        have += f;
        rem[l] = (unit_share){x - (double)f, l};
    }
    qsort(rem, (size_t)L, sizeof *rem, by_frac_desc);
    int64_t target = (int64_t)llround(want);
    for (int i = 0; i < L && have < target; i++) {
        int l = rem[i].layer;
        if (rem[i].frac > 0 && out[l].units < layers[l].max_units) {
            out[l].units++;
            have++;
        }
    }
    free(rem);
    for (int l = 0; l < L; l++)
        out[l].achieved = layers[l].params > 0
                              ? (double)(out[l].units * layers[l].unit) / (double)layers[l].params
                              : 0;
    return CCE_OK;
}

cce_status cce_budget_solve(const cce_budget_layer *layers, int L, double rho, double alpha,
                            double spread, int uniform, cce_budget_out *out, double *achieved) {
    if (L < 1) return cce_fail(CCE_ERR_ARG, CCE_NAME ": budget: the model has no layers");
    if (!(rho >= 0 && rho <= CCE_RHO_MAX))
        return cce_fail(CCE_ERR_RANGE, CCE_NAME ": ratio = %g is outside [0, %g]", rho,
                        CCE_RHO_MAX);
    double max_bi = 0, mean = 0, total = 0, cap_total = 0;
    for (int l = 0; l < L; l++) {
        const cce_budget_layer *b = &layers[l];
        if (!(b->R >= 0 && b->R <= 1) || !(b->BI >= 0 && isfinite(b->BI)) || b->params < 1 ||
            b->unit < 1 || b->max_units < 0)
            return cce_fail(CCE_ERR_ARG,
                            CCE_NAME ": budget: layer %d has R %g, BI %g, %lld parameters, unit "
                                     "%lld, %lld units",
                            l, b->R, b->BI, (long long)b->params, (long long)b->unit,
                            (long long)b->max_units);
        if (b->BI > max_bi) max_bi = b->BI;
        total += (double)b->params;
        cap_total += cap_of(b) * (double)b->params;
    }
    for (int l = 0; l < L; l++) {
        double infl = max_bi > 0 ? 1.0 - layers[l].BI / max_bi : 1.0;
        out[l].u = alpha * layers[l].R + (1.0 - alpha) * infl;
        mean += out[l].u;
    }
    mean /= L;
    double var = 0, umax = 1;
    for (int l = 0; l < L; l++) {
        var += (out[l].u - mean) * (out[l].u - mean);
        if (fabs(out[l].u) > umax) umax = fabs(out[l].u);
    }
    double sd = sqrt(var / L);
    for (int l = 0; l < L; l++) out[l].z = sd > 1e-12 * umax ? (out[l].u - mean) / sd : 0;

    if (uniform) {
        for (int l = 0; l < L; l++) {
            if (rho > cap_of(&layers[l]) + 1e-12)
                return cce_fail(CCE_ERR_RANGE,
                                CCE_NAME
                                ": ratio = %g with allocation = uniform exceeds what layer "
                                "%d can give (%.4f of its parameters)",
                                rho, l, cap_of(&layers[l]));
            out[l].planned = rho;
        }
    } else {
        double goal = rho * total;
        if (cap_total < goal * (1 - 1e-12))
            return cce_fail(CCE_ERR_RANGE,
                            CCE_NAME ": ratio = %g exceeds what the layers can give (%.4f of the "
                                     "block parameters)",
                            rho, cap_total / total);
        double lo = -1.0 - 2 * spread, hi = 1.0 + 2 * spread;
        for (int it = 0; it < CCE_BISECT_ITS; it++) {
            double mid = 0.5 * (lo + hi);
            if (removed_at(layers, out, L, rho, spread, mid) < goal)
                lo = mid;
            else
                hi = mid;
        }
        for (int l = 0; l < L; l++)
            out[l].planned =
                clip(rho + hi + clip(spread * out[l].z, -spread, spread), 0, cap_of(&layers[l]));
    }
    cce_status s = round_units(layers, L, out);
    if (s) return s;
    if (achieved) {
        double rem = 0;
        for (int l = 0; l < L; l++) rem += (double)(out[l].units * layers[l].unit);
        *achieved = rem / total;
    }
    return CCE_OK;
}
