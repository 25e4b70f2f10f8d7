/* Snapshot state files and device states without KVM: a file made by the writer parses back;
 * every kind of bad file (another format's major or a newer minor, another architecture, a
 * flipped bit, a cut, sections out of order) is refused with its reason; device states go
 * round (a virtio-rng mid-request, a 16550) and hostile ones are refused field by field. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <lib/async-loop/default.h>
#include <lib/async-loop/loop.h>
#include <lzma.h>
#include <sys/socket.h>

#include "devices/uart16550.h"
#include "devices/virtio_mmio.h"
#include "devices/virtio_net.h"
#include "devices/virtio_rng.h"
#include "tests/lib/check.h"
#include "tests/lib/virtq_driver.h"
#include "vmm/hv/hv.h"
#include "vmm/machine/snapshot_file.h"

static void make_file(struct snapshot_writer *w) {
    snapshot_writer_init(w);
    uint8_t head[16] = {0};
    uint64_t mem = 128u << 20;
    memcpy(head, &mem, 8);
    static const char json[] = "{\"machine-config\": {}}";
    snapshot_add(w, SNAP_MACHINE, 0, head, sizeof head, json, sizeof json);
    snapshot_add(w, SNAP_GUEST, 0, NULL, 0, "guest", 5);
    snapshot_add(w, SNAP_VCPU, 0, NULL, 0, "cpu0", 4);
    snapshot_add(w, SNAP_VCPU, 1, NULL, 0, "cpu1", 4);
    snapshot_add(w, SNAP_DEVICE, 0, "uart16550", 10, "state", 5);
    CHECK_EQ(snapshot_finish(w), 0);
}

static void fix_crc(struct snapshot_writer *w) {
    uint64_t crc = lzma_crc64(w->buf, w->len - 8, 0);
    for (int i = 0; i < 8; i++) w->buf[w->len - 8 + i] = (uint8_t)(crc >> 8 * i);
}

static const char *parse_error(const uint8_t *buf, size_t len) {
    static char err[200];
    struct snapshot s;
    return snapshot_parse(buf, len, &s, err, sizeof err) == 0 ? "" : err;
}

TEST(a_written_file_parses_back) {
    struct snapshot_writer w;
    make_file(&w);
    struct snapshot s;
    char err[200];
    CHECK_EQ(snapshot_parse(w.buf, w.len, &s, err, sizeof err), 0);
    CHECK_EQ(s.major, SNAPSHOT_MAJOR);
    CHECK_EQ(s.mem_size, 128u << 20);
    CHECK_STR_EQ(s.config_json, "{\"machine-config\": {}}");
    CHECK_EQ(s.guest.len, 5);
    CHECK_EQ(s.nvcpus, 2);
    CHECK(memcmp(s.vcpus[1].data, "cpu1", 4) == 0);
    CHECK_EQ(s.ndevices, 1);
    CHECK_STR_EQ(s.devices[0].name, "uart16550");
    CHECK_EQ(s.devices[0].state.len, 5);
    snapshot_writer_free(&w);
}

TEST(versions_architectures_and_damage_are_refused) {
    struct snapshot_writer w;
    make_file(&w);
    w.buf[8] = SNAPSHOT_MAJOR + 1; /* major 2 */
    fix_crc(&w);
    CHECK(strstr(parse_error(w.buf, w.len), "snapshot format 2.0.0; this bellhop reads 1.0.0 to 1.1.x"));
    w.buf[8] = SNAPSHOT_MAJOR, w.buf[10] = SNAPSHOT_MINOR + 1; /* a newer minor */
    fix_crc(&w);
    CHECK(strstr(parse_error(w.buf, w.len), "snapshot format 1.2.0"));
    w.buf[10] = SNAPSHOT_MINOR, w.buf[12] = 7; /* a newer patch reads */
    fix_crc(&w);
    CHECK_STR_EQ(parse_error(w.buf, w.len), "");
    w.buf[6] = 0xaa; /* another architecture's magic */
    CHECK(strstr(parse_error(w.buf, w.len), "another architecture"));
    w.buf[6] = 0x86;
    for (size_t bit = 0; bit < w.len * 8; bit += 37) { /* any flipped bit */
        w.buf[bit / 8] ^= (uint8_t)(1u << bit % 8);
        CHECK_MSG(strcmp(parse_error(w.buf, w.len), "") != 0, "bit %zu flipped went unseen", bit);
        w.buf[bit / 8] ^= (uint8_t)(1u << bit % 8);
    }
    for (size_t cut = 0; cut < w.len; cut += 7) CHECK(strcmp(parse_error(w.buf, cut), "") != 0);
    CHECK(strstr(parse_error((const uint8_t *)"hello, world, not a snapshot", 28), "not a bellhop snapshot"));
    snapshot_writer_free(&w);
}

