/* virtio-pci, modern (virtio 1.2 §4.1): vendor 0x1af4, device 0x1040 + id. One 64-bit memory
 * BAR holds the common configuration (MEM traps), the ISR, the device configuration, the
 * notify area (a bell trap: queue n rings at +4n, so notifications never stop the vCPU) and
 * the MSI-X table and PBA. Interrupts are MSI-X vectors (KVM GSI routes and irqfds); a driver
 * that leaves MSI-X off gets legacy INTx: a level-triggered IOAPIC line (`intx_gsi`, routed by
 * the DSDT's _PRT), asserted while the ISR is non-zero and re-checked at each EOI. */
#ifndef BELLHOP_DEVICES_VIRTIO_PCI_H
#define BELLHOP_DEVICES_VIRTIO_PCI_H

#include "devices/pci.h"
#include "devices/virtio.h"

#define VIRTIO_PCI_BAR_SIZE 0x8000u
#define VIRTIO_PCI_NOTIFY_OFFSET 0x3000u
/* The host bridge's memory window (firmware/dsdt.asl), where the functions' BARs go in slot
 * order; slots 1..8 have INTA on IOAPIC pins 16..23 (the DSDT's _PRT), the rest MSI-X only. */
#define VIRTIO_PCI_WINDOW 0xe0000000u
#define VIRTIO_PCI_INTX_SLOTS 8u
#define VIRTIO_PCI_INTX_PIN_BASE 16u

struct virtio_pci;
/* The BAR's register pages: [0, 0x3000) and [0x4000, 0x8000) are MEM traps of these ops
 * with offsets from the BAR's start; [0x3000, 0x4000) is the bell trap it sets itself. */
extern const struct io_ops virtio_pci_ops;

/* The device `ops` made from `params` (virtio_device_ops.create) behind a PCI function in
 * bus's next slot, its BAR and INTx line where that slot's go. NULL with a one-line reason in
 * err on failure. */
struct virtio_pci *virtio_pci_create(struct vm_env *env, const struct virtio_device_ops *ops, const void *params,
                                     struct pci_bus *bus, char *err, size_t errlen);
/* Its BAR (VIRTIO_PCI_BAR_SIZE bytes): the caller traps its register pages to
 * virtio_pci_ops, with offsets from this base. */
uint64_t virtio_pci_bar(const struct virtio_pci *p);
struct pci_device *virtio_pci_device(struct virtio_pci *p);
struct virtio_dev *virtio_pci_dev(struct virtio_pci *p);
void virtio_pci_destroy(struct virtio_pci *p);

#endif
