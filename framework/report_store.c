/* Compressed model files (report_store.h): the variant through cce_model_save, then /report and
 * the per-tensor provenance attributes, all under a temporary name renamed into place. */
#include "report_store.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report_table.h"
#include "store.h"
#include "store_hdf5.h"

/* ---- Writing helpers (0 on success, -1 on an HDF5 failure) ----------------------------------- */

static int write_scalar_attr(hid_t obj, const char *name, hid_t type, const void *v) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = space >= 0 ? H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int ok = a >= 0 && H5Awrite(a, type, v) >= 0;
    if (a >= 0) H5Aclose(a);
    if (space >= 0) H5Sclose(space);
    return ok ? 0 : -1;
}

static int write_string_attr(hid_t obj, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    int ok = t >= 0 && H5Tset_size(t, strlen(v) + 1) >= 0 &&
             H5Tset_strpad(t, H5T_STR_NULLTERM) >= 0 && H5Tset_cset(t, H5T_CSET_UTF8) >= 0 &&
             !write_scalar_attr(obj, name, t, v);
    if (t >= 0) H5Tclose(t);
    return ok ? 0 : -1;
}

static hid_t create_group(hid_t parent, const char *name) {
    return H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
}

/* ---- The report ------------------------------------------------------------------------------ */

static int write_summary(hid_t report, const cce_compress_summary *s) {
    enum { N = 4 };
    const char *const names[N] = {"blocks", "embeddings", "classifier", "model"};
    const cce_compress_totals *t[N] = {&s->blocks, &s->embeddings, &s->classifier, &s->model};
    int64_t cols[5][N];
    double ratio[N], bits[N];
    for (int i = 0; i < N; i++) {
        cols[0][i] = t[i]->tensors;
        cols[1][i] = t[i]->params_before;
        cols[2][i] = t[i]->params_after;
        cols[3][i] = t[i]->bytes_before;
        cols[4][i] = t[i]->bytes_after;
        ratio[i] = t[i]->byte_ratio;
        bits[i] = t[i]->bits_per_weight;
    }
    static const char *const col_names[5] = {"tensors", "params_before", "params_after",
                                             "bytes_before", "bytes_after"};
    hid_t g = create_group(report, "summary");
    if (g < 0) return -1;
    int ok = !report_table_strings(g, "group", N, names);
    for (int c = 0; ok && c < 5; c++)
        ok = !report_table_col(g, col_names[c], H5T_STD_I64LE, H5T_NATIVE_INT64, N, cols[c]);
    ok = ok && !report_table_col(g, "byte_ratio", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, N, ratio) &&
         !report_table_col(g, "bits_per_weight", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, N, bits) &&
         !write_scalar_attr(g, "seconds", H5T_NATIVE_DOUBLE, &s->seconds) &&
         !write_scalar_attr(g, "calib_seconds", H5T_NATIVE_DOUBLE, &s->calib_seconds);
    H5Gclose(g);
    return ok ? 0 : -1;
}

static int write_plan(hid_t g, const cce_plan *plan) {
    size_t n;
    const cce_plan_row *rows = cce_plan_applied(plan, &n);
    size_t k = n ? n : 1;
    const char **tensor = malloc(k * sizeof *tensor), **source = malloc(k * sizeof *source),
               **rule = malloc(k * sizeof *rule);
    int32_t *layer = malloc(k * sizeof *layer);
    double *value = malloc(k * sizeof *value);
    int ok = tensor && source && rule && layer && value;
    for (size_t i = 0; ok && i < n; i++) {
        tensor[i] = rows[i].tensor;
        source[i] = cce_plan_source_name(rows[i].source);
        rule[i] = rows[i].rule;
        layer[i] = rows[i].layer;
        value[i] = rows[i].value;
    }
    ok = ok && !report_table_col(g, "layer", H5T_STD_I32LE, H5T_NATIVE_INT32, n, layer) &&
         !report_table_strings(g, "tensor", n, tensor) &&
         !report_table_col(g, "value", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, n, value) &&
         !report_table_strings(g, "source", n, source) &&
         !report_table_strings(g, "rule", n, rule) &&
         !write_string_attr(g, "kind",
                            cce_plan_get_kind(plan) == CCE_PLAN_BITS ? "bits" : "ratio") &&
         !write_scalar_attr(g, "target", H5T_NATIVE_DOUBLE, &(double){cce_plan_target(plan)});
    free(tensor);
    free(source);
    free(rule);
    free(layer);
    free(value);
    return ok ? 0 : -1;
}

