#ifndef LIB_ASYNC_IRQ_H_
#define LIB_ASYNC_IRQ_H_

#include <lib/async/dispatcher.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Called for each interrupt packet until unbound (the handler acks the interrupt), or with
 * ZX_ERR_CANCELED at shutdown while still bound. */
typedef void(async_irq_handler_t)(async_dispatcher_t *dispatcher, async_irq_t *irq,
                                  zx_status_t status, const zx_packet_interrupt_t *signal);

struct async_irq {
    async_state_t state;
    async_irq_handler_t *handler;
    zx_handle_t object;
};
static_assert(sizeof(async_irq_t) == 32, "async_irq_t");

zx_status_t async_bind_irq(async_dispatcher_t *dispatcher, async_irq_t *irq);
zx_status_t async_unbind_irq(async_dispatcher_t *dispatcher, async_irq_t *irq);

#ifdef __cplusplus
}
#endif

#endif
