/* `bellhop run` end to end on real KVM: the bundled tiny guest boots, its self-tests pass,
 * the exit status is the guest's, tracing and crash reports show guest instructions, and
 * bad input gets a one-line error and a non-zero exit. */
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/lib/build_paths.h"
#include "tests/lib/check.h"
#include "bench/bellhop_bench/spawn.h"
#include "devices/bench_bell.h"
#include "bench/bellhop_bench/bench.h"
#include "vmm/hv/kvm_host.h"
#include "vmm/observe/smaps.h"

static char bellhop[PATH_MAX];
static char bellhop_hooks[PATH_MAX]; /* bellhop with its test hooks (build/bellhop-hooks) */
static bool use_hooks;               /* RUN runs that one */
static const char *stdin_text; /* fed to bellhop's stdin when set, else /dev/null */

/* Runs bellhop with args; returns its exit status, output (stdout+stderr) in out. */
static void find_bellhop(void) {
    if (bellhop[0]) return;
    snprintf(bellhop, sizeof bellhop, "%s", test_build_file("bellhop"));
    snprintf(bellhop_hooks, sizeof bellhop_hooks, "%s", test_build_file("bellhop-hooks"));
}

/* Sanitizer builds (build/asan, build/tsan) have no sandbox and inflated memory. */
static bool sanitized(void) { return test_sanitized_build(); }

static int run(char *out, size_t outlen, const char *const *args) {
    find_bellhop();
    const char *argv[32] = {use_hooks ? bellhop_hooks : bellhop, "run"};
    int i = 2;
    for (; args[i - 2] && i < 31; i++) argv[i] = args[i - 2];
    argv[i] = NULL;
    int status = spawn_capture((char *const *)argv, stdin_text, out, outlen);
    CHECK_MSG(WIFEXITED(status), "bellhop died with signal %d:\n%s", WTERMSIG(status), out);
    return WEXITSTATUS(status);
}

static char out[1 << 16];

#define RUN(...) run(out, sizeof out, (const char *const[]){__VA_ARGS__, NULL})

TEST_TIMEOUT(the_bundled_guest_boots_and_passes_its_self_tests, 120) {
    CHECK_EQ(RUN("--cmdline", "hello world"), 0);
    CHECK_MSG(strstr(out, "bellhop tiny guest: ") && strstr(out, "command line \"hello world\""), "%s", out);
    CHECK_MSG(strstr(out, "selftest dt-bootargs") && strstr(out, "guest: 0 failed"), "%s", out);
    CHECK_MSG(!strstr(out, "FAIL"), "%s", out);
}

TEST_TIMEOUT(ctrl_a_x_on_the_console_ends_the_vm, 120) {
    stdin_text = "\x01x";
    /* The guest would wait for ever: only Ctrl-A x (read by the VMM, not the guest) ends it. */
    CHECK_EQ(RUN("--cmdline", "wait"), 0);
    stdin_text = "\x01x";
    CHECK_EQ(RUN("--cmdline", "wait", "--console", "virtio"), 0);
    stdin_text = NULL;
}

TEST_TIMEOUT(cpus_start_and_take_interrupts_through_vcpu_packets, 120) {
    CHECK_EQ(RUN("--cpus", "3"), 0);
    CHECK_MSG(strstr(out, "selftest smp-startup      PASS: 3 of 3 CPUs running"), "%s", out);
    CHECK_MSG(strstr(out, "selftest smp-interrupt    PASS: 2 of 2 CPUs took vector 0x50"), "%s", out);
    CHECK_MSG(strstr(out, "guest: 0 failed"), "%s", out);
}

/* As many CPUs as a machine has: each on its own stack in the guest, each a vCPU thread that
 * starts the next under the sandbox it inherits (where glibc's malloc once wanted /sys for
 * its 9th arena), each named in the interrupt's 64-bit mask. */
TEST_TIMEOUT(thirty_two_cpus_start_and_take_interrupts, 120) {
    CHECK_EQ(RUN("--cpus", "32"), 0);
    CHECK_MSG(strstr(out, "selftest smp-startup      PASS: 32 of 32 CPUs running"), "%s", out);
    CHECK_MSG(strstr(out, "selftest smp-interrupt    PASS: 31 of 31 CPUs took vector 0x50"), "%s", out);
    CHECK_MSG(strstr(out, "guest: 0 failed"), "%s", out);
}

TEST_TIMEOUT(stats_and_loop_dispatch, 120) {
    CHECK_EQ(RUN("--rng", "--stats", "--dispatch", "loop"), 0);
    CHECK_MSG(strstr(out, "guest: 0 failed"), "%s", out);
    CHECK_MSG(strstr(out, "bellhop stats: ") && strstr(out, "exits to user space (io "), "%s", out);
    CHECK_MSG(strstr(out, "  uart16550      io     0x3f8"), "%s", out);
    CHECK_MSG(strstr(out, "  virtio-rng     queue 0: "), "%s", out);
}

/* How a halted vCPU waits (--halt-poll-ns, --cpu-pm on): the guest's interrupts (virtio-rng's,
 * the IPIs between its two CPUs) work with each, or a host whose KVM lacks the control refuses
 * it in one line. */
TEST_TIMEOUT(halt_polling_and_cpu_pm_leave_the_guests_interrupts_working, 120) {
    static const char *const opts[][2] = {{"--halt-poll-ns", "0"}, {"--halt-poll-ns", "1000000"}, {"--cpu-pm", "on"}};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        int status = RUN("--rng", "--cpus", "2", opts[i][0], opts[i][1]);
        const char *refusal = strstr(out, "bellhop: ");
        if (status == 1 && refusal && strstr(refusal, "this host's KVM") && !strstr(refusal + 1, "bellhop: ")) {
            printf("    %s %s: refused here: %s", opts[i][0], opts[i][1], refusal);
            continue;
        }
        CHECK_MSG(status == 0 && strstr(out, "guest: 0 failed") &&
                      strstr(out, "selftest smp-interrupt    PASS: 1 of 1 CPUs took vector 0x50"),
                  "%s %s: status %d: %s", opts[i][0], opts[i][1], status, out);
    }
    CHECK_EQ(RUN("--halt-poll-ns", "-5"), 2);
    CHECK_MSG(strstr(out, "--halt-poll-ns -5: nanoseconds, 0 to 4294967295"), "%s", out);
    CHECK_EQ(RUN("--halt-poll-ns", "4294967296"), 2);
    CHECK_EQ(RUN("--cpu-pm", "maybe"), 2);
    CHECK_MSG(strstr(out, "--cpu-pm maybe: on or off"), "%s", out);
}

