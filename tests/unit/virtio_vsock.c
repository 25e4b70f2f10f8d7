/* virtio-vsock driven by the test driver over fake guest memory, on a real async loop, with
 * real Unix sockets in a temporary directory: the host's connections (CONNECT, OK) and the
 * guest's (to "<uds>_PORT"), bytes both ways under credit, shutdown and RST both ways, the
 * limits (silent or garbled clients, floods, the number of connections, packets nobody
 * expects) and a restore's TRANSPORT_RESET. The test plays the guest's driver by hand. */
#include <errno.h>
#include <fcntl.h>
#include <lib/async-loop/default.h>
#include <lib/async-loop/loop.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "devices/virtio_vsock.h"
#include "devices/vsock_conn.h"
#include "tests/lib/check.h"
#include "tests/lib/virtq_driver.h"
#include "vmm/sandbox/sandbox.h"

#define RAM (4u << 20)
#define NUM 64
#define RX_SIZE 4096
#define TX_SLOTS 16
#define TX_SLOT (VSOCK_HDR_LEN + VSOCK_MAX_PKT + 64)
#define CID 3
#define RXQ 0
#define TXQ 1
#define EVQ 2
#define HOST_PORT0 VSOCK_FIRST_HOST_PORT
#define BOTH_WAYS (VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND)

struct vt {
    struct fake_vm vm;
    async_loop_t *loop;
    struct test_dev d;
    char dir[64], path[100];
    uint64_t rx_area, tx_area, ev_area;
    bool rx_given[NUM];
    bool regive; /* a received buffer is given back at once */
    unsigned tx_next;
};

/* A packet as the guest sees it, in host order. */
struct pkt {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port, len, flags, buf_alloc, fwd_cnt;
    uint16_t type, op;
    uint8_t data[RX_SIZE];
};

static void pump(struct vt *t) { CHECK_EQ(async_loop_run_until_idle(t->loop), ZX_OK); }

static int make_device(struct vt *t, uint32_t timeout_ms, char *err, size_t errlen) {
    struct virtio_vsock_params p = {.guest_cid = CID, .uds_path = t->path, .timeout_ms = timeout_ms};
    struct virtio_mmio *m = virtio_mmio_create(&t->vm.env, &virtio_vsock_ops, &p, 0xd0000000, 5, err, errlen);
    if (!m) return -1;
    virtio_mmio_destroy(m);
    return 0;
}

static void give_rx(struct vt *t, unsigned n) {
    for (uint16_t id = 0; id < NUM && n; id++) {
        if (t->rx_given[id]) continue;
        tvq_add(&t->d, RXQ, id, (struct tbuf[]){{t->rx_area + (uint64_t)id * RX_SIZE, RX_SIZE, true}}, 1);
        t->rx_given[id] = true;
        n--;
    }
    tvq_kick(&t->d, RXQ);
}

static void vt_start(struct vt *t, uint32_t timeout_ms) {
    memset(t, 0, sizeof *t);
    fake_vm_init(&t->vm, RAM);
    CHECK_EQ(async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &t->loop), ZX_OK);
    t->vm.env.loop = async_loop_get_dispatcher(t->loop);
    snprintf(t->dir, sizeof t->dir, "/tmp/bellhop-vsock-XXXXXX");
    CHECK(mkdtemp(t->dir) != NULL);
    snprintf(t->path, sizeof t->path, "%s/v.sock", t->dir);
    struct virtio_vsock_params p = {.guest_cid = CID, .uds_path = t->path, .timeout_ms = timeout_ms};
    CHECK_EQ(tdev_init(&t->d, &t->vm, &virtio_vsock_ops, &p, 0, 3, NUM), 1 | 2 | 4 | 8);
    t->rx_area = fake_alloc(&t->vm, (size_t)NUM * RX_SIZE, 16);
    t->tx_area = fake_alloc(&t->vm, (size_t)TX_SLOTS * TX_SLOT, 16);
    t->ev_area = fake_alloc(&t->vm, 64, 8);
    t->regive = true;
}

static void vt_stop(struct vt *t) {
    async_loop_destroy(t->loop); /* first: the device's waits are on it */
    tdev_destroy(&t->d);
    struct stat st;
    CHECK_MSG(lstat(t->path, &st) != 0, "%s outlived its device", t->path);
    CHECK_EQ(rmdir(t->dir), 0);
    fake_vm_destroy(&t->vm);
}

static void queue_raw(struct vt *t, const struct virtio_vsock_hdr *h, uint32_t hdr_len, const void *data,
                      uint32_t len) {
    unsigned slot = t->tx_next++ % TX_SLOTS;
    uint64_t at = t->tx_area + (uint64_t)slot * TX_SLOT;
    memcpy(fake_ptr(&t->vm, at), h, hdr_len);
    if (len) memcpy(fake_ptr(&t->vm, at + hdr_len), data, len);
    struct tbuf bufs[2] = {{at, hdr_len, false}, {at + hdr_len, len, false}};
    tvq_add(&t->d, TXQ, (uint16_t)(slot * 2), bufs, len ? 2 : 1);
}

