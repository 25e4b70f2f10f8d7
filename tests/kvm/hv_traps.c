/* zx_guest_set_trap on real KVM: MEM and IO packets with their completions, bell traps
 * (ioeventfd fast path, budgeted slow path, reads, dead ports, destruction), and every
 * validation error. */
#include <sched.h>
#include <stdio.h>
#include <unistd.h>

#include <lib/async-loop/default.h>
#include <lib/async-loop/loop.h>
#include <lib/async/trap.h>

#include "tests/kvm/hv_common.h"

#define KEY_MEM 0x1111u
#define KEY_IO 0x2222u
#define KEY_BELL 0x3333u

GUEST_SNIPPET(mem_io_guest,
    "    cld\n"
    "    movl $0x12345678, 0x10000010\n"  /* MEM write, 4 bytes */
    "    movw 0x10000020, %ax\n"          /* MEM read, 2 bytes: the host answers */
    "    outw %ax, $0x60\n"               /* IO out: the answer */
    "    inl $0x64, %eax\n"               /* IO in, 4 bytes: the host answers */
    "    outl %eax, $0x68\n"
    "    movb $0x5a, 0x100010\n"          /* MEM write into RAM that a trap turned into a hole */
    "    movl $0x2000, %esi\n"            /* REP OUTSB, 3 bytes */
    "    movl $3, %ecx\n"
    "    movw $0x6a, %dx\n"
    ".globl mem_io_guest_outsb\n"
    "mem_io_guest_outsb:\n"
    "    rep outsb\n"
    "    movl $0x2100, %edi\n"            /* REP INSB, 2 bytes */
    "    movl $2, %ecx\n"
    "    movw $0x6b, %dx\n"
    "    rep insb\n"
    "    POWEROFF\n");

extern const uint8_t mem_io_guest_outsb[];

static void next(zx_handle_t vcpu, zx_port_packet_t *p, uint32_t type, uint64_t key) {
    CHECK_EQ(zx_vcpu_enter(vcpu, p), ZX_OK);
    CHECK_EQ(p->type, type);
    CHECK_EQ(p->key, key);
    CHECK_EQ(p->status, ZX_OK);
}

/* RIP at the exit the last packet came from. */
static uint64_t rip_now(zx_handle_t vcpu) {
    bellhop_vcpu_sregs_t s;
    CHECK_EQ(bellhop_vcpu_read_sregs(vcpu, &s), ZX_OK);
    return s.rip;
}

static void expect_out(zx_handle_t vcpu, uint16_t port, uint8_t size, uint32_t value) {
    zx_port_packet_t p;
    next(vcpu, &p, ZX_PKT_TYPE_GUEST_IO, KEY_IO);
    CHECK_EQ(p.guest_io.port, port);
    CHECK_EQ(p.guest_io.access_size, size);
    CHECK_EQ(p.guest_io.input, false);
    uint32_t v = 0;
    memcpy(&v, p.guest_io.data, size);
    CHECK_EQ(v, value);
}

static void answer_in(zx_handle_t vcpu, uint16_t port, uint8_t size, uint32_t value) {
    zx_port_packet_t p;
    next(vcpu, &p, ZX_PKT_TYPE_GUEST_IO, KEY_IO);
    CHECK_EQ(p.guest_io.port, port);
    CHECK_EQ(p.guest_io.access_size, size);
    CHECK_EQ(p.guest_io.input, true);
    zx_vcpu_io_t io = {.access_size = size, .u32 = value};
    CHECK_EQ(zx_vcpu_write_state(vcpu, ZX_VCPU_IO, &io, sizeof io), ZX_OK);
}

