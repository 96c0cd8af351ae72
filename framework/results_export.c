/* Exporting results files as tables (results.h: cce_results_export): the runs table or the
 * layers table, as TSV or CSV under a commented header, or as JSON.
 *
 * Numbers are written exactly: metrics and layer measures with the fewest significant digits that
 * read back to the same double (at most 17), NaN as "nan" (null in JSON), infinities as "inf" and
 * "-inf" (null in JSON). TSV fields have tabs, newlines, carriage returns and backslashes escaped
 * as \t, \n, \r and \\; CSV fields are quoted as RFC 4180 says when they hold a comma, a quote, a
 * line break, surrounding spaces or a leading '#'. */
#include "results_internal.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sha256.h"

/* ---- Column meanings ------------------------------------------------------------------------- */

typedef struct meaning {
    const char *name, *text;
} meaning;

static const meaning ATTR_MEANINGS[] = {
    {"id", "run id (r000001, ... in the order the runs were recorded)"},
    {"key", "run key: the canonical text of everything that defines the run"},
    {"experiment", "experiment name"},
    {"strategy", "strategy steps joined by '+' ('dense': the base model itself)"},
    {"params", "JSON: the steps' parameters"},
    {"plan", "JSON: the plan rules given and the applied plan rows"},
    {"seed", "the run's own seed (from the experiment seed and the run key)"},
    {"protocol", "evaluation protocol line"},
    {"model", "base model"},
    {"model_sha256", "sha256 of the base model file"},
    {"dataset", "evaluation dataset"},
    {"dataset_sha256", "sha256 of the dataset file"},
    {"cce_version", "CCE Lab version that recorded the run"},
    {"timestamp", "when the run was recorded (ISO 8601 UTC)"},
    {"seconds", "wall time of the whole run (s)"},
};

static const meaning METRIC_MEANINGS[] = {
    {"ppl", "perplexity, exp(mean NLL)"},
    {"ppl_stderr", "standard error of ppl (delta method)"},
    {"nll", "mean negative log-likelihood per scored token (nats)"},
    {"nll_stderr", "standard error of nll"},
    {"top1", "top-1 next-token accuracy"},
    {"tokens", "scored tokens"},
    {"windows", "evaluation windows"},
    {"ctx", "evaluation window length including BOS"},
    {"seconds", "evaluation wall time (s)"},
    {"tokens_per_s", "scored tokens per second"},
    {"kl", "mean KL(ref || model) per scored token (nats)"},
    {"kl_stderr", "standard error of kl"},
    {"kl_p99", "99th percentile of the per-token KL"},
    {"top1_agree", "fraction of positions where model and reference top-1 agree"},
    {"dp_mean", "mean of dp = p_model(correct) - p_ref(correct)"},
    {"dp_stderr", "standard error of dp_mean"},
    {"dp_min", "smallest dp"},
    {"dp_max", "largest dp"},
};

static const meaning LAYER_MEANINGS[] = {
    {"run", "run id"},
    {"strategy", "strategy step that changed the tensor"},
    {"layer", "block index (-1 for tensors outside the blocks)"},
    {"tensor", "tensor name"},
    {"params_before", "parameters before"},
    {"params_after", "parameters after (non-zero weights after pruning)"},
    {"bytes_before", "bytes before, under the real encoding"},
    {"bytes_after", "bytes after, under the real encoding"},
    {"bits_per_weight", "8 * bytes_after / params_before"},
    {"sparsity", "fraction of exact zeros after"},
    {"rank", "kept rank of a low-rank factorisation (-1: none)"},
    {"rel_fro_error", "||W - W'||_F / ||W||_F"},
    {"output_error", "relative output error on calibration inputs (nan: unknown)"},
    {"seconds", "wall time for this tensor (s)"},
    {"note", "remark on the encoding"},
};
#define N_LAYER_COLS (sizeof LAYER_MEANINGS / sizeof LAYER_MEANINGS[0])

static const char *lookup(const meaning *m, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(m[i].name, name)) return m[i].text;
    return NULL;
}

