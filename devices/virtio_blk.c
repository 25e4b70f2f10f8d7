/* virtio-blk over a file: requests checked here, then run through io_uring (blk_uring.c) with
 * their completions reaped on the loop, or synchronously where there is no ring. */
#define _FILE_OFFSET_BITS 64
#include <errno.h>
#include <fcntl.h>
#include <lib/async/wait.h>
#include <lib/container_of.h>
#include <linux/falloc.h>
#include <linux/magic.h>
#include <linux/virtio_blk.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "devices/blk_uring.h"
#include "devices/virtio_blk.h"

#define SECTOR 512ull
#define MAX_DISCARD_SECTORS (1u << 22)
#define DIRECT_ALIGN 512u /* what O_DIRECT asks of buffers and lengths (the logical block size) */
#define FILE_MAIN 0       /* the disk's file: O_DIRECT with ,direct */
#define FILE_CACHED 1     /* with ,direct: the same file through the page cache, for unaligned requests */
/* Reads and writes this large go to the ring's workers, copied in parallel with the others,
 * rather than one after another on the loop thread. */
#define BLK_LARGE (64u << 10)

/* One request, checked: what it asks of the file, and where its answer goes. */
struct blk_io {
    struct blk_io *next_free;
    uint16_t head, q;
    uint32_t generation;
    uint32_t type;
    uint8_t *status;  /* the request's status byte, in guest memory */
    uint32_t written; /* bytes of the device-writable buffers an OK answer fills */
    uint64_t pos, len;
    int mode; /* discard and write-zeroes: fallocate's */
    unsigned file, niov;
    struct iovec iov[VIRTQ_MAX_SEGMENTS];
};

struct virtio_blk {
    int fds[BLK_URING_MAX_FILES];
    unsigned nfiles;
    bool read_only, direct;
    enum blk_io_engine engine;
    /* what its file's filesystem is known to do (learn_file) */
    bool nowait_reads, nowait_writes; /* RWF_NOWAIT, as far as we know */
    bool copy_small;                  /* tmpfs, ramfs under the default engine: copy_at_once */
    uint64_t sectors;
    char id[VIRTIO_BLK_ID_BYTES];
    struct virtio_dev *vd;
    /* the asynchronous path (loop thread); ring NULL on the synchronous one */
    struct blk_uring *ring;
    zx_handle_t ring_handle;
    async_wait_t ring_wait;
    bool waiting;
    unsigned depth, inflight, allocated;
    uint32_t starved; /* queues left unread because every slot was in flight */
    struct blk_io *free, *slots[BLK_DEPTH]; /* slots: every one allocated, for destroy */
    struct blk_io sync_io; /* the synchronous path's one request */
    struct virtio_throttle limit; /* over every queue (loop thread) */
};

/* The configuration space we offer: virtio 1.2 §5.2.4 up to write_zeroes_may_unmap (the
 * header's later fields belong to features we do not offer). */
#define BLK_CONFIG_SIZE (offsetof(struct virtio_blk_config, unused1) + sizeof(((struct virtio_blk_config *)0)->unused1))

static struct virtio_blk *blk_of(struct virtio_dev *vd) { return vd->priv; }

static void blk_config(struct virtio_dev *vd, uint8_t *buf) {
    struct virtio_blk *b = blk_of(vd);
    struct virtio_blk_config c = {
        .capacity = b->sectors,
        .seg_max = VIRTQ_MAX_SEGMENTS - 2,
        .blk_size = SECTOR,
        .num_queues = (uint16_t)vd->nqueues,
        .max_discard_sectors = MAX_DISCARD_SECTORS,
        .max_discard_seg = 1,
        .discard_sector_alignment = 1,
        .max_write_zeroes_sectors = MAX_DISCARD_SECTORS,
        .max_write_zeroes_seg = 1,
    };
    memcpy(buf, &c, BLK_CONFIG_SIZE);
}

