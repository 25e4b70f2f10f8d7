#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "firmware/fdt.h"
#include "devices/bench_bell.h"
#include "devices/device.h"
#include "bench/bellhop_bench/bench.h"
#include "bench/bellhop_bench/bench_launch.h"
#include "bench/bellhop_bench/bench_vmexit.h"
#include "vmm/observe/smaps.h"
#include "bench/bellhop_bench/spawn.h"
#include "bench/bellhop_bench/bench_floor.h"
#include "bench/bellhop_bench/bench_results.h"
#include "vmm/hv/kvm_host.h"
#include "vmm/sandbox/sandbox.h"

#define OUT_MAX (1 << 20)
/* Each configuration runs --rounds times (and each VMM boots Linux as often), interleaved
 * with the others: a nested host drifts over seconds, and a ratio of two runs made far apart
 * would carry that drift. */
#define DEFAULT_ROUNDS 5
/* Rounds every kind must keep (bench_settle), or every Linux boot: while one keeps fewer,
 * another round runs, up to twice the rounds asked for. */
#define MIN_KEPT 3

static unsigned kept_needed(unsigned asked) { return asked < MIN_KEPT ? asked : MIN_KEPT; }

/* Whether round `done` (from 0) of `asked` runs, given whether something keeps too few. */
static bool another_round(unsigned done, unsigned asked, bool keeps_too_few) {
    return done < asked || (done < 2 * asked && done < BENCH_MAX_ROUNDS && keeps_too_few);
}

static uint64_t rdtsc(void) {
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}

double bench_tsc_ghz(void) {
    uint64_t t0 = zx_clock_get_monotonic(), c0 = rdtsc();
    while (zx_clock_get_monotonic() - t0 < 50000000u) {
    }
    return (double)(rdtsc() - c0) / (double)(zx_clock_get_monotonic() - t0);
}

/* Milliseconds from the start of argv until each of lines[0..n) shows up in its output (-1 for
 * one that never does); keeps the output in out and stops the VMM once the last has been seen. */
static void time_to_lines(char *const argv[], const char *const lines[], double ms[], unsigned n, char *out,
                          size_t outlen) {
    int rd;
    for (unsigned i = 0; i < n; i++) ms[i] = -1;
    uint64_t t0 = zx_clock_get_monotonic();
    pid_t pid = spawn_piped(argv, NULL, true, &rd);
    if (pid < 0) return;
    size_t len = 0;
    ssize_t n_read;
    while (ms[n - 1] < 0 && len + 1 < outlen && (n_read = read(rd, out + len, outlen - 1 - len)) > 0) {
        len += (size_t)n_read;
        out[len] = 0;
        for (unsigned i = 0; i < n; i++)
            if (ms[i] < 0 && strstr(out, lines[i])) ms[i] = (double)(zx_clock_get_monotonic() - t0) / 1e6;
    }
    close(rd);
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

struct memory_sums {
    long rss, anon;
    long largest_size, largest_rss, largest_anon;
};

static void sum_mapping(const struct smaps_mapping *m, void *arg) {
    struct memory_sums *sums = arg;
    sums->rss += m->rss_kib;
    sums->anon += m->anon_kib;
    if (m->size_kib > sums->largest_size) {
        sums->largest_size = m->size_kib;
        sums->largest_rss = m->rss_kib;
        sums->largest_anon = m->anon_kib;
    }
}

int bench_memory_beyond_guest(pid_t pid, struct bench_memory *out) {
    struct memory_sums sums = {0};
    if (smaps_each(pid, sum_mapping, &sums) != 0) return -1;
    /* The guest's RAM is the largest mapping: the rest is the VMM's. */
    out->rss_kib = sums.rss - sums.largest_rss;
    out->anon_kib = sums.anon - sums.largest_anon;
    return 0;
}

const char *bench_qemu_path(char *dir, size_t len) {
    static const char *const roots[] = {"/bellhop", ""};
    static char bin[PATH_MAX];
    for (size_t i = 0; i < 2; i++) {
        char bios[PATH_MAX + 32];
        snprintf(dir, len, "%s/usr/share/qemu", roots[i]);
        snprintf(bin, sizeof bin, "%s/usr/bin/qemu-system-x86_64", roots[i]);
        snprintf(bios, sizeof bios, "%s/bios-microvm.bin", dir);
        if (access(bin, X_OK) == 0 && access(bios, R_OK) == 0) return bin;
    }
    return NULL;
}

const char *bench_qemu_cpu(void) {
    char why[160];
    return kvm_host_kind_of_working_kvm(why, sizeof why) == KVM_HOST_PVM ? "host,-arch-capabilities" : "host";
}

/* QEMU microvm (no ACPI, one IOAPIC) running guest.elf with `cmdline`; the guest finds its
 * devices in a device tree given as -initrd, written to a temporary file (path: 64 bytes). */
static int peer_dtb(const char *cmdline, char *path) {
    struct fdt_machine m;
    fdt_microvm_layout(&m, 128u << 20, cmdline);
    static char dtb[1 << 16];
    int size = fdt_build(&m, dtb, sizeof dtb);
    snprintf(path, 64, "/tmp/bellhop-bench-XXXXXX");
    int fd = mkstemp(path);
    if (size <= 0 || fd < 0 || write(fd, dtb, (size_t)size) != size) {
        if (fd >= 0) {
            close(fd);
            unlink(path);
        }
        return -1;
    }
    close(fd);
    return 0;
}

static void peer_argv(char **argv, const char *qemu, const char *dir, const char *kernel, const char *dtb_path,
                      const char *cmdline) {
    const char *const args[] = {qemu, "-L", dir, "-M", "microvm,acpi=off,pic=off,pit=off,rtc=off,ioapic2=off,auto-kernel-cmdline=off",
                                "-accel", "kvm", "-cpu", bench_qemu_cpu(), "-m", "128", "-nodefaults", "-no-user-config",
                                "-display", "none", "-serial", "stdio", "-kernel", kernel, "-initrd", dtb_path,
                                "-append", cmdline, "-global", "virtio-mmio.force-legacy=false", "-device", "virtio-rng-device",
                                "-device", "isa-debug-exit,iobase=0xf4,iosize=1", NULL};
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) argv[i] = (char *)args[i];
}

