/* ACPI table construction. Layouts from the ACPI 6.x specification. */
#include <string.h>

#include "firmware/acpi.h"

extern const unsigned char dsdt_aml[];
extern const unsigned int dsdt_aml_len;

struct sdt_header {
    char signature[4];
    uint32_t length;
    uint8_t revision;
    uint8_t checksum;
    char oem_id[6];
    char oem_table_id[8];
    uint32_t oem_revision;
    char creator_id[4];
    uint32_t creator_revision;
} __attribute__((packed));

struct gas { /* generic address structure */
    uint8_t space, bit_width, bit_offset, access_size;
    uint64_t address;
} __attribute__((packed));

struct rsdp {
    char signature[8];
    uint8_t checksum;
    char oem_id[6];
    uint8_t revision;
    uint32_t rsdt_address;
    uint32_t length;
    uint64_t xsdt_address;
    uint8_t extended_checksum;
    uint8_t reserved[3];
} __attribute__((packed));

struct fadt { /* revision 6 */
    struct sdt_header h;
    uint32_t firmware_ctrl, dsdt;
    uint8_t reserved0, preferred_pm_profile;
    uint16_t sci_int;
    uint32_t smi_cmd;
    uint8_t acpi_enable, acpi_disable, s4bios_req, pstate_cnt;
    uint32_t pm1a_evt_blk, pm1b_evt_blk, pm1a_cnt_blk, pm1b_cnt_blk, pm2_cnt_blk, pm_tmr_blk;
    uint32_t gpe0_blk, gpe1_blk;
    uint8_t pm1_evt_len, pm1_cnt_len, pm2_cnt_len, pm_tmr_len, gpe0_blk_len, gpe1_blk_len, gpe1_base;
    uint8_t cst_cnt;
    uint16_t p_lvl2_lat, p_lvl3_lat, flush_size, flush_stride;
    uint8_t duty_offset, duty_width, day_alrm, mon_alrm, century;
    uint16_t iapc_boot_arch;
    uint8_t reserved1;
    uint32_t flags;
    struct gas reset_reg;
    uint8_t reset_value;
    uint16_t arm_boot_arch;
    uint8_t minor_version;
    uint64_t x_firmware_ctrl, x_dsdt;
    struct gas x_pm1a_evt_blk, x_pm1b_evt_blk, x_pm1a_cnt_blk, x_pm1b_cnt_blk, x_pm2_cnt_blk,
        x_pm_tmr_blk, x_gpe0_blk, x_gpe1_blk, sleep_control_reg, sleep_status_reg;
    uint64_t hypervisor_vendor_identity;
} __attribute__((packed));

_Static_assert(sizeof(struct fadt) == 276, "FADT revision 6 is 276 bytes");
_Static_assert(sizeof(struct rsdp) == 36, "RSDP");

#define FADT_WBINVD (1u << 0)
#define FADT_RESET_REG_SUP (1u << 10)
#define FADT_HW_REDUCED_ACPI (1u << 20)
#define FADT_TMR_VAL_EXT (1u << 8)
#define BOOT_ARCH_VGA_NOT_PRESENT (1u << 2)
#define BOOT_ARCH_8042 (1u << 1)
#define GAS_SYSTEM_IO 1
#define GAS_BYTE_ACCESS 1
#define GAS_DWORD_ACCESS 3

static uint8_t checksum(const void *p, size_t n) {
    uint8_t sum = 0;
    for (size_t i = 0; i < n; i++) sum = (uint8_t)(sum + ((const uint8_t *)p)[i]);
    return (uint8_t)-sum;
}

static void header(struct sdt_header *h, const char *sig, uint32_t length, uint8_t revision) {
    memcpy(h->signature, sig, 4);
    h->length = length;
    h->revision = revision;
    memcpy(h->oem_id, "BELLHP", 6);
    memcpy(h->oem_table_id, "BELLHOP ", 8);
    h->oem_revision = 1;
    memcpy(h->creator_id, "BLHP", 4);
    h->creator_revision = 1;
}

static struct gas io_port(uint16_t port) {
    return (struct gas){.space = GAS_SYSTEM_IO, .bit_width = 8, .access_size = GAS_BYTE_ACCESS, .address = port};
}

