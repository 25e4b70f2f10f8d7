/* virtio-vsock through the real path: bellhop run --vsock with the tiny guest's "vsock" mode
 * (guest/vsock_test.c). The guest connects to host port 5000 (a listener here, on
 * "<uds>_5000", that echoes) and checks its 256 KiB come back, then listens on port 5001 and
 * echoes each connection; host clients reach it through the Unix socket with "CONNECT 5001\n".
 * Then clients that misbehave (silent, garbage, a port nobody listens on, 200 at once) are
 * closed while the VM goes on, and a snapshot restored in a new bellhop tells its guest
 * TRANSPORT_RESET, after which host connections work again. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/lib/build_paths.h"
#include "tests/lib/check.h"
#include "tests/lib/output_file.h"

#define GUEST_CID 3
#define ECHO_PORT 5000  /* guest/vsock_test.h's VSOCK_TEST_ECHO_PORT */
#define SERVE_PORT 5001 /* VSOCK_TEST_SERVE_PORT */
#define ECHO_BYTES (256u << 10)
#define SERVING "guest: 0 failed, serving vsock"

static char dir[] = "/tmp/bellhop-vsock.XXXXXX";
static char uds[PATH_MAX], out[PATH_MAX];
static pid_t vmm;
static pthread_t echo_thread;

/* Waits for fd to be ready for events, until the deadline: false at the deadline. */
static bool ready(int fd, short events, double deadline) {
    for (;;) {
        double left = deadline - test_now_s();
        if (left <= 0) return false;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)(left * 1000) + 1);
        if (n > 0) return true;
        if (n < 0 && errno != EINTR) return false;
    }
}

/* The host's echo listener for the guest's self-test: one connection, echoed until EOF. Its
 * answer: the bytes echoed, or -1. */
static void *echo_listener(void *arg) {
    int lfd = (int)(intptr_t)arg, fd = -1;
    long total = -1;
    if (ready(lfd, POLLIN, test_now_s() + 60) && (fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
        static char buf[65536];
        double deadline = test_now_s() + 60;
        for (total = 0; ready(fd, POLLIN, deadline);) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n <= 0) break;
            for (ssize_t off = 0, w; off < n; off += w)
                if ((w = write(fd, buf + off, (size_t)(n - off))) <= 0) return close(fd), close(lfd), (void *)-1;
            total += n;
        }
        close(fd);
    }
    close(lfd);
    return (void *)total;
}

enum sock_kind { LISTENER, CLIENT, CLIENT_NONBLOCK };

/* A Unix stream socket at path: listening, or connected (-1 when the connection failed; a
 * non-blocking one fails at once where a full backlog would make connect wait). */
static int unix_socket(const char *path, enum sock_kind kind) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (kind == CLIENT_NONBLOCK ? SOCK_NONBLOCK : 0), 0);
    CHECK(fd >= 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    CHECK(strlen(path) < sizeof a.sun_path);
    memcpy(a.sun_path, path, strlen(path) + 1);
    if (kind == LISTENER) {
        CHECK_MSG(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 4) == 0, "%s: %s", path, strerror(errno));
    } else if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void start_echo_listener(void) {
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s_%u", uds, ECHO_PORT);
    int lfd = unix_socket(path, LISTENER);
    CHECK(pthread_create(&echo_thread, NULL, echo_listener, (void *)(intptr_t)lfd) == 0);
}

static long join_echo_listener(void) {
    void *r;
    CHECK(pthread_join(echo_thread, &r) == 0);
    return (long)r;
}

static void make_dir(void) {
    CHECK(mkdtemp(dir));
    snprintf(uds, sizeof uds, "%s/v.sock", dir);
    snprintf(out, sizeof out, "%s/out", dir);
}

/* bellhop with argv (after "run"), its output into the file at `to`; its stdin from /dev/null,
 * or a pipe whose end to write is *input. */
