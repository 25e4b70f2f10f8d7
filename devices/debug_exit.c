/* The exit device: a guest write to its port ends the VM with the written value as the
 * VMM's exit status (as kvm-unit-tests' exit port does). */
#include <stdlib.h>

#include "devices/debug_exit.h"

struct debug_exit {
    struct vm_env *env;
};

static uint64_t exit_read(void *dev, uint64_t off, uint8_t size) {
    (void)dev, (void)off, (void)size;
    return 0;
}

static void exit_write(void *dev, uint64_t off, uint8_t size, uint64_t value) {
    (void)off, (void)size;
    struct debug_exit *d = dev;
    d->env->request_exit(d->env, (int)(value & 0xff));
}

const struct io_ops debug_exit_ops = {.name = "exit", .read = exit_read, .write = exit_write};

struct debug_exit *debug_exit_create(struct vm_env *env) {
    struct debug_exit *d = calloc(1, sizeof *d);
    if (d) d->env = env;
    return d;
}

void debug_exit_destroy(struct debug_exit *d) { free(d); }
