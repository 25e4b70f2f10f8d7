/* The PVH boot ABI (Xen's arch-x86/hvm/start_info.h, version 1): what a PVH kernel finds at
 * the address in EBX when it starts at its XEN_ELFNOTE_PHYS32_ENTRY. Shared by the VMM's
 * loader and the tiny guest. */
#ifndef BELLHOP_FIRMWARE_HVM_START_INFO_H
#define BELLHOP_FIRMWARE_HVM_START_INFO_H

#include <stdint.h>

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC_VALUE 0x336ec578u

struct hvm_start_info {
    uint32_t magic;
    uint32_t version; /* 1: with memmap */
    uint32_t flags;
    uint32_t nr_modules;
    uint64_t modlist_paddr;
    uint64_t cmdline_paddr;
    uint64_t rsdp_paddr;
    uint64_t memmap_paddr;
    uint32_t memmap_entries;
    uint32_t reserved;
};

struct hvm_modlist_entry {
    uint64_t paddr;
    uint64_t size;
    uint64_t cmdline_paddr;
    uint64_t reserved;
};

#define HVM_MEMMAP_TYPE_RAM 1
#define HVM_MEMMAP_TYPE_RESERVED 2

struct hvm_memmap_table_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
    uint32_t reserved;
};

_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info");
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "hvm_modlist_entry");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "hvm_memmap_table_entry");

#endif
