/* Ports, handles and waits (zircon-reference §4, §5). */
#include <errno.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "loop/object.h"
#include "tests/lib/check.h"

static zx_port_packet_t user_packet(uint64_t key, uint64_t v) {
    zx_port_packet_t p = {.key = key, .type = ZX_PKT_TYPE_USER};
    p.user.u64[0] = v;
    return p;
}

TEST(packets_come_out_in_fifo_order) {
    zx_handle_t port;
    CHECK_EQ(zx_port_create(0, &port), ZX_OK);
    for (uint64_t i = 0; i < 100; i++) {
        zx_port_packet_t p = user_packet(7, i);
        CHECK_EQ(zx_port_queue(port, &p), ZX_OK);
    }
    for (uint64_t i = 0; i < 100; i++) {
        zx_port_packet_t p;
        CHECK_EQ(zx_port_wait(port, 0, &p), ZX_OK);
        CHECK_EQ(p.key, 7);
        CHECK_EQ(p.user.u64[0], i);
    }
    zx_port_packet_t p;
    CHECK_EQ(zx_port_wait(port, 0, &p), ZX_ERR_TIMED_OUT);
    CHECK_EQ(zx_port_wait(port, zx_deadline_after(ZX_MSEC(5)), &p), ZX_ERR_TIMED_OUT);
    CHECK_EQ(zx_handle_close(port), ZX_OK);
}

TEST(queue_forces_user_type_and_keeps_status) {
    zx_handle_t port;
    CHECK_EQ(zx_port_create(0, &port), ZX_OK);
    zx_port_packet_t in = {.key = 1, .type = ZX_PKT_TYPE_GUEST_BELL, .status = -5};
    in.user.u32[7] = 0xabcd;
    CHECK_EQ(zx_port_queue(port, &in), ZX_OK);
    zx_port_packet_t out;
    CHECK_EQ(zx_port_wait(port, ZX_TIME_INFINITE, &out), ZX_OK);
    CHECK_EQ(out.type, ZX_PKT_TYPE_USER);
    CHECK_EQ(out.status, -5);
    CHECK_EQ(out.user.u32[7], 0xabcd);
    zx_handle_close(port);
}

struct waiter_arg {
    zx_handle_t port;
    uint64_t got;
    int count;
};

static void *waiter(void *a) {
    struct waiter_arg *w = a;
    zx_port_packet_t p;
    if (zx_port_wait(w->port, zx_deadline_after(ZX_SEC(5)), &p) == ZX_OK) {
        w->got = p.user.u64[0];
        w->count++;
    }
    return NULL;
}

TEST(many_waiters_released_one_per_packet) {
    enum { N = 6 };
    zx_handle_t port;
    CHECK_EQ(zx_port_create(0, &port), ZX_OK);
    pthread_t t[N];
    struct waiter_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (struct waiter_arg){.port = port};
        pthread_create(&t[i], NULL, waiter, &args[i]);
    }
    usleep(50000); /* let them all block */
    for (int i = 0; i < N; i++) {
        zx_port_packet_t p = user_packet(1, (uint64_t)i + 1);
        CHECK_EQ(zx_port_queue(port, &p), ZX_OK);
    }
    for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
    uint64_t seen = 0;
    for (int i = 0; i < N; i++) {
        CHECK_EQ(args[i].count, 1); /* each released by exactly one packet */
        seen |= 1ull << args[i].got;
    }
    CHECK_EQ(seen, 0x7e);
    zx_handle_close(port);
}

TEST(limit_reached_gives_should_wait) {
    zx_handle_t port;
    CHECK_EQ(zx_port_create(0, &port), ZX_OK);
    zx_port_packet_t p = user_packet(1, 0);
    for (int i = 0; i < 4096; i++) CHECK_EQ(zx_port_queue(port, &p), ZX_OK);
    CHECK_EQ(zx_port_queue(port, &p), ZX_ERR_SHOULD_WAIT);
    zx_port_packet_t out;
    CHECK_EQ(zx_port_wait(port, 0, &out), ZX_OK);
    CHECK_EQ(zx_port_queue(port, &p), ZX_OK);
    CHECK_EQ(zx_port_queue(port, &p), ZX_ERR_SHOULD_WAIT);
    zx_handle_close(port); /* frees 4096 queued packets (ASan checks) */
}

