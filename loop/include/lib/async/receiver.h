#ifndef LIB_ASYNC_RECEIVER_H_
#define LIB_ASYNC_RECEIVER_H_

#include <lib/async/dispatcher.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void(async_receiver_handler_t)(async_dispatcher_t *dispatcher, async_receiver_t *receiver,
                                       zx_status_t status, const zx_packet_user_t *data);

struct async_receiver {
    async_state_t state;
    async_receiver_handler_t *handler;
};
static_assert(sizeof(async_receiver_t) == 24, "async_receiver_t");

/* Queues a packet for the receiver; `data` is copied (NULL: zeros). Cannot be canceled.
 * Packets to one receiver may be delivered concurrently on several threads. Receivers get
 * no notification at shutdown. ZX_ERR_BAD_STATE when shutting down; ZX_ERR_SHOULD_WAIT when
 * the dispatcher's port is full (4096 queued packets). */
zx_status_t async_queue_packet(async_dispatcher_t *dispatcher, async_receiver_t *receiver,
                               const zx_packet_user_t *data);

#ifdef __cplusplus
}
#endif

#endif