static struct virtio_vsock_hdr hdr(uint32_t guest_port, uint32_t host_port, uint16_t op, uint32_t len,
                                   uint32_t flags, uint32_t buf_alloc, uint32_t fwd_cnt) {
    return (struct virtio_vsock_hdr){.src_cid = CID, .dst_cid = VSOCK_HOST_CID, .src_port = guest_port,
                                     .dst_port = host_port, .len = len, .type = VIRTIO_VSOCK_TYPE_STREAM,
                                     .op = op, .flags = flags, .buf_alloc = buf_alloc, .fwd_cnt = fwd_cnt};
}

/* The guest sends one packet (with buf_alloc 64 KiB and fwd_cnt 0 unless said). */
static void send_pkt(struct vt *t, uint32_t guest_port, uint32_t host_port, uint16_t op, const void *data,
                     uint32_t len) {
    struct virtio_vsock_hdr h = hdr(guest_port, host_port, op, len, 0, 65536, 0);
    queue_raw(t, &h, sizeof h, data, len);
    tvq_kick(&t->d, TXQ);
    pump(t);
}

static void send_hdr(struct vt *t, struct virtio_vsock_hdr h, const void *data) {
    queue_raw(t, &h, sizeof h, data, h.len);
    tvq_kick(&t->d, TXQ);
    pump(t);
}

static bool recv_pkt(struct vt *t, struct pkt *p) {
    pump(t);
    uint32_t id, len;
    if (!tvq_used(&t->d, RXQ, &id, &len)) return false;
    CHECK(id < NUM && t->rx_given[id]);
    t->rx_given[id] = false;
    CHECK(len >= VSOCK_HDR_LEN && len <= RX_SIZE);
    const uint8_t *b = fake_ptr(&t->vm, t->rx_area + (uint64_t)id * RX_SIZE);
    struct virtio_vsock_hdr h;
    memcpy(&h, b, sizeof h);
    *p = (struct pkt){.src_cid = h.src_cid, .dst_cid = h.dst_cid, .src_port = h.src_port, .dst_port = h.dst_port,
                      .len = h.len, .flags = h.flags, .buf_alloc = h.buf_alloc, .fwd_cnt = h.fwd_cnt,
                      .type = h.type, .op = h.op};
    CHECK_EQ(p->src_cid, VSOCK_HOST_CID);
    CHECK_EQ(p->dst_cid, CID);
    CHECK_EQ(p->type, VIRTIO_VSOCK_TYPE_STREAM);
    CHECK_EQ(len, VSOCK_HDR_LEN + p->len);
    memcpy(p->data, b + VSOCK_HDR_LEN, p->len);
    if (t->regive) give_rx(t, 1);
    return true;
}

static void expect_pkt(struct vt *t, struct pkt *p, uint16_t op, uint32_t host_port, uint32_t guest_port) {
    CHECK_MSG(recv_pkt(t, p), "no packet (op %u expected)", op);
    CHECK_EQ(p->op, op);
    CHECK_EQ(p->src_port, host_port);
    CHECK_EQ(p->dst_port, guest_port);
}

