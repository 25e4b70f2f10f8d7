/* Objects, signals and waits: zx_object_signal, zx_object_wait_one, zx_object_wait_async. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loop/object.h"

struct lock g_signal_lock;
static struct cond sync_waiters_cond; /* all zx_object_wait_one callers */

void object_init(struct zx_object *obj, const struct object_ops *ops) {
    obj->ops = ops;
    atomic_init(&obj->refs, 1);
    atomic_init(&obj->handles, 0);
    atomic_init(&obj->handle_closes, 0);
    obj->signals = 0;
    list_init(&obj->observers);
}

void object_ref(struct zx_object *obj) { atomic_fetch_add_explicit(&obj->refs, 1, memory_order_relaxed); }

void object_unref(struct zx_object *obj) {
    if (atomic_fetch_sub_explicit(&obj->refs, 1, memory_order_acq_rel) == 1) obj->ops->destroy(obj);
}

/* One freed observer kept per thread: a handler that waits again (every fd wait on the loop
 * does) takes back the one its packet just freed, without malloc and free on each wake. */
static __thread struct observer *spare_observer;
static __thread bool spare_registered;
static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;

static void spare_free(void *unused) {
    (void)unused;
    free(spare_observer);
    spare_observer = NULL;
}
static void spare_key_create(void) {
    if (pthread_key_create(&spare_key, spare_free) != 0) abort();
}

static struct observer *observer_alloc(void) {
    struct observer *o = spare_observer;
    if (!o) return calloc(1, sizeof *o);
    spare_observer = NULL;
    memset(o, 0, sizeof *o);
    return o;
}

void observer_free(struct observer *o) {
    if (o->port) object_unref((struct zx_object *)o->port);
    if (o->obj) object_unref(o->obj); /* NULL: orphaned (port_orphan_observer_locked) */
    if (!spare_registered && !spare_observer) { /* the thread's end frees its spare */
        pthread_once(&spare_once, spare_key_create);
        spare_registered = pthread_setspecific(spare_key, &spare_registered) == 0;
    }
    if (spare_observer || !spare_registered) free(o);
    else spare_observer = o;
}

/* poll_signals may latch signals that changed by themselves (an expired timer). */
static inline zx_signals_t current_signals_locked(struct zx_object *obj) {
    zx_signals_t s = obj->ops->poll_signals ? obj->ops->poll_signals(obj) : 0;
    return s | obj->signals;
}

zx_signals_t object_current_signals_locked(struct zx_object *obj) { return current_signals_locked(obj); }

zx_time_t observer_timestamp(uint32_t options) {
    if (options & ZX_WAIT_ASYNC_BOOT_TIMESTAMP) return zx_clock_get_boot();
    if (options & ZX_WAIT_ASYNC_TIMESTAMP) return zx_clock_get_monotonic();
    return 0;
}

/* Queues the observer's signal packet; the observer now belongs to the port queue. */
static void observer_deliver_locked(struct observer *o, zx_signals_t observed) {
    o->pp.packet.signal = (zx_packet_signal_t){
        .trigger = o->trigger, .observed = observed, .count = 1, .timestamp = observer_timestamp(o->options)};
    zx_status_t st = port_queue_packet(o->port, &o->pp);
    if (st != ZX_OK) {
        /* The port lost its last handle meanwhile: nobody can ever read the packet. */
        observer_free(o);
    }
}

static void observer_fire_locked(struct observer *o, zx_signals_t observed) {
    list_delete(&o->obj_node);
    if (o->cond) {
        o->fired = true;
        o->observed = observed;
        cond_broadcast(o->cond);
        return;
    }
    port_unlink_observer_locked(o);
    observer_deliver_locked(o, observed);
}

int object_fire_locked(struct zx_object *obj, struct zx_port *port, zx_signals_t signals) {
    int fired = 0;
    struct list_node *n, *tmp;
    list_for_each_safe(&obj->observers, n, tmp) {
        struct observer *o = list_entry(n, struct observer, obj_node);
        if (port && o->port != port) continue;
        if (o->trigger & signals) {
            observer_fire_locked(o, signals);
            fired++;
        }
    }
    return fired;
}

zx_signals_t object_pending_triggers_locked(struct zx_object *obj, struct zx_port *port) {
    zx_signals_t t = 0;
    struct list_node *n;
    for (n = obj->observers.next; n != &obj->observers; n = n->next) {
        struct observer *o = list_entry(n, struct observer, obj_node);
        if (o->port == port) t |= o->trigger;
    }
    return t;
}

