/* ACPI tables for PVH and Linux guests (hardware-reduced ACPI 6): RSDP, XSDT, FADT, MADT
 * (one local APIC per vCPU, the IOAPIC) and the DSDT (PCI host bridge, S5). */
#ifndef BELLHOP_FIRMWARE_ACPI_H
#define BELLHOP_FIRMWARE_ACPI_H

#include <stdint.h>

#include "vmm/guest_mem.h"

#define ACPI_TABLES_ADDR 0xe0000u /* the BIOS area where RSDP scans look */
#define ACPI_TABLES_SIZE 0x10000u
#define ACPI_PM_PORT 0x600        /* sleep control, sleep status, reset (devices/acpi_pm.c) */

/* Writes the tables; returns the RSDP's address, or 0 if they do not fit. */
uint64_t acpi_build(const struct guest_mem *gm, unsigned ncpus, uint64_t ioapic_addr);

#endif
