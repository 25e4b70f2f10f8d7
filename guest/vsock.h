/* The tiny guest's virtio-vsock driver (virtio 1.2 §5.10): stream connections to the host
 * (CID 2) and from it, with credit-based flow control both ways, over a started device whose
 * queues are rx, tx and event. Single-threaded and without interrupt work: the device is
 * looked at only inside these calls (vsock_wait takes what it gave), and every wait ends at a
 * deadline in irq_ticks. A TRANSPORT_RESET event drops every connection; listeners stay. */
#ifndef BELLHOP_GUEST_VSOCK_H
#define BELLHOP_GUEST_VSOCK_H

#include "guest/virtio.h"

#define VIRTIO_ID_VSOCK 19
#define VSOCK_NQUEUES 3
#define VSOCK_HOST_CID 2
#define VSOCK_WANT_FEATURES 1ull /* VIRTIO_VSOCK_F_STREAM, where it is offered */

enum {
    VSOCK_EOF = -2,       /* vsock_recv: the peer sends no more and everything was read */
    VSOCK_REFUSED = -3,   /* vsock_connect: the peer answered RST */
    VSOCK_TIMED_OUT = -4, /* vsock_connect: no answer by the deadline */
};

/* Gives the device its receive and event buffers. False when it cannot (a failed device). */
bool vsock_init(struct vdev *d);
uint64_t vsock_guest_cid(void);
/* A connection to the host's port: its id (0 and up), VSOCK_REFUSED, VSOCK_TIMED_OUT, or -1
 * when every connection slot is taken. */
int vsock_connect(uint32_t port, uint64_t deadline);
/* Host connections to port are answered from now on (up to a small backlog); false when
 * there is no room for another listener. */
bool vsock_listen(uint32_t port);
/* The next connection made to a listened port, or -1 at the deadline. */
int vsock_accept(uint32_t port, uint64_t deadline);
/* The host port at the other end of a connection (0: no such connection). */
uint32_t vsock_peer_port(int c);
/* Sends what the peer's credit allows now (up to len): the count (0: no credit yet), or -1
 * when the connection is gone or the peer receives no more. */
long vsock_send(int c, const void *buf, uint32_t len);
/* What has arrived (up to len): the count, 0 when nothing yet, VSOCK_EOF, or -1 when the
 * connection was reset. Consuming tells the peer of its new credit (CREDIT_UPDATE). */
long vsock_recv(int c, void *buf, uint32_t len);
/* Shuts both ways, waits (to the deadline) for the peer's RST, else sends one; the id is free
 * again. */
void vsock_close(int c, uint64_t deadline);
/* Takes what the device gave (packets, events), waiting for something until the deadline:
 * false when nothing came by then, or the device failed. */
bool vsock_wait(uint64_t deadline);
/* Counts for the self-tests' reports. */
struct vsock_counts {
    unsigned resets;       /* TRANSPORT_RESET events */
    unsigned dropped;      /* packets from the device that made no sense (bad header, length) */
    unsigned credit_waits; /* vsock_send calls that found no credit */
    unsigned credit_moves; /* the peer's fwd_cnt moving on (it took our bytes) */
    unsigned refused;      /* host connections answered RST (no listener, no room) */
};
const struct vsock_counts *vsock_counts(void);

#endif
