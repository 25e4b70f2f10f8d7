/* Dirty page tracking against a shadow of what was written: random writes into guest RAM
 * through every guest_mem accessor that writes (copies, files' pages copy-on-write, zeroing,
 * discards, pointers for writing, a virtqueue buffer's marks), and "guest" writes straight
 * into RAM that only a fake KVM's per-slot dirty log records, gathered into the bitmap as
 * vmm/hv/dirty_log.c does (slots starting anywhere, not on a word). At each snapshot the
 * Diff's memory file must hold exactly the pages written since the last one, and rebased onto
 * the memory as it was then, must be all of RAM, byte for byte: no page missed, none extra. */
#include <fcntl.h>
#include <stdbool.h>
#include <sys/mman.h>

#include "base/guest_mem.h"
#include "tests/fuzz/fuzz.h"
#include "vmm/control/snapshot_cmd.h"
#include "vmm/machine/snapshot_memory.h"

#define PAGE 4096u
#define PAGES 150u /* not a multiple of 64: the bitmap's last word is partial */
#define RAM (PAGES * PAGE)
#define SLOTS 3
#define IMAGE (4 * PAGE)

struct world {
    struct guest_mem gm;
    struct gm_files files;
    struct dirty_pages written;
    bool shadow[PAGES];          /* written since the last snapshot, as the fuzzer knows it */
    uint64_t slot_start[SLOTS + 1]; /* the fake KVM's slots: [start[i], start[i+1]) pages */
    uint64_t slot_log[SLOTS][(PAGES + 63) / 64];
    int image, base, diff; /* a file to take pages from; the memory at the last snapshot; the diff */
    const uint8_t *image_map;
    char base_path[32], diff_path[32];
};

static int memfd(const char *name, uint64_t size, char *path) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0) abort();
    if (path) snprintf(path, 32, "/proc/self/fd/%d", fd);
    return fd;
}

static void shadow(struct world *w, uint64_t gpa, uint64_t len) {
    for (uint64_t p = gpa / PAGE; len && p <= (gpa + len - 1) / PAGE; p++) w->shadow[p] = true;
}

/* A range mostly inside RAM, sometimes across its end or anywhere. */
static void range(struct cursor *c, uint64_t *gpa, uint64_t *len) {
    uint8_t kind = (uint8_t)take(c, 1);
    *gpa = kind & 1 ? take(c, 8) : take(c, 3) % (RAM + 100);
    *len = kind & 2 ? take(c, 8) : take(c, 3) % (3 * PAGE);
}

static void guest_write(struct world *w, struct cursor *c) {
    uint64_t page = take(c, 1) % PAGES, n = 1 + take(c, 1) % 8;
    uint8_t value = (uint8_t)take(c, 1);
    for (uint64_t p = page; p < page + n && p < PAGES; p++) {
        w->gm.host[p * PAGE + value % PAGE] = value | 1;
        for (unsigned s = 0; s < SLOTS; s++)
            if (p >= w->slot_start[s] && p < w->slot_start[s + 1]) {
                uint64_t i = p - w->slot_start[s];
                w->slot_log[s][i / 64] |= 1ull << (i % 64);
            }
        w->shadow[p] = true;
    }
}

static void harvest(struct world *w) {
    for (unsigned s = 0; s < SLOTS; s++) {
        bitmap_or_at(w->written.bits, w->slot_start[s], w->slot_log[s], w->slot_start[s + 1] - w->slot_start[s]);
        memset(w->slot_log[s], 0, sizeof w->slot_log[s]);
    }
}

static void check_snapshot(struct world *w) {
    harvest(w);
    if (snapshot_write_diff(w->diff, w->gm.host, RAM, &w->written) != 0) abort();
    struct dirty_pages data;
    if (dirty_pages_init(&data, RAM) != 0 || snapshot_file_pages(w->diff, RAM, &data) != 0) abort();
    for (uint64_t p = 0; p < PAGES; p++)
        if (dirty_pages_test(&data, p) != w->shadow[p]) abort(); /* missed, or one too many */
    dirty_pages_free(&data);
    char err[300];
    if (snapshot_rebase(w->base_path, w->diff_path, err, sizeof err) != 0) abort();
    static uint8_t page[PAGE];
    for (uint64_t p = 0; p < PAGES; p++)
        if (pread(w->base, page, PAGE, (off_t)(p * PAGE)) != PAGE || memcmp(page, w->gm.host + p * PAGE, PAGE)) abort();
    dirty_pages_clear(&w->written);
    memset(w->shadow, 0, sizeof w->shadow);
}

