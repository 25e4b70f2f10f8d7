/* virtio-vsock, the driver's side (virtio 1.2 §5.10). The receive queue keeps a buffer in
 * every slot; each packet is taken from it and the buffer given back at once. Packets are
 * sent from slots of their own (header and payload copied in), so a sender never waits for
 * the device but when every slot is out. Each connection has a receive window of WINDOW
 * bytes, advertised as buf_alloc in every packet with fwd_cnt (the bytes the application
 * took): the host may send only into what it knows to be free, and hears of freed space with
 * a CREDIT_UPDATE once a quarter window is read. The same rule bounds what the guest sends:
 * the host's buf_alloc less what it has not yet forwarded.
 *
 * Everything the device says is checked (lengths, addresses, credit, operations out of
 * turn): a packet that makes no sense is dropped, one for a connection that does not exist
 * answered with RST, a connection whose peer breaks the rules reset. */
#include "guest/vsock.h"
#include "guest/irq.h"

enum { RXQ, TXQ, EVQ };
enum { OP_INVALID, OP_REQUEST, OP_RESPONSE, OP_RST, OP_SHUTDOWN, OP_RW, OP_CREDIT_UPDATE, OP_CREDIT_REQUEST };
#define TYPE_STREAM 1
#define SHUT_RCV 1u
#define SHUT_SEND 2u
#define EVENT_TRANSPORT_RESET 0u

struct hdr {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port, len;
    uint16_t type, op;
    uint32_t flags, buf_alloc, fwd_cnt;
} __attribute__((packed));
_Static_assert(sizeof(struct hdr) == 44, "struct virtio_vsock_hdr is 44 bytes");

#define RX_SLOTS VQ_SIZE
#define RX_PAYLOAD (16u << 10)
#define TX_SLOTS 8u
#define TX_PAYLOAD (16u << 10)
#define EV_SLOTS 4u
#define MAX_CONNS 8
#define MAX_LISTENERS 2
#define BACKLOG 4 /* host connections to a port not yet accepted */
#define WINDOW (32u << 10)
#define FIRST_LOCAL_PORT 49152u
#define TX_WAIT (5 * IRQ_TICKS_PER_SEC) /* for a transmit slot */
#define PUMP_BATCH 64                   /* completions taken per queue per look */
#define DROP_REPORTS 5

enum state { FREE, CONNECTING, OPEN, CLOSING, DEAD };

struct conn {
    enum state state;
    uint32_t local_port, peer_port;
    bool from_host, accepted; /* made by the host; given to the application */
    /* the peer's receive window, from its last header, and what we sent into it */
    uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
    uint64_t credit_asked; /* irq_ticks when credit ran out, then of each CREDIT_REQUEST; 0: has credit */
    bool peer_no_send, peer_no_recv;
    /* ours: what arrived and was not read (buf[head..head+len), wrapping), counts */
    uint32_t head, len, rx_cnt, fwd_cnt, fwd_told;
    uint8_t buf[WINDOW];
};

struct rx_pkt {
    struct hdr h;
    uint8_t data[RX_PAYLOAD];
} __attribute__((packed));

struct tx_pkt {
    struct hdr h;
    uint8_t data[TX_PAYLOAD];
} __attribute__((packed));

static struct {
    struct vdev *d;
    uint64_t cid;
    unsigned rx_slots, tx_slots, ev_slots;
    bool tx_busy[TX_SLOTS];
    uint32_t listeners[MAX_LISTENERS];
    unsigned nlisteners;
    uint32_t next_port;
    struct vsock_counts counts;
} vs;

static struct conn conns[MAX_CONNS];
static struct rx_pkt rx_bufs[RX_SLOTS];
static struct tx_pkt tx_bufs[TX_SLOTS];
static uint32_t events[EV_SLOTS];

static uint32_t min32(uint32_t a, uint32_t b) { return a < b ? a : b; }

static uint64_t read_cid(void) { return vdev_config32(vs.d, 0) | (uint64_t)vdev_config32(vs.d, 4) << 32; }

