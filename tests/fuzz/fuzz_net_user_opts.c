/* --net user's options (net/user_opts.c): any bytes after "user". Refused in one line that
 * fits, or taken as a config that holds what the syntax allows, and that, written back in the
 * syntax, parses to the same config. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/user.h"

static void refused_in_one_line(const char *err, size_t errlen) {
    size_t len = strnlen(err, errlen);
    if (len == 0 || len == errlen || strchr(err, '\n')) abort();
}

static void check_fwd(const struct net_user_fwd *f) {
    uint32_t guest = ntohl(f->guest_addr) & 0xff;
    if (!f->host_port || !f->guest_port) abort();
    if (f->guest_addr && ((ntohl(f->guest_addr) & 0xffffff00u) != 0x0a000200u || guest == 0 || guest == 2 ||
                          guest == 3 || guest == 255))
        abort();
}

static size_t write_back(const struct net_user_config *c, char *out, size_t cap) {
    size_t n = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < c->nfwd; i++) {
        const struct net_user_fwd *f = &c->fwd[i];
        char host[INET_ADDRSTRLEN] = "", guest[INET_ADDRSTRLEN] = "";
        if (f->host_addr) inet_ntop(AF_INET, &f->host_addr, host, sizeof host);
        if (f->guest_addr) inet_ntop(AF_INET, &f->guest_addr, guest, sizeof guest);
        n += (size_t)snprintf(out + n, cap - n, ",hostfwd=%s:%s:%u-%s:%u", f->udp ? "udp" : "tcp", host, f->host_port,
                              guest, f->guest_port);
    }
    if (c->restricted) n += (size_t)snprintf(out + n, cap - n, ",restrict=on");
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *opts = malloc(size + 1);
    if (!opts) return 0;
    memcpy(opts, data, size);
    opts[size] = '\0';
    struct net_user_config c, again;
    char err[96];
    if (net_user_parse(opts, &c, err, sizeof err) != 0) {
        refused_in_one_line(err, sizeof err);
    } else {
        if (c.nfwd > NET_USER_MAX_FWD) abort();
        for (unsigned i = 0; i < c.nfwd; i++) check_fwd(&c.fwd[i]);
        char text[NET_USER_MAX_FWD * 64 + 32];
        if (write_back(&c, text, sizeof text) >= sizeof text) abort();
        if (net_user_parse(text, &again, err, sizeof err) != 0 || memcmp(&c, &again, sizeof c) != 0) abort();
    }
    free(opts);
    return 0;
}
