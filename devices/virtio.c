/* virtio device state shared by every transport and device. */
#include <lib/container_of.h>
#include <stdio.h>
#include <string.h>

#include <unistd.h>
#include <zircon/syscalls.h>

#include "devices/virtio.h"
#include "base/timeline_record.h"
#include "devices/virtqueue.h"

int virtio_dev_create(struct virtio_dev *vd, const struct virtio_device_ops *ops, const void *params,
                      struct vm_env *env, char *err, size_t errlen) {
    memset(vd, 0, sizeof *vd);
    vd->ops = ops;
    vd->env = env;
    vd->nqueues = ops->nqueues;
    pthread_mutex_init(&vd->lock, NULL);
    if (ops->create && ops->create(vd, params, err, errlen) != 0) return -1;
    vd->created = true;
    if (vd->nqueues < 1 || vd->nqueues > VIRTIO_MAX_QUEUES) {
        snprintf(err, errlen, "%s: %u queues (1 to %d)", ops->name, vd->nqueues, VIRTIO_MAX_QUEUES);
        return -1;
    }
    return 0;
}

/* The loop is shut down before its devices (every task ran or was canceled by then), or
 * there was none: no task of this device can be pending. */
void virtio_dev_destroy(struct virtio_dev *vd) {
    if (vd->created && vd->ops->destroy) vd->ops->destroy(vd);
    vd->created = false;
    pthread_mutex_destroy(&vd->lock);
}

uint64_t virtio_device_features(const struct virtio_dev *vd) {
    if (vd->features_exact) return vd->features | 1ull << VIRTIO_F_VERSION_1;
    return vd->features | 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_F_EVENT_IDX |
           1ull << VIRTIO_F_INDIRECT_DESC;
}

bool virtio_has_feature(const struct virtio_dev *vd, unsigned bit) {
    return vd->driver_features >> bit & 1;
}

void virtio_reset_locked(struct virtio_dev *vd) {
    vd->driver_features = 0;
    vd->status = 0;
    vd->isr = 0;
    vd->generation++;
    memset(vd->queues, 0, sizeof vd->queues);
    if (vd->ops->reset) vd->ops->reset(vd);
}

void virtio_set_status_locked(struct virtio_dev *vd, uint8_t status) {
    if (status == 0) {
        virtio_reset_locked(vd);
        return;
    }
    /* FEATURES_OK only sticks for feature sets we offered, with VERSION_1. */
    if ((status & VIRTIO_STATUS_FEATURES_OK) && !(vd->status & VIRTIO_STATUS_FEATURES_OK) &&
        ((vd->driver_features & ~virtio_device_features(vd)) || !virtio_has_feature(vd, VIRTIO_F_VERSION_1)))
        status &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
    bool ok_now = (status & VIRTIO_STATUS_DRIVER_OK) && !(vd->status & VIRTIO_STATUS_DRIVER_OK);
    vd->status = (uint8_t)(status | (vd->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET));
    if (ok_now && vd->ops->driver_ok) vd->ops->driver_ok(vd);
}

uint32_t virtio_device_features_word(const struct virtio_dev *vd, uint32_t sel) {
    return sel < 2 ? (uint32_t)(virtio_device_features(vd) >> (32 * sel)) : 0;
}

static void set_half(uint64_t *field, bool high, uint32_t v) {
    *field = high ? (*field & 0xffffffffull) | (uint64_t)v << 32 : (*field & ~0xffffffffull) | v;
}

void virtio_driver_features_write_locked(struct virtio_dev *vd, uint32_t sel, uint32_t value) {
    if (sel < 2 && !(vd->status & VIRTIO_STATUS_FEATURES_OK)) set_half(&vd->driver_features, sel == 1, value);
}

void virtio_queue_size_write_locked(struct virtio_dev *vd, unsigned qi, uint32_t size) {
    struct virtq *q = &vd->queues[qi];
    if (!q->ready) q->num = (uint16_t)(size <= vd->ops->queue_max ? size : 0);
}

void virtio_queue_addr_write_locked(struct virtio_dev *vd, unsigned qi, uint64_t *addr, bool high, uint32_t half) {
    if (!vd->queues[qi].ready) set_half(addr, high, half);
}

void virtio_queue_enable_locked(struct virtio_dev *vd, unsigned qi) {
    struct virtq *q = &vd->queues[qi];
    if (q->ready) return;
    if (virtio_queue_valid(vd, q)) q->ready = true;
    else virtio_fail_locked(vd, qi, "queue rings invalid (size or addresses)");
}

