/* The compress driver (compress.h): steps in sequence on a copy-on-write variant, block jobs of
 * copies, calibration dense or sequential, composition rules and the whole-model summary. */
#include "compress.h"

#include <cblas.h>
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "encoding.h"
#include "owl.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cce_compress_options_init(cce_compress_options *o) {
    memset(o, 0, sizeof *o);
    o->use_cache = 1;
    o->output_error = 1;
}

int cce_compress_needs_calibration(const cce_strategy_instance *inst) {
    return (cce_strategy_instance_needs(inst) & (CCE_NEEDS_CALIBRATION | CCE_NEEDS_SEQUENTIAL)) !=
               0 ||
           cce_owl_requested(cce_strategy_instance_params(inst));
}

void cce_compress_result_clear(cce_compress_result *r) {
    if (!r) return;
    cce_report_clear(&r->report);
    for (size_t k = 0; k < r->n_steps; k++) {
        if (r->steps) {
            free(r->steps[k].params);
            free(r->steps[k].params_json);
        }
        if (r->plans) cce_plan_free(r->plans[k]);
    }
    free(r->steps);
    free(r->plans);
    memset(r, 0, sizeof *r);
}

/* ---- Output error ---------------------------------------------------------------------------- */

/* tr(A S A^T) for A [rows, cols] (double, row-major); work [rows, cols]. */
static double quad_trace(const double *A, const double *S, int64_t rows, int64_t cols,
                         double *work) {
    /* work = A S (S symmetric, upper triangle read) */
    cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, (int)rows, (int)cols, 1.0, S, (int)cols, A,
                (int)cols, 0.0, work, (int)cols);
    double t = 0;
    for (int64_t i = 0; i < rows * cols; i++) t += work[i] * A[i];
    return t;
}

cce_status cce_output_error(const float *before, const float *after, int64_t rows, int64_t cols,
                            const double *S, double *out) {
    size_t n = (size_t)(rows * cols);
    *out = 0;
    if (n == 0) return CCE_OK;
    double *A = calloc(n, sizeof *A);    /* [rows, cols] */
    double *work = calloc(n, sizeof *A); /* [rows, cols] */
    if (!A || !work) {
        free(A);
        free(work);
        return cce_fail(CCE_ERR_NOMEM, "output error of a %lld x %lld tensor", (long long)rows,
                        (long long)cols);
    }
    for (size_t i = 0; i < n; i++) A[i] = before[i];
    double den = quad_trace(A, S, rows, cols, work);
    for (size_t i = 0; i < n; i++) A[i] = (double)before[i] - (double)after[i];
    double num = quad_trace(A, S, rows, cols, work);
    free(A);
    free(work);
    if (num < 0) num = 0; /* rounding of a positive semi-definite form */
    *out = den > 0 ? sqrt(num / den) : (num > 0 ? NAN : 0.0);
    return CCE_OK;
}

static double rel_fro(const float *before, const float *after, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)before[i] - (double)after[i];
        num += d * d;
        den += (double)before[i] * before[i];
    }
    return den > 0 ? sqrt(num / den) : (num > 0 ? NAN : 0.0);
}

/* ---- Rules ----------------------------------------------------------------------------------- */

/* A rule "NAME:RULE" with NAME of [a-z0-9_] and no '=' before the ':' names the strategy it
 * is for: *name receives it and the RULE part is returned. Other rules: *name = "" and the whole
 * rule is returned. */
static const char *rule_split(const char *rule, char name[32]) {
    name[0] = '\0';
    const char *colon = strchr(rule, ':'), *eq = strchr(rule, '=');
    if (!colon || (eq && eq < colon) || colon == rule || colon - rule >= 32) return rule;
    for (const char *c = rule; c < colon; c++)
        if (!islower((unsigned char)*c) && !isdigit((unsigned char)*c) && *c != '_') return rule;
    memcpy(name, rule, (size_t)(colon - rule));
    name[colon - rule] = '\0';
    return colon + 1;
}

