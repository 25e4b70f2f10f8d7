/* virtio-blk's io_uring engine (see blk_uring.h). */
#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "devices/blk_uring.h"

struct blk_uring {
    struct io_uring ring;
    int event_fd;
    unsigned nfiles;
};

/* What the ring may do once enabled: the four operations, on fixed files only, and the one
 * registration PATCH /drives needs. */
static int restrict_ring(struct io_uring *ring) {
    static const uint8_t ops[] = {IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC, IORING_OP_FALLOCATE};
    struct io_uring_restriction res[sizeof ops + 3];
    memset(res, 0, sizeof res);
    unsigned n = 0;
    for (unsigned i = 0; i < sizeof ops; i++)
        res[n].opcode = IORING_RESTRICTION_SQE_OP, res[n++].sqe_op = ops[i];
    res[n].opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED, res[n++].sqe_flags = IOSQE_IO_DRAIN | IOSQE_FIXED_FILE | IOSQE_ASYNC;
    res[n].opcode = IORING_RESTRICTION_SQE_FLAGS_REQUIRED, res[n++].sqe_flags = IOSQE_FIXED_FILE;
    res[n].opcode = IORING_RESTRICTION_REGISTER_OP, res[n++].register_op = IORING_REGISTER_FILES_UPDATE;
    return io_uring_register_restrictions(ring, res, n);
}

struct blk_uring *blk_uring_create(const int *fds, unsigned nfiles, unsigned depth, char *err, size_t errlen) {
    struct blk_uring *u = calloc(1, sizeof *u);
    if (!u) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    u->event_fd = -1;
    u->nfiles = nfiles;
    const char *step = "io_uring_setup";
    int rc = io_uring_queue_init(depth, &u->ring, IORING_SETUP_R_DISABLED);
    if (rc < 0) {
        free(u);
        snprintf(err, errlen, "%s: %s", step, strerror(-rc));
        return NULL;
    }
    if ((u->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) rc = -errno, step = "eventfd";
    if (rc == 0 && (rc = io_uring_register_files(&u->ring, fds, nfiles)) < 0) step = "registering the disk";
    /* only for completions the submitting call did not already post (those are reaped at once) */
    if (rc == 0 && (rc = io_uring_register_eventfd_async(&u->ring, u->event_fd)) < 0) step = "registering its eventfd";
    if (rc == 0 && (rc = restrict_ring(&u->ring)) < 0) step = "restricting it";
    if (rc == 0 && (rc = io_uring_enable_rings(&u->ring)) < 0) step = "enabling it";
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", step, strerror(-rc));
        blk_uring_destroy(u);
        return NULL;
    }
    return u;
}

void blk_uring_destroy(struct blk_uring *u) {
    if (!u) return;
    io_uring_queue_exit(&u->ring); /* the kernel finishes or cancels what is in flight */
    if (u->event_fd >= 0) close(u->event_fd);
    free(u);
}

int blk_uring_event_fd(const struct blk_uring *u) { return u->event_fd; }

static struct io_uring_sqe *sqe_for(struct blk_uring *u, unsigned file) {
    return file < u->nfiles ? io_uring_get_sqe(&u->ring) : NULL;
}

bool blk_uring_rw(struct blk_uring *u, unsigned file, bool write, const struct iovec *iov, unsigned n, uint64_t pos,
                  bool to_workers, void *user) {
    struct io_uring_sqe *sqe = sqe_for(u, file);
    if (!sqe) return false;
    if (write) io_uring_prep_writev(sqe, (int)file, iov, n, pos);
    else io_uring_prep_readv(sqe, (int)file, iov, n, pos);
    io_uring_sqe_set_data(sqe, user);
    io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE | (to_workers ? IOSQE_ASYNC : 0));
    return true;
}

bool blk_uring_flush(struct blk_uring *u, unsigned file, void *user) {
    struct io_uring_sqe *sqe = sqe_for(u, file);
    if (!sqe) return false;
    io_uring_prep_fsync(sqe, (int)file, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data(sqe, user);
    io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE | IOSQE_IO_DRAIN);
    return true;
}

bool blk_uring_fallocate(struct blk_uring *u, unsigned file, int mode, uint64_t pos, uint64_t len, void *user) {
    struct io_uring_sqe *sqe = sqe_for(u, file);
    if (!sqe) return false;
    io_uring_prep_fallocate(sqe, (int)file, mode, (off_t)pos, (off_t)len);
    io_uring_sqe_set_data(sqe, user);
    io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
    return true;
}

int blk_uring_submit(struct blk_uring *u) {
    int rc;
    do rc = io_uring_submit(&u->ring);
    while (rc == -EINTR);
    return rc < 0 ? rc : 0;
}

void blk_uring_clear_event(struct blk_uring *u) {
    uint64_t count;
    if (read(u->event_fd, &count, sizeof count) < 0) { /* nothing signalled since the last time */
    }
}

unsigned blk_uring_reap(struct blk_uring *u, struct blk_uring_done *out, unsigned max, bool wait) {
    struct io_uring_cqe *cqe;
    if (wait) {
        int rc;
        do rc = io_uring_wait_cqe(&u->ring, &cqe);
        while (rc == -EINTR);
        if (rc < 0) return 0;
    }
    unsigned n = 0, head;
    io_uring_for_each_cqe(&u->ring, head, cqe) {
        if (n == max) break;
        out[n++] = (struct blk_uring_done){io_uring_cqe_get_data(cqe), cqe->res};
    }
    io_uring_cq_advance(&u->ring, n);
    return n;
}

int blk_uring_set_file(struct blk_uring *u, unsigned file, int fd) {
    if (file >= u->nfiles) return -EINVAL;
    int rc = io_uring_register_files_update(&u->ring, file, &fd, 1);
    return rc < 0 ? rc : 0;
}
