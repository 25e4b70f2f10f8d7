/* virtio-blk under load, one image file, one run: the tiny guest (cmdline "diskbench") drives
 * its first disk at queue depth 1 and 32 (4 KiB random reads, 4 KiB random writes, 128 KiB
 * sequential reads) under
 *   - bellhop --disk FILE           (its default: io_uring, or synchronous for a file in tmpfs)
 *   - bellhop --disk FILE,async     (io_uring, whatever the file)
 *   - bellhop --disk FILE,sync      (the synchronous path: the baseline io_uring replaced)
 *   - QEMU microvm's virtio-blk-device on the same file (QEMU's defaults)
 *   - bellhop --disk vhost-user=S   (qemu-storage-daemon exporting the same file)
 * in turn, and the host itself runs the same pattern on the file through io_uring: the limit.
 * The guest times with the TSC, which ticks at this host's rate. IOPS, MB/s, p50/p99 latency
 * per configuration; ratios to QEMU and to the host.
 *   usage: disk_bench BELLHOP [ROUNDS] */
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <liburing.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "firmware/fdt.h"
#include "bench/bellhop_bench/bench.h"

#define IMAGE_MIB 64
#define MAX_ROUNDS 9
#define DEPTH 32

static const struct phase {
    const char *name;
    bool write, sequential;
    unsigned bytes, depth, ops;
} phases[] = {
    {"randread-4k", false, false, 4096, 1, 2000},    {"randread-4k", false, false, 4096, DEPTH, 4000},
    {"randwrite-4k", true, false, 4096, 1, 2000},    {"randwrite-4k", true, false, 4096, DEPTH, 4000},
    {"seqread-128k", false, true, 128 << 10, 1, 256}, {"seqread-128k", false, true, 128 << 10, DEPTH, 512},
};
#define NPHASES (sizeof phases / sizeof phases[0])

enum { BELLHOP, BELLHOP_ASYNC, BELLHOP_SYNC, QEMU, VHOST_USER, HOST, NENGINES };
static const char *const engine_names[NENGINES] = {"bellhop",      "bellhop,async",    "bellhop,sync",
                                                   "QEMU microvm", "vhost-user (qsd)", "host io_uring"};

struct result {
    double iops, mbs, p50_us, p99_us;
};
static struct result results[NENGINES][NPHASES][MAX_ROUNDS];
static bool measured[NENGINES];


/* One guest run (argv writes its console to out): every phase's figures; false on failure. */
static bool run_guest(char *const argv[], const char *out, double ghz, int engine, int round) {
    pid_t pid = spawn_to(argv, out);
    int st;
    waitpid(pid, &st, 0);
    FILE *f = fopen(out, "r");
    char line[512];
    unsigned found = 0;
    while (f && fgets(line, sizeof line, f)) {
        char name[32];
        unsigned depth, ops, bad;
        unsigned long long bytes, cycles, p50, p99;
        if (sscanf(line, "diskbench %31s qd%u: %u ops %llu bytes in %llu cycles, p50 %llu p99 %llu cycles, %u failed",
                   name, &depth, &ops, &bytes, &cycles, &p50, &p99, &bad) != 8 || bad || !cycles)
            continue;
        for (unsigned i = 0; i < NPHASES; i++) {
            if (strcmp(name, phases[i].name) != 0 || depth != phases[i].depth) continue;
            double s = (double)cycles / ghz / 1e9;
            results[engine][i][round] = (struct result){ops / s, (double)bytes / 1e6 / s, (double)p50 / ghz / 1e3,
                                                        (double)p99 / ghz / 1e3};
            found |= 1u << i;
        }
    }
    if (f) fclose(f);
    if (found != (1u << NPHASES) - 1) {
        fprintf(stderr, "disk_bench: %s: %d phases of %zu in %s\n", engine_names[engine], __builtin_popcount(found),
                NPHASES, out);
        return false;
    }
    return true;
}

