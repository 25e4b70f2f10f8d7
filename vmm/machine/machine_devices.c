/* Device wiring: each device's window and trap, its interrupt and its device-tree entry; the
 * interrupt services lent to devices; teardown. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>

#include "devices/acpi_pm.h"
#include "devices/acpi_pm_timer.h"
#include "firmware/acpi.h"
#include "devices/bench_bell.h"
#include "devices/boot_marker.h"
#include "devices/debug_exit.h"
#include "devices/fw_cfg.h"
#include "devices/i8042.h"
#include "devices/pc_testdev.h"
#include "devices/rtc_mc146818.h"
#include "devices/uart16550.h"
#include "devices/unassigned.h"
#include "devices/virtio_mmio.h"
#include "devices/virtio_pci.h"
#include "vmm/machine/machine_parts.h"
#include "vmm/machine/snapshot_file.h"

/* Interrupts are frequent: each pin's irqfd is looked up once (under the guest's lock) and
 * then kept; several threads may race to look it up, and all get the same fd. */
static void raise_irq(struct vm_env *env, uint32_t irq) {
    struct machine *m = machine_of(env);
    if (irq >= IOAPIC_PINS) return;
    int fd = __atomic_load_n(&m->irqfds[irq], __ATOMIC_ACQUIRE);
    if (fd < 0) {
        if (bellhop_guest_irqfd(env->guest, irq, &fd) != ZX_OK) return;
        __atomic_store_n(&m->irqfds[irq], fd, __ATOMIC_RELEASE);
    }
    uint64_t one = 1;
    if (write(fd, &one, sizeof one) < 0) { /* the counter is saturated: an edge is pending anyway */
    }
}

static zx_status_t msi_create(struct vm_env *env, uint32_t *msi, int *fd) {
    return bellhop_guest_msi_create(env->guest, msi, fd);
}
static zx_status_t msi_set(struct vm_env *env, uint32_t msi, uint64_t address, uint32_t data) {
    return bellhop_guest_msi_set(env->guest, msi, address, data);
}
static zx_status_t irq_line(struct vm_env *env, uint32_t gsi, bool level) {
    return bellhop_guest_irq_line(env->guest, gsi, level);
}

static zx_status_t irq_level(struct vm_env *env, uint32_t gsi, int *fd, int *resample_fd) {
    return bellhop_guest_irqfd_level(env->guest, gsi, fd, resample_fd);
}

static int map_device_at(struct machine *m, uint32_t kind, uint64_t base, uint64_t size, uint64_t origin,
                         const struct io_ops *ops, void *dev) {
    if (!dev) return machine_fail("out of memory for device %s", ops->name);
    if (m->nmaps == MAX_MAPPINGS) return machine_fail("too many devices");
    struct io_mapping *map = &m->maps[m->nmaps];
    *map = (struct io_mapping){.read = ops->read, .write = ops->write, .dev = dev, .origin = origin, .ops = ops,
                               .base = base, .size = size, .kind = kind, .stats = &m->map_stats[m->nmaps]};
    pthread_mutex_init(&map->stats->lock, NULL);
    zx_status_t st = zx_guest_set_trap(m->guest, kind, base, size, ZX_HANDLE_INVALID, (uintptr_t)map);
    if (st != ZX_OK) return machine_fail("cannot trap %s at %#" PRIx64 ": %s", ops->name, base, zx_status_get_string(st));
    m->nmaps++;
    return 0;
}

static int map_device(struct machine *m, uint32_t kind, uint64_t base, uint64_t size,
                      const struct io_ops *ops, void *dev) {
    return map_device_at(m, kind, base, size, base, ops, dev);
}

void machine_lend_irqs(struct machine *m) {
    m->env.raise_irq = raise_irq;
    m->env.msi_create = msi_create;
    m->env.msi_set = msi_set;
    m->env.irq_level = irq_level;
    m->env.irq_line = irq_line;
}

/* A virtio-pci device (the transport places it: devices/virtio_pci.h): its BAR's register pages
 * trapped; the notify page is its own bell trap. */
static int add_virtio_pci(struct machine *m, const struct virtio_device_ops *ops, const void *params) {
    if (m->nvpci == MAX_PCI_DEVICES) return machine_fail("too many PCI devices");
    char err[200];
    struct virtio_pci *vp = virtio_pci_create(&m->env, ops, params, &m->pci, err, sizeof err);
    if (!vp) return machine_fail("%s", err);
    m->vpci[m->nvpci++] = vp;
    uint64_t bar0 = virtio_pci_bar(vp);
    if (map_device_at(m, ZX_GUEST_TRAP_MEM, bar0, VIRTIO_PCI_NOTIFY_OFFSET, bar0, &virtio_pci_ops, vp) ||
        map_device_at(m, ZX_GUEST_TRAP_MEM, bar0 + VIRTIO_PCI_NOTIFY_OFFSET + 0x1000,
                      VIRTIO_PCI_BAR_SIZE - VIRTIO_PCI_NOTIFY_OFFSET - 0x1000, bar0, &virtio_pci_ops, vp))
        return -1;
    return 0;
}

