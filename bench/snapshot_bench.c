/* Snapshots as a product figure (docs/snapshots.md), for tiny guests of 128 MiB to 4 GiB
 * (cmdline "count", virtio-rng), each round in this order:
 *   - a fresh boot through the API: InstanceStart to the guest's first instruction (bellhop
 *     --boot-markers' "guest entered", which the API counts from the request);
 *   - once it counts, PATCH /vm Paused, then PUT /snapshot/create: the request's time;
 *   - PUT /snapshot/load on a new bellhop: the load request to the guest's first instruction;
 *   - bellhop run --restore: exec to the guest's first instruction.
 * Then, on the last round's snapshot, PUT /snapshot/load through the Uffd backend, the tests'
 * page-fault handler (tests/lib/uffd_handler.h) serving the memory file from a child process,
 * on demand and all at once: the load request to the guest's first instruction.
 * Then Diff snapshots: a 1 GiB guest with track_dirty_pages that writes 1% of its RAM between
 * two snapshots, snapshot/create Full and then Diff.
 * Then what lazy memory costs: touching each page of the memory file's private mapping, read
 * then written, beside anonymous memory's first touch, in this process. Needs a usable
 * /dev/kvm (make bench runs it in the nested KVM host when there is none).
 *   usage: snapshot_bench BELLHOP [ROUNDS] */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "bench/bench_util.h"
#include "tests/lib/uffd_handler.h"

/* One request on a connection of its own (the socket may not be there yet: up to 5 s). */
static int request(const char *sock, const char *method, const char *path, const char *body) {
    int fd = -1;
    for (double t0 = now_ms(); (fd = api_connect(sock)) < 0 && now_ms() - t0 < 5000;) usleep(200);
    if (fd < 0) return -1;
    int st = api_request(fd, method, path, body);
    close(fd);
    return st;
}

static void stop(pid_t pid) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* The setup phases --boot-markers gave with "guest entered" (after "setup, ms: "). */
static void phases(const char *file, char *buf, size_t len) {
    FILE *f = fopen(file, "r");
    char line[512];
    buf[0] = 0;
    while (f && fgets(line, sizeof line, f)) {
        char *p = strstr(line, "(setup, ms: ");
        if (strncmp(line, "bellhop: guest entered at ", 26) == 0 && p) {
            snprintf(buf, len, "%s", p + 12);
            buf[strcspn(buf, ")\n")] = 0;
            break;
        }
    }
    if (f) fclose(f);
}

/* What first touching each page costs, in ns: anonymous memory, and the file's private
 * mapping read then written (the restored guest's first read and first write of a page). */
static void lazy_memory(const char *mem_file) {
    int fd = open(mem_file, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) return;
    size_t len = (size_t)st.st_size, pages = len / 4096;
    volatile uint8_t sink = 0;
    uint8_t *anon = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    uint8_t *file = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
    if (anon == MAP_FAILED || file == MAP_FAILED) return;
    double t0 = now_ms();
    for (size_t i = 0; i < pages; i++) anon[i * 4096] = 1;
    double a = now_ms() - t0;
    t0 = now_ms();
    for (size_t i = 0; i < pages; i++) sink ^= file[i * 4096];
    double r = now_ms() - t0;
    t0 = now_ms();
    for (size_t i = 0; i < pages; i++) file[i * 4096] = 1;
    double w = now_ms() - t0;
    (void)sink;
    /* and the memfd guest memory becomes when a vhost-user device shares it */
    int mfd = memfd_create("bench", MFD_CLOEXEC);
    uint8_t *shared = mfd >= 0 && ftruncate(mfd, (off_t)len) == 0
                          ? mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, mfd, 0)
                          : MAP_FAILED;
    double m = -1;
    if (shared != MAP_FAILED) {
        t0 = now_ms();
        for (size_t i = 0; i < pages; i++) shared[i * 4096] = 1;
        m = now_ms() - t0;
        munmap(shared, len);
    }
    if (mfd >= 0) close(mfd);
    printf("snapshot: lazy memory, per 4 KiB page first touched (%zu pages, the file in the page cache): "
           "read %.0f ns, then written %.0f ns; fresh anonymous memory written %.0f ns; memfd shared memory "
           "(vhost-user) written %.0f ns\n",
           pages, r * 1e6 / (double)pages, w * 1e6 / (double)pages, a * 1e6 / (double)pages, m * 1e6 / (double)pages);
    munmap(anon, len);
    munmap(file, len);
    close(fd);
}

