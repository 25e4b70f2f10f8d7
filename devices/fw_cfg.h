#ifndef BELLHOP_DEVICES_FW_CFG_H
#define BELLHOP_DEVICES_FW_CFG_H

#include "devices/device.h"

/* QEMU's firmware configuration device, its traditional I/O interface: a 16-bit selector at
 * +0 (port 0x510) picks an item and rewinds it, and each byte read from +1 (0x511) is the
 * item's next byte, 0 past its end (and for an item it lacks). kvm-unit-tests reads its CPU
 * count and RAM size here (lib/x86/fwcfg.c). Items: FW_CFG_SIGNATURE "QEMU", FW_CFG_ID (the
 * traditional interface, no DMA), FW_CFG_RAM_SIZE (64-bit: RAM's bytes, as QEMU gives them,
 * not its end), FW_CFG_NB_CPUS and FW_CFG_MAX_CPUS (16-bit), all little-endian. Writes to
 * the data register are ignored (QEMU's items here are read-only); selectors with the
 * arch-local bit (0x8000) name no item bellhop has; the write bit (0x4000) is ignored. */
#define FW_CFG_PORT 0x510
#define FW_CFG_PORTS 2

#define FW_CFG_SIGNATURE 0x00
#define FW_CFG_ID 0x01
#define FW_CFG_RAM_SIZE 0x03
#define FW_CFG_NB_CPUS 0x05
#define FW_CFG_MAX_CPUS 0x0f
#define FW_CFG_ID_TRADITIONAL 0x1u

struct fw_cfg_params {
    uint64_t ram_size;
    uint16_t cpus, max_cpus;
};

struct fw_cfg;
extern const struct io_ops fw_cfg_ops;
struct fw_cfg *fw_cfg_create(const struct fw_cfg_params *p);
void fw_cfg_destroy(struct fw_cfg *f);

#endif
