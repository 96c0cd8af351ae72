-- Quickstart: the default model (stories260K) compressed by a few strategies at a few ratios and
-- bit widths, each evaluated against the dense model on TinyStories and recorded in a results
-- file; then a table of the runs and the figure of perplexity against compression.
--
--   cce run experiments/quickstart.lua [out=DIR] [key=value ...]      (needs CCE_MIRROR)
--   cmake --build build --target quickstart                          (out = build/quickstart)
--
-- Writes DIR/quickstart.h5 (the runs; `cce results DIR/quickstart.h5`) and
-- DIR/quickstart_ppl_vs_ratio.{tsv,gp,png,pdf}. Rerunning skips the runs already recorded
-- (cce run --redo re-runs them). Options (defaults below): model= a manifest name, a .h5 file or
-- synth[:PRESET]; data= a manifest name or a text file; the split (calib_tokens, test_tokens,
-- calib_window, split_seed); evaluation ctx (0: the protocol's default) and max_tokens; the
-- strategies and their targets; figure=false to skip the figure.
local cce = require "cce"
local E = require "cce.experiment"

local o = E.options{
  out = "results", model = "stories260K", data = "tinystories_val",
  calib_tokens = 16384, test_tokens = 50000, calib_window = 256, split_seed = 1,
  ctx = 0, max_tokens = 50000, seed = 42,
  pruners = { "magnitude", "wanda" }, ratios = { 0.3, 0.5 },
  quantizer = "rtn", bits = { 8, 4 }, figure = true,
}
local m, calib, test = E.setup(o)
local ctx = o.ctx > 0 and o.ctx or nil

local exp <close> = cce.experiment{ name = "quickstart", out = o.out .. "/quickstart.h5",
                                    seed = o.seed, model = m }
local function run(fields)
  fields.calib, fields.eval, fields.ctx, fields.max_tokens = calib, test, ctx, o.max_tokens
  return exp:run(fields)
end

run{ strategy = "dense" }
for _, s in ipairs(o.pruners) do
  for _, ratio in ipairs(o.ratios) do run{ strategy = s, ratio = ratio } end
end
for _, bits in ipairs(o.bits) do run{ strategy = o.quantizer, bits = bits } end

print()
exp:summary()
if o.figure then
  print()
  for _, name in ipairs{ "ppl_vs_ratio", "kl_vs_ratio", "ppl_vs_bits" } do
    local f = exp:figure(name)
    print("figure: " .. f.png .. ", " .. f.pdf .. " (data " .. f.tsv .. ", script " .. f.gp .. ")")
  end
end
print("results: " .. exp:path())
