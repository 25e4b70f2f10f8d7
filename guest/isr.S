/* Interrupt and exception entry stubs: push the vector (and a zero error code where the
 * CPU pushes none), save the general registers, call irq_dispatch(vector, frame). */
    .code64
    .text

.macro STUB vec, has_error
    .balign 16
isr_\vec:
    .if \has_error == 0
    pushq $0
    .endif
    pushq $\vec
    jmp isr_common
.endm

/* Exceptions that push an error code: 8, 10-14, 17, 21, 29, 30. */
.irp v, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
    STUB \v, 0
.endr
.irp v, 8,10,11,12,13,14,17,21,29,30
    STUB \v, 1
.endr
/* 0x20: LAPIC timer; 0x30-0x47: IOAPIC pins 0-23; 0xff: spurious */
.irp v, 32,80,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,255
    STUB \v, 0
.endr

isr_common:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    movq 72(%rsp), %rdi         /* vector */
    movq %rsp, %rsi             /* frame */
    cld
    call irq_dispatch
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    addq $16, %rsp              /* vector and error code */
    iretq

/* The table irq.c installs: {vector, stub} pairs, ending with vector -1. */
    .section .rodata
    .balign 8
    .globl isr_table
isr_table:
.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,80,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,255
    .quad \v, isr_\v
.endr
    .quad -1, 0

    .section .note.GNU-stack, "", @progbits
