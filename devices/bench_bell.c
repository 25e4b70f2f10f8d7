#include <lib/container_of.h>
#include <lib/async/trap.h>
#include <stdio.h>
#include <stdlib.h>
#include <zircon/status.h>

#include "devices/bench_bell.h"

struct bench_bell {
    async_guest_bell_trap_t trap;
    /* Checked once: guest RAM stays mapped, unmoved, as long as the machine. Beside the trap,
     * so the handler's data is one page (as the floor reader's is). */
    uint32_t *flag;
    struct dirty_pages *written; /* guest RAM's, when dirty pages are tracked (set before devices) */
};

__attribute__((hot)) static void on_bell(async_dispatcher_t *d, async_guest_bell_trap_t *trap, zx_status_t st,
                    const zx_packet_guest_bell_t *bell) {
    (void)d, (void)bell;
    struct bench_bell *b = container_of(trap, struct bench_bell, trap);
    if (st != ZX_OK) return;
    __atomic_fetch_add(b->flag, 1, __ATOMIC_RELEASE); /* the floor reader's work */
    if (b->written) dirty_pages_mark(b->written, BENCH_BELL_FLAG, sizeof *b->flag);
}

struct bench_bell *bench_bell_create(struct vm_env *env, char *err, size_t errlen) {
    struct bench_bell *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "bench bell: out of memory");
        return NULL;
    }
    b->written = env->mem.written;
    b->flag = gm_ptr(&env->mem, BENCH_BELL_FLAG, sizeof *b->flag);
    if (!b->flag) {
        snprintf(err, errlen, "bench bell: its flag at %#x is outside guest RAM", BENCH_BELL_FLAG);
        free(b);
        return NULL;
    }
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