/* What the guest's command line gets after "bench ...": " samples=N" with --samples. */
static char guest_args[32];

static int run_peer(const char *kernel, char *out, size_t outlen) {
    char dir[PATH_MAX], dtb_path[64];
    const char *qemu = bench_qemu_path(dir, sizeof dir);
    char cmdline[64];
    snprintf(cmdline, sizeof cmdline, "bench%s", guest_args);
    if (!qemu || peer_dtb(cmdline, dtb_path) != 0) return -1;
    char *argv[40];
    peer_argv(argv, qemu, dir, kernel, dtb_path, cmdline);
    spawn_capture(argv, NULL, out, outlen);
    unlink(dtb_path);
    return 0;
}

/* A VMM running the tiny guest in "wait" mode: its memory once the guest waits (mem is left
 * as it was if it never does). */
static void idle_memory(char *const argv[], struct bench_memory *mem) {
    int rd;
    pid_t pid = spawn_piped(argv, NULL, true, &rd);
    if (pid <= 0) return;
    char buf[4096];
    spawn_read_until(rd, buf, sizeof buf, (const char *const[]){"guest: waiting", NULL});
    if (strstr(buf, "guest: waiting")) {
        usleep(300000);
        bench_memory_beyond_guest(pid, mem);
    }
    kill(-pid, SIGKILL);
    close(rd);
    waitpid(pid, NULL, 0);
}

static void bar(const unsigned *hist) {
    static const char *const blocks[] = {" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
    unsigned top = 1;
    for (unsigned b = 0; b < BENCH_BUCKETS; b++) top = hist[b] > top ? hist[b] : top;
    for (unsigned b = 12; b < BENCH_BUCKETS; b++) fputs(blocks[(hist[b] * 8 + top - 1) / top], stdout);
}

static void table(const struct bench_run *runs, unsigned nruns, double ghz) {
    const struct bench_run *bh = &runs[0], *floor = nruns > 1 ? &runs[1] : NULL, *peer = nruns > 2 ? &runs[2] : NULL;
    printf("%-15s %9s %9s %9s %10s %9s %9s %7s %9s %7s  %s\n", "kind", "min", "p50", "p99", "max", "p50 us",
           "floor us", "ratio", "QEMU us", "ratio", "histogram (log2 cycles, 2^12..2^23)");
    for (unsigned i = 0; i < bh->nr; i++) {
        const struct bench_result *r = &bh->r[i], *f = floor ? bench_find(floor, r->kind) : NULL, *q = peer ? bench_find(peer, r->kind) : NULL;
        printf("%-15s %9llu %9llu %9llu %10llu %9.2f", r->kind, r->min, r->p50, r->p99, r->max, r->p50 / ghz / 1000);
        if (f) printf(" %9.2f %6.2fx", f->p50 / ghz / 1000, (double)r->p50 / (double)f->p50);
        else printf(" %9s %7s", "-", "-");
        if (q) printf(" %9.2f %6.2fx", q->p50 / ghz / 1000, (double)r->p50 / (double)q->p50);
        else printf(" %9s %7s", "-", "-");
        printf("  ");
        bar(r->hist);
        printf("\n");
    }
}

/* One row per kind: each run's histogram (log2 cycles) as bars, bellhop / floor / QEMU side
 * by side, with the medians in microseconds. */
static int plot(const char *path, const struct bench_run *runs, unsigned nruns, double ghz) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    static const char *const colors[] = {"#1f77b4", "#7f7f7f", "#d62728"};
    const unsigned first = 12, last = BENCH_BUCKETS - 1, cols = last - first + 1, bw = 36, rowh = 90, left = 150;
    unsigned width = left + cols * bw + 20, height = 60 + runs[0].nr * rowh + 40;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%u\" height=\"%u\" font-family=\"sans-serif\" "
               "font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", width, height);
    fprintf(f, "<text x=\"10\" y=\"20\" font-size=\"14\">bellhop bench: round-trip distributions "
               "(log2 cycles; TSC %.3f GHz)</text>\n", ghz);
    for (unsigned k = 0; k < nruns && k < 3; k++)
        fprintf(f, "<rect x=\"%u\" y=\"30\" width=\"10\" height=\"10\" fill=\"%s\"/><text x=\"%u\" y=\"39\">%s</text>\n",
                10 + 110 * k, colors[k], 24 + 110 * k, runs[k].name);
    for (unsigned i = 0; i < runs[0].nr; i++) {
        const char *kind = runs[0].r[i].kind;
        unsigned y0 = 60 + i * rowh;
        fprintf(f, "<text x=\"10\" y=\"%u\">%s</text>\n", y0 + 40, kind);
        for (unsigned k = 0; k < nruns && k < 3; k++) {
            const struct bench_result *r = bench_find(&runs[k], kind);
            if (!r) continue;
            unsigned top = 1;
            for (unsigned b = 0; b < BENCH_BUCKETS; b++) top = r->hist[b] > top ? r->hist[b] : top;
            for (unsigned b = first; b <= last; b++) {
                unsigned h = (unsigned)((uint64_t)r->hist[b] * (rowh - 20) / top);
                fprintf(f, "<rect x=\"%u\" y=\"%u\" width=\"%u\" height=\"%u\" fill=\"%s\"/>\n",
                        left + (b - first) * bw + k * (bw / 3), y0 + rowh - 10 - h, bw / 3 - 1, h, colors[k]);
            }
            fprintf(f, "<text x=\"10\" y=\"%u\" fill=\"%s\">p50 %.1f us</text>\n", y0 + 55 + 12 * k, colors[k],
                    r->p50 / ghz / 1000);
        }
    }
    for (unsigned b = first; b <= last; b++)
        fprintf(f, "<text x=\"%u\" y=\"%u\">2^%u</text>\n", left + (b - first) * bw, height - 15, b);
    fprintf(f, "</svg>\n");
    return fclose(f) == 0 ? 0 : -1;
}

/* Where the figures come from: this host's KVM, or the nested KVM host's (scripts/nested.sh
 * sets BELLHOP_NESTED in it), whose SVM runs under QEMU's software emulation. */