/* The host's own limit: the same pattern on the file through an io_uring of DEPTH. */
static bool run_host(const char *img, int round) {
    int fd = open(img, O_RDWR);
    struct io_uring ring;
    if (fd < 0 || io_uring_queue_init(DEPTH, &ring, 0) < 0) return false;
    static uint8_t bufs[DEPTH][128 << 10] __attribute__((aligned(4096)));
    static uint64_t lat[4096];
    off_t size = lseek(fd, 0, SEEK_END);
    bool ok = true;
    for (unsigned i = 0; i < NPHASES && ok; i++) {
        const struct phase *p = &phases[i];
        uint64_t blocks = (uint64_t)size / p->bytes, seed = 12345, next = 0, started[DEPTH] = {0};
        unsigned posted = 0, done = 0;
        uint64_t t0 = zx_clock_get_monotonic();
        while (done < p->ops && ok) {
            for (unsigned slot = 0; posted < p->ops && posted - done < p->depth; posted++) {
                while (started[slot]) slot++;
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                uint64_t at = (p->sequential ? next++ % blocks : (seed >> 33) % blocks) * p->bytes;
                struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
                if (p->write) io_uring_prep_write(sqe, fd, bufs[slot], p->bytes, at);
                else io_uring_prep_read(sqe, fd, bufs[slot], p->bytes, at);
                io_uring_sqe_set_data64(sqe, slot);
                started[slot] = zx_clock_get_monotonic();
            }
            io_uring_submit(&ring);
            struct io_uring_cqe *cqe;
            if (io_uring_wait_cqe(&ring, &cqe) < 0 || cqe->res != (int)p->bytes) {
                ok = false;
                break;
            }
            unsigned slot = (unsigned)io_uring_cqe_get_data64(cqe);
            io_uring_cqe_seen(&ring, cqe);
            if (done < 4096) lat[done] = zx_clock_get_monotonic() - started[slot];
            started[slot] = 0;
            done++;
        }
        double s = (double)(zx_clock_get_monotonic() - t0) / 1e9;
        unsigned n = done < 4096 ? done : 4096;
        qsort(lat, n, sizeof *lat, cmp_u64);
        results[HOST][i][round] = (struct result){done / s, (double)done * p->bytes / 1e6 / s, (double)lat[n / 2] / 1e3,
                                                  (double)lat[n * 99 / 100] / 1e3};
    }
    io_uring_queue_exit(&ring);
    close(fd);
    return ok;
}

static struct result median_of(int engine, unsigned phase, int rounds) {
    double v[4][MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
        const struct result *x = &results[engine][phase][r];
        v[0][r] = x->iops, v[1][r] = x->mbs, v[2][r] = x->p50_us, v[3][r] = x->p99_us;
    }
    return (struct result){median(v[0], rounds), median(v[1], rounds), median(v[2], rounds), median(v[3], rounds)};
}

static void report(int rounds) {
    printf("disk: the tiny guest's virtio-blk on a %d MiB image in the page cache, median of %d runs\n", IMAGE_MIB,
           rounds);
    printf("  %-17s", "phase");
    for (int e = 0; e < NENGINES; e++)
        if (measured[e]) printf("  %-27s", engine_names[e]);
    printf("  vs QEMU  vs host\n  %-17s", "");
    for (int e = 0; e < NENGINES; e++)
        if (measured[e]) printf("  %-27s", "IOPS    MB/s  p50/p99 us");
    printf("\n");
    for (unsigned i = 0; i < NPHASES; i++) {
        char name[32];
        snprintf(name, sizeof name, "%s qd%u", phases[i].name, phases[i].depth);
        printf("  %-17s", name);
        for (int e = 0; e < NENGINES; e++) {
            if (!measured[e]) continue;
            struct result m = median_of(e, i, rounds);
            char cell[64];
            snprintf(cell, sizeof cell, "%6.0f %7.1f %5.0f/%-5.0f", m.iops, m.mbs, m.p50_us, m.p99_us);
            printf("  %-27s", cell);
        }
        double b = median_of(BELLHOP, i, rounds).iops;
        if (measured[QEMU]) printf("  %5.2fx", b / median_of(QEMU, i, rounds).iops);
        else printf("  %6s", "-");
        if (measured[HOST]) printf("  %5.2fx", b / median_of(HOST, i, rounds).iops);
        printf("\n");
    }
    printf("  (vs QEMU: bellhop's IOPS over QEMU's; vs host: over the host's own through io_uring, the limit)\n");
}

