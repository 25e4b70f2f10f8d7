/* A virtio device's state for snapshots: what the core keeps (features, status, each queue's
 * rings and indices) and the device's own (its save hook), checked on the way back in. No
 * request is in flight when it is saved: devices finish each request inside the loop handler
 * that took it, or (virtio-blk's, in the kernel's hands) in their quiesce hook, which a
 * snapshot runs before it saves anything, and a snapshot is taken on the loop thread between
 * handlers. A notification the guest made that the loop had not yet handled is not in the
 * state; restore treats every ready queue as notified once (virtio_restore_kick), and a queue
 * with nothing new is a no-op. */
#include <stdio.h>
#include <string.h>

#include "devices/virtio.h"

#define NAME_LEN 24

struct virtq_wire {
    uint16_t num, last_avail, used_idx;
    uint8_t ready, pad;
    uint64_t desc, avail, used;
};

struct virtio_wire {
    char device[NAME_LEN];
    uint64_t features, driver_features;
    uint32_t isr, generation;
    uint8_t status, pad[3];
    uint32_t device_len; /* the device's own state, after this */
    struct virtq_wire q[VIRTIO_MAX_QUEUES];
};

size_t virtio_dev_save(struct virtio_dev *vd, uint8_t *buf, size_t len) {
    struct virtio_wire w = {0};
    if (len < sizeof w || vd->ops->out_of_process) return 0;
    snprintf(w.device, sizeof w.device, "%s", vd->ops->name);
    pthread_mutex_lock(&vd->lock);
    w.features = virtio_device_features(vd);
    w.driver_features = vd->driver_features;
    w.isr = vd->isr, w.generation = vd->generation, w.status = vd->status;
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
        const struct virtq *q = &vd->queues[i];
        w.q[i] = (struct virtq_wire){q->num, q->last_avail, q->used_idx, q->ready, 0, q->desc, q->avail, q->used};
    }
    pthread_mutex_unlock(&vd->lock);
    size_t dev_len = 0;
    if (vd->ops->save) {
        dev_len = vd->ops->save(vd, buf + sizeof w, len - sizeof w);
        if (dev_len == 0) return 0;
    }
    w.device_len = (uint32_t)dev_len;
    memcpy(buf, &w, sizeof w);
    return sizeof w + dev_len;
}

int virtio_dev_restore(struct virtio_dev *vd, const uint8_t *buf, size_t len, char *err, size_t errlen) {
    struct virtio_wire w;
    const char *name = vd->ops->name;
    if (len < sizeof w) return snprintf(err, errlen, "%s: saved state cut short", name), -1;
    memcpy(&w, buf, sizeof w);
    if (memchr(w.device, 0, sizeof w.device) == NULL || strcmp(w.device, name) != 0)
        return snprintf(err, errlen, "the snapshot has %.*s where this machine has %s", NAME_LEN, w.device, name), -1;
    if (w.device_len != len - sizeof w) return snprintf(err, errlen, "%s: saved state's length is wrong", name), -1;
    if (w.features != virtio_device_features(vd))
        return snprintf(err, errlen, "%s offers features %#llx here, %#llx in the snapshot (other parameters?)", name,
                        (unsigned long long)virtio_device_features(vd), (unsigned long long)w.features), -1;
    if (w.driver_features & ~w.features) return snprintf(err, errlen, "%s: saved driver features not offered", name), -1;
    if (w.status & ~0x7fu || w.isr > 3) return snprintf(err, errlen, "%s: saved status out of range", name), -1;
    struct virtq qs[VIRTIO_MAX_QUEUES];
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
        const struct virtq_wire *q = &w.q[i];
        qs[i] = (struct virtq){.num = q->num, .ready = q->ready, .desc = q->desc, .avail = q->avail, .used = q->used,
                               .last_avail = q->last_avail, .used_idx = q->used_idx};
        if (q->ready > 1 || (q->ready && (i >= vd->nqueues || !virtio_queue_valid(vd, &qs[i]))) ||
            q->num > vd->ops->queue_max)
            return snprintf(err, errlen, "%s: saved queue %u is not a valid queue in this guest's memory", name, i), -1;
    }
    if (w.device_len && !vd->ops->restore)
        return snprintf(err, errlen, "%s: the snapshot has state for it, and it keeps none", name), -1;
    pthread_mutex_lock(&vd->lock);
    vd->driver_features = w.driver_features;
    vd->isr = w.isr, vd->generation = w.generation, vd->status = w.status;
    memcpy(vd->queues, qs, sizeof qs);
    pthread_mutex_unlock(&vd->lock);
    /* the device's own last: it may adjust the queues (a failed restore's machine is dropped) */
    if (vd->ops->restore && vd->ops->restore(vd, buf + sizeof w, w.device_len) != 0)
        return snprintf(err, errlen, "%s: its own saved state is not one it could have saved", name), -1;
    return 0;
}

void virtio_restore_kick(struct virtio_dev *vd) {
    pthread_mutex_lock(&vd->lock);
    bool running = (vd->status & VIRTIO_STATUS_DRIVER_OK) && !(vd->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    bool ready[VIRTIO_MAX_QUEUES];
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) ready[i] = running && vd->queues[i].ready;
    /* An interrupt the driver had not taken when the state was saved (its ISR bit still set) is
     * raised again: KVM injects an irqfd's edge on a pin from a worker, so the edge of a request
     * completed just before the save can be missing from the saved interrupt controllers, and a
     * driver waiting for it would wait forever. One spare interrupt finds nothing new. */
    struct virtio_irq irq = VIRTIO_NO_IRQ;
    for (unsigned i = 0; i < vd->nqueues && (vd->isr & VIRTIO_ISR_QUEUE); i++)
        if (ready[i]) {
            irq = vd->interrupt_locked(vd, VIRTIO_ISR_QUEUE, (int)i);
            break;
        }
    pthread_mutex_unlock(&vd->lock);
    virtio_raise(vd, irq);
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
        if (ready[i]) virtio_notify_again(vd, i);
}
