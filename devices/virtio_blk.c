/* virtio-blk over a file. Requests run on the loop thread with pread/pwrite. */
#define _FILE_OFFSET_BITS 64
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/virtio_blk.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/virtio_blk.h"

#define SECTOR 512ull
#define MAX_DISCARD_SECTORS (1u << 22)

struct virtio_blk {
    int fd;
    bool read_only;
    uint64_t sectors;
    char id[VIRTIO_BLK_ID_BYTES];
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
        .num_queues = 1,
        .max_discard_sectors = MAX_DISCARD_SECTORS,
        .max_discard_seg = 1,
        .discard_sector_alignment = 1,
        .max_write_zeroes_sectors = MAX_DISCARD_SECTORS,
        .max_write_zeroes_seg = 1,
    };
    memcpy(buf, &c, BLK_CONFIG_SIZE);
}

/* Moves len bytes between the file at pos and the request's buffers from offset off. */
static bool rw(struct virtio_blk *b, const struct virtq_req *r, bool write, uint64_t off, uint64_t len,
               uint64_t pos) {
    struct virtq_cursor c = virtq_cursor(r, !write, off, len);
    for (struct virtq_buf piece; virtq_next(&c, &piece); pos += piece.len) {
        for (uint64_t done = 0; done < piece.len;) {
            ssize_t k = write ? pwrite(b->fd, piece.p + done, piece.len - done, (off_t)(pos + done))
                              : pread(b->fd, piece.p + done, piece.len - done, (off_t)(pos + done));
            if (k < 0 && errno == EINTR) continue;
            if (k < 0) return false;
            if (k == 0) { /* reading past the end of a file that shrank: zeroes */
                if (write) return false;
                memset(piece.p + done, 0, piece.len - done);
                break;
            }
            done += (uint64_t)k;
        }
    }
    return c.left == 0;
}

static bool in_disk(const struct virtio_blk *b, uint64_t sector, uint64_t count) {
    return sector <= b->sectors && count <= b->sectors - sector;
}

static uint8_t discard(struct virtio_blk *b, const struct virtq_req *r, bool zeroes) {
    struct virtio_blk_discard_write_zeroes seg;
    if (r->out_len != sizeof(struct virtio_blk_outhdr) + sizeof seg ||
        virtq_req_read(r, sizeof(struct virtio_blk_outhdr), &seg, sizeof seg) != sizeof seg)
        return VIRTIO_BLK_S_UNSUPP;
    if (seg.num_sectors > MAX_DISCARD_SECTORS || !in_disk(b, seg.sector, seg.num_sectors)) return VIRTIO_BLK_S_IOERR;
    if (b->read_only) return VIRTIO_BLK_S_IOERR;
    int mode = zeroes ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
    if (fallocate(b->fd, mode, (off_t)(seg.sector * SECTOR), (off_t)(seg.num_sectors * SECTOR)) == 0)
        return VIRTIO_BLK_S_OK;
    if (!zeroes) return VIRTIO_BLK_S_OK; /* discard is a hint */
    static const uint8_t zero[4096];
    for (uint64_t at = seg.sector * SECTOR, end = at + seg.num_sectors * SECTOR; at < end;) {
        size_t n = end - at < sizeof zero ? end - at : sizeof zero;
        ssize_t k = pwrite(b->fd, zero, n, (off_t)at);
        if (k <= 0) return VIRTIO_BLK_S_IOERR;
        at += (uint64_t)k;
    }
    return VIRTIO_BLK_S_OK;
}