TEST(mem_and_io_packets_and_their_completions) {
    struct hv h;
    hv_init(&h, mem_io_guest, mem_io_guest_end);
    memcpy(h.ram + 0x2000, "abc", 3);
    CHECK_EQ(zx_guest_set_trap(h.guest, ZX_GUEST_TRAP_MEM, TRAP_MEM, 0x1000, ZX_HANDLE_INVALID, KEY_MEM), ZX_OK);
    CHECK_EQ(zx_guest_set_trap(h.guest, ZX_GUEST_TRAP_MEM, 0x100000, 0x1000, ZX_HANDLE_INVALID, KEY_MEM + 1), ZX_OK);
    CHECK_EQ(zx_guest_set_trap(h.guest, ZX_GUEST_TRAP_IO, 0x60, 0x10, ZX_HANDLE_INVALID, KEY_IO), ZX_OK);
    zx_handle_t vcpu;
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    zx_port_packet_t p;

    next(vcpu, &p, ZX_PKT_TYPE_GUEST_MEM, KEY_MEM);
    CHECK_EQ(p.guest_mem.addr, TRAP_MEM + 0x10);
    CHECK_EQ(p.guest_mem.access_size, 4);
    CHECK_EQ(p.guest_mem.read, false);
    CHECK_EQ(p.guest_mem.data, 0x12345678);
    CHECK_EQ(rip_now(vcpu), GUEST_CODE + 1 + 10); /* a write: past the instruction */
    CHECK_EQ(p.guest_mem.reserved, 0);

    next(vcpu, &p, ZX_PKT_TYPE_GUEST_MEM, KEY_MEM);
    CHECK_EQ(p.guest_mem.addr, TRAP_MEM + 0x20);
    CHECK_EQ(p.guest_mem.access_size, 2);
    CHECK_EQ(p.guest_mem.read, true);
    CHECK_EQ(rip_now(vcpu), GUEST_CODE + 1 + 10); /* a read: at the instruction */
    zx_vcpu_mem_t wrong = {.access_size = 4, .data = 1};
    CHECK_EQ(zx_vcpu_write_state(vcpu, ZX_VCPU_MEM, &wrong, sizeof wrong), ZX_ERR_INVALID_ARGS);
    zx_vcpu_mem_t m = {.access_size = 2, .data = 0xbeef};
    CHECK_EQ(zx_vcpu_write_state(vcpu, ZX_VCPU_MEM, &m, sizeof m), ZX_OK);

    expect_out(vcpu, 0x60, 2, 0xbeef);
    CHECK_EQ(rip_now(vcpu), GUEST_CODE + 1 + 10 + 6); /* IO: at the instruction */
    zx_vcpu_io_t io_early = {.access_size = 4};
    CHECK_EQ(zx_vcpu_write_state(vcpu, ZX_VCPU_IO, &io_early, sizeof io_early), ZX_ERR_BAD_STATE);
    answer_in(vcpu, 0x64, 4, 0xcafebabe);
    expect_out(vcpu, 0x68, 4, 0xcafebabe);
    CHECK_EQ(rip_now(vcpu), GUEST_CODE + 1 + 10 + 6 + 3 + 2);

    next(vcpu, &p, ZX_PKT_TYPE_GUEST_MEM, KEY_MEM + 1);
    CHECK_EQ(p.guest_mem.addr, 0x100010);
    CHECK_EQ(p.guest_mem.data, 0x5a);
    CHECK_EQ(h.ram[0x100010], 0); /* the hole is not RAM */

    /* each element at the instruction, the last too (KVM emulates string IO: it has done the
     * whole REP OUTSB, and stepped past it, when the last batch exits) */
    const uint64_t outsb = GUEST_CODE + (uint64_t)(mem_io_guest_outsb - mem_io_guest);
    expect_out(vcpu, 0x6a, 1, 'a');
    CHECK_EQ(rip_now(vcpu), outsb);
    expect_out(vcpu, 0x6a, 1, 'b');
    CHECK_EQ(rip_now(vcpu), outsb);
    expect_out(vcpu, 0x6a, 1, 'c');
    CHECK_EQ(rip_now(vcpu), outsb);
    answer_in(vcpu, 0x6b, 1, 'x');
    answer_in(vcpu, 0x6b, 1, 'y');
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_UNAVAILABLE);
    CHECK_EQ(memcmp(h.ram + 0x2100, "xy", 2), 0);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);
}

GUEST_SNIPPET(stray_mmio_guest, "    movl $7, 0x20000000\n");
GUEST_SNIPPET(stray_io_guest, "    outb %al, $0x71\n");