/* A machine's every vCPU (32) fits a file, numbered as files of 2 were; one past is refused. */
TEST(a_file_holds_32_vcpus_and_refuses_a_33rd) {
    struct snapshot_writer w;
    snapshot_writer_init(&w);
    uint8_t head[16] = {0};
    uint64_t mem = 4096;
    memcpy(head, &mem, 8);
    snapshot_add(&w, SNAP_MACHINE, 0, head, sizeof head, "{}", 3);
    snapshot_add(&w, SNAP_GUEST, 0, NULL, 0, "guest", 5);
    for (uint32_t i = 0; i < SNAPSHOT_MAX_VCPUS; i++) snapshot_add(&w, SNAP_VCPU, i, NULL, 0, &i, sizeof i);
    CHECK_EQ(snapshot_finish(&w), 0);
    struct snapshot s;
    char err[200];
    CHECK_EQ(snapshot_parse(w.buf, w.len, &s, err, sizeof err), 0);
    CHECK_EQ(s.nvcpus, 32);
    CHECK(s.vcpus[31].len == 4 && memcmp(s.vcpus[31].data, &(uint32_t){31}, 4) == 0);
    w.len -= 8; /* the CRC: one section more, then a new one */
    snapshot_add(&w, SNAP_VCPU, SNAPSHOT_MAX_VCPUS, NULL, 0, "x", 1);
    CHECK_EQ(snapshot_finish(&w), 0);
    CHECK(strstr(parse_error(w.buf, w.len), "vCPU 32: more than bellhop runs"));
    snapshot_writer_free(&w);
}

TEST(sections_that_lie_are_refused) {
    struct snapshot_writer w;
    snapshot_writer_init(&w);
    snapshot_add(&w, SNAP_VCPU, 1, NULL, 0, "x", 1); /* vCPU 1 before vCPU 0 */
    snapshot_finish(&w);
    CHECK(strstr(parse_error(w.buf, w.len), "vCPU 1 out of order"));
    snapshot_writer_free(&w);
    snapshot_writer_init(&w);
    snapshot_add(&w, 99, 0, NULL, 0, "x", 1);
    snapshot_finish(&w);
    CHECK(strstr(parse_error(w.buf, w.len), "unknown section kind 99"));
    snapshot_writer_free(&w);
    snapshot_writer_init(&w);
    snapshot_add(&w, SNAP_GUEST, 0, NULL, 0, "x", 1);
    snapshot_finish(&w);
    w.buf[16 + 8] = 0xff; /* its length, far past the end */
    fix_crc(&w);
    CHECK(strstr(parse_error(w.buf, w.len), "runs past the end"));
    snapshot_writer_free(&w);
    snapshot_writer_init(&w);
    uint8_t head[16] = {0};
    head[0] = 1; /* a memory size that is not whole pages */
    snapshot_add(&w, SNAP_MACHINE, 0, head, sizeof head, "{}", 3);
    snapshot_finish(&w);
    CHECK(strstr(parse_error(w.buf, w.len), "memory size or flags"));
    snapshot_writer_free(&w);
}