static cce_status check_rules(cce_strategy_instance *const *steps, size_t n_steps,
                              const char *const *rules, size_t n_rules) {
    for (size_t i = 0; i < n_rules; i++) {
        char name[32];
        if (!rules[i]) return cce_fail(CCE_ERR_ARG, "compress: plan rule %zu is NULL", i);
        rule_split(rules[i], name);
        if (!*name) continue;
        int found = 0;
        for (size_t k = 0; k < n_steps && !found; k++)
            found = !strcmp(cce_strategy_instance_strategy(steps[k])->name, name);
        if (!found)
            return cce_fail(CCE_ERR_ARG, "plan rule '%s': no step of this run is strategy '%s'",
                            rules[i], name);
    }
    return CCE_OK;
}

/* ---- Driver ---------------------------------------------------------------------------------- */

typedef struct driver {
    cce_model *variant;
    const cce_calib_data *calib;
    const cce_compress_options *o;
    cce_calib_options copts;
    cce_compress_result *res;
} driver;

/* Fills in what the strategy left unknown in the rows of one tensor [first, r->n), applies the
 * composition rules of a bit-width step, and reports whether the tensor changed. */
static cce_status finish_tensor(driver *d, const cce_plan_row *decision, int bits_plan,
                                const cce_calib *calib, const cce_tensor *before, cce_tensor *after,
                                size_t first, int *changed) {
    int64_t numel = cce_tensor_numel(before), zeros_before = 0, zeros_after = 0;
    int masked = 0;
    if (!cce_tensor_same_shape(before, after))
        return cce_fail(CCE_ERR_INTERNAL, "compress: %s changed shape", decision->tensor);
    if (bits_plan) {
        for (int64_t j = 0; j < numel; j++) {
            if (before->data[j] != 0.0f) continue;
            zeros_before++;
            if (after->data[j] != 0.0f) after->data[j] = 0.0f, masked = 1;
        }
        for (int64_t j = 0; j < numel; j++) zeros_after += after->data[j] == 0.0f;
    }
    *changed = memcmp(before->data, after->data, (size_t)numel * sizeof(float)) != 0;
    const double *S = NULL;
    cce_calib_input in;
    if (calib && after->ndim == 2 && !cce_calib_input_of(calib, decision->tensor, &in) &&
        in.sum_outer && in.dim == after->shape[1])
        S = in.sum_outer;
    cce_error_clear();
    cce_report *r = &d->res->report;
    for (size_t i = first; i < r->n; i++) {
        cce_report_row *row = &r->rows[i];
        if (strcmp(row->tensor, decision->tensor)) continue;
        if (bits_plan && zeros_before > 0) {
            row->params_after = numel - zeros_after;
            row->sparsity = numel ? (double)zeros_after / (double)numel : 0;
        }
        if (masked) { /* the quantizer did not keep the mask: its bytes are of dense codes */
            int64_t bits = (int64_t)decision->value;
            int64_t adjusted = row->bytes_after - (bits * zeros_before + 7) / 8 + (numel + 7) / 8;
            if (adjusted < row->bytes_after) row->bytes_after = adjusted;
            if (row->params_before > 0)
                row->bits_per_weight = 8.0 * (double)row->bytes_after / (double)row->params_before;
        }
        if (masked || isnan(row->rel_fro_error))
            row->rel_fro_error = rel_fro(before->data, after->data, numel);
        if (S && (masked || isnan(row->output_error))) {
            cce_status s = cce_output_error(before->data, after->data, after->shape[0],
                                            after->shape[1], S, &row->output_error);
            if (s) return s;
        }
    }
    return CCE_OK;
}

/* How a changed tensor is stored (compress.h, "Encodings"): the strategy's encoding, composed
 * with the pattern of the weights that were zero before the step, kept only when smaller than
 * float32 and checked to decode to exactly the tensor. The report rows of this tensor from this
 * job [first, n) then give the stored bytes. *out NULL: plain float32. */
