/* Reading results files (results.h): every run's attributes and metrics, and a run's layers
 * table. Readers take no lock: writers only ever rename whole files into place, so the file a
 * reader opens is always complete.
 *
 * A corrupt file must give CCE_ERR_FORMAT, never a crash: every object is checked for its kind,
 * rank and size before it is read, strings are read into buffers of the recorded size, and the
 * metadata of the files the writer makes carries checksums (HDF5 1.8 object formats). */
#include "results_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "report_table.h"
#include "store.h"
#include "store_hdf5.h"

const char *const results_run_attrs[] = {
    "key",   "experiment",   "strategy", "params",         "plan",        "seed",      "protocol",
    "model", "model_sha256", "dataset",  "dataset_sha256", "cce_version", "timestamp", "seconds"};
const size_t results_n_run_attrs = sizeof results_run_attrs / sizeof results_run_attrs[0];

int results_is_run_id(const char *id) {
    size_t n = strlen(id);
    if (n < 2 || n > 10 || id[0] != 'r') return 0;
    for (size_t i = 1; i < n; i++)
        if (id[i] < '0' || id[i] > '9') return 0;
    return 1;
}

/* ---- Opening --------------------------------------------------------------------------------- */

cce_status results_open_file(const char *path, hid_t *out) {
    cce_hdf5_init();
    struct stat st;
    if (stat(path, &st) != 0)
        return cce_fail(CCE_ERR_IO, "%s: cannot open the results file: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return cce_fail(CCE_ERR_FORMAT, "%s: not a results file (not a regular file)", path);
    if (access(path, R_OK) != 0)
        return cce_fail(CCE_ERR_IO, "%s: cannot read the results file: %s", path, strerror(errno));
    /* STRONG: closing the file also closes whatever a failed read left open. */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
        if (fapl >= 0) H5Pclose(fapl);
        return store_hdf5_fail(CCE_ERR_HDF5, path, "/", "cannot set file access properties");
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f < 0)
        return store_hdf5_fail(CCE_ERR_FORMAT, path, "/",
                               "not a readable HDF5 file (corrupt, truncated or of another kind)");
    char *format = NULL;
    int32_t version = 0;
    cce_status s = CCE_OK;
    htri_t has = H5Aexists(f, "format");
    if (has <= 0) {
        s = has < 0 ? store_hdf5_fail(CCE_ERR_FORMAT, path, "/", "cannot list attributes")
                    : cce_fail(CCE_ERR_FORMAT,
                               "%s: not a cce-results file (no format attribute on /)", path);
    } else if ((s = store_read_attr_string(f, path, "/", "format", &format))) {
        cce_error_prefix("not a cce-results file: ");
        if (s != CCE_ERR_NOMEM) s = CCE_ERR_FORMAT;
    } else if (strcmp(format, RESULTS_FORMAT) != 0) {
        s = cce_fail(CCE_ERR_FORMAT, "%s: not a cce-results file (format is '%.64s')", path,
                     format);
    } else if ((s = store_read_attr_i32(f, path, "/", "version", &version))) {
        if (s != CCE_ERR_NOMEM) s = CCE_ERR_FORMAT;
    } else if (version != RESULTS_VERSION) {
        s = cce_fail(CCE_ERR_FORMAT, "%s: cce-results version %d, this build reads version %d",
                     path, (int)version, RESULTS_VERSION);
    }
    free(format);
    if (s) {
        H5Fclose(f);
        H5Eclear2(H5E_DEFAULT);
        return s;
    }
    *out = f;
    return CCE_OK;
}

/* ---- Attributes ------------------------------------------------------------------------------ */

/* A growing list of (name, value) pairs; values are strings (attributes) or doubles (metrics). */
typedef struct attr_list {
    size_t n, cap;
    char **names;   /* [n] */
    char **strings; /* [n] or NULL when reading metrics */
    double *values; /* [n] or NULL when reading attributes */
} attr_list;

typedef struct attr_ctx {
    const char *file, *objpath;
    int metrics; /* 1: numeric values into values, else text into strings */
    attr_list *list;
    cce_status status;
} attr_ctx;

