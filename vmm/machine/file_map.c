#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/machine/file_map.h"

int file_map_open(const char *path, size_t max, const char *limit, struct file_map *f, char *err, size_t errlen) {
    *f = (struct file_map){.fd = -1};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return snprintf(err, errlen, "%s", strerror(errno)), -1;
    struct stat st;
    int r = -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "not a regular file");
    } else if (st.st_size == 0) {
        snprintf(err, errlen, "empty file");
    } else if ((uint64_t)st.st_size > max) {
        snprintf(err, errlen, "too large for %s (%lld bytes)", limit, (long long)st.st_size);
    } else {
        /* Not populated: a kernel or initrd that guest RAM maps is mostly never read here. */
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            snprintf(err, errlen, "cannot map it: %s", strerror(errno));
        } else {
            *f = (struct file_map){p, (size_t)st.st_size, fd};
            return 0;
        }
    }
    close(fd);
    return r;
}

void file_map_close(struct file_map *f) {
    if (f->data) munmap((void *)f->data, f->len);
    if (f->fd >= 0) close(f->fd);
    *f = (struct file_map){.fd = -1};
}

static sigjmp_buf *guard;
static struct sigaction guard_saved;

static void guard_bus(int sig) {
    (void)sig;
    siglongjmp(*guard, 1);
}

int file_map_guarded(const struct file_map *f, int (*read)(const struct file_map *f, void *arg), void *arg) {
    sigjmp_buf jb;
    if (sigsetjmp(jb, 1) != 0) {
        sigaction(SIGBUS, &guard_saved, NULL);
        guard = NULL;
        return FILE_MAP_SHRANK;
    }
    struct sigaction sa = {.sa_handler = guard_bus};
    sigemptyset(&sa.sa_mask);
    guard = &jb;
    sigaction(SIGBUS, &sa, &guard_saved);
    int r = read(f, arg);
    sigaction(SIGBUS, &guard_saved, NULL);
    guard = NULL;
    return r;
}
