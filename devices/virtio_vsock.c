/* virtio-vsock (devices/virtio_vsock.h): the virtio side. devices/vsock_conn.c is the host's.
 *
 * A connection (struct vsock_conn) is one stream between a guest port and a host port, with
 * one Unix socket on the host. Its states:
 *   LINE      a client the listener accepted, until its "CONNECT <port>\n" (bad, or none
 *             within the timeout: closed); the guest knows nothing of it yet;
 *   HOST_REQ  it asked for guest port <port> from a host port of its own (counting up from
 *             2^30): REQUEST owed or sent; the guest's RESPONSE opens it (the client reads
 *             "OK <host port>\n"), its RST or its silence (the timeout) closes the client;
 *   OPEN      bytes both ways under credit: the guest's go to the socket, or wait in the
 *             connection's ring (at most the VSOCK_CONN_BUF it was offered: a guest sending
 *             more is broken, and is answered RST); the socket is read straight into the
 *             guest's receive buffers, only while the guest has credit and gives buffers.
 *             A guest connecting to host port P reaches "<uds_path>_P" (a connect that fails
 *             is an RST) and is OPEN at once, its RESPONSE owed. Either side shuts down its
 *             directions: the guest's SHUTDOWN is shutdown(2) on the socket (SHUT_WR once the
 *             ring is empty), the socket's EOF a SHUTDOWN to the guest; once neither will
 *             send (or the guest will neither send nor receive) and the ring is empty, or
 *             the ring has not drained within the timeout, the connection ends;
 *   DEAD      ended: the socket is closed, an RST owed to the guest; freed once it is sent.
 * The guest's RST frees a connection at once, without an answer.
 *
 * Who owns what: struct vsock (the device's priv) owns the listener, every connection (its
 * table, the hash of the guest's keys, the list of those that owe the guest packets), the
 * timer, a held receive buffer, and a small ring of RSTs owed for packets of connections that
 * do not exist. A connection owns its socket, its wait on the loop and its ring. What a
 * connection owes the guest are flags (REQUEST, RESPONSE, CREDIT_UPDATE, SHUTDOWN, RST, and
 * "the socket has bytes"): bounded, whatever the guest does while it gives no receive buffers.
 * Everything runs on the loop thread; a device reset (a vCPU's) only moves vd->generation,
 * which the next handler sees (vsock_sync) and drops every connection of the old driver. */
#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zircon/syscalls.h>

#include "devices/vsock_conn.h"

#define RXQ 0
#define TXQ 1
#define EVQ 2
#define PACKETS_PER_TURN 256 /* each way, before the other devices on the loop get a turn */

_Static_assert(sizeof(struct virtio_vsock_hdr) == VSOCK_HDR_LEN, "the spec's header");

static struct vsock *vsock_of(struct virtio_dev *vd) { return vd->priv; }

/* A guest's header, in host order. */
struct packet {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port, len, flags, buf_alloc, fwd_cnt;
    uint16_t type, op;
};

static struct packet parse(const struct virtio_vsock_hdr *h) {
    return (struct packet){.src_cid = le64toh(h->src_cid), .dst_cid = le64toh(h->dst_cid),
                           .src_port = le32toh(h->src_port), .dst_port = le32toh(h->dst_port),
                           .len = le32toh(h->len), .flags = le32toh(h->flags), .buf_alloc = le32toh(h->buf_alloc),
                           .fwd_cnt = le32toh(h->fwd_cnt), .type = le16toh(h->type), .op = le16toh(h->op)};
}

static void config_read(struct virtio_dev *vd, uint8_t *buf) {
    uint64_t cid = htole64(vsock_of(vd)->guest_cid);
    memcpy(buf, &cid, sizeof cid);
}

bool vsock_sync(struct vsock *v) {
    pthread_mutex_lock(&v->vd->lock);
    uint32_t generation = v->vd->generation;
    pthread_mutex_unlock(&v->vd->lock);
    if (generation == v->generation) return false;
    v->generation = generation;
    vsock_conn_free_all(v);
    v->nrsts = 0;
    v->have_rx = false; /* its ring is gone */
    v->reset_event_owed = false;
    return true;
}

