/* The tiny guest as a multiboot (v1) kernel: the loader's information block (the multiboot
 * spec's layout, little-endian, 32-bit addresses) read into an hvm_start_info. */
#include "guest/lib.h"
#include "guest/multiboot.h"

#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002u
#define INFO_MEMORY 0x1u
#define INFO_CMDLINE 0x4u
#define INFO_MODS 0x8u
#define INFO_MEM_MAP 0x40u
#define INFO_LOADER_NAME 0x200u
#define MMAP_AVAILABLE 1u
#define MAX_MAP 16
#define MAX_MODS 16
#define FW_CFG_PORT 0x510
#define FW_CFG_SIGNATURE 0x00
#define FW_CFG_RAM_SIZE 0x03
#define FW_CFG_NB_CPUS 0x05

/* What the spec's information block holds up to the loader's name (all this guest reads). */
struct mb_info {
    uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length, mmap_addr, drives_length, drives_addr, config_table, boot_loader_name;
};
struct mb_mmap {
    uint32_t size; /* of the rest of the entry: the next is size + 4 bytes on */
    uint64_t addr, len;
    uint32_t type;
} __attribute__((packed));
struct mb_module {
    uint32_t start, end, string, reserved;
};

/* multiboot_entry.S's */
extern uint32_t mb_magic, mb_info;
struct hvm_start_info mb_start_info;

static struct hvm_memmap_table_entry map[MAX_MAP];
static struct hvm_modlist_entry mods[MAX_MODS];

static const struct mb_info *info(void) { return (const struct mb_info *)(uintptr_t)mb_info; }

static bool booted; /* kmain's start info is multiboot_entry.S's */

bool multiboot_booted(void) { return booted; }

static uint32_t read_map(const struct mb_info *mi) {
    uint32_t n = 0;
    if (mi->flags & INFO_MEM_MAP) {
        for (uint32_t off = 0; off + sizeof(struct mb_mmap) <= mi->mmap_length && n < MAX_MAP;) {
            const struct mb_mmap *e = (const void *)(uintptr_t)(mi->mmap_addr + off);
            map[n++] = (struct hvm_memmap_table_entry){
                e->addr, e->len, e->type == MMAP_AVAILABLE ? HVM_MEMMAP_TYPE_RAM : HVM_MEMMAP_TYPE_RESERVED, 0};
            off += e->size + 4;
        }
    } else if (mi->flags & INFO_MEMORY) { /* the KiB below 640 KiB, and from 1 MiB up */
        map[n++] = (struct hvm_memmap_table_entry){0, (uint64_t)mi->mem_lower << 10, HVM_MEMMAP_TYPE_RAM, 0};
        map[n++] = (struct hvm_memmap_table_entry){1u << 20, (uint64_t)mi->mem_upper << 10, HVM_MEMMAP_TYPE_RAM, 0};
    }
    return n;
}

const struct hvm_start_info *multiboot_start_info(const struct hvm_start_info *si) {
    if (si != &mb_start_info) return si;
    booted = true;
    struct hvm_start_info *s = &mb_start_info;
    s->magic = HVM_START_MAGIC_VALUE;
    s->version = 1;
    if (mb_magic != MULTIBOOT_BOOTLOADER_MAGIC) return s; /* said by multiboot_selftests */
    const struct mb_info *mi = info();
    if (mi->flags & INFO_CMDLINE) s->cmdline_paddr = mi->cmdline;
    s->memmap_paddr = (uintptr_t)map;
    s->memmap_entries = read_map(mi);
    const struct mb_module *m = (const void *)(uintptr_t)mi->mods_addr;
    for (uint32_t i = 0; (mi->flags & INFO_MODS) && i < mi->mods_count && i < MAX_MODS; i++)
        mods[s->nr_modules++] = (struct hvm_modlist_entry){m[i].start, m[i].end - m[i].start, m[i].string, 0};
    s->modlist_paddr = (uintptr_t)mods;
    return s;
}