/* The meaning of metric `name` into buf. */
static void metric_meaning(const char *name, char *buf, size_t cap) {
    const char *t =
        lookup(METRIC_MEANINGS, sizeof METRIC_MEANINGS / sizeof METRIC_MEANINGS[0], name);
    char *end;
    if (t)
        snprintf(buf, cap, "%s", t);
    else if (!strncmp(name, "dp_p", 4) && name[4] && (strtol(name + 4, &end, 10), !*end))
        snprintf(buf, cap, "percentile %s of dp", name + 4);
    else
        snprintf(buf, cap, "metric %s", name);
}

/* ---- Cells ----------------------------------------------------------------------------------- */

/* v with the fewest significant digits (at most 17) that read back to v. */
static void format_double(double v, char buf[40]) {
    if (isnan(v)) {
        snprintf(buf, 40, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, 40, v > 0 ? "inf" : "-inf");
        return;
    }
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, 40, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* A JSON number for v, null when it is not finite. New reference. */
static json_t *json_number(double v) {
    return isfinite(v) ? json_real(v) : json_null();
}

/* Writes one field of a delimited row. */
static void put_field(FILE *out, cce_results_format fmt, const char *v) {
    if (!v) return;
    if (fmt == CCE_RESULTS_TSV) {
        for (const char *p = v; *p; p++) {
            switch (*p) {
            case '\t':
                fputs("\\t", out);
                break;
            case '\n':
                fputs("\\n", out);
                break;
            case '\r':
                fputs("\\r", out);
                break;
            case '\\':
                fputs("\\\\", out);
                break;
            default:
                fputc(*p, out);
            }
        }
        return;
    }
    size_t n = strlen(v);
    int quote = n && (strpbrk(v, ",\"\r\n") || v[0] == ' ' || v[n - 1] == ' ' || v[0] == '#');
    if (!quote) {
        fputs(v, out);
        return;
    }
    fputc('"', out);
    for (const char *p = v; *p; p++) {
        if (*p == '"') fputc('"', out);
        fputc(*p, out);
    }
    fputc('"', out);
}

static void put_sep(FILE *out, cce_results_format fmt) {
    fputc(fmt == CCE_RESULTS_TSV ? '\t' : ',', out);
}

/* ---- Columns of the runs table --------------------------------------------------------------- */

typedef struct columns {
    size_t n_attrs, n_metrics;
    const char **attrs;   /* [n_attrs] attribute names (borrowed from the runs) */
    const char **metrics; /* [n_metrics] metric names (borrowed) */
    char **metric_cols;   /* [n_metrics] column names: the metric's, or "metric_<name>" when an
                             attribute column has that name */
} columns;

static void columns_free(columns *c) {
    for (size_t i = 0; i < c->n_metrics; i++) free(c->metric_cols[i]);
    free(c->attrs);
    free(c->metrics);
    free(c->metric_cols);
}

static int has_name(const char *const *names, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(names[i], name)) return 1;
    return 0;
}

/* The standard attributes first (in the order the writer records them), then any others, then the
 * union of the metric names in order of first appearance. */
static cce_status runs_columns(const cce_results_runs *runs, columns *c) {
    memset(c, 0, sizeof *c);
    size_t max_a = results_n_run_attrs, max_m = 0;
    for (size_t r = 0; r < runs->n; r++) {
        max_a += runs->runs[r].n_attrs;
        max_m += runs->runs[r].n_metrics;
    }
    c->attrs = malloc(max_a * sizeof *c->attrs);
    c->metrics = malloc((max_m ? max_m : 1) * sizeof *c->metrics);
    c->metric_cols = calloc(max_m ? max_m : 1, sizeof *c->metric_cols);
    if (!c->attrs || !c->metrics || !c->metric_cols) goto nomem;
    for (size_t i = 0; i < results_n_run_attrs; i++) c->attrs[c->n_attrs++] = results_run_attrs[i];
    for (size_t r = 0; r < runs->n; r++) {
        const cce_run_info *run = &runs->runs[r];
        for (size_t i = 0; i < run->n_attrs; i++)
            if (!has_name(c->attrs, c->n_attrs, run->attr_names[i]))
                c->attrs[c->n_attrs++] = run->attr_names[i];
        for (size_t i = 0; i < run->n_metrics; i++)
            if (!has_name(c->metrics, c->n_metrics, run->metric_names[i]))
                c->metrics[c->n_metrics++] = run->metric_names[i];
    }
    for (size_t i = 0; i < c->n_metrics; i++) {
        const char *m = c->metrics[i];
        int clash = !strcmp(m, "id") || has_name(c->attrs, c->n_attrs, m);
        size_t len = strlen(m) + 8;
        if (!(c->metric_cols[i] = malloc(len))) goto nomem;
        snprintf(c->metric_cols[i], len, "%s%s", clash ? "metric_" : "", m);
    }
    return CCE_OK;
nomem:
    columns_free(c);
    memset(c, 0, sizeof *c);
    return cce_fail(CCE_ERR_NOMEM, "export: %zu runs", runs->n);
}

