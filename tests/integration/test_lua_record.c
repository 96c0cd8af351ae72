/* What every experiment run records (lua/cce/experiment.lua, lua/lua_results.c, lua_stats.c,
 * lua_task.c, lua_eval.c), through `cce run` on a synthetic tiny model: the "weights",
 * "activations" (eval data and extra domains), "eval_windows" and "task_<T>" tables with sane
 * values (dense: cosine 1, rel L2 0, KL 0, rel Frobenius error 0; 50% magnitude: cosine < 1),
 * the task metrics from a JSONL file, the paired bootstrap against the dense run (dense: 0, not
 * significant; magnitude 50%: positive and significant), metrics equal to v:eval's bit for bit,
 * deterministic tables on a rerun, stats = false, resume, and experiments/activation_drift.lua on
 * three text files. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixtures.h"
#include "results.h"
#include "results_table.h"
#include "test_support.h"

static char dir[4096];

/* n_words words of a small vocabulary drawn by a 64-bit LCG from seed, 40 words per paragraph:
 * text on which 50% magnitude pruning of the synthetic model clearly raises the NLL. */
static void write_words(const char *path, int n_words, uint64_t seed) {
    static const char *const words[] = {"the",   "a",   "cat",  "dog", "sat",   "on",  "mat",
                                        "ran",   "to",  "home", "big", "small", "red", "blue",
                                        "happy", "sad", "tree", "sun", "moon"};
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    uint64_t x = seed;
    for (int i = 0; i < n_words; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        fprintf(f, "%s%s ", i ? "" : "", words[(x >> 33) % (sizeof words / sizeof *words)]);
        if (i % 40 == 39) fputs(".\n\n ", f);
    }
    assert_int_equal(fclose(f), 0);
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "%s", test_scratch_dir("lua_record"));
    write_words(test_path(dir, "a.txt"), 4000, 1);
    write_words(test_path(dir, "b.txt"), 2500, 2);
    write_words(test_path(dir, "c.txt"), 2500, 3);
    static const char task[] =
        "{\"context\": \"The cat\", \"choices\": [\"sat on the mat.\", \"zq xv\"], \"answer\": 0}\n"
        "{\"context\": \"The dog\", \"choices\": [\"ran home.\", \"qq zz\"], \"answer\": 0}\n"
        "{\"context\": \"A sun\", \"choices\": [\"is big.\", \"x\"], \"answer\": 1}\n"
        "{\"context\": \"One day\", \"choices\": [\"she ran.\", \"k\", \"ww\"], \"answer\": 2}\n";
    test_write_file(test_path(dir, "story.jsonl"), task, sizeof task - 1);
    return chdir(dir);
}

static int count_of(const char *s, const char *what) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what)) n++;
    return n;
}

