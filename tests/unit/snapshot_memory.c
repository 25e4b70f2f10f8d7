/* A snapshot's memory file without KVM (vmm/machine/snapshot_memory.h): a Full file has the
 * pages it was told to read, zeros as holes; a Diff's data is exactly its dirty pages, zero
 * ones included; the pages a mapping faulted in are found (mincore and pagemap alike) and a
 * file's data; a diff's probes refuse its own file and another base, and pass it rebased
 * (bellhop snapshot rebase, whose hostile inputs are one-line refusals); a diff's state file
 * is 1.1.0 and a Full's still 1.0.0. Files in /tmp, which must keep holes page by page. */
#include <fcntl.h>
#include <lzma.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/lib/check.h"
#include "vmm/control/snapshot_cmd.h"
#include "vmm/machine/snapshot_file.h"
#include "vmm/machine/snapshot_memory.h"

#define PAGE 4096u
#define PAGES 256u
#define RAM (PAGES * PAGE)

static uint8_t *ram(void) {
    uint8_t *m = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(m != MAP_FAILED);
    return m;
}

/* A new empty file in /tmp (unlinked when path is NULL), open read-write. */
static int temp_file(char *path) {
    char buf[64] = "/tmp/bellhop-snapmem-XXXXXX";
    int fd = mkstemp(path ? path : buf);
    CHECK(fd >= 0);
    if (!path) unlink(buf);
    return fd;
}

/* The pages of fd's data (SEEK_DATA/SEEK_HOLE). */
static void data_pages(int fd, struct dirty_pages *d) {
    CHECK_EQ(dirty_pages_init(d, RAM), 0);
    CHECK_EQ(snapshot_file_pages(fd, RAM, d), 0);
}

static bool same_bits(const struct dirty_pages *a, const struct dirty_pages *b) {
    for (uint64_t p = 0; p < a->pages; p++)
        if (dirty_pages_test(a, p) != dirty_pages_test(b, p)) return false;
    return true;
}

static bool file_holds(int fd, const uint8_t *mem, uint64_t page) {
    uint8_t buf[PAGE];
    return pread(fd, buf, PAGE, (off_t)(page * PAGE)) == PAGE && memcmp(buf, mem + page * PAGE, PAGE) == 0;
}

TEST(a_full_file_has_the_pages_it_reads_and_zeros_as_holes) {
    uint8_t *m = ram();
    memset(m + 3 * PAGE, 1, PAGE);
    memset(m + 10 * PAGE, 2, 2 * PAGE);
    m[100 * PAGE + 5] = 3;
    memset(m + 20 * PAGE, 0, PAGE); /* touched, but zeros: a hole */
    struct dirty_pages read;
    CHECK_EQ(dirty_pages_init(&read, RAM), 0);
    dirty_pages_mark(&read, 0, 50 * PAGE); /* page 100 not among those read: not written */
    int fd = temp_file(NULL);
    CHECK_EQ(snapshot_write_full(fd, m, RAM, &read), 0);
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_size == RAM);
    struct dirty_pages got, want;
    data_pages(fd, &got);
    CHECK_EQ(dirty_pages_init(&want, RAM), 0);
    dirty_pages_mark(&want, 3 * PAGE, PAGE);
    dirty_pages_mark(&want, 10 * PAGE, 2 * PAGE);
    CHECK(same_bits(&got, &want));
    CHECK(file_holds(fd, m, 3) && file_holds(fd, m, 11) && file_holds(fd, m, 20));
    /* without a bitmap, every page is read */
    CHECK_EQ(snapshot_write_full(fd, m, RAM, NULL), 0);
    dirty_pages_mark(&want, 100 * PAGE, 1);
    dirty_pages_free(&got);
    data_pages(fd, &got);
    CHECK(same_bits(&got, &want));
    close(fd);
    munmap(m, RAM);
}

TEST(a_diff_file_has_exactly_its_dirty_pages_zero_ones_too) {
    uint8_t *m = ram();
    memset(m, 9, RAM);
    struct dirty_pages dirty;
    CHECK_EQ(dirty_pages_init(&dirty, RAM), 0);
    dirty_pages_mark(&dirty, 0, PAGE);
    dirty_pages_mark(&dirty, 7 * PAGE, 3 * PAGE);
    memset(m + 8 * PAGE, 0, PAGE); /* dirty and zeros: data all the same */
    dirty_pages_mark(&dirty, (PAGES - 1) * PAGE, PAGE);
    int fd = temp_file(NULL);
    CHECK_EQ(snapshot_write_diff(fd, m, RAM, &dirty), 0);
    struct dirty_pages got;
    data_pages(fd, &got);
    CHECK(same_bits(&got, &dirty));
    CHECK(file_holds(fd, m, 8) && file_holds(fd, m, PAGES - 1));
    close(fd);
    munmap(m, RAM);
}