TEST(untrapped_accesses_fail_with_the_address_named) {
    struct hv h;
    hv_init(&h, stray_mmio_guest, stray_mmio_guest_end);
    zx_handle_t vcpu;
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    zx_port_packet_t p;
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_OUT_OF_RANGE);
    char err[200];
    CHECK_EQ(bellhop_vcpu_last_error(vcpu, err, sizeof err), ZX_OK);
    CHECK_MSG(strstr(err, "MMIO write") && strstr(err, "0x20000000"), "error: %s", err);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);

    hv_init(&h, stray_io_guest, stray_io_guest_end);
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_NOT_FOUND);
    CHECK_EQ(bellhop_vcpu_last_error(vcpu, err, sizeof err), ZX_OK);
    CHECK_MSG(strstr(err, "IO write") && strstr(err, "0x71"), "error: %s", err);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);
}

/* An access no one trap can cover, though it starts in one or past the last port a trap may
 * hold: all ones on a read, nothing on a write, as on a PC bus (kvm-unit-tests' svm test reads
 * a dword at 0xffff). */
GUEST_SNIPPET(unclaimed_io_guest,
    "    movw $0xffff, %dx\n"
    "    inl %dx, %eax\n"                 /* past the last trappable port */
    "    movl %eax, 0x5000\n"
    "    movw $0x60, %dx\n"
    "    xorl %eax, %eax\n"
    "    inw %dx, %ax\n"                  /* straddles the trap at 0x60 and untrapped 0x61 */
    "    movl %eax, 0x5004\n"
    "    outl %eax, %dx\n"                /* the same: goes nowhere */
    "    outb %al, $0x60\n"               /* within the trap: its packet */
    "    POWEROFF\n");

TEST(an_access_no_trap_can_cover_reads_all_ones) {
    struct hv h;
    hv_init(&h, unclaimed_io_guest, unclaimed_io_guest_end);
    zx_handle_t vcpu;
    CHECK_EQ(zx_guest_set_trap(h.guest, ZX_GUEST_TRAP_IO, 0x60, 1, ZX_HANDLE_INVALID, KEY_IO), ZX_OK);
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    expect_out(vcpu, 0x60, 1, 0xff);
    uint32_t whole, straddled;
    memcpy(&whole, h.ram + 0x5000, 4);
    memcpy(&straddled, h.ram + 0x5004, 4);
    CHECK_MSG(whole == 0xffffffffu && straddled == 0xffffu, "%#x %#x", whole, straddled);
    zx_port_packet_t p;
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_UNAVAILABLE);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);
}

/* ---- bells ---- */

GUEST_SNIPPET(bell_fast_guest,
    "    xorl %ecx, %ecx\n"
    "1:  movl $1, 0x10001000\n"           /* an ioeventfd slot */
    "    incl %ecx\n"
    "    movl %ecx, 0x5000\n"
    "    cmpl $1000, %ecx\n"
    "    jne 1b\n"
    "2:  incl 0x5004\n"                   /* spin until kicked */
    "    jmp 2b\n");

