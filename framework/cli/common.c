/* Helpers shared by the subcommands. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "kernels.h"

int cli_fail(const char *cmd, cce_status s) {
    const char *detail = cce_error_detail();
    fprintf(stderr, "cce %s: error: %s%s%s\n", cmd, cce_strerror(s), *detail ? ": " : "", detail);
    return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "cce %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'cce %s --help'.\n", cmd);
    return 2;
}

int cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
    return 0;
}

int cli_parse_long(const char *cmd, const char *opt, const char *text, long min, long max,
                   long *out) {
    char *end;
    errno = 0;
    long v = text ? strtol(text, &end, 10) : 0;
    if (!text || !*text || *end || errno)
        return cli_usage_error(cmd, "%s needs a whole number, got '%s'", opt, text ? text : "");
    if (v < min || v > max)
        return cli_usage_error(cmd, "%s = %ld is outside [%ld, %ld]", opt, v, min, max);
    *out = v;
    return 0;
}

int cli_parse_double(const char *cmd, const char *opt, const char *text, double min, double max,
                     double *out) {
    char *end;
    errno = 0;
    double v = text ? strtod(text, &end) : 0;
    if (!text || !*text || *end || errno || v != v)
        return cli_usage_error(cmd, "%s needs a number, got '%s'", opt, text ? text : "");
    if (v < min || v > max)
        return cli_usage_error(cmd, "%s = %g is outside [%g, %g]", opt, v, min, max);
    *out = v;
    return 0;
}

static int progress_shown;

void cli_progress(const char *label, long done, long total) {
    if (!isatty(STDERR_FILENO)) return;
    fprintf(stderr, "\r%s: %ld/%ld", label, done, total);
    fflush(stderr);
    progress_shown = 1;
}

void cli_progress_end(void) {
    if (!progress_shown) return;
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
    progress_shown = 0;
}

void cli_select_blas_kernels(int argc, char **argv) {
    const char *better = cce_blas_preferred_coretype();
    if (!better || getenv("OPENBLAS_CORETYPE")) return;
    if (setenv("OPENBLAS_CORETYPE", better, 1) != 0) return;
    if (setenv("CCE_DETECTED_BLAS_CORE", cce_blas_corename(), 1) != 0) return;
    char **nargv = calloc((size_t)argc + 1, sizeof *nargv);
    if (!nargv) return;
    for (int i = 0; i < argc; i++) nargv[i] = argv[i];
    fflush(NULL);
    execv("/proc/self/exe", nargv);
    /* exec failed: carry on with the generic kernels (slower, same results). */
    free(nargv);
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv("CCE_DETECTED_BLAS_CORE");
}

const char *cli_option_value(int argc, char **argv, int *i, const char *opt, int *missing) {
    size_t n = strlen(opt);
    if (strncmp(argv[*i], opt, n) != 0) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (argv[*i][n] != '\0') return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}
