/* Speed and peak memory of saved models, measured in fresh processes (framework/bench.h):
 *
 *   local srv = cce.bench_server()       -- first, before any model work (see below)
 *   local r = srv:measure{model = "v.h5" [, window =, window_reps =, gen_tokens =, gen_reps =,
 *                                           stream_reps =, seed =, threads =]}
 *   srv:close()
 *
 * cce.bench_server() forks a small server process at once. For every srv:measure the server
 * forks a child that opens the model file, loads every tensor and runs cce_bench_model
 * (evaluation windows through the batched forward pass, greedy KV-cache generation, the
 * weight-streaming bound, each of whose runs reads the weights gen_tokens times); the server
 * reaps it with wait4, whose ru_maxrss is the child's peak
 * resident memory. Why a server: the resident memory of a process only ever grows, and a child
 * forked from the script's own process starts with all of it (its models, its datasets) and
 * with a broken OpenMP thread pool. The server is forked while the script's process is still
 * small and single-threaded, so each child starts from the same small baseline, reported as
 * baseline_rss_kb (the child's resident memory before it opens the model).
 *
 * srv:measure returns {path, file_bytes (size of the file on disk), params, streamed_bytes,
 * window, eval_tok_s, eval_gflops, gen_tokens, gen_tok_s, stream_tok_s, stream_gbs,
 * load_seconds, peak_rss_kb, baseline_rss_kb, model_rss_kb (= peak - baseline)}.
 * Defaults: window 0 (the model's seq_len), window_reps 3, gen_tokens 128, gen_reps 3,
 * stream_reps 3, seed 1, threads 0 (the OpenMP / OpenBLAS defaults; else the child's thread
 * count, in [1, 256]).
 *
 * Errors: cce.bench_server() when the process already runs more than one thread (an OpenMP or
 * BLAS pool exists: make the server first) or fork fails; srv:measure for a missing file, a file
 * the store refuses, a measurement error (the library's message), a server or child that died.
 * The server exits when the object is closed or collected, or when the script's process ends
 * (its request pipe closes). */
#define _GNU_SOURCE
#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cce_lua.h"
#include "fd_io.h"
#include "fork_report.h"
#include "model.h"

#define SERVER_META "cce.bench_server"

/* A measurement request (parent -> server); path "" asks the server to exit. */
typedef struct bench_request {
    char path[4096];
    cce_bench_options opts;
    int threads; /* OpenMP and OpenBLAS threads of the child; 0: their defaults */
} bench_request;

/* A measurement report (child -> server -> parent). */
typedef struct bench_report {
    int status; /* cce_status */
    char detail[512];
    cce_bench_result r;
    double load_seconds;
    long baseline_rss_kb; /* the child's VmRSS before opening the model */
    long peak_rss_kb;     /* wait4's ru_maxrss of the child (filled by the server) */
} bench_report;

