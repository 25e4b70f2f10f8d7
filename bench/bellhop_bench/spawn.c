#include <fcntl.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bellhop_bench/spawn.h"

pid_t spawn_piped(char *const argv[], const char *input, bool own_group, int *rd) {
    int p[2], in[2] = {-1, -1};
    if (pipe(p) != 0) return -1;
    if (input) { /* small texts fit in the pipe's buffer */
        if (pipe(in) != 0 || write(in[1], input, strlen(input)) < 0) return -1;
        close(in[1]);
    }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        dup2(input ? in[0] : open("/dev/null", O_RDONLY), 0);
        if (own_group) setpgid(0, 0);
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    if (input) close(in[0]);
    if (pid < 0) {
        close(p[0]);
        return -1;
    }
    *rd = p[0];
    return pid;
}

int spawn_capture(char *const argv[], const char *input, char *out, size_t outlen) {
    int rd, status = -1;
    pid_t pid = spawn_piped(argv, input, false, &rd);
    if (pid < 0) return -1;
    size_t len = 0;
    ssize_t n;
    while (len + 1 < outlen && (n = read(rd, out + len, outlen - 1 - len)) > 0) len += (size_t)n;
    out[len] = 0;
    close(rd);
    waitpid(pid, &status, 0);
    return status;
}

size_t spawn_read_until(int rd, char *out, size_t outlen, const char *const *needles) {
    size_t len = 0;
    out[0] = 0;
    for (;;) {
        for (const char *const *n = needles; *n; n++)
            if (strstr(out, *n)) return len;
        ssize_t got = len + 1 < outlen ? read(rd, out + len, outlen - 1 - len) : 0;
        if (got <= 0) return len;
        len += (size_t)got;
        out[len] = 0;
    }
}
