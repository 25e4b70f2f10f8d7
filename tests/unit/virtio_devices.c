/* virtio devices and the virtio-mmio transport driven by a test driver over fake guest
 * memory (no KVM): request handling of rng, blk and console, and every kind of malformed
 * descriptor chain, which must fail the device (DEVICE_NEEDS_RESET) and never crash it. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include <lib/async-loop/default.h>
#include <lib/async-loop/loop.h>

#include "devices/virtio_balloon.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_console.h"
#include "devices/virtio_mmio.h"
#include "devices/virtio_rng.h"
#include "tests/lib/check.h"
#include "tests/lib/virtq_driver.h"

#define RAM (1u << 20)
#define NEEDS_RESET VIRTIO_STATUS_DEVICE_NEEDS_RESET

static uint32_t status(struct test_dev *d) { return tdev_read(d, 0x070); }

TEST(transport_registers_and_feature_negotiation) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    struct test_dev d;
    uint32_t st = tdev_init(&d, &vm, &virtio_rng_ops, NULL, 1ull << VIRTIO_F_EVENT_IDX, 1, 8);
    CHECK_EQ(st, 1 | 2 | 4 | 8);
    CHECK_EQ(tdev_read(&d, 0x000), 0x74726976);
    CHECK_EQ(tdev_read(&d, 0x004), 2);
    CHECK_EQ(tdev_read(&d, 0x008), VIRTIO_ID_RNG);
    tdev_write(&d, 0x030, 0);
    CHECK_EQ(tdev_read(&d, 0x034), VIRTQ_MAX_SIZE);
    CHECK_EQ(tdev_read(&d, 0x044), 1);
    tdev_write(&d, 0x030, 1);
    CHECK_EQ(tdev_read(&d, 0x034), 0); /* no such queue */
    /* Features the device never offered do not make FEATURES_OK stick. */
    tdev_write(&d, 0x070, 0);
    CHECK_EQ(status(&d), 0);
    tdev_write(&d, 0x070, 3);
    tdev_write(&d, 0x024, 0);
    tdev_write(&d, 0x020, 1u << 20);
    tdev_write(&d, 0x024, 1);
    tdev_write(&d, 0x020, 1);
    tdev_write(&d, 0x070, 3 | 8);
    CHECK_EQ(status(&d) & 8, 0);
    /* Nor does a driver without VERSION_1. */
    tdev_write(&d, 0x070, 0);
    tdev_write(&d, 0x070, 3 | 8);
    CHECK_EQ(status(&d) & 8, 0);
    tdev_destroy(&d);
    fake_vm_destroy(&vm);
}

TEST(rng_fills_writable_buffers) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    struct test_dev d;
    tdev_init(&d, &vm, &virtio_rng_ops, NULL, 0, 1, 8);
    uint64_t a = fake_alloc(&vm, 64, 8), b = fake_alloc(&vm, 64, 8);
    tvq_add(&d, 0, 0, (struct tbuf[]){{a, 64, true}}, 1);
    tvq_add(&d, 0, 1, (struct tbuf[]){{b, 64, true}}, 1);
    tvq_kick(&d, 0);
    uint32_t id, len;
    CHECK(tvq_used(&d, 0, &id, &len));
    CHECK_EQ(id, 0);
    CHECK_EQ(len, 64);
    CHECK(tvq_used(&d, 0, &id, &len));
    CHECK_EQ(id, 1);
    CHECK(!tvq_used(&d, 0, &id, &len));
    CHECK(memcmp(fake_ptr(&vm, a), fake_ptr(&vm, b), 64) != 0);
    CHECK(vm.irqs >= 1);
    /* Raised once the device lock is dropped: the vCPU it wakes reads InterruptStatus at once. */
    CHECK_EQ(vm.irqs_under_lock, 0);
    CHECK_EQ(tdev_read(&d, 0x060) & 1, 1);
    tdev_write(&d, 0x064, 1);
    CHECK_EQ(tdev_read(&d, 0x060), 0);
    tdev_destroy(&d);
    fake_vm_destroy(&vm);
}

