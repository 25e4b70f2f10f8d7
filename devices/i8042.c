/* The 8042 keyboard controller and its keyboard, as much of them as a Linux guest's i8042 and
 * atkbd drivers use: the controller's self-tests and command byte, the keyboard's identify,
 * reset, LED, rate and scan-set commands, and key bytes delivered one per interrupt on IRQ 1.
 * No mouse: the AUX port never answers, which Linux takes for "no AUX port". The only keys
 * ever pressed are Ctrl+Alt+Del (i8042_ctrl_alt_del), in scan-code set 1 when the controller
 * translates (Linux's default) and set 2 when it does not. */
#include <pthread.h>
#include <stdlib.h>

#include "devices/i8042.h"

#define STATUS_OBF 0x01
#define STATUS_SYS 0x04
#define STATUS_CMD 0x08 /* the last write was to the command port */
#define STATUS_UNLOCKED 0x10 /* the keyboard's inhibit switch is off */

#define CTR_KBD_INT 0x01
#define CTR_SYS 0x04
#define CTR_KBD_DISABLED 0x10
#define CTR_AUX_DISABLED 0x20
#define CTR_XLATE 0x40

#define KBD_IRQ 1
#define ACK 0xfa
#define QUEUE 16

struct i8042 {
    struct vm_env *env;
    pthread_mutex_t lock;
    uint8_t ctr, status_cmd;
    uint8_t pending_cmd; /* a controller command waiting for its data byte; 0 for none */
    uint8_t kbd_cmd;     /* a keyboard command waiting for its argument; 0 for none */
    uint8_t out[QUEUE];
    unsigned head, count;
};

/* Lock held. True when the guest should be interrupted for the new head byte. */
static bool push(struct i8042 *k, uint8_t b) {
    if (k->count == QUEUE) return false;
    k->out[(k->head + k->count++) % QUEUE] = b;
    return k->count == 1 && (k->ctr & CTR_KBD_INT);
}

static void raise_if(struct i8042 *k, bool irq) {
    if (irq) k->env->raise_irq(k->env, KBD_IRQ);
}

/* A byte the guest sent to the keyboard. Lock held; returns whether to interrupt. */
static bool keyboard_byte(struct i8042 *k, uint8_t b) {
    bool irq = false;
    if (k->kbd_cmd) { /* the argument of LEDs, rate or scan set */
        uint8_t cmd = k->kbd_cmd;
        k->kbd_cmd = 0;
        irq |= push(k, ACK);
        if (cmd == 0xf0 && b == 0) push(k, k->ctr & CTR_XLATE ? 0x41 : 0x02); /* which set: 2 */
        return irq;
    }
    switch (b) {
    case 0xff: /* reset: acknowledged, then the self-test passed */
        irq |= push(k, ACK);
        push(k, 0xaa);
        break;
    case 0xf2: /* identify: an MF2 keyboard (its second byte as the controller translates it) */
        irq |= push(k, ACK);
        push(k, 0xab);
        push(k, k->ctr & CTR_XLATE ? 0x41 : 0x83);
        break;
    case 0xee: irq |= push(k, 0xee); break; /* echo */
    case 0xed: case 0xf3: case 0xf0:
        k->kbd_cmd = b;
        irq |= push(k, ACK);
        break;
    case 0xf4: case 0xf5: case 0xf6: irq |= push(k, ACK); break; /* enable, disable, defaults */
    default: irq |= push(k, 0xfe); break; /* resend: not a command this keyboard knows */
    }
    return irq;
}

static uint64_t i8042_read(void *dev, uint64_t off, uint8_t size) {
    (void)size;
    struct i8042 *k = dev;
    pthread_mutex_lock(&k->lock);
    uint8_t v;
    bool irq = false;
    if (off == 4) {
        v = STATUS_SYS | STATUS_UNLOCKED | k->status_cmd | (k->count ? STATUS_OBF : 0);
    } else {
        v = k->count ? k->out[k->head] : 0;
        if (k->count) {
            k->head = (k->head + 1) % QUEUE;
            k->count--;
            irq = k->count && (k->ctr & CTR_KBD_INT); /* one byte per interrupt */
        }
    }
    pthread_mutex_unlock(&k->lock);
    raise_if(k, irq);
    return v;
}