/* ---- to the guest ---- */

static void put_header(const struct vsock *v, const struct virtq_req *r, uint32_t host_port, uint32_t guest_port,
                       uint16_t op, uint32_t len, uint32_t flags, const struct vsock_conn *c) {
    struct virtio_vsock_hdr h = {
        .src_cid = htole64(VSOCK_HOST_CID), .dst_cid = htole64(v->guest_cid), .src_port = htole32(host_port),
        .dst_port = htole32(guest_port), .len = htole32(len), .type = htole16(VIRTIO_VSOCK_TYPE_STREAM),
        .op = htole16(op), .flags = htole32(flags), .buf_alloc = htole32(c ? VSOCK_CONN_BUF : 0),
        .fwd_cnt = htole32(c ? c->fwd_cnt : 0)};
    virtq_req_write(r, 0, &h, sizeof h);
}

/* The socket's bytes into the buffer: how many (0: none after all, and what now follows is
 * set: EOF owes a SHUTDOWN, an error an RST, nothing there a wait). */
static uint32_t read_for_guest(struct vsock_conn *c, const struct virtq_req *r) {
    uint64_t room = r->in_len - VSOCK_HDR_LEN;
    uint32_t max = vsock_guest_credit(c);
    if (max > VSOCK_MAX_PKT) max = VSOCK_MAX_PKT;
    if (max > room) max = (uint32_t)room;
    ssize_t n = vsock_conn_read(c, r, VSOCK_HDR_LEN, max);
    if (n > 0) {
        c->sent_to_guest += (uint32_t)n;
        return (uint32_t)n;
    }
    if (n == 0) { /* the host sends no more; it may still read */
        c->host_eof = true;
        c->owe_shutdown |= VIRTIO_VSOCK_SHUTDOWN_SEND;
    } else if (n == -1) {
        c->host_readable = false;
    } else {
        vsock_conn_reset(c);
    }
    return 0;
}

/* c's next packet into r (which holds a header): its length, 0 when it had none after all. */
static uint32_t conn_packet(struct vsock_conn *c, const struct virtq_req *r) {
    uint16_t op;
    uint32_t len = 0, flags = 0;
    if (c->owe_request) {
        op = VIRTIO_VSOCK_OP_REQUEST;
        c->owe_request = false;
        c->guest_knows = true;
    } else if (c->owe_response) {
        op = VIRTIO_VSOCK_OP_RESPONSE;
        c->owe_response = false;
    } else if (c->owe_credit) {
        op = VIRTIO_VSOCK_OP_CREDIT_UPDATE;
    } else if (c->host_readable && vsock_conn_wants_host_bytes(c) && r->in_len > VSOCK_HDR_LEN) {
        if (!(len = read_for_guest(c, r))) return 0;
        op = VIRTIO_VSOCK_OP_RW;
    } else if (c->owe_shutdown) {
        op = VIRTIO_VSOCK_OP_SHUTDOWN;
        flags = c->owe_shutdown;
        c->owe_shutdown = 0;
    } else {
        return 0;
    }
    put_header(c->v, r, c->host_port, c->guest_port, op, len, flags, c);
    c->fwd_cnt_told = c->fwd_cnt; /* every packet tells the guest our count */
    c->owe_credit = false;
    return VSOCK_HDR_LEN + len;
}

/* The next packet owed, RSTs first: its length, 0 when the connection had none after all. */
static uint32_t next_packet(struct vsock *v, const struct virtq_req *r) {
    if (v->nrsts) {
        struct vsock_rst x = v->rsts[v->rst_first];
        v->rst_first = (v->rst_first + 1) % VSOCK_RST_RING;
        v->nrsts--;
        put_header(v, r, x.host_port, x.guest_port, VIRTIO_VSOCK_OP_RST, 0, 0, NULL);
        return VSOCK_HDR_LEN;
    }
    struct vsock_conn *c = v->rx_head;
    vsock_conn_queue(c, false); /* back at the end if it owes more: each connection in turn */
    if (c->owe_rst) {
        put_header(v, r, c->host_port, c->guest_port, VIRTIO_VSOCK_OP_RST, 0, 0, c);
        vsock_conn_free(c);
        return VSOCK_HDR_LEN;
    }
    uint32_t len = conn_packet(c, r);
    vsock_conn_changed(c);
    return len;
}

