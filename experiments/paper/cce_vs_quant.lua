-- CCE against quantization at equal bytes: round-to-nearest (RTN) and GPTQ at 8 and 4 bits
-- (per channel and with groups of 64 and 128 weights), CCE alone at several budgets, and CCE
-- followed by 8-bit RTN, all on one axis: the bytes of the block weights as encoded (scales,
-- zeros, masks and low-rank factors counted; byte_ratio = 1 - encoded / float32 bytes) and
-- bits per weight. Strategies that use calibration (GPTQ, CCE) run on several seeds. Each
-- quantizer is compared with the CCE variant nearest in bytes, alone and followed by RTN 8-bit,
-- by the paired bootstrap (†: the interval of the seed-averaged ΔNLL excludes 0).
--
--   cce run experiments/paper/cce_vs_quant.lua [out=DIR] [key=value ...]   (CCE_MIRROR)
--
-- Writes DIR/cce_vs_quant.h5, DIR/cce_vs_quant.{tex,md,tsv} (every variant: bytes, bits per
-- weight, perplexity and KL as mean ± sd over seeds), DIR/cce_vs_quant_pairs.{tex,md,tsv} (each
-- quantizer against the CCE variant nearest in bytes) and the figures
-- DIR/cce_vs_quant_{ppl_vs_bits,ppl_vs_ratio}.*. Options: the common ones of cce.paper plus
-- cce_ratios= (CCE alone), cce_q_ratios= (CCE then RTN 8-bit), bits=, groups= (0: per channel).
local cce = require "cce"
local P = require "cce.paper"

local o = P.options("cce_vs_quant", {
  cce_ratios = { 0.2, 0.4, 0.6, 0.75, 0.875 }, cce_q_ratios = { 0.1, 0.2, 0.3, 0.5 },
  bits = { 8, 4 }, groups = { 0, 64, 128 },
})
if o.quick then
  o.cce_ratios, o.cce_q_ratios, o.bits, o.groups = { 0.75 }, { 0.2 }, { 8, 4 }, { 0 }
end
local m, splits, test = P.setup(o)
local exp <close> = P.experiment(o, m, { stats = false })
local dense = P.run(exp, o, test, { strategy = "dense" })

-- variants: {label =, calib =, fields =} ; ids[label] = {run id per seed}
local variants = {}
for _, b in ipairs(o.bits) do
  for _, g in ipairs(o.groups) do
    local suffix = g > 0 and string.format(" g%d", g) or " per channel"
    variants[#variants + 1] = { label = string.format("RTN %d-bit%s", b, suffix), kind = "quant",
                                calib = false,
                                fields = { strategy = "rtn", bits = b, group = g > 0 and g or nil } }
    variants[#variants + 1] = { label = string.format("GPTQ %d-bit%s", b, suffix),
                                kind = "quant", calib = true,
                                fields = { strategy = "gptq", bits = b, group = g > 0 and g or nil } }
  end
end
for _, r in ipairs(o.cce_ratios) do
  variants[#variants + 1] = { label = string.format("CCE %.1f%%", 100 * r), kind = "cce",
                              calib = true, fields = { strategy = "cce", ratio = r } }
end
for _, r in ipairs(o.cce_q_ratios) do
  variants[#variants + 1] = { label = string.format("CCE %.1f%% + RTN 8-bit", 100 * r),
                              kind = "cce_q", calib = true,
                              fields = { steps = { { strategy = "cce", ratio = r },
                                                   { strategy = "rtn", bits = 8 } } } }
end

local ids = {}
for _, v in ipairs(variants) do
  ids[v.label] = {}
  for k, sp in ipairs(splits) do
    if v.calib or k == 1 then
      local _, _, run = P.run(exp, o, test, v.fields, sp.calib)
      ids[v.label][k] = run.id
    else
      ids[v.label][k] = ids[v.label][1]
    end
  end
end

local by_id = {}
for _, r in ipairs(cce.results(exp:path())) do by_id[r.id] = r end
local function agg(list)
  local f = { ppl = {}, kl = {}, byte_ratio = {}, bits_per_weight = {} }
  for k, id in ipairs(list) do
    for name, arr in pairs(f) do arr[k] = by_id[id].metrics[name] end
  end
  local a = {}
  for name, arr in pairs(f) do a[name], a[name .. "_sd"] = P.mean_sd(arr) end
  return a
end

local rows = {}
local aggs = {}
for _, v in ipairs(variants) do
  local a = agg(ids[v.label])
  aggs[v.label] = a
  rows[#rows + 1] = { v.label, string.format("%.1f%%", 100 * a.byte_ratio),
                      string.format("%.2f", a.bits_per_weight), P.pm(a.ppl, a.ppl_sd, 3),
                      P.pm(a.kl, a.kl_sd, 4) }
end
P.table(o, o.name, { "variant", "bytes saved", "bits/weight", "ppl", "KL" }, rows,
        string.format("block weights as encoded (byte_ratio = 1 - bytes / float32 bytes); mean ± "
                      .. "sd over %d calibration seeds (RTN: one run). Dense ppl %.3f.", #splits,
                      dense.ppl))

-- Each quantizer against the CCE variant nearest in bytes, of CCE alone and of CCE + RTN 8-bit.
local pairs_rows = {}
for _, q in ipairs(variants) do
  if q.kind == "quant" then
    for _, kind in ipairs{ "cce", "cce_q" } do
      local best, bd = nil, math.huge
      for _, c in ipairs(variants) do
        if c.kind == kind then
          local d = math.abs(aggs[c.label].byte_ratio - aggs[q.label].byte_ratio)
          if d < bd then best, bd = c, d end
        end
      end
      if best then
        local cmp = P.compare(exp, ids[best.label], ids[q.label])
        pairs_rows[#pairs_rows + 1] = {
          q.label, best.label,
          string.format("%.1f%% / %.1f%%", 100 * aggs[q.label].byte_ratio,
                        100 * aggs[best.label].byte_ratio),
          P.pm(aggs[q.label].ppl, aggs[q.label].ppl_sd, 3),
          P.pm(aggs[best.label].ppl, aggs[best.label].ppl_sd, 3),
          { text = string.format("%+.4f [%+.4f, %+.4f]", cmp.diff, cmp.lo, cmp.hi),
            dagger = cmp.sig },
        }
      end
    end
  end
end
P.table(o, o.name .. "_pairs", { "quantizer", "nearest CCE variant", "bytes saved Q / CCE",
                                 "ppl Q", "ppl CCE", "ΔNLL CCE - Q [95% CI]" }, pairs_rows,
        "negative ΔNLL: the CCE variant is better; † the paired bootstrap interval of the "
        .. "seed-averaged ΔNLL excludes 0; the byte ratios are not exactly equal (see the bytes "
        .. "column)")

P.figure(o, exp, "ppl_vs_bits")
P.figure(o, exp, "ppl_vs_ratio")
print("results: " .. exp:path())
