/* Snapshots as a product figure (docs/snapshots.md), for a 128 MiB and a 1 GiB tiny guest
 * (cmdline "count", virtio-rng), each round in this order:
 *   - a fresh boot through the API: InstanceStart to the guest's first instruction (bellhop
 *     --boot-markers' "guest entered", which the API counts from the request);
 *   - once it counts, PATCH /vm Paused, then PUT /snapshot/create: the request's time;
 *   - PUT /snapshot/load on a new bellhop: the load request to the guest's first instruction;
 *   - bellhop run --restore: exec to the guest's first instruction.
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

int main(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "usage: snapshot_bench BELLHOP [ROUNDS]\n"), 2;
    char *bellhop = argv[1];
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (rounds < 1 || rounds > 100) rounds = 5;
    char dir[] = "/tmp/bellhop-snapshot-bench.XXXXXX";
    if (!mkdtemp(dir)) return perror("mkdtemp"), 1;
    char sock[PATH_MAX], out[PATH_MAX], guest[PATH_MAX], bindir[PATH_MAX], state[PATH_MAX], mem[PATH_MAX];
    snprintf(sock, sizeof sock, "%s/api.sock", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(state, sizeof state, "%s/vm.state", dir);
    snprintf(mem, sizeof mem, "%s/vm.mem", dir);
    snprintf(bindir, sizeof bindir, "%s", bellhop);
    snprintf(guest, sizeof guest, "%s/guest/guest.elf", dirname(bindir));
    static const unsigned sizes[] = {128, 1024};
    int status = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        double fresh[100], create[100], load[100], cli[100];
        char fresh_phases[200] = "", load_phases[200] = "", cli_phases[200] = "";
        int done = 0;
        long long state_bytes = 0, mem_blocks = 0;
        for (int r = 0; r < rounds; r++) {
            char body[PATH_MAX * 2 + 200];
            unlink(sock);
            pid_t pid = spawn_to((char *[]){bellhop, "run", "--api-sock", sock, "--boot-markers", NULL}, out);
            snprintf(body, sizeof body, "{\"kernel_image_path\": \"%s\", \"boot_args\": \"count\"}", guest);
            int ok = request(sock, "PUT", "/boot-source", body) == 204;
            snprintf(body, sizeof body, "{\"vcpu_count\": 1, \"mem_size_mib\": %u}", sizes[s]);
            ok = ok && request(sock, "PUT", "/machine-config", body) == 204;
            ok = ok && request(sock, "PUT", "/entropy", "{}") == 204;
            ok = ok && request(sock, "PUT", "/actions", "{\"action_type\": \"InstanceStart\"}") == 204;
            double count;
            ok = ok && find_line(out, "bellhop: guest entered at %lf ms", &fresh[r], 10000) &&
                 find_line(out, "count %lf:", &count, 30000);
            phases(out, fresh_phases, sizeof fresh_phases);
            ok = ok && request(sock, "PATCH", "/vm", "{\"state\": \"Paused\"}") == 204;
            snprintf(body, sizeof body, "{\"snapshot_type\": \"Full\", \"snapshot_path\": \"%s\", \"mem_file_path\": \"%s\"}",
                     state, mem);
            double t0 = now_ms();
            ok = ok && request(sock, "PUT", "/snapshot/create", body) == 204;
            create[r] = now_ms() - t0;
            stop(pid);
            if (!ok) break;
            struct stat st;
            if (stat(state, &st) == 0) state_bytes = st.st_size;
            if (stat(mem, &st) == 0) mem_blocks = st.st_blocks;
            unlink(sock);
            pid = spawn_to((char *[]){bellhop, "run", "--api-sock", sock, "--boot-markers", NULL}, out);
            snprintf(body, sizeof body,
                     "{\"snapshot_path\": \"%s\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"%s\"}, "
                     "\"resume_vm\": true}", state, mem);
            ok = request(sock, "PUT", "/snapshot/load", body) == 204 &&
                 find_line(out, "bellhop: guest entered at %lf ms", &load[r], 10000) && find_line(out, "count %lf:", &count, 30000);
            stop(pid);
            phases(out, load_phases, sizeof load_phases);
            if (!ok) break;
            pid = spawn_to((char *[]){bellhop, "run", "--boot-markers", "--restore", state, "--mem-file", mem, NULL}, out);
            ok = find_line(out, "bellhop: guest entered at %lf ms", &cli[r], 10000);
            stop(pid);
            phases(out, cli_phases, sizeof cli_phases);
            if (!ok) break;
            done++;
        }
        if (done < rounds) {
            printf("snapshot %u MiB: not measured (round %d failed; no usable /dev/kvm here?)\n", sizes[s], done + 1);
            status = 1;
            break;
        }
        double f = median(fresh, rounds), c = median(create, rounds), l = median(load, rounds), x = median(cli, rounds);
        printf("snapshot %u MiB, median of %d: restore %.2f ms from the load request to the guest's first instruction "
               "(%.2f ms from exec with --restore); a fresh boot %.2f ms from InstanceStart (ratio %.2fx); "
               "snapshot/create %.1f ms (state file %lld bytes, memory file %lld KiB on disk)\n",
               sizes[s], rounds, l, x, f, l / f, c, state_bytes, mem_blocks / 2);
        printf("  setup phases (ms, last round): restore from the load request: %s\n"
               "                                 --restore from exec: %s\n"
               "                                 fresh boot from InstanceStart: %s\n", load_phases, cli_phases, fresh_phases);
        fflush(stdout);
        if (s == 0) lazy_memory(mem); /* the 128 MiB guest's file (both mappings of 1 GiB may not fit a small host) */
    }
    char cmd[PATH_MAX];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) status = 1;
    return status;
}