TEST(signal_limit_is_separate_from_user_limit) {
    zx_handle_t port, ev;
    CHECK_EQ(zx_port_create(0, &port), ZX_OK);
    CHECK_EQ(zx_event_create(0, &ev), ZX_OK);
    zx_port_packet_t p = user_packet(1, 0);
    for (int i = 0; i < 4096; i++) CHECK_EQ(zx_port_queue(port, &p), ZX_OK);
    CHECK_EQ(zx_object_signal(ev, 0, ZX_USER_SIGNAL_0), ZX_OK);
    CHECK_EQ(zx_object_wait_async(ev, port, 2, ZX_USER_SIGNAL_0, 0), ZX_OK);
    int signals = 0;
    zx_port_packet_t out;
    while (zx_port_wait(port, 0, &out) == ZX_OK) signals += out.type == ZX_PKT_TYPE_SIGNAL_ONE;
    CHECK_EQ(signals, 1);
    zx_handle_close(ev);
    zx_handle_close(port);
}

TEST(wait_async_level_edge_and_observed) {
    zx_handle_t port, ev;
    CHECK_EQ(zx_port_create(0, &port), ZX_OK);
    CHECK_EQ(zx_event_create(0, &ev), ZX_OK);
    CHECK_EQ(zx_object_signal(ev, 0, ZX_USER_SIGNAL_0 | ZX_USER_SIGNAL_1), ZX_OK);
    /* level: already asserted -> fires at once, observed holds every asserted signal */
    CHECK_EQ(zx_object_wait_async(ev, port, 10, ZX_USER_SIGNAL_0, 0), ZX_OK);
    zx_port_packet_t out;
    CHECK_EQ(zx_port_wait(port, 0, &out), ZX_OK);
    CHECK_EQ(out.key, 10);
    CHECK_EQ(out.type, ZX_PKT_TYPE_SIGNAL_ONE);
    CHECK_EQ(out.status, ZX_OK);
    CHECK_EQ(out.signal.trigger, ZX_USER_SIGNAL_0);
    CHECK_EQ(out.signal.observed, ZX_USER_SIGNAL_0 | ZX_USER_SIGNAL_1);
    CHECK_EQ(out.signal.count, 1);
    CHECK_EQ(out.signal.timestamp, 0);
    /* edge: asserted already -> nothing until it goes inactive -> active */
    CHECK_EQ(zx_object_wait_async(ev, port, 11, ZX_USER_SIGNAL_0, ZX_WAIT_ASYNC_EDGE), ZX_OK);
    CHECK_EQ(zx_port_wait(port, 0, &out), ZX_ERR_TIMED_OUT);
    CHECK_EQ(zx_object_signal(ev, ZX_USER_SIGNAL_0, 0), ZX_OK);
    CHECK_EQ(zx_port_wait(port, 0, &out), ZX_ERR_TIMED_OUT);
    zx_time_t before = zx_clock_get_monotonic();
    CHECK_EQ(zx_object_wait_async(ev, port, 12, ZX_USER_SIGNAL_2, ZX_WAIT_ASYNC_TIMESTAMP), ZX_OK);
    CHECK_EQ(zx_object_signal(ev, 0, ZX_USER_SIGNAL_0 | ZX_USER_SIGNAL_2), ZX_OK);
    zx_time_t after = zx_clock_get_monotonic();
    CHECK_EQ(zx_port_wait(port, 0, &out), ZX_OK);
    CHECK_EQ(out.key, 11);
    CHECK_EQ(zx_port_wait(port, 0, &out), ZX_OK);
    CHECK_EQ(out.key, 12);
    CHECK(out.signal.timestamp >= before && out.signal.timestamp <= after);
    /* one-shot */
    CHECK_EQ(zx_object_signal(ev, ZX_USER_SIGNAL_ALL, ZX_USER_SIGNAL_0 | ZX_USER_SIGNAL_2), ZX_OK);
    CHECK_EQ(zx_port_wait(port, 0, &out), ZX_ERR_TIMED_OUT);
    /* two identical waits, two packets */
    CHECK_EQ(zx_object_wait_async(ev, port, 13, ZX_USER_SIGNAL_3, 0), ZX_OK);
    CHECK_EQ(zx_object_wait_async(ev, port, 13, ZX_USER_SIGNAL_3, 0), ZX_OK);
    CHECK_EQ(zx_object_signal(ev, 0, ZX_USER_SIGNAL_3), ZX_OK);
    CHECK_EQ(zx_port_wait(port, 0, &out), ZX_OK);
    CHECK_EQ(zx_port_wait(port, 0, &out), ZX_OK);
    CHECK_EQ(zx_port_wait(port, 0, &out), ZX_ERR_TIMED_OUT);
    CHECK_EQ(zx_object_wait_async(ev, port, 1, 1, 0x80), ZX_ERR_INVALID_ARGS);
    zx_handle_close(ev);
    zx_handle_close(port);
}

