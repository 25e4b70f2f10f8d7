/* Guest-virtual to guest-physical translation, for reading the instructions the guest was
 * running (tracing, crash reports): walks the guest's own page tables through guest_mem. */
#ifndef BELLHOP_VMM_HV_PAGING_H
#define BELLHOP_VMM_HV_PAGING_H

#include <stdbool.h>
#include <stdint.h>
#include <zircon/syscalls/hypervisor.h>

#include "base/guest_mem.h"

bool gva_to_gpa(const struct guest_mem *gm, const bellhop_vcpu_sregs_t *s, uint64_t gva, uint64_t *gpa);
/* Copies up to len bytes of guest-virtual memory from gva; returns how many were readable. */
size_t read_guest_virtual(const struct guest_mem *gm, const bellhop_vcpu_sregs_t *s, uint64_t gva,
                          uint8_t *buf, size_t len);

#endif
