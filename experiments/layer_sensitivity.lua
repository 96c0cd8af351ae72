-- Layer sensitivity: compress one block at a time, then one tensor type at a time (q, k, v, o,
-- gate, up, down across all blocks), leaving every other tensor dense, and measure how much each
-- costs against the dense model. The tensors left alone are skip rules, so the recorded plan
-- shows them as skipped and the same script works for pruners (ratio=) and quantizers (bits=).
--
--   cce run experiments/layer_sensitivity.lua [out=DIR] [key=value ...]   (needs CCE_MIRROR)
--   cce run experiments/layer_sensitivity.lua strategy=rtn bits=3
--
-- Writes DIR/layer_sensitivity.h5. Options as in quickstart.lua, plus strategy=, ratio=, bits=
-- (used when the strategy takes bits), by= layer,type (which sweeps to run).
local cce = require "cce"
local E = require "cce.experiment"

local o = E.options{
  out = "results", model = "stories260K", data = "tinystories_val",
  calib_tokens = 16384, test_tokens = 50000, calib_window = 256, split_seed = 1,
  ctx = 0, max_tokens = 50000, seed = 42,
  strategy = "magnitude", ratio = 0.5, bits = 3, by = { "layer", "type" }, figure = true,
}
local m, calib, test = E.setup(o)
local ctx = o.ctx > 0 and o.ctx or nil
local target = { strategy = o.strategy }
if cce.strategies()[o.strategy] == nil then error("unknown strategy '" .. o.strategy .. "'") end
for _, p in ipairs(cce.strategies()[o.strategy].params) do
  if p.name == "ratio" then target.ratio = o.ratio end
  if p.name == "bits" then target.bits = o.bits end
end

-- The 2-D block tensors (what a plan can compress), with their layer and type.
local info = m:info()
local tensors, types, type_seen = {}, {}, {}
for _, name in ipairs(info.tensors) do
  local layer, kind = name:match("^layers%.(%d+)%.[%w_]+%.([%w_]+)%.weight$")
  if layer and not kind:match("norm") then
    tensors[#tensors + 1] = { name = name, layer = tonumber(layer), kind = kind }
    if not type_seen[kind] then
      type_seen[kind] = true
      types[#types + 1] = kind
    end
  end
end

local exp <close> = cce.experiment{ name = "layer_sensitivity",
                                    out = o.out .. "/layer_sensitivity.h5", seed = o.seed,
                                    model = m }
-- Runs the target on the tensors keep(t) selects; every other block tensor is skipped.
local function run_on(keep)
  local fields = { calib = calib, eval = test, ctx = ctx, max_tokens = o.max_tokens, skip = {} }
  for k, v in pairs(target) do fields[k] = v end
  for _, t in ipairs(tensors) do
    if not keep(t) then fields.skip[#fields.skip + 1] = t.name end
  end
  return exp:run(fields)
end

local rows = {}
local dense = exp:run{ strategy = "dense", eval = test, ctx = ctx, max_tokens = o.max_tokens }
for _, by in ipairs(o.by) do
  if by == "layer" then
    for l = 0, info.n_layers - 1 do
      rows[#rows + 1] = { "layer " .. l, run_on(function(t) return t.layer == l end) }
    end
  elseif by == "type" then
    for _, kind in ipairs(types) do
      rows[#rows + 1] = { kind, run_on(function(t) return t.kind == kind end) }
    end
  else
    error("by=" .. by .. ": layer or type expected")
  end
end

print()
print(string.format("%s %s on one part at a time (dense ppl %.4f)", o.strategy,
                    target.ratio and ("ratio " .. target.ratio) or ("bits " .. target.bits),
                    dense.ppl))
print(string.format("%-12s  %10s  %10s  %9s", "part", "ppl", "d ppl", "kl"))
for _, row in ipairs(rows) do
  local r = row[2]
  print(string.format("%-12s  %10.4f  %+10.4f  %9.6f", row[1], r.ppl, r.ppl - dense.ppl, r.kl))
end
-- The layer x ratio heatmap of every one-layer run recorded in this file (run the script at
-- several ratio= values into one out= folder to fill the ratio axis).
if o.figure then print("figure: " .. exp:figure("sensitivity_heatmap").png) end
print("results: " .. exp:path())
