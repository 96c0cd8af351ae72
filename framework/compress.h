/* The compress driver: runs strategies in sequence on a variant of a base model (DESIGN 5).
 *
 * For each step (a strategy instance, in order):
 *   1. its plan: cce_plan_new_from_params (the strategy's ratio or bits is the global target)
 *      plus the user's rules (cce_plan_add_rule texts; a rule "NAME:RULE" applies only to the
 *      steps of strategy NAME, any other rule to every step);
 *   2. calibration, when the step needs it (CCE_NEEDS_CALIBRATION, or alloc = owl) or when
 *      output errors are measured: dense statistics of the model as it enters the step (the base
 *      for the first step), from the cache when possible. A step with CCE_NEEDS_SEQUENTIAL gets,
 *      for block l, statistics collected on the variant whose blocks < l are already compressed
 *      (cce_calib_collect_layer), and dense ones only for its plan stage, if it has one;
 *   3. the strategy's plan stage (on the variant, with the dense statistics);
 *   4. one block job per layer (then one for the tensors outside the blocks, if the plan leaves
 *      any of them unskipped) holding COPIES of the variant's current tensors, so a strategy
 *      never writes into shared base tensors and a failure changes nothing; after apply, every
 *      tensor that changed is put into the variant, the others stay shared;
 *   5. the applied plan is recorded (one row per tensor of the model).
 * The driver then fills what a strategy left unknown in its report rows: the relative Frobenius
 * error, and the relative output error on calibration inputs
 *     sqrt(tr(dW S dW^T) / tr(W S W^T)),  S = sum x x^T of the tensor's input, dW = W - W'
 * (W the tensor as the step received it) whenever statistics with second moments are at hand.
 *
 * Composition keeps pruned weights exactly zero. After a step whose plan is a bit-width plan (a
 * quantizer), the driver sets every weight that was exactly zero before the step back to zero
 * and recounts params_after (non-zero weights) and sparsity. The built-in quantizers keep zeros
 * themselves and charge their codes in the sparse form (kept codes + mask) when smaller. A
 * quantizer that did not (the driver had to restore zeros) is taken to have counted dense codes:
 * its row's errors are recomputed and its bytes become the quantized kept values plus the mask,
 *     bytes = min(q, q - ceil(bits * zeros / 8) + ceil(numel / 8))
 * with q its bytes_after (DESIGN 5: the quantizer sees only the kept values, and the mask is
 * stored).
 *
 * Resizing: jobs of a strategy whose descriptor has CCE_NEEDS_RESIZE grant it (can_resize). After
 * a successful apply, a pending removal (cce_block_job_remove_layer) removes the block from the
 * variant (cce_model_remove_layer), and pending widths (cce_block_job_set_shape) are applied with
 * the resized tensors in one cce_model_reshape_layer call. The strategy fills the report rows of
 * resized and removed tensors itself (the driver cannot compare tensors of different shapes).
 * Other strategies' jobs do not grant resizing: cce_block_job_resize gives them CCE_ERR_STATE.
 * The summary's sizes before are the base's, so removed and shrunk tensors count as removed.
 *
 * Biases (model.h): a block job carries copies of its layer's biases (job->bias). After a
 * successful apply, those that differ from the variant's (set with cce_block_job_set_bias or
 * changed in place) replace them, with the new widths when the layer is reshaped
 * (cce_model_reshape_layer_biases); a removed block loses its biases. Strategies that only change
 * weights leave them as they are.
 *
 * Encodings (encoding.h). A strategy may hand back how a tensor is stored (cce_job_tensor.
 * encoding: a quant payload, a sparse pattern). The driver keeps it with the variant's tensor
 * (cce_model_put_encoded), so that saving writes the compressed form:
 *   - a quant payload of a tensor that had zeros before the step gets their pattern: the earlier
 *     step's N:M pattern, or else the mask of the non-zeros when the kept codes plus the mask
 *     are smaller than all codes ("sparse+quant"; codes outside the pattern are zero codes);
 *   - an encoding no smaller than float32 is dropped (the tensor is stored plain);
 *   - the encoding must decode bit for bit to the tensor (CCE_ERR_INTERNAL naming it otherwise),
 *     so a saved variant loads back to exactly the in-memory one;
 *   - the step's report rows of the tensor then give the stored bytes (bytes_after, bits per
 *     weight), which are what the file's datasets of that tensor hold.
 * A tensor a strategy changes without an encoding is stored as plain float32.
 *
 * On failure nothing is returned: the variant and every plan are freed, the base is untouched. */
