-- A compression strategy written in Lua and used exactly like the built-in ones.
--
--   cce run experiments/custom_strategy.lua [out=DIR] [key=value ...]     (needs CCE_MIRROR)
--   cce run experiments/custom_strategy.lua synth data=FILE.txt           (a synthetic model)
--
-- "scaled_magnitude" removes, in every output row, the weights of smallest |w| * ||X_j||^alpha,
-- where ||X_j|| is the calibration norm of input feature j (ctx.stats): alpha = 0 is magnitude
-- pruning, alpha = 1 is Wanda, other values lie between or beyond. The per-layer twist is a plan
-- rule: `layers` is a function that prunes the first block less and the last block more
-- (ratio * (1 -+ spread), linear in between, so the mean over blocks stays at the ratio).
--
-- Writes DIR/custom_strategy.h5 (`cce results DIR/custom_strategy.h5`); rerunning skips the runs
-- already recorded (cce run --redo re-runs them; a run's key holds the strategy's name and
-- parameters, not its Lua code, so rename the strategy after changing apply). Options (defaults
-- below) as in quickstart.lua, plus ratio=, alphas= (a list) and spread=.
local cce = require "cce"
local E = require "cce.experiment"

local o = E.options{
  out = "results", model = "stories260K", data = "tinystories_val",
  calib_tokens = 16384, test_tokens = 50000, calib_window = 256, split_seed = 1,
  ctx = 0, max_tokens = 20000, seed = 42,
  ratio = 0.5, alphas = { 0, 0.5, 1, 2 }, spread = 0.4, figure = true,
}

cce.strategy{
  name = "scaled_magnitude",
  summary = "per-row pruning of the smallest |w| * ||X_j||^alpha (alpha 0: magnitude, 1: Wanda)",
  needs = { "calibration" },
  params = {
    { name = "ratio", type = "float", default = 0.5, min = 0, max = 1, max_open = true,
      help = "fraction of weights removed (the plan's global target)" },
    { name = "alpha", type = "float", default = 0.5, min = 0, max = 4,
      help = "exponent of the input norms in the score" },
  },
  apply = function(t, ctx)
    local score = t:abs()
    if ctx.params.alpha > 0 then
      if not ctx.stats then error("no calibration statistics for " .. ctx.name) end
      -- a [in] tensor multiplies every row; x^1 is x exactly, so alpha = 1 is Wanda's score
      score = score:mul(ctx.stats:pow(ctx.params.alpha))
    end
    local shape = t:shape()
    t:zero_where(score:topk_rows(cce.ratio_count(ctx.target, shape[#shape]), false))
  end,
}

local m, calib, test = E.setup(o)
local ctx = o.ctx > 0 and o.ctx or nil
local n_layers = m:info().n_layers

-- The per-layer twist: ratio * (1 - spread) on block 0 up to ratio * (1 + spread) on the last.
local function ramp(ratio, spread)
  return function(layer)
    if layer < 0 or n_layers < 2 then return nil end
    return ratio * (1 + spread * (2 * layer / (n_layers - 1) - 1))
  end
end

local exp <close> = cce.experiment{ name = "custom_strategy", out = o.out .. "/custom_strategy.h5",
                                    seed = o.seed, model = m }
local function run(fields)
  fields.calib, fields.eval, fields.ctx, fields.max_tokens = calib, test, ctx, o.max_tokens
  return exp:run(fields)
end

run{ strategy = "dense" }
local builtin = {
  [0] = run{ strategy = "magnitude", ratio = o.ratio },
  [1] = run{ strategy = "wanda", ratio = o.ratio },
}
local same = {}
for _, alpha in ipairs(o.alphas) do
  local r = run{ strategy = "scaled_magnitude", ratio = o.ratio, alpha = alpha }
  if builtin[alpha] then same[#same + 1] = { alpha, r.ppl == builtin[alpha].ppl } end
end
run{ strategy = "scaled_magnitude", ratio = o.ratio, alpha = o.alphas[2] or 0.5,
     layers = ramp(o.ratio, o.spread) }

print()
exp:summary()
-- alpha 0 and 1 are the built-in rules: same variants, so the same metrics
for _, s in ipairs(same) do
  print(string.format("scaled_magnitude alpha %g reproduces %s: %s", s[1],
                      s[1] == 0 and "magnitude" or "wanda", s[2] and "yes" or "NO"))
end
if o.figure then print("figure: " .. exp:figure("ppl_vs_ratio").png) end
print("results: " .. exp:path())
