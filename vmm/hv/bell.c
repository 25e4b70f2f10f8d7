/* Bell traps: guest writes that need no answer, delivered as ZX_PKT_TYPE_GUEST_BELL.
 *
 * Fast path: one KVM ioeventfd per doorbell address (the first BELLHOP_BELL_FAST_SLOTS
 * 4-byte slots of the range). KVM signals the eventfd without leaving the guest; the port's
 * poller turns a readable eventfd into the slot's one packet. While that packet is queued,
 * further rings of the address coalesce into it; the release hook clears `in_flight` when it
 * is dequeued, so a ring after the dequeue always produces a new packet.
 *
 * Slow path: any other write in the range exits to zx_vcpu_enter, which queues one packet
 * per write from the trap's pool (Zircon's 256); a vCPU that finds the pool used up waits
 * until the port gives packets back.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmm/hv/hv.h"

static zx_port_packet_t bell_packet(const struct bell *b, uint64_t addr) {
    return (zx_port_packet_t){.key = b->trap->key, .type = ZX_PKT_TYPE_GUEST_BELL,
                              .status = ZX_OK, .guest_bell = {.addr = addr}};
}

static int ioeventfd(struct bell_slot *s, bool assign) {
    struct kvm_ioeventfd io = {.addr = s->addr, .len = s->len, .fd = s->src.fd,
                               .datamatch = s->value,
                               .flags = (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN) |
                                        (s->datamatch ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0)};
    return ioctl(s->bell->guest->vm, KVM_IOEVENTFD, &io);
}

/* On the port's poller thread, port lock held (a ready_locked hook). The eventfd is
 * edge-triggered: every signal from KVM is an edge, so its counter is never read (a read per
 * bell would be a third of the loop's system calls), and at one ring per nanosecond it would
 * take centuries to saturate. */
__attribute__((hot)) static void slot_ready(struct port_fd_source *src, uint32_t events) {
    (void)events;
    struct bell_slot *s = (struct bell_slot *)src;
    if (atomic_exchange(&s->in_flight, true)) return; /* coalesced into the queued packet */
    if (port_enqueue_polled_locked(src->port, &s->pp) != ZX_OK) atomic_store(&s->in_flight, false);
}

/* Port lock held. */
__attribute__((hot)) static void slot_release(struct port_packet *pp, bool delivered) {
    (void)delivered;
    atomic_store(&((struct bell_slot *)pp->owner)->in_flight, false);
}

/* The port lost its last handle (port lock held): stop the fast path, so that the guest's
 * next ring exits and zx_vcpu_enter reports ZX_ERR_BAD_STATE, as Zircon does. */
static void slot_port_closed(struct port_fd_source *src) {
    struct bell_slot *s = (struct bell_slot *)src;
    atomic_store(&s->bell->port_dead, true);
    if (s->assigned && ioeventfd(s, false) == 0) s->assigned = false;
}

/* Port lock held. */
static void pool_release(struct port_packet *pp, bool delivered) {
    (void)delivered;
    struct bell *b = pp->owner;
    pthread_mutex_lock(&b->guest->bell_lock);
    list_add_tail(&b->free_pool, &pp->node);
    b->pool_in_flight--;
    pthread_cond_broadcast(&b->guest->bell_cond);
    pthread_mutex_unlock(&b->guest->bell_lock);
}