/* The script: dense and magnitude 0.5 with one extra domain and the JSONL task, checks inside. */
static const char RECORD_LUA[] =
    "local cce = require 'cce'\n"
    "local out = cce.args[1]\n"
    "local m = cce.synth{seed = 1}\n"
    "local calib, test = cce.dataset('a.txt'):split{model = m, calib_tokens = 512,\n"
    "                                               calib_window = 64, test_tokens = 3000}\n"
    "local _, b = cce.dataset('b.txt'):split{model = m, calib_tokens = 0, test_tokens = 2000}\n"
    "local exp <close> = cce.experiment{name = 'rec', out = out, model = m,\n"
    "                                   domains = {bdom = b}, tasks = {'story.jsonl'}}\n"
    "local rd, sd, id = exp:run{strategy = 'dense', eval = test, max_tokens = 3000}\n"
    "local rm, sm, im = exp:run{strategy = 'magnitude', ratio = 0.5, eval = test,\n"
    "                           max_tokens = 3000}\n"
    "local rn, sn, inn = exp:run{strategy = 'magnitude', ratio = 0.5, eval = test,\n"
    "                            max_tokens = 3000, stats = false, tasks = {}}\n"
    "if sd then print('resumed') return end\n"
    "assert(inn.key ~= im.key and im.key:find('\"stats\":{', 1, true), im.key)\n"
    "-- metrics equal v:eval's bit for bit\n"
    "local v <close> = m:compress{strategy = 'magnitude', ratio = 0.5}\n"
    "local e = v:eval{data = test, max_tokens = 3000}\n"
    "for _, k in ipairs{'ppl', 'nll', 'kl', 'top1', 'kl_p99', 'dp_mean'} do\n"
    "  assert(e[k] == rm[k] and e[k] == rn[k], k)\n"
    "end\n"
    "assert(rm.protocol == e.protocol, rm.protocol .. ' vs ' .. e.protocol)\n"
    "-- significance\n"
    "assert(rd.dnll_vs_dense == 0 and rd.dnll_vs_dense_lo == 0 and rd.dnll_vs_dense_hi == 0)\n"
    "assert(rd.dnll_vs_dense_sig == 0 and rd.story_dacc_vs_dense == 0)\n"
    "assert(rm.dnll_vs_dense > 0 and rm.dnll_vs_dense_lo > 0 and rm.dnll_vs_dense_sig == 1)\n"
    "assert(rm.dnll_vs_dense_lo <= rm.dnll_vs_dense and rm.dnll_vs_dense <= rm.dnll_vs_dense_hi)\n"
    "assert(math.abs(rm.dnll_vs_dense - (rm.nll - rd.nll)) < 1e-9)\n"
    "assert(rn.dnll_vs_dense == rm.dnll_vs_dense and rn.story_acc == nil)\n"
    "assert(rm.story_dacc_vs_dense ~= nil and rm.story_dacc_vs_dense_sig ~= nil)\n"
    "-- tasks\n"
    "assert(rd.story_items == 4 and math.abs(rd.story_chance - (0.5 * 3 + 1 / 3) / 4) < 1e-12)\n"
    "assert(rd.story_acc >= 0 and rd.story_acc <= 1 and rd.story_acc_stderr >= 0)\n"
    "assert(rd.story_acc_norm >= 0 and rd.story_acc_norm_stderr >= 0)\n"
    "-- tables\n"
    "local runs = cce.results(out)\n"
    "assert(#runs == 3)\n"
    "local n_layers = m:info().n_layers\n"
    "for i, run in ipairs(runs) do\n"
    "  local t = run.tables\n"
    "  assert(t.eval_windows == run.metrics.windows, run.id)\n"
    "  if i < 3 then\n"
    "    assert(t.weights == 7 * n_layers and t.activations == 2 * 2 * n_layers, run.id)\n"
    "    assert(t.task_story == 4)\n"
    "  else\n"
    "    assert(t.weights == nil and t.activations == nil and t.task_story == nil)\n"
    "  end\n"
    "end\n"
    "local function tab(run, name) return cce.read_table(out, run.id, name) end\n"
    "local w = tab(runs[1], 'eval_windows')\n"
    "local tokens, sum = 0, 0\n"
    "for i = 1, #w do local r = w:row(i); tokens = tokens + r.tokens; sum = sum + r.nll_sum end\n"
    "assert(tokens == rd.tokens and math.abs(sum / tokens - rd.nll) < 1e-9)\n"
    "for which, run in ipairs{runs[1], runs[2]} do\n"
    "  local ws, as = tab(run, 'weights'), tab(run, 'activations')\n"
    "  local max_fro, min_cos, domains = 0, 1, {}\n"
    "  for i = 1, #ws do max_fro = math.max(max_fro, ws:row(i).rel_fro_error) end\n"
    "  for i = 1, #as do\n"
    "    local r = as:row(i)\n"
    "    domains[r.domain] = true\n"
    "    assert(r.count > 0 and r.std > 0, r.site)\n"
    "    if which == 1 then\n"
    "      assert(math.abs(r.cosine - 1) < 1e-12 and r.rel_l2 == 0 and r.hist_kl == 0, r.site)\n"
    "    end\n"
    "    min_cos = math.min(min_cos, r.cosine)\n"
    "  end\n"
    "  assert(domains.a and domains.bdom, 'domains')\n"
    "  if which == 1 then assert(max_fro == 0) else assert(max_fro > 0.1 and min_cos < 0.999) end\n"
    "end\n"
    "local ts = tab(runs[1], 'task_story')\n"
    "assert(#ts == 4 and ts:row(4).n_choices == 3 and ts:row(4).answer == 2)\n"
    "print('record ok')\n";

/* Every table of every run of a equals b's, value for value (NaN equal to NaN). */
static void same_tables(const char *a, const char *b) {
    cce_results_runs ra = {0}, rb = {0};
    assert_cce_ok(cce_results_read(a, &ra));
    assert_cce_ok(cce_results_read(b, &rb));
    assert_int_equal(ra.n, rb.n);
    for (size_t i = 0; i < ra.n; i++) {
        const cce_run_info *x = &ra.runs[i], *y = &rb.runs[i];
        assert_string_equal(cce_run_attr(x, "key"), cce_run_attr(y, "key"));
        assert_int_equal(x->n_metrics, y->n_metrics);
        for (size_t k = 0; k < x->n_metrics; k++)
            if (memcmp(&x->metric_values[k], &y->metric_values[k], sizeof(double)))
                fail_msg("%s: metric %s differs", x->id, x->metric_names[k]);
        assert_int_equal(x->n_tables, y->n_tables);
        for (size_t t = 0; t < x->n_tables; t++) {
            cce_table *ta = NULL, *tb = NULL;
            assert_cce_ok(cce_results_read_table(a, x->id, x->table_names[t], &ta));
            assert_cce_ok(cce_results_read_table(b, y->id, x->table_names[t], &tb));
            assert_int_equal(ta->n_rows, tb->n_rows);
            assert_int_equal(ta->n_cols, tb->n_cols);
            for (size_t c = 0; c < ta->n_cols; c++) {
                const cce_table_col *ca = &ta->cols[c], *cb = &tb->cols[c];
                size_t n = ta->n_rows * ca->width;
                if (ca->f64 && memcmp(ca->f64, cb->f64, n * sizeof(double)))
                    fail_msg("%s: table %s column %s differs", x->id, ta->name, ca->name);
                if (ca->i64 && memcmp(ca->i64, cb->i64, n * sizeof(int64_t)))
                    fail_msg("%s: table %s column %s differs", x->id, ta->name, ca->name);
                for (size_t r = 0; ca->str && r < ta->n_rows; r++)
                    assert_string_equal(ca->str[r], cb->str[r]);
            }
            cce_table_free(ta);
            cce_table_free(tb);
        }
    }
    cce_results_runs_free(&ra);
    cce_results_runs_free(&rb);
}

