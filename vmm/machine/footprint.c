/* Giving back startup's page mappings (see footprint.h). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/machine/footprint.h"

#define PAGE_SIZE 4096ul

#define MAX_RANGES 256
#define PM_FILE (1ull << 61) /* /proc/self/pagemap: a file page (or shared anonymous) */
#define PM_SWAP (1ull << 62)
#define PM_PRESENT (1ull << 63)

struct range {
    unsigned long start, end;
};

/* Whether any page of [start, end) is this process's own (anonymous: written, e.g. a
 * relocation). pagemap's flag bits need no privilege; unreadable counts as written. */
static bool holds_writes(int pagemap, unsigned long start, unsigned long end) {
    uint64_t e[64];
    for (unsigned long at = start; at < end;) {
        size_t n = (end - at) / PAGE_SIZE < 64 ? (end - at) / PAGE_SIZE : 64;
        if (pread(pagemap, e, n * sizeof e[0], (off_t)(at / PAGE_SIZE * sizeof e[0])) != (ssize_t)(n * sizeof e[0]))
            return true;
        for (size_t i = 0; i < n; i++)
            if ((e[i] & PM_SWAP) || ((e[i] & PM_PRESENT) && !(e[i] & PM_FILE))) return true;
        at += n * PAGE_SIZE;
    }
    return false;
}

/* The mappings to drop: read-only, private, backed by a file, and holding no page of ours.
 * /proc/self/maps and pagemap, not smaps: smaps would walk the guest's RAM too. */
static unsigned find_ranges(FILE *maps, int pagemap, struct range *out) {
    char line[512];
    unsigned n = 0;
    while (n < MAX_RANGES && fgets(line, sizeof line, maps)) {
        unsigned long start, end, inode;
        char perms[8];
        int path_at = 0;
        if (sscanf(line, "%lx-%lx %7s %*x %*x:%*x %lu %n", &start, &end, perms, &inode, &path_at) != 4) continue;
        if (perms[0] != 'r' || perms[1] == 'w' || perms[3] != 'p' || inode == 0 || line[path_at] != '/') continue;
        if (!holds_writes(pagemap, start, end)) out[n++] = (struct range){start, end};
    }
    return n;
}

size_t footprint_trim(void) {
    static struct range ranges[MAX_RANGES];
    FILE *maps = fopen("/proc/self/maps", "re");
    int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    unsigned n = maps && pagemap >= 0 ? find_ranges(maps, pagemap, ranges) : 0;
    if (maps) fclose(maps);
    if (pagemap >= 0) close(pagemap);
    /* Nothing but madvise from here on: any other call into libc would fault its pages back. */
    size_t dropped = 0;
    for (unsigned i = 0; i < n; i++)
        if (madvise((void *)ranges[i].start, ranges[i].end - ranges[i].start, MADV_DONTNEED) == 0)
            dropped += ranges[i].end - ranges[i].start;
    return dropped;
}
