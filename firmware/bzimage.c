/* bzImage loader. The file is hostile input: the header's fields are checked against the
 * file and guest memory before anything is copied. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "firmware/bzimage.h"

#define FAIL(...) (snprintf(err, errlen, __VA_ARGS__), -1)

/* Offsets in the file and in the zero page (both hold the setup header at 0x1f1). */
#define HDR_START 0x1f1
#define OFF_SETUP_SECTS 0x1f1
#define OFF_HDR_LEN_BYTE 0x201
#define OFF_MAGIC 0x202
#define OFF_VERSION 0x206
#define OFF_TYPE_OF_LOADER 0x210
#define OFF_LOADFLAGS 0x211
#define OFF_RAMDISK_IMAGE 0x218
#define OFF_RAMDISK_SIZE 0x21c
#define OFF_CMD_LINE_PTR 0x228
#define OFF_INITRD_ADDR_MAX 0x22c
#define OFF_KERNEL_ALIGNMENT 0x230
#define OFF_XLOADFLAGS 0x236
#define OFF_CMDLINE_SIZE 0x238
#define OFF_PREF_ADDRESS 0x258
#define OFF_INIT_SIZE 0x260
#define ZP_ACPI_RSDP 0x070
#define ZP_EXT_RAMDISK_IMAGE 0x0c0
#define ZP_EXT_RAMDISK_SIZE 0x0c4
#define ZP_EXT_CMD_LINE_PTR 0x0c8
#define ZP_E820_ENTRIES 0x1e8
#define ZP_E820_TABLE 0x2d0
#define LOADED_HIGH 0x01
#define KASLR_FLAG 0x02
#define XLF_KERNEL_64 0x01
#define E820_RAM 1
#define E820_RESERVED 2

static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

bool bzimage_detect(const uint8_t *image, size_t len) {
    return len > OFF_MAGIC + 4 && memcmp(image + OFF_MAGIC, "HdrS", 4) == 0;
}

/* Where the protected-mode kernel starts in the file. */
static uint64_t pm_offset(const uint8_t *image) {
    unsigned setup_sects = image[OFF_SETUP_SECTS] ? image[OFF_SETUP_SECTS] : 4;
    return (setup_sects + 1ull) * 512;
}

int bzimage_check(const uint8_t *image, size_t len, char *err, size_t errlen) {
    if (len < 0x270 || !bzimage_detect(image, len)) return FAIL("not a bzImage (no HdrS setup header)");
    uint16_t version = rd16(image + OFF_VERSION);
    if (version < 0x020c) return FAIL("boot protocol %u.%02u is too old (2.12 or later has the 64-bit entry)",
                                      version >> 8, version & 0xff);
    if (!(image[OFF_LOADFLAGS] & LOADED_HIGH) || !(rd16(image + OFF_XLOADFLAGS) & XLF_KERNEL_64))
        return FAIL("kernel has no 64-bit entry point");
    if (pm_offset(image) >= len) return FAIL("truncated bzImage (no protected-mode kernel)");
    uint64_t align = rd32(image + OFF_KERNEL_ALIGNMENT), load = rd64(image + OFF_PREF_ADDRESS);
    if (align == 0 || (align & (align - 1)) || load % align) return FAIL("bad kernel alignment in the setup header");
    return 0;
}

static int unpack_here(void *arg, const uint8_t *image, size_t len, const struct guest_mem *gm, uint64_t min_paddr,
                       uint64_t align, uint64_t random, struct bzimage_unpacked *u, char *err, size_t errlen) {
    (void)arg;
    return bzimage_unpack(image, len, gm, min_paddr, align, random, u, err, errlen);
}

int bzimage_load(const uint8_t *image, size_t len, const struct guest_mem *gm, uint64_t min_paddr, bool unpack,
                 uint64_t random, struct bzimage_kernel *k, char *err, size_t errlen) {
    return bzimage_load_with(image, len, gm, min_paddr, unpack, random, NULL, NULL, k, err, errlen);
}

int bzimage_load_with(const uint8_t *image, size_t len, const struct guest_mem *gm, uint64_t min_paddr, bool unpack,
                      uint64_t random, bzimage_unpacker *unpacker, void *arg, struct bzimage_kernel *k, char *err,
                      size_t errlen) {
    if (!unpacker) unpacker = unpack_here;
    memset(k, 0, sizeof *k);
    if (bzimage_check(image, len, err, errlen) != 0) return -1;
    uint64_t pm_off = pm_offset(image), pm_len = len - pm_off;
    uint64_t init_size = rd32(image + OFF_INIT_SIZE), align = rd32(image + OFF_KERNEL_ALIGNMENT);
    uint64_t load = rd64(image + OFF_PREF_ADDRESS);
    if (init_size < pm_len) init_size = pm_len;
    struct bzimage_unpacked *u = &k->unpacked;
    int r = unpack ? unpacker(arg, image, len, gm, min_paddr, align, random, u, err, errlen) : BZIMAGE_UNPACK_GUEST;
    if (r == BZIMAGE_UNPACK_BAD) return -1;
    if (r == BZIMAGE_UNPACK_OK) {
        k->load_addr = u->start;
        k->entry = u->entry;
        k->end = u->end;
    } else {
        if (!gm_valid(gm, load, init_size))
            return FAIL("kernel needs %llu MiB from %#llx: more guest memory", (unsigned long long)(init_size >> 20),
                        (unsigned long long)load);
        gm_write(gm, load, image + pm_off, pm_len);
        k->load_addr = load;
        k->entry = load + 0x200; /* startup_64 of the decompressor */
        k->end = load + init_size;
    }
    k->initrd_addr_max = rd32(image + OFF_INITRD_ADDR_MAX);
    k->cmdline_size = rd32(image + OFF_CMDLINE_SIZE);
    k->header_len = (size_t)(OFF_MAGIC + image[OFF_HDR_LEN_BYTE]) - HDR_START;
    if (k->header_len > sizeof k->header) k->header_len = sizeof k->header;
    memcpy(k->header, image + HDR_START, k->header_len);
    return 0;
}

