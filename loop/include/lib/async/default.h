#ifndef LIB_ASYNC_DEFAULT_H_
#define LIB_ASYNC_DEFAULT_H_

#include <lib/async/dispatcher.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The calling thread's default dispatcher (thread-local), or NULL. */
async_dispatcher_t *async_get_default_dispatcher(void);
void async_set_default_dispatcher(async_dispatcher_t *dispatcher);

#ifdef __cplusplus
}
#endif

#endif
