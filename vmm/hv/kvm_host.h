/* What kind of KVM this host has, in one place for bellhop, its tests, its scripts and its
 * bench. The kinds differ in what a guest can do:
 *   hardware  VMX or SVM under KVM: any x86-64 guest, Linux included.
 *   pvm       a usable /dev/kvm without VMX or SVM: PVM (the kvm_pvm module), a software
 *             KVM that runs the guest in ring 3 over shadow page tables. Only code in long
 *             mode outside the top 2 GiB of the address space runs natively; the rest goes
 *             through KVM's instruction emulator, which lacks CMPXCHG16B and XSAVE/XRSTOR, so
 *             stock Linux kernels (linked at 0xffffffff8...) stop there.
 *   none      no /dev/kvm, or one that cannot create a VM: run in the nested KVM host.
 */
#ifndef BELLHOP_VMM_HV_KVM_HOST_H
#define BELLHOP_VMM_HV_KVM_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum kvm_host_kind { KVM_HOST_NONE, KVM_HOST_PVM, KVM_HOST_HARDWARE };

struct kvm_host {
    enum kvm_host_kind kind;
    char why[160]; /* the evidence, in words */
};

/* Classifies this host: opens /dev/kvm and creates (and closes) a VM. */
void kvm_host_classify(struct kvm_host *out);

/* The kind of a /dev/kvm known to work, from the CPU's flags and the loaded modules alone
 * (no VM created): what bellhop uses once it has its own VM. */
enum kvm_host_kind kvm_host_kind_of_working_kvm(char *why, size_t len);

/* "hardware", "pvm", "none". */
const char *kvm_host_name(enum kvm_host_kind kind);

/* PVM runs a guest kernel natively only outside the top 2 GiB of the address space, which
 * its host keeps for itself: false for a kernel whose code lies there (every stock Linux,
 * linked at 0xffffffff80000000 and up). `lowest` and `highest` are the virtual addresses of
 * its loadable code. */
bool kvm_host_pvm_can_run(uint64_t lowest, uint64_t highest);
#define KVM_HOST_PVM_RESERVED 0xffffffff80000000ull

#endif
