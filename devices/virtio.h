/* virtio core (virtio 1.2): split virtqueues and what every device shares, independent of
 * the transport. A device is declared once, as a const ops table (virtio_device_ops); a
 * transport (virtio-mmio, virtio-pci) owns a struct virtio_dev per instance, has the device
 * create its own state in it from the device's parameters, and calls the ops.
 *
 * Threading: queue_notify runs on the async loop's thread; transport register accesses run
 * on vCPU threads. vd->lock guards the transport state and the rings' indices; a device
 * does its I/O without it. A reset bumps vd->generation, so a request popped before it can
 * never be completed into the new rings.
 */
#ifndef BELLHOP_DEVICES_VIRTIO_H
#define BELLHOP_DEVICES_VIRTIO_H

#include <lib/async/task.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/device.h"
#include "devices/rate_limiter.h"

/* The spec's numbers, from the Linux uapi headers, under the names bellhop uses. */
#define VIRTIO_F_INDIRECT_DESC VIRTIO_RING_F_INDIRECT_DESC
#define VIRTIO_F_EVENT_IDX VIRTIO_RING_F_EVENT_IDX
/* VIRTIO_F_VERSION_1 and the VIRTIO_ID_ device types come from the headers as they are. */

#define VIRTIO_STATUS_ACKNOWLEDGE VIRTIO_CONFIG_S_ACKNOWLEDGE
#define VIRTIO_STATUS_DRIVER VIRTIO_CONFIG_S_DRIVER
#define VIRTIO_STATUS_DRIVER_OK VIRTIO_CONFIG_S_DRIVER_OK
#define VIRTIO_STATUS_FEATURES_OK VIRTIO_CONFIG_S_FEATURES_OK
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET VIRTIO_CONFIG_S_NEEDS_RESET
#define VIRTIO_STATUS_FAILED VIRTIO_CONFIG_S_FAILED

/* The ISR's bits (virtio-mmio's InterruptStatus has the same two) */
#define VIRTIO_ISR_QUEUE VIRTIO_MMIO_INT_VRING
#define VIRTIO_ISR_CONFIG VIRTIO_MMIO_INT_CONFIG
#define VIRTIO_CONFIG_IRQ (-1) /* "queue" number of the configuration interrupt */

#define VIRTIO_MAX_QUEUES 4
#define VIRTQ_MAX_SIZE 256
#define VIRTQ_MAX_SEGMENTS 128 /* per request, direct and indirect together */

#define VIRTQ_DESC_F_NEXT VRING_DESC_F_NEXT
#define VIRTQ_DESC_F_WRITE VRING_DESC_F_WRITE
#define VIRTQ_DESC_F_INDIRECT VRING_DESC_F_INDIRECT

struct virtq {
    uint16_t num; /* size the driver chose; 0 until set */
    bool ready;
    uint64_t desc, avail, used;
    uint16_t last_avail; /* next available entry to take */
    uint16_t used_idx;   /* next used entry to fill */
};

struct virtq_buf {
    uint8_t *p;
    uint32_t len;
};

/* One request: its device-readable buffers (out) then its device-writable ones (in). */
struct virtq_req {
    uint16_t head;
    uint32_t generation;
    unsigned nout, nin;
    struct virtq_buf out[VIRTQ_MAX_SEGMENTS], in[VIRTQ_MAX_SEGMENTS];
    uint64_t out_len, in_len;
};

struct virtio_dev;

