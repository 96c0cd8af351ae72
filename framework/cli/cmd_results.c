/* cce results: list the runs of a results file, or export its runs or layers table. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "results.h"

static const char *const CMD = "results";

static void usage(FILE *f) {
    fprintf(f,
            "usage: cce results FILE [--export tsv|csv|json [--table runs|layers|NAME] [-o OUT]]\n"
            "\n"
            "Lists the runs recorded in a results file, one line per run: id, strategy, key\n"
            "parameters, perplexity, KL against the base model when recorded, and when the run\n"
            "was recorded. With --export, writes a table instead: TSV and CSV begin with a\n"
            "commented header ('# ' lines: the file, its sha256, the cce version and what each\n"
            "column means); JSON is one object {\"source\": ..., \"runs\"|\"layers\": [...]}.\n"
            "\n"
            "  --export FMT      tsv, csv or json\n"
            "  --table T         runs: one row per run, its attributes and metrics (default);\n"
            "                    layers: one row per run and compressed tensor;\n"
            "                    NAME: a table the runs hold, e.g. weights (weight statistics\n"
            "                    per tensor) or activations (per domain, layer and site); one\n"
            "                    row per run and table row, vectors (histograms) as NAME_0 ...\n"
            "  -o, --output OUT  write the export to OUT (through a temporary name renamed into\n"
            "                    place) instead of standard output\n"
            "  -h, --help        this text\n"
            "\n"
            "Reading takes no lock: a results file can be listed or exported while an experiment\n"
            "is adding runs to it.\n");
}

typedef struct results_args {
    const char *file, *out, *table;
    int export_set;
    cce_results_format format;
} results_args;

/* 0 on success, else the exit code of a usage error. */
static int parse_args(int argc, char **argv, results_args *a) {
    const char *fmt = NULL;
    for (int i = 1; i < argc; i++) {
        int missing = 0;
        const char *v;
        if ((v = cli_option_value(argc, argv, &i, "--export", &missing)))
            fmt = v;
        else if ((v = cli_option_value(argc, argv, &i, "--table", &missing)))
            a->table = v;
        else if ((v = cli_option_value(argc, argv, &i, "--output", &missing)) ||
                 (v = cli_option_value(argc, argv, &i, "-o", &missing)))
            a->out = v;
        else if (missing)
            return cli_usage_error(CMD, "%s needs a value", argv[i]);
        else if (argv[i][0] == '-' && argv[i][1])
            return cli_usage_error(CMD, "unknown option '%s'", argv[i]);
        else if (a->file)
            return cli_usage_error(CMD, "one results file only (got '%s' and '%s')", a->file,
                                   argv[i]);
        else
            a->file = argv[i];
    }
    if (!a->file) return cli_usage_error(CMD, "missing the results FILE");
    if (fmt) {
        a->export_set = 1;
        if (!strcmp(fmt, "tsv"))
            a->format = CCE_RESULTS_TSV;
        else if (!strcmp(fmt, "csv"))
            a->format = CCE_RESULTS_CSV;
        else if (!strcmp(fmt, "json"))
            a->format = CCE_RESULTS_JSON;
        else
            return cli_usage_error(CMD, "--export needs tsv, csv or json, got '%s'", fmt);
    }
    if (a->table && strcmp(a->table, "runs") != 0 && strcmp(a->table, "layers") != 0 &&
        !cce_table_name_ok(a->table))
        return cli_usage_error(CMD, "--table needs runs or layers, got '%s'", a->table);
    if (!a->export_set && (a->table || a->out))
        return cli_usage_error(CMD, "%s only goes with --export", a->table ? "--table" : "-o");
    return 0;
}

/* ---- Listing --------------------------------------------------------------------------------- */

typedef struct text {
    char buf[96];
    size_t len;
} text;

