/* cce compress: runs strategies in sequence on a model and writes the compressed variant with
 * its report (compress.h, report_store.h). */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "compress.h"
#include "dataset.h"
#include "model.h"
#include "report_store.h"
#include "strategy.h"

static const char *const CMD = "compress";

#define MAX_STEPS 32

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: cce compress MODEL.h5 -s STRATEGY[:k=v,...] [-s ...] [--plan FILE] [--rule R]...\n"
        "                    [--calib DATA] [--calib-tokens N] [--calib-window N]\n"
        "                    [--test-tokens N] [--seed S] [--ctx N] [--no-cache]\n"
        "                    [--load PLUGIN.so]... -o OUT.h5\n"
        "\n"
        "Compresses MODEL.h5 with one or more strategies in sequence (e.g. -s wanda:ratio=0.5\n"
        "-s rtn:bits=8), prints the per-tensor report and the applied plan, and writes the\n"
        "variant with its report (/report) to OUT.h5. MODEL.h5 is never modified. Each -s is\n"
        "NAME or NAME:k=v,k=v, split at the first ':' only (nm=2:4 survives); 'cce strategies'\n"
        "lists every strategy and parameter.\n"
        "\n"
        "options:\n"
        "  -s, --strategy SPEC  a strategy step; repeat for composition\n"
        "  --plan FILE          plan rules, one per line ('#' starts a comment)\n"
        "  --rule R             one plan rule; repeatable. Rules: target=V, LAYER=V (e.g. 3=0.2),\n"
        "                       NAME_OR_GLOB=V (layers.*.mlp.down_proj=0.6), skip=GLOB,\n"
        "                       unskip=GLOB; prefix NAME: to give a rule to one strategy only\n"
        "                       (rtn:layers.0.*=8). Precedence: tensor name > pattern > layer\n"
        "                       > allocation (OWL) > target\n"
        "  --calib DATA         calibration text: a dataset of the manifest or a file\n"
        "  --calib-tokens N     calibration tokens (default 16384, or calib_windows x calib_len\n"
        "                       of a strategy with these parameters, e.g. cce)\n"
        "  --calib-window N     tokens per calibration segment, each run as BOS + segment\n"
        "                       (default 256, or such a strategy's calib_len)\n"
        "  --test-tokens N      the first N tokens of the stream are the evaluation split and\n"
        "                       are never used for calibration (default 100000, which covers\n"
        "                       the pinned evaluation prefix)\n"
        "  --seed S             seed of the calibration segment draw (default 1)\n"
        "  --ctx N              calibration window length incl. BOS (default\n"
        "                       min(seq_len, calib-window + 1))\n"
        "  --no-cache           do not read or write cached dense calibration statistics\n"
        "  --load PLUGIN.so     load an external strategy first; repeatable\n"
        "  -o, --output OUT.h5  the compressed model (written to a temporary name, then renamed)\n"
        "  -h, --help           this help\n"
        "\n"
        "Exit status: 0 success, 1 failure (nothing written), 2 usage error.\n");
}

typedef struct compress_args {
    const char *model, *out, *plan, *calib;
    const char *specs[MAX_STEPS];
    size_t n_specs;
    const char **rules; /* [n_rules] borrowed from argv */
    size_t n_rules;
    const char **loads; /* [n_loads] */
    size_t n_loads;
    long calib_tokens, calib_window, test_tokens, seed, ctx;
    int no_cache;
    int tokens_given, window_given; /* --calib-tokens / --calib-window on the command line */
} compress_args;

/* The value of option `name` (or its short form) at argv[*i]: "--name VALUE" or "--name=VALUE".
 * NULL if argv[*i] is not that option; *missing is set when the value is absent. */
static const char *option_value(int argc, char **argv, int *i, const char *name, const char *alt,
                                int *missing) {
    const char *names[2] = {name, alt};
    for (int k = 0; k < 2; k++) {
        if (!names[k]) continue;
        size_t len = strlen(names[k]);
        if (strncmp(argv[*i], names[k], len) != 0) continue;
        if (argv[*i][len] == '=' && names[k][1] == '-') return argv[*i] + len + 1;
        if (argv[*i][len] != '\0') continue;
        if (*i + 1 >= argc) {
            *missing = 1;
            return NULL;
        }
        return argv[++*i];
    }
    return NULL;
}