static const char *measured_on(void) {
    if (getenv("BELLHOP_NESTED")) return "nested";
    char why[160];
    return kvm_host_name(kvm_host_kind_of_working_kvm(why, sizeof why));
}

static void json(const char *where, const struct bench_run *runs, unsigned nruns, unsigned rounds, unsigned trap_rounds,
                 double ghz) {
    printf("{\"kvm_host\": \"%s\", \"tsc_ghz\": %.4f, \"rounds\": %u, \"trap_rounds\": %u, \"ref_slack_pct\": %d, "
           "\"runs\": {", where, ghz, rounds, trap_rounds, BENCH_REF_SLACK_PCT);
    for (unsigned k = 0; k < nruns; k++) {
        printf("%s\"%s\": {", k ? ", " : "", runs[k].name);
        for (unsigned i = 0; i < runs[k].nr; i++) {
            const struct bench_result *r = &runs[k].r[i];
            printf("%s\"%s\": {\"n\": %llu, \"min\": %llu, \"p50\": %llu, \"p99\": %llu, \"max\": %llu, \"hist\": [",
                   i ? ", " : "", r->kind, r->n, r->min, r->p50, r->p99, r->max);
            for (unsigned b = 0; b < BENCH_BUCKETS; b++) printf("%s%u", b ? ", " : "", r->hist[b]);
            printf("], \"rounds_kept\": %u, \"p50_rounds\": [", r->kept);
            for (unsigned j = 0; j < r->rounds; j++) printf("%s%llu", j ? ", " : "", r->p50s[j]);
            printf("], \"ref_rounds\": [");
            for (unsigned j = 0; j < r->rounds; j++) printf("%s%llu", j ? ", " : "", r->refs[j]);
            printf("]}");
        }
        printf("}");
    }
    printf("}, "); /* the document goes on: the boots and memory follow */
}

/* Which rounds bench_settle set aside, per run and kind. */
static void set_aside(const struct bench_run *runs, unsigned nruns) {
    unsigned shown = 0;
    for (unsigned k = 0; k < nruns; k++) {
        unsigned in_run = 0;
        for (unsigned i = 0; i < runs[k].nr; i++) {
            const struct bench_result *r = &runs[k].r[i];
            if (r->kept == r->rounds) continue;
            if (!in_run++)
                printf("%s%s, of %u rounds:", shown++ ? "; " : "\nrounds set aside (the host was slow then): ",
                       runs[k].name, r->rounds);
            printf("%s%s %u", in_run > 1 ? ", " : " ", r->kind, r->rounds - r->kept);
        }
    }
    printf(shown ? "\n" : "\nno round set aside: the host's cpuid exits stayed within %d%% of their best\n",
           BENCH_REF_SLACK_PCT);
}

/* The kinds of run `r` named in `kinds` against the floor and, given the sandboxed run (for the
 * run without the sandbox), what the sandbox adds to each in cycles. */
static void some_kinds(const struct bench_run *r, const char *const kinds[], const struct bench_run *floor,
                       const struct bench_run *sandboxed, double ghz) {
    for (unsigned i = 0; kinds[i]; i++) {
        const struct bench_result *k = bench_find(r, kinds[i]), *f = floor ? bench_find(floor, kinds[i]) : NULL;
        const struct bench_result *s = sandboxed ? bench_find(sandboxed, kinds[i]) : NULL;
        if (!k) continue;
        printf("%-15s p50 %9.2f us", k->kind, k->p50 / ghz / 1000);
        if (f) printf("  %6.2fx floor", (double)k->p50 / (double)f->p50);
        if (s) {
            printf("  (sandboxed: ");
            if (f) printf("%.2fx floor, ", (double)s->p50 / (double)f->p50);
            printf("%+lld cycles)", (long long)s->p50 - (long long)k->p50);
        }
        printf("\n");
    }
}

/* A Linux boot's two moments: init starts (boot to init, what the target counts), and init has
 * loaded the 11 virtio modules, whose signature checks are guest work the same under any VMM. */
enum { BOOT_INIT, BOOT_MODULES, BOOT_MOMENTS };
static const char *const boot_lines[BOOT_MOMENTS] = {"linux-guest: init started", "linux-guest: modules loaded"};

struct boot_times {
    const char *image, *path;
    double bellhop_ms[BOOT_MOMENTS], qemu_ms[BOOT_MOMENTS]; /* -1: did not run */
    char marker[BOOT_MOMENTS][256];                         /* bellhop's boot markers: time and exits */
    double setup_ms;                                        /* bellhop's start to the guest's first instruction */
    char setup_phases[256];                                 /* where that went in the first boot, phase by phase */
    unsigned rounds, bellhop_kept, qemu_kept;
    double bellhop_rounds[BOOT_MOMENTS][BENCH_MAX_ROUNDS], qemu_rounds[BOOT_MOMENTS][BENCH_MAX_ROUNDS];
    /* the host's reference around each boot: the slower of the one before and the one after */
    unsigned long long bellhop_refs[BENCH_MAX_ROUNDS], qemu_refs[BENCH_MAX_ROUNDS];
};

/* How fast the host is just now: the median cpuid exit of the tiny guest in "reference" mode
 * (see guest/bench.h), 0 if it did not run. */
static unsigned long long host_reference(char *self, char *out, size_t outlen) {
    char *const argv[] = {self, "run", "--cmdline", "reference", NULL};
    spawn_capture(argv, NULL, out, outlen);
    static struct bench_run run;
    run = (struct bench_run){.name = "reference"};
    bench_add_round(&run, out);
    const struct bench_result *r = bench_find(&run, "cpuid");
    return r ? r->p50s[0] : 0;
}

static unsigned long long slower(unsigned long long a, unsigned long long b) { return a > b ? a : b; }

/* The median of the boots in v[0..n) whose reference is within BENCH_REF_SLACK_PCT of best
 * (of all n when none is); *kept: how many were. */
static double kept_median_ms(const double *v, const unsigned long long *refs, unsigned n, unsigned long long best,
                             unsigned *kept) {
    double k[BENCH_MAX_ROUNDS];
    *kept = 0;
    for (unsigned i = 0; i < n; i++)
        if (bench_ref_ok(refs[i], best)) k[(*kept)++] = v[i];
    return *kept ? bench_median_ms(k, *kept) : bench_median_ms(v, n);
}


