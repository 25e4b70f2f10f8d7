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

enum {
    REG_MAGIC = 0x000, REG_VERSION = 0x004, REG_DEVICE_ID = 0x008, REG_VENDOR_ID = 0x00c,
    REG_DEVICE_FEATURES = 0x010, REG_DEVICE_FEATURES_SEL = 0x014, REG_DRIVER_FEATURES = 0x020,
    REG_DRIVER_FEATURES_SEL = 0x024, REG_QUEUE_SEL = 0x030, REG_QUEUE_NUM_MAX = 0x034,
    REG_QUEUE_NUM = 0x038, REG_QUEUE_READY = 0x044, REG_QUEUE_NOTIFY = 0x050,
    REG_INTERRUPT_STATUS = 0x060, REG_INTERRUPT_ACK = 0x064, REG_STATUS = 0x070,
    REG_QUEUE_DESC_LOW = 0x080, REG_QUEUE_DESC_HIGH = 0x084, REG_QUEUE_DRIVER_LOW = 0x090,
    REG_QUEUE_DRIVER_HIGH = 0x094, REG_QUEUE_DEVICE_LOW = 0x0a0, REG_QUEUE_DEVICE_HIGH = 0x0a4,
    REG_CONFIG_GENERATION = 0x0fc, REG_CONFIG = 0x100,
};

struct virtio_mmio;

