/* A snapshot's memory file (see snapshot_memory.h). */
#include <errno.h>
#include <fcntl.h>
#include <lzma.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "base/error_text.h"
#include "vmm/machine/snapshot_memory.h"

#define PAGE DIRTY_PAGE_SIZE
#define CHUNK 4096u /* pages asked about at a time: 4 KiB of mincore's answer, 32 of pagemap's */
#define PROBE_LOOK 64u /* pages read, at most, in each eighth of RAM for a probe */
#define PREALLOCATE (1u << 20) /* a run this long or longer has its blocks allocated first */

/* Not instrumented under TSan: it reads the paused guest's RAM, where no race is to be found,
 * and instrumented it took most of the 30 s a test gives a 128 MiB snapshot, nested. */
__attribute__((no_sanitize("thread"))) static bool page_is_zero(const uint8_t *p) {
    uint64_t acc = 0;
    for (unsigned i = 0; i < PAGE; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        acc |= v;
    }
    return acc == 0;
}

/* Pages [first, first + n) of d from a per-page predicate's answers, 64 at a time. */
static void mark_from(struct dirty_pages *d, uint64_t first, const uint8_t *yes, uint64_t n) {
    for (uint64_t i = 0; i < n; i += 64) {
        uint64_t word = 0, k = n - i < 64 ? n - i : 64;
        for (uint64_t j = 0; j < k; j++) word |= (uint64_t)(yes[i + j] & 1) << j;
        bitmap_or_at(d->bits, first + i, &word, k);
    }
}

int snapshot_touched_pages_pagemap(const uint8_t *mem, uint64_t size, struct dirty_pages *d) {
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    uint64_t entry[512];
    uint8_t yes[512];
    int rc = 0;
    for (uint64_t p = 0; rc == 0 && p < size / PAGE; p += 512) {
        uint64_t n = size / PAGE - p < 512 ? size / PAGE - p : 512;
        off_t at = (off_t)(((uintptr_t)mem / PAGE + p) * sizeof entry[0]);
        if (pread(fd, entry, n * sizeof entry[0], at) != (ssize_t)(n * sizeof entry[0])) {
            rc = -1;
            break;
        }
        for (uint64_t i = 0; i < n; i++) yes[i] = (entry[i] >> 62) != 0; /* 63: present, 62: swapped */
        mark_from(d, p, yes, n);
    }
    close(fd);
    return rc;
}

int snapshot_touched_pages(const uint8_t *mem, uint64_t size, struct dirty_pages *d) {
    struct sysinfo si;
    if (sysinfo(&si) != 0 || si.totalswap != 0) return snapshot_touched_pages_pagemap(mem, size, d);
    uint8_t vec[CHUNK];
    for (uint64_t p = 0; p < size / PAGE; p += CHUNK) {
        uint64_t n = size / PAGE - p < CHUNK ? size / PAGE - p : CHUNK;
        if (mincore((void *)(mem + p * PAGE), n * PAGE, vec) != 0) return -1;
        mark_from(d, p, vec, n);
    }
    return 0;
}

int snapshot_file_pages(int fd, uint64_t size, struct dirty_pages *d) {
    for (off_t at = 0; (uint64_t)at < size;) {
        off_t data = lseek(fd, at, SEEK_DATA);
        if (data < 0) return errno == ENXIO ? 0 : -1; /* ENXIO: nothing but holes after at */
        off_t hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0) return -1;
        if ((uint64_t)data >= size) break;
        dirty_pages_mark(d, (uint64_t)data, (uint64_t)hole - (uint64_t)data);
        at = hole;
    }
    return 0;
}

static int pwrite_all(int fd, const uint8_t *p, uint64_t len, uint64_t at) {
    /* A long run's blocks taken at once: ext4 then writes each page into blocks it has, rather
     * than reserving them page by page (10 MiB: 2.3 ms rather than 3.3 on this project's PVM
     * host; tmpfs neither gains nor loses). Where the filesystem cannot, the write does it. */
    if (len >= PREALLOCATE) (void)fallocate(fd, 0, (off_t)at, (off_t)len);
    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)at);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = EIO;
            return -1;
        }
        p += n, len -= (uint64_t)n, at += (uint64_t)n;
    }
    return 0;
}

/* Pages [start, end) of mem, its runs of non-zero pages written with as few calls as it takes. */
static int write_nonzero(int fd, const uint8_t *mem, uint64_t start, uint64_t end) {
    for (uint64_t p = start; p < end;) {
        while (p < end && page_is_zero(mem + p * PAGE)) p++;
        uint64_t run = p;
        while (p < end && !page_is_zero(mem + p * PAGE)) p++;
        if (p > run && pwrite_all(fd, mem + run * PAGE, (p - run) * PAGE, run * PAGE) != 0) return -1;
    }
    return 0;
}

