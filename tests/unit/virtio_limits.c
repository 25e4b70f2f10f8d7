/* Rate limits on virtio-rng, virtio-blk and virtio-net, through the real rings (the test
 * driver over fake guest memory) and a real async loop: a throttled queue stops with its
 * requests still available in its ring, the limiter's timer resumes it, in order, at the
 * limit's rate over a short real time; a run-time update takes effect at once; snapshots and
 * teardown with a limiter present lose nothing and leak nothing. */
#include <fcntl.h>
#include <lib/async-loop/default.h>
#include <lib/async-loop/loop.h>
#include <linux/virtio_blk.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "devices/virtio_blk.h"
#include "devices/virtio_mmio.h"
#include "devices/virtio_net.h"
#include "devices/virtio_rng.h"
#include "tests/lib/check.h"
#include "tests/lib/virtq_driver.h"

#define RAM (1u << 20)
#define NEEDS_RESET VIRTIO_STATUS_DEVICE_NEEDS_RESET
/* Real time: a limit holds to within SLACK (the clock's reads between the device's start and
 * the test's), and the limiter's timer resumes its queues in time, within LATE of the rate
 * (a loaded, sanitized build). */
#define SLACK ZX_MSEC(5)
#define LATE ZX_MSEC(800)

static void check_rate(zx_duration_t took, zx_duration_t at_the_rate) {
    CHECK_MSG(took >= at_the_rate - SLACK && took < at_the_rate + LATE, "took %ld ms, %ld at the limit's rate",
              (long)(took / 1000000), (long)(at_the_rate / 1000000));
}

static struct token_bucket_config per_100ms(uint64_t size) {
    return (struct token_bucket_config){.size = size, .refill_time_ms = 100};
}
/* So slow that a request refused waits for as long as the test */
static struct token_bucket_config per_hour(uint64_t size) {
    return (struct token_bucket_config){.size = size, .refill_time_ms = 3600000};
}

static async_loop_t *new_loop(struct fake_vm *vm) {
    async_loop_t *loop;
    CHECK_EQ(async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &loop), ZX_OK);
    vm->env.loop = async_loop_get_dispatcher(loop);
    return loop;
}

static struct virtio_dev *dev(struct test_dev *d) { return virtio_mmio_dev(d->mmio); }

/* Answers on queue q in ring order until `want` have come (running the loop meanwhile, for at
 * most 10 s); their ids in ids. How many came. */
static unsigned collect(async_loop_t *loop, struct test_dev *d, unsigned q, uint32_t *ids, unsigned have,
                        unsigned want) {
    zx_time_t give_up = zx_deadline_after(ZX_SEC(10));
    while (have < want && zx_clock_get_monotonic() < give_up) {
        uint32_t len;
        if (tvq_used(d, q, &ids[have], &len)) have++;
        else async_loop_run(loop, zx_deadline_after(ZX_MSEC(20)), true);
    }
    return have;
}

static uint16_t last_avail(struct test_dev *d, unsigned q) { return dev(d)->queues[q].last_avail; }

/* ---- virtio-rng ---- */

TEST(rng_a_throttled_queue_waits_in_its_ring_and_its_timer_resumes_it_at_the_rate) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    async_loop_t *loop = new_loop(&vm);
    zx_time_t t0 = zx_clock_get_monotonic();
    struct test_dev d;
    /* 1000 bytes per 100 ms, requests of 500: two at once, the next four over 200 ms */
    tdev_init(&d, &vm, &virtio_rng_ops, &(struct virtio_rng_params){.limiter.bandwidth = per_100ms(1000)}, 0, 1, 8);
    for (uint16_t i = 0; i < 6; i++) tvq_add(&d, 0, i, (struct tbuf[]){{fake_alloc(&vm, 500, 8), 500, true}}, 1);
    tvq_kick(&d, 0);
    uint32_t ids[6], len;
    unsigned n = 0;
    while (n < 6 && tvq_used(&d, 0, &ids[n], &len)) n++;
    CHECK_EQ(n, 2);
    CHECK_EQ(last_avail(&d, 0), 2); /* the third went back to its ring: still available */
    tvq_kick(&d, 0);                /* the driver's notifications meanwhile change nothing */
    CHECK(!tvq_used(&d, 0, &ids[n], &len));
    CHECK_EQ(last_avail(&d, 0), 2);
    CHECK_EQ(collect(loop, &d, 0, ids, n, 6), 6);
    check_rate(zx_clock_get_monotonic() - t0, ZX_MSEC(200)); /* 6 x 500 bytes at 10 kB/s from full */
    for (unsigned i = 0; i < 6; i++) CHECK_EQ(ids[i], i); /* none overtaken */
    CHECK_EQ(tdev_read(&d, 0x070) & NEEDS_RESET, 0);
    async_loop_destroy(loop);
    tdev_destroy(&d);
    fake_vm_destroy(&vm);
}

