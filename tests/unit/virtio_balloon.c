/* virtio-balloon's run-time side, driven by the test driver over fake guest memory: a new
 * target reaches the driver, the statistics queue's one buffer is held and handed back when
 * statistics are wanted (on a real loop's timer, and at once for a new interval), hostile
 * statistics buffers are read entry by entry without harm, and the state survives a snapshot. */
#include <lib/async-loop/default.h>
#include <lib/async-loop/loop.h>
#include <zircon/syscalls.h>

#include "devices/virtio_balloon.h"
#include "devices/virtio_mmio.h"
#include "tests/lib/check.h"
#include "tests/lib/virtq_driver.h"

#define RAM (1u << 20)
#define STATS_Q 2
#define ENTRY 10 /* le16 tag, le64 val, packed */
#define REG_STATUS 0x070
#define REG_ISR 0x060
#define REG_ISR_ACK 0x064
#define REG_NUM_PAGES 0x100
#define REG_ACTUAL 0x104
#define BALLOON_STATE_LEN 144 /* the device's own part, at the end of the transport's state */

static void put_stat(uint8_t *at, uint16_t tag, uint64_t val) {
    memcpy(at, &tag, 2);
    memcpy(at + 2, &val, 8);
}

/* A balloon made with statistics every `interval` seconds, its driver running with three
 * queues of 8 and the statistics feature accepted. */
static struct virtio_dev *stats_balloon(struct test_dev *d, struct fake_vm *vm, unsigned interval) {
    struct virtio_balloon_params p = {.target_pages = 5, .stats_interval_s = interval};
    uint32_t st = tdev_init(d, vm, &virtio_balloon_ops, &p, 1ull << VIRTIO_BALLOON_F_STATS_VQ, 3, 8);
    CHECK_EQ(st, 1 | 2 | 4 | 8);
    return virtio_mmio_dev(d->mmio);
}

static struct virtio_balloon_info info_of(struct virtio_dev *vd) {
    struct virtio_balloon_info i;
    virtio_balloon_info(vd, &i);
    return i;
}

TEST(a_new_target_raises_a_configuration_interrupt_and_reads_back) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    struct test_dev d;
    tdev_init(&d, &vm, &virtio_balloon_ops, &(struct virtio_balloon_params){.target_pages = 3}, 0, 2, 8);
    struct virtio_dev *vd = virtio_mmio_dev(d.mmio);
    tdev_write(&d, REG_ACTUAL, 2); /* the driver's count */
    struct virtio_balloon_info i = info_of(vd);
    CHECK_EQ(i.target_pages, 3);
    CHECK_EQ(i.actual_pages, 2);
    CHECK(!i.stats_enabled);
    int irqs = vm.irqs;
    virtio_balloon_set_target(vd, 1000);
    CHECK_EQ(vm.irqs, irqs + 1);
    CHECK_EQ(vm.irqs_under_lock, 0);
    CHECK_EQ(tdev_read(&d, REG_ISR) & VIRTIO_ISR_CONFIG, VIRTIO_ISR_CONFIG);
    CHECK_EQ(tdev_read(&d, REG_NUM_PAGES), 1000);
    CHECK_EQ(info_of(vd).target_pages, 1000);
    CHECK_EQ(info_of(vd).actual_pages, 2);
    tdev_write(&d, REG_ISR_ACK, VIRTIO_ISR_CONFIG);
    /* Before the driver is running, the target changes without an interrupt. */
    tdev_write(&d, REG_STATUS, 0);
    virtio_balloon_set_target(vd, 7);
    CHECK_EQ(vm.irqs, irqs + 1);
    CHECK_EQ(tdev_read(&d, REG_NUM_PAGES), 7);
    tdev_destroy(&d);
    fake_vm_destroy(&vm);
}

