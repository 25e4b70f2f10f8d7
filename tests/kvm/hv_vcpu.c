/* vCPUs on real KVM: thread binding, kick, interrupts through the in-kernel LAPIC, register
 * state, GUEST_VCPU packets from the vCPU-control device, and how a guest's end is reported. */
#include <sched.h>
#include <stdio.h>
#include <unistd.h>

#include "tests/kvm/hv_common.h"

#define KEY_IO 0x2222u

GUEST_SNIPPET(spin_guest,
    "1:  incl 0x5000\n"
    "    jmp 1b\n");
GUEST_SNIPPET(halt_guest,
    "    cli\n"
    "1:  hlt\n"
    "    jmp 1b\n");
GUEST_SNIPPET(poweroff_guest, "    POWEROFF\n");
GUEST_SNIPPET(reset_guest, "    RESET\n");
GUEST_SNIPPET(triple_fault_guest,
    "    movw $0, 0x3900\n"               /* an empty IDT */
    "    movl $0, 0x3902\n"
    "    lidt 0x3900\n"
    "    ud2\n");                          /* raised by the CPU: an INT3 would go to PVM's emulator */

static void *enter_elsewhere(void *arg) {
    zx_port_packet_t p;
    return (void *)(intptr_t)zx_vcpu_enter(*(zx_handle_t *)arg, &p);
}

TEST(a_vcpu_belongs_to_its_thread) {
    struct hv h;
    hv_init(&h, poweroff_guest, poweroff_guest_end);
    zx_handle_t vcpu, second;
    CHECK_EQ(zx_vcpu_create(h.guest, 1, GUEST_CODE, &vcpu), ZX_ERR_INVALID_ARGS);
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &second), ZX_ERR_BAD_STATE);
    pthread_t t;
    void *ret;
    CHECK_EQ(pthread_create(&t, NULL, enter_elsewhere, &vcpu), 0);
    pthread_join(t, &ret);
    CHECK_EQ((intptr_t)ret, ZX_ERR_BAD_STATE);
    zx_vcpu_state_t s;
    CHECK_EQ(zx_vcpu_read_state(vcpu, ZX_VCPU_IO, &s, sizeof s), ZX_ERR_INVALID_ARGS);
    CHECK_EQ(zx_vcpu_read_state(vcpu, ZX_VCPU_STATE, &s, sizeof s - 1), ZX_ERR_INVALID_ARGS);
    zx_port_packet_t p;
    /* Every exit enters through the thread's cached handle: rights and closing still count. */
    zx_handle_t weak;
    CHECK_EQ(zx_handle_duplicate(vcpu, ZX_RIGHT_READ, &weak), ZX_OK);
    CHECK_EQ(zx_vcpu_enter(weak, &p), ZX_ERR_ACCESS_DENIED);
    CHECK_EQ(zx_vcpu_write_state(weak, ZX_VCPU_STATE, &s, sizeof s), ZX_ERR_ACCESS_DENIED);
    CHECK_EQ(zx_handle_close(weak), ZX_OK);
    CHECK_EQ(zx_vcpu_enter(weak, &p), ZX_ERR_BAD_HANDLE);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_UNAVAILABLE);
    zx_handle_close(vcpu);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_BAD_HANDLE);
    /* Once the first is gone, the thread may have another. */
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &second), ZX_OK);
    CHECK_EQ(zx_vcpu_enter(second, &p), ZX_ERR_UNAVAILABLE);
    zx_handle_close(second);
    zx_handle_close(h.guest);
}

TEST(kick_cancels_the_current_or_next_enter) {
    struct hv h;
    hv_init(&h, spin_guest, spin_guest_end);
    zx_handle_t vcpu;
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    zx_port_packet_t p;
    /* next: several kicks collapse into one */
    CHECK_EQ(zx_vcpu_kick(vcpu), ZX_OK);
    CHECK_EQ(zx_vcpu_kick(vcpu), ZX_OK);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_CANCELED);
    CHECK_EQ(*hv_word(&h, 0x5000), 0);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);

    /* current, from another thread, twice: the guest goes on between the two */
    hv_init(&h, spin_guest, spin_guest_end);
    for (int round = 0; round < 2; round++) {
        struct runner r;
        if (round == 0) {
            runner_start(&r, h.guest, GUEST_CODE);
        } else {
            /* a fresh thread with the same guest: its vCPU id is 1 */
            runner_start(&r, h.guest, GUEST_CODE);
        }
        uint32_t before = *hv_word(&h, 0x5000);
        while (*hv_word(&h, 0x5000) == before) sched_yield();
        CHECK_EQ(atomic_load(&r.finished), 0);
        CHECK_EQ(zx_vcpu_kick(r.vcpu), ZX_OK);
        runner_join(&r);
        CHECK_EQ(r.result, ZX_ERR_CANCELED);
    }
    zx_handle_close(h.guest);
}

