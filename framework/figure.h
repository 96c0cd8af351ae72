/* Figures from results files (DESIGN 8): the data of a named figure is extracted from the runs of
 * a results file (results.h) into a TSV text, and rendered by gnuplot from a template
 * (analysis/templates/<name>.gp).
 *
 * Figure kinds (cce_figure_kinds):
 *   ppl_vs_ratio         perplexity (± stderr) against byte_ratio, one line per strategy
 *   kl_vs_ratio          KL to the dense model (± stderr) against byte_ratio, one line per strategy
 *   ppl_vs_bits          perplexity against bits per weight, one line per strategy, the Pareto
 *                        front (no run has both fewer bits and a lower perplexity) marked
 *   layer_ratio          achieved compression per layer from the "layers" table: 1 - encoded
 *                        bytes after / bytes before, summed over the layer's compressed tensors;
 *                        grouped bars, one bar per run, coloured by strategy
 *   sensitivity_heatmap  runs that compress one layer only (all their "layers" rows have one
 *                        layer >= 0): x = layer, y = the run's target (strategy and its ratio= or
 *                        bits= parameter), colour = Δppl against the dense run of the same
 *                        experiment (ppl when there is none)
 *   act_hist             activation histograms (table "activations") of the dense run against
 *                        the compressed runs for chosen layers, one panel per layer, as densities
 *   act_stats            per layer: cosine, relative L2 error and excess-kurtosis shift (run minus
 *                        dense reference) from "activations", one panel column per domain
 *   weight_dist          weight distribution per chosen layer (table "weights"), before and after,
 *                        pooled over the layer's tensors on one grid, as densities
 *   cce_layer_ratio      fraction of each block's weight parameters removed, one line per run:
 *                        achieved (solid) and planned (dashed) rho_l from the "cce_layers" table
 *                        of cce runs; other runs 1 - params after / before over the layer's
 *                        changed tensors ("layers"), achieved only
 *   cce_ev               explained-variance curves of one cce run ("cce_ev"): per layer the
 *                        cumulative share of the trace of C_a (FFN) and C_y (attention) in the k
 *                        largest eigenvalues against k / n, one curve per layer, one panel each
 *   cce_budget           one cce run's budget per layer ("cce_layers"): planned and achieved
 *                        rho_l as bars, R_l, BI_l / max BI and u_l as lines on the same [0, 1]
 *                        axis
 * cce_ev and cce_budget draw the first selected run that holds the table (the .tsv says which
 * and how many others do: choose with --runs id=...).
 *
 * Files. A figure goes to <dir>/<base>.tsv (the data: "# " comment lines first, naming the source
 * file, the figure, the runs and the columns; gnuplot blocks separated by two blank lines) and
 * <dir>/<base>.gp (a header setting datafile, outbase, caption and the figure's series variables,
 * then analysis/templates/style.gp and the template inlined: re-runnable and editable with
 * `gnuplot <base>.gp` in its folder), then rendered by running gnuplot (found on PATH, started
 * without a shell, in dir) to <base>.png (pngcairo), <base>.pdf (pdfcairo, 3.5 in wide: one column
 * of a two-column paper) and, on request, <base>.tex + <base>-inc.pdf (cairolatex). Every file
 * goes through a temporary name and a rename. When only the rendering fails (no gnuplot, gnuplot
 * error) the .tsv and .gp are in place and the error says so.
 *
 * Run filter (cce_figure_options.runs): terms separated by ',' that must all hold. A term is
 *   NAME=V1|V2|...   the run's attribute NAME (id, strategy, experiment, model, dataset, ...; see
 *                    results.h) equals one of the values; a value may hold shell wildcards (* ?)
 *   NAME!=V1|V2      the attribute equals none of them
 *   PARAM=V          when NAME is no attribute: a parameter of the run's strategy steps
 *                    (params JSON), compared as text or, when both are numbers, as numbers
 *   WORD             shorthand for strategy=WORD
 * The dense run(s) are always kept for figures that compare against them (act_hist, act_stats,
 * sensitivity_heatmap, the Δ of tables) even when the filter drops them. */
#ifndef CCE_FIGURE_H
#define CCE_FIGURE_H

#include <stddef.h>

#include "results.h"
#include "status.h"

