/* fw_cfg's I/O interface as kvm-unit-tests drives it (lib/x86/fwcfg.c): a 16-bit select,
 * then byte reads of the data port. */
#include "devices/fw_cfg.h"
#include "tests/lib/check.h"

static const struct fw_cfg_params params = {.ram_size = 0x123456789abull, .cpus = 3, .max_cpus = 8};

static void select_key(struct fw_cfg *f, uint16_t key) { fw_cfg_ops.write(f, 0, 2, key); }
static uint8_t data(struct fw_cfg *f) { return (uint8_t)fw_cfg_ops.read(f, 1, 1); }
static uint64_t read_le(struct fw_cfg *f, uint16_t key, unsigned bytes) {
    select_key(f, key);
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; i++) v |= (uint64_t)data(f) << (8 * i);
    return v;
}

TEST(the_signature_reads_qemu) {
    struct fw_cfg *f = fw_cfg_create(&params);
    CHECK(f != NULL);
    select_key(f, FW_CFG_SIGNATURE);
    char sig[5] = {0};
    for (int i = 0; i < 4; i++) sig[i] = (char)data(f);
    CHECK_STR_EQ(sig, "QEMU");
    CHECK_EQ(read_le(f, FW_CFG_ID, 4), FW_CFG_ID_TRADITIONAL);
    fw_cfg_destroy(f);
}

TEST(ram_size_and_cpus_are_little_endian) {
    struct fw_cfg *f = fw_cfg_create(&params);
    CHECK_EQ(read_le(f, FW_CFG_RAM_SIZE, 8), 0x123456789abull);
    select_key(f, FW_CFG_RAM_SIZE);
    CHECK_EQ(data(f), 0xab); /* the low byte first */
    CHECK_EQ(read_le(f, FW_CFG_NB_CPUS, 2), 3);
    CHECK_EQ(read_le(f, FW_CFG_MAX_CPUS, 2), 8);
    /* the write-channel bit does not change which item is read */
    CHECK_EQ(read_le(f, 0x4000 | FW_CFG_NB_CPUS, 2), 3);
    fw_cfg_destroy(f);
}

TEST(reads_past_the_end_and_of_unknown_keys_are_zero) {
    struct fw_cfg *f = fw_cfg_create(&params);
    CHECK_EQ(read_le(f, FW_CFG_NB_CPUS, 8), 3); /* two bytes, then zeros */
    for (int i = 0; i < 100; i++) CHECK_EQ(data(f), 0);
    CHECK_EQ(read_le(f, 0x11, 8), 0);     /* kvm-unit-tests' FW_CFG_MAX_RAM: none, no limit */
    CHECK_EQ(read_le(f, 0x19, 4), 0);     /* the file directory: empty */
    CHECK_EQ(read_le(f, 0x8000 | FW_CFG_NB_CPUS, 2), 0); /* arch-local: another item */
    CHECK_EQ(read_le(f, 0xffff, 4), 0);
    fw_cfg_destroy(f);
}

TEST(a_new_select_rewinds_and_other_accesses_are_ignored) {
    struct fw_cfg *f = fw_cfg_create(&params);
    select_key(f, FW_CFG_SIGNATURE);
    CHECK_EQ(data(f), 'Q');
    CHECK_EQ(data(f), 'E');
    select_key(f, FW_CFG_SIGNATURE);
    CHECK_EQ(data(f), 'Q');
    fw_cfg_ops.write(f, 1, 1, 0x55); /* data writes: ignored */
    CHECK_EQ(data(f), 'E');
    CHECK_EQ(fw_cfg_ops.read(f, 1, 2), 0); /* no word reads of the data port */
    CHECK_EQ(fw_cfg_ops.read(f, 0, 2), 0); /* the selector is write-only */
    CHECK_EQ(data(f), 'M');
    fw_cfg_ops.write(f, 0, 4, FW_CFG_NB_CPUS); /* no such register */
    CHECK_EQ(data(f), 'U');
    fw_cfg_destroy(f);
}

TEST(save_and_restore_keep_the_position) {
    struct fw_cfg *f = fw_cfg_create(&params), *g = fw_cfg_create(&params);
    select_key(f, FW_CFG_SIGNATURE);
    data(f);
    uint8_t buf[64];
    size_t n = fw_cfg_ops.save(f, buf, sizeof buf);
    CHECK(n > 0);
    char err[128];
    CHECK_EQ(fw_cfg_ops.restore(g, buf, n, err, sizeof err), 0);
    CHECK_EQ(data(g), 'E');
    CHECK_EQ(fw_cfg_ops.restore(g, buf, n - 1, err, sizeof err), -1);
    buf[4] = 9; /* offset 9 of a 4-byte item */
    CHECK_EQ(fw_cfg_ops.restore(g, buf, n, err, sizeof err), -1);
    CHECK_MSG(strstr(err, "past item"), "%s", err);
    fw_cfg_destroy(f);
    fw_cfg_destroy(g);
}
