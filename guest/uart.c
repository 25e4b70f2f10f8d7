/* 16550 UART driver: polled transmit. */
#include "guest/devices.h"

#define THR 0
#define LSR 5
#define LSR_THRE 0x20

static uint16_t uart_base = 0x3f8;

static void uart_write(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n') {
            while (!(inb(uart_base + LSR) & LSR_THRE)) {
            }
            outb(uart_base + THR, '\r');
        }
        while (!(inb(uart_base + LSR) & LSR_THRE)) {
        }
        outb(uart_base + THR, (uint8_t)s[i]);
    }
}

void uart_init(uint16_t base) {
    uart_base = base;
    console_add_sink(uart_write);
}
