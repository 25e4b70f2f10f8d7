/* The written-pages bitmap (see dirty_pages.h). */
#include <stdlib.h>
#include <string.h>

#include "base/dirty_pages.h"

int dirty_pages_init(struct dirty_pages *d, uint64_t bytes) {
    d->pages = (bytes + DIRTY_PAGE_SIZE - 1) >> DIRTY_PAGE_SHIFT;
    d->bits = calloc(dirty_pages_words(d) ? dirty_pages_words(d) : 1, sizeof *d->bits);
    if (!d->bits) d->pages = 0;
    return d->bits ? 0 : -1;
}

void dirty_pages_free(struct dirty_pages *d) {
    free(d->bits);
    *d = (struct dirty_pages){0};
}

static void or_word(uint64_t *w, uint64_t v) {
    /* a page written again and again (a ring's) costs a load, not a locked write */
    if (v && (__atomic_load_n(w, __ATOMIC_RELAXED) & v) != v) __atomic_fetch_or(w, v, __ATOMIC_RELAXED);
}

/* The bits [first, first + n) of word w's span, n >= 1 and within the word. */
static uint64_t span(uint64_t first, uint64_t n) { return (n >= 64 ? ~0ull : (1ull << n) - 1) << first; }

static void mark_pages(struct dirty_pages *d, uint64_t first, uint64_t end) {
    while (first < end) {
        uint64_t bit = first % 64, n = end - first < 64 - bit ? end - first : 64 - bit;
        or_word(&d->bits[first / 64], span(bit, n));
        first += n;
    }
}

void dirty_pages_mark(struct dirty_pages *d, uint64_t off, uint64_t len) {
    if (len == 0) return;
    uint64_t first = off >> DIRTY_PAGE_SHIFT;
    uint64_t last = off + len - 1 < off ? UINT64_MAX >> DIRTY_PAGE_SHIFT : (off + len - 1) >> DIRTY_PAGE_SHIFT;
    if (first >= d->pages) return;
    mark_pages(d, first, (last < d->pages - 1 ? last : d->pages - 1) + 1);
}

void dirty_pages_mark_all(struct dirty_pages *d) { mark_pages(d, 0, d->pages); }

void dirty_pages_clear(struct dirty_pages *d) {
    for (uint64_t w = 0; w < dirty_pages_words(d); w++) __atomic_store_n(&d->bits[w], 0, __ATOMIC_RELAXED);
}

void dirty_pages_or(struct dirty_pages *d, const struct dirty_pages *other) {
    uint64_t n = dirty_pages_words(d) < dirty_pages_words(other) ? dirty_pages_words(d) : dirty_pages_words(other);
    for (uint64_t w = 0; w < n; w++) or_word(&d->bits[w], __atomic_load_n(&other->bits[w], __ATOMIC_RELAXED));
}

uint64_t dirty_pages_count(const struct dirty_pages *d) {
    uint64_t n = 0;
    for (uint64_t w = 0; w < dirty_pages_words(d); w++)
        n += (uint64_t)__builtin_popcountll(__atomic_load_n(&d->bits[w], __ATOMIC_RELAXED));
    return n;
}

/* The first page at or after `page` whose bit is `set`; d->pages when none. */
static uint64_t find(const struct dirty_pages *d, uint64_t page, bool set) {
    while (page < d->pages) {
        uint64_t w = __atomic_load_n(&d->bits[page / 64], __ATOMIC_RELAXED);
        w = (set ? w : ~w) >> (page % 64);
        if (w) {
            page += (uint64_t)__builtin_ctzll(w);
            break;
        }
        page = (page / 64 + 1) * 64;
    }
    return page < d->pages ? page : d->pages;
}

uint64_t dirty_pages_next_run(const struct dirty_pages *d, uint64_t *page) {
    *page = find(d, *page, true);
    return find(d, *page, false);
}

void bitmap_or_at(uint64_t *dst, uint64_t dst_bit, const uint64_t *src, uint64_t nbits) {
    for (uint64_t w = 0; w * 64 < nbits; w++) {
        uint64_t v = src[w];
        if (nbits - w * 64 < 64) v &= (1ull << (nbits - w * 64)) - 1;
        if (!v) continue;
        uint64_t at = dst_bit + w * 64, shift = at % 64;
        or_word(&dst[at / 64], v << shift);
        if (shift) or_word(&dst[at / 64 + 1], v >> (64 - shift));
    }
}
