#ifndef BELLHOP_DEVICES_VIRTIO_BALLOON_H
#define BELLHOP_DEVICES_VIRTIO_BALLOON_H

#include <linux/virtio_balloon.h>

#include "devices/virtio.h"

/* virtio-balloon (virtio 1.2 §5.5): pages the driver inflates into the balloon are given back
 * to the host (they read as zeros when the driver takes them back); deflated pages need
 * nothing. The host's target (num_pages) is set at creation and changed at run time
 * (virtio_balloon_set_target: a configuration interrupt tells the driver). With a statistics
 * interval the device offers VIRTIO_BALLOON_F_STATS_VQ and asks the driver for its memory
 * statistics every interval, as Firecracker's balloon does. */
extern const struct virtio_device_ops virtio_balloon_ops;
struct virtio_balloon_params {
    uint32_t target_pages; /* 4 KiB pages the host asks the guest to give up */
    bool deflate_on_oom;   /* offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM */
    unsigned stats_interval_s; /* 0: no statistics queue */
};

/* The statistics' tags a driver may report: the uapi header's VIRTIO_BALLOON_S_SWAP_IN (0) to
 * _HTLB_PGFAIL (9), and the six newer kernels add (oom_kill 10, alloc_stall 11, async_scan 12,
 * direct_scan 13, async_reclaim 14, direct_reclaim 15); other tags are ignored. */
#define VIRTIO_BALLOON_STAT_TAGS 16

/* What the device knows now (loop thread): the target and the driver's count of pages
 * (4 KiB), and the last statistics the driver gave, by tag. */
struct virtio_balloon_info {
    uint32_t target_pages, actual_pages;
    bool stats_enabled; /* the device was made with a statistics interval */
    unsigned stats_interval_s;
    uint64_t stat[VIRTIO_BALLOON_STAT_TAGS];
    bool has_stat[VIRTIO_BALLOON_STAT_TAGS]; /* the driver reported this tag */
};
void virtio_balloon_info(struct virtio_dev *vd, struct virtio_balloon_info *out);
/* A new target (loop thread or any, the device lock not held): the driver hears of it. */
void virtio_balloon_set_target(struct virtio_dev *vd, uint32_t pages);
/* A new statistics interval (loop thread), the next request for statistics at once; 0 stops
 * asking. -1 when the device was made without statistics (they cannot be turned on later). */
int virtio_balloon_set_stats_interval(struct virtio_dev *vd, unsigned seconds);

#endif
