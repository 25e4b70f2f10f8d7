/* Port-IO instruction decoding (vmm/hv/io_insn.h): legacy prefixes, REX in 64-bit mode, then
 * one of the twelve IN/OUT/INS/OUTS opcodes. */
#include "vmm/hv/io_insn.h"

static bool legacy_prefix(uint8_t b, bool *opsize) {
    switch (b) {
    case 0x66: *opsize = true; return true;
    case 0x67: case 0xf0: case 0xf2: case 0xf3:
    case 0x26: case 0x2e: case 0x36: case 0x3e: case 0x64: case 0x65: return true;
    default: return false;
    }
}

size_t io_insn_match(const uint8_t *code, size_t n, bool long_mode, bool db, const struct io_access *a) {
    size_t i = 0;
    bool opsize = false;
    while (i < n && i < 14 && legacy_prefix(code[i], &opsize)) i++;
    if (long_mode && i < n && (code[i] & 0xf0) == 0x40) i++; /* REX: W does not widen port IO */
    if (i >= n) return 0;
    uint8_t op = code[i++];
    bool out, imm8 = false;
    switch (op & ~1u) {
    case 0xe4: out = false; imm8 = true; break;
    case 0xe6: out = true; imm8 = true; break;
    case 0xec: case 0x6c: out = false; break;
    case 0xee: case 0x6e: out = true; break;
    default: return 0;
    }
    unsigned size = (op & 1) ? ((long_mode || db) != opsize ? 4 : 2) : 1;
    uint16_t port = a->dx;
    if (imm8) {
        if (i >= n) return 0;
        port = code[i++];
    }
    return out == a->out && size == a->size && port == a->port && i <= 15 ? i : 0;
}