uint64_t acpi_build(const struct guest_mem *gm, unsigned ncpus, uint64_t ioapic_addr, uint16_t pm_timer_port) {
    uint64_t base = ACPI_TABLES_ADDR;
    uint8_t *p = gm_ptr_write(gm, base, ACPI_TABLES_SIZE);
    if (!p || ncpus == 0 || ncpus > 255) return 0;
    uint64_t rsdp_at = base, xsdt_at = base + 0x40, fadt_at = base + 0x100, madt_at = base + 0x300,
             dsdt_at = base + 0x1000;
    uint32_t madt_len = 44 + 8 * ncpus + 12;
    if (madt_at + madt_len > dsdt_at || 0x1000 + dsdt_aml_len > ACPI_TABLES_SIZE) return 0;
    /* Only the tables' span: the rest of the area is never pointed to, and zeroing it all
     * would fault in 16 pages of guest RAM at every launch. (A scan for the RSDP finds it
     * first, at the area's start.) */
    memset(p, 0, 0x1000 + dsdt_aml_len);

    memcpy(p + (dsdt_at - base), dsdt_aml, dsdt_aml_len);

    struct fadt *f = (struct fadt *)(p + (fadt_at - base));
    header(&f->h, "FACP", sizeof *f, 6);
    f->minor_version = 3;
    f->flags = FADT_WBINVD | FADT_RESET_REG_SUP | FADT_HW_REDUCED_ACPI;
    f->iapc_boot_arch = BOOT_ARCH_VGA_NOT_PRESENT | BOOT_ARCH_8042; /* the keyboard controller (DSDT's PS2K) */
    f->x_dsdt = dsdt_at;
    f->reset_reg = io_port(ACPI_PM_PORT + 2);
    f->reset_value = 1;
    f->sleep_control_reg = io_port(ACPI_PM_PORT);
    f->sleep_status_reg = io_port(ACPI_PM_PORT + 1);
    if (pm_timer_port) { /* 32 bits wide (TMR_VAL_EXT), in both the old and the extended field */
        f->flags |= FADT_TMR_VAL_EXT;
        f->pm_tmr_blk = pm_timer_port;
        f->pm_tmr_len = 4;
        f->x_pm_tmr_blk = (struct gas){.space = GAS_SYSTEM_IO, .bit_width = 32, .access_size = GAS_DWORD_ACCESS,
                                       .address = pm_timer_port};
    }
    memcpy(&f->hypervisor_vendor_identity, "BELLHOP ", 8);
    f->h.checksum = checksum(f, sizeof *f);

    uint8_t *m = p + (madt_at - base);
    header((struct sdt_header *)m, "APIC", madt_len, 5);
    uint32_t lapic = 0xfee00000u, flags = 0;
    memcpy(m + 36, &lapic, 4);
    memcpy(m + 40, &flags, 4);
    uint8_t *e = m + 44;
    for (unsigned i = 0; i < ncpus; i++, e += 8) {
        uint32_t enabled = 1;
        e[0] = 0; /* processor local APIC */
        e[1] = 8;
        e[2] = (uint8_t)i; /* ACPI processor UID */
        e[3] = (uint8_t)i; /* APIC id */
        memcpy(e + 4, &enabled, 4);
    }
    uint32_t ioapic = (uint32_t)ioapic_addr, gsi_base = 0;
    e[0] = 1; /* I/O APIC */
    e[1] = 12;
    e[2] = (uint8_t)ncpus; /* its id, after the CPUs' */
    memcpy(e + 4, &ioapic, 4);
    memcpy(e + 8, &gsi_base, 4);
    ((struct sdt_header *)m)->checksum = checksum(m, madt_len);

    uint8_t *x = p + (xsdt_at - base);
    header((struct sdt_header *)x, "XSDT", 36 + 16, 1);
    memcpy(x + 36, &fadt_at, 8);
    memcpy(x + 44, &madt_at, 8);
    ((struct sdt_header *)x)->checksum = checksum(x, 36 + 16);

    struct rsdp *r = (struct rsdp *)(p + (rsdp_at - base));
    memcpy(r->signature, "RSD PTR ", 8);
    memcpy(r->oem_id, "BELLHP", 6);
    r->revision = 2;
    r->length = sizeof *r;
    r->xsdt_address = xsdt_at;
    r->checksum = checksum(r, 20);
    r->extended_checksum = checksum(r, sizeof *r);
    return rsdp_at;
}

void reset_vector_stub(const struct guest_mem *gm) {
    uint16_t port = ACPI_PM_PORT + 2;
    const uint8_t stub[] = {
        0xb0, 0x01,                                     /* mov al, 1 */
        0xba, (uint8_t)port, (uint8_t)(port >> 8),      /* mov dx, reset register */
        0xee,                                           /* out dx, al */
        0xfa, 0xf4, 0xeb, 0xfc,                         /* cli; hlt; jmp $-2 */
    };
    gm_write(gm, RESET_VECTOR_ADDR, stub, sizeof stub);
}
