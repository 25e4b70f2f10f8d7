/* The written-pages bitmap (base/dirty_pages.h) and guest RAM's accessors that mark it: a
 * range marks every page it touches and no other, runs come back in order, KVM's slot bitmaps
 * land at any bit, and each kind of write through guest_mem (copies, files' pages, zeroing,
 * discards, pointers for writing) marks its pages, while nothing is marked without tracking. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/guest_mem.h"
#include "tests/lib/check.h"

#define PAGE 4096u

static uint64_t runs_total(const struct dirty_pages *d, unsigned *nruns) {
    uint64_t total = 0;
    *nruns = 0;
    for (uint64_t p = 0, end; (end = dirty_pages_next_run(d, &p)) > p; p = end) {
        CHECK(end <= d->pages);
        for (uint64_t i = p; i < end; i++) CHECK(dirty_pages_test(d, i));
        CHECK(p == 0 || !dirty_pages_test(d, p - 1));
        total += end - p;
        ++*nruns;
    }
    return total;
}

TEST(a_range_marks_every_page_it_touches_and_no_other) {
    struct dirty_pages d;
    CHECK_EQ(dirty_pages_init(&d, 200 * PAGE + 1), 0); /* rounded up: 201 pages */
    CHECK_EQ(d.pages, 201);
    dirty_pages_mark(&d, PAGE - 1, 2); /* the last byte of page 0, the first of page 1 */
    dirty_pages_mark(&d, 63 * PAGE, PAGE + 1); /* pages 63 and 64, across a word */
    dirty_pages_mark(&d, 100 * PAGE, 0);        /* nothing */
    dirty_pages_mark(&d, 199 * PAGE, 10 * PAGE); /* clipped at the end */
    dirty_pages_mark(&d, UINT64_MAX - 5, 10);    /* past the end (and its end wraps): nothing */
    static const uint64_t want[] = {0, 1, 63, 64, 199, 200};
    unsigned nruns;
    CHECK_EQ(runs_total(&d, &nruns), 6);
    CHECK_EQ(nruns, 3);
    for (unsigned i = 0; i < 6; i++) CHECK(dirty_pages_test(&d, want[i]));
    CHECK(!dirty_pages_test(&d, 2) && !dirty_pages_test(&d, 62) && !dirty_pages_test(&d, 65) && !dirty_pages_test(&d, 201));
    CHECK_EQ(dirty_pages_count(&d), 6);
    dirty_pages_clear(&d);
    CHECK_EQ(dirty_pages_count(&d), 0);
    uint64_t p = 0;
    CHECK_EQ(dirty_pages_next_run(&d, &p), 201);
    CHECK_EQ(p, 201);
    dirty_pages_mark_all(&d);
    CHECK_EQ(runs_total(&d, &nruns), 201);
    CHECK_EQ(nruns, 1);
    dirty_pages_free(&d);
}

TEST(bitmaps_or_in_at_any_bit) {
    uint64_t src[3];
    for (unsigned shift = 0; shift < 130; shift += 7) {
        for (unsigned nbits = 1; nbits <= 190; nbits += 13) {
            uint64_t dst[6] = {0};
            for (unsigned i = 0; i < 3; i++) src[i] = 0x9e3779b97f4a7c15ull * (i + 1) ^ shift;
            bitmap_or_at(dst, shift, src, nbits);
            for (unsigned b = 0; b < 6 * 64; b++) {
                bool want = b >= shift && b - shift < nbits && (src[(b - shift) / 64] >> ((b - shift) % 64) & 1);
                CHECK_MSG((dst[b / 64] >> (b % 64) & 1) == want, "shift %u, %u bits: bit %u", shift, nbits, b);
            }
        }
    }
}

