/* What differs between the host's kinds of KVM, decided without a VM: which kernels PVM can
 * run, and which port-IO instruction an exit came from when RIP is already past it. */
#include "tests/lib/check.h"
#include "vmm/hv/io_insn.h"
#include "vmm/hv/kvm_host.h"

TEST(pvm_runs_only_kernels_below_the_top_2_gib) {
    CHECK(kvm_host_pvm_can_run(0x100000, 0x1fffff));                      /* the tiny guest */
    CHECK(kvm_host_pvm_can_run(0xffffd90000000000ull, 0xffffd90001ffffffull)); /* a PVM guest kernel's range */
    CHECK(!kvm_host_pvm_can_run(0xffffffff81000000ull, 0xffffffff83ffffffull)); /* stock Linux */
    CHECK(!kvm_host_pvm_can_run(0x100000, 0xffffffff80000000ull));         /* reaching into it */
    CHECK(!kvm_host_pvm_can_run(2, 1));                                    /* nothing loaded */
    CHECK_STR_EQ(kvm_host_name(KVM_HOST_PVM), "pvm");
    CHECK_STR_EQ(kvm_host_name(KVM_HOST_HARDWARE), "hardware");
    CHECK_STR_EQ(kvm_host_name(KVM_HOST_NONE), "none");
}

TEST(port_io_instructions_are_known_by_their_bytes) {
    const struct io_access outw60 = {.out = true, .size = 2, .port = 0x60};
    CHECK_EQ(io_insn_match((const uint8_t[]){0x66, 0xe7, 0x60}, 3, false, true, &outw60), 3);  /* outw %ax,$0x60 */
    CHECK_EQ(io_insn_match((const uint8_t[]){0xe7, 0x60}, 2, false, false, &outw60), 2);       /* 16-bit code */
    CHECK_EQ(io_insn_match((const uint8_t[]){0xe7, 0x60}, 2, false, true, &outw60), 0);        /* that is outl */
    CHECK_EQ(io_insn_match((const uint8_t[]){0x66, 0xe7, 0x61}, 3, false, true, &outw60), 0);  /* another port */
    CHECK_EQ(io_insn_match((const uint8_t[]){0x66, 0xe5, 0x60}, 3, false, true, &outw60), 0);  /* an IN */
    CHECK_EQ(io_insn_match((const uint8_t[]){0x66, 0xe7}, 2, false, true, &outw60), 0);        /* cut short */
    const struct io_access outsb = {.out = true, .size = 1, .port = 0x6a, .dx = 0x6a};
    CHECK_EQ(io_insn_match((const uint8_t[]){0xf3, 0x6e}, 2, false, true, &outsb), 2);         /* rep outsb */
    CHECK_EQ(io_insn_match((const uint8_t[]){0xee}, 1, true, false, &outsb), 1);               /* out %al,(%dx) */
    const struct io_access wrong_dx = {.out = true, .size = 1, .port = 0x6a, .dx = 0x6b};
    CHECK_EQ(io_insn_match((const uint8_t[]){0xee}, 1, true, false, &wrong_dx), 0);
    const struct io_access outl = {.out = true, .size = 4, .port = 0xf4, .dx = 0xf4};
    CHECK_EQ(io_insn_match((const uint8_t[]){0x48, 0xef}, 2, true, false, &outl), 2);          /* REX.W: still 32 bits */
    CHECK_EQ(io_insn_match((const uint8_t[]){0x48, 0xef}, 2, false, true, &outl), 0);          /* dec %eax outside 64-bit */
    CHECK_EQ(io_insn_match((const uint8_t[]){0x90}, 1, true, false, &outl), 0);
    uint8_t prefixes[16];
    memset(prefixes, 0x66, sizeof prefixes);
    CHECK_EQ(io_insn_match(prefixes, sizeof prefixes, true, false, &outl), 0);                  /* no opcode within 15 */
}