static bool in_disk(const struct virtio_blk *b, uint64_t sector, uint64_t count) {
    return sector <= b->sectors && count <= b->sectors - sector;
}

/* The data part [off, off + len) of the request's in or out side as io's iovecs; with
 * ,direct, whether O_DIRECT can take them decides the file. */
static bool data_iov(struct virtio_blk *b, const struct virtq_req *r, bool in, uint64_t off, uint64_t len,
                     struct blk_io *io) {
    struct virtq_cursor c = virtq_cursor(r, in, off, len);
    bool aligned = true;
    io->niov = 0;
    for (struct virtq_buf piece; virtq_next(&c, &piece);) {
        io->iov[io->niov++] = (struct iovec){piece.p, piece.len};
        aligned &= (uintptr_t)piece.p % DIRECT_ALIGN == 0 && piece.len % DIRECT_ALIGN == 0;
    }
    io->len = len;
    io->file = b->direct && !aligned ? FILE_CACHED : FILE_MAIN;
    return c.left == 0;
}

#define PENDING 0xff /* parse: valid I/O, to be done */

/* Checks request r and fills io with what it asks; PENDING, or the status to answer at once. */
static uint8_t parse(struct virtio_blk *b, const struct virtq_req *r, struct blk_io *io) {
    struct virtio_blk_outhdr hdr;
    io->written = 0;
    if (virtq_req_read(r, 0, &hdr, sizeof hdr) != sizeof hdr) return VIRTIO_BLK_S_IOERR;
    uint64_t data_out = r->out_len - sizeof hdr; /* after the header */
    uint64_t data_in = r->in_len - 1;            /* before the status byte */
    io->type = hdr.type;
    io->pos = hdr.sector * SECTOR;
    switch (hdr.type) {
    case VIRTIO_BLK_T_IN:
        if (data_in % SECTOR || !in_disk(b, hdr.sector, data_in / SECTOR)) return VIRTIO_BLK_S_IOERR;
        if (!data_iov(b, r, true, 0, data_in, io)) return VIRTIO_BLK_S_IOERR;
        io->written = (uint32_t)data_in;
        return PENDING;
    case VIRTIO_BLK_T_OUT:
        if (b->read_only) return VIRTIO_BLK_S_IOERR;
        if (data_out % SECTOR || !in_disk(b, hdr.sector, data_out / SECTOR)) return VIRTIO_BLK_S_IOERR;
        return data_iov(b, r, false, sizeof hdr, data_out, io) ? PENDING : VIRTIO_BLK_S_IOERR;
    case VIRTIO_BLK_T_FLUSH:
        io->file = FILE_MAIN;
        return b->read_only ? VIRTIO_BLK_S_OK : PENDING;
    case VIRTIO_BLK_T_GET_ID: {
        size_t n = data_in < VIRTIO_BLK_ID_BYTES ? data_in : VIRTIO_BLK_ID_BYTES;
        io->written = (uint32_t)virtq_req_write(r, 0, b->id, n);
        return VIRTIO_BLK_S_OK;
    }
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES: {
        struct virtio_blk_discard_write_zeroes seg;
        if (r->out_len != sizeof hdr + sizeof seg || virtq_req_read(r, sizeof hdr, &seg, sizeof seg) != sizeof seg)
            return VIRTIO_BLK_S_UNSUPP;
        if (seg.num_sectors > MAX_DISCARD_SECTORS || !in_disk(b, seg.sector, seg.num_sectors)) return VIRTIO_BLK_S_IOERR;
        if (b->read_only) return VIRTIO_BLK_S_IOERR;
        io->pos = seg.sector * SECTOR, io->len = seg.num_sectors * SECTOR, io->file = FILE_MAIN;
        io->mode = hdr.type == VIRTIO_BLK_T_WRITE_ZEROES ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
        return PENDING;
    }
    default:
        return VIRTIO_BLK_S_UNSUPP;
    }
}

