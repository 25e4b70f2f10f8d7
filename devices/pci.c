#include <string.h>

#include "devices/pci.h"

#define CFG_ENABLE (1u << 31)
#define REG_COMMAND 0x04
#define REG_STATUS 0x06
#define REG_BAR0 0x10
#define REG_CAP_PTR 0x34
#define STATUS_CAP_LIST 0x10
#define CMD_WRITABLE 0x0407 /* IO space, memory space, bus master, INTx disable */

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

void pci_device_init(struct pci_device *pd, uint16_t vendor, uint16_t device, uint32_t class_code,
                     uint8_t revision, uint16_t subsystem_vendor, uint16_t subsystem) {
    memset(pd, 0, sizeof *pd);
    put16(pd->config + 0x00, vendor);
    put16(pd->config + 0x02, device);
    pd->config[0x08] = revision;
    pd->config[0x09] = (uint8_t)class_code;
    pd->config[0x0a] = (uint8_t)(class_code >> 8);
    pd->config[0x0b] = (uint8_t)(class_code >> 16);
    put16(pd->config + 0x2c, subsystem_vendor);
    put16(pd->config + 0x2e, subsystem);
    put16(pd->wmask + REG_COMMAND, CMD_WRITABLE);
    pd->config[0x3c] = 0xff; /* interrupt line: unassigned */
    pd->wmask[0x3c] = 0xff;
    pd->next_cap = 0x40;
    pd->last_cap_next = pd->config + REG_CAP_PTR;
}

void pci_set_bar64(struct pci_device *pd, unsigned bar, uint64_t addr, uint64_t size) {
    pd->bar_addr[bar] = addr;
    pd->bar_size[bar] = size;
    uint32_t lo = (uint32_t)addr | 0x4 /* 64-bit */, hi = (uint32_t)(addr >> 32);
    put32(pd->config + REG_BAR0 + 4 * bar, lo);
    put32(pd->config + REG_BAR0 + 4 * bar + 4, hi);
    uint64_t mask = ~(size - 1);
    put32(pd->wmask + REG_BAR0 + 4 * bar, (uint32_t)mask & ~0xfu);
    put32(pd->wmask + REG_BAR0 + 4 * bar + 4, (uint32_t)(mask >> 32));
}

uint8_t pci_add_capability(struct pci_device *pd, const uint8_t *cap, uint8_t len, const uint8_t *writable_mask) {
    uint8_t at = pd->next_cap;
    if (at + len > 256) return 0;
    memcpy(pd->config + at, cap, len);
    pd->config[at + 1] = 0;
    if (writable_mask) memcpy(pd->wmask + at, writable_mask, len);
    pd->wmask[at] = pd->wmask[at + 1] = 0;
    *pd->last_cap_next = at;
    pd->last_cap_next = pd->config + at + 1;
    pd->config[REG_STATUS] |= STATUS_CAP_LIST;
    pd->next_cap = (uint8_t)((at + len + 3) & ~3);
    return at;
}

/* A write of a BAR that is not the sizing pattern puts the BAR back where the VMM put it. */
static void keep_bars(struct pci_device *pd) {
    for (unsigned bar = 0; bar < 6; bar++) {
        if (!pd->bar_size[bar]) continue;
        uint32_t lo, hi, mlo, mhi;
        memcpy(&lo, pd->config + REG_BAR0 + 4 * bar, 4);
        memcpy(&hi, pd->config + REG_BAR0 + 4 * bar + 4, 4);
        memcpy(&mlo, pd->wmask + REG_BAR0 + 4 * bar, 4);
        memcpy(&mhi, pd->wmask + REG_BAR0 + 4 * bar + 4, 4);
        bool sizing_lo = (lo & mlo) == mlo, sizing_hi = hi == mhi;
        uint64_t addr = pd->bar_addr[bar];
        if (!sizing_lo) put32(pd->config + REG_BAR0 + 4 * bar, (uint32_t)addr | 0x4);
        if (!sizing_hi) put32(pd->config + REG_BAR0 + 4 * bar + 4, (uint32_t)(addr >> 32));
    }
}