static cce_status encode_tensor(driver *d, const cce_tensor *before, cce_job_tensor *jt,
                                size_t first, cce_encoding **out) {
    *out = NULL;
    cce_encoding *e = jt->encoding;
    jt->encoding = NULL;
    if (!e) return CCE_OK;
    const cce_tensor *after = jt->weight;
    int64_t numel = cce_tensor_numel(after), zeros_before = 0;
    cce_status st = CCE_OK;
    if (e->ndim != after->ndim || memcmp(e->shape, after->shape, sizeof e->shape) != 0)
        st = cce_fail(CCE_ERR_INTERNAL, "compress: %s: the strategy's encoding has another shape",
                      jt->name);
    if (!st && e->quant && e->pattern == CCE_SPARSE_NONE && cce_tensor_same_shape(before, after)) {
        for (int64_t j = 0; j < numel; j++) zeros_before += before->data[j] == 0.0f;
        const cce_encoding *prev = NULL;
        if (zeros_before > 0 && !(st = cce_model_tensor_encoding(d->variant, jt->name, &prev))) {
            int nm = prev && prev->pattern == CCE_SPARSE_NM;
            st = cce_encoding_add_pattern(e, before->data, nm ? prev->nm_n : 0, nm ? prev->nm_m : 0,
                                          jt->name);
            /* without an earlier pattern, the mask only when the kept codes plus the mask are
             * smaller than all codes (cce_quant_encoded_bytes) */
            if (!st && !nm && !(prev && prev->pattern) &&
                cce_encoding_code_bytes(e) + cce_encoding_pattern_bytes(e) >=
                    cce_quant_packed_bytes(numel, e->quant->spec.bits))
                cce_encoding_drop_pattern(e);
        }
    }
    float *check = st ? NULL : malloc((size_t)(numel ? numel : 1) * sizeof *check); /* [numel] */
    if (!st && !check) st = cce_fail(CCE_ERR_NOMEM, "compress: %s: encoding check", jt->name);
    if (!st && !(st = cce_encoding_decode(e, check)) &&
        memcmp(check, after->data, (size_t)numel * sizeof *check) != 0)
        st = cce_fail(CCE_ERR_INTERNAL,
                      "compress: %s: the strategy's encoding does not decode to the tensor it "
                      "returned",
                      jt->name);
    free(check);
    if (st) {
        cce_encoding_free(e);
        return st;
    }
    int64_t bytes = cce_encoding_stored_bytes(e);
    if (bytes >= 4 * numel) { /* no smaller than float32: stored plain */
        cce_encoding_free(e);
        return CCE_OK;
    }
    cce_report *r = &d->res->report;
    for (size_t i = first; i < r->n; i++) {
        cce_report_row *row = &r->rows[i];
        if (strcmp(row->tensor, jt->name)) continue;
        row->bytes_after = bytes;
        if (row->params_before > 0)
            row->bits_per_weight = 8.0 * (double)bytes / (double)row->params_before;
    }
    *out = e;
    return CCE_OK;
}

/* The tensor names of a job: a block's present tensors, or those outside the blocks. */
static size_t job_names(cce_model *m, int layer, char names[CCE_LT_COUNT][CCE_PLAN_NAME_MAX]) {
    size_t n = 0;
    if (layer >= 0) {
        for (int w = 0; w < CCE_LT_COUNT; w++)
            cce_layer_tensor_name(layer, (cce_layer_tensor)w, names[n++], CCE_PLAN_NAME_MAX);
        return n;
    }
    snprintf(names[n++], CCE_PLAN_NAME_MAX, "%s", cce_global_tensor_name(CCE_GT_EMBED));
    snprintf(names[n++], CCE_PLAN_NAME_MAX, "%s", cce_global_tensor_name(CCE_GT_NORM));
    if (!cce_model_config(m)->tied_embeddings)
        snprintf(names[n++], CCE_PLAN_NAME_MAX, "%s", cce_global_tensor_name(CCE_GT_LM_HEAD));
    return n;
}

/* Copies of the layer's biases into the job (job->bias, NULL when absent). */
static cce_status fill_job_biases(driver *d, cce_block_job *job) {
    for (int b = 0; b < CCE_LB_COUNT; b++) {
        cce_tensor *cur;
        cce_status st = cce_model_layer_bias(d->variant, job->layer, (cce_layer_bias)b, &cur);
        if (!st && cur) st = cce_tensor_clone(cur, &job->bias[b]);
        if (st) return st;
    }
    return CCE_OK;
}