TEST_TIMEOUT(bells_arrive_on_the_port_while_the_vcpu_keeps_running, 120) {
    struct hv h;
    hv_init(&h, bell_fast_guest, bell_fast_guest_end);
    zx_handle_t port;
    CHECK_EQ(zx_port_create(0, &port), ZX_OK);
    CHECK_EQ(zx_guest_set_trap(h.guest, ZX_GUEST_TRAP_BELL, TRAP_BELL, 0x2000, port, KEY_BELL), ZX_OK);
    struct runner r;
    runner_start(&r, h.guest, GUEST_CODE);
    unsigned bells = 0, seen_while_running = 0;
    zx_time_t give_up = zx_deadline_after(ZX_SEC(60));
    while (*hv_word(&h, 0x5000) < 1000 || bells == 0) {
        zx_port_packet_t p;
        zx_status_t st = zx_port_wait(port, zx_deadline_after(ZX_MSEC(100)), &p);
        CHECK_MSG(zx_clock_get_monotonic() < give_up, "guest stuck at ring %u", *hv_word(&h, 0x5000));
        if (st == ZX_ERR_TIMED_OUT) continue;
        CHECK_EQ(st, ZX_OK);
        CHECK_EQ(p.type, ZX_PKT_TYPE_GUEST_BELL);
        CHECK_EQ(p.key, KEY_BELL);
        CHECK_EQ(p.guest_bell.addr, TRAP_BELL);
        bells++;
        if (!atomic_load(&r.finished)) seen_while_running++;
    }
    /* The guest is past its last ring and still running: zx_vcpu_enter never returned. */
    uint32_t spin = *hv_word(&h, 0x5004);
    usleep(50000);
    CHECK(*hv_word(&h, 0x5004) != spin);
    CHECK_EQ(atomic_load(&r.finished), 0);
    CHECK_EQ(atomic_load(&r.packets), 0);
    zx_port_packet_t p;
    while (zx_port_wait(port, zx_deadline_after(ZX_MSEC(200)), &p) == ZX_OK) { /* the guest still spins */
        bells++;
        if (!atomic_load(&r.finished)) seen_while_running++;
    }
    printf("    1000 rings -> %u bell packets (coalesced), %u seen while the vCPU ran\n", bells,
           seen_while_running);
    CHECK(bells >= 1 && bells <= 1000);
    CHECK_EQ(seen_while_running, bells);
    CHECK_EQ(zx_vcpu_kick(r.vcpu), ZX_OK);
    runner_join(&r);
    CHECK_EQ(r.result, ZX_ERR_CANCELED);
    zx_handle_close(h.guest);
    zx_handle_close(port);
}

GUEST_SNIPPET(bell_slow_guest,
    "    xorl %ecx, %ecx\n"
    "1:  movl $1, 0x10002000\n"           /* beyond the ioeventfd slots: one packet per ring */
    "    incl %ecx\n"
    "    movl %ecx, 0x5000\n"
    "    cmpl $1000, %ecx\n"
    "    jne 1b\n"
    "    POWEROFF\n");

TEST_TIMEOUT(a_used_up_bell_budget_pauses_the_vcpu_and_loses_nothing, 120) {
    struct hv h;
    hv_init(&h, bell_slow_guest, bell_slow_guest_end);
    zx_handle_t port;
    CHECK_EQ(zx_port_create(0, &port), ZX_OK);
    CHECK_EQ(zx_guest_set_trap(h.guest, ZX_GUEST_TRAP_BELL, TRAP_BELL, 0x2000, port, KEY_BELL), ZX_OK);
    struct runner r;
    runner_start(&r, h.guest, GUEST_CODE);
    /* Nobody drains: the guest stops after the budget, inside its 257th ring. */
    uint32_t last = ~0u;
    for (int stable = 0; stable < 5;) {
        usleep(100000);
        uint32_t now = *hv_word(&h, 0x5000);
        stable = now == last ? stable + 1 : 0;
        last = now;
    }
    CHECK_EQ(last, BELLHOP_BELL_PACKETS);
    CHECK_EQ(atomic_load(&r.finished), 0);
    unsigned bells = 0;
    zx_port_packet_t p;
    while (bells < 1000) {
        zx_status_t st = zx_port_wait(port, zx_deadline_after(ZX_SEC(10)), &p);
        CHECK_MSG(st == ZX_OK, "wait: %d after %u bells, guest at ring %u, vCPU %s (%d)", st, bells,
                  *hv_word(&h, 0x5000), atomic_load(&r.finished) ? "done" : "running", r.result);
        CHECK_EQ(p.type, ZX_PKT_TYPE_GUEST_BELL);
        CHECK_EQ(p.key, KEY_BELL);
        CHECK_EQ(p.guest_bell.addr, TRAP_BELL_SLOW);
        bells++;
    }
    CHECK_EQ(zx_port_wait(port, zx_deadline_after(ZX_MSEC(50)), &p), ZX_ERR_TIMED_OUT);
    CHECK_EQ(bells, 1000);
    runner_join(&r);
    CHECK_EQ(r.result, ZX_ERR_UNAVAILABLE);
    CHECK_EQ(atomic_load(&r.packets), 0);
    zx_handle_close(h.guest);
    zx_handle_close(port);
}

