/* Writing results files (results.h): the lock, the run index, and adding runs through a copy of
 * the file that is renamed over it.
 *
 * Temporary files are named "<path>.tmp.<pid>.<n>" (n counts up within the process) and created
 * with O_EXCL beside the file, so the rename stays within one file system. A writer killed between
 * creating one and renaming it leaves it behind; cce_results_open removes such orphans while it
 * holds the lock (no other writer can then be working on them) when their pid is no longer alive.
 * The lock file "<path>.lock" stays in place after close: removing it would let two writers lock
 * different files of the same name. */
#include "results_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "report_table.h"
#include "store.h"
#include "store_hdf5.h"

struct cce_results {
    char *path;         /* the results file */
    int lock_fd;        /* "<path>.lock", held with flock(LOCK_EX) */
    size_t n, cap;      /* recorded runs */
    char (*ids)[16];    /* [n] run ids, in file order */
    char **keys;        /* [n] run keys */
    unsigned long next; /* number of the next run id */
};

/* Temporary names are unique within the process by this counter, across processes by the pid. */
static atomic_ulong temp_counter;

/* "<path>.tmp.<pid>.<n>", malloc'd. */
static char *temp_name(const char *path) {
    size_t len = strlen(path) + 64;
    char *t = malloc(len);
    if (t)
        snprintf(t, len, "%s.tmp.%ld.%lu", path, (long)getpid(),
                 (unsigned long)atomic_fetch_add(&temp_counter, 1));
    return t;
}

/* The folder of path ("." when it has none), malloc'd. */
static char *parent_dir(const char *path) {
    char *dir = malloc(strlen(path) + 2);
    if (!dir) return NULL;
    strcpy(dir, path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    return dir;
}

static cce_status fsync_path(const char *path, int flags) {
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0) return cce_fail(CCE_ERR_IO, "%s: cannot open for fsync: %s", path, strerror(errno));
    int rc = fsync(fd), err = errno;
    close(fd);
    /* Some file systems cannot fsync a folder (EINVAL); the data itself is synced already. */
    if (rc != 0 && !(err == EINVAL && (flags & O_DIRECTORY)))
        return cce_fail(CCE_ERR_IO, "%s: fsync failed: %s", path, strerror(err));
    return CCE_OK;
}

/* fsyncs tmp, renames it over path and fsyncs the folder. tmp is removed if it could not be
 * renamed; *renamed (may be NULL) tells whether it was (the folder's fsync may still fail). */
static cce_status commit(const char *tmp, const char *path, int *renamed) {
    if (renamed) *renamed = 0;
    cce_status s = fsync_path(tmp, O_RDONLY);
    if (!s && rename(tmp, path) != 0)
        s = cce_fail(CCE_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
    if (s) {
        unlink(tmp);
        return s;
    }
    if (renamed) *renamed = 1;
    char *dir = parent_dir(path);
    if (!dir) return cce_fail(CCE_ERR_NOMEM, "%s: folder name", path);
    s = fsync_path(dir, O_RDONLY | O_DIRECTORY);
    free(dir);
    return s;
}

/* Creates the missing folders above path (mode 0777 less the umask). */
static cce_status make_parents(const char *path) {
    char *dir = parent_dir(path);
    if (!dir) return cce_fail(CCE_ERR_NOMEM, "%s: folder name", path);
    cce_status s = CCE_OK;
    for (char *p = dir + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(dir, 0777) != 0 && errno != EEXIST)
            s = cce_fail(CCE_ERR_IO, "%s: cannot create the folder %s: %s", path, dir,
                         strerror(errno));
        *p = c;
        if (s || c == '\0') break;
    }
    free(dir);
    return s;
}

/* ---- The lock and orphaned temporary files --------------------------------------------------- */

