/* Whole files mapped read-only, for setup's readers of user files (kernels, initrds, symbol
 * tables): they read straight from the page cache. A mapped file that another process
 * truncates raises SIGBUS at the first access past its new end; readers run under
 * file_map_guarded, which makes that an error instead. */
#ifndef BELLHOP_VMM_MACHINE_FILE_MAP_H
#define BELLHOP_VMM_MACHINE_FILE_MAP_H

#include <stddef.h>
#include <stdint.h>

struct file_map {
    const uint8_t *data;
    size_t len;
    int fd; /* the file, open read-only (-1 once closed or taken by another owner) */
};

/* Maps `path` when it is a non-empty regular file of at most `max` bytes; otherwise err says
 * why ("not a regular file", "empty file", "too large for LIMIT (N bytes)", errno's words). */
int file_map_open(const char *path, size_t max, const char *limit, struct file_map *f, char *err, size_t errlen);
/* Unmaps it and closes f->fd unless taken. */
void file_map_close(struct file_map *f);

/* read(f, arg) under the SIGBUS guard: its result, or FILE_MAP_SHRANK when the file shrank
 * under the mapping. Setup only: the guard is process-wide while it runs. */
#define FILE_MAP_SHRANK (-2)
int file_map_guarded(const struct file_map *f, int (*read)(const struct file_map *f, void *arg), void *arg);

#endif
