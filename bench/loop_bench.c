/* bellhop loop benchmark: receiver and fd-wake throughput on one thread, and cross-thread
 * producer-to-handler wake latency, against a raw eventfd+epoll floor and libuv, all in the
 * same run on the same machine. Prints figures and ratios. */
#include <errno.h>
#include <lib/async-loop/loop.h>
#include <lib/async/receiver.h>
#include <lib/async/wait.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "bench/bench_util.h"
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <zircon/syscalls.h>


static void must(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "bench: %s failed: %s\n", what, strerror(errno));
        exit(1);
    }
}

static long iterations = 1000000;
static long wake_samples = 20000;

/* ---------- 1. one thread: packets queued and dispatched per second ---------- */

struct rx {
    async_receiver_t r;
    long left;
};
static void rx_handler(async_dispatcher_t *d, async_receiver_t *r, zx_status_t st, const zx_packet_user_t *u) {
    (void)st, (void)u;
    struct rx *x = (struct rx *)r;
    if (--x->left > 0) async_queue_packet(d, r, NULL);
    else async_loop_quit(async_loop_from_dispatcher(d));
}

static double bellhop_receiver_rate(void) {
    async_loop_t *loop;
    must(async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &loop) == ZX_OK, "loop");
    struct rx x = {.r = {.handler = rx_handler}, .left = iterations};
    uint64_t t0 = zx_clock_get_monotonic();
    async_queue_packet(async_loop_get_dispatcher(loop), &x.r, NULL);
    async_loop_run(loop, ZX_TIME_INFINITE, false);
    uint64_t t1 = zx_clock_get_monotonic();
    async_loop_destroy(loop);
    return iterations / ((t1 - t0) / 1e9);
}

struct uvx {
    uv_async_t a;
    long left;
};
static void on_uv_async(uv_async_t *a) {
    struct uvx *x = (struct uvx *)a;
    if (--x->left > 0) uv_async_send(a);
    else uv_close((uv_handle_t *)a, NULL);
}

static double libuv_async_rate(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct uvx x = {.left = iterations};
    uv_async_init(&loop, &x.a, on_uv_async);
    uint64_t t0 = zx_clock_get_monotonic();
    uv_async_send(&x.a);
    uv_run(&loop, UV_RUN_DEFAULT);
    uint64_t t1 = zx_clock_get_monotonic();
    uv_loop_close(&loop);
    return iterations / ((t1 - t0) / 1e9);
}

static double raw_eventfd_rate(long iterations) {
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    must(epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) == 0, "epoll_ctl");
    uint64_t one = 1, v;
    uint64_t t0 = zx_clock_get_monotonic();
    for (long i = 0; i < iterations; i++) {
        must(write(efd, &one, 8) == 8, "write");
        must(epoll_wait(ep, &ev, 1, -1) == 1, "epoll_wait");
        must(read(efd, &v, 8) == 8, "read");
    }
    uint64_t t1 = zx_clock_get_monotonic();
    close(efd);
    close(ep);
    return iterations / ((t1 - t0) / 1e9);
}

/* ---------- 2. one thread: fd wake-ups turned into handler calls per second ---------- */

struct fdw {
    async_wait_t w;
    int efd;
    long left;
};
static void fdw_handler(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *s) {
    (void)st, (void)s;
    struct fdw *x = (struct fdw *)w;
    uint64_t v, one = 1;
    must(read(x->efd, &v, 8) == 8, "read");
    if (--x->left > 0) {
        must(write(x->efd, &one, 8) == 8, "write");
        async_begin_wait(d, w);
    } else {
        async_loop_quit(async_loop_from_dispatcher(d));
    }
}

static double bellhop_fd_rate(long n) {
    async_loop_t *loop;
    must(async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &loop) == ZX_OK, "loop");
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    zx_handle_t h;
    must(zx_fd_create(efd, 0, &h) == ZX_OK, "zx_fd_create");
    struct fdw x = {.w = {.handler = fdw_handler, .object = h, .trigger = ZX_FD_READABLE}, .efd = efd, .left = n};
    uint64_t one = 1;
    uint64_t t0 = zx_clock_get_monotonic();
    must(write(efd, &one, 8) == 8, "write");
    async_begin_wait(async_loop_get_dispatcher(loop), &x.w);
    async_loop_run(loop, ZX_TIME_INFINITE, false);
    uint64_t t1 = zx_clock_get_monotonic();
    async_loop_destroy(loop);
    zx_handle_close(h);
    close(efd);
    return n / ((t1 - t0) / 1e9);
}

