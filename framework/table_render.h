/* Paper-ready tables from a results file (results.h): `cce table`.
 *
 * Kinds:
 *   summary  one row per run: id, strategy, target (ratio=/bits= of the first step), compression
 *            (1 - encoded / float32 bytes of the block weights, %), bits per weight, perplexity
 *            ± stderr, Δppl against the dense run of the same experiment, KL to dense, top-1 (%),
 *            and every multiple-choice accuracy metric the runs hold (names ending in "acc" or
 *            "acc_norm", ± their "_stderr")
 *   layers   one row per run and layer (block tensors of the "layers" table, summed): params
 *            before, compression (%), bits per weight, sparsity (%), relative Frobenius error
 *            (weighted by params)
 * Formats:
 *   latex     a booktabs tabular (\toprule, \midrule, \bottomrule); the best value of each
 *             numeric column in bold (\textbf); specials escaped
 *   markdown  a pipe table, numbers right-aligned, the best in bold (**)
 *   tsv       a "# " commented header (file, kind, column meanings), a row of column names and
 *             the full-precision numbers (no bold, stderr in its own column)
 * "Best" is the lowest perplexity, Δppl, KL, bits per weight and error, the highest compression,
 * top-1, accuracy and sparsity, among the non-dense rows (the dense model trivially has the best
 * quality); ties are all bold. A column with fewer than two values marks none.
 * Significance: Δppl is marked † when the run's metric dnll_vs_dense_sig is 1 (the paired
 * bootstrap interval of ΔNLL against the dense run excludes 0), an accuracy <T>_acc or
 * <T>_acc_norm when <T>_dacc_vs_dense_sig is 1; a note under the table says so. TSV gives the
 * flag as a column <name>_significant (1, 0, NaN when not tested). */
#ifndef CCE_TABLE_RENDER_H
#define CCE_TABLE_RENDER_H

#include <stdio.h>

#include "status.h"

typedef enum cce_table_kind { CCE_TABLE_SUMMARY = 0, CCE_TABLE_LAYERS } cce_table_kind;
typedef enum cce_table_format {
    CCE_TABLE_LATEX = 0,
    CCE_TABLE_MARKDOWN,
    CCE_TABLE_TSV
} cce_table_format;

/* The kind named "summary" / "layers", and the format named "latex" / "markdown" (or "md") /
 * "tsv": 1 and *out set, or 0 for any other name (the caller words the error). */
int cce_table_kind_parse(const char *name, cce_table_kind *out);
int cce_table_format_parse(const char *name, cce_table_format *out);

/* Writes the table of kind of the runs of results file path that pass filter (figure.h's run
 * filter; NULL: all) to out. Errors as cce_figure_runs_read (no runs, a filter matching none);
 * CCE_ERR_NOT_FOUND for layers when no selected run has a layers table; CCE_ERR_IO when out
 * fails. */
cce_status cce_table_render(const char *path, cce_table_kind kind, const char *filter,
                            cce_table_format format, FILE *out);

/* Writes s to f escaped for a LaTeX table cell: _ % & # $ { } get a backslash, ~ ^ \ become
 * \textasciitilde{}, \textasciicircum{}, \textbackslash{}. With script nonzero (text handed in
 * by a script) also ± † Δ ρ α ε × ≤ ≥ − σ μ become math-mode commands and newlines and tabs
 * spaces. Nothing is allocated. */
void cce_table_put_latex(FILE *f, const char *s, int script);

/* Writes s to f escaped for a Markdown table cell (| * _ \ get a backslash); with script nonzero
 * newlines and tabs become spaces. Nothing is allocated. */
void cce_table_put_markdown(FILE *f, const char *s, int script);

#endif
