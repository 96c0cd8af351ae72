/* Helpers shared by the structured-pruning strategies (shrink_common.h). */
#include "shrink_common.h"

#include <string.h>

void cce_shrink_find_tensors(const cce_block_job *job, int idx[CCE_LT_COUNT]) {
    for (int w = 0; w < CCE_LT_COUNT; w++) {
        char name[CCE_PLAN_NAME_MAX];
        cce_layer_tensor_name(job->layer, (cce_layer_tensor)w, name, sizeof name);
        idx[w] = -1;
        for (size_t i = 0; i < job->n; i++)
            if (!strcmp(job->tensors[i].name, name)) idx[w] = (int)i;
    }
}

cce_status cce_shrink_check_shape(const char *strategy, const cce_job_tensor *jt, int64_t rows,
                                  int64_t cols) {
    if (jt->weight->ndim == 2 && jt->weight->shape[0] == rows && jt->weight->shape[1] == cols)
        return CCE_OK;
    return cce_fail(CCE_ERR_ARG, "%s: %s is not [%lld, %lld] as the layer shape implies", strategy,
                    jt->name, (long long)rows, (long long)cols);
}