void object_update_signals_locked(struct zx_object *obj, zx_signals_t clear, zx_signals_t set) {
    zx_signals_t old = obj->signals;
    obj->signals = (old & ~clear) | set;
    zx_signals_t now = object_current_signals_locked(obj);
    /* Unchanged signals cannot match a pending wait: it would have fired already. */
    if (now == old) return;
    struct list_node *n, *tmp;
    list_for_each_safe(&obj->observers, n, tmp) {
        struct observer *o = list_entry(n, struct observer, obj_node);
        /* Level waits fire on any match; edge waits only on an inactive -> active change. */
        zx_signals_t hit = (o->options & ZX_WAIT_ASYNC_EDGE) ? (now & ~old) : now;
        if (o->trigger & hit) observer_fire_locked(o, now);
    }
}

void object_update_signals(struct zx_object *obj, zx_signals_t clear, zx_signals_t set) {
    lock_acquire(&g_signal_lock);
    object_update_signals_locked(obj, clear, set);
    lock_release(&g_signal_lock);
}

zx_status_t zx_object_signal(zx_handle_t handle, uint32_t clear_mask, uint32_t set_mask) {
    struct zx_object *obj;
    zx_status_t st = handle_get(handle, ZX_OBJ_TYPE_NONE, ZX_RIGHT_SIGNAL, &obj);
    if (st != ZX_OK) return st;
    if ((clear_mask | set_mask) & ~obj->ops->user_signals) {
        st = ZX_ERR_INVALID_ARGS;
    } else {
        object_update_signals(obj, clear_mask, set_mask);
    }
    object_unref(obj);
    return st;
}

static struct timespec to_timespec(zx_time_t t) {
    return (struct timespec){.tv_sec = t / 1000000000, .tv_nsec = t % 1000000000};
}

zx_status_t zx_object_wait_one(zx_handle_t handle, zx_signals_t signals, zx_time_t deadline,
                               zx_signals_t *observed) {
    struct zx_object *obj;
    zx_status_t st = handle_get(handle, ZX_OBJ_TYPE_NONE, ZX_RIGHT_WAIT, &obj);
    if (st != ZX_OK) return st;
    if (!obj->ops->waitable) {
        object_unref(obj);
        return ZX_ERR_NOT_SUPPORTED;
    }
    if (obj->ops->wait_one) {
        st = obj->ops->wait_one(obj, signals, deadline, observed);
        object_unref(obj);
        return st;
    }
    struct observer o = {.obj = obj, .trigger = signals, .cond = &sync_waiters_cond};
    list_init(&o.obj_node);
    lock_acquire(&g_signal_lock);
    zx_signals_t cur;
    for (;;) {
        cur = object_current_signals_locked(obj);
        if (o.fired && o.observed == ZX_SIGNAL_HANDLE_CLOSED) {
            cur |= ZX_SIGNAL_HANDLE_CLOSED;
            st = ZX_ERR_CANCELED;
            break;
        }
        if (cur & signals) break;
        zx_time_t now = zx_clock_get_monotonic();
        if (now >= deadline) {
            st = ZX_ERR_TIMED_OUT;
            break;
        }
        zx_time_t wake = deadline;
        if (obj->ops->next_change) {
            zx_time_t c = obj->ops->next_change(obj);
            if (c < wake) wake = c;
        }
        if (!list_in_list(&o.obj_node)) list_add_tail(&obj->observers, &o.obj_node);
        o.fired = false;
        struct timespec ts = to_timespec(wake); /* cond_wait's deadlines are CLOCK_MONOTONIC */
        cond_wait(o.cond, &g_signal_lock, wake == ZX_TIME_INFINITE ? NULL : &ts);
    }
    if (list_in_list(&o.obj_node)) list_delete(&o.obj_node);
    lock_release(&g_signal_lock);
    if (observed) *observed = cur;
    object_unref(obj);
    return st;
}

zx_status_t zx_object_wait_async(zx_handle_t handle, zx_handle_t port_handle, uint64_t key,
                                 zx_signals_t signals, uint32_t options) {
    struct zx_object *pobj;
    zx_status_t st = handle_get(port_handle, ZX_OBJ_TYPE_PORT, ZX_RIGHT_WRITE, &pobj);
    if (st != ZX_OK) return st;
    st = object_wait_async_on(port_from_object(pobj), handle, key, signals, options, NULL);
    object_unref(pobj);
    return st;
}

