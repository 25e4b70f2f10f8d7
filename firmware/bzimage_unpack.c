/* A bzImage's kernel unpacked in place. The payload is hostile input: its place is checked
 * against the file, its declared size (its last 4 bytes, as the kernel's decompressor reads
 * it) bounds every decoder's output, and the ELF inside is checked against that size and
 * guest memory before anything is written. */
#include <elf.h>
#include <lz4.h>
#include <lzma.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#include <zstd.h>
#include <zircon/syscalls.h>

#include "firmware/bzimage_unpack.h"

#define FAIL(...) (snprintf(err, errlen, __VA_ARGS__), BZIMAGE_UNPACK_BAD)

#define OFF_SETUP_SECTS 0x1f1
#define OFF_PAYLOAD_OFFSET 0x248
#define OFF_PAYLOAD_LENGTH 0x24c
#define LZ4_LEGACY_MAGIC 0x184c2102u
#define LZ4_LEGACY_BLOCK (8u << 20) /* what `lz4 -l` writes: each block unpacks to at most this */
#define XZ_MEMLIMIT (256u << 20)    /* the kernel's xz dictionary is at most 64 MiB */
#define ZSTD_WINDOW_LOG_MAX 27      /* the kernel's `zstd --ultra -22` window, 128 MiB */
#define HEAD 4096                   /* unpacked first to read the ELF and program headers */
#define MAX_SEGMENTS BZIMAGE_MAX_SEGMENTS
#define START_KERNEL_MAP 0xffffffff80000000ull /* x86-64's kernel image mapping */
#define KERNEL_IMAGE_SIZE (1ull << 30)         /* its size when the kernel is randomizable */
#define KASLR_ALIGN BZIMAGE_KASLR_ALIGN /* CONFIG_PHYSICAL_ALIGN, the kernel's own slot size */

static uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Each format unpacks the first n bytes into a buffer (returning how many it got, fewer only
 * when the stream is shorter or corrupt), and the whole stream into exactly `size` bytes. */
struct format {
    const char *name;
    uint8_t magic[6];
    size_t magic_len;
    bool size_in_stream; /* gzip's trailer is the size; the others have it appended */
    size_t (*head)(const uint8_t *in, size_t inlen, uint8_t *out, size_t n);
    bool (*all)(const uint8_t *in, size_t inlen, uint8_t *out, size_t size);
};

/* The next block of `lz4 -l`'s legacy frame (a magic, then blocks of [le32 size][LZ4 block],
 * each unpacking on its own to at most 8 MiB, the magic possibly repeated between them) at
 * *pos: 1 with its compressed size in *bn and *pos at its data, 0 at the stream's end, -1 when
 * the frame is malformed. */
static int lz4_block(const uint8_t *in, size_t inlen, size_t *pos, uint32_t *bn) {
    do {
        if (*pos == inlen) return 0;
        if (inlen - *pos < 4) return -1;
        *bn = rd32(in + *pos);
        *pos += 4;
    } while (*bn == LZ4_LEGACY_MAGIC);
    return *bn != 0 && *bn <= inlen - *pos && *bn <= (uint32_t)LZ4_compressBound(LZ4_LEGACY_BLOCK) ? 1 : -1;
}

static size_t lz4_head(const uint8_t *in, size_t inlen, uint8_t *out, size_t n) {
    size_t pos = 4;
    uint32_t bn;
    if (lz4_block(in, inlen, &pos, &bn) != 1) return 0;
    int got = LZ4_decompress_safe_partial((const char *)in + pos, (char *)out, (int)bn, (int)n, (int)n);
    return got > 0 ? (size_t)got : 0;
}

static bool lz4_all(const uint8_t *in, size_t inlen, uint8_t *out, size_t size) {
    size_t pos = 4, done = 0;
    uint32_t bn;
    int r;
    while ((r = lz4_block(in, inlen, &pos, &bn)) == 1) {
        size_t room = size - done < LZ4_LEGACY_BLOCK ? size - done : LZ4_LEGACY_BLOCK;
        int got = room ? LZ4_decompress_safe((const char *)in + pos, (char *)out + done, (int)bn, (int)room) : -1;
        if (got <= 0) return false;
        done += (size_t)got;
        pos += bn;
    }
    return r == 0 && done == size;
}

