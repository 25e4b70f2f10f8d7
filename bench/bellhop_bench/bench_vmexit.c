/* bellhop bench's vmexit part (see bench_vmexit.h). */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "bench/bellhop_bench/bench.h"
#include "bench/bellhop_bench/bench_vmexit.h"
#include "bench/bellhop_bench/spawn.h"
#include "firmware/multiboot.h"

/* x86/vmexit.c's tests in the order of its table, which is the order one run goes through
 * those it is given whatever their order on its command line: so a run that stops was in the
 * first of its tests that has not printed its line. */
static const char *const known[] = {
    "cpuid", "vmcall", "wbinvd", "invd", "mov_from_cr8", "mov_to_cr8", "inl_from_pmtimer", "inl_from_qemu",
    "inl_from_kernel", "outl_to_kernel", "mov_dr", "tscdeadline_immed", "tscdeadline", "self_ipi_sti_nop",
    "self_ipi_sti_hlt", "self_ipi_tpr", "self_ipi_tpr_sti_nop", "self_ipi_tpr_sti_hlt", "x2apic_self_ipi_sti_nop",
    "x2apic_self_ipi_sti_hlt", "x2apic_self_ipi_tpr", "x2apic_self_ipi_tpr_sti_nop", "x2apic_self_ipi_tpr_sti_hlt",
    "ipi", "ipi_halt", "ple_round_robin", "wr_kernel_gs_base", "wr_tsx_ctrl_msr", "wr_ibrs_msr", "wr_ibpb_msr",
    "wr_tsc_adjust_msr", "rd_tsc_adjust_msr", "toggle_cr0_wp", "toggle_cr4_pge", "pci-mem", "pci-io"};
#define NKNOWN (sizeof known / sizeof known[0])
_Static_assert(NKNOWN <= VMEXIT_MAX_TESTS, "every test fits");

/* x86/unittests.cfg's vmexit group less what needs a second CPU (ipi, ipi_halt) or a CPU flag
 * QEMU is given there (tscdeadline, tscdeadline_immed) */
#define DEFAULT_TESTS                                                                                              \
    "cpuid,vmcall,mov_from_cr8,mov_to_cr8,inl_from_pmtimer,inl_from_qemu,inl_from_kernel,outl_to_kernel,mov_dr,"   \
    "ple_round_robin,wr_kernel_gs_base,wr_tsc_adjust_msr,rd_tsc_adjust_msr,toggle_cr0_wp,toggle_cr4_pge"
#define GUEST_MIB "256"

static const char *const state_text[] = {"not run", "", "skipped", "no PM timer", "did not finish", "no result"};
static const char *const state_key[] = {"not_run", "measured", "skipped", "no_pm_timer", "did_not_finish",
                                        "no_result"};
static const char *const vmm_key[VMEXIT_VMMS] = {"bellhop", "qemu"};

int bench_vmexit_image_ok(const char *path, char *why, size_t len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, len, "--vmexit %s: %s", path, strerror(errno));
        return -1;
    }
    static uint8_t head[MULTIBOOT_SEARCH];
    size_t n = fread(head, 1, sizeof head, f);
    int error = ferror(f) ? errno : 0;
    fclose(f);
    if (error) snprintf(why, len, "--vmexit %s: %s", path, strerror(error));
    else if (!multiboot_detect(head, n))
        snprintf(why, len, "--vmexit %s: not a multiboot image (kvm-unit-tests' x86/vmexit.flat is one)", path);
    else return 0;
    return -1;
}

static int known_index(const char *name) {
    for (unsigned i = 0; i < NKNOWN; i++)
        if (strcmp(known[i], name) == 0) return (int)i;
    return -1;
}

