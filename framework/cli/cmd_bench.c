/* cce bench: evaluation and generation speed of the forward pass against the machine's own
 * bounds (sgemm peak, weight-streaming time), and peak memory per model.
 *
 * Every measurement runs in a forked child: the sgemm peak in one, each model in its own, so that
 * wait4's ru_maxrss is that model's peak memory (the RSS of a long-lived process only grows) and
 * so that no OpenMP thread pool exists in the parent when it forks. */
#include <cblas.h>
#include <errno.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "fork_report.h"
#include "import.h"
#include "kernels.h"
#include "model.h"
#include "synth.h"

static const char *const CMD = "bench";

#define DEFAULT_MODELS "stories260K,stories15M,stories110M"
#define MAX_MODELS     16
#define REAL_260K_BIN  "models/stories260K/stories260K.bin"
#define REAL_260K_TOK  "models/stories260K/tok512.bin"

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: cce bench [--models LIST] [--threads N] [--quick]\n"
        "\n"
        "Measures, per model: evaluation speed (whole windows of seq_len tokens through the\n"
        "batched forward pass) and the GFLOP/s it achieves against this machine's sgemm\n"
        "peak (one large cblas_sgemm measured in the same run); generation speed (KV-cache\n"
        "decoding, greedy) against the weight-streaming bound (the time to read every\n"
        "weight a decoding step reads once); and peak memory (ru_maxrss of a forked child\n"
        "per model).\n"
        "\n"
        "options:\n"
        "  --models LIST  comma-separated: stories260K (the real model, imported from\n"
        "                 $CCE_MIRROR, else a synthetic one of its shape) and synthetic models\n"
        "                 of the shapes tiny, stories15M, stories110M\n"
        "                 (default %s)\n"
        "  --threads N    OpenMP and OpenBLAS threads, in [1, 256] (default: OpenMP's)\n"
        "  --quick        fewer and shorter runs (a smoke test, not a measurement)\n"
        "  -h, --help     this help\n"
        "\n"
        "OpenBLAS 0.3.21 does not recognise some recent CPUs and falls back to generic SSE3\n"
        "kernels, several times slower; when OPENBLAS_CORETYPE is unset, every cce command\n"
        "restarts itself with the core type the CPU supports (the header below names it).\n"
        "Exit status: 0 success, 1 failure, 2 usage.\n",
        DEFAULT_MODELS);
}

typedef struct bench_args {
    char *names[MAX_MODELS];
    int n_models;
    long threads; /* 0: default */
    int quick;
    char *list; /* owns the strings in names */
} bench_args;

static int known_model(const char *name) {
    for (const char *const *p = cce_synth_preset_names(); *p; p++)
        if (!strcmp(*p, name)) return 1;
    return 0;
}

