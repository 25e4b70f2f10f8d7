/* TCP between the host and a Linux guest over each network a guest can have: virtio-net on a
 * tap (bellhop --net tap), user-mode networking (bellhop --net user: libslirp in bellhop-net),
 * passt (bellhop --net passt) and, beside them, QEMU's -netdev user (libslirp inside QEMU) with
 * the same kernel, initrd and tools disk on QEMU microvm with PCIe. One boot per column. The
 * guest (cmdline bellhop.vsockbench, socat from the tools disk: tests/linux/init-acceptance.sh)
 * serves a sink (port 5101), a 64 MiB source (5102) and an echo (5103); the host reaches them
 * at the guest's tap address, or through forwards (hostfwd) on 127.0.0.1 to the address the
 * guest took by DHCP (bellhop.dhcp). Per column:
 *   - guest to host: the source's 64 MiB, from the connection to their end;
 *   - host to guest: 64 MiB written to the sink, until the guest closes after their end;
 *   - connect round trip: a fresh TCP connection to the echo and one byte there and back,
 *     p50 of CONNECTS (after CONNECT_WARM_UP unmeasured);
 *   - round trip: one byte there and back on one connection, p50 of ROUND_TRIPS (after WARM_UP);
 * and each figure's ratio to QEMU user's. Everything runs in a network namespace of the bench's
 * own (loopback up, the tap there), so its traffic stays inside; that needs root, without
 * which the tap column says why it is missing and the rest use the host's loopback. A stock
 * kernel needs full virtualization: on a PVM host, make bench runs this in the nested KVM host.
 *   usage: net_bench BELLHOP [ROUNDS]   (the medians of ROUNDS, 1 unless given, at most 5) */
#include <arpa/inet.h>
#include <errno.h>
#include <net/route.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bellhop_bench/bench.h"
#include "bench/bench_util.h"
#include "bench/tcp_xfer.h"

#define CONNECTS 200
#define CONNECT_WARM_UP 5
#define ROUND_TRIPS 1000
#define WARM_UP 20
#define MAX_ROUNDS 5
#define TAP "bhnetbench0"
#define HOST_IP "10.0.2.1"
#define GUEST_IP "10.0.2.2" /* on the tap: the guest sets it itself without bellhop.dhcp */
#define FWD_IP "127.0.0.1"
#define TEMPLATE_GW "10.0.2.254" /* the namespace's default route through the tap: see default_route */
#define FWD_PORT_BASE 20000 /* a column's forward of guest port P: BASE + 100 * column + P % 100 */
#define CONSOLE "/tmp/bellhop-net-bench.out"
#define KERNEL "build/linux/bzImage"
#define INITRD "build/linux/initrd.cpio"
#define TOOLS "build/linux/tools.sqfs"
#define CMDLINE "console=ttyS0 quiet bellhop.wait bellhop.vsockbench"

enum { TAP_NET, USER_NET, PASST_NET, QEMU_USER, NCOLUMNS };
enum { TO_HOST, TO_GUEST, CONNECT_P50, RTT_P50, NFIGURES };
static const char *const column_names[NCOLUMNS] = {"tap", "user", "passt", "QEMU user"};
static const char *const figure_names[NFIGURES] = {"guest to host, MB/s", "host to guest, MB/s",
                                                   "connect round trip p50, us", "round trip p50, us"};
static double figures[NCOLUMNS][NFIGURES][MAX_ROUNDS];

struct column {
    bool measured;
    bool failed; /* started and then broke, rather than missing here (no tap, QEMU or passt) */
    char why[256]; /* when not measured */
    double ready_s;
};
static struct column columns[NCOLUMNS];

static const char *fwd_ip(int c) { return c == TAP_NET ? GUEST_IP : FWD_IP; }

static unsigned fwd_port(int c, unsigned guest_port) {
    return c == TAP_NET ? guest_port : FWD_PORT_BASE + 100u * (unsigned)c + guest_port % 100;
}

