/* virtio-vsock beside virtio-net, one Linux guest, one run. The guest (the test kernel and
 * initrd, cmdline bellhop.vsockbench, socat from the tools disk: tests/linux/init-acceptance.sh)
 * serves the same three things over vsock and over TCP: a sink (port 5101), a 64 MiB source
 * (5102) and an echo (5103). The host reaches them through bellhop's vsock socket
 * (Firecracker's "CONNECT <port>", tests/linux/vsock_uds.h) and through TCP to a tap in the
 * bench's own network namespace, and measures, each transport in turn:
 *   - host to guest: 64 MiB written to the sink, from the connection to the guest's close
 *     after the host's end of stream;
 *   - guest to host: the source's 64 MiB, from the connection to their end;
 *   - 1000 1-byte round trips through the echo (after 20 unmeasured): p50 and mean.
 * MB/s and microseconds per transport, and the ratio vsock/net. A stock kernel needs full
 * virtualization: on a PVM host, make bench runs this in the nested KVM host. Root (the
 * namespace and the tap); without them the net column says why it is missing.
 *   usage: vsock_bench BELLHOP [ROUNDS]   (the medians of ROUNDS, 1 unless given, at most 5) */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "tests/linux/vsock_uds.h"

#define XFER_BYTES (64u << 20) /* the guest's source sends this much (init-acceptance.sh) */
#define ROUND_TRIPS 1000
#define WARM_UP 20
#define MAX_ROUNDS 5
#define IO_TIMEOUT_S 60
#define TAP "bhvsbench0"
#define HOST_IP "10.0.2.1"
#define GUEST_IP "10.0.2.2"
#define UDS "/tmp/bellhop-vsock-bench.sock"
#define CONSOLE "/tmp/bellhop-vsock-bench.out"

enum { VSOCK, NET, NTRANSPORTS };
enum { TO_GUEST, TO_HOST, RTT_P50, RTT_MEAN, NFIGURES };
static const char *const transport_names[NTRANSPORTS] = {"vsock", "virtio-net"};
static const char *const figure_names[NFIGURES] = {"host to guest, MB/s", "guest to host, MB/s",
                                                   "round trip p50, us", "round trip mean, us"};
static double figures[NTRANSPORTS][NFIGURES][MAX_ROUNDS];

static bool interface_up(int s, const char *name) {
    struct ifreq r = {0};
    snprintf(r.ifr_name, sizeof r.ifr_name, "%s", name);
    if (ioctl(s, SIOCGIFFLAGS, &r) != 0) return false;
    r.ifr_flags |= IFF_UP;
    return ioctl(s, SIOCSIFFLAGS, &r) == 0;
}

static bool interface_addr(int s, const char *name, const char *ip, const char *mask) {
    struct ifreq r = {0};
    struct sockaddr_in a = {.sin_family = AF_INET};
    snprintf(r.ifr_name, sizeof r.ifr_name, "%s", name);
    inet_pton(AF_INET, ip, &a.sin_addr);
    memcpy(&r.ifr_addr, &a, sizeof a);
    if (ioctl(s, SIOCSIFADDR, &r) != 0) return false;
    inet_pton(AF_INET, mask, &a.sin_addr);
    memcpy(&r.ifr_netmask, &a, sizeof a);
    return ioctl(s, SIOCSIFNETMASK, &r) == 0;
}

/* This process in a network namespace of its own (bellhop, its child, too) with a tap that
 * outlives its fd (bellhop opens it by name) at HOST_IP: gone with the namespace when both
 * end. false with the reason in err. */
static bool make_tap(char *err, size_t len) {
    if (unshare(CLONE_NEWNET) != 0) return snprintf(err, len, "no network namespace: %s", strerror(errno)), false;
    int t = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    struct ifreq r = {.ifr_flags = IFF_TAP | IFF_NO_PI};
    snprintf(r.ifr_name, sizeof r.ifr_name, "%s", TAP);
    bool made = t >= 0 && ioctl(t, TUNSETIFF, &r) == 0 && ioctl(t, TUNSETPERSIST, 1) == 0;
    if (!made) snprintf(err, len, "no tap: %s", strerror(errno));
    if (t >= 0) close(t);
    if (!made) return false;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    bool up = s >= 0 && interface_up(s, "lo") && interface_addr(s, TAP, HOST_IP, "255.255.255.0") && interface_up(s, TAP);
    if (!up) snprintf(err, len, "the tap's address: %s", strerror(errno));
    if (s >= 0) close(s);
    return up;
}

