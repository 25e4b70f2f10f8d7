/* The tiny guest's hostile mode (cmdline "hostile [storm=N]"): what a malicious guest does
 * to its VMM, then proof that the VMM still works. See hostile.c. */
#ifndef BELLHOP_GUEST_HOSTILE_H
#define BELLHOP_GUEST_HOSTILE_H

#include "guest/virtio.h"

/* rng: a ready virtio-rng device; result: the self-test reporter. Returns with the VMM
 * proven healthy or with failures reported. */
void hostile_run(struct vdev *rng, unsigned long storm, void (*result)(const char *, bool, const char *));

#endif