/* The metric of run named name, or NULL. */
static const double *run_metric(const cce_run_info *run, const char *name) {
    for (size_t i = 0; i < run->n_metrics; i++)
        if (!strcmp(run->metric_names[i], name)) return &run->metric_values[i];
    return NULL;
}

/* ---- The source ------------------------------------------------------------------------------ */

typedef struct source {
    const char *path, *table;
    char sha256[65];
    size_t n_runs, n_rows; /* rows of the table */
} source;

static void header(FILE *out, const source *src, const char *const *names, const char **texts,
                   size_t n) {
    fprintf(out, "# cce results: table %s of %s\n", src->table, src->path);
    fprintf(out, "# sha256: %s\n", src->sha256);
    fprintf(out, "# cce version: %s\n", CCE_VERSION);
    fprintf(out, "# %zu runs, %zu rows\n", src->n_runs, src->n_rows);
    fprintf(out, "# columns:\n");
    for (size_t i = 0; i < n; i++) fprintf(out, "#   %s: %s\n", names[i], texts[i]);
}

/* A JSON string for v; bytes that are not valid UTF-8 become '?' (a corrupt file may hold any
 * bytes). New reference. */
static json_t *json_text(const char *v) {
    json_t *j = json_string(v);
    if (j) return j;
    char *copy = strdup(v);
    if (!copy) return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80) *p = '?';
    j = json_string(copy);
    free(copy);
    return j;
}

static json_t *json_source(const source *src, const char *const *names, const char **texts,
                           size_t n) {
    json_t *cols = json_object();
    for (size_t i = 0; cols && i < n; i++)
        json_object_set_new(cols, names[i], json_string(texts[i]));
    return json_pack("{s:o, s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:o}", "file", json_text(src->path),
                     "sha256", src->sha256, "cce_version", CCE_VERSION, "table", src->table,
                     "format", RESULTS_FORMAT, "format_version", RESULTS_VERSION, "runs",
                     (json_int_t)src->n_runs, "rows", (json_int_t)src->n_rows, "columns", cols);
}

/* Writes root as indented JSON with exact doubles; takes root. */
static cce_status dump_json(json_t *root, FILE *out, const char *path) {
    if (!root) return cce_fail(CCE_ERR_NOMEM, "%s: building the JSON export", path);
    int rc = json_dumpf(root, out, JSON_INDENT(1) | JSON_REAL_PRECISION(17) | JSON_ENSURE_ASCII);
    json_decref(root);
    if (rc != 0) return cce_fail(CCE_ERR_IO, "%s: cannot write the JSON export", path);
    fputc('\n', out);
    return CCE_OK;
}

/* An attribute value as JSON: params and plan parsed (as text when they do not parse), seconds a
 * number, seed a decimal string (a uint64 may not fit JSON consumers' integers). New reference. */
static json_t *json_attr(const char *name, const char *v) {
    if (!strcmp(name, "params") || !strcmp(name, "plan")) {
        json_t *j = *v ? json_loads(v, JSON_DECODE_ANY, NULL) : NULL;
        return j ? j : json_string(v);
    }
    if (!strcmp(name, "seconds")) {
        char *end;
        double d = strtod(v, &end);
        if (*v && !*end) return json_number(d);
    }
    return json_text(v);
}

/* ---- Runs table ------------------------------------------------------------------------------ */

