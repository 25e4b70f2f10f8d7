/* The ACPI PM timer (acpi_pm_timer.h). */
#include <stdlib.h>
#include <zircon/syscalls.h>

#include "devices/acpi_pm_timer.h"

struct acpi_pm_timer {
    uint64_t start_ns;
};

static uint64_t timer_read(void *dev, uint64_t off, uint8_t size) {
    const struct acpi_pm_timer *t = dev;
    uint64_t ns = zx_clock_get_monotonic() - t->start_ns;
    /* ns * HZ / 1e9 without overflow for centuries: whole seconds, then the rest */
    uint64_t ticks = ns / 1000000000u * ACPI_PM_TIMER_HZ + ns % 1000000000u * ACPI_PM_TIMER_HZ / 1000000000u;
    uint32_t count = (uint32_t)ticks;
    return off < 4 ? count >> (off * 8) & (size >= 4 ? 0xffffffffu : (1u << (size * 8)) - 1) : 0;
}

static void timer_write(void *dev, uint64_t off, uint8_t size, uint64_t value) { (void)dev, (void)off, (void)size, (void)value; }

const struct io_ops acpi_pm_timer_ops = {.name = "pm_timer", .read = timer_read, .write = timer_write};

struct acpi_pm_timer *acpi_pm_timer_create(void) {
    struct acpi_pm_timer *t = calloc(1, sizeof *t);
    if (t) t->start_ns = zx_clock_get_monotonic();
    return t;
}

void acpi_pm_timer_destroy(struct acpi_pm_timer *t) { free(t); }
