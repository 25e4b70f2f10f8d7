/* User-mode networking behind virtio-net. The guest gets QEMU's `-netdev user` network
 * (10.0.2.0/24: gateway and host 10.0.2.2, DNS 10.0.2.3, DHCP from 10.0.2.15; IPv4 only); its
 * TCP and UDP leave through the host's own sockets, the gateway's address reaching the host's
 * loopback; hostfwd forwards host ports into the guest.
 *
 * libslirp runs on a loop of bellhop's loop library: its sockets are loop waits, its timers
 * loop tasks, every call into it on the loop's thread (after net_user_start's own). No thread
 * of its own, nothing polled: an idle network wakes nobody (but TCP's slow timer, every 0.5 s,
 * while slirp holds a TCP socket: a tcp hostfwd's listener is one).
 *
 * That loop is bellhop-net's, a process bellhop starts for the device (net_user_spawn;
 * net/user_main.c): Debian ships libslirp as a shared library over glib only, which cannot be
 * loaded into bellhop, static-pie (net/slirp_lib.c says why); and the guest's connections'
 * Internet sockets stay out of bellhop's own sandbox. bellhop-net loads libslirp.so.0 with
 * net_user_load before it confines itself (vmm/sandbox, role net). */
#ifndef BELLHOP_NET_USER_H
#define BELLHOP_NET_USER_H

#include <lib/async/dispatcher.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NET_USER_MAX_FWD 16
/* Host sockets slirp may hold for the guest's flows (the process's fd limit halved, if lower):
 * while it holds this many, the guest's frames that would open one more (a TCP SYN, UDP but
 * DHCP, ICMP) are dropped before slirp sees them, as a full NAT table would; the flows already
 * open go on. Sockets the host's own clients open through a hostfwd are counted, not refused. */
#define NET_USER_MAX_SOCKETS 1024
/* What slirp holds for the guest without a host socket is bounded by rate, each for at most
 * its timeout: IPv4 fragments waiting for the rest of their datagram (30 s: 256 a second keep
 * slirp under about 15 MiB of them), and an MMDS stack's half-open connections (75 s). The
 * others are dropped as a busy link drops: a guest's TCP sends its SYN again. */
#define NET_USER_FRAGMENTS_PER_S 256
#define NET_USER_MMDS_SYNS_PER_S 64
#define NET_USER_HDR_LEN 12             /* the virtio_net_hdr before each frame on the device's fd */
#define NET_USER_MAX_FRAME (65536 + NET_USER_HDR_LEN)

struct net_user_fwd {
    bool udp;
    uint32_t host_addr;  /* network order; 0 (an empty ADDR): every host address, as QEMU's */
    uint32_t guest_addr; /* network order; 0 (empty): 10.0.2.15, the address DHCP gives */
    uint16_t host_port, guest_port;
};

struct net_user_config {
    bool restricted; /* restrict=on: the guest opens no flow of its own; the forwards work */
    unsigned nfwd;
    struct net_user_fwd fwd[NET_USER_MAX_FWD];
    /* Not 0: this slirp is a link's MMDS stack instead (net/mmds.h; host order): the guest's
     * frames for that address alone come to it (virtio-net diverts them), and each TCP
     * connection to its port 80 becomes one to the Unix socket at mmds_socket, bellhop's MMDS
     * server. It answers ARP for the address and nothing else: no DHCP, no DNS, no flow of
     * the guest's to anywhere else (restricted). Its network is the link-local /16 around the
     * address, with slirp's own address beside it (net_user_mmds_host). */
    uint32_t mmds_addr;
    char mmds_socket[108];
};

/* Addresses of the MMDS stack's /16 beside mmds_addr (host order), k = 1, 2, 3 distinct, none
 * its network's or broadcast address. The first is slirp's own: the one it asks the guest's MAC
 * address from, whose ARP answers virtio-net diverts to it too. */
static inline uint32_t net_user_mmds_near(uint32_t mmds_addr, unsigned k) {
    uint32_t low = (mmds_addr + k * 0x100u) & 0xffffu;
    if (low == 0 || low == 0xffffu) low = (low + 0x300u) & 0xffffu;
    return (mmds_addr & 0xffff0000u) | low;
}
static inline uint32_t net_user_mmds_host(uint32_t mmds_addr) { return net_user_mmds_near(mmds_addr, 1); }

/* A configuration for an MMDS stack at addr (a link-local address, but 169.254.0.0 and
 * 169.254.255.255) whose connections go to the socket at path. 0, or -1 with the reason. */
int net_user_mmds_config(uint32_t addr, const char *path, struct net_user_config *c, char *err, size_t errlen);

/* Parses QEMU's -netdev user options after "user": "" or a list of ",hostfwd=[tcp|udp]:[ADDR]:
 * HOSTPORT-[GUESTADDR]:GUESTPORT" (repeatable, tcp when the protocol is empty; ADDR an IPv4
 * address, GUESTADDR one in 10.0.2.0/24) and ",restrict=on|off". 0, or -1 with a one-line
 * reason in err. */
int net_user_parse(const char *opts, struct net_user_config *c, char *err, size_t errlen);

/* Loads libslirp.so.0 once (any thread; the later calls answer at once). 0, or -1 with the
 * reason (the library missing or too old: Debian's libslirp0 4.5 or later is needed). */
int net_user_load(char *err, size_t errlen);

struct net_user;

/* Starts a slirp on `loop` with the forwards, each bound now (a port in use is an error here).
 * *device_fd: a non-blocking SOCK_SEQPACKET socket that reads and writes one frame per message,
 * a zero virtio_net_hdr of NET_USER_HDR_LEN bytes first: what devices/virtio_net.h's `fd` takes;
 * the caller owns it. A frame for the guest that finds that socket full is dropped, as a busy
 * link would. The first turn on the loop is posted here: the loop may run, on its thread,
 * as soon as this returns. NULL and err on failure. */
struct net_user *net_user_start(async_dispatcher_t *loop, const struct net_user_config *c, int *device_fd,
                                char *err, size_t errlen);

/* The same over fd, a SOCK_SEQPACKET socket whose other end is the device's (bellhop-net's fd
 * 3), which it takes; gone(arg) runs on the loop once that end is closed. */
struct net_user *net_user_start_on(async_dispatcher_t *loop, const struct net_user_config *c, int fd,
                                   void (*gone)(void *), void *arg, char *err, size_t errlen);

/* bellhop's side (net/user_spawn.c): starts bellhop-net, the program beside bellhop's own
 * binary, on the options after "user" (net_user_parse's), and gives the device's end of its
 * socket in *device_fd once it says its forwards are bound; it ends when that end is closed.
 * 0, or -1 with its one-line reason. */
int net_user_spawn(const char *opts, int *device_fd, char *err, size_t errlen);
/* The same for an MMDS stack (net_user_mmds_config's): `bellhop-net mmds ADDR PATH`. */
int net_user_spawn_mmds(uint32_t addr, const char *path, int *device_fd, char *err, size_t errlen);

/* Stops it and closes every socket it holds (device_fd is the caller's). From the loop thread,
 * or once no handler of the loop can run (after async_loop_shutdown or _destroy: then the
 * loop is not touched again). NULL does nothing. */
void net_user_stop(struct net_user *u);

#endif
