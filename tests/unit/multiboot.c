/* The multiboot loader on images built here: an ELF32 kernel with bss, the a.out kludge, the
 * information block read back through guest memory, and hostile images refused in a line. */
#include <elf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "firmware/multiboot.h"
#include "tests/lib/check.h"

#define RAM (8u << 20)
#define MIN 0x100000u
#define HDR 0x100 /* the multiboot header's offset in the ELF image */

static uint8_t ram[RAM], file[0x4000];
static const struct guest_mem gm = {ram, RAM, NULL, NULL};

static void put_header(size_t at, uint32_t flags) {
    uint32_t h[3] = {MULTIBOOT_HEADER_MAGIC, flags, 0u - (MULTIBOOT_HEADER_MAGIC + flags)};
    memcpy(file + at, h, sizeof h);
}

static void put_phdr(unsigned i, Elf32_Phdr ph) { memcpy(file + sizeof(Elf32_Ehdr) + i * sizeof ph, &ph, sizeof ph); }

/* Two segments: a page at 1 MiB with two pages of bss after it, and half a page at 2 MiB
 * linked at 0xc0200000; entry `entry`; the multiboot header at HDR with `flags`. */
static size_t make_elf(uint32_t entry, uint32_t flags) {
    memset(file, 0, sizeof file);
    Elf32_Ehdr eh = {.e_ident = {ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS32, ELFDATA2LSB, EV_CURRENT},
                     .e_type = ET_EXEC, .e_machine = EM_386, .e_entry = entry, .e_phoff = sizeof eh,
                     .e_phentsize = sizeof(Elf32_Phdr), .e_phnum = 3, .e_ehsize = sizeof eh};
    memcpy(file, &eh, sizeof eh);
    put_phdr(0, (Elf32_Phdr){.p_type = PT_LOAD, .p_offset = 0x1000, .p_vaddr = 0x100000, .p_paddr = 0x100000,
                             .p_filesz = 0x1000, .p_memsz = 0x3000});
    put_phdr(1, (Elf32_Phdr){.p_type = PT_NOTE, .p_offset = 0x3000, .p_filesz = 0x10});
    put_phdr(2, (Elf32_Phdr){.p_type = PT_LOAD, .p_offset = 0x2000, .p_vaddr = 0xc0200000, .p_paddr = 0x200000,
                             .p_filesz = 0x800, .p_memsz = 0x800});
    put_header(HDR, flags);
    memset(file + 0x1000, 0x11, 0x1000);
    memset(file + 0x2000, 0x22, 0x800);
    return 0x3000;
}

/* An a.out-kludge image: the header at `at` with its address fields. */
static size_t make_aout(size_t at, uint32_t header_addr, uint32_t load_addr, uint32_t load_end, uint32_t bss_end,
                        uint32_t entry, size_t len) {
    memset(file, 0, sizeof file);
    for (size_t i = 0; i < len; i++) file[i] = (uint8_t)(i / 0x100 + 1);
    put_header(at, MULTIBOOT_AOUT_KLUDGE);
    uint32_t f[5] = {header_addr, load_addr, load_end, bss_end, entry};
    memcpy(file + at + 12, f, sizeof f);
    return len;
}

static int load(size_t len, struct multiboot_kernel *k, char *err, size_t errlen) {
    memset(ram, 0xaa, RAM);
    err[0] = 0;
    return multiboot_load(file, len, -1, &gm, MIN, k, err, errlen);
}

static bool all(uint64_t gpa, uint64_t len, uint8_t v) {
    for (uint64_t i = 0; i < len; i++)
        if (ram[gpa + i] != v) return false;
    return true;
}

TEST(an_elf32_kernel_loads_by_paddr_with_its_bss_zeroed) {
    struct multiboot_kernel k;
    char err[160];
    size_t len = make_elf(0x100010, MULTIBOOT_PAGE_ALIGN | MULTIBOOT_MEMORY_INFO);
    CHECK(multiboot_detect(file, len));
    CHECK_MSG(load(len, &k, err, sizeof err) == 0, "%s", err);
    CHECK_EQ(k.entry, 0x100010);
    CHECK_EQ(k.start, 0x100000);
    CHECK_EQ(k.end, 0x200800);
    CHECK_EQ(k.flags, MULTIBOOT_PAGE_ALIGN | MULTIBOOT_MEMORY_INFO);
    CHECK(all(0x100000, 0x1000, 0x11));
    CHECK(all(0x101000, 0x2000, 0));
    CHECK(all(0x103000, 0x1000, 0xaa)); /* nothing past the bss */
    CHECK(all(0x200000, 0x800, 0x22));
    CHECK(all(0x200800, 0x800, 0xaa));
}