/* Which of the job's biases differ from the variant's (presence, length or values). */
static cce_status biases_changed(driver *d, const cce_block_job *job, int changed[CCE_LB_COUNT]) {
    for (int b = 0; b < CCE_LB_COUNT; b++) {
        cce_tensor *cur;
        const cce_tensor *jb = job->bias[b];
        cce_status st = cce_model_layer_bias(d->variant, job->layer, (cce_layer_bias)b, &cur);
        if (st) return st;
        changed[b] =
            !cur != !jb || (cur && (cce_tensor_numel(cur) != cce_tensor_numel(jb) ||
                                    memcmp(cur->data, jb->data,
                                           (size_t)cce_tensor_numel(cur) * sizeof(float)) != 0));
    }
    return CCE_OK;
}

/* The job's changed biases into the variant (after its weights, whose rows they match), or with
 * the layer's new widths when `reshape` (cce_model_reshape_layer_biases with fresh tensors).
 * Removed biases go first. The variant owns the ones it takes. */
static cce_status apply_biases(driver *d, cce_block_job *job, const cce_layer_shape *reshape,
                               cce_tensor *const *fresh) {
    int changed[CCE_LB_COUNT];
    cce_status st = biases_changed(d, job, changed);
    for (int b = 0; b < CCE_LB_COUNT && !st; b++)
        if (changed[b] && !job->bias[b])
            st = cce_model_set_layer_bias(d->variant, job->layer, (cce_layer_bias)b, NULL);
    if (st) return st;
    if (reshape) {
        cce_tensor *nb[CCE_LB_COUNT] = {0};
        for (int b = 0; b < CCE_LB_COUNT; b++)
            if (changed[b]) nb[b] = job->bias[b];
        if ((st = cce_model_reshape_layer_biases(d->variant, job->layer, reshape, fresh, nb)))
            return st;
        for (int b = 0; b < CCE_LB_COUNT; b++)
            if (changed[b]) job->bias[b] = NULL; /* the variant owns it now */
        return CCE_OK;
    }
    for (int b = 0; b < CCE_LB_COUNT && !st; b++) {
        if (!changed[b] || !job->bias[b]) continue;
        cce_tensor *t = job->bias[b];
        job->bias[b] = NULL;
        st = cce_model_set_layer_bias(d->variant, job->layer, (cce_layer_bias)b, t);
    }
    return st;
}

/* A job's pending widths or removal, applied to the variant with the job's changed tensors and
 * biases (cce_model_reshape_layer_biases / cce_model_remove_layer, which drops the biases too). A
 * block job holds its layer's tensors in cce_layer_tensor order (job_names), so slot i is tensor
 * kind i. */
static cce_status apply_layer_shape(driver *d, cce_block_job *job, const int *changed) {
    if (job->new_shape.removed) return cce_model_remove_layer(d->variant, job->layer);
    cce_tensor *fresh[CCE_LT_COUNT] = {0};
    for (size_t i = 0; i < job->n && i < CCE_LT_COUNT; i++)
        if (changed[i]) fresh[i] = job->tensors[i].weight;
    cce_status st = apply_biases(d, job, &job->new_shape, fresh);
    if (st) {
        cce_error_prefix("%s: ", job->tensors[0].name);
        return st;
    }
    for (size_t i = 0; i < job->n && i < CCE_LT_COUNT; i++)
        if (changed[i]) cce_block_job_take(job, i); /* the variant owns it now */
    return CCE_OK;
}

