/* cce eval, shared between its two modes: perplexity on a text (cmd_eval.c) and multiple-choice
 * tasks (cmd_eval_task.c). Private to the cce program. */
#ifndef CCE_CLI_CMD_EVAL_H
#define CCE_CLI_CMD_EVAL_H

#include <stdint.h>

/* The parsed command line; strings are borrowed from argv. */
typedef struct eval_args {
    const char *model, *data, *ref;
    long ctx, max_tokens; /* 0 = default */
    int json, tsv;
    const char *task;     /* "cloze" or a JSONL file; NULL: perplexity mode */
    const char *task_out; /* write the task's items as JSONL here, or NULL */
    long task_items;      /* 0 = all (JSONL: the first N items; cloze: N chosen by the seed) */
    long task_choices;    /* cloze choices; 0 = 4 */
    long bootstrap;       /* resamples of the paired bootstrap against --ref; 0 = none */
    uint64_t seed;        /* of the cloze and of the bootstrap */
} eval_args;

/* The command's name in messages. */
extern const char *const EVAL_CMD;

struct cce_bootstrap_result;

/* Prints a report line for a paired bootstrap result: label, the difference with `what` (a unit)
 * and `prec` decimals, the interval, the blocks resampled (`unit`: "windows", "items") and the
 * verdict. */
void eval_print_bootstrap(const char *label, const struct cce_bootstrap_result *b, const char *unit,
                          const char *what, int prec);

/* Runs the task mode (a->task set); returns the exit code. */
int eval_run_task(const eval_args *a);

#endif