TEST(balloon_gives_inflated_pages_back_and_ignores_frames_outside_ram) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    struct test_dev d;
    tdev_init(&d, &vm, &virtio_balloon_ops, &(struct virtio_balloon_params){.target_pages = 3}, 0, 2, 8);
    CHECK_EQ(tdev_read(&d, 0x100), 3); /* num_pages */
    tdev_write(&d, 0x104, 2);          /* actual */
    CHECK_EQ(tdev_read(&d, 0x104), 2);
    uint64_t p1 = fake_alloc(&vm, 4096, 4096), p2 = fake_alloc(&vm, 4096, 4096);
    memset(fake_ptr(&vm, p1), 0xa5, 4096);
    memset(fake_ptr(&vm, p2), 0x5a, 4096);
    /* Three frames over two buffers, the second frame split across them; the third is past RAM. */
    uint32_t pfns[3] = {(uint32_t)(p1 >> 12), (uint32_t)(p2 >> 12), RAM >> 12};
    uint64_t a = fake_alloc(&vm, 6, 4), b = fake_alloc(&vm, 6, 4);
    memcpy(fake_ptr(&vm, a), pfns, 6);
    memcpy(fake_ptr(&vm, b), (uint8_t *)pfns + 6, 6);
    tvq_add(&d, 0, 0, (struct tbuf[]){{a, 6, false}, {b, 6, false}}, 2);
    tvq_kick(&d, 0);
    uint32_t id, len;
    CHECK(tvq_used(&d, 0, &id, &len));
    static const uint8_t zero[4096];
    CHECK(memcmp(fake_ptr(&vm, p1), zero, 4096) == 0);
    CHECK(memcmp(fake_ptr(&vm, p2), zero, 4096) == 0);
    /* Deflating needs nothing of the host: the request completes, the device stays healthy. */
    tvq_add(&d, 1, 0, (struct tbuf[]){{a, 4, false}}, 1);
    tvq_kick(&d, 1);
    CHECK(tvq_used(&d, 1, &id, &len));
    CHECK_EQ(status(&d) & NEEDS_RESET, 0);
    tdev_destroy(&d);
    fake_vm_destroy(&vm);
}

TEST(rng_serves_a_bounded_amount_per_turn_and_the_rest_on_the_next) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    async_loop_t *loop;
    CHECK_EQ(async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &loop), ZX_OK);
    vm.env.loop = async_loop_get_dispatcher(loop);
    struct test_dev d;
    tdev_init(&d, &vm, &virtio_rng_ops, NULL, 0, 1, 8);
    const uint32_t each = VIRTIO_RNG_BYTES_PER_TURN / 2;
    for (uint16_t i = 0; i < 4; i++)
        tvq_add(&d, 0, i, (struct tbuf[]){{fake_alloc(&vm, each, 8), each, true}}, 1);
    tvq_kick(&d, 0);
    uint32_t id, len, served = 0;
    while (tvq_used(&d, 0, &id, &len)) served++;
    CHECK_EQ(served, 2); /* a turn's worth */
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    while (tvq_used(&d, 0, &id, &len)) {
        CHECK_EQ(id, served);
        CHECK_EQ(len, each);
        served++;
    }
    CHECK_EQ(served, 4);
    async_loop_destroy(loop);
    tdev_destroy(&d);
    fake_vm_destroy(&vm);
}

struct blk_req {
    uint32_t type, reserved;
    uint64_t sector;
};

static void make_disk(const char *path, size_t size) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK_EQ(ftruncate(fd, (off_t)size), 0);
    close(fd);
}

/* Submits header + data + status; returns the status byte and the used length. */
static uint8_t blk(struct test_dev *d, uint32_t type, uint64_t sector, uint64_t data, uint32_t len,
                   bool data_in, uint32_t *used_len) {
    struct fake_vm *vm = d->vm;
    uint64_t hdr = fake_alloc(vm, 16, 8), st = fake_alloc(vm, 1, 1);
    *(struct blk_req *)fake_ptr(vm, hdr) = (struct blk_req){type, 0, sector};
    *(uint8_t *)fake_ptr(vm, st) = 0xee;
    struct tbuf bufs[3] = {{hdr, 16, false}, {data, len, data_in}, {st, 1, true}};
    if (len) tvq_add(d, 0, 0, bufs, 3);
    else tvq_add(d, 0, 0, (struct tbuf[]){bufs[0], bufs[2]}, 2);
    tvq_kick(d, 0);
    uint32_t id;
    CHECK(tvq_used(d, 0, &id, used_len));
    return *(uint8_t *)fake_ptr(vm, st);
}