static void text_add(text *t, const char *s) {
    size_t n = strlen(s), room = sizeof t->buf - 1 - t->len;
    if (n > room) n = room;
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

/* "k=v" pairs of the scalar leaves of the params JSON (the steps' parameters), steps of an array
 * separated by " + "; the strategy names themselves are left out (the strategy column has them). */
static void flatten(const json_t *j, text *t, int top) {
    if (json_is_array(j)) {
        size_t i;
        const json_t *v;
        json_array_foreach(j, i, v) {
            if (i && t->len) text_add(t, top ? " + " : ",");
            flatten(v, t, 0);
        }
        return;
    }
    if (!json_is_object(j)) return;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)j, k, v) {
        if (!strcmp(k, "strategy")) continue;
        if (json_is_object(v) || json_is_array(v)) {
            flatten(v, t, 0);
            continue;
        }
        char val[64];
        if (json_is_string(v))
            snprintf(val, sizeof val, "%s", json_string_value(v));
        else if (json_is_integer(v))
            snprintf(val, sizeof val, "%lld", (long long)json_integer_value(v));
        else if (json_is_real(v))
            snprintf(val, sizeof val, "%g", json_real_value(v));
        else
            snprintf(val, sizeof val, "%s",
                     json_is_true(v)    ? "true"
                     : json_is_false(v) ? "false"
                                        : "null");
        if (t->len && t->buf[t->len - 1] != ' ') text_add(t, ",");
        text_add(t, k);
        text_add(t, "=");
        text_add(t, val);
    }
}

/* The key parameters of a run for the listing ("-" when none). */
static void key_params(const char *params, char *out, size_t cap) {
    text t = {.len = 0};
    t.buf[0] = '\0';
    json_t *j = params && *params ? json_loads(params, JSON_DECODE_ANY, NULL) : NULL;
    if (j)
        flatten(j, &t, 1);
    else if (params)
        text_add(&t, params);
    json_decref(j);
    if (t.len == sizeof t.buf - 1) memcpy(t.buf + t.len - 3, "...", 3);
    snprintf(out, cap, "%s", t.len ? t.buf : "-");
}

static void metric_text(const cce_run_info *run, const char *name, char *out, size_t cap) {
    for (size_t i = 0; i < run->n_metrics; i++) {
        if (!strcmp(run->metric_names[i], name)) {
            snprintf(out, cap, "%.6g", run->metric_values[i]);
            return;
        }
    }
    snprintf(out, cap, "-");
}

static int list_runs(const char *file) {
    cce_results_runs runs;
    cce_status s = cce_results_read(file, &runs);
    if (s) return cli_fail(CMD, s);
    if (runs.n == 0) {
        printf("%s: no runs recorded\n", file);
        cce_results_runs_free(&runs);
        return 0;
    }
    enum { COLS = 6 };
    char(*cells)[COLS][100] = calloc(runs.n, sizeof *cells); /* [n][COLS] */
    if (!cells) {
        cce_results_runs_free(&runs);
        return cli_fail(CMD, cce_fail(CCE_ERR_NOMEM, "%s: listing", file));
    }
    static const char *const heads[COLS] = {"ID", "STRATEGY", "PARAMS", "PPL", "KL", "RECORDED"};
    size_t width[COLS];
    for (int c = 0; c < COLS; c++) width[c] = strlen(heads[c]);
    for (size_t r = 0; r < runs.n; r++) {
        const cce_run_info *run = &runs.runs[r];
        const char *strategy = cce_run_attr(run, "strategy"), *ts = cce_run_attr(run, "timestamp");
        snprintf(cells[r][0], 100, "%s", run->id);
        snprintf(cells[r][1], 100, "%.99s", strategy && *strategy ? strategy : "-");
        key_params(cce_run_attr(run, "params"), cells[r][2], 100);
        metric_text(run, "ppl", cells[r][3], 100);
        metric_text(run, "kl", cells[r][4], 100);
        snprintf(cells[r][5], 100, "%.99s", ts && *ts ? ts : "-");
        for (int c = 0; c < COLS; c++)
            if (strlen(cells[r][c]) > width[c]) width[c] = strlen(cells[r][c]);
    }
    for (int c = 0; c < COLS; c++)
        printf("%-*s%s", c < COLS - 1 ? (int)width[c] : 0, heads[c], c < COLS - 1 ? "  " : "\n");
    for (size_t r = 0; r < runs.n; r++)
        for (int c = 0; c < COLS; c++)
            printf("%-*s%s", c < COLS - 1 ? (int)width[c] : 0, cells[r][c],
                   c < COLS - 1 ? "  " : "\n");
    free(cells);
    cce_results_runs_free(&runs);
    if (fflush(stdout) != 0)
        return cli_fail(CMD, cce_fail(CCE_ERR_IO, "writing the listing: %s", strerror(errno)));
    return 0;
}