/* Both VMMs boot the kernel at b->path with the test initrd until its modules are loaded, in
 * turn, once to warm up and then `rounds` times each (more: see MIN_KEPT), with the host's
 * reference taken before, between and after; the medians of each moment over the boots kept
 * count. A boot is set aside, as a trap round is (see bench/bellhop_bench/bench_results.h), when a reference
 * beside it ran more than BENCH_REF_SLACK_PCT above the best of this image's. */
static void boot_to_init(char *self, struct boot_times *b, unsigned rounds, char *out, size_t outlen) {
    for (unsigned i = 0; i < BOOT_MOMENTS; i++) b->bellhop_ms[i] = b->qemu_ms[i] = -1;
    b->setup_ms = -1;
    b->setup_phases[0] = 0;
    if (access(b->path, R_OK) != 0 || access("build/linux/initrd.cpio", R_OK) != 0) return;
    char *const argv_bh[] = {self, "run", "--kernel", (char *)b->path, "--initrd", "build/linux/initrd.cpio",
                             "--mem", "512M", "--boot-markers", "--cmdline", "console=ttyS0 quiet", NULL};
    char dir[PATH_MAX];
    const char *qemu = bench_qemu_path(dir, sizeof dir);
    char *const argv_q[] = {(char *)qemu, "-L", dir, "-M", "microvm,rtc=on", "-accel", "kvm", "-cpu", (char *)bench_qemu_cpu(),
                            "-m", "512", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
                            "-no-reboot", "-kernel", (char *)b->path, "-initrd", "build/linux/initrd.cpio",
                            "-append", "console=ttyS0 quiet", NULL};
    double(*bh)[BENCH_MAX_ROUNDS] = b->bellhop_rounds, (*q)[BENCH_MAX_ROUNDS] = b->qemu_rounds, setup[BENCH_MAX_ROUNDS];
    unsigned need = kept_needed(rounds);
    unsigned long long best = 0;
    b->rounds = 0;
    /* One boot of each first, not timed: in a freshly started host the first is up to a second
     * slower (the host touches the memory, and loads the files, for the first time). */
    double warm[BOOT_MOMENTS];
    time_to_lines(argv_bh, boot_lines, warm, BOOT_MOMENTS, out, outlen);
    if (qemu) time_to_lines(argv_q, boot_lines, warm, BOOT_MOMENTS, out, outlen);
    for (unsigned round = 0; another_round(round, rounds, b->bellhop_kept < need || (qemu && b->qemu_kept < need));
         round++) {
        double ms[BOOT_MOMENTS];
        unsigned long long before = host_reference(self, out, outlen);
        time_to_lines(argv_bh, boot_lines, ms, BOOT_MOMENTS, out, outlen);
        const char *entered = strstr(out, "bellhop: guest entered at ");
        if (!entered || sscanf(entered, "bellhop: guest entered at %lf", &setup[round]) != 1) setup[round] = -1;
        const char *phases = entered ? strstr(entered, "(setup, ms: ") : NULL;
        if (round == 0 && phases) sscanf(phases + strlen("(setup, ms: "), "%255[^)\n]", b->setup_phases);
        for (unsigned i = 0; i < BOOT_MOMENTS; i++) {
            bh[i][round] = ms[i];
            if (round > 0) continue; /* the first boot's markers are the ones shown */
            char tag[32];
            snprintf(tag, sizeof tag, "bellhop: boot marker %#x at ", i + 1);
            const char *mk = strstr(out, tag);
            if (mk) sscanf(mk + strlen(tag), "%255[^\n]", b->marker[i]);
        }
        unsigned long long between = host_reference(self, out, outlen);
        for (unsigned i = 0; i < BOOT_MOMENTS; i++) ms[i] = -1;
        if (qemu) time_to_lines(argv_q, boot_lines, ms, BOOT_MOMENTS, out, outlen);
        for (unsigned i = 0; i < BOOT_MOMENTS; i++) q[i][round] = ms[i];
        unsigned long long after = qemu ? host_reference(self, out, outlen) : 0;
        b->bellhop_refs[round] = before && between ? slower(before, between) : 0;
        b->qemu_refs[round] = qemu && between && after ? slower(between, after) : 0;
        const unsigned long long refs[] = {before, between, after};
        for (unsigned i = 0; i < 3; i++)
            if (refs[i] && (!best || refs[i] < best)) best = refs[i];
        b->rounds = round + 1;
        for (unsigned i = 0; i < BOOT_MOMENTS; i++) {
            b->bellhop_ms[i] = kept_median_ms(bh[i], b->bellhop_refs, b->rounds, best, &b->bellhop_kept);
            b->qemu_ms[i] = kept_median_ms(q[i], b->qemu_refs, b->rounds, best, &b->qemu_kept);
        }
    }
    unsigned kept;
    b->setup_ms = kept_median_ms(setup, b->bellhop_refs, b->rounds, best, &kept);
}

/* What a run measures: --only traps,boot,memory picks some (all by default, vmexit among them
 * when --vmexit names its image). */
enum { PART_TRAPS = 1, PART_BOOT = 2, PART_MEMORY = 4, PART_TIMELINE = 8, PART_LAUNCH = 16, PART_VMEXIT = 32 }; /* timeline: the traps with --trace-file */

static bool parse_parts(const char *arg, unsigned *parts) {
    char buf[64];
    if (strlen(arg) >= sizeof buf) return false;
    strcpy(buf, arg);
    *parts = 0;
    for (char *save, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        if (strcmp(w, "traps") == 0) *parts |= PART_TRAPS;
        else if (strcmp(w, "boot") == 0) *parts |= PART_BOOT;
        else if (strcmp(w, "memory") == 0) *parts |= PART_MEMORY;
        else if (strcmp(w, "launch") == 0) *parts |= PART_LAUNCH;
        else if (strcmp(w, "vmexit") == 0) *parts |= PART_VMEXIT;
        else if (strcmp(w, "timeline") == 0) *parts |= PART_TIMELINE | PART_TRAPS;
        else return false;
    }
    return *parts != 0;
}

#define BENCH_RUNS 9
enum { RUN_WAKE = 6, RUN_WAKES = 3 }; /* runs[6..8]: how a halted vCPU waits */

