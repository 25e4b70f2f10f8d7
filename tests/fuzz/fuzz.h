/* Helpers for the libFuzzer targets: a cursor over the fuzzer's input, a scratch disk. */
#ifndef BELLHOP_TESTS_FUZZ_FUZZ_H
#define BELLHOP_TESTS_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
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

/* A virtio-blk device on a 64-sector scratch file, made once per fuzzer process (the file is
 * unlinked at once; the device keeps it open). */
static inline struct virtio_blk *fuzz_disk(void) {
    static struct virtio_blk *b;
    if (!b) {
        char path[] = "/tmp/bellhop-fuzz-blk-XXXXXX";
        int fd = mkstemp(path);
        if (fd < 0 || ftruncate(fd, 64 * 512) != 0) abort();
        close(fd);
        char err[128];
        b = virtio_blk_open(path, false, err, sizeof err);
        unlink(path);
        if (!b) abort();
    }
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
