/* Tasks and the paired bootstrap from Lua (lua/lua_task.c): m:task on JSONL and cloze tasks,
 * cce.bootstrap on per-item outcomes, cce.compare_runs on the per-window and per-item tables of
 * two runs recorded in a results file, and the errors scripts get. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bootstrap.h"
#include "cce_lua.h"
#include "eval.h"
#include "fixtures.h"
#include "results.h"
#include "results_table.h"
#include "task.h"
#include "test_support.h"

static char dir[4096], tiny[4096], zero[4096], ties[4096], story[4096], results[4096];
static double nll[2]; /* mean NLL of the two recorded runs */

static void write_file_text(const char *path, const char *text) {
    test_write_file(path, text, strlen(text));
}

/* Records run `key` of model m: its per-window table on a random stream and its per-item table
 * on the ties task. */
static void record_run(cce_results *res, cce_model *m, const cce_task *task, const char *key,
                       double *mean_nll) {
    int32_t *stream = fixture_random_tokens(31 * 20, 3);
    cce_eval_options eo = {.ctx = 32, .keep_token_nll = 1};
    cce_eval_result er;
    assert_cce_ok(cce_eval(m, NULL, stream, 31 * 20, &eo, &er));
    *mean_nll = er.mean_nll;
    cce_task_result tr;
    assert_cce_ok(cce_task_score(m, task, NULL, &tr));
    cce_table *tabs[2];
    assert_cce_ok(cce_bootstrap_window_table(&er, &tabs[0]));
    assert_cce_ok(cce_task_result_table(task, &tr, "task_ties", &tabs[1]));
    const char *names[1] = {"nll"};
    double values[1] = {er.mean_nll};
    cce_run_record rec = {.key = key,
                          .experiment = "lua_task",
                          .strategy = "dense",
                          .protocol = "test",
                          .n_metrics = 1,
                          .metric_names = names,
                          .metric_values = values,
                          .n_tables = 2,
                          .tables = (const cce_table *const *)tabs};
    assert_cce_ok(cce_results_add(res, &rec, NULL));
    cce_table_free(tabs[0]);
    cce_table_free(tabs[1]);
    cce_task_result_free(&tr);
    cce_eval_result_free(&er);
    free(stream);
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "%s", test_scratch_dir("lua_task"));
    snprintf(tiny, sizeof tiny, "%s", test_path(dir, "tiny.h5"));
    snprintf(zero, sizeof zero, "%s", test_path(dir, "zero.h5"));
    snprintf(ties, sizeof ties, "%s", test_path(dir, "ties.jsonl"));
    snprintf(story, sizeof story, "%s", test_path(dir, "story.txt"));
    snprintf(results, sizeof results, "%s", test_path(dir, "results.h5"));
    if (fixture_synth_file("tiny --seed 4", tiny) != 0) return -1;
    if (fixture_synth_file("tiny --seed 4 --zero-classifier", zero) != 0) return -1;
    write_file_text(ties,
                    "{\"context\": \"The cat was\", \"choices\": [\"red\", \"big\", \"sad\"], "
                    "\"answer\": 0}\n"
                    "{\"context\": \"A dog was\", \"choices\": [\"hot\", \"wet\", \"dry\"], "
                    "\"answer\": 2}\n"
                    "{\"context\": \"The sun\", \"choices\": [\"set\", \"ran\", \"hid\"], "
                    "\"answer\": 0}\n"
                    "{\"context\": \"The sea\", \"choices\": [\"was\", \"got\", \"ate\"], "
                    "\"answer\": 1}\n");
    write_file_text(story, "Ann saw a ball. Bob saw a tree. Cat saw a cup. Dan saw a kite.\n\n"
                           "Eve had a boat. Fay had some bread. Gus had a hat.\n\n"
                           "Ann ran to the park. Bob ran home fast. Cat ran up a hill.\n\n"
                           "Dan sang a song. Eve sang it too. Fay sang all day long.\n");
    cce_model *m1 = fixture_synth_preset("tiny", 31), *m2 = fixture_synth_preset("tiny", 32);
    cce_task *task;
    assert_cce_ok(cce_task_read_jsonl(ties, &task));
    cce_results *res;
    assert_cce_ok(cce_results_open(results, &res));
    record_run(res, m1, task, "run one", &nll[0]);
    record_run(res, m2, task, "run two", &nll[1]);
    cce_results_close(res);
    cce_task_free(task);
    cce_model_free(m2);
    cce_model_free(m1);
    return 0;
}

