#include <string.h>

#include "devices/virtio_balloon.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_console.h"
#include "devices/virtio_devices.h"
#include "devices/virtio_net.h"
#include "devices/virtio_rng.h"
#include "devices/virtio_vhost_user.h"
#include "devices/virtio_vsock.h"

static const struct virtio_device_ops *const all[] = {
    &virtio_blk_ops, &virtio_console_ops, &virtio_net_ops, &virtio_rng_ops, &virtio_balloon_ops,
    &vhost_user_blk_ops, &vhost_user_fs_ops, &virtio_vsock_ops,
};

const struct virtio_device_ops *virtio_device_at(unsigned i) {
    return i < sizeof all / sizeof all[0] ? all[i] : NULL;
}

const struct virtio_device_ops *virtio_device_find(const char *name) {
    for (unsigned i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(all[i]->name, name) == 0) return all[i];
    return NULL;
}
