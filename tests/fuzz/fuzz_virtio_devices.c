/* The virtio devices' request handling over guest memory the fuzzer writes: rings,
 * descriptors, indirect tables and buffers are all its bytes. Byte 0 picks the device
 * (rng, blk, console, balloon); the rest is guest RAM. Nothing may be touched outside that RAM. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "devices/virtio_balloon.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_console.h"
#include "devices/virtio_rng.h"
#include "tests/fuzz/fuzz.h"
#include "tests/lib/virtq_driver.h"

#define RAM 0x10000u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    unsigned which = data[0] % 4;
    struct fake_vm vm;
    fake_vm_init(&vm, RAM);
    const struct virtio_device_ops *ops = &virtio_rng_ops;
    const void *params = NULL;
    int null = -1;
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
        ops = &virtio_balloon_ops; /* inflated frames: discarded inside RAM, ignored outside */
    }
    struct test_dev d;
    tdev_init(&d, &vm, ops, params, 1ull << VIRTIO_F_INDIRECT_DESC | 1ull << VIRTIO_F_EVENT_IDX, ops->nqueues, 16);
    /* The fuzzer's bytes become all of guest RAM, rings included (the driver placed them in
     * the first pages): whatever the chains say, the device must cope. */
    size_t n = size - 1 < RAM ? size - 1 : RAM;
    memcpy(vm.env.mem.host, data + 1, n);
    for (unsigned q = 0; q < ops->nqueues; q++) tvq_kick(&d, q);
    tdev_destroy(&d);
    if (null >= 0) close(null);
    fake_vm_destroy(&vm);
    return 0;
}