static cce_status take_lock(cce_results *r) {
    size_t len = strlen(r->path) + 8;
    char *lock = malloc(len);
    if (!lock) return cce_fail(CCE_ERR_NOMEM, "%s: lock file name", r->path);
    snprintf(lock, len, "%s.lock", r->path);
    /* A new open file description every time: flock locks belong to it, so a second open in
     * this process conflicts with the first exactly as another process would. */
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    cce_status s = CCE_OK;
    if (fd < 0) {
        s = cce_fail(CCE_ERR_IO, "%s: cannot open the lock file %s: %s", r->path, lock,
                     strerror(errno));
    } else {
        int rc;
        while ((rc = flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
        }
        if (rc != 0) {
            int err = errno;
            close(fd);
            fd = -1;
            s = err == EWOULDBLOCK
                    ? cce_fail(CCE_ERR_STATE,
                               "%s: locked by another writer (%s is held): another process or "
                               "experiment is adding runs to this results file",
                               r->path, lock)
                    : cce_fail(CCE_ERR_IO, "%s: cannot lock %s: %s", r->path, lock, strerror(err));
        }
    }
    free(lock);
    r->lock_fd = fd;
    return s;
}

/* 1 if name is "<base>.tmp.<pid>.<n>" of a writer that is no longer running (or of this process,
 * which has none in progress while it opens the file). */
static int is_orphan(const char *name, const char *base) {
    size_t n = strlen(base);
    if (strncmp(name, base, n) != 0 || strncmp(name + n, ".tmp.", 5) != 0) return 0;
    const char *p = name + n + 5;
    char *end;
    errno = 0;
    long pid = strtol(p, &end, 10);
    if (end == p || *end != '.' || errno || pid <= 0) return 0;
    p = end + 1;
    strtoul(p, &end, 10);
    if (end == p || *end != '\0' || (*p < '0' || *p > '9')) return 0;
    if (pid == (long)getpid()) return 1;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* Removes the orphaned temporary files of path. Called with the lock held. */
static void remove_orphans(const char *path) {
    char *dir = parent_dir(path);
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d) {
        free(dir);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_orphan(e->d_name, base)) continue;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *full = malloc(len);
        if (full) {
            snprintf(full, len, "%s/%s", dir, e->d_name);
            unlink(full);
            free(full);
        }
    }
    closedir(d);
    free(dir);
}

/* ---- HDF5 pieces ----------------------------------------------------------------------------- */

/* File access for writing: SEMI (closing fails if an object is still open rather than delaying
 * the close past the fsync) and the HDF5 1.8 object formats, whose metadata carries checksums. */
static hid_t write_fapl(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && (H5Pset_fclose_degree(fapl, H5F_CLOSE_SEMI) < 0 ||
                      H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST) < 0)) {
        H5Pclose(fapl);
        return H5I_INVALID_HID;
    }
    return fapl;
}

/* Creates group `name` of parent with its attributes kept in creation order. */
static hid_t create_ordered_group(hid_t parent, const char *name) {
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    hid_t g = H5I_INVALID_HID;
    if (gcpl >= 0 &&
        H5Pset_attr_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) >= 0)
        g = H5Gcreate2(parent, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (gcpl >= 0) H5Pclose(gcpl);
    return g;
}

/* The current time as ISO 8601 UTC ("2024-05-01T12:00:00Z"). */
static void now_utc(char buf[32]) {
    time_t t = time(NULL);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, 32, "unknown");
}

