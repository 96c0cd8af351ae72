/* cce eval: perplexity, accuracy and (with --ref) KL, top-1 agreement and Δp against a base
 * model, under the pinned evaluation protocol (eval.h), with a paired bootstrap of the NLL
 * difference on request; multiple-choice tasks (--task) are in cmd_eval_task.c. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bootstrap.h"
#include "cli.h"
#include "cmd_eval.h"
#include "dataset.h"
#include "eval.h"
#include "model.h"
#include "task.h"

const char *const EVAL_CMD = "eval";
#define CMD EVAL_CMD

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: cce eval MODEL.h5 --data NAME|PATH [--ctx N] [--max-tokens N]\n"
        "                [--ref BASE.h5 [--bootstrap B] [--seed S]] [--json | --tsv]\n"
        "       cce eval MODEL.h5 --task cloze|PATH.jsonl [--data NAME|PATH] [--task-items N]\n"
        "                [--task-choices N] [--seed S] [--ctx N] [--task-out PATH.jsonl]\n"
        "                [--ref BASE.h5 [--bootstrap B]] [--json | --tsv]\n"
        "\n"
        "Evaluates a model on a text under the pinned protocol: the text is tokenized once\n"
        "as one stream with the model's tokenizer; each window is BOS followed by ctx-1\n"
        "stream tokens; windows do not overlap and only whole windows are used; every\n"
        "position after BOS is scored. Reports perplexity (standard error by the delta\n"
        "method), mean NLL, top-1 next-token accuracy and speed, with the protocol line and\n"
        "the data's sha256.\n"
        "\n"
        "With --task it scores a multiple-choice task instead (lm-eval-harness convention):\n"
        "each choice is scored by the summed log-likelihood of its tokens after the context\n"
        "(one window BOS + context + choice per choice, context cut from the left beyond\n"
        "ctx); acc takes the best sum, acc_norm the best sum per byte of the choice; ties go\n"
        "to the lowest index; stderr = sqrt(p(1-p)/(n-1)). 'cloze' is the paragraph cloze\n"
        "built from --data (default tinystories_val; datasets/README.md); any other value is\n"
        "a JSONL file of {\"context\": ..., \"choices\": [...], \"answer\": i} lines.\n"
        "\n"
        "options:\n"
        "  --data NAME|PATH  a dataset of the manifest (e.g. tinystories_val) or a text file\n"
        "  --ctx N           window length including BOS, in [2, seq_len]\n"
        "                    (default: min(seq_len, %d))\n"
        "  --max-tokens N    score at most N tokens: floor(N / (ctx-1)) whole windows, at\n"
        "                    least one (default 0: the whole stream)\n"
        "  --ref BASE.h5     also run BASE.h5 on the same windows and report KL(base||model),\n"
        "                    top-1 agreement and dp = p_model(correct) - p_base(correct);\n"
        "                    with --task, score BASE.h5 on the same items\n"
        "  --bootstrap B     with --ref: a paired bootstrap of B resamples (e.g. 1000) of the\n"
        "                    difference model - ref: of the mean NLL, resampling whole windows\n"
        "                    (the tokens of a window are dependent; BASE.h5 is run once more\n"
        "                    for its own per-token NLL), or with --task of acc and acc_norm,\n"
        "                    resampling items; reports the 95%% percentile interval and whether\n"
        "                    it excludes 0 (significant)\n"
        "  --seed S          seed of the cloze construction and of the bootstrap (default 1)\n"
        "  --task T          'cloze' or a JSONL task file\n"
        "  --task-items N    cloze: N items chosen by the seed; JSONL: the first N items\n"
        "                    (default: all)\n"
        "  --task-choices N  cloze choices per item, in [2, %d] (default 4)\n"
        "  --task-out PATH   also write the task's items as JSONL (e.g. to inspect the cloze)\n"
        "  --json            print one JSON object instead of the report\n"
        "  --tsv             print a commented header and one tab-separated row\n"
        "  -h, --help        this help\n"
        "\n"
        "Progress is shown on a terminal only. Exit status: 0 success, 1 failure, 2 usage.\n",
        CCE_EVAL_DEFAULT_CTX_CAP, CCE_TASK_MAX_CHOICES);
}

/* The option values as given, before parsing numbers. */
typedef struct eval_texts {
    const char *ctx, *max_tokens, *task_items, *task_choices, *bootstrap, *seed;
} eval_texts;

