/* The Uffd backend's message (vmm/machine/uffd_backend.h): the region table bellhop writes,
 * over random region layouts, parsed back by the tests' handler (tests/lib/uffd_handler.h,
 * written from Firecracker's protocol text) and by jansson, and checked field by field; and
 * the handler's parser on arbitrary bytes, whose every accepted table must hold its rules.
 *   input: a first byte whose low bit chooses; then a layout (a count and, per region, four
 *   values) or the bytes to parse. */
#include <jansson.h>

#include "tests/fuzz/fuzz.h"
#include "tests/lib/uffd_handler.h"
#include "vmm/machine/uffd_backend.h"

/* A value from the input, mostly page-aligned and small, sometimes anything in u64. */
static uint64_t value(struct cursor *c) {
    uint8_t kind = (uint8_t)take(c, 1);
    switch (kind % 4) {
    case 0: return (uint64_t)(kind >> 2) << 12;
    case 1: return take(c, 2) << 12;
    case 2: return take(c, 8) & ~0xfffull;
    default: return take(c, 8);
    }
}

/* What the handler accepts: every region page-aligned, non-empty, not wrapping, apart. */
static bool valid(const struct uffd_region *r, unsigned n) {
    for (unsigned i = 0; i < n; i++) {
        uint64_t ps = r[i].page_size;
        if (ps < 4096 || ps > (1ull << 30) || (ps & (ps - 1)) || r[i].size == 0 ||
            ((r[i].host | r[i].size | r[i].offset) & (ps - 1)) || r[i].host + r[i].size < r[i].host ||
            r[i].offset + r[i].size < r[i].offset)
            return false;
        for (unsigned j = 0; j < i; j++)
            if (r[j].host < r[i].host + r[i].size && r[i].host < r[j].host + r[j].size) return false;
    }
    return n > 0;
}

/* jansson's reading of the same text: the same regions, under exactly Firecracker's names
 * (its integers are signed: checked where every value fits). */
static void check_with_jansson(const char *text, const struct uffd_region *r, unsigned n) {
    for (unsigned i = 0; i < n; i++)
        if ((r[i].host | r[i].size | r[i].offset | r[i].page_size) > INT64_MAX) return;
    json_error_t je;
    json_t *doc = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!doc || !json_is_array(doc) || json_array_size(doc) != n) abort();
    for (unsigned i = 0; i < n; i++) {
        json_int_t v[5];
        if (json_unpack_ex(json_array_get(doc, i), &je, JSON_STRICT, "{s:I, s:I, s:I, s:I, s:I}", "base_host_virt_addr",
                           &v[0], "size", &v[1], "offset", &v[2], "page_size", &v[3], "page_size_kib", &v[4]) ||
            (uint64_t)v[0] != r[i].host || (uint64_t)v[1] != r[i].size || (uint64_t)v[2] != r[i].offset ||
            (uint64_t)v[3] != r[i].page_size || (uint64_t)v[4] != r[i].page_size)
            abort();
    }
    json_decref(doc);
}

static void layout(struct cursor *c) {
    struct uffd_region r[8];
    unsigned n = (unsigned)take(c, 1) % 9;
    for (unsigned i = 0; i < n; i++) {
        r[i] = (struct uffd_region){.host = value(c), .size = value(c), .offset = value(c)};
        uint8_t shift = (uint8_t)take(c, 1);
        r[i].page_size = shift < 200 ? 4096 : 1ull << (shift % 64);
    }
    char text[2048];
    int len = uffd_region_table(r, n, text, sizeof text);
    if (len < 0 || (size_t)len != strlen(text)) abort(); /* 8 regions always fit */
    check_with_jansson(text, r, n);
    struct uffd_handler_region got[UFFD_HANDLER_MAX_REGIONS];
    unsigned m;
    char err[200];
    int rc = uffd_handler_parse(text, (size_t)len, got, UFFD_HANDLER_MAX_REGIONS, &m, err, sizeof err);
    if ((rc == 0) != valid(r, n)) abort();
    for (unsigned i = 0; rc == 0 && i < n; i++)
        if (m != n || got[i].base != r[i].host || got[i].size != r[i].size || got[i].offset != r[i].offset ||
            got[i].page_size != r[i].page_size)
            abort();
    /* a buffer one byte short is refused, never overrun */
    char *tight = malloc((size_t)len);
    if (!tight || uffd_region_table(r, n, tight, (size_t)len) != -1) abort();
    free(tight);
}

static void raw(const uint8_t *data, size_t size) {
    struct uffd_handler_region got[4];
    unsigned n;
    char err[200];
    if (uffd_handler_parse((const char *)data, size, got, 4, &n, err, sizeof err) != 0) return;
    struct uffd_region r[4];
    for (unsigned i = 0; i < n; i++)
        r[i] = (struct uffd_region){got[i].base, got[i].size, got[i].offset, got[i].page_size};
    if (n < 1 || n > 4 || !valid(r, n)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (data[0] & 1) {
        struct cursor c = {data + 1, size - 1};
        layout(&c);
    } else {
        raw(data + 1, size - 1);
    }
    return 0;
}