TEST(an_entry_given_as_a_virtual_address_is_translated_and_video_is_waived) {
    struct multiboot_kernel k;
    char err[160];
    size_t len = make_elf(0xc0200010, MULTIBOOT_VIDEO_MODE);
    CHECK_MSG(load(len, &k, err, sizeof err) == 0, "%s", err);
    CHECK_EQ(k.entry, 0x200010);
    CHECK_EQ(k.flags, MULTIBOOT_VIDEO_MODE);
}

TEST(the_aout_kludge_loads_from_the_address_fields) {
    struct multiboot_kernel k;
    char err[160];
    /* the file from offset 0x1000 (0x40 before the header) to load_end, then bss */
    size_t len = make_aout(0x1040, 0x300040, 0x300000, 0x301800, 0x304000, 0x300100, 0x3000);
    CHECK(multiboot_detect(file, len));
    CHECK_MSG(load(len, &k, err, sizeof err) == 0, "%s", err);
    CHECK_EQ(k.entry, 0x300100);
    CHECK_EQ(k.start, 0x300000);
    CHECK_EQ(k.end, 0x304000);
    CHECK(memcmp(ram + 0x300000, file + 0x1000, 0x1800) == 0);
    CHECK(all(0x301800, 0x2800, 0));
    CHECK(all(0x304000, 0x100, 0xaa));
    /* load_end_addr 0: to the file's end; bss_end_addr 0: no bss */
    len = make_aout(0x1040, 0x300040, 0x300000, 0, 0, 0x300100, 0x3000);
    CHECK_MSG(load(len, &k, err, sizeof err) == 0, "%s", err);
    CHECK_EQ(k.end, 0x302000);
    CHECK(memcmp(ram + 0x300000, file + 0x1000, 0x2000) == 0);
    CHECK(all(0x302000, 0x100, 0xaa));
    /* an ELF file that sets flag 16 is loaded by the fields, not its program headers */
    len = make_elf(0x100010, 0);
    put_header(HDR, MULTIBOOT_AOUT_KLUDGE);
    uint32_t f[5] = {0x400000 + HDR, 0x400000, 0, 0, 0x400000};
    memcpy(file + HDR + 12, f, sizeof f);
    CHECK_MSG(load(len, &k, err, sizeof err) == 0, "%s", err);
    CHECK_EQ(k.start, 0x400000);
    CHECK(memcmp(ram + 0x400000, file, len) == 0);
    CHECK(all(0x100000, 0x100, 0xaa));
}

static void refused(size_t len, const char *why) {
    struct multiboot_kernel k;
    char err[160];
    CHECK_MSG(load(len, &k, err, sizeof err) == -1, "loaded, expected \"%s\"", why);
    CHECK_MSG(strncmp(err, "multiboot: ", 11) == 0 && strstr(err, why) && !strchr(err, '\n'), "\"%s\" for \"%s\"", err,
              why);
    CHECK(all(0, RAM, 0xaa)); /* a refused kernel leaves RAM alone */
}

TEST(hostile_headers_are_refused_in_a_line) {
    size_t len = make_elf(0x100010, 0);
    file[HDR + 8] ^= 1;
    CHECK(!multiboot_detect(file, len));
    refused(len, "bad checksum");
    memset(file + HDR, 0, 12);
    put_header(8192, 0); /* wholly past the first 8 KiB */
    CHECK(!multiboot_detect(file, len));
    refused(len, "no header");
    put_header(8184, 0); /* across the 8 KiB line */
    CHECK(!multiboot_detect(file, len));
    refused(len, "no header");
    put_header(HDR + 2, 0); /* unaligned */
    CHECK(!multiboot_detect(file, len));
    refused(len, "no header");
    make_elf(0x100010, 0x8);
    refused(len, "requires features bellhop lacks (flags 0x8)");
    make_elf(0x100010, 0x8000 | MULTIBOOT_MEMORY_INFO);
    refused(len, "flags 0x8000");
    make_elf(0x100010, 0x20000); /* an unknown optional flag is fine */
    struct multiboot_kernel k;
    char err[160];
    CHECK_MSG(load(len, &k, err, sizeof err) == 0, "%s", err);
    refused(8, "no header"); /* shorter than a header */
    refused(0, "no header");
}