/* Returns 0, or the usage-error exit code. */
static int parse_args(int argc, char **argv, compress_args *a) {
    memset(a, 0, sizeof *a);
    a->calib_tokens = 16384;
    a->calib_window = 256;
    a->test_tokens = 100000;
    a->seed = 1;
    a->rules = calloc((size_t)argc, sizeof *a->rules);
    a->loads = calloc((size_t)argc, sizeof *a->loads);
    if (!a->rules || !a->loads) return cli_usage_error(CMD, "out of memory");
    const char *tokens = NULL, *window = NULL, *test = NULL, *seed = NULL, *ctx = NULL;
    for (int i = 1; i < argc; i++) {
        int missing = 0;
        const char *v;
        if (!strcmp(argv[i], "--no-cache")) {
            a->no_cache = 1;
            continue;
        }
#define OPT(long_name, short_name, action)                                                         \
    if ((v = option_value(argc, argv, &i, long_name, short_name, &missing)) || missing) {          \
        if (missing) return cli_usage_error(CMD, "%s needs a value", long_name);                   \
        action;                                                                                    \
        continue;                                                                                  \
    }
        OPT("--strategy", "-s", {
            if (a->n_specs == MAX_STEPS)
                return cli_usage_error(CMD, "at most %d strategies", MAX_STEPS);
            a->specs[a->n_specs++] = v;
        })
        OPT("--output", "-o", a->out = v)
        OPT("--plan", NULL, a->plan = v)
        OPT("--rule", NULL, a->rules[a->n_rules++] = v)
        OPT("--calib", NULL, a->calib = v)
        OPT("--calib-tokens", NULL, tokens = v)
        OPT("--calib-window", NULL, window = v)
        OPT("--test-tokens", NULL, test = v)
        OPT("--seed", NULL, seed = v)
        OPT("--ctx", NULL, ctx = v)
        OPT("--load", NULL, a->loads[a->n_loads++] = v)
#undef OPT
        if (argv[i][0] == '-' && argv[i][1] != '\0')
            return cli_usage_error(CMD, "unknown option '%s'", argv[i]);
        if (a->model) return cli_usage_error(CMD, "one MODEL.h5 only (got '%s')", argv[i]);
        a->model = argv[i];
    }
    if (!a->model) return cli_usage_error(CMD, "MODEL.h5 is missing");
    if (a->n_specs == 0) return cli_usage_error(CMD, "give at least one strategy with -s NAME");
    if (!a->out) return cli_usage_error(CMD, "-o OUT.h5 is missing");
    if (!strcmp(a->out, a->model))
        return cli_usage_error(CMD, "-o must name a new file, not MODEL.h5 itself");
    int rc = 0;
    if (tokens) rc = cli_parse_long(CMD, "--calib-tokens", tokens, 1, INT_MAX, &a->calib_tokens);
    if (!rc && window)
        rc = cli_parse_long(CMD, "--calib-window", window, 1, INT_MAX, &a->calib_window);
    if (!rc && test) rc = cli_parse_long(CMD, "--test-tokens", test, 0, LONG_MAX, &a->test_tokens);
    if (!rc && seed) rc = cli_parse_long(CMD, "--seed", seed, 0, LONG_MAX, &a->seed);
    if (!rc && ctx) rc = cli_parse_long(CMD, "--ctx", ctx, 2, INT_MAX, &a->ctx);
    a->tokens_given = tokens != NULL;
    a->window_given = window != NULL;
    if (!rc && !a->calib && (tokens || window || test || seed || ctx))
        rc = cli_usage_error(CMD, "--calib-tokens, --calib-window, --test-tokens, --seed and "
                                  "--ctx need --calib");
    return rc;
}

/* ---- Rules ----------------------------------------------------------------------------------- */

typedef struct rule_set {
    char **owned; /* lines read from --plan */
    size_t n_owned;
    const char **all; /* plan-file lines, then --rule options */
    size_t n;
} rule_set;

static void rule_set_free(rule_set *r) {
    for (size_t i = 0; i < r->n_owned; i++) free(r->owned[i]);
    free(r->owned);
    free(r->all);
    memset(r, 0, sizeof *r);
}

static cce_status read_rules(const compress_args *a, rule_set *r) {
    memset(r, 0, sizeof *r);
    size_t len = 0;
    char *text = NULL;
    if (a->plan) {
        cce_status s = cce_text_load(a->plan, &text, &len);
        if (s) return s;
    }
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    r->owned = calloc(lines, sizeof *r->owned);
    r->all = calloc(lines + a->n_rules + 1, sizeof *r->all);
    if (!r->owned || !r->all) {
        free(text);
        return cce_fail(CCE_ERR_NOMEM, "plan rules");
    }
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        while (*line == ' ' || *line == '\t' || *line == '\r') line++;
        size_t n = strlen(line);
        while (n && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r')) n--;
        line[n] = '\0';
        if (!n) continue;
        if (!(r->owned[r->n_owned] = strdup(line))) {
            free(text);
            return cce_fail(CCE_ERR_NOMEM, "plan rules");
        }
        r->all[r->n++] = r->owned[r->n_owned++];
    }
    free(text);
    for (size_t i = 0; i < a->n_rules; i++) r->all[r->n++] = a->rules[i];
    return CCE_OK;
}

