/* Running strategies (strategy.h): instances (priv, init/plan/apply/fini), block jobs with their
 * resize right, report rows, and the counting and byte-accounting rules every strategy shares. */
#include "strategy.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoding.h"

/* ---- Instances ------------------------------------------------------------------------------- */

struct cce_strategy_instance {
    const cce_strategy *s;
    cce_params *p;
    void *priv;
};

cce_status cce_strategy_instance_new(const cce_strategy *s, const cce_params *p,
                                     cce_strategy_instance **out) {
    *out = NULL;
    if (cce_params_strategy(p) != s)
        return cce_fail(CCE_ERR_ARG, "%s: the parameters belong to strategy '%s'", s->name,
                        cce_params_strategy(p)->name);
    cce_strategy_instance *inst = calloc(1, sizeof *inst);
    if (!inst || !(inst->priv = calloc(1, s->priv_size ? s->priv_size : 1))) {
        free(inst);
        return cce_fail(CCE_ERR_NOMEM, "%s: out of memory for its state", s->name);
    }
    inst->s = s;
    cce_status st = cce_params_clone(p, &inst->p);
    if (!st && s->init) st = s->init(inst->priv, inst->p);
    if (st) {
        cce_strategy_instance_free(inst);
        return st;
    }
    *out = inst;
    return CCE_OK;
}

unsigned cce_strategy_instance_needs(const cce_strategy_instance *inst) {
    return inst->s->needs | (inst->s->needs_of ? inst->s->needs_of(inst->p) : 0u);
}

static cce_status check_calibration(const cce_strategy_instance *inst, const cce_calib *calib) {
    if ((cce_strategy_instance_needs(inst) & CCE_NEEDS_CALIBRATION) && !calib)
        return cce_fail(CCE_ERR_STATE, "%s: this strategy needs calibration data (give --calib)",
                        inst->s->name);
    return CCE_OK;
}

cce_status cce_strategy_instance_plan(cce_strategy_instance *inst, cce_model *m,
                                      const cce_calib *calib, cce_plan *plan) {
    cce_status st = check_calibration(inst, calib);
    if (st || !inst->s->plan) return st;
    return inst->s->plan(inst->priv, m, calib, plan);
}

/* After a successful apply: every bias the job will hold (pending or kept) has as many values as
 * its weight in the job has rows (resized or not). Not checked for a removed block, nor for a
 * bias whose weight the job does not hold. */
static cce_status check_bias_lengths(const cce_strategy *s, const cce_block_job *job) {
    if (job->layer < 0 || (job->reshaped && job->new_shape.removed)) return CCE_OK;
    for (int b = 0; b < CCE_LB_COUNT; b++) {
        const cce_tensor *bias = job->bias_pending[b] ? job->bias_pending[b] : job->bias[b];
        if (!bias) continue;
        char weight[CCE_PLAN_NAME_MAX], name[CCE_PLAN_NAME_MAX];
        cce_layer_tensor_name(job->layer, cce_layer_bias_weight((cce_layer_bias)b), weight,
                              sizeof weight);
        cce_layer_bias_name(job->layer, (cce_layer_bias)b, name, sizeof name);
        for (size_t i = 0; i < job->n; i++) {
            const cce_job_tensor *t = &job->tensors[i];
            if (strcmp(t->name, weight)) continue;
            const cce_tensor *w = t->resized ? t->resized : t->weight;
            if (!w) break;
            int64_t rows = w->shape[0], n = cce_tensor_numel(bias);
            if (bias->ndim == 1 && n == rows) break;
            if (!job->bias_pending[b])
                return cce_fail(CCE_ERR_ARG,
                                "%s: bias %s has %lld values but %s now has %lld rows: a strategy "
                                "that resizes rows must slice the bias (cce_block_job_set_bias)",
                                s->name, name, (long long)n, weight, (long long)rows);
            return cce_fail(CCE_ERR_ARG,
                            "%s: bias %s was set with %lld values but %s has %lld rows", s->name,
                            name, (long long)n, weight, (long long)rows);
        }
    }
    return CCE_OK;
}

