/* Helpers shared by the figure data builders (figure_data.c, figure_dist.c, figure_cce.c) and the
 * tables (table_render.c). Internal to libcce. */
#ifndef CCE_FIGURE_INTERNAL_H
#define CCE_FIGURE_INTERNAL_H

#include <stdio.h>

#include "figure.h"
#include "results_table.h"

/* A metric of a run, NaN when it lacks it. */
double fig_metric(const cce_run_info *run, const char *name);

/* The first run of the file (all runs, not only the selected) with strategy "dense" in the same
 * experiment as run (any experiment when run is NULL), or NULL. Borrowed. */
const cce_run_info *fig_dense_run(const cce_figure_runs *r, const cce_run_info *run);

/* The distinct strategies of the selected runs, "dense" first, then in name order: *out [*n]
 * borrowed strings in a malloc'd array (free it). CCE_ERR_NOMEM. */
cce_status fig_strategies(const cce_figure_runs *r, const char ***out, size_t *n);

/* "wanda ratio=0.3": the strategy and its target parameter (ratio, bits, rank) of the first
 * step that has one; into buf. The short form (target only: "ratio=0.3") when short_form. */
void fig_run_label(const cce_run_info *run, int short_form, char *buf, size_t cap);

/* The target of the run (the first step's ratio, bits or rank parameter); *kind gets its name.
 * NaN and kind "" when none. */
double fig_run_target(const cce_run_info *run, const char **kind);

/* Writes v as "%.10g", NaN (and missing) as NaN. */
void fig_put_num(FILE *f, double v);

/* Writes text with tabs, newlines and control characters replaced by '_' or ' ' (a TSV cell),
 * spaces replaced by '_' when no_space (a gnuplot word). */
void fig_put_cell(FILE *f, const char *text, int no_space);

/* Reads table `name` of every selected run (NULL where a run lacks it): *tables [r->n] owned
 * (fig_tables_free). CCE_ERR_NOT_FOUND naming the table when no selected run has it. */
cce_status fig_read_tables(const char *path, const cce_figure_runs *r, const char *name,
                           cce_table ***tables);
void fig_tables_free(cce_table **tables, size_t n);

/* Parses a list of layers "0,2,5" into out [cap]; *n gets the count. When text is NULL: the
 * first, middle and last of n_layers (fewer when n_layers < 3). CCE_ERR_ARG for a bad list. */
cce_status fig_parse_layers(const char *text, int n_layers, int *out, size_t cap, size_t *n);

/* Data builders: write the TSV to data and the .gp variables to vars. */
cce_status fig_data_metric(const char *path, const cce_figure_runs *r, const char *name, FILE *data,
                           FILE *vars);
cce_status fig_data_layer_ratio(const char *path, const cce_figure_runs *r, FILE *data, FILE *vars);
cce_status fig_data_heatmap(const char *path, const cce_figure_runs *r, FILE *data, FILE *vars);
cce_status fig_data_act_hist(const char *path, const cce_figure_runs *r,
                             const cce_figure_options *o, FILE *data, FILE *vars);
cce_status fig_data_act_stats(const char *path, const cce_figure_runs *r,
                              const cce_figure_options *o, FILE *data, FILE *vars);
cce_status fig_data_weight_dist(const char *path, const cce_figure_runs *r,
                                const cce_figure_options *o, FILE *data, FILE *vars);
/* figure_cce.c: the cce strategy's tables (cce_layers, cce_ev). */
cce_status fig_data_cce_layer_ratio(const char *path, const cce_figure_runs *r, FILE *data,
                                    FILE *vars);
cce_status fig_data_cce_ev(const char *path, const cce_figure_runs *r, FILE *data, FILE *vars);
cce_status fig_data_cce_budget(const char *path, const cce_figure_runs *r, FILE *data, FILE *vars);

#endif