TEST_TIMEOUT(bench_measures_every_kind_against_the_floor, 180) {
    /* bellhop bench --json: our run, the loop-dispatch run, the run without the sandbox (none
     * in sanitizer builds, which have no sandbox) and the raw KVM floor, one round each (Linux
     * boots and idle memory have tests of their own): this checks what the bench reports, not
     * the figures, which make bench gives. Not in a sanitizer build: what it checks is the
     * same there, and its runs are the slowest part of the suite under a sanitizer. */
    find_bellhop();
    if (sanitized()) test_skip("a sanitizer build: the bench's report is checked in the plain build");
    unsigned rounds = 1, samples = 100; /* (a tenth of the default: the report is what is checked) */
    char *const argv[] = {bellhop, "bench", "--json", "--plot", "/tmp/bellhop-bench.svg", "--only", "traps",
                          "--rounds", rounds == 1 ? "1" : "2", "--samples", "100", NULL};
    int status = spawn_capture(argv, NULL, out, sizeof out);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "bench status %#x: %s", status, out);
    char rounds_key[32];
    snprintf(rounds_key, sizeof rounds_key, "\"rounds\": %u,", rounds);
    CHECK_MSG(strstr(out, "\"tsc_ghz\": ") && strstr(out, rounds_key) && strstr(out, "\"bellhop\": {") &&
                  strstr(out, "\"floor\": {") && strstr(out, "\"bellhop_loop_dispatch\": {"),
              "%s", out);
    CHECK_MSG(strstr(out, "\"bellhop_no_seccomp\": {"), "%s", out);
    /* one JSON document: the traps, and the boots and memory (none asked here) after them */
    const char *doc = strstr(out, "{\"kvm_host\"");
    json_error_t je;
    json_t *parsed = doc ? json_loads(doc, JSON_DISABLE_EOF_CHECK, &je) : NULL;
    CHECK_MSG(parsed && json_object_get(parsed, "runs") && json_object_get(parsed, "rss_beyond_guest_kib"),
              "not one JSON document (%s): %s", parsed ? "keys missing" : je.text, out);
    json_decref(parsed);
    /* where it measured: this host's KVM by kind, or the nested host's */
    CHECK_MSG(strstr(out, getenv("BELLHOP_NESTED") ? "{\"kvm_host\": \"nested\", " : "{\"kvm_host\": \"") &&
                  !strstr(out, "\"kvm_host\": \"none\""), "%s", out);
    static const char *const kinds[] = {"io_out", "io_in", "mmio_write", "mmio_read", "cpuid", "bell_write",
                                        "virtio_notify", "bell_to_flag", "virtio_polled", "bell_to_irq", "vcpu_interrupt"};
    /* the rounds asked; up to as many more when the host was slow in some (their cpuid reference) */
    unsigned trap_rounds = 0;
    const char *tr = strstr(out, "\"trap_rounds\": ");
    CHECK_MSG(tr && sscanf(tr, "\"trap_rounds\": %u", &trap_rounds) == 1 && trap_rounds >= rounds && trap_rounds <= 2 * rounds,
              "%s", out);
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        char key[64];
        snprintf(key, sizeof key, "\"%s\": {\"n\": ", kinds[i]);
        const char *at = strstr(out, key);
        unsigned long long n = 0;
        unsigned kept = 0;
        CHECK_MSG(at && sscanf(at + strlen(key), "%llu", &n) == 1 && n == (unsigned long long)samples * trap_rounds, "no %s in %s",
                  kinds[i], out);
        const char *k = strstr(at, "\"rounds_kept\": ");
        CHECK_MSG(k && sscanf(k, "\"rounds_kept\": %u", &kept) == 1 && kept <= trap_rounds && strstr(k, "\"ref_rounds\": ["),
                  "%s: %s", kinds[i], at);
    }
    static char svg[1 << 16];
    FILE *f = fopen("/tmp/bellhop-bench.svg", "r");
    CHECK(f != NULL);
    size_t got = fread(svg, 1, sizeof svg - 1, f);
    fclose(f);
    svg[got] = 0;
    CHECK_MSG(strncmp(svg, "<svg ", 5) == 0 && strstr(svg, ">io_out<") && strstr(svg, "</svg>"), "%.200s", svg);
    unlink("/tmp/bellhop-bench.svg");
}

TEST(bench_refuses_bad_arguments) {
    find_bellhop();
    static const char *const bad[][2] = {{"--rounds", "0"}, {"--rounds", "16"}, {"--rounds", "3x"}, {"--rounds", ""},
                                         {"--only", "traps,nothing"}, {"--samples", "5"}, {"--samples", "2000"}, {"--bogus", NULL}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *const argv[] = {bellhop, "bench", (char *)bad[i][0], (char *)bad[i][1], NULL};
        int status = spawn_capture(argv, NULL, out, sizeof out);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 2 && strstr(out, "bellhop: bench: "), "%s %s: %#x %s",
                  bad[i][0], bad[i][1] ? bad[i][1] : "", status, out);
    }
}

/* bellhop bench --only launch: the tiny guest (and the Linux images, where make linux-files
 * made them: the bzImage without and with its kernel cache) launched, timed from the bench's
 * fork phase by phase through --start-time-us, and stopped once entered. */
TEST_TIMEOUT(bench_launch_times_each_kind_phase_by_phase, 180) {
    find_bellhop();
    if (sanitized()) test_skip("a sanitizer build: the bench's report is checked in the plain build");
    char *const argv[] = {bellhop, "bench", "--only", "launch", "--rounds", "1", NULL};
    int status = spawn_capture(argv, NULL, out, sizeof out);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "bench status %#x: %s", status, out);
    const char *floor = strstr(out, "  KVM floor "), *tiny = strstr(out, "  tiny guest ");
    CHECK_MSG(floor && strstr(floor, " ms: exec ") && strstr(floor, ", vcpu "), "%s", out);
    CHECK_MSG(tiny && strstr(tiny, " ms: exec ") && strstr(tiny, ", vcpu ") && strstr(tiny, "x the floor\n"), "%s", out);
    bool linux_files = access("build/linux/vmlinux", R_OK) == 0 && access("build/linux/initrd.cpio", R_OK) == 0;
    const char *pvh = strstr(out, "  vmlinux (PVH) ");
    CHECK_MSG(pvh && (linux_files ? strstr(pvh, "KiB of RAM the files' pages") != NULL : strstr(pvh, "did not launch") != NULL),
              "%s", out);
    if (linux_files) CHECK_MSG(strstr(out, "decoding its payload ") && strstr(out, "  bzImage warm ") &&
                                   strstr(strstr(out, "  bzImage warm "), " ms: exec "), "%s", out);
}

/* The launch bench's yardstick enters its one-instruction guest for real, and refuses a start
 * it cannot count from. */
TEST(launch_floor_enters_its_guest) {
    find_bellhop();
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    char us[32];
    snprintf(us, sizeof us, "%llu", (unsigned long long)t.tv_sec * 1000000 + (unsigned long long)t.tv_nsec / 1000);
    char *const argv[] = {bellhop, "launch-floor", us, NULL};
    int status = spawn_capture(argv, NULL, out, sizeof out);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x: %s", status, out);
    CHECK_MSG(strstr(out, "bellhop: guest entered at ") && strstr(out, "(setup, ms: exec ") &&
                  strstr(out, "the guest's OUT reached port 0x80"), "%s", out);
    char *const bad[] = {bellhop, "launch-floor", "12x", NULL};
    status = spawn_capture(bad, NULL, out, sizeof out);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 2 && strstr(out, "usage: bellhop launch-floor"), "%s", out);
}

