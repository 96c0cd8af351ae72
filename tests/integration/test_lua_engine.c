/* The Lua engine through `cce run`: scripts written to a scratch folder and run by the program, on
 * a synthetic tiny model and, with the mirror, stories260K. Covers arguments and options, model
 * info and tensor values against the C API, compress + eval + save + load against cce compress +
 * cce eval, layer tables and functions, steps, object life cycles, error positions and messages,
 * the sandbox (with and without --unsafe) and the prelude modules (in-process). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cce_lua.h"
#include "fixtures.h"
#include "model.h"
#include "report_store.h"
#include "sha256.h"
#include "test_support.h"

static char dir[4096], tiny[4096], text[4096];

/* The tests run in the scratch folder, so scripts have short relative names (error positions
 * read "x.lua:3:"). */
static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "%s", test_scratch_dir("lua_engine"));
    snprintf(tiny, sizeof tiny, "%s", test_path(dir, "tiny.h5"));
    snprintf(text, sizeof text, "%s", test_path(dir, "text.txt"));
    if (fixture_synth_file("tiny --seed 7", tiny) != 0) return -1;
    fixture_write_text(text, 3000, 60);
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

/* The value printed after "key=" at the start of a line or after a tab, as a number. */
static double value_of(const char *out, const char *key) {
    char needle[128];
    snprintf(needle, sizeof needle, "%s=", key);
    const char *p = out;
    while ((p = strstr(p, needle)) && p != out && p[-1] != '\n' && p[-1] != '\t') p++;
    if (!p) fail_msg("output lacks %s:\n%s", needle, out);
    return strtod(p + strlen(needle), NULL);
}

/* The text after "key=" up to the end of its line, into buf. */
static const char *text_of(const char *out, const char *key, char *buf, size_t cap) {
    char needle[128];
    snprintf(needle, sizeof needle, "%s=", key);
    const char *p = out;
    while ((p = strstr(p, needle)) && p != out && p[-1] != '\n' && p[-1] != '\t') p++;
    if (!p) fail_msg("output lacks %s:\n%s", needle, out);
    p += strlen(needle);
    size_t n = strcspn(p, "\t\n");
    if (n >= cap) n = cap - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return buf;
}

/* ---- The command ----------------------------------------------------------------------------- */

static void test_usage(void **state) {
    (void)state;
    char *out = fixture_run_expect(0, "run --help");
    const char *want[] = {"--unsafe", "--redo", "--traceback", "SCRIPT.lua", "bytecode"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) fixture_expect_in(out, want[i]);
    free(out);
    free(fixture_run_expect(2, "run"));
    out = fixture_run_expect(2, "run --bogus x.lua");
    fixture_expect_in(out, "unknown option '--bogus'");
    free(out);
    out = fixture_run_expect(1, "run missing.lua");
    fixture_expect_in(out, "cce run: cannot read missing.lua");
    free(out);
    out = fixture_run_expect(0, "--help");
    fixture_expect_in(out, "run ");
    free(out);
}

static void test_arguments(void **state) {
    (void)state;
    script("args.lua", "local cce = require 'cce'\n"
                       "assert(cce == _G.cce and cce.args == arg)\n"
                       "local a, b = ...\n"
                       "print('n=' .. #arg, 'first=' .. a, 'second=' .. b, 'zero=' .. arg[0])\n"
                       "print('version=' .. cce.version)\n"
                       "print('redo=' .. tostring(cce.options.redo), 'unsafe=' .. "
                       "tostring(cce.options.unsafe))\n");
    char *out = fixture_run_expect(0, "run args.lua one 'two words'");
    const char *want[] = {"n=2",           "first=one",  "second=two words",
                          "zero=args.lua", "redo=false", "unsafe=false"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) fixture_expect_in(out, want[i]);
    char *version = fixture_run_expect(0, "--version"), line[128];
    snprintf(line, sizeof line, "version=%.*s", (int)strcspn(version + 4, "\n"), version + 4);
    fixture_expect_in(out, line); /* "cce 0.1.0" */
    free(version);
    free(out);
    out = fixture_run_expect(0, "run --redo --unsafe -- args.lua --x y");
    fixture_expect_in(out, "first=--x");
    fixture_expect_in(out, "redo=true");
    fixture_expect_in(out, "unsafe=true");
    free(out);
    /* A shebang line is skipped and line numbers are kept. */
    script("shebang.lua", "#!/usr/bin/env cce run\nlocal x = 1\nerror('at three')\n");
    out = fixture_run_expect(1, "run shebang.lua");
    fixture_expect_in(out, "cce run: shebang.lua:3: at three");
    free(out);
}

/* ---- Models and tensors ---------------------------------------------------------------------- */