/* What one `bellhop bench` measures and prints: its options, then each part's results. */
struct bench {
    bool as_json;
    unsigned parts, rounds;
    const char *plot_path, *where, *kernel;
    char self[PATH_MAX];
    char *out; /* OUT_MAX bytes: a run's output */
    bool pinned;
    double ghz;
    /* bellhop, floor, qemu, bellhop_loop_dispatch, bellhop_no_seccomp, bellhop_timeline, and the
     * halted vCPU's wake: bellhop_halt_poll_0, bellhop_halt_poll_1ms, bellhop_cpu_pm */
    struct bench_run runs[BENCH_RUNS];
    unsigned nruns, trap_rounds;
    struct boot_times boots[2];
    struct bench_launch launch;
    struct bench_memory mem_bh, mem_q;
    struct bench_vmexit vmexit;
};

/* A number from lo to hi, or false. */
static bool parse_count(const char *arg, unsigned long lo, unsigned long hi, unsigned long *n) {
    char *end;
    *n = strtoul(arg, &end, 10);
    return !*end && end != arg && *n >= lo && *n <= hi;
}

/* The vmexit part's options, once all are read: --vmexit alone adds the part to the default
 * ones; --only naming it needs --vmexit; --vmexit-tests needs the part. 0, or -1 (said). */
static int vmexit_args(struct bench *b, bool only_given, const char *tests) {
    char why[200];
    if (b->vmexit.image && !only_given) b->parts |= PART_VMEXIT;
    if ((b->parts & PART_VMEXIT) && !b->vmexit.image)
        snprintf(why, sizeof why, "--only vmexit needs --vmexit FILE, kvm-unit-tests' x86/vmexit.flat "
                                  "(docs/benchmarks.md says how to build it)");
    else if (b->vmexit.image && !(b->parts & PART_VMEXIT))
        snprintf(why, sizeof why, "--vmexit %s: --only leaves the vmexit part out", b->vmexit.image);
    else if (tests && !b->vmexit.image)
        snprintf(why, sizeof why, "--vmexit-tests needs --vmexit FILE");
    else if (!b->vmexit.image || (bench_vmexit_image_ok(b->vmexit.image, why, sizeof why) == 0 &&
                                  bench_vmexit_pick(&b->vmexit, tests, why, sizeof why) == 0))
        return 0;
    fprintf(stderr, "bellhop: bench: %s\n", why);
    return -1;
}

/* 0, or the exit status of a usage error (said on stderr). */
static int parse_args(struct bench *b, int argc, char **argv) {
    bool only_given = false;
    const char *vmexit_tests = NULL;
    for (int i = 1; i < argc; i++) {
        unsigned long n;
        if (strcmp(argv[i], "--json") == 0) {
            b->as_json = true;
        } else if (strcmp(argv[i], "--plot") == 0 && i + 1 < argc) {
            b->plot_path = argv[++i];
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            if (!parse_count(argv[++i], 1, BENCH_MAX_ROUNDS, &n)) {
                fprintf(stderr, "bellhop: bench: --rounds %s: a number from 1 to %d\n", argv[i], BENCH_MAX_ROUNDS);
                return 2;
            }
            b->rounds = (unsigned)n;
        } else if (strcmp(argv[i], "--samples") == 0 && i + 1 < argc) {
            if (!parse_count(argv[++i], 10, 1000, &n)) {
                fprintf(stderr, "bellhop: bench: --samples %s: a number from 10 to 1000\n", argv[i]);
                return 2;
            }
            snprintf(guest_args, sizeof guest_args, " samples=%lu", n);
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            if (!parse_parts(argv[++i], &b->parts)) {
                fprintf(stderr, "bellhop: bench: --only %s: a list of traps, boot, memory, timeline, launch, vmexit\n",
                        argv[i]);
                return 2;
            }
            only_given = true;
        } else if (strcmp(argv[i], "--vmexit") == 0 && i + 1 < argc) {
            b->vmexit.image = argv[++i];
        } else if (strcmp(argv[i], "--vmexit-tests") == 0 && i + 1 < argc) {
            vmexit_tests = argv[++i];
        } else {
            fprintf(stderr, "bellhop: bench: unknown argument %s (usage: %s)\n", argv[i], BENCH_USAGE);
            return 2;
        }
    }
    return vmexit_args(b, only_given, vmexit_tests) == 0 ? 0 : 2;
}

