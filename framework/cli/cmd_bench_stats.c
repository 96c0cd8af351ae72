/* cce bench-stats: the cost of recording activation statistics inside the evaluation (against
 * the evaluation alone, same windows) and of the weight statistics, per model (bench_stats.h). */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_stats.h"
#include "cli.h"
#include "dataset.h"
#include "import.h"
#include "kernels.h"
#include "model.h"
#include "synth.h"

static const char *const CMD = "bench-stats";

#define DEFAULT_MODELS "stories260K,stories15M"
#define MAX_MODELS     8
#define REAL_260K_BIN  "models/stories260K/stories260K.bin"
#define REAL_260K_TOK  "models/stories260K/tok512.bin"
#define VARIED_TENSOR  "layers.0.mlp.down_proj.weight"

static void usage(FILE *f) {
    fprintf(f,
            "usage: cce bench-stats [--models LIST] [--windows N] [--reps N] [--threads N] "
            "[--quick]\n"
            "\n"
            "Measures what recording statistics costs, per model: the evaluation of a variant\n"
            "against the dense model (both side by side on every window, as cce eval --ref\n"
            "runs them) with and without the activation statistics recorded by forward hooks\n"
            "in the same passes (same windows; best of N runs each, alternating), the one-time\n"
            "dense reference pass that fixes the histogram edges and outlier thresholds, and the\n"
            "weight statistics of the variant (every linear tensor before and after).\n"
            "\n"
            "options:\n"
            "  --models LIST  comma-separated: stories260K (the real model and the TinyStories\n"
            "                 text from $CCE_MIRROR, else a synthetic model of its shape on\n"
            "                 random tokens) and synthetic models of the shapes tiny,\n"
            "                 stories15M, stories110M on random tokens (default %s)\n"
            "  --windows N    evaluation windows (of the protocol's ctx) per run, in [1, 10000]\n"
            "                 (default 8)\n"
            "  --reps N       runs of each measurement, best taken, in [1, 100] (default 3)\n"
            "  --threads N    OpenMP and OpenBLAS threads, in [1, 256] (default: OpenMP's)\n"
            "  --quick        2 windows, 1 run (a smoke test, not a measurement)\n"
            "  -h, --help     this help\n"
            "\n"
            "The variant differs from the dense model in one tensor (" VARIED_TENSOR
            " scaled by 0.5):\n"
            "the cost depends on the shapes only. Exit status: 0 success, 1 failure, 2 usage.\n",
            DEFAULT_MODELS);
}

typedef struct args {
    char *list; /* owns the names */
    char *names[MAX_MODELS];
    int n_models;
    long windows, reps, threads;
} args;

static int parse_args(int argc, char **argv, args *a) {
    const char *list = DEFAULT_MODELS;
    a->windows = 8;
    a->reps = 3;
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        int missing = 0;
        const char *v;
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if ((v = cli_option_value(argc, argv, &i, "--models", &missing)))
            list = v;
        else if ((v = cli_option_value(argc, argv, &i, "--windows", &missing))) {
            if (cli_parse_long(CMD, "--windows", v, 1, 10000, &a->windows)) return 2;
        } else if ((v = cli_option_value(argc, argv, &i, "--reps", &missing))) {
            if (cli_parse_long(CMD, "--reps", v, 1, 100, &a->reps)) return 2;
        } else if ((v = cli_option_value(argc, argv, &i, "--threads", &missing))) {
            if (cli_parse_long(CMD, "--threads", v, 1, 256, &a->threads)) return 2;
        } else if (missing)
            return cli_usage_error(CMD, "%s needs a value", argv[i]);
        else
            return cli_usage_error(CMD, "unexpected argument '%s'", argv[i]);
    }
    if (quick) {
        a->windows = 2;
        a->reps = 1;
    }
    if (!(a->list = strdup(list))) return cli_usage_error(CMD, "out of memory");
    char *save = NULL;
    for (char *tok = strtok_r(a->list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int known = 0;
        for (const char *const *p = cce_synth_preset_names(); *p; p++) known |= !strcmp(*p, tok);
        if (!known)
            return cli_usage_error(CMD,
                                   "--models: unknown model '%s' (known: tiny, stories260K, "
                                   "stories15M, stories110M)",
                                   tok);
        if (a->n_models == MAX_MODELS)
            return cli_usage_error(CMD, "--models: more than %d models", MAX_MODELS);
        a->names[a->n_models++] = tok;
    }
    if (!a->n_models) return cli_usage_error(CMD, "--models: empty list");
    return 0;
}

/* The real stories260K and TinyStories tokens from the mirror, or CCE_ERR_NOT_FOUND. */
static cce_status load_real(cce_model **m, int32_t **tokens, size_t *n) {
    const char *mirror = cce_mirror_dir();
    if (!mirror) return CCE_ERR_NOT_FOUND;
    char bin[4096], tok[4096];
    snprintf(bin, sizeof bin, "%s/%s", mirror, REAL_260K_BIN);
    snprintf(tok, sizeof tok, "%s/%s", mirror, REAL_260K_TOK);
    FILE *f = fopen(bin, "rb");
    if (!f) return CCE_ERR_NOT_FOUND;
    fclose(f);
    cce_status s = cce_import_llama2c(bin, tok, m);
    if (!s) s = cce_dataset_tokens("tinystories_val", cce_model_tokenizer(*m), tokens, n);
    if (s) {
        cce_model_free(*m);
        *m = NULL;
        if (s == CCE_ERR_NOT_FOUND) s = CCE_ERR_IO; /* present but unusable: report it */
    }
    return s;
}

