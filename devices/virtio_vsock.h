#ifndef BELLHOP_DEVICES_VIRTIO_VSOCK_H
#define BELLHOP_DEVICES_VIRTIO_VSOCK_H

#include "devices/virtio.h"

/* virtio-vsock (virtio 1.2 §5.10, device ID 19), its host side as Firecracker's (its
 * docs/vsock.md): stream sockets between the guest (CID guest_cid) and Unix sockets on the
 * host. The host connects to uds_path and writes "CONNECT <port>\n"; once the guest accepts,
 * the device answers "OK <host-side port>\n" and the stream is that connection. A guest
 * connecting to the host (CID 2) port N reaches whoever listens on "<uds_path>_N". Credit-based
 * flow control both ways, every connection waited for on the loop (no thread of its own),
 * memory bounded per connection and in number of connections. A restored device's guest gets
 * VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (its connections are gone) and the listener is back. */
extern const struct virtio_device_ops virtio_vsock_ops;
struct virtio_vsock_params {
    uint64_t guest_cid;   /* 3 to 0xffffffff (0-2 are reserved, the rest is not a 32-bit CID) */
    const char *uds_path; /* the Unix socket it listens on (made at create, removed at destroy) */
    /* How long a host client may take to say "CONNECT <port>\n", the guest to answer a host's
     * connection, and a closed connection to drain to its host socket; 0 for 2000 (tests
     * shorten it). */
    uint32_t timeout_ms;
};

#define VIRTIO_VSOCK_MIN_CID 3
#define VIRTIO_VSOCK_MAX_CID 0xffffffffull

#endif
