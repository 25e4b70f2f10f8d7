/* A PCI bus 0 behind configuration mechanism #1 (ports 0xCF8-0xCFF): a host bridge in slot
 * 0 and up to 31 devices, each a type-0 configuration space with 64-bit memory BARs and a
 * capability list. BARs are placed by the VMM and stay there: a guest may size them (write
 * all ones, read the mask) but a write of another address is undone. */
#ifndef BELLHOP_DEVICES_PCI_H
#define BELLHOP_DEVICES_PCI_H

#include <pthread.h>

#include "devices/device.h"

#define PCI_CONF1_PORT 0xcf8
#define PCI_SLOTS 32
#define PCI_CAP_MSIX 0x11
#define PCI_CAP_VENDOR 0x09

struct pci_device {
    uint8_t config[256];
    uint8_t wmask[256]; /* writable bits of each byte */
    uint64_t bar_addr[6], bar_size[6];
    uint8_t next_cap;   /* where the next capability goes */
    uint8_t *last_cap_next;
    /* Called after a guest write to configuration space (bus lock held). May be NULL. */
    void (*config_written)(struct pci_device *pd, uint32_t off, uint32_t size);
    void *owner;
};

struct pci_bus {
    pthread_mutex_t lock;
    uint32_t address; /* CONFIG_ADDRESS */
    struct pci_device host;
    struct pci_device *slots[PCI_SLOTS];
};

extern const struct io_ops pci_conf1_ops;

void pci_bus_init(struct pci_bus *bus);
void pci_bus_destroy(struct pci_bus *bus);
/* Puts pd in the next free slot; returns the slot or -1. */
int pci_bus_add(struct pci_bus *bus, struct pci_device *pd);
/* The slot pci_bus_add would give next; -1 when the bus is full. */
int pci_bus_next_slot(struct pci_bus *bus);

void pci_device_init(struct pci_device *pd, uint16_t vendor, uint16_t device, uint32_t class_code,
                     uint8_t revision, uint16_t subsystem_vendor, uint16_t subsystem);
void pci_set_bar64(struct pci_device *pd, unsigned bar, uint64_t addr, uint64_t size);
/* Appends a capability (cap[0] is its id; cap[1], the next pointer, is filled in); the
 * bytes in writable_mask (same length, may be NULL) are guest-writable. Returns its offset. */
uint8_t pci_add_capability(struct pci_device *pd, const uint8_t *cap, uint8_t len, const uint8_t *writable_mask);

#endif
