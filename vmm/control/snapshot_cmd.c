/* `bellhop snapshot rebase` (see snapshot_cmd.h). A Diff's memory file says which pages it
 * holds by its holes: SEEK_DATA and SEEK_HOLE find its data, which is copied in place onto
 * the base (copy_file_range, which a filesystem may do by sharing blocks; read and write where
 * the kernel cannot). */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error_text.h"
#include "vmm/control/cli.h"
#include "vmm/control/snapshot_cmd.h"

/* Opens path (flags) as a regular file into *fd and *st: 0, or -1 with why. */
static int open_regular(const char *path, int flags, int *fd, struct stat *st, char *err, size_t errlen) {
    *fd = open(path, flags | O_CLOEXEC);
    if (*fd < 0 || fstat(*fd, st) != 0) return error_text(err, errlen, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st->st_mode)) return error_text(err, errlen, "%s: not a regular file", path);
    return 0;
}

/* [at, end) of from onto the same place in to. */
static int copy_range(int to, int from, off_t at, off_t end) {
    static char buf[1 << 16];
    bool kernel = true; /* copy_file_range, until it says it cannot */
    while (at < end) {
        size_t want = (size_t)(end - at);
        off_t in = at, out = at;
        ssize_t n = kernel ? copy_file_range(from, &in, to, &out, want, 0) : -1;
        if (kernel && n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) kernel = false;
        if (!kernel) {
            n = pread(from, buf, want < sizeof buf ? want : sizeof buf, at);
            if (n > 0 && pwrite(to, buf, (size_t)n, at) != n) n = -1;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = EIO; /* the diff shrank meanwhile */
            return -1;
        }
        at += n;
    }
    return 0;
}

/* Every data extent of diff onto base: 0, or -1 with errno. */
static int copy_data(int base, int diff, off_t size) {
    for (off_t at = 0; at < size;) {
        off_t data = lseek(diff, at, SEEK_DATA);
        if (data < 0) return errno == ENXIO ? 0 : -1; /* holes to the end */
        off_t hole = lseek(diff, data, SEEK_HOLE);
        if (hole < 0) return -1;
        if (hole > size) hole = size;
        if (data >= hole) break;
        if (copy_range(base, diff, data, hole) != 0) return -1;
        at = hole;
    }
    return 0;
}

int snapshot_rebase(const char *base, const char *diff, char *err, size_t errlen) {
    int bfd = -1, dfd = -1;
    struct stat bst, dst;
    int rc = open_regular(diff, O_RDONLY, &dfd, &dst, err, errlen);
    if (rc == 0) rc = open_regular(base, O_RDWR, &bfd, &bst, err, errlen);
    if (rc == 0 && bst.st_dev == dst.st_dev && bst.st_ino == dst.st_ino)
        rc = error_text(err, errlen, "%s and %s are the same file", base, diff);
    else if (rc == 0 && dst.st_size > bst.st_size)
        rc = error_text(err, errlen, "%s (%lld bytes) is larger than its base %s (%lld bytes): not a diff of it", diff,
                        (long long)dst.st_size, base, (long long)bst.st_size);
    else if (rc == 0 && dst.st_size != bst.st_size)
        rc = error_text(err, errlen, "%s (%lld bytes) is not the size of %s (%lld bytes): not a diff of it", diff,
                        (long long)dst.st_size, base, (long long)bst.st_size);
    if (rc == 0 && (copy_data(bfd, dfd, dst.st_size) != 0 || fsync(bfd) != 0))
        rc = error_text(err, errlen, "copying %s onto %s: %s", diff, base, strerror(errno));
    if (bfd >= 0) close(bfd);
    if (dfd >= 0) close(dfd);
    return rc;
}

int cmd_snapshot(int argc, char **argv) {
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: " SNAPSHOT_CMD_USAGE "\n"
               "  rebase               copies the pages a Diff snapshot's memory file holds onto the\n"
               "                       memory file of the snapshot it follows (BASE_MEM, changed in\n"
               "                       place); restore the Diff's state file with BASE_MEM then\n");
        return 0;
    }
    if (argc != 4 || strcmp(argv[1], "rebase") != 0) {
        fprintf(stderr, "bellhop: snapshot: %s (usage: " SNAPSHOT_CMD_USAGE ")\n",
                argc < 2 ? "no command" : strcmp(argv[1], "rebase") != 0 ? "unknown command" : "rebase takes two files");
        return CLI_EXIT_USAGE;
    }
    char err[600];
    if (snapshot_rebase(argv[2], argv[3], err, sizeof err) != 0) {
        fprintf(stderr, "bellhop: snapshot rebase: %s\n", err);
        return 1;
    }
    return 0;
}
