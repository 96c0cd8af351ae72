/* Runs a function in a forked child that sends a fixed-size report back through a pipe, and
 * reaps the child with wait4 so that the parent learns its peak memory (ru_maxrss): how the
 * benchmarks measure a model's peak RSS apart from the long-lived process that asks for it. */
#ifndef CCE_FORK_REPORT_H
#define CCE_FORK_REPORT_H

#include <stddef.h>

#include "status.h"

/* Fills report (size bytes, zeroed before the call) in the child; arg is passed through. */
typedef void (*cce_fork_fn)(const void *arg, void *report);

/* How the child ended. */
typedef struct cce_fork_result {
    int complete;   /* 1: the whole report arrived and the child exited with status 0 */
    int signal;     /* the signal that killed the child, or 0 */
    long maxrss_kb; /* the child's peak RSS in KiB (wait4's ru_maxrss) */
} cce_fork_result;

/* Forks, runs fn(arg, report) in the child (which then _exits), reads the report into report
 * [size] in the parent and reaps the child into *res. The caller should fflush its streams first
 * when they may hold output. CCE_ERR_IO ("<what>: pipe: ..." / "<what>: fork: ...") when no child
 * could be started; a child that failed is CCE_OK with res->complete == 0 (report then holds what
 * arrived). Nothing is allocated. */
cce_status cce_fork_report(const char *what, cce_fork_fn fn, const void *arg, void *report,
                           size_t size, cce_fork_result *res);

#endif
