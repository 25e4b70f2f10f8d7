/* virtio-vsock's host side (devices/vsock_conn.h): the listener at the socket path and the
 * clients it accepts until they say "CONNECT <port>\n", each connection's Unix socket (one
 * wait on the loop each, for what the connection needs now), the guest's bytes the socket has
 * not taken yet, the connections' table, and the one timer that ends whatever waited too long.
 * Every socket is non-blocking and is touched on the loop thread only; sends use MSG_NOSIGNAL,
 * so a peer gone is an error, never a SIGPIPE. */
#include <errno.h>
#include <lib/async/time.h>
#include <lib/container_of.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "base/unix_socket.h"
#include "devices/vsock_conn.h"

#define ACCEPTS_PER_TURN 16
#define ACCEPT_PAUSE ZX_MSEC(100) /* after accept4 failed for want of fds or memory */
#define CREDIT_UPDATE_AFTER (VSOCK_CONN_BUF / 4) /* bytes forwarded before the guest hears of them */

static bool again(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR; }

zx_time_t vsock_now(struct vsock *v) { return v->env->loop ? async_now(v->env->loop) : zx_clock_get_monotonic(); }

/* ---- the timer ---- */

static void schedule(struct vsock *v, zx_time_t at) {
    async_dispatcher_t *loop = v->env->loop;
    if (!loop || !at) return;
    if (v->sweep_posted) {
        if (at >= v->sweep_at || async_cancel_task(loop, &v->sweep) != ZX_OK) return;
        v->sweep_posted = false;
    }
    v->sweep.deadline = v->sweep_at = at;
    v->sweep_posted = async_post_task(loop, &v->sweep) == ZX_OK;
}

void vsock_conn_set_deadline(struct vsock_conn *c, zx_time_t deadline) {
    c->deadline = deadline;
    schedule(c->v, deadline);
}

static void listen_arm(struct vsock *v);

/* A client that never finished its line, a REQUEST the guest never answered, a connection that
 * never drained: each ends (the guest hears an RST where it knew of it). */
static void on_sweep(async_dispatcher_t *d, async_task_t *task, zx_status_t st) {
    (void)d;
    struct vsock *v = container_of(task, struct vsock, sweep);
    v->sweep_posted = false;
    if (st != ZX_OK) return; /* the loop is going */
    vsock_sync(v);
    zx_time_t now = vsock_now(v), next = 0;
    for (unsigned i = v->nconns; i-- > 0;) { /* a freed one's slot takes the last, already seen */
        struct vsock_conn *c = v->conns[i];
        if (c->deadline && c->deadline <= now) vsock_conn_reset(c);
    }
    for (unsigned i = 0; i < v->nconns; i++)
        if (v->conns[i]->deadline && (!next || v->conns[i]->deadline < next)) next = v->conns[i]->deadline;
    if (v->accept_again && v->accept_again <= now) {
        v->accept_again = 0;
        listen_arm(v);
    } else if (v->accept_again && (!next || v->accept_again < next)) {
        next = v->accept_again;
    }
    schedule(v, next);
    vsock_rx_pump(v);
}

/* ---- the table ---- */

static unsigned bucket(uint32_t host_port, uint32_t guest_port) {
    return (host_port ^ guest_port * 0x9e3779b1u) % VSOCK_BUCKETS;
}

struct vsock_conn *vsock_conn_find(struct vsock *v, uint32_t host_port, uint32_t guest_port) {
    for (struct vsock_conn *c = v->buckets[bucket(host_port, guest_port)]; c; c = c->hash_next)
        if (c->host_port == host_port && c->guest_port == guest_port) return c;
    return NULL;
}

void vsock_conn_hash(struct vsock_conn *c) {
    struct vsock_conn **b = &c->v->buckets[bucket(c->host_port, c->guest_port)];
    c->hash_next = *b;
    *b = c;
    c->hashed = true;
}

static void unhash(struct vsock_conn *c) {
    if (!c->hashed) return;
    for (struct vsock_conn **p = &c->v->buckets[bucket(c->host_port, c->guest_port)]; *p; p = &(*p)->hash_next)
        if (*p == c) {
            *p = c->hash_next;
            break;
        }
    c->hashed = false;
}

