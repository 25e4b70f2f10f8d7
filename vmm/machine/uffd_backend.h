/* Guest RAM served by another process: Firecracker's "Uffd" memory backend for restoring a
 * snapshot (docs/snapshots.md, "Restoring through a page-fault handler").
 *
 * The protocol is Firecracker's (its docs/snapshotting/handling-page-faults-on-snapshot-resume.md):
 * guest RAM is anonymous and untouched; bellhop registers it with a new userfaultfd (missing
 * pages; UFFD_FEATURE_EVENT_REMOVE, so that the balloon's discards reach the handler as remove
 * events), connects to the handler's Unix stream socket and sends, in one message, the region
 * table as JSON with the userfaultfd attached (SCM_RIGHTS):
 *     [{"base_host_virt_addr":H,"size":S,"offset":O,"page_size":4096,"page_size_kib":4096}, ...]
 * one region for each part of guest RAM (below the 32-bit hole, and above it when RAM goes
 * past 3 GiB: base/guest_mem.h), as Firecracker sends one for each of its memory regions;
 * offset: where the region's bytes are in the snapshot's memory file; page_size_kib is
 * Firecracker's deprecated twin of page_size (in bytes as well), sent as Firecracker sends it.
 * Nothing else passes on the socket. The handler keeps its end open while it serves (its
 * exit closes it): that is how bellhop learns that it went away.
 *
 * A thread of its own (seccomp role uffd) watches the socket, so that it sees the end even
 * while every other thread is stopped on a page that will never come:
 *   - during set-up (from the message until uffd_backend_running), the handler must serve what
 *     set-up touches within UFFD_SETUP_TIMEOUT_S; the handler's end, or that time passing,
 *     fails set-up with one line;
 *   - after it, the handler's end calls the machine's `gone` (one line, the VM ends with status 1).
 * Either way the thread then unregisters RAM from the userfaultfd, which wakes every thread
 * waiting for a page (a vCPU in KVM_RUN cannot be kicked out of that wait): the pages never
 * served read as zeros from then on, and the machine is already ending. */
#ifndef BELLHOP_VMM_MACHINE_UFFD_BACKEND_H
#define BELLHOP_VMM_MACHINE_UFFD_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UFFD_CONNECT_TIMEOUT_S 5 /* for a handler whose backlog is full */
#define UFFD_SETUP_TIMEOUT_S 10  /* for the pages set-up touches (the VM generation ID's) */

/* One region of guest RAM as the message describes it. */
struct uffd_region {
    uint64_t host;      /* base_host_virt_addr: where it is in bellhop */
    uint64_t size;      /* bytes */
    uint64_t offset;    /* of its bytes in the snapshot's memory file */
    uint64_t page_size; /* bytes (4096: bellhop's RAM is 4 KiB pages to the userfaultfd) */
};

/* The message: the region table as Firecracker's JSON (no newline, NUL-terminated). Its
 * length, or -1 when it does not fit in len. */
int uffd_region_table(const struct uffd_region *r, unsigned n, char *buf, size_t len);

/* The regions of guest RAM of `size` bytes held at `ram` (its parts, each at its RAM offset
 * in the memory file). How many: 1 or 2. */
unsigned uffd_ram_regions(void *ram, uint64_t size, struct uffd_region r[2]);

struct uffd_backend;

/* Registers [ram, ram + size) (anonymous RAM nothing has touched yet) with a new userfaultfd
 * and hands it to the handler listening at socket_path, then starts watching the handler
 * (confined to its seccomp role when `sandbox`). The backend, or NULL with a one-line reason. */
struct uffd_backend *uffd_backend_open(void *ram, uint64_t size, const char *socket_path, bool sandbox, char *err,
                                       size_t errlen);

/* Set-up is over: from now on the handler's end calls gone(ctx, why) on the watching thread,
 * which then wakes the threads waiting for pages. 0, or -1 with the reason set-up must fail
 * for (the handler went away, or did not serve set-up in time). */
int uffd_backend_running(struct uffd_backend *u, void (*gone)(void *ctx, const char *why), void *ctx, char *err,
                         size_t errlen);

/* The machine is ending (its vCPUs told to stop): wakes every thread still waiting for a page
 * (a handler that stopped answering must not hold the VMM's end), stops watching and releases
 * the userfaultfd, the socket and the thread. */
void uffd_backend_close(struct uffd_backend *u);

#endif
