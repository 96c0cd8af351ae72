/* A block job's pending layer widths, removal and biases (strategy.h): what a strategy declares,
 * for the driver to apply together with the resized tensors. */
#include <stdlib.h>
#include <string.h>

#include "strategy.h"

static cce_status check_resizable(const cce_block_job *job, const char *what) {
    if (!job->can_resize)
        return cce_fail(CCE_ERR_STATE, "layer %d: this job does not allow %s", job->layer, what);
    if (job->layer < 0)
        return cce_fail(CCE_ERR_STATE, "%s: the job holds the tensors outside the blocks", what);
    return CCE_OK;
}

void cce_block_job_clear_shape(cce_block_job *job) {
    if (!job) return;
    free(job->new_shape.kv_of_head);
    memset(&job->new_shape, 0, sizeof job->new_shape);
    job->reshaped = 0;
}

cce_status cce_block_job_set_shape(cce_block_job *job, int32_t hidden_dim, int32_t n_heads,
                                   int32_t n_kv_heads, const int32_t *kv_of_head) {
    cce_status s = check_resizable(job, "changing the layer's widths");
    if (s) return s;
    if (hidden_dim < 1 || n_heads < 1 || n_kv_heads < 1)
        return cce_fail(CCE_ERR_RANGE,
                        "layer %d: new widths hidden_dim %d, n_heads %d, n_kv_heads %d: each must "
                        "be at least 1",
                        job->layer, (int)hidden_dim, (int)n_heads, (int)n_kv_heads);
    if (!kv_of_head) return cce_fail(CCE_ERR_ARG, "layer %d: no kv_of_head given", job->layer);
    for (int h = 0; h < n_heads; h++)
        if (kv_of_head[h] < 0 || kv_of_head[h] >= n_kv_heads)
            return cce_fail(CCE_ERR_RANGE, "layer %d: kv_of_head[%d] = %d is outside [0, %d)",
                            job->layer, h, (int)kv_of_head[h], (int)n_kv_heads);
    int32_t *map = malloc((size_t)n_heads * sizeof *map); /* [n_heads] */
    if (!map) return cce_fail(CCE_ERR_NOMEM, "layer %d: head map", job->layer);
    memcpy(map, kv_of_head, (size_t)n_heads * sizeof *map);
    cce_block_job_clear_shape(job);
    job->new_shape.hidden_dim = hidden_dim;
    job->new_shape.n_heads = n_heads;
    job->new_shape.n_kv_heads = n_kv_heads;
    job->new_shape.kv_of_head = map;
    job->reshaped = 1;
    return CCE_OK;
}

cce_status cce_block_job_remove_layer(cce_block_job *job) {
    cce_status s = check_resizable(job, "removing the block");
    if (s) return s;
    cce_block_job_clear_shape(job);
    job->new_shape.removed = 1;
    job->reshaped = 1;
    return CCE_OK;
}

cce_status cce_block_job_set_bias(cce_block_job *job, cce_layer_bias which, const float *v,
                                  int64_t n) {
    if (!job) return cce_fail(CCE_ERR_ARG, "set_bias: no job given");
    if (job->layer < 0)
        return cce_fail(CCE_ERR_STATE, "set_bias: the job holds the tensors outside the blocks");
    if ((int)which < 0 || which >= CCE_LB_COUNT)
        return cce_fail(CCE_ERR_ARG, "layer %d: set_bias of unknown bias kind %d", job->layer,
                        (int)which);
    char name[CCE_PLAN_NAME_MAX];
    cce_layer_bias_name(job->layer, which, name, sizeof name);
    if (!v || n < 1)
        return cce_fail(CCE_ERR_ARG, "%s: set_bias with %lld values", name, (long long)n);
    int64_t shape[1] = {n};
    cce_tensor *t;
    cce_status s = cce_tensor_new(1, shape, &t);
    if (s) {
        cce_error_prefix("%s: ", name);
        return s;
    }
    memcpy(t->data, v, (size_t)n * sizeof *v);
    if ((s = cce_tensor_check_finite(t, name))) {
        cce_tensor_free(t);
        return s;
    }
    cce_tensor_free(job->bias_pending[which]);
    job->bias_pending[which] = t;
    return CCE_OK;
}
