/* The host's kind of KVM (vmm/hv/kvm_host.h). Hardware virtualization shows in CPUID, which a
 * PVM host (itself usually a guest of a hypervisor that hides VMX/SVM) does not have. */
#include "vmm/hv/kvm_host.h"

#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static bool cpu_has_vmx_or_svm(void) {
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 5))) return true; /* VMX */
    return __get_cpuid(0x80000001, &a, &b, &c, &d) && (c & (1u << 2)); /* SVM */
}

static bool module_loaded(const char *name) {
    char path[64];
    snprintf(path, sizeof path, "/sys/module/%s", name);
    return access(path, F_OK) == 0;
}

enum kvm_host_kind kvm_host_kind_of_working_kvm(char *why, size_t len) {
    bool pvm = module_loaded("kvm_pvm");
    bool vendor = module_loaded("kvm_intel") || module_loaded("kvm_amd");
    if (cpu_has_vmx_or_svm() && (vendor || !pvm)) {
        snprintf(why, len, "/dev/kvm on %s", module_loaded("kvm_amd") ? "SVM (kvm_amd)" : vendor ? "VMX (kvm_intel)" : "VMX/SVM");
        return KVM_HOST_HARDWARE;
    }
    snprintf(why, len, "/dev/kvm without VMX or SVM%s: a software KVM that runs guests in ring 3",
             pvm ? " (kvm_pvm)" : "");
    return KVM_HOST_PVM;
}

void kvm_host_classify(struct kvm_host *out) {
    out->kind = KVM_HOST_NONE;
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        snprintf(out->why, sizeof out->why, "/dev/kvm: %s%s", strerror(errno),
                 errno == ENOENT && module_loaded("kvm_pvm") ? " (kvm_pvm is loaded but did not bind: is this host itself a PVM guest?)" : "");
        return;
    }
    int version = ioctl(kvm, KVM_GET_API_VERSION, 0);
    int vm = version == KVM_API_VERSION ? ioctl(kvm, KVM_CREATE_VM, 0) : -1;
    if (version != KVM_API_VERSION)
        snprintf(out->why, sizeof out->why, "/dev/kvm speaks API version %d, not %d", version, KVM_API_VERSION);
    else if (vm < 0)
        snprintf(out->why, sizeof out->why, "/dev/kvm cannot create a VM: %s", strerror(errno));
    else
        out->kind = kvm_host_kind_of_working_kvm(out->why, sizeof out->why);
    if (vm >= 0) close(vm);
    close(kvm);
}

const char *kvm_host_name(enum kvm_host_kind kind) {
    switch (kind) {
    case KVM_HOST_HARDWARE: return "hardware";
    case KVM_HOST_PVM: return "pvm";
    default: return "none";
    }
}

bool kvm_host_pvm_can_run(uint64_t lowest, uint64_t highest) {
    return lowest <= highest && highest < KVM_HOST_PVM_RESERVED;
}
