/* The virtio devices' request handling over guest memory the fuzzer writes: rings,
 * descriptors, indirect tables and buffers are all its bytes. Byte 0 picks the device
 * (rng, blk, console, balloon with its statistics queue, vsock: without a loop, its guest's connections to the host are
 * refused; fuzz_virtio_vsock has the rest); the rest is guest RAM. Nothing may be touched
 * outside that RAM. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "devices/virtio_balloon.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_console.h"
#include "devices/virtio_rng.h"
#include "devices/virtio_vsock.h"
#include "tests/fuzz/fuzz.h"
#include "tests/lib/virtq_driver.h"

#define RAM 0x10000u

/* A vsock device's socket in a directory of this process's own (the device removes the socket
 * each run, the process the directory at its end). */
static char vsock_dir[] = "/tmp/bellhop-fuzz-devices-XXXXXX";
static void remove_vsock_dir(void) { rmdir(vsock_dir); }

static const struct virtio_vsock_params *vsock_params(void) {
    static char path[64];
    static struct virtio_vsock_params params;
    if (!params.uds_path) {
        if (!mkdtemp(vsock_dir)) abort();
        atexit(remove_vsock_dir);
        snprintf(path, sizeof path, "%s/v.sock", vsock_dir);
        params = (struct virtio_vsock_params){.guest_cid = 3, .uds_path = path};
    }
    return &params;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    unsigned which = data[0] % 5;
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    const struct virtio_device_ops *ops = &virtio_rng_ops;
    const void *params = NULL;
    int null = -1;
    uint64_t features = 1ull << VIRTIO_F_INDIRECT_DESC | 1ull << VIRTIO_F_EVENT_IDX;
    struct virtio_console_params con;
    if (which == 1) {
        ops = &virtio_blk_ops;
        params = fuzz_disk();
    } else if (which == 2) {
        null = open("/dev/null", O_WRONLY);
        con = (struct virtio_console_params){-1, null};
        ops = &virtio_console_ops;
        params = &con;
    } else if (which == 3) {
        /* inflated frames: discarded inside RAM, ignored outside; a statistics queue too */
        static const struct virtio_balloon_params balloon = {.target_pages = 1, .stats_interval_s = 1};
        ops = &virtio_balloon_ops;
        params = &balloon;
        features |= 1ull << VIRTIO_BALLOON_F_STATS_VQ;
    } else if (which == 4) {
        ops = &virtio_vsock_ops;
        params = vsock_params();
    }
    struct test_dev d;
    tdev_init(&d, &vm, ops, params, features, which == 3 ? 3 : ops->nqueues, 16);
    /* The fuzzer's bytes become all of guest RAM, rings included (the driver placed them in
     * the first pages): whatever the chains say, the device must cope. */
    size_t n = size - 1 < RAM ? size - 1 : RAM;
    memcpy(vm.env.mem.host, data + 1, n);
    struct virtio_dev *vd = virtio_mmio_dev(d.mmio);
    for (unsigned q = 0; q < vd->nqueues; q++) tvq_kick(&d, q);
    if (which == 3) { /* the timer's request for statistics, and a new interval */
        virtio_balloon_set_stats_interval(vd, 2);
        tvq_kick(&d, 2);
    }
    tdev_destroy(&d);
    if (null >= 0) close(null);
    fake_vm_destroy(&vm);
    return 0;
}
