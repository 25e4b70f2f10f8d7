#ifndef BELLHOP_DEVICES_VIRTIO_NET_H
#define BELLHOP_DEVICES_VIRTIO_NET_H

#include "devices/virtio.h"

/* virtio-net (virtio 1.2 §5.1) over a Linux tap device: one receive and one transmit queue,
 * frames with the 12-byte virtio_net_hdr passed to and from the tap as its vnet header, a
 * fixed MAC address, no offloads. Receive waits on the tap on the loop, only while the
 * driver has given buffers. */
extern const struct virtio_device_ops virtio_net_ops;
struct virtio_net_params {
    /* the tap to open (created, if allowed); or, when NULL, any non-blocking fd that reads
     * and writes one frame (vnet header first) per call, as a tap does (a SOCK_SEQPACKET
     * socket does too), which the device takes, its MAC address seeded from `name` */
    const char *tap;
    int fd;
    const char *name;
    bool has_mac; /* the guest's MAC address is mac, not one seeded from the name */
    uint8_t mac[6];
};

#endif