static size_t xz_run(const uint8_t *in, size_t inlen, uint8_t *out, size_t n, bool whole) {
    lzma_stream s = LZMA_STREAM_INIT;
    if (lzma_stream_decoder(&s, XZ_MEMLIMIT, 0) != LZMA_OK) return 0;
    s.next_in = in, s.avail_in = inlen, s.next_out = out, s.avail_out = n;
    lzma_ret r = lzma_code(&s, LZMA_FINISH);
    size_t got = (size_t)s.total_out;
    lzma_end(&s);
    if (whole) return r == LZMA_STREAM_END ? got : 0;
    return r == LZMA_OK || r == LZMA_STREAM_END || r == LZMA_BUF_ERROR ? got : 0;
}

static size_t xz_head(const uint8_t *in, size_t inlen, uint8_t *out, size_t n) {
    return xz_run(in, inlen, out, n, false);
}

static bool xz_all(const uint8_t *in, size_t inlen, uint8_t *out, size_t size) {
    return xz_run(in, inlen, out, size, true) == size;
}

static size_t zstd_head(const uint8_t *in, size_t inlen, uint8_t *out, size_t n) {
    ZSTD_DCtx *d = ZSTD_createDCtx();
    if (!d) return 0;
    ZSTD_inBuffer ib = {in, inlen, 0};
    ZSTD_outBuffer ob = {out, n, 0};
    size_t r = 0;
    if (!ZSTD_isError(ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, ZSTD_WINDOW_LOG_MAX)))
        while (ob.pos < n && ib.pos < inlen && !ZSTD_isError(r = ZSTD_decompressStream(d, &ob, &ib)) && r != 0) {
        }
    ZSTD_freeDCtx(d);
    return ZSTD_isError(r) ? 0 : ob.pos;
}

static bool zstd_all(const uint8_t *in, size_t inlen, uint8_t *out, size_t size) {
    size_t got = ZSTD_decompress(out, size, in, inlen);
    return !ZSTD_isError(got) && got == size;
}

static size_t gzip_run(const uint8_t *in, size_t inlen, uint8_t *out, size_t n, bool whole) {
    if (inlen > UINT32_MAX || n > UINT32_MAX) return 0;
    z_stream z = {0};
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return 0; /* 16: gzip framing */
    z.next_in = (Bytef *)(uintptr_t)in, z.avail_in = (uInt)inlen, z.next_out = out, z.avail_out = (uInt)n;
    int r = inflate(&z, whole ? Z_FINISH : Z_NO_FLUSH);
    size_t got = z.total_out;
    inflateEnd(&z);
    if (whole) return r == Z_STREAM_END ? got : 0;
    return r == Z_OK || r == Z_STREAM_END || r == Z_BUF_ERROR ? got : 0;
}

static size_t gzip_head(const uint8_t *in, size_t inlen, uint8_t *out, size_t n) {
    return gzip_run(in, inlen, out, n, false);
}

static bool gzip_all(const uint8_t *in, size_t inlen, uint8_t *out, size_t size) {
    return gzip_run(in, inlen, out, size, true) == size;
}

static const struct format formats[] = {
    {"gzip", {0x1f, 0x8b}, 2, true, gzip_head, gzip_all},
    {"xz", {0xfd, '7', 'z', 'X', 'Z', 0}, 6, false, xz_head, xz_all},
    {"lz4", {0x02, 0x21, 0x4c, 0x18}, 4, false, lz4_head, lz4_all},
    {"zstd", {0x28, 0xb5, 0x2f, 0xfd}, 4, false, zstd_head, zstd_all},
};

/* The ELF's loadable segments, from its first `n` unpacked bytes, into seg[] (file order).
 * Returns how many, 0 when they are not the sorted, disjoint layout a kernel has (the guest's
 * decompressor gets the image then), or -1 with a reason when the ELF is broken. */
