/* The kernel and initrd into guest memory, the boot data beside them (device tree, ACPI, PVH
 * start_info or the Linux zero page) and the boot vCPU's registers. */
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>

#include "devices/uart16550.h"
#include "firmware/acpi.h"
#include "vmm/file_map.h"
#include "firmware/vmgenid.h"
#include "vmm/machine_parts.h"

/* A kernel or initrd, mapped read-only (vmm/file_map.h): the loaders copy from the page cache
 * straight into guest memory (reading it into a buffer first would copy and zero-fill it once
 * more). */
static int map_file(const char *what, const char *path, size_t max, struct file_map *f) {
    char err[160];
    if (file_map_open(path, max, "guest memory", f, err, sizeof err) != 0) return machine_fail("%s %s: %s", what, path, err);
#ifdef BELLHOP_TEST_HOOKS
    /* Test hook (bellhop_run's bad input, on build/bellhop-hooks only: it destroys the
     * file): the file shrinks under its mapping, as when another process truncates it. */
    const char *probe = getenv("BELLHOP_LOAD_PROBE");
    if (probe && strcmp(probe, what) == 0 && truncate(path, 0) != 0) { /* the test sees no error */
    }
#endif
    return 0;
}

/* load(m, f, arg) under file_map_guarded. When the file (`what` at `path`) shrank under it,
 * says so and returns FILE_MAP_SHRANK. */
struct guarded_load {
    struct machine *m;
    int (*load)(struct machine *m, const struct file_map *f, void *arg);
    void *arg;
};

static int run_guarded_load(const struct file_map *f, void *arg) {
    struct guarded_load *g = arg;
    return g->load(g->m, f, g->arg);
}

static int copy_guarded(struct machine *m, const char *what, const char *path, const struct file_map *f,
                        int (*load)(struct machine *m, const struct file_map *f, void *arg), void *arg) {
    struct guarded_load g = {m, load, arg};
    int r = file_map_guarded(f, run_guarded_load, &g);
    if (r == FILE_MAP_SHRANK) machine_fail("%s %s: the file shrank while it was being loaded", what, path);
    return r;
}

struct load_error {
    char text[400];
};

/* A kernel whose code lies where a PVM host keeps its own (vmm/kvm_host.h) would run only
 * through KVM's emulator, slowly, until an instruction it lacks stops it: refused before it
 * runs, unless the user insists. */
static bool refused_on_pvm(const struct machine *m, uint64_t lo, uint64_t hi, struct load_error *e) {
    if (m->host != KVM_HOST_PVM || m->cfg->pvm_anyway || kvm_host_pvm_can_run(lo, hi)) return false;
    snprintf(e->text, sizeof e->text,
             "linked at %#" PRIx64 ", in the top 2 GiB that a PVM host keeps for itself: this host's KVM is PVM, "
             "which runs only kernels built for it (CONFIG_PVM_GUEST); run it in the nested KVM host "
             "(BELLHOP_RUN_WHERE=nested scripts/run.sh build/bellhop run ...), or try it here with --pvm-anyway",
             lo > KVM_HOST_PVM_RESERVED ? lo : (uint64_t)KVM_HOST_PVM_RESERVED); /* where it enters that range */
    return true;
}

static int load_kernel_image(struct machine *m, const struct file_map *kernel, void *arg) {
    struct load_error *e = arg;
    if (!bzimage_detect(kernel->data, kernel->len)) {
        int r = pvh_load_elf(kernel->data, kernel->len, &m->env.mem, LAYOUT_KERNEL_MIN, &m->kernel, e->text,
                             sizeof e->text);
        return r == 0 && refused_on_pvm(m, m->kernel.vaddr_lo, m->kernel.vaddr_hi, e) ? -1 : r;
    }
    /* The 64-bit boot protocol's kernel is x86-64 Linux, linked in the top 2 GiB
     * (__START_KERNEL_map): no need to unpack it to know. */
    if (refused_on_pvm(m, KVM_HOST_PVM_RESERVED, UINT64_MAX, e)) return -1;
    m->bzimage = true;
    uint64_t t0 = stats_now_ns();
    int r = bzimage_load(kernel->data, kernel->len, &m->env.mem, LAYOUT_KERNEL_MIN, !m->cfg->guest_decompress,
                         bzimage_kaslr_random(m->cfg->cmdline), &m->bz, e->text, sizeof e->text);
    m->kernel = (struct pvh_kernel){.entry = m->bz.entry, .end = m->bz.end, .is_linux = true};
    const struct bzimage_unpacked *u = &m->bz.unpacked;
    if (r == 0 && u->format && m->cfg->boot_markers) {
        uint64_t t1 = stats_now_ns();
        char where[40] = "not randomized";
        if (u->kaslr) snprintf(where, sizeof where, "KASLR %+" PRId64 " MiB", (int64_t)(u->virt_offset >> 20));
        fprintf(stderr, "bellhop: kernel unpacked (%s, %" PRIu64 " KiB, %s) in %" PRIu64 ".%03" PRIu64 " ms\n",
                u->format, u->size >> 10, where, (t1 - t0) / 1000000, (t1 - t0) / 1000 % 1000);
    }
    return r;
}

