/* A compressed model file: the variant (a cce-model v1 file, store.h) plus what made it.
 *
 * Added to the model file:
 *   /report/rows      one row per (step, tensor changed), per-column datasets: strategy,
 *                     tensor, note (fixed-length strings), layer (int32), params_before,
 *                     params_after, bytes_before, bytes_after, rank (int64), bits_per_weight,
 *                     sparsity, rel_fro_error, output_error, seconds (float64; NaN = unknown)
 *   /report/summary   rows blocks, embeddings, classifier, model: group (string), tensors,
 *                     params_before, params_after, bytes_before, bytes_after (int64),
 *                     byte_ratio, bits_per_weight (float64); attributes seconds, calib_seconds
 *   /report/steps/NN  attributes strategy, params ("k=v,..."), params_json; the applied plan as
 *                     datasets layer (int32), tensor, source, rule (strings), value (float64)
 *   every tensor a step changed carries attributes strategy ("wanda+rtn", the steps that
 *   changed it in order) and params (a JSON array of {"strategy": ..., "params": {...}}).
 * /report has attributes n_steps and strategies ("wanda+rtn"). Readers of the model ignore
 * /report, so the file loads and evaluates like any model. */
#ifndef CCE_REPORT_STORE_H
#define CCE_REPORT_STORE_H

#include "compress.h"
#include "model.h"
#include "status.h"

/* Writes the variant and its report to path: everything goes to a temporary name beside path,
 * which is fsynced and renamed into place only when complete, so an existing file at path is
 * never left half-written. opts may be NULL. */
cce_status cce_compress_save(cce_model *variant, const cce_compress_result *r, const char *path,
                             const cce_save_options *opts);

/* Reads /report/rows of a compressed model file into out (initialised here; the caller clears it
 * with cce_report_clear). CCE_ERR_NOT_FOUND if the file has no report, CCE_ERR_FORMAT naming the
 * file and dataset if it is inconsistent. */
cce_status cce_compress_report_read(const char *path, cce_report *out);

#endif