void vsock_rx_pump(struct vsock *v) {
    for (unsigned n = 0; v->nrsts || v->rx_head; n++) {
        if (n == PACKETS_PER_TURN && virtio_notify_again(v->vd, RXQ)) return;
        if (!v->have_rx && !(v->have_rx = virtio_pop(v->vd, RXQ, v->rx))) return; /* its next notify resumes */
        const struct virtq_req *r = v->rx;
        uint32_t len = r->in_len >= VSOCK_HDR_LEN ? next_packet(v, r) : 0;
        if (!len && r->in_len > VSOCK_HDR_LEN) continue; /* nothing after all: the buffer waits */
        /* A buffer too small for a header, or for any data when data is all that is owed, goes
         * back empty: each turn of this loop sends a packet, changes what is owed, or uses up
         * one of the guest's buffers. */
        virtio_push(v->vd, RXQ, r, len);
        v->have_rx = false;
    }
}

void vsock_conn_changed(struct vsock_conn *c) {
    if (c->state == VSOCK_OPEN && c->guest_no_send && (c->host_eof || c->guest_no_recv) && !vsock_conn_unflushed(c))
        return vsock_conn_reset(c); /* both sides are done */
    vsock_conn_queue(c, c->owe_rst || c->owe_request || c->owe_response || c->owe_credit || c->owe_shutdown ||
                            (c->host_readable && vsock_conn_wants_host_bytes(c)));
    vsock_conn_arm(c);
}

void vsock_host_request(struct vsock_conn *c, uint32_t port) {
    c->host_port = vsock_next_host_port(c->v);
    c->guest_port = port;
    c->state = VSOCK_HOST_REQ;
    c->owe_request = true;
    vsock_conn_hash(c);
    vsock_conn_set_deadline(c, vsock_now(c->v) + c->v->timeout);
    vsock_conn_changed(c);
    vsock_rx_pump(c->v);
}

/* ---- from the guest ---- */

static void owe_rst(struct vsock *v, const struct packet *p) {
    if (v->nrsts == VSOCK_RST_RING) return; /* a flood: the rest go unanswered */
    v->rsts[(v->rst_first + v->nrsts++) % VSOCK_RST_RING] = (struct vsock_rst){p->dst_port, p->src_port};
}

static void guest_connects(struct vsock *v, const struct packet *p) {
    int fd = v->nconns < VSOCK_MAX_CONNS ? vsock_host_connect(v, p->dst_port) : -1;
    struct vsock_conn *c = fd >= 0 ? vsock_conn_new(v, fd, VSOCK_OPEN) : NULL;
    if (!c) return owe_rst(v, p); /* nobody listens there, or too many connections */
    c->host_port = p->dst_port;
    c->guest_port = p->src_port;
    c->guest_buf_alloc = p->buf_alloc;
    c->guest_fwd_cnt = p->fwd_cnt;
    c->guest_knows = true;
    c->owe_response = true;
    vsock_conn_hash(c);
    vsock_conn_changed(c);
}

/* The guest took the host's connection: the client hears "OK <host port>\n" first. */
static bool guest_accepts(struct vsock_conn *c) {
    c->state = VSOCK_OPEN;
    vsock_conn_set_deadline(c, 0);
    c->line_off = 0;
    c->line_len = (uint8_t)snprintf(c->line, sizeof c->line, "OK %u\n", c->host_port);
    return vsock_conn_flush(c) == 0;
}

static void guest_shuts_down(struct vsock_conn *c, uint32_t flags) {
    if (flags & VIRTIO_VSOCK_SHUTDOWN_RCV) {
        c->guest_no_recv = true;
        c->host_readable = false;
    }
    if (flags & VIRTIO_VSOCK_SHUTDOWN_SEND) c->guest_no_send = true;
    vsock_conn_shut_host(c);
    if (c->guest_no_send && c->guest_no_recv && vsock_conn_unflushed(c) && !c->deadline)
        vsock_conn_set_deadline(c, vsock_now(c->v) + c->v->timeout); /* to drain what is kept */
}