static void blk_basics(struct virtio_blk_params p, bool async) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    const char *path = p.path;
    make_disk(path, 64 * 512);
    struct test_dev d;
    tdev_init(&d, &vm, &virtio_blk_ops, &p, 0, 1, 16);
    CHECK_EQ(virtio_blk_async(virtio_mmio_dev(d.mmio)), async);
    uint64_t buf = fake_alloc(&vm, 1024, 512);
    memset(fake_ptr(&vm, buf), 0x5a, 1024);
    uint32_t used;
    CHECK_EQ(blk(&d, 1, 3, buf, 1024, false, &used), 0);
    CHECK_EQ(used, 1);
    CHECK_EQ(blk(&d, 4, 0, 0, 0, false, &used), 0);
    uint64_t rbuf = fake_alloc(&vm, 512, 512);
    CHECK_EQ(blk(&d, 0, 4, rbuf, 512, true, &used), 0);
    CHECK_EQ(used, 513);
    CHECK_EQ(((uint8_t *)fake_ptr(&vm, rbuf))[511], 0x5a);
    /* the file has it */
    int fd = open(path, O_RDONLY);
    uint8_t sector[512];
    CHECK_EQ(pread(fd, sector, 512, 3 * 512), 512);
    close(fd);
    CHECK_EQ(sector[0], 0x5a);
    /* out of range, misaligned and unknown requests */
    CHECK_EQ(blk(&d, 0, 64, rbuf, 512, true, &used), 1);
    CHECK_EQ(blk(&d, 1, 63, buf, 1024, false, &used), 1);
    CHECK_EQ(blk(&d, 0, UINT64_MAX, rbuf, 512, true, &used), 1);
    CHECK_EQ(blk(&d, 0, 0, rbuf, 100, true, &used), 1);
    CHECK_EQ(blk(&d, 77, 0, rbuf, 512, true, &used), 2);
    uint64_t id = fake_alloc(&vm, 20, 1);
    CHECK_EQ(blk(&d, 8, 0, id, 20, true, &used), 0);
    CHECK(strncmp(fake_ptr(&vm, id), "bellhop-", 8) == 0);
    /* write-zeroes and discard take one segment */
    uint64_t seg = fake_alloc(&vm, 32, 8);
    struct { uint64_t sector; uint32_t num, flags; } z = {3, 1, 0};
    *(struct blk_req *)fake_ptr(&vm, seg) = (struct blk_req){13, 0, 0};
    memcpy(fake_ptr(&vm, seg + 16), &z, sizeof z);
    uint64_t st = fake_alloc(&vm, 1, 1);
    tvq_add(&d, 0, 0, (struct tbuf[]){{seg, 32, false}, {st, 1, true}}, 2);
    tvq_kick(&d, 0);
    uint32_t uid;
    CHECK(tvq_used(&d, 0, &uid, &used));
    CHECK_EQ(*(uint8_t *)fake_ptr(&vm, st), 0);
    fd = open(path, O_RDONLY);
    CHECK_EQ(pread(fd, sector, 512, 3 * 512), 512);
    close(fd);
    CHECK_EQ(sector[0], 0);
    CHECK_EQ(status(&d) & NEEDS_RESET, 0);
    tdev_destroy(&d);
    unlink(path);
    fake_vm_destroy(&vm);
}

TEST(blk_reads_writes_flushes_and_names_itself_through_io_uring) {
    blk_basics((struct virtio_blk_params){.path = "/tmp/bellhop-unit-blk.img", .engine = BLK_IO_ASYNC}, true);
}