TEST(hostile_elf_files_are_refused_in_a_line) {
    size_t len = make_elf(0x100010, 0);
    refused(0x27ff, "ELF segment 2 outside the file");
    file[EI_CLASS] = ELFCLASS64;
    refused(len, "a 64-bit ELF file");
    make_elf(0x100010, 0);
    Elf32_Half machine = EM_X86_64;
    memcpy(file + offsetof(Elf32_Ehdr, e_machine), &machine, 2);
    refused(len, "not an i386 ELF file");
    make_elf(0x100010, 0);
    file[0] = 0;
    refused(len, "not an ELF file");
    /* the ELF header cut short, the multiboot header right after its ident */
    make_elf(0x100010, 0);
    put_header(16, 0);
    refused(40, "truncated ELF header");
    make_elf(0x100010, 0);
    Elf32_Off phoff = 0xfffffff0;
    memcpy(file + offsetof(Elf32_Ehdr, e_phoff), &phoff, 4);
    refused(len, "bad ELF program headers");
    make_elf(0x100010, 0);
    Elf32_Half phnum = 0xffff;
    memcpy(file + offsetof(Elf32_Ehdr, e_phnum), &phnum, 2);
    refused(len, "bad ELF program headers");
    struct {
        Elf32_Phdr ph;
        const char *why;
    } bad[] = {
        {{PT_LOAD, 0x1000, 0x100000, 0x80000, 0x1000, 0x1000, 0, 0}, "below"},          /* below min_paddr */
        {{PT_LOAD, 0x1000, 0, RAM - 0x800, 0x1000, 0x1000, 0, 0}, "not in guest RAM"},  /* past RAM's end */
        {{PT_LOAD, 0x1000, 0, 0xfffff000, 0x1000, 0x2000, 0, 0}, "not in guest RAM"},   /* past 4 GiB */
        {{PT_LOAD, 0x1000, 0, 0x100000, 0x2000, 0x1000, 0, 0}, "outside the file"},      /* filesz > memsz */
        {{PT_LOAD, 0xfffff000, 0, 0x100000, 0x2000, 0x2000, 0, 0}, "outside the file"},  /* offset overflows */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        make_elf(0x100010, 0);
        put_phdr(0, bad[i].ph);
        refused(len, bad[i].why);
    }
    make_elf(0x500000, 0);
    refused(len, "entry point 0x500000 is outside");
    make_elf(0x100010, 0);
    put_phdr(0, (Elf32_Phdr){.p_type = PT_NULL});
    put_phdr(2, (Elf32_Phdr){.p_type = PT_LOAD, .p_paddr = 0x100000}); /* memsz 0 */
    refused(len, "nothing to load");
}

TEST(hostile_address_fields_are_refused_in_a_line) {
    refused(make_aout(8176, 0x300000, 0x300000, 0, 0, 0x300000, 0x3000), "past the first 8 KiB");
    refused(make_aout(0x40, 0x300040, 0x300000, 0, 0, 0x300000, 0x50), "cut off by the file's end");
    refused(make_aout(0x40, 0x300040, 0x300080, 0, 0, 0x300080, 0x1000), "load_addr 0x300080 is above header_addr");
    refused(make_aout(0x40, 0x300080, 0x300000, 0, 0, 0x300000, 0x1000), "more than the header's offset");
    refused(make_aout(0x40, 0x300040, 0x300000, 0x2fffff, 0, 0x300000, 0x1000), "below load_addr");
    refused(make_aout(0x40, 0x300040, 0x300000, 0x302000, 0, 0x300000, 0x1000), "past the file's end");
    refused(make_aout(0x40, 0x300040, 0x300000, 0, 0x300800, 0x300000, 0x1000), "bss_end_addr 0x300800 is below");
    refused(make_aout(0x40, 0x80040, 0x80000, 0, 0, 0x80000, 0x1000), "not in guest RAM");
    refused(make_aout(0x40, 0x7ff040, 0x7ff000, 0, 0, 0x7ff000, 0x2000), "not in guest RAM");
    refused(make_aout(0x40, 0xfffff040, 0xfffff000, 0, 0, 0xfffff000, 0x2000), "not in guest RAM"); /* past 4 GiB */
    refused(make_aout(0x40, 0xfffff040, 0xfffff000, 0, 0xffffffff, 0xfffff000, 0x2000),
            "bss_end_addr 0xffffffff is below");
    refused(make_aout(0x40, 0x300040, 0x300000, 0, 0, 0x301000, 0x1000), "entry_addr 0x301000 is outside");
    refused(make_aout(0x40, 0x300040, 0x300000, 0, 0, 0x2fffff, 0x1000), "entry_addr 0x2fffff is outside");
    refused(make_aout(0x40, 0x300040, 0x300000, 0x300000, 0, 0x300000, 0x1000), "load nothing");
}

