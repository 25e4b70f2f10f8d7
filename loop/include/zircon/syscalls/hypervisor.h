#ifndef SYSROOT_ZIRCON_SYSCALLS_HYPERVISOR_H_
#define SYSROOT_ZIRCON_SYSCALLS_HYPERVISOR_H_

#include <assert.h>
#include <zircon/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint32_t zx_guest_trap_t;
#define ZX_GUEST_TRAP_BELL ((zx_guest_trap_t)0u)
#define ZX_GUEST_TRAP_MEM ((zx_guest_trap_t)1u)
#define ZX_GUEST_TRAP_IO ((zx_guest_trap_t)2u)

#define ZX_GUEST_OPT_NORMAL ((uint32_t)0u)

#define ZX_VCPU_STATE ((uint32_t)0u)
#define ZX_VCPU_IO ((uint32_t)1u)

typedef struct zx_vcpu_state {
    uint64_t rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi;
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    uint64_t rflags; /* only the low 32 bits are honoured */
} zx_vcpu_state_t;
static_assert(sizeof(zx_vcpu_state_t) == 136, "zx_vcpu_state_t");

typedef struct zx_vcpu_io {
    uint8_t access_size;
    uint8_t padding1[3];
    union {
        uint8_t u8;
        uint16_t u16;
        uint32_t u32;
        uint8_t data[4];
    };
} zx_vcpu_io_t;
static_assert(sizeof(zx_vcpu_io_t) == 8, "zx_vcpu_io_t");

/* Implemented by bellhop's hypervisor layer (vmm/), not by libloop. */
zx_status_t zx_guest_set_trap(zx_handle_t handle, uint32_t kind, zx_vaddr_t addr, size_t size,
                              zx_handle_t port_handle, uint64_t key);

#ifdef __cplusplus
}
#endif

#endif
