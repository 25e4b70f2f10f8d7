/* bellhop bench's launch figures (see bench_launch.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "devices/device.h"
#include "bench/bellhop_bench/bench_launch.h"
#include "bench/bellhop_bench/bench_results.h"
#include "bench/bellhop_bench/spawn.h"

#define INITRD "build/linux/initrd.cpio"
#define OUT_LEN 16384

/* "exec 1.2, options 0.3, ..." into the kind's phases, for launch `r`. */
static void add_phases(struct launch_kind *k, const char *list, unsigned r) {
    char name[16];
    double ms;
    int used;
    while (sscanf(list, " %15[a-z ] %lf%n", name, &ms, &used) == 2) {
        size_t len = strlen(name);
        while (len && name[len - 1] == ' ') name[--len] = 0;
        unsigned i = 0;
        while (i < k->nphases && strcmp(k->phase[i], name) != 0) i++;
        if (i == k->nphases && k->nphases < LAUNCH_MAX_PHASES) {
            snprintf(k->phase[k->nphases], sizeof k->phase[0], "%s", name);
            for (unsigned j = 0; j < BENCH_MAX_ROUNDS; j++) k->phase_ms[k->nphases][j] = -1;
            k->nphases++;
        }
        if (i < k->nphases) k->phase_ms[i][r] = ms;
        list += used;
        if (*list == ',') list++;
    }
}

/* One launch of kind k, timed when `r` is not -1: bellhop told when it was started, stopped
 * (SIGKILL) once it says the guest entered. */
static void launch(const char *self, struct launch_kind *k, bool pvm, int r, char *out) {
    char start[32];
    snprintf(start, sizeof start, "%llu", (unsigned long long)(zx_clock_get_monotonic() / 1000));
    char *argv[16] = {(char *)self, "run", "--kernel", (char *)k->kernel, "--initrd", INITRD, "--mem", "512M",
                      "--boot-markers", "--start-time-us", start, "--cmdline", "console=ttyS0 quiet exit=0"};
    unsigned argc = 13;
    if (k->floor) argv[1] = "launch-floor", argv[2] = start, argv[argc = 3] = NULL;
    else if (pvm && strcmp(k->name, "tiny guest") != 0) argv[argc++] = "--pvm-anyway";
    if (k->cache) argv[argc++] = "--kernel-cache";
    int rd;
    const char *was = getenv("XDG_CACHE_HOME");
    char *saved = was ? strdup(was) : NULL;
    if (k->cache) setenv("XDG_CACHE_HOME", k->cache, 1);
    pid_t pid = spawn_piped(argv, NULL, false, &rd);
    if (saved) setenv("XDG_CACHE_HOME", saved, 1);
    else if (k->cache) unsetenv("XDG_CACHE_HOME");
    free(saved);
    if (pid < 0) {
        snprintf(k->error, sizeof k->error, "cannot start %s", self);
        return;
    }
    size_t n = spawn_read_until(rd, out, OUT_LEN, (const char *const[]){"(setup, ms:", NULL});
    const char *entered = strstr(out, "bellhop: guest entered at ");
    while (entered && !strchr(entered, ')') && n < OUT_LEN - 1) { /* the rest of its line */
        ssize_t got = read(rd, out + n, OUT_LEN - 1 - n);
        if (got <= 0) break;
        out[n += (size_t)got] = 0;
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(rd);
    double total;
    if (!entered || sscanf(entered, "bellhop: guest entered at %lf", &total) != 1) {
        const char *err = strstr(out, "bellhop: ");
        snprintf(k->error, sizeof k->error, "%.*s", err ? (int)strcspn(err, "\n") : 20, err ? err : "no boot marker");
        return;
    }
    if (r < 0) return;
    k->total_ms[r] = total;
    const char *phases = strstr(entered, "(setup, ms: ");
    if (phases) add_phases(k, phases + strlen("(setup, ms: "), (unsigned)r);
    const char *unpacked = strstr(out, "kernel unpacked");
    const char *dec = unpacked ? strstr(unpacked, "(decoding ") : NULL;
    k->decode_ms[r] = dec ? strtod(dec + strlen("(decoding "), NULL) : -1;
    const char *shared = strstr(out, " KiB of guest RAM are the files' pages");
    if (shared) { /* "bellhop: N KiB of ...": from the start of that line */
        while (shared > out && shared[-1] != '\n') shared--;
        sscanf(shared, "bellhop: %lu KiB", &k->shared_kib);
    }
}

/* The bzImage's LZ4 payload (the kernel's `lz4 -l` stream without the size the build appends)
 * into a file, for the lz4 tool. 0, or -1 when the image is not an LZ4 bzImage. */
static int extract_payload(const char *bzimage, const char *path) {
    FILE *f = fopen(bzimage, "rb");
    if (!f) return -1;
    static uint8_t img[64 << 20];
    size_t len = fread(img, 1, sizeof img, f);
    fclose(f);
    if (len < 0x250) return -1;
    uint32_t off, plen;
    memcpy(&off, img + 0x248, 4);
    memcpy(&plen, img + 0x24c, 4);
    uint64_t start = ((img[0x1f1] ? img[0x1f1] : 4) + 1ull) * 512 + off;
    static const uint8_t lz4_legacy[4] = {0x02, 0x21, 0x4c, 0x18};
    if (start > len || plen > len - start || plen < 8 || memcmp(img + start, lz4_legacy, 4) != 0) return -1;
    FILE *o = fopen(path, "wb");
    if (!o) return -1;
    bool ok = fwrite(img + start, 1, plen - 4, o) == plen - 4;
    return fclose(o) == 0 && ok ? 0 : -1;
}

/* `lz4 -dcq payload > /dev/null`, timed as a whole process; -1 when it failed. The tool is
 * the host's, or the one scripts/nested.sh copied under /bellhop. */
static double lz4_once(const char *payload) {
    const char *lz4 = access("/bellhop/usr/bin/lz4", X_OK) == 0 ? "/bellhop/usr/bin/lz4" : "lz4";
    uint64_t t0 = zx_clock_get_monotonic();
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, STDOUT_FILENO), dup2(null, STDERR_FILENO);
        execlp(lz4, "lz4", "-dcq", payload, (char *)NULL);
        _exit(127);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
    return (double)(zx_clock_get_monotonic() - t0) / 1e6;
}