static void test_model_info_and_tensors(void **state) {
    (void)state;
    script("info.lua",
           "local cce = require 'cce'\n"
           "local m = cce.load(arg[1])\n"
           "local i = m:info()\n"
           "for _, k in ipairs{'dim','hidden_dim','n_layers','n_heads','n_kv_heads','head_dim',\n"
           "                   'vocab_size','seq_len','params'} do print(k .. '=' .. i[k]) end\n"
           "print('ntensors=' .. #i.tensors, 'tensor5=' .. i.tensors[5])\n"
           "print('path=' .. i.path, 'sha=' .. i.sha256, 'variant=' .. tostring(i.variant))\n"
           "print('layer1_params=' .. i.layers[2].params)\n"
           "local t = m:tensor('layers.1.mlp.down_proj.weight')\n"
           "local s = t:shape()\n"
           "print('rows=' .. s[1], 'cols=' .. s[2], 'numel=' .. #t, 'name=' .. t:name())\n"
           "print(string.format('e11=%%.9g', t:get(1, 1)))\n"
           "print(string.format('e37=%%.9g', t:get(3, 7)))\n"
           "print(string.format('elast=%%.9g', t:get(s[1], s[2])))\n"
           "local sl = t:slice(3, 4)\n"
           "print('slrows=' .. sl:shape()[1], string.format('sl17=%%.9g', sl:get(1, 7)))\n"
           "local tb = t:totable()\n"
           "print(string.format('tb37=%%.9g', tb[3][7]))\n"
           "local n = m:tensor('norm.weight')\n"
           "print('norm_len=' .. #n, string.format('norm1=%%.9g', n:get(1)))\n"
           "local c = t:copy(); c:set(3, 7, 42)\n"
           "print('copy37=' .. c:get(3, 7), string.format('orig37=%%.9g', t:get(3, 7)))\n"
           "print('tostring=' .. tostring(t))\n"
           "local ok, err = pcall(t.set, t, 1, 1, 0)\n"
           "print('readonly=' .. tostring(ok) .. ' ' .. err)\n"
           "local ok2, err2 = pcall(m.tensor, m, 'layers.9.mlp.up_proj.weight')\n"
           "print('missing=' .. err2)\n"
           "local ok3, err3 = pcall(t.get, t, 0, 1)\n"
           "print('bounds=' .. err3)\n");
    char *out = fixture_run_expect(0, "run info.lua '%s'", tiny);
    cce_model *m;
    assert_cce_ok(cce_model_open(tiny, &m));
    const cce_config *c = cce_model_config(m);
    assert_int_equal((int)value_of(out, "dim"), c->dim);
    assert_int_equal((int)value_of(out, "hidden_dim"), c->hidden_dim);
    assert_int_equal((int)value_of(out, "n_layers"), c->n_layers);
    assert_int_equal((int)value_of(out, "n_heads"), c->n_heads);
    assert_int_equal((int)value_of(out, "n_kv_heads"), c->n_kv_heads);
    assert_int_equal((int)value_of(out, "head_dim"), c->head_dim);
    assert_int_equal((int)value_of(out, "vocab_size"), c->vocab_size);
    assert_int_equal((int)value_of(out, "seq_len"), c->seq_len);
    assert_int_equal((int64_t)value_of(out, "params"), cce_model_total_params(m));
    assert_int_equal((size_t)value_of(out, "ntensors"), cce_model_tensor_count(m));
    char buf[256];
    assert_string_equal(text_of(out, "tensor5", buf, sizeof buf), cce_model_tensor_name_at(m, 4));
    assert_int_equal((int64_t)value_of(out, "layer1_params"), cce_model_layer_params(m, 1));
    fixture_expect_in(out, "variant=false");
    assert_string_equal(text_of(out, "path", buf, sizeof buf), tiny);
    char sha[65];
    assert_cce_ok(cce_sha256_file(tiny, sha));
    fixture_expect_in(out, sha);
    cce_tensor *t;
    assert_cce_ok(cce_model_tensor(m, "layers.1.mlp.down_proj.weight", &t));
    int64_t rows = t->shape[0], cols = t->shape[1];
    assert_int_equal((int64_t)value_of(out, "rows"), rows);
    assert_int_equal((int64_t)value_of(out, "cols"), cols);
    assert_int_equal((int64_t)value_of(out, "numel"), rows * cols);
    assert_true((float)value_of(out, "e11") == t->data[0]);
    assert_true((float)value_of(out, "e37") == t->data[2 * cols + 6]);
    assert_true((float)value_of(out, "elast") == t->data[rows * cols - 1]);
    assert_true((float)value_of(out, "sl17") == t->data[2 * cols + 6]);
    assert_true((float)value_of(out, "tb37") == t->data[2 * cols + 6]);
    assert_true((float)value_of(out, "orig37") == t->data[2 * cols + 6]);
    assert_int_equal((int)value_of(out, "slrows"), 2);
    assert_true(value_of(out, "copy37") == 42.0);
    cce_tensor *norm;
    assert_cce_ok(cce_model_tensor(m, "norm.weight", &norm));
    assert_int_equal((int64_t)value_of(out, "norm_len"), norm->shape[0]);
    assert_true((float)value_of(out, "norm1") == norm->data[0]);
    fixture_expect_in(out, "name=layers.1.mlp.down_proj.weight");
    fixture_expect_in(out, "tostring=tensor 'layers.1.mlp.down_proj.weight' [32, 64]");
    fixture_expect_in(out, "readonly=false info.lua:");
    fixture_expect_in(out, "is read-only");
    fixture_expect_in(out, "missing=info.lua:");
    fixture_expect_in(out, "layers.9.mlp.up_proj.weight");
    fixture_expect_in(out, "bounds=info.lua:");
    fixture_expect_in(out, "index (0, 1) is outside [1, 32] x [1, 64]");
    cce_model_free(m);
    free(out);
}

