/* Split virtqueues. Layouts (all little-endian, x86 only):
 *   desc[num]:  {u64 addr; u32 len; u16 flags; u16 next}
 *   avail:      {u16 flags; u16 idx; u16 ring[num]; u16 used_event}
 *   used:       {u16 flags; u16 idx; {u32 id; u32 len} ring[num]; u16 avail_event}
 * Index fields are read once into locals (the guest may change them at any time) and
 * published with release ordering after the entries they cover. */
#include <stdatomic.h>

#include "devices/virtqueue.h"

struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

uint64_t virtq_desc_bytes(uint16_t num) { return 16ull * num; }
uint64_t virtq_avail_bytes(uint16_t num) { return 6ull + 2ull * num; }
uint64_t virtq_used_bytes(uint16_t num) { return 6ull + 8ull * num; }

static uint16_t load16(const void *p) {
    return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}
static void store16(void *p, uint16_t v) { __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELEASE); }

#define BAD(msg) (*why = (msg), VIRTQ_BAD)

static enum virtq_take_result add_buf(struct virtq_req *r, const struct guest_mem *gm,
                                      const struct desc *d, const char **why) {
    if (d->len == 0) return BAD("zero-length buffer");
    uint8_t *p = gm_ptr(gm, d->addr, d->len);
    if (!p) return BAD("buffer outside guest memory");
    if (r->nout + r->nin == VIRTQ_MAX_SEGMENTS) return BAD("too many buffers in one chain");
    if (d->flags & VIRTQ_DESC_F_WRITE) {
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
    const struct desc *table = gm_ptr(gm, q->desc, virtq_desc_bytes(q->num));
    uint8_t *used = gm_ptr(gm, q->used, virtq_used_bytes(q->num));
    if (!avail || !table || !used) return BAD("rings outside guest memory");
    uint16_t avail_idx = load16(avail + 2);
    uint16_t pending = (uint16_t)(avail_idx - q->last_avail);
    if (pending == 0) {
        if (event_idx) { /* ask to be notified about the next one, then look once more */
            store16(used + 4 + 8 * q->num, q->last_avail);
            atomic_thread_fence(memory_order_seq_cst);
            avail_idx = load16(avail + 2);
            pending = (uint16_t)(avail_idx - q->last_avail);
        }
        if (pending == 0) return VIRTQ_EMPTY;
    }
    if (pending > q->num) return BAD("available index moved by more than the queue size");
    uint16_t head = load16(avail + 4 + 2 * (q->last_avail % q->num));
    if (head >= q->num) return BAD("head descriptor index out of range");
    r->head = head;
    r->nout = r->nin = 0;
    r->out_len = r->in_len = 0;

    const struct desc *t = table;
    uint32_t tsize = q->num, i = head, seen = 0;
    bool in_indirect = false;
    for (;;) {
        struct desc d;
        memcpy(&d, &t[i], sizeof d);
        if (++seen > tsize) return BAD("descriptor loop");
        if (d.flags & VIRTQ_DESC_F_INDIRECT) {
            if (!indirect) return BAD("indirect descriptor without VIRTIO_F_INDIRECT_DESC");
            if (in_indirect) return BAD("nested indirect descriptor");
            if (d.flags & VIRTQ_DESC_F_NEXT) return BAD("indirect descriptor with NEXT");
            if (d.len == 0 || d.len % 16 || d.len / 16 > VIRTQ_MAX_SEGMENTS)
                return BAD("bad indirect table length");
            t = gm_ptr(gm, d.addr, d.len);
            if (!t) return BAD("indirect table outside guest memory");
            tsize = d.len / 16;
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
    uint8_t *elem = used + 4 + 8 * (q->used_idx % q->num);
    uint32_t id = head;
    memcpy(elem, &id, 4);
    memcpy(elem + 4, &written, 4);
    uint16_t old = q->used_idx++;
    store16(used + 2, q->used_idx);
    atomic_thread_fence(memory_order_seq_cst);
    if (!event_idx) return !(load16(avail) & 1); /* VIRTQ_AVAIL_F_NO_INTERRUPT */
    uint16_t used_event = load16(avail + 4 + 2 * q->num);
    /* vring_need_event: did new_idx step past used_event since old? */
    return (uint16_t)(q->used_idx - used_event - 1) < (uint16_t)(q->used_idx - old);
}
