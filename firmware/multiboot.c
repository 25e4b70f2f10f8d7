/* Multiboot (v1) loader. The image is hostile input: the header, every ELF field and every
 * address is checked against the file, guest memory and 4 GiB before anything is copied. */
#include <elf.h>
#include <stdio.h>
#include <string.h>

#include "firmware/multiboot.h"

#define FAIL(...) (snprintf(err, errlen, "multiboot: " __VA_ARGS__), -1)

#define FOUR_GIB (1ull << 32)

/* Bits 0-15 are requirements; of these bellhop meets (or, for video, waives) these. */
#define REQUIRED_MASK 0xffffu
#define KNOWN_REQUIRED (MULTIBOOT_PAGE_ALIGN | MULTIBOOT_MEMORY_INFO | MULTIBOOT_VIDEO_MODE)

/* The header: magic, flags and checksum always; the address fields with the a.out kludge. */
struct mb_header {
    uint32_t magic, flags, checksum;
    uint32_t header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr;
};
#define HEADER_MIN 12

static bool in_file(size_t len, uint64_t off, uint64_t size) { return off <= len && size <= len - off; }

/* The first valid header's offset, or -1; *bad: the offset of a magic whose checksum failed
 * (-1 if none), for the error. */
static long find_header(const uint8_t *image, size_t len, long *bad) {
    *bad = -1;
    size_t end = len < MULTIBOOT_SEARCH ? len : MULTIBOOT_SEARCH;
    for (size_t off = 0; off + HEADER_MIN <= end; off += 4) {
        uint32_t h[3];
        memcpy(h, image + off, sizeof h);
        if (h[0] != MULTIBOOT_HEADER_MAGIC) continue;
        if ((uint32_t)(h[0] + h[1] + h[2]) == 0) return (long)off;
        if (*bad < 0) *bad = (long)off;
    }
    return -1;
}

bool multiboot_detect(const uint8_t *image, size_t len) {
    long bad;
    return find_header(image, len, &bad) >= 0;
}

bool multiboot_claimed(const uint8_t *image, size_t len) {
    long bad;
    return find_header(image, len, &bad) >= 0 || bad >= 0;
}

/* Whether [paddr, paddr+size) may take the kernel: in RAM, below 4 GiB, not below min. */
static bool fits(const struct guest_mem *gm, uint64_t min_paddr, uint64_t paddr, uint64_t size) {
    return paddr >= min_paddr && paddr <= FOUR_GIB && size <= FOUR_GIB - paddr && gm_valid(gm, paddr, size);
}

