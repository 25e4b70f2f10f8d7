/* The tiny guest's drivers. */
#ifndef BELLHOP_GUEST_DEVICES_H
#define BELLHOP_GUEST_DEVICES_H

#include "guest/lib.h"

void uart_init(uint16_t base);

#endif