static int sized(int fd, uint64_t size) { return ftruncate(fd, 0) == 0 && ftruncate(fd, (off_t)size) == 0 ? 0 : -1; }

int snapshot_write_full(int fd, const uint8_t *mem, uint64_t size, const struct dirty_pages *read) {
    if (sized(fd, size) != 0) return -1;
    if (!read) return write_nonzero(fd, mem, 0, size / PAGE);
    for (uint64_t p = 0, end; (end = dirty_pages_next_run(read, &p)) > p; p = end)
        if (write_nonzero(fd, mem, p, end) != 0) return -1;
    return 0;
}

/* Whether the file's data is exactly the runs written, checked on the first EXACT_RUNS: a
 * filesystem that allocates in larger units (ZFS's records, tmpfs's huge pages, one without
 * holes) has data around them, which a rebase would copy, as zeros, over its base's pages. */
#define EXACT_RUNS 64u
static bool holes_exact(int fd, const struct dirty_pages *dirty) {
    unsigned checked = 0;
    for (uint64_t p = 0, end; checked < EXACT_RUNS && (end = dirty_pages_next_run(dirty, &p)) > p; p = end, checked++)
        if (lseek(fd, (off_t)((p ? p - 1 : 0) * PAGE), SEEK_DATA) != (off_t)(p * PAGE) ||
            lseek(fd, (off_t)(p * PAGE), SEEK_HOLE) != (off_t)(end * PAGE))
            return false;
    return true;
}

int snapshot_write_diff(int fd, const uint8_t *mem, uint64_t size, const struct dirty_pages *dirty) {
    if (sized(fd, size) != 0) return -1;
    for (uint64_t p = 0, end; (end = dirty_pages_next_run(dirty, &p)) > p; p = end)
        if (pwrite_all(fd, mem + p * PAGE, (end - p) * PAGE, p * PAGE) != 0) return -1;
    return holes_exact(fd, dirty) ? 0 : 1;
}

/* The first page of [p, end) that may be a probe, reading at most PROBE_LOOK; end if none. */
static uint64_t probe_in(const uint8_t *mem, uint64_t p, uint64_t end, const struct dirty_pages *dirty,
                         const struct dirty_pages *held) {
    for (unsigned looked = 0; p < end && looked < PROBE_LOOK; p++) {
        if (held && !dirty_pages_test(held, p)) { /* to the next page held */
            uint64_t next = p;
            dirty_pages_next_run(held, &next);
            p = next - 1;
            continue;
        }
        if (dirty_pages_test(dirty, p)) continue;
        looked++;
        if (!page_is_zero(mem + p * PAGE)) return p;
    }
    return end;
}

unsigned snapshot_pick_probes(const uint8_t *mem, uint64_t size, const struct dirty_pages *dirty,
                              const struct dirty_pages *held, struct snapshot_probe out[SNAPSHOT_MAX_PROBES]) {
    uint64_t pages = size / PAGE;
    unsigned n = 0;
    for (uint64_t part = 0; part < SNAPSHOT_MAX_PROBES; part++) {
        uint64_t end = pages * (part + 1) / SNAPSHOT_MAX_PROBES;
        uint64_t p = probe_in(mem, pages * part / SNAPSHOT_MAX_PROBES, end, dirty, held);
        if (p < end) out[n++] = (struct snapshot_probe){p, lzma_crc64(mem + p * PAGE, PAGE, 0)};
    }
    return n;
}

int snapshot_check_probes(const struct snapshot *s, int fd, const char *mem_path, char *err, size_t errlen) {
    uint8_t page[PAGE];
    for (unsigned i = 0; fd >= 0 && i < s->nprobes; i++) {
        ssize_t n = pread(fd, page, PAGE, (off_t)(s->probes[i].page * PAGE));
        if (n < 0) return error_text(err, errlen, "mem file %s: %s", mem_path, strerror(errno));
        if (n != (ssize_t)PAGE || lzma_crc64(page, PAGE, 0) != s->probes[i].crc)
            return error_text(err, errlen, "mem file %s: a diff snapshot (its own memory file, or rebased onto another "
                                           "base): rebase it onto its base first (bellhop snapshot rebase BASE_MEM "
                                           "DIFF_MEM) and restore with BASE_MEM", mem_path);
    }
    return 0;
}