/* ---- Calibration data ------------------------------------------------------------------------ */

typedef struct calib_tokens {
    int32_t *stream;
    int32_t *tokens; /* [n_segments * window] */
    cce_calib_data data;
    cce_split_result split;
} calib_tokens;

static void calib_tokens_free(calib_tokens *c) {
    free(c->stream);
    free(c->tokens);
    cce_split_result_clear(&c->split);
}

/* The calibration segments: the dataset's token stream, minus its first test_tokens, split into
 * ceil(calib_tokens / window) random segments (cce_split). */
static cce_status load_calibration(const compress_args *a, const cce_model *m, calib_tokens *c) {
    memset(c, 0, sizeof *c);
    const cce_tokenizer *tok = cce_model_tokenizer(m);
    if (!tok) return cce_fail(CCE_ERR_STATE, "%s has no tokenizer for --calib", a->model);
    size_t n = 0;
    cce_status s = cce_dataset_tokens(a->calib, tok, &c->stream, &n);
    if (s) return s;
    if ((s = cce_split(n, (size_t)a->test_tokens, (size_t)a->calib_tokens, (size_t)a->calib_window,
                       (uint64_t)a->seed, &c->split))) {
        cce_error_prefix("--calib %s: ", a->calib);
        return s;
    }
    if ((s = cce_split_calib_tokens(c->stream, n, &c->split, &c->tokens))) return s;
    c->data.tokens = c->tokens;
    c->data.n_segments = c->split.n_calib;
    c->data.seg_len = c->split.calib_window;
    cce_calib_data_hash(&c->data);
    return CCE_OK;
}

/* ---- Output ---------------------------------------------------------------------------------- */

static void show_progress(void *user, size_t step, const char *strategy, int layer, int n_layers) {
    (void)user;
    char label[64];
    snprintf(label, sizeof label, "step %zu %s", step + 1, strategy);
    cli_progress(label, layer < 0 ? n_layers : layer + 1, n_layers);
}

static void print_number(double v, const char *fmt) {
    if (isnan(v))
        printf(" %8s", "-");
    else
        printf(fmt, v);
}

static void print_report(const cce_compress_result *r) {
    printf("%-10s %5s %-34s %21s %23s %7s %8s %6s %8s %8s %8s\n", "STRATEGY", "LAYER", "TENSOR",
           "PARAMS before->after", "BYTES before->after", "BITS/W", "SPARSITY", "RANK", "REL_FRO",
           "OUT_ERR", "TIME_S  NOTE");
    for (size_t i = 0; i < r->report.n; i++) {
        const cce_report_row *w = &r->report.rows[i];
        char layer[16] = "-", rank[24] = "-", params[48], bytes[48];
        if (w->layer >= 0) snprintf(layer, sizeof layer, "%d", w->layer);
        if (w->rank >= 0) snprintf(rank, sizeof rank, "%lld", (long long)w->rank);
        snprintf(params, sizeof params, "%lld->%lld", (long long)w->params_before,
                 (long long)w->params_after);
        snprintf(bytes, sizeof bytes, "%lld->%lld", (long long)w->bytes_before,
                 (long long)w->bytes_after);
        printf("%-10s %5s %-34s %21s %23s", w->strategy, layer, w->tensor, params, bytes);
        print_number(w->bits_per_weight, " %7.3f");
        print_number(w->sparsity, " %8.4f");
        printf(" %6s", rank);
        print_number(w->rel_fro_error, " %8.5f");
        print_number(w->output_error, " %8.5f");
        printf(" %8.4f  %s\n", w->seconds, w->note);
    }
}

static void print_totals(const char *label, const cce_compress_totals *t) {
    if (t->tensors == 0) {
        printf("  %-11s -\n", label);
        return;
    }
    printf("  %-11s %lld tensors, params %lld -> %lld, bytes %lld -> %lld, byte_ratio %.4f, "
           "%.3f bits/weight\n",
           label, (long long)t->tensors, (long long)t->params_before, (long long)t->params_after,
           (long long)t->bytes_before, (long long)t->bytes_after, t->byte_ratio,
           t->bits_per_weight);
}

static void print_summary(const cce_compress_result *r) {
    const cce_compress_summary *s = &r->summary;
    printf("\nsummary (byte_ratio = 1 - encoded bytes / float32 bytes):\n");
    print_totals("blocks", &s->blocks);
    print_totals("embeddings", &s->embeddings);
    print_totals("classifier", &s->classifier);
    print_totals("model", &s->model);
    printf("  time        %.3f s (calibration %.3f s)\n", s->seconds, s->calib_seconds);
}

