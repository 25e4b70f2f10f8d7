#ifndef BELLHOP_DEVICES_VIRTIO_BLK_H
#define BELLHOP_DEVICES_VIRTIO_BLK_H

#include "devices/virtio.h"

/* virtio-blk (virtio 1.2 §5.2) over a file: read, write, flush (fdatasync), get-id,
 * discard and write-zeroes (fallocate). A read-only disk answers writes with IOERR and
 * never opens its file for writing. */

struct virtio_blk;
/* Opens the backing file; on failure returns NULL with a one-line reason in err. */
struct virtio_blk *virtio_blk_open(const char *path, bool read_only, char *err, size_t errlen);
/* The ops' ops->features depend on the disk: use this table with it. */
const struct virtio_device_ops *virtio_blk_ops_for(const struct virtio_blk *b);
void virtio_blk_close(struct virtio_blk *b);

#endif
