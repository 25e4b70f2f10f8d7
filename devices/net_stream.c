/* QEMU's stream netdev format on a non-blocking socket (devices/net_stream.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/error_text.h"
#include "devices/net_stream.h"

/* Reads in one call at most: a peer that sends without end still lets the loop serve others
 * (the socket stays readable, so its wait fires again at once). */
#define READ_BUDGET 64

int net_stream_init(struct net_stream *s, int fd) {
    *s = (struct net_stream){.fd = fd};
    s->pending = malloc(NET_STREAM_LEN + NET_STREAM_MAX_FRAME);
    return s->pending ? 0 : -1;
}

void net_stream_fini(struct net_stream *s) {
    free(s->pending);
    s->pending = NULL;
}

__attribute__((format(printf, 2, 3))) static void go_down(struct net_stream *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
    s->down = true;
    s->pending_off = s->pending_len = 0;
}

/* What a read or write that moved nothing means: NET_STREAM_AGAIN for a socket with nothing for
 * us now, else the link down. */
static ssize_t stopped(struct net_stream *s, ssize_t n, const char *what) {
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return NET_STREAM_AGAIN;
    if (n == 0) go_down(s, "the peer closed the connection");
    else go_down(s, "%s: %s", what, strerror(errno));
    return NET_STREAM_DOWN;
}

static size_t iov_total(const struct iovec *iov, unsigned n) {
    size_t len = 0;
    for (unsigned i = 0; i < n; i++) len += iov[i].iov_len;
    return len;
}

/* The part [skip, skip + len) of iov's bytes as segments in out: how many. */
static unsigned iov_part(const struct iovec *iov, unsigned n, size_t skip, size_t len, struct iovec *out) {
    unsigned k = 0;
    for (unsigned i = 0; i < n && len; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        size_t take = iov[i].iov_len - skip < len ? iov[i].iov_len - skip : len;
        out[k++] = (struct iovec){(uint8_t *)iov[i].iov_base + skip, take};
        len -= take;
        skip = 0;
    }
    return k;
}

static uint32_t be32(const uint8_t b[4]) { return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]; }

#define PIECE 0 /* read_length, read_frame_part: a piece came, not the whole yet */

/* The length before the next frame, read on: 1 once whole (and one a peer may send), else
 * PIECE, NET_STREAM_AGAIN or NET_STREAM_DOWN. */
static ssize_t read_length(struct net_stream *s) {
    ssize_t n;
    do n = read(s->fd, s->len_bytes + s->len_got, NET_STREAM_LEN - s->len_got);
    while (n < 0 && errno == EINTR);
    if (n <= 0) return stopped(s, n, "read");
    s->len_got += (unsigned)n;
    if (s->len_got < NET_STREAM_LEN) return PIECE;
    s->frame_len = be32(s->len_bytes);
    s->frame_got = 0;
    s->discard = false;
    if (s->frame_len == 0 || s->frame_len > NET_STREAM_MAX_FRAME) {
        go_down(s, "a frame of %u bytes: not a stream of frames", s->frame_len);
        return NET_STREAM_DOWN;
    }
    return 1;
}

/* The frame's bytes read on, into buf or (discarded) nowhere: 1 once it is whole, else as
 * read_length. */
static ssize_t read_frame_part(struct net_stream *s, const struct iovec *buf, unsigned niov, size_t cap) {
    if (s->frame_got == 0) s->discard = s->frame_len > cap; /* decided by the buffer it begins in */
    uint8_t scratch[2048];
    struct iovec part[NET_STREAM_MAX_IOV];
    size_t want = s->frame_len - s->frame_got;
    unsigned k = s->discard ? 0 : iov_part(buf, niov, s->frame_got, want, part);
    if (!s->discard && iov_total(part, k) < want) s->discard = true; /* (a caller's buffer that shrank) */
    if (s->discard) k = 1, part[0] = (struct iovec){scratch, want < sizeof scratch ? want : sizeof scratch};
    ssize_t n;
    do n = readv(s->fd, part, (int)k);
    while (n < 0 && errno == EINTR);
    if (n <= 0) return stopped(s, n, "read");
    s->frame_got += (uint32_t)n;
    return s->frame_got == s->frame_len ? 1 : PIECE;
}

ssize_t net_stream_recv(struct net_stream *s, const struct iovec *buf, unsigned niov) {
    if (niov > NET_STREAM_MAX_IOV) niov = NET_STREAM_MAX_IOV;
    size_t cap = iov_total(buf, niov);
    for (unsigned reads = 0; reads < READ_BUDGET && !s->down; reads++) {
        bool frame = s->len_got == NET_STREAM_LEN;
        ssize_t r = frame ? read_frame_part(s, buf, niov, cap) : read_length(s);
        if (r < 0) return r;
        if (r == PIECE || !frame) continue; /* the rest may be there already; a length: on to its frame */
        s->len_got = 0; /* the frame is whole: a length comes next */
        if (!s->discard) return s->frame_len;
    }
    return s->down ? NET_STREAM_DOWN : NET_STREAM_AGAIN;
}

void net_stream_rx_abandon(struct net_stream *s) {
    if (s->len_got == NET_STREAM_LEN && s->frame_got > 0) s->discard = true;
}

enum net_stream_sent net_stream_send(struct net_stream *s, const struct iovec *frame, unsigned niov) {
    if (niov > NET_STREAM_MAX_IOV) return NET_STREAM_DROPPED;
    size_t len = iov_total(frame, niov);
    if (s->down || s->pending_len || len == 0 || len > NET_STREAM_MAX_FRAME) return NET_STREAM_DROPPED;
    uint8_t head[NET_STREAM_LEN] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
    struct iovec v[NET_STREAM_MAX_IOV + 1] = {{head, sizeof head}};
    memcpy(v + 1, frame, niov * sizeof *frame);
    struct msghdr m = {.msg_iov = v, .msg_iovlen = niov + 1};
    ssize_t n;
    do n = sendmsg(s->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        stopped(s, n, "write");
        return NET_STREAM_DROPPED;
    }
    size_t sent = n < 0 ? 0 : (size_t)n, all = sizeof head + len;
    if (sent == all) return NET_STREAM_SENT;
    /* The rest, in order, before anything else goes: the peer must never see a frame cut. */
    struct iovec rest[NET_STREAM_MAX_IOV + 1];
    unsigned k = iov_part(v, niov + 1, sent, all - sent, rest);
    size_t at = 0;
    for (unsigned i = 0; i < k; i++) memcpy(s->pending + at, rest[i].iov_base, rest[i].iov_len), at += rest[i].iov_len;
    s->pending_off = 0;
    s->pending_len = (uint32_t)at;
    return NET_STREAM_PENDING;
}

bool net_stream_flush(struct net_stream *s) {
    while (s->pending_off < s->pending_len) {
        struct iovec v = {s->pending + s->pending_off, s->pending_len - s->pending_off};
        struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
        ssize_t n = sendmsg(s->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) return false;
        if (n < 0) {
            stopped(s, n, "write");
            break;
        }
        s->pending_off += (uint32_t)n;
    }
    s->pending_off = s->pending_len = 0;
    return true;
}

int net_stream_connect(const char *path, char *err, size_t errlen) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path)
        return error_text(err, errlen, "--net stream=%s: the path is longer than %zu bytes", path, sizeof a.sun_path - 1);
    memcpy(a.sun_path, path, strlen(path));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return error_text(err, errlen, "--net stream=%s: socket: %s", path, strerror(errno));
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 || fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
        error_text(err, errlen, "--net stream=%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}
