-- Activation drift: the dense model and a few compressed variants (magnitude 50%, wanda 50%, rtn
-- 4 bits), each recorded with its activation statistics on three domains: the evaluation text
-- (in-domain, TinyStories) and two out-of-domain texts (Alice in Wonderland, Shakespeare), all
-- against the dense model on the same tokens. Prints, per variant, domain and layer, the cosine
-- similarity and relative L2 error to the dense activations and the shift of excess kurtosis, at
-- the block output (residual stream) and the FFN activation; then draws the activation figures.
--
--   cce run experiments/activation_drift.lua [out=DIR] [key=value ...]      (needs CCE_MIRROR)
--   cce run experiments/activation_drift.lua model=synth data=a.txt alice=b.txt \
--       shakespeare=c.txt                                                  (no mirror needed)
--
-- Writes DIR/activation_drift.h5 (every run with its "weights", "activations" and
-- "eval_windows" tables). Options (defaults below): model=, data= as in quickstart.lua; alice=,
-- shakespeare= manifest names or text files of the out-of-domain texts; domain_tokens= tokens of
-- each out-of-domain text used; the split, ctx (0: the protocol's default), max_tokens; bins=
-- histogram bins; figure=false to skip the figures. Rerunning skips the recorded runs.
local cce = require "cce"
local E = require "cce.experiment"

local o = E.options{
  out = "results", model = "stories260K", data = "tinystories_val", alice = "alice29",
  shakespeare = "tinyshakespeare", calib_tokens = 16384, test_tokens = 50000,
  domain_tokens = 50000, calib_window = 256, split_seed = 1, ctx = 0, max_tokens = 50000,
  seed = 42, bins = 64, figure = true,
}
local m, calib, test = E.setup(o)
local ctx = o.ctx > 0 and o.ctx or nil

-- The out-of-domain texts: the first domain_tokens tokens of each.
local function domain(name)
  local _, part = cce.dataset(name):split{ model = m, calib_tokens = 0,
                                           test_tokens = o.domain_tokens }
  return part
end
local domains = { alice = domain(o.alice), shakespeare = domain(o.shakespeare) }

local exp <close> = cce.experiment{ name = "activation_drift",
                                    out = o.out .. "/activation_drift.h5", seed = o.seed,
                                    model = m, domains = domains, stats = { bins = o.bins } }
local variants = {
  { strategy = "dense" },
  { strategy = "magnitude", ratio = 0.5 },
  { strategy = "wanda", ratio = 0.5 },
  { strategy = "rtn", bits = 4 },
}
local ids = {}
for i, fields in ipairs(variants) do
  fields.calib, fields.eval, fields.ctx, fields.max_tokens = calib, test, ctx, o.max_tokens
  local _, _, info = exp:run(fields)
  ids[i] = info.id
end

-- The drift table: one line per variant, domain, layer and site.
print()
print(string.format("%-22s  %-16s  %5s  %-9s  %9s  %9s  %10s", "variant", "domain", "layer",
                    "site", "cosine", "rel_l2", "dkurtosis"))
for i = 2, #variants do
  local v = variants[i]
  local label = v.strategy .. (v.ratio and (" ratio=" .. v.ratio) or "")
    .. (v.bits and (" bits=" .. v.bits) or "")
  local t <close> = cce.read_table(exp:path(), ids[i], "activations")
  for r = 1, #t do
    local row = t:row(r)
    print(string.format("%-22s  %-16s  %5d  %-9s  %9.6f  %9.6f  %10.4f", label, row.domain,
                        row.layer, row.site, row.cosine, row.rel_l2,
                        row.excess_kurtosis - row.ref_excess_kurtosis))
  end
end

-- The activation figures, when exp:figure draws them.
if o.figure then
  print()
  for _, name in ipairs{ "act_stats", "act_hist", "weight_dist" } do
    local ok, f = pcall(exp.figure, exp, name)
    if ok then
      print("figure: " .. (f.png or f.tsv))
    else
      print("note: figure " .. name .. " not drawn: " .. tostring(f))
    end
  end
end
print("results: " .. exp:path())