cce_status cce_strategy_instance_apply(cce_strategy_instance *inst, cce_block_job *job,
                                       cce_report *r) {
    cce_status st = check_calibration(inst, job->calib);
    for (size_t i = 0; !st && i < job->n; i++) {
        cce_job_tensor *t = &job->tensors[i];
        if (!t->weight)
            st = cce_fail(CCE_ERR_ARG, "%s: layer %d: job slot %zu has no tensor", inst->s->name,
                          job->layer, i);
        else if (!t->skip)
            st = cce_tensor_check_finite(t->weight, t->name);
    }
    if (st) return st;
    size_t rows_before = r->n;
    st = inst->s->apply(inst->priv, job, r);
    if (!st) st = check_bias_lengths(inst->s, job);
    for (int b = 0; b < CCE_LB_COUNT; b++) {
        if (!job->bias_pending[b]) continue;
        if (st) {
            cce_tensor_free(job->bias_pending[b]);
        } else {
            cce_tensor_free(job->bias[b]);
            job->bias[b] = job->bias_pending[b];
        }
        job->bias_pending[b] = NULL;
    }
    for (size_t i = 0; i < job->n; i++) {
        cce_job_tensor *t = &job->tensors[i];
        if (!t->resized) continue;
        if (st) {
            cce_tensor_free(t->resized);
        } else {
            cce_tensor_free(t->weight);
            t->weight = t->resized;
        }
        t->resized = NULL;
    }
    if (st) {
        r->n = rows_before;
        cce_block_job_clear_shape(job);
        for (size_t i = 0; i < job->n; i++) {
            cce_encoding_free(job->tensors[i].encoding);
            job->tensors[i].encoding = NULL;
        }
    }
    return st;
}

const cce_strategy *cce_strategy_instance_strategy(const cce_strategy_instance *inst) {
    return inst->s;
}

const cce_params *cce_strategy_instance_params(const cce_strategy_instance *inst) {
    return inst->p;
}

void *cce_strategy_instance_priv(const cce_strategy_instance *inst) {
    return inst->priv;
}

void cce_strategy_instance_free(cce_strategy_instance *inst) {
    if (!inst) return;
    if (inst->s->fini) inst->s->fini(inst->priv);
    free(inst->priv);
    cce_params_free(inst->p);
    free(inst);
}

/* ---- Block jobs ------------------------------------------------------------------------------ */

cce_status cce_block_job_new(int layer, size_t n, cce_block_job **out) {
    *out = NULL;
    cce_block_job *job = calloc(1, sizeof *job);
    if (!job || !(job->tensors = calloc(n ? n : 1, sizeof *job->tensors))) {
        free(job);
        return cce_fail(CCE_ERR_NOMEM, "layer %d: out of memory for a job of %zu tensors", layer,
                        n);
    }
    job->layer = layer;
    job->n = n;
    *out = job;
    return CCE_OK;
}

cce_status cce_block_job_set(cce_block_job *job, size_t i, const char *name, cce_tensor *weight,
                             double target, int skip) {
    if (i >= job->n || !name || strlen(name) >= CCE_PLAN_NAME_MAX || !weight) {
        cce_tensor_free(weight);
        return cce_fail(CCE_ERR_ARG, "layer %d: bad job slot %zu (of %zu) or tensor name",
                        job->layer, i, job->n);
    }
    cce_job_tensor *t = &job->tensors[i];
    cce_tensor_free(t->weight);
    cce_tensor_free(t->resized);
    cce_encoding_free(t->encoding);
    memset(t, 0, sizeof *t);
    memcpy(t->name, name, strlen(name) + 1);
    t->weight = weight;
    t->target = target;
    t->skip = skip;
    return CCE_OK;
}

