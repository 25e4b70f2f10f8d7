#include <pthread.h>
#include <stdlib.h>

#include "devices/fw_cfg.h"

#define ARCH_LOCAL 0x8000u
#define ENTRY_MASK 0x3fffu /* less the arch-local and write bits */
#define NITEMS 5

struct item {
    uint16_t key;
    uint8_t len;
    uint8_t data[8];
};

struct fw_cfg {
    pthread_mutex_t lock; /* vCPUs share the selector and the offset */
    uint16_t key;
    uint32_t offset;
    struct item items[NITEMS];
};

static const struct item *find_item(const struct fw_cfg *f, uint16_t key) {
    if (key & ARCH_LOCAL) return NULL;
    for (unsigned i = 0; i < NITEMS; i++)
        if (f->items[i].key == (key & ENTRY_MASK)) return &f->items[i];
    return NULL;
}

static uint32_t item_len(const struct fw_cfg *f, uint16_t key) {
    const struct item *it = find_item(f, key);
    return it ? it->len : 0;
}

/* The data register is one byte wide; wider reads name no register (QEMU refuses them). */
static uint64_t fw_cfg_read(void *dev, uint64_t off, uint8_t size) {
    struct fw_cfg *f = dev;
    if (off != 1 || size != 1) return 0;
    pthread_mutex_lock(&f->lock);
    const struct item *it = find_item(f, f->key);
    uint8_t v = 0;
    if (it && f->offset < it->len) v = it->data[f->offset++];
    pthread_mutex_unlock(&f->lock);
    return v;
}

static void fw_cfg_write(void *dev, uint64_t off, uint8_t size, uint64_t value) {
    struct fw_cfg *f = dev;
    if (off != 0 || size > 2) return;
    pthread_mutex_lock(&f->lock);
    f->key = (uint16_t)value;
    f->offset = 0;
    pthread_mutex_unlock(&f->lock);
}

struct fw_cfg_wire {
    uint16_t key, pad;
    uint32_t offset;
};

static size_t fw_cfg_save(void *dev, uint8_t *buf, size_t len) {
    struct fw_cfg *f = dev;
    pthread_mutex_lock(&f->lock);
    struct fw_cfg_wire w = {.key = f->key, .offset = f->offset};
    pthread_mutex_unlock(&f->lock);
    return DEVICE_SAVE(buf, len, w);
}

static int fw_cfg_restore(void *dev, const uint8_t *buf, size_t len, char *err, size_t errlen) {
    struct fw_cfg *f = dev;
    struct fw_cfg_wire w;
    if (DEVICE_RESTORE_LEN("fw_cfg", len, w, err, errlen) != 0) return -1;
    memcpy(&w, buf, sizeof w);
    if (w.offset > item_len(f, w.key)) {
        snprintf(err, errlen, "fw_cfg: offset %u is past item %#x's end", w.offset, w.key);
        return -1;
    }
    pthread_mutex_lock(&f->lock);
    f->key = w.key;
    f->offset = w.offset;
    pthread_mutex_unlock(&f->lock);
    return 0;
}

const struct io_ops fw_cfg_ops = {.name = "fw_cfg", .read = fw_cfg_read, .write = fw_cfg_write, .save = fw_cfg_save,
                                  .restore = fw_cfg_restore};

static struct item le_item(uint16_t key, uint64_t v, uint8_t len) {
    struct item it = {.key = key, .len = len};
    for (unsigned i = 0; i < len; i++) it.data[i] = (uint8_t)(v >> (8 * i));
    return it;
}

struct fw_cfg *fw_cfg_create(const struct fw_cfg_params *p) {
    struct fw_cfg *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    pthread_mutex_init(&f->lock, NULL);
    f->items[0] = (struct item){.key = FW_CFG_SIGNATURE, .len = 4, .data = {'Q', 'E', 'M', 'U'}};
    f->items[1] = le_item(FW_CFG_ID, FW_CFG_ID_TRADITIONAL, 4);
    f->items[2] = le_item(FW_CFG_RAM_SIZE, p->ram_size, 8);
    f->items[3] = le_item(FW_CFG_NB_CPUS, p->cpus, 2);
    f->items[4] = le_item(FW_CFG_MAX_CPUS, p->max_cpus, 2);
    return f;
}

void fw_cfg_destroy(struct fw_cfg *f) {
    if (!f) return;
    pthread_mutex_destroy(&f->lock);
    free(f);
}
