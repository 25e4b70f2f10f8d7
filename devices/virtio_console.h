#ifndef BELLHOP_DEVICES_VIRTIO_CONSOLE_H
#define BELLHOP_DEVICES_VIRTIO_CONSOLE_H

#include "devices/virtio.h"

/* virtio-console (virtio 1.2 §5.3), port 0 only: transmitq to out_fd, receiveq from in_fd
 * (watched on the loop; Ctrl-A x ends the VM). */
extern const struct virtio_device_ops virtio_console_ops;

struct virtio_console;
struct virtio_console *virtio_console_create(struct vm_env *env, int in_fd, int out_fd);
/* Ties the console to its transport's virtio_dev (before the guest runs). */
void virtio_console_attach(struct virtio_console *c, struct virtio_dev *vd);
void virtio_console_destroy(struct virtio_console *c);

#endif
