/* `bellhop bench`: trap round trips measured from inside the bundled guest (bench mode),
 * under bellhop, under a raw KVM_RUN loop (the floor) and, when it can run, under QEMU-KVM's
 * microvm (the peer), all in one run; and, given kvm-unit-tests' vmexit.flat, its exit costs
 * under bellhop and QEMU (bench_vmexit.h); a table on stdout, or JSON. */
#ifndef BELLHOP_BENCH_BELLHOP_BENCH_BENCH_H
#define BELLHOP_BENCH_BELLHOP_BENCH_BENCH_H

#include <stddef.h>
#include <sys/types.h>

#define BENCH_USAGE                                                                                            \
    "bellhop bench [--json] [--plot FILE.svg] [--only traps,boot,memory,timeline,launch,vmexit] [--rounds N] "     \
    "[--samples N] [--vmexit VMEXIT.FLAT [--vmexit-tests NAME,...]]"

int bench_main(int argc, char **argv, const char *kernel);
/* A VMM's memory beyond its guest's RAM (the largest mapping): resident (the pages of shared
 * libraries it touched included), and anonymous (its heap, stacks and written data: what it
 * alone costs, however many processes share its libraries). */
struct bench_memory {
    long rss_kib, anon_kib;
};
/* 0, or -1 (out untouched) if pid's smaps cannot be read. */
int bench_memory_beyond_guest(pid_t pid, struct bench_memory *out);
/* qemu-system-x86_64 with its microvm firmware, inside the nested KVM host (/bellhop/...) or
 * on this machine; dir gets its firmware directory (for -L). NULL if there is none. */
const char *bench_qemu_path(char *dir, size_t len);
/* QEMU's -cpu for this host's KVM: "host", or on PVM "host,-arch-capabilities" (QEMU fails to
 * set MSR 0x10a there and stops on an assertion). */
const char *bench_qemu_cpu(void);
/* The TSC's rate in GHz, timed against the monotonic clock for 50 ms: a guest's TSC ticks at
 * the host's rate (KVM does not scale it here), so guest cycles turn into time with it. */
double bench_tsc_ghz(void);

#endif