static void step(struct world *w, struct cursor *c) {
    uint64_t gpa, len;
    static uint8_t bytes[3 * PAGE];
    switch (take(c, 1) % 8) {
    case 0: /* a copy (the loaders, vmgenid) */
        range(c, &gpa, &len);
        memset(bytes, (int)take(c, 1), sizeof bytes);
        if (len > sizeof bytes) len = sizeof bytes;
        if (gm_write(&w->gm, gpa, bytes, len)) shadow(w, gpa, len);
        break;
    case 1:
        range(c, &gpa, &len);
        if (gm_zero(&w->gm, gpa, len)) shadow(w, gpa, len);
        break;
    case 2: /* the balloon's discards: whole pages */
        gpa = take(c, 1) % (PAGES + 2) * PAGE, len = (1 + take(c, 1) % 4) * PAGE;
        if (gm_discard(&w->gm, gpa, len)) shadow(w, gpa, len);
        break;
    case 3: { /* a file's pages, copy-on-write where they line up */
        range(c, &gpa, &len);
        uint64_t off = take(c, 2) % IMAGE, n = len < IMAGE - off ? len : IMAGE - off;
        if (gm_write_file(&w->gm, gpa, w->image_map, IMAGE, w->image, off, n)) shadow(w, gpa, n);
        break;
    }
    case 4: { /* a loader's tables built in place */
        range(c, &gpa, &len);
        uint8_t *p = gm_ptr_write(&w->gm, gpa, len);
        if (p) memset(p, 0x5a, len), shadow(w, gpa, len);
        break;
    }
    case 5: { /* a device filling a virtqueue buffer, marked by its host pointer */
        range(c, &gpa, &len);
        uint8_t *p = gm_ptr(&w->gm, gpa, len);
        if (p) memset(p, 0x77, len), gm_mark_host(&w->gm, p, len), shadow(w, gpa, len);
        break;
    }
    case 6:
        guest_write(w, c);
        break;
    default:
        if (take(c, 1) & 1) harvest(w); /* a take that is not yet a snapshot */
        else check_snapshot(w);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct world w;
    if (!w.gm.host) {
        w.image = memfd("image", IMAGE, NULL);
        uint8_t pattern[IMAGE];
        for (unsigned i = 0; i < sizeof pattern; i++) pattern[i] = (uint8_t)(i * 31 + 7);
        if (pwrite(w.image, pattern, sizeof pattern, 0) != (ssize_t)sizeof pattern) abort();
        w.image_map = mmap(NULL, IMAGE, PROT_READ, MAP_PRIVATE, w.image, 0);
        if (w.image_map == MAP_FAILED) abort();
        w.base = memfd("base", RAM, w.base_path);
        w.diff = memfd("diff", RAM, w.diff_path);
        if (dirty_pages_init(&w.written, RAM) != 0) abort();
    } else {
        munmap(w.gm.host, RAM);
    }
    /* fresh RAM, base and bitmaps: all zeros, nothing written */
    uint8_t *host = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (host == MAP_FAILED || ftruncate(w.base, 0) != 0 || ftruncate(w.base, RAM) != 0) abort();
    w.files = (struct gm_files){0};
    w.gm = (struct guest_mem){.host = host, .size = RAM, .files = &w.files, .written = &w.written};
    dirty_pages_clear(&w.written);
    memset(w.shadow, 0, sizeof w.shadow);
    memset(w.slot_log, 0, sizeof w.slot_log);
    struct cursor c = {data, size};
    uint64_t a = take(&c, 1) % PAGES, b = take(&c, 1) % PAGES;
    w.slot_start[0] = 0, w.slot_start[1] = a < b ? a : b, w.slot_start[2] = a < b ? b : a, w.slot_start[3] = PAGES;
    for (unsigned steps = 0; c.n && steps < 200; steps++) step(&w, &c);
    check_snapshot(&w);
    return 0;
}
