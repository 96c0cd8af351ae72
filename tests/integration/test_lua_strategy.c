/* Strategies written in Lua (cce.strategy) and the vectorised tensor operations, through
 * `cce run` on scripts written to a scratch folder:
 *   - a Lua magnitude pruner (per row, per tensor, N:M, plan overrides, heavy ties) gives exactly
 *     the C strategy's tensors and report counts, on a synthetic model and on stories260K when
 *     the mirror is there: compared in the script and, bit for bit, in the saved variants;
 *   - a Lua strategy's parameters are validated like a built-in's, with the same messages;
 *     a bad definition names the parameter;
 *   - an error in apply names the strategy, the tensor and the script line; a tensor kept after
 *     apply is closed, a view of it stays valid;
 *   - the operations give what GSL (quantiles, mean) and naive references give, ties included,
 *     and refuse bad shapes, read-only tensors and NaN with clear errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gsl/gsl_sort_float.h>
#include <gsl/gsl_statistics_float.h>

#include "fixtures.h"
#include "model.h"
#include "test_support.h"

static char dir[4096];

/* The tests run in the scratch folder, so scripts have short relative names: Lua shortens
 * source names over 60 characters in the error positions scripts see. */
static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "%s", test_scratch_dir("lua_strategy"));
    return chdir(dir);
}

/* Writes a script into the scratch folder; returns its name there (the working folder). */
static const char *write_script(const char *name, const char *text) {
    test_write_file(test_path(dir, name), text, strlen(text));
    return name;
}

/* The 1-based line of the script text holding `tag`. */
static int line_of(const char *text, const char *tag) {
    const char *at = strstr(text, tag);
    assert_non_null(at);
    int line = 1;
    for (const char *p = text; p < at; p++) line += *p == '\n';
    return line;
}

/* Runs `cce run script args` and fails unless the exit status is zero (want_ok) or not. */
static char *run_script(int want_ok, const char *script, const char *args) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "run '%s' %s", script, args ? args : "");
    char *out = NULL;
    int rc = test_run_cce(cmd, &out);
    if (want_ok ? rc != 0 : rc <= 0)
        fail_msg("cce %s exited %d (wanted %s); output:\n%s", cmd, rc, want_ok ? "0" : "failure",
                 out ? out : "");
    return out;
}

/* ---- The Lua magnitude pruner ---------------------------------------------------------------- */

#define LUA_MAGNITUDE                                                                              \
    "local cce = require \"cce\"\n"                                                                \
    "cce.strategy{\n"                                                                              \
    "  name = \"lua_magnitude\",\n"                                                                \
    "  summary = \"magnitude pruning written in Lua\",\n"                                          \
    "  params = {\n"                                                                               \
    "    {name = \"ratio\", type = \"float\", default = 0.5, min = 0, max = 1, max_open = true,\n" \
    "     help = \"fraction of weights removed\"},\n"                                              \
    "    {name = \"scope\", type = \"enum\", choices = {\"row\", \"tensor\"}, default = "          \
    "\"row\",\n"                                                                                   \
    "     help = \"compare |w| within each row or the whole tensor\"},\n"                          \
    "    {name = \"nm\", type = \"nm\", help = \"keep the N largest |w| of every M\"},\n"          \
    "  },\n"                                                                                       \
    "  apply = function(t, ctx)\n"                                                                 \
    "    local a = t:abs()\n"                                                                      \
    "    if ctx.params.nm then\n"                                                                  \
    "      if ctx.target > 0 then\n"                                                               \
    "        local n, m = ctx.params.nm:match(\"^(%d+):(%d+)$\")\n"                                \
    "        t:apply_mask(a:topk_groups(tonumber(m), tonumber(n), true))\n"                        \
    "      end\n"                                                                                  \
    "    elseif ctx.params.scope == \"row\" then\n"                                                \
    "      local shape = t:shape()\n"                                                              \
    "      t:zero_where(a:topk_rows(cce.ratio_count(ctx.target, shape[#shape]), false))\n"         \
    "    else\n"                                                                                   \
    "      t:zero_where(a:topk(cce.ratio_count(ctx.target, #t), false))\n"                         \
    "    end\n"                                                                                    \
    "  end,\n"                                                                                     \
    "}\n"

/* Compresses with the C and the Lua pruner case by case, compares tensors and report rows in the
 * script, and saves both variants as OUT/c_CASE.h5 and OUT/lua_CASE.h5. */
