/* The device model API. A device is an ops table over its register window plus the
 * machine services it may use; it never sees KVM.
 *
 * Threading: register accesses (read/write) arrive on vCPU threads, possibly several at
 * once; bells, fd waits and timers arrive on the async loop's thread. A device guards its
 * own state with its own lock.
 */
#ifndef BELLHOP_DEVICES_DEVICE_H
#define BELLHOP_DEVICES_DEVICE_H

#include <lib/async/dispatcher.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zircon/types.h>

#include "base/guest_mem.h"

struct io_ops {
    const char *name;
    /* off: from the start of the window; size: 1, 2, 4 or 8. Reads of unknown registers
     * return 0; writes to them are ignored. */
    uint64_t (*read)(void *dev, uint64_t off, uint8_t size);
    void (*write)(void *dev, uint64_t off, uint8_t size, uint64_t value);
    /* Optional, for snapshots (every vCPU parked, on the loop thread): the device's state
     * written into buf (returns its length, 0 when it does not fit), and read back into a
     * device made with the same parameters before the guest runs again (0, or -1 with a
     * one-line reason: a state from a file is checked, field by field, before it is used). */
    size_t (*save)(void *dev, uint8_t *buf, size_t len);
    int (*restore)(void *dev, const uint8_t *buf, size_t len, char *err, size_t errlen);
};

/* For save and restore hooks: a device's saved state is one fixed-layout struct of its own. */
#define DEVICE_SAVE(buf, len, wire) (sizeof(wire) <= (len) ? (memcpy((buf), &(wire), sizeof(wire)), sizeof(wire)) : 0)
#define DEVICE_RESTORE_LEN(name, len, wire, err, errlen)                                               \
    ((len) == sizeof(wire) ? 0 : (snprintf((err), (errlen), "%s: its saved state is %zu bytes, not %zu", (name), \
                                           (size_t)(len), sizeof(wire)), -1))

/* What the machine lends its devices. */
struct vm_env {
    struct guest_mem mem;
    int mem_fd; /* guest memory as a shareable fd (for vhost-user backends); -1 when private */
    zx_handle_t guest;
    async_dispatcher_t *loop;
    /* Ends the VM with this exit status (any thread). */
    void (*request_exit)(struct vm_env *env, int status);
    /* Raises an edge on IOAPIC pin `irq` (any thread). */
    void (*raise_irq)(struct vm_env *env, uint32_t irq);
    /* An MSI vector: writing 8 bytes to *fd raises it; msi_set gives it the message the guest
     * programmed (any thread). The machine owns the fds. */
    zx_status_t (*msi_create)(struct vm_env *env, uint32_t *msi, int *fd);
    zx_status_t (*msi_set)(struct vm_env *env, uint32_t msi, uint64_t address, uint32_t data);
    /* A level-triggered line on `gsi`: writing *fd asserts it until the guest's EOI, which
     * makes *resample_fd readable. The machine owns the fds. */
    zx_status_t (*irq_level)(struct vm_env *env, uint32_t gsi, int *fd, int *resample_fd);
    /* A line whose level the guest drives itself (pc-testdev): set at once (KVM_IRQ_LINE). */
    zx_status_t (*irq_line)(struct vm_env *env, uint32_t gsi, bool level);
    /* --trace traps: devices report the bell packets they receive on the loop, stamped with
     * the time since trace_start_ns (the VMM's start). */
    bool trace;
    uint64_t trace_start_ns;
    /* --stats: devices count their notifications and time their handlers. */
    bool stats;
    /* --trace-file: devices record their handlers, interrupts and lines (vmm/observe/timeline.h) */
    struct timeline *timeline;
};

/* Where --stats keeps what one handler cost: how often, in total, and a log2 histogram of
 * nanoseconds (for the median and p99). Updated by one thread at a time per instance. */
struct handler_stats {
    uint64_t count, total_ns, max_ns;
    uint32_t hist[40];
};
void handler_stats_add(struct handler_stats *h, uint64_t ns);
/* The value below which fraction q of the samples lie, to within a power of two. */
uint64_t handler_stats_quantile(const struct handler_stats *h, double q);
/* Milliseconds since env->trace_start_ns, the stamp on every trace line. */
double trace_ms(const struct vm_env *env);

#endif