/* cce.synth gives the model cce synth writes. */
static void test_synth(void **state) {
    (void)state;
    script(
        "synth.lua",
        "local cce = require 'cce'\n"
        "local a = cce.synth{preset = 'tiny', seed = 7}\n"
        "local b = cce.load(arg[1])\n"
        "local same = true\n"
        "for _, name in ipairs(a:info().tensors) do\n"
        "  local x, y = a:tensor(name), b:tensor(name)\n"
        "  local tx, ty = x:totable(), y:totable()\n"
        "  if #x ~= #y then same = false end\n"
        "  if type(tx[1]) == 'table' then\n"
        "    for i = 1, #tx do for j = 1, #tx[i] do same = same and tx[i][j] == ty[i][j] end end\n"
        "  else for i = 1, #tx do same = same and tx[i] == ty[i] end end\n"
        "end\n"
        "print('same=' .. tostring(same), 'source=' .. a:info().source)\n"
        "local c = cce.synth{seed = 3, n_layers = 3, dim = 48, n_heads = 6, n_kv_heads = 3}\n"
        "local i = c:info()\n"
        "print('shape=' .. i.n_layers .. '/' .. i.dim .. '/' .. i.head_dim, 'path=' .. "
        "tostring(i.path))\n"
        "print('preset=' .. cce.synth('stories260K'):info().dim)\n");
    char *out = fixture_run_expect(0, "run synth.lua '%s'", tiny);
    fixture_expect_in(out, "same=true");
    fixture_expect_in(out, "source=synth:tiny:seed=7");
    fixture_expect_in(out, "shape=3/48/8");
    fixture_expect_in(out, "path=nil");
    fixture_expect_in(out, "preset=64");
    free(out);
    script("synth_bad.lua", "local cce = require 'cce'\n"
                            "local ok, e = pcall(cce.synth, {dim = 30})\nprint('e1=' .. e)\n"
                            "ok, e = pcall(cce.synth, {preset = 'huge'})\nprint('e2=' .. e)\n"
                            "ok, e = pcall(cce.synth, {vocab_size = 100})\nprint('e3=' .. e)\n"
                            "cce.synth{seed = -1}\n");
    out = fixture_run_expect(1, "run synth_bad.lua");
    fixture_expect_in(out, "e1=synth_bad.lua:2: cce.synth: dim = 30 is not a multiple of n_heads");
    fixture_expect_in(out, "e2=synth_bad.lua:4: cce.synth:");
    fixture_expect_in(out, "huge");
    fixture_expect_in(out, "e3=synth_bad.lua:6: cce.synth:");
    fixture_expect_in(out, "below 259");
    fixture_expect_in(out, "cce run: synth_bad.lua:8: bad argument #1 to 'cce.synth' (field "
                           "'seed' = -1 is outside [0, ");
    free(out);
}

/* ---- Compress, evaluate, save, load ---------------------------------------------------------- */

#define SPLIT     "calib_tokens = 512, test_tokens = 500, calib_window = 32, seed = 1"
#define CLI_CALIB "--calib '%s' --test-tokens 500 --calib-tokens 512 --calib-window 32"

/* The text of JSON field "key": VALUE (up to ',' or end of line) in out. */
static const char *json_field(const char *out, const char *key, char *buf, size_t cap) {
    char needle[64];
    snprintf(needle, sizeof needle, "\"%s\": ", key);
    const char *p = strstr(out, needle);
    if (!p) fail_msg("JSON lacks %s:\n%s", key, out);
    p += strlen(needle);
    size_t n = strcspn(p, ",\n");
    if (n >= cap) n = cap - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return buf;
}