static const char match_script[] = LUA_MAGNITUDE
    "-- a grid of 1/8 steps: most weights tie with many others\n"
    "cce.strategy{name = \"lua_grid\", summary = \"rounds onto a grid of 1/8\",\n"
    "  apply = function(t, ctx) return t:mul(8):round():mul(0.125) end}\n"
    "local out, which = arg[1], arg[2]\n"
    "local m = which == \"synth\" and cce.synth{preset = \"tiny\", seed = 7} or cce.model(which)\n"
    "local function same(a, b, what, nm)\n"
    "  local names = a:info().tensors\n"
    "  assert(#names == #b:info().tensors and #names > 0, what .. \": tensor lists differ\")\n"
    "  for _, name in ipairs(names) do\n"
    "    local x, y = a:tensor(name), b:tensor(name)\n"
    "    local d = x:sub(y):abs():max()\n"
    "    if d ~= 0 or x:count_nonzero() ~= y:count_nonzero() then\n"
    "      error(string.format(\"%s: %s differs (max |diff| %g)\", what, name, d))\n"
    "    end\n"
    "  end\n"
    "  local ra, rb = a:compression().layers, b:compression().layers\n"
    "  assert(#ra == #rb and #ra > 0, what .. \": report rows differ in number\")\n"
    "  for i = 1, #ra do\n"
    "    local p, q = ra[i], rb[i]\n"
    "    local ok = p.tensor == q.tensor and p.layer == q.layer and\n"
    "      p.params_before == q.params_before and p.params_after == q.params_after and\n"
    "      p.sparsity == q.sparsity and p.bytes_before == q.bytes_before and\n"
    "      (nm or p.bytes_after == q.bytes_after) and\n"
    "      math.abs(p.rel_fro_error - q.rel_fro_error) <= 1e-9 * (1 + p.rel_fro_error)\n"
    "    if not ok then\n"
    "      error(string.format(\"%s: report row %d (%s) differs: after %d/%d sparsity %.17g/%.17g "
    "\"\n"
    "        .. \"bytes %d/%d err %.17g/%.17g\", what, i, p.tensor, p.params_after, "
    "q.params_after,\n"
    "        p.sparsity, q.sparsity, p.bytes_after, q.bytes_after, p.rel_fro_error,\n"
    "        q.rel_fro_error))\n"
    "    end\n"
    "  end\n"
    "  return a:compression().summary\n"
    "end\n"
    "local function both(c) local l = {} for k, v in pairs(c) do l[k] = v end\n"
    "  l.strategy = \"lua_magnitude\" return c, l end\n"
    "local cases = {\n"
    "  {\"row\", both{strategy = \"magnitude\", ratio = 0.3}},\n"
    "  {\"layers\", both{strategy = \"magnitude\", ratio = 0.5,\n"
    "    layers = {[0] = 0.1, [\"layers.*.mlp.*\"] = 0.7}}},\n"
    "  {\"tensor\", both{strategy = \"magnitude\", ratio = 0.45, scope = \"tensor\"}},\n"
    "  {\"nm\", both{strategy = \"magnitude\", nm = \"2:4\"}},\n"
    "  {\"nm_ragged\", both{strategy = \"magnitude\", nm = \"3:5\"}},\n"
    "}\n"
    "for _, r in ipairs{0.2, 0.6} do\n"
    "  cases[#cases + 1] = {\"ties\" .. r,\n"
    "    {steps = {{strategy = \"lua_grid\"}, {strategy = \"magnitude\", ratio = r}}},\n"
    "    {steps = {{strategy = \"lua_grid\"}, {strategy = \"lua_magnitude\", ratio = r}}}}\n"
    "end\n"
    "for _, case in ipairs(cases) do\n"
    "  local name, c, l = case[1], case[2], case[3]\n"
    "  local vc, vl = m:compress(c), m:compress(l)\n"
    "  same(vc, vl, name, name:find(\"^nm\"))\n"
    "  vc:save(out .. \"/c_\" .. name .. \".h5\")\n"
    "  vl:save(out .. \"/lua_\" .. name .. \".h5\")\n"
    "  print(\"match \" .. name)\n"
    "end\n"
    "print(\"all cases match\")\n";

static const char *const match_cases[] = {"row",       "tensor",  "layers", "nm",
                                          "nm_ragged", "ties0.2", "ties0.6"};

/* Every tensor of OUT/c_CASE.h5 equals OUT/lua_CASE.h5 bit for bit; some are pruned. */
static void compare_saved(const char *out, const char *name) {
    char pc[4200], pl[4200];
    snprintf(pc, sizeof pc, "%s/c_%s.h5", out, name);
    snprintf(pl, sizeof pl, "%s/lua_%s.h5", out, name);
    cce_model *a, *b;
    assert_cce_ok(cce_model_open(pc, &a));
    assert_cce_ok(cce_model_open(pl, &b));
    size_t n = cce_model_tensor_count(a), zeros = 0;
    assert_int_equal(n, cce_model_tensor_count(b));
    for (size_t i = 0; i < n; i++) {
        const char *tn = cce_model_tensor_name_at(a, i);
        cce_tensor *x, *y;
        assert_cce_ok(cce_model_tensor(a, tn, &x));
        assert_cce_ok(cce_model_tensor(b, tn, &y));
        assert_true(cce_tensor_same_shape(x, y));
        int64_t numel = cce_tensor_numel(x);
        if (memcmp(x->data, y->data, (size_t)numel * sizeof(float)) != 0)
            fail_msg("%s: %s differs between the C and the Lua pruner", name, tn);
        zeros += (size_t)fixture_count_zeros(x->data, numel);
    }
    assert_true(zeros > 0);
    cce_model_free(a);
    cce_model_free(b);
}

