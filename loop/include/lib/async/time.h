#ifndef LIB_ASYNC_TIME_H_
#define LIB_ASYNC_TIME_H_

#include <lib/async/dispatcher.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The dispatcher's current time (monotonic). */
zx_time_t async_now(async_dispatcher_t *dispatcher);

#ifdef __cplusplus
}
#endif

#endif