static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }

/* fw_cfg item `key`'s first n bytes (little-endian numbers) into buf. */
static void fw_cfg_read(uint16_t key, void *buf, size_t n) {
    outw(FW_CFG_PORT, key);
    for (size_t i = 0; i < n; i++) ((uint8_t *)buf)[i] = inb(FW_CFG_PORT + 1);
}

static void module_selftest(multiboot_result_fn *result) {
    const struct hvm_start_info *s = &mb_start_info;
    bool ok = true;
    for (uint32_t i = 0; i < s->nr_modules; i++) {
        const struct hvm_modlist_entry *m = &mods[i];
        /* its first bytes, printable, for the test to recognize it */
        char head[17];
        size_t n = m->size < 16 ? m->size : 16;
        for (size_t j = 0; j < n; j++) {
            char c = ((const char *)(uintptr_t)m->paddr)[j];
            head[j] = c >= ' ' && c < 127 ? c : '.';
        }
        head[n] = 0;
        const char *str = m->cmdline_paddr ? (const char *)(uintptr_t)m->cmdline_paddr : "";
        printf("multiboot module %u: %llu bytes at 0x%llx, \"%s\", starts \"%s\"\n", (unsigned)i,
               (unsigned long long)m->size, (unsigned long long)m->paddr, str, head);
        /* multiboot_entry.S asks for page-aligned modules */
        ok &= (m->paddr & 4095) == 0;
    }
    char detail[64];
    snprintf(detail, sizeof detail, "%u, page-aligned", (unsigned)s->nr_modules);
    result("mb-modules", ok, ok ? detail : "not page-aligned");
}

static void fw_cfg_selftest(multiboot_result_fn *result) {
    char sig[5] = {0};
    uint64_t ram = 0, in_map = 0;
    uint16_t cpus = 0;
    fw_cfg_read(FW_CFG_SIGNATURE, sig, 4);
    fw_cfg_read(FW_CFG_RAM_SIZE, &ram, sizeof ram);
    fw_cfg_read(FW_CFG_NB_CPUS, &cpus, sizeof cpus);
    for (uint32_t i = 0; i < mb_start_info.memmap_entries; i++)
        if (map[i].type == HVM_MEMMAP_TYPE_RAM) in_map += map[i].size;
    /* RAM's size against the map's RAM: that less the legacy hole, and under QEMU its BIOS's
     * few pages besides */
    bool ok = strcmp(sig, "QEMU") == 0 && cpus >= 1 && ram >= in_map && ram - in_map < (16u << 20);
    char detail[96];
    snprintf(detail, sizeof detail, "\"%s\", %llu MiB RAM (%llu KiB in the map), %u cpus", sig,
             (unsigned long long)(ram >> 20), (unsigned long long)(in_map >> 10), (unsigned)cpus);
    result("fw_cfg", ok, detail);
}

void multiboot_selftests(multiboot_result_fn *result) {
    const struct mb_info *mi = info();
    char detail[96];
    if (mb_magic != MULTIBOOT_BOOTLOADER_MAGIC) {
        snprintf(detail, sizeof detail, "EAX 0x%x at the entry, not 0x%x", mb_magic, MULTIBOOT_BOOTLOADER_MAGIC);
        result("multiboot", false, detail);
        return;
    }
    const char *name = mi->flags & INFO_LOADER_NAME ? (const char *)(uintptr_t)mi->boot_loader_name : "?";
    bool ok = (mi->flags & (INFO_MEM_MAP | INFO_CMDLINE)) == (INFO_MEM_MAP | INFO_CMDLINE) && mb_start_info.memmap_entries;
    snprintf(detail, sizeof detail, "from %s, info flags 0x%x, %u map entries", name, mi->flags,
             (unsigned)mb_start_info.memmap_entries);
    result("multiboot", ok, detail);
    module_selftest(result);
    fw_cfg_selftest(result);
}