static void check_match(const char *which, const char *tag) {
    const char *sub = test_scratch_dir(tag);
    char outdir[4096];
    snprintf(outdir, sizeof outdir, "%s", sub);
    const char *script = write_script("match.lua", match_script);
    char args[4300];
    snprintf(args, sizeof args, "'%s' '%s'", outdir, which);
    char *out = run_script(1, script, args);
    fixture_expect_in(out, "all cases match");
    free(out);
    for (size_t i = 0; i < sizeof match_cases / sizeof *match_cases; i++)
        compare_saved(outdir, match_cases[i]);
}

static void test_magnitude_matches_c_synthetic(void **state) {
    (void)state;
    check_match("synth", "lua_strategy_synth");
}

static void test_magnitude_matches_c_stories260K(void **state) {
    (void)state;
    if (!test_require_mirror_file("models/stories260K/stories260K.bin")) skip();
    check_match("stories260K", "lua_strategy_260k");
}

/* ---- Parameter validation -------------------------------------------------------------------- */

static const char params_script[] = LUA_MAGNITUDE
    "local m = cce.synth{preset = \"tiny\", seed = 7}\n"
    "local function msg(spec)\n"
    "  local ok, err = pcall(m.compress, m, spec)\n"
    "  assert(not ok, \"compress accepted a bad parameter\")\n"
    "  return (tostring(err):gsub(\"^.-:%d+: \", \"\"))\n"
    "end\n"
    "-- the same message as the built-in strategy, with the name changed\n"
    "local specs = {\n"
    "  {ratio = 1.5}, {ratio = -0.1}, {ratio = \"lots\"}, {ratio = true}, {foo = 1},\n"
    "  {nm = \"4:2\"}, {nm = \"two\"},\n"
    "}\n"
    "for _, s in ipairs(specs) do\n"
    "  s.strategy = \"magnitude\"\n"
    "  local c = msg(s)\n"
    "  s.strategy = \"lua_magnitude\"\n"
    "  local l = msg(s)\n"
    "  print(\"lua: \" .. l)\n"
    "  local want = c:gsub(\"magnitude\", \"lua_magnitude\"):gsub(\"; parameters: .*\", \"\")\n"
    "  assert(l:find(want, 1, true), \"messages differ: \" .. c .. \" / \" .. l)\n"
    "end\n"
    "-- an enum lists its own choices\n"
    "print(\"lua: \" .. msg{strategy = \"lua_magnitude\", scope = \"diagonal\"})\n"
    "print(\"params ok\")\n"
    "local which = arg[1]\n"
    "if which == \"range\" then\n"
    "  m:compress{strategy = \"lua_magnitude\", ratio = 1.5} -- @RANGE\n"
    "elseif which == \"unknown\" then\n"
    "  m:compress{strategy = \"lua_magnitude\", ratio = 0.2, foo = 1} -- @UNKNOWN\n"
    "end\n";

static void test_parameter_validation(void **state) {
    (void)state;
    const char *script = write_script("params.lua", params_script);
    char *out = run_script(1, script, "none");
    fixture_expect_in(out, "params ok");
    fixture_expect_in(out, "lua_magnitude: ratio = 1.5 is outside [0, 1)\n");
    fixture_expect_in(out,
                      "lua_magnitude: unknown parameter 'foo'; parameters: ratio, scope, nm\n");
    fixture_expect_in(out, "lua_magnitude: scope = diagonal is outside {row, tensor}\n");
    free(out);

    char want[4400];
    out = run_script(0, script, "range");
    snprintf(want, sizeof want, "%s:%d:", script, line_of(params_script, "@RANGE"));
    fixture_expect_in(out, want);
    fixture_expect_in(out, "lua_magnitude: ratio = 1.5 is outside [0, 1)");
    free(out);
    out = run_script(0, script, "unknown");
    snprintf(want, sizeof want, "%s:%d:", script, line_of(params_script, "@UNKNOWN"));
    fixture_expect_in(out, want);
    fixture_expect_in(out, "unknown parameter 'foo'; parameters: ratio, scope, nm");
    free(out);
}

