#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 256

struct test_case {
    const char *name;
    test_fn_t *fn;
    unsigned timeout_s;
};

static struct test_case tests[MAX_TESTS];
static int ntests;
static int result_fd = -1; /* child writes "F<msg>" or "S<msg>" here before exiting */

void test_register(const char *name, test_fn_t *fn, unsigned timeout_s) {
    if (ntests == MAX_TESTS) {
        fprintf(stderr, "check: too many tests (max %d)\n", MAX_TESTS);
        abort();
    }
    tests[ntests++] = (struct test_case){name, fn, timeout_s};
}

static _Noreturn void report(char kind, const char *prefix, const char *fmt, va_list ap) {
    char msg[1024];
    int n = snprintf(msg, sizeof msg, "%c%s", kind, prefix);
    if (n < 0) n = 0;
    if ((size_t)n < sizeof msg) vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    /* One line per test: the message must not break the output protocol. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    if (write(result_fd, msg, strlen(msg)) < 0) _exit(3);
    _exit(kind == 'F' ? 1 : 0);
}

void test_fail(const char *file, int line, const char *fmt, ...) {
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    report('F', prefix, fmt, ap);
}

void test_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report('S', "", fmt, ap);
}

/* Reads the child's result message until EOF or the deadline (monotonic seconds). */
static size_t read_result(int fd, char *msg, size_t cap, double deadline) {
    size_t len = 0;
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double left = deadline - ((double)now.tv_sec + now.tv_nsec / 1e9);
        if (left <= 0) break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, left > 1e6 ? 1000000000 : (int)(left * 1000) + 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        ssize_t r = read(fd, msg + len, cap - 1 - len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
        if (len == cap - 1) break;
    }
    msg[len] = 0;
    return len;
}

/* Every test runs in a process group of its own. Whatever it started and left behind (a
 * bellhop that hangs when its test timed out) is killed with the group when the test ends,
 * and reaped here (this process is their subreaper): nothing outlives its test, nothing keeps
 * the runner's output pipe open, so one hung guest cannot stall the whole run. */
static int run_one(const char *suite, const struct test_case *t) {
    int fds[2];
    /* close-on-exec: the programs a test runs never hold the result pipe open */
    if (pipe2(fds, O_CLOEXEC) != 0) {
        printf("FAIL %s.%s: pipe: %s\n", suite, t->name, strerror(errno));
        return 1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        printf("FAIL %s.%s: fork: %s\n", suite, t->name, strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return 1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        close(fds[0]);
        result_fd = fds[1];
        alarm(t->timeout_s);
        t->fn();
        fflush(stdout);
        _exit(0);
    }
    setpgid(pid, pid); /* also here: the group exists before either side goes on */
    close(fds[1]);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    /* the child's alarm ends it at timeout_s; the margin covers a child that blocks SIGALRM */
    char msg[1100];
    size_t len = read_result(fds[0], msg, sizeof msg, (double)start.tv_sec + start.tv_nsec / 1e9 + t->timeout_s + 10);
    close(fds[0]);
    kill(-pid, SIGKILL);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    while (waitpid(-pid, NULL, 0) > 0 || errno == EINTR) { /* the group's stragglers */
    }
    if (len > 0 && msg[0] == 'S') {
        printf("SKIP %s.%s: %s\n", suite, t->name, msg + 1);
        return 0;
    }
    if (len > 0 && msg[0] == 'F') {
        printf("FAIL %s.%s: %s\n", suite, t->name, msg + 1);
        return 1;
    }
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        printf("FAIL %s.%s: %s (signal %d)%s\n", suite, t->name, strsignal(sig), sig,
               sig == SIGALRM || sig == SIGKILL ? " — timed out" : "");
        return 1;
    }
    if (WEXITSTATUS(status) != 0) {
        printf("FAIL %s.%s: exited with status %d\n", suite, t->name, WEXITSTATUS(status));
        return 1;
    }
    printf("PASS %s.%s\n", suite, t->name);
    return 0;
}

/* Usage: <binary> [glob]      runs the tests whose names match glob (default all).
 *        <binary> --list       prints suite.name of every test, in the order they run, one
 *                              per line: the runner checks that each reported a result.
 *        <binary> --from NAME  runs NAME and every test after it: the runner goes on there
 *                              when the nested host froze in the middle of a binary. */
int test_main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *suite = basename(argv[0]);
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < ntests; i++) printf("%s.%s\n", suite, tests[i].name);
        return 0;
    }
    const char *pattern = "*", *wanted = pattern;
    int first = 0;
    if (argc > 2 && strcmp(argv[1], "--from") == 0) {
        wanted = argv[2];
        while (first < ntests && strcmp(tests[first].name, wanted) != 0) first++;
    } else if (argc > 1) {
        pattern = wanted = argv[1];
    }
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    int failed = 0, ran = 0;
    for (int i = first; i < ntests; i++) {
        if (fnmatch(pattern, tests[i].name, 0) != 0) continue;
        ran++;
        failed += run_one(suite, &tests[i]);
    }
    if (ran == 0) {
        printf("FAIL %s: no test matched '%s'\n", suite, wanted);
        return 1;
    }
    return failed ? 1 : 0;
}

int main(int argc, char **argv) { return test_main(argc, argv); }

int test_forbid_syscall(long nr, int err) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (uint32_t)err),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
        return -1;
    return 0;
}
