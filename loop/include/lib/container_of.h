/* The structure that holds `member` at `ptr`: how a handler given its async_wait_t,
 * async_task_t or trap finds the device or object it is a member of. */
#ifndef BELLHOP_LIB_CONTAINER_OF_H
#define BELLHOP_LIB_CONTAINER_OF_H

#include <stddef.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

#endif