void vsock_conn_queue(struct vsock_conn *c, bool owes) {
    struct vsock *v = c->v;
    if (owes == c->on_rx) return;
    if (owes) {
        c->rx_prev = v->rx_tail;
        c->rx_next = NULL;
        *(v->rx_tail ? &v->rx_tail->rx_next : &v->rx_head) = c;
        v->rx_tail = c;
    } else {
        *(c->rx_prev ? &c->rx_prev->rx_next : &v->rx_head) = c->rx_next;
        *(c->rx_next ? &c->rx_next->rx_prev : &v->rx_tail) = c->rx_prev;
    }
    c->on_rx = owes;
}

uint32_t vsock_next_host_port(struct vsock *v) {
    for (;;) { /* at most VSOCK_MAX_CONNS ports are taken: this ends */
        uint32_t port = v->next_host_port;
        v->next_host_port = port + 1 < (1u << 31) ? port + 1 : VSOCK_FIRST_HOST_PORT;
        bool taken = false;
        for (unsigned i = 0; i < v->nconns && !taken; i++)
            taken = v->conns[i]->hashed && v->conns[i]->host_port == port;
        if (!taken) return port;
    }
}

static void on_conn(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *sig);

struct vsock_conn *vsock_conn_new(struct vsock *v, int fd, enum vsock_conn_state state) {
    struct vsock_conn *c = v->nconns < VSOCK_MAX_CONNS ? calloc(1, sizeof *c) : NULL;
    if (!c || zx_fd_create(fd, 0, &c->handle) != ZX_OK) {
        free(c);
        close(fd);
        return NULL;
    }
    c->v = v;
    c->fd = fd;
    c->state = state;
    c->wait = (async_wait_t){.handler = on_conn, .object = c->handle};
    c->slot = v->nconns;
    v->conns[v->nconns++] = c;
    return c;
}

/* The socket, its wait and the bytes kept for it go; the connection stays. With one loop
 * thread a wait is either pending (canceled here) or has run: none can be in dispatch. */
static void close_host(struct vsock_conn *c) {
    if (c->waiting_for && c->v->env->loop) async_cancel_wait(c->v->env->loop, &c->wait);
    c->waiting_for = 0;
    if (c->handle != ZX_HANDLE_INVALID) zx_handle_close(c->handle); /* first: it leaves epoll */
    c->handle = ZX_HANDLE_INVALID;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    free(c->ring);
    c->ring = NULL;
    c->ring_head = c->ring_len = 0;
    c->line_len = c->line_off = 0;
    c->host_readable = false;
}

void vsock_conn_free(struct vsock_conn *c) {
    struct vsock *v = c->v;
    close_host(c);
    unhash(c);
    vsock_conn_queue(c, false);
    v->conns[c->slot] = v->conns[--v->nconns];
    v->conns[c->slot]->slot = c->slot;
    free(c);
}

void vsock_conn_free_all(struct vsock *v) {
    while (v->nconns) vsock_conn_free(v->conns[v->nconns - 1]);
}

void vsock_conn_reset(struct vsock_conn *c) {
    if (!c->guest_knows) return vsock_conn_free(c);
    close_host(c);
    c->state = VSOCK_DEAD;
    c->owe_rst = true;
    c->owe_request = c->owe_response = c->owe_credit = false;
    c->owe_shutdown = 0;
    c->deadline = 0;
    vsock_conn_changed(c);
}

/* ---- the host socket's bytes ---- */

static ssize_t send_iov(int fd, struct iovec *iov, size_t n) {
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = n};
    return sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void forwarded(struct vsock_conn *c, uint32_t n) {
    c->fwd_cnt += n;
    if (c->fwd_cnt - c->fwd_cnt_told >= CREDIT_UPDATE_AFTER) c->owe_credit = true;
}