static void post_rx(unsigned slot) {
    vdev_post(vs.d, RXQ, slot, &(struct vbuf){&rx_bufs[slot], sizeof rx_bufs[slot], true}, 1);
}

static void post_event(unsigned slot) {
    vdev_post(vs.d, EVQ, slot, &(struct vbuf){&events[slot], sizeof events[slot], true}, 1);
}

bool vsock_init(struct vdev *d) {
    vs = (__typeof__(vs)){.d = d, .next_port = FIRST_LOCAL_PORT};
    for (unsigned i = 0; i < MAX_CONNS; i++) conns[i].state = FREE;
    vs.cid = read_cid();
    vs.rx_slots = min32(RX_SLOTS, d->vqs[RXQ].num);
    vs.tx_slots = min32(TX_SLOTS, d->vqs[TXQ].num);
    vs.ev_slots = min32(EV_SLOTS, d->vqs[EVQ].num);
    for (unsigned i = 0; i < vs.rx_slots; i++) post_rx(i);
    for (unsigned i = 0; i < vs.ev_slots; i++) post_event(i);
    vdev_kick(d, RXQ);
    vdev_kick(d, EVQ);
    return !vdev_failed(d);
}

uint64_t vsock_guest_cid(void) { return vs.cid; }
const struct vsock_counts *vsock_counts(void) { return &vs.counts; }

/* ---- sending ---- */

static void reap_tx(void) {
    uint32_t len;
    int slot;
    for (unsigned n = 0; n < PUMP_BATCH && (slot = vdev_poll(vs.d, TXQ, &len)) != -2; n++)
        if (slot >= 0 && (unsigned)slot < vs.tx_slots) vs.tx_busy[slot] = false;
}

/* A free transmit slot, waiting (TX_WAIT at most) for the device to finish one: -1 if none. */
static int tx_slot(void) {
    uint64_t deadline = irq_ticks + TX_WAIT;
    for (;;) {
        reap_tx();
        for (unsigned i = 0; i < vs.tx_slots; i++)
            if (!vs.tx_busy[i]) return (int)i;
        if (vdev_failed(vs.d) || irq_ticks > deadline) return -1;
        vdev_kick(vs.d, RXQ); /* (a device may hold transmits back until it can answer them) */
        irq_wait();
    }
}

/* One packet to the host, the payload copied; c (if any) gives our window's figures. */
static bool send_pkt(uint32_t local_port, uint32_t peer_port, uint16_t op, uint32_t flags, struct conn *c,
                     const void *data, uint32_t len) {
    int slot = tx_slot();
    if (slot < 0) return false;
    struct tx_pkt *p = &tx_bufs[slot];
    p->h = (struct hdr){.src_cid = vs.cid, .dst_cid = VSOCK_HOST_CID, .src_port = local_port, .dst_port = peer_port,
                        .len = len, .type = TYPE_STREAM, .op = op, .flags = flags,
                        .buf_alloc = c ? WINDOW : 0, .fwd_cnt = c ? c->fwd_cnt : 0};
    if (len) memcpy(p->data, data, len);
    if (!vdev_post(vs.d, TXQ, (unsigned)slot, &(struct vbuf){p, (uint32_t)sizeof p->h + len, false}, 1)) return false;
    vs.tx_busy[slot] = true;
    vdev_kick(vs.d, TXQ);
    if (c) c->fwd_told = c->fwd_cnt;
    return true;
}

static bool send_ctl(struct conn *c, uint16_t op, uint32_t flags) {
    return send_pkt(c->local_port, c->peer_port, op, flags, c, NULL, 0);
}

/* The answer to a packet no connection takes. */
static void send_rst_to(const struct hdr *h) { send_pkt(h->dst_port, h->src_port, OP_RST, 0, NULL, NULL, 0); }

/* ---- connections ---- */

static struct conn *conn_at(int id) {
    return id >= 0 && id < MAX_CONNS && conns[id].state != FREE ? &conns[id] : NULL;
}