/* "wanda+rtn": the step names joined. Caller frees. */
static char *joined_strategies(const cce_compress_result *r) {
    size_t len = 1;
    for (size_t k = 0; k < r->n_steps; k++) len += strlen(r->steps[k].strategy) + 1;
    char *s = calloc(len, 1);
    for (size_t k = 0; s && k < r->n_steps; k++) {
        if (k) strcat(s, "+");
        strcat(s, r->steps[k].strategy);
    }
    return s;
}

static int write_steps(hid_t report, const cce_compress_result *r) {
    hid_t g = create_group(report, "steps");
    if (g < 0) return -1;
    int ok = 1;
    for (size_t k = 0; ok && k < r->n_steps; k++) {
        char name[32];
        snprintf(name, sizeof name, "%02zu", k);
        hid_t sg = create_group(g, name);
        ok = sg >= 0 && !write_string_attr(sg, "strategy", r->steps[k].strategy) &&
             !write_string_attr(sg, "params", r->steps[k].params) &&
             !write_string_attr(sg, "params_json", r->steps[k].params_json) &&
             !write_plan(sg, r->plans[k]);
        if (sg >= 0) H5Gclose(sg);
    }
    H5Gclose(g);
    return ok ? 0 : -1;
}

/* The provenance attributes of every tensor with report rows. */
static int write_provenance(hid_t file, const cce_compress_result *r, int n_layers) {
    int ok = 1;
    for (size_t i = 0; ok && i < r->report.n; i++) {
        const char *name = r->report.rows[i].tensor;
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++) seen = !strcmp(r->report.rows[j].tensor, name);
        if (seen) continue;
        char strategies[256] = "";
        json_t *arr = json_array();
        size_t used = 0;
        for (size_t j = i; arr && j < r->report.n; j++) {
            const cce_report_row *row = &r->report.rows[j];
            if (strcmp(row->tensor, name)) continue;
            const char *params = "{}";
            for (size_t k = 0; k < r->n_steps; k++)
                if (!strcmp(r->steps[k].strategy, row->strategy)) params = r->steps[k].params_json;
            used += (size_t)snprintf(strategies + used,
                                     used < sizeof strategies ? sizeof strategies - used : 0,
                                     "%s%s", used ? "+" : "", row->strategy);
            if (used >= sizeof strategies) used = sizeof strategies - 1;
            json_t *o = json_pack("{s:s, s:o}", "strategy", row->strategy, "params",
                                  json_loads(params, 0, NULL));
            if (!o || json_array_append_new(arr, o)) ok = 0;
        }
        char *text = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
        json_decref(arr);
        char path[STORE_PATH_MAX];
        cce_store_path_of(name, n_layers, path, sizeof path);
        if (ok && text && store_path_exists(file, path) == 0) {
            /* a tensor of a removed block: its rows in /report are its provenance */
            H5Eclear2(H5E_DEFAULT);
            free(text);
            continue;
        }
        hid_t obj = text && ok ? H5Oopen(file, path, H5P_DEFAULT) : -1;
        ok = obj >= 0 && !write_string_attr(obj, "strategy", strategies) &&
             !write_string_attr(obj, "params", text);
        if (obj >= 0) H5Oclose(obj);
        free(text);
    }
    return ok ? 0 : -1;
}

