/* The rule bellhop's listening Unix sockets share (the API's, a vsock device's): a path is
 * taken when nothing is there, or when it is a socket nobody serves on (a VMM that died, or the
 * one a snapshot was taken in, left it behind: removed); any other file, or a socket someone
 * accepts on, is refused. */
#ifndef BELLHOP_BASE_UNIX_SOCKET_H
#define BELLHOP_BASE_UNIX_SOCKET_H

#include <stddef.h>

/* 0 when path is free to bind (a stale socket removed), or -1 with the reason in err
 * ("PATH exists and is not a socket", "PATH: another process is serving on it", ...). */
int unix_socket_claim(const char *path, char *err, size_t errlen);

#endif