/* Moves io's data from byte `from` on, synchronously: the whole of a request on the
 * synchronous path, the rest of one the ring did only in part. */
static bool sync_rw(struct virtio_blk *b, struct blk_io *io, uint64_t from) {
    bool write = io->type == VIRTIO_BLK_T_OUT;
    int fd = b->fds[io->file];
    uint64_t off = 0; /* of iov[i] in the request's data */
    for (unsigned i = 0; i < io->niov; off += io->iov[i++].iov_len) {
        uint8_t *p = io->iov[i].iov_base;
        uint64_t len = io->iov[i].iov_len;
        for (uint64_t done = from > off ? from - off : 0; done < len;) {
            ssize_t k = write ? pwrite(fd, p + done, len - done, (off_t)(io->pos + off + done))
                              : pread(fd, p + done, len - done, (off_t)(io->pos + off + done));
            if (k < 0 && errno == EINTR) continue;
            if (k < 0) return false;
            if (k == 0) { /* reading past the end of a file that shrank: zeroes */
                if (write) return false;
                memset(p + done, 0, len - done);
                k = (ssize_t)(len - done);
            }
            done += (uint64_t)k;
        }
    }
    return true;
}

static uint8_t sync_fallocate(struct virtio_blk *b, const struct blk_io *io) {
    bool zeroes = io->type == VIRTIO_BLK_T_WRITE_ZEROES;
    if (fallocate(b->fds[FILE_MAIN], io->mode, (off_t)io->pos, (off_t)io->len) == 0) return VIRTIO_BLK_S_OK;
    if (!zeroes) return VIRTIO_BLK_S_OK; /* discard is a hint */
    static const uint8_t zero[4096];
    int fd = b->fds[b->direct ? FILE_CACHED : FILE_MAIN];
    for (uint64_t at = io->pos, end = at + io->len; at < end;) {
        size_t n = end - at < sizeof zero ? end - at : sizeof zero;
        ssize_t k = pwrite(fd, zero, n, (off_t)at);
        if (k <= 0) return VIRTIO_BLK_S_IOERR;
        at += (uint64_t)k;
    }
    return VIRTIO_BLK_S_OK;
}

static uint8_t run_sync(struct virtio_blk *b, struct blk_io *io) {
    switch (io->type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT: return sync_rw(b, io, 0) ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
    case VIRTIO_BLK_T_FLUSH: return fdatasync(b->fds[FILE_MAIN]) == 0 ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
    default: return sync_fallocate(b, io);
    }
}

/* The ring's answer for io: res is what the kernel returned. */
static uint8_t ring_status(struct virtio_blk *b, struct blk_io *io, int res) {
    switch (io->type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT:
        /* O_DIRECT refused what we took for aligned (a 4K-sector disk): through the cache then */
        if (res == -EINVAL && io->file == FILE_MAIN && b->direct) return io->file = FILE_CACHED, run_sync(b, io);
        if (res < 0) return VIRTIO_BLK_S_IOERR;
        /* a short transfer (the end of a file that shrank, or a partial write) is finished here */
        if ((uint64_t)res < io->len) return sync_rw(b, io, (uint64_t)res) ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
        return VIRTIO_BLK_S_OK;
    case VIRTIO_BLK_T_FLUSH: return res < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
    default: return res < 0 ? sync_fallocate(b, io) : VIRTIO_BLK_S_OK;
    }
}

static void answer(struct virtio_blk *b, struct blk_io *io, uint8_t status) {
    *io->status = status;
    virtio_push_used(b->vd, io->q, io->head, io->generation, (status == VIRTIO_BLK_S_OK ? io->written : 0) + 1);
}

/* ---- the asynchronous path ---- */

