/* bellhop's user-space Zircon object model: the internal API shared by loop/ and by the
 * hypervisor layer in vmm/ (which adds guest and vCPU objects and trap packets).
 *
 * Locking (outermost first):  g_signal_lock  ->  port->lock
 *   g_signal_lock guards every object's signal word and observer list and every port's
 *   observer list, so that a signal change, an observer firing and a port cancel are atomic
 *   with respect to each other. port->lock guards only a port's packet queues and sleepers.
 *   The one exception: a port's poller, holding port->lock, may take g_signal_lock by a
 *   try-lock (poll_locked, for ready_signal_locked hooks), never by a blocking acquire.
 * Nothing here holds a lock while user code (a handler) runs.
 */
#ifndef BELLHOP_LOOP_OBJECT_H
#define BELLHOP_LOOP_OBJECT_H

#include <pthread.h>
#include <stdatomic.h>
#include <zircon/syscalls.h>
#include <zircon/syscalls/port.h>

#include "loop/list.h"
#include "loop/lock.h"

struct zx_object;
struct zx_port;
struct observer;

/* A millisecond timeout for poll() or epoll_wait() that ends no earlier than `deadline`
 * (rounded up, at most 2^30 ms, after which the caller waits again): -1 for
 * ZX_TIME_INFINITE, 0 once it has passed. */
int timeout_ms_until(zx_time_t deadline);

struct object_ops {
    zx_obj_type_t type;
    bool waitable;             /* zx_object_wait_one / _wait_async allowed */
    zx_signals_t user_signals; /* bits zx_object_signal may change */
    /* Called when the last handle closes (observers already removed). May be NULL. */
    void (*on_zero_handles)(struct zx_object *obj);
    /* Frees the object when its last reference goes. */
    void (*destroy)(struct zx_object *obj);
    /* Current signals of objects whose state is computed, not stored (timers). May be NULL. */
    zx_signals_t (*poll_signals)(struct zx_object *obj);
    /* When signals next change by themselves (a timer's deadline), or ZX_TIME_INFINITE. */
    zx_time_t (*next_change)(struct zx_object *obj);
    /* Called with g_signal_lock held after `o` (an observer of o->port with `trigger`) was
     * linked, for objects whose signals only a port's poller can see (fds, timers). May set
     * o->arm_word (see struct observer). May be NULL. */
    zx_status_t (*arm)(struct zx_object *obj, struct observer *o, zx_signals_t trigger);
    /* zx_object_wait_one for objects that wait their own way (fds). May be NULL. */
    zx_status_t (*wait_one)(struct zx_object *obj, zx_signals_t signals, zx_time_t deadline,
                            zx_signals_t *observed);
};

struct zx_object {
    const struct object_ops *ops;
    atomic_uint refs;         /* handles + internal references */
    atomic_uint handles;      /* handles only */
    atomic_uint handle_closes; /* handles closed or replaced so far (see handle_cache) */
    zx_signals_t signals;     /* g_signal_lock */
    struct list_node observers; /* g_signal_lock: struct observer.obj_node */
};

/* Where a queued packet came from, which decides who owns its memory. */
enum port_packet_kind {
    PORT_PACKET_EPHEMERAL, /* zx_port_queue: allocated by the port, counted against its limit */
    PORT_PACKET_OBSERVER,  /* signal packet embedded in an observer */
    PORT_PACKET_OWNED,     /* owned by the producer (trap pools); release() after dequeue */
    PORT_PACKET_INTERRUPT, /* embedded in a virtual interrupt; serviced before all others */
};

struct port_packet {
    struct list_node node;
    zx_port_packet_t packet;
    uint8_t kind;
    bool queued;
    /* PORT_PACKET_OWNED: called with the port lock held once the packet has left the queue
     * (dequeued or canceled); must not block or take g_signal_lock. */
    void (*release)(struct port_packet *pp, bool delivered);
    void *owner;
};

