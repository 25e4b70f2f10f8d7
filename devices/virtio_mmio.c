/* virtio-mmio version 2. */
#include <lib/async/receiver.h>
#include <lib/async/trap.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zircon/syscalls/hypervisor.h>
#include <lib/container_of.h>

#include "devices/virtio_mmio.h"

#define MAGIC 0x74726976u  /* "virt" */
#define VENDOR 0x4c4c4542u /* "BELL" */

/* Register offsets: <linux/virtio_mmio.h> (via devices/virtio.h). */

struct virtio_mmio;

struct mmio_bell {
    async_guest_bell_trap_t trap;
    struct virtio_mmio *m;
    unsigned queue;
};

struct virtio_mmio {
    struct virtio_dev vd;
    uint64_t base;
    uint32_t irq;
    uint32_t device_features_sel, driver_features_sel, queue_sel;
    struct mmio_bell bells[VIRTIO_MAX_QUEUES];
    async_receiver_t slow_notify; /* QueueNotify writes the doorbells did not take */
};

static void on_bell(async_dispatcher_t *d, async_guest_bell_trap_t *trap, zx_status_t st,
                    const zx_packet_guest_bell_t *bell) {
    (void)d;
    struct mmio_bell *b = container_of(trap, struct mmio_bell, trap);
    if (st == ZX_OK) virtio_bell(&b->m->vd, b->queue, bell->addr);
}

static void on_slow_notify(async_dispatcher_t *d, async_receiver_t *r, zx_status_t st,
                           const zx_packet_user_t *data) {
    (void)d;
    if (st != ZX_OK) return;
    struct virtio_mmio *m = container_of(r, struct virtio_mmio, slow_notify);
    /* the same path as a doorbell's, traced and counted alike */
    virtio_bell(&m->vd, data->u32[0], m->base + VIRTIO_MMIO_QUEUE_NOTIFY);
}

static struct virtio_irq mmio_interrupt_locked(struct virtio_dev *vd, uint32_t bits, int q) {
    (void)q;
    struct virtio_mmio *m = container_of(vd, struct virtio_mmio, vd);
    vd->isr |= bits;
    return (struct virtio_irq){.fd = -1, .pin = (int)m->irq};
}

static uint64_t mmio_read(void *dev, uint64_t off, uint8_t size) {
    struct virtio_mmio *m = dev;
    struct virtio_dev *vd = &m->vd;
    uint64_t v = 0;
    pthread_mutex_lock(&vd->lock);
    if (off >= VIRTIO_MMIO_CONFIG) {
        v = virtio_config_read_locked(vd, off - VIRTIO_MMIO_CONFIG, size);
    } else if (size == 4) {
        struct virtq *q = m->queue_sel < VIRTIO_MAX_QUEUES ? &vd->queues[m->queue_sel] : NULL;
        switch (off) {
        case VIRTIO_MMIO_MAGIC_VALUE: v = MAGIC; break;
        case VIRTIO_MMIO_VERSION: v = 2; break;
        case VIRTIO_MMIO_DEVICE_ID: v = vd->ops->device_id; break;
        case VIRTIO_MMIO_VENDOR_ID: v = VENDOR; break;
        case VIRTIO_MMIO_DEVICE_FEATURES: v = virtio_device_features_word(vd, m->device_features_sel); break;
        case VIRTIO_MMIO_QUEUE_NUM_MAX: v = m->queue_sel < vd->nqueues ? vd->ops->queue_max : 0; break;
        case VIRTIO_MMIO_QUEUE_READY: v = q && q->ready; break;
        case VIRTIO_MMIO_INTERRUPT_STATUS: v = vd->isr; break;
        case VIRTIO_MMIO_STATUS: v = vd->status; break;
        case VIRTIO_MMIO_CONFIG_GENERATION: v = 0; break;
        }
    }
    pthread_mutex_unlock(&vd->lock);
    return v;
}

