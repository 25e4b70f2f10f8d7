/* bellhop bench's second yardstick: kvm-unit-tests' x86/vmexit.flat, the image KVM's
 * maintainers time exits with, run under bellhop and under QEMU (the pc machine, SeaBIOS
 * booting it with -kernel) in turn. Each of its tests prints "NAME CYCLES": the TSC cycles of
 * one round trip as the guest timed it, so the two VMMs' figures compare directly. The suite
 * is not bundled: --vmexit names a built image (docs/benchmarks.md). */
#ifndef BELLHOP_BENCH_BELLHOP_BENCH_BENCH_VMEXIT_H
#define BELLHOP_BENCH_BELLHOP_BENCH_BENCH_VMEXIT_H

#include <stdbool.h>
#include <stddef.h>

#include "bench/bellhop_bench/bench_results.h" /* BENCH_MAX_ROUNDS */

#define VMEXIT_MAX_TESTS 40
/* A run that gives no test's line for this long is stopped: the test it was in hangs. */
#define VMEXIT_STALL_SECONDS 60

enum { VMEXIT_BELLHOP, VMEXIT_QEMU, VMEXIT_VMMS };

/* What one round gave for one test under one VMM. */
enum vmexit_state {
    VMEXIT_NOT_RUN,        /* not asked: no QEMU, or it did not finish in an earlier round */
    VMEXIT_MEASURED,
    VMEXIT_SKIPPED,        /* the test said "(skipped)": what it needs is not there */
    VMEXIT_NO_PM_TIMER,    /* inl_from_pmtimer with no PM timer in the FADT: it timed its own lookup */
    VMEXIT_DID_NOT_FINISH, /* no line within VMEXIT_STALL_SECONDS: stopped */
    VMEXIT_NO_RESULT,      /* the run ended without the test's line */
};

struct vmexit_test {
    const char *name;
    enum vmexit_state state[VMEXIT_VMMS][BENCH_MAX_ROUNDS];
    long long cycles[VMEXIT_VMMS][BENCH_MAX_ROUNDS]; /* -1: none */
};

struct bench_vmexit {
    const char *image;
    const char *qemu_cpu; /* QEMU's -cpu (bench_qemu_cpu) */
    unsigned ntests, rounds;
    struct vmexit_test test[VMEXIT_MAX_TESTS]; /* in vmexit.c's order, the order it runs them */
    char qemu_missing[200];                    /* why QEMU did not run; "" when it did */
    char ended[VMEXIT_VMMS][200];              /* why a run ended before its tests did ("" if none did) */
};

/* 0 if path is a multiboot image; -1 with a one-line reason in why. */
int bench_vmexit_image_ok(const char *path, char *why, size_t len);
/* The tests to run: `list` (comma-separated names of x86/vmexit.c's tests), or NULL for the
 * ones of x86/unittests.cfg's vmexit group that need neither a second CPU nor a CPU flag.
 * 0, or -1 with a one-line reason in why. */
int bench_vmexit_pick(struct bench_vmexit *v, const char *list, char *why, size_t len);
/* Runs the image `rounds` times under bellhop (`self`) and under QEMU, in turn. */
void bench_vmexit_run(struct bench_vmexit *v, const char *self, unsigned rounds);
void bench_vmexit_print(const struct bench_vmexit *v, bool as_json);

#endif
