/* Hostile API clients against a running VM (the tiny guest printing ticks): one that sends a
 * byte at a time, far more clients than the API keeps, one that leaves mid-request, bodies
 * and headers past the limit, bytes that are not HTTP. Each gets a clear answer or its
 * connection closed, and meanwhile a well-behaved client is answered at once and the guest
 * goes on ticking. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
#include "vmm/control/api_server.h"

static char dir[] = "/tmp/bellhop-api-clients.XXXXXX";
static char sock[PATH_MAX], out[PATH_MAX];
static pid_t vmm;

static int connect_api(void) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    CHECK(strlen(sock) < sizeof a.sun_path);
    memcpy(a.sun_path, sock, strlen(sock) + 1);
    CHECK_MSG(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect %s: %s", sock, strerror(errno));
    struct timeval tv = {.tv_sec = 20};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Sends raw bytes, reads the answer until the server closes or a whole answer came. */
static int exchange(int fd, const char *raw, size_t len, char *answer, size_t cap) {
    if (len) CHECK(write(fd, raw, len) == (ssize_t)len);
    size_t got = 0;
    while (got < cap - 1) {
        ssize_t n = read(fd, answer + got, cap - 1 - got);
        if (n <= 0) break;
        got += (size_t)n;
        answer[got] = 0;
        const char *end = strstr(answer, "\r\n\r\n"), *cl = strstr(answer, "Content-Length: ");
        if (end && cl && got >= (size_t)(end + 4 - answer) + strtoul(cl + 16, NULL, 10)) break;
    }
    answer[got] = 0;
    return atoi(answer + (strncmp(answer, "HTTP/1.1 ", 9) == 0 ? 9 : 0));
}

static int get_root(char *answer, size_t cap) {
    int fd = connect_api();
    static const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    int status = exchange(fd, req, sizeof req - 1, answer, cap);
    close(fd);
    return status;
}

static unsigned ticks(void) {
    FILE *f = fopen(out, "r");
    if (!f) return 0;
    char line[256];
    unsigned n = 0;
    while (fgets(line, sizeof line, f)) n += strncmp(line, "tick ", 5) == 0;
    fclose(f);
    return n;
}

static void wait_ticks_beyond(unsigned n) {
    double until = test_now_s() + 30;
    while (ticks() <= n && test_now_s() < until) usleep(50000);
    CHECK_MSG(ticks() > n, "the guest stopped ticking at %u", n);
}

static void start_vm(void) {
    CHECK(mkdtemp(dir));
    char config[PATH_MAX];
    const char *bellhop = test_build_file("bellhop"), *guest = test_guest_elf();
    snprintf(sock, sizeof sock, "%s/api.sock", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(config, sizeof config, "%s/vm.json", dir);
    FILE *f = fopen(config, "w");
    CHECK(f);
    fprintf(f, "{\"boot-source\": {\"kernel_image_path\": \"%s\", \"boot_args\": \"ticks\"}}\n", guest);
    fclose(f);
    vmm = fork();
    CHECK(vmm >= 0);
    if (vmm == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), in = open("/dev/null", O_RDONLY);
        dup2(o, 1), dup2(o, 2), dup2(in, 0);
        execl(bellhop, bellhop, "run", "--config-file", config, "--api-sock", sock, (char *)NULL);
        _exit(127);
    }
    double until = test_now_s() + 60;
    while (ticks() < 2 && test_now_s() < until) usleep(50000);
    CHECK_MSG(ticks() >= 2, "the guest did not start ticking");
}

