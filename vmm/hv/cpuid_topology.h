/* The CPU topology a guest's CPUID describes (bellhop_guest_set_topology): KVM's CPUID list
 * made to say one package of cores of one or two threads each, vCPU n at APIC id n
 * (vmm/hv/cpuid_topology.c). No KVM calls: the lists are data. */
#ifndef BELLHOP_VMM_HV_CPUID_TOPOLOGY_H
#define BELLHOP_VMM_HV_CPUID_TOPOLOGY_H

#include <linux/kvm.h>

/* threads per core and cores in the package, and the APIC id's bit fields that follow:
 * smt_shift bits of thread, then core bits up to pkg_shift. threads 0: no topology given. */
struct cpu_topology {
    unsigned threads, cores;
    unsigned smt_shift, pkg_shift;
};

/* cpus >= 1 vCPUs, threads 1 or 2 to a core (the last core may have one). */
struct cpu_topology cpu_topology_make(unsigned cpus, unsigned threads);
/* c with t in it: a new list (the caller frees it; the level leaves 0xB and 0x1F have more
 * entries than KVM gives), or NULL when memory ran out. A leaf c lacks is not added. */
struct kvm_cpuid2 *cpuid_with_topology(const struct kvm_cpuid2 *c, const struct cpu_topology *t);
/* Entry e of the guest's list as vCPU `id` gets it: its APIC ids (leaves 1, 0xB, 0x1F; with
 * a topology also 0x8000001E, with its core). */
void cpuid_for_vcpu(const struct cpu_topology *t, struct kvm_cpuid_entry2 *e, unsigned id);

#endif