static int read_segments(const uint8_t *head, size_t n, uint64_t size, uint64_t *entry, uint64_t *elf_end,
                         struct bzimage_segment *seg, char *err, size_t errlen) {
    Elf64_Ehdr eh;
    if (n < sizeof eh || memcmp(head, ELFMAG, SELFMAG) != 0 || head[EI_CLASS] != ELFCLASS64 ||
        head[EI_DATA] != ELFDATA2LSB)
        return FAIL("its unpacked kernel is not a 64-bit ELF file");
    memcpy(&eh, head, sizeof eh);
    if (eh.e_machine != EM_X86_64) return FAIL("its unpacked kernel is not an x86-64 ELF file");
    if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phoff > n ||
        (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > n - eh.e_phoff)
        return 0;
    int nseg = 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, head + eh.e_phoff + i * sizeof ph, sizeof ph);
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
        if (ph.p_filesz > ph.p_memsz || ph.p_offset > size || ph.p_filesz > size - ph.p_offset)
            return FAIL("its unpacked kernel's ELF segment %u lies outside it", i);
        if (nseg == MAX_SEGMENTS || ph.p_paddr + ph.p_memsz < ph.p_paddr) return 0;
        struct bzimage_segment s = {ph.p_offset, ph.p_filesz, ph.p_paddr, ph.p_memsz, ph.p_vaddr};
        if (nseg > 0) {
            const struct bzimage_segment *prev = &seg[nseg - 1];
            if (s.off < prev->off + prev->filesz || s.paddr < prev->paddr + prev->memsz) return 0;
        }
        seg[nseg++] = s;
    }
    if (nseg == 0) return FAIL("its unpacked kernel has nothing to load");
    *entry = eh.e_entry;
    /* Its relocation tables, when it has them, follow the whole ELF file. */
    *elf_end = seg[nseg - 1].off + seg[nseg - 1].filesz;
    uint64_t shend = eh.e_shoff + (uint64_t)eh.e_shnum * eh.e_shentsize;
    if (shend >= eh.e_shoff && shend > *elf_end) *elf_end = shend;
    return nseg;
}

/* Where the kernel's byte at guest-physical `pa` (width bytes) lies in the window: while
 * the image is still unpacked in place, in a segment's file data; once placed, at its own
 * place. NULL when it is not in a segment's file data. */
static uint8_t *place_of(const struct bzimage_plan *p, uint8_t *window, bool placed, uint64_t pa, unsigned width) {
    for (int i = 0; i < p->nseg; i++) {
        const struct bzimage_segment *s = &p->seg[i];
        if (pa >= s->paddr && pa - s->paddr <= s->filesz && width <= s->filesz - (pa - s->paddr))
            return window + (placed ? pa - p->base : s->off + (pa - s->paddr));
    }
    return NULL;
}

/* KASLR as the kernel's decompressor does it (arch/x86/boot/compressed/misc.c): the kernel
 * moves `delta` up in its virtual mapping, and every place its relocation tables name is
 * adjusted. The tables (n bytes) are read backwards: 32-bit entries, each the sign-extended
 * virtual address of a place to adjust, in three zero-terminated lists (32-bit places,
 * inverse 32-bit places, 64-bit places). Returns 0, or -1 when an entry names a place outside
 * the kernel or a list has no end. */
static int relocate(const struct bzimage_plan *p, uint8_t *window, bool placed, const uint8_t *tables, uint64_t n,
                    uint64_t delta) {
    uint64_t at = n; /* offset of the entry after the next */
    for (unsigned list = 0; list < 3; list++) {
        for (;;) {
            if (at < 4) return -1;
            at -= 4;
            int32_t e = (int32_t)rd32(tables + at);
            if (e == 0) break;
            /* a virtual address in the kernel mapping, whose physical place is the linked one */
            uint64_t pa = (uint64_t)(int64_t)e - START_KERNEL_MAP;
            uint8_t *q = place_of(p, window, placed, pa, list == 2 ? 8 : 4);
            if (!q) return -1;
            if (list == 2) {
                uint64_t v;
                memcpy(&v, q, 8);
                v += delta;
                memcpy(q, &v, 8);
            } else {
                uint32_t v = rd32(q);
                v = list == 0 ? v + (uint32_t)delta : v - (uint32_t)delta;
                memcpy(q, &v, 4);
            }
        }
    }
    return 0;
}

