/* QEMU's pc-testdev (pc_testdev.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/pc_testdev.h"

#define FLUSH_PAGE_OFF 4

struct pc_testdev {
    struct vm_env *env;
    pthread_mutex_t lock; /* vCPUs and the loop share the register, the window and the lines */
    uint32_t reg;
    atomic_bool line_failed; /* said once */
    uint8_t iomem[PC_TESTDEV_IOMEM_SIZE];
};

/* The bytes of an access at off..off+size that fall in a window of `len` bytes. */
static unsigned bytes_inside(uint64_t off, uint8_t size, uint64_t len) {
    if (off >= len || size > 8) return 0;
    return (unsigned)(len - off < size ? len - off : size);
}

/* ---- ports 0xe0..0xeb ---- */

/* 0xe0 and 0xe8 are the register; 0xe4, the flush page, is neither. */
static bool reg_port(uint64_t off) { return off < PC_TESTDEV_PORTS && off / 4 != FLUSH_PAGE_OFF / 4; }

static uint64_t port_read(void *dev, uint64_t off, uint8_t size) {
    struct pc_testdev *t = dev;
    if (!reg_port(off)) return 0;
    unsigned n = bytes_inside(off % 4, size, 4);
    pthread_mutex_lock(&t->lock);
    uint64_t v = (uint64_t)t->reg >> (off % 4 * 8);
    pthread_mutex_unlock(&t->lock);
    return n == 4 ? v : v & ((1ull << (n * 8)) - 1);
}

static void port_write(void *dev, uint64_t off, uint8_t size, uint64_t value) {
    struct pc_testdev *t = dev;
    if (!reg_port(off)) return; /* the flush page: see pc_testdev.h */
    unsigned n = bytes_inside(off % 4, size, 4), shift = (unsigned)(off % 4 * 8);
    uint32_t mask = (uint32_t)((n == 4 ? 0xffffffffull : (1ull << (n * 8)) - 1) << shift);
    pthread_mutex_lock(&t->lock);
    t->reg = (t->reg & ~mask) | ((uint32_t)(value << shift) & mask);
    pthread_mutex_unlock(&t->lock);
}

const struct io_ops pc_testdev_port_ops = {.name = "pc-testdev", .read = port_read, .write = port_write};

/* ---- ports 0x2000..0x2017: the lines ---- */

/* QEMU takes single bytes only here; wider writes name no line. The guest drives the line's
 * level itself, raised and lowered at once, as QEMU's device sets its IRQ. */
static void irq_write(void *dev, uint64_t off, uint8_t size, uint64_t value) {
    struct pc_testdev *t = dev;
    if (off >= PC_TESTDEV_IRQ_LINES || size != 1) return;
    if (t->env->irq_line(t->env, (uint32_t)off, (uint8_t)value != 0) != ZX_OK && !atomic_exchange(&t->line_failed, true))
        fprintf(stderr, "bellhop: pc-testdev: cannot set IRQ line %u; such writes are ignored\n", (unsigned)off);
}

static uint64_t irq_read(void *dev, uint64_t off, uint8_t size) { return (void)dev, (void)off, (void)size, 0; }

const struct io_ops pc_testdev_irq_ops = {.name = "pc-testdev-irq", .read = irq_read, .write = irq_write};

/* ---- MMIO 0xff000000: the window ---- */

static uint64_t iomem_read(void *dev, uint64_t off, uint8_t size) {
    struct pc_testdev *t = dev;
    uint64_t v = 0;
    unsigned n = bytes_inside(off, size, PC_TESTDEV_IOMEM_SIZE);
    pthread_mutex_lock(&t->lock);
    if (n) memcpy(&v, t->iomem + off, n); /* little-endian, as the guest is */
    pthread_mutex_unlock(&t->lock);
    return v;
}

static void iomem_write(void *dev, uint64_t off, uint8_t size, uint64_t value) {
    struct pc_testdev *t = dev;
    unsigned n = bytes_inside(off, size, PC_TESTDEV_IOMEM_SIZE);
    pthread_mutex_lock(&t->lock);
    if (n) memcpy(t->iomem + off, &value, n);
    pthread_mutex_unlock(&t->lock);
}

const struct io_ops pc_testdev_iomem_ops = {.name = "pc-testdev-iomem", .read = iomem_read, .write = iomem_write};

struct pc_testdev *pc_testdev_create(struct vm_env *env) {
    struct pc_testdev *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->env = env;
    pthread_mutex_init(&t->lock, NULL);
    return t;
}

void pc_testdev_destroy(struct pc_testdev *t) {
    if (!t) return;
    pthread_mutex_destroy(&t->lock);
    free(t);
}
