/* Register access sequences on a virtio-pci device (blk when byte 0 is odd, else rng): the
 * BAR's common configuration, ISR, device configuration and MSI-X table, configuration
 * space through conf1 (MSI-X enable, mask-all), and queue notifications, over guest RAM the
 * fuzzer also writes. Nothing outside guest RAM may be touched; INTx resamples run on a real
 * async loop. */
#include <lib/async-loop/default.h>
#include <lib/async-loop/loop.h>
#include <stdlib.h>
#include <unistd.h>

#include "devices/pci.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_pci.h"
#include "devices/virtio_rng.h"
#include "tests/fuzz/fuzz.h"
#include "tests/lib/virtq_driver.h"

#define RAM 0x10000u
#define BAR0 VIRTIO_PCI_WINDOW /* the first slot's */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct cursor c = {data, size};
    bool blk = take(&c, 1) & 1;
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    async_loop_t *loop;
    if (async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &loop) != ZX_OK) abort();
    vm.env.loop = async_loop_get_dispatcher(loop);
    char err[200];
    struct pci_bus bus;
    pci_bus_init(&bus);
    struct virtio_pci *p = virtio_pci_create(&vm.env, blk ? &virtio_blk_ops : &virtio_rng_ops,
                                             blk ? (const void *)fuzz_disk() : NULL, &bus, err, sizeof err);
    if (!p) abort();
    struct virtio_dev *vd = virtio_pci_dev(p);
    /* A count of steps of 8 bytes: {op, offset (2), value (4), extra}; the rest is guest RAM. */
    size_t nsteps = (size_t)take(&c, 1) % 128;
    if (nsteps > c.n / 8) nsteps = c.n / 8;
    struct cursor steps = {c.p, nsteps * 8};
    c.p += nsteps * 8;
    c.n -= nsteps * 8;
    memcpy(vm.env.mem.host, c.p, c.n < RAM ? c.n : RAM);
    while (steps.n >= 8) {
        uint8_t op = (uint8_t)take(&steps, 1);
        uint64_t off = take(&steps, 2);
        uint32_t value = (uint32_t)take(&steps, 4);
        uint8_t extra = (uint8_t)take(&steps, 1);
        uint8_t sz = (uint8_t)(1u << (op & 3));
        switch ((op >> 2) & 3) {
        case 0: /* the BAR's register pages (the notify page is the bell trap's) */
            off %= VIRTIO_PCI_BAR_SIZE;
            if (off >= VIRTIO_PCI_NOTIFY_OFFSET && off < VIRTIO_PCI_NOTIFY_OFFSET + 0x1000) break;
            if (op & 0x10) (void)virtio_pci_ops.read(p, off, sz);
            else virtio_pci_ops.write(p, off, sz, value);
            break;
        case 1: /* configuration space: conf1 address, then data */
            pci_conf1_ops.write(&bus, 0, 4, 0x80000000u | 1u << 11 | (off & 0xfc));
            if (op & 0x10) (void)pci_conf1_ops.read(&bus, 4 + (off & 3), sz > 4 ? 4 : sz);
            else pci_conf1_ops.write(&bus, 4 + (off & 3), sz > 4 ? 4 : sz, value);
            break;
        case 2: /* a queue notification, as the bell trap would deliver it */
            virtio_bell(vd, extra % (VIRTIO_MAX_QUEUES + 1), BAR0 + VIRTIO_PCI_NOTIFY_OFFSET + 4u * (extra % 8));
            break;
        case 3: { /* the guest EOIs the INTx line: the resample runs */
            uint64_t one = 1;
            if (vm.resample_fd >= 0 && write(vm.resample_fd, &one, sizeof one) < 0) abort();
            async_loop_run_until_idle(loop);
            break;
        }
        }
    }
    async_loop_run_until_idle(loop);
    async_loop_destroy(loop);
    pci_bus_destroy(&bus);
    virtio_pci_destroy(p);
    fake_vm_destroy(&vm);
    return 0;
}