/* Writes an empty results file at a temporary name and renames it to r->path. */
static cce_status create_empty(cce_results *r) {
    char *tmp = temp_name(r->path);
    hid_t fapl = write_fapl(), f = H5I_INVALID_HID, runs = H5I_INVALID_HID;
    cce_status s = CCE_OK;
    char created[32];
    now_utc(created);
    if (!tmp) {
        s = cce_fail(CCE_ERR_NOMEM, "%s: temporary name", r->path);
        goto done;
    }
    if (fapl < 0) {
        s = store_hdf5_fail(CCE_ERR_HDF5, r->path, "/", "cannot set file access properties");
        goto done;
    }
    errno = 0;
    if ((f = H5Fcreate(tmp, H5F_ACC_EXCL, H5P_DEFAULT, fapl)) < 0) {
        int err = errno;
        H5Eclear2(H5E_DEFAULT);
        s = cce_fail(CCE_ERR_IO, "%s: cannot create the temporary file %s: %s", r->path, tmp,
                     err ? strerror(err) : "HDF5 refused");
        goto done;
    }
    int32_t version = RESULTS_VERSION;
    if ((s = store_write_string(f, r->path, "/", "format", RESULTS_FORMAT)) ||
        (s = store_write_attr(f, r->path, "/", "version", H5T_STD_I32LE, H5T_NATIVE_INT32, -1,
                              &version)) ||
        (s = store_write_string(f, r->path, "/", "created", created)))
        goto done;
    if ((runs = H5Gcreate2(f, "runs", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
        s = store_hdf5_fail(CCE_ERR_HDF5, r->path, "/runs", "cannot create group");
        goto done;
    }
done:
    if (runs >= 0) H5Gclose(runs);
    if (f >= 0 && H5Fclose(f) < 0 && !s)
        s = store_hdf5_fail(CCE_ERR_HDF5, r->path, "/", "cannot close the new file");
    if (fapl >= 0) H5Pclose(fapl);
    H5Eclear2(H5E_DEFAULT);
    if (tmp && f >= 0) {
        if (s)
            unlink(tmp);
        else
            s = commit(tmp, r->path, NULL);
    }
    free(tmp);
    return s;
}

/* Copies the bytes of src to a new file dst (O_EXCL) with src's permissions. dst is removed on
 * failure. */
static cce_status copy_file(const char *src, const char *dst) {
    enum { BUF = 1 << 20 };
    int in = open(src, O_RDONLY | O_CLOEXEC), out = -1;
    char *buf = NULL; /* [BUF] */
    cce_status s = CCE_OK;
    struct stat st;
    if (in < 0 || fstat(in, &st) != 0) {
        s = cce_fail(CCE_ERR_IO, "%s: cannot read the results file: %s", src, strerror(errno));
        goto done;
    }
    if ((out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 0777)) < 0) {
        s = cce_fail(CCE_ERR_IO, "%s: cannot create the temporary file %s: %s", src, dst,
                     strerror(errno));
        goto done;
    }
    if (!(buf = malloc(BUF))) {
        s = cce_fail(CCE_ERR_NOMEM, "%s: copy buffer", src);
        goto done;
    }
    for (;;) {
        ssize_t got = read(in, buf, BUF);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            s = cce_fail(CCE_ERR_IO, "%s: read failed: %s", src, strerror(errno));
            goto done;
        }
        if (got == 0) break;
        for (ssize_t off = 0; off < got;) {
            ssize_t put = write(out, buf + off, (size_t)(got - off));
            if (put < 0 && errno == EINTR) continue;
            if (put <= 0) {
                s = cce_fail(CCE_ERR_IO, "%s: cannot write %s: %s", src, dst,
                             put < 0 ? strerror(errno) : "no progress");
                goto done;
            }
            off += put;
        }
    }
done:
    free(buf);
    if (in >= 0) close(in);
    if (out >= 0 && close(out) != 0 && !s)
        s = cce_fail(CCE_ERR_IO, "%s: cannot write %s: %s", src, dst, strerror(errno));
    if (s && out >= 0) unlink(dst);
    return s;
}

/* ---- The run index --------------------------------------------------------------------------- */

/* Makes room for one more run. */
static cce_status index_reserve(cce_results *r) {
    if (r->n < r->cap) return CCE_OK;
    size_t cap = r->cap ? 2 * r->cap : 32;
    char(*ids)[16] = realloc(r->ids, cap * sizeof *ids);
    if (!ids) return cce_fail(CCE_ERR_NOMEM, "%s: run index", r->path);
    r->ids = ids;
    char **keys = realloc(r->keys, cap * sizeof *keys);
    if (!keys) return cce_fail(CCE_ERR_NOMEM, "%s: run index", r->path);
    r->keys = keys;
    r->cap = cap;
    return CCE_OK;
}