#ifndef CCE_COMPRESS_H
#define CCE_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "calib.h"
#include "model.h"
#include "plan.h"
#include "strategy.h"

typedef struct cce_compress_options {
    cce_calib_options calib; /* ctx of the calibration windows (0: the default); second moments
                                are always collected (GPTQ-style steps and output errors) */
    int use_cache;           /* 1: dense statistics are read from / written to the cache folder */
    int output_error;        /* 1: collect statistics for output errors even when no step needs
                                calibration (only when calibration data is given) */
    /* Called before each block job: (step index, strategy name, layer or -1, n_layers). */
    void (*progress)(void *user, size_t step, const char *strategy, int layer, int n_layers);
    void *progress_user;
} cce_compress_options;

/* Defaults: default ctx, cache on, output errors on, no progress. */
void cce_compress_options_init(cce_compress_options *o);

/* Sizes of a group of tensors before and after. */
typedef struct cce_compress_totals {
    int64_t tensors;                     /* how many */
    int64_t params_before, params_after; /* weights; non-zero (or stored) weights after */
    int64_t bytes_before, bytes_after;   /* float32; under the encodings of the last step */
    double byte_ratio;                   /* 1 - bytes_after / bytes_before (0 if empty) */
    double bits_per_weight;              /* 8 * bytes_after / params_before (0 if empty) */
} cce_compress_totals;

/* The whole-model summary. */
typedef struct cce_compress_summary {
    cce_compress_totals blocks;     /* every tensor of the blocks (layers.*), norms included;
                                       biases count in the parameters and bytes (not in
                                       `tensors`), as in cce_model_layer_params */
    cce_compress_totals embeddings; /* embed_tokens (also the classifier when tied) */
    cce_compress_totals classifier; /* lm_head of an untied model (empty when tied) */
    cce_compress_totals model;      /* every tensor, final norm included (and biases) */
    double calib_seconds;           /* time spent collecting statistics */
    double seconds;                 /* the whole run */
} cce_compress_summary;

/* What one step was. */
typedef struct cce_compress_step_info {
    char strategy[32];
    char *params;      /* "k=v,k=v" (cce_params_format), owned */
    char *params_json; /* {"k": v} (cce_params_to_json), owned */
} cce_compress_step_info;

typedef struct cce_compress_result {
    cce_report report;             /* rows of every step, in order (row.strategy tells which) */
    size_t n_steps;                /* steps below */
    cce_compress_step_info *steps; /* [n_steps] */
    cce_plan **plans;              /* [n_steps]: each step's plan with its applied rows */
    cce_compress_summary summary;
} cce_compress_result;

/* Compresses a variant of base with steps [n_steps] in sequence (instances borrowed; their
 * private state is used and may be changed by plan/apply). rules [n_rules] (borrowed, may be
 * NULL when n_rules is 0) are plan rules as above. calib may be NULL when no step needs
 * calibration (CCE_ERR_STATE naming the first strategy that does, checked before any work).
 * o may be NULL (defaults). On success *variant (a variant of base, cce_model_variant_new; the
 * caller owns it and frees it before base) and *result (the caller clears it with
 * cce_compress_result_clear) are filled. On failure *variant is NULL and *result empty. */
cce_status cce_compress(cce_model *base, cce_strategy_instance *const *steps, size_t n_steps,
                        const char *const *rules, size_t n_rules, const cce_calib_data *calib,
                        const cce_compress_options *o, cce_model **variant,
                        cce_compress_result *result);

/* Frees what a result holds and zeroes it. */
void cce_compress_result_clear(cce_compress_result *r);

/* 1 if the instance needs calibration data (CCE_NEEDS_CALIBRATION, or alloc = owl). */
int cce_compress_needs_calibration(const cce_strategy_instance *inst);

/* The relative output error sqrt(tr(dW S dW^T) / tr(W S W^T)) of before -> after [rows, cols]
 * with S [cols, cols] (symmetric, row-major); 0 when both traces are 0 and NaN when only the
 * denominator is. CCE_ERR_NOMEM only. */
cce_status cce_output_error(const float *before, const float *after, int64_t rows, int64_t cols,
                            const double *S, double *out);

#endif
