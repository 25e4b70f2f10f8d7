/* virtio-mmio transport, version 2 (virtio 1.2 §4.2): one register page per device, its
 * QueueNotify register backed by one doorbell per queue (bell packets on the loop). */
#ifndef BELLHOP_DEVICES_VIRTIO_MMIO_H
#define BELLHOP_DEVICES_VIRTIO_MMIO_H

#include "devices/virtio.h"
#include "firmware/fdt.h"

#define VIRTIO_MMIO_SIZE 0x1000u
/* Where the devices go: windows a page apart from here, and IOAPIC pins from here (4 is
 * COM1's), each described in the guest's device tree. */
#define VIRTIO_MMIO_WINDOWS 0xd0000000u
#define VIRTIO_MMIO_IRQ_BASE 5u

struct virtio_mmio;
extern const struct io_ops virtio_mmio_ops;

/* The device `ops` made from `params` (virtio_device_ops.create) in the transport's
 * virtio_dev, in the next window and pin, described in fdt (its node added); its QueueNotify
 * a doorbell per queue on env's loop (async_set_guest_doorbell). Without a guest (device
 * tests), notifications come as register writes. NULL with a one-line reason in err on
 * failure. */
struct virtio_mmio *virtio_mmio_create(struct vm_env *env, const struct virtio_device_ops *ops,
                                       const void *params, struct fdt_machine *fdt, char *err, size_t errlen);
/* Its register window: the caller traps [base, base + VIRTIO_MMIO_SIZE) to virtio_mmio_ops. */
uint64_t virtio_mmio_base(const struct virtio_mmio *m);
struct virtio_dev *virtio_mmio_dev(struct virtio_mmio *m);
void virtio_mmio_destroy(struct virtio_mmio *m);

#endif
