/* The tiny guest's virtio-net self-test (virtio 1.2 §5.1): the MAC address from the device's
 * configuration, a frame sent; and, on `--net user`'s network (QEMU's 10.0.2.0/24), an ARP
 * exchange with the gateway and a whole DHCP exchange. Frames only: no IP stack stays behind. */
#ifndef BELLHOP_GUEST_NET_H
#define BELLHOP_GUEST_NET_H

#include "guest/virtio.h"

#define VIRTIO_ID_NET 1
#define NET_NQUEUES 2                  /* receive and transmit; no control queue */
#define NET_WANT_FEATURES (1ull << 5) /* VIRTIO_NET_F_MAC */

typedef void net_result_fn(const char *name, bool ok, const char *detail);

/* On a started device: reads its MAC, gives it receive buffers and sends an ARP request for
 * the gateway (its completion is the device's interrupt), reporting "net-link". With
 * `exchange` (the network is slirp's, which answers), also waits for the ARP reply
 * ("net-arp") and asks for an address by DHCP: DISCOVER, OFFER, REQUEST, ACK ("net-dhcp"). */
void net_selftest(struct vdev *d, bool exchange, net_result_fn *result);

#endif
