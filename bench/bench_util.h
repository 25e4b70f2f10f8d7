/* What the whole-process benchmarks (api_bench, snapshot_bench, disk_bench) share: a
 * monotonic clock, medians, and running a program with its output in a file made anew. */
#ifndef BELLHOP_BENCH_BENCH_UTIL_H
#define BELLHOP_BENCH_BENCH_UTIL_H

#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static inline double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
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

#endif