GUEST_SNIPPET(bell_read_guest, "    movl 0x10001000, %eax\n");
GUEST_SNIPPET(bell_write_guest, "    movl $1, 0x10001000\n    movl $1, 0x10002000\n    POWEROFF\n");

TEST(reading_a_bell_is_not_supported) {
    struct hv h;
    hv_init(&h, bell_read_guest, bell_read_guest_end);
    zx_handle_t port, vcpu;
    CHECK_EQ(zx_port_create(0, &port), ZX_OK);
    CHECK_EQ(zx_guest_set_trap(h.guest, ZX_GUEST_TRAP_BELL, TRAP_BELL, 0x1000, port, KEY_BELL), ZX_OK);
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    zx_port_packet_t p;
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_NOT_SUPPORTED);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);
    zx_handle_close(port);
}

TEST(a_bell_whose_port_is_gone_gives_bad_state) {
    struct hv h;
    hv_init(&h, bell_write_guest, bell_write_guest_end);
    zx_handle_t port, vcpu;
    CHECK_EQ(zx_port_create(0, &port), ZX_OK);
    CHECK_EQ(zx_guest_set_trap(h.guest, ZX_GUEST_TRAP_BELL, TRAP_BELL, 0x2000, port, KEY_BELL), ZX_OK);
    CHECK_EQ(zx_handle_close(port), ZX_OK);
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    zx_port_packet_t p;
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_BAD_STATE); /* the ioeventfd address */
    char err[200];
    bellhop_vcpu_last_error(vcpu, err, sizeof err);
    CHECK_MSG(strstr(err, "port is gone"), "error: %s", err);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_BAD_STATE); /* the slow-path address */
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);
}

TEST(destroying_the_guest_removes_its_bells_but_not_user_packets_with_the_same_key) {
    struct hv h;
    hv_init(&h, bell_write_guest, bell_write_guest_end);
    zx_handle_t port, vcpu;
    CHECK_EQ(zx_port_create(0, &port), ZX_OK);
    CHECK_EQ(zx_guest_set_trap(h.guest, ZX_GUEST_TRAP_BELL, TRAP_BELL, 0x2000, port, KEY_BELL), ZX_OK);
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    zx_port_packet_t p;
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_UNAVAILABLE); /* rang both bells */
    zx_port_packet_t user = {.key = KEY_BELL, .type = ZX_PKT_TYPE_USER, .user.u64 = {42}};
    CHECK_EQ(zx_port_queue(port, &user), ZX_OK);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);
    CHECK_EQ(zx_port_wait(port, zx_deadline_after(ZX_MSEC(100)), &p), ZX_OK);
    CHECK_EQ(p.type, ZX_PKT_TYPE_USER);
    CHECK_EQ(p.key, KEY_BELL);
    CHECK_EQ(p.user.u64[0], 42);
    CHECK_EQ(zx_port_wait(port, zx_deadline_after(ZX_MSEC(100)), &p), ZX_ERR_TIMED_OUT);
    zx_handle_close(port);
}

/* ---- validation ---- */

