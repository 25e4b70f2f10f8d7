#ifndef BELLHOP_DEVICES_VIRTIO_RNG_H
#define BELLHOP_DEVICES_VIRTIO_RNG_H

#include "devices/virtio.h"

/* virtio-rng (virtio 1.2 §5.4): one queue, filled from the host's getrandom(). */
extern const struct virtio_device_ops virtio_rng_ops;
/* Its parameters (NULL: no limit). A request costs the bytes it asks for and one op
 * (Firecracker's entropy device's rate_limiter). */
struct virtio_rng_params {
    struct rate_limiter_config limiter;
};
/* What one turn on the loop serves at most (about 0.2 ms of getrandom). */
#define VIRTIO_RNG_BYTES_PER_TURN (64u << 10)

#endif