static struct blk_io *take_slot(struct virtio_blk *b) {
    struct blk_io *io = b->free;
    if (io) b->free = io->next_free;
    else if (b->allocated < b->depth && (io = malloc(sizeof *io))) b->slots[b->allocated++] = io;
    if (io) b->inflight++;
    return io;
}

static void put_slot(struct virtio_blk *b, struct blk_io *io) {
    io->next_free = b->free;
    b->free = io;
    b->inflight--;
}

static void blk_notify(struct virtio_dev *vd, unsigned q);

/* Completions in: each request answered, its slot freed; then the queues that were waiting
 * for a slot are read again. wait: until nothing is in flight. */
static void reap(struct virtio_blk *b, bool wait) {
    struct blk_uring_done done[32];
    for (unsigned n; b->inflight && (n = blk_uring_reap(b->ring, done, 32, wait)) > 0;) {
        for (unsigned i = 0; i < n; i++) {
            struct blk_io *io = done[i].user;
            answer(b, io, ring_status(b, io, done[i].res));
            put_slot(b, io);
        }
        if (n < 32 && !wait) break;
    }
    for (uint32_t s = b->starved; s && b->inflight < b->depth; s &= s - 1) {
        unsigned q = (unsigned)__builtin_ctz(s);
        b->starved &= ~(1u << q);
        if (!virtio_notify_again(b->vd, q)) blk_notify(b->vd, q); /* (no loop: at once) */
    }
}

static void arm(struct virtio_blk *b) {
    if (!b->waiting && b->inflight && b->ring_handle != ZX_HANDLE_INVALID)
        b->waiting = async_begin_wait(b->vd->env->loop, &b->ring_wait) == ZX_OK;
}

static void on_completions(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *s) {
    (void)d, (void)s;
    struct virtio_blk *b = container_of(w, struct virtio_blk, ring_wait);
    b->waiting = false;
    if (st != ZX_OK) return; /* the loop is shutting down */
    blk_uring_clear_event(b->ring);
    reap(b, false);
    arm(b);
}

/* A small read or write the page cache can do without waiting, done at once (RWF_NOWAIT):
 * the ring would cost more than the copy. False when it would wait, or the filesystem cannot
 * say (tmpfs; ext4's writes), or it is large (the ring's workers copy those in parallel). */
static bool done_without_waiting(struct virtio_blk *b, struct blk_io *io) {
    bool write = io->type == VIRTIO_BLK_T_OUT;
    bool *can = write ? &b->nowait_writes : &b->nowait_reads;
    if (b->direct || (io->type != VIRTIO_BLK_T_IN && !write) || !*can || io->len >= BLK_LARGE) return false;
    ssize_t k = write ? pwritev2(b->fds[io->file], io->iov, (int)io->niov, (off_t)io->pos, RWF_NOWAIT)
                      : preadv2(b->fds[io->file], io->iov, (int)io->niov, (off_t)io->pos, RWF_NOWAIT);
    if (k < 0 && errno == EOPNOTSUPP) *can = false; /* not worth asking again */
    return k >= 0 && (uint64_t)k == io->len;
}

/* A file in memory (tmpfs, ramfs) never waits for a device, and gives io_uring nothing to do
 * inline: a request goes to the ring (to a kernel worker) only when it is large and others are
 * on their way, for the workers to copy in parallel; every other one is copied at once. */
static bool copy_at_once(const struct virtio_blk *b, const struct blk_io *io, bool alone) {
    if (!b->copy_small) return false;
    if (io->type != VIRTIO_BLK_T_IN && io->type != VIRTIO_BLK_T_OUT) return true;
    return io->len < BLK_LARGE || alone;
}

static bool submit(struct virtio_blk *b, struct blk_io *io) {
    switch (io->type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT:
        return blk_uring_rw(b->ring, io->file, io->type == VIRTIO_BLK_T_OUT, io->iov, io->niov, io->pos,
                            io->len >= BLK_LARGE, io);
    case VIRTIO_BLK_T_FLUSH: return blk_uring_flush(b->ring, io->file, io);
    default: return blk_uring_fallocate(b->ring, io->file, io->mode, io->pos, io->len, io);
    }
}

