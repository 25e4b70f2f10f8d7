/* Ports: a FIFO of packets (interrupt packets first) that threads block on.
 *
 * Sleeping: a thread that finds the port empty sleeps on a condition variable, unless the
 * port has file-descriptor sources (fd waits, timers, ioeventfds) and nobody polls them yet:
 * then it becomes the port's poller and sleeps in epoll. A producer pays a wake-up syscall
 * only when a thread really sleeps (QEMU's notify_me idea): it signals the condition variable
 * when a waiter is counted, or writes the wake eventfd once when the poller is in epoll. A
 * producer running while the consumers are busy (a handler queueing on its own loop) makes
 * no syscall at all.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "loop/lock.h"
#include "loop/object.h"

#define PORT_MAX_EPHEMERAL 4096u  /* Zircon's kMaxAllocatedPacketCountPerPort */
#define PORT_MAX_OBSERVERS 65536u /* pending waits per port */
#define POLL_BATCH 32

struct zx_port {
    struct zx_object obj;
    uint32_t options;
    struct lock lock;
    struct cond cond;
    struct cond batch_done; /* poll batches end (fd source removal waits for it) */
    struct list_node queue;
    struct list_node irq_queue;
    struct list_node free_ephemeral;
    unsigned n_ephemeral; /* queued zx_port_queue packets */
    unsigned cond_waiters;
    bool poller_active;   /* a thread polls the fds (in epoll or running ready callbacks) */
    bool poller_sleeping; /* ... and is inside epoll_wait */
    bool poller_in_ready; /* ... and runs unlocked ready() hooks, on thread `poller` */
    bool wake_pending;    /* wake eventfd written, not yet read */
    bool dead;            /* no handles left */
    bool no_epoll_pwait2; /* the kernel lacks it (the poller's) */
    uint64_t wake_syscalls; /* condvar signals + eventfd writes made to wake a sleeper */
    uint64_t batch_gen;   /* incremented when a poll batch ends */
    unsigned batch_waiters; /* threads waiting on batch_done */
    pthread_t poller; /* while poller_in_ready */
    unsigned nsources;
    struct list_node sources; /* port_fd_source.node */
    int epfd, wakefd;
    /* g_signal_lock */
    struct list_node observers;
    unsigned nobservers;
    const void *refused_tag; /* port_take_tagged_locked's `any_key` */
};

static void port_on_zero_handles(struct zx_object *obj);
static void port_destroy(struct zx_object *obj);

static const struct object_ops port_ops = {
    .type = ZX_OBJ_TYPE_PORT,
    .waitable = false,
    .on_zero_handles = port_on_zero_handles,
    .destroy = port_destroy,
};

struct zx_port *port_from_object(struct zx_object *obj) {
    return obj->ops == &port_ops ? (struct zx_port *)obj : NULL;
}

zx_status_t zx_port_create(uint32_t options, zx_handle_t *out) {
    if (options & ~ZX_PORT_BIND_TO_INTERRUPT) return ZX_ERR_INVALID_ARGS;
    if (!out) return ZX_ERR_INVALID_ARGS;
    struct zx_port *p = calloc(1, sizeof *p);
    if (!p) return ZX_ERR_NO_MEMORY;
    object_init(&p->obj, &port_ops);
    p->options = options;
    p->epfd = p->wakefd = -1;
    list_init(&p->queue);
    list_init(&p->irq_queue);
    list_init(&p->free_ephemeral);
    list_init(&p->observers);
    list_init(&p->sources);
    zx_status_t st = handle_create(&p->obj, ZX_DEFAULT_PORT_RIGHTS, out);
    object_unref(&p->obj);
    return st;
}

static void port_destroy(struct zx_object *obj) {
    struct zx_port *p = (struct zx_port *)obj;
    struct list_node *n;
    while ((n = list_remove_head(&p->free_ephemeral))) free(list_entry(n, struct port_packet, node));
    if (p->epfd >= 0) close(p->epfd);
    if (p->wakefd >= 0) close(p->wakefd);
    free(p);
}

