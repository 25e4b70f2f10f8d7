/* bellhop's control plane: Firecracker's REST API on a Unix socket and its config file
 * (docs/api.md lists the endpoints and how they differ from Firecracker's).
 *
 * Before the guest runs, the main thread serves the API on a loop of its own until
 * InstanceStart; the machine is then set up, and the API moves onto the machine's loop, one
 * more fd wait among the devices' (its thread's seccomp role is api-loop). A machine that
 * cannot be set up (a kernel that is not a kernel) answers InstanceStart with a 400 and the
 * API goes on waiting for a configuration that works. The socket is removed on every way out. */
#ifndef BELLHOP_VMM_CONTROL_API_H
#define BELLHOP_VMM_CONTROL_API_H

#include "vmm/machine/machine.h"
#include "vmm/machine/snapshot_file.h"

/* Firecracker's MMDS options of the command line. */
struct api_mmds_options {
    const char *metadata; /* --metadata: a JSON file, the store's first content (NULL: none) */
    size_t limit;         /* --mmds-size-limit: the store's bound in bytes (0: MMDS_DEFAULT_LIMIT) */
};

/* Runs a VM configured by the config file (NULL: none) and, with sock (NULL: none), by the
 * API served there. base: what the command line set (observability, sandbox, console); the
 * configuration supplies kernel, memory, CPUs and devices. restore_state (NULL: none): the VM is
 * the snapshot in that file, its memory from restore_mem as restore_backend says (the memory
 * file, or a page-fault handler's socket), running at once (--restore). Returns the exit
 * status. */
int api_run(const struct machine_config *base, const char *sock, const char *config_file, const char *restore_state,
            enum snapshot_backend restore_backend, const char *restore_mem, const struct api_mmds_options *mmds);

#endif
