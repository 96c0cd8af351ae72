/* Experiments (lua/cce/experiment.lua, lua/lua_results.c, lua/lua_experiment.c) and the ready
 * scripts in experiments/, through `cce run` on a synthetic tiny model and, with the mirror,
 * stories260K. Covers: every script's results file (runs, attributes, plausible metrics,
 * figures); resume after SIGKILL against an uninterrupted sweep (bit-exact metrics) and --redo;
 * the lock between two writers; errors inside exp:run (script line, non-zero exit, file intact);
 * run keys as data (layer functions expanded, parameter defaults filled in); canonical JSON and
 * run seeds; cce.results; the figure helper's refusals. */
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cce_lua.h"
#include "fixtures.h"
#include "results.h"
#include "sha256.h"
#include "test_support.h"

static char dir[4096], text[4096];

/* Small settings every script run on the synthetic model uses. */
#define SMALL                                                                                      \
    "model=synth data=text.txt calib_tokens=512 calib_window=64 test_tokens=3000 "                 \
    "max_tokens=3000"

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "%s", test_scratch_dir("lua_experiments"));
    snprintf(text, sizeof text, "%s", test_path(dir, "text.txt"));
    fixture_write_text(text, 12000, 60);
    return chdir(dir);
}

/* Writes a script (printf format) to name in the scratch folder. */
static void script(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void script(const char *name, const char *fmt, ...) {
    char body[16384];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof body);
    test_write_file(name, body, (size_t)n);
}

static int count_of(const char *s, const char *what) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what)) n++;
    return n;
}

static double metric(const cce_run_info *run, const char *name) {
    for (size_t i = 0; i < run->n_metrics; i++)
        if (!strcmp(run->metric_names[i], name)) return run->metric_values[i];
    fail_msg("run %s has no metric %s", run->id, name);
    return NAN;
}

static const char *attr(const cce_run_info *run, const char *name) {
    const char *v = cce_run_attr(run, name);
    if (!v) fail_msg("run %s has no attribute %s", run->id, name);
    return v;
}

static const cce_run_info *run_of_strategy(const cce_results_runs *runs, const char *strategy) {
    for (size_t i = 0; i < runs->n; i++)
        if (!strcmp(attr(&runs->runs[i], "strategy"), strategy)) return &runs->runs[i];
    fail_msg("no run of strategy %s", strategy);
    return NULL;
}

/* Checks what every recorded run must hold (results.h attributes, plausible metrics). */
static void check_runs(const char *path, size_t want_runs, const char *experiment) {
    cce_results_runs runs = {0};
    assert_cce_ok(cce_results_read(path, &runs));
    if (runs.n != want_runs) fail_msg("%s: %zu runs, expected %zu", path, runs.n, want_runs);
    int dense = 0;
    for (size_t i = 0; i < runs.n; i++) {
        const cce_run_info *r = &runs.runs[i];
        assert_string_equal(attr(r, "experiment"), experiment);
        const char *strategy = attr(r, "strategy");
        assert_true(*strategy);
        assert_true(attr(r, "key")[0] == '{');
        const char *params = attr(r, "params"), *plan = attr(r, "plan");
        assert_true(params[0] == '[');
        assert_true(plan[0] == '{');
        assert_non_null(strstr(attr(r, "protocol"), "ctx="));
        assert_true(cce_sha256_is_hex(attr(r, "model_sha256")));
        assert_true(cce_sha256_is_hex(attr(r, "dataset_sha256")));
        int major, minor, patch;
        assert_int_equal(sscanf(attr(r, "cce_version"), "%d.%d.%d", &major, &minor, &patch), 3);
        assert_int_equal(strlen(attr(r, "timestamp")), 20); /* 2026-01-01T00:00:00Z */
        assert_true(strtod(attr(r, "seconds"), NULL) > 0);
        assert_true(*attr(r, "seed") >= '0' && *attr(r, "seed") <= '9');
        double ppl = metric(r, "ppl"), kl = metric(r, "kl");
        assert_true(ppl > 1 && isfinite(ppl));
        assert_true(kl >= 0 && isfinite(kl));
        assert_true(metric(r, "top1") >= 0 && metric(r, "top1") <= 1);
        assert_true(metric(r, "tokens") > 0);
        double br = metric(r, "byte_ratio");
        assert_true(br >= 0 && br < 1);
        if (!strcmp(strategy, "dense")) {
            dense++;
            assert_true(kl == 0.0);
            assert_true(br == 0.0);
            assert_string_equal(params, "[]");
            assert_int_equal(r->n_layer_rows, 0);
        } else {
            assert_true(strstr(params, "\"strategy\"") != NULL);
            assert_true(strstr(plan, "\"applied\"") != NULL);
            assert_true(r->n_layer_rows > 0);
        }
    }
    assert_int_equal(dense, 1);
    cce_results_runs_free(&runs);
}