static void print_plans(const cce_compress_result *r) {
    for (size_t k = 0; k < r->n_steps; k++) {
        printf("\napplied plan of step %zu: %s:%s\n", k + 1, r->steps[k].strategy,
               r->steps[k].params);
        cce_plan_print_applied(r->plans[k], stdout);
    }
}

/* ---- Run ------------------------------------------------------------------------------------- */

/* The first strategy with the parameters calib_windows and calib_len (cce) sets the calibration
 * size the command line leaves open: calib_windows windows of calib_len tokens. */
static void strategy_calib_shape(compress_args *a, cce_strategy_instance *const *steps) {
    for (size_t i = 0; i < a->n_specs; i++) {
        const cce_params *p = cce_strategy_instance_params(steps[i]);
        int64_t windows, len;
        if (cce_params_get_int(p, "calib_windows", &windows) ||
            cce_params_get_int(p, "calib_len", &len)) {
            cce_error_clear();
            continue;
        }
        if (!a->window_given) a->calib_window = (long)len;
        if (!a->tokens_given) a->calib_tokens = (long)windows * a->calib_window;
        return;
    }
}

static int run(compress_args *a) {
    cce_strategy_instance *steps[MAX_STEPS] = {0};
    cce_model *m = NULL, *variant = NULL;
    cce_compress_result result = {0};
    rule_set rules = {0};
    calib_tokens calib = {0};
    int rc = 1;
    cce_status s = CCE_OK;
    for (size_t i = 0; !s && i < a->n_loads; i++) {
        const cce_strategy *ext;
        s = cce_strategy_load_external(a->loads[i], &ext);
    }
    for (size_t i = 0; !s && i < a->n_specs; i++) {
        const cce_strategy *st;
        cce_params *p;
        if (!(s = cce_strategy_parse_spec(a->specs[i], &st, &p))) {
            s = cce_strategy_instance_new(st, p, &steps[i]);
            cce_params_free(p);
        }
        if (!s && !a->calib && cce_compress_needs_calibration(steps[i])) {
            s = st->needs & (CCE_NEEDS_CALIBRATION | CCE_NEEDS_SEQUENTIAL)
                    ? cce_fail(CCE_ERR_STATE,
                               "%s: this strategy needs calibration data (give "
                               "--calib DATA)",
                               st->name)
                    : cce_fail(CCE_ERR_STATE,
                               "%s: alloc = owl needs calibration data (give "
                               "--calib DATA)",
                               st->name);
        }
    }
    if (!s) strategy_calib_shape(a, steps);
    if (!s) s = read_rules(a, &rules);
    if (!s) s = cce_model_open(a->model, &m);
    if (!s && a->calib) s = load_calibration(a, m, &calib);
    if (s) goto done;
    cce_compress_options o;
    cce_compress_options_init(&o);
    int seq_len = cce_model_config(m)->seq_len;
    o.calib.ctx =
        a->ctx ? (int)a->ctx : (a->calib_window + 1 < seq_len ? (int)a->calib_window + 1 : seq_len);
    o.use_cache = !a->no_cache;
    o.progress = show_progress;
    s = cce_compress(m, steps, a->n_specs, rules.all, rules.n, a->calib ? &calib.data : NULL, &o,
                     &variant, &result);
    cli_progress_end();
    if (s) goto done;
    printf("model:  %s\n", a->model);
    if (a->calib)
        printf("calib:  %s, %zu segments of %zu tokens after the first %ld (seed %ld, ctx %d), "
               "sha256 %s\n",
               a->calib, calib.data.n_segments, calib.data.seg_len, a->test_tokens, a->seed,
               o.calib.ctx, calib.data.sha256);
    printf("\n");
    print_report(&result);
    print_summary(&result);
    print_plans(&result);
    if ((s = cce_compress_save(variant, &result, a->out, NULL))) goto done;
    printf("\nwrote %s\n", a->out);
    rc = 0;
done:
    if (s) rc = cli_fail(CMD, s);
    cce_compress_result_clear(&result);
    cce_model_free(variant);
    cce_model_free(m);
    for (size_t i = 0; i < a->n_specs; i++) cce_strategy_instance_free(steps[i]);
    rule_set_free(&rules);
    calib_tokens_free(&calib);
    return rc;
}

int cmd_compress(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    compress_args a;
    int rc = parse_args(argc, argv, &a);
    if (!rc) rc = run(&a);
    free(a.rules);
    free(a.loads);
    return rc;
}
