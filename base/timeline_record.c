/* The per-thread rings of base/timeline_record.h: each made at its thread's first record. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/timeline_record.h"

static _Thread_local struct timeline *tls_owner;
static _Thread_local struct timeline_ring *tls_ring;

struct timeline_ring *timeline_ring(struct timeline *t, const char *thread_name) {
    if (tls_owner == t) return tls_ring;
    tls_owner = t;
    tls_ring = NULL;
    unsigned i = atomic_fetch_add(&t->nrings, 1);
    if (i >= TIMELINE_MAX_THREADS) return NULL;
    struct timeline_ring *r = &t->rings[i];
    r->recs = malloc(sizeof *r->recs * TIMELINE_RING_RECORDS);
    /* Touched now, at the thread's start: no record's first write takes a page fault later,
     * on an exit's path. */
    if (r->recs) memset(r->recs, 0, sizeof *r->recs * TIMELINE_RING_RECORDS);
    snprintf(r->name, sizeof r->name, "%s", thread_name);
    return tls_ring = r->recs ? r : NULL;
}

void timeline_put(struct timeline_ring *r, const struct timeline_record *rec) {
    if (!r) return;
    r->recs[r->written++ % TIMELINE_RING_RECORDS] = *rec;
}

uint64_t timeline_flow(struct timeline *t) { return atomic_fetch_add(&t->next_flow, 1) + 1; }