static int list_grow(attr_list *l, int metrics) {
    if (l->n < l->cap) return 0;
    size_t cap = l->cap ? 2 * l->cap : 16;
    char **names = realloc(l->names, cap * sizeof *names);
    if (!names) return -1;
    l->names = names;
    if (metrics) {
        double *v = realloc(l->values, cap * sizeof *v);
        if (!v) return -1;
        l->values = v;
    } else {
        char **v = realloc(l->strings, cap * sizeof *v);
        if (!v) return -1;
        l->strings = v;
    }
    l->cap = cap;
    return 0;
}

/* Reads a scalar numeric attribute as a double, or as text (integers exactly, floats %.17g). */
static cce_status read_number(hid_t a, H5T_class_t cls, hid_t type, const attr_ctx *c,
                              const char *name, double *num, char text[32]) {
    herr_t rc;
    if (cls == H5T_FLOAT) {
        rc = H5Aread(a, H5T_NATIVE_DOUBLE, num);
        if (rc >= 0 && text) snprintf(text, 32, "%.17g", *num);
    } else if (H5Tget_sign(type) == H5T_SGN_NONE) {
        unsigned long long v = 0;
        rc = H5Aread(a, H5T_NATIVE_ULLONG, &v);
        *num = (double)v;
        if (rc >= 0 && text) snprintf(text, 32, "%llu", v);
    } else {
        long long v = 0;
        rc = H5Aread(a, H5T_NATIVE_LLONG, &v);
        *num = (double)v;
        if (rc >= 0 && text) snprintf(text, 32, "%lld", v);
    }
    if (rc < 0) {
        char what[160];
        snprintf(what, sizeof what, "cannot read attribute %.100s", name);
        return store_hdf5_fail(CCE_ERR_FORMAT, c->file, c->objpath, what);
    }
    return CCE_OK;
}

static herr_t attr_cb(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
    (void)info;
    attr_ctx *c = data;
    attr_list *l = c->list;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t type = a >= 0 ? H5Aget_type(a) : -1;
    hid_t space = a >= 0 ? H5Aget_space(a) : -1;
    H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
    cce_status s = CCE_OK;
    char *text = NULL;
    double num = 0;
    if (type < 0 || space < 0) {
        s = store_hdf5_fail(CCE_ERR_FORMAT, c->file, c->objpath, "cannot inspect an attribute");
    } else if (H5Sget_simple_extent_type(space) != H5S_SCALAR) {
        s = cce_fail(CCE_ERR_FORMAT, "%s: %s: attribute %.100s is not a scalar", c->file,
                     c->objpath, name);
    } else if (cls == H5T_STRING && !c->metrics) {
        s = store_read_attr_string(loc, c->file, c->objpath, name, &text);
        if (s && s != CCE_ERR_NOMEM) s = CCE_ERR_FORMAT;
    } else if (cls == H5T_INTEGER || cls == H5T_FLOAT) {
        char buf[32];
        s = read_number(a, cls, type, c, name, &num, c->metrics ? NULL : buf);
        if (!s && !c->metrics && !(text = strdup(buf)))
            s = cce_fail(CCE_ERR_NOMEM, "%s: %s: attribute %.100s", c->file, c->objpath, name);
    } else {
        s = cce_fail(CCE_ERR_FORMAT, "%s: %s: attribute %.100s is not a %s", c->file, c->objpath,
                     name, c->metrics ? "number" : "string or number");
    }
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (a >= 0) H5Aclose(a);
    char *copy = s ? NULL : strdup(name);
    if (!s && (!copy || list_grow(l, c->metrics)))
        s = cce_fail(CCE_ERR_NOMEM, "%s: %s: attribute %.100s", c->file, c->objpath, name);
    if (s) {
        free(copy);
        free(text);
        c->status = s;
        return -1;
    }
    l->names[l->n] = copy;
    if (c->metrics)
        l->values[l->n] = num;
    else
        l->strings[l->n] = text;
    l->n++;
    return 0;
}

/* Reads every attribute of obj into l, in creation order when the object tracks it (runs and
 * metrics groups written by cce_results_add do), else by name. */