/* One block job of step k: copies in, apply, changed tensors into the variant. */
static cce_status run_job(driver *d, size_t k, cce_strategy_instance *inst, const cce_plan *plan,
                          int layer, int sequential, cce_calib *dense, cce_calib **seq) {
    const cce_strategy *s = cce_strategy_instance_strategy(inst);
    int n_layers = cce_model_config(d->variant)->n_layers;
    if (layer >= 0 && cce_model_layer(d->variant, layer)->removed) return CCE_OK;
    char names[CCE_LT_COUNT][CCE_PLAN_NAME_MAX];
    cce_plan_row rows[CCE_LT_COUNT];
    size_t n = job_names(d->variant, layer, names), active = 0;
    cce_status st = CCE_OK;
    for (size_t i = 0; i < n && !st; i++) {
        st = cce_plan_resolve(plan, layer, names[i], &rows[i]);
        active += rows[i].source != CCE_PLAN_SKIP;
    }
    if (st || active == 0) return st;
    if (d->o->progress) d->o->progress(d->o->progress_user, k, s->name, layer, n_layers);
    const cce_calib *calib = dense;
    if (sequential && layer >= 0) {
        double t0 = now_seconds();
        st = cce_calib_collect_layer(d->variant, d->calib, &d->copts, layer, seq);
        d->res->summary.calib_seconds += now_seconds() - t0;
        if (st) return st;
        calib = *seq;
    }
    cce_block_job *job;
    if ((st = cce_block_job_new(layer, n, &job))) return st;
    cce_tensor *current[CCE_LT_COUNT];
    for (size_t i = 0; i < n && !st; i++) {
        cce_tensor *copy;
        if (!(st = cce_model_tensor(d->variant, names[i], &current[i])) &&
            !(st = cce_tensor_clone(current[i], &copy)))
            st = cce_block_job_set(job, i, names[i], copy, rows[i].value,
                                   rows[i].source == CCE_PLAN_SKIP);
    }
    if (!st && layer >= 0) st = fill_job_biases(d, job);
    job->model = d->variant;
    job->calib = calib;
    job->can_resize = (s->needs & CCE_NEEDS_RESIZE) != 0;
    size_t first = d->res->report.n;
    if (!st) st = cce_strategy_instance_apply(inst, job, &d->res->report);
    int bits_plan = cce_plan_get_kind(plan) == CCE_PLAN_BITS;
    int changed[CCE_LT_COUNT] = {0};
    /* A removed block is reported by its strategy; a resized tensor by its strategy too (only
     * it knows which rows and columns went). */
    int removed = !st && job->reshaped && job->new_shape.removed;
    for (size_t i = 0; i < n && !st && !removed; i++) {
        if (job->tensors[i].skip) continue;
        if (!cce_tensor_same_shape(current[i], job->tensors[i].weight))
            changed[i] = 1;
        else
            st = finish_tensor(d, &rows[i], bits_plan, calib, current[i], job->tensors[i].weight,
                               first, &changed[i]);
    }
    if (!st && job->reshaped) {
        /* resized tensors keep their strategy's encoding (e.g. a pruned layer's factors) */
        cce_encoding *enc[CCE_LT_COUNT] = {0};
        for (size_t i = 0; i < n && i < CCE_LT_COUNT && !st; i++)
            if (changed[i]) st = encode_tensor(d, current[i], &job->tensors[i], first, &enc[i]);
        if (!st) st = apply_layer_shape(d, job, changed);
        for (size_t i = 0; i < n && i < CCE_LT_COUNT; i++) {
            cce_tensor *t, *copy = NULL;
            if (!st && enc[i] && !(st = cce_model_tensor(d->variant, names[i], &t)) &&
                !(st = cce_tensor_clone(t, &copy)) &&
                !(st = cce_model_put_encoded(d->variant, names[i], copy, enc[i])))
                enc[i] = NULL, copy = NULL;
            cce_tensor_free(copy);
            cce_encoding_free(enc[i]);
        }
        n = 0; /* nothing left to put */
    }
    for (size_t i = 0; i < n && !st; i++) {
        if (!changed[i]) continue;
        cce_encoding *enc = NULL;
        if ((st = encode_tensor(d, current[i], &job->tensors[i], first, &enc))) break;
        cce_tensor *t = cce_block_job_take(job, i);
        if ((st = cce_model_put_encoded(d->variant, names[i], t, enc))) {
            cce_tensor_free(t);
            cce_encoding_free(enc);
        }
    }
    if (!st && layer >= 0 && !job->reshaped) st = apply_biases(d, job, NULL, NULL);
    if (st) d->res->report.n = first;
    cce_block_job_free(job);
    return st;
}

/* Step k's identity and plan (its parameters plus the rules meant for it), before any work, so a
 * bad rule for a later step fails before the first one runs. */