static int unix_connect(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    CHECK(fd >= 0);
    CHECK_EQ(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static int unix_listen(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    CHECK(fd >= 0);
    CHECK_EQ(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    CHECK_EQ(listen(fd, 4096), 0);
    return fd;
}

static void say(int fd, const char *s) { CHECK_EQ(write(fd, s, strlen(s)), (ssize_t)strlen(s)); }

/* What the host socket has now: its length, 0 at EOF, -1 when nothing is there yet. */
static ssize_t hear(int fd, char *buf, size_t cap) {
    ssize_t n = recv(fd, buf, cap, MSG_DONTWAIT);
    if (n < 0) CHECK_MSG(errno == EAGAIN, "recv: %s", strerror(errno));
    if (n >= 0 && (size_t)n < cap) buf[n] = 0;
    return n;
}

static void expect_heard(int fd, const char *want) {
    char got[256];
    CHECK_EQ(hear(fd, got, sizeof got), (ssize_t)strlen(want));
    CHECK_STR_EQ(got, want);
}

static void expect_closed(struct vt *t, int fd) {
    pump(t);
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
    CHECK_MSG(n == 0 || (n < 0 && errno == ECONNRESET), "the host socket is still open (%zd, %s)", n, strerror(errno));
}

/* The loop run, in steps, until fd's peer closes it or `within` passes: the time it took. */
static zx_duration_t wait_closed(struct vt *t, int fd, zx_duration_t within) {
    zx_time_t start = zx_clock_get_monotonic();
    for (;;) {
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return zx_clock_get_monotonic() - start;
        CHECK_MSG(zx_clock_get_monotonic() - start < within, "still open after %lld ms", (long long)(within / 1000000));
        async_loop_run(t->loop, zx_deadline_after(ZX_MSEC(5)), true);
    }
}

/* A host client asks for guest port `port`; the guest accepts with credit buf_alloc. The
 * client fd, its host port in *hp. */
static int host_connects(struct vt *t, uint32_t port, uint32_t buf_alloc, uint32_t *hp) {
    int c = unix_connect(t->path);
    char line[32];
    snprintf(line, sizeof line, "CONNECT %u\n", port);
    say(c, line);
    struct pkt p;
    CHECK(recv_pkt(t, &p));
    CHECK_EQ(p.op, VIRTIO_VSOCK_OP_REQUEST);
    CHECK_EQ(p.dst_port, port);
    *hp = p.src_port;
    send_hdr(t, hdr(port, *hp, VIRTIO_VSOCK_OP_RESPONSE, 0, 0, buf_alloc, 0), NULL);
    snprintf(line, sizeof line, "OK %u\n", *hp);
    expect_heard(c, line);
    return c;
}

/* The guest connects from guest_port to host port `port`, where the test listens on lfd: the
 * host's accepted fd. */
static int guest_connects(struct vt *t, int lfd, uint32_t guest_port, uint32_t port) {
    send_pkt(t, guest_port, port, VIRTIO_VSOCK_OP_REQUEST, NULL, 0);
    struct pkt p;
    expect_pkt(t, &p, VIRTIO_VSOCK_OP_RESPONSE, port, guest_port);
    CHECK_EQ(p.buf_alloc, VSOCK_CONN_BUF);
    int h = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    CHECK(h >= 0);
    return h;
}

static char *port_path(struct vt *t, uint32_t port) {
    static char path[128];
    snprintf(path, sizeof path, "%s_%u", t->path, port);
    return path;
}

TEST(a_host_client_reaches_a_guest_port_and_bytes_flow_both_ways) {
    struct vt t;
    vt_start(&t, 0);
    give_rx(&t, 8);
    int c = unix_connect(t.path);
    say(c, "CONNECT 52\nearly"); /* bytes right after the line are the stream's first */
    struct pkt p;
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_REQUEST, HOST_PORT0, 52);
    CHECK_EQ(p.buf_alloc, VSOCK_CONN_BUF);
    CHECK_EQ(p.fwd_cnt, 0);
    char ok[32];
    CHECK_EQ(hear(c, ok, sizeof ok), -1); /* nothing before the guest accepts */
    send_pkt(&t, 52, HOST_PORT0, VIRTIO_VSOCK_OP_RESPONSE, NULL, 0);
    expect_heard(c, "OK 1073741824\n");
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_RW, HOST_PORT0, 52);
    CHECK_EQ(p.len, 5);
    CHECK(memcmp(p.data, "early", 5) == 0);
    say(c, "ping");
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_RW, HOST_PORT0, 52);
    CHECK_EQ(p.len, 4);
    CHECK(memcmp(p.data, "ping", 4) == 0);
    send_pkt(&t, 52, HOST_PORT0, VIRTIO_VSOCK_OP_RW, "pong", 4);
    expect_heard(c, "pong");
    CHECK(!recv_pkt(&t, &p));
    /* the next client gets the next port */
    uint32_t hp;
    int c2 = host_connects(&t, 52, 65536, &hp);
    CHECK_EQ(hp, HOST_PORT0 + 1);
    close(c2);
    close(c);
    vt_stop(&t);
}

TEST(a_guest_that_refuses_or_never_answers_closes_the_host_client) {
    struct vt t;
    vt_start(&t, 40);
    give_rx(&t, 8);
    int c = unix_connect(t.path);
    say(c, "CONNECT 7\n");
    struct pkt p;
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_REQUEST, HOST_PORT0, 7);
    send_pkt(&t, 7, HOST_PORT0, VIRTIO_VSOCK_OP_RST, NULL, 0); /* nobody listens on 7 */
    expect_closed(&t, c);
    CHECK(!recv_pkt(&t, &p)); /* an RST is never answered */
    close(c);
    /* no answer at all: the client is closed after the timeout, and the guest hears an RST */
    c = unix_connect(t.path);
    say(c, "CONNECT 8\n");
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_REQUEST, HOST_PORT0 + 1, 8);
    CHECK(wait_closed(&t, c, ZX_SEC(1)) >= ZX_MSEC(30));
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_RST, HOST_PORT0 + 1, 8);
    close(c);
    vt_stop(&t);
}

