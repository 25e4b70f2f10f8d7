/* Recording a timeline (--trace-file, vmm/observe/timeline.h): what the VMM's threads and the devices
 * put on it as the guest runs. Each thread records into a ring of its own (no lock, no system
 * call: the clock is zx_clock_get_monotonic's vDSO read); a full ring overwrites its oldest
 * records. Recording sites test one pointer when there is no timeline. The writer that turns
 * the rings into a trace file is vmm/observe/timeline.c. */
#ifndef BELLHOP_BASE_TIMELINE_RECORD_H
#define BELLHOP_BASE_TIMELINE_RECORD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TIMELINE_RING_RECORDS (1u << 16) /* per thread: about 5 MiB at most */
#define TIMELINE_MAX_THREADS 40 /* a machine's 32 vCPUs (MACHINE_MAX_CPUS), its loop, and a few more */
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

struct timeline_ring {
    char name[16];
    struct timeline_record *recs;
    uint64_t written; /* owner thread only; read after it stopped */
};

/* Made and written out by vmm/observe/timeline.c. */
struct timeline {
    int fd;
    _Atomic unsigned nrings;
    _Atomic uint64_t next_flow;
    struct timeline_ring rings[TIMELINE_MAX_THREADS];
};

/* The calling thread's ring, made on its first call under this name ("vcpu-0", "loop"). NULL
 * when no ring is left (the thread then records nothing). */
struct timeline_ring *timeline_ring(struct timeline *t, const char *thread_name);
void timeline_put(struct timeline_ring *r, const struct timeline_record *rec);
/* A flow id, unique in this timeline (any thread). */
uint64_t timeline_flow(struct timeline *t);

#endif