static const char define_script[] =
    "local cce = require \"cce\"\n"
    "local function try(spec)\n"
    "  spec.apply = spec.apply or function() end\n"
    "  local ok, err = pcall(cce.strategy, spec) -- @PCALL\n"
    "  assert(not ok, \"cce.strategy accepted a bad definition\")\n"
    "  print(\"error: \" .. err)\n"
    "end\n"
    "try{name = \"lua_a\", params = {{name = \"ratio\", type = \"float\", default = 1.5, min = 0,\n"
    "  max = 1}}}\n"
    "try{name = \"lua_b\", params = {{name = \"ratio\", type = \"double\"}}}\n"
    "try{name = \"lua_c\", params = {{name = \"k\", type = \"int\", default = 2},\n"
    "  {name = \"k\", type = \"int\", default = 3}}}\n"
    "try{name = \"Lua-Bad\"}\n"
    "try{name = \"magnitude\"}\n"
    "try{name = \"lua_d\", apply = 42}\n"
    "try{name = \"lua_e\", params = {{name = \"mode\", type = \"enum\", default = \"x\"}}}\n"
    "try{name = \"lua_f\", params = {{name = \"mode\", type = \"enum\", choices = {\"a\", \"b\"},\n"
    "  default = \"c\"}}}\n"
    "try{name = \"lua_g\", params = {{name = \"k\", type = \"int\", default = 0.5}}}\n"
    "try{name = \"lua_h\", params = {{name = \"k\", type = \"int\", colour = 1}}}\n"
    "try{name = \"lua_i\", needs = {\"gpu\"}}\n"
    "cce.strategy{name = \"lua_ok\", apply = function() end}\n"
    "try{name = \"lua_ok\"}\n"
    "local s = cce.strategies()\n"
    "assert(s.lua_ok and s.magnitude, \"cce.strategies() lacks lua_ok\")\n"
    "for _, bad in ipairs{\"lua_a\", \"lua_b\", \"lua_c\"} do assert(not s[bad]) end\n"
    "print(\"define ok\")\n";

static void test_definition_errors(void **state) {
    (void)state;
    const char *script = write_script("define.lua", define_script);
    char *out = run_script(1, script, NULL);
    char want[4400];
    snprintf(want, sizeof want,
             "error: %s:%d: cce.strategy: strategy 'lua_a': parameter 'ratio': "
             "default '1.5' is invalid",
             script, line_of(define_script, "@PCALL"));
    fixture_expect_in(out, want);
    const char *expect[] = {
        "parameter 'ratio': type 'double' is not one of float, int, bool, enum, string, nm",
        "strategy 'lua_c': parameter 'k': the name appears twice",
        "strategy name 'Lua-Bad' is not [a-z0-9_]",
        "a strategy named 'magnitude' is already registered",
        "'lua_d' needs apply = function(t, ctx) ... end, got number",
        "parameter 'mode': an enum needs choices",
        "strategy 'lua_f': parameter 'mode': default 'c' is invalid",
        "parameter 'k': default must be an integer, got a fraction",
        "colour",
        "unknown need 'gpu'",
        "a strategy named 'lua_ok' is already registered",
        "define ok",
    };
    for (size_t i = 0; i < sizeof expect / sizeof *expect; i++) fixture_expect_in(out, expect[i]);
    free(out);
}

/* ---- Errors inside apply --------------------------------------------------------------------- */

static const char apply_script[] =
    "local cce = require \"cce\"\n"
    "local m = cce.synth{preset = \"tiny\", seed = 7}\n"
    "local function try(name, fn)\n"
    "  cce.strategy{name = name, apply = fn}\n"
    "  local ok, err = pcall(m.compress, m, {strategy = name})\n"
    "  assert(not ok, name .. \" did not fail\")\n"
    "  print(\"error: \" .. err)\n"
    "end\n"
    "try(\"lua_boom\", function(t, ctx)\n"
    "  if ctx.kind == \"k_proj\" then\n"
    "    error(\"boom in \" .. ctx.name) -- @BOOM\n"
    "  end\n"
    "end)\n"
    "try(\"lua_nil\", function(t, ctx)\n"
    "  local x = nil\n"
    "  return x.field -- @NIL\n"
    "end)\n"
    "try(\"lua_number\", function(t, ctx) return 42 end)\n"
    "try(\"lua_shape\", function(t, ctx) return t:slice(1, 2) end)\n"
    "try(\"lua_nan\", function(t, ctx) t:set(1, 1, 0 / 0) end)\n"
    "try(\"lua_closed\", function(t, ctx) t:close() end)\n"
    "try(\"lua_op\", function(t, ctx) return t:mul(t:slice(1, 2)) end) -- @OP\n"
    "-- a tensor kept after apply is closed; a view of it stays valid\n"
    "local kept, view\n"
    "cce.strategy{name = \"lua_keep\", apply = function(t, ctx)\n"
    "  kept, view = t, t:slice(1, 1)\n"
    "  t:zero_where(t:abs():topk_rows(1, false))\n"
    "end}\n"
    "local v = m:compress{strategy = \"lua_keep\"}\n"
    "local ok, err = pcall(kept.get, kept, 1, 1)\n"
    "assert(not ok and err:find(\"closed\"), \"a kept tensor is still open: \" .. tostring(err))\n"
    "assert(view:get(1, 1) == view:get(1, 1))\n"
    "print(\"kept: \" .. err)\n"
    "-- the state still works after the failures\n"
    "local rows = v:compression().layers\n"
    "assert(#rows == 14 and rows[1].strategy == \"lua_keep\", \"report of lua_keep\")\n"
    "for _, row in ipairs(rows) do -- one weight of every row went\n"
    "  assert(row.params_before - row.params_after == m:tensor(row.tensor):shape()[1])\n"
    "end\n"
    "print(\"apply ok\")\n"
    "if arg[1] == \"top\" then m:compress{strategy = \"lua_boom\"} end -- @TOP\n";