int bench_vmexit_pick(struct bench_vmexit *v, const char *list, char *why, size_t len) {
    char buf[1024];
    const char *l = list ? list : DEFAULT_TESTS;
    if (strlen(l) >= sizeof buf) {
        snprintf(why, len, "--vmexit-tests: a list of at most %zu characters", sizeof buf - 1);
        return -1;
    }
    strcpy(buf, l);
    bool want[NKNOWN] = {false};
    for (char *save, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        int i = known_index(w);
        if (i < 0) {
            snprintf(why, len, "--vmexit-tests: %.40s is not one of x86/vmexit.c's tests (cpuid, vmcall, "
                               "inl_from_qemu, ...: docs/benchmarks.md)", w);
            return -1;
        }
        want[i] = true;
    }
    v->ntests = 0;
    for (unsigned i = 0; i < NKNOWN; i++)
        if (want[i]) v->test[v->ntests++].name = known[i];
    if (!v->ntests) {
        snprintf(why, len, "--vmexit-tests: no test named");
        return -1;
    }
    return 0;
}

/* QEMU's pc machine boots the image with SeaBIOS, which QEMU finds beside its binary
 * (../share/seabios), and its multiboot option ROM: the nested host has them only when they
 * are copied in (BELLHOP_RUN_FILES). NULL, with the reason in v->qemu_missing, without them. */