static zx_status_t bell_setup(struct guest *g, struct trap *trap, struct zx_port *port,
                              unsigned nslots, uint32_t len, bool datamatch, uint64_t value) {
    struct bell *b = calloc(1, sizeof *b);
    if (!b) return ZX_ERR_NO_MEMORY;
    b->trap = trap;
    b->guest = g;
    b->port = port;
    object_ref(port_obj(port));
    trap->bell = b;
    list_init(&b->free_pool);
    for (unsigned i = 0; i < BELLHOP_BELL_PACKETS; i++) {
        b->pool[i] = (struct port_packet){.kind = PORT_PACKET_OWNED, .release = pool_release,
                                          .owner = b};
        list_add_tail(&b->free_pool, &b->pool[i].node);
    }
    b->nslots = nslots;
    for (unsigned i = 0; i < b->nslots; i++) {
        struct bell_slot *s = &b->slots[i];
        s->bell = b;
        s->addr = trap->addr + 4 * i;
        s->len = len;
        s->datamatch = datamatch;
        s->value = value;
        s->pp = (struct port_packet){.packet = bell_packet(b, s->addr), .kind = PORT_PACKET_OWNED,
                                     .release = slot_release, .owner = s};
        s->src = (struct port_fd_source){.fd = -1};
    }
    zx_status_t st = ZX_OK;
    for (unsigned i = 0; i < b->nslots && st == ZX_OK; i++) {
        struct bell_slot *s = &b->slots[i];
        s->src = (struct port_fd_source){.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK),
                                         .events = EPOLLIN | EPOLLET, .ready_locked = slot_ready,
                                         .closed = slot_port_closed};
        if (s->src.fd < 0) {
            st = ZX_ERR_NO_RESOURCES;
        } else if (ioeventfd(s, true) != 0) {
            st = errno == EEXIST ? ZX_ERR_ALREADY_EXISTS : ZX_ERR_NO_RESOURCES;
        } else {
            s->assigned = true;
            st = port_add_fd_source(port, &s->src);
        }
    }
    if (st != ZX_OK) {
        bell_destroy(b);
        trap->bell = NULL;
    }
    return st;
}

zx_status_t bell_create(struct guest *g, struct trap *trap, struct zx_port *port) {
    uint64_t n = trap->size / 4;
    return bell_setup(g, trap, port, n < BELLHOP_BELL_FAST_SLOTS ? (unsigned)n : BELLHOP_BELL_FAST_SLOTS,
                      0 /* any size */, false, 0);
}

zx_status_t bell_create_doorbell(struct guest *g, struct trap *trap, struct zx_port *port,
                                 uint32_t len, uint64_t value) {
    return bell_setup(g, trap, port, 1, len, true, value);
}

void bell_destroy(struct bell *b) {
    for (unsigned i = 0; i < b->nslots; i++)
        if (b->slots[i].src.port) port_remove_fd_source(&b->slots[i].src);
    /* No ready() can run now: take back whatever is still queued. */
    for (unsigned i = 0; i < b->nslots; i++) port_remove_packet(b->port, &b->slots[i].pp);
    for (unsigned i = 0; i < BELLHOP_BELL_PACKETS; i++) port_remove_packet(b->port, &b->pool[i]);
    for (unsigned i = 0; i < b->nslots; i++) {
        struct bell_slot *s = &b->slots[i];
        if (s->assigned) ioeventfd(s, false);
        if (s->src.fd >= 0) close(s->src.fd);
    }
    object_unref(port_obj(b->port));
    free(b);
}

static bool port_gone(struct bell *b) {
    return atomic_load(&b->port_dead) || !port_has_handles(b->port);
}

zx_status_t bell_ring(struct bell *b, uint64_t addr, atomic_bool *kicked) {
    struct guest *g = b->guest;
    pthread_mutex_lock(&g->bell_lock);
    struct list_node *n;
    zx_status_t st = ZX_OK;
    while (!(n = list_remove_head(&b->free_pool))) {
        if (port_gone(b)) st = ZX_ERR_BAD_STATE;
        else if (atomic_load(kicked)) st = ZX_ERR_CANCELED;
        if (st != ZX_OK) break;
        pthread_cond_wait(&g->bell_cond, &g->bell_lock);
    }
    if (n) b->pool_in_flight++;
    pthread_mutex_unlock(&g->bell_lock);
    if (!n) return st;
    struct port_packet *pp = list_entry(n, struct port_packet, node);
    pp->packet = bell_packet(b, addr);
    if (port_gone(b) || port_queue_packet(b->port, pp) != ZX_OK) {
        pool_release(pp, false);
        return ZX_ERR_BAD_STATE;
    }
    return ZX_OK;
}

void bell_wake_waiters(struct guest *g) {
    pthread_mutex_lock(&g->bell_lock);
    pthread_cond_broadcast(&g->bell_cond);
    pthread_mutex_unlock(&g->bell_lock);
}
