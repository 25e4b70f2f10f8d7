/* A cache of unpacked kernels, so that a bzImage launches as fast as a vmlinux from its
 * second launch on: guest RAM takes an entry's pages copy-on-write (gm_write_file) instead of
 * decoding the payload again.
 *
 * The directory is $XDG_CACHE_HOME/bellhop/kernels, else $HOME/.cache/bellhop/kernels. An
 * entry is one KASLR slot of one kernel, `<key>-<slot>.kernel`: the key is the bzImage's
 * content (XXH3-128 of the whole file), the slot its virtual offset in 2 MiB units (0: not
 * moved). It holds a header (struct kernel_cache_header), then guest-physical [base,
 * base+span) unpacked, relocated for that slot and placed, then the kernel's relocation
 * tables as decoded, so that another slot is made from it by relocating by the difference,
 * without decoding. Each entry has a sidecar `<name>.id` holding the entry's identity (inode,
 * size, mtime, ctime) when it was made: any write, truncation or replacement since changes
 * its ctime, so the warm path trusts an entry without reading it all; a sidecar that does not
 * match makes the entry bad (removed, rebuilt, never run). The sidecar's mtime is the entry's
 * last use (touching the entry itself would change its ctime), which eviction goes by. The
 * bzImage's key is remembered the same way, `<dev>-<inode>.key` holding the bzImage's identity
 * and its key: a file whose identity still matches has the content it was hashed with.
 *
 * Entries are made in a file of their own (O_TMPFILE) and renamed into place, so two
 * bellhops filling the cache at once both launch (the last rename wins). Nothing here stops a
 * launch: a directory that cannot be made or written, or a full disk, gives one line on
 * stderr and the kernel is unpacked into guest RAM as without the cache. */
#ifndef BELLHOP_VMM_MACHINE_KERNEL_CACHE_H
#define BELLHOP_VMM_MACHINE_KERNEL_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/machine/kernel_cache_filler.h"

#include "firmware/bzimage_unpack.h"
#include "base/guest_mem.h"

#define KERNEL_CACHE_SLOTS 8                 /* relocated copies kept of one kernel */
#define KERNEL_CACHE_MAX_BYTES (1ull << 30)  /* all entries together */
#define KERNEL_CACHE_FORMAT 1                /* this file's layout of an entry */
#define KERNEL_CACHE_HEADER 4096u            /* the header's room: the image starts page aligned */

/* An entry's first bytes (little-endian, fixed offsets: tests edit them). */
struct kernel_cache_header {
    char magic[8];     /* KERNEL_CACHE_MAGIC */
    uint32_t format;   /* KERNEL_CACHE_FORMAT */
    uint32_t slot;
    char version[16];  /* bellhop's (BELLHOP_VERSION): another version never uses the entry */
    uint8_t key[16];
    uint64_t base, start, end, entry, span, size;
    char image_format[8]; /* "lz4" ... */
    uint64_t tables_off, tables_len; /* the relocation tables' place in the file */
    uint64_t file_size;
    uint64_t checksum; /* XXH3-64 of the bytes before it */
};
#define KERNEL_CACHE_MAGIC "bhkernel"

struct kernel_cache {
    char dir[512];  /* "" until opened, or when it cannot be */
    char why[200];  /* why not, once tried */
    int dirfd;      /* -1 until opened */
    bool tried, warned;
    uint64_t max_bytes; /* KERNEL_CACHE_MAX_BYTES */
    /* Guest RAM takes an entry's pages through this: it returns fd (then owns it: a read
     * lease on it, vmm/machine/image_lease.h) for gm_write_file, or -1 (fd left to the cache,
     * which has RAM copy the entry). NULL: always copy. */
    int (*share)(void *arg, int fd);
    void *share_arg;
    /* The bzImage open (-1: unknown): its key is remembered by its identity, so that a warm
     * launch need not hash it (~2 ms for 14 MB on a PVM host, 150 ms nested). */
    int image_fd;
    /* Its path, for the filler (kernel_cache_fill) started in the background when the cache
     * cannot serve this launch; NULL: none is started. */
    const char *image_path;
    struct kernel_cache_filler filler; /* the filler this launch started, until taken */
};

/* Where the cache is: `dir`, or the environment's when NULL; nothing is touched until a
 * bzImage needs it. */
void kernel_cache_init(struct kernel_cache *c, const char *dir);
void kernel_cache_close(struct kernel_cache *c); /* which releases the filler, if not taken */
/* The filler this launch started (KERNEL_CACHE_NO_FILLER: none), now the caller's to release
 * once its guest has entered (kernel_cache_filler.h). */
struct kernel_cache_filler kernel_cache_take_filler(struct kernel_cache *c);

/* bzimage_load_with's unpacker (firmware/bzimage.h), `arg` a struct kernel_cache: the
 * bzImage's kernel from the cache into guest RAM (one of the slots it has), or else unpacked
 * into guest RAM as without the cache; u->cache says which. A launch never makes an entry:
 * decoding into a new file's pages costs ~3x decoding into guest RAM (PVM), and copying a
 * slot about what decoding does. When the cache has no entry for the kernel, or fewer than
 * KERNEL_CACHE_SLOTS with KASLR, a filler is started in the background (`bellhop
 * kernel-cache-fill`, kernel_cache_fill) that makes one, for the launches after this one. */
int kernel_cache_unpack(void *arg, const uint8_t *image, size_t len, const struct guest_mem *gm, uint64_t min_paddr,
                        uint64_t align, uint64_t random, struct bzimage_unpacked *u, char *err, size_t errlen);

/* The filler, in the cache c (kernel_cache_init's): one more entry for the bzImage at path (a
 * slot it does not have yet, at random with kaslr; slot 0 without), as a launch with
 * min_paddr and align would plan it, its key hashed and remembered; nothing when another
 * filler of the same kernel is at work or its slots are there already. 0, or -1 with the
 * reason in err. */
int kernel_cache_fill(struct kernel_cache *c, const char *path, uint64_t min_paddr, uint64_t align, bool kaslr,
                      char *err, size_t errlen);

/* Parts, for tests. */
/* Whether the header is whole and this bellhop's, for key/slot and the plan, in a file of
 * file_size bytes: NULL, or what is wrong with it. */
const char *kernel_cache_header_check(const struct kernel_cache_header *h, const uint8_t key[16], unsigned slot,
                                      const struct bzimage_plan *p, uint64_t file_size);
/* Removes the least recently used entries until `need` more bytes fit under c->max_bytes.
 * false when they cannot (need alone is more). */
bool kernel_cache_evict(struct kernel_cache *c, uint64_t need);

#endif
