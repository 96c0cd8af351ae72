-- The experiment engine's own cost: a sweep of 30 variants of stories260K (pruning at 10-70%,
-- quantization, low rank), each compressed, evaluated on 50,000 tokens against the dense model
-- and recorded, then the time each run spent outside compression and evaluation (building its
-- key, checking the results file, recording the run durably, printing).
--
--   cce run experiments/bench_engine.lua [out=DIR] [key=value ...]     (needs CCE_MIRROR)
--   cmake --build build --target bench-engine                         (out = build/bench-engine)
--
-- Every run is executed (the experiment has redo = true), so rerunning measures again; start
-- from a fresh DIR to time recording into an empty file (the bench-engine target does). Targets:
-- overhead below 50 ms per run, the whole sweep below 2 minutes on 2 cores.
local cce = require "cce"
local E = require "cce.experiment"

local o = E.options{
  out = "results", model = "stories260K", data = "tinystories_val",
  calib_tokens = 16384, test_tokens = 50000, calib_window = 256, split_seed = 1,
  ctx = 0, max_tokens = 50000, seed = 42,
}
local m, calib, test = E.setup(o)
local ctx = o.ctx > 0 and o.ctx or nil

local variants = {}
for _, s in ipairs{ "magnitude", "wanda", "sparsegpt" } do
  for _, ratio in ipairs{ 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7 } do
    variants[#variants + 1] = { strategy = s, ratio = ratio }
  end
end
for _, bits in ipairs{ 8, 6, 4, 3 } do
  variants[#variants + 1] = { strategy = "rtn", bits = bits }
end
for _, bits in ipairs{ 4, 3 } do variants[#variants + 1] = { strategy = "gptq", bits = bits } end
for _, ratio in ipairs{ 0.1, 0.2, 0.3 } do
  variants[#variants + 1] = { strategy = "lowrank", ratio = ratio }
end

local exp <close> = cce.experiment{ name = "bench_engine", out = o.out .. "/bench_engine.h5",
                                    seed = o.seed, model = m, redo = true }
local overheads, compress, evaluate = {}, 0, 0
local t0 = cce._now()
for _, v in ipairs(variants) do
  v.calib, v.eval, v.ctx, v.max_tokens = calib, test, ctx, o.max_tokens
  local _, _, info = exp:run(v)
  overheads[#overheads + 1] = info.overhead_seconds
  compress = compress + info.compress_seconds
  evaluate = evaluate + info.eval_seconds
end
local wall = cce._now() - t0

table.sort(overheads)
local sum = 0
for _, x in ipairs(overheads) do sum = sum + x end
local n = #overheads
local mean, median, max = sum / n, overheads[(n + 1) // 2], overheads[n]
print()
print(string.format("bench-engine: %d variants of %s, %d evaluation tokens each", n, o.model,
                    o.max_tokens))
print(string.format("sweep        %7.1f s wall (compress %.1f s, evaluate %.1f s, engine %.2f s)"
                    .. "  target < 120 s: %s", wall, compress, evaluate, sum,
                    wall < 120 and "met" or "MISSED"))
print(string.format("engine/run   mean %.1f ms, median %.1f ms, max %.1f ms  target < 50 ms: %s",
                    1e3 * mean, 1e3 * median, 1e3 * max, max < 0.05 and "met" or "MISSED"))
print("results: " .. exp:path())
