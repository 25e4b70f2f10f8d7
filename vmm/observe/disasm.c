/* capstone over guest memory read through the guest's page tables. libcapstone is loaded
 * the first time it is needed: mapping it costs ~3 MiB of resident memory (its relocated
 * tables), which a VMM that never traces or crashes should not pay. */
#include <capstone/capstone.h>
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#include "vmm/observe/disasm.h"

static struct {
    cs_err (*open)(cs_arch, cs_mode, csh *);
    size_t (*disasm)(csh, const uint8_t *, size_t, uint64_t, size_t, cs_insn **);
    void (*free)(cs_insn *, size_t);
    cs_err (*close)(csh *);
} cs;
static pthread_once_t cs_once = PTHREAD_ONCE_INIT;

static void load_capstone(void) {
    void *lib = dlopen("libcapstone.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!lib) lib = dlopen("libcapstone.so", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return;
    cs.open = (cs_err(*)(cs_arch, cs_mode, csh *))dlsym(lib, "cs_open");
    cs.disasm = (size_t(*)(csh, const uint8_t *, size_t, uint64_t, size_t, cs_insn **))dlsym(lib, "cs_disasm");
    cs.free = (void (*)(cs_insn *, size_t))dlsym(lib, "cs_free");
    cs.close = (cs_err(*)(csh *))dlsym(lib, "cs_close");
    if (!cs.open || !cs.disasm || !cs.free || !cs.close) cs.open = NULL;
}

bool disasm_load(void) {
    pthread_once(&cs_once, load_capstone);
    return cs.open != NULL;
}

static bool open_cs(const bellhop_vcpu_sregs_t *s, csh *h) {
    disasm_load();
    if (!cs.open) return false;
    cs_mode mode = s->cs_l ? CS_MODE_64 : s->cs_db ? CS_MODE_32 : CS_MODE_16;
    return cs.open(CS_ARCH_X86, mode, h) == CS_ERR_OK;
}

/* Decodes one instruction at code[0..n) for address addr; returns its size or 0. */
static size_t decode(csh h, const uint8_t *code, size_t n, uint64_t addr, char *buf, size_t len) {
    cs_insn *insn;
    size_t count = cs.disasm(h, code, n, addr, 1, &insn);
    if (count == 0) return 0;
    size_t size = insn[0].size;
    if (buf) snprintf(buf, len, "%s%s%s", insn[0].mnemonic, insn[0].op_str[0] ? " " : "", insn[0].op_str);
    cs.free(insn, count);
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
    cs.close(&h);
    return size > 0;
}

bool disasm_bytes(const bellhop_vcpu_sregs_t *s, const uint8_t *code, size_t n, uint64_t rip, char *buf, size_t len) {
    csh h;
    if (n == 0 || !open_cs(s, &h)) return false;
    size_t size = decode(h, code, n, linear(s, rip), buf, len);
    cs.close(&h);
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
    cs.close(&h);
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
    cs.close(&h);
}