/* The dynamic loader's own count of its startup (glibc's LD_DEBUG=statistics), in ms. */
static double loader_ms(const char *self, double ghz, char *out) {
    setenv("LD_DEBUG", "statistics", 1);
    char *const argv[] = {(char *)self, "--help", NULL};
    spawn_capture(argv, NULL, out, OUT_LEN);
    unsetenv("LD_DEBUG");
    const char *s = strstr(out, "total startup time in dynamic loader: ");
    unsigned long long cycles;
    if (!s || sscanf(s + strlen("total startup time in dynamic loader: "), "%llu", &cycles) != 1 || ghz <= 0)
        return -1;
    return (double)cycles / ghz / 1e6;
}

/* The entries of a kernel cache at XDG_CACHE_HOME `cache`: how many (removed first when `empty`). */
static unsigned cache_entries(const char *cache, bool empty) {
    char path[300];
    snprintf(path, sizeof path, "%s/bellhop/kernels", cache);
    DIR *d = opendir(path);
    if (!d) return 0;
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char file[600];
        size_t len = strlen(e->d_name);
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        if (empty && e->d_name[0] != '.') unlink(file);
        else n += len > 7 && strcmp(e->d_name + len - 7, ".kernel") == 0;
    }
    closedir(d);
    return n;
}

/* Until the background filler a cold launch started has made its entry (10 s at most): the
 * next cold launch must find the cache empty, not filled behind its back. */
static void wait_filled(const char *cache) {
    for (int i = 0; i < 5000 && cache_entries(cache, false) == 0; i++) usleep(2000);
}

/* KERNEL_CACHE_SLOTS entries of the bzImage in `cache`, made by the filler a launch starts
 * (`bellhop kernel-cache-fill`), with what a launch plans with: 1 MiB up, the header's alignment. */