uint64_t port_wake_syscalls(struct zx_port *p) {
    lock_acquire(&p->lock);
    uint64_t n = p->wake_syscalls;
    lock_release(&p->lock);
    return n;
}

bool port_has_handles(struct zx_port *p) { return atomic_load(&p->obj.handles) > 0; }
bool port_binds_interrupts(struct zx_port *p) { return p->options & ZX_PORT_BIND_TO_INTERRUPT; }

/* refused_tag first: it is NULL but for a loop being shut down, so a wait tests one word. */
bool port_refuses_locked(struct zx_port *p, const void *tag) { return p->refused_tag && tag == p->refused_tag; }

__attribute__((hot)) zx_status_t port_link_observer_locked(struct zx_port *p, struct observer *o) {
    if (port_refuses_locked(p, o->tag)) return ZX_ERR_BAD_STATE;
    if (p->nobservers >= PORT_MAX_OBSERVERS) return ZX_ERR_NO_RESOURCES;
    p->nobservers++;
    list_add_tail(&p->observers, &o->port_node);
    return ZX_OK;
}

/* An orphan holds no object and no slot: only the loop that began it can end it, and a
 * program that closes handles under pending waits must not run the port out of waits. */
void port_orphan_observer_locked(struct observer *o) {
    o->port->nobservers--;
    object_unref(o->obj);
    o->obj = NULL;
}

static inline void unlink_observer_locked(struct observer *o) {
    if (o->obj) o->port->nobservers--;
    list_delete(&o->port_node);
}

void port_unlink_observer_locked(struct observer *o) { unlink_observer_locked(o); }

/* ---- queueing ---- */

/* Decides, under the lock, whether a sleeper must be woken; the wake itself happens after
 * unlocking (wake_finish), so the woken thread does not block again on the port lock. */
enum wake { WAKE_NONE, WAKE_COND, WAKE_POLLER };

__attribute__((hot)) static enum wake wake_one_locked(struct zx_port *p) {
    if (p->cond_waiters > 0) {
        p->wake_syscalls++;
        return WAKE_COND;
    }
    if (p->poller_sleeping && !p->wake_pending) {
        p->wake_syscalls++;
        p->wake_pending = true;
        return WAKE_POLLER;
    }
    return WAKE_NONE;
}

__attribute__((hot)) static void wake_finish(struct zx_port *p, enum wake w) {
    if (w == WAKE_COND) {
        cond_signal(&p->cond);
    } else if (w == WAKE_POLLER) {
        uint64_t one = 1;
        if (write(p->wakefd, &one, sizeof one) < 0) { /* a full counter is a pending wake too */
        }
    }
}

__attribute__((hot)) static void link_locked(struct zx_port *p, struct port_packet *pp) {
    pp->queued = true;
    list_add_tail(pp->kind == PORT_PACKET_INTERRUPT ? &p->irq_queue : &p->queue, &pp->node);
}

__attribute__((hot)) static enum wake enqueue_locked(struct zx_port *p, struct port_packet *pp) {
    link_locked(p, pp);
    return wake_one_locked(p);
}

__attribute__((hot)) zx_status_t port_queue_packet(struct zx_port *p, struct port_packet *pp) {
    lock_acquire(&p->lock);
    zx_status_t st = ZX_OK;
    enum wake w = WAKE_NONE;
    if (p->dead) {
        st = ZX_ERR_BAD_STATE;
    } else {
        w = enqueue_locked(p, pp);
    }
    /* Once queued, the packet's owner (and its port reference) may be gone before the wake:
     * the wake holds a reference of its own. */
    if (w != WAKE_NONE) object_ref(&p->obj);
    lock_release(&p->lock);
    if (w != WAKE_NONE) {
        wake_finish(p, w);
        object_unref(&p->obj);
    }
    return st;
}

