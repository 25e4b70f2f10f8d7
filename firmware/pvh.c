/* PVH ELF loader. The file is hostile input: every header, offset and size is checked
 * against the file and against guest memory before anything is copied. */
#include <elf.h>
#include <stdio.h>
#include <string.h>

#include "firmware/hvm_start_info.h"
#include "firmware/pvh.h"

#define FAIL(...) (snprintf(err, errlen, __VA_ARGS__), -1)

static bool in_file(size_t len, uint64_t off, uint64_t size) { return off <= len && size <= len - off; }

#define XEN_ELFNOTE_GUEST_OS 6

/* Reads the Xen notes of one PT_NOTE segment: the PVH entry (*found) and the guest OS.
 * Returns -1 when the segment is malformed. */
static int read_xen_notes(const uint8_t *p, uint64_t size, struct pvh_kernel *k, bool *found) {
    uint64_t off = 0;
    while (size - off >= sizeof(Elf64_Nhdr)) {
        Elf64_Nhdr n;
        memcpy(&n, p + off, sizeof n);
        uint64_t name = off + sizeof n;
        uint64_t desc = name + ((n.n_namesz + 3ull) & ~3ull);
        uint64_t next = desc + ((n.n_descsz + 3ull) & ~3ull);
        if (next > size) return -1;
        bool xen = n.n_namesz == 4 && memcmp(p + name, "Xen", 4) == 0;
        if (xen && n.n_type == XEN_ELFNOTE_PHYS32_ENTRY && !*found) {
            if (n.n_descsz == 4) {
                uint32_t e;
                memcpy(&e, p + desc, 4);
                k->entry = e;
            } else if (n.n_descsz == 8) {
                memcpy(&k->entry, p + desc, 8);
            } else {
                return -1;
            }
            *found = true;
        }
        if (xen && n.n_type == XEN_ELFNOTE_GUEST_OS && n.n_descsz >= 5 && memcmp(p + desc, "linux", 5) == 0)
            k->is_linux = true;
        off = next;
    }
    return 0;
}

int pvh_load_elf(const uint8_t *image, size_t len, int fd, const struct guest_mem *gm, uint64_t min_paddr,
                 struct pvh_kernel *k, char *err, size_t errlen) {
    *k = (struct pvh_kernel){0};
    if (len < EI_NIDENT || memcmp(image, ELFMAG, SELFMAG) != 0) return FAIL("not an ELF file");
    if (image[EI_CLASS] != ELFCLASS64) return FAIL("not a 64-bit ELF file");
    if (len < sizeof(Elf64_Ehdr)) return FAIL("truncated ELF header");
    Elf64_Ehdr eh;
    memcpy(&eh, image, sizeof eh);
    if (image[EI_DATA] != ELFDATA2LSB || eh.e_machine != EM_X86_64)
        return FAIL("not an x86-64 ELF file");
    if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 ||
        !in_file(len, eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr)))
        return FAIL("bad ELF program headers");
    bool found = false;
    uint64_t top = 0;
    k->vaddr_lo = UINT64_MAX;
    k->vaddr_hi = 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, image + eh.e_phoff + i * sizeof ph, sizeof ph);
        if (ph.p_type == PT_NOTE) {
            if (!in_file(len, ph.p_offset, ph.p_filesz)) return FAIL("ELF note segment outside the file");
            if (read_xen_notes(image + ph.p_offset, ph.p_filesz, k, &found) < 0)
                return FAIL("malformed ELF note");
        }
    }
    if (!found) return FAIL("no PVH entry point (ELF note XEN_ELFNOTE_PHYS32_ENTRY): not a PVH kernel");
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, image + eh.e_phoff + i * sizeof ph, sizeof ph);
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
        if (ph.p_filesz > ph.p_memsz || !in_file(len, ph.p_offset, ph.p_filesz))
            return FAIL("ELF segment %u outside the file (truncated kernel?)", i);
        if (ph.p_paddr < min_paddr || !gm_valid(gm, ph.p_paddr, ph.p_memsz))
            return FAIL("ELF segment %u at %#llx+%#llx does not fit in guest memory", i,
                        (unsigned long long)ph.p_paddr, (unsigned long long)ph.p_memsz);
        gm_write_file(gm, ph.p_paddr, image, len, fd, ph.p_offset, ph.p_filesz);
        gm_zero(gm, ph.p_paddr + ph.p_filesz, ph.p_memsz - ph.p_filesz);
        if (ph.p_paddr + ph.p_memsz > top) top = ph.p_paddr + ph.p_memsz;
        if (ph.p_vaddr < k->vaddr_lo) k->vaddr_lo = ph.p_vaddr;
        uint64_t last = ph.p_vaddr > UINT64_MAX - (ph.p_memsz - 1) ? UINT64_MAX : ph.p_vaddr + (ph.p_memsz - 1);
        if (last > k->vaddr_hi) k->vaddr_hi = last;
    }
    if (top == 0) return FAIL("ELF file has nothing to load");
    if (k->entry < min_paddr || k->entry >= top)
        return FAIL("PVH entry point %#llx is outside the kernel", (unsigned long long)k->entry);
    k->end = top;
    return 0;
}

int pvh_write_start_info(const struct guest_mem *gm, uint64_t at, const char *cmdline,
                         const struct pvh_module *mods, unsigned nmods, uint64_t rsdp) {
    if (nmods > PVH_MAX_MODULES) return -1;
    uint64_t memmap = at + 0x100, modlist = at + 0x200, cmd = at + 0x1000;
    size_t cmdlen = strlen(cmdline) + 1;
    if (cmdlen > 0x1000 || !gm_valid(gm, at, PVH_INFO_SIZE)) return -1;
    /* The legacy area (EBDA, VGA, BIOS) stays out of the map, as on a PC. */
    struct gm_range r[2];
    unsigned nram = gm_ranges(gm, r);
    struct hvm_memmap_table_entry map[3] = {
        {.addr = 0, .size = 0x9fc00, .type = HVM_MEMMAP_TYPE_RAM},
        {.addr = 0x100000, .size = r[0].size - 0x100000, .type = HVM_MEMMAP_TYPE_RAM},
        {.addr = r[1].gpa, .size = r[1].size, .type = HVM_MEMMAP_TYPE_RAM},
    };
    struct hvm_modlist_entry ml[PVH_MAX_MODULES] = {0};
    for (unsigned i = 0; i < nmods; i++) ml[i] = (struct hvm_modlist_entry){mods[i].paddr, mods[i].size, 0, 0};
    struct hvm_start_info si = {
        .magic = HVM_START_MAGIC_VALUE,
        .version = 1,
        .nr_modules = nmods,
        .modlist_paddr = nmods ? modlist : 0,
        .cmdline_paddr = cmd,
        .rsdp_paddr = rsdp,
        .memmap_paddr = memmap,
        .memmap_entries = 1 + nram,
    };
    gm_write(gm, at, &si, sizeof si);
    gm_write(gm, memmap, map, si.memmap_entries * sizeof map[0]);
    gm_write(gm, modlist, ml, sizeof ml);
    gm_write(gm, cmd, cmdline, cmdlen);
    return 0;
}