static void fill_slots(const char *self, const char *cache, const char *bzimage) {
    uint8_t hdr[0x234];
    FILE *f = fopen(bzimage, "rb");
    size_t got = f ? fread(hdr, 1, sizeof hdr, f) : 0;
    if (f) fclose(f);
    if (got != sizeof hdr) return;
    uint32_t align;
    memcpy(&align, hdr + 0x230, 4);
    char al[16], out[512];
    snprintf(al, sizeof al, "%u", align);
    char *argv[] = {(char *)self, "kernel-cache-fill", (char *)bzimage, "1048576", al, "1", NULL};
    const char *was = getenv("XDG_CACHE_HOME");
    char *saved = was ? strdup(was) : NULL;
    setenv("XDG_CACHE_HOME", cache, 1);
    for (unsigned i = 0; i < 8 && cache_entries(cache, false) < 8; i++) spawn_capture(argv, NULL, out, sizeof out);
    if (saved) setenv("XDG_CACHE_HOME", saved, 1);
    else unsetenv("XDG_CACHE_HOME");
    free(saved);
}

static void remove_cache(const char *cache) {
    char path[300];
    cache_entries(cache, true);
    snprintf(path, sizeof path, "%s/bellhop/kernels", cache);
    rmdir(path);
    snprintf(path, sizeof path, "%s/bellhop", cache);
    rmdir(path);
    rmdir(cache);
}

void bench_launch_run(const char *self, const char *tiny, unsigned rounds, bool pvm, double ghz,
                      struct bench_launch *l) {
    *l = (struct bench_launch){.lz4_ms = -1, .loader_ms = -1};
    static const char *const names[LAUNCH_KINDS] = {"KVM floor", "tiny guest", "vmlinux (PVH)", "bzImage",
                                                    "bzImage cold", "bzImage warm"};
    const char *kernels[LAUNCH_KINDS] = {tiny, tiny, "build/linux/vmlinux", "build/linux/bzImage",
                                         "build/linux/bzImage", "build/linux/bzImage"};
    char cold[64], warm[64];
    snprintf(cold, sizeof cold, "/tmp/bellhop-bench-cache-%d-cold", (int)getpid());
    snprintf(warm, sizeof warm, "/tmp/bellhop-bench-cache-%d-warm", (int)getpid());
    mkdir(cold, 0700);
    mkdir(warm, 0700);
    l->kind[0].floor = true;
    l->kind[4].cache = cold, l->kind[4].cold = true;
    l->kind[5].cache = warm;
    if (rounds > BENCH_MAX_ROUNDS) rounds = BENCH_MAX_ROUNDS;
    char *out = malloc(OUT_LEN);
    if (!out) return;
    for (unsigned i = 0; i < LAUNCH_KINDS; i++) {
        struct launch_kind *k = &l->kind[i];
        k->name = names[i];
        k->kernel = kernels[i];
        for (unsigned r = 0; r < BENCH_MAX_ROUNDS; r++) k->total_ms[r] = k->decode_ms[r] = -1;
        if (access(k->kernel, R_OK) != 0 || access(INITRD, R_OK) != 0) {
            snprintf(k->error, sizeof k->error, "%s or %s missing (make linux-files)", k->kernel, INITRD);
            continue;
        }
    }
    /* Warm: the 8 KASLR slots the cache keeps of a kernel made first, so that every timed
     * launch maps one (and starts no filler). */
    if (!l->kind[5].error[0]) fill_slots(self, warm, l->kind[5].kernel);
    /* Round by round, the kinds in turn, so that a slow moment of the host falls on all. */
    for (int r = -1; r < (int)rounds; r++) /* -1: warm-up, untimed */
        for (unsigned i = 0; i < LAUNCH_KINDS; i++)
            if (!l->kind[i].error[0]) {
                if (l->kind[i].cold) cache_entries(l->kind[i].cache, true);
                launch(self, &l->kind[i], pvm, r, out);
                if (l->kind[i].cold) wait_filled(l->kind[i].cache);
                if (r >= 0 && !l->kind[i].error[0]) l->kind[i].n++;
            }
    remove_cache(cold);
    remove_cache(warm);
    char payload[64];
    snprintf(payload, sizeof payload, "/tmp/bellhop-bench-payload-%d.lz4", (int)getpid());
    if (extract_payload("build/linux/bzImage", payload) == 0) {
        double t[BENCH_MAX_ROUNDS];
        lz4_once(payload); /* warm */
        for (unsigned r = 0; r < rounds; r++) t[r] = lz4_once(payload);
        l->lz4_ms = bench_median_ms(t, rounds);
        unlink(payload);
    }
    l->loader_ms = loader_ms(self, ghz, out);
    free(out);
}