static void test_apply_errors(void **state) {
    (void)state;
    const char *script = write_script("apply.lua", apply_script);
    char *out = run_script(1, script, "none");
    char want[4600];
    snprintf(want, sizeof want,
             "lua_boom: layers.0.self_attn.k_proj.weight: %s:%d: boom in "
             "layers.0.self_attn.k_proj.weight",
             script, line_of(apply_script, "@BOOM"));
    fixture_expect_in(out, want);
    snprintf(want, sizeof want,
             "lua_nil: layers.0.self_attn.q_proj.weight: %s:%d: attempt to index", script,
             line_of(apply_script, "@NIL"));
    fixture_expect_in(out, want);
    fixture_expect_in(out, "lua_number: layers.0.self_attn.q_proj.weight: ");
    fixture_expect_in(out, "apply returned a number; return a tensor of the same shape or nothing");
    fixture_expect_in(out,
                      "apply returned a tensor of shape [2, 32]; the tensor has shape [32, 32]");
    fixture_expect_in(out, "lua_nan: apply left layers.0.self_attn.q_proj.weight");
    fixture_expect_in(out, "lua_closed: layers.0.self_attn.q_proj.weight: ");
    fixture_expect_in(out, "is closed");
    snprintf(want, sizeof want, "%s:%d: tensor:mul: shapes [32, 32] and [2, 32] do not fit", script,
             line_of(apply_script, "@OP"));
    fixture_expect_in(out, want);
    fixture_expect_in(out, "apply ok");
    free(out);

    out = run_script(0, script, "top");
    snprintf(want, sizeof want, "%s:%d:", script, line_of(apply_script, "@TOP"));
    fixture_expect_in(out, want);
    snprintf(want, sizeof want, "%s:%d: boom in", script, line_of(apply_script, "@BOOM"));
    fixture_expect_in(out, want);
    free(out);
}

/* ---- Tensor operations ----------------------------------------------------------------------- */

/* Checks every operation against naive Lua references (t:get loops) on a [64, 32] weight and on a
 * tie-heavy copy, prints GSL-comparable values, and saves the model for the C side. */
