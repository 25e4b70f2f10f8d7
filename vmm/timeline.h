/* --trace-file: a timeline of a running guest in the Chrome Trace Event format (JSON, which
 * Perfetto's UI and chrome://tracing open): a track per vCPU thread with a slice per exit the
 * VMM handled, a track for the loop thread with a slice per bell handler, flows from each
 * bell to its handler and from a handler to the interrupts it raised, instants for boot
 * markers and guest console lines, and counters of exits per 100 ms by kind.
 *
 * Cost: each thread records into a ring of its own (no lock, no system call: the clock is
 * the vDSO's); a full ring overwrites its oldest records, and the trace says how many went.
 * The rings are written out by the main thread once every other thread has stopped. With no
 * --trace-file, recording sites test one pointer. */
#ifndef BELLHOP_VMM_TIMELINE_H
#define BELLHOP_VMM_TIMELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TIMELINE_RING_RECORDS (1u << 16) /* per thread: about 5 MiB at most */
#define TIMELINE_MAX_THREADS 24
#define TIMELINE_TEXT 40

enum timeline_kind {
    TIMELINE_EXIT,    /* a slice: what one exit cost the VMM, from KVM_RUN's return to the next */
    TIMELINE_HANDLER, /* a slice: a bell's handler on the loop */
    TIMELINE_BELL,    /* an instant: a bell packet taken off the port (a flow starts) */
    TIMELINE_IRQ,     /* an instant: an interrupt raised (a flow from its handler ends) */
    TIMELINE_MARK,    /* an instant: a boot marker, a console line */
    TIMELINE_TURN,    /* a slice: one handler the loop ran, of any kind (a bell's, an fd wait's, a timer's) */
};

struct timeline_record {
    uint64_t ts_ns, dur_ns;
    uint64_t arg;  /* the port or address, the queue, the pin */
    uint64_t flow; /* 0: none */
    uint8_t kind;
    /* The name of an exit, a handler, a bell, an interrupt or a loop turn is put together at
     * the end from what = a static string (an exit's kind, a device's name) and of = a device's
     * name, "msi" or "irq pin", or NULL (for a handler, arg is the queue): recording stores
     * pointers, not text. */
    const char *what, *of;
    char text[TIMELINE_TEXT + 7]; /* the name of a mark (a boot marker, a console line) */
};

struct timeline;

/* Opens (creates, truncates) the trace file now, before the sandbox forbids it; NULL with the
 * reason in err. */
struct timeline *timeline_create(const char *path, char *err, size_t errlen);
void timeline_destroy(struct timeline *t);
/* The calling thread's ring, made on its first call under this name ("vcpu-0", "loop"). NULL
 * when no ring is left (the thread then records nothing). */
struct timeline_ring *timeline_ring(struct timeline *t, const char *thread_name);
void timeline_put(struct timeline_ring *r, const struct timeline_record *rec);
/* A flow id, unique in this timeline (any thread). */
uint64_t timeline_flow(struct timeline *t);
uint64_t timeline_now_ns(void);
/* Writes the trace (main thread, every recording thread stopped: memory, then write(2) to the
 * file opened at creation). 0, or -1 with the reason. */
int timeline_write(struct timeline *t, uint64_t start_ns, char *err, size_t errlen);

#endif