zx_status_t port_queue_user(struct zx_port *p, const zx_port_packet_t *packet) {
    lock_acquire(&p->lock);
    zx_status_t st = ZX_OK;
    enum wake w = WAKE_NONE;
    if (p->dead) {
        st = ZX_ERR_BAD_STATE;
    } else if (p->n_ephemeral >= PORT_MAX_EPHEMERAL) {
        st = ZX_ERR_SHOULD_WAIT;
    } else {
        struct list_node *n = list_remove_head(&p->free_ephemeral);
        struct port_packet *pp = n ? list_entry(n, struct port_packet, node) : malloc(sizeof *pp);
        if (!pp) {
            st = ZX_ERR_NO_MEMORY;
        } else {
            pp->kind = PORT_PACKET_EPHEMERAL;
            pp->packet.key = packet->key;
            pp->packet.type = ZX_PKT_TYPE_USER; /* as Zircon: user packets only */
            pp->packet.status = packet->status;
            pp->packet.user = packet->user;
            p->n_ephemeral++;
            w = enqueue_locked(p, pp);
        }
    }
    lock_release(&p->lock);
    wake_finish(p, w);
    return st;
}

zx_status_t zx_port_queue(zx_handle_t handle, const zx_port_packet_t *packet) {
    if (!packet) return ZX_ERR_INVALID_ARGS;
    struct zx_object *obj;
    zx_status_t st = handle_get(handle, ZX_OBJ_TYPE_PORT, ZX_RIGHT_WRITE, &obj);
    if (st != ZX_OK) return st;
    st = port_queue_user((struct zx_port *)obj, packet);
    object_unref(obj);
    return st;
}

bool port_remove_packet(struct zx_port *p, struct port_packet *pp) {
    lock_acquire(&p->lock);
    bool was = pp->queued;
    if (was) {
        list_delete(&pp->node);
        pp->queued = false;
    }
    lock_release(&p->lock);
    return was;
}

/* Takes a packet off the queue; returns an observer to free (after unlocking) or NULL. */
__attribute__((hot)) static void *take_locked(struct zx_port *p, struct port_packet *pp, zx_port_packet_t *out) {
    list_delete(&pp->node);
    pp->queued = false;
    *out = pp->packet;
    switch (pp->kind) {
    case PORT_PACKET_EPHEMERAL:
        p->n_ephemeral--;
        list_add_head(&p->free_ephemeral, &pp->node); /* bounded by PORT_MAX_EPHEMERAL */
        return NULL;
    case PORT_PACKET_OBSERVER:
        return pp->owner;
    case PORT_PACKET_OWNED:
        pp->release(pp, true);
        return NULL;
    default:
        return NULL;
    }
}

/* ---- waiting ---- */

static struct timespec abs_ts(zx_time_t t) {
    return (struct timespec){.tv_sec = t / 1000000000, .tv_nsec = t % 1000000000};
}

/* epoll_pwait2 as a bare system call. glibc's wrapper is a cancellation point: two calls more
 * and one more page of libc on every wake, for threads nobody cancels. Kernels before 5.11
 * lack it; there epoll_wait, with the timeout rounded up to whole milliseconds. Only the
 * port's poller calls this (one thread at a time), and the flag lives in the port, whose page
 * the wake touches anyway. */
__attribute__((hot)) static int wait_events(struct zx_port *p, struct epoll_event *ev, int n, zx_time_t deadline) {
    if (!p->no_epoll_pwait2) {
        struct timespec rel, *timeout = NULL;
        if (deadline != ZX_TIME_INFINITE) {
            zx_time_t now = zx_clock_get_monotonic();
            rel = abs_ts(deadline > now ? deadline - now : 0); /* no overflow for INFINITE_PAST */
            timeout = &rel;
        }
        /* Every operand is read before the register variables are set: a call in between
         * (a sanitizer's, for the read of p->epfd) would clobber them. */
        long epfd = p->epfd;
        register long r10 __asm__("r10") = (long)timeout;
        register long r8 __asm__("r8") = 0; /* no signal mask */
        register long r9 __asm__("r9") = 0;
        long ret;
        __asm__ volatile("syscall"
                         : "=a"(ret)
                         : "0"((long)SYS_epoll_pwait2), "D"(epfd), "S"(ev), "d"((long)n), "r"(r10), "r"(r8),
                           "r"(r9)
                         : "rcx", "r11", "memory");
        if (ret != -ENOSYS) return ret < 0 ? (errno = (int)-ret, -1) : (int)ret;
        p->no_epoll_pwait2 = true;
    }
    return epoll_wait(p->epfd, ev, n, timeout_ms_until(deadline));
}

