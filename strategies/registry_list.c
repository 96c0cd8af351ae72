/* The strategies compiled into libcce, in the order `cce strategies` lists them. Add a family here
 * after writing its file in strategies/. */
#include "strategy.h"

extern const cce_strategy cce_strategy_magnitude;  /* magnitude.c */
extern const cce_strategy cce_strategy_wanda;      /* wanda.c */
extern const cce_strategy cce_strategy_rtn;        /* rtn.c */
extern const cce_strategy cce_strategy_gptq;       /* gptq.c */
extern const cce_strategy cce_strategy_sparsegpt;  /* sparsegpt.c */
extern const cce_strategy cce_strategy_structured; /* structured.c */
extern const cce_strategy cce_strategy_shortgpt;   /* shortgpt.c */
extern const cce_strategy cce_strategy_lowrank;    /* lowrank.c */
extern const cce_strategy cce_strategy_cce;        /* cce.c */
extern const cce_strategy cce_strategy_flap;       /* flap.c */

const cce_strategy *const cce_builtin_strategies[] = {
    &cce_strategy_magnitude,
    &cce_strategy_wanda,
    &cce_strategy_rtn,
    &cce_strategy_gptq,
    &cce_strategy_sparsegpt,
    &cce_strategy_structured,
    &cce_strategy_shortgpt,
    &cce_strategy_lowrank,
    &cce_strategy_cce,
    &cce_strategy_flap,
    NULL,
};
