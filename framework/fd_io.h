/* Whole-buffer reads and writes on a file descriptor (pipes between a parent and the processes
 * it forks), retried on EINTR and on short transfers. */
#ifndef CCE_FD_IO_H
#define CCE_FD_IO_H

#include <stddef.h>

/* Writes all n bytes of buf to fd. 0 on success, -1 on an error or a zero-length write (errno
 * as left by write). Nothing is allocated. */
int cce_fd_write_all(int fd, const void *buf, size_t n);

/* Reads up to n bytes into buf; returns the number read, short only at end of file or on an
 * error. Nothing is allocated. */
size_t cce_fd_read_all(int fd, void *buf, size_t n);

#endif