/* A free connection, its figures zero (its buffer is not cleared: len says what is in it). */
static struct conn *conn_new(uint32_t local_port, uint32_t peer_port, bool from_host) {
    for (unsigned i = 0; i < MAX_CONNS; i++) {
        struct conn *c = &conns[i];
        if (c->state != FREE) continue;
        c->local_port = local_port, c->peer_port = peer_port;
        c->from_host = from_host, c->accepted = !from_host;
        c->peer_buf_alloc = c->peer_fwd_cnt = c->tx_cnt = 0;
        c->credit_asked = 0;
        c->peer_no_send = c->peer_no_recv = false;
        c->head = c->len = c->rx_cnt = c->fwd_cnt = c->fwd_told = 0;
        return c;
    }
    return NULL;
}

/* The live connection between these ports (a dead one waits for its owner's close). */
static struct conn *find(uint32_t local_port, uint32_t peer_port) {
    for (unsigned i = 0; i < MAX_CONNS; i++) {
        struct conn *c = &conns[i];
        if (c->state != FREE && c->state != DEAD && c->local_port == local_port && c->peer_port == peer_port) return c;
    }
    return NULL;
}

/* Ended: a connection nobody accepted is simply gone, another waits for its owner. */
static void conn_end(struct conn *c) { c->state = c->accepted ? DEAD : FREE; }

static void conn_reset(struct conn *c) {
    send_ctl(c, OP_RST, 0);
    conn_end(c);
}

static bool listening(uint32_t port) {
    for (unsigned i = 0; i < vs.nlisteners; i++)
        if (vs.listeners[i] == port) return true;
    return false;
}

static unsigned backlog(uint32_t port) {
    unsigned n = 0;
    for (unsigned i = 0; i < MAX_CONNS; i++)
        n += conns[i].state == OPEN && !conns[i].accepted && conns[i].local_port == port;
    return n;
}

static uint32_t next_local_port(void) {
    for (unsigned tries = 0; tries < MAX_CONNS + 1; tries++) {
        uint32_t p = vs.next_port;
        vs.next_port = p == 65535 ? FIRST_LOCAL_PORT : p + 1;
        bool used = false;
        for (unsigned i = 0; i < MAX_CONNS; i++) used |= conns[i].state != FREE && conns[i].local_port == p;
        if (!used) return p;
    }
    return vs.next_port; /* (MAX_CONNS + 1 ports cannot all be in use) */
}

/* ---- what the device gives ---- */

static void transport_reset(void) {
    unsigned dropped = 0;
    for (unsigned i = 0; i < MAX_CONNS; i++)
        if (conns[i].state != FREE && conns[i].state != DEAD) {
            conn_end(&conns[i]);
            dropped++;
        }
    vs.cid = read_cid();
    vs.counts.resets++;
    printf("vsock: transport reset: %u connection(s) dropped, guest cid %llu, %u port(s) still listened on\n", dropped,
           (unsigned long long)vs.cid, vs.nlisteners);
}

static void on_request(const struct hdr *h) {
    struct conn *c = listening(h->dst_port) && backlog(h->dst_port) < BACKLOG ? conn_new(h->dst_port, h->src_port, true) : NULL;
    if (!c) {
        vs.counts.refused++;
        send_rst_to(h);
        return;
    }
    c->state = OPEN;
    c->peer_buf_alloc = h->buf_alloc, c->peer_fwd_cnt = h->fwd_cnt;
    if (!send_ctl(c, OP_RESPONSE, 0)) c->state = FREE;
}

/* Bytes into the connection's window: more than the host was given is its mistake. */
static void on_data(struct conn *c, const uint8_t *data, uint32_t len) {
    if (c->state == CLOSING) return; /* we said we take no more */
    if (c->state != OPEN || c->peer_no_send || len > WINDOW - c->len) {
        conn_reset(c);
        return;
    }
    uint32_t tail = (c->head + c->len) % WINDOW, first = min32(len, WINDOW - tail);
    memcpy(c->buf + tail, data, first);
    memcpy(c->buf, data + first, len - first);
    c->len += len;
    c->rx_cnt += len;
}

