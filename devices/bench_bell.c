#include <lib/async/trap.h>
#include <stdio.h>
#include <stdlib.h>
#include <zircon/status.h>

#include "devices/bench_bell.h"

struct bench_bell {
    async_guest_bell_trap_t trap; /* first */
    struct vm_env *env;
};

__attribute__((hot)) static void on_bell(async_dispatcher_t *d, async_guest_bell_trap_t *trap, zx_status_t st,
                    const zx_packet_guest_bell_t *bell) {
    (void)d, (void)bell;
    struct bench_bell *b = (struct bench_bell *)trap;
    uint32_t v;
    if (st == ZX_OK && gm_read(&b->env->mem, BENCH_BELL_FLAG, &v, sizeof v)) {
        v++;
        gm_write(&b->env->mem, BENCH_BELL_FLAG, &v, sizeof v);
    }
}

struct bench_bell *bench_bell_create(struct vm_env *env, char *err, size_t errlen) {
    struct bench_bell *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "bench bell: out of memory");
        return NULL;
    }
    b->env = env;
    b->trap.handler = on_bell;
    zx_status_t st = async_set_guest_bell_trap(env->loop, &b->trap, env->guest, BENCH_BELL_ADDR, 0x1000);
    if (st != ZX_OK) {
        snprintf(err, errlen, "bench bell at %#x: %s", BENCH_BELL_ADDR, zx_status_get_string(st));
        free(b);
        return NULL;
    }
    return b;
}

void bench_bell_destroy(struct bench_bell *b) { free(b); }