TEST(a_balloon_made_without_statistics_refuses_an_interval) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    struct test_dev d;
    tdev_init(&d, &vm, &virtio_balloon_ops, &(struct virtio_balloon_params){.deflate_on_oom = true}, 0, 2, 8);
    struct virtio_dev *vd = virtio_mmio_dev(d.mmio);
    CHECK_EQ(virtio_balloon_set_stats_interval(vd, 1), -1);
    CHECK_EQ(virtio_balloon_set_stats_interval(vd, 0), -1);
    CHECK(!info_of(vd).stats_enabled);
    CHECK_EQ(info_of(vd).stats_interval_s, 0);
    tdev_write(&d, 0x014, 0);
    uint32_t offered = tdev_read(&d, 0x010);
    CHECK_EQ(offered >> VIRTIO_BALLOON_F_STATS_VQ & 1, 0);
    CHECK_EQ(offered >> VIRTIO_BALLOON_F_DEFLATE_ON_OOM & 1, 1);
    tdev_write(&d, 0x030, STATS_Q);
    CHECK_EQ(tdev_read(&d, 0x034), 0); /* two queues only */
    /* Nor one made without parameters. */
    struct test_dev r;
    struct fake_vm vm2;
    fake_vm_init(&vm2, RAM);
    tdev_init(&r, &vm2, &virtio_balloon_ops, NULL, 0, 2, 8);
    CHECK_EQ(virtio_balloon_set_stats_interval(virtio_mmio_dev(r.mmio), 5), -1);
    tdev_destroy(&r);
    fake_vm_destroy(&vm2);
    tdev_destroy(&d);
    fake_vm_destroy(&vm);
}

/* Runs the loop until queue q has a used buffer or `deadline`; true if one came. */
static bool run_until_used(async_loop_t *loop, struct test_dev *d, unsigned q, zx_time_t deadline, uint32_t *id,
                           uint32_t *len) {
    for (;;) {
        if (tvq_used(d, q, id, len)) return true;
        if (async_loop_run(loop, deadline, true) == ZX_ERR_TIMED_OUT) return tvq_used(d, q, id, len);
    }
}

TEST(the_statistics_buffer_is_held_until_the_timer_asks_for_new_statistics) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    async_loop_t *loop;
    CHECK_EQ(async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &loop), ZX_OK);
    vm.env.loop = async_loop_get_dispatcher(loop);
    zx_time_t made = zx_clock_get_monotonic();
    struct test_dev d;
    struct virtio_dev *vd = stats_balloon(&d, &vm, 1);
    CHECK(info_of(vd).stats_enabled);
    CHECK_EQ(info_of(vd).stats_interval_s, 1);
    /* The driver primes the queue with its first statistics. */
    uint64_t buf = fake_alloc(&vm, 2 * ENTRY, 8);
    put_stat(fake_ptr(&vm, buf), VIRTIO_BALLOON_S_MEMFREE, 1111);
    put_stat(fake_ptr(&vm, buf + ENTRY), VIRTIO_BALLOON_S_MEMTOT, 2222);
    tvq_add(&d, STATS_Q, 0, &(struct tbuf){buf, 2 * ENTRY, false}, 1);
    tvq_kick(&d, STATS_Q);
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    uint32_t id, len;
    CHECK(!tvq_used(&d, STATS_Q, &id, &len)); /* held, not given back */
    struct virtio_balloon_info i = info_of(vd);
    CHECK(i.has_stat[VIRTIO_BALLOON_S_MEMFREE] && i.has_stat[VIRTIO_BALLOON_S_MEMTOT]);
    CHECK(!i.has_stat[VIRTIO_BALLOON_S_SWAP_IN]);
    CHECK_EQ(i.stat[VIRTIO_BALLOON_S_MEMFREE], 1111);
    CHECK_EQ(i.stat[VIRTIO_BALLOON_S_MEMTOT], 2222);
    /* A second later the timer hands it back, with an interrupt. */
    int irqs = vm.irqs;
    CHECK(run_until_used(loop, &d, STATS_Q, made + ZX_MSEC(1800), &id, &len));
    CHECK(zx_clock_get_monotonic() - made >= ZX_MSEC(990));
    CHECK_EQ(id, 0);
    CHECK_EQ(len, 0);
    CHECK(vm.irqs > irqs);
    /* The driver refills it; the device reads the new statistics and holds it again. */
    put_stat(fake_ptr(&vm, buf), VIRTIO_BALLOON_S_AVAIL, 3333);
    tvq_publish(&d, STATS_Q, 0);
    tvq_kick(&d, STATS_Q);
    i = info_of(vd);
    CHECK(i.has_stat[VIRTIO_BALLOON_S_AVAIL] && !i.has_stat[VIRTIO_BALLOON_S_MEMFREE]);
    CHECK_EQ(i.stat[VIRTIO_BALLOON_S_AVAIL], 3333);
    CHECK_EQ(i.stat[VIRTIO_BALLOON_S_MEMTOT], 2222);
    /* Interval 0 stops asking: the buffer stays. */
    CHECK_EQ(virtio_balloon_set_stats_interval(vd, 0), 0);
    CHECK_EQ(info_of(vd).stats_interval_s, 0);
    CHECK_EQ(async_loop_run(loop, zx_clock_get_monotonic() + ZX_MSEC(20), false), ZX_ERR_TIMED_OUT);
    CHECK(!tvq_used(&d, STATS_Q, &id, &len));
    /* A new interval asks at once, and leaves its timer pending: destroying the device
     * cancels it, so the loop's shutdown below finds nothing of the device's. */
    CHECK_EQ(virtio_balloon_set_stats_interval(vd, 3600), 0);
    CHECK(tvq_used(&d, STATS_Q, &id, &len));
    CHECK_EQ(id, 0);
    tdev_destroy(&d);
    async_loop_destroy(loop);
    fake_vm_destroy(&vm);
}