static void read_info(const struct guest_mem *m, uint64_t at, struct multiboot_info *mbi) {
    CHECK(gm_read(m, at, mbi, sizeof *mbi));
}

static const char *str_at(const struct guest_mem *m, uint32_t gpa) {
    const char *s = gm_ptr(m, gpa, 1);
    CHECK(s != NULL);
    CHECK(memchr(s, 0, (size_t)(m->size - gpa)) != NULL);
    return s;
}

static void check_map(const struct guest_mem *m, const struct multiboot_info *mbi) {
    struct gm_range r[2];
    unsigned nram = gm_ranges(m, r);
    struct multiboot_mmap_entry e[4];
    CHECK_EQ(mbi->mmap_length, (2 + nram) * sizeof e[0]);
    CHECK(gm_read(m, mbi->mmap_addr, e, mbi->mmap_length));
    uint64_t want[4][3] = {{0, 0x9fc00, MULTIBOOT_MEMORY_AVAILABLE},
                           {0x9fc00, 0x60400, MULTIBOOT_MEMORY_RESERVED},
                           {0x100000, r[0].size - 0x100000, MULTIBOOT_MEMORY_AVAILABLE},
                           {r[1].gpa, r[1].size, MULTIBOOT_MEMORY_AVAILABLE}};
    for (unsigned i = 0; i < 2 + nram; i++) {
        CHECK_EQ(e[i].size, 20);
        CHECK_EQ(e[i].addr, want[i][0]);
        CHECK_EQ(e[i].len, want[i][1]);
        CHECK_EQ(e[i].type, want[i][2]);
    }
    CHECK_EQ(mbi->mem_lower, 639);
    CHECK_EQ(mbi->mem_upper, (r[0].size - 0x100000) / 1024);
}

TEST(the_information_block_reads_back) {
    memset(ram, 0, RAM);
    memset(ram + 0x400000, 'e', 0x1000);
    const struct multiboot_module mods[2] = {{0x400000, 0x1000, "env"}, {0x401000, 0x2000, NULL}};
    char err[160];
    CHECK_MSG(multiboot_write_info(&gm, 0x6000, "x86/vmexit.flat -smp 1", mods, 2, err, sizeof err) == 0, "%s", err);
    struct multiboot_info mbi;
    read_info(&gm, 0x6000, &mbi);
    CHECK_EQ(mbi.flags, MULTIBOOT_INFO_MEMORY | MULTIBOOT_INFO_CMDLINE | MULTIBOOT_INFO_MODS | MULTIBOOT_INFO_MEM_MAP |
                            MULTIBOOT_INFO_BOOT_LOADER_NAME);
    CHECK_STR_EQ(str_at(&gm, mbi.cmdline), "x86/vmexit.flat -smp 1");
    CHECK_STR_EQ(str_at(&gm, mbi.boot_loader_name), "bellhop");
    check_map(&gm, &mbi);
    CHECK_EQ(mbi.mods_count, 2);
    struct multiboot_mod_list ml[2];
    CHECK(gm_read(&gm, mbi.mods_addr, ml, sizeof ml));
    CHECK_EQ(ml[0].mod_start, 0x400000);
    CHECK_EQ(ml[0].mod_end, 0x401000);
    CHECK_STR_EQ(str_at(&gm, ml[0].string), "env");
    CHECK_EQ(ml[1].mod_start, 0x401000);
    CHECK_EQ(ml[1].mod_end, 0x403000);
    CHECK_STR_EQ(str_at(&gm, ml[1].string), "");
    /* everything within the area */
    uint32_t addrs[] = {mbi.cmdline, mbi.boot_loader_name, mbi.mmap_addr, mbi.mods_addr, ml[0].string, ml[1].string};
    for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++)
        CHECK(addrs[i] >= 0x6000 && addrs[i] < 0x6000 + MULTIBOOT_INFO_SIZE);
    CHECK(all(0x400000, 0x1000, 'e')); /* modules untouched */
    CHECK(all(0x6000 + MULTIBOOT_INFO_SIZE, 0x1000, 0));
    /* no modules: the count says so */
    CHECK_EQ(multiboot_write_info(&gm, 0x6000, "", NULL, 0, err, sizeof err), 0);
    read_info(&gm, 0x6000, &mbi);
    CHECK_EQ(mbi.mods_count, 0);
    CHECK(mbi.flags & MULTIBOOT_INFO_MODS);
}