/* Every request in flight completed and answered: the queues can be saved, the file swapped. */
static void drain(struct virtio_blk *b) {
    if (!b->ring || !b->inflight) return;
    blk_uring_submit(b->ring);
    reap(b, true);
}

/* What a request costs the limiter in bytes, besides its one op (as Firecracker counts): a
 * read's or a write's data, as the guest asked for it (one parse will refuse costs the same);
 * none for flush, get-id, discard and write-zeroes, which move no data through us. pop made
 * sure of the header and the status byte. */
static uint64_t data_bytes(const struct virtq_req *r) {
    struct virtio_blk_outhdr hdr;
    if (virtq_req_read(r, 0, &hdr, sizeof hdr) != sizeof hdr) return 0;
    return hdr.type == VIRTIO_BLK_T_IN ? r->in_len - 1 : hdr.type == VIRTIO_BLK_T_OUT ? r->out_len - sizeof hdr : 0;
}

/* The request just popped from q, once the limiter paid it; false when it went back to its
 * ring to wait for the limiter's timer. */
static bool within_limit(struct virtio_blk *b, unsigned q, const struct virtq_req *r) {
    if (virtio_throttle_take(&b->limit, q, data_bytes(r), 1)) return true;
    virtio_unpop(b->vd, q, r->generation);
    return false;
}

static bool pop(struct virtio_dev *vd, unsigned q, struct virtq_req *r) {
    if (!virtio_pop(vd, q, r)) return false;
    if (r->out_len >= 16 && r->in_len >= 1) return true; /* a header to read, a status byte to write */
    pthread_mutex_lock(&vd->lock);
    virtio_fail_locked(vd, q, "request without header or status byte");
    pthread_mutex_unlock(&vd->lock);
    return false;
}

static void blk_notify(struct virtio_dev *vd, unsigned q) {
    struct virtio_blk *b = blk_of(vd);
    struct virtq_req req, *r = &req;
    for (unsigned popped = 0;; popped++) {
        struct blk_io *io = b->ring ? take_slot(b) : &b->sync_io;
        if (!io) { /* every slot in flight: the queue is read again once one completes */
            b->starved |= 1u << q;
            break;
        }
        if (!pop(vd, q, r) || (virtio_throttle_limits(&b->limit) && !within_limit(b, q, r))) {
            if (b->ring) put_slot(b, io);
            break;
        }
        io->q = (uint16_t)q, io->head = r->head, io->generation = r->generation;
        struct virtq_cursor c = virtq_cursor(r, true, r->in_len - 1, 1);
        struct virtq_buf st = {0}; /* there is one: pop checked in_len */
        virtq_next(&c, &st);
        io->status = st.p;
        uint8_t status = parse(b, r, io);
        if (status == PENDING && (!b->ring || copy_at_once(b, io, popped == 0 && b->inflight == 1)))
            status = run_sync(b, io);
        if (status == PENDING && done_without_waiting(b, io)) status = VIRTIO_BLK_S_OK;
        if (status == PENDING && submit(b, io)) continue;
        if (status == PENDING) status = run_sync(b, io); /* no room in the ring: cannot happen below depth */
        answer(b, io, status);
        if (b->ring) put_slot(b, io);
    }
    if (!b->ring || !b->inflight) return;
    int rc = blk_uring_submit(b->ring);
    if (rc < 0) fprintf(stderr, "bellhop: virtio-blk: io_uring_enter: %s (retried at the next request)\n", strerror(-rc));
    if (b->ring_handle == ZX_HANDLE_INVALID) return drain(b); /* no loop (device tests): done before returning */
    reap(b, false); /* what the submit completed inline (the page cache had it): answered now, not a loop turn later */
    arm(b);
}