struct mmio_bell {
    async_guest_bell_trap_t trap; /* first */
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

static void notify(struct virtio_mmio *m, unsigned q) {
    if (q < m->vd.ops->nqueues) m->vd.ops->queue_notify(&m->vd, q);
}

static void on_bell(async_dispatcher_t *d, async_guest_bell_trap_t *trap, zx_status_t st,
                    const zx_packet_guest_bell_t *bell) {
    (void)d;
    struct mmio_bell *b = (struct mmio_bell *)trap;
    if (st == ZX_OK) virtio_bell(&b->m->vd, b->queue, bell->addr);
}

static void on_slow_notify(async_dispatcher_t *d, async_receiver_t *r, zx_status_t st,
                           const zx_packet_user_t *data) {
    (void)d;
    if (st != ZX_OK) return;
    struct virtio_mmio *m = container_of(r, struct virtio_mmio, slow_notify);
    notify(m, data->u32[0]);
}

static struct virtio_irq mmio_interrupt_locked(struct virtio_dev *vd, uint32_t bits, int q) {
    (void)q;
    struct virtio_mmio *m = (struct virtio_mmio *)vd;
    vd->isr |= bits;
    return (struct virtio_irq){.fd = -1, .pin = (int)m->irq};
}

static uint64_t mmio_read(void *dev, uint64_t off, uint8_t size) {
    struct virtio_mmio *m = dev;
    struct virtio_dev *vd = &m->vd;
    uint64_t v = 0;
    pthread_mutex_lock(&vd->lock);
    if (off >= REG_CONFIG) {
        uint8_t cfg[256] = {0};
        uint64_t at = off - REG_CONFIG;
        if (vd->ops->config_read && vd->config_size <= sizeof cfg && at + size <= vd->config_size) {
            vd->ops->config_read(vd, cfg);
            memcpy(&v, cfg + at, size);
        }
    } else if (size == 4) {
        struct virtq *q = m->queue_sel < VIRTIO_MAX_QUEUES ? &vd->queues[m->queue_sel] : NULL;
        uint64_t features = virtio_device_features(vd);
        switch (off) {
        case REG_MAGIC: v = MAGIC; break;
        case REG_VERSION: v = 2; break;
        case REG_DEVICE_ID: v = vd->ops->device_id; break;
        case REG_VENDOR_ID: v = VENDOR; break;
        case REG_DEVICE_FEATURES:
            v = m->device_features_sel < 2 ? (uint32_t)(features >> (32 * m->device_features_sel)) : 0;
            break;
        case REG_QUEUE_NUM_MAX: v = m->queue_sel < vd->ops->nqueues ? vd->ops->queue_max : 0; break;
        case REG_QUEUE_READY: v = q && q->ready; break;
        case REG_INTERRUPT_STATUS: v = vd->isr; break;
        case REG_STATUS: v = vd->status; break;
        case REG_CONFIG_GENERATION: v = 0; break;
        }
    }
    pthread_mutex_unlock(&vd->lock);
    return v;
}

static void set_half(uint64_t *field, bool high, uint32_t v) {
    *field = high ? (*field & 0xffffffffull) | (uint64_t)v << 32 : (*field & ~0xffffffffull) | v;
}

static void mmio_write(void *dev, uint64_t off, uint8_t size, uint64_t value) {
    struct virtio_mmio *m = dev;
    struct virtio_dev *vd = &m->vd;
    uint32_t v = (uint32_t)value;
    pthread_mutex_lock(&vd->lock);
    if (off >= REG_CONFIG) {
        if (vd->ops->config_write && off - REG_CONFIG + size <= vd->config_size)
            vd->ops->config_write(vd, (uint32_t)(off - REG_CONFIG), size, value);
        pthread_mutex_unlock(&vd->lock);
        return;
    }
    if (size != 4) {
        pthread_mutex_unlock(&vd->lock);
        return;
    }
    struct virtq *q = m->queue_sel < vd->ops->nqueues ? &vd->queues[m->queue_sel] : NULL;
    bool setup = q && !q->ready; /* ring addresses and size change only while not ready */
    switch (off) {
    case REG_DEVICE_FEATURES_SEL: m->device_features_sel = v; break;
    case REG_DRIVER_FEATURES:
        if (m->driver_features_sel < 2 && !(vd->status & VIRTIO_STATUS_FEATURES_OK))
            set_half(&vd->driver_features, m->driver_features_sel == 1, v);
        break;
    case REG_DRIVER_FEATURES_SEL: m->driver_features_sel = v; break;
    case REG_QUEUE_SEL: m->queue_sel = v; break;
    case REG_QUEUE_NUM: if (setup) q->num = (uint16_t)(v <= VIRTQ_MAX_SIZE ? v : 0); break;
    case REG_QUEUE_READY:
        if (!q) break;
        if (v == 0) {
            q->ready = false;
        } else if (!q->ready) {
            if (virtio_queue_valid(vd, q)) q->ready = true;
            else virtio_fail_locked(vd, m->queue_sel, "queue rings invalid (size or addresses)");
        }
        break;
    case REG_QUEUE_NOTIFY: {
        pthread_mutex_unlock(&vd->lock);
        zx_packet_user_t data = {.u32 = {v}};
        async_queue_packet(vd->env->loop, &m->slow_notify, &data);
        return;
    }
    case REG_INTERRUPT_ACK: vd->isr &= ~v; break;
    case REG_STATUS: virtio_set_status_locked(vd, (uint8_t)v); break;
    case REG_QUEUE_DESC_LOW: case REG_QUEUE_DESC_HIGH:
        if (setup) set_half(&q->desc, off == REG_QUEUE_DESC_HIGH, v);
        break;
    case REG_QUEUE_DRIVER_LOW: case REG_QUEUE_DRIVER_HIGH:
        if (setup) set_half(&q->avail, off == REG_QUEUE_DRIVER_HIGH, v);
        break;
    case REG_QUEUE_DEVICE_LOW: case REG_QUEUE_DEVICE_HIGH:
        if (setup) set_half(&q->used, off == REG_QUEUE_DEVICE_HIGH, v);
        break;
    }
    pthread_mutex_unlock(&vd->lock);
}

const struct io_ops virtio_mmio_ops = {.name = "virtio-mmio", .read = mmio_read, .write = mmio_write};

struct virtio_mmio *virtio_mmio_create(struct vm_env *env, const struct virtio_device_ops *ops,
                                       const void *params, uint64_t base, uint32_t irq,
                                       zx_handle_t bells_port, char *err, size_t errlen) {
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
    for (unsigned q = 0; q < ops->nqueues && q < VIRTIO_MAX_QUEUES; q++) {
        m->bells[q] = (struct mmio_bell){.trap = {.handler = on_bell}, .m = m, .queue = q};
        if (bells_port != ZX_HANDLE_INVALID &&
            bellhop_guest_set_doorbell(env->guest, base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, q, bells_port,
                                       (uintptr_t)&m->bells[q].trap) != ZX_OK) {
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
