/* Linux extension: a file descriptor as a waitable object. Readiness is only known when
 * someone asks: zx_object_wait_one polls the fd, and each port with waits on it keeps one
 * level-triggered epoll registration. It stays armed while waits keep coming (a handler that
 * re-begins its wait costs no epoll_ctl) and is disarmed lazily, when readiness arrives with
 * no wait pending. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "loop/object.h"

struct fd_port {
    struct port_fd_source src; /* first: the set frees it */
    struct fd_object *fdo;
    uint32_t armed; /* g_signal_lock: epoll events registered now */
};

/* events == 0 disarms: one-shot with no events silences even EPOLLHUP/EPOLLERR after one report. */
static void set_armed(struct fd_port *fp, uint32_t events) {
    port_rearm_fd_source(&fp->src, events ? events : EPOLLONESHOT);
    fp->armed = events;
}

struct fd_object {
    struct zx_object obj;
    int fd;
    struct port_source_set ports;
};

static uint32_t to_epoll(zx_signals_t s) {
    uint32_t e = 0;
    if (s & ZX_FD_READABLE) e |= EPOLLIN;
    if (s & ZX_FD_WRITABLE) e |= EPOLLOUT;
    if (s & ZX_FD_HANGUP) e |= EPOLLRDHUP;
    return e; /* EPOLLHUP and EPOLLERR are always reported */
}

static zx_signals_t from_poll(uint32_t e) {
    zx_signals_t s = 0;
    if (e & (EPOLLIN | EPOLLPRI)) s |= ZX_FD_READABLE;
    if (e & EPOLLOUT) s |= ZX_FD_WRITABLE;
    if (e & (EPOLLHUP | EPOLLRDHUP)) s |= ZX_FD_HANGUP;
    if (e & EPOLLERR) s |= ZX_FD_ERROR;
    return s;
}

/* Readiness that woke nobody: disarm, or the poller would spin on level readiness. A report
 * that did wake a wait keeps the registration: its handler usually waits again. */
static void fd_fired_locked(struct fd_port *fp, int fired) {
    if (fired) return;
    uint32_t want = to_epoll(object_pending_triggers_locked(&fp->fdo->obj, fp->src.port));
    if (want != fp->armed) set_armed(fp, want);
}

static void fd_ready(struct port_fd_source *src, uint32_t events) {
    struct fd_port *fp = (struct fd_port *)src;
    lock_acquire(&g_signal_lock);
    fd_fired_locked(fp, object_fire_locked(&fp->fdo->obj, src->port, from_poll(events)));
    lock_release(&g_signal_lock);
}

__attribute__((hot)) static void fd_ready_signal_locked(struct port_fd_source *src, uint32_t events) {
    struct fd_port *fp = (struct fd_port *)src;
    fd_fired_locked(fp, object_fire_polled_locked(&fp->fdo->obj, src->port, from_poll(events)));
}

/* fp lives until the object's last handle closes, which a re-armed wait checks first. */
static void remember_armed(struct observer *o, struct fd_port *fp, zx_signals_t trigger, uint32_t events) {
    o->arm_word = &fp->armed;
    o->arm_bits = events;
    o->arm_trigger = trigger;
}

/* `armed` always covers the triggers of the waits pending on the port (it only grows here, and
 * fd_fired_locked sets it to exactly them): a new wait needs only its own events added. */
static zx_status_t fd_arm(struct zx_object *obj, struct observer *o, zx_signals_t trigger) {
    struct fd_object *f = (struct fd_object *)obj;
    struct zx_port *port = o->port;
    struct fd_port *fp = (struct fd_port *)port_source_find(&f->ports, port);
    if (fp) {
        uint32_t events = to_epoll(trigger);
        if (events & ~fp->armed) set_armed(fp, events | fp->armed);
        remember_armed(o, fp, trigger, events);
        return ZX_OK;
    }
    uint32_t events = to_epoll(object_pending_triggers_locked(obj, port));
    fp = calloc(1, sizeof *fp);
    if (!fp) return ZX_ERR_NO_MEMORY;
    fp->fdo = f;
    fp->src = (struct port_fd_source){.fd = f->fd, .events = events, .ready = fd_ready,
                                       .ready_signal_locked = fd_ready_signal_locked};
    fp->armed = events;
    zx_status_t st = port_source_add(&f->ports, port, &fp->src);
    if (st != ZX_OK) free(fp);
    else remember_armed(o, fp, trigger, to_epoll(trigger));
    return st;
}

static zx_status_t fd_wait_one(struct zx_object *obj, zx_signals_t signals, zx_time_t deadline,
                               zx_signals_t *observed) {
    struct fd_object *f = (struct fd_object *)obj;
    for (;;) {
        struct pollfd pfd = {.fd = f->fd, .events = (short)(to_epoll(signals) & ~EPOLLRDHUP) | POLLRDHUP};
        int n = poll(&pfd, 1, timeout_ms_until(deadline));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return ZX_ERR_BAD_STATE;
        zx_signals_t s = from_poll((uint32_t)pfd.revents);
        if (observed) *observed = s;
        if (s & signals) return ZX_OK;
        if (n == 0 && deadline != ZX_TIME_INFINITE && zx_clock_get_monotonic() >= deadline)
            return ZX_ERR_TIMED_OUT;
    }
}

static void fd_on_zero_handles(struct zx_object *obj) {
    port_source_clear(&((struct fd_object *)obj)->ports);
}

static void fd_destroy(struct zx_object *obj) { free(obj); }

static const struct object_ops fd_ops = {
    .type = ZX_OBJ_TYPE_FD,
    .waitable = true,
    .on_zero_handles = fd_on_zero_handles,
    .destroy = fd_destroy,
    .arm = fd_arm,
    .wait_one = fd_wait_one,
};

zx_status_t zx_fd_create(int fd, uint32_t options, zx_handle_t *out) {
    if (fd < 0 || options != 0 || !out) return ZX_ERR_INVALID_ARGS;
    struct fd_object *f = calloc(1, sizeof *f);
    if (!f) return ZX_ERR_NO_MEMORY;
    object_init(&f->obj, &fd_ops);
    f->fd = fd;
    zx_status_t st = handle_create(&f->obj, ZX_RIGHTS_BASIC | ZX_RIGHTS_IO, out);
    object_unref(&f->obj);
    return st;
}
