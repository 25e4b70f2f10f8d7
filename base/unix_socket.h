/* What bellhop's Unix sockets share. The rule its listening sockets follow (the API's, a vsock
 * device's): a path is taken when nothing is there, or when it is a socket nobody serves on (a
 * VMM that died, or the one a snapshot was taken in, left it behind: removed); any other file,
 * or a socket someone accepts on, is refused. And how a connected one's other end is known to
 * be closed. */
#ifndef BELLHOP_BASE_UNIX_SOCKET_H
#define BELLHOP_BASE_UNIX_SOCKET_H

#include <stdbool.h>
#include <stddef.h>

/* 0 when path is free to bind (a stale socket removed), or -1 with the reason in err
 * ("PATH exists and is not a socket", "PATH: another process is serving on it", ...). */
int unix_socket_claim(const char *path, char *err, size_t errlen);

/* Whether fd's other end is closed (a hang-up): for a socket that read as 0, which a zero-length
 * message does too. Asks without waiting. */
bool unix_socket_closed(int fd);

#endif