/* ---- The ready scripts ----------------------------------------------------------------------- */

static void test_quickstart_synth(void **state) {
    (void)state;
    char *out = fixture_run_expect(0, "run " CCE_SOURCE_DIR "/experiments/quickstart.lua " SMALL
                                      " out=qs pruners=magnitude,wanda ratios=0.3,0.5 bits=8,4");
    fixture_expect_in(out, "run r000007");
    fixture_expect_in(out, "wanda ratio=0.5");
    fixture_expect_in(out, "rtn bits=4");
    free(out);
    check_runs("qs/quickstart.h5", 7, "quickstart");
    const char *figure[] = {"qs/quickstart_ppl_vs_ratio.tsv", "qs/quickstart_ppl_vs_ratio.gp",
                            "qs/quickstart_ppl_vs_ratio.png", "qs/quickstart_ppl_vs_ratio.pdf"};
    for (size_t i = 0; i < 4; i++) {
        size_t len = 0;
        char *data = test_read_file(figure[i], &len);
        if (!data || len < 100) fail_msg("%s is missing or short", figure[i]);
        if (i == 0) {
            fixture_expect_in(data, "# figure ppl_vs_ratio");
            fixture_expect_in(data, "dense\tbyte_ratio\tppl");
            fixture_expect_in(data, "\n\n\nmagnitude\tbyte_ratio");
            assert_int_equal(count_of(data, "\nwanda\t0."), 2);
        }
        if (i == 1) {
            fixture_expect_in(data, "datafile = \"quickstart_ppl_vs_ratio.tsv\"");
            fixture_expect_in(data, "caption = 'synth:tiny:seed=1 on text.txt: ");
        }
        if (i == 2) assert_memory_equal(data, "\x89PNG", 4);
        if (i == 3) assert_memory_equal(data, "%PDF", 4);
        free(data);
    }
    /* no temporary names left behind */
    assert_int_equal(system("ls qs | grep -q '\\.tmp\\.'"), 256);

    /* rerun: every run is skipped, nothing is added */
    out = fixture_run_expect(0, "run " CCE_SOURCE_DIR "/experiments/quickstart.lua " SMALL
                                " out=qs pruners=magnitude,wanda ratios=0.3,0.5 bits=8,4 "
                                "figure=false");
    assert_int_equal(count_of(out, "skip "), 7);
    assert_null(strstr(out, "run r0"));
    free(out);
    check_runs("qs/quickstart.h5", 7, "quickstart");
}

static void test_ratio_sweep_synth(void **state) {
    (void)state;
    char *out = fixture_run_expect(
        0, "run " CCE_SOURCE_DIR "/experiments/ratio_sweep.lua " SMALL
           " out=rs pruners=magnitude,wanda,sparsegpt,lowrank,structured ratios=0.4 rtn_bits=8,3 "
           "gptq_bits=4 figure=false");
    free(out);
    check_runs("rs/ratio_sweep.h5", 9, "ratio_sweep");
    cce_results_runs runs = {0};
    assert_cce_ok(cce_results_read("rs/ratio_sweep.h5", &runs));
    const char *strategies[] = {"dense",      "magnitude", "wanda", "sparsegpt",
                                "structured", "rtn",       "gptq",  "lowrank"};
    for (size_t i = 0; i < sizeof strategies / sizeof strategies[0]; i++)
        run_of_strategy(&runs, strategies[i]);
    /* pruning at 0.4 removes weights; 3 bits costs more than 8 bits */
    const cce_run_info *mag = run_of_strategy(&runs, "magnitude");
    assert_true(metric(mag, "byte_ratio") > 0.05);
    assert_non_null(strstr(attr(mag, "params"), "\"ratio\":0.4"));
    double kl8 = NAN, kl3 = NAN;
    for (size_t i = 0; i < runs.n; i++) {
        if (strcmp(attr(&runs.runs[i], "strategy"), "rtn")) continue;
        if (strstr(attr(&runs.runs[i], "params"), "\"bits\":8")) kl8 = metric(&runs.runs[i], "kl");
        if (strstr(attr(&runs.runs[i], "params"), "\"bits\":3")) kl3 = metric(&runs.runs[i], "kl");
    }
    assert_true(kl8 < kl3);
    cce_results_runs_free(&runs);
}