static int load_elf32(const uint8_t *image, size_t len, int fd, const struct guest_mem *gm, uint64_t min_paddr,
                      struct multiboot_kernel *k, char *err, size_t errlen) {
    if (len < EI_NIDENT || memcmp(image, ELFMAG, SELFMAG) != 0)
        return FAIL("not an ELF file, and the header has no address fields (flag 16)");
    if (image[EI_CLASS] == ELFCLASS64) return FAIL("a 64-bit ELF file: a multiboot kernel is ELF32 (i386)");
    if (image[EI_CLASS] != ELFCLASS32) return FAIL("bad ELF class %u", image[EI_CLASS]);
    if (len < sizeof(Elf32_Ehdr)) return FAIL("truncated ELF header");
    Elf32_Ehdr eh;
    memcpy(&eh, image, sizeof eh);
    if (image[EI_DATA] != ELFDATA2LSB || eh.e_machine != EM_386)
        return FAIL("not an i386 ELF file (machine %u)", eh.e_machine);
    if (eh.e_phentsize != sizeof(Elf32_Phdr) || eh.e_phnum == 0 ||
        !in_file(len, eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(Elf32_Phdr)))
        return FAIL("bad ELF program headers");
    /* Every segment (and the entry) checked before the first is copied: a refused kernel
     * leaves RAM alone. */
    bool entry_found = false, any = false;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf32_Phdr ph;
        memcpy(&ph, image + eh.e_phoff + i * sizeof ph, sizeof ph);
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
        if (ph.p_filesz > ph.p_memsz || !in_file(len, ph.p_offset, ph.p_filesz))
            return FAIL("ELF segment %u outside the file (truncated kernel?)", i);
        if (!fits(gm, min_paddr, ph.p_paddr, ph.p_memsz))
            return FAIL("ELF segment %u at %#x+%#x is not in guest RAM from %#llx below 4 GiB", i, ph.p_paddr,
                        ph.p_memsz, (unsigned long long)min_paddr);
        any = true;
        /* A kernel linked high gives its entry as a virtual address: the segment holding it
         * says where that is physically (as GRUB reads it). */
        if (!entry_found && eh.e_entry >= ph.p_vaddr && eh.e_entry - ph.p_vaddr < ph.p_memsz) {
            k->entry = eh.e_entry - ph.p_vaddr + ph.p_paddr;
            entry_found = true;
        }
    }
    if (!any) return FAIL("the ELF file has nothing to load");
    if (!entry_found) return FAIL("entry point %#x is outside the kernel's segments", eh.e_entry);
    uint64_t lo = UINT64_MAX, hi = 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf32_Phdr ph;
        memcpy(&ph, image + eh.e_phoff + i * sizeof ph, sizeof ph);
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
        gm_write_file(gm, ph.p_paddr, image, len, fd, ph.p_offset, ph.p_filesz);
        gm_zero(gm, (uint64_t)ph.p_paddr + ph.p_filesz, ph.p_memsz - ph.p_filesz);
        if (ph.p_paddr < lo) lo = ph.p_paddr;
        if ((uint64_t)ph.p_paddr + ph.p_memsz > hi) hi = (uint64_t)ph.p_paddr + ph.p_memsz;
    }
    k->start = lo;
    k->end = hi;
    return 0;
}

/* The a.out kludge: the file from header_addr - load_addr bytes before the header is loaded
 * at load_addr, up to load_end_addr (0: the file's end), then zeroed up to bss_end_addr. */
static int load_aout(const uint8_t *image, size_t len, int fd, const struct guest_mem *gm, uint64_t min_paddr,
                     size_t off, const struct mb_header *h, struct multiboot_kernel *k, char *err, size_t errlen) {
    if (off + sizeof *h > MULTIBOOT_SEARCH) return FAIL("the header's address fields lie past the first 8 KiB");
    if (off + sizeof *h > len) return FAIL("the header's address fields are cut off by the file's end");
    if (h->header_addr < h->load_addr)
        return FAIL("load_addr %#x is above header_addr %#x", h->load_addr, h->header_addr);
    if (h->header_addr - h->load_addr > off)
        return FAIL("header_addr %#x less load_addr %#x is more than the header's offset %#zx in the file",
                    h->header_addr, h->load_addr, off);
    uint64_t text = off - (h->header_addr - h->load_addr);
    uint64_t load = len - text;
    if (h->load_end_addr) {
        if (h->load_end_addr < h->load_addr)
            return FAIL("load_end_addr %#x is below load_addr %#x", h->load_end_addr, h->load_addr);
        load = h->load_end_addr - h->load_addr;
        if (!in_file(len, text, load))
            return FAIL("load_end_addr %#x is past the file's end (truncated kernel?)", h->load_end_addr);
    }
    uint64_t mem = load;
    if (h->bss_end_addr) {
        if (h->bss_end_addr < h->load_addr + load)
            return FAIL("bss_end_addr %#x is below the loaded image's end %#llx", h->bss_end_addr,
                        (unsigned long long)(h->load_addr + load));
        mem = h->bss_end_addr - h->load_addr;
    }
    if (mem == 0) return FAIL("the header's address fields load nothing");
    if (!fits(gm, min_paddr, h->load_addr, mem))
        return FAIL("the kernel at %#x+%#llx is not in guest RAM from %#llx below 4 GiB", h->load_addr,
                    (unsigned long long)mem, (unsigned long long)min_paddr);
    if (h->entry_addr < h->load_addr || h->entry_addr - h->load_addr >= mem)
        return FAIL("entry_addr %#x is outside the kernel (%#x+%#llx)", h->entry_addr, h->load_addr,
                    (unsigned long long)mem);
    gm_write_file(gm, h->load_addr, image, len, fd, text, load);
    gm_zero(gm, h->load_addr + load, mem - load);
    k->entry = h->entry_addr;
    k->start = h->load_addr;
    k->end = h->load_addr + mem;
    return 0;
}

