/* x86 page walks: no paging, 32-bit (with 4 MiB pages), PAE and 4-level long mode. */
#include "vmm/hv/paging.h"

#define CR0_PG (1ull << 31)
#define CR4_PSE (1ull << 4)
#define CR4_PAE (1ull << 5)
#define EFER_LMA (1ull << 10)
#define PTE_P 1ull
#define PTE_PS (1ull << 7)
#define ADDR_MASK 0x000ffffffffff000ull

static bool entry64(const struct guest_mem *gm, uint64_t table, unsigned index, uint64_t *e) {
    return gm_read(gm, (table & ADDR_MASK) + index * 8ull, e, 8) && (*e & PTE_P);
}

bool gva_to_gpa(const struct guest_mem *gm, const bellhop_vcpu_sregs_t *s, uint64_t gva, uint64_t *gpa) {
    if (!(s->cr0 & CR0_PG)) {
        *gpa = gva & 0xffffffffull;
        return true;
    }
    uint64_t e;
    if (s->efer & EFER_LMA) {
        if (!entry64(gm, s->cr3, (gva >> 39) & 511, &e)) return false;
        if (!entry64(gm, e, (gva >> 30) & 511, &e)) return false;
        if (e & PTE_PS) return *gpa = (e & ADDR_MASK & ~0x3fffffffull) | (gva & 0x3fffffff), true;
        if (!entry64(gm, e, (gva >> 21) & 511, &e)) return false;
        if (e & PTE_PS) return *gpa = (e & ADDR_MASK & ~0x1fffffull) | (gva & 0x1fffff), true;
        if (!entry64(gm, e, (gva >> 12) & 511, &e)) return false;
        return *gpa = (e & ADDR_MASK) | (gva & 0xfff), true;
    }
    if (s->cr4 & CR4_PAE) {
        if (!gm_read(gm, (s->cr3 & 0xffffffe0ull) + ((gva >> 30) & 3) * 8, &e, 8) || !(e & PTE_P)) return false;
        if (!entry64(gm, e, (gva >> 21) & 511, &e)) return false;
        if (e & PTE_PS) return *gpa = (e & ADDR_MASK & ~0x1fffffull) | (gva & 0x1fffff), true;
        if (!entry64(gm, e, (gva >> 12) & 511, &e)) return false;
        return *gpa = (e & ADDR_MASK) | (gva & 0xfff), true;
    }
    uint32_t e32;
    if (!gm_read(gm, (s->cr3 & 0xfffff000ull) + ((gva >> 22) & 1023) * 4, &e32, 4) || !(e32 & 1)) return false;
    if ((e32 & PTE_PS) && (s->cr4 & CR4_PSE)) return *gpa = (e32 & 0xffc00000u) | (gva & 0x3fffff), true;
    if (!gm_read(gm, (e32 & 0xfffff000u) + ((gva >> 12) & 1023) * 4, &e32, 4) || !(e32 & 1)) return false;
    return *gpa = (e32 & 0xfffff000u) | (gva & 0xfff), true;
}

size_t read_guest_virtual(const struct guest_mem *gm, const bellhop_vcpu_sregs_t *s, uint64_t gva,
                          uint8_t *buf, size_t len) {
    size_t done = 0;
    while (done < len) {
        uint64_t gpa;
        if (!gva_to_gpa(gm, s, gva + done, &gpa)) break;
        size_t chunk = 4096 - ((gva + done) & 4095);
        if (chunk > len - done) chunk = len - done;
        if (!gm_read(gm, gpa, buf + done, chunk)) break;
        done += chunk;
    }
    return done;
}