int bzimage_relocate_placed(const struct bzimage_plan *p, uint8_t *window, const uint8_t *tables, uint64_t delta) {
    return p->relocatable ? relocate(p, window, true, tables, p->tables_len, delta) : -1;
}

static void move_segment(const struct bzimage_plan *p, uint8_t *window, const struct bzimage_segment *s) {
    memmove(window + (s->paddr - p->base), window + s->off, s->filesz);
}

int bzimage_plan(const uint8_t *image, size_t len, const struct guest_mem *gm, uint64_t min_paddr, uint64_t align,
                 struct bzimage_plan *pl, char *err, size_t errlen) {
    *pl = (struct bzimage_plan){0};
    if (len < OFF_PAYLOAD_LENGTH + 4) return BZIMAGE_UNPACK_GUEST;
    unsigned setup_sects = image[OFF_SETUP_SECTS] ? image[OFF_SETUP_SECTS] : 4;
    uint64_t start = (setup_sects + 1ull) * 512 + rd32(image + OFF_PAYLOAD_OFFSET);
    uint64_t plen = rd32(image + OFF_PAYLOAD_LENGTH);
    if (start > len || plen > len - start) return FAIL("its compressed kernel lies outside the file (truncated?)");
    const uint8_t *p = image + start;
    const struct format *f = NULL;
    for (size_t i = 0; i < sizeof formats / sizeof formats[0] && !f; i++)
        if (plen >= formats[i].magic_len + 4 && memcmp(p, formats[i].magic, formats[i].magic_len) == 0)
            f = &formats[i];
    if (!f) return BZIMAGE_UNPACK_GUEST;
    uint64_t size = rd32(p + plen - 4);
    size_t inlen = f->size_in_stream ? plen : plen - 4;

    uint8_t head[HEAD];
    size_t n = f->head(p, inlen, head, size < HEAD ? size : HEAD);
    if (n == 0) return FAIL("its %s-compressed kernel is corrupt", f->name);
    uint64_t entry, elf_end;
    struct bzimage_segment seg[MAX_SEGMENTS];
    int nseg = read_segments(head, n, size, &entry, &elf_end, seg, err, errlen);
    if (nseg <= 0) return nseg < 0 ? BZIMAGE_UNPACK_BAD : BZIMAGE_UNPACK_GUEST;

    /* The image is unpacked where its first segment lands in place; the kernel proper starts
     * there (its decompressor jumps to the first segment, aligned as the header says). */
    if (seg[0].paddr < seg[0].off || entry != seg[0].paddr || !align || seg[0].paddr % align)
        return BZIMAGE_UNPACK_GUEST;
    uint64_t base = seg[0].paddr - seg[0].off;
    const struct bzimage_segment *last = &seg[nseg - 1];
    uint64_t end = last->paddr + last->memsz, span = end - base > size ? end - base : size;
    if (base < min_paddr || !gm_valid(gm, base, span)) return BZIMAGE_UNPACK_GUEST;
    /* Randomizable when the kernel has relocation tables after its ELF (CONFIG_RANDOMIZE_BASE)
     * and its image is at the usual place in the kernel mapping. */
    uint64_t kspan = end - seg[0].paddr;
    bool relocatable = elf_end <= size && size - elf_end >= 12 && seg[0].vaddr - seg[0].paddr == START_KERNEL_MAP &&
                       seg[0].paddr + kspan <= KERNEL_IMAGE_SIZE;
    *pl = (struct bzimage_plan){.format = f->name, .payload = p, .inlen = inlen, .fmt = (unsigned)(f - formats), .nseg = nseg,
                                .entry = entry, .start = seg[0].paddr, .end = end, .size = size, .base = base,
                                .span = span, .relocatable = relocatable};
    memcpy(pl->seg, seg, sizeof seg);
    if (relocatable) {
        pl->tables_off = elf_end;
        pl->tables_len = size - elf_end;
        pl->slots = (KERNEL_IMAGE_SIZE - pl->start - kspan) / KASLR_ALIGN + 1;
    }
    return BZIMAGE_UNPACK_OK;
}

