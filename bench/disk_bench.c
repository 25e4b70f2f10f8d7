/* A disk in process against the same disk served over vhost-user (docs/devices.md): the tiny
 * guest (cmdline "diskbench") reads its first disk at queue depth 1, 4 KiB at random places
 * then 128 KiB in order, under bellhop with --disk FILE (devices/virtio_blk.c) and with
 * --disk vhost-user=SOCKET (qemu-storage-daemon exporting the same file), in turn, in one run.
 * The guest times each phase with the TSC, which ticks at this host's rate.
 *   usage: disk_bench BELLHOP [ROUNDS] */
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
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

#define IMAGE_MIB 64

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static double tsc_ghz(void) {
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    uint64_t t0 = now_ns(), c0 = (uint64_t)hi << 32 | lo;
    while (now_ns() - t0 < 50000000u) {
    }
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (double)(((uint64_t)hi << 32 | lo) - c0) / (double)(now_ns() - t0);
}

/* One guest run: IOPS of the random reads and MB/s of the sequential ones; false on failure. */
static bool run(char *const argv[], const char *out, double ghz, double *iops, double *mbs) {
    pid_t pid = spawn_to(argv, out);
    int st;
    waitpid(pid, &st, 0);
    FILE *f = fopen(out, "r");
    char line[256];
    unsigned long long ops = 0, rc = 0, bytes = 0, sc = 0;
    unsigned bad1 = 1, bad2 = 1;
    while (f && fgets(line, sizeof line, f)) {
        sscanf(line, "diskbench randread-4k %llu ops in %llu cycles, %u failed", &ops, &rc, &bad1);
        sscanf(line, "diskbench seqread-128k %llu bytes in %llu cycles, %u failed", &bytes, &sc, &bad2);
    }
    if (f) fclose(f);
    if (!ops || !rc || !bytes || !sc || bad1 || bad2) return false;
    *iops = (double)ops / ((double)rc / ghz / 1e9);
    *mbs = (double)bytes / 1048576.0 / ((double)sc / ghz / 1e9);
    return true;
}

int main(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "usage: disk_bench BELLHOP [ROUNDS]\n"), 2;
    char *bellhop = argv[1];
    int rounds = argc > 2 ? atoi(argv[2]) : 3;
    if (rounds < 1 || rounds > 20) rounds = 3;
    const char *qsd = access("/bellhop/usr/bin/qemu-storage-daemon", X_OK) == 0 ? "/bellhop/usr/bin/qemu-storage-daemon"
                                                                                 : "/usr/bin/qemu-storage-daemon";
    if (access(qsd, X_OK) != 0) return printf("disk: not measured (no qemu-storage-daemon)\n"), 0;
    char dir[] = "/tmp/bellhop-disk-bench.XXXXXX";
    if (!mkdtemp(dir)) return perror("mkdtemp"), 1;
    char img[PATH_MAX], sock[PATH_MAX], out[PATH_MAX], guest[PATH_MAX], bindir[PATH_MAX], disk_arg[PATH_MAX + 20],
        blockdev[PATH_MAX + 64], export_arg[PATH_MAX + 128];
    snprintf(img, sizeof img, "%s/disk.img", dir);
    snprintf(sock, sizeof sock, "%s/blk.sock", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(bindir, sizeof bindir, "%s", bellhop);
    snprintf(guest, sizeof guest, "%s/guest/guest.elf", dirname(bindir));
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
    double ghz = tsc_ghz(), in_iops[20], in_mbs[20], vu_iops[20], vu_mbs[20];
    int status = 0;
    for (int r = 0; r < rounds && status == 0; r++) {
        char *in_process[] = {bellhop, "run", "--kernel", guest, "--disk", img, "--cmdline", "diskbench", NULL};
        if (!run(in_process, out, ghz, &in_iops[r], &in_mbs[r])) status = 1;
        unlink(sock);
        pid_t d = spawn_to((char *[]){(char *)qsd, "--blockdev", blockdev, "--blockdev", "driver=raw,node-name=d,file=f",
                                   "--export", export_arg, NULL},
                        NULL);
        struct stat sb;
        for (int i = 0; i < 500 && stat(sock, &sb) != 0; i++) usleep(10000);
        snprintf(disk_arg, sizeof disk_arg, "vhost-user=%s", sock);
        char *vhost[] = {bellhop, "run", "--kernel", guest, "--disk", disk_arg, "--cmdline", "diskbench", NULL};
        if (status == 0 && !run(vhost, out, ghz, &vu_iops[r], &vu_mbs[r])) status = 1;
        kill(d, SIGTERM);
        waitpid(d, NULL, 0);
    }
    if (status == 0) {
        double ii = median(in_iops, rounds), im = median(in_mbs, rounds), vi = median(vu_iops, rounds),
               vm = median(vu_mbs, rounds);
        printf("disk, the tiny guest at queue depth 1 on a %d MiB image, median of %d:\n", IMAGE_MIB, rounds);
        printf("  4 KiB random reads:     in process %8.0f IOPS, vhost-user-blk (qemu-storage-daemon) %8.0f IOPS, "
               "ratio %.2fx\n", ii, vi, vi / ii);
        printf("  128 KiB sequential:     in process %8.1f MB/s, vhost-user-blk (qemu-storage-daemon) %8.1f MB/s, "
               "ratio %.2fx\n", im, vm, vm / im);
    } else {
        printf("disk: not measured (a guest run failed; no usable /dev/kvm here?)\n");
    }
    char cmd[PATH_MAX];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) status = 1;
    return status;
}
