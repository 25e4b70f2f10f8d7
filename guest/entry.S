/* PVH entry: the VMM starts us in 32-bit flat protected mode with EBX = hvm_start_info.
 * We build identity page tables for the first 8 GiB (2 MiB pages; RAM above the 32-bit hole
 * starts at 4 GiB), enable SSE, enter long mode and call kmain(start_info). */
#define CR0_PE 0x1
#define CR0_MP 0x2
#define CR0_EM 0x4
#define CR0_PG 0x80000000
#define CR4_PAE 0x20
#define CR4_OSFXSR 0x200
#define CR4_OSXMMEXCPT 0x400
#define MSR_EFER 0xc0000080
#define MSR_FS_BASE 0xc0000100
#define EFER_LME 0x100
/* One stack per CPU bellhop can start (MACHINE_MAX_CPUS), by id (a power of two: ids wrap) */
#define AP_STACKS 32
/* Page directories: 1 GiB each (main.c's MAPPED_END is what they map) */
#define PD_PAGES 8

/* Paging on the tables at pml4, SSE on, long mode, then a far jump to 64-bit code. */
.macro LOAD_DATA_SEGMENTS
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
.endm

.macro ENTER_LONG_MODE target
    movl $pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $(CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
    movl %eax, %cr4
    movl $MSR_EFER, %ecx
    rdmsr
    orl $EFER_LME, %eax
    wrmsr
    movl %cr0, %eax
    andl $~CR0_EM, %eax
    orl $(CR0_PG | CR0_PE | CR0_MP), %eax
    movl %eax, %cr0
    ljmp $0x08, $\target
.endm

    .section .note.pvh, "a"
    .balign 4
    .long 4                     /* name size: "Xen\0" */
    .long 4                     /* descriptor size */
    .long 18                    /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_start32

    .section .text.boot, "ax"
    .code32
    .globl pvh_start32
pvh_start32:
    cli
    cld
    movl %ebx, %esi
    lgdt gdt_ptr

    /* pml4[0] -> pdpt; pdpt[0..7] -> pd; pd[0..4095] = 2 MiB pages. Each loop carries its
     * next entry in registers (the frame's bits 32+ in EDX, from the carry) rather than
     * working it out from an index: this code is slow on a PVM host, where 8 GiB rather
     * than 4 took ~3 ms more a boot. */
    movl $pdpt + 3, %eax
    movl %eax, pml4
    movl $pd + 3, %eax
    movl $pdpt, %edi
1:  movl %eax, (%edi)
    addl $4096, %eax
    addl $8, %edi
    cmpl $pdpt + 8 * PD_PAGES, %edi
    jne 1b
    movl $0x83, %eax            /* present, writable, 2 MiB */
    xorl %edx, %edx
    movl $pd, %edi
2:  movl %eax, (%edi)
    movl %edx, 4(%edi)
    addl $8, %edi
    addl $0x200000, %eax
    adcl $0, %edx
    cmpl $pd + 4096 * PD_PAGES, %edi
    jne 2b

    ENTER_LONG_MODE start64

    .code64
start64:
    LOAD_DATA_SEGMENTS
    movabsq $stack_top, %rsp
    /* libfdt is built with the stack protector: its canary lives at %fs:0x28 */
    movl $MSR_FS_BASE, %ecx
    movabsq $tls_block, %rax
    movq %rax, %rdx
    shrq $32, %rdx
    wrmsr
    movl %esi, %edi
    call kmain
3:  cli
    hlt
    jmp 3b

/* Secondary CPUs: started by the VMM (vCPU-control STARTUP) in the same 32-bit state, on
 * the page tables the boot CPU built. Each takes its id from the control device and its
 * stack from ap_stacks. */
    .code32
    .globl ap_start32
ap_start32:
    cli
    cld
    lgdt gdt_ptr
    ENTER_LONG_MODE ap_start64

    .code64
ap_start64:
    LOAD_DATA_SEGMENTS
    movw $0x4f0, %dx            /* vCPU-control: this CPU's id */
    inl %dx, %eax
    movl %eax, %edi
    andq $(AP_STACKS - 1), %rax
    incq %rax
    shlq $13, %rax
    movabsq $ap_stacks, %rsp
    addq %rax, %rsp
    movl $MSR_FS_BASE, %ecx
    movabsq $tls_block, %rax
    movq %rax, %rdx
    shrq $32, %rdx
    wrmsr
    call ap_main
4:  cli
    hlt
    jmp 4b

    .section .rodata
    .balign 8
gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff    /* 0x10: data */
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt

    .section .bss
    .balign 4096
pml4:   .skip 4096
pdpt:   .skip 4096
pd:     .skip PD_PAGES * 4096
    .balign 16
    .skip 65536
stack_top:
tls_block:
    .skip 64
    .balign 16
ap_stacks:
    .skip AP_STACKS * 8192
    .section .note.GNU-stack, "", @progbits