/* One device's declaration. Hooks marked optional may be NULL. */
struct virtio_device_ops {
    const char *name;
    uint32_t device_id;
    unsigned nqueues;
    uint16_t queue_max;
    /* Optional: makes one instance from its parameters (the device's own struct, such as
     * struct virtio_blk_params; NULL where it has none) in vd, before the guest runs: sets
     * vd->priv, and vd->features, vd->config_size and vd->nqueues where they are not 0 and
     * ops->nqueues. 0, or -1 with a one-line reason in err. */
    int (*create)(struct virtio_dev *vd, const void *params, char *err, size_t errlen);
    /* Optional: releases what create made (the guest and the loop are gone). */
    void (*destroy)(struct virtio_dev *vd);
    /* Optional: copies the configuration space (vd->config_size bytes) into buf. */
    void (*config_read)(struct virtio_dev *vd, uint8_t *buf);
    /* Optional: a driver write into configuration space. */
    void (*config_write)(struct virtio_dev *vd, uint32_t off, uint8_t size, uint64_t value);
    /* The driver made buffers available on queue q (loop thread). */
    void (*queue_notify)(struct virtio_dev *vd, unsigned q);
    /* Optional: the driver set DRIVER_OK (vCPU thread, lock held). */
    void (*driver_ok)(struct virtio_dev *vd);
    /* Optional: the device was reset (vCPU thread, lock held). */
    void (*reset)(struct virtio_dev *vd);
    /* Optional, for a device whose requests outlive the handler that took them: completes
     * every one in flight (loop thread, every vCPU parked), before a snapshot saves anything:
     * the interrupts those completions raise belong in the saved interrupt state. */
    void (*quiesce)(struct virtio_dev *vd);
    /* Optional, for snapshots (devices/virtio_state.c): the device's own state beyond the
     * transport's and the queues', written into buf (returns its length, or 0 when it does not
     * fit) and read back into a new instance (0, or -1 when buf is not a state this device
     * could have saved). A device with none leaves both NULL. */
    size_t (*save)(struct virtio_dev *vd, uint8_t *buf, size_t len);
    int (*restore)(struct virtio_dev *vd, const uint8_t *buf, size_t len);
    /* Its rings are served by another process (vhost-user): the machine makes guest memory
     * shareable, and a snapshot of it is refused (its state is not all here). */
    bool out_of_process;
};

/* An interrupt decided under the device lock and raised once it is dropped, so that the
 * vCPU it wakes (often on this very CPU, preempting us) never finds the lock still held:
 * an eventfd to write, or an IOAPIC pin for the machine's raise_irq; both -1 for none. */
struct virtio_irq {
    int fd, pin;
};
#define VIRTIO_NO_IRQ ((struct virtio_irq){-1, -1})
void virtio_raise(struct virtio_dev *vd, struct virtio_irq irq);

struct virtio_dev {
    const struct virtio_device_ops *ops;
    void *priv; /* the device's own state (its create's) */
    uint64_t features;    /* device-specific bits; the core adds VERSION_1, EVENT_IDX, INDIRECT */
    uint32_t config_size; /* of its configuration space */
    bool features_exact;  /* features are all it offers: the core adds none (vhost-user) */
    bool created;         /* its create ran and succeeded: destroy is owed */
    unsigned nqueues;     /* ops->nqueues, unless create chose (1 to VIRTIO_MAX_QUEUES) */
    struct vm_env *env;
    pthread_mutex_t lock;
    uint64_t driver_features;
    uint8_t status;
    uint32_t isr;
    uint32_t generation;
    struct virtq queues[VIRTIO_MAX_QUEUES];
    /* The transport's interrupt for queue q (or VIRTIO_CONFIG_IRQ), lock held: sets the ISR
     * bits and says what raises the line or the queue's vector, for virtio_raise. */
    struct virtio_irq (*interrupt_locked)(struct virtio_dev *vd, uint32_t isr_bits, int q);
    /* --stats: bell packets and notify-handler time per queue (loop thread) */
    struct handler_stats bells[VIRTIO_MAX_QUEUES];
    /* virtio_notify_again's task per queue (loop thread) */
    struct virtio_again {
        async_task_t task;
        struct virtio_dev *vd;
        unsigned q;
        bool pending;
    } again[VIRTIO_MAX_QUEUES];
};

/* For transports: the instance in vd, made by ops->create from params. 0, or -1 with a
 * one-line reason in err (vd then needs only virtio_dev_destroy). */
int virtio_dev_create(struct virtio_dev *vd, const struct virtio_device_ops *ops, const void *params,
                      struct vm_env *env, char *err, size_t errlen);
