/* The vhost-user frontend's messages (devices/vhost_user.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/vhost_user.h"
#include "base/error_text.h"

struct vring_state {
    uint32_t index, num;
};

struct vring_addr {
    uint32_t index, flags;
    uint64_t desc, used, avail, log;
};

struct mem_region {
    uint64_t guest_addr, size, user_addr, mmap_offset;
};

struct mem_table {
    uint32_t nregions, padding;
    struct mem_region regions[VHOST_USER_MAX_REGIONS];
};

struct config_payload {
    uint32_t offset, size, flags;
    uint8_t data[VHOST_USER_CONFIG_MAX];
};

int vhost_user_check_reply(const struct vhost_user_header *h, size_t got, uint32_t request, uint32_t want_size,
                           bool exact, char *err, size_t errlen) {
    if ((h->flags & 0x3) != VHOST_USER_VERSION || !(h->flags & VHOST_USER_FLAG_REPLY))
        return error_text(err, errlen, "the backend's reply has flags %#x (not a version-1 reply)", h->flags);
    if (h->request != request)
        return error_text(err, errlen, "the backend answered request %u with a reply to %u", request, h->request);
    if (h->size > VHOST_USER_MAX_PAYLOAD || (exact ? h->size != want_size : h->size > want_size))
        return error_text(err, errlen, "the backend's reply to request %u has %u bytes (%s %u)", request, h->size,
                    exact ? "expected" : "at most", want_size);
    if (got != h->size) return error_text(err, errlen, "the backend's reply to request %u was cut short", request);
    return 0;
}

static int send_msg(struct vhost_user *vu, uint32_t request, uint32_t flags, const void *payload, uint32_t size,
                    const int *fds, unsigned nfds, char *err, size_t errlen) {
    if (vu->fd < 0) return error_text(err, errlen, "the backend's socket is closed");
    struct vhost_user_header h = {request, VHOST_USER_VERSION | flags, size};
    struct iovec iov[2] = {{&h, sizeof h}, {(void *)payload, size}};
    union {
        char buf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_REGIONS)];
        struct cmsghdr align;
    } control;
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = size ? 2 : 1};
    if (nfds) {
        memset(&control, 0, sizeof control);
        m.msg_control = control.buf;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    ssize_t n;
    do n = sendmsg(vu->fd, &m, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)(sizeof h + size))
        return error_text(err, errlen, "sending request %u to the backend: %s", request, n < 0 ? strerror(errno) : "cut short");
    return 0;
}

/* Exactly len bytes, or -1 (timeout, close, error) with the reason. */
static int recv_all(struct vhost_user *vu, void *buf, size_t len, uint32_t request, char *err, size_t errlen) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = recv(vu->fd, (uint8_t *)buf + got, len - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) return error_text(err, errlen, "the backend closed its socket (waiting for the reply to request %u)", request);
        if (n < 0)
            return error_text(err, errlen, "the backend's reply to request %u: %s", request,
                        errno == EAGAIN || errno == EWOULDBLOCK ? "none within 5 s" : strerror(errno));
        got += (size_t)n;
    }
    return 0;
}

/* The reply to request: its payload into buf (want_size bytes, or at most that when !exact);
 * *size gets its length. A payload the reply does not announce honestly is refused. */
static int recv_reply(struct vhost_user *vu, uint32_t request, void *buf, uint32_t want_size, bool exact,
                      uint32_t *size, char *err, size_t errlen) {
    struct vhost_user_header h;
    if (recv_all(vu, &h, sizeof h, request, err, errlen) != 0) return -1;
    uint8_t payload[VHOST_USER_MAX_PAYLOAD];
    if (h.size > sizeof payload) return error_text(err, errlen, "the backend's reply to request %u has %u bytes", request, h.size);
    if (recv_all(vu, payload, h.size, request, err, errlen) != 0) return -1;
    if (vhost_user_check_reply(&h, h.size, request, want_size, exact, err, errlen) != 0) return -1;
    memcpy(buf, payload, h.size);
    if (size) *size = h.size;
    return 0;
}