TEST(kick_wakes_a_halted_vcpu) {
    struct hv h;
    hv_init(&h, halt_guest, halt_guest_end);
    struct runner r;
    runner_start(&r, h.guest, GUEST_CODE);
    usleep(200000);
    CHECK_EQ(atomic_load(&r.finished), 0);
    CHECK_EQ(zx_vcpu_kick(r.vcpu), ZX_OK);
    runner_join(&r);
    CHECK_EQ(r.result, ZX_ERR_CANCELED);
    zx_handle_close(h.guest);
}

/* The profile's tick: the vCPU's own timer stops a spinning guest, and a halted one, where it
 * was, again and again, until it is stopped; the guest runs on between ticks.
 * The tick is wall-clock: on a loaded (nested, sanitized) host several ticks can pass before a
 * first entry runs guest code (seen: 5 ticks of 2 ms), or land while the thread is outside
 * KVM_RUN, and the enter then ends with the guest where it was. So "runs on" is asked of the
 * series, not of each pair: the guest moves on between ticks 4 times within 500 ticks. */
TEST(a_tick_stops_the_guest_where_it_runs_until_stopped) {
    struct hv h;
    hv_init(&h, spin_guest, spin_guest_end);
    zx_handle_t vcpu;
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    CHECK_EQ(bellhop_vcpu_set_tick(vcpu, 2000000), ZX_OK);
    zx_port_packet_t p;
    uint32_t before = 0;
    int ticks = 0, moved = 0;
    for (; ticks < 500 && moved < 4; ticks++) {
        CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_TIMED_OUT);
        bellhop_vcpu_sregs_t s;
        CHECK_EQ(bellhop_vcpu_read_sregs(vcpu, &s), ZX_OK);
        CHECK_MSG(s.rip >= GUEST_CODE && s.rip < GUEST_CODE + (uint64_t)(spin_guest_end - spin_guest), "rip %#llx",
                  (unsigned long long)s.rip);
        uint32_t now = *hv_word(&h, 0x5000);
        CHECK(now >= before);
        if (ticks > 0 && now > before) moved++;
        before = now;
    }
    CHECK_MSG(moved == 4, "the guest moved on between only %d of %d ticks", moved, ticks);
    /* stopped: only a kick ends the enter now */
    CHECK_EQ(bellhop_vcpu_set_tick(vcpu, 0), ZX_OK);
    CHECK_EQ(zx_vcpu_kick(vcpu), ZX_OK);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_CANCELED);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);

    hv_init(&h, halt_guest, halt_guest_end);
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    CHECK_EQ(bellhop_vcpu_set_tick(vcpu, 2000000), ZX_OK);
    for (int i = 0; i < 3; i++) CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_TIMED_OUT);
    CHECK_EQ(bellhop_vcpu_set_tick(vcpu, 0), ZX_OK);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);
}

/* Vector 0x40's handler reports through port 0x64; the main path says "ready" on 0x60
 * once the IDT is loaded and the LAPIC enabled, then halts with interrupts on. */
GUEST_SNIPPET(irq_guest,
    "    movl $0x80000, %esp\n"             /* the interrupt frame needs a stack in RAM */
    "    SETUP_GDT\n"
    "    movl $(2f - irq_guest + 0x1000), %eax\n"
    "    movw %ax, 0x4200\n"               /* IDT entry 0x40 at 0x4000 + 0x40 * 8 */
    "    movw $0x10, 0x4202\n"
    "    movw $0x8e00, 0x4204\n"
    "    shrl $16, %eax\n"
    "    movw %ax, 0x4206\n"
    "    movw $0x7ff, 0x3900\n"
    "    movl $0x4000, 0x3902\n"
    "    lidt 0x3900\n"
    "    movl $0x1ff, 0xfee000f0\n"        /* LAPIC spurious-vector register: enable */
    "    outb %al, $0x60\n"
    "    sti\n"
    "1:  hlt\n"
    "    jmp 1b\n"
    "2:  movl $0x40, %eax\n"
    "    outl %eax, $0x64\n"
    "    POWEROFF\n");