static void test_compress_eval_roundtrip(void **state) {
    (void)state;
    script(
        "roundtrip.lua",
        "local cce = require 'cce'\n"
        "local m = cce.load(arg[1])\n"
        "local ds = cce.dataset(arg[2])\n"
        "local calib, test = ds:split{model = m, " SPLIT "}\n"
        "print('calib_n=' .. #calib, 'test_n=' .. #test, 'part=' .. calib:info().part)\n"
        "local v = m:compress{strategy = 'wanda', ratio = 0.5, calib = calib}\n"
        "local r = v:eval{data = test, ctx = 32}\n"
        "for _, k in ipairs{'nll', 'ppl', 'top1', 'kl', 'top1_agree', 'dp_mean'} do\n"
        "  print(string.format('%%s=%%.10g', k, r[k]))\n"
        "end\n"
        "print(string.format('bits=%%.17g', r.nll))\n"
        "print('tokens=' .. r.tokens, 'windows=' .. r.windows, 'ctx=' .. r.ctx)\n"
        "print('protocol=' .. r.protocol)\n"
        "local c = v:compression()\n"
        "print('strategy=' .. c.strategy, 'rows=' .. #c.layers, 'sparsity=' .. "
        "c.layers[1].sparsity)\n"
        "print('params=' .. c.params)\n"
        "print(string.format('byte_ratio=%%.10g', c.summary.byte_ratio))\n"
        "v:save(arg[3])\n"
        "local w = cce.load(arg[3])\n"
        "local r2 = w:eval{data = test, ctx = 32, ref = m}\n"
        "print(string.format('reload=%%.17g', r2.nll), 'reload_kl_equal=' .. tostring(r2.kl "
        "== r.kl))\n"
        "local r3 = w:eval{data = ds, ctx = 32, max_tokens = 500}\n"
        "print('dataset_equal=' .. tostring(r3.nll == r2.nll))\n"
        "print('base_compression=' .. tostring(m:compression()))\n"
        "print('base_of_v=' .. tostring(v:base() ~= nil), 'base_of_w=' .. tostring(w:base()))\n");
    const char *lua_h5 = test_path(dir, "lua_wanda.h5"), *cli_h5 = test_path(dir, "cli_wanda.h5");
    char *out = fixture_run_expect(0, "run roundtrip.lua '%s' '%s' '%s'", tiny, text, lua_h5);
    fixture_expect_in(out, "calib_n=512");
    fixture_expect_in(out, "test_n=500");
    fixture_expect_in(out, "part=calib");
    fixture_expect_in(out, "tokens=496");
    fixture_expect_in(out, "windows=16");
    fixture_expect_in(out, "strategy=wanda");
    fixture_expect_in(out, "rows=14");
    fixture_expect_in(out, "sparsity=0.5");
    fixture_expect_in(out, "\"strategy\":\"wanda\"");
    fixture_expect_in(out, "\"ratio\":0.5");
    fixture_expect_in(out, "protocol=protocol: window=BOS+31 non-overlapping, ctx=32");
    fixture_expect_in(out, "base_compression=nil");
    fixture_expect_in(out, "base_of_v=true");
    fixture_expect_in(out, "base_of_w=nil");
    fixture_expect_in(out, "reload_kl_equal=true");
    fixture_expect_in(out, "dataset_equal=true");
    char a[64], b[64];
    /* The saved variant evaluates bit-identically to the one in memory. */
    assert_string_equal(text_of(out, "reload", a, sizeof a), text_of(out, "bits", b, sizeof b));

    /* The same run through the commands: identical metrics and report. */
    free(fixture_run_expect(0, "compress '%s' -s wanda:ratio=0.5 " CLI_CALIB " -o '%s'", tiny, text,
                            cli_h5));
    char *json = fixture_run_expect(
        0, "eval '%s' --data '%s' --ctx 32 --max-tokens 500 --ref '%s' --json", cli_h5, text, tiny);
    const char *pairs[][2] = {{"nll", "mean_nll"},
                              {"ppl", "ppl"},
                              {"top1", "top1"},
                              {"kl", "kl_mean"},
                              {"top1_agree", "top1_agree"}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        double lua = value_of(out, pairs[i][0]);
        double cli = strtod(json_field(json, pairs[i][1], a, sizeof a), NULL);
        if (!(fabs(lua - cli) <= 1e-9 * fabs(cli)))
            fail_msg("%s: lua %.10g, cce eval %.10g\n%s\n%s", pairs[i][0], lua, cli, out, json);
    }
    free(json);
    char *j1 = fixture_run_expect(0, "eval '%s' --data '%s' --ctx 32 --max-tokens 500 --json",
                                  lua_h5, text);
    char *j2 = fixture_run_expect(0, "eval '%s' --data '%s' --ctx 32 --max-tokens 500 --json",
                                  cli_h5, text);
    assert_string_equal(json_field(j1, "mean_nll", a, sizeof a),
                        json_field(j2, "mean_nll", b, sizeof b));
    free(j1);
    free(j2);
    cce_report r1, r2;
    assert_cce_ok(cce_compress_report_read(lua_h5, &r1));
    assert_cce_ok(cce_compress_report_read(cli_h5, &r2));
    assert_int_equal(r1.n, r2.n);
    for (size_t i = 0; i < r1.n; i++) {
        assert_string_equal(r1.rows[i].tensor, r2.rows[i].tensor);
        assert_int_equal(r1.rows[i].params_after, r2.rows[i].params_after);
        assert_true(r1.rows[i].rel_fro_error == r2.rows[i].rel_fro_error);
    }
    cce_report_clear(&r1);
    cce_report_clear(&r2);
    free(out);
}

/* layers tables and functions, skip, steps, the shortgpt `layers` parameter. */
static void test_plans_and_steps(void **state) {
    (void)state;
    script("plans.lua",
           "local cce = require 'cce'\n"
           "local m = cce.load(arg[1])\n"
           "local function show(tag, v)\n"
           "  for _, r in ipairs(v:compression().layers) do\n"
           "    print(tag .. ':' .. r.strategy .. ':' .. r.tensor .. '=' .. r.sparsity)\n"
           "  end\n"
           "end\n"
           "local seen = 0\n"
           "show('a', m:compress{strategy = 'magnitude', ratio = 0.25,\n"
           "  layers = {[0] = 0.5, ['layers.*.mlp.*'] = 0.75,\n"
           "            ['layers.1.mlp.down_proj'] = function(l, t) seen = seen + 1;\n"
           "              assert(l == 1 and t == 'layers.1.mlp.down_proj.weight'); return 0.125 "
           "end},\n"
           "  skip = 'layers.1.self_attn.q_proj'})\n"
           "print('seen=' .. seen)\n"
           "show('b', m:compress{strategy = 'magnitude', ratio = 0.25,\n"
           "  layers = function(l, t) if t:find('k_proj') then return 0.5 end end})\n"
           "local v = m:compress{steps = {{strategy = 'magnitude', ratio = 0.5},\n"
           "                              {strategy = 'rtn', bits = 8, layers = {[1] = 4}}}}\n"
           "local c = v:compression()\n"
           "print('steps=' .. c.strategy, 'nsteps=' .. #c.steps, 'step2=' .. c.steps[2].params)\n"
           "print('plan=' .. c.plan)\n"
           "local b = m:compress{strategy = 'rtn', bits = 4, unskip = 'embed_tokens', rules = "
           "{'layers.0.*=8'}}\n"
           "print('unskip_rows=' .. #b:compression().layers)\n");
    char *out = fixture_run_expect(0, "run plans.lua '%s'", tiny);
    /* Tiny: rows of 32 or 64 weights, so every ratio here is exact. */
    const char *want[] = {"a:magnitude:layers.0.self_attn.q_proj.weight=0.5",
                          "a:magnitude:layers.0.mlp.up_proj.weight=0.75",
                          "a:magnitude:layers.1.self_attn.k_proj.weight=0.25",
                          "a:magnitude:layers.1.mlp.gate_proj.weight=0.75",
                          "a:magnitude:layers.1.mlp.down_proj.weight=0.125",
                          "seen=1",
                          "b:magnitude:layers.0.self_attn.k_proj.weight=0.5",
                          "b:magnitude:layers.1.self_attn.k_proj.weight=0.5",
                          "b:magnitude:layers.1.mlp.up_proj.weight=0.25",
                          "steps=magnitude+rtn",
                          "nsteps=2",
                          "step2=bits=8",
                          "\"rtn:1=4\"",
                          "\"kind\":\"bits\"",
                          "unskip_rows=15"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) fixture_expect_in(out, want[i]);
    assert_null(strstr(out, "a:magnitude:layers.1.self_attn.q_proj"));
    free(out);
}

