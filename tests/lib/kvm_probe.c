/* Prints this host's kind of KVM (vmm/hv/kvm_host.h) as one line, "KIND: evidence", and exits 0
 * when /dev/kvm can run the integration tests directly (hardware or pvm), 1 otherwise. The
 * test runner, scripts/run.sh and `make bench` decide with it where each test runs. */
#include <stdio.h>

#include "vmm/hv/kvm_host.h"

int main(void) {
    struct kvm_host h;
    kvm_host_classify(&h);
    printf("%s: %s\n", kvm_host_name(h.kind), h.why);
    return h.kind == KVM_HOST_NONE ? 1 : 0;
}