/* A one-shot wait registered by zx_object_wait_async (or a synchronous waiter). */
struct observer {
    struct list_node obj_node;  /* in object->observers */
    struct list_node port_node; /* in port->observers */
    struct zx_object *obj;      /* referenced; NULL once an async loop's wait is orphaned */
    struct zx_port *port;       /* referenced; NULL for synchronous waiters */
    zx_signals_t trigger;
    uint32_t options;
    struct port_packet pp;
    /* The handle it was made through, and its object's handle_closes then: while that count
     * holds, the handle still names obj with the rights it had (see handle_cache). */
    zx_handle_t handle;
    unsigned closes;
    /* The async loop whose wait this is (NULL for zx_object_wait_async's): the loop finds its
     * pending waits on its port by it, having no list of its own to lock on every wake. */
    const void *tag;
    /* Set by ops->arm: while *arm_word (g_signal_lock) covers arm_bits, arming again for
     * arm_trigger is a no-op, so a re-armed wait skips the call. Valid while obj has handles. */
    const uint32_t *arm_word;
    uint32_t arm_bits;
    zx_signals_t arm_trigger;
    /* synchronous waiters (zx_object_wait_one) */
    struct cond *cond;
    bool fired;
    zx_signals_t observed;
};

/* A lock of loop/lock.h, not a pthread mutex: every fd wake takes it twice, and an uncontended
 * pair of these is a few inline instructions instead of two calls into libc. */
extern struct lock g_signal_lock;

/* Objects and handles. */
void object_init(struct zx_object *obj, const struct object_ops *ops);
void object_ref(struct zx_object *obj);
void object_unref(struct zx_object *obj);
zx_status_t handle_create(struct zx_object *obj, zx_rights_t rights, zx_handle_t *out);
/* Looks up a handle: checks type (ZX_OBJ_TYPE_NONE = any) and rights; returns a reference. */
zx_status_t handle_get(zx_handle_t h, zx_obj_type_t type, zx_rights_t rights,
                       struct zx_object **out);
zx_status_t handle_rights(zx_handle_t h, zx_rights_t *out);
/* handle_get that also reads obj->handle_closes under the table's lock (see handle_cache). */
zx_status_t handle_get_stamped(zx_handle_t h, zx_obj_type_t type, zx_rights_t rights,
                               struct zx_object **out, unsigned *closes);

/* One thread's memo of one handle, for a call made on every guest exit: while no handle to
 * its object has been closed or replaced since it was filled, the handle still names that
 * object with the same rights, so the table's lock is not needed. Holds a reference. */
struct handle_cache {
    zx_handle_t handle;
    zx_rights_t rights;
    unsigned closes; /* obj->handle_closes when filled */
    zx_obj_type_t type; /* obj's, so that a hit reads no ops table (one page less per exit) */
    struct zx_object *obj;
};
/* Whether an object of type `has_type` held with rights `has` may be used as a `type` (NONE:
 * any) with `rights`: the one test behind handle_get and its cache. */
static inline zx_status_t handle_check(zx_obj_type_t has_type, zx_rights_t has, zx_obj_type_t type,
                                       zx_rights_t rights) {
    if (type != ZX_OBJ_TYPE_NONE && has_type != type) return ZX_ERR_WRONG_TYPE;
    return (has & rights) == rights ? ZX_OK : ZX_ERR_ACCESS_DENIED;
}
zx_status_t handle_get_cached_slow(struct handle_cache *c, zx_handle_t h, zx_obj_type_t type,
                                   zx_rights_t rights, struct zx_object **out);
/* handle_get through the cache; *out is borrowed from it (valid until it is cleared). Inline:
 * a hit is a few compares, and a call would be one more page of code for each exit. */
