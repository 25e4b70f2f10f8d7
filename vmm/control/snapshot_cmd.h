/* `bellhop snapshot`: what is done to a snapshot's files without a VM. */
#ifndef BELLHOP_VMM_CONTROL_SNAPSHOT_CMD_H
#define BELLHOP_VMM_CONTROL_SNAPSHOT_CMD_H

#include <stddef.h>

#define SNAPSHOT_CMD_USAGE "bellhop snapshot rebase BASE_MEM DIFF_MEM"

/* Copies the pages a Diff snapshot's memory file holds (its data; its holes are the base's
 * pages) onto the memory file of the snapshot before it, which then holds the Diff's memory
 * (Firecracker's rebase-snap). 0, or -1 with a one-line reason; base is not touched when the
 * two files cannot be a base and its diff (not regular files, sizes that differ, the same
 * file). */
int snapshot_rebase(const char *base, const char *diff, char *err, size_t errlen);

/* `bellhop snapshot ...` (argv[0] is "snapshot"): the exit status. */
int cmd_snapshot(int argc, char **argv);

#endif