/* The request's bytes [off, off + len) into the ring, which has room for them. */
static void ring_put(struct vsock_conn *c, const struct virtq_req *r, uint64_t off, uint32_t len) {
    uint32_t tail = (c->ring_head + c->ring_len) % VSOCK_CONN_BUF;
    uint32_t first = len < VSOCK_CONN_BUF - tail ? len : VSOCK_CONN_BUF - tail;
    virtq_req_read(r, off, c->ring + tail, first);
    virtq_req_read(r, off + first, c->ring, len - first);
    c->ring_len += len;
}

int vsock_conn_take(struct vsock_conn *c, const struct virtq_req *r, uint64_t off, uint32_t len) {
    uint32_t sent = 0;
    if (!vsock_conn_unflushed(c)) { /* nothing before them: straight from guest memory */
        struct iovec iov[VIRTQ_MAX_SEGMENTS];
        size_t n = 0;
        struct virtq_cursor cur = virtq_cursor(r, false, off, len);
        for (struct virtq_buf piece; n < VIRTQ_MAX_SEGMENTS && virtq_next(&cur, &piece);)
            iov[n++] = (struct iovec){piece.p, piece.len};
        ssize_t k = send_iov(c->fd, iov, n);
        if (k < 0 && !again(errno)) return -1;
        if (k > 0) forwarded(c, sent = (uint32_t)k);
    }
    uint32_t rest = len - sent;
    if (!rest) return 0;
    if (rest > VSOCK_CONN_BUF - c->ring_len) return -1; /* beyond the credit it was given */
    if (!c->ring && !(c->ring = malloc(VSOCK_CONN_BUF))) return -1;
    ring_put(c, r, off + sent, rest);
    return 0;
}

void vsock_conn_shut_host(struct vsock_conn *c) {
    if (c->fd < 0) return;
    /* (a socket its peer already closed may refuse: nothing is lost either way) */
    if (c->guest_no_recv && !c->host_rd_shut) {
        shutdown(c->fd, SHUT_RD);
        c->host_rd_shut = true;
    }
    if (c->guest_no_send && !c->host_wr_shut && !vsock_conn_unflushed(c)) {
        shutdown(c->fd, SHUT_WR);
        c->host_wr_shut = true;
    }
}

int vsock_conn_flush(struct vsock_conn *c) {
    while (c->line_off < c->line_len) {
        ssize_t k = send_iov(c->fd, &(struct iovec){c->line + c->line_off, (size_t)(c->line_len - c->line_off)}, 1);
        if (k <= 0) return k < 0 && !again(errno) ? -1 : 0;
        c->line_off = (uint8_t)(c->line_off + k);
    }
    c->line_len = c->line_off = 0;
    while (c->ring_len) {
        uint32_t first = c->ring_len < VSOCK_CONN_BUF - c->ring_head ? c->ring_len : VSOCK_CONN_BUF - c->ring_head;
        struct iovec iov[2] = {{c->ring + c->ring_head, first}, {c->ring, c->ring_len - first}};
        ssize_t k = send_iov(c->fd, iov, c->ring_len > first ? 2 : 1);
        if (k <= 0) return k < 0 && !again(errno) ? -1 : 0;
        c->ring_head = (uint32_t)((c->ring_head + (uint64_t)k) % VSOCK_CONN_BUF);
        c->ring_len -= (uint32_t)k;
        forwarded(c, (uint32_t)k);
    }
    free(c->ring);
    c->ring = NULL;
    c->ring_head = 0;
    vsock_conn_shut_host(c);
    return 0;
}

ssize_t vsock_conn_read(struct vsock_conn *c, const struct virtq_req *r, uint64_t off, uint32_t max) {
    struct iovec iov[VIRTQ_MAX_SEGMENTS];
    int n = 0;
    struct virtq_cursor cur = virtq_cursor(r, true, off, max);
    for (struct virtq_buf piece; n < VIRTQ_MAX_SEGMENTS && virtq_next(&cur, &piece);)
        iov[n++] = (struct iovec){piece.p, piece.len};
    if (n == 0) return -1;
    ssize_t k = readv(c->fd, iov, n);
    return k >= 0 ? k : again(errno) ? -1 : -2;
}

/* ---- waits ---- */