/* Parses the numbers and checks which options go together; 0 or the usage-error exit code. */
static int check_args(eval_args *a, const eval_texts *x) {
    if (!a->model) return cli_usage_error(CMD, "MODEL.h5 is missing");
    if (!a->data && !a->task) return cli_usage_error(CMD, "--data NAME|PATH is missing");
    if (a->json && a->tsv) return cli_usage_error(CMD, "--json and --tsv exclude each other");
    if (x->bootstrap && !a->ref)
        return cli_usage_error(CMD, "--bootstrap compares with a reference: give --ref BASE.h5");
    if (!a->task) {
        const char *task_only[] = {x->task_items, x->task_choices, a->task_out};
        const char *names[] = {"--task-items", "--task-choices", "--task-out"};
        for (int k = 0; k < 3; k++)
            if (task_only[k]) return cli_usage_error(CMD, "%s needs --task", names[k]);
    } else {
        if (x->max_tokens)
            return cli_usage_error(CMD, "--max-tokens applies to perplexity, not to --task");
        int cloze = !strcmp(a->task, "cloze");
        if (!cloze && a->data)
            return cli_usage_error(CMD, "--data names the text of --task cloze; a JSONL task "
                                        "holds its own text");
        if (!cloze && x->task_choices)
            return cli_usage_error(CMD, "--task-choices applies to --task cloze only");
    }
    int rc = 0;
    long seed = 1;
    if (x->ctx) rc = cli_parse_long(CMD, "--ctx", x->ctx, 2, INT_MAX, &a->ctx);
    if (!rc && x->max_tokens)
        rc = cli_parse_long(CMD, "--max-tokens", x->max_tokens, 0, LONG_MAX, &a->max_tokens);
    if (!rc && x->task_items)
        rc = cli_parse_long(CMD, "--task-items", x->task_items, 1, LONG_MAX, &a->task_items);
    if (!rc && x->task_choices)
        rc = cli_parse_long(CMD, "--task-choices", x->task_choices, 2, CCE_TASK_MAX_CHOICES,
                            &a->task_choices);
    if (!rc && x->bootstrap)
        rc = cli_parse_long(CMD, "--bootstrap", x->bootstrap, 1, CCE_BOOTSTRAP_MAX_RESAMPLES,
                            &a->bootstrap);
    if (!rc && x->seed) rc = cli_parse_long(CMD, "--seed", x->seed, 0, LONG_MAX, &seed);
    a->seed = (uint64_t)seed;
    return rc;
}

/* Returns 0, or the usage-error exit code. */
static int parse_args(int argc, char **argv, eval_args *a) {
    static const char *const value_opts[] = {
        "--data",       "--ctx",          "--max-tokens", "--ref",       "--task",
        "--task-items", "--task-choices", "--task-out",   "--bootstrap", "--seed"};
    memset(a, 0, sizeof *a);
    eval_texts x = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            a->json = 1;
            continue;
        }
        if (!strcmp(argv[i], "--tsv")) {
            a->tsv = 1;
            continue;
        }
        const char **slots[] = {&a->data,     &x.ctx,        &x.max_tokens,   &a->ref,
                                &a->task,     &x.task_items, &x.task_choices, &a->task_out,
                                &x.bootstrap, &x.seed};
        int matched = 0, missing = 0;
        for (size_t k = 0; k < sizeof value_opts / sizeof value_opts[0] && !matched; k++) {
            const char *v = cli_option_value(argc, argv, &i, value_opts[k], &missing);
            if (missing) return cli_usage_error(CMD, "%s needs a value", value_opts[k]);
            if (v) {
                *slots[k] = v;
                matched = 1;
            }
        }
        if (matched) continue;
        if (argv[i][0] == '-' && argv[i][1] != '\0')
            return cli_usage_error(CMD, "unknown option '%s'", argv[i]);
        if (a->model) return cli_usage_error(CMD, "one MODEL.h5 only (got '%s')", argv[i]);
        a->model = argv[i];
    }
    return check_args(a, &x);
}

static void show_progress(void *user, long done, long total) {
    (void)user;
    cli_progress("eval windows", done, total);
}

/* "x ± e" with e printed as "n/a" when undefined (fewer than two tokens). */
static void print_pm(const char *label, double x, double e, const char *unit, int prec) {
    if (!isnan(e))
        printf("%-18s %.*f ± %.*f%s\n", label, prec, x, prec, e, unit);
    else
        printf("%-18s %.*f ± n/a%s\n", label, prec, x, unit);
}

/* The bootstrap line of the report: "label  +d, 95% CI [lo, hi] (paired bootstrap ...): verdict".
 * unit names the resampled blocks ("windows", "items"). */