TEST(rng_without_params_or_with_a_zeroed_limit_is_not_limited) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    for (int with_params = 0; with_params < 2; with_params++) {
        struct test_dev d;
        tdev_init(&d, &vm, &virtio_rng_ops, with_params ? &(struct virtio_rng_params){0} : NULL, 0, 1, 8);
        for (uint16_t i = 0; i < 8; i++) tvq_add(&d, 0, i, (struct tbuf[]){{fake_alloc(&vm, 4096, 8), 4096, true}}, 1);
        tvq_kick(&d, 0);
        uint32_t id, len;
        unsigned n = 0;
        while (tvq_used(&d, 0, &id, &len)) n++;
        CHECK_EQ(n, 8);
        tdev_destroy(&d);
    }
    fake_vm_destroy(&vm);
}

/* A device destroyed while its timer is posted and the loop still runs: the timer is canceled
 * (ASan would see the loop call into freed memory otherwise). */
TEST(rng_destroyed_while_throttled_cancels_its_timer) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    async_loop_t *loop = new_loop(&vm);
    struct test_dev d;
    struct virtio_rng_params p = {.limiter.ops = {.size = 1, .refill_time_ms = 20}};
    tdev_init(&d, &vm, &virtio_rng_ops, &p, 0, 1, 8);
    for (uint16_t i = 0; i < 3; i++) tvq_add(&d, 0, i, (struct tbuf[]){{fake_alloc(&vm, 16, 8), 16, true}}, 1);
    tvq_kick(&d, 0);
    tdev_destroy(&d);
    async_loop_run(loop, zx_deadline_after(ZX_MSEC(60)), false);
    async_loop_destroy(loop);
    fake_vm_destroy(&vm);
}

/* ---- virtio-blk ---- */

struct blk_hdr {
    uint32_t type, reserved;
    uint64_t sector;
};

static void make_disk(const char *path, size_t size) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK_EQ(ftruncate(fd, (off_t)size), 0);
    close(fd);
}

/* Queues a request on q from descriptor `first` (3 of them): a read or write of len bytes at
 * sector, or (len 0) a flush; its status byte is at *st. */
static void blk_add(struct test_dev *d, unsigned q, uint16_t first, uint32_t type, uint64_t sector, uint32_t len,
                    uint64_t *st) {
    struct fake_vm *vm = d->vm;
    uint64_t hdr = fake_alloc(vm, 16, 8), data = fake_alloc(vm, len ? len : 1, 512);
    *st = fake_alloc(vm, 1, 1);
    *(struct blk_hdr *)fake_ptr(vm, hdr) = (struct blk_hdr){type, 0, sector};
    *(uint8_t *)fake_ptr(vm, *st) = 0xee;
    bool in = type == VIRTIO_BLK_T_IN;
    if (len) tvq_add(d, q, first, (struct tbuf[]){{hdr, 16, false}, {data, len, in}, {*st, 1, true}}, 3);
    else tvq_add(d, q, first, (struct tbuf[]){{hdr, 16, false}, {*st, 1, true}}, 2);
}