static cce_status read_attrs(hid_t obj, const char *file, const char *objpath, int metrics,
                             attr_list *l) {
    H5_index_t index = H5_INDEX_NAME;
    hid_t cpl = H5Gget_create_plist(obj);
    unsigned flags = 0;
    if (cpl >= 0 && H5Pget_attr_creation_order(cpl, &flags) >= 0 && (flags & H5P_CRT_ORDER_TRACKED))
        index = H5_INDEX_CRT_ORDER;
    if (cpl >= 0) H5Pclose(cpl);
    H5Eclear2(H5E_DEFAULT);
    attr_ctx c = {file, objpath, metrics, l, CCE_OK};
    hsize_t pos = 0;
    if (H5Aiterate2(obj, index, H5_ITER_INC, &pos, attr_cb, &c) < 0) {
        if (c.status) {
            H5Eclear2(H5E_DEFAULT);
            return c.status;
        }
        return store_hdf5_fail(CCE_ERR_FORMAT, file, objpath, "cannot list attributes");
    }
    return CCE_OK;
}

/* ---- Runs ------------------------------------------------------------------------------------ */

static void run_info_clear(cce_run_info *r) {
    for (size_t i = 0; i < r->n_attrs; i++) {
        free(r->attr_names[i]);
        free(r->attr_values[i]);
    }
    for (size_t i = 0; i < r->n_metrics; i++) free(r->metric_names[i]);
    for (size_t i = 0; i < r->n_tables; i++) free(r->table_names[i]);
    free(r->table_names);
    free(r->table_rows);
    free(r->attr_names);
    free(r->attr_values);
    free(r->metric_names);
    free(r->metric_values);
    memset(r, 0, sizeof *r);
}

/* Opens group `name` of parent, which must exist and be a group (CCE_ERR_FORMAT otherwise). */
static cce_status open_group(hid_t parent, const char *name, const char *file, const char *objpath,
                             hid_t *out) {
    htri_t e = H5Lexists(parent, name, H5P_DEFAULT);
    H5O_info_t info;
    if (e <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return cce_fail(CCE_ERR_FORMAT, "%s: %s is missing", file, objpath);
    }
    if (H5Oget_info_by_name2(parent, name, &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0)
        return store_hdf5_fail(CCE_ERR_FORMAT, file, objpath, "cannot inspect");
    if (info.type != H5O_TYPE_GROUP)
        return cce_fail(CCE_ERR_FORMAT, "%s: %s is not a group", file, objpath);
    hid_t g = H5Gopen2(parent, name, H5P_DEFAULT);
    if (g < 0) return store_hdf5_fail(CCE_ERR_FORMAT, file, objpath, "cannot open");
    *out = g;
    return CCE_OK;
}

static cce_status list_tables(hid_t run, const char *file, const char *objpath, cce_run_info *r);

/* Reads run `id` of the /runs group into r: attributes (all of results_run_attrs present, the key
 * not empty), metrics, and the size of a consistent layers table. */
static cce_status read_run(hid_t runs, const char *file, const char *id, cce_run_info *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", id);
    char objpath[64], sub[80];
    snprintf(objpath, sizeof objpath, "/runs/%s", id);
    hid_t g = H5I_INVALID_HID, m = H5I_INVALID_HID, layers = H5I_INVALID_HID;
    attr_list attrs = {0}, metrics = {0};
    cce_status s = open_group(runs, id, file, objpath, &g);
    if (s) goto done;
    if ((s = read_attrs(g, file, objpath, 0, &attrs))) goto done;
    r->n_attrs = attrs.n;
    r->attr_names = attrs.names;
    r->attr_values = attrs.strings;
    attrs = (attr_list){0};
    for (size_t i = 0; i < results_n_run_attrs; i++) {
        const char *v = cce_run_attr(r, results_run_attrs[i]);
        if (!v) {
            s = cce_fail(CCE_ERR_FORMAT, "%s: %s: attribute %s is missing (an incomplete run)",
                         file, objpath, results_run_attrs[i]);
            goto done;
        }
    }
    if (!*cce_run_attr(r, "key")) {
        s = cce_fail(CCE_ERR_FORMAT, "%s: %s: the run key is empty", file, objpath);
        goto done;
    }
    snprintf(sub, sizeof sub, "%s/metrics", objpath);
    if ((s = open_group(g, "metrics", file, sub, &m))) goto done;
    if ((s = read_attrs(m, file, sub, 1, &metrics))) goto done;
    r->n_metrics = metrics.n;
    r->metric_names = metrics.names;
    r->metric_values = metrics.values;
    metrics = (attr_list){0};
    snprintf(sub, sizeof sub, "%s/layers", objpath);
    if ((s = open_group(g, "layers", file, sub, &layers))) goto done;
    if ((s = report_table_count(layers, file, sub, &r->n_layer_rows))) goto done;
    s = list_tables(g, file, objpath, r);
done:
    if (layers >= 0) H5Gclose(layers);
    if (m >= 0) H5Gclose(m);
    if (g >= 0) H5Gclose(g);
    for (size_t i = 0; i < attrs.n; i++) {
        free(attrs.names[i]);
        free(attrs.strings[i]);
    }
    for (size_t i = 0; i < metrics.n; i++) free(metrics.names[i]);
    free(attrs.names);
    free(attrs.strings);
    free(metrics.names);
    free(metrics.values);
    if (s) run_info_clear(r);
    return s;
}

herr_t results_collect_name(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g;
    (void)info;
    results_name_list *l = data;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **names = realloc(l->names, cap * sizeof *names);
        if (!names) {
            l->failed = 1;
            return -1;
        }
        l->names = names;
        l->cap = cap;
    }
    if (!(l->names[l->n] = strdup(name))) {
        l->failed = 1;
        return -1;
    }
    l->n++;
    return 0;
}