static void test_layer_sensitivity_synth(void **state) {
    (void)state;
    char *out = fixture_run_expect(
        0, "run " CCE_SOURCE_DIR "/experiments/layer_sensitivity.lua " SMALL " out=ls ratio=0.5");
    fixture_expect_in(out, "layer 1");
    fixture_expect_in(out, "down_proj");
    free(out);
    /* dense + 2 layers + 7 tensor types */
    check_runs("ls/layer_sensitivity.h5", 10, "layer_sensitivity");
    cce_results_runs runs = {0};
    assert_cce_ok(cce_results_read("ls/layer_sensitivity.h5", &runs));
    /* run 2 compresses layer 0 only, the last one the down projections only */
    cce_report rows;
    assert_cce_ok(cce_results_read_layers("ls/layer_sensitivity.h5", runs.runs[1].id, &rows));
    assert_int_equal(rows.n, 7);
    for (size_t i = 0; i < rows.n; i++) {
        assert_int_equal(rows.rows[i].layer, 0);
        assert_true(fabs(rows.rows[i].sparsity - 0.5) < 0.02);
    }
    cce_report_clear(&rows);
    assert_cce_ok(cce_results_read_layers("ls/layer_sensitivity.h5", runs.runs[9].id, &rows));
    assert_int_equal(rows.n, 2);
    for (size_t i = 0; i < rows.n; i++) assert_non_null(strstr(rows.rows[i].tensor, "down_proj"));
    cce_report_clear(&rows);
    /* the skipped tensors are in the recorded plan */
    assert_non_null(strstr(attr(&runs.runs[9], "plan"), "\"source\":\"skip\""));
    cce_results_runs_free(&runs);
}

static void test_custom_strategy_synth(void **state) {
    (void)state;
    char *out = fixture_run_expect(
        0, "run " CCE_SOURCE_DIR "/experiments/custom_strategy.lua " SMALL " out=cs alphas=0,1");
    /* alpha 0 and 1 are magnitude's and Wanda's rules: the same variants, the same metrics */
    fixture_expect_in(out, "scaled_magnitude alpha 0 reproduces magnitude: yes");
    fixture_expect_in(out, "scaled_magnitude alpha 1 reproduces wanda: yes");
    free(out);
    /* dense, magnitude, wanda, two alphas, the ramped run */
    check_runs("cs/custom_strategy.h5", 6, "custom_strategy");
    cce_results_runs runs = {0};
    assert_cce_ok(cce_results_read("cs/custom_strategy.h5", &runs));
    int lua_runs = 0;
    for (size_t i = 0; i < runs.n; i++)
        lua_runs += !strcmp(attr(&runs.runs[i], "strategy"), "scaled_magnitude");
    assert_int_equal(lua_runs, 3);
    cce_results_runs_free(&runs);
}