TEST(a_long_run_taken_at_once_keeps_the_holes_exact) {
    /* (a run of 1 MiB or more has its blocks allocated before it is written) */
    uint64_t size = 4u << 20;
    uint8_t *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(m != MAP_FAILED);
    memset(m + PAGE, 3, 2u << 20);
    struct dirty_pages dirty, got;
    CHECK_EQ(dirty_pages_init(&dirty, size), 0);
    dirty_pages_mark(&dirty, PAGE, 2u << 20);
    dirty_pages_mark(&dirty, size - PAGE, 1);
    int fd = temp_file(NULL);
    CHECK_EQ(snapshot_write_diff(fd, m, size, &dirty), 0);
    CHECK_EQ(dirty_pages_init(&got, size), 0);
    CHECK_EQ(snapshot_file_pages(fd, size, &got), 0);
    for (uint64_t p = 0; p < size / PAGE; p++) CHECK_MSG(dirty_pages_test(&got, p) == dirty_pages_test(&dirty, p), "page %" PRIu64, p);
    close(fd);
    munmap(m, size);
}

static void faulted_in(int (*find)(const uint8_t *, uint64_t, struct dirty_pages *)) {
    uint8_t *m = ram();
    madvise(m, RAM, MADV_NOHUGEPAGE); /* page by page, as asked */
    m[5 * PAGE] = 1;
    volatile uint8_t r = m[77 * PAGE]; /* a read maps the zero page: faulted in too */
    (void)r;
    m[200 * PAGE + 100] = 1;
    struct dirty_pages d;
    CHECK_EQ(dirty_pages_init(&d, RAM), 0);
    CHECK_EQ(find(m, RAM, &d), 0);
    CHECK(dirty_pages_test(&d, 5) && dirty_pages_test(&d, 200));
    CHECK(!dirty_pages_test(&d, 6) && !dirty_pages_test(&d, 100) && !dirty_pages_test(&d, 0));
    CHECK(dirty_pages_count(&d) <= 3);
    munmap(m, RAM);
}

TEST(pages_faulted_in_are_found_and_no_other) {
    faulted_in(snapshot_touched_pages);
    faulted_in(snapshot_touched_pages_pagemap);
}

/* Pages [from, PAGES) of m, a pattern of salt in each. */
static void fill(uint8_t *m, uint32_t from, uint8_t salt) {
    for (uint32_t i = from * PAGE; i < RAM; i += 64) m[i] = (uint8_t)(i / PAGE * 7 + salt) | 1;
}

static void write_file(const char *path, const uint8_t *m) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK_EQ(snapshot_write_full(fd, m, RAM, NULL), 0);
    close(fd);
}

/* A state file of RAM's size whose diff section holds these probes. */
static int parse_with_probes(const struct snapshot_probe *p, unsigned n, struct snapshot *s, uint8_t **buf) {
    struct snapshot_writer w;
    snapshot_writer_init(&w);
    uint8_t head[16] = {0};
    uint64_t mem = RAM;
    memcpy(head, &mem, 8);
    snapshot_add(&w, SNAP_MACHINE, 0, head, sizeof head, "{}", 3);
    snapshot_add(&w, SNAP_GUEST, 0, NULL, 0, "g", 1);
    snapshot_add(&w, SNAP_VCPU, 0, NULL, 0, "c", 1);
    snapshot_add(&w, SNAP_DIFF, 0, NULL, 0, p, n * sizeof *p);
    CHECK_EQ(snapshot_finish(&w), 0);
    *buf = w.buf;
    char err[200];
    return snapshot_parse(w.buf, w.len, s, err, sizeof err);
}

TEST(a_diff_restores_only_rebased_onto_its_base) {
    uint8_t *m = ram();
    fill(m, 0, 1);
    char base[64] = "/tmp/bellhop-base-XXXXXX", diff[64] = "/tmp/bellhop-diff-XXXXXX", other[64] = "/tmp/bellhop-other-XXXXXX";
    close(temp_file(base)), close(temp_file(diff)), close(temp_file(other));
    write_file(base, m);
    fill(m, 64, 2); /* what the guest wrote since */
    memset(m + 4 * PAGE, 0, 64);
    struct dirty_pages dirty;
    CHECK_EQ(dirty_pages_init(&dirty, RAM), 0);
    dirty_pages_mark(&dirty, 64 * PAGE, RAM - 64 * PAGE);
    dirty_pages_mark(&dirty, 4 * PAGE, 64);
    struct snapshot_probe probes[SNAPSHOT_MAX_PROBES];
    unsigned n = snapshot_pick_probes(m, RAM, &dirty, NULL, probes);
    CHECK_EQ(n, 2); /* the eighths of RAM that are not all dirty */
    for (unsigned i = 0; i < n; i++) CHECK(!dirty_pages_test(&dirty, probes[i].page));
    int fd = open(diff, O_RDWR);
    CHECK_EQ(snapshot_write_diff(fd, m, RAM, &dirty), 0);
    close(fd);
    struct snapshot s;
    uint8_t *buf;
    CHECK_EQ(parse_with_probes(probes, n, &s, &buf), 0);
    CHECK(s.diff && s.nprobes == n && s.minor == 1);
    char err[300];
    fd = open(diff, O_RDONLY);
    CHECK_EQ(snapshot_check_probes(&s, fd, diff, err, sizeof err), -1); /* the diff's own file */
    CHECK_MSG(strstr(err, "a diff snapshot") && strstr(err, "rebase it onto its base first"), "%s", err);
    close(fd);
    uint8_t *o = ram();
    fill(o, 0, 5);
    write_file(other, o);
    CHECK_EQ(snapshot_rebase(other, diff, err, sizeof err), 0); /* onto another base: the probes tell */
    fd = open(other, O_RDONLY);
    CHECK_EQ(snapshot_check_probes(&s, fd, other, err, sizeof err), -1);
    close(fd);
    CHECK_EQ(snapshot_rebase(base, diff, err, sizeof err), 0);
    fd = open(base, O_RDONLY);
    CHECK_EQ(snapshot_check_probes(&s, fd, base, err, sizeof err), 0);
    for (uint64_t p = 0; p < PAGES; p++) CHECK_MSG(file_holds(fd, m, p), "page %" PRIu64, p);
    close(fd);
    free(buf);
    unlink(base), unlink(diff), unlink(other);
    munmap(m, RAM), munmap(o, RAM);
}

