/* The exit device: a guest write to its port ends the VM with the written value as the
 * VMM's exit status, or with QEMU's isa-debug-exit's (value << 1) | 1, which kvm-unit-tests'
 * runner reads. */
#include <stdlib.h>

#include "devices/debug_exit.h"

struct debug_exit {
    struct vm_env *env;
    bool qemu;
};

static uint64_t exit_read(void *dev, uint64_t off, uint8_t size) {
    (void)dev, (void)off, (void)size;
    return 0;
}

static void exit_write(void *dev, uint64_t off, uint8_t size, uint64_t value) {
    (void)off, (void)size;
    struct debug_exit *d = dev;
    /* a process's exit status is 8 bits: QEMU's exit() truncates the same way */
    uint64_t status = d->qemu ? value << 1 | 1 : value;
    d->env->request_exit(d->env, (int)(status & 0xff));
}

const struct io_ops debug_exit_ops = {.name = "exit", .read = exit_read, .write = exit_write};

struct debug_exit *debug_exit_create(struct vm_env *env, const struct debug_exit_params *p) {
    struct debug_exit *d = calloc(1, sizeof *d);
    if (d) *d = (struct debug_exit){.env = env, .qemu = p->qemu};
    return d;
}

void debug_exit_destroy(struct debug_exit *d) { free(d); }