TEST(the_loop_going_first_ends_the_timer) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    async_loop_t *loop;
    CHECK_EQ(async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &loop), ZX_OK);
    vm.env.loop = async_loop_get_dispatcher(loop);
    struct test_dev d;
    struct virtio_dev *vd = stats_balloon(&d, &vm, 1);
    async_loop_shutdown(loop); /* runs the timer as canceled: it must not post itself again */
    CHECK_EQ(virtio_balloon_set_stats_interval(vd, 2), 0); /* a loop shutting down takes no task */
    async_loop_destroy(loop);
    tdev_destroy(&d); /* nothing pending to cancel on a loop that is gone */
    fake_vm_destroy(&vm);
}

/* Asks for statistics (a new interval does at once) and says whether the held buffer came
 * back, as which head. */
static bool ask(struct test_dev *d, struct virtio_dev *vd, uint32_t *id) {
    uint32_t len;
    CHECK_EQ(virtio_balloon_set_stats_interval(vd, 10), 0);
    bool back = tvq_used(d, STATS_Q, id, &len);
    if (back) CHECK_EQ(len, 0);
    return back;
}

TEST(hostile_statistics_buffers_are_read_entry_by_entry) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    struct test_dev d;
    struct virtio_dev *vd = stats_balloon(&d, &vm, 10); /* no loop: requests only when asked */
    uint32_t id;
    CHECK(!ask(&d, vd, &id)); /* nothing held yet */
    /* Two entries and 7 bytes of a third; an entry split over two buffers; tags past the
     * known ones; a value of all ones; a tag repeated (the last one counts). */
    uint64_t a = fake_alloc(&vm, 64, 8), b = fake_alloc(&vm, 64, 8);
    uint8_t *pa = fake_ptr(&vm, a), *pb = fake_ptr(&vm, b);
    put_stat(pa, VIRTIO_BALLOON_S_SWAP_IN, UINT64_MAX);
    put_stat(pa + ENTRY, 15, 42);
    put_stat(pa + 2 * ENTRY, 16, 9);                 /* unknown */
    uint8_t split[ENTRY];
    put_stat(split, VIRTIO_BALLOON_S_CACHES, 77);
    memcpy(pa + 3 * ENTRY, split, 4);
    memcpy(pb, split + 4, ENTRY - 4);
    put_stat(pb + 6, 0xffff, 1);                     /* unknown */
    put_stat(pb + 16, VIRTIO_BALLOON_S_SWAP_IN, 5);  /* repeated */
    put_stat(pb + 26, VIRTIO_BALLOON_S_MAJFLT, 8);   /* cut short below: ignored */
    tvq_add(&d, STATS_Q, 0, (struct tbuf[]){{a, 3 * ENTRY + 4, false}, {b, 26 + 7, false}}, 2);
    tvq_kick(&d, STATS_Q);
    struct virtio_balloon_info i = info_of(vd);
    CHECK(i.has_stat[VIRTIO_BALLOON_S_SWAP_IN] && i.has_stat[15] && i.has_stat[VIRTIO_BALLOON_S_CACHES]);
    CHECK_EQ(i.stat[VIRTIO_BALLOON_S_SWAP_IN], 5);
    CHECK_EQ(i.stat[15], 42);
    CHECK_EQ(i.stat[VIRTIO_BALLOON_S_CACHES], 77);
    CHECK(!i.has_stat[VIRTIO_BALLOON_S_MAJFLT]);
    unsigned known = 0;
    for (unsigned t = 0; t < VIRTIO_BALLOON_STAT_TAGS; t++) known += i.has_stat[t];
    CHECK_EQ(known, 3);
    CHECK(ask(&d, vd, &id));
    CHECK_EQ(id, 0);
    /* A huge value survives as it is. */
    put_stat(pa, VIRTIO_BALLOON_S_MEMTOT, UINT64_MAX);
    tvq_add(&d, STATS_Q, 0, &(struct tbuf){a, ENTRY, false}, 1);
    tvq_kick(&d, STATS_Q);
    CHECK_EQ(info_of(vd).stat[VIRTIO_BALLOON_S_MEMTOT], UINT64_MAX);
    CHECK(info_of(vd).has_stat[VIRTIO_BALLOON_S_MEMTOT]);
    /* A second buffer while one is held: the older goes back at once; the newer is read
     * (a write-only one has nothing to read) and held. */
    tvq_add(&d, STATS_Q, 2, &(struct tbuf){b, 64, true}, 1);
    tvq_kick(&d, STATS_Q);
    uint32_t len;
    CHECK(tvq_used(&d, STATS_Q, &id, &len));
    CHECK_EQ(id, 0);
    i = info_of(vd);
    for (unsigned t = 0; t < VIRTIO_BALLOON_STAT_TAGS; t++) CHECK(!i.has_stat[t]);
    CHECK(ask(&d, vd, &id));
    CHECK_EQ(id, 2);
    /* Shorter than one entry: nothing. */
    tvq_add(&d, STATS_Q, 3, &(struct tbuf){a, ENTRY - 1, false}, 1);
    tvq_kick(&d, STATS_Q);
    CHECK(!info_of(vd).has_stat[VIRTIO_BALLOON_S_MEMTOT]);
    CHECK(ask(&d, vd, &id));
    /* A buffer as long as guest RAM and more: its first entries are read (a driver sends a
     * few dozen at most), the rest is not looked at. */
    uint64_t big = fake_alloc(&vm, 8 * 1024, 8);
    for (unsigned e = 0; e < 8 * 1024 / ENTRY; e++) put_stat(fake_ptr(&vm, big + e * ENTRY), 0x100, e);
    put_stat(fake_ptr(&vm, big), VIRTIO_BALLOON_S_MINFLT, 3);
    put_stat(fake_ptr(&vm, big + 300 * ENTRY), VIRTIO_BALLOON_S_MEMTOT, 4);
    tvq_add(&d, STATS_Q, 4, (struct tbuf[]){{big, 8 * 1024, false}, {0, RAM, false}}, 2);
    tvq_kick(&d, STATS_Q);
    CHECK_EQ(info_of(vd).stat[VIRTIO_BALLOON_S_MINFLT], 3);
    CHECK(!info_of(vd).has_stat[VIRTIO_BALLOON_S_MEMTOT]);
    CHECK(ask(&d, vd, &id));
    CHECK_EQ(id, 4);
    CHECK_EQ(tdev_read(&d, REG_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET, 0);
    tdev_destroy(&d);
    fake_vm_destroy(&vm);
}