/* passt copies the addresses and gateway of the host's default route to the guest and will not
 * start without one: in the bench's namespace that is the tap, through a gateway nobody answers
 * for (the guest's traffic goes to the forwards only). false with the reason in err. */
static bool default_route(char *err, size_t len) {
    char dev[] = TAP;
    struct rtentry rt = {.rt_flags = RTF_UP | RTF_GATEWAY, .rt_dev = dev};
    struct sockaddr_in gw = {.sin_family = AF_INET}, any = {.sin_family = AF_INET};
    inet_pton(AF_INET, TEMPLATE_GW, &gw.sin_addr);
    memcpy(&rt.rt_gateway, &gw, sizeof gw);
    memcpy(&rt.rt_dst, &any, sizeof any);
    memcpy(&rt.rt_genmask, &any, sizeof any);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    bool ok = s >= 0 && ioctl(s, SIOCADDRT, &rt) == 0;
    if (!ok) snprintf(err, len, "no default route for passt to copy: %s", strerror(errno));
    if (s >= 0) close(s);
    return ok;
}

/* Whether this process's root is the kernel's initial ramfs (mountinfo's type "rootfs"), as in
 * the nested KVM host. */
static bool root_is_rootfs(void) {
    char line[1024];
    bool found = false;
    FILE *f = fopen("/proc/self/mountinfo", "r");
    while (f && !found && fgets(line, sizeof line, f)) {
        char *sep = strstr(line, " - "), mount_point[256];
        found = sep && sscanf(line, "%*u %*u %*s %*s %255s", mount_point) == 1 && strcmp(mount_point, "/") == 0 &&
                strncmp(sep, " - rootfs ", 10) == 0;
    }
    if (f) fclose(f);
    return found;
}

/* passt confines itself with pivot_root, which the initial ramfs refuses (EINVAL): on one, this
 * process and its children move to a mount namespace of their own whose root is a copy of the
 * same tree mounted over it (switch_root's way: bound, moved onto /, chroot), the cwd kept. */
static bool leave_rootfs(char *err, size_t len) {
    char cwd[4096], dir[] = "/tmp/bellhop-net-bench-root";
    if (!root_is_rootfs()) return true;
    bool ok = getcwd(cwd, sizeof cwd) && unshare(CLONE_NEWNS) == 0 &&
              mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 && (mkdir(dir, 0700) == 0 || errno == EEXIST) &&
              mount("/", dir, NULL, MS_BIND | MS_REC, NULL) == 0 && chdir(dir) == 0 &&
              mount(dir, "/", NULL, MS_MOVE, NULL) == 0 && chroot(".") == 0 && chdir(cwd) == 0;
    if (!ok) snprintf(err, len, "no root for passt's pivot_root: %s", strerror(errno));
    return ok;
}

/* QEMU's hostfwd list for the guest's three servers, which bellhop's `user` takes too. */
static void forwards(int c, char *out, size_t len) {
    snprintf(out, len, "hostfwd=tcp:" FWD_IP ":%u-:%u,hostfwd=tcp:" FWD_IP ":%u-:%u,hostfwd=tcp:" FWD_IP ":%u-:%u",
             fwd_port(c, XFER_SINK), XFER_SINK, fwd_port(c, XFER_SOURCE), XFER_SOURCE, fwd_port(c, XFER_ECHO),
             XFER_ECHO);
}

/* The same forwards in passt's own arguments (bellhop's passt takes them as they are, one a
 * comma), IPv4 only: the namespace has no IPv6 route for passt to copy. passt started by root
 * becomes the user nobody, looked up by name unless given as a number: the nested KVM host has
 * no /etc/passwd. */
