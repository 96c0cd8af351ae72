-- cce.experiment: a set of runs recorded in one results file (lua/README.md, "Experiments").
--
--   local exp <close> = cce.experiment{name = "sweep", out = "results/sweep.h5", seed = 42,
--                                      model = m}
--   local r, skipped, info = exp:run{strategy = "wanda", ratio = 0.5, calib = calib, eval = test}
--
-- A run's key is the canonical JSON (cce._json) of everything that defines it: the steps with
-- every parameter (defaults filled in by the strategy's schema), the layer rules with their
-- functions expanded into numbers, the calibration and evaluation data (dataset sha256, part,
-- tokens, seed, tokenizer), the evaluation protocol (ctx, max_tokens), the digest of the
-- model's weights (cce._model_identity) and the experiment seed. A key already
-- in the results file is skipped unless cce.options.redo. The run's seed is
-- cce._run_seed(experiment seed, key), handed to every step whose strategy has a `seed`
-- parameter the run does not set, so a resumed sweep equals an uninterrupted one.
local _, cce = ...

-- Fields of exp:run that are not strategy parameters.
local RUN_FIELDS = {
  strategy = true, steps = true, calib = true, eval = true, ctx = true, max_tokens = true,
  model = true, calib_ctx = true, use_cache = true, output_error = true, stats = true,
  domains = true, tasks = true,
}
-- Plan fields (per step or for every step); `layers` with a number or string value is a
-- parameter (shortgpt's).
local PLAN_FIELDS = { layers = true, skip = true, unskip = true, rules = true }
local EXPERIMENT_FIELDS = {
  name = true, out = true, seed = true, model = true, redo = true, stats = true, domains = true,
  tasks = true,
}
-- Statistics options (stats = {...}) and their defaults (framework/astats.h, wstats.h).
local STATS_DEFAULTS = { bins = 64, range_std = 8, outlier_std = 6, kl_alpha = 0.5 }
local BOOTSTRAP_RESAMPLES = 1000
local DEFAULT_CTX_CAP = 512 -- the protocol's default ctx cap (framework/eval.h)

local function fail(fmt, ...)
  error(string.format(fmt, ...), 2)
end

local function is_plan_field(k, v)
  return PLAN_FIELDS[k] and not (k == "layers" and (type(v) == "number" or type(v) == "string"))
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

local function show_value(v)
  if math.type(v) == "float" then return string.format("%.4g", v) end
  return tostring(v)
end

-- "wanda ratio=0.5" from a step's given parameters, with "[layers]" etc. when it has plan rules.
local function describe_step(name, given, plan)
  local parts = { name }
  for _, k in ipairs(sorted_keys(given)) do
    parts[#parts + 1] = k .. "=" .. show_value(given[k])
  end
  if plan and next(plan) then
    parts[#parts + 1] = "[" .. table.concat(sorted_keys(plan), ",") .. "]"
  end
  return table.concat(parts, " ")
end

-- One step of a run: {name =, given = {params as given}, plan = {layers =, skip =, ...}}.
local function read_step(t, where, allow_run_fields)
  if type(t) ~= "table" then fail("exp:run: %s: a table expected, got %s", where, type(t)) end
  local name = t.strategy
  if type(name) ~= "string" then
    fail("exp:run: %sfield 'strategy': string expected, got %s",
         where == "" and "" or where .. ": ", type(name))
  end
  local step = { name = name, given = {}, plan = {} }
  for k, v in pairs(t) do
    if type(k) ~= "string" then
      fail("exp:run: %s: a key of type %s (fields are named)", name, type(k))
    elseif k == "strategy" then
      -- the name
    elseif RUN_FIELDS[k] then
      if not allow_run_fields then
        fail("exp:run: %s: field '%s' belongs to the run, not to a step", where, k)
      end
    elseif is_plan_field(k, v) then
      step.plan[k] = v
    else
      step.given[k] = v
    end
  end
  return step
end

-- The model's identity and the facts a run needs, computed once per model object.
local model_facts = setmetatable({}, { __mode = "k" })
local function facts_of(m, where)
  if getmetatable(m) ~= "cce.model" then
    fail("%s: field 'model': a model expected (cce.model, cce.load, cce.synth), got %s", where,
         type(m))
  end
  local f = model_facts[m]
  if not f then
    local name, sha, weights = cce._model_identity(m)
    f = { name = name, sha256 = sha, weights = weights, seq_len = m:info().seq_len }
    model_facts[m] = f
  end
  return f
end


-- ---- Statistics, tasks and significance -------------------------------------------------------

-- The statistics options of a run: false (none) or every option with its default filled in.
local function stats_options(v, where)
  if v == nil or v == true then v = {} end
  if v == false then return false end
  if type(v) ~= "table" then
    fail("%s: field 'stats': a table, true or false expected, got %s", where, type(v))
  end
  local o = {}
  for k, val in pairs(v) do
    if STATS_DEFAULTS[k] == nil then
      fail("%s: field 'stats': unknown option '%s' (options: %s)", where, tostring(k),
           table.concat(sorted_keys(STATS_DEFAULTS), ", "))
    end
    if type(val) ~= "number" then
      fail("%s: field 'stats': option '%s': number expected, got %s", where, k, type(val))
    end
    o[k] = val
  end
  for k, d in pairs(STATS_DEFAULTS) do
    if o[k] == nil then o[k] = d end
  end
  if math.type(o.bins) ~= "integer" then
    local b = math.tointeger(o.bins)
    if b == nil then fail("%s: field 'stats': bins = %s is not an integer", where, o.bins) end
    o.bins = b
  end
  return o
end

-- A domain name ([A-Za-z0-9_.+-]+) from a dataset name or path: its file name, other characters
-- replaced by '_'.
local function domain_name(name)
  local base = tostring(name):match("([^/]*)$")
  base = base:gsub("%.txt$", ""):gsub("[^%w_%.%+%-]", "_")
  if base == "" then base = "data" end
  return base
end

-- The extra domains {name = tokens | dataset} as a sorted array of {name =, data =}.
local function read_domains(v, where)
  if v == nil then return {} end
  if type(v) ~= "table" then
    fail("%s: field 'domains': a table {name = tokens or dataset} expected, got %s", where, type(v))
  end
  local out = {}
  for _, k in ipairs(sorted_keys(v)) do
    if type(k) ~= "string" or not k:match("^[%w_%.%+%-]+$") then
      fail("%s: field 'domains': '%s' is not a domain name (letters, digits, '_', '.', '+', '-')",
           where, tostring(k))
    end
    local d = v[k]
    local mt = getmetatable(d)
    if mt ~= "cce.tokens" and mt ~= "cce.dataset" then
      fail("%s: field 'domains': domain '%s': cce.tokens or cce.dataset expected, got %s", where,
           k, type(d))
    end
    out[#out + 1] = { name = k, data = d }
  end
  return out
end

-- The name T of a task (metrics T_acc, ..., table task_T): "cloze", or a JSONL file's name.
local function task_name(task)
  if task == "cloze" then return "cloze" end
  local base = tostring(task):match("([^/]*)$"):gsub("%.jsonl$", ""):gsub("%.json$", "")
  base = base:gsub("[^%w_]", "_")
  if base == "" then base = "task" end
  return base
end

-- The tasks of a run as an array of {name =, spec = (m:task's fields), id = (identity)}; the
-- identities are cached per experiment (building a task reads its text).
local function read_tasks(self, v, where)
  if v == nil then return {} end
  if type(v) ~= "table" then
    fail("%s: field 'tasks': an array of task names, JSONL files or tables expected, got %s",
         where, type(v))
  end
  local out, seen = {}, {}
  for i, t in ipairs(v) do
    local spec, name = {}, nil
    if type(t) == "string" then
      spec.task = t
    elseif type(t) == "table" then
      for k, val in pairs(t) do
        if k == "name" then name = val
        elseif k == "task" or k == "data" or k == "items" or k == "choices" or k == "seed" then
          spec[k] = val
        else
          fail("%s: tasks[%d]: unknown field '%s' (fields: choices, data, items, name, seed, task)",
               where, i, tostring(k))
        end
      end
    else
      fail("%s: tasks[%d]: a task name, a JSONL file or a table expected, got %s", where, i,
           type(t))
    end
    if type(spec.task) ~= "string" then
      fail("%s: tasks[%d]: field 'task': 'cloze' or a JSONL file expected", where, i)
    end
    name = name or task_name(spec.task)
    if type(name) ~= "string" or not name:match("^[%w_]+$") then
      fail("%s: tasks[%d]: name '%s': letters, digits and '_' expected", where, i, tostring(name))
    end
    if seen[name] then fail("%s: two tasks named '%s' (give one a name =)", where, name) end
    seen[name] = true
    local data = spec.data
    local data_key = getmetatable(data) == "cce.dataset" and data:info().sha256 or data
    local cache_key = cce._json({ spec.task, data_key or "", spec.items or 0,
                                  spec.choices or 0, spec.seed or 1 })
    local id = self.task_ids[cache_key]
    if not id then
      id = cce._task_identity(spec)
      self.task_ids[cache_key] = id
    end
    out[#out + 1] = { name = name, spec = spec, id = id,
                      key = { name = name, recipe = id.recipe, sha256 = id.sha256,
                              items = id.items, seed = spec.seed or 1 } }
  end
  return out
end

-- The activation reference of (model, domain, data, protocol, options), made once per experiment.
local function reference_of(self, m, facts, domain, data, ctx, max_tokens, st)
  local k = cce._json({ model = facts.weights, domain = domain, data = cce._data_identity(data),
                        ctx = ctx, max_tokens = max_tokens, stats = st })
  local ref = self.refs[k]
  if not ref then
    ref = cce.activation_reference(m, data, domain, {
      ctx = ctx, max_tokens = max_tokens, bins = st.bins, range_std = st.range_std,
      outlier_std = st.outlier_std, kl_alpha = st.kl_alpha })
    self.refs[k] = ref
  end
  return ref
end

-- The recorded dense runs of this experiment: {id =, key =, protocol =, model_sha256 =,
-- tables = {name = rows}, loaded = {name = cce.table}}, read from the file once.
local function dense_runs(self)
  if not self.dense then
    self.dense = {}
    for _, run in ipairs(cce.results(self.out)) do
      if run.experiment == self.name and run.strategy == "dense" then
        self.dense[#self.dense + 1] = { id = run.id, key = run.key, protocol = run.protocol,
                                        model_sha256 = run.model_sha256, tables = run.tables or {},
                                        loaded = {} }
      end
    end
  end
  return self.dense
end

-- The latest recorded dense run of this experiment on the same windows (protocol line) of the
-- same model, or nil.
local function dense_for(self, protocol, model_sha256)
  local runs = dense_runs(self)
  for i = #runs, 1, -1 do
    local d = runs[i]
    if d.protocol == protocol and d.model_sha256 == model_sha256 and d.tables.eval_windows then
      return d
    end
  end
  return nil
end

-- Table `name` of a recorded dense run (read once).
local function dense_table(self, d, name)
  if not d.tables[name] then return nil end
  local t = d.loaded[name]
  if not t then
    t = cce.read_table(self.out, d.id, name)
    d.loaded[name] = t
  end
  return t
end

-- Records the bootstrap interval b under prefix in metrics.
local function put_interval(metrics, prefix, b)
  metrics[prefix] = b.diff
  metrics[prefix .. "_lo"] = b.ci_low
  metrics[prefix .. "_hi"] = b.ci_high
  metrics[prefix .. "_sig"] = b.significant and 1 or 0
end

local Experiment = {}

-- exp:run{...} -> metrics, skipped, info
function Experiment:run(spec)
  local t0 = cce._now()
  if type(spec) ~= "table" then
    fail("bad argument #1 to 'exp:run' (table expected, got %s)", type(spec))
  end
  local m = spec.model or self.model
  if m == nil then
    fail("exp:run: no model: give model = m here or in cce.experiment{...}")
  end
  local facts = facts_of(m, "exp:run")
  if spec.eval == nil then
    fail("exp:run: eval is required: the test part of ds:split{...} (or a dataset)")
  end

  -- The steps.
  local steps, top_plan = {}, {}
  local dense = spec.strategy == "dense"
  if spec.steps ~= nil then
    if spec.strategy ~= nil then fail("exp:run: give either strategy = or steps =, not both") end
    if type(spec.steps) ~= "table" or #spec.steps == 0 then
      fail("exp:run: field 'steps': an array of step tables expected")
    end
    for k, v in pairs(spec) do
      if type(k) ~= "string" or not (RUN_FIELDS[k] or PLAN_FIELDS[k]) then
        fail("exp:run: field '%s' is not allowed beside steps=: give strategies and parameters "
             .. "inside each step", tostring(k))
      elseif PLAN_FIELDS[k] then
        top_plan[k] = v
      end
    end
    for i, t in ipairs(spec.steps) do
      local step = read_step(t, string.format("steps[%d]", i), false)
      if step.name == "dense" then fail("exp:run: steps[%d]: dense cannot be a step", i) end
      steps[i] = step
    end
  elseif dense then
    for k in pairs(spec) do
      if not RUN_FIELDS[k] then
        fail("exp:run: dense takes no parameters or layer rules (got field '%s')", tostring(k))
      end
    end
  else
    steps[1] = read_step(spec, "", true)
  end

  -- Parameters with defaults, layer functions expanded: the data of the key.
  local key_steps, labels = {}, {}
  for i, step in ipairs(steps) do
    step.params = cce._params(step.name, step.given)
    -- a `seed` the run does not set comes from the run seed, itself a function of the key
    if step.given.seed == nil and cce._strategy_seed(step.name, 0) ~= nil then
      step.params.seed = "run seed"
    end
    if step.plan.layers ~= nil then step.plan.layers = cce._expand_layers(m, step.plan.layers) end
    key_steps[i] = { strategy = step.name, params = step.params, plan = step.plan }
    labels[i] = describe_step(step.name, step.given, step.plan)
  end
  if top_plan.layers ~= nil then top_plan.layers = cce._expand_layers(m, top_plan.layers) end
  local strategy = dense and "dense" or nil
  if not dense then
    local names = {}
    for i, step in ipairs(steps) do names[i] = step.name end
    strategy = table.concat(names, "+")
  end
  local label = dense and "dense" or table.concat(labels, " + ")
  if next(top_plan) then
    label = label .. " [" .. table.concat(sorted_keys(top_plan), ",") .. "]"
  end

  local eval_id = cce._data_identity(spec.eval)
  if eval_id.part == "calib" then
    fail("exp:run: eval is the calibration part of a split: give the test part")
  end
  if spec.calib ~= nil and cce._data_identity(spec.calib).part ~= "calib" then
    fail("exp:run: calib is not the calibration part of a split")
  end
  local ctx = spec.ctx
  if ctx == nil then ctx = math.min(facts.seq_len, DEFAULT_CTX_CAP) end
  local max_tokens = spec.max_tokens or 0
  local stats_given = spec.stats
  if stats_given == nil then stats_given = self.stats end
  local st = stats_options(stats_given, "exp:run")
  local domains = st and read_domains(spec.domains or self.domains, "exp:run") or {}
  local tasks = read_tasks(self, spec.tasks or self.tasks, "exp:run")
  local key = {
    format = 1,
    model = facts.weights,
    experiment_seed = self.seed,
    strategy = strategy,
    eval = { data = eval_id, ctx = ctx, max_tokens = max_tokens },
  }
  if st then
    local stats_key = {}
    for k, val in pairs(st) do stats_key[k] = val end
    if #domains > 0 then
      stats_key.domains = {}
      for _, d in ipairs(domains) do stats_key.domains[d.name] = cce._data_identity(d.data) end
    end
    key.stats = stats_key
  else
    key.stats = false
  end
  if #tasks > 0 then
    key.tasks = {}
    for i, t in ipairs(tasks) do key.tasks[i] = t.key end
  end
  if not dense then
    key.steps = key_steps
    key.plan = top_plan
    if spec.calib ~= nil then key.calib = cce._data_identity(spec.calib) end
    key.calib_ctx = spec.calib_ctx
    key.output_error = spec.output_error
  end
  local key_text = cce._json(key)

  -- Resume.
  local writer = self.writer
  if not (cce.options.redo or self.redo) then
    local run = writer:has(key_text) and writer:get(key_text)
    if run then
      print(string.format("skip %s (recorded %s)", label, run.id))
      local r = {}
      for k, v in pairs(run.metrics) do r[k] = v end
      r.protocol = run.protocol
      self.rows[#self.rows + 1] = { id = run.id, label = label, metrics = r, skipped = true }
      return r, true, { id = run.id, key = key_text, seed = run.seed, skipped = true }
    end
  end

  -- Compress.
  local run_seed = cce._run_seed(self.seed, key_text)
  local v, comp, tc = m, nil, 0
  if not dense then
    local opts = {
      calib = spec.calib, ctx = spec.calib_ctx, use_cache = spec.use_cache,
      output_error = spec.output_error,
    }
    for k, val in pairs(top_plan) do opts[k] = val end
    local function step_table(step)
      local t = { strategy = step.name }
      for k, val in pairs(step.given) do t[k] = val end
      for k, val in pairs(step.plan) do t[k] = val end
      if step.given.seed == nil then t.seed = cce._strategy_seed(step.name, run_seed) end
      return t
    end
    if spec.steps ~= nil then
      opts.steps = {}
      for i, step in ipairs(steps) do opts.steps[i] = step_table(step) end
    else
      for k, val in pairs(step_table(steps[1])) do opts[k] = val end
    end
    local c0 = cce._now()
    v = m:compress(opts)
    tc = cce._now() - c0
    comp = v:compression()
  end

  -- Evaluate against the base (with the activation statistics of the eval data when stats are
  -- on: cce.record_activations returns exactly v:eval's metrics) and keep the windows' NLLs.
  local tables = {}
  -- the strategies' own per-layer tables (v:compression().tables: cce_layers, cce_ev, ...)
  for _, t in ipairs(comp and comp.tables or {}) do tables[#tables + 1] = t end
  local e0 = cce._now()
  local r, windows, acts
  if st then
    local ref = reference_of(self, m, facts, domain_name(eval_id.dataset), spec.eval, ctx,
                             max_tokens, st)
    acts = cce.activation_table(st.bins)
    r, windows = cce.record_activations{ model = v, dense = m, reference = ref, data = spec.eval,
                                         table = acts, windows = true }
  else
    r, windows = v:eval{ data = spec.eval, ctx = ctx, max_tokens = spec.max_tokens,
                         ref = dense and m or nil, windows = true }
  end
  local te = cce._now() - e0

  -- Statistics: the other domains' activations and the weights.
  local s0 = cce._now()
  if st then
    for _, d in ipairs(domains) do
      local ref = reference_of(self, m, facts, d.name, d.data, ctx, max_tokens, st)
      cce.record_activations{ model = v, dense = m, reference = ref, data = d.data, table = acts }
    end
    tables[#tables + 1] = cce.weight_stats(m, v, { bins = st.bins })
    tables[#tables + 1] = acts
  end
  tables[#tables + 1] = windows
  local ts = cce._now() - s0

  -- Record (durable before returning).
  local metrics = {}
  for k, val in pairs(r) do
    if type(val) == "number" and k ~= "seconds" and k ~= "tokens_per_s" then
      metrics[k] = val
    end
  end
  if comp then
    local s = comp.summary
    metrics.byte_ratio = s.byte_ratio
    metrics.bits_per_weight = s.bits_per_weight
    metrics.model_byte_ratio = s.model.byte_ratio
    metrics.model_bits_per_weight = s.model.bits_per_weight
  else
    metrics.byte_ratio, metrics.bits_per_weight = 0, 32
    metrics.model_byte_ratio, metrics.model_bits_per_weight = 0, 32
  end

  -- Tasks.
  local t0_tasks = cce._now()
  local task_tables = {}
  for _, t in ipairs(tasks) do
    local opts = { ctx = ctx, table = "task_" .. t.name }
    for k, val in pairs(t.spec) do opts[k] = val end
    local tr, tt = v:task(opts)
    local T = t.name
    metrics[T .. "_acc"] = tr.acc
    metrics[T .. "_acc_stderr"] = tr.acc_stderr
    metrics[T .. "_acc_norm"] = tr.acc_norm
    metrics[T .. "_acc_norm_stderr"] = tr.acc_norm_stderr
    metrics[T .. "_items"] = tr.items
    metrics[T .. "_chance"] = tr.chance
    tables[#tables + 1] = tt
    task_tables[T] = tt
  end
  local tt_seconds = cce._now() - t0_tasks

  -- Significance against the dense run of this experiment on the same windows (a dense run
  -- against itself: 0, not significant).
  local boot = { resamples = BOOTSTRAP_RESAMPLES, seed = run_seed }
  local d = not dense and dense_for(self, r.protocol, facts.sha256) or nil
  if dense or d then
    local other = dense and windows or dense_table(self, d, "eval_windows")
    put_interval(metrics, "dnll_vs_dense", cce.bootstrap_tables(windows, other, boot))
    for _, t in ipairs(tasks) do
      local mine = task_tables[t.name]
      local theirs = mine
      if not dense then
        theirs = nil
        local id_json = cce._json(t.key)
        if d.key:find(id_json, 1, true) then theirs = dense_table(self, d, "task_" .. t.name) end
      end
      if theirs then
        put_interval(metrics, t.name .. "_dacc_vs_dense", cce.bootstrap_tables(mine, theirs, boot))
      end
    end
  end
  local seconds = cce._now() - t0
  local id = writer:add{
    key = key_text,
    experiment = self.name,
    strategy = strategy,
    params = comp and comp.params or "[]",
    plan = comp and comp.plan or "{}",
    seed = run_seed,
    protocol = r.protocol,
    model = facts.name,
    model_sha256 = facts.sha256,
    dataset = eval_id.dataset,
    dataset_sha256 = eval_id.sha256,
    seconds = seconds,
    metrics = metrics,
    layers = comp and comp.layers or nil,
    tables = tables,
  }
  if dense then
    -- this run is now the experiment's dense run on these windows (replacing a redone one)
    local runs = dense_runs(self)
    for i = #runs, 1, -1 do
      if runs[i].key == key_text then table.remove(runs, i) end
    end
    local entry = { id = id, key = key_text, protocol = r.protocol, model_sha256 = facts.sha256,
                    tables = {}, loaded = {} }
    for _, t in ipairs(tables) do
      entry.tables[t:name()] = #t
      entry.loaded[t:name()] = t
    end
    runs[#runs + 1] = entry
  end
  if v ~= m then v:close() end
  self.n_runs = self.n_runs + 1
  local total = cce._now() - t0
  print(string.format("run %s  %-28s ppl %10.4f  kl %9.6f  %7.2f s", id, label, r.ppl,
                      r.kl or 0, total))
  local out = {}
  for k, val in pairs(metrics) do out[k] = val end
  out.protocol = r.protocol
  self.rows[#self.rows + 1] = { id = id, label = label, metrics = out, skipped = false }
  return out, false, {
    id = id, key = key_text, seed = run_seed, skipped = false, seconds = total,
    compress_seconds = tc, eval_seconds = te, stats_seconds = ts, task_seconds = tt_seconds,
    overhead_seconds = total - tc - te - ts - tt_seconds,
  }
end

function Experiment:results()
  return cce.results(self.out)
end

function Experiment:info()
  return { name = self.name, out = self.out, seed = self.seed, runs = self.n_runs,
           model = self.model and facts_of(self.model, "exp:info").name or nil }
end

function Experiment:path()
  return self.out
end

-- exp:summary(): prints this script's runs (run or skipped) as a table; returns the rows.
function Experiment:summary()
  local width = 8
  for _, row in ipairs(self.rows) do width = math.max(width, #row.label) end
  print(string.format("%-8s  %-" .. width .. "s  %10s  %8s  %10s  %9s  %7s", "run", "variant",
                      "compressed", "bits/w", "ppl", "kl", "top1"))
  for _, row in ipairs(self.rows) do
    local mt = row.metrics
    print(string.format("%-8s  %-" .. width .. "s  %9.1f%%  %8.3f  %10.4f  %9.6f  %6.2f%%", row.id,
                        row.label, 100 * (mt.byte_ratio or 0), mt.bits_per_weight or 0,
                        mt.ppl or 0 / 0, mt.kl or 0, 100 * (mt.top1 or 0)))
  end
  return self.rows
end

-- ---- Figures ---------------------------------------------------------------------------------

-- exp:figure(name [, {out =, caption =, runs =, formats =, layers =, domain =, site =}])
--   -> {tsv =, gp =, png =, pdf = [, tex =]}
-- Any figure of cce.plot (cce plot --figure NAME) drawn from this experiment's runs: runs is a
-- further run filter (cce plot --help), out the figure's path without an extension (default
-- "<folder of the results file>/<experiment>_<name>").
function Experiment:figure(name, opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    fail("exp:figure: options table expected, got %s", type(opts))
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  local filter = "experiment=" .. self.name
  if opts.runs ~= nil and opts.runs ~= "" then filter = filter .. "," .. tostring(opts.runs) end
  o.runs = filter
  if o.out == nil then
    local dir = self.out:match("^(.*)/[^/]*$") or "."
    o.out = dir .. "/" .. self.name .. "_" .. tostring(name)
  end
  return cce.plot(self.out, name, o)
end

-- ---- cce.experiment ----------------------------------------------------------------------------

local function experiment(o)
  if type(o) ~= "table" then
    fail("bad argument #1 to 'cce.experiment' (table expected, got %s)", type(o))
  end
  for k in pairs(o) do
    if not EXPERIMENT_FIELDS[k] then
      fail("bad argument #1 to 'cce.experiment' (unknown field '%s'; fields: domains, model, "
           .. "name, out, redo, seed, stats, tasks)", tostring(k))
    end
  end
  if type(o.name) ~= "string" or not o.name:match("^[%w_%-%.]+$") then
    fail("bad argument #1 to 'cce.experiment' (field 'name': a name of letters, digits, '_', '-' "
         .. "and '.' expected, got %s)", tostring(o.name))
  end
  local out = o.out or ("results/" .. o.name .. ".h5")
  if type(out) ~= "string" then
    fail("bad argument #1 to 'cce.experiment' (field 'out': string expected, got %s)", type(out))
  end
  local seed = o.seed or 0
  if math.type(seed) ~= "integer" then seed = math.tointeger(seed) end
  if seed == nil or seed < 0 then
    fail("bad argument #1 to 'cce.experiment' (field 'seed': an integer >= 0 expected, got %s)",
         tostring(o.seed))
  end
  if o.model ~= nil then facts_of(o.model, "cce.experiment") end
  if o.redo ~= nil and type(o.redo) ~= "boolean" then
    fail("bad argument #1 to 'cce.experiment' (field 'redo': boolean expected, got %s)",
         type(o.redo))
  end
  stats_options(o.stats, "cce.experiment")
  read_domains(o.domains, "cce.experiment")
  if o.tasks ~= nil and type(o.tasks) ~= "table" then
    fail("bad argument #1 to 'cce.experiment' (field 'tasks': an array expected, got %s)",
         type(o.tasks))
  end
  local impl = setmetatable({ name = o.name, out = out, seed = seed, model = o.model, n_runs = 0,
                              redo = o.redo or false, rows = {}, stats = o.stats,
                              domains = o.domains, tasks = o.tasks, refs = {}, task_ids = {} },
                            { __index = Experiment })
  local writer = cce._results_open(out)
  return cce._experiment(impl, writer, string.format("experiment '%s' (%s)", o.name, out))
end

-- ---- Ready scripts: options and setup ----------------------------------------------------------

-- options(defaults [, args]) -> table. Parses the script's arguments (cce.args) as key=value
-- against defaults: each value is converted to the type of its default (numbers; booleans
-- true/false; lists split at ',' whose items are numbers when the default's are); a bare
-- "synth" means model=synth, any other bare argument is out (the output folder). An unknown key
-- is an error listing the known ones.
local function options(defaults, args)
  args = args or cce.args
  local o = {}
  for k, v in pairs(defaults) do o[k] = v end
  local function convert(k, text)
    local d = defaults[k]
    if type(d) == "number" then
      local v = tonumber(text)
      if v == nil then fail("option %s=%s: a number expected", k, text) end
      return math.tointeger(v) or v
    elseif type(d) == "boolean" then
      if text == "true" or text == "1" then return true end
      if text == "false" or text == "0" then return false end
      fail("option %s=%s: true or false expected", k, text)
    elseif type(d) == "table" then
      local list, numeric = {}, type(d[1]) == "number"
      for item in text:gmatch("[^,]+") do
        local v = numeric and tonumber(item) or item
        if v == nil then fail("option %s=%s: a list of numbers expected", k, text) end
        list[#list + 1] = numeric and (math.tointeger(v) or v) or v
      end
      return list
    end
    return text
  end
  for _, a in ipairs(args) do
    local k, v = a:match("^([%w_]+)=(.*)$")
    if not k then
      if a == "synth" then k, v = "model", "synth" else k, v = "out", a end
    end
    if defaults[k] == nil then
      fail("unknown option '%s' (options: %s)", k, table.concat(sorted_keys(defaults), ", "))
    end
    o[k] = convert(k, v)
  end
  return o
end

-- setup(o) -> model, calib, test. o.model: a manifest name ("stories260K"), a .h5 file, or
-- "synth" / "synth:PRESET" (a synthetic model, seed 1, with the byte-level tokenizer); o.data: a
-- manifest name or a text file; o.calib_tokens, o.test_tokens, o.calib_window, o.split_seed as
-- ds:split takes them.
local function setup(o)
  local m
  local preset = o.model:match("^synth:?(.*)$")
  if preset then
    m = cce.synth{ preset = preset ~= "" and preset or "tiny", seed = 1 }
  elseif o.model:match("%.h5$") then
    m = cce.load(o.model)
  else
    m = cce.model(o.model)
  end
  local calib, test = cce.dataset(o.data):split{
    model = m, calib_tokens = o.calib_tokens, test_tokens = o.test_tokens,
    calib_window = o.calib_window, seed = o.split_seed,
  }
  return m, calib, test
end

return { experiment = experiment, options = options, setup = setup }