/* ---- Errors ---------------------------------------------------------------------------------- */

/* Runs name and expects exit 1 with every needle in the output. */
static void expect_failure(const char *options, const char *name, const char *const *needles,
                           size_t n) {
    char *out = fixture_run_expect(1, "run %s %s '%s' '%s'", options, name, tiny, text);
    for (size_t i = 0; i < n; i++) fixture_expect_in(out, needles[i]);
    free(out);
}

#define EXPECT_FAILURE(options, name, ...)                                                         \
    do {                                                                                           \
        const char *const needles_[] = {__VA_ARGS__};                                              \
        expect_failure(options, name, needles_, sizeof needles_ / sizeof needles_[0]);             \
    } while (0)

static void test_errors(void **state) {
    (void)state;
    /* A path longer than Lua's 60-character source names is still named whole. */
    const char *deep = "a_folder_whose_name_is_long_enough/to_make_the_path/longer_than_sixty";
    char mk[512], long_script[512];
    snprintf(mk, sizeof mk, "mkdir -p %s", deep);
    assert_int_equal(system(mk), 0);
    snprintf(long_script, sizeof long_script, "%s/long_script_name.lua", deep);
    script(long_script, "local t = nil\nprint(t.field)\n");
    char want[600];
    snprintf(want, sizeof want, "cce run: %s:2: attempt to index a nil value", long_script);
    EXPECT_FAILURE("", long_script, want);
    script(long_script, "local cce = require 'cce'\n\ncce.synth{preset = 'nosuch'}\n");
    snprintf(want, sizeof want, "cce run: %s:3: cce.synth", long_script);
    EXPECT_FAILURE("", long_script, want);

    script("syntax.lua", "local cce = require 'cce'\n\nlocal x = = 2\n");
    EXPECT_FAILURE("", "syntax.lua", "cce run: syntax.lua:3:", "unexpected symbol");

    script("badarg.lua", "local cce = require 'cce'\nlocal m = cce.load(arg[1])\n"
                         "local t = m:tensor({})\n");
    EXPECT_FAILURE("", "badarg.lua", "cce run: badarg.lua:3: bad argument #1 to 'tensor'",
                   "string expected, got table");

    script("badself.lua", "local cce = require 'cce'\nlocal ds = cce.dataset(arg[2])\n"
                          "local m = cce.load(arg[1])\n\nm.info(ds)\n");
    EXPECT_FAILURE("", "badself.lua", "cce run: badself.lua:5: bad argument #1",
                   "cce.model expected, got cce.dataset");

    script("unknown.lua", "local cce = require 'cce'\nlocal m = cce.load(arg[1])\n"
                          "local v = m:compress{strategy = 'nope', ratio = 0.5}\n");
    EXPECT_FAILURE("", "unknown.lua", "cce run: unknown.lua:3: m:compress: unknown strategy 'nope'",
                   "magnitude");

    script("range.lua", "local cce = require 'cce'\nlocal m = cce.load(arg[1])\n"
                        "local layers = {[0] = 0.2,\n   [1] = 1.5}\n"
                        "local v = m:compress{strategy = 'magnitude', ratio = 0.3, layers = "
                        "layers}\n");
    EXPECT_FAILURE("", "range.lua", "cce run: range.lua:5: m:compress: magnitude:", "layer 1 = 1.5",
                   "outside ratio [0, 1)");

    script("param.lua", "local cce = require 'cce'\nlocal m = cce.load(arg[1])\n"
                        "m:compress{strategy = 'magnitude', ratio = 1.5}\n");
    EXPECT_FAILURE("", "param.lua",
                   "cce run: param.lua:3: m:compress: magnitude: ratio = 1.5 is "
                   "outside [0, 1)");

    script("paramtype.lua", "local cce = require 'cce'\nlocal m = cce.load(arg[1])\n"
                            "m:compress{strategy = 'magnitude', ratio = {}}\n");
    EXPECT_FAILURE("", "paramtype.lua", "paramtype.lua:3:", "parameter 'ratio' must be a number");

    script("unknownparam.lua", "local cce = require 'cce'\nlocal m = cce.load(arg[1])\n"
                               "m:compress{strategy = 'magnitude', ratoi = 0.5}\n");
    EXPECT_FAILURE("", "unknownparam.lua", "unknownparam.lua:3:", "unknown parameter 'ratoi'");

    script("nocalib.lua", "local cce = require 'cce'\nlocal m = cce.load(arg[1])\n"
                          "m:compress{strategy = 'wanda', ratio = 0.5}\n");
    EXPECT_FAILURE("", "nocalib.lua", "nocalib.lua:3:", "needs calibration data");

    script("badlayer.lua", "local cce = require 'cce'\nlocal m = cce.load(arg[1])\n"
                           "m:compress{strategy = 'magnitude', layers = {[7] = 0.1}}\n");
    EXPECT_FAILURE("", "badlayer.lua", "badlayer.lua:3:", "layers[7]", "has layers 0..1");

    script("layerfn.lua",
           "local cce = require 'cce'\nlocal m = cce.load(arg[1])\n"
           "m:compress{strategy = 'magnitude', layers = function() return 'x' end}\n");
    EXPECT_FAILURE("", "layerfn.lua", "layerfn.lua:3:", "returned a string");

    script("closed.lua", "local cce = require 'cce'\nlocal m = cce.load(arg[1])\n"
                         "m:close()\nm:close()\nprint(tostring(m))\nlocal i = m:info()\n");
    EXPECT_FAILURE("", "closed.lua", "(closed)", "cce run: closed.lua:6: model '", "' is closed");

    script("evalbad.lua", "local cce = require 'cce'\nlocal m = cce.load(arg[1])\n"
                          "local c, t = cce.dataset(arg[2]):split{model = m, " SPLIT "}\n"
                          "m:eval{data = c}\n");
    EXPECT_FAILURE("", "evalbad.lua", "evalbad.lua:4: m:eval:", "test part");

    script("ctx.lua", "local cce = require 'cce'\nlocal m = cce.load(arg[1])\n"
                      "local c, t = cce.dataset(arg[2]):split{model = m, " SPLIT "}\n"
                      "m:eval{data = t, ctx = 100}\n");
    EXPECT_FAILURE("", "ctx.lua", "ctx.lua:4:", "field 'ctx' = 100 is outside [2, 64]");

    script("split.lua", "local cce = require 'cce'\nlocal m = cce.load(arg[1])\n"
                        "cce.dataset(arg[2]):split{model = m, test_tokens = 100000}\n");
    EXPECT_FAILURE("", "split.lua", "split.lua:3: ds:split", "exceeds the stream");

    script("nodata.lua", "local cce = require 'cce'\nlocal d = cce.dataset('no_such_thing')\n");
    EXPECT_FAILURE("", "nodata.lua", "nodata.lua:2: cce.dataset:", "no_such_thing");

    script("raise.lua", "local function f() error('deep') end\nlocal function g() f() end\ng()\n");
    EXPECT_FAILURE("--traceback", "raise.lua", "cce run: raise.lua:1: deep", "stack traceback",
                   "in local 'g'");
    char *out = fixture_run_expect(1, "run raise.lua");
    assert_null(strstr(out, "traceback"));
    free(out);

    /* An error raised while a prelude module made the call names the script's line. */
    for (const cce_lua_prelude *p = cce_lua_prelude_modules; p->name; p++) {
        if (strcmp(p->name, "cce.experiment")) continue;
        script("prelude.lua",
               "local cce = require 'cce'\nlocal m = cce.load(arg[1])\n"
               "local c, t = cce.dataset(arg[2]):split{model = m, " SPLIT "}\n"
               "local exp <close> = cce.experiment{name = 'e', out = 'prelude.h5', seed = 1}\n"
               "\nexp:run{model = m, strategy = 'magnitude', ratio = 0.3, eval = t, ctx = 32,\n"
               "        layers = {[0] = 1.5}}\n");
        EXPECT_FAILURE("", "prelude.lua", "cce run: prelude.lua:6: m:compress: magnitude:",
                       "layer 0 = 1.5 is outside ratio [0, 1)");
    }

    script("errobj.lua", "error({code = 1})\n");
    EXPECT_FAILURE("", "errobj.lua", "cce run: (error object is a table value)");
}

