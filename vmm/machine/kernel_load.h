/* A kernel file into guest memory, whatever its kind (a PVH ELF, a bzImage or a multiboot
 * kernel): the file is checked whole first, and only then does this host's kind of KVM decide
 * whether it can run it, so that a broken file gets the same answer on every host. */
#ifndef BELLHOP_VMM_MACHINE_KERNEL_LOAD_H
#define BELLHOP_VMM_MACHINE_KERNEL_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "firmware/bzimage.h"
#include "firmware/multiboot.h"
#include "firmware/pvh.h"
#include "base/guest_mem.h"
#include "vmm/hv/kvm_host.h"
#include "vmm/machine/kernel_cache.h"

struct kernel_load_opts {
    enum kvm_host_kind host;
    bool pvm_anyway; /* on PVM, run a kernel linked in the top 2 GiB all the same */
    bool unpack;     /* a bzImage's kernel unpacked by bellhop (else by its decompressor, in the guest) */
    uint64_t random; /* where KASLR puts it (bzimage_kaslr_random) */
    int fd;          /* the file, whose pages guest RAM may take (gm_write_file); -1: copy */
    struct kernel_cache *cache; /* a bzImage's kernel unpacked through it; NULL: straight into guest RAM */
    /* The lowest byte a multiboot kernel may take (its information block lies below): such
     * kernels may load below 1 MiB (kvm-unit-tests' realmode test at 32 KiB); 0: min_paddr. */
    uint64_t multiboot_min;
};

struct kernel_loaded {
    struct pvh_kernel kernel; /* entry and end, a bzImage's too */
    bool bzimage;             /* booted through the Linux boot protocol, not PVH */
    struct bzimage_kernel bz;
    bool multiboot;           /* booted through multiboot v1: entered with its info block in EBX */
    struct multiboot_kernel mb; /* its header's flags say how to place the modules */
};

/* Loads `image` (len bytes, the file's contents) at or above min_paddr. On failure -1 with a
 * one-line reason in err, which needs KERNEL_LOAD_ERR_MAX bytes to hold the longest. */
#define KERNEL_LOAD_ERR_MAX 400
int kernel_load(const uint8_t *image, size_t len, const struct guest_mem *gm, uint64_t min_paddr,
                const struct kernel_load_opts *o, struct kernel_loaded *out, char *err, size_t errlen);

#endif
