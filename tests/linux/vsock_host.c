/* The host's end of the Linux guest's vsock tests (tests/kvm/linux_guest.sh). Static, in
 * build/linux, so that it goes wherever the guest's files go (the nested KVM host too):
 *   vsock_host echo UDS PORT TEXT    through bellhop's vsock socket UDS to the guest's PORT
 *                                    (tried for 30 s while nothing listens there yet): sends
 *                                    TEXT and a newline, prints the line that comes back
 *   vsock_host listen PATH SECONDS   listens on the Unix socket PATH (where a guest's
 *                                    connection to the host's port N arrives: UDS_N), prints
 *                                    what the first connection sends until it closes
 * Every wait is bounded (SECONDS, or 30 s); a failure says why on stderr, status 1. */
#define _GNU_SOURCE /* accept4 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vsock_uds.h"

#define STEP_MS 30000

static int echo(const char *uds, unsigned port, const char *text) {
    char err[256], line[4096];
    int fd = vsock_uds_connect(uds, port, STEP_MS, err, sizeof err);
    if (fd < 0) {
        fprintf(stderr, "vsock_host: %s\n", err);
        return 1;
    }
    size_t len = strlen(text);
    char msg[4096];
    if (len + 1 >= sizeof msg) len = sizeof msg - 2;
    memcpy(msg, text, len);
    msg[len++] = '\n';
    if (write(fd, msg, len) != (ssize_t)len) {
        fprintf(stderr, "vsock_host: write: %s\n", strerror(errno));
        close(fd);
        return 1;
    }
    /* the same reading as the answer to CONNECT: up to a newline */
    int r = vsock_uds_read_answer(fd, line, sizeof line, vsock_uds_now_ms() + STEP_MS);
    close(fd);
    if (r != 0) {
        fprintf(stderr, "vsock_host: no echo from port %u in %d s\n", port, STEP_MS / 1000);
        return 1;
    }
    printf("%s\n", line);
    return 0;
}

/* A listening socket at path (made anew), or -1. */
static int listen_at(const char *path) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) return -1;
    strcpy(a.sun_path, path);
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 1) == 0) return fd;
    if (fd >= 0) close(fd);
    return -1;
}

/* Copies the connection c to stdout until it closes or the deadline passes. */
static int copy_out(int c, long long deadline) {
    char buf[4096];
    for (;;) {
        if (vsock_uds_wait(c, POLLIN, deadline) != 1) {
            fprintf(stderr, "vsock_host: the connection did not close in time\n");
            return 1;
        }
        ssize_t n = read(c, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n < 0;
        if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) return 1;
        fflush(stdout);
    }
}

static int listen_once(const char *path, int seconds) {
    long long deadline = vsock_uds_now_ms() + (long long)seconds * 1000;
    int l = listen_at(path);
    if (l < 0) {
        fprintf(stderr, "vsock_host: listen on %s: %s\n", path, strerror(errno));
        return 1;
    }
    int status = 1, c = -1;
    if (vsock_uds_wait(l, POLLIN, deadline) == 1 && (c = accept4(l, NULL, NULL, SOCK_CLOEXEC)) >= 0)
        status = copy_out(c, deadline);
    else
        fprintf(stderr, "vsock_host: nobody connected to %s in %d s\n", path, seconds);
    if (c >= 0) close(c);
    close(l);
    unlink(path);
    return status;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "echo") == 0) return echo(argv[2], (unsigned)strtoul(argv[3], NULL, 10), argv[4]);
    if (argc == 4 && strcmp(argv[1], "listen") == 0) return listen_once(argv[2], atoi(argv[3]));
    fprintf(stderr, "usage: vsock_host echo UDS PORT TEXT | vsock_host listen PATH SECONDS\n");
    return 2;
}