static void mmio_write(void *dev, uint64_t off, uint8_t size, uint64_t value) {
    struct virtio_mmio *m = dev;
    struct virtio_dev *vd = &m->vd;
    uint32_t v = (uint32_t)value;
    pthread_mutex_lock(&vd->lock);
    if (off >= VIRTIO_MMIO_CONFIG) {
        virtio_config_write_locked(vd, off - VIRTIO_MMIO_CONFIG, size, value);
        pthread_mutex_unlock(&vd->lock);
        return;
    }
    if (size != 4) {
        pthread_mutex_unlock(&vd->lock);
        return;
    }
    unsigned qi = m->queue_sel;
    struct virtq *q = qi < vd->nqueues ? &vd->queues[qi] : NULL;
    switch (off) {
    case VIRTIO_MMIO_DEVICE_FEATURES_SEL: m->device_features_sel = v; break;
    case VIRTIO_MMIO_DRIVER_FEATURES: virtio_driver_features_write_locked(vd, m->driver_features_sel, v); break;
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL: m->driver_features_sel = v; break;
    case VIRTIO_MMIO_QUEUE_SEL: m->queue_sel = v; break;
    case VIRTIO_MMIO_QUEUE_NUM: if (q) virtio_queue_size_write_locked(vd, qi, v); break;
    case VIRTIO_MMIO_QUEUE_READY:
        if (q && v == 0) q->ready = false;
        else if (q) virtio_queue_enable_locked(vd, qi);
        break;
    case VIRTIO_MMIO_QUEUE_NOTIFY: {
        pthread_mutex_unlock(&vd->lock);
        zx_packet_user_t data = {.u32 = {v}};
        async_queue_packet(vd->env->loop, &m->slow_notify, &data);
        return;
    }
    case VIRTIO_MMIO_INTERRUPT_ACK: vd->isr &= ~v; break;
    case VIRTIO_MMIO_STATUS: virtio_set_status_locked(vd, (uint8_t)v); break;
    case VIRTIO_MMIO_QUEUE_DESC_LOW: case VIRTIO_MMIO_QUEUE_DESC_HIGH:
        if (q) virtio_queue_addr_write_locked(vd, qi, &q->desc, off == VIRTIO_MMIO_QUEUE_DESC_HIGH, v);
        break;
    case VIRTIO_MMIO_QUEUE_AVAIL_LOW: case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
        if (q) virtio_queue_addr_write_locked(vd, qi, &q->avail, off == VIRTIO_MMIO_QUEUE_AVAIL_HIGH, v);
        break;
    case VIRTIO_MMIO_QUEUE_USED_LOW: case VIRTIO_MMIO_QUEUE_USED_HIGH:
        if (q) virtio_queue_addr_write_locked(vd, qi, &q->used, off == VIRTIO_MMIO_QUEUE_USED_HIGH, v);
        break;
    }
    pthread_mutex_unlock(&vd->lock);
}

struct mmio_wire {
    uint32_t device_features_sel, driver_features_sel, queue_sel;
};

static size_t mmio_save(void *dev, uint8_t *buf, size_t len) {
    struct virtio_mmio *m = dev;
    pthread_mutex_lock(&m->vd.lock);
    struct mmio_wire w = {m->device_features_sel, m->driver_features_sel, m->queue_sel};
    pthread_mutex_unlock(&m->vd.lock);
    if (DEVICE_SAVE(buf, len, w) == 0) return 0;
    size_t n = virtio_dev_save(&m->vd, buf + sizeof w, len - sizeof w);
    return n ? sizeof w + n : 0;
}

/* The selectors may hold any value the guest wrote: they are used only through range checks. */
static int mmio_restore(void *dev, const uint8_t *buf, size_t len, char *err, size_t errlen) {
    struct virtio_mmio *m = dev;
    struct mmio_wire w;
    if (len < sizeof w) return snprintf(err, errlen, "virtio-mmio: saved state cut short"), -1;
    memcpy(&w, buf, sizeof w);
    if (virtio_dev_restore(&m->vd, buf + sizeof w, len - sizeof w, err, errlen) != 0) return -1;
    pthread_mutex_lock(&m->vd.lock);
    m->device_features_sel = w.device_features_sel, m->driver_features_sel = w.driver_features_sel;
    m->queue_sel = w.queue_sel;
    pthread_mutex_unlock(&m->vd.lock);
    return 0;
}

const struct io_ops virtio_mmio_ops = {.name = "virtio-mmio", .read = mmio_read, .write = mmio_write,
                                       .save = mmio_save, .restore = mmio_restore};

struct virtio_mmio *virtio_mmio_create(struct vm_env *env, const struct virtio_device_ops *ops,
                                       const void *params, uint64_t base, uint32_t irq, char *err, size_t errlen) {
    struct virtio_mmio *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "%s: out of memory", ops->name);
        return NULL;
    }
    if (virtio_dev_create(&m->vd, ops, params, env, err, errlen) != 0) {
        virtio_mmio_destroy(m);
        return NULL;
    }
    m->vd.interrupt_locked = mmio_interrupt_locked;
    m->base = base;
    m->irq = irq;
    m->slow_notify.handler = on_slow_notify;
    for (unsigned q = 0; q < m->vd.nqueues; q++) {
        m->bells[q] = (struct mmio_bell){.trap = {.handler = on_bell}, .m = m, .queue = q};
        /* Without a guest (device tests), notifications come only as register writes. */
        if (env->guest != ZX_HANDLE_INVALID &&
            async_set_guest_doorbell(env->loop, &m->bells[q].trap, env->guest, base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, q) !=
                ZX_OK) {
            snprintf(err, errlen, "%s: cannot set its doorbells", ops->name);
            virtio_mmio_destroy(m);
            return NULL;
        }
    }
    return m;
}

struct virtio_dev *virtio_mmio_dev(struct virtio_mmio *m) { return &m->vd; }

/* The guest (its doorbells) and the loop must be gone first. */
void virtio_mmio_destroy(struct virtio_mmio *m) {
    if (!m) return;
    virtio_dev_destroy(&m->vd);
    free(m);
}
