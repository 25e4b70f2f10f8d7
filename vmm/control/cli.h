/* `bellhop run`'s command line. The flags that describe the VM (kernel, memory, CPUs,
 * devices) fill the same struct vm_spec that the API and the config file fill, through the
 * same parsers and checks (vmm/control/vm_spec.h), so a VM means one thing however it is
 * asked for; --print-config shows it as a config file. The other flags set the VMM's options
 * (machine_config: observability, sandbox, console). */
#ifndef BELLHOP_VMM_CONTROL_CLI_H
#define BELLHOP_VMM_CONTROL_CLI_H

#include <stdbool.h>

#include "devices/virtio_console.h"
#include "vmm/control/vm_spec.h"
#include "vmm/machine/machine.h"

#define CLI_EXIT_USAGE 2
#define CLI_MAX_DISKS VM_SPEC_MAX_DRIVES
#define CLI_MAX_MMDS_LIMIT (1u << 30) /* --mmds-size-limit's bound: the store is held whole, in memory */

struct cli_run {
    struct machine_config cfg; /* the VMM's options, and the virtio console when asked for */
    struct vm_spec spec;       /* the VM, as the flags describe it (vm_spec_init'ed; vm_spec_free it) */
    struct virtio_console_params console;
    const char *api_sock, *config_file, *restore, *mem_file, *mem_uffd; /* NULL: not given */
    const char *metadata; /* --metadata: the MMDS store's first content (NULL: none) */
    size_t mmds_limit;    /* --mmds-size-limit (0: not given) */
    bool print_config, help;
};

/* Parses argv (argv[0] is "run"). 0, or an exit status when told why on stderr: 2 for bad
 * usage, 1 for a file or device the VM cannot have. */
int cli_parse_run(int argc, char **argv, struct cli_run *r);
/* Runs what r says: prints the configuration, serves the API, or runs the machine. */
int cli_run(struct cli_run *r);
/* "virtio-blk, virtio-console, ...": what --device takes. */
const char *cli_device_names(void);
/* The bundled tiny guest beside the binary (or installed beside it); NULL when not found. */
const char *cli_bundled_kernel(void);
__attribute__((format(printf, 1, 2))) int cli_bad_usage(const char *fmt, ...);

#endif
