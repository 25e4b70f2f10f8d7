#ifndef BELLHOP_DEVICES_DEBUG_EXIT_H
#define BELLHOP_DEVICES_DEBUG_EXIT_H

#include "devices/device.h"

#define DEBUG_EXIT_PORT 0xf4

struct debug_exit;
extern const struct io_ops debug_exit_ops;
struct debug_exit *debug_exit_create(struct vm_env *env);
void debug_exit_destroy(struct debug_exit *d);

#endif
