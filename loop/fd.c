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

static void fd_ready(struct port_fd_source *src, uint32_t events) {
    struct fd_port *fp = (struct fd_port *)src;
    pthread_mutex_lock(&g_signal_lock);
    int fired = object_fire_locked(&fp->fdo->obj, src->port, from_poll(events));
    uint32_t want = to_epoll(object_pending_triggers_locked(&fp->fdo->obj, src->port));
    /* Readiness that woke nobody: disarm, or the poller would spin on level readiness. A
     * report that did wake a wait keeps the registration: its handler usually waits again. */
    if (!fired && want != fp->armed) set_armed(fp, want);
    pthread_mutex_unlock(&g_signal_lock);
}

static zx_status_t fd_arm(struct zx_object *obj, struct zx_port *port) {
    struct fd_object *f = (struct fd_object *)obj;
    uint32_t events = to_epoll(object_pending_triggers_locked(obj, port));
    struct fd_port *fp = (struct fd_port *)port_source_find(&f->ports, port);
    if (fp) {
        if (events & ~fp->armed) set_armed(fp, events | fp->armed);
        return ZX_OK;
    }
    fp = calloc(1, sizeof *fp);
    if (!fp) return ZX_ERR_NO_MEMORY;
    fp->fdo = f;
    fp->src = (struct port_fd_source){.fd = f->fd, .events = events, .ready = fd_ready};
    fp->armed = events;
    zx_status_t st = port_source_add(&f->ports, port, &fp->src);
    if (st != ZX_OK) free(fp);
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