void results_name_list_free(results_name_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof *l);
}

/* The extra tables of the run group `run` (children marked as tables), in name order, into r. */
static cce_status list_tables(hid_t run, const char *file, const char *objpath, cce_run_info *r) {
    results_name_list names = {0};
    hsize_t pos = 0;
    cce_status s = CCE_OK;
    if (H5Literate(run, H5_INDEX_NAME, H5_ITER_INC, &pos, results_collect_name, &names) < 0) {
        s = names.failed ? cce_fail(CCE_ERR_NOMEM, "%s: %s: table names", file, objpath)
                         : store_hdf5_fail(CCE_ERR_FORMAT, file, objpath, "cannot list the run");
        goto done;
    }
    if (names.n && (!(r->table_names = calloc(names.n, sizeof *r->table_names)) ||
                    !(r->table_rows = calloc(names.n, sizeof *r->table_rows)))) {
        s = cce_fail(CCE_ERR_NOMEM, "%s: %s: table names", file, objpath);
        goto done;
    }
    for (size_t i = 0; i < names.n; i++) {
        int64_t rows = 0;
        if (!strcmp(names.names[i], "metrics") || !strcmp(names.names[i], "layers") ||
            !results_table_probe(run, names.names[i], &rows))
            continue;
        if (rows < 0) {
            s = cce_fail(CCE_ERR_FORMAT, "%s: %s/%.64s: the table's row count is unreadable", file,
                         objpath, names.names[i]);
            goto done;
        }
        r->table_names[r->n_tables] = names.names[i];
        r->table_rows[r->n_tables++] = (size_t)rows;
        names.names[i] = NULL;
    }
done:
    for (size_t i = 0; i < names.n; i++) free(names.names[i]);
    free(names.names);
    H5Eclear2(H5E_DEFAULT);
    return s;
}

/* Run ids in numeric order ("r000010" after "r000009", and after "r99999" if ever written). */
static int compare_ids(const void *a, const void *b) {
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    size_t nx = strlen(x), ny = strlen(y);
    if (nx != ny) {
        /* equal numbers of different widths ("r01", "r1") cannot both be ids the writer made */
        unsigned long long vx = strtoull(x + 1, NULL, 10), vy = strtoull(y + 1, NULL, 10);
        return vx < vy ? -1 : vx > vy;
    }
    return strcmp(x, y);
}

