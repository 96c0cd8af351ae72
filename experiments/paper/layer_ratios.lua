-- Does CCE compress the middle layers more? The per-layer fraction of block weight parameters
-- that CCE removes (its redundancy- and influence-driven allocation) at several global budgets
-- and calibration seeds, against the uniform allocation ablation, read from each run's
-- per-tensor report. Reported whichever way it comes out: the script prints, per budget, the
-- mean removal of the middle layers (all but the first and last) minus that of the outer two,
-- with its spread over seeds, and says whether the middle is compressed more in every seed.
--
--   cce run experiments/paper/layer_ratios.lua [out=DIR] [key=value ...]   (CCE_MIRROR)
--
-- Writes DIR/layer_ratios.h5, DIR/layer_ratios.{tex,md,tsv} (per budget and layer: planned
-- allocation inputs when the run reports them, achieved removal mean ± sd over seeds),
-- DIR/layer_ratios_middle.{tex,md,tsv} (the middle-minus-outer statistic) and the figures
-- DIR/layer_ratios_layer_ratio.* (bytes per layer of every run) and, when this build draws
-- them, the CCE report figures (cce_layer_ratio, cce_ev, cce_budget). Options: the common ones
-- of cce.paper plus ratios=.
local cce = require "cce"
local P = require "cce.paper"

local o = P.options("layer_ratios", { ratios = { 0.1, 0.2, 0.3, 0.4, 0.5 }, alpha_ratio = 0.2 })
if o.quick then o.ratios = { 0.2 } end
local m, splits, test = P.setup(o)
local n_layers = m:info().n_layers

local exp <close> = P.experiment(o, m, { stats = false })
P.run(exp, o, test, { strategy = "dense" })
local ids = {} -- ids[rho][k]
for _, rho in ipairs(o.ratios) do
  ids[rho] = {}
  for k, sp in ipairs(splits) do
    local _, _, run = P.run(exp, o, test, { strategy = "cce", ratio = rho }, sp.calib)
    ids[rho][k] = run.id
  end
  -- the uniform ablation, first seed only (its allocation is flat by construction)
  P.run(exp, o, test, { strategy = "cce", ratio = rho, allocation = "uniform" }, splits[1].calib)
end
-- Where the pattern comes from: redundancy only (alpha = 1) and block influence only (alpha = 0).
local alpha_ids = {}
for _, a in ipairs{ 1, 0 } do
  alpha_ids[a] = {}
  for k, sp in ipairs(splits) do
    local _, _, run = P.run(exp, o, test, { strategy = "cce", ratio = o.alpha_ratio, alpha = a },
                            sp.calib)
    alpha_ids[a][k] = run.id
  end
end

