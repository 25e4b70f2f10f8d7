/* What a process has resident, mapping by mapping, from /proc/PID/smaps: the bench's and the
 * tests' measure of the VMM's own memory. */
#ifndef BELLHOP_VMM_OBSERVE_SMAPS_H
#define BELLHOP_VMM_OBSERVE_SMAPS_H

#include <sys/types.h>

struct smaps_mapping {
    const char *name; /* the mapped file's path, a [tag], or "" */
    long size_kib, rss_kib, anon_kib;
};

/* Calls visit once per mapping of pid. 0, or -1 when pid's smaps cannot be read. */
int smaps_each(pid_t pid, void (*visit)(const struct smaps_mapping *m, void *arg), void *arg);

#endif