static inline zx_status_t handle_get_cached(struct handle_cache *c, zx_handle_t h, zx_obj_type_t type,
                                            zx_rights_t rights, struct zx_object **out) {
    if (!c->obj || c->handle != h ||
        c->closes != atomic_load_explicit(&c->obj->handle_closes, memory_order_acquire))
        return handle_get_cached_slow(c, h, type, rights, out);
    zx_status_t st = handle_check(c->type, c->rights, type, rights);
    if (st == ZX_OK) *out = c->obj;
    return st;
}
void handle_cache_clear(struct handle_cache *c);

void observer_free(struct observer *o);
/* Fires the observers of obj (for one port, or all when port is NULL) that `signals` match,
 * as if the object's signals were `signals`; returns how many fired. g_signal_lock held. */
int object_fire_locked(struct zx_object *obj, struct zx_port *port, zx_signals_t signals);
/* The same from a port_fd_source's ready_signal_locked hook, for obj's observers on `port`:
 * the polled port, whose lock the caller holds too; the packets join its queue without a
 * wake-up. In port.c: it runs on every fd wake, and there it inlines the port's side. */
int object_fire_polled_locked(struct zx_object *obj, struct zx_port *port, zx_signals_t signals);
/* A signal packet's timestamp for a wait's options (0 without a TIMESTAMP option). */
zx_time_t observer_timestamp(uint32_t options);
/* Are there observers of obj on port still waiting? Their union of triggers. */
zx_signals_t object_pending_triggers_locked(struct zx_object *obj, struct zx_port *port);
zx_signals_t object_current_signals_locked(struct zx_object *obj);

/* Signals: clears then sets bits, firing matching observers. Takes g_signal_lock. */
void object_update_signals(struct zx_object *obj, zx_signals_t clear, zx_signals_t set);
void object_update_signals_locked(struct zx_object *obj, zx_signals_t clear, zx_signals_t set);

/* Ports. */
struct zx_port *port_from_object(struct zx_object *obj);
/* zx_object_wait_async on a port the caller holds a reference to (the async loop's own), without
 * looking its handle up on every wait; the observer carries `tag` (see port_take_tagged_locked). */
zx_status_t object_wait_async_on(struct zx_port *port, zx_handle_t handle, uint64_t key, zx_signals_t signals,
                                 uint32_t options, const void *tag);
/* object_wait_async_on again with `o`, an observer of `port` whose packet this thread took
 * (port_wait's `keep`): for the same handle, still naming the same object, and the same
 * options and tag, `o` is linked again with its references, without a handle lookup or an
 * allocation; otherwise it is freed and the wait made from scratch. Takes `o` either way. */
zx_status_t object_rewait_async(struct observer *o, struct zx_port *port, zx_handle_t handle, uint64_t key,
                                zx_signals_t signals, uint32_t options, const void *tag);
/* A port begins with its object. */
static inline struct zx_object *port_obj(struct zx_port *p) { return (struct zx_object *)p; }
/* Queues a packet the caller owns (PORT_PACKET_OWNED) or an interrupt packet. Fails with
 * ZX_ERR_BAD_STATE when the port has no handles left. */
zx_status_t port_queue_packet(struct zx_port *port, struct port_packet *pp);
/* Removes a still-queued packet; returns true if it was queued. */
bool port_remove_packet(struct zx_port *port, struct port_packet *pp);
bool port_has_handles(struct zx_port *port);
/* How often a producer had to wake a sleeping thread (for tests and the bench). */
uint64_t port_wake_syscalls(struct zx_port *port);
/* Called under g_signal_lock: count and list of pending observers (bounded per port). */
zx_status_t port_link_observer_locked(struct zx_port *port, struct observer *o);
void port_unlink_observer_locked(struct observer *o);
/* The last handle to o's object closed under o, an async loop's pending wait: o drops its object
 * (the caller holds a reference of its own, so this frees nothing) and its count against the
 * port's limit, and stays linked on the port, for its loop to cancel. g_signal_lock held. */
