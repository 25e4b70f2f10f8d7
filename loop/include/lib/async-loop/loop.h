#ifndef LIB_ASYNC_LOOP_LOOP_H_
#define LIB_ASYNC_LOOP_LOOP_H_

#include <lib/async/dispatcher.h>
#include <stdbool.h>
#include <threads.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct async_loop async_loop_t;
typedef void(async_loop_callback_t)(async_loop_t *loop, void *data);

typedef struct {
    async_dispatcher_t *(*getter)(void);
    void (*setter)(async_dispatcher_t *dispatcher);
} async_loop_default_accessors_t;

typedef struct async_loop_config {
    /* Both set or both NULL. Worker threads make the loop their default through setter. */
    async_loop_default_accessors_t default_accessors;
    /* The creating thread's default dispatcher becomes this loop (needs the accessors). */
    bool make_default_for_current_thread;
    /* Called around every handler invocation with `data`. */
    async_loop_callback_t *prologue;
    async_loop_callback_t *epilogue;
    void *data;
    /* Creates the port with ZX_PORT_BIND_TO_INTERRUPT, for async_bind_irq. */
    bool irq_support;
} async_loop_config_t;

/* Never attaches to a thread, worker threads included. */
extern const async_loop_config_t kAsyncLoopConfigNeverAttachToThread;

zx_status_t async_loop_create(const async_loop_config_t *config, async_loop_t **out_loop);
async_dispatcher_t *async_loop_get_dispatcher(async_loop_t *loop);
/* bellhop extension: the port the loop drains (to register producers the lib/async API has
 * no operation for, such as bellhop_guest_set_doorbell). Packets whose key is the address of
 * an async_guest_bell_trap_t go to that trap's handler. The loop keeps the handle. */
zx_handle_t async_loop_get_port(async_loop_t *loop);
async_loop_t *async_loop_from_dispatcher(async_dispatcher_t *dispatcher);

/* Idempotent: state SHUTDOWN, worker threads woken and joined, then every pending wait, task
 * and irq handler called with ZX_ERR_CANCELED (waits, due tasks, pending tasks, FIFO tasks,
 * irqs). Receivers and bell traps get no notification. May be called from a handler. */
void async_loop_shutdown(async_loop_t *loop);
/* Shuts down, then frees the loop. */
void async_loop_destroy(async_loop_t *loop);

/* Runs handlers until the deadline (ZX_ERR_TIMED_OUT), quit (ZX_ERR_CANCELED) or shutdown
 * (ZX_ERR_BAD_STATE); with `once`, returns ZX_OK after one unit of work. Any number of
 * threads may run a loop at once. */
zx_status_t async_loop_run(async_loop_t *loop, zx_time_t deadline, bool once);
/* Runs until nothing is ready; ZX_OK, or ZX_ERR_CANCELED / ZX_ERR_BAD_STATE. */
zx_status_t async_loop_run_until_idle(async_loop_t *loop);
void async_loop_quit(async_loop_t *loop);
/* ZX_ERR_BAD_STATE while any thread is in run, or after shutdown. */
zx_status_t async_loop_reset_quit(async_loop_t *loop);

typedef enum {
    ASYNC_LOOP_RUNNABLE = 0,
    ASYNC_LOOP_QUIT = 1,
    ASYNC_LOOP_SHUTDOWN = 2,
} async_loop_state_t;
async_loop_state_t async_loop_get_state(async_loop_t *loop);

/* Starts a thread that runs the loop until quit or shutdown. ZX_ERR_BAD_STATE after
 * shutdown, ZX_ERR_NO_MEMORY when no thread could be made. */
zx_status_t async_loop_start_thread(async_loop_t *loop, const char *name, thrd_t *out_thread);
void async_loop_join_threads(async_loop_t *loop);

#ifdef __cplusplus
}
#endif

#endif
