/* virtio-net over a tap, over user-mode networking (net/user.h), or over a stream socket in
 * QEMU's format (devices/net_stream.h): passt's (net/passt.h), or any peer's. */
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

#include "base/unix_socket.h"
#include "devices/net_mmds.h"
#include "devices/net_stream.h"
#include "devices/virtio_net.h"
#include "net/passt.h"
#include "net/user.h"

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
    bool rx_full;      /* ... and a frame of rx_len bytes read into it, not yet the driver's */
    uint32_t rx_len;
    struct virtq_req *rx;
    uint8_t mac[6];
    struct virtio_throttle rx_limit, tx_limit;
    /* fd in QEMU's stream format: frames in pieces, the header ours (loop thread); NULL else */
    struct net_stream *stream;
    async_wait_t wwait; /* ...the socket writable again, for the rest of a frame it did not take */
    bool wwaiting, down_told;
    char *peer; /* its name, for the one line that says the link went down */
    bool socket_gone; /* fd a socket (bellhop-net's), whose other end closed: nothing to wait for */
    struct net_mmds *mmds; /* MMDS on this link (devices/net_mmds.h), or NULL */
};

static struct virtio_net *net_of(struct virtio_dev *vd) { return vd->priv; }

static void net_config(struct virtio_dev *vd, uint8_t *buf) { memcpy(buf, net_of(vd)->mac, 6); }

static void arm(struct virtio_net *n) {
    if (!n->waiting && n->handle != ZX_HANDLE_INVALID && !(n->stream && n->stream->down) && !n->socket_gone)
        n->waiting = async_begin_wait(n->env->loop, &n->wait) == ZX_OK;
    if (n->mmds) net_mmds_arm(n->mmds, n->env->loop);
}

/* The stream's peer is gone (or broke the format): said once; the guest goes on, as with a
 * cable pulled: its frames are dropped, nothing arrives. */
static void tell_if_down(struct virtio_net *n) {
    if (!n->stream->down || n->down_told) return;
    n->down_told = true;
    fprintf(stderr, "bellhop: virtio-net: %s: %s; the link is down (frames to it are dropped)\n", n->peer,
            n->stream->why);
}

/* The stream's next frame read on into the held receive buffer, after a zero header: as
 * read_frame. A frame arrives in pieces: one begun stays in the buffer for the next call. */
static ssize_t read_stream_frame(struct virtio_net *n) {
    static const uint8_t zero[HDR_LEN];
    struct virtq_req *r = n->rx;
    if (r->in_len < HDR_LEN) return 0;
    struct iovec iov[VIRTQ_MAX_SEGMENTS];
    unsigned k = 0;
    struct virtq_cursor c = virtq_cursor(r, true, HDR_LEN, r->in_len - HDR_LEN);
    for (struct virtq_buf piece; virtq_next(&c, &piece);) iov[k++] = (struct iovec){piece.p, piece.len};
    ssize_t len = net_stream_recv(n->stream, iov, k);
    if (len < 0) {
        tell_if_down(n);
        return -1;
    }
    virtq_req_write(r, 0, zero, HDR_LEN);
    return len + HDR_LEN;
}

/* The frame waiting at the tap, read into the held receive buffer: its length (0 for a buffer
 * too small for the header, or a tap error: the buffer goes back empty), or -1 for none (a
 * socket whose other end closed too: a tap has none). */
static ssize_t read_frame(struct virtio_net *n) {
    struct virtq_req *r = n->rx;
    struct iovec iov[VIRTQ_MAX_SEGMENTS];
    for (unsigned i = 0; i < r->nin; i++) iov[i] = (struct iovec){r->in[i].p, r->in[i].len};
    /* MMDS's frames first (few, and answers the guest waits for), but never into a buffer a
     * stream's frame has begun in */
    if (n->mmds && !(n->stream && net_stream_rx_begun(n->stream))) {
        ssize_t len = net_mmds_recv(n->mmds, iov, r->nin);
        if (len >= 0) return len < HDR_LEN ? 0 : len;
    }
    if (n->stream) return read_stream_frame(n);
    ssize_t len = readv(n->fd, iov, (int)r->nin);
    if (len < 0 && (errno == EAGAIN || errno == EINTR)) return -1;
    if (len <= 0 && unix_socket_closed(n->fd)) {
        /* a closed end reads as 0 forever: answering each buffer with an empty frame would
         * spin with a driver that gives them back at once */
        if (!n->socket_gone) fprintf(stderr, "bellhop: virtio-net: its network's process ended; the link is down\n");
        n->socket_gone = true;
        return -1;
    }
    return len < HDR_LEN ? 0 : len;
}