/* Runs chunk (printf format) in a fresh state; returns the status and the message (or NULL). */
static cce_status run_lua(char **msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static cce_status run_lua(char **msg, const char *fmt, ...) {
    char chunk[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(chunk, sizeof chunk, fmt, ap);
    va_end(ap);
    lua_State *L;
    assert_cce_ok(cce_lua_new(NULL, &L));
    *msg = NULL;
    cce_status s = cce_lua_run_string(L, chunk, "@task.lua", msg);
    cce_lua_close(L);
    return s;
}

static void expect_ok(const char *what, cce_status s, char *msg) {
    if (s != CCE_OK) fail_msg("%s: %s", what, msg ? msg : cce_strerror(s));
    free(msg);
}

static void test_task_method(void **state) {
    (void)state;
    char *msg;
    cce_status s = run_lua(
        &msg,
        "local z = cce.load('%s')\n"
        "local r = z:task{task = '%s'}\n"
        "assert(r.items == 4 and r.choices == 3, 'items')\n"
        /* Constant logits: every choice ties and index 0 wins; answers 0 2 0 1. */
        "assert(r.acc == 0.5 and r.acc_norm == 0.5, 'acc ' .. r.acc)\n"
        "assert(math.abs(r.acc_stderr - math.sqrt(0.25 / 3)) < 1e-15, 'stderr')\n"
        "assert(math.abs(r.chance - 1 / 3) < 1e-15, 'chance')\n"
        "assert(#r.correct == 4 and r.correct[1] == 1 and r.correct[2] == 0, 'flags')\n"
        "assert(r.protocol:find('protocol: task=', 1, true), r.protocol)\n"
        "assert(r.ctx == 64 and r.truncated == 0 and #r.sha256 == 64, 'fields')\n"
        "local first = z:task{task = '%s', items = 2}\n"
        "assert(first.items == 2 and first.recipe:find('first 2 items', 1, true), first.recipe)\n"
        "local m = cce.load('%s')\n"
        "local c = m:task{task = 'cloze', data = '%s', items = 3, choices = 3, seed = 2}\n"
        "assert(c.items == 3 and c.choices == 3 and c.task == 'cloze', 'cloze')\n"
        "assert(c.recipe:find('items=3 choices=3 seed=2', 1, true), c.recipe)\n"
        "local again = m:task{task = 'cloze', data = cce.dataset('%s'), items = 3, choices = 3,\n"
        "                     seed = 2}\n"
        "assert(again.acc == c.acc and again.tokens == c.tokens, 'deterministic')\n"
        /* The bootstrap of the zero model against itself, and against the random one. */
        "local b = cce.bootstrap(r.correct, r.correct)\n"
        "assert(b.diff == 0 and b.ci_low == 0 and b.ci_high == 0 and not b.significant, 'self')\n"
        "assert(b.resamples == 1000 and b.blocks == 4 and b.seed == 1, 'defaults')\n"
        "local w = cce.bootstrap({10, 12, 9, 11}, {5, 6, 4, 6}, {counts = {5, 6, 4, 5},\n"
        "                        resamples = 300, seed = 7, level = 0.9})\n"
        "assert(math.abs(w.diff - (42 - 21) / 20) < 1e-12 and w.significant, 'counts')\n"
        "assert(w.level == 0.9 and w.resamples == 300, 'options')\n"
        /* m:eval{tasks = ...} adds each task's metrics under its name. */
        "local text = cce.dataset('%s'):tokens{model = z}\n"
        "local e = z:eval{data = text, ctx = 32, tasks = {'%s', {task = '%s', items = 2,\n"
        "                 name = 'two'}}}\n"
        "assert(e.ties_acc == r.acc and e.ties_acc_norm == r.acc_norm, 'eval tasks')\n"
        "assert(e.ties_items == 4 and e.ties_chance == r.chance, 'eval task fields')\n"
        "assert(e.two_items == 2 and e.ppl > 1, 'named task')\n",
        zero, ties, ties, tiny, story, story, story, ties, ties);
    expect_ok("m:task", s, msg);
}

static void test_compare_runs(void **state) {
    (void)state;
    char *msg;
    cce_status s =
        run_lua(&msg,
                "local c = cce.compare_runs('%s', 'r000001', 'r000002', {resamples = 500})\n"
                "assert(math.abs(c.diff - (%.17g)) < 1e-12, 'diff ' .. c.diff)\n"
                "assert(math.abs(c.a - (%.17g)) < 1e-12, 'a')\n"
                "assert(c.blocks == 20 and c.values == 620, 'blocks')\n"
                "assert(c.ci_low <= c.diff and c.diff <= c.ci_high, 'interval')\n"
                "local same = cce.compare_runs('%s', 'r000002', 'r000002')\n"
                "assert(same.diff == 0 and same.ci_low == 0 and same.ci_high == 0, 'self')\n"
                "assert(not same.significant, 'self significant')\n"
                "local t = cce.compare_runs('%s', 'r000001', 'r000002', {table = 'task_ties'})\n"
                "assert(t.blocks == 4 and t.values == 4, 'items')\n"
                "local tn = cce.compare_runs('%s', 'r000001', 'r000001', {table = 'task_ties',\n"
                "                            value = 'correct_norm'})\n"
                "assert(tn.diff == 0, 'norm')\n",
                results, nll[0] - nll[1], nll[0], results, results, results);
    expect_ok("cce.compare_runs", s, msg);
}

static void expect_lua_error(const char *chunk_fmt, const char *a1, const char *needle) {
    char *msg;
    cce_status s = run_lua(&msg, chunk_fmt, a1);
    if (s != CCE_ERR_STATE) fail_msg("'%s' did not fail: %s", chunk_fmt, cce_strerror(s));
    if (!msg || !strstr(msg, needle) || !strstr(msg, "task.lua:"))
        fail_msg("message '%s' lacks '%s' or the script line", msg ? msg : "", needle);
    free(msg);
}

static void test_errors(void **state) {
    (void)state;
    expect_lua_error("local m = cce.load('%s')\nm:task{}", tiny, "field 'task' is missing");
    expect_lua_error("local m = cce.load('%s')\nm:task{task = 'cloze', choices = 1}", tiny,
                     "'choices' = 1 is outside");
    expect_lua_error("local m = cce.load('%s')\nm:task{task = 'cloze', frobnicate = 1}", tiny,
                     "frobnicate");
    expect_lua_error("local m = cce.load('%s')\nm:task{task = 'none.jsonl'}", tiny, "none.jsonl");
    expect_lua_error("local m = cce.load('%s')\nm:task{task = 'x.jsonl', data = 'y'}", tiny,
                     "names the text of the cloze");
    expect_lua_error("local m = cce.load('%s')\nm:task{task = 'cloze', items = 99, data = "
                     "'no_such_text_xyz'}",
                     tiny, "no_such_text_xyz");
    expect_lua_error("cce.bootstrap({1, 2}, {1})", NULL, "they must be paired");
    expect_lua_error("cce.bootstrap({1, 'x'}, {1, 2})", NULL, "a[2] is not a number");
    expect_lua_error("cce.bootstrap({1}, {1})", NULL, "at least 2 blocks");
    expect_lua_error("cce.bootstrap({1, 2}, {1, 2}, {counts = {1}})", NULL, "counts has 1 values");
    expect_lua_error("cce.compare_runs('%s', 'r000001', 'r000009')", results, "r000009");
    expect_lua_error("cce.compare_runs('%s', 'r000001', 'r000002', {table = 'task_nope'})", results,
                     "task_nope");
    expect_lua_error("cce.compare_runs('%s', 'r000001', 'r000002', {value = 'zzz'})", results,
                     "no column 'zzz'");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_task_method),
        cmocka_unit_test(test_compare_runs),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