/* Destroys the device (ops->destroy), then vd's own state. */
void virtio_dev_destroy(struct virtio_dev *vd);
uint64_t virtio_device_features(const struct virtio_dev *vd);
bool virtio_has_feature(const struct virtio_dev *vd, unsigned bit);
/* What both transports do with the driver's register accesses (lock held). */
void virtio_reset_locked(struct virtio_dev *vd);
void virtio_set_status_locked(struct virtio_dev *vd, uint8_t status);
/* Word `sel` (0 or 1) of the features offered; 0 past them. */
uint32_t virtio_device_features_word(const struct virtio_dev *vd, uint32_t sel);
/* The driver's features, word `sel`: taken only until FEATURES_OK. */
void virtio_driver_features_write_locked(struct virtio_dev *vd, uint32_t sel, uint32_t value);
/* Queue qi's size, or one half of a ring's address (the 64-bit registers come in two): taken
 * only while the queue is not ready; a size above the device's maximum is taken as 0. */
void virtio_queue_size_write_locked(struct virtio_dev *vd, unsigned qi, uint32_t size);
void virtio_queue_addr_write_locked(struct virtio_dev *vd, unsigned qi, uint64_t *addr, bool high, uint32_t half);
/* The driver made queue qi ready: its rings are checked, or the device fails. */
void virtio_queue_enable_locked(struct virtio_dev *vd, unsigned qi);
/* The configuration space at off: a read of size bytes (0 outside it), a write. */
uint64_t virtio_config_read_locked(struct virtio_dev *vd, uint64_t off, uint8_t size);
void virtio_config_write_locked(struct virtio_dev *vd, uint64_t off, uint8_t size, uint64_t value);
/* Checks a queue's rings against guest memory when the driver makes it ready. */
bool virtio_queue_valid(const struct virtio_dev *vd, const struct virtq *q);
/* The device found the driver broke the protocol: log, set DEVICE_NEEDS_RESET, tell the
 * driver with a configuration interrupt, and stop using the device until it is reset. */
void virtio_fail_locked(struct virtio_dev *vd, unsigned q, const char *why);

/* The device changed its configuration space (any thread but with the lock not held): the
 * driver gets a configuration interrupt, once it is running. */
void virtio_config_changed(struct virtio_dev *vd);

/* For snapshots (devices/virtio_state.c; every vCPU parked, on the loop thread): the core's
 * state and the device's, written into buf (its length, 0 when it does not fit); read back
 * into an instance made from the same parameters (0, or -1 with a one-line reason). Once the
 * loop runs again, virtio_restore_kick has the device look at each of its ready queues. */
size_t virtio_dev_save(struct virtio_dev *vd, uint8_t *buf, size_t len);
int virtio_dev_restore(struct virtio_dev *vd, const uint8_t *buf, size_t len, char *err, size_t errlen);
void virtio_restore_kick(struct virtio_dev *vd);

/* A transport got a notification for queue q as a bell packet at addr (loop thread):
 * traced when the VM traces, then passed to the device. */
void virtio_bell(struct virtio_dev *vd, unsigned q, uint64_t addr);
/* For a device that stops serving queue q before it is empty, so that the other devices on
 * the loop get their turn: its queue_notify runs again as a task on the loop (once, however
 * often asked before it runs). False when there is no loop (device tests without one): the
 * device then goes on at once. */
bool virtio_notify_again(struct virtio_dev *vd, unsigned q);

/* For devices (loop thread). virtio_pop: true with a validated request, false when the
 * queue is empty, not ready, or the chain was bad (then the device is failed). */
bool virtio_pop(struct virtio_dev *vd, unsigned q, struct virtq_req *r);
/* Gives the last request popped from q back to its ring, untouched, to be popped again first
 * (a request the device cannot serve yet). generation: the request's; after a reset since
 * (another generation), there is no such ring any more, and nothing is given back. */
void virtio_unpop(struct virtio_dev *vd, unsigned q, uint32_t generation);
/* Returns the request's buffers with `written` bytes written; interrupts the driver when
 * it asked for it (EVENT_IDX) or always without EVENT_IDX. */
void virtio_push(struct virtio_dev *vd, unsigned q, const struct virtq_req *r, uint32_t written);
/* The same for a request kept only as its head and generation (while the kernel works on it).
 * Its in-buffers were marked written when popped (base/guest_mem.h), which is enough: a
 * snapshot completes such requests (quiesce) before it reads and clears the marks. */