TEST(blk_by_default_serves_a_file_in_memory_too) {
    struct statfs fs;
    if (statfs("/dev/shm", &fs) != 0 || fs.f_type != TMPFS_MAGIC) test_skip("no tmpfs at /dev/shm");
    blk_basics((struct virtio_blk_params){.path = "/dev/shm/bellhop-unit-blk.img"}, true);
}

TEST(blk_does_the_same_synchronously_when_asked) {
    blk_basics((struct virtio_blk_params){.path = "/tmp/bellhop-unit-blk.img", .engine = BLK_IO_SYNC}, false);
}

TEST(blk_does_the_same_with_o_direct) {
    int probe = open("/var/tmp/bellhop-unit-direct", O_RDWR | O_CREAT | O_DIRECT, 0644);
    unlink("/var/tmp/bellhop-unit-direct");
    if (probe < 0) test_skip("/var/tmp does not take O_DIRECT here");
    close(probe);
    blk_basics((struct virtio_blk_params){.path = "/var/tmp/bellhop-unit-blk.img", .direct = true, .engine = BLK_IO_ASYNC}, true);
    blk_basics((struct virtio_blk_params){.path = "/var/tmp/bellhop-unit-blk.img", .direct = true, .engine = BLK_IO_SYNC}, false);
}

/* A read whose data is split over buffers far apart in guest memory (as Linux's are, a page
 * each): every byte lands where it belongs, through the ring and without it, and the status
 * byte in its own buffer (it once went into the second data buffer's first byte: a cursor
 * that skipped a whole buffer forgot the rest of its offset). */
static void blk_scattered_read(enum blk_io_engine engine) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    const char *path = "/var/tmp/bellhop-unit-scatter.img";
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    static uint8_t file[64 * 512];
    for (size_t i = 0; i < sizeof file; i++) file[i] = (uint8_t)(i / 512 * 7 + i % 251);
    CHECK_EQ(write(fd, file, sizeof file), (ssize_t)sizeof file);
    close(fd);
    struct test_dev d;
    tdev_init(&d, &vm, &virtio_blk_ops, &(struct virtio_blk_params){.path = path, .engine = engine}, 0, 1, 16);
    uint64_t hdr = fake_alloc(&vm, 16, 8), st = fake_alloc(&vm, 1, 1);
    uint64_t a = fake_alloc(&vm, 4096, 4096), gap = fake_alloc(&vm, 8192, 4096), b = fake_alloc(&vm, 4096, 4096),
             c = fake_alloc(&vm, 2048, 512);
    (void)gap;
    *(struct blk_req *)fake_ptr(&vm, hdr) = (struct blk_req){0, 0, 4};
    tvq_add(&d, 0, 0, (struct tbuf[]){{hdr, 16, false}, {b, 4096, true}, {a, 4096, true}, {c, 2048, true}, {st, 1, true}}, 5);
    tvq_kick(&d, 0);
    uint32_t id, used;
    CHECK(tvq_used(&d, 0, &id, &used));
    CHECK_EQ(*(uint8_t *)fake_ptr(&vm, st), 0);
    CHECK_EQ(used, 10241);
    CHECK(memcmp(fake_ptr(&vm, b), file + 4 * 512, 4096) == 0);
    CHECK(memcmp(fake_ptr(&vm, a), file + 12 * 512, 4096) == 0);
    CHECK(memcmp(fake_ptr(&vm, c), file + 20 * 512, 2048) == 0);
    tdev_destroy(&d);
    unlink(path);
    fake_vm_destroy(&vm);
}

TEST(blk_reads_into_scattered_buffers) {
    blk_scattered_read(BLK_IO_ASYNC);
    blk_scattered_read(BLK_IO_SYNC);
}

/* A sandbox that forbids io_uring (as Docker's default profile does): the disk says so in a
 * line and serves its requests synchronously. In a child, which the filter stays in. */