static pid_t spawn_bellhop(const char *const *args, const char *to, int *input) {
    const char *bellhop = test_build_file("bellhop");
    int p[2] = {-1, -1};
    CHECK(!input || pipe2(p, O_CLOEXEC) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int o = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644), in = input ? p[0] : open("/dev/null", O_RDONLY);
        dup2(o, 1), dup2(o, 2), dup2(in, 0);
        const char *argv[16] = {bellhop, "run"};
        for (unsigned i = 0; args[i] && i < 13; i++) argv[i + 2] = args[i];
        execv(bellhop, (char *const *)argv);
        _exit(127);
    }
    if (input) close(p[0]), *input = p[1];
    return pid;
}

/* A VM in "vsock" mode whose self-tests passed (the echo through port 5000 among them);
 * input: as spawn_bellhop's. */
static void start_vm_with_input(int *input) {
    make_dir();
    start_echo_listener();
    char flag[PATH_MAX + 32];
    snprintf(flag, sizeof flag, "cid=%u,uds=%s", GUEST_CID, uds);
    vmm = spawn_bellhop((const char *const[]){"--vsock", flag, "--cmdline", "vsock", NULL}, out, input);
    CHECK_MSG(test_wait_for_text(out, "serving vsock", 60), "the guest did not get to serving vsock: %s", test_file_text(out));
    CHECK_MSG(strstr(test_file_text(out), SERVING), "a self-test failed: %s", test_file_text(out));
    long echoed = join_echo_listener();
    CHECK_MSG(echoed == ECHO_BYTES, "the host's listener echoed %ld bytes", echoed);
}

static void start_vm(void) { start_vm_with_input(NULL); }

static bool vmm_alive(void) { return waitpid(vmm, NULL, WNOHANG) == 0; }

/* A sanitizer build's bellhop reports what it found in its output, and may go on. */
static void no_sanitizer_report(void) {
    const char *text = test_file_text(out);
    CHECK_MSG(!strstr(text, "ERROR: AddressSanitizer") && !strstr(text, "WARNING: ThreadSanitizer") &&
                  !strstr(text, "runtime error"),
              "%s", text);
}

