/* The cce strategy's extra per-run tables (docs/CCE.md, "What CCE reports"; strategy.h,
 * `tables`): what the plan and apply stages of cce.c keep per layer, and the tables built from it
 * (cce_report.c).
 *
 *   cce_layers  one row per block the plan budgeted: R_ffn, R_attn, R, BI, u, z, planned and
 *               achieved rho_l, neurons and heads kept of total, the rank of each of the seven
 *               matrices (-1: dense), the calibration output error of each (0: unchanged), the
 *               parameters before and after, and the eigen-ranks r_ffn, r_attn reaching 1 - eps
 *   cce_ev      one row per block: the cumulative explained-variance share of C_a (ev_ffn, at
 *               k = 1..hidden_dim) and of C_y (ev_attn, k = 1..dim), padded with NaN to the
 *               widest layer
 *   cce_scores  one row per block whose FFN neurons were scored (stage 3 ran): histograms of
 *               log10 s_j (s_j = ||W_down[:, j]||^2 / P_jj, the cost of removing neuron j and
 *               refitting the rest, on the layer's sequential statistics) of the removed neurons
 *               (their score when removed) and of the kept ones (their score after the last
 *               removal), CCE_SCORE_BINS uniform bins over [CCE_SCORE_LOG_LO, CCE_SCORE_LOG_HI)
 *               with underflow (s_j = 0 included) and overflow counts
 *
 * Matrices are indexed q, k, v, o, gate, up, down (CCE_REPORT_MATS). */
#ifndef CCE_REPORT_H
#define CCE_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "strategy.h"

#define CCE_REPORT_MATS  7
#define CCE_SCORE_BINS   64
#define CCE_SCORE_LOG_LO (-12.0)
#define CCE_SCORE_LOG_HI 4.0

/* One layer's report. Zero-initialised means "nothing known yet". */
typedef struct cce_layer_report {
    /* plan (pass 1, dense statistics) */
    int planned; /* 1: the layer is in the budget */
    double R_ffn, R_attn, R, BI, u, z, rho_planned;
    int64_t params;           /* P_l: the block's weight parameters */
    int neurons_total;        /* hidden_dim when planned */
    int heads_total;          /* n_heads when planned */
    int n_ffn, n_attn;        /* lengths of the curves */
    double *ev_ffn, *ev_attn; /* [n_ffn], [n_attn] cumulative shares (owned), or NULL */
    int r_ffn, r_attn;        /* eigen-ranks reaching 1 - eps */
    /* apply (pass 2) */
    int applied;                     /* 1: apply ran on the layer */
    int64_t removed;                 /* parameters removed (the report rows' before - after) */
    int neurons_kept, heads_kept;    /* after apply */
    int64_t rank[CCE_REPORT_MATS];   /* -1: dense */
    double out_err[CCE_REPORT_MATS]; /* relative calibration output error, 0 when unchanged */
    /* the neuron scores (cce_layer_report_scores) */
    int scored; /* 1: the histograms below hold the neuron scores */
    int neurons_removed;
    double hist_removed[CCE_SCORE_BINS], hist_kept[CCE_SCORE_BINS];
    int64_t removed_under, removed_over, kept_under, kept_over;
} cce_layer_report;

/* Frees the curves of a layer's report and zeroes it. */
void cce_layer_report_clear(cce_layer_report *rep);

/* Allocates the curves of a layer (n_ffn = hidden_dim, n_attn = dim, filled with NaN), freeing
 * earlier ones, and sets neurons_total / heads_total. CCE_ERR_NOMEM naming the layer. */
cce_status cce_layer_report_curves(cce_layer_report *rep, int layer, int n_ffn, int n_attn,
                                   int n_heads);

/* The plan's values of a layer: planned (1: in the budget), the redundancies, the block influence,
 * the budget's u, z and rho_l (NaN when not planned) and P_l. */
void cce_layer_report_plan(cce_layer_report *rep, int planned, double R_ffn, double R_attn,
                           double R, double BI, double u, double z, double rho_planned,
                           int64_t params);

/* What one apply did to layer job->layer, from the report rows r->rows[first_row ..] of the layer
 * (matched by tensor name): parameters removed (sum of params_before - params_after), the rank of
 * each matrix (-1 dense: a matrix without a row is unchanged) and its output error (0 when
 * unchanged); the widths after from the job's pending shape (or the layer's shape). */
void cce_layer_report_apply(cce_layer_report *rep, const cce_block_job *job, const cce_report *r,
                            size_t first_row);

/* The histograms of the neuron scores score [n]: the first n_removed are the removed neurons'
 * (their scores at removal), the rest the kept ones' (final scores). NULL or n < 1: no scores
 * (scored = 0). */
void cce_layer_report_scores(cce_layer_report *rep, const double *score, int n, int n_removed);

/* The tables cce_layers, cce_ev and cce_scores of reps [n] (index = layer), appended to out
 * (which owns them); a table with no rows is left out. CCE_ERR_NOMEM. */
cce_status cce_report_tables(const cce_layer_report *reps, int n, cce_table_list *out);

#endif
