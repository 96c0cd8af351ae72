/* FLAP fluctuation scores (strategies/flap_scores.c; strategies/flap.c is the "flap" strategy
 * built on them).
 *
 * A structured unit's score is how much the output of its layer fluctuates through it over the
 * calibration tokens: the sample variance of the unit's input channels times the squared norm of
 * the weight columns reading them. What is constant can be restored by a bias (the strategy's
 * compensation); what fluctuates is lost. */
#ifndef CCE_FLAP_H
#define CCE_FLAP_H

#include <stddef.h>

#include "calib.h"
#include "model.h"
#include "status.h"

/* "attention input", "o_proj input", "FFN input", "down_proj input" ("?" otherwise). Static. */
const char *cce_flap_site_name(cce_calib_site site);

/* The statistics of one site of one layer, checked to have sum and sum_sq and to be dim wide
 * (borrowed from c). CCE_ERR_ARG naming the layer and site otherwise. */
cce_status cce_flap_site_input(const cce_calib *c, int layer, cce_calib_site site, int dim,
                               cce_calib_input *in);

/* Per-channel sample variance of one site's statistics, in double:
 *     var[j] = (sum_sq[j] - sum[j]^2 / n) / (n - 1),  clamped at 0 (rounding),
 * var [in->dim], filled by the caller's buffer. CCE_ERR_ARG naming the layer and site when fewer
 * than 2 tokens were accumulated; CCE_ERR_NUMERIC when a sum is not finite. */
cce_status cce_flap_variance(const cce_calib_input *in, double *var);

/* The fluctuation scores of block `layer` of m from the statistics c (dense, same widths):
 *   ffn [hidden_dim]    S_j = Var(a_j) * ||W_down[:, j]||^2, a the down_proj input;
 *   heads [n_heads]     S_h = sum over the head's head_dim channels c of
 *                             Var(o_c) * ||W_o[:, c]||^2, o the o_proj input.
 * Either output may be NULL (not computed). Weights are read with cce_model_layer_tensor (loaded
 * if needed, never changed). CCE_ERR_ARG naming the layer for a removed block, missing statistics
 * or statistics of another width; CCE_ERR_NOMEM. */
cce_status cce_flap_layer_scores(cce_model *m, const cce_calib *c, int layer, double *ffn,
                                 double *heads);

/* Standardises x [n] in place, x_i <- (x_i - mean) / sd with the sample standard deviation
 * (n - 1; GSL). When n < 2 or sd is 0 (or not finite) every x_i becomes 0. */
void cce_flap_standardize(double *x, size_t n);

#endif