void eval_print_bootstrap(const char *label, const cce_bootstrap_result *b, const char *unit,
                          const char *what, int prec) {
    printf("%-18s %+.*f%s, %g%% CI [%+.*f, %+.*f] (paired bootstrap over %zu %s, B=%d, seed "
           "%llu): %s\n",
           label, prec, b->diff, what, 100 * b->level, prec, b->ci_low, prec, b->ci_high,
           b->n_blocks, unit, b->resamples, (unsigned long long)b->seed,
           b->significant ? "significant (the interval excludes 0)"
                          : "not significant (the interval contains 0)");
}

static void print_report(const eval_args *a, const cce_eval_result *r, const char *protocol,
                         const cce_bootstrap_result *boot) {
    printf("model:             %s\n", a->model);
    if (a->ref) printf("reference:         %s\n", a->ref);
    printf("%s\n", protocol);
    print_pm("perplexity", r->ppl, r->ppl_stderr, "  (stderr by the delta method)", 4);
    print_pm("mean NLL", r->mean_nll, r->nll_stderr, " nats/token", 6);
    printf("%-18s %.2f %%\n", "top-1 accuracy", 100.0 * r->top1);
    printf("%-18s %.0f tokens/s (%lld tokens in %.3f s)\n", "speed", r->tokens_per_s,
           (long long)r->n_tokens, r->seconds);
    if (!r->has_ref) return;
    print_pm("KL(ref||model)", r->kl_mean, r->kl_stderr, " nats/token", 6);
    printf("%-18s %.6f\n", "KL p99", r->kl_p99);
    printf("%-18s %.2f %%\n", "top-1 agreement", 100.0 * r->top1_agree);
    print_pm("dp mean", 100.0 * r->dp_mean, 100.0 * r->dp_stderr, " %", 3);
    printf("%-18s min %.3f %%", "dp percentiles", 100.0 * r->dp_min);
    for (int i = 0; i < CCE_EVAL_DP_PERCENTILES; i++)
        printf(", p%g %.3f %%", cce_eval_dp_percentiles[i], 100.0 * r->dp_p[i]);
    printf(", max %.3f %%\n", 100.0 * r->dp_max);
    printf("%-18s dp = p_model(correct) - p_ref(correct), in percentage points\n", "");
    if (boot) {
        printf("%-18s %.6f nats/token (own pass over the same windows)\n", "ref mean NLL",
               boot->mean_b);
        eval_print_bootstrap("dNLL (model-ref)", boot, "windows", " nats/token", 6);
    }
}

static int print_json(const cce_eval_result *r, const eval_args *a, const char *sha,
                      const cce_bootstrap_result *boot) {
    json_t *o = cce_eval_result_json(r, a->data, sha);
    json_t *b = NULL;
    if (boot) {
        b = json_object();
        if (b && (json_object_set_new(b, "unit", json_string("window")) ||
                  json_object_set_new(b, "nll", cce_bootstrap_result_json(boot)))) {
            json_decref(b);
            b = NULL;
        }
    }
    if (!o || (boot && !b) || json_object_set_new(o, "model", json_string(a->model)) ||
        json_object_set_new(o, "ref", a->ref ? json_string(a->ref) : json_null()) ||
        json_object_set_new(o, "bootstrap", b ? b : json_null())) {
        json_decref(o);
        return cli_fail(CMD, cce_fail(CCE_ERR_NOMEM, "building the JSON result"));
    }
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    json_decref(o);
    if (!text) return cli_fail(CMD, cce_fail(CCE_ERR_NOMEM, "writing the JSON result"));
    printf("%s\n", text);
    free(text);
    return 0;
}

/* A commented header (the protocol), a column header and one row: rows of several runs can be
 * concatenated for figures (comment and header lines of later runs are dropped by `grep -v`). */
static void print_tsv(const eval_args *a, const cce_eval_result *r, const char *protocol,
                      const cce_bootstrap_result *boot) {
    printf("# cce eval: model %s%s%s\n# %s\n", a->model, a->ref ? ", reference " : "",
           a->ref ? a->ref : "", protocol);
    printf("model\tdata\tctx\twindows\ttokens\tmean_nll\tnll_stderr\tppl\tppl_stderr\ttop1"
           "\ttokens_per_s\tkl_mean\ttop1_agree\tdp_mean\td_nll\td_nll_lo\td_nll_hi"
           "\td_nll_significant\n");
    printf("%s\t%s\t%d\t%lld\t%lld\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.1f", a->model, a->data, r->ctx,
           (long long)r->n_windows, (long long)r->n_tokens, r->mean_nll, r->nll_stderr, r->ppl,
           r->ppl_stderr, r->top1, r->tokens_per_s);
    if (r->has_ref)
        printf("\t%.6f\t%.6f\t%.6f", r->kl_mean, r->top1_agree, r->dp_mean);
    else
        printf("\tnan\tnan\tnan");
    if (boot)
        printf("\t%.6f\t%.6f\t%.6f\t%d\n", boot->diff, boot->ci_low, boot->ci_high,
               boot->significant);
    else
        printf("\tnan\tnan\tnan\tnan\n");
}

