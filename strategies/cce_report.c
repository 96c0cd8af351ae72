/* The cce strategy's extra per-run tables (cce_report.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cce_internal.h"
#include "cce_report.h"
#include "model.h"
#include "results_table.h"
#include "stats_hist.h"

static const char *const MAT_NAMES[CCE_REPORT_MATS] = {"q", "k", "v", "o", "gate", "up", "down"};
static const cce_layer_tensor MAT_KIND[CCE_REPORT_MATS] = {
    CCE_LT_Q, CCE_LT_K, CCE_LT_V, CCE_LT_O, CCE_LT_GATE, CCE_LT_UP, CCE_LT_DOWN};

void cce_layer_report_clear(cce_layer_report *rep) {
    free(rep->ev_ffn);
    free(rep->ev_attn);
    memset(rep, 0, sizeof *rep);
}

cce_status cce_layer_report_curves(cce_layer_report *rep, int layer, int n_ffn, int n_attn,
                                   int n_heads) {
    free(rep->ev_ffn);
    free(rep->ev_attn);
    rep->ev_ffn = malloc((size_t)(n_ffn > 0 ? n_ffn : 1) * sizeof *rep->ev_ffn);     /* [n_ffn] */
    rep->ev_attn = malloc((size_t)(n_attn > 0 ? n_attn : 1) * sizeof *rep->ev_attn); /* [n_attn] */
    if (!rep->ev_ffn || !rep->ev_attn) {
        free(rep->ev_ffn);
        free(rep->ev_attn);
        rep->ev_ffn = rep->ev_attn = NULL;
        rep->n_ffn = rep->n_attn = 0;
        return cce_fail(CCE_ERR_NOMEM, CCE_NAME ": layer %d: explained-variance curves", layer);
    }
    for (int i = 0; i < n_ffn; i++) rep->ev_ffn[i] = NAN;
    for (int i = 0; i < n_attn; i++) rep->ev_attn[i] = NAN;
    rep->n_ffn = n_ffn;
    rep->n_attn = n_attn;
    rep->neurons_total = n_ffn;
    rep->heads_total = n_heads;
    return CCE_OK;
}

void cce_layer_report_plan(cce_layer_report *rep, int planned, double R_ffn, double R_attn,
                           double R, double BI, double u, double z, double rho_planned,
                           int64_t params) {
    rep->planned = planned;
    rep->R_ffn = R_ffn;
    rep->R_attn = R_attn;
    rep->R = R;
    rep->BI = BI;
    rep->u = u;
    rep->z = z;
    rep->rho_planned = rho_planned;
    rep->params = params;
}

void cce_layer_report_apply(cce_layer_report *rep, const cce_block_job *job, const cce_report *r,
                            size_t first_row) {
    const cce_layer_shape *ls = job->model ? cce_model_layer(job->model, job->layer) : NULL;
    rep->applied = 1;
    rep->removed = 0;
    if (ls) {
        rep->neurons_total = ls->hidden_dim;
        rep->heads_total = ls->n_heads;
    }
    rep->neurons_kept = job->reshaped ? job->new_shape.hidden_dim : rep->neurons_total;
    rep->heads_kept = job->reshaped ? job->new_shape.n_heads : rep->heads_total;
    for (int i = 0; i < CCE_REPORT_MATS; i++) {
        rep->rank[i] = -1;
        rep->out_err[i] = 0;
        char name[CCE_PLAN_NAME_MAX];
        cce_layer_tensor_name(job->layer, MAT_KIND[i], name, sizeof name);
        for (size_t k = first_row; r && k < r->n; k++) {
            const cce_report_row *row = &r->rows[k];
            if (row->layer != job->layer || strcmp(row->tensor, name)) continue;
            rep->rank[i] = row->rank > 0 ? row->rank : -1;
            rep->out_err[i] = row->output_error;
            rep->removed += row->params_before - row->params_after;
        }
    }
}

