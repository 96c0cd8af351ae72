/* cce eval --task: multiple-choice accuracy (acc, acc_norm ± stderr) of a model, and with --ref of
 * a reference on the same items, with a paired bootstrap of the accuracy differences over items
 * on request (task.h, bootstrap.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bootstrap.h"
#include "cli.h"
#include "cmd_eval.h"
#include "model.h"
#include "task.h"

#define CMD EVAL_CMD

/* Everything one task run holds. */
typedef struct task_run {
    cce_model *m, *ref;
    cce_task *task;
    cce_task_result r, rr;              /* the model's and the reference's */
    cce_bootstrap_result d_acc, d_norm; /* model - ref, when --bootstrap */
    int has_ref, has_boot;
} task_run;

static void task_run_free(task_run *t) {
    cce_task_result_free(&t->r);
    cce_task_result_free(&t->rr);
    cce_task_free(t->task);
    cce_model_free(t->ref);
    cce_model_free(t->m);
}

static void show_progress(void *user, long done, long total) {
    cli_progress((const char *)user, done, total);
}

/* Builds or reads the task, keeping the first --task-items of a JSONL task. */
static cce_status load_task(const eval_args *a, cce_task **out) {
    if (!strcmp(a->task, "cloze")) {
        cce_cloze_options o = {
            .n_items = (size_t)a->task_items, .n_choices = (int)a->task_choices, .seed = a->seed};
        return cce_cloze_build_dataset(a->data ? a->data : "tinystories_val", &o, out);
    }
    cce_status s = cce_task_read_jsonl(a->task, out);
    if (s) return s;
    if (a->task_items > 0 && (s = cce_task_keep_first(*out, (size_t)a->task_items))) {
        cce_task_free(*out);
        *out = NULL;
    }
    return s;
}

/* Opens the models and checks --ctx and the tokenizers against them; 0 or an exit code. */
static int open_models(const eval_args *a, task_run *t) {
    cce_status s = cce_model_open(a->model, &t->m);
    if (!s && a->ref) s = cce_model_open(a->ref, &t->ref);
    if (s) return cli_fail(CMD, s);
    const cce_tokenizer *tok = cce_model_tokenizer(t->m);
    if (!tok) return cli_fail(CMD, cce_fail(CCE_ERR_STATE, "%s has no tokenizer", a->model));
    if (t->ref) {
        const cce_tokenizer *rt = cce_model_tokenizer(t->ref);
        if (!rt || cce_tokenizer_fingerprint(rt) != cce_tokenizer_fingerprint(tok))
            return cli_fail(CMD, cce_fail(CCE_ERR_ARG,
                                          "%s and %s must share a tokenizer to be compared on "
                                          "the same items",
                                          a->model, a->ref));
    }
    long max_ctx = cce_model_config(t->m)->seq_len;
    const char *limited_by = "the model's seq_len";
    if (t->ref && cce_model_config(t->ref)->seq_len < max_ctx) {
        max_ctx = cce_model_config(t->ref)->seq_len;
        limited_by = "the reference's seq_len";
    }
    if (a->ctx > max_ctx)
        return cli_usage_error(CMD, "--ctx = %ld is outside [2, %ld] (%s)", a->ctx, max_ctx,
                               limited_by);
    return 0;
}

static void print_acc(const char *label, double p, double se, const char *note) {
    if (isnan(se))
        printf("%-18s %.4f ± n/a%s\n", label, p, note);
    else
        printf("%-18s %.4f ± %.4f%s\n", label, p, se, note);
}

static void print_report(const eval_args *a, const task_run *t, const char *protocol) {
    const cce_task_result *r = &t->r;
    printf("model:             %s\n", a->model);
    if (a->ref) printf("reference:         %s\n", a->ref);
    printf("task:              %s (%s) from %s\n", t->task->name, t->task->recipe, t->task->source);
    printf("%s\n", protocol);
    print_acc("accuracy", r->acc, r->acc_stderr, "  (stderr sqrt(p(1-p)/(n-1)))");
    print_acc("accuracy (norm)", r->acc_norm, r->acc_norm_stderr,
              "  (log-likelihood per byte of the choice)");
    printf("%-18s %.4f\n", "chance", r->chance);
    printf("%-18s %zu\n", "items", r->n_items);
    printf("%-18s %zu items had their context cut to fit ctx = %d\n", "truncated", r->n_truncated,
           r->ctx);
    printf("%-18s %.1f choices/s (%zu windows, %lld choice tokens in %.3f s)\n", "speed",
           r->seconds > 0 ? (double)r->n_choices / r->seconds : 0.0, r->n_choices,
           (long long)r->n_tokens, r->seconds);
    if (!t->has_ref) return;
    print_acc("ref accuracy", t->rr.acc, t->rr.acc_stderr, "");
    print_acc("ref acc (norm)", t->rr.acc_norm, t->rr.acc_norm_stderr, "");
    if (!t->has_boot) {
        printf("%-18s %+.4f (acc), %+.4f (acc_norm); --bootstrap B for an interval\n",
               "model - ref", r->acc - t->rr.acc, r->acc_norm - t->rr.acc_norm);
        return;
    }
    eval_print_bootstrap("dacc (model-ref)", &t->d_acc, "items", "", 4);
    eval_print_bootstrap("dacc_norm", &t->d_norm, "items", "", 4);
}

