/* Helpers for the libFuzzer targets: a cursor over the fuzzer's input, a scratch disk. */
#ifndef BELLHOP_TESTS_FUZZ_FUZZ_H
#define BELLHOP_TESTS_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/virtio_blk.h"

struct cursor {
    const uint8_t *p;
    size_t n;
};

static inline uint64_t take(struct cursor *c, size_t bytes) {
    uint64_t v = 0;
    size_t k = bytes < c->n ? bytes : c->n;
    memcpy(&v, c->p, k);
    c->p += k;
    c->n -= k;
    return v;
}

/* A virtio-blk device's parameters: a 64-sector scratch file, made once per fuzzer process
 * and unlinked at once; each device opens it again through /proc/self/fd. */
static inline const struct virtio_blk_params *fuzz_disk(void) {
    static char path[64];
    static struct virtio_blk_params params;
    if (!params.path) {
        char name[] = "/tmp/bellhop-fuzz-blk-XXXXXX";
        int fd = mkstemp(name);
        if (fd < 0 || ftruncate(fd, 64 * 512) != 0) abort();
        unlink(name);
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        params.path = path;
    }
    return &params;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
