/* Multiboot kernels are user input: any bytes through multiboot_detect and multiboot_load into
 * 8 MiB of guest memory, then the information block. They must refuse with a reason or load
 * within that memory, the entry inside the kernel. */
#include <stdlib.h>

#include "firmware/multiboot.h"
#include "tests/fuzz/fuzz.h"

#define RAM (8u << 20)
#define MIN 0x100000u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static uint8_t *mem;
    if (!mem && !(mem = calloc(1, RAM))) abort();
    struct guest_mem gm = {mem, RAM, NULL, NULL};
    char err[160];
    bool detected = multiboot_detect(data, size);
    struct multiboot_kernel k;
    if (multiboot_load(data, size, -1, &gm, MIN, &k, err, sizeof err) != 0) {
        if (strncmp(err, "multiboot: ", 11) != 0 || strchr(err, '\n')) abort();
        return 0;
    }
    if (!detected || k.start < MIN || k.end > RAM || k.entry < k.start || k.entry >= k.end) abort();
    /* the module's string from the image's last bytes, whatever they are */
    char str[64] = {0};
    memcpy(str, data + size - (size < 63 ? size : 63), size < 63 ? size : 63);
    const struct multiboot_module mod = {k.end < RAM - 0x1000 ? k.end : MIN, 0x1000, str};
    if (multiboot_write_info(&gm, 0x6000, str, &mod, 1, err, sizeof err) != 0) abort();
    return 0;
}
