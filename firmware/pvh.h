/* PVH boot: loading an ELF kernel that carries XEN_ELFNOTE_PHYS32_ENTRY, and the
 * hvm_start_info (memory map, command line, modules) it is entered with. */
#ifndef BELLHOP_FIRMWARE_PVH_H
#define BELLHOP_FIRMWARE_PVH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/guest_mem.h"

#define PVH_MAX_MODULES 4

struct pvh_module {
    uint64_t paddr, size;
};

struct pvh_kernel {
    uint64_t entry; /* XEN_ELFNOTE_PHYS32_ENTRY */
    uint64_t end;   /* first byte above the loaded image */
    bool is_linux;    /* XEN_ELFNOTE_GUEST_OS says "linux": it wants its initrd as module 0 */
    uint64_t vaddr_lo, vaddr_hi; /* the virtual addresses it is linked at (its loaded segments') */
};

/* Loads the kernel image `image` (len bytes, the file's contents) into guest memory at its
 * physical addresses, refusing anything below `min_paddr`; its segments are the file's pages
 * copy-on-write where gm_write_file can (fd: the file, or -1 to copy). On failure returns -1
 * with a one-line reason in err. */
int pvh_load_elf(const uint8_t *image, size_t len, int fd, const struct guest_mem *gm, uint64_t min_paddr,
                 struct pvh_kernel *k, char *err, size_t errlen);

/* Writes hvm_start_info at `at` with RAM as gm lays it out (one range, or two past 3 GiB)
 * less the legacy hole, the command line and the modules; the structures take at most PVH_INFO_SIZE bytes. */
#define PVH_INFO_SIZE 0x2000
int pvh_write_start_info(const struct guest_mem *gm, uint64_t at, const char *cmdline,
                         const struct pvh_module *mods, unsigned nmods, uint64_t rsdp);

#endif
