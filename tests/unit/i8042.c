/* The PS/2 controller and keyboard as Linux's i8042 and atkbd drivers probe them, without
 * KVM: self-tests, the command byte, the keyboard's identify and reset, and Ctrl+Alt+Del
 * delivered a byte per interrupt, in the scan-code set the command byte asks for. */
#include "devices/i8042.h"
#include "tests/lib/check.h"
#include "tests/lib/virtq_driver.h"

static uint8_t status(struct i8042 *k) { return (uint8_t)i8042_ops.read(k, 4, 1); }
static uint8_t data(struct i8042 *k) { return (uint8_t)i8042_ops.read(k, 0, 1); }
static void command(struct i8042 *k, uint8_t c) { i8042_ops.write(k, 4, 1, c); }
static void send(struct i8042 *k, uint8_t b) { i8042_ops.write(k, 0, 1, b); }

TEST(linux_probes_the_controller_and_the_keyboard) {
    struct fake_vm vm;
    fake_vm_init(&vm, 1 << 16);
    struct i8042 *k = i8042_create(&vm.env);
    CHECK(k);
    CHECK_EQ(status(k) & 0x01, 0); /* nothing to read */
    CHECK(status(k) & 0x10);       /* not locked */
    command(k, 0xaa);
    CHECK_EQ(status(k) & 0x01, 1);
    CHECK_EQ(data(k), 0x55);
    command(k, 0x20);
    uint8_t ctr = data(k);
    CHECK(ctr & 0x40); /* translating: scan-code set 1 for the driver */
    command(k, 0x60);
    send(k, ctr & ~0x01); /* keyboard interrupts off */
    command(k, 0x20);
    CHECK_EQ(data(k), ctr & ~0x01);
    command(k, 0x60);
    send(k, ctr);
    unsigned irqs = vm.irqs;
    send(k, 0xf2); /* identify */
    CHECK_EQ(vm.irqs, irqs + 1);
    CHECK_EQ(data(k), 0xfa);
    CHECK_EQ(data(k), 0xab);
    CHECK_EQ(data(k), 0x41); /* MF2, as the controller translates it */
    CHECK_EQ(vm.irqs, irqs + 3); /* one interrupt per byte */
    send(k, 0xed); /* LEDs, then their argument */
    CHECK_EQ(data(k), 0xfa);
    send(k, 0x07);
    CHECK_EQ(data(k), 0xfa);
    send(k, 0xff); /* reset */
    CHECK_EQ(data(k), 0xfa);
    CHECK_EQ(data(k), 0xaa);
    send(k, 0x99); /* no such command */
    CHECK_EQ(data(k), 0xfe);
    CHECK_EQ(vm.exit_status, -1);
    command(k, 0xfe); /* the reset line */
    CHECK_EQ(vm.exit_status, 0);
    i8042_destroy(k);
    fake_vm_destroy(&vm);
}

TEST(ctrl_alt_del_in_the_set_the_controller_asks_for) {
    struct fake_vm vm;
    fake_vm_init(&vm, 1 << 16);
    struct i8042 *k = i8042_create(&vm.env);
    i8042_ctrl_alt_del(k);
    static const uint8_t set1[] = {0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d};
    for (unsigned i = 0; i < sizeof set1; i++) CHECK_EQ(data(k), set1[i]);
    CHECK_EQ(status(k) & 0x01, 0);
    command(k, 0x60);
    send(k, 0x01); /* interrupts on, no translation: set 2 */
    i8042_ctrl_alt_del(k);
    static const uint8_t set2[] = {0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14};
    for (unsigned i = 0; i < sizeof set2; i++) CHECK_EQ(data(k), set2[i]);
    i8042_destroy(k);
    fake_vm_destroy(&vm);
}