void virtio_push_used(struct virtio_dev *vd, unsigned q, uint16_t head, uint32_t generation, uint32_t written);

/* A rate limiter (devices/rate_limiter.h) over some of a device's queues (loop thread). A
 * request is costed once popped: one the limiter cannot pay yet goes back to its ring
 * (virtio_unpop), or waits where the device keeps it, and its queue waits for a task on the
 * loop, timed for when the limiter will pay it, which serves every waiting queue again. No
 * request is dropped or overtaken: the one refused is the first served again. */
struct virtio_throttle {
    struct rate_limiter limiter;
    struct virtio_dev *vd;
    /* What serves a waiting queue again: the device's queue_notify, unless set */
    void (*resume)(struct virtio_dev *vd, unsigned q);
    async_task_t timer;
    bool timer_posted;
    uint32_t waiting; /* queues that wait for the timer, a bit each */
    /* ...in the order they came to wait: the first is served first, and a queue that is not
     * waiting does not pass one that is (a request too large to pass until the bucket is
     * full would otherwise never pass while other queues keep taking) */
    uint8_t line[VIRTIO_MAX_QUEUES];
    unsigned in_line;
    int serving; /* the queue serve_waiting has resumed, -1 for none */
};
/* From c (all zero: no limit), before the loop runs. */
void virtio_throttle_init(struct virtio_throttle *t, struct virtio_dev *vd, const struct rate_limiter_config *c);
/* Whether the throttle limits at all: with this false (a zeroed config) a device skips the
 * rest, one branch per request. */
static inline bool virtio_throttle_limits(const struct virtio_throttle *t) { return t->limiter.limits; }
/* A request of queue q costs bytes and ops: true when the limiter paid it; false when it cannot
 * yet, and q waits for the timer (the caller gives the request back, or keeps it). Without a
 * loop (device tests) q waits for its next notification instead. */
bool virtio_throttle_take(struct virtio_throttle *t, unsigned q, uint64_t bytes, uint64_t ops);
/* A new limit from c, replacing the old (its buckets start full); the waiting queues are served
 * again at once, before this returns, under the new one. */
void virtio_throttle_set(struct virtio_throttle *t, const struct rate_limiter_config *c);
/* The timer canceled, where it is still posted (the device's destroy). */
void virtio_throttle_stop(struct virtio_throttle *t);

/* The one walk over a request's buffers: the part [off, off + len) of its device-readable
 * (out) or device-writable (in) side, piece by piece, each piece within one buffer:
 *     struct virtq_cursor c = virtq_cursor(r, false, off, len);
 *     for (struct virtq_buf piece; virtq_next(&c, &piece);) use(piece.p, piece.len);
 * c.left is what the buffers could not hold. */
struct virtq_cursor {
    const struct virtq_buf *bufs;
    unsigned n, i;
    uint64_t off, left;
};

static inline struct virtq_cursor virtq_cursor(const struct virtq_req *r, bool in, uint64_t off, uint64_t len) {
    return (struct virtq_cursor){.bufs = in ? r->in : r->out, .n = in ? r->nin : r->nout, .off = off, .left = len};
}

static inline bool virtq_next(struct virtq_cursor *c, struct virtq_buf *piece) {
    while (c->i < c->n && c->left) {
        const struct virtq_buf *b = &c->bufs[c->i];
        if (c->off >= b->len) { /* past this buffer: the rest of the offset is into the next */
            c->off -= b->len;
            c->i++;
            continue;
        }
        uint64_t n = b->len - c->off < c->left ? b->len - c->off : c->left;
        *piece = (struct virtq_buf){b->p + c->off, (uint32_t)n};
        c->left -= n;
        c->off += n;
        return true;
    }
    return false;
}

/* Gathers up to len bytes from the request's readable buffers starting at offset off. */
size_t virtq_req_read(const struct virtq_req *r, uint64_t off, void *dst, size_t len);
/* Scatters into the writable buffers starting at offset off; returns bytes written. */
size_t virtq_req_write(const struct virtq_req *r, uint64_t off, const void *src, size_t len);

#endif
