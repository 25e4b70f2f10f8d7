/* The cache of unpacked kernels (see kernel_cache.h). Entries are this user's own files, but
 * anything may have happened to them: every one is checked (identity, header, sizes) before
 * its pages become the guest's, and one that fails is removed and made again. */
#include <dirent.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/random.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#define XXH_INLINE_ALL /* header-only: nothing to link */
#include <xxhash.h>

#include "vmm/control/version.h"
#include "vmm/machine/kernel_cache.h"

#define PAGE 4096ull
#define STALE_TMP_S 3600 /* a temporary file this old was left by a bellhop that died */
#define KEY_UNUSED_S (30 * 86400) /* a remembered key unused this long is forgotten */
#define MAX_ENTRIES 256  /* looked at in the directory: more are not ours to manage */

_Static_assert(sizeof(struct kernel_cache_header) <= KERNEL_CACHE_HEADER, "the header fits its page");
_Static_assert(sizeof(BELLHOP_VERSION) <= 16, "the version fits the header");

/* An entry's identity as its sidecar records it. */
struct entry_id {
    char magic[8];
    uint64_t dev, ino, size, mtime_s, mtime_ns, ctime_s, ctime_ns;
};
#define ID_MAGIC "bhkid\0\0\0"

static uint64_t round_page(uint64_t n) { return (n + PAGE - 1) & ~(PAGE - 1); }

void kernel_cache_init(struct kernel_cache *c, const char *dir) {
    *c = (struct kernel_cache){.dirfd = -1, .max_bytes = KERNEL_CACHE_MAX_BYTES, .image_fd = -1,
                               .filler = KERNEL_CACHE_NO_FILLER};
    if (dir) snprintf(c->dir, sizeof c->dir, "%s", dir);
}

void kernel_cache_close(struct kernel_cache *c) {
    if (c->dirfd >= 0) close(c->dirfd);
    c->dirfd = -1;
    kernel_cache_filler_release(&c->filler);
}

struct kernel_cache_filler kernel_cache_take_filler(struct kernel_cache *c) {
    struct kernel_cache_filler f = c->filler;
    c->filler = KERNEL_CACHE_NO_FILLER;
    return f;
}

/* mkdir -p, each directory made 0700 (a cache is the user's own). */
static int make_dirs(char *path) {
    for (char *s = path + 1;; s++) {
        if (*s != '/' && *s) continue;
        char was = *s;
        *s = 0;
        int r = mkdir(path, 0700);
        *s = was;
        if (r != 0 && errno != EEXIST) return -1;
        if (!was) return 0;
    }
}

