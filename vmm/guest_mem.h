/* Guest-physical memory as the VMM and devices see it: every access goes through these
 * bounds-checked accessors (an address or length the guest controls can never reach
 * outside its RAM). */
#ifndef BELLHOP_VMM_GUEST_MEM_H
#define BELLHOP_VMM_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

struct guest_mem {
    uint8_t *host; /* guest-physical 0 */
    uint64_t size;
};

static inline bool gm_valid(const struct guest_mem *gm, uint64_t gpa, uint64_t len) {
    return gpa <= gm->size && len <= gm->size - gpa;
}

/* A host pointer to [gpa, gpa+len), or NULL when any of it is outside RAM. */
static inline void *gm_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len) {
    return gm_valid(gm, gpa, len) ? gm->host + gpa : NULL;
}

static inline bool gm_read(const struct guest_mem *gm, uint64_t gpa, void *dst, uint64_t len) {
    const void *p = gm_ptr(gm, gpa, len);
    if (p) memcpy(dst, p, len);
    return p != NULL;
}

static inline bool gm_write(const struct guest_mem *gm, uint64_t gpa, const void *src, uint64_t len) {
    void *p = gm_ptr(gm, gpa, len);
    if (p) memcpy(p, src, len);
    return p != NULL;
}

/* Gives [gpa, gpa+len) (whole host pages) back to the host: it reads as zeros until written
 * again (guest RAM is private anonymous memory, vmm/guest.c). False when any of it is outside
 * RAM or the host refused. */
static inline bool gm_discard(const struct guest_mem *gm, uint64_t gpa, uint64_t len) {
    void *p = gm_ptr(gm, gpa, len);
    return p && madvise(p, len, MADV_DONTNEED) == 0;
}

#endif