struct later {
    zx_handle_t vcpu;
    uint32_t vector;
};
static void *interrupt_later(void *arg) {
    struct later *l = arg;
    usleep(50000);
    zx_vcpu_interrupt(l->vcpu, l->vector);
    return NULL;
}

TEST(an_interrupt_from_another_thread_reaches_the_guest_idt) {
    struct hv h;
    hv_init(&h, irq_guest, irq_guest_end);
    CHECK_EQ(zx_guest_set_trap(h.guest, ZX_GUEST_TRAP_IO, 0x60, 0x10, ZX_HANDLE_INVALID, KEY_IO), ZX_OK);
    zx_handle_t vcpu;
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    zx_port_packet_t p;
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_OK);
    CHECK_EQ(p.type, ZX_PKT_TYPE_GUEST_IO);
    CHECK_EQ(p.guest_io.port, 0x60);
    /* out-of-range vectors are ignored, as in Zircon */
    CHECK_EQ(zx_vcpu_interrupt(vcpu, 3), ZX_OK);
    CHECK_EQ(zx_vcpu_interrupt(vcpu, 1000), ZX_OK);
    struct later l = {vcpu, 0x40};
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, interrupt_later, &l), 0);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_OK);
    pthread_join(t, NULL);
    CHECK_EQ(p.type, ZX_PKT_TYPE_GUEST_IO);
    CHECK_EQ(p.guest_io.port, 0x64);
    CHECK_EQ(p.guest_io.u32, 0x40);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_UNAVAILABLE);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);
}

GUEST_SNIPPET(state_guest,
    "    movl $0x11111111, %eax\n"
    "    movl $0x22222222, %ebx\n"
    "    outb %al, $0x60\n"                /* the host reads and rewrites registers here */
    "    movl %ebx, %eax\n"
    "    outl %eax, $0x64\n"
    "    movl %esi, %eax\n"
    "    outl %eax, $0x68\n"
    "    POWEROFF\n");

TEST(read_and_write_state) {
    struct hv h;
    hv_init(&h, state_guest, state_guest_end);
    CHECK_EQ(zx_guest_set_trap(h.guest, ZX_GUEST_TRAP_IO, 0x60, 0x10, ZX_HANDLE_INVALID, KEY_IO), ZX_OK);
    zx_handle_t vcpu;
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    zx_port_packet_t p;
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_OK);
    zx_vcpu_state_t s;
    CHECK_EQ(zx_vcpu_read_state(vcpu, ZX_VCPU_STATE, &s, sizeof s), ZX_OK);
    CHECK_EQ(s.rax, 0x11111111);
    CHECK_EQ(s.rbx, 0x22222222);
    CHECK(s.rflags & 2);
    s.rbx = 0x33333333;
    s.rsi = 0x44444444;
    CHECK_EQ(zx_vcpu_write_state(vcpu, ZX_VCPU_STATE, &s, sizeof s - 8), ZX_ERR_INVALID_ARGS);
    CHECK_EQ(zx_vcpu_write_state(vcpu, ZX_VCPU_STATE, &s, sizeof s), ZX_OK);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_OK);
    CHECK_EQ(p.guest_io.u32, 0x33333333);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_OK);
    CHECK_EQ(p.guest_io.u32, 0x44444444);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_UNAVAILABLE);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);
}

/* vCPU 0 asks for vCPU 1 at 0x1800 and for vector 0x41 on CPUs 0 and 2; vCPU 1 reports its
 * id (read from the control device) and powers off. */