typedef struct server_obj {
    cce_lua_object obj;
    pid_t pid;       /* the server, or 0 once gone */
    int to_server;   /* request pipe (write end) */
    int from_server; /* report pipe (read end) */
} server_obj;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The process's VmRSS in KiB from /proc/self/status, or -1. */
static long self_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* Threads of this process (entries of /proc/self/task), or -1 when unknown. */
static int self_threads(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* ---- The server and its children (never return into Lua) ------------------------------------ */

static void child_measure(const bench_request *q, bench_report *rep) {
    if (q->threads > 0) {
        omp_set_num_threads(q->threads);
        openblas_set_num_threads(q->threads);
    }
    rep->baseline_rss_kb = self_rss_kb();
    double t0 = now_seconds();
    cce_model *m = NULL;
    cce_status s = cce_model_open(q->path, &m);
    if (!s) s = cce_model_load_all(m);
    rep->load_seconds = now_seconds() - t0;
    if (!s) s = cce_bench_model(m, &q->opts, &rep->r);
    cce_model_free(m);
    rep->status = (int)s;
    if (s) snprintf(rep->detail, sizeof rep->detail, "%s", cce_error_detail());
}

static void child_measure_fn(const void *arg, void *report) {
    child_measure(arg, report);
}

/* Runs one request in a forked child; fills *rep (peak RSS from wait4). */
static void server_run_one(const bench_request *q, bench_report *rep) {
    cce_fork_result res;
    cce_status s = cce_fork_report("bench server", child_measure_fn, q, rep, sizeof *rep, &res);
    if (s) {
        memset(rep, 0, sizeof *rep);
        rep->status = (int)s;
        snprintf(rep->detail, sizeof rep->detail, "%s", cce_error_detail());
        return;
    }
    if (!res.complete) {
        memset(rep, 0, sizeof *rep);
        rep->status = CCE_ERR_INTERNAL;
        if (res.signal)
            snprintf(rep->detail, sizeof rep->detail,
                     "bench: the child measuring %.400s died of signal %d", q->path, res.signal);
        else
            snprintf(rep->detail, sizeof rep->detail,
                     "bench: the child measuring %.400s ended without a report", q->path);
        return;
    }
    rep->peak_rss_kb = res.maxrss_kb;
}

static void server_loop(int in, int out) {
    bench_request q;
    for (;;) {
        if (cce_fd_read_all(in, &q, sizeof q) != sizeof q || !q.path[0]) break;
        q.path[sizeof q.path - 1] = 0;
        bench_report rep;
        server_run_one(&q, &rep);
        if (cce_fd_write_all(out, &rep, sizeof rep)) break;
    }
    _exit(0);
}

/* ---- Lua side ----------------------------------------------------------------------------------
 */

static void server_release(cce_lua_object *o) {
    server_obj *s = (server_obj *)o;
    if (s->pid > 0) {
        bench_request q;
        memset(&q, 0, sizeof q);
        struct sigaction ign, old;
        memset(&ign, 0, sizeof ign);
        ign.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &ign, &old);
        cce_fd_write_all(s->to_server, &q, sizeof q);
        sigaction(SIGPIPE, &old, NULL);
        close(s->to_server);
        close(s->from_server);
        int st;
        while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR) {
        }
        s->pid = 0;
    }
}

/* cce.bench_server() -> server */
static int l_bench_server(lua_State *L) {
    int threads = self_threads();
    if (threads > 1)
        return cce_lua_raise(L,
                             "cce.bench_server: this process already runs %d threads (a thread "
                             "pool of OpenMP or BLAS): make the server first, before any model "
                             "is compressed or evaluated",
                             threads);
    server_obj *s =
        cce_lua_new_object(L, sizeof *s, SERVER_META, server_release, 0, "bench server");
    int req[2], rep[2];
    if (pipe(req) != 0) return cce_lua_raise(L, "cce.bench_server: pipe: %s", strerror(errno));
    if (pipe(rep) != 0) {
        int e = errno;
        close(req[0]);
        close(req[1]);
        return cce_lua_raise(L, "cce.bench_server: pipe: %s", strerror(e));
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(req[0]);
        close(req[1]);
        close(rep[0]);
        close(rep[1]);
        return cce_lua_raise(L, "cce.bench_server: fork: %s", strerror(e));
    }
    if (pid == 0) {
        close(req[1]);
        close(rep[0]);
        server_loop(req[0], rep[1]);
    }
    close(req[0]);
    close(rep[1]);
    s->pid = pid;
    s->to_server = req[1];
    s->from_server = rep[0];
    return 1;
}