/* Every later read or write on fd bounded, so that a guest gone quiet ends the bench. */
static void bound_io(int fd) {
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* One TCP connection to the guest's port, tried again for 30 s while its socat is not
 * listening yet; -1 with the reason in err. */
static int dial_tcp(unsigned port, char *err, size_t len) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, GUEST_IP, &a.sin_addr);
    for (double until = now_ms() + 30000;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
        struct timeval tv = {.tv_sec = 5};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
        snprintf(err, len, "connect %s:%u: %s", GUEST_IP, port, strerror(errno));
        if (fd >= 0) close(fd);
        if (now_ms() >= until) return -1;
        usleep(200 * 1000);
    }
}

static int dial(int transport, unsigned port) {
    char err[256];
    int fd = transport == VSOCK ? vsock_uds_connect(UDS, port, 30000, err, sizeof err) : dial_tcp(port, err, sizeof err);
    if (fd < 0) fprintf(stderr, "vsock_bench: %s: %s\n", transport_names[transport], err);
    else bound_io(fd);
    return fd;
}

/* Bytes read from fd until its end (or an error: then -1). */
static long long drain(int fd) {
    static char buf[1 << 16];
    long long total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) return total;
        total += n;
    }
}

static bool write_all(int fd, const char *p, size_t len) {
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n, len -= (size_t)n;
    }
    return true;
}

/* MB/s of XFER_BYTES to the guest's sink, until the guest closes after their end; -1 on failure. */
static double to_guest(int transport) {
    static char block[1 << 16];
    int fd = dial(transport, 5101);
    if (fd < 0) return -1;
    double t0 = now_ms();
    bool ok = true;
    for (unsigned sent = 0; ok && sent < XFER_BYTES; sent += sizeof block) ok = write_all(fd, block, sizeof block);
    ok = ok && shutdown(fd, SHUT_WR) == 0 && drain(fd) == 0;
    double ms = now_ms() - t0;
    if (!ok) fprintf(stderr, "vsock_bench: %s: to the guest: %s\n", transport_names[transport], strerror(errno));
    close(fd);
    return ok ? XFER_BYTES / 1e3 / ms : -1;
}

/* MB/s of the guest's source, from the connection to the end of its XFER_BYTES; -1 on failure. */
static double to_host(int transport) {
    int fd = dial(transport, 5102);
    if (fd < 0) return -1;
    double t0 = now_ms();
    long long got = drain(fd);
    double ms = now_ms() - t0;
    close(fd);
    if (got != XFER_BYTES) {
        fprintf(stderr, "vsock_bench: %s: from the guest: %lld bytes of %u\n", transport_names[transport], got,
                XFER_BYTES);
        return -1;
    }
    return XFER_BYTES / 1e3 / ms;
}

/* One byte there and back through the guest's echo: microseconds, or -1. */
static double round_trip(int fd) {
    char c = 'x';
    double t0 = now_ms();
    if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1) return -1;
    return (now_ms() - t0) * 1e3;
}

/* ROUND_TRIPS through the echo into figures[transport][RTT_*][round]; false on failure. */
static bool round_trips(int transport, int round) {
    static double us[ROUND_TRIPS];
    int fd = dial(transport, 5103);
    if (fd < 0) return false;
    bool ok = true;
    for (int i = 0; ok && i < WARM_UP; i++) ok = round_trip(fd) >= 0;
    double sum = 0;
    for (int i = 0; ok && i < ROUND_TRIPS; i++) {
        us[i] = round_trip(fd);
        ok = us[i] >= 0;
        sum += us[i];
    }
    close(fd);
    if (!ok) {
        fprintf(stderr, "vsock_bench: %s: the echo stopped: %s\n", transport_names[transport], strerror(errno));
        return false;
    }
    figures[transport][RTT_MEAN][round] = sum / ROUND_TRIPS;
    figures[transport][RTT_P50][round] = median(us, ROUND_TRIPS);
    return true;
}

/* One round: each figure, vsock then net for each (those measured, have[t]). */
static bool measure(const bool have[NTRANSPORTS], int round) {
    for (int t = 0; t < NTRANSPORTS; t++)
        if (have[t] && (figures[t][TO_GUEST][round] = to_guest(t)) < 0) return false;
    for (int t = 0; t < NTRANSPORTS; t++)
        if (have[t] && (figures[t][TO_HOST][round] = to_host(t)) < 0) return false;
    for (int t = 0; t < NTRANSPORTS; t++)
        if (have[t] && !round_trips(t, round)) return false;
    return true;
}

