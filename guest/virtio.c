#include "guest/virtio.h"
#include "guest/irq.h"

#define F_INDIRECT 28
#define F_EVENT_IDX 29
#define F_VERSION_1 32
#define DESC_NEXT 1
#define DESC_WRITE 2
#define DESC_INDIRECT 4

enum {
    MAGIC = 0x000, VERSION = 0x004, DEVICE_ID = 0x008, DEVICE_FEATURES = 0x010,
    DEVICE_FEATURES_SEL = 0x014, DRIVER_FEATURES = 0x020, DRIVER_FEATURES_SEL = 0x024,
    QUEUE_SEL = 0x030, QUEUE_NUM_MAX = 0x034, QUEUE_NUM = 0x038, QUEUE_READY = 0x044,
    QUEUE_NOTIFY = 0x050, INTERRUPT_STATUS = 0x060, INTERRUPT_ACK = 0x064, STATUS = 0x070,
    QUEUE_DESC = 0x080, QUEUE_DRIVER = 0x090, QUEUE_DEVICE = 0x0a0, CONFIG = 0x100,
};

static uint8_t pool[1 << 20] __attribute__((aligned(4096)));
static size_t pool_used;

void *alloc_pages(size_t bytes) {
    size_t n = (bytes + 4095) & ~(size_t)4095;
    if (n > sizeof pool - pool_used) {
        printf("guest: out of memory\n");
        guest_exit(96);
    }
    void *p = pool + pool_used;
    pool_used += n;
    memset(p, 0, n);
    return p;
}

static uint32_t rd(struct vdev *d, unsigned reg) { return mmio_read32(d->base + reg); }
static void wr(struct vdev *d, unsigned reg, uint32_t v) { mmio_write32(d->base + reg, v); }
static void wr64(struct vdev *d, unsigned reg, uint64_t v) {
    wr(d, reg, (uint32_t)v);
    wr(d, reg + 4, (uint32_t)(v >> 32));
}

static void on_irq(void *arg) {
    struct vdev *d = arg;
    uint32_t isr = rd(d, INTERRUPT_STATUS);
    wr(d, INTERRUPT_ACK, isr);
    d->isr_seen |= isr;
    if (d->on_interrupt) d->on_interrupt(d);
}

uint8_t vdev_status(struct vdev *d) { return (uint8_t)rd(d, STATUS); }
uint32_t vdev_config32(struct vdev *d, unsigned off) { return rd(d, CONFIG + off); }

bool vdev_failed(struct vdev *d) {
    /* only a configuration interrupt says so: the status is not read at every wait */
    if (!d->broken && (d->isr_seen & 2) && (vdev_status(d) & 0x40)) d->broken = true;
    return d->broken;
}

int vdev_negotiate(struct vdev *d, uint64_t base, unsigned irq, uint64_t want) {
    d->base = base;
    d->irq = irq;
    if (rd(d, MAGIC) != 0x74726976 || rd(d, VERSION) != 2) return -1;
    d->device_id = rd(d, DEVICE_ID);
    d->broken = false; /* the reset clears DEVICE_NEEDS_RESET */
    wr(d, STATUS, 0);
    wr(d, STATUS, 1);     /* ACKNOWLEDGE */
    wr(d, STATUS, 1 | 2); /* DRIVER */
    uint64_t offered = 0;
    for (unsigned sel = 0; sel < 2; sel++) {
        wr(d, DEVICE_FEATURES_SEL, sel);
        offered |= (uint64_t)rd(d, DEVICE_FEATURES) << (32 * sel);
    }
    d->features = offered & (want | 1ull << F_VERSION_1 | 1ull << F_EVENT_IDX | 1ull << F_INDIRECT);
    for (unsigned sel = 0; sel < 2; sel++) {
        wr(d, DRIVER_FEATURES_SEL, sel);
        wr(d, DRIVER_FEATURES, (uint32_t)(d->features >> (32 * sel)));
    }
    wr(d, STATUS, 1 | 2 | 8); /* FEATURES_OK */
    if (!(rd(d, STATUS) & 8)) return -2;
    return 0;
}

