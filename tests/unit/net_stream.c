/* QEMU's stream format (devices/net_stream.c) over a real socketpair(AF_UNIX, SOCK_STREAM), the
 * test writing and reading the peer's end in pieces of its choosing: lengths and frames split
 * across reads, frames back to back, one too long for its buffer dropped, the lengths no peer
 * sends taking the link down, a frame whose buffer went away, writes the socket takes only in
 * part going on in order, the peer gone; the connect to a path. Then virtio-net in that mode
 * (devices/virtio_net.c) on a real loop: the header dropped on the way out and zero on the way
 * in, a full socket holding the transmit queue, the peer's end a link down said in one line. */
#include <errno.h>
#include <fcntl.h>
#include <lib/async-loop/loop.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "devices/net_stream.h"
#include "devices/virtio_net.h"
#include "tests/lib/check.h"
#include "tests/lib/virtq_driver.h"

struct pair {
    struct net_stream s;
    int peer; /* the test's end, blocking */
};

static void pair_up(struct pair *p) {
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    CHECK_EQ(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
    CHECK_EQ(net_stream_init(&p->s, sv[0]), 0);
    p->peer = sv[1];
}

static void pair_down(struct pair *p) {
    close(p->s.fd);
    if (p->peer >= 0) close(p->peer);
    net_stream_fini(&p->s);
}

static void put32(uint8_t *b, uint32_t v) { b[0] = (uint8_t)(v >> 24), b[1] = (uint8_t)(v >> 16), b[2] = (uint8_t)(v >> 8), b[3] = (uint8_t)v; }
static uint32_t get32(const uint8_t *b) { return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]; }

static void peer_write(struct pair *p, const void *bytes, size_t n) { CHECK_EQ(write(p->peer, bytes, n), (ssize_t)n); }

static void peer_length(struct pair *p, uint32_t len) {
    uint8_t b[4];
    put32(b, len);
    peer_write(p, b, 4);
}

/* Frame `tag` of len bytes: tag, then bytes counting up from it. */
static void fill(uint8_t *f, size_t len, uint8_t tag) {
    for (size_t i = 0; i < len; i++) f[i] = (uint8_t)(tag + i);
}

static bool is_frame(const uint8_t *f, size_t len, uint8_t tag) {
    for (size_t i = 0; i < len; i++)
        if (f[i] != (uint8_t)(tag + i)) return false;
    return true;
}

static void peer_frame(struct pair *p, size_t len, uint8_t tag) {
    static uint8_t f[NET_STREAM_MAX_FRAME];
    fill(f, len, tag);
    peer_length(p, (uint32_t)len);
    peer_write(p, f, len);
}

/* recv into one buffer of cap bytes */
static ssize_t recv_one(struct pair *p, uint8_t *buf, size_t cap) {
    return net_stream_recv(&p->s, &(struct iovec){buf, cap}, 1);
}

TEST(a_frame_arrives_whole_and_frames_back_to_back_one_a_call) {
    struct pair p;
    pair_up(&p);
    uint8_t buf[2048];
    CHECK_EQ(recv_one(&p, buf, sizeof buf), NET_STREAM_AGAIN); /* nothing yet */
    peer_frame(&p, 60, 1);
    peer_frame(&p, 1514, 2);
    peer_frame(&p, 1, 3);
    CHECK_EQ(recv_one(&p, buf, sizeof buf), 60);
    CHECK(is_frame(buf, 60, 1));
    CHECK_EQ(recv_one(&p, buf, sizeof buf), 1514);
    CHECK(is_frame(buf, 1514, 2));
    CHECK_EQ(recv_one(&p, buf, sizeof buf), 1);
    CHECK_EQ(buf[0], 3);
    CHECK_EQ(recv_one(&p, buf, sizeof buf), NET_STREAM_AGAIN);
    CHECK(!p.s.down);
    pair_down(&p);
}

