/* The tiny guest: finds its devices in the device tree the VMM hands over as the first PVH
 * module, tests each of them, prints the results and exits through the exit device with 0
 * only if every test passed. */
#include <libfdt.h>

#include "firmware/hvm_start_info.h"
#include "guest/devices.h"

static int failures;

static void result(const char *name, bool ok, const char *detail) {
    printf("selftest %-16s %s%s%s\n", name, ok ? "PASS" : "FAIL", detail[0] ? ": " : "", detail);
    if (!ok) failures++;
}

/* The word of cmdline that starts with `word`, or NULL. */
static const char *strstr_word(const char *cmdline, const char *word) {
    size_t n = strlen(word);
    for (const char *p = cmdline; *p;) {
        while (*p == ' ') p++;
        if (strncmp(p, word, n) == 0) return p;
        while (*p && *p != ' ') p++;
    }
    return NULL;
}

static const void *find_dtb(const struct hvm_start_info *si) {
    if (si->nr_modules == 0) return NULL;
    const struct hvm_modlist_entry *m = (const void *)(uintptr_t)si->modlist_paddr;
    const void *dtb = (const void *)(uintptr_t)m[0].paddr;
    return fdt_check_header(dtb) == 0 && fdt_totalsize(dtb) <= m[0].size ? dtb : NULL;
}

static uint64_t ram_size(const struct hvm_start_info *si) {
    const struct hvm_memmap_table_entry *e = (const void *)(uintptr_t)si->memmap_paddr;
    uint64_t total = 0;
    for (uint32_t i = 0; i < si->memmap_entries; i++)
        if (e[i].type == HVM_MEMMAP_TYPE_RAM) total += e[i].size;
    return total;
}

void kmain(const struct hvm_start_info *si) {
    uart_init(0x3f8);
    if (si->magic != HVM_START_MAGIC_VALUE) {
        printf("guest: bad hvm_start_info magic %x\n", si->magic);
        guest_exit(98);
    }
    const char *cmdline = si->cmdline_paddr ? (const char *)(uintptr_t)si->cmdline_paddr : "";
    printf("bellhop tiny guest: %u MiB RAM, command line \"%s\"\n",
           (unsigned)(ram_size(si) >> 20), cmdline);
    const void *dtb = find_dtb(si);
    result("device-tree", dtb != NULL, dtb ? "" : "no valid DTB as the first module");
    if (dtb) {
        int chosen = fdt_path_offset(dtb, "/chosen");
        const char *args = chosen >= 0 ? fdt_getprop(dtb, chosen, "bootargs", NULL) : NULL;
        result("dt-bootargs", args && strcmp(args, cmdline) == 0, args ? args : "missing");
    }
    /* Command-line words for the VMM's tests: "crash" reads memory that is not there,
     * "triple-fault" does that, "exit=N" reports N. */
    if (strstr_word(cmdline, "crash")) {
        printf("guest: crashing on purpose\n");
        (void)mmio_read32(0xdead0000);
    }
    if (strstr_word(cmdline, "triple-fault")) {
        printf("guest: triple-faulting on purpose\n");
        static const struct { uint16_t limit; uint64_t base; } __attribute__((packed)) no_idt = {0, 0};
        __asm__ volatile("lidt %0; int3" ::"m"(no_idt));
    }
    printf("guest: %d failed\n", failures);
    const char *e = strstr_word(cmdline, "exit=");
    guest_exit(failures ? 1 : e ? (int)strtoul(e + 5, NULL, 0) : 0);
}