/* The held buffer and its frame to the driver. */
static void deliver(struct virtio_net *n) {
    uint16_t one = 1; /* num_buffers is 1 without VIRTIO_NET_F_MRG_RXBUF */
    if (n->rx_len) virtq_req_write(n->rx, 10, &one, 2);
    virtio_push(n->vd, RXQ, n->rx, n->rx_len);
    n->have_rx = n->rx_full = false;
}

/* Frames from the tap into receive buffers, while both last (loop thread). A buffer taken
 * when no frame was waiting is kept for the next frame.
 * A frame's cost for the rx limit is its length, known only once it is read: a tap cannot be
 * peeked at as a socket can. So it is read into its buffer, and charged there; one the limiter
 * cannot pay yet stays in that buffer, not the driver's, until the limiter's timer brings us
 * back, and no other frame is read meanwhile: the tap's own queue keeps the rest, in order,
 * and (past its length) drops them as a link that is too slow would. */
/* A buffer taken before the driver reset the device belongs to no ring now: forgotten (its
 * frame, if one was read into it, with it), never written. */
static bool held_is_current(struct virtio_net *n) {
    pthread_mutex_lock(&n->vd->lock);
    bool current = n->rx->generation == n->vd->generation && n->vd->queues[RXQ].ready;
    pthread_mutex_unlock(&n->vd->lock);
    return current;
}

static void receive(struct virtio_net *n) {
    if (n->have_rx && !held_is_current(n)) {
        if (n->stream) net_stream_rx_abandon(n->stream);
        n->have_rx = n->rx_full = false;
    }
    for (;;) {
        if (!n->have_rx && !(n->have_rx = virtio_pop(n->vd, RXQ, n->rx)))
            return; /* no buffers: the driver's next receive notify resumes */
        if (!n->rx_full) {
            ssize_t len = read_frame(n);
            if (len < 0) break;
            n->rx_full = true;
            n->rx_len = (uint32_t)len;
        }
        if (virtio_throttle_limits(&n->rx_limit) && n->rx_len && !virtio_throttle_take(&n->rx_limit, RXQ, n->rx_len, 1))
            return; /* the frame waits for the limiter's timer, the tap with it */
        deliver(n);
    }
    arm(n);
}

static void rx_resume(struct virtio_dev *vd, unsigned q) {
    (void)q;
    receive(net_of(vd));
}

static void on_readable(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *s) {
    (void)d, (void)s;
    struct virtio_net *n = container_of(w, struct virtio_net, wait);
    n->waiting = false;
    if (st == ZX_OK) receive(n);
}

static void on_mmds_readable(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *s) {
    (void)d, (void)s;
    struct net_mmds *m = container_of(w, struct net_mmds, wait);
    m->waiting = false;
    if (st == ZX_OK) receive((struct virtio_net *)m->owner);
}

/* r's frame to MMDS when it is MMDS's (its Ethernet header, past the virtio_net_hdr, says). */
static bool sent_to_mmds(struct virtio_net *n, const struct virtq_req *r) {
    uint8_t head[HDR_LEN + 14 + 28];
    size_t got = virtq_req_read(r, 0, head, sizeof head);
    if (got <= HDR_LEN || !net_mmds_wants(n->mmds, head + HDR_LEN, got - HDR_LEN)) return false;
    struct iovec iov[VIRTQ_MAX_SEGMENTS];
    for (unsigned i = 0; i < r->nout; i++) iov[i] = (struct iovec){r->out[i].p, r->out[i].len};
    net_mmds_send(n->mmds, iov, r->nout);
    return true;
}

static void wait_writable(struct virtio_net *n) {
    if (!n->wwaiting) n->wwaiting = async_begin_wait(n->env->loop, &n->wwait) == ZX_OK;
}

/* The frame of r to the stream, past its header: false when the socket took only part of it,
 * the rest kept to be written before any other frame (a peer that reads slowly holds up the
 * transmit queue, never cuts a frame). An empty one is dropped, as is every one once the link is down. */
static bool send_stream_frame(struct virtio_net *n, const struct virtq_req *r) {
    if (r->out_len <= HDR_LEN) return true;
    struct iovec iov[VIRTQ_MAX_SEGMENTS];
    unsigned k = 0;
    struct virtq_cursor c = virtq_cursor(r, false, HDR_LEN, r->out_len - HDR_LEN);
    for (struct virtq_buf piece; virtq_next(&c, &piece);) iov[k++] = (struct iovec){piece.p, piece.len};
    enum net_stream_sent sent = net_stream_send(n->stream, iov, k);
    tell_if_down(n);
    return sent != NET_STREAM_PENDING;
}