/* Called and returns with the port lock held; waits in epoll without it. Sources with a
 * ready_locked hook run in the same critical section that ends the wait; the others after
 * it, unlocked. */
static inline __attribute__((always_inline)) void poll_locked(struct zx_port *p, zx_time_t deadline) {
    struct epoll_event ev[POLL_BATCH];
    lock_release(&p->lock);
    int n = wait_events(p, ev, POLL_BATCH, deadline);
    lock_acquire(&p->lock);
    p->poller_sleeping = false;
    int unlocked = 0;
    for (int i = 0; i < n; i++) {
        struct port_fd_source *src = ev[i].data.ptr;
        if (!src) { /* the wake eventfd: edge-triggered, never read */
            p->wake_pending = false;
        } else if (src->ready_locked) {
            src->ready_locked(src, ev[i].events);
        } else if (src->ready_signal_locked && lock_try(&g_signal_lock)) {
            /* The order is g_signal_lock, then the port lock: only a try may go the other way. */
            src->ready_signal_locked(src, ev[i].events);
            lock_release(&g_signal_lock);
        } else {
            ev[unlocked++] = ev[i];
        }
    }
    if (!unlocked) return;
    /* A hook may remove a source (its own included), which must not wait for this batch. */
    p->poller = pthread_self();
    p->poller_in_ready = true;
    lock_release(&p->lock);
    for (int i = 0; i < unlocked; i++) {
        struct port_fd_source *src = ev[i].data.ptr;
        src->ready(src, ev[i].events);
    }
    lock_acquire(&p->lock);
    p->poller_in_ready = false;
}

zx_status_t port_enqueue_polled_locked(struct zx_port *p, struct port_packet *pp) {
    if (p->dead) return ZX_ERR_BAD_STATE;
    link_locked(p, pp);
    return ZX_OK;
}

/* object.c's fire, specialised: only observers of p (a synchronous waiter has no port), and
 * the port's side inline. */
__attribute__((hot)) int object_fire_polled_locked(struct zx_object *obj, struct zx_port *p, zx_signals_t signals) {
    int fired = 0;
    struct list_node *n, *tmp;
    list_for_each_safe(&obj->observers, n, tmp) {
        struct observer *o = list_entry(n, struct observer, obj_node);
        if (o->port != p || !(o->trigger & signals)) continue;
        fired++;
        list_delete(&o->obj_node);
        unlink_observer_locked(o);
        if (p->dead) { /* nobody can ever read the packet */
            observer_free(o);
            continue;
        }
        o->pp.packet.signal = (zx_packet_signal_t){
            .trigger = o->trigger,
            .observed = signals,
            .count = 1,
            .timestamp = o->options ? observer_timestamp(o->options) : 0};
        link_locked(p, &o->pp);
    }
    return fired;
}

/* Out of line: the compiler would otherwise convert the deadline on every wake, poller or not. */
__attribute__((noinline)) static void sleep_locked(struct zx_port *p, zx_time_t deadline) {
    p->cond_waiters++;
    if (deadline == ZX_TIME_INFINITE) {
        cond_wait(&p->cond, &p->lock, NULL);
    } else {
        struct timespec ts = abs_ts(deadline);
        cond_wait(&p->cond, &p->lock, &ts);
    }
    p->cond_waiters--;
}

