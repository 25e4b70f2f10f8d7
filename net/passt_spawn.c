/* bellhop's side of --net passt: passt started beside it (net/passt.h).
 *
 * How bellhop knows passt is ready: passt writes its pid file after its whole setup (its
 * options, the host's addresses, its own sandbox) and just before it serves; the file is a FIFO
 * bellhop reads, in a directory of its own. A failing passt ends first, and says why on its
 * stderr, a file in that directory, which bellhop shows only then.
 * Why --fd and not --socket: no path another process could take first or connect to; and
 * passt, started as root, becomes nobody before it binds a socket (or writes its pid file: the
 * FIFO is writable by others for that, the directory only searchable). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/error_text.h"
#include "net/passt.h"
#include "net/spawn.h"

#define STEP_MS 50     /* between looks at whether passt ended, while waiting for it */
#define SAID_MAX 16384 /* of passt's words read when it fails */
#define SAID_LINES 8   /* ...and shown: its reason comes first (a usage text after it) */
#define OWN_ARGS 10    /* bellhop's arguments for passt, before the user's */


int net_passt_parse(const char *args, char *err, size_t errlen) {
    if (!*args) return 0;
    if (*args != ',') return error_text(err, errlen, "passt%s: expected passt[,ARG...]", args);
    unsigned n = 0;
    for (const char *a = args; *a == ','; n++) {
        size_t len = strcspn(a + 1, ",");
        if (len == 0) return error_text(err, errlen, "passt%s: an empty argument", args);
        for (size_t i = 1; i <= len; i++)
            if ((unsigned char)a[i] < 0x20 || (unsigned char)a[i] >= 0x7f)
                return error_text(err, errlen, "passt: a control or non-ASCII character in an argument");
        a += 1 + len;
    }
    if (n > NET_PASST_MAX_ARGS) return error_text(err, errlen, "passt: more than %d arguments", NET_PASST_MAX_ARGS);
    return 0;
}

/* Where passt says it is ready, and what it says: a directory of bellhop's own. */
struct passt_files {
    char dir[PATH_MAX], fifo[PATH_MAX + 8], said[PATH_MAX + 8];
    int fifo_fd, said_fd;
};

/* Whether every directory on the way to dir (itself included) lets others through. */
static bool searchable(const char *dir) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", dir);
    for (;;) {
        struct stat st;
        if (stat(p, &st) != 0 || !(st.st_mode & S_IXOTH)) return false;
        char *slash = strrchr(p, '/');
        if (!slash || slash == p) return true;
        *slash = 0;
    }
}

/* TMPDIR, or /tmp. passt started as root becomes nobody before it opens its pid file: a TMPDIR
 * nobody can go through (a private one) is passed over then. */
static const char *tmp_dir(void) {
    const char *tmp = getenv("TMPDIR");
    return tmp && *tmp && (geteuid() != 0 || searchable(tmp)) ? tmp : "/tmp";
}

