/* Provisioning the files of the dataset manifest: the read-only mirror ($CCE_MIRROR), the cache
 * folder, and a download of the canonical URL with curl as the last resort. Every file is
 * checked against the manifest's sha256 before it is handed out. */
#include "dataset.h"

#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sha256.h"

extern char **environ;

const char *cce_mirror_dir(void) {
    const char *m = getenv("CCE_MIRROR");
    return m && *m ? m : NULL;
}

/* a + "/" + b, malloc'd (caller frees); NULL if out of memory. */
static char *join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 2);
    if (!s) return NULL;
    memcpy(s, a, la);
    s[la] = '/';
    memcpy(s + la + 1, b, lb + 1);
    return s;
}

static int is_regular_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Creates dir and its missing parents. */
static cce_status make_dirs(const char *dir) {
    char *buf = strdup(dir);
    if (!buf) return cce_fail(CCE_ERR_NOMEM, "creating %s", dir);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                int e = errno;
                cce_status s =
                    cce_fail(CCE_ERR_IO, "cannot create folder %s: %s", buf, strerror(e));
                free(buf);
                return s;
            }
            *p = c;
            if (!c) break;
        }
    }
    free(buf);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return cce_fail(CCE_ERR_IO, "%s exists but is not a folder", dir);
    return CCE_OK;
}

cce_status cce_cache_dir(const char *sub, int create, char **out) {
    const char *env = getenv("CCE_CACHE_DIR");
    char *base = NULL;
    if (env && *env) {
        base = strdup(env);
    } else if ((env = getenv("XDG_CACHE_HOME")) && *env) {
        base = join(env, "cce");
    } else if ((env = getenv("HOME")) && *env) {
        base = join(env, ".cache/cce");
    } else {
        return cce_fail(CCE_ERR_STATE, "no cache folder: set CCE_CACHE_DIR (or XDG_CACHE_HOME or "
                                       "HOME)");
    }
    if (!base) return cce_fail(CCE_ERR_NOMEM, "cache folder path");
    char *dir = base;
    if (sub && *sub) {
        dir = join(base, sub);
        free(base);
        if (!dir) return cce_fail(CCE_ERR_NOMEM, "cache folder path");
    }
    if (create) {
        cce_status s = make_dirs(dir);
        if (s != CCE_OK) {
            cce_error_prefix("cache folder: ");
            free(dir);
            return s;
        }
    }
    *out = dir;
    return CCE_OK;
}

/* Where e's file would live in the mirror (NULL when CCE_MIRROR is unset) and in the cache.
 * Both malloc'd, owned by the caller. */
static cce_status candidate_paths(const cce_dataset_entry *e, char **mirror_path,
                                  char **cache_path) {
    *mirror_path = NULL;
    *cache_path = NULL;
    const char *mirror = cce_mirror_dir();
    if (mirror && !(*mirror_path = join(mirror, e->file)))
        return cce_fail(CCE_ERR_NOMEM, "dataset %s", e->name);
    char *data_dir;
    cce_status s = cce_cache_dir("data", 0, &data_dir);
    if (s != CCE_OK) {
        free(*mirror_path);
        *mirror_path = NULL;
        return s;
    }
    *cache_path = join(data_dir, e->file);
    free(data_dir);
    if (!*cache_path) {
        free(*mirror_path);
        *mirror_path = NULL;
        return cce_fail(CCE_ERR_NOMEM, "dataset %s", e->name);
    }
    return CCE_OK;
}

cce_status cce_dataset_locate(const cce_dataset_entry *e, cce_dataset_state *state, char **path,
                              char actual[65]) {
    char *mirror_path, *cache_path;
    cce_status s = candidate_paths(e, &mirror_path, &cache_path);
    if (s != CCE_OK) return s;
    *state = CCE_DATASET_MISSING;
    *path = NULL;
    if (actual) actual[0] = '\0';
    const char *found = mirror_path && is_regular_file(mirror_path) ? mirror_path
                        : is_regular_file(cache_path)               ? cache_path
                                                                    : NULL;
    if (found) {
        char hex[65];
        s = cce_sha256_file(found, hex);
        if (s == CCE_OK) {
            *state = strcmp(hex, e->sha256) ? CCE_DATASET_MISMATCH : CCE_DATASET_OK;
            if (actual) memcpy(actual, hex, 65);
            *path = found == mirror_path ? mirror_path : cache_path;
            if (found == mirror_path)
                mirror_path = NULL;
            else
                cache_path = NULL;
        }
    }
    free(mirror_path);
    free(cache_path);
    return s;
}

/* CCE_ERR_CHECKSUM naming path, the expected and the actual sha256 when they differ. */
static cce_status check_sha(const cce_dataset_entry *e, const char *path, const char *where) {
    char hex[65];
    cce_status s = cce_sha256_file(path, hex);
    if (s != CCE_OK) return s;
    if (strcmp(hex, e->sha256))
        return cce_fail(CCE_ERR_CHECKSUM, "%s file %s of dataset %s: sha256 is %s, expected %s",
                        where, path, e->name, hex, e->sha256);
    return CCE_OK;
}

/* 1 if an executable named prog is on PATH. */
static int on_path(const char *prog) {
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/bin:/bin";
    char buf[4096];
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t n = colon ? (size_t)(colon - path) : strlen(path);
        if (n > 0 && n + strlen(prog) + 2 < sizeof buf) {
            memcpy(buf, path, n);
            buf[n] = '/';
            strcpy(buf + n + 1, prog);
            if (access(buf, X_OK) == 0) return 1;
        }
        path += n;
        if (*path == ':') path++;
    }
    return 0;
}

