/* A snapshot's memory file (docs/snapshots.md): which pages of guest RAM are worth reading,
 * and writing them, Full or Diff; the pages a Diff's state file names so that a restore can
 * tell the diff's own file from the diff rebased onto its base. None of it needs a machine:
 * RAM is a mapping and a size, the pages bitmaps (base/dirty_pages.h). */
#ifndef BELLHOP_VMM_MACHINE_SNAPSHOT_MEMORY_H
#define BELLHOP_VMM_MACHINE_SNAPSHOT_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#include "base/dirty_pages.h"
#include "vmm/machine/snapshot_file.h"

/* ORs into d the pages of mem's mapping that were ever faulted in: mincore(), which is cheap
 * (0.3 ms a GiB) but calls a page out on swap "not in core"; on a host with swap,
 * /proc/self/pagemap's present-or-swapped (2.5 ms a GiB). A page never faulted in reads as
 * zeros (anonymous RAM) or as the file behind the mapping (see snapshot_file_pages). 0, or
 * -1 with errno. */
int snapshot_touched_pages(const uint8_t *mem, uint64_t size, struct dirty_pages *d);
/* The same with pagemap whatever the host (for tests). */
int snapshot_touched_pages_pagemap(const uint8_t *mem, uint64_t size, struct dirty_pages *d);
/* ORs into d the pages of file fd's first `size` bytes that are data, not holes
 * (SEEK_DATA/SEEK_HOLE; a filesystem without them has no holes). 0, or -1 with errno. */
int snapshot_file_pages(int fd, uint64_t size, struct dirty_pages *d);

/* A Full memory file in fd: exactly `size` bytes, each all-zero page a hole; only the pages
 * `read` marks are read (NULL: all), the others taken to be zeros. 0, or -1 with errno. */
int snapshot_write_full(int fd, const uint8_t *mem, uint64_t size, const struct dirty_pages *read);
/* A Diff memory file in fd: exactly `size` bytes, every page `dirty` marks written as data
 * whatever it holds (a page that became zeros must overwrite its base's), holes elsewhere
 * (the base's pages). 0; -1 with errno; 1 when the file's filesystem keeps data in units
 * larger than a page (its holes would not say which pages the diff holds). */
int snapshot_write_diff(int fd, const uint8_t *mem, uint64_t size, const struct dirty_pages *dirty);

/* Up to SNAPSHOT_MAX_PROBES pages for a Diff's state file, spread over RAM: not in `dirty`
 * (so in its base's file), not all zeros (so a hole, as in the diff's own file, fails them),
 * and among `held` (the pages that may be non-zero; NULL: any). None when every non-zero page
 * is in the diff: its file is then all the memory there is. */
unsigned snapshot_pick_probes(const uint8_t *mem, uint64_t size, const struct dirty_pages *dirty,
                              const struct dirty_pages *held, struct snapshot_probe out[SNAPSHOT_MAX_PROBES]);
/* A diff state's probes against the memory file given with it (fd; -1: none to check): 0, or
 * -1 with the one-line reason (the diff's own file, or a base it was not rebased onto). */
int snapshot_check_probes(const struct snapshot *s, int fd, const char *mem_path, char *err, size_t errlen);

#endif
