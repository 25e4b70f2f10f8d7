/* The tiny guest's bench mode (cmdline word "bench"): round trips timed with the TSC from
 * inside the guest, one result line per kind on the console:
 *   bench-result KIND n=N min=C p50=C p99=C max=C hist=H0,H1,... ref=C
 * (cycles; H: log2 buckets; ref: the median of cpuid exits timed between the kind's samples,
 * a reference no VMM code runs for) so that any VMM's run of the same guest.elf can be compared (bellhop bench parses them). */
#ifndef BELLHOP_GUEST_BENCH_H
#define BELLHOP_GUEST_BENCH_H

#include "guest/virtio.h"

#define BENCH_MMIO_ADDR 0xc0000000ull /* unassigned MMIO in bellhop and in QEMU microvm */
#define BENCH_IO_PORT 0x80

/* rng: a virtio-rng device (NULL if none); bell: a doorbell address to write when there is
 * no device (the floor run); vcpu_ctl: bellhop's vCPU-control device may be used. */
void bench_run(struct vdev *rng, uint64_t bell, bool vcpu_ctl, unsigned samples);
/* Cmdline word "reference": only the cpuid exits, to tell how fast the host is just now
 * (the VMM's bench runs it around each Linux boot it times). */
void bench_reference(void);

#endif
