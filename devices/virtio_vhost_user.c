/* virtio devices served by another process over vhost-user (devices/vhost_user.h): the
 * transport (virtio-mmio or virtio-pci) stays bellhop's, the rings are the backend's. Each
 * kind is one table entry (its device ID, queues, and where its configuration space comes
 * from); the protocol is the same for all.
 *
 * The guest's doorbell for a queue is a bell as for any device; its handler writes the
 * backend's kick eventfd. The backend's call eventfd is a wait on the loop, whose handler
 * raises the queue's interrupt through the transport (virtio-mmio's interrupt status must be
 * set before the line). The socket is a wait too: when the backend goes, the device fails
 * (DEVICE_NEEDS_RESET and a configuration interrupt) and the rest of the VM goes on.
 *
 * Threads: create, destroy on the main thread; driver_ok and reset on a vCPU thread with the
 * device lock held (they talk to the backend synchronously, bounded by its timeout); the
 * bells, calls and the socket's hangup on the loop. */
#include <errno.h>
#include <lib/async/wait.h>
#include <lib/container_of.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "devices/vhost_user.h"
#include "devices/virtio_vhost_user.h"

#define VIRTIO_ID_FS 26
#define FS_TAG_LEN 36
#define BLK_CONFIG_LEN 60 /* struct virtio_blk_config up to and with write_zeroes_may_unmap */
/* Transport and ring features bellhop's transports carry; the backend's other bits (a packed
 * ring, an IOMMU, notification data) are not offered to the guest. */
#define RING_FEATURES (1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_F_EVENT_IDX | 1ull << VIRTIO_F_INDIRECT_DESC)
#define DEVICE_FEATURES 0xffffffull /* bits 0-23: the device type's own */

struct vhost_kind {
    uint32_t device_id;
    unsigned nqueues;
    uint32_t config_size; /* 0: none */
    bool backend_config;  /* the configuration space is the backend's (GET_CONFIG); else made here */
};

struct queue_call {
    async_wait_t wait;
    struct vhost_dev *v;
    unsigned q;
    zx_handle_t handle;
    bool waiting;
};

struct vhost_dev {
    struct virtio_dev *vd;
    const struct vhost_kind *kind;
    struct vhost_user vu;
    const char *socket;
    uint8_t config[VHOST_USER_CONFIG_MAX];
    int kick[VIRTIO_MAX_QUEUES], call[VIRTIO_MAX_QUEUES];
    struct queue_call calls[VIRTIO_MAX_QUEUES];
    async_wait_t hangup;
    zx_handle_t sock_handle;
    bool hangup_waiting;
    bool started; /* vd->lock: the backend serves the rings */
    bool gone;    /* vd->lock: the backend closed or broke the protocol */
};

static struct vhost_dev *of(struct virtio_dev *vd) { return vd->priv; }

static void arm_call(struct queue_call *c) {
    if (!c->waiting && c->handle != ZX_HANDLE_INVALID)
        c->waiting = async_begin_wait(c->v->vd->env->loop, &c->wait) == ZX_OK;
}

/* The backend used buffers of queue q: the guest's interrupt, through the transport. */
static void on_call(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *s) {
    (void)d, (void)s;
    struct queue_call *c = container_of(w, struct queue_call, wait);
    c->waiting = false;
    if (st != ZX_OK) return;
    uint64_t n;
    if (read(c->v->call[c->q], &n, sizeof n) != sizeof n) n = 0;
    struct virtio_dev *vd = c->v->vd;
    pthread_mutex_lock(&vd->lock);
    struct virtio_irq irq = n ? vd->interrupt_locked(vd, VIRTIO_ISR_QUEUE, (int)c->q) : VIRTIO_NO_IRQ;
    pthread_mutex_unlock(&vd->lock);
    virtio_raise(vd, irq);
    arm_call(c);
}

/* The backend closed its socket (or broke it): the device fails, the VM goes on. */
static void on_hangup(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *s) {
    (void)d, (void)s;
    struct vhost_dev *v = container_of(w, struct vhost_dev, hangup);
    v->hangup_waiting = false;
    if (st != ZX_OK) return;
    struct virtio_dev *vd = v->vd;
    pthread_mutex_lock(&vd->lock);
    bool was = v->gone;
    v->gone = true;
    v->started = false;
    if (!was) virtio_fail_locked(vd, 0, "its vhost-user backend went away");
    pthread_mutex_unlock(&vd->lock);
    if (!was) fprintf(stderr, "bellhop: %s: the vhost-user backend on %s went away\n", vd->ops->name, v->socket);
}