__attribute__((hot)) zx_status_t port_wait(struct zx_port *p, zx_time_t deadline, zx_port_packet_t *out,
                                           struct observer **keep) {
    void *dead_observer = NULL;
    zx_status_t st = ZX_OK;
    bool polled = false;
    enum wake baton = WAKE_NONE;
    lock_acquire(&p->lock);
    for (;;) {
        struct list_node *n = list_peek_head(&p->irq_queue);
        if (!n) n = list_peek_head(&p->queue);
        if (n) {
            dead_observer = take_locked(p, list_entry(n, struct port_packet, node), out);
            /* More work and sleepers left: pass the baton so packets never wait on a busy thread. */
            if (!list_is_empty(&p->queue) || !list_is_empty(&p->irq_queue)) baton = wake_one_locked(p);
            break;
        }
        bool expired = deadline != ZX_TIME_INFINITE && zx_clock_get_monotonic() >= deadline;
        /* Even with the deadline gone, look at the fds once: a timer may be due. */
        if (expired && (polled || p->nsources == 0 || p->poller_active)) {
            st = ZX_ERR_TIMED_OUT;
            break;
        }
        if (p->nsources > 0 && !p->poller_active) {
            polled = true;
            p->poller_active = true;
            p->poller_sleeping = true;
            poll_locked(p, deadline);
            p->poller_active = false;
            p->batch_gen++;
            if (p->batch_waiters) cond_broadcast(&p->batch_done);
            /* Someone else must take over polling if this thread leaves with a packet. */
            if (p->cond_waiters > 0) cond_signal(&p->cond);
            continue;
        }
        sleep_locked(p, deadline);
    }
    lock_release(&p->lock);
    wake_finish(p, baton);
    if (keep) *keep = dead_observer;
    else if (dead_observer) observer_free(dead_observer);
    return st;
}

zx_status_t zx_port_wait(zx_handle_t handle, zx_time_t deadline, zx_port_packet_t *packet) {
    if (!packet) return ZX_ERR_INVALID_ARGS;
    struct zx_object *obj;
    zx_status_t st = handle_get(handle, ZX_OBJ_TYPE_PORT, ZX_RIGHT_READ, &obj);
    if (st != ZX_OK) return st;
    st = port_wait((struct zx_port *)obj, deadline, packet, NULL);
    object_unref(obj);
    return st;
}

/* ---- cancellation ---- */

/* Removes pending observers and queued signal packets matching (obj or any, key). */
static bool cancel_locked(struct zx_port *p, struct zx_object *obj, uint64_t key,
                          struct list_node *dead) {
    bool found = false;
    struct list_node *n, *tmp;
    list_for_each_safe(&p->observers, n, tmp) {
        struct observer *o = list_entry(n, struct observer, port_node);
        if (o->pp.packet.key != key || (obj && o->obj != obj)) continue;
        list_delete(&o->obj_node);
        port_unlink_observer_locked(o);
        list_add_tail(dead, &o->obj_node);
        found = true;
    }
    lock_acquire(&p->lock);
    list_for_each_safe(&p->queue, n, tmp) {
        struct port_packet *pp = list_entry(n, struct port_packet, node);
        if (pp->packet.key != key) continue;
        if (pp->kind == PORT_PACKET_OBSERVER) {
            struct observer *o = pp->owner;
            if (obj && o->obj != obj) continue;
            list_delete(&pp->node);
            pp->queued = false;
            list_add_tail(dead, &o->obj_node);
            found = true;
        } else if (!obj && (pp->kind == PORT_PACKET_EPHEMERAL || pp->kind == PORT_PACKET_OWNED)) {
            /* zx_port_cancel_key: queued packets with the key go too, whatever their source */
            list_delete(&pp->node);
            pp->queued = false;
            if (pp->kind == PORT_PACKET_OWNED) {
                pp->release(pp, false);
            } else {
                p->n_ephemeral--;
                list_add_head(&p->free_ephemeral, &pp->node);
            }
            found = true;
        }
    }
    lock_release(&p->lock);
    return found;
}

/* Queued observer packets leave the queue under the port lock, and only the thread that takes
 * one may touch it after: a wait is either here or being dispatched, never both. */