static cce_status export_runs(const cce_results_runs *runs, const source *src,
                              cce_results_format fmt, FILE *out) {
    columns c;
    cce_status s = runs_columns(runs, &c);
    if (s) return s;
    size_t n_cols = 1 + c.n_attrs + c.n_metrics;
    const char **names = malloc(n_cols * sizeof *names);       /* [n_cols] borrowed */
    const char **texts = malloc(n_cols * sizeof *texts);       /* [n_cols] borrowed or owned */
    char(*owned)[96] = calloc(c.n_metrics + 1, sizeof *owned); /* [n_metrics] meaning buffers */
    if (!names || !texts || !owned) {
        s = cce_fail(CCE_ERR_NOMEM, "%s: export columns", src->path);
        goto done;
    }
    const size_t n_am = sizeof ATTR_MEANINGS / sizeof ATTR_MEANINGS[0];
    names[0] = "id";
    texts[0] = lookup(ATTR_MEANINGS, n_am, "id");
    for (size_t i = 0; i < c.n_attrs; i++) {
        names[1 + i] = c.attrs[i];
        const char *t = lookup(ATTR_MEANINGS, n_am, c.attrs[i]);
        texts[1 + i] = t ? t : "run attribute";
    }
    for (size_t i = 0; i < c.n_metrics; i++) {
        names[1 + c.n_attrs + i] = fmt == CCE_RESULTS_JSON ? c.metrics[i] : c.metric_cols[i];
        metric_meaning(c.metrics[i], owned[i], sizeof owned[i]);
        texts[1 + c.n_attrs + i] = owned[i];
    }
    if (fmt == CCE_RESULTS_JSON) {
        json_t *arr = json_array();
        for (size_t r = 0; arr && r < runs->n; r++) {
            const cce_run_info *run = &runs->runs[r];
            json_t *o = json_object(), *m = json_object();
            if (!o || !m) {
                json_decref(o);
                json_decref(m);
                json_decref(arr);
                arr = NULL;
                break;
            }
            json_object_set_new(o, "id", json_string(run->id));
            for (size_t i = 0; i < c.n_attrs; i++) {
                const char *v = cce_run_attr(run, c.attrs[i]);
                if (v) json_object_set_new(o, c.attrs[i], json_attr(c.attrs[i], v));
            }
            for (size_t i = 0; i < run->n_metrics; i++)
                json_object_set_new(m, run->metric_names[i], json_number(run->metric_values[i]));
            json_object_set_new(o, "metrics", m);
            json_object_set_new(o, "layer_rows", json_integer((json_int_t)run->n_layer_rows));
            json_array_append_new(arr, o);
        }
        json_t *root = arr ? json_pack("{s:o, s:o}", "source",
                                       json_source(src, names, texts, n_cols), "runs", arr)
                           : NULL;
        s = dump_json(root, out, src->path);
        goto done;
    }
    header(out, src, names, texts, n_cols);
    for (size_t i = 0; i < n_cols; i++) {
        if (i) put_sep(out, fmt);
        put_field(out, fmt, names[i]);
    }
    fputc('\n', out);
    for (size_t r = 0; r < runs->n; r++) {
        const cce_run_info *run = &runs->runs[r];
        put_field(out, fmt, run->id);
        for (size_t i = 0; i < c.n_attrs; i++) {
            put_sep(out, fmt);
            put_field(out, fmt, cce_run_attr(run, c.attrs[i]));
        }
        for (size_t i = 0; i < c.n_metrics; i++) {
            put_sep(out, fmt);
            const double *v = run_metric(run, c.metrics[i]);
            char buf[40];
            if (v) format_double(*v, buf);
            put_field(out, fmt, v ? buf : NULL);
        }
        fputc('\n', out);
    }
done:
    free(names);
    free(texts);
    free(owned);
    columns_free(&c);
    return s;
}

/* ---- Layers table ---------------------------------------------------------------------------- */