static void blk_quiesce(struct virtio_dev *vd) { drain(blk_of(vd)); }

/* ---- the disk's files ---- */

static void close_files(int *fds, unsigned n) {
    for (unsigned i = 0; i < n; i++)
        if (fds[i] >= 0) close(fds[i]);
}

/* The disk's file(s), opened: with direct, O_DIRECT and then the same file cached. The count of
 * files and the size in sectors; -1 with the reason. */
static int open_disk(const char *path, bool read_only, bool direct, int *fds, uint64_t *sectors, uint64_t *ino,
                     char *err, size_t errlen) {
    int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
    fds[0] = open(path, flags | (direct ? O_DIRECT : 0));
    if (fds[0] < 0) {
        if (direct && errno == EINVAL) snprintf(err, errlen, "disk %s: its filesystem does not take O_DIRECT", path);
        else /* Firecracker's words, which its clients match */
            snprintf(err, errlen, "Error manipulating the backing file: %s (os error %d) %s", strerror(errno), errno, path);
        return -1;
    }
    struct stat st;
    if (fstat(fds[0], &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "disk %s: not a regular file", path);
        close(fds[0]);
        return -1;
    }
    if (direct && (fds[1] = open(path, flags)) < 0) {
        snprintf(err, errlen, "disk %s: %s", path, strerror(errno));
        close(fds[0]);
        return -1;
    }
    *sectors = (uint64_t)st.st_size / SECTOR;
    *ino = st.st_ino;
    return (int)(direct ? 2 : 1);
}

/* A file of tmpfs or ramfs: its reads and writes are copies that never wait for a device. */
static bool in_memory(int fd) {
    struct statfs fs;
    return fstatfs(fd, &fs) == 0 && (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC);
}

/* What the disk's (new) file's filesystem does is learnt anew. */
static void learn_file(struct virtio_blk *b) {
    b->nowait_reads = b->nowait_writes = true;
    b->copy_small = b->engine == BLK_IO_AUTO && in_memory(b->fds[FILE_MAIN]);
}

int virtio_blk_replace(struct virtio_dev *vd, const char *path, char *err, size_t errlen) {
    struct virtio_blk *b = blk_of(vd);
    uint64_t sectors, ino;
    int fds[BLK_URING_MAX_FILES] = {-1, -1};
    if (open_disk(path, b->read_only, b->direct, fds, &sectors, &ino, err, errlen) < 0) return -1;
    drain(b); /* nothing in flight on the old file */
    for (unsigned i = 0; b->ring && i < b->nfiles; i++) {
        int rc = blk_uring_set_file(b->ring, i, fds[i]);
        if (rc < 0) {
            snprintf(err, errlen, "disk %s: io_uring: %s", path, strerror(-rc));
            for (unsigned j = 0; j < i; j++) blk_uring_set_file(b->ring, j, b->fds[j]);
            close_files(fds, b->nfiles);
            return -1;
        }
    }
    int old[BLK_URING_MAX_FILES];
    memcpy(old, b->fds, sizeof old);
    pthread_mutex_lock(&vd->lock); /* the size is read by config reads, on vCPU threads */
    memcpy(b->fds, fds, sizeof fds);
    b->sectors = sectors;
    pthread_mutex_unlock(&vd->lock);
    learn_file(b);
    close_files(old, b->nfiles);
    virtio_config_changed(vd);
    return 0;
}

void virtio_blk_set_limiter(struct virtio_dev *vd, const struct rate_limiter_config *c) {
    virtio_throttle_set(&blk_of(vd)->limit, c);
}

bool virtio_blk_async(const struct virtio_dev *vd) { return ((const struct virtio_blk *)vd->priv)->ring != NULL; }

