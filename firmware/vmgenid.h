/* The VM generation ID: 16 bytes in guest memory that the DSDT's VGEN device points at (its
 * ADDR method; firmware/dsdt.asl), random at boot and new on every restore of a snapshot, so
 * that a guest cloned from one snapshot knows it is a clone (Linux's vmgenid driver reseeds
 * its random number generator). The change is announced by an edge on VMGENID_GSI, which the
 * DSDT's Generic Event Device turns into Notify(VGEN, 0x80). */
#ifndef BELLHOP_FIRMWARE_VMGENID_H
#define BELLHOP_FIRMWARE_VMGENID_H

#include <stdbool.h>

#include "base/guest_mem.h"

#define VMGENID_ADDR 0xf0000u /* in the BIOS area: reserved in the e820 map, left out of PVH's */
#define VMGENID_SIZE 16u
#define VMGENID_GSI 3u

/* A new random ID into guest memory; false when the host gave no randomness or the guest has
 * no memory there. */
bool vmgenid_renew(const struct guest_mem *gm);

#endif