uint64_t bzimage_plan_delta(const struct bzimage_plan *p, uint64_t random) {
    return random && p->relocatable ? random % p->slots * KASLR_ALIGN : 0;
}

/* A .bss cleared in a fresh window: only what unpacking wrote there (the decoded image, and
 * the segments placed) needs it. */
static void zero_written(const struct bzimage_plan *p, uint8_t *window, uint64_t gpa, uint64_t len) {
    uint64_t hi = p->size;
    for (int i = 0; i < p->nseg; i++)
        if (p->seg[i].paddr - p->base + p->seg[i].filesz > hi) hi = p->seg[i].paddr - p->base + p->seg[i].filesz;
    uint64_t off = gpa - p->base;
    if (off < hi) memset(window + off, 0, len < hi - off ? len : hi - off);
}

int bzimage_unpack_window(const struct bzimage_plan *p, const struct bzimage_window *w, uint64_t delta,
                          uint8_t *tables, struct bzimage_unpacked *u, char *err, size_t errlen) {
    *u = (struct bzimage_unpacked){0};
    const struct format *f = &formats[p->fmt];
    uint64_t t0 = zx_clock_get_monotonic();
    if (!f->all(p->payload, p->inlen, w->at, p->size)) return FAIL("its %s-compressed kernel is corrupt", f->name);
    if (tables && p->tables_len) memcpy(tables, w->at + p->tables_off, p->tables_len);
    uint64_t t1 = zx_clock_get_monotonic();
    if (delta && relocate(p, w->at, false, w->at + p->tables_off, p->tables_len, delta) != 0)
        return FAIL("its unpacked kernel's relocation tables name places outside it");
    uint64_t t2 = zx_clock_get_monotonic();
    /* Segments bound lower first, in file order, then those bound higher, in reverse: neither
     * overwrites a segment still to move (the layout is sorted and disjoint both ways). */
    const struct bzimage_segment *seg = p->seg;
    for (int i = 0; i < p->nseg; i++)
        if (seg[i].paddr < p->base + seg[i].off) move_segment(p, w->at, &seg[i]);
    for (int i = p->nseg - 1; i >= 0; i--)
        if (seg[i].paddr > p->base + seg[i].off) move_segment(p, w->at, &seg[i]);
    for (int i = 0; i < p->nseg; i++) {
        uint64_t gpa = seg[i].paddr + seg[i].filesz, len = seg[i].memsz - seg[i].filesz;
        if (w->zero) w->zero(w->arg, gpa, len);
        else zero_written(p, w->at, gpa, len);
    }
    *u = (struct bzimage_unpacked){.format = f->name, .entry = p->entry, .start = p->start, .end = p->end,
                                   .size = p->size, .kaslr = delta != 0, /* the caller knows when 0 was KASLR's pick */
                                   .virt_offset = delta, .decode_ns = t1 - t0, .relocate_ns = t2 - t1,
                                   .place_ns = zx_clock_get_monotonic() - t2};
    return BZIMAGE_UNPACK_OK;
}

static void zero_guest(void *arg, uint64_t gpa, uint64_t len) {
    gm_zero(arg, gpa, len);
}

int bzimage_unpack(const uint8_t *image, size_t len, const struct guest_mem *gm, uint64_t min_paddr, uint64_t align,
                   uint64_t random, struct bzimage_unpacked *u, char *err, size_t errlen) {
    *u = (struct bzimage_unpacked){0};
    struct bzimage_plan p;
    int r = bzimage_plan(image, len, gm, min_paddr, align, &p, err, errlen);
    if (r != BZIMAGE_UNPACK_OK) return r;
    struct bzimage_window w = {gm_ptr_write(gm, p.base, p.span), zero_guest, (void *)gm};
    r = bzimage_unpack_window(&p, &w, bzimage_plan_delta(&p, random), NULL, u, err, errlen);
    u->kaslr = random && p.relocatable;
    return r;
}
