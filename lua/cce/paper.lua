-- cce.paper: helpers shared by the paper experiments (experiments/paper/*.lua; lua/README.md,
-- "Paper experiments").
--
--   local P = require "cce.paper"
--   local o = P.options(name, {extra defaults})      -- E.options with the common ones + quick
--   local m, splits, test = P.setup(o)              -- one calibration split per seed, one test
--   local exp = P.experiment(o, m [, fields])       -- cce.experiment into <out>/<name>.h5
--   local r = P.run(exp, fields, split)             -- exp:run with the split, ctx and max_tokens
--   local runs = P.achieved(exp)                     -- id -> achieved block fraction, per layer
--   P.compare(exp, ids_a, ids_b)                     -- seeds pooled: paired bootstrap a - b
--   P.table(o, name, columns, rows, note)           -- <out>/<name>.{tex,md,tsv}
--   P.figure(exp, kind [, opts])                     -- exp:figure, "skipped: ..." on failure
--
-- Budgets are fractions of the BLOCK weight parameters (the 2-D tensors of the transformer
-- blocks; norms, embeddings and the classifier are outside): the achieved fraction of a run is
-- sum over its "layers" rows of (params_before - params_after) / the base model's block weight
-- parameters.
local _, cce = ...
local E = require "cce.experiment"

local P = {}

-- Defaults every paper script shares; quick=true shrinks seeds, ratios and tokens (for tests).
P.COMMON = {
  out = "results", model = "stories260K", data = "tinystories_val",
  calib_tokens = 16384, test_tokens = 30000, calib_window = 256, ctx = 0, max_tokens = 30000,
  seed = 42, seeds = { 1, 2, 3 }, quick = false, figure = true,
}

-- options(name, extra) -> o: E.options over P.COMMON plus the script's own defaults. With
-- quick = true: one seed less than given (at least 2), and the script's quick_* overrides.
function P.options(name, extra)
  local d = {}
  for k, v in pairs(P.COMMON) do d[k] = v end
  for k, v in pairs(extra or {}) do d[k] = v end
  local o = E.options(d)
  o.name = name
  if o.quick then
    if #o.seeds > 2 then o.seeds = { o.seeds[1], o.seeds[2] } end
  end
  return o
end

-- setup(o) -> model, splits, test: the model, one calibration part per seed in o.seeds (drawn
-- with that split seed; the test part, the stream's first test_tokens tokens, is the same for
-- every seed) and the test part.
function P.setup(o)
  local first = { model = o.model, data = o.data, calib_tokens = o.calib_tokens,
                  test_tokens = o.test_tokens, calib_window = o.calib_window,
                  split_seed = o.seeds[1] }
  local m, calib, test = E.setup(first)
  local splits = { { seed = o.seeds[1], calib = calib } }
  local ds = cce.dataset(o.data)
  for i = 2, #o.seeds do
    local c = ds:split{ model = m, calib_tokens = o.calib_tokens, test_tokens = o.test_tokens,
                        calib_window = o.calib_window, seed = o.seeds[i] }
    splits[i] = { seed = o.seeds[i], calib = c }
  end
  return m, splits, test
end

-- A calibration part of another text (its whole stream after the first test_tokens tokens).
function P.calib_of(o, m, data, seed, tokens, test_tokens)
  local c = cce.dataset(data):split{ model = m, calib_tokens = tokens or o.calib_tokens,
                                     test_tokens = test_tokens or 1000,
                                     calib_window = o.calib_window, seed = seed }
  return c
end

function P.experiment(o, m, fields)
  local f = { name = o.name, out = o.out .. "/" .. o.name .. ".h5", seed = o.seed, model = m }
  for k, v in pairs(fields or {}) do f[k] = v end
  return cce.experiment(f)
end

-- The run ids each results file got (executed or skipped) in this script, by path.
local session = {}

-- run(exp, o, test, fields [, calib]) -> metrics, skipped, info
function P.run(exp, o, test, fields, calib)
  local f = {}
  for k, v in pairs(fields) do f[k] = v end
  f.eval, f.max_tokens = test, o.max_tokens
  f.ctx = o.ctx > 0 and o.ctx or nil
  if f.strategy ~= "dense" then f.calib = calib end
  local r, skipped, info = exp:run(f)
  local ids = session[exp:path()] or {}
  session[exp:path()] = ids
  ids[info.id] = true
  return r, skipped, info
end

-- The runs of the experiment's file that this script did not run or skip (recorded by an
-- earlier version of a strategy or of the script), as a filter term "id!=..." or nil.
local function stale_filter(exp)
  local ids = session[exp:path()]
  if not ids then return nil end
  local stale = {}
  for _, r in ipairs(cce.results(exp:path())) do
    if not ids[r.id] then stale[#stale + 1] = r.id end
  end
  if #stale == 0 then return nil end
  return "id!=" .. table.concat(stale, "|")
end

-- The strategies registered now (built-in, external, Lua).
function P.has_strategy(name)
  return cce.strategies()[name] ~= nil
end

function P.has_param(strategy, param)
  local s = cce.strategies()[strategy]
  if not s then return false end
  for _, p in ipairs(s.params) do
    if p.name == param then return true end
  end
  return false
end

-- Block weight parameters of model m: total and per layer (1-based array, layer 0 first).
function P.block_params(m)
  local info = m:info()
  local per, total = {}, 0
  for l = 1, info.n_layers do per[l] = 0 end
  for _, name in ipairs(info.tensors) do
    local layer = name:match("^layers%.(%d+)%.")
    if layer and not name:match("norm") then
      local shape = m:tensor(name):shape()
      if #shape == 2 then
        local n = shape[1] * shape[2]
        per[tonumber(layer) + 1] = per[tonumber(layer) + 1] + n
        total = total + n
      end
    end
  end
  return total, per
end

-- achieved(exp, m) -> {id -> {frac =, layers = {frac of layer 0, ...}, run = the run}}: the
-- achieved fraction of block weight parameters removed by each run of the experiment's file.
function P.achieved(exp, m)
  local total, per = P.block_params(m)
  local out = {}
  for _, run in ipairs(cce.results(exp:path(), { layers = true })) do
    local removed, lr = 0, {}
    for l = 1, #per do lr[l] = 0 end
    for _, row in ipairs(run.layers or {}) do
      if row.layer and row.layer >= 0 and not tostring(row.tensor):match("norm") then
        local d = (row.params_before or 0) - (row.params_after or 0)
        removed = removed + d
        lr[row.layer + 1] = lr[row.layer + 1] + d
      end
    end
    for l = 1, #per do lr[l] = per[l] > 0 and lr[l] / per[l] or 0 end
    out[run.id] = { frac = removed / total, layers = lr, run = run }
  end
  return out
end

-- mean and sample standard deviation (0 for one value) of an array.
function P.mean_sd(v)
  local n, s = #v, 0
  if n == 0 then return 0 / 0, 0 / 0 end
  for _, x in ipairs(v) do s = s + x end
  local mean, ss = s / n, 0
  for _, x in ipairs(v) do ss = ss + (x - mean) ^ 2 end
  return mean, n > 1 and math.sqrt(ss / (n - 1)) or 0
end

-- Per-window NLL sums and token counts of a recorded run.
local function windows(path, id)
  local t <close> = cce.read_table(path, id, "eval_windows")
  local nll, count = {}, {}
  for i = 1, #t do
    local r = t:row(i)
    nll[i], count[i] = r.nll_sum, r.tokens
  end
  return nll, count
end

-- compare(exp, ids_a, ids_b) -> {diff, lo, hi, sig, wins, losses, seeds, per_seed}: ids_a[k]
-- and ids_b[k] are runs of the same calibration seed on the same windows. diff is the mean NLL
-- per token of a minus that of b (negative: a is better), from a paired bootstrap over the
-- evaluation windows of the per-window NLL averaged over the seeds (cce.bootstrap, 1000
-- resamples, 95%); wins (losses) counts the seeds whose own paired bootstrap
-- (cce.compare_runs) gives a significantly lower (higher) NLL for a; per_seed their diffs.
function P.compare(exp, ids_a, ids_b)
  local path = exp:path()
  local avg_a, avg_b, counts = {}, {}, nil
  local wins, losses, per_seed = 0, 0, {}
  for k = 1, #ids_a do
    local na, ca = windows(path, ids_a[k])
    local nb = windows(path, ids_b[k])
    counts = counts or ca
    for i = 1, #na do
      avg_a[i] = (avg_a[i] or 0) + na[i] / #ids_a
      avg_b[i] = (avg_b[i] or 0) + nb[i] / #ids_a
    end
    local c = cce.compare_runs(path, ids_a[k], ids_b[k]) -- a - b
    per_seed[k] = c.diff
    if c.significant and c.diff < 0 then wins = wins + 1 end
    if c.significant and c.diff > 0 then losses = losses + 1 end
  end
  local b = cce.bootstrap(avg_a, avg_b, { counts = counts }) -- a - b
  return { diff = b.diff, lo = b.ci_low, hi = b.ci_high, sig = b.significant, wins = wins,
           losses = losses, seeds = #ids_a, per_seed = per_seed }
end

-- "4.53 ± 0.02" (mean ± sd over seeds), digits after the point.
function P.pm(mean, sd, digits)
  digits = digits or 3
  if sd ~= sd or sd == 0 then return string.format("%." .. digits .. "f", mean) end
  return string.format("%." .. digits .. "f ± %." .. digits .. "f", mean, sd)
end

-- table(o, name, columns, rows, note): writes <out>/<name>.tex, .md and .tsv (cce.write_table)
-- and prints the Markdown.
function P.table(o, name, columns, rows, note)
  local base = o.out .. "/" .. name
  cce.write_table{ columns = columns, rows = rows, note = note, format = "latex",
                   out = base .. ".tex" }
  cce.write_table{ columns = columns, rows = rows, note = note, format = "tsv",
                   out = base .. ".tsv" }
  local md = cce.write_table{ columns = columns, rows = rows, note = note, format = "markdown",
                              out = base .. ".md" }
  print()
  print(md)
  print("table: " .. base .. ".tex")
  return base
end

-- figure(o, exp, kind [, opts]): exp:figure of the runs this script ran or skipped (runs the
-- file holds from other settings, e.g. an earlier version of a strategy, are filtered out); a
-- kind this build does not know, or a figure that cannot be drawn, prints "skipped: ..."
-- instead of failing the script.
function P.figure(o, exp, kind, opts)
  if not o.figure then return nil end
  -- draw only the runs of this script's settings
  local stale = stale_filter(exp)
  if stale then
    local f = {}
    for k, v in pairs(opts or {}) do f[k] = v end
    f.runs = f.runs and (f.runs .. "," .. stale) or stale
    opts = f
  end
  local ok, f = pcall(exp.figure, exp, kind, opts)
  if ok then
    print("figure: " .. (f.png or f.tsv))
    return f
  end
  print("skipped: figure " .. kind .. ": " .. tostring(f))
  return nil
end

-- A figure of the script's own data through a template of analysis/templates
-- (cce._figure), "skipped: ..." when it cannot be drawn.
function P.custom_figure(o, spec)
  if not o.figure then return nil end
  local ok, f = pcall(cce._figure, spec)
  if ok then
    print("figure: " .. (f.png or f.tsv))
    return f
  end
  print("skipped: figure " .. tostring(spec.out) .. ": " .. tostring(f))
  return nil
end

-- The data of analysis/templates/ppl_vs_ratio.gp (one block per series: strategy, x, ppl,
-- ppl_err, kl, kl_err, bits, top1, run, label, sig) from series = {{name =, points = {{x =,
-- ppl =, ppl_sd =, kl =, kl_sd =, bits =, top1 =, label =}, ...}}, ...}. xaxis names what x is:
-- "params" (the achieved fraction of block weight parameters removed), "bytes" or a parameter
-- name, which becomes the axis label.
function P.ratio_figure(o, name, series, caption, xaxis)
  local blocks, names = {}, {}
  for _, s in ipairs(series) do
    local lines = { s.name .. "\tbyte_ratio\tppl\tppl_stderr\tkl\tkl_stderr\tbits_per_weight\ttop1"
                    .. "\trun\tlabel\tdnll_vs_dense_sig" }
    table.sort(s.points, function(a, b) return a.x < b.x end)
    for _, p in ipairs(s.points) do
      lines[#lines + 1] = string.format("%s\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.3f\t%.6f\t-\t%s\t1",
                                        s.name, p.x, p.ppl, p.ppl_sd or 0, p.kl or 0,
                                        p.kl_sd or 0, p.bits or 32, p.top1 or 0,
                                        (p.label or s.name):gsub("%s", "_"))
    end
    blocks[#blocks + 1] = table.concat(lines, "\n")
    names[#names + 1] = s.name
  end
  local lo, hi = math.huge, 0
  for _, s in ipairs(series) do
    for _, p in ipairs(s.points) do lo, hi = math.min(lo, p.ppl), math.max(hi, p.ppl) end
  end
  return P.custom_figure(o, {
    template = "ppl_vs_ratio", out = o.out .. "/" .. name,
    data = table.concat(blocks, "\n\n\n") .. "\n", caption = caption,
    vars = { nblocks = #blocks, blocks = names, logy = (hi > 10 * lo) and 1 or 0, nsame = 0,
             xaxis = xaxis or "bytes" },
  })
end

return P