/* A packet of c's (HOST_REQ or OPEN); what does not belong there resets it. */
static void conn_receives(struct vsock_conn *c, const struct virtq_req *r, const struct packet *p) {
    bool ok = true;
    c->guest_buf_alloc = p->buf_alloc; /* every packet carries the guest's credit */
    c->guest_fwd_cnt = p->fwd_cnt;
    if (c->state == VSOCK_HOST_REQ) {
        ok = p->op == VIRTIO_VSOCK_OP_RESPONSE && c->guest_knows && guest_accepts(c);
    } else if (p->op == VIRTIO_VSOCK_OP_RW) {
        ok = !c->guest_no_send && (!p->len || vsock_conn_take(c, r, VSOCK_HDR_LEN, p->len) == 0);
    } else if (p->op == VIRTIO_VSOCK_OP_SHUTDOWN) {
        guest_shuts_down(c, p->flags);
    } else if (p->op == VIRTIO_VSOCK_OP_CREDIT_REQUEST) {
        c->owe_credit = true;
    } else {
        ok = p->op == VIRTIO_VSOCK_OP_CREDIT_UPDATE; /* (a REQUEST or RESPONSE here is not) */
    }
    if (!ok) return vsock_conn_reset(c);
    vsock_conn_changed(c);
}

/* One packet from the guest's transmit queue; nothing in it is trusted. */
static void guest_packet(struct vsock *v, const struct virtq_req *r) {
    struct virtio_vsock_hdr raw;
    if (virtq_req_read(r, 0, &raw, sizeof raw) < sizeof raw) return; /* no header: nobody to answer */
    struct packet p = parse(&raw);
    if (p.src_cid != v->guest_cid || p.dst_cid != VSOCK_HOST_CID) return; /* not this guest's, or not to us */
    struct vsock_conn *c = vsock_conn_find(v, p.dst_port, p.src_port);
    if (p.op == VIRTIO_VSOCK_OP_RST) { /* never answered */
        if (c) vsock_conn_free(c);
        return;
    }
    bool fits = p.type == VIRTIO_VSOCK_TYPE_STREAM && p.op >= VIRTIO_VSOCK_OP_REQUEST &&
                p.op <= VIRTIO_VSOCK_OP_CREDIT_REQUEST && p.len <= VSOCK_MAX_PKT &&
                p.len <= r->out_len - VSOCK_HDR_LEN;
    if (c && c->state == VSOCK_DEAD) return; /* its RST is on its way */
    if (!fits) return c ? vsock_conn_reset(c) : owe_rst(v, &p);
    if (c) return conn_receives(c, r, &p);
    if (p.op == VIRTIO_VSOCK_OP_REQUEST) return guest_connects(v, &p);
    owe_rst(v, &p);
}

static void tx_pump(struct vsock *v) {
    struct virtq_req req;
    for (unsigned n = 0;; n++) {
        if (n == PACKETS_PER_TURN && virtio_notify_again(v->vd, TXQ)) break;
        if (!virtio_pop(v->vd, TXQ, &req)) break;
        guest_packet(v, &req);
        virtio_push(v->vd, TXQ, &req, 0);
    }
    vsock_rx_pump(v); /* what those packets owe the guest */
}

/* TRANSPORT_RESET, once, into the first event buffer with room for it. */
static void post_events(struct vsock *v) {
    struct virtq_req req;
    while (v->reset_event_owed && virtio_pop(v->vd, EVQ, &req)) {
        struct virtio_vsock_event e = {.id = htole32(VIRTIO_VSOCK_EVENT_TRANSPORT_RESET)};
        size_t n = virtq_req_write(&req, 0, &e, sizeof e);
        virtio_push(v->vd, EVQ, &req, (uint32_t)n);
        if (n == sizeof e) v->reset_event_owed = false;
    }
}

static void vsock_notify(struct virtio_dev *vd, unsigned q) {
    struct vsock *v = vsock_of(vd);
    vsock_sync(v);
    if (q == TXQ) tx_pump(v);
    else if (q == RXQ) vsock_rx_pump(v); /* new receive buffers */
    else post_events(v);
}

