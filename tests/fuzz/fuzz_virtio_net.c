/* virtio-net over a SOCK_SEQPACKET socket standing where the tap would be (one frame per read
 * and write, vnet header first, as a tap). The fuzzer's bytes are frames arriving from the
 * network and then all of guest RAM, rings included: receive and transmit must cope with any
 * chain and any frame, touching nothing outside guest RAM, on a real async loop. */
#include <lib/async-loop/default.h>
#include <lib/async-loop/loop.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devices/virtio_net.h"
#include "tests/fuzz/fuzz.h"
#include "tests/lib/virtq_driver.h"

#define RAM 0x10000u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct cursor c = {data, size};
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    async_loop_t *loop;
    int sv[2];
    if (async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &loop) != ZX_OK ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    vm.env.loop = async_loop_get_dispatcher(loop);
    struct test_dev d;
    tdev_init(&d, &vm, &virtio_net_ops, &(struct virtio_net_params){.fd = sv[0], .name = "fuzz"},
              1ull << VIRTIO_F_INDIRECT_DESC | 1ull << VIRTIO_F_EVENT_IDX, 2, 16);
    /* Frames from the network: a count, then {length, bytes} each. */
    unsigned frames = (unsigned)take(&c, 1) % 8;
    for (unsigned f = 0; f < frames && c.n > 0; f++) {
        size_t len = (size_t)take(&c, 2) % 2048;
        if (len > c.n) len = c.n;
        if (send(sv[1], c.p, len, MSG_DONTWAIT) < 0) break;
        c.p += len;
        c.n -= len;
    }
    memcpy(vm.env.mem.host, c.p, c.n < RAM ? c.n : RAM);
    struct virtio_dev *vd = virtio_mmio_dev(d.mmio);
    vd->ops->queue_notify(vd, 1); /* transmit */
    vd->ops->queue_notify(vd, 0); /* receive buffers: waits for frames on the loop */
    async_loop_run_until_idle(loop);
    uint8_t buf[4096];
    while (recv(sv[1], buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
    async_loop_destroy(loop);
    tdev_destroy(&d);
    close(sv[1]);
    fake_vm_destroy(&vm);
    return 0;
}
