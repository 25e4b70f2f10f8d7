#ifndef BELLHOP_DEVICES_VIRTIO_BALLOON_H
#define BELLHOP_DEVICES_VIRTIO_BALLOON_H

#include "devices/virtio.h"

/* virtio-balloon (virtio 1.2 §5.5), its two base queues: pages the driver inflates into the
 * balloon are given back to the host (they read as zeros when the driver takes them back);
 * deflated pages need nothing. The host's target (num_pages) is set at creation. */
extern const struct virtio_device_ops virtio_balloon_ops;
struct virtio_balloon_params {
    uint32_t target_pages; /* 4 KiB pages the host asks the guest to give up */
    bool deflate_on_oom;   /* offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM */
};

#endif