static void passt_args(char *out, size_t len) {
    snprintf(out, len, "passt,-4%s,-t," FWD_IP "/%u:%u,-t," FWD_IP "/%u:%u,-t," FWD_IP "/%u:%u",
             geteuid() == 0 ? ",--runas,65534" : "", fwd_port(PASST_NET, XFER_SINK), XFER_SINK,
             fwd_port(PASST_NET, XFER_SOURCE), XFER_SOURCE, fwd_port(PASST_NET, XFER_ECHO), XFER_ECHO);
}

static pid_t boot_bellhop(const char *bellhop, int c) {
    char net[320] = "tap=" TAP;
    if (c == USER_NET) {
        int n = snprintf(net, sizeof net, "user,");
        forwards(c, net + n, sizeof net - (size_t)n);
    } else if (c == PASST_NET) {
        passt_args(net, sizeof net);
    }
    char *argv[] = {(char *)bellhop, "run", "--kernel", KERNEL, "--initrd", INITRD, "--mem", "512M", "--cpus", "1",
                    "--disk", TOOLS ",ro", "--cmdline", c == TAP_NET ? CMDLINE : CMDLINE " bellhop.dhcp",
                    "--net", net, NULL};
    return spawn_to(argv, CONSOLE);
}

/* QEMU microvm with a PCIe bus (the initrd has virtio-pci, not virtio-mmio), the tools disk on
 * virtio-blk and -netdev user on virtio-net (no option ROM: there is no firmware to use it). */
static pid_t boot_qemu(struct column *col) {
    char dir[4096], net[320] = "user,id=n0,";
    const char *qemu = bench_qemu_path(dir, sizeof dir);
    if (!qemu) return snprintf(col->why, sizeof col->why, "no qemu-system-x86_64 with its microvm firmware here"), -1;
    forwards(QEMU_USER, net + strlen(net), sizeof net - strlen(net));
    char *argv[] = {(char *)qemu, "-L", dir, "-M", "microvm,pcie=on", "-accel", "kvm", "-cpu", (char *)bench_qemu_cpu(),
                    "-m", "512", "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
                    "-no-reboot", "-kernel", KERNEL, "-initrd", INITRD, "-append", CMDLINE " bellhop.dhcp",
                    "-drive", "id=tools,file=" TOOLS ",format=raw,if=none,readonly=on",
                    "-device", "virtio-blk-pci,drive=tools", "-netdev", net,
                    "-device", "virtio-net-pci,netdev=n0,romfile=", NULL};
    return spawn_to(argv, CONSOLE);
}

static int dial(int c, unsigned guest_port, double retry_ms) {
    char err[256];
    int fd = xfer_dial_tcp(fwd_ip(c), fwd_port(c, guest_port), retry_ms, err, sizeof err);
    if (fd < 0) fprintf(stderr, "net_bench: %s: %s\n", column_names[c], err);
    return fd;
}

/* A fresh connection to the echo and one byte there and back: microseconds, or -1. */
static double connect_round_trip(int c) {
    double t0 = now_ms();
    int fd = dial(c, XFER_ECHO, 0);
    if (fd < 0) return -1;
    double us = xfer_round_trip(fd);
    close(fd);
    return us < 0 ? -1 : (now_ms() - t0) * 1e3;
}

static bool connect_round_trips(int c, double *p50) {
    static double us[CONNECTS];
    for (int i = 0; i < CONNECT_WARM_UP; i++)
        if (connect_round_trip(c) < 0) return false;
    for (int i = 0; i < CONNECTS; i++)
        if ((us[i] = connect_round_trip(c)) < 0) return false;
    *p50 = median(us, CONNECTS);
    return true;
}

/* Until the guest's echo answers, 30 s at most. The guest says it is ready once its servers
 * have been started, not once they listen; and a forward's listener on the host accepts at
 * once, then closes the connection when the guest refuses slirp's or passt's own: only an
 * answer tells that the guest's end is there. */