TEST(a_length_and_a_frame_split_across_reads_go_on_where_they_were) {
    struct pair p;
    pair_up(&p);
    uint8_t buf[2048], f[1000], len[4];
    fill(f, sizeof f, 7);
    put32(len, sizeof f);
    for (int i = 0; i < 4; i++) { /* the length a byte at a time */
        CHECK_EQ(recv_one(&p, buf, sizeof buf), NET_STREAM_AGAIN);
        peer_write(&p, len + i, 1);
    }
    CHECK_EQ(recv_one(&p, buf, sizeof buf), NET_STREAM_AGAIN);
    peer_write(&p, f, 1);
    CHECK_EQ(recv_one(&p, buf, sizeof buf), NET_STREAM_AGAIN);
    peer_write(&p, f + 1, 500);
    CHECK_EQ(recv_one(&p, buf, sizeof buf), NET_STREAM_AGAIN);
    /* the frame's end and the next length's first two bytes in one write */
    uint8_t tail[499 + 2];
    memcpy(tail, f + 501, 499);
    uint8_t next[4];
    put32(next, 3);
    memcpy(tail + 499, next, 2);
    peer_write(&p, tail, sizeof tail);
    CHECK_EQ(recv_one(&p, buf, sizeof buf), 1000);
    CHECK(is_frame(buf, 1000, 7));
    CHECK_EQ(recv_one(&p, buf, sizeof buf), NET_STREAM_AGAIN);
    peer_write(&p, next + 2, 2);
    peer_write(&p, "abc", 3);
    CHECK_EQ(recv_one(&p, buf, sizeof buf), 3);
    CHECK(memcmp(buf, "abc", 3) == 0);
    pair_down(&p);
}

TEST(a_frame_goes_across_the_buffers_segments_in_order) {
    struct pair p;
    pair_up(&p);
    uint8_t a[7], b[100], c[2000], d[50];
    struct iovec iov[] = {{a, sizeof a}, {b, 0}, {b, sizeof b}, {c, sizeof c}, {d, sizeof d}};
    peer_length(&p, 1500);
    uint8_t f[1500];
    fill(f, sizeof f, 9);
    peer_write(&p, f, 3); /* pieces that end inside a segment and across one */
    CHECK_EQ(net_stream_recv(&p.s, iov, 5), NET_STREAM_AGAIN);
    peer_write(&p, f + 3, 200);
    CHECK_EQ(net_stream_recv(&p.s, iov, 5), NET_STREAM_AGAIN);
    peer_write(&p, f + 203, sizeof f - 203);
    CHECK_EQ(net_stream_recv(&p.s, iov, 5), 1500);
    uint8_t got[1500];
    memcpy(got, a, 7), memcpy(got + 7, b, 100), memcpy(got + 107, c, 1393);
    CHECK(memcmp(got, f, sizeof f) == 0);
    pair_down(&p);
}

TEST(a_frame_longer_than_its_buffer_is_read_and_dropped) {
    struct pair p;
    pair_up(&p);
    uint8_t buf[2048 + 1];
    buf[2048] = 0xee;
    peer_frame(&p, 2049, 1); /* one byte too many */
    peer_frame(&p, 2048, 2); /* fits exactly */
    CHECK_EQ(recv_one(&p, buf, 2048), 2048);
    CHECK(is_frame(buf, 2048, 2));
    CHECK_EQ(buf[2048], 0xee); /* nothing written past it */
    /* the largest a peer sends, in pieces, dropped too; the next one kept */
    uint8_t *big = malloc(NET_STREAM_MAX_FRAME);
    fill(big, NET_STREAM_MAX_FRAME, 3);
    peer_length(&p, NET_STREAM_MAX_FRAME);
    peer_write(&p, big, 10000);
    CHECK_EQ(recv_one(&p, buf, 2048), NET_STREAM_AGAIN);
    peer_write(&p, big + 10000, NET_STREAM_MAX_FRAME - 10000);
    peer_frame(&p, 100, 4);
    ssize_t r;
    while ((r = recv_one(&p, buf, 2048)) == NET_STREAM_AGAIN) {
    } /* (a call reads at most so much: the frame takes a few) */
    CHECK_EQ(r, 100);
    CHECK(is_frame(buf, 100, 4));
    CHECK(!p.s.down);
    /* ... which a buffer large enough takes whole */
    uint8_t *into = malloc(NET_STREAM_MAX_FRAME);
    peer_frame(&p, NET_STREAM_MAX_FRAME, 5);
    while ((r = recv_one(&p, into, NET_STREAM_MAX_FRAME)) == NET_STREAM_AGAIN) {
    }
    CHECK_EQ(r, NET_STREAM_MAX_FRAME);
    CHECK(is_frame(into, NET_STREAM_MAX_FRAME, 5));
    free(big);
    free(into);
    pair_down(&p);
}

