#ifndef LIB_ASYNC_TRAP_H_
#define LIB_ASYNC_TRAP_H_

#include <lib/async/dispatcher.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Called for each bell packet. Several rings of one doorbell before the loop drains it may
 * coalesce into one packet (virtio allows this). */
typedef void(async_guest_bell_trap_handler_t)(async_dispatcher_t *dispatcher,
                                              async_guest_bell_trap_t *trap, zx_status_t status,
                                              const zx_packet_guest_bell_t *bell);

struct async_guest_bell_trap {
    async_state_t state;
    async_guest_bell_trap_handler_t *handler;
};

/* zx_guest_set_trap(guest, ZX_GUEST_TRAP_BELL, addr, length, <dispatcher port>, trap).
 * There is no way to cancel a trap: keep `trap` alive until the guest is destroyed or the
 * dispatcher shuts down. ZX_ERR_NOT_SUPPORTED when the program has no hypervisor layer. */
zx_status_t async_set_guest_bell_trap(async_dispatcher_t *dispatcher, async_guest_bell_trap_t *trap,
                                      zx_handle_t guest, zx_vaddr_t addr, size_t length);

#ifdef __cplusplus
}
#endif

#endif
