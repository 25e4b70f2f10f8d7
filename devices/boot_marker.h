#ifndef BELLHOP_DEVICES_BOOT_MARKER_H
#define BELLHOP_DEVICES_BOOT_MARKER_H

#include <zircon/types.h>

#include "devices/device.h"

/* Boot-time markers: a 32-bit write to port 0x80 (outl) records its value, the time since
 * the VMM started and the guest's exits so far, by kind; byte writes there are the PC's I/O
 * delay and are ignored.
 * With `print`, each marker is printed to stderr as it arrives, after a first line saying when
 * the boot CPU first entered the guest: what the VMM's own setup cost. */
#define BOOT_MARKER_PORT 0x80
#define BOOT_MARKER_MAX 64

struct boot_marker;
extern const struct io_ops boot_marker_ops;
struct boot_marker *boot_marker_create(zx_handle_t guest, uint64_t vmm_start_ns, bool print);
/* --trace-file: each marker also an instant on the timeline (vmm/observe/timeline.h). */
void boot_marker_set_timeline(struct boot_marker *b, struct timeline *t);
void boot_marker_destroy(struct boot_marker *b);
/* The boot CPU is about to run the guest's first instruction (once per VM); `setup` says
 * where the VMM's setup went, phase by phase. */
void boot_marker_guest_entered(struct boot_marker *b, const char *setup);

#endif