/* The virtio device `ops` made from `params` on the machine's transport (PCI for Linux,
 * virtio-mmio otherwise), placed here (an MMIO window and IOAPIC pin, described in the device
 * tree), its registers trapped here. 0, or -1 (said). */
static int add_virtio(struct machine *m, const struct virtio_device_ops *ops, const void *params) {
    if (m->virtio_pci) return add_virtio_pci(m, ops, params);
    struct fdt_machine *fdt = &m->fdt;
    if (fdt->nvirtio == FDT_MAX_VIRTIO)
        return machine_fail("%s: no virtio-mmio window left (at most %d)", ops->name, FDT_MAX_VIRTIO);
    uint64_t base = LAYOUT_VIRTIO_MMIO + (uint64_t)fdt->nvirtio * VIRTIO_MMIO_SIZE;
    uint32_t irq = LAYOUT_VIRTIO_MMIO_IRQ + fdt->nvirtio;
    char err[200];
    struct virtio_mmio *vmmio = virtio_mmio_create(&m->env, ops, params, base, irq, err, sizeof err);
    if (!vmmio) return machine_fail("%s", err);
    m->virtio[m->nvirtio++] = vmmio;
    fdt->virtio[fdt->nvirtio++] = (struct fdt_virtio_mmio){base, VIRTIO_MMIO_SIZE, irq};
    return map_device(m, ZX_GUEST_TRAP_MEM, base, VIRTIO_MMIO_SIZE, &virtio_mmio_ops, vmmio);
}

/* Every port no device claimed reads all ones (see devices/unassigned.h). */
static int map_unassigned_ports(struct machine *m) {
    struct { uint64_t lo, hi; } used[MAX_MAPPINGS + 1];
    unsigned n = 0;
    for (unsigned i = 0; i < m->nmaps; i++) {
        if (m->maps[i].kind != ZX_GUEST_TRAP_IO) continue;
        used[n].lo = m->maps[i].base;
        used[n++].hi = m->maps[i].base + m->maps[i].size;
    }
    used[n].lo = BELLHOP_VCPU_CTL_PORT;
    used[n++].hi = BELLHOP_VCPU_CTL_PORT + BELLHOP_VCPU_CTL_SIZE;
    for (unsigned i = 1; i < n; i++) /* insertion sort: a handful of ranges */
        for (unsigned j = i; j > 0 && used[j].lo < used[j - 1].lo; j--) {
            __typeof__(used[0]) t = used[j];
            used[j] = used[j - 1];
            used[j - 1] = t;
        }
    uint64_t at = 0;
    for (unsigned i = 0; i <= n; i++) {
        uint64_t end = i < n ? used[i].lo : 0xffff; /* port 0xffff cannot be trapped */
        if (end > at && map_device(m, ZX_GUEST_TRAP_IO, at, end - at, &unassigned_ops, m))
            return -1;
        if (i < n && used[i].hi > at) at = used[i].hi;
    }
    return 0;
}

/* What multiboot kernels (kvm-unit-tests) expect of a PC beyond bellhop's own: QEMU's fw_cfg,
 * where they read their RAM size and CPU count, the ACPI PM timer and QEMU's pc-testdev. A
 * multiboot kernel's machine has them, and a restored machine when its snapshot has fw_cfg, so
 * that every other machine's devices, and the snapshots they take and restore, are as before. */
static bool multiboot_platform(const struct machine *m) {
    const struct machine_config *cfg = m->cfg;
    if (!cfg->restore) return m->loaded.multiboot;
    const struct snapshot *s = cfg->restore->state;
    for (unsigned i = 0; i < s->ndevices; i++)
        if (strcmp(s->devices[i].name, fw_cfg_ops.name) == 0) return true;
    return false;
}

/* QEMU's pc-testdev, which kvm-unit-tests drives: its ports and its MMIO window (in the hole
 * below 4 GiB, clear of the IOAPIC, the LAPIC and KVM's TSS pages above it). */
static int add_pc_testdev(struct machine *m) {
    if (!(m->testdev = pc_testdev_create(&m->env))) return machine_fail("out of memory");
    if (map_device(m, ZX_GUEST_TRAP_IO, PC_TESTDEV_PORT, PC_TESTDEV_PORTS, &pc_testdev_port_ops, m->testdev) ||
        map_device(m, ZX_GUEST_TRAP_IO, PC_TESTDEV_IRQ_PORT, PC_TESTDEV_IRQ_LINES, &pc_testdev_irq_ops, m->testdev))
        return -1;
    return map_device(m, ZX_GUEST_TRAP_MEM, PC_TESTDEV_IOMEM, PC_TESTDEV_IOMEM_SIZE, &pc_testdev_iomem_ops,
                      m->testdev);
}

/* The multiboot platform's devices, fw_cfg first: it is the last of the stateful devices, so
 * that the others keep their places in a snapshot. */
