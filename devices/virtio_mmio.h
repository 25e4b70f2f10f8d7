/* virtio-mmio transport, version 2 (virtio 1.2 §4.2): one register page per device, its
 * QueueNotify register backed by one doorbell per queue (bell packets on the loop). */
#ifndef BELLHOP_DEVICES_VIRTIO_MMIO_H
#define BELLHOP_DEVICES_VIRTIO_MMIO_H

#include "devices/virtio.h"

#define VIRTIO_MMIO_SIZE 0x1000u

struct virtio_mmio;
extern const struct io_ops virtio_mmio_ops;

/* The device `ops` made from `params` (virtio_device_ops.create) in the transport's
 * virtio_dev, its registers at guest-physical `base` (VIRTIO_MMIO_SIZE bytes) and its
 * interrupt on IOAPIC pin `irq`, where the machine placed it (and which the machine describes
 * to the guest, and traps [base, base + VIRTIO_MMIO_SIZE) to virtio_mmio_ops); its
 * QueueNotify a doorbell per queue on env's loop
 * (async_set_guest_doorbell). Without a guest (device tests), notifications come as register
 * writes. NULL with a one-line reason in err on failure. */
struct virtio_mmio *virtio_mmio_create(struct vm_env *env, const struct virtio_device_ops *ops,
                                       const void *params, uint64_t base, uint32_t irq, char *err, size_t errlen);
struct virtio_dev *virtio_mmio_dev(struct virtio_mmio *m);
void virtio_mmio_destroy(struct virtio_mmio *m);

#endif