static void i8042_write(void *dev, uint64_t off, uint8_t size, uint64_t value) {
    (void)size;
    struct i8042 *k = dev;
    uint8_t b = (uint8_t)value;
    bool irq = false, reset = false;
    pthread_mutex_lock(&k->lock);
    if (off == 4) {
        k->status_cmd = STATUS_CMD;
        k->pending_cmd = 0;
        switch (b) {
        case 0x20: irq = push(k, k->ctr); break;                 /* read the command byte */
        case 0x60: case 0xd1: case 0xd2: case 0xd3: case 0xd4: /* a data byte follows */
            k->pending_cmd = b;
            break;
        case 0xa7: k->ctr |= CTR_AUX_DISABLED; break;
        case 0xa8: k->ctr &= (uint8_t)~CTR_AUX_DISABLED; break;
        case 0xaa: irq = push(k, 0x55); break; /* controller self-test: passed */
        case 0xab: irq = push(k, 0x00); break; /* keyboard interface test: passed */
        case 0xad: k->ctr |= CTR_KBD_DISABLED; break;
        case 0xae: k->ctr &= (uint8_t)~CTR_KBD_DISABLED; break;
        case 0xfe: reset = true; break; /* pulse the reset line: Linux's reboot=k */
        default: break;                  /* no AUX port, no other lines */
        }
    } else {
        k->status_cmd = 0;
        uint8_t cmd = k->pending_cmd;
        k->pending_cmd = 0;
        if (cmd == 0x60) k->ctr = b;
        else if (cmd == 0xd1) reset = !(b & 1); /* output port: bit 0 low resets */
        else if (cmd == 0xd2) irq = push(k, b); /* as if the keyboard sent it */
        else if (cmd == 0xd3 || cmd == 0xd4) { /* to the AUX port: nobody there */
        } else irq = keyboard_byte(k, b);
    }
    pthread_mutex_unlock(&k->lock);
    raise_if(k, irq);
    if (reset) k->env->request_exit(k->env, 0);
}

void i8042_ctrl_alt_del(struct i8042 *k) {
    static const uint8_t set1[] = {0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d};
    static const uint8_t set2[] = {0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14};
    pthread_mutex_lock(&k->lock);
    bool xlate = k->ctr & CTR_XLATE, irq = false;
    const uint8_t *keys = xlate ? set1 : set2;
    size_t n = xlate ? sizeof set1 : sizeof set2;
    for (size_t i = 0; i < n; i++) irq |= push(k, keys[i]);
    pthread_mutex_unlock(&k->lock);
    raise_if(k, irq);
}

struct i8042_wire {
    uint8_t ctr, status_cmd, pending_cmd, kbd_cmd;
    uint8_t out[QUEUE];
    uint32_t head, count;
};

static size_t i8042_save(void *dev, uint8_t *buf, size_t len) {
    struct i8042 *k = dev;
    struct i8042_wire w = {0};
    pthread_mutex_lock(&k->lock);
    w.ctr = k->ctr, w.status_cmd = k->status_cmd, w.pending_cmd = k->pending_cmd, w.kbd_cmd = k->kbd_cmd;
    memcpy(w.out, k->out, sizeof w.out);
    w.head = k->head, w.count = k->count;
    pthread_mutex_unlock(&k->lock);
    return DEVICE_SAVE(buf, len, w);
}

static int i8042_restore(void *dev, const uint8_t *buf, size_t len, char *err, size_t errlen) {
    struct i8042 *k = dev;
    struct i8042_wire w;
    if (DEVICE_RESTORE_LEN("i8042", len, w, err, errlen) != 0) return -1;
    memcpy(&w, buf, sizeof w);
    if (w.head >= QUEUE || w.count > QUEUE) return snprintf(err, errlen, "i8042: saved output queue out of range"), -1;
    pthread_mutex_lock(&k->lock);
    k->ctr = w.ctr, k->status_cmd = w.status_cmd, k->pending_cmd = w.pending_cmd, k->kbd_cmd = w.kbd_cmd;
    memcpy(k->out, w.out, sizeof k->out);
    k->head = w.head, k->count = w.count;
    pthread_mutex_unlock(&k->lock);
    return 0;
}

const struct io_ops i8042_ops = {.name = "i8042", .read = i8042_read, .write = i8042_write, .save = i8042_save,
                                 .restore = i8042_restore};

struct i8042 *i8042_create(struct vm_env *env) {
    struct i8042 *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->env = env;
    k->ctr = CTR_KBD_INT | CTR_SYS | CTR_XLATE | CTR_AUX_DISABLED;
    pthread_mutex_init(&k->lock, NULL);
    return k;
}

void i8042_destroy(struct i8042 *k) {
    if (!k) return;
    pthread_mutex_destroy(&k->lock);
    free(k);
}