TEST(cancel_by_handle_and_key_removes_waits_and_packets) {
    zx_handle_t port, ev1, ev2;
    CHECK_EQ(zx_port_create(0, &port), ZX_OK);
    CHECK_EQ(zx_event_create(0, &ev1), ZX_OK);
    CHECK_EQ(zx_event_create(0, &ev2), ZX_OK);
    CHECK_EQ(zx_object_wait_async(ev1, port, 5, ZX_EVENT_SIGNALED, 0), ZX_OK);
    CHECK_EQ(zx_object_wait_async(ev2, port, 5, ZX_EVENT_SIGNALED, 0), ZX_OK);
    CHECK_EQ(zx_object_signal(ev1, 0, ZX_EVENT_SIGNALED), ZX_OK); /* queued */
    CHECK_EQ(zx_port_cancel(port, ev1, 5), ZX_OK);                /* removes the queued packet */
    CHECK_EQ(zx_port_cancel(port, ev1, 5), ZX_ERR_NOT_FOUND);
    zx_port_packet_t out;
    CHECK_EQ(zx_port_wait(port, 0, &out), ZX_ERR_TIMED_OUT);
    zx_port_packet_t up = user_packet(5, 1), other = user_packet(7, 2);
    CHECK_EQ(zx_port_queue(port, &up), ZX_OK);
    CHECK_EQ(zx_port_queue(port, &other), ZX_OK);
    CHECK_EQ(zx_port_queue(port, &up), ZX_OK);
    CHECK_EQ(zx_port_cancel_key(port, 0, 5), ZX_OK); /* ev2's pending wait, and both user packets */
    CHECK_EQ(zx_object_signal(ev2, 0, ZX_EVENT_SIGNALED), ZX_OK);
    CHECK_EQ(zx_port_wait(port, 0, &out), ZX_OK); /* only the other key's packet is left */
    CHECK_EQ(out.type, ZX_PKT_TYPE_USER);
    CHECK_EQ(out.key, 7);
    CHECK_EQ(zx_port_wait(port, 0, &out), ZX_ERR_TIMED_OUT);
    for (int i = 0; i < 3; i++) CHECK_EQ(zx_port_queue(port, &up), ZX_OK); /* the removed ones freed their slots */
    CHECK_EQ(zx_port_cancel_key(port, 0, 5), ZX_OK);
    CHECK_EQ(zx_object_wait_async(ev2, port, 6, ZX_EVENT_SIGNALED, 0), ZX_OK); /* queued at once */
    CHECK_EQ(zx_port_cancel_key(port, 0, 6), ZX_OK);
    CHECK_EQ(zx_port_cancel_key(port, 0, 6), ZX_ERR_NOT_FOUND);
    CHECK_EQ(zx_port_wait(port, 0, &out), ZX_ERR_TIMED_OUT);
    CHECK_EQ(zx_port_cancel_key(port, 1, 6), ZX_ERR_INVALID_ARGS);
    zx_handle_close(ev1);
    zx_handle_close(ev2);
    zx_handle_close(port);
}

