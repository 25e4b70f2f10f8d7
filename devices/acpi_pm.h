#ifndef BELLHOP_DEVICES_ACPI_PM_H
#define BELLHOP_DEVICES_ACPI_PM_H

#include "devices/device.h"

/* Hardware-reduced ACPI power management, three byte-wide ports (see firmware/acpi.c):
 * +0 sleep control: SLP_EN with SLP_TYP 5 (S5) powers off; +1 sleep status (reads 0);
 * +2 reset register: 1 resets. Power-off and reset both end the VM with status 0. */
struct acpi_pm;
extern const struct io_ops acpi_pm_ops;
struct acpi_pm *acpi_pm_create(struct vm_env *env);
void acpi_pm_destroy(struct acpi_pm *p);

#endif
