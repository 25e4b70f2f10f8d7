/* The profile's symbol tables without a guest: a kallsyms listing with the shapes Linux
 * writes (module suffixes, data symbols to skip), a System.map's CRLF, and an ELF's table. */
#include <elf.h>
#include <string.h>

#include "tests/lib/check.h"
#include "vmm/observe/symbols.h"

static const char *name_at(const struct symbols *s, uint64_t addr, uint64_t *off) {
    const struct symbol *sym = symbols_find(s, addr, off);
    return sym ? sym->name : NULL;
}

TEST(a_kallsyms_listing_names_text_only) {
    static const char text[] = "ffffffff81000000 T _text\n"
                               "ffffffff81001000 t early_func\n"
                               "ffffffff82000000 D some_data\n"
                               "not a line at all\n"
                               "ffffffffc0002000 t virtqueue_add\t[virtio_ring]\n"
                               "ffffffff81002000 W weak_one\r\n"
                               "ffffffff81003000 t esc\x1b[2Jape\n"
                               "ffffffffffffffff1 T too_long\n";
    struct symbols s;
    char err[160];
    CHECK_EQ(symbols_from_map(&s, text, sizeof text - 1, err, sizeof err), 0);
    CHECK_EQ(s.n, 5u);
    uint64_t off = 0;
    CHECK(strcmp(name_at(&s, 0xffffffff81000010, &off), "_text") == 0 && off == 0x10);
    CHECK(strcmp(name_at(&s, 0xffffffff81001fff, &off), "early_func") == 0 && off == 0xfff);
    CHECK(strcmp(name_at(&s, 0xffffffff81002000, &off), "weak_one") == 0 && off == 0);
    CHECK(strcmp(name_at(&s, 0xffffffffc0002040, &off), "virtqueue_add") == 0 && off == 0x40);
    CHECK(strcmp(name_at(&s, 0xffffffff81003000, &off), "esc?[2Jape") == 0); /* no escapes to the terminal */
    /* below the first symbol, and far past the last (which has no size) */
    CHECK(name_at(&s, 0x400000, &off) == NULL);
    CHECK(name_at(&s, 0xffffffffc0002000 + (2u << 20), &off) == NULL);
    symbols_free(&s);
    CHECK_EQ(symbols_from_map(&s, "hello\nworld\n", 12, err, sizeof err), -1);
    CHECK(strstr(err, "no text symbols") != NULL);
    CHECK_EQ(symbols_from_map(&s, "", 0, err, sizeof err), -1);
}

TEST(an_elf_symbol_table_keeps_functions_and_their_sizes) {
    /* header, a symtab, a strtab, a null section: the least an ELF table needs */
    static uint8_t img[1024];
    const char strtab[] = "\0f_one\0data\0f_two";
    Elf64_Sym syms[] = {
        {0},
        {.st_name = 1, .st_info = ELF64_ST_INFO(STB_GLOBAL, STT_FUNC), .st_shndx = 1, .st_value = 0x1000, .st_size = 0x10},
        {.st_name = 7, .st_info = ELF64_ST_INFO(STB_GLOBAL, STT_OBJECT), .st_shndx = 1, .st_value = 0x1010},
        {.st_name = 12, .st_info = ELF64_ST_INFO(STB_LOCAL, STT_FUNC), .st_shndx = 1, .st_value = 0x800, .st_size = 8},
        {.st_name = 999, .st_info = ELF64_ST_INFO(STB_GLOBAL, STT_FUNC), .st_shndx = 1, .st_value = 0x2000},
    };
    Elf64_Ehdr eh = {.e_ident = {ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS64, ELFDATA2LSB, EV_CURRENT},
                     .e_type = ET_EXEC, .e_machine = EM_X86_64, .e_shoff = 512, .e_shentsize = sizeof(Elf64_Shdr),
                     .e_shnum = 3};
    Elf64_Shdr sh[3] = {{0},
                        {.sh_type = SHT_SYMTAB, .sh_offset = 64, .sh_size = sizeof syms, .sh_link = 2,
                         .sh_entsize = sizeof(Elf64_Sym)},
                        {.sh_type = SHT_STRTAB, .sh_offset = 400, .sh_size = sizeof strtab}};
    memcpy(img, &eh, sizeof eh);
    memcpy(img + 64, syms, sizeof syms);
    memcpy(img + 400, strtab, sizeof strtab);
    memcpy(img + 512, sh, sizeof sh);
    struct symbols s;
    char err[160];
    CHECK_EQ(symbols_from_elf(&s, img, sizeof img, err, sizeof err), 0);
    CHECK_EQ(s.n, 2u); /* the data symbol and the one named outside the strtab are left out */
    uint64_t off;
    CHECK(strcmp(name_at(&s, 0x1008, &off), "f_one") == 0 && off == 8);
    CHECK(name_at(&s, 0x1010, &off) == NULL); /* past f_one's size */
    CHECK(strcmp(name_at(&s, 0x800, &off), "f_two") == 0);
    symbols_free(&s);
    /* the strtab link out of range, then the table running past the file */
    ((Elf64_Shdr *)(img + 512))[1].sh_link = 7;
    CHECK_EQ(symbols_from_elf(&s, img, sizeof img, err, sizeof err), -1);
    ((Elf64_Shdr *)(img + 512))[1].sh_link = 2;
    ((Elf64_Shdr *)(img + 512))[1].sh_size = 4096;
    CHECK_EQ(symbols_from_elf(&s, img, sizeof img, err, sizeof err), -1);
    /* not an ELF file: no symbols, no error */
    CHECK_EQ(symbols_from_elf(&s, (const uint8_t *)"MZ", 2, err, sizeof err), 0);
    CHECK_EQ(s.n, 0u);
}