/* The rest of the last frame written: true once it all went (or the link is down), false to
 * wait until the socket is writable. */
static bool stream_flushed(struct virtio_net *n) {
    bool done = net_stream_flush(n->stream);
    tell_if_down(n);
    if (!done) wait_writable(n);
    return done;
}

/* Frames from the transmit queue to the tap; with a tx limit, a frame the limiter cannot pay
 * yet goes back to its ring until the limiter's timer brings us back. */
static void transmit(struct virtio_net *n) {
    struct virtq_req req, *r = &req;
    if (n->stream && !stream_flushed(n)) return; /* the writable wait brings us back */
    while (virtio_pop(n->vd, TXQ, r)) {
        if (virtio_throttle_limits(&n->tx_limit) && !virtio_throttle_take(&n->tx_limit, TXQ, r->out_len, 1)) {
            virtio_unpop(n->vd, TXQ, r->generation);
            return;
        }
        if (n->mmds && sent_to_mmds(n, r)) {
            virtio_push(n->vd, TXQ, r, 0);
            continue;
        }
        if (n->stream) {
            bool whole = send_stream_frame(n, r);
            virtio_push(n->vd, TXQ, r, 0); /* (its rest, if any, is the device's now) */
            if (whole) continue;
            wait_writable(n);
            return;
        }
        struct iovec iov[VIRTQ_MAX_SEGMENTS];
        for (unsigned i = 0; i < r->nout; i++) iov[i] = (struct iovec){r->out[i].p, r->out[i].len};
        if (r->out_len >= HDR_LEN && writev(n->fd, iov, (int)r->nout) < 0 && errno != EAGAIN) {
            /* a tap that is down drops the frame, as a cable would */
        }
        virtio_push(n->vd, TXQ, r, 0);
    }
}

static void on_writable(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *s) {
    (void)d, (void)s;
    struct virtio_net *n = container_of(w, struct virtio_net, wwait);
    n->wwaiting = false;
    if (st == ZX_OK) transmit(n);
}

static void net_notify(struct virtio_dev *vd, unsigned q) {
    struct virtio_net *n = net_of(vd);
    if (q == TXQ) transmit(n);
    else arm(n); /* new receive buffers: wait for frames again */
}

/* fd's frames in QEMU's stream format, for n. */
static bool make_stream(struct virtio_net *n, int fd, const char *name) {
    if (!(n->stream = malloc(sizeof *n->stream)) || !(n->peer = strdup(name))) return false;
    if (net_stream_init(n->stream, fd) == 0) return true;
    free(n->stream);
    n->stream = NULL;
    return false;
}

static void net_free(struct virtio_net *n) {
    if (n->mmds) net_mmds_stop(n->mmds);
    free(n->mmds);
    if (n->stream) net_stream_fini(n->stream);
    free(n->stream);
    free(n->peer);
    free(n->rx);
    free(n);
}

/* The device over fd, which it takes (in QEMU's stream format when `stream`); its MAC address
 * is p's, or else seeded from name. */
