/* virtio-blk's asynchronous engine: an io_uring over the disk's files, which the device fills
 * with requests and whose completions it reaps when the ring's eventfd says so (a loop wait).
 *
 * The ring is locked down at creation, before any request: it takes only vectored reads and
 * writes, fsync and fallocate, only on the files registered then (fixed files, by index), and
 * the only later registration it accepts is replacing a file (the API's PATCH /drives). What
 * io_uring does in the kernel's workers is beyond seccomp's reach; this keeps it to the disk.
 * Not thread-safe: one thread (the loop's) submits and reaps. */
#ifndef BELLHOP_DEVICES_BLK_URING_H
#define BELLHOP_DEVICES_BLK_URING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define BLK_URING_MAX_FILES 2

struct blk_uring;

/* A ring for up to depth requests in flight over files fds[0..nfiles). NULL with the reason
 * (no io_uring in this kernel, a sandbox that forbids it, too old for restrictions). */
struct blk_uring *blk_uring_create(const int *fds, unsigned nfiles, unsigned depth, char *err, size_t errlen);
void blk_uring_destroy(struct blk_uring *u);
/* Readable when completions the kernel finished on its own are waiting (not those a submit
 * posted before returning: reap right after blk_uring_submit). blk_uring_clear_event makes it
 * unreadable again, before reaping. */
int blk_uring_event_fd(const struct blk_uring *u);
void blk_uring_clear_event(struct blk_uring *u);

/* Queue one request, tagged with user for its completion; false when the submission queue is
 * full (never while fewer than depth are in flight). Nothing reaches the kernel before
 * blk_uring_submit. A flush starts only after every request queued before it has completed
 * and before any queued after it starts, so it covers every write the guest saw completed.
 * to_workers: straight to the kernel's workers (IOSQE_ASYNC), not tried inline first. */
bool blk_uring_rw(struct blk_uring *u, unsigned file, bool write, const struct iovec *iov, unsigned n, uint64_t pos,
                  bool to_workers, void *user);
bool blk_uring_flush(struct blk_uring *u, unsigned file, void *user);
bool blk_uring_fallocate(struct blk_uring *u, unsigned file, int mode, uint64_t pos, uint64_t len, void *user);
/* Hands what was queued to the kernel. 0, or a negative errno (what was queued stays queued). */
int blk_uring_submit(struct blk_uring *u);

struct blk_uring_done {
    void *user;
    int res; /* bytes moved, 0, or a negative errno */
};
/* Up to max completions into out (waiting for at least one if wait); how many. */
unsigned blk_uring_reap(struct blk_uring *u, struct blk_uring_done *out, unsigned max, bool wait);
/* File index `file` is fd from now on (requests in flight keep the old one). 0 or -errno. */
int blk_uring_set_file(struct blk_uring *u, unsigned file, int fd);

#endif
