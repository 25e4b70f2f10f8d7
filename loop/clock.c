#include <errno.h>
#include <time.h>

#include "loop/object.h"

static zx_time_t read_clock(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (zx_time_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

zx_time_t zx_clock_get_monotonic(void) { return read_clock(CLOCK_MONOTONIC); }
zx_instant_boot_t zx_clock_get_boot(void) { return read_clock(CLOCK_BOOTTIME); }

zx_time_t zx_deadline_after(zx_duration_t ns) {
    zx_time_t now = zx_clock_get_monotonic();
    if (ns > 0 && now > ZX_TIME_INFINITE - ns) return ZX_TIME_INFINITE; /* saturate */
    return now + ns;
}

int timeout_ms_until(zx_time_t deadline) {
    if (deadline == ZX_TIME_INFINITE) return -1;
    zx_time_t now = zx_clock_get_monotonic();
    if (deadline <= now) return 0;
    zx_duration_t d = deadline - now, ms = d / 1000000 + (d % 1000000 != 0);
    return ms > 1 << 30 ? 1 << 30 : (int)ms;
}

zx_status_t zx_nanosleep(zx_time_t deadline) {
    if (deadline == ZX_TIME_INFINITE) deadline = INT64_MAX / 2;
    struct timespec ts = {.tv_sec = deadline / 1000000000, .tv_nsec = deadline % 1000000000};
    if (deadline <= 0) return ZX_OK;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
    return ZX_OK;
}
