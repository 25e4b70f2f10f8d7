/* A bzImage's kernel unpacked by bellhop, without a guest: small bzImages whose payload is an
 * ELF with three segments (one in place, one bound lower, one bound higher with a .bss) and
 * relocation tables, compressed in each format with the same libraries' encoders. */
#include <elf.h>
#include <lz4.h>
#include <lzma.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "firmware/bzimage.h"
#include "tests/lib/check.h"

#define RAM (16u << 20)
#define KMAP 0xffffffff80000000ull
#define LOAD 0x200000u /* pref_address, and the first segment's place */
#define ELF_SIZE 0x8000u
#define PM_OFF 1024u /* setup_sects 1 */

/* The segments: file offset, size in the file, physical place, size in memory. */
static const struct {
    uint32_t off, filesz, paddr, memsz;
} segs[3] = {
    {0x1000, 0x2000, LOAD, 0x2000},           /* in place: LOAD - 0x1000 is the image's base */
    {0x4000, 0x1000, LOAD + 0x2000, 0x1000},  /* bound lower than in place (base + 0x4000) */
    {0x6000, 0x1000, LOAD + 0x9000, 0x3000},  /* bound higher, with 0x2000 of .bss */
};
/* Places the relocation tables name, and what they hold before. */
#define R32 (LOAD + 0x100)      /* in segment 0 */
#define RINV (LOAD + 0x2010)    /* in segment 1 */
#define R64 (LOAD + 0x9020)     /* in segment 2 */
#define V32 0x81200000u
#define VINV 0x00400000u
#define V64 0xffffffff81234567ull
/* how a relocation table names the place at guest-physical pa: its kernel virtual address */
#define TABLE_ENTRY(pa) ((int32_t)(uint32_t)(KMAP + (pa)))

static uint8_t fill(unsigned seg, uint32_t i) { return (uint8_t)(0x11 * (seg + 1) + i * 7); }

/* The unpacked image: ELF header, program headers, segment data, then the relocation tables
 * (ascending: 0, 64-bit entries, 0, inverse 32-bit entries, 0, 32-bit entries). */
static size_t make_elf(uint8_t *img, int32_t r32_entry) {
    memset(img, 0, ELF_SIZE + 64);
    Elf64_Ehdr eh = {.e_ident = {ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS64, ELFDATA2LSB, EV_CURRENT},
                     .e_type = ET_EXEC, .e_machine = EM_X86_64, .e_entry = LOAD, .e_phoff = 64,
                     .e_phentsize = sizeof(Elf64_Phdr), .e_phnum = 3, .e_ehsize = sizeof eh};
    memcpy(img, &eh, sizeof eh);
    for (unsigned s = 0; s < 3; s++) {
        Elf64_Phdr ph = {.p_type = PT_LOAD, .p_offset = segs[s].off, .p_vaddr = KMAP + segs[s].paddr,
                         .p_paddr = segs[s].paddr, .p_filesz = segs[s].filesz, .p_memsz = segs[s].memsz,
                         .p_align = 0x1000};
        memcpy(img + 64 + s * sizeof ph, &ph, sizeof ph);
        for (uint32_t i = 0; i < segs[s].filesz; i++) img[segs[s].off + i] = fill(s, i);
    }
    uint32_t v32 = V32, vinv = VINV;
    uint64_t v64 = V64;
    memcpy(img + segs[0].off + (R32 - segs[0].paddr), &v32, 4);
    memcpy(img + segs[1].off + (RINV - segs[1].paddr), &vinv, 4);
    memcpy(img + segs[2].off + (R64 - segs[2].paddr), &v64, 8);
    int32_t tables[] = {0, TABLE_ENTRY(R64), 0, TABLE_ENTRY(RINV), 0, r32_entry};
    memcpy(img + ELF_SIZE, tables, sizeof tables);
    return ELF_SIZE + sizeof tables;
}

static uint32_t put32(uint8_t *p, uint32_t v) {
    memcpy(p, &v, 4);
    return 4;
}

