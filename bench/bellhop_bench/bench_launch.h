/* bellhop bench's launch figures: from process start to the guest's first instruction, per
 * image kind, phase by phase (--boot-markers with --start-time-us), beside the limits the
 * phases answer to: the lz4 tool decoding the bzImage's payload, and the dynamic loader. */
#ifndef BELLHOP_BENCH_BELLHOP_BENCH_BENCH_LAUNCH_H
#define BELLHOP_BENCH_BELLHOP_BENCH_BENCH_LAUNCH_H

#include <stdbool.h>

#include "bench/bellhop_bench/bench_results.h" /* BENCH_MAX_ROUNDS: what --rounds allows */

/* the yardstick (`bellhop launch-floor`: the same binary making the bare KVM objects on one
 * thread), the tiny guest, vmlinux (PVH), a bzImage without the kernel cache, and with
 * --kernel-cache cold (an empty cache at each launch) and warm (its cache holding 8 slots
 * already); each guest with the test initrd */
#define LAUNCH_KINDS 6
#define LAUNCH_MAX_PHASES 12

struct launch_kind {
    const char *name, *kernel;
    const char *cache; /* its XDG_CACHE_HOME (vmm/machine/kernel_cache.h); NULL: bellhop's own */
    bool cold;         /* that cache emptied before each launch */
    bool floor;        /* the yardstick, not a guest */
    unsigned n;                          /* launches timed */
    double total_ms[BENCH_MAX_ROUNDS];  /* process start to the first guest instruction */
    unsigned nphases;
    char phase[LAUNCH_MAX_PHASES][16];
    double phase_ms[LAUNCH_MAX_PHASES][BENCH_MAX_ROUNDS];
    double decode_ms[BENCH_MAX_ROUNDS]; /* the bzImage's: its payload decoded into guest RAM */
    unsigned long shared_kib;            /* guest RAM that is the files' pages */
    char error[200];                     /* why it did not launch, if it did not */
};

struct bench_launch {
    struct launch_kind kind[LAUNCH_KINDS];
    double lz4_ms;    /* the lz4 tool on the bzImage's payload, to /dev/null (median); -1: none */
    double loader_ms; /* the dynamic loader's startup, LD_DEBUG=statistics; -1: none ran (static) */
};

/* Launches each kind `rounds` times (warm page cache: one untimed launch first), stopping each VM
 * once it has entered. `self` is bellhop, `tiny` the tiny guest's ELF; the Linux images and
 * initrd are make linux-files'. `pvm`: Linux kernels run with --pvm-anyway (they enter, then
 * crawl: the VM is stopped anyway). */
void bench_launch_run(const char *self, const char *tiny, unsigned rounds, bool pvm, double ghz,
                      struct bench_launch *l);
void bench_launch_print(const struct bench_launch *l, bool as_json);

#endif
