/* The cache of unpacked kernels, without a VM: a small LZ4 bzImage (an ELF with three
 * segments, one bound lower, one higher with a .bss, and relocation tables), as a file,
 * loaded through the cache into RAM buffers and put in the cache by its filler (called here
 * as the background `bellhop kernel-cache-fill` calls it), the cache a temporary directory
 * whose entries the tests cut, change and fill. */
#include <dirent.h>
#include <elf.h>
#include <fcntl.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "firmware/bzimage.h"
#include "vmm/control/version.h"
#include "vmm/machine/kernel_cache.h"
#include "tests/lib/check.h"

#define RAM (16u << 20)
#define KMAP 0xffffffff80000000ull
#define LOAD 0x200000u
#define ELF_SIZE 0x8000u
#define PM_OFF 1024u

static const struct {
    uint32_t off, filesz, paddr, memsz;
} segs[3] = {
    {0x1000, 0x2000, LOAD, 0x2000},
    {0x4000, 0x1000, LOAD + 0x2000, 0x1000},
    {0x6000, 0x1000, LOAD + 0x9000, 0x3000},
};
#define R32 (LOAD + 0x100)
#define R64 (LOAD + 0x9020)
#define V32 0x81200000u
#define V64 0xffffffff81234567ull
#define TABLE_ENTRY(pa) ((int32_t)(uint32_t)(KMAP + (pa)))

static uint8_t image[ELF_SIZE * 2 + 0x1000];

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* The bzImage, its payload an LZ4 legacy frame of the ELF and its tables. */
static size_t build(void) {
    static uint8_t elf[ELF_SIZE + 64], packed[ELF_SIZE * 2];
    memset(elf, 0, sizeof elf);
    Elf64_Ehdr eh = {.e_ident = {ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS64, ELFDATA2LSB, EV_CURRENT},
                     .e_type = ET_EXEC, .e_machine = EM_X86_64, .e_entry = LOAD, .e_phoff = 64,
                     .e_phentsize = sizeof(Elf64_Phdr), .e_phnum = 3, .e_ehsize = sizeof eh};
    memcpy(elf, &eh, sizeof eh);
    for (unsigned s = 0; s < 3; s++) {
        Elf64_Phdr ph = {.p_type = PT_LOAD, .p_offset = segs[s].off, .p_vaddr = KMAP + segs[s].paddr,
                         .p_paddr = segs[s].paddr, .p_filesz = segs[s].filesz, .p_memsz = segs[s].memsz};
        memcpy(elf + 64 + s * sizeof ph, &ph, sizeof ph);
        for (uint32_t i = 0; i < segs[s].filesz; i++) elf[segs[s].off + i] = (uint8_t)(s * 0x31 + i * 7 + 1);
    }
    uint32_t v32 = V32;
    uint64_t v64 = V64;
    memcpy(elf + segs[0].off + (R32 - segs[0].paddr), &v32, 4);
    memcpy(elf + segs[2].off + (R64 - segs[2].paddr), &v64, 8);
    int32_t tables[] = {0, TABLE_ENTRY(R64), 0, 0, TABLE_ENTRY(R32)};
    memcpy(elf + ELF_SIZE, tables, sizeof tables);
    size_t n = ELF_SIZE + sizeof tables;
    put32(packed, 0x184c2102u);
    int c = LZ4_compress_default((const char *)elf, (char *)packed + 8, (int)n, (int)sizeof packed - 16);
    CHECK(c > 0);
    put32(packed + 4, (uint32_t)c);
    size_t plen = 8 + (size_t)c;
    put32(packed + plen, (uint32_t)n);
    plen += 4;
    memset(image, 0, sizeof image);
    image[0x1f1] = 1;
    memcpy(image + 0x202, "HdrS", 4);
    uint16_t version = 0x020f, xloadflags = 1;
    memcpy(image + 0x206, &version, 2);
    image[0x211] = 1;
    put32(image + 0x230, 0x200000);
    memcpy(image + 0x236, &xloadflags, 2);
    put32(image + 0x248, 0x200);
    put32(image + 0x24c, (uint32_t)plen);
    uint64_t pref = LOAD;
    memcpy(image + 0x258, &pref, 8);
    put32(image + 0x260, 0x100000);
    memcpy(image + PM_OFF + 0x200, packed, plen);
    return PM_OFF + 0x200 + plen;
}

