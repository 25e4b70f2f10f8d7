/* Split virtqueues, laid out as <linux/virtio_ring.h> has them (all little-endian, x86 only):
 * the descriptor table (struct vring_desc[num]), the avail ring (struct vring_avail, then
 * used_event after its ring) and the used ring (struct vring_used, then avail_event).
 * Index fields are read once into locals (the guest may change them at any time) and
 * published with release ordering after the entries they cover. */
#include <stdatomic.h>
#include <stddef.h>

#include "devices/virtqueue.h"

/* Byte offsets in the rings; entry num of either ring is its event word (EVENT_IDX). */
#define AVAIL_IDX offsetof(struct vring_avail, idx)
#define AVAIL_ENTRY(i) (offsetof(struct vring_avail, ring) + sizeof(__virtio16) * (uint64_t)(i))
#define USED_IDX offsetof(struct vring_used, idx)
#define USED_ENTRY(i) (offsetof(struct vring_used, ring) + sizeof(struct vring_used_elem) * (uint64_t)(i))

uint64_t virtq_desc_bytes(uint16_t num) { return sizeof(struct vring_desc) * (uint64_t)num; }
uint64_t virtq_avail_bytes(uint16_t num) { return AVAIL_ENTRY(num) + sizeof(__virtio16); }
uint64_t virtq_used_bytes(uint16_t num) { return USED_ENTRY(num) + sizeof(__virtio16); }

static uint16_t load16(const void *p) {
    return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}
static void store16(void *p, uint16_t v) { __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELEASE); }

#define BAD(msg) (*why = (msg), VIRTQ_BAD)

static enum virtq_take_result add_buf(struct virtq_req *r, const struct guest_mem *gm,
                                      const struct vring_desc *d, const char **why) {
    if (d->len == 0) return BAD("zero-length buffer");
    uint8_t *p = gm_ptr(gm, d->addr, d->len);
    if (!p) return BAD("buffer outside guest memory");
    if (r->nout + r->nin == VIRTQ_MAX_SEGMENTS) return BAD("too many buffers in one chain");
    if (d->flags & VIRTQ_DESC_F_WRITE) {
        /* Written from here on, maybe by the kernel (io_uring's reads) long before the
         * request is pushed back: marked now, and again at the push (devices/virtio.c). */
        gm_mark(gm, d->addr, d->len);
        r->in[r->nin++] = (struct virtq_buf){p, d->len};
        r->in_len += d->len;
    } else {
        if (r->nin) return BAD("device-readable buffer after a device-writable one");
        r->out[r->nout++] = (struct virtq_buf){p, d->len};
        r->out_len += d->len;
    }
    return VIRTQ_TAKEN;
}

enum virtq_take_result virtq_take(struct virtq *q, const struct guest_mem *gm, bool indirect,
                                  bool event_idx, struct virtq_req *r, const char **why) {
    uint8_t *avail = gm_ptr(gm, q->avail, virtq_avail_bytes(q->num));
    const struct vring_desc *table = gm_ptr(gm, q->desc, virtq_desc_bytes(q->num));
    uint8_t *used = gm_ptr(gm, q->used, virtq_used_bytes(q->num));
    if (!avail || !table || !used) return BAD("rings outside guest memory");
    uint16_t avail_idx = load16(avail + AVAIL_IDX);
    uint16_t pending = (uint16_t)(avail_idx - q->last_avail);
    if (pending == 0) {
        if (event_idx) { /* ask to be notified about the next one, then look once more */
            store16(used + USED_ENTRY(q->num), q->last_avail); /* avail_event */
            gm_mark(gm, q->used + USED_ENTRY(q->num), sizeof(__virtio16));
            atomic_thread_fence(memory_order_seq_cst);
            avail_idx = load16(avail + AVAIL_IDX);
            pending = (uint16_t)(avail_idx - q->last_avail);
        }
        if (pending == 0) return VIRTQ_EMPTY;
    }
    if (pending > q->num) return BAD("available index moved by more than the queue size");
    uint16_t head = load16(avail + AVAIL_ENTRY(q->last_avail % q->num));
    if (head >= q->num) return BAD("head descriptor index out of range");
    r->head = head;
    r->nout = r->nin = 0;
    r->out_len = r->in_len = 0;

    const struct vring_desc *t = table;
    uint32_t tsize = q->num, i = head, seen = 0;
    bool in_indirect = false;
    for (;;) {
        struct vring_desc d;
        memcpy(&d, &t[i], sizeof d);
        if (++seen > tsize) return BAD("descriptor loop");
        if (d.flags & VIRTQ_DESC_F_INDIRECT) {
            if (!indirect) return BAD("indirect descriptor without VIRTIO_F_INDIRECT_DESC");
            if (in_indirect) return BAD("nested indirect descriptor");
            if (d.flags & VIRTQ_DESC_F_NEXT) return BAD("indirect descriptor with NEXT");
            if (d.len == 0 || d.len % sizeof d || d.len / sizeof d > VIRTQ_MAX_SEGMENTS)
                return BAD("bad indirect table length");
            t = gm_ptr(gm, d.addr, d.len);
            if (!t) return BAD("indirect table outside guest memory");
            tsize = d.len / sizeof d;
            i = 0;
            seen = 0;
            in_indirect = true;
            continue;
        }
        enum virtq_take_result res = add_buf(r, gm, &d, why);
        if (res != VIRTQ_TAKEN) return res;
        if (!(d.flags & VIRTQ_DESC_F_NEXT)) break;
        if (d.next >= tsize) return BAD("next descriptor index out of range");
        i = d.next;
    }
    if (r->out_len + r->in_len > UINT32_MAX) return BAD("chain longer than 4 GiB");
    q->last_avail++;
    return VIRTQ_TAKEN;
}

bool virtq_put(struct virtq *q, const struct guest_mem *gm, bool event_idx, uint16_t head,
               uint32_t written) {
    uint8_t *used = gm_ptr(gm, q->used, virtq_used_bytes(q->num));
    const uint8_t *avail = gm_ptr(gm, q->avail, virtq_avail_bytes(q->num));
    if (!used || !avail) return false;
    struct vring_used_elem elem = {.id = head, .len = written};
    memcpy(used + USED_ENTRY(q->used_idx % q->num), &elem, sizeof elem);
    gm_mark(gm, q->used + USED_ENTRY(q->used_idx % q->num), sizeof elem);
    uint16_t old = q->used_idx++;
    store16(used + USED_IDX, q->used_idx);
    gm_mark(gm, q->used + USED_IDX, sizeof(__virtio16));
    atomic_thread_fence(memory_order_seq_cst);
    if (!event_idx) return !(load16(avail + offsetof(struct vring_avail, flags)) & VRING_AVAIL_F_NO_INTERRUPT);
    /* did the new index step past used_event since old? */
    return vring_need_event(load16(avail + AVAIL_ENTRY(q->num)), q->used_idx, old);
}
