/* Helpers shared by the structured-pruning strategies that shrink a block's tensors (structured,
 * flap): finding the job slots of the block tensors and checking their shapes against the layer
 * shape. */
#ifndef CCE_SHRINK_COMMON_H
#define CCE_SHRINK_COMMON_H

#include <stdint.h>

#include "strategy.h"

/* idx[w]: the slot of block tensor w in job (matched by name), or -1 when the job lacks it.
 * Nothing is allocated. */
void cce_shrink_find_tensors(const cce_block_job *job, int idx[CCE_LT_COUNT]);

/* CCE_OK when jt's weight is [rows, cols]; else CCE_ERR_ARG naming the strategy and tensor. */
cce_status cce_shrink_check_shape(const char *strategy, const cce_job_tensor *jt, int64_t rows,
                                  int64_t cols);

#endif