static char dir[64];

/* The test's directory, at its end. */
static void remove_dir(void) {
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.' || (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)) unlink(path);
    }
    if (d) closedir(d);
    rmdir(dir);
}

static void fresh_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/bellhop-kcache-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
}

/* One launch's load through the cache at `d` into fresh RAM (not zero, as a guest's need not
 * be): RAM's kernel part, and how the cache served it. */
struct load {
    uint8_t *ram;
    struct bzimage_kernel k;
    char err[160];
};

static char bz[64]; /* the bzImage as a file: its key is remembered by its identity */

static void write_bz(void) {
    size_t len = build();
    snprintf(bz, sizeof bz, "/tmp/bellhop-kcache-bz-%d", (int)getpid());
    FILE *f = fopen(bz, "wb");
    CHECK(f && fwrite(image, 1, len, f) == len);
    fclose(f);
}

static struct load *load_with(const char *d, uint64_t random, uint64_t max_bytes) {
    static size_t len;
    if (!len) len = build();
    if (!bz[0]) write_bz();
    struct load *l = calloc(1, sizeof *l);
    CHECK(l && (l->ram = malloc(RAM)));
    memset(l->ram, 0xee, RAM);
    struct guest_mem gm = {l->ram, RAM, NULL, NULL};
    struct kernel_cache c;
    kernel_cache_init(&c, d);
    if (max_bytes) c.max_bytes = max_bytes;
    c.image_fd = open(bz, O_RDONLY | O_CLOEXEC); /* no image_path: nothing started in the background */
    int r = bzimage_load_with(image, len, &gm, 0x100000, true, random, kernel_cache_unpack, &c, &l->k, l->err,
                              sizeof l->err);
    close(c.image_fd);
    kernel_cache_close(&c);
    CHECK_MSG(r == 0, "load: %s", l->err);
    return l;
}

/* The filler, as `bellhop kernel-cache-fill` runs it after a launch. */
static void fill_with(bool kaslr, uint64_t max_bytes) {
    if (!bz[0]) write_bz();
    struct kernel_cache c;
    kernel_cache_init(&c, dir);
    if (max_bytes) c.max_bytes = max_bytes;
    char err[200];
    CHECK_MSG(kernel_cache_fill(&c, bz, 0x100000, 0x200000, kaslr, err, sizeof err) == 0, "fill: %s", err);
    kernel_cache_close(&c);
}

static void fill(bool kaslr) { fill_with(kaslr, 0); }

static struct load *load(uint64_t random) { return load_with(dir, random, 0); }

static void free_load(struct load *l) {
    free(l->ram);
    free(l);
}

/* The kernel's bytes in RAM are what bellhop unpacks without the cache. */
static void same_as_uncached(const struct load *l, uint64_t random) {
    struct load *u = calloc(1, sizeof *u);
    CHECK(u && (u->ram = malloc(RAM)));
    memset(u->ram, 0xee, RAM);
    struct guest_mem gm = {u->ram, RAM, NULL, NULL};
    CHECK_EQ(bzimage_load(image, build(), &gm, 0x100000, true, random, &u->k, u->err, sizeof u->err), 0);
    CHECK_EQ(l->k.unpacked.virt_offset, u->k.unpacked.virt_offset);
    CHECK_EQ(l->k.unpacked.kaslr, u->k.unpacked.kaslr);
    CHECK_EQ(l->k.entry, u->k.entry);
    for (unsigned s = 0; s < 3; s++)
        CHECK_MSG(memcmp(l->ram + segs[s].paddr, u->ram + segs[s].paddr, segs[s].memsz) == 0,
                  "segment %u differs from an uncached load", s);
    free_load(u);
}

/* The path of slot `slot`'s entry (the only kernel in the directory). */
static void entry_path(char *path, size_t n, unsigned slot) {
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    struct dirent *e;
    char want[32];
    snprintf(want, sizeof want, "-%u.kernel", slot);
    path[0] = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name), wl = strlen(want);
        if (len > wl && strcmp(e->d_name + len - wl, want) == 0) snprintf(path, n, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    CHECK_MSG(path[0], "no entry for slot %u", slot);
}