/* The compressed payload of `img` in `format`, its size appended as the kernel's build does
 * (gzip's own trailer holds it). Returns its length. */
static size_t pack(const char *format, const uint8_t *img, size_t n, uint8_t *out, size_t cap) {
    size_t len = 0;
    if (strcmp(format, "gzip") == 0) {
        z_stream z = {0};
        CHECK_EQ(deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
        z.next_in = (Bytef *)(uintptr_t)img, z.avail_in = (uInt)n, z.next_out = out, z.avail_out = (uInt)cap;
        CHECK_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
        len = z.total_out;
        deflateEnd(&z);
        return len;
    }
    if (strcmp(format, "xz") == 0) {
        CHECK_EQ(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, NULL, img, n, out, &len, cap), LZMA_OK);
    } else if (strcmp(format, "lz4") == 0) { /* the legacy frame: magic, then [size][block] */
        len = put32(out, 0x184c2102u);
        int c = LZ4_compress_default((const char *)img, (char *)out + len + 4, (int)n, (int)(cap - len - 8));
        CHECK(c > 0);
        len += put32(out + len, (uint32_t)c) + (size_t)c;
    } else { /* with its checksum, as the zstd tool writes by default */
        ZSTD_CCtx *c = ZSTD_createCCtx();
        CHECK(c != NULL);
        ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 19);
        ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
        len = ZSTD_compress2(c, out, cap, img, n);
        ZSTD_freeCCtx(c);
        CHECK(!ZSTD_isError(len));
    }
    return len + put32(out + len, (uint32_t)n);
}

/* A bzImage (boot protocol 2.15) around `payload`. */
static size_t make_bzimage(uint8_t *bz, const uint8_t *payload, size_t plen) {
    memset(bz, 0, PM_OFF + 0x200);
    bz[0x1f1] = 1;
    memcpy(bz + 0x202, "HdrS", 4);
    uint16_t version = 0x020f, xloadflags = 1;
    memcpy(bz + 0x206, &version, 2);
    bz[0x211] = 1; /* LOADED_HIGH */
    uint32_t align = 0x200000, init_size = 0x100000, payload_off = 0x200, plen32 = (uint32_t)plen;
    memcpy(bz + 0x230, &align, 4);
    memcpy(bz + 0x236, &xloadflags, 2);
    memcpy(bz + 0x248, &payload_off, 4);
    memcpy(bz + 0x24c, &plen32, 4);
    uint64_t pref = LOAD;
    memcpy(bz + 0x258, &pref, 8);
    memcpy(bz + 0x260, &init_size, 4);
    memcpy(bz + PM_OFF + payload_off, payload, plen);
    return PM_OFF + payload_off + plen;
}

static uint8_t elf[ELF_SIZE + 64], packed[ELF_SIZE * 2], image[ELF_SIZE * 2 + 0x1000];

static size_t build(const char *format, int32_t r32_entry) {
    size_t n = make_elf(elf, r32_entry);
    size_t plen = pack(format, elf, n, packed, sizeof packed);
    return make_bzimage(image, packed, plen);
}

/* A load into fresh guest RAM (not zero, as a guest's RAM need not be). */
struct load {
    uint8_t *ram;
    struct guest_mem gm;
    struct bzimage_kernel k;
    char err[160];
};

static struct load *fresh_load(void) {
    struct load *l = calloc(1, sizeof *l);
    CHECK(l != NULL && (l->ram = malloc(RAM)) != NULL);
    memset(l->ram, 0xee, RAM);
    l->gm = (struct guest_mem){l->ram, RAM, NULL, NULL};
    return l;
}

static int load(struct load *l, size_t len, bool unpack, uint64_t random) {
    return bzimage_load(image, len, &l->gm, 0x100000, unpack, random, &l->k, l->err, sizeof l->err);
}

static void free_load(struct load *l) {
    free(l->ram);
    free(l);
}