TEST(set_trap_validation_follows_zircon) {
    struct hv h;
    hv_init(&h, bell_write_guest, bell_write_guest_end);
    zx_handle_t g = h.guest, port, event, ro_port, ro_guest;
    CHECK_EQ(zx_port_create(0, &port), ZX_OK);
    CHECK_EQ(zx_event_create(0, &event), ZX_OK);
    CHECK_EQ(zx_handle_duplicate(port, ZX_RIGHT_READ, &ro_port), ZX_OK);
    CHECK_EQ(zx_handle_duplicate(g, ZX_RIGHT_MANAGE_THREAD, &ro_guest), ZX_OK);
    const zx_handle_t none = ZX_HANDLE_INVALID;
    /* handles */
    CHECK_EQ(zx_guest_set_trap(event, ZX_GUEST_TRAP_IO, 0x60, 1, none, 0), ZX_ERR_WRONG_TYPE);
    CHECK_EQ(zx_guest_set_trap(0x12345678, ZX_GUEST_TRAP_IO, 0x60, 1, none, 0), ZX_ERR_BAD_HANDLE);
    CHECK_EQ(zx_guest_set_trap(ro_guest, ZX_GUEST_TRAP_IO, 0x60, 1, none, 0), ZX_ERR_ACCESS_DENIED);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_BELL, TRAP_BELL, 0x1000, event, 0), ZX_ERR_WRONG_TYPE);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_BELL, TRAP_BELL, 0x1000, ro_port, 0), ZX_ERR_ACCESS_DENIED);
    /* 1. kind and port */
    CHECK_EQ(zx_guest_set_trap(g, 3, 0x60, 1, none, 0), ZX_ERR_INVALID_ARGS);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_BELL, TRAP_BELL, 0x1000, none, 0), ZX_ERR_INVALID_ARGS);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_MEM, TRAP_MEM, 0x1000, port, 0), ZX_ERR_INVALID_ARGS);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_IO, 0x60, 1, port, 0), ZX_ERR_INVALID_ARGS);
    /* 2. page alignment comes before the range check */
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_MEM, TRAP_MEM + 8, 0x1000, none, 0), ZX_ERR_INVALID_ARGS);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_BELL, TRAP_BELL, 0x800, port, 0), ZX_ERR_INVALID_ARGS);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_MEM, TRAP_MEM + 1, 0, none, 0), ZX_ERR_INVALID_ARGS);
    /* 3. range */
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_MEM, TRAP_MEM, 0, none, 0), ZX_ERR_OUT_OF_RANGE);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_MEM, UINTPTR_MAX - 0xfff, 0x2000, none, 0), ZX_ERR_OUT_OF_RANGE);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_IO, 0x60, 0, none, 0), ZX_ERR_OUT_OF_RANGE);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_IO, 0xffff, 1, none, 0), ZX_ERR_OUT_OF_RANGE);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_IO, 0x8000, 0x8000, none, 0), ZX_ERR_OUT_OF_RANGE);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_IO, 0xfff0, 0xf, none, 0), ZX_OK);
    /* 4. overlap in the same tree, whatever the kind */
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_MEM, TRAP_MEM, 0x2000, none, 0), ZX_OK);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_MEM, TRAP_MEM + 0x1000, 0x1000, none, 0), ZX_ERR_ALREADY_EXISTS);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_BELL, TRAP_MEM + 0x1000, 0x1000, port, 0), ZX_ERR_ALREADY_EXISTS);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_BELL, TRAP_MEM - 0x1000, 0x2000, port, 0), ZX_ERR_ALREADY_EXISTS);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_BELL, TRAP_MEM + 0x2000, 0x1000, port, 0), ZX_OK);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_IO, 0x60, 4, none, 0), ZX_OK);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_IO, 0x63, 4, none, 0), ZX_ERR_ALREADY_EXISTS);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_IO, 0x5c, 5, none, 0), ZX_ERR_ALREADY_EXISTS);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_IO, 0x5c, 4, none, 0), ZX_OK);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_IO, BELLHOP_VCPU_CTL_PORT + 4, 1, none, 0), ZX_ERR_ALREADY_EXISTS);
    /* IO and MEM are separate trees */
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_IO, 0x1000, 0x10, none, 0), ZX_OK);
    CHECK_EQ(zx_guest_set_trap(g, ZX_GUEST_TRAP_MEM, 0x1000, 0x1000, none, 0), ZX_OK);
    /* memory */
    void *host;
    CHECK_EQ(zx_guest_map_memory(g, 0x100000, 0x1000, 0, &host), ZX_ERR_ALREADY_EXISTS);
    CHECK_EQ(zx_guest_map_memory(g, 0x300001, 0x1000, 0, &host), ZX_ERR_INVALID_ARGS);
    CHECK_EQ(zx_guest_map_memory(ro_guest, 0x300000, 0x1000, 0, &host), ZX_ERR_ACCESS_DENIED);
    CHECK_EQ(zx_guest_map_memory(g, 0x300000, 0x1000, 0, &host), ZX_OK);
    /* RAM that would go past 3 GiB goes on at 4 GiB, as on a PC: the hole stays free */
    CHECK_EQ(zx_guest_map_memory(g, (3ull << 30) - 0x2000, 0x4000, 0, &host), ZX_OK);
    CHECK_EQ(zx_guest_map_memory(g, (4ull << 30) + 0x1000, 0x1000, 0, &host), ZX_ERR_ALREADY_EXISTS);
    CHECK_EQ(zx_guest_map_memory(g, 3ull << 30, 0x1000, 0, &host), ZX_OK);
    CHECK_EQ(zx_guest_map_memory(g, (4ull << 30) + 0x2000, 0x1000, 0, &host), ZX_OK);
    zx_handle_close_many((zx_handle_t[]){g, port, event, ro_port, ro_guest}, 5);
}