TEST(vcpu_states_are_checked_record_by_record) {
    const uint8_t *found[VCPU_STATE_RECORDS];
    uint32_t lens[VCPU_STATE_RECORDS];
    char err[200];
    uint8_t rec[8 + sizeof(struct kvm_mp_state)] = {1, 0, 0, 0, sizeof(struct kvm_mp_state)};
    CHECK_EQ(vcpu_state_parse(rec, sizeof rec, found, lens, err, sizeof err), -1);
    CHECK(strstr(err, "no registers record"));
    rec[4] = 3; /* a short MP state */
    CHECK_EQ(vcpu_state_parse(rec, sizeof rec, found, lens, err, sizeof err), -1);
    CHECK(strstr(err, "the MP state record is 3 bytes"));
    rec[0] = 77;
    CHECK_EQ(vcpu_state_parse(rec, sizeof rec, found, lens, err, sizeof err), -1);
    CHECK(strstr(err, "unknown record 77"));
    rec[0] = 1, rec[4] = 200; /* past the end */
    CHECK_EQ(vcpu_state_parse(rec, sizeof rec, found, lens, err, sizeof err), -1);
    CHECK(strstr(err, "runs past its end"));
}

TEST(a_virtio_device_comes_back_mid_request_and_hostile_states_are_refused) {
    struct fake_vm vm;
    fake_vm_init(&vm, 1 << 20);
    struct test_dev d;
    tdev_init(&d, &vm, &virtio_rng_ops, NULL, 0, 1, 8);
    uint64_t buf = fake_alloc(&vm, 16, 16);
    tvq_add(&d, 0, 0, &(struct tbuf){buf, 16, true}, 1); /* made available, not yet served */
    uint8_t state[4096];
    size_t n = virtio_mmio_ops.save(d.mmio, state, sizeof state);
    CHECK(n > 0);
    CHECK_EQ(virtio_mmio_ops.save(d.mmio, state, 8), 0); /* does not fit: 0 */
    /* A fresh device with the same parameters takes the state and serves the request. */
    struct test_dev e = {.vm = &vm};
    char err[200];
    e.mmio = virtio_mmio_create(&vm.env, &virtio_rng_ops, NULL, 0xd0000000, 5, err, sizeof err);
    CHECK(e.mmio != NULL);
    CHECK_EQ(virtio_mmio_ops.restore(e.mmio, state, n, err, sizeof err), 0);
    memcpy(e.q, d.q, sizeof e.q);
    CHECK_EQ(tdev_read(&e, 0x070), tdev_read(&d, 0x070));
    struct virtio_dev *vd = virtio_mmio_dev(e.mmio);
    vd->ops->queue_notify(vd, 0);
    uint32_t id, len;
    CHECK(tvq_used(&e, 0, &id, &len));
    CHECK_EQ(len, 16);
    /* Hostile: a ring outside guest memory, a queue size past the device's, another device. */
    uint8_t bad[4096];
    memcpy(bad, state, n);
    uint64_t far = 1ull << 40;
    memcpy(bad + 12 + 24 + 8 + 8 + 8 + 4 + 4 + 8, &far, 8); /* queue 0's descriptor table */
    CHECK_EQ(virtio_mmio_ops.restore(e.mmio, bad, n, err, sizeof err), -1);
    CHECK(strstr(err, "saved queue 0 is not a valid queue"));
    memcpy(bad, state, n);
    memcpy(bad + 12, "virtio-blk", 11);
    CHECK_EQ(virtio_mmio_ops.restore(e.mmio, bad, n, err, sizeof err), -1);
    CHECK(strstr(err, "the snapshot has virtio-blk where this machine has virtio-rng"));
    CHECK_EQ(virtio_mmio_ops.restore(e.mmio, state, n - 1, err, sizeof err), -1);
    CHECK_EQ(virtio_mmio_ops.restore(e.mmio, state, 5, err, sizeof err), -1);
    virtio_mmio_destroy(e.mmio);
    tdev_destroy(&d);
    fake_vm_destroy(&vm);
}

