/* OWL, outlier-weighted layerwise sparsity (Yin et al. 2023): an allocation rule that prunes
 * layers with many activation outliers less and layers with few more, keeping the model-wide
 * fraction removed at the target.
 *
 * 1. Layer outlier ratio D_l: over the Wanda scores |W_ij| * ||X_j|| of every linear tensor of
 *    layer l that the plan does not skip (all concatenated), the fraction above owl_m times
 *    their mean.
 * 2. Ratios: s_l = 2 (D_l - min D) / (max D - min D) - 1 in [-1, 1] (0 when all D are equal),
 *    r_l = clamp(target - owl_lambda * s_l + c, lo, hi), lo = max(0, target - owl_lambda),
 *    hi = min(1, target + owl_lambda), with the shift c chosen so that the mean of r_l weighted
 *    by each layer's allocated parameter count (the tensors the allocation decides: those of
 *    the layer that no skip, name, pattern or layer rule claims) is exactly the target. Without
 *    clamping this is the published rule (ratios spread over [target - lambda, target + lambda]
 *    by outlier ratio, re-centred on the target); the clamp keeps every ratio within lambda of
 *    the target even when the outlier ratios are lopsided. Weighting by parameter count makes
 *    the number of weights removed equal to target * (allocated parameters).
 * 3. Each layer's r_l is recorded as a layer allocation (rule "owl") in the plan.
 *
 * OWL is offered by the pruning strategies (magnitude, wanda) as schema parameters
 * `alloc=owl`, `owl_m` (default 5) and `owl_lambda` (default 0.08), so a run's parameters name
 * its allocation; CCE_OWL_PARAMS gives the three schema entries. alloc=owl needs calibration
 * data, also for magnitude (cce_owl_requested tells drivers). */
#ifndef CCE_OWL_H
#define CCE_OWL_H

#include <math.h>
#include <stdint.h>

#include "calib.h"
#include "model.h"
#include "plan.h"
#include "strategy.h"

#define CCE_OWL_RULE "owl"

/* The allocation choices: "uniform", "owl". */
extern const char *const cce_owl_alloc_choices[];

/* The schema entries alloc, owl_m, owl_lambda (for a strategy's cce_param array). */
#define CCE_OWL_PARAMS                                                                             \
    {"alloc",                                                                                      \
     CCE_PARAM_ENUM,                                                                               \
     "uniform",                                                                                    \
     0,                                                                                            \
     0,                                                                                            \
     0,                                                                                            \
     cce_owl_alloc_choices,                                                                        \
     "layer ratios: the target everywhere, or OWL (outlier-weighted; needs calibration)"},         \
        {"owl_m", CCE_PARAM_FLOAT,                                                                 \
         "5",     0,                                                                               \
         1e6,     CCE_PARAM_MIN_OPEN,                                                              \
         NULL,    "OWL: a score is an outlier above owl_m times its layer's mean score"},          \
    {                                                                                              \
        "owl_lambda", CCE_PARAM_FLOAT, "0.08", 0, 0.5, 0, NULL,                                    \
            "OWL: layer ratios stay within target +- owl_lambda"                                   \
    }

/* 1 if the parameters ask for alloc=owl (0 if the strategy has no such parameter). */
int cce_owl_requested(const cce_params *p);

/* Outlier ratios D_l of every layer, into outlier [n_layers] (NaN for layers with no unskipped
 * linear tensor), and into weight [n_layers] each layer's allocated parameter count (may be
 * NULL). Reads the weights with cce_model_tensor and the column norms from c. CCE_ERR_NOT_FOUND
 * names a tensor without statistics; CCE_ERR_RANGE owl_m <= 0. */
cce_status cce_owl_outlier_ratios(cce_model *m, const cce_calib *c, const cce_plan *plan,
                                  double owl_m, double *outlier, int64_t *weight);

/* The OWL ratios out [n] from outlier ratios [n] and weights [n] (layers of weight 0 or NaN
 * outlier ratio get the target and do not count). CCE_ERR_RANGE names a target outside [0, 1]
 * or a lambda outside [0, 1]. */
cce_status cce_owl_ratios(const double *outlier, const int64_t *weight, int n, double target,
                          double lambda, double *out);

/* Both steps on the plan's ratio target, then one layer allocation per layer that has allocated
 * parameters. `strategy` prefixes error messages. CCE_ERR_STATE without calibration;
 * CCE_ERR_ARG for a bit-width plan. */
cce_status cce_owl_allocate(cce_model *m, const cce_calib *c, cce_plan *plan, double owl_m,
                            double owl_lambda, const char *strategy);

#endif