static bool wait_echo(int c) {
    for (double until = now_ms() + 30000; now_ms() < until; usleep(200 * 1000)) {
        int fd = dial(c, XFER_ECHO, 30000);
        if (fd < 0) return false;
        double us = xfer_round_trip(fd);
        close(fd);
        if (us >= 0) return true;
    }
    fprintf(stderr, "net_bench: %s: the guest's echo did not answer in 30 s\n", column_names[c]);
    return false;
}

/* One round of column c's figures; false on failure (said on stderr). */
static bool measure(int c, int round, const char *who) {
    double *f[NFIGURES], mean;
    for (int i = 0; i < NFIGURES; i++) f[i] = &figures[c][i][round];
    int fd = dial(c, XFER_SOURCE, 30000);
    /* Debian 12's passt leaves a connection from the host unfinished on the guest's side (the
     * guest sends nothing, and passt ends it after 24 s) until the host sends something. The
     * host's end of stream does it, for every column alike; not a byte: the source never reads
     * it, and a socket closed with unread data sends a reset, which cuts off the data still on
     * its way (slirp's). */
    if (fd >= 0 && shutdown(fd, SHUT_WR) != 0) fprintf(stderr, "%s: to the source: %s\n", who, strerror(errno));
    if (fd < 0 || (*f[TO_HOST] = xfer_to_host(fd, who)) < 0) return false;
    if ((fd = dial(c, XFER_SINK, 30000)) < 0 || (*f[TO_GUEST] = xfer_to_guest(fd, who)) < 0) return false;
    if (!connect_round_trips(c, f[CONNECT_P50])) return false;
    return (fd = dial(c, XFER_ECHO, 30000)) >= 0 && xfer_round_trips(fd, ROUND_TRIPS, WARM_UP, f[RTT_P50], &mean, who);
}

/* The console's last line that says something, into out ("" if none). */
static void last_line(const char *file, char *out, size_t len) {
    char line[512];
    FILE *f = fopen(file, "r");
    out[0] = 0;
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        size_t n = strlen(line) < len ? strlen(line) : len - 1;
        if (n) memcpy(out, line, n), out[n] = 0;
    }
    if (f) fclose(f);
}

/* Whether bellhop's `run --help` offers --net passt (built by then), through CONSOLE. */
static bool has_passt(const char *bellhop) {
    char *argv[] = {(char *)bellhop, "run", "--help", NULL}, line[512];
    pid_t pid = spawn_to(argv, CONSOLE);
    if (pid <= 0) return false;
    waitpid(pid, NULL, 0);
    bool found = false;
    FILE *f = fopen(CONSOLE, "r");
    while (f && !found && fgets(line, sizeof line, f)) found = strstr(line, "--net passt") != NULL;
    if (f) fclose(f);
    return found;
}

/* Column c from its boot to its VMM's end; passt's only if bellhop has it. */
static void run_column(const char *bellhop, int c, int rounds) {
    struct column *col = &columns[c];
    char who[64];
    snprintf(who, sizeof who, "net_bench: %s", column_names[c]);
    if (c == PASST_NET && !has_passt(bellhop)) {
        snprintf(col->why, sizeof col->why, "not built (no --net passt in bellhop run --help)");
        return;
    }
    pid_t vmm = c == QEMU_USER ? boot_qemu(col) : boot_bellhop(bellhop, c);
    if (vmm <= 0) return;
    if (!xfer_wait_ready(&vmm, CONSOLE, &col->ready_s, col->why, sizeof col->why)) {
        bool ended = vmm <= 0;
        xfer_stop(vmm);
        col->failed = true;
        if (ended) last_line(CONSOLE, col->why, sizeof col->why);
        printf("net: %s: not measured; the console's last lines:\n", column_names[c]);
        xfer_console_tail(CONSOLE, 8);
        return;
    }
    bool ok = wait_echo(c);
    for (int r = 0; ok && r < rounds; r++) ok = measure(c, r, who);
    xfer_stop(vmm);
    col->measured = ok;
    col->failed = !ok;
    if (!ok) {
        snprintf(col->why, sizeof col->why, "its measurement broke off (stderr says where)");
        printf("net: %s: not measured; the console's last lines:\n", column_names[c]);
        xfer_console_tail(CONSOLE, 8);
    }
}