int vdev_start(struct vdev *d, unsigned nvqs) {
    if (nvqs > sizeof d->vqs / sizeof d->vqs[0]) return -3;
    d->nvqs = nvqs;
    for (unsigned i = 0; i < nvqs; i++) {
        struct vq *q = &d->vqs[i];
        *q = (struct vq){0}; /* a restart starts the rings over */
        wr(d, QUEUE_SEL, i);
        uint32_t max = rd(d, QUEUE_NUM_MAX);
        if (max == 0) return -3;
        q->index = i;
        q->num = max < VQ_SIZE ? max : VQ_SIZE;
        q->desc = alloc_pages(16 * q->num);
        q->avail = alloc_pages(6 + 2 * q->num);
        q->used = alloc_pages(6 + 8 * q->num);
        q->indirect = alloc_pages(16 * VQ_MAX_BUFS * VQ_SIZE);
        wr(d, QUEUE_NUM, q->num);
        wr64(d, QUEUE_DESC, (uint64_t)q->desc);
        wr64(d, QUEUE_DRIVER, (uint64_t)q->avail);
        wr64(d, QUEUE_DEVICE, (uint64_t)q->used);
        wr(d, QUEUE_READY, 1);
    }
    irq_route(d->irq, on_irq, d);
    wr(d, STATUS, 1 | 2 | 8 | 4); /* DRIVER_OK */
    return 0;
}

int vdev_init(struct vdev *d, uint64_t base, unsigned irq, uint64_t want, unsigned nvqs) {
    int r = vdev_negotiate(d, base, irq, want);
    return r ? r : vdev_start(d, nvqs);
}

static uint16_t used_idx(struct vq *q) { return __atomic_load_n((volatile uint16_t *)(q->used + 2), __ATOMIC_ACQUIRE); }

/* Makes one request available and notifies the device (as EVENT_IDX allows). */
static bool submit(struct vdev *d, unsigned qi, const struct vbuf *bufs, unsigned n, bool indirect) {
    struct vq *q = &d->vqs[qi];
    if (n == 0 || n > VQ_MAX_BUFS || (!indirect && n > q->num)) return false;
    struct vdesc *t = indirect ? q->indirect : q->desc;
    for (unsigned i = 0; i < n; i++)
        t[i] = (struct vdesc){(uint64_t)bufs[i].p, bufs[i].len,
                              (uint16_t)((i + 1 < n ? DESC_NEXT : 0) | (bufs[i].device_writes ? DESC_WRITE : 0)),
                              (uint16_t)(i + 1)};
    if (indirect) q->desc[0] = (struct vdesc){(uint64_t)q->indirect, 16 * n, DESC_INDIRECT, 0};
    bool event_idx = d->features >> F_EVENT_IDX & 1;
    /* Ask for an interrupt at the next completion. */
    if (event_idx) q->avail[2 + q->num] = q->last_used;
    q->avail[2 + q->avail_idx % q->num] = 0; /* head: descriptor 0 */
    uint16_t old = q->avail_idx++;
    __atomic_store_n(&q->avail[1], q->avail_idx, __ATOMIC_RELEASE);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    bool kick = true;
    if (event_idx) {
        uint16_t avail_event = *(volatile uint16_t *)(q->used + 4 + 8 * q->num);
        kick = (uint16_t)(q->avail_idx - avail_event - 1) < (uint16_t)(q->avail_idx - old);
    }
    d->isr_seen &= ~1u; /* (a configuration interrupt seen before stays seen: the device may have failed) */
    q->kicked_idx = q->avail_idx;
    if (kick) wr(d, QUEUE_NOTIFY, qi);
    return true;
}

static long take_used(struct vq *q) {
    volatile uint8_t *elem = q->used + 4 + 8 * (q->last_used % q->num);
    uint32_t len = *(volatile uint32_t *)(elem + 4);
    q->last_used++;
    return len;
}

long vdev_request(struct vdev *d, unsigned qi, const struct vbuf *bufs, unsigned n, bool indirect) {
    struct vq *q = &d->vqs[qi];
    if (d->broken || !submit(d, qi, bufs, n, indirect)) return -1;
    /* Interrupt-driven: the completion counts once its interrupt has arrived. */
    uint64_t deadline = irq_ticks + 20 * IRQ_TICKS_PER_SEC;
    while (used_idx(q) == q->last_used || !(d->isr_seen & 1)) {
        if (irq_ticks > deadline) return -1;
        if (vdev_failed(d)) return -1;
        irq_wait();
    }
    return take_used(q);
}