/* Output formats (bit set). */
enum {
    CCE_FIG_PNG = 1u << 0,
    CCE_FIG_PDF = 1u << 1,
    CCE_FIG_TEX = 1u << 2 /* cairolatex: <base>.tex + <base>-inc.pdf */
};

typedef struct cce_figure_options {
    const char *runs;      /* run filter (above); NULL or "": every run */
    const char *out_dir;   /* folder of the files (created if missing); NULL: "." */
    const char *base;      /* file name without extension; NULL: the figure's name */
    unsigned formats;      /* CCE_FIG_*; 0: PNG | PDF */
    const char *caption;   /* NULL: "<model> on <dataset>: <protocol>" from the first run */
    const char *layers;    /* act_hist, weight_dist: layers "0,2,4"; NULL: first, middle, last */
    const char *domain;    /* act_hist: the domain; NULL: the first one recorded */
    const char *site;      /* act_hist, act_stats: "block_out" or "ffn_act"; NULL: block_out */
    const char *templates; /* folder of the templates; NULL: $CCE_TEMPLATES_DIR, else built in */
} cce_figure_options;

/* The files of a figure, each NULL when not written. Owned (cce_figure_files_clear). */
typedef struct cce_figure_files {
    char *tsv, *gp, *png, *pdf, *tex;
} cce_figure_files;
void cce_figure_files_clear(cce_figure_files *f);

/* The figure names, NULL-terminated. Static. */
const char *const *cce_figure_kinds(void);
/* 1 if name is one of them. */
int cce_figure_known(const char *name);

/* The runs of a results file that pass a filter (above). */
typedef struct cce_figure_runs {
    cce_results_runs all; /* every run of the file */
    size_t n;
    const cce_run_info **sel; /* [n] borrowed from all, in id order */
} cce_figure_runs;

/* Reads path and applies filter (NULL: all). CCE_ERR_NOT_FOUND when the file holds no runs ("no
 * runs") or the filter matches none (naming the filter and listing the strategies present);
 * CCE_ERR_ARG for a malformed filter term; errors of cce_results_read. The caller clears *out
 * (cce_figure_runs_free; also safe after a failure). */
cce_status cce_figure_runs_read(const char *path, const char *filter, cce_figure_runs *out);
void cce_figure_runs_free(cce_figure_runs *r);

/* 1 if run passes filter (NULL passes all); -1 (cce_fail set) for a malformed filter. */
int cce_figure_filter_match(const cce_run_info *run, const char *filter);

/* The caption line of runs: "<model> on <dataset>: <protocol>" of the first run (the protocol
 * line without its data sha256; the templates break the line after the first ": "), with
 * "(experiment E)" when all share one. The caller owns the string (free). NULL on no memory. */
char *cce_figure_caption(const cce_figure_runs *r);

/* The data of figure `name` from results file path as TSV text (above), and the words of the
 * .gp header: *vars gets gnuplot assignments ("blocks = \"dense wanda\"\nnpanels = 3\n") naming
 * the series of the data (their strategies, in block/column order) and the panel counts the
 * template needs. Both owned by the caller (free). CCE_ERR_ARG for an unknown figure;
 * CCE_ERR_NOT_FOUND (naming the table or metric) when no selected run holds what the figure
 * needs; errors of cce_figure_runs_read. */
cce_status cce_figure_data(const char *path, const char *name, const cce_figure_options *o,
                           char **tsv, char **vars, char **caption);

/* Writes and renders a figure from given data: template `name` (a file of o->templates), tsv
 * and vars as cce_figure_data makes them, caption. files (cleared here) gets the paths written,
 * also on a rendering failure (then .tsv and .gp only). CCE_ERR_NOT_FOUND when gnuplot is not on
 * PATH or the template is missing, CCE_ERR_IO when gnuplot fails (naming the script) or a file
 * cannot be written. */
cce_status cce_figure_render(const char *name, const char *tsv, const char *vars,
                             const char *caption, const cce_figure_options *o,
                             cce_figure_files *files);

/* cce_figure_data then cce_figure_render (the caption of o, else the data's). */
cce_status cce_figure_make(const char *path, const char *name, const cce_figure_options *o,
                           cce_figure_files *files);

#endif
