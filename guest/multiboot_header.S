/* The multiboot (v1) header, linked into build/guest/guest-multiboot.elf only: QEMU takes any
 * kernel with one for multiboot before it looks for PVH's note, and refuses an ELF64 file
 * there, so guest.elf must not carry it. guest.ld puts it first, in the file's first 8 KiB. */
#define MULTIBOOT_HEADER_MAGIC 0x1BADB002
/* modules page-aligned, and the memory map */
#define MULTIBOOT_FLAGS 0x3

    .section .multiboot, "a"
    .balign 4
    .long MULTIBOOT_HEADER_MAGIC
    .long MULTIBOOT_FLAGS
    .long -(MULTIBOOT_HEADER_MAGIC + MULTIBOOT_FLAGS)
    .section .note.GNU-stack, "", @progbits