/* The handler in a child, serving one VMM: its pid, and the read end of a pipe its counts come
 * back on when it is done; -1 when it could not start. */
static pid_t start_handler(const char *sock, const char *mem, enum uffd_serve_mode mode, int *counts_fd) {
    int lfd = uffd_handler_listen(sock), p[2];
    if (lfd < 0 || pipe2(p, O_CLOEXEC) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        struct uffd_handler_options o = {.mode = mode, .timeout_ms = 30000};
        struct uffd_handler_counts c = {0};
        char err[300];
        int rc = uffd_handler_serve(lfd, mem, &o, &c, err, sizeof err);
        if (rc != 0) fprintf(stderr, "snapshot_bench: the page-fault handler: %s\n", err);
        _exit(rc == 0 && write(p[1], &c, sizeof c) == sizeof c ? 0 : 1);
    }
    close(lfd);
    close(p[1]);
    *counts_fd = p[0];
    return pid;
}

/* One PUT /snapshot/load through the Uffd backend: the load request to the guest's first
 * instruction in *ms, the pages the handler had copied once the guest counted in *pages, and
 * how long copying them all took it (all at once) in *copy_ms. False when the round failed. */
static bool uffd_load(char *bellhop, const char *dir, const char *state, const char *mem, enum uffd_serve_mode mode,
                      double *ms, double *pages, double *copy_ms) {
    char hsock[PATH_MAX], sock[PATH_MAX], out[PATH_MAX], body[PATH_MAX * 2 + 200];
    snprintf(hsock, sizeof hsock, "%s/uffd.sock", dir);
    snprintf(sock, sizeof sock, "%s/api.sock", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    int counts_fd;
    pid_t handler = start_handler(hsock, mem, mode, &counts_fd);
    if (handler < 0) return false;
    unlink(sock);
    pid_t pid = spawn_to((char *[]){bellhop, "run", "--api-sock", sock, "--boot-markers", NULL}, out);
    snprintf(body, sizeof body, "{\"snapshot_path\": \"%s\", \"mem_backend\": {\"backend_type\": \"Uffd\", "
             "\"backend_path\": \"%s\"}, \"resume_vm\": true}", state, hsock);
    double count;
    bool ok = request(sock, "PUT", "/snapshot/load", body) == 204 &&
              find_line(out, "bellhop: guest entered at %lf ms", ms, 10000) && find_line(out, "count %lf:", &count, 30000);
    stop(pid);
    struct uffd_handler_counts c = {0};
    ok = read(counts_fd, &c, sizeof c) == sizeof c && ok;
    close(counts_fd);
    int st;
    waitpid(handler, &st, 0);
    *pages = (double)c.pages_copied;
    *copy_ms = (double)c.copy_all_ns / 1e6;
    return ok && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* Restores through the Uffd backend, on demand and all at once, `rounds` times each: one line.
 * All at once, the guest's first instruction races the handler's copy: what set-up touches
 * (low in RAM, copied first) may be there before set-up asks, and the guest then waits only for
 * the pages it touches that are not yet copied. */
static void uffd_figures(char *bellhop, const char *dir, const char *state, const char *mem, unsigned mib, int rounds) {
    static const char *const kinds[] = {"on demand", "all at once"};
    double ms[2][100], pages[2][100], copy[2][100];
    for (int k = 0; k < 2; k++)
        for (int r = 0; r < rounds; r++)
            if (!uffd_load(bellhop, dir, state, mem, k ? UFFD_SERVE_ALL_AT_ONCE : UFFD_SERVE_ON_DEMAND, &ms[k][r],
                           &pages[k][r], &copy[k][r])) {
                printf("  through a page-fault handler (Uffd): not measured (%s, round %d failed: no userfaultfd here?)\n",
                       kinds[k], r + 1);
                return;
            }
    printf("  through a page-fault handler (Uffd: the tests' handler serving the memory file), median of %d: restore "
           "%.2f ms on demand (%.0f of %u pages copied by the guest's first count); all at once %.2f ms, the handler "
           "copying all %u MiB in %.1f ms\n", rounds, median(ms[0], rounds), median(pages[0], rounds), mib * 256,
           median(ms[1], rounds), mib, median(copy[1], rounds));
    fflush(stdout);
}

/* The highest count the guest printed in file so far (0: none). */
static unsigned last_count(const char *file) {
    FILE *f = fopen(file, "r");
    char line[512];
    unsigned n = 0, c;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "count %u:", &c) == 1 && c > n) n = c;
    if (f) fclose(f);
    return n;
}

