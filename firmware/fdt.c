/* Device tree construction with libfdt's sequential-write API. */
#include <libfdt.h>
#include <stdio.h>

#include "base/guest_mem.h"
#include "firmware/fdt.h"

#define IOAPIC_PHANDLE 1
#define IRQ_TYPE_EDGE_RISING 1

#define TRY(x)                                                                               \
    do {                                                                                     \
        int r_ = (x);                                                                        \
        if (r_ < 0) return r_;                                                               \
    } while (0)

static int prop_reg64(void *fdt, uint64_t addr, uint64_t size) {
    fdt64_t reg[2] = {cpu_to_fdt64(addr), cpu_to_fdt64(size)};
    return fdt_property(fdt, "reg", reg, sizeof reg);
}

/* RAM's parts as guest memory lays them out (base/guest_mem.h): one pair, or two with the
 * part above 4 GiB. */
static int prop_memory_reg(void *fdt, uint64_t ram_size) {
    struct gm_range r[2];
    unsigned n = gm_ranges(&(struct guest_mem){.size = ram_size}, r);
    fdt64_t reg[4];
    for (unsigned i = 0; i < n; i++) reg[2 * i] = cpu_to_fdt64(r[i].gpa), reg[2 * i + 1] = cpu_to_fdt64(r[i].size);
    return fdt_property(fdt, "reg", reg, (int)(n * 2 * sizeof reg[0]));
}

static int prop_irq(void *fdt, uint32_t pin) {
    fdt32_t irq[2] = {cpu_to_fdt32(pin), cpu_to_fdt32(IRQ_TYPE_EDGE_RISING)};
    return fdt_property(fdt, "interrupts", irq, sizeof irq);
}

static int build(const struct fdt_machine *m, void *fdt, size_t size) {
    char name[64];
    TRY(fdt_create(fdt, (int)size));
    TRY(fdt_finish_reservemap(fdt));
    TRY(fdt_begin_node(fdt, ""));
    TRY(fdt_property_cell(fdt, "#address-cells", 2));
    TRY(fdt_property_cell(fdt, "#size-cells", 2));
    TRY(fdt_property_string(fdt, "compatible", "bellhop,pvh"));
    TRY(fdt_property_string(fdt, "model", "bellhop"));
    TRY(fdt_property_cell(fdt, "interrupt-parent", IOAPIC_PHANDLE));

    TRY(fdt_begin_node(fdt, "chosen"));
    TRY(fdt_property_string(fdt, "bootargs", m->cmdline));
    snprintf(name, sizeof name, "/isa/serial@i%x", m->uart_port);
    TRY(fdt_property_string(fdt, "stdout-path", name));
    TRY(fdt_end_node(fdt));

    TRY(fdt_begin_node(fdt, "cpus"));
    TRY(fdt_property_cell(fdt, "#address-cells", 1));
    TRY(fdt_property_cell(fdt, "#size-cells", 0));
    for (unsigned i = 0; i < m->ncpus; i++) {
        snprintf(name, sizeof name, "cpu@%x", i);
        TRY(fdt_begin_node(fdt, name));
        TRY(fdt_property_string(fdt, "device_type", "cpu"));
        TRY(fdt_property_cell(fdt, "reg", i));
        TRY(fdt_end_node(fdt));
    }
    TRY(fdt_end_node(fdt));

    TRY(fdt_begin_node(fdt, "memory@0"));
    TRY(fdt_property_string(fdt, "device_type", "memory"));
    TRY(prop_memory_reg(fdt, m->ram_size));
    TRY(fdt_end_node(fdt));

    snprintf(name, sizeof name, "ioapic@%x", FDT_IOAPIC_BASE);
    TRY(fdt_begin_node(fdt, name));
    TRY(fdt_property_string(fdt, "compatible", "intel,ce4100-ioapic"));
    TRY(prop_reg64(fdt, FDT_IOAPIC_BASE, 0x1000));
    TRY(fdt_property(fdt, "interrupt-controller", NULL, 0));
    TRY(fdt_property_cell(fdt, "#interrupt-cells", 2));
    TRY(fdt_property_cell(fdt, "phandle", IOAPIC_PHANDLE));
    TRY(fdt_end_node(fdt));

    /* IO ports live on an ISA bus node: first address cell 1 = IO space. */
    TRY(fdt_begin_node(fdt, "isa"));
    TRY(fdt_property_string(fdt, "compatible", "isa"));
    TRY(fdt_property_cell(fdt, "#address-cells", 2));
    TRY(fdt_property_cell(fdt, "#size-cells", 1));
    TRY(fdt_property(fdt, "ranges", NULL, 0));
    snprintf(name, sizeof name, "serial@i%x", m->uart_port);
    TRY(fdt_begin_node(fdt, name));
    TRY(fdt_property_string(fdt, "compatible", "ns16550a"));
    fdt32_t reg[3] = {cpu_to_fdt32(1), cpu_to_fdt32(m->uart_port), cpu_to_fdt32(8)};
    TRY(fdt_property(fdt, "reg", reg, sizeof reg));
    TRY(fdt_property_cell(fdt, "clock-frequency", 1843200));
    TRY(prop_irq(fdt, m->uart_irq));
    TRY(fdt_end_node(fdt));
    TRY(fdt_end_node(fdt));

    for (unsigned i = 0; i < m->nvirtio; i++) {
        const struct fdt_virtio_mmio *v = &m->virtio[i];
        snprintf(name, sizeof name, "virtio_mmio@%llx", (unsigned long long)v->base);
        TRY(fdt_begin_node(fdt, name));
        TRY(fdt_property_string(fdt, "compatible", "virtio,mmio"));
        TRY(prop_reg64(fdt, v->base, v->size));
        TRY(prop_irq(fdt, v->irq));
        TRY(fdt_property(fdt, "dma-coherent", NULL, 0));
        TRY(fdt_end_node(fdt));
    }
    TRY(fdt_end_node(fdt));
    TRY(fdt_finish(fdt));
    return (int)fdt_totalsize(fdt);
}

int fdt_build(const struct fdt_machine *m, void *buf, size_t size) {
    /* libfdt zeroes all the room it is given, here guest RAM: a first try in the few pages a
     * tree takes (about 2 KiB with eight virtio devices and a long command line) faults in
     * two pages at a launch rather than all of buf's. */
    enum { FIRST_TRY = 8192 };
    if (size > FIRST_TRY) {
        int r = build(m, buf, FIRST_TRY);
        if (r != -FDT_ERR_NOSPACE) return r;
    }
    return build(m, buf, size);
}

void fdt_microvm_layout(struct fdt_machine *m, uint64_t ram_size, const char *cmdline) {
    *m = (struct fdt_machine){.ram_size = ram_size, .ncpus = 1, .cmdline = cmdline, .uart_port = 0x3f8,
                              .uart_irq = 4, .nvirtio = 8};
    for (unsigned i = 0; i < 8; i++) m->virtio[i] = (struct fdt_virtio_mmio){0xfeb00000u + 512u * i, 512, 5 + i};
}
