/* The control plane's overhead, two figures (docs/api.md):
 *   - from exec to the API socket accepting: wall time and the CPU time bellhop spent
 *     (Firecracker's specification: at most 8 CPU ms), against `bellhop --help` (exec, the
 *     dynamic loader, main and exit) measured in the same run;
 *   - from InstanceStart to the guest's first instruction (bellhop --boot-markers' "guest
 *     entered", which the API counts from InstanceStart), against the same guest booted from
 *     the command line, counted from exec. Needs a usable /dev/kvm.
 *   usage: api_bench BELLHOP [ROUNDS] */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "bench/bench_util.h"

/* CPU time of every thread of pid so far, from schedstat (nanoseconds). */
static double cpu_ms(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    double total = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char p[384];
        snprintf(p, sizeof p, "/proc/%d/task/%s/schedstat", pid, e->d_name);
        FILE *f = fopen(p, "r");
        unsigned long long ns;
        if (f && fscanf(f, "%llu", &ns) == 1) total += (double)ns / 1e6;
        if (f) fclose(f);
    }
    if (d) closedir(d);
    return total;
}

static pid_t spawn(char *const argv[], int out_fd) {
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(out_fd >= 0 ? out_fd : null, 1);
        dup2(out_fd >= 0 ? out_fd : null, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* "bellhop: guest entered at 12.345 ms" in the file, or -1. */
static double guest_entered(const char *file, double wait_ms) {
    double ms;
    return find_line(file, "bellhop: guest entered at %lf ms", &ms, wait_ms) ? ms : -1;
}

int main(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "usage: api_bench BELLHOP [ROUNDS]\n"), 2;
    char *bellhop = argv[1];
    int rounds = argc > 2 ? atoi(argv[2]) : 15;
    if (rounds < 1 || rounds > 1000) rounds = 15;
    char dir[] = "/tmp/bellhop-api-bench.XXXXXX";
    if (!mkdtemp(dir)) return perror("mkdtemp"), 1;
    char sock[PATH_MAX], out[PATH_MAX], guest[PATH_MAX], bindir[PATH_MAX];
    snprintf(sock, sizeof sock, "%s/api.sock", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(bindir, sizeof bindir, "%s", bellhop);
    snprintf(guest, sizeof guest, "%s/guest/guest.elf", dirname(bindir));
    double *wall = calloc((size_t)rounds, sizeof *wall), *cpu = calloc((size_t)rounds, sizeof *cpu),
           *help = calloc((size_t)rounds, sizeof *help), *api = calloc((size_t)rounds, sizeof *api),
           *cli = calloc((size_t)rounds, sizeof *cli);
    for (int r = 0; r < rounds; r++) {
        double t0 = now_ms();
        pid_t pid = spawn((char *[]){bellhop, "--help", NULL}, -1);
        waitpid(pid, NULL, 0);
        help[r] = now_ms() - t0;
        unlink(sock);
        t0 = now_ms();
        pid = spawn((char *[]){bellhop, "run", "--api-sock", sock, NULL}, -1);
        int fd;
        while ((fd = api_connect(sock)) < 0 && now_ms() - t0 < 5000) usleep(20);
        wall[r] = now_ms() - t0;
        cpu[r] = cpu_ms(pid);
        if (fd >= 0) close(fd);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    double h = median(help, rounds), w = median(wall, rounds), c = median(cpu, rounds);
    printf("api: exec to the socket accepting, median of %d: %.2f ms wall, %.2f ms CPU (bellhop --help: %.2f ms; "
           "ratio %.2fx)\n", rounds, w, c, h, w / h);
    int kvm = 0;
    for (int r = 0; r < rounds; r++) {
        unlink(sock);
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        pid_t pid = spawn((char *[]){bellhop, "run", "--api-sock", sock, "--boot-markers", NULL}, o);
        close(o);
        int fd = -1;
        double t0 = now_ms();
        while ((fd = api_connect(sock)) < 0 && now_ms() - t0 < 5000) usleep(20);
        if (fd < 0) break;
        char body[PATH_MAX + 64];
        snprintf(body, sizeof body, "{\"kernel_image_path\": \"%s\", \"boot_args\": \"exit=0\"}", guest);
        api_request(fd, "PUT", "/boot-source", body);
        close(fd);
        if ((fd = api_connect(sock)) < 0) break;
        int started = api_request(fd, "PUT", "/actions", "{\"action_type\": \"InstanceStart\"}");
        close(fd);
        api[r] = started == 204 ? guest_entered(out, 10000) : -1;
        if (api[r] < 0) kill(pid, SIGKILL); /* not started: it would wait for a configuration */
        waitpid(pid, NULL, 0);
        o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        pid = spawn((char *[]){bellhop, "run", "--boot-markers", "--cmdline", "exit=0", NULL}, o);
        close(o);
        waitpid(pid, NULL, 0);
        cli[r] = guest_entered(out, 0);
        if (api[r] < 0 || cli[r] < 0) break;
        kvm++;
    }
    if (kvm == rounds) {
        double a = median(api, rounds), l = median(cli, rounds);
        printf("api: InstanceStart to the guest's first instruction, median of %d: %.2f ms (the command line, exec "
               "to it: %.2f ms; ratio %.2fx)\n", rounds, a, l, a / l);
    } else {
        printf("api: InstanceStart to the guest's first instruction: not measured (no usable /dev/kvm here?)\n");
    }
    char cmd[PATH_MAX];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
