/* net_user_parse (net/user.h): the options of QEMU's -netdev user that bellhop has, in QEMU's
 * syntax, so that a command line moves between the two unchanged. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "base/error_text.h"
#include "net/user.h"

#define SHOWN 64 /* characters of an option quoted in an error, at most */
#define Q(s) (int)((s).n < SHOWN ? (s).n : SHOWN), (s).p /* a span for %.*s */
#define GUEST_NET 0x0a000200u /* 10.0.2.0/24, host order */
#define FWD_SYNTAX "[tcp|udp]:[ADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT"

/* A piece of the option text: not NUL-terminated. */
struct span {
    const char *p;
    size_t n;
};

static bool is(struct span s, const char *word) { return s.n == strlen(word) && memcmp(s.p, word, s.n) == 0; }

/* Splits *s at its first sep: *head before it, *s after it. false when sep is not there. */
static bool split(struct span *s, char sep, struct span *head) {
    const char *at = memchr(s->p, sep, s->n);
    if (!at) return false;
    *head = (struct span){s->p, (size_t)(at - s->p)};
    s->n -= head->n + 1;
    s->p = at + 1;
    return true;
}

/* 1..65535 in decimal digits only. */
static bool port(struct span s, uint16_t *out) {
    unsigned v = 0;
    if (s.n == 0 || s.n > 5) return false;
    for (size_t i = 0; i < s.n; i++) {
        if (s.p[i] < '0' || s.p[i] > '9') return false;
        v = v * 10 + (unsigned)(s.p[i] - '0');
    }
    if (v == 0 || v > 65535) return false;
    *out = (uint16_t)v;
    return true;
}

/* A dotted quad (network order), or 0 for an empty span. */
static bool address(struct span s, uint32_t *out) {
    char text[16];
    struct in_addr a;
    *out = 0;
    if (s.n == 0) return true;
    if (s.n >= sizeof text) return false;
    memcpy(text, s.p, s.n);
    text[s.n] = '\0';
    if (inet_pton(AF_INET, text, &a) != 1) return false;
    *out = a.s_addr;
    return true;
}

/* In 10.0.2.0/24, and neither its network, broadcast, gateway (.2) nor DNS (.3) address. */
static bool guest_address(uint32_t a) {
    uint32_t h = ntohl(a), host = h & 0xff;
    return (h & 0xffffff00u) == GUEST_NET && host != 0 && host != 255 && host != 2 && host != 3;
}

static bool clash(const struct net_user_fwd *a, const struct net_user_fwd *b) {
    return a->udp == b->udp && a->host_port == b->host_port &&
           (a->host_addr == b->host_addr || !a->host_addr || !b->host_addr);
}

static int parse_fwd(struct span v, struct net_user_config *c, char *err, size_t errlen) {
    struct span all = v, proto, haddr, hport, gaddr;
    struct net_user_fwd f = {0};
    if (!split(&v, ':', &proto) || !split(&v, ':', &haddr) || !split(&v, '-', &hport) || !split(&v, ':', &gaddr))
        return error_text(err, errlen, "hostfwd=%.*s: expected %s", Q(all), FWD_SYNTAX);
    if (!is(proto, "tcp") && !is(proto, "udp") && proto.n)
        return error_text(err, errlen, "hostfwd=%.*s: protocol %.*s: expected tcp or udp", Q(all), Q(proto));
    f.udp = is(proto, "udp");
    if (!address(haddr, &f.host_addr))
        return error_text(err, errlen, "hostfwd=%.*s: %.*s: not an IPv4 address", Q(all), Q(haddr));
    if (!port(hport, &f.host_port) || !port(v, &f.guest_port))
        return error_text(err, errlen, "hostfwd=%.*s: a port is 1 to 65535", Q(all));
    if (!address(gaddr, &f.guest_addr) || (f.guest_addr && !guest_address(f.guest_addr)))
        return error_text(err, errlen, "hostfwd=%.*s: %.*s: not a guest address (10.0.2.4 to 10.0.2.254, or .1)",
                          Q(all), Q(gaddr));
    for (unsigned i = 0; i < c->nfwd; i++)
        if (clash(&c->fwd[i], &f))
            return error_text(err, errlen, "hostfwd=%.*s: %s port %u is forwarded twice", Q(all),
                              f.udp ? "udp" : "tcp", f.host_port);
    if (c->nfwd == NET_USER_MAX_FWD)
        return error_text(err, errlen, "more than %d hostfwd options", NET_USER_MAX_FWD);
    c->fwd[c->nfwd++] = f;
    return 0;
}

static int parse_option(struct span o, struct net_user_config *c, char *err, size_t errlen) {
    struct span key, value = o;
    if (o.n == 0) return error_text(err, errlen, "an empty option (two commas, or one at the end)");
    if (!split(&value, '=', &key))
        return error_text(err, errlen, "%.*s: expected hostfwd=... or restrict=on|off", Q(o));
    if (is(key, "hostfwd")) return parse_fwd(value, c, err, errlen);
    if (!is(key, "restrict"))
        return error_text(err, errlen, "unknown option %.*s (hostfwd and restrict are known)", Q(key));
    if (!is(value, "on") && !is(value, "off"))
        return error_text(err, errlen, "restrict=%.*s: expected on or off", Q(value));
    c->restricted = is(value, "on");
    return 0;
}

/* Control characters would break the one-line error that quotes them. */
static bool printable(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f) return false;
    return true;
}

int net_user_parse(const char *opts, struct net_user_config *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    if (!opts || !*opts) return 0;
    if (!printable(opts)) return error_text(err, errlen, "a control or non-ASCII character in the options");
    if (*opts != ',') return error_text(err, errlen, "%.*s: expected ,OPTION after user", SHOWN, opts);
    struct span rest = {opts + 1, strlen(opts) - 1}, o;
    while (split(&rest, ',', &o))
        if (parse_option(o, c, err, errlen) != 0) return -1;
    return parse_option(rest, c, err, errlen);
}

int net_user_mmds_config(uint32_t addr, const char *path, struct net_user_config *c, char *err, size_t errlen) {
    enum { LINK_LOCAL = 0xa9fe0000u, MASK_16 = 0xffff0000u };
    memset(c, 0, sizeof *c);
    if ((addr & MASK_16) != LINK_LOCAL || addr == LINK_LOCAL || addr == (LINK_LOCAL | ~MASK_16))
        return error_text(err, errlen, "MMDS address %u.%u.%u.%u: not a link-local host address (169.254.0.1 to 169.254.255.254)",
                          addr >> 24, (addr >> 16) & 255, (addr >> 8) & 255, addr & 255);
    if (!path || !*path || strlen(path) >= sizeof c->mmds_socket)
        return error_text(err, errlen, "MMDS socket path empty or too long");
    c->mmds_addr = addr;
    snprintf(c->mmds_socket, sizeof c->mmds_socket, "%s", path);
    return 0;
}
