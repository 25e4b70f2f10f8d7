#include "devices/console_input.h"

#define CTRL_A 0x01

size_t console_escape_filter(struct console_escape *e, uint8_t *buf, size_t n, bool *quit) {
    size_t out = 0;
    *quit = false;
    for (size_t i = 0; i < n; i++) {
        if (e->pending) {
            e->pending = false;
            if (buf[i] == 'x') {
                *quit = true;
                return out;
            }
            if (buf[i] != CTRL_A) continue;
        } else if (buf[i] == CTRL_A) {
            e->pending = true;
            continue;
        }
        buf[out++] = buf[i];
    }
    return out;
}
