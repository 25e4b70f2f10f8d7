/* Register access sequences on a virtio-mmio device (rng) over fuzzed guest memory: each
 * step is {offset, size, value, read?, kick?}; the transport must never touch memory outside
 * the guest's and the device must stay consistent. */
#include "devices/virtio_rng.h"
#include "tests/fuzz/fuzz.h"
#include "tests/lib/virtq_driver.h"

#define RAM 0x10000u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    char err[200];
    struct virtio_mmio *m = virtio_mmio_create(&vm.env, &virtio_rng_ops, NULL, 0xd0000000, 5, err, sizeof err);
    if (!m) abort();
    struct virtio_dev *vd = virtio_mmio_dev(m);
    struct cursor c = {data, size};
    memcpy(vm.env.mem.host, data, size < RAM ? size : RAM); /* rings wherever the driver points */
    for (unsigned steps = 0; c.n >= 8 && steps < 256; steps++) {
        uint64_t off = take(&c, 2) & 0x1ff;
        uint8_t size_sel = (uint8_t)take(&c, 1);
        uint8_t sz = (uint8_t)(1u << (size_sel & 3));
        uint32_t value = (uint32_t)take(&c, 4);
        if (size_sel & 0x10) (void)virtio_mmio_ops.read(m, off, sz);
        else if (off != 0x50) virtio_mmio_ops.write(m, off, sz, value); /* 0x50 posts to a loop */
        if (size_sel & 0x20) vd->ops->queue_notify(vd, 0);
    }
    virtio_mmio_destroy(m);
    fake_vm_destroy(&vm);
    return 0;
}
