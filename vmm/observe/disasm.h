/* Guest instructions in words (capstone), for --trace traps and crash reports. */
#ifndef BELLHOP_VMM_OBSERVE_DISASM_H
#define BELLHOP_VMM_OBSERVE_DISASM_H

#include <stdbool.h>
#include <stdio.h>

#include "vmm/hv/paging.h"

/* Loads libcapstone now (it is otherwise loaded on first use), for a thread that will not be
 * allowed to later (vmm/sandbox/sandbox.h). False if it is not installed. */
bool disasm_load(void);
/* The instruction at rip, as "mnemonic operands"; false if unreadable or undecodable. */
bool disasm_at(const struct guest_mem *gm, const bellhop_vcpu_sregs_t *s, uint64_t rip, char *buf,
               size_t len);
/* The first instruction in code[0..n), at address rip, as disasm_at gives it. */
bool disasm_bytes(const bellhop_vcpu_sregs_t *s, const uint8_t *code, size_t n, uint64_t rip, char *buf, size_t len);
/* The instruction that ends exactly at `end` (KVM reports some exits with RIP already past
 * the instruction): the longest decodable candidate. *start gets its address. */
bool disasm_ending_at(const struct guest_mem *gm, const bellhop_vcpu_sregs_t *s, uint64_t end,
                      uint64_t *start, char *buf, size_t len);
/* A few instructions before rip (when they can be found) and after it, rip marked. */
void disasm_around(FILE *out, const struct guest_mem *gm, const bellhop_vcpu_sregs_t *s, uint64_t rip);

#endif
