/* A function run in a forked child that reports back through a pipe (fork_report.h). */
#include "fork_report.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fd_io.h"

cce_status cce_fork_report(const char *what, cce_fork_fn fn, const void *arg, void *report,
                           size_t size, cce_fork_result *res) {
    memset(res, 0, sizeof *res);
    memset(report, 0, size);
    int fds[2];
    if (pipe(fds) != 0) return cce_fail(CCE_ERR_IO, "%s: pipe: %s", what, strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return cce_fail(CCE_ERR_IO, "%s: fork: %s", what, strerror(e));
    }
    if (pid == 0) {
        close(fds[0]);
        fn(arg, report);
        int rc = cce_fd_write_all(fds[1], report, size) ? 1 : 0;
        close(fds[1]);
        _exit(rc);
    }
    close(fds[1]);
    size_t got = cce_fd_read_all(fds[0], report, size);
    close(fds[0]);
    int wstatus = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    while (wait4(pid, &wstatus, 0, &ru) < 0 && errno == EINTR) {
    }
    res->maxrss_kb = ru.ru_maxrss;
    res->signal = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
    res->complete = got == size && WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
    return CCE_OK;
}
