/* The port and object API under random operation sequences on a small set of handles:
 * create, duplicate, close, queue, wait (never blocking), wait_async, cancel, signal,
 * timers. Any status is fine; a crash, a leak or a hang is not. */
#include <zircon/syscalls.h>
#include <zircon/syscalls/port.h>

#include "tests/fuzz/fuzz.h"

#define SLOTS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    zx_handle_t h[SLOTS] = {0};
    struct cursor c = {data, size};
    for (unsigned steps = 0; c.n >= 3 && steps < 256; steps++) {
        uint8_t op = (uint8_t)take(&c, 1), a = (uint8_t)take(&c, 1) % SLOTS, b = (uint8_t)take(&c, 1) % SLOTS;
        zx_port_packet_t p = {.key = op, .type = ZX_PKT_TYPE_USER};
        switch (op % 12) {
        case 0: if (!h[a]) zx_port_create(op & 0x80 ? ZX_PORT_BIND_TO_INTERRUPT : 0, &h[a]); break;
        case 1: if (!h[a]) zx_event_create(0, &h[a]); break;
        case 2: if (!h[a]) zx_timer_create(0, ZX_CLOCK_MONOTONIC, &h[a]); break;
        case 3: zx_handle_close(h[a]); h[a] = 0; break;
        case 4: if (!h[b]) zx_handle_duplicate(h[a], ZX_RIGHT_SAME_RIGHTS, &h[b]); break;
        case 5: zx_port_queue(h[a], &p); break;
        case 6: zx_port_wait(h[a], 0, &p); break;
        case 7: zx_object_wait_async(h[a], h[b], op, ZX_USER_SIGNAL_0 | ZX_TIMER_SIGNALED, op & 1); break;
        case 8: zx_port_cancel(h[a], h[b], op); break;
        case 9: zx_object_signal(h[a], 0, ZX_USER_SIGNAL_0); break;
        case 10: zx_timer_set(h[a], 0, 0); break;
        case 11: zx_port_cancel_key(h[a], 0, op); break;
        }
    }
    for (unsigned i = 0; i < SLOTS; i++) zx_handle_close(h[i]);
    return 0;
}