static cce_status export_layers(const cce_results_runs *runs, const cce_report *reports,
                                const source *src, cce_results_format fmt, FILE *out) {
    const char *names[N_LAYER_COLS], *texts[N_LAYER_COLS];
    for (size_t i = 0; i < N_LAYER_COLS; i++) {
        names[i] = LAYER_MEANINGS[i].name;
        texts[i] = LAYER_MEANINGS[i].text;
    }
    json_t *arr = fmt == CCE_RESULTS_JSON ? json_array() : NULL;
    if (fmt == CCE_RESULTS_JSON && !arr)
        return cce_fail(CCE_ERR_NOMEM, "%s: building the JSON export", src->path);
    if (fmt != CCE_RESULTS_JSON) {
        header(out, src, names, texts, N_LAYER_COLS);
        for (size_t i = 0; i < N_LAYER_COLS; i++) {
            if (i) put_sep(out, fmt);
            put_field(out, fmt, names[i]);
        }
        fputc('\n', out);
    }
    for (size_t r = 0; r < runs->n; r++) {
        for (size_t k = 0; k < reports[r].n; k++) {
            const cce_report_row *w = &reports[r].rows[k];
            if (arr) {
                json_t *o = json_pack(
                    "{s:s, s:o, s:i, s:o, s:I, s:I, s:I, s:I, s:o, s:o, s:I, s:o, s:o, s:o, s:o}",
                    "run", runs->runs[r].id, "strategy", json_text(w->strategy), "layer", w->layer,
                    "tensor", json_text(w->tensor), "params_before", (json_int_t)w->params_before,
                    "params_after", (json_int_t)w->params_after, "bytes_before",
                    (json_int_t)w->bytes_before, "bytes_after", (json_int_t)w->bytes_after,
                    "bits_per_weight", json_number(w->bits_per_weight), "sparsity",
                    json_number(w->sparsity), "rank", (json_int_t)w->rank, "rel_fro_error",
                    json_number(w->rel_fro_error), "output_error", json_number(w->output_error),
                    "seconds", json_number(w->seconds), "note", json_text(w->note));
                if (!o || json_array_append_new(arr, o)) {
                    json_decref(arr);
                    return cce_fail(CCE_ERR_NOMEM, "%s: building the JSON export", src->path);
                }
                continue;
            }
            char cells[N_LAYER_COLS][40];
            snprintf(cells[2], 40, "%d", w->layer);
            snprintf(cells[4], 40, "%lld", (long long)w->params_before);
            snprintf(cells[5], 40, "%lld", (long long)w->params_after);
            snprintf(cells[6], 40, "%lld", (long long)w->bytes_before);
            snprintf(cells[7], 40, "%lld", (long long)w->bytes_after);
            format_double(w->bits_per_weight, cells[8]);
            format_double(w->sparsity, cells[9]);
            snprintf(cells[10], 40, "%lld", (long long)w->rank);
            format_double(w->rel_fro_error, cells[11]);
            format_double(w->output_error, cells[12]);
            format_double(w->seconds, cells[13]);
            const char *row[N_LAYER_COLS] = {runs->runs[r].id, w->strategy, cells[2],  cells[3],
                                             cells[4],         cells[5],    cells[6],  cells[7],
                                             cells[8],         cells[9],    cells[10], cells[11],
                                             cells[12],        cells[13],   w->note};
            row[3] = w->tensor;
            for (size_t i = 0; i < N_LAYER_COLS; i++) {
                if (i) put_sep(out, fmt);
                put_field(out, fmt, row[i]);
            }
            fputc('\n', out);
        }
    }
    if (!arr) return CCE_OK;
    json_t *root = json_pack("{s:o, s:o}", "source", json_source(src, names, texts, N_LAYER_COLS),
                             "layers", arr);
    return dump_json(root, out, src->path);
}

/* ---- Extra tables (results_table.h) ---------------------------------------------------------- */

/* One column of the exported table: the union over the runs, by name, in order of first
 * appearance; a vector column is as wide as its widest. */
typedef struct xcol {
    const cce_table_col *first; /* the column in the first run that has it (borrowed) */
    size_t width;
    char label[CCE_TABLE_NAME_MAX * 2 + 32]; /* "v_0 .. v_63" for a vector column */
} xcol;

/* Reads the runs and, for every run that holds it, table `name` of one version of the file (as
 * read_snapshot). tables [runs->n], NULL for runs without the table. */