void cce_layer_report_scores(cce_layer_report *rep, const double *score, int n, int n_removed) {
    rep->scored = 0;
    if (!score || n < 1 || n_removed < 0 || n_removed > n) return;
    cce_hist *h[2];
    if (cce_hist_new(CCE_SCORE_BINS, CCE_SCORE_LOG_LO, CCE_SCORE_LOG_HI, CCE_NAME " neuron scores",
                     &h[0])) {
        cce_error_clear(); /* the histograms are left out; the run itself is fine */
        return;
    }
    if (cce_hist_new(CCE_SCORE_BINS, CCE_SCORE_LOG_LO, CCE_SCORE_LOG_HI, CCE_NAME " neuron scores",
                     &h[1])) {
        cce_hist_free(h[0]);
        cce_error_clear();
        return;
    }
    for (int j = 0; j < n; j++) {
        float x = score[j] > 0 ? (float)log10(score[j]) : -INFINITY; /* 0: underflow */
        if (!isnan(x)) cce_hist_add_floats(h[j >= n_removed], &x, 1);
    }
    cce_hist_counts(h[0], rep->hist_removed);
    cce_hist_counts(h[1], rep->hist_kept);
    rep->removed_under = (int64_t)h[0]->underflow;
    rep->removed_over = (int64_t)h[0]->overflow;
    rep->kept_under = (int64_t)h[1]->underflow;
    rep->kept_over = (int64_t)h[1]->overflow;
    cce_hist_free(h[0]);
    cce_hist_free(h[1]);
    rep->neurons_removed = n_removed;
    rep->scored = 1;
}

/* ---- Tables ---------------------------------------------------------------------------------- */

typedef struct col_spec {
    const char *name;
    cce_col_type type;
    const char *meaning;
} col_spec;

/* A new table with columns spec [n] (F64VEC ones of width `width`). */
static cce_status new_table(const char *name, const col_spec *spec, size_t n, size_t width,
                            cce_table **out) {
    cce_status s = cce_table_new(name, out);
    for (size_t i = 0; !s && i < n; i++)
        s = cce_table_add_column(*out, spec[i].name, spec[i].type,
                                 spec[i].type == CCE_COL_F64VEC ? width : 1, spec[i].meaning);
    if (s) {
        cce_table_free(*out);
        *out = NULL;
    }
    return s;
}

static cce_status layers_table(const cce_layer_report *reps, int n, cce_table **out) {
    static const col_spec head[] = {
        {"layer", CCE_COL_I64, "block index"},
        {"R_ffn", CCE_COL_F64, "FFN redundancy 1 - r/hidden_dim from the eigenvalues of C_a"},
        {"R_attn", CCE_COL_F64, "attention redundancy 1 - r/dim from the eigenvalues of C_y"},
        {"R", CCE_COL_F64, "parameter-weighted mean of R_ffn and R_attn"},
        {"BI", CCE_COL_F64, "block influence 1 - E[cos(h_l, h_l+1)] on the dense model"},
        {"u", CCE_COL_F64, "budget score alpha R + (1 - alpha)(1 - BI / max BI)"},
        {"z", CCE_COL_F64, "z-score of u over the layers (0 when std(u) = 0)"},
        {"rho_planned", CCE_COL_F64, "planned fraction of the block's weight parameters removed"},
        {"rho_achieved", CCE_COL_F64,
         "achieved fraction removed (whole neurons and ranks); NaN: apply did not run"},
        {"neurons_kept", CCE_COL_I64, "FFN neurons after (-1: apply did not run)"},
        {"neurons_total", CCE_COL_I64, "FFN neurons before"},
        {"heads_kept", CCE_COL_I64, "query heads after (-1: apply did not run)"},
        {"heads_total", CCE_COL_I64, "query heads before"},
    };
    size_t nh = sizeof head / sizeof *head;
    col_spec spec[sizeof head / sizeof *head + 2 * CCE_REPORT_MATS + 4];
    char names[2 * CCE_REPORT_MATS][32], means[2 * CCE_REPORT_MATS][96];
    memcpy(spec, head, sizeof head);
    size_t nc = nh;
    for (int i = 0; i < CCE_REPORT_MATS; i++) {
        snprintf(names[i], sizeof names[i], "rank_%s", MAT_NAMES[i]);
        snprintf(means[i], sizeof means[i], "kept rank of %s_proj after stage 4 (-1: dense)",
                 MAT_NAMES[i]);
        spec[nc++] = (col_spec){names[i], CCE_COL_I64, means[i]};
    }
    for (int i = 0; i < CCE_REPORT_MATS; i++) {
        int k = CCE_REPORT_MATS + i;
        snprintf(names[k], sizeof names[k], "out_err_%s", MAT_NAMES[i]);
        snprintf(means[k], sizeof means[k],
                 "relative calibration output error of %s_proj (0: unchanged)", MAT_NAMES[i]);
        spec[nc++] = (col_spec){names[k], CCE_COL_F64, means[k]};
    }
    spec[nc++] = (col_spec){"params_before", CCE_COL_I64, "weight parameters of the block before"};
    spec[nc++] =
        (col_spec){"params_after", CCE_COL_I64, "weight parameters after (-1: apply did not run)"};
    spec[nc++] =
        (col_spec){"r_ffn", CCE_COL_I64, "eigen-rank of C_a reaching 1 - eps of its trace"};
    spec[nc++] =
        (col_spec){"r_attn", CCE_COL_I64, "eigen-rank of C_y reaching 1 - eps of its trace"};
    cce_status s = new_table("cce_layers", spec, nc, 1, out);
    for (int l = 0; !s && l < n; l++) {
        const cce_layer_report *p = &reps[l];
        if (!p->planned) continue;
        size_t row;
        if ((s = cce_table_add_row(*out, &row))) break;
        cce_table *t = *out;
        int c = 0;
        double rho = p->applied && p->params > 0 ? (double)p->removed / (double)p->params : NAN;
        const double f[] = {p->R_ffn, p->R_attn, p->R, p->BI, p->u, p->z, p->rho_planned, rho};
        s = cce_table_set_i64(t, row, c++, l);
        for (size_t i = 0; !s && i < sizeof f / sizeof *f; i++)
            s = cce_table_set_f64(t, row, c++, f[i]);
        const int64_t g[] = {p->applied ? p->neurons_kept : -1, p->neurons_total,
                             p->applied ? p->heads_kept : -1, p->heads_total};
        for (size_t i = 0; !s && i < sizeof g / sizeof *g; i++)
            s = cce_table_set_i64(t, row, c++, g[i]);
        for (int i = 0; !s && i < CCE_REPORT_MATS; i++)
            s = cce_table_set_i64(t, row, c++, p->applied ? p->rank[i] : -1);
        for (int i = 0; !s && i < CCE_REPORT_MATS; i++)
            s = cce_table_set_f64(t, row, c++, p->applied ? p->out_err[i] : NAN);
        if (!s) s = cce_table_set_i64(t, row, c++, p->params);
        if (!s) s = cce_table_set_i64(t, row, c++, p->applied ? p->params - p->removed : -1);
        if (!s) s = cce_table_set_i64(t, row, c++, p->r_ffn);
        if (!s) s = cce_table_set_i64(t, row, c++, p->r_attn);
    }
    return s;
}

