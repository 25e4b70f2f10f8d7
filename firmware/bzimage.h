/* The Linux x86 boot protocol (Documentation/arch/x86/boot.rst), 64-bit entry: the
 * protected-mode kernel of a bzImage loaded at its preferred address, a zero page
 * (boot_params) with the setup header, e820 map, command line, initrd and RSDP, and the
 * long-mode state the kernel expects (identity page tables, a flat GDT). */
#ifndef BELLHOP_FIRMWARE_BZIMAGE_H
#define BELLHOP_FIRMWARE_BZIMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "firmware/bzimage_unpack.h"
#include "base/guest_mem.h"

/* Guest-physical places of the boot structures (below 1 MiB, outside the kernel). */
#define BOOT_GDT_ADDR 0x500u
#define BOOT_ZERO_PAGE_ADDR 0x7000u
#define BOOT_PML4_ADDR 0x9000u /* and the PDPT and four PDs after it: 0x9000..0xefff */
#define BOOT_CMDLINE_ADDR 0x20000u
#define BOOT_CMDLINE_MAX 0x10000u

struct bzimage_kernel {
    uint64_t load_addr, entry, end;
    uint32_t initrd_addr_max;
    uint32_t cmdline_size;
    uint8_t header[0x80]; /* the setup header, 0x1f1..0x270 of the file */
    size_t header_len;
    struct bzimage_unpacked unpacked; /* how bellhop unpacked it (format NULL: the guest does) */
};

/* Is this a bzImage (the "HdrS" setup header)? */
bool bzimage_detect(const uint8_t *image, size_t len);
/* Checks the setup header against the file (magic, protocol version, 64-bit entry, sizes,
 * alignment) without loading anything: 0, or -1 with a one-line reason. */
int bzimage_check(const uint8_t *image, size_t len, char *err, size_t errlen);
/* Checks it (bzimage_check), then loads the kernel: with `unpack`, the kernel proper unpacked in place at or above min_paddr
 * and entered at its startup_64 (firmware/bzimage_unpack.h) when bellhop can, randomized by
 * `random` (0: not); otherwise the protected-mode kernel, whose decompressor then runs in the
 * guest. On failure -1 and a one-line reason. */
int bzimage_load(const uint8_t *image, size_t len, const struct guest_mem *gm, uint64_t min_paddr, bool unpack,
                 uint64_t random, struct bzimage_kernel *k, char *err, size_t errlen);
/* What randomizes the kernel's place for this command line: 0 when it says nokaslr (as the
 * kernel's decompressor reads it), else random bits. */
uint64_t bzimage_kaslr_random(const char *cmdline);
/* How bzimage_load_with unpacks the kernel proper: as bzimage_unpack, whose arguments and
 * answers it has (arg its own). */
typedef int bzimage_unpacker(void *arg, const uint8_t *image, size_t len, const struct guest_mem *gm, uint64_t min_paddr,
                             uint64_t align, uint64_t random, struct bzimage_unpacked *u, char *err, size_t errlen);
/* bzimage_load with another unpacker (a cache of unpacked kernels); NULL: bzimage_unpack. */
int bzimage_load_with(const uint8_t *image, size_t len, const struct guest_mem *gm, uint64_t min_paddr, bool unpack,
                      uint64_t random, bzimage_unpacker *unpacker, void *arg, struct bzimage_kernel *k, char *err,
                      size_t errlen);
/* Writes the GDT, the identity page tables for the first 4 GiB, the command line and the
 * zero page. Returns -1 when the command line is too long for this kernel. */
int bzimage_write_boot_params(const struct guest_mem *gm, const struct bzimage_kernel *k, const char *cmdline,
                              uint64_t initrd, uint64_t initrd_size, uint64_t rsdp);

#endif