static void broken_length(uint32_t len, const char *why) {
    struct pair p;
    pair_up(&p);
    uint8_t buf[2048];
    peer_frame(&p, 10, 1);
    peer_length(&p, len);
    peer_frame(&p, 10, 2); /* never reached: the stream means nothing after it */
    CHECK_EQ(recv_one(&p, buf, sizeof buf), 10);
    CHECK_EQ(recv_one(&p, buf, sizeof buf), NET_STREAM_DOWN);
    CHECK(p.s.down);
    CHECK_MSG(strstr(p.s.why, why), "\"%s\" does not say \"%s\"", p.s.why, why);
    CHECK_EQ(recv_one(&p, buf, sizeof buf), NET_STREAM_DOWN);
    CHECK_EQ(net_stream_send(&p.s, &(struct iovec){buf, 10}, 1), NET_STREAM_DROPPED);
    pair_down(&p);
}

TEST(a_length_of_zero_or_past_64_KiB_is_a_broken_peer_and_the_link_down) {
    broken_length(0, "a frame of 0 bytes");
    broken_length(NET_STREAM_MAX_FRAME + 1, "a frame of 65537 bytes");
    broken_length(0xffffffffu, "a frame of 4294967295 bytes");
}

TEST(the_peer_gone_between_frames_or_inside_one_is_the_link_down) {
    uint8_t buf[2048];
    for (int inside = 0; inside < 2; inside++) {
        struct pair p;
        pair_up(&p);
        peer_frame(&p, 20, 1);
        if (inside) peer_length(&p, 100), peer_write(&p, buf, 30);
        close(p.peer);
        p.peer = -1;
        CHECK_EQ(recv_one(&p, buf, sizeof buf), 20); /* what came before the end still counts */
        CHECK_EQ(recv_one(&p, buf, sizeof buf), NET_STREAM_DOWN);
        CHECK_STR_EQ(p.s.why, "the peer closed the connection");
        pair_down(&p);
    }
}

TEST(a_frame_whose_buffer_went_away_is_dropped_and_the_next_goes_to_the_next_buffer) {
    struct pair p;
    pair_up(&p);
    uint8_t old[2048], fresh[2048];
    peer_length(&p, 300);
    peer_write(&p, old, 100); /* a third of frame 1 in the old buffer */
    CHECK_EQ(recv_one(&p, old, sizeof old), NET_STREAM_AGAIN);
    net_stream_rx_abandon(&p.s);
    uint8_t rest[200];
    peer_write(&p, rest, sizeof rest);
    peer_length(&p, 50); /* frame 2: its length read with no frame begun... */
    CHECK_EQ(recv_one(&p, fresh, sizeof fresh), NET_STREAM_AGAIN);
    net_stream_rx_abandon(&p.s); /* ...so the buffer going away loses nothing */
    uint8_t f[50];
    fill(f, sizeof f, 6);
    peer_write(&p, f, sizeof f);
    CHECK_EQ(recv_one(&p, fresh, sizeof fresh), 50);
    CHECK(is_frame(fresh, 50, 6));
    pair_down(&p);
}

/* What the peer read, parsed back into frames: each must be tag, tag+1, ... of len bytes, tags in
 * order from 0. How many. */
