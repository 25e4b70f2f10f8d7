/* What the kernel's loader answers on each kind of host, without a VM: a broken file gets the
 * same reason everywhere, and PVM refuses a kernel linked in the top 2 GiB in a whole line
 * (unless asked to try), after the file was found to be whole. */
#include <elf.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/check.h"
#include "vmm/machine/kernel_load.h"

#define RAM (8u << 20)
#define LOAD 0x200000u
#define STOCK_VADDR 0xffffffff81000000ull

static uint8_t ram[RAM], file[0x3000];
static const struct guest_mem gm = {ram, RAM, NULL, NULL};

/* A bzImage header of boot protocol `version` (2.15 is whole) around a page of kernel. */
static size_t make_bzimage(uint16_t version) {
    memset(file, 0, sizeof file);
    file[0x1f1] = 1; /* setup_sects: the protected-mode kernel at 1024 */
    memcpy(file + 0x202, "HdrS", 4);
    memcpy(file + 0x206, &version, 2);
    file[0x211] = 1; /* LOADED_HIGH */
    uint16_t xloadflags = 1; /* XLF_KERNEL_64 */
    uint32_t align = 0x200000, init_size = 0x100000;
    uint64_t pref = LOAD;
    memcpy(file + 0x230, &align, 4);
    memcpy(file + 0x236, &xloadflags, 2);
    memcpy(file + 0x258, &pref, 8);
    memcpy(file + 0x260, &init_size, 4);
    return 1024 + 0x1000;
}

/* A PVH ELF: one segment of a page at LOAD, linked at `vaddr`, and the Xen entry note. */
static size_t make_pvh_elf(uint64_t vaddr) {
    memset(file, 0, sizeof file);
    Elf64_Ehdr eh = {.e_ident = {ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS64, ELFDATA2LSB, EV_CURRENT},
                     .e_type = ET_EXEC, .e_machine = EM_X86_64, .e_phoff = sizeof eh,
                     .e_phentsize = sizeof(Elf64_Phdr), .e_phnum = 2, .e_ehsize = sizeof eh};
    memcpy(file, &eh, sizeof eh);
    Elf64_Phdr ph[2] = {
        {.p_type = PT_LOAD, .p_offset = 0x1000, .p_vaddr = vaddr, .p_paddr = LOAD, .p_filesz = 0x1000,
         .p_memsz = 0x1000},
        {.p_type = PT_NOTE, .p_offset = 0x200, .p_filesz = sizeof(Elf64_Nhdr) + 4 + 4},
    };
    memcpy(file + sizeof eh, ph, sizeof ph);
    Elf64_Nhdr n = {.n_namesz = 4, .n_descsz = 4, .n_type = 18 /* XEN_ELFNOTE_PHYS32_ENTRY */};
    uint32_t entry = LOAD;
    memcpy(file + 0x200, &n, sizeof n);
    memcpy(file + 0x200 + sizeof n, "Xen", 4);
    memcpy(file + 0x200 + sizeof n + 4, &entry, 4);
    return 0x2000;
}

static int load(size_t len, enum kvm_host_kind host, bool anyway, struct kernel_loaded *k, char *err, size_t errlen) {
    const struct kernel_load_opts o = {.host = host, .pvm_anyway = anyway, .unpack = true, .random = 0, .fd = -1};
    err[0] = 0;
    return kernel_load(file, len, &gm, 0x100000, &o, k, err, errlen);
}

static const enum kvm_host_kind hosts[] = {KVM_HOST_HARDWARE, KVM_HOST_PVM, KVM_HOST_NONE};

TEST(a_broken_bzimage_gets_the_same_reason_on_every_host) {
    struct kernel_loaded k;
    char err[KERNEL_LOAD_ERR_MAX];
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
        size_t len = make_bzimage(0x0201);
        CHECK_EQ(load(len, hosts[i], false, &k, err, sizeof err), -1);
        CHECK_MSG(strstr(err, "boot protocol 2.01 is too old"), "%s: %s", kvm_host_name(hosts[i]), err);
        len = make_bzimage(0x020f);
        CHECK_EQ(load(1000, hosts[i], false, &k, err, sizeof err), -1); /* cut before its kernel */
        CHECK_MSG(strstr(err, "truncated bzImage"), "%s: %s", kvm_host_name(hosts[i]), err);
        file[0x230] = 3; /* an alignment that is no power of two */
        CHECK_EQ(load(len, hosts[i], false, &k, err, sizeof err), -1);
        CHECK_MSG(strstr(err, "bad kernel alignment"), "%s: %s", kvm_host_name(hosts[i]), err);
    }
}

