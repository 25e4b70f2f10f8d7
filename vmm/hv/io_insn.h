/* Port-IO instructions recognized from their bytes: where a KVM reports an IO exit with RIP
 * past the instruction rather than at it, which one it was (vmm/hv/vcpu.c). */
#ifndef BELLHOP_VMM_HV_IO_INSN_H
#define BELLHOP_VMM_HV_IO_INSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct io_access {
    bool out;
    uint8_t size;  /* 1, 2 or 4: one element */
    uint16_t port;
    uint16_t dx;   /* the guest's DX, the port of the forms that take it */
};

/* The length of the instruction at code[0..n) when it is an IN, OUT, INS or OUTS (REP or
 * not) that makes access `a`, decoded for code whose default operand size is 32 bits (`db`,
 * or 64-bit mode: `long_mode`) or 16; 0 otherwise. */
size_t io_insn_match(const uint8_t *code, size_t n, bool long_mode, bool db, const struct io_access *a);

#endif