/* srv:measure{model = PATH, ...} -> table */
static int s_measure(lua_State *L) {
    static const char *const FN = "srv:measure";
    static const char *const fields[] = {"model",      "window",      "window_reps",
                                         "gen_tokens", "gen_reps",    "seed",
                                         "threads",    "stream_reps", NULL};
    server_obj *s = cce_lua_check_object(L, 1, SERVER_META);
    luaL_checktype(L, 2, LUA_TTABLE);
    cce_lua_check_fields(L, 2, 1, FN, fields);
    const char *path = NULL;
    if (!cce_lua_field_string(L, 2, 1, FN, "model", &path))
        return cce_lua_raise(L, "%s: model (the path of a model file) is required", FN);
    int64_t window = 0, window_reps = 3, gen_tokens = 128, gen_reps = 3, stream_reps = 3, seed = 1,
            threads = 0;
    cce_lua_field_integer(L, 2, 1, FN, "window", 0, 1 << 20, &window);
    cce_lua_field_integer(L, 2, 1, FN, "window_reps", 1, 1000, &window_reps);
    cce_lua_field_integer(L, 2, 1, FN, "gen_tokens", 1, 1 << 20, &gen_tokens);
    cce_lua_field_integer(L, 2, 1, FN, "gen_reps", 1, 1000, &gen_reps);
    cce_lua_field_integer(L, 2, 1, FN, "stream_reps", 1, 1000, &stream_reps);
    cce_lua_field_integer(L, 2, 1, FN, "seed", 0, INT64_MAX, &seed);
    cce_lua_field_integer(L, 2, 1, FN, "threads", 0, 256, &threads);
    bench_request q;
    memset(&q, 0, sizeof q);
    if (strlen(path) >= sizeof q.path)
        return cce_lua_raise(L, "%s: model path longer than %zu bytes", FN, sizeof q.path - 1);
    struct stat st;
    if (stat(path, &st) != 0) return cce_lua_raise(L, "%s: %s: %s", FN, path, strerror(errno));
    snprintf(q.path, sizeof q.path, "%s", path);
    q.opts = (cce_bench_options){.window = (int)window,
                                 .window_reps = (int)window_reps,
                                 .gen_tokens = (int)gen_tokens,
                                 .gen_reps = (int)gen_reps,
                                 .stream_reps = (int)stream_reps,
                                 .seed = (uint64_t)seed};
    q.threads = (int)threads;
    if (s->pid <= 0) return cce_lua_raise(L, "%s: the bench server is gone", FN);
    bench_report rep;
    /* a server that died must give an error here, not kill the script with SIGPIPE */
    struct sigaction ign, old;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &old);
    int sent = cce_fd_write_all(s->to_server, &q, sizeof q) == 0;
    sigaction(SIGPIPE, &old, NULL);
    if (!sent || cce_fd_read_all(s->from_server, &rep, sizeof rep) != sizeof rep) {
        close(s->to_server);
        close(s->from_server);
        int stw; /* without its pipes the server ends, if it still runs */
        while (waitpid(s->pid, &stw, 0) < 0 && errno == EINTR) {
        }
        s->pid = 0;
        return cce_lua_raise(L, "%s: the bench server died measuring %s", FN, path);
    }
    rep.detail[sizeof rep.detail - 1] = 0;
    if (rep.status) {
        cce_fail((cce_status)rep.status, "%s", rep.detail);
        return cce_lua_error(L, (cce_status)rep.status, "%s: %s", FN, path);
    }
    const cce_bench_result *r = &rep.r;
    lua_createtable(L, 0, 16);
    cce_lua_set_string(L, "path", path);
    cce_lua_set_integer(L, "file_bytes", (int64_t)st.st_size);
    cce_lua_set_integer(L, "params", r->params);
    cce_lua_set_integer(L, "streamed_bytes", r->streamed_bytes);
    cce_lua_set_integer(L, "window", r->window);
    cce_lua_set_number(L, "eval_tok_s", r->eval_tok_s);
    cce_lua_set_number(L, "eval_gflops", r->eval_gflops);
    cce_lua_set_integer(L, "gen_tokens", r->gen_tokens);
    cce_lua_set_number(L, "gen_tok_s", r->gen_tok_s);
    cce_lua_set_number(L, "stream_tok_s", r->stream_tok_s);
    cce_lua_set_number(L, "stream_gbs", r->stream_gbs);
    cce_lua_set_number(L, "load_seconds", rep.load_seconds);
    cce_lua_set_integer(L, "peak_rss_kb", rep.peak_rss_kb);
    cce_lua_set_integer(L, "baseline_rss_kb", rep.baseline_rss_kb);
    cce_lua_set_integer(L, "model_rss_kb", rep.peak_rss_kb - rep.baseline_rss_kb);
    return 1;
}

void cce_lua_open_bench(lua_State *L) {
    static const luaL_Reg methods[] = {{"measure", s_measure}, {NULL, NULL}};
    cce_lua_new_class(L, SERVER_META, methods, NULL);
    lua_pushcfunction(L, l_bench_server);
    lua_setfield(L, -2, "bench_server");
}