/* Two queues through io_uring, 4 ops per 100 ms over both: 4 at once, then one each 25 ms. */
TEST(blk_every_queue_is_throttled_through_io_uring_and_resumed_by_one_timer) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    async_loop_t *loop = new_loop(&vm);
    const char *path = "/tmp/bellhop-unit-limits-mq.img";
    make_disk(path, 64 * 512);
    zx_time_t t0 = zx_clock_get_monotonic();
    struct test_dev d;
    struct virtio_blk_params p = {.path = path, .engine = BLK_IO_ASYNC, .queues = 2, .limiter.ops = per_100ms(4)};
    tdev_init(&d, &vm, &virtio_blk_ops, &p, 1ull << VIRTIO_BLK_F_MQ, 2, 64);
    uint64_t st[2][6];
    for (unsigned q = 0; q < 2; q++)
        for (unsigned i = 0; i < 6; i++) blk_add(&d, q, (uint16_t)(3 * i), VIRTIO_BLK_T_IN, i, 512, &st[q][i]);
    tvq_kick(&d, 0);
    tvq_kick(&d, 1);
    CHECK_EQ(last_avail(&d, 0), 4); /* 4 taken, the rest still in their rings */
    CHECK_EQ(last_avail(&d, 1), 0);
    uint32_t ids[2][6];
    unsigned n0 = collect(loop, &d, 0, ids[0], 0, 6);
    unsigned n1 = collect(loop, &d, 1, ids[1], 0, 6);
    CHECK_EQ(n0, 6);
    CHECK_EQ(n1, 6);
    check_rate(zx_clock_get_monotonic() - t0, ZX_MSEC(200)); /* 12 requests at 40/s from full */
    for (unsigned q = 0; q < 2; q++)
        for (unsigned i = 0; i < 6; i++) {
            CHECK_EQ(ids[q][i], 3 * i); /* each queue in its order */
            CHECK_EQ(*(uint8_t *)fake_ptr(&vm, st[q][i]), VIRTIO_BLK_S_OK);
        }
    CHECK_EQ(tdev_read(&d, 0x070) & NEEDS_RESET, 0);
    async_loop_destroy(loop);
    tdev_destroy(&d);
    unlink(path);
    fake_vm_destroy(&vm);
}

/* Bytes are a read's or a write's data: a flush passes an empty byte bucket, a read waits. */
TEST(blk_charges_data_bytes_and_a_flush_only_an_op) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    async_loop_t *loop = new_loop(&vm);
    const char *path = "/tmp/bellhop-unit-limits-bytes.img";
    make_disk(path, 64 * 512);
    struct test_dev d;
    /* 4096 bytes per second, on the synchronous path */
    tdev_init(&d, &vm, &virtio_blk_ops,
              &(struct virtio_blk_params){.path = path, .engine = BLK_IO_SYNC,
                                          .limiter.bandwidth = {.size = 4096, .refill_time_ms = 1000}},
              0, 1, 16);
    uint64_t st[3];
    blk_add(&d, 0, 0, VIRTIO_BLK_T_OUT, 0, 4096, &st[0]);
    blk_add(&d, 0, 3, VIRTIO_BLK_T_FLUSH, 0, 0, &st[1]);
    blk_add(&d, 0, 6, VIRTIO_BLK_T_IN, 0, 1024, &st[2]);
    zx_time_t t0 = zx_clock_get_monotonic();
    tvq_kick(&d, 0);
    uint32_t ids[3];
    unsigned n = collect(loop, &d, 0, ids, 0, 2);
    CHECK_EQ(n, 2);
    CHECK_EQ(ids[1], 3); /* the flush */
    CHECK_EQ(last_avail(&d, 0), 2);
    CHECK_EQ(collect(loop, &d, 0, ids, n, 3), 3); /* 1024 bytes: 250 ms */
    check_rate(zx_clock_get_monotonic() - t0, ZX_MSEC(250));
    for (unsigned i = 0; i < 3; i++) CHECK_EQ(*(uint8_t *)fake_ptr(&vm, st[i]), VIRTIO_BLK_S_OK);
    async_loop_destroy(loop);
    tdev_destroy(&d);
    unlink(path);
    fake_vm_destroy(&vm);
}