/* --start-time-us: the launcher's clock, which --boot-markers count from (an exec phase
 * first); anything but a time not in the future is refused. */
TEST(start_time_us_counts_from_the_launcher) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    char us[32];
    snprintf(us, sizeof us, "%llu", (unsigned long long)t.tv_sec * 1000000 + (unsigned long long)t.tv_nsec / 1000);
    CHECK_EQ(RUN("--start-time-us", us, "--boot-markers", "--cmdline", "exit=0"), 0);
    CHECK_MSG(strstr(out, "(setup, ms: exec "), "%s", out);
    static const char *const bad[] = {"", "-5", "12x", "0", "99999999999999999", "18446744073709551616"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_MSG(RUN("--start-time-us", bad[i]) == 2 && strstr(out, "--start-time-us"), "'%s': %s", bad[i], out);
    }
}

TEST(help_and_usage) {
    CHECK_EQ(RUN("--help"), 0);
    CHECK_MSG(strstr(out, "usage: bellhop run") && strstr(out, "--disk PATH[,OPT...]") && strstr(out, "a Linux bzImage"), "%s", out);
}

TEST_TIMEOUT(the_exit_status_is_the_guests, 120) {
    CHECK_EQ(RUN("--cmdline", "exit=7"), 7);
    CHECK_EQ(RUN("--cmdline", "exit=0"), 0);
}

TEST_TIMEOUT(trace_traps_shows_each_packet_and_its_instruction, 120) {
    CHECK_EQ(RUN("--trace", "traps"), 0);
    CHECK_MSG(strstr(out, " ms cpu0 IO  in  key uart16550 port 0x3fd size 1"), "%s", out);
    CHECK_MSG(strstr(out, " ms cpu0 IO  out key uart16550 port 0x3f8 size 1 data 0x62"), "%s", out);
    /* Each line is stamped with the time since the VMM started; one vCPU's lines in order. */
    double first = -1, last = -1;
    unsigned lines = 0;
    for (const char *l = strstr(out, "trace: "); l; l = strstr(l + 1, "trace: ")) {
        double ms;
        char who[8];
        CHECK_MSG(sscanf(l, "trace: %lf ms %7s", &ms, who) == 2, "%.80s", l);
        if (strcmp(who, "cpu0") != 0) continue;
        if (first < 0) first = ms;
        CHECK_MSG(ms >= last, "%.80s after %.3f ms", l, last);
        last = ms;
        lines++;
    }
    CHECK_MSG(lines > 10 && first > 0 && last < 60000, "%u lines, %.3f to %.3f ms", lines, first, last);
    CHECK_MSG(strstr(out, ": out dx, al") && strstr(out, ": in al, dx"), "%s", out);
    CHECK_MSG(strstr(out, "key exit port 0xf4"), "%s", out);
    CHECK_EQ(RUN("--trace", "traps", "--rng"), 0);
    CHECK_MSG(strstr(out, " ms loop BELL key virtio-rng queue 0 addr 0xd0000050"), "%s", out);
    CHECK_MSG(strstr(out, " ms cpu0 MEM rd  key virtio-mmio addr 0xd0000000 size 4"), "%s", out);
}

/* guest.map (nm of guest.elf), read once per profile file checked. */
static struct nm_map {
    unsigned n;
    unsigned long long addr[4096];
    char name[4096][128];
} nm;

static void nm_load(const char *map) {
    FILE *f = fopen(map, "r");
    CHECK_MSG(f != NULL, "no %s", map);
    char line[256];
    nm.n = 0;
    while (nm.n < 4096 && fgets(line, sizeof line, f))
        if (sscanf(line, "%llx %*c %127s", &nm.addr[nm.n], nm.name[nm.n]) == 2) nm.n++;
    fclose(f);
}

/* The address of `name` in the map (the last one listed), or 0. */
static unsigned long long nm_address(const char *name) {
    unsigned long long a = 0;
    for (unsigned i = 0; i < nm.n; i++)
        if (strcmp(nm.name[i], name) == 0) a = nm.addr[i];
    return a;
}

/* Each sample line: "MS cpuN RIP [NAME+OFF]"; every name must be right (its address in guest.map
 * plus the offset is the RIP), and one vCPU's times never go back. Returns the lines. */
static unsigned check_profile_file(const char *path, const char *map, const char *must_name) {
    nm_load(map);
    FILE *f = fopen(path, "r");
    CHECK_MSG(f != NULL, "no %s", path);
    char line[512];
    unsigned lines = 0, named = 0, must = 0;
    double first = -1, last = -1, gap = 0, gap_at = 0;
    while (fgets(line, sizeof line, f)) {
        double ms;
        unsigned cpu;
        unsigned long long rip, off;
        char name[200];
        int k = sscanf(line, "%lf cpu%u %llx %199[^+]+%llx", &ms, &cpu, &rip, name, &off);
        CHECK_MSG(k == 3 || k == 5, "%s: bad line %s", path, line);
        CHECK_MSG(ms > 0 && cpu == 0, "%s", line);
        CHECK_MSG(ms >= last, "%s after %.3f ms", line, last);
        if (first < 0) first = ms;
        else if (ms - last > gap) gap = ms - last, gap_at = last;
        last = ms;
        lines++;
        if (k == 5) {
            named++;
            unsigned long long a = nm_address(name);
            CHECK_MSG(a && a + off == rip, "%s: %s is at %#llx in %s", line, name, a, map);
            must += strcmp(name, must_name) == 0;
        }
    }
    fclose(f);
    /* what a failure below needs to be told apart: too few samples, or a stall */
    char shape[160];
    snprintf(shape, sizeof shape, "%u samples from %.1f to %.1f ms, longest gap %.1f ms after %.1f ms", lines, first,
             last, gap, gap_at);
    CHECK_MSG(named * 10 >= lines * 9, "%u named; %s; bellhop said: %s", named, shape, strstr(out, "bellhop profile"));
    CHECK_MSG(must > 0, "no sample in %s; %s; bellhop said: %s", must_name, shape, strstr(out, "bellhop profile"));
    return lines;
}

/* --trace-file's timeline against --stats of the same run: every trapped access is an exit
 * slice on its vCPU's track (per device, the same counts), every bell a flow into a handler
 * slice on the loop's, and each thread's slices in time order. */