TEST(blk_without_io_uring_falls_back_and_says_so) {
    int err[2];
    CHECK_EQ(pipe(err), 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(err[1], 2);
        if (test_forbid_syscall(__NR_io_uring_setup, EPERM) != 0) _exit(3);
        blk_basics((struct virtio_blk_params){.path = "/tmp/bellhop-unit-blk-nouring.img", .engine = BLK_IO_ASYNC}, false);
        _exit(0);
    }
    close(err[1]);
    char line[400] = {0};
    size_t n = 0;
    for (ssize_t k; n < sizeof line - 1 && (k = read(err[0], line + n, sizeof line - 1 - n)) > 0;) n += (size_t)k;
    close(err[0]);
    int status;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: %#x %s", status, line);
    CHECK_MSG(strstr(line, "no io_uring (io_uring_setup: Operation not permitted): its requests run one at a time"),
              "%s", line);
}

/* Many requests at once, ten times what this disk keeps in flight, answered through the loop: every
 * one right, in any order; the flush after them is answered after every write before it. */
TEST(blk_keeps_many_requests_in_flight_and_the_rest_wait_in_the_ring) {
    struct fake_vm vm;
    fake_vm_init(&vm, 4u << 20);
    async_loop_t *loop;
    CHECK_EQ(async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &loop), ZX_OK);
    vm.env.loop = async_loop_get_dispatcher(loop);
    const char *path = "/tmp/bellhop-unit-blk-many.img";
    enum { N = 80, SECTORS = 8 };
    make_disk(path, N * SECTORS * 512);
    struct test_dev d;
    tdev_init(&d, &vm, &virtio_blk_ops, &(struct virtio_blk_params){.path = path, .engine = BLK_IO_ASYNC, .queues = 2, .depth = 8}, 1ull << 12, 2, 256);
    CHECK_EQ(tdev_read(&d, 0x100 + 34) & 0xffff, 2); /* num_queues */
    uint64_t st = fake_alloc(&vm, N + 1, 1);
    for (unsigned i = 0; i < N; i++) { /* writes of 4K, each of its own byte, then a flush */
        uint64_t hdr = fake_alloc(&vm, 16, 8), data = fake_alloc(&vm, SECTORS * 512, 512);
        *(struct blk_req *)fake_ptr(&vm, hdr) = (struct blk_req){1, 0, (uint64_t)i * SECTORS};
        memset(fake_ptr(&vm, data), (int)i + 1, SECTORS * 512);
        tvq_add(&d, 1, (uint16_t)(3 * i), (struct tbuf[]){{hdr, 16, false}, {data, SECTORS * 512, false}, {st + i, 1, true}}, 3);
    }
    uint64_t fh = fake_alloc(&vm, 16, 8);
    *(struct blk_req *)fake_ptr(&vm, fh) = (struct blk_req){4, 0, 0};
    uint16_t flush = tvq_add(&d, 1, 3 * N, (struct tbuf[]){{fh, 16, false}, {st + N, 1, true}}, 2);
    tvq_kick(&d, 1);
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    unsigned answered = 0;
    uint32_t id, len;
    while (answered <= N) {
        if (!tvq_used(&d, 1, &id, &len)) {
            CHECK_EQ(async_loop_run(loop, zx_deadline_after(ZX_SEC(5)), true), ZX_OK);
            continue;
        }
        if (id == flush) CHECK_EQ(answered, N); /* the flush last */
        answered++;
    }
    for (unsigned i = 0; i <= N; i++) CHECK_EQ(*(uint8_t *)fake_ptr(&vm, st + i), 0);
    int fd = open(path, O_RDONLY);
    for (unsigned i = 0; i < N; i++) {
        uint8_t sector[512];
        CHECK_EQ(pread(fd, sector, 512, (off_t)((i * SECTORS + SECTORS - 1) * 512)), 512);
        CHECK_EQ(sector[511], i + 1);
    }
    close(fd);
    CHECK_EQ(status(&d) & NEEDS_RESET, 0);
    async_loop_destroy(loop);
    tdev_destroy(&d);
    unlink(path);
    fake_vm_destroy(&vm);
}