uint64_t virtio_config_read_locked(struct virtio_dev *vd, uint64_t off, uint8_t size) {
    uint8_t cfg[256] = {0};
    uint64_t v = 0;
    if (vd->ops->config_read && vd->config_size <= sizeof cfg && size <= 8 && off + size <= vd->config_size) {
        vd->ops->config_read(vd, cfg);
        memcpy(&v, cfg + off, size);
    }
    return v;
}

void virtio_config_write_locked(struct virtio_dev *vd, uint64_t off, uint8_t size, uint64_t value) {
    if (vd->ops->config_write && off + size <= vd->config_size)
        vd->ops->config_write(vd, (uint32_t)off, size, value);
}

bool virtio_queue_valid(const struct virtio_dev *vd, const struct virtq *q) {
    const struct guest_mem *gm = &vd->env->mem;
    return q->num && (q->num & (q->num - 1)) == 0 && q->num <= vd->ops->queue_max &&
           !(q->desc & 15) && !(q->avail & 1) && !(q->used & 3) &&
           gm_valid(gm, q->desc, virtq_desc_bytes(q->num)) &&
           gm_valid(gm, q->avail, virtq_avail_bytes(q->num)) &&
           gm_valid(gm, q->used, virtq_used_bytes(q->num));
}

void virtio_fail_locked(struct virtio_dev *vd, unsigned q, const char *why) {
    if (vd->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET) return;
    fprintf(stderr, "bellhop: %s queue %u: %s; the device needs a reset\n", vd->ops->name, q, why);
    vd->status |= VIRTIO_STATUS_DEVICE_NEEDS_RESET;
    /* Rare, and the caller holds the lock: raised at once. */
    if (vd->status & VIRTIO_STATUS_DRIVER_OK)
        virtio_raise(vd, vd->interrupt_locked(vd, VIRTIO_ISR_CONFIG, VIRTIO_CONFIG_IRQ));
}

void virtio_config_changed(struct virtio_dev *vd) {
    pthread_mutex_lock(&vd->lock);
    struct virtio_irq irq = vd->status & VIRTIO_STATUS_DRIVER_OK
                                ? vd->interrupt_locked(vd, VIRTIO_ISR_CONFIG, VIRTIO_CONFIG_IRQ)
                                : VIRTIO_NO_IRQ;
    pthread_mutex_unlock(&vd->lock);
    virtio_raise(vd, irq);
}

void virtio_raise(struct virtio_dev *vd, struct virtio_irq irq) {
    if (vd->env->timeline && (irq.fd >= 0 || irq.pin >= 0)) {
        struct timeline_record e = {.ts_ns = zx_clock_get_monotonic(), .kind = TIMELINE_IRQ,
                                    .flow = timeline_flow(vd->env->timeline), .what = vd->ops->name,
                                    .of = irq.fd >= 0 ? "msi" : "irq pin", .arg = irq.fd >= 0 ? 0 : (uint64_t)irq.pin};
        timeline_put(timeline_ring(vd->env->timeline, "loop"), &e);
    }
    uint64_t one = 1;
    if (irq.fd >= 0) {
        if (write(irq.fd, &one, sizeof one) < 0) { /* a saturated counter is a pending interrupt */
        }
    } else if (irq.pin >= 0) {
        vd->env->raise_irq(vd->env, (uint32_t)irq.pin);
    }
}