/* The ring, or the synchronous path with a line saying why. */
static void start_ring(struct virtio_blk *b, const char *path) {
    char why[160];
    b->ring = blk_uring_create(b->fds, b->nfiles, b->depth, why, sizeof why);
    if (!b->ring) {
        fprintf(stderr, "bellhop: disk %s: no io_uring (%s): its requests run one at a time on the loop thread\n", path,
                why);
        return;
    }
    async_dispatcher_t *loop = b->vd->env->loop;
    if (loop && zx_fd_create(blk_uring_event_fd(b->ring), 0, &b->ring_handle) == ZX_OK)
        b->ring_wait = (async_wait_t){.handler = on_completions, .object = b->ring_handle, .trigger = ZX_FD_READABLE};
}

static int blk_create(struct virtio_dev *vd, const void *params, char *err, size_t errlen) {
    const struct virtio_blk_params *p = params;
    if (!p || !p->path) {
        snprintf(err, errlen, "virtio-blk: no backing file (--disk PATH)");
        return -1;
    }
    if (p->depth > BLK_DEPTH) {
        snprintf(err, errlen, "disk %s: depth %u (at most %d)", p->path, p->depth, BLK_DEPTH);
        return -1;
    }
    if (p->queues > VIRTIO_MAX_QUEUES) {
        snprintf(err, errlen, "disk %s: %u queues (at most %d)", p->path, p->queues, VIRTIO_MAX_QUEUES);
        return -1;
    }
    struct virtio_blk *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "disk %s: out of memory", p->path);
        return -1;
    }
    uint64_t ino;
    b->fds[0] = b->fds[1] = -1;
    int n = open_disk(p->path, p->read_only, p->direct, b->fds, &b->sectors, &ino, err, errlen);
    if (n < 0) {
        free(b);
        return -1;
    }
    b->nfiles = (unsigned)n;
    b->read_only = p->read_only;
    b->direct = p->direct;
    b->engine = p->engine;
    learn_file(b);
    b->depth = p->depth ? p->depth : BLK_DEPTH;
    b->vd = vd;
    b->ring_handle = ZX_HANDLE_INVALID;
    snprintf(b->id, sizeof b->id, "bellhop-%llx", (unsigned long long)ino);
    virtio_throttle_init(&b->limit, vd, &p->limiter);
    vd->priv = b;
    if (p->engine != BLK_IO_SYNC) start_ring(b, p->path);
    if (p->queues > 1) vd->nqueues = p->queues;
    vd->features = 1ull << VIRTIO_BLK_F_SEG_MAX | 1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_FLUSH |
                   (p->queues > 1 ? 1ull << VIRTIO_BLK_F_MQ : 0) |
                   (p->read_only ? 1ull << VIRTIO_BLK_F_RO : 1ull << VIRTIO_BLK_F_DISCARD | 1ull << VIRTIO_BLK_F_WRITE_ZEROES);
    vd->config_size = BLK_CONFIG_SIZE;
    return 0;
}

/* The loop is gone, the guest's memory not yet: what is still in flight is waited for (the
 * kernel would otherwise go on writing into memory about to be unmapped), no queue read again. */
static void blk_destroy(struct virtio_dev *vd) {
    struct virtio_blk *b = blk_of(vd);
    b->starved = 0;
    virtio_throttle_stop(&b->limit);
    drain(b);
    if (b->ring_handle != ZX_HANDLE_INVALID) zx_handle_close(b->ring_handle);
    blk_uring_destroy(b->ring);
    close_files(b->fds, b->nfiles);
    for (unsigned i = 0; i < b->allocated; i++) free(b->slots[i]);
    free(b);
}

const struct virtio_device_ops virtio_blk_ops = {
    .name = "virtio-blk",
    .device_id = VIRTIO_ID_BLOCK,
    .nqueues = 1,
    .queue_max = VIRTQ_MAX_SIZE,
    .create = blk_create,
    .destroy = blk_destroy,
    .config_read = blk_config,
    .queue_notify = blk_notify,
    .quiesce = blk_quiesce,
};
