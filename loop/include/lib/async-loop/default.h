#ifndef LIB_ASYNC_LOOP_DEFAULT_H_
#define LIB_ASYNC_LOOP_DEFAULT_H_

#include <lib/async-loop/loop.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Makes the loop the creating thread's default dispatcher (and its workers'). */
extern const async_loop_config_t kAsyncLoopConfigAttachToCurrentThread;
/* Leaves the creating thread alone; worker threads still get the loop as their default. */
extern const async_loop_config_t kAsyncLoopConfigNoAttachToCurrentThread;

#ifdef __cplusplus
}
#endif

#endif