struct uvp {
    uv_poll_t p;
    int efd;
    long left;
};
static void on_uv_poll(uv_poll_t *p, int status, int events) {
    (void)status, (void)events;
    struct uvp *x = (struct uvp *)p;
    uint64_t v, one = 1;
    must(read(x->efd, &v, 8) == 8, "read");
    if (--x->left > 0) must(write(x->efd, &one, 8) == 8, "write");
    else uv_close((uv_handle_t *)p, NULL);
}

static double libuv_fd_rate(long n) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct uvp x = {.efd = efd, .left = n};
    uv_poll_init(&loop, &x.p, efd);
    uv_poll_start(&x.p, UV_READABLE, on_uv_poll);
    uint64_t one = 1;
    uint64_t t0 = zx_clock_get_monotonic();
    must(write(efd, &one, 8) == 8, "write");
    uv_run(&loop, UV_RUN_DEFAULT);
    uint64_t t1 = zx_clock_get_monotonic();
    uv_loop_close(&loop);
    close(efd);
    return n / ((t1 - t0) / 1e9);
}

/* ---------- 3. two threads: producer-to-handler wake latency ---------- */

static uint64_t *lat;
static long nlat;
static _Atomic uint64_t sent_at;
static atomic_long acked;

static void record(void) {
    uint64_t t = zx_clock_get_monotonic();
    lat[nlat++] = t - atomic_load(&sent_at);
    atomic_store(&acked, nlat);
}

static void lat_rx(async_dispatcher_t *d, async_receiver_t *r, zx_status_t st, const zx_packet_user_t *u) {
    (void)d, (void)r, (void)st, (void)u;
    record();
}

static void pace(void) { /* let the consumer fall asleep again: every sample is a real wake-up */
    struct timespec ts = {0, 50000};
    nanosleep(&ts, NULL);
}

static void produce(void (*send)(void *), void *arg) {
    for (long i = 0; i < wake_samples; i++) {
        pace();
        atomic_store(&sent_at, zx_clock_get_monotonic());
        send(arg);
        while (atomic_load(&acked) <= i) {
        }
    }
}

static async_dispatcher_t *lat_dispatcher;
static async_receiver_t lat_receiver = {.handler = lat_rx};
static void send_bellhop(void *a) {
    (void)a;
    async_queue_packet(lat_dispatcher, &lat_receiver, NULL);
}

static void bellhop_latency(void) {
    async_loop_t *loop;
    must(async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &loop) == ZX_OK, "loop");
    lat_dispatcher = async_loop_get_dispatcher(loop);
    async_loop_start_thread(loop, "bench-loop", NULL);
    produce(send_bellhop, NULL);
    async_loop_destroy(loop);
}

static int raw_efd, raw_ep;
static void *raw_consumer(void *a) {
    (void)a;
    struct epoll_event ev;
    uint64_t v;
    for (long i = 0; i < wake_samples; i++) {
        while (epoll_wait(raw_ep, &ev, 1, -1) != 1) {
        }
        must(read(raw_efd, &v, 8) == 8, "read");
        record();
    }
    return NULL;
}
static void send_raw(void *a) {
    (void)a;
    uint64_t one = 1;
    must(write(raw_efd, &one, 8) == 8, "write");
}

static void raw_latency(void) {
    raw_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    raw_ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    must(epoll_ctl(raw_ep, EPOLL_CTL_ADD, raw_efd, &ev) == 0, "epoll_ctl");
    pthread_t t;
    pthread_create(&t, NULL, raw_consumer, NULL);
    produce(send_raw, NULL);
    pthread_join(t, NULL);
    close(raw_efd);
    close(raw_ep);
}

static uv_async_t uv_lat;
static void uv_lat_cb(uv_async_t *a) {
    record();
    if (nlat == wake_samples) uv_close((uv_handle_t *)a, NULL);
}
static void *uv_consumer(void *a) {
    uv_run(a, UV_RUN_DEFAULT);
    return NULL;
}
static void send_uv(void *a) {
    (void)a;
    uv_async_send(&uv_lat);
}

static void libuv_latency(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_async_init(&loop, &uv_lat, uv_lat_cb);
    pthread_t t;
    pthread_create(&t, NULL, uv_consumer, &loop);
    produce(send_uv, NULL);
    pthread_join(t, NULL);
    uv_loop_close(&loop);
}

/* Section 2 in alternating rounds (the floor, libuv, bellhop, the floor, ...): machine noise
 * moves all three alike within a round; the medians of the per-round ratios are the figures. */