static int get_u64(struct vhost_user *vu, uint32_t request, uint64_t *v, char *err, size_t errlen) {
    if (send_msg(vu, request, 0, NULL, 0, NULL, 0, err, errlen) != 0) return -1;
    return recv_reply(vu, request, v, sizeof *v, true, NULL, err, errlen);
}

/* A request without a reply of its own: with REPLY_ACK, its acknowledgement is waited for. */
static int set(struct vhost_user *vu, uint32_t request, const void *payload, uint32_t size, const int *fds,
               unsigned nfds, char *err, size_t errlen) {
    bool ack = vu->protocol_features >> VHOST_USER_PROTOCOL_F_REPLY_ACK & 1;
    if (send_msg(vu, request, ack ? VHOST_USER_FLAG_NEED_REPLY : 0, payload, size, fds, nfds, err, errlen) != 0)
        return -1;
    if (!ack) return 0;
    uint64_t status;
    if (recv_reply(vu, request, &status, sizeof status, true, NULL, err, errlen) != 0) return -1;
    return status == 0 ? 0 : error_text(err, errlen, "the backend refused request %u (status %llu)", request, (unsigned long long)status);
}

static int set_u64(struct vhost_user *vu, uint32_t request, uint64_t v, char *err, size_t errlen) {
    return set(vu, request, &v, sizeof v, NULL, 0, err, errlen);
}

int vhost_user_connect(struct vhost_user *vu, const char *path, char *err, size_t errlen) {
    *vu = (struct vhost_user){.fd = -1, .queues = 1};
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) return error_text(err, errlen, "%s: path too long for a socket", path);
    memcpy(a.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = VHOST_USER_TIMEOUT_MS / 1000};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return error_text(err, errlen, "%s: %s", path, strerror(e));
    }
    return vhost_user_negotiate(vu, fd, err, errlen);
}

int vhost_user_negotiate(struct vhost_user *vu, int fd, char *err, size_t errlen) {
    *vu = (struct vhost_user){.fd = fd, .queues = 1};
    uint64_t proto = 0;
    int rc = get_u64(vu, VHOST_USER_GET_FEATURES, &vu->features, err, errlen);
    vu->protocol = vu->features >> VHOST_USER_F_PROTOCOL_FEATURES & 1;
    if (rc == 0 && vu->protocol) {
        rc = get_u64(vu, VHOST_USER_GET_PROTOCOL_FEATURES, &proto, err, errlen);
        vu->protocol_features = proto & (1ull << VHOST_USER_PROTOCOL_F_CONFIG | 1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK |
                                         1ull << VHOST_USER_PROTOCOL_F_MQ);
        /* Sent before REPLY_ACK is in force: it has no reply */
        if (rc == 0)
            rc = send_msg(vu, VHOST_USER_SET_PROTOCOL_FEATURES, 0, &vu->protocol_features, sizeof vu->protocol_features,
                          NULL, 0, err, errlen);
        uint64_t queues = 1;
        if (rc == 0 && (vu->protocol_features >> VHOST_USER_PROTOCOL_F_MQ & 1))
            rc = get_u64(vu, VHOST_USER_GET_QUEUE_NUM, &queues, err, errlen);
        if (rc == 0 && (queues == 0 || queues > 64)) rc = error_text(err, errlen, "the backend has %llu queues", (unsigned long long)queues);
        vu->queues = (unsigned)queues;
    }
    if (rc == 0) rc = set(vu, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0, err, errlen);
    if (rc != 0) vhost_user_close(vu);
    vu->features &= ~(1ull << VHOST_USER_F_PROTOCOL_FEATURES);
    return rc;
}

void vhost_user_close(struct vhost_user *vu) {
    if (vu->fd >= 0) close(vu->fd);
    vu->fd = -1;
}