/* {acc, acc_stderr, acc_norm, acc_norm_stderr} of a result. New reference or NULL. */
static json_t *acc_json(const cce_task_result *r) {
    json_t *o = json_object();
    double v[4] = {r->acc, r->acc_stderr, r->acc_norm, r->acc_norm_stderr};
    const char *k[4] = {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr"};
    int ok = o != NULL;
    for (int i = 0; ok && i < 4; i++)
        ok = json_object_set_new(o, k[i], isfinite(v[i]) ? json_real(v[i]) : json_null()) == 0;
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *bootstrap_json(const task_run *t) {
    json_t *b = json_object();
    if (!b) return NULL;
    if (json_object_set_new(b, "unit", json_string("item")) ||
        json_object_set_new(b, "acc", cce_bootstrap_result_json(&t->d_acc)) ||
        json_object_set_new(b, "acc_norm", cce_bootstrap_result_json(&t->d_norm))) {
        json_decref(b);
        return NULL;
    }
    return b;
}

static int print_json(const eval_args *a, const task_run *t) {
    json_t *o = cce_task_result_json(t->task, &t->r);
    json_t *ref = t->has_ref ? acc_json(&t->rr) : json_null();
    json_t *boot = t->has_boot ? bootstrap_json(t) : json_null();
    int bad = !o || !ref || !boot;
    bad = bad || json_object_set_new(o, "model", json_string(a->model));
    bad = bad || json_object_set_new(o, "ref", a->ref ? json_string(a->ref) : json_null());
    if (!bad) {
        bad = json_object_set_new(o, "ref_result", ref) != 0;
        ref = NULL;
    }
    if (!bad) {
        bad = json_object_set_new(o, "bootstrap", boot) != 0;
        boot = NULL;
    }
    json_decref(ref);
    json_decref(boot);
    char *text = bad ? NULL : json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    json_decref(o);
    if (!text) return cli_fail(CMD, cce_fail(CCE_ERR_NOMEM, "writing the JSON result"));
    printf("%s\n", text);
    free(text);
    return 0;
}

/* A commented header (models, protocol), a column header and one row; columns of what was not
 * run hold nan. */
static void print_tsv(const eval_args *a, const task_run *t, const char *protocol) {
    const cce_task_result *r = &t->r;
    printf("# cce eval --task: model %s%s%s\n# %s\n", a->model, a->ref ? ", reference " : "",
           a->ref ? a->ref : "", protocol);
    printf("model\ttask\titems\tacc\tacc_stderr\tacc_norm\tacc_norm_stderr\tchance\tref_acc"
           "\tref_acc_norm\td_acc\td_acc_lo\td_acc_hi\td_acc_significant\td_acc_norm"
           "\td_acc_norm_lo\td_acc_norm_hi\td_acc_norm_significant\n");
    printf("%s\t%s\t%zu\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f", a->model, t->task->name, r->n_items, r->acc,
           r->acc_stderr, r->acc_norm, r->acc_norm_stderr, r->chance);
    if (t->has_ref)
        printf("\t%.6f\t%.6f", t->rr.acc, t->rr.acc_norm);
    else
        printf("\tnan\tnan");
    const cce_bootstrap_result *b[2] = {&t->d_acc, &t->d_norm};
    for (int k = 0; k < 2; k++)
        if (t->has_boot)
            printf("\t%.6f\t%.6f\t%.6f\t%d", b[k]->diff, b[k]->ci_low, b[k]->ci_high,
                   b[k]->significant);
        else
            printf("\tnan\tnan\tnan\tnan");
    printf("\n");
}

int eval_run_task(const eval_args *a) {
    task_run t = {0};
    int rc = open_models(a, &t);
    if (rc) {
        task_run_free(&t);
        return rc;
    }
    cce_status s = load_task(a, &t.task);
    if (!s && a->task_out) s = cce_task_write_jsonl(t.task, a->task_out);
    cce_task_options o = {
        .ctx = (int)a->ctx, .progress = show_progress, .progress_user = (void *)"task items"};
    if (!s) s = cce_task_score(t.m, t.task, &o, &t.r);
    if (!s && t.ref) {
        o.progress_user = (void *)"reference task items";
        cli_progress_end();
        if (!(s = cce_task_score(t.ref, t.task, &o, &t.rr))) t.has_ref = 1;
    }
    if (!s && a->bootstrap) {
        cce_bootstrap_options bo = {.resamples = (int)a->bootstrap, .seed = a->seed};
        s = cce_bootstrap_paired_flags(t.r.correct, t.rr.correct, t.r.n_items, &bo, &t.d_acc);
        if (!s)
            s = cce_bootstrap_paired_flags(t.r.correct_norm, t.rr.correct_norm, t.r.n_items, &bo,
                                           &t.d_norm);
        t.has_boot = !s;
    }
    cli_progress_end();
    if (s) {
        rc = cli_fail(CMD, s);
        task_run_free(&t);
        return rc;
    }
    char protocol[2048];
    cce_task_protocol_line(t.task, &t.r, protocol, sizeof protocol);
    if (a->json)
        rc = print_json(a, &t);
    else if (a->tsv)
        print_tsv(a, &t, protocol);
    else
        print_report(a, &t, protocol);
    task_run_free(&t);
    return rc;
}