/* ---- Object life cycles ---------------------------------------------------------------------- */

static void test_lifecycle(void **state) {
    (void)state;
    script("life.lua",
           "local cce = require 'cce'\n"
           "local m = cce.load(arg[1])\n"
           "local c, t = cce.dataset(arg[2]):split{model = m, " SPLIT "}\n"
           "local v = m:compress{strategy = 'magnitude', ratio = 0.5}\n"
           "local w = v:compress{strategy = 'rtn', bits = 8}\n"
           "local tensor = m:tensor('layers.0.mlp.up_proj.weight')\n"
           "local first = tensor:get(1, 1)\n"
           "local view = tensor:slice(2)\n"
           "m:close()\n"
           "collectgarbage(); collectgarbage()\n"
           "print('base_closed=' .. tostring(pcall(m.info, m)))\n"
           "local r = w:eval{data = t, ctx = 32}\n"
           "print('variant_of_variant_kl=' .. tostring(r.kl ~= nil and r.kl >= 0))\n"
           "print('tensor_alive=' .. tostring(tensor:get(1, 1) == first), 'view=' .. "
           "view:shape()[1])\n"
           "do\n"
           "  local x <close> = cce.synth{}\n"
           "  _G.keep = x\n"
           "end\n"
           "print('closed_by_scope=' .. tostring(not pcall(keep.info, keep)))\n"
           "tensor:close(); tensor:close()\n"
           "print('view_after_parent_close=' .. view:get(1, 1))\n"
           "v:close(); w:close(); view:close()\n"
           "local ok, e = pcall(view.get, view, 1, 1)\n"
           "print('view_closed=' .. e)\n"
           "print('meta=' .. getmetatable(v), 'tmeta=' .. getmetatable(view))\n"
           "c:close(); print('tokens_closed=' .. tostring(not pcall(function() return #c end)))\n"
           "for i = 1, 30 do local x = cce.synth{seed = i}; x:tensor('norm.weight') end\n"
           "collectgarbage()\n"
           "print('done')\n");
    char *out = fixture_run_expect(0, "run life.lua '%s' '%s'", tiny, text);
    const char *want[] = {"base_closed=false",
                          "variant_of_variant_kl=true",
                          "tensor_alive=true",
                          "view=63",
                          "closed_by_scope=true",
                          "view_after_parent_close=",
                          "view_closed=life.lua:23: rows 2..64 of tensor "
                          "'layers.0.mlp.up_proj.weight' is closed",
                          "meta=cce.model",
                          "tmeta=cce.tensor",
                          "tokens_closed=true",
                          "done"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) fixture_expect_in(out, want[i]);
    free(out);
}

