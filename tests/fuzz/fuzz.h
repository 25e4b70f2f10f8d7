/* Helpers for the libFuzzer targets: a cursor over the fuzzer's input. */
#ifndef BELLHOP_TESTS_FUZZ_FUZZ_H
#define BELLHOP_TESTS_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