/* An update serves the waiting requests before it returns; a new limit applies to the next. */
TEST(blk_an_update_takes_effect_at_once) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    async_loop_t *loop = new_loop(&vm);
    const char *path = "/tmp/bellhop-unit-limits-update.img";
    make_disk(path, 64 * 512);
    struct test_dev d;
    /* one op an hour: the second request would wait that long */
    tdev_init(&d, &vm, &virtio_blk_ops, &(struct virtio_blk_params){.path = path, .limiter.ops = per_hour(1)}, 0, 1, 32);
    uint64_t st[6];
    for (unsigned i = 0; i < 3; i++) blk_add(&d, 0, (uint16_t)(3 * i), VIRTIO_BLK_T_IN, i, 512, &st[i]);
    tvq_kick(&d, 0);
    uint32_t ids[6];
    CHECK_EQ(collect(loop, &d, 0, ids, 0, 1), 1);
    async_loop_run(loop, zx_deadline_after(ZX_MSEC(20)), false);
    uint32_t len;
    CHECK(!tvq_used(&d, 0, &ids[1], &len));
    CHECK_EQ(last_avail(&d, 0), 1);
    /* raised: both waiting requests answered before the call returns */
    virtio_blk_set_limiter(dev(&d), &(struct rate_limiter_config){.ops = per_100ms(1000)});
    unsigned n = 1;
    while (n < 6 && tvq_used(&d, 0, &ids[n], &len)) n++;
    CHECK_EQ(n, 3);
    /* lowered: the next two take one, the other waits */
    virtio_blk_set_limiter(dev(&d), &(struct rate_limiter_config){.bandwidth = per_hour(512)});
    for (unsigned i = 3; i < 5; i++) blk_add(&d, 0, (uint16_t)(3 * i), VIRTIO_BLK_T_IN, i, 512, &st[i]);
    tvq_kick(&d, 0);
    while (n < 6 && tvq_used(&d, 0, &ids[n], &len)) n++;
    CHECK_EQ(n, 4);
    /* removed: the last one goes at once */
    virtio_blk_set_limiter(dev(&d), &(struct rate_limiter_config){0});
    while (n < 6 && tvq_used(&d, 0, &ids[n], &len)) n++;
    CHECK_EQ(n, 5);
    for (unsigned i = 0; i < 5; i++) CHECK_EQ(ids[i], 3 * i);
    async_loop_destroy(loop);
    tdev_destroy(&d);
    unlink(path);
    fake_vm_destroy(&vm);
}

/* A snapshot of a disk with requests waiting on its limiter: they are in the ring, and the
 * restored device (its buckets full) serves them. */
TEST(blk_requests_waiting_on_the_limiter_survive_a_snapshot) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    async_loop_t *loop = new_loop(&vm);
    const char *path = "/tmp/bellhop-unit-limits-snap.img";
    make_disk(path, 64 * 512);
    struct virtio_blk_params p = {.path = path, .engine = BLK_IO_ASYNC, .limiter.ops = per_hour(1)};
    struct test_dev d;
    tdev_init(&d, &vm, &virtio_blk_ops, &p, 0, 1, 32);
    uint64_t st[3];
    for (unsigned i = 0; i < 3; i++) blk_add(&d, 0, (uint16_t)(3 * i), VIRTIO_BLK_T_IN, i, 512, &st[i]);
    tvq_kick(&d, 0);
    dev(&d)->ops->quiesce(dev(&d));
    uint32_t ids[3], len;
    CHECK(tvq_used(&d, 0, &ids[0], &len));
    CHECK(!tvq_used(&d, 0, &ids[1], &len));
    uint8_t state[4096];
    size_t n = virtio_mmio_ops.save(d.mmio, state, sizeof state);
    CHECK(n > 0);
    struct test_dev e = {.vm = &vm};
    char err[200];
    e.mmio = virtio_mmio_create(&vm.env, &virtio_blk_ops, &p, 0xd0000000, 5, err, sizeof err);
    CHECK(e.mmio != NULL);
    CHECK_EQ(virtio_mmio_ops.restore(e.mmio, state, n, err, sizeof err), 0);
    memcpy(e.q, d.q, sizeof e.q);
    virtio_restore_kick(dev(&e));
    CHECK_EQ(collect(loop, &e, 0, ids, 1, 2), 2); /* its one op, then the limiter again */
    CHECK_EQ(ids[1], 3);
    async_loop_run(loop, zx_deadline_after(ZX_MSEC(20)), false);
    CHECK(!tvq_used(&e, 0, &ids[2], &len));
    async_loop_destroy(loop);
    virtio_mmio_destroy(e.mmio);
    tdev_destroy(&d);
    unlink(path);
    fake_vm_destroy(&vm);
}