/* One request; returns the status byte and sets *data_written. */
static uint8_t handle(struct virtio_blk *b, const struct virtq_req *r, uint32_t *data_written) {
    struct virtio_blk_outhdr hdr;
    *data_written = 0;
    if (virtq_req_read(r, 0, &hdr, sizeof hdr) != sizeof hdr) return VIRTIO_BLK_S_IOERR;
    uint64_t data_out = r->out_len - sizeof hdr; /* after the header */
    uint64_t data_in = r->in_len - 1;            /* before the status byte */
    switch (hdr.type) {
    case VIRTIO_BLK_T_IN:
        if (data_in % SECTOR || !in_disk(b, hdr.sector, data_in / SECTOR)) return VIRTIO_BLK_S_IOERR;
        if (!rw(b, r, false, 0, data_in, hdr.sector * SECTOR)) return VIRTIO_BLK_S_IOERR;
        *data_written = (uint32_t)data_in;
        return VIRTIO_BLK_S_OK;
    case VIRTIO_BLK_T_OUT:
        if (b->read_only) return VIRTIO_BLK_S_IOERR;
        if (data_out % SECTOR || !in_disk(b, hdr.sector, data_out / SECTOR)) return VIRTIO_BLK_S_IOERR;
        return rw(b, r, true, sizeof hdr, data_out, hdr.sector * SECTOR) ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
    case VIRTIO_BLK_T_FLUSH:
        if (b->read_only) return VIRTIO_BLK_S_OK;
        return fdatasync(b->fd) == 0 ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
    case VIRTIO_BLK_T_GET_ID: {
        size_t n = data_in < VIRTIO_BLK_ID_BYTES ? data_in : VIRTIO_BLK_ID_BYTES;
        *data_written = (uint32_t)virtq_req_write(r, 0, b->id, n);
        return VIRTIO_BLK_S_OK;
    }
    case VIRTIO_BLK_T_DISCARD:
        return discard(b, r, false);
    case VIRTIO_BLK_T_WRITE_ZEROES:
        return discard(b, r, true);
    default:
        return VIRTIO_BLK_S_UNSUPP;
    }
}

static void blk_notify(struct virtio_dev *vd, unsigned q) {
    struct virtio_blk *b = blk_of(vd);
    struct virtq_req req, *r = &req;
    while (virtio_pop(vd, q, r)) {
        uint32_t written = 0;
        uint8_t status;
        /* A request needs a header to read and a status byte to write. */
        if (r->out_len < 16 || r->in_len < 1) {
            pthread_mutex_lock(&vd->lock);
            virtio_fail_locked(vd, q, "request without header or status byte");
            pthread_mutex_unlock(&vd->lock);
            break;
        }
        status = handle(b, r, &written);
        virtq_req_write(r, r->in_len - 1, &status, 1);
        virtio_push(vd, q, r, written + 1);
    }
}

/* The disk's file, opened: its fd and size in sectors; -1 with the reason. */
static int open_disk(const char *path, bool read_only, uint64_t *sectors, uint64_t *ino, char *err, size_t errlen) {
    int fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "disk %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "disk %s: not a regular file", path);
        close(fd);
        return -1;
    }
    *sectors = (uint64_t)st.st_size / SECTOR;
    *ino = st.st_ino;
    return fd;
}

int virtio_blk_replace(struct virtio_dev *vd, const char *path, char *err, size_t errlen) {
    struct virtio_blk *b = blk_of(vd);
    uint64_t sectors, ino;
    int fd = open_disk(path, b->read_only, &sectors, &ino, err, errlen);
    if (fd < 0) return -1;
    int old = b->fd;
    pthread_mutex_lock(&vd->lock); /* the size is read by config reads, on vCPU threads */
    b->fd = fd;
    b->sectors = sectors;
    pthread_mutex_unlock(&vd->lock);
    close(old);
    virtio_config_changed(vd);
    return 0;
}

static int blk_create(struct virtio_dev *vd, const void *params, char *err, size_t errlen) {
    const struct virtio_blk_params *p = params;
    if (!p || !p->path) {
        snprintf(err, errlen, "virtio-blk: no backing file (--disk PATH)");
        return -1;
    }
    uint64_t sectors, ino;
    int fd = open_disk(p->path, p->read_only, &sectors, &ino, err, errlen);
    if (fd < 0) return -1;
    struct virtio_blk *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "disk %s: out of memory", p->path);
        close(fd);
        return -1;
    }
    b->fd = fd;
    b->read_only = p->read_only;
    b->sectors = sectors;
    snprintf(b->id, sizeof b->id, "bellhop-%llx", (unsigned long long)ino);
    vd->priv = b;
    vd->features = 1ull << VIRTIO_BLK_F_SEG_MAX | 1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_FLUSH |
                   (p->read_only ? 1ull << VIRTIO_BLK_F_RO : 1ull << VIRTIO_BLK_F_DISCARD | 1ull << VIRTIO_BLK_F_WRITE_ZEROES);
    vd->config_size = BLK_CONFIG_SIZE;
    return 0;
}

static void blk_destroy(struct virtio_dev *vd) {
    struct virtio_blk *b = blk_of(vd);
    close(b->fd);
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
};