TEST(bad_handles_wrong_types_and_missing_rights) {
    zx_handle_t port, ev, ro;
    CHECK_EQ(zx_port_create(0, &port), ZX_OK);
    CHECK_EQ(zx_event_create(0, &ev), ZX_OK);
    zx_port_packet_t p = user_packet(1, 0), out;
    /* stale: closed, then the slot reused */
    zx_handle_t stale = port;
    CHECK_EQ(zx_handle_close(port), ZX_OK);
    CHECK_EQ(zx_port_create(0, &port), ZX_OK);
    CHECK_NE(port, stale);
    CHECK_EQ(zx_port_queue(stale, &p), ZX_ERR_BAD_HANDLE);
    CHECK_EQ(zx_port_wait(stale, 0, &out), ZX_ERR_BAD_HANDLE);
    CHECK_EQ(zx_handle_close(stale), ZX_ERR_BAD_HANDLE);
    CHECK_EQ(zx_port_queue(12345, &p), ZX_ERR_BAD_HANDLE);
    CHECK_EQ(zx_handle_close(ZX_HANDLE_INVALID), ZX_OK);
    /* wrong type */
    CHECK_EQ(zx_port_queue(ev, &p), ZX_ERR_WRONG_TYPE);
    CHECK_EQ(zx_port_wait(ev, 0, &out), ZX_ERR_WRONG_TYPE);
    CHECK_EQ(zx_object_wait_async(ev, ev, 1, 1, 0), ZX_ERR_WRONG_TYPE);
    /* rights */
    CHECK_EQ(zx_handle_duplicate(port, ZX_RIGHT_READ, &ro), ZX_OK);
    CHECK_EQ(zx_port_queue(ro, &p), ZX_ERR_ACCESS_DENIED);
    CHECK_EQ(zx_port_cancel_key(ro, 0, 1), ZX_ERR_ACCESS_DENIED);
    CHECK_EQ(zx_object_wait_async(ev, ro, 1, 1, 0), ZX_ERR_ACCESS_DENIED);
    CHECK_EQ(zx_handle_duplicate(ro, ZX_RIGHT_SAME_RIGHTS, &ro), ZX_ERR_ACCESS_DENIED);
    zx_handle_t ev_nowait;
    CHECK_EQ(zx_handle_duplicate(ev, ZX_RIGHT_DUPLICATE | ZX_RIGHT_SIGNAL, &ev_nowait), ZX_OK);
    CHECK_EQ(zx_object_wait_async(ev_nowait, port, 1, 1, 0), ZX_ERR_ACCESS_DENIED);
    CHECK_EQ(zx_port_cancel(port, ev_nowait, 1), ZX_ERR_ACCESS_DENIED);
    CHECK_EQ(zx_object_wait_async(port, port, 1, 1, 0), ZX_ERR_ACCESS_DENIED); /* no WAIT right */
    zx_handle_t irq;
    CHECK_EQ(zx_interrupt_create(0, 0, ZX_INTERRUPT_VIRTUAL, &irq), ZX_OK);
    CHECK_EQ(zx_object_wait_async(irq, port, 1, 1, 0), ZX_ERR_NOT_SUPPORTED);
    zx_handle_close(irq);
    CHECK_EQ(zx_port_create(2, &ro), ZX_ERR_INVALID_ARGS);
    CHECK_EQ(zx_object_signal(ev, 0, ZX_OBJECT_READABLE), ZX_ERR_INVALID_ARGS);
    zx_handle_t list[] = {ev, ev_nowait, port};
    CHECK_EQ(zx_handle_close_many(list, 3), ZX_OK);
}

TEST(a_cached_handle_sees_closes_replaces_and_rights) {
    zx_handle_t port, dup;
    CHECK_EQ(zx_port_create(0, &port), ZX_OK);
    struct handle_cache c = {0};
    struct zx_object *obj, *again;
    CHECK_EQ(handle_get_cached(&c, port, ZX_OBJ_TYPE_PORT, ZX_RIGHT_READ, &obj), ZX_OK);
    CHECK_EQ(handle_get_cached(&c, port, ZX_OBJ_TYPE_PORT, ZX_RIGHT_WRITE, &again), ZX_OK);
    CHECK(obj == again);
    CHECK_EQ(handle_get_cached(&c, port, ZX_OBJ_TYPE_EVENT, ZX_RIGHT_NONE, &again), ZX_ERR_WRONG_TYPE);
    CHECK_EQ(zx_handle_duplicate(port, ZX_RIGHT_READ, &dup), ZX_OK);
    CHECK_EQ(handle_get_cached(&c, dup, ZX_OBJ_TYPE_PORT, ZX_RIGHT_WRITE, &again), ZX_ERR_ACCESS_DENIED);
    CHECK_EQ(handle_get_cached(&c, port, ZX_OBJ_TYPE_PORT, ZX_RIGHT_WRITE, &again), ZX_OK);
    /* The cache keeps the object alive, not the handle. */
    CHECK_EQ(zx_handle_replace(port, ZX_RIGHT_SAME_RIGHTS, &port), ZX_OK);
    CHECK_EQ(handle_get_cached(&c, dup, ZX_OBJ_TYPE_PORT, ZX_RIGHT_READ, &again), ZX_OK);
    zx_handle_t old = dup;
    CHECK_EQ(zx_handle_close(dup), ZX_OK);
    CHECK_EQ(handle_get_cached(&c, old, ZX_OBJ_TYPE_PORT, ZX_RIGHT_READ, &again), ZX_ERR_BAD_HANDLE);
    CHECK(c.obj == NULL);
    handle_cache_clear(&c);
    CHECK_EQ(zx_handle_close(port), ZX_OK);
}

