/* The bench's bell device (`bellhop run --bench-bell`): a bell at BENCH_BELL_ADDR whose
 * handler, on the loop thread, only bumps the 32-bit word at BENCH_BELL_FLAG in guest RAM.
 * That is exactly the work of the raw floor's reader thread (bench/bellhop_bench/bench_floor.h), so the
 * guest's bell-to-flag round trip measures bellhop's bell path alone: ioeventfd, port
 * packet, loop dispatch. */
#ifndef BELLHOP_DEVICES_BENCH_BELL_H
#define BELLHOP_DEVICES_BENCH_BELL_H

#include "devices/device.h"

#define BENCH_BELL_ADDR 0xd8000000u /* a page in the MMIO hole, clear of virtio-mmio and PCI */
#define BENCH_BELL_ADDR_STR "0xd8000000"
#define BENCH_BELL_FLAG 0x5000u     /* the floor's flag word too */

struct bench_bell;
/* NULL (with the reason in err) when the bell trap cannot be set. */
struct bench_bell *bench_bell_create(struct vm_env *env, char *err, size_t errlen);
/* The loop must be gone first. */
void bench_bell_destroy(struct bench_bell *b);

#endif
