/* Firecracker's MMDS on a virtio-net link (net/mmds.h): the guest's frames for the MMDS address
 * go to bellhop-net's MMDS stack (net/user.h, started here for the link) instead of the tap,
 * slirp or passt, and its frames come back to the guest beside the network's. Which frames: ARP
 * whose target is the MMDS address or the stack's own (net_user_mmds_host: the one it asks the
 * guest's MAC address from), and IPv4 to either. Whatever the guest's routes say, nothing for
 * those addresses reaches the network. One thread (the device's loop). */
#ifndef BELLHOP_DEVICES_NET_MMDS_H
#define BELLHOP_DEVICES_NET_MMDS_H

#include <lib/async/wait.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <zircon/types.h>

struct net_mmds {
    int fd; /* SOCK_SEQPACKET with bellhop-net: one frame a message, a virtio_net_hdr first */
    zx_handle_t handle;
    async_wait_t wait; /* its handler is the device's (readable: frames for the guest) */
    bool waiting, gone;
    uint32_t addr, host; /* network order */
    void *owner;         /* the device's, for its handler */
};

/* Starts the stack for addr (host order) whose connections go to the server at socket; the
 * wait's handler is `readable`. 0, or -1 with a one-line reason. */
int net_mmds_start(struct net_mmds *m, uint32_t addr, const char *socket, async_wait_handler_t *readable,
                   char *err, size_t errlen);
/* The socket closed: bellhop-net ends. Once its loop is gone, or before it ever waited (as the
 * device's own fd). */
void net_mmds_stop(struct net_mmds *m);
/* Waits for the stack's next frame, unless it waits already or the stack is gone. */
void net_mmds_arm(struct net_mmds *m, async_dispatcher_t *d);

/* Whether a frame (the Ethernet header at f, len bytes of it) is MMDS's. */
bool net_mmds_wants(const struct net_mmds *m, const uint8_t *f, size_t len);
/* A frame (virtio_net_hdr first) to the stack; dropped when its socket is full or gone, as a
 * busy link drops: TCP sends again. */
void net_mmds_send(struct net_mmds *m, const struct iovec *iov, unsigned niov);
/* The stack's next frame (virtio_net_hdr first) read into iov: its length, or -1 for none now
 * (or the stack gone: said once, and never waited for again). */
ssize_t net_mmds_recv(struct net_mmds *m, const struct iovec *iov, unsigned niov);

#endif
