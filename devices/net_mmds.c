/* MMDS on a virtio-net link: the frames' choice and their socket with bellhop-net. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "base/unix_socket.h"
#include "devices/net_mmds.h"
#include "net/user.h"

enum { ETH_LEN = 14, ETHERTYPE = 12, IPV4 = 0x0800, ARP = 0x0806, ARP_TARGET_IP = 24, IPV4_DST = 16 };

int net_mmds_start(struct net_mmds *m, uint32_t addr, const char *socket, async_wait_handler_t *readable,
                   char *err, size_t errlen) {
    *m = (struct net_mmds){.fd = -1, .handle = ZX_HANDLE_INVALID, .addr = htonl(addr),
                           .host = htonl(net_user_mmds_host(addr))};
    if (net_user_spawn_mmds(addr, socket, &m->fd, err, errlen) != 0) return -1;
    if (zx_fd_create(m->fd, 0, &m->handle) != ZX_OK) {
        snprintf(err, errlen, "MMDS: no memory for a loop handle");
        close(m->fd);
        m->fd = -1;
        return -1;
    }
    m->wait = (async_wait_t){.handler = readable, .object = m->handle, .trigger = ZX_FD_READABLE};
    return 0;
}

void net_mmds_stop(struct net_mmds *m) {
    m->waiting = false;
    if (m->handle != ZX_HANDLE_INVALID) zx_handle_close(m->handle);
    if (m->fd >= 0) close(m->fd);
    m->handle = ZX_HANDLE_INVALID;
    m->fd = -1;
}

void net_mmds_arm(struct net_mmds *m, async_dispatcher_t *d) {
    if (!m->waiting && !m->gone && m->handle != ZX_HANDLE_INVALID)
        m->waiting = async_begin_wait(d, &m->wait) == ZX_OK;
}

static bool is_ours(const struct net_mmds *m, const uint8_t *ip4) {
    uint32_t a;
    memcpy(&a, ip4, 4);
    return a == m->addr || a == m->host;
}

bool net_mmds_wants(const struct net_mmds *m, const uint8_t *f, size_t len) {
    if (len < ETH_LEN + 20) return false;
    uint16_t type = (uint16_t)(f[ETHERTYPE] << 8 | f[ETHERTYPE + 1]);
    if (type == ARP) return len >= ETH_LEN + ARP_TARGET_IP + 4 && is_ours(m, f + ETH_LEN + ARP_TARGET_IP);
    return type == IPV4 && (f[ETH_LEN] >> 4) == 4 && is_ours(m, f + ETH_LEN + IPV4_DST);
}

void net_mmds_send(struct net_mmds *m, const struct iovec *iov, unsigned niov) {
    if (m->gone || m->fd < 0) return;
    if (writev(m->fd, iov, (int)niov) < 0 && errno != EAGAIN && errno != EINTR && errno != ENOBUFS) {
        /* its end closed: reading says so, once */
    }
}

ssize_t net_mmds_recv(struct net_mmds *m, const struct iovec *iov, unsigned niov) {
    if (m->gone || m->fd < 0) return -1;
    ssize_t n = readv(m->fd, iov, (int)niov);
    if (n > 0) return n;
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return -1;
    if (unix_socket_closed(m->fd)) {
        fprintf(stderr, "bellhop: virtio-net: its MMDS process ended; MMDS does not answer any more\n");
        m->gone = true;
    }
    return -1;
}
