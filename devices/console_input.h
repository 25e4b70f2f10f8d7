/* What a console device does with host input before the guest sees it: Ctrl-A x asks the
 * VMM to quit, Ctrl-A Ctrl-A sends one Ctrl-A, Ctrl-A followed by anything else is dropped
 * (QEMU's convention). Shared by the 16550 and virtio-console. */
#ifndef BELLHOP_DEVICES_CONSOLE_INPUT_H
#define BELLHOP_DEVICES_CONSOLE_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct console_escape {
    bool pending; /* the last byte was a lone Ctrl-A */
};

/* Filters buf in place; returns how many bytes remain for the guest. Sets *quit on
 * Ctrl-A x (the bytes after it are dropped). */
size_t console_escape_filter(struct console_escape *e, uint8_t *buf, size_t n, bool *quit);

#endif
