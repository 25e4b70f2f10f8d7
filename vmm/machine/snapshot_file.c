/* The state file's format (vmm/machine/snapshot_file.h): written in memory, parsed with every length
 * checked against what is left before any of it is used. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <lzma.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error_text.h"
#include "vmm/machine/snapshot_file.h"
#include "vmm/machine/snapshot_memory.h"

#define HEADER_LEN 16u
#define SECTION_HEADER_LEN 16u
#define CRC_LEN 8u
#define PAGE 4096u

struct section_header {
    uint32_t kind, index;
    uint64_t len;
};

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static void put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i);
}

static int parse_section(const struct section_header *h, const uint8_t *data, struct snapshot *s, char *err,
                         size_t errlen) {
    switch (h->kind) {
    case SNAP_MACHINE:
        if (s->config_json) return error_text(err, errlen, "two machine sections");
        if (h->len < 17 || data[h->len - 1] != 0 || memchr(data + 16, 0, h->len - 16) != data + h->len - 1)
            return error_text(err, errlen, "the machine section is malformed");
        s->mem_size = le64(data);
        memcpy(&s->flags, data + 8, 4);
        if (s->mem_size == 0 || s->mem_size % PAGE || s->flags & ~(SNAPSHOT_LINUX_SMP | SNAPSHOT_VIRTIO_PCI))
            return error_text(err, errlen, "the machine section's memory size or flags are invalid");
        s->config_json = (const char *)data + 16;
        return 0;
    case SNAP_GUEST:
        if (s->guest.data) return error_text(err, errlen, "two guest sections");
        s->guest = (struct snapshot_blob){data, h->len};
        return 0;
    case SNAP_VCPU:
        if (h->index >= SNAPSHOT_MAX_VCPUS) return error_text(err, errlen, "vCPU %u: more than bellhop runs", h->index);
        if (h->index != s->nvcpus) return error_text(err, errlen, "vCPU %u out of order", h->index);
        s->vcpus[s->nvcpus++] = (struct snapshot_blob){data, h->len};
        return 0;
    case SNAP_DIFF:
        if (s->diff) return error_text(err, errlen, "two diff sections");
        if (h->len % sizeof(struct snapshot_probe) || h->len / sizeof(struct snapshot_probe) > SNAPSHOT_MAX_PROBES)
            return error_text(err, errlen, "the diff section is malformed");
        s->diff = true;
        s->nprobes = (unsigned)(h->len / sizeof(struct snapshot_probe));
        memcpy(s->probes, data, h->len);
        return 0;
    case SNAP_DEVICE: {
        if (h->index >= SNAPSHOT_MAX_DEVICES || h->index != s->ndevices)
            return error_text(err, errlen, "device %u out of order or past %u", h->index, SNAPSHOT_MAX_DEVICES);
        const uint8_t *nul = memchr(data, 0, h->len < SNAPSHOT_NAME_MAX ? h->len : SNAPSHOT_NAME_MAX);
        if (!nul || nul == data) return error_text(err, errlen, "device %u has no name", h->index);
        struct snapshot_device *d = &s->devices[s->ndevices++];
        memcpy(d->name, data, (size_t)(nul - data) + 1);
        d->state = (struct snapshot_blob){nul + 1, h->len - (size_t)(nul + 1 - data)};
        return 0;
    }
    default:
        return error_text(err, errlen, "unknown section kind %u", h->kind);
    }
}

int snapshot_parse(const uint8_t *buf, size_t len, struct snapshot *s, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    if (len < HEADER_LEN + CRC_LEN || memcmp(buf, "BHSNAP", 6) != 0)
        return error_text(err, errlen, "not a bellhop snapshot state file");
    if (memcmp(buf, SNAPSHOT_MAGIC, 8) != 0) return error_text(err, errlen, "a snapshot of another architecture than x86_64");
    s->major = le16(buf + 8), s->minor = le16(buf + 10), s->patch = le16(buf + 12);
    if (s->major != SNAPSHOT_MAJOR || s->minor > SNAPSHOT_MINOR)
        return error_text(err, errlen, "snapshot format %u.%u.%u; this bellhop reads %u.0.0 to %u.%u.x", s->major, s->minor,
                    s->patch, SNAPSHOT_MAJOR, SNAPSHOT_MAJOR, SNAPSHOT_MINOR);
    if (len > SNAPSHOT_MAX_FILE) return error_text(err, errlen, "state file larger than %u MiB", SNAPSHOT_MAX_FILE >> 20);
    uint64_t crc = lzma_crc64(buf, len - CRC_LEN, 0);
    if (crc != le64(buf + len - CRC_LEN)) return error_text(err, errlen, "state file corrupt or cut short (CRC mismatch)");
    const uint8_t *p = buf + HEADER_LEN, *end = buf + len - CRC_LEN;
    while (p < end) {
        if ((size_t)(end - p) < SECTION_HEADER_LEN) return error_text(err, errlen, "a section header is cut short");
        struct section_header h;
        memcpy(&h.kind, p, 4);
        memcpy(&h.index, p + 4, 4);
        h.len = le64(p + 8);
        p += SECTION_HEADER_LEN;
        if (h.len > (uint64_t)(end - p)) return error_text(err, errlen, "a section runs past the end of the file");
        if (parse_section(&h, p, s, err, errlen) != 0) return -1;
        p += h.len;
    }
    if (!s->config_json) return error_text(err, errlen, "no machine section");
    if (!s->guest.data) return error_text(err, errlen, "no guest section");
    if (s->nvcpus == 0) return error_text(err, errlen, "no vCPU sections");
    for (unsigned i = 0; i < s->nprobes; i++)
        if (s->probes[i].page >= s->mem_size / PAGE) return error_text(err, errlen, "the diff section names a page past memory");
    return 0;
}

static int read_whole(const char *path, uint8_t **buf, size_t *len, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return error_text(err, errlen, "snapshot_path %s: %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) rc = error_text(err, errlen, "snapshot_path %s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode)) rc = error_text(err, errlen, "snapshot_path %s: not a regular file", path);
    else if (st.st_size > SNAPSHOT_MAX_FILE)
        rc = error_text(err, errlen, "snapshot_path %s: larger than a state file can be (%u MiB)", path, SNAPSHOT_MAX_FILE >> 20);
    else if (!(*buf = malloc(st.st_size ? (size_t)st.st_size : 1))) rc = error_text(err, errlen, "out of memory");
    size_t got = 0;
    while (rc == 0 && got < (size_t)st.st_size) {
        ssize_t n = read(fd, *buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) rc = error_text(err, errlen, "snapshot_path %s: %s", path, n ? strerror(errno) : "changed while read");
        else got += (size_t)n;
    }
    close(fd);
    if (rc == 0) *len = got;
    else if (*buf) free(*buf), *buf = NULL;
    return rc;
}

/* The Uffd backend's socket, checked as far as a path can be before the handler is asked. */
static int keep_uffd_socket(const char *path, struct snapshot_image *img, char *err, size_t errlen) {
    if (!*path || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return error_text(err, errlen, "backend_path %s: %s", path, *path ? "too long for a Unix socket" : "empty");
    if (!(img->uffd_socket = strdup(path))) return error_text(err, errlen, "out of memory");
    return 0;
}

int snapshot_open(const char *state_path, enum snapshot_backend backend, const char *mem_path,
                  struct snapshot_image *img, char *err, size_t errlen) {
    *img = (struct snapshot_image){.mem_fd = -1};
    char why[240];
    if (read_whole(state_path, &img->buf, &img->len, err, errlen) != 0) return -1;
    if (snapshot_parse(img->buf, img->len, &img->state, why, sizeof why) != 0) {
        snapshot_close(img);
        return error_text(err, errlen, "snapshot_path %s: %s", state_path, why);
    }
    if (backend == SNAPSHOT_BACKEND_UFFD) {
        int rc = keep_uffd_socket(mem_path, img, err, errlen);
        if (rc) snapshot_close(img);
        return rc;
    }
    img->mem_fd = open(mem_path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    int rc = 0;
    if (img->mem_fd < 0 || fstat(img->mem_fd, &st) != 0) rc = error_text(err, errlen, "mem file %s: %s", mem_path, strerror(errno));
    else if (!S_ISREG(st.st_mode)) rc = error_text(err, errlen, "mem file %s: not a regular file", mem_path);
    else if ((uint64_t)st.st_size != img->state.mem_size)
        rc = error_text(err, errlen, "mem file %s: %lld bytes, the snapshot's guest has %llu (another snapshot's?)", mem_path,
                  (long long)st.st_size, (unsigned long long)img->state.mem_size);
    else rc = snapshot_check_probes(&img->state, img->mem_fd, mem_path, err, errlen); /* a diff's own file? */
    if (rc) snapshot_close(img);
    return rc;
}

void snapshot_close(struct snapshot_image *img) {
    free(img->buf);
    free(img->uffd_socket);
    if (img->mem_fd >= 0) close(img->mem_fd);
    *img = (struct snapshot_image){.mem_fd = -1};
}

void snapshot_writer_init(struct snapshot_writer *w) { *w = (struct snapshot_writer){0}; }

static void append(struct snapshot_writer *w, const void *data, size_t len) {
    if (w->failed || len == 0) return;
    if (len > w->cap - w->len) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap - w->len < len) cap *= 2;
        uint8_t *b = realloc(w->buf, cap);
        if (!b) {
            w->failed = 1;
            return;
        }
        w->buf = b, w->cap = cap;
    }
    memcpy(w->buf + w->len, data, len);
    w->len += len;
}

