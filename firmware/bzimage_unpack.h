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
};

enum { BZIMAGE_UNPACK_OK = 0, BZIMAGE_UNPACK_GUEST = 1, BZIMAGE_UNPACK_BAD = -1 };

/* Unpacks the kernel of the bzImage `image` (its setup header already checked) into guest
 * memory at or above min_paddr; `align` is the header's kernel_alignment. `random` picks
 * the kernel's virtual place (0: its linked place, no KASLR). Returns _OK, or
 * _GUEST with guest memory untouched when the payload is for the guest's decompressor (a
 * format or layout this does not handle, or more than guest memory holds), or _BAD with a
 * one-line reason when the payload is corrupt. */
int bzimage_unpack(const uint8_t *image, size_t len, const struct guest_mem *gm, uint64_t min_paddr, uint64_t align,
                   uint64_t random, struct bzimage_unpacked *u, char *err, size_t errlen);

#endif