cce_tensor *cce_block_job_take(cce_block_job *job, size_t i) {
    if (i >= job->n) return NULL;
    cce_tensor *t = job->tensors[i].weight;
    job->tensors[i].weight = NULL;
    return t;
}

void cce_block_job_free(cce_block_job *job) {
    if (!job) return;
    for (size_t i = 0; i < job->n; i++) {
        cce_tensor_free(job->tensors[i].weight);
        cce_tensor_free(job->tensors[i].resized);
        cce_encoding_free(job->tensors[i].encoding);
    }
    for (int b = 0; b < CCE_LB_COUNT; b++) {
        cce_tensor_free(job->bias[b]);
        cce_tensor_free(job->bias_pending[b]);
    }
    cce_block_job_clear_shape(job);
    free(job->tensors);
    free(job);
}

cce_status cce_block_job_resize(cce_block_job *job, size_t i, int ndim, const int64_t *shape,
                                cce_tensor **fresh) {
    *fresh = NULL;
    if (i >= job->n)
        return cce_fail(CCE_ERR_ARG, "layer %d: resize of job slot %zu (of %zu)", job->layer, i,
                        job->n);
    cce_job_tensor *t = &job->tensors[i];
    if (!job->can_resize)
        return cce_fail(CCE_ERR_STATE, "%s: this job does not allow changing tensor shapes",
                        t->name);
    if (ndim < 1 || ndim > CCE_TENSOR_MAX_DIMS)
        return cce_fail(CCE_ERR_ARG, "%s: resize to %d dimensions", t->name, ndim);
    for (int d = 0; d < ndim; d++)
        if (shape[d] <= 0)
            return cce_fail(CCE_ERR_ARG, "%s: resize to a shape with extent %lld", t->name,
                            (long long)shape[d]);
    cce_tensor *nt;
    cce_status st = cce_tensor_new(ndim, shape, &nt);
    if (st) {
        cce_error_prefix("%s: ", t->name);
        return st;
    }
    cce_tensor_free(t->resized);
    t->resized = nt;
    *fresh = nt;
    return CCE_OK;
}

/* ---- Reports and accounting ------------------------------------------------------------------ */

int64_t cce_ratio_count(double ratio, int64_t n) {
    if (n <= 0 || !(ratio > 0)) return 0;
    if (ratio >= 1) return n;
    int64_t k = (int64_t)floor(ratio * (double)n * (1.0 + 4 * DBL_EPSILON));
    return k > n ? n : k;
}

int64_t cce_sparse_encoded_bytes(int64_t numel, int64_t kept, int nm_m) {
    int64_t dense = 4 * numel, sparse;
    if (nm_m > 0) {
        int bits = 0;
        while ((1L << bits) < nm_m) bits++;
        sparse = 4 * kept + (kept * bits + 7) / 8;
    } else {
        sparse = 4 * kept + (numel + 7) / 8;
    }
    return sparse < dense ? sparse : dense;
}

void cce_report_row_init(cce_report_row *row, const char *strategy, int layer, const char *tensor) {
    memset(row, 0, sizeof *row);
    snprintf(row->strategy, sizeof row->strategy, "%s", strategy ? strategy : "");
    row->layer = layer;
    snprintf(row->tensor, sizeof row->tensor, "%s", tensor ? tensor : "");
    row->rank = -1;
    row->bits_per_weight = row->sparsity = row->rel_fro_error = row->output_error = NAN;
}

cce_status cce_report_add(cce_report *r, const cce_report_row *row) {
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 16;
        cce_report_row *rows = realloc(r->rows, cap * sizeof *rows);
        if (!rows) return cce_fail(CCE_ERR_NOMEM, "report: out of memory for %zu rows", cap);
        r->rows = rows;
        r->cap = cap;
    }
    r->rows[r->n++] = *row;
    return CCE_OK;
}

void cce_report_init(cce_report *r) {
    memset(r, 0, sizeof *r);
}

void cce_report_clear(cce_report *r) {
    free(r->rows);
    cce_report_init(r);
}