/* Trap round trips: bellhop, the floor, QEMU, and bellhop's variants, in turn each round. */
static int run_traps(struct bench *b) {
    char *kernel = (char *)b->kernel, *self = b->self, *out = b->out;
    struct bench_run *runs = b->runs;
    char bench_vcpu[96], bench_bell[96];
    snprintf(bench_vcpu, sizeof bench_vcpu, "bench vcpu-ctl bell=" BENCH_BELL_ADDR_STR "%s", guest_args);
    snprintf(bench_bell, sizeof bench_bell, "bench bell=" BENCH_BELL_ADDR_STR "%s", guest_args);
    char *const argv_bh[] = {self, "run", "--kernel", kernel, "--rng", "--bench-bell", "--cmdline", bench_vcpu, NULL};
    char *const argv_loop[] = {self, "run", "--kernel", kernel, "--rng", "--bench-bell", "--dispatch",
                               "loop", "--cmdline", bench_bell, NULL};
    /* What the sandbox costs per exit: KVM_RUN through the kernel's seccomp path or not. */
    char *const argv_open[] = {self, "run", "--kernel", kernel, "--rng", "--bench-bell", "--no-seccomp",
                               "--cmdline", bench_bell, NULL};
    /* What recording the timeline costs per exit (--trace-file; docs/timeline.md). */
    char timeline[64];
    snprintf(timeline, sizeof timeline, "/tmp/bellhop-bench-timeline-%d.json", (int)getpid());
    char *const argv_tl[] = {self, "run", "--kernel", kernel, "--rng", "--bench-bell", "--trace-file", timeline,
                             "--cmdline", bench_bell, NULL};
    /* How a halted vCPU waits for the interrupt that completes a request (bell_to_irq): KVM
     * polling it not at all, polling up to 1 ms, and HLT left in the guest. */
    char *const argv_wake[RUN_WAKES][12] = {
        {self, "run", "--kernel", kernel, "--rng", "--bench-bell", "--halt-poll-ns", "0", "--cmdline", bench_bell, NULL},
        {self, "run", "--kernel", kernel, "--rng", "--bench-bell", "--halt-poll-ns", "1000000", "--cmdline", bench_bell,
         NULL},
        {self, "run", "--kernel", kernel, "--rng", "--bench-bell", "--cpu-pm", "on", "--cmdline", bench_bell, NULL}};
    bool wake_ok[RUN_WAKES] = {true, true, true};
    bool floor_ok = true, peer_ok = true;
    unsigned need = kept_needed(b->rounds);
    for (unsigned round = 0; another_round(round, b->rounds, round >= b->rounds && !bench_settle(runs, BENCH_RUNS, need));
         round++) {
        b->trap_rounds = round + 1;
        spawn_capture(argv_bh, NULL, out, OUT_MAX);
        bench_add_round(&runs[0], out);
        if (!runs[0].ok) {
            fprintf(stderr, "bellhop: bench: the bellhop run did not finish:\n%s\n", out);
            return -1;
        }
        if (floor_ok && (floor_ok = bench_floor_run(kernel, guest_args, out, OUT_MAX) == 0)) bench_add_round(&runs[1], out);
        if (floor_ok && peer_ok && (peer_ok = run_peer(kernel, out, OUT_MAX) == 0)) bench_add_round(&runs[2], out);
        spawn_capture(argv_loop, NULL, out, OUT_MAX);
        bench_add_round(&runs[3], out);
        if (sandbox_supported()) {
            spawn_capture(argv_open, NULL, out, OUT_MAX);
            bench_add_round(&runs[4], out);
        }
        if (b->parts & PART_TIMELINE) {
            spawn_capture(argv_tl, NULL, out, OUT_MAX);
            bench_add_round(&runs[5], out);
            unlink(timeline);
        }
        for (unsigned w = 0; w < RUN_WAKES; w++) /* a host without the control refuses it: not measured */
            if (wake_ok[w] && (wake_ok[w] = spawn_capture(argv_wake[w], NULL, out, OUT_MAX) == 0))
                bench_add_round(&runs[RUN_WAKE + w], out);
    }
    bench_settle(runs, BENCH_RUNS, need);
    b->nruns = !floor_ok ? 1 : peer_ok && runs[2].nr ? 3 : 2;
    return 0;
}

/* Linux boot to init, bellhop against QEMU microvm (with its RTC), same kernel and initrd:
 * the compressed bzImage, and the same kernel's ELF vmlinux through PVH, which both boot. */
static int run_boots(struct bench *b) {
    for (unsigned i = 0; i < 2; i++) boot_to_init(b->self, &b->boots[i], b->rounds, b->out, OUT_MAX);
    return 0;
}

/* Process start to the guest's first instruction, per image kind (bench/bellhop_bench/bench_launch.h). */
static int run_launch(struct bench *b) {
    bench_launch_run(b->self, b->kernel, b->rounds, strcmp(b->where, "pvm") == 0, b->ghz, &b->launch);
    return 0;
}

/* kvm-unit-tests' vmexit.flat under bellhop and QEMU (bench/bellhop_bench/bench_vmexit.h). */
static int run_vmexit(struct bench *b) {
    bench_vmexit_run(&b->vmexit, b->self, b->rounds);
    return 0;
}

/* Memory while the tiny guest idles: bellhop's, and QEMU microvm's with the same guest. */
static int run_memory(struct bench *b) {
    char *const argv_idle[] = {b->self, "run", "--mem", "128M", "--cmdline", "wait", NULL};
    idle_memory(argv_idle, &b->mem_bh);
    char qdir[PATH_MAX], dtb_path[64];
    const char *qemu = bench_qemu_path(qdir, sizeof qdir);
    if (qemu && peer_dtb("wait", dtb_path) == 0) {
        char *argv_qidle[40];
        peer_argv(argv_qidle, qemu, qdir, b->kernel, dtb_path, "wait");
        idle_memory(argv_qidle, &b->mem_q);
        unlink(dtb_path);
    }
    return 0;
}

static void json_traps(const struct bench *b) {
    /* every run that finished */
    struct bench_run all[BENCH_RUNS];
    unsigned k = 0;
    for (unsigned i = 0; i < BENCH_RUNS; i++)
        if (b->runs[i].nr && (i < b->nruns || i >= 3)) all[k++] = b->runs[i];
    json(b->where, all, k, b->rounds, b->trap_rounds, b->ghz);
}

static void json_boots(const struct bench *b) {
    static const char *const image_key[2] = {"linux", "linux_pvh"};
    static const char *const moment_key[BOOT_MOMENTS] = {"boot_to_init", "boot_to_modules"};
    for (unsigned i = 0; i < 2; i++)
        for (unsigned j = 0; j < BOOT_MOMENTS; j++) {
            const struct boot_times *t = &b->boots[i];
            printf("\"%s_%s_ms\": {\"bellhop\": %.1f, \"qemu_microvm\": %.1f, \"bellhop_rounds\": [", image_key[i],
                   moment_key[j], t->bellhop_ms[j], t->qemu_ms[j]);
            for (unsigned r = 0; r < t->rounds; r++) printf("%s%.1f", r ? ", " : "", t->bellhop_rounds[j][r]);
            printf("], \"qemu_microvm_rounds\": [");
            for (unsigned r = 0; r < t->rounds; r++) printf("%s%.1f", r ? ", " : "", t->qemu_rounds[j][r]);
            printf("]}, ");
        }
    for (unsigned i = 0; i < 2; i++) {
        const struct boot_times *t = &b->boots[i];
        printf("\"%s_bellhop_setup_ms\": %.1f, \"%s_bellhop_setup_phases_ms\": \"%s\", \"%s_refs\": {\"bellhop\": [",
               image_key[i], t->setup_ms, image_key[i], t->setup_phases, image_key[i]);
        for (unsigned r = 0; r < t->rounds; r++) printf("%s%llu", r ? ", " : "", t->bellhop_refs[r]);
        printf("], \"qemu_microvm\": [");
        for (unsigned r = 0; r < t->rounds; r++) printf("%s%llu", r ? ", " : "", t->qemu_refs[r]);
        printf("], \"bellhop_kept\": %u, \"qemu_microvm_kept\": %u}, ", t->bellhop_kept, t->qemu_kept);
    }
}

