/* Which 4 KiB pages of guest RAM were written, one bit a page: what a diff snapshot writes.
 * Any thread may mark (an atomic OR, so that writers on the vCPU threads, the loop and
 * io_uring's completions need no lock); the snapshot reads and clears with every writer
 * stopped (vCPUs parked, devices quiesced). A guest_mem without one (its `written` NULL) pays
 * one branch per write for the feature. */
#ifndef BELLHOP_BASE_DIRTY_PAGES_H
#define BELLHOP_BASE_DIRTY_PAGES_H

#include <stdbool.h>
#include <stdint.h>

#define DIRTY_PAGE_SHIFT 12
#define DIRTY_PAGE_SIZE (1ull << DIRTY_PAGE_SHIFT)

struct dirty_pages {
    uint64_t *bits; /* bit i of word w: page w * 64 + i */
    uint64_t pages;
};

/* For `bytes` of RAM (rounded up to a page), none marked: 0, or -1 when out of memory. */
int dirty_pages_init(struct dirty_pages *d, uint64_t bytes);
void dirty_pages_free(struct dirty_pages *d);
static inline uint64_t dirty_pages_words(const struct dirty_pages *d) { return (d->pages + 63) / 64; }

/* Marks every page that [off, off + len) touches; what lies past the end is ignored (the
 * accessors mark only ranges they checked). */
void dirty_pages_mark(struct dirty_pages *d, uint64_t off, uint64_t len);
void dirty_pages_mark_all(struct dirty_pages *d);
static inline bool dirty_pages_test(const struct dirty_pages *d, uint64_t page) {
    return page < d->pages && (__atomic_load_n(&d->bits[page / 64], __ATOMIC_RELAXED) >> (page % 64) & 1);
}
void dirty_pages_clear(struct dirty_pages *d);
/* d |= other (the same size). */
void dirty_pages_or(struct dirty_pages *d, const struct dirty_pages *other);
uint64_t dirty_pages_count(const struct dirty_pages *d);

/* The next run of marked pages at or after *page: its first page in *page and its end (one
 * past its last) returned; d->pages when there is none. */
uint64_t dirty_pages_next_run(const struct dirty_pages *d, uint64_t *page);

/* dst's bits from dst_bit on |= the first nbits bits of src (KVM's dirty log of a memory slot
 * lands wherever the slot starts in RAM, not on a word boundary). */
void bitmap_or_at(uint64_t *dst, uint64_t dst_bit, const uint64_t *src, uint64_t nbits);

#endif