TEST_TIMEOUT(a_trace_file_shows_every_exit_and_bell_on_a_timeline, 120) {
    char path[] = "/tmp/bellhop-timeline-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_EQ(RUN("--trace-file", path, "--stats", "--rng", "--cpus", "2"), 0);
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    unlink(path);
    CHECK_MSG(doc, "the trace does not parse: %s (line %d)", je.text, je.line);
    json_t *events = json_object_get(doc, "traceEvents");
    CHECK(json_is_array(events) && json_array_size(events) > 100);
    CHECK_EQ(json_integer_value(json_object_get(json_object_get(doc, "otherData"), "dropped_records")), 0);
    /* the threads' names, per tid */
    static char names[2048][16];
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e) {
        const char *ph = json_string_value(json_object_get(e, "ph"));
        json_int_t tid = json_integer_value(json_object_get(e, "tid"));
        if (ph && strcmp(ph, "M") == 0 && tid > 0 && tid < 2048)
            snprintf(names[tid], sizeof names[tid], "%s", json_string_value(json_object_get(json_object_get(e, "args"), "name")));
    }
    static struct { char device[24]; unsigned long long slices, stats; } per[32];
    unsigned ndev = 0, vcpu_tracks_seen = 0, handlers = 0, bells_started = 0, bells_ended = 0;
    static double last_ts[3][2048]; /* per track and kind of slice: a handler's nest in the loop's turns */
    bool seen_track[2048] = {0};
    json_array_foreach(events, i, e) {
        const char *ph = json_string_value(json_object_get(e, "ph")), *cat = json_string_value(json_object_get(e, "cat"));
        json_int_t tid = json_integer_value(json_object_get(e, "tid"));
        double ts = json_number_value(json_object_get(e, "ts"));
        if (!ph || tid <= 0 || tid >= 2048) continue;
        if (strcmp(ph, "X") == 0) {
            unsigned k = cat && strcmp(cat, "exit") == 0 ? 0 : cat && strcmp(cat, "handler") == 0 ? 1 : 2;
            CHECK_MSG(ts >= last_ts[k][tid], "%s: a %s slice at %.3f us after one at %.3f", names[tid], cat, ts,
                      last_ts[k][tid]);
            last_ts[k][tid] = ts;
        }
        if (strcmp(ph, "X") == 0 && cat && strcmp(cat, "exit") == 0) {
            CHECK_MSG(strncmp(names[tid], "vcpu-", 5) == 0, "an exit on %s", names[tid]);
            if (!seen_track[tid]) vcpu_tracks_seen++;
            seen_track[tid] = true;
            const char *name = json_string_value(json_object_get(e, "name")), *dev = strrchr(name, ' ');
            if (strncmp(name, "vcpu ", 5) == 0 || !dev) continue;
            unsigned d = 0;
            while (d < ndev && strcmp(per[d].device, dev + 1) != 0) d++;
            if (d == ndev && ndev < 32) snprintf(per[ndev++].device, sizeof per[0].device, "%s", dev + 1);
            if (d < 32) per[d].slices++;
        }
        if (strcmp(ph, "X") == 0 && cat && strcmp(cat, "handler") == 0) {
            CHECK_MSG(strcmp(names[tid], "loop") == 0, "a handler on %s", names[tid]);
            handlers++;
        }
        if (cat && strcmp(cat, "bell") == 0) *(strcmp(ph, "s") == 0 ? &bells_started : &bells_ended) += 1;
    }
    json_decref(doc);
    unsigned vcpu_tracks = 0;
    for (unsigned t = 1; t < 2048; t++) vcpu_tracks += strncmp(names[t], "vcpu-", 5) == 0;
    /* a track per vCPU thread; the second CPU only starts and waits, with no exit of its own */
    CHECK_MSG(vcpu_tracks == 2 && vcpu_tracks_seen >= 1, "%u vCPU tracks, exits on %u", vcpu_tracks, vcpu_tracks_seen);
    CHECK_MSG(handlers > 0 && bells_started == handlers && bells_ended == handlers, "%u handlers, bells %u -> %u",
              handlers, bells_started, bells_ended);
    /* --stats: "  NAME  KIND  AT  COUNT ..." per trap window */
    for (const char *l = strstr(out, "\n  "); l; l = strstr(l + 1, "\n  ")) {
        char name[24], kind[8];
        unsigned long long at, count;
        if (sscanf(l + 3, "%23s %7s %llx %llu", name, kind, &at, &count) != 4) continue;
        unsigned d = 0;
        while (d < ndev && strcmp(per[d].device, name) != 0) d++;
        CHECK_MSG(d < ndev, "%s: %llu accesses in --stats, none on the timeline", name, count);
        per[d].stats += count;
    }
    for (unsigned d = 0; d < ndev; d++)
        CHECK_MSG(per[d].slices == per[d].stats, "%s: %llu exit slices, %llu accesses in --stats", per[d].device,
                  per[d].slices, per[d].stats);
}

TEST_TIMEOUT(profile_samples_where_the_guest_runs, 240) {
    const char *path = "/tmp/bellhop-profile.txt", *map = "build/guest/guest.map";
    /* Names from the kernel ELF's own symbol table; the bench keeps the guest in bench_run.
     * Nested, QEMU can leave L1's timer interrupt pending for seconds (scripts/nested.sh),
     * and L1's ticks with it, while the guest runs its whole bench: a second run tells that
     * from a profiler that misses bench_run. */
    const char *sum = NULL;
    for (int attempt = 0; attempt < 2 && !(sum && strstr(sum, "  bench_run\n")); attempt++) {
        /* (fewer under a sanitizer, whose VMM takes each exit several times as long) */
        CHECK_EQ(RUN("--profile", path, "--rng", "--bench-bell", "--cmdline",
                     sanitized() ? "bench samples=100 bell=" BENCH_BELL_ADDR_STR : "bench samples=300 bell=" BENCH_BELL_ADDR_STR),
                 0);
        sum = strstr(out, "bellhop profile: ");
    }
    unsigned samples = 0;
    size_t len = strlen(out);
    CHECK_MSG(sum && sscanf(sum, "bellhop profile: %u samples", &samples) == 1 && samples >= 20, "...%s",
              out + (len > 600 ? len - 600 : 0));
    CHECK_MSG(strstr(sum, "%  ") && strstr(sum, "  bench_run\n"), "%s", sum);
    CHECK_EQ(check_profile_file(path, map, "bench_run"), samples);
    /* Names from a System.map-style listing, here of the same kernel: the same names. */
    CHECK_EQ(RUN("--profile", path, "--profile-symbols", map, "--rng", "--bench-bell", "--cmdline",
                 "bench bell=" BENCH_BELL_ADDR_STR),
             0);
    sum = strstr(out, "bellhop profile: ");
    len = strlen(out);
    CHECK_MSG(sum && sscanf(sum, "bellhop profile: %u samples", &samples) == 1 && samples >= 20, "...%s",
              out + (len > 600 ? len - 600 : 0));
    CHECK_EQ(check_profile_file(path, map, "bench_run"), samples);
    unlink(path);
}

TEST_TIMEOUT(a_guest_crash_prints_registers_and_code, 120) {
    CHECK_EQ(RUN("--cmdline", "crash"), 1);
    CHECK_MSG(strstr(out, "bellhop: guest crashed on cpu0: MMIO read of 4 bytes at 0xdead0000"), "%s", out);
    CHECK_MSG(strstr(out, "rip ") && strstr(out, "cr3 ") && strstr(out, "efer 500"), "%s", out);
    CHECK_MSG(strstr(out, "=> ") && strstr(out, "dword ptr [0xdead0000]"), "%s", out);
    CHECK_EQ(RUN("--cmdline", "triple-fault"), 1);
    CHECK_MSG(strstr(out, "bellhop: guest crashed on cpu0: triple fault"), "%s", out);
}