TEST(closing_the_last_port_handle_drops_waits_and_packets) {
    zx_handle_t port, ev;
    CHECK_EQ(zx_port_create(0, &port), ZX_OK);
    CHECK_EQ(zx_event_create(0, &ev), ZX_OK);
    for (int i = 0; i < 10; i++) CHECK_EQ(zx_object_wait_async(ev, port, i, ZX_USER_SIGNAL_0, 0), ZX_OK);
    CHECK_EQ(zx_object_wait_async(ev, port, 99, ZX_USER_SIGNAL_1, 0), ZX_OK);
    CHECK_EQ(zx_object_signal(ev, 0, ZX_USER_SIGNAL_0), ZX_OK);
    CHECK_EQ(zx_handle_close(port), ZX_OK);
    CHECK_EQ(zx_object_signal(ev, 0, ZX_USER_SIGNAL_1), ZX_OK); /* no port: nothing happens */
    CHECK_EQ(zx_handle_close(ev), ZX_OK);
}

TEST(interrupt_packets_come_first) {
    zx_handle_t port, irq, plain;
    CHECK_EQ(zx_port_create(ZX_PORT_BIND_TO_INTERRUPT, &port), ZX_OK);
    CHECK_EQ(zx_port_create(0, &plain), ZX_OK);
    CHECK_EQ(zx_interrupt_create(0, 0, ZX_INTERRUPT_VIRTUAL, &irq), ZX_OK);
    CHECK_EQ(zx_interrupt_bind(irq, plain, 1, ZX_INTERRUPT_BIND), ZX_ERR_WRONG_TYPE);
    CHECK_EQ(zx_interrupt_bind(irq, port, 77, ZX_INTERRUPT_BIND), ZX_OK);
    CHECK_EQ(zx_interrupt_bind(irq, port, 77, ZX_INTERRUPT_BIND), ZX_ERR_ALREADY_BOUND);
    zx_port_packet_t p = user_packet(1, 0), out;
    CHECK_EQ(zx_port_queue(port, &p), ZX_OK);
    CHECK_EQ(zx_interrupt_trigger(irq, 0, 1234), ZX_OK);
    CHECK_EQ(zx_interrupt_trigger(irq, 0, 5678), ZX_OK); /* latched: one packet per object */
    CHECK_EQ(zx_port_wait(port, 0, &out), ZX_OK);
    CHECK_EQ(out.type, ZX_PKT_TYPE_INTERRUPT);
    CHECK_EQ(out.key, 77);
    CHECK_EQ(out.interrupt.timestamp, 1234);
    CHECK_EQ(zx_port_wait(port, 0, &out), ZX_OK);
    CHECK_EQ(out.type, ZX_PKT_TYPE_USER);
    CHECK_EQ(zx_port_wait(port, 0, &out), ZX_ERR_TIMED_OUT);
    CHECK_EQ(zx_interrupt_ack(irq), ZX_OK); /* delivers the latched trigger */
    CHECK_EQ(zx_port_wait(port, 0, &out), ZX_OK);
    CHECK_EQ(out.interrupt.timestamp, 5678);
    CHECK_EQ(zx_interrupt_ack(irq), ZX_OK);
    CHECK_EQ(zx_interrupt_trigger(irq, 0, 1), ZX_OK);
    CHECK_EQ(zx_interrupt_bind(irq, port, 0, ZX_INTERRUPT_UNBIND), ZX_OK); /* removes it */
    CHECK_EQ(zx_port_wait(port, 0, &out), ZX_ERR_TIMED_OUT);
    CHECK_EQ(zx_interrupt_destroy(irq), ZX_OK);
    CHECK_EQ(zx_interrupt_trigger(irq, 0, 1), ZX_ERR_CANCELED);
    zx_handle_close(irq);
    zx_handle_close(plain);
    zx_handle_close(port);
}