static int make_files(struct passt_files *f, char *err, size_t errlen) {
    const char *tmp = tmp_dir();
    snprintf(f->dir, sizeof f->dir, "%s/bellhop-passt.XXXXXX", tmp);
    f->fifo_fd = f->said_fd = -1;
    f->fifo[0] = f->said[0] = 0;
    if (!mkdtemp(f->dir)) return error_text(err, errlen, "--net passt: a directory in %s: %s", tmp, strerror(errno));
    snprintf(f->fifo, sizeof f->fifo, "%s/ready", f->dir);
    snprintf(f->said, sizeof f->said, "%s/said", f->dir);
    /* (modes set after making: the umask cannot take from them) */
    if (chmod(f->dir, 0711) != 0 || mkfifo(f->fifo, 0600) != 0 || chmod(f->fifo, 0622) != 0 ||
        (f->fifo_fd = open(f->fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0 ||
        (f->said_fd = open(f->said, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
        return error_text(err, errlen, "--net passt: %s: %s", f->dir, strerror(errno));
    return 0;
}

/* The directory gone; what passt said, kept open, goes with it when closed. */
static void remove_files(struct passt_files *f) {
    if (f->fifo_fd >= 0) close(f->fifo_fd);
    if (f->said_fd >= 0) close(f->said_fd);
    if (!f->fifo[0]) return; /* (no directory made) */
    unlink(f->fifo);
    unlink(f->said);
    rmdir(f->dir);
}

/* Whether the user's arguments set the MTU themselves (passt refuses two). */
static bool sets_mtu(char *const *argv) {
    for (; *argv; argv++)
        if (strncmp(*argv, "-m", 2) == 0 || strncmp(*argv, "--mtu", 5) == 0) return true;
    return false;
}

/* passt's argv (OWN_ARGS + NET_PASST_MAX_ARGS + 1): bellhop's options, then args split at their
 * commas (in `copy`, which it points into). */
static void make_argv(char **argv, char *copy, char *fifo) {
    char *user[NET_PASST_MAX_ARGS + 1];
    unsigned n = 0, nuser = 0;
    for (char *a = strtok(copy, ","); a && nuser < NET_PASST_MAX_ARGS; a = strtok(NULL, ",")) user[nuser++] = a;
    user[nuser] = NULL;
    char *own[] = {"passt", "-f", "-q", "-1", "--fd", "3", "-P", fifo};
    for (unsigned i = 0; i < sizeof own / sizeof *own; i++) argv[n++] = own[i];
    if (!sets_mtu(user)) argv[n++] = "-m", argv[n++] = "1500";
    memcpy(argv + n, user, (nuser + 1) * sizeof *user);
}

static pid_t spawn(char **argv, int sock, int said, int *error) {
    const struct net_spawn_fd fds[] = {{said, 1}, {said, 2}, {sock, 3}};
    return net_spawn("passt", true, argv, fds, 3, error);
}

static void ended_text(int status, char *err, size_t errlen) {
    if (WIFEXITED(status))
        error_text(err, errlen, "--net passt: passt ended at its start, exit status %d", WEXITSTATUS(status));
    else
        error_text(err, errlen, "--net passt: passt ended at its start, killed by signal %d", WTERMSIG(status));
}

/* Until passt writes its pid into the FIFO (0), ends, or has not in NET_PASST_READY_MS. */
static int await_ready(pid_t pid, int fifo_fd, char *err, size_t errlen) {
    char text[32];
    size_t got = 0;
    for (int waited = 0; waited < NET_PASST_READY_MS; waited += STEP_MS) {
        struct pollfd p = {.fd = fifo_fd, .events = POLLIN};
        if (poll(&p, 1, STEP_MS) > 0) {
            ssize_t n = read(fifo_fd, text + got, sizeof text - 1 - got);
            if (n > 0) got += (size_t)n;
            text[got] = 0;
            if (memchr(text, '\n', got)) {
                if (strtol(text, NULL, 10) == pid) return 0;
                return error_text(err, errlen, "--net passt: its pid file says %.*s, not %d", (int)strcspn(text, "\n"),
                                  text, (int)pid);
            }
            if (n == 0 || got == sizeof text - 1) /* it closed the file without a whole line */
                return error_text(err, errlen, "--net passt: passt wrote no pid into its pid file");
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            ended_text(status, err, errlen);
            return 1; /* reaped */
        }
    }
    return error_text(err, errlen, "--net passt: passt did not start in %d s", NET_PASST_READY_MS / 1000);
}

/* What a failed passt said, on stderr: its first lines, but for its complaints that it has no
 * syslog to write to (it writes every line there first). */
static void show_said(int fd) {
    static char buf[SAID_MAX + 1];
    ssize_t n = pread(fd, buf, SAID_MAX, 0);
    if (n <= 0) return;
    buf[n] = 0;
    unsigned shown = 0;
    for (char *line = buf, *end; *line && shown < SAID_LINES; line = end) {
        end = line + strcspn(line, "\n");
        if (!*end && n == SAID_MAX) break; /* cut short by our read */
        if (*end) *end++ = 0;
        if (!*line || (strncmp(line, "Failed to send ", 15) == 0 && strstr(line, " to syslog"))) continue;
        fprintf(stderr, "%s%s\n", strncmp(line, "passt", 5) == 0 ? "" : "passt: ", line);
        shown++;
    }
}

/* passt started on sock (the device's end's peer) and waited for: 0, or -1 with passt ended
 * and what it said shown. */
static int start(char **argv, int sock, const struct passt_files *f, char *err, size_t errlen) {
    int error;
    pid_t pid = spawn(argv, sock, f->said_fd, &error);
    if (pid < 0)
        return error_text(err, errlen, "--net passt: cannot start passt: %s%s", strerror(error),
                          error == ENOENT ? " (Debian's package passt)" : "");
    int rc = await_ready(pid, f->fifo_fd, err, errlen);
    if (rc == 0) return 0;
    if (rc < 0) { /* still running, or not reaped yet: ended here either way */
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    show_said(f->said_fd);
    return -1;
}

int net_passt_spawn(const char *args, int *device_fd, char *err, size_t errlen) {
    if (net_passt_parse(args, err, errlen) != 0) return -1;
    char *copy = strdup(args);
    if (!copy) return error_text(err, errlen, "--net passt: out of memory");
    struct passt_files f;
    char *argv[OWN_ARGS + NET_PASST_MAX_ARGS + 1];
    int pair[2] = {-1, -1}, rc = make_files(&f, err, errlen);
    if (rc == 0 && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
        rc = error_text(err, errlen, "--net passt: socketpair: %s", strerror(errno));
    if (rc == 0) {
        make_argv(argv, copy, f.fifo);
        rc = start(argv, pair[1], &f, err, errlen);
        close(pair[1]);
    }
    remove_files(&f);
    free(copy);
    if (rc == 0 && fcntl(pair[0], F_SETFL, O_NONBLOCK) != 0) rc = error_text(err, errlen, "--net passt: %s", strerror(errno));
    if (rc != 0 && pair[0] >= 0) close(pair[0]);
    if (rc == 0) *device_fd = pair[0];
    return rc;
}