static int add_multiboot_platform(struct machine *m) {
    const struct fw_cfg_params p = {.ram_size = m->cfg->mem, .cpus = (uint16_t)m->cfg->cpus,
                                    .max_cpus = (uint16_t)m->cfg->cpus};
    if (!(m->fw_cfg = fw_cfg_create(&p)) || !(m->pm_timer = acpi_pm_timer_create()))
        return machine_fail("out of memory");
    if (map_device(m, ZX_GUEST_TRAP_IO, FW_CFG_PORT, FW_CFG_PORTS, &fw_cfg_ops, m->fw_cfg) ||
        map_device(m, ZX_GUEST_TRAP_IO, ACPI_PM_TIMER_PORT, 4, &acpi_pm_timer_ops, m->pm_timer))
        return -1;
    return add_pc_testdev(m);
}

int machine_devices_setup(struct machine *m) {
    const struct machine_config *cfg = m->cfg;
    bool serial = cfg->console == CONSOLE_SERIAL;
    m->uart = uart16550_create(&m->env, UART_COM1_IRQ, serial ? STDIN_FILENO : -1, STDOUT_FILENO);
    if (map_device(m, ZX_GUEST_TRAP_IO, UART_COM1_PORT, 8, &uart16550_ops, m->uart)) return -1;
    m->exit_dev = debug_exit_create(&m->env, &(struct debug_exit_params){.qemu = cfg->exit_qemu});
    if (map_device(m, ZX_GUEST_TRAP_IO, DEBUG_EXIT_PORT, cfg->exit_qemu ? DEBUG_EXIT_QEMU_PORTS : DEBUG_EXIT_PORTS,
                   &debug_exit_ops, m->exit_dev))
        return -1;
    if (m->virtio_pci && map_device(m, ZX_GUEST_TRAP_IO, PCI_CONF1_PORT, 8, &pci_conf1_ops, &m->pci)) return -1;
    /* Between RAM's highest end and the device windows: unassigned MMIO, as on a PC. */
    if (map_device(m, ZX_GUEST_TRAP_MEM, UNASSIGNED_MMIO_BASE, UNASSIGNED_MMIO_SIZE, &unassigned_ops, m)) return -1;
    m->rtc = rtc_mc146818_create();
    if (map_device(m, ZX_GUEST_TRAP_IO, RTC_PORT, 2, &rtc_mc146818_ops, m->rtc)) return -1;
    m->i8042 = i8042_create(&m->env);
    if (map_device(m, ZX_GUEST_TRAP_IO, I8042_DATA_PORT, 5, &i8042_ops, m->i8042)) return -1;
    m->pm = acpi_pm_create(&m->env);
    if (map_device(m, ZX_GUEST_TRAP_IO, ACPI_PM_PORT, 3, &acpi_pm_ops, m->pm)) return -1;
    m->marker = boot_marker_create(m->guest, cfg->start_ns, cfg->boot_markers);
    boot_marker_set_timeline(m->marker, m->env.timeline);
    if (map_device(m, ZX_GUEST_TRAP_IO, BOOT_MARKER_PORT, 4, &boot_marker_ops, m->marker)) return -1;
    if (cfg->bench_bell) {
        char err[160];
        if (!(m->bench_bell = bench_bell_create(&m->env, err, sizeof err))) return machine_fail("%s", err);
    }
    for (unsigned i = 0; i < cfg->ndevices; i++)
        if (add_virtio(m, cfg->devices[i].ops, cfg->devices[i].params)) return -1;
    if (multiboot_platform(m) && add_multiboot_platform(m) != 0) return -1;
    return map_unassigned_ports(m);
}

struct virtio_dev *machine_device(struct machine *m, unsigned i) {
    /* one transport for all, each device placed in list order */
    if (m->virtio_pci) return i < m->nvpci ? virtio_pci_dev(m->vpci[i]) : NULL;
    return i < m->nvirtio ? virtio_mmio_dev(m->virtio[i]) : NULL;
}

void machine_quiesce_devices(struct machine *m) {
    struct virtio_dev *vd;
    for (unsigned i = 0; (vd = machine_device(m, i)); i++)
        if (vd->ops->quiesce) vd->ops->quiesce(vd);
}

void machine_ctrl_alt_del(struct machine *m) { i8042_ctrl_alt_del(m->i8042); }

void machine_devices_destroy(struct machine *m) {
    uart16550_destroy(m->uart);
    for (unsigned i = 0; i < m->nvirtio; i++) virtio_mmio_destroy(m->virtio[i]);
    for (unsigned i = 0; i < m->nvpci; i++) virtio_pci_destroy(m->vpci[i]);
    pci_bus_destroy(&m->pci);
    debug_exit_destroy(m->exit_dev);
    rtc_mc146818_destroy(m->rtc);
    i8042_destroy(m->i8042);
    boot_marker_destroy(m->marker);
    acpi_pm_destroy(m->pm);
    bench_bell_destroy(m->bench_bell);
    fw_cfg_destroy(m->fw_cfg);
    acpi_pm_timer_destroy(m->pm_timer);
    pc_testdev_destroy(m->testdev);
}