TEST_TIMEOUT(a_stock_linux_kernel_is_refused_on_pvm, 120) {
    /* PVM emulates a kernel linked in the top 2 GiB throughout, slowly, until it stops: one
     * line says why and where to run it, before anything runs */
    char why[160];
    if (kvm_host_kind_of_working_kvm(why, sizeof why) != KVM_HOST_PVM) test_skip("not a PVM host: %s", why);
    if (access("build/linux/bzImage", R_OK) != 0) test_skip("no build/linux (make linux-files)");
    CHECK_EQ(RUN("--kernel", "build/linux/bzImage", "--mem", "256M"), 1);
    CHECK_MSG(strstr(out, "bellhop: kernel build/linux/bzImage: linked at 0xffffffff80000000, in the top 2 GiB") &&
                  strstr(out, "nested KVM host") && strstr(out, "--pvm-anyway") && !strchr(strchr(out, '\n') + 1, '\n'),
              "%s", out);
}

static void expect_one_line_error(int status, const char *words);

/* The same refusal on every host, with this one taken for PVM (build/bellhop-hooks): the
 * longest of bellhop's messages, whole, naming a kernel at a long path; and a broken file
 * still refused for what is wrong with it. */
TEST_TIMEOUT(a_kernel_refused_on_pvm_gets_one_whole_line_and_a_broken_one_its_own_reason, 120) {
    char dir[PATH_MAX] = "/tmp/bellhop-test-pvm-XXXXXX", path[PATH_MAX];
    CHECK(mkdtemp(dir) != NULL);
    char name[201];
    memset(name, 'k', 200);
    name[200] = 0;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK_EQ(mkdir(path, 0700), 0);
    snprintf(path + strlen(path), sizeof path - strlen(path), "/%s", name); /* a kernel at 428 bytes of path */
    static uint8_t bz[8192];
    memset(bz, 0, sizeof bz);
    memcpy(bz + 0x202, "HdrS", 4);
    bz[0x1f1] = 1, bz[0x206] = 0x0f, bz[0x207] = 0x02, bz[0x211] = 1, bz[0x236] = 1; /* 2.15, 64-bit */
    bz[0x232] = 0x20;                                                                  /* aligned to 2 MiB */
    bz[0x25a] = 0x20;                                                                  /* at 2 MiB */
    FILE *f = fopen(path, "w");
    CHECK(f && fwrite(bz, 1, sizeof bz, f) == sizeof bz);
    fclose(f);
    setenv("BELLHOP_HOST_AS", "pvm", 1);
    use_hooks = true;
    int status = RUN("--kernel", path);
    char want[PATH_MAX + 512];
    snprintf(want, sizeof want,
             "bellhop: kernel %s: linked at 0xffffffff80000000, in the top 2 GiB that a PVM host keeps for itself: "
             "this host's KVM is PVM, which runs only kernels built for it (CONFIG_PVM_GUEST); run it in the nested "
             "KVM host (BELLHOP_RUN_WHERE=nested scripts/run.sh build/bellhop run ...), or try it here with "
             "--pvm-anyway\n",
             path);
    CHECK_MSG(status == 1 && strcmp(out, want) == 0, "status %d: %s", status, out);
    bz[0x206] = 0x01; /* 2.01: no 64-bit entry */
    f = fopen(path, "w");
    CHECK(f && fwrite(bz, 1, sizeof bz, f) == sizeof bz);
    fclose(f);
    status = RUN("--kernel", path);
    use_hooks = false;
    unsetenv("BELLHOP_HOST_AS");
    expect_one_line_error(status, "boot protocol 2.01 is too old");
    unlink(path);
    *strrchr(path, '/') = 0;
    rmdir(path);
    rmdir(dir);
}

TEST_TIMEOUT(an_instruction_kvm_cannot_emulate_is_named, 120) {
    /* CMPXCHG16B on MMIO: KVM's emulator lacks it (PVM stops stock kernels on it) */
    CHECK_EQ(RUN("--cmdline", "unemulatable"), 1);
    CHECK_MSG(strstr(out, "bellhop: guest crashed on cpu0: KVM could not emulate the instruction at rip "), "%s", out);
    const char *named = strstr(out, "bellhop: KVM cannot emulate `lock cmpxchg16b xmmword ptr [");
    CHECK_MSG(named && strchr(named, '\n'), "%s", out);
    char why[160];
    bool pvm = kvm_host_kind_of_working_kvm(why, sizeof why) == KVM_HOST_PVM;
    CHECK_MSG(pvm == (strstr(named, "this host's KVM is PVM") != NULL && strstr(named, "nested KVM host") < strchr(named, '\n')),
              "%s", out);
    CHECK_MSG(strstr(out, "rip ") && strstr(out, "=> "), "the register dump and code: %s", out);
}

static const char *make_disk(const char *path, size_t size) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK_EQ(ftruncate(fd, (off_t)size), 0);
    close(fd);
    return path;
}

static void read_sector(const char *path, unsigned sector, char *buf) {
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    CHECK_EQ(pread(fd, buf, 512, (off_t)sector * 512), 512);
    close(fd);
}

/* (the disk through io_uring: /tmp here may be tmpfs, where the default is the synchronous path) */
TEST_TIMEOUT(virtio_devices_pass_the_guests_self_tests_and_the_disk_keeps_its_data, 120) {
    const char *disk = make_disk("/tmp/bellhop-test-disk.img", 1 << 20);
    char arg[64];
    snprintf(arg, sizeof arg, "%s,async", disk);
    CHECK_EQ(RUN("--console", "virtio", "--rng", "--disk", arg, "--device", "virtio-balloon"), 0);
    CHECK_MSG(!strstr(out, "FAIL") && strstr(out, "guest: 0 failed"), "%s", out);
    CHECK_MSG(strstr(out, "selftest virtio-balloon   PASS"), "%s", out);
    CHECK_MSG(strstr(out, "selftest virtio-rng       PASS"), "%s", out);
    CHECK_MSG(strstr(out, "selftest virtio-blk-rw    PASS"), "%s", out);
    CHECK_MSG(strstr(out, "virtio-console: hello from the tiny guest\n"), "%s", out);
    CHECK_MSG(strstr(out, "selftest virtio-irq       PASS"), "%s", out);
    char sector[512];
    read_sector(disk, 2, sector);
    CHECK_MSG(memcmp(sector, "bellhop guest wrote this sector\n", 32) == 0, "sector 2: %.32s", sector);
    read_sector(disk, 1, sector);
    static const char zero[512];
    CHECK(memcmp(sector, zero, 512) == 0);
    unlink(disk);
}

