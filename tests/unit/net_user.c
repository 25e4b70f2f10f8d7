/* --net user's core (net/user.c): the option syntax, then a real libslirp on a real loop thread,
 * the test playing the guest at the device's end of the socket pair with frames built by hand
 * (ARP, DHCP, TCP SYNs), and real sockets on 127.0.0.1 as the host: DHCP and ARP answered, the
 * guest's TCP to the gateway reaching the host's loopback, hostfwd into the guest, restrict=on,
 * the cap on the guest's sockets, a device end that does not read, and every fd released on
 * stop, from the loop thread or after the loop is gone. Then a link's MMDS stack: ARP for the
 * MMDS address, a TCP connection to its port 80 reaching a Unix socket (bellhop's MMDS server)
 * and bytes both ways, nothing else answered. No DNS, no address but 127.0.0.1. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <lib/async-loop/loop.h>
#include <lib/async/task.h>
#include <lib/container_of.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "net/user.h"
#include "tests/lib/check.h"

#define GUEST_IP 0x0a00020fu
#define GATEWAY_IP 0x0a000202u
#define ETH_LEN 14
#define IP_LEN 20
#define TCP_LEN 20
#define UDP_LEN 8
#define BOOTP_LEN 548 /* the fixed part and 312 bytes of options, as slirp's struct bootp_t */
#define SYN 0x02
#define RST 0x04
#define ACK 0x10

static const uint8_t guest_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
static const uint8_t broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

/* ---- options ---- */

static struct net_user_config parsed(const char *opts) {
    struct net_user_config c;
    char err[200] = "";
    CHECK_MSG(net_user_parse(opts, &c, err, sizeof err) == 0, "%s: %s", opts, err);
    return c;
}

TEST(options_in_qemus_syntax) {
    struct net_user_config c = parsed("");
    CHECK_EQ(c.nfwd, 0);
    CHECK(!c.restricted);
    c = parsed(",hostfwd=tcp::2222-:22");
    CHECK_EQ(c.nfwd, 1);
    CHECK(!c.fwd[0].udp);
    CHECK_EQ(c.fwd[0].host_addr, 0);
    CHECK_EQ(c.fwd[0].host_port, 2222);
    CHECK_EQ(c.fwd[0].guest_addr, 0);
    CHECK_EQ(c.fwd[0].guest_port, 22);
    c = parsed(",hostfwd=udp:127.0.0.1:5353-10.0.2.15:53,hostfwd=:127.0.0.1:80-:8080,restrict=on");
    CHECK_EQ(c.nfwd, 2);
    CHECK(c.fwd[0].udp);
    CHECK_EQ(c.fwd[0].host_addr, htonl(0x7f000001));
    CHECK_EQ(c.fwd[0].guest_addr, htonl(GUEST_IP));
    CHECK_EQ(c.fwd[0].host_port, 5353);
    CHECK(!c.fwd[1].udp); /* an empty protocol is tcp, as in QEMU */
    CHECK_EQ(c.fwd[1].guest_port, 8080);
    CHECK(c.restricted);
    CHECK(!parsed(",restrict=on,restrict=off").restricted);
    /* the same port for tcp and udp, or on two addresses, is two forwards */
    CHECK_EQ(parsed(",hostfwd=tcp::53-:53,hostfwd=udp::53-:53").nfwd, 2);
    CHECK_EQ(parsed(",hostfwd=tcp:127.0.0.1:8000-:80,hostfwd=tcp:127.0.0.2:8000-:80").nfwd, 2);
    char many[NET_USER_MAX_FWD * 32] = "";
    for (int i = 0; i < NET_USER_MAX_FWD; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), ",hostfwd=tcp::%d-:22", 10000 + i);
    CHECK_EQ(parsed(many).nfwd, NET_USER_MAX_FWD);
}

static void refused(const char *opts, const char *why) {
    struct net_user_config c;
    char err[200] = "";
    CHECK_MSG(net_user_parse(opts, &c, err, sizeof err) == -1, "%s: accepted", opts);
    CHECK_MSG(strstr(err, why) != NULL, "%s: \"%s\" does not say \"%s\"", opts, err, why);
    CHECK_MSG(strchr(err, '\n') == NULL, "%s: \"%s\" is more than one line", opts, err);
}

