/* Configuration mechanism #1 sequences on a PCI bus with a device that has a 64-bit BAR and
 * capabilities: any address, offset, size and value. */
#include "devices/pci.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct pci_bus bus;
    pci_bus_init(&bus);
    static struct pci_device dev;
    pci_device_init(&dev, 0x1af4, 0x1041, 0x020000, 1, 0x1af4, 0x41);
    pci_set_bar64(&dev, 0, 0xe0000000, 0x8000);
    uint8_t cap[12] = {PCI_CAP_MSIX}, wmask[12] = {[3] = 0xc0};
    pci_add_capability(&dev, cap, sizeof cap, wmask);
    pci_bus_add(&bus, &dev);
    struct cursor c = {data, size};
    for (unsigned steps = 0; c.n >= 6 && steps < 512; steps++) {
        uint8_t op = (uint8_t)take(&c, 1);
        uint8_t off = op & 7, sz = (uint8_t)(1u << ((op >> 3) & 3));
        uint32_t value = (uint32_t)take(&c, 4);
        if (op & 0x80) (void)pci_conf1_ops.read(&bus, off, sz);
        else pci_conf1_ops.write(&bus, off, sz, value);
    }
    /* the BAR never moves */
    uint32_t lo;
    memcpy(&lo, dev.config + 0x10, 4);
    if ((lo & ~0xfu) != 0xe0000000u && (lo & ~0xfu) != (uint32_t)~(0x8000u - 1) && (lo & 0xfffffff0u) != 0xffff8000u) {
        /* only the sizing pattern or the VMM's address may stand */
        uint32_t mask;
        memcpy(&mask, dev.wmask + 0x10, 4);
        if ((lo & mask) != mask) __builtin_trap();
    }
    pci_bus_destroy(&bus);
    return 0;
}
