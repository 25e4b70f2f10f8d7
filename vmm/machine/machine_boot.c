/* The kernel and initrd into guest memory, the boot data beside them (device tree, ACPI, PVH
 * start_info, the Linux zero page or multiboot's information) and the boot vCPU's registers. */
#include <stdbool.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>

#include "devices/uart16550.h"
#include "firmware/acpi.h"
#include "vmm/machine/file_map.h"
#include "vmm/machine/kernel_load.h"
#include "firmware/vmgenid.h"
#include "devices/acpi_pm_timer.h"
#include "vmm/machine/machine_parts.h"

_Static_assert(MACHINE_MAX_MODULES == MULTIBOOT_MAX_MODULES, "--module's bound is multiboot's");

/* A kernel or initrd, mapped read-only (vmm/machine/file_map.h): the loaders read it from the page
 * cache, and guest RAM takes its pages copy-on-write where it can (gm_write_file): then the
 * file is held under a read lease (vmm/machine/image_lease.h) and f->fd is -1, *shared its fd;
 * otherwise *shared is -1 and the loaders copy. */
static int map_file(struct machine *m, const char *what, const char *path, size_t max, struct file_map *f,
                    int *shared) {
    char err[160];
    *shared = -1;
    if (file_map_open(path, max, "guest memory", f, err, sizeof err) != 0) return machine_fail("%s %s: %s", what, path, err);
#ifdef BELLHOP_TEST_HOOKS
    /* Test hook (bellhop_run's bad input, on build/bellhop-hooks only: it destroys the
     * file): the file shrinks under its mapping, as when another process truncates it. */
    const char *probe = getenv("BELLHOP_LOAD_PROBE");
    if (probe && strcmp(probe, what) == 0 && truncate(path, 0) != 0) { /* the test sees no error */
    }
#endif
    if (!m->env.mem.files || (*shared = image_lease_take(&m->leases, f->fd)) < 0) return 0;
    f->fd = -1;
    /* Leased, it can no longer change under us; it may have before. */
    struct stat st;
    if (fstat(*shared, &st) != 0 || (uint64_t)st.st_size < f->len) {
        file_map_close(f);
        return machine_fail("%s %s: the file shrank while it was being loaded", what, path);
    }
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

struct kernel_file {
    struct kernel_load_opts opts;
    char text[KERNEL_LOAD_ERR_MAX]; /* why it was refused */
};

/* How the kernel cache served a bzImage: nothing when it was not used. */
static void cache_note(const struct bzimage_unpacked *u, char *note, size_t n) {
    note[0] = 0;
    if (u->cache == BZIMAGE_CACHE_FILLING)
        snprintf(note, n, "; the kernel cache is filled in the background");
    else if (u->cache == BZIMAGE_CACHE_HIT)
        snprintf(note, n, " from the cache, slot %u (keying %.1f, mapping %.1f)", u->slot, (double)u->hash_ns / 1e6,
                 (double)u->map_ns / 1e6);
}

static int load_kernel_image(struct machine *m, const struct file_map *kernel, void *arg) {
    struct kernel_file *e = arg;
    uint64_t t0 = zx_clock_get_monotonic();
    int r = kernel_load(kernel->data, kernel->len, &m->env.mem, LAYOUT_KERNEL_MIN, &e->opts, &m->loaded, e->text,
                        sizeof e->text);
    const struct bzimage_unpacked *u = &m->loaded.bz.unpacked;
    if (r == 0 && m->loaded.bzimage && u->format && m->cfg->boot_markers) {
        uint64_t t1 = zx_clock_get_monotonic();
        char where[40] = "not randomized", note[200];
        if (u->kaslr) snprintf(where, sizeof where, "KASLR %+" PRId64 " MiB", (int64_t)(u->virt_offset >> 20));
        cache_note(u, note, sizeof note);
        if (u->cache == BZIMAGE_CACHE_HIT)
            fprintf(stderr, "bellhop: kernel unpacked (%s, %" PRIu64 " KiB, %s) in %.3f ms%s\n", u->format,
                    u->size >> 10, where, (double)(t1 - t0) / 1e6, note);
        else
            fprintf(stderr,
                    "bellhop: kernel unpacked (%s, %" PRIu64 " KiB, %s) in %.3f ms (decoding %.1f, relocating %.1f, "
                    "placing %.1f)%s\n",
                    u->format, u->size >> 10, where, (double)(t1 - t0) / 1e6, (double)u->decode_ns / 1e6,
                    (double)u->relocate_ns / 1e6, (double)u->place_ns / 1e6, note);
    }
    return r;
}

/* Guest RAM takes a cache entry's pages (kernel_cache.h's share): the entry is leased in the
 * bzImage's stead, whose own lease (map_file's) guarded it while it was keyed and unpacked
 * and guards nothing once its kernel is the entry's: two leases per machine (the kernel, the
 * initrd) are all image_lease.h holds. */
struct entry_share {
    struct machine *m;
    int bzimage_fd; /* leased by map_file, or -1 */
};

static int share_cache_entry(void *arg, int fd) {
    struct entry_share *s = arg;
    struct image_leases *l = &s->m->leases;
    if (!s->m->env.mem.files) return -1;
    for (unsigned i = 0; s->bzimage_fd >= 0 && i < l->n; i++) {
        if (l->fd[i] != s->bzimage_fd) continue;
        fcntl(l->fd[i], F_SETLEASE, F_UNLCK);
        close(l->fd[i]);
        l->fd[i] = l->fd[--l->n];
        s->bzimage_fd = -1;
    }
    return image_lease_take(l, fd);
}

/* The host's kind as the kernel's loader sees it. */
static enum kvm_host_kind loader_host(const struct machine *m) {
#ifdef BELLHOP_TEST_HOOKS
    /* Test hook (bellhop_run, on build/bellhop-hooks only): this host taken for PVM, so that
     * what a PVM host answers is tested end to end on every host. */
    const char *as = getenv("BELLHOP_HOST_AS");
    if (as && strcmp(as, "pvm") == 0) return KVM_HOST_PVM;
#endif
    return m->host;
}

int machine_load_kernel(struct machine *m) {
    const struct machine_config *cfg = m->cfg;
    struct file_map kernel;
    struct kernel_file e = {.opts = {.host = loader_host(m), .pvm_anyway = cfg->pvm_anyway,
                                     .unpack = !cfg->guest_decompress, .random = bzimage_kaslr_random(cfg->cmdline),
                                     .multiboot_min = LAYOUT_START_INFO + MULTIBOOT_INFO_SIZE}};
    if (map_file(m, "kernel", cfg->kernel, cfg->mem, &kernel, &e.opts.fd) != 0) return -1;
    struct kernel_cache cache;
    struct entry_share share = {m, e.opts.fd};
    kernel_cache_init(&cache, NULL);
    cache.share = share_cache_entry;
    cache.share_arg = &share;
    cache.image_fd = e.opts.fd >= 0 ? e.opts.fd : kernel.fd;
    cache.image_path = cfg->kernel;
    if (cfg->kernel_cache) e.opts.cache = &cache;
    int r = copy_guarded(m, "kernel", cfg->kernel, &kernel, load_kernel_image, &e);
    if (r == 0) m->filler = kernel_cache_take_filler(&cache); /* released once the guest has entered */
    kernel_cache_close(&cache);
    file_map_close(&kernel);
    if (r == FILE_MAP_SHRANK) return -1;
    if (r != 0) return machine_fail("kernel %s: %s", cfg->kernel, e.text);
    m->boot_entry = m->loaded.kernel.entry;
    /* Linux finds virtio devices on PCI and starts its other CPUs itself; so does a multiboot
     * kernel (kvm-unit-tests: INIT and STARTUP IPIs from its local APIC, as under QEMU). */
    m->linux_smp = m->loaded.kernel.is_linux || m->loaded.multiboot;
    m->virtio_pci = m->loaded.kernel.is_linux;
    return 0;
}

struct initrd_place {
    uint64_t at;
    int fd; /* the file, to share its pages (-1: copy) */
};

static int copy_initrd(struct machine *m, const struct file_map *initrd, void *arg) {
    const struct initrd_place *p = arg;
    gm_write_file(&m->env.mem, p->at, initrd->data, initrd->len, p->fd, 0, initrd->len);
    return 0;
}

/* A kernel or initrd file whose pages guest RAM shares is about to change (its lease broke,
 * vmm/machine/image_lease.h): RAM takes its own copies, with the vCPUs stopped and the devices'
 * requests in flight completed, since a write to a page already copied would be lost. Under
 * m->lock, so that the control plane cannot resume the vCPUs meanwhile. */
static void unshare_files(void *arg) {
    struct machine *m = arg;
    char err[160];
    bool paused = machine_paused(m);
    for (unsigned tries = 0;; tries++) {
        if (!paused && machine_pause(m, err, sizeof err) != 0) {
            fprintf(stderr, "bellhop: a kernel or initrd file is being changed and %s: the guest may see it\n", err);
            return;
        }
        machine_quiesce_devices(m);
        pthread_mutex_lock(&m->lock);
        bool all_parked = true;
        for (unsigned i = 0; i < MACHINE_MAX_CPUS; i++)
            all_parked &= m->cpus[i].vcpu == ZX_HANDLE_INVALID || m->cpus[i].parked;
        if (all_parked || m->exiting || tries == 10) { /* else the control plane resumed them */
            if (gm_unshare(&m->env.mem) != 0)
                fprintf(stderr, "bellhop: a kernel or initrd file is being changed and the host refused memory "
                                "for the guest's own copy: the guest may see it\n");
            pthread_mutex_unlock(&m->lock);
            break;
        }
        pthread_mutex_unlock(&m->lock);
    }
    if (!paused) machine_resume(m);
}

int machine_watch_files(struct machine *m) {
    return image_leases_watch(&m->leases, m->env.loop, unshare_files, m);
}

/* A multiboot module's file at the first page at or above *next, below `top`: its place in
 * *mod, and *next moved past it. 0, or -1 (said). */
static int place_module(struct machine *m, const char *what, const char *path, uint64_t top, uint64_t *next,
                        struct multiboot_module *mod) {
    struct file_map f;
    struct initrd_place place;
    if (map_file(m, what, path, m->cfg->mem, &f, &place.fd) != 0) return -1;
    /* page-aligned whether or not the kernel asks (MULTIBOOT_PAGE_ALIGN): then guest RAM can
     * take the file's pages rather than a copy */
    uint64_t at = (*next + 0xfff) & ~0xfffull, len = f.len;
    if (at > top || len > top - at) {
        file_map_close(&f);
        return machine_fail("%s %s: does not fit in guest memory below 4 GiB above the kernel", what, path);
    }
    place.at = at;
    int r = copy_guarded(m, what, path, &f, copy_initrd, &place);
    file_map_close(&f);
    if (r != 0) return -1;
    *mod = (struct multiboot_module){.paddr = at, .size = len};
    *next = at + len;
    return 0;
}

/* Module i's file and arguments (NULL: none): the initrd first when there is one. */
static void module_file(const struct machine_config *cfg, unsigned i, const char **what, const char **path,
                        const char **args) {
    if (cfg->initrd && i == 0) {
        *what = "initrd", *path = cfg->initrd, *args = NULL;
        return;
    }
    const struct machine_module *mod = &cfg->modules[i - (cfg->initrd != NULL)];
    *what = "module", *path = mod->path, *args = mod->args;
}

/* A multiboot kernel's boot data: the initrd (module 0) and the --module files after the
 * kernel, then the information block where PVH's start info would go (below 1 MiB, where
 * neither the kernel nor the modules are), with QEMU's command line: the kernel's file name
 * first (kvm-unit-tests' argv[0]). */
static int multiboot_boot_data(struct machine *m) {
    const struct machine_config *cfg = m->cfg;
    unsigned n = (cfg->initrd != NULL) + cfg->nmodules;
    if (n > MULTIBOOT_MAX_MODULES)
        return machine_fail("%u modules (the initrd counts as one): a multiboot kernel takes at most %u", n,
                            MULTIBOOT_MAX_MODULES);
    struct multiboot_module mods[MULTIBOOT_MAX_MODULES];
    char strings[MULTIBOOT_INFO_SIZE]; /* they must fit in the information area anyway */
    size_t used = 0;
    struct gm_range ram[2];
    gm_ranges(&m->env.mem, ram);
    /* above the kernel, and above 1 MiB when it lies below */
    uint64_t next = m->loaded.kernel.end > LAYOUT_KERNEL_MIN ? m->loaded.kernel.end : LAYOUT_KERNEL_MIN;
    for (unsigned i = 0; i < n; i++) {
        const char *what, *path, *args;
        module_file(cfg, i, &what, &path, &args);
        if (place_module(m, what, path, ram[0].size, &next, &mods[i]) != 0) return -1;
        int w = snprintf(strings + used, sizeof strings - used, "%s%s%s", path, args ? " " : "", args ? args : "");
        if (w < 0 || (size_t)w >= sizeof strings - used)
            return machine_fail("%s %s: the modules' names and arguments do not fit in the multiboot information",
                                what, path);
        mods[i].string = strings + used;
        used += (size_t)w + 1;
    }
    char *cmdline;
    if (asprintf(&cmdline, "%s %s", cfg->kernel, cfg->cmdline ? cfg->cmdline : "") < 0)
        return machine_fail("out of memory for the command line");
    char err[200];
    int r = multiboot_write_info(&m->env.mem, LAYOUT_START_INFO, cmdline, mods, n, err, sizeof err);
    free(cmdline);
    return r == 0 ? 0 : machine_fail("%s", err);
}

int machine_boot_setup(struct machine *m) {
    const struct machine_config *cfg = m->cfg;
    struct pvh_kernel k = m->loaded.kernel;
    uint64_t kend = k.end;

    struct pvh_module mods[2];
    unsigned nmods = 0;
    struct fdt_machine *fm = &m->fdt;
    fm->ram_size = cfg->mem;
    fm->ncpus = cfg->cpus;
    fm->cmdline = cfg->cmdline;
    fm->uart_port = UART_COM1_PORT;
    fm->uart_irq = UART_COM1_IRQ;
    /* a multiboot kernel reads none, and may lie where it would go */
    int dtb_size = m->loaded.multiboot ? 0 : fdt_build(fm, gm_ptr_write(&m->env.mem, LAYOUT_DTB, LAYOUT_DTB_SIZE),
                                                        LAYOUT_DTB_SIZE);
    if (dtb_size < 0) return machine_fail("device tree: %d", dtb_size);
    /* Linux takes module 0 as its initrd (and x86 Linux reads no device tree); other PVH
     * kernels get the device tree first. */
    if (!k.is_linux) mods[nmods++] = (struct pvh_module){LAYOUT_DTB, (uint64_t)dtb_size};
    if (cfg->nmodules && !m->loaded.multiboot)
        return machine_fail("--module %s: only a multiboot kernel takes modules, and %s is not one",
                            cfg->modules[0].path, cfg->kernel);
    if (cfg->initrd && !m->loaded.multiboot) {
        struct file_map initrd;
        struct initrd_place place;
        if (map_file(m, "initrd", cfg->initrd, cfg->mem, &initrd, &place.fd) != 0) return -1;
        size_t ilen = initrd.len;
        /* At the top of RAM's low part: below 4 GiB, where a kernel entered in 32-bit mode
         * (PVH) reaches it before it has page tables, and lower still if a bzImage says so. */
        struct gm_range ram[2];
        gm_ranges(&m->env.mem, ram);
        uint64_t top = ram[0].size;
        uint64_t initrd_top = (uint64_t)m->loaded.bz.initrd_addr_max + 1;
        if (m->loaded.bzimage && top > initrd_top) top = initrd_top;
        uint64_t at = (top - ilen) & ~0xfffull;
        if (ilen > top || at < kend) {
            file_map_close(&initrd);
            return machine_fail("initrd %s: does not fit in guest memory above the kernel", cfg->initrd);
        }
        place.at = at;
        int r = copy_guarded(m, "initrd", cfg->initrd, &initrd, copy_initrd, &place);
        file_map_close(&initrd);
        if (r != 0) return -1;
        mods[nmods++] = (struct pvh_module){at, ilen};
    }
    uint64_t rsdp = acpi_build(&m->env.mem, cfg->cpus, FDT_IOAPIC_BASE, m->loaded.multiboot ? ACPI_PM_TIMER_PORT : 0);
    reset_vector_stub(&m->env.mem);
    if (!vmgenid_renew(&m->env.mem)) return machine_fail("cannot make the VM generation ID (no randomness?)");
    if (!rsdp) return machine_fail("cannot build the ACPI tables");
    if (m->loaded.multiboot) return multiboot_boot_data(m);
    if (m->loaded.bzimage) {
        uint64_t initrd = nmods ? mods[nmods - 1].paddr : 0, initrd_size = nmods ? mods[nmods - 1].size : 0;
        if (bzimage_write_boot_params(&m->env.mem, &m->loaded.bz, cfg->cmdline, initrd, initrd_size, rsdp) != 0)
            return machine_fail("command line too long for this kernel");
    } else if (pvh_write_start_info(&m->env.mem, LAYOUT_START_INFO, cfg->cmdline, mods, nmods, rsdp) != 0) {
        return machine_fail("command line too long (at most 4095 bytes)");
    }
    return 0;
}


zx_status_t machine_boot_registers(struct machine *m, zx_handle_t vcpu) {
    bellhop_vcpu_boot_state_t b = {.entry = m->boot_entry};
    if (m->loaded.bzimage) {
        b.rsi = BOOT_ZERO_PAGE_ADDR;
        b.cr3 = BOOT_PML4_ADDR, b.gdt = BOOT_GDT_ADDR, b.gdt_limit = 4 * 8 - 1;
    } else {
        /* multiboot's information block, or PVH's start info: both there */
        b.rbx = LAYOUT_START_INFO;
        if (m->loaded.multiboot) b.rax = MULTIBOOT_BOOTLOADER_MAGIC;
    }
    return bellhop_vcpu_set_boot_state(vcpu, &b);
}
