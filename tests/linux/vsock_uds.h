/* The host's way to a guest's vsock port through bellhop's vsock socket, Firecracker's host
 * side (its docs/vsock.md): connect to the socket (uds_path), say "CONNECT <port>\n", and
 * "OK <host-side port>\n" back means the guest accepted; from then on the stream is the guest's
 * socket. A guest with no listener on the port gets the connection closed instead. Shared by
 * the Linux guest's test helper (tests/linux/vsock_host.c) and bench/vsock_bench.c. */
#ifndef BELLHOP_TESTS_LINUX_VSOCK_UDS_H
#define BELLHOP_TESTS_LINUX_VSOCK_UDS_H

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static inline long long vsock_uds_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Until fd is ready for events or deadline_ms (vsock_uds_now_ms's clock) has passed: 1
 * ready, 0 out of time, -1 an error. */
static inline int vsock_uds_wait(int fd, short events, long long deadline_ms) {
    for (;;) {
        long long left = deadline_ms - vsock_uds_now_ms();
        if (left <= 0) return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, left > 1000000 ? 1000000 : (int)left);
        if (n > 0) return 1;
        if (n < 0 && errno != EINTR) return -1;
    }
}

/* A stream socket connected to the Unix socket path, or -1. */
static inline int vsock_uds_dial(const char *path) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len >= sizeof a.sun_path) return -1;
    memcpy(a.sun_path, path, len + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
    if (fd >= 0) close(fd);
    return -1;
}

/* The answer to CONNECT, a byte at a time: whatever follows its newline is the guest's. */
static inline int vsock_uds_read_answer(int fd, char *line, size_t size, long long deadline_ms) {
    size_t n = 0;
    while (n + 1 < size) {
        if (vsock_uds_wait(fd, POLLIN, deadline_ms) != 1) return -1;
        ssize_t r = read(fd, line + n, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (line[n] == '\n') break;
        n++;
    }
    line[n] = '\0';
    return 0;
}

/* One attempt: the stream to the guest's port, or -1 with the reason in err. */
static inline int vsock_uds_connect_once(const char *uds, unsigned port, long long deadline_ms, char *err,
                                         size_t errlen) {
    int fd = vsock_uds_dial(uds);
    if (fd < 0) {
        snprintf(err, errlen, "connect %s: %s", uds, strerror(errno));
        return -1;
    }
    char cmd[32], line[64];
    int len = snprintf(cmd, sizeof cmd, "CONNECT %u\n", port);
    unsigned long host_port;
    if (write(fd, cmd, (size_t)len) != len) {
        snprintf(err, errlen, "CONNECT %u: write: %s", port, strerror(errno));
    } else if (vsock_uds_read_answer(fd, line, sizeof line, deadline_ms) != 0) {
        snprintf(err, errlen, "CONNECT %u: no answer in time", port);
    } else if (sscanf(line, "OK %lu", &host_port) != 1) {
        snprintf(err, errlen, "CONNECT %u: answered '%s' (no listener in the guest?)", port, line);
    } else {
        return fd;
    }
    close(fd);
    return -1;
}

/* The stream to the guest's port, tried again every 200 ms for up to timeout_ms while the
 * socket or the guest's listener is not there yet; -1 with the last reason in err. */
static inline int vsock_uds_connect(const char *uds, unsigned port, int timeout_ms, char *err, size_t errlen) {
    long long deadline = vsock_uds_now_ms() + timeout_ms;
    for (;;) {
        int fd = vsock_uds_connect_once(uds, port, deadline, err, errlen);
        if (fd >= 0 || vsock_uds_now_ms() + 200 >= deadline) return fd;
        usleep(200 * 1000);
    }
}

#endif