static void print_cell(int c, int f, int rounds) {
    if (!columns[c].measured) {
        printf(" %15s", "-");
        return;
    }
    double v = median(figures[c][f], rounds);
    if (c == QEMU_USER || !columns[QEMU_USER].measured) {
        printf(" %15.1f", v);
        return;
    }
    printf(" %8.1f %5.2fx", v, v / median(figures[QEMU_USER][f], rounds));
}

static void report(int rounds) {
    printf("net: host and a Linux guest (1 vCPU, 512 MiB) over TCP through each network; %u MiB each way,\n"
           "%d connects, %d 1-byte round trips, median of %d round%s; NNx: the ratio to QEMU user's\n",
           XFER_BYTES >> 20, CONNECTS, ROUND_TRIPS, rounds, rounds > 1 ? "s" : "");
    printf("  %-26s", "");
    for (int c = 0; c < NCOLUMNS; c++) printf(" %15s", column_names[c]);
    printf("\n");
    for (int f = 0; f < NFIGURES; f++) {
        printf("  %-26s", figure_names[f]);
        for (int c = 0; c < NCOLUMNS; c++) print_cell(c, f, rounds);
        printf("\n");
    }
    printf("  %-26s", "listeners up, s after boot");
    for (int c = 0; c < NCOLUMNS; c++) {
        if (columns[c].measured) printf(" %15.1f", columns[c].ready_s);
        else printf(" %15s", "-");
    }
    printf("\n");
    for (int c = 0; c < NCOLUMNS; c++)
        if (!columns[c].measured) printf("  (no %s figures: %s)\n", column_names[c], columns[c].why);
    printf("  (MB/s: higher is better; round trips: lower is better. socat serves each in the guest)\n");
}

int main(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "usage: net_bench BELLHOP [ROUNDS]\n"), 2;
    int rounds = argc > 2 ? atoi(argv[2]) : 1;
    if (rounds < 1 || rounds > MAX_ROUNDS) rounds = 1;
    if (access(TOOLS, R_OK) != 0 || access(KERNEL, R_OK) != 0) {
        printf("net: not measured (no " TOOLS " or bzImage: make linux-files)\n");
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    char no_ns[128] = "";
    bool netns = xfer_netns(no_ns, sizeof no_ns);
    if (!netns) printf("net: %s: on this host's loopback instead\n", no_ns);
    bool tap = netns && xfer_tap(TAP, HOST_IP, columns[TAP_NET].why, sizeof columns[TAP_NET].why);
    if (!netns) snprintf(columns[TAP_NET].why, sizeof columns[TAP_NET].why, "%s", no_ns);
    char *no_passt = columns[PASST_NET].why;
    if ((tap && !default_route(no_passt, sizeof columns[PASST_NET].why)) ||
        !leave_rootfs(no_passt, sizeof columns[PASST_NET].why))
        columns[PASST_NET].failed = true;
    /* bellhop takes passt from the PATH; the nested KVM host has the files sent in under
     * /bellhop (scripts/nested.sh). */
    if (access("/bellhop/usr/bin/passt", X_OK) == 0) {
        char path[4096];
        snprintf(path, sizeof path, "/bellhop/usr/bin:%s", getenv("PATH") ? getenv("PATH") : "/bin:/usr/bin");
        setenv("PATH", path, 1);
    }
    bool failed = false;
    for (int c = 0; c < NCOLUMNS; c++) {
        if ((c != TAP_NET || tap) && !columns[c].failed) run_column(argv[1], c, rounds);
        failed |= columns[c].failed;
    }
    unlink(CONSOLE);
    report(rounds);
    return failed ? 1 : 0;
}
