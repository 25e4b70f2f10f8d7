#include "guest/irq.h"

#define LAPIC 0xfee00000ull
#define LAPIC_EOI 0xb0
#define LAPIC_SVR 0xf0
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_DIV 0x3e0
#define IOAPIC 0xfec00000ull
#define VEC_TIMER 0x20
#define VEC_PIN0 0x30
#define NPINS 24

struct gate {
    uint16_t off0, sel;
    uint8_t ist, type;
    uint16_t off1;
    uint32_t off2, zero;
} __attribute__((packed));

static struct gate idt[256] __attribute__((aligned(16)));
extern const uint64_t isr_table[];
static struct {
    void (*fn)(void *);
    void *arg;
    uint64_t count;
} pins[NPINS];
volatile uint64_t irq_ticks;
void (*ipi_handler)(void);

static void lapic_write(uint32_t reg, uint32_t v) { mmio_write32(LAPIC + reg, v); }
static void ioapic_write(uint32_t reg, uint32_t v) {
    mmio_write32(IOAPIC, reg);
    mmio_write32(IOAPIC + 0x10, v);
}

struct frame {
    uint64_t r11, r10, r9, r8, rdi, rsi, rdx, rcx, rax, vector, error, rip, cs, rflags, rsp, ss;
};

void irq_dispatch(uint64_t vector, struct frame *f) {
    if (vector < 32) {
        printf("guest: exception %u (error %x) at rip %p\n", (unsigned)vector, (unsigned)f->error,
               (void *)f->rip);
        guest_exit(97);
    }
    if (vector == VEC_TIMER) irq_ticks++;
    if (vector == VEC_IPI && ipi_handler) ipi_handler();
    if (vector >= VEC_PIN0 && vector < VEC_PIN0 + NPINS) {
        unsigned pin = (unsigned)vector - VEC_PIN0;
        pins[pin].count++;
        if (pins[pin].fn) pins[pin].fn(pins[pin].arg);
    }
    if (vector != 0xff) lapic_write(LAPIC_EOI, 0);
}

static void load_idt(void) {
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) idtr = {sizeof idt - 1, (uint64_t)idt};
    __asm__ volatile("lidt %0" ::"m"(idtr));
}

void irq_init_ap(void) {
    load_idt();
    lapic_write(LAPIC_SVR, 0x100 | 0xff);
}

void irq_init(void) {
    for (const uint64_t *e = isr_table; e[0] != (uint64_t)-1; e += 2) {
        uint64_t a = e[1];
        idt[e[0]] = (struct gate){.off0 = (uint16_t)a, .sel = 0x08, .type = 0x8e,
                                  .off1 = (uint16_t)(a >> 16), .off2 = (uint32_t)(a >> 32)};
    }
    load_idt();
    /* The legacy PICs would deliver ISA lines too (through LINT0): remap them away from the
     * exception vectors, then mask every line. */
    static const uint8_t icw[2][4] = {{0x11, 0xe0, 0x04, 0x01}, {0x11, 0xe8, 0x02, 0x01}};
    for (int i = 0; i < 2; i++) {
        uint16_t cmd = i ? 0xa0 : 0x20;
        outb(cmd, icw[i][0]);
        outb(cmd + 1, icw[i][1]);
        outb(cmd + 1, icw[i][2]);
        outb(cmd + 1, icw[i][3]);
        outb(cmd + 1, 0xff);
    }
    lapic_write(LAPIC_SVR, 0x100 | 0xff);
    /* KVM's local APIC timer counts at 1 GHz: a tick every 10 ms wakes halted waits. */
    lapic_write(LAPIC_TIMER_DIV, 0xb); /* divide by 1 */
    lapic_write(LAPIC_LVT_TIMER, VEC_TIMER | 1u << 17); /* periodic */
    lapic_write(LAPIC_TIMER_INIT, 10000000);
}

void irq_route(unsigned pin, void (*handler)(void *arg), void *arg) {
    if (pin >= NPINS) return;
    pins[pin].fn = handler;
    pins[pin].arg = arg;
    ioapic_write(0x10 + 2 * pin + 1, 0);                 /* destination: APIC 0 */
    ioapic_write(0x10 + 2 * pin, VEC_PIN0 + pin);        /* fixed, physical, edge, high, unmasked */
}

uint64_t irq_count(unsigned pin) { return pin < NPINS ? pins[pin].count : 0; }