GUEST_SNIPPET(smp_guest,
    "    movl $1, %eax\n"
    "    movw $0x4f0, %dx\n"
    "    outl %eax, %dx\n"                  /* ARG0_LO = 1 */
    "    xorl %eax, %eax\n"
    "    movw $0x4f4, %dx\n"
    "    outl %eax, %dx\n"                  /* ARG0_HI = 0 */
    "    movl $0x1800, %eax\n"
    "    movw $0x4f8, %dx\n"
    "    outl %eax, %dx\n"                  /* ARG1 = entry */
    "    movl $1, %eax\n"
    "    movw $0x4fc, %dx\n"
    "    outl %eax, %dx\n"                  /* STARTUP */
    "    movl $5, %eax\n"
    "    movw $0x4f0, %dx\n"
    "    outl %eax, %dx\n"                  /* mask: CPUs 0 and 2 */
    "    movl $0x80000000, %eax\n"
    "    movw $0x4f4, %dx\n"
    "    outl %eax, %dx\n"                  /* ... and 63 */
    "    movl $0x41, %eax\n"
    "    movw $0x4f8, %dx\n"
    "    outl %eax, %dx\n"
    "    xorl %eax, %eax\n"
    "    movw $0x4fc, %dx\n"
    "    outl %eax, %dx\n"                  /* INTERRUPT */
    "    POWEROFF\n"
    ".skip 0x800 - (. - smp_guest), 0x90\n"
    "    movw $0x4f0, %dx\n"
    "    inl %dx, %eax\n"
    "    outl %eax, $0x60\n"
    "    POWEROFF\n");

struct ap {
    zx_handle_t guest;
    zx_gpaddr_t entry;
    zx_status_t create, first, last;
    zx_port_packet_t packet;
};
static void *ap_main(void *arg) {
    struct ap *a = arg;
    zx_handle_t vcpu;
    a->create = zx_vcpu_create(a->guest, 0, a->entry, &vcpu);
    if (a->create != ZX_OK) return NULL;
    a->first = zx_vcpu_enter(vcpu, &a->packet);
    zx_port_packet_t p;
    a->last = zx_vcpu_enter(vcpu, &p);
    zx_handle_close(vcpu);
    return NULL;
}

TEST(startup_and_interrupt_packets) {
    struct hv h;
    hv_init(&h, smp_guest, smp_guest_end);
    CHECK_EQ(zx_guest_set_trap(h.guest, ZX_GUEST_TRAP_IO, 0x60, 0x10, ZX_HANDLE_INVALID, KEY_IO), ZX_OK);
    zx_handle_t vcpu;
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    zx_port_packet_t p;
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_OK);
    CHECK_EQ(p.type, ZX_PKT_TYPE_GUEST_VCPU);
    CHECK_EQ(p.key, 0);
    CHECK_EQ(p.guest_vcpu.type, ZX_PKT_GUEST_VCPU_STARTUP);
    CHECK_EQ(p.guest_vcpu.startup.id, 1);
    CHECK_EQ(p.guest_vcpu.startup.entry, 0x1800);
    /* The VMM's part: start that CPU on its own thread. */
    struct ap a = {.guest = h.guest, .entry = p.guest_vcpu.startup.entry};
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, ap_main, &a), 0);
    pthread_join(t, NULL);
    CHECK_EQ(a.create, ZX_OK);
    CHECK_EQ(a.first, ZX_OK);
    CHECK_EQ(a.packet.type, ZX_PKT_TYPE_GUEST_IO);
    CHECK_EQ(a.packet.guest_io.u32, 1); /* its id */
    CHECK_EQ(a.last, ZX_ERR_UNAVAILABLE);

    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_OK);
    CHECK_EQ(p.type, ZX_PKT_TYPE_GUEST_VCPU);
    CHECK_EQ(p.guest_vcpu.type, ZX_PKT_GUEST_VCPU_INTERRUPT);
    CHECK_EQ(p.guest_vcpu.interrupt.mask, 0x8000000000000005ull);
    CHECK_EQ(p.guest_vcpu.interrupt.vector, 0x41);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_UNAVAILABLE);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);
}

TEST(how_a_guest_ends) {
    struct {
        const uint8_t *code, *end;
        zx_status_t want;
        const char *words;
    } cases[] = {
        {poweroff_guest, poweroff_guest_end, ZX_ERR_UNAVAILABLE, "powered off"},
        {reset_guest, reset_guest_end, ZX_ERR_CONNECTION_RESET, "reset"},
        {triple_fault_guest, triple_fault_guest_end, ZX_ERR_BAD_STATE, "triple fault"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct hv h;
        hv_init(&h, cases[i].code, cases[i].end);
        zx_handle_t vcpu;
        CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
        zx_port_packet_t p;
        CHECK_EQ(zx_vcpu_enter(vcpu, &p), cases[i].want);
        char err[200];
        CHECK_EQ(bellhop_vcpu_last_error(vcpu, err, sizeof err), ZX_OK);
        CHECK_MSG(strstr(err, cases[i].words), "case %zu: %s", i, err);
        zx_handle_close(vcpu);
        zx_handle_close(h.guest);
    }
}