/* Links o (its object, port and packet set up) for (key, signals, options), or delivers its
 * packet at once when a level wait is already satisfied. Frees o on failure.
 * The handle may have closed since it was looked up: once the last one has, the object's
 * observers have been cancelled (or are about to be, after our unlock) and its fd sources
 * removed, and a wait linked now would never be cancelled nor its source removed. drop_handle
 * counts the handle down before it takes g_signal_lock, so under that lock we see the zero, or
 * it sees our observer. */
/* A re-armed fd wait finds the fd's epoll registration still covering its trigger. */
static bool still_armed(const struct observer *o, zx_signals_t signals) {
    return o->arm_word && o->arm_trigger == signals && !(o->arm_bits & ~*o->arm_word);
}

static inline __attribute__((always_inline)) zx_status_t observer_begin(struct observer *o, uint64_t key,
                                                                        zx_signals_t signals, uint32_t options) {
    struct zx_object *obj = o->obj;
    o->trigger = signals;
    o->options = options;
    o->pp.packet.key = key;
    zx_status_t st = ZX_OK;
    lock_acquire(&g_signal_lock);
    zx_signals_t cur;
    if (atomic_load(&obj->handles) == 0) {
        st = ZX_ERR_BAD_HANDLE; /* as Zircon's wait_async on a closed handle */
    } else if (!(options & ZX_WAIT_ASYNC_EDGE) && ((cur = current_signals_locked(obj)) & signals)) {
        if (port_refuses_locked(o->port, o->tag)) st = ZX_ERR_BAD_STATE;
        else observer_deliver_locked(o, cur);
    } else if ((st = port_link_observer_locked(o->port, o)) == ZX_OK) {
        list_add_tail(&obj->observers, &o->obj_node);
        if (obj->ops->arm && !still_armed(o, signals) && (st = obj->ops->arm(obj, o, signals)) != ZX_OK) {
            list_delete(&o->obj_node);
            port_unlink_observer_locked(o);
        }
    }
    lock_release(&g_signal_lock);
    if (st != ZX_OK) observer_free(o);
    return st;
}

zx_status_t object_wait_async_on(struct zx_port *port, zx_handle_t handle, uint64_t key, zx_signals_t signals,
                                 uint32_t options, const void *tag) {
    if (options & ~(ZX_WAIT_ASYNC_TIMESTAMP | ZX_WAIT_ASYNC_EDGE | ZX_WAIT_ASYNC_BOOT_TIMESTAMP))
        return ZX_ERR_INVALID_ARGS;
    struct zx_object *obj;
    unsigned closes;
    zx_status_t st = handle_get_stamped(handle, ZX_OBJ_TYPE_NONE, ZX_RIGHT_WAIT, &obj, &closes);
    if (st != ZX_OK) return st;
    if (!obj->ops->waitable ||
        (obj->ops->type == ZX_OBJ_TYPE_FD && (options & ZX_WAIT_ASYNC_EDGE))) {
        object_unref(obj);
        return ZX_ERR_NOT_SUPPORTED;
    }
    struct observer *o = observer_alloc();
    if (!o) {
        object_unref(obj);
        return ZX_ERR_NO_MEMORY;
    }
    /* The observer keeps a reference to both. */
    object_ref((struct zx_object *)port);
    o->obj = obj;
    o->port = port;
    o->handle = handle;
    o->closes = closes;
    o->tag = tag;
    o->pp.kind = PORT_PACKET_OBSERVER;
    o->pp.owner = o;
    o->pp.packet.type = ZX_PKT_TYPE_SIGNAL_ONE;
    list_init(&o->obj_node);
    list_init(&o->port_node);
    return observer_begin(o, key, signals, options);
}

/* The options were checked when o was made; the same handle with the same close count is the
 * same object with the same rights, so nothing else needs checking again. */
__attribute__((hot)) zx_status_t object_rewait_async(struct observer *o, struct zx_port *port, zx_handle_t handle,
                                                     uint64_t key, zx_signals_t signals, uint32_t options,
                                                     const void *tag) {
    if (o->port == port && o->handle == handle && o->options == options && o->tag == tag && o->obj &&
        o->closes == atomic_load_explicit(&o->obj->handle_closes, memory_order_acquire))
        return observer_begin(o, key, signals, options);
    observer_free(o);
    return object_wait_async_on(port, handle, key, signals, options, tag);
}