/* Opens the directory once: false (with c->why) when there is none. */
static bool open_dir(struct kernel_cache *c) {
    if (c->tried) return c->dirfd >= 0;
    c->tried = true;
    if (!c->dir[0]) {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (xdg && xdg[0] == '/') snprintf(c->dir, sizeof c->dir, "%s/bellhop/kernels", xdg);
        else if (home && home[0] == '/') snprintf(c->dir, sizeof c->dir, "%s/.cache/bellhop/kernels", home);
        else return snprintf(c->why, sizeof c->why, "neither $XDG_CACHE_HOME nor $HOME is set") < 0;
    }
    char path[sizeof c->dir];
    memcpy(path, c->dir, sizeof path);
    if (make_dirs(path) != 0 || (c->dirfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return snprintf(c->why, sizeof c->why, "%.300s: %s", c->dir, strerror(errno)) < 0;
    return true;
}

/* One line, once per process: the cache was not used, and why. */
static void not_used(struct kernel_cache *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void not_used(struct kernel_cache *c, const char *fmt, ...) {
    if (c->warned) return;
    c->warned = true;
    char why[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    fprintf(stderr, "bellhop: the kernel cache was not used (%s): the kernel is unpacked into guest memory\n", why);
}

/* "<the key in hex>-<tail>": the names of one kernel's files. */
static void key_name(char *name, size_t n, const uint8_t key[16], const char *tail) {
    char hex[33];
    for (unsigned i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", key[i]);
    if (snprintf(name, n, "%s-%s", hex, tail) >= (int)n) name[0] = 0;
}

static void entry_name(char *name, size_t n, const uint8_t key[16], unsigned slot, const char *suffix) {
    char tail[48];
    snprintf(tail, sizeof tail, "%u.kernel%s", slot, suffix);
    key_name(name, n, key, tail);
}

static uint64_t header_sum(const struct kernel_cache_header *h) {
    return XXH3_64bits(h, offsetof(struct kernel_cache_header, checksum));
}

static uint64_t file_size_of(const struct bzimage_plan *p) {
    return KERNEL_CACHE_HEADER + round_page(p->span) + round_page(p->tables_len);
}

const char *kernel_cache_header_check(const struct kernel_cache_header *h, const uint8_t key[16], unsigned slot,
                                      const struct bzimage_plan *p, uint64_t file_size) {
    if (memcmp(h->magic, KERNEL_CACHE_MAGIC, 8) != 0) return "not a cache entry";
    if (h->checksum != header_sum(h)) return "its header's checksum is wrong";
    if (h->format != KERNEL_CACHE_FORMAT) return "another format";
    char version[sizeof h->version] = {0};
    memcpy(version, BELLHOP_VERSION, sizeof BELLHOP_VERSION);
    if (memcmp(h->version, version, sizeof version) != 0) return "another bellhop version's";
    if (memcmp(h->key, key, 16) != 0 || h->slot != slot) return "another kernel's or slot's";
    if (h->base != p->base || h->start != p->start || h->end != p->end || h->entry != p->entry ||
        h->span != p->span || h->size != p->size || strncmp(h->image_format, p->format, sizeof h->image_format) != 0)
        return "not this kernel's layout";
    if (h->tables_off != KERNEL_CACHE_HEADER + round_page(p->span) || h->tables_len != p->tables_len ||
        h->file_size != file_size_of(p) || h->file_size != file_size)
        return "its size is wrong";
    return NULL;
}

static void fill_header(struct kernel_cache_header *h, const uint8_t key[16], unsigned slot,
                        const struct bzimage_plan *p) {
    memset(h, 0, sizeof *h);
    memcpy(h->magic, KERNEL_CACHE_MAGIC, 8);
    h->format = KERNEL_CACHE_FORMAT;
    h->slot = slot;
    memcpy(h->version, BELLHOP_VERSION, sizeof BELLHOP_VERSION);
    memcpy(h->key, key, 16);
    h->base = p->base, h->start = p->start, h->end = p->end, h->entry = p->entry, h->span = p->span;
    h->size = p->size;
    snprintf(h->image_format, sizeof h->image_format, "%s", p->format);
    h->tables_off = KERNEL_CACHE_HEADER + round_page(p->span);
    h->tables_len = p->tables_len;
    h->file_size = file_size_of(p);
    h->checksum = header_sum(h);
}

static struct entry_id id_of(const struct stat *st) {
    struct entry_id id = {.dev = st->st_dev, .ino = st->st_ino, .size = (uint64_t)st->st_size,
                          .mtime_s = (uint64_t)st->st_mtim.tv_sec, .mtime_ns = (uint64_t)st->st_mtim.tv_nsec,
                          .ctime_s = (uint64_t)st->st_ctim.tv_sec, .ctime_ns = (uint64_t)st->st_ctim.tv_nsec};
    memcpy(id.magic, ID_MAGIC, 8);
    return id;
}

/* The sidecar, written whole under a temporary name and renamed: a reader never sees half. */
static int write_id(struct kernel_cache *c, const char *name, int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0) return -1;
    struct entry_id id = id_of(&st);
    char idname[128], tmp[160];
    if (snprintf(idname, sizeof idname, "%s.id", name) >= (int)sizeof idname) return -1;
    snprintf(tmp, sizeof tmp, ".tmp-%d-%s", (int)getpid(), idname);
    int t = openat(c->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (t < 0) return -1;
    bool ok = write(t, &id, sizeof id) == (ssize_t)sizeof id;
    ok &= close(t) == 0;
    if (ok && renameat(c->dirfd, tmp, c->dirfd, idname) == 0) return 0;
    unlinkat(c->dirfd, tmp, 0);
    return -1;
}

static void remove_entry(struct kernel_cache *c, const char *name) {
    char idname[128];
    if (snprintf(idname, sizeof idname, "%s.id", name) >= (int)sizeof idname) return;
    unlinkat(c->dirfd, name, 0);
    unlinkat(c->dirfd, idname, 0);
}

/* Opens entry `name` and checks it: 1 with *fd (read-only) and *h, 0 when there is none (or
 * no sidecar yet: its maker is still at work, or died; it is replaced when made again), -1
 * when it is bad (then removed, and *why says how). */
static int open_entry(struct kernel_cache *c, const char *name, const uint8_t key[16], unsigned slot,
                      const struct bzimage_plan *p, int *fd, struct kernel_cache_header *h, const char **why) {
    *fd = openat(c->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (*fd < 0) return 0;
    char idname[128];
    if (snprintf(idname, sizeof idname, "%s.id", name) >= (int)sizeof idname) { close(*fd); return 0; }
    struct entry_id want, have;
    struct stat st;
    int idfd = openat(c->dirfd, idname, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (idfd < 0) {
        close(*fd);
        return 0;
    }
    bool read_id = read(idfd, &want, sizeof want) == (ssize_t)sizeof want;
    close(idfd);
    *why = NULL;
    if (!read_id || fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        *why = "its sidecar is unreadable";
    } else if (have = id_of(&st), memcmp(&have, &want, sizeof have) != 0) {
        *why = "it changed since it was made";
    } else if (pread(*fd, h, sizeof *h, 0) != (ssize_t)sizeof *h) {
        *why = "its header is unreadable";
    } else {
        *why = kernel_cache_header_check(h, key, slot, p, (uint64_t)st.st_size);
    }
    if (!*why) return 1;
    close(*fd);
    *fd = -1;
    remove_entry(c, name);
    return -1;
}

/* The directory's listing from its start (a dup shares the offset of the last listing). */
static DIR *open_listing(struct kernel_cache *c) {
    int dfd = dup(c->dirfd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0) close(dfd);
        return NULL;
    }
    rewinddir(d);
    return d;
}

/* The slots the directory has for `key` (at most `max`). */
static unsigned slots_of(struct kernel_cache *c, const uint8_t key[16], unsigned *have, unsigned max) {
    char prefix[64];
    key_name(prefix, sizeof prefix, key, "");
    size_t plen = strlen(prefix);
    DIR *d = open_listing(c);
    if (!d) return 0;
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        unsigned slot;
        char tail[16];
        if (strncmp(e->d_name, prefix, plen) != 0 || sscanf(e->d_name + plen, "%u%15s", &slot, tail) != 2 ||
            strcmp(tail, ".kernel") != 0)
            continue;
        have[n++] = slot;
    }
    closedir(d);
    return n;
}

struct cached {
    char name[128];
    uint64_t size;
    struct timespec used;
};

static int older_first(const void *a, const void *b) {
    const struct cached *x = a, *y = b;
    if (x->used.tv_sec != y->used.tv_sec) return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
    return x->used.tv_nsec < y->used.tv_nsec ? -1 : x->used.tv_nsec > y->used.tv_nsec;
}

bool kernel_cache_evict(struct kernel_cache *c, uint64_t need) {
    if (need > c->max_bytes) return false;
    DIR *d = open_listing(c);
    if (!d) return false;
    static struct cached all[MAX_ENTRIES];
    unsigned n = 0;
    uint64_t total = 0;
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d))) {
        struct stat st;
        size_t len = strlen(e->d_name);
        if (fstatat(c->dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
        if (strncmp(e->d_name, ".tmp-", 5) == 0) {
            if (now - st.st_mtim.tv_sec > STALE_TMP_S) unlinkat(c->dirfd, e->d_name, 0);
            continue;
        }
        if (len > 4 && strcmp(e->d_name + len - 4, ".key") == 0) {
            if (now - st.st_mtim.tv_sec > KEY_UNUSED_S) unlinkat(c->dirfd, e->d_name, 0);
            continue;
        }
        if (len < 8 || len >= sizeof all[0].name || strcmp(e->d_name + len - 7, ".kernel") != 0) continue;
        total += (uint64_t)st.st_size;
        if (n == MAX_ENTRIES) continue;
        struct cached *k = &all[n++];
        memcpy(k->name, e->d_name, len + 1);
        k->size = (uint64_t)st.st_size;
        k->used = st.st_mtim;
        char idname[140];
        if (snprintf(idname, sizeof idname, "%s.id", e->d_name) >= (int)sizeof idname) continue;
        if (fstatat(c->dirfd, idname, &st, AT_SYMLINK_NOFOLLOW) == 0) k->used = st.st_mtim;
    }
    closedir(d);
    qsort(all, n, sizeof all[0], older_first);
    for (unsigned i = 0; i < n && total + need > c->max_bytes; i++) {
        remove_entry(c, all[i].name);
        total -= all[i].size;
    }
    return total + need <= c->max_bytes;
}

/* A new entry's file: unnamed in the directory (O_TMPFILE) where the filesystem can, else a
 * temporary name (*tmp). Its blocks are allocated now: a full disk is an error here rather
 * than SIGBUS at a write through the mapping. */
static int new_file(struct kernel_cache *c, uint64_t size, char *tmp, size_t tmplen) {
    tmp[0] = 0;
    int fd = openat(c->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        snprintf(tmp, tmplen, ".tmp-%d-%" PRIx64, (int)getpid(), zx_clock_get_monotonic());
        fd = openat(c->dirfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (fd < 0) return -1;
    int r = fallocate(fd, 0, 0, (off_t)size);
    if (r != 0) {
        int saved = errno;
        close(fd);
        if (tmp[0]) unlinkat(c->dirfd, tmp, 0);
        errno = saved;
        return -1;
    }
    return fd;
}

/* The new entry (fd, written) into place as `name`, its sidecar after it; its read-only
 * descriptor, or -1. */
static int publish(struct kernel_cache *c, int fd, char *tmp, size_t tmplen, const char *name) {
    char self[40];
    snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
    if (!tmp[0]) {
        snprintf(tmp, tmplen, ".tmp-%d-%" PRIx64, (int)getpid(), zx_clock_get_monotonic());
        if (linkat(AT_FDCWD, self, c->dirfd, tmp, AT_SYMLINK_FOLLOW) != 0) return -1;
    }
    /* the last of two makers' renames wins: each has its own file */
    if (renameat(c->dirfd, tmp, c->dirfd, name) != 0) {
        unlinkat(c->dirfd, tmp, 0);
        return -1;
    }
    int ro = open(self, O_RDONLY | O_CLOEXEC);
    if (ro < 0 || write_id(c, name, ro) != 0) {
        if (ro >= 0) close(ro);
        remove_entry(c, name);
        return -1;
    }
    return ro;
}

/* The entry's window into guest RAM: its pages copy-on-write when RAM can take them (fd then
 * owned by c->share), else copied. Closes fd either way. */
static int map_into(struct kernel_cache *c, int fd, const struct bzimage_plan *p, const struct guest_mem *gm) {
    uint64_t size = file_size_of(p);
    void *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        close(fd);
        return -1;
    }
    int shared = c->share ? c->share(c->share_arg, fd) : -1;
    bool ok = gm_write_file(gm, p->base, m, size, shared, KERNEL_CACHE_HEADER, p->span);
    munmap(m, size);
    if (shared < 0) close(fd);
    return ok ? 0 : -1;
}

/* A new entry for slot `slot`: decoded from the bzImage, or (src >= 0) copied from another
 * slot's entry (src_slot) and moved by the difference. Its read-only descriptor, or -1 with
 * errno, or with *corrupt when the bzImage's payload is (err says how). */
static int make_entry(struct kernel_cache *c, const struct bzimage_plan *p, const uint8_t key[16], unsigned slot,
                      int src, unsigned src_slot, bool *corrupt, char *err, size_t errlen) {
    *corrupt = false;
    uint64_t size = file_size_of(p);
    char tmp[64], name[128];
    int fd = new_file(c, size, tmp, sizeof tmp);
    if (fd < 0) return -1;
    bool copied = true;
    for (loff_t in = 0, out = 0; src >= 0 && (uint64_t)in < size && copied;) {
        ssize_t n = copy_file_range(src, &in, fd, &out, size - (uint64_t)in, 0);
        copied = n > 0;
    }
    /* Decoding writes every page: populated in one call rather than a fault per 4 KiB page
     * (guest RAM's anonymous memory gets 2 MiB ones). A new slot writes few of its pages: each
     * written page is one more to write back. */
    int populate = src < 0 ? MAP_POPULATE : 0;
    uint8_t *m = copied ? mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | populate, fd, 0) : MAP_FAILED;
    int r = -1;
    if (m != MAP_FAILED) {
        struct bzimage_window w = {m + KERNEL_CACHE_HEADER, NULL, NULL};
        uint64_t delta = (uint64_t)slot * BZIMAGE_KASLR_ALIGN;
        if (src < 0) {
            struct bzimage_unpacked u;
            r = bzimage_unpack_window(p, &w, delta, m + KERNEL_CACHE_HEADER + round_page(p->span), &u, err, errlen);
            *corrupt = r != 0;
        } else {
            r = bzimage_relocate_placed(p, w.at, m + KERNEL_CACHE_HEADER + round_page(p->span),
                                        delta - (uint64_t)src_slot * BZIMAGE_KASLR_ALIGN);
            if (r != 0) errno = EINVAL; /* the source's tables: the cache's fault, not the kernel's */
        }
        if (r == 0) fill_header((struct kernel_cache_header *)(void *)m, key, slot, p);
        munmap(m, size);
    }
    int ro = -1, saved = errno;
    entry_name(name, sizeof name, key, slot, "");
    if (r == 0) ro = publish(c, fd, tmp, sizeof tmp, name), saved = errno;
    else if (tmp[0]) unlinkat(c->dirfd, tmp, 0);
    close(fd);
    errno = saved;
    return ro;
}

static int unpack_plain(const struct bzimage_plan *p, const struct guest_mem *gm, uint64_t random,
                        struct bzimage_unpacked *u, char *err, size_t errlen);

/* A remembered key: the bzImage's identity, its key, and a checksum of both. */
struct key_record {
    struct entry_id id;
    uint8_t key[16];
    uint64_t sum;
};

/* The name of the file remembering the key of the bzImage open as c->image_fd, and its
 * identity now: false when it has none (not open, or not len bytes long). */
static bool key_record_name(struct kernel_cache *c, size_t len, char *name, size_t n, struct key_record *rec) {
    struct stat st;
    if (c->image_fd < 0 || fstat(c->image_fd, &st) != 0 || (uint64_t)st.st_size != len) return false;
    *rec = (struct key_record){.id = id_of(&st)};
    snprintf(name, n, "%" PRIx64 "-%" PRIx64 ".key", (uint64_t)st.st_dev, (uint64_t)st.st_ino);
    return true;
}

/* The bzImage's key as remembered for its identity: false when it is not (or not any more). */
static bool remembered_key(struct kernel_cache *c, size_t len, uint8_t key[16]) {
    char name[64];
    struct key_record rec, got;
    if (!key_record_name(c, len, name, sizeof name, &rec)) return false;
    int fd = openat(c->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    bool read_it = fd >= 0 && read(fd, &got, sizeof got) == (ssize_t)sizeof got;
    if (fd >= 0) close(fd);
    if (!read_it || memcmp(&got.id, &rec.id, sizeof rec.id) != 0 ||
        got.sum != XXH3_64bits(&got, offsetof(struct key_record, sum)))
        return false;
    memcpy(key, got.key, 16);
    utimensat(c->dirfd, name, NULL, 0); /* used: kept */
    return true;
}

/* The bzImage's key: remembered for its identity, else hashed (and remembered). */
static void image_key(struct kernel_cache *c, const uint8_t *image, size_t len, uint8_t key[16]) {
    if (remembered_key(c, len, key)) return;
    XXH128_hash_t h = XXH3_128bits(image, len);
    memcpy(key, &h.high64, 8);
    memcpy(key + 8, &h.low64, 8);
    char name[64], tmp[100];
    struct key_record rec;
    if (!key_record_name(c, len, name, sizeof name, &rec)) return;
    memcpy(rec.key, key, 16);
    rec.sum = XXH3_64bits(&rec, offsetof(struct key_record, sum));
    snprintf(tmp, sizeof tmp, ".tmp-%d-%s", (int)getpid(), name);
    int fd = openat(c->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    bool ok = write(fd, &rec, sizeof rec) == (ssize_t)sizeof rec;
    ok &= close(fd) == 0;
    if (!ok || renameat(c->dirfd, tmp, c->dirfd, name) != 0) unlinkat(c->dirfd, tmp, 0);
}

/* `bellhop kernel-cache-fill PATH MIN ALIGN KASLR GATE` for a later launch
 * (kernel_cache_filler.h): it outlives bellhop if need be (init reaps it); never waited for. */
static void fill_later(struct kernel_cache *c, uint64_t min_paddr, uint64_t align, bool kaslr) {
    if (c->image_path && c->filler.gate < 0) kernel_cache_start_filler(c->image_path, min_paddr, align, kaslr, &c->filler);
}

/* One of the kernel's slots, open and checked, for `random` (with KASLR, among those it has):
 * its fd, or -1 when none holds up (bad ones removed); *there: how many slots it has (less
 * those removed). */
static int open_some_slot(struct kernel_cache *c, const uint8_t key[16], const struct bzimage_plan *p, bool kaslr,
                          uint64_t random, unsigned *slot, unsigned *there) {
    unsigned have[MAX_ENTRIES];
    unsigned n = slots_of(c, key, have, MAX_ENTRIES);
    *there = n;
    if (!kaslr) { /* slot 0 alone */
        unsigned i = 0;
        while (i < n && have[i] != 0) i++;
        n = i < n ? 1 : 0;
        have[0] = 0;
    }
    for (unsigned tries = 0; n > 0; tries++) {
        unsigned i = (unsigned)((random >> 32) + tries) % n;
        char name[128];
        struct kernel_cache_header hdr;
        const char *why;
        int fd = -1;
        entry_name(name, sizeof name, key, have[i], "");
        int got = open_entry(c, name, key, have[i], p, &fd, &hdr, &why);
        if (got == 1) {
            *slot = have[i];
            return fd;
        }
        if (got < 0) fprintf(stderr, "bellhop: kernel cache entry %s/%s: %s: removed\n", c->dir, name, why);
        if (got < 0) --*there;
        have[i] = have[--n];
    }
    return -1;
}

int kernel_cache_unpack(void *arg, const uint8_t *image, size_t len, const struct guest_mem *gm, uint64_t min_paddr,
                        uint64_t align, uint64_t random, struct bzimage_unpacked *u, char *err, size_t errlen) {
    struct kernel_cache *c = arg;
    *u = (struct bzimage_unpacked){0};
    struct bzimage_plan p;
    int r = bzimage_plan(image, len, gm, min_paddr, align, &p, err, errlen);
    if (r != BZIMAGE_UNPACK_OK) return r;
    if (!open_dir(c)) {
        not_used(c, "%s", c->why);
        return unpack_plain(&p, gm, random, u, err, errlen);
    }
    uint64_t t0 = zx_clock_get_monotonic();
    uint8_t key[16];
    bool known = remembered_key(c, len, key);
    u->hash_ns = zx_clock_get_monotonic() - t0;
    bool kaslr = random && p.relocatable && p.slots > 0;
    unsigned slot = 0, there = 0;
    int fd = known ? open_some_slot(c, key, &p, kaslr, random, &slot, &there) : -1;
    /* none, or fewer slots than kept: one more for later launches, made once this launch's
     * own unpacking is done (the filler's decoding would compete with it for the CPU) */
    bool more = fd < 0 || (kaslr && there < KERNEL_CACHE_SLOTS);
    if (fd < 0) {
        r = unpack_plain(&p, gm, random, u, err, errlen);
        u->cache = BZIMAGE_CACHE_FILLING;
        if (r == BZIMAGE_UNPACK_OK) fill_later(c, min_paddr, align, kaslr);
        return r;
    }
    uint64_t t1 = zx_clock_get_monotonic();
    if (map_into(c, fd, &p, gm) != 0) {
        not_used(c, "%s: its entry could not be mapped", c->dir);
        return unpack_plain(&p, gm, random, u, err, errlen);
    }
    if (more) fill_later(c, min_paddr, align, kaslr);
    char name[128], idname[140];
    entry_name(name, sizeof name, key, slot, "");
    if (snprintf(idname, sizeof idname, "%s.id", name) < (int)sizeof idname)
        utimensat(c->dirfd, idname, NULL, 0); /* used now: evicted last */
    u->map_ns = zx_clock_get_monotonic() - t1;
    u->format = p.format, u->entry = p.entry, u->start = p.start, u->end = p.end, u->size = p.size;
    u->kaslr = kaslr;
    u->virt_offset = (uint64_t)slot * BZIMAGE_KASLR_ALIGN;
    u->cache = BZIMAGE_CACHE_HIT;
    u->slot = slot;
    return BZIMAGE_UNPACK_OK;
}

/* A fresh slot for the filler: with KASLR one the kernel does not have, at random; else 0
 * when it does not have it. false when there is none to make. */
static bool fresh_slot(const unsigned *have, unsigned n, bool kaslr, uint64_t slots, unsigned *slot) {
    if (!kaslr) {
        for (unsigned i = 0; i < n; i++)
            if (have[i] == 0) return false;
        return *slot = 0, true;
    }
    if (n >= KERNEL_CACHE_SLOTS) return false;
    for (unsigned tries = 0; tries < 64; tries++) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof r, 0) != sizeof r) r = (uint64_t)zx_clock_get_monotonic();
        unsigned k = (unsigned)(r % slots), i = 0;
        while (i < n && have[i] != k) i++;
        if (i == n) return *slot = k, true;
    }
    return false;
}

static int fill_entry(struct kernel_cache *c, const uint8_t *image, size_t len, uint64_t min_paddr, uint64_t align,
                      bool kaslr, char *err, size_t errlen) {
    /* guest memory the plan's bounds are checked against: as large as a guest's may be */
    struct guest_mem room = {.size = GM_LOW_END};
    struct bzimage_plan p;
    int r = bzimage_plan(image, len, &room, min_paddr, align, &p, err, errlen);
    if (r != BZIMAGE_UNPACK_OK) return r == BZIMAGE_UNPACK_GUEST ? 0 : -1;
    uint8_t key[16];
    image_key(c, image, len, key);
    char lock[64];
    key_name(lock, sizeof lock, key, "fill");
    int lfd = openat(c->dirfd, lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lfd < 0) return snprintf(err, errlen, "%s/%s: %s", c->dir, lock, strerror(errno)), -1;
    if (flock(lfd, LOCK_EX | LOCK_NB) != 0) return close(lfd), 0; /* another filler is at it */
    unsigned have[MAX_ENTRIES], slot, from = 0;
    unsigned n = slots_of(c, key, have, MAX_ENTRIES);
    int ro = -1;
    if (fresh_slot(have, n, kaslr && p.relocatable && p.slots > 0, p.slots, &slot)) {
        int src = -1;
        for (unsigned i = 0; i < n && src < 0; i++) {
            char other[128];
            struct kernel_cache_header hdr;
            const char *why;
            entry_name(other, sizeof other, key, have[i], "");
            if (open_entry(c, other, key, have[i], &p, &src, &hdr, &why) == 1) from = have[i];
        }
        bool corrupt = false;
        if (!kernel_cache_evict(c, file_size_of(&p)))
            snprintf(err, errlen, "%s: the kernel needs %" PRIu64 " MiB, more than its bound", c->dir,
                     file_size_of(&p) >> 20);
        else if ((ro = make_entry(c, &p, key, slot, src, from, &corrupt, err, errlen)) < 0 && !corrupt)
            snprintf(err, errlen, "%s: %s", c->dir, strerror(errno));
        if (src >= 0) close(src);
        if (ro >= 0) close(ro);
    } else {
        ro = 0; /* nothing to make */
    }
    close(lfd); /* (the lock with it) */
    return ro >= 0 ? 0 : -1;
}

int kernel_cache_fill(struct kernel_cache *c, const char *path, uint64_t min_paddr, uint64_t align, bool kaslr,
                      char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    int r = -1;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= 0) {
        snprintf(err, errlen, "%s: %s", path, fd < 0 ? strerror(errno) : "empty");
    } else if (!open_dir(c)) {
        snprintf(err, errlen, "%s", c->why);
    } else {
        uint8_t *image = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        c->image_fd = fd;
        if (image == MAP_FAILED) snprintf(err, errlen, "%s: %s", path, strerror(errno));
        else r = fill_entry(c, image, (size_t)st.st_size, min_paddr, align, kaslr, err, errlen);
        if (image != MAP_FAILED) munmap(image, (size_t)st.st_size);
        c->image_fd = -1;
    }
    if (fd >= 0) close(fd);
    return r;
}

static void zero_guest(void *arg, uint64_t gpa, uint64_t len) {
    gm_zero(arg, gpa, len);
}

static int unpack_plain(const struct bzimage_plan *p, const struct guest_mem *gm, uint64_t random,
                        struct bzimage_unpacked *u, char *err, size_t errlen) {
    uint64_t hash_ns = u->hash_ns;
    struct bzimage_window w = {gm_ptr_write(gm, p->base, p->span), zero_guest, (void *)gm};
    int r = bzimage_unpack_window(p, &w, bzimage_plan_delta(p, random), NULL, u, err, errlen);
    u->kaslr = random && p->relocatable;
    u->hash_ns = hash_ns;
    return r;
}
