/* The cache of unpacked kernels (see kernel_cache.h). Entries are this user's own files, but
 * anything may have happened to them: every one is checked (identity, header, sizes) before
 * its pages become the guest's, and one that fails is removed and made again. */
#include <dirent.h>
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
    *c = (struct kernel_cache){.dirfd = -1, .max_bytes = KERNEL_CACHE_MAX_BYTES, .image_fd = -1};
    if (dir) snprintf(c->dir, sizeof c->dir, "%s", dir);
}

void kernel_cache_close(struct kernel_cache *c) {
    if (c->dirfd >= 0) close(c->dirfd);
    c->dirfd = -1;
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

static void entry_name(char *name, size_t n, const uint8_t key[16], unsigned slot, const char *suffix) {
    char hex[33];
    for (unsigned i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", key[i]);
    if (snprintf(name, n, "%s-%u.kernel%s", hex, slot, suffix) >= (int)n) name[0] = 0;
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

unsigned kernel_cache_choose(const unsigned *have, unsigned n, bool kaslr, uint64_t slots, uint64_t random) {
    if (!kaslr || slots == 0) return 0;
    if (n < KERNEL_CACHE_SLOTS) return (unsigned)(random % slots);
    /* bits of `random` other than those that picked a fresh slot */
    return have[(random >> 32) % n];
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
    entry_name(prefix, sizeof prefix, key, 0, "");
    size_t plen = strlen(prefix) - strlen("0.kernel"); /* "<key>-" */
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
                      int src, unsigned src_slot, struct bzimage_unpacked *u, bool *corrupt, char *err,
                      size_t errlen) {
    *corrupt = false;
    uint64_t size = file_size_of(p);
    char tmp[64], name[128];
    int fd = new_file(c, size, tmp, sizeof tmp);
    if (fd < 0) return -1;
    uint64_t t0 = zx_clock_get_monotonic();
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
            uint64_t hash_ns = u->hash_ns;
            r = bzimage_unpack_window(p, &w, delta, m + KERNEL_CACHE_HEADER + round_page(p->span), u, err, errlen);
            u->hash_ns = hash_ns;
            *corrupt = r != 0;
        } else {
            u->copy_ns = zx_clock_get_monotonic() - t0;
            uint64_t t1 = zx_clock_get_monotonic();
            r = bzimage_relocate_placed(p, w.at, m + KERNEL_CACHE_HEADER + round_page(p->span),
                                        delta - (uint64_t)src_slot * BZIMAGE_KASLR_ALIGN);
            u->relocate_ns = zx_clock_get_monotonic() - t1;
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

/* The bzImage's key: remembered for its identity, else hashed (and remembered). */
static void image_key(struct kernel_cache *c, const uint8_t *image, size_t len, uint8_t key[16]) {
    struct stat st;
    char name[64];
    struct key_record rec, got;
    bool known = c->image_fd >= 0 && fstat(c->image_fd, &st) == 0 && (uint64_t)st.st_size == len;
    if (known) {
        rec = (struct key_record){.id = id_of(&st)};
        snprintf(name, sizeof name, "%" PRIx64 "-%" PRIx64 ".key", (uint64_t)st.st_dev, (uint64_t)st.st_ino);
        int fd = openat(c->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        bool read_it = fd >= 0 && read(fd, &got, sizeof got) == (ssize_t)sizeof got;
        if (fd >= 0) close(fd);
        if (read_it && memcmp(&got.id, &rec.id, sizeof rec.id) == 0 &&
            got.sum == XXH3_64bits(&got, offsetof(struct key_record, sum))) {
            memcpy(key, got.key, 16);
            utimensat(c->dirfd, name, NULL, 0); /* used: kept */
            return;
        }
    }
    XXH128_hash_t h = XXH3_128bits(image, len);
    memcpy(key, &h.high64, 8);
    memcpy(key + 8, &h.low64, 8);
    if (!known) return;
    memcpy(rec.key, key, 16);
    rec.sum = XXH3_64bits(&rec, offsetof(struct key_record, sum));
    char tmp[100];
    snprintf(tmp, sizeof tmp, ".tmp-%d-%s", (int)getpid(), name);
    int fd = openat(c->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    bool ok = write(fd, &rec, sizeof rec) == (ssize_t)sizeof rec;
    ok &= close(fd) == 0;
    if (!ok || renameat(c->dirfd, tmp, c->dirfd, name) != 0) unlinkat(c->dirfd, tmp, 0);
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
    image_key(c, image, len, key);
    u->hash_ns = zx_clock_get_monotonic() - t0;

    bool kaslr = random && p.relocatable;
    unsigned have[MAX_ENTRIES];
    unsigned n = slots_of(c, key, have, MAX_ENTRIES);
    unsigned slot = kernel_cache_choose(have, n, kaslr, p.slots, random);
    char name[128];
    entry_name(name, sizeof name, key, slot, "");
    struct kernel_cache_header hdr;
    const char *why;
    int fd = -1;
    int got = open_entry(c, name, key, slot, &p, &fd, &hdr, &why);
    if (got < 0) fprintf(stderr, "bellhop: kernel cache entry %s/%s: %s: removed, made again\n", c->dir, name, why);
    enum { HIT, FILLED, NEW_SLOT } how = HIT;
    unsigned from = 0;
    if (got <= 0) {
        /* Another slot of this kernel is the cheaper source: relocating, not decoding. */
        int src = -1;
        for (unsigned i = 0; i < n && src < 0; i++) {
            char other[128];
            if (have[i] == slot) continue;
            entry_name(other, sizeof other, key, have[i], "");
            if (open_entry(c, other, key, have[i], &p, &src, &hdr, &why) == 1) from = have[i];
        }
        how = src >= 0 ? NEW_SLOT : FILLED;
        if (!kernel_cache_evict(c, file_size_of(&p))) {
            if (src >= 0) close(src);
            not_used(c, "%s: the kernel needs %" PRIu64 " MiB, more than its bound", c->dir, file_size_of(&p) >> 20);
            return unpack_plain(&p, gm, random, u, err, errlen);
        }
        bool corrupt;
        fd = make_entry(c, &p, key, slot, src, from, u, &corrupt, err, errlen);
        if (src >= 0) close(src);
        if (corrupt) return BZIMAGE_UNPACK_BAD;
        if (fd < 0) {
            not_used(c, "%s: %s", c->dir, strerror(errno));
            return unpack_plain(&p, gm, random, u, err, errlen);
        }
    }
    uint64_t t1 = zx_clock_get_monotonic();
    if (map_into(c, fd, &p, gm) != 0) {
        not_used(c, "%s: its entry could not be mapped", c->dir);
        return unpack_plain(&p, gm, random, u, err, errlen);
    }
    char idname[140];
    if (snprintf(idname, sizeof idname, "%s.id", name) < (int)sizeof idname)
        utimensat(c->dirfd, idname, NULL, 0); /* used now: evicted last */
    u->map_ns = zx_clock_get_monotonic() - t1;
    u->format = p.format, u->entry = p.entry, u->start = p.start, u->end = p.end, u->size = p.size;
    u->kaslr = kaslr;
    u->virt_offset = (uint64_t)slot * BZIMAGE_KASLR_ALIGN;
    u->cache = how == HIT ? BZIMAGE_CACHE_HIT : how == NEW_SLOT ? BZIMAGE_CACHE_NEW_SLOT : BZIMAGE_CACHE_FILLED;
    u->slot = slot;
    u->from_slot = from;
    return BZIMAGE_UNPACK_OK;
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