static void json_launch(const struct bench *b) {
    if (b->parts & PART_LAUNCH) bench_launch_print(&b->launch, true);
}

static void json_vmexit(const struct bench *b) {
    if (b->parts & PART_VMEXIT) bench_vmexit_print(&b->vmexit, true);
}

static void json_memory(const struct bench *b) {
    printf("\"rss_beyond_guest_kib\": %ld, \"anon_beyond_guest_kib\": %ld, \"qemu_rss_beyond_guest_kib\": %ld, "
           "\"qemu_anon_beyond_guest_kib\": %ld}\n",
           b->mem_bh.rss_kib, b->mem_bh.anon_kib, b->mem_q.rss_kib, b->mem_q.anon_kib);
}

static void print_traps(const struct bench *b) {
    if (!b->nruns) return;
    printf("bellhop bench: %u rounds (%u asked), each configuration in turn; per round 1000 samples per kind after "
           "100 warm-up rounds, timed in the guest with the TSC (%.3f GHz); p50 and p99 are the medians of the "
           "rounds kept: a kind's round is set aside when the cpuid exits timed among its samples (answered in "
           "the host kernel, no VMM code) ran more than %d%% above their best for that kind in this run, for "
           "then the host itself was slow; %s; inline dispatch on the vCPU thread\n",
           b->trap_rounds, b->rounds, b->ghz, BENCH_REF_SLACK_PCT,
           b->pinned ? "VMM, vCPU and loop threads pinned to CPU 0" : "not pinned");
    printf("floor: the same guest under a raw KVM_RUN loop, its bell an ioeventfd that a thread blocked in read() "
           "answers with a flag in guest memory; QEMU: qemu-system-x86_64 -M microvm -accel kvm, "
           "same guest.elf%s\n", b->nruns > 2 ? "" : " (not available here)");
    printf("bellhop's bell_write and bell_to_flag: a bell trap (--bench-bell) whose handler on the loop bumps that "
           "flag; virtio_notify: virtio-rng's doorbell; virtio_polled and bell_to_irq: a whole virtio-rng request, "
           "completion polled or by interrupt\n\n");
    table(b->runs, b->nruns, b->ghz);
    set_aside(b->runs, 5);
}

static void print_boot(const struct boot_times *b, bool first) {
    printf("%sLinux (Debian cloud kernel as %s, test initrd, 512M, 1 CPU), in turn, medians of the boots kept "
           "(the host's reference beside them within %d%% of its best): bellhop %u of %u, QEMU %u of %u\n",
           first ? "\n" : "", b->image, BENCH_REF_SLACK_PCT, b->bellhop_kept, b->rounds, b->qemu_kept, b->rounds);
    static const char *const moment[BOOT_MOMENTS] = {"boot to init", "to its 11 modules loaded"};
    for (unsigned j = 0; j < BOOT_MOMENTS; j++) {
        printf("  %-25s bellhop %5.0f ms", moment[j], b->bellhop_ms[j]);
        if (b->qemu_ms[j] > 0)
            printf(", QEMU microvm,rtc=on %5.0f ms (%.2fx)", b->qemu_ms[j], b->bellhop_ms[j] / b->qemu_ms[j]);
        printf("; bellhop's marker %#x (first boot): %s\n", j + 1, b->marker[j]);
    }
    if (b->setup_ms <= 0) return;
    /* The rest is the guest's own work (bar its exits), the same under either VMM: the bound
     * on any VMM's ratio to QEMU on this host. */
    printf("  bellhop's setup, from its start to the guest's first instruction: %.0f ms", b->setup_ms);
    if (b->qemu_ms[BOOT_INIT] > 0)
        printf("; without it, boot to init would be %.2fx QEMU's", (b->bellhop_ms[BOOT_INIT] - b->setup_ms) / b->qemu_ms[BOOT_INIT]);
    printf("\n");
    if (b->setup_phases[0]) printf("    first boot's setup, ms: %s\n", b->setup_phases);
}

static void print_boots(const struct bench *b) {
    for (unsigned i = 0; i < 2; i++)
        if (b->boots[i].bellhop_ms[BOOT_INIT] > 0) print_boot(&b->boots[i], i == 0);
}

static void print_launch(const struct bench *b) {
    if (b->parts & PART_LAUNCH) bench_launch_print(&b->launch, false);
}

static void print_vmexit(const struct bench *b) {
    if (b->parts & PART_VMEXIT) bench_vmexit_print(&b->vmexit, false);
}

static void print_memory(const struct bench *b) {
    if (b->mem_bh.rss_kib < 0) return;
    printf("memory beyond guest RAM, idle tiny guest: bellhop %ld KiB resident, %ld KiB anonymous", b->mem_bh.rss_kib,
           b->mem_bh.anon_kib);
    if (b->mem_q.rss_kib >= 0)
        printf("; QEMU microvm %ld KiB resident, %ld KiB anonymous", b->mem_q.rss_kib, b->mem_q.anon_kib);
    printf("\n  (resident counts the shared library pages each touched; anonymous is heap, stacks and written data)\n");
}