/* The driver's start on the device's existing transport: features, queues at the rings
 * d->q already has (emptied), DRIVER_OK. */
static void driver_start(struct test_dev *d, uint64_t features, unsigned nq) {
    tdev_write(d, REG_STATUS, 1);
    tdev_write(d, REG_STATUS, 3);
    for (unsigned sel = 0; sel < 2; sel++) {
        tdev_write(d, 0x024, sel);
        tdev_write(d, 0x020, (uint32_t)(features >> (32 * sel)));
    }
    tdev_write(d, REG_STATUS, 3 | 8);
    for (unsigned i = 0; i < nq; i++) {
        struct test_vq *q = &d->q[i];
        memset(fake_ptr(d->vm, q->avail), 0, 6u + 2u * q->num);
        memset(fake_ptr(d->vm, q->used), 0, 6u + 8u * q->num);
        q->avail_idx = q->last_used = 0;
        tdev_write(d, 0x030, i);
        tdev_write(d, 0x038, q->num);
        tdev_write(d, 0x080, (uint32_t)q->desc);
        tdev_write(d, 0x090, (uint32_t)q->avail);
        tdev_write(d, 0x0a0, (uint32_t)q->used);
        tdev_write(d, 0x044, 1);
    }
    tdev_write(d, REG_STATUS, 3 | 8 | 4);
}