static unsigned parse_frames(const uint8_t *b, size_t n, size_t len) {
    unsigned frames = 0;
    for (size_t at = 0; at < n; frames++) {
        CHECK_MSG(n - at >= 4 + len, "a frame cut at byte %zu of %zu", at, n);
        CHECK_EQ(get32(b + at), len);
        CHECK_MSG(is_frame(b + at + 4, len, (uint8_t)frames), "frame %u is not whole or not in order", frames);
        at += 4 + len;
    }
    return frames;
}

/* Frames of len bytes into a socket of a small buffer until one does not go whole; then the
 * peer reads while the rest is flushed: every frame whole and in order. How much of the first
 * frame not to go whole was kept. */
static uint32_t send_until_full_then_drain(size_t len) {
    struct pair p;
    pair_up(&p);
    int small = 4096;
    CHECK_EQ(setsockopt(p.s.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    uint8_t *f = malloc(len);
    unsigned sent = 0;
    enum net_stream_sent r;
    do {
        fill(f, len, (uint8_t)sent);
        r = net_stream_send(&p.s, &(struct iovec){f, len}, 1);
        CHECK(r != NET_STREAM_DROPPED);
        sent++;
    } while (r == NET_STREAM_SENT && sent < 1000);
    CHECK_EQ(r, NET_STREAM_PENDING);
    uint32_t kept = p.s.pending_len;
    memset(f, 0, len); /* the rest is the stream's own copy: the buffer may go back to the guest */
    /* nothing more goes before it: another frame is refused, not slipped in */
    CHECK_EQ(net_stream_send(&p.s, &(struct iovec){f, 10}, 1), NET_STREAM_DROPPED);
    CHECK(!net_stream_flush(&p.s)); /* still full */
    size_t cap = (size_t)sent * (len + 4), have = 0;
    uint8_t *got = malloc(cap);
    CHECK(fcntl(p.peer, F_SETFL, O_NONBLOCK) == 0);
    for (int tries = 0; tries < 100000 && !(net_stream_flush(&p.s) && have == cap); tries++) {
        ssize_t k = read(p.peer, got + have, cap - have);
        if (k > 0) have += (size_t)k;
    }
    CHECK_EQ(have, cap);
    CHECK_EQ(parse_frames(got, have, len), sent);
    /* and the stream goes on */
    fill(f, 100, 0);
    CHECK_EQ(net_stream_send(&p.s, &(struct iovec){f, 100}, 1), NET_STREAM_SENT);
    CHECK_EQ(read(p.peer, got, cap), 104);
    CHECK_EQ(parse_frames(got, 104, 100), 1);
    free(got);
    free(f);
    pair_down(&p);
    return kept;
}

TEST(frames_the_socket_takes_only_in_part_go_on_in_order_never_cut) {
    /* one refused whole (the socket took none of it: all of it kept) */
    CHECK_EQ(send_until_full_then_drain(3000), 3004);
    /* one larger than the socket's buffer: part taken, the rest kept */
    uint32_t kept = send_until_full_then_drain(20000);
    CHECK_MSG(kept > 0 && kept < 20004, "%u of 20004 bytes kept", kept);
    /* the largest */
    kept = send_until_full_then_drain(NET_STREAM_MAX_FRAME);
    CHECK_MSG(kept > 0 && kept < NET_STREAM_MAX_FRAME + 4, "%u bytes kept", kept);
}

TEST(a_frame_goes_out_whole_from_its_segments_and_empty_or_oversize_ones_not_at_all) {
    struct pair p;
    pair_up(&p);
    uint8_t f[1000];
    fill(f, sizeof f, 0);
    struct iovec iov[] = {{f, 14}, {f + 14, 0}, {f + 14, 986}};
    CHECK_EQ(net_stream_send(&p.s, iov, 3), NET_STREAM_SENT);
    uint8_t got[1004];
    CHECK_EQ(read(p.peer, got, sizeof got), 1004);
    CHECK_EQ(parse_frames(got, 1004, 1000), 1);
    CHECK_EQ(net_stream_send(&p.s, &(struct iovec){f, 0}, 1), NET_STREAM_DROPPED);
    uint8_t *big = calloc(1, NET_STREAM_MAX_FRAME + 1);
    CHECK_EQ(net_stream_send(&p.s, &(struct iovec){big, NET_STREAM_MAX_FRAME + 1}, 1), NET_STREAM_DROPPED);
    CHECK(!p.s.down); /* the guest's mistakes, not the link's */
    free(big);
    CHECK_EQ(recv(p.peer, got, sizeof got, MSG_DONTWAIT), -1); /* nothing of them went */
    pair_down(&p);
}

TEST(writing_to_a_peer_gone_is_the_link_down_not_a_sigpipe) {
    signal(SIGPIPE, SIG_DFL); /* (a SIGPIPE would end this test's process) */
    struct pair p;
    pair_up(&p);
    close(p.peer);
    p.peer = -1;
    uint8_t f[100] = {0};
    CHECK_EQ(net_stream_send(&p.s, &(struct iovec){f, sizeof f}, 1), NET_STREAM_DROPPED);
    CHECK(p.s.down);
    CHECK_MSG(strstr(p.s.why, "Broken pipe") || strstr(p.s.why, "reset"), "%s", p.s.why);
    CHECK(net_stream_flush(&p.s));
    CHECK_EQ(net_stream_send(&p.s, &(struct iovec){f, sizeof f}, 1), NET_STREAM_DROPPED);
    pair_down(&p);
}

TEST(a_pending_rest_is_dropped_when_the_peer_goes) {
    signal(SIGPIPE, SIG_DFL);
    struct pair p;
    pair_up(&p);
    int small = 4096;
    CHECK_EQ(setsockopt(p.s.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    uint8_t f[3000] = {0};
    enum net_stream_sent r;
    for (int i = 0; i < 1000 && (r = net_stream_send(&p.s, &(struct iovec){f, sizeof f}, 1)) == NET_STREAM_SENT; i++) {
    }
    CHECK_EQ(r, NET_STREAM_PENDING);
    close(p.peer);
    p.peer = -1;
    CHECK(net_stream_flush(&p.s)); /* done with: dropped */
    CHECK(p.s.down);
    CHECK_EQ(p.s.pending_len, 0);
    pair_down(&p);
}

TEST(connect_reaches_a_listener_and_says_why_not_in_one_line) {
    char dir[] = "/tmp/bellhop-net-stream-XXXXXX", path[64], err[512];
    CHECK(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/s", dir);
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    CHECK_EQ(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    CHECK_EQ(listen(l, 1), 0);
    int fd = net_stream_connect(path, err, sizeof err);
    CHECK_MSG(fd >= 0, "%s", err);
    CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    int c = accept(l, NULL, NULL);
    CHECK(c >= 0);
    CHECK_EQ(write(fd, "x", 1), 1);
    char x;
    CHECK_EQ(read(c, &x, 1), 1);
    close(c), close(fd), close(l);
    unlink(path);
    CHECK_EQ(net_stream_connect(path, err, sizeof err), -1);
    CHECK_MSG(strstr(err, "No such file or directory") && !strchr(err, '\n'), "%s", err);
    char longer[200];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = 0;
    CHECK_EQ(net_stream_connect(longer, err, sizeof err), -1);
    CHECK_MSG(strstr(err, "longer than 107 bytes"), "%s", err);
    rmdir(dir);
}

/* ---- virtio-net in the stream's mode ---- */

#define RAM (1u << 20)
#define RXQ 0
#define TXQ 1
#define HDR 12

struct net {
    struct fake_vm vm;
    async_loop_t *loop;
    struct test_dev d;
    int peer;
};

static void net_up(struct net *t, int sndbuf) {
    fake_vm_init(&t->vm, RAM);
    CHECK_EQ(async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &t->loop), ZX_OK);
    t->vm.env.loop = async_loop_get_dispatcher(t->loop);
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    if (sndbuf) CHECK_EQ(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
    t->peer = sv[1];
    tdev_init(&t->d, &t->vm, &virtio_net_ops, &(struct virtio_net_params){.fd = sv[0], .fd_stream = true, .name = "peer"},
              0, 2, 16);
}

static void net_down(struct net *t) {
    async_loop_destroy(t->loop);
    tdev_destroy(&t->d);
    if (t->peer >= 0) close(t->peer);
    fake_vm_destroy(&t->vm);
}

/* A transmit buffer: a header of 0xaa bytes (not to be sent), then frame i of len bytes. */
static void tx_add(struct net *t, uint16_t i, size_t len) {
    uint64_t g = fake_alloc(&t->vm, HDR + len, 8);
    uint8_t *b = fake_ptr(&t->vm, g);
    memset(b, 0xaa, HDR);
    fill(b + HDR, len, (uint8_t)i);
    tvq_add(&t->d, TXQ, i, (struct tbuf[]){{g, (uint32_t)(HDR + len), false}}, 1);
}

/* Until `want` answers on q have come (the loop run meanwhile, 10 s at most): how many. */
static unsigned collect(struct net *t, unsigned q, uint32_t *ids, uint32_t *lens, unsigned want) {
    unsigned have = 0;
    zx_time_t give_up = zx_deadline_after(ZX_SEC(10));
    while (have < want && zx_clock_get_monotonic() < give_up) {
        if (tvq_used(&t->d, q, &ids[have], &lens[have])) have++;
        else async_loop_run(t->loop, zx_deadline_after(ZX_MSEC(10)), true);
    }
    return have;
}

static size_t peer_read_all(struct net *t, uint8_t *into, size_t cap) {
    size_t have = 0;
    for (ssize_t k; have < cap && (k = recv(t->peer, into + have, cap - have, MSG_DONTWAIT)) > 0;) have += (size_t)k;
    return have;
}

TEST(device_frames_go_out_with_their_length_and_without_the_virtio_header) {
    struct net t;
    net_up(&t, 0);
    for (uint16_t i = 0; i < 3; i++) tx_add(&t, i, 200);
    tvq_kick(&t.d, TXQ);
    uint32_t ids[3], lens[3];
    CHECK_EQ(collect(&t, TXQ, ids, lens, 3), 3);
    uint8_t got[3 * 204 + 1];
    CHECK_EQ(peer_read_all(&t, got, sizeof got), 3 * 204);
    CHECK_EQ(parse_frames(got, 3 * 204, 200), 3);
    net_down(&t);
}

TEST(device_frames_arrive_after_a_zero_header_in_pieces_too) {
    struct net t;
    net_up(&t, 0);
    uint64_t bufs[4];
    for (uint16_t i = 0; i < 4; i++) {
        bufs[i] = fake_alloc(&t.vm, 2048, 8);
        memset(fake_ptr(&t.vm, bufs[i]), 0x55, 2048);
        tvq_add(&t.d, RXQ, i, (struct tbuf[]){{bufs[i], 2048, true}}, 1);
    }
    tvq_kick(&t.d, RXQ);
    uint8_t stream[4 + 60 + 4 + 1514 + 4 + 3000 + 4 + 100];
    size_t n = 0;
    size_t lens_sent[] = {60, 1514, 3000 /* too long for 2048 - 12: dropped */, 100};
    for (unsigned i = 0; i < 4; i++) {
        put32(stream + n, (uint32_t)lens_sent[i]);
        fill(stream + n + 4, lens_sent[i], (uint8_t)i);
        n += 4 + lens_sent[i];
    }
    for (size_t at = 0; at < n; at += 700) { /* in pieces that cut lengths and frames anywhere */
        size_t k = n - at < 700 ? n - at : 700;
        CHECK_EQ(send(t.peer, stream + at, k, 0), (ssize_t)k);
        async_loop_run(t.loop, zx_deadline_after(ZX_MSEC(5)), true);
    }
    uint32_t ids[3], lens[3];
    CHECK_EQ(collect(&t, RXQ, ids, lens, 3), 3);
    unsigned frame_of[] = {0, 1, 3};
    for (unsigned i = 0; i < 3; i++) {
        CHECK_EQ(ids[i], i);
        CHECK_EQ(lens[i], HDR + lens_sent[frame_of[i]]);
        uint8_t *b = fake_ptr(&t.vm, bufs[i]);
        static const uint8_t hdr[HDR] = {[10] = 1}; /* num_buffers 1, the rest zero */
        CHECK(memcmp(b, hdr, HDR) == 0);
        CHECK(is_frame(b + HDR, lens_sent[frame_of[i]], (uint8_t)frame_of[i]));
    }
    uint32_t id, len;
    CHECK(!tvq_used(&t.d, RXQ, &id, &len)); /* the fourth buffer waits for the next frame */
    net_down(&t);
}

TEST(device_a_full_socket_holds_the_transmit_queue_until_it_is_writable) {
    struct net t;
    net_up(&t, 4096);
    enum { N = 16, LEN = 4000 };
    for (uint16_t i = 0; i < N; i++) tx_add(&t, i, LEN);
    tvq_kick(&t.d, TXQ);
    CHECK(virtio_mmio_dev(t.d.mmio)->queues[TXQ].last_avail < N); /* stopped: the rest still in the ring */
    static uint8_t got[N * (LEN + 4)];
    size_t have = 0;
    uint32_t ids[N], lens[N];
    unsigned done = 0;
    zx_time_t give_up = zx_deadline_after(ZX_SEC(10));
    while ((done < N || have < sizeof got) && zx_clock_get_monotonic() < give_up) {
        have += peer_read_all(&t, got + have, sizeof got - have);
        async_loop_run(t.loop, zx_deadline_after(ZX_MSEC(5)), true); /* the writable wait goes on */
        while (done < N && tvq_used(&t.d, TXQ, &ids[done], &lens[done])) done++;
    }
    CHECK_EQ(done, N);
    for (unsigned i = 0; i < N; i++) CHECK_EQ(ids[i], i);
    CHECK_EQ(have, sizeof got);
    CHECK_EQ(parse_frames(got, have, LEN), N);
    net_down(&t);
}

/* stderr into a file for the rest of the test (its own process): what bellhop said. */
static FILE *capture_stderr(void) {
    FILE *f = tmpfile();
    CHECK(f);
    CHECK(dup2(fileno(f), 2) == 2);
    return f;
}

static unsigned lines_saying(FILE *f, const char *what) {
    fflush(stderr);
    rewind(f);
    char line[512];
    unsigned n = 0;
    while (fgets(line, sizeof line, f)) n += strstr(line, what) != NULL;
    return n;
}

TEST(device_the_peer_gone_is_a_link_down_said_once_and_the_guest_goes_on) {
    signal(SIGPIPE, SIG_DFL);
    FILE *said = capture_stderr();
    struct net t;
    net_up(&t, 0);
    for (uint16_t i = 0; i < 2; i++)
        tvq_add(&t.d, RXQ, i, (struct tbuf[]){{fake_alloc(&t.vm, 2048, 8), 2048, true}}, 1);
    tvq_kick(&t.d, RXQ);
    close(t.peer);
    t.peer = -1;
    async_loop_run(t.loop, zx_deadline_after(ZX_MSEC(20)), false);
    CHECK_EQ(lines_saying(said, "bellhop: virtio-net: peer: the peer closed the connection; the link is down"), 1);
    /* frames to it are taken and dropped, as often as the guest sends */
    for (unsigned round = 0; round < 3; round++) {
        for (uint16_t i = 0; i < 4; i++) tx_add(&t, (uint16_t)(round * 4 + i), 100);
        tvq_kick(&t.d, TXQ);
        uint32_t ids[4], lens[4];
        CHECK_EQ(collect(&t, TXQ, ids, lens, 4), 4);
    }
    uint32_t id, len;
    CHECK(!tvq_used(&t.d, RXQ, &id, &len)); /* nothing arrives, nothing is made up */
    async_loop_run(t.loop, zx_deadline_after(ZX_MSEC(20)), false);
    CHECK_EQ(lines_saying(said, "link is down"), 1);
    CHECK_EQ(tdev_read(&t.d, 0x070) & 0x40, 0); /* not failed: no reset needed */
    net_down(&t);
    fclose(said);
}