static const char ops_script[] =
    "local cce = require \"cce\"\n"
    "local m = cce.synth{preset = \"tiny\", seed = 11}\n"
    "m:save(arg[1] .. \"/ops.h5\")\n"
    "local W = m:tensor(\"layers.0.mlp.up_proj.weight\")\n"
    "local R, C = W:shape()[1], W:shape()[2]\n"
    "local function f32(x) return string.unpack(\"f\", string.pack(\"f\", x)) end\n"
    "local function check(cond, what) if not cond then error(what, 2) end end\n"
    "local function each(t, fn) -- fn(i, j, value) over the 2-D view\n"
    "  local s = t:shape() local rows, cols = #s == 1 and 1 or s[1], s[#s]\n"
    "  for i = 1, rows do for j = 1, cols do\n"
    "    fn(i, j, #s == 1 and t:get(j) or t:get(i, j)) end end\n"
    "end\n"
    "local function same(t, ref, what) -- ref(i, j) gives the expected value\n"
    "  each(t, function(i, j, v)\n"
    "    local r = ref(i, j)\n"
    "    if v ~= r then error(string.format(\"%s: (%d, %d) is %.9g, expected %.9g\", what, i, j,\n"
    "      v, r), 3) end\n"
    "  end)\n"
    "end\n"
    "local function g(t, i, j) return #t:shape() == 1 and t:get(j) or t:get(i, j) end\n"
    "-- elementwise\n"
    "local col = W:norm(\"col\")\n"
    "local rowv = W:norm(\"row\")\n"
    "same(W:abs(), function(i, j) return math.abs(W:get(i, j)) end, \"abs\")\n"
    "same(W:mul(3), function(i, j) return f32(W:get(i, j) * f32(3)) end, \"mul number\")\n"
    "same(W:mul(W), function(i, j) return f32(W:get(i, j) * W:get(i, j)) end, \"mul tensor\")\n"
    "same(W:mul(col), function(i, j) return f32(W:get(i, j) * col:get(j)) end, \"mul cols\")\n"
    "same(W:add(0.5), function(i, j) return f32(W:get(i, j) + 0.5) end, \"add\")\n"
    "same(W:sub(W:abs()), function(i, j) return f32(W:get(i, j) - math.abs(W:get(i, j))) end,\n"
    "  \"sub\")\n"
    "same(W:scale(2), function(i, j) return f32(W:get(i, j) * 2) end, \"scale\")\n"
    "same(W:abs():pow(0.5), function(i, j) return f32(math.abs(W:get(i, j)) ^ 0.5) end,\n"
    "  \"pow\")\n"
    "same(W:pow(3), function(i, j) return f32(W:get(i, j) ^ 3) end, \"pow 3\")\n"
    "same(W:scale(rowv, \"row\"), function(i, j) return f32(W:get(i, j) * rowv:get(i)) end,\n"
    "  \"scale row\")\n"
    "same(W:scale(col, \"col\"), function(i, j) return f32(W:get(i, j) * col:get(j)) end,\n"
    "  \"scale col\")\n"
    "local function rint(x) local r = math.floor(x + 0.5)\n"
    "  if r - x == 0.5 and r % 2 == 1 then r = r - 1 end return r end\n"
    "same(W:mul(10):round(), function(i, j) return rint(f32(W:get(i, j) * f32(10))) end,\n"
    "  \"round\")\n"
    "local half = W:copy() half:set(1, 1, 2.5) half:set(1, 2, -0.5) half:set(1, 3, 3.5)\n"
    "local rh = half:round()\n"
    "check(rh:get(1, 1) == 2 and rh:get(1, 2) == 0 and rh:get(1, 3) == 4, \"round ties to even\")\n"
    "same(W:clamp(-0.1, 0.2), function(i, j) return math.max(f32(-0.1), math.min(f32(0.2),\n"
    "  W:get(i, j))) end, \"clamp\")\n"
    "same(W:clamp(nil, 0), function(i, j) return math.min(0, W:get(i, j)) end, \"clamp hi\")\n"
    "local pos = W:mask_above(0)\n"
    "same(pos, function(i, j) return W:get(i, j) > 0 and 1 or 0 end, \"mask_above\")\n"
    "same(W:mask_below(-0.05), function(i, j) return W:get(i, j) < -0.05 and 1 or 0 end,\n"
    "  \"mask_below\")\n"
    "local kth = W:kth_rows(5)\n"
    "same(W:mask_below(kth), function(i, j) return W:get(i, j) < kth:get(i) and 1 or 0 end,\n"
    "  \"mask_below per row\")\n"
    "same(W:where(pos, -1), function(i, j) return W:get(i, j) > 0 and W:get(i, j) or -1 end,\n"
    "  \"where number\")\n"
    "same(W:where(pos, W:abs()), function(i, j) return math.abs(W:get(i, j)) end, \"where\")\n"
    "local sel, k = W:select(pos), 0\n"
    "each(W, function(i, j, v) if v > 0 then k = k + 1\n"
    "  check(sel:get(k) == v, \"select\") end end)\n"
    "check(#sel == k and k == pos:count_nonzero() and W:select(W:mask_above(99)) == nil,\n"
    "  \"select count\")\n"
    "local A = W:copy()\n"
    "check(A:apply_mask(pos) == A, \"apply_mask returns its tensor\")\n"
    "same(A, function(i, j) return W:get(i, j) > 0 and W:get(i, j) or 0 end, \"apply_mask\")\n"
    "local Z = W:copy() Z:zero_where(pos)\n"
    "same(Z, function(i, j) return W:get(i, j) > 0 and 0 or W:get(i, j) end, \"zero_where\")\n"
    "-- reductions against naive sums in double\n"
    "local s, s2, mn, mx, nz = 0, 0, math.huge, -math.huge, 0\n"
    "local rs, rq, cs, cq = {}, {}, {}, {}\n"
    "each(W, function(i, j, v) s = s + v s2 = s2 + v * v mn = math.min(mn, v)\n"
    "  mx = math.max(mx, v) nz = nz + (v ~= 0 and 1 or 0)\n"
    "  rs[i] = (rs[i] or 0) + v rq[i] = (rq[i] or 0) + v * v\n"
    "  cs[j] = (cs[j] or 0) + v cq[j] = (cq[j] or 0) + v * v end)\n"
    "local function near(a, b) return math.abs(a - b) <= 1e-12 * (1 + math.abs(b)) end\n"
    "check(near(W:sum(), s) and near(W:mean(), s / (R * C)) and near(W:norm(), math.sqrt(s2)),\n"
    "  \"sum/mean/norm\")\n"
    "check(W:min() == mn and W:max() == mx and W:count_nonzero() == nz, \"min/max/count\")\n"
    "check(math.type(W:count_nonzero()) == \"integer\", \"count_nonzero is an integer\")\n"
    "same(W:sum(\"row\"), function(i, j) return f32(rs[j]) end, \"sum row\")\n"
    "same(W:sum(\"col\"), function(i, j) return f32(cs[j]) end, \"sum col\")\n"
    "same(W:mean(\"row\"), function(i, j) return f32(rs[j] / C) end, \"mean row\")\n"
    "same(W:norm(\"row\"), function(i, j) return f32(math.sqrt(rq[j])) end, \"norm row\")\n"
    "same(W:norm(\"col\"), function(i, j) return f32(math.sqrt(cq[j])) end, \"norm col\")\n"
    "same(W:count_nonzero(\"row\"), function() return C end, \"count row\")\n"
    "same(pos:count_nonzero(\"col\"), function(i, j) local c = 0\n"
    "  for r = 1, R do c = c + (W:get(r, j) > 0 and 1 or 0) end return c end, \"count col\")\n"
    "same(W:max(\"row\"), function(i, j) local x = -math.huge\n"
    "  for c = 1, C do x = math.max(x, W:get(j, c)) end return x end, \"max row\")\n"
    "same(W:min(\"col\"), function(i, j) local x = math.huge\n"
    "  for r = 1, R do x = math.min(x, W:get(r, j)) end return x end, \"min col\")\n"
    "-- order statistics with ties: T0 holds whole numbers in [-2, 2]; the non-negative tensors\n"
    "-- take the selection path, the others the sorting one\n"
    "local T0 = W:mul(8):round():clamp(-2, 2)\n"
    "local function ranked(t, i, cols) -- positions of row i by (value, position)\n"
    "  local idx = {} for j = 1, cols do idx[j] = j end\n"
    "  table.sort(idx, function(a, b) local x, y = g(t, i, a), g(t, i, b)\n"
    "    if x ~= y then return x < y end return a < b end)\n"
    "  return idx\n"
    "end\n"
    "for _, T in ipairs{T0, T0:abs(), W, W:abs()} do\n"
    "for _, k in ipairs{0, 1, 7, 16, 31, 32} do\n"
    "  local small, large = T:topk_rows(k, false), T:topk_rows(k, true)\n"
    "  local dflt = T:topk_rows(k)\n"
    "  for i = 1, R do\n"
    "    local order, want = ranked(T, i, C), {}\n"
    "    for r = 1, C do want[order[r]] = r <= k and 1 or 0 end\n"
    "    for j = 1, C do\n"
    "      check(small:get(i, j) == want[j], \"topk_rows smallest k=\" .. k)\n"
    "      local lw = 0 for r = C - k + 1, C do if order[r] == j then lw = 1 end end\n"
    "      check(large:get(i, j) == lw and dflt:get(i, j) == lw, \"topk_rows largest k=\" .. k)\n"
    "    end\n"
    "    if k > 0 then check(T:kth_rows(k):get(i) == g(T, i, order[k]), \"kth_rows\") end\n"
    "  end\n"
    "end\n"
    "-- topk over the whole tensor, by (value, flat position)\n"
    "local flat = {} each(T, function(i, j, v) flat[#flat + 1] = {v, (i - 1) * C + j} end)\n"
    "table.sort(flat, function(a, b) if a[1] ~= b[1] then return a[1] < b[1] end\n"
    "  return a[2] < b[2] end)\n"
    "for _, k in ipairs{0, 100, 1000, R * C} do\n"
    "  local mk, want = T:topk(k, false), {}\n"
    "  for r = 1, k do want[flat[r][2]] = true end\n"
    "  same(mk, function(i, j) return want[(i - 1) * C + j] and 1 or 0 end, \"topk \" .. k)\n"
    "  check(T:topk(k, true):count_nonzero() == k, \"topk largest count\")\n"
    "end\n"
    "-- groups of 5 along each row of 32 (a ragged last group of 2)\n"
    "local G = T:topk_groups(5, 3, true)\n"
    "for i = 1, R do for g0 = 1, C, 5 do\n"
    "  local len = math.min(5, C - g0 + 1)\n"
    "  local keep = len == 5 and 3 or math.ceil(3 * len / 5)\n"
    "  local idx = {} for j = g0, g0 + len - 1 do idx[#idx + 1] = j end\n"
    "  table.sort(idx, function(a, b) local x, y = T:get(i, a), T:get(i, b)\n"
    "    if x ~= y then return x < y end return a < b end)\n"
    "  for r, j in ipairs(idx) do check(G:get(i, j) == (r > len - keep and 1 or 0),\n"
    "    \"topk_groups\") end\n"
    "end end\n"
    "end\n"
    "-- errors\n"
    "local function fails(pattern, fn, ...)\n"
    "  local ok, err = pcall(fn, ...)\n"
    "  check(not ok and err:find(pattern, 1, true), \"expected '\" .. pattern .. \"', got \" ..\n"
    "    tostring(err))\n"
    "  print(\"refused: \" .. err)\n"
    "end\n"
    "fails(\"tensor:mul: shapes [64, 32] and [3, 32] do not fit\", W.mul, W, W:slice(1, 3))\n"
    "fails(\"tensor:add: argument #1 must be a number or a tensor, got string\", W.add, W, \"x\")\n"
    "fails(\"is read-only\", W.zero_where, W, pos)\n"
    "fails(\"tensor:topk_rows: k = 33 is outside [0, 32]\", W.topk_rows, W, 33)\n"
    "fails(\"tensor:kth_rows: k = 0 is outside [1, 32]\", W.kth_rows, W, 0)\n"
    "fails(\"tensor:quantile: q = 1.5 is outside [0, 1]\", W.quantile, W, 1.5)\n"
    "fails(\"tensor:mask_below: a threshold tensor needs one value per row\", W.mask_below, W,\n"
    "  col)\n"
    "fails(\"tensor:scale: per = \\\"row\\\" needs a 1-D tensor of 64 values\", W.scale, W, col,\n"
    "  \"row\")\n"
    "fails(\"tensor:clamp: the range [1, 0] is empty\", W.clamp, W, 1, 0)\n"
    "fails(\"invalid option 'diag'\", W.sum, W, \"diag\")\n"
    "local N = W:copy() N:set(2, 3, 0 / 0)\n"
    "fails(\"tensor:quantile: the tensor has a NaN at index 35\", N.quantile, N, 0.5)\n"
    "fails(\"tensor:topk_rows: the tensor has a NaN\", N.topk_rows, N, 1)\n"
    "-- values for the GSL comparison\n"
    "local function out(k, x) print(string.format(\"%s %.17g\", k, x)) end\n"
    "out(\"mean\", W:mean()) out(\"sum\", W:sum()) out(\"norm\", W:norm())\n"
    "out(\"min\", W:min()) out(\"max\", W:max())\n"
    "for _, q in ipairs{0, 0.1, 0.25, 0.5, 0.9, 1} do out(\"quantile\" .. q, W:quantile(q)) end\n"
    "local qr, qc = W:quantile(0.3, \"row\"), W:quantile(0.7, \"col\")\n"
    "for i = 1, R do out(\"qrow\" .. i, qr:get(i)) end\n"
    "for j = 1, C do out(\"qcol\" .. j, qc:get(j)) end\n"
    "print(\"ops ok\")\n";