void port_orphan_observer_locked(struct observer *o);
/* Takes off the port the first pending observer, or else the first queued signal packet,
 * tagged `tag` (non-NULL) and keyed `key` (any key when `any_key`); returns its observer, for
 * the caller to free, or NULL. `any_key` also makes the port refuse the tag's later waits
 * (ZX_ERR_BAD_STATE): the loop's shutdown, which takes its waits one at a time so that a
 * handler it runs can still cancel the others. Called under g_signal_lock. */
struct observer *port_take_tagged_locked(struct zx_port *port, const void *tag, uint64_t key, bool any_key);
/* Whether the port refuses waits tagged `tag` (after port_take_tagged_locked's `any_key`). */
bool port_refuses_locked(struct zx_port *port, const void *tag);
/* Internal wait (the async loop keeps its port pointer). With `keep`, the observer of a signal
 * packet is handed to the caller in *keep (NULL for other packets) instead of being freed:
 * the caller frees it (observer_free) or re-arms it (object_rewait_async). */
zx_status_t port_wait(struct zx_port *port, zx_time_t deadline, zx_port_packet_t *out, struct observer **keep);
zx_status_t port_queue_user(struct zx_port *port, const zx_port_packet_t *packet);
bool port_binds_interrupts(struct zx_port *port);

/* A persistent file-descriptor source on a port: when the fd reports any of `events`, the
 * thread polling the port calls ready() with no lock held (bells use this for ioeventfds). */
struct port_fd_source {
    int fd;
    uint32_t events;
    void (*ready)(struct port_fd_source *src, uint32_t events);
    /* Instead of ready, for a source whose readiness only queues a packet (a bell): called
     * with the port lock held, in the poller's critical section, and may only call
     * port_enqueue_polled_locked. Saves a lock round trip per wake. */
    void (*ready_locked)(struct port_fd_source *src, uint32_t events);
    /* Optional, beside ready, for a source whose readiness only fires its object's observers on
     * this port (fd waits): called with the port lock held and g_signal_lock taken by a try in
     * the poller's critical section, so a wake locks the port once; ready() runs instead when
     * g_signal_lock is busy. Fires through object_fire_polled_locked. */
    void (*ready_signal_locked)(struct port_fd_source *src, uint32_t events);
    /* Optional: the port lost its last handle. Called with the port lock held (must not take
     * it again or block); the source stays registered until port_remove_fd_source. */
    void (*closed)(struct port_fd_source *src);
    /* private */
    struct zx_port *port;
    struct list_node node; /* port->sources */
    bool oneshot;
};
zx_status_t port_add_fd_source(struct zx_port *port, struct port_fd_source *src);
/* Queues pp from a ready_locked hook (the polling thread will look at the queue: no wake). */
zx_status_t port_enqueue_polled_locked(struct zx_port *port, struct port_packet *pp);
/* Returns once no thread can be running src->ready() any more. */
void port_remove_fd_source(struct port_fd_source *src);
/* Changes the epoll events of a source (EPOLLONESHOT included when wanted). */
zx_status_t port_rearm_fd_source(struct port_fd_source *src, uint32_t events);

/* The fd sources of one waitable object (an fd, a timer), at most one per port it is
 * waited on from. Guarded by g_signal_lock. */
#define OBJECT_MAX_PORTS 8
struct port_source_set {
    struct port_fd_source *v[OBJECT_MAX_PORTS];
};
struct port_fd_source *port_source_find(struct port_source_set *set, struct zx_port *port);
/* Adds src (owned by the set from now on) on port: ZX_ERR_NO_RESOURCES when full. */
zx_status_t port_source_add(struct port_source_set *set, struct zx_port *port,
                            struct port_fd_source *src);
/* Removes every source and frees it (each was malloc'd with src at its start). */
void port_source_clear(struct port_source_set *set);

zx_time_t clock_monotonic_ns(void);

#endif