static void check_placed(const uint8_t *ram) {
    for (unsigned s = 0; s < 3; s++) {
        bool same = true, bss_zero = true;
        for (uint32_t i = 0; i < segs[s].filesz; i++) {
            uint32_t pa = segs[s].paddr + i;
            if (pa - R32 < 4 || pa - RINV < 4 || pa - R64 < 8) continue;
            same &= ram[pa] == fill(s, i);
        }
        for (uint32_t i = segs[s].filesz; i < segs[s].memsz; i++) bss_zero &= ram[segs[s].paddr + i] == 0;
        CHECK_MSG(same, "segment %u is not at its place", s);
        CHECK_MSG(bss_zero, "segment %u's .bss is not zero", s);
    }
}

static uint64_t rd(const uint8_t *ram, uint32_t pa, unsigned width) {
    uint64_t v = 0;
    memcpy(&v, ram + pa, width);
    return v;
}

TEST(each_format_unpacks_into_place_at_its_link_address) {
    static const char *const formats[] = {"gzip", "xz", "lz4", "zstd"};
    for (unsigned f = 0; f < 4; f++) {
        size_t len = build(formats[f], TABLE_ENTRY(R32));
        struct load *l = fresh_load();
        CHECK_EQ(load(l, len, true, 0), 0);
        const char *got = l->k.unpacked.format;
        CHECK_MSG(got && strcmp(got, formats[f]) == 0, "%s: unpacked as %s (%s)", formats[f], got ? got : "nothing",
                  l->err);
        CHECK_EQ(l->k.entry, (uint64_t)LOAD);
        CHECK_EQ(l->k.end, (uint64_t)(segs[2].paddr + segs[2].memsz));
        CHECK(!l->k.unpacked.kaslr);
        check_placed(l->ram);
        /* random 0: nothing relocated */
        CHECK_EQ(rd(l->ram, R32, 4), (uint64_t)V32);
        CHECK_EQ(rd(l->ram, RINV, 4), (uint64_t)VINV);
        CHECK_EQ(rd(l->ram, R64, 8), V64);
        free_load(l);
    }
}

TEST(kaslr_moves_the_kernel_by_2_mib_slots_and_applies_its_relocations) {
    size_t len = build("lz4", TABLE_ENTRY(R32));
    struct load *l = fresh_load();
    uint64_t random = 12345;
    CHECK_EQ(load(l, len, true, random), 0);
    CHECK(l->k.unpacked.kaslr);
    /* slots: (1 GiB - where it lies - what it spans) / 2 MiB + 1 */
    uint64_t span = segs[2].paddr + segs[2].memsz - LOAD, slots = ((1ull << 30) - LOAD - span) / (2u << 20) + 1;
    uint64_t delta = random % slots * (2u << 20);
    CHECK_EQ(l->k.unpacked.virt_offset, delta);
    CHECK(delta != 0);
    check_placed(l->ram);
    CHECK_EQ(rd(l->ram, R32, 4), (uint64_t)(uint32_t)(V32 + delta));
    CHECK_EQ(rd(l->ram, RINV, 4), (uint64_t)(uint32_t)(VINV - delta));
    CHECK_EQ(rd(l->ram, R64, 8), V64 + delta);
    /* the zero page tells the kernel, as its decompressor would */
    CHECK_EQ(bzimage_write_boot_params(&l->gm, &l->k, "console=ttyS0", 0, 0, 0), 0);
    CHECK(l->ram[BOOT_ZERO_PAGE_ADDR + 0x211] & 0x02);
    free_load(l);
}

TEST(nokaslr_on_the_command_line_is_a_whole_word) {
    CHECK_EQ(bzimage_kaslr_random("console=ttyS0 nokaslr"), 0u);
    CHECK_EQ(bzimage_kaslr_random("nokaslr quiet"), 0u);
    CHECK_NE(bzimage_kaslr_random("console=ttyS0"), 0u);
    CHECK_NE(bzimage_kaslr_random("nokaslrx"), 0u);
    CHECK_NE(bzimage_kaslr_random("xnokaslr"), 0u);
    CHECK_NE(bzimage_kaslr_random("a=\"b nokaslr\""), 0u);
}