struct observer *port_take_tagged_locked(struct zx_port *p, const void *tag, uint64_t key, bool any_key) {
    if (any_key) p->refused_tag = tag;
    struct list_node *n;
    for (n = p->observers.next; n != &p->observers; n = n->next) {
        struct observer *o = list_entry(n, struct observer, port_node);
        if (o->tag != tag || (!any_key && o->pp.packet.key != key)) continue;
        list_delete(&o->obj_node);
        port_unlink_observer_locked(o);
        return o;
    }
    struct observer *found = NULL;
    lock_acquire(&p->lock);
    for (n = p->queue.next; n != &p->queue; n = n->next) {
        struct port_packet *pp = list_entry(n, struct port_packet, node);
        if (pp->kind != PORT_PACKET_OBSERVER) continue;
        struct observer *o = pp->owner;
        if (o->tag != tag || (!any_key && pp->packet.key != key)) continue;
        list_delete(&pp->node);
        pp->queued = false;
        found = o;
        break;
    }
    lock_release(&p->lock);
    return found;
}

static void free_dead(struct list_node *dead) {
    struct list_node *n;
    while ((n = list_remove_head(dead))) observer_free(list_entry(n, struct observer, obj_node));
}

zx_status_t zx_port_cancel(zx_handle_t handle, zx_handle_t source, uint64_t key) {
    struct zx_object *pobj, *src;
    zx_status_t st = handle_get(handle, ZX_OBJ_TYPE_PORT, ZX_RIGHT_WRITE, &pobj);
    if (st != ZX_OK) return st;
    st = handle_get(source, ZX_OBJ_TYPE_NONE, ZX_RIGHT_WAIT, &src);
    if (st != ZX_OK) {
        object_unref(pobj);
        return st;
    }
    struct list_node dead = LIST_INITIAL_VALUE(dead);
    if (!src->ops->waitable) {
        st = ZX_ERR_NOT_SUPPORTED;
    } else {
        lock_acquire(&g_signal_lock);
        st = cancel_locked((struct zx_port *)pobj, src, key, &dead) ? ZX_OK : ZX_ERR_NOT_FOUND;
        lock_release(&g_signal_lock);
    }
    free_dead(&dead);
    object_unref(src);
    object_unref(pobj);
    return st;
}

zx_status_t zx_port_cancel_key(zx_handle_t handle, uint32_t options, uint64_t key) {
    if (options != 0) return ZX_ERR_INVALID_ARGS;
    struct zx_object *pobj;
    zx_status_t st = handle_get(handle, ZX_OBJ_TYPE_PORT, ZX_RIGHT_WRITE, &pobj);
    if (st != ZX_OK) return st;
    struct list_node dead = LIST_INITIAL_VALUE(dead);
    lock_acquire(&g_signal_lock);
    st = cancel_locked((struct zx_port *)pobj, NULL, key, &dead) ? ZX_OK : ZX_ERR_NOT_FOUND;
    lock_release(&g_signal_lock);
    free_dead(&dead);
    object_unref(pobj);
    return st;
}

/* The last handle is gone: pending waits end and queued packets are discarded. */
static void port_on_zero_handles(struct zx_object *obj) {
    struct zx_port *p = (struct zx_port *)obj;
    struct list_node dead = LIST_INITIAL_VALUE(dead), *n, *tmp;
    lock_acquire(&g_signal_lock);
    list_for_each_safe(&p->observers, n, tmp) {
        struct observer *o = list_entry(n, struct observer, port_node);
        list_delete(&o->obj_node);
        port_unlink_observer_locked(o);
        list_add_tail(&dead, &o->obj_node);
    }
    lock_acquire(&p->lock);
    p->dead = true;
    list_for_each_safe(&p->sources, n, tmp) {
        struct port_fd_source *src = list_entry(n, struct port_fd_source, node);
        if (src->closed) src->closed(src);
    }
    struct list_node *queues[2] = {&p->queue, &p->irq_queue};
    for (int q = 0; q < 2; q++) {
        while ((n = list_remove_head(queues[q]))) {
            struct port_packet *pp = list_entry(n, struct port_packet, node);
            pp->queued = false;
            switch (pp->kind) {
            case PORT_PACKET_EPHEMERAL:
                p->n_ephemeral--;
                free(pp);
                break;
            case PORT_PACKET_OBSERVER:
                list_add_tail(&dead, &((struct observer *)pp->owner)->obj_node);
                break;
            case PORT_PACKET_OWNED:
                pp->release(pp, false);
                break;
            default:
                break;
            }
        }
    }
    lock_release(&p->lock);
    lock_release(&g_signal_lock);
    free_dead(&dead);
}