TEST(a_guest_connects_to_a_host_listener_and_gets_rst_without_one) {
    struct vt t;
    vt_start(&t, 0);
    give_rx(&t, 8);
    struct pkt p;
    send_pkt(&t, 1234, 80, VIRTIO_VSOCK_OP_REQUEST, NULL, 0);
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_RST, 80, 1234); /* nothing at <uds>_80 */
    int l = unix_listen(port_path(&t, 80));
    int h = guest_connects(&t, l, 1234, 80);
    send_pkt(&t, 1234, 80, VIRTIO_VSOCK_OP_RW, "hello", 5);
    expect_heard(h, "hello");
    say(h, "world");
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_RW, 80, 1234);
    CHECK_EQ(p.len, 5);
    CHECK(memcmp(p.data, "world", 5) == 0);
    CHECK_EQ(p.fwd_cnt, 5); /* the guest's 5 bytes went to the host */
    /* a second connection to the same port from another guest port is another stream */
    int h2 = guest_connects(&t, l, 1235, 80);
    send_pkt(&t, 1235, 80, VIRTIO_VSOCK_OP_RW, "two", 3);
    expect_heard(h2, "two");
    /* a REQUEST for a connection that exists resets it */
    send_pkt(&t, 1235, 80, VIRTIO_VSOCK_OP_REQUEST, NULL, 0);
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_RST, 80, 1235);
    expect_closed(&t, h2);
    close(h2);
    close(h);
    close(l);
    unlink(port_path(&t, 80));
    vt_stop(&t);
}

static uint32_t drain_rw(struct vt *t, uint32_t host_port, uint32_t guest_port, unsigned char *seen, size_t cap) {
    uint32_t total = 0;
    struct pkt p;
    while (recv_pkt(t, &p)) {
        CHECK_EQ(p.op, VIRTIO_VSOCK_OP_RW);
        CHECK_EQ(p.src_port, host_port);
        CHECK_EQ(p.dst_port, guest_port);
        CHECK(total + p.len <= cap);
        memcpy(seen + total, p.data, p.len);
        total += p.len;
    }
    return total;
}

TEST(the_device_sends_no_more_than_the_guests_credit_and_resumes_on_its_update) {
    struct vt t;
    vt_start(&t, 0);
    give_rx(&t, 8);
    uint32_t hp;
    int c = host_connects(&t, 9, 100, &hp); /* the guest has room for 100 bytes */
    unsigned char out[300], in[300];
    for (unsigned i = 0; i < sizeof out; i++) out[i] = (unsigned char)(i * 7 + 1);
    CHECK_EQ(write(c, out, sizeof out), (ssize_t)sizeof out);
    CHECK_EQ(drain_rw(&t, hp, 9, in, sizeof in), 100);
    /* its application read 100: the update brings the next 100 */
    send_hdr(&t, hdr(9, hp, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0, 0, 100, 100), NULL);
    CHECK_EQ(drain_rw(&t, hp, 9, in + 100, sizeof in - 100), 100);
    /* a smaller buffer now: 50 more */
    send_hdr(&t, hdr(9, hp, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0, 0, 50, 200), NULL);
    CHECK_EQ(drain_rw(&t, hp, 9, in + 200, sizeof in - 200), 50);
    send_hdr(&t, hdr(9, hp, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0, 0, 4096, 250), NULL);
    CHECK_EQ(drain_rw(&t, hp, 9, in + 250, sizeof in - 250), 50);
    CHECK(memcmp(in, out, sizeof out) == 0);
    /* CREDIT_REQUEST is answered with the device's own */
    send_hdr(&t, hdr(9, hp, VIRTIO_VSOCK_OP_CREDIT_REQUEST, 0, 0, 4096, 300), NULL);
    struct pkt p;
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_CREDIT_UPDATE, hp, 9);
    CHECK_EQ(p.buf_alloc, VSOCK_CONN_BUF);
    CHECK_EQ(p.fwd_cnt, 0);
    /* the guest's bytes forwarded to the host: past a quarter of its buffer, the guest hears */
    static char big[VSOCK_CONN_BUF / 4];
    memset(big, 'x', sizeof big);
    send_hdr(&t, hdr(9, hp, VIRTIO_VSOCK_OP_RW, sizeof big, 0, 4096, 300), big);
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_CREDIT_UPDATE, hp, 9);
    CHECK_EQ(p.fwd_cnt, sizeof big);
    close(c);
    vt_stop(&t);
}

TEST(a_guest_sending_beyond_its_credit_is_reset) {
    struct vt t;
    vt_start(&t, 0);
    give_rx(&t, 8);
    int l = unix_listen(port_path(&t, 5));
    int h = guest_connects(&t, l, 40, 5); /* the host never reads h */
    static char chunk[VSOCK_MAX_PKT];
    memset(chunk, 'f', sizeof chunk);
    /* Within credit, as the device counts it: the guest asks for the exact count each time. */
    uint32_t sent = 0, fwd = 0;
    struct pkt p;
    for (unsigned i = 0; i < 200; i++) {
        send_hdr(&t, hdr(40, 5, VIRTIO_VSOCK_OP_CREDIT_REQUEST, 0, 0, 65536, 0), NULL);
        while (recv_pkt(&t, &p)) {
            CHECK_EQ(p.op, VIRTIO_VSOCK_OP_CREDIT_UPDATE);
            fwd = p.fwd_cnt;
        }
        uint32_t credit = VSOCK_CONN_BUF - (sent - fwd);
        if (credit == 0) break;
        send_hdr(&t, hdr(40, 5, VIRTIO_VSOCK_OP_RW, credit, 0, 65536, 0), chunk);
        sent += credit;
    }
    CHECK_MSG(sent - fwd == VSOCK_CONN_BUF, "the host socket never filled (%u sent, %u forwarded)", sent, fwd);
    while (recv_pkt(&t, &p)) CHECK_NE(p.op, VIRTIO_VSOCK_OP_RST);
    /* one byte more is a broken guest */
    send_hdr(&t, hdr(40, 5, VIRTIO_VSOCK_OP_RW, 1, 0, 65536, 0), chunk);
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_RST, 5, 40);
    close(h);
    close(l);
    unlink(port_path(&t, 5));
    vt_stop(&t);
}

