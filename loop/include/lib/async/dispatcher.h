#ifndef LIB_ASYNC_DISPATCHER_H_
#define LIB_ASYNC_DISPATCHER_H_

#include <assert.h>
#include <zircon/syscalls/port.h>
#include <zircon/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Dispatcher-private state of a pending operation; async-loop keeps a list node here. */
typedef struct {
    uintptr_t reserved[2];
} async_state_t;
#define ASYNC_STATE_INIT {0u, 0u}

typedef struct async_dispatcher async_dispatcher_t;
typedef struct async_guest_bell_trap async_guest_bell_trap_t;
typedef struct async_wait async_wait_t;
typedef struct async_task async_task_t;
typedef struct async_receiver async_receiver_t;
typedef struct async_irq async_irq_t;
typedef struct async_paged_vmo async_paged_vmo_t;
typedef struct async_sequence_id {
    uint64_t value;
} async_sequence_id_t;

typedef uint32_t async_ops_version_t;
#define ASYNC_OPS_V1 ((async_ops_version_t)1)
#define ASYNC_OPS_V2 ((async_ops_version_t)2)
#define ASYNC_OPS_V3 ((async_ops_version_t)3)
#define ASYNC_OPS_V4 ((async_ops_version_t)4)

/* Operations of a dispatcher. Every op of the declared version must be non-NULL; an
 * unsupported op returns ZX_ERR_NOT_SUPPORTED with no side effects. */
typedef struct async_ops {
    async_ops_version_t version;
    uint32_t reserved;
    struct v1 {
        zx_time_t (*now)(async_dispatcher_t *dispatcher);
        zx_status_t (*begin_wait)(async_dispatcher_t *dispatcher, async_wait_t *wait);
        zx_status_t (*cancel_wait)(async_dispatcher_t *dispatcher, async_wait_t *wait);
        zx_status_t (*post_task)(async_dispatcher_t *dispatcher, async_task_t *task);
        zx_status_t (*cancel_task)(async_dispatcher_t *dispatcher, async_task_t *task);
        zx_status_t (*queue_packet)(async_dispatcher_t *dispatcher, async_receiver_t *receiver,
                                    const zx_packet_user_t *data);
        zx_status_t (*set_guest_bell_trap)(async_dispatcher_t *dispatcher,
                                           async_guest_bell_trap_t *trap, zx_handle_t guest,
                                           zx_vaddr_t addr, size_t length);
    } v1;
    struct v2 {
        zx_status_t (*bind_irq)(async_dispatcher_t *dispatcher, async_irq_t *irq);
        zx_status_t (*unbind_irq)(async_dispatcher_t *dispatcher, async_irq_t *irq);
        zx_status_t (*create_paged_vmo)(async_dispatcher_t *dispatcher,
                                        async_paged_vmo_t *paged_vmo, uint32_t options,
                                        zx_handle_t pager, uint64_t vmo_size, zx_handle_t *vmo_out);
        zx_status_t (*detach_paged_vmo)(async_dispatcher_t *dispatcher,
                                        async_paged_vmo_t *paged_vmo);
    } v2;
    struct v3 {
        zx_status_t (*get_sequence_id)(async_dispatcher_t *dispatcher,
                                       async_sequence_id_t *out_sequence_id, const char **out_error);
        zx_status_t (*check_sequence_id)(async_dispatcher_t *dispatcher,
                                         async_sequence_id_t sequence_id, const char **out_error);
    } v3;
    struct v4 {
        void (*acquire_shared_ref)(async_dispatcher_t *dispatcher);
        void (*release_shared_ref)(async_dispatcher_t *dispatcher);
    } v4;
} async_ops_t;

struct async_dispatcher {
    const async_ops_t *ops;
};

static_assert(sizeof(async_state_t) == 16, "async_state_t");

#ifdef __cplusplus
}
#endif

#endif