TEST_TIMEOUT(flushed_blocks_survive_sigkill, 120) {
    const char *disk = make_disk("/tmp/bellhop-test-durable.img", 1 << 20);
    find_bellhop();
    char arg[64];
    snprintf(arg, sizeof arg, "%s,async", disk);
    char *const argv[] = {bellhop, "run", "--disk", arg, "--cmdline", "durable", NULL};
    int rd;
    pid_t pid = spawn_piped(argv, NULL, false, &rd);
    CHECK(pid > 0);
    spawn_read_until(rd, out, sizeof out, (const char *const[]){"guest: flushed", "flush failed", NULL});
    kill(pid, SIGKILL); /* no chance to write anything back */
    waitpid(pid, NULL, 0);
    close(rd);
    CHECK_MSG(strstr(out, "guest: flushed"), "%s", out);
    for (unsigned s = 8; s < 16; s++) {
        char sector[512], want[32];
        read_sector(disk, s, sector);
        snprintf(want, sizeof want, "durable %u", s);
        CHECK_MSG(strcmp(sector, want) == 0, "sector %u: '%.20s'", s, sector);
    }
    unlink(disk);
}

/* The kernel's pages are the file's, copy-on-write, under a read lease: rewriting the file in
 * place (truncated, then zeros) while the guest runs waits until bellhop has given guest RAM
 * its own copies, and the guest counts on, its memory intact. Without them its code would
 * read as zeros from the truncated file. */
TEST_TIMEOUT(a_kernel_file_rewritten_while_the_guest_runs_changes_nothing_in_it, 120) {
    find_bellhop();
    char copy[] = "/tmp/bellhop-test-kernel-XXXXXX";
    int in = open(test_guest_elf(), O_RDONLY), out_fd = mkstemp(copy);
    CHECK(in >= 0 && out_fd >= 0);
    static char elf[1 << 20];
    ssize_t len = read(in, elf, sizeof elf);
    CHECK(len > 0 && len < (ssize_t)sizeof elf);
    CHECK_EQ(write(out_fd, elf, (size_t)len), len);
    close(in);
    close(out_fd);
    char *const argv[] = {bellhop, "run", "--kernel", copy, "--boot-markers", "--cmdline", "count", NULL};
    int rd;
    pid_t pid = spawn_piped(argv, NULL, false, &rd);
    CHECK(pid > 0);
    size_t n = spawn_read_until(rd, out, sizeof out, (const char *const[]){"count 2:", NULL});
    int w = open(copy, O_WRONLY | O_TRUNC); /* waits for bellhop to let go */
    memset(elf, 0, sizeof elf);
    bool rewritten = w >= 0 && write(w, elf, (size_t)len) == len;
    if (w >= 0) close(w);
    spawn_read_until(rd, out + n, sizeof out - n, (const char *const[]){"count 6:", NULL});
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(rd);
    unlink(copy);
    CHECK(rewritten);
    CHECK_MSG(strstr(out, "KiB of guest RAM are the files' pages"), "not shared with its file:\n%s", out);
    CHECK_MSG(strstr(out, "count 5: memory ok") && !strstr(out, "BAD"), "%s", out);
}

#define HOSTILE_RSS_BOUND_KIB (16 * 1024)


TEST_TIMEOUT(a_hostile_guest_leaves_the_vmm_healthy_and_bounded, 240) {
    /* Malformed chains, random register values, a storm of 100000 rings (`make test` keeps
     * it short; a million takes ~100 s nested; 20000 in the slower sanitizer builds), then the
     * VMM must still serve requests. */
    find_bellhop();
    const char *storm = sanitized() ? "20000" : "100000";
    char cmdline[64];
    snprintf(cmdline, sizeof cmdline, "hostile storm=%s wait", storm);
    char *const argv[] = {bellhop, "run", "--rng", "--cmdline", cmdline, NULL};
    int rd;
    pid_t pid = spawn_piped(argv, NULL, false, &rd);
    CHECK(pid > 0);
    spawn_read_until(rd, out, sizeof out, (const char *const[]){"guest: waiting", NULL});
    struct bench_memory mem = {-1, -1};
    bench_memory_beyond_guest(pid, &mem);
    long rss = mem.rss_kib;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(rd);
    CHECK_MSG(strstr(out, "hostile: survived with 0 failed") && !strstr(out, "FAIL"), "%s", out);
    char storm_line[80];
    snprintf(storm_line, sizeof storm_line, "selftest hostile-bell-storm PASS: %s rings", storm);
    CHECK_MSG(strstr(out, storm_line), "%s", out);
    printf("    VMM memory beyond guest RAM after the storm: %ld KiB (bound %d KiB)\n", rss, HOSTILE_RSS_BOUND_KIB);
    /* Sanitizer runtimes inflate memory by design (shadow memory, ASan's quarantine of freed
     * blocks, which grows with every request the storm makes): only the plain build is held to
     * the bound. */
    if (!sanitized()) CHECK_MSG(rss > 0 && rss <= HOSTILE_RSS_BOUND_KIB, "%ld KiB", rss);
}

struct resident_of {
    const char *file;
    long kib;
};

static void add_if_named(const struct smaps_mapping *m, void *arg) {
    struct resident_of *r = arg;
    size_t n = strlen(m->name), k = strlen(r->file);
    if (n >= k && strcmp(m->name + n - k, r->file) == 0) r->kib += m->rss_kib;
}

/* Resident KiB of the mappings of pid whose path ends in `file`. */
static long resident_kib_of(pid_t pid, const char *file) {
    struct resident_of r = {file, 0};
    return smaps_each(pid, add_if_named, &r) == 0 ? r.kib : -1;
}

TEST_TIMEOUT(an_idle_vmm_gives_back_what_only_setup_used, 120) {
    find_bellhop();
    char *const argv[] = {bellhop, "run", "--mem", "128M", "--cmdline", "wait", NULL};
    int rd;
    pid_t pid = spawn_piped(argv, NULL, false, &rd);
    CHECK(pid > 0);
    spawn_read_until(rd, out, sizeof out, (const char *const[]){"guest: waiting", NULL});
    usleep(300000);
    long seccomp = resident_kib_of(pid, "libseccomp.so.2"), ld = resident_kib_of(pid, "ld-linux-x86-64.so.2");
    struct bench_memory mem = {-1, -1};
    bench_memory_beyond_guest(pid, &mem);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(rd);
    CHECK_MSG(strstr(out, "guest: waiting"), "%s", out);
    printf("    idle: %ld KiB resident beyond guest RAM (%ld anonymous); libseccomp %ld KiB, ld.so %ld KiB\n",
           mem.rss_kib, mem.anon_kib, seccomp, ld);
    /* Sanitizer runtimes call into the dynamic loader (TLS, symbolization) all along. */
    if (sanitized()) return;
    /* The filters are compiled at build time: libseccomp is not even mapped. Only setup loads
     * libraries: the loader's code is no longer mapped, save its own written data. */
    CHECK_MSG(seccomp == 0, "libseccomp: %ld KiB resident", seccomp);
    CHECK_MSG(ld >= 0 && ld <= 32, "ld.so: %ld KiB resident", ld);
}

/* (on the synchronous path, io_uring's fallback, which the guest's self-tests then cover too) */
TEST_TIMEOUT(a_read_only_disk_refuses_writes_and_its_file_is_untouched, 120) {
    const char *disk = make_disk("/tmp/bellhop-test-ro.img", 1 << 20);
    char arg[64];
    snprintf(arg, sizeof arg, "%s,ro,sync", disk);
    CHECK_EQ(RUN("--disk", arg), 0);
    CHECK_MSG(strstr(out, "selftest virtio-blk-ro    PASS"), "%s", out);
    char sector[512];
    static const char zero[512];
    read_sector(disk, 2, sector);
    CHECK(memcmp(sector, zero, 512) == 0);
    unlink(disk);
}

