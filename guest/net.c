/* virtio-net, the driver's side, as much as a self-test needs: a frame goes out from one
 * buffer with vdev_request; frames come into RX_SLOTS buffers kept in the receive queue, each
 * given back as soon as its frame is copied out. A frame that is not the answer awaited is
 * dropped, as a host's stack drops what is of no interest to it; an answer is checked field by
 * field (addresses, the IPv4 header's checksum, the DHCP transaction) before it counts. */
#include "guest/net.h"
#include "guest/irq.h"

enum { RXQ, TXQ };
#define F_MAC 5
#define CONFIG 0x100
#define HDR_LEN 12 /* the virtio_net_hdr (num_buffers included) before every frame */
#define RX_SLOTS 8
#define RX_BUF 2048 /* a 1514-byte frame and its header */
#define MIN_FRAME 60
#define WAIT (3 * IRQ_TICKS_PER_SEC) /* for each answer: slirp's come at once */
#define ETH_IPV4 0x0800
#define ETH_ARP 0x0806
#define IP_UDP 17
#define BOOTPS 67
#define BOOTPC 68
enum { DHCPDISCOVER = 1, DHCPOFFER = 2, DHCPREQUEST = 3, DHCPACK = 5, DHCPNAK = 6 };
enum { OPT_PAD = 0, OPT_REQUESTED_IP = 50, OPT_TYPE = 53, OPT_SERVER_ID = 54, OPT_PARAMS = 55, OPT_END = 255 };

