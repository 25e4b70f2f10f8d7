/* Multiboot (v1) entry: the loader (QEMU's -kernel, bellhop) starts us in 32-bit flat
 * protected mode, paging off, with EAX = 0x2BADB002 and EBX = its information block. Both are
 * kept for multiboot_start_info (guest/multiboot.c), which makes them the hvm_start_info that
 * kmain reads, and the PVH entry goes on from there with EBX = that struct. In guest.elf too,
 * where nothing enters here; guest-multiboot.elf adds the header (multiboot_header.S). */
    .section .text.boot, "ax"
    .code32
    .globl mb_start32
mb_start32:
    movl %eax, mb_magic
    movl %ebx, mb_info
    movl $mb_start_info, %ebx
    jmp pvh_start32

    .section .data
    .balign 4
    .globl mb_magic, mb_info
mb_magic: .long 0
mb_info:  .long 0
    .section .note.GNU-stack, "", @progbits
