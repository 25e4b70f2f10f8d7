#include <stdlib.h>

#include "devices/i8042.h"

#define CMD_RESET 0xfe
#define STATUS_SYS 0x04 /* self-test passed; output and input buffers empty */

struct i8042 {
    struct vm_env *env;
};

/* The window is 0x60..0x64: offset 0 is data, offset 4 is command/status. */
static uint64_t i8042_read(void *dev, uint64_t off, uint8_t size) {
    (void)dev, (void)size;
    return off == 4 ? STATUS_SYS : 0;
}

static void i8042_write(void *dev, uint64_t off, uint8_t size, uint64_t value) {
    (void)size;
    struct i8042 *k = dev;
    if (off == 4 && (value & 0xff) == CMD_RESET) k->env->request_exit(k->env, 0);
}

const struct io_ops i8042_ops = {.name = "i8042", .read = i8042_read, .write = i8042_write};

struct i8042 *i8042_create(struct vm_env *env) {
    struct i8042 *k = calloc(1, sizeof *k);
    if (k) k->env = env;
    return k;
}

void i8042_destroy(struct i8042 *k) { free(k); }