uint64_t bzimage_kaslr_random(const char *cmdline) {
    /* the kernel's cmdline_find_option_bool: a whole word, outside quotes */
    bool quoted = false;
    for (const char *p = cmdline; *p; p++) {
        if (*p == '"') quoted = !quoted;
        if (quoted || (p > cmdline && !isspace((unsigned char)p[-1]))) continue;
        if (strncmp(p, "nokaslr", 7) == 0 && (!p[7] || isspace((unsigned char)p[7]))) return 0;
    }
    uint64_t r = 0;
    while (r == 0)
        if (getrandom(&r, sizeof r, 0) != sizeof r) r = 0x5bd1e995u; /* no entropy: fixed, still moved */
    return r;
}

static void put_e820(uint8_t *zp, unsigned i, uint64_t addr, uint64_t size, uint32_t type) {
    uint8_t *e = zp + ZP_E820_TABLE + 20 * i;
    memcpy(e, &addr, 8);
    memcpy(e + 8, &size, 8);
    memcpy(e + 16, &type, 4);
}

/* The same map as PVH guests get, with the ACPI area reserved: the number of entries. */
static uint8_t put_memory_map(uint8_t *zp, const struct guest_mem *gm) {
    struct gm_range r[2];
    unsigned n = gm_ranges(gm, r);
    put_e820(zp, 0, 0, 0x9fc00, E820_RAM);
    put_e820(zp, 1, 0xe0000, 0x20000, E820_RESERVED);
    put_e820(zp, 2, 0x100000, r[0].size - 0x100000, E820_RAM);
    if (n == 2) put_e820(zp, 3, r[1].gpa, r[1].size, E820_RAM);
    return (uint8_t)(2 + n);
}

int bzimage_write_boot_params(const struct guest_mem *gm, const struct bzimage_kernel *k, const char *cmdline,
                              uint64_t initrd, uint64_t initrd_size, uint64_t rsdp) {
    size_t cmdlen = strlen(cmdline);
    if (cmdlen >= BOOT_CMDLINE_MAX || (k->cmdline_size && cmdlen > k->cmdline_size)) return -1;
    gm_write(gm, BOOT_CMDLINE_ADDR, cmdline, cmdlen + 1);

    /* A flat GDT: 0x10 64-bit code, 0x18 data (the kernel's __BOOT_CS / __BOOT_DS). */
    static const uint64_t gdt[4] = {0, 0, 0x00af9a000000ffffull, 0x00cf92000000ffffull};
    gm_write(gm, BOOT_GDT_ADDR, gdt, sizeof gdt);

    /* Identity map of the first 4 GiB with 2 MiB pages: PML4, PDPT, 4 PDs. */
    uint64_t pml4 = BOOT_PML4_ADDR, pdpt = pml4 + 0x1000, pd = pdpt + 0x1000;
    uint8_t *tables = gm_ptr_write(gm, pml4, 6 * 0x1000);
    if (!tables) return -1;
    memset(tables, 0, 6 * 0x1000);
    uint64_t e = pdpt | 3;
    memcpy(tables, &e, 8);
    for (unsigned i = 0; i < 4; i++) {
        e = (pd + 0x1000ull * i) | 3;
        memcpy(tables + 0x1000 + 8 * i, &e, 8);
    }
    for (unsigned i = 0; i < 2048; i++) {
        e = ((uint64_t)i << 21) | 0x83;
        memcpy(tables + 0x2000 + 8 * i, &e, 8);
    }

    uint8_t *zp = gm_ptr_write(gm, BOOT_ZERO_PAGE_ADDR, 4096);
    if (!zp) return -1;
    memset(zp, 0, 4096);
    memcpy(zp + HDR_START, k->header, k->header_len);
    zp[OFF_TYPE_OF_LOADER] = 0xff; /* an undefined boot loader */
    if (k->unpacked.kaslr) zp[OFF_LOADFLAGS] |= KASLR_FLAG; /* as its decompressor would tell it */
    uint32_t cmd_ptr = BOOT_CMDLINE_ADDR;
    memcpy(zp + OFF_CMD_LINE_PTR, &cmd_ptr, 4);
    uint32_t lo = (uint32_t)initrd, size_lo = (uint32_t)initrd_size;
    uint32_t hi = (uint32_t)(initrd >> 32), size_hi = (uint32_t)(initrd_size >> 32);
    memcpy(zp + OFF_RAMDISK_IMAGE, &lo, 4);
    memcpy(zp + OFF_RAMDISK_SIZE, &size_lo, 4);
    memcpy(zp + ZP_EXT_RAMDISK_IMAGE, &hi, 4);
    memcpy(zp + ZP_EXT_RAMDISK_SIZE, &size_hi, 4);
    memcpy(zp + ZP_ACPI_RSDP, &rsdp, 8);
    zp[ZP_E820_ENTRIES] = put_memory_map(zp, gm);
    return 0;
}
