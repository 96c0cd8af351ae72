-- How CCE depends on its calibration and its constants, at one budget (ratio=, default 20% of
-- the block weight parameters): calibration size (1k-64k tokens), calibration domain
-- (TinyStories, Shakespeare, Alice in Wonderland; always evaluated on the TinyStories test
-- part), and eps / alpha / spread (one at a time, the others at their defaults), each on several
-- calibration seeds. A setting "differs" from the default when the paired bootstrap of the
-- seed-averaged per-window NLL excludes 0 (†).
--
--   cce run experiments/paper/sensitivity.lua [out=DIR] [key=value ...]   (CCE_MIRROR)
--
-- Writes DIR/sensitivity.h5, DIR/sensitivity.{tex,md,tsv} and the figures
-- DIR/sensitivity_{calib_tokens,eps,alpha,spread}.* (perplexity, mean ± sd over seeds, against
-- the setting). Options: the common ones of cce.paper plus ratio=, calib_sizes=, domains=
-- (manifest names or text files; the first is the evaluation text's own), eps_values=,
-- alpha_values=, spread_values=.
local cce = require "cce"
local P = require "cce.paper"

local o = P.options("sensitivity", {
  ratio = 0.2, calib_sizes = { 1024, 4096, 16384, 65536 },
  domains = { "tinystories_val", "tinyshakespeare", "alice29" },
  eps_values = { 0.01, 0.05, 0.1, 0.2 }, alpha_values = { 0, 0.25, 0.5, 0.75, 1 },
  spread_values = { 0, 0.05, 0.1, 0.2, 0.3 },
})
if o.quick then
  o.calib_sizes = { 1024, 4096 }
  o.eps_values, o.alpha_values, o.spread_values = { 0.05, 0.2 }, { 0, 0.5 }, { 0.1, 0.3 }
end
local m, splits, test = P.setup(o)
local exp <close> = P.experiment(o, m, { stats = false })
local dense = P.run(exp, o, test, { strategy = "dense" })
local has_windows = P.has_param("cce", "calib_windows")

-- CCE's own calibration size parameters follow the calibration part it is given.
local function cce_fields(extra, tokens)
  local f = { strategy = "cce", ratio = o.ratio }
  if has_windows then
    f.calib_windows = math.max(1, tokens // o.calib_window)
    f.calib_len = o.calib_window
  end
  for k, v in pairs(extra or {}) do f[k] = v end
  return f
end

-- runs(label, extra, calib_of_seed(k, seed), tokens) -> {ids}
local function runs(extra, calib_of, tokens)
  local ids = {}
  for k, sp in ipairs(splits) do
    local _, _, run = P.run(exp, o, test, cce_fields(extra, tokens), calib_of(k, sp))
    ids[k] = run.id
  end
  return ids
end
local default = runs(nil, function(_, sp) return sp.calib end, o.calib_tokens)

local results = cce.results(exp:path())
local by_id = {}
for _, r in ipairs(results) do by_id[r.id] = r end
local rows, groups = {}, {}
local function row(group, setting, x, ids)
  results = cce.results(exp:path())
  for _, r in ipairs(results) do by_id[r.id] = r end
  local ppl = {}
  for k, id in ipairs(ids) do ppl[k] = by_id[id].metrics.ppl end
  local mean, sd = P.mean_sd(ppl)
  local c = P.compare(exp, ids, default)
  local same = ids[1] == default[1]
  rows[#rows + 1] = { group, setting, P.pm(mean, sd, 3),
                      same and "(default)" or { text = string.format("%+.4f [%+.4f, %+.4f]",
                                                                    c.diff, c.lo, c.hi),
                                                 dagger = c.sig } }
  groups[group] = groups[group] or { name = group, points = {} }
  if x then
    local pts = groups[group].points
    pts[#pts + 1] = { x = x, ppl = mean, ppl_sd = sd, label = setting }
  end
end

-- Calibration size.
for _, n in ipairs(o.calib_sizes) do
  local ids
  if n == o.calib_tokens then
    ids = default
  else
    local ds = cce.dataset(o.data)
    ids = runs(nil, function(_, sp)
      return ds:split{ model = m, calib_tokens = n, test_tokens = o.test_tokens,
                       calib_window = o.calib_window, seed = sp.seed }
    end, n)
  end
  row("calib_tokens", tostring(n), n, ids)
end

-- Calibration domain (evaluation stays on the test part of o.data).
for i, d in ipairs(o.domains) do
  local ids
  if i == 1 and d == o.data then
    ids = default
  else
    local ok, ds = pcall(cce.dataset, d)
    if not ok then
      print("skipped: calibration domain " .. d .. ": " .. tostring(ds))
    else
      ids = runs(nil, function(_, sp)
        return ds:split{ model = m, calib_tokens = o.calib_tokens, test_tokens = 1000,
                         calib_window = o.calib_window, seed = sp.seed }
      end, o.calib_tokens)
    end
  end
  if ids then row("calib_domain", d, nil, ids) end
end

-- The constants.
for _, p in ipairs{ { "eps", o.eps_values }, { "alpha", o.alpha_values },
                    { "spread", o.spread_values } } do
  for _, v in ipairs(p[2]) do
    local ids = runs({ [p[1]] = v }, function(_, sp) return sp.calib end, o.calib_tokens)
    row(p[1], tostring(v), v, ids)
  end
end

P.table(o, o.name, { "parameter", "setting", "ppl", "ΔNLL vs default [95% CI]" }, rows,
        string.format("CCE at %.0f%% of the block weight parameters; mean ± sd over %d "
                      .. "calibration seeds; evaluated on the %s test part (%d tokens); ΔNLL = "
                      .. "setting - default (%d calibration tokens of %s, eps 0.05, alpha 0.5, "
                      .. "spread 0.1) in nats/token; † the paired bootstrap interval excludes 0. "
                      .. "Dense ppl %.3f.", 100 * o.ratio, #splits, o.data, o.max_tokens,
                      o.calib_tokens, o.data, dense.ppl))
for _, g in ipairs{ "calib_tokens", "eps", "alpha", "spread" } do
  if groups[g] then
    P.ratio_figure(o, o.name .. "_" .. g, { { name = "cce", points = groups[g].points } },
                   string.format("stories260K, CCE at %.0f%%: perplexity (mean ± sd over seeds) "
                                 .. "against %s (x axis)", 100 * o.ratio, g), g)
  end
end
print("results: " .. exp:path())
