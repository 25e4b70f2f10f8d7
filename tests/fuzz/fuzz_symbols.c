/* Symbol tables are user input (--profile with a kernel ELF, --profile-symbols with a
 * listing): both parsers on any bytes. Whatever they accept must be sorted, named within
 * their own arena, and found again by address. */
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "vmm/observe/symbols.h"

static void check(const struct symbols *s) {
    for (size_t i = 0; i < s->n; i++) {
        if (i && s->v[i].addr < s->v[i - 1].addr) abort();
        (void)strlen(s->v[i].name); /* NUL-terminated within its allocation (ASan) */
        uint64_t off;
        const struct symbol *f = symbols_find(s, s->v[i].addr, &off);
        if (!f || f->addr != s->v[i].addr || off != 0) abort();
    }
    uint64_t off;
    if (s->n && symbols_find(s, s->v[0].addr - 1, &off) && s->v[0].addr != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[200];
    struct symbols s;
    if (symbols_from_elf(&s, data, size, err, sizeof err) == 0) check(&s);
    symbols_free(&s);
    if (symbols_from_map(&s, (const char *)data, size, err, sizeof err) == 0) check(&s);
    symbols_free(&s);
    return 0;
}
