/* virtio devices served by another process over vhost-user (devices/virtio_vhost_user.c):
 * vhost-user-blk (qemu-storage-daemon --export type=vhost-user-blk, SPDK, ...) and
 * vhost-user-fs (virtiofsd). A machine with one has shareable guest memory. */
#ifndef BELLHOP_DEVICES_VIRTIO_VHOST_USER_H
#define BELLHOP_DEVICES_VIRTIO_VHOST_USER_H

#include "devices/virtio.h"

struct vhost_user_params {
    const char *socket; /* the backend's Unix socket */
    const char *tag;    /* vhost-user-fs: the name the guest mounts (mount -t virtiofs TAG DIR) */
};

extern const struct virtio_device_ops vhost_user_blk_ops;
extern const struct virtio_device_ops vhost_user_fs_ops;

#endif