/* A synthetic model of a preset and random tokens in [3, vocab). */
static cce_status load_synth(const char *preset, size_t n, cce_model **m, int32_t **tokens) {
    cce_synth_options o;
    cce_status s = cce_synth_preset(preset, &o);
    if (s) return s;
    o.seed = 1;
    if ((s = cce_synth_model(&o, m))) return s;
    if (!(*tokens = malloc(n * sizeof **tokens))) {
        cce_model_free(*m);
        *m = NULL;
        return cce_fail(CCE_ERR_NOMEM, "bench-stats: %zu tokens", n);
    }
    uint64_t x = 88172645463325252ULL; /* xorshift64: reproducible tokens */
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (*tokens)[i] = 3 + (int32_t)(x % (uint64_t)(o.cfg.vocab_size - 3));
    }
    return CCE_OK;
}

/* The variant: the dense model with VARIED_TENSOR scaled by 0.5. */
static cce_status make_variant(cce_model *dense, cce_model **out) {
    cce_tensor *t, *copy = NULL;
    cce_status s = cce_model_variant_new(dense, out);
    if (!s) s = cce_model_tensor(dense, VARIED_TENSOR, &t);
    if (!s) s = cce_tensor_clone(t, &copy);
    if (!s) {
        for (int64_t i = 0; i < cce_tensor_numel(copy); i++) copy->data[i] *= 0.5f;
        s = cce_model_put_tensor(*out, VARIED_TENSOR, copy);
        if (s) cce_tensor_free(copy);
    }
    if (s) {
        cce_model_free(*out);
        *out = NULL;
    }
    return s;
}

static cce_status bench_one(const args *a, const char *name) {
    cce_model *dense = NULL, *variant = NULL;
    int32_t *tokens = NULL;
    size_t n = 0;
    const char *data = "random tokens", *source = "synthetic";
    cce_status s = CCE_ERR_NOT_FOUND;
    if (!strcmp(name, "stories260K")) {
        s = load_real(&dense, &tokens, &n);
        if (!s) {
            data = "tinystories_val";
            source = "real";
        } else if (s != CCE_ERR_NOT_FOUND) {
            return s;
        }
    }
    if (s) {
        cce_synth_options o;
        if ((s = cce_synth_preset(name, &o))) return s;
        int ctx = o.cfg.seq_len < 512 ? o.cfg.seq_len : 512;
        n = (size_t)a->windows * (size_t)(ctx - 1);
        if ((s = load_synth(name, n, &dense, &tokens))) return s;
    }
    int ctx = cce_model_config(dense)->seq_len < 512 ? cce_model_config(dense)->seq_len : 512;
    cce_bench_stats_options o = {
        .ctx = ctx, .max_tokens = a->windows * (int64_t)(ctx - 1), .reps = (int)a->reps};
    cce_bench_stats_result r;
    if (!(s = make_variant(dense, &variant)))
        s = cce_bench_stats(dense, variant, tokens, n, &o, &r);
    if (!s) {
        printf("%-12s %-9s %-15s %4d %7lld %8lld | %8.3f %8.3f %7.1f%% %7.2f | %9.3f | %8.3f "
               "%7.2f\n",
               name, source, data, r.ctx, (long long)r.windows, (long long)r.tokens, r.eval_seconds,
               r.record_seconds, 100.0 * r.overhead,
               r.values > 0 ? 1e9 * (r.record_seconds - r.eval_seconds) / (double)r.values : 0.0,
               r.ref_seconds, r.wstats_seconds, (double)r.weights / 1e6);
        fflush(stdout);
    }
    cce_model_free(variant);
    cce_model_free(dense);
    free(tokens);
    return s;
}

int cmd_bench_stats(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc) {
        free(a.list);
        return rc;
    }
    if (a.threads) {
        omp_set_num_threads((int)a.threads);
        openblas_set_num_threads((int)a.threads);
    }
    printf("cce bench-stats: %d threads (OpenMP), OpenBLAS core %s; %ld windows, best of %ld\n\n",
           a.threads ? (int)a.threads : omp_get_max_threads(), cce_blas_corename(), a.windows,
           a.reps);
    printf("%-12s %-9s %-15s %4s %7s %8s | %8s %8s %8s %7s | %9s | %8s %7s\n", "model", "weights",
           "data", "ctx", "windows", "tokens", "eval", "+record", "overhead", "ns/val", "reference",
           "weights", "M wts");
    printf("%-12s %-9s %-15s %4s %7s %8s | %8s %8s %8s %7s | %9s | %8s %7s\n", "", "", "", "", "",
           "", "(s)", "(s)", "", "", "(s, once)", "(s)", "");
    cce_status s = CCE_OK;
    for (int i = 0; i < a.n_models && !s; i++)
        if ((s = bench_one(&a, a.names[i]))) cce_error_prefix("%s: ", a.names[i]);
    if (!s)
        printf("\neval: cce_eval of the variant against the dense model (both forward passes per\n"
               "  window). +record: cce_astats_eval on the same windows, which returns the same\n"
               "  evaluation and records per layer and site (block output, FFN activation) the\n"
               "  moments, histogram, outliers and cosine / relative L2 / KL against the dense\n"
               "  model. overhead = +record / eval - 1; ns/val = the extra time per activation\n"
               "  value of the variant. reference: the dense pass that fixes histogram edges and\n"
               "  outlier thresholds, once per domain and experiment. weights: cce_wstats_model\n"
               "  (GSL statistics, histograms and relative Frobenius error of every linear\n"
               "  tensor, before and after), M wts = millions of weights per model.\n");
    free(a.list);
    return s ? cli_fail(CMD, s) : 0;
}