TEST(or_and_count_over_whole_bitmaps) {
    struct dirty_pages a, b;
    CHECK_EQ(dirty_pages_init(&a, 1000 * PAGE), 0);
    CHECK_EQ(dirty_pages_init(&b, 1000 * PAGE), 0);
    dirty_pages_mark(&a, 0, 10 * PAGE);
    dirty_pages_mark(&b, 5 * PAGE, 10 * PAGE);
    dirty_pages_mark(&b, 999 * PAGE, 1);
    dirty_pages_or(&a, &b);
    CHECK_EQ(dirty_pages_count(&a), 16);
    unsigned nruns;
    CHECK_EQ(runs_total(&a, &nruns), 16);
    CHECK_EQ(nruns, 2);
    dirty_pages_free(&a);
    dirty_pages_free(&b);
}

/* RAM as bellhop has it, tracked. */
struct tracked {
    struct gm_files files;
    struct dirty_pages written;
    struct guest_mem gm;
};

#define RAM (4u << 20)

static void track(struct tracked *t) {
    uint8_t *host = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(host != MAP_FAILED);
    t->files = (struct gm_files){0};
    CHECK_EQ(dirty_pages_init(&t->written, RAM), 0);
    t->gm = (struct guest_mem){.host = host, .size = RAM, .files = &t->files, .written = &t->written};
}

TEST(every_write_through_guest_mem_marks_its_pages) {
    struct tracked t;
    track(&t);
    uint8_t bytes[100] = {1};
    CHECK(gm_write(&t.gm, 10 * PAGE - 50, bytes, sizeof bytes)); /* pages 9 and 10 */
    CHECK(!gm_write(&t.gm, RAM - 50, bytes, sizeof bytes));     /* refused: marks nothing */
    CHECK(gm_zero(&t.gm, 20 * PAGE, 3 * PAGE));                 /* 20-22: dropped, zeros now */
    CHECK(gm_discard(&t.gm, 30 * PAGE, PAGE));                  /* 30 */
    CHECK(gm_ptr_write(&t.gm, 40 * PAGE + 8, 8) != NULL);       /* 40 */
    CHECK(gm_ptr(&t.gm, 50 * PAGE, PAGE) != NULL);              /* a pointer to read: nothing */
    gm_mark_host(&t.gm, t.gm.host + 60 * PAGE + 4095, 2);        /* 60, 61 (a virtqueue's buffer) */
    /* a file's pages, copy-on-write where they line up (70-71), copied at the ends (69, 72) */
    char path[] = "/tmp/bellhop-dirty-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    static uint8_t image[4 * PAGE];
    memset(image, 7, sizeof image);
    CHECK_EQ(write(fd, image, sizeof image), (ssize_t)sizeof image);
    unlink(path);
    CHECK(gm_write_file(&t.gm, 70 * PAGE - 100, image, sizeof image, fd, PAGE - 100, 2 * PAGE + 200));
    static const uint64_t want[] = {9, 10, 20, 21, 22, 30, 40, 60, 61, 69, 70, 71, 72};
    CHECK_EQ(dirty_pages_count(&t.written), sizeof want / sizeof want[0]);
    for (unsigned i = 0; i < sizeof want / sizeof want[0]; i++) CHECK_MSG(dirty_pages_test(&t.written, want[i]), "page %" PRIu64, want[i]);
    close(fd);
    munmap(t.gm.host, RAM);
    dirty_pages_free(&t.written);
}

TEST(without_tracking_nothing_is_marked) {
    struct tracked t;
    track(&t);
    t.gm.written = NULL;
    uint8_t b = 1;
    CHECK(gm_write(&t.gm, 0, &b, 1));
    CHECK(gm_zero(&t.gm, PAGE, PAGE));
    CHECK(gm_discard(&t.gm, 2 * PAGE, PAGE));
    gm_mark(&t.gm, 3 * PAGE, PAGE);
    CHECK_EQ(dirty_pages_count(&t.written), 0);
    munmap(t.gm.host, RAM);
    dirty_pages_free(&t.written);
}