TEST(shutdown_both_ways_then_rst_once_both_sides_are_done) {
    struct vt t;
    vt_start(&t, 0);
    give_rx(&t, 8);
    int l = unix_listen(port_path(&t, 6));
    int h = guest_connects(&t, l, 60, 6);
    /* the guest will send no more: the host reads its bytes, then EOF, and may still write */
    send_pkt(&t, 60, 6, VIRTIO_VSOCK_OP_RW, "abc", 3);
    send_hdr(&t, hdr(60, 6, VIRTIO_VSOCK_OP_SHUTDOWN, 0, VIRTIO_VSOCK_SHUTDOWN_SEND, 65536, 0), NULL);
    char buf[16];
    CHECK_EQ(hear(h, buf, sizeof buf), 3);
    CHECK_EQ(hear(h, buf, sizeof buf), 0);
    say(h, "xyz");
    struct pkt p;
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_RW, 6, 60);
    CHECK_EQ(p.len, 3);
    /* the host is done too: the connection ends with an RST (a SHUTDOWN may come first) */
    CHECK_EQ(shutdown(h, SHUT_WR), 0);
    CHECK(recv_pkt(&t, &p));
    if (p.op == VIRTIO_VSOCK_OP_SHUTDOWN) {
        CHECK_EQ(p.flags, VIRTIO_VSOCK_SHUTDOWN_SEND);
        CHECK(recv_pkt(&t, &p));
    }
    CHECK_EQ(p.op, VIRTIO_VSOCK_OP_RST);
    expect_closed(&t, h);
    close(h);
    /* the other order: the host closes, the guest hears SHUTDOWN, then shuts down both ways */
    h = guest_connects(&t, l, 61, 6);
    close(h);
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_SHUTDOWN, 6, 61);
    CHECK_EQ(p.flags, VIRTIO_VSOCK_SHUTDOWN_SEND);
    send_hdr(&t, hdr(61, 6, VIRTIO_VSOCK_OP_SHUTDOWN, 0, BOTH_WAYS, 65536, 0), NULL);
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_RST, 6, 61);
    /* the guest will receive no more: the host's writes fail */
    h = guest_connects(&t, l, 62, 6);
    send_hdr(&t, hdr(62, 6, VIRTIO_VSOCK_OP_SHUTDOWN, 0, VIRTIO_VSOCK_SHUTDOWN_RCV, 65536, 0), NULL);
    CHECK_EQ(send(h, "q", 1, MSG_NOSIGNAL), -1);
    CHECK_EQ(errno, EPIPE);
    close(h);
    close(l);
    unlink(port_path(&t, 6));
    vt_stop(&t);
}

TEST(rst_both_ways) {
    struct vt t;
    vt_start(&t, 0);
    give_rx(&t, 8);
    uint32_t hp;
    int c = host_connects(&t, 11, 65536, &hp);
    send_pkt(&t, 11, hp, VIRTIO_VSOCK_OP_RST, NULL, 0);
    expect_closed(&t, c);
    close(c);
    struct pkt p;
    send_pkt(&t, 11, hp, VIRTIO_VSOCK_OP_RW, "late", 4); /* the connection is gone */
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_RST, hp, 11);
    /* a host socket that fails: the guest hears an RST */
    c = host_connects(&t, 12, 65536, &hp);
    close(c);
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_SHUTDOWN, hp, 12); /* EOF first */
    send_pkt(&t, 12, hp, VIRTIO_VSOCK_OP_RW, "into the void", 13);
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_RST, hp, 12);
    CHECK(!recv_pkt(&t, &p));
    vt_stop(&t);
}

