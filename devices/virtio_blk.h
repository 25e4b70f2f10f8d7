#ifndef BELLHOP_DEVICES_VIRTIO_BLK_H
#define BELLHOP_DEVICES_VIRTIO_BLK_H

#include "devices/virtio.h"

/* virtio-blk (virtio 1.2 §5.2) over a file: read, write, flush (fdatasync), get-id,
 * discard and write-zeroes (fallocate). A read-only disk answers writes with IOERR and
 * never opens its file for writing. */

extern const struct virtio_device_ops virtio_blk_ops;
struct virtio_blk_params {
    const char *path; /* a regular file, opened at create */
    bool read_only;
};

/* Backs the disk with the file at path from now on (loop thread, between requests: where they
 * run), opened as the first was; its new size reaches the driver with a configuration
 * interrupt (the API's PATCH /drives). 0, or -1 with the reason (the old file stays). */
int virtio_blk_replace(struct virtio_dev *vd, const char *path, char *err, size_t errlen);

#endif