/* ---- the real path: bells set through lib/async, handled on an async-loop thread ---- */

GUEST_SNIPPET(loop_bell_guest,
    "    movl $1, 0x10001004\n"           /* ioeventfd slot 1 */
    "    movl $1, 0x10002008\n"           /* slow path */
    "1:  cmpl $2, 0x5008\n"               /* until the handler has seen both */
    "    jb 1b\n"
    "    POWEROFF\n");

struct bell_handler {
    async_guest_bell_trap_t trap;
    uint8_t *ram;
    atomic_uint count;
    atomic_uint_least64_t addrs;
    pthread_t vcpu_thread;
    atomic_bool on_vcpu_thread;
};

static void on_bell(async_dispatcher_t *d, async_guest_bell_trap_t *trap, zx_status_t st,
                    const zx_packet_guest_bell_t *bell) {
    (void)d;
    struct bell_handler *b = (struct bell_handler *)trap;
    if (st != ZX_OK) return;
    if (pthread_equal(pthread_self(), b->vcpu_thread)) atomic_store(&b->on_vcpu_thread, true);
    atomic_fetch_or(&b->addrs, bell->addr == TRAP_BELL + 4 ? 1 : bell->addr == TRAP_BELL + 0x1008 ? 2 : 4);
    unsigned n = atomic_fetch_add(&b->count, 1) + 1;
    __atomic_store_n((uint32_t *)(b->ram + 0x5008), n, __ATOMIC_RELEASE); /* guest-visible */
}

TEST(an_async_loop_thread_runs_the_bell_handlers) {
    struct hv h;
    hv_init(&h, loop_bell_guest, loop_bell_guest_end);
    async_loop_t *loop;
    CHECK_EQ(async_loop_create(&kAsyncLoopConfigNoAttachToCurrentThread, &loop), ZX_OK);
    struct bell_handler b = {.trap = {.handler = on_bell}, .ram = h.ram, .vcpu_thread = pthread_self()};
    CHECK_EQ(async_set_guest_bell_trap(async_loop_get_dispatcher(loop), &b.trap, h.guest, TRAP_BELL, 0x2000), ZX_OK);
    CHECK_EQ(async_loop_start_thread(loop, "bells", NULL), ZX_OK);
    zx_handle_t vcpu;
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    zx_port_packet_t p;
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_UNAVAILABLE);
    CHECK_EQ(atomic_load(&b.count), 2);
    CHECK_EQ(atomic_load(&b.addrs), 3);
    CHECK(!atomic_load(&b.on_vcpu_thread));
    zx_handle_close(vcpu);
    zx_handle_close(h.guest); /* traps go before the loop's port */
    async_loop_destroy(loop);
}

GUEST_SNIPPET(cpuid_guest,
    "    movl $1, %eax\n"
    "    cpuid\n"
    "    movl %ecx, %eax\n"
    "    outl %eax, $0x60\n"
    "    movl %ebx, %eax\n"
    "    outl %eax, $0x64\n"
    "    POWEROFF\n");

