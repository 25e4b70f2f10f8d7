/* The kernel and initrd files whose pages guest RAM takes copy-on-write (gm_write_file): each
 * is held open under a read lease (fcntl F_SETLEASE), which no one can take while another
 * process has the file open for writing, and which another process breaks by opening it for
 * writing or truncating it. That process then waits (at most /proc/sys/fs/lease-break-time)
 * while the kernel signals bellhop (SIGIO), whose loop has guest RAM stop sharing pages with
 * the files (the machine's `unshare`: vCPUs stopped, gm_unshare) and lets the leases go: the
 * guest never sees a file change. One machine per process (the signal is the process's).
 * Where no lease can be had (the file is open for writing elsewhere, belongs to another user
 * without CAP_LEASE, or its filesystem has none), the loader copies, as it would anyway. */
#ifndef BELLHOP_VMM_MACHINE_IMAGE_LEASE_H
#define BELLHOP_VMM_MACHINE_IMAGE_LEASE_H

#include <lib/async/dispatcher.h>
#include <lib/async/wait.h>
#include <stdbool.h>

#include "base/guest_mem.h"

#define IMAGE_LEASE_MAX 2 /* the kernel, the initrd */

struct image_leases {
    int fd[IMAGE_LEASE_MAX];
    unsigned n;
    void (*unshare)(void *arg);
    void *arg;
    zx_handle_t handle; /* the break signal's eventfd, waited on by the loop */
    async_wait_t wait;
};

void image_leases_init(struct image_leases *l);
/* Takes a read lease on the open file `fd` (read-only). On success *l owns fd and returns it
 * for gm_write_file; otherwise fd is left as it was and -1 returned (copy instead). */
int image_lease_take(struct image_leases *l, int fd);
/* From here on a break runs unshare(arg) then releases every lease, on `loop`. */
int image_leases_watch(struct image_leases *l, async_dispatcher_t *loop, void (*unshare)(void *arg), void *arg);
/* Releases the leases (guest RAM must no longer share the files' pages, or be gone). */
void image_leases_release(struct image_leases *l);

#endif
