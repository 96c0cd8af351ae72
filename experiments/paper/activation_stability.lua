-- Do activations stay close to the dense model's? The dense model, CCE and the baselines at one
-- budget (ratio=, default 20% of the block weight parameters; CCE also at ratio2=), each
-- recorded with its activation statistics against the dense model on the same tokens of three
-- texts: the evaluation text (in-domain, TinyStories) and two out-of-domain texts (Alice in
-- Wonderland, Shakespeare). Per variant and domain the script reports, averaged over layers, the
-- cosine similarity and relative L2 error of the block outputs (residual stream) and FFN
-- activations to the dense ones and the histogram KL, as mean ± sd over calibration seeds.
-- These are descriptive statistics (no per-window test); the perplexity claims are in
-- cce_vs_baselines.
--
--   cce run experiments/paper/activation_stability.lua [out=DIR] [key=value ...]  (CCE_MIRROR)
--
-- Writes DIR/activation_stability.h5, DIR/activation_stability.{tex,md,tsv} and the figures
-- DIR/activation_stability_{act_stats,act_hist}.* (and act_stats per site). Options: the common
-- ones of cce.paper plus ratio=, ratio2=, alice=, shakespeare=, domain_tokens=, bins=.
local cce = require "cce"
local P = require "cce.paper"

local o = P.options("activation_stability", {
  ratio = 0.2, ratio2 = 0.4, alice = "alice29", shakespeare = "tinyshakespeare",
  domain_tokens = 20000, bins = 64, max_tokens = 20000, test_tokens = 20000,
})
if o.quick then o.ratio2 = 0 end
local m, splits, test = P.setup(o)
local total = P.block_params(m)
local ffn = 0
for _, name in ipairs(m:info().tensors) do
  if name:match("^layers%.%d+%.mlp%.") then
    local s = m:tensor(name):shape()
    ffn = ffn + s[1] * s[2]
  end
end
local function domain(name)
  local _, part = cce.dataset(name):split{ model = m, calib_tokens = 0,
                                           test_tokens = o.domain_tokens }
  return part
end
local exp <close> = P.experiment(o, m, {
  domains = { alice = domain(o.alice), shakespeare = domain(o.shakespeare) },
  stats = { bins = o.bins } })

local r = o.ratio
local variants = {
  { label = "dense", calib = false, fields = { strategy = "dense" } },
  { label = string.format("CCE %.0f%%", 100 * r), calib = true,
    fields = { strategy = "cce", ratio = r } },
  { label = string.format("CCE no folding %.0f%%", 100 * r), calib = true,
    fields = { strategy = "cce", ratio = r, fold = false } },
  { label = string.format("magnitude structured %.0f%%", 100 * r), calib = false,
    fields = { strategy = "structured", ratio = r * total / ffn, unit = "ffn" } },
  { label = "ShortGPT 1 layer", calib = true, fields = { strategy = "shortgpt", layers = 1 } },
  { label = string.format("whitened SVD %.0f%%", 100 * r), calib = true,
    fields = { strategy = "lowrank", ratio = r, method = "whitened" } },
  { label = string.format("Wanda %.0f%% (no dense speedup)", 100 * r), calib = true,
    fields = { strategy = "wanda", ratio = r } },
  { label = string.format("magnitude %.0f%% (no dense speedup)", 100 * r), calib = false,
    fields = { strategy = "magnitude", ratio = r } },
}
if P.has_strategy("flap") then
  table.insert(variants, 4, { label = string.format("FLAP-style %.0f%%", 100 * r), calib = true,
                              fields = { strategy = "flap", ratio = r } })
else
  print("skipped: flap: this build has no strategy 'flap'")
end
if o.ratio2 > 0 then
  table.insert(variants, 3, { label = string.format("CCE %.0f%%", 100 * o.ratio2), calib = true,
                              fields = { strategy = "cce", ratio = o.ratio2 } })
end

local ids = {}
for _, v in ipairs(variants) do
  ids[v.label] = {}
  for k, sp in ipairs(splits) do
    if v.calib or k == 1 then
      local _, _, run = P.run(exp, o, test, v.fields, sp.calib)
      ids[v.label][#ids[v.label] + 1] = run.id
    end
  end
end

-- Per run: {domain -> {site -> {cosine, rel_l2, hist_kl}}} averaged over layers.
local function summary(id)
  local t <close> = cce.read_table(exp:path(), id, "activations")
  local acc = {}
  for i = 1, #t do
    local row = t:row(i)
    local d = acc[row.domain] or {}
    acc[row.domain] = d
    local s = d[row.site] or { cosine = {}, rel_l2 = {}, hist_kl = {} }
    d[row.site] = s
    -- NaN (a resized FFN has no neuron-by-neuron counterpart in the dense model) is left out
    for _, f in ipairs{ "cosine", "rel_l2", "hist_kl" } do
      local x = row[f]
      if f == "hist_kl" and x == nil then x = row.kl end
      if x and x == x then s[f][#s[f] + 1] = x end
    end
  end
  for _, d in pairs(acc) do
    for _, s in pairs(d) do
      for _, f in ipairs{ "cosine", "rel_l2", "hist_kl" } do
        s[f] = #s[f] > 0 and P.mean_sd(s[f]) or 0 / 0
      end
    end
  end
  return acc
end

local rows = {}
local domains = {}
for _, v in ipairs(variants) do
  if v.label ~= "dense" then
    local per = {}
    for k, id in ipairs(ids[v.label]) do per[k] = summary(id) end
    local dnames = {}
    for d in pairs(per[1]) do dnames[#dnames + 1] = d end
    table.sort(dnames)
    for _, d in ipairs(dnames) do
      domains[d] = true
      local sites = {}
      for s in pairs(per[1][d]) do sites[#sites + 1] = s end
      table.sort(sites)
      for _, s in ipairs(sites) do
        local cos, l2, kl = {}, {}, {}
        for k = 1, #per do
          cos[k], l2[k], kl[k] = per[k][d][s].cosine, per[k][d][s].rel_l2, per[k][d][s].hist_kl
        end
        local cm, cs = P.mean_sd(cos)
        local lm, ls = P.mean_sd(l2)
        local km, ks = P.mean_sd(kl)
        local function cell(mu, sd)
          return mu == mu and P.pm(mu, sd, 4) or "n/a (resized)"
        end
        rows[#rows + 1] = { v.label, d, s, cell(cm, cs), cell(lm, ls), cell(km, ks) }
      end
    end
  end
end
P.table(o, o.name, { "variant", "domain", "site", "cosine", "rel. L2", "hist. KL" }, rows,
        string.format("averaged over layers, against the dense model on the same tokens (%d per "
                      .. "domain); mean ± sd over %d calibration seeds for the strategies that "
                      .. "use calibration; descriptive, no significance test", o.domain_tokens,
                      #splits))
P.figure(o, exp, "act_stats")
P.figure(o, exp, "act_stats", { site = "ffn_act", out = o.out .. "/" .. o.name .. "_act_stats_ffn" })
for d in pairs(domains) do
  P.figure(o, exp, "act_hist", { domain = d, out = o.out .. "/" .. o.name .. "_act_hist_" .. d,
                                 runs = "id=" .. ids[variants[2].label][1] })
end
print("results: " .. exp:path())
