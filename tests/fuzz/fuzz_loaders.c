/* Kernels are user input: the PVH ELF and bzImage loaders on any bytes, into 32 MiB of guest
 * memory. They must refuse with a reason or load within that memory. */
#include <stdlib.h>

#include "firmware/bzimage.h"
#include "firmware/pvh.h"
#include "tests/fuzz/fuzz.h"

#define RAM (32u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static uint8_t *mem;
    if (!mem && !(mem = calloc(1, RAM))) abort();
    struct guest_mem gm = {mem, RAM, NULL, NULL};
    char err[160];
    if (bzimage_detect(data, size)) {
        struct bzimage_kernel k;
        if (bzimage_load(data, size, &gm, 0x100000, true, 0x123456789, &k, err, sizeof err) == 0) {
            if (k.end > RAM || k.entry < k.load_addr) abort();
            bzimage_write_boot_params(&gm, &k, "console=ttyS0", 0, 0, 0);
        }
    } else {
        struct pvh_kernel k;
        if (pvh_load_elf(data, size, -1, &gm, 0x100000, &k, err, sizeof err) == 0 && (k.end > RAM || k.entry >= k.end))
            abort();
    }
    return 0;
}
