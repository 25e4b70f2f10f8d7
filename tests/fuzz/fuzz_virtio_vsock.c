/* virtio-vsock on a real async loop with real Unix sockets, fed from both ends. The fuzzer's
 * bytes are: a flags byte, what a host client says once connected (a length byte, then that
 * many bytes: its CONNECT line and stream, or garbage), then all of guest RAM, rings included.
 * A host listener at "<uds>_1" takes the guest's connections to host port 1. Whatever the
 * chains, headers and lines say, the device must touch nothing outside guest RAM, keep its
 * bounds, and leave no socket or timer behind. */
#include <lib/async-loop/default.h>
#include <lib/async-loop/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "devices/virtio_vsock.h"
#include "tests/fuzz/fuzz.h"
#include "tests/lib/virtq_driver.h"

#define RAM 0x10000u

struct host {
    char dir[40], path[100], port1[128];
    int listener; /* at port1, "<path>_1", for the whole process */
};
static struct host the_host;

static void remove_host(void) {
    unlink(the_host.port1);
    rmdir(the_host.dir);
}

static struct sockaddr_un addr(const char *path) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    return a;
}

static const struct host *host(void) {
    struct host *h = &the_host;
    if (h->path[0]) return h;
    snprintf(h->dir, sizeof h->dir, "/tmp/bellhop-fuzz-vsock-XXXXXX");
    if (!mkdtemp(h->dir)) abort();
    snprintf(h->path, sizeof h->path, "%s/v.sock", h->dir);
    snprintf(h->port1, sizeof h->port1, "%s_1", h->path);
    struct sockaddr_un a = addr(h->port1);
    h->listener = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (h->listener < 0 || bind(h->listener, (struct sockaddr *)&a, sizeof a) != 0 || listen(h->listener, 64) != 0)
        abort();
    atexit(remove_host); /* the device removes its own socket each run */
    return h;
}

/* Whatever reached the host: read and dropped, connections taken and closed. */
static void drain(int client, int listener) {
    char buf[4096];
    while (client >= 0 && recv(client, buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
    for (int fd; (fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;) {
        while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) {
        }
        close(fd);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const struct host *h = host();
    struct cursor c = {data, size};
    unsigned flags = (unsigned)take(&c, 1);
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    async_loop_t *loop;
    if (async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &loop) != ZX_OK) abort();
    vm.env.loop = async_loop_get_dispatcher(loop);
    struct virtio_vsock_params params = {.guest_cid = 3, .uds_path = h->path, .timeout_ms = 1};
    struct test_dev d;
    tdev_init(&d, &vm, &virtio_vsock_ops, &params, 1ull << VIRTIO_F_INDIRECT_DESC | 1ull << VIRTIO_F_EVENT_IDX, 3, 16);
    struct virtio_dev *vd = virtio_mmio_dev(d.mmio);
    int client = -1;
    size_t said = (size_t)take(&c, 1);
    if (said > c.n) said = c.n;
    if (flags & 1) { /* a host client, and what it says */
        struct sockaddr_un a = addr(h->path);
        client = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (client < 0 || connect(client, (struct sockaddr *)&a, sizeof a) != 0) abort();
        if (said && send(client, c.p, said, MSG_NOSIGNAL) < 0) abort();
    }
    c.p += said, c.n -= said;
    memcpy(vm.env.mem.host, c.p, c.n < RAM ? c.n : RAM);
    async_loop_run_until_idle(loop); /* the client's line: a REQUEST for the guest */
    for (unsigned round = 0; round < 2; round++) {
        for (unsigned q = 0; q < 3; q++) vd->ops->queue_notify(vd, q);
        async_loop_run_until_idle(loop);
        drain(client, h->listener);
    }
    if (flags & 2) /* the timeouts (1 ms) run out */
        async_loop_run(loop, zx_deadline_after(ZX_MSEC(2)), false);
    if (flags & 4) tdev_write(&d, 0x070, 0); /* a reset, found by the next handler */
    async_loop_run_until_idle(loop);
    async_loop_destroy(loop);
    tdev_destroy(&d);
    if (client >= 0) close(client);
    drain(-1, h->listener);
    fake_vm_destroy(&vm);
    return 0;
}