TEST(bad_options_are_refused_in_one_line) {
    refused("hostfwd=tcp::1-:2", "expected ,OPTION");
    refused(",", "an empty option");
    refused(",restrict=on,", "an empty option");
    refused(",,restrict=on", "an empty option");
    refused(",restrict", "expected hostfwd=");
    refused(",restrict=yes", "restrict=yes: expected on or off");
    refused(",ipv6=off", "unknown option ipv6");
    refused(",hostfwd=tcp:2222-:22", "expected [tcp|udp]:[ADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT");
    refused(",hostfwd=tcp::2222:22", "expected [tcp|udp]");
    refused(",hostfwd=sctp::2222-:22", "protocol sctp: expected tcp or udp");
    refused(",hostfwd=tcp:localhost:2222-:22", "localhost: not an IPv4 address");
    refused(",hostfwd=tcp:127.0.0.256:2222-:22", "not an IPv4 address");
    refused(",hostfwd=tcp::0-:22", "a port is 1 to 65535");
    refused(",hostfwd=tcp::65536-:22", "a port is 1 to 65535");
    refused(",hostfwd=tcp::2222-:", "a port is 1 to 65535");
    refused(",hostfwd=tcp::+22-:22", "a port is 1 to 65535");
    refused(",hostfwd=tcp::2222-:22:1", "a port is 1 to 65535");
    refused(",hostfwd=tcp::2222-10.0.3.15:22", "10.0.3.15: not a guest address");
    refused(",hostfwd=tcp::2222-10.0.2.2:22", "not a guest address");
    refused(",hostfwd=tcp::2222-10.0.2.255:22", "not a guest address");
    refused(",hostfwd=tcp::2222-:22,hostfwd=tcp:127.0.0.1:2222-:23", "tcp port 2222 is forwarded twice");
    refused(",restrict=on\n", "a control or non-ASCII character");
    char many[(NET_USER_MAX_FWD + 1) * 32] = "";
    for (int i = 0; i <= NET_USER_MAX_FWD; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), ",hostfwd=tcp::%d-:22", 10000 + i);
    refused(many, "more than 16 hostfwd options");
    char long_one[400];
    snprintf(long_one, sizeof long_one, ",%0300d=1", 0);
    struct net_user_config c;
    char err[120];
    CHECK_EQ(net_user_parse(long_one, &c, err, sizeof err), -1);
    CHECK(strlen(err) < 120);
}

/* ---- frames, built and read ---- */

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)(v >> 16)), put16(p + 2, (uint16_t)v); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) << 16 | get16(p + 2); }

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t sum) {
    for (size_t i = 0; i + 1 < n; i += 2) sum += get16(p + i);
    if (n & 1) sum += (uint32_t)p[n - 1] << 8;
    return sum;
}

static uint16_t fold(uint32_t sum) {
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static size_t eth(uint8_t *f, const uint8_t *dst, uint16_t type) {
    memcpy(f, dst, 6);
    memcpy(f + 6, guest_mac, 6);
    put16(f + 12, type);
    return ETH_LEN;
}

static void ipv4(uint8_t *ip, uint8_t proto, uint32_t src, uint32_t dst, size_t payload) {
    memset(ip, 0, IP_LEN);
    ip[0] = 0x45;
    put16(ip + 2, (uint16_t)(IP_LEN + payload));
    ip[8] = 64;
    ip[9] = proto;
    put32(ip + 12, src);
    put32(ip + 16, dst);
    put16(ip + 10, fold(sum16(ip, IP_LEN, 0)));
}

static size_t arp_request(uint8_t *f, uint32_t target) {
    size_t n = eth(f, broadcast, 0x0806);
    uint8_t *a = f + n;
    put16(a, 1), put16(a + 2, 0x0800), a[4] = 6, a[5] = 4, put16(a + 6, 1);
    memcpy(a + 8, guest_mac, 6);
    put32(a + 14, GUEST_IP);
    memset(a + 18, 0, 6);
    put32(a + 24, target);
    return n + 28;
}

static size_t tcp_segment(uint8_t *f, uint16_t sport, uint32_t dst, uint16_t dport, uint8_t flags) {
    static const uint8_t gateway_mac[6] = {0x52, 0x55, 0x0a, 0x00, 0x02, 0x02};
    size_t n = eth(f, gateway_mac, 0x0800);
    ipv4(f + n, IPPROTO_TCP, GUEST_IP, dst, TCP_LEN);
    uint8_t *t = f + n + IP_LEN;
    memset(t, 0, TCP_LEN);
    put16(t, sport), put16(t + 2, dport), put32(t + 4, 1000u + sport);
    t[12] = (TCP_LEN / 4) << 4;
    t[13] = flags;
    put16(t + 14, 65535);
    uint8_t pseudo[12];
    put32(pseudo, GUEST_IP), put32(pseudo + 4, dst), pseudo[8] = 0, pseudo[9] = IPPROTO_TCP;
    put16(pseudo + 10, TCP_LEN);
    put16(t + 16, fold(sum16(t, TCP_LEN, sum16(pseudo, sizeof pseudo, 0))));
    return n + IP_LEN + TCP_LEN;
}

static size_t dhcp_discover(uint8_t *f) {
    size_t n = eth(f, broadcast, 0x0800);
    ipv4(f + n, IPPROTO_UDP, 0, 0xffffffffu, UDP_LEN + BOOTP_LEN);
    uint8_t *u = f + n + IP_LEN, *b = u + UDP_LEN;
    put16(u, 68), put16(u + 2, 67), put16(u + 4, UDP_LEN + BOOTP_LEN), put16(u + 6, 0); /* no checksum */
    memset(b, 0, BOOTP_LEN);
    b[0] = 1, b[1] = 1, b[2] = 6; /* a request, Ethernet */
    put32(b + 4, 0x12345678);     /* xid */
    memcpy(b + 28, guest_mac, 6);
    put32(b + 236, 0x63825363);                           /* the magic cookie */
    b[240] = 53, b[241] = 1, b[242] = 1, b[243] = 255; /* DHCPDISCOVER, end */
    return n + IP_LEN + UDP_LEN + BOOTP_LEN;
}

/* What a test looks at in a frame for the guest. */
struct seen {
    uint16_t type;
    uint8_t proto, flags; /* flags: TCP's */
    uint32_t src, dst;
    uint16_t sport, dport, arp_op;
    const uint8_t *l4;
    size_t l4len;
};

static bool parse(const uint8_t *f, size_t len, struct seen *s) {
    memset(s, 0, sizeof *s);
    if (len < ETH_LEN) return false;
    s->type = get16(f + 12);
    if (s->type == 0x0806 && len >= ETH_LEN + 28) {
        s->arp_op = get16(f + ETH_LEN + 6);
        s->src = get32(f + ETH_LEN + 14);
        s->dst = get32(f + ETH_LEN + 24);
        return true;
    }
    if (s->type != 0x0800 || len < ETH_LEN + IP_LEN) return false;
    const uint8_t *ip = f + ETH_LEN;
    size_t ihl = (size_t)(ip[0] & 15) * 4;
    if (len < ETH_LEN + ihl + 4) return false;
    s->proto = ip[9];
    s->src = get32(ip + 12);
    s->dst = get32(ip + 16);
    s->l4 = ip + ihl;
    s->l4len = len - ETH_LEN - ihl;
    s->sport = get16(s->l4);
    s->dport = get16(s->l4 + 2);
    if (s->proto == IPPROTO_TCP && s->l4len >= TCP_LEN) s->flags = s->l4[13];
    return true;
}

static int64_t now_ms(void) { return zx_clock_get_monotonic() / 1000000; }

/* ---- the network ---- */

struct net {
    async_loop_t *loop;
    struct net_user *u;
    int dev; /* the device's end: the test is the guest */
};

static void net_start(struct net *n, const struct net_user_config *c) {
    CHECK_EQ(async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &n->loop), ZX_OK);
    CHECK_EQ(async_loop_start_thread(n->loop, "loop", NULL), ZX_OK);
    char err[200] = "";
    n->u = net_user_start(async_loop_get_dispatcher(n->loop), c, &n->dev, err, sizeof err);
    CHECK_MSG(n->u != NULL, "net_user_start: %s", err);
}