long vdev_request_polled(struct vdev *d, unsigned qi, const struct vbuf *bufs, unsigned n) {
    struct vq *q = &d->vqs[qi];
    if (!submit(d, qi, bufs, n, false)) return -1;
    /* Interrupts stay off: the guest sees the completion in memory (the used ring). */
    for (uint64_t spins = 0; used_idx(q) == q->last_used; spins++)
        if (spins > (1ull << 34)) return -1;
    return take_used(q);
}

void vdev_notify(struct vdev *d, unsigned qi) { wr(d, QUEUE_NOTIFY, qi); }

bool vdev_post(struct vdev *d, unsigned qi, unsigned slot, const struct vbuf *bufs, unsigned n) {
    struct vq *q = &d->vqs[qi];
    if (d->broken || n == 0 || n > VQ_MAX_BUFS || slot >= q->num) return false;
    struct vdesc *t = q->indirect + slot * VQ_MAX_BUFS;
    for (unsigned i = 0; i < n; i++)
        t[i] = (struct vdesc){(uint64_t)bufs[i].p, bufs[i].len,
                              (uint16_t)((i + 1 < n ? DESC_NEXT : 0) | (bufs[i].device_writes ? DESC_WRITE : 0)),
                              (uint16_t)(i + 1)};
    /* one buffer needs no table (nor a device that offers INDIRECT_DESC) */
    q->desc[slot] = n == 1 ? t[0] : (struct vdesc){(uint64_t)t, 16 * n, DESC_INDIRECT, 0};
    q->avail[2 + q->avail_idx % q->num] = (uint16_t)slot;
    q->avail_idx++;
    __atomic_store_n(&q->avail[1], q->avail_idx, __ATOMIC_RELEASE);
    return true;
}

void vdev_kick(struct vdev *d, unsigned qi) {
    struct vq *q = &d->vqs[qi];
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    bool kick = q->avail_idx != q->kicked_idx;
    if (kick && (d->features >> F_EVENT_IDX & 1)) {
        uint16_t avail_event = *(volatile uint16_t *)(q->used + 4 + 8 * q->num);
        kick = (uint16_t)(q->avail_idx - avail_event - 1) < (uint16_t)(q->avail_idx - q->kicked_idx);
    }
    q->kicked_idx = q->avail_idx;
    if (kick) wr(d, QUEUE_NOTIFY, qi);
}

int vdev_reap(struct vdev *d, unsigned qi, uint32_t *len, bool wait) {
    struct vq *q = &d->vqs[qi];
    if (!wait && used_idx(q) == q->last_used) return -2;
    if (d->features >> F_EVENT_IDX & 1) q->avail[2 + q->num] = q->last_used; /* an interrupt at the next one */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint64_t deadline = irq_ticks + 20 * IRQ_TICKS_PER_SEC;
    while (used_idx(q) == q->last_used) {
        if (vdev_failed(d) || irq_ticks > deadline) return -1;
        irq_wait();
    }
    volatile uint8_t *elem = q->used + 4 + 8 * (q->last_used % q->num);
    int slot = (int)*(volatile uint32_t *)elem;
    *len = *(volatile uint32_t *)(elem + 4);
    q->last_used++;
    return slot;
}

int vdev_poll(struct vdev *d, unsigned qi, uint32_t *len) {
    struct vq *q = &d->vqs[qi];
    if (used_idx(q) == q->last_used) {
        /* none: an interrupt at the next one, then a second look for one that came meanwhile */
        if (d->features >> F_EVENT_IDX & 1) q->avail[2 + q->num] = q->last_used;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (used_idx(q) == q->last_used) return -2;
    }
    volatile uint8_t *elem = q->used + 4 + 8 * (q->last_used % q->num);
    uint32_t id = *(volatile uint32_t *)elem;
    *len = *(volatile uint32_t *)(elem + 4);
    q->last_used++;
    return id < q->num ? (int)id : -1;
}