static void stop_vm(void) {
    kill(vmm, SIGTERM);
    int status;
    waitpid(vmm, &status, 0);
    struct stat st;
    CHECK_MSG(stat(sock, &st) != 0, "the socket outlived the VMM");
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

TEST_TIMEOUT(hostile_clients_neither_stall_the_guest_nor_the_api, 300) {
    start_vm();
    char answer[4096];

    /* One byte at a time: the others are answered meanwhile; it gets a 408 in the end. */
    int slow = connect_api();
    static const char partial[] = "GET / HTTP/1.1\r\nHost: loc";
    for (size_t i = 0; i < sizeof partial - 1; i++) CHECK(write(slow, partial + i, 1) == 1);
    unsigned t0 = ticks();
    double start = test_now_s();
    CHECK_EQ(get_root(answer, sizeof answer), 200);
    CHECK_MSG(strstr(answer, "\"state\":\"Running\""), "%s", answer);
    CHECK_MSG(test_now_s() - start < 2, "a slow client held the API for %.1f s", test_now_s() - start);
    wait_ticks_beyond(t0);
    CHECK_EQ(exchange(slow, NULL, 0, answer, sizeof answer), 408);
    CHECK_MSG(test_now_s() - start < API_REQUEST_TIMEOUT_S + 5, "the slow client lasted %.1f s", test_now_s() - start);
    close(slow);

    /* Four times the clients the API keeps, all idle: the newest is still served. */
    int crowd[API_MAX_CLIENTS * 4];
    for (unsigned i = 0; i < sizeof crowd / sizeof crowd[0]; i++) crowd[i] = connect_api();
    usleep(200000);
    CHECK_EQ(get_root(answer, sizeof answer), 200);
    for (unsigned i = 0; i < sizeof crowd / sizeof crowd[0]; i++) close(crowd[i]);

    /* Gone mid-request, mid-body. */
    int gone = connect_api();
    static const char half[] = "PUT /actions HTTP/1.1\r\nContent-Length: 40\r\n\r\n{\"action_";
    CHECK(write(gone, half, sizeof half - 1) == (ssize_t)(sizeof half - 1));
    close(gone);
    CHECK_EQ(get_root(answer, sizeof answer), 200);

    /* A stated body past the limit: refused before it is sent. */
    int big = connect_api();
    char head[200];
    int n = snprintf(head, sizeof head, "PUT /actions HTTP/1.1\r\nContent-Length: %d\r\n\r\n", API_MAX_BODY + 1);
    CHECK_EQ(exchange(big, head, (size_t)n, answer, sizeof answer), 413);
    close(big);

    /* A body past the limit without a length (chunked), and headers past it. */
    static char flood[API_MAX_BODY + 8192];
    int chunked = connect_api();
    n = snprintf(flood, sizeof flood, "PUT /actions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n",
                 API_MAX_BODY + 100);
    memset(flood + n, 'x', API_MAX_BODY + 100);
    size_t len = (size_t)n + API_MAX_BODY + 100;
    ssize_t w = write(chunked, flood, len); /* the server may close before taking it all */
    CHECK(w > 0);
    CHECK_EQ(exchange(chunked, NULL, 0, answer, sizeof answer), 413);
    close(chunked);
    int headers = connect_api();
    n = snprintf(flood, sizeof flood, "GET / HTTP/1.1\r\nX-Long: ");
    memset(flood + n, 'h', sizeof flood - (size_t)n);
    w = write(headers, flood, sizeof flood);
    CHECK(w > 0);
    int st = exchange(headers, NULL, 0, answer, sizeof answer);
    CHECK_MSG(st == 413 || st == 400, "%d: %s", st, answer);
    close(headers);

    /* Not HTTP at all. */
    int junk = connect_api();
    static const char noise[] = "\x16\x03\x01\x02\x00 hello?\r\n\r\n";
    CHECK_EQ(exchange(junk, noise, sizeof noise - 1, answer, sizeof answer), 400);
    CHECK_MSG(strstr(answer, "malformed HTTP"), "%s", answer);
    close(junk);

    /* Two requests on one connection, both answered. */
    int keep = connect_api();
    static const char two[] = "GET /version HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK(write(keep, two, sizeof two - 1) == (ssize_t)(sizeof two - 1));
    CHECK_EQ(exchange(keep, NULL, 0, answer, sizeof answer), 200);
    CHECK_MSG(strstr(answer, "firecracker_version"), "%s", answer);
    close(keep);

    unsigned t1 = ticks();
    CHECK_EQ(get_root(answer, sizeof answer), 200);
    CHECK_MSG(strstr(answer, "\"state\":\"Running\""), "%s", answer);
    wait_ticks_beyond(t1);
    stop_vm();
}


