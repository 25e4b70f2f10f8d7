/* The vmlinux inside a bzImage (its compressed payload, boot protocol 2.08+), unpacked by the
 * VMM straight into its place in guest memory, so that the kernel proper is entered at its
 * 64-bit startup_64 with the zero page, as its own decompressor would enter it. That
 * decompressor copies the payload out of its way, unpacks it, then moves each ELF segment to
 * its place, all under the guest's (often emulated) CPU; bellhop unpacks it once, in place,
 * and moves only the segments that the in-place image leaves elsewhere. gzip, xz, LZ4 and
 * zstd through zlib, liblzma, liblz4 and libzstd; the kernel's other formats (bzip2, lzma,
 * lzo), and layouts this does not place, are left to the guest's decompressor. KASLR is the
 * decompressor's too, so it is done here: the kernel is moved to a random place in its
 * virtual mapping (its relocation tables applied), its physical place staying the linked one. */
#ifndef BELLHOP_FIRMWARE_BZIMAGE_UNPACK_H
#define BELLHOP_FIRMWARE_BZIMAGE_UNPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/guest_mem.h"

struct bzimage_unpacked {
    const char *format; /* "gzip", "xz", "lz4", "zstd" */
    uint64_t entry;     /* startup_64 of the kernel proper: the start of its first segment */
    uint64_t start, end; /* what the kernel's segments occupy */
    uint64_t size;      /* bytes unpacked */
    bool kaslr;         /* randomized (what the zero page's KASLR_FLAG tells the kernel) */
    uint64_t virt_offset; /* how far its virtual mapping moved, a multiple of 2 MiB */
    uint64_t decode_ns, relocate_ns, place_ns; /* where unpacking's time went (CLOCK_MONOTONIC) */
    /* The kernel cache (vmm/machine/kernel_cache.h): how it served this launch. */
    /* OFF: not asked; FILLING: unpacked into guest RAM, an entry made in the background */
    enum { BZIMAGE_CACHE_OFF, BZIMAGE_CACHE_FILLING, BZIMAGE_CACHE_HIT } cache;
    unsigned slot;                    /* the entry's KASLR slot (virt_offset / 2 MiB) */
    uint64_t hash_ns, map_ns; /* the cache's own costs: looking the key up, mapping the entry */
};

enum { BZIMAGE_UNPACK_OK = 0, BZIMAGE_UNPACK_GUEST = 1, BZIMAGE_UNPACK_BAD = -1 };

/* Unpacks the kernel of the bzImage `image` (its setup header already checked) into guest
 * memory at or above min_paddr; `align` is the header's kernel_alignment. `random` picks
 * the kernel's virtual place (0: its linked place, no KASLR). Returns _OK, or
 * _GUEST with guest memory untouched when the payload is for the guest's decompressor (a
 * format or layout this does not handle, or more than guest memory holds), or _BAD with a
 * one-line reason when the payload is corrupt. bzimage_plan then bzimage_unpack_window on
 * guest RAM's window. */
int bzimage_unpack(const uint8_t *image, size_t len, const struct guest_mem *gm, uint64_t min_paddr, uint64_t align,
                   uint64_t random, struct bzimage_unpacked *u, char *err, size_t errlen);

/* What unpacking will do, learnt from the payload's first 4 KiB (cheap: no full decode), so
 * that the image can be unpacked elsewhere than guest RAM (a cache file) with the same result. */
#define BZIMAGE_MAX_SEGMENTS 16
struct bzimage_segment {
    uint64_t off, filesz, paddr, memsz, vaddr;
};
struct bzimage_plan {
    const char *format;
    const uint8_t *payload; /* the compressed stream, inlen bytes, inside the image */
    size_t inlen;
    unsigned fmt;           /* its decoder */
    struct bzimage_segment seg[BZIMAGE_MAX_SEGMENTS];
    int nseg;
    uint64_t entry, start, end, size;
    /* Unpacking touches guest-physical [base, base+span) and nothing else: the image decoded
     * at base, its segments placed up to end. */
    uint64_t base, span;
    uint64_t tables_off, tables_len; /* the relocation tables in the decoded image (0: none) */
    bool relocatable;                /* KASLR can move it */
    uint64_t slots;                  /* the places it can go, delta = k * BZIMAGE_KASLR_ALIGN, k < slots */
};
#define BZIMAGE_KASLR_ALIGN (2ull << 20)

/* The plan for `image`, placed at or above min_paddr inside guest memory gm: _OK, _GUEST or
 * _BAD (with a reason) as bzimage_unpack answers. */
int bzimage_plan(const uint8_t *image, size_t len, const struct guest_mem *gm, uint64_t min_paddr, uint64_t align,
                 struct bzimage_plan *p, char *err, size_t errlen);
/* How far `random` moves the kernel (0 when it is 0 or the kernel cannot move). */
uint64_t bzimage_plan_delta(const struct bzimage_plan *p, uint64_t random);

/* Where an unpack writes: host memory standing for guest-physical [p->base, p->base+p->span).
 * zero(arg, gpa, len) clears a .bss; NULL: the window reads as zeros wherever unpacking did not
 * write (a fresh file), so only what it wrote is cleared. */
struct bzimage_window {
    uint8_t *at;
    void (*zero)(void *arg, uint64_t gpa, uint64_t len);
    void *arg;
};

/* Decodes, relocates by `delta` (bzimage_plan_delta), places the segments and clears their
 * .bss in the window, as bzimage_unpack does in guest RAM. `tables`, when not NULL, receives
 * the relocation tables (p->tables_len bytes) as decoded, before anything moved. _OK, or _BAD
 * with a reason. */
int bzimage_unpack_window(const struct bzimage_plan *p, const struct bzimage_window *w, uint64_t delta,
                          uint8_t *tables, struct bzimage_unpacked *u, char *err, size_t errlen);

/* Moves an unpacked, placed image (the window of bzimage_unpack_window) by `delta` more in
 * the kernel mapping, with its relocation tables as decoded: 0, or -1 when the tables name a
 * place outside the kernel's segments or a list has no end. */
int bzimage_relocate_placed(const struct bzimage_plan *p, uint8_t *window, const uint8_t *tables, uint64_t delta);

#endif