/* Appends a run to the index, which has room for it (index_reserve); takes key. */
static void index_append(cce_results *r, const char *id, char *key) {
    r->keys[r->n] = key;
    snprintf(r->ids[r->n], sizeof r->ids[0], "%s", id);
    r->n++;
    unsigned long v = strtoul(id + 1, NULL, 10);
    if (v >= r->next) r->next = v + 1;
}

static void index_remove(cce_results *r, size_t i) {
    free(r->keys[i]);
    memmove(r->ids + i, r->ids + i + 1, (r->n - i - 1) * sizeof *r->ids);
    memmove(r->keys + i, r->keys + i + 1, (r->n - i - 1) * sizeof *r->keys);
    r->n--;
}

/* Reads the runs of the existing file into the index (which validates the whole file). */
static cce_status load_index(cce_results *r) {
    cce_results_runs runs;
    cce_status s = cce_results_read(r->path, &runs);
    for (size_t i = 0; !s && i < runs.n; i++) {
        char *key = NULL;
        if (!(s = index_reserve(r)) && !(key = strdup(cce_run_attr(&runs.runs[i], "key"))))
            s = cce_fail(CCE_ERR_NOMEM, "%s: run index", r->path);
        if (!s) index_append(r, runs.runs[i].id, key);
    }
    cce_results_runs_free(&runs);
    return s;
}

/* ---- Public ---------------------------------------------------------------------------------- */

void cce_results_close(cce_results *r) {
    if (!r) return;
    if (r->lock_fd >= 0) close(r->lock_fd); /* releases the flock */
    for (size_t i = 0; i < r->n; i++) free(r->keys[i]);
    free(r->keys);
    free(r->ids);
    free(r->path);
    free(r);
}

cce_status cce_results_open(const char *path, cce_results **out) {
    if (!out) return cce_fail(CCE_ERR_ARG, "results open: NULL output");
    *out = NULL;
    if (!path || !*path) return cce_fail(CCE_ERR_ARG, "results open: no file named");
    cce_hdf5_init();
    cce_results *r = calloc(1, sizeof *r);
    if (!r) return cce_fail(CCE_ERR_NOMEM, "%s: results writer", path);
    r->lock_fd = -1;
    r->next = 1;
    cce_status s = CCE_OK;
    if (!(r->path = strdup(path))) {
        s = cce_fail(CCE_ERR_NOMEM, "%s: results writer", path);
        goto done;
    }
    if ((s = make_parents(path)) || (s = take_lock(r))) goto done;
    remove_orphans(path);
    struct stat st;
    if (stat(path, &st) == 0)
        s = load_index(r);
    else if (errno == ENOENT)
        s = create_empty(r);
    else
        s = cce_fail(CCE_ERR_IO, "%s: cannot open the results file: %s", path, strerror(errno));
done:
    if (s) {
        cce_results_close(r);
        return s;
    }
    *out = r;
    return CCE_OK;
}

int cce_results_has(const cce_results *r, const char *key, const char **id) {
    if (id) *id = NULL;
    if (!r || !key) return 0;
    for (size_t i = 0; i < r->n; i++) {
        if (!strcmp(r->keys[i], key)) {
            if (id) *id = r->ids[i];
            return 1;
        }
    }
    return 0;
}

