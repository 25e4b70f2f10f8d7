#ifndef BELLHOP_DEVICES_UNASSIGNED_H
#define BELLHOP_DEVICES_UNASSIGNED_H

#include "devices/device.h"

/* Port IO or MMIO where no device lives: reads float high (all ones), writes vanish, as on a
 * PC bus. Guests probe many ports (Linux: floppy, parallel, DMA pages, io_delay at 0x80). */
extern const struct io_ops unassigned_ops;

#endif