TEST(silent_and_garbled_host_clients_are_closed) {
    struct vt t;
    vt_start(&t, 30);
    give_rx(&t, 8);
    int c = unix_connect(t.path);
    pump(&t);
    CHECK(wait_closed(&t, c, ZX_SEC(1)) >= ZX_MSEC(20));
    close(c);
    c = unix_connect(t.path);
    say(c, "CONNECT 5"); /* half a line, then nothing */
    CHECK(wait_closed(&t, c, ZX_SEC(1)) >= ZX_MSEC(20));
    close(c);
    static const char *const bad[] = {"HELLO\n", "CONNECT\n", "CONNECT \n", "CONNECT 12x\n", "CONNECTED 5\n",
                                      "CONNECT 4294967296\n", "CONNECT -1\n", "CONNECT +1\n", "CONNECT 5 6\n",
                                      "CONNECT5\n", "CONNECT 000000000000000000000005\n",
                                      "CONNECT 5555555555555555555555555555555555555555\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c = unix_connect(t.path);
        say(c, bad[i]);
        expect_closed(&t, c);
        close(c);
    }
    struct pkt p;
    CHECK(!recv_pkt(&t, &p)); /* the guest heard of none */
    /* what Firecracker takes besides: the word in any case, blanks, a "\r\n" ending */
    static const char *const good[] = {"connect 5\n", "Connect\t6 \r\n", "  CONNECT   4294967295\n"};
    static const uint32_t ports[] = {5, 6, 4294967295u};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        c = unix_connect(t.path);
        say(c, good[i]);
        expect_pkt(&t, &p, VIRTIO_VSOCK_OP_REQUEST, HOST_PORT0 + (uint32_t)i, ports[i]);
        close(c);
    }
    vt_stop(&t);
}

static void raise_fd_limit(unsigned want) {
    struct rlimit r;
    CHECK_EQ(getrlimit(RLIMIT_NOFILE, &r), 0);
    if (r.rlim_cur >= want) return;
    if (r.rlim_max < want)
        test_skip("RLIMIT_NOFILE allows %llu fds, the test needs %u", (unsigned long long)r.rlim_max, want);
    r.rlim_cur = want;
    CHECK_EQ(setrlimit(RLIMIT_NOFILE, &r), 0);
}

TEST(connections_beyond_the_limit_are_refused) {
    raise_fd_limit(2 * VSOCK_MAX_CONNS + 64);
    struct vt t;
    vt_start(&t, 0);
    give_rx(&t, 8);
    int l = unix_listen(port_path(&t, 3));
    static int hosts[VSOCK_MAX_CONNS];
    for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) hosts[i] = guest_connects(&t, l, 10000 + i, 3);
    struct pkt p;
    send_pkt(&t, 9999, 3, VIRTIO_VSOCK_OP_REQUEST, NULL, 0);
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_RST, 3, 9999);
    int c = unix_connect(t.path); /* and a host client is closed at once */
    expect_closed(&t, c);
    close(c);
    /* one ends: there is room for one more */
    send_pkt(&t, 10000, 3, VIRTIO_VSOCK_OP_RST, NULL, 0);
    expect_closed(&t, hosts[0]);
    close(hosts[0]);
    hosts[0] = guest_connects(&t, l, 9999, 3);
    for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) close(hosts[i]);
    close(l);
    unlink(port_path(&t, 3));
    vt_stop(&t);
}

TEST(packets_nobody_expects_get_rst_and_bad_headers_are_refused) {
    struct vt t;
    vt_start(&t, 0);
    give_rx(&t, 8);
    struct pkt p;
    send_pkt(&t, 5, 77, VIRTIO_VSOCK_OP_RW, "x", 1);
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_RST, 77, 5);
    CHECK_EQ(p.len, 0);
    send_pkt(&t, 5, 77, VIRTIO_VSOCK_OP_RESPONSE, NULL, 0);
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_RST, 77, 5);
    send_pkt(&t, 5, 77, VIRTIO_VSOCK_OP_RST, NULL, 0); /* never answered */
    CHECK(!recv_pkt(&t, &p));
    /* not to the host, or not from this guest: nobody to answer */
    struct virtio_vsock_hdr h = hdr(5, 77, VIRTIO_VSOCK_OP_RW, 0, 0, 0, 0);
    h.dst_cid = 5;
    send_hdr(&t, h, NULL);
    h = hdr(5, 77, VIRTIO_VSOCK_OP_REQUEST, 0, 0, 0, 0);
    h.src_cid = 4;
    send_hdr(&t, h, NULL);
    queue_raw(&t, &h, 20, NULL, 0); /* a header cut short */
    tvq_kick(&t.d, TXQ);
    CHECK(!recv_pkt(&t, &p));
    /* another type, an unknown op, a length past the buffers or past 64 KiB: RST */
    h = hdr(5, 77, VIRTIO_VSOCK_OP_REQUEST, 0, 0, 0, 0);
    h.type = VIRTIO_VSOCK_TYPE_SEQPACKET;
    send_hdr(&t, h, NULL);
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_RST, 77, 5);
    send_hdr(&t, hdr(5, 77, 99, 0, 0, 0, 0), NULL);
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_RST, 77, 5);
    h = hdr(5, 77, VIRTIO_VSOCK_OP_RW, 100, 0, 0, 0);
    queue_raw(&t, &h, sizeof h, "short", 5);
    tvq_kick(&t.d, TXQ);
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_RST, 77, 5);
    static char big[VSOCK_MAX_PKT + 1];
    send_hdr(&t, hdr(5, 77, VIRTIO_VSOCK_OP_RW, sizeof big, 0, 0, 0), big);
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_RST, 77, 5);
    /* on a connection, a bad packet resets it */
    uint32_t hp;
    int c = host_connects(&t, 21, 65536, &hp);
    h = hdr(21, hp, VIRTIO_VSOCK_OP_RW, 100, 0, 0, 0);
    queue_raw(&t, &h, sizeof h, "short", 5);
    tvq_kick(&t.d, TXQ);
    expect_pkt(&t, &p, VIRTIO_VSOCK_OP_RST, hp, 21);
    expect_closed(&t, c);
    close(c);
    CHECK_EQ(tdev_read(&t.d, 0x070) & VIRTIO_STATUS_DEVICE_NEEDS_RESET, 0);
    vt_stop(&t);
}

