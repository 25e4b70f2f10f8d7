/* The vhost-user protocol, frontend side (QEMU's docs/interop/vhost-user.rst): a device whose
 * rings another process serves over a Unix socket, given the guest's memory as file
 * descriptors and its queues' notifications as eventfds. Only what a frontend needs: feature
 * and protocol-feature negotiation, the memory table, vring setup and teardown, the device's
 * configuration space, and REPLY_ACK.
 *
 * Every call is synchronous on the socket, bounded by a receive timeout: a backend that never
 * answers, answers with another request's reply, a short or oversized payload, or closes the
 * socket makes the call fail with a one-line reason, never hang. */
#ifndef BELLHOP_DEVICES_VHOST_USER_H
#define BELLHOP_DEVICES_VHOST_USER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Requests (frontend to backend) */
enum {
    VHOST_USER_GET_FEATURES = 1,
    VHOST_USER_SET_FEATURES = 2,
    VHOST_USER_SET_OWNER = 3,
    VHOST_USER_SET_MEM_TABLE = 5,
    VHOST_USER_SET_VRING_NUM = 8,
    VHOST_USER_SET_VRING_ADDR = 9,
    VHOST_USER_SET_VRING_BASE = 10,
    VHOST_USER_GET_VRING_BASE = 11,
    VHOST_USER_SET_VRING_KICK = 12,
    VHOST_USER_SET_VRING_CALL = 13,
    VHOST_USER_GET_PROTOCOL_FEATURES = 15,
    VHOST_USER_SET_PROTOCOL_FEATURES = 16,
    VHOST_USER_GET_QUEUE_NUM = 17,
    VHOST_USER_SET_VRING_ENABLE = 18,
    VHOST_USER_GET_CONFIG = 24,
};

#define VHOST_USER_VERSION 0x1u
#define VHOST_USER_FLAG_REPLY (1u << 2)
#define VHOST_USER_FLAG_NEED_REPLY (1u << 3)
#define VHOST_USER_F_PROTOCOL_FEATURES 30
#define VHOST_USER_PROTOCOL_F_MQ 0
#define VHOST_USER_PROTOCOL_F_REPLY_ACK 3
#define VHOST_USER_PROTOCOL_F_CONFIG 9
#define VHOST_USER_VRING_NOFD (1u << 8)
#define VHOST_USER_MAX_REGIONS 8u
#define VHOST_USER_MAX_PAYLOAD 4096u
#define VHOST_USER_CONFIG_MAX 256u
#define VHOST_USER_TIMEOUT_MS 5000

struct vhost_user_header {
    uint32_t request, flags, size;
};

struct vhost_user {
    int fd; /* the socket; -1 once closed */
    uint64_t features;          /* the backend's */
    bool protocol;              /* PROTOCOL_FEATURES negotiated: rings start disabled */
    uint64_t protocol_features; /* both sides' */
    unsigned queues;            /* the backend's queue count (1 without MQ) */
};

/* A guest memory region as the backend maps it: fd from offset mmap_offset, seen by the guest
 * at guest_addr and by this process at user_addr. */
struct vhost_user_region {
    uint64_t guest_addr, size, user_addr, mmap_offset;
    int fd;
};

/* One ring: its size and the guest's addresses of its parts as this process sees them, where
 * the backend starts (last_avail), and its eventfds (kick: the backend waits on it; call: the
 * backend writes it). */
struct vhost_user_vring {
    uint16_t num, last_avail;
    uint64_t desc_user, avail_user, used_user;
    int kick_fd, call_fd;
};

/* Connects and negotiates: the backend's features (bit 30 taken off) and protocol features
 * (CONFIG and REPLY_ACK where it has them), then SET_OWNER. 0, or -1 with the reason. */
int vhost_user_connect(struct vhost_user *vu, const char *path, char *err, size_t errlen);
/* The same on a socket already connected (owned from here on, closed on failure). */
int vhost_user_negotiate(struct vhost_user *vu, int fd, char *err, size_t errlen);
void vhost_user_close(struct vhost_user *vu);
/* The device's configuration space (CONFIG negotiated), len bytes. */
int vhost_user_get_config(struct vhost_user *vu, uint8_t *buf, uint32_t len, char *err, size_t errlen);
/* The guest's driver is ready: features, memory, every ring set and enabled. */
int vhost_user_start(struct vhost_user *vu, uint64_t features, const struct vhost_user_region *regions,
                     unsigned nregions, const struct vhost_user_vring *rings, unsigned nrings, char *err, size_t errlen);
/* The device was reset: each ring stopped (GET_VRING_BASE). */
int vhost_user_stop(struct vhost_user *vu, unsigned nrings, char *err, size_t errlen);

/* The checks a reply passes (exposed for the fuzz target): header, its flags and request, its
 * size against the payload that came and what the request expects (exact, or at most). 0, or
 * -1 with the reason. */
int vhost_user_check_reply(const struct vhost_user_header *h, size_t got, uint32_t request, uint32_t want_size,
                           bool exact, char *err, size_t errlen);

#endif