static struct net net_with(const char *opts) {
    struct net n;
    struct net_user_config c = parsed(opts);
    net_start(&n, &c);
    return n;
}

struct stopper {
    async_task_t task;
    struct net_user *u;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
};

static void stop_on_loop(async_dispatcher_t *d, async_task_t *task, zx_status_t st) {
    (void)d, (void)st;
    struct stopper *s = container_of(task, struct stopper, task);
    net_user_stop(s->u);
    pthread_mutex_lock(&s->lock);
    s->done = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* From the loop thread, while the loop runs: the API's way (a device removed). */
static void net_stop(struct net *n) {
    struct stopper s = {.task = {.handler = stop_on_loop, .deadline = ZX_TIME_INFINITE_PAST}, .u = n->u,
                        .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    CHECK_EQ(async_post_task(async_loop_get_dispatcher(n->loop), &s.task), ZX_OK);
    pthread_mutex_lock(&s.lock);
    while (!s.done) pthread_cond_wait(&s.cond, &s.lock);
    pthread_mutex_unlock(&s.lock);
    async_loop_destroy(n->loop);
    close(n->dev);
}

static void send_frame(struct net *n, const uint8_t *frame, size_t len) {
    uint8_t msg[NET_USER_MAX_FRAME] = {0};
    CHECK(len + NET_USER_HDR_LEN <= sizeof msg);
    memcpy(msg + NET_USER_HDR_LEN, frame, len);
    CHECK_EQ(send(n->dev, msg, len + NET_USER_HDR_LEN, MSG_DONTWAIT), (ssize_t)(len + NET_USER_HDR_LEN));
}

/* The next frame for the guest within ms (into f: the header checked and cut), or 0. */
static size_t recv_frame(struct net *n, uint8_t *f, int ms) {
    uint8_t msg[NET_USER_MAX_FRAME];
    static const uint8_t zero[NET_USER_HDR_LEN];
    struct pollfd p = {.fd = n->dev, .events = POLLIN};
    if (poll(&p, 1, ms) != 1) return 0;
    ssize_t len = recv(n->dev, msg, sizeof msg, MSG_DONTWAIT);
    CHECK(len >= NET_USER_HDR_LEN + ETH_LEN);
    CHECK(memcmp(msg, zero, sizeof zero) == 0);
    memcpy(f, msg + NET_USER_HDR_LEN, (size_t)len - NET_USER_HDR_LEN);
    return (size_t)len - NET_USER_HDR_LEN;
}

typedef bool wanted_fn(const struct seen *s, uint32_t arg);

/* Frames for the guest until one is wanted (true, in *out) or ms pass. */
static bool expect(struct net *n, wanted_fn *wanted, uint32_t arg, int ms, struct seen *out, uint8_t *f) {
    int64_t end = now_ms() + ms;
    for (int64_t left = ms; left > 0; left = end - now_ms()) {
        size_t len = recv_frame(n, f, (int)left);
        if (len && parse(f, len, out) && wanted(out, arg)) return true;
    }
    return false;
}

static bool arp_reply(const struct seen *s, uint32_t ip) { return s->type == 0x0806 && s->arp_op == 2 && s->src == ip; }

static bool dhcp_offer(const struct seen *s, uint32_t xid) {
    return s->proto == IPPROTO_UDP && s->sport == 67 && s->dport == 68 && s->l4len >= UDP_LEN + 243 &&
           get32(s->l4 + UDP_LEN + 4) == xid;
}

static bool syn_to_guest(const struct seen *s, uint32_t port) {
    return s->proto == IPPROTO_TCP && s->dst == GUEST_IP && s->dport == port && (s->flags & (SYN | ACK)) == SYN;
}

static bool syn_ack_to_guest(const struct seen *s, uint32_t port) {
    return s->proto == IPPROTO_TCP && s->dst == GUEST_IP && s->dport == port && (s->flags & (SYN | ACK)) == (SYN | ACK);
}

static bool rst_to_guest(const struct seen *s, uint32_t port) {
    return s->proto == IPPROTO_TCP && s->dst == GUEST_IP && s->dport == port && (s->flags & RST);
}

static bool udp_to_guest(const struct seen *s, uint32_t port) {
    return s->proto == IPPROTO_UDP && s->dst == GUEST_IP && s->dport == port;
}

/* The guest's MAC in slirp's ARP table, as a guest's first ARP puts it there. */
static void guest_arps(struct net *n) {
    uint8_t f[NET_USER_MAX_FRAME];
    struct seen s;
    send_frame(n, f, arp_request(f, GATEWAY_IP));
    CHECK_MSG(expect(n, arp_reply, GATEWAY_IP, 3000, &s, f), "no ARP reply for 10.0.2.2");
}

/* ---- host sockets on 127.0.0.1 ---- */

static struct sockaddr_in loopback(uint16_t port) {
    return (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
}

static uint16_t port_of(int s) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    CHECK_EQ(getsockname(s, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

/* A listening TCP socket on 127.0.0.1, on a port the kernel picked. */
static int listener(int backlog) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = loopback(0);
    CHECK(s >= 0);
    CHECK_EQ(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    CHECK_EQ(listen(s, backlog), 0);
    return s;
}

/* A port free right now (the forwards are given numbers; parallel runs must not clash). */
static uint16_t free_port(int type) {
    int s = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = loopback(0);
    CHECK_EQ(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    uint16_t port = port_of(s);
    close(s);
    return port;
}

static int accept_within(int l, int ms) {
    struct pollfd p = {.fd = l, .events = POLLIN};
    return poll(&p, 1, ms) == 1 ? accept4(l, NULL, NULL, SOCK_CLOEXEC) : -1;
}

static int connect_to(int type, uint16_t port) {
    int s = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = loopback(port);
    CHECK(s >= 0);
    CHECK_MSG(connect(s, (struct sockaddr *)&a, sizeof a) == 0, "connect to 127.0.0.1:%u: %s", port, strerror(errno));
    return s;
}

static unsigned open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    unsigned n = 0;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

/* ---- the network's services ---- */

TEST(dhcp_offers_10_0_2_15) {
    struct net n = net_with("");
    uint8_t f[NET_USER_MAX_FRAME];
    struct seen s;
    send_frame(&n, f, dhcp_discover(f));
    CHECK_MSG(expect(&n, dhcp_offer, 0x12345678, 3000, &s, f), "no DHCPOFFER");
    const uint8_t *b = s.l4 + UDP_LEN;
    CHECK_EQ(b[0], 2);                    /* a reply */
    CHECK_EQ(get32(b + 16), GUEST_IP);    /* yiaddr */
    CHECK_EQ(get32(b + 236), 0x63825363); /* options follow, the message type first */
    CHECK_EQ(b[240], 53);
    CHECK_EQ(b[242], 2); /* DHCPOFFER */
    CHECK_EQ(s.src, GATEWAY_IP);
    net_stop(&n);
}

TEST(arp_for_the_gateway_is_answered) {
    struct net n = net_with("");
    guest_arps(&n);
    net_stop(&n);
}

TEST(guest_tcp_to_the_gateway_reaches_the_hosts_loopback) {
    struct net n = net_with("");
    int l = listener(4);
    uint16_t p = port_of(l);
    guest_arps(&n);
    uint8_t f[NET_USER_MAX_FRAME];
    struct seen s;
    send_frame(&n, f, tcp_segment(f, 40000, GATEWAY_IP, p, SYN));
    int c = accept_within(l, 3000);
    CHECK_MSG(c >= 0, "the listener on 127.0.0.1:%u got no connection", p);
    CHECK_MSG(expect(&n, syn_ack_to_guest, 40000, 3000, &s, f), "no SYN-ACK to the guest");
    CHECK_EQ(s.src, GATEWAY_IP);
    CHECK_EQ(s.sport, p);
    close(c);
    close(l);
    net_stop(&n);
}

TEST(hostfwd_tcp_reaches_the_guest) {
    uint16_t h = free_port(SOCK_STREAM);
    char opts[80];
    snprintf(opts, sizeof opts, ",hostfwd=tcp:127.0.0.1:%u-:2222", h);
    struct net n = net_with(opts);
    guest_arps(&n);
    int c = connect_to(SOCK_STREAM, h);
    uint8_t f[NET_USER_MAX_FRAME];
    struct seen s;
    CHECK_MSG(expect(&n, syn_to_guest, 2222, 3000, &s, f), "no SYN to 10.0.2.15:2222");
    close(c);
    net_stop(&n);
}

TEST(hostfwd_udp_reaches_the_guest) {
    uint16_t h = free_port(SOCK_DGRAM);
    char opts[80];
    snprintf(opts, sizeof opts, ",hostfwd=udp:127.0.0.1:%u-10.0.2.15:5353", h);
    struct net n = net_with(opts);
    guest_arps(&n);
    int c = connect_to(SOCK_DGRAM, h);
    CHECK_EQ(send(c, "hello", 5, 0), 5);
    uint8_t f[NET_USER_MAX_FRAME];
    struct seen s;
    CHECK_MSG(expect(&n, udp_to_guest, 5353, 3000, &s, f), "no datagram to 10.0.2.15:5353");
    CHECK_EQ(s.l4len, UDP_LEN + 5);
    CHECK(memcmp(s.l4 + UDP_LEN, "hello", 5) == 0);
    close(c);
    net_stop(&n);
}

TEST(restrict_keeps_the_guest_in_but_the_forwards_work) {
    uint16_t h = free_port(SOCK_STREAM);
    char opts[80];
    snprintf(opts, sizeof opts, ",restrict=on,hostfwd=tcp:127.0.0.1:%u-:22", h);
    struct net n = net_with(opts);
    int l = listener(4);
    uint16_t p = port_of(l);
    guest_arps(&n);
    uint8_t f[NET_USER_MAX_FRAME];
    struct seen s;
    send_frame(&n, f, tcp_segment(f, 40001, GATEWAY_IP, p, SYN));
    CHECK_MSG(expect(&n, rst_to_guest, 40001, 3000, &s, f), "no RST for the guest's SYN");
    CHECK_MSG(accept_within(l, 200) < 0, "restrict=on let the guest reach 127.0.0.1:%u", p);
    int c = connect_to(SOCK_STREAM, h);
    CHECK_MSG(expect(&n, syn_to_guest, 22, 3000, &s, f), "no SYN to 10.0.2.15:22 through the forward");
    close(c);
    close(l);
    net_stop(&n);
}

TEST(a_forward_on_a_port_in_use_is_refused_at_start) {
    int l = listener(1);
    char opts[80], err[200] = "";
    snprintf(opts, sizeof opts, ",hostfwd=tcp:127.0.0.1:%u-:22", port_of(l));
    struct net_user_config c = parsed(opts);
    async_loop_t *loop;
    int dev = -1;
    unsigned fds = open_fds();
    CHECK_EQ(async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &loop), ZX_OK);
    unsigned with_loop = open_fds();
    CHECK(net_user_start(async_loop_get_dispatcher(loop), &c, &dev, err, sizeof err) == NULL);
    CHECK_EQ(dev, -1);
    CHECK_MSG(strstr(err, "cannot listen: Address already in use") != NULL, "%s", err);
    CHECK_EQ(open_fds(), with_loop);
    async_loop_destroy(loop);
    CHECK_EQ(open_fds(), fds);
    close(l);
}

/* ---- limits ---- */

/* The guest's SYNs beyond the cap reach slirp not: half the fd limit, here 32 sockets. The
 * connections wait in the listener's backlog, never accepted: only slirp's sockets count. */
TEST(the_guests_sockets_are_capped) {
    struct rlimit r = {.rlim_cur = 64, .rlim_max = 64};
    CHECK_EQ(setrlimit(RLIMIT_NOFILE, &r), 0);
    CHECK_MSG(open_fds() < 20, "%u fds open before the test", open_fds());
    struct net n = net_with("");
    int l = listener(128);
    uint16_t p = port_of(l);
    guest_arps(&n);
    uint8_t f[NET_USER_MAX_FRAME];
    struct seen s;
    for (uint16_t i = 0; i < 48; i++) send_frame(&n, f, tcp_segment(f, (uint16_t)(41000 + i), GATEWAY_IP, p, SYN));
    bool answered[48] = {0};
    unsigned syn_acks = 0;
    int64_t end = now_ms() + 2000;
    for (size_t len; (len = recv_frame(&n, f, (int)(end - now_ms()))) > 0 && now_ms() < end;) {
        if (parse(f, len, &s) && s.proto == IPPROTO_TCP && (s.flags & (SYN | ACK)) == (SYN | ACK) && s.dport >= 41000 &&
            s.dport < 41048 && !answered[s.dport - 41000]) {
            answered[s.dport - 41000] = true;
            syn_acks++;
        }
    }
    CHECK_EQ(syn_acks, 32);
    close(l);
    net_stop(&n);
}

/* A guest that reads nothing: slirp's frames are dropped once the socket pair is full, the
 * loop goes on, and the guest hears answers again as soon as it reads. A frame too long, and
 * one too short, are dropped too. */
TEST(a_device_that_does_not_read_loses_frames_not_the_loop) {
    struct net n = net_with("");
    uint8_t f[NET_USER_MAX_FRAME];
    struct seen s;
    size_t len = arp_request(f, GATEWAY_IP);
    for (int i = 0; i < 3000; i++) {
        uint8_t msg[NET_USER_HDR_LEN + 64] = {0};
        memcpy(msg + NET_USER_HDR_LEN, f, len);
        struct pollfd p = {.fd = n.dev, .events = POLLOUT};
        CHECK_EQ(poll(&p, 1, 3000), 1);
        CHECK_EQ(send(n.dev, msg, NET_USER_HDR_LEN + len, MSG_DONTWAIT), (ssize_t)(NET_USER_HDR_LEN + len));
    }
    unsigned replies = 0;
    while (recv_frame(&n, f, 500)) replies++;
    CHECK_MSG(replies > 0 && replies < 3000, "%u replies to 3000 ARP requests", replies);
    /* an ARP request padded to the longest frame is answered; one byte more, and it is not */
    static uint8_t big[NET_USER_MAX_FRAME + 1];
    memcpy(big + NET_USER_HDR_LEN, f, arp_request(f, GATEWAY_IP));
    CHECK_EQ(send(n.dev, big, NET_USER_MAX_FRAME, MSG_DONTWAIT), NET_USER_MAX_FRAME);
    CHECK_MSG(expect(&n, arp_reply, GATEWAY_IP, 3000, &s, f), "no ARP reply to a frame of the longest length");
    CHECK_EQ(send(n.dev, big, sizeof big, MSG_DONTWAIT), (ssize_t)sizeof big);
    CHECK_EQ(send(n.dev, big, NET_USER_HDR_LEN + 3, MSG_DONTWAIT), NET_USER_HDR_LEN + 3);
    guest_arps(&n);
    CHECK(!expect(&n, arp_reply, GATEWAY_IP, 200, &s, f)); /* one reply: the frame too long was not read */
    net_stop(&n);
}

/* ---- stop ---- */

/* Open connections both ways, a forward's listener, the socket pair: nothing outlives it. */
static void open_connections(struct net *n, uint16_t h, int *host_side) {
    int l = listener(4);
    uint16_t p = port_of(l);
    uint8_t f[NET_USER_MAX_FRAME];
    struct seen s;
    guest_arps(n);
    send_frame(n, f, tcp_segment(f, 40002, GATEWAY_IP, p, SYN));
    host_side[0] = accept_within(l, 3000);
    CHECK(host_side[0] >= 0);
    CHECK(expect(n, syn_ack_to_guest, 40002, 3000, &s, f));
    host_side[1] = connect_to(SOCK_STREAM, h);
    CHECK(expect(n, syn_to_guest, 22, 3000, &s, f));
    close(l);
}

TEST(stop_on_the_loop_thread_closes_every_socket) {
    unsigned fds = open_fds();
    uint16_t h = free_port(SOCK_STREAM);
    char opts[80];
    snprintf(opts, sizeof opts, ",hostfwd=tcp:127.0.0.1:%u-:22,hostfwd=udp:127.0.0.1:%u-:53", h, h);
    struct net n = net_with(opts);
    int host_side[2];
    open_connections(&n, h, host_side);
    net_stop(&n);
    close(host_side[0]);
    close(host_side[1]);
    CHECK_EQ(open_fds(), fds);
    /* the ports are free again (the forwarded connection's TIME_WAIT aside) */
    int one = 1, t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = loopback(h);
    CHECK_EQ(setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), 0);
    CHECK_EQ(bind(t, (struct sockaddr *)&a, sizeof a), 0);
    CHECK_EQ(listen(t, 1), 0);
    CHECK_EQ(bind(u, (struct sockaddr *)&a, sizeof a), 0);
    close(t);
    close(u);
}

/* The machine's order: the loop destroyed first (its waits canceled), then the backend. */
TEST(stop_after_the_loop_is_gone_closes_every_socket) {
    unsigned fds = open_fds();
    uint16_t h = free_port(SOCK_STREAM);
    char opts[80];
    snprintf(opts, sizeof opts, ",hostfwd=tcp:127.0.0.1:%u-:22", h);
    struct net n = net_with(opts);
    int host_side[2];
    open_connections(&n, h, host_side);
    async_loop_destroy(n.loop);
    net_user_stop(n.u);
    close(n.dev);
    close(host_side[0]);
    close(host_side[1]);
    CHECK_EQ(open_fds(), fds);
}

/* Started and stopped before the loop ever ran its first turn. */
TEST(stop_before_the_first_turn) {
    unsigned fds = open_fds();
    async_loop_t *loop;
    CHECK_EQ(async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &loop), ZX_OK);
    struct net_user_config c = parsed("");
    char err[200];
    int dev;
    struct net_user *u = net_user_start(async_loop_get_dispatcher(loop), &c, &dev, err, sizeof err);
    CHECK_MSG(u != NULL, "%s", err);
    net_user_stop(u);
    close(dev);
    async_loop_destroy(loop);
    CHECK_EQ(open_fds(), fds);
}

/* ---- a link's MMDS stack (net_user_mmds_config) ---- */

#define MMDS_IP 0xa9fea9feu

static int unix_listener(char *path, size_t len) {
    snprintf(path, len, "/tmp/bellhop-mmds-test-%d.sock", getpid());
    unlink(path);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    CHECK(s >= 0);
    CHECK_EQ(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    CHECK_EQ(listen(s, 4), 0);
    return s;
}

/* An MMDS stack whose forward goes to a Unix listener of the test's (the server's socket). */
struct mmds_link {
    char path[108];
    int l;
    struct net n;
};

static void mmds_up(struct mmds_link *m) {
    m->l = unix_listener(m->path, sizeof m->path);
    struct net_user_config c;
    char err[200];
    CHECK_MSG(net_user_mmds_config(MMDS_IP, m->path, &c, err, sizeof err) == 0, "%s", err);
    net_start(&m->n, &c);
}

/* Up, and the guest's MAC in its ARP table by the guest's ARP for the MMDS address. */
static void mmds_up_and_arped(struct mmds_link *m) {
    mmds_up(m);
    uint8_t f[NET_USER_MAX_FRAME];
    struct seen s;
    send_frame(&m->n, f, arp_request(f, MMDS_IP));
    CHECK_MSG(expect(&m->n, arp_reply, MMDS_IP, 3000, &s, f), "no ARP reply for 169.254.169.254");
}

static void mmds_down(struct mmds_link *m) {
    net_stop(&m->n);
    close(m->l);
    unlink(m->path);
}

/* A TCP segment from the guest to dst:dport with these numbers and payload. */
static size_t tcp_to(uint8_t *f, uint16_t sport, uint32_t dst, uint16_t dport, uint8_t flags, uint32_t seq,
                     uint32_t ack, const char *data) {
    static const uint8_t any_mac[6] = {0x52, 0x55, 0xa9, 0xfe, 0xa9, 0xfe};
    size_t dlen = data ? strlen(data) : 0, n = eth(f, any_mac, 0x0800);
    ipv4(f + n, IPPROTO_TCP, GUEST_IP, dst, TCP_LEN + dlen);
    uint8_t *t = f + n + IP_LEN;
    memset(t, 0, TCP_LEN);
    put16(t, sport), put16(t + 2, dport), put32(t + 4, seq), put32(t + 8, ack);
    t[12] = (TCP_LEN / 4) << 4;
    t[13] = flags;
    put16(t + 14, 65535);
    if (dlen) memcpy(t + TCP_LEN, data, dlen);
    uint8_t pseudo[12];
    put32(pseudo, GUEST_IP), put32(pseudo + 4, dst), pseudo[8] = 0, pseudo[9] = IPPROTO_TCP;
    put16(pseudo + 10, (uint16_t)(TCP_LEN + dlen));
    put16(t + 16, fold(sum16(t, TCP_LEN + dlen, sum16(pseudo, sizeof pseudo, 0))));
    return n + IP_LEN + TCP_LEN + dlen;
}

static bool data_to_guest(const struct seen *s, uint32_t port) {
    return s->proto == IPPROTO_TCP && s->dst == GUEST_IP && s->dport == port && s->l4len > TCP_LEN;
}

TEST(mmds_answers_arp_for_its_address_and_for_nothing_else) {
    struct mmds_link m;
    mmds_up_and_arped(&m);
    uint8_t f[NET_USER_MAX_FRAME];
    struct seen s;
    send_frame(&m.n, f, arp_request(f, GATEWAY_IP));
    CHECK_MSG(!expect(&m.n, arp_reply, GATEWAY_IP, 300, &s, f), "the MMDS stack answered ARP for 10.0.2.2");
    mmds_down(&m);
}

TEST(mmds_tcp_port_80_reaches_the_servers_unix_socket) {
    struct mmds_link m;
    mmds_up_and_arped(&m);
    uint8_t f[NET_USER_MAX_FRAME];
    struct seen s;
    send_frame(&m.n, f, tcp_to(f, 41000, MMDS_IP, 80, SYN, 5000, 0, NULL));
    CHECK_MSG(expect(&m.n, syn_ack_to_guest, 41000, 3000, &s, f), "no SYN-ACK from 169.254.169.254:80");
    CHECK_EQ(s.src, MMDS_IP);
    uint32_t their = get32(s.l4 + 4) + 1;
    send_frame(&m.n, f, tcp_to(f, 41000, MMDS_IP, 80, ACK, 5001, their, "GET / HTTP/1.0\r\n\r\n"));
    int c = accept_within(m.l, 3000);
    CHECK_MSG(c >= 0, "no connection on the MMDS server's socket");
    char got[64] = "";
    struct pollfd p = {.fd = c, .events = POLLIN};
    CHECK_EQ(poll(&p, 1, 3000), 1);
    CHECK(read(c, got, sizeof got - 1) > 0);
    CHECK_MSG(strncmp(got, "GET / HTTP/1.0", 14) == 0, "the server got '%s'", got);
    static const char answer[] = "HTTP/1.0 200 OK\r\n\r\nami-12345678";
    CHECK_EQ(write(c, answer, sizeof answer - 1), (ssize_t)(sizeof answer - 1));
    CHECK_MSG(expect(&m.n, data_to_guest, 41000, 3000, &s, f), "the answer did not reach the guest");
    CHECK(s.l4len - TCP_LEN == sizeof answer - 1 && memcmp(s.l4 + TCP_LEN, answer, sizeof answer - 1) == 0);
    close(c);
    mmds_down(&m);
}

TEST(mmds_lets_no_other_flow_out) {
    int tcp = listener(4);
    uint16_t p = port_of(tcp);
    struct mmds_link m;
    mmds_up_and_arped(&m);
    uint8_t f[NET_USER_MAX_FRAME];
    struct seen s;
    /* its other port, its own address, the host's loopback, the world: none opens anything */
    send_frame(&m.n, f, tcp_to(f, 41001, MMDS_IP, 81, SYN, 1, 0, NULL));
    send_frame(&m.n, f, tcp_to(f, 41002, net_user_mmds_host(MMDS_IP), p, SYN, 1, 0, NULL));
    send_frame(&m.n, f, tcp_to(f, 41003, 0x7f000001u, p, SYN, 1, 0, NULL));
    CHECK(!expect(&m.n, syn_ack_to_guest, 41001, 300, &s, f));
    CHECK_EQ(accept_within(tcp, 300), -1);
    CHECK_EQ(accept_within(m.l, 0), -1);
    mmds_down(&m);
    close(tcp);
}

TEST(mmds_addresses_outside_link_local_are_refused) {
    struct net_user_config c;
    char err[200];
    CHECK(net_user_mmds_config(0x0a000202u, "/x", &c, err, sizeof err) != 0);
    CHECK(strstr(err, "link-local") != NULL);
    CHECK(net_user_mmds_config(0xa9fe0000u, "/x", &c, err, sizeof err) != 0);
    CHECK(net_user_mmds_config(0xa9feffffu, "/x", &c, err, sizeof err) != 0);
    CHECK(net_user_mmds_config(0xa9fe0001u, "/x", &c, err, sizeof err) == 0);
    CHECK(net_user_mmds_host(0xa9fe0001u) != 0xa9fe0001u);
    CHECK(net_user_mmds_host(0xa9fefeffu) != 0xa9feffffu); /* never its broadcast */
    char longpath[200];
    memset(longpath, 'a', sizeof longpath - 1), longpath[sizeof longpath - 1] = 0;
    CHECK(net_user_mmds_config(MMDS_IP, longpath, &c, err, sizeof err) != 0);
}

/* Half-open connections to MMDS hold slirp's memory with no host socket to cap them: past
 * NET_USER_MMDS_SYNS_PER_S a second the guest's SYNs are dropped; the next second answers. */
TEST(mmds_syn_floods_are_bounded_and_the_stack_goes_on) {
    struct mmds_link m;
    mmds_up_and_arped(&m);
    uint8_t f[NET_USER_MAX_FRAME];
    struct seen s;
    /* at the start of a second, so that the flood falls within one */
    int64_t second = zx_clock_get_monotonic() / ZX_SEC(1);
    while (zx_clock_get_monotonic() / ZX_SEC(1) == second) usleep(1000);
    unsigned answered = 0;
    for (unsigned i = 0; i < 4 * NET_USER_MMDS_SYNS_PER_S; i++) {
        send_frame(&m.n, f, tcp_to(f, (uint16_t)(20000 + i), MMDS_IP, 80, SYN, 1, 0, NULL));
        for (size_t len; (len = recv_frame(&m.n, f, 0)) != 0;)
            answered += parse(f, len, &s) && s.proto == IPPROTO_TCP && (s.flags & (SYN | ACK)) == (SYN | ACK);
    }
    for (size_t len; (len = recv_frame(&m.n, f, 200)) != 0;)
        answered += parse(f, len, &s) && s.proto == IPPROTO_TCP && (s.flags & (SYN | ACK)) == (SYN | ACK);
    CHECK_MSG(answered > 0 && answered <= 2 * NET_USER_MMDS_SYNS_PER_S, "%u SYN-ACKs for %u SYNs", answered,
              4 * NET_USER_MMDS_SYNS_PER_S);
    sleep(1);
    send_frame(&m.n, f, tcp_to(f, 30000, MMDS_IP, 80, SYN, 1, 0, NULL));
    CHECK_MSG(expect(&m.n, syn_ack_to_guest, 30000, 3000, &s, f), "no SYN-ACK a second after the flood");
    mmds_down(&m);
}

/* A fragment that is not its datagram's first, with no first before it: one frame that ends
 * libslirp 4.7 (in its reassembly) is dropped before it; in order, fragments still pass: the
 * gateway answers a ping sent in two. */
static size_t fragment(uint8_t *f, uint32_t dst, uint16_t id, uint16_t flags_offset, const uint8_t *part, size_t len,
                       size_t total) {
    static const uint8_t gateway_mac[6] = {0x52, 0x55, 0x0a, 0x00, 0x02, 0x02};
    size_t n = eth(f, gateway_mac, 0x0800);
    ipv4(f + n, IPPROTO_ICMP, GUEST_IP, dst, len);
    put16(f + n + 4, id), put16(f + n + 6, flags_offset);
    put16(f + n + 10, 0), put16(f + n + 10, fold(sum16(f + n, IP_LEN, 0)));
    memcpy(f + n + IP_LEN, part, len);
    (void)total;
    return n + IP_LEN + len;
}

static bool echo_reply(const struct seen *s, uint32_t id) {
    return s->proto == IPPROTO_ICMP && s->l4len >= 8 && s->l4[0] == 0 && get16(s->l4 + 4) == id;
}

TEST(a_lone_trailing_fragment_does_not_end_slirp) {
    struct net n = net_with(",restrict=on");
    guest_arps(&n);
    uint8_t f[NET_USER_MAX_FRAME], icmp[64] = {8, 0, 0, 0, 0x12, 0x34, 0, 1};
    struct seen s;
    for (int i = 0; i < 3; i++) send_frame(&n, f, fragment(f, GATEWAY_IP, 77, 8 /* offset 64, last */, icmp, 64, 128));
    put16(icmp + 2, fold(sum16(icmp, sizeof icmp, sum16(icmp, sizeof icmp, 0)))); /* both halves alike */
    send_frame(&n, f, fragment(f, GATEWAY_IP, 78, 0x2000 /* first, more */, icmp, 64, 128));
    icmp[2] = icmp[3] = 0;
    uint8_t rest[64];
    memcpy(rest, icmp, sizeof rest);
    send_frame(&n, f, fragment(f, GATEWAY_IP, 78, 8, rest, 64, 128));
    CHECK_MSG(expect(&n, echo_reply, 0x1234, 3000, &s, f), "no echo reply to a ping in two fragments");
    net_stop(&n);
}
