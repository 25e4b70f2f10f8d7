#ifndef BELLHOP_DEVICES_PC_TESTDEV_H
#define BELLHOP_DEVICES_PC_TESTDEV_H

#include "devices/device.h"

/* QEMU's pc-testdev, which kvm-unit-tests' x86 suite drives (ioapic, realmode, emulator, lam,
 * eventinj): three windows of one device.
 *   Ports 0xe0..0xeb (pc_testdev_port_ops): 0xe0 is a 32-bit register that reads back what
 *     was written, at any size and byte offset (bytes past it are dropped); 0xe8 is the same
 *     register again (QEMU's byte-wise view of it). 0xe4 is QEMU's "flush page": there it
 *     re-protects the page the value names so that the guest's next access faults into KVM.
 *     Here it does nothing: the only way would be to take the page from the VMM's own mapping
 *     for a moment, and a device thread touching it then would crash the VMM; the tests only
 *     need the write to be harmless (eventinj loses the fault, not a pass).
 *   Ports 0x2000..0x2017 (pc_testdev_irq_ops): a byte written to 0x2000 + n sets the level of
 *     GSI n (IOAPIC pin n; below 16 the PIC's line too): nonzero raises it, zero lowers it,
 *     at once and as the guest says, as QEMU's device sets its IRQ (vm_env irq_line:
 *     KVM_IRQ_LINE), whatever the pin's trigger mode.
 *   MMIO 0xff000000, 64 KiB (pc_testdev_iomem_ops): RAM that traps; accesses past its end
 *     keep the bytes inside it.
 * Its state is kept in no snapshot: a restored machine's starts empty, its lines low. */
#define PC_TESTDEV_PORT 0xe0
#define PC_TESTDEV_PORTS 12
#define PC_TESTDEV_IRQ_PORT 0x2000
#define PC_TESTDEV_IRQ_LINES 24
#define PC_TESTDEV_IOMEM 0xff000000u
#define PC_TESTDEV_IOMEM_SIZE 0x10000u

struct pc_testdev;
extern const struct io_ops pc_testdev_port_ops, pc_testdev_irq_ops, pc_testdev_iomem_ops;
struct pc_testdev *pc_testdev_create(struct vm_env *env);
/* The guest must be gone first. */
void pc_testdev_destroy(struct pc_testdev *t);

#endif