TEST(fd_objects_report_readiness) {
    zx_handle_t port, fdh;
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    CHECK(efd >= 0);
    CHECK_EQ(zx_port_create(0, &port), ZX_OK);
    CHECK_EQ(zx_fd_create(efd, 0, &fdh), ZX_OK);
    zx_signals_t obs = 0;
    CHECK_EQ(zx_object_wait_one(fdh, ZX_FD_READABLE, zx_deadline_after(ZX_MSEC(10)), &obs), ZX_ERR_TIMED_OUT);
    CHECK_EQ(zx_object_wait_one(fdh, ZX_FD_WRITABLE, 0, &obs), ZX_OK);
    CHECK_EQ(zx_object_wait_async(fdh, port, 3, ZX_FD_READABLE, 0), ZX_OK);
    CHECK_EQ(zx_object_wait_async(fdh, port, 4, ZX_FD_READABLE, ZX_WAIT_ASYNC_EDGE), ZX_ERR_NOT_SUPPORTED);
    zx_port_packet_t out;
    CHECK_EQ(zx_port_wait(port, zx_deadline_after(ZX_MSEC(20)), &out), ZX_ERR_TIMED_OUT);
    uint64_t one = 1;
    CHECK_EQ(write(efd, &one, 8), 8);
    CHECK_EQ(zx_port_wait(port, zx_deadline_after(ZX_SEC(5)), &out), ZX_OK);
    CHECK_EQ(out.key, 3);
    CHECK(out.signal.observed & ZX_FD_READABLE);
    /* one-shot: still readable, but no new packet without a new wait */
    CHECK_EQ(zx_port_wait(port, zx_deadline_after(ZX_MSEC(20)), &out), ZX_ERR_TIMED_OUT);
    CHECK_EQ(zx_object_wait_async(fdh, port, 5, ZX_FD_READABLE, 0), ZX_OK);
    CHECK_EQ(zx_port_wait(port, zx_deadline_after(ZX_SEC(5)), &out), ZX_OK);
    CHECK_EQ(out.key, 5);
    CHECK_EQ(zx_handle_close(fdh), ZX_OK);
    close(efd);
    zx_handle_close(port);
}

struct writer_arg {
    int fd;
    int delay_ms;
};
static void *late_writer(void *a) {
    struct writer_arg *w = a;
    usleep((useconds_t)w->delay_ms * 1000);
    uint64_t one = 1;
    if (write(w->fd, &one, 8) != 8) return (void *)1;
    return NULL;
}

TEST(fd_wake_reaches_a_sleeping_waiter) {
    zx_handle_t port, fdh;
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    CHECK_EQ(zx_port_create(0, &port), ZX_OK);
    CHECK_EQ(zx_fd_create(efd, 0, &fdh), ZX_OK);
    CHECK_EQ(zx_object_wait_async(fdh, port, 9, ZX_FD_READABLE, 0), ZX_OK);
    pthread_t t;
    struct writer_arg w = {efd, 30};
    pthread_create(&t, NULL, late_writer, &w);
    zx_port_packet_t out;
    CHECK_EQ(zx_port_wait(port, zx_deadline_after(ZX_SEC(5)), &out), ZX_OK);
    CHECK_EQ(out.key, 9);
    pthread_join(t, NULL);
    zx_handle_close(fdh);
    close(efd);
    zx_handle_close(port);
}

/* The child's steps, as its exit status: 0 when all went as they should. */
static int wait_without_epoll_pwait2(void) {
    if (test_forbid_syscall(__NR_epoll_pwait2, ENOSYS) != 0) return 1;
    if (syscall(__NR_epoll_pwait2, -1, NULL, 0, NULL, NULL, 0) != -1 || errno != ENOSYS) return 2;
    zx_handle_t port, fdh;
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (zx_port_create(0, &port) != ZX_OK || zx_fd_create(efd, 0, &fdh) != ZX_OK) return 3;
    if (zx_object_wait_async(fdh, port, 9, ZX_FD_READABLE, 0) != ZX_OK) return 4;
    /* A deadline is kept to the millisecond, rounded up: never early. */
    zx_time_t t0 = zx_clock_get_monotonic();
    zx_port_packet_t out;
    if (zx_port_wait(port, zx_deadline_after(ZX_USEC(20500)), &out) != ZX_ERR_TIMED_OUT) return 5;
    if (zx_clock_get_monotonic() - t0 < ZX_USEC(20500)) return 6;
    pthread_t t;
    struct writer_arg w = {efd, 30};
    pthread_create(&t, NULL, late_writer, &w);
    if (zx_port_wait(port, zx_deadline_after(ZX_SEC(5)), &out) != ZX_OK || out.key != 9) return 7;
    pthread_join(t, NULL);
    zx_handle_close(fdh);
    close(efd);
    zx_handle_close(port);
    return 0;
}