int machine_load_kernel(struct machine *m) {
    const struct machine_config *cfg = m->cfg;
    struct file_map kernel;
    if (map_file("kernel", cfg->kernel, cfg->mem, &kernel) != 0) return -1;
    struct load_error e;
    int r = copy_guarded(m, "kernel", cfg->kernel, &kernel, load_kernel_image, &e);
    file_map_close(&kernel);
    if (r == FILE_MAP_SHRANK) return -1;
    if (r != 0) return machine_fail("kernel %s: %s", cfg->kernel, e.text);
    m->cpus[0].entry = m->kernel.entry;
    /* Linux finds virtio devices on PCI and starts its other CPUs itself. */
    m->linux_smp = m->kernel.is_linux;
    m->virtio_pci = m->kernel.is_linux;
    return 0;
}

static int copy_initrd(struct machine *m, const struct file_map *initrd, void *at) {
    gm_write(&m->env.mem, *(const uint64_t *)at, initrd->data, initrd->len);
    return 0;
}

int machine_boot_setup(struct machine *m) {
    const struct machine_config *cfg = m->cfg;
    struct pvh_kernel k = m->kernel;
    uint64_t kend = k.end;

    struct pvh_module mods[2];
    unsigned nmods = 0;
    struct fdt_machine *fm = &m->fdt;
    fm->ram_size = cfg->mem;
    fm->ncpus = cfg->cpus;
    fm->cmdline = cfg->cmdline;
    fm->uart_port = UART_COM1_PORT;
    fm->uart_irq = UART_COM1_IRQ;
    int dtb_size = fdt_build(fm, gm_ptr(&m->env.mem, LAYOUT_DTB, LAYOUT_DTB_SIZE), LAYOUT_DTB_SIZE);
    if (dtb_size < 0) return machine_fail("device tree: %d", dtb_size);
    /* Linux takes module 0 as its initrd (and x86 Linux reads no device tree); other PVH
     * kernels get the device tree first. */
    if (!k.is_linux) mods[nmods++] = (struct pvh_module){LAYOUT_DTB, (uint64_t)dtb_size};
    if (cfg->initrd) {
        struct file_map initrd;
        if (map_file("initrd", cfg->initrd, cfg->mem, &initrd) != 0) return -1;
        size_t ilen = initrd.len;
        uint64_t top = cfg->mem;
        if (m->bzimage && top > (uint64_t)m->bz.initrd_addr_max + 1) top = (uint64_t)m->bz.initrd_addr_max + 1;
        uint64_t at = (top - ilen) & ~0xfffull;
        if (ilen > top || at < kend) {
            file_map_close(&initrd);
            return machine_fail("initrd %s: does not fit in guest memory above the kernel", cfg->initrd);
        }
        int r = copy_guarded(m, "initrd", cfg->initrd, &initrd, copy_initrd, &at);
        file_map_close(&initrd);
        if (r != 0) return -1;
        mods[nmods++] = (struct pvh_module){at, ilen};
    }
    uint64_t rsdp = acpi_build(&m->env.mem, cfg->cpus, FDT_IOAPIC_BASE);
    reset_vector_stub(&m->env.mem);
    if (!vmgenid_renew(&m->env.mem)) return machine_fail("cannot make the VM generation ID (no randomness?)");
    if (!rsdp) return machine_fail("cannot build the ACPI tables");
    if (m->bzimage) {
        uint64_t initrd = nmods ? mods[nmods - 1].paddr : 0, initrd_size = nmods ? mods[nmods - 1].size : 0;
        if (bzimage_write_boot_params(&m->env.mem, &m->bz, cfg->cmdline, initrd, initrd_size, rsdp) != 0)
            return machine_fail("command line too long for this kernel");
    } else if (pvh_write_start_info(&m->env.mem, LAYOUT_START_INFO, cfg->cmdline, mods, nmods, rsdp) != 0) {
        return machine_fail("command line too long (at most 4095 bytes)");
    }
    return 0;
}


zx_status_t machine_boot_registers(struct machine *m, zx_handle_t vcpu) {
    zx_vcpu_state_t r;
    zx_status_t st = zx_vcpu_read_state(vcpu, ZX_VCPU_STATE, &r, sizeof r);
    if (st != ZX_OK) return st;
    if (m->bzimage) {
        r.rsi = BOOT_ZERO_PAGE_ADDR;
        st = bellhop_vcpu_set_long_mode(vcpu, BOOT_PML4_ADDR, BOOT_GDT_ADDR, 4 * 8 - 1);
        if (st != ZX_OK) return st;
    } else {
        r.rbx = LAYOUT_START_INFO;
    }
    return zx_vcpu_write_state(vcpu, ZX_VCPU_STATE, &r, sizeof r);
}
