/* What the benchmarks (api_bench, snapshot_bench, disk_bench, loop_bench) share: the
 * project's clock in milliseconds, medians, running a program with its output in a file made
 * anew, looking for a line in that file, and one request to bellhop's API. */
#ifndef BELLHOP_BENCH_BENCH_UTIL_H
#define BELLHOP_BENCH_BENCH_UTIL_H

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zircon/syscalls.h>

static inline double now_ms(void) { return (double)zx_clock_get_monotonic() / 1e6; }

static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static inline int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorts v. */
static inline double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* argv with stdin from /dev/null and stdout and stderr into out (NULL: /dev/null), which is
 * made anew before the child runs, so that nothing read from it is an earlier run's. */
static inline pid_t spawn_to(char *const argv[], const char *out) {
    if (out) {
        unlink(out);
        close(open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644));
    }
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR), o = out ? open(out, O_WRONLY | O_APPEND) : null;
        dup2(null, 0);
        dup2(o, 1);
        dup2(o, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* The first line of file that fmt scans a value from, into *v; looked for at once, then again
 * every millisecond until wait_ms have passed. */
static inline bool find_line(const char *file, const char *fmt, double *v, double wait_ms) {
    double until = now_ms() + wait_ms;
    for (;;) {
        FILE *f = fopen(file, "r");
        char line[512];
        bool found = false;
        while (f && !found && fgets(line, sizeof line, f)) found = sscanf(line, fmt, v) == 1;
        if (f) fclose(f);
        if (found) return true;
        if (now_ms() >= until) return false;
        usleep(1000);
    }
}

/* A connection to the API socket at sock, or -1. */
static inline int api_connect(const char *sock) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t len = strlen(sock);
    if (len >= sizeof a.sun_path) return -1;
    memcpy(a.sun_path, sock, len + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
    if (fd >= 0) close(fd);
    return -1;
}

/* One request on the connection fd: the answer's status, or -1. */
static inline int api_request(int fd, const char *method, const char *path, const char *body) {
    char msg[10240], answer[512] = "";
    int n = snprintf(msg, sizeof msg, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s", method, path,
                     strlen(body), body);
    if (n < 0 || (size_t)n >= sizeof msg || write(fd, msg, (size_t)n) != n || read(fd, answer, sizeof answer - 1) <= 0)
        return -1;
    return strncmp(answer, "HTTP/1.1 ", 9) == 0 ? atoi(answer + 9) : -1;
}

#endif