/* bellhop's variants against itself: --dispatch loop, --no-seccomp, --trace-file. */
static void print_variants(const struct bench *b) {
    const struct bench_run *runs = b->runs, *floor = b->nruns > 1 ? &runs[1] : NULL;
    double ghz = b->ghz;
    if (runs[3].nr) {
        printf("\nwith --dispatch loop (register accesses handed to the loop thread, the vCPU waiting):\n");
        static const char *const registers[] = {"io_out", "io_in", "mmio_write", "mmio_read", NULL};
        some_kinds(&runs[3], registers, floor, NULL, ghz);
    }
    if (runs[4].nr) {
        /* The vCPU's KVM_RUN and, for bells, the loop thread's wait go through seccomp. */
        printf("\nwith --no-seccomp (inline dispatch; what the sandbox adds to each exit's KVM_RUN and each "
               "bell's loop turn):\n");
        static const char *const filtered[] = {"io_out", "io_in", "mmio_write", "mmio_read", "bell_write",
                                               "virtio_notify", "bell_to_flag", NULL};
        some_kinds(&runs[4], filtered, floor, &runs[0], ghz);
    }
    if (runs[5].nr) {
        printf("\nwith --trace-file (every exit and bell recorded on the timeline; what that adds to each):\n");
        static const char *const recorded[] = {"io_out", "io_in", "mmio_write", "mmio_read", "bell_to_flag",
                                               "virtio_polled", NULL};
        for (unsigned i = 0; recorded[i]; i++) {
            const struct bench_result *t = bench_find(&runs[5], recorded[i]), *o = bench_find(&runs[0], recorded[i]);
            if (t && o)
                printf("%-15s p50 %9.2f us  %+lld cycles (%+.2f us) over bellhop without it\n", t->kind,
                       t->p50 / ghz / 1000, (long long)t->p50 - (long long)o->p50,
                       ((double)t->p50 - (double)o->p50) / ghz / 1000);
        }
    }
}

/* A request completed by interrupt against the same polled, as a halted vCPU waits: KVM's
 * default polling (the bellhop run), none, up to 1 ms, HLT in the guest. */
static void print_wakes(const struct bench *b) {
    static const char *const how[1 + RUN_WAKES] = {"the host's halt polling", "--halt-poll-ns 0",
                                                   "--halt-poll-ns 1000000", "--cpu-pm on"};
    bool any = false;
    for (unsigned w = 0; w <= RUN_WAKES; w++) {
        const struct bench_run *r = &b->runs[w ? RUN_WAKE + w - 1 : 0];
        const struct bench_result *irq = r->nr ? bench_find(r, "bell_to_irq") : NULL;
        const struct bench_result *polled = r->nr ? bench_find(r, "virtio_polled") : NULL;
        if (!irq || !polled) continue;
        if (!any) printf("\na halted vCPU's wake (bell_to_irq: a virtio-rng request completed by interrupt; "
                         "virtio_polled: the same, polled):\n");
        any = true;
        printf("%-24s bell_to_irq p50 %9.2f us, %.2fx virtio_polled (%.2f us)\n", how[w], irq->p50 / b->ghz / 1000,
               (double)irq->p50 / (double)polled->p50, polled->p50 / b->ghz / 1000);
    }
}

/* The parts, in the order they run and print: what --only selects, how each runs, and how it
 * prints as text and as JSON (a JSON printer runs whether or not its part ran, keeping every
 * key; NULL prints nothing). */
static const struct bench_part {
    unsigned bit;
    int (*run)(struct bench *b);
    void (*print)(const struct bench *b);
    void (*json)(const struct bench *b);
} bench_parts[] = {
    {PART_TRAPS, run_traps, print_traps, json_traps},
    {PART_BOOT, run_boots, print_boots, json_boots},
    {PART_LAUNCH, run_launch, print_launch, json_launch},
    {PART_VMEXIT, run_vmexit, print_vmexit, json_vmexit},
    {PART_MEMORY, run_memory, print_memory, json_memory},
    {PART_TRAPS, NULL, print_variants, NULL},
    {PART_TRAPS, NULL, print_wakes, NULL},
};

int bench_main(int argc, char **argv, const char *kernel) {
    static struct bench b = {
        .parts = PART_TRAPS | PART_BOOT | PART_MEMORY | PART_TIMELINE | PART_LAUNCH,
        .rounds = DEFAULT_ROUNDS,
        .runs = {{.name = "bellhop"}, {.name = "floor"}, {.name = "qemu"}, {.name = "bellhop_loop_dispatch"},
                 {.name = "bellhop_no_seccomp"}, {.name = "bellhop_timeline"}, {.name = "bellhop_halt_poll_0"},
                 {.name = "bellhop_halt_poll_1ms"}, {.name = "bellhop_cpu_pm"}},
        .boots = {{.image = "bzImage", .path = "build/linux/bzImage"},
                  {.image = "vmlinux (PVH)", .path = "build/linux/vmlinux"}},
        .mem_bh = {-1, -1},
        .mem_q = {-1, -1},
    };
    b.kernel = kernel;
    int usage = parse_args(&b, argc, argv);
    if (usage) return usage;
    b.where = measured_on();
    if ((b.parts & PART_BOOT) && strcmp(b.where, "pvm") == 0) {
        /* A stock Linux kernel does not run on PVM (vmm/hv/kvm_host.h): its boots are for the nested
         * KVM host (make bench runs them there). */
        fprintf(stderr, "bellhop: bench: Linux boots need hardware virtualization, which this PVM host lacks: "
                        "left out (scripts/run.sh with BELLHOP_RUN_WHERE=nested runs them in the nested KVM host)\n");
        b.parts &= ~(unsigned)PART_BOOT;
        if (!b.parts) return 0;
    }
    if (!b.as_json)
        printf("bellhop bench on %s KVM%s\n\n", b.where,
               strcmp(b.where, "nested") == 0 ? " (SVM KVM in a Linux VM under QEMU's software emulation)" : "");
    /* Everything on one CPU: the guest, its VMM's threads, the floor. */
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    b.pinned = sched_setaffinity(0, sizeof one, &one) == 0;
    b.ghz = bench_tsc_ghz();
    ssize_t n = readlink("/proc/self/exe", b.self, sizeof b.self - 1);
    if (n < 0 || !(b.out = malloc(OUT_MAX))) return 1;
    b.self[n] = 0;
    const size_t nparts = sizeof bench_parts / sizeof bench_parts[0];
    for (size_t i = 0; i < nparts; i++)
        if (bench_parts[i].run && (b.parts & bench_parts[i].bit) && bench_parts[i].run(&b) != 0) {
            free(b.out);
            return 1;
        }
    if (b.plot_path && plot(b.plot_path, b.runs, b.nruns, b.ghz) != 0)
        fprintf(stderr, "bellhop: bench: cannot write %s: %s\n", b.plot_path, strerror(errno));
    for (size_t i = 0; i < nparts; i++) {
        void (*print)(const struct bench *) = b.as_json ? bench_parts[i].json : bench_parts[i].print;
        if (print) print(&b);
    }
    free(b.out);
    return 0;
}
