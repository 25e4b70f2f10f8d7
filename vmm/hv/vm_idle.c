/* How a VM's halted vCPUs wait (<zircon/syscalls/hypervisor.h>): KVM's per-VM halt polling,
 * and HLT/PAUSE left to the guest for a host that gives each vCPU a CPU of its own. */
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include "vmm/hv/hv.h"

static zx_status_t enable_cap(zx_handle_t handle, uint32_t cap, uint64_t arg, bool before_vcpus) {
    struct guest *g;
    zx_status_t st = guest_get(handle, ZX_RIGHT_WRITE, &g);
    if (st != ZX_OK) return st;
    pthread_rwlock_wrlock(&g->lock);
    int has = ioctl(g->vm, KVM_CHECK_EXTENSION, cap);
    struct kvm_enable_cap c = {.cap = cap, .args = {arg}};
    if (has <= 0 || (cap == KVM_CAP_X86_DISABLE_EXITS && ((uint64_t)has & arg) != arg)) st = ZX_ERR_NOT_SUPPORTED;
    else if (before_vcpus && atomic_load(&g->nvcpus) != 0) st = ZX_ERR_BAD_STATE;
    else if (ioctl(g->vm, KVM_ENABLE_CAP, &c) != 0) st = ZX_ERR_NOT_SUPPORTED;
    pthread_rwlock_unlock(&g->lock);
    object_unref(&g->obj);
    return st;
}

zx_status_t bellhop_guest_set_halt_poll(zx_handle_t guest, uint64_t ns) {
    if (ns > UINT32_MAX) return ZX_ERR_INVALID_ARGS; /* KVM keeps it in 32 bits */
    return enable_cap(guest, KVM_CAP_HALT_POLL, ns, false);
}

zx_status_t bellhop_guest_idle_in_guest(zx_handle_t guest) {
    return enable_cap(guest, KVM_CAP_X86_DISABLE_EXITS, KVM_X86_DISABLE_EXITS_HLT | KVM_X86_DISABLE_EXITS_PAUSE, true);
}
