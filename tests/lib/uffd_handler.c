/* The tests' page-fault handler (tests/lib/uffd_handler.h): the message's parser, then the
 * serving of one VMM. */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "tests/lib/uffd_handler.h"

static int say(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int say(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- the message ---- */

struct cursor {
    const char *p, *end;
};

static void skip_space(struct cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static bool take(struct cursor *c, char ch) {
    skip_space(c);
    if (c->p >= c->end || *c->p != ch) return false;
    c->p++;
    return true;
}

/* A JSON string's body, escapes and all (the names this parser wants have none): its start
 * and length, the cursor past the closing quote. */
static bool string_span(struct cursor *c, const char **s, size_t *len) {
    if (!take(c, '"')) return false;
    *s = c->p;
    while (c->p < c->end && *c->p != '"') {
        if ((unsigned char)*c->p < 0x20) return false;
        if (*c->p == '\\' && ++c->p >= c->end) return false;
        c->p++;
    }
    if (c->p >= c->end) return false;
    *len = (size_t)(c->p - *s);
    c->p++;
    return true;
}

/* An unsigned integer as JSON writes one (no sign, fraction or exponent; no leading zero). */
static bool number_u64(struct cursor *c, uint64_t *v) {
    skip_space(c);
    const char *start = c->p;
    *v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        unsigned d = (unsigned)(*c->p++ - '0');
        if (*v > (UINT64_MAX - d) / 10) return false;
        *v = *v * 10 + d;
    }
    if (c->p == start || (*start == '0' && c->p - start > 1)) return false;
    return c->p >= c->end || (*c->p != '.' && *c->p != 'e' && *c->p != 'E');
}

/* A member this handler does not use: any scalar (a number of any form, a string, a literal). */
static bool skip_scalar(struct cursor *c) {
    skip_space(c);
    if (c->p >= c->end) return false;
    const char *s;
    size_t len;
    if (*c->p == '"') return string_span(c, &s, &len);
    static const char *const words[] = {"true", "false", "null"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(c->end - c->p) >= n && memcmp(c->p, words[i], n) == 0) return c->p += n, true;
    }
    const char *start = c->p;
    while (c->p < c->end && *c->p && strchr("+-.0123456789eE", *c->p)) c->p++;
    return c->p > start;
}

enum { BASE, SIZE, OFFSET, PAGE_SIZE, NFIELDS };
static const char *const field_names[NFIELDS] = {"base_host_virt_addr", "size", "offset", "page_size"};

static int field_index(const char *s, size_t len) {
    for (int i = 0; i < NFIELDS; i++)
        if (strlen(field_names[i]) == len && memcmp(s, field_names[i], len) == 0) return i;
    return -1;
}

static int parse_region(struct cursor *c, struct uffd_handler_region *r, unsigned index, char *err, size_t errlen) {
    uint64_t v[NFIELDS] = {0};
    unsigned seen = 0;
    if (!take(c, '{')) return say(err, errlen, "region %u: not an object", index);
    if (take(c, '}')) return say(err, errlen, "region %u: empty", index);
    do {
        const char *name;
        size_t len;
        if (!string_span(c, &name, &len) || !take(c, ':')) return say(err, errlen, "region %u: a malformed member", index);
        int f = field_index(name, len);
        if (f < 0 && !skip_scalar(c)) return say(err, errlen, "region %u: an unknown member's value is not a scalar", index);
        if (f < 0) continue;
        if (seen >> f & 1) return say(err, errlen, "region %u: %s twice", index, field_names[f]);
        if (!number_u64(c, &v[f])) return say(err, errlen, "region %u: %s is not an unsigned integer", index, field_names[f]);
        seen |= 1u << f;
    } while (take(c, ','));
    if (!take(c, '}')) return say(err, errlen, "region %u: a malformed object", index);
    for (int f = 0; f < NFIELDS; f++)
        if (!(seen >> f & 1)) return say(err, errlen, "region %u: no %s", index, field_names[f]);
    *r = (struct uffd_handler_region){v[BASE], v[SIZE], v[OFFSET], v[PAGE_SIZE]};
    return 0;
}

static int check_region(const struct uffd_handler_region *r, unsigned index, char *err, size_t errlen) {
    uint64_t ps = r->page_size;
    if (ps < 4096 || ps > (1ull << 30) || (ps & (ps - 1)))
        return say(err, errlen, "region %u: page_size %llu is not a power of two from 4096 to 1 GiB", index,
                   (unsigned long long)ps);
    if (r->size == 0 || (r->base | r->size | r->offset) & (ps - 1))
        return say(err, errlen, "region %u: empty, or not aligned to its pages", index);
    if (r->base + r->size < r->base || r->offset + r->size < r->offset)
        return say(err, errlen, "region %u: past the end of the address space", index);
    return 0;
}

int uffd_handler_parse(const char *json, size_t len, struct uffd_handler_region *out, unsigned max, unsigned *n,
                       char *err, size_t errlen) {
    struct cursor c = {json, json + len};
    *n = 0;
    if (!take(&c, '[')) return say(err, errlen, "not a JSON array");
    if (take(&c, ']')) return say(err, errlen, "no regions");
    do {
        if (*n == max) return say(err, errlen, "more than %u regions", max);
        if (parse_region(&c, &out[*n], *n, err, errlen) != 0 || check_region(&out[*n], *n, err, errlen) != 0) return -1;
        for (unsigned i = 0; i < *n; i++)
            if (out[i].base < out[*n].base + out[*n].size && out[*n].base < out[i].base + out[i].size)
                return say(err, errlen, "regions %u and %u overlap", i, *n);
        ++*n;
    } while (take(&c, ','));
    if (!take(&c, ']')) return say(err, errlen, "a malformed array");
    skip_space(&c);
    return c.p == c.end ? 0 : say(err, errlen, "bytes after the array");
}

/* ---- serving ---- */

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

int uffd_handler_listen(const char *path) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) return errno = ENAMETOOLONG, -1;
    memcpy(a.sun_path, path, strlen(path) + 1);
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 4) == 0) return fd;
    int why = errno;
    if (fd >= 0) close(fd);
    return errno = why, -1;
}

