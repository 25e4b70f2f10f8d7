/* A guest's function symbols, to name the addresses a profile samples: from the kernel's own
 * ELF symbol table, or from a System.map or /proc/kallsyms listing. Both are hostile input:
 * every offset, size and name is checked against the file. */
#ifndef BELLHOP_VMM_OBSERVE_SYMBOLS_H
#define BELLHOP_VMM_OBSERVE_SYMBOLS_H

#include <stddef.h>
#include <stdint.h>

#define SYMBOLS_MAX 1000000u

struct symbol {
    uint64_t addr, size; /* size 0: up to the next symbol */
    const char *name;
};

struct symbols {
    struct symbol *v; /* by address */
    size_t n;
    char *names;
};

/* The STT_FUNC symbols of an ELF64 image's .symtab. Returns 0 with none when the image is not
 * an ELF file or has no symbol table; -1 (err set) when it is malformed or memory runs out. */
int symbols_from_elf(struct symbols *s, const uint8_t *image, size_t len, char *err, size_t errlen);
/* The text symbols (types t, T, w, W) of lines "ADDRESS TYPE NAME [MODULE]". Returns -1 (err
 * set) when none is found or memory runs out. */
int symbols_from_map(struct symbols *s, const char *text, size_t len, char *err, size_t errlen);
/* The symbol holding addr, or NULL; *off gets addr's offset in it. */
const struct symbol *symbols_find(const struct symbols *s, uint64_t addr, uint64_t *off);
void symbols_free(struct symbols *s);

#endif