void snapshot_add(struct snapshot_writer *w, enum snapshot_section kind, uint32_t index, const void *head,
                  size_t head_len, const void *data, size_t len) {
    if (w->len == 0) {
        uint8_t h[HEADER_LEN] = {0};
        memcpy(h, SNAPSHOT_MAGIC, 8);
        h[8] = SNAPSHOT_MAJOR, h[12] = SNAPSHOT_PATCH; /* MINOR 0 until a newer section comes */
        append(w, h, sizeof h);
    }
    if (kind == SNAP_DIFF && !w->failed) w->buf[10] = 1; /* the minor that brought it */
    uint8_t sh[SECTION_HEADER_LEN];
    uint32_t k = kind;
    memcpy(sh, &k, 4);
    memcpy(sh + 4, &index, 4);
    put_le64(sh + 8, head_len + len);
    append(w, sh, sizeof sh);
    append(w, head, head_len);
    append(w, data, len);
}

int snapshot_finish(struct snapshot_writer *w) {
    uint8_t c[CRC_LEN];
    put_le64(c, w->failed ? 0 : lzma_crc64(w->buf, w->len, 0));
    append(w, c, sizeof c);
    return w->failed ? -1 : 0;
}

void snapshot_writer_free(struct snapshot_writer *w) {
    free(w->buf);
    *w = (struct snapshot_writer){0};
}