struct handler {
    int conn, uffd;
    const uint8_t *file; /* the memory file, mapped */
    size_t file_len;
    struct uffd_handler_region regions[UFFD_HANDLER_MAX_REGIONS];
    uint8_t *removed[UFFD_HANDLER_MAX_REGIONS]; /* a bit per page: given back, to be served as zeros */
    unsigned nregions;
    struct uffd_handler_counts counts;
    const struct uffd_handler_options *o;
};

static bool wait_for(int fd, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n;
    while ((n = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
    }
    return n > 0;
}

/* The message and its userfaultfd (which may come in more than one read: a stream). */
static int receive(struct handler *h, char *err, size_t errlen) {
    static char text[UFFD_HANDLER_MAX_MESSAGE];
    size_t len = 0;
    for (;;) {
        if (!wait_for(h->conn, h->o->timeout_ms)) return say(err, errlen, "no message within %d ms", h->o->timeout_ms);
        union {
            char buf[CMSG_SPACE(4 * sizeof(int))];
            struct cmsghdr align;
        } control;
        struct iovec iov = {text + len, sizeof text - 1 - len};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
        ssize_t k = recvmsg(h->conn, &m, MSG_CMSG_CLOEXEC);
        if (k <= 0) return say(err, errlen, "the VMM closed the connection before its message was whole");
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
            for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof fd, sizeof fd);
                if (h->uffd < 0) h->uffd = fd;
                else close(fd); /* one userfaultfd a message */
            }
        }
        len += (size_t)k;
        text[len] = 0;
        char why[200];
        if (uffd_handler_parse(text, len, h->regions, UFFD_HANDLER_MAX_REGIONS, &h->nregions, why, sizeof why) == 0)
            return h->uffd >= 0 ? 0 : say(err, errlen, "the message came without a userfaultfd");
        if (len == sizeof text - 1) return say(err, errlen, "the message: %s", why);
    }
}

