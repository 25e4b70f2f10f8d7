/* --trace-file: a timeline of a running guest in the Chrome Trace Event format (JSON, which
 * Perfetto's UI and chrome://tracing open): a track per vCPU thread with a slice per exit the
 * VMM handled, a track for the loop thread with a slice per bell handler, flows from each
 * bell to its handler and from a handler to the interrupts it raised, instants for boot
 * markers and guest console lines, and counters of exits per 100 ms by kind.
 *
 * Recording is base/timeline_record.h (a ring per thread, no lock); the trace says how many
 * records a full ring overwrote. The rings are written out by the main thread once every
 * other thread has stopped. */
#ifndef BELLHOP_VMM_OBSERVE_TIMELINE_H
#define BELLHOP_VMM_OBSERVE_TIMELINE_H

#include <stddef.h>
#include <stdint.h>

#include "base/timeline_record.h"

/* Opens (creates, truncates) the trace file now, before the sandbox forbids it; NULL with the
 * reason in err. */
struct timeline *timeline_create(const char *path, char *err, size_t errlen);
void timeline_destroy(struct timeline *t);
/* Writes the trace (main thread, every recording thread stopped: memory, then write(2) to the
 * file opened at creation). 0, or -1 with the reason. */
int timeline_write(struct timeline *t, uint64_t start_ns, char *err, size_t errlen);

#endif
