#ifndef BELLHOP_DEVICES_DEBUG_EXIT_H
#define BELLHOP_DEVICES_DEBUG_EXIT_H

#include "devices/device.h"

#define DEBUG_EXIT_PORT 0xf4
/* Its ports: bellhop's own device takes one; QEMU's isa-debug-exit, as kvm-unit-tests runs
 * it (iosize=4), four. */
#define DEBUG_EXIT_PORTS 1
#define DEBUG_EXIT_QEMU_PORTS 4

struct debug_exit_params {
    /* QEMU's isa-debug-exit: a write of v ends the VMM with (v << 1) | 1 (so that no guest
     * value means 0, a clean exit); else with v itself */
    bool qemu;
};

struct debug_exit;
extern const struct io_ops debug_exit_ops;
struct debug_exit *debug_exit_create(struct vm_env *env, const struct debug_exit_params *p);
void debug_exit_destroy(struct debug_exit *d);

#endif