void vsock_conn_arm(struct vsock_conn *c) {
    async_dispatcher_t *loop = c->v->env->loop;
    zx_signals_t want = 0;
    if (c->state == VSOCK_LINE) want = ZX_FD_READABLE | ZX_FD_HANGUP;
    if (c->state == VSOCK_OPEN && vsock_conn_wants_host_bytes(c) && !c->host_readable)
        want |= ZX_FD_READABLE | ZX_FD_HANGUP;
    if (c->state == VSOCK_OPEN && vsock_conn_unflushed(c)) want |= ZX_FD_WRITABLE | ZX_FD_HANGUP;
    /* HANGUP and ERROR come whether asked for or not: asked for, they wake the handler, which
     * then finds the end or the error rather than the poller spinning on them. */
    if (want) want |= ZX_FD_ERROR;
    if (want == c->waiting_for || !loop || c->handle == ZX_HANDLE_INVALID) return;
    if (c->waiting_for && async_cancel_wait(loop, &c->wait) != ZX_OK) return;
    c->waiting_for = 0;
    c->wait.trigger = want;
    if (want && async_begin_wait(loop, &c->wait) == ZX_OK) c->waiting_for = want;
}

static bool blank(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f'; }

/* "CONNECT <decimal port>\n" as Firecracker takes it: the word in any case, blanks around the
 * words (a "\r\n" ending too); nothing else. */
static bool parse_connect(const char *line, size_t len, uint32_t *port) {
    const char *p = line, *end = line + len - 1; /* at the '\n' */
    while (p < end && blank(*p)) p++;
    if (end - p < 8 || strncasecmp(p, "connect", 7) != 0 || !blank(p[7])) return false;
    for (p += 7; p < end && blank(*p); p++) {
    }
    uint64_t v = 0;
    const char *digits = p;
    for (; p < end && *p >= '0' && *p <= '9' && v <= UINT32_MAX; p++) v = v * 10 + (uint64_t)(*p - '0');
    if (p == digits || v > UINT32_MAX) return false;
    while (p < end && blank(*p)) p++;
    *port = (uint32_t)v;
    return p == end;
}

/* A pending client's bytes up to its line's end, no further: what follows is the guest's. */
static void read_line(struct vsock_conn *c) {
    char peek[VSOCK_LINE_MAX];
    ssize_t n = recv(c->fd, peek, VSOCK_LINE_MAX - c->line_len, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && again(errno)) return vsock_conn_arm(c);
    if (n <= 0) return vsock_conn_free(c); /* gone, or failed, before its line */
    const char *nl = memchr(peek, '\n', (size_t)n);
    size_t take = nl ? (size_t)(nl - peek) + 1 : (size_t)n;
    if (read(c->fd, c->line + c->line_len, take) != (ssize_t)take) return vsock_conn_free(c);
    c->line_len = (uint8_t)(c->line_len + take);
    uint32_t port;
    if (!nl) return c->line_len == VSOCK_LINE_MAX ? vsock_conn_free(c) : vsock_conn_arm(c);
    if (!parse_connect(c->line, c->line_len, &port)) return vsock_conn_free(c);
    c->line_len = 0;
    vsock_host_request(c, port);
}

static void on_conn(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *sig) {
    (void)d;
    struct vsock_conn *c = container_of(w, struct vsock_conn, wait);
    struct vsock *v = c->v;
    zx_signals_t wanted = c->waiting_for;
    c->waiting_for = 0;
    if (st != ZX_OK || vsock_sync(v)) return; /* the loop is going, or c went with a reset */
    if (c->state == VSOCK_LINE) return read_line(c);
    zx_signals_t seen = sig->observed;
    bool woke = seen & (ZX_FD_HANGUP | ZX_FD_ERROR);
    if ((wanted & ZX_FD_WRITABLE) && (woke || (seen & ZX_FD_WRITABLE)) && vsock_conn_flush(c) != 0) {
        vsock_conn_reset(c);
    } else {
        if ((wanted & ZX_FD_READABLE) && (woke || (seen & ZX_FD_READABLE))) c->host_readable = true;
        vsock_conn_changed(c);
    }
    vsock_rx_pump(v);
}

/* ---- the listener ---- */

static void listen_arm(struct vsock *v) {
    if (v->env->loop && !v->listen_waiting && !v->accept_again && v->listen_handle != ZX_HANDLE_INVALID)
        v->listen_waiting = async_begin_wait(v->env->loop, &v->listen_wait) == ZX_OK;
}

static void accept_one(struct vsock *v, int fd) {
    struct vsock_conn *c = vsock_conn_new(v, fd, VSOCK_LINE); /* full: the client is closed */
    if (!c) return;
    vsock_conn_set_deadline(c, vsock_now(v) + v->timeout);
    vsock_conn_arm(c);
}

static void on_listener(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *sig) {
    (void)d, (void)sig;
    struct vsock *v = container_of(w, struct vsock, listen_wait);
    v->listen_waiting = false;
    if (st != ZX_OK) return;
    vsock_sync(v);
    for (unsigned i = 0; i < ACCEPTS_PER_TURN; i++) { /* then the others on the loop get a turn */
        int fd = accept4(v->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            accept_one(v, fd);
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else if (errno != EINTR && errno != ECONNABORTED) { /* out of fds: the socket stays readable */
            v->accept_again = vsock_now(v) + ACCEPT_PAUSE;
            schedule(v, v->accept_again);
            return;
        }
    }
    listen_arm(v);
}

static int bind_listener(struct vsock *v, char *err, size_t errlen) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    memcpy(a.sun_path, v->path, strlen(v->path));
    v->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (v->listen_fd < 0 || bind(v->listen_fd, (struct sockaddr *)&a, sizeof a) != 0)
        return snprintf(err, errlen, "virtio-vsock: %s: %s", v->path, strerror(errno)), -1;
    struct stat st;
    if (lstat(v->path, &st) == 0) v->path_dev = st.st_dev, v->path_ino = st.st_ino;
    if (listen(v->listen_fd, VSOCK_MAX_CONNS) != 0 || zx_fd_create(v->listen_fd, 0, &v->listen_handle) != ZX_OK)
        return snprintf(err, errlen, "virtio-vsock: %s: cannot listen: %s", v->path, strerror(errno)), -1;
    return 0;
}

int vsock_listen(struct vsock *v, const char *path, char *err, size_t errlen) {
    v->listen_fd = -1;
    v->listen_handle = ZX_HANDLE_INVALID;
    /* "<path>_<port>" must fit too, for the guest's connections */
    if (!*path || strlen(path) + sizeof "_4294967295" > sizeof v->path)
        return snprintf(err, errlen, "virtio-vsock: %s: too long for a Unix socket with _PORT after it", path), -1;
    memcpy(v->path, path, strlen(path) + 1);
    char why[PATH_MAX + 100];
    if (unix_socket_claim(path, why, sizeof why) != 0) return snprintf(err, errlen, "virtio-vsock: %s", why), -1;
    if (bind_listener(v, err, errlen) != 0) {
        vsock_unlisten(v);
        return -1;
    }
    v->listen_wait = (async_wait_t){.handler = on_listener, .object = v->listen_handle, .trigger = ZX_FD_READABLE};
    v->sweep = (async_task_t){.handler = on_sweep};
    listen_arm(v);
    return 0;
}

void vsock_unlisten(struct vsock *v) {
    if (v->listen_waiting && v->env->loop) async_cancel_wait(v->env->loop, &v->listen_wait);
    v->listen_waiting = false;
    if (v->listen_handle != ZX_HANDLE_INVALID) zx_handle_close(v->listen_handle);
    v->listen_handle = ZX_HANDLE_INVALID;
    if (v->listen_fd < 0) return;
    close(v->listen_fd);
    v->listen_fd = -1;
    struct stat st; /* someone else's socket by now is left alone */
    if (v->path_ino && lstat(v->path, &st) == 0 && st.st_dev == v->path_dev && st.st_ino == v->path_ino)
        unlink(v->path);
}

int vsock_host_connect(struct vsock *v, uint32_t port) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (snprintf(a.sun_path, sizeof a.sun_path, "%s_%u", v->path, port) >= (int)sizeof a.sun_path) return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    /* A Unix socket connects at once or not at all (EAGAIN: its backlog is full) */
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}
