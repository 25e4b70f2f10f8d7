#include "guest/bench.h"
#include "guest/irq.h"

#define WARMUP 100
#define SAMPLES 1000 /* at most: the command line's samples=N asks for fewer */
#define BUCKETS 24
/* Every REF_EVERY-th sample of a kind is followed by two cpuid exits, which KVM answers in the
 * host kernel without any VMM code, the second timed: the reference tells the VMM's bench
 * whether the host itself was slow while this kind was measured (a nested host has such
 * stretches). The first makes the second independent of the kind and of the VMM: timed
 * right after a user-space exit, cpuid costs up to 10% more, and more after a thread switch. */
#define REF_EVERY 8

static uint64_t samples[SAMPLES], refs[SAMPLES / REF_EVERY];
static unsigned nsamples = SAMPLES;

static inline uint64_t tsc(void) {
    uint32_t lo, hi;
    __asm__ volatile("lfence; rdtsc; lfence" : "=a"(lo), "=d"(hi)::"memory");
    return (uint64_t)hi << 32 | lo;
}

static void sort(uint64_t *v, unsigned n) { /* shell sort: n is small */
    for (unsigned gap = n / 2; gap; gap /= 2)
        for (unsigned i = gap; i < n; i++)
            for (unsigned j = i; j >= gap && v[j - gap] > v[j]; j -= gap) {
                uint64_t t = v[j];
                v[j] = v[j - gap];
                v[j - gap] = t;
            }
}

static void cpuid0(void) {
    uint32_t a = 0, b, c = 0, d;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
}

/* nrefs == 0: the kind is the reference itself. */
static void report(const char *kind, unsigned n, unsigned nrefs) {
    unsigned hist[BUCKETS] = {0};
    for (unsigned i = 0; i < n; i++) {
        unsigned b = 0;
        while (b + 1 < BUCKETS && samples[i] >> (b + 1)) b++;
        hist[b]++;
    }
    sort(samples, n);
    sort(refs, nrefs);
    char h[BUCKETS * 6] = "", *p = h;
    for (unsigned b = 0; b < BUCKETS; b++) p += snprintf(p, (size_t)(h + sizeof h - p), b ? ",%u" : "%u", hist[b]);
    printf("bench-result %s n=%u min=%llu p50=%llu p99=%llu max=%llu hist=%s ref=%llu\n", kind, n,
           (unsigned long long)samples[0], (unsigned long long)samples[n / 2],
           (unsigned long long)samples[n * 99 / 100], (unsigned long long)samples[n - 1], h,
           (unsigned long long)(nrefs ? refs[nrefs / 2] : samples[n / 2]));
}

/* with_ref: time the cpuid reference after every REF_EVERY-th sample (not part of it). */
#define MEASURE_REF(kind, with_ref, ...)                                                     \
    do {                                                                                     \
        unsigned nrefs_ = 0;                                                                 \
        for (unsigned i_ = 0; i_ < WARMUP + nsamples; i_++) {                                \
            uint64_t t0_ = tsc();                                                            \
            __VA_ARGS__;                                                                     \
            uint64_t t1_ = tsc();                                                            \
            if (i_ < WARMUP) continue;                                                       \
            samples[i_ - WARMUP] = t1_ - t0_;                                                \
            if ((with_ref) && (i_ - WARMUP) % REF_EVERY == 0) {                              \
                cpuid0();                                                                    \
                uint64_t r0_ = tsc();                                                        \
                cpuid0();                                                                    \
                refs[nrefs_++] = tsc() - r0_;                                                \
            }                                                                                \
        }                                                                                    \
        report(kind, nsamples, nrefs_);                                                      \
    } while (0)
#define MEASURE(kind, ...) MEASURE_REF(kind, true, __VA_ARGS__)

/* The floor's flag: a page of RAM the floor VMM writes (see bench/bellhop_bench/bench_floor.h). */
#define FLOOR_FLAG_ADDR 0x5000u

static void bell_flag(uint64_t bell) {
    volatile uint32_t *flag = (volatile uint32_t *)(uintptr_t)FLOOR_FLAG_ADDR;
    uint32_t before = *flag;
    mmio_write32(bell, 0);
    for (uint64_t spins = 0; *flag == before && spins < (1ull << 32); spins++) __asm__ volatile("pause");
}

static volatile unsigned ipis;
static void on_ipi(void) { ipis++; }

static void self_interrupt(void) {
    unsigned before = ipis;
    outl(0x4f0, 1); /* mask: CPU 0 */
    outl(0x4f4, 0);
    outl(0x4f8, VEC_IPI);
    outl(0x4fc, 0); /* INTERRUPT */
    while (ipis == before) irq_wait();
}

void bench_reference(void) {
    MEASURE_REF("cpuid", false, cpuid0());
    printf("bench: done\n");
}

/* TSC cycles the guest spins before it measures: about a second at 2 GHz. On one CPU, a VMM
 * thread that did start-up work after the vCPU thread was made (QEMU's main loop) is behind
 * it in the scheduler's accounting, and until the vCPU thread has run as long, a wake of that
 * thread does not preempt the vCPU: its handlers wait for a tick, and a doorbell seems to cost
 * only its exit (QEMU's virtio_notify: 71K cycles instead of 218K in one round of five, seen
 * nested). Measured after this, each VMM is in the state it keeps while a guest runs. */
#define SETTLE_CYCLES (1ull << 31)

void bench_run(struct vdev *rng, uint64_t bell, bool vcpu_ctl, unsigned samples_asked) {
    if (samples_asked >= 1 && samples_asked < SAMPLES) nsamples = samples_asked;
    /* (a quick run, with fewer samples, settles for as much less) */
    for (uint64_t t0 = tsc(); tsc() - t0 < SETTLE_CYCLES / SAMPLES * nsamples;) {
    }
    printf("bench: %u samples per kind after %u warm-up rounds\n", nsamples, WARMUP);
    MEASURE("io_out", outb(BENCH_IO_PORT, 0));
    MEASURE("io_in", (void)inb(BENCH_IO_PORT));
    MEASURE("mmio_write", mmio_write32(BENCH_MMIO_ADDR, 0));
    MEASURE("mmio_read", (void)mmio_read32(BENCH_MMIO_ADDR));
    MEASURE_REF("cpuid", false, cpuid0());
    /* Guest-side cost of a bare bell, the same write under bellhop (its bench bell) and the
     * floor (an ioeventfd); then of a virtio doorbell, whose handler also looks at the queue
     * (the figure to compare with QEMU, which has no bench bell). */
    if (bell) MEASURE("bell_write", mmio_write32(bell, 0));
    if (rng) MEASURE("virtio_notify", vdev_notify(rng, 0));
    /* A bell whose handler only bumps a word in guest memory: under the floor, a host thread
     * blocked in read() on the ioeventfd; under bellhop, a bell trap on its loop. */
    if (bell) MEASURE("bell_to_flag", bell_flag(bell));
    if (rng) {
        /* A whole virtio request (one random byte), completion polled, then by interrupt. */
        static uint8_t byte;
        MEASURE("virtio_polled", vdev_request_polled(rng, 0, &(struct vbuf){&byte, 1, true}, 1));
        MEASURE("bell_to_irq", vdev_request(rng, 0, &(struct vbuf){&byte, 1, true}, 1, false));
    }
    if (vcpu_ctl) {
        /* An INTERRUPT packet to this CPU: the VMM turns it into zx_vcpu_interrupt. */
        ipi_handler = on_ipi;
        MEASURE("vcpu_interrupt", self_interrupt());
    }
    printf("bench: done\n");
}
