/* Guest snippets for the hypervisor tests: 32-bit flat protected mode (the PVH entry state
 * a new vCPU starts in), copied to GUEST_CODE and entered there. Conventions:
 *   RAM 0..2 MiB; GDT at 0x3000; IDT at 0x4000; scratch data at 0x2000 and 0x5000.
 *   Traps the tests set: MEM page 0x10000000, BELL pages 0x10001000 (2 pages), IO 0x60-0x6f.
 */
#ifndef BELLHOP_TESTS_KVM_HV_GUEST_H
#define BELLHOP_TESTS_KVM_HV_GUEST_H

#define GUEST_CODE 0x1000u
#define GUEST_RAM (2u << 20)
#define TRAP_MEM 0x10000000u
#define TRAP_BELL 0x10001000u
#define TRAP_BELL_SLOW (TRAP_BELL + 0x1000u) /* beyond the ioeventfd slots */

/* Assembler macros every snippet may use. */
#define GUEST_ASM_MACROS                                                                     \
    ".macro POWEROFF\n"                                                                      \
    "    movl $2, %eax\n"                                                                    \
    "    movw $0x4fc, %dx\n"                                                                 \
    "    outl %eax, %dx\n"                                                                   \
    ".endm\n"                                                                                \
    ".macro RESET\n"                                                                         \
    "    movl $3, %eax\n"                                                                    \
    "    movw $0x4fc, %dx\n"                                                                 \
    "    outl %eax, %dx\n"                                                                   \
    ".endm\n"                                                                                \
    /* flat code 0x10 and data 0x18, as the entry state's selectors */                       \
    ".macro SETUP_GDT\n"                                                                     \
    "    movl $0x0000ffff, 0x3010\n"                                                         \
    "    movl $0x00cf9a00, 0x3014\n"                                                         \
    "    movl $0x0000ffff, 0x3018\n"                                                         \
    "    movl $0x00cf9200, 0x301c\n"                                                         \
    "    movw $0x1f, 0x3800\n"                                                               \
    "    movl $0x3000, 0x3802\n"                                                             \
    "    lgdt 0x3800\n"                                                                      \
    ".endm\n"

#endif