TEST(a_diff_of_every_page_needs_no_base) {
    uint8_t *m = ram();
    m[3 * PAGE] = 1;
    struct dirty_pages dirty;
    CHECK_EQ(dirty_pages_init(&dirty, RAM), 0);
    dirty_pages_mark(&dirty, 3 * PAGE, 1);
    struct snapshot_probe probes[SNAPSHOT_MAX_PROBES];
    CHECK_EQ(snapshot_pick_probes(m, RAM, &dirty, NULL, probes), 0); /* every other page is zeros */
    munmap(m, RAM);
}

TEST(rebase_refuses_files_that_cannot_be_a_base_and_its_diff) {
    char a[64] = "/tmp/bellhop-a-XXXXXX", b[64] = "/tmp/bellhop-b-XXXXXX", err[600];
    int fa = temp_file(a), fb = temp_file(b);
    CHECK(ftruncate(fa, RAM) == 0 && ftruncate(fb, 2 * RAM) == 0);
    CHECK_EQ(snapshot_rebase(a, b, err, sizeof err), -1);
    CHECK_MSG(strstr(err, "is larger than its base"), "%s", err);
    CHECK(ftruncate(fb, RAM / 2) == 0);
    CHECK_EQ(snapshot_rebase(a, b, err, sizeof err), -1);
    CHECK_MSG(strstr(err, "is not the size of"), "%s", err);
    CHECK_EQ(snapshot_rebase(a, a, err, sizeof err), -1);
    CHECK_MSG(strstr(err, "the same file"), "%s", err);
    CHECK_EQ(snapshot_rebase(a, "/tmp", err, sizeof err), -1);
    CHECK_MSG(strstr(err, "not a regular file"), "%s", err);
    CHECK_EQ(snapshot_rebase("/nonexistent/base", a, err, sizeof err), -1);
    CHECK_MSG(strstr(err, "No such file"), "%s", err);
    CHECK(!strchr(err, '\n'));
    close(fa), close(fb);
    unlink(a), unlink(b);
}

TEST(a_diff_state_is_1_1_and_a_full_one_1_0) {
    struct snapshot s;
    uint8_t *buf;
    struct snapshot_probe p[2] = {{1, 2}, {PAGES, 3}}; /* the second page lies past memory */
    CHECK_EQ(parse_with_probes(p, 1, &s, &buf), 0);
    CHECK_EQ(s.minor, 1);
    free(buf);
    CHECK_EQ(parse_with_probes(p, 2, &s, &buf), -1);
    free(buf);
    struct snapshot_writer w;
    snapshot_writer_init(&w);
    uint8_t head[16] = {0};
    uint64_t mem = RAM;
    memcpy(head, &mem, 8);
    snapshot_add(&w, SNAP_MACHINE, 0, head, sizeof head, "{}", 3);
    snapshot_add(&w, SNAP_GUEST, 0, NULL, 0, "g", 1);
    snapshot_add(&w, SNAP_VCPU, 0, NULL, 0, "c", 1);
    snapshot_add(&w, SNAP_DIFF, 0, NULL, 0, "12345", 5); /* not whole probes */
    CHECK_EQ(snapshot_finish(&w), 0);
    char err[200];
    CHECK_EQ(snapshot_parse(w.buf, w.len, &s, err, sizeof err), -1);
    CHECK_MSG(strstr(err, "diff section"), "%s", err);
    snapshot_writer_free(&w);
    snapshot_writer_init(&w);
    snapshot_add(&w, SNAP_MACHINE, 0, head, sizeof head, "{}", 3);
    snapshot_add(&w, SNAP_GUEST, 0, NULL, 0, "g", 1);
    snapshot_add(&w, SNAP_VCPU, 0, NULL, 0, "c", 1);
    CHECK_EQ(snapshot_finish(&w), 0);
    CHECK_EQ(snapshot_parse(w.buf, w.len, &s, err, sizeof err), 0);
    CHECK(s.minor == 0 && !s.diff);
    snapshot_writer_free(&w);
}
