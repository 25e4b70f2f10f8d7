#ifndef BELLHOP_DEVICES_VIRTIO_DEVICES_H
#define BELLHOP_DEVICES_VIRTIO_DEVICES_H

#include "devices/virtio.h"

/* Every virtio device bellhop has, by name ("virtio-rng", ...): the one list a new device
 * joins (devices/virtio_devices.c). NULL for a name it does not know. */
const struct virtio_device_ops *virtio_device_find(const char *name);
/* The i-th device of the list; NULL past its end. */
const struct virtio_device_ops *virtio_device_at(unsigned i);

#endif