static cce_status read_table_snapshot(const char *path, const char *name, char sha[65],
                                      cce_results_runs *runs, cce_table ***tables) {
    for (int attempt = 0;; attempt++) {
        struct stat a, b;
        hid_t f;
        *tables = NULL;
        if (stat(path, &a) != 0)
            return cce_fail(CCE_ERR_IO, "%s: cannot open the results file: %s", path,
                            strerror(errno));
        cce_status s = cce_sha256_file(path, sha);
        if (s) return s;
        if ((s = results_open_file(path, &f))) return s;
        s = results_read_file(f, path, runs);
        if (!s && runs->n && !(*tables = calloc(runs->n, sizeof **tables)))
            s = cce_fail(CCE_ERR_NOMEM, "%s: tables of %zu runs", path, runs->n);
        for (size_t r = 0; !s && r < runs->n; r++) {
            const cce_run_info *run = &runs->runs[r];
            for (size_t i = 0; i < run->n_tables; i++)
                if (!strcmp(run->table_names[i], name))
                    s = results_read_table_file(f, path, run->id, name, &(*tables)[r]);
        }
        H5Fclose(f);
        H5Eclear2(H5E_DEFAULT);
        int same = stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
        if (!s && (same || attempt >= 4)) return CCE_OK;
        if (*tables)
            for (size_t r = 0; r < runs->n; r++) cce_table_free((*tables)[r]);
        free(*tables);
        *tables = NULL;
        cce_results_runs_free(runs);
        if (s) return s;
    }
}

/* The union of the columns of the tables [n] (NULL entries skipped) into cols (malloc'd). */
static cce_status table_columns(cce_table *const *tables, size_t n, const char *path, xcol **cols,
                                size_t *n_cols) {
    size_t max = 0;
    for (size_t r = 0; r < n; r++)
        if (tables[r]) max += tables[r]->n_cols;
    *n_cols = 0;
    if (!(*cols = calloc(max ? max : 1, sizeof **cols)))
        return cce_fail(CCE_ERR_NOMEM, "%s: export columns", path);
    for (size_t r = 0; r < n; r++) {
        for (size_t k = 0; tables[r] && k < tables[r]->n_cols; k++) {
            const cce_table_col *c = &tables[r]->cols[k];
            size_t j = 0;
            while (j < *n_cols && strcmp((*cols)[j].first->name, c->name)) j++;
            if (j == *n_cols) {
                (*cols)[j].first = c;
                (*n_cols)++;
            }
            if (c->width > (*cols)[j].width) (*cols)[j].width = c->width;
        }
    }
    for (size_t j = 0; j < *n_cols; j++) {
        xcol *x = &(*cols)[j];
        if (x->first->type == CCE_COL_F64VEC)
            snprintf(x->label, sizeof x->label, "%s_0 .. %s_%zu", x->first->name, x->first->name,
                     x->width - 1);
        else
            snprintf(x->label, sizeof x->label, "%s", x->first->name);
    }
    return CCE_OK;
}

/* The value of cell (row, k-th value) of column c as text into buf (NULL: an empty cell). */
static const char *cell_text(const cce_table_col *c, size_t row, size_t k, char buf[40]) {
    if (!c || k >= c->width) return NULL;
    switch (c->type) {
    case CCE_COL_F64:
    case CCE_COL_F64VEC:
        format_double(c->f64[row * c->width + k], buf);
        return buf;
    case CCE_COL_I64:
        snprintf(buf, 40, "%lld", (long long)c->i64[row]);
        return buf;
    case CCE_COL_STR:
        return c->str[row];
    }
    return NULL;
}

/* The cell of column c of row `row` as JSON (null for NULL c). New reference. */
static json_t *cell_json(const cce_table_col *c, size_t row) {
    if (!c) return json_null();
    switch (c->type) {
    case CCE_COL_F64:
        return json_number(c->f64[row]);
    case CCE_COL_I64:
        return json_integer((json_int_t)c->i64[row]);
    case CCE_COL_STR:
        return json_text(c->str[row]);
    case CCE_COL_F64VEC: {
        json_t *a = json_array();
        for (size_t k = 0; a && k < c->width; k++)
            if (json_array_append_new(a, json_number(c->f64[row * c->width + k]))) {
                json_decref(a);
                return NULL;
            }
        return a;
    }
    }
    return json_null();
}

