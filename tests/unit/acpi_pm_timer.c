/* The ACPI PM timer a multiboot machine has: it counts at 3.579545 MHz, each access size reads
 * its part of the count, and the FADT names its port only when asked to. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zircon/syscalls.h>

#include "devices/acpi_pm_timer.h"
#include "firmware/acpi.h"
#include "tests/lib/check.h"

TEST(it_counts_at_the_timers_rate) {
    struct acpi_pm_timer *t = acpi_pm_timer_create();
    CHECK(t != NULL);
    uint64_t a0 = zx_clock_get_monotonic();
    uint32_t c0 = (uint32_t)acpi_pm_timer_ops.read(t, 0, 4);
    uint64_t a1 = zx_clock_get_monotonic();
    nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    uint64_t b0 = zx_clock_get_monotonic();
    uint32_t c1 = (uint32_t)acpi_pm_timer_ops.read(t, 0, 4);
    uint64_t b1 = zx_clock_get_monotonic();
    /* the ticks between the reads lie between those of the shortest and longest interval they
     * could have spanned (one tick of rounding either way) */
    uint64_t ticks = (uint32_t)(c1 - c0), lo = (b0 - a1) * ACPI_PM_TIMER_HZ / 1000000000u,
             hi = (b1 - a0) * ACPI_PM_TIMER_HZ / 1000000000u + 1;
    CHECK_MSG(ticks + 1 >= lo && ticks <= hi, "%llu ticks, expected %llu..%llu", (unsigned long long)ticks,
              (unsigned long long)lo, (unsigned long long)hi);
    /* a byte read is the count's low byte, another port's reads nothing */
    uint64_t byte = acpi_pm_timer_ops.read(t, 0, 1), past = acpi_pm_timer_ops.read(t, 4, 4);
    CHECK(byte <= 0xff && past == 0);
    acpi_pm_timer_ops.write(t, 0, 4, 0x12345678); /* ignored */
    CHECK((uint32_t)acpi_pm_timer_ops.read(t, 0, 4) - c1 < ACPI_PM_TIMER_HZ * 60);
    acpi_pm_timer_destroy(t);
}

static uint8_t ram[2u << 20];
static const struct guest_mem gm = {ram, sizeof ram, NULL, NULL};

/* The FADT's PM_TMR_BLK (offset 76), PM_TMR_LEN (91), flags (112) and X_PM_TMR_BLK's address
 * (208 + 4), as the ACPI specification lays them out. */
static void fadt_timer(uint32_t *blk, uint8_t *len, uint32_t *flags, uint64_t *xblk) {
    uint8_t *f = NULL;
    for (size_t at = ACPI_TABLES_ADDR; at + 4 <= sizeof ram && !f; at += 4)
        if (memcmp(ram + at, "FACP", 4) == 0) f = ram + at;
    CHECK(f != NULL);
    memcpy(blk, f + 76, 4);
    *len = f[91];
    memcpy(flags, f + 112, 4);
    memcpy(xblk, f + 212, 8);
}

TEST(the_fadt_names_the_timer_only_when_asked) {
    uint32_t blk, flags;
    uint8_t len;
    uint64_t xblk;
    CHECK(acpi_build(&gm, 1, 0xfec00000u, ACPI_PM_TIMER_PORT) != 0);
    fadt_timer(&blk, &len, &flags, &xblk);
    CHECK_MSG(blk == ACPI_PM_TIMER_PORT && len == 4 && (flags & (1u << 8)) && xblk == ACPI_PM_TIMER_PORT,
              "blk %#x len %u flags %#x x %#llx", blk, len, flags, (unsigned long long)xblk);
    CHECK(acpi_build(&gm, 1, 0xfec00000u, 0) != 0);
    fadt_timer(&blk, &len, &flags, &xblk);
    CHECK(blk == 0 && len == 0 && !(flags & (1u << 8)) && xblk == 0);
}