int vhost_user_get_config(struct vhost_user *vu, uint8_t *buf, uint32_t len, char *err, size_t errlen) {
    if (!(vu->protocol_features >> VHOST_USER_PROTOCOL_F_CONFIG & 1))
        return error_text(err, errlen, "the backend does not give its configuration space (no CONFIG protocol feature)");
    if (len > VHOST_USER_CONFIG_MAX) return error_text(err, errlen, "configuration space of %u bytes", len);
    struct config_payload p = {.offset = 0, .size = len};
    uint32_t size = 12 + len;
    if (send_msg(vu, VHOST_USER_GET_CONFIG, 0, &p, size, NULL, 0, err, errlen) != 0) return -1;
    struct config_payload r;
    if (recv_reply(vu, VHOST_USER_GET_CONFIG, &r, size, true, NULL, err, errlen) != 0) return -1;
    if (r.offset != 0 || r.size != len) return error_text(err, errlen, "the backend gave another part of its configuration space");
    memcpy(buf, r.data, len);
    return 0;
}

static int set_vring(struct vhost_user *vu, unsigned i, const struct vhost_user_vring *r, char *err, size_t errlen) {
    struct vring_state num = {i, r->num}, base = {i, r->last_avail};
    struct vring_addr addr = {.index = i, .desc = r->desc_user, .used = r->used_user, .avail = r->avail_user};
    uint64_t kick = i, call = i;
    if (set(vu, VHOST_USER_SET_VRING_NUM, &num, sizeof num, NULL, 0, err, errlen) != 0 ||
        set(vu, VHOST_USER_SET_VRING_BASE, &base, sizeof base, NULL, 0, err, errlen) != 0 ||
        set(vu, VHOST_USER_SET_VRING_ADDR, &addr, sizeof addr, NULL, 0, err, errlen) != 0 ||
        set(vu, VHOST_USER_SET_VRING_KICK, &kick, sizeof kick, &r->kick_fd, 1, err, errlen) != 0 ||
        set(vu, VHOST_USER_SET_VRING_CALL, &call, sizeof call, &r->call_fd, 1, err, errlen) != 0)
        return -1;
    struct vring_state enable = {i, 1};
    if (vu->protocol)
        return set(vu, VHOST_USER_SET_VRING_ENABLE, &enable, sizeof enable, NULL, 0, err, errlen);
    return 0;
}

int vhost_user_start(struct vhost_user *vu, uint64_t features, const struct vhost_user_region *regions,
                     unsigned nregions, const struct vhost_user_vring *rings, unsigned nrings, char *err, size_t errlen) {
    if (nregions > VHOST_USER_MAX_REGIONS) return error_text(err, errlen, "%u memory regions", nregions);
    /* The backend keeps offering PROTOCOL_FEATURES only if it is acknowledged here too. */
    uint64_t f = features | (vu->protocol ? 1ull << VHOST_USER_F_PROTOCOL_FEATURES : 0);
    if (set_u64(vu, VHOST_USER_SET_FEATURES, f, err, errlen) != 0) return -1;
    struct mem_table t = {.nregions = nregions};
    int fds[VHOST_USER_MAX_REGIONS];
    for (unsigned i = 0; i < nregions; i++) {
        t.regions[i] = (struct mem_region){regions[i].guest_addr, regions[i].size, regions[i].user_addr,
                                           regions[i].mmap_offset};
        fds[i] = regions[i].fd;
    }
    if (set(vu, VHOST_USER_SET_MEM_TABLE, &t, 8 + nregions * (uint32_t)sizeof t.regions[0], fds, nregions, err, errlen) != 0)
        return -1;
    for (unsigned i = 0; i < nrings; i++)
        if (set_vring(vu, i, &rings[i], err, errlen) != 0) return -1;
    return 0;
}

int vhost_user_stop(struct vhost_user *vu, unsigned nrings, char *err, size_t errlen) {
    for (unsigned i = 0; i < nrings; i++) {
        struct vring_state s = {i, 0};
        if (send_msg(vu, VHOST_USER_GET_VRING_BASE, 0, &s, sizeof s, NULL, 0, err, errlen) != 0 ||
            recv_reply(vu, VHOST_USER_GET_VRING_BASE, &s, sizeof s, true, NULL, err, errlen) != 0)
            return -1;
    }
    return 0;
}