static unsigned entries(uint64_t *bytes) {
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    struct dirent *e;
    unsigned n = 0;
    *bytes = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 8 || strcmp(e->d_name + len - 7, ".kernel") != 0) continue;
        struct stat st;
        char path[400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        CHECK(stat(path, &st) == 0);
        *bytes += (uint64_t)st.st_size;
        n++;
    }
    closedir(d);
    return n;
}

/* ctime's clock is coarse (a tick): a change in the tick that made the entry would look the
 * same, so the tests change entries a tick later, as anyone but a racing writer does. */
static void next_tick(void) { usleep(20000); }

TEST(a_launch_without_an_entry_unpacks_into_ram_and_the_filler_makes_one) {
    fresh_dir();
    struct load *cold = load(0);
    CHECK_EQ(cold->k.unpacked.cache, BZIMAGE_CACHE_FILLING);
    same_as_uncached(cold, 0);
    fill(false);
    struct load *warm = load(0);
    CHECK_EQ(warm->k.unpacked.cache, BZIMAGE_CACHE_HIT);
    CHECK_EQ(warm->k.unpacked.slot, 0u);
    CHECK_EQ(warm->k.unpacked.decode_ns, 0u);
    same_as_uncached(warm, 0);
    free_load(cold);
    free_load(warm);
    char path[400];
    entry_path(path, sizeof path, 0);
    struct stat st;
    CHECK(stat(dir, &st) == 0);
    CHECK_EQ(st.st_mode & 0777, 0700);
    remove_dir();
}

/* The kernel's places: what `random` picks among them uncached is slot `slot`. */
static uint64_t random_for(uint64_t slot) {
    uint64_t slots = ((1ull << 30) - LOAD - (segs[2].paddr + segs[2].memsz - LOAD)) / (2u << 20) + 1;
    return slot + slots;
}

TEST(a_kaslr_slot_is_made_from_another_by_relocating_the_difference) {
    fresh_dir();
    fill(false);
    fill(true);
    uint64_t bytes;
    CHECK_EQ(entries(&bytes), 2u);
    /* a KASLR launch takes one of the two; the moved one until it is seen */
    struct load *l = NULL;
    for (uint64_t r = 1; r < 64; r++) {
        if (l) free_load(l);
        l = load(r * 0x9e3779b97f4a7c15ull);
        CHECK_EQ(l->k.unpacked.cache, BZIMAGE_CACHE_HIT);
        if (l->k.unpacked.virt_offset) break;
    }
    CHECK(l->k.unpacked.kaslr && l->k.unpacked.virt_offset != 0);
    same_as_uncached(l, random_for(l->k.unpacked.slot));
    uint64_t v;
    memcpy(&v, l->ram + R64, 8);
    CHECK_EQ(v, V64 + l->k.unpacked.virt_offset);
    free_load(l);
    remove_dir();
}

static void rebuilt_after(void (*spoil)(const char *path)) {
    fresh_dir();
    fill(false);
    free_load(load(0));
    char path[400];
    entry_path(path, sizeof path, 0);
    next_tick();
    spoil(path);
    struct load *l = load(0);
    CHECK_EQ(l->k.unpacked.cache, BZIMAGE_CACHE_FILLING);
    same_as_uncached(l, 0);
    free_load(l);
    fill(false);
    l = load(0);
    CHECK_EQ(l->k.unpacked.cache, BZIMAGE_CACHE_HIT);
    same_as_uncached(l, 0);
    free_load(l);
    remove_dir();
}

static void cut_short(const char *path) { CHECK(truncate(path, 8192) == 0); }

static void change_a_byte(const char *path) {
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, "x", 1, KERNEL_CACHE_HEADER + 0x1100) == 1);
    close(fd);
}