static void on_shutdown(struct conn *c, uint32_t flags) {
    c->peer_no_recv |= (flags & SHUT_RCV) != 0;
    c->peer_no_send |= (flags & SHUT_SEND) != 0;
    /* both ways, after ours: the clean end, which our RST completes */
    if (c->state == CLOSING && c->peer_no_recv && c->peer_no_send) conn_reset(c);
}

static void on_packet(const struct hdr *h, const uint8_t *data) {
    struct conn *c = find(h->dst_port, h->src_port);
    if (!c) {
        if (h->op == OP_REQUEST) on_request(h);
        else if (h->op != OP_RST) send_rst_to(h);
        return;
    }
    if (h->fwd_cnt != c->peer_fwd_cnt) vs.counts.credit_moves++;
    c->peer_buf_alloc = h->buf_alloc, c->peer_fwd_cnt = h->fwd_cnt;
    switch (h->op) {
    case OP_RESPONSE:
        if (c->state == CONNECTING) c->state = OPEN;
        else conn_reset(c);
        break;
    case OP_RW: on_data(c, data, h->len); break;
    case OP_SHUTDOWN: on_shutdown(c, h->flags); break;
    case OP_RST: conn_end(c); break;
    case OP_CREDIT_UPDATE: break;
    case OP_CREDIT_REQUEST: send_ctl(c, OP_CREDIT_UPDATE, 0); break;
    default: conn_reset(c); /* a second REQUEST, INVALID, an unknown operation */
    }
}

static void drop(const struct hdr *h, uint32_t written, const char *why) {
    if (vs.counts.dropped++ < DROP_REPORTS)
        printf("vsock: dropped a packet (%s): op %u type %u, %llu:%u -> %llu:%u, len %u of %u written\n", why, h->op,
               h->type, (unsigned long long)h->src_cid, h->src_port, (unsigned long long)h->dst_cid, h->dst_port, h->len,
               written);
}

static void take_rx(unsigned slot, uint32_t written) {
    const struct rx_pkt *p = &rx_bufs[slot];
    struct hdr h = p->h;
    if (written < sizeof h || written > sizeof *p) drop(&h, written, "length written");
    else if (h.op == OP_RW && h.len > written - sizeof h) drop(&h, written, "payload length");
    else if (h.src_cid != VSOCK_HOST_CID || h.dst_cid != vs.cid) drop(&h, written, "address");
    else if (h.type != TYPE_STREAM) {
        if (h.op != OP_RST) send_rst_to(&h);
    } else on_packet(&h, p->data);
    post_rx(slot);
}

/* Takes every completion there is now; true when there was one. */
static bool pump(void) {
    bool any = false;
    uint32_t len;
    int slot;
    for (unsigned n = 0; n < PUMP_BATCH && (slot = vdev_poll(vs.d, EVQ, &len)) != -2; n++, any = true) {
        if (slot < 0 || (unsigned)slot >= vs.ev_slots) continue;
        if (len >= sizeof events[slot] && events[slot] == EVENT_TRANSPORT_RESET) transport_reset();
        post_event((unsigned)slot);
    }
    reap_tx();
    for (unsigned n = 0; n < PUMP_BATCH && (slot = vdev_poll(vs.d, RXQ, &len)) != -2; n++, any = true)
        if (slot >= 0 && (unsigned)slot < vs.rx_slots) take_rx((unsigned)slot, len);
    if (any) {
        vdev_kick(vs.d, EVQ);
        vdev_kick(vs.d, RXQ);
    }
    return any;
}

bool vsock_wait(uint64_t deadline) {
    if (!vs.d) return false;
    for (;;) {
        if (pump()) return true;
        if (vdev_failed(vs.d) || irq_ticks > deadline) return false;
        irq_wait();
    }
}

/* ---- the application's calls ---- */

int vsock_connect(uint32_t port, uint64_t deadline) {
    struct conn *c = vs.d ? conn_new(next_local_port(), port, false) : NULL;
    if (!c) return -1;
    c->state = CONNECTING;
    if (!send_ctl(c, OP_REQUEST, 0)) {
        c->state = FREE;
        return VSOCK_TIMED_OUT;
    }
    while (c->state == CONNECTING && irq_ticks <= deadline && vsock_wait(deadline)) {
    }
    if (c->state == OPEN) return (int)(c - conns);
    int why = c->state == CONNECTING ? VSOCK_TIMED_OUT : VSOCK_REFUSED;
    if (c->state == CONNECTING) send_ctl(c, OP_RST, 0); /* (the answer may still come: it is told) */
    c->state = FREE;
    return why;
}