static cce_status ev_table(const cce_layer_report *reps, int n, cce_table **out) {
    int wf = 0, wa = 0;
    for (int l = 0; l < n; l++) {
        if (!reps[l].ev_ffn) continue;
        if (reps[l].n_ffn > wf) wf = reps[l].n_ffn;
        if (reps[l].n_attn > wa) wa = reps[l].n_attn;
    }
    *out = NULL;
    if (wf < 1 || wa < 1) return CCE_OK;
    cce_status s = cce_table_new("cce_ev", out);
    if (!s) s = cce_table_add_column(*out, "layer", CCE_COL_I64, 1, "block index");
    if (!s)
        s = cce_table_add_column(*out, "n_ffn", CCE_COL_I64, 1,
                                 "eigenvalues of C_a (the layer's hidden_dim)");
    if (!s)
        s = cce_table_add_column(*out, "r_ffn", CCE_COL_I64, 1,
                                 "eigen-rank of C_a reaching 1 - eps of its trace");
    if (!s)
        s = cce_table_add_column(*out, "ev_ffn", CCE_COL_F64VEC, (size_t)wf,
                                 "cumulative share of the trace of C_a (down_proj input "
                                 "covariance) in its k largest eigenvalues, k = 1..n_ffn; NaN "
                                 "beyond n_ffn");
    if (!s) s = cce_table_add_column(*out, "n_attn", CCE_COL_I64, 1, "eigenvalues of C_y (dim)");
    if (!s)
        s = cce_table_add_column(*out, "r_attn", CCE_COL_I64, 1,
                                 "eigen-rank of C_y reaching 1 - eps of its trace");
    if (!s)
        s = cce_table_add_column(*out, "ev_attn", CCE_COL_F64VEC, (size_t)wa,
                                 "cumulative share of the trace of C_y (attention output "
                                 "covariance) in its k largest eigenvalues, k = 1..n_attn");
    double *buf = s ? NULL : malloc((size_t)(wf > wa ? wf : wa) * sizeof *buf); /* [max width] */
    if (!s && !buf) s = cce_fail(CCE_ERR_NOMEM, CCE_NAME ": cce_ev row");
    for (int l = 0; !s && l < n; l++) {
        const cce_layer_report *p = &reps[l];
        if (!p->ev_ffn || !p->ev_attn) continue;
        size_t row;
        if ((s = cce_table_add_row(*out, &row))) break;
        s = cce_table_set_i64(*out, row, 0, l);
        if (!s) s = cce_table_set_i64(*out, row, 1, p->n_ffn);
        if (!s) s = cce_table_set_i64(*out, row, 2, p->r_ffn);
        for (int i = 0; i < wf; i++) buf[i] = i < p->n_ffn ? p->ev_ffn[i] : NAN;
        if (!s) s = cce_table_set_vec(*out, row, 3, buf);
        if (!s) s = cce_table_set_i64(*out, row, 4, p->n_attn);
        if (!s) s = cce_table_set_i64(*out, row, 5, p->r_attn);
        for (int i = 0; i < wa; i++) buf[i] = i < p->n_attn ? p->ev_attn[i] : NAN;
        if (!s) s = cce_table_set_vec(*out, row, 6, buf);
    }
    free(buf);
    if (s) {
        cce_table_free(*out);
        *out = NULL;
    }
    return s;
}