/* Another version's entry, its sidecar made to match: only the header tells. */
static void another_version(const char *path) {
    int fd = open(path, O_RDWR);
    struct kernel_cache_header h;
    CHECK(fd >= 0 && pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h);
    memcpy(h.version, "9.9.9", 6);
    h.checksum = XXH3_64bits(&h, offsetof(struct kernel_cache_header, checksum));
    CHECK(pwrite(fd, &h, sizeof h, 0) == (ssize_t)sizeof h);
    close(fd);
    struct stat st;
    CHECK(stat(path, &st) == 0);
    char id[440];
    snprintf(id, sizeof id, "%s.id", path);
    uint64_t rec[8] = {0};
    int idfd = open(id, O_RDWR);
    CHECK(idfd >= 0 && pread(idfd, rec, sizeof rec, 0) == 64);
    rec[1] = st.st_dev, rec[2] = st.st_ino, rec[3] = (uint64_t)st.st_size;
    rec[4] = (uint64_t)st.st_mtim.tv_sec, rec[5] = (uint64_t)st.st_mtim.tv_nsec;
    rec[6] = (uint64_t)st.st_ctim.tv_sec, rec[7] = (uint64_t)st.st_ctim.tv_nsec;
    CHECK(pwrite(idfd, rec, sizeof rec, 0) == 64);
    close(idfd);
}

static void garbage_sidecar(const char *path) {
    char id[440];
    snprintf(id, sizeof id, "%s.id", path);
    FILE *f = fopen(id, "w");
    CHECK(f && fputs("not an identity, but long enough to be read as one: 0123456789abcdef", f) >= 0);
    fclose(f);
}

TEST(an_entry_cut_short_is_rebuilt) { rebuilt_after(cut_short); }
TEST(an_entry_changed_is_rebuilt) { rebuilt_after(change_a_byte); }
TEST(another_versions_entry_is_refused_and_rebuilt) { rebuilt_after(another_version); }
TEST(a_sidecar_that_does_not_match_makes_the_entry_bad) { rebuilt_after(garbage_sidecar); }

TEST_TIMEOUT(a_kaslr_launch_takes_one_of_the_slots_there, 120) { /* 99 launches: ~20 s under TSan */
    fresh_dir();
    for (int i = 0; i < 3; i++) fill(true);
    uint64_t bytes;
    CHECK_EQ(entries(&bytes), 3u);
    unsigned seen[3] = {0}, slots[3], n = 0;
    for (uint64_t r = 1; r < 100; r++) {
        struct load *l = load(r * 0x9e3779b97f4a7c15ull);
        CHECK_EQ(l->k.unpacked.cache, BZIMAGE_CACHE_HIT);
        unsigned i = 0;
        while (i < n && slots[i] != l->k.unpacked.slot) i++;
        if (i == n) {
            CHECK_MSG(n < 3, "a fourth slot, %u", l->k.unpacked.slot);
            slots[n++] = l->k.unpacked.slot;
        }
        seen[i]++;
        free_load(l);
    }
    CHECK_MSG(n == 3 && seen[0] && seen[1] && seen[2], "slots seen: %u", n);
    remove_dir();
}

TEST(eight_slots_at_most_are_made) {
    fresh_dir();
    for (int i = 0; i < 30; i++) fill(true);
    uint64_t bytes;
    CHECK_EQ(entries(&bytes), KERNEL_CACHE_SLOTS);
    remove_dir();
}

TEST(a_filler_leaves_the_kernel_to_another_at_work) {
    fresh_dir();
    fill(false); /* the key remembered, the lock file made */
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    struct dirent *e;
    int lock = -1;
    while ((e = readdir(d)))
        if (strstr(e->d_name, "-fill")) {
            char path[400];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            lock = open(path, O_RDWR);
        }
    closedir(d);
    CHECK(lock >= 0 && flock(lock, LOCK_EX) == 0);
    fill(true); /* another filler's: it makes nothing */
    uint64_t bytes;
    CHECK_EQ(entries(&bytes), 1u);
    close(lock);
    fill(true);
    CHECK_EQ(entries(&bytes), 2u);
    remove_dir();
}