static int map_file(struct handler *h, const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) return say(err, errlen, "%s: %s", path, strerror(errno));
    h->file_len = (size_t)st.st_size;
    for (unsigned i = 0; i < h->nregions; i++) {
        struct uffd_handler_region *r = &h->regions[i];
        if (r->offset > h->file_len || r->size > h->file_len - r->offset)
            return close(fd), say(err, errlen, "%s: region %u lies past its end", path, i);
        if (!(h->removed[i] = calloc(r->size / r->page_size / 8 + 1, 1))) return close(fd), say(err, errlen, "out of memory");
        h->counts.guest_pages += r->size / r->page_size;
    }
    void *p = mmap(NULL, h->file_len ? h->file_len : 1, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return say(err, errlen, "%s: %s", path, strerror(errno));
    h->file = p;
    return 0;
}

static int find_region(const struct handler *h, uint64_t addr) {
    for (unsigned i = 0; i < h->nregions; i++)
        if (addr >= h->regions[i].base && addr - h->regions[i].base < h->regions[i].size) return (int)i;
    return -1;
}

/* [start, end) given back by the VMM (whole pages, in whichever regions it falls): zeros when
 * touched again. */
static void mark_removed(struct handler *h, uint64_t start, uint64_t end) {
    for (unsigned i = 0; i < h->nregions; i++) {
        const struct uffd_handler_region *r = &h->regions[i];
        uint64_t lo = start > r->base ? start : r->base, hi = end < r->base + r->size ? end : r->base + r->size;
        for (uint64_t a = lo & ~(r->page_size - 1); a < hi; a += r->page_size) {
            uint64_t page = (a - r->base) / r->page_size;
            h->removed[i][page / 8] |= (uint8_t)(1u << page % 8);
            h->counts.pages_removed++;
        }
    }
}

/* One page of region i at addr served: 0, or the errno of a copy to retry later (EAGAIN: the
 * VMM's memory map is changing; read the events first) or that ends serving. */
static int serve_page(struct handler *h, unsigned i, uint64_t addr) {
    const struct uffd_handler_region *r = &h->regions[i];
    uint64_t page = (addr - r->base) / r->page_size, at = r->base + page * r->page_size;
    bool zero = h->removed[i][page / 8] >> page % 8 & 1;
    int rc;
    if (zero) {
        struct uffdio_zeropage z = {.range = {at, r->page_size}};
        rc = ioctl(h->uffd, UFFDIO_ZEROPAGE, &z);
    } else {
        struct uffdio_copy c = {.dst = at, .src = (uintptr_t)(h->file + r->offset + page * r->page_size), .len = r->page_size};
        rc = ioctl(h->uffd, UFFDIO_COPY, &c);
    }
    if (rc != 0 && errno != EEXIST) return errno; /* EEXIST: another fault on it came first */
    if (rc == 0) zero ? h->counts.pages_zeroed++ : h->counts.pages_copied++;
    return 0;
}

/* Every region copied from the file, as few copies as it takes: 0, 1 when the VMM ended
 * meanwhile, or -1 (said). */
static int copy_all(struct handler *h, char *err, size_t errlen) {
    for (unsigned i = 0; i < h->nregions; i++) {
        const struct uffd_handler_region *r = &h->regions[i];
        for (uint64_t off = 0; off < r->size;) {
            struct uffdio_copy c = {.dst = r->base + off, .src = (uintptr_t)(h->file + r->offset + off), .len = r->size - off};
            int rc = ioctl(h->uffd, UFFDIO_COPY, &c), why = errno;
            if (c.copy > 0) h->counts.pages_copied += (uint64_t)c.copy / r->page_size, off += (uint64_t)c.copy;
            /* a page the VMM has, or one its changing map refuses now: left to its fault */
            else if (rc != 0 && (why == EEXIST || why == EAGAIN)) off += r->page_size;
            else if (rc != 0 && (why == ENOENT || why == ESRCH)) return 1; /* its memory is gone */
            else if (rc != 0) return say(err, errlen, "UFFDIO_COPY of region %u: %s", i, strerror(why));
        }
    }
    return 0;
}

/* The events read so far: removes first (so that a page given back is served as zeros), then
 * faults, of which those to retry stay in pending. 1 when stop_after was reached. */
