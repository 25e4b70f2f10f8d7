#ifndef BELLHOP_DEVICES_VIRTIO_NET_H
#define BELLHOP_DEVICES_VIRTIO_NET_H

#include "devices/virtio.h"

/* virtio-net (virtio 1.2 §5.1) over a Linux tap device: one receive and one transmit queue,
 * frames with the 12-byte virtio_net_hdr passed to and from the tap as its vnet header, a
 * fixed MAC address, no offloads. Receive waits on the tap on the loop, only while the
 * driver has given buffers. Or over a stream socket in QEMU's format (passt's): there the
 * header is the device's own, zero, and a peer gone is a link down, not an error. */
extern const struct virtio_device_ops virtio_net_ops;
struct virtio_net_params {
    /* the tap to open (created, if allowed); or, when NULL, any non-blocking fd that reads
     * and writes one frame (vnet header first) per call, as a tap does (a SOCK_SEQPACKET
     * socket does too), which the device takes, its MAC address seeded from `name` */
    const char *tap;
    /* or, when not NULL, user-mode networking (net/user.h): bellhop-net started on these
     * options (after "user": "" or ",hostfwd=...,restrict=on", checked by net_user_parse) */
    const char *user;
    /* or, when not NULL, passt (net/passt.h) started for the device with these arguments
     * (after "passt": "" or ",ARG,..."), its frames in QEMU's stream format (devices/net_stream.h) */
    const char *passt;
    /* or, when not NULL, the Unix stream socket at this path, connected to, in that format */
    const char *stream;
    /* Firecracker's MMDS on this interface (net/mmds.h), when mmds_addr is not 0: the guest's
     * frames to mmds_addr (host order; ARP and IPv4) go to bellhop-net's MMDS stack, started
     * for the device, whose guest connections reach the HTTP server listening on the Unix
     * socket mmds_socket; they never reach the tap, slirp or passt */
    uint32_t mmds_addr;
    const char *mmds_socket;
    /* fd (tap, user, passt and stream all NULL) speaks that format, not one frame a call */
    bool fd_stream;
    int fd;
    const char *name;
    bool has_mac; /* the guest's MAC address is mac, not one seeded from the name */
    uint8_t mac[6];
    /* Firecracker's rx_rate_limiter and tx_rate_limiter (all zero: none): a frame costs its
     * length as it crosses the tap (the vnet header's included) and one op. A frame to send
     * the limiter cannot pay yet waits in its ring; one received waits in its buffer. */
    struct rate_limiter_config rx_limiter, tx_limiter;
};

/* Its rate limits from now on, each replacing the old one (loop thread: the API's PATCH
 * /network-interfaces); frames waiting on the old ones are looked at again at once. */
void virtio_net_set_limiters(struct virtio_dev *vd, const struct rate_limiter_config *rx,
                             const struct rate_limiter_config *tx);

#endif