static void vhost_notify(struct virtio_dev *vd, unsigned q) {
    struct vhost_dev *v = of(vd);
    uint64_t one = 1;
    if (q < v->kind->nqueues && write(v->kick[q], &one, sizeof one) != sizeof one)
        fprintf(stderr, "bellhop: %s: cannot kick the backend: %s\n", vd->ops->name, strerror(errno));
}

static void vhost_config(struct virtio_dev *vd, uint8_t *buf) { memcpy(buf, of(vd)->config, vd->config_size); }

/* A failure talking to the backend: the device fails (lock held). */
static void backend_failed(struct vhost_dev *v, const char *what, const char *err) {
    fprintf(stderr, "bellhop: %s: %s: %s\n", v->vd->ops->name, what, err);
    v->gone = true;
    v->started = false;
    virtio_fail_locked(v->vd, 0, "its vhost-user backend failed");
}

/* A region for each part of guest RAM: all of them the one memfd, each from its RAM offset. */
static unsigned ram_regions(const struct vm_env *env, struct vhost_user_region r[2]) {
    struct gm_range part[2];
    unsigned n = gm_ranges(&env->mem, part);
    for (unsigned i = 0; i < n; i++)
        r[i] = (struct vhost_user_region){.guest_addr = part[i].gpa, .size = part[i].size,
                                          .user_addr = (uint64_t)(uintptr_t)(env->mem.host + part[i].off),
                                          .mmap_offset = part[i].off, .fd = env->mem_fd};
    return n;
}

static void vhost_driver_ok(struct virtio_dev *vd) {
    struct vhost_dev *v = of(vd);
    if (v->gone || v->started) return;
    if (vd->env->mem_fd < 0) return backend_failed(v, "starting", "guest memory is not shareable");
    struct vhost_user_region r[2];
    unsigned nr = ram_regions(vd->env, r);
    struct vhost_user_vring rings[VIRTIO_MAX_QUEUES];
    unsigned n = 0;
    for (unsigned i = 0; i < v->kind->nqueues; i++) {
        const struct virtq *q = &vd->queues[i];
        if (!q->ready) break;
        rings[n++] = (struct vhost_user_vring){.num = q->num, .last_avail = q->last_avail,
                                               .desc_user = (uint64_t)(uintptr_t)gm_ptr(&vd->env->mem, q->desc, 1),
                                               .avail_user = (uint64_t)(uintptr_t)gm_ptr(&vd->env->mem, q->avail, 1),
                                               .used_user = (uint64_t)(uintptr_t)gm_ptr(&vd->env->mem, q->used, 1),
                                               .kick_fd = v->kick[i], .call_fd = v->call[i]};
    }
    char err[240];
    if (vhost_user_start(&v->vu, vd->driver_features, r, nr, rings, n, err, sizeof err) != 0)
        return backend_failed(v, "starting", err);
    v->started = true;
}

static void vhost_reset(struct virtio_dev *vd) {
    struct vhost_dev *v = of(vd);
    if (!v->started) return;
    v->started = false;
    char err[240];
    if (vhost_user_stop(&v->vu, v->kind->nqueues, err, sizeof err) != 0) backend_failed(v, "stopping", err);
}

static void vhost_destroy(struct virtio_dev *vd);

