/* Scoring a model on a multiple-choice task (task.h): one window per choice through the batched
 * forward pass, summed log-likelihood of the choice's tokens, acc and acc_norm with the
 * lowest-index tie rule. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eval.h"
#include "forward.h"
#include "task.h"

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

cce_status cce_task_tokenize(const cce_tokenizer *tok, const char *context, const char *choice,
                             int32_t **tokens, size_t *n, size_t *n_choice) {
    if (!tok || !choice || !tokens || !n || !n_choice)
        return cce_fail(CCE_ERR_ARG, "cce_task_tokenize: NULL argument");
    *tokens = NULL;
    *n = *n_choice = 0;
    if (!context) context = "";
    size_t cl = strlen(context), hl = strlen(choice);
    int delim = cl > 0 && hl > 0 && !is_space(context[cl - 1]) && !is_space(choice[0]);
    char *joined = malloc(cl + (size_t)delim + hl + 1); /* context + " " + choice */
    if (!joined) return cce_fail(CCE_ERR_NOMEM, "tokenizing a choice of %zu bytes", hl);
    memcpy(joined, context, cl);
    if (delim) joined[cl] = ' ';
    memcpy(joined + cl + delim, choice, hl + 1);
    int32_t *ctx_tok = NULL, *all = NULL;
    size_t n_ctx = 0, n_all = 0;
    cce_status s = CCE_OK;
    if (cl > 0) s = cce_tokenizer_encode(tok, context, cl, 0, 0, &ctx_tok, &n_ctx);
    if (!s) s = cce_tokenizer_encode(tok, joined, cl + (size_t)delim + hl, 0, 0, &all, &n_all);
    free(joined);
    size_t p = 0; /* the longest common prefix of the two encodings */
    while (!s && p < n_ctx && p < n_all && ctx_tok[p] == all[p]) p++;
    free(ctx_tok);
    if (!s && p >= n_all) s = cce_fail(CCE_ERR_ARG, "the choice '%s' adds no token", choice);
    if (s) {
        free(all);
        return s;
    }
    *tokens = all;
    *n = n_all;
    *n_choice = n_all - p;
    return CCE_OK;
}

int cce_task_argmax(const double *x, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i]) && (best < 0 || x[i] > x[best])) best = i;
    return best < 0 ? 0 : best;
}

double cce_task_stderr(double p, size_t n) {
    if (n < 2) return NAN;
    return sqrt(p * (1.0 - p) / (double)(n - 1));
}

void cce_task_result_free(cce_task_result *r) {
    if (!r) return;
    free(r->first);
    free(r->loglik);
    free(r->n_choice_tokens);
    free(r->pred);
    free(r->pred_norm);
    free(r->correct);
    free(r->correct_norm);
    memset(r, 0, sizeof *r);
}

cce_status cce_task_decide(const cce_task *t, cce_task_result *r) {
    if (!t || !r || !r->first || !r->loglik)
        return cce_fail(CCE_ERR_ARG, "cce_task_decide: needs a task, item offsets and scores");
    if (r->n_items != t->n_items || r->n_items == 0)
        return cce_fail(CCE_ERR_ARG, "cce_task_decide: %zu results for %zu items", r->n_items,
                        t->n_items);
    size_t n = r->n_items;
    free(r->pred);
    free(r->pred_norm);
    free(r->correct);
    free(r->correct_norm);
    r->pred = malloc(n * sizeof *r->pred);
    r->pred_norm = malloc(n * sizeof *r->pred_norm);
    r->correct = malloc(n);
    r->correct_norm = malloc(n);
    if (!r->pred || !r->pred_norm || !r->correct || !r->correct_norm)
        return cce_fail(CCE_ERR_NOMEM, "decisions of %zu items", n);
    size_t right = 0, right_norm = 0;
    for (size_t i = 0; i < n; i++) {
        const cce_task_item *it = &t->items[i];
        if (r->first[i + 1] - r->first[i] != (size_t)it->n_choices)
            return cce_fail(CCE_ERR_ARG, "cce_task_decide: item %zu has %d choices, %zu scores", i,
                            it->n_choices, r->first[i + 1] - r->first[i]);
        const double *ll = r->loglik + r->first[i]; /* [n_choices] */
        double norm[CCE_TASK_MAX_CHOICES];
        for (int c = 0; c < it->n_choices; c++) norm[c] = ll[c] / (double)strlen(it->choices[c]);
        r->pred[i] = cce_task_argmax(ll, it->n_choices);
        r->pred_norm[i] = cce_task_argmax(norm, it->n_choices);
        r->correct[i] = (uint8_t)(r->pred[i] == it->answer);
        r->correct_norm[i] = (uint8_t)(r->pred_norm[i] == it->answer);
        right += r->correct[i];
        right_norm += r->correct_norm[i];
    }
    r->acc = (double)right / (double)n;
    r->acc_norm = (double)right_norm / (double)n;
    r->acc_stderr = cce_task_stderr(r->acc, n);
    r->acc_norm_stderr = cce_task_stderr(r->acc_norm, n);
    r->chance = cce_task_chance(t);
    return CCE_OK;
}

/* Buffers of one scoring run. */
typedef struct score_run {
    cce_forward *fwd;
    int32_t *window;  /* [ctx] BOS + tokens */
    float *logits;    /* [ctx, V] */
    double *nll;      /* [ctx] */
    uint8_t *correct; /* [ctx] */
} score_run;

