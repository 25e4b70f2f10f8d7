/* QEMU's pc-testdev as kvm-unit-tests drives it: its register reads back at every size and
 * offset, its MMIO window is RAM that stops at its end, and a byte on port 0x2000 + n sets
 * GSI n's level at once. */
#include <stdlib.h>
#include <string.h>
#include <zircon/syscalls.h>

#include "devices/pc_testdev.h"
#include "tests/lib/check.h"

/* The machine's line service as the device sees it: each call recorded. */
struct fake_env {
    struct vm_env env; /* first: the device gets &env */
    int level[PC_TESTDEV_IRQ_LINES]; /* -1: never set */
    unsigned calls;
    bool refuse;
};

static zx_status_t fake_irq_line(struct vm_env *env, uint32_t gsi, bool level) {
    struct fake_env *f = (struct fake_env *)env;
    f->calls++;
    if (f->refuse || gsi >= PC_TESTDEV_IRQ_LINES) return ZX_ERR_NO_RESOURCES;
    f->level[gsi] = level;
    return ZX_OK;
}

static void fake_env_init(struct fake_env *f) {
    memset(f, 0, sizeof *f);
    f->env.guest = ZX_HANDLE_INVALID;
    f->env.irq_line = fake_irq_line;
    for (unsigned i = 0; i < PC_TESTDEV_IRQ_LINES; i++) f->level[i] = -1;
}

TEST(its_register_reads_back_at_every_size_and_offset) {
    struct fake_env f;
    fake_env_init(&f);
    struct pc_testdev *t = pc_testdev_create(&f.env);
    CHECK(t != NULL);
    const struct io_ops *o = &pc_testdev_port_ops;
    o->write(t, 0, 4, 0x12345678);
    CHECK_EQ(o->read(t, 0, 1), 0x78);
    CHECK_EQ(o->read(t, 0, 2), 0x5678);
    CHECK_EQ(o->read(t, 0, 4), 0x12345678);
    CHECK_EQ(o->read(t, 2, 2), 0x1234);
    CHECK_EQ(o->read(t, 3, 1), 0x12);
    CHECK_EQ(o->read(t, 2, 4), 0x1234); /* bytes past the register read nothing */
    o->write(t, 1, 1, 0xab);
    o->write(t, 2, 2, 0xcdef);
    CHECK_EQ(o->read(t, 0, 4), 0xcdefab78);
    o->write(t, 3, 4, 0xffffff11); /* only its low byte is inside */
    CHECK_EQ(o->read(t, 0, 4), 0x11efab78);
    /* 0xe8 is the same register; 0xe4 (the flush page) and past the window are not */
    CHECK_EQ(o->read(t, 8, 4), 0x11efab78);
    o->write(t, 9, 1, 0x22);
    CHECK_EQ(o->read(t, 0, 4), 0x11ef2278);
    o->write(t, 4, 4, 0x1000);
    CHECK_EQ(o->read(t, 4, 4), 0);
    CHECK_EQ(o->read(t, 0, 4), 0x11ef2278);
    o->write(t, PC_TESTDEV_PORTS, 4, 0);
    o->write(t, ~0ull, 1, 0);
    CHECK_EQ(o->read(t, PC_TESTDEV_PORTS, 4), 0);
    CHECK_EQ(o->read(t, 0, 4), 0x11ef2278);
    CHECK_EQ(f.calls, 0u);
    pc_testdev_destroy(t);
}

TEST(its_window_is_ram_up_to_its_end) {
    struct fake_env f;
    fake_env_init(&f);
    struct pc_testdev *t = pc_testdev_create(&f.env);
    CHECK(t != NULL);
    const struct io_ops *o = &pc_testdev_iomem_ops;
    CHECK_EQ(o->read(t, 0x100, 8), 0);
    o->write(t, 0x100, 8, 0x0123456789abcdefull);
    CHECK(o->read(t, 0x100, 8) == 0x0123456789abcdefull);
    CHECK_EQ(o->read(t, 0x100, 4), 0x89abcdef);
    CHECK_EQ(o->read(t, 0x104, 2), 0x4567);
    CHECK_EQ(o->read(t, 0x107, 1), 0x01);
    o->write(t, 0x101, 1, 0x5a);
    o->write(t, 0x102, 2, 0xa55a);
    o->write(t, 0x104, 4, 0xdeadbeef);
    CHECK(o->read(t, 0x100, 8) == 0xdeadbeefa55a5aefull);
    /* unaligned, across a page, as the emulator test's accesses are */
    o->write(t, 0xffe, 4, 0x44332211);
    CHECK_EQ(o->read(t, 0xfff, 2), 0x3322);
    CHECK_EQ(o->read(t, 0x1000, 1), 0x33);
    /* the last bytes: what lies past the end is dropped and reads nothing */
    o->write(t, PC_TESTDEV_IOMEM_SIZE - 2, 8, 0x1122334455667788ull);
    CHECK_EQ(o->read(t, PC_TESTDEV_IOMEM_SIZE - 2, 8), 0x7788);
    CHECK_EQ(o->read(t, PC_TESTDEV_IOMEM_SIZE - 1, 1), 0x77);
    o->write(t, PC_TESTDEV_IOMEM_SIZE, 8, ~0ull);
    o->write(t, ~0ull, 8, ~0ull);
    o->write(t, 0, 16, ~0ull); /* no such size: nothing */
    CHECK_EQ(o->read(t, PC_TESTDEV_IOMEM_SIZE, 8), 0);
    CHECK_EQ(o->read(t, ~0ull, 8), 0);
    CHECK_EQ(o->read(t, 0, 8), 0);
    pc_testdev_destroy(t);
}

TEST(a_port_byte_sets_its_lines_level_at_once) {
    struct fake_env f;
    fake_env_init(&f);
    struct pc_testdev *t = pc_testdev_create(&f.env);
    CHECK(t != NULL);
    const struct io_ops *o = &pc_testdev_irq_ops;
    o->write(t, 11, 1, 1);
    CHECK_EQ(f.level[11], 1);
    o->write(t, 11, 1, 0x100); /* a byte: 0 */
    CHECK_EQ(f.level[11], 0);
    o->write(t, 3, 1, 0xff);
    CHECK(f.level[3] == 1 && f.level[11] == 0);
    unsigned calls = f.calls;
    o->write(t, 11, 2, 1);                    /* wider: no line */
    o->write(t, PC_TESTDEV_IRQ_LINES, 1, 1);  /* past the last */
    o->write(t, UINT64_MAX, 1, 1);
    CHECK_EQ(f.calls, calls);
    CHECK_EQ(o->read(t, 11, 1), 0u);
    pc_testdev_destroy(t);
}

TEST(a_line_the_machine_cannot_set_is_ignored) {
    struct fake_env f;
    fake_env_init(&f);
    f.refuse = true;
    struct pc_testdev *t = pc_testdev_create(&f.env);
    CHECK(t != NULL);
    for (int i = 0; i < 3; i++) pc_testdev_irq_ops.write(t, 5, 1, 1); /* said once, on stderr */
    CHECK_EQ(f.calls, 3u);
    pc_testdev_port_ops.write(t, 0, 4, 7); /* the rest works on */
    CHECK_EQ(pc_testdev_port_ops.read(t, 0, 4), 7u);
    pc_testdev_destroy(t);
}