TEST(a_read_only_blk_refuses_writes) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    const char *path = "/tmp/bellhop-unit-ro.img";
    make_disk(path, 8 * 512);
    struct test_dev d;
    tdev_init(&d, &vm, &virtio_blk_ops, &(struct virtio_blk_params){.path = path, .read_only = true}, 1ull << 5, 1, 16);
    tdev_write(&d, 0x014, 0);
    CHECK(tdev_read(&d, 0x010) & (1u << 5)); /* VIRTIO_BLK_F_RO */
    uint64_t buf = fake_alloc(&vm, 512, 512);
    memset(fake_ptr(&vm, buf), 1, 512);
    uint32_t used;
    CHECK_EQ(blk(&d, 1, 0, buf, 512, false, &used), 1);
    CHECK_EQ(blk(&d, 0, 0, buf, 512, true, &used), 0);
    CHECK_EQ(((uint8_t *)fake_ptr(&vm, buf))[0], 0);
    tdev_destroy(&d);
    unlink(path);
    fake_vm_destroy(&vm);
}

TEST(console_transmits_to_its_fd) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    int p[2];
    CHECK_EQ(pipe(p), 0);
    struct test_dev d;
    tdev_init(&d, &vm, &virtio_console_ops, &(struct virtio_console_params){-1, p[1]}, 0, 2, 8);
    uint64_t a = fake_alloc(&vm, 6, 1), b = fake_alloc(&vm, 6, 1);
    memcpy(fake_ptr(&vm, a), "hello ", 6);
    memcpy(fake_ptr(&vm, b), "world\n", 6);
    tvq_add(&d, 1, 0, (struct tbuf[]){{a, 6, false}, {b, 6, false}}, 2);
    tvq_kick(&d, 1);
    char got[13] = {0};
    CHECK_EQ(read(p[0], got, 12), 12);
    CHECK_STR_EQ(got, "hello world\n");
    uint32_t id, len;
    CHECK(tvq_used(&d, 1, &id, &len));
    tdev_destroy(&d);
    close(p[0]);
    close(p[1]);
    fake_vm_destroy(&vm);
}

/* ---- malformed chains: each fails the device, which then does nothing until reset ---- */

enum bad { LOOP, OUT_OF_RAM, ZERO_LEN, NEXT_OUT_OF_RANGE, HEAD_OUT_OF_RANGE, AVAIL_JUMP,
           NESTED_INDIRECT, INDIRECT_WITH_NEXT, INDIRECT_BAD_LEN, READ_AFTER_WRITE, TOO_LONG,
           NBAD };
static const char *bad_names[NBAD] = {"loop", "out of RAM", "zero length", "next out of range",
                                      "head out of range", "avail index jump", "nested indirect",
                                      "indirect with next", "indirect length", "readable after writable",
                                      "too many buffers"};