/* Kernels before 5.11 have no epoll_pwait2: the port's poller falls back to epoll_wait. */
TEST(a_kernel_without_epoll_pwait2_still_wakes_and_times_out) {
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) _exit(wait_without_epoll_pwait2());
    int status;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
}

TEST(timers_signal_at_the_deadline) {
    zx_handle_t port, timer;
    CHECK_EQ(zx_port_create(0, &port), ZX_OK);
    CHECK_EQ(zx_timer_create(0, ZX_CLOCK_MONOTONIC, &timer), ZX_OK);
    CHECK_EQ(zx_timer_create(0, 99, &timer + 0), ZX_ERR_INVALID_ARGS);
    zx_signals_t obs;
    CHECK_EQ(zx_object_wait_one(timer, ZX_TIMER_SIGNALED, zx_deadline_after(ZX_MSEC(5)), &obs), ZX_ERR_TIMED_OUT);
    zx_time_t start = zx_clock_get_monotonic();
    CHECK_EQ(zx_timer_set(timer, start + ZX_MSEC(30), 0), ZX_OK);
    CHECK_EQ(zx_object_wait_async(timer, port, 1, ZX_TIMER_SIGNALED, 0), ZX_OK);
    zx_port_packet_t out;
    CHECK_EQ(zx_port_wait(port, zx_deadline_after(ZX_SEC(5)), &out), ZX_OK);
    CHECK(zx_clock_get_monotonic() >= start + ZX_MSEC(30));
    CHECK_EQ(out.key, 1);
    CHECK(out.signal.observed & ZX_TIMER_SIGNALED);
    CHECK_EQ(zx_object_wait_one(timer, ZX_TIMER_SIGNALED, 0, &obs), ZX_OK);
    CHECK_EQ(zx_timer_cancel(timer), ZX_OK);
    CHECK_EQ(zx_object_wait_one(timer, ZX_TIMER_SIGNALED, 0, &obs), ZX_ERR_TIMED_OUT);
    CHECK_EQ(zx_timer_set(timer, zx_deadline_after(ZX_MSEC(20)), 0), ZX_OK);
    CHECK_EQ(zx_object_wait_one(timer, ZX_TIMER_SIGNALED, zx_deadline_after(ZX_SEC(5)), &obs), ZX_OK);
    /* canceled before the deadline: no packet */
    CHECK_EQ(zx_timer_set(timer, zx_deadline_after(ZX_MSEC(20)), 0), ZX_OK);
    CHECK_EQ(zx_object_wait_async(timer, port, 2, ZX_TIMER_SIGNALED, 0), ZX_OK);
    CHECK_EQ(zx_timer_cancel(timer), ZX_OK);
    CHECK_EQ(zx_port_wait(port, zx_deadline_after(ZX_MSEC(60)), &out), ZX_ERR_TIMED_OUT);
    CHECK_EQ(zx_timer_set(timer, 0, -1), ZX_ERR_OUT_OF_RANGE);
    zx_handle_close(timer);
    zx_handle_close(port);
}

struct signaler_arg {
    zx_handle_t ev;
};
static void *late_signal(void *a) {
    usleep(30000);
    zx_object_signal(((struct signaler_arg *)a)->ev, 0, ZX_USER_SIGNAL_5);
    return NULL;
}

TEST(wait_one_blocks_until_signaled) {
    zx_handle_t ev;
    CHECK_EQ(zx_event_create(0, &ev), ZX_OK);
    struct signaler_arg a = {ev};
    pthread_t t;
    pthread_create(&t, NULL, late_signal, &a);
    zx_signals_t obs = 0;
    CHECK_EQ(zx_object_wait_one(ev, ZX_USER_SIGNAL_5, zx_deadline_after(ZX_SEC(5)), &obs), ZX_OK);
    CHECK_EQ(obs, ZX_USER_SIGNAL_5);
    pthread_join(t, NULL);
    zx_handle_close(ev);
}
