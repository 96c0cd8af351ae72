-- CCE against the baselines at equal parameter budgets: every strategy removes the same
-- fraction of the BLOCK weight parameters (10-50%; norms, embeddings and the classifier are
-- outside the budget), on several calibration seeds, evaluated against the dense model.
--
--   cce run experiments/paper/cce_vs_baselines.lua [out=DIR] [key=value ...]   (CCE_MIRROR)
--   cce run experiments/paper/cce_vs_baselines.lua quick=true out=/tmp/p        (a smoke run)
--
-- Compared: CCE; magnitude structured pruning of FFN neurons (its ratio is a fraction of the
-- neurons, so it is asked for budget / FFN share of the block weights); FLAP-style structured
-- pruning (the `flap` strategy, when this build has it); ShortGPT layer removal (whole blocks:
-- the nearest achievable budget); Wanda and magnitude unstructured pruning (no dense speedup:
-- the zeros stay in dense matrices); plain and activation-whitened SVD; the CCE ablations
-- (allocation = uniform, fold = false, lowrank = false). Strategies that use calibration run
-- once per seed in seeds=; the others once. Every run's ACHIEVED block fraction is read from
-- its per-tensor report and is the x axis of the figures.
--
-- Writes DIR/cce_vs_baselines.h5, DIR/cce_vs_baselines.{tex,md,tsv} (per strategy and budget:
-- achieved budget, perplexity and KL as mean ± sd over seeds, ΔNLL against CCE with its paired
-- bootstrap interval over the evaluation windows of the seed-averaged NLL, † when it excludes
-- 0, and the seeds whose own bootstrap is significant), DIR/cce_vs_baselines_claims.{tex,md,tsv}
-- and the figures DIR/cce_vs_baselines_{ppl_vs_budget,ppl_vs_ratio,kl_vs_ratio,layer_ratio}.*.
-- Options: the common ones of cce.paper (model, data, calib_tokens, test_tokens, max_tokens,
-- ctx, seed, seeds, quick, figure) plus ratios= and claim_ratio= (the budget of the claims).
local cce = require "cce"
local P = require "cce.paper"

local o = P.options("cce_vs_baselines", { ratios = { 0.1, 0.2, 0.3, 0.4, 0.5 }, claim_ratio = 0.2 })
if o.quick then o.ratios = { o.claim_ratio } end
local m, splits, test = P.setup(o)
local info = m:info()
local total, per_layer = P.block_params(m)
-- the FFN's share of the block weights (gate, up, down of every layer)
local ffn = 0
for _, name in ipairs(info.tensors) do
  if name:match("^layers%.%d+%.mlp%.") then
    local s = m:tensor(name):shape()
    ffn = ffn + s[1] * s[2]
  end
end
local ffn_share = ffn / total

local exp <close> = P.experiment(o, m, { stats = false })
local dense = P.run(exp, o, test, { strategy = "dense" })

-- The compared strategies: name, label, whether it uses calibration, fields(rho) (nil: skip).
local variants = {
  { name = "cce", calib = true, f = function(r) return { strategy = "cce", ratio = r } end },
  { name = "cce_uniform", label = "CCE, uniform allocation", calib = true,
    f = function(r) return { strategy = "cce", ratio = r, allocation = "uniform" } end },
  { name = "cce_nofold", label = "CCE, no folding", calib = true,
    f = function(r) return { strategy = "cce", ratio = r, fold = false } end },
  { name = "cce_nolowrank", label = "CCE, no low rank", calib = true,
    f = function(r) return r <= 0.7 * ffn_share and { strategy = "cce", ratio = r, lowrank = false } or nil end },
  { name = "structured", label = "magnitude structured (FFN neurons)", calib = false,
    f = function(r) return { strategy = "structured", ratio = r / ffn_share, unit = "ffn" } end },
  { name = "flap", label = "FLAP-style structured", calib = true,
    f = function(r) return { strategy = "flap", ratio = r } end, needs = "flap" },
  { name = "shortgpt", label = "ShortGPT (whole layers)", calib = true,
    f = function(r)
      local k = math.max(1, math.floor(r * info.n_layers + 0.5))
      if k >= info.n_layers then return nil end
      return { strategy = "shortgpt", layers = k }
    end },
  { name = "wanda", label = "Wanda (no dense speedup)", calib = true,
    f = function(r) return { strategy = "wanda", ratio = r } end },
  { name = "magnitude", label = "magnitude unstructured (no dense speedup)", calib = false,
    f = function(r) return { strategy = "magnitude", ratio = r } end },
  { name = "svd", label = "plain SVD", calib = false,
    f = function(r) return { strategy = "lowrank", ratio = r, method = "svd" } end },
  { name = "whitened_svd", label = "whitened SVD", calib = true,
    f = function(r) return { strategy = "lowrank", ratio = r, method = "whitened" } end },
}

-- ids[name][rho] = {run id per seed} (a calibration-free strategy repeats its one run)
local ids = {}
for _, v in ipairs(variants) do
  ids[v.name] = {}
  if v.needs and not P.has_strategy(v.needs) then
    print("skipped: " .. v.name .. ": this build has no strategy '" .. v.needs .. "'")
  else
    for _, rho in ipairs(o.ratios) do
      local fields = v.f(rho)
      if fields then
        local list = {}
        for k, sp in ipairs(splits) do
          if v.calib or k == 1 then
            local _, _, run = P.run(exp, o, test, fields, sp.calib)
            list[k] = run.id
          else
            list[k] = list[1]
          end
        end
        ids[v.name][rho] = list
      end
    end
  end
end

