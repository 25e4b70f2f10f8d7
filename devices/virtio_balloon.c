/* virtio-balloon. The inflate queue carries arrays of 32-bit page frame numbers; each page
 * is discarded through guest memory's checked accessor, so a frame outside RAM is refused
 * like any bad address (the request still completes: the driver has given the page up either
 * way). The device keeps no per-page state: without MUST_TELL_HOST a driver may touch a
 * ballooned page again at any time and simply finds it zeroed. */
#include <linux/virtio_balloon.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio_balloon.h"
#include "base/guest_mem.h"

enum { INFLATE_Q, DEFLATE_Q };
#define PAGE_SIZE_4K (1u << VIRTIO_BALLOON_PFN_SHIFT)

struct virtio_balloon {
    uint32_t target_pages;
    uint32_t actual; /* the driver's count, as it wrote it */
};

static void inflate(const struct guest_mem *gm, const struct virtq_req *r) {
    struct virtq_cursor c = virtq_cursor(r, false, 0, r->out_len - r->out_len % 4);
    uint8_t pfn_bytes[4];
    unsigned have = 0;
    /* A frame number may straddle two buffers: gathered byte by byte across pieces. */
    for (struct virtq_buf piece; virtq_next(&c, &piece);)
        for (uint32_t i = 0; i < piece.len; i++) {
            pfn_bytes[have++] = piece.p[i];
            if (have < 4) continue;
            have = 0;
            uint32_t pfn;
            memcpy(&pfn, pfn_bytes, 4);
            gm_discard(gm, (uint64_t)pfn << VIRTIO_BALLOON_PFN_SHIFT, PAGE_SIZE_4K);
        }
}

static void balloon_notify(struct virtio_dev *vd, unsigned q) {
    struct virtq_req req, *r = &req;
    while (virtio_pop(vd, q, r)) {
        if (q == INFLATE_Q) inflate(&vd->env->mem, r);
        virtio_push(vd, q, r, 0);
    }
}

static int balloon_create(struct virtio_dev *vd, const void *params, char *err, size_t errlen) {
    const struct virtio_balloon_params *p = params;
    struct virtio_balloon *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "virtio-balloon: out of memory");
        return -1;
    }
    if (p) b->target_pages = p->target_pages;
    vd->priv = b;
    vd->features = p && p->deflate_on_oom ? 1ull << VIRTIO_BALLOON_F_DEFLATE_ON_OOM : 0;
    vd->config_size = offsetof(struct virtio_balloon_config, free_page_hint_cmd_id);
    return 0;
}

static void balloon_destroy(struct virtio_dev *vd) { free(vd->priv); }

static void balloon_config_read(struct virtio_dev *vd, uint8_t *buf) {
    const struct virtio_balloon *b = vd->priv;
    uint32_t words[2] = {b->target_pages, b->actual}; /* little-endian, as the host is */
    memcpy(buf, words, sizeof words);
}

static void balloon_config_write(struct virtio_dev *vd, uint32_t off, uint8_t size, uint64_t value) {
    struct virtio_balloon *b = vd->priv;
    if (off == offsetof(struct virtio_balloon_config, actual) && size == 4) b->actual = (uint32_t)value;
}

const struct virtio_device_ops virtio_balloon_ops = {
    .name = "virtio-balloon",
    .device_id = VIRTIO_ID_BALLOON,
    .nqueues = 2,
    .queue_max = VIRTQ_MAX_SIZE,
    .create = balloon_create,
    .destroy = balloon_destroy,
    .config_read = balloon_config_read,
    .config_write = balloon_config_write,
    .queue_notify = balloon_notify,
};