TEST(pvm_refuses_a_whole_bzimage_in_one_uncut_line_unless_asked_to_try) {
    struct kernel_loaded k;
    char err[KERNEL_LOAD_ERR_MAX];
    size_t len = make_bzimage(0x020f);
    CHECK_EQ(load(len, KVM_HOST_PVM, false, &k, err, sizeof err), -1);
    CHECK_MSG(strncmp(err, "linked at 0xffffffff80000000, in the top 2 GiB", 46) == 0, "%s", err);
    const char *tail = "or try it here with --pvm-anyway";
    CHECK_MSG(strlen(err) > strlen(tail) && strcmp(err + strlen(err) - strlen(tail), tail) == 0, "%s", err);
    CHECK(strlen(err) + 1 < sizeof err); /* room to spare: nothing was cut */
    /* hardware KVM, or PVM with --pvm-anyway: loaded (the decompressor would run in the guest:
     * this payload is no known format) */
    CHECK_EQ(load(len, KVM_HOST_HARDWARE, false, &k, err, sizeof err), 0);
    CHECK(k.bzimage && k.kernel.is_linux && k.kernel.entry == LOAD + 0x200);
    CHECK_EQ(load(len, KVM_HOST_PVM, true, &k, err, sizeof err), 0);
}

TEST(pvm_runs_a_pvh_kernel_linked_low_and_refuses_one_linked_in_the_top_2_gib) {
    struct kernel_loaded k;
    char err[KERNEL_LOAD_ERR_MAX];
    CHECK_EQ(load(make_pvh_elf(LOAD), KVM_HOST_PVM, false, &k, err, sizeof err), 0);
    CHECK(!k.bzimage && k.kernel.entry == LOAD && k.kernel.end == LOAD + 0x1000);
    CHECK_EQ(load(make_pvh_elf(STOCK_VADDR), KVM_HOST_PVM, false, &k, err, sizeof err), -1);
    CHECK_MSG(strstr(err, "linked at 0xffffffff81000000, in the top 2 GiB") && strstr(err, "--pvm-anyway"), "%s", err);
    CHECK_EQ(load(make_pvh_elf(STOCK_VADDR), KVM_HOST_HARDWARE, false, &k, err, sizeof err), 0);
    CHECK_EQ(load(make_pvh_elf(STOCK_VADDR), KVM_HOST_PVM, true, &k, err, sizeof err), 0);
    /* a broken ELF: its own reason on PVM too */
    size_t len = make_pvh_elf(STOCK_VADDR);
    memset(file + 0x200, 0, 16); /* no entry note */
    CHECK_EQ(load(len, KVM_HOST_PVM, false, &k, err, sizeof err), -1);
    CHECK_MSG(strstr(err, "no PVH entry point"), "%s", err);
}

/* A multiboot a.out-kludge image of a page loaded at `at`. */
static size_t make_multiboot_at(uint32_t at) {
    memset(file, 0, sizeof file);
    uint32_t flags = 0x10000; /* MULTIBOOT_AOUT_KLUDGE */
    uint32_t h[8] = {0x1BADB002u, flags, 0u - (0x1BADB002u + flags), at, at, at + 0x1000, at + 0x1000, at + 0x10};
    memcpy(file, h, sizeof h);
    return 0x1000;
}

/* Multiboot kernels may load below 1 MiB, above the information block (kvm-unit-tests'
 * realmode test is at 32 KiB), but not in the legacy video and BIOS area. */
TEST(a_multiboot_kernel_may_load_low_but_not_in_the_legacy_area) {
    const struct kernel_load_opts o = {.host = KVM_HOST_PVM, .fd = -1, .multiboot_min = 0x8000};
    struct kernel_loaded k;
    char err[300];
    CHECK_MSG(kernel_load(file, make_multiboot_at(0x8000), &gm, 0x100000, &o, &k, err, sizeof err) == 0, "%s", err);
    CHECK(k.multiboot && k.kernel.entry == 0x8010);
    CHECK_MSG(kernel_load(file, make_multiboot_at(0x7000), &gm, 0x100000, &o, &k, err, sizeof err) != 0 &&
                  !strchr(err, '\n'), "below the information block: %s", err);
    CHECK_MSG(kernel_load(file, make_multiboot_at(0xb8000), &gm, 0x100000, &o, &k, err, sizeof err) != 0 &&
                  strstr(err, "legacy video and BIOS area"), "%s", err);
}