static void test_quickstart_stories260K(void **state) {
    (void)state;
    test_require_mirror_file("models/stories260K/stories260K.bin");
    char *out = fixture_run_expect(0, "run " CCE_SOURCE_DIR
                                      "/experiments/quickstart.lua out=qs260 calib_tokens=2048 "
                                      "test_tokens=4000 max_tokens=3000 pruners=wanda ratios=0.5 "
                                      "bits=4 figure=false");
    free(out);
    check_runs("qs260/quickstart.h5", 3, "quickstart");
    cce_results_runs runs = {0};
    assert_cce_ok(cce_results_read("qs260/quickstart.h5", &runs));
    const cce_run_info *dense = run_of_strategy(&runs, "dense");
    assert_string_equal(attr(dense, "model"), "stories260K");
    assert_string_equal(attr(dense, "dataset"), "tinystories_val");
    assert_string_equal(attr(dense, "dataset_sha256"),
                        "5fc1fb0113df62b567fb271806cd645ce8d75f59c58ca0b764c03d3b6ff34ca6");
    /* the first windows of TinyStories at ctx 512 have perplexity near 4 */
    assert_true(metric(dense, "ppl") > 3.5 && metric(dense, "ppl") < 5.5);
    const cce_run_info *wanda = run_of_strategy(&runs, "wanda");
    assert_true(metric(wanda, "ppl") > metric(dense, "ppl"));
    assert_true(metric(wanda, "kl") > 0.01);
    cce_results_runs_free(&runs);
}

/* ---- Resume, redo, determinism --------------------------------------------------------------- */

#define SWEEP                                                                                      \
    "/experiments/ratio_sweep.lua " SMALL                                                          \
    " pruners=magnitude,wanda ratios=0.1,0.2,0.3,0.4,0.5,0.6 rtn_bits=8,4 gptq_bits=4 "            \
    "figure=false"
#define SWEEP_RUNS 16

/* Starts `cce <args>` in the background with its output in log; returns its pid. */
static pid_t start_cce(const char *args, const char *log) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "exec '%s' %s > '%s' 2>&1", CCE_BIN, args, log);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Recorded runs of path (0 while it does not exist yet). */
static size_t recorded(const char *path) {
    cce_results_runs runs = {0};
    if (cce_results_read(path, &runs) != CCE_OK) return 0;
    size_t n = runs.n;
    cce_results_runs_free(&runs);
    return n;
}

/* Every run of a has a run of b with the same key and bit-identical metrics, and the counts
 * agree. */
static void expect_same_metrics(const char *a, const char *b) {
    cce_results_runs ra = {0}, rb = {0};
    assert_cce_ok(cce_results_read(a, &ra));
    assert_cce_ok(cce_results_read(b, &rb));
    assert_int_equal(ra.n, rb.n);
    for (size_t i = 0; i < ra.n; i++) {
        const cce_run_info *x = &ra.runs[i], *y = NULL;
        for (size_t j = 0; j < rb.n && !y; j++)
            if (!strcmp(attr(x, "key"), attr(&rb.runs[j], "key"))) y = &rb.runs[j];
        if (!y) fail_msg("%s: run %s has no counterpart in %s", a, x->id, b);
        assert_string_equal(attr(x, "seed"), attr(y, "seed"));
        assert_string_equal(attr(x, "params"), attr(y, "params"));
        assert_int_equal(x->n_metrics, y->n_metrics);
        for (size_t k = 0; k < x->n_metrics; k++) {
            assert_string_equal(x->metric_names[k], y->metric_names[k]);
            if (memcmp(&x->metric_values[k], &y->metric_values[k], sizeof(double)))
                fail_msg("%s %s: %s = %.17g vs %.17g", attr(x, "strategy"), x->id,
                         x->metric_names[k], x->metric_values[k], y->metric_values[k]);
        }
        assert_int_equal(x->n_layer_rows, y->n_layer_rows);
    }
    cce_results_runs_free(&ra);
    cce_results_runs_free(&rb);
}

