#ifndef BELLHOP_GUEST_DISKRATE_H
#define BELLHOP_GUEST_DISKRATE_H

#include "guest/virtio.h"

/* cmdline "diskrate=OPS,BYTES": OPS reads of BYTES each (512 B to 64 KiB), one at a time, from
 * the disk's start onwards, with a line "diskrate: N done" after every tenth of them, so that
 * the host, timing the lines as they come, sees the rate a limit holds the disk to. Each
 * completion is polled for: waking a halted vCPU costs a loaded PVM host milliseconds, which
 * would measure the host's scheduler, not the limiter. */
void disk_rate(struct vdev *blk, const char *args);

#endif
