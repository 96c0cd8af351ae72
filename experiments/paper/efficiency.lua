-- What compression buys in practice, all measured: for every variant, its parameters, the
-- bytes of its model file on disk, the peak resident memory of a fresh process that loads it
-- and runs it, and its evaluation (whole windows) and generation (KV-cache decoding) speed.
-- Each variant is compressed once (calibration seed = the first of seeds=), saved, recorded as
-- a run (perplexity and KL against the dense model) and measured by cce.bench_server (a small
-- process forked before any model work; each measurement runs in its own child, whose
-- ru_maxrss is the peak memory; lua/README.md).
--
--   cce run experiments/paper/efficiency.lua [out=DIR] [key=value ...]   (CCE_MIRROR)
--
-- Writes DIR/efficiency.h5, DIR/efficiency_model_*.h5 (the saved variants),
-- DIR/efficiency.{tex,md,tsv} and the figures DIR/efficiency_{ppl_vs_bits,ppl_vs_ratio}.*.
-- Options: the common ones of cce.paper plus ratio=, ratio2=, window_reps=, gen_tokens=,
-- gen_reps=, threads= (of the measuring child; default 1, which is the steadiest on a shared
-- machine and no slower for a model this small; 0: the OpenMP default). Speeds depend on the
-- machine and its load: the table gives the best of the reps.
local cce = require "cce"
local P = require "cce.paper"

local o = P.options("efficiency", { ratio = 0.2, ratio2 = 0.4, window_reps = 10,
                                    gen_tokens = 256, gen_reps = 20, threads = 1 })
-- the server first: this process is still small and single-threaded
local srv <close> = cce.bench_server()
if o.quick then o.window_reps, o.gen_tokens, o.gen_reps, o.ratio2 = 1, 32, 1, 0 end
local m, splits, test = P.setup(o)
local total = P.block_params(m)
local ffn = 0
for _, name in ipairs(m:info().tensors) do
  if name:match("^layers%.%d+%.mlp%.") then
    local s = m:tensor(name):shape()
    ffn = ffn + s[1] * s[2]
  end
end
local calib = splits[1].calib
local exp <close> = P.experiment(o, m, { stats = false })

local r = o.ratio
local pct = function(x) return string.format("%.0f%%", 100 * x) end
local variants = {
  { name = "dense", label = "dense", fields = { strategy = "dense" } },
  { name = "cce_" .. pct(r):sub(1, -2), label = "CCE " .. pct(r),
    fields = { strategy = "cce", ratio = r } },
  { name = "cce_rtn8", label = "CCE " .. pct(r) .. " + RTN 8-bit",
    fields = { steps = { { strategy = "cce", ratio = r }, { strategy = "rtn", bits = 8 } } } },
  { name = "structured", label = "magnitude structured " .. pct(r),
    fields = { strategy = "structured", ratio = r * total / ffn, unit = "ffn" } },
  { name = "shortgpt1", label = "ShortGPT 1 layer", fields = { strategy = "shortgpt", layers = 1 } },
  { name = "whitened_svd", label = "whitened SVD " .. pct(r),
    fields = { strategy = "lowrank", ratio = r, method = "whitened" } },
  { name = "wanda", label = "Wanda " .. pct(r) .. " (no dense speedup)",
    fields = { strategy = "wanda", ratio = r } },
  { name = "rtn8", label = "RTN 8-bit", fields = { strategy = "rtn", bits = 8 } },
  { name = "rtn4_g64", label = "RTN 4-bit g64", fields = { strategy = "rtn", bits = 4, group = 64 } },
}
if o.ratio2 > 0 then
  table.insert(variants, 3, { name = "cce_" .. pct(o.ratio2):sub(1, -2),
                              label = "CCE " .. pct(o.ratio2),
                              fields = { strategy = "cce", ratio = o.ratio2 } })
end
if P.has_strategy("flap") then
  table.insert(variants, 5, { name = "flap", label = "FLAP-style " .. pct(r),
                              fields = { strategy = "flap", ratio = r } })
else
  print("skipped: flap: this build has no strategy 'flap'")
end

local measured = {}
for _, v in ipairs(variants) do
  local _, _, info = P.run(exp, o, test, v.fields, calib)
  local path = o.out .. "/efficiency_model_" .. v.name .. ".h5"
  local mm = m
  if v.fields.strategy ~= "dense" then
    local opts = { calib = calib }
    for k, val in pairs(v.fields) do opts[k] = val end
    mm = m:compress(opts)
  end
  mm:save(path)
  if mm ~= m then mm:close() end
  local b = srv:measure{ model = path, window_reps = o.window_reps, gen_tokens = o.gen_tokens,
                         gen_reps = o.gen_reps, threads = o.threads }
  measured[#measured + 1] = { v = v, id = info.id, b = b }
  print(string.format("measured %-34s file %8.1f KiB  peak %7.2f MiB  eval %8.0f tok/s  gen "
                      .. "%7.0f tok/s", v.label, b.file_bytes / 1024, b.peak_rss_kb / 1024,
                      b.eval_tok_s, b.gen_tok_s))
end

-- Parameters from each run's per-tensor report (a low-rank pair counts its factors; a pruned
-- tensor its non-zero weights, though it is still stored and computed as a dense matrix).
local ach = P.achieved(exp, m)
local rows = {}
local dense = measured[1]
local dense_params = m:info().params
for _, x in ipairs(measured) do
  local b, run = x.b, ach[x.id]
  local removed = run.frac * total
  rows[#rows + 1] = { x.v.label, string.format("%.3f", run.run.metrics.ppl),
                      string.format("%.1f%%", 100 * run.frac),
                      string.format("%.0f", dense_params - removed),
                      string.format("%.1f", b.file_bytes / 1024),
                      string.format("%.2f", b.peak_rss_kb / 1024),
                      string.format("%.2f", b.model_rss_kb / 1024),
                      string.format("%.0f", b.eval_tok_s),
                      string.format("%.0f", b.gen_tok_s),
                      string.format("%.2f×", b.gen_tok_s / dense.b.gen_tok_s) }
end
P.table(o, o.name, { "variant", "ppl", "block weights removed", "params", "file (KiB)",
                     "peak RSS (MiB)", "RSS over baseline (MiB)", "eval tok/s", "gen tok/s",
                     "gen vs dense" }, rows,
        "block weights removed and params: from each run's per-tensor report (low-rank "
        .. "factors counted as stored; unstructured pruning counts its non-zero weights, but "
        .. "its tensors keep their shape and are computed densely); file: the saved model; peak RSS: "
        .. "ru_maxrss of a fresh child that loads the file and runs evaluation windows and "
        .. "generation, and its excess over the child's resident memory before loading; "
        .. string.format("speeds: best of %d evaluation windows and %d generation runs of %d "
                         .. "tokens, %d thread(s), on this machine under its load at the time",
                         o.window_reps, o.gen_reps, o.gen_tokens, o.threads))
P.figure(o, exp, "ppl_vs_bits")
P.figure(o, exp, "ppl_vs_ratio")
print("results: " .. exp:path())