TEST(the_cache_stays_under_its_bound_the_least_recently_used_going) {
    fresh_dir();
    fill(false);
    uint64_t one;
    CHECK_EQ(entries(&one), 1u);
    for (int r = 1; r <= 6; r++) {
        next_tick(); /* each use its own time */
        fill_with(true, 3 * one);
        next_tick();
        free_load(load_with(dir, 0, 3 * one)); /* slot 0 used again: the most recent */
    }
    uint64_t bytes;
    CHECK(entries(&bytes) <= 3);
    CHECK(bytes <= 3 * one);
    char path[400];
    entry_path(path, sizeof path, 0); /* the one used all along is still there */
    remove_dir();
}

TEST(a_cache_that_cannot_be_made_leaves_the_launch_to_guest_memory) {
    struct load *l = load_with("/proc/version/kernels", 0, 0);
    CHECK_EQ(l->k.unpacked.cache, BZIMAGE_CACHE_OFF);
    CHECK(l->k.unpacked.format != NULL);
    same_as_uncached(l, 0);
    free_load(l);
}

TEST(a_corrupt_header_is_refused) {
    fresh_dir();
    fill(false);
    char path[400];
    entry_path(path, sizeof path, 0);
    int fd = open(path, O_RDONLY);
    struct kernel_cache_header h;
    CHECK(fd >= 0 && pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h);
    close(fd);
    struct bzimage_plan p;
    char err[100];
    struct guest_mem gm = {malloc(RAM), RAM, NULL, NULL};
    CHECK(gm.host);
    CHECK_EQ(bzimage_plan(image, build(), &gm, 0x100000, 0x200000, &p, err, sizeof err), BZIMAGE_UNPACK_OK);
    struct stat st;
    CHECK(stat(path, &st) == 0);
    CHECK(kernel_cache_header_check(&h, h.key, 0, &p, (uint64_t)st.st_size) == NULL);
    CHECK(kernel_cache_header_check(&h, h.key, 1, &p, (uint64_t)st.st_size) != NULL);
    CHECK(kernel_cache_header_check(&h, h.key, 0, &p, (uint64_t)st.st_size - 4096) != NULL);
    struct kernel_cache_header bad = h;
    bad.span++;
    CHECK(kernel_cache_header_check(&bad, h.key, 0, &p, (uint64_t)st.st_size) != NULL); /* the checksum */
    bad.checksum = XXH3_64bits(&bad, offsetof(struct kernel_cache_header, checksum));
    CHECK(kernel_cache_header_check(&bad, h.key, 0, &p, (uint64_t)st.st_size) != NULL); /* the layout */
    bad = h;
    bad.key[0] ^= 1;
    bad.checksum = XXH3_64bits(&bad, offsetof(struct kernel_cache_header, checksum));
    CHECK(kernel_cache_header_check(&bad, h.key, 0, &p, (uint64_t)st.st_size) != NULL);
    free(gm.host);
    remove_dir();
}

/* The key files of the directory: how many, and the first's path. */
static unsigned key_files(char *path, size_t n) {
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    struct dirent *e;
    unsigned k = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".key") == 0 && k++ == 0)
            snprintf(path, n, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    return k;
}

TEST(a_bzimage_files_key_is_remembered_by_its_identity_and_checked) {
    fresh_dir();
    char key[400];
    struct load *l = load(0); /* a launch never hashes: no key yet */
    CHECK_EQ(l->k.unpacked.cache, BZIMAGE_CACHE_FILLING);
    free_load(l);
    CHECK_EQ(key_files(key, sizeof key), 0u);
    fill(false); /* the filler hashes it, and remembers */
    CHECK_EQ(key_files(key, sizeof key), 1u);
    l = load(0);
    CHECK_EQ(l->k.unpacked.cache, BZIMAGE_CACHE_HIT);
    free_load(l);
    /* a spoilt record is not trusted: the launch unpacks, the filler hashes again */
    FILE *f = fopen(key, "r+b");
    CHECK(f && fseek(f, 70, SEEK_SET) == 0 && fputc('!', f) != EOF);
    fclose(f);
    l = load(0);
    CHECK_EQ(l->k.unpacked.cache, BZIMAGE_CACHE_FILLING);
    free_load(l);
    fill(false);
    l = load(0);
    CHECK_EQ(l->k.unpacked.cache, BZIMAGE_CACHE_HIT);
    same_as_uncached(l, 0);
    free_load(l);
    remove_dir();
}
