/* ACPI tables for PVH and Linux guests (hardware-reduced ACPI 6): RSDP, XSDT, FADT, MADT
 * (one local APIC per vCPU, the IOAPIC) and the DSDT (PCI host bridge, S5). */
#ifndef BELLHOP_FIRMWARE_ACPI_H
#define BELLHOP_FIRMWARE_ACPI_H

#include <stdint.h>

#include "base/guest_mem.h"

#define ACPI_TABLES_ADDR 0xe0000u /* the BIOS area where RSDP scans look */
#define ACPI_TABLES_SIZE 0x10000u
#define ACPI_PM_PORT 0x600        /* sleep control, sleep status, reset (devices/acpi_pm.c) */

/* The PC's reset vector (F000:FFF0, physical 0xFFFF0), where a guest that resets through
 * real mode (Linux's machine_real_restart) lands: a stub that writes the ACPI reset register,
 * so that such a reset ends the VM like any other. */
#define RESET_VECTOR_ADDR 0xffff0u
void reset_vector_stub(const struct guest_mem *gm);

/* Writes the tables, the FADT naming an ACPI PM timer at pm_timer_port (0: none); returns the
 * RSDP's address, or 0 if they do not fit. */
uint64_t acpi_build(const struct guest_mem *gm, unsigned ncpus, uint64_t ioapic_addr, uint16_t pm_timer_port);

#endif
