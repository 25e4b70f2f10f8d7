#ifndef BELLHOP_DEVICES_VIRTIO_NET_H
#define BELLHOP_DEVICES_VIRTIO_NET_H

#include "devices/virtio.h"

/* virtio-net (virtio 1.2 §5.1) over a Linux tap device: one receive and one transmit queue,
 * frames with the 12-byte virtio_net_hdr passed to and from the tap as its vnet header, a
 * fixed MAC address, no offloads. Receive waits on the tap on the loop, only while the
 * driver has given buffers. */
struct virtio_net;
/* Opens (creating it, if allowed) the tap `ifname`; on failure NULL and a one-line reason. */
struct virtio_net *virtio_net_open(struct vm_env *env, const char *ifname, char *err, size_t errlen);
/* The device over any non-blocking fd that reads and writes one frame (vnet header first) per
 * call, as a tap does (a SOCK_SEQPACKET socket does too); takes the fd. `name` seeds the MAC. */
struct virtio_net *virtio_net_create(struct vm_env *env, int fd, const char *name, char *err, size_t errlen);
const struct virtio_device_ops *virtio_net_ops_for(const struct virtio_net *n);
void virtio_net_attach(struct virtio_net *n, struct virtio_dev *vd);
void virtio_net_close(struct virtio_net *n);

#endif