/* QEMU microvm running the tiny guest on img; false when there is no QEMU here. */
static bool qemu_argv(const char *guest, const char *img, const char *dir, char **argv, size_t n) {
    static char fw[PATH_MAX], dtb_path[PATH_MAX], drive[PATH_MAX + 64];
    const char *qemu = bench_qemu_path(fw, sizeof fw);
    if (!qemu) return false;
    struct fdt_machine m;
    fdt_microvm_layout(&m, 128u << 20, "diskbench");
    static char dtb[1 << 16];
    int size = fdt_build(&m, dtb, sizeof dtb);
    snprintf(dtb_path, sizeof dtb_path, "%s/microvm.dtb", dir);
    int fd = open(dtb_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (size <= 0 || fd < 0 || write(fd, dtb, (size_t)size) != size) return false;
    close(fd);
    snprintf(drive, sizeof drive, "id=d0,file=%s,format=raw,if=none", img);
    const char *a[] = {qemu, "-L", fw, "-M", "microvm,acpi=off,pic=off,pit=off,rtc=off,ioapic2=off,auto-kernel-cmdline=off",
                       "-accel", "kvm", "-cpu", bench_qemu_cpu(), "-m", "128", "-nodefaults", "-no-user-config",
                       "-display", "none", "-serial", "stdio", "-kernel", guest, "-initrd", dtb_path, "-append",
                       "diskbench", "-global", "virtio-mmio.force-legacy=false", "-drive", drive,
                       "-device", "virtio-blk-device,drive=d0", "-device", "isa-debug-exit,iobase=0xf4,iosize=1", NULL};
    if (sizeof a / sizeof a[0] > n) return false;
    memcpy(argv, a, sizeof a);
    return true;
}

int main(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "usage: disk_bench BELLHOP [ROUNDS]\n"), 2;
    char *bellhop = argv[1];
    int rounds = argc > 2 ? atoi(argv[2]) : 3;
    if (rounds < 1 || rounds > MAX_ROUNDS) rounds = 3;
    const char *qsd = access("/bellhop/usr/bin/qemu-storage-daemon", X_OK) == 0 ? "/bellhop/usr/bin/qemu-storage-daemon"
                                                                                 : "/usr/bin/qemu-storage-daemon";
    char dir[] = "/tmp/bellhop-disk-bench.XXXXXX";
    if (!mkdtemp(dir)) return perror("mkdtemp"), 1;
    char img[PATH_MAX], sock[PATH_MAX], out[PATH_MAX], guest[PATH_MAX], bindir[PATH_MAX], sync_arg[PATH_MAX + 8],
        async_arg[PATH_MAX + 8],
        vhost_arg[PATH_MAX + 20], blockdev[PATH_MAX + 64], export_arg[PATH_MAX + 128];
    snprintf(img, sizeof img, "%s/disk.img", dir);
    snprintf(sock, sizeof sock, "%s/blk.sock", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(bindir, sizeof bindir, "%s", bellhop);
    snprintf(guest, sizeof guest, "%s/guest/guest.elf", dirname(bindir));
    snprintf(sync_arg, sizeof sync_arg, "%s,sync", img);
    snprintf(async_arg, sizeof async_arg, "%s,async", img);
    snprintf(vhost_arg, sizeof vhost_arg, "vhost-user=%s", sock);
    /* A disk of random bytes (no holes: every read is a read) */
    int fd = open(img, O_WRONLY | O_CREAT | O_TRUNC, 0644), rnd = open("/dev/urandom", O_RDONLY);
    static char block[1 << 20];
    for (int i = 0; i < IMAGE_MIB && fd >= 0 && rnd >= 0; i++)
        if (read(rnd, block, sizeof block) != (ssize_t)sizeof block || write(fd, block, sizeof block) != (ssize_t)sizeof block)
            return perror("disk image"), 1;
    close(fd), close(rnd);
    snprintf(blockdev, sizeof blockdev, "driver=file,node-name=f,filename=%s", img);
    snprintf(export_arg, sizeof export_arg,
             "type=vhost-user-blk,id=e,addr.type=unix,addr.path=%s,node-name=d,writable=on", sock);
    char *qemu[40];
    bool have_qemu = qemu_argv(guest, img, dir, qemu, sizeof qemu / sizeof qemu[0]);
    bool have_qsd = access(qsd, X_OK) == 0;
    double ghz = bench_tsc_ghz();
    int status = 0;
    measured[BELLHOP] = measured[BELLHOP_ASYNC] = measured[BELLHOP_SYNC] = measured[HOST] = true;
    measured[QEMU] = have_qemu, measured[VHOST_USER] = have_qsd;
    for (int r = 0; r < rounds && status == 0; r++) {
        char *in_process[] = {bellhop, "run", "--kernel", guest, "--disk", img, "--cmdline", "diskbench", NULL};
        char *sync[] = {bellhop, "run", "--kernel", guest, "--disk", sync_arg, "--cmdline", "diskbench", NULL};
        char *async[] = {bellhop, "run", "--kernel", guest, "--disk", async_arg, "--cmdline", "diskbench", NULL};
        if (!run_guest(in_process, out, ghz, BELLHOP, r) || !run_guest(async, out, ghz, BELLHOP_ASYNC, r) ||
            !run_guest(sync, out, ghz, BELLHOP_SYNC, r))
            status = 1;
        if (status == 0 && have_qemu && !run_guest(qemu, out, ghz, QEMU, r)) status = 1;
        if (status == 0 && have_qsd) {
            unlink(sock);
            pid_t d = spawn_to((char *[]){(char *)qsd, "--blockdev", blockdev, "--blockdev",
                                          "driver=raw,node-name=d,file=f", "--export", export_arg, NULL},
                               NULL);
            struct stat sb;
            for (int i = 0; i < 500 && stat(sock, &sb) != 0; i++) usleep(10000);
            char *vhost[] = {bellhop, "run", "--kernel", guest, "--disk", vhost_arg, "--cmdline", "diskbench", NULL};
            if (!run_guest(vhost, out, ghz, VHOST_USER, r)) status = 1;
            kill(d, SIGTERM);
            waitpid(d, NULL, 0);
        }
        if (status == 0 && !run_host(img, r)) status = 1;
    }
    if (status == 0) report(rounds);
    else printf("disk: not measured (a guest run failed; no usable /dev/kvm here?)\n");
    char cmd[PATH_MAX];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) status = 1;
    return status;
}
