/*
 * bellhop's DSDT: COM1, the CMOS clock and the PS/2 keyboard controller, the PCI host bridge (configuration mechanism #1, bus 0, one 32-bit MMIO
 * window for BARs), the VM generation ID with the event device that announces its changes, and the S5 sleep type that powers the machine off through the
 * hardware-reduced sleep control register (see firmware/acpi.c, devices/acpi_pm.c).
 * Compiled with iasl at build time.
 */
DefinitionBlock ("", "DSDT", 2, "BELLHP", "BELLHOP ", 1)
{
    Scope (\_SB)
    {
        /* The legacy devices, so that hardware-reduced ACPI routes their interrupts. */
        Device (COM1)
        {
            Name (_HID, EisaId ("PNP0501"))
            Name (_UID, One)
            Name (_CRS, ResourceTemplate ()
            {
                IO (Decode16, 0x03F8, 0x03F8, 0x08, 0x08)
                IRQNoFlags () {4}
            })
        }

        /* Found by Linux's i8042 driver through PnP, which also maps its IRQ 1 (with
         * i8042.nopnp it would probe the ports, but IRQ 1 has no mapping without a PIC). */
        Device (PS2K)
        {
            Name (_HID, EisaId ("PNP0303"))
            Name (_CRS, ResourceTemplate ()
            {
                IO (Decode16, 0x0060, 0x0060, 0x01, 0x01)
                IO (Decode16, 0x0064, 0x0064, 0x01, 0x01)
                IRQNoFlags () {1}
            })
        }

        Device (RTC)
        {
            Name (_HID, EisaId ("PNP0B00"))
            Name (_CRS, ResourceTemplate ()
            {
                IO (Decode16, 0x0070, 0x0070, 0x01, 0x02)
            })
        }

        Device (PCI0)
        {
            Name (_HID, EisaId ("PNP0A03"))
            Name (_UID, Zero)
            Name (_SEG, Zero)
            Name (_BBN, Zero)
            /* INTA of slots 1..8 on IOAPIC pins 16..23 (vmm/machine.c puts devices there) */
            Name (_PRT, Package ()
            {
                Package () { 0x0001FFFF, Zero, Zero, 16 },
                Package () { 0x0002FFFF, Zero, Zero, 17 },
                Package () { 0x0003FFFF, Zero, Zero, 18 },
                Package () { 0x0004FFFF, Zero, Zero, 19 },
                Package () { 0x0005FFFF, Zero, Zero, 20 },
                Package () { 0x0006FFFF, Zero, Zero, 21 },
                Package () { 0x0007FFFF, Zero, Zero, 22 },
                Package () { 0x0008FFFF, Zero, Zero, 23 }
            })
            Name (_CRS, ResourceTemplate ()
            {
                WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,
                    0x0000, 0x0000, 0x0000, 0x0000, 0x0001)
                IO (Decode16, 0x0CF8, 0x0CF8, 0x01, 0x08)
                WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
                    0x0000, 0x0000, 0x0CF7, 0x0000, 0x0CF8)
                WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
                    0x0000, 0x0D00, 0xFFFF, 0x0000, 0xF300)
                DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,
                    0x00000000, 0xE0000000, 0xEFFFFFFF, 0x00000000, 0x10000000)
            })
        }

        /* The VM generation ID (Microsoft's "Virtual Machine Generation ID" spec, which Linux's
         * vmgenid driver follows): 16 bytes at ADDR, in the reserved BIOS area, that bellhop
         * changes when it restores a snapshot (firmware/vmgenid.h) ... */
        Device (VGEN)
        {
            Name (_HID, "BHVG0001") /* bellhop's own ID: Linux matches the _CID */
            Name (_CID, "VM_GEN_COUNTER")
            Name (_DDN, "VM_Gen_Counter")
            Method (ADDR, 0, NotSerialized)
            {
                Return (Package (0x02) { 0x000F0000, Zero })
            }
        }

        /* ... and then tells the guest through this Generic Event Device: an edge on GSI 3
         * runs _EVT, which notifies VGEN (hardware-reduced ACPI has no GPE blocks). */
        Device (GED0)
        {
            Name (_HID, "ACPI0013")
            Name (_UID, Zero)
            Name (_CRS, ResourceTemplate ()
            {
                Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { 3 }
            })
            Method (_EVT, 1, Serialized)
            {
                If (Arg0 == 3)
                {
                    Notify (\_SB.VGEN, 0x80)
                }
            }
        }
    }

    Name (_S5, Package (0x04) { 0x05, 0x05, Zero, Zero })
}
