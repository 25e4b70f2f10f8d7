/* Timers: ZX_TIMER_SIGNALED is asserted at the deadline. The signal is computed from the
 * deadline whenever it is read; a timerfd per waiting port wakes that port's poller so
 * asynchronous waits fire on time. */
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "loop/object.h"

struct timer_port {
    struct port_fd_source src; /* first: the set frees it */
    struct zx_timer *timer;
};

struct zx_timer {
    struct zx_object obj;
    int tfd;
    zx_time_t deadline; /* g_signal_lock; ZX_TIME_INFINITE when not armed */
    struct port_source_set ports; /* g_signal_lock */
};

static zx_signals_t timer_poll(struct zx_object *obj) {
    struct zx_timer *t = (struct zx_timer *)obj;
    if (t->deadline != ZX_TIME_INFINITE && zx_clock_get_monotonic() >= t->deadline) {
        t->deadline = ZX_TIME_INFINITE; /* latch: it stays signaled until set or cancel */
        obj->signals |= ZX_TIMER_SIGNALED;
    }
    return 0;
}

static zx_time_t timer_next_change(struct zx_object *obj) {
    return ((struct zx_timer *)obj)->deadline;
}

static void timer_ready(struct port_fd_source *src, uint32_t events) {
    (void)events;
    struct timer_port *tp = (struct timer_port *)src;
    uint64_t expirations;
    if (read(tp->timer->tfd, &expirations, sizeof expirations) < 0) { /* EAGAIN: re-set */
    }
    lock_acquire(&g_signal_lock);
    object_update_signals_locked(&tp->timer->obj, 0, 0);
    lock_release(&g_signal_lock);
}

static zx_status_t timer_arm(struct zx_object *obj, struct observer *o, zx_signals_t trigger) {
    (void)trigger;
    struct zx_timer *t = (struct zx_timer *)obj;
    struct zx_port *port = o->port;
    if (port_source_find(&t->ports, port)) return ZX_OK;
    struct timer_port *tp = calloc(1, sizeof *tp);
    if (!tp) return ZX_ERR_NO_MEMORY;
    tp->timer = t;
    tp->src = (struct port_fd_source){.fd = t->tfd, .events = EPOLLIN, .ready = timer_ready};
    zx_status_t st = port_source_add(&t->ports, port, &tp->src);
    if (st != ZX_OK) free(tp);
    return st;
}

static void timer_on_zero_handles(struct zx_object *obj) {
    port_source_clear(&((struct zx_timer *)obj)->ports);
}

static void timer_destroy(struct zx_object *obj) {
    struct zx_timer *t = (struct zx_timer *)obj;
    close(t->tfd);
    free(t);
}

static const struct object_ops timer_ops = {
    .type = ZX_OBJ_TYPE_TIMER,
    .waitable = true,
    .user_signals = 0,
    .on_zero_handles = timer_on_zero_handles,
    .destroy = timer_destroy,
    .poll_signals = timer_poll,
    .next_change = timer_next_change,
    .arm = timer_arm,
};

zx_status_t zx_timer_create(uint32_t options, zx_clock_t clock_id, zx_handle_t *out) {
    if (options > ZX_TIMER_SLACK_LATE || clock_id != ZX_CLOCK_MONOTONIC || !out)
        return ZX_ERR_INVALID_ARGS;
    struct zx_timer *t = calloc(1, sizeof *t);
    if (!t) return ZX_ERR_NO_MEMORY;
    t->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (t->tfd < 0) {
        free(t);
        return ZX_ERR_NO_RESOURCES;
    }
    t->deadline = ZX_TIME_INFINITE;
    object_init(&t->obj, &timer_ops);
    zx_status_t st = handle_create(&t->obj, ZX_DEFAULT_TIMER_RIGHTS, out);
    object_unref(&t->obj);
    return st;
}

static zx_status_t get_timer(zx_handle_t h, struct zx_timer **out) {
    struct zx_object *obj;
    zx_status_t st = handle_get(h, ZX_OBJ_TYPE_TIMER, ZX_RIGHT_WRITE, &obj);
    if (st == ZX_OK) *out = (struct zx_timer *)obj;
    return st;
}

zx_status_t zx_timer_set(zx_handle_t handle, zx_time_t deadline, zx_duration_t slack) {
    if (slack < 0) return ZX_ERR_OUT_OF_RANGE;
    struct zx_timer *t;
    zx_status_t st = get_timer(handle, &t);
    if (st != ZX_OK) return st;
    if (deadline < 1) deadline = 1; /* timerfd: 0 would disarm; the past fires at once */
    lock_acquire(&g_signal_lock);
    t->obj.signals &= ~ZX_TIMER_SIGNALED;
    t->deadline = deadline;
    struct itimerspec its = {.it_value = {.tv_sec = deadline / 1000000000,
                                          .tv_nsec = deadline % 1000000000}};
    if (deadline != ZX_TIME_INFINITE) timerfd_settime(t->tfd, TFD_TIMER_ABSTIME, &its, NULL);
    object_update_signals_locked(&t->obj, 0, 0); /* a deadline in the past fires now */
    lock_release(&g_signal_lock);
    object_unref(&t->obj);
    return ZX_OK;
}

zx_status_t zx_timer_cancel(zx_handle_t handle) {
    struct zx_timer *t;
    zx_status_t st = get_timer(handle, &t);
    if (st != ZX_OK) return st;
    lock_acquire(&g_signal_lock);
    t->obj.signals &= ~ZX_TIMER_SIGNALED;
    t->deadline = ZX_TIME_INFINITE;
    struct itimerspec off = {0};
    timerfd_settime(t->tfd, 0, &off, NULL);
    lock_release(&g_signal_lock);
    object_unref(&t->obj);
    return ZX_OK;
}
