/* cce eval: perplexity, accuracy and (with --ref) KL, top-1 agreement and Δp against a base
 * model, under the pinned evaluation protocol (eval.h). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dataset.h"
#include "eval.h"
#include "model.h"

static const char *const CMD = "eval";

static void usage(FILE *f) {
    fprintf(f,
            "usage: cce eval MODEL.h5 --data NAME|PATH [--ctx N] [--max-tokens N] [--ref BASE.h5]\n"
            "                [--json | --tsv]\n"
            "\n"
            "Evaluates a model on a text under the pinned protocol: the text is tokenized once\n"
            "as one stream with the model's tokenizer; each window is BOS followed by ctx-1\n"
            "stream tokens; windows do not overlap and only whole windows are used; every\n"
            "position after BOS is scored. Reports perplexity (standard error by the delta\n"
            "method), mean NLL, top-1 next-token accuracy and speed, with the protocol line and\n"
            "the data's sha256.\n"
            "\n"
            "options:\n"
            "  --data NAME|PATH  a dataset of the manifest (e.g. tinystories_val) or a text file\n"
            "  --ctx N           window length including BOS, in [2, seq_len]\n"
            "                    (default: min(seq_len, %d))\n"
            "  --max-tokens N    score at most N tokens: floor(N / (ctx-1)) whole windows, at\n"
            "                    least one (default 0: the whole stream)\n"
            "  --ref BASE.h5     also run BASE.h5 on the same windows and report KL(base||model),\n"
            "                    top-1 agreement and dp = p_model(correct) - p_base(correct)\n"
            "  --json            print one JSON object instead of the report\n"
            "  --tsv             print a commented header and one tab-separated row\n"
            "  -h, --help        this help\n"
            "\n"
            "Progress is shown on a terminal only. Exit status: 0 success, 1 failure, 2 usage.\n",
            CCE_EVAL_DEFAULT_CTX_CAP);
}

typedef struct eval_args {
    const char *model, *data, *ref, *ctx_text, *max_tokens_text;
    long ctx, max_tokens; /* 0 = default */
    int json, tsv;
} eval_args;

/* Returns 0, or the usage-error exit code. */
static int parse_args(int argc, char **argv, eval_args *a) {
    static const char *const value_opts[] = {"--data", "--ctx", "--max-tokens", "--ref"};
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            a->json = 1;
            continue;
        }
        if (!strcmp(argv[i], "--tsv")) {
            a->tsv = 1;
            continue;
        }
        const char **slots[] = {&a->data, &a->ctx_text, &a->max_tokens_text, &a->ref};
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
    if (!a->model) return cli_usage_error(CMD, "MODEL.h5 is missing");
    if (!a->data) return cli_usage_error(CMD, "--data NAME|PATH is missing");
    if (a->json && a->tsv) return cli_usage_error(CMD, "--json and --tsv exclude each other");
    int rc = 0;
    if (a->ctx_text) rc = cli_parse_long(CMD, "--ctx", a->ctx_text, 2, INT_MAX, &a->ctx);
    if (!rc && a->max_tokens_text)
        rc = cli_parse_long(CMD, "--max-tokens", a->max_tokens_text, 0, LONG_MAX, &a->max_tokens);
    return rc;
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

static void print_report(const eval_args *a, const cce_eval_result *r, const char *protocol) {
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
}

static int print_json(const cce_eval_result *r, const eval_args *a, const char *sha) {
    json_t *o = cce_eval_result_json(r, a->data, sha);
    if (!o || json_object_set_new(o, "model", json_string(a->model)) ||
        json_object_set_new(o, "ref", a->ref ? json_string(a->ref) : json_null())) {
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
static void print_tsv(const eval_args *a, const cce_eval_result *r, const char *protocol) {
    printf("# cce eval: model %s%s%s\n# %s\n", a->model, a->ref ? ", reference " : "",
           a->ref ? a->ref : "", protocol);
    printf("model\tdata\tctx\twindows\ttokens\tmean_nll\tnll_stderr\tppl\tppl_stderr\ttop1"
           "\ttokens_per_s\tkl_mean\ttop1_agree\tdp_mean\n");
    printf("%s\t%s\t%d\t%lld\t%lld\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.1f", a->model, a->data, r->ctx,
           (long long)r->n_windows, (long long)r->n_tokens, r->mean_nll, r->nll_stderr, r->ppl,
           r->ppl_stderr, r->top1, r->tokens_per_s);
    if (r->has_ref)
        printf("\t%.6f\t%.6f\t%.6f\n", r->kl_mean, r->top1_agree, r->dp_mean);
    else
        printf("\tnan\tnan\tnan\n");
}

/* Opens the model(s), checks --ctx/--max-tokens against them, tokenizes and evaluates. */
static int run(const eval_args *a) {
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
    cce_eval_options o = {
        .ctx = (int)a->ctx, .max_tokens = a->max_tokens, .progress = show_progress};
    const cce_tokenizer *tok = cce_model_tokenizer(m);
    if (!tok) {
        rc = cli_fail(CMD, cce_fail(CCE_ERR_STATE, "%s has no tokenizer", a->model));
        goto done;
    }
    if ((s = cce_dataset_resolve(a->data, &data_path, sha)) ||
        (s = cce_dataset_tokens(a->data, tok, &tokens, &n_tokens)) ||
        (s = cce_eval(m, ref, tokens, n_tokens, &o, &r))) {
        cli_progress_end();
        rc = cli_fail(CMD, s);
        goto done;
    }
    cli_progress_end();
    char protocol[1024];
    cce_eval_protocol_line(&r, a->data, sha, protocol, sizeof protocol);
    if (a->json)
        rc = print_json(&r, a, sha);
    else if (a->tsv) {
        print_tsv(a, &r, protocol);
        rc = 0;
    } else {
        print_report(a, &r, protocol);
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