static void config_write(struct pci_device *pd, uint32_t off, uint8_t size, uint32_t value) {
    for (unsigned i = 0; i < size && off + i < 256; i++) {
        uint8_t m = pd->wmask[off + i], v = (uint8_t)(value >> (8 * i));
        pd->config[off + i] = (uint8_t)((pd->config[off + i] & ~m) | (v & m));
    }
    if (off < REG_BAR0 + 24 && off + size > REG_BAR0) keep_bars(pd);
    if (pd->config_written) pd->config_written(pd, off, size);
}

static struct pci_device *selected(struct pci_bus *bus, uint32_t *reg) {
    uint32_t a = bus->address;
    if (!(a & CFG_ENABLE) || ((a >> 16) & 0xff) != 0 || ((a >> 8) & 7) != 0) return NULL;
    *reg = a & 0xfc;
    unsigned slot = (a >> 11) & 0x1f;
    return slot == 0 ? &bus->host : bus->slots[slot];
}

/* The window is 0xCF8..0xCFF: offset 0 is CONFIG_ADDRESS, 4..7 is CONFIG_DATA. */
static uint64_t conf1_read(void *dev, uint64_t off, uint8_t size) {
    struct pci_bus *bus = dev;
    uint64_t v = size >= 8 ? ~0ull : (1ull << (8 * size)) - 1;
    if (size > 4 || off + size > 8) return v;
    pthread_mutex_lock(&bus->lock);
    if (off == 0 && size == 4) {
        v = bus->address;
    } else if (off >= 4) {
        uint32_t reg;
        struct pci_device *pd = selected(bus, &reg);
        uint32_t at = reg + (uint32_t)(off - 4);
        if (pd && at + size <= 256) {
            v = 0;
            memcpy(&v, pd->config + at, size);
        }
    }
    pthread_mutex_unlock(&bus->lock);
    return v;
}

static void conf1_write(void *dev, uint64_t off, uint8_t size, uint64_t value) {
    struct pci_bus *bus = dev;
    if (size > 4 || off + size > 8) return; /* port IO is at most 4 bytes, inside the window */
    pthread_mutex_lock(&bus->lock);
    if (off == 0 && size == 4) {
        bus->address = (uint32_t)value;
    } else if (off >= 4) {
        uint32_t reg;
        struct pci_device *pd = selected(bus, &reg);
        if (pd) config_write(pd, reg + (uint32_t)(off - 4), size, (uint32_t)value);
    }
    pthread_mutex_unlock(&bus->lock);
}

const struct io_ops pci_conf1_ops = {.name = "pci-conf1", .read = conf1_read, .write = conf1_write};

void pci_bus_init(struct pci_bus *bus) {
    memset(bus, 0, sizeof *bus);
    pthread_mutex_init(&bus->lock, NULL);
    /* A generic host bridge (Red Hat's PCIe host bridge ids: no chipset quirks apply). */
    pci_device_init(&bus->host, 0x1b36, 0x0008, 0x060000, 0, 0x1af4, 0x1100);
}

void pci_bus_destroy(struct pci_bus *bus) { pthread_mutex_destroy(&bus->lock); }

static int free_slot_locked(const struct pci_bus *bus) {
    for (int i = 1; i < PCI_SLOTS; i++)
        if (!bus->slots[i]) return i;
    return -1;
}

int pci_bus_next_slot(struct pci_bus *bus) {
    pthread_mutex_lock(&bus->lock);
    int slot = free_slot_locked(bus);
    pthread_mutex_unlock(&bus->lock);
    return slot;
}

int pci_bus_add(struct pci_bus *bus, struct pci_device *pd) {
    pthread_mutex_lock(&bus->lock);
    int slot = free_slot_locked(bus);
    if (slot > 0) bus->slots[slot] = pd;
    pthread_mutex_unlock(&bus->lock);
    return slot;
}