static int vhost_make(struct virtio_dev *vd, const struct vhost_kind *kind, const void *params, char *err, size_t errlen) {
    const struct vhost_user_params *p = params;
    if (!p || !p->socket) return snprintf(err, errlen, "%s: no backend socket", vd->ops->name), -1;
    if (vd->env->mem_fd < 0)
        return snprintf(err, errlen, "%s: guest memory is not shareable (the machine makes it so for vhost-user)", vd->ops->name), -1;
    struct vhost_dev *v = calloc(1, sizeof *v);
    if (!v) return snprintf(err, errlen, "out of memory"), -1;
    v->vd = vd, v->kind = kind, v->socket = p->socket, v->sock_handle = ZX_HANDLE_INVALID;
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
        v->kick[i] = v->call[i] = -1;
        v->calls[i] = (struct queue_call){.v = v, .q = i, .handle = ZX_HANDLE_INVALID};
    }
    vd->priv = v;
    char why[240];
    if (vhost_user_connect(&v->vu, p->socket, why, sizeof why) != 0)
        return snprintf(err, errlen, "%s: backend %s", vd->ops->name, why), -1;
    if (kind->config_size && kind->backend_config &&
        vhost_user_get_config(&v->vu, v->config, kind->config_size, why, sizeof why) != 0)
        return snprintf(err, errlen, "%s: backend %s: %s", vd->ops->name, p->socket, why), -1;
    if (kind->device_id == VIRTIO_ID_FS) { /* the tag, and one request queue */
        if (!p->tag || !*p->tag || strlen(p->tag) > FS_TAG_LEN)
            return snprintf(err, errlen, "%s: a tag of 1 to %d bytes is needed", vd->ops->name, FS_TAG_LEN), -1;
        memcpy(v->config, p->tag, strlen(p->tag));
        uint32_t one = 1;
        memcpy(v->config + FS_TAG_LEN, &one, 4);
    }
    if (v->vu.queues < kind->nqueues - (kind->device_id == VIRTIO_ID_FS))
        return snprintf(err, errlen, "%s: the backend has %u queues", vd->ops->name, v->vu.queues), -1;
    for (unsigned i = 0; i < kind->nqueues; i++) {
        v->kick[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        v->call[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (v->kick[i] < 0 || v->call[i] < 0 || zx_fd_create(v->call[i], 0, &v->calls[i].handle) != ZX_OK)
            return snprintf(err, errlen, "%s: eventfds: %s", vd->ops->name, strerror(errno)), -1;
        v->calls[i].wait = (async_wait_t){.handler = on_call, .object = v->calls[i].handle, .trigger = ZX_FD_READABLE};
        arm_call(&v->calls[i]);
    }
    if (zx_fd_create(v->vu.fd, 0, &v->sock_handle) == ZX_OK) {
        v->hangup = (async_wait_t){.handler = on_hangup, .object = v->sock_handle, .trigger = ZX_FD_HANGUP | ZX_FD_ERROR};
        v->hangup_waiting = async_begin_wait(vd->env->loop, &v->hangup) == ZX_OK;
    }
    vd->features = (v->vu.features & DEVICE_FEATURES) | (v->vu.features & RING_FEATURES);
    vd->features_exact = true;
    vd->config_size = kind->config_size;
    return 0;
}

/* The loop is gone first. */
static void vhost_destroy(struct virtio_dev *vd) {
    struct vhost_dev *v = of(vd);
    if (!v) return;
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
        if (v->calls[i].handle != ZX_HANDLE_INVALID) zx_handle_close(v->calls[i].handle);
        if (v->kick[i] >= 0) close(v->kick[i]);
        if (v->call[i] >= 0) close(v->call[i]);
    }
    if (v->sock_handle != ZX_HANDLE_INVALID) zx_handle_close(v->sock_handle);
    vhost_user_close(&v->vu);
    free(v);
}

/* What a failed create made goes at once (destroy is owed only for a device made). */
static int vhost_create(struct virtio_dev *vd, const struct vhost_kind *kind, const void *params, char *err, size_t errlen) {
    if (vhost_make(vd, kind, params, err, errlen) == 0) return 0;
    vhost_destroy(vd);
    vd->priv = NULL;
    return -1;
}

static const struct vhost_kind blk_kind = {.device_id = VIRTIO_ID_BLOCK, .nqueues = 1, .config_size = BLK_CONFIG_LEN,
                                           .backend_config = true};
static const struct vhost_kind fs_kind = {.device_id = VIRTIO_ID_FS, .nqueues = 2, .config_size = FS_TAG_LEN + 4};

static int blk_create(struct virtio_dev *vd, const void *p, char *err, size_t n) { return vhost_create(vd, &blk_kind, p, err, n); }
static int fs_create(struct virtio_dev *vd, const void *p, char *err, size_t n) { return vhost_create(vd, &fs_kind, p, err, n); }

#define VHOST_OPS(ident, dev_name, id, queues, create_)                                                         \
    const struct virtio_device_ops ident = {                                                                       \
        .name = dev_name, .device_id = id, .nqueues = queues, .queue_max = VIRTQ_MAX_SIZE, .create = create_,     \
        .destroy = vhost_destroy, .config_read = vhost_config, .queue_notify = vhost_notify,                       \
        .driver_ok = vhost_driver_ok, .reset = vhost_reset, .out_of_process = true}

VHOST_OPS(vhost_user_blk_ops, "vhost-user-blk", VIRTIO_ID_BLOCK, 1, blk_create);
VHOST_OPS(vhost_user_fs_ops, "vhost-user-fs", VIRTIO_ID_FS, 2, fs_create);
