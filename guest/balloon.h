/* The tiny guest's virtio-balloon driver (virtio 1.2 §5.5): the pages it gives are RAM it
 * never uses (above its image), its statistics are what it knows of its memory, given
 * through the statistics queue whenever the device asks (from the device's interrupt, so in
 * every mode that takes interrupts). */
#ifndef BELLHOP_GUEST_BALLOON_H
#define BELLHOP_GUEST_BALLOON_H

#include "firmware/hvm_start_info.h"
#include "guest/virtio.h"

#define VIRTIO_ID_BALLOON 5

typedef void balloon_result_fn(const char *name, bool ok, const char *detail);

/* The guest's RAM from its memory map, and the part it may give: above its own image, below
 * any module. Before balloon_start. */
void balloon_find_ram(const struct hvm_start_info *si);
/* Starts the device at base, with the statistics queue when it is offered (its first buffer
 * given at once): vdev_init's answer. */
int balloon_start(struct vdev *d, uint64_t base, unsigned irq);
/* A page inflated reads back as zeros and is deflated again; the statistics were given. */
void balloon_selftest(struct vdev *d, balloon_result_fn *result);
/* Follows the host's target for as long as the VM runs: inflates and deflates to num_pages
 * (as far as the RAM it may give goes), writes actual, prints a line per change. */
_Noreturn void balloon_serve(struct vdev *d);

#endif
