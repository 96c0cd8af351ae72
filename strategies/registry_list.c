/* The strategies compiled into libcce, in the order `cce strategies` lists them. Add a family here
 * after writing its file in strategies/. */
#include "strategy.h"

extern const cce_strategy cce_strategy_magnitude; /* magnitude.c */

const cce_strategy *const cce_builtin_strategies[] = {
    &cce_strategy_magnitude,
    NULL,
};