static bool usable_locked(const struct virtio_dev *vd, unsigned q) {
    return q < vd->nqueues && vd->queues[q].ready &&
           (vd->status & VIRTIO_STATUS_DRIVER_OK) &&
           !(vd->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
}

bool virtio_pop(struct virtio_dev *vd, unsigned q, struct virtq_req *r) {
    pthread_mutex_lock(&vd->lock);
    bool got = false;
    if (usable_locked(vd, q)) {
        const char *why = NULL;
        enum virtq_take_result res = virtq_take(&vd->queues[q], &vd->env->mem,
                                                virtio_has_feature(vd, VIRTIO_F_INDIRECT_DESC),
                                                virtio_has_feature(vd, VIRTIO_F_EVENT_IDX), r, &why);
        if (res == VIRTQ_BAD) virtio_fail_locked(vd, q, why);
        got = res == VIRTQ_TAKEN;
        r->generation = vd->generation;
    }
    pthread_mutex_unlock(&vd->lock);
    return got;
}

void virtio_unpop(struct virtio_dev *vd, unsigned q, uint32_t generation) {
    pthread_mutex_lock(&vd->lock);
    if (generation == vd->generation && q < vd->nqueues) vd->queues[q].last_avail--;
    pthread_mutex_unlock(&vd->lock);
}

void virtio_push(struct virtio_dev *vd, unsigned q, const struct virtq_req *r, uint32_t written) {
    /* Its in-buffers, whole: a buffer a device held across a snapshot (virtio-net's receive
     * buffer) was marked when popped, before that snapshot cleared the marks. */
    for (unsigned i = 0; vd->env->mem.written && i < r->nin; i++) gm_mark_host(&vd->env->mem, r->in[i].p, r->in[i].len);
    virtio_push_used(vd, q, r->head, r->generation, written);
}

void virtio_push_used(struct virtio_dev *vd, unsigned q, uint16_t head, uint32_t generation, uint32_t written) {
    struct virtio_irq irq = VIRTIO_NO_IRQ;
    pthread_mutex_lock(&vd->lock);
    if (generation == vd->generation && usable_locked(vd, q) &&
        virtq_put(&vd->queues[q], &vd->env->mem, virtio_has_feature(vd, VIRTIO_F_EVENT_IDX), head, written))
        irq = vd->interrupt_locked(vd, VIRTIO_ISR_QUEUE, (int)q);
    pthread_mutex_unlock(&vd->lock);
    virtio_raise(vd, irq);
}

size_t virtq_req_read(const struct virtq_req *r, uint64_t off, void *dst, size_t len) {
    struct virtq_cursor c = virtq_cursor(r, false, off, len);
    size_t done = 0;
    for (struct virtq_buf piece; virtq_next(&c, &piece); done += piece.len)
        memcpy((uint8_t *)dst + done, piece.p, piece.len);
    return done;
}

size_t virtq_req_write(const struct virtq_req *r, uint64_t off, const void *src, size_t len) {
    struct virtq_cursor c = virtq_cursor(r, true, off, len);
    size_t done = 0;
    for (struct virtq_buf piece; virtq_next(&c, &piece); done += piece.len)
        memcpy(piece.p, (const uint8_t *)src + done, piece.len);
    return done;
}

static void run_queue_notify(struct virtio_dev *vd, unsigned q) {
    uint64_t t0 = vd->env->stats ? zx_clock_get_monotonic() : 0;
    vd->ops->queue_notify(vd, q);
    if (vd->env->stats) handler_stats_add(&vd->bells[q], zx_clock_get_monotonic() - t0);
}

/* --trace-file: the bell (an instant where its flow starts) and its handler (a slice where
 * the flow ends), on the loop's timeline. */
__attribute__((cold)) static void bell_on_timeline(struct virtio_dev *vd, unsigned q, uint64_t addr) {
    struct timeline_ring *r = timeline_ring(vd->env->timeline, "loop");
    struct timeline_record bell = {.ts_ns = zx_clock_get_monotonic(), .arg = addr, .kind = TIMELINE_BELL,
                                   .flow = timeline_flow(vd->env->timeline), .what = vd->ops->name};
    timeline_put(r, &bell);
    struct timeline_record h = {.ts_ns = zx_clock_get_monotonic(), .arg = q, .kind = TIMELINE_HANDLER, .flow = bell.flow,
                                .what = vd->ops->name};
    run_queue_notify(vd, q);
    h.dur_ns = zx_clock_get_monotonic() - h.ts_ns;
    timeline_put(r, &h);
}

void virtio_bell(struct virtio_dev *vd, unsigned q, uint64_t addr) {
    if (vd->env->trace)
        fprintf(stderr, "trace: %10.3f ms loop BELL key %s queue %u addr %#llx\n", trace_ms(vd->env), vd->ops->name, q,
                (unsigned long long)addr);
    if (q >= vd->nqueues) return;
    if (vd->env->timeline) return bell_on_timeline(vd, q, addr);
    run_queue_notify(vd, q);
}

static void notify_again(async_dispatcher_t *d, async_task_t *task, zx_status_t st) {
    (void)d;
    struct virtio_again *a = container_of(task, struct virtio_again, task);
    a->pending = false;
    if (st != ZX_OK) return; /* the loop is shutting down */
    if (a->vd->env->trace)
        fprintf(stderr, "trace: %10.3f ms loop AGAIN key %s queue %u\n", trace_ms(a->vd->env), a->vd->ops->name, a->q);
    run_queue_notify(a->vd, a->q);
}

bool virtio_notify_again(struct virtio_dev *vd, unsigned q) {
    if (!vd->env->loop || q >= VIRTIO_MAX_QUEUES) return false;
    struct virtio_again *a = &vd->again[q];
    if (a->pending) return true;
    *a = (struct virtio_again){.task = {.handler = notify_again, .deadline = ZX_TIME_INFINITE_PAST}, .vd = vd, .q = q};
    if (async_post_task(vd->env->loop, &a->task) != ZX_OK) return false;
    a->pending = true;
    return true;
}

/* ---- rate limits ---- */

/* q waits for the timer: at the end of the line, or at its head when it was the one being served. */
static void wait_in_line(struct virtio_throttle *t, unsigned q) {
    if (t->waiting & (1u << q)) return;
    t->waiting |= 1u << q;
    if (t->serving == (int)q) {
        memmove(t->line + 1, t->line, t->in_line);
        t->line[0] = (uint8_t)q;
    } else {
        t->line[t->in_line] = (uint8_t)q;
    }
    t->in_line++;
}

static unsigned leave_line(struct virtio_throttle *t) {
    unsigned q = t->line[0];
    memmove(t->line, t->line + 1, --t->in_line);
    t->waiting &= ~(1u << q);
    return q;
}

/* The waiting queues in their order, until one is refused again (it heads the line again and
 * the timer is set for it). */
static void serve_waiting(struct virtio_throttle *t) {
    while (t->in_line) {
        unsigned q = leave_line(t);
        if (t->vd->env->trace)
            fprintf(stderr, "trace: %10.3f ms loop LIMIT key %s queue %u\n", trace_ms(t->vd->env), t->vd->ops->name, q);
        t->serving = (int)q;
        if (t->resume) t->resume(t->vd, q);
        else run_queue_notify(t->vd, q);
        t->serving = -1;
        if (t->waiting & (1u << q)) return;
    }
}

static void throttle_due(async_dispatcher_t *d, async_task_t *task, zx_status_t st) {
    (void)d;
    struct virtio_throttle *t = container_of(task, struct virtio_throttle, timer);
    t->timer_posted = false;
    if (st != ZX_OK) return; /* the loop is shutting down */
    serve_waiting(t);
}

/* The timer at now + wait, unless it is posted for sooner (one timer serves every waiting
 * queue; each refused again waits again). */
static void throttle_arm(struct virtio_throttle *t, uint64_t now, uint64_t wait) {
    async_dispatcher_t *loop = t->vd->env->loop;
    if (!loop) return;
    zx_time_t deadline = wait < (uint64_t)ZX_TIME_INFINITE - now ? (zx_time_t)(now + wait) : ZX_TIME_INFINITE;
    if (t->timer_posted && (t->timer.deadline <= deadline || async_cancel_task(loop, &t->timer) != ZX_OK)) return;
    t->timer = (async_task_t){.handler = throttle_due, .deadline = deadline};
    t->timer_posted = async_post_task(loop, &t->timer) == ZX_OK;
}

void virtio_throttle_init(struct virtio_throttle *t, struct virtio_dev *vd, const struct rate_limiter_config *c) {
    *t = (struct virtio_throttle){.vd = vd, .serving = -1};
    rate_limiter_init(&t->limiter, c, (uint64_t)zx_clock_get_monotonic());
}

bool virtio_throttle_take(struct virtio_throttle *t, unsigned q, uint64_t bytes, uint64_t ops) {
    if (t->in_line && t->serving != (int)q && t->line[0] != q) { /* others came first */
        wait_in_line(t, q);
        return false;
    }
    uint64_t now = (uint64_t)zx_clock_get_monotonic();
    if (rate_limiter_consume(&t->limiter, bytes, ops, now)) return true;
    wait_in_line(t, q);
    throttle_arm(t, now, rate_limiter_wait_ns(&t->limiter, bytes, ops, now));
    return false;
}

void virtio_throttle_stop(struct virtio_throttle *t) {
    if (t->timer_posted && async_cancel_task(t->vd->env->loop, &t->timer) == ZX_OK) t->timer_posted = false;
}

void virtio_throttle_set(struct virtio_throttle *t, const struct rate_limiter_config *c) {
    rate_limiter_update(&t->limiter, c, (uint64_t)zx_clock_get_monotonic());
    virtio_throttle_stop(t);
    serve_waiting(t);
}
