/* Hostile mode, against one virtio-rng device and the UART:
 *   - malformed descriptor chains (a loop, a buffer outside RAM, a zero-length buffer, a next
 *     index out of range, an avail index that jumps): each must put the device in
 *     DEVICE_NEEDS_RESET, and a reset must bring it back;
 *   - random values written to every register of the device and of the UART;
 *   - a storm of doorbell rings;
 * and after each, a real request must still complete and the console must still print. */
#include "guest/hostile.h"
#include "guest/irq.h"

#define NEEDS_RESET 0x40

static uint64_t state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) { /* xorshift64 */
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static bool works(struct vdev *d) {
    static uint8_t buf[16];
    return vdev_request(d, 0, &(struct vbuf){buf, sizeof buf, true}, 1, false) == sizeof buf;
}

/* Resets and starts the device again, as a driver recovering from DEVICE_NEEDS_RESET does. */
static bool restart(struct vdev *d) {
    return vdev_init(d, d->base, d->irq, 0, 1) == 0;
}

static bool wait_needs_reset(struct vdev *d) {
    uint64_t deadline = irq_ticks + 10 * IRQ_TICKS_PER_SEC;
    while (!(vdev_status(d) & NEEDS_RESET))
        if (irq_ticks > deadline) return false;
        else irq_wait();
    return true;
}

enum bad { LOOP, OUT_OF_RAM, ZERO_LEN, NEXT_RANGE, AVAIL_JUMP, NBAD };
static const char *const names[NBAD] = {"hostile-chain-loop", "hostile-chain-outside", "hostile-chain-zero",
                                        "hostile-chain-next", "hostile-avail-jump"};

static void bad_chain(struct vdev *d, enum bad kind) {
    struct vq *q = &d->vqs[0];
    static uint8_t buf[64];
    switch (kind) {
    case LOOP:
        q->desc[0] = (struct vdesc){(uint64_t)buf, 8, 1 | 2, 1};
        q->desc[1] = (struct vdesc){(uint64_t)buf, 8, 1 | 2, 0};
        break;
    case OUT_OF_RAM: q->desc[0] = (struct vdesc){0x7ffff0000000ull, 4096, 2, 0}; break;
    case ZERO_LEN: q->desc[0] = (struct vdesc){(uint64_t)buf, 0, 2, 0}; break;
    case NEXT_RANGE: q->desc[0] = (struct vdesc){(uint64_t)buf, 8, 1 | 2, 999}; break;
    default: break;
    }
    q->avail[2 + q->avail_idx % q->num] = 0;
    q->avail_idx += kind == AVAIL_JUMP ? 1000 : 1;
    __atomic_store_n(&q->avail[1], q->avail_idx, __ATOMIC_RELEASE);
    vdev_notify(d, 0);
}

void hostile_run(struct vdev *d, unsigned long storm, void (*result)(const char *, bool, const char *)) {
    char detail[96];
    for (int kind = 0; kind < NBAD; kind++) {
        bad_chain(d, (enum bad)kind);
        bool failed = wait_needs_reset(d);
        bool back = restart(d) && works(d);
        snprintf(detail, sizeof detail, "%s, then reset and %s", failed ? "DEVICE_NEEDS_RESET" : "device did not fail",
                 back ? "working" : "still broken");
        result(names[kind], failed && back, detail);
    }

    /* Every register of the transport, random values (the doorbell too). */
    for (unsigned i = 0; i < 4096; i++) mmio_write32(d->base + (rnd() % 0x200 & ~3ull), (uint32_t)rnd());
    bool back = restart(d) && works(d);
    result("hostile-registers", back, back ? "4096 random register writes, then reset and working" : "broken");

    /* The UART's registers (not the data register: that would print the noise). */
    for (unsigned i = 0; i < 1024; i++) outb((uint16_t)(0x3f9 + rnd() % 7), (uint8_t)rnd());
    outb(0x3fb, 0x03); /* 8N1, DLAB off */
    outb(0x3f9, 0x00); /* no interrupts */
    result("hostile-uart", true, "1024 random UART register writes, and this line still prints");

    /* A storm of doorbell rings, with nothing queued. */
    for (unsigned long i = 0; i < storm; i++) vdev_notify(d, 0);
    back = works(d);
    snprintf(detail, sizeof detail, "%lu rings, then a request %s", storm, back ? "completes" : "fails");
    result("hostile-bell-storm", back, detail);
}
