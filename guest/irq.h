/* The tiny guest's interrupts: IDT, local APIC (with a periodic timer so that a halted CPU
 * wakes up to check its deadlines), IOAPIC pins routed to vectors 0x30 + pin. */
#ifndef BELLHOP_GUEST_IRQ_H
#define BELLHOP_GUEST_IRQ_H

#include "guest/lib.h"

void irq_init(void);
/* Routes IOAPIC pin to handler (edge-triggered, to CPU 0). */
void irq_route(unsigned pin, void (*handler)(void *arg), void *arg);
/* Waits for an interrupt (any: device or the timer tick). */
static inline void irq_wait(void) { __asm__ volatile("sti; hlt; cli" ::: "memory"); }
uint64_t irq_count(unsigned pin);
/* A secondary CPU joins: loads the IDT, enables its local APIC. */
void irq_init_ap(void);
#define VEC_IPI 0x50
/* Called on VEC_IPI (any CPU). */
extern void (*ipi_handler)(void);
/* 10 ms timer ticks since irq_init. */
extern volatile uint64_t irq_ticks;
#define IRQ_TICKS_PER_SEC 100

#endif
