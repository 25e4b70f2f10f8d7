#ifndef BELLHOP_DEVICES_VIRTIO_CONSOLE_H
#define BELLHOP_DEVICES_VIRTIO_CONSOLE_H

#include "devices/virtio.h"

/* virtio-console (virtio 1.2 §5.3), port 0 only: transmitq to out_fd, receiveq from in_fd
 * (watched on the loop; Ctrl-A x ends the VM). */
extern const struct virtio_device_ops virtio_console_ops;

struct virtio_console_params {
    int in_fd, out_fd; /* -1: none; the caller keeps them open while the device lives */
};

#endif