-- Aggregates over seeds.
local ach = P.achieved(exp, m)
local function agg(list)
  local ppl, kl, fr, top1 = {}, {}, {}, {}
  local seen = {}
  for k, id in ipairs(list) do
    local a = ach[id]
    ppl[k], kl[k], fr[k], top1[k] = a.run.metrics.ppl, a.run.metrics.kl, a.frac, a.run.metrics.top1
    seen[id] = true
  end
  local n = 0
  for _ in pairs(seen) do n = n + 1 end
  local pm, ps = P.mean_sd(ppl)
  local km, ks = P.mean_sd(kl)
  local fm = P.mean_sd(fr)
  local tm = P.mean_sd(top1)
  if n == 1 then ps, ks = 0, 0 end
  return { ppl = pm, ppl_sd = ps, kl = km, kl_sd = ks, frac = fm, top1 = tm, distinct = n }
end

local rows, series = {}, {}
for _, v in ipairs(variants) do
  -- figure series are named after the strategy where it has a style of its own
  local s = { name = v.name == "svd" and "lowrank" or v.name, points = {} }
  for _, rho in ipairs(o.ratios) do
    local list = ids[v.name][rho]
    if list then
      local a = agg(list)
      s.points[#s.points + 1] = { x = a.frac, ppl = a.ppl, ppl_sd = a.ppl_sd, kl = a.kl,
                                  kl_sd = a.kl_sd, top1 = a.top1 }
      local vs, wins = "(reference)", ""
      if v.name ~= "cce" and ids.cce[rho] then
        local c = P.compare(exp, list, ids.cce[rho])
        vs = { text = string.format("%+.4f [%+.4f, %+.4f]", c.diff, c.lo, c.hi), dagger = c.sig }
        wins = string.format("%d/%d", c.losses, c.seeds)
      end
      rows[#rows + 1] = { v.label or "CCE", string.format("%.0f%%", 100 * rho),
                          string.format("%.1f%%", 100 * a.frac),
                          P.pm(a.ppl, a.ppl_sd, 3), P.pm(a.kl, a.kl_sd, 4),
                          string.format("%.1f%%", 100 * a.top1), vs, wins }
    end
  end
  if #s.points > 0 then series[#series + 1] = s end
end
P.table(o, o.name, { "strategy", "budget", "achieved", "ppl", "KL", "top-1",
                     "ΔNLL vs CCE [95% CI]", "seeds CCE sig. better" }, rows,
        string.format("%s on %s: %d evaluation tokens; mean ± sd over %d calibration seeds "
                      .. "(calibration-free strategies: one run); budget = fraction of block "
                      .. "weight parameters removed, achieved as measured; ΔNLL = strategy - CCE "
                      .. "in nats/token, paired bootstrap over windows of the seed-averaged NLL; "
                      .. "† the interval excludes 0. Dense ppl %.3f.",
                      info.source or o.model, o.data, o.max_tokens, #splits, dense.ppl))

-- The claims at claim_ratio.
local rho = o.claim_ratio
local claims = {}
local function claim(text, a, b)
  if not (ids[a][rho] and ids[b][rho]) then
    print("skipped: claim '" .. text .. "': no runs")
    return
  end
  local c = P.compare(exp, ids[a][rho], ids[b][rho])
  local pa, pb = agg(ids[a][rho]), agg(ids[b][rho])
  local holds = c.sig and c.diff < 0
  claims[#claims + 1] = { text, string.format("%.1f%% / %.1f%%", 100 * pa.frac, 100 * pb.frac),
                          P.pm(pa.ppl, pa.ppl_sd, 3), P.pm(pb.ppl, pb.ppl_sd, 3),
                          { text = string.format("%+.4f [%+.4f, %+.4f]", c.diff, c.lo, c.hi),
                            dagger = c.sig },
                          string.format("%d/%d", c.wins, c.seeds), holds and "holds" or "does not hold" }
  print(string.format("claim %-40s %s (ΔNLL %+.4f [%+.4f, %+.4f], %d/%d seeds)", text,
                      holds and "HOLDS" or "DOES NOT HOLD", c.diff, c.lo, c.hi, c.wins, c.seeds))
end
claim("CCE beats magnitude structured", "cce", "structured")
claim("CCE (fold) beats CCE without folding", "cce", "cce_nofold")
claim("CCE beats uniform allocation", "cce", "cce_uniform")
claim("CCE beats CCE without low rank", "cce", "cce_nolowrank")
claim("CCE beats FLAP-style", "cce", "flap")
claim("CCE beats ShortGPT", "cce", "shortgpt")
claim("CCE beats whitened SVD", "cce", "whitened_svd")
claim("CCE beats Wanda (unstructured)", "cce", "wanda")
P.table(o, o.name .. "_claims", { "claim", "achieved A / B", "ppl A", "ppl B",
                                  "ΔNLL A - B [95% CI]", "seeds A sig. better", "verdict" },
        claims, string.format("at a budget of %.0f%% of the block weights; a claim holds when "
                              .. "the paired bootstrap interval of the seed-averaged ΔNLL lies "
                              .. "below 0 (†)", 100 * rho))

-- Figures.
P.ratio_figure(o, o.name .. "_ppl_vs_budget", series,
               "stories260K: perplexity (mean ± sd over seeds) against the ACHIEVED fraction of "
               .. "block weight parameters removed (x axis)", "params")
for _, kind in ipairs{ "ppl_vs_ratio", "kl_vs_ratio", "layer_ratio" } do
  P.figure(o, exp, kind)
end
P.figure(o, exp, "cce_layer_ratio", { runs = "id=" .. table.concat(ids.cce[o.claim_ratio] or {}, "|") })
print("results: " .. exp:path())
