/* The bundled guest until the tiny kernel exists: real mode, prints one line through the
 * 16550 at 0x3f8 (polling LSR.THRE as a real driver must) and exits through port 0xf4. */
    .code16
    .text
    .globl _start
_start:
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x1000, %sp
    mov $message, %si
next_char:
    lodsb
    test %al, %al
    jz done
    mov %al, %bl
    mov $0x3fd, %dx            /* line status register */
wait_thre:
    in %dx, %al
    test $0x20, %al
    jz wait_thre
    mov $0x3f8, %dx            /* transmit holding register */
    mov %bl, %al
    out %al, %dx
    jmp next_char
done:
    xor %al, %al
    out %al, $0xf4             /* exit device: status 0 */
    hlt
    jmp done
message:
    .asciz "Hello from the bellhop guest: real mode on KVM, printing through a trapped 16550 UART.\r\n"