/* The number printed as "key value" in out. */
static double value_of(const char *text, const char *key) {
    size_t klen = strlen(key);
    for (const char *at = text; (at = strstr(at, key)) != NULL; at += klen)
        if ((at == text || at[-1] == '\n') && at[klen] == ' ') return strtod(at + klen + 1, NULL);
    fail_msg("the output lacks '%s':\n%s", key, text);
    return NAN;
}

static void test_ops_match_references(void **state) {
    (void)state;
    const char *script = write_script("ops.lua", ops_script);
    char args[4200];
    snprintf(args, sizeof args, "'%s'", dir);
    char *out = run_script(1, script, args);
    fixture_expect_in(out, "ops ok");

    cce_model *m;
    assert_cce_ok(cce_model_open(test_path(dir, "ops.h5"), &m));
    cce_tensor *w;
    assert_cce_ok(cce_model_tensor(m, "layers.0.mlp.up_proj.weight", &w));
    int64_t rows = w->shape[0], cols = w->shape[1], n = rows * cols;
    float *s = malloc((size_t)n * sizeof *s); /* [n] sorted copy */
    assert_non_null(s);
    memcpy(s, w->data, (size_t)n * sizeof *s);
    gsl_sort_float(s, 1, (size_t)n);
    double mean = gsl_stats_float_mean(w->data, 1, (size_t)n);
    assert_true(fabs(value_of(out, "mean") - mean) <= 1e-12 * (1 + fabs(mean)));
    assert_true(fabs(value_of(out, "sum") - mean * (double)n) <= 1e-9 * (1 + fabs(mean * n)));
    double ss = 0;
    for (int64_t j = 0; j < n; j++) ss += (double)w->data[j] * w->data[j];
    assert_true(fabs(value_of(out, "norm") - sqrt(ss)) <= 1e-12 * sqrt(ss));
    assert_true(value_of(out, "min") == s[0]);
    assert_true(value_of(out, "max") == s[n - 1]);
    const double qs[] = {0, 0.1, 0.25, 0.5, 0.9, 1};
    for (size_t i = 0; i < sizeof qs / sizeof *qs; i++) {
        char key[32];
        snprintf(key, sizeof key, "quantile%g", qs[i]);
        double want = gsl_stats_float_quantile_from_sorted_data(s, 1, (size_t)n, qs[i]);
        if (value_of(out, key) != want)
            fail_msg("%s: %.17g, GSL gives %.17g", key, value_of(out, key), want);
    }
    for (int64_t r = 0; r < rows; r++) { /* per row, q = 0.3 */
        memcpy(s, w->data + r * cols, (size_t)cols * sizeof *s);
        gsl_sort_float(s, 1, (size_t)cols);
        char key[32];
        snprintf(key, sizeof key, "qrow%lld", (long long)r + 1);
        float want = (float)gsl_stats_float_quantile_from_sorted_data(s, 1, (size_t)cols, 0.3);
        assert_true(value_of(out, key) == want);
    }
    for (int64_t c = 0; c < cols; c++) { /* per column, q = 0.7 */
        for (int64_t r = 0; r < rows; r++) s[r] = w->data[r * cols + c];
        gsl_sort_float(s, 1, (size_t)rows);
        char key[32];
        snprintf(key, sizeof key, "qcol%lld", (long long)c + 1);
        float want = (float)gsl_stats_float_quantile_from_sorted_data(s, 1, (size_t)rows, 0.7);
        assert_true(value_of(out, key) == want);
    }
    free(s);
    cce_model_free(m);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_magnitude_matches_c_synthetic),
        cmocka_unit_test(test_magnitude_matches_c_stories260K),
        cmocka_unit_test(test_parameter_validation),
        cmocka_unit_test(test_definition_errors),
        cmocka_unit_test(test_apply_errors),
        cmocka_unit_test(test_ops_match_references),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