static void test_resume_after_sigkill(void **state) {
    (void)state;
    /* the uninterrupted sweep */
    char *out = fixture_run_expect(0, "run " CCE_SOURCE_DIR SWEEP " out=full");
    free(out);
    check_runs("full/ratio_sweep.h5", SWEEP_RUNS, "ratio_sweep");

    /* the same sweep, killed once two runs are recorded */
    pid_t pid = start_cce("run " CCE_SOURCE_DIR SWEEP " out=cut", "cut.log");
    size_t n = 0;
    for (int i = 0; i < 6000 && n < 2; i++) {
        sleep_ms(5);
        n = recorded("cut/ratio_sweep.h5");
    }
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    n = recorded("cut/ratio_sweep.h5");
    if (n < 2 || n >= SWEEP_RUNS) fail_msg("killed with %zu of %d runs recorded", n, SWEEP_RUNS);

    /* rerun: skips what is recorded, finishes the rest */
    out = fixture_run_expect(0, "run " CCE_SOURCE_DIR SWEEP " out=cut");
    assert_int_equal(count_of(out, "skip "), (int)n);
    assert_int_equal(count_of(out, "\nrun r0") + (strncmp(out, "run r0", 6) == 0),
                     SWEEP_RUNS - (int)n);
    free(out);
    check_runs("cut/ratio_sweep.h5", SWEEP_RUNS, "ratio_sweep");
    expect_same_metrics("cut/ratio_sweep.h5", "full/ratio_sweep.h5");
    assert_int_equal(system("ls cut | grep -q '\\.tmp\\.'"), 256);

    /* --redo runs everything again, with the same metrics */
    out = fixture_run_expect(0, "run --redo " CCE_SOURCE_DIR SWEEP " out=full");
    assert_null(strstr(out, "skip "));
    free(out);
    check_runs("full/ratio_sweep.h5", SWEEP_RUNS, "ratio_sweep");
    expect_same_metrics("full/ratio_sweep.h5", "cut/ratio_sweep.h5");
}

/* ---- Locks and errors ------------------------------------------------------------------------ */

static void test_lock(void **state) {
    (void)state;
    /* a writer that records one run and then holds the lock */
    script("holder.lua",
           "local cce = require \"cce\"\n"
           "local m = cce.synth{preset = \"tiny\", seed = 1}\n"
           "local _, test = cce.dataset(\"text.txt\"):split{model = m, calib_tokens = 0,\n"
           "                                               test_tokens = 2000}\n"
           "local exp <close> = cce.experiment{name = \"holder\", out = \"lock/x.h5\", model = m}\n"
           "exp:run{strategy = \"dense\", eval = test}\n"
           "local t = cce._now()\n"
           "while cce._now() - t < 60 do end\n");
    script("second.lua", "local cce = require \"cce\"\n"
                         "local x = 1\n"
                         "local exp = cce.experiment{name = \"second\", out = \"lock/x.h5\"}\n"
                         "print(\"not reached\")\n");
    pid_t pid = start_cce("run holder.lua", "holder.log");
    size_t n = 0;
    for (int i = 0; i < 6000 && n < 1; i++) {
        sleep_ms(5);
        n = recorded("lock/x.h5");
    }
    assert_int_equal(n, 1);
    char *out = fixture_run_expect(1, "run second.lua");
    fixture_expect_in(out, "second.lua:3: cce.experiment: ");
    fixture_expect_in(out, "lock/x.h5");
    fixture_expect_in(out, "locked by another writer");
    assert_null(strstr(out, "not reached"));
    free(out);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    check_runs("lock/x.h5", 1, "holder");

    /* the same process: the second experiment on one file is refused too; closing the first
     * releases the lock */
    script("twice.lua",
           "local cce = require \"cce\"\n"
           "local a = cce.experiment{name = \"a\", out = \"lock/y.h5\"}\n"
           "local ok, err = pcall(cce.experiment, {name = \"b\", out = \"lock/y.h5\"})\n"
           "assert(not ok and err:find(\"locked by another writer\"), err)\n"
           "assert(err:find(\"^twice.lua:3: \"), err)\n"
           "a:close()\n"
           "local ok2, err2 = pcall(a.run, a, {strategy = \"dense\"})\n"
           "assert(not ok2 and err2:find(\"is closed\"), err2)\n"
           "local b <close> = cce.experiment{name = \"b\", out = \"lock/y.h5\"}\n"
           "print(tostring(b))\n");
    out = fixture_run_expect(0, "run twice.lua");
    fixture_expect_in(out, "experiment 'b' (lock/y.h5)");
    free(out);
}