TEST(the_memory_map_has_ram_above_4_gib_when_there_is_some) {
    uint64_t size = GM_LOW_END + (16u << 20);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) test_skip("no %llu bytes of address space", (unsigned long long)size);
    const struct guest_mem big = {p, size, NULL, NULL};
    char err[160];
    CHECK_MSG(multiboot_write_info(&big, 0x6000, "k", NULL, 0, err, sizeof err) == 0, "%s", err);
    struct multiboot_info mbi;
    read_info(&big, 0x6000, &mbi);
    check_map(&big, &mbi);
    CHECK_EQ(mbi.mmap_length, 4 * sizeof(struct multiboot_mmap_entry));
    CHECK_EQ(mbi.mem_upper, (GM_LOW_END - 0x100000) / 1024);
    /* a module above 4 GiB cannot be named in 32 bits */
    const struct multiboot_module high = {GM_HIGH_START, 0x1000, "high"};
    CHECK_EQ(multiboot_write_info(&big, 0x6000, "k", &high, 1, err, sizeof err), -1);
    CHECK_MSG(strstr(err, "module 0 at 0x100000000+0x1000 is not in RAM below 4 GiB"), "%s", err);
    CHECK_EQ(multiboot_write_info(&big, GM_HIGH_START, "k", NULL, 0, err, sizeof err), -1);
    munmap(p, size);
}

TEST(bad_information_requests_are_refused_and_write_nothing) {
    memset(ram, 0, RAM);
    char err[160];
    struct multiboot_module mods[MULTIBOOT_MAX_MODULES + 1];
    for (unsigned i = 0; i <= MULTIBOOT_MAX_MODULES; i++) mods[i] = (struct multiboot_module){0x400000, 0x10, "m"};
    struct {
        uint64_t at;
        const char *cmdline;
        unsigned nmods;
        const char *why;
    } bad[] = {
        {0x6000, "", MULTIBOOT_MAX_MODULES + 1, "17 modules: at most 16"},
        {0x6004, "", 0, "information block at 0x6004"},
        {RAM - 0x1000, "", 0, "not in RAM"},
        {UINT64_MAX - 7, "", 0, "not in RAM"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ(multiboot_write_info(&gm, bad[i].at, bad[i].cmdline, mods, bad[i].nmods, err, sizeof err), -1);
        CHECK_MSG(strncmp(err, "multiboot: ", 11) == 0 && strstr(err, bad[i].why), "%s", err);
    }
    static char longline[MULTIBOOT_INFO_SIZE];
    memset(longline, 'a', sizeof longline - 1);
    CHECK_EQ(multiboot_write_info(&gm, 0x6000, longline, NULL, 0, err, sizeof err), -1);
    CHECK_MSG(strstr(err, "command line (8191 bytes) does not fit"), "%s", err);
    mods[1] = (struct multiboot_module){0x400000, 0x1000, longline};
    CHECK_EQ(multiboot_write_info(&gm, 0x6000, "", mods, 2, err, sizeof err), -1);
    CHECK_MSG(strstr(err, "module 1's string does not fit"), "%s", err);
    const struct multiboot_module outside[] = {{RAM - 0x800, 0x1000, ""}, {0xfffff000, 0x1000, ""},
                                               {0x400000, UINT64_MAX, ""}};
    for (size_t i = 0; i < 3; i++) {
        CHECK_EQ(multiboot_write_info(&gm, 0x6000, "", &outside[i], 1, err, sizeof err), -1);
        CHECK_MSG(strstr(err, "not in RAM below 4 GiB"), "%s", err);
    }
    CHECK(all(0, RAM, 0));
    const struct guest_mem tiny = {ram, 0x100000, NULL, NULL};
    CHECK_EQ(multiboot_write_info(&tiny, 0x6000, "", NULL, 0, err, sizeof err), -1);
    CHECK_MSG(strstr(err, "needs more than 1 MiB"), "%s", err);
}