static void stop_vm(void) {
    if (vmm > 0) kill(vmm, SIGKILL), waitpid(vmm, NULL, 0);
    no_sanitizer_report();
    vmm = 0;
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* Reads up to '\n' (at most cap - 1 bytes) by the deadline: the line, "" when the peer
 * closed first or it did not come. */
static const char *read_line(int fd, double deadline, char *line, size_t cap) {
    size_t n = 0;
    while (n + 1 < cap && ready(fd, POLLIN, deadline)) {
        ssize_t r = read(fd, line + n, 1);
        if (r <= 0) break;
        if (line[n++] == '\n') break;
    }
    line[n] = 0;
    return n && line[n - 1] == '\n' ? line : (line[0] = 0, line);
}

/* A host connection to guest port `port` through the device: its fd, the "OK <n>" line in ok
 * (or "" when refused: the fd is then closed and -1 returned). */
static int connect_guest(unsigned port, char *ok, size_t cap) {
    int fd = unix_socket(uds, CLIENT);
    CHECK_MSG(fd >= 0, "connect %s: %s", uds, strerror(errno));
    char req[32];
    int n = snprintf(req, sizeof req, "CONNECT %u\n", port);
    CHECK(write(fd, req, (size_t)n) == n);
    read_line(fd, test_now_s() + 10, ok, cap);
    if (strncmp(ok, "OK ", 3) == 0) return fd;
    close(fd);
    return -1;
}

static uint8_t data_byte(size_t i) { return (uint8_t)(i * 131 + (i >> 9)); }

/* Sends n bytes on fd and reads them back as they come, then shuts down and waits for the
 * end: a failed CHECK says what went wrong. */
static void echo_through(int fd, size_t n, double seconds) {
    static uint8_t chunk[8192], back[65536];
    size_t sent = 0, got = 0;
    double deadline = test_now_s() + seconds;
    while (got < n) {
        struct pollfd p = {.fd = fd, .events = POLLIN | (sent < n ? POLLOUT : 0)};
        CHECK_MSG(poll(&p, 1, (int)((deadline - test_now_s()) * 1000) + 1) > 0, "stalled: %zu of %zu sent, %zu back", sent, n, got);
        if (p.revents & POLLOUT) {
            size_t len = n - sent < sizeof chunk ? n - sent : sizeof chunk;
            for (size_t i = 0; i < len; i++) chunk[i] = data_byte(sent + i);
            ssize_t w = write(fd, chunk, len);
            CHECK_MSG(w > 0, "write: %s after %zu", strerror(errno), sent);
            sent += (size_t)w;
        }
        if (!(p.revents & (POLLIN | POLLHUP))) continue;
        ssize_t r = read(fd, back, sizeof back);
        CHECK_MSG(r > 0, "the echo ended after %zu of %zu bytes (%s)", got, n, r < 0 ? strerror(errno) : "EOF");
        for (ssize_t i = 0; i < r; i++) CHECK_MSG(back[i] == data_byte(got + (size_t)i), "byte %zu differs", got + (size_t)i);
        got += (size_t)r;
    }
    CHECK(shutdown(fd, SHUT_WR) == 0);
    CHECK_MSG(ready(fd, POLLIN, deadline) && read(fd, back, sizeof back) == 0, "no EOF after the shutdown");
}

/* A fresh client through CONNECT 5001 (tried again for up to `retry_s` while the guest's
 * backlog is full): n bytes echoed, and the guest's result line for it (its host port, one of
 * the device's, counting up from 2^30). */
static void guest_echoes(size_t n, double retry_s) {
    char ok[64], want[128];
    int fd;
    for (double until = test_now_s() + retry_s; (fd = connect_guest(SERVE_PORT, ok, sizeof ok)) < 0 && test_now_s() < until;)
        usleep(200000);
    CHECK_MSG(fd >= 0, "CONNECT %u refused: '%s'; %s", SERVE_PORT, ok, test_file_text(out));
    unsigned long port = strtoul(ok + 3, NULL, 10);
    CHECK_MSG(port >= 1ul << 30 && port <= UINT32_MAX, "'%s'", ok);
    echo_through(fd, n, 30);
    close(fd);
    snprintf(want, sizeof want, "from host port %lu: %zu bytes echoed, then shut down", port, n);
    CHECK_MSG(test_wait_for_text(out, want, 10), "the guest did not report '%s': %s", want, test_file_text(out));
}

TEST_TIMEOUT(the_guest_echoes_through_a_host_listener, 120) {
    int input;
    start_vm_with_input(&input);
    const char *text = test_file_text(out);
    CHECK_MSG(strstr(text, "selftest vsock-refused    PASS") && strstr(text, "selftest vsock-echo       PASS: 262144 bytes"),
              "%s", text);
    /* Ctrl-A x ends the VM, and the device's listener goes with it */
    CHECK(write(input, "\x01x", 2) == 2);
    int status = -1;
    for (double until = test_now_s() + 20; test_now_s() < until && waitpid(vmm, &status, WNOHANG) == 0;) usleep(50000);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x: %s", status, test_file_text(out));
    vmm = 0;
    close(input);
    struct stat st;
    CHECK_MSG(stat(uds, &st) != 0, "%s outlived the VMM", uds);
    stop_vm();
}

TEST_TIMEOUT(a_host_client_reaches_the_guest_listener, 120) {
    start_vm();
    /* more than the guest's window (32 KiB) and the device's (64 KiB), both ways at once */
    guest_echoes(200000, 0);
    CHECK_MSG(strstr(test_file_text(out), "vsock-accept     PASS: connection 1 from host port"), "%s", test_file_text(out));
    guest_echoes(1000, 0);
    stop_vm();
}

/* The client's connection is closed by bellhop within `seconds`, with no "OK" line. */
static void closed_without_ok(int fd, double seconds, const char *what) {
    char buf[64];
    double start = test_now_s();
    ssize_t n = 0;
    if (ready(fd, POLLIN, start + seconds)) n = read(fd, buf, sizeof buf - 1);
    CHECK_MSG(n == 0 || (n < 0 && errno == ECONNRESET), "%s: %s after %.1f s", what, n > 0 ? "an answer" : "still open",
              test_now_s() - start);
    close(fd);
}

TEST_TIMEOUT(clients_that_misbehave_are_closed_and_the_vm_goes_on, 120) {
    start_vm();
    int silent = unix_socket(uds, CLIENT);
    CHECK(silent >= 0);
    static const char *const bad[] = {"HELLO\n", "\x16\x03\x01\x02\x00 not a line at all", "CONNECT\n", "CONNECT 5001x\n",
                                      "CONNECT 99999999999\n", "CONNECT -1\n",
                                      "CONNECT 5001 and a great deal more than one short line may hold\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int fd = unix_socket(uds, CLIENT);
        CHECK(fd >= 0);
        CHECK(write(fd, bad[i], strlen(bad[i])) == (ssize_t)strlen(bad[i]));
        closed_without_ok(fd, 8, bad[i]);
    }
    /* a port nobody listens on in the guest: the guest's RST closes the client */
    char ok[64];
    CHECK_MSG(connect_guest(5555, ok, sizeof ok) < 0 && !ok[0], "CONNECT 5555: '%s'", ok);
    /* the silent one, by now past the device's timeout (2 s) */
    closed_without_ok(silent, 8, "a client that says nothing");
    CHECK(vmm_alive());
    guest_echoes(65536, 0);
    stop_vm();
}

/* Connects n clients that each ask for the guest's listener, without waiting for answers. */
static void crowd_connects(int *fds, unsigned n) {
    for (unsigned i = 0; i < n; i++) {
        fds[i] = unix_socket(uds, CLIENT_NONBLOCK);
        if (fds[i] < 0) continue; /* (the listener's backlog was full: refused, which is fine) */
        CHECK(write(fds[i], "CONNECT 5001\n", 13) == 13);
    }
}

TEST_TIMEOUT(two_hundred_clients_at_once_leave_the_vm_serving, 120) {
    start_vm();
    enum { N = 200 };
    int fds[N];
    crowd_connects(fds, N);
    /* each is answered (OK, from the guest's backlog) or closed, within a few seconds */
    unsigned answered = 0, closed = 0, connected = 0;
    double deadline = test_now_s() + 15;
    for (unsigned i = 0; i < N; i++) {
        if (fds[i] < 0) continue;
        connected++;
        char line[64];
        read_line(fds[i], deadline, line, sizeof line);
        if (strncmp(line, "OK ", 3) == 0) answered++;
        else if (ready(fds[i], POLLIN, deadline) && read(fds[i], line, sizeof line) <= 0) closed++;
    }
    CHECK_MSG(answered + closed == connected, "%u connected, %u answered, %u closed, the rest neither within 15 s",
              connected, answered, closed);
    CHECK_MSG(answered >= 1, "not one of %u answered", connected);
    for (unsigned i = 0; i < N; i++)
        if (fds[i] >= 0) close(fds[i]);
    CHECK(vmm_alive());
    /* (the guest takes a moment to see the crowd's connections end: its backlog is full meanwhile) */
    guest_echoes(65536, 30);
    stop_vm();
}

/* One request to the API at sock: the HTTP status. */
static int api(const char *sock, const char *method, const char *path, const char *body) {
    int fd = unix_socket(sock, CLIENT);
    CHECK_MSG(fd >= 0, "connect %s: %s", sock, strerror(errno));
    char req[PATH_MAX * 2 + 256], answer[4096];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                                      "Content-Length: %zu\r\n\r\n%s", method, path, strlen(body), body);
    CHECK(n > 0 && (size_t)n < sizeof req && write(fd, req, (size_t)n) == n);
    size_t got = 0;
    for (double deadline = test_now_s() + 60; got < sizeof answer - 1 && ready(fd, POLLIN, deadline);) {
        ssize_t r = read(fd, answer + got, sizeof answer - 1 - got);
        if (r <= 0) break;
        got += (size_t)r;
        answer[got] = 0;
        const char *end = strstr(answer, "\r\n\r\n"), *cl = strstr(answer, "Content-Length: ");
        if (end && got >= (size_t)(end + 4 - answer) + (cl ? strtoul(cl + 16, NULL, 10) : 0)) break;
    }
    answer[got] = 0;
    close(fd);
    CHECK_MSG(strncmp(answer, "HTTP/1.1 ", 9) == 0, "%s %s: '%s'", method, path, answer);
    int status = atoi(answer + 9);
    CHECK_MSG(status == 204 || status == 200, "%s %s: %s", method, path, answer);
    return status;
}