static void test_errors_keep_the_file(void **state) {
    (void)state;
    const char *head = "local cce = require \"cce\"\n"
                       "local m = cce.synth{preset = \"tiny\", seed = 1}\n"
                       "local calib, test = cce.dataset(\"text.txt\"):split{model = m,\n"
                       "    calib_tokens = 512, calib_window = 64, test_tokens = 2000}\n"
                       "local exp <close> = cce.experiment{name = \"e\", out = \"%s\", model = m}\n"
                       "exp:run{strategy = \"dense\", eval = test}\n"
                       "exp:run{strategy = \"magnitude\", ratio = 0.3, eval = test}\n";
    struct {
        const char *file, *call, *cause;
    } cases[] = {
        {"err/unknown.h5", "exp:run{strategy = \"nosuch\", ratio = 0.3, eval = test}", "nosuch"},
        {"err/range.h5",
         "exp:run{strategy = \"magnitude\", ratio = 0.3, eval = test,\n"
         "        layers = {[0] = 0.2, [\"layers.1.mlp.*\"] = 1.5}}",
         "1.5"},
        {"err/param.h5",
         "exp:run{strategy = \"wanda\", ratio = 0.3, speed = 2, calib = calib, "
         "eval = test}",
         "speed"},
        {"err/func.h5",
         "exp:run{strategy = \"magnitude\", ratio = 0.3, eval = test,\n"
         "        layers = function(l, t) return l == 0 and \"x\" or nil end}",
         "returned a string"},
        {"err/type.h5", "exp:run{strategy = \"magnitude\", ratio = \"half\", eval = test}",
         "ratio"},
        {"err/noeval.h5", "exp:run{strategy = \"magnitude\", ratio = 0.3}", "eval is required"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[4096];
        snprintf(body, sizeof body, head, cases[i].file);
        strncat(body, cases[i].call, sizeof body - strlen(body) - 2);
        strcat(body, "\n");
        test_write_file("err.lua", body, strlen(body));
        char *out = fixture_run_expect(1, "run err.lua");
        fixture_expect_in(out, "cce run: err.lua:8: ");
        fixture_expect_in(out, cases[i].cause);
        free(out);
        check_runs(cases[i].file, 2, "e");
    }
}

/* ---- Keys ------------------------------------------------------------------------------------ */

static void test_keys_are_data(void **state) {
    (void)state;
    script(
        "keys.lua",
        "local cce = require \"cce\"\n"
        "local m = cce.synth{preset = \"tiny\", seed = 1}\n"
        "local _, test = cce.dataset(\"text.txt\"):split{model = m, calib_tokens = 0,\n"
        "                                               test_tokens = 2000}\n"
        "local exp <close> = cce.experiment{name = \"k\", out = \"keys/k.h5\", model = m,\n"
        "                                   seed = 5}\n"
        "local function run(t) t.eval = test; return exp:run(t) end\n"
        "-- a layer function becomes explicit per-tensor values in the key\n"
        "local r1, s1, i1 = run{strategy = \"magnitude\", ratio = 0.3,\n"
        "  layers = function(l, t) if l == 0 then return 0.1 end end}\n"
        "assert(not s1 and i1.key:find('\"layers.0.mlp.up_proj.weight\":0.1', 1, true), i1.key)\n"
        "local explicit = {}\n"
        "for _, n in ipairs(m:info().tensors) do\n"
        "  if n:match(\"^layers%%.0%%..*proj%%.weight$\") then explicit[n] = 0.1 end\n"
        "end\n"
        "local r2, s2, i2 = run{strategy = \"magnitude\", ratio = 0.3, layers = explicit}\n"
        "assert(s2 and i2.id == i1.id and r2.ppl == r1.ppl, \"explicit table not skipped\")\n"
        "-- defaults are part of the key: giving the default value is the same run\n"
        "local _, s3 = run{strategy = \"magnitude\", ratio = 0.3, scope = \"row\",\n"
        "  layers = explicit}\n"
        "assert(s3, \"default parameter not recognised\")\n"
        "-- 0.3 and 3/10 are the same number; 0.30000000000000004 is not\n"
        "local _, s4 = run{strategy = \"magnitude\", ratio = 3 / 10, layers = explicit}\n"
        "assert(s4)\n"
        "local _, s5 = run{strategy = \"magnitude\", ratio = 0.1 + 0.2, layers = explicit}\n"
        "assert(not s5)\n"
        "-- the evaluation protocol is part of the key; the default ctx is the model's\n"
        "local _, s6 = run{strategy = \"dense\"}\n"
        "local _, s7 = run{strategy = \"dense\", ctx = 64}\n"
        "local _, s8, i8 = run{strategy = \"dense\", ctx = 32}\n"
        "assert(not s6 and s7 and not s8)\n"
        "-- the run seed comes from (experiment seed, key)\n"
        "assert(i8.seed == cce._run_seed(5, i8.key))\n"
        "-- the model is keyed by its weights: saved and loaded back, it keys the same runs\n"
        "m:save(\"keys/m.h5\")\n"
        "local _, s11 = run{strategy = \"dense\", model = cce.load(\"keys/m.h5\")}\n"
        "assert(s11, \"the reloaded model was not recognised\")\n"
        "-- a strategy with a seed parameter gets the run seed, folded into its range\n"
        "local seen\n"
        "cce.strategy{name = \"lua_seeded\", params = {\n"
        "  {name = \"ratio\", type = \"float\", default = 0.5, min = 0, max = 1},\n"
        "  {name = \"seed\", type = \"int\", default = 0, min = 0, max = 999}},\n"
        "  apply = function(t, ctx) seen = ctx.params.seed end}\n"
        "local _, s9, i9 = run{strategy = \"lua_seeded\", ratio = 0.2}\n"
        "assert(not s9 and i9.key:find('\"seed\":\"run seed\"', 1, true), i9.key)\n"
        "assert(seen == i9.seed %% 1000, tostring(seen) .. \" vs \" .. i9.seed)\n"
        "local _, s10, i10 = run{strategy = \"lua_seeded\", ratio = 0.2, seed = 7}\n"
        "assert(not s10 and seen == 7 and i10.key:find('\"seed\":7', 1, true))\n"
        "-- cce.results reads everything back\n"
        "local runs = cce.results(\"keys/k.h5\", {layers = true})\n"
        "assert(#runs == 6, #runs)\n"
        "for _, run in ipairs(runs) do\n"
        "  assert(math.type(run.seed) == \"integer\" and type(run.seconds) == \"number\")\n"
        "  assert(#run.layers == run.n_layer_rows and run.metrics.ppl > 1)\n"
        "  assert(run.experiment == \"k\" and run.model == \"synth:tiny:seed=1\")\n"
        "end\n"
        "assert(runs[1].layers[1].tensor:match(\"^layers%%.\") and runs[1].layers[1].sparsity)\n"
        "assert(runs[4].strategy == \"dense\" and runs[4].metrics.kl == 0)\n"
        "assert(runs[5].strategy == \"lua_seeded\" and runs[5].seed == i9.seed)\n"
        "print(\"keys ok\")\n");
    char *out = fixture_run_expect(0, "run keys.lua");
    fixture_expect_in(out, "keys ok");
    free(out);
}

/* ---- Internal functions, in process ---------------------------------------------------------- */

static void expect_lua(lua_State *L, const char *chunk, cce_status want, const char *needle) {
    char *msg = NULL;
    cce_status s = cce_lua_run_string(L, chunk, "=t", &msg);
    if (s != want || (needle && (!msg || !strstr(msg, needle))))
        fail_msg("%s\n-> status %d, message: %s", chunk, (int)s, msg ? msg : "(none)");
    free(msg);
}

static void test_json_and_seeds(void **state) {
    (void)state;
    lua_State *L = NULL;
    assert_cce_ok(cce_lua_new(NULL, &L));
    expect_lua(
        L,
        "local cce = require 'cce'\n"
        "local j = cce._json\n"
        "assert(j{b = 1, a = {1, 2, 3}} == '{\"a\":[1,2,3],\"b\":1}', j{b = 1, a = {1, 2, 3}})\n"
        "assert(j{[0] = 'x', [2] = true} == '{\"0\":\"x\",\"2\":true}')\n"
        "assert(j(0.1) == '0.1' and j(3.0) == '3' and j(-0.5) == '-0.5', j(0.1))\n"
        "assert(j(1 / 3) == '0.3333333333333333', j(1 / 3))\n"
        "assert(j(0.1 + 0.2) == '0.30000000000000004', j(0.1 + 0.2))\n"
        "assert(j(1e300) == '1e+300' or j(1e300) == '1e300', j(1e300))\n"
        "assert(j({}) == '{}' and j('a\"b') == '\"a\\\\\"b\"')\n"
        "assert(j{x = {y = {1.5, 'z'}}} == '{\"x\":{\"y\":[1.5,\"z\"]}}')\n"
        "assert(j(1 / 3) == j(1 / 3) and j{a = 1, b = 2} == j{b = 2, a = 1})\n",
        CCE_OK, NULL);
    expect_lua(L, "return require('cce')._json{a = {b = function() end}}", CCE_ERR_STATE,
               "[\"a\"][\"b\"]: a function value");
    expect_lua(L, "return require('cce')._json{a = {0 / 0}}", CCE_ERR_STATE, "not a finite number");
    expect_lua(L, "local t = {}; t.t = t; return require('cce')._json(t)", CCE_ERR_STATE,
               "nested more than 64");
    expect_lua(L, "return require('cce')._json{[1] = 1, ['1'] = 2}", CCE_ERR_STATE,
               "both as an integer and as a string");

    /* the run seed: the first 8 bytes of sha256("<seed>\n<key>"), top bit cleared */
    char hex[65];
    assert_cce_ok(cce_sha256_buffer("42\nabc", 6, hex));
    char first[17];
    memcpy(first, hex, 16);
    first[16] = '\0';
    unsigned long long v = strtoull(first, NULL, 16) & 0x7fffffffffffffffULL;
    char chunk[256];
    snprintf(chunk, sizeof chunk,
             "local s = require('cce')._run_seed(42, 'abc')\n"
             "assert(math.type(s) == 'integer' and s == %lld, s)\n"
             "assert(require('cce')._run_seed(42, 'abd') ~= s)",
             (long long)v);
    expect_lua(L, chunk, CCE_OK, NULL);
    expect_lua(L, "require('cce')._run_seed(-1, 'x')", CCE_ERR_STATE, "negative");
    cce_lua_close(L);
}

static void test_figure_refusals(void **state) {
    (void)state;
    lua_State *L = NULL;
    assert_cce_ok(cce_lua_new(NULL, &L));
    expect_lua(L, "require('cce')._figure{template = '../x', data = '', out = 'f/x'}",
               CCE_ERR_STATE, "letters, digits and '_' only");
    expect_lua(L, "require('cce')._figure{template = 'nosuch', data = '', out = 'f/x'}",
               CCE_ERR_STATE, "no template 'nosuch'");
    expect_lua(L, "require('cce')._figure{template = 'ppl_vs_ratio', data = '', out = 'f/x;y'}",
               CCE_ERR_STATE, "may hold letters");
    expect_lua(L, "require('cce')._figure{template = 'ppl_vs_ratio', data = '', out = 'f/.x'}",
               CCE_ERR_STATE, "may hold letters");
    assert_false(test_file_exists("f"));
    /* a caption cannot break out of its gnuplot string */
    expect_lua(L,
               "local f = require('cce')._figure{template = 'ppl_vs_ratio', out = 'f/cap',\n"
               "  data = 'dense\\tbyte_ratio\\tppl\\tppl_stderr\\nx\\t0\\t5\\t0.1\\n',\n"
               "  caption = \"it's'; system('touch pwned'); x='\\nnext\"}\n"
               "assert(f.png == 'f/cap.png')",
               CCE_OK, NULL);
    char *gp = test_read_file("f/cap.gp", NULL);
    assert_non_null(gp);
    fixture_expect_in(gp, "caption = 'it''s''; system(''touch pwned''); x='' next'\n");
    free(gp);
    assert_false(test_file_exists("pwned"));
    assert_false(test_file_exists("f/pwned"));
    assert_true(test_file_exists("f/cap.png") && test_file_exists("f/cap.pdf"));
    cce_lua_close(L);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_and_seeds),
        cmocka_unit_test(test_figure_refusals),
        cmocka_unit_test(test_keys_are_data),
        cmocka_unit_test(test_errors_keep_the_file),
        cmocka_unit_test(test_lock),
        cmocka_unit_test(test_quickstart_synth),
        cmocka_unit_test(test_ratio_sweep_synth),
        cmocka_unit_test(test_custom_strategy_synth),
        cmocka_unit_test(test_layer_sensitivity_synth),
        cmocka_unit_test(test_resume_after_sigkill),
        cmocka_unit_test(test_quickstart_stories260K),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