TEST(a_uart_comes_back_and_its_fifo_is_checked) {
    struct fake_vm vm;
    fake_vm_init(&vm, 1 << 16);
    int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
    struct uart16550 *u = uart16550_create(&vm.env, 4, -1, out), *v = uart16550_create(&vm.env, 4, -1, out);
    uart16550_ops.write(u, 3, 1, 0x83); /* LCR with the divisor latch */
    uart16550_ops.write(u, 0, 1, 0x0c);
    uart16550_ops.write(u, 3, 1, 0x03);
    uart16550_ops.write(u, 7, 1, 0x5a); /* scratch */
    uint8_t state[512];
    size_t n = uart16550_ops.save(u, state, sizeof state);
    char err[200];
    CHECK_EQ(uart16550_ops.restore(v, state, n, err, sizeof err), 0);
    CHECK_EQ(uart16550_ops.read(v, 7, 1), 0x5a);
    CHECK_EQ(uart16550_ops.read(v, 3, 1), 0x03);
    uart16550_ops.write(v, 3, 1, 0x83);
    CHECK_EQ(uart16550_ops.read(v, 0, 1), 0x0c);
    state[n - 1] = 0xff; /* rx_count far past the FIFO */
    CHECK_EQ(uart16550_ops.restore(v, state, n, err, sizeof err), -1);
    CHECK(strstr(err, "out of range"));
    CHECK_EQ(uart16550_ops.restore(v, state, n + 1, err, sizeof err), -1);
    uart16550_destroy(u);
    uart16550_destroy(v);
    close(out);
    fake_vm_destroy(&vm);
}

TEST(a_receive_buffer_virtio_net_held_is_taken_again_after_a_restore) {
    struct fake_vm vm;
    fake_vm_init(&vm, 1 << 20);
    async_loop_t *loop;
    int a[2], b[2];
    CHECK_EQ(async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &loop), ZX_OK);
    CHECK_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, a), 0);
    CHECK_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, b), 0);
    vm.env.loop = async_loop_get_dispatcher(loop);
    struct test_dev d;
    tdev_init(&d, &vm, &virtio_net_ops, &(struct virtio_net_params){.fd = a[0], .name = "a"}, 0, 2, 8);
    uint64_t buf1 = fake_alloc(&vm, 2048, 16), buf2 = fake_alloc(&vm, 2048, 16);
    tvq_add(&d, 0, 0, &(struct tbuf){buf1, 2048, true}, 1);
    tvq_add(&d, 0, 1, &(struct tbuf){buf2, 2048, true}, 1);
    struct virtio_dev *vd = virtio_mmio_dev(d.mmio);
    static const uint8_t frame[12 + 60] = {[12] = 0xff};
    CHECK_EQ(send(a[1], frame, sizeof frame, 0), (ssize_t)sizeof frame);
    vd->ops->queue_notify(vd, 0);
    async_loop_run_until_idle(loop); /* the frame fills the first buffer; the second is held for the next */
    uint32_t id, len;
    CHECK(tvq_used(&d, 0, &id, &len));
    CHECK_EQ(len, sizeof frame);
    uint8_t state[4096];
    size_t n = virtio_mmio_ops.save(d.mmio, state, sizeof state);
    CHECK(n > 0);
    struct test_dev e = {.vm = &vm};
    char err[200];
    e.mmio = virtio_mmio_create(&vm.env, &virtio_net_ops, &(struct virtio_net_params){.fd = b[0], .name = "b"},
                                0xd0000000, 5, err, sizeof err);
    CHECK(e.mmio != NULL);
    CHECK_EQ(virtio_mmio_ops.restore(e.mmio, state, n, err, sizeof err), 0);
    memcpy(e.q, d.q, sizeof e.q);
    CHECK_EQ(send(b[1], frame, sizeof frame, 0), (ssize_t)sizeof frame);
    struct virtio_dev *ve = virtio_mmio_dev(e.mmio);
    ve->ops->queue_notify(ve, 0);
    async_loop_run_until_idle(loop); /* the restored device takes the held buffer again and fills it */
    CHECK(tvq_used(&e, 0, &id, &len));
    CHECK_EQ(id, 1);
    CHECK_EQ(len, sizeof frame);
    async_loop_destroy(loop);
    virtio_mmio_destroy(e.mmio);
    tdev_destroy(&d);
    close(a[1]), close(b[1]);
    fake_vm_destroy(&vm);
}
