/* The speed of importing a Hugging Face checkpoint (bench_import.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_import.h"
#include "import.h"
#include "model.h"
#include "safetensors.h"
#include "synth.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (double)sb.st_size : 0;
}

/* Removes every file of the temporary folder, then the folder (it holds only what this
 * benchmark wrote). */
static void remove_folder(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4096];
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path)
            remove(path);
    if (d) closedir(d);
    rmdir(dir);
}

/* Bytes of the *.safetensors files in dir. */
static double safetensors_bytes(const char *dir) {
    double total = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4096];
    while (d && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 12 && !strcmp(e->d_name + n - 12, ".safetensors") &&
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path)
            total += file_size(path);
    }
    if (d) closedir(d);
    return total;
}

/* The memcpy references: best seconds of copying bytes from a touched block into fresh pages
 * (an anonymous mapping per run, advised for huge pages like the model's tensor blocks) and into
 * a touched block. */
static cce_status memcpy_reference(size_t bytes, int reps, double *fresh_s, double *warm_s) {
    char *src = malloc(bytes), *dst = malloc(bytes); /* [bytes] each */
    if (!src || !dst) {
        free(src);
        free(dst);
        return cce_fail(CCE_ERR_NOMEM, "bench-import: memcpy reference of %zu bytes", bytes);
    }
    memset(src, 1, bytes);
    memset(dst, 2, bytes);
    *fresh_s = *warm_s = 1e30;
    cce_status s = CCE_OK;
    for (int r = 0; r < reps && !s; r++) {
        void *map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (map == MAP_FAILED) {
            s = cce_fail(CCE_ERR_NOMEM, "bench-import: mmap of %zu bytes: %s", bytes,
                         strerror(errno));
            break;
        }
#ifdef MADV_HUGEPAGE
        (void)madvise(map, bytes, MADV_HUGEPAGE); /* as cce_floats_alloc advises tensor blocks */
#endif
        double t0 = now_s();
        memcpy(map, src, bytes);
        double t1 = now_s();
        memcpy(dst, src, bytes);
        double t2 = now_s();
        munmap(map, bytes);
        if (t1 - t0 < *fresh_s) *fresh_s = t1 - t0;
        if (t2 - t1 < *warm_s) *warm_s = t2 - t1;
    }
    free(src);
    free(dst);
    return s;
}

/* The disk reference: best seconds of write() of bytes to path and fsync (path removed after). */
static cce_status disk_reference(const char *path, size_t bytes, int reps, double *best) {
    size_t chunk = (size_t)64 << 20;
    char *buf = malloc(chunk); /* [chunk] */
    if (!buf) return cce_fail(CCE_ERR_NOMEM, "bench-import: write buffer");
    memset(buf, 3, chunk);
    *best = 1e30;
    cce_status s = CCE_OK;
    for (int r = 0; r < reps && !s; r++) {
        double t0 = now_s();
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) {
            s = cce_fail(CCE_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
            break;
        }
        for (size_t done = 0; !s && done < bytes;) {
            size_t n = bytes - done < chunk ? bytes - done : chunk;
            ssize_t w = write(fd, buf, n);
            if (w <= 0)
                s = cce_fail(CCE_ERR_IO, "%s: write failed: %s", path, strerror(errno));
            else
                done += (size_t)w;
        }
        if (!s && fsync(fd) != 0)
            s = cce_fail(CCE_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
        close(fd);
        double t = now_s() - t0;
        if (t < *best) *best = t;
        remove(path);
    }
    free(buf);
    return s;
}

/* Synthesises the preset's model without a tokenizer (weights only) and exports it to dir. */
static cce_status write_checkpoint(const char *preset, const char *dir, int dtype,
                                   int64_t *params) {
    cce_synth_options so;
    cce_model *m;
    cce_status s = cce_synth_preset(preset, &so);
    if (s) return s;
    so.seed = 1;
    if ((s = cce_synth_model(&so, &m))) return s;
    cce_model_set_tokenizer(m, NULL);
    *params = cce_model_total_params(m);
    cce_export_hf_options eo = {.dtype = dtype};
    s = cce_export_hf(m, dir, &eo);
    cce_model_free(m);
    return s;
}

/* One import + save; the seconds of each. */
static cce_status run_once(const char *dir, const char *h5, double *import_s, double *save_s) {
    cce_model *m;
    double t0 = now_s();
    cce_status s = cce_import_hf(dir, NULL, &m);
    double t1 = now_s();
    if (s) return s;
    cce_save_options so = {.deflate_level = 0};
    s = cce_model_save(m, h5, &so);
    double t2 = now_s();
    cce_model_free(m);
    *import_s = t1 - t0;
    *save_s = t2 - t1;
    return s;
}

cce_status cce_bench_import(const cce_bench_import_options *o, cce_bench_import_result *r) {
    if (o->reps < 1) return cce_fail(CCE_ERR_RANGE, "bench-import: reps = %d < 1", o->reps);
    if (o->dtype != CCE_ST_F32 && o->dtype != CCE_ST_F16 && o->dtype != CCE_ST_BF16)
        return cce_fail(CCE_ERR_ARG, "bench-import: dtype must be F32, F16 or BF16");
    const char *parent = o->dir ? o->dir : getenv("TMPDIR");
    if (!parent || !*parent) parent = "/tmp";
    char dir[4096], h5[4200], ref[4200];
    if (snprintf(dir, sizeof dir, "%s/cce-bench-import.XXXXXX", parent) >= (int)sizeof dir)
        return cce_fail(CCE_ERR_ARG, "%s: path too long", parent);
    if (!mkdtemp(dir))
        return cce_fail(CCE_ERR_IO, "%s: cannot create a temporary folder: %s", parent,
                        strerror(errno));
    snprintf(h5, sizeof h5, "%s/model.h5", dir);
    snprintf(ref, sizeof ref, "%s/disk-reference.bin", dir);
    memset(r, 0, sizeof *r);
    cce_status s =
        write_checkpoint(o->preset ? o->preset : "stories110M", dir, o->dtype, &r->params);
    if (s) goto done;
    r->input_bytes = safetensors_bytes(dir);
    r->output_bytes = 4.0 * (double)r->params;
    r->import_seconds = r->save_seconds = r->total_seconds = 1e30;
    for (int k = 0; k < o->reps; k++) {
        double is, ss;
        if ((s = run_once(dir, h5, &is, &ss))) goto done;
        if (is < r->import_seconds) r->import_seconds = is;
        if (ss < r->save_seconds) r->save_seconds = ss;
        if (is + ss < r->total_seconds) r->total_seconds = is + ss;
    }
    r->file_bytes = file_size(h5);
    remove(h5);
    double fresh = 1e30, warm = 1e30, disk = 1e30;
    if ((s = memcpy_reference((size_t)r->output_bytes, o->reps, &fresh, &warm)) ||
        (s = disk_reference(ref, (size_t)r->output_bytes, o->reps, &disk)))
        goto done;
    r->input_gbs = r->input_bytes / r->import_seconds / 1e9;
    r->output_gbs = r->output_bytes / r->import_seconds / 1e9;
    r->total_gbs = r->output_bytes / r->total_seconds / 1e9;
    r->memcpy_gbs = r->output_bytes / fresh / 1e9;
    r->memcpy_warm_gbs = r->output_bytes / warm / 1e9;
    r->disk_gbs = r->output_bytes / disk / 1e9;
done:
    remove_folder(dir);
    return s;
}