/* ---- virtio-net ---- */

#define RXQ 0
#define TXQ 1
#define FRAME 112 /* the 12-byte vnet header and 100 bytes */

struct net {
    struct fake_vm vm;
    async_loop_t *loop;
    struct test_dev d;
    int peer; /* the network's end of the socket pair standing where the tap would be */
};

static void net_up(struct net *t, const struct rate_limiter_config *rx, const struct rate_limiter_config *tx) {
    fake_vm_init(&t->vm, RAM);
    t->loop = new_loop(&t->vm);
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    t->peer = sv[1];
    struct virtio_net_params p = {.fd = sv[0], .name = "limits", .rx_limiter = *rx, .tx_limiter = *tx};
    tdev_init(&t->d, &t->vm, &virtio_net_ops, &p, 0, 2, 16);
}

static void net_down(struct net *t) {
    async_loop_destroy(t->loop);
    tdev_destroy(&t->d);
    close(t->peer);
    fake_vm_destroy(&t->vm);
}

/* Frame i: its header zeroed, then i in every byte. */
static void tx_add(struct net *t, uint16_t i) {
    uint64_t f = fake_alloc(&t->vm, FRAME, 8);
    memset(fake_ptr(&t->vm, f) + 12, i, FRAME - 12);
    tvq_add(&t->d, TXQ, i, (struct tbuf[]){{f, FRAME, false}}, 1);
}

static unsigned peer_frames(struct net *t, uint8_t *got, unsigned have) {
    uint8_t buf[2048];
    for (ssize_t k; (k = recv(t->peer, buf, sizeof buf, MSG_DONTWAIT)) > 0; have++) {
        CHECK_EQ(k, FRAME);
        got[have] = buf[12];
    }
    return have;
}

/* 2 frames per 100 ms each way: 2 at once, then one each 50 ms. */
TEST(net_tx_frames_wait_in_their_ring_and_go_out_at_the_rate_in_order) {
    struct net t;
    zx_time_t t0 = zx_clock_get_monotonic();
    net_up(&t, &(struct rate_limiter_config){0}, &(struct rate_limiter_config){.ops = per_100ms(2)});
    for (uint16_t i = 0; i < 6; i++) tx_add(&t, i);
    tvq_kick(&t.d, TXQ);
    uint8_t got[8];
    unsigned n = peer_frames(&t, got, 0);
    CHECK_EQ(n, 2);
    CHECK_EQ(last_avail(&t.d, TXQ), 2);
    uint32_t ids[6];
    CHECK_EQ(collect(t.loop, &t.d, TXQ, ids, 0, 6), 6);
    check_rate(zx_clock_get_monotonic() - t0, ZX_MSEC(200));
    n = peer_frames(&t, got, n);
    CHECK_EQ(n, 6);
    for (unsigned i = 0; i < 6; i++) CHECK_EQ(got[i], i);
    net_down(&t);
}

