/* Which kind of kernel a file is, whether it is whole, and whether this host can run it. */
#include <elf.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "vmm/machine/kernel_load.h"

/* A kernel whose code lies where a PVM host keeps its own (vmm/hv/kvm_host.h) would run only
 * through KVM's emulator, slowly, until an instruction it lacks stops it: refused before it
 * runs, unless the user insists. */
static bool refused_on_pvm(const struct kernel_load_opts *o, uint64_t lo, uint64_t hi, char *err, size_t errlen) {
    if (o->host != KVM_HOST_PVM || o->pvm_anyway || kvm_host_pvm_can_run(lo, hi)) return false;
    snprintf(err, errlen,
             "linked at %#" PRIx64 ", in the top 2 GiB that a PVM host keeps for itself: this host's KVM is PVM, "
             "which runs only kernels built for it (CONFIG_PVM_GUEST); run it in the nested KVM host "
             "(BELLHOP_RUN_WHERE=nested scripts/run.sh build/bellhop run ...), or try it here with --pvm-anyway",
             lo > KVM_HOST_PVM_RESERVED ? lo : (uint64_t)KVM_HOST_PVM_RESERVED); /* where it enters that range */
    return true;
}

static bool elf64(const uint8_t *image, size_t len) {
    return len >= EI_NIDENT && memcmp(image, ELFMAG, SELFMAG) == 0 && image[EI_CLASS] == ELFCLASS64;
}

/* A multiboot kernel: 32-bit code below 4 GiB, entered with paging off, so wherever it is
 * linked a PVM host runs it. */
static int load_multiboot(const uint8_t *image, size_t len, const struct guest_mem *gm, uint64_t min_paddr,
                          const struct kernel_load_opts *o, struct kernel_loaded *out, char *err, size_t errlen) {
    if (multiboot_load(image, len, o->fd, gm, o->multiboot_min ? o->multiboot_min : min_paddr, &out->mb, err,
                       errlen) != 0)
        return -1;
    /* the memory map reserves 640 KiB to 1 MiB (video memory, the BIOS: ACPI's tables are there) */
    if (out->mb.start < MULTIBOOT_LEGACY_END && out->mb.end > MULTIBOOT_LEGACY_START) {
        snprintf(err, errlen, "multiboot: the kernel (%#" PRIx64 "-%#" PRIx64 ") overlaps 640 KiB to 1 MiB, the legacy "
                 "video and BIOS area", out->mb.start, out->mb.end);
        return -1;
    }
    out->multiboot = true;
    out->kernel = (struct pvh_kernel){.entry = out->mb.entry, .end = out->mb.end};
    return 0;
}

int kernel_load(const uint8_t *image, size_t len, const struct guest_mem *gm, uint64_t min_paddr,
                const struct kernel_load_opts *o, struct kernel_loaded *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    bool bzimage = bzimage_detect(image, len);
    if (!bzimage && !elf64(image, len) && multiboot_claimed(image, len))
        return load_multiboot(image, len, gm, min_paddr, o, out, err, errlen);
    if (!bzimage) {
        int r = pvh_load_elf(image, len, o->fd, gm, min_paddr, &out->kernel, err, errlen);
        return r == 0 && refused_on_pvm(o, out->kernel.vaddr_lo, out->kernel.vaddr_hi, err, errlen) ? -1 : r;
    }
    /* The 64-bit boot protocol's kernel is x86-64 Linux, linked in the top 2 GiB
     * (__START_KERNEL_map): no need to unpack it to know, once its header holds up. */
    if (bzimage_check(image, len, err, errlen) != 0) return -1;
    if (refused_on_pvm(o, KVM_HOST_PVM_RESERVED, UINT64_MAX, err, errlen)) return -1;
    out->bzimage = true;
    int r = bzimage_load_with(image, len, gm, min_paddr, o->unpack, o->random, o->cache ? kernel_cache_unpack : NULL,
                              o->cache, &out->bz, err, errlen);
    out->kernel = (struct pvh_kernel){.entry = out->bz.entry, .end = out->bz.end, .is_linux = true};
    return r;
}