/* Checks a record before anything is written. */
static cce_status check_record(const cce_results *r, const cce_run_record *rec) {
    if (!rec) return cce_fail(CCE_ERR_ARG, "%s: no run record", r->path);
    if (!rec->key || !*rec->key)
        return cce_fail(CCE_ERR_ARG, "%s: the run has no key (key is required)", r->path);
    if (!rec->experiment || !*rec->experiment)
        return cce_fail(CCE_ERR_ARG, "%s: the run has no experiment name (experiment is required)",
                        r->path);
    if (rec->n_metrics && (!rec->metric_names || !rec->metric_values))
        return cce_fail(CCE_ERR_ARG, "%s: %zu metrics without names or values", r->path,
                        rec->n_metrics);
    for (size_t i = 0; i < rec->n_metrics; i++) {
        const char *name = rec->metric_names[i];
        if (!name || !*name) return cce_fail(CCE_ERR_ARG, "%s: metric %zu has no name", r->path, i);
        for (const char *p = name; *p; p++) {
            char c = *p;
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_'))
                return cce_fail(CCE_ERR_ARG,
                                "%s: bad metric name '%.64s' (letters, digits and _ only)", r->path,
                                name);
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(rec->metric_names[j], name))
                return cce_fail(CCE_ERR_ARG, "%s: metric '%.64s' is given twice", r->path, name);
    }
    if (rec->layers && rec->layers->n && !rec->layers->rows)
        return cce_fail(CCE_ERR_ARG, "%s: a layers table of %zu rows without rows", r->path,
                        rec->layers->n);
    if (rec->n_tables && !rec->tables)
        return cce_fail(CCE_ERR_ARG, "%s: %zu tables without tables", r->path, rec->n_tables);
    for (size_t i = 0; i < rec->n_tables; i++) {
        const cce_table *t = rec->tables[i];
        if (!t) return cce_fail(CCE_ERR_ARG, "%s: table %zu is missing", r->path, i);
        if (!cce_table_name_ok(t->name) || !strcmp(t->name, "metrics") ||
            !strcmp(t->name, "layers"))
            return cce_fail(CCE_ERR_ARG,
                            "%s: bad table name '%.64s' (letters, digits and _ only; not metrics "
                            "or layers)",
                            r->path, t->name);
        for (size_t j = 0; j < i; j++)
            if (rec->tables[j] && !strcmp(rec->tables[j]->name, t->name))
                return cce_fail(CCE_ERR_ARG, "%s: table '%s' is given twice", r->path, t->name);
    }
    return CCE_OK;
}

static const char *str_or_empty(const char *s) {
    return s ? s : "";
}

/* Writes run `id` of rec into the open file f. */
static cce_status write_run(hid_t f, const char *file, const char *id, const cce_run_record *rec) {
    char objpath[64], sub[80], timestamp[32];
    snprintf(objpath, sizeof objpath, "/runs/%s", id);
    now_utc(timestamp);
    hid_t runs = H5I_INVALID_HID, g = H5I_INVALID_HID, m = H5I_INVALID_HID;
    cce_status s = CCE_OK;
    const cce_report empty = {0};
    if ((runs = H5Gopen2(f, "/runs", H5P_DEFAULT)) < 0 ||
        (g = create_ordered_group(runs, id)) < 0) {
        s = store_hdf5_fail(CCE_ERR_HDF5, file, objpath, "cannot create the run group");
        goto done;
    }
    const char *const strings[][2] = {
        {"key", rec->key},
        {"experiment", rec->experiment},
        {"strategy", str_or_empty(rec->strategy)},
        {"params", str_or_empty(rec->params_json)},
        {"plan", str_or_empty(rec->plan_json)},
    };
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        if ((s = store_write_string(g, file, objpath, strings[i][0], strings[i][1]))) goto done;
    if ((s = store_write_attr(g, file, objpath, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, -1,
                              &rec->seed)))
        goto done;
    const char *const more[][2] = {
        {"protocol", str_or_empty(rec->protocol)},
        {"model", str_or_empty(rec->model)},
        {"model_sha256", str_or_empty(rec->model_sha256)},
        {"dataset", str_or_empty(rec->dataset)},
        {"dataset_sha256", str_or_empty(rec->dataset_sha256)},
        {"cce_version", CCE_VERSION},
        {"timestamp", timestamp},
    };
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
        if ((s = store_write_string(g, file, objpath, more[i][0], more[i][1]))) goto done;
    if ((s = store_write_attr(g, file, objpath, "seconds", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, -1,
                              &rec->seconds)))
        goto done;
    snprintf(sub, sizeof sub, "%s/metrics", objpath);
    if ((m = create_ordered_group(g, "metrics")) < 0) {
        s = store_hdf5_fail(CCE_ERR_HDF5, file, sub, "cannot create group");
        goto done;
    }
    for (size_t i = 0; i < rec->n_metrics; i++)
        if ((s = store_write_attr(m, file, sub, rec->metric_names[i], H5T_IEEE_F64LE,
                                  H5T_NATIVE_DOUBLE, -1, &rec->metric_values[i])))
            goto done;
    if (report_table_write(g, "layers", rec->layers ? rec->layers : &empty) != 0) {
        snprintf(sub, sizeof sub, "%s/layers", objpath);
        s = store_hdf5_fail(CCE_ERR_HDF5, file, sub, "cannot write the layers table");
        goto done;
    }
    for (size_t i = 0; i < rec->n_tables; i++)
        if ((s = results_table_write(g, file, objpath, rec->tables[i]))) goto done;
done:
    if (m >= 0) H5Gclose(m);
    if (g >= 0) H5Gclose(g);
    if (runs >= 0) H5Gclose(runs);
    return s;
}