cce_status results_read_file(hid_t f, const char *path, cce_results_runs *out) {
    memset(out, 0, sizeof *out);
    hid_t runs = H5I_INVALID_HID;
    results_name_list names = {0};
    cce_status s = open_group(f, "runs", path, "/runs", &runs);
    if (s) return s;
    hsize_t pos = 0;
    if (H5Literate(runs, H5_INDEX_NAME, H5_ITER_INC, &pos, results_collect_name, &names) < 0) {
        s = names.failed ? cce_fail(CCE_ERR_NOMEM, "%s: /runs: run names", path)
                         : store_hdf5_fail(CCE_ERR_FORMAT, path, "/runs", "cannot list the runs");
        goto done;
    }
    for (size_t i = 0; i < names.n; i++) {
        if (!results_is_run_id(names.names[i])) {
            s = cce_fail(CCE_ERR_FORMAT, "%s: /runs/%.64s is not a run id (r000001, ...)", path,
                         names.names[i]);
            goto done;
        }
    }
    if (names.n) qsort(names.names, names.n, sizeof *names.names, compare_ids);
    if (names.n && !(out->runs = calloc(names.n, sizeof *out->runs))) {
        s = cce_fail(CCE_ERR_NOMEM, "%s: %zu runs", path, names.n);
        goto done;
    }
    for (size_t i = 0; i < names.n; i++) {
        if ((s = read_run(runs, path, names.names[i], &out->runs[i]))) goto done;
        out->n++;
    }
done:
    for (size_t i = 0; i < names.n; i++) free(names.names[i]);
    free(names.names);
    H5Gclose(runs);
    H5Eclear2(H5E_DEFAULT);
    if (s) cce_results_runs_free(out);
    return s;
}

cce_status results_read_layers_file(hid_t f, const char *path, const char *id, cce_report *out) {
    cce_report_init(out);
    if (!id || !results_is_run_id(id))
        return cce_fail(CCE_ERR_ARG, "%s: '%.64s' is not a run id (r000001, ...)", path,
                        id ? id : "(null)");
    char runpath[64], objpath[80];
    snprintf(runpath, sizeof runpath, "/runs/%s", id);
    snprintf(objpath, sizeof objpath, "%s/layers", runpath);
    int e = store_path_exists(f, runpath);
    H5Eclear2(H5E_DEFAULT);
    if (e != 1) return cce_fail(CCE_ERR_NOT_FOUND, "%s: no run %s", path, id);
    hid_t rg = H5Gopen2(f, runpath, H5P_DEFAULT), g = H5I_INVALID_HID;
    cce_status s = rg < 0 ? store_hdf5_fail(CCE_ERR_FORMAT, path, runpath, "cannot open")
                          : open_group(rg, "layers", path, objpath, &g);
    if (!s) s = report_table_read(g, path, objpath, out);
    if (g >= 0) H5Gclose(g);
    if (rg >= 0) H5Gclose(rg);
    H5Eclear2(H5E_DEFAULT);
    return s;
}

/* ---- Public ---------------------------------------------------------------------------------- */

cce_status cce_results_read(const char *path, cce_results_runs *out) {
    if (!out) return cce_fail(CCE_ERR_ARG, "results read: NULL output");
    memset(out, 0, sizeof *out);
    if (!path || !*path) return cce_fail(CCE_ERR_ARG, "results read: no file named");
    hid_t f;
    cce_status s = results_open_file(path, &f);
    if (s) return s;
    s = results_read_file(f, path, out);
    H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    return s;
}

void cce_results_runs_free(cce_results_runs *runs) {
    if (!runs) return;
    for (size_t i = 0; i < runs->n; i++) run_info_clear(&runs->runs[i]);
    free(runs->runs);
    runs->runs = NULL;
    runs->n = 0;
}

const char *cce_run_attr(const cce_run_info *run, const char *name) {
    if (!run || !name) return NULL;
    for (size_t i = 0; i < run->n_attrs; i++)
        if (!strcmp(run->attr_names[i], name)) return run->attr_values[i];
    return NULL;
}

cce_status cce_results_read_layers(const char *path, const char *id, cce_report *out) {
    if (!out) return cce_fail(CCE_ERR_ARG, "results read layers: NULL output");
    cce_report_init(out);
    if (!path || !*path) return cce_fail(CCE_ERR_ARG, "results read layers: no file named");
    hid_t f;
    cce_status s = results_open_file(path, &f);
    if (s) return s;
    s = results_read_layers_file(f, path, id, out);
    H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    return s;
}