/* ---- the seccomp sandbox ---- */

/* How many of pid's threads run under a seccomp filter (Seccomp: 2), and how many there are. */
static void count_filtered_threads(pid_t pid, unsigned *filtered, unsigned *threads) {
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    *filtered = *threads = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[320], line[128], comm[32] = "?";
        if (snprintf(path, sizeof path, "%s/%.40s/status", dir, e->d_name) >= (int)sizeof path) continue;
        FILE *f = fopen(path, "r");
        if (!f) continue;
        int mode = -1;
        while (fgets(line, sizeof line, f)) {
            sscanf(line, "Name:\t%31s", comm);
            sscanf(line, "Seccomp:\t%d", &mode);
        }
        fclose(f);
        printf("    thread %s (%s): seccomp mode %d\n", e->d_name, comm, mode);
        (*threads)++;
        if (mode == 2) (*filtered)++;
    }
    closedir(d);
}

static void expect_threads_filtered(bool sandbox) {
    find_bellhop();
    char *const with[] = {bellhop, "run", "--rng", "--cpus", "2", "--cmdline", "wait", NULL};
    char *const without[] = {bellhop, "run", "--rng", "--cpus", "2", "--cmdline", "wait", "--no-seccomp", NULL};
    int rd;
    pid_t pid = spawn_piped(sandbox ? with : without, NULL, false, &rd);
    CHECK(pid > 0);
    spawn_read_until(rd, out, sizeof out, (const char *const[]){"guest: waiting", NULL});
    unsigned filtered, threads;
    count_filtered_threads(pid, &filtered, &threads);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(rd);
    CHECK_MSG(strstr(out, "guest: waiting"), "%s", out);
    CHECK_MSG(threads >= 4, "%u threads: main, loop, two vCPUs expected", threads);
    CHECK_MSG(filtered == (sandbox ? threads : 0), "%u of %u threads filtered", filtered, threads);
}

TEST_TIMEOUT(every_thread_runs_under_its_seccomp_filter, 120) {
    find_bellhop();
    if (sanitized()) { /* sanitizer runtimes make calls no allowlist carries: no sandbox */
        expect_threads_filtered(false);
        return;
    }
    expect_threads_filtered(true);
    expect_threads_filtered(false); /* --no-seccomp */
}

TEST_TIMEOUT(a_forbidden_syscall_stops_the_vmm_with_a_clear_message, 120) {
    find_bellhop();
    static const char *const roles[] = {"main", "loop", "vcpu"};
    use_hooks = true;
    for (size_t i = 0; i < 3; i++) {
        setenv("BELLHOP_SANDBOX_PROBE", roles[i], 1);
        char want[128];
        /* The guest would wait for ever: only the sandbox ends it. */
        int status = RUN("--rng", "--cmdline", sanitized() ? "exit=0" : "wait");
        if (sanitized()) {
            CHECK_MSG(status == 0 || status == 1, "%d: %s", status, out);
        } else {
            snprintf(want, sizeof want, "bellhop: seccomp: the %s thread made a forbidden system call: socket(0x1, ",
                     roles[i]);
            CHECK_MSG(status == 159 && strstr(out, want), "status %d:\n%s", status, out);
            CHECK_MSG(strstr(out, "--no-seccomp"), "%s", out);
        }
        /* Without the sandbox the same call goes through; the guest runs to its end. */
        status = RUN("--rng", "--cmdline", "exit=0", "--no-seccomp");
        snprintf(want, sizeof want, "bellhop: sandbox probe: the %s thread's socket() was allowed", roles[i]);
        CHECK_MSG(status == 0 && strstr(out, want), "status %d:\n%s", status, out);
    }
    unsetenv("BELLHOP_SANDBOX_PROBE");
    use_hooks = false;
}

/* What ships: build/bellhop reads none of the test hooks' variables, and does what they ask
 * only in build/bellhop-hooks (one truncates the user's kernel file). */
TEST_TIMEOUT(the_shipped_binary_has_no_test_hooks, 120) {
    find_bellhop();
    static char image[64 << 20]; /* the sanitizer builds' are large */
    FILE *f = fopen(bellhop, "rb");
    CHECK(f != NULL);
    size_t n = fread(image, 1, sizeof image, f);
    fclose(f);
    CHECK_MSG(n > 0 && n < sizeof image, "%zu bytes", n);
    CHECK_MSG(!memmem(image, n, "BELLHOP_LOAD_PROBE", 18) && !memmem(image, n, "BELLHOP_SANDBOX_PROBE", 21) &&
                  !memmem(image, n, "BELLHOP_HOST_AS", 15),
              "%s names a test hook", bellhop);
    /* and so the variables change nothing: the kernel file stays whole, no probe runs */
    char copy[] = "/tmp/bellhop-test-kernel-XXXXXX";
    const char *guest = test_guest_elf();
    int in = open(guest, O_RDONLY), out_fd = mkstemp(copy);
    CHECK(in >= 0 && out_fd >= 0);
    struct stat st;
    CHECK_EQ(fstat(in, &st), 0);
    static char elf[1 << 20];
    CHECK(st.st_size > 0 && (size_t)st.st_size <= sizeof elf);
    CHECK_EQ(read(in, elf, (size_t)st.st_size), st.st_size);
    CHECK_EQ(write(out_fd, elf, (size_t)st.st_size), st.st_size);
    close(in);
    close(out_fd);
    setenv("BELLHOP_LOAD_PROBE", "kernel", 1);
    setenv("BELLHOP_SANDBOX_PROBE", "main", 1);
    int status = RUN("--kernel", copy, "--cmdline", "exit=0");
    unsetenv("BELLHOP_LOAD_PROBE");
    unsetenv("BELLHOP_SANDBOX_PROBE");
    struct stat after;
    CHECK_EQ(stat(copy, &after), 0);
    unlink(copy);
    CHECK_MSG(status == 0 && !strstr(out, "sandbox probe"), "status %d: %s", status, out);
    CHECK_EQ(after.st_size, st.st_size);
}

static void expect_one_line_error(int status, const char *words) {
    CHECK_MSG(status != 0, "exit status 0 for bad input:\n%s", out);
    CHECK_MSG(strncmp(out, "bellhop: ", 9) == 0, "no error line:\n%s", out);
    char *nl = strchr(out, '\n');
    CHECK_MSG(nl && nl[1] == 0, "more than one line:\n%s", out);
    CHECK_MSG(strstr(out, words), "expected \"%s\" in: %s", words, out);
}

