/* Kernels are user input: kernel_load, which tells a bzImage, a PVH ELF and a multiboot kernel
 * apart and loads each, on any bytes, into 32 MiB of guest memory, as on a hardware and a PVM
 * host. Each must refuse with a reason or load within that memory. */
#include <stdlib.h>

#include "tests/fuzz/fuzz.h"
#include "vmm/machine/kernel_load.h"

#define RAM (32u << 20)

static void check(const struct kernel_loaded *k, const struct guest_mem *gm) {
    if (k->multiboot) {
        if (k->mb.end > RAM || k->mb.start >= k->mb.end || k->mb.start < 0x8000) abort();
        if (k->mb.start < MULTIBOOT_LEGACY_END && k->mb.end > MULTIBOOT_LEGACY_START) abort();
    } else if (k->bzimage) {
        if (k->bz.end > RAM || k->bz.entry < k->bz.load_addr) abort();
        bzimage_write_boot_params(gm, &k->bz, "console=ttyS0", 0, 0, 0);
    } else if (k->kernel.end > RAM || k->kernel.entry >= k->kernel.end) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static uint8_t *mem;
    if (!mem && !(mem = calloc(1, RAM))) abort();
    struct guest_mem gm = {mem, RAM, NULL, NULL};
    char err[300];
    static const enum kvm_host_kind hosts[] = {KVM_HOST_HARDWARE, KVM_HOST_PVM};
    for (unsigned h = 0; h < 2; h++) {
        const struct kernel_load_opts o = {.host = hosts[h], .unpack = true, .random = 0x123456789, .fd = -1,
                                           .multiboot_min = 0x8000};
        struct kernel_loaded k;
        if (kernel_load(data, size, &gm, 0x100000, &o, &k, err, sizeof err) == 0) check(&k, &gm);
    }
    return 0;
}
