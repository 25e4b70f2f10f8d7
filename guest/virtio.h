/* The tiny guest's virtio-mmio driver: split virtqueues with EVENT_IDX and indirect
 * descriptors, completions waited for with interrupts. */
#ifndef BELLHOP_GUEST_VIRTIO_H
#define BELLHOP_GUEST_VIRTIO_H

#include "guest/lib.h"

#define VQ_SIZE 32 /* also the most requests vdev_post keeps in flight */
#define VQ_MAX_BUFS 8

struct vq {
    unsigned index, num;
    struct vdesc { uint64_t addr; uint32_t len; uint16_t flags, next; } *desc;
    volatile uint16_t *avail; /* flags, idx, ring[num], used_event */
    volatile uint8_t *used;   /* flags, idx, {id, len}[num], avail_event */
    uint16_t avail_idx, last_used;
    uint16_t kicked_idx;      /* avail_idx at the last doorbell (vdev_kick) */
    struct vdesc *indirect;   /* a table per request in flight: VQ_SIZE of VQ_MAX_BUFS */
};

struct vdev {
    uint64_t base;
    unsigned irq;
    uint32_t device_id;
    uint64_t features; /* negotiated */
    struct vq vqs[3];  /* virtio-vsock's rx, tx and event; virtio-balloon's with statistics */
    unsigned nvqs;
    volatile uint32_t isr_seen;
    bool broken; /* it said DEVICE_NEEDS_RESET: requests fail at once */
    /* Called from the device's interrupt, after the ISR bits are taken (interrupts are off:
     * it must not wait): for a queue the device drives, as the balloon's statistics. */
    void (*on_interrupt)(struct vdev *d);
};

struct vbuf {
    void *p;
    uint32_t len;
    bool device_writes;
};

/* Probes and starts the device at base (features: what the driver wants of the offered). */
int vdev_init(struct vdev *d, uint64_t base, unsigned irq, uint64_t want, unsigned nvqs);
/* vdev_init in two steps, for a device whose queues depend on the features negotiated:
 * vdev_negotiate resets it and agrees d->features (ending at FEATURES_OK), vdev_start makes
 * nvqs queues and sets DRIVER_OK. */
int vdev_negotiate(struct vdev *d, uint64_t base, unsigned irq, uint64_t want);
int vdev_start(struct vdev *d, unsigned nvqs);
/* Submits one request and waits (interrupt-driven, timeout) for it; returns the length the
 * device wrote, or -1 on timeout. indirect: put the buffers in an indirect table. */
long vdev_request(struct vdev *d, unsigned q, const struct vbuf *bufs, unsigned n, bool indirect);
uint32_t vdev_config32(struct vdev *d, unsigned off);
/* The same, waiting with interrupts off for the used ring to move (the bench's "flag"). */
long vdev_request_polled(struct vdev *d, unsigned q, const struct vbuf *bufs, unsigned n);
/* Many requests in flight (the disk bench's queue depth): vdev_post makes request `slot`
 * (below the queue's size, one not in flight) available in its own indirect table (a single
 * buffer: in the slot's own descriptor), without a doorbell; vdev_kick rings it for everything posted since (as EVENT_IDX allows); vdev_reap
 * takes the next completion, waiting for it with interrupts if wait: its slot and written
 * length, -2 when there is none and !wait, or -1 on a timeout or a failed device. Not mixed
 * with vdev_request on the same queue. */
bool vdev_post(struct vdev *d, unsigned q, unsigned slot, const struct vbuf *bufs, unsigned n);
void vdev_kick(struct vdev *d, unsigned q);
int vdev_reap(struct vdev *d, unsigned q, uint32_t *len, bool wait);
/* The next completion of a queue fed by vdev_post, if there is one now: its slot and written
 * length, -1 for one that names no slot (a device's mistake), or -2 for none. A driver that waits for interrupts calls it until it answers -2, which asks
 * for an interrupt at the next completion (EVENT_IDX). */
int vdev_poll(struct vdev *d, unsigned q, uint32_t *len);
/* The device said DEVICE_NEEDS_RESET (seen after a configuration interrupt): d->broken. */
bool vdev_failed(struct vdev *d);
/* Just the doorbell write. */
void vdev_notify(struct vdev *d, unsigned q);
uint8_t vdev_status(struct vdev *d);

void *alloc_pages(size_t bytes);

#endif