static cce_status scores_table(const cce_layer_report *reps, int n, cce_table **out) {
    char range[160];
    snprintf(range, sizeof range, "%d uniform bins of log10 s_j over [%g, %g) (%g decades per bin)",
             CCE_SCORE_BINS, CCE_SCORE_LOG_LO, CCE_SCORE_LOG_HI,
             (CCE_SCORE_LOG_HI - CCE_SCORE_LOG_LO) / CCE_SCORE_BINS);
    char rm[256], kp[256];
    snprintf(rm, sizeof rm, "removed neurons: %s", range);
    snprintf(kp, sizeof kp, "kept neurons: %s", range);
    const col_spec spec[] = {
        {"layer", CCE_COL_I64, "block index"},
        {"neurons_total", CCE_COL_I64, "FFN neurons before"},
        {"neurons_removed", CCE_COL_I64, "FFN neurons removed by stage 3"},
        {"log10_lo", CCE_COL_F64, "lowest edge of the bins (log10 of the score)"},
        {"log10_hi", CCE_COL_F64, "highest edge of the bins (log10 of the score)"},
        {"removed_hist", CCE_COL_F64VEC, rm},
        {"removed_underflow", CCE_COL_I64, "removed neurons with log10 s_j below log10_lo"},
        {"removed_overflow", CCE_COL_I64, "removed neurons with log10 s_j at or above log10_hi"},
        {"kept_hist", CCE_COL_F64VEC, kp},
        {"kept_underflow", CCE_COL_I64, "kept neurons with log10 s_j below log10_lo"},
        {"kept_overflow", CCE_COL_I64, "kept neurons with log10 s_j at or above log10_hi"},
    };
    *out = NULL;
    int any = 0;
    for (int l = 0; l < n; l++) any |= reps[l].scored;
    if (!any) return CCE_OK;
    cce_status s = new_table("cce_scores", spec, sizeof spec / sizeof *spec, CCE_SCORE_BINS, out);
    for (int l = 0; !s && l < n; l++) {
        const cce_layer_report *p = &reps[l];
        if (!p->scored) continue;
        size_t row;
        if ((s = cce_table_add_row(*out, &row))) break;
        cce_table *t = *out;
        s = cce_table_set_i64(t, row, 0, l);
        if (!s) s = cce_table_set_i64(t, row, 1, p->neurons_total);
        if (!s) s = cce_table_set_i64(t, row, 2, p->neurons_removed);
        if (!s) s = cce_table_set_f64(t, row, 3, CCE_SCORE_LOG_LO);
        if (!s) s = cce_table_set_f64(t, row, 4, CCE_SCORE_LOG_HI);
        if (!s) s = cce_table_set_vec(t, row, 5, p->hist_removed);
        if (!s) s = cce_table_set_i64(t, row, 6, p->removed_under);
        if (!s) s = cce_table_set_i64(t, row, 7, p->removed_over);
        if (!s) s = cce_table_set_vec(t, row, 8, p->hist_kept);
        if (!s) s = cce_table_set_i64(t, row, 9, p->kept_under);
        if (!s) s = cce_table_set_i64(t, row, 10, p->kept_over);
    }
    if (s) {
        cce_table_free(*out);
        *out = NULL;
    }
    return s;
}

cce_status cce_report_tables(const cce_layer_report *reps, int n, cce_table_list *out) {
    if (!reps || n < 1) return CCE_OK;
    int any = 0;
    for (int l = 0; l < n; l++) any |= reps[l].planned;
    if (!any) return CCE_OK;
    size_t n0 = out->n;
    cce_table *t = NULL;
    cce_status s = layers_table(reps, n, &t);
    if (!s)
        s = cce_table_list_add(out, t);
    else
        cce_table_free(t);
    if (!s && !(s = ev_table(reps, n, &t)) && t) s = cce_table_list_add(out, t);
    if (!s && !(s = scores_table(reps, n, &t)) && t) s = cce_table_list_add(out, t);
    if (s)
        while (out->n > n0) cce_table_free(out->tables[--out->n]);
    return s;
}
