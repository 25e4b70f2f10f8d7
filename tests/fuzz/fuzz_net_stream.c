/* QEMU's stream format (devices/net_stream.c): the fuzzer's bytes are what a peer writes on a
 * real socketpair(AF_UNIX, SOCK_STREAM), in pieces of a size it chooses, read into a receive
 * buffer of a size and a number of segments it chooses. Every frame delivered must be the one a
 * plain parser of the same bytes finds, in order, never longer than the buffer; the link goes
 * down exactly where that parser finds a length no peer sends, or at the peer's end. Each frame
 * delivered is sent back, and must arrive whole, its length first. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devices/net_stream.h"
#include "tests/fuzz/fuzz.h"

#define MAX_SEGMENTS 4

struct expect {
    size_t *off, *len; /* the frames to deliver, where they lie in the stream */
    unsigned n;
    bool broken; /* a length of 0 or past NET_STREAM_MAX_FRAME comes (whole) in the stream */
};

static uint32_t be32(const uint8_t *b) { return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]; }

/* The plain parser: the whole stream at once. */
static void parse(const uint8_t *p, size_t n, size_t cap, struct expect *e) {
    e->n = 0;
    e->broken = false;
    for (size_t at = 0; n - at >= NET_STREAM_LEN;) {
        uint32_t len = be32(p + at);
        if (len == 0 || len > NET_STREAM_MAX_FRAME) {
            e->broken = true;
            return;
        }
        if (n - at - NET_STREAM_LEN < len) return; /* incomplete: never delivered */
        if (len <= cap) {
            e->off[e->n] = at + NET_STREAM_LEN;
            e->len[e->n++] = len;
        }
        at += NET_STREAM_LEN + len;
    }
}

struct run {
    struct net_stream s;
    int peer;
    const uint8_t *stream;
    struct expect *e;
    unsigned next;
    struct iovec seg[MAX_SEGMENTS];
    unsigned nseg;
    uint8_t *buf, *echo;
    size_t echo_len, echo_cap;
};

static void read_echo(struct run *r) {
    for (ssize_t k; r->echo_len < r->echo_cap && (k = recv(r->peer, r->echo + r->echo_len, r->echo_cap - r->echo_len,
                                                             MSG_DONTWAIT)) > 0;)
        r->echo_len += (size_t)k;
}

/* Frames as far as the socket has them, each checked and sent back. */
static void drain(struct run *r) {
    for (;;) {
        ssize_t got = net_stream_recv(&r->s, r->seg, r->nseg);
        if (got == NET_STREAM_AGAIN) return;
        if (got == NET_STREAM_DOWN) {
            if (!r->e->broken || r->next != r->e->n) abort(); /* down only where the parser says */
            return;
        }
        if (got <= 0 || r->next >= r->e->n || (size_t)got != r->e->len[r->next] ||
            memcmp(r->buf, r->stream + r->e->off[r->next], (size_t)got) != 0)
            abort();
        r->next++;
        enum net_stream_sent sent = net_stream_send(&r->s, &(struct iovec){r->buf, (size_t)got}, 1);
        if (sent == NET_STREAM_DROPPED) abort();
        while (!net_stream_flush(&r->s)) read_echo(r);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct cursor c = {data, size};
    size_t cap = (size_t)take(&c, 3) % (NET_STREAM_MAX_FRAME + 2);
    size_t piece = (size_t)take(&c, 1) + 1;
    unsigned nseg = (unsigned)take(&c, 1) % MAX_SEGMENTS + 1;
    size_t most = c.n / (NET_STREAM_LEN + 1) + 1; /* frames the stream can hold */
    struct expect e = {.off = malloc(most * sizeof *e.off), .len = malloc(most * sizeof *e.len)};
    if (!e.off || !e.len) abort();
    parse(c.p, c.n, cap, &e);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) abort();
    struct run r = {.peer = sv[1], .stream = c.p, .e = &e, .nseg = nseg, .buf = malloc(cap + 1)};
    r.echo_cap = c.n + (size_t)e.n * NET_STREAM_LEN;
    r.echo = malloc(r.echo_cap + 1);
    if (net_stream_init(&r.s, sv[0]) != 0 || !r.buf || !r.echo) abort();
    /* the buffer cut into nseg segments (the last holds what is left) */
    size_t at = 0;
    for (unsigned i = 0; i < nseg; i++) {
        size_t len = i + 1 < nseg ? cap / nseg : cap - at;
        r.seg[i] = (struct iovec){r.buf + at, len};
        at += len;
    }
    for (size_t off = 0; off < c.n && !r.s.down;) {
        size_t k = c.n - off < piece ? c.n - off : piece;
        ssize_t w = send(sv[1], c.p + off, k, MSG_DONTWAIT);
        if (w < 0 && errno != EAGAIN) abort();
        if (w > 0) off += (size_t)w;
        drain(&r);
        read_echo(&r);
    }
    drain(&r);
    if (r.next != e.n || r.s.down != e.broken) abort();
    /* what was sent back: the frames delivered, each whole after its length */
    read_echo(&r);
    size_t e_at = 0;
    for (unsigned i = 0; i < e.n; i++) {
        if (r.echo_len - e_at < NET_STREAM_LEN + e.len[i] || be32(r.echo + e_at) != e.len[i] ||
            memcmp(r.echo + e_at + NET_STREAM_LEN, c.p + e.off[i], e.len[i]) != 0)
            abort();
        e_at += NET_STREAM_LEN + e.len[i];
    }
    if (e_at != r.echo_len) abort();
    /* the peer's end: the link down, if it was not */
    close(sv[1]);
    if (net_stream_recv(&r.s, r.seg, r.nseg) != NET_STREAM_DOWN || !r.s.down) abort();
    close(sv[0]);
    net_stream_fini(&r.s);
    free(r.buf);
    free(r.echo);
    free(e.off);
    free(e.len);
    return 0;
}