/* ---- file-descriptor sources ---- */

static zx_status_t ensure_epoll_locked(struct zx_port *p) {
    if (p->epfd >= 0) return ZX_OK;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return ZX_ERR_NO_RESOURCES;
    int wk = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    /* Edge-triggered: each write is an edge, so the poller needs no read to re-arm it (one
     * system call less per cross-thread wake; the counter would take centuries to fill). */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL};
    if (wk < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, wk, &ev) != 0) {
        if (wk >= 0) close(wk);
        close(ep);
        return ZX_ERR_NO_RESOURCES;
    }
    p->epfd = ep;
    p->wakefd = wk;
    return ZX_OK;
}

zx_status_t port_add_fd_source(struct zx_port *p, struct port_fd_source *src) {
    lock_acquire(&p->lock);
    zx_status_t st = p->dead ? ZX_ERR_BAD_STATE : ensure_epoll_locked(p);
    if (st == ZX_OK) {
        src->port = p;
        struct epoll_event ev = {.events = src->events | (src->oneshot ? EPOLLONESHOT : 0),
                                 .data.ptr = src};
        if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, src->fd, &ev) != 0) {
            st = errno == EPERM ? ZX_ERR_NOT_SUPPORTED : ZX_ERR_INVALID_ARGS;
        } else {
            object_ref(&p->obj);
            p->nsources++;
            list_add_tail(&p->sources, &src->node);
            /* A thread asleep on the condition variable must become the poller. */
            if (!p->poller_active && p->cond_waiters > 0) cond_signal(&p->cond);
        }
    }
    lock_release(&p->lock);
    return st;
}

zx_status_t port_rearm_fd_source(struct port_fd_source *src, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = src};
    return epoll_ctl(src->port->epfd, EPOLL_CTL_MOD, src->fd, &ev) == 0 ? ZX_OK : ZX_ERR_BAD_STATE;
}

void port_remove_fd_source(struct port_fd_source *src) {
    struct zx_port *p = src->port;
    lock_acquire(&p->lock);
    epoll_ctl(p->epfd, EPOLL_CTL_DEL, src->fd, NULL);
    p->nsources--;
    list_delete(&src->node);
    /* A poll batch in flight may still hold src: wait until it is over. */
    if (p->poller_active && !(p->poller_in_ready && pthread_equal(p->poller, pthread_self()))) {
        uint64_t gen = p->batch_gen;
        if (p->poller_sleeping && !p->wake_pending) {
            p->wake_pending = true;
            uint64_t one = 1;
            if (write(p->wakefd, &one, sizeof one) < 0) {
            }
        }
        p->batch_waiters++;
        while (p->batch_gen == gen) cond_wait(&p->batch_done, &p->lock, NULL);
        p->batch_waiters--;
    }
    lock_release(&p->lock);
    src->port = NULL;
    object_unref(&p->obj);
}

struct port_fd_source *port_source_find(struct port_source_set *set, struct zx_port *port) {
    for (int i = 0; i < OBJECT_MAX_PORTS; i++)
        if (set->v[i] && set->v[i]->port == port) return set->v[i];
    return NULL;
}

zx_status_t port_source_add(struct port_source_set *set, struct zx_port *port,
                            struct port_fd_source *src) {
    for (int i = 0; i < OBJECT_MAX_PORTS; i++) {
        if (set->v[i]) continue;
        zx_status_t st = port_add_fd_source(port, src);
        if (st == ZX_OK) set->v[i] = src;
        return st;
    }
    return ZX_ERR_NO_RESOURCES;
}

void port_source_clear(struct port_source_set *set) {
    for (int i = 0; i < OBJECT_MAX_PORTS; i++) {
        if (!set->v[i]) continue;
        port_remove_fd_source(set->v[i]);
        free(set->v[i]);
        set->v[i] = NULL;
    }
}