static cce_status export_table(const cce_results_runs *runs, cce_table *const *tables,
                               const source *src, cce_results_format fmt, FILE *out) {
    xcol *cols = NULL;
    size_t n_cols = 0;
    cce_status s = table_columns(tables, runs->n, src->path, &cols, &n_cols);
    if (s) return s;
    const char **names = malloc((n_cols + 1) * sizeof *names); /* [1 + n_cols] borrowed */
    const char **texts = malloc((n_cols + 1) * sizeof *texts); /* [1 + n_cols] borrowed */
    const cce_table_col **own = malloc((n_cols ? n_cols : 1) * sizeof *own); /* per run */
    json_t *arr = fmt == CCE_RESULTS_JSON ? json_array() : NULL;
    if (!names || !texts || !own || (fmt == CCE_RESULTS_JSON && !arr)) {
        s = cce_fail(CCE_ERR_NOMEM, "%s: export columns", src->path);
        goto done;
    }
    names[0] = "run";
    texts[0] = "run id";
    for (size_t j = 0; j < n_cols; j++) {
        names[1 + j] = fmt == CCE_RESULTS_JSON ? cols[j].first->name : cols[j].label;
        texts[1 + j] = *cols[j].first->meaning ? cols[j].first->meaning : "column";
    }
    if (!arr) {
        header(out, src, names, texts, n_cols + 1);
        put_field(out, fmt, "run");
        for (size_t j = 0; j < n_cols; j++) {
            const cce_table_col *c = cols[j].first;
            for (size_t k = 0; k < (c->type == CCE_COL_F64VEC ? cols[j].width : 1); k++) {
                char name[CCE_TABLE_NAME_MAX + 24];
                if (c->type == CCE_COL_F64VEC)
                    snprintf(name, sizeof name, "%s_%zu", c->name, k);
                else
                    snprintf(name, sizeof name, "%s", c->name);
                put_sep(out, fmt);
                put_field(out, fmt, name);
            }
        }
        fputc('\n', out);
    }
    for (size_t r = 0; r < runs->n; r++) {
        const cce_table *t = tables[r];
        if (!t) continue;
        for (size_t j = 0; j < n_cols; j++) {
            int k = cce_table_column(t, cols[j].first->name);
            own[j] = k >= 0 ? &t->cols[k] : NULL;
        }
        for (size_t row = 0; row < t->n_rows; row++) {
            if (arr) {
                json_t *o = json_object();
                int bad = !o || json_object_set_new(o, "run", json_string(runs->runs[r].id));
                for (size_t j = 0; !bad && j < n_cols; j++)
                    bad = json_object_set_new(o, cols[j].first->name, cell_json(own[j], row)) != 0;
                if (bad || json_array_append_new(arr, o)) {
                    if (bad) json_decref(o);
                    s = cce_fail(CCE_ERR_NOMEM, "%s: building the JSON export", src->path);
                    goto done;
                }
                continue;
            }
            put_field(out, fmt, runs->runs[r].id);
            for (size_t j = 0; j < n_cols; j++) {
                size_t w = cols[j].first->type == CCE_COL_F64VEC ? cols[j].width : 1;
                for (size_t k = 0; k < w; k++) {
                    char buf[40];
                    put_sep(out, fmt);
                    put_field(out, fmt, cell_text(own[j], row, k, buf));
                }
            }
            fputc('\n', out);
        }
    }
    if (arr) {
        json_t *root = json_pack("{s:o, s:o}", "source", json_source(src, names, texts, n_cols + 1),
                                 src->table, arr);
        arr = NULL;
        s = dump_json(root, out, src->path);
    }
done:
    json_decref(arr);
    free(names);
    free(texts);
    free(own);
    free(cols);
    return s;
}

/* Exports the extra table `table` of every run that holds it. */
static cce_status export_extra(const char *path, const char *table, cce_results_format format,
                               FILE *out) {
    source src = {.path = path, .table = table};
    cce_results_runs runs;
    cce_table **tables = NULL; /* [runs.n] */
    cce_status s = read_table_snapshot(path, table, src.sha256, &runs, &tables);
    if (s) return s;
    src.n_runs = runs.n;
    size_t holding = 0;
    for (size_t r = 0; r < runs.n; r++)
        if (tables[r]) {
            holding++;
            src.n_rows += tables[r]->n_rows;
        }
    if (!holding) {
        /* Name the tables the runs do hold (each once). */
        char have[256] = "";
        size_t len = 0;
        for (size_t r = 0; r < runs.n; r++)
            for (size_t i = 0; i < runs.runs[r].n_tables; i++) {
                const char *n = runs.runs[r].table_names[i];
                int seen = 0;
                for (size_t q = 0; q <= r && !seen; q++)
                    for (size_t k = 0; k < runs.runs[q].n_tables && !seen; k++) {
                        if (q == r && k == i) break;
                        seen = !strcmp(runs.runs[q].table_names[k], n);
                    }
                if (seen || len + strlen(n) + 3 >= sizeof have) continue;
                len += (size_t)snprintf(have + len, sizeof have - len, "%s, ", n);
            }
        if (len >= 2) have[len - 2] = '\0';
        s = cce_fail(CCE_ERR_NOT_FOUND,
                     "%s: no run holds a table named '%.64s' (tables: runs, layers%s%s)", path,
                     table, len ? ", " : "", have);
    } else {
        s = export_table(&runs, tables, &src, format, out);
    }
    if (!s && (fflush(out) != 0 || ferror(out)))
        s = cce_fail(CCE_ERR_IO, "%s: cannot write the export: %s", path, strerror(errno));
    for (size_t r = 0; tables && r < runs.n; r++) cce_table_free(tables[r]);
    free(tables);
    cce_results_runs_free(&runs);
    return s;
}