/* --bootstrap: the reference's own per-token NLL on the same windows (a second pass), then the
 * paired bootstrap of model - ref over windows. */
static cce_status bootstrap_nll(const eval_args *a, cce_model *ref, const int32_t *tokens,
                                size_t n_tokens, const cce_eval_options *o,
                                const cce_eval_result *r, cce_bootstrap_result *boot) {
    cce_eval_options ro = *o;
    ro.keep_token_nll = 1;
    cce_eval_result rr = {0};
    cce_status s = cce_eval(ref, NULL, tokens, n_tokens, &ro, &rr);
    if (s) {
        cce_error_prefix("the reference's own pass: ");
        return s;
    }
    cce_bootstrap_options bo = {.resamples = (int)a->bootstrap, .seed = a->seed};
    if (rr.n_tokens != r->n_tokens)
        s = cce_fail(CCE_ERR_INTERNAL, "the reference scored %lld tokens, the model %lld",
                     (long long)rr.n_tokens, (long long)r->n_tokens);
    else
        s = cce_bootstrap_paired(r->token_nll, rr.token_nll, (size_t)r->n_tokens,
                                 (size_t)(r->ctx - 1), &bo, boot);
    cce_eval_result_free(&rr);
    return s;
}

/* Opens the model(s), checks --ctx/--max-tokens against them, tokenizes and evaluates. */
static int run(const eval_args *a) {
    if (a->task) return eval_run_task(a);
    cce_model *m = NULL, *ref = NULL;
    int32_t *tokens = NULL;
    size_t n_tokens = 0;
    char *data_path = NULL;
    char sha[65] = "";
    cce_eval_result r = {0};
    int rc = 1;
    cce_status s = cce_model_open(a->model, &m);
    if (!s && a->ref) s = cce_model_open(a->ref, &ref);
    if (s) {
        rc = cli_fail(CMD, s);
        goto done;
    }
    long max_ctx = cce_model_config(m)->seq_len;
    const char *limited_by = "the model's seq_len";
    if (ref && cce_model_config(ref)->seq_len < max_ctx) {
        max_ctx = cce_model_config(ref)->seq_len;
        limited_by = "the reference's seq_len";
    }
    if (a->ctx > max_ctx) {
        rc = cli_usage_error(CMD, "--ctx = %ld is outside [2, %ld] (%s)", a->ctx, max_ctx,
                             limited_by);
        goto done;
    }
    cce_eval_options o = {.ctx = (int)a->ctx,
                          .max_tokens = a->max_tokens,
                          .keep_token_nll = a->bootstrap > 0,
                          .progress = show_progress};
    cce_bootstrap_result boot = {0};
    const cce_tokenizer *tok = cce_model_tokenizer(m);
    if (!tok) {
        rc = cli_fail(CMD, cce_fail(CCE_ERR_STATE, "%s has no tokenizer", a->model));
        goto done;
    }
    if ((s = cce_dataset_resolve(a->data, &data_path, sha)) ||
        (s = cce_dataset_tokens(a->data, tok, &tokens, &n_tokens)) ||
        (s = cce_eval(m, ref, tokens, n_tokens, &o, &r)) ||
        (a->bootstrap && (s = bootstrap_nll(a, ref, tokens, n_tokens, &o, &r, &boot)))) {
        cli_progress_end();
        rc = cli_fail(CMD, s);
        goto done;
    }
    cli_progress_end();
    char protocol[1024];
    cce_eval_protocol_line(&r, a->data, sha, protocol, sizeof protocol);
    const cce_bootstrap_result *b = a->bootstrap ? &boot : NULL;
    if (a->json)
        rc = print_json(&r, a, sha, b);
    else if (a->tsv) {
        print_tsv(a, &r, protocol, b);
        rc = 0;
    } else {
        print_report(a, &r, protocol, b);
        rc = 0;
    }
done:
    cce_eval_result_free(&r);
    free(tokens);
    free(data_path);
    cce_model_free(ref);
    cce_model_free(m);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    eval_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    return run(&a);
}