TEST(rsts_owed_without_receive_buffers_are_bounded) {
    struct vt t;
    vt_start(&t, 0);
    for (uint32_t i = 0; i < 3 * VSOCK_RST_RING; i++) {
        struct virtio_vsock_hdr h = hdr(1000 + i, 77, VIRTIO_VSOCK_OP_RW, 0, 0, 0, 0);
        queue_raw(&t, &h, sizeof h, NULL, 0);
        tvq_kick(&t.d, TXQ);
    }
    pump(&t);
    give_rx(&t, NUM);
    unsigned n = 0;
    struct pkt p;
    while (recv_pkt(&t, &p)) {
        CHECK_EQ(p.op, VIRTIO_VSOCK_OP_RST);
        CHECK_EQ(p.dst_port, 1000 + n);
        n++;
    }
    CHECK_EQ(n, VSOCK_RST_RING);
    vt_stop(&t);
}

TEST(a_device_reset_drops_every_connection) {
    struct vt t;
    vt_start(&t, 0);
    give_rx(&t, 8);
    int l = unix_listen(port_path(&t, 4));
    int h = guest_connects(&t, l, 70, 4);
    tdev_write(&t.d, 0x070, 0); /* the driver resets the device */
    say(h, "anyone?"); /* the next handler finds the reset */
    expect_closed(&t, h);
    close(h);
    close(l);
    unlink(port_path(&t, 4));
    vt_stop(&t);
}

TEST(creation_refuses_what_it_cannot_serve) {
    struct vt t;
    vt_start(&t, 0);
    char err[200];
    struct virtio_mmio *m;
    m = virtio_mmio_create(&t.vm.env, &virtio_vsock_ops, NULL, 0xd0000000, 5, err, sizeof err);
    CHECK(!m);
    CHECK_STR_EQ(err, "virtio-vsock: no socket path (uds_path)");
    struct virtio_vsock_params p = {.guest_cid = 2, .uds_path = "/tmp/x"};
    CHECK(!virtio_mmio_create(&t.vm.env, &virtio_vsock_ops, &p, 0xd0000000, 5, err, sizeof err));
    CHECK(strstr(err, "guest CID 2"));
    p.guest_cid = 1ull << 32;
    CHECK(!virtio_mmio_create(&t.vm.env, &virtio_vsock_ops, &p, 0xd0000000, 5, err, sizeof err));
    p.guest_cid = CID;
    char longer[120];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = 0;
    p.uds_path = longer;
    CHECK(!virtio_mmio_create(&t.vm.env, &virtio_vsock_ops, &p, 0xd0000000, 5, err, sizeof err));
    CHECK(strstr(err, "too long"));
    /* the path is taken: by this device (live), by a file */
    CHECK_EQ(make_device(&t, 0, err, sizeof err), -1);
    CHECK(strstr(err, "another process is serving on it"));
    char file[128];
    snprintf(file, sizeof file, "%s/file", t.dir);
    close(open(file, O_CREAT | O_WRONLY, 0600));
    p.uds_path = file;
    CHECK(!virtio_mmio_create(&t.vm.env, &virtio_vsock_ops, &p, 0xd0000000, 5, err, sizeof err));
    CHECK(strstr(err, "exists and is not a socket"));
    unlink(file);
    vt_stop(&t);
}

/* A saved device comes back with no connection, tells its guest so, and its listener is back
 * at the path the saving device's socket was left at. */
