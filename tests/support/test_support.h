/* Helpers shared by the cmocka tests: scratch folders, the data mirror, running the cce program. */
#ifndef CCE_TEST_SUPPORT_H
#define CCE_TEST_SUPPORT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "status.h"

/* Asserts that a libcce call succeeded, printing the error detail if not. */
#define assert_cce_ok(expr)                                                                        \
    do {                                                                                           \
        cce_status s_ = (expr);                                                                    \
        if (s_ != CCE_OK)                                                                          \
            fail_msg("%s failed: %s: %s", #expr, cce_strerror(s_), cce_error_detail());            \
    } while (0)

/* A fresh empty scratch folder for this test (under the build tree). Returns a static buffer
 * holding its path; `tag` keeps tests of one executable apart. */
const char *test_scratch_dir(const char *tag);

/* path = dir + "/" + name into buf (static rotating buffers; valid for a few calls). */
const char *test_path(const char *dir, const char *name);

/* The mirror folder ($CCE_MIRROR) if the file rel inside it exists, else NULL. Tests that need
 * real data call test_require_mirror_file, which skips when CCE_MIRROR is unset and fails when it
 * is set but the file is missing (CI sets it, so real-data tests always run there). */
const char *test_mirror_file(const char *rel);
const char *test_require_mirror_file(const char *rel);

/* Runs the cce program with a shell-quoted argument string (e.g. "info x.h5"), capturing
 * stdout+stderr into a malloc'd string (*output, caller frees; may be NULL). Returns the exit
 * status (or -1 if it did not exit normally, e.g. crashed). */
int test_run_cce(const char *args, char **output);

/* Writes len bytes to path (helper for corrupt-file fixtures). */
void test_write_file(const char *path, const void *data, size_t len);

/* Reads a whole file (malloc'd, NUL-terminated); *len may be NULL. NULL if unreadable. */
char *test_read_file(const char *path, size_t *len);

/* 1 if the file exists. */
int test_file_exists(const char *path);

#endif