/* Received frames are read into their buffers and held there until the limiter pays them. */
TEST(net_rx_frames_are_held_until_the_limiter_pays_them_in_order) {
    struct net t;
    zx_time_t t0 = zx_clock_get_monotonic();
    /* bytes this time: 2 frames per 100 ms */
    net_up(&t, &(struct rate_limiter_config){.bandwidth = per_100ms(2 * FRAME)}, &(struct rate_limiter_config){0});
    for (uint16_t i = 0; i < 8; i++)
        tvq_add(&t.d, RXQ, i, (struct tbuf[]){{fake_alloc(&t.vm, 2048, 8), 2048, true}}, 1);
    uint8_t frame[FRAME] = {0};
    for (uint8_t i = 0; i < 6; i++) {
        memset(frame + 12, i, FRAME - 12);
        CHECK_EQ(send(t.peer, frame, FRAME, 0), FRAME);
    }
    tvq_kick(&t.d, RXQ);
    async_loop_run_until_idle(t.loop);
    uint32_t ids[6], len;
    unsigned n = 0;
    for (; n < 6 && tvq_used(&t.d, RXQ, &ids[n], &len); n++) CHECK_EQ(len, FRAME);
    CHECK_EQ(n, 2);
    CHECK_EQ(collect(t.loop, &t.d, RXQ, ids, n, 6), 6);
    check_rate(zx_clock_get_monotonic() - t0, ZX_MSEC(200));
    for (unsigned i = 0; i < 6; i++) {
        CHECK_EQ(ids[i], i);
        uint8_t *p = fake_ptr(&t.vm, t.d.q[RXQ].desc); /* buffer i's address, from its descriptor */
        uint64_t addr;
        memcpy(&addr, p + 16 * i, 8);
        CHECK_EQ(((uint8_t *)fake_ptr(&t.vm, addr))[12], i);
    }
    net_down(&t);
}

TEST(net_an_update_takes_effect_at_once_both_ways) {
    struct net t;
    const struct rate_limiter_config hourly = {.ops = per_hour(1)};
    net_up(&t, &hourly, &hourly);
    for (uint16_t i = 0; i < 3; i++) tx_add(&t, i);
    for (uint16_t i = 0; i < 3; i++)
        tvq_add(&t.d, RXQ, i, (struct tbuf[]){{fake_alloc(&t.vm, 2048, 8), 2048, true}}, 1);
    uint8_t frame[FRAME] = {0};
    for (int i = 0; i < 3; i++) CHECK_EQ(send(t.peer, frame, FRAME, 0), FRAME);
    tvq_kick(&t.d, TXQ);
    tvq_kick(&t.d, RXQ);
    async_loop_run(t.loop, zx_deadline_after(ZX_MSEC(20)), false);
    uint8_t got[4];
    CHECK_EQ(peer_frames(&t, got, 0), 1);
    uint32_t id, len;
    unsigned rx = 0;
    while (tvq_used(&t.d, RXQ, &id, &len)) rx++;
    CHECK_EQ(rx, 1);
    virtio_net_set_limiters(dev(&t.d), &(struct rate_limiter_config){0}, &(struct rate_limiter_config){0});
    CHECK_EQ(peer_frames(&t, got, 1), 3); /* sent before the call returned */
    async_loop_run_until_idle(t.loop);
    while (tvq_used(&t.d, RXQ, &id, &len)) rx++;
    CHECK_EQ(rx, 3);
    net_down(&t);
}

/* A frame held for the rx limiter reaches the driver when a snapshot quiesces the device, so
 * the snapshot does not lose it; the restored device goes on with the next buffer. */
TEST(net_a_held_frame_is_delivered_before_a_snapshot) {
    struct net t;
    const struct rate_limiter_config hourly = {.ops = per_hour(1)};
    net_up(&t, &hourly, &(struct rate_limiter_config){0});
    for (uint16_t i = 0; i < 4; i++)
        tvq_add(&t.d, RXQ, i, (struct tbuf[]){{fake_alloc(&t.vm, 2048, 8), 2048, true}}, 1);
    uint8_t frame[FRAME] = {0};
    for (int i = 0; i < 2; i++) CHECK_EQ(send(t.peer, frame, FRAME, 0), FRAME);
    tvq_kick(&t.d, RXQ);
    async_loop_run_until_idle(t.loop);
    uint32_t id, len;
    CHECK(tvq_used(&t.d, RXQ, &id, &len));
    CHECK(!tvq_used(&t.d, RXQ, &id, &len));
    dev(&t.d)->ops->quiesce(dev(&t.d));
    CHECK(tvq_used(&t.d, RXQ, &id, &len));
    CHECK_EQ(id, 1);
    CHECK_EQ(len, FRAME);
    uint8_t state[4096];
    size_t n = virtio_mmio_ops.save(t.d.mmio, state, sizeof state);
    CHECK(n > 0);
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    struct test_dev e = {.vm = &t.vm};
    char err[200];
    struct virtio_net_params p = {.fd = sv[0], .name = "b", .rx_limiter = hourly};
    e.mmio = virtio_mmio_create(&t.vm.env, &virtio_net_ops, &p, 0xd0000000, 5, err, sizeof err);
    CHECK(e.mmio != NULL);
    CHECK_EQ(virtio_mmio_ops.restore(e.mmio, state, n, err, sizeof err), 0);
    memcpy(e.q, t.d.q, sizeof e.q);
    CHECK_EQ(dev(&e)->queues[RXQ].last_avail, 2); /* buffers 2 and 3 are the driver's still */
    CHECK_EQ(send(sv[1], frame, FRAME, 0), FRAME);
    virtio_restore_kick(dev(&e));
    async_loop_run_until_idle(t.loop);
    CHECK(tvq_used(&e, RXQ, &id, &len)); /* full buckets: at once, into buffer 2 */
    CHECK_EQ(id, 2);
    async_loop_destroy(t.loop);
    t.loop = NULL;
    virtio_mmio_destroy(e.mmio);
    close(sv[1]);
    tdev_destroy(&t.d);
    close(t.peer);
    fake_vm_destroy(&t.vm);
}