static int parse_args(int argc, char **argv, bench_args *a) {
    const char *list = DEFAULT_MODELS;
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--quick")) {
            a->quick = 1;
        } else if (!strcmp(o, "--models") || !strcmp(o, "--threads")) {
            if (i + 1 >= argc) return cli_usage_error(CMD, "%s needs a value", o);
            const char *v = argv[++i];
            if (!strcmp(o, "--models"))
                list = v;
            else if (cli_parse_long(CMD, o, v, 1, 256, &a->threads))
                return 2;
        } else {
            return cli_usage_error(CMD, "unexpected argument '%s'", o);
        }
    }
    a->list = strdup(list);
    if (!a->list) return cli_usage_error(CMD, "out of memory");
    char *save = NULL;
    for (char *tok = strtok_r(a->list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (!known_model(tok))
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

/* ---- Child processes ------------------------------------------------------------------------- */

/* What a child sends back through its pipe. */
typedef struct child_report {
    int status; /* cce_status */
    char detail[512];
    char source[64]; /* "real" or "synthetic" */
    double sgemm_gflops;
    cce_bench_result r;
} child_report;

typedef struct child_job {
    const bench_args *args;
    const char *model_name; /* NULL: the sgemm peak */
    const char *model_path; /* an imported .h5 to open, or NULL: synthesize */
} child_job;

static void child_run(const child_job *job, child_report *rep) {
    const bench_args *a = job->args;
    if (a->threads) {
        omp_set_num_threads((int)a->threads);
        openblas_set_num_threads((int)a->threads);
    }
    cce_status s;
    if (!job->model_name) {
        s = a->quick ? cce_bench_sgemm_peak(1024, 2, &rep->sgemm_gflops)
                     : cce_bench_sgemm_peak(2048, 5, &rep->sgemm_gflops);
    } else {
        cce_model *m = NULL;
        if (job->model_path) {
            snprintf(rep->source, sizeof rep->source, "real");
            s = cce_model_open(job->model_path, &m);
        } else {
            cce_synth_options o;
            snprintf(rep->source, sizeof rep->source, "synthetic");
            s = cce_synth_preset(job->model_name, &o);
            if (!s) {
                o.seed = 1;
                s = cce_synth_model(&o, &m);
            }
        }
        cce_bench_options bo = {.window = 0,
                                .window_reps = a->quick ? 1 : 3,
                                .gen_tokens = a->quick ? 32 : 256,
                                .gen_reps = a->quick ? 1 : 10,
                                .stream_reps = a->quick ? 2 : 10,
                                .budget_seconds = a->quick ? 0 : 3.0,
                                .seed = 1};
        if (!s) s = cce_bench_model(m, &bo, &rep->r);
        cce_model_free(m);
    }
    rep->status = (int)s;
    if (s) snprintf(rep->detail, sizeof rep->detail, "%s", cce_error_detail());
}

static void child_run_fn(const void *arg, void *report) {
    child_run(arg, report);
}

/* Runs job in a forked child; fills *rep and the child's peak RSS in KiB. */
static cce_status run_child(const child_job *job, child_report *rep, long *maxrss_kb) {
    fflush(NULL);
    cce_fork_result res;
    cce_status s = cce_fork_report("bench", child_run_fn, job, rep, sizeof *rep, &res);
    if (s) return s;
    *maxrss_kb = res.maxrss_kb;
    if (!res.complete) {
        const char *what = job->model_name ? job->model_name : "sgemm peak";
        if (res.signal)
            return cce_fail(CCE_ERR_INTERNAL, "bench: the %s child died of signal %d", what,
                            res.signal);
        return cce_fail(CCE_ERR_INTERNAL, "bench: the %s child failed without a report", what);
    }
    if (rep->status) return cce_fail((cce_status)rep->status, "%s", rep->detail);
    return CCE_OK;
}

/* Imports the real stories260K from the mirror into dir/stories260K.h5 (in a child: the importer
 * may use threads). Returns CCE_OK with *path set, or CCE_ERR_NOT_FOUND if the mirror lacks it. */
static void import_child(const char *bin, const char *tok, const char *out) {
    cce_model *m;
    cce_status s = cce_import_llama2c(bin, tok, &m);
    if (!s) {
        s = cce_model_save(m, out, NULL);
        cce_model_free(m);
    }
    if (s)
        fprintf(stderr, "cce bench: importing %s: %s: %s\n", bin, cce_strerror(s),
                cce_error_detail());
    fflush(stderr);
    _exit(s ? 1 : 0);
}

static cce_status import_real_260k(const char *dir, char *path, size_t size) {
    const char *mirror = getenv("CCE_MIRROR");
    if (!mirror || !*mirror) return CCE_ERR_NOT_FOUND;
    char bin[4096], tok[4096];
    snprintf(bin, sizeof bin, "%s/%s", mirror, REAL_260K_BIN);
    snprintf(tok, sizeof tok, "%s/%s", mirror, REAL_260K_TOK);
    if (access(bin, R_OK) != 0 || access(tok, R_OK) != 0) return CCE_ERR_NOT_FOUND;
    snprintf(path, size, "%s/stories260K.h5", dir);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return cce_fail(CCE_ERR_IO, "bench: fork: %s", strerror(errno));
    if (pid == 0) import_child(bin, tok, path);
    int wstatus = 0;
    while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0)
        return cce_fail(CCE_ERR_IO, "bench: importing %s failed", bin);
    return CCE_OK;
}

/* ---- Report ------------------------------------------------------------------------------------
 */

static void print_header(const bench_args *a, double peak) {
    const char *detected = getenv("CCE_DETECTED_BLAS_CORE");
    printf("cce bench%s: %d threads (OpenMP), OpenBLAS core %s", a->quick ? " --quick" : "",
           a->threads ? (int)a->threads : omp_get_max_threads(), cce_blas_corename());
    if (detected) printf(" (set by cce; OpenBLAS detected %s)", detected);
    printf("\nsgemm peak: %.1f GFLOP/s (one %dx%dx%d cblas_sgemm, best of %d)\n\n", peak,
           a->quick ? 1024 : 2048, a->quick ? 1024 : 2048, a->quick ? 1024 : 2048,
           a->quick ? 2 : 5);
    printf("%-12s %-9s %7s %6s | %9s %7s %6s | %9s %9s %6s %6s | %8s\n", "model", "weights",
           "params", "window", "eval", "GFLOP/s", "%peak", "gen", "bound", "%bound", "GB/s",
           "peak RSS");
    printf("%-12s %-9s %7s %6s | %9s %7s %6s | %9s %9s %6s %6s | %8s\n", "", "", "(M)", "(tok)",
           "(tok/s)", "", "", "(tok/s)", "(tok/s)", "", "", "(MiB)");
}

static void print_row(const char *name, const child_report *rep, double peak, long rss_kb) {
    const cce_bench_result *r = &rep->r;
    printf("%-12s %-9s %7.2f %6d | %9.0f %7.1f %5.1f%% | %9.1f %9.1f %5.1f%% %6.1f | %8.1f\n", name,
           rep->source, r->params / 1e6, r->window, r->eval_tok_s, r->eval_gflops,
           100.0 * r->eval_gflops / peak, r->gen_tok_s, r->stream_tok_s,
           100.0 * r->gen_tok_s / r->stream_tok_s, r->stream_gbs, rss_kb / 1024.0);
}

static void print_notes(void) {
    printf("\neval: best window of seq_len tokens (cce_forward_window, random tokens after BOS).\n"
           "GFLOP/s: FLOPs per window = T * 2 * (q, k, v, o, gate, up, down weights of the kept\n"
           "  layers + vocab * dim) + per layer 4 * head_dim * n_heads * T(T+1)/2 (causal Q K^T\n"
           "  and P V); norms, RoPE, softmax and SwiGLU are not counted. %%peak = / sgemm peak.\n"
           "gen: greedy decoding of gen_tokens steps from BOS with the KV cache\n"
           "  (cce_forward_token + argmax), best run. bound = 1 / (time to read every weight a\n"
           "  decoding step reads once: kept block weights, final norm, classifier, summed with\n"
           "  all threads; a run reads them gen_tokens times in a row, best run). Both repeat up\n"
           "  to 10 runs, stopping after 3 s once 3 ran (--quick: 1 and 2 runs). GB/s is the\n"
           "  read's rate. %%bound = gen / bound.\n"
           "peak RSS: ru_maxrss of the child process that built/loaded and ran the model.\n");
}

static void print_targets(const char *name, const child_report *rep, double peak) {
    if (strcmp(name, "stories15M") != 0) return;
    const cce_bench_result *r = &rep->r;
    double frac = r->eval_gflops / peak, ratio = r->gen_tok_s / r->stream_tok_s;
    printf("\ntargets (stories15M shape): eval >= 40%% of sgemm peak: %.1f%% %s; generation > 800 "
           "tok/s: %.0f %s; within 10%% of the streaming bound: %.1f%% %s\n",
           100 * frac, frac >= 0.4 ? "(met)" : "(NOT met)", r->gen_tok_s,
           r->gen_tok_s > 800 ? "(met)" : "(NOT met)", 100 * ratio,
           ratio >= 0.9 ? "(met)" : "(NOT met)");
}

int cmd_bench(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    bench_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) {
        free(a.list);
        return rc;
    }

    char dir[] = "/tmp/cce-bench-XXXXXX", real_path[4200] = "";
    int have_dir = mkdtemp(dir) != NULL;
    cce_status s = CCE_OK;
    child_report rep;
    long rss;
    child_job job = {.args = &a};
    if ((s = run_child(&job, &rep, &rss))) goto done;
    double peak = rep.sgemm_gflops;
    print_header(&a, peak);
    child_report reps[MAX_MODELS];
    for (int i = 0; i < a.n_models; i++) {
        job.model_name = a.names[i];
        job.model_path = NULL;
        if (!strcmp(a.names[i], "stories260K") && have_dir) {
            if (!real_path[0]) {
                cce_status is = import_real_260k(dir, real_path, sizeof real_path);
                if (is == CCE_ERR_NOT_FOUND)
                    real_path[0] = '\0';
                else if (is) {
                    s = is;
                    goto done;
                }
            }
            if (real_path[0]) job.model_path = real_path;
        }
        if ((s = run_child(&job, &reps[i], &rss))) {
            cce_error_prefix("%s: ", a.names[i]);
            goto done;
        }
        print_row(a.names[i], &reps[i], peak, rss);
        fflush(stdout);
    }
    print_notes();
    for (int i = 0; i < a.n_models; i++) print_targets(a.names[i], &reps[i], peak);
done:
    if (real_path[0]) unlink(real_path);
    if (have_dir) rmdir(dir);
    free(a.list);
    if (s) return cli_fail(CMD, s);
    return 0;
}
