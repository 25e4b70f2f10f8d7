/* An idle VMM's resident memory. Most of what bellhop has mapped once its guest runs is code
 * and read-only data that only setup used: option parsing, the loaders, the device-tree and
 * ACPI builders, the dynamic loader's relocation. Like a kernel freeing its __init sections,
 * bellhop gives those page mappings back when setup is over. */
#ifndef BELLHOP_VMM_MACHINE_FOOTPRINT_H
#define BELLHOP_VMM_MACHINE_FOOTPRINT_H

#include <stdbool.h>
#include <stddef.h>

/* Drops the page-table entries of every read-only private file mapping that holds none of
 * this process's own writes (MADV_DONTNEED): the pages stay in the page cache, and whatever
 * runs later faults its pages back in. Safe while other threads run (such a mapping cannot
 * be written). Returns the bytes of address space it covered. */
size_t footprint_trim(void);

#endif