bool vsock_listen(uint32_t port) {
    if (listening(port)) return true;
    if (vs.nlisteners == MAX_LISTENERS) return false;
    vs.listeners[vs.nlisteners++] = port;
    return true;
}

int vsock_accept(uint32_t port, uint64_t deadline) {
    for (;;) {
        for (unsigned i = 0; i < MAX_CONNS; i++) {
            struct conn *c = &conns[i];
            if (c->state == OPEN && !c->accepted && c->local_port == port) {
                c->accepted = true;
                return (int)i;
            }
        }
        if (irq_ticks > deadline || !vsock_wait(deadline)) return -1;
    }
}

uint32_t vsock_peer_port(int id) {
    struct conn *c = conn_at(id);
    return c ? c->peer_port : 0;
}

/* Credit we lack after a second's wait may be a CREDIT_UPDATE the host never sent: ask. */
static void ask_credit(struct conn *c) {
    vs.counts.credit_waits++;
    if (c->credit_asked && irq_ticks - c->credit_asked < IRQ_TICKS_PER_SEC) return;
    if (!c->credit_asked) {
        c->credit_asked = irq_ticks ? irq_ticks : 1;
        return;
    }
    send_ctl(c, OP_CREDIT_REQUEST, 0);
    c->credit_asked = irq_ticks;
}

long vsock_send(int id, const void *buf, uint32_t len) {
    struct conn *c = conn_at(id);
    if (!c || c->state != OPEN || c->peer_no_recv) return -1;
    uint32_t sent = 0;
    while (sent < len) {
        uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;
        uint32_t credit = in_flight < c->peer_buf_alloc ? c->peer_buf_alloc - in_flight : 0;
        uint32_t n = min32(min32(len - sent, credit), TX_PAYLOAD);
        if (n == 0) {
            if (sent == 0) ask_credit(c);
            break;
        }
        if (!send_pkt(c->local_port, c->peer_port, OP_RW, 0, c, (const uint8_t *)buf + sent, n)) return sent ? (long)sent : -1;
        c->tx_cnt += n;
        c->credit_asked = 0;
        sent += n;
    }
    return sent;
}

long vsock_recv(int id, void *buf, uint32_t len) {
    struct conn *c = conn_at(id);
    if (!c) return -1;
    if (c->len == 0) return c->peer_no_send ? VSOCK_EOF : c->state == DEAD ? -1 : 0;
    uint32_t n = min32(len, c->len), first = min32(n, WINDOW - c->head);
    memcpy(buf, c->buf + c->head, first);
    memcpy((uint8_t *)buf + first, c->buf, n - first);
    c->head = (c->head + n) % WINDOW;
    c->len -= n;
    c->fwd_cnt += n;
    if (c->state == OPEN && !c->peer_no_send && c->fwd_cnt - c->fwd_told >= WINDOW / 4)
        send_ctl(c, OP_CREDIT_UPDATE, 0);
    return n;
}

void vsock_close(int id, uint64_t deadline) {
    struct conn *c = conn_at(id);
    if (!c) return;
    if (c->state == OPEN && c->peer_no_send && c->peer_no_recv) {
        send_ctl(c, OP_RST, 0); /* it shut down both ways already: our RST ends it */
    } else if (c->state == OPEN) {
        c->state = CLOSING;
        if (send_ctl(c, OP_SHUTDOWN, SHUT_RCV | SHUT_SEND))
            while (c->state == CLOSING && irq_ticks <= deadline && vsock_wait(deadline)) {
            }
        if (c->state == CLOSING) send_ctl(c, OP_RST, 0); /* no RST came: ours ends it */
    } else if (c->state == CONNECTING) {
        send_ctl(c, OP_RST, 0);
    }
    c->state = FREE;
}