/* The first VMM, made from a config file with the API: 64 MiB, its snapshot taken paused. */
static void boot_and_snapshot(const char *state, const char *mem) {
    char config[PATH_MAX], sock[PATH_MAX], body[3 * PATH_MAX];
    snprintf(config, sizeof config, "%s/vm.json", dir);
    snprintf(sock, sizeof sock, "%s/api.sock", dir);
    FILE *f = fopen(config, "w");
    CHECK(f);
    fprintf(f, "{\"boot-source\": {\"kernel_image_path\": \"%s\", \"boot_args\": \"vsock\"},\n"
               " \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 64},\n"
               " \"vsock\": {\"guest_cid\": %u, \"uds_path\": \"%s\"}}\n", test_guest_elf(), GUEST_CID, uds);
    fclose(f);
    start_echo_listener();
    vmm = spawn_bellhop((const char *const[]){"--config-file", config, "--api-sock", sock, NULL}, out, NULL);
    CHECK_MSG(test_wait_for_text(out, "serving vsock", 60) && strstr(test_file_text(out), SERVING), "%s", test_file_text(out));
    CHECK_EQ(join_echo_listener(), ECHO_BYTES);
    guest_echoes(4096, 0);
    api(sock, "PATCH", "/vm", "{\"state\": \"Paused\"}");
    snprintf(body, sizeof body, "{\"snapshot_type\": \"Full\", \"snapshot_path\": \"%s\", \"mem_file_path\": \"%s\"}", state, mem);
    api(sock, "PUT", "/snapshot/create", body);
    kill(vmm, SIGKILL);
    waitpid(vmm, NULL, 0);
    no_sanitizer_report();
}

/* The restored device has none of the host's sockets: its guest hears TRANSPORT_RESET, keeps
 * its listener, and the host connects again through the same socket path. */
TEST_TIMEOUT(a_restored_guest_hears_transport_reset_and_serves_again, 120) {
    make_dir();
    char state[PATH_MAX], mem[PATH_MAX];
    snprintf(state, sizeof state, "%s/vm.state", dir);
    snprintf(mem, sizeof mem, "%s/vm.mem", dir);
    boot_and_snapshot(state, mem);
    snprintf(out, sizeof out, "%s/restored.out", dir);
    vmm = spawn_bellhop((const char *const[]){"--restore", state, "--mem-file", mem, NULL}, out, NULL);
    char want[96];
    snprintf(want, sizeof want, "vsock: transport reset: 0 connection(s) dropped, guest cid %u", GUEST_CID);
    CHECK_MSG(test_wait_for_text(out, want, 30), "%s", test_file_text(out));
    guest_echoes(65536, 0);
    CHECK(vmm_alive());
    stop_vm();
}
