#ifndef LIB_ASYNC_TASK_H_
#define LIB_ASYNC_TASK_H_

#include <lib/async/dispatcher.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Called once at or after the deadline (ZX_OK) or at shutdown (ZX_ERR_CANCELED). */
typedef void(async_task_handler_t)(async_dispatcher_t *dispatcher, async_task_t *task,
                                   zx_status_t status);

struct async_task {
    async_state_t state;
    async_task_handler_t *handler;
    zx_time_t deadline;
};
static_assert(sizeof(async_task_t) == 32, "async_task_t");

/* Runs the task on or after its deadline, after every task with a lesser or equal deadline
 * (FIFO among equal deadlines). ZX_TIME_INFINITE_PAST means "no deadline": such tasks run,
 * in post order, after the timed tasks already due. ZX_ERR_BAD_STATE when shutting down. */
zx_status_t async_post_task(async_dispatcher_t *dispatcher, async_task_t *task);

/* ZX_OK if canceled; ZX_ERR_NOT_FOUND if it already ran, was never posted, or was taken
 * for execution. */
zx_status_t async_cancel_task(async_dispatcher_t *dispatcher, async_task_t *task);

#ifdef __cplusplus
}
#endif

#endif
