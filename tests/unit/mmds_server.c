/* The guest's side of MMDS over its Unix socket, as bellhop-net's connections reach it: raw
 * HTTP in, Firecracker's answers out (V1 and V2), and heads past the server's limits refused. */
#include <errno.h>
#include <lib/async-loop/default.h>
#include <lib/async-loop/loop.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "net/mmds.h"
#include "tests/lib/check.h"
#include "vmm/control/api_server.h"
#include "vmm/control/mmds_server.h"

static const char store[] =
    "{\"latest\":{\"meta-data\":{\"ami-id\":\"ami-12345678\",\"reservation-id\":\"r-fea54097\"}}}";

struct fixture {
    struct mmds *m;
    async_loop_t *loop;
    struct mmds_server *s;
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static void start(struct fixture *f, enum mmds_version v) {
    char err[200];
    CHECK(f->m = mmds_new(0));
    CHECK_EQ(mmds_put(f->m, store, sizeof store - 1, err, sizeof err), 204);
    mmds_set_version(f->m, v);
    f->s = mmds_server_create(f->m, err, sizeof err);
    CHECK_MSG(f->s, "%s", err);
    snprintf(f->dir, sizeof f->dir, "%s", mmds_server_path(f->s));
    dirname(f->dir);
    CHECK_EQ(async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &f->loop), ZX_OK);
    CHECK_EQ(mmds_server_attach(f->s, async_loop_get_dispatcher(f->loop)), 0);
    CHECK_EQ(async_loop_start_thread(f->loop, "mmds", NULL), ZX_OK);
}

static void stop(struct fixture *f) {
    async_loop_quit(f->loop);
    async_loop_join_threads(f->loop);
    mmds_server_detach(f->s);
    mmds_server_destroy(f->s);
    async_loop_destroy(f->loop);
    mmds_free(f->m);
    struct stat st;
    CHECK_MSG(stat(f->dir, &st) != 0 && errno == ENOENT, "%s is still there", f->dir);
}

static int connect_to(const struct fixture *f) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", mmds_server_path(f->s));
    CHECK_MSG(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "%s: %s", a.sun_path, strerror(errno));
    struct timeval tv = {.tv_sec = 2}; /* a test that would hang fails instead */
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
    return fd;
}

static void send_all(int fd, const char *text, size_t len) {
    while (len) {
        ssize_t n = write(fd, text, len);
        CHECK_MSG(n > 0, "write: %s", strerror(errno));
        text += n, len -= (size_t)n;
    }
}

struct answer {
    int status;
    char head[1024];
    char body[4096];
};

/* One response off fd: its head, then Content-Length bytes of body. */
static void read_answer(int fd, struct answer *a) {
    char buf[sizeof a->head + sizeof a->body];
    size_t got = 0;
    char *end = NULL;
    while (!(end = memmem(buf, got, "\r\n\r\n", 4))) {
        CHECK_MSG(got < sizeof buf, "a head longer than %zu bytes", sizeof buf);
        ssize_t n = read(fd, buf + got, sizeof buf - got);
        CHECK_MSG(n > 0, "no answer (%zd: %s), after %zu bytes", n, strerror(errno), got);
        got += (size_t)n;
    }
    size_t head_len = (size_t)(end - buf) + 4;
    CHECK(head_len < sizeof a->head);
    memcpy(a->head, buf, head_len);
    a->head[head_len] = 0;
    CHECK_MSG(sscanf(a->head, "HTTP/1.1 %d ", &a->status) == 1, "%s", a->head);
    const char *cl = strcasestr(a->head, "\r\nContent-Length:");
    CHECK_MSG(cl, "%s", a->head);
    size_t len = strtoul(cl + 17, NULL, 10);
    CHECK(len < sizeof a->body);
    while (got < head_len + len) {
        ssize_t n = read(fd, buf + got, sizeof buf - got);
        CHECK_MSG(n > 0, "a body cut short: %zu of %zu bytes", got - head_len, len);
        got += (size_t)n;
    }
    memcpy(a->body, buf + head_len, len);
    a->body[len] = 0;
}