/* ---- the core ---- */

/* A request given back after a reset gives nothing back: the new rings start at 0. */
TEST(unpop_after_a_reset_leaves_the_new_rings_alone) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    struct test_dev d;
    tdev_init(&d, &vm, &virtio_rng_ops, NULL, 0, 1, 8);
    tvq_add(&d, 0, 0, (struct tbuf[]){{fake_alloc(&vm, 16, 8), 16, true}}, 1);
    struct virtq_req *r = malloc(sizeof *r);
    CHECK(r != NULL);
    CHECK(virtio_pop(dev(&d), 0, r));
    virtio_unpop(dev(&d), 0, r->generation);
    CHECK_EQ(last_avail(&d, 0), 0);
    CHECK(virtio_pop(dev(&d), 0, r));
    CHECK_EQ(r->head, 0);
    tdev_write(&d, 0x070, 0); /* reset */
    virtio_unpop(dev(&d), 0, r->generation);
    CHECK_EQ(last_avail(&d, 0), 0);
    free(r);
    tdev_destroy(&d);
    fake_vm_destroy(&vm);
}

/* Queues that share a limiter (a disk's) wait in line: one that came to wait first is served
 * first, and one that is not waiting does not pass it, so a request too large to pass until
 * the bucket is full is not starved by small ones from other queues. */
static unsigned resumed[8], nresumed;
static void note_resume(struct virtio_dev *vd, unsigned q) {
    (void)vd;
    if (nresumed < 8) resumed[nresumed++] = q;
}

TEST(queues_sharing_a_limiter_wait_in_line) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    async_loop_t *loop = new_loop(&vm);
    struct virtio_dev vd = {.env = &vm.env, .ops = &virtio_blk_ops};
    struct virtio_throttle t;
    virtio_throttle_init(&t, &vd, &(struct rate_limiter_config){.bandwidth = per_100ms(100)});
    t.resume = note_resume;
    CHECK(virtio_throttle_take(&t, 0, 100, 1));   /* the bucket, emptied */
    CHECK(!virtio_throttle_take(&t, 1, 1000, 1)); /* larger than the bucket: waits for it full */
    CHECK(!virtio_throttle_take(&t, 0, 1, 1));    /* would fit once a token is back: in line behind 1 */
    CHECK(!virtio_throttle_take(&t, 2, 0, 1));    /* even a request that costs nothing here */
    CHECK_EQ(t.waiting, 7u);
    async_loop_run(loop, zx_deadline_after(ZX_MSEC(300)), true); /* the bucket is full again */
    CHECK_EQ(nresumed, 3);
    CHECK(resumed[0] == 1 && resumed[1] == 0 && resumed[2] == 2);
    CHECK_EQ(t.waiting, 0u);
    virtio_throttle_stop(&t);
    async_loop_destroy(loop);
    fake_vm_destroy(&vm);
}