void bench_launch_print(const struct bench_launch *l, bool as_json) {
    static const char *const key[LAUNCH_KINDS] = {"kvm_floor", "tiny", "vmlinux", "bzimage", "bzimage_cold",
                                                  "bzimage_warm"};
    if (as_json) {
        printf("\"launch\": {\"lz4_tool_ms\": %.2f, \"dynamic_loader_ms\": %.2f", l->lz4_ms, l->loader_ms);
        for (unsigned i = 0; i < LAUNCH_KINDS; i++) {
            const struct launch_kind *k = &l->kind[i];
            printf(", \"%s\": {\"launches\": %u, \"to_first_instruction_ms\": %.2f, \"decode_ms\": %.2f, "
                   "\"shared_kib\": %lu, \"phases_ms\": {", key[i], k->n, bench_median_ms(k->total_ms, k->n),
                   bench_median_ms(k->decode_ms, k->n), k->shared_kib);
            for (unsigned p = 0; p < k->nphases; p++)
                printf("%s\"%s\": %.2f", p ? ", " : "", k->phase[p], bench_median_ms(k->phase_ms[p], k->n));
            printf("}}");
        }
        printf("}, ");
        return;
    }
    printf("\nlaunch: process start to the guest's first instruction, warm page cache, 512M, the test initrd; the VM "
           "stopped once entered; medians of %u launches, the kinds in turn; the bzImage without the kernel cache, and "
           "with --kernel-cache cold (an empty cache) and warm (its cache holding 8 KASLR slots); the KVM floor: this "
           "binary exec'd alike, making the VM, its RAM, the interrupt controllers, PIT and one vCPU with its CPUID on "
           "one thread (bellhop launch-floor)\n", l->kind[1].n);
    for (unsigned i = 0; i < LAUNCH_KINDS; i++) {
        const struct launch_kind *k = &l->kind[i];
        if (k->error[0] || !k->n) {
            printf("  %-14s did not launch: %s\n", k->name, k->error[0] ? k->error : "no figure");
            continue;
        }
        printf("  %-14s %7.2f ms:", k->name, bench_median_ms(k->total_ms, k->n));
        for (unsigned p = 0; p < k->nphases; p++)
            printf("%s %s %.2f", p ? "," : "", k->phase[p], bench_median_ms(k->phase_ms[p], k->n));
        if (k->shared_kib) printf(" (%lu KiB of RAM the files' pages)", k->shared_kib);
        const struct launch_kind *f = &l->kind[0];
        if (!k->floor && f->n && !f->error[0])
            printf("; %.2fx the floor", bench_median_ms(k->total_ms, k->n) / bench_median_ms(f->total_ms, f->n));
        printf("\n");
        double dec = bench_median_ms(k->decode_ms, k->n);
        if (dec > 0) {
            printf("  %-14s decoding its payload %.2f ms", "", dec);
            if (l->lz4_ms > 0)
                printf("; the lz4 tool on the same payload (to /dev/null, a whole process) %.2f ms: %.2fx", l->lz4_ms,
                       dec / l->lz4_ms);
            printf("\n");
        }
    }
    if (l->loader_ms > 0) printf("  of exec: the dynamic loader %.2f ms (LD_DEBUG=statistics)\n", l->loader_ms);
    else printf("  of exec: no dynamic loader (bellhop is linked static-pie)\n");
}