#define FD_ROUNDS 5
static void fd_section(long n) {
    double raw[FD_ROUNDS], uv[FD_ROUNDS], bh[FD_ROUNDS], vs_raw[FD_ROUNDS], vs_uv[FD_ROUNDS], uv_raw[FD_ROUNDS];
    for (int r = 0; r < FD_ROUNDS; r++) {
        raw[r] = raw_eventfd_rate(n);
        uv[r] = libuv_fd_rate(n);
        bh[r] = bellhop_fd_rate(n);
        vs_raw[r] = bh[r] / raw[r], vs_uv[r] = bh[r] / uv[r], uv_raw[r] = uv[r] / raw[r];
    }
    /* median() sorts in place: the per-round line needs the rounds' own pairs */
    double round_raw[FD_ROUNDS], round_uv[FD_ROUNDS];
    memcpy(round_raw, vs_raw, sizeof round_raw);
    memcpy(round_uv, vs_uv, sizeof round_uv);
    double fl = median(vs_raw, FD_ROUNDS), lu = median(vs_uv, FD_ROUNDS);
    printf("2. one thread, fd wake-ups turned into handler calls per second (median of %d alternating rounds)\n",
           FD_ROUNDS);
    printf("   raw eventfd+epoll floor  %12.0f /s   (write + epoll_wait + read, no loop at all)\n", median(raw, FD_ROUNDS));
    printf("   libuv uv_poll            %12.0f /s   %.2fx floor\n", median(uv, FD_ROUNDS), median(uv_raw, FD_ROUNDS));
    printf("   bellhop fd wait          %12.0f /s   %.2fx floor, %.2fx libuv (target >= 0.95x floor and >= libuv: %s)\n",
           median(bh, FD_ROUNDS), fl, lu, fl >= 0.95 && lu >= 1.0 ? "met" : "MISSED");
    printf("   per round, bellhop over the floor:");
    for (int r = 0; r < FD_ROUNDS; r++) printf(" %.2f", round_raw[r]);
    printf("; over libuv:");
    for (int r = 0; r < FD_ROUNDS; r++) printf(" %.2f", round_uv[r]);
    printf("\n\n");
}

struct pct {
    double p50, p99;
};
static struct pct measure_latency(void (*fn)(void)) {
    nlat = 0;
    atomic_store(&acked, 0);
    fn();
    qsort(lat, (size_t)nlat, sizeof *lat, cmp_u64);
    return (struct pct){lat[nlat / 2] / 1e3, lat[nlat * 99 / 100] / 1e3};
}

int main(int argc, char **argv) {
    bool only_fd = argc > 1 && strcmp(argv[1], "fd") == 0; /* section 2 alone (for profiling it) */
    if (only_fd) argc--, argv++;
    if (argc > 1) iterations = atol(argv[1]);
    if (argc > 2) wake_samples = atol(argv[2]);
    if (iterations <= 0 || wake_samples <= 0) {
        fprintf(stderr, "usage: loop_bench [ITERATIONS] [WAKE_SAMPLES]\n");
        return 2;
    }
    lat = calloc((size_t)wake_samples, sizeof *lat);
    must(lat != NULL, "calloc");

    printf("bellhop loop benchmark (%ld iterations, %ld wake samples; libuv %s)\n\n", iterations,
           wake_samples, uv_version_string());
    if (only_fd) {
        fd_section(iterations / 4);
        return free(lat), 0;
    }
    double raw = raw_eventfd_rate(iterations), uvr = libuv_async_rate(), bh = bellhop_receiver_rate();
    printf("1. one thread, packets queued + dispatched per second\n");
    printf("   raw eventfd+epoll floor  %12.0f /s\n", raw);
    printf("   libuv uv_async_send      %12.0f /s\n", uvr);
    printf("   bellhop async receiver   %12.0f /s   %.1fx libuv (target >= 2x: %s)\n\n", bh, bh / uvr,
           bh >= 2 * uvr ? "met" : "MISSED");

    fd_section(iterations / 4);

    struct pct r = measure_latency(raw_latency);
    struct pct u = measure_latency(libuv_latency);
    struct pct b = measure_latency(bellhop_latency);
    printf("3. two threads, producer-to-handler wake latency (us)\n");
    printf("   raw eventfd+epoll floor  p50 %7.2f  p99 %7.2f\n", r.p50, r.p99);
    printf("   libuv uv_async_send      p50 %7.2f  p99 %7.2f\n", u.p50, u.p99);
    printf("   bellhop async receiver   p50 %7.2f  p99 %7.2f   %.2fx / %.2fx floor (target <= 1.2x: %s)\n",
           b.p50, b.p99, b.p50 / r.p50, b.p99 / r.p99, b.p50 <= 1.2 * r.p50 ? "met" : "MISSED");
    free(lat);
    return 0;
}
