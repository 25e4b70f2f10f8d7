#ifndef BELLHOP_DEVICES_UART16550_H
#define BELLHOP_DEVICES_UART16550_H

#include "devices/device.h"

#define UART_COM1_PORT 0x3f8
#define UART_COM1_IRQ 4

struct uart16550;
extern const struct io_ops uart16550_ops;
/* in_fd < 0: no input. Ctrl-A x on the input ends the VM (status 0). */
struct uart16550 *uart16550_create(struct vm_env *env, uint32_t irq, int in_fd, int out_fd);
void uart16550_destroy(struct uart16550 *u);

#endif