TEST_TIMEOUT(bad_input_gives_a_one_line_error, 120) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(n > 0);
    exe[n] = 0;
    const char *notelf = "/tmp/bellhop-not-elf";
    FILE *f = fopen(notelf, "w");
    CHECK(f != NULL);
    fputs("this is not a kernel\n", f);
    fclose(f);
    expect_one_line_error(RUN("--kernel", "/nonexistent/kernel"), "No such file");
    /* bzImages: a boot protocol without the 64-bit entry, and one cut short */
    static uint8_t bz[4096];
    memcpy(bz + 0x202, "HdrS", 4);
    bz[0x206] = 0x01, bz[0x207] = 0x02; /* 2.01 */
    const char *old = "/tmp/bellhop-old-bzimage", *cut = "/tmp/bellhop-cut-bzimage";
    FILE *bf = fopen(old, "w");
    CHECK(bf && fwrite(bz, 1, sizeof bz, bf) == sizeof bz);
    fclose(bf);
    expect_one_line_error(RUN("--kernel", old), "boot protocol 2.01 is too old");
    bz[0x206] = 0x0f, bz[0x1f1] = 39, bz[0x211] = 1, bz[0x236] = 1; /* 2.15, 64-bit, 39 setup sectors */
    bf = fopen(cut, "w");
    CHECK(bf && fwrite(bz, 1, sizeof bz, bf) == sizeof bz);
    fclose(bf);
    expect_one_line_error(RUN("--kernel", cut), "truncated bzImage");
    unlink(old);
    unlink(cut);
    expect_one_line_error(RUN("--kernel", notelf), "not an ELF file");
    expect_one_line_error(RUN("--kernel", exe), "no PVH entry point");
    expect_one_line_error(RUN("--kernel", "/tmp"), "not a regular file");
    const char *empty = "/tmp/bellhop-test-empty";
    FILE *emptyf = fopen(empty, "w");
    CHECK(emptyf != NULL);
    fclose(emptyf);
    expect_one_line_error(RUN("--kernel", empty), "empty file");
    expect_one_line_error(RUN("--initrd", empty), "empty file");
    unlink(empty);
    /* A file that shrinks while it loads (another process truncating it): the hook truncates
     * it right after bellhop has mapped it. */
    const char *shrinking = "/tmp/bellhop-test-shrinking";
    const char *whats[] = {"kernel", "initrd"};
    for (size_t i = 0; i < 2; i++) {
        FILE *sf = fopen(shrinking, "w");
        CHECK(sf != NULL);
        for (int k = 0; k < 64 * 1024; k++) fputc('x', sf);
        fclose(sf);
        char want[128];
        snprintf(want, sizeof want, "%s %s: the file shrank while it was being loaded", whats[i], shrinking);
        setenv("BELLHOP_LOAD_PROBE", whats[i], 1);
        use_hooks = true;
        int status = i == 0 ? RUN("--kernel", shrinking) : RUN("--initrd", shrinking);
        use_hooks = false;
        unsetenv("BELLHOP_LOAD_PROBE");
        expect_one_line_error(status, want);
        CHECK_MSG(status == 1, "exit status %d: %s", status, out); /* RUN: and no signal */
    }
    unlink(shrinking);
    expect_one_line_error(RUN("--mem", "1M"), "--mem 1M");
    expect_one_line_error(RUN("--mem", "lots"), "not a size");
    expect_one_line_error(RUN("--cpus", "0"), "--cpus 0");
    expect_one_line_error(RUN("--cpus", "33"), "--cpus 33: must be 1 to 32");
    expect_one_line_error(RUN("--console", "vga"), "--console vga");
    expect_one_line_error(RUN("--bogus"), "unknown option");
    expect_one_line_error(RUN("--initrd", "/nonexistent/initrd"), "initrd");
    expect_one_line_error(RUN("--disk", "/nonexistent/disk.img"), "disk /nonexistent/disk.img");
    expect_one_line_error(RUN("--disk", "/tmp"), "--disk /tmp: drive: path_on_host /tmp: not a regular file");
    expect_one_line_error(RUN("--disk", "/tmp/x,rw"), "unknown option rw");
    expect_one_line_error(RUN("--disk", "/tmp/x,queues=5"), "queues=5: 1 to 4");
    expect_one_line_error(RUN("--trace", "everything"), "--trace everything");
    expect_one_line_error(RUN("--cpus", "100000"), "--cpus 100000");
    expect_one_line_error(RUN("--cpus", "two"), "--cpus two");
    expect_one_line_error(RUN("--mem", "0"), "--mem 0");
    expect_one_line_error(RUN("--mem", "99999999999999999999G"), "not a size");
    expect_one_line_error(RUN("--mem", "16777217"), "not a whole number of MiB");
    expect_one_line_error(RUN("--net", "eth0"), "expected tap=NAME");
    expect_one_line_error(RUN("--net", "tap=a", "--net", "tap=b"), "only one network device");
    expect_one_line_error(RUN("--dispatch", "sideways"), "--dispatch sideways");
    expect_one_line_error(RUN("--disk", ""), "empty path");
    expect_one_line_error(RUN("--disk", "/tmp/x", "--disk", "/tmp/x", "--disk", "/tmp/x", "--disk", "/tmp/x",
                              "--disk", "/tmp/x"), "at most 4 disks");
    expect_one_line_error(RUN("extra-argument"), "unexpected argument");
    expect_one_line_error(RUN("--api-sock", "/tmp/bellhop-test-api.sock", "--mem", "256M"),
                          "--mem: with --api-sock, the kernel, memory, CPUs and devices come from there");
    expect_one_line_error(RUN("--config-file", "/nonexistent/vm.json"), "--config-file /nonexistent/vm.json");
    expect_one_line_error(RUN("--config-file", notelf), "--config-file");
    expect_one_line_error(RUN("--api-sock", ""), "--api-sock: empty path");
    expect_one_line_error(RUN("--device", "virtio-gpu"), "--device virtio-gpu: unknown (there are virtio-blk,");
    expect_one_line_error(RUN("--device", "virtio-blk"), "virtio-blk: no backing file (--disk PATH)");
    expect_one_line_error(RUN("--device", "virtio-net"), "virtio-net: no tap interface");
    expect_one_line_error(RUN("--profile-symbols", notelf), "--profile-symbols needs --profile FILE");
    expect_one_line_error(RUN("--profile", "/nonexistent/profile.txt"), "--profile: /nonexistent/profile.txt: No such file");
    expect_one_line_error(RUN("--profile", "/tmp/bellhop-profile-x", "--profile-symbols", notelf),
                          "no text symbols");
    expect_one_line_error(RUN("--profile", "/tmp/bellhop-profile-x", "--profile-symbols", "/tmp"), "not a regular file");
    unlink("/tmp/bellhop-profile-x");
    /* an ELF cut short: its segment runs past the end of the file */
    static uint8_t elf[4096];
    FILE *gf = fopen(exe, "r");
    CHECK(gf && fread(elf, 1, sizeof elf, gf) == sizeof elf);
    fclose(gf);
    const char *cut_elf = "/tmp/bellhop-cut-elf";
    FILE *ef = fopen(cut_elf, "w");
    CHECK(ef && fwrite(elf, 1, 200, ef) == 200);
    fclose(ef);
    expect_one_line_error(RUN("--kernel", cut_elf), "bellhop: kernel");
    unlink(cut_elf);
    unlink(notelf);
}