/* ---- the device ---- */

static int vsock_create(struct virtio_dev *vd, const void *params, char *err, size_t errlen) {
    const struct virtio_vsock_params *p = params;
    if (!p || !p->uds_path) return snprintf(err, errlen, "virtio-vsock: no socket path (uds_path)"), -1;
    if (p->guest_cid < VIRTIO_VSOCK_MIN_CID || p->guest_cid > VIRTIO_VSOCK_MAX_CID)
        return snprintf(err, errlen, "virtio-vsock: guest CID %llu (%u to %llu)", (unsigned long long)p->guest_cid,
                        VIRTIO_VSOCK_MIN_CID, VIRTIO_VSOCK_MAX_CID), -1;
    struct vsock *v = calloc(1, sizeof *v);
    if (!v || !(v->rx = malloc(sizeof *v->rx))) {
        free(v);
        return snprintf(err, errlen, "virtio-vsock: out of memory"), -1;
    }
    v->vd = vd;
    v->env = vd->env;
    v->guest_cid = p->guest_cid;
    v->timeout = ZX_MSEC(p->timeout_ms ? p->timeout_ms : VSOCK_TIMEOUT_MS);
    v->generation = vd->generation;
    v->next_host_port = VSOCK_FIRST_HOST_PORT;
    if (vsock_listen(v, p->uds_path, err, errlen) != 0) {
        free(v->rx);
        free(v);
        return -1;
    }
    vd->priv = v;
    vd->config_size = sizeof(struct virtio_vsock_config);
    return 0;
}

/* The loop is gone first (its waits and the timer ran canceled), or there was none. */
static void vsock_destroy(struct virtio_dev *vd) {
    struct vsock *v = vsock_of(vd);
    vsock_conn_free_all(v);
    if (v->sweep_posted && v->env->loop) async_cancel_task(v->env->loop, &v->sweep);
    vsock_unlisten(v);
    free(v->rx);
    free(v);
}

/* Connections are the host's sockets, which no snapshot can carry: the restored device has
 * none, and tells its guest so (TRANSPORT_RESET) once it gives an event buffer. What is saved
 * is only whether a receive buffer was held, to take its avail entry again (as virtio-net). */
struct vsock_wire {
    uint8_t version, have_rx, pad[6];
};
#define VSOCK_WIRE_VERSION 1

static size_t vsock_save(struct virtio_dev *vd, uint8_t *buf, size_t len) {
    struct vsock *v = vsock_of(vd);
    pthread_mutex_lock(&vd->lock); /* a buffer from before a reset belongs to no ring */
    bool held = v->have_rx && v->rx->generation == vd->generation && vd->queues[RXQ].ready;
    pthread_mutex_unlock(&vd->lock);
    struct vsock_wire w = {.version = VSOCK_WIRE_VERSION, .have_rx = held};
    return DEVICE_SAVE(buf, len, w);
}

static int vsock_restore(struct virtio_dev *vd, const uint8_t *buf, size_t len) {
    struct vsock *v = vsock_of(vd);
    struct vsock_wire w;
    if (len != sizeof w) return -1;
    memcpy(&w, buf, sizeof w);
    if (w.version != VSOCK_WIRE_VERSION || w.have_rx > 1) return -1;
    vsock_conn_free_all(v);
    pthread_mutex_lock(&vd->lock); /* the virtio core set the queues before this */
    if (w.have_rx && vd->queues[RXQ].ready) vd->queues[RXQ].last_avail--;
    v->generation = vd->generation;
    pthread_mutex_unlock(&vd->lock);
    v->have_rx = false;
    v->nrsts = 0;
    v->reset_event_owed = true;
    return 0;
}

const struct virtio_device_ops virtio_vsock_ops = {
    .name = "virtio-vsock",
    .device_id = VIRTIO_ID_VSOCK,
    .nqueues = 3,
    .queue_max = VIRTQ_MAX_SIZE,
    .create = vsock_create,
    .destroy = vsock_destroy,
    .config_read = config_read,
    .queue_notify = vsock_notify,
    .save = vsock_save,
    .restore = vsock_restore,
};