static int handle_events(struct handler *h, struct uffd_msg *msgs, unsigned n, uint64_t *pending, unsigned *npending,
                         char *err, size_t errlen) {
    for (unsigned k = 0; k < n; k++)
        if (msgs[k].event == UFFD_EVENT_REMOVE) mark_removed(h, msgs[k].arg.remove.start, msgs[k].arg.remove.end);
    for (unsigned k = 0; k < n; k++) {
        if (msgs[k].event != UFFD_EVENT_PAGEFAULT) continue;
        h->counts.faults++;
        if (h->o->stop_after > 0 && h->counts.faults > (uint64_t)h->o->stop_after) return 1;
        if (*npending < 256) pending[(*npending)++] = msgs[k].arg.pagefault.address;
    }
    unsigned kept = 0;
    for (unsigned k = 0; k < *npending; k++) {
        int i = find_region(h, pending[k]);
        if (i < 0) return say(err, errlen, "a fault at 0x%llx, outside every region", (unsigned long long)pending[k]);
        int why = serve_page(h, (unsigned)i, pending[k]);
        if (why == EAGAIN) pending[kept++] = pending[k];
        else if (why == ENOENT || why == ESRCH) return 1; /* the VMM's memory is gone: it is ending */
        else if (why) return say(err, errlen, "serving 0x%llx: %s", (unsigned long long)pending[k], strerror(why));
    }
    *npending = kept;
    return 0;
}

/* Faults and removes until the VMM's end of the connection closes. */
static int serve_events(struct handler *h, char *err, size_t errlen) {
    static uint64_t pending[256];
    unsigned npending = 0;
    for (;;) {
        struct pollfd p[2] = {{.fd = h->uffd, .events = POLLIN}, {.fd = h->conn, .events = POLLIN | POLLRDHUP}};
        int n = poll(p, 2, npending ? 1 : -1);
        if (n < 0 && errno != EINTR) return say(err, errlen, "poll: %s", strerror(errno));
        if (n > 0 && p[1].revents) {
            char drop[64];
            if ((p[1].revents & (POLLHUP | POLLERR | POLLRDHUP)) || read(h->conn, drop, sizeof drop) <= 0) return 0;
        }
        struct uffd_msg msgs[64];
        ssize_t got = n > 0 && (p[0].revents & POLLIN) ? read(h->uffd, msgs, sizeof msgs) : 0;
        if (got < 0 && errno != EAGAIN && errno != EINTR) return say(err, errlen, "reading the userfaultfd: %s", strerror(errno));
        int rc = handle_events(h, msgs, got > 0 ? (unsigned)((size_t)got / sizeof msgs[0]) : 0, pending, &npending, err,
                               errlen);
        if (rc) return rc < 0 ? -1 : 0;
    }
}

static void release(struct handler *h) {
    for (unsigned i = 0; i < h->nregions; i++) free(h->removed[i]);
    if (h->file) munmap((void *)h->file, h->file_len ? h->file_len : 1);
    if (h->uffd >= 0) close(h->uffd);
    if (h->conn >= 0) close(h->conn);
}

int uffd_handler_serve(int listen_fd, const char *mem_path, const struct uffd_handler_options *o,
                       struct uffd_handler_counts *counts, char *err, size_t errlen) {
    struct handler h = {.conn = -1, .uffd = -1, .o = o};
    int rc = 0;
    if (!wait_for(listen_fd, o->timeout_ms)) rc = say(err, errlen, "no VMM connected within %d ms", o->timeout_ms);
    else if ((h.conn = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC)) < 0) rc = say(err, errlen, "accept: %s", strerror(errno));
    if (rc == 0) rc = receive(&h, err, errlen);
    if (rc == 0) rc = map_file(&h, mem_path, err, errlen);
    if (rc == 0 && o->mode == UFFD_SERVE_ALL_AT_ONCE) {
        uint64_t t0 = now_ns();
        rc = copy_all(&h, err, errlen);
        h.counts.copy_all_ns = now_ns() - t0;
    }
    if (rc == 0) rc = serve_events(&h, err, errlen);
    if (counts) *counts = h.counts;
    release(&h);
    return rc < 0 ? -1 : 0;
}
