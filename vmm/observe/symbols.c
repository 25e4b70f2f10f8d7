#include <elf.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/observe/symbols.h"

#define FAIL(...) (snprintf(err, errlen, __VA_ARGS__), -1)

/* A size-0 symbol (a listing has no sizes) reaches the next one; the last, this far. */
#define LAST_SYMBOL_REACH (1u << 20)

static bool in_file(size_t len, uint64_t off, uint64_t size) { return off <= len && size <= len - off; }

/* Names reach the terminal (the profile's summary): no control bytes from a hostile file. */
static void copy_name(char *dst, const char *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    dst[n] = 0;
}

static int by_addr(const void *a, const void *b) {
    const struct symbol *x = a, *y = b;
    return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static int finish(struct symbols *s) {
    qsort(s->v, s->n, sizeof *s->v, by_addr);
    return 0;
}

int symbols_from_elf(struct symbols *s, const uint8_t *image, size_t len, char *err, size_t errlen) {
    *s = (struct symbols){0};
    if (len < sizeof(Elf64_Ehdr) || memcmp(image, ELFMAG, SELFMAG) != 0 || image[EI_CLASS] != ELFCLASS64 ||
        image[EI_DATA] != ELFDATA2LSB)
        return 0;
    Elf64_Ehdr eh;
    memcpy(&eh, image, sizeof eh);
    if (eh.e_shnum == 0) return 0; /* stripped of its section headers */
    if (eh.e_shentsize != sizeof(Elf64_Shdr) || !in_file(len, eh.e_shoff, (uint64_t)eh.e_shnum * sizeof(Elf64_Shdr)))
        return FAIL("bad ELF section headers");
    Elf64_Shdr sym, str;
    unsigned i;
    for (i = 0; i < eh.e_shnum; i++) {
        memcpy(&sym, image + eh.e_shoff + (uint64_t)i * sizeof sym, sizeof sym);
        if (sym.sh_type == SHT_SYMTAB) break;
    }
    if (i == eh.e_shnum) return 0;
    if (sym.sh_link >= eh.e_shnum) return FAIL("bad ELF symbol table: its string table is section %u", sym.sh_link);
    memcpy(&str, image + eh.e_shoff + (uint64_t)sym.sh_link * sizeof str, sizeof str);
    if ((sym.sh_entsize != sizeof(Elf64_Sym) && sym.sh_entsize != 0) || !in_file(len, sym.sh_offset, sym.sh_size) ||
        str.sh_type != SHT_STRTAB || !in_file(len, str.sh_offset, str.sh_size))
        return FAIL("bad ELF symbol table");
    const char *strtab = (const char *)image + str.sh_offset;
    uint64_t count = sym.sh_size / sizeof(Elf64_Sym), names = 0, nfunc = 0;
    for (uint64_t k = 0; k < count; k++) {
        Elf64_Sym e;
        memcpy(&e, image + sym.sh_offset + k * sizeof e, sizeof e);
        if (ELF64_ST_TYPE(e.st_info) != STT_FUNC || e.st_shndx == SHN_UNDEF || e.st_name >= str.sh_size) continue;
        const char *end = memchr(strtab + e.st_name, 0, str.sh_size - e.st_name);
        if (!end) continue;
        names += (uint64_t)(end - strtab - e.st_name) + 1;
        nfunc++;
    }
    if (nfunc == 0) return 0;
    if (nfunc > SYMBOLS_MAX) nfunc = SYMBOLS_MAX;
    s->v = malloc(nfunc * sizeof *s->v);
    s->names = malloc(names);
    if (!s->v || !s->names) {
        symbols_free(s);
        return FAIL("out of memory for %llu symbols", (unsigned long long)nfunc);
    }
    char *at = s->names;
    for (uint64_t k = 0; k < count && s->n < nfunc; k++) {
        Elf64_Sym e;
        memcpy(&e, image + sym.sh_offset + k * sizeof e, sizeof e);
        if (ELF64_ST_TYPE(e.st_info) != STT_FUNC || e.st_shndx == SHN_UNDEF || e.st_name >= str.sh_size) continue;
        const char *end = memchr(strtab + e.st_name, 0, str.sh_size - e.st_name);
        if (!end) continue;
        size_t n = (size_t)(end - strtab - e.st_name);
        copy_name(at, strtab + e.st_name, n);
        s->v[s->n++] = (struct symbol){.addr = e.st_value, .size = e.st_size, .name = at};
        at += n + 1;
    }
    return finish(s);
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int symbols_from_map(struct symbols *s, const char *text, size_t len, char *err, size_t errlen) {
    *s = (struct symbols){0};
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    lines++;
    if (lines > SYMBOLS_MAX) lines = SYMBOLS_MAX;
    s->v = malloc(lines * sizeof *s->v);
    s->names = malloc(len + 1); /* every name is shorter than its line */
    if (!s->v || !s->names) {
        symbols_free(s);
        return FAIL("out of memory for a %zu-byte symbol listing", len);
    }
    char *at = s->names;
    for (size_t i = 0; i < len && s->n < lines;) {
        size_t eol = i;
        while (eol < len && text[eol] != '\n') eol++;
        /* ADDRESS TYPE NAME: up to 16 hex digits, one type letter, a name up to a blank */
        size_t p = i;
        uint64_t addr = 0;
        int d;
        while (p < eol && p - i < 16 && (d = hex_digit(text[p])) >= 0) addr = addr << 4 | (unsigned)d, p++;
        bool ok = p > i && p + 3 < eol && text[p] == ' ' && text[p + 2] == ' ' && strchr("tTwW", text[p + 1]) &&
                  text[p + 1] != 0;
        if (ok) {
            size_t name = p + 3, end = name;
            while (end < eol && text[end] != ' ' && text[end] != '\t' && text[end] != '\r' && text[end] != 0) end++;
            if (end > name) {
                copy_name(at, text + name, end - name);
                s->v[s->n++] = (struct symbol){.addr = addr, .name = at};
                at += end - name + 1;
            }
        }
        i = eol + 1;
    }
    if (s->n == 0) {
        symbols_free(s);
        return FAIL("no text symbols (lines of ADDRESS TYPE NAME, as in System.map or /proc/kallsyms)");
    }
    return finish(s);
}

const struct symbol *symbols_find(const struct symbols *s, uint64_t addr, uint64_t *off) {
    size_t lo = 0, hi = s->n;
    while (lo < hi) { /* the first symbol above addr */
        size_t mid = lo + (hi - lo) / 2;
        if (s->v[mid].addr <= addr) lo = mid + 1;
        else hi = mid;
    }
    if (lo == 0) return NULL;
    const struct symbol *sym = &s->v[lo - 1];
    uint64_t reach = sym->size ? sym->size : lo < s->n ? s->v[lo].addr - sym->addr : LAST_SYMBOL_REACH;
    if (addr - sym->addr >= reach) return NULL;
    *off = addr - sym->addr;
    return sym;
}

void symbols_free(struct symbols *s) {
    free(s->v);
    free(s->names);
    *s = (struct symbols){0};
}
