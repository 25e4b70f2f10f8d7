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
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "bench/tcp_xfer.h"
#include "tests/linux/vsock_uds.h"

#define ROUND_TRIPS 1000
#define WARM_UP 20
#define MAX_ROUNDS 5
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

static int dial(int transport, unsigned port) {
    char err[256];
    int fd = transport == VSOCK ? vsock_uds_connect(UDS, port, 30000, err, sizeof err)
                                : xfer_dial_tcp(GUEST_IP, port, 30000, err, sizeof err);
    if (fd < 0) fprintf(stderr, "vsock_bench: %s: %s\n", transport_names[transport], err);
    else if (transport == VSOCK) xfer_bound_io(fd);
    return fd;
}

/* Each measurement over a connection of the transport's to the guest's server for it. */
static const char *who(int transport) {
    return transport == VSOCK ? "vsock_bench: vsock" : "vsock_bench: virtio-net";
}

static double to_guest(int transport) {
    int fd = dial(transport, XFER_SINK);
    return fd < 0 ? -1 : xfer_to_guest(fd, who(transport));
}

static double to_host(int transport) {
    int fd = dial(transport, XFER_SOURCE);
    return fd < 0 ? -1 : xfer_to_host(fd, who(transport));
}

static bool round_trips(int transport, int round) {
    int fd = dial(transport, XFER_ECHO);
    return fd >= 0 && xfer_round_trips(fd, ROUND_TRIPS, WARM_UP, &figures[transport][RTT_P50][round],
                                       &figures[transport][RTT_MEAN][round], who(transport));
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
    bool have[NTRANSPORTS] = {true, xfer_netns(no_net, sizeof no_net) && xfer_tap(TAP, HOST_IP, no_net, sizeof no_net)};
    pid_t vmm = boot(argv[1], have[NET]);
    double ready_s = 0;
    char why[128] = "bellhop did not start";
    bool ok = vmm > 0 && xfer_wait_ready(&vmm, CONSOLE, &ready_s, why, sizeof why);
    if (!ok) fprintf(stderr, "vsock_bench: %s\n", why);
    for (int r = 0; ok && r < rounds; r++) ok = measure(have, r);
    xfer_stop(vmm);
    unlink(UDS);
    if (ok) {
        report(have, no_net, rounds, ready_s);
    } else {
        printf("vsock: not measured; the console's last lines:\n");
        xfer_console_tail(CONSOLE, 8);
    }
    unlink(CONSOLE);
    return ok ? 0 : 1;
}
