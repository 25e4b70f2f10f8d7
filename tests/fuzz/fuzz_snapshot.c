/* What a snapshot's files feed bellhop, from anyone: byte 0 picks the reader, the rest is its
 * input. 0: a whole state file; 1: sections, framed with a valid header and CRC so that the
 * section parser is reached; 2: a vCPU's saved records; 3-7: a device's saved state (16550,
 * RTC, i8042, virtio-rng on virtio-mmio, on virtio-pci), which when taken must leave a device
 * that serves its registers and queues without touching memory outside the guest's. */
#include <lib/async-loop/default.h>
#include <lib/async-loop/loop.h>
#include <lzma.h>

#include "devices/i8042.h"
#include "devices/pci.h"
#include "devices/rtc_mc146818.h"
#include "devices/uart16550.h"
#include "devices/virtio_mmio.h"
#include "devices/virtio_pci.h"
#include "devices/virtio_rng.h"
#include "tests/fuzz/fuzz.h"
#include "tests/lib/virtq_driver.h"
#include "vmm/hv/hv.h"
#include "vmm/machine/snapshot_file.h"

#define RAM 0x10000u

static void framed(const uint8_t *data, size_t size) {
    if (size > (1u << 20)) return;
    uint8_t *buf = malloc(16 + size + 8);
    memcpy(buf, SNAPSHOT_MAGIC, 8);
    memset(buf + 8, 0, 8);
    buf[8] = SNAPSHOT_MAJOR;
    memcpy(buf + 16, data, size);
    uint64_t crc = lzma_crc64(buf, 16 + size, 0);
    for (int i = 0; i < 8; i++) buf[16 + size + i] = (uint8_t)(crc >> 8 * i);
    struct snapshot s;
    char err[200];
    if (snapshot_parse(buf, 16 + size + 8, &s, err, sizeof err) == 0) {
        /* what the parser gave must lie inside the buffer */
        for (unsigned i = 0; i < s.ndevices; i++)
            if (s.devices[i].state.data < buf || s.devices[i].state.data + s.devices[i].state.len > buf + 16 + size) abort();
        if (strlen(s.config_json) >= size) abort();
    }
    free(buf);
}

static void device(uint8_t which, const uint8_t *data, size_t size) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    async_loop_t *loop;
    if (async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &loop) != ZX_OK) abort();
    vm.env.loop = async_loop_get_dispatcher(loop);
    memset(vm.env.mem.host, 0xa5, RAM); /* rings wherever the state points */
    char err[200];
    struct pci_bus bus;
    pci_bus_init(&bus);
    switch (which) {
    case 3: {
        struct uart16550 *u = uart16550_create(&vm.env, 4, -1, -1);
        if (uart16550_ops.restore(u, data, size, err, sizeof err) == 0)
            for (unsigned r = 0; r < 8; r++) (void)uart16550_ops.read(u, r, 1);
        uart16550_destroy(u);
        break;
    }
    case 4: {
        struct rtc_mc146818 *r = rtc_mc146818_create();
        if (rtc_mc146818_ops.restore(r, data, size, err, sizeof err) == 0) (void)rtc_mc146818_ops.read(r, 1, 1);
        rtc_mc146818_destroy(r);
        break;
    }
    case 5: {
        struct i8042 *k = i8042_create(&vm.env);
        if (i8042_ops.restore(k, data, size, err, sizeof err) == 0)
            for (unsigned i = 0; i < 20; i++) (void)i8042_ops.read(k, 0, 1);
        i8042_destroy(k);
        break;
    }
    case 6: {
        struct virtio_mmio *m = virtio_mmio_create(&vm.env, &virtio_rng_ops, NULL, 0xd0000000, 5, err, sizeof err);
        if (!m) abort();
        if (virtio_mmio_ops.restore(m, data, size, err, sizeof err) == 0) {
            struct virtio_dev *vd = virtio_mmio_dev(m);
            for (unsigned off = 0; off < 0x100; off += 4) (void)virtio_mmio_ops.read(m, off, 4);
            vd->ops->queue_notify(vd, 0);
        }
        virtio_mmio_destroy(m);
        break;
    }
    case 7: {
        struct virtio_pci *p = virtio_pci_create(&vm.env, &virtio_rng_ops, NULL, &bus, err, sizeof err);
        if (!p) abort();
        if (virtio_pci_ops.restore(p, data, size, err, sizeof err) == 0) {
            struct virtio_dev *vd = virtio_pci_dev(p);
            for (unsigned off = 0; off < 0x40; off += 4) (void)virtio_pci_ops.read(p, off, 4);
            vd->ops->queue_notify(vd, 0);
        }
        async_loop_run_until_idle(loop);
        async_loop_destroy(loop); /* first: the device's INTx wait is on it */
        loop = NULL;
        virtio_pci_destroy(p);
        break;
    }
    }
    if (loop) async_loop_destroy(loop);
    pci_bus_destroy(&bus);
    fake_vm_destroy(&vm);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    uint8_t which = data[0] % 8;
    data++, size--;
    char err[200];
    if (which == 0) {
        struct snapshot s;
        (void)snapshot_parse(data, size, &s, err, sizeof err);
    } else if (which == 1) {
        framed(data, size);
    } else if (which == 2) {
        const uint8_t *found[VCPU_STATE_RECORDS];
        uint32_t lens[VCPU_STATE_RECORDS];
        if (vcpu_state_parse(data, size, found, lens, err, sizeof err) == 0)
            for (unsigned i = 0; i < VCPU_STATE_RECORDS; i++)
                if (found[i] && (found[i] < data || found[i] + lens[i] > data + size)) abort();
    } else {
        device(which, data, size);
    }
    return 0;
}