static bool count_reaches(const char *file, unsigned n, double wait_ms) {
    for (double until = now_ms() + wait_ms; last_count(file) < n; usleep(1000))
        if (now_ms() >= until) return false;
    return true;
}

/* A timed PUT /snapshot/create of `type` into dir/NAME.state and .mem, the VM paused: its time in
 * *ms and the memory file's KiB on disk in *kib. */
static bool timed_create(const char *sock, const char *dir, const char *type, const char *name, double *ms, double *kib) {
    char body[PATH_MAX * 2 + 200], mem[PATH_MAX];
    snprintf(mem, sizeof mem, "%s/%s.mem", dir, name);
    snprintf(body, sizeof body, "{\"snapshot_type\": \"%s\", \"snapshot_path\": \"%s/%s.state\", \"mem_file_path\": \"%s\"}",
             type, dir, name, mem);
    if (request(sock, "PATCH", "/vm", "{\"state\": \"Paused\"}") != 204) return false;
    double t0 = now_ms();
    bool ok = request(sock, "PUT", "/snapshot/create", body) == 204;
    *ms = now_ms() - t0;
    struct stat st;
    *kib = stat(mem, &st) == 0 ? (double)st.st_blocks / 2 : 0;
    return ok;
}

/* One round of Diff snapshots: a 1 GiB guest with track_dirty_pages writing 10 MiB ("count
 * dirty=10", 1% of its RAM) before each count line; a Full snapshot once it counts, and a
 * Diff two counts after it (a whole count's writes in between). full and diff: {ms, KiB}.
 * Each into new files (the last round's removed first): cutting a file the kernel may still
 * be writing back waits for it, which is the file system's time, not the snapshot's. */