static cce_status prepare_step(driver *d, size_t k, cce_strategy_instance *inst,
                               const char *const *rules, size_t n_rules) {
    const cce_strategy *s = cce_strategy_instance_strategy(inst);
    const cce_params *p = cce_strategy_instance_params(inst);
    cce_compress_step_info *info = &d->res->steps[k];
    snprintf(info->strategy, sizeof info->strategy, "%s", s->name);
    cce_status st;
    if ((st = cce_params_format(p, &info->params)) ||
        (st = cce_params_to_json(p, &info->params_json)) ||
        (st = cce_plan_new_from_params(p, &d->res->plans[k])))
        return st;
    for (size_t i = 0; i < n_rules; i++) {
        char name[32];
        const char *rule = rule_split(rules[i], name);
        if (*name && strcmp(name, s->name)) continue;
        if ((st = cce_plan_add_rule(d->res->plans[k], rule))) {
            cce_error_prefix("%s: ", s->name);
            return st;
        }
    }
    return CCE_OK;
}

static cce_status run_step(driver *d, size_t k, cce_strategy_instance *inst) {
    const cce_strategy *s = cce_strategy_instance_strategy(inst);
    cce_plan *plan = d->res->plans[k];
    cce_status st = CCE_OK;
    int needs = cce_compress_needs_calibration(inst);
    int sequential = (s->needs & CCE_NEEDS_SEQUENTIAL) != 0;
    cce_calib *dense = NULL, *seq = NULL;
    if (d->calib && ((needs && (!sequential || s->plan)) || (d->o->output_error && !sequential))) {
        double t0 = now_seconds();
        st = cce_calib_collect(d->variant, d->calib, &d->copts, d->o->use_cache, &dense);
        d->res->summary.calib_seconds += now_seconds() - t0;
        if (st) return st;
    }
    if (s->plan) st = cce_strategy_instance_plan(inst, d->variant, dense, plan);
    int n_layers = cce_model_config(d->variant)->n_layers;
    for (int l = 0; l < n_layers && !st; l++)
        st = run_job(d, k, inst, plan, l, sequential, dense, &seq);
    if (!st) st = run_job(d, k, inst, plan, -1, 0, dense, &seq);
    if (!st) st = cce_plan_record_model(plan, d->variant);
    cce_calib_free(dense);
    cce_calib_free(seq);
    return st;
}

/* ---- Summary --------------------------------------------------------------------------------- */

static void totals_add(cce_compress_totals *t, int64_t numel, int64_t params_after,
                       int64_t bytes_after) {
    t->tensors++;
    t->params_before += numel;
    t->params_after += params_after;
    t->bytes_before += 4 * numel;
    t->bytes_after += bytes_after;
}

/* The biases (model.h) of the blocks: parameters and float32 bytes, before (the base's) and
 * after (the variant's: sliced, added or dropped with a removed layer), not counted as tensors. */
static void add_biases(cce_model *base, cce_model *variant, cce_compress_summary *sum) {
    for (int l = 0; l < cce_model_config(base)->n_layers; l++) {
        int64_t before = 0, after = 0;
        for (int b = 0; b < CCE_LB_COUNT; b++) {
            cce_tensor *t;
            if (cce_model_has_layer_bias(base, l, (cce_layer_bias)b) &&
                !cce_model_layer_bias(base, l, (cce_layer_bias)b, &t) && t)
                before += cce_tensor_numel(t);
            if (cce_model_has_layer_bias(variant, l, (cce_layer_bias)b) &&
                !cce_model_layer_bias(variant, l, (cce_layer_bias)b, &t) && t)
                after += cce_tensor_numel(t);
        }
        cce_compress_totals *groups[2] = {&sum->model, &sum->blocks};
        for (int g = 0; g < 2; g++) {
            groups[g]->params_before += before;
            groups[g]->params_after += after;
            groups[g]->bytes_before += 4 * before;
            groups[g]->bytes_after += 4 * after;
        }
    }
    cce_error_clear();
}

static void totals_finish(cce_compress_totals *t) {
    t->byte_ratio = t->bytes_before ? 1.0 - (double)t->bytes_after / (double)t->bytes_before : 0;
    t->bits_per_weight =
        t->params_before ? 8.0 * (double)t->bytes_after / (double)t->params_before : 0;
}

/* Sizes before are the base's: structured steps shrink tensors and layer removal drops them,
 * and their report rows say what is left. */
