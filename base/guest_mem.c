/* Guest RAM's accessors that change how it is mapped (see guest_mem.h). */
#include <sys/mman.h>

#include "base/guest_mem.h"

#define PAGE 4096ull

/* The whole pages inside [gpa, gpa+len): *head bytes before them, their length returned. */
static uint64_t whole_pages(uint64_t gpa, uint64_t len, uint64_t *head) {
    *head = (PAGE - gpa % PAGE) % PAGE;
    return len > *head ? (len - *head) & ~(PAGE - 1) : 0;
}

/* [off, off+len) of RAM is some file's pages */
static bool in_files(const struct gm_files *f, uint64_t off, uint64_t len) {
    for (unsigned i = 0; f && i < f->n; i++)
        if (off < f->range[i].off + f->range[i].len && f->range[i].off < off + len) return true;
    return false;
}

bool gm_write_file(const struct guest_mem *gm, uint64_t gpa, const uint8_t *image, size_t image_len, int fd,
                   uint64_t off, uint64_t len) {
    uint64_t ram_off;
    if (!gm_offset(gm, gpa, len, &ram_off) || off > image_len || len > image_len - off) return false;
    gm_mark(gm, gpa, len); /* the file's pages are the guest's bytes now, copied or not */
    struct gm_files *f = gm->files;
    uint64_t head, pages = whole_pages(gpa, len, &head);
    if (fd < 0 || !f || f->n == GM_MAX_FILE_RANGES || (gpa - off) % PAGE || pages == 0)
        return gm_write(gm, gpa, image + off, len);
    uint8_t *at = gm->host + ram_off + head;
    if (mmap(at, pages, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd,
             (off_t)(off + head)) == MAP_FAILED)
        return gm_write(gm, gpa, image + off, len); /* RAM there is as it was */
    f->range[f->n].off = ram_off + head;
    f->range[f->n].len = pages;
    f->n++;
    f->mapped += pages;
    memcpy(gm->host + ram_off, image + off, head);
    memcpy(at + pages, image + off + head + pages, len - head - pages);
    return true;
}

bool gm_zero(const struct guest_mem *gm, uint64_t gpa, uint64_t len) {
    uint8_t *p = gm_ptr_write(gm, gpa, len);
    if (!p) return false;
    uint64_t head, pages = whole_pages(gpa, len, &head);
    /* Only the VMM's private anonymous RAM reads as zeros once dropped (a file's page would
     * read as the file again). */
    if (!gm->files || !pages || in_files(gm->files, (uint64_t)(p - gm->host) + head, pages) ||
        madvise(p + head, pages, MADV_DONTNEED) != 0)
        head = len, pages = 0;
    memset(p, 0, head);
    memset(p + head + pages, 0, len - head - pages);
    return true;
}

bool gm_discard(const struct guest_mem *gm, uint64_t gpa, uint64_t len) {
    /* zeros from now on: written, for a diff snapshot, as much as any other change */
    void *p = gm_ptr_write(gm, gpa, len);
    if (!p) return false;
    /* Dropped, a file's page would read as the file again: anonymous memory replaces it. */
    if (in_files(gm->files, (uint64_t)((uint8_t *)p - gm->host), len))
        return mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) != MAP_FAILED;
    return madvise(p, len, MADV_DONTNEED) == 0;
}

int gm_unshare(const struct guest_mem *gm) {
    const struct gm_files *f = gm->files;
    int rc = 0;
    for (unsigned i = 0; f && i < f->n; i++) {
        /* A private file mapping's own copies of pages still go when the file is truncated
         * (POSIX: past the end is SIGBUS): only an anonymous mapping in its place is safe. */
        uint8_t *p = gm->host + f->range[i].off;
        size_t len = f->range[i].len;
        void *copy = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (copy == MAP_FAILED) {
            rc = -1;
            continue;
        }
        memcpy(copy, p, len);
        if (mremap(copy, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, p) == MAP_FAILED) {
            munmap(copy, len);
            rc = -1;
        }
    }
    return rc;
}