static void make_bad(struct test_dev *d, enum bad kind) {
    struct fake_vm *vm = d->vm;
    uint64_t buf = fake_alloc(vm, 64, 8), ind = fake_alloc(vm, 16 * 4, 16);
    uint16_t *avail = fake_ptr(vm, d->q[0].avail);
    switch (kind) {
    case LOOP:
        tvq_desc(d, 0, 0, buf, 8, VIRTQ_DESC_F_NEXT, 1);
        tvq_desc(d, 0, 1, buf, 8, VIRTQ_DESC_F_NEXT, 0);
        break;
    case OUT_OF_RAM: tvq_desc(d, 0, 0, RAM - 4, 8, VIRTQ_DESC_F_WRITE, 0); break;
    case ZERO_LEN: tvq_desc(d, 0, 0, buf, 0, VIRTQ_DESC_F_WRITE, 0); break;
    case NEXT_OUT_OF_RANGE: tvq_desc(d, 0, 0, buf, 8, VIRTQ_DESC_F_NEXT, 200); break;
    case HEAD_OUT_OF_RANGE: tvq_publish(d, 0, 999); return;
    case AVAIL_JUMP:
        avail[1] = (uint16_t)(d->q[0].avail_idx + 100);
        return;
    case NESTED_INDIRECT:
        tvq_desc(d, 0, 0, ind, 32, VIRTQ_DESC_F_INDIRECT, 0);
        memcpy(fake_ptr(vm, ind), &(uint64_t){ind}, 8);
        memcpy(fake_ptr(vm, ind + 8), &(uint32_t){16}, 4);
        memcpy(fake_ptr(vm, ind + 12), &(uint16_t){VIRTQ_DESC_F_INDIRECT}, 2);
        break;
    case INDIRECT_WITH_NEXT: tvq_desc(d, 0, 0, ind, 32, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1); break;
    case INDIRECT_BAD_LEN: tvq_desc(d, 0, 0, ind, 20, VIRTQ_DESC_F_INDIRECT, 0); break;
    case READ_AFTER_WRITE:
        tvq_desc(d, 0, 0, buf, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
        tvq_desc(d, 0, 1, buf, 8, 0, 0);
        break;
    case TOO_LONG: { /* an indirect table of 128 + a direct one: more than VIRTQ_MAX_SEGMENTS */
        uint64_t big = fake_alloc(vm, 16 * VIRTQ_MAX_SEGMENTS, 16);
        for (unsigned i = 0; i < VIRTQ_MAX_SEGMENTS; i++) {
            uint8_t *p = fake_ptr(vm, big + 16 * i);
            memcpy(p, &buf, 8);
            memcpy(p + 8, &(uint32_t){8}, 4);
            uint16_t flags = i + 1 < VIRTQ_MAX_SEGMENTS ? VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE : VIRTQ_DESC_F_WRITE;
            memcpy(p + 12, &flags, 2);
            memcpy(p + 14, &(uint16_t){(uint16_t)(i + 1)}, 2);
        }
        tvq_desc(d, 0, 0, big, 16 * VIRTQ_MAX_SEGMENTS, VIRTQ_DESC_F_INDIRECT, 0);
        /* that one is fine; make the table one longer by chaining a direct buffer is not
         * possible (INDIRECT forbids NEXT), so overflow with a bigger table instead */
        tvq_desc(d, 0, 0, big, 16 * (VIRTQ_MAX_SEGMENTS + 1), VIRTQ_DESC_F_INDIRECT, 0);
        break;
    }
    default: break;
    }
    tvq_publish(d, 0, 0);
}

/* The device's complaints go to stderr; keep them out of the test report. */
static void quiet(void) {
    int fd = open("/dev/null", O_WRONLY);
    dup2(fd, 2);
    close(fd);
}

TEST(malformed_chains_fail_the_device_and_nothing_else) {
    quiet();
    for (int kind = 0; kind < NBAD; kind++) {
        struct fake_vm vm;
        fake_vm_init(&vm, RAM);
        struct test_dev d;
        tdev_init(&d, &vm, &virtio_rng_ops, NULL, 1ull << VIRTIO_F_INDIRECT_DESC, 1, 8);
        make_bad(&d, (enum bad)kind);
        int irqs = vm.irqs;
        tvq_kick(&d, 0);
        uint32_t id, len;
        CHECK_MSG(status(&d) & NEEDS_RESET, "%s: device not failed", bad_names[kind]);
        CHECK_MSG(!tvq_used(&d, 0, &id, &len), "%s: a used element appeared", bad_names[kind]);
        CHECK_MSG(vm.irqs > irqs && (tdev_read(&d, 0x060) & VIRTIO_ISR_CONFIG), "%s: no config interrupt",
                  bad_names[kind]);
        /* A failed device ignores further kicks; a reset brings it back. */
        tvq_kick(&d, 0);
        tdev_write(&d, 0x070, 0);
        CHECK_EQ(status(&d), 0);
        tdev_destroy(&d);
        fake_vm_destroy(&vm);
    }
}

TEST(queue_rings_outside_memory_are_refused_at_ready) {
    quiet();
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    struct test_dev d;
    tdev_init(&d, &vm, &virtio_rng_ops, NULL, 0, 0, 8);
    tdev_write(&d, 0x030, 0);
    tdev_write(&d, 0x038, 8);
    tdev_write(&d, 0x080, RAM - 16); /* the descriptor table runs off the end */
    tdev_write(&d, 0x090, 0x2000);
    tdev_write(&d, 0x0a0, 0x3000);
    tdev_write(&d, 0x044, 1);
    CHECK_EQ(tdev_read(&d, 0x044), 0);
    CHECK(status(&d) & NEEDS_RESET);
    tdev_destroy(&d);
    fake_vm_destroy(&vm);
}