static int net_make(struct virtio_dev *vd, int fd, const char *name, bool stream, const struct virtio_net_params *p,
                    char *err, size_t errlen) {
    struct virtio_net *n = calloc(1, sizeof *n);
    if (!n || !(n->rx = malloc(sizeof *n->rx)) || (stream && !make_stream(n, fd, name))) {
        snprintf(err, errlen, "%s: out of memory", name);
        if (n) net_free(n);
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
    memcpy(n->mac, p->has_mac ? p->mac : seeded, 6);
    if (zx_fd_create(fd, 0, &n->handle) == ZX_OK) {
        n->wait = (async_wait_t){.handler = on_readable, .object = n->handle, .trigger = ZX_FD_READABLE};
        /* (a peer gone is a hangup, maybe never writable: what the next write finds, the link down) */
        n->wwait = (async_wait_t){.handler = on_writable, .object = n->handle,
                                  .trigger = ZX_FD_WRITABLE | ZX_FD_HANGUP | ZX_FD_ERROR};
    }
    virtio_throttle_init(&n->rx_limit, vd, &p->rx_limiter);
    n->rx_limit.resume = rx_resume;
    virtio_throttle_init(&n->tx_limit, vd, &p->tx_limiter);
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

/* MMDS on the link made by net_make (devices/net_mmds.h). */
static int add_mmds(struct virtio_dev *vd, const struct virtio_net_params *p, char *err, size_t errlen) {
    struct virtio_net *n = net_of(vd);
    if (!(n->mmds = malloc(sizeof *n->mmds))) {
        snprintf(err, errlen, "MMDS: out of memory");
        return -1;
    }
    if (net_mmds_start(n->mmds, p->mmds_addr, p->mmds_socket, on_mmds_readable, err, errlen) != 0) {
        free(n->mmds);
        n->mmds = NULL;
        return -1;
    }
    n->mmds->owner = n;
    return 0;
}

static int make_link(struct virtio_dev *vd, const struct virtio_net_params *p, char *err, size_t errlen);

static void net_destroy(struct virtio_dev *vd);

static int net_create(struct virtio_dev *vd, const void *params, char *err, size_t errlen) {
    const struct virtio_net_params *p = params;
    if (make_link(vd, p, err, errlen) != 0) return -1;
    if (!p || !p->mmds_addr || add_mmds(vd, p, err, errlen) == 0) return 0;
    net_destroy(vd);
    return -1;
}

/* The device over its network (tap, user, passt, stream or a given fd). */
static int make_link(struct virtio_dev *vd, const struct virtio_net_params *p, char *err, size_t errlen) {
    if (!p) {
        snprintf(err, errlen, "virtio-net: no tap interface (--net tap=NAME)");
        return -1;
    }
    if (p->user) { /* bellhop-net at fd's other end: it ends when the device closes fd */
        int fd;
        return net_user_spawn(p->user, &fd, err, errlen) != 0 ? -1 : net_make(vd, fd, "user", false, p, err, errlen);
    }
    if (p->passt) { /* passt at fd's other end: it ends when the device closes fd (its -1) */
        int fd;
        return net_passt_spawn(p->passt, &fd, err, errlen) != 0 ? -1 : net_make(vd, fd, "passt", true, p, err, errlen);
    }
    if (p->stream) {
        int fd = net_stream_connect(p->stream, err, errlen);
        return fd < 0 ? -1 : net_make(vd, fd, p->stream, true, p, err, errlen);
    }
    if (!p->tap) return net_make(vd, p->fd, p->name ? p->name : "virtio-net", p->fd_stream, p, err, errlen);
    int fd = open_tap(p->tap, err, errlen);
    return fd < 0 ? -1 : net_make(vd, fd, p->tap, false, p, err, errlen);
}

void virtio_net_set_limiters(struct virtio_dev *vd, const struct rate_limiter_config *rx,
                             const struct rate_limiter_config *tx) {
    struct virtio_net *n = net_of(vd);
    virtio_throttle_set(&n->rx_limit, rx);
    virtio_throttle_set(&n->tx_limit, tx);
}

/* The loop is gone first (the limiters' timers ran or were canceled). */
static void net_destroy(struct virtio_dev *vd) {
    struct virtio_net *n = net_of(vd);
    virtio_throttle_stop(&n->rx_limit);
    virtio_throttle_stop(&n->tx_limit);
    if (n->handle != ZX_HANDLE_INVALID) zx_handle_close(n->handle);
    close(n->fd);
    net_free(n);
}

/* Before a snapshot saves anything (every vCPU parked): a frame held for the rx limiter goes to
 * the driver now, whatever the limiter says, so that the snapshot does not lose it with its
 * buffer (the restored device's buckets start full: Firecracker saves none). */
static void net_quiesce(struct virtio_dev *vd) {
    struct virtio_net *n = net_of(vd);
    if (n->rx_full) deliver(n);
}

/* A receive buffer taken from the ring and kept for the next frame is not in the snapshot: the
 * restored device takes it from the ring again (its avail entry is still there), so that no
 * buffer the driver gave is lost. (Loop thread, after quiesce, or before the guest runs;
 * nothing else is kept here: the tap, the MAC, the limits are the parameters'.) */
static size_t net_save(struct virtio_dev *vd, uint8_t *buf, size_t len) {
    if (len < 1) return 0;
    struct virtio_net *n = net_of(vd);
    buf[0] = n->have_rx && held_is_current(n);
    return 1;
}

static int net_restore(struct virtio_dev *vd, const uint8_t *buf, size_t len) {
    if (len != 1 || buf[0] > 1) return -1;
    /* the virtio core restored the queues and generation */
    if (buf[0] && vd->queues[RXQ].ready) virtio_unpop(vd, RXQ, vd->generation);
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
    .quiesce = net_quiesce,
};