TEST(a_restored_device_posts_transport_reset_and_listens_again) {
    struct vt t;
    vt_start(&t, 0);
    give_rx(&t, 8);
    tvq_add(&t.d, EVQ, 0, (struct tbuf[]){{t.ev_area, 8, true}}, 1);
    tvq_kick(&t.d, EVQ);
    uint32_t id, len;
    CHECK(!tvq_used(&t.d, EVQ, &id, &len)); /* no event before a restore */
    uint32_t hp;
    int c = host_connects(&t, 30, 65536, &hp);
    static uint8_t state[4096];
    struct virtio_dev *vd = virtio_mmio_dev(t.d.mmio);
    size_t n = virtio_dev_save(vd, state, sizeof state);
    CHECK(n > 0);
    struct test_dev saved = t.d;
    /* the saving VMM dies: its socket file stays behind, nobody serving */
    async_loop_destroy(t.loop);
    CHECK_EQ(async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &t.loop), ZX_OK);
    t.vm.env.loop = async_loop_get_dispatcher(t.loop);
    tdev_destroy(&t.d);
    expect_closed(&t, c);
    close(c);
    int stale = unix_listen(t.path);
    close(stale);
    struct stat st;
    CHECK(lstat(t.path, &st) == 0 && S_ISSOCK(st.st_mode));
    /* the new one, from the same parameters, then the state */
    struct virtio_vsock_params p = {.guest_cid = CID, .uds_path = t.path};
    char err[200];
    t.d.mmio = virtio_mmio_create(&t.vm.env, &virtio_vsock_ops, &p, 0xd0000000, 5, err, sizeof err);
    CHECK_MSG(t.d.mmio, "%s", err);
    t.vm.vd = vd = virtio_mmio_dev(t.d.mmio);
    CHECK_MSG(virtio_dev_restore(vd, state, n, err, sizeof err) == 0, "%s", err);
    memcpy(t.d.q, saved.q, sizeof t.d.q);
    tvq_kick(&t.d, EVQ);
    CHECK(tvq_used(&t.d, EVQ, &id, &len));
    CHECK_EQ(len, 4);
    CHECK_EQ(*(uint32_t *)fake_ptr(&t.vm, t.ev_area), VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
    tvq_kick(&t.d, EVQ);
    CHECK(!tvq_used(&t.d, EVQ, &id, &len)); /* once */
    struct pkt pk;
    send_pkt(&t, 30, hp, VIRTIO_VSOCK_OP_RW, "old", 3); /* of a connection that did not survive */
    expect_pkt(&t, &pk, VIRTIO_VSOCK_OP_RST, hp, 30);
    c = host_connects(&t, 31, 65536, &hp); /* the listener is back */
    close(c);
    /* a state that is not the device's is refused */
    state[n - 8] = 9;
    CHECK(virtio_dev_restore(vd, state, n, err, sizeof err) != 0);
    vt_stop(&t);
}

/* What the device does on the loop thread at run time, under the loop's seccomp filter (host
 * and guest connections, bytes, shutdown, RST, the timer), and its teardown under main's. */
struct sandboxed {
    struct vt t;
    int listener; /* at "<uds>_6" */
};

static void *loop_thread_sandboxed(void *arg) {
    struct sandboxed *sb = arg;
    struct vt *t = &sb->t;
    char err[160];
    CHECK_MSG(sandbox_enter(SANDBOX_LOOP, err, sizeof err) == 0, "%s", err);
    give_rx(t, 8);
    uint32_t hp;
    int c = host_connects(t, 52, 65536, &hp);
    say(c, "ping");
    struct pkt p;
    expect_pkt(t, &p, VIRTIO_VSOCK_OP_RW, hp, 52);
    send_pkt(t, 52, hp, VIRTIO_VSOCK_OP_RW, "pong", 4);
    expect_heard(c, "pong");
    close(c);
    expect_pkt(t, &p, VIRTIO_VSOCK_OP_SHUTDOWN, hp, 52);
    int h = guest_connects(t, sb->listener, 60, 6);
    send_pkt(t, 60, 6, VIRTIO_VSOCK_OP_RW, "abc", 3);
    expect_heard(h, "abc");
    send_hdr(t, hdr(60, 6, VIRTIO_VSOCK_OP_SHUTDOWN, 0, BOTH_WAYS, 65536, 0), NULL);
    expect_pkt(t, &p, VIRTIO_VSOCK_OP_RST, 6, 60);
    close(h);
    c = unix_connect(t->path); /* silent: the timer closes it */
    wait_closed(t, c, ZX_SEC(1));
    close(c);
    return NULL;
}

TEST(the_device_keeps_to_the_loop_and_main_threads_seccomp_filters) {
    if (!sandbox_supported()) test_skip("this build has sanitizers: no seccomp sandbox");
    /* the child's device, shared so that its directory is removed here: the child cannot */
    struct sandboxed *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(sh != MAP_FAILED);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        vt_start(&sh->t, 30);
        sh->listener = unix_listen(port_path(&sh->t, 6));
        pthread_t loop_thread;
        CHECK_EQ(pthread_create(&loop_thread, NULL, loop_thread_sandboxed, sh), 0);
        CHECK_EQ(pthread_join(loop_thread, NULL), 0);
        char err[160];
        CHECK_MSG(sandbox_enter(SANDBOX_MAIN, err, sizeof err) == 0, "%s", err);
        async_loop_destroy(sh->t.loop);
        tdev_destroy(&sh->t.d);
        fake_vm_destroy(&sh->t.vm);
        _exit(0);
    }
    int status;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the sandboxed child: status %#x", status);
    struct stat st;
    CHECK_MSG(lstat(sh->t.path, &st) != 0, "%s outlived its device", sh->t.path);
    unlink(port_path(&sh->t, 6));
    CHECK_EQ(rmdir(sh->t.dir), 0);
    munmap(sh, sizeof *sh);
}
