#include "test_support.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void mkdir_p(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    }
    mkdir(buf, 0755);
}

const char *test_scratch_dir(const char *tag) {
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", CCE_TEST_TMP, tag);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fail_msg("cannot clear %s", dir);
    mkdir_p(dir);
    return dir;
}

const char *test_path(const char *dir, const char *name) {
    static char bufs[8][4096];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, 4096, "%s/%s", dir, name);
    return b;
}

const char *test_mirror_file(const char *rel) {
    const char *mirror = getenv("CCE_MIRROR");
    if (!mirror || !*mirror) return NULL;
    static char bufs[4][4096];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, 4096, "%s/%s", mirror, rel);
    return access(b, R_OK) == 0 ? b : NULL;
}

const char *test_require_mirror_file(const char *rel) {
    const char *mirror = getenv("CCE_MIRROR");
    if (!mirror || !*mirror) {
        print_message("CCE_MIRROR is not set: skipping a test that needs %s\n", rel);
        skip();
    }
    const char *p = test_mirror_file(rel);
    if (!p) fail_msg("CCE_MIRROR=%s has no readable %s", mirror, rel);
    return p;
}

int test_run_cce(const char *args, char **output) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", CCE_BIN, args);
    FILE *p = popen(cmd, "r");
    if (!p) fail_msg("popen failed: %s", strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (cap - len < 2) buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    int st = pclose(p);
    if (output)
        *output = buf;
    else
        free(buf);
    if (!WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

void test_write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot write %s", path);
    if (len && fwrite(data, 1, len, f) != len) fail_msg("short write to %s", path);
    fclose(f);
}

char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    buf[n] = '\0';
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

int test_file_exists(const char *path) {
    return access(path, F_OK) == 0;
}
