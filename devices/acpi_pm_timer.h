#ifndef BELLHOP_DEVICES_ACPI_PM_TIMER_H
#define BELLHOP_DEVICES_ACPI_PM_TIMER_H

#include "devices/device.h"

/* The ACPI power management timer: a free-running 32-bit count at 3.579545 MHz (the FADT's
 * TMR_VAL_EXT), read from one port. QEMU's PC has it at 0xb008; kvm-unit-tests finds it through
 * the FADT and times port I/O by it (vmexit's inl_from_pmtimer). Only a multiboot machine's
 * FADT names it (firmware/acpi.h): Linux, which bellhop gives a hardware-reduced FADT, would
 * otherwise take it for a clocksource watchdog and exit to read it twice a second. Writes are
 * ignored; it restarts from 0 with its VMM (it is kept in no snapshot). */
#define ACPI_PM_TIMER_PORT 0xb008
#define ACPI_PM_TIMER_HZ 3579545ull

struct acpi_pm_timer;
extern const struct io_ops acpi_pm_timer_ops;
struct acpi_pm_timer *acpi_pm_timer_create(void);
void acpi_pm_timer_destroy(struct acpi_pm_timer *t);

#endif