static void summarize(cce_model *base, cce_model *variant, cce_compress_result *res) {
    cce_compress_summary *sum = &res->summary;
    size_t n = cce_model_tensor_count(base);
    for (size_t i = 0; i < n; i++) {
        const char *name = cce_model_tensor_name_at(base, i);
        int ndim;
        int64_t shape[4], numel = 1;
        cce_model_tensor_shape_at(base, i, &ndim, shape);
        for (int k = 0; k < ndim; k++) numel *= shape[k];
        int64_t params = numel, bytes = 4 * numel;
        for (size_t r = res->report.n; r-- > 0;) /* the last step that touched it */
            if (!strcmp(res->report.rows[r].tensor, name)) {
                params = res->report.rows[r].params_after;
                bytes = res->report.rows[r].bytes_after;
                break;
            }
        totals_add(&sum->model, numel, params, bytes);
        if (cce_plan_layer_of(name) >= 0)
            totals_add(&sum->blocks, numel, params, bytes);
        else if (!strcmp(name, cce_global_tensor_name(CCE_GT_EMBED)))
            totals_add(&sum->embeddings, numel, params, bytes);
        else if (!strcmp(name, cce_global_tensor_name(CCE_GT_LM_HEAD)))
            totals_add(&sum->classifier, numel, params, bytes);
    }
    add_biases(base, variant, sum);
    totals_finish(&sum->model);
    totals_finish(&sum->blocks);
    totals_finish(&sum->embeddings);
    totals_finish(&sum->classifier);
}

cce_status cce_compress(cce_model *base, cce_strategy_instance *const *steps, size_t n_steps,
                        const char *const *rules, size_t n_rules, const cce_calib_data *calib,
                        const cce_compress_options *o, cce_model **variant,
                        cce_compress_result *result) {
    if (!variant || !result) return cce_fail(CCE_ERR_ARG, "compress: no output given");
    *variant = NULL;
    memset(result, 0, sizeof *result);
    if (!base || !steps || n_steps == 0)
        return cce_fail(CCE_ERR_ARG, "compress: no model or no strategy given");
    for (size_t k = 0; k < n_steps; k++) {
        if (!steps[k]) return cce_fail(CCE_ERR_ARG, "compress: step %zu is NULL", k);
        if (!calib && cce_compress_needs_calibration(steps[k])) {
            const cce_strategy *s = cce_strategy_instance_strategy(steps[k]);
            if (cce_strategy_instance_needs(steps[k]) &
                (CCE_NEEDS_CALIBRATION | CCE_NEEDS_SEQUENTIAL))
                return cce_fail(CCE_ERR_STATE,
                                "%s: this strategy needs calibration data (give --calib)", s->name);
            return cce_fail(CCE_ERR_STATE, "%s: alloc = owl needs calibration data (give --calib)",
                            s->name);
        }
    }
    cce_status st = check_rules(steps, n_steps, rules, n_rules);
    if (st) return st;
    cce_compress_options defaults;
    cce_compress_options_init(&defaults);
    driver d = {.calib = calib, .o = o ? o : &defaults, .res = result};
    d.copts = d.o->calib;
    d.copts.second_moments = 1;
    double t0 = now_seconds();
    result->steps = calloc(n_steps, sizeof *result->steps);
    result->plans = calloc(n_steps, sizeof *result->plans);
    if (!result->steps || !result->plans) {
        cce_compress_result_clear(result);
        return cce_fail(CCE_ERR_NOMEM, "compress: %zu steps", n_steps);
    }
    result->n_steps = n_steps;
    if ((st = cce_model_variant_new(base, &d.variant))) {
        cce_compress_result_clear(result);
        return st;
    }
    for (size_t k = 0; k < n_steps && !st; k++) st = prepare_step(&d, k, steps[k], rules, n_rules);
    for (size_t k = 0; k < n_steps && !st; k++) st = run_step(&d, k, steps[k]);
    if (st) {
        cce_model_free(d.variant);
        cce_compress_result_clear(result);
        return st;
    }
    summarize(base, d.variant, result);
    result->summary.seconds = now_seconds() - t0;
    *variant = d.variant;
    return CCE_OK;
}