cce_status cce_results_add(cce_results *r, const cce_run_record *rec, const char **id) {
    if (id) *id = NULL;
    if (!r) return cce_fail(CCE_ERR_ARG, "results add: no results file");
    cce_status s = check_record(r, rec);
    if (s) return s;
    const char *old = NULL;
    size_t old_index = 0;
    int replacing = cce_results_has(r, rec->key, &old);
    if (replacing) old_index = (size_t)((const char(*)[16])old - r->ids);
    char new_id[16];
    if (r->next > 999999999UL) return cce_fail(CCE_ERR_RANGE, "%s: run ids are exhausted", r->path);
    snprintf(new_id, sizeof new_id, "r%06lu", r->next);

    /* Everything the index needs is allocated up front: once the rename is done, nothing can
     * fail. */
    if ((s = index_reserve(r))) return s;
    char *key = strdup(rec->key), *tmp = temp_name(r->path);
    hid_t fapl = H5I_INVALID_HID, f = H5I_INVALID_HID;
    if (!key || !tmp) {
        free(key);
        free(tmp);
        return cce_fail(CCE_ERR_NOMEM, "%s: run key", r->path);
    }
    if ((s = copy_file(r->path, tmp))) {
        free(key);
        free(tmp);
        return s;
    }
    if ((fapl = write_fapl()) < 0) {
        s = store_hdf5_fail(CCE_ERR_HDF5, r->path, "/", "cannot set file access properties");
        goto done;
    }
    if ((f = H5Fopen(tmp, H5F_ACC_RDWR, fapl)) < 0) {
        s = store_hdf5_fail(CCE_ERR_HDF5, r->path, "/", "cannot open the copy for writing");
        goto done;
    }
    if (replacing) {
        char old_path[64];
        snprintf(old_path, sizeof old_path, "/runs/%s", old);
        if (H5Ldelete(f, old_path, H5P_DEFAULT) < 0) {
            s = store_hdf5_fail(CCE_ERR_HDF5, r->path, old_path, "cannot drop the replaced run");
            goto done;
        }
    }
    s = write_run(f, r->path, new_id, rec);
done:
    if (f >= 0 && H5Fclose(f) < 0 && !s)
        s = store_hdf5_fail(CCE_ERR_HDF5, r->path, "/", "cannot close the copy");
    if (fapl >= 0) H5Pclose(fapl);
    H5Eclear2(H5E_DEFAULT);
    int renamed = 0;
    if (s)
        unlink(tmp);
    else
        s = commit(tmp, r->path, &renamed);
    free(tmp);
    if (!renamed) {
        free(key);
        return s;
    }
    /* In the file now (durable unless the folder's fsync failed, which s reports): bring the
     * index up to date. */
    if (replacing) index_remove(r, old_index);
    index_append(r, new_id, key);
    if (id) *id = r->ids[r->n - 1];
    return s;
}