int multiboot_load(const uint8_t *image, size_t len, int fd, const struct guest_mem *gm, uint64_t min_paddr,
                   struct multiboot_kernel *k, char *err, size_t errlen) {
    *k = (struct multiboot_kernel){0};
    long bad, at = find_header(image, len, &bad);
    if (at < 0 && bad >= 0) return FAIL("the header at %#lx has a bad checksum", bad);
    if (at < 0) return FAIL("no header (magic %#x) in the first 8 KiB", MULTIBOOT_HEADER_MAGIC);
    struct mb_header h = {0};
    size_t n = len - (size_t)at < sizeof h ? len - (size_t)at : sizeof h;
    memcpy(&h, image + at, n);
    uint32_t unknown = h.flags & REQUIRED_MASK & ~KNOWN_REQUIRED;
    if (unknown) return FAIL("the header requires features bellhop lacks (flags %#x)", unknown);
    k->flags = h.flags;
    if (h.flags & MULTIBOOT_AOUT_KLUDGE)
        return load_aout(image, len, fd, gm, min_paddr, (size_t)at, &h, k, err, errlen);
    return load_elf32(image, len, fd, gm, min_paddr, k, err, errlen);
}

/* The information area's layout from `at`. */
#define NAME_OFF 0x78
#define MMAP_OFF 0x80
#define MMAP_MAX 4
#define MODS_OFF 0x100
#define STR_OFF (MODS_OFF + MULTIBOOT_MAX_MODULES * sizeof(struct multiboot_mod_list))
_Static_assert(sizeof(struct multiboot_info) == 116, "the multiboot info block is 116 bytes");
_Static_assert(sizeof(struct multiboot_mmap_entry) == 24, "a memory map entry is 24 bytes");
_Static_assert(NAME_OFF >= sizeof(struct multiboot_info) && NAME_OFF + sizeof "bellhop" <= MMAP_OFF &&
                   MMAP_OFF + MMAP_MAX * sizeof(struct multiboot_mmap_entry) <= MODS_OFF &&
                   STR_OFF < MULTIBOOT_INFO_SIZE,
               "the multiboot information area's parts overlap");

/* The strings go one after another from STR_OFF: each one's guest address, or 0 when the
 * area is full. */
struct strings {
    uint8_t *area;
    uint64_t at;
    size_t used;
};
static uint32_t put_string(struct strings *s, const char *str) {
    size_t n = strlen(str ? str : "") + 1;
    if (n > MULTIBOOT_INFO_SIZE - STR_OFF - s->used) return 0;
    memcpy(s->area + STR_OFF + s->used, str ? str : "", n);
    uint32_t addr = (uint32_t)(s->at + STR_OFF + s->used);
    s->used += n;
    return addr;
}

