/* bellhop run --profile FILE: a sampling profile of the guest. Every PROFILE_PERIOD_NS a
 * timer signal to each vCPU thread ends its KVM_RUN (bellhop_vcpu_set_tick); the thread
 * records where the guest was (RIP) and goes back in. Each sample costs one exit (counted as
 * intr). Samples go to FILE as lines "MS cpuN RIP [SYMBOL+OFFSET]" (MS: milliseconds since
 * the VMM started), in blocks as each vCPU's buffer fills; when the VM ends, the functions
 * seen most are printed. Names come from the kernel ELF's symbol table, or from a System.map
 * / kallsyms listing (--profile-symbols, e.g. for a Linux kernel booted with nokaslr). */
#ifndef BELLHOP_VMM_OBSERVE_PROFILE_H
#define BELLHOP_VMM_OBSERVE_PROFILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PROFILE_PERIOD_NS 1000000u

struct profile;

/* Creates (truncates) `path`; names from `symbols_path` if given, else from the kernel file
 * when it is an ELF with a symbol table. NULL with err set on failure. */
struct profile *profile_open(const char *path, const char *kernel_path, const char *symbols_path, unsigned cpus,
                             uint64_t start_ns, char *err, size_t errlen);
/* One sample of vCPU `cpu`, on that vCPU's thread. */
void profile_sample(struct profile *p, unsigned cpu, uint64_t rip);
/* Once every vCPU thread has ended: writes what is buffered, prints the summary to `out`,
 * closes the file and frees p. */
void profile_close(struct profile *p, FILE *out);

#endif
