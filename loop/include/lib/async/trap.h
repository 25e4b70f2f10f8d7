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

/* bellhop: a doorbell register inside a MEM trap (virtio-mmio's QueueNotify), as a bell trap:
 * bellhop_guest_set_doorbell(guest, addr, len, datamatch, <dispatcher port>, trap), so that a
 * guest write of exactly `len` bytes of `datamatch` at `addr` comes to trap's handler. Only
 * bellhop's async loop has it (ZX_ERR_NOT_SUPPORTED elsewhere, or without the hypervisor
 * layer); keep `trap` alive as for async_set_guest_bell_trap. */
zx_status_t async_set_guest_doorbell(async_dispatcher_t *dispatcher, async_guest_bell_trap_t *trap,
                                     zx_handle_t guest, zx_vaddr_t addr, size_t len, uint64_t datamatch);

#ifdef __cplusplus
}
#endif

#endif