-- Per-layer CCE report values (R, BI, u, planned rho) from a run's cce_layers table when the
-- build records one, else from the notes of its per-tensor report ("rho 0.086/0.083 R0.33/0.55
-- BI0.223 u0.19").
local function layer_report(run)
  local out = {}
  if run.tables and run.tables.cce_layers then
    local ok, t = pcall(cce.read_table, exp:path(), run.id, "cce_layers")
    if ok then
      for i = 1, #t do
        local r = t:row(i)
        out[r.layer + 1] = { planned = r.rho_planned, u = r.u, bi = r.BI or r.bi,
                             r_ffn = r.R_ffn or r.r_ffn, r_attn = r.R_attn or r.r_attn }
      end
      t:close()
      return out, "cce_layers"
    end
  end
  for _, row in ipairs(run.layers or {}) do
    local note = row.note or ""
    local planned = note:match("rho ([%d%.]+)/")
    if planned and row.layer >= 0 and not out[row.layer + 1] then
      local rf, ra = note:match("R([%d%.]+)/([%d%.]+)")
      out[row.layer + 1] = { planned = tonumber(planned), u = tonumber(note:match("u([%-%d%.]+)")),
                             bi = tonumber(note:match("BI([%d%.]+)")), r_ffn = tonumber(rf),
                             r_attn = tonumber(ra) }
    end
  end
  return out, "notes"
end

local ach = P.achieved(exp, m)
local rows, mid_rows, bars = {}, {}, {}
local source = "-"
for _, rho in ipairs(o.ratios) do
  local per = {} -- per[l] = {achieved per seed}
  local rep = {}
  local mids = {}
  for k, id in ipairs(ids[rho]) do
    local a = ach[id]
    local r
    r, source = layer_report(a.run)
    for l = 1, n_layers do
      per[l] = per[l] or {}
      per[l][k] = a.layers[l]
      rep[l] = rep[l] or {}
      if r[l] then rep[l][k] = r[l] end
    end
    mids[k] = 0 / 0 -- no middle with fewer than 3 layers
    if n_layers >= 3 then
      local mid, outer = 0, (a.layers[1] + a.layers[n_layers]) / 2
      for l = 2, n_layers - 1 do mid = mid + a.layers[l] / (n_layers - 2) end
      mids[k] = mid - outer
    end
  end
  for l = 1, n_layers do
    local mean, sd = P.mean_sd(per[l])
    local function field(name)
      local v = {}
      for _, r in pairs(rep[l]) do
        if r[name] then v[#v + 1] = r[name] end
      end
      if #v == 0 then return "-" end
      local mu, s = P.mean_sd(v)
      return P.pm(mu, s, 3)
    end
    rows[#rows + 1] = { string.format("%.0f%%", 100 * rho), tostring(l - 1), field("r_ffn"),
                        field("r_attn"), field("bi"), field("u"), field("planned"),
                        P.pm(mean, sd, 3) }
    bars[#bars + 1] = { rho = rho, layer = l - 1, mean = mean, sd = sd }
  end
  local mm, ms = P.mean_sd(mids)
  local all_pos, all_neg = true, true
  for _, d in ipairs(mids) do
    all_pos = all_pos and d > 0
    all_neg = all_neg and d < 0
  end
  local verdict = all_pos and "middle compressed more (every seed)"
    or all_neg and "outer compressed more (every seed)" or "no consistent pattern"
  if n_layers < 3 then verdict = "n/a: fewer than 3 layers" end
  mid_rows[#mid_rows + 1] = { string.format("%.0f%%", 100 * rho), P.pm(mm, ms, 4),
                              string.format("%d", #mids), verdict }
  print(string.format("budget %.0f%%: middle - outer removal %+.4f ± %.4f over %d seeds: %s",
                      100 * rho, mm, ms, #mids, verdict))
end
local function middle(list)
  local mids = {}
  for k, id in ipairs(list) do
    local l = ach[id].layers
    mids[k] = 0 / 0
    if n_layers >= 3 then
      local mid = 0
      for i = 2, n_layers - 1 do mid = mid + l[i] / (n_layers - 2) end
      mids[k] = mid - (l[1] + l[n_layers]) / 2
    end
  end
  return P.mean_sd(mids)
end
for _, a in ipairs{ 1, 0 } do
  local mm, ms = middle(alpha_ids[a])
  mid_rows[#mid_rows + 1] = { string.format("%.0f%%, alpha = %d (%s only)", 100 * o.alpha_ratio, a,
                                            a == 1 and "redundancy" or "block influence"),
                              P.pm(mm, ms, 4), tostring(#alpha_ids[a]),
                              mm ~= mm and "n/a: fewer than 3 layers"
                                or mm > 0 and "middle compressed more (mean)"
                                or "outer compressed more (mean)" }
end
P.table(o, o.name, { "budget", "layer", "R_ffn", "R_attn", "BI", "u", "planned ρ_l",
                     "achieved ρ_l" }, rows,
        "CCE per layer, mean ± sd over calibration seeds; R, BI, u and the planned ratio from "
        .. "the strategy's report (" .. source .. "); achieved = fraction of the layer's block "
        .. "weight parameters removed")
P.table(o, o.name .. "_middle", { "budget", "middle - outer (mean ± sd)", "seeds", "reading" },
        mid_rows, "mean achieved removal of layers 1..L-2 minus that of layers 0 and L-1")

-- Figures: bytes per layer of every run; the CCE report figures when drawn by this build; and
-- the achieved per-layer removal (mean over seeds) as grouped bars.
P.figure(o, exp, "layer_ratio", { runs = "strategy=cce,alpha=0.5" })
local cce_ids = {}
for _, rho in ipairs(o.ratios) do cce_ids[#cce_ids + 1] = ids[rho][1] end
P.figure(o, exp, "cce_layer_ratio", { runs = "id=" .. table.concat(cce_ids, "|") })
-- one run: CCE at alpha_ratio (or the first budget), first seed
local one = (ids[o.alpha_ratio] or ids[o.ratios[1]])[1]
for _, kind in ipairs{ "cce_ev", "cce_budget" } do
  P.figure(o, exp, kind, { runs = "id=" .. one })
end
local header = { "layer" }
local blocks, shades = {}, {}
for i, rho in ipairs(o.ratios) do
  header[#header + 1] = string.format("cce_%.0f%%", 100 * rho)
  blocks[i], shades[i] = "cce", tostring(i - 1)
end
local lines = { table.concat(header, "\t") }
for l = 1, n_layers do
  local cells = { tostring(l - 1) }
  for _, b in ipairs(bars) do
    if b.layer == l - 1 then cells[#cells + 1] = string.format("%.6f", b.mean) end
  end
  lines[#lines + 1] = table.concat(cells, "\t")
end
P.custom_figure(o, { template = "layer_ratio", out = o.out .. "/" .. o.name .. "_achieved",
                     data = table.concat(lines, "\n") .. "\n",
                     caption = "stories260K, CCE: achieved fraction of each layer's block weight "
                       .. "parameters removed (mean over seeds), one bar per global budget",
                     vars = { nbars = #o.ratios, blocks = blocks, shades = shades,
                              nlayers = n_layers } })
print("results: " .. exp:path())
