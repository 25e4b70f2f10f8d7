/* `bellhop bench`: trap round trips measured from inside the bundled guest (bench mode),
 * under bellhop, under a raw KVM_RUN loop (the floor) and, when it can run, under QEMU-KVM's
 * microvm (the peer), all in one run; a table on stdout, or JSON. */
#ifndef BELLHOP_VMM_BENCH_H
#define BELLHOP_VMM_BENCH_H

#include <sys/types.h>

int bench_main(int argc, char **argv, const char *kernel);
/* Resident memory of a VMM process outside its largest mapping (the guest's RAM), in KiB;
 * -1 if it cannot be read. */
long bench_rss_beyond_guest_kib(pid_t pid);

#endif