/* A request on a connection of its own. */
static void ask(const struct fixture *f, const char *request, struct answer *a) {
    int fd = connect_to(f);
    send_all(fd, request, strlen(request));
    read_answer(fd, a);
    close(fd);
}

static bool has_type(const struct answer *a, const char *type) {
    char line[100];
    snprintf(line, sizeof line, "\r\nContent-Type: %s\r\n", type);
    return strcasestr(a->head, line) != NULL;
}

TEST_TIMEOUT(v1_answers_leaves_listings_and_json, 5) {
    struct fixture f;
    start(&f, MMDS_V1);
    struct answer a;
    ask(&f, "GET /latest/meta-data/ami-id HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n", &a);
    CHECK_MSG(a.status == 200, "%s%s", a.head, a.body);
    CHECK_MSG(has_type(&a, "text/plain"), "%s", a.head);
    CHECK_STR_EQ(a.body, "ami-12345678");

    /* the query is no part of the path */
    ask(&f, "GET /latest/meta-data/?x=1 HTTP/1.1\r\n\r\n", &a);
    CHECK_MSG(a.status == 200, "%s%s", a.head, a.body);
    CHECK_MSG(strstr(a.body, "ami-id") && strstr(a.body, "reservation-id"), "%s", a.body);

    ask(&f, "GET /latest/meta-data HTTP/1.1\r\nAccept: application/json\r\n\r\n", &a);
    CHECK_MSG(a.status == 200, "%s%s", a.head, a.body);
    CHECK_MSG(has_type(&a, "application/json"), "%s", a.head);
    CHECK_MSG(strstr(a.body, "\"ami-id\"") && strstr(a.body, "\"r-fea54097\""), "%s", a.body);

    /* a header with no value ends where the next begins */
    ask(&f, "GET /latest/meta-data HTTP/1.1\r\nX-Empty:\r\nX-Blank: \r\nAccept: application/json\r\n\r\n", &a);
    CHECK_MSG(has_type(&a, "application/json"), "%s", a.head);

    ask(&f, "GET /latest/nothing-here HTTP/1.1\r\n\r\n", &a);
    CHECK_EQ(a.status, 404);
    stop(&f);
}

TEST_TIMEOUT(heads_past_the_limits_are_refused, 5) {
    struct fixture f;
    start(&f, MMDS_V1);
    static char request[8192];
    struct answer a;

    int n = snprintf(request, sizeof request, "GET /latest/meta-data/ami-id HTTP/1.1\r\nX-Long: ");
    memset(request + n, 'v', 2000);
    snprintf(request + n + 2000, sizeof request - (size_t)n - 2000, "\r\n\r\n");
    ask(&f, request, &a);
    CHECK_MSG(a.status == 400, "%s%s", a.head, a.body);
    CHECK_MSG(strcasestr(a.head, "Connection: close"), "%s", a.head);

    n = snprintf(request, sizeof request, "GET /latest/meta-data/ami-id HTTP/1.1\r\n");
    memset(request + n, 'N', 2000);
    snprintf(request + n + 2000, sizeof request - (size_t)n - 2000, ": v\r\n\r\n");
    ask(&f, request, &a);
    CHECK_MSG(a.status == 400, "%s%s", a.head, a.body);

    n = snprintf(request, sizeof request, "GET /latest/meta-data/ami-id HTTP/1.1\r\n");
    for (int i = 0; i < 40; i++) n += snprintf(request + n, sizeof request - (size_t)n, "X-H%d: %d\r\n", i, i);
    snprintf(request + n, sizeof request - (size_t)n, "\r\n");
    ask(&f, request, &a);
    CHECK_MSG(a.status == 400, "%s%s", a.head, a.body);

    /* at the limits, taken */
    n = snprintf(request, sizeof request, "GET /latest/meta-data/ami-id HTTP/1.1\r\nX-Long: ");
    memset(request + n, 'v', API_MAX_HEADER_LEN);
    n += API_MAX_HEADER_LEN;
    n += snprintf(request + n, sizeof request - (size_t)n, "\r\n");
    for (int i = 1; i < API_MAX_HEADERS; i++) n += snprintf(request + n, sizeof request - (size_t)n, "X-H%d: %d\r\n", i, i);
    snprintf(request + n, sizeof request - (size_t)n, "\r\n");
    ask(&f, request, &a);
    CHECK_MSG(a.status == 200, "%s%s", a.head, a.body);
    stop(&f);
}

