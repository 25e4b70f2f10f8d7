/* bellhop's side of user-mode networking: bellhop-net, started beside it (net/user.h).
 *
 * Why another process: Debian ships libslirp only as a shared library over glib, and bellhop
 * is static-pie (a dynamic bellhop costs every launch 0.4 ms of exec on a PVM host), into
 * which a library bringing a C library of its own cannot be loaded. The guest's connections
 * also leave bellhop's sandbox that way: its loop makes no Internet socket. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/error_text.h"
#include "net/spawn.h"
#include "net/user.h"

#define READY_MS 10000 /* for bellhop-net to bind its forwards and say so */


/* bellhop-net beside the running binary: *path, or -1. */
static int program_path(const char *what, char *path, size_t len, char *err, size_t errlen) {
    ssize_t n = readlink("/proc/self/exe", path, len - 1);
    if (n <= 0) return error_text(err, errlen, "%s: cannot tell where bellhop is: %s", what, strerror(errno));
    path[n] = 0;
    char *slash = strrchr(path, '/');
    if (!slash || (size_t)(slash - path) + sizeof "/bellhop-net" > len)
        return error_text(err, errlen, "%s: bellhop's path is too long", what);
    strcpy(slash, "/bellhop-net");
    if (access(path, X_OK) != 0)
        return error_text(err, errlen, "%s: %s: %s (it is installed beside bellhop)", what, path, strerror(errno));
    return 0;
}

static pid_t spawn(const char *path, char *const argv[], int frames, int status) {
    const struct net_spawn_fd fds[] = {{frames, 3}, {status, 4}};
    int error;
    return net_spawn(path, false, argv, fds, 2, &error);
}

/* bellhop-net's one line on its status pipe: "ok", or why it could not start. */
static int await_ready(const char *what, int fd, char *err, size_t errlen) {
    char line[512];
    size_t got = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (got < sizeof line - 1 && poll(&p, 1, READY_MS) == 1) {
        ssize_t n = read(fd, line + got, sizeof line - 1 - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
        if (memchr(line, '\n', got)) break;
    }
    line[got] = 0;
    line[strcspn(line, "\n")] = 0;
    if (strcmp(line, "ok") == 0) return 0;
    if (!got) return error_text(err, errlen, "%s: bellhop-net ended or said nothing in %d s", what, READY_MS / 1000);
    return error_text(err, errlen, "%s: %s", what, line);
}

/* bellhop-net on argv, its frames' end in *device_fd once it says it is ready. */
static int start(const char *what, char *const argv[], int *device_fd, char *err, size_t errlen) {
    char path[PATH_MAX];
    if (program_path(what, path, sizeof path, err, errlen) != 0) return -1;
    int pair[2], pipefd[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0)
        return error_text(err, errlen, "%s: socketpair: %s", what, strerror(errno));
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        close(pair[0]), close(pair[1]);
        return error_text(err, errlen, "%s: pipe: %s", what, strerror(errno));
    }
    /* Never waited for: it ends when the device's end closes, as bellhop ends, and init
     * reaps it then (bellhop's sandbox makes no wait4). */
    pid_t pid = spawn(path, argv, pair[1], pipefd[1]);
    close(pair[1]), close(pipefd[1]);
    int rc = pid < 0 ? error_text(err, errlen, "%s: cannot start %s", what, path) : await_ready(what, pipefd[0], err, errlen);
    close(pipefd[0]);
    if (rc != 0) {
        if (pid > 0) kill(pid, SIGKILL);
        close(pair[0]);
        return -1;
    }
    *device_fd = pair[0];
    return 0;
}

int net_user_spawn(const char *opts, int *device_fd, char *err, size_t errlen) {
    char *argv[] = {"bellhop-net", "user", (char *)opts, NULL};
    return start("--net user", argv, device_fd, err, errlen);
}

int net_user_spawn_mmds(uint32_t addr, const char *path, int *device_fd, char *err, size_t errlen) {
    char address[INET_ADDRSTRLEN];
    struct in_addr a = {htonl(addr)};
    inet_ntop(AF_INET, &a, address, sizeof address);
    char *argv[] = {"bellhop-net", "mmds", address, (char *)path, NULL};
    return start("MMDS", argv, device_fd, err, errlen);
}