TEST(a_relocation_outside_the_kernel_is_refused) {
    size_t len = build("zstd", TABLE_ENTRY(0x7000000)); /* past every segment */
    struct load *l = fresh_load();
    CHECK_EQ(load(l, len, true, 99), -1);
    CHECK_MSG(strstr(l->err, "relocation") != NULL, "%s", l->err);
    /* without KASLR the tables are not read */
    CHECK_EQ(load(l, len, true, 0), 0);
    free_load(l);
}

TEST(a_corrupt_or_short_payload_is_refused_with_its_format) {
    static const char *const formats[] = {"gzip", "xz", "lz4", "zstd"};
    for (unsigned f = 0; f < 4; f++) {
        size_t len = build(formats[f], TABLE_ENTRY(R32));
        uint32_t plen;
        memcpy(&plen, image + 0x24c, 4);
        uint8_t *payload = image + PM_OFF + 0x200;
        struct load *l = fresh_load();
        /* the stream damaged past its headers (LZ4's legacy frame has no checksum to catch
         * that, so its block's size lies instead) */
        if (f == 2) put32(payload + 4, plen);
        else
            for (uint32_t i = plen / 2; i < plen / 2 + 16; i++) payload[i] ^= 0x5a;
        int r = load(l, len, true, 0);
        CHECK_MSG(r == -1 && strstr(l->err, formats[f]) && strstr(l->err, "corrupt"), "%s: %d '%s'", formats[f], r,
                  l->err);
        /* intact, but claiming more than it holds */
        build(formats[f], TABLE_ENTRY(R32));
        uint32_t more = (uint32_t)make_elf(elf, 0) + 4096;
        memcpy(payload + plen - 4, &more, 4);
        r = load(l, len, true, 0);
        CHECK_MSG(r == -1 && strstr(l->err, "corrupt"), "%s: %d '%s'", formats[f], r, l->err);
        free_load(l);
    }
}

TEST(other_formats_and_guest_decompress_leave_it_to_the_guest) {
    size_t len = build("gzip", TABLE_ENTRY(R32));
    struct load *l = fresh_load();
    CHECK_EQ(load(l, len, false, 1), 0);
    CHECK(l->k.unpacked.format == NULL && !l->k.unpacked.kaslr);
    CHECK_EQ(l->k.entry, (uint64_t)LOAD + 0x200); /* the decompressor's startup_64 */
    CHECK_EQ(memcmp(l->ram + LOAD, image + PM_OFF, len - PM_OFF), 0);
    memcpy(image + PM_OFF + 0x200, "BZh91AY&SY", 10); /* bzip2: the guest's to unpack */
    CHECK_EQ(load(l, len, true, 1), 0);
    CHECK(l->k.unpacked.format == NULL);
    CHECK_EQ(l->k.entry, (uint64_t)LOAD + 0x200);
    free_load(l);
}

TEST(a_kernel_that_does_not_fit_unpacked_is_the_guests) {
    size_t len = build("xz", TABLE_ENTRY(R32));
    struct load *l = fresh_load();
    l->gm.size = LOAD + 0x4000; /* holds the protected-mode kernel, not the image */
    uint32_t init_size = 0x1000;
    memcpy(image + 0x260, &init_size, 4);
    CHECK_EQ(load(l, len, true, 0), 0);
    CHECK(l->k.unpacked.format == NULL);
    free_load(l);
}

TEST(an_unpacked_file_that_is_not_an_x86_64_elf_is_refused) {
    size_t n = make_elf(elf, 0);
    elf[EI_CLASS] = ELFCLASS32;
    size_t plen = pack("lz4", elf, n, packed, sizeof packed);
    size_t len = make_bzimage(image, packed, plen);
    struct load *l = fresh_load();
    CHECK_EQ(load(l, len, true, 0), -1);
    CHECK_MSG(strstr(l->err, "ELF") != NULL, "%s", l->err);
    free_load(l);
}