static void score_run_free(score_run *sr) {
    cce_forward_free(sr->fwd);
    free(sr->window);
    free(sr->logits);
    free(sr->nll);
    free(sr->correct);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Scores choice c of item i into r (loglik, tokens); sets *cut when the context was shortened. */
static cce_status score_choice(score_run *sr, const cce_tokenizer *tok, int32_t bos, int ctx, int V,
                               const cce_task_item *it, size_t i, int c, double *loglik,
                               int32_t *n_tokens, int *cut) {
    int32_t *all = NULL;
    size_t n_all = 0, n_ch = 0;
    cce_status s = cce_task_tokenize(tok, it->context, it->choices[c], &all, &n_all, &n_ch);
    if (s) {
        cce_error_prefix("item %zu choice %d: ", i, c);
        return s;
    }
    if (n_ch > (size_t)ctx) {
        free(all);
        return cce_fail(CCE_ERR_RANGE, "item %zu choice %d has %zu tokens, more than ctx = %d", i,
                        c, n_ch, ctx);
    }
    size_t start = n_all > (size_t)ctx ? n_all - (size_t)ctx : 0; /* context cut from the left */
    int T = (int)(n_all - start);                                 /* BOS + all[start..n_all-2] */
    sr->window[0] = bos;
    memcpy(sr->window + 1, all + start, (size_t)(T - 1) * sizeof *all);
    *cut = start > 0;
    s = cce_forward_window(sr->fwd, sr->window, T, sr->logits);
    /* Row r predicts window[r + 1] = all[start + r]: the choice is the last n_ch rows. */
    cce_eval_scores sc = {.nll = sr->nll, .correct = sr->correct};
    if (!s)
        s = cce_eval_score_logits(sr->logits + (size_t)(T - (int)n_ch) * (size_t)V, NULL, (int)n_ch,
                                  V, all + (n_all - n_ch), &sc);
    free(all);
    if (s) {
        cce_error_prefix("item %zu choice %d: ", i, c);
        return s;
    }
    double sum = 0;
    for (size_t j = 0; j < n_ch; j++) sum += sr->nll[j];
    *loglik = -sum;
    *n_tokens = (int32_t)n_ch;
    return CCE_OK;
}

static cce_status result_alloc(const cce_task *t, cce_task_result *r) {
    size_t total = 0;
    for (size_t i = 0; i < t->n_items; i++) total += (size_t)t->items[i].n_choices;
    r->n_items = t->n_items;
    r->n_choices = total;
    r->first = malloc((t->n_items + 1) * sizeof *r->first);
    r->loglik = malloc(total * sizeof *r->loglik);
    r->n_choice_tokens = malloc(total * sizeof *r->n_choice_tokens);
    if (!r->first || !r->loglik || !r->n_choice_tokens)
        return cce_fail(CCE_ERR_NOMEM, "scores of %zu choices", total);
    r->first[0] = 0;
    for (size_t i = 0; i < t->n_items; i++)
        r->first[i + 1] = r->first[i] + (size_t)t->items[i].n_choices;
    return CCE_OK;
}

cce_status cce_task_score(cce_model *m, const cce_task *t, const cce_task_options *o,
                          cce_task_result *out) {
    static const cce_task_options defaults = {0};
    if (!out) return cce_fail(CCE_ERR_ARG, "cce_task_score: no result");
    memset(out, 0, sizeof *out);
    if (!m || !t) return cce_fail(CCE_ERR_ARG, "cce_task_score: no model or no task");
    if (t->n_items == 0) return cce_fail(CCE_ERR_ARG, "task '%s' has no items", t->name);
    if (!o) o = &defaults;
    const cce_tokenizer *tok = cce_model_tokenizer(m);
    if (!tok) return cce_fail(CCE_ERR_STATE, "the model has no tokenizer to encode task text");
    const cce_config *cfg = cce_model_config(m);
    int ctx = o->ctx ? o->ctx : cce_eval_default_ctx(m);
    if (ctx < 2 || ctx > cfg->seq_len)
        return cce_fail(CCE_ERR_RANGE, "ctx = %d is outside [2, %d] (the model's seq_len)", ctx,
                        (int)cfg->seq_len);
    int V = cfg->vocab_size;
    score_run sr = {0};
    cce_status s = cce_forward_new(m, ctx, &sr.fwd);
    if (s) return s;
    sr.window = malloc((size_t)ctx * sizeof *sr.window);
    sr.logits = malloc((size_t)ctx * (size_t)V * sizeof *sr.logits);
    sr.nll = malloc((size_t)ctx * sizeof *sr.nll);
    sr.correct = malloc((size_t)ctx);
    if (!sr.window || !sr.logits || !sr.nll || !sr.correct)
        s = cce_fail(CCE_ERR_NOMEM, "task buffers of %d x %d logits", ctx, V);
    if (!s) s = result_alloc(t, out);

    int32_t bos = cce_tokenizer_bos(tok);
    double t0 = now_seconds();
    for (size_t i = 0; !s && i < t->n_items; i++) {
        const cce_task_item *it = &t->items[i];
        int any_cut = 0;
        for (int c = 0; !s && c < it->n_choices; c++) {
            size_t k = out->first[i] + (size_t)c;
            int cut = 0;
            s = score_choice(&sr, tok, bos, ctx, V, it, i, c, &out->loglik[k],
                             &out->n_choice_tokens[k], &cut);
            if (!s) out->n_tokens += out->n_choice_tokens[k];
            any_cut |= cut;
        }
        out->n_truncated += (size_t)any_cut;
        if (!s && o->progress) o->progress(o->progress_user, (long)(i + 1), (long)t->n_items);
    }
    double seconds = now_seconds() - t0;
    score_run_free(&sr);
    if (!s) s = cce_task_decide(t, out);
    if (s) {
        cce_task_result_free(out);
        return s;
    }
    out->ctx = ctx;
    out->seconds = seconds;
    return CCE_OK;
}