static const uint8_t everyone[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
static const uint8_t gateway[4] = {10, 0, 2, 2}, expected[4] = {10, 0, 2, 15}, all_ones[4] = {255, 255, 255, 255};
/* the gateway's MAC on slirp's network (--net user): 52:55 and its address */
static const uint8_t slirp_gateway[6] = {0x52, 0x55, 10, 0, 2, 2};
static const uint8_t magic[4] = {99, 130, 83, 99};

struct eth {
    uint8_t dst[6], src[6];
    uint16_t type;
} __attribute__((packed));

struct arp_frame {
    struct eth eth;
    uint16_t htype, ptype;
    uint8_t hlen, plen;
    uint16_t op;
    uint8_t sha[6], spa[4], tha[6], tpa[4];
} __attribute__((packed));

struct ipv4 {
    uint8_t vhl, tos;
    uint16_t len, id, frag;
    uint8_t ttl, proto;
    uint16_t sum;
    uint8_t src[4], dst[4];
} __attribute__((packed));

struct udp {
    uint16_t sport, dport, len, sum;
} __attribute__((packed));

struct bootp {
    uint8_t op, htype, hlen, hops;
    uint32_t xid; /* as the client wrote it: compared, never read as a number */
    uint16_t secs, flags;
    uint8_t ciaddr[4], yiaddr[4], siaddr[4], giaddr[4], chaddr[16], sname[64], file[128], cookie[4];
    uint8_t options[308]; /* to 576 bytes with the IP and UDP headers: what every server takes */
} __attribute__((packed));

struct dhcp_frame {
    struct eth eth;
    struct ipv4 ip;
    struct udp udp;
    struct bootp b;
} __attribute__((packed));

/* What a DHCP answer says: its message type, the address it gives, the server's. */
struct dhcp_answer {
    uint8_t type, yiaddr[4], server[4];
};

static struct {
    struct vdev *d;
    unsigned rx_slots;
    uint8_t mac[6];
    uint32_t xid;
} net;
static uint8_t rx_bufs[RX_SLOTS][RX_BUF];
static uint8_t in[RX_BUF]; /* the frame being looked at */
static struct {
    uint8_t hdr[HDR_LEN]; /* all zero: no offloads */
    union {
        struct arp_frame arp;
        struct dhcp_frame dhcp;
        uint8_t least[MIN_FRAME];
    };
} out;

static uint16_t be16(uint16_t v) { return __builtin_bswap16(v); }

/* The Internet checksum of n bytes (even n), in host order: 0 over a header that carries it. */
static uint16_t checksum(const void *p, size_t n) {
    const uint8_t *b = p;
    uint32_t sum = 0;
    for (size_t i = 0; i + 1 < n; i += 2) sum += (uint32_t)b[i] << 8 | b[i + 1];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static void post_rx(unsigned slot) {
    vdev_post(net.d, RXQ, slot, &(struct vbuf){rx_bufs[slot], RX_BUF, true}, 1);
}

/* out's frame of len bytes (padded to Ethernet's least), waiting for the device to take it. */
static bool send_frame(size_t len) {
    if (len < MIN_FRAME) len = MIN_FRAME;
    return vdev_request(net.d, TXQ, &(struct vbuf){&out, (uint32_t)(HDR_LEN + len), false}, 1, false) == 0;
}

/* The next frame to arrive, copied into `in` and its buffer given back: its length past the
 * virtio header, or 0 when none came by the deadline (in irq_ticks). */
static uint32_t next_frame(uint64_t deadline) {
    while (irq_ticks <= deadline && !vdev_failed(net.d)) {
        uint32_t len;
        int slot = vdev_poll(net.d, RXQ, &len);
        if (slot == -2) {
            irq_wait();
            continue;
        }
        if (slot < 0 || (unsigned)slot >= net.rx_slots) continue; /* names no buffer of ours */
        uint32_t n = len > RX_BUF ? RX_BUF - HDR_LEN : len > HDR_LEN ? len - HDR_LEN : 0;
        memcpy(in, rx_bufs[slot] + HDR_LEN, n);
        post_rx((unsigned)slot);
        vdev_kick(net.d, RXQ);
        if (n >= sizeof(struct eth)) return n;
    }
    return 0;
}

static void eth_header(struct eth *e, uint16_t type) {
    memcpy(e->dst, everyone, 6);
    memcpy(e->src, net.mac, 6);
    e->type = be16(type);
}

/* Who has the gateway's address? Asked from 0.0.0.0, as a probe is: the guest has none yet. */
static bool send_arp_request(void) {
    memset(&out, 0, sizeof out);
    struct arp_frame *f = &out.arp;
    eth_header(&f->eth, ETH_ARP);
    f->htype = be16(1), f->ptype = be16(ETH_IPV4), f->hlen = 6, f->plen = 4, f->op = be16(1);
    memcpy(f->sha, net.mac, 6);
    memcpy(f->tpa, gateway, 4);
    return send_frame(sizeof *f);
}

/* The gateway's ARP reply to us, in `in` (len bytes): its MAC into mac. */
static bool arp_reply(uint32_t len, uint8_t mac[6]) {
    const struct arp_frame *f = (const void *)in;
    if (len < sizeof *f || f->eth.type != be16(ETH_ARP) || f->op != be16(2) || memcmp(f->spa, gateway, 4) != 0 ||
        memcmp(f->tha, net.mac, 6) != 0)
        return false;
    memcpy(mac, f->sha, 6);
    return true;
}

static uint8_t *put_option(uint8_t *o, uint8_t code, const uint8_t ip[4]) {
    o[0] = code, o[1] = 4;
    memcpy(o + 2, ip, 4);
    return o + 6;
}

/* A DHCP message from 0.0.0.0:68 to everyone's port 67 (the answer asked for by broadcast:
 * there is no address to send it to yet); a REQUEST names what `offer` offered, and its server. */
static bool send_dhcp(uint8_t type, const struct dhcp_answer *offer) {
    memset(&out, 0, sizeof out);
    struct dhcp_frame *f = &out.dhcp;
    eth_header(&f->eth, ETH_IPV4);
    uint16_t ip_len = sizeof f->ip + sizeof f->udp + sizeof f->b;
    f->ip = (struct ipv4){.vhl = 0x45, .len = be16(ip_len), .ttl = 64, .proto = IP_UDP};
    memcpy(f->ip.dst, all_ones, 4);
    f->ip.sum = be16(checksum(&f->ip, sizeof f->ip));
    f->udp = (struct udp){be16(BOOTPC), be16(BOOTPS), be16(sizeof f->udp + sizeof f->b), 0}; /* (0: no checksum) */
    f->b.op = 1, f->b.htype = 1, f->b.hlen = 6, f->b.xid = net.xid, f->b.flags = be16(0x8000);
    memcpy(f->b.chaddr, net.mac, 6);
    memcpy(f->b.cookie, magic, 4);
    uint8_t *o = f->b.options;
    *o++ = OPT_TYPE, *o++ = 1, *o++ = type;
    if (type == DHCPREQUEST) o = put_option(put_option(o, OPT_REQUESTED_IP, offer->yiaddr), OPT_SERVER_ID, offer->server);
    static const uint8_t params[] = {OPT_PARAMS, 4, 1, 3, 6, 51}; /* netmask, router, DNS, lease time */
    memcpy(o, params, sizeof params);
    o[sizeof params] = OPT_END;
    return send_frame(sizeof *f);
}

/* A DHCP server's answer to our transaction, in `in` (len bytes), into *a. */
static bool dhcp_answer(uint32_t len, struct dhcp_answer *a) {
    const struct eth *e = (const void *)in;
    const struct ipv4 *ip = (const void *)(in + sizeof *e);
    if (len < sizeof *e + sizeof *ip || e->type != be16(ETH_IPV4) || ip->vhl >> 4 != 4 || ip->proto != IP_UDP)
        return false;
    uint32_t ihl = (ip->vhl & 15) * 4u, ip_len = be16(ip->len);
    size_t least = ihl + sizeof(struct udp) + offsetof(struct bootp, options); /* to the options */
    if (ihl < sizeof *ip || ip_len > len - sizeof *e || ip_len < least || checksum(ip, ihl) != 0)
        return false;
    const struct udp *u = (const void *)((const uint8_t *)ip + ihl);
    const struct bootp *b = (const void *)(u + 1);
    if (u->dport != be16(BOOTPC) || b->op != 2 || b->xid != net.xid || memcmp(b->chaddr, net.mac, 6) != 0 ||
        memcmp(b->cookie, magic, 4) != 0)
        return false;
    *a = (struct dhcp_answer){0};
    memcpy(a->yiaddr, b->yiaddr, 4);
    const uint8_t *o = b->options, *end = (const uint8_t *)ip + ip_len;
    while (o < end && *o != OPT_END) {
        if (*o == OPT_PAD) {
            o++;
            continue;
        }
        if (end - o < 2 || end - o - 2 < o[1]) break;
        if (o[0] == OPT_TYPE && o[1] == 1) a->type = o[2];
        if (o[0] == OPT_SERVER_ID && o[1] == 4) memcpy(a->server, o + 2, 4);
        o += 2 + o[1];
    }
    return a->type != 0;
}

static bool await_arp(uint8_t mac[6]) {
    uint64_t deadline = irq_ticks + WAIT;
    for (uint32_t len; (len = next_frame(deadline)) > 0;)
        if (arp_reply(len, mac)) return true;
    return false;
}

static bool await_dhcp(struct dhcp_answer *a) {
    uint64_t deadline = irq_ticks + WAIT;
    for (uint32_t len; (len = next_frame(deadline)) > 0;)
        if (dhcp_answer(len, a)) return true;
    return false;
}

static bool same_ip(const uint8_t a[4], const uint8_t b[4]) { return memcmp(a, b, 4) == 0; }

/* DISCOVER, an OFFER, REQUEST, ACK: false at the first step that goes otherwise, the detail
 * saying how far it got. On slirp's network (`strict`) the offer must be 10.0.2.15 from the
 * gateway; on another's (passt's: the host's own address, from its gateway) any address from
 * any server will do, the detail saying which. */
static bool dhcp(bool strict, char *detail, size_t size) {
    struct dhcp_answer offer, ack;
    net.xid = (uint32_t)rdtsc();
    if (!send_dhcp(DHCPDISCOVER, NULL) || !await_dhcp(&offer)) {
        snprintf(detail, size, "no answer to DHCPDISCOVER");
        return false;
    }
    const uint8_t *y = offer.yiaddr, *s = offer.server;
    int n = snprintf(detail, size, "%s %u.%u.%u.%u from %u.%u.%u.%u", offer.type == DHCPOFFER ? "offer" : "not an offer",
                     y[0], y[1], y[2], y[3], s[0], s[1], s[2], s[3]);
    if (offer.type != DHCPOFFER || (strict && (!same_ip(y, expected) || !same_ip(s, gateway)))) return false;
    bool answered = send_dhcp(DHCPREQUEST, &offer) && await_dhcp(&ack);
    bool acked = answered && ack.type == DHCPACK && same_ip(ack.yiaddr, y);
    if ((size_t)n < size)
        snprintf(detail + n, size - (size_t)n, ", %s",
                 acked ? "ack" : !answered ? "no answer to DHCPREQUEST" : ack.type == DHCPNAK ? "nak" : "a wrong ack");
    return acked;
}

static void mac_text(char text[18], const uint8_t m[6]) {
    snprintf(text, 18, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

void net_selftest(struct vdev *d, bool exchange, net_result_fn *result) {
    net.d = d;
    for (unsigned i = 0; i < 6; i++) net.mac[i] = *(volatile uint8_t *)(uintptr_t)(d->base + CONFIG + i);
    net.rx_slots = d->vqs[RXQ].num < RX_SLOTS ? d->vqs[RXQ].num : RX_SLOTS;
    for (unsigned i = 0; i < net.rx_slots; i++) post_rx(i);
    vdev_kick(d, RXQ);
    static const uint8_t zero[6];
    bool has_mac = d->features >> F_MAC & 1, unicast = !(net.mac[0] & 1) && memcmp(net.mac, zero, 6) != 0;
    bool sent = send_arp_request();
    char detail[96], mac[18];
    mac_text(mac, net.mac);
    snprintf(detail, sizeof detail, "mac %s%s, ARP request for 10.0.2.2 %s", mac, has_mac ? "" : " (no F_MAC)",
             sent ? "sent" : "not taken");
    result("net-link", has_mac && unicast && sent, detail);
    if (!exchange) return;
    uint8_t gw[6];
    bool arp = await_arp(gw);
    if (arp) mac_text(mac, gw);
    snprintf(detail, sizeof detail, "%s%s", arp ? "10.0.2.2 is at " : "no reply from 10.0.2.2", arp ? mac : "");
    result("net-arp", arp, detail);
    /* (the network is told by who answered for 10.0.2.2: the guest has no say in it) */
    bool ok = dhcp(!arp || memcmp(gw, slirp_gateway, 6) == 0, detail, sizeof detail);
    result("net-dhcp", ok, detail);
}