static int write_report(hid_t file, const cce_compress_result *r, int n_layers) {
    hid_t g = create_group(file, "report");
    if (g < 0) return -1;
    int32_t n_steps = (int32_t)r->n_steps;
    char *joined = joined_strategies(r);
    int ok = joined && !write_scalar_attr(g, "n_steps", H5T_NATIVE_INT32, &n_steps) &&
             !write_string_attr(g, "strategies", joined) &&
             !report_table_write(g, "rows", &r->report) && !write_summary(g, &r->summary) &&
             !write_steps(g, r) && !write_provenance(file, r, n_layers);
    free(joined);
    H5Gclose(g);
    return ok ? 0 : -1;
}

/* ---- Saving ---------------------------------------------------------------------------------- */

static cce_status fsync_path(const char *path, int flags) {
    int fd = open(path, flags);
    if (fd < 0) return cce_fail(CCE_ERR_IO, "%s: cannot open for fsync: %s", path, strerror(errno));
    int rc = fsync(fd), err = errno;
    close(fd);
    if (rc != 0 && !(err == EINVAL && (flags & O_DIRECTORY)))
        return cce_fail(CCE_ERR_IO, "%s: fsync failed: %s", path, strerror(err));
    return CCE_OK;
}

static cce_status fsync_parent(const char *path) {
    char *dir = strdup(path);
    if (!dir) return CCE_OK;
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    cce_status s = fsync_path(dir, O_RDONLY | O_DIRECTORY);
    free(dir);
    return s;
}

cce_status cce_compress_save(cce_model *variant, const cce_compress_result *r, const char *path,
                             const cce_save_options *opts) {
    if (!variant || !r || !path) return cce_fail(CCE_ERR_ARG, "compress save: NULL argument");
    size_t len = strlen(path) + 48;
    char *tmp = malloc(len);
    if (!tmp) return cce_fail(CCE_ERR_NOMEM, "%s: temporary name", path);
    snprintf(tmp, len, "%s.compress.%ld", path, (long)getpid());
    cce_status s = cce_model_save(variant, tmp, opts);
    if (s) {
        free(tmp);
        return s;
    }
    cce_hdf5_init();
    hid_t file = H5Fopen(tmp, H5F_ACC_RDWR, H5P_DEFAULT);
    if (file < 0) {
        s = store_hdf5_fail(CCE_ERR_HDF5, path, "/", "cannot reopen the new file for the report");
    } else {
        int ok = !write_report(file, r, cce_model_config(variant)->n_layers);
        if (!ok) s = store_hdf5_fail(CCE_ERR_HDF5, path, "/report", "cannot write the report");
        if (H5Fclose(file) < 0 && !s)
            s = store_hdf5_fail(CCE_ERR_HDF5, path, "/", "cannot close the file");
    }
    if (!s) s = fsync_path(tmp, O_RDONLY);
    if (!s && rename(tmp, path) != 0)
        s = cce_fail(CCE_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
    if (s) {
        unlink(tmp);
        free(tmp);
        return s;
    }
    free(tmp);
    return fsync_parent(path);
}

/* ---- Reading --------------------------------------------------------------------------------- */

cce_status cce_compress_report_read(const char *path, cce_report *out) {
    cce_report_init(out);
    cce_hdf5_init();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return store_hdf5_fail(CCE_ERR_IO, path, "/", "cannot open");
    cce_status s = CCE_OK;
    if (store_path_exists(f, "/report/rows") != 1) {
        H5Fclose(f);
        H5Eclear2(H5E_DEFAULT);
        return cce_fail(CCE_ERR_NOT_FOUND, "%s has no /report/rows", path);
    }
    hid_t g = H5Gopen2(f, "/report/rows", H5P_DEFAULT);
    s = g < 0 ? store_hdf5_fail(CCE_ERR_FORMAT, path, "/report/rows", "cannot open")
              : report_table_read(g, path, "/report/rows", out);
    if (g >= 0) H5Gclose(g);
    H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    if (s) cce_report_clear(out);
    return s;
}