static void pause_ms(long ms) { nanosleep(&(struct timespec){.tv_nsec = ms * 1000000}, NULL); }

TEST_TIMEOUT(v2_wants_a_session_token, 5) {
    struct fixture f;
    start(&f, MMDS_V2);
    struct answer a;
    ask(&f, "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 60\r\n\r\n", &a);
    CHECK_MSG(a.status == 200, "%s%s", a.head, a.body);
    CHECK(a.body[0]);
    char token[sizeof a.body];
    snprintf(token, sizeof token, "%s", a.body);

    /* the token's header in pieces, as a slow link delivers it: one connection, kept alive */
    int fd = connect_to(&f);
    static const char first[] = "GET /latest/meta-data/ami-id HTTP/1.1\r\nX-metad";
    send_all(fd, first, sizeof first - 1);
    pause_ms(20);
    static const char second[] = "ata-Token: ";
    send_all(fd, second, sizeof second - 1);
    pause_ms(20);
    size_t half = strlen(token) / 2;
    send_all(fd, token, half);
    pause_ms(20);
    send_all(fd, token + half, strlen(token) - half);
    send_all(fd, "\r\n\r\n", 4);
    read_answer(fd, &a);
    CHECK_MSG(a.status == 200, "%s%s", a.head, a.body);
    CHECK_STR_EQ(a.body, "ami-12345678");

    static const char without[] = "GET /latest/meta-data/ami-id HTTP/1.1\r\n\r\n";
    send_all(fd, without, sizeof without - 1);
    read_answer(fd, &a);
    CHECK_MSG(a.status == 401, "%s%s", a.head, a.body);
    close(fd);

    ask(&f, "GET /latest/meta-data/ami-id HTTP/1.1\r\nX-metadata-token: not-a-token\r\n\r\n", &a);
    CHECK_MSG(a.status == 401, "%s%s", a.head, a.body);
    stop(&f);
}

TEST_TIMEOUT(an_unusable_runtime_dir_falls_back_to_tmp, 5) {
    setenv("XDG_RUNTIME_DIR", "/nonexistent-bellhop-runtime", 1);
    struct fixture f;
    start(&f, MMDS_V1);
    CHECK_MSG(strncmp(mmds_server_path(f.s), "/tmp/bellhop-mmds.", 18) == 0, "%s", mmds_server_path(f.s));
    struct stat st;
    CHECK(stat(f.dir, &st) == 0);
    CHECK_EQ(st.st_mode & 0777, 0700);
    struct answer a;
    ask(&f, "GET /latest/meta-data/reservation-id HTTP/1.1\r\n\r\n", &a);
    CHECK_STR_EQ(a.body, "r-fea54097");
    stop(&f);
}

TEST_TIMEOUT(the_runtime_dir_is_used_when_it_fits, 5) {
    char run[] = "/tmp/bellhop-mmds-test.XXXXXX";
    CHECK(mkdtemp(run));
    setenv("XDG_RUNTIME_DIR", run, 1);
    struct fixture f;
    start(&f, MMDS_V1);
    CHECK_MSG(strncmp(mmds_server_path(f.s), run, strlen(run)) == 0, "%s", mmds_server_path(f.s));
    stop(&f);

    /* a socket path past sun_path's size there: /tmp instead */
    char deep[200];
    snprintf(deep, sizeof deep, "%s/%090d", run, 0);
    CHECK(mkdir(deep, 0700) == 0);
    setenv("XDG_RUNTIME_DIR", deep, 1);
    start(&f, MMDS_V1);
    CHECK_MSG(strncmp(mmds_server_path(f.s), "/tmp/bellhop-mmds.", 18) == 0, "%s", mmds_server_path(f.s));
    stop(&f);
    CHECK(rmdir(deep) == 0 && rmdir(run) == 0);
}
