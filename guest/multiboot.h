/* The tiny guest booted as a multiboot (v1) kernel (build/guest/guest-multiboot.elf): what the
 * loader gave, as the hvm_start_info the PVH entry's kmain reads. */
#ifndef BELLHOP_GUEST_MULTIBOOT_H
#define BELLHOP_GUEST_MULTIBOOT_H

#include <stdbool.h>

#include "firmware/hvm_start_info.h"

typedef void multiboot_result_fn(const char *name, bool ok, const char *detail);

/* si itself when booted through PVH; booted through multiboot (multiboot_entry.S hands kmain its own
 * struct), that struct filled in from the multiboot information: command line, memory map
 * and modules (each with its string as its command line). */
const struct hvm_start_info *multiboot_start_info(const struct hvm_start_info *si);
bool multiboot_booted(void);
/* What the loader gave (the magic, the information's flags, the modules) and QEMU's fw_cfg
 * (signature, RAM size against the memory map, CPU count): the same under bellhop and QEMU. */
void multiboot_selftests(multiboot_result_fn *result);

#endif
