/* Multiboot (v1) boot: finding the header, loading the kernel (an ELF32 i386 image, or the
 * "a.out kludge" address fields of the header) and the multiboot information block (memory
 * map, command line, modules) it is entered with. kvm-unit-tests' x86 images, hobby kernels
 * and unikernels boot this way under `qemu -kernel`.
 *
 * What the caller does after multiboot_load and multiboot_write_info (not done here): the
 * boot vCPU enters at k->entry in 32-bit flat protected mode with paging off: CS a 32-bit
 * code segment and DS, ES, FS, GS, SS 32-bit data segments, all base 0 and limit 4 GiB;
 * CR0.PE set, CR0.PG clear; EFLAGS.IF and VM clear; EAX = MULTIBOOT_BOOTLOADER_MAGIC and EBX
 * the info block's address (`at`). ESP, GDTR and IDTR are the kernel's to set. bellhop's PVH
 * entry already is that state: zx_vcpu_create's set_entry_state (vmm/hv/vcpu.c) gives the
 * flat segments, CR0 = PE|ET and EFLAGS 0x2, and machine_boot_registers
 * (vmm/machine/machine_boot.c) puts the start info's address in RBX; a multiboot boot sets RBX
 * to `at` there and RAX to MULTIBOOT_BOOTLOADER_MAGIC besides. */
#ifndef BELLHOP_FIRMWARE_MULTIBOOT_H
#define BELLHOP_FIRMWARE_MULTIBOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/guest_mem.h"

#define MULTIBOOT_HEADER_MAGIC 0x1BADB002u
/* EAX at the kernel's entry */
#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002u
/* RAM below 640 KiB less the EBDA's KiB; from there to 1 MiB video memory and the BIOS (the
 * ACPI tables are there): reserved in the memory map, and no place for a kernel. */
#define MULTIBOOT_LEGACY_START 0x9fc00ull
#define MULTIBOOT_LEGACY_END 0x100000ull
/* The header lies wholly within the image's first 8 KiB, 4-byte aligned. */
#define MULTIBOOT_SEARCH 8192

/* The header's flags. Bits 0-15 are requirements: a loader that does not know one must
 * refuse the kernel; bits 16-31 are optional. */
#define MULTIBOOT_PAGE_ALIGN 0x1u   /* modules page-aligned: the caller's to honour (k->flags) */
#define MULTIBOOT_MEMORY_INFO 0x2u  /* mem_lower/mem_upper and the map: always given */
#define MULTIBOOT_VIDEO_MODE 0x4u   /* a video mode: accepted and not set, as QEMU does */
#define MULTIBOOT_AOUT_KLUDGE 0x10000u /* load from the header's address fields, not the ELF */

/* The information block's flags (which of its fields are valid). */
#define MULTIBOOT_INFO_MEMORY 0x1u
#define MULTIBOOT_INFO_CMDLINE 0x4u
#define MULTIBOOT_INFO_MODS 0x8u
#define MULTIBOOT_INFO_MEM_MAP 0x40u
#define MULTIBOOT_INFO_BOOT_LOADER_NAME 0x200u

/* The information block as the kernel reads it (guest byte order: little-endian). */
struct multiboot_info {
    uint32_t flags;
    uint32_t mem_lower, mem_upper; /* KiB from 0, and from 1 MiB up to the first hole */
    uint32_t boot_device;
    uint32_t cmdline;
    uint32_t mods_count, mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length, mmap_addr;
    uint32_t drives_length, drives_addr;
    uint32_t config_table;
    uint32_t boot_loader_name;
    uint32_t apm_table;
    uint32_t vbe_control_info, vbe_mode_info;
    uint16_t vbe_mode, vbe_interface_seg, vbe_interface_off, vbe_interface_len;
    uint64_t framebuffer_addr;
    uint32_t framebuffer_pitch, framebuffer_width, framebuffer_height;
    uint8_t framebuffer_bpp, framebuffer_type, color_info[6];
} __attribute__((packed));

/* One entry of the memory map: `size` counts the bytes after itself (20). */
struct multiboot_mmap_entry {
    uint32_t size;
    uint64_t addr, len;
    uint32_t type; /* MULTIBOOT_MEMORY_* */
} __attribute__((packed));
#define MULTIBOOT_MEMORY_AVAILABLE 1u
#define MULTIBOOT_MEMORY_RESERVED 2u

struct multiboot_mod_list {
    uint32_t mod_start, mod_end; /* mod_end: one past the module's last byte */
    uint32_t string;
    uint32_t reserved;
};

struct multiboot_kernel {
    uint32_t entry;      /* physical */
    uint64_t start, end; /* the lowest byte loaded, and the first above the image (its bss too) */
    uint32_t flags;      /* the header's: MULTIBOOT_PAGE_ALIGN says how to place modules */
};

/* Whether `image` carries a multiboot header: the magic at a 4-byte aligned offset within
 * its first MULTIBOOT_SEARCH bytes, with a checksum that makes magic + flags + checksum 0. */
bool multiboot_detect(const uint8_t *image, size_t len);
/* Whether `image` is meant to boot so: the magic where a header may be, its checksum right or
 * not (multiboot_load then says what is wrong, rather than another loader). */
bool multiboot_claimed(const uint8_t *image, size_t len);

/* Loads the multiboot kernel `image` (len bytes, the file's contents) into guest memory: by
 * the header's address fields when it sets MULTIBOOT_AOUT_KLUDGE, else as an ELF32 i386 file
 * at its segments' physical addresses (bss zeroed). Everything lies in RAM below 4 GiB and not
 * below `min_paddr`; the loaded bytes are the file's pages copy-on-write where gm_write_file
 * can (fd: the file, or -1 to copy). On failure returns -1 with a one-line reason in err
 * ("multiboot: ..."). */
int multiboot_load(const uint8_t *image, size_t len, int fd, const struct guest_mem *gm, uint64_t min_paddr,
                   struct multiboot_kernel *k, char *err, size_t errlen);

struct multiboot_module {
    uint64_t paddr, size; /* already in guest memory, below 4 GiB */
    const char *string;   /* its command line (GRUB gives its path and arguments); NULL: "" */
};

/* Writes the information block at `at` (8-byte aligned; the block, the memory map, the
 * module list and every string within MULTIBOOT_INFO_SIZE bytes from there, below 4 GiB):
 * mem_lower/mem_upper, the command line, the modules, the memory map (RAM below 640 KiB less
 * the EBDA's KiB, the legacy area up to 1 MiB reserved, RAM from 1 MiB to the 32-bit hole,
 * RAM above 4 GiB if gm has some) and the boot loader's name. QEMU's command line starts with
 * the kernel's file name, which kvm-unit-tests takes as argv[0]: the caller puts one first.
 * On failure returns -1 with a one-line reason in err and writes nothing. */
#define MULTIBOOT_INFO_SIZE 0x2000
#define MULTIBOOT_MAX_MODULES 16
int multiboot_write_info(const struct guest_mem *gm, uint64_t at, const char *cmdline,
                         const struct multiboot_module *mods, unsigned nmods, char *err, size_t errlen);

#endif