/* ---- Sandbox --------------------------------------------------------------------------------- */

static void test_sandbox(void **state) {
    (void)state;
    script("os.lua", "os.execute('touch pwned')\n");
    EXPECT_FAILURE("", "os.lua", "cce run: os.lua:1: 'os' is not available", "--unsafe");
    EXPECT_FAILURE("--unsafe", "os.lua", "cce run: os.lua:1: os.execute is not available");
    assert_false(test_file_exists("pwned"));

    script("io.lua", "local f = io.open('text.txt')\nprint(f:read('l'))\n");
    EXPECT_FAILURE("", "io.lua", "cce run: io.lua:1: 'io' is not available");
    char *out = fixture_run_expect(0, "run --unsafe io.lua");
    free(out);
    script("iow.lua", "local f = io.open('new.txt', 'w')\n");
    EXPECT_FAILURE("--unsafe", "iow.lua", "cce run: iow.lua:1: io.open: mode 'w' refused");
    script("iopopen.lua", "io.popen('ls')\n");
    EXPECT_FAILURE("--unsafe", "iopopen.lua", "io.popen is not available");
    assert_false(test_file_exists("new.txt"));
    script("unsafe_ok.lua",
           "print('clock=' .. type(os.clock()), 'time=' .. type(os.time()),\n"
           "      'env=' .. tostring(os.getenv('CCE_NO_SUCH_VAR')))\n"
           "for l in io.lines('unsafe_ok.lua') do print('line=' .. l) break end\n");
    out = fixture_run_expect(0, "run --unsafe unsafe_ok.lua");
    fixture_expect_in(out, "clock=number");
    fixture_expect_in(out, "env=nil");
    fixture_expect_in(out, "line=print(");
    free(out);

    script("dofile.lua", "dofile('io.lua')\n");
    EXPECT_FAILURE("", "dofile.lua", "cce run: dofile.lua:1: 'dofile' is not available");
    script("loadfile.lua", "local f = loadfile('io.lua')\n");
    EXPECT_FAILURE("", "loadfile.lua", "cce run: loadfile.lua:1: 'loadfile' is not available");
    script("require.lua", "local io = require 'io'\n");
    EXPECT_FAILURE("", "require.lua",
                   "cce run: require.lua:1: require: module 'io' is not "
                   "available");
    script("require2.lua", "require 'cce.no_such_module'\n");
    EXPECT_FAILURE("", "require2.lua", "require2.lua:1:", "'cce.no_such_module' is not available");

    /* load: text only. */
    script("load.lua", "print('text=' .. load('return 40 + 2')())\n"
                       "local f, e = load(string.dump(function() return 1 end))\n"
                       "print('binary=' .. tostring(f) .. ' ' .. e)\n"
                       "local g, e2 = load('return 1', 'x', 'b')\n"
                       "print('mode=' .. tostring(g) .. ' ' .. e2)\n"
                       "local h = load('return y', 'chunk', 't', {y = 7})\n"
                       "print('env=' .. h())\n"
                       "print('fn=' .. tostring(pcall(load, function() return nil end)))\n");
    out = fixture_run_expect(0, "run load.lua");
    fixture_expect_in(out, "text=42");
    fixture_expect_in(out, "binary=nil attempt to load a binary chunk");
    fixture_expect_in(out, "mode=nil load: mode 'b' refused");
    fixture_expect_in(out, "env=7");
    fixture_expect_in(out, "fn=false");
    free(out);
    script("debug.lua", "print(rawget(_G, 'package'), rawget(_G, 'coroutine'))\nlocal d = debug\n");
    out = fixture_run_expect(1, "run debug.lua");
    fixture_expect_in(out, "nil\tnil");
    fixture_expect_in(out, "cce run: debug.lua:2: 'debug' is not available");
    free(out);
}

static int collect_dump(lua_State *L, const void *p, size_t n, void *ud) {
    (void)L;
    FILE *f = ud;
    return fwrite(p, 1, n, f) == n ? 0 : 1;
}

static void test_bytecode_refused(void **state) {
    (void)state;
    lua_State *L = luaL_newstate();
    assert_non_null(L);
    assert_int_equal(luaL_loadstring(L, "print('ran')"), LUA_OK);
    FILE *f = fopen("compiled.lua", "wb");
    assert_non_null(f);
    assert_int_equal(lua_dump(L, collect_dump, f, 0), 0);
    fclose(f);
    lua_close(L);
    char *out = fixture_run_expect(1, "run compiled.lua");
    fixture_expect_in(out, "cce run: compiled.lua: a precompiled Lua chunk (bytecode)");
    assert_null(strstr(out, "ran"));
    free(out);
}

/* ---- In-process: the engine's C interface and the prelude modules ---------------------------- */