static void report(const bool have[NTRANSPORTS], const char *no_net, int rounds, double ready_s) {
    printf("vsock: a Linux guest (1 vCPU, 512 MiB; at its listeners %.1f s after boot) through bellhop's vsock\n"
           "socket and through virtio-net on a tap; %u MiB each way, %d 1-byte round trips, median of %d round%s\n",
           ready_s, XFER_BYTES >> 20, ROUND_TRIPS, rounds, rounds > 1 ? "s" : "");
    printf("  %-22s %12s %12s %10s\n", "", transport_names[VSOCK], transport_names[NET], "vsock/net");
    for (int f = 0; f < NFIGURES; f++) {
        double m[NTRANSPORTS];
        for (int t = 0; t < NTRANSPORTS; t++) m[t] = have[t] ? median(figures[t][f], rounds) : 0;
        printf("  %-22s %12.1f", figure_names[f], m[VSOCK]);
        if (have[NET]) printf(" %12.1f %9.2fx\n", m[NET], m[VSOCK] / m[NET]);
        else printf(" %12s %10s\n", "-", "-");
    }
    if (!have[NET]) printf("  (no virtio-net figures: %s)\n", no_net);
    printf("  (MB/s: higher is better; round trips: lower is better. socat serves both in the guest)\n");
}

/* bellhop with the guest, its console into CONSOLE; the tap when there is one (without, the
 * arguments end before --net). */
static pid_t boot(const char *bellhop, bool net) {
    char *argv[] = {(char *)bellhop, "run", "--kernel", "build/linux/bzImage", "--initrd", "build/linux/initrd.cpio",
                    "--mem", "512M", "--cpus", "1", "--disk", "build/linux/tools.sqfs,ro",
                    "--vsock", "cid=3,uds=" UDS, "--cmdline", "console=ttyS0 quiet bellhop.wait bellhop.vsockbench",
                    net ? "--net" : NULL, "tap=" TAP, NULL};
    unlink(UDS);
    return spawn_to(argv, CONSOLE);
}

/* Until the guest says its listeners are up (their time since its boot in *ready_s), while
 * bellhop lives (*vmm becomes -1 once it has ended and been reaped), 300 s at most. */
static bool wait_ready(pid_t *vmm, double *ready_s) {
    for (double until = now_ms() + 300000; now_ms() < until; usleep(100 * 1000)) {
        if (find_line(CONSOLE, "linux-guest: bench ready in %lf s", ready_s, 0)) return true;
        if (waitpid(*vmm, NULL, WNOHANG) != 0) {
            *vmm = -1;
            fprintf(stderr, "vsock_bench: bellhop ended before the guest's listeners were up\n");
            return false;
        }
    }
    fprintf(stderr, "vsock_bench: the guest's listeners did not come up in 300 s\n");
    return false;
}

static void stop(pid_t pid) {
    unlink(UDS);
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 50 && waitpid(pid, NULL, WNOHANG) == 0; i++) usleep(100 * 1000);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

int main(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "usage: vsock_bench BELLHOP [ROUNDS]\n"), 2;
    int rounds = argc > 2 ? atoi(argv[2]) : 1;
    if (rounds < 1 || rounds > MAX_ROUNDS) rounds = 1;
    if (access("build/linux/tools.sqfs", R_OK) != 0 || access("build/linux/bzImage", R_OK) != 0) {
        printf("vsock: not measured (no build/linux/tools.sqfs or bzImage: make linux-files)\n");
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    char no_net[128] = "";
    bool have[NTRANSPORTS] = {true, make_tap(no_net, sizeof no_net)};
    pid_t vmm = boot(argv[1], have[NET]);
    double ready_s = 0;
    bool ok = vmm > 0 && wait_ready(&vmm, &ready_s);
    for (int r = 0; ok && r < rounds; r++) ok = measure(have, r);
    stop(vmm);
    if (ok) {
        report(have, no_net, rounds, ready_s);
    } else {
        printf("vsock: not measured; the console's last lines:\n");
        fflush(stdout);
        int shown = system("tail -n 8 " CONSOLE " | sed 's/^/    /'");
        (void)shown;
    }
    unlink(CONSOLE);
    return ok ? 0 : 1;
}
