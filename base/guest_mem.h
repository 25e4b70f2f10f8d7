/* Guest-physical memory as the VMM and devices see it: every access goes through these
 * bounds-checked accessors (an address or length the guest controls can never reach
 * outside its RAM). */
#ifndef BELLHOP_BASE_GUEST_MEM_H
#define BELLHOP_BASE_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/dirty_pages.h"

/* The parts of guest RAM that are a file's pages, copy-on-write (gm_write_file): a write,
 * by the guest or the VMM, gives that page its own copy; until then it is the page cache's. */
#define GM_MAX_FILE_RANGES 16
struct gm_files {
    unsigned n;
    struct {
        uint64_t off, len; /* RAM offset */
    } range[GM_MAX_FILE_RANGES];
    uint64_t mapped; /* bytes taken from files rather than copied */
};

/* Where RAM lies in the guest's physical address space: its first GM_LOW_END bytes from 0,
 * the rest from GM_HIGH_START, above the 32-bit hole where the APIC, IOAPIC and device windows
 * live (as on a PC). The host holds all of it in one mapping, in that order: a RAM offset
 * (host - gm->host, a dirty bitmap's page, a snapshot memory file's offset) is the gpa below
 * the hole and the gpa less the hole's size above it. */
#define GM_LOW_END (3ull << 30)
#define GM_HIGH_START (4ull << 30)

struct guest_mem {
    uint8_t *host; /* RAM offset 0 (guest-physical 0) */
    uint64_t size; /* bytes of RAM, below and above the hole */
    /* NULL when RAM cannot take a file's pages: it is not the VMM's own private anonymous
     * mapping (another process shares it, as vhost-user's memfd; a test's buffer) */
    struct gm_files *files;
    /* Dirty page tracking (machine-config's track_dirty_pages): every page the VMM writes
     * through these accessors is marked here (KVM's dirty log has the guest's own writes).
     * NULL: not tracking. */
    struct dirty_pages *written;
};

/* RAM's parts in guest-physical space: one, or two when RAM goes past GM_LOW_END. */
struct gm_range {
    uint64_t gpa, off, size; /* off: the RAM offset of gpa */
};
static inline unsigned gm_ranges(const struct guest_mem *gm, struct gm_range r[2]) {
    uint64_t low = gm->size < GM_LOW_END ? gm->size : GM_LOW_END;
    r[0] = (struct gm_range){0, 0, low};
    r[1] = (struct gm_range){GM_HIGH_START, low, gm->size - low};
    return gm->size > low ? 2 : 1;
}
/* The guest-physical address of RAM offset off. */
static inline uint64_t gm_gpa_of(uint64_t off) { return off < GM_LOW_END ? off : off - GM_LOW_END + GM_HIGH_START; }
/* The end of RAM's highest part (one past its last byte). */
static inline uint64_t gm_end(const struct guest_mem *gm) { return gm->size ? gm_gpa_of(gm->size - 1) + 1 : 0; }

/* The RAM offset of [gpa, gpa+len) in *off: false when any of it is outside RAM (in the hole,
 * or across it). */
static inline bool gm_offset(const struct guest_mem *gm, uint64_t gpa, uint64_t len, uint64_t *off) {
    uint64_t low = gm->size < GM_LOW_END ? gm->size : GM_LOW_END;
    if (gpa <= low && len <= low - gpa) {
        *off = gpa;
        return true;
    }
    if (gpa < GM_HIGH_START || gm->size <= GM_LOW_END) return false;
    uint64_t o = gpa - GM_HIGH_START + low; /* cannot wrap: low < the hole's size */
    if (o > gm->size || len > gm->size - o) return false;
    *off = o;
    return true;
}

static inline bool gm_valid(const struct guest_mem *gm, uint64_t gpa, uint64_t len) {
    uint64_t off;
    return gm_offset(gm, gpa, len, &off);
}

/* A host pointer to [gpa, gpa+len), or NULL when any of it is outside RAM. */
static inline void *gm_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len) {
    uint64_t off;
    return gm_offset(gm, gpa, len, &off) ? gm->host + off : NULL;
}

static inline bool gm_read(const struct guest_mem *gm, uint64_t gpa, void *dst, uint64_t len) {
    const void *p = gm_ptr(gm, gpa, len);
    if (p) memcpy(dst, p, len);
    return p != NULL;
}

/* Marks [gpa, gpa+len) written, for a write through a pointer from gm_ptr (a virtqueue's
 * buffers, which devices fill long after they were checked). */
static inline void gm_mark(const struct guest_mem *gm, uint64_t gpa, uint64_t len) {
    uint64_t off;
    if (gm->written && gm_offset(gm, gpa, len, &off)) dirty_pages_mark(gm->written, off, len);
}
static inline void gm_mark_host(const struct guest_mem *gm, const void *p, uint64_t len) {
    if (gm->written) dirty_pages_mark(gm->written, (uint64_t)((const uint8_t *)p - gm->host), len);
}

/* gm_ptr for a caller that writes there (a loader building tables in place): the range
 * counts as written. */
static inline void *gm_ptr_write(const struct guest_mem *gm, uint64_t gpa, uint64_t len) {
    void *p = gm_ptr(gm, gpa, len);
    if (p) gm_mark(gm, gpa, len);
    return p;
}

static inline bool gm_write(const struct guest_mem *gm, uint64_t gpa, const void *src, uint64_t len) {
    void *p = gm_ptr_write(gm, gpa, len);
    if (p) memcpy(p, src, len);
    return p != NULL;
}

/* Puts bytes [off, off+len) of a file at gpa. `image` is the whole file mapped read-only
 * (image_len bytes); `fd`, when not -1, is that file open and protected against writers (a
 * read lease, vmm/machine/image_lease.h): then the whole pages of the range become the file's pages
 * copy-on-write, where RAM allows it (gm->files) and the file offset and gpa fall alike within
 * a page; the rest is copied. False when the range is outside the file or RAM. */
bool gm_write_file(const struct guest_mem *gm, uint64_t gpa, const uint8_t *image, size_t image_len, int fd,
                   uint64_t off, uint64_t len);

/* Zeroes [gpa, gpa+len). RAM that the VMM has not touched is zero already: whole pages of it
 * are dropped rather than written, so that they take no memory until the guest uses them. */
bool gm_zero(const struct guest_mem *gm, uint64_t gpa, uint64_t len);

/* Gives [gpa, gpa+len) (whole host pages) back to the host: it reads as zeros until written
 * again. False when any of it is outside RAM or the host refused. */
bool gm_discard(const struct guest_mem *gm, uint64_t gpa, uint64_t len);

/* Replaces every range that was a file's pages with anonymous memory holding the same bytes
 * (the file is about to change): guest RAM stops depending on the files. Nothing may write
 * guest RAM meanwhile (a write to a page already copied would be lost): vCPUs stopped,
 * devices quiet. 0, or -1 when the host refused memory for some of it. */
int gm_unshare(const struct guest_mem *gm);

#endif