static void test_in_process(void **state) {
    (void)state;
    lua_State *L;
    assert_cce_ok(cce_lua_new(NULL, &L));
    char *msg = NULL;
    assert_cce_ok(cce_lua_run_string(L, "assert(require('cce') == cce)", "=check", &msg));
    assert_null(msg);
    assert_int_equal(cce_lua_run_string(L, "local x = \n\n error('boom')", "@in.lua", &msg),
                     CCE_ERR_STATE);
    assert_string_equal(msg, "in.lua:3: boom");
    free(msg);
    assert_int_equal(cce_lua_run_string(L, "x = = 1", "@syn.lua", &msg), CCE_ERR_FORMAT);
    fixture_expect_in(msg, "syn.lua:1:");
    free(msg);
    /* Every prelude module loads, once, and is reachable as cce.NAME. */
    for (const cce_lua_prelude *p = cce_lua_prelude_modules; p->name; p++) {
        char chunk[512];
        snprintf(chunk, sizeof chunk,
                 "local a = require('%s'); assert(a ~= nil); assert(require('%s') == a);"
                 "assert(cce['%s'] ~= nil)",
                 p->name, p->name, p->name + 4);
        assert_cce_ok(cce_lua_run_string(L, chunk, "=prelude", &msg));
        assert_true(p->len > 0 && p->source[p->len] == '\0');
    }
    assert_int_equal(cce_lua_run_string(L, "require('cce.no_such')", "@r.lua", &msg),
                     CCE_ERR_STATE);
    fixture_expect_in(msg, "r.lua:1: require: module 'cce.no_such' is not available");
    free(msg);
    cce_lua_close(L);

    cce_lua_options o = {.unsafe = 1, .redo = 1};
    assert_cce_ok(cce_lua_new(&o, &L));
    assert_int_equal(cce_lua_get_options(L)->redo, 1);
    assert_cce_ok(
        cce_lua_run_string(L, "assert(cce.options.redo and os.clock and io.open)", "=opts", &msg));
    cce_lua_close(L);
    cce_lua_close(NULL);
}

/* ---- stories260K ----------------------------------------------------------------------------- */

static void test_stories260K(void **state) {
    (void)state;
    test_require_mirror_file("models/stories260K/stories260K.bin");
    test_require_mirror_file("models/stories260K/tok512.bin");
    test_require_mirror_file("text/tinystories_val.txt");
    script("stories.lua",
           "local cce = require 'cce'\n"
           "local m = cce.model('stories260K')\n"
           "local i = m:info()\n"
           "print('path=' .. i.path)\n"
           "print('params=' .. i.params, 'dim=' .. i.dim, 'layers=' .. i.n_layers, 'vocab=' .. "
           "i.vocab_size)\n"
           "print(string.format('w=%%.9g', m:tensor('layers.2.self_attn.o_proj.weight'):get(5, "
           "9)))\n"
           "local ds = cce.dataset('tinystories_val')\n"
           "local calib, test = ds:split{model = m, calib_tokens = 2048, test_tokens = 2000}\n"
           "local ids = {}\n"
           "for k = 1, 12 do ids[k] = test:get(k) end\n"
           "print('ids=' .. table.concat(ids, ' '))\n"
           "local r = m:eval{data = test, ctx = 512, max_tokens = 1533}\n"
           "print(string.format('nll=%%.6f', r.nll), string.format('top1=%%.4f', r.top1), "
           "'tokens=' .. r.tokens)\n"
           "local v = m:compress{strategy = 'wanda', ratio = 0.3, calib = calib}\n"
           "local rv = v:eval{data = test, ctx = 256}\n"
           "print(string.format('vppl=%%.4f', rv.ppl), string.format('vkl=%%.6f', rv.kl))\n"
           "local again = cce.model('stories260K')\n"
           "print('same_path=' .. tostring(again:info().path == i.path))\n");
    char *out = fixture_run_expect(0, "run stories.lua");
    fixture_expect_in(out, "params=260032");
    fixture_expect_in(out, "dim=64");
    fixture_expect_in(out, "layers=5");
    fixture_expect_in(out, "vocab=512");
    fixture_expect_in(out, "ids=301 427 309 426 301 427 309 394 265 262 415 271");
    fixture_expect_in(out, "tokens=1533");
    fixture_expect_in(out, "same_path=true");
    assert_true(fabs(value_of(out, "nll") - 1.401157) < 1e-4);
    assert_true(fabs(value_of(out, "top1") - 0.6425) < 1e-3);
    double vppl = value_of(out, "vppl"), vkl = value_of(out, "vkl");
    assert_true(vppl > 4.0 && vppl < 50.0);
    assert_true(vkl > 0.0 && vkl < 2.0);
    /* The imported cache file is what the C API reads. */
    char path[4096];
    text_of(out, "path", path, sizeof path);
    cce_model *m;
    assert_cce_ok(cce_model_open(path, &m));
    assert_int_equal(cce_model_total_params(m), 260032);
    cce_tensor *t;
    assert_cce_ok(cce_model_tensor(m, "layers.2.self_attn.o_proj.weight", &t));
    assert_true((float)value_of(out, "w") == t->data[4 * t->shape[1] + 8]);
    cce_model_free(m);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_arguments),
        cmocka_unit_test(test_model_info_and_tensors),
        cmocka_unit_test(test_synth),
        cmocka_unit_test(test_compress_eval_roundtrip),
        cmocka_unit_test(test_plans_and_steps),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_sandbox),
        cmocka_unit_test(test_bytecode_refused),
        cmocka_unit_test(test_in_process),
        cmocka_unit_test(test_stories260K),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
