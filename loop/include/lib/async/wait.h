#ifndef LIB_ASYNC_WAIT_H_
#define LIB_ASYNC_WAIT_H_

#include <lib/async/dispatcher.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Called once when the wait's trigger is satisfied (status ZX_OK, signal non-NULL), or with
 * ZX_ERR_CANCELED and a NULL signal when the dispatcher shuts down first. */
typedef void(async_wait_handler_t)(async_dispatcher_t *dispatcher, async_wait_t *wait,
                                   zx_status_t status, const zx_packet_signal_t *signal);

struct async_wait {
    async_state_t state;
    async_wait_handler_t *handler;
    zx_handle_t object;
    zx_signals_t trigger;
    uint32_t options; /* ZX_WAIT_ASYNC_TIMESTAMP / _EDGE / _BOOT_TIMESTAMP */
};
static_assert(sizeof(async_wait_t) == 40, "async_wait_t");

/* Begins waiting; the handler runs exactly once unless canceled. The caller keeps `wait`
 * alive and unchanged until the handler runs, it is canceled, or the dispatcher shuts down.
 * ZX_OK, ZX_ERR_ACCESS_DENIED (no WAIT right), ZX_ERR_BAD_HANDLE (not a handle, or closed
 * meanwhile), ZX_ERR_BAD_STATE (shutting down). */
zx_status_t async_begin_wait(async_dispatcher_t *dispatcher, async_wait_t *wait);

/* ZX_OK if the wait was pending and will not run; ZX_ERR_NOT_FOUND if it is not pending:
 * done, never begun, or its packet already taken for dispatch (maybe on another thread).
 *
 * Unlike Fuchsia's loop: a wait whose object lost its last handle while it was pending stays
 * pending (it can no longer fire, and holds neither the object nor a place in the port's
 * limit), so cancelling it returns ZX_OK and its handler never runs; uncancelled, it gets
 * ZX_ERR_CANCELED once at shutdown. Fuchsia's returns ZX_ERR_NOT_FOUND here (the kernel has
 * dropped the wait) and still runs the handler with ZX_ERR_CANCELED at shutdown. */
zx_status_t async_cancel_wait(async_dispatcher_t *dispatcher, async_wait_t *wait);

#ifdef __cplusplus
}
#endif

#endif
