#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/error_text.h"
#include "base/unix_socket.h"

int unix_socket_claim(const char *path, char *err, size_t errlen) {
    struct stat st;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) return error_text(err, errlen, "%s: path too long for a Unix socket", path);
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : error_text(err, errlen, "%s: %s", path, strerror(errno));
    if (!S_ISSOCK(st.st_mode)) return error_text(err, errlen, "%s exists and is not a socket", path);
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (probe < 0) return error_text(err, errlen, "%s: %s", path, strerror(errno));
    memcpy(a.sun_path, path, strlen(path));
    /* a connect that succeeds, or waits for an accept (a full backlog), is someone serving */
    int rc = connect(probe, (struct sockaddr *)&a, sizeof a), why = errno;
    close(probe);
    if (rc == 0 || why == EAGAIN) return error_text(err, errlen, "%s: another process is serving on it", path);
    if (why != ECONNREFUSED) return error_text(err, errlen, "%s: %s", path, strerror(why));
    if (unlink(path) != 0) return error_text(err, errlen, "%s: cannot remove the stale socket: %s", path, strerror(errno));
    return 0;
}

bool unix_socket_closed(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR));
}
