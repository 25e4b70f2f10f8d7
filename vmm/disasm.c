/* capstone over guest memory read through the guest's page tables. */
#include <capstone/capstone.h>
#include <string.h>

#include "vmm/disasm.h"

static bool open_cs(const bellhop_vcpu_sregs_t *s, csh *h) {
    cs_mode mode = s->cs_l ? CS_MODE_64 : s->cs_db ? CS_MODE_32 : CS_MODE_16;
    return cs_open(CS_ARCH_X86, mode, h) == CS_ERR_OK;
}

/* Decodes one instruction at code[0..n) for address addr; returns its size or 0. */
static size_t decode(csh h, const uint8_t *code, size_t n, uint64_t addr, char *buf, size_t len) {
    cs_insn *insn;
    size_t count = cs_disasm(h, code, n, addr, 1, &insn);
    if (count == 0) return 0;
    size_t size = insn[0].size;
    if (buf) snprintf(buf, len, "%s%s%s", insn[0].mnemonic, insn[0].op_str[0] ? " " : "", insn[0].op_str);
    cs_free(insn, count);
    return size;
}

/* Real mode addresses code through CS's segment base. */
static uint64_t linear(const bellhop_vcpu_sregs_t *s, uint64_t ip) {
    return (s->cr0 & 1) ? ip : ((uint64_t)s->cs << 4) + (ip & 0xffff);
}

bool disasm_at(const struct guest_mem *gm, const bellhop_vcpu_sregs_t *s, uint64_t rip, char *buf,
               size_t len) {
    uint8_t code[16];
    rip = linear(s, rip);
    size_t n = read_guest_virtual(gm, s, rip, code, sizeof code);
    csh h;
    if (n == 0 || !open_cs(s, &h)) return false;
    size_t size = decode(h, code, n, rip, buf, len);
    cs_close(&h);
    return size > 0;
}

bool disasm_ending_at(const struct guest_mem *gm, const bellhop_vcpu_sregs_t *s, uint64_t end,
                      uint64_t *start, char *buf, size_t len) {
    uint8_t code[15];
    csh h;
    end = linear(s, end);
    if (end < sizeof code || !open_cs(s, &h)) return false;
    size_t n = read_guest_virtual(gm, s, end - sizeof code, code, sizeof code);
    bool found = false;
    for (size_t off = 0; n == sizeof code && off < sizeof code && !found; off++) {
        size_t size = decode(h, code + off, sizeof code - off, end - sizeof code + off, NULL, 0);
        if (size == sizeof code - off) {
            decode(h, code + off, size, end - size, buf, len);
            *start = end - size;
            found = true;
        }
    }
    cs_close(&h);
    return found;
}

void disasm_around(FILE *out, const struct guest_mem *gm, const bellhop_vcpu_sregs_t *s, uint64_t rip) {
    uint8_t code[64 + 48];
    rip = linear(s, rip);
    csh h;
    if (!open_cs(s, &h)) return;
    /* Find a start before rip whose decoding lands exactly on rip. */
    uint64_t from = rip;
    for (uint64_t back = 32; back > 0; back--) {
        if (rip < back || read_guest_virtual(gm, s, rip - back, code, back) != back) continue;
        uint64_t at = rip - back;
        size_t off = 0, size;
        while (off < back && (size = decode(h, code + off, back - off, at + off, NULL, 0)) > 0) off += size;
        if (off == back) {
            from = at;
            break;
        }
    }
    size_t n = read_guest_virtual(gm, s, from, code, sizeof code);
    size_t off = 0;
    char text[96];
    for (int lines = 0; lines < 16 && off < n; lines++) {
        size_t size = decode(h, code + off, n - off, from + off, text, sizeof text);
        if (size == 0) {
            fprintf(out, "  %s%#llx: (undecodable: %02x)\n", from + off == rip ? "=> " : "   ",
                    (unsigned long long)(from + off), code[off]);
            break;
        }
        fprintf(out, "  %s%#llx: %s\n", from + off == rip ? "=> " : "   ",
                (unsigned long long)(from + off), text);
        off += size;
        if (from + off > rip + 24) break;
    }
    if (n == 0) fprintf(out, "  (RIP %#llx is not readable guest memory)\n", (unsigned long long)rip);
    cs_close(&h);
}
