/* The device tree bellhop hands a PVH guest (as its first module): memory, CPUs, the IOAPIC,
 * the 16550 on the ISA bus, every virtio-mmio device, and /chosen/bootargs. */
#ifndef BELLHOP_FIRMWARE_FDT_H
#define BELLHOP_FIRMWARE_FDT_H

#include <stddef.h>
#include <stdint.h>

#define FDT_MAX_VIRTIO 16
#define FDT_IOAPIC_BASE 0xfec00000u

struct fdt_virtio_mmio {
    uint64_t base, size;
    uint32_t irq; /* IOAPIC pin */
};

struct fdt_machine {
    uint64_t ram_size; /* all of RAM: laid out as base/guest_mem.h says, above 4 GiB past 3 GiB */
    unsigned ncpus;
    const char *cmdline;
    uint16_t uart_port;
    uint32_t uart_irq;
    struct fdt_virtio_mmio virtio[FDT_MAX_VIRTIO];
    unsigned nvirtio;
};

/* QEMU's microvm (acpi=off, ioapic2=off): eight virtio-mmio transports of 512 bytes from
 * 0xfeb00000 on IOAPIC pins 5 and up, COM1 on pin 4. Fills m for the bundled guest there. */
void fdt_microvm_layout(struct fdt_machine *m, uint64_t ram_size, const char *cmdline);

/* Builds the DTB into buf; returns its size, or a negative libfdt error. */
int fdt_build(const struct fdt_machine *m, void *buf, size_t size);

#endif
