#ifndef BELLHOP_DEVICES_VIRTIO_BLK_H
#define BELLHOP_DEVICES_VIRTIO_BLK_H

#include "devices/virtio.h"

/* virtio-blk (virtio 1.2 §5.2) over a file: read, write, flush (fdatasync), get-id,
 * discard and write-zeroes (fallocate). A read-only disk answers writes with IOERR and
 * never opens its file for writing.
 *
 * Requests go to the kernel through an io_uring (devices/blk_uring.h), up to BLK_DEPTH in
 * flight per disk, their completions reaped on the loop; a guest that queues more waits
 * (the rest stay in its ring). Where io_uring cannot be had, or with BLK_IO_SYNC, each request
 * runs to its end on the loop thread, one at a time, as pread/pwrite; by default, so does each
 * request on a file in memory (tmpfs, ramfs: nothing to wait for, and the ring would hand every
 * request to a kernel worker) except large ones with others on their way. */

enum blk_io_engine {
    BLK_IO_AUTO,  /* the ring; for a file in memory, only for large requests in company */
    BLK_IO_ASYNC, /* the ring (Firecracker's io_engine "Async") */
    BLK_IO_SYNC,  /* no ring (io_engine "Sync") */
};

#define BLK_DEPTH 128

extern const struct virtio_device_ops virtio_blk_ops;
struct virtio_blk_params {
    const char *path; /* a regular file, opened at create */
    bool read_only;
    bool direct;     /* O_DIRECT: the host's page cache is bypassed (requests it cannot align go through it) */
    enum blk_io_engine engine;
    unsigned queues; /* request queues offered (VIRTIO_BLK_F_MQ above 1); 0 is 1 */
    unsigned depth;  /* requests in flight at most; 0 is BLK_DEPTH */
    /* Firecracker's rate_limiter (all zero: none), over all its queues together: a read or a
     * write costs its data's bytes and one op; any other request one op. A request the limiter
     * cannot pay yet waits in its ring until it can. */
    struct rate_limiter_config limiter;
};

/* Backs the disk with the file at path from now on (loop thread, between requests: where they
 * run), opened as the first was; its new size reaches the driver with a configuration
 * interrupt (the API's PATCH /drives). 0, or -1 with the reason (the old file stays). */
int virtio_blk_replace(struct virtio_dev *vd, const char *path, char *err, size_t errlen);
/* Its rate limit from now on, replacing the old one (loop thread: the API's PATCH /drives);
 * requests waiting on the old one are looked at again at once. */
void virtio_blk_set_limiter(struct virtio_dev *vd, const struct rate_limiter_config *c);
/* The queues a disk offers a guest with `cpus` CPUs: one each, as far as a device has queues. */
static inline unsigned virtio_blk_queues(unsigned cpus) { return cpus < VIRTIO_MAX_QUEUES ? cpus : VIRTIO_MAX_QUEUES; }
/* Whether requests go through io_uring (false: the synchronous path, by choice or fallback). */
bool virtio_blk_async(const struct virtio_dev *vd);

#endif
