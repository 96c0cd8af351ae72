/* The cce program: one function per subcommand, plus shared helpers for argument handling,
 * error reporting and progress display. Each cmd_* gets argv with argv[0] = the subcommand name
 * and returns the process exit code (0 success, 1 failure, 2 usage error). */
#ifndef CCE_CLI_H
#define CCE_CLI_H

#include <stdio.h>

#include "status.h"

int cmd_import(int argc, char **argv);   /* cli/cmd_import.c */
int cmd_export(int argc, char **argv);   /* cli/cmd_export.c */
int cmd_synth(int argc, char **argv);    /* cli/cmd_synth.c */
int cmd_info(int argc, char **argv);     /* cli/cmd_info.c */
int cmd_generate(int argc, char **argv); /* cli/cmd_generate.c */
int cmd_eval(int argc, char **argv);     /* cli/cmd_eval.c */
int cmd_bench(int argc, char **argv);    /* cli/cmd_bench.c */
int cmd_data(int argc, char **argv);     /* cli/cmd_data.c */

int cmd_strategies(int argc, char **argv); /* cli/cmd_strategies.c */
int cmd_compress(int argc, char **argv);   /* cli/cmd_compress.c */

int cmd_bench_strategies(int argc, char **argv); /* cli/cmd_bench_strategies.c */
int cmd_bench_stats(int argc, char **argv);      /* cli/cmd_bench_stats.c */
int cmd_bench_import(int argc, char **argv);     /* cli/cmd_bench_import.c */
int cmd_bench_cce(int argc, char **argv);        /* cli/cmd_bench_cce.c */

int cmd_run(int argc, char **argv); /* cli/cmd_run.c: Lua experiment scripts */

int cmd_results(int argc, char **argv); /* cli/cmd_results.c */
int cmd_plot(int argc, char **argv);    /* cli/cmd_plot.c: figures from a results file */
int cmd_table(int argc, char **argv);   /* cli/cmd_table.c: LaTeX/Markdown/TSV tables */

/* Prints "cce CMD: error: <status text>: <detail>" to stderr and returns 1. */
int cli_fail(const char *cmd, cce_status s);

/* Prints "cce CMD: <message>\nTry 'cce CMD --help'." to stderr and returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The value of option `opt` at argv[*i]: "--opt VALUE" (advancing *i) or "--opt=VALUE". NULL if
 * argv[*i] is not that option; *missing is set when the option is there but its value is not.
 * Borrowed from argv. */
const char *cli_option_value(int argc, char **argv, int *i, const char *opt, int *missing);

/* 1 if argv contains -h or --help. */
int cli_wants_help(int argc, char **argv);

/* Parses a whole decimal number / float argument; 0 on success, else prints a usage error
 * naming `opt` and returns 2. */
int cli_parse_long(const char *cmd, const char *opt, const char *text, long min, long max,
                   long *out);
int cli_parse_double(const char *cmd, const char *opt, const char *text, double min, double max,
                     double *out);

/* Progress on stderr, only when stderr is a terminal: "label: done/total". cli_progress_end
 * clears the line. Quiet (no output at all) otherwise. */
void cli_progress(const char *label, long done, long total);
void cli_progress_end(void);

/* OpenBLAS 0.3.21 does not recognise some recent CPUs and falls back to generic SSE3 kernels,
 * several times slower. OPENBLAS_CORETYPE is read when the library loads, so when it is unset and
 * the CPU supports better kernels, this re-executes the program with it set (an explicit
 * OPENBLAS_CORETYPE is always respected). Returns only when no restart happened. */
void cli_select_blas_kernels(int argc, char **argv);

#endif