TEST(cpuid_advertises_the_tsc_deadline_timer_and_the_apic_id) {
    struct hv h;
    hv_init(&h, cpuid_guest, cpuid_guest_end);
    CHECK_EQ(zx_guest_set_trap(h.guest, ZX_GUEST_TRAP_IO, 0x60, 0x10, ZX_HANDLE_INVALID, KEY_IO), ZX_OK);
    zx_handle_t vcpu;
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    zx_port_packet_t p;
    next(vcpu, &p, ZX_PKT_TYPE_GUEST_IO, KEY_IO);
    CHECK_MSG(p.guest_io.u32 & (1u << 24), "CPUID.1:ECX %#x lacks TSC-deadline", p.guest_io.u32);
    CHECK_MSG(p.guest_io.u32 & (1u << 31), "CPUID.1:ECX %#x lacks the hypervisor bit", p.guest_io.u32);
    next(vcpu, &p, ZX_PKT_TYPE_GUEST_IO, KEY_IO);
    CHECK_EQ(p.guest_io.u32 >> 24, 0); /* APIC id of vCPU 0 */
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_UNAVAILABLE);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);
}

GUEST_SNIPPET(doorbell_guest,
    "    movl $1, 0x10000050\n"           /* doorbell for queue 1: a bell */
    "    movl $2, 0x10000050\n"           /* no doorbell for 2: the MEM trap's */
    "    movw $1, 0x10000050\n"           /* the wrong size: the MEM trap's */
    "    movl $0, 0x10000050\n"           /* queue 0: a bell */
    "    POWEROFF\n");

TEST(doorbells_inside_a_mem_trap_match_address_size_and_value) {
    struct hv h;
    hv_init(&h, doorbell_guest, doorbell_guest_end);
    zx_handle_t port, vcpu;
    CHECK_EQ(zx_port_create(0, &port), ZX_OK);
    CHECK_EQ(zx_guest_set_trap(h.guest, ZX_GUEST_TRAP_MEM, TRAP_MEM, 0x1000, ZX_HANDLE_INVALID, KEY_MEM), ZX_OK);
    CHECK_EQ(bellhop_guest_set_doorbell(h.guest, TRAP_MEM + 0x50, 4, 1, port, KEY_BELL + 1), ZX_OK);
    CHECK_EQ(bellhop_guest_set_doorbell(h.guest, TRAP_MEM + 0x50, 4, 0, port, KEY_BELL), ZX_OK);
    CHECK_EQ(bellhop_guest_set_doorbell(h.guest, TRAP_MEM + 0x50, 4, 0, port, KEY_BELL), ZX_ERR_ALREADY_EXISTS);
    CHECK_EQ(bellhop_guest_set_doorbell(h.guest, TRAP_MEM + 0x50, 3, 0, port, KEY_BELL), ZX_ERR_INVALID_ARGS);
    CHECK_EQ(bellhop_guest_set_doorbell(h.guest, TRAP_MEM + 0x50, 4, 9, ZX_HANDLE_INVALID, 0), ZX_ERR_BAD_HANDLE);
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    zx_port_packet_t p;
    next(vcpu, &p, ZX_PKT_TYPE_GUEST_MEM, KEY_MEM);
    CHECK_EQ(p.guest_mem.data, 2);
    next(vcpu, &p, ZX_PKT_TYPE_GUEST_MEM, KEY_MEM);
    CHECK_EQ(p.guest_mem.access_size, 2);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_UNAVAILABLE);
    uint64_t keys = 0;
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(zx_port_wait(port, zx_deadline_after(ZX_SEC(5)), &p), ZX_OK);
        CHECK_EQ(p.type, ZX_PKT_TYPE_GUEST_BELL);
        CHECK_EQ(p.guest_bell.addr, TRAP_MEM + 0x50);
        keys |= 1u << (p.key - KEY_BELL);
    }
    CHECK_EQ(keys, 3);
    CHECK_EQ(zx_port_wait(port, zx_deadline_after(ZX_MSEC(50)), &p), ZX_ERR_TIMED_OUT);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);
    zx_handle_close(port);
}