static const char *find_qemu(struct bench_vmexit *v, char *dir, size_t len) {
    const char *qemu = bench_qemu_path(dir, len);
    if (!qemu) {
        snprintf(v->qemu_missing, sizeof v->qemu_missing, "no qemu-system-x86_64 with its firmware directory here");
        return NULL;
    }
    static const char *const needed[] = {"../seabios/bios-256k.bin", "multiboot_dma.bin"};
    for (unsigned i = 0; i < 2; i++) {
        char path[PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/%s", dir, needed[i]);
        if (access(path, R_OK) != 0) {
            snprintf(v->qemu_missing, sizeof v->qemu_missing, "QEMU's %.140s is missing: %s", path, strerror(errno));
            return NULL;
        }
    }
    return qemu;
}

/* One run of the image under one VMM, and what it said so far. */
struct attempt {
    struct bench_vmexit *v;
    unsigned vmm, round;
    bool asked[VMEXIT_MAX_TESTS], told[VMEXIT_MAX_TESTS];
    bool no_pm_timer; /* vmexit said the FADT gives the PM timer's port as 0 */
    char line[256];
    size_t len;
    char last[200]; /* the last line not empty */
};

static void record(struct attempt *a, unsigned i, enum vmexit_state s, long long cycles) {
    a->v->test[i].state[a->vmm][a->round] = s;
    a->v->test[i].cycles[a->vmm][a->round] = cycles;
    a->told[i] = true;
}

/* A line of the guest's console: a result ("NAME CYCLES" or "NAME (skipped)") of a test asked,
 * or vmexit's word on the PM timer. True for a result. */
static bool take_line(struct attempt *a, char *line) {
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\r' || line[n - 1] == ' ')) line[--n] = 0;
    if (!n) return false;
    snprintf(a->last, sizeof a->last, "%s", line);
    if (strcmp(line, "PM timer port is 0") == 0) a->no_pm_timer = true;
    const char *sp = strchr(line, ' ');
    if (!sp || sp == line) return false;
    for (unsigned i = 0; i < a->v->ntests; i++) {
        const char *name = a->v->test[i].name;
        if (!a->asked[i] || a->told[i] || strlen(name) != (size_t)(sp - line) || memcmp(name, line, strlen(name)))
            continue;
        char *end;
        long long cycles = strtoll(sp + 1, &end, 10);
        if (strcmp(sp + 1, "(skipped)") == 0) record(a, i, VMEXIT_SKIPPED, -1);
        else if (end == sp + 1 || *end) return false;
        else if (cycles < 0) record(a, i, VMEXIT_NO_RESULT, -1); /* vmexit's int overflowed */
        else if (a->no_pm_timer && strcmp(name, "inl_from_pmtimer") == 0) record(a, i, VMEXIT_NO_PM_TIMER, cycles);
        else record(a, i, VMEXIT_MEASURED, cycles);
        return true;
    }
    return false;
}

/* The run's output, line by line. True if a result came in it. */
static bool feed(struct attempt *a, const char *buf, size_t n) {
    bool result = false;
    for (size_t i = 0; i < n; i++) {
        if (buf[i] == '\n') {
            a->line[a->len] = 0;
            result |= take_line(a, a->line);
            a->len = 0;
        } else if (a->len + 1 < sizeof a->line) {
            a->line[a->len++] = buf[i];
        }
    }
    return result;
}

/* Runs argv until it ends, or until it gave no result for VMEXIT_STALL_SECONDS; then stops it
 * and all it started. True when it had to be stopped. */
static bool run_attempt(struct attempt *a, char *const argv[]) {
    int rd;
    pid_t pid = spawn_piped(argv, NULL, true, &rd);
    if (pid < 0) {
        snprintf(a->last, sizeof a->last, "cannot start %s", argv[0]);
        return false;
    }
    const uint64_t stall = VMEXIT_STALL_SECONDS * 1000000000ull;
    uint64_t deadline = zx_clock_get_monotonic() + stall;
    bool stalled = false;
    for (;;) {
        uint64_t now = zx_clock_get_monotonic();
        if (now >= deadline) {
            stalled = true;
            break;
        }
        struct pollfd p = {.fd = rd, .events = POLLIN};
        int ready = poll(&p, 1, (int)((deadline - now) / 1000000) + 1);
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) {
            if (ready < 0) break;
            continue;
        }
        char buf[4096];
        ssize_t got = read(rd, buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        if (feed(a, buf, (size_t)got)) deadline = zx_clock_get_monotonic() + stall;
    }
    if (a->len) feed(a, "\n", 1); /* a last line without its newline */
    close(rd);
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return stalled;
}

/* Whether test i did not finish under vmm in a round before `round`: then it is not asked again. */
static bool hung_before(const struct bench_vmexit *v, unsigned i, unsigned vmm, unsigned round) {
    for (unsigned r = 0; r < round; r++)
        if (v->test[i].state[vmm][r] == VMEXIT_DID_NOT_FINISH) return true;
    return false;
}

/* The tests asked and not told yet, space-separated (the image's command line); "" if none. */
static void pending(const struct attempt *a, char *out, size_t len) {
    size_t used = 0;
    out[0] = 0;
    for (unsigned i = 0; i < a->v->ntests; i++)
        if (a->asked[i] && !a->told[i])
            used += (size_t)snprintf(out + used, len - used, "%s%s", used ? " " : "", a->v->test[i].name);
}

static int first_pending(const struct attempt *a) {
    for (unsigned i = 0; i < a->v->ntests; i++)
        if (a->asked[i] && !a->told[i]) return (int)i;
    return -1;
}

/* One round under one VMM: all its tests in one run (a boot per test would cost QEMU's 5 s of
 * SeaBIOS each on PVM); when a run stops, the test it was in did not finish and the rest run
 * again without it. argv[tests_at] gets the test list. */
static void run_round(struct bench_vmexit *v, unsigned vmm, unsigned round, char **argv, size_t tests_at) {
    struct attempt a = {.v = v, .vmm = vmm, .round = round};
    for (unsigned i = 0; i < v->ntests; i++) {
        v->test[i].state[vmm][round] = VMEXIT_NOT_RUN;
        v->test[i].cycles[vmm][round] = -1;
        a.asked[i] = !hung_before(v, i, vmm, round);
    }
    char tests[VMEXIT_MAX_TESTS * 32];
    for (pending(&a, tests, sizeof tests); tests[0]; pending(&a, tests, sizeof tests)) {
        argv[tests_at] = tests;
        a.no_pm_timer = false;
        a.len = 0;
        a.last[0] = 0;
        bool stalled = run_attempt(&a, argv);
        int first = first_pending(&a);
        if (first < 0) break;
        /* A run silent from its start never got to its tests: none of them is to blame. */
        if (stalled && a.last[0]) {
            record(&a, (unsigned)first, VMEXIT_DID_NOT_FINISH, -1);
            continue;
        }
        for (unsigned i = (unsigned)first; i < v->ntests; i++)
            if (a.asked[i] && !a.told[i]) record(&a, i, stalled ? VMEXIT_DID_NOT_FINISH : VMEXIT_NO_RESULT, -1);
        if (stalled) snprintf(v->ended[vmm], sizeof v->ended[vmm], "no output in %d s", VMEXIT_STALL_SECONDS);
        else if (!a.last[0]) snprintf(v->ended[vmm], sizeof v->ended[vmm], "no output");
        else snprintf(v->ended[vmm], sizeof v->ended[vmm], "its last line: %.180s", a.last);
    }
}

void bench_vmexit_run(struct bench_vmexit *v, const char *self, unsigned rounds) {
    v->rounds = rounds > BENCH_MAX_ROUNDS ? BENCH_MAX_ROUNDS : rounds;
    v->qemu_cpu = bench_qemu_cpu();
    char dir[PATH_MAX];
    const char *qemu = find_qemu(v, dir, sizeof dir);
    char *img = (char *)v->image;
    char *argv_bh[] = {(char *)self, "run", "--kernel", img, "--exit-device", "qemu", "--mem", GUEST_MIB "M",
                       "--cmdline", NULL, NULL};
    /* as kvm-unit-tests' runner starts QEMU, but for its test devices, which vmexit's tests
     * here do not use, and with the host's CPU as bellhop gives it */
    char *argv_q[] = {(char *)qemu, "-L", dir, "-M", "pc", "-accel", "kvm", "-cpu", (char *)v->qemu_cpu, "-smp", "1",
                      "-m", GUEST_MIB, "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
                      "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4", "-kernel", img, "-append", NULL, NULL};
    /* (the test list goes last, in the slot before the NULL) */
    const size_t bh_tests = sizeof argv_bh / sizeof argv_bh[0] - 2, q_tests = sizeof argv_q / sizeof argv_q[0] - 2;
    for (unsigned r = 0; r < v->rounds; r++) {
        run_round(v, VMEXIT_BELLHOP, r, argv_bh, bh_tests);
        if (qemu) run_round(v, VMEXIT_QEMU, r, argv_q, q_tests);
    }
}

/* A test's figure under one VMM: what its rounds said (measured if any round measured it, else
 * the first that ran), and the median and the least of the cycles that came with that. */
struct figure {
    enum vmexit_state state;
    long long median, best; /* -1: none */
};

static struct figure summary(const struct bench_vmexit *v, const struct vmexit_test *t, unsigned vmm) {
    struct figure f = {.state = VMEXIT_NOT_RUN, .median = -1, .best = -1};
    for (unsigned r = 0; r < v->rounds; r++)
        if (t->state[vmm][r] == VMEXIT_MEASURED || (f.state == VMEXIT_NOT_RUN && t->state[vmm][r] != VMEXIT_NOT_RUN))
            f.state = t->state[vmm][r];
    unsigned long long c[BENCH_MAX_ROUNDS];
    unsigned n = 0;
    for (unsigned r = 0; r < v->rounds; r++)
        if (t->state[vmm][r] == f.state && t->cycles[vmm][r] >= 0) c[n++] = (unsigned long long)t->cycles[vmm][r];
    if (n) {
        f.median = (long long)bench_median(c, n); /* sorts c */
        f.best = (long long)c[0];
    }
    return f;
}

/* bellhop's cycles over QEMU's, -1 unless both measured the test. */
static double ratio(const struct figure *bh, const struct figure *q, bool best) {
    if (bh->state != VMEXIT_MEASURED || q->state != VMEXIT_MEASURED) return -1;
    long long a = best ? bh->best : bh->median, b = best ? q->best : q->median;
    return b > 0 ? (double)a / (double)b : -1;
}

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static void json_test(const struct bench_vmexit *v, const struct vmexit_test *t) {
    struct figure f[VMEXIT_VMMS];
    printf("\"%s\": {", t->name);
    for (unsigned k = 0; k < VMEXIT_VMMS; k++) {
        f[k] = summary(v, t, k);
        printf("\"%s\": {\"state\": \"%s\", \"cycles\": %lld, \"best\": %lld, \"rounds\": [", vmm_key[k],
               state_key[f[k].state], f[k].median, f[k].best);
        for (unsigned r = 0; r < v->rounds; r++) printf("%s%lld", r ? ", " : "", t->cycles[k][r]);
        printf("]}, ");
    }
    printf("\"ratio\": %.3f, \"best_ratio\": %.3f}", ratio(&f[0], &f[1], false), ratio(&f[0], &f[1], true));
}

static void print_json(const struct bench_vmexit *v) {
    printf("\"vmexit\": {\"image\": ");
    json_string(v->image);
    printf(", \"rounds\": %u, \"stall_seconds\": %d, \"guest_mib\": %s, \"qemu_cpu\": ", v->rounds,
           VMEXIT_STALL_SECONDS, GUEST_MIB);
    json_string(v->qemu_cpu ? v->qemu_cpu : "");
    printf(", \"qemu_missing\": ");
    json_string(v->qemu_missing);
    for (unsigned k = 0; k < VMEXIT_VMMS; k++) {
        printf(", \"%s_ended\": ", vmm_key[k]);
        json_string(v->ended[k]);
    }
    printf(", \"tests\": {");
    for (unsigned i = 0; i < v->ntests; i++) {
        if (i) printf(", ");
        json_test(v, &v->test[i]);
    }
    printf("}}, ");
}

/* A cell of the table: the cycles, or what came instead. */
static void cell(enum vmexit_state s, long long cycles) {
    if (s == VMEXIT_MEASURED) printf(" %14lld", cycles);
    else printf(" %14s", state_text[s]);
}

static void ratio_cell(double r) {
    if (r > 0) printf(" %6.2fx", r);
    else printf(" %7s", "");
}

/* Whether any test ended in state s under any VMM. */
static bool any_state(const struct bench_vmexit *v, enum vmexit_state s) {
    for (unsigned i = 0; i < v->ntests; i++)
        for (unsigned k = 0; k < VMEXIT_VMMS; k++)
            if (summary(v, &v->test[i], k).state == s) return true;
    return false;
}

static void notes(const struct bench_vmexit *v) {
    if (any_state(v, VMEXIT_DID_NOT_FINISH))
        printf("  did not finish: no line for %d s, so stopped, the tests after it run again without it, and it "
               "is not asked again in later rounds\n", VMEXIT_STALL_SECONDS);
    if (any_state(v, VMEXIT_NO_PM_TIMER))
        printf("  no PM timer: the guest's FADT gives none (port 0), so vmexit timed its own ACPI table lookup and "
               "printf, not an exit\n");
    if (any_state(v, VMEXIT_SKIPPED)) printf("  skipped: the test found what it needs missing, and said so\n");
    for (unsigned k = 0; k < VMEXIT_VMMS; k++)
        if (v->ended[k][0]) printf("  %s: a run ended before its tests did (%s)\n", vmm_key[k], v->ended[k]);
}

static void print_text(const struct bench_vmexit *v) {
    printf("\nkvm-unit-tests' vmexit (%s): TSC cycles per exit as its tests print them, the median and the best "
           "of %u rounds, bellhop and QEMU in turn, %s MiB and one vCPU each, the tests of a round in one run\n",
           v->image, v->rounds, GUEST_MIB);
    if (v->qemu_missing[0]) printf("  QEMU did not run: %s\n", v->qemu_missing);
    else printf("  QEMU: qemu-system-x86_64 -M pc -accel kvm -cpu %s -kernel (SeaBIOS and its multiboot ROM)\n",
                v->qemu_cpu);
    printf("  %-20s %14s %14s %7s %14s %14s %7s\n", "test", "bellhop", "QEMU", "ratio", "bellhop best",
           "QEMU best", "ratio");
    for (unsigned i = 0; i < v->ntests; i++) {
        const struct vmexit_test *t = &v->test[i];
        struct figure bh = summary(v, t, VMEXIT_BELLHOP), q = summary(v, t, VMEXIT_QEMU);
        printf("  %-20s", t->name);
        cell(bh.state, bh.median);
        cell(q.state, q.median);
        ratio_cell(ratio(&bh, &q, false));
        cell(bh.state, bh.best);
        cell(q.state, q.best);
        ratio_cell(ratio(&bh, &q, true));
        printf("\n");
    }
    notes(v);
}

void bench_vmexit_print(const struct bench_vmexit *v, bool as_json) {
    if (as_json) print_json(v);
    else print_text(v);
}
