/* The guest's frames into libslirp as bellhop-net runs it (net/user.c): the fuzzer's bytes are
 * frames (each a 2-byte big-endian length, then that many bytes) that a hostile guest writes on
 * the device's socket, into a link's MMDS stack: slirp on a real loop thread, restricted, its
 * DHCP and DNS off, so that nothing a frame asks for leaves the process (its one guest forward
 * points at a socket path that does not exist). After each input the loop has taken every
 * frame; every so often, an ARP request for the MMDS address must still be answered: whatever
 * came before, the stack goes on. */
#include <errno.h>
#include <lib/async-loop/loop.h>
#include <lib/async/task.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "net/user.h"
#include "tests/fuzz/fuzz.h"

#define MMDS_IP 0xa9fea9feu
#define LIVENESS_EVERY 256

static struct {
    async_loop_t *loop;
    struct net_user *u;
    int dev;
    unsigned inputs;
} g;

static void start(void) {
    struct net_user_config c;
    char err[200];
    if (net_user_mmds_config(MMDS_IP, "/nonexistent/bellhop-fuzz-mmds.sock", &c, err, sizeof err) != 0 ||
        async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &g.loop) != ZX_OK ||
        async_loop_start_thread(g.loop, "slirp", NULL) != ZX_OK ||
        !(g.u = net_user_start(async_loop_get_dispatcher(g.loop), &c, &g.dev, err, sizeof err)))
        abort();
}

/* Frames for the guest, read and dropped (the device's side reads them as they come). */
static void drain(void) {
    uint8_t buf[NET_USER_MAX_FRAME];
    while (recv(g.dev, buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
}

static void send_frame(const uint8_t *frame, size_t len) {
    uint8_t msg[NET_USER_MAX_FRAME] = {0};
    memcpy(msg + NET_USER_HDR_LEN, frame, len);
    for (int tries = 0; tries < 1000; tries++) {
        if (send(g.dev, msg, len + NET_USER_HDR_LEN, MSG_DONTWAIT) >= 0 || errno != EAGAIN) return;
        drain();
        usleep(100);
    }
    abort(); /* the loop stopped taking frames */
}

struct sync {
    async_task_t task;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
};

static void on_sync(async_dispatcher_t *d, async_task_t *t, zx_status_t st) {
    (void)d, (void)st;
    struct sync *s = (struct sync *)t;
    pthread_mutex_lock(&s->lock);
    s->done = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* Until the loop has run every handler due before now (the frames' wait among them). */
static void settle(void) {
    struct sync s = {.task = {.handler = on_sync, .deadline = ZX_TIME_INFINITE_PAST},
                     .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    if (async_post_task(async_loop_get_dispatcher(g.loop), &s.task) != ZX_OK) abort();
    pthread_mutex_lock(&s.lock);
    while (!s.done) pthread_cond_wait(&s.cond, &s.lock);
    pthread_mutex_unlock(&s.lock);
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }

/* An ARP request for the MMDS address is answered within a second. */
static void still_answers(void) {
    static const uint8_t mac[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x56};
    uint8_t f[42] = {0};
    memset(f, 0xff, 6);
    memcpy(f + 6, mac, 6);
    put16(f + 12, 0x0806);
    put16(f + 14, 1), put16(f + 16, 0x0800), f[18] = 6, f[19] = 4, put16(f + 20, 1);
    memcpy(f + 22, mac, 6);
    f[28] = 10, f[29] = 0, f[30] = 2, f[31] = 15;
    f[38] = 169, f[39] = 254, f[40] = 169, f[41] = 254;
    drain();
    send_frame(f, sizeof f);
    uint8_t buf[NET_USER_MAX_FRAME];
    struct pollfd p = {.fd = g.dev, .events = POLLIN};
    for (int64_t end = zx_clock_get_monotonic() + ZX_SEC(1); zx_clock_get_monotonic() < end;) {
        if (poll(&p, 1, 100) != 1) continue;
        ssize_t n = recv(g.dev, buf, sizeof buf, MSG_DONTWAIT);
        if (n >= NET_USER_HDR_LEN + 42 && buf[NET_USER_HDR_LEN + 12] == 0x08 && buf[NET_USER_HDR_LEN + 13] == 0x06 &&
            buf[NET_USER_HDR_LEN + 21] == 2)
            return;
    }
    abort(); /* the stack no longer answers */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g.loop) start();
    for (size_t at = 0; size - at >= 2;) {
        size_t len = (size_t)data[at] << 8 | data[at + 1];
        at += 2;
        if (len > size - at) len = size - at;
        if (len + NET_USER_HDR_LEN <= NET_USER_MAX_FRAME) send_frame(data + at, len);
        at += len;
    }
    settle();
    drain();
    if (++g.inputs % LIVENESS_EVERY == 0) still_answers();
    return 0;
}