static bool diff_round(char *bellhop, const char *guest, const char *dir, double full[2], double diff[2]) {
    char sock[PATH_MAX], out[PATH_MAX], body[PATH_MAX + 100];
    snprintf(sock, sizeof sock, "%s/api.sock", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    unlink(sock);
    static const char *const files[] = {"full.state", "full.mem", "diff.state", "diff.mem"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(body, sizeof body, "%s/%s", dir, files[i]);
        unlink(body);
    }
    pid_t pid = spawn_to((char *[]){bellhop, "run", "--api-sock", sock, NULL}, out);
    snprintf(body, sizeof body, "{\"kernel_image_path\": \"%s\", \"boot_args\": \"count dirty=10\"}", guest);
    bool ok = request(sock, "PUT", "/boot-source", body) == 204 &&
              request(sock, "PUT", "/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 1024, \"track_dirty_pages\": true}") == 204 &&
              request(sock, "PUT", "/entropy", "{}") == 204 &&
              request(sock, "PUT", "/actions", "{\"action_type\": \"InstanceStart\"}") == 204 && count_reaches(out, 1, 30000) &&
              timed_create(sock, dir, "Full", "full", &full[0], &full[1]);
    unsigned at = last_count(out);
    ok = ok && request(sock, "PATCH", "/vm", "{\"state\": \"Resumed\"}") == 204 && count_reaches(out, at + 2, 30000) &&
         timed_create(sock, dir, "Diff", "diff", &diff[0], &diff[1]);
    stop(pid);
    return ok;
}

static void diff_figures(char *bellhop, const char *guest, const char *dir, int rounds) {
    double full[100], diff[100], full_kib = 0, diff_kib = 0;
    for (int r = 0; r < rounds; r++) {
        double f[2], d[2];
        if (!diff_round(bellhop, guest, dir, f, d)) {
            printf("snapshot 1024 MiB, Diff: not measured (round %d failed)\n", r + 1);
            return;
        }
        full[r] = f[0], diff[r] = d[0], full_kib = f[1], diff_kib = d[1];
    }
    printf("snapshot 1024 MiB with track_dirty_pages, the guest writing 10 MiB (1%% of its RAM) between snapshots, "
           "median of %d: snapshot/create Full %.2f ms (memory file %.0f KiB on disk), then Diff %.2f ms (%.0f KiB)\n",
           rounds, median(full, rounds), full_kib, median(diff, rounds), diff_kib);
    fflush(stdout);
}

/* Where one run keeps its files, and what it runs. */
struct bench_paths {
    char *bellhop;
    char dir[64], sock[PATH_MAX], out[PATH_MAX], guest[PATH_MAX], state[PATH_MAX], mem[PATH_MAX];
};

/* One round's figures at one size (ms) and the phases --boot-markers gave. */
struct size_round {
    double fresh, create, load, cli;
    long long state_bytes, mem_blocks;
};
struct size_phases {
    char fresh[200], load[200], cli[200];
};

/* A fresh boot through the API, counting, paused and saved Full. */
static bool boot_and_save(const struct bench_paths *p, unsigned mib, struct size_round *r, struct size_phases *ph) {
    char body[PATH_MAX * 2 + 200];
    unlink(p->sock);
    pid_t pid = spawn_to((char *[]){p->bellhop, "run", "--api-sock", (char *)p->sock, "--boot-markers", NULL}, p->out);
    snprintf(body, sizeof body, "{\"kernel_image_path\": \"%s\", \"boot_args\": \"count\"}", p->guest);
    bool ok = request(p->sock, "PUT", "/boot-source", body) == 204;
    snprintf(body, sizeof body, "{\"vcpu_count\": 1, \"mem_size_mib\": %u}", mib);
    ok = ok && request(p->sock, "PUT", "/machine-config", body) == 204;
    ok = ok && request(p->sock, "PUT", "/entropy", "{}") == 204;
    ok = ok && request(p->sock, "PUT", "/actions", "{\"action_type\": \"InstanceStart\"}") == 204;
    double count;
    ok = ok && find_line(p->out, "bellhop: guest entered at %lf ms", &r->fresh, 10000) &&
         find_line(p->out, "count %lf:", &count, 30000);
    phases(p->out, ph->fresh, sizeof ph->fresh);
    ok = ok && request(p->sock, "PATCH", "/vm", "{\"state\": \"Paused\"}") == 204;
    snprintf(body, sizeof body, "{\"snapshot_type\": \"Full\", \"snapshot_path\": \"%s\", \"mem_file_path\": \"%s\"}",
             p->state, p->mem);
    double t0 = now_ms();
    ok = ok && request(p->sock, "PUT", "/snapshot/create", body) == 204;
    r->create = now_ms() - t0;
    stop(pid);
    struct stat st;
    if (ok && stat(p->state, &st) == 0) r->state_bytes = st.st_size;
    if (ok && stat(p->mem, &st) == 0) r->mem_blocks = st.st_blocks;
    return ok;
}

/* The saved VM restored by the load request, then by --restore from exec. */
static bool restore_both_ways(const struct bench_paths *p, struct size_round *r, struct size_phases *ph) {
    char body[PATH_MAX * 2 + 200];
    unlink(p->sock);
    pid_t pid = spawn_to((char *[]){p->bellhop, "run", "--api-sock", (char *)p->sock, "--boot-markers", NULL}, p->out);
    snprintf(body, sizeof body,
             "{\"snapshot_path\": \"%s\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"%s\"}, "
             "\"resume_vm\": true}", p->state, p->mem);
    double count;
    bool ok = request(p->sock, "PUT", "/snapshot/load", body) == 204 &&
              find_line(p->out, "bellhop: guest entered at %lf ms", &r->load, 10000) &&
              find_line(p->out, "count %lf:", &count, 30000);
    stop(pid);
    phases(p->out, ph->load, sizeof ph->load);
    if (!ok) return false;
    pid = spawn_to((char *[]){p->bellhop, "run", "--boot-markers", "--restore", (char *)p->state, "--mem-file",
                              (char *)p->mem, NULL}, p->out);
    ok = find_line(p->out, "bellhop: guest entered at %lf ms", &r->cli, 10000);
    stop(pid);
    phases(p->out, ph->cli, sizeof ph->cli);
    return ok;
}

/* The figures at one size: its lines, or -1 (said) when a round failed. */
static int size_figures(const struct bench_paths *p, unsigned mib, int rounds) {
    double fresh[100], create[100], load[100], cli[100];
    struct size_phases ph = {"", "", ""};
    struct size_round r = {0};
    int done = 0;
    for (; done < rounds && boot_and_save(p, mib, &r, &ph) && restore_both_ways(p, &r, &ph); done++)
        fresh[done] = r.fresh, create[done] = r.create, load[done] = r.load, cli[done] = r.cli;
    if (done < rounds) {
        printf("snapshot %u MiB: not measured (round %d failed; %s)\n", mib, done + 1,
               mib > 1024 ? "not enough memory here?" : "no usable /dev/kvm here?");
        return -1;
    }
    double f = median(fresh, rounds), c = median(create, rounds), l = median(load, rounds), x = median(cli, rounds);
    printf("snapshot %u MiB, median of %d: restore %.2f ms from the load request to the guest's first instruction "
           "(%.2f ms from exec with --restore); a fresh boot %.2f ms from InstanceStart (ratio %.2fx); "
           "snapshot/create %.1f ms (state file %lld bytes, memory file %lld KiB on disk)\n",
           mib, rounds, l, x, f, l / f, c, r.state_bytes, r.mem_blocks / 2);
    printf("  setup phases (ms, last round): restore from the load request: %s\n"
           "                                 --restore from exec: %s\n"
           "                                 fresh boot from InstanceStart: %s\n", ph.load, ph.cli, ph.fresh);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "usage: snapshot_bench BELLHOP [ROUNDS]\n"), 2;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (rounds < 1 || rounds > 100) rounds = 5;
    static struct bench_paths p = {.dir = "/tmp/bellhop-snapshot-bench.XXXXXX"};
    p.bellhop = argv[1];
    if (!mkdtemp(p.dir)) return perror("mkdtemp"), 1;
    snprintf(p.sock, sizeof p.sock, "%s/api.sock", p.dir);
    snprintf(p.out, sizeof p.out, "%s/out", p.dir);
    snprintf(p.state, sizeof p.state, "%s/vm.state", p.dir);
    snprintf(p.mem, sizeof p.mem, "%s/vm.mem", p.dir);
    char bindir[PATH_MAX];
    snprintf(bindir, sizeof bindir, "%s", p.bellhop);
    snprintf(p.guest, sizeof p.guest, "%s/guest/guest.elf", dirname(bindir));
    /* 3 GiB: all the RAM below the 32-bit MMIO hole; 4 GiB: its last GiB above the hole, from
     * 4 GiB (RAM in two parts). The largest, where registering RAM costs most: a small host
     * may not hold them, and the rest goes on */
    static const unsigned sizes[] = {128, 1024, 3072, 4096};
    int status = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0] && status == 0; s++) {
        if (size_figures(&p, sizes[s], rounds) != 0) {
            status = sizes[s] > 1024 ? 0 : 1;
            continue;
        }
        if (sizes[s] <= 1024) uffd_figures(p.bellhop, p.dir, p.state, p.mem, sizes[s], rounds); /* all at once: 4 s a round at 3 GiB */
        if (s == 0) lazy_memory(p.mem); /* the 128 MiB guest's file (both mappings of 1 GiB may not fit a small host) */
    }
    if (status == 0) diff_figures(p.bellhop, p.guest, p.dir, rounds);
    char cmd[PATH_MAX];
    snprintf(cmd, sizeof cmd, "rm -rf %s", p.dir);
    if (system(cmd) != 0) status = 1;
    return status;
}
