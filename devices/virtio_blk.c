/* virtio-blk over a file. Requests run on the loop thread with pread/pwrite. */
#define _FILE_OFFSET_BITS 64
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/virtio_blk.h"

#define SECTOR 512ull
#define F_SEG_MAX 2
#define F_BLK_SIZE 6
#define F_RO 5
#define F_FLUSH 9
#define F_DISCARD 13
#define F_WRITE_ZEROES 14

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_DISCARD 11
#define T_WRITE_ZEROES 13

#define S_OK 0
#define S_IOERR 1
#define S_UNSUPP 2

#define ID_BYTES 20
#define MAX_DISCARD_SECTORS (1u << 22)

struct virtio_blk {
    int fd;
    bool read_only;
    uint64_t sectors;
    char id[ID_BYTES];
};

struct blk_config { /* virtio 1.2 §5.2.4, the fields we offer */
    uint64_t capacity;
    uint32_t size_max;
    uint32_t seg_max;
    uint8_t geometry[4];
    uint32_t blk_size;
    uint8_t topology[8];
    uint8_t writeback;
    uint8_t unused0;
    uint16_t num_queues;
    uint32_t max_discard_sectors;
    uint32_t max_discard_seg;
    uint32_t discard_sector_alignment;
    uint32_t max_write_zeroes_sectors;
    uint32_t max_write_zeroes_seg;
    uint8_t write_zeroes_may_unmap;
    uint8_t unused1[3];
} __attribute__((packed));

static struct virtio_blk *blk_of(struct virtio_dev *vd) { return vd->priv; }

static void blk_config(struct virtio_dev *vd, uint8_t *buf) {
    struct virtio_blk *b = blk_of(vd);
    struct blk_config c = {
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
    memcpy(buf, &c, sizeof c);
}

/* Moves len bytes between the file at pos and the request's buffers from offset off. */
static bool rw(struct virtio_blk *b, const struct virtq_req *r, bool write, uint64_t off, uint64_t len,
               uint64_t pos) {
    const struct virtq_buf *bufs = write ? r->out : r->in;
    unsigned n = write ? r->nout : r->nin;
    for (unsigned i = 0; i < n && len; i++) {
        if (off >= bufs[i].len) {
            off -= bufs[i].len;
            continue;
        }
        uint64_t chunk = bufs[i].len - off;
        if (chunk > len) chunk = len;
        uint8_t *p = bufs[i].p + off;
        for (uint64_t done = 0; done < chunk;) {
            ssize_t k = write ? pwrite(b->fd, p + done, chunk - done, (off_t)(pos + done))
                              : pread(b->fd, p + done, chunk - done, (off_t)(pos + done));
            if (k < 0 && errno == EINTR) continue;
            if (k < 0) return false;
            if (k == 0) { /* reading past the end of a file that shrank: zeroes */
                if (write) return false;
                memset(p + done, 0, chunk - done);
                break;
            }
            done += (uint64_t)k;
        }
        pos += chunk;
        len -= chunk;
        off = 0;
    }
    return len == 0;
}

static bool in_disk(const struct virtio_blk *b, uint64_t sector, uint64_t count) {
    return sector <= b->sectors && count <= b->sectors - sector;
}

static uint8_t discard(struct virtio_blk *b, const struct virtq_req *r, bool zeroes) {
    struct { uint64_t sector; uint32_t num_sectors; uint32_t flags; } seg;
    if (r->out_len != 16 + sizeof seg || virtq_req_read(r, 16, &seg, sizeof seg) != sizeof seg)
        return S_UNSUPP;
    if (seg.num_sectors > MAX_DISCARD_SECTORS || !in_disk(b, seg.sector, seg.num_sectors)) return S_IOERR;
    if (b->read_only) return S_IOERR;
    int mode = zeroes ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
    if (fallocate(b->fd, mode, (off_t)(seg.sector * SECTOR), (off_t)(seg.num_sectors * SECTOR)) == 0)
        return S_OK;
    if (!zeroes) return S_OK; /* discard is a hint */
    static const uint8_t zero[4096];
    for (uint64_t at = seg.sector * SECTOR, end = at + seg.num_sectors * SECTOR; at < end;) {
        size_t n = end - at < sizeof zero ? end - at : sizeof zero;
        ssize_t k = pwrite(b->fd, zero, n, (off_t)at);
        if (k <= 0) return S_IOERR;
        at += (uint64_t)k;
    }
    return S_OK;
}

/* One request; returns the status byte and sets *data_written. */
static uint8_t handle(struct virtio_blk *b, const struct virtq_req *r, uint32_t *data_written) {
    struct { uint32_t type; uint32_t reserved; uint64_t sector; } hdr;
    *data_written = 0;
    if (virtq_req_read(r, 0, &hdr, sizeof hdr) != sizeof hdr) return S_IOERR;
    uint64_t data_out = r->out_len - sizeof hdr; /* after the header */
    uint64_t data_in = r->in_len - 1;            /* before the status byte */
    switch (hdr.type) {
    case T_IN:
        if (data_in % SECTOR || !in_disk(b, hdr.sector, data_in / SECTOR)) return S_IOERR;
        if (!rw(b, r, false, 0, data_in, hdr.sector * SECTOR)) return S_IOERR;
        *data_written = (uint32_t)data_in;
        return S_OK;
    case T_OUT:
        if (b->read_only) return S_IOERR;
        if (data_out % SECTOR || !in_disk(b, hdr.sector, data_out / SECTOR)) return S_IOERR;
        return rw(b, r, true, sizeof hdr, data_out, hdr.sector * SECTOR) ? S_OK : S_IOERR;
    case T_FLUSH:
        if (b->read_only) return S_OK;
        return fdatasync(b->fd) == 0 ? S_OK : S_IOERR;
    case T_GET_ID: {
        size_t n = data_in < ID_BYTES ? data_in : ID_BYTES;
        *data_written = (uint32_t)virtq_req_write(r, 0, b->id, n);
        return S_OK;
    }
    case T_DISCARD:
        return discard(b, r, false);
    case T_WRITE_ZEROES:
        return discard(b, r, true);
    default:
        return S_UNSUPP;
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

static int blk_create(struct virtio_dev *vd, const void *params, char *err, size_t errlen) {
    const struct virtio_blk_params *p = params;
    int fd = open(p->path, (p->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "disk %s: %s", p->path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "disk %s: not a regular file", p->path);
        close(fd);
        return -1;
    }
    struct virtio_blk *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "disk %s: out of memory", p->path);
        close(fd);
        return -1;
    }
    b->fd = fd;
    b->read_only = p->read_only;
    b->sectors = (uint64_t)st.st_size / SECTOR;
    snprintf(b->id, sizeof b->id, "bellhop-%llx", (unsigned long long)st.st_ino);
    vd->priv = b;
    vd->features = 1ull << F_SEG_MAX | 1ull << F_BLK_SIZE | 1ull << F_FLUSH |
                   (p->read_only ? 1ull << F_RO : 1ull << F_DISCARD | 1ull << F_WRITE_ZEROES);
    vd->config_size = sizeof(struct blk_config);
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
