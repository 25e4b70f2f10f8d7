/* Giving back startup's page mappings (see footprint.h). */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "vmm/footprint.h"

#define MAX_RANGES 256

struct range {
    unsigned long start, end;
};

/* The mappings to drop: read-only, private, backed by a file, and without anonymous pages
 * (in a private file mapping those are this process's writes, e.g. relocations). */
static unsigned find_ranges(FILE *f, struct range *out) {
    char line[512];
    unsigned n = 0;
    bool candidate = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long start, end, inode;
        char perms[8];
        int path_at = 0;
        long anon;
        if (sscanf(line, "%lx-%lx %7s %*x %*x:%*x %lu %n", &start, &end, perms, &inode, &path_at) == 4) {
            candidate = perms[0] == 'r' && perms[1] != 'w' && perms[3] == 'p' && inode != 0 && line[path_at] == '/';
            if (candidate && n < MAX_RANGES) out[n] = (struct range){start, end};
        } else if (candidate && sscanf(line, "Anonymous: %ld kB", &anon) == 1) {
            if (anon == 0 && n < MAX_RANGES) n++;
            candidate = false;
        }
    }
    return n;
}

size_t footprint_trim(void) {
    static struct range ranges[MAX_RANGES];
    FILE *f = fopen("/proc/self/smaps", "re");
    if (!f) return 0;
    unsigned n = find_ranges(f, ranges);
    fclose(f);
    /* Nothing but madvise from here on: any other call into libc would fault its pages back. */
    size_t dropped = 0;
    for (unsigned i = 0; i < n; i++)
        if (madvise((void *)ranges[i].start, ranges[i].end - ranges[i].start, MADV_DONTNEED) == 0)
            dropped += ranges[i].end - ranges[i].start;
    return dropped;
}
