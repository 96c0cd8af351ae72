/* Selecting the runs of a results file for figures and tables (figure.h): the run filter and the
 * caption line. */
#include <fnmatch.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "figure.h"

static int parse_number(const char *s, double *v) {
    char *end;
    if (!*s) return 0;
    *v = strtod(s, &end);
    return *end == '\0';
}

/* 1 if text matches one of the '|'-separated values of alts (wildcards allowed; numbers compare
 * as numbers). */
static int match_alts(const char *text, const char *alts, size_t alts_len) {
    const char *p = alts, *end = alts + alts_len;
    while (p <= end) {
        const char *bar = memchr(p, '|', (size_t)(end - p));
        size_t len = bar ? (size_t)(bar - p) : (size_t)(end - p);
        char pat[256];
        if (len < sizeof pat) {
            memcpy(pat, p, len);
            pat[len] = '\0';
            double a, b;
            if (fnmatch(pat, text, 0) == 0) return 1;
            if (parse_number(pat, &a) && parse_number(text, &b) && a == b) return 1;
        }
        if (!bar) break;
        p = bar + 1;
    }
    return 0;
}

/* The value of parameter name in the run's params JSON (first step that has it) as text in buf;
 * 0 if none. */
static int param_text(const cce_run_info *run, const char *name, char *buf, size_t cap) {
    const char *params = cce_run_attr(run, "params");
    if (!params || !*params) return 0;
    json_t *root = json_loads(params, 0, NULL);
    if (!root) return 0;
    int found = 0;
    size_t i;
    json_t *step;
    json_t *arr = json_is_array(root) ? root : NULL;
    json_array_foreach(arr, i, step) {
        json_t *v = json_object_get(json_object_get(step, "params"), name);
        if (!v) continue;
        if (json_is_string(v))
            snprintf(buf, cap, "%s", json_string_value(v));
        else if (json_is_number(v))
            snprintf(buf, cap, "%.17g", json_number_value(v));
        else if (json_is_true(v) || json_is_false(v))
            snprintf(buf, cap, "%s", json_is_true(v) ? "true" : "false");
        else
            continue;
        found = 1;
        break;
    }
    json_decref(root);
    return found;
}

static int term_match(const cce_run_info *run, const char *term, size_t len) {
    char name[128];
    const char *eq = memchr(term, '=', len);
    const char *vals;
    size_t vals_len;
    int negate = 0;
    if (!eq) {
        if (len == 0 || len >= sizeof name) return -1;
        const char *s = cce_run_attr(run, "strategy");
        return s && match_alts(s, term, len);
    }
    size_t nlen = (size_t)(eq - term);
    if (nlen > 0 && term[nlen - 1] == '!') {
        negate = 1;
        nlen--;
    }
    if (nlen == 0 || nlen >= sizeof name) return -1;
    memcpy(name, term, nlen);
    name[nlen] = '\0';
    vals = eq + 1;
    vals_len = len - (size_t)(vals - term);
    const char *v = strcmp(name, "id") == 0 ? run->id : cce_run_attr(run, name);
    char buf[128];
    if (!v && param_text(run, name, buf, sizeof buf)) v = buf;
    int m = v ? match_alts(v, vals, vals_len) : 0;
    return negate ? !m : m;
}

int cce_figure_filter_match(const cce_run_info *run, const char *filter) {
    if (!filter) return 1;
    const char *p = filter;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len > 0) {
            int m = term_match(run, p, len);
            if (m < 0) {
                cce_fail(CCE_ERR_ARG,
                         "run filter '%s': bad term '%.*s' (NAME=V1|V2, NAME!=V or a strategy "
                         "name)",
                         filter, (int)len, p);
                return -1;
            }
            if (!m) return 0;
        }
        p += len;
        if (*p == ',') p++;
    }
    return 1;
}

void cce_figure_runs_free(cce_figure_runs *r) {
    if (!r) return;
    cce_results_runs_free(&r->all);
    free(r->sel);
    memset(r, 0, sizeof *r);
}

cce_status cce_figure_runs_read(const char *path, const char *filter, cce_figure_runs *out) {
    memset(out, 0, sizeof *out);
    if (filter && !*filter) filter = NULL;
    cce_status s = cce_results_read(path, &out->all);
    if (s) return s;
    if (out->all.n == 0) return cce_fail(CCE_ERR_NOT_FOUND, "%s: the file holds no runs", path);
    out->sel = calloc(out->all.n, sizeof *out->sel);
    if (!out->sel) return cce_fail(CCE_ERR_NOMEM, "%s: run list", path);
    for (size_t i = 0; i < out->all.n; i++) {
        int m = cce_figure_filter_match(&out->all.runs[i], filter);
        if (m < 0) return CCE_ERR_ARG;
        if (m) out->sel[out->n++] = &out->all.runs[i];
    }
    if (out->n == 0) {
        char have[512] = "";
        size_t used = 0;
        for (size_t i = 0; i < out->all.n && used + 40 < sizeof have; i++) {
            const char *st = cce_run_attr(&out->all.runs[i], "strategy");
            if (!st) continue;
            int seen = 0;
            for (size_t j = 0; j < i; j++) {
                const char *o = cce_run_attr(&out->all.runs[j], "strategy");
                if (o && strcmp(o, st) == 0) seen = 1;
            }
            if (!seen)
                used += (size_t)snprintf(have + used, sizeof have - used, "%s%.32s",
                                         used ? ", " : "", st);
        }
        return cce_fail(CCE_ERR_NOT_FOUND,
                        "%s: the run filter '%s' matches none of its %zu runs (strategies: %s)",
                        path, filter, out->all.n, have);
    }
    return CCE_OK;
}

char *cce_figure_caption(const cce_figure_runs *r) {
    if (!r || r->n == 0) return strdup("");
    const cce_run_info *run = r->sel[0];
    const char *model = cce_run_attr(run, "model"), *data = cce_run_attr(run, "dataset");
    const char *proto = cce_run_attr(run, "protocol"), *exp = cce_run_attr(run, "experiment");
    for (size_t i = 1; i < r->n && exp; i++) {
        const char *e = cce_run_attr(r->sel[i], "experiment");
        if (!e || strcmp(e, exp) != 0) exp = NULL;
    }
    /* the protocol line without its sha256 (too long for a caption) */
    char p[256] = "";
    if (proto) {
        if (strncmp(proto, "protocol: ", 10) == 0) proto += 10;
        snprintf(p, sizeof p, "%s", proto);
        char *sha = strstr(p, " sha256=");
        if (sha) *sha = '\0';
        char *data_part = strstr(p, ", data=");
        if (data_part) *data_part = '\0';
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return NULL;
    fprintf(f, "%s on %s", model && *model ? model : "model ?", data && *data ? data : "data ?");
    if (*p) fprintf(f, ": %s", p);
    if (exp && *exp) fprintf(f, " (experiment %s)", exp);
    fclose(f);
    return text;
}
