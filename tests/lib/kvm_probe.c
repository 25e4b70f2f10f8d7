/* Exits 0 when this machine's /dev/kvm can create a VM, 1 otherwise: decides whether the
 * integration tests run directly or inside the nested KVM host. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(void) {
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) return 1;
    int ok = ioctl(kvm, KVM_GET_API_VERSION, 0) == KVM_API_VERSION;
    if (ok) {
        int vm = ioctl(kvm, KVM_CREATE_VM, 0);
        ok = vm >= 0;
        if (vm >= 0) close(vm);
    }
    close(kvm);
    return ok ? 0 : 1;
}
