-- Ratio sweep: every baseline pruning strategy at 10% to 70% of the weights removed, plus
-- round-to-nearest quantization at 8/6/4/3 bits and GPTQ at 4/3 bits, each evaluated against the
-- dense model and recorded in one results file (resumable: rerunning skips recorded runs).
--
--   cce run experiments/ratio_sweep.lua [out=DIR] [key=value ...]     (needs CCE_MIRROR)
--   cce run experiments/ratio_sweep.lua synth data=some.txt out=/tmp/x   (a synthetic model)
--
-- Writes DIR/ratio_sweep.h5 and DIR/ratio_sweep_ppl_vs_ratio.{tsv,gp,png,pdf}. Options as in
-- quickstart.lua, plus pruners=, ratios=, rtn_bits=, gptq_bits=, group= (quantization group
-- size, 0 per channel).
--
-- lowrank's ratio is the fraction of a matrix's parameters its factors save (DESIGN 5), and
-- structured removes whole FFN neurons and attention heads; both share the sweep's ratios.
local cce = require "cce"
local E = require "cce.experiment"

local o = E.options{
  out = "results", model = "stories260K", data = "tinystories_val",
  calib_tokens = 16384, test_tokens = 50000, calib_window = 256, split_seed = 1,
  ctx = 0, max_tokens = 50000, seed = 42,
  pruners = { "magnitude", "wanda", "sparsegpt", "lowrank", "structured" },
  ratios = { 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7 },
  rtn_bits = { 8, 6, 4, 3 }, gptq_bits = { 4, 3 }, group = 0, figure = true,
}
local m, calib, test = E.setup(o)
local ctx = o.ctx > 0 and o.ctx or nil

local exp <close> = cce.experiment{ name = "ratio_sweep", out = o.out .. "/ratio_sweep.h5",
                                    seed = o.seed, model = m }
local function run(fields)
  fields.calib, fields.eval, fields.ctx, fields.max_tokens = calib, test, ctx, o.max_tokens
  return exp:run(fields)
end
local group = o.group > 0 and o.group or nil

run{ strategy = "dense" }
for _, s in ipairs(o.pruners) do
  for _, ratio in ipairs(o.ratios) do run{ strategy = s, ratio = ratio } end
end
for _, bits in ipairs(o.rtn_bits) do run{ strategy = "rtn", bits = bits, group = group } end
for _, bits in ipairs(o.gptq_bits) do run{ strategy = "gptq", bits = bits, group = group } end

print()
exp:summary()
if o.figure then
  for _, name in ipairs{ "ppl_vs_ratio", "kl_vs_ratio", "ppl_vs_bits", "layer_ratio" } do
    print("figure: " .. exp:figure(name).png)
  end
end
print("results: " .. exp:path())