static unsigned memory_map(const struct guest_mem *gm, struct multiboot_mmap_entry map[MMAP_MAX]) {
    struct gm_range r[2];
    unsigned nram = gm_ranges(gm, r);
    const uint32_t sz = sizeof map[0] - sizeof map[0].size;
    map[0] = (struct multiboot_mmap_entry){sz, 0, MULTIBOOT_LEGACY_START, MULTIBOOT_MEMORY_AVAILABLE};
    map[1] = (struct multiboot_mmap_entry){sz, MULTIBOOT_LEGACY_START, MULTIBOOT_LEGACY_END - MULTIBOOT_LEGACY_START,
                                           MULTIBOOT_MEMORY_RESERVED};
    map[2] = (struct multiboot_mmap_entry){sz, MULTIBOOT_LEGACY_END, r[0].size - MULTIBOOT_LEGACY_END,
                                           MULTIBOOT_MEMORY_AVAILABLE};
    map[3] = (struct multiboot_mmap_entry){sz, r[1].gpa, r[1].size, MULTIBOOT_MEMORY_AVAILABLE};
    return 2 + nram;
}

int multiboot_write_info(const struct guest_mem *gm, uint64_t at, const char *cmdline,
                         const struct multiboot_module *mods, unsigned nmods, char *err, size_t errlen) {
    if (nmods > MULTIBOOT_MAX_MODULES) return FAIL("%u modules: at most %u", nmods, MULTIBOOT_MAX_MODULES);
    if (at % 8 || at > FOUR_GIB - MULTIBOOT_INFO_SIZE || !gm_valid(gm, at, MULTIBOOT_INFO_SIZE))
        return FAIL("the information block at %#llx is not in RAM below 4 GiB", (unsigned long long)at);
    if (gm->size <= MULTIBOOT_LEGACY_END)
        return FAIL("%llu bytes of RAM: a multiboot kernel needs more than 1 MiB", (unsigned long long)gm->size);
    static const char name[] = "bellhop";
    uint8_t area[MULTIBOOT_INFO_SIZE] = {0};
    struct strings s = {area, at, 0};
    struct multiboot_mod_list ml[MULTIBOOT_MAX_MODULES] = {0};
    for (unsigned i = 0; i < nmods; i++) {
        const struct multiboot_module *m = &mods[i];
        if (m->size >= FOUR_GIB || m->paddr >= FOUR_GIB - m->size || !gm_valid(gm, m->paddr, m->size))
            return FAIL("module %u at %#llx+%#llx is not in RAM below 4 GiB", i, (unsigned long long)m->paddr,
                        (unsigned long long)m->size);
        ml[i] = (struct multiboot_mod_list){(uint32_t)m->paddr, (uint32_t)(m->paddr + m->size),
                                            put_string(&s, m->string), 0};
        if (!ml[i].string) return FAIL("module %u's string does not fit in the information area", i);
    }
    uint32_t cmd = put_string(&s, cmdline);
    if (!cmd)
        return FAIL("the command line (%zu bytes) does not fit in the information area",
                    strlen(cmdline ? cmdline : ""));
    struct multiboot_mmap_entry map[MMAP_MAX];
    unsigned nmap = memory_map(gm, map);
    struct gm_range r[2];
    gm_ranges(gm, r);
    struct multiboot_info mbi = {
        .flags = MULTIBOOT_INFO_MEMORY | MULTIBOOT_INFO_CMDLINE | MULTIBOOT_INFO_MODS | MULTIBOOT_INFO_MEM_MAP |
                 MULTIBOOT_INFO_BOOT_LOADER_NAME,
        .mem_lower = MULTIBOOT_LEGACY_START / 1024,
        .mem_upper = (uint32_t)((r[0].size - MULTIBOOT_LEGACY_END) / 1024),
        .cmdline = cmd,
        .mods_count = nmods,
        .mods_addr = (uint32_t)(at + MODS_OFF),
        .mmap_length = (uint32_t)(nmap * sizeof map[0]),
        .mmap_addr = (uint32_t)(at + MMAP_OFF),
        .boot_loader_name = (uint32_t)(at + NAME_OFF),
    };
    memcpy(area, &mbi, sizeof mbi);
    memcpy(area + NAME_OFF, name, sizeof name);
    memcpy(area + MMAP_OFF, map, nmap * sizeof map[0]);
    memcpy(area + MODS_OFF, ml, sizeof ml);
    gm_write(gm, at, area, sizeof area);
    return 0;
}
