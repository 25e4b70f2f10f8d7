/* The floor for `bellhop bench`: the same guest.elf in bench mode under a raw KVM_RUN loop
 * (no port, no loop, no device model): every exit is completed right there. */
#ifndef BELLHOP_BENCH_BELLHOP_BENCH_BENCH_FLOOR_H
#define BELLHOP_BENCH_BELLHOP_BENCH_BENCH_FLOOR_H

#include <stddef.h>

#define BENCH_FLOOR_BELL 0xc0001000u /* an ioeventfd, for the guest-side bell cost */
#define BENCH_FLOOR_FLAG 0x5000u     /* a thread blocked in read() on it bumps this word */

/* Runs the guest; its console output (the bench-result lines) goes to out. Returns 0, or -1
 * with a reason on stderr. */
int bench_floor_run(const char *kernel, const char *extra_args, char *out, size_t outlen);

#endif