static void test_record(void **state) {
    (void)state;
    test_write_file("record.lua", RECORD_LUA, sizeof RECORD_LUA - 1);
    char *out = fixture_run_expect(0, "run record.lua r1/rec.h5");
    fixture_expect_in(out, "record ok");
    free(out);
    /* determinism: the same script into another file gives identical metrics and tables */
    out = fixture_run_expect(0, "run record.lua r2/rec.h5");
    fixture_expect_in(out, "record ok");
    free(out);
    same_tables("r1/rec.h5", "r2/rec.h5");
    /* resume: every run is skipped */
    out = fixture_run_expect(0, "run record.lua r1/rec.h5");
    assert_int_equal(count_of(out, "skip "), 3);
    fixture_expect_in(out, "resumed");
    free(out);
    /* redo: executed again, identical */
    out = fixture_run_expect(0, "run --redo record.lua r2/rec.h5");
    fixture_expect_in(out, "record ok");
    free(out);
    same_tables("r1/rec.h5", "r2/rec.h5");
}

static void test_bad_options(void **state) {
    (void)state;
    static const char lua[] =
        "local m = cce.synth{seed = 1}\n"
        "local _, test = cce.dataset('a.txt'):split{model = m, calib_tokens = 0,\n"
        "                                           test_tokens = 2000}\n"
        "local exp <close> = cce.experiment{name = 'bad', out = 'bad/bad.h5', model = m}\n"
        "local ok, err = pcall(exp.run, exp, {strategy = 'dense', eval = test,\n"
        "                                     stats = {binz = 3}})\n"
        "assert(not ok and err:find(\"unknown option 'binz'\", 1, true), err)\n"
        "ok, err = pcall(exp.run, exp, {strategy = 'dense', eval = test, domains = {x = 3}})\n"
        "assert(not ok and err:find('cce.tokens or cce.dataset expected', 1, true), err)\n"
        "ok, err = pcall(exp.run, exp, {strategy = 'dense', eval = test,\n"
        "                               tasks = {'story.jsonl', 'story.jsonl'}})\n"
        "assert(not ok and err:find(\"two tasks named 'story'\", 1, true), err)\n"
        "ok, err = pcall(exp.run, exp, {strategy = 'dense', eval = test, tasks = {'no.jsonl'}})\n"
        "assert(not ok and err:find('no.jsonl', 1, true), err)\n"
        "assert(#cce.results('bad/bad.h5') == 0)\n"
        "print('bad ok')\n";
    test_write_file("bad.lua", lua, sizeof lua - 1);
    char *out = fixture_run_expect(0, "run bad.lua");
    fixture_expect_in(out, "bad ok");
    free(out);
}

static void test_activation_drift_synth(void **state) {
    (void)state;
    char *out = fixture_run_expect(
        0, "run " CCE_SOURCE_DIR "/experiments/activation_drift.lua model=synth data=a.txt "
           "alice=b.txt shakespeare=c.txt calib_tokens=512 calib_window=64 test_tokens=2000 "
           "domain_tokens=1500 max_tokens=2000 out=drift");
    fixture_expect_in(out, "magnitude ratio=0.5");
    fixture_expect_in(out, "rtn bits=4");
    fixture_expect_in(out, "cosine");
    fixture_expect_in(out, "alice");
    fixture_expect_in(out, "shakespeare");
    free(out);
    cce_results_runs runs = {0};
    assert_cce_ok(cce_results_read("drift/activation_drift.h5", &runs));
    assert_int_equal(runs.n, 4);
    for (size_t i = 0; i < runs.n; i++) {
        cce_table *t = NULL;
        assert_cce_ok(cce_results_read_table("drift/activation_drift.h5", runs.runs[i].id,
                                             "activations", &t));
        assert_int_equal(t->n_rows, 3 * 2 * 2); /* domains x layers x sites */
        cce_table_free(t);
    }
    cce_results_runs_free(&runs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_activation_drift_synth),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
