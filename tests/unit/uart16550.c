/* The 16550 UART driven register by register, without KVM: transmit to an fd, receive from
 * an fd through a real async loop, divisor latch, scratch, interrupts, Ctrl-A escapes. */
#include <lib/async-loop/default.h>
#include <lib/async-loop/loop.h>
#include <unistd.h>

#include "devices/uart16550.h"
#include "tests/lib/check.h"
#include "tests/lib/virtq_driver.h"

static uint8_t rd(struct uart16550 *u, unsigned reg) { return (uint8_t)uart16550_ops.read(u, reg, 1); }
static void wr(struct uart16550 *u, unsigned reg, uint8_t v) { uart16550_ops.write(u, reg, 1, v); }

struct rig {
    struct fake_vm vm;
    async_loop_t *loop;
    int in[2], out[2];
    struct uart16550 *u;
};

static void rig_init(struct rig *r) {
    fake_vm_init(&r->vm, 1 << 16);
    CHECK_EQ(async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &r->loop), ZX_OK);
    r->vm.env.loop = async_loop_get_dispatcher(r->loop);
    CHECK_EQ(pipe(r->in), 0);
    CHECK_EQ(pipe(r->out), 0);
    r->u = uart16550_create(&r->vm.env, 4, r->in[0], r->out[1]);
    CHECK(r->u != NULL);
}

static void rig_destroy(struct rig *r) {
    async_loop_destroy(r->loop);
    uart16550_destroy(r->u);
    close(r->in[0]), close(r->in[1]), close(r->out[0]), close(r->out[1]);
    fake_vm_destroy(&r->vm);
}

TEST(transmit_line_status_latch_and_scratch) {
    struct rig r;
    rig_init(&r);
    CHECK_EQ(rd(r.u, 5) & 0x60, 0x60); /* THRE | TEMT */
    CHECK_EQ(rd(r.u, 5) & 1, 0);
    wr(r.u, 0, 'h');
    wr(r.u, 0, 'i');
    char got[3] = {0};
    CHECK_EQ(read(r.out[0], got, 2), 2);
    CHECK_STR_EQ(got, "hi");
    wr(r.u, 3, 0x80); /* DLAB */
    wr(r.u, 0, 0x01);
    wr(r.u, 1, 0x02);
    CHECK_EQ(rd(r.u, 0), 0x01);
    CHECK_EQ(rd(r.u, 1), 0x02);
    wr(r.u, 3, 0x03);
    CHECK_EQ(rd(r.u, 1), 0); /* IER again */
    wr(r.u, 7, 0xa5);
    CHECK_EQ(rd(r.u, 7), 0xa5);
    rig_destroy(&r);
}

TEST(transmitter_empty_interrupt) {
    struct rig r;
    rig_init(&r);
    CHECK_EQ(rd(r.u, 2) & 0x0f, 0x01); /* nothing pending */
    wr(r.u, 1, 0x02);                  /* IER: THRI */
    CHECK_EQ(r.vm.irqs, 1);
    CHECK_EQ(rd(r.u, 2) & 0x0f, 0x02); /* IIR: THR empty, acknowledged by this read */
    CHECK_EQ(rd(r.u, 2) & 0x0f, 0x01);
    wr(r.u, 0, 'x');
    CHECK_EQ(r.vm.irqs, 2);
    rig_destroy(&r);
}

TEST(receive_through_the_loop_with_escapes) {
    struct rig r;
    rig_init(&r);
    wr(r.u, 1, 0x01); /* IER: received data */
    CHECK_EQ(write(r.in[1], "ab\x01\x01" "c", 5), 5);
    CHECK_EQ(async_loop_run_until_idle(r.loop), ZX_OK);
    CHECK_EQ(rd(r.u, 5) & 1, 1);
    CHECK(r.vm.irqs >= 1);
    CHECK_EQ(rd(r.u, 2) & 0x0f, 0x04);
    CHECK_EQ(rd(r.u, 0), 'a');
    CHECK_EQ(rd(r.u, 0), 'b');
    CHECK_EQ(rd(r.u, 0), 0x01); /* Ctrl-A Ctrl-A sends one */
    CHECK_EQ(rd(r.u, 0), 'c');
    CHECK_EQ(rd(r.u, 5) & 1, 0);
    CHECK_EQ(r.vm.exit_status, -1);
    CHECK_EQ(write(r.in[1], "\x01x", 2), 2);
    CHECK_EQ(async_loop_run_until_idle(r.loop), ZX_OK);
    CHECK_EQ(r.vm.exit_status, 0);
    rig_destroy(&r);
}
