/* virtio-net over tap. */
#include <errno.h>
#include <fcntl.h>
#include <lib/async/wait.h>
#include <lib/container_of.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "devices/virtio_net.h"

#define RXQ 0
#define TXQ 1
#define F_MAC 5
#define HDR_LEN 12 /* virtio_net_hdr with num_buffers (VERSION_1) */

struct virtio_net {
    async_wait_t wait;
    struct vm_env *env;
    struct virtio_dev *vd;
    int fd;
    zx_handle_t handle;
    bool waiting; /* loop thread */
    bool have_rx;      /* rx holds a receive buffer taken from the ring (loop thread) */
    struct virtq_req *rx;
    uint8_t mac[6];
};

static struct virtio_net *net_of(struct virtio_dev *vd) { return vd->priv; }

static void net_config(struct virtio_dev *vd, uint8_t *buf) { memcpy(buf, net_of(vd)->mac, 6); }

static void arm(struct virtio_net *n) {
    if (!n->waiting && n->handle != ZX_HANDLE_INVALID)
        n->waiting = async_begin_wait(n->env->loop, &n->wait) == ZX_OK;
}

/* Frames from the tap into receive buffers, while both last (loop thread). A buffer taken
 * when no frame was waiting is kept for the next frame (the avail ring cannot give it back). */
static void receive(struct virtio_net *n) {
    for (;;) {
        if (!n->have_rx && !(n->have_rx = virtio_pop(n->vd, RXQ, n->rx)))
            return; /* no buffers: the driver's next receive notify resumes */
        struct virtq_req *r = n->rx;
        struct iovec iov[VIRTQ_MAX_SEGMENTS];
        for (unsigned i = 0; i < r->nin; i++) iov[i] = (struct iovec){r->in[i].p, r->in[i].len};
        ssize_t len = readv(n->fd, iov, (int)r->nin);
        if (len < 0 && (errno == EAGAIN || errno == EINTR)) break;
        if (len < HDR_LEN) len = 0; /* a buffer too small for the header, or a tap error */
        uint16_t one = 1; /* num_buffers is 1 without VIRTIO_NET_F_MRG_RXBUF */
        if (len) virtq_req_write(r, 10, &one, 2);
        virtio_push(n->vd, RXQ, r, (uint32_t)len);
        n->have_rx = false;
    }
    arm(n);
}

static void on_readable(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *s) {
    (void)d, (void)s;
    struct virtio_net *n = container_of(w, struct virtio_net, wait);
    n->waiting = false;
    if (st == ZX_OK) receive(n);
}

static void transmit(struct virtio_net *n) {
    struct virtq_req req, *r = &req;
    while (virtio_pop(n->vd, TXQ, r)) {
        struct iovec iov[VIRTQ_MAX_SEGMENTS];
        for (unsigned i = 0; i < r->nout; i++) iov[i] = (struct iovec){r->out[i].p, r->out[i].len};
        if (r->out_len >= HDR_LEN && writev(n->fd, iov, (int)r->nout) < 0 && errno != EAGAIN) {
            /* a tap that is down drops the frame, as a cable would */
        }
        virtio_push(n->vd, TXQ, r, 0);
    }
}

static void net_notify(struct virtio_dev *vd, unsigned q) {
    struct virtio_net *n = net_of(vd);
    if (q == TXQ) transmit(n);
    else arm(n); /* new receive buffers: wait for frames again */
}

/* The device over fd, which it takes; its MAC address is mac, or else seeded from name. */
static int net_make(struct virtio_dev *vd, int fd, const char *name, const uint8_t *mac, char *err, size_t errlen) {
    struct virtio_net *n = calloc(1, sizeof *n);
    if (!n || !(n->rx = malloc(sizeof *n->rx))) {
        snprintf(err, errlen, "%s: out of memory", name);
        free(n);
        close(fd);
        return -1;
    }
    n->env = vd->env;
    n->vd = vd;
    n->fd = fd;
    n->handle = ZX_HANDLE_INVALID;
    /* A locally administered address, the same for the same interface name. */
    uint32_t h = 2166136261u;
    for (const char *c = name; *c; c++) h = (h ^ (uint8_t)*c) * 16777619u;
    uint8_t seeded[6] = {0x52, 0x54, (uint8_t)(h >> 24), (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h};
    memcpy(n->mac, mac ? mac : seeded, 6);
    if (zx_fd_create(fd, 0, &n->handle) == ZX_OK)
        n->wait = (async_wait_t){.handler = on_readable, .object = n->handle, .trigger = ZX_FD_READABLE};
    vd->priv = n;
    vd->features = 1ull << F_MAC;
    vd->config_size = 6;
    return 0;
}

/* Opens (creating it, if allowed) the tap `ifname`. */
static int open_tap(const char *ifname, char *err, size_t errlen) {
    if (strlen(ifname) >= IFNAMSIZ) {
        snprintf(err, errlen, "tap %s: name too long", ifname);
        return -1;
    }
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "tap %s: /dev/net/tun: %s", ifname, strerror(errno));
        return -1;
    }
    struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
    int hdr = HDR_LEN;
    if (ioctl(fd, TUNSETIFF, &ifr) != 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr) != 0 ||
        ioctl(fd, TUNSETOFFLOAD, 0) != 0) {
        snprintf(err, errlen, "tap %s: %s", ifname, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int net_create(struct virtio_dev *vd, const void *params, char *err, size_t errlen) {
    const struct virtio_net_params *p = params;
    if (!p) {
        snprintf(err, errlen, "virtio-net: no tap interface (--net tap=NAME)");
        return -1;
    }
    const uint8_t *mac = p->has_mac ? p->mac : NULL;
    if (!p->tap) return net_make(vd, p->fd, p->name ? p->name : "virtio-net", mac, err, errlen);
    int fd = open_tap(p->tap, err, errlen);
    return fd < 0 ? -1 : net_make(vd, fd, p->tap, mac, err, errlen);
}

/* The loop is gone first. */
static void net_destroy(struct virtio_dev *vd) {
    struct virtio_net *n = net_of(vd);
    if (n->handle != ZX_HANDLE_INVALID) zx_handle_close(n->handle);
    close(n->fd);
    free(n->rx);
    free(n);
}

/* A receive buffer taken from the ring and kept for the next frame is not in the snapshot: the
 * restored device takes it from the ring again (its avail entry is still there), so that no
 * buffer the driver gave is lost. (Loop thread, or before the guest runs; nothing else is kept
 * here: the tap, the MAC, are the parameters'.) */
static size_t net_save(struct virtio_dev *vd, uint8_t *buf, size_t len) {
    if (len < 1) return 0;
    buf[0] = net_of(vd)->have_rx;
    return 1;
}

static int net_restore(struct virtio_dev *vd, const uint8_t *buf, size_t len) {
    if (len != 1 || buf[0] > 1) return -1;
    if (buf[0]) { /* the virtio core set the queues before this */
        pthread_mutex_lock(&vd->lock);
        vd->queues[RXQ].last_avail--;
        pthread_mutex_unlock(&vd->lock);
    }
    return 0;
}

const struct virtio_device_ops virtio_net_ops = {
    .save = net_save,
    .restore = net_restore,
    .name = "virtio-net",
    .device_id = VIRTIO_ID_NET,
    .nqueues = 2,
    .queue_max = VIRTQ_MAX_SIZE,
    .create = net_create,
    .destroy = net_destroy,
    .config_read = net_config,
    .queue_notify = net_notify,
};