/* ---- Public ---------------------------------------------------------------------------------- */

/* Reads the runs (and with layers, every run's table) of one version of the file, and its sha256:
 * the file is identified by inode before and after, and read again if a writer replaced it in
 * between. */
static cce_status read_snapshot(const char *path, int layers, char sha[65], cce_results_runs *runs,
                                cce_report **reports) {
    for (int attempt = 0;; attempt++) {
        struct stat a, b;
        hid_t f;
        *reports = NULL;
        if (stat(path, &a) != 0)
            return cce_fail(CCE_ERR_IO, "%s: cannot open the results file: %s", path,
                            strerror(errno));
        cce_status s = cce_sha256_file(path, sha);
        if (s) return s;
        if ((s = results_open_file(path, &f))) return s;
        s = results_read_file(f, path, runs);
        if (!s && layers && runs->n && !(*reports = calloc(runs->n, sizeof **reports)))
            s = cce_fail(CCE_ERR_NOMEM, "%s: layers of %zu runs", path, runs->n);
        for (size_t r = 0; !s && layers && r < runs->n; r++)
            s = results_read_layers_file(f, path, runs->runs[r].id, &(*reports)[r]);
        H5Fclose(f);
        H5Eclear2(H5E_DEFAULT);
        int same = stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
        if (!s && (same || attempt >= 4)) return CCE_OK;
        if (*reports)
            for (size_t r = 0; r < runs->n; r++) cce_report_clear(&(*reports)[r]);
        free(*reports);
        *reports = NULL;
        cce_results_runs_free(runs);
        if (s) return s;
    }
}

cce_status cce_results_export(const char *path, const char *table, cce_results_format format,
                              FILE *out) {
    if (!path || !*path || !out) return cce_fail(CCE_ERR_ARG, "results export: no file named");
    if (!table) table = "runs";
    int layers = !strcmp(table, "layers");
    if (!layers && strcmp(table, "runs") != 0 &&
        (!cce_table_name_ok(table) || !strcmp(table, "metrics")))
        return cce_fail(CCE_ERR_ARG,
                        "%s: unknown table '%.64s' (runs, layers or the name of a run's table)",
                        path, table);
    if (format != CCE_RESULTS_TSV && format != CCE_RESULTS_CSV && format != CCE_RESULTS_JSON)
        return cce_fail(CCE_ERR_ARG, "%s: unknown export format %d", path, (int)format);
    if (!layers && strcmp(table, "runs") != 0) return export_extra(path, table, format, out);
    source src = {.path = path, .table = table};
    cce_results_runs runs;
    cce_report *reports = NULL; /* [runs.n] with layers */
    cce_status s = read_snapshot(path, layers, src.sha256, &runs, &reports);
    if (s) return s;
    src.n_runs = runs.n;
    src.n_rows = runs.n;
    if (layers) {
        src.n_rows = 0;
        for (size_t r = 0; r < runs.n; r++) src.n_rows += reports[r].n;
        s = export_layers(&runs, reports, &src, format, out);
    } else {
        s = export_runs(&runs, &src, format, out);
    }
    if (!s && (fflush(out) != 0 || ferror(out)))
        s = cce_fail(CCE_ERR_IO, "%s: cannot write the export: %s", path, strerror(errno));
    if (reports)
        for (size_t r = 0; r < runs.n; r++) cce_report_clear(&reports[r]);
    free(reports);
    cce_results_runs_free(&runs);
    return s;
}
