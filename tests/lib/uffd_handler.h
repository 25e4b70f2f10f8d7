/* A page-fault handler for restores through Firecracker's Uffd memory backend, written from
 * the protocol's text (Firecracker's docs/snapshotting/handling-page-faults-on-snapshot-resume.md)
 * rather than from bellhop's side of it, so that the tests and the bench check the two agree:
 * it listens on a Unix socket, takes one VMM's message (the region table as JSON, a
 * userfaultfd attached), and serves that VMM's guest memory from the snapshot's memory file
 * until the VMM's end of the connection closes.
 *
 * Two ways of serving:
 *   on demand     each missing page copied (UFFDIO_COPY) when a fault asks for it;
 *   all at once   every region copied as soon as the message comes, then faults as above.
 * Either way, pages the VMM gave back (UFFD_EVENT_REMOVE, the balloon's discards) are served
 * as zeros (UFFDIO_ZEROPAGE) when touched again, as the protocol asks. */
#ifndef BELLHOP_TESTS_LIB_UFFD_HANDLER_H
#define BELLHOP_TESTS_LIB_UFFD_HANDLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UFFD_HANDLER_MAX_REGIONS 32
#define UFFD_HANDLER_MAX_MESSAGE 65536

struct uffd_handler_region {
    uint64_t base;      /* base_host_virt_addr */
    uint64_t size;
    uint64_t offset;    /* of the region's bytes in the memory file */
    uint64_t page_size; /* bytes: a power of two, 4096 or more */
};

/* Parses a message's JSON: an array of 1 to max objects, each with base_host_virt_addr, size,
 * offset and page_size as unsigned integers (other members, of scalar values, ignored, as
 * Firecracker's own handlers ignore page_size_kib); the regions page-aligned, non-empty,
 * within the address space and apart. *n regions, 0; or -1 with a one-line reason. */
int uffd_handler_parse(const char *json, size_t len, struct uffd_handler_region *out, unsigned max, unsigned *n,
                       char *err, size_t errlen);

enum uffd_serve_mode { UFFD_SERVE_ON_DEMAND, UFFD_SERVE_ALL_AT_ONCE };

struct uffd_handler_options {
    enum uffd_serve_mode mode;
    int timeout_ms;      /* for the VMM to connect and send its message */
    long stop_after;     /* > 0: after serving this many faults, stop answering and return (a
                          * handler that dies mid-restore); 0: serve until the VMM goes */
};

/* What one VMM asked for and got. */
struct uffd_handler_counts {
    uint64_t faults;        /* page-fault events read */
    uint64_t pages_copied;  /* from the memory file */
    uint64_t pages_zeroed;  /* removed pages touched again */
    uint64_t pages_removed; /* in remove events */
    uint64_t guest_pages;   /* all the regions' */
    uint64_t copy_all_ns;   /* all at once: how long copying every region took */
};

/* A socket listening at path (anything there first removed): the fd, or -1 with errno. */
int uffd_handler_listen(const char *path);

/* Serves one VMM that connects to listen_fd, from the memory file at mem_path: 0 when the VMM
 * closed its end (or stop_after was reached), -1 with a one-line reason. counts: may be NULL. */
int uffd_handler_serve(int listen_fd, const char *mem_path, const struct uffd_handler_options *o,
                       struct uffd_handler_counts *counts, char *err, size_t errlen);

#endif
