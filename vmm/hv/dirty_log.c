/* KVM's dirty log of guest RAM (bellhop_guest_track_dirty, bellhop_guest_take_dirty). KVM
 * keeps a bitmap per memory slot and gives it up (clearing it, and write-protecting those
 * pages again) at each KVM_GET_DIRTY_LOG; a slot deleted loses its log, so what a slot had is
 * moved into its region's carry first, and a take gathers slots and carries alike. The dirty
 * ring (KVM_CAP_DIRTY_LOG_RING) would spare the bitmap walk but needs a ring per vCPU, reaped
 * while the vCPUs run: for a snapshot of a paused guest the bitmap is all it takes. */
#include <errno.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include "base/dirty_pages.h"
#include "vmm/hv/hv.h"

#define PAGE_SHIFT 12

static uint64_t pages_of(uint64_t bytes) { return bytes >> PAGE_SHIFT; }
static uint64_t words_of(uint64_t pages) { return (pages + 63) / 64; }

zx_status_t guest_dirty_region_init(struct mem_region *r) {
    r->dirty = calloc(words_of(pages_of(r->size)) ? words_of(pages_of(r->size)) : 1, sizeof *r->dirty);
    return r->dirty ? ZX_OK : ZX_ERR_NO_MEMORY;
}

/* By host address: a region's slots past the 32-bit hole are not at gpa + offset. */
static struct mem_region *region_of(struct guest *g, const uint8_t *host) {
    for (unsigned i = 0; i < g->nregions; i++)
        if (host >= g->regions[i].host && (uint64_t)(host - g->regions[i].host) < g->regions[i].size) return &g->regions[i];
    return NULL;
}

zx_status_t guest_dirty_harvest_locked(struct guest *g, unsigned slot) {
    const struct mem_slot *s = &g->slots[slot];
    struct mem_region *r = region_of(g, s->host);
    if (!r || !r->dirty) return ZX_OK; /* a region just removed again: its slots never ran */
    /* KVM's bitmap: a bit a page, in longs */
    uint64_t *log = calloc(words_of(pages_of(s->size)) ? words_of(pages_of(s->size)) : 1, sizeof *log);
    if (!log) return ZX_ERR_NO_MEMORY;
    struct kvm_dirty_log dl = {.slot = slot, .dirty_bitmap = log};
    zx_status_t st = ioctl(g->vm, KVM_GET_DIRTY_LOG, &dl) == 0 ? ZX_OK : ZX_ERR_INTERNAL;
    if (st == ZX_OK) bitmap_or_at(r->dirty, pages_of((uint64_t)(s->host - r->host)), log, pages_of(s->size));
    free(log);
    return st;
}

static zx_status_t set_flags_locked(struct guest *g) {
    for (unsigned i = 0; i < g->nslots; i++) {
        struct kvm_userspace_memory_region m = {.slot = i, .flags = g->track_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0,
                                                .guest_phys_addr = g->slots[i].gpa, .memory_size = g->slots[i].size,
                                                .userspace_addr = (uintptr_t)g->slots[i].host};
        if (ioctl(g->vm, KVM_SET_USER_MEMORY_REGION, &m) != 0) return errno == ENOMEM ? ZX_ERR_NO_MEMORY : ZX_ERR_NOT_SUPPORTED;
    }
    return ZX_OK;
}

zx_status_t bellhop_guest_track_dirty(zx_handle_t handle) {
    struct guest *g;
    zx_status_t st = guest_get(handle, ZX_RIGHT_WRITE, &g);
    if (st != ZX_OK) return st;
    pthread_rwlock_wrlock(&g->lock);
    for (unsigned i = 0; !g->track_dirty && i < g->nregions && st == ZX_OK; i++)
        if (!g->regions[i].dirty) st = guest_dirty_region_init(&g->regions[i]);
    if (st == ZX_OK && !g->track_dirty) {
        g->track_dirty = true;
        if ((st = set_flags_locked(g)) != ZX_OK) {
            g->track_dirty = false;
            set_flags_locked(g);
        }
    }
    pthread_rwlock_unlock(&g->lock);
    object_unref(&g->obj);
    return st;
}

/* Moves the carry's bits [first, first + n) into dst from bit dst_bit on. */
static void take_carry(uint64_t *carry, uint64_t first, uint64_t n, uint64_t *dst, uint64_t dst_bit) {
    for (uint64_t p = first; p < first + n;) {
        uint64_t bit = p % 64, k = first + n - p < 64 - bit ? first + n - p : 64 - bit;
        uint64_t mask = (k == 64 ? ~0ull : (1ull << k) - 1) << bit;
        uint64_t v = (carry[p / 64] & mask) >> bit;
        carry[p / 64] &= ~mask;
        bitmap_or_at(dst, dst_bit + (p - first), &v, k);
        p += k;
    }
}

zx_status_t bellhop_guest_take_dirty(zx_handle_t handle, zx_gpaddr_t addr, size_t size, uint64_t *bitmap) {
    if (!bitmap || ((addr | size) & ((1u << PAGE_SHIFT) - 1)) || addr + size < addr) return ZX_ERR_INVALID_ARGS;
    struct guest *g;
    zx_status_t st = guest_get(handle, ZX_RIGHT_WRITE, &g);
    if (st != ZX_OK) return st;
    pthread_rwlock_wrlock(&g->lock);
    if (!g->track_dirty) st = ZX_ERR_BAD_STATE;
    for (unsigned i = 0; st == ZX_OK && i < g->nslots; i++) st = guest_dirty_harvest_locked(g, i);
    for (unsigned i = 0; st == ZX_OK && i < g->nregions; i++) {
        const struct mem_region *r = &g->regions[i];
        uint64_t lo = r->gpa > addr ? r->gpa : addr, hi = r->gpa + r->size < addr + size ? r->gpa + r->size : addr + size;
        if (lo < hi) take_carry(r->dirty, pages_of(lo - r->gpa), pages_of(hi - lo), bitmap, pages_of(lo - addr));
    }
    pthread_rwlock_unlock(&g->lock);
    object_unref(&g->obj);
    return st;
}
