/* What bench/vsock_bench and bench/net_bench share: the Linux guest's three servers
 * (tests/linux/init-acceptance.sh under bellhop.vsockbench: a sink, a source of XFER_BYTES
 * and an echo, socat each) measured over connections the bench makes; TCP connections bounded
 * in time; a network namespace of the bench's own with a tap; and a VMM with that guest, from
 * its start to its listeners and its end. Each measurement names its failure on stderr after
 * `who` ("net_bench: user"). */
#ifndef BELLHOP_BENCH_TCP_XFER_H
#define BELLHOP_BENCH_TCP_XFER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define XFER_BYTES (64u << 20) /* the guest's source sends this much (init-acceptance.sh) */
#define XFER_SINK 5101
#define XFER_SOURCE 5102
#define XFER_ECHO 5103

/* Every later read or write on fd bounded, so that a guest gone quiet ends the bench. */
void xfer_bound_io(int fd);

/* A TCP connection to ip:port with Nagle off and its IO bounded, tried again every 200 ms for
 * retry_ms while the guest's socat is not listening yet (0: once); -1 with the reason in err. */
int xfer_dial_tcp(const char *ip, unsigned port, double retry_ms, char *err, size_t len);

/* MB/s of XFER_BYTES written to the sink on fd, from now until the guest closes after their
 * end; -1 on failure. Closes fd. */
double xfer_to_guest(int fd, const char *who);

/* MB/s of the source's XFER_BYTES read from fd, from now to their end; -1 on failure. Closes fd. */
double xfer_to_host(int fd, const char *who);

/* One byte there and back through the echo on fd: microseconds, or -1. */
double xfer_round_trip(int fd);

/* n round trips through the echo on fd (after warm_up unmeasured): their p50 and mean in
 * microseconds; false on failure. Closes fd. */
bool xfer_round_trips(int fd, int n, int warm_up, double *p50, double *mean, const char *who);

/* This process in a network namespace of its own (its children too) with loopback up, where
 * the forwards of user-mode networks listen; false with the reason in err. */
bool xfer_netns(char *err, size_t len);

/* A tap at host_ip/24 in this process's namespace that outlives its fd (a VMM opens it by
 * name): gone with the namespace when its processes all end. false with the reason in err. */
bool xfer_tap(const char *tap, const char *host_ip, char *err, size_t len);

/* Until the guest says its listeners are up (their time since its boot in *ready_s) on its
 * console, the file `console`, while the VMM lives (*vmm becomes -1 once it has ended and
 * been reaped), 300 s at most. false with the reason in err. */
bool xfer_wait_ready(pid_t *vmm, const char *console, double *ready_s, char *err, size_t len);

/* Ends the VMM (SIGTERM, then SIGKILL after 5 s) and reaps it; pid <= 0 does nothing. */
void xfer_stop(pid_t pid);

/* The console's last `lines` lines on stdout, indented. */
void xfer_console_tail(const char *console, int lines);

#endif