TEST(a_buffer_held_across_a_reset_is_not_given_back_into_the_new_rings) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    struct test_dev d;
    struct virtio_dev *vd = stats_balloon(&d, &vm, 10);
    uint64_t a = fake_alloc(&vm, ENTRY, 8);
    put_stat(fake_ptr(&vm, a), VIRTIO_BALLOON_S_MEMFREE, 1);
    tvq_add(&d, STATS_Q, 5, &(struct tbuf){a, ENTRY, false}, 1);
    tvq_kick(&d, STATS_Q);
    /* The driver resets the device and starts over: the old buffer (head 5) is not its. */
    tdev_write(&d, REG_STATUS, 0);
    driver_start(&d, 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_BALLOON_F_STATS_VQ, 3);
    CHECK_EQ(tdev_read(&d, REG_STATUS), 1 | 2 | 4 | 8);
    uint32_t id;
    CHECK(!ask(&d, vd, &id));
    /* Its new buffer is held and given back as any. */
    tvq_add(&d, STATS_Q, 1, &(struct tbuf){a, ENTRY, false}, 1);
    tvq_kick(&d, STATS_Q);
    CHECK(ask(&d, vd, &id));
    CHECK_EQ(id, 1);
    CHECK(!ask(&d, vd, &id)); /* and only once */
    tdev_destroy(&d);
    fake_vm_destroy(&vm);
}