/* ---- Export ---------------------------------------------------------------------------------- */

/* A --table other than runs and layers must name a table some run holds (results_table.h):
 * 0 if one does (or the file cannot be read: the export then reports why), else the exit code of
 * a usage error listing the tables there are. */
static int check_table(const results_args *a) {
    cce_results_runs runs;
    if (cce_results_read(a->file, &runs)) return 0;
    char have[256] = "";
    size_t len = 0;
    int found = 0;
    for (size_t r = 0; r < runs.n && !found; r++)
        for (size_t i = 0; i < runs.runs[r].n_tables; i++) {
            const char *n = runs.runs[r].table_names[i];
            found |= !strcmp(n, a->table);
            char probe[80], listed[sizeof have + 2];
            snprintf(probe, sizeof probe, ", %s, ", n);
            snprintf(listed, sizeof listed, ", %s", have);
            if (!strstr(listed, probe) && len + strlen(probe) < sizeof have)
                len += (size_t)snprintf(have + len, sizeof have - len, "%s", probe + 2);
        }
    cce_results_runs_free(&runs);
    if (found) return 0;
    if (len >= 2) have[len - 2] = '\0';
    return cli_usage_error(
        CMD, "--table needs runs or layers, or a table the runs hold (%s%s), got '%s'",
        len ? "here: " : "none here", len ? have : "", a->table);
}

/* Exports to a temporary name beside out, fsyncs it and renames it into place. */
static int export_to_file(const results_args *a) {
    size_t len = strlen(a->out) + 48;
    char *tmp = malloc(len);
    if (!tmp) return cli_fail(CMD, cce_fail(CCE_ERR_NOMEM, "%s: temporary name", a->out));
    snprintf(tmp, len, "%s.tmp.%ld", a->out, (long)getpid());
    FILE *f = fopen(tmp, "wx");
    if (!f) {
        cce_status s =
            cce_fail(CCE_ERR_IO, "%s: cannot create %s: %s", a->out, tmp, strerror(errno));
        free(tmp);
        return cli_fail(CMD, s);
    }
    cce_status s = cce_results_export(a->file, a->table, a->format, f);
    if (!s && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        s = cce_fail(CCE_ERR_IO, "%s: cannot write %s: %s", a->out, tmp, strerror(errno));
    if (fclose(f) != 0 && !s)
        s = cce_fail(CCE_ERR_IO, "%s: cannot write %s: %s", a->out, tmp, strerror(errno));
    if (!s && rename(tmp, a->out) != 0)
        s = cce_fail(CCE_ERR_IO, "%s: cannot rename %s into place: %s", a->out, tmp,
                     strerror(errno));
    if (s) unlink(tmp);
    free(tmp);
    return s ? cli_fail(CMD, s) : 0;
}

int cmd_results(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    results_args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    if (!a.export_set) return list_runs(a.file);
    if (a.table && strcmp(a.table, "runs") != 0 && strcmp(a.table, "layers") != 0 &&
        (rc = check_table(&a)))
        return rc;
    if (a.out) return export_to_file(&a);
    cce_status s = cce_results_export(a.file, a.table, a.format, stdout);
    return s ? cli_fail(CMD, s) : 0;
}