/* Downloads e->url to dest through a temporary name, keeping it only if its sha256 matches.
 * On a curl failure returns CCE_ERR_NOT_FOUND with `why` describing it (the caller builds the
 * full message); a wrong download is CCE_ERR_CHECKSUM naming the URL. */
static cce_status download(const cce_dataset_entry *e, const char *dest, char *why,
                           size_t why_cap) {
    char *dir = strdup(dest);
    if (!dir) return cce_fail(CCE_ERR_NOMEM, "downloading %s", e->url);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    cce_status s = slash ? make_dirs(dir) : CCE_OK;
    free(dir);
    if (s != CCE_OK) return s;
    size_t cap = strlen(dest) + 32;
    char *tmp = malloc(cap);
    if (!tmp) return cce_fail(CCE_ERR_NOMEM, "downloading %s", e->url);
    snprintf(tmp, cap, "%s.part.%ld", dest, (long)getpid());
    char *argv[] = {"curl", "-fsSL", "--connect-timeout", "30", "-o", tmp, e->url, NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, "curl", NULL, NULL, argv, environ);
    int status = 0;
    if (rc == 0) {
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
    }
    if (rc != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (rc != 0)
            snprintf(why, why_cap, "curl could not start: %s", strerror(rc));
        else if (WIFEXITED(status))
            snprintf(why, why_cap, "curl -fsSL %s exited with status %d", e->url,
                     WEXITSTATUS(status));
        else
            snprintf(why, why_cap, "curl -fsSL %s was killed", e->url);
        unlink(tmp);
        free(tmp);
        return CCE_ERR_NOT_FOUND;
    }
    char hex[65];
    s = cce_sha256_file(tmp, hex);
    if (s == CCE_OK && strcmp(hex, e->sha256))
        s = cce_fail(CCE_ERR_CHECKSUM,
                     "download of dataset %s from %s: sha256 is %s, expected %s (not kept)",
                     e->name, e->url, hex, e->sha256);
    if (s == CCE_OK && rename(tmp, dest) != 0)
        s = cce_fail(CCE_ERR_IO, "cannot rename %s to %s: %s", tmp, dest, strerror(errno));
    if (s != CCE_OK) unlink(tmp);
    free(tmp);
    return s;
}

cce_status cce_dataset_resolve_entry(const cce_dataset_entry *e, char **path) {
    if (!e || !path) return cce_fail(CCE_ERR_ARG, "cce_dataset_resolve_entry: NULL argument");
    char *mirror_path, *cache_path;
    cce_status s = candidate_paths(e, &mirror_path, &cache_path);
    if (s != CCE_OK) return s;
    char *found = NULL;
    if (mirror_path && is_regular_file(mirror_path)) {
        s = check_sha(e, mirror_path, "mirror");
        found = mirror_path;
    } else if (is_regular_file(cache_path)) {
        s = check_sha(e, cache_path, "cached");
        if (s == CCE_ERR_CHECKSUM) cce_error_prefix("delete it to provision it again: ");
        found = cache_path;
    } else {
        char why[512];
        if (!e->url_is_file)
            snprintf(why, sizeof why, "no download: %s is not the file itself", e->url);
        else if (!on_path("curl"))
            snprintf(why, sizeof why, "no download: curl is not on PATH");
        else {
            why[0] = '\0';
            s = download(e, cache_path, why, sizeof why);
            if (s == CCE_OK) found = cache_path;
        }
        if (!found && (s == CCE_OK || why[0])) {
            char mirror_note[1024];
            if (mirror_path)
                snprintf(mirror_note, sizeof mirror_note, "%s (absent)", mirror_path);
            else
                snprintf(mirror_note, sizeof mirror_note, "none (CCE_MIRROR is not set)");
            s = cce_fail(CCE_ERR_NOT_FOUND,
                         "dataset %s (%s) is not available: tried the mirror %s, the cache %s "
                         "(absent), %s. Set CCE_MIRROR to a folder holding %s, or place the file "
                         "at %s",
                         e->name, e->file, mirror_note, cache_path, why, e->file, cache_path);
        }
    }
    if (s == CCE_OK) {
        *path = found;
        if (found == mirror_path)
            mirror_path = NULL;
        else
            cache_path = NULL;
    }
    free(mirror_path);
    free(cache_path);
    return s;
}

cce_status cce_dataset_resolve(const char *name_or_path, char **path, char sha256[65]) {
    if (!name_or_path || !path)
        return cce_fail(CCE_ERR_ARG, "cce_dataset_resolve: NULL name or output");
    cce_manifest *m = NULL;
    cce_status ms = cce_manifest_load(NULL, &m);
    const cce_dataset_entry *e = ms == CCE_OK ? cce_manifest_find(m, name_or_path) : NULL;
    cce_status s;
    if (e) {
        s = cce_dataset_resolve_entry(e, path);
        if (s == CCE_OK && sha256) memcpy(sha256, e->sha256, 65);
    } else if (is_regular_file(name_or_path)) {
        char hex[65];
        s = cce_sha256_file(name_or_path, hex);
        if (s == CCE_OK && !(*path = strdup(name_or_path)))
            s = cce_fail(CCE_ERR_NOMEM, "resolving %s", name_or_path);
        if (s == CCE_OK && sha256) memcpy(sha256, hex, 65);
    } else if (ms != CCE_OK) {
        cce_error_prefix("'%s' is not a file, and the manifest is unreadable: ", name_or_path);
        s = ms;
    } else {
        char *names = cce_manifest_names(m);
        s = cce_fail(CCE_ERR_NOT_FOUND,
                     "'%s' is neither a dataset of %s (known: %s) nor an existing file",
                     name_or_path, m->path, names ? names : "?");
        free(names);
    }
    cce_manifest_free(m);
    return s;
}