TEST(target_actual_interval_statistics_and_the_held_buffer_survive_a_snapshot) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    struct test_dev d;
    struct virtio_dev *vd = stats_balloon(&d, &vm, 10);
    virtio_balloon_set_target(vd, 4096);
    tdev_write(&d, REG_ACTUAL, 1024);
    CHECK_EQ(virtio_balloon_set_stats_interval(vd, 7), 0);
    uint64_t a = fake_alloc(&vm, 2 * ENTRY, 8);
    put_stat(fake_ptr(&vm, a), VIRTIO_BALLOON_S_MEMFREE, 123);
    put_stat(fake_ptr(&vm, a + ENTRY), VIRTIO_BALLOON_S_HTLB_PGFAIL, UINT64_MAX);
    tvq_add(&d, STATS_Q, 3, &(struct tbuf){a, 2 * ENTRY, false}, 1);
    tvq_kick(&d, STATS_Q);
    uint8_t state[4096];
    size_t n = virtio_mmio_ops.save(d.mmio, state, sizeof state);
    CHECK(n > BALLOON_STATE_LEN);
    /* A fresh device with the same parameters takes it, and the held buffer again. */
    struct test_dev e = {.vm = &vm};
    char err[200];
    struct virtio_balloon_params p = {.target_pages = 5, .stats_interval_s = 10};
    e.mmio = virtio_mmio_create(&vm.env, &virtio_balloon_ops, &p, 0xd0000000, 5, err, sizeof err);
    CHECK(e.mmio != NULL);
    CHECK_EQ(virtio_mmio_ops.restore(e.mmio, state, n, err, sizeof err), 0);
    memcpy(e.q, d.q, sizeof e.q);
    struct virtio_dev *ve = virtio_mmio_dev(e.mmio);
    struct virtio_balloon_info i = info_of(ve);
    CHECK_EQ(i.target_pages, 4096);
    CHECK_EQ(i.actual_pages, 1024);
    CHECK_EQ(tdev_read(&e, REG_NUM_PAGES), 4096);
    CHECK_EQ(i.stats_interval_s, 7);
    CHECK_EQ(i.stat[VIRTIO_BALLOON_S_MEMFREE], 123);
    CHECK_EQ(i.stat[VIRTIO_BALLOON_S_HTLB_PGFAIL], UINT64_MAX);
    CHECK(i.has_stat[VIRTIO_BALLOON_S_HTLB_PGFAIL] && !i.has_stat[VIRTIO_BALLOON_S_SWAP_IN]);
    ve->ops->queue_notify(ve, STATS_Q); /* virtio_restore_kick's turn */
    uint32_t id, len;
    CHECK(!tvq_used(&e, STATS_Q, &id, &len)); /* held again, not given back */
    CHECK(ask(&e, ve, &id));
    CHECK_EQ(id, 3);
    /* Hostile states: a held flag out of range, statistics under an unset tag, a state cut. */
    uint8_t bad[4096];
    uint8_t *dev = bad + n - BALLOON_STATE_LEN;
    memcpy(bad, state, n);
    dev[14] = 2;
    CHECK_EQ(virtio_mmio_ops.restore(e.mmio, bad, n, err, sizeof err), -1);
    memcpy(bad, state, n);
    dev[16] = 1; /* tag 0's value without tag 0 */
    CHECK_EQ(virtio_mmio_ops.restore(e.mmio, bad, n, err, sizeof err), -1);
    CHECK_EQ(virtio_mmio_ops.restore(e.mmio, state, n - 1, err, sizeof err), -1);
    virtio_mmio_destroy(e.mmio);
    tdev_destroy(&d);
    fake_vm_destroy(&vm);
}

TEST(a_balloon_without_statistics_refuses_a_state_with_them) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    struct test_dev d;
    tdev_init(&d, &vm, &virtio_balloon_ops, &(struct virtio_balloon_params){.target_pages = 9}, 0, 2, 8);
    virtio_balloon_set_target(virtio_mmio_dev(d.mmio), 11);
    uint8_t state[4096];
    size_t n = virtio_mmio_ops.save(d.mmio, state, sizeof state);
    CHECK(n > BALLOON_STATE_LEN);
    struct test_dev e = {.vm = &vm};
    char err[200];
    e.mmio = virtio_mmio_create(&vm.env, &virtio_balloon_ops, &(struct virtio_balloon_params){.target_pages = 9},
                                0xd0000000, 5, err, sizeof err);
    CHECK(e.mmio != NULL);
    CHECK_EQ(virtio_mmio_ops.restore(e.mmio, state, n, err, sizeof err), 0);
    CHECK_EQ(info_of(virtio_mmio_dev(e.mmio)).target_pages, 11);
    uint8_t *dev = state + n - BALLOON_STATE_LEN;
    dev[8] = 5; /* an interval */
    CHECK_EQ(virtio_mmio_ops.restore(e.mmio, state, n, err, sizeof err), -1);
    dev[8] = 0, dev[14] = 1; /* a held buffer on a queue it does not have */
    CHECK_EQ(virtio_mmio_ops.restore(e.mmio, state, n, err, sizeof err), -1);
    virtio_mmio_destroy(e.mmio);
    tdev_destroy(&d);
    fake_vm_destroy(&vm);
}
